#!/usr/bin/env python3
"""Launcher kept at this path for its callers (cmake/LeaklabFuzz.cmake): the code is scripts/dev/fuzz.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: `scripts` is a package

from scripts.dev import fuzz  # noqa: E402

if __name__ == "__main__":
    sys.exit(fuzz.main())
