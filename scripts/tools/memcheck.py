"""Valgrind memcheck capture: the valgrind command line, and its XML report parsed into memcheck.json."""

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from scripts.tools import tools

NAME = "memcheck"
TITLE = "Valgrind memcheck"
ALLOCATORS = ("glibc",)  # valgrind replaces malloc itself
CANARY_OPTIONS = ["--canary"]
LEAK_EXIT_CODES = {}  # no --error-exitcode: valgrind passes the program's exit code through
# What memcheck shows by default (--show-leak-kinds=definite,possible): still
# reachable blocks are counted in the summary but hidden, and indirectly lost
# ones are shown only with the definitely lost block that holds them.
REPORTED_KINDS = ("definite", "possible")
ENV_VALGRIND = "LEAKLAB_VALGRIND"
# memcheck.json's kind names -> tool.json's.
TOOL_KINDS = {"definitely_lost": "definite", "indirectly_lost": "indirect",
              "possibly_lost": "possible", "still_reachable": "reachable"}

KINDS = {
    "Leak_DefinitelyLost": "definitely_lost",
    "Leak_IndirectlyLost": "indirectly_lost",
    "Leak_PossiblyLost": "possibly_lost",
    "Leak_StillReachable": "still_reachable",
}
# What an expect line may write for KIND in memcheck.bytes_by_function(KIND, FUNC).
KIND_ALIASES = {
    **{k: v for k, v in KINDS.items()}, **{v: v for v in KINDS.values()},
    "definite": "definitely_lost", "indirect": "indirectly_lost",
    "possible": "possibly_lost", "reachable": "still_reachable",
}

# Frames skipped to find the function a block is charged to: the allocator
# entry points (valgrind's replacements and ld.so's own calloc) and the
# harness's wrappers, which would otherwise own every scenario's memory.
ALLOC_FUNCTIONS = {
    "malloc", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "strdup", "strndup",
    "operator new(unsigned long)", "operator new[](unsigned long)",
    "ll_xmalloc", "ll_xrealloc",
}

# Threads valgrind must have room for besides the scenario's workers: main,
# the watchdog, helper threads, and valgrind's own accounting slack.
THREAD_MARGIN = 64
DEFAULT_MAX_THREADS = 20000 + THREAD_MARGIN
# Options whose value is a count of threads (or of units with threads each).
THREAD_OPTIONS = ("--workers", "--threads", "--connections", "--clients", "--sessions")


def valgrind_path():
    """valgrind on PATH, or $LEAKLAB_VALGRIND (a fresh build, or a wrapper); None if missing."""
    return tools.resolve(ENV_VALGRIND, "valgrind")[0]


def valgrind_version():
    path = valgrind_path()
    if not path:
        return None
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def max_threads_for(options):
    """--max-threads for valgrind from the scenario options given: twice the
    largest thread-count option (the Go original ran two goroutines per
    connection) plus a margin; without one, room for the seed scale."""
    counts = []
    for i, opt in enumerate(options):
        name, _, value = opt.partition("=")
        if name in THREAD_OPTIONS:
            value = value or (options[i + 1] if i + 1 < len(options) else "")
            if value.isdigit():
                counts.append(int(value))
    if not counts:
        return DEFAULT_MAX_THREADS
    return max(500, 2 * max(counts) + THREAD_MARGIN)  # 500 is valgrind's own default


def valgrind_argv(run_dir, max_threads):
    return [
        valgrind_path() or "valgrind",
        "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=all",
        "--errors-for-leak-kinds=definite",
        "--xml=yes", f"--xml-file={run_dir / 'memcheck.xml'}",
        # valgrind's own messages (e.g. "use --max-threads") go to a file of
        # their own, so stderr.txt holds only the scenario's.
        f"--log-file={run_dir / 'memcheck.log'}",
        # a forked child (photon_fork_lock) would write its own report into the same
        # XML file, which is then not one document; the child is not what is measured
        "--child-silent-after-fork=yes",
        f"--max-threads={max_threads}",
    ]


_DIRECT = re.compile(r"\(([\d,]+) direct, ([\d,]+) indirect\)")


def _charged_function(stack):
    for frame in stack.findall("frame") if stack is not None else ():
        fn = frame.findtext("fn")
        if not fn:
            continue
        if fn in ALLOC_FUNCTIONS or fn.startswith(("vg_replace_", "_vgr")):
            continue
        return tools.source_name(fn)
    return "?"


def parse_xml(path):
    """Parses a memcheck --xml=yes report into the memcheck.json dict.
    Bytes of a definitely lost record are its *direct* bytes: memcheck's
    <leakedbytes> adds the blocks it leads to, which are also reported on
    their own as indirectly lost. Raises ValueError for an incomplete file
    (valgrind killed before it closed the XML)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path} is not complete XML ({e}); did valgrind die?") from None
    kinds = {k: {"bytes": 0, "blocks": 0} for k in KINDS.values()}
    by_function = {k: {} for k in KINDS.values()}
    errors = {}
    counts = {pair.findtext("unique"): int(pair.findtext("count") or 1)
              for pair in root.iter("pair")}
    for err in root.iter("error"):
        kind = err.findtext("kind") or "?"
        name = KINDS.get(kind)
        if name is None:
            errors[kind] = errors.get(kind, 0) + counts.get(err.findtext("unique"), 1)
            continue
        xwhat = err.find("xwhat")
        nbytes = int(xwhat.findtext("leakedbytes") or 0) if xwhat is not None else 0
        blocks = int(xwhat.findtext("leakedblocks") or 0) if xwhat is not None else 0
        m = _DIRECT.search(xwhat.findtext("text") or "") if xwhat is not None else None
        if m:
            nbytes = int(m.group(1).replace(",", ""))
        kinds[name]["bytes"] += nbytes
        kinds[name]["blocks"] += blocks
        fn = _charged_function(err.find("stack"))
        slot = by_function[name].setdefault(fn, {"bytes": 0, "blocks": 0})
        slot["bytes"] += nbytes
        slot["blocks"] += blocks
    states = [s.findtext("state") for s in root.iter("status")]
    return {
        "kinds": kinds,
        "by_function": by_function,
        "errors": errors,
        "error_count": sum(errors.values()),
        "finished": "FINISHED" in states,
    }


# ---- the runner's tool interface ---------------------------------------------

def binary(spec):
    return None  # the scenario's glibc binary


def unavailable(spec):
    if valgrind_path():
        return None
    why = tools.resolve(ENV_VALGRIND, "valgrind")[1] or "valgrind not found"
    return f"{why} (apt-get install valgrind)"


def command(spec, binary_path, run_dir, head, options):
    return valgrind_argv(run_dir, max_threads_for(options)) + head + list(options), {}


def versions(spec, binary_path):
    return {"tool_path": valgrind_path(), "tool_version": valgrind_version()}


def tool_report(report, versions_, exit_code=None):
    """memcheck.json's report in tool.json's shape."""
    kinds = {TOOL_KINDS[k]: dict(v) for k, v in report["kinds"].items()}
    by_function = {TOOL_KINDS[k]: {fn: dict(v) for fn, v in fns.items()}
                   for k, fns in report["by_function"].items()}
    return tools.report(NAME, tool_path=versions_["tool_path"], tool_version=versions_["tool_version"],
                        kinds=kinds, reported_kinds=REPORTED_KINDS, by_function=by_function,
                        raw="memcheck.xml", errors=report.get("errors"), exit_code=exit_code)


def postprocess(spec, binary_path, run_dir, info):
    run_dir = Path(run_dir)
    errors, notes = [], []
    log = run_dir / "memcheck.log"
    log_text = log.read_text(errors="replace") if log.exists() else ""
    if "--max-threads" in log_text:
        errors.append("valgrind ran out of thread slots: raise --max-threads "
                      "(pass a smaller --workers after --, or see memcheck.log)")
    try:
        report = parse_xml(run_dir / "memcheck.xml")
    except (ValueError, OSError) as e:
        errors.append(f"memcheck: {e}")
        return None, errors, notes
    if not report["finished"]:
        errors.append("memcheck: valgrind did not finish (no FINISHED status in memcheck.xml)")
    (run_dir / "memcheck.json").write_text(json.dumps(report, indent=1) + "\n")
    return tool_report(report, versions(spec, binary_path), info.get("process_exit_code")), errors, notes
