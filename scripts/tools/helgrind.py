"""Valgrind Helgrind capture: the valgrind command line, and its XML report parsed into tool.json,
with the CAUSE Helgrind names (lock order, re-lock, a thread ending with a lock held, a race).

Helgrind is a thread-error detector, not a leak checker: what it can say about a
leaked thread is why it blocks. Its words, mapped to the truth's cause vocabulary
(expected.CAUSES; docs/tools.md, "Causes: Helgrind, DRD and TSan's deadlock detector"):

  "lock order "A before B" violated"            -> lock_order
  "Attempt to re-lock a non-recursive lock I already hold"  -> double_lock
  "Exiting thread still holds N lock(s)":
      the thread really ended (no wait on its stack)         -> missing_unlock
      it was still blocked, not on a lock (a channel, a condition variable, a join)
                                                             -> wait_holding_lock
      it was still blocked on another lock: a symptom of a lock cycle Helgrind
      could not see (it adds an edge to its lock-order graph only once a lock is
      acquired, and in a real deadlock the second lock never is) -> no cause
  "Possible data race"                           -> data_race (no kernel's cause)
  unlock of an unlocked / foreign lock           -> bad_unlock (no kernel's cause)
  pthread API errors and anything else           -> api_misuse (no kernel's cause)

Errors raised inside the harness's census (the signal-driven stack capture reads
other threads' slots without locks Helgrind knows of) or its count of unjoined
threads (ll_unjoined_threads) are counted apart, as "harness", and name no cause:
they are the harness's, in every run, leaky or fixed."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from scripts.tools import memcheck, tools

NAME = "helgrind"
TITLE = "Valgrind Helgrind"
ALLOCATORS = ("glibc",)  # valgrind replaces malloc itself
# Helgrind's canary: a lock-order inversion that never deadlocks (common/harness.c);
# the comparer knows the run for a canary run by its start event's canary_lock_orders.
CANARY_OPTIONS = ["--canary-lock-order"]
LEAK_EXIT_CODES = {}  # no --error-exitcode: valgrind passes the program's exit code through
# The threads Helgrind names at exit: those that ended, or were still blocked, holding a lock.
REPORTED_KINDS = ("holding",)

# A stack that passes through the census, or through the count of ended,
# unjoined threads (which reads glibc's list of stacks without its lock, as gdb
# does), is the harness's own doing.
HARNESS_FRAMES = ("on_capture_signal", "threadcheck_snapshot_take", "tc_capture", "ll_unjoined_threads")
# Where a thread that "exits" holding a lock was when the process ended.
LOCK_WAIT_FRAMES = ("__lll_lock_wait", "pthread_mutex_lock", "pthread_mutex_timedlock", "pthread_rwlock_rdlock",
                    "pthread_rwlock_wrlock", "__pthread_rwlock_rdlock_full64", "__pthread_rwlock_wrlock_full64",
                    "lll_mutex_lock_optimized")
OTHER_WAIT_FRAMES = ("pthread_cond_wait", "pthread_cond_timedwait", "__pthread_cond_wait_common", "pthread_join",
                     "__pthread_clockjoin_ex", "read", "__libc_read", "futex_wait", "__futex_abstimed_wait_common",
                     "__futex_abstimed_wait_common64", "syscall", "pthread_barrier_wait", "sem_wait", "poll",
                     "epoll_wait", "nanosleep", "clock_nanosleep")
# The causes in the order a tool's report names them: the first one found is
# tool.json's "cause" (a specific diagnosis before a race somewhere).
CAUSE_ORDER = ("lock_order", "double_lock", "recursive_rlock", "missing_unlock", "wait_holding_lock",
               "missing_join", "bad_unlock", "api_misuse", "data_race")

_HOLDS = re.compile(r"Exiting thread still holds (\d+) locks?")


def _frames(stack):
    return [tools.source_name((f.findtext("fn") or "").split("@")[0])
            for f in (stack.findall("frame") if stack is not None else ())]


def _text(err):
    xwhat = err.find("xwhat")
    return (xwhat.findtext("text") if xwhat is not None else err.findtext("what")) or ""


def exit_cause(frames):
    """The cause of "Exiting thread still holds a lock" from the thread's stack
    (innermost first): where it was when it ended."""
    top = frames[:8]
    if any(f in LOCK_WAIT_FRAMES for f in top):
        return None
    if any(f in OTHER_WAIT_FRAMES for f in top):
        return "wait_holding_lock"
    return "missing_unlock"


def classify(kind, text, frames):
    """(cause or None, threads holding locks) of one Helgrind error."""
    if kind == "LockOrder" or "lock order" in text:
        return "lock_order", 0
    if "re-lock a non-recursive lock" in text:
        return "double_lock", 0
    m = _HOLDS.search(text)
    if m:
        return exit_cause(frames), 1
    if kind == "Race":
        return "data_race", 0
    if kind.startswith("Unlock"):
        return "bad_unlock", 0
    return "api_misuse", 0


def parse_xml(path, classify_error=classify):
    """A Helgrind (or DRD) --xml=yes report -> {"causes": {cause: reports},
    "reports": {text: count}, "harness": N, "holding": threads, "error_count", "finished"}.
    Raises ValueError for an incomplete file (valgrind killed before it closed the XML)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path} is not complete XML ({e}); did valgrind die?") from None
    counts = {pair.findtext("unique"): int(pair.findtext("count") or 1) for pair in root.iter("pair")}
    causes, reports, harness, holding, errors = {}, {}, 0, 0, 0
    for err in root.iter("error"):
        n = counts.get(err.findtext("unique"), 1)
        kind, text = err.findtext("kind") or "?", _text(err)
        frames = _frames(err.find("stack"))
        if any(f in HARNESS_FRAMES for f in frames):
            harness += n
            continue
        errors += n
        cause, held = classify_error(kind, text, frames)
        holding += held * n
        label = re.sub(r"0x[0-9A-Fa-f]+", "ADDR", re.sub(r"#\d+", "#N", text))[:160]
        reports[label] = reports.get(label, 0) + n
        if cause:
            causes[cause] = causes.get(cause, 0) + n
    return {"causes": causes, "reports": reports, "harness": harness, "holding": holding,
            "error_count": errors, "finished": "FINISHED" in [s.findtext("state") for s in root.iter("status")]}


def main_cause(causes):
    """The one cause a report names: the first of CAUSE_ORDER present, "none" without any."""
    return next((c for c in CAUSE_ORDER if causes.get(c)), next(iter(sorted(causes)), "none"))


# ---- the runner's tool interface ---------------------------------------------

def binary(spec):
    return None  # the scenario's glibc binary


def unavailable(spec):
    return memcheck.unavailable(spec)


def valgrind_argv(tool, run_dir, max_threads):
    return [memcheck.valgrind_path() or "valgrind", f"--tool={tool}",
            "--xml=yes", f"--xml-file={run_dir / (tool + '.xml')}",
            f"--log-file={run_dir / (tool + '.log')}",   # valgrind's own messages, not the scenario's stderr
            # a forked child (photon_fork_lock) would write its own report into the same XML file
            "--child-silent-after-fork=yes",
            f"--max-threads={max_threads}"]


def command(spec, binary_path, run_dir, head, options):
    return valgrind_argv(NAME, Path(run_dir), memcheck.max_threads_for(options)) + head + list(options), {}


def versions(spec, binary_path):
    return {"tool_path": memcheck.valgrind_path(), "tool_version": memcheck.valgrind_version()}


def tool_report(name, parsed, versions_, exit_code=None, holding_kind=True):
    """tool.json for a Valgrind thread checker: "holding" threads as its one
    kind (Helgrind), its causes, and a verdict of "reported" when it reported
    anything of the program's (harness errors left out)."""
    kinds = {"holding": {"bytes": 0, "blocks": parsed["holding"]}} if holding_kind else {}
    doc = tools.report(name, tool_path=versions_["tool_path"], tool_version=versions_["tool_version"],
                       kinds=kinds, reported_kinds=REPORTED_KINDS if holding_kind else (),
                       raw=f"{name}.xml", errors=parsed["reports"], exit_code=exit_code,
                       extra={"causes": parsed["causes"], "cause": main_cause(parsed["causes"]),
                              "harness_errors": parsed["harness"]})
    if parsed["error_count"]:
        doc["verdict"] = tools.REPORTED
    return doc


def postprocess_valgrind(name, spec, binary_path, run_dir, info, classify_error):
    run_dir = Path(run_dir)
    errors, notes = [], []
    log = run_dir / f"{name}.log"
    if "--max-threads" in (log.read_text(errors="replace") if log.exists() else ""):
        errors.append(f"valgrind ran out of thread slots: raise --max-threads (see {name}.log)")
    try:
        parsed = parse_xml(run_dir / f"{name}.xml", classify_error)
    except (ValueError, OSError) as e:
        errors.append(f"{name}: {e}")
        return None, errors, notes
    if not parsed["finished"]:
        errors.append(f"{name}: valgrind did not finish (no FINISHED status in {name}.xml)")
    if parsed["harness"]:
        notes.append(f"{name}: {parsed['harness']} report(s) inside the harness's census left out")
    (run_dir / f"{name}.json").write_text(json.dumps(parsed, indent=1) + "\n")
    return (tool_report(name, parsed, versions(spec, binary_path), info.get("process_exit_code"),
                        holding_kind=(name == NAME)), errors, notes)


def postprocess(spec, binary_path, run_dir, info):
    return postprocess_valgrind(NAME, spec, binary_path, run_dir, info, classify)
