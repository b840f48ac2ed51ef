#!/usr/bin/env python3
"""fuzz.py - runs a fuzz target of fuzz/ and says what it found: `./leaklab fuzz`.

Targets (docs/reliability.md):
  gateway_decoder  rw_gateway's frame decoder (libFuzzer: BUILD/fuzz/fuzz_gateway_decoder)
  options          every scenario's command line (libFuzzer: BUILD/fuzz/fuzz_options)
  expected         the expected files' expressions (Python: fuzz/expected/fuzz_expected.py)

A run starts from the target's committed corpus (fuzz/TARGET/corpus: seeds
and every input that once found a bug) plus the inputs earlier runs found
(BUILD/fuzz/work/TARGET, kept between runs; --fresh starts over), and stops
after --seconds or --runs or at the first finding, written to
BUILD/fuzz/artifacts/TARGET/. It prints one summary line: executions, their
rate, coverage, corpus size, findings.

--smoke is the CTest form (fuzz.TARGET): a fixed seed and a fresh, temporary
working corpus, so the same inputs run every time; 77 when the target is not
built (no clang with libFuzzer).

Exit codes: 0 no finding, 1 a finding (fix it at its cause, then copy the
input into fuzz/TARGET/corpus as a regression input), 2 bad usage, 77 the
target is not built, 99 the fuzzer itself failed.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FUZZ = REPO / "fuzz"
EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_SKIP, EXIT_SYSTEM = 0, 1, 2, 77, 99

# name -> how it runs. max_len: the largest input libFuzzer makes; the
# decoder's must hold a largest frame (16,384 bytes) and the start of another.
TARGETS = {
    "gateway_decoder": {"kind": "libfuzzer", "binary": "fuzz_gateway_decoder", "max_len": 40000,
                        "what": "rw_gateway's frame decoder (scenarios/rw_protocol.c)"},
    "options": {"kind": "libfuzzer", "binary": "fuzz_options", "max_len": 4096,
                "what": "every scenario's command line (common/options.c)"},
    "expected": {"kind": "python", "what": "the expected files' expressions (scripts/expect/expected.py)"},
}


def build_dir_of(arg):
    return Path(arg or os.environ.get("LEAKLAB_BUILD_DIR") or REPO / "build").resolve()


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="leaklab fuzz", description="Run a fuzz target of fuzz/ and report what it found.",
        epilog="targets: " + "; ".join(f"{k}: {v['what']}" for k, v in TARGETS.items())
               + ". exit codes: 0 no finding, 1 a finding, 2 bad usage, 77 target not built, 99 fuzzer failure")
    p.add_argument("target", metavar="TARGET", choices=sorted(TARGETS), help=", ".join(sorted(TARGETS)))
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, metavar="N", help="run for N seconds (default 60)")
    budget.add_argument("--runs", type=int, metavar="N", help="run N mutated inputs instead")
    p.add_argument("--seed", type=int, help="random seed (default: random; 1 with --smoke)")
    p.add_argument("--smoke", action="store_true",
                   help="the CTest form: fixed seed, fresh temporary working corpus, 77 if not built")
    p.add_argument("--fresh", action="store_true", help="forget the inputs earlier runs found")
    p.add_argument("--build-dir", metavar="DIR", help="CMake build dir (default: $LEAKLAB_BUILD_DIR or build/)")
    args = p.parse_args(argv)
    if args.seconds is not None and not 0 < args.seconds <= 7 * 86400:
        p.error("--seconds: expected a number in (0, 604800]")
    if args.runs is not None and not 0 <= args.runs <= 10 ** 12:
        p.error("--runs: expected an integer in [0, 10^12]")
    if args.seconds is None and args.runs is None:
        args.seconds = 60.0
    if args.smoke and args.seed is None:
        args.seed = 1
    return args


def libfuzzer_command(args, spec, binary, work, artifacts):
    corpus = FUZZ / args.target / "corpus"
    cmd = [str(binary), str(work), str(corpus), f"-max_len={spec['max_len']}", "-timeout=10",
           "-rss_limit_mb=2048", "-print_final_stats=1", f"-artifact_prefix={artifacts}/"]
    dictionary = FUZZ / args.target / f"{args.target}.dict"
    if dictionary.is_file():
        cmd.append(f"-dict={dictionary}")
    cmd.append(f"-runs={args.runs}" if args.runs is not None else f"-max_total_time={max(1, round(args.seconds))}")
    if args.seed is not None:
        cmd.append(f"-seed={args.seed}")
    return cmd


def python_command(args, work, artifacts):
    cmd = [sys.executable, str(FUZZ / "expected" / "fuzz_expected.py"), str(FUZZ / "expected" / "corpus"),
           str(work), "--corpus-out", str(work), "--artifacts", str(artifacts)]
    cmd += [f"--runs={args.runs}"] if args.runs is not None else [f"--seconds={args.seconds}"]
    cmd.append(f"--seed={args.seed if args.seed is not None else int.from_bytes(os.urandom(4), 'little')}")
    return cmd


def summarize(target, output, took, artifacts_before, artifacts):
    """(one line from the fuzzer's own statistics, the new finding files).
    Both fuzzers write every finding to the artifacts folder (libFuzzer:
    crash-, leak-, timeout-, oom-; fuzz_expected.py: crash-, slow-)."""
    def last(pattern):
        found = re.findall(pattern, output)
        return found[-1] if found else None
    execs = last(r"stat::number_of_executed_units: (\d+)") or last(r"#(\d+)\s+DONE")
    cov, ft, corp = last(r"\bcov:? (\d+)"), last(r"\bft:? (\d+)"), last(r"\bcorp:? (\d+)")
    new = sorted(set(p.name for p in artifacts.iterdir()) - artifacts_before)
    rate = f"{int(execs) / took:,.0f}/s" if execs and took > 0 else "?/s"
    line = (f"fuzz {target}: {int(execs or 0):,} executions in {took:.0f} s ({rate}), coverage {cov or '?'} edges, "
            f"{ft or '?'} features, corpus {corp or '?'} inputs; findings: ")
    if not new:
        return line + "none", new
    why = last(r"SUMMARY: .*") or last(r"fuzz_\w+: FINDING.*") or last(r"fuzz_\w+: .*") or "see the output"
    return line + f"{len(new)}: {why} ({', '.join(str(artifacts / n) for n in new)})", new


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spec = TARGETS[args.target]
    build = build_dir_of(args.build_dir)
    # The smoke test's findings go to a folder of their own, so a long run
    # beside it can never be mistaken for its finding, nor the reverse.
    artifacts = build / "fuzz" / "artifacts" / args.target / ("smoke" if args.smoke else "")
    if spec["kind"] == "libfuzzer":
        binary = build / "fuzz" / spec["binary"]
        if not binary.is_file():
            print(f"SKIP: {binary} is not built: the fuzz targets need clang with its libFuzzer runtime "
                  "(Debian: clang, libclang-rt-dev; scripts/install-deps), then a build")
            return EXIT_SKIP
    tmp = tempfile.TemporaryDirectory(prefix=f"leaklab-fuzz-{args.target}-") if args.smoke else None
    try:
        work = Path(tmp.name) if tmp else build / "fuzz" / "work" / args.target
        if args.fresh and work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        artifacts.mkdir(parents=True, exist_ok=True)
        before = set(p.name for p in artifacts.iterdir())
        cmd = (libfuzzer_command(args, spec, binary, work, artifacts) if spec["kind"] == "libfuzzer"
               else python_command(args, work, artifacts))
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.monotonic()
        try:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace")
        except OSError as e:
            print(f"leaklab fuzz: cannot run {cmd[0]}: {e.strerror}", file=sys.stderr)
            return EXIT_SYSTEM
        took = time.monotonic() - t0
        tail = done.stdout.splitlines()
        print("\n".join(tail[-40:] if not args.smoke or done.returncode else tail[-6:]))
        line, findings = summarize(args.target, done.stdout, took, before, artifacts)
        print(line, flush=True)
        if findings:
            print(f"fix it at its cause, then copy the input into {FUZZ / args.target / 'corpus'} "
                  "as a regression input (docs/reliability.md)")
            return EXIT_FINDING
        if done.returncode != 0:
            print(f"leaklab fuzz: the fuzzer exited {done.returncode} without a finding; see its output above",
                  file=sys.stderr)
            return EXIT_SYSTEM
        return EXIT_OK
    finally:
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
