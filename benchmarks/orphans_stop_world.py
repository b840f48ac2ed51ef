#!/usr/bin/env python3
"""orphans_stop_world.py - issue 20's defect 6, measured: how long orphans
takes to stop the world and to analyse, run after run, at seed scale
(blocked_workers --variant orphaned: 10,000 workers blocked for good,
about 1.3 GB of heap). The bound to hold in every run: the whole analysis
under 2 s.

    benchmarks/orphans_stop_world.py --runs 20 --build-dir build [--scale seed]

Each run is the scenario with liborphans preloaded (ORPHANS_OPTIONS=
verbosity=2:exitcode=0:log_path=...); its figures are read from orphans' own
report (`world stopped N times, X ms the last, ... whole analysis T ms` and
the `stopping:` line: every stop, the longest, the time spent reading each
thread's state and signalling it, settle pauses, CPU time) and the load
average after the run (a busy machine stretches wall time, not CPU time).
Prints every run, then the
distribution (min, median, 90th percentile, max) of the stopping time (all
stops of a run) and of the whole analysis, and how many runs stayed under
the bound. Exit 0 when every run did, 1 when one did not or a run failed.
Runs one at a time: the machine should be otherwise quiet (2 cores here)."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATS = re.compile(r"world stopped (\d+) times?, ([\d.]+) ms the last, marked in ([\d.]+) ms, whole analysis ([\d.]+) ms")
STOPPING = re.compile(r"stopping: \d+ stops?, ([\d.]+) ms in all \(the longest ([\d.]+) ms; reading thread states and "
                      r"signalling ([\d.]+) ms, listing threads again ([\d.]+) ms\), ([\d.]+) ms of pauses between "
                      r"them; ([\d.]+) ms of CPU")
CPU = re.compile(r"CPU: ([\d.]+) ms in the analysing thread")
SUMMARY = re.compile(r"SUMMARY: orphans: (\d+) leaked threads")
TABLE = re.compile(r"block table: (\d+) bytes for (\d+) live blocks")
BOUND_MS = 2000.0


def quantiles(values):
    v = sorted(values)
    p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
    return f"min {v[0]:7.0f}  median {statistics.median(v):7.0f}  p90 {p90:7.0f}  max {v[-1]:7.0f} ms"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--build-dir", default=os.environ.get("LEAKLAB_BUILD_DIR", "build"))
    parser.add_argument("--scale", default="seed", choices=("quick", "seed"))
    args = parser.parse_args(argv)
    if args.runs < 1:
        print("orphans_stop_world.py: --runs must be at least 1", file=sys.stderr)
        return 2
    build = Path(args.build_dir).resolve()
    binary = build / "scenarios" / "blocked_workers"
    lib = build / "threadcheck" / "orphans" / "liborphans.so"
    for path in (binary, lib):
        if not path.exists():
            print(f"orphans_stop_world.py: {path} not built (cmake --build {build})", file=sys.stderr)
            return 2
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ORPHANS_OPTIONS")}
    runs = []
    print(f"blocked_workers --variant orphaned --scale {args.scale}, liborphans preloaded, {args.runs} runs")
    print(f"{'run':>4} {'stops':>5} {'stopping':>9} {'longest':>8} {'signal':>7} {'stop CPU':>9} {'analysis':>9} "
          f"{'its CPU':>8} {'leaked':>7} {'wall':>6} {'load':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            log = os.path.join(tmp, f"report{i}")
            run_env = dict(env, LD_PRELOAD=str(lib), ORPHANS_OPTIONS=f"log_path={log}:verbosity=2:exitcode=0")
            started = time.monotonic()
            done = subprocess.run([str(binary), "--variant", "orphaned", "--scale", args.scale, "--events", os.devnull],
                                  env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wall = time.monotonic() - started
            reports = list(Path(tmp).glob(f"report{i}.*"))
            text = reports[0].read_text() if reports else ""
            m, st, s, c = STATS.search(text), STOPPING.search(text), SUMMARY.search(text), CPU.search(text)
            if done.returncode != 0 or not (m and st and c):
                print(f"run {i + 1}: exit {done.returncode}, report without figures:\n{text[-2000:]}\n"
                      f"{done.stderr[-1000:]}", file=sys.stderr)
                return 1
            r = {"stops": int(m.group(1)), "stop_all": float(st.group(1)), "stop_max": float(st.group(2)),
                 "signal": float(st.group(3)), "stop_cpu": float(st.group(6)), "analysis": float(m.group(4)),
                 "cpu": float(c.group(1)), "leaked": int(s.group(1)) if s else 0, "wall": wall,
                 "load": os.getloadavg()[0]}
            t = TABLE.search(text)
            if t:
                r["table_bytes"], r["blocks"] = int(t.group(1)), int(t.group(2))
            runs.append(r)
            print(f"{i + 1:>4} {r['stops']:>5} {r['stop_all']:>7.0f}ms {r['stop_max']:>6.0f}ms {r['signal']:>5.0f}ms "
                  f"{r['stop_cpu']:>7.0f}ms {r['analysis']:>7.0f}ms {r['cpu']:>6.0f}ms {r['leaked']:>7} {wall:>5.1f}s "
                  f"{r['load']:>5.1f}", flush=True)
    load = os.getloadavg()
    under = sum(r["analysis"] < BOUND_MS for r in runs)
    tables = [r for r in runs if r.get("blocks")]
    if tables:
        t = tables[0]
        print(f"block table: {t['table_bytes']:,} bytes for {t['blocks']:,} live blocks "
              f"({t['table_bytes'] / t['blocks']:.1f} bytes each)")
    print(f"\nstopping (all stops of a run): {quantiles([r['stop_all'] for r in runs])}")
    print(f"whole analysis:                {quantiles([r['analysis'] for r in runs])}")
    print(f"stopping, CPU of the analysing thread: {quantiles([r['stop_cpu'] for r in runs])}")
    print(f"whole analysis, CPU of the analysing thread: {quantiles([r['cpu'] for r in runs])}")
    print(f"under {BOUND_MS:.0f} ms: {under} of {len(runs)} runs; load average now {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    workers = 10000 if args.scale == "seed" else 1000
    missed = [i + 1 for i, r in enumerate(runs) if r["leaked"] != workers]
    if missed:
        print(f"runs that did not report every one of the {workers} workers: {missed}")
    return 0 if under == len(runs) and not missed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
