"""LeakSanitizer capture (NAME-lsan, clang -fsanitize=leak): options, and its report parsed into tool.json."""

from scripts.tools import sanitizer, tools

NAME = "lsan"
TITLE = "LeakSanitizer"
ALLOCATORS = ("glibc",)  # the sanitizer brings its own allocator; the binary is built once
CANARY_OPTIONS = ["--canary"]
# LSan's own "leaks found" exit code (its default, set explicitly): data, not a
# scenario failure, when the scenario's end event says it ran as designed.
LEAK_EXIT_CODES = {23: "LeakSanitizer found leaks"}
REPORTED_KINDS = ("definite", "indirect")
LOG = "lsan"  # log_path: the report goes to RUN_DIR/lsan.PID


def binary(spec):
    return sanitizer.binary_path(spec.build_dir, spec.scenario, NAME, spec.release)


def unavailable(spec):
    return sanitizer.missing(spec.build_dir, spec.scenario, NAME, spec.release)


def release(spec):
    """The release this run uses (lsan@clang-19: clang-19; plain lsan: the default binary's)."""
    return sanitizer.resolved_release(spec.build_dir, spec.scenario, NAME, spec.release)


def command(spec, binary_path, run_dir, head, options):
    # log_path is relative: the scenario runs in the run directory, and a
    # relative path survives any character the run directory's path holds.
    env = sanitizer.options_env("LSAN_OPTIONS", {"log_path": LOG, "exitcode": 23})
    return head + list(options), env


def versions(spec, binary_path):
    return {**sanitizer.build_info(binary_path, spec.build_dir, NAME, spec.release),
            "allocator": "sanitizer", "allocator_version": f"LeakSanitizer allocator ({tools.compiler_of(binary_path)})"}


def postprocess(spec, binary_path, run_dir, info):
    return leak_report(NAME, LOG, REPORTED_KINDS, LEAK_EXIT_CODES, spec, binary_path, run_dir, info)


def leak_report(name, log, reported_kinds, leak_codes, spec, binary_path, run_dir, info):
    """Shared by lsan and asan (ASan's leak report is LSan's): (doc, errors, notes)."""
    text, files = sanitizer.read_logs(run_dir, log)
    parsed = sanitizer.parse_leaks(text)
    errors, notes = [], []
    if parsed["fatal"]:
        errors.append(f"{name}: {parsed['fatal']} (see {', '.join(files)})")
    blind = sanitizer.unsymbolized(text, sanitizer.resolved_release(spec.build_dir, spec.scenario, name, spec.release))
    if blind:
        errors.append(f"{name}: {blind}")
    total = sum(k["bytes"] for k in parsed["kinds"].values())
    blocks = sum(k["blocks"] for k in parsed["kinds"].values())
    if parsed["summary"] and parsed["summary"] != (total, blocks):
        errors.append(f"{name}: the leak records add up to {total} bytes in {blocks} allocations but the "
                      f"SUMMARY line says {parsed['summary'][0]} in {parsed['summary'][1]}: the report "
                      "was not fully parsed")
    if not files:
        notes.append(f"{name}: no report file ({log}.PID): the sanitizer found nothing to say")
    v = versions(spec, binary_path)
    doc = tools.report(name, tool_path=v["tool_path"], tool_version=v["tool_version"],
                       kinds=parsed["kinds"], reported_kinds=reported_kinds, by_function=parsed["by_function"],
                       raw=files[0] if files else None, errors=parsed["errors"],
                       exit_code=info.get("process_exit_code"), leak_exit_code=sorted(leak_codes)[0],
                       extra={"crash": sanitizer.crash_text(parsed["crash"])} if parsed["crash"] else None)
    return doc, errors, notes
