"""What every leak tool's capture shares: the tool.json shape, leak kinds, tool-binary overrides, versions."""

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

# Leak kinds, one vocabulary for every tool (docs/tools.md, "The cross-tool matrix"):
KINDS = {
    "definite": "no pointer to the block anywhere (memcheck 'definitely lost', LSan 'Direct leak', heap checker leak)",
    "indirect": "reachable only from definitely lost blocks (memcheck 'indirectly lost', LSan 'Indirect leak')",
    "possible": "reachable only through interior pointers (memcheck 'possibly lost')",
    "reachable": "still pointed to at exit (memcheck 'still reachable', heap checker 'reachable heap objects')",
    "leaked": "never freed, whether reachable or not (heaptrack 'leaked')",
    "in_use": "in use at the last phase, charged to the program's own code (gperftools heap profile)",
    "thread": "threads finished but never joined (ThreadSanitizer 'thread leak')",
    "alive": "threads still alive at the check (threadcheck: blocked or running when the program exited; blocks = threads)",
    "orphan": "threads proven unable to run again (orphans; blocks = threads, bytes = heap reachable only from them)",
    "holding": "threads that ended, or were still blocked at exit, holding a lock (Helgrind 'Exiting thread still "
               "holds N lock(s)'; blocks = threads)",
    # The profilers' figures (massif --pages-as-heap: pages mapped, no blocks; DHAT: live blocks):
    "peak": "at the profile's peak (massif: the largest snapshot's pages mapped; DHAT: live at t-gmax)",
    "final": "at the end (massif: pages still mapped at the last snapshot; DHAT: blocks live at t-end)",
    "total": "allocated over the whole run, freed or not (DHAT 'Total')",
}
# A tool "reports threads" when one of these kinds has blocks > 0.
THREAD_KINDS = ("thread", "alive", "orphan", "holding")
# Spellings an expect line may use for a kind.
KIND_ALIASES = {
    **{k: k for k in KINDS},
    "definitely_lost": "definite", "indirectly_lost": "indirect", "possibly_lost": "possible",
    "still_reachable": "reachable", "direct": "definite", "threads": "thread", "inuse": "in_use",
    "t_gmax": "peak", "t_end": "final", "end": "final",
}

REPORTED, NOT_REPORTED = "reported", "not reported"

# Tools with releases, selected as TOOL@RELEASE (lsan@clang-19, tsan@gcc-12):
# a sanitizer's release is the compiler that built it (sanitizer.py).
RELEASE_TOOLS = ("lsan", "asan", "tsan")
RELEASE = re.compile(r"(clang|gcc)-\d+")


def split_tool(text):
    """'lsan@clang-19' -> ('lsan', 'clang-19'); 'memcheck' -> ('memcheck', None)."""
    tool, _, release = (text or "").partition("@")
    return tool, release or None


def release_tool_error(text):
    """Why TOOL@RELEASE is not a valid tool name, or None."""
    tool, release = split_tool(text)
    if tool not in RELEASE_TOOLS:
        return f"'{text}': only {', '.join(RELEASE_TOOLS)} have releases"
    if not RELEASE.fullmatch(release or ""):
        return f"'{text}': a release is clang-N or gcc-N (the compiler that built the sanitizer), e.g. {tool}@clang-19"
    return None


# Frames skipped to find the function a block is charged to: allocator entry
# points, sanitizer interceptors, valgrind's replacements, and the harness's
# wrappers (which would otherwise own every scenario's memory).
ALLOC_FUNCTIONS = {
    "malloc", "calloc", "realloc", "reallocarray", "free", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "strdup", "strndup", "__libc_malloc", "__libc_calloc",
    "__libc_realloc", "operator new(unsigned long)", "operator new[](unsigned long)",
    "ll_xmalloc", "ll_xrealloc",
}


# GCC names the specialised copies it makes of a function "f.isra.0",
# "f.constprop.0", "f.part.0", "f.cold"; pprof marks an inlined copy
# "f (inline)". An expect line names f, whatever the optimiser did with it:
# measured, the same fill_buffer became fill_buffer.isra.0 once free() was
# compiled out of its file (tests/broken).
_CLONE_SUFFIX = re.compile(r"(\.(isra|constprop|part|cold|lto_priv)(\.\d+)?)+$")


def source_name(fn):
    """The source-level name of a symbol: clone suffixes and ' (inline)' dropped."""
    fn = (fn or "").strip().removesuffix(" (inline)")
    return _CLONE_SUFFIX.sub("", fn)


def is_alloc_frame(fn):
    fn = (fn or "").strip()
    return (not fn or fn in ALLOC_FUNCTIONS
            or fn.startswith(("__interceptor_", "___interceptor_", "__sanitizer_", "vg_replace_", "_vgr",
                              "tc_", "__asan_", "__lsan_"))
            or fn.startswith("?"))


def charged_function(frames):
    """The first frame (innermost first) that is not an allocator or a wrapper."""
    for fn in frames:
        if not is_alloc_frame(fn):
            return source_name(fn)
    return None


# ---- the tool.json shape ------------------------------------------------------

def report(tool, *, tool_path, tool_version, kinds, reported_kinds, by_function=None, raw=None,
           errors=None, exit_code=None, leak_exit_code=None, notes=(), extra=None):
    """The one JSON shape every tool's parsed report takes (tool.json).

    kinds: {kind: {"bytes": N, "blocks": N or None}} for every kind the tool
    can tell apart (zeros included, so a kind the tool never reports is an
    unknown name, not a silent 0). reported_kinds: the kinds the tool shows
    by default; the verdict is "reported" when any of them is non-empty."""
    by_function = by_function or {}
    reported_bytes = sum(kinds[k]["bytes"] or 0 for k in reported_kinds if k in kinds)
    reported_blocks = sum(kinds[k]["blocks"] or 0 for k in reported_kinds if k in kinds)
    verdict = REPORTED if (reported_bytes or reported_blocks) else NOT_REPORTED
    totals = {}
    for kind in reported_kinds:
        for fn, v in by_function.get(kind, {}).items():
            t = totals.setdefault(fn, [0, 0])
            t[0] += v.get("bytes") or 0
            t[1] += v.get("blocks") or 0
    top = max(totals.items(), key=lambda kv: (kv[1][0], kv[1][1]), default=(None, None))[0]
    doc = {
        "tool": tool, "tool_path": tool_path, "tool_version": tool_version,
        "verdict": verdict,
        "reported_kinds": list(reported_kinds),
        "reported_bytes": reported_bytes, "reported_blocks": reported_blocks,
        "kinds": kinds,
        "by_function": by_function,
        "top_function": top if verdict == REPORTED else None,
        "errors": dict(errors or {}),
        "error_count": sum((errors or {}).values()),
        "exit_code": exit_code, "leak_exit_code": leak_exit_code,
        "raw": raw,
        "notes": list(notes),
    }
    if extra:
        doc.update(extra)
    return doc


def empty_kinds(names, blocks=True):
    return {k: {"bytes": 0, "blocks": 0 if blocks else None} for k in names}


def add(by_function, kind, fn, nbytes, blocks):
    slot = by_function.setdefault(kind, {}).setdefault(fn or "?", {"bytes": 0, "blocks": 0})
    slot["bytes"] += nbytes or 0
    slot["blocks"] = (slot["blocks"] or 0) + (blocks or 0) if blocks is not None else None


def write(run_dir, doc):
    (Path(run_dir) / "tool.json").write_text(json.dumps(doc, indent=1) + "\n")


# ---- tool binaries: found on PATH, or where LEAKLAB_<TOOL> points ----------------

def resolve(env_var, *names):
    """(path, None) for the tool binary, or (None, why it is missing).
    `env_var` set: that file, which must be executable (a maintainer's fresh
    build, or a wrapper); unset: the first of `names` on PATH."""
    override = os.environ.get(env_var)
    if override:
        path = Path(override)
        if not path.is_file() or not os.access(path, os.X_OK):
            return None, f"{env_var}={override}: not an executable file"
        return str(path.resolve()), None
    for name in names:
        found = shutil.which(name)
        if found:
            return found, None
    return None, f"{' or '.join(names)} not found on PATH (or set {env_var})"


def preload_library(env_var, built, missing):
    """A library the runner preloads (threadcheck, orphans): (path, None), or
    (None, why). `env_var` set: that file (another build); unset: `built`,
    the build tree's copy, with `missing` as the reason when it is absent."""
    override = os.environ.get(env_var)
    if override:
        path = Path(override)
        if not path.is_file():
            return None, f"{env_var}={override}: no such file"
        return str(path.resolve()), None
    if not Path(built).is_file():
        return None, missing
    return str(Path(built).resolve()), None


def preloaded_version(path, name):
    """'NAME 1.0.0' from the real file name a library's link points to
    (libNAME.so.1.0.0), or None."""
    real = Path(path).resolve().name if path else ""
    m = re.match(rf"lib{re.escape(name)}\.so\.(\d+(?:\.\d+)*)$", real)
    return f"{name} {m.group(1)}" if m else None


def first_line(argv, timeout=30):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr or "").strip()
    return text.splitlines()[0] if text else None


# ---- versions: what a binary was built with, which allocator it loads -----------

def elf_comment(path):
    """Strings of an ELF file's .comment section (the compilers that built
    it), [] if not an ELF file or no such section."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    if data[:4] != b"\x7fELF" or data[4] != 2:  # ELF64 only (what we build)
        return []
    endian = "<" if data[5] == 1 else ">"
    shoff, = struct.unpack_from(endian + "Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x3A)
    try:
        def section(i):
            base = shoff + i * shentsize
            name, = struct.unpack_from(endian + "I", data, base)
            offset, size = struct.unpack_from(endian + "QQ", data, base + 0x18)
            return name, offset, size
        _, str_off, _ = section(shstrndx)
        for i in range(shnum):
            name, offset, size = section(i)
            end = data.index(b"\0", str_off + name)
            if data[str_off + name:end] == b".comment":
                chunk = data[offset:offset + size]
                return [s.decode("utf-8", "replace") for s in chunk.split(b"\0") if s]
    except (struct.error, ValueError, IndexError):
        return []
    return []


def compiler_of(binary):
    """The compiler that built `binary`, from its .comment: clang when clang
    built it (the crt files always add a GCC line), else GCC."""
    lines = elf_comment(binary)
    clang = [c for c in lines if "clang" in c]
    if clang:
        return clang[-1]
    return lines[-1] if lines else None


def linked_library(binary, stem):
    """Path of the shared library `stem` (e.g. libtcmalloc) the binary loads, from ldd."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(\S+)", line)
        if m and m.group(1).startswith(stem + "."):
            return m.group(2)
    return None


_LIB_VERSION = {
    "tcmalloc": re.compile(rb"gperftools (\d+\.\d+(?:\.\d+)?)"),
    "jemalloc": re.compile(rb"(\d+\.\d+\.\d+-\d+-g[0-9a-f]{40})"),
}


def library_version(path, allocator):
    """The version string a library carries in its own bytes (gperftools
    prints it in its banner, jemalloc in its version string)."""
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    m = _LIB_VERSION[allocator].search(data)
    if not m:
        return None
    text = m.group(1).decode()
    return f"gperftools {text}" if allocator == "tcmalloc" else f"jemalloc {text}"


def allocator_info(binary, allocator, preload=None):
    """{"allocator", "allocator_path", "allocator_version"} for a binary."""
    if allocator == "glibc":
        version = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
        return {"allocator": "glibc", "allocator_path": linked_library(binary, "libc"),
                "allocator_version": version}
    stem = {"tcmalloc": "libtcmalloc", "jemalloc": "libjemalloc"}.get(allocator, allocator)
    path = preload or linked_library(binary, stem)
    return {"allocator": allocator, "allocator_path": path, "allocator_version": library_version(path, allocator)}
