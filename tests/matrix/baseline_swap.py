#!/usr/bin/env python3
"""baseline_swap.py - a baseline catches a tool that stops reporting.

Saves a baseline of blocked_workers under LeakSanitizer and ThreadSanitizer
(real tools, quick scale), then diffs it against a run where LeakSanitizer is
swapped for a wrapper that hides its report (leak detection switched off,
pointed at with LEAKLAB_SANITIZER_BUILD_DIR, as a maintainer would point at a
fresh build). The diff must exit 1 and flag the lsan column, and only it.
Then a tool pointed at nothing (LEAKLAB_HEAPTRACK=/nonexistent) must skip
(77) saying why.

Exit 0 pass, 1 fail, 77 when the sanitizer builds are missing.
usage: baseline_swap.py BUILD_DIR"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LEAKLAB = [sys.executable, str(REPO / "scripts" / "leaklab.py")]
SCENARIO = "blocked_workers"

HIDING_LSAN = """#!/bin/sh
# A LeakSanitizer that hides its report: the same binary, leak detection off.
LSAN_OPTIONS="${{LSAN_OPTIONS}}:detect_leaks=0" exec {real} "$@"
"""


def run(argv, env=None):
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    print(f"$ {' '.join(argv[1:])}  -> exit {done.returncode}")
    return done


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[-1], file=sys.stderr)
        return 2
    build = Path(argv[1]).resolve()
    scenarios = build / "scenarios"
    for suffix in ("lsan", "tsan"):
        if not (scenarios / f"{SCENARIO}-{suffix}").is_file():
            print(f"SKIP: {scenarios / f'{SCENARIO}-{suffix}'} not built (clang missing at configure time)")
            return 77
    failures = []
    with tempfile.TemporaryDirectory(prefix="leaklab-baseline-") as tmp:
        tmp = Path(tmp)
        common = ["--scenarios", SCENARIO, "--tools", "lsan,tsan", "--build-dir", str(build)]
        saved = run(LEAKLAB + ["baseline", "save", "swap", "--dir", str(tmp / "baselines"),
                               "--out", str(tmp / "m-saved"), *common])
        if saved.returncode != 0:
            print(saved.stdout[-3000:], saved.stderr[-2000:])
            return 1
        # The swapped tool: a folder of sanitizer binaries where lsan hides its report.
        swapped = tmp / "swapped"
        swapped.mkdir()
        wrapper = swapped / f"{SCENARIO}-lsan"
        wrapper.write_text(HIDING_LSAN.format(real=scenarios / f"{SCENARIO}-lsan"))
        wrapper.chmod(0o755)
        (swapped / f"{SCENARIO}-tsan").symlink_to(scenarios / f"{SCENARIO}-tsan")
        diffed = run(LEAKLAB + ["baseline", "diff", "swap", "--dir", str(tmp / "baselines"),
                                "--out", str(tmp / "m-swapped"), "--build-dir", str(build)],
                     env={"LEAKLAB_SANITIZER_BUILD_DIR": str(swapped)})
        text = diffed.stdout
        report = text[text.find("diff against baseline"):]
        print(report)
        if diffed.returncode != 1:
            failures.append(f"baseline diff exited {diffed.returncode}, expected 1 (a change)")
        if "lsan: " not in report or "verdict: reported -> not reported" not in report:
            failures.append("the diff does not flag lsan's canary cell (reported -> not reported)")
        if "tsan: " in report.replace("note: tsan:", ""):
            failures.append("the diff flags tsan, which was not swapped")
        # A tool pointed at nothing is skipped, with the reason.
        skipped = run(LEAKLAB + ["matrix", "--scenarios", SCENARIO, "--tools", "heaptrack",
                                 "--build-dir", str(build), "--out", str(tmp / "m-skip")],
                      env={"LEAKLAB_HEAPTRACK": "/nonexistent"})
        if skipped.returncode != 77 or "LEAKLAB_HEAPTRACK=/nonexistent" not in skipped.stdout:
            failures.append(f"matrix with LEAKLAB_HEAPTRACK=/nonexistent exited {skipped.returncode}, "
                            "expected 77 naming the variable")
    for f in failures:
        print(f"FAIL: {f}")
    if not failures:
        print("PASS: the baseline diff flags the swapped tool's column, and only it; a missing tool skips")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
