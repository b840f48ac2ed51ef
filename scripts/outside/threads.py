"""threads.py - `leaklab threads PID`: where every thread of a running process is, grouped
by stack the way Go's /debug/pprof/goroutine?debug=1 groups goroutines:

    1000 @ ll_chan_recv <- worker <- start_thread <- __clone3
    #	state S (sleeping), futex wait on 0x5600dc0879b0, wchan futex_do_wait
    #	0x5600bc183d9c	ll_chan_recv+0x3c	/work/main/common/chan.c:53
    ...

The C half, BUILD/threadcheck/outside/threaddump, stops the threads with ptrace, unwinds
them with elfutils' libdw, lets them go and prints one JSON document (threads, and a table
of named locations their stacks point into). This module groups the threads, prints the
groups largest first, or writes them as JSON (--json) or as a pprof profile (--pprof FILE,
one sample per group of identical threads) that `go tool pprof` opens.

Any process the user may trace works: built with leaklab or not; function names need a
symbol table, file:line needs debug info (DWARF)."""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


from scripts.base.exits import EXIT_OK, EXIT_SKIP, EXIT_SYSTEM, EXIT_USAGE
from scripts.run import runner
from scripts.tools import pprof_format

DUMPER = Path("threadcheck") / "outside" / "threaddump"
DEFAULT_TIMEOUT_S = 120
DEFAULT_STOP_TIMEOUT_S = 2.0
DEFAULT_MAX_FRAMES = 256

# The C library's own frames (the futex wait inside pthread_cond_wait, say) are where
# every blocked thread ends up; the group's headline starts at the first frame outside
# it, the wait site in the program. The frames below the headline keep them all.
C_LIBRARY = re.compile(r"(^|/)(libc\.so|libc-[\d.]+\.so|libpthread|ld-linux|ld64\.so|ld-musl|libc\.musl)"
                       r"|^\[vdso|linux-vdso")

STATES = {"R": "running", "S": "sleeping", "D": "uninterruptible sleep", "T": "stopped",
          "t": "tracing stop", "Z": "zombie", "X": "dead", "I": "idle", "P": "parked"}


def add_arguments(p):
    p.add_argument("pid", metavar="PID", help="the process (any process you may trace, leaklab's or not)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help="print the groups as one JSON document (for tools) instead of the dump")
    p.add_argument("--pprof", metavar="FILE", type=Path,
                   help="also write a pprof profile (gzipped profile.proto, one sample per group of identical threads): "
                        "go tool pprof -top FILE")
    p.add_argument("--stop-timeout", metavar="SEC", type=float, default=DEFAULT_STOP_TIMEOUT_S,
                   help="give up on threads that have not stopped once SEC s pass with no thread "
                        f"stopping, e.g. in uninterruptible sleep (default {DEFAULT_STOP_TIMEOUT_S:g})")
    p.add_argument("--max-frames", metavar="N", type=int, default=DEFAULT_MAX_FRAMES,
                   help=f"deepest stack to unwind (default {DEFAULT_MAX_FRAMES})")
    p.add_argument("--timeout", metavar="SEC", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"give up on the whole dump after SEC s (default {DEFAULT_TIMEOUT_S})")
    # For the safety tests: threaddump pauses after a phase, says so on our stderr and
    # waits for a line on our stdin (both passed through).
    p.add_argument("--pause-after", choices=("seized", "stopped"), help=argparse.SUPPRESS)
    p.add_argument("--build-dir", metavar="DIR",
                   help="CMake build dir holding threadcheck/outside/threaddump (default: $LEAKLAB_BUILD_DIR or build/)")


EPILOG = ("The threads are stopped with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT, no signal sent) only while "
          "their stacks are read, and are never left stopped or traced, even if this command is killed. "
          "exit codes: 0 dumped, 2 bad PID (not a number, no such process, a thread id, exited), 77 threaddump "
          "not built, 99 ptrace refused (the cause and remedy are printed) or the dump failed. See docs/threads.md.")


# ---- running the dumper ----

def dumper_path(build_dir):
    return Path(build_dir) / DUMPER


def parse_pid(text):
    if not re.fullmatch(r"\d+", text or ""):
        raise runner.UsageError(f"PID: '{text}' is not a number; expected a process id (a positive integer)")
    pid = int(text)
    if not 1 <= pid <= 2**31 - 1:
        raise runner.UsageError(f"PID: {text} is out of range; expected a process id in [1, {2**31 - 1}]")
    return pid


def dump(pid, build_dir=None, stop_timeout=DEFAULT_STOP_TIMEOUT_S, max_frames=DEFAULT_MAX_FRAMES,
         timeout=DEFAULT_TIMEOUT_S, pause_after=None):
    """Runs threaddump on pid and returns its document. Raises runner.Skip (not built),
    runner.UsageError (its exit 2) or runner.SystemFailure (its exit 99, a timeout)."""
    binary = dumper_path(runner.resolve_build_dir(build_dir))
    if not os.access(binary, os.X_OK):
        raise runner.Skip(f"{binary} is not built: it needs elfutils' libdw (libdw-dev; scripts/install-deps), "
                          f"then cmake --build {binary.parents[2]}")
    argv = [str(binary), "--stop-timeout", f"{stop_timeout:g}", "--max-frames", str(max_frames), str(pid)]
    if pause_after:
        argv[1:1] = ["--pause-after", pause_after]
    # Paused (tests), its stdin and stderr are ours; otherwise its stderr is read for the message.
    proc = subprocess.Popen(argv, stdin=None if pause_after else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=None if pause_after else subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
        err = err or b""
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise runner.SystemFailure(f"threaddump did not finish within --timeout {timeout:g} s; it was stopped "
                                   "(its exit released every thread it traced)") from None
    except BaseException:  # KeyboardInterrupt, runner.Terminated: the dumper must not outlive us
        _stop(proc)
        raise
    message = err.decode(errors="replace").strip()
    if proc.returncode == EXIT_USAGE:
        raise runner.UsageError(_strip_prefix(message) or f"threaddump exited {EXIT_USAGE}")
    if proc.returncode != EXIT_OK:
        what = f"exit {proc.returncode}" if proc.returncode > 0 else f"signal {-proc.returncode}"
        raise runner.SystemFailure(_strip_prefix(message) or f"threaddump failed ({what})")
    try:
        return json.loads(out)
    except ValueError as e:
        raise runner.SystemFailure(f"threaddump printed no valid JSON ({e}); stderr: {message}") from None


def _strip_prefix(message):
    return "\n".join(line.removeprefix("threaddump: ") for line in message.splitlines())


def _stop(proc):
    """SIGTERM, then SIGKILL: either way the kernel releases every thread it traced."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ---- grouping ----

def _frames(doc, location_id):
    """The frames of one location (inlined calls first), as the groups show them."""
    loc = doc["locations"][location_id]
    module = doc["modules"][loc["module"]] if loc.get("module") is not None else None
    out = []
    for f in loc["frames"]:
        name, offset = f.get("function"), f.get("offset") or 0
        if not name:  # no symbol: the module and the offset in it, as perf and gdb print it
            address = int(loc["address"], 16)
            name = (f"{os.path.basename(module['name'])}+0x{address - int(module['start'], 16):x}"
                    if module else loc["address"])
            offset = None
        out.append({"function": name, "file": f.get("file"), "line": f.get("line") or None,
                    "address": loc["address"], "offset": offset, "inlined": bool(f.get("inlined")),
                    "module": module["name"] if module else None})
    return out


def headline_stack(frames):
    """Function names from the first frame outside the C library outwards (all of them
    when every frame is in it), innermost first."""
    names = [f["function"] for f in frames]
    for i, f in enumerate(frames):
        if not (f["module"] and C_LIBRARY.search(f["module"])):
            return names[i:]
    return names


def group_threads(doc):
    """The threads grouped by (state, wchan, syscall, stack), largest group first (a group
    without a stack after the others of its size); the threads that exited during the dump
    are left out (doc["gone"] counts them). Like Go's dump, the futex word does not split a
    group: 200 writers each waiting on its own session's condition variable are one group
    of 200, with wait_address null and wait_addresses 200; a group on one futex has it."""
    groups = {}
    frames_of = {}
    for th in doc["threads"]:
        if th["fate"] == "gone":
            continue
        stack = tuple(th["stack"])
        key = (th["state"], th["wchan"], th["syscall"], stack, th["error"] if not stack else None)
        g = groups.get(key)
        if g is None:
            frames = []
            for location_id in stack:
                if location_id not in frames_of:
                    frames_of[location_id] = _frames(doc, location_id)
                frames += frames_of[location_id]
            g = groups[key] = {"count": 0, "state": th["state"], "wchan": th["wchan"], "syscall": th["syscall"],
                               "wait_address": None, "wait_addresses": 0, "stack": headline_stack(frames),
                               "frames": frames, "error": th["error"], "tids": [], "names": [], "_waits": set()}
        g["count"] += 1
        if th["wait_address"]:
            g["_waits"].add(th["wait_address"])
        g["tids"].append(th["tid"])
        if th["name"] not in g["names"]:
            g["names"].append(th["name"])
    for g in groups.values():
        waits = g.pop("_waits")
        g["wait_addresses"] = len(waits)
        g["wait_address"] = next(iter(waits)) if len(waits) == 1 else None
    return sorted(groups.values(), key=lambda g: (-g["count"], not g["stack"], " <- ".join(g["stack"]), g["tids"][0]))


# ---- printing ----

def _wait_text(g):
    state = f"state {g['state']} ({STATES.get(g['state'], 'unknown')})"
    parts = [state]
    if g["wait_address"]:
        parts.append(f"{g['syscall']} wait on {g['wait_address']}")
    elif g["wait_addresses"] > 1:
        parts.append(f"{g['syscall']} wait on {g['wait_addresses']} different words")
    elif g["syscall"] not in ("none", "?", "running"):
        parts.append(f"in {g['syscall']}")
    elif g["syscall"] == "running":
        parts.append("running (not in a system call)")
    if g["wchan"] not in ("-", ""):
        parts.append(f"wchan {g['wchan']}")
    return ", ".join(parts)


def _tids_text(tids):
    shown = " ".join(str(t) for t in tids[:6])
    return f"{shown} ... ({len(tids)} threads)" if len(tids) > 6 else shown


def text(doc, groups):
    total = sum(g["count"] for g in groups)
    timing = doc.get("timing_s", {})
    lines = [f"threads profile: total {total}, pid {doc['pid']} ({doc['command']})",
             f"# {len(groups)} group{'s' if len(groups) != 1 else ''}; stopped, unwound and released in "
             f"{timing.get('total', 0):.2f} s (the threads were held {timing.get('target_stopped', 0):.2f} s at most)"]
    if doc.get("gone"):
        lines.append(f"# {doc['gone']} thread{'s' if doc['gone'] != 1 else ''} exited during the dump")
    if doc.get("unstopped"):  # threaddump left them running: a stop would cut their transfer short
        n = doc["unstopped"]
        lines.append(f"# {n} thread{'s' if n != 1 else ''} not stopped (in a write or send a stop would cut "
                     "short): stack read from /proc's registers")
    if doc.get("exited"):
        lines.append("# the process exited during the dump: what follows is what was read before it did")
    for g in groups:
        lines.append("")
        headline = " <- ".join(g["stack"]) if g["stack"] else f"(no stack: {g['error'] or 'not unwound'})"
        lines.append(f"{g['count']} @ {headline}")
        lines.append(f"#\t{_wait_text(g)}")
        lines.append(f"#\ttid {_tids_text(g['tids'])}; named {', '.join(g['names'])}")
        for f in g["frames"]:
            where = f"{f['file']}:{f['line']}" if f["file"] else f"({os.path.basename(f['module'] or '?')})"
            if f["inlined"]:
                name = f"{f['function']} (inlined)"
            elif f["offset"] is None:  # already module+offset
                name = f["function"]
            else:
                name = f"{f['function']}+0x{f['offset']:x}"
            lines.append(f"#\t{f['address']}\t{name}\t{where}")
        if g["stack"] and g["error"]:
            lines.append(f"#\t({g['error']})")
    return "\n".join(lines)


def to_json(doc, groups):
    """The document `--json` prints: the process, the counts and timings, and the groups
    with the census keys (state, wchan, syscall, wait_address, count, stack, frames), plus
    wait_addresses (distinct futex words), tids, names (thread names) and error."""
    keep = ("pid", "command", "exe", "exited", "threads_seen", "unwound", "late", "gone", "refused", "unstopped",
            "restarted", "timing_s")
    out = {k: doc.get(k) for k in keep}
    out["groups"] = [{k: g[k] for k in ("count", "state", "wchan", "syscall", "wait_address", "wait_addresses",
                                        "stack", "frames", "tids", "names", "error")} for g in groups]
    return out


# ---- pprof ----

def profile(doc, now_ns=None):
    """A pprof Profile of the dump: one sample per distinct stack and labels, its value the
    number of threads (as Go's runtime/pprof writes a goroutine profile), its stack as
    locations, labels for what the kernel said (state, wchan, syscall, wait address, thread
    name). No tid label, so identical threads are one sample and `pprof -traces` shows one
    trace per group. (Written one per thread, they were grouped only by a pprof that merges
    a lone profile's samples: Go 1.19's did; Go 1.24's skips the merge for a single profile,
    internal/driver/fetch.go combineProfiles, and printed 1,001 traces.)"""
    p = pprof_format.Profile(sample_type=("threads", "count"), time_nanos=now_ns or time.time_ns(),
                             comments=[f"leaklab threads: pid {doc['pid']} ({doc['command']}), "
                                       f"{doc.get('threads_seen', 0)} threads"])
    mapping_ids = {}
    for m in doc["modules"]:
        frames = [f for loc in doc["locations"] if loc.get("module") == m["id"] for f in loc["frames"]]
        mapping_ids[m["id"]] = p.mapping(
            int(m["start"], 16), int(m["end"], 16), m["name"], build_id=m.get("build_id") or "",
            has_functions=True, has_filenames=any(f.get("file") for f in frames),
            has_line_numbers=any(f.get("line") for f in frames),
            has_inline_frames=any(f.get("inlined") for f in frames))
    location_ids = {}
    for loc in doc["locations"]:
        lines = []
        for f in _frames(doc, loc["id"]):
            fid = p.function(f["function"], filename=f["file"] or (f["module"] or ""))
            lines.append((fid, f["line"] or 0))
        location_ids[loc["id"]] = p.location(int(loc["address"], 16), lines,
                                             mapping=mapping_ids.get(loc.get("module"), 0))
    samples = {}  # (stack, labels) -> [stack, labels, threads], in the document's order
    for th in doc["threads"]:
        if not th["stack"]:
            continue
        labels = {"state": th["state"], "wchan": th["wchan"], "syscall": th["syscall"], "thread": th["name"]}
        if th["wait_address"]:
            labels["wait"] = th["wait_address"]
        stack = [location_ids[i] for i in th["stack"]]
        samples.setdefault((tuple(stack), tuple(sorted(labels.items()))), [stack, labels, 0])[2] += 1
    for stack, labels, count in samples.values():
        p.sample(stack, [count], labels=labels)
    return p


def write_pprof(doc, path):
    data = profile(doc).gzipped()
    try:
        Path(path).write_bytes(data)
    except OSError as e:
        raise runner.UsageError(f"--pprof: cannot write {path}: {e.strerror}") from None
    return sum(1 for th in doc["threads"] if th["stack"])


# ---- the command ----

def _raise_terminated(signum, frame):
    raise runner.Terminated(signum)


def cmd_threads(args):
    pid = parse_pid(args.pid)
    if not 0.01 <= args.stop_timeout <= 600:
        raise runner.UsageError(f"--stop-timeout: {args.stop_timeout:g} is out of range; accepted: 0.01 to 600 s")
    if not 1 <= args.max_frames <= 65536:
        raise runner.UsageError(f"--max-frames: {args.max_frames} is out of range; accepted: 1 to 65536")
    if not 1 <= args.timeout <= 86400:
        raise runner.UsageError(f"--timeout: {args.timeout:g} is out of range; accepted: 1 to 86400 s")
    if args.pprof and args.pprof.parent and not args.pprof.parent.is_dir():
        raise runner.UsageError(f"--pprof: {args.pprof.parent} is not a directory")
    previous = {sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        doc = dump(pid, args.build_dir, args.stop_timeout, args.max_frames, args.timeout, args.pause_after)
    except (KeyboardInterrupt, runner.Terminated):
        print("leaklab threads: interrupted; threaddump was stopped, and its exit released every thread it "
              "traced", file=sys.stderr)
        return EXIT_SYSTEM
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    groups = group_threads(doc)
    if args.json:
        print(json.dumps(to_json(doc, groups), indent=1))
    else:
        print(text(doc, groups))
    if args.pprof:
        unwound = write_pprof(doc, args.pprof)
        print(f"leaklab threads: wrote {args.pprof} ({unwound} threads, one sample per group of identical ones); "
              f"open it with: go tool pprof -top {args.pprof}", file=sys.stderr)
    return EXIT_OK


def main(argv=None):
    """Standalone use, from the repo: python3 -m scripts.outside.threads PID [options]."""
    p = argparse.ArgumentParser(prog="threads.py", description=__doc__.split("\n\n")[0], epilog=EPILOG)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return cmd_threads(args)
    except runner.Skip as e:
        print(f"SKIP: {e}")
        return EXIT_SKIP
    except runner.Outcome as e:
        print(f"leaklab threads: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    sys.exit(main())
