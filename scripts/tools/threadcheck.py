"""threadcheck capture: LD_PRELOAD=libthreadcheck.so into the glibc build; its report at exit into tool.json."""

import re
from pathlib import Path

from scripts.tools import sanitizer, tools

NAME = "threadcheck"
TITLE = "threadcheck (goleak for C)"
ALLOCATORS = ("glibc",)  # preloaded into the scenario's own glibc build
# threadcheck reports threads alive at exit: its canary is a thread left blocked on purpose.
CANARY_OPTIONS = ["--canary-stuck-thread"]
# Its own "threads left" exit code (its default, set explicitly): data, not a
# scenario failure, when the scenario's end event says it ran as designed.
LEAK_EXIT_CODES = {66: "threadcheck found threads alive at exit"}
REPORTED_KINDS = ("alive",)
ENV_LIBRARY = "LEAKLAB_THREADCHECK"  # another build of libthreadcheck.so
LOG = "threadcheck"                   # log_path: the report goes to RUN_DIR/threadcheck.PID
# How long the check at exit waits for threads to wind down (its default).
DEADLINE_MS = 1000


def library_path(spec):
    """(path, None) or (None, why): $LEAKLAB_THREADCHECK, else BUILD/threadcheck/libthreadcheck.so."""
    built = Path(spec.build_dir) / "threadcheck" / "libthreadcheck.so"
    return tools.preload_library(ENV_LIBRARY, built, (
        f"{built} was not built (cmake --build {spec.build_dir}; it needs libunwind-dev and "
        f"libdw-dev), or point {ENV_LIBRARY} at a libthreadcheck.so"))


def binary(spec):
    return None  # the scenario's own glibc binary


def unavailable(spec):
    return library_path(spec)[1]


def command(spec, binary_path, run_dir, head, options):
    # The user's THREADCHECK_OPTIONS first, ours after (the last value of a
    # key wins): the report always lands in the run directory as threadcheck.PID.
    env = {"LD_PRELOAD": library_path(spec)[0],
           **sanitizer.options_env("THREADCHECK_OPTIONS", {"log_path": LOG, "exitcode": 66})}
    return head + list(options), env


def versions(spec, binary_path):
    path = library_path(spec)[0]
    return {"tool_path": path, "tool_version": tools.preloaded_version(path, "threadcheck")}


# ---- the report ---------------------------------------------------------------

_HEADER = re.compile(r"^threadcheck: found unexpected threads at exit: (\d+) threads? in (\d+) groups?")
_GROUP = re.compile(r"^(\d+) @ (.*)$")
_STATE = re.compile(r"^#\tstate (\S) \([^)]*\), syscall (\S+), wchan ([^,;\s]+)(?:, futex (0x[0-9a-f]+))?.*?; stack (.*?); tids")
_FRAME = re.compile(r"^#\t(0x[0-9a-f]+)\t(\S+?)(?: \(inlined\))?\+0x[0-9a-f]+(?:\t(\S+))?$")
_SUMMARY = re.compile(r"^threadcheck: SUMMARY: (\d+) unexpected threads? in (\d+) groups?")
_CANNOT = re.compile(r"^threadcheck: (THREADCHECK_OPTIONS: .*|the check at exit could not run: .*)$")


def parse(text):
    """threadcheck's report -> {"groups": [...], "threads", "summary": (threads, groups) or None, "fatal"}.
    Each group: count, stack (function names from the top frame, as the
    report's group line has them), state, syscall, futex, status, frames."""
    groups, summary, fatal, header = [], None, None, None
    current = None
    for line in text.splitlines():
        m = _GROUP.match(line)
        if m:
            stack = m.group(2)
            current = {"count": int(m.group(1)),
                       "stack": [] if stack.startswith("(") else stack.split(" <- "),
                       "state": None, "syscall": None, "futex": None, "status": None, "frames": []}
            groups.append(current)
            continue
        if current is not None:
            m = _STATE.match(line)
            if m:
                current.update(state=m.group(1), syscall=m.group(2), futex=m.group(4), status=m.group(5))
                continue
            m = _FRAME.match(line)
            if m:
                current["frames"].append({"address": m.group(1), "function": m.group(2), "where": m.group(3)})
                continue
        m = _HEADER.match(line)
        if m:
            header = (int(m.group(1)), int(m.group(2)))
            continue
        m = _SUMMARY.match(line)
        if m:
            summary = (int(m.group(1)), int(m.group(2)))
            current = None
            continue
        m = _CANNOT.match(line)
        if m:
            fatal = m.group(1)
    return {"groups": groups, "threads": sum(g["count"] for g in groups), "header": header,
            "summary": summary, "fatal": fatal}


def top_function(group):
    """The function a group of threads is charged to: its top frame (the first
    outside libc, the loader and threadcheck), or what it is stuck in."""
    if group["stack"]:
        return tools.source_name(group["stack"][0])
    return f"({group['syscall'] or '?'})"


def postprocess(spec, binary_path, run_dir, info):
    files = sanitizer.logs(run_dir, LOG)
    text = "".join(p.read_text(errors="replace") for p in files)
    stderr = Path(run_dir) / "stderr.txt"
    if stderr.exists():
        text += "".join(l + "\n" for l in stderr.read_text(errors="replace").splitlines() if _CANNOT.match(l))
    parsed = parse(text)
    errors, notes = [], []
    if parsed["fatal"]:
        errors.append(f"threadcheck: {parsed['fatal']}")
    for name, expect in (("header", parsed["header"]), ("SUMMARY", parsed["summary"])):
        if files and expect != (parsed["threads"], len(parsed["groups"])):
            errors.append(f"threadcheck: the groups add up to {parsed['threads']} threads in "
                          f"{len(parsed['groups'])} groups but the {name} line says {expect}: "
                          "the report was not fully parsed")
    if not files:
        notes.append("threadcheck: no report file (threadcheck.PID): no thread outlived the program")
    kinds = {"alive": {"bytes": None, "blocks": parsed["threads"]}}
    by_function = {}
    for g in parsed["groups"]:
        tools.add(by_function, "alive", top_function(g), 0, g["count"])
    for slot in by_function.get("alive", {}).values():
        slot["bytes"] = None  # threads, not memory
    v = versions(spec, binary_path)
    doc = tools.report(NAME, tool_path=v["tool_path"], tool_version=v["tool_version"], kinds=kinds,
                       reported_kinds=REPORTED_KINDS, by_function=by_function,
                       raw=files[0].name if files else None, exit_code=info.get("process_exit_code"),
                       leak_exit_code=66,
                       extra={"groups": [{k: g[k] for k in ("count", "stack", "state", "syscall", "futex", "status")}
                                         for g in parsed["groups"]]})
    # tools.report picks the top function by bytes, then blocks: with bytes
    # None everywhere, by threads.
    return doc, errors, notes
