"""Unit tests of scripts/dev/ (run by scripts.unit: python -m unittest discover -s tests/scripts)."""
