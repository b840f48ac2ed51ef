#!/usr/bin/env python3
"""Launcher kept at this path for its callers (./leaklab, cmake/LeaklabScenario.cmake, tests/CMakeLists.txt, tests/broken/zoo.cmake): the code is scripts/cli/leaklab.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: `scripts` is a package

from scripts.cli import leaklab  # noqa: E402

if __name__ == "__main__":
    sys.exit(leaklab.main())
