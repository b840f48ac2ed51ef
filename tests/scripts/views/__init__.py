"""Unit tests of scripts/views/ (run by scripts.unit: python -m unittest discover -s tests/scripts)."""
