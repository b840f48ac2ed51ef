"""Valgrind DRD capture: the valgrind command line, and its XML report parsed into tool.json,
with the CAUSE DRD names (a re-lock, a race, a bad unlock).

DRD is a race and POSIX-API-misuse detector: it keeps no lock-order graph, and of
the threads holding a lock it names only those that really end (not those still
blocked when the process exits). Its words, mapped to the truth's cause vocabulary
(expected.CAUSES; docs/tools.md):

  "Recursive locking not allowed" (a mutex, or an rwlock for writing) -> double_lock
  "Mutex still locked at thread exit", "Reader-writer lock still locked at thread exit"
                                                                       -> missing_unlock
  "Conflicting load/store" (kind ConflictingAccess)                   -> data_race (no kernel's cause)
  "... not locked" / "not locked by calling thread"                    -> bad_unlock (no kernel's cause)
  anything else (destroying a locked mutex, condition variable misuse)  -> api_misuse (no kernel's cause)

The parsing is Helgrind's (helgrind.parse_xml), harness census reports left out alike."""

from pathlib import Path

from scripts.tools import helgrind, memcheck

NAME = "drd"
TITLE = "Valgrind DRD"
ALLOCATORS = ("glibc",)  # valgrind replaces malloc itself
# DRD's canary: a data race (DRD has no lock-order check; common/harness.c); the
# comparer knows the run for a canary run by its start event's canary_races.
CANARY_OPTIONS = ["--canary-race"]
LEAK_EXIT_CODES = {}  # valgrind passes the program's exit code through
REPORTED_KINDS = ()   # no leak kind: its verdict is "reported" when it reports any error of the program's


def classify(kind, text, frames):
    """(cause or None, threads holding locks: DRD never says) of one DRD error."""
    if "Recursive locking not allowed" in text or "Recursive writer locking" in text:
        return "double_lock", 0
    if "still locked at thread exit" in text:
        return "missing_unlock", 0
    if kind == "ConflictingAccess" or kind == "Race":
        return "data_race", 0
    if "not locked" in text:
        return "bad_unlock", 0
    return "api_misuse", 0


def binary(spec):
    return None  # the scenario's glibc binary


def unavailable(spec):
    return memcheck.unavailable(spec)


def command(spec, binary_path, run_dir, head, options):
    return helgrind.valgrind_argv(NAME, Path(run_dir), memcheck.max_threads_for(options)) + head + list(options), {}


def versions(spec, binary_path):
    return helgrind.versions(spec, binary_path)


def postprocess(spec, binary_path, run_dir, info):
    return helgrind.postprocess_valgrind(NAME, spec, binary_path, run_dir, info, classify)
