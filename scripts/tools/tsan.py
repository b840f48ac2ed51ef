"""ThreadSanitizer capture (NAME-tsan, clang -fsanitize=thread): thread leaks into tool.json."""

from scripts.tools import sanitizer, tools

NAME = "tsan"
TITLE = "ThreadSanitizer"
ALLOCATORS = ("glibc",)
# TSan reports threads, not memory: its canary is a finished thread nobody joined.
CANARY_OPTIONS = ["--canary-thread"]
# TSan exits 66 when it reported anything (a thread leak, or a race: races
# are counted as errors in tool.json).
LEAK_EXIT_CODES = {66: "ThreadSanitizer reported warnings"}
REPORTED_KINDS = ("thread",)
LOG = "tsan"
# TSan's deadlock detector reports a cycle in its lock-order graph
# ("lock-order-inversion (potential deadlock)"), asked for explicitly, with
# the second lock's acquisition stack too. Like Helgrind it
# checks for a cycle after a lock is acquired, so a deadlock that really
# happens is not reported (upstream's must_deadlock test is XFAIL; docs/tools.md).
DEADLOCK_OPTIONS = {"detect_deadlocks": 1, "second_deadlock_stack": 1}
# TSan's warnings, mapped to the truth's cause vocabulary (expected.CAUSES);
# words outside it (data_race, bad_unlock, ...) name no kernel's cause.
CAUSES = {
    "lock-order-inversion (potential deadlock)": "lock_order",
    "double lock of a mutex": "double_lock",
    "read lock of a write locked mutex": "double_lock",
    "thread leak": "missing_join",
    "data race": "data_race",
    "unlock of an unlocked mutex": "bad_unlock",
    "read unlock of a write locked mutex": "bad_unlock",
}
CAUSE_ORDER = ("lock_order", "double_lock", "missing_join", "bad_unlock", "data_race")


def causes_of(parsed):
    """{cause: reports} of a parsed TSan report, and the one cause it names ("none": no report)."""
    causes = {}
    for warning, n in list(parsed["errors"].items()) + [("thread leak", parsed["kinds"]["thread"]["blocks"])]:
        cause = CAUSES.get(warning, "api_misuse")
        if n:
            causes[cause] = causes.get(cause, 0) + n
    main = next((c for c in CAUSE_ORDER if causes.get(c)), next(iter(sorted(causes)), "none"))
    return causes, main


def binary(spec):
    return sanitizer.binary_path(spec.build_dir, spec.scenario, NAME, spec.release)


def unavailable(spec):
    return sanitizer.missing(spec.build_dir, spec.scenario, NAME, spec.release)


def release(spec):
    """The release this run uses (lsan@clang-19: clang-19; plain lsan: the default binary's)."""
    return sanitizer.resolved_release(spec.build_dir, spec.scenario, NAME, spec.release)


def command(spec, binary_path, run_dir, head, options):
    env = sanitizer.options_env("TSAN_OPTIONS", {"log_path": LOG, "exitcode": 66, "report_thread_leaks": 1,
                                                 **DEADLOCK_OPTIONS})
    return head + list(options), env


def versions(spec, binary_path):
    return {**sanitizer.build_info(binary_path, spec.build_dir, NAME, spec.release),
            "allocator": "sanitizer", "allocator_version": f"ThreadSanitizer allocator ({tools.compiler_of(binary_path)})"}


def postprocess(spec, binary_path, run_dir, info):
    text, files = sanitizer.read_logs(run_dir, LOG)
    parsed = sanitizer.parse_tsan(text)
    errors, notes = [], []
    if parsed["fatal"]:
        errors.append(f"tsan: {parsed['fatal']} (see {', '.join(files)})")
    blind = sanitizer.unsymbolized(text, release(spec))
    if blind:
        errors.append(f"tsan: {blind}")
    if parsed["warnings"] is not None and parsed["warnings"] != parsed["reports"]:
        errors.append(f"tsan: {parsed['reports']} warnings parsed but ThreadSanitizer says it reported "
                      f"{parsed['warnings']}: the report was not fully parsed")
    if not files:
        notes.append("tsan: no report file (tsan.PID): ThreadSanitizer found nothing to say")
    v = versions(spec, binary_path)
    causes, cause = causes_of(parsed)
    doc = tools.report(NAME, tool_path=v["tool_path"], tool_version=v["tool_version"],
                       kinds=parsed["kinds"], reported_kinds=REPORTED_KINDS, by_function=parsed["by_function"],
                       raw=files[0] if files else None, errors=parsed["errors"],
                       exit_code=info.get("process_exit_code"), leak_exit_code=66,
                       extra={"thread_states": parsed["states"], "causes": causes, "cause": cause})
    return doc, errors, notes
