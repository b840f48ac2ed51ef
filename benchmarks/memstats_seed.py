#!/usr/bin/env python3
"""memstats_seed.py - time `leaklab memstats PID` on the seed's delayed_exit (10,000 threads,
held at `allocated`: every worker alive with its full buffer) and print the median of
--rounds runs against the bound of issue 21 (2 s).

    flock /work/notes/heavy.lock benchmarks/memstats_seed.py --build-dir build --rounds 5

The target (delayed_exit --scale seed --hold-at allocated) is started once and waited for
through its `hold` event. Each round runs the command people type (`leaklab.py memstats PID
--json`, a new Python process each time) and times it from outside, wall clock; the first,
cold round also reads glibc's layouts with gdb unless they are cached (it is reported apart
with --cold, which empties a private cache first). After every round the target must have
no thread traced or stopped and the items must add up to RSS, else exit 1. Prints the load
average beside the figures: a timing on a shared machine means little without it."""
import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOUND_S = 2.0
sys.path.insert(0, str(REPO / "tests" / "memstats"))
from checks import task_problems  # noqa: E402  (the safety test's own check: traced or stopped threads)


def wait_hold(proc, deadline):
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise SystemExit("memstats_seed.py: no 'hold' event from the target in time")
        chunk = os.read(proc.stdout.fileno(), 1 << 16)
        if not chunk:
            raise SystemExit("memstats_seed.py: the target ended before holding")
        buf += chunk
        for line in buf.split(b"\n")[:-1]:
            if line.strip() and json.loads(line).get("event") == "hold":
                return
        buf = buf.rsplit(b"\n", 1)[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=os.environ.get("LEAKLAB_BUILD_DIR", str(REPO / "build")))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--scale", choices=("quick", "seed"), default="seed")
    p.add_argument("--phase", default="allocated")
    p.add_argument("--allocator", choices=("glibc", "tcmalloc", "jemalloc"), default="glibc")
    p.add_argument("--cold", action="store_true", help="also time one run with an empty layout cache (gdb runs)")
    p.add_argument("--json", metavar="FILE", help="write the figures there too")
    args = p.parse_args()
    name = "delayed_exit" + ("" if args.allocator == "glibc" else f"-{args.allocator}")
    target = Path(args.build_dir) / "scenarios" / name
    proc = subprocess.Popen([str(target), "--scale", args.scale, "--hold-at", args.phase],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    figures = {}
    try:
        wait_hold(proc, time.monotonic() + 900)
        cmd = [sys.executable, str(REPO / "scripts" / "leaklab.py"), "memstats", str(proc.pid), "--json"]

        def timed(env=None):
            t0 = time.monotonic()
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
            wall = time.monotonic() - t0
            if run.returncode != 0:
                raise SystemExit(f"memstats_seed.py: memstats exited {run.returncode}: {run.stderr}")
            snap = json.loads(run.stdout)
            if sum(it["bytes"] for it in snap["items"]) != snap["rss_bytes"] or task_problems(proc.pid):
                print("memstats_seed.py: the items do not add up, or the target was left traced/stopped")
                sys.exit(1)
            return wall, snap

        if args.cold:
            with tempfile.TemporaryDirectory() as cache:
                cold, _ = timed({**os.environ, "XDG_CACHE_HOME": cache})
            figures["cold_s"] = round(cold, 3)
        timed()  # warms the layout cache, not counted
        walls, snap = [], None
        for _ in range(args.rounds):
            wall, snap = timed()
            walls.append(wall)
        figures.update(scale=args.scale, phase=args.phase, allocator=args.allocator,
                       threads=snap["stacks"]["live"] + 1, rss_bytes=snap["rss_bytes"],
                       rounds=[round(w, 3) for w in walls], median_s=round(statistics.median(walls), 3),
                       inside_s=snap["elapsed_s"], bound_s=BOUND_S,
                       load=os.getloadavg(), cores=os.cpu_count())
    finally:
        proc.kill()
        proc.wait(timeout=120)
        proc.stdout.close()
    print(f"memstats on {name} --scale {args.scale} held at {args.phase}: {figures['threads']} threads, "
          f"RSS {figures['rss_bytes'] / 2**20:.0f} MiB")
    print(f"  wall per run: {figures['rounds']} s; median {figures['median_s']} s (bound {BOUND_S} s); "
          f"snapshot() itself {figures['inside_s']} s in the last run")
    if "cold_s" in figures:
        print(f"  cold (layouts read with gdb, not cached): {figures['cold_s']} s")
    print(f"  load average {', '.join(f'{x:.2f}' for x in figures['load'])} on {figures['cores']} cores")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if figures["median_s"] <= BOUND_S else 1


if __name__ == "__main__":
    sys.exit(main())
