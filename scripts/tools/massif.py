"""Valgrind Massif capture, page level (--pages-as-heap=yes): the valgrind command line, and its
massif.out parsed into tool.json (bytes mapped at the profile's peak and at its last snapshot, and
which function mapped them).

With --pages-as-heap=yes Massif stops counting malloc'd blocks: it counts the pages the program
maps (mmap, mremap, brk, sbrk), charged to the call that mapped them, and it leaves malloc alone:
the program's own allocator (glibc's, tcmalloc's, jemalloc's) runs as it runs natively. So freed
memory an allocator keeps is still counted (the pages are still mapped), which a heap profiler
misses; but memory given back with madvise(MADV_DONTNEED) inside a mapping (malloc_trim, tcmalloc's
and jemalloc's release) is counted too: Massif tracks no madvise, so it says "mapped", never
"resident" (docs/tools.md, "Valgrind Massif").

Two things of Massif's own a reader of the figures must know (measured, valgrind 3.19):
  - the snapshot it marks "peak" is refreshed only when memory is released after a rise, so a
    program that never unmaps has a stale "peak" near its start: the peak here is the largest
    total of any snapshot kept (Massif culls to --max-snapshots, so a short spike between two kept
    snapshots can be missed);
  - Valgrind gives the client a brk segment of a few MiB: past it glibc's main arena goes on in
    mmapped chunks (sysmalloc_mmap_fallback), so sbrk-based trimming behaves differently than
    natively. Figures under Massif are Massif's, not the native run's."""

import json
import re
from pathlib import Path

from scripts.tools import memcheck, tools

NAME = "massif"
TITLE = "Valgrind Massif (--pages-as-heap)"
# Massif does not replace malloc at page level: the scenario's own allocator runs.
ALLOCATORS = ("glibc", "tcmalloc", "jemalloc")
# Massif's canary: 5,505,024 bytes of pages mapped by ll_canary_map and kept to exit
# (common/harness.c), which the last snapshot must charge to it, to the byte.
CANARY_OPTIONS = ["--canary-map"]
LEAK_EXIT_CODES = {}  # valgrind passes the program's exit code through
# A profiler, not a checker: its verdict is "reported" when pages are still mapped at the last
# snapshot, which is always (the program's code and libraries are mapped pages too).
REPORTED_KINDS = ("final",)
MAX_SNAPSHOTS = 100
# Every snapshot detailed, so the last one (the program at exit) says who mapped what; below
# 0.5 % of a snapshot's total, Massif merges a call site into "in N places, below threshold".
DETAILED_FREQ = 1
THRESHOLD_PCT = 0.5

# Frames that map pages on someone else's behalf: the syscall wrappers, and the allocators'
# insides (glibc's, tcmalloc's, jemalloc's), so a page is charged to the program's call.
PAGE_FUNCTIONS = {
    "syscall", "mmap", "mmap64", "__mmap", "__mmap64", "mremap", "__mremap", "brk", "__brk", "sbrk", "__sbrk",
    "__glibc_morecore", "__default_morecore", "sysmalloc", "sysmalloc_mmap", "sysmalloc_mmap_fallback",
    "_int_malloc", "_int_memalign", "_int_realloc", "_mid_memalign", "tcache_init", "new_heap",
    "alloc_new_heap", "_int_new_arena", "arena_get2", "__libc_alloc_buffer_allocate",
    "allocate_stack", "pthread_create@@GLIBC_2.34", "__pthread_create_2_1",
}
PAGE_PREFIXES = ("tcmalloc::", "TCMalloc", "je_", "extent_", "pages_", "os_pages", "arena_", "large_", "tcache_",
                 "MmapSysAllocator", "SbrkSysAllocator", "DefaultSysAllocator", "TCMalloc_SystemAlloc")
BELOW_THRESHOLD = "(below threshold)"

_NODE = re.compile(r"^( *)n(\d+): (\d+) (.*)$")
_FRAME = re.compile(r"^0x[0-9A-Fa-f]+: (.*?)(?: \((?:in )?[^()]*\))?$")


def is_page_frame(fn):
    return (tools.is_alloc_frame(fn) or fn in PAGE_FUNCTIONS or fn.startswith(PAGE_PREFIXES)
            or fn.startswith("_int_") or fn.startswith("sysmalloc"))


def frame_function(text):
    """'0x48DDE60: sysmalloc (malloc.c:2520)' -> 'sysmalloc'; '0x1: ??? (in /lib/x)' -> '???'."""
    m = _FRAME.match(text.strip())
    return tools.source_name(m.group(1)) if m else text.strip()


def parse_tree(lines):
    """A heap_tree's lines -> nested (bytes, label, children), the root first."""
    root, stack = None, []
    for line in lines:
        m = _NODE.match(line)
        if not m:
            raise ValueError(f"not a Massif tree line: {line[:80]!r}")
        depth, nbytes, label = len(m.group(1)), int(m.group(3)), m.group(4)
        node = (nbytes, label, [])
        del stack[depth:]
        if depth == 0:
            if root is not None:
                raise ValueError("a heap tree with two roots")
            root = node
        elif not stack or len(stack) != depth:
            raise ValueError(f"a Massif tree line out of place (depth {depth}): {line[:80]!r}")
        else:
            stack[-1][2].append(node)
        stack.append(node)
    return root


def charge(tree):
    """{function: bytes} of a detailed tree: each mapping charged to the first frame, from the
    mapping syscall outwards, that is not a syscall wrapper or an allocator's inside."""
    totals = {}

    def walk(node):
        nbytes, label, children = node
        if " places, " in label or " place, " in label:
            totals[BELOW_THRESHOLD] = totals.get(BELOW_THRESHOLD, 0) + nbytes
            return
        fn = frame_function(label)
        if not is_page_frame(fn) or not children:
            totals[fn] = totals.get(fn, 0) + nbytes
            return
        for child in children:
            walk(child)
        rest = nbytes - sum(c[0] for c in children)
        if rest > 0:
            totals[fn] = totals.get(fn, 0) + rest

    for child in (tree[2] if tree else []):
        walk(child)
    return totals


def parse_out(path):
    """A massif.out file -> {"snapshots": [{"time", "bytes", "tree"}], "peak_bytes", "final_bytes",
    "final_by_function", "peak_by_function", "pages_as_heap", "time_unit"}. Raises ValueError for a
    file Massif did not finish (no snapshot, a snapshot without its figures, a broken tree)."""
    text = Path(path).read_text(errors="replace")
    header = dict(line.split(": ", 1) for line in text.splitlines()[:3] if ": " in line)
    if "desc" not in header:
        raise ValueError(f"{path}: no 'desc:' header: not a Massif output file")
    snaps, cur, tree_lines = [], None, None
    for line in text.splitlines()[3:]:
        if line.startswith("#-----------"):
            continue
        if line.startswith("snapshot="):
            if cur is not None:
                cur["tree_lines"] = tree_lines
                snaps.append(cur)
            cur, tree_lines = {"n": int(line.split("=", 1)[1])}, None
            continue
        if cur is None:
            raise ValueError(f"{path}: a line before the first snapshot: {line[:80]!r}")
        if tree_lines is not None:
            tree_lines.append(line)
        elif line.startswith("heap_tree="):
            cur["kind"] = line.split("=", 1)[1]
            tree_lines = []
        elif "=" in line:
            k, v = line.split("=", 1)
            cur[k] = v
    if cur is not None:
        cur["tree_lines"] = tree_lines
        snaps.append(cur)
    if not snaps:
        raise ValueError(f"{path}: no snapshot: did valgrind die before Massif wrote its profile?")
    out = []
    for s in snaps:
        try:
            nbytes = int(s["mem_heap_B"]) + int(s["mem_heap_extra_B"]) + int(s["mem_stacks_B"])
            t = int(s["time"])
        except (KeyError, ValueError):
            raise ValueError(f"{path}: snapshot {s['n']} lacks its time or byte counts (a cut file?)") from None
        if "kind" not in s:
            raise ValueError(f"{path}: snapshot {s['n']} has no heap_tree line (a cut file?)")
        tree = parse_tree(s["tree_lines"]) if s["kind"] in ("detailed", "peak") and s["tree_lines"] else None
        if s["kind"] in ("detailed", "peak") and tree is None:
            raise ValueError(f"{path}: snapshot {s['n']} is {s['kind']} but has no tree")
        out.append({"n": s["n"], "time": t, "bytes": nbytes, "kind": s["kind"], "tree": tree})
    peak = max(out, key=lambda s: (s["bytes"], -s["n"]))
    final = out[-1]
    return {
        "pages_as_heap": "--pages-as-heap=yes" in header["desc"],
        "time_unit": header.get("time_unit"),
        "snapshots": len(out),
        "peak_bytes": peak["bytes"], "peak_snapshot": peak["n"], "peak_time": peak["time"],
        "final_bytes": final["bytes"], "final_time": final["time"],
        "peak_by_function": charge(peak["tree"]) if peak["tree"] else {},
        "final_by_function": charge(final["tree"]) if final["tree"] else {},
        "final_detailed": final["tree"] is not None,
        "timeline": [[s["time"], s["bytes"]] for s in out],
    }


# ---- the runner's tool interface ---------------------------------------------

def binary(spec):
    return None  # the scenario's binary for the allocator asked for


def unavailable(spec):
    return memcheck.unavailable(spec)


def command(spec, binary_path, run_dir, head, options):
    run_dir = Path(run_dir)
    return [memcheck.valgrind_path() or "valgrind", f"--tool={NAME}", "--pages-as-heap=yes",
            f"--massif-out-file={run_dir / 'massif.out'}", f"--log-file={run_dir / 'massif.log'}",
            f"--max-snapshots={MAX_SNAPSHOTS}", f"--detailed-freq={DETAILED_FREQ}", f"--threshold={THRESHOLD_PCT}",
            # The last snapshot is the program as it exited: without this, Valgrind runs glibc's
            # __libc_freeres first, which empties glibc's stack cache (measured: stack_cache kept
            # 17.8 MB of cached stacks at the peak, 1.0 MB at the last snapshot).
            "--run-libc-freeres=no",
            "--child-silent-after-fork=yes", f"--max-threads={memcheck.max_threads_for(options)}"] \
        + head + list(options), {}


def versions(spec, binary_path):
    return {"tool_path": memcheck.valgrind_path(), "tool_version": memcheck.valgrind_version()}


def tool_report(parsed, versions_, exit_code=None):
    """massif.json's figures in tool.json's shape: kinds "peak" and "final" (bytes mapped; Massif
    counts no blocks at page level), by function at each."""
    kinds = {"peak": {"bytes": parsed["peak_bytes"], "blocks": None},
             "final": {"bytes": parsed["final_bytes"], "blocks": None}}
    by_function = {k: {fn: {"bytes": b, "blocks": None} for fn, b in parsed[f"{k}_by_function"].items()}
                   for k in ("peak", "final")}
    return tools.report(NAME, tool_path=versions_["tool_path"], tool_version=versions_["tool_version"],
                        kinds=kinds, reported_kinds=REPORTED_KINDS, by_function=by_function,
                        raw="massif.out", exit_code=exit_code,
                        extra={"pages_as_heap": parsed["pages_as_heap"], "snapshots": parsed["snapshots"]})


def postprocess(spec, binary_path, run_dir, info):
    run_dir = Path(run_dir)
    errors, notes = [], []
    log = run_dir / "massif.log"
    if "--max-threads" in (log.read_text(errors="replace") if log.exists() else ""):
        errors.append("valgrind ran out of thread slots: raise --max-threads (see massif.log)")
    try:
        parsed = parse_out(run_dir / "massif.out")
    except (ValueError, OSError) as e:
        errors.append(f"massif: {e}")
        return None, errors, notes
    if not parsed["pages_as_heap"]:
        errors.append("massif: the profile was not made with --pages-as-heap=yes")
    if not parsed["final_detailed"]:
        notes.append("massif: the last snapshot is not detailed: no bytes by function at exit")
    (run_dir / "massif.json").write_text(json.dumps(parsed, indent=1) + "\n")
    return tool_report(parsed, versions(spec, binary_path), info.get("process_exit_code")), errors, notes
