"""Reads a run's events.jsonl: the scenario's JSON-lines events, one object a line."""

import json
from pathlib import Path


def read(path):
    """(events, problems): every line that is a JSON object, in order, and one
    problem per line that is not (or "no events.jsonl" when the file is
    missing). A line still being written by a live scenario is a problem
    like any other; callers that read while the scenario runs ignore them."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return [], [f"no {path.name}"]
    events, problems = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            ev = None
        if isinstance(ev, dict):
            events.append(ev)
        else:
            problems.append(f"{path.name} line {n} is not a JSON object: {line[:80]!r}")
    return events, problems
