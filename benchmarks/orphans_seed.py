#!/usr/bin/env python3
"""orphans_seed.py - issue 12's seed-scale goal, measured: blocked_workers
--variant orphaned at seed scale (10,000 workers), three ways in alternating
rounds:

  plain        the scenario alone
  interposed   LD_PRELOAD=liborphans.so with at_exit=0: the malloc family
               interposed, no analysis (what the block table costs)
  orphans      LD_PRELOAD=liborphans.so: the analysis at exit

and prints, as medians: each way's wall time and its ratio to plain; the
analysis' own time from the report (the world stopped, the marking, the
stacks, in wall and CPU milliseconds); the threads reported and their groups;
the bytes pinned against the heap the workers hold (alloc.in_use_bytes at
`steady`, glibc's mallinfo2, chunk headers and page rounding included; and
the bytes the workers asked for: workers x (16,384 x 8 + 32)); and the CPU
time the analysis used (the analysing thread's, and the whole process's),
which a busy machine does not inflate as it does wall time.

    benchmarks/orphans_seed.py --rounds 5 --build-dir build [--scale seed]

Runs alternate (plain, interposed, orphans, plain, ...) so a machine's slow
minute hurts each alike; medians, not means. A run that fails stops the
benchmark (exit 1)."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATS = re.compile(r"world stopped (\d+) times?, ([\d.]+) ms the last, marked in ([\d.]+) ms, whole analysis ([\d.]+) ms")
MARK_CPU = re.compile(r"; ([\d.]+) ms of CPU")
STACKS = re.compile(r"stacks of the leaked ([\d.]+) ms \(([\d.]+) ms of CPU\)")
CPU = re.compile(r"CPU: ([\d.]+) ms in the analysing thread .*?, ([\d.]+) ms in the whole process")
SUMMARY = re.compile(r"SUMMARY: orphans: (\d+) leaked threads in (\d+) groups pinning (\d+) bytes in (\d+) blocks")


def steady(events):
    for line in open(events):
        ev = json.loads(line)
        if ev.get("event") == "phase" and ev.get("phase") == "steady":
            return ev["snapshot"]
    raise ValueError("no steady phase")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--build-dir", default=os.environ.get("LEAKLAB_BUILD_DIR", "build"))
    parser.add_argument("--scale", default="seed", choices=("quick", "seed"))
    args = parser.parse_args(argv)
    build = Path(args.build_dir).resolve()
    binary = build / "scenarios" / "blocked_workers"
    lib = build / "threadcheck" / "orphans" / "liborphans.so"
    for path in (binary, lib):
        if not path.exists():
            print(f"orphans_seed.py: {path} not built", file=sys.stderr)
            return 2
    base_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ORPHANS_OPTIONS")}
    wall = {"plain": [], "interposed": [], "orphans": []}
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        events = os.path.join(tmp, "events.jsonl")
        for round_no in range(args.rounds):
            for label in wall:
                env = dict(base_env)
                log = os.path.join(tmp, f"report{round_no}")
                if label != "plain":
                    env["LD_PRELOAD"] = str(lib)
                    env["ORPHANS_OPTIONS"] = ("at_exit=0" if label == "interposed"
                                              else f"log_path={log}:verbosity=2:exitcode=0")
                started = time.monotonic()
                r = subprocess.run([str(binary), "--variant", "orphaned", "--scale", args.scale, "--events", events],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                wall[label].append(time.monotonic() - started)
                if r.returncode != 0:
                    print(f"{label}: exit {r.returncode} in round {round_no + 1}: {r.stderr[-500:]}", file=sys.stderr)
                    return 1
                if label != "orphans":
                    continue
                reports = list(Path(tmp).glob(f"report{round_no}.*"))
                text = reports[0].read_text() if reports else ""
                m, s, c, k = STATS.search(text), SUMMARY.search(text), MARK_CPU.search(text), STACKS.search(text)
                u = CPU.search(text)
                if not (m and s and c and k and u):
                    print(f"orphans: round {round_no + 1}: the report has no figures:\n{text[-2000:]}", file=sys.stderr)
                    return 1
                snap = steady(events)
                start = json.loads(open(events).readline())
                figures.append({
                    "stops": int(m.group(1)), "stop_ms": float(m.group(2)), "mark_ms": float(m.group(3)),
                    "analysis_ms": float(m.group(4)), "mark_cpu_ms": float(c.group(1)),
                    "stacks_ms": float(k.group(1)), "stacks_cpu_ms": float(k.group(2)),
                    "cpu_ms": float(u.group(1)), "process_cpu_ms": float(u.group(2)),
                    "threads": int(s.group(1)), "groups": int(s.group(2)), "pinned": int(s.group(3)),
                    "in_use": snap["alloc"]["in_use_bytes"], "workers": start["workers"],
                })
    load = os.getloadavg()
    print(f"blocked_workers --variant orphaned --scale {args.scale}, {args.rounds} rounds; "
          f"load average now {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    base = statistics.median(wall["plain"])
    print(f"\n{'run':<12} {'median s':>9} {'ratio':>7}  runs (s)")
    for label, times in wall.items():
        med = statistics.median(times)
        print(f"{label:<12} {med:>9.2f} {med / base:>6.2f}x  " + " ".join(f"{t:.2f}" for t in times))
    med = lambda key: statistics.median(f[key] for f in figures)  # noqa: E731
    print(f"\nthe analysis at exit (medians of {len(figures)}):")
    print(f"  whole analysis   {med('analysis_ms'):9.1f} ms   (runs: "
          + " ".join(f"{f['analysis_ms']:.0f}" for f in figures) + ")")
    print(f"  CPU              {med('cpu_ms'):9.1f} ms in the analysing thread, {med('process_cpu_ms'):.1f} ms in the "
          "whole process (the stopped threads' signal handling included)")
    print(f"  stopping         {med('stop_ms'):9.1f} ms")
    print(f"  marking          {med('mark_ms'):9.1f} ms   {med('mark_cpu_ms'):.1f} ms of CPU")
    print(f"  stacks           {med('stacks_ms'):9.1f} ms   {med('stacks_cpu_ms'):.1f} ms of CPU")
    f = figures[0]
    asked = f["workers"] * (16384 * 8 + 32)
    print(f"  threads reported {', '.join(str(x['threads']) for x in figures)} "
          f"in {', '.join(str(x['groups']) for x in figures)} group(s) (workers: {f['workers']})")
    print(f"  pinned bytes     {med('pinned'):,.0f}   = {med('pinned') / med('in_use'):.4f} of the heap in use at steady "
          f"({med('in_use'):,.0f}), {med('pinned') / asked:.4f} of the buffers and arguments the workers asked for "
          f"({asked:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
