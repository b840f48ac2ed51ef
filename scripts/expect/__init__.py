"""The expected-file language (expected.py) and the comparer (comparer.py: run directory -> verdict)."""
