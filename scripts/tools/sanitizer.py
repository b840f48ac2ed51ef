"""The sanitizers' common part: their binaries (NAME-lsan/-asan/-tsan, one per release), options, and their reports parsed."""

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from scripts.tools import tools

ENV_BUILD_DIR = "LEAKLAB_SANITIZER_BUILD_DIR"
# -fsanitize= value of each sub-build (cmake/LeaklabSanitizers.cmake), by binary suffix.
SUB_BUILDS = {"lsan": "leak", "asan": "address", "tsan": "thread"}
# What CMake found and decided about each release (cmake/LeaklabSanitizers.cmake).
MANIFEST = Path("sanitizers") / "releases.json"
INSTALL_HINT = "scripts/install-deps --tool-releases"

# ---- releases ---------------------------------------------------------------------
# A release of a sanitizer is the compiler that built it: lsan@clang-19 runs
# NAME-lsan@clang-19, built by clang-19 with its compiler-rt; lsan@gcc-12 the
# one GCC 12 built with its libsanitizer. Plain `lsan` is the default release
# (the `clang` CMake found), NAME-lsan, which also answers to
# NAME-lsan@<its release> (a symlink).


def root(build_dir):
    """The build whose sanitizer binaries are used: $LEAKLAB_SANITIZER_BUILD_DIR or build_dir."""
    return Path(os.environ.get(ENV_BUILD_DIR) or build_dir)


def binary_dir(build_dir):
    """Where the sanitizer binaries are: $LEAKLAB_SANITIZER_BUILD_DIR (a build
    dir made with another clang, or a folder of binaries), else the build's."""
    base = root(build_dir)
    return base / "scenarios" if (base / "scenarios").is_dir() else base


def binary_name(scenario, suffix, release=None):
    return f"{scenario}-{suffix}@{release}" if release else f"{scenario}-{suffix}"


def binary_path(build_dir, scenario, suffix, release=None):
    return binary_dir(build_dir) / binary_name(scenario, suffix, release)


def manifest(build_dir):
    """BUILD/sanitizers/releases.json, or {} (a build configured before releases existed)."""
    try:
        return json.loads((root(build_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


_CLANG = re.compile(r"clang version (\d+)")
_GCC = re.compile(r"^(?:GCC: \(.*\) |gcc(?:-\d+)? \(.*\) )(\d+)\.")


def release_of_version(text):
    """'Debian clang version 19.1.7 (3~deb12u1)' -> 'clang-19'; 'GCC: (Debian
    12.2.0-14+deb12u1) 12.2.0' -> 'gcc-12'; None if neither."""
    text = text or ""
    m = _CLANG.search(text)
    if m:
        return f"clang-{m.group(1)}"
    m = _GCC.search(text)
    return f"gcc-{m.group(1)}" if m else None


def release_of(binary):
    """The release that built a sanitizer binary, from its ELF .comment."""
    return release_of_version(tools.compiler_of(binary))


def resolved_release(build_dir, scenario, suffix, release=None):
    """The release a run uses: the one named, else the default binary's own
    (from its .comment), else the build's default release (a wrapper script
    in $LEAKLAB_SANITIZER_BUILD_DIR tells nothing: it is taken for the default)."""
    if release:
        return release
    found = release_of(binary_path(build_dir, scenario, suffix))
    if found:
        return found
    for base in (root(build_dir), Path(build_dir)):
        try:
            default = json.loads((base / MANIFEST).read_text()).get("default_release")
        except (OSError, ValueError):
            continue
        if default:
            return default
    return None


@functools.lru_cache(maxsize=None)
def compiler_version(compiler):
    """First line of `COMPILER --version`: 'Debian clang version 19.1.7 (3~deb12u1)'."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def installed_releases():
    """Releases whose compiler is on PATH (clang-N, gcc-N): {release: path}."""
    found = {}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            if tools.RELEASE.fullmatch(name) and name not in found:
                path = shutil.which(name)
                if path:
                    found[name] = path
    return dict(sorted(found.items(), key=lambda kv: _release_order(kv[0])))


def _release_order(release):
    family, _, number = release.partition("-")
    return (family != "clang", int(number) if number.isdigit() else 0)


def release_entry(build_dir, release, suffix):
    """The manifest's word on one TOOL@RELEASE: {"status", "why"} or {}."""
    entry = (manifest(build_dir).get("releases") or {}).get(release) or {}
    return (entry.get("tools") or {}).get(suffix) or {}


def missing(build_dir, scenario, suffix, release=None):
    """Why the sanitizer binary cannot run, or None."""
    path = binary_path(build_dir, scenario, suffix, release)
    if path.is_file() and os.access(path, os.X_OK):
        return None
    if os.environ.get(ENV_BUILD_DIR):
        return f"{path} not found ({ENV_BUILD_DIR}={os.environ[ENV_BUILD_DIR]})"
    if release:
        return _release_missing(build_dir, path, suffix, release)
    return (f"{path} was not built: CMake found no clang when it configured {build_dir} "
            "(apt-get install clang libclang-rt-dev, then reconfigure), or point "
            f"{ENV_BUILD_DIR} at a build that has it")


def _release_missing(build_dir, path, suffix, release):
    tool = f"{suffix}@{release}"
    entry = release_entry(build_dir, release, suffix)
    if entry.get("why"):
        return f"{tool}: {entry['why']}"
    if entry.get("status") == "built":
        return f"{tool}: {path} was configured but is not there: build first (cmake --build {build_dir})"
    if not shutil.which(release):
        return f"{tool}: {release} is not installed ({INSTALL_HINT}, then configure with -DLEAKLAB_TOOL_RELEASES=all)"
    return (f"{tool}: {release} is installed but {build_dir} was configured without it: reconfigure with "
            f"-DLEAKLAB_TOOL_RELEASES={release} (or all) and build")


def build_info(binary, build_dir, suffix, release=None):
    """tool_path/tool_version of a sanitizer: the runtime is linked into the
    binary, so the tool is the binary and its version the compiler's; plus
    the release, the compiler that built it and that compiler's --version."""
    info = {"tool_path": str(binary), "tool_version": tools.compiler_of(binary)}
    release = release or release_of(binary)
    base = root(build_dir)
    sub = base / "sanitizers" / SUB_BUILDS[suffix]
    if release and release != manifest(build_dir).get("default_release"):
        sub = base / "sanitizers" / release / SUB_BUILDS[suffix]
    try:
        for line in (sub / "CMakeCache.txt").read_text().splitlines():
            if line.startswith("CMAKE_C_COMPILER:"):
                info["compiler_path"] = line.split("=", 1)[1].strip()
    except OSError:
        pass
    if release:
        info["release"] = release
        compiler = info.get("compiler_path") or shutil.which(release)
        version = compiler_version(compiler) if compiler else None
        if version:
            info["release_version"] = version
    return info


def releases(build_dir):
    """Every release known here, for `leaklab list --tools`: [{"release",
    "compiler", "version", "default", "tools": {suffix: {"status", "why"}}}],
    from the manifest, plus compilers installed since it was written."""
    found = manifest(build_dir)
    entries = {}
    for release, entry in (found.get("releases") or {}).items():
        entries[release] = {"release": release, "compiler": entry.get("compiler") or None,
                            "version": entry.get("version") or None, "default": bool(entry.get("default")),
                            "tools": dict(entry.get("tools") or {})}
    for release, path in installed_releases().items():
        if release in entries:
            continue
        why = (f"{release} is installed but {build_dir} was configured without it: reconfigure with "
               f"-DLEAKLAB_TOOL_RELEASES={release} (or all)")
        entries[release] = {"release": release, "compiler": path, "version": compiler_version(path),
                            "default": False,
                            "tools": {s: {"status": "not configured", "why": why} for s in SUB_BUILDS}}
    return sorted(entries.values(), key=lambda e: (not e["default"], _release_order(e["release"])))


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


_NO_SYMBOLIZER = re.compile(r"WARNING: (invalid path to external symbolizer|Failed to use and restart external symbolizer)")


def unsymbolized(text, release):
    """An error when the report has no function names because the release's
    symbolizer is missing (Debian's compiler-rt N calls llvm-symbolizer-N,
    which comes with llvm-N), else None."""
    if not _NO_SYMBOLIZER.search(text or ""):
        return None
    number = (release or "").partition("-")[2]
    package = f"llvm-{number}" if (release or "").startswith("clang-") and number else "llvm"
    return (f"the report is not symbolized (\"invalid path to external symbolizer\"): function names are "
            f"missing; install {package} ({INSTALL_HINT})")


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


_CRASH_THREAD = re.compile(r"\(pc 0x[0-9a-fA-F]+ .*\b(T\d+)\)\s*$")
_CRASH_SUMMARY = re.compile(r"^SUMMARY: \w+Sanitizer: (\S+) .*? in (.+?)\s*$")


def parse_leaks(text):
    """A LeakSanitizer report (standalone or inside ASan) ->
    {"kinds", "by_function", "summary": (bytes, blocks) or None, "errors", "fatal",
    "crash": {"error", "thread", "function"} or None (the sanitizer's own deadly
    signal: "SEGV on unknown address ... T511", "SUMMARY: ... in FUNCTION")}."""
    kinds = tools.empty_kinds(("definite", "indirect"))
    by_function = {}
    errors = {}
    summary = None
    fatal = None
    crash = None
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
            if crash is None and name in DEADLY:
                t = _CRASH_THREAD.search(line)
                crash = {"error": name, "thread": t.group(1) if t else None, "function": None}
            continue
        m = _CRASH_SUMMARY.match(line)
        if m and crash is not None and m.group(1) == crash["error"]:
            crash["function"] = m.group(2)
            continue
        m = _FATAL.search(line)
        if m:
            fatal = line.strip()
    flush()
    return {"kinds": kinds, "by_function": by_function, "summary": summary, "errors": errors, "fatal": fatal,
            "crash": crash}


# A sanitizer's report of a deadly signal in the program or in itself.
DEADLY = {"SEGV", "BUS", "FPE", "ILL", "ABRT", "stack-overflow", "SIGSEGV"}


def crash_text(crash):
    """'SEGV in __lsan::CurrentThreadContext() (T511)' from parse_leaks' "crash"."""
    if not crash:
        return None
    text = crash.get("error") or "crash"
    if crash.get("function"):
        text += f" in {crash['function']}"
    if crash.get("thread"):
        text += f" ({crash['thread']})"
    return text


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
