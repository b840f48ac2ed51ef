"""`baseline diff --between debian12 debian13` (or `memcheck@3.19 memcheck@3.24`):
two sets of saved baselines compared cell by cell with the baseline diff's
rules (matrix.diff: verdicts, kinds, bytes beyond tolerance, top function,
expectations), so a tool maintainer sees what a new Valgrind, gperftools,
heaptrack or glibc changed.

A side is either a distribution, whose baselines are baselines/NAME-*.json
(debian12-quick, debian12-zoo-quick; the lane saves debian13-*), or a tool at
a version, TOOL@VERSION, whose baselines are those recorded with that version
of the tool (valgrind-3.19.0 answers memcheck@3.19), its cells only. The two
sides' baselines are paired by what follows the distribution in their names
(debian12-quick with debian13-quick)."""

import json
import re
from pathlib import Path

from scripts.run import runner
from scripts.views import matrix

DISTRIBUTION_PREFIX = re.compile(r"^[a-z]+\d+-")  # debian12-, in debian12-zoo-quick


def is_column(spec):
    """Whether spec is a matrix column (memcheck, lsan@clang-19) rather than a side of saved baselines."""
    try:
        runner.parse_tool(spec, matrix.MATRIX_TOOLS)
        return True
    except runner.UsageError:
        return False


def _load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise runner.UsageError(f"baseline {path}: cannot read it: {e}") from None


def version_matches(recorded, version):
    """'3.19' matches 'valgrind-3.19.0' and 'gperftools 3.19', not '3.190' nor '13.19'."""
    return bool(re.search(rf"(?<![\d.]){re.escape(version)}(?!\d)", recorded or ""))


def side(spec, directory=None):
    """(tool or None, {pair key: (name, doc)}) of the saved baselines spec names."""
    directory = Path(directory or matrix.BASELINES_DIR)
    files = sorted(directory.glob("*.json"))
    found = {}
    if "@" not in spec:
        if not re.fullmatch(r"[A-Za-z0-9][\w.]*", spec):
            raise runner.UsageError(f"--between: '{spec}' is neither a tool column nor a distribution such as debian12")
        for path in files:
            if path.stem.startswith(spec + "-"):
                found[path.stem[len(spec) + 1:]] = (path.stem, _load(path))
        return None, found
    tool, version = spec.split("@", 1)
    if tool not in matrix.MATRIX_TOOLS or not version:
        raise runner.UsageError(f"--between: '{spec}': TOOL@VERSION needs a tool of the matrix "
                                f"({', '.join(matrix.MATRIX_TOOLS)}) and a version, e.g. memcheck@3.19")
    for path in files:
        doc = _load(path)
        recorded = (doc.get("versions", {}).get(tool) or {}).get("tool_version")
        if version_matches(recorded, version):
            found[DISTRIBUTION_PREFIX.sub("", path.stem)] = (path.stem, doc)
    return tool, found


def only_tool(doc, tool):
    """doc with the cells and versions of one tool only (all of them when tool is None)."""
    if tool is None:
        return doc
    return {**doc, "versions": {tool: (doc.get("versions") or {}).get(tool) or {}},
            "cells": [c for c in doc["cells"] if c["tool"] == tool]}


def machine_text(doc):
    m = doc.get("machine") or {}
    return f"{m.get('distribution') or 'distribution not recorded'}, {m.get('glibc') or 'C library not recorded'}"


def diff_between(a, b, directory=None, tolerance=None, floor=None):
    """[(old name, new name, changes, infos)] for every pair of baselines, and
    notes on those without a partner. UsageError when a side names nothing."""
    tool_a, old = side(a, directory)
    tool_b, new = side(b, directory)
    for spec, found in ((a, old), (b, new)):
        if not found:
            where = Path(directory or matrix.BASELINES_DIR)
            hint = (f"no {where}/{spec}-*.json: save them where {spec} runs, e.g. "
                    f"./leaklab lane {spec} baseline save {spec}-quick --scale quick"
                    if "@" not in spec else f"no baseline in {where} recorded {spec}")
            raise runner.UsageError(f"--between {a} {b}: {hint}")
    pairs, notes = [], []
    for key in sorted(set(old) | set(new)):
        if key not in old or key not in new:
            name = (old.get(key) or new.get(key))[0]
            notes.append(f"{name}: no partner on the other side (not compared)")
            continue
        (old_name, old_doc), (new_name, new_doc) = old[key], new[key]
        tool = tool_a or tool_b
        old_doc, new_doc = only_tool(old_doc, tool), only_tool(new_doc, tool)
        changes, infos = matrix.diff(old_doc, new_doc, tolerance, floor)
        infos.insert(0, f"machine: {machine_text(old_doc)} -> {machine_text(new_doc)}")
        pairs.append((old_name, new_name, changes, infos))
    return pairs, notes


def cmd(a, b, directory=None, tolerance=None, floor=None):
    """Print every pair's diff; exit 1 when any cell changed, else 0."""
    pairs, notes = diff_between(a, b, directory, tolerance, floor)
    print(f"diff of {a} against {b} (saved baselines):")
    changed = 0
    for old_name, new_name, changes, infos in pairs:
        print(f"\n== {old_name} -> {new_name}")
        print(matrix.diff_text(changes, infos))
        changed += len(changes)
    for line in notes:
        print(f"note: {line}")
    print(f"\n{changed} cell{'s' if changed != 1 else ''} changed beyond tolerance in {len(pairs)} "
          f"pair{'s' if len(pairs) != 1 else ''} of baselines")
    return runner.EXIT_FAILED if changed else runner.EXIT_OK
