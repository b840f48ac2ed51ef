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
    benchmarks/orphans_seed.py --rounds 20 --ways orphans     # issue 20's defect 6

Every orphans run is also printed on a line of its own (stops, the time to
stop the world, its longest stop, the time spent reading thread states and
signalling, the analysis, its CPU, the threads reported, the load average),
followed by the distribution (min, median, 90th percentile, max) of the
stopping time and of the whole analysis and how many runs stayed under the
bound: the whole analysis under 2 s in every run, and every worker reported.

Runs alternate (plain, interposed, orphans, plain, ...) so a machine's slow
minute hurts each alike; medians, not means. Exit 0 when every orphans run
held the bound, 1 when one did not or a run failed, 2 on bad usage. Runs one
at a time: the machine should be otherwise quiet (2 cores here)."""
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
STOPPING = re.compile(r"stopping: \d+ stops?, ([\d.]+) ms in all \(the longest ([\d.]+) ms; reading thread states and "
                      r"signalling ([\d.]+) ms, listing threads again ([\d.]+) ms\), ([\d.]+) ms of pauses between "
                      r"them; ([\d.]+) ms of CPU")
TABLE = re.compile(r"block table: (\d+) bytes for (\d+) live blocks")
WAYS = ("plain", "interposed", "orphans")
BOUND_MS = 2000.0


def quantiles(values):
    v = sorted(values)
    p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
    return f"min {v[0]:7.0f}  median {statistics.median(v):7.0f}  p90 {p90:7.0f}  max {v[-1]:7.0f} ms"


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
    parser.add_argument("--ways", default=",".join(WAYS),
                        help="which runs to make, comma-separated (default all: plain,interposed,orphans)")
    args = parser.parse_args(argv)
    ways = [w for w in args.ways.split(",") if w]
    if args.rounds < 1 or "orphans" not in ways or any(w not in WAYS for w in ways):
        print(f"orphans_seed.py: --rounds must be at least 1 and --ways a list of {', '.join(WAYS)} with orphans in it",
              file=sys.stderr)
        return 2
    build = Path(args.build_dir).resolve()
    binary = build / "scenarios" / "blocked_workers"
    lib = build / "threadcheck" / "orphans" / "liborphans.so"
    for path in (binary, lib):
        if not path.exists():
            print(f"orphans_seed.py: {path} not built", file=sys.stderr)
            return 2
    base_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ORPHANS_OPTIONS")}
    wall = {w: [] for w in WAYS if w in ways}
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
                u, st = CPU.search(text), STOPPING.search(text)
                if not (m and s and c and k and u and st):
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
                    "stop_all_ms": float(st.group(1)), "stop_max_ms": float(st.group(2)),
                    "signal_ms": float(st.group(3)), "stop_cpu_ms": float(st.group(6)),
                    "wall": wall["orphans"][-1], "load": os.getloadavg()[0],
                })
                t = TABLE.search(text)
                if t:
                    figures[-1]["table_bytes"], figures[-1]["blocks"] = int(t.group(1)), int(t.group(2))
                f = figures[-1]
                if len(figures) == 1:
                    print(f"{'run':>4} {'stops':>5} {'stopping':>9} {'longest':>8} {'signal':>7} {'stop CPU':>9} "
                          f"{'analysis':>9} {'its CPU':>8} {'leaked':>7} {'wall':>6} {'load':>5}")
                print(f"{len(figures):>4} {f['stops']:>5} {f['stop_all_ms']:>7.0f}ms {f['stop_max_ms']:>6.0f}ms "
                      f"{f['signal_ms']:>5.0f}ms {f['stop_cpu_ms']:>7.0f}ms {f['analysis_ms']:>7.0f}ms "
                      f"{f['cpu_ms']:>6.0f}ms {f['threads']:>7} {f['wall']:>5.1f}s {f['load']:>5.1f}", flush=True)
    load = os.getloadavg()
    print(f"blocked_workers --variant orphaned --scale {args.scale}, {args.rounds} rounds; "
          f"load average now {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    base = statistics.median(wall["plain"]) if "plain" in wall else None
    print(f"\n{'run':<12} {'median s':>9} {'ratio':>7}  runs (s)")
    for label, times in wall.items():
        med = statistics.median(times)
        ratio = f"{med / base:>6.2f}x" if base else "      -"
        print(f"{label:<12} {med:>9.2f} {ratio}  " + " ".join(f"{t:.2f}" for t in times))
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
    tables = [x for x in figures if x.get("blocks")]
    if tables:
        print(f"  block table      {tables[0]['table_bytes']:,} bytes for {tables[0]['blocks']:,} live blocks "
              f"({tables[0]['table_bytes'] / tables[0]['blocks']:.1f} bytes each)")
    print(f"\nstopping (all stops of a run): {quantiles([x['stop_all_ms'] for x in figures])}")
    print(f"whole analysis:                {quantiles([x['analysis_ms'] for x in figures])}")
    print(f"whole analysis, CPU of the analysing thread: {quantiles([x['cpu_ms'] for x in figures])}")
    under = sum(x["analysis_ms"] < BOUND_MS for x in figures)
    missed = [i + 1 for i, x in enumerate(figures) if x["threads"] != x["workers"]]
    print(f"under {BOUND_MS:.0f} ms: {under} of {len(figures)} runs")
    if missed:
        print(f"runs that did not report every worker: {missed}")
    return 0 if under == len(figures) and not missed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
