#!/usr/bin/env python3
"""flaky.py - flakiness as a number: `./leaklab flaky -L quick -n 10`.

Runs the CTest tests a label selects N times over (each time a full ctest
run, in the build directory), and prints per test how many runs failed,
how many were skipped, and its median and longest time; then the wall time
of each repetition. `ctest --repeat until-fail:N` stops at the first
failure and says nothing of how often; this counts. The bar is zero.

Each repetition's JUnit report and output go to
BUILD/flaky/LABEL-YYYYmmdd-HHMMSS/run-K.xml and run-K.log, so a failure's
output can be read afterwards (the JUnit report has every test's output).

Exit codes: 0 no run of any test failed, 1 some run failed (the table says
which), 2 bad usage, 99 ctest could not run or selected no test.
"""

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_FLAKY, EXIT_USAGE, EXIT_SYSTEM = 0, 1, 2, 99


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="leaklab flaky", description="Repeat a CTest selection N times; report per test how many runs failed.",
        epilog="Arguments after -- go to ctest unchanged. exit codes: 0 no failure, 1 a test failed in some run, "
               "2 bad usage, 99 ctest could not run or selected no test")
    p.add_argument("-L", "--label", metavar="REGEX", help="tests whose label matches (ctest -L), e.g. quick")
    p.add_argument("-R", "--tests-regex", metavar="REGEX", help="tests whose name matches (ctest -R)")
    p.add_argument("-E", "--exclude-regex", metavar="REGEX", help="leave out tests whose name matches (ctest -E)")
    p.add_argument("-n", "--repeat", type=int, default=10, metavar="N", help="repetitions (default 10)")
    p.add_argument("-j", "--parallel", type=int, metavar="J",
                   help="tests side by side (ctest -j; default: one at a time, as CTest's default)")
    p.add_argument("--build-dir", metavar="DIR", help="CMake build dir (default: $LEAKLAB_BUILD_DIR or build/)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where the JUnit reports and logs go (default: BUILD/flaky/LABEL-DATE)")
    argv = list(argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = p.parse_args(argv)
    if not 1 <= args.repeat <= 10000:
        p.error("-n/--repeat: expected an integer in [1, 10000]")
    if args.parallel is not None and not 1 <= args.parallel <= 1024:
        p.error("-j/--parallel: expected an integer in [1, 1024]")
    args.extra = extra
    return args


def ctest_command(args, junit):
    cmd = ["ctest", "--output-junit", str(junit), "--output-on-failure"]
    for flag, value in (("-L", args.label), ("-R", args.tests_regex), ("-E", args.exclude_regex)):
        if value:
            cmd += [flag, value]
    if args.parallel:
        cmd += ["--parallel", str(args.parallel)]
    return cmd + args.extra


def read_junit(path):
    """{test: (outcome, seconds)}, outcome one of passed, failed, skipped."""
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        status = case.get("status", "")
        if status == "fail" or case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif status in ("notrun", "disabled") or case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        results[case.get("name")] = (outcome, float(case.get("time") or 0))
    return results


def table(per_test, repeat):
    rows = []
    for name, runs in per_test.items():
        failed = sum(1 for o, _ in runs if o == "failed")
        skipped = sum(1 for o, _ in runs if o == "skipped")
        times = [t for o, t in runs if o != "skipped"] or [0.0]
        rows.append((-failed, name, f"{failed}/{len(runs)}", str(skipped), f"{statistics.median(times):.2f}",
                     f"{max(times):.2f}"))
    rows.sort()
    head = ("test", "failed", "skipped", "median s", "max s")
    body = [r[1:] for r in rows]
    widths = [max(len(r[i]) for r in body + [head]) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head] + body]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    build = Path(args.build_dir or os.environ.get("LEAKLAB_BUILD_DIR") or REPO / "build").resolve()
    if not (build / "CTestTestfile.cmake").is_file():
        print(f"leaklab flaky: {build} is not a configured build (no CTestTestfile.cmake): "
              "build first (./leaklab test, or cmake --build)", file=sys.stderr)
        return EXIT_SYSTEM
    if not shutil.which("ctest"):
        print("leaklab flaky: ctest not found (Debian: cmake)", file=sys.stderr)
        return EXIT_SYSTEM
    what = args.label or args.tests_regex or "all"
    out = args.out or build / "flaky" / f"{''.join(c if c.isalnum() else '_' for c in what)}-" \
                                       f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    per_test, walls = {}, []
    print(f"flaky: {what} x {args.repeat} in {build}"
          f"{f', {args.parallel} side by side' if args.parallel else ''}; reports in {out}", flush=True)
    started = time.monotonic()
    for k in range(1, args.repeat + 1):
        junit, log = out / f"run-{k}.xml", out / f"run-{k}.log"
        t0 = time.monotonic()
        with open(log, "w") as f:
            done = subprocess.run(ctest_command(args, junit), cwd=build, stdout=f, stderr=subprocess.STDOUT)
        walls.append(time.monotonic() - t0)
        try:
            results = read_junit(junit)
        except (OSError, ET.ParseError) as e:
            print(f"leaklab flaky: run {k}: no JUnit report from ctest (exit {done.returncode}): {e}; see {log}",
                  file=sys.stderr)
            return EXIT_SYSTEM
        if not results:
            print(f"leaklab flaky: the selection matches no test; see {log}", file=sys.stderr)
            return EXIT_SYSTEM
        for name, result in results.items():
            per_test.setdefault(name, []).append(result)
        failed = sorted(n for n, (o, _) in results.items() if o == "failed")
        print(f"run {k}/{args.repeat}: {len(results)} tests, {len(failed)} failed"
              f"{': ' + ', '.join(failed) if failed else ''}, wall {walls[-1]:.0f} s", flush=True)
    total = time.monotonic() - started
    print()
    print(table(per_test, args.repeat))
    failing = sorted(n for n, runs in per_test.items() if any(o == "failed" for o, _ in runs))
    failures = sum(1 for runs in per_test.values() for o, _ in runs if o == "failed")
    print(f"\n{len(per_test)} tests x {args.repeat} runs: {failures} failed run(s) in {len(failing)} test(s); "
          f"wall per run median {statistics.median(walls):.0f} s, min {min(walls):.0f} s, max {max(walls):.0f} s; "
          f"total {total:.0f} s")
    if failing:
        print(f"flaky: {', '.join(failing)} (their output: {out}/run-K.xml and run-K.log)")
        return EXIT_FLAKY
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
