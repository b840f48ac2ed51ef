#!/usr/bin/env python3
"""leaklab command line: run a scenario into a run directory, check it against its expected file, list scenarios."""

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comparer  # noqa: E402
import expected  # noqa: E402
import runner  # noqa: E402
from runner import EXIT_FAILED, EXIT_OK, EXIT_SKIP, EXIT_SYSTEM, EXIT_USAGE  # noqa: E402

EXPECTED_DIR = runner.REPO / "expected"

EXIT_MEANING = {
    EXIT_OK: "ran as designed", EXIT_FAILED: "an expectation failed", EXIT_USAGE: "bad usage",
    EXIT_SKIP: "skipped", EXIT_SYSTEM: "harness or system failure",
}


class Parser(argparse.ArgumentParser):
    # argparse exits 2 on bad usage already; say where to look for more.
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def positive(kind, low, high):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number; accepted: {low:g} to {high:g} {kind}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; accepted: {low:g} to {high:g} {kind}")
        return value
    return parse


def build_parser():
    top = Parser(prog="leaklab.py",
                 description="Run leaklab scenarios (natively or under a tool) into run directories "
                             "and check them against expected/SCENARIO.toml.",
                 epilog="exit codes: 0 ok, 1 expectation failed, 2 bad usage, 77 skipped, 99 harness failure")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def run_options(p):
        p.add_argument("scenario", metavar="SCENARIO", help="scenario name (see: leaklab.py list)")
        p.add_argument("--variant", help="variant to run (default: the scenario's first)")
        p.add_argument("--scale", choices=expected.SCALES, help="scenario defaults (default: seed)")
        p.add_argument("--allocator", choices=expected.ALLOCATORS,
                       help="malloc to link (default: tcmalloc for heapprof, else glibc)")
        p.add_argument("--tool", choices=expected.TOOLS, default="native", help="observer (default: native)")
        p.add_argument("--out", type=Path, default=runner.REPO / "runs", metavar="DIR",
                       help="where run directories go (default: runs/ in the repo)")
        p.add_argument("--build-dir", metavar="DIR",
                       help="CMake build dir (default: $LEAKLAB_BUILD_DIR or build/)")
        p.add_argument("--interval-ms", metavar="MS", type=positive("ms", 1, 10000), default=10.0,
                       help="RSS/threads sampling interval (default: 10)")
        p.add_argument("--timeout", metavar="SEC", type=positive("s", 1, 86400), default=runner.DEFAULT_TIMEOUT_S,
                       help=f"runner timeout: kill the run after this many seconds (default: {runner.DEFAULT_TIMEOUT_S})")
        p.add_argument("--expected", type=Path, metavar="FILE",
                       help="expected file (default: expected/SCENARIO.toml)")

    run_epilog = ("Options after '--' go to the scenario unchanged (e.g. -- --workers 200). "
                  "The run directory is DIR/SCENARIO.VARIANT.TOOL.ALLOCATOR-YYYYmmdd-HHMMSS-PID.")
    p = sub.add_parser("run", help="run a scenario into a new run directory",
                       usage="leaklab.py run SCENARIO [options] [-- scenario options]", epilog=run_epilog)
    run_options(p)
    p = sub.add_parser("check", help="run, then compare with the expected file (exit 0/1/77)",
                       usage="leaklab.py check SCENARIO [options] [-- scenario options]", epilog=run_epilog)
    run_options(p)
    p = sub.add_parser("compare-only", help="compare an existing run directory with its expected file")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    p.add_argument("--expected", type=Path, metavar="FILE",
                   help="expected file (default: expected/SCENARIO.toml)")
    p = sub.add_parser("list", help="scenarios with an expected file or a built binary")
    p.add_argument("--build-dir", metavar="DIR",
                   help="CMake build dir (default: $LEAKLAB_BUILD_DIR or build/)")
    p.add_argument("--variants", metavar="SCENARIO",
                   help="print only SCENARIO's variants, one per line (for scripts)")
    return top


def scenario_help(binary):
    """Summary and variants from `BINARY --help`: {"summary", "variants", "default"}
    (empty when the text cannot be read; the binary then validates alone)."""
    try:
        out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    lines = out.splitlines()
    info = {"summary": "", "variants": [], "default": None}
    if len(lines) > 2 and lines[0].startswith("usage:"):
        para = []
        for line in lines[2:]:
            if not line.strip():
                break
            para.append(line.strip())
        info["summary"] = " ".join(para)
    in_variants = False
    for line in lines:
        if line.strip() == "variants:":
            in_variants = True
            continue
        if in_variants:
            if not line.strip():
                break
            name = line.split()[0]
            info["variants"].append(name)
            if line.rstrip().endswith("(default)"):
                info["default"] = name
    return info


def known_scenarios(build_dir):
    names = {p.stem for p in EXPECTED_DIR.glob("*.toml")} if EXPECTED_DIR.is_dir() else set()
    return sorted(names | set(runner.built_scenarios(build_dir)))


def fail(code, message):
    print(f"leaklab: {message}", file=sys.stderr if code in (EXIT_USAGE, EXIT_SYSTEM) else sys.stdout)
    return code


def make_spec(args, scenario_options):
    """Validates run/check arguments into a RunSpec plus the expected file (or None)."""
    build_dir = runner.resolve_build_dir(args.build_dir)
    known = known_scenarios(build_dir)
    if args.scenario not in known:
        listed = ", ".join(known) if known else f"none found (no expected/*.toml, nothing built in {build_dir})"
        raise runner.UsageError(f"unknown scenario '{args.scenario}'; known: {listed}")
    allocator = args.allocator or ("tcmalloc" if args.tool == "heapprof" else "glibc")
    exp_path = args.expected or EXPECTED_DIR / f"{args.scenario}.toml"
    exp = None
    if args.expected or exp_path.exists():
        try:
            exp = expected.load(exp_path)
        except expected.ExpectedFileError as e:
            raise BrokenExpected(str(e)) from None
    variant = args.variant
    glibc_binary = runner.binary_path(build_dir, args.scenario, "glibc")
    help_info = scenario_help(glibc_binary) if glibc_binary.exists() else {}
    if variant and help_info.get("variants") and variant not in help_info["variants"]:
        raise runner.UsageError(f"--variant: unknown variant '{variant}' of {args.scenario}; "
                                f"accepted: {', '.join(help_info['variants'])}")
    spec = runner.RunSpec(
        scenario=args.scenario, variant=variant, scale=args.scale, allocator=allocator,
        tool=args.tool, out=args.out, build_dir=build_dir, interval_ms=args.interval_ms,
        timeout_s=args.timeout, options=list(scenario_options))
    resolved_variant = variant or help_info.get("default")
    if exp:
        sel = (resolved_variant, spec.tool, allocator, args.scale or "seed")
        spec.options = runner.merge_options(exp.options_for(*sel), scenario_options)
        spec.drivers = exp.drivers_for(*sel)
    return spec, exp, exp_path, resolved_variant


class BrokenExpected(Exception):
    pass


def cmd_run(args, scenario_options, check=False):
    spec, exp, exp_path, variant = make_spec(args, scenario_options)
    if check:
        if exp is None:
            return fail(EXIT_FAILED, f"no expectations for {args.scenario}: {exp_path} does not exist")
        if variant is not None:
            sel = (variant, spec.tool, spec.allocator, args.scale or "seed")
            if not exp.applicable(*sel):
                return fail(EXIT_FAILED, f"no expectations for {args.scenario} variant={sel[0]} tool={sel[1]} "
                                         f"allocator={sel[2]} scale={sel[3]} in {exp_path}")
    run_dir, info = runner.execute(spec, announce=lambda d: print(f"run dir: {d}", flush=True))
    for note in info["notes"]:
        print(f"note: {note}")
    if not check:
        print("contents:")
        print("\n".join(runner.listing(run_dir)), flush=True)
        for err in info["runner_errors"]:
            print(f"leaklab: {err}", file=sys.stderr, flush=True)
        code = info["exit_code"]
        if info["runner_status"] != EXIT_OK:
            code = info["runner_status"]
        elif code not in EXIT_MEANING:
            # Killed by a signal or an exit code outside DESIGN.md: the harness broke.
            print(f"leaklab: the scenario exited {code}"
                  f"{' (' + info['signal'] + ')' if info.get('signal') else ''}; see stderr.txt", file=sys.stderr)
            code = EXIT_SYSTEM
        print(f"exit {code}: {EXIT_MEANING[code]}")
        return code
    return report(comparer.compare(run_dir, exp_path))


def report(verdict):
    if verdict.rows:
        print(comparer.table(verdict.rows))
        print()
    label = {EXIT_OK: "PASS", EXIT_FAILED: "FAIL", EXIT_SKIP: "SKIP"}.get(verdict.code, "ERROR")
    print(f"{label} (exit {verdict.code}): {verdict.message}")
    return verdict.code


def cmd_compare_only(args):
    if not (args.run_dir / "run.json").is_file() and not (args.run_dir / "events.jsonl").is_file():
        raise runner.UsageError(f"RUN_DIR: '{args.run_dir}' is not a run directory (no run.json, no events.jsonl)")
    data = comparer.RunData.load(args.run_dir)
    scenario = data.field("scenario")
    if not scenario and not args.expected:
        raise runner.UsageError(f"RUN_DIR: '{args.run_dir}' names no scenario; pass --expected FILE")
    exp_path = args.expected or EXPECTED_DIR / f"{scenario}.toml"
    return report(comparer.compare(args.run_dir, exp_path))


def cmd_list(args):
    build_dir = runner.resolve_build_dir(args.build_dir)
    built = runner.built_scenarios(build_dir)
    names = known_scenarios(build_dir)
    if args.variants:
        if args.variants not in names:
            raise runner.UsageError(f"--variants: unknown scenario '{args.variants}'; known: "
                                    f"{', '.join(names) or 'none'}")
        binary = runner.binary_path(build_dir, args.variants, "glibc")
        variants = scenario_help(binary).get("variants") if binary.exists() else None
        if not variants:
            raise runner.SystemFailure(f"cannot read the variants of {args.variants} from {binary} --help: "
                                       "build first: ./leaklab test or cmake --build build")
        print("\n".join(variants))
        return EXIT_OK
    if not names:
        print(f"no scenarios: no expected/*.toml and nothing built in {build_dir} "
              "(build first: ./leaklab test or cmake --build build)")
        return EXIT_OK
    rows = []
    for name in names:
        has_exp = (EXPECTED_DIR / f"{name}.toml").exists()
        help_info = {}
        if name in built:
            help_info = scenario_help(runner.binary_path(build_dir, name, built[name][0]))
        summary = help_info.get("summary", "")
        if not summary and has_exp:
            try:
                summary = expected.load(EXPECTED_DIR / f"{name}.toml").summary
            except expected.ExpectedFileError:
                summary = "(expected file is broken)"
        rows.append((name, ", ".join(help_info.get("variants") or []) or "?",
                     ", ".join(built.get(name, [])) or "not built", "yes" if has_exp else "no", summary))
    head = ("scenario", "variants", "built with", "expected")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    for r in [head] + rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:4], widths)).rstrip())
        if r is not head and r[4]:
            print(f"{'':<{widths[0]}}  {r[4]}")
    return EXIT_OK


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    scenario_options = []
    if "--" in argv:  # everything after `--` goes to the scenario untouched
        i = argv.index("--")
        argv, scenario_options = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    if scenario_options and args.command not in ("run", "check"):
        return fail(EXIT_USAGE, f"{args.command} takes no scenario options after '--'")
    try:
        if args.command == "run":
            return cmd_run(args, scenario_options)
        if args.command == "check":
            return cmd_run(args, scenario_options, check=True)
        if args.command == "compare-only":
            return cmd_compare_only(args)
        return cmd_list(args)
    except runner.Skip as e:
        print(f"SKIP: {e}")
        return EXIT_SKIP
    except runner.Outcome as e:
        return fail(e.code, str(e))
    except BrokenExpected as e:
        return fail(EXIT_FAILED, f"broken expected file: {e}")
    except KeyboardInterrupt:
        return fail(EXIT_SYSTEM, "interrupted; the scenario's process group was killed")
    except runner.Terminated:
        return fail(EXIT_SYSTEM, "terminated by a signal; the scenario's process group was killed")
    except OSError as e:
        return fail(EXIT_SYSTEM, f"{e.filename or ''}: {e.strerror or e} (check permissions and free space)")


if __name__ == "__main__":
    sys.exit(main())
