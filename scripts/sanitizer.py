"""The sanitizers' common part: their binaries (NAME-lsan/-asan/-tsan), options, and their reports parsed."""

import os
import re
from pathlib import Path

import tools

ENV_BUILD_DIR = "LEAKLAB_SANITIZER_BUILD_DIR"
# -fsanitize= value of each sub-build (cmake/LeaklabSanitizers.cmake), by binary suffix.
SUB_BUILDS = {"lsan": "leak", "asan": "address", "tsan": "thread"}


def binary_dir(build_dir):
    """Where the sanitizer binaries are: $LEAKLAB_SANITIZER_BUILD_DIR (a build
    dir made with another clang, or a folder of binaries), else the build's."""
    root = Path(os.environ.get(ENV_BUILD_DIR) or build_dir)
    return root / "scenarios" if (root / "scenarios").is_dir() else root


def binary_path(build_dir, scenario, suffix):
    return binary_dir(build_dir) / f"{scenario}-{suffix}"


def missing(build_dir, scenario, suffix):
    """Why the sanitizer binary cannot run, or None."""
    path = binary_path(build_dir, scenario, suffix)
    if path.is_file() and os.access(path, os.X_OK):
        return None
    if os.environ.get(ENV_BUILD_DIR):
        return f"{path} not found ({ENV_BUILD_DIR}={os.environ[ENV_BUILD_DIR]})"
    return (f"{path} was not built: CMake found no clang when it configured {build_dir} "
            "(apt-get install clang libclang-rt-dev, then reconfigure), or point "
            f"{ENV_BUILD_DIR} at a build that has it")


def build_info(binary, build_dir, suffix):
    """tool_path/tool_version of a sanitizer: the runtime is linked into the
    binary, so the tool is the binary and its version the compiler's."""
    info = {"tool_path": str(binary), "tool_version": tools.compiler_of(binary)}
    root = Path(os.environ.get(ENV_BUILD_DIR) or build_dir)
    cache = root / "sanitizers" / SUB_BUILDS[suffix] / "CMakeCache.txt"
    try:
        for line in cache.read_text().splitlines():
            if line.startswith("CMAKE_C_COMPILER:"):
                info["compiler_path"] = line.split("=", 1)[1].strip()
    except OSError:
        pass
    return info


def options_env(var, ours):
    """VAR for the scenario: the user's own VAR first, ours after it (a
    sanitizer takes the last value of a flag, so log_path and exitcode are
    always ours and the report lands in the run directory)."""
    mine = ":".join(f"{k}={v}" for k, v in ours.items())
    user = os.environ.get(var, "").strip(":")
    return {var: f"{user}:{mine}" if user else mine}


def logs(run_dir, prefix):
    """The report files a sanitizer wrote with log_path=PREFIX: PREFIX.PID."""
    return sorted(p for p in Path(run_dir).glob(f"{prefix}.*") if p.name[len(prefix) + 1:].isdigit())


def read_logs(run_dir, prefix):
    files = logs(run_dir, prefix)
    return "".join(p.read_text(errors="replace") for p in files), [p.name for p in files]


# ---- reports -------------------------------------------------------------------

_LEAK = re.compile(r"^(Direct|Indirect) leak of (\d+) byte\(s\) in (\d+) object\(s\) allocated from:")
_SUMMARY = re.compile(r"^SUMMARY: \w+Sanitizer: (\d+) byte\(s\) leaked in (\d+) allocation\(s\)")
_ERROR = re.compile(r"^==\d+==ERROR: (\w+)Sanitizer: (.+?)(?: on (?:address|unknown address).*)?$")
_FRAME_ASAN = re.compile(r"^\s*#\d+\s+0x[0-9a-fA-F]+\s+in\s+(.*)$")
_FRAME_TSAN = re.compile(r"^\s*#\d+\s+(\S+)")
_FATAL = re.compile(r"(\w+Sanitizer) has encountered a fatal error|(\w+Sanitizer) does not work under ptrace"
                    r"|(\w+Sanitizer) failed to allocate|(\w+Sanitizer): CHECK failed")


def _frame_function(line):
    m = _FRAME_ASAN.match(line)
    if m:
        # "FUNC /path/file.c:12:3", "FUNC (module+0x12)", "FUNC <null>"
        return re.split(r" (?=[/(<])", m.group(1).strip(), maxsplit=1)[0]
    m = _FRAME_TSAN.match(line)
    return m.group(1) if m else None


def parse_leaks(text):
    """A LeakSanitizer report (standalone or inside ASan) ->
    {"kinds", "by_function", "summary": (bytes, blocks) or None, "errors", "fatal"}."""
    kinds = tools.empty_kinds(("definite", "indirect"))
    by_function = {}
    errors = {}
    summary = None
    fatal = None
    current = None  # [kind, bytes, blocks, frames]

    def flush():
        if current:
            tools.add(by_function, current[0], tools.charged_function(current[3]) or "?", current[1], current[2])

    for line in text.splitlines():
        m = _LEAK.match(line)
        if m:
            flush()
            kind = "definite" if m.group(1) == "Direct" else "indirect"
            current = [kind, int(m.group(2)), int(m.group(3)), []]
            kinds[kind]["bytes"] += int(m.group(2))
            kinds[kind]["blocks"] += int(m.group(3))
            continue
        if current is not None:
            if line.strip().startswith("#"):
                fn = _frame_function(line)
                if fn:
                    current[3].append(fn)
                continue
            flush()
            current = None
        m = _SUMMARY.match(line)
        if m:
            summary = (int(m.group(1)), int(m.group(2)))
            continue
        m = _ERROR.match(line)
        if m and "detected memory leaks" not in m.group(2):
            name = m.group(2).split()[0]
            errors[name] = errors.get(name, 0) + 1
            continue
        m = _FATAL.search(line)
        if m:
            fatal = line.strip()
    flush()
    return {"kinds": kinds, "by_function": by_function, "summary": summary, "errors": errors, "fatal": fatal}


_TSAN_WARNING = re.compile(r"^WARNING: ThreadSanitizer: (.+?)(?: \(pid=\d+\))?\s*$")
_TSAN_MORE = re.compile(r"^\s*And (\d+) more similar thread leaks")
_TSAN_THREAD = re.compile(r"^\s*Thread T\d+ \(tid=\d+, (\w+)\) created by")
_TSAN_TOTAL = re.compile(r"^ThreadSanitizer: reported (\d+) warnings")
# Frames of a thread's creation stack that are the machinery, not the creator.
THREAD_START_FUNCTIONS = {"pthread_create", "__interceptor_pthread_create", "___interceptor_pthread_create",
                          "ll_thread_start"}


def parse_tsan(text):
    """A ThreadSanitizer report -> {"kinds": {"thread"}, "by_function", "errors",
    "warnings" (its own total), "states"}: thread leaks counted (each report
    plus its "And N more similar thread leaks"), every other warning an error."""
    kinds = {"thread": {"bytes": 0, "blocks": 0}}
    by_function = {}
    errors = {}
    warnings = None
    fatal = None
    states = {}
    reports = 0
    current = None  # [count, frames]

    def flush():
        if current:
            creator = next((f for f in current[1] if f not in THREAD_START_FUNCTIONS), None)
            tools.add(by_function, "thread", creator or "?", 0, current[0])
            kinds["thread"]["blocks"] += current[0]

    for line in text.splitlines():
        m = _TSAN_WARNING.match(line)
        if m:
            flush()
            current = None
            reports += 1
            if m.group(1) == "thread leak":
                current = [1, []]
            else:
                errors[m.group(1)] = errors.get(m.group(1), 0) + 1
            continue
        if current is not None:
            m = _TSAN_THREAD.match(line)
            if m:
                states[m.group(1)] = states.get(m.group(1), 0) + 1
                continue
            m = _TSAN_MORE.match(line)
            if m:
                current[0] += int(m.group(1))
                continue
            if line.strip().startswith("#"):
                fn = _frame_function(line)
                if fn:
                    current[1].append(fn)
                continue
            if line.startswith(("SUMMARY:", "==================")):
                flush()
                current = None
            continue
        m = _TSAN_TOTAL.match(line)
        if m:
            warnings = int(m.group(1))
            continue
        m = _FATAL.search(line)
        if m:
            fatal = line.strip()
    flush()
    return {"kinds": kinds, "by_function": by_function, "errors": errors, "warnings": warnings,
            "reports": reports, "states": states, "fatal": fatal}
