"""Tools for working on leaklab itself: fuzz targets (fuzz.py), flaky-test counts (flaky.py)."""
