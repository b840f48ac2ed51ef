#!/usr/bin/env python3
"""memstats_truth.py - `leaklab memstats` against a retention kernel's [truth].

    memstats_truth.py --build-dir BUILD KERNEL VARIANT

Runs the kernel (quick scale, glibc) twice, held with --hold-at at its
truth's baseline and then at its truth's phase, takes memstats.snapshot()
of the held process from outside each time, and compares the growth of
memstats' Go-style figures (HeapInuse, HeapIdle - HeapReleased,
HeapReleased, StackCached) with the truth's categories, within the truth's
tolerance (scripts/expect/retention.py, memstats_rows). The instrument is
tested by patterns whose bytes are known from their code.

Exit 0 when every figure meets the truth, 1 when one does not, 2 on bad
usage, 77 when memstats cannot look (no libc6-dbg, ptrace-free reads
refused), 99 when the kernel did not reach its hold."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.expect import expected, retention  # noqa: E402
from scripts.outside import memstats  # noqa: E402

HOLD_TIMEOUT_S = 60
HOLD_S = 600  # held at most this long; SIGTERM ends the hold (and the run) once memstats has looked


class NoHold(Exception):
    """The kernel did not reach its hold: exit 99."""


def read_events(path):
    """The complete event lines so far: the kernel may be writing the last one."""
    events = []
    for line in Path(path).read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            events.append(json.loads(line))
        except ValueError:
            break
    return events


def held_snapshot(binary, variant, phase, events_path):
    """Starts the kernel held at `phase`, snapshots it, ends it. Returns
    (memstats snapshot, start event)."""
    with open(events_path, "w") as out:
        proc = subprocess.Popen([str(binary), "--variant", variant, "--scale", "quick",
                                 "--hold-at", f"{phase}:{HOLD_S}"], stdout=out, stderr=subprocess.PIPE, text=True)
    try:
        start, deadline = None, time.monotonic() + HOLD_TIMEOUT_S
        while time.monotonic() < deadline:
            events = read_events(events_path)
            start = next((e for e in events if e.get("event") == "start"), start)
            if any(e.get("event") == "hold" for e in events):
                return memstats.snapshot(proc.pid), start
            if proc.poll() is not None:
                raise NoHold(f"memstats_truth: {binary.name} exited {proc.returncode} before holding at "
                                 f"'{phase}': {proc.stderr.read().strip()[-300:]}")
            # the hold event is a line in a file another process writes: poll it (bounded)
            time.sleep(0.02)
        raise NoHold(f"memstats_truth: {binary.name} did not hold at '{phase}' within {HOLD_TIMEOUT_S} s")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", required=True, type=Path)
    p.add_argument("kernel")
    p.add_argument("variant")
    args = p.parse_args(argv)
    exp = expected.load(expected.path_for(args.kernel, REPO / "expected"))
    truth = exp.truth
    if not getattr(truth, "retention", False) or args.variant not in truth.variants:
        p.error(f"{args.kernel} has no retention truth for variant '{args.variant}'")
    binary = args.build_dir / "scenarios" / args.kernel
    if not binary.exists():
        print(f"memstats_truth: {binary} is not built")
        return 99
    events = args.build_dir / "runs" / f"memstats_truth.{args.kernel}.{args.variant}.{os.getpid()}"
    events.parent.mkdir(parents=True, exist_ok=True)
    try:
        base, start = held_snapshot(binary, args.variant, truth.baseline, f"{events}.baseline.jsonl")
        at, _ = held_snapshot(binary, args.variant, truth.phase, f"{events}.{truth.phase}.jsonl")
    except memstats.Refused as e:
        print(f"memstats_truth: skipped: memstats cannot look: {e}")
        return 77
    except NoHold as e:
        print(e)
        return 99
    if start is None:
        print("memstats_truth: no start event")
        return 99
    for snap, where in ((base, truth.baseline), (at, truth.phase)):
        if snap.get("allocator") != "glibc" or not snap.get("glibc"):
            print(f"memstats_truth: skipped: memstats did not walk glibc's heap at {where}: {snap.get('notes')}")
            return 77
    rows = retention.memstats_rows(truth, args.variant, start["params"], "glibc", start["payload_bytes"], base, at)
    width = max(len(r[0]) for r in rows)
    for label, exp_b, obs, tol, ok in rows:
        print(f"{label:<{width}}  expected {exp_b / 2**20:8.2f} MiB ± {tol / 2**20:.2f}  "
              f"observed {obs / 2**20:8.2f} MiB  {'PASS' if ok else 'FAIL'}")
    print(f"memstats: settled {base.get('settled')}/{at.get('settled')}, "
          f"{base.get('elapsed_s')} s / {at.get('elapsed_s')} s")
    return 0 if all(r[4] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
