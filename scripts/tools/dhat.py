"""Valgrind DHAT capture: the valgrind command line, and its dhat.json parsed into tool.json (bytes
and blocks allocated over the run, live at the global peak t-gmax, live at the end t-end).

DHAT replaces malloc with Valgrind's own allocator and follows every block from malloc to free: it
sees live blocks, never pages. What an allocator keeps after free(), what it gives back, the stacks
of threads: none of it is a block, so none of it is in DHAT's figures, and under DHAT the
scenario's allocator (glibc's arenas, their trimming) does not even run. So on a program whose
freed memory stays resident DHAT says "freed" (t-end near 0) where RSS says "still here"
(docs/tools.md, "Valgrind DHAT")."""

import json
import re
from pathlib import Path

from scripts.tools import memcheck, tools

NAME = "dhat"
TITLE = "Valgrind DHAT"
# Valgrind replaces malloc itself, whichever allocator the binary links: under DHAT a -tcmalloc or
# -jemalloc binary runs with Valgrind's malloc serving every call (measured: tcmalloc_cache's own
# reading of tcmalloc's in-use bytes is 0), so those columns say what DHAT sees of the program's
# blocks, never what tcmalloc or jemalloc would have kept.
ALLOCATORS = ("glibc", "tcmalloc", "jemalloc")
# DHAT's canary: --canary's block (31,337 bytes, its pointer dropped, never freed): one block, of
# that size, live from its malloc to the end, which DHAT must charge to ll_canary_leak at t-end.
CANARY_OPTIONS = ["--canary"]
LEAK_EXIT_CODES = {}  # valgrind passes the program's exit code through
# A profiler, not a checker: its verdict is "reported" when blocks are still live at t-end.
REPORTED_KINDS = ("final",)
# DHAT's record fields -> tool.json's kinds: total allocated, live at t-gmax, live at t-end.
FIELDS = {"total": ("tb", "tbk"), "peak": ("gb", "gbk"), "final": ("eb", "ebk")}

_FRAME = re.compile(r"^0x[0-9A-Fa-f]+: (.*?)(?: \((?:in )?[^()]*\))?$")


def frame_function(text):
    """'0x1091D0: main (t.c:7)' -> 'main'; '[root]' stays."""
    m = _FRAME.match((text or "").strip())
    return tools.source_name(m.group(1)) if m else (text or "").strip()


def parse_json(path):
    """A DHAT (heap mode) output file -> {"kinds": {total|peak|final: {bytes, blocks}},
    "by_function": {kind: {fn: {bytes, blocks}}}, "program_points", "t_end", "t_gmax"}.
    Raises ValueError for a file that is not a complete DHAT heap profile."""
    try:
        doc = json.loads(Path(path).read_text(errors="replace"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not complete JSON ({e}); did valgrind die?") from None
    if not isinstance(doc, dict) or doc.get("dhatFileVersion") is None:
        raise ValueError(f"{path}: no dhatFileVersion: not a DHAT output file")
    if doc.get("mode") != "heap":
        raise ValueError(f"{path}: DHAT mode '{doc.get('mode')}', not 'heap' (--mode=heap is the one with t-gmax)")
    pps, ftbl = doc.get("pps"), doc.get("ftbl")
    if not isinstance(pps, list) or not isinstance(ftbl, list):
        raise ValueError(f"{path}: no 'pps' or 'ftbl' list")
    kinds = {k: {"bytes": 0, "blocks": 0} for k in FIELDS}
    by_function = {k: {} for k in FIELDS}
    for i, pp in enumerate(pps):
        try:
            frames = [frame_function(ftbl[j]) for j in pp["fs"]]
            figures = {k: (int(pp[b]), int(pp[bk])) for k, (b, bk) in FIELDS.items()}
        except (KeyError, IndexError, TypeError, ValueError):
            raise ValueError(f"{path}: program point {i} lacks a field or names a frame not in ftbl") from None
        fn = tools.charged_function([f for f in frames if f != "[root]"]) or "?"
        for kind, (nbytes, blocks) in figures.items():
            kinds[kind]["bytes"] += nbytes
            kinds[kind]["blocks"] += blocks
            if nbytes or blocks:
                tools.add(by_function, kind, fn, nbytes, blocks)
    return {"kinds": kinds, "by_function": by_function, "program_points": len(pps),
            "t_end": doc.get("te"), "t_gmax": doc.get("tg"), "time_unit": doc.get("tu")}


# ---- the runner's tool interface ---------------------------------------------

def binary(spec):
    return None  # the scenario's glibc binary


def unavailable(spec):
    return memcheck.unavailable(spec)


def command(spec, binary_path, run_dir, head, options):
    run_dir = Path(run_dir)
    return [memcheck.valgrind_path() or "valgrind", f"--tool={NAME}", "--mode=heap",
            f"--dhat-out-file={run_dir / 'dhat.json'}", f"--log-file={run_dir / 'dhat.log'}",
            "--child-silent-after-fork=yes", f"--max-threads={memcheck.max_threads_for(options)}"] \
        + head + list(options), {}


def versions(spec, binary_path):
    return {"tool_path": memcheck.valgrind_path(), "tool_version": memcheck.valgrind_version()}


def tool_report(parsed, versions_, exit_code=None):
    return tools.report(NAME, tool_path=versions_["tool_path"], tool_version=versions_["tool_version"],
                        kinds={k: dict(v) for k, v in parsed["kinds"].items()}, reported_kinds=REPORTED_KINDS,
                        by_function=parsed["by_function"], raw="dhat.json", exit_code=exit_code,
                        extra={"program_points": parsed["program_points"]})


def postprocess(spec, binary_path, run_dir, info):
    run_dir = Path(run_dir)
    errors, notes = [], []
    log = run_dir / "dhat.log"
    if "--max-threads" in (log.read_text(errors="replace") if log.exists() else ""):
        errors.append("valgrind ran out of thread slots: raise --max-threads (see dhat.log)")
    try:
        parsed = parse_json(run_dir / "dhat.json")
    except (ValueError, OSError) as e:
        errors.append(f"dhat: {e}")
        return None, errors, notes
    (run_dir / "dhat.parsed.json").write_text(json.dumps(parsed, indent=1) + "\n")
    return tool_report(parsed, versions(spec, binary_path), info.get("process_exit_code")), errors, notes
