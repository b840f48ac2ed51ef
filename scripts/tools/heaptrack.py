"""heaptrack capture: `heaptrack -o RUN_DIR/heaptrack BINARY ...`, then heaptrack_print into tool.json."""

import re
import subprocess
from pathlib import Path

from scripts.tools import tools

NAME = "heaptrack"
TITLE = "heaptrack"
ALLOCATORS = ("glibc",)
CANARY_OPTIONS = ["--canary"]
LEAK_EXIT_CODES = {}  # heaptrack passes the program's exit code through
# heaptrack has no reachability analysis: whatever was never freed is "leaked".
REPORTED_KINDS = ("leaked",)
ENV_HEAPTRACK = "LEAKLAB_HEAPTRACK"
ENV_PRINT = "LEAKLAB_HEAPTRACK_PRINT"
DATA = "heaptrack"  # -o: heaptrack adds .zst (or .gz without zstd)
PRINT_TIMEOUT_S = 600


def heaptrack_path():
    return tools.resolve(ENV_HEAPTRACK, "heaptrack")


def print_path():
    return tools.resolve(ENV_PRINT, "heaptrack_print")


def unavailable(spec):
    for path, why in (heaptrack_path(), print_path()):
        if not path:
            return f"{why} (apt-get install heaptrack)"
    return None


def binary(spec):
    return None  # the scenario's own (glibc) binary


def command(spec, binary_path, run_dir, head, options):
    return [heaptrack_path()[0], "-o", str(Path(run_dir) / DATA), *head, *options], {}


def versions(spec, binary_path):
    path = heaptrack_path()[0]
    version = tools.first_line([path, "--version"]) if path else None
    printer = print_path()[0]
    printer_version = tools.first_line([printer, "--version"]) if printer else None
    if printer_version and printer_version != version:
        version = f"{version}; {printer_version}"
    return {"tool_path": path, "tool_version": version, "print_path": printer}


def data_file(run_dir):
    found = sorted(p for p in Path(run_dir).glob(f"{DATA}.*") if p.suffix in (".zst", ".gz")
                   and not p.name.endswith(".raw" + p.suffix))
    return found[0] if found else None


_FRAME = re.compile(r"^(.*?)(?: \([^()]*\))?$")


def _inlined_names(frames):
    """heaptrack 1.5 names a function inlined into F "F::inlined", the frame
    just before F's own (1.4 wrote "inlined"): measured in Debian 13's lane,
    new_store;ll_xmalloc::ll_xrealloc;ll_xmalloc where Debian 12 has
    new_store;ll_xrealloc;ll_xmalloc. Back to the inlined function's name, so
    the wrappers are skipped as before; a C++ name (no frame F after it) stays."""
    return [f.removeprefix(frames[i + 1] + "::") if i + 1 < len(frames) and f.startswith(frames[i + 1] + "::")
            else f for i, f in enumerate(frames)]


def parse_flamegraph(text):
    """heaptrack_print -F with --flamegraph-cost-type leaked: one line per
    stack, outermost frame first, "f1 (file.c);f2 (file.c); BYTES". Returns
    {function charged: leaked bytes}, exact (the text report rounds to 3 digits)."""
    sites = {}
    for line in text.splitlines():
        stack, _, cost = line.rpartition(" ")
        if not cost.isdigit() or int(cost) == 0:
            continue
        frames = _inlined_names([_FRAME.match(f.strip()).group(1) for f in stack.rstrip(";").split(";") if f.strip()])
        fn = tools.charged_function(reversed(frames)) or (frames[-1] if frames else "?")
        sites[fn] = sites.get(fn, 0) + int(cost)
    return sites


_UNITS = {"": 1, "B": 1, "K": 1e3, "M": 1e6, "G": 1e9}
_TOTAL = re.compile(r"^total memory leaked:\s*([\d.]+)([KMG]?)B?\s*$", re.M)
_LEAKED_ALLOCS = re.compile(r"^\s*leaked allocations:\s*(\d+)", re.M)


def parse_total(text):
    """heaptrack_print's 'total memory leaked: 4.95M' in bytes (3 significant digits), or None."""
    m = _TOTAL.search(text)
    return round(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def _print(args, out_path):
    done = subprocess.run([print_path()[0], *args], capture_output=True, text=True, timeout=PRINT_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"heaptrack_print {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    if out_path:
        Path(out_path).write_text(done.stdout)
    return done.stdout


def postprocess(spec, binary_path, run_dir, info):
    run_dir = Path(run_dir)
    errors, notes = [], []
    data = data_file(run_dir)
    kinds = tools.empty_kinds(("leaked",))
    by_function = {}
    if data is None:
        errors.append(f"heaptrack wrote no data file ({DATA}.zst or .gz) in the run directory: see stdout.txt")
    else:
        try:
            summary = _print(["-f", str(data), "--print-leaks", "1"], run_dir / "heaptrack.txt")
            _print(["-f", str(data), "--flamegraph-cost-type", "leaked", "-F", str(run_dir / "heaptrack.leaked.txt")],
                   None)
            sites = parse_flamegraph((run_dir / "heaptrack.leaked.txt").read_text())
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            errors.append(f"heaptrack: {e}")
        else:
            total = sum(sites.values())
            said = parse_total(summary)
            if said is None:
                errors.append("heaptrack: no 'total memory leaked' line in heaptrack_print's output")
            elif abs(said - total) > max(0.01 * max(said, total), 10):
                errors.append(f"heaptrack: the leaked stacks add up to {total} bytes but heaptrack_print "
                              f"says {said}: the report was not fully parsed")
            stats = ""
            for name in ("stderr.txt", "stdout.txt"):  # heaptrack_interpret's stats (stderr in 1.4)
                try:
                    stats += (run_dir / name).read_text(errors="replace")
                except OSError:
                    pass
            m = _LEAKED_ALLOCS.search(stats)
            kinds["leaked"] = {"bytes": total, "blocks": int(m.group(1)) if m else None}
            for fn, nbytes in sites.items():
                by_function.setdefault("leaked", {})[fn] = {"bytes": nbytes, "blocks": None}
    v = versions(spec, binary_path)
    doc = tools.report(NAME, tool_path=v["tool_path"], tool_version=v["tool_version"], kinds=kinds,
                       reported_kinds=REPORTED_KINDS, by_function=by_function,
                       raw=data.name if data else None, exit_code=info.get("process_exit_code"),
                       extra={"print_path": v["print_path"]})
    return doc, errors, notes
