"""A checked run's key figures as CTest measurements, which `ctest -T Test` writes into Test.xml and CDash plots."""

# CTest reads lines like
#   <CTestMeasurement type="numeric/double" name="threads">1001</CTestMeasurement>
# from a test's output and stores each as a NamedMeasurement of the test in
# Testing/<tag>/Test.xml; CDash draws a numeric one over time, test by test,
# so "RSS of blocked_workers.leaky.native" becomes a graph across builds and
# machines. `leaklab.py check --measurements` prints them after the verdict
# table (the CTest tests pass it; a person running `check` is spared them).
#
# The figures (names are stable: CDash keys its graphs on them):
#   threads, rss_bytes, in_use_bytes           the largest over the run's phase snapshots (no
#                                              in_use under a sanitizer: its allocator replaces malloc)
#   threads_end, rss_end_bytes, in_use_end_bytes   at the last phase
#   maxrss_bytes, wall_s                       the process's peak RSS (rusage) and wall time
#   workers, payload_bytes                     the scale the scenario declared
#   tool_reported (1/0), tool_reported_bytes, tool_reported_blocks, tool_error_count
#   tool_version, tool_release                 text: what the tool was
#   checks_passed, checks_failed, result       the comparison: result is the exit code (0, 1, 99)
#   verdict                                    text: PASS, FAIL, ERROR

import json
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from scripts.base.exits import EXIT_FAILED, EXIT_OK, EXIT_SKIP
from scripts.expect import comparer

NUMERIC, TEXT = "numeric/double", "text/string"


def figures(run_dir, verdict):
    """[(name, type, value)] for a run directory and its comparer.Verdict; a
    figure the run does not have (no tool, an allocator without statistics)
    is left out, never reported as 0."""
    data = comparer.RunData.load(run_dir)
    out = []

    def add(name, value, kind=NUMERIC):
        if value is None or isinstance(value, bool) and kind == NUMERIC:
            return
        if kind == NUMERIC and not isinstance(value, (int, float)):
            return
        out.append((name, kind, value))

    snapshots = [data.phases[p].get("snapshot") for p in dict.fromkeys(data.phase_order)]
    snapshots = [s for s in snapshots if isinstance(s, dict)]

    def metric(snap, path):
        value = snap
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        # Allocator statistics an allocator cannot give are negative (unknown).
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None

    # A sanitizer's own allocator replaces malloc: glibc's statistics then
    # count nothing (0), which is not the heap in use.
    own_allocator = (data.info.get("versions") or {}).get("allocator") == "sanitizer"
    for name, path in (("threads", "threads"), ("rss_bytes", "rss_bytes"), ("in_use_bytes", "alloc.in_use_bytes")):
        if own_allocator and path.startswith("alloc."):
            continue
        values = [v for v in (metric(s, path) for s in snapshots) if v is not None]
        add(name, max(values) if values else None)
        add(name.replace("_bytes", "_end_bytes") if name != "threads" else "threads_end",
            metric(snapshots[-1], path) if snapshots else None)
    add("maxrss_bytes", data.info.get("child_maxrss_bytes"))
    add("wall_s", data.info.get("wall_s"))
    for key in ("workers", "payload_bytes"):
        add(key, data.start.get(key))

    try:
        doc = json.loads((Path(run_dir) / "tool.json").read_text())
    except (OSError, ValueError):
        doc = None
    if doc:
        add("tool_reported", 1 if doc.get("verdict") == "reported" else 0)
        add("tool_reported_bytes", doc.get("reported_bytes"))
        add("tool_reported_blocks", doc.get("reported_blocks"))
        add("tool_error_count", doc.get("error_count"))
        add("tool_version", doc.get("tool_version"), TEXT)
    release = data.info.get("release") or (data.info.get("versions") or {}).get("release")
    if release:
        add("tool_release", release, TEXT)

    passed = sum(r.verdict == "PASS" for r in verdict.rows)
    add("checks_passed", passed)
    add("checks_failed", len(verdict.rows) - passed)
    add("result", verdict.code)
    word = {EXIT_OK: "PASS", EXIT_FAILED: "FAIL", EXIT_SKIP: "SKIP"}.get(verdict.code, "ERROR")
    add("verdict", word, TEXT)
    return out


def lines(found):
    """The <CTestMeasurement> lines, one per figure."""
    return [f"<CTestMeasurement type={quoteattr(kind)} name={quoteattr(name)}>{escape(_text(value))}"
            "</CTestMeasurement>" for name, kind, value in found]


def _text(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
