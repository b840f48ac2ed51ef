#!/usr/bin/env python3
"""side_by_side.py - time labelled commands in alternating rounds and print
the median wall time of each and its ratio to the first (the baseline).

Runs alternate (A B C, A B C, ...) so that a machine's slow minute hurts
every command alike; medians, not means, so one outlier does not decide.

    benchmarks/side_by_side.py --rounds 5 \\
        plain='build/scenarios/blocked_workers --variant leaky' \\
        heapprof='build/scenarios/blocked_workers-tcmalloc --variant leaky --heap-profile /tmp/hp --guard-pages off'

A command that exits non-zero stops the benchmark (exit 1): a failed run
has no meaningful time. Output of the commands goes to /dev/null."""
import argparse
import shlex
import statistics
import subprocess
import sys
import time


def parse_pairs(pairs):
    commands = []
    for pair in pairs:
        label, sep, command = pair.partition("=")
        if not sep or not label or not command.strip():
            raise SystemExit(f"side_by_side.py: '{pair}' is not LABEL=COMMAND")
        commands.append((label, command))
    return commands


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every command (default 5)")
    parser.add_argument("--setup", default="", help="shell command run before each command (e.g. clearing a dir)")
    parser.add_argument("pairs", nargs="+", metavar="LABEL=COMMAND")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    commands = parse_pairs(args.pairs)

    times = {label: [] for label, _ in commands}
    for round_no in range(args.rounds):
        for label, command in commands:
            if args.setup:
                subprocess.run(args.setup, shell=True, check=True)
            started = time.monotonic()
            r = subprocess.run(command, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.monotonic() - started
            if r.returncode != 0:
                print(f"{label}: exit {r.returncode} in round {round_no + 1}: {command}", file=sys.stderr)
                return 1
            times[label].append(elapsed)

    base = statistics.median(times[commands[0][0]])
    print(f"{'command':<24} {'median s':>9} {'ratio':>7}  runs (s)")
    for label, _ in commands:
        median = statistics.median(times[label])
        runs = " ".join(f"{t:.2f}" for t in times[label])
        print(f"{label:<24} {median:>9.2f} {median / base:>6.2f}x  {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
