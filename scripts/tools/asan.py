"""AddressSanitizer capture (NAME-asan, clang -fsanitize=address, leak detection on): its leak report into tool.json."""

from scripts.tools import lsan, sanitizer, tools

NAME = "asan"
TITLE = "AddressSanitizer"
ALLOCATORS = ("glibc",)
CANARY_OPTIONS = ["--canary"]
# ASan exits 1 when its leak check fires, which DESIGN.md's exit codes give
# another meaning; exitcode=23 (LSan's own code) makes "leaks found" tell
# apart. ASan's memory errors use the same code, but they abort the run
# before its end event, so they are never taken for data.
LEAK_EXIT_CODES = {23: "AddressSanitizer found leaks (exitcode=23)"}
REPORTED_KINDS = ("definite", "indirect")
LOG = "asan"


def binary(spec):
    return sanitizer.binary_path(spec.build_dir, spec.scenario, NAME, spec.release)


def unavailable(spec):
    return sanitizer.missing(spec.build_dir, spec.scenario, NAME, spec.release)


def release(spec):
    """The release this run uses (lsan@clang-19: clang-19; plain lsan: the default binary's)."""
    return sanitizer.resolved_release(spec.build_dir, spec.scenario, NAME, spec.release)


def command(spec, binary_path, run_dir, head, options):
    env = sanitizer.options_env("ASAN_OPTIONS", {"detect_leaks": 1, "log_path": LOG, "exitcode": 23})
    return head + list(options), env


def versions(spec, binary_path):
    return {**sanitizer.build_info(binary_path, spec.build_dir, NAME, spec.release),
            "allocator": "sanitizer", "allocator_version": f"AddressSanitizer allocator ({tools.compiler_of(binary_path)})"}


def postprocess(spec, binary_path, run_dir, info):
    doc, errors, notes = lsan.leak_report(NAME, LOG, REPORTED_KINDS, LEAK_EXIT_CODES, spec, binary_path,
                                          run_dir, info)
    v = versions(spec, binary_path)
    doc.update(tool_path=v["tool_path"], tool_version=v["tool_version"])
    return doc, errors, notes
