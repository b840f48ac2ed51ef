"""gperftools heap profiler capture: options for the scenario, truncation check, pprof rendering and parsing."""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from scripts.base import eventlog
from scripts.tools import tools

NAME = "heapprof"
TITLE = "gperftools heap profiler"
ALLOCATORS = ("tcmalloc",)  # the profiler lives in tcmalloc
CANARY_OPTIONS = ["--canary"]
LEAK_EXIT_CODES = {}
# A heap profiler reports no leaks; its verdict here is "reported" when the
# last phase's profile holds memory charged to the program's own code.
REPORTED_KINDS = ("in_use",)
ENV_PPROF = "LEAKLAB_PPROF"
ENV_TCMALLOC = "LEAKLAB_TCMALLOC"
# Sites that hold memory at the last phase whatever the scenario did, so they
# never make the verdict: what each is, for docs/tools.md.
INFRASTRUCTURE = {
    "GetHeapProfile": "the profiler's own 1 MiB dump buffer, live while it writes the profile",
    "ll_buf_printf": "the harness's event line, being formatted while the profile is taken",
    "allocate_dtv": "glibc's per-thread TLS vector: held by every thread, and by glibc's cache of "
                    "joined threads' stacks",
    "_dl_allocate_tls": "glibc's per-thread TLS block (as allocate_dtv)",
}

# Environment for the profiled scenario (the hook the lead settles). In
# gperftools' heap-profiler.cc each interval is tested with `> 0` before it
# can trigger a dump, so 0 disables the periodic dumps: only the harness's
# per-phase GetHeapProfile() files are written (plus one at exit).
ENV = {
    "HEAP_PROFILE_ALLOCATION_INTERVAL": "0",
    "HEAP_PROFILE_INUSE_INTERVAL": "0",
}

# gperftools 2.10 builds a profile in one 1 MiB buffer (kProfileBufferSize);
# what does not fit is dropped without an error.
DUMP_BUFFER_BYTES = 1 << 20
# A profile this close to the buffer size was almost certainly cut.
TRUNCATION_SLACK = 1024

# The harness's allocation wrappers: memory they allocate is charged to their
# caller, or every scenario's top function would read "ll_xrealloc".
WRAPPERS = {"ll_xmalloc", "ll_xrealloc"}

PPROF_TIMEOUT_S = 600


def scenario_options(heap_dir):
    # Guard pages off: with 10,000 threads each guard page splits a stack
    # mapping in two, and the /proc/self/maps listing at the end of every
    # profile overflows the 1 MiB dump buffer (docs/tools.md).
    return ["--heap-profile", str(heap_dir), "--guard-pages", "off"]


def pprof_path():
    """google-pprof (or pprof) on PATH, or $LEAKLAB_PPROF; None if missing."""
    return tools.resolve(ENV_PPROF, "google-pprof", "pprof")[0]


_COUNTS = r"\s*(\d+):\s*(\d+)\s*\[\s*(\d+):\s*(\d+)\s*\]\s*@"
_HEADER = re.compile(r"heap profile:" + _COUNTS)
_RECORD = re.compile(_COUNTS)
MAPS_MARKER = "\nMAPPED_LIBRARIES:\n"


def check_profile(path):
    """Returns None for a complete heap profile, else why it is truncated or
    not a profile. A cut profile must never be read as a small heap."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"cannot read {path}: {e.strerror}"
    size = len(data)
    if size == 0:
        return ("the file is empty: gperftools wrote nothing, as it does when the "
                "/proc/self/maps listing alone fills its 1 MiB dump buffer")
    text = data.decode("latin-1")
    full = size >= DUMP_BUFFER_BYTES - TRUNCATION_SLACK
    # Said with every verdict on a full-size file: the usual cause and its cure.
    tell = (f" ({size} bytes: gperftools' {DUMP_BUFFER_BYTES}-byte dump buffer was full; "
            "with thousands of threads the /proc/self/maps listing fills it, so run with "
            "--guard-pages off)") if full else f" ({size} bytes)"
    if not text.startswith("heap profile:"):
        return "it does not start with a 'heap profile:' header line" + tell
    header = _HEADER.match(text)
    if not header:
        return "its header line is cut, no totals" + tell
    if MAPS_MARKER not in text:
        return "it is cut before the MAPPED_LIBRARIES section" + tell
    records = text[:text.index(MAPS_MARKER)].splitlines()[1:]
    in_use = 0
    for line in records:
        m = _RECORD.match(line)
        if not m:
            return f"record line is cut or malformed: {line[:80]!r}" + tell
        in_use += int(m.group(2))
    if in_use != int(header.group(2)):
        return (f"its records add up to {in_use} in-use bytes but the header says "
                f"{header.group(2)}: records were dropped" + tell)
    if full:
        return "it is at the dump buffer limit, so records may be missing" + tell
    return None


_ROW = re.compile(r"^\s*([\d.]+)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)%\s+(.+?)\s*$")
_TOTAL = re.compile(r"^Total:\s*([\d.]+)\s*(MB|B)\s*$")
_UNIT = {"MB": 1 << 20, "B": 1}  # pprof's "MB" is 2^20 bytes


def parse_text(text):
    """Parses `pprof --text` output (MB or --show_bytes). Returns
    {"total_bytes", "rows": [{"function","flat_bytes","flat_share","cum_bytes"}]}
    in pprof's order (largest flat first). Raises ValueError without a Total line."""
    total = None
    scale = None
    rows = []
    for line in text.splitlines():
        m = _TOTAL.match(line.strip())
        if m:
            scale = _UNIT[m.group(2)]
            total = round(float(m.group(1)) * scale)
            continue
        m = _ROW.match(line)
        if m and scale is not None:
            rows.append({
                "function": m.group(6),
                "flat_bytes": round(float(m.group(1)) * scale),
                "flat_share": round(float(m.group(2)) / 100.0, 6),
                "cum_bytes": round(float(m.group(4)) * scale),
            })
    if total is None:
        raise ValueError("no 'Total:' line in pprof output")
    return {"total_bytes": total, "rows": rows}


_STACK_FIRST = re.compile(r"^(\d+)\s+\((\w+)\)\s+(.*)$")
_STACK_MORE = re.compile(r"^\s+\((\w+)\)\s+(.*)$")
_LOCATION = re.compile(r"^(.*?):(\d+|\?+):(.*)$")


def _function_of(location):
    m = _LOCATION.match(location)
    return tools.source_name(m.group(3) if m else location)


def parse_stacks(text):
    """Parses `pprof --text --stacks --show_bytes`: [(bytes, [function, ...])],
    innermost frame first."""
    stacks = []
    for line in text.splitlines():
        if line.startswith("Leak of"):
            break  # the per-record listing that follows repeats the same stacks
        m = _STACK_FIRST.match(line)
        if m:
            stacks.append((int(m.group(1)), [_function_of(m.group(3))]))
            continue
        m = _STACK_MORE.match(line)
        if m and stacks:
            stacks[-1][1].append(_function_of(m.group(2)))
    return stacks


def allocation_sites(stacks, wrappers=WRAPPERS):
    """In-use bytes per allocating function: the innermost frame that is not a
    harness wrapper (pprof's flat column, with the wrappers folded away)."""
    sites = {}
    for nbytes, frames in stacks:
        site = next((f for f in frames if f not in wrappers), frames[0] if frames else "?")
        sites[site] = sites.get(site, 0) + nbytes
    return sites


def summarize(text_bytes, stacks_text=None):
    """The heap/STEM.json content from the --show_bytes text and the stacks."""
    parsed = parse_text(text_bytes)
    total = parsed["total_bytes"]
    # pprof names an inlined copy "f (inline)"; an expect line names f. Flat
    # bytes of the copies add up (distinct call sites); cumulative ones may
    # overlap, so the largest stands.
    flat, cum = {}, {}
    for r in parsed["rows"]:
        name = tools.source_name(r["function"])
        flat[name] = flat.get(name, 0) + r["flat_bytes"]
        cum[name] = max(cum.get(name, 0), r["cum_bytes"])
    sites = allocation_sites(parse_stacks(stacks_text)) if stacks_text else dict(flat)
    top = max(sites.items(), key=lambda kv: kv[1], default=(None, 0))
    return {
        "total_bytes": total,
        "top_function": top[0],
        "top_bytes": top[1],
        "top_share": (top[1] / total) if total else 0.0,
        "sites": dict(sorted(sites.items(), key=lambda kv: -kv[1])),
        "flat": flat,
        "cum": cum,
        "wrappers_folded": sorted(WRAPPERS),
    }


NM_WITHOUT_PLUGINS = Path(__file__).resolve().parent / "nm-without-plugins"


def pprof_tools_env():
    """The environment google-pprof runs with (this module's renderings, and
    the heap checker's at exit): nm without binutils' LTO plugins, which cost
    most of a rendering (nm-without-plugins, beside this file, says why). A PPROF_TOOLS
    the user set is kept as it is."""
    if os.environ.get("PPROF_TOOLS"):
        return {}
    tools_ = {"nm": str(NM_WITHOUT_PLUGINS)}
    for tool in ("addr2line", "objdump", "c++filt"):  # a PPROF_TOOLS must name every tool pprof uses
        tools_[tool] = shutil.which(tool) or tool
    return {"PPROF_TOOLS": ",".join(f"{k}:{v}" for k, v in tools_.items())}


def megabytes_text(text_bytes):
    """`pprof --text --inuse_space` (MB, the text a person reads) from the
    --show_bytes text of the same profile, as google-pprof prints it (its
    PrintText, Unparse and Units: the same rows in the same order, each
    figure in 2^20-byte MB with one decimal), instead of a fourth pprof run
    that would symbolize every library again."""
    out = []
    for line in text_bytes.splitlines():
        total = _TOTAL.match(line.strip())
        if total and total.group(2) == "B":
            out.append(f"Total: {int(total.group(1)) / 1048576.0:.1f} MB")
            continue
        row = _ROW.match(line)
        if row:
            flat, p1, p2, cum, p3, sym = row.groups()
            out.append("%8s %6s %6s %8s %6s %s" % (f"{int(flat) / 1048576.0:.1f}", p1 + "%", p2 + "%",
                                                   f"{int(cum) / 1048576.0:.1f}", p3 + "%", sym))
    return "\n".join(out) + "\n"


def in_use_only(profile, out_path):
    """Writes a copy of a (checked) heap profile without its records of no
    in-use memory: what an --inuse_space rendering shows is unchanged, but
    google-pprof symbolizes every address of every record, and most records
    are allocations long freed (at steady, each census' symbolizer: libdw,
    libelf, zlib), so each rendering spent most of its time on libraries
    nothing in use points into. Returns out_path."""
    text = Path(profile).read_bytes().decode("latin-1")
    cut = text.index(MAPS_MARKER)
    header, *records = text[:cut].split("\n")
    kept = [line for line in records if (m := _RECORD.match(line)) and int(m.group(2)) > 0]
    Path(out_path).write_bytes("\n".join([header, *kept]).encode("latin-1") + text[cut:].encode("latin-1"))
    return out_path


def _pprof(pprof, args, out_path):
    done = subprocess.run([pprof, *args], capture_output=True, text=True, timeout=PPROF_TIMEOUT_S,
                          env={**os.environ, **pprof_tools_env()})
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"google-pprof {' '.join(args[:3])} failed: {done.stderr.strip()[-300:]}")
    Path(out_path).write_text(done.stdout)
    return done.stdout


def render(binary, run_dir, profiles):
    """For each (phase, profile path): check, render and parse into heap/.

    Returns (rendered, problems, notes): rendered maps the profile's stem to
    its summary file; problems are harness failures (truncation, pprof
    errors); notes are harmless (no SVG without graphviz).

    The google-pprof runs (three per profile, each symbolising the binary
    anew: about a second apiece, with the nm of pprof_tools_env; they read
    the in-use records only, in_use_only; the MB text is derived,
    megabytes_text) run side by side, one per
    core: one after the other they made a seed-scale heapprof run take 3.5x
    the plain run instead of 2.7x."""
    run_dir = Path(run_dir)
    heap_dir = run_dir / "heap"
    heap_dir.mkdir(exist_ok=True)
    pprof = pprof_path()
    rendered, problems, notes = {}, [], []
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        jobs = []
        for phase, profile in profiles:
            profile = Path(profile)
            if not profile.is_absolute():
                profile = run_dir / profile
            why = check_profile(profile)
            if why:
                problems.append(f"heap profile truncated: {profile.name} ({phase}): {why}")
                (heap_dir / f"{profile.stem}.json").write_text(json.dumps(
                    {"phase": phase, "profile": str(profile), "truncated": why}, indent=1) + "\n")
                continue
            in_use = in_use_only(profile, heap_dir / f"{profile.stem}.in-use.heap")
            jobs.append((phase, profile, in_use, _submit_renderings(pool, pprof, binary, in_use, profile.stem, heap_dir)))
        for phase, profile, in_use, futures in jobs:
            stem = profile.stem
            concurrent.futures.wait(futures.values())
            in_use.unlink()
            try:
                text_bytes = futures["bytes"].result()
                (heap_dir / f"{stem}.txt").write_text(megabytes_text(text_bytes))
                summary = summarize(text_bytes, futures["stacks"].result())
            except (RuntimeError, ValueError, subprocess.TimeoutExpired, OSError) as e:
                problems.append(f"heap profile {profile.name} ({phase}): {e}")
                continue
            summary.update(phase=phase, profile=str(profile), truncated=None)
            summary_path = heap_dir / f"{stem}.json"
            summary_path.write_text(json.dumps(summary, indent=1) + "\n")
            rendered[stem] = str(summary_path)
            if "svg" not in futures:
                notes.append(f"graphviz 'dot' not found: heap/{stem}.svg skipped")
                continue
            try:
                futures["svg"].result()
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                notes.append(f"no heap/{stem}.svg: {e}")
    return rendered, problems, notes


def _submit_renderings(pool, pprof, binary, profile, stem, heap_dir):
    """Starts the pprof runs for one profile: the exact bytes (from which the
    text a person reads is derived) and stacks the summary is parsed from,
    and the call graph."""
    base = [str(binary), str(profile)]
    runs = {
        "bytes": (["--text", "--inuse_space", "--show_bytes", "--nodecount=100000",
                   "--nodefraction=0", "--edgefraction=0", *base], f"{stem}.bytes.txt"),
        "stacks": (["--text", "--stacks", "--inuse_space", "--show_bytes", *base], f"{stem}.stacks.txt"),
    }
    if shutil.which("dot"):
        runs["svg"] = (["--svg", "--inuse_space", *base], f"{stem}.svg")
    return {key: pool.submit(_pprof, pprof, args, heap_dir / name) for key, (args, name) in runs.items()}


# ---- the runner's tool interface ---------------------------------------------

def binary(spec):
    return None  # the scenario's tcmalloc binary


def unavailable(spec):
    if not pprof_path():
        return f"google-pprof not found (apt-get install google-perftools, or set {ENV_PPROF})"
    lib = os.environ.get(ENV_TCMALLOC)
    if lib and not Path(lib).is_file():
        return f"{ENV_TCMALLOC}={lib}: no such file"
    return None


def setup(run_dir):
    (Path(run_dir) / "heap").mkdir(exist_ok=True)


def command(spec, binary_path, run_dir, head, options):
    env = dict(ENV)
    lib = os.environ.get(ENV_TCMALLOC)
    if lib:
        env["LD_PRELOAD"] = str(Path(lib).resolve())
    return head + scenario_options(Path(run_dir) / "heap") + list(options), env


def versions(spec, binary_path):
    lib = tools.allocator_info(binary_path, "tcmalloc", os.environ.get(ENV_TCMALLOC))
    pprof = pprof_path()
    return {"tool_path": lib["allocator_path"], "tool_version": lib["allocator_version"],
            "pprof_path": pprof, "pprof_version": tools.first_line([pprof, "--version"]) if pprof else None}


def phase_profiles(run_dir):
    """[(phase, heap profile path)] from the phase events, in order."""
    events, _ = eventlog.read(Path(run_dir) / "events.jsonl")
    return [(ev.get("phase"), ev["heap_profile"]) for ev in events
            if ev.get("event") == "phase" and ev.get("heap_profile")]


def tool_report(summary, versions_, exit_code=None):
    """The last phase's parsed profile in tool.json's shape (None: no profile)."""
    sites = (summary or {}).get("sites") or {}
    own = {fn: b for fn, b in sites.items() if fn not in INFRASTRUCTURE and b > 0}
    kinds = {"in_use": {"bytes": sum(own.values()), "blocks": None}}
    by_function = {"in_use": {fn: {"bytes": b, "blocks": None} for fn, b in own.items()}}
    return tools.report(NAME, tool_path=versions_["tool_path"], tool_version=versions_["tool_version"],
                        kinds=kinds, reported_kinds=REPORTED_KINDS, by_function=by_function,
                        raw=(summary or {}).get("profile"), exit_code=exit_code,
                        extra={"phase": (summary or {}).get("phase"),
                               "infrastructure_bytes": {fn: b for fn, b in sites.items() if fn in INFRASTRUCTURE},
                               "pprof_path": versions_.get("pprof_path")})


def postprocess(spec, binary_path, run_dir, info):
    profiles = phase_profiles(run_dir)
    errors = []
    if not profiles and info.get("exit_code") == 0:
        errors.append("heapprof: no phase event named a heap profile (was --heap-profile ignored?)")
    rendered, problems, notes = render(binary_path, run_dir, profiles)
    errors.extend(problems)
    info["heapprof"] = {"profiles": [p for _, p in profiles], "rendered": rendered}
    last = None
    if profiles:
        stem = Path(profiles[-1][1]).stem
        if stem in rendered:
            last = json.loads(Path(rendered[stem]).read_text())
    if last is None:
        return None, errors, notes
    return tool_report(last, versions(spec, binary_path), info.get("process_exit_code")), errors, notes
