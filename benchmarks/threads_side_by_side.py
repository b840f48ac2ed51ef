#!/usr/bin/env python3
"""threads_side_by_side.py - time `leaklab threads PID` beside `eu-stack -p PID` and
`gdb -batch -ex 'thread apply all bt' -p PID` on one held blocked_workers, in alternating
rounds, and print each one's median wall time and its ratio to leaklab's.

    benchmarks/threads_side_by_side.py --scale seed --rounds 5 --build-dir build

The target (blocked_workers --variant leaky --hold forever; seed scale: 10,001 threads) is
started once and waited for through its `hold` event; every command then dumps the same
process. Runs alternate (leaklab, eu-stack, gdb, leaklab, ...) so that a slow minute on a
shared machine hurts each alike; medians, not means. After every run the target must have
every thread untraced and not stopped (a tool that left it stopped ends the benchmark,
exit 1), and `leaklab threads` must find the workers' group. Debuginfod is off for all
three (no network, and the same local debug info for each). A command missing from PATH
is left out with a note. Output of the commands goes to /dev/null; --json FILE keeps the
figures."""
import argparse
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKERS = {"quick": 1000, "seed": 10000}


def read_event(proc, deadline, name):
    """JSON-lines events from the target's stdout until `name`, within the deadline."""
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise SystemExit(f"threads_side_by_side.py: no '{name}' event from the target in time")
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            raise SystemExit(f"threads_side_by_side.py: the target ended before '{name}'")
        buf += chunk
        for line in buf.split(b"\n")[:-1]:
            if line.strip() and json.loads(line).get("event") == name:
                return
        buf = buf.rsplit(b"\n", 1)[-1]


def held_threads(pid):
    """{tid: (state, TracerPid)} of the target's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        out[tid] = (fields["State"].split()[0], int(fields["TracerPid"]))
    return out


def released(pid, timeout=30):
    """True once no thread is traced or stopped (a debugger may take a moment to let go)."""
    deadline = time.monotonic() + timeout
    while True:
        bad = [t for t, (state, tracer) in held_threads(pid).items() if tracer or state in "tT"]
        if not bad:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(WORKERS), default="seed", help="target scale (default seed)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of every command (default 5: the median of 5)")
    p.add_argument("--build-dir", default=os.environ.get("LEAKLAB_BUILD_DIR", str(REPO / "build")))
    p.add_argument("--tools", default="leaklab,eu-stack,gdb", help="which, in order (default leaklab,eu-stack,gdb)")
    p.add_argument("--timeout", type=float, default=600, help="per command, seconds (default 600)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    build = Path(args.build_dir).resolve()
    target_binary = build / "scenarios" / "blocked_workers"
    if not os.access(target_binary, os.X_OK):
        raise SystemExit(f"threads_side_by_side.py: {target_binary} is not built")

    commands = {
        "leaklab": lambda pid: [sys.executable, str(REPO / "scripts" / "leaklab.py"), "threads", str(pid),
                                "--build-dir", str(build)],
        "eu-stack": lambda pid: ["eu-stack", "-p", str(pid)],
        "gdb": lambda pid: ["gdb", "-batch", "-nx", "-iex", "set debuginfod enabled off",
                            "-ex", "thread apply all bt", "-p", str(pid)],
    }
    chosen = []
    for name in args.tools.split(","):
        if name not in commands:
            p.error(f"--tools: unknown '{name}'; accepted: {', '.join(commands)}")
        exe = commands[name](0)[0]
        if not shutil.which(exe) and not os.path.isabs(exe):
            print(f"note: {exe} not found, {name} left out (Debian: elfutils, gdb)")
            continue
        chosen.append(name)
    env = {k: v for k, v in os.environ.items() if k != "DEBUGINFOD_URLS"}

    target = subprocess.Popen([str(target_binary), "--variant", "leaky", "--scale", args.scale, "--hold", "forever"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        read_event(target, time.monotonic() + 900, "hold")
        nthreads = len(held_threads(target.pid))
        print(f"target: blocked_workers --scale {args.scale}, pid {target.pid}, {nthreads} threads held; "
              f"{args.rounds} rounds of {', '.join(chosen)}", flush=True)
        times = {name: [] for name in chosen}
        codes = {name: [] for name in chosen}
        held = []  # leaklab's own figure: the longest any thread was stopped
        for round_no in range(1, args.rounds + 1):
            for name in chosen:
                argv_ = commands[name](target.pid)
                started = time.monotonic()
                r = subprocess.run(argv_, stdin=subprocess.DEVNULL, capture_output=True, timeout=args.timeout, env=env)
                elapsed = time.monotonic() - started
                times[name].append(elapsed)
                codes[name].append(r.returncode)
                print(f"round {round_no}: {name:<9} {elapsed:7.2f} s  exit {r.returncode}", flush=True)
                if not released(target.pid):
                    print(f"{name} left the target traced or stopped", file=sys.stderr)
                    return 1
                if name == "leaklab" and (r.returncode != 0 or
                                          f"{WORKERS[args.scale]} @ ".encode() not in r.stdout):
                    print(f"leaklab threads did not find the {WORKERS[args.scale]} workers (exit {r.returncode}): "
                          f"{r.stderr.decode(errors='replace')[-500:]}", file=sys.stderr)
                    return 1
                if name == "leaklab":
                    m = re.search(rb"held ([\d.]+) s at most", r.stdout)
                    held.append(float(m.group(1)) if m else float("nan"))
    finally:
        target.kill()
        target.wait(timeout=300)

    base = statistics.median(times[chosen[0]])
    print(f"\n{'command':<10} {'median s':>9} {'ratio':>7}  runs (s)  [{nthreads} threads]")
    figures = {}
    for name in chosen:
        median = statistics.median(times[name])
        figures[name] = {"median_s": round(median, 3), "ratio": round(median / base, 2),
                         "runs_s": [round(t, 3) for t in times[name]], "exit_codes": codes[name]}
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:<10} {median:>9.2f} {median / base:>6.2f}x  {runs}")
    if held:
        print(f"leaklab held the threads {statistics.median(held):.2f} s (median of {', '.join(f'{h:.2f}' for h in held)})")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps({"scale": args.scale, "threads": nthreads, "rounds": args.rounds,
                                         "load_average": os.getloadavg(), "leaklab_held_s": held,
                                         "figures": figures}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
