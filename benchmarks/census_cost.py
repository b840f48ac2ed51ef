#!/usr/bin/env python3
"""census_cost.py - what the thread census costs, build against build: runs
each labelled scenario command in alternating rounds and prints the median of
the `census_ms` every phase snapshot reports (the time the census took, in
the process), per phase, with its difference to the first command's.

    benchmarks/census_cost.py --rounds 5 --phase steady \\
        before='/work/builds/head/scenarios/blocked_workers --variant leaky --scale seed' \\
        stacks='build/scenarios/blocked_workers --variant leaky --scale seed' \\
        proc_only='env LEAKLAB_CENSUS_STACKS=0 build/scenarios/blocked_workers --variant leaky --scale seed'

The census of a build before the stacks (a tree without threadcheck) writes
no census_ms; build it with the one-line timing patch this script prints with
--patch-old (measurement only, never committed). Runs alternate (A B C, A B
C, ...) so a machine's slow minute hurts every command alike; medians, not
means. A command that exits non-zero, or a snapshot without census_ms, stops
the benchmark (exit 1)."""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

OLD_PATCH = r'''
In common/snapshot.c of the old tree, around the census in ll_snapshot_json():

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    census_json(b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ll_buf_printf(b, ",\"census_ms\":%.1f}", (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);

(replacing `census_json(b); ll_buf_printf(b, "}");`, with #include <time.h>).
'''


def census_ms(events_path, phase):
    """{phase: census_ms} from an events file."""
    found = {}
    with open(events_path) as f:
        for line in f:
            ev = json.loads(line)
            if ev.get("event") == "phase" and (phase is None or ev.get("phase") == phase):
                value = (ev.get("snapshot") or {}).get("census_ms")
                if value is None:
                    raise ValueError(f"phase {ev.get('phase')}: no census_ms in the snapshot (see --patch-old)")
                found[ev["phase"]] = value
    return found


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every command (default 5)")
    parser.add_argument("--phase", help="only this phase (default: every phase)")
    parser.add_argument("--patch-old", action="store_true", help="print the timing patch for an old tree and exit")
    parser.add_argument("pairs", nargs="*", metavar="LABEL=COMMAND")
    args = parser.parse_args(argv)
    if args.patch_old:
        print(OLD_PATCH)
        return 0
    if args.rounds < 1 or not args.pairs:
        parser.error("give --rounds >= 1 and at least one LABEL=COMMAND")
    commands = []
    for pair in args.pairs:
        label, sep, command = pair.partition("=")
        if not sep or not label or not command.strip():
            parser.error(f"'{pair}' is not LABEL=COMMAND")
        commands.append((label, command))

    samples = {label: {} for label, _ in commands}
    with tempfile.TemporaryDirectory() as tmp:
        events = os.path.join(tmp, "events.jsonl")
        for round_no in range(args.rounds):
            for label, command in commands:
                argv_ = shlex.split(command) + ["--events", events]
                r = subprocess.run(argv_, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r.returncode != 0:
                    print(f"{label}: exit {r.returncode} in round {round_no + 1}: {command}", file=sys.stderr)
                    return 1
                try:
                    for phase, ms in census_ms(events, args.phase).items():
                        samples[label].setdefault(phase, []).append(ms)
                except (OSError, ValueError) as e:
                    print(f"{label}: {e}", file=sys.stderr)
                    return 1

    base_label = commands[0][0]
    print(f"{'command':<16} {'phase':<12} {'median ms':>10} {'vs ' + base_label:>14}  runs (ms)")
    for label, _ in commands:
        for phase, values in samples[label].items():
            median = statistics.median(values)
            base = samples[base_label].get(phase)
            delta = f"{median - statistics.median(base):+.0f} ms" if base else "-"
            runs = " ".join(f"{v:.0f}" for v in values)
            print(f"{label:<16} {phase:<12} {median:>10.1f} {delta:>14}  {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
