#!/usr/bin/env python3
"""Launcher kept at this path for its callers (scenarios/CMakeLists.txt, docs/scenarios/rw_gateway.md): the code is scripts/run/gateway.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: `scripts` is a package

from scripts.run import gateway  # noqa: E402

if __name__ == "__main__":
    sys.exit(gateway.main())
