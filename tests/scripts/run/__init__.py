"""Unit tests of scripts/run/ (run by scripts.unit: python -m unittest discover -s tests/scripts)."""
