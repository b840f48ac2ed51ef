"""Unit tests of scripts/tools/ (run by scripts.unit: python -m unittest discover -s tests/scripts)."""
