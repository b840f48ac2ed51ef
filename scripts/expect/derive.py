"""A zoo kernel's tool checks, derived from its [truth] and the tools' rules (expected/tools/TOOL.toml)."""

# Each tool column says once, in expected/tools/TOOL.toml, what it reports for
# a kernel with a given truth (threadcheck reports the leaked threads alive,
# memcheck calls the pinned payload still reachable, ...). A kernel's expected
# file then holds its [truth] and only its genuine exceptions: a [[check]]
# with `overrides = "TOOL.ID"`, a `why` and the `measured` figure, which
# replaces the named rule's derived check for the runs it selects.
# /work/notes/derived-checks.md and docs/zoo.md ("Adding a kernel") have the
# long version. The format of a rules file:
#
#   tool = "memcheck"                    required: the file's name, a tool of expected.TOOLS
#   semantics = "..."                    what the tool calls a leak, and what it cannot see
#   docs = "https://..."                 where the tool documents that
#
#   [[rule]]
#   id = "payload_reachable"             required, unique in the file; TOOL.ID names it
#   when = ["pinned_bytes > 0"]          conditions on the variant's truth, all must hold
#                                        (names: WHEN_NAMES, one instance's figures)
#   canary = false                       default false; true: canary runs only; "any": both
#   expect = "tool.bytes(reachable) >= truth.pinned_bytes"
#   why = "..."                          required: the tool's semantics that make it hold
#   tool, allocator, scale               optional selectors as in a [[check]] (tool: a
#                                        release of the file's tool, with its measured why)
#
# In `expect`, truth.leaked_threads, truth.unjoined_threads and
# truth.pinned_bytes become the variant's truth expression (instances written
# params.instances), truth.alloc_site the quoted function name: a derived check
# is an ordinary check of expected.py's language, and reads like one in a
# verdict table.

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from scripts.expect import expected

RULES_FOLDER = "tools"        # expected/tools/, beside expected/zoo/
TOP_KEYS = {"tool", "semantics", "docs", "rule"}
RULE_KEYS = {"id", "when", "canary", "expect", "why", "tool", "allocator", "scale"}
# What a rule's `when` can ask of a variant's truth, at one instance: truth
# figures grow linearly with instances, so a sign or an equality found at one
# instance holds at every scale.
WHEN_NAMES = ("leaked_threads", "unjoined_threads", "pinned_bytes", "leaks", "orphaned", "cause", "alloc_site")
# What a rule's `expect` can take from the truth.
TRUTH_NAMES = ("leaked_threads", "unjoined_threads", "pinned_bytes", "alloc_site")
_TRUTH_REF = re.compile(r"(?<![\w.])truth\.(\w+)(?![\w(])")


@dataclass(frozen=True)
class Rule:
    tool: str                 # the rules file's tool
    id: str
    when: tuple
    expect: str
    why: str
    canary: bool | None = False
    selects: tuple = ()       # the tool selector (the file's tool, or releases of it)
    allocator: tuple = ("any",)
    scale: tuple = ("any",)

    @property
    def name(self):
        return f"{self.tool}.{self.id}"


def rules_dir_for(path):
    """expected/tools/ for an expected file in expected/ or expected/zoo/ (None
    when there is none: a file outside an expected tree derives nothing)."""
    path = Path(path).resolve()
    for parent in (path.parent, path.parent.parent):
        if (parent / RULES_FOLDER).is_dir():
            return parent / RULES_FOLDER
    return None


_CACHE = {}


def load_rules(rules_dir):
    """{tool: [Rule]} of every rules file in rules_dir; ExpectedFileError naming the spot."""
    rules_dir = Path(rules_dir)
    files = sorted(rules_dir.glob("*.toml"))
    key = (str(rules_dir), tuple((p.name, p.stat().st_mtime_ns) for p in files))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = {p.stem: _load_file(p) for p in files}
    return _CACHE[key]


def _load_file(path):
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise expected.ExpectedFileError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise expected.ExpectedFileError(f"{path}: not valid TOML: {e}") from None
    expected._unknown_keys(data, TOP_KEYS, str(path))
    tool = data.get("tool")
    if tool != path.stem or tool not in expected.TOOLS:
        raise expected.ExpectedFileError(f"{path}: tool = {tool!r}: a rules file is named after its tool, "
                                         f"one of {', '.join(expected.TOOLS)}")
    rules, seen = [], set()
    for i, table in enumerate(data.get("rule", []), 1):
        where = f"{path}: rule #{i}"
        expected._unknown_keys(table, RULE_KEYS, where)
        for k in ("id", "expect", "why"):
            if not isinstance(table.get(k), str) or not table[k].strip():
                raise expected.ExpectedFileError(f"{where}: '{k}' is required (a string)")
        rid = table["id"]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", rid) or rid in seen:
            raise expected.ExpectedFileError(f"{where}: id = {rid!r} must be snake_case and unique in the file")
        seen.add(rid)
        when = table.get("when", [])
        when = (when,) if isinstance(when, str) else tuple(when)
        if not all(isinstance(w, str) for w in when):
            raise expected.ExpectedFileError(f"{where}: 'when' must be a string or a list of strings")
        for w in when:
            _check_when(w, f"{where} ({rid})")
        _check_expect(table["expect"], f"{where} ({rid})")
        canary = table.get("canary", False)
        if canary != "any" and not isinstance(canary, bool):
            raise expected.ExpectedFileError(f"{where}: 'canary' must be true, false or \"any\"")
        sel = expected._selector({**table, "tool": table.get("tool", tool)}, where)
        if any(expected.split_tool(t)[0] != tool for t in sel.tool):
            raise expected.ExpectedFileError(f"{where}: tool = {list(sel.tool)}: a rule of {path.name} is {tool}'s "
                                             "(or a release of it)")
        rules.append(Rule(tool=tool, id=rid, when=when, expect=table["expect"], why=table["why"].strip(),
                          canary=None if canary == "any" else canary, selects=sel.tool,
                          allocator=sel.allocator, scale=sel.scale))
    return rules


def _check_when(text, where):
    try:
        _, _, _, refs = expected.parse(text)
    except expected.ExpressionError as e:
        raise expected.ExpectedFileError(f"{where}: when '{text}': {e}") from None
    for ref in refs.values():
        if ref.name not in WHEN_NAMES or ref.args or ref.phase:
            raise expected.ExpectedFileError(f"{where}: when '{text}': '{ref.text}' (names: {', '.join(WHEN_NAMES)})")


def _check_expect(text, where):
    for m in _TRUTH_REF.finditer(text):
        if m.group(1) not in TRUTH_NAMES:
            raise expected.ExpectedFileError(f"{where}: expect '{text}': truth.{m.group(1)} "
                                             f"(known: {', '.join('truth.' + n for n in TRUTH_NAMES)})")
    try:
        expected.parse(_TRUTH_REF.sub("1", text))
    except expected.ExpressionError as e:
        raise expected.ExpectedFileError(f"{where}: expect '{text}': {e}") from None


# ---- derivation ---------------------------------------------------------------

def when_values(truth, tv):
    """The names a rule's `when` reads, for one variant of a truth."""
    figures = {n: tv.value(n, 1) for n in expected.TRUTH_EXPRESSIONS}
    return {**figures, "leaks": int(any(figures.values())), "orphaned": int(bool(tv.orphaned)),
            "cause": truth.cause or "", "alloc_site": tv.alloc_site or ""}


def applies(rule, truth, tv):
    """Whether every condition of the rule holds for the variant (and the
    variant has what the expect line names)."""
    if "truth.alloc_site" in rule.expect and not tv.alloc_site:
        return False
    values = when_values(truth, tv)

    def resolve(ref):
        return values[ref.name]
    return all(expected.evaluate(w, resolve).verdict == "PASS" for w in rule.when)


def _term(text):
    """A truth expression as a term of an expect line: instances becomes
    params.instances; a sum is put in parentheses."""
    text = re.sub(r"(?<![\w.])instances(?!\w)", "params.instances", str(text).strip())
    return text if re.fullmatch(r"[\w.]+(\s*\*\s*[\w.]+)*", text) else f"({text})"


def expand(expect, tv):
    """A rule's expect line for one variant: its truth.X names replaced."""
    def sub(m):
        if m.group(1) == "alloc_site":
            return f'"{tv.alloc_site}"'
        return _term(getattr(tv, m.group(1)))
    return _TRUTH_REF.sub(sub, expect)


def derive(truth, rules):
    """The derived checks of a truth: [Check], every variant x every rule that applies."""
    checks = []
    for variant, tv in truth.variants.items():
        for tool in expected.TOOLS:
            for rule in rules.get(tool, ()):
                if applies(rule, truth, tv):
                    checks.append(expected.Check(
                        expect=expand(rule.expect, tv), variant=(variant,), tool=rule.selects,
                        allocator=rule.allocator, scale=rule.scale, why=f"[{rule.name}] {rule.why}",
                        canary=rule.canary, rule=rule.name))
    return checks


def attach(exp, rules_dir):
    """Adds an expected file's derived checks to it (before its own), each
    suppressed where a check of the file overrides its rule. Raises
    ExpectedFileError for an override naming an unknown rule, or one that
    replaces nothing (the rule derives no check for what it selects)."""
    rules = load_rules(rules_dir) if rules_dir else {}
    known = {r.name for rs in rules.values() for r in rs}
    # Only a zoo kernel's truth (leaked threads, pinned bytes) has tool rules;
    # a retention kernel's (retention.py: bytes by category) has none yet.
    derived = derive(exp.truth, rules) if isinstance(exp.truth, expected.Truth) else []
    for own in exp.checks:
        for name in own.overrides:
            if name not in known:
                raise expected.ExpectedFileError(
                    f"{exp.path}: check #{own.index}: overrides = '{name}': no such rule"
                    + (f" in {rules_dir}" if rules_dir else " (no expected/tools/ beside this file)"))
            hit = [d for d in derived if d.rule == name and _overlaps(own, d)]
            if not hit:
                raise expected.ExpectedFileError(
                    f"{exp.path}: check #{own.index}: overrides = '{name}', but that rule derives no check for "
                    f"variant {'/'.join(own.variant)} tool {'/'.join(own.tool)}: a stale exception (was the truth "
                    "changed?)")
            for d in hit:
                d.suppressed_by.append(own)
    exp.checks[:0] = derived
    return exp


def _overlaps(own, derived):
    """Whether an overriding check and a derived one can apply to the same run."""
    variants = "any" in own.variant or derived.variant[0] in own.variant
    tools = any(expected.split_tool(a)[0] == expected.split_tool(b)[0] and ("@" not in a or "@" not in b or a == b)
                for a in own.tool for b in derived.tool)
    canary = own.canary is None or derived.canary is None or own.canary == derived.canary
    return variants and tools and canary


def main(argv=None):
    """python3 -m scripts.expect.derive KERNEL...: prints each kernel's checks
    (derived and its own, an overridden one marked), for review."""
    import sys
    names = list(sys.argv[1:] if argv is None else argv)
    if not names:
        print("usage: python3 -m scripts.expect.derive KERNEL...", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parents[2] / "expected"
    for name in names:
        try:
            exp = expected.load(expected.path_for(name, root))
        except expected.ExpectedFileError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 1
        print(f"# {name}: {len([c for c in exp.checks if c.rule])} derived, "
              f"{len([c for c in exp.checks if not c.rule])} of its own")
        for c in exp.checks:
            mark = f"{c.rule}" if c.rule else ("overrides " + ", ".join(c.overrides) if c.overrides else "own")
            sup = " (overridden where its exception applies)" if c.suppressed_by else ""
            canary = {None: "", True: " +canary", False: ""}[c.canary]
            print(f"{'/'.join(c.variant):6} {'/'.join(c.tool):12}{canary:8} {c.expect}   [{mark}]{sup}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
