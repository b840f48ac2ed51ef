"""The cross-tool verdict matrix (scenario x variant x tool, canaries included) and baselines of it, diffed."""

# A cell is one `check` run: the scenario's variant under one tool at the
# matrix's scale, the expected file's [[args]] applied (each tool's own scale),
# compared with the expected file. Every tool's report is parsed into the one
# shape of tool.json (tools.py), so a cell is: verdict (reported / not
# reported), bytes and blocks per leak kind, the top function, and whether it
# matches what the expected file declares. Each scenario also gets a canary
# row: its last variant with the tool's canary planted (--canary, or
# --canary-thread for ThreadSanitizer); a tool that misses its canary fails its
# column, which is how a stubbed or broken tool is caught.
#
# A column may be a release of a tool, TOOL@RELEASE (lsan@clang-14,
# lsan@gcc-12: scripts/tools/sanitizer.py), so two releases run side by side and
# `diff_columns` shows where they differ. A cell may be run R times
# (--repeat R): it then records how many runs crashed, timed out or gave
# another verdict ("crashed 2/5"), and is "unstable" unless every run matched.

import collections
import datetime
import json
import os
import platform
import re
from pathlib import Path

from scripts.base import distro
from scripts.base.exits import EXIT_FAILED, EXIT_OK, EXIT_SKIP, EXIT_SYSTEM
from scripts.expect import comparer, expected
from scripts.run import runner
from scripts.tools import tools

# Column order: the classic checker first, then the profilers, the sanitizers, heaptrack.
MATRIX_TOOLS = ("memcheck", "heapprof", "heapcheck", "lsan", "asan", "tsan", "heaptrack", "threadcheck", "orphans",
                "helgrind", "drd", "massif", "dhat")
# The columns a matrix runs when --tools is not given: the leak detectors. The
# cause checkers (helgrind, drd) are asked for by name (--tools helgrind,drd,tsan):
# only the zoo and blocked_workers have expectations for them, and under them a
# 1,000-thread scenario runs for minutes per cell. So are the profilers (massif
# --pages-as-heap, DHAT): only the retention kernels and delayed_exit expect them.
DEFAULT_TOOLS = MATRIX_TOOLS[:9]
# The profilers: no zoo kernel has checks for them (a thread leak is not what they measure).
PROFILE_TOOLS = ("massif", "dhat")
ZOO_TOOLS = tuple(t for t in MATRIX_TOOLS if t not in PROFILE_TOOLS)
DEFAULT_TOLERANCE = 0.05   # bytes may move 5 % ...
DEFAULT_FLOOR = 0.10       # ... or by less than 10 % of the row's payload_bytes (see docs/tools.md)
BASELINES_DIR = runner.REPO / "baselines"
SCHEMA = 1

_VERDICT_CHECK = re.compile(r"""^\s*tool\.verdict\s*==\s*["'](reported|not reported)["']\s*$""")


# ---- running the cells ------------------------------------------------------------

def plan(scenarios, variants, tools_, include_canaries=True):
    """[(scenario, variant, tool, canary)] in table order: every variant of
    every scenario, then the scenario's canary row (its last variant)."""
    cells = []
    for scenario in scenarios:
        for variant in variants[scenario]:
            cells += [(scenario, variant, tool, False) for tool in tools_]
        if include_canaries and variants[scenario]:
            cells += [(scenario, variants[scenario][-1], tool, True) for tool in tools_]
    return cells


def run_cell(scenario, variant, tool, canary, *, scale, build_dir, out, expected_dir, timeout_s,
             announce=None, options=(), repeat=1, progress=None):
    """Runs one cell through the runner and the comparer (`repeat` times);
    returns the cell dict. `tool` is a column: TOOL or TOOL@RELEASE;
    `options` are scenario options that win over the expected file's [[args]]."""
    exp_path = expected.path_for(scenario, expected_dir)
    try:
        exp = expected.load(exp_path)
    except expected.ExpectedFileError as e:
        exp = e
    allocator = cell_allocator(exp, tool, variant, scale)
    cell = {"scenario": scenario, "variant": variant, "tool": tool, "canary": canary,
            "allocator": allocator, "scale": {"scale": scale}}
    extra = (runner.canary_options(tool) if canary else []) + list(options)
    base, release = runner.parse_tool(tool)
    spec = runner.RunSpec(scenario=scenario, variant=variant, scale=scale, allocator=allocator, tool=base,
                          release=release, out=out, build_dir=build_dir, timeout_s=timeout_s, options=list(extra))
    if isinstance(exp, expected.ExpectedFileError):
        return {**cell, "status": "error", "reason": f"broken expected file: {exp}"}
    sel = (variant, runner.tool_id(spec), allocator, scale)
    if "@" in sel[1]:
        cell["release"] = sel[1].partition("@")[2]
    runner.apply_expected(spec, exp, sel, extra)
    cell["scale"]["options"] = list(spec.options)
    runs = []
    for i in range(repeat):
        try:
            run_dir, info = runner.execute(spec, announce=announce)
        except runner.Skip as e:
            return {**cell, "status": "skipped", "reason": str(e)}
        except runner.Outcome as e:
            return {**cell, "status": "error", "reason": str(e)}
        verdict = comparer.compare(run_dir, exp_path)
        runs.append(describe(run_dir, info, verdict))
        if progress and repeat > 1:
            progress(f"    run {i + 1}/{repeat}: {run_outcome(runs[-1])}"
                     f"{', ' + str(runs[-1].get('wall_s')) + ' s' if runs[-1].get('wall_s') is not None else ''}")
    done = {**cell, **summarize(runs)}
    if exp.truth is not None:  # a zoo kernel: its truth, for the detection summary
        done["truth"] = comparer.truth_of_run(exp, variant, ((done.get("scale") or {}).get("params") or {}).get("instances"))
        if done["truth"] is not None:
            done["truth"]["cause"] = exp.truth.cause
    return done


def cell_allocator(exp, tool, variant, scale):
    """The tool's default allocator, unless the expected file checks this tool on this variant
    only under another one the tool runs under (tcmalloc_cache under massif: tcmalloc; the
    kernel skips under glibc)."""
    default = runner.default_allocator(tool)
    module = runner.TOOL_MODULES.get(expected.split_tool(tool)[0])
    if module is None or isinstance(exp, Exception):
        return default
    for allocator in (default, *module.ALLOCATORS):
        if any(c.applies(variant, tool, allocator, scale) and c.allocator != ("any",) or
               allocator == default and c.applies(variant, tool, allocator, scale) for c in exp.checks):
            return allocator
    return default


_CRASH = re.compile(r"Sanitizer (has encountered a fatal error|: CHECK failed)|SEGV|deadly signal|stack-overflow")


def run_outcome(run):
    """One run of a cell in a word: timed out, crashed, or its status (match, differs, ...)."""
    if run.get("timed_out"):
        return "timed out"
    if run.get("crashed"):
        return "crashed" + (f" ({run['crash']})" if run.get("crash") else "")
    return run["status"]


def summarize(runs):
    """A cell run R times: the representative run's fields (the first run that
    finished with the most common verdict: what the tool says when it works),
    plus "stability": how many runs crashed, timed out, gave another verdict
    than that, or matched the expected file. The cell's status is "match"
    only when every run matched; runs that failed alike keep their common
    status; anything else is "unstable"."""
    finished = [r for r in runs if not r.get("crashed") and not r.get("timed_out")]
    common = collections.Counter(r.get("verdict") for r in finished).most_common(1)
    common = common[0][0] if common else None
    rep = next((r for r in finished if r.get("verdict") == common), runs[0])
    stability = {
        "runs": len(runs),
        "crashed": sum(bool(r.get("crashed")) and not r.get("timed_out") for r in runs),
        "timed_out": sum(bool(r.get("timed_out")) for r in runs),
        "verdict_changed": sum(r.get("verdict") != common for r in finished),
        "matched": sum(r["status"] == "match" for r in runs),
        "outcomes": [run_outcome(r) for r in runs],
        "wall_s": [r.get("wall_s") for r in runs],
        "run_dirs": [r.get("run_dir") for r in runs],
    }
    statuses = {r["status"] for r in runs}
    if stability["matched"] == len(runs):
        status = "match"
    elif len(statuses) == 1 and not (stability["crashed"] or stability["timed_out"] or stability["verdict_changed"]):
        status = rep["status"]
    else:
        status = "unstable"
    return {**rep, "status": status, "stability": stability}


def unstable_text(stability):
    """'crashed 2/5, timed out 1/5' (empty when every run finished alike)."""
    if not stability:
        return ""
    n = stability["runs"]
    bits = [f"{word} {stability[key]}/{n}" for key, word in
            (("crashed", "crashed"), ("timed_out", "timed out"), ("verdict_changed", "verdict changed"))
            if stability.get(key)]
    return ", ".join(bits)


def describe(run_dir, info, verdict):
    """What a finished cell shows: the tool's report, the run's scale, and how
    it compares with the expected file."""
    run_dir = Path(run_dir)
    data = comparer.RunData.load(run_dir)
    try:
        doc = json.loads((run_dir / "tool.json").read_text())
    except (OSError, ValueError):
        doc = {}
    rows = verdict.rows
    expected_verdict, verdict_ok = None, None
    for r in rows:
        m = _VERDICT_CHECK.match(r.check)
        if m:
            expected_verdict, verdict_ok = m.group(1), r.verdict == "PASS"
    failed = [{"check": r.check, "verdict": r.verdict, "expected": r.expected, "observed": r.observed,
               "detail": r.detail} for r in rows if r.verdict != "PASS"]
    if verdict.code == EXIT_OK:
        status = "match"
    elif verdict.code == EXIT_SKIP:
        status = "skipped"
    elif verdict.code == EXIT_SYSTEM or info.get("runner_status") == EXIT_SYSTEM:
        status = "error"
    elif not rows:
        status = "no expectation"
    else:
        status = "differs"
    start = data.start
    timed_out = bool(info.get("timed_out")) or any("runner timeout" in e for e in info.get("runner_errors", []))
    # Crashed: the scenario did not finish (a signal, or no end event: a
    # sanitizer's SEGV handler ended it), or the tool died in its own code.
    fatal = [e for e in info.get("runner_errors", []) if _CRASH.search(e)]
    fatal += [k for k in (doc.get("errors") or {}) if _CRASH.search(k)]
    crashed = not timed_out and (bool(info.get("signal")) or data.end is None or bool(fatal))
    crash = doc.get("crash") or info.get("signal") or (fatal[0][:120] if fatal else None)
    return {
        "status": status, "result": verdict.code, "message": verdict.message,
        "crashed": crashed, "timed_out": timed_out, "crash": crash if crashed else None,
        "verdict": doc.get("verdict"), "expected_verdict": expected_verdict, "verdict_ok": verdict_ok,
        "kinds": doc.get("kinds", {}), "reported_kinds": doc.get("reported_kinds", []),
        "reported_bytes": doc.get("reported_bytes"), "reported_blocks": doc.get("reported_blocks"),
        "top_function": doc.get("top_function"), "functions": top_functions(doc),
        "error_count": doc.get("error_count"),
        "cause": doc.get("cause"), "causes": doc.get("causes"),   # tools that name a cause (helgrind, drd, tsan)
        "checks": {"total": len(rows), "passed": sum(r.verdict == "PASS" for r in rows)},
        "failed_checks": failed,
        "scale": {"scale": start.get("scale") or info.get("scale"), "options": info.get("options", []),
                  "workers": start.get("workers"), "payload_bytes": start.get("payload_bytes"),
                  "params": start.get("params", {})},
        "tool_path": doc.get("tool_path"), "tool_version": doc.get("tool_version"),
        "versions": info.get("versions", {}),
        "exit_code": info.get("exit_code"), "process_exit_code": info.get("process_exit_code"),
        "wall_s": info.get("wall_s"), "run_dir": str(run_dir),
    }


def top_functions(doc, n=5):
    """The n functions holding the most of what the tool reports: {fn: [bytes, blocks]}."""
    totals = {}
    for kind in doc.get("reported_kinds", []):
        for fn, v in (doc.get("by_function") or {}).get(kind, {}).items():
            t = totals.setdefault(fn, [0, 0])
            t[0] += v.get("bytes") or 0
            t[1] += v.get("blocks") or 0
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))[:n])


def run_matrix(scenarios, variants, tools_, *, scale, build_dir, out, expected_dir, timeout_s, progress=None,
               options=(), repeat=1, canaries=True):
    cells = []
    todo = plan(scenarios, variants, tools_, include_canaries=canaries)
    for i, (scenario, variant, tool, canary) in enumerate(todo, 1):
        if progress:
            progress(f"[{i}/{len(todo)}] {scenario} {variant}{' +canary' if canary else ''} under {tool}"
                     f"{f' x{repeat}' if repeat > 1 else ''}")
        cell = run_cell(scenario, variant, tool, canary, scale=scale, build_dir=build_dir, out=out,
                        expected_dir=expected_dir, timeout_s=timeout_s, options=options, repeat=repeat,
                        progress=progress)
        if progress:
            progress(f"    {cell_text(cell)}  ({cell['status']}{', ' + str(cell.get('wall_s')) + ' s' if cell.get('wall_s') is not None else ''})")
        cells.append(cell)
    doc = document(cells, scenarios, tools_, scale)
    doc.update(options=list(options), repeat=repeat, canaries=canaries,
               variants={s: list(variants[s]) for s in scenarios})
    return doc


def document(cells, scenarios, tools_, scale):
    """matrix.json's content: the cells, the tool versions, the machine."""
    versions = {}
    for c in cells:
        if c.get("tool_version") or c.get("tool_path"):
            v = versions.setdefault(c["tool"], {"tool_path": c.get("tool_path"), "tool_version": c.get("tool_version")})
            for key in ("release", "release_version"):  # TOOL@RELEASE columns (and plain sanitizers)
                if (c.get("versions") or {}).get(key):
                    v.setdefault(key, c["versions"][key])
    compilers = sorted({c["versions"].get("compiler") for c in cells if c.get("versions", {}).get("compiler")})
    allocators = sorted({f"{c['versions'].get('allocator')}: {c['versions'].get('allocator_version')}"
                         for c in cells if c.get("versions", {}).get("allocator")})
    return {
        "schema": SCHEMA,
        "made_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "glibc": os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None,
                    **distro.distribution()},
        "scale": scale, "scenarios": list(scenarios), "tools": list(tools_),
        "versions": versions, "compilers": compilers, "allocators": allocators,
        "columns": column_status(cells, tools_),
        "detection": detection(cells, tools_),
        "cells": cells,
    }


def column_status(cells, tools_):
    """Per tool: "ok", "canary missed" (its canary cell did not report, or
    did not pass: the column cannot be trusted), "canary unchecked" (the
    expected file has no canary checks for it), "skipped" (not installed)
    or "error"."""
    status = {}
    for tool in tools_:
        mine = [c for c in cells if c["tool"] == tool]
        canaries = [c for c in mine if c["canary"]]
        if mine and all(c["status"] == "skipped" for c in mine):
            status[tool] = "skipped"
        elif any(c["status"] == "differs" or (c["status"] != "skipped" and c.get("verdict") is not None
                                               and c["verdict"] != tools.REPORTED) for c in canaries):
            status[tool] = "canary missed"
        elif any(c["status"] == "no expectation" for c in canaries):
            status[tool] = "canary unchecked"
        elif any(c["status"] == "error" for c in mine):
            status[tool] = "error"
        else:
            status[tool] = "ok"
    return status


def exit_code(doc):
    """1 if a cell differs from its expectation (or has none), or a canary was
    missed; else 99 if a cell hit a harness failure; else 77 if a cell was
    skipped (a tool is missing: the matrix is not full); else 0."""
    states = {c["status"] for c in doc["cells"]}
    if states & {"differs", "no expectation", "unstable"} or \
            {"canary missed", "canary unchecked"} & set(doc["columns"].values()):
        return EXIT_FAILED
    if "error" in states:
        return EXIT_SYSTEM
    if "skipped" in states:
        return EXIT_SKIP
    return EXIT_OK


# ---- the table ---------------------------------------------------------------------

def size(n):
    """Bytes for a cell: exact below 1 MiB (a canary reads 31,337 B), else MiB/GiB."""
    if n is None:
        return "?"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:,} B"


def cell_text(cell):
    """One cell: "yes" (the tool reports a leak) or "no", the bytes of the
    kinds it reports by default (named when not obvious), still-reachable
    bytes after a '+'; '!' where it differs from the expected file, '?' where
    the expected file gives no verdict; skip / ERROR otherwise."""
    status = cell.get("status")
    if status == "skipped":
        return "skip"
    if status == "error" or cell.get("verdict") is None:
        return "ERROR"
    kinds = cell.get("kinds") or {}
    if cell["verdict"] == tools.REPORTED:
        shown = [k for k in cell.get("reported_kinds", []) if (kinds.get(k) or {}).get("bytes")
                 or (kinds.get(k) or {}).get("blocks")]
        if len(shown) == 1 and shown[0] in tools.THREAD_KINDS:  # counted in threads, not bytes
            n = kinds[shown[0]]["blocks"]
            text = f"yes {n} thread{'s' if n != 1 else ''}"
            if shown[0] != "thread":
                text += f" {shown[0]}"
        else:
            text = f"yes {size(cell.get('reported_bytes'))}"
            if len(shown) == 1 and shown[0] not in ("leaked", "in_use"):
                text += f" {shown[0]}"
    else:
        text = "no"
    hidden = (kinds.get("reachable") or {}).get("bytes")
    if hidden:
        text += f" +{size(hidden)} reachable"
    stability = cell.get("stability") or {}
    if stability.get("runs", 1) > 1:
        text += f" ({unstable_text(stability) or str(stability['runs']) + '/' + str(stability['runs']) + ' alike'})"
    marks = {"differs": "! ", "no expectation": "? ", "unstable": "! "}
    return marks.get(status, "") + text


LEGEND = ("cells: yes = the tool reports a leak (bytes of the kinds it shows by default, or threads), "
          "no = it reports none; +N reachable = still-reachable bytes it counts but does not report; "
          "'!' differs from the expected file, '?' the expected file gives no verdict; "
          "skip = tool not installed, ERROR = harness failure; with --repeat R: (R/R alike) every run "
          "finished with the same verdict, (crashed N/R, timed out N/R, verdict changed N/R) it did not")


def row_label(scenario, variant, canary, tool=None):
    return f"{scenario}/{variant}{' + canary' if canary else ''}"


def rows_of(doc):
    rows = []
    for c in doc["cells"]:
        key = (c["scenario"], c["variant"], c["canary"])
        if key not in rows:
            rows.append(key)
    return rows


def _grid(doc):
    cells = {(c["scenario"], c["variant"], c["canary"], c["tool"]): c for c in doc["cells"]}
    flag = {"canary missed": " [CANARY MISSED]", "canary unchecked": " [canary unchecked]"}
    head = ["scenario/variant"] + [f"{t}{flag.get(doc['columns'].get(t), '')}" for t in doc["tools"]]
    body = []
    for key in rows_of(doc):
        line = [row_label(*key)]
        for tool in doc["tools"]:
            c = cells.get((*key, tool))
            line.append(cell_text(c) if c else "-")
        body.append(line)
    return head, body


def table(doc):
    head, body = _grid(doc)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    out = ["  ".join(f"{v:<{w}}" for v, w in zip(r, widths)).rstrip() for r in [head] + body]
    out.append("")
    out.append(LEGEND)
    for line in scale_lines(doc):
        out.append(line)
    for line in notes(doc):
        out.append(line)
    out += detection_text(doc)
    return "\n".join(out)


def scale_lines(doc):
    """One line per row: the scale its cells ran at, and any tool that ran at another."""
    out = []
    for key in rows_of(doc):
        if key[2]:
            continue  # a canary row runs at its variant's scale
        texts = {}
        for c in doc["cells"]:
            if (c["scenario"], c["variant"], c["canary"]) == key and c.get("status") not in ("skipped", "error"):
                texts.setdefault(scale_text(c), set()).add(c["tool"])
        if not texts:
            continue
        common = max(texts, key=lambda t: len(texts[t]))
        odd = "; ".join(f"{', '.join(sorted(tools_))}: {t}" for t, tools_ in texts.items() if t != common)
        out.append(f"scale of {row_label(*key)}: {common}{' (' + odd + ')' if odd else ''}")
    return out


def notes(doc):
    out = []
    for tool, state in doc["columns"].items():
        if state == "canary missed":
            out.append(f"{tool}: CANARY MISSED: the tool did not report what was planted; its column cannot be trusted")
    for c in doc["cells"]:
        where = f"{row_label(c['scenario'], c['variant'], c['canary'])} under {c['tool']}"
        if c["status"] in ("skipped", "error") and c.get("reason"):
            out.append(f"{where}: {c['status']}: {c['reason']}")
        for f in c.get("failed_checks", []):
            detail = f" ({f['detail']})" if f.get("detail") else ""
            out.append(f"{where}: {f['verdict']}: {f['check']}: expected {f['expected']}, "
                       f"observed {f['observed']}{detail}")
        if c["status"] == "no expectation":
            # The file the checks come from (a zoo kernel's is in expected/zoo/),
            # and where its tool checks are derived from (expected/tools/).
            path = expected.path_for(c["scenario"], runner.REPO / "expected").relative_to(runner.REPO)
            out.append(f"{where}: no expectation for tool {c['tool']} in {path} (nor derived from its [truth] "
                       "by expected/tools/)")
        stability = c.get("stability") or {}
        if c["status"] == "unstable" or unstable_text(stability):
            crashes = sorted({r for r in [c.get("crash")] if r})
            out.append(f"{where}: {unstable_text(stability) or 'unstable'} over {stability.get('runs')} runs "
                       f"({', '.join(stability.get('outcomes', []))})"
                       + (f"; crash: {crashes[0]}" if crashes else ""))
    return out


def scale_text(cell):
    s = cell.get("scale") or {}
    bits = [s.get("scale") or "?"]
    if s.get("workers") is not None:
        bits.append(f"{s['workers']:,} workers")
    opts, skip = [], False
    for o in s.get("options", []):
        # The canary and the watchdog are not scale.
        if o.startswith(("--timeout=", "--workers=", "--connections=")):
            continue
        if skip or o in ("--canary", "--canary-thread", "--canary-stuck-thread", "--canary-orphan"):
            skip = False
            continue
        if o == "--timeout" or (o in ("--workers", "--connections") and s.get("workers") is not None):
            skip = True  # the watchdog is not scale; the thread count is shown already
            continue
        opts.append(o)
    if opts:
        bits.append(" ".join(opts))
    return ", ".join(bits)


def markdown(doc):
    head, body = _grid(doc)
    out = [f"Measured {doc['made_at']} at --scale {doc['scale']}, kernel {doc['machine']['kernel']}, "
           f"{doc['machine']['cpus']} CPUs.", ""]
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out.append("| " + " | ".join(esc(h) for h in head) + " |")
    out.append("|" + "---|" * len(head))
    for r in body:
        cells = [esc(r[0])] + [f"**{esc(v)}**" if v.startswith(("!", "?", "ERROR")) else esc(v) for v in r[1:]]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", LEGEND, ""]
    out += ["Scale of each cell (the expected file's `[[args]]` applied; workers from the start event):", ""]
    cells = {(c["scenario"], c["variant"], c["canary"], c["tool"]): c for c in doc["cells"]}
    out.append("| scenario/variant | every tool | except |")
    out.append("|---|---|---|")
    for key in rows_of(doc):
        texts = {}
        for tool in doc["tools"]:
            c = cells.get((*key, tool))
            if c and c.get("status") not in ("skipped", "error"):
                texts[tool] = scale_text(c)
        common = max(set(texts.values()), key=list(texts.values()).count) if texts else "-"
        odd = "; ".join(f"{t}: {v}" for t, v in texts.items() if v != common)
        out.append(f"| {esc(row_label(*key))} | {esc(common)} | {esc(odd) or '-'} |")
    out += ["", "Tools, compilers and allocators:", ""]
    for tool, v in doc["versions"].items():
        out.append(f"- {tool}: {v.get('tool_version') or '?'} (`{v.get('tool_path') or '?'}`)")
    for c in doc.get("compilers", []):
        out.append(f"- compiler: {c}")
    for a in doc.get("allocators", []):
        out.append(f"- allocator {a}")
    extra = notes(doc)
    if extra:
        out += ["", "Notes:", ""] + [f"- {esc(n)}" for n in extra]
    out += detection_markdown(doc)
    return "\n".join(out) + "\n"


def write(doc, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "matrix.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out_dir / "matrix.md").write_text(markdown(doc))
    return out_dir / "matrix.json", out_dir / "matrix.md"


# ---- the zoo's detection summary -------------------------------------------------
# The causes whose leaky runs really deadlock on locks (the threads wait for
# locks held in a cycle, or by themselves): a deadlock that actually happens.
DEADLOCK_CAUSES = ("lock_order", "double_lock", "recursive_rlock")
# For each tool, over the rows with a [truth] (the zoo's kernels): how many
# leaky kernels it reports (recall, naming the ones it misses) and how many
# fixed twins it reports all the same (false positives). A tool reports a
# kernel's leak when it reports the leaked threads (a kind of
# tools.THREAD_KINDS with blocks > 0) or at least the kernel's pinned bytes
# (the truth, evaluated for the cell's --instances); a fixed twin is reported
# when the tool's verdict is "reported" at all.

DETECTION_DEFINITION = ("detected = the tool reports the leaked threads (a thread kind: "
                        + ", ".join(tools.THREAD_KINDS) + ") or at least the kernel's pinned bytes; "
                        "false positive = a fixed twin the tool reports anything for; "
                        "cause = the cause the tool names is the truth's (helgrind, drd, tsan; - for a tool "
                        "that names none), its false positive a fixed twin it names any cause for; "
                        "real deadlocks = leaky kernels whose threads really deadlock on locks ("
                        + ", ".join(DEADLOCK_CAUSES) + ") for which the tool names one of those causes")


def names_cause(cell):
    """Whether a leaky cell's tool names the kernel's cause (None: not run, or a
    tool that names no cause)."""
    if detects(cell) is None or cell.get("cause") is None:
        return None
    return cell["cause"] == (cell.get("truth") or {}).get("cause")


def row_name(cell):
    return cell["scenario"] if cell["variant"] in ("leaky", "fixed") else f"{cell['scenario']}/{cell['variant']}"


def detects(cell):
    """Whether a cell of a leaky kernel reports its leak (None: not run)."""
    if cell.get("status") in ("skipped", "error") or cell.get("verdict") is None:
        return None
    kinds, shown = cell.get("kinds") or {}, cell.get("reported_kinds") or []
    threads = sum((kinds.get(k) or {}).get("blocks") or 0 for k in tools.THREAD_KINDS if k in shown)
    pinned = (cell.get("truth") or {}).get("pinned_bytes") or 0
    return threads > 0 or (pinned > 0 and (cell.get("reported_bytes") or 0) >= pinned)


def detection(cells, tools_):
    """{tool: {"leaky", "detected", "missed", "fixed", "false_positives",
    "not_run"}} over the cells with a truth (canary rows left out); {}
    when the matrix has no zoo kernel."""
    zoo = [c for c in cells if c.get("truth") and not c["canary"]]
    if not zoo:
        return {}
    out = {}
    for tool in tools_:
        mine = [c for c in zoo if c["tool"] == tool]
        leaky = [c for c in mine if c["truth"]["leaks"]]
        fixed = [c for c in mine if not c["truth"]["leaks"]]
        ran = lambda c: detects(c) is not None  # noqa: E731
        out[tool] = {
            "leaky": sum(map(ran, leaky)),
            "detected": [row_name(c) for c in leaky if detects(c)],
            "missed": [row_name(c) for c in leaky if detects(c) is False],
            "fixed": sum(map(ran, fixed)),
            "false_positives": [row_name(c) for c in fixed if ran(c) and c["verdict"] == tools.REPORTED],
            "not_run": [f"{c['scenario']}/{c['variant']}" for c in mine if not ran(c)],
        }
        named = [c for c in leaky if names_cause(c) is not None]
        if named:   # a tool that names causes: its cause recall, beside the leak's
            deadlocks = [c for c in named if c["truth"].get("cause") in DEADLOCK_CAUSES]
            out[tool].update({
                "cause_leaky": len(named),
                "cause_detected": [row_name(c) for c in named if names_cause(c)],
                "cause_false_positives": [row_name(c) for c in fixed if ran(c) and c.get("cause") not in (None, "none")],
                "deadlocks": len(deadlocks),
                "deadlocks_seen": [row_name(c) for c in deadlocks if c.get("cause") in DEADLOCK_CAUSES],
            })
    return out


def _detection_rows(doc):
    rows = []
    for tool, d in doc.get("detection", {}).items():
        cause = "cause_leaky" in d
        rows.append((tool, f"{len(d['detected'])}/{d['leaky']}", ", ".join(d["missed"]) or "-",
                     f"{len(d['false_positives'])}/{d['fixed']}", ", ".join(d["false_positives"]) or "-",
                     f"{len(d['cause_detected'])}/{d['cause_leaky']}" if cause else "-",
                     f"{len(d['cause_false_positives'])}/{d['fixed']}" if cause else "-",
                     f"{len(d['deadlocks_seen'])}/{d['deadlocks']}" if cause else "-",
                     ", ".join(d["not_run"]) or "-"))
    return rows


DETECTION_HEAD = ("tool", "recall", "missed", "false positives", "reported fixed twins", "cause recall",
                  "cause false positives", "real deadlocks", "not run")


def detection_text(doc):
    rows = _detection_rows(doc)
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows + [DETECTION_HEAD]) for i in range(len(DETECTION_HEAD))]
    out = ["", f"Detection summary (zoo; {DETECTION_DEFINITION}):"]
    out += ["  ".join(f"{v:<{w}}" for v, w in zip(r, widths)).rstrip() for r in [DETECTION_HEAD] + rows]
    return out


def detection_markdown(doc):
    rows = _detection_rows(doc)
    if not rows:
        return []
    out = ["", "## Detection summary (zoo)", "", DETECTION_DEFINITION[0].upper() + DETECTION_DEFINITION[1:] + ".", ""]
    out.append("| " + " | ".join(DETECTION_HEAD) + " |")
    out.append("|" + "---|" * len(DETECTION_HEAD))
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# ---- baselines ----------------------------------------------------------------------

def baseline_path(name, directory=None):
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise runner.UsageError(f"baseline name '{name}': use letters, digits, '.', '_' and '-'")
    return Path(directory or BASELINES_DIR) / f"{name}.json"


def to_baseline(doc, name, tolerance=DEFAULT_TOLERANCE, floor=DEFAULT_FLOOR):
    """What a baseline keeps of a matrix: everything but machine-local paths."""
    keep = dict(doc)
    keep["name"] = name
    keep["tolerance"] = {"relative": tolerance, "payload_floor": floor}
    keep["cells"] = []
    for c in doc["cells"]:
        c = {k: v for k, v in c.items() if k != "run_dir"}
        if c.get("stability"):
            c["stability"] = {k: v for k, v in c["stability"].items() if k != "run_dirs"}
        keep["cells"].append(c)
    return keep


def cell_key(c):
    return (c["scenario"], c["variant"], c["tool"], bool(c["canary"]))


def _present(kind):
    return bool(kind and (kind.get("bytes") or kind.get("blocks")))


def diff_cells(old, new, tolerance=DEFAULT_TOLERANCE, floor=DEFAULT_FLOOR):
    """What changed between two cells of the same key: a list of one-line
    descriptions (empty: nothing beyond tolerance). Bytes of a kind count as
    changed when they moved by more than `tolerance` of the larger value AND
    by more than `floor` x the row's payload_bytes; so does a new top
    function, when it holds more than the old one by that much. A kind that
    appears or disappears, a verdict, or an expectation that now fails
    always counts."""
    changes = []
    if old.get("status") in ("skipped", "error") or new.get("status") in ("skipped", "error"):
        if old.get("status") != new.get("status"):
            changes.append(f"cell {old.get('status')} -> {new.get('status')}"
                           f"{': ' + new['reason'] if new.get('reason') else ''}")
        return changes
    if old.get("verdict") != new.get("verdict"):
        changes.append(f"verdict: {old.get('verdict')} -> {new.get('verdict')}")
    payload = (new.get("scale") or {}).get("payload_bytes") or (old.get("scale") or {}).get("payload_bytes") or 0
    ok, nk = old.get("kinds") or {}, new.get("kinds") or {}
    for kind in sorted(set(ok) | set(nk)):
        a, b = ok.get(kind), nk.get(kind)
        if _present(a) and not _present(b):
            changes.append(f"kind {kind}: gone (was {size((a or {}).get('bytes'))}, {(a or {}).get('blocks')} blocks)")
            continue
        if _present(b) and not _present(a):
            changes.append(f"kind {kind}: new ({size(b.get('bytes'))}, {b.get('blocks')} blocks)")
            continue
        if not (_present(a) and _present(b)):
            continue
        ab, bb = a.get("bytes") or 0, b.get("bytes") or 0
        if ab or bb:
            delta = abs(bb - ab)
            if delta > tolerance * max(ab, bb) and delta > floor * payload:
                pct = f"{(bb - ab) / ab * 100:+.1f} %" if ab else "new"
                changes.append(f"kind {kind}: bytes {ab:,} -> {bb:,} ({pct})")
        else:  # a count-only kind (thread leaks): the count itself
            if (a.get("blocks") or 0) != (b.get("blocks") or 0):
                changes.append(f"kind {kind}: {a.get('blocks')} -> {b.get('blocks')}")
    if old.get("top_function") != new.get("top_function") and \
            _top_moved(old.get("top_function"), new, tolerance, floor * payload):
        changes.append(f"top function: {old.get('top_function')} -> {new.get('top_function')}")
    if old.get("status") == "match" and new.get("status") != "match":
        failed = "; ".join(f"{f['check']}: observed {f.get('observed')}"
                           + (f" ({f['detail'][:160]})" if f.get("detail") else "")
                           for f in new.get("failed_checks", [])) or new.get("message", "")
        if new.get("status") == "unstable" and not failed:
            failed = unstable_text(new.get("stability"))
        changes.append(f"expectations: now {new.get('status')} ({failed})")
    what = stability_change(old, new)
    if what:
        changes.append(what)
    return changes


def stability_change(old, new):
    """A cell that became unstable (crashes, timeouts, verdict changes over its
    repeated runs) or stable again; None when both are alike. A flaky cell
    that stays flaky (2/10 crashes, then 3/10) is not a change."""
    def state(cell):
        st = cell.get("stability")
        if not st:
            return None, "1 run"
        return bool(unstable_text(st)), unstable_text(st) or f"{st['runs']}/{st['runs']} alike"
    (was, was_text), (now, now_text) = state(old), state(new)
    if was is None and now is None:
        return None
    if was is None:  # a single run before: a crash then shows as a status change already
        was = bool(old.get("crashed") or old.get("timed_out"))
    if now is None:
        now = bool(new.get("crashed") or new.get("timed_out"))
    if was != now:
        return f"stability: {was_text} -> {now_text}"
    return None


def diff_columns(doc, a, b, tolerance=DEFAULT_TOLERANCE, floor=DEFAULT_FLOOR):
    """Two columns of one matrix (two releases of a tool, e.g. lsan@clang-14 and
    lsan@clang-19), row by row, as diff() compares two dates: (changes, infos)
    with changes = [("A -> B", row label, [what])]."""
    tools_ = doc.get("tools") or []
    for t in (a, b):
        if t not in tools_:
            raise runner.UsageError(f"--between: column '{t}' is not in this matrix (its columns: "
                                    f"{', '.join(tools_) or 'none'})")
    cells = {(c["scenario"], c["variant"], bool(c["canary"]), c["tool"]): c for c in doc["cells"]}
    versions = doc.get("versions", {})
    infos = [f"{t}: {(versions.get(t) or {}).get('release_version') or (versions.get(t) or {}).get('tool_version') or '?'}"
             for t in (a, b)]
    changes = []
    label_ab = f"{a} -> {b}"
    for key in rows_of(doc):
        label = row_label(*key)
        old, new = cells.get((*key, a)), cells.get((*key, b))
        if old is None or new is None:
            infos.append(f"{label}: not run under {a if old is None else b} (not compared)")
            continue
        if scale_text(old) != scale_text(new) and "skipped" not in (old.get("status"), new.get("status")):
            infos.append(f"{label}: scale differs: {a} {scale_text(old)}; {b} {scale_text(new)}")
        what = diff_cells(old, new, tolerance, floor)
        if what:
            changes.append((label_ab, label, what))
    return changes, infos


def _top_moved(old_top, new, tolerance, floor_bytes):
    """Whether the top function really changed: the new top must hold more
    than the old one does now, beyond the same tolerance as bytes (two
    functions of about the same size may swap places run to run, e.g. glibc's
    TLS blocks and heaptrack's crossed realloc records)."""
    new_top = new.get("top_function")
    functions = new.get("functions")
    if old_top is None or new_top is None or functions is None:
        return True
    top = functions.get(new_top, [0, 0])
    was = functions.get(old_top, [0, 0])
    if top[0] or was[0]:
        gap = top[0] - was[0]
        return gap > tolerance * top[0] and gap > floor_bytes
    return top[1] != was[1]  # counted, not sized (threads)


def diff(baseline, doc, tolerance=None, floor=None):
    """(changes, infos): changes = [(tool, row label, [what])] for cells whose
    report moved; infos = version changes and cells not compared."""
    tol = baseline.get("tolerance", {})
    tolerance = tol.get("relative", DEFAULT_TOLERANCE) if tolerance is None else tolerance
    floor = tol.get("payload_floor", DEFAULT_FLOOR) if floor is None else floor
    old = {cell_key(c): c for c in baseline["cells"]}
    new = {cell_key(c): c for c in doc["cells"]}
    changes, infos = [], []
    for tool in sorted(set(baseline.get("versions", {})) | set(doc.get("versions", {}))):
        a = (baseline.get("versions", {}).get(tool) or {})
        b = (doc.get("versions", {}).get(tool) or {})
        for field in ("tool_version", "tool_path"):
            if a.get(field) != b.get(field) and b:
                infos.append(f"{tool}: {field.replace('_', ' ')} {a.get(field)} -> {b.get(field)}")
    for key, a in old.items():
        label = row_label(key[0], key[1], key[3])
        b = new.get(key)
        if b is None:
            infos.append(f"{label} under {key[2]}: not run this time (not compared)")
            continue
        what = diff_cells(a, b, tolerance, floor)
        if what:
            changes.append((key[2], label, what))
    for key in new:
        if key not in old:
            infos.append(f"{row_label(key[0], key[1], key[3])} under {key[2]}: not in the baseline (not compared)")
    return changes, infos


def diff_text(changes, infos):
    out = []
    for line in infos:
        out.append(f"note: {line}")
    by_tool = {}
    for tool, label, what in changes:
        by_tool.setdefault(tool, []).append((label, what))
    for tool, entries in by_tool.items():
        out.append(f"{tool}: {len(entries)} cell{'s' if len(entries) != 1 else ''} changed")
        for label, what in entries:
            for w in what:
                out.append(f"  {label}: {w}")
    if not changes:
        out.append("no change beyond tolerance")
    return "\n".join(out)
