#!/usr/bin/env python3
"""expect_red.py - run a `leaklab.py check` that must fail, and fail unless
it fails for the right reason.

    expect_red.py --check 'EXPECT TEXT' -- leaklab.py check ARGS...

Passes (exit 0) only when the check command exits 1 and its verdict.json
has the named check with verdict FAIL. Exit 77 from the check (tool or
allocator missing) is passed through as a skip; anything else is a failure
of this test (exit 1), with what happened."""
import argparse
import json
import pathlib
import re
import subprocess
import sys


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", required=True, help="the expect text that must be FAIL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the check command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the check command after --")

    r = subprocess.run(command, capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode == 77:
        return 77
    if r.returncode != 1:
        print(f"expect_red: the check exited {r.returncode}, not 1: it should have failed on '{args.check}'")
        return 1
    match = re.search(r"^run dir: (.+)$", r.stdout, re.M)
    if not match:
        print("expect_red: the check printed no run dir")
        return 1
    verdict = json.loads((pathlib.Path(match.group(1)) / "verdict.json").read_text())
    rows = [c for c in verdict["checks"] if c["check"] == args.check]
    if not rows:
        print(f"expect_red: no check '{args.check}' in the verdict: the expected file changed?")
        return 1
    if rows[0]["verdict"] != "FAIL":
        print(f"expect_red: '{args.check}' was {rows[0]['verdict']}, not FAIL")
        return 1
    print(f"expect_red: '{args.check}' is FAIL, as it must be (observed {rows[0]['observed']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
