"""The `leaklab` commands and their arguments (leaklab.py)."""
