"""orphans capture: LD_PRELOAD=liborphans.so into the glibc build; its report at exit into tool.json.

orphans (threadcheck/orphans, docs/orphans.md) proves threads leaked by
reachability, as Go 1.26's goroutineleak profile does for goroutines: a thread
blocked on an object that no thread able to run (and no global) can reach can
never run again. Its kind is "orphan": blocks = leaked threads, bytes = the
heap reachable only from them (what they pin)."""

import re
from pathlib import Path

from scripts.tools import sanitizer, tools

NAME = "orphans"
TITLE = "orphans (goroutineleak for pthreads)"
ALLOCATORS = ("glibc",)  # preloaded into the scenario's own glibc build: its malloc family must be ours
# orphans reports threads that can never run again: its canary is a thread
# blocked on a condition variable whose only pointer was dropped.
CANARY_OPTIONS = ["--canary-orphan"]
# Its "leaked threads found" exit code (its default, LeakSanitizer's, set
# explicitly): data, not a scenario failure, when the end event says the
# scenario ran as designed.
LEAK_EXIT_CODES = {23: "orphans found leaked threads"}
REPORTED_KINDS = ("orphan",)
DECLINED = "declined"             # the verdict of an incomplete analysis (postprocess)
ENV_LIBRARY = "LEAKLAB_ORPHANS"  # another build of liborphans.so
LOG = "orphans"                   # log_path: the report goes to RUN_DIR/orphans.PID


def library_path(spec):
    """(path, None) or (None, why): $LEAKLAB_ORPHANS, else BUILD/threadcheck/orphans/liborphans.so."""
    built = Path(spec.build_dir) / "threadcheck" / "orphans" / "liborphans.so"
    return tools.preload_library(ENV_LIBRARY, built, (
        f"{built} was not built (cmake --build {spec.build_dir}; it needs libunwind-dev and "
        f"libdw-dev, as threadcheck does), or point {ENV_LIBRARY} at a liborphans.so"))


def binary(spec):
    return None  # the scenario's own glibc binary


def unavailable(spec):
    return library_path(spec)[1]


def command(spec, binary_path, run_dir, head, options):
    # The user's ORPHANS_OPTIONS first, ours after (the last value of a key
    # wins): the report always lands in the run directory as orphans.PID, and
    # says so even when nothing leaked (verbosity=2), so a missing report is
    # an error, never a silent "not reported".
    env = {"LD_PRELOAD": library_path(spec)[0],
           **sanitizer.options_env("ORPHANS_OPTIONS", {"log_path": LOG, "exitcode": 23, "verbosity": 2})}
    return head + list(options), env


def versions(spec, binary_path):
    path = library_path(spec)[0]
    return {"tool_path": path, "tool_version": tools.preloaded_version(path, "orphans")}


# ---- the report ---------------------------------------------------------------

_P = r"^==\d+== "
_HEADER = re.compile(_P + r"orphans(?: at exit| on signal \d+)?: (\d+) leaked threads? in (\d+) groups?:")
_NONE = re.compile(_P + r"orphans(?: at exit| on signal \d+)?: no leaked threads \((\d+) threads, (\d+) blocked")
_NO_ANALYSIS = re.compile(_P + r"orphans(?: at exit| on signal \d+)?: no analysis \((\w+)\): (.*)$")
_GROUP = re.compile(r"^(\d+) leaked threads? @ (.*)$")
_WAITING = re.compile(r"^  waiting: (\w+), futex (0x[0-9a-f]+)(?: in heap block (0x[0-9a-f]+) \((\d+) bytes\))?"
                      r"(?: on the stack of thread (\d+))?(?:: joining thread (\d+))?")
_PINS = re.compile(r"^  pins (\d+) bytes in (\d+) heap blocks")
_CANCEL = re.compile(r"^  (\d+) of them could still be ended by pthread_cancel")
_FRAME = re.compile(r"^    #\d+ (0x[0-9a-f]+) (\S+)(?: (\S+))?$")
_CREATED = re.compile(r"^  created by (.*)$")
_STATS = re.compile(_P + r"orphans: (\d+) threads \((\d+) blocked\), (\d+) heap blocks \((\d+) bytes\); world stopped "
                    r"(\d+) times?, ([\d.]+) ms the last, marked in ([\d.]+) ms, whole analysis ([\d.]+) ms")
_SUMMARY = re.compile(_P + r"SUMMARY: orphans: (\d+) leaked threads in (\d+) groups pinning (\d+) bytes in (\d+) blocks"
                      r"(?: \(and (\d+) bytes of glibc's thread blocks\))?")
_OPTIONS = re.compile(r"^orphans: (ORPHANS_OPTIONS: .*)$")


def parse(text):
    """orphans' report -> {"groups", "threads", "pinned", "header", "summary",
    "none", "stats", "fatal"}. Each group: count, stack (function names from
    the wait site out, as the group line has them), kind, futex, block,
    block_bytes, owner, pinned_bytes, pinned_blocks, cancellable, frames,
    created."""
    groups, header, summary, none, stats, fatal = [], None, None, None, None, None
    current = None
    for line in text.splitlines():
        m = _GROUP.match(line)
        if m:
            stack = m.group(2)
            current = {"count": int(m.group(1)),
                       "stack": [] if stack.startswith("(") else stack.split(" <- "),
                       "kind": None, "futex": None, "block": None, "block_bytes": None, "owner": None,
                       "pinned_bytes": 0, "pinned_blocks": 0, "cancellable": 0, "frames": [], "created": []}
            groups.append(current)
            continue
        if current is not None:
            m = _WAITING.match(line)
            if m:
                current.update(kind=m.group(1), futex=m.group(2), block=m.group(3),
                               block_bytes=int(m.group(4)) if m.group(4) else None,
                               owner=int(m.group(5) or m.group(6)) if (m.group(5) or m.group(6)) else None)
                continue
            m = _PINS.match(line)
            if m:
                current.update(pinned_bytes=int(m.group(1)), pinned_blocks=int(m.group(2)))
                continue
            m = _CANCEL.match(line)
            if m:
                current["cancellable"] = int(m.group(1))
                continue
            m = _FRAME.match(line)
            if m:
                current["frames"].append({"address": m.group(1), "function": m.group(2), "where": m.group(3)})
                continue
            m = _CREATED.match(line)
            if m:
                current["created"] = m.group(1).split(" <- ")
                continue
        m = _HEADER.match(line)
        if m:
            header = (int(m.group(1)), int(m.group(2)))
            current = None
            continue
        m = _NONE.match(line)
        if m:
            none = (int(m.group(1)), int(m.group(2)))
            continue
        m = _STATS.match(line)
        if m:
            stats = {"threads": int(m.group(1)), "blocked": int(m.group(2)), "heap_blocks": int(m.group(3)),
                     "heap_bytes": int(m.group(4)), "stops": int(m.group(5)), "stop_ms": float(m.group(6)),
                     "mark_ms": float(m.group(7)), "analysis_ms": float(m.group(8))}
            current = None
            continue
        m = _SUMMARY.match(line)
        if m:
            summary = {"threads": int(m.group(1)), "groups": int(m.group(2)), "pinned_bytes": int(m.group(3)),
                       "pinned_blocks": int(m.group(4)), "glibc_bytes": int(m.group(5) or 0)}
            current = None
            continue
        m = _NO_ANALYSIS.match(line) or _OPTIONS.match(line)
        if m:
            fatal = line.split("== ", 1)[-1].strip()
    return {"groups": groups, "threads": sum(g["count"] for g in groups),
            "pinned": sum(g["pinned_bytes"] for g in groups), "header": header, "summary": summary,
            "none": none, "stats": stats, "fatal": fatal}


# The harness's own wait primitives (common/chan.c, common/sync.c): a group
# is charged to the scenario's function that called them, as tools.py skips
# ll_xmalloc when it charges a block (Go's profile names the goroutine's
# function, not chansend).
HARNESS_WAITS = ("wait_on", "ll_chan_send", "ll_chan_recv", "ll_select", "ll_waitgroup_wait")


def top_function(group):
    """The function a group is charged to: its wait site (the first frame
    outside libc, the loader, the libraries of the family and the harness's
    wait primitives)."""
    names = [tools.source_name(f) for f in group["stack"]]
    for fn in names:
        if fn not in HARNESS_WAITS:
            return fn
    return names[0] if names else "(stack not captured)"


def postprocess(spec, binary_path, run_dir, info):
    files = sanitizer.logs(run_dir, LOG)
    text = "".join(p.read_text(errors="replace") for p in files)
    stderr = Path(run_dir) / "stderr.txt"
    if stderr.exists():
        text += "".join(l + "\n" for l in stderr.read_text(errors="replace").splitlines() if _OPTIONS.match(l))
    parsed = parse(text)
    errors, notes = [], []
    # An incomplete analysis is orphans declining by design (a thread it must not
    # signal: docs/orphans.md, "What it refuses"): no verdict either way, never read
    # as "nothing leaked". The cell's verdict is "declined" with no kinds, so every
    # check of what orphans found fails or errs unless the expected file says that
    # orphans declines there. Any other "no analysis" is an error of the run.
    declined = parsed["fatal"] if parsed["fatal"] and "no analysis (incomplete)" in parsed["fatal"] else None
    if parsed["fatal"] and not declined:
        errors.append(f"orphans: {parsed['fatal']}")
    if declined:
        notes.append(f"orphans declined: {declined}")
    if not files:
        errors.append("orphans: no report file (orphans.PID): the check at exit did not run (the program ended "
                      "by _exit or a signal, or liborphans was not preloaded)")
    elif parsed["header"] is None and parsed["none"] is None and not parsed["fatal"]:
        errors.append(f"orphans: {files[0].name} says neither what leaked nor that nothing did: not parsed")
    if parsed["header"] and parsed["header"] != (parsed["threads"], len(parsed["groups"])):
        errors.append(f"orphans: the groups add up to {parsed['threads']} threads in {len(parsed['groups'])} "
                      f"groups but the header says {parsed['header']}: the report was not fully parsed")
    summary = parsed["summary"]
    if parsed["header"] and (not summary or (summary["threads"], summary["pinned_bytes"]) != (parsed["threads"],
                                                                                             parsed["pinned"])):
        errors.append(f"orphans: the groups add up to {parsed['threads']} threads pinning {parsed['pinned']} bytes "
                      f"but the SUMMARY line says {summary}: the report was not fully parsed")
    kinds = {} if declined else {"orphan": {"bytes": parsed["pinned"], "blocks": parsed["threads"]}}
    by_function = {}
    for g in parsed["groups"]:
        tools.add(by_function, "orphan", top_function(g), g["pinned_bytes"], g["count"])
    v = versions(spec, binary_path)
    doc = tools.report(NAME, tool_path=v["tool_path"], tool_version=v["tool_version"], kinds=kinds,
                       reported_kinds=REPORTED_KINDS, by_function=by_function,
                       raw=files[0].name if files else None, exit_code=info.get("process_exit_code"),
                       leak_exit_code=23,
                       extra={"groups": [{k: g[k] for k in ("count", "stack", "kind", "block_bytes", "pinned_bytes",
                                                            "pinned_blocks", "cancellable", "created")}
                                         for g in parsed["groups"]],
                              "glibc_bytes": (summary or {}).get("glibc_bytes", 0),
                              "analysis": parsed["stats"]})
    if declined:
        doc.update(verdict=DECLINED, declined=declined.split("no analysis (incomplete): ", 1)[-1])
    return doc, errors, notes
