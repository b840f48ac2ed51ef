"""Valgrind memcheck capture: the valgrind command line, and its XML report parsed into memcheck.json."""

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

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
    return shutil.which("valgrind")


def valgrind_version():
    try:
        return subprocess.run(["valgrind", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
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
        return fn
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
