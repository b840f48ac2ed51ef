"""Unit tests of scripts/expect/ (run by scripts.unit: python -m unittest discover -s tests/scripts)."""
