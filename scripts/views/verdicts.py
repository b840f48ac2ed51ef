"""How a verdict reads to a learner: which phase each check looks at, and what a PASS means for the variant."""

import re

from scripts.expect import comparer

# A leaky variant that passes did what it was built to do: its checks describe
# the leak. Said in words, so a green PASS next to a leak is not read as "no leak".
DESIGNED = {
    "leaky": "leaked as designed",
    "orphaned": "leaked as designed",   # the same leak, with nothing left that could wake it
    "retained": "kept the freed memory as designed",
}
PHASE_REF = re.compile(r"@([A-Za-z]\w*)")


def designed(variant):
    """'leaked as designed' (or the variant's own words) for a variant built to leak, else None."""
    return DESIGNED.get(variant or "")


def pass_word(verdict, variant):
    """'PASS (leaked as designed)' for a leaky variant's PASS; the verdict itself otherwise."""
    meaning = designed(variant)
    return f"{verdict} ({meaning})" if verdict == "PASS" and meaning else verdict


def phases_of(check):
    """The phases a verdict row reads, in the order it names them: its own phase
    (bare names) and every NAME@PHASE in the expression. [] for a run-level check
    (exit code, memcheck, payload)."""
    text = check.get("check", "")
    named = PHASE_REF.findall(text)
    own = check.get("phase")
    # A bare metric (not a run-level name like payload_bytes) reads the check's own phase.
    names = re.sub(r"\([^()]*\)", "()", re.sub(r'"[^"]*"', '""', text))  # a function's arguments are no metrics
    bare = own and re.search(r"(?<![@\w.])(?!payload_bytes\b|workers\b|exit_code\b|params\.|memcheck\.|tool\.|truth\.)"
                             r"[a-z][a-z_]*(?:\.[a-z_]+)*(?:\(\))?(?!\s*@)(?![\w@(])", names)
    out = ([own] if bare else []) + named
    return list(dict.fromkeys(out))


def phase_text(check):
    phases = phases_of(check)
    if phases:
        return ", ".join(phases)
    # A verdict.json written before rows carried their phase cannot say.
    return "whole run" if "phase" in check else "-"


def terminal_table(rows):
    """The verdict table for the terminal: check, the phase it reads, expected,
    observed, verdict. (The line under it says what a leaky variant's PASS means.)"""
    cells = [("check", "phase", "expected", "observed", "verdict")]
    for r in rows:
        raw = {"check": r.check, **(r.raw or {})}
        cells.append((r.check, phase_text(raw), r.expected, r.observed, r.verdict))
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    out = ["  ".join(f"{c[i]:<{widths[i]}}" for i in range(4)) + "  " + c[4] for c in cells]
    return "\n".join(out + comparer.failure_notes(rows))
