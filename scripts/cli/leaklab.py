#!/usr/bin/env python3
"""leaklab command line: run a scenario into a run directory, check it against its expected file, list scenarios,
run the cross-tool matrix and diff it against a saved baseline."""

import argparse
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path


from scripts.base import distro
from scripts.base.exits import EXIT_FAILED, EXIT_OK, EXIT_SKIP, EXIT_SYSTEM, EXIT_USAGE
from scripts.expect import comparer, expected
from scripts.outside import memstats, threads
from scripts.run import runner
from scripts.tools import sanitizer
from scripts.views import between, matrix, measurements, verdicts
from scripts.views import report as report_page  # not `report`: that name is the verdict printer below

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


def positive(kind, low, high, cast=float):
    """An argparse type: a number (cast=int: a whole number) from low to high."""
    noun = "a whole number" if cast is int else "a number"
    shown = (lambda v: str(v)) if cast is int else (lambda v: f"{v:g}")
    accepted = f"accepted: {shown(low)} to {shown(high)} {kind}"

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}; {accepted}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; {accepted}")
        return value
    return parse


def whole(kind, low, high):
    return positive(kind, low, high, cast=int)


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
                       help="malloc to link (default: tcmalloc for heapprof and heapcheck, else glibc)")
        p.add_argument("--tool", default="native", metavar="TOOL",
                       help=f"observer: {', '.join(expected.TOOLS)}, or a sanitizer's release TOOL@RELEASE "
                            "(lsan@clang-19, tsan@gcc-12: leaklab.py list --tools) (default: native)")
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
        p.add_argument("--report", action="store_true",
                       help="also write RUN_DIR/report.html, one self-contained page (see: leaklab.py report)")

    run_epilog = ("Options after '--' go to the scenario unchanged (e.g. -- --workers 200). "
                  "The run directory is DIR/SCENARIO.VARIANT.TOOL.ALLOCATOR-YYYYmmdd-HHMMSS-PID.")
    p = sub.add_parser("run", help="run a scenario into a new run directory",
                       usage="leaklab.py run SCENARIO [options] [-- scenario options]", epilog=run_epilog)
    run_options(p)
    p = sub.add_parser("check", help="run, then compare with the expected file (exit 0/1/77)",
                       usage="leaklab.py check SCENARIO [options] [-- scenario options]", epilog=run_epilog)
    run_options(p)
    p.add_argument("--measurements", action="store_true",
                   help="also print the run's key figures as <CTestMeasurement> lines (CTest puts them into "
                        "Test.xml, CDash plots them; the CTest tests pass it)")
    p = sub.add_parser("compare-only", help="compare an existing run directory with its expected file")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    p.add_argument("--expected", type=Path, metavar="FILE",
                   help="expected file (default: expected/SCENARIO.toml)")
    p = sub.add_parser("report", help="write RUN_DIR/report.html: one self-contained page about a run")
    report_page.add_report_arguments(p)
    p = sub.add_parser("compare", help="two runs side by side, in the terminal and as a page")
    report_page.add_compare_arguments(p)
    p = sub.add_parser("threads", help="where every thread of a running process waits, grouped by stack "
                                       "(a goroutine dump for pthreads; --json, --pprof FILE)",
                       epilog=threads.EPILOG)
    threads.add_arguments(p)
    p = sub.add_parser("memstats", help="the RSS of a running process, itemized (heap in use, freed but "
                                        "resident, returned, stacks...) with Go's MemStats names (--json, --watch S)",
                       epilog=memstats.EPILOG)
    memstats.add_arguments(p)
    # fuzz and flaky have their command lines in their own modules (main() hands them argv).
    sub.add_parser("fuzz", add_help=False, help="run a fuzz target of fuzz/ (leaklab.py fuzz --help; "
                                                "docs/reliability.md)")
    sub.add_parser("flaky", add_help=False, help="repeat a CTest label N times, count each test's failures "
                                                 "(leaklab.py flaky --help)")
    sub.add_parser("new", add_help=False, help="scaffold a zoo kernel: scenarios/zoo/KERNEL.c, expected/zoo/KERNEL.toml "
                                               "with a [truth], one registration line (docs/zoo.md, Adding a kernel)")
    p = sub.add_parser("list", help="scenarios with an expected file or a built binary")
    p.add_argument("--build-dir", metavar="DIR",
                   help="CMake build dir (default: $LEAKLAB_BUILD_DIR or build/)")
    p.add_argument("--variants", metavar="SCENARIO",
                   help="print only SCENARIO's variants, one per line (for scripts)")
    p.add_argument("--tools", action="store_true",
                   help="the tools instead: each tool and each release of the sanitizers (TOOL@RELEASE), "
                        "whether it can run here, and its exact version")

    def matrix_options(p, defaults=True):
        # With defaults=False (baseline diff) an unset option means "as the baseline was made".
        p.add_argument("--scale", choices=expected.SCALES, default="quick" if defaults else None,
                       help="scale of every cell, before each tool's [[args]] (default: quick"
                            + ("" if defaults else "; diff: the baseline's") + ")")
        p.add_argument("--tools", metavar="A,B", help=f"tools (columns; default: {','.join(matrix.DEFAULT_TOOLS)}; "
                       f"also {','.join(t for t in matrix.MATRIX_TOOLS if t not in matrix.DEFAULT_TOOLS)}, by name"
                       + ("" if defaults else "; diff: the baseline's") + ")")
        p.add_argument("--scenarios", metavar="X,Y", help="scenarios (rows), or the group `zoo` (every zoo "
                       "kernel; default: every scenario with an expected file and a built binary"
                       + ("" if defaults else "; diff: the baseline's") + ")")
        p.add_argument("--out", type=Path, metavar="DIR",
                       help="where matrix.json, matrix.md and the cells' run directories go "
                            "(default: runs/matrix-YYYYmmdd-HHMMSS)")
        p.add_argument("--build-dir", metavar="DIR",
                       help="CMake build dir (default: $LEAKLAB_BUILD_DIR or build/)")
        p.add_argument("--timeout", metavar="SEC", type=positive("s", 1, 86400), default=900,
                       help="runner timeout of each cell (default: 900)")
        p.add_argument("--repeat", metavar="R", type=whole("runs", 1, 1000), default=None,
                       help="run every cell R times and record how many runs crashed, timed out or changed "
                            "verdict (default: 1" + ("" if defaults else "; diff: the baseline's") + ")")
        p.add_argument("--variants", metavar="A,B", help="only these variants of each scenario (default: all)")
        p.add_argument("--no-canaries", dest="canaries", action="store_false", default=None,
                       help="leave out the canary rows")

    tool_env = ("Columns may be releases of a sanitizer, TOOL@RELEASE (lsan@clang-14,lsan@clang-19: "
                "leaklab.py list --tools; docs/baselines.md). Options after '--' go to every cell's scenario, "
                "over the expected files' [[args]] (e.g. -- --workers 10000). "
                "tool binaries: LEAKLAB_VALGRIND, LEAKLAB_HEAPTRACK, LEAKLAB_HEAPTRACK_PRINT, LEAKLAB_PPROF, "
                "LEAKLAB_TCMALLOC (a libtcmalloc.so to preload), LEAKLAB_SANITIZER_BUILD_DIR (where "
                "NAME-lsan/-asan/-tsan are); see docs/tools.md")
    p = sub.add_parser("matrix", help="every scenario x variant x tool, canaries included: table, matrix.json, matrix.md",
                       epilog="exit codes: 0 every cell as expected and every canary flagged, 1 a cell differs "
                              "or a canary was missed, 77 a tool is missing (its cells skipped), 99 a harness "
                              "failure. " + tool_env)
    matrix_options(p)
    p = sub.add_parser("baseline", help="save a matrix as a baseline, or rerun it and print what changed")
    bsub = p.add_subparsers(dest="baseline_command", required=True, metavar="save|diff", parser_class=Parser)
    b = bsub.add_parser("save", help="run the matrix (or take --from) and store it as baselines/NAME.json",
                        epilog=tool_env)
    b.add_argument("name", metavar="NAME")
    b.add_argument("--from", dest="from_json", type=Path, metavar="MATRIX_JSON",
                   help="save this matrix.json instead of running one")
    b.add_argument("--dir", type=Path, metavar="DIR", help="baselines folder (default: baselines/ in the repo)")
    b.add_argument("--tolerance", type=positive("", 0, 10), default=matrix.DEFAULT_TOLERANCE,
                   help=f"relative change of a kind's bytes that counts (default {matrix.DEFAULT_TOLERANCE})")
    b.add_argument("--floor", type=positive("", 0, 10), default=matrix.DEFAULT_FLOOR,
                   help="...and the change must also exceed this fraction of the row's payload_bytes "
                        f"(default {matrix.DEFAULT_FLOOR})")
    matrix_options(b)
    b = bsub.add_parser("diff", help="rerun the baseline's matrix and print only what changed (exit 1 on a change); "
                                     "or compare two columns: --between lsan@clang-14 lsan@clang-19, "
                                     "or two distributions' baselines: --between debian12 debian13",
                        usage="leaklab.py baseline diff NAME [options] | baseline diff [NAME] --between A B [options]",
                        epilog="--between A B compares two columns of one matrix (two releases of a tool): "
                               "--against MATRIX_JSON's, else baseline NAME's as saved, else a matrix run now "
                               "with --tools A,B. --between debian12 debian13 (or memcheck@3.19 memcheck@3.24) "
                               "compares the saved baselines/debian12-*.json with debian13-*.json, pair by pair "
                               "(docs/baselines.md, the lane). exit codes: 0 nothing changed, 1 a change, 77 cells could not "
                               "be compared (skipped), 2 bad usage, 99 harness failure. " + tool_env)
    b.add_argument("name", metavar="NAME", nargs="?")
    b.add_argument("--between", nargs=2, metavar=("A", "B"),
                   help="compare column A with column B (e.g. lsan@clang-14 lsan@clang-19), not two dates")
    b.add_argument("--against", type=Path, metavar="MATRIX_JSON",
                   help="diff this matrix.json instead of running the matrix again")
    b.add_argument("--dir", type=Path, metavar="DIR", help="baselines folder (default: baselines/ in the repo)")
    b.add_argument("--tolerance", type=positive("", 0, 10), help="override the baseline's relative tolerance")
    b.add_argument("--floor", type=positive("", 0, 10), help="override the baseline's payload floor")
    matrix_options(b, defaults=False)
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


def expected_path(name):
    """expected/NAME.toml, or expected/zoo/NAME.toml for a zoo kernel."""
    return expected.path_for(name, EXPECTED_DIR)


def known_scenarios(build_dir):
    names = set(expected.scenarios_in(EXPECTED_DIR))
    for group in expected.GROUPS:
        names |= set(expected.scenarios_in(EXPECTED_DIR, group))
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
    tool, release = runner.parse_tool(args.tool, expected.TOOLS)
    allocator = args.allocator or runner.default_allocator(tool)
    exp_path = args.expected or expected_path(args.scenario)
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
        tool=tool, release=release, out=args.out, build_dir=build_dir, interval_ms=args.interval_ms,
        timeout_s=args.timeout, options=list(scenario_options))
    resolved_variant = variant or help_info.get("default")
    if exp:
        sel = (resolved_variant, runner.tool_id(spec), allocator, args.scale or "seed")
        runner.apply_expected(spec, exp, sel, scenario_options)
    return spec, exp, exp_path, resolved_variant


class BrokenExpected(Exception):
    pass


def cmd_run(args, scenario_options, check=False):
    spec, exp, exp_path, variant = make_spec(args, scenario_options)
    if check:
        if exp is None:
            return fail(EXIT_FAILED, f"no expectations for {args.scenario}: {exp_path} does not exist")
        if variant is not None:
            sel = (variant, runner.tool_id(spec), spec.allocator, args.scale or "seed")
            canary = any(o in ("--canary", "--canary-thread") for o in spec.options)
            truth_applies = exp.truth is not None and spec.tool == "native"  # [truth] rows: every native run
            if not exp.applicable(*sel, canary=canary) and not truth_applies:
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
        write_page(args, run_dir)
        print(f"exit {code}: {EXIT_MEANING[code]}")
        return code
    verdict = comparer.compare(run_dir, exp_path)
    code = report(verdict)
    write_page(args, run_dir)
    if args.measurements:
        print("\n".join(measurements.lines(measurements.figures(run_dir, verdict))), flush=True)
    return code


def write_page(args, run_dir):
    """--report: the run's page, after the verdict (a plain run gets its verdict computed)."""
    if args.report:
        print(f"report: {report_page.write_report(run_dir)}", flush=True)


def report(verdict):
    variant = re.search(r"\bvariant=(\S+)", verdict.message or "")
    variant = variant.group(1) if variant else None
    if verdict.rows:
        print(verdicts.terminal_table(verdict.rows))
        print()
    label = {EXIT_OK: "PASS", EXIT_FAILED: "FAIL", EXIT_SKIP: "SKIP"}.get(verdict.code, "ERROR")
    print(f"{verdicts.pass_word(label, variant)} (exit {verdict.code}): {verdict.message}")
    return verdict.code


def cmd_compare_only(args):
    if not (args.run_dir / "run.json").is_file() and not (args.run_dir / "events.jsonl").is_file():
        raise runner.UsageError(f"RUN_DIR: '{args.run_dir}' is not a run directory (no run.json, no events.jsonl)")
    data = comparer.RunData.load(args.run_dir)
    scenario = data.field("scenario")
    if not scenario and not args.expected:
        raise runner.UsageError(f"RUN_DIR: '{args.run_dir}' names no scenario; pass --expected FILE")
    exp_path = args.expected or expected_path(scenario)
    return report(comparer.compare(args.run_dir, exp_path))


def cmd_list(args):
    build_dir = runner.resolve_build_dir(args.build_dir)
    if args.tools:
        return list_tools(build_dir)
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
    zoo = set(expected.scenarios_in(EXPECTED_DIR, "zoo"))
    rows = []
    for name in names:
        if name in zoo:
            continue  # listed in the zoo's own section below
        has_exp = expected_path(name).exists()
        help_info = {}
        if name in built:
            help_info = scenario_help(runner.binary_path(build_dir, name, built[name][0]))
        summary = help_info.get("summary", "")
        if not summary and has_exp:
            try:
                summary = expected.load(expected_path(name)).summary
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
    if zoo:
        list_zoo(sorted(zoo), built)
    return EXIT_OK


def list_zoo(names, built):
    """`list`'s zoo section: each kernel's pattern and origin, from its
    [truth] (expected/zoo/KERNEL.toml), and whether it is built."""
    rows = []
    for name in names:
        try:
            truth = expected.load(expected_path(name)).truth
        except expected.ExpectedFileError:
            truth = None
        pattern = truth.pattern if truth else "(expected file is broken or has no [truth])"
        origin = truth.origin if truth else "?"
        rows.append((name, origin, ", ".join(built.get(name, [])) or "not built", pattern))
    head = ("zoo kernel", "origin", "built with")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(3)]
    print(f"\nzoo ({len(names)} kernels: Go's known leaks in C, docs/zoo.md; --scenarios zoo selects them)")
    for r in [head] + rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths)).rstrip())
        if r is not head:
            print(f"{'':<{widths[0]}}  {r[3]}")


def list_tools(build_dir):
    """`list --tools`: one row per tool, and per release of each sanitizer
    (TOOL@RELEASE), saying whether it can run here and its exact version."""
    built = runner.built_scenarios(build_dir)
    # What every result also records: a baseline is of a distribution as much as of a tool.
    where = distro.distribution()
    print(f"distribution: {where['distribution'] or '?'} ({where['distribution_id'] or '?'}); "
          f"C library: {distro.glibc() or '?'}; compiler: {runner.compiler_version(build_dir) or '?'}\n")
    rows, reasons = [], {}
    for tool in expected.TOOLS:
        module = runner.TOOL_MODULES.get(tool)
        if module is None:
            continue
        rows.append(_tool_row(module, tool, None, build_dir, built, reasons))
        if tool in expected.RELEASE_TOOLS:
            for entry in sanitizer.releases(build_dir):
                rows.append(_tool_row(module, tool, entry, build_dir, built, reasons))
    head = ("tool", "release", "status", "version")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(3)]
    for r in [head] + rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths)) + "  " + r[3])
    if reasons:
        print()
        for why, names in reasons.items():
            print(f"{', '.join(names)}: {why}")
    print(f"\n(plain lsan, asan, tsan: the default release, {sanitizer.binary_name('NAME', 'lsan')}; "
          "TOOL@RELEASE: that compiler's build, --tool lsan@clang-19 or matrix --tools lsan@clang-14,lsan@clang-19; "
          "more releases: docs/baselines.md)")
    return EXIT_OK


def _tool_row(module, tool, entry, build_dir, built, reasons):
    """(tool, release, status, version) of one column; the reason it cannot run goes into `reasons`."""
    release = entry["release"] if entry else None
    name = f"{tool}@{release}" if release else tool
    scenarios = list(built) or ["blocked_workers"]
    specs = [runner.RunSpec(scenario=s, tool=tool, release=release, allocator=module.ALLOCATORS[0],
                            build_dir=build_dir) for s in scenarios]
    whys = []
    for spec in specs:
        try:
            why = module.unavailable(spec)
            if why is None and module.binary(spec) is None:
                runner.find_binary(spec)
        except runner.Outcome as e:
            why = str(e)
        whys.append(why)
    ready = sum(w is None for w in whys)
    if not built:
        status, why = "not built", f"nothing built in {build_dir} (build first: ./leaklab test or cmake --build build)"
    elif ready == len(specs):
        status, why = "ready", None
    elif ready:
        status, why = f"partial {ready}/{len(specs)}", next(w for w in whys if w)
    else:
        said = (((entry or {}).get("tools") or {}).get(tool) or {}).get("status")
        status, why = (said if said and said != "built" else "missing"), next(w for w in whys if w)
    if why:
        why = why.removeprefix(f"{tool}: ").removeprefix(f"{name}: ")  # the row names it already
        reasons.setdefault(why, []).append(name)
    version = None
    if entry:
        version = entry.get("version") or (sanitizer.compiler_version(entry["compiler"]) if entry.get("compiler") else None)
    else:
        spec = specs[whys.index(None)] if None in whys else specs[0]
        try:
            binary = module.binary(spec) or runner.binary_path(build_dir, spec.scenario, spec.allocator)
            found = module.versions(spec, binary if Path(binary).exists() else None)
            version = found.get("release_version") or found.get("tool_version")
            if found.get("release"):
                release = found["release"]
        except (OSError, TypeError, AttributeError, KeyError, runner.Outcome):
            version = None
    if entry is None and release:
        release += " (default)"
    return (name, release or "-", status, version or "?")


def _split(text, known, what):
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in known]
    if bad or not items:
        raise runner.UsageError(f"--{what}: unknown {', '.join(bad) or '(empty)'}; accepted: {', '.join(known)}")
    return list(dict.fromkeys(items))


def matrix_plan(args, scale=None, tools_=None, scenarios=None, variants_filter=None):
    """(scenarios, {scenario: variants}, tools, scale, build dir) from the options."""
    build_dir = runner.resolve_build_dir(args.build_dir)
    built = runner.built_scenarios(build_dir)
    with_expected = [n for n in known_scenarios(build_dir) if expected_path(n).exists()]
    candidates = [n for n in with_expected if n in built]
    if args.scenarios:
        # A group name (zoo) stands for every scenario in its folder of expected/.
        text = ",".join(",".join(expected.scenarios_in(EXPECTED_DIR, x.strip())) if x.strip() in expected.GROUPS
                        else x for x in args.scenarios.split(","))
        names = _split(text, with_expected + list(expected.GROUPS), "scenarios")
    elif scenarios:
        names = list(scenarios)
    else:
        names = candidates
    if not names:
        raise runner.SystemFailure(f"no scenario to run: nothing built in {build_dir} "
                                   "(build first: ./leaklab test or cmake --build build)")
    variants = {}
    for name in names:
        binary = runner.binary_path(build_dir, name, "glibc")
        found = scenario_help(binary).get("variants") if binary.exists() else None
        if not found:
            raise runner.SystemFailure(f"cannot read the variants of {name} from {binary} --help: "
                                       "build first: ./leaklab test or cmake --build build")
        variants[name] = found
    only = getattr(args, "variants", None) or variants_filter
    if only:
        every = sorted({v for found in variants.values() for v in found})
        wanted = _split(only, every, "variants") if isinstance(only, str) else list(only)
        variants = {n: [v for v in found if v in wanted] for n, found in variants.items()}
        names = [n for n in names if variants[n]]
    chosen = _split_tools(args.tools) if args.tools else list(tools_ or matrix.DEFAULT_TOOLS)
    return names, variants, chosen, args.scale or scale or "quick", build_dir


def _split_tools(text):
    """--tools: matrix columns, each TOOL or a sanitizer's TOOL@RELEASE (lsan@clang-19)."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise runner.UsageError(f"--tools: empty; accepted: {', '.join(matrix.MATRIX_TOOLS)}, or TOOL@RELEASE")
    for item in items:
        runner.parse_tool(item, matrix.MATRIX_TOOLS)
    return list(dict.fromkeys(items))


def run_matrix(args, scale=None, tools_=None, scenarios=None, like=None, options=()):
    """Runs the matrix the options say; `like`: a baseline whose scale, tools,
    scenarios, variants, repeat, canaries and scenario options fill in what
    the options leave unset."""
    like = like or {}
    only = None
    if like.get("variants"):
        only = sorted({v for found in like["variants"].values() for v in found})
    names, variants, chosen, scale, build_dir = matrix_plan(args, scale or like.get("scale"),
                                                            tools_ or like.get("tools"),
                                                            scenarios or like.get("scenarios"), only)
    repeat = int(args.repeat or like.get("repeat") or 1)
    canaries = args.canaries if args.canaries is not None else like.get("canaries", True)
    options = list(options) or list(like.get("options") or [])
    out = args.out or runner.REPO / "runs" / f"matrix-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"matrix: {', '.join(names)} x {', '.join(chosen)} at --scale {scale}"
          f"{f', {repeat} runs per cell' if repeat > 1 else ''}"
          f"{', scenario options ' + ' '.join(options) if options else ''}; run dirs in {out}", flush=True)
    doc = matrix.run_matrix(names, variants, chosen, scale=scale, build_dir=build_dir, out=out,
                            expected_dir=EXPECTED_DIR, timeout_s=args.timeout,
                            progress=lambda line: print(line, flush=True),
                            options=options, repeat=repeat, canaries=canaries)
    json_path, md_path = matrix.write(doc, out)
    print()
    print(matrix.table(doc))
    print(f"\nwrote {json_path} and {md_path}")
    return doc


def cmd_matrix(args, scenario_options=()):
    doc = run_matrix(args, options=scenario_options)
    code = matrix.exit_code(doc)
    print(f"exit {code}: {EXIT_MEANING[code]}")
    return code


def _load_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise runner.UsageError(f"{what}: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise runner.UsageError(f"{what}: {path} is not JSON: {e}") from None


def cmd_baseline(args, scenario_options=()):
    if args.baseline_command == "diff" and args.between:
        return cmd_diff_between(args, scenario_options)
    if not args.name:
        raise runner.UsageError("baseline: NAME is required (or, for diff, --between A B)")
    path = matrix.baseline_path(args.name, args.dir)
    if args.baseline_command == "save":
        doc = _load_json(args.from_json, "--from") if args.from_json else run_matrix(args, options=scenario_options)
        code = matrix.exit_code(doc)
        if code == EXIT_SYSTEM:
            return fail(EXIT_SYSTEM, "not saved: some cells hit a harness failure (see above)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(matrix.to_baseline(doc, args.name, args.tolerance, args.floor), indent=1) + "\n")
        print(f"saved baseline {args.name}: {path} ({len(doc['cells'])} cells)")
        if code != EXIT_OK:
            print(f"note: this matrix does not match the expected files everywhere (exit {code}); "
                  "the baseline records it as it is")
        return EXIT_OK
    if not path.is_file():
        raise runner.UsageError(f"no baseline '{args.name}' ({path} does not exist): "
                                f"make one with: leaklab.py baseline save {args.name}")
    baseline = _load_json(path, "baseline")
    if args.against:
        doc = _load_json(args.against, "--against")
    else:
        doc = run_matrix(args, like=baseline, options=scenario_options)
        print()
    changes, infos = matrix.diff(baseline, doc, args.tolerance, args.floor)
    print(f"diff against baseline {args.name} ({path}):")
    print(matrix.diff_text(changes, infos))
    if changes:
        return EXIT_FAILED
    if any(c.get("status") == "skipped" for c in doc["cells"]):
        return EXIT_SKIP
    return EXIT_OK


def cmd_diff_between(args, scenario_options):
    """baseline diff --between A B: two columns of one matrix, row by row;
    or two distributions' saved baselines (debian12 debian13, memcheck@3.19
    memcheck@3.24: scripts/views/between.py)."""
    a, b = args.between
    if not (between.is_column(a) and between.is_column(b)):
        if args.against or args.name:
            raise runner.UsageError(f"--between {a} {b} compares saved baselines; leave out NAME and --against")
        return between.cmd(a, b, args.dir, args.tolerance, args.floor)
    for t in (a, b):
        runner.parse_tool(t, matrix.MATRIX_TOOLS)
    if args.against:
        doc, source = _load_json(args.against, "--against"), str(args.against)
    elif args.name:
        path = matrix.baseline_path(args.name, args.dir)
        if not path.is_file():
            raise runner.UsageError(f"no baseline '{args.name}' ({path} does not exist)")
        doc, source = _load_json(path, "baseline"), f"baseline {args.name} ({path})"
    else:
        if args.tools:
            raise runner.UsageError("--between A B runs the columns A and B; leave out --tools")
        doc = run_matrix(args, tools_=[a, b], options=scenario_options)
        source = "this matrix"
        print()
    changes, infos = matrix.diff_columns(doc, a, b, args.tolerance if args.tolerance is not None
                                         else matrix.DEFAULT_TOLERANCE,
                                         args.floor if args.floor is not None else matrix.DEFAULT_FLOOR)
    print(f"diff of {a} against {b} in {source}:")
    print(matrix.diff_text(changes, infos))
    if changes:
        return EXIT_FAILED
    if any(c.get("status") == "skipped" for c in doc["cells"] if c["tool"] in (a, b)):
        return EXIT_SKIP
    return EXIT_OK


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fuzz"]:
        from scripts.dev import fuzz
        return fuzz.main(argv[1:])
    if argv[:1] == ["flaky"]:
        from scripts.dev import flaky
        return flaky.main(argv[1:])
    if argv[:1] == ["new"]:
        from scripts.dev import scaffold
        return scaffold.main(argv[1:])
    scenario_options = []
    if "--" in argv:  # everything after `--` goes to the scenario untouched
        i = argv.index("--")
        argv, scenario_options = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    if scenario_options and args.command not in ("run", "check", "matrix", "baseline"):
        return fail(EXIT_USAGE, f"{args.command} takes no scenario options after '--'")
    try:
        if args.command == "run":
            return cmd_run(args, scenario_options)
        if args.command == "check":
            return cmd_run(args, scenario_options, check=True)
        if args.command == "compare-only":
            return cmd_compare_only(args)
        if args.command == "report":
            return report_page.cmd_report(args)
        if args.command == "compare":
            return report_page.cmd_compare(args)
        if args.command == "matrix":
            return cmd_matrix(args, scenario_options)
        if args.command == "baseline":
            return cmd_baseline(args, scenario_options)
        if args.command == "threads":
            return threads.cmd_threads(args)
        if args.command == "memstats":
            return memstats.cmd_memstats(args)
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
