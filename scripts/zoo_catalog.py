#!/usr/bin/env python3
"""Launcher kept at this path for its callers (tests/zoo/CMakeLists.txt, docs/zoo.md): the code is scripts/views/zoo_catalog.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: `scripts` is a package

from scripts.views import zoo_catalog  # noqa: E402

if __name__ == "__main__":
    sys.exit(zoo_catalog.main(sys.argv[1:]))
