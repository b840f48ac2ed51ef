"""Every figure and every quoted line of the scenario pages (docs/scenarios/*.md)
and of docs/zoo.md's prose is accounted for: checked, generated, or cited.

A page's prose is what is left once code blocks, HTML comments, link targets
and generated blocks (`<!-- NAME:begin ... -->` to `<!-- NAME:end -->`, e.g.
the zoo catalog, checked by its own test) are taken out; white space is
squashed, so a line break inside a sentence changes nothing.

Quotes: every inline code span that reads as code is one of
  - C: in scenarios/ or common/ (quotes.pattern: white space and comments
    between tokens are free, `...` elides; `name(ARG, ...)` with parameter
    names stands for a call of `name` whose UPPER_CASE arguments are as written);
  - an expression of the expected files' language (`threads == 1`): it parses,
    and, when it names a check, that check is in expected/;
  - Go (the originals the pages cite): not our code, left alone.

Figures: every number in the prose must lie inside a phrase of the page's
entry in tests/workshop/page_figures.toml, and each entry says what makes its
numbers true:
  kind = "code"      each number is computed from the code or the build:
                     values = { "10,000" = "option('blocked_workers', 'workers', 'seed')" }
  kind = "expected"  a bound an expected file checks: values = { "25" = "bound(...)" }
  kind = "measured"  a range runs measured under load: `run` (leaklab run
                     arguments), `expr` (expected-file language, or a list, one
                     per range in the phrase), `range`, `measured` (how many
                     runs, what load); the phrase must say that range. The
                     ranges are made, and remade when the code changes, with
                     `pages_test.py --measure --survey -n 20` under the heavy
                     lock; `--measure` alone checks one run of each against
                     them (not a CTest test: a 21st run falls outside a 20-run
                     range about 2 times in 21, more under heavier load);
  kind = "cited"     a figure that is not ours (a Go version, an issue, a paper,
                     a count in Go's repository): `source` says whose.
A phrase no longer on the page is an error (the ledger must move with the
page), and so is a number no phrase covers.
"""

import ast
import functools
import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import quotes

REPO = Path(__file__).resolve().parents[2]
LEDGER = Path(__file__).resolve().parent / "page_figures.toml"
PAGES = ("docs/scenarios/blocked_workers.md", "docs/scenarios/delayed_exit.md",
         "docs/scenarios/rw_gateway.md", "docs/zoo.md")
KINDS = ("code", "expected", "measured", "cited")

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
GENERATED = re.compile(r"<!--\s*([\w-]+):begin.*?<!--\s*\1:end\s*-->", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK_TARGET = re.compile(r"\]\([^)\s]*\)")
SPAN = re.compile(r"(`+)(.+?)\1")
# A number, or a range of two ("73-185", "0.03–0.27", "84 to 164"); not part
# of a word (int64, x86_64), an issue or pull number (#10214), a version
# (2.36 is one number), a path or an option (--race-window-us 0 is in a span).
NUMBER = re.compile(r"(?<![\w.#/$@-])(\d(?:[\d,]*\d)?(?:\.\d+)?(?:\s?(?:-|–)\s?\d(?:[\d,]*\d)?(?:\.\d+)?)?)(?![\w])")
GO_SPAN = re.compile(r"\bgo func|<-|\bmake\(chan|\bdebug\.|\bruntime\.|\bsync\.|\bcontext\.|\btime\.After"
                     r"|\bpl\.lock|\bGosched|^case |\bselect \{")
EXPRESSION_SPAN = re.compile(r"^(?:[a-z_][\w.]*(?:\([\w, ]*\))?|==)\s*(?:==|<=|>=|!=|<|>)?")
CALL = re.compile(r"^([A-Za-z_]\w*)\((.*)\)$")


@dataclass
class Prose:
    doc: str
    text: str                 # squashed prose, code spans kept
    blank: str                # the same with every code span's content blanked (same length)
    spans: list = field(default_factory=list)   # (start, span text)


def prose(doc, markdown):
    """The prose of a page (see the module's comment)."""
    text = FENCE.sub("\n\n", markdown)
    text = GENERATED.sub(" ", text)
    text = COMMENT.sub(" ", text)
    text = LINK_TARGET.sub("]", text)
    text = re.sub(r"\s+", " ", text)
    spans, blank, last = [], [], 0
    for m in SPAN.finditer(text):
        spans.append((m.start(), m.group(2).strip()))
        blank.append(text[last:m.start()] + "`" * len(m.group(1)) + "\0" * len(m.group(2)) + m.group(1))
        last = m.end()
    blank.append(text[last:])
    return Prose(doc, text, "".join(blank), spans)


# The page's own labels, not figures: a step it refers to, "(3)", and the
# number of a list item, "2. **Shut the socket down**".
LABEL = re.compile(r"\((\d)\)|(?<![\w.,])(\d)\. (?=[*`A-Z])")


def numbers(p):
    """[(position, token)] of every number in the prose (code spans and labels left out)."""
    labels = {m.start(1) if m.group(1) else m.start(2) for m in LABEL.finditer(p.blank)}
    return [(m.start(1), m.group(1)) for m in NUMBER.finditer(p.blank) if m.start(1) not in labels]


# ---- quotes --------------------------------------------------------------------

def span_kind(span):
    """'go', 'expression', 'c' or None (a name, a command, an option, a path: not checked here)."""
    if GO_SPAN.search(span):
        return "go"
    if not quotes.C_LIKE.search(span) or span.startswith(("./", "--")) or quotes.FILE_RE.fullmatch(span):
        return None
    if re.match(r"(census|counters|alloc|truth|memcheck|tool)\.", span):
        return "expression"
    if re.search(r"(==|<=|>=|!=)", span) and not re.search(r"->|;|\bwhile\b|\bif\b|!\w", span):
        return "expression"
    return "c"


def c_span_ok(span, code):
    """A C span is in the code (comments between its tokens allowed), or is a call
    written with parameter names whose UPPER_CASE arguments the code passes."""
    rx = quotes.pattern(span)
    if rx is None:
        return True
    loose = re.compile(rx.pattern.replace(r"\s+", r"(?:\s|/\*.*?\*/)+"), re.S)
    if any(rx.search(t) or loose.search(t) for t in code.values()):
        return True
    call = CALL.match(span.rstrip(";"))
    if call:
        name, args = call.group(1), [a.strip() for a in call.group(2).split(",") if a.strip()]
        fixed = [a for a in args if re.fullmatch(r"[A-Z][A-Z0-9_]+", a)]
        named = all(re.fullmatch(r"[a-z_]\w*|[A-Z][A-Z0-9_]+|\d+|\.\.\.", a) for a in args)
        if named:
            rx = re.compile(r"\b" + re.escape(name) + r"\s*\(" + "".join(rf"[^;]*?\b{re.escape(f)}\b" for f in fixed))
            return any(rx.search(t) for t in code.values())
    return False


def expression_ok(span, checks):
    """An expression span: it parses in the expected files' language (a bare
    `== workers` as the right side of one), and a whole check is one of expected/'s."""
    from scripts.expect import expected
    text = span if not span.startswith("==") else f"threads {span}"
    # A bare metric reads as one side of a check; the zoo's [truth] names
    # (`threads == 1 + leaked_threads`) and a placeholder function F as numbers and a name.
    text = re.sub(r"\bF\b", "worker", re.sub(r"\bleaked_threads\b", "1", text))
    if not re.search(r"==|<=|>=|!=|<|>", text):
        text += " >= 0"
    try:
        expected.parse(text)
    except expected.ExpressionError:
        return False
    squashed = re.sub(r"\s+", " ", span)
    if " == " in squashed and not span.startswith("==") and re.match(r"^[a-z_][\w.]*\s", squashed):
        # A whole check: it is one of the expected files' (or the truth's derived rows).
        return any(squashed in c for c in checks) or "leaked_threads" in squashed
    return True


@functools.lru_cache(maxsize=1)
def expected_checks():
    """Every `expect = "..."` of expected/ and what the [truth] derives, white space squashed."""
    out = []
    for path in (REPO / "expected").rglob("*.toml"):
        out += [re.sub(r"\s+", " ", m) for m in re.findall(r'expect\s*=\s*["\']([^"\']+)', path.read_text())]
    return tuple(out)


def quote_problems(p, code, checks=None):
    checks = expected_checks() if checks is None else checks
    out = []
    for pos, span in p.spans:
        kind = span_kind(span)
        if kind == "c" and not c_span_ok(span, code):
            out.append(f"{p.doc}: `{span}` is not in scenarios/ or common/ ({_near(p, pos)})")
        elif kind == "expression" and not expression_ok(span, checks):
            out.append(f"{p.doc}: `{span}` is no check of expected/ ({_near(p, pos)})")
    return out


def _near(p, pos):
    return "near \u201c" + p.text[max(0, pos - 30):pos + 30].strip() + "\u201d"


# ---- figures -------------------------------------------------------------------

@dataclass
class Entry:
    doc: str
    text: str
    kind: str
    values: dict = field(default_factory=dict)
    source: str = ""
    run: list = field(default_factory=list)
    expr: object = ""        # one expression, or a list (one per range, in the phrase's order)
    range: list = field(default_factory=list)
    measured: str = ""

    def exprs(self):
        return [self.expr] if isinstance(self.expr, str) else list(self.expr)

    def ranges(self):
        return [self.range] if self.range and not isinstance(self.range[0], list) else list(self.range)

    @property
    def squashed(self):
        return re.sub(r"\s+", " ", self.text).strip()


def load_ledger(path=LEDGER):
    data = tomllib.loads(Path(path).read_text())
    out = []
    for i, e in enumerate(data.get("figure", [])):
        unknown = set(e) - {"doc", "text", "kind", "values", "source", "run", "expr", "range", "measured"}
        if unknown or e.get("kind") not in KINDS or not e.get("doc") or not e.get("text"):
            raise ValueError(f"{path}: [[figure]] #{i + 1} ({e.get('text', '?')[:40]}): needs doc, text and "
                             f"kind (one of {', '.join(KINDS)}); unknown keys {sorted(unknown)}")
        out.append(Entry(**e))
    return out


def _same_range(said, want):
    return said == want or (not isinstance(said, tuple) and want[0] == want[1] == said)


def parse_number(token):
    """'10,000' -> 10000; '0.03–0.27' -> (0.03, 0.27)."""
    parts = re.split(r"\s?(?:-|–)\s?", token)
    nums = [float(x.replace(",", "")) for x in parts]
    return nums[0] if len(nums) == 1 else tuple(nums)


def figure_problems(p, entries, resolve):
    """Numbers no phrase covers, phrases not on the page, and values that are not what
    their source says (`resolve(expr)` computes a code or expected value)."""
    out, covered = [], []
    for e in (e for e in entries if e.doc == p.doc):
        starts = [m.start() for m in re.finditer(re.escape(e.squashed), p.text)]
        if not starts:
            out.append(f"{p.doc}: the ledger's phrase \u201c{e.squashed[:70]}\u201d is not on the page "
                       "(page_figures.toml moves with the page)")
            continue
        covered += [(s, s + len(e.squashed)) for s in starts]
        inside = [tok for pos, tok in numbers(p) if starts[0] <= pos < starts[0] + len(e.squashed)]
        out += _entry_problems(e, inside, resolve)
    for pos, tok in numbers(p):
        if not any(a <= pos < b for a, b in covered):
            out.append(f"{p.doc}: {tok} is neither checked, generated nor cited ({_near(p, pos)}): "
                       "add it to tests/workshop/page_figures.toml, or take it out")
    return out


def _entry_problems(e, tokens, resolve):
    where = f"{e.doc}: \u201c{e.squashed[:60]}\u201d"
    if e.kind == "cited":
        return [] if e.source.strip() else [f"{where}: a cited figure says whose (source = ...)"]
    if e.kind == "measured":
        if not (e.run and e.exprs() and len(e.ranges()) == len(e.exprs()) and e.measured):
            return [f"{where}: a measured figure needs run, expr, range = [LO, HI] (or lists of them) and measured"]
        # The phrase's numbers not in `values` are the measured ranges, in order.
        said = [t for t in tokens if t not in e.values]
        want = [tuple(float(x) for x in r) for r in e.ranges()]
        if len(said) != len(want) or not all(_same_range(parse_number(s), w) for s, w in zip(said, want)):
            return [f"{where}: the page says {', '.join(said) or 'no range'}, the measured range"
                    f"{'s are' if len(want) > 1 else ' is'} {', '.join(f'{lo:g}-{hi:g}' for lo, hi in want)}"]
        tokens = [t for t in tokens if t in e.values]
    out = []
    for tok in tokens:
        if tok not in e.values:
            out.append(f"{where}: {tok} has no source in values = {{...}}")
    for tok, expr in e.values.items():
        if tok not in tokens:
            out.append(f"{where}: values names {tok}, which the phrase does not say")
            continue
        try:
            got = resolve(expr)
        except Exception as err:  # noqa: BLE001  a resolver that cannot answer is the page's problem
            out.append(f"{where}: {tok}: {expr}: {type(err).__name__}: {err}")
            continue
        said = parse_number(tok)
        if isinstance(said, tuple) or abs(float(got) - said) > 1e-9 * max(1.0, abs(said)):
            out.append(f"{where}: the page says {tok}, {expr} is {got:,}")
    return out


# ---- what a code or expected value is ---------------------------------------------

class Resolver:
    """The functions a `values` expression may call."""

    def __init__(self, repo=REPO, build=None):
        self.repo = Path(repo)
        self.build = Path(build or os.environ.get("LEAKLAB_BUILD_DIR") or self.repo / "build")

    def __call__(self, expr):
        tree = ast.parse(expr, mode="eval")
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in self.names():
                raise NameError(f"{node.id} (only {', '.join(sorted(self.names()))})")
            if isinstance(node, (ast.Attribute, ast.Lambda, ast.Subscript)):
                raise ValueError(f"{type(node).__name__} is not allowed")
        return eval(compile(tree, "<values>", "eval"), {"__builtins__": {}}, self.names())  # noqa: S307

    def names(self):
        return {"option": self.option, "const": self.const, "bound": self.bound, "start": self.start,
                "pyconst": self.pyconst, "zoo_count": self.zoo_count,
                "count": self.count, "grab": self.grab, "baseline_len": self.baseline_len, "expected_option": self.expected_option,
                "baseline": self.baseline, "min": min, "max": max, "round": round}

    @functools.lru_cache(maxsize=None)
    def help_text(self, scenario):
        binary = self.build / "scenarios" / scenario
        return subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30).stdout

    def option(self, scenario, name, scale):
        """An option's default at a scale, as the binary's --help gives it."""
        text = self.help_text(scenario)
        m = re.search(rf"^\s*--{re.escape(name.replace('_', '-'))}\s.*?default (\d+) / (\d+);", text, re.M | re.S)
        if not m:
            raise LookupError(f"{scenario} --help has no default for --{name}")
        return int(m.group(1 if scale == "seed" else 2))

    @functools.lru_cache(maxsize=None)
    def start(self, scenario, key, *args):
        """A figure of the start event a run of the built binary writes with these
        options (payload_bytes: what the scenario itself declares), e.g.
        start('delayed_exit', 'payload_bytes', '--workers', '1', '--hold-ms', '0')."""
        binary = self.build / "scenarios" / scenario
        done = subprocess.run([str(binary), "--scale", "quick", *args], capture_output=True, text=True, timeout=60)
        first = json.loads(done.stdout.splitlines()[0])
        value = first
        for k in key.split("."):
            value = value[k]
        return value

    def const(self, path, name):
        """A `#define NAME value` (or `NAME = value` of an enum) of a source file, its arithmetic done."""
        text = (self.repo / path).read_text()
        m = (re.search(rf"^\s*#\s*define\s+{re.escape(name)}\s+\(?([^\n/]*?)\)?\s*(?:/[/*].*)?$", text, re.M)
             or re.search(rf"\b{re.escape(name)}\s*=\s*([^,;\n]+)", text))
        if not m:
            raise LookupError(f"{path} defines no {name}")
        value = re.sub(r"(?<=\d)[uUlL]+\b", "", m.group(1))
        node = ast.parse(value.strip(), mode="eval")
        if not all(isinstance(n, (ast.Expression, ast.BinOp, ast.Constant, ast.Mult, ast.Add, ast.Sub,
                                  ast.Div, ast.FloorDiv)) for n in ast.walk(node)):
            raise ValueError(f"{path}: {name} = {value!r} is not plain arithmetic")
        return eval(compile(node, path, "eval"), {"__builtins__": {}})  # noqa: S307

    def bound(self, scenario, pattern, **where):
        """The number a check of expected/SCENARIO.toml compares with: the first group of
        `pattern` in the `expect` of the one check matching `where` (variant, allocator, phase, scale)."""
        from scripts.expect import expected
        exp = expected.load(expected.path_for(scenario, self.repo / "expected"))
        hits = []
        for c in exp.checks:
            if any(str(v) not in _words(getattr(c, k, None)) for k, v in where.items()):
                continue
            m = re.search(pattern, c.expect)
            if m:
                hits.append(float(m.group(1)))
        if len(set(hits)) != 1:
            raise LookupError(f"{len(hits)} checks of {scenario} match {pattern!r} {where}: {hits}")
        return hits[0]

    def expected_option(self, scenario, option, **where):
        """The value an expected file's [[args]] give an option (for a variant or scale)."""
        import tomllib as toml
        from scripts.expect import expected
        data = toml.loads(expected.path_for(scenario, self.repo / "expected").read_text())
        for args in data.get("args", []):
            if all(args.get(k) == v for k, v in where.items()) and option in args.get("options", []):
                opts = args["options"]
                return float(opts[opts.index(option) + 1])
        raise LookupError(f"no [[args]] of {scenario} {where} sets {option}")

    def baseline(self, name, scenario, variant, tool, key):
        """A figure of a saved baseline's cell (baselines/NAME.json): key is a dotted path."""
        data = json.loads((self.repo / "baselines" / f"{name}.json").read_text())
        cells = [c for c in data["cells"] if (c["scenario"], c["variant"], c["tool"]) == (scenario, variant, tool)
                 and not c.get("canary")]
        if len(cells) != 1:
            raise LookupError(f"{len(cells)} cells {scenario}.{variant}.{tool} in baselines/{name}.json")
        value = cells[0]
        for k in key.split("."):
            value = value[int(k)] if isinstance(value, list) else value[k]
        return value

    def count(self, path, pattern):
        """How many times a regular expression matches in a source file (a table's rows)."""
        return len(re.findall(pattern, (self.repo / path).read_text()))

    def grab(self, path, pattern):
        """The number a regular expression's first group finds in a source file."""
        m = re.search(pattern, (self.repo / path).read_text())
        if not m:
            raise LookupError(f"{path}: no match for {pattern!r}")
        return float(m.group(1))

    def baseline_len(self, name, key):
        """How many entries a saved baseline lists under `key` (scenarios, tools)."""
        return len(json.loads((self.repo / "baselines" / f"{name}.json").read_text())[key])

    def pyconst(self, module, name):
        """A constant of the scripts package, e.g. pyconst('scripts.expect.comparer', 'TRUTH_HEAP_NOISE')."""
        import importlib
        value = importlib.import_module(module)
        for part in name.split("."):   # a class attribute: RunSpec.interval_ms
            value = getattr(value, part)
        return value

    def zoo_count(self, origin_prefix):
        """How many zoo kernels (expected/zoo/*.toml) have a [truth] origin starting so ("GoKer")."""
        import tomllib as toml
        return sum(toml.loads(f.read_text()).get("truth", {}).get("origin", "").startswith(origin_prefix)
                   for f in (self.repo / "expected" / "zoo").glob("*.toml"))


def _words(value):
    if value is None:
        return ("None",)
    return tuple(str(v) for v in value) if isinstance(value, (tuple, list)) else (str(value),)


def problems(repo=REPO, entries=None, resolve=None, pages=PAGES, texts=None, code=None):
    """Every problem of every page: quotes first, then figures."""
    entries = load_ledger() if entries is None else entries
    resolve = resolve or Resolver(repo)
    code = quotes.sources(Path(repo)) if code is None else code
    out = []
    for doc in pages:
        text = texts[doc] if texts and doc in texts else (Path(repo) / doc).read_text()
        p = prose(doc, text)
        out += quote_problems(p, code)
        out += figure_problems(p, entries, resolve)
    return out
