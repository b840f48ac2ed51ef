"""The expected-file format (expected/SCENARIO.toml) and its small, safe expression language."""

# The format, in brief (docs/ has the long version):
#
#   summary = "one line"                 optional
#   [[check]]                            one per expectation
#   variant = "leaky"                    required; a string or a list; "any"
#   tool = "native"                      default native; heapprof, memcheck, heapcheck,
#                                        lsan, asan, tsan, heaptrack, any
#   allocator = "any"                    default any; glibc, tcmalloc, jemalloc
#   scale = "any"                        default any; quick, seed
#   canary = true                        default any: true = only runs with a canary
#                                        planted (--canary, --canary-thread), false = only without
#   phase = "steady"                     phase read by bare snapshot names
#   expect = "threads >= workers + 1"    LEFT OP RIGHT, OP one of >= <= == != > <
#   why = "..."                          printed when the check does not pass
#
#   [[args]]                             scenario options for matching runs
#   tool = "memcheck"                    (same selectors as a check, default any)
#   options = ["--workers", "200"]       options given after `--` win
#
#   [[driver]]                           act on a scenario event
#   on = "listening"                     event name
#   run = ["{build}/scenarios/rw_client", "--port", "{port}"]   optional helper;
#                                        {build} {run_dir} {FIELD of the event}
#                                        {params.NAME} {payload_bytes} {workers}
#   send = "load-done"                   optional word written on the scenario's stdin
#                                        (after `run` exited 0)
#
# Names in expressions: snapshot metrics by dotted path (threads, rss_bytes,
# alloc.in_use_bytes, counters.X), census.largest / groups / total /
# top_state / top_wchan / top_syscall, t (phase time), any of them at another
# phase as NAME@PHASE; run-level start-event fields (payload_bytes, workers,
# canary_bytes, params.NAME), exit_code, wall_s; heapprof.top_function,
# top_share (0..1), top_bytes, total_bytes, bytes(F), flat_bytes(F),
# cum_bytes(F); memcheck.KIND_bytes / KIND_blocks (KIND: definitely_lost,
# indirectly_lost, possibly_lost, still_reachable), error_count,
# bytes_by_function(KIND, F), blocks_by_function(KIND, F); and for every tool
# alike (tool.json): tool.verdict ("reported" / "not reported"),
# tool.top_function, tool.reported_bytes, tool.reported_blocks,
# tool.error_count, tool.exit_code (the process's own), tool.bytes(KIND),
# tool.blocks(KIND), tool.bytes_by_function(KIND, F),
# tool.blocks_by_function(KIND, F), with KIND one of definite, indirect,
# possible, reachable, leaked, in_use, thread (tools.py). A hyphen in an
# option or phase name is written as an underscore (params.hold_ms).

import ast
import keyword
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = ("native", "heapprof", "memcheck", "heapcheck", "lsan", "asan", "tsan", "heaptrack")
ALLOCATORS = ("glibc", "tcmalloc", "jemalloc")
SCALES = ("quick", "seed")

# Keys a [[check]] table may carry; anything else is a typo that would silently
# widen or narrow what the check applies to, so it is refused.
CHECK_KEYS = {"variant", "tool", "allocator", "scale", "canary", "phase", "expect", "why"}
ARGS_KEYS = {"variant", "tool", "allocator", "scale", "options"}
DRIVER_KEYS = {"on", "run", "send", "variant", "tool", "allocator", "scale"}
TOP_KEYS = {"summary", "check", "args", "driver"}

# Functions an expression may call: name -> number of arguments. Every other
# call is rejected by the whitelist.
FUNCTIONS = {
    "heapprof.bytes": 1,
    "heapprof.flat_bytes": 1,
    "heapprof.cum_bytes": 1,
    "memcheck.bytes_by_function": 2,
    "memcheck.blocks_by_function": 2,
    "tool.bytes": 1,
    "tool.blocks": 1,
    "tool.bytes_by_function": 2,
    "tool.blocks_by_function": 2,
}

OPS = {
    ast.GtE: ">=", ast.LtE: "<=", ast.Eq: "==",
    ast.NotEq: "!=", ast.Gt: ">", ast.Lt: "<",
}
_COMPARE = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}


class ExpectedFileError(Exception):
    """The expected file itself is broken (syntax, unknown key, bad value)."""


class ExpressionError(Exception):
    """An expect line is malformed or uses something outside the whitelist."""


class Unresolved(Exception):
    """A name in an expression has no observed value in this run."""


@dataclass(frozen=True)
class Ref:
    """One metric reference: `alloc.in_use_bytes`, `rss_bytes@released`,
    `heapprof.bytes(fill_buffer)@steady`."""
    name: str
    args: tuple = ()
    phase: str | None = None
    text: str = ""

    @property
    def is_bytes(self):
        return self.name.endswith("_bytes") or self.name in (
            "heapprof.bytes", "heapprof.flat_bytes", "heapprof.cum_bytes",
            "memcheck.bytes_by_function", "tool.bytes", "tool.bytes_by_function")


@dataclass
class Check:
    expect: str
    variant: tuple
    tool: tuple = ("native",)
    allocator: tuple = ("any",)
    scale: tuple = ("any",)
    phase: str | None = None
    why: str = ""
    index: int = 0
    canary: bool | None = None   # None: runs with and without a canary

    def applies(self, variant, tool, allocator, scale, canary=None):
        # A canary-specific check applies only when the run's canary is known
        # and the same; an unknown canary (None) matches only "any".
        return (_match(self.variant, variant) and _match(self.tool, tool)
                and _match(self.allocator, allocator) and _match(self.scale, scale)
                and (self.canary is None or self.canary == canary))

    def mentions_exit_code(self):
        return re.search(r"(?<![\w.])exit_code(?![\w.(@])", self.expect) is not None


@dataclass
class Selector:
    """The variant/tool/allocator/scale filter shared by [[args]] and [[driver]]."""
    variant: tuple = ("any",)
    tool: tuple = ("any",)
    allocator: tuple = ("any",)
    scale: tuple = ("any",)

    def applies(self, variant, tool, allocator, scale):
        return (_match(self.variant, variant) and _match(self.tool, tool)
                and _match(self.allocator, allocator) and _match(self.scale, scale))


@dataclass
class ArgsRule:
    selector: Selector
    options: list


@dataclass
class DriverStep:
    """When event `on` appears: run `run` (if any), then write `send` to stdin."""
    selector: Selector
    on: str
    run: list = field(default_factory=list)
    send: str | None = None


@dataclass
class Expected:
    path: Path
    summary: str = ""
    checks: list = field(default_factory=list)
    args: list = field(default_factory=list)
    drivers: list = field(default_factory=list)

    def applicable(self, variant, tool, allocator, scale, canary=None):
        return [c for c in self.checks if c.applies(variant, tool, allocator, scale, canary)]

    def options_for(self, variant, tool, allocator, scale):
        out = []
        for rule in self.args:
            if rule.selector.applies(variant, tool, allocator, scale):
                out.extend(rule.options)
        return out

    def drivers_for(self, variant, tool, allocator, scale):
        return [d for d in self.drivers if d.selector.applies(variant, tool, allocator, scale)]


def _match(accepted, actual):
    # "any" matches everything; an unknown actual value (None) only matches "any".
    return "any" in accepted or actual in accepted


def _choice(table, key, where, allowed, default):
    value = table.get(key, default)
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or \
            not all(isinstance(v, str) for v in values):
        raise ExpectedFileError(f"{where}: '{key}' must be a string or a list of strings")
    if allowed is not None:
        for v in values:
            if v != "any" and v not in allowed:
                raise ExpectedFileError(
                    f"{where}: {key} = '{v}' (accepted: any, {', '.join(allowed)})")
    return tuple(values)


def _selector(table, where, default_tool="any"):
    return Selector(
        variant=_choice(table, "variant", where, None, "any"),
        tool=_choice(table, "tool", where, TOOLS, default_tool),
        allocator=_choice(table, "allocator", where, ALLOCATORS, "any"),
        scale=_choice(table, "scale", where, SCALES, "any"))


def _unknown_keys(table, allowed, where):
    extra = sorted(set(table) - allowed)
    if extra:
        raise ExpectedFileError(
            f"{where}: unknown key(s) {', '.join(extra)} (accepted: {', '.join(sorted(allowed))})")


def load(path):
    """Reads and validates an expected file; raises ExpectedFileError naming the spot."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ExpectedFileError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ExpectedFileError(f"{path}: not valid TOML: {e}") from None
    _unknown_keys(data, TOP_KEYS, str(path))
    exp = Expected(path=path, summary=str(data.get("summary", "")))
    for i, table in enumerate(data.get("check", []), 1):
        where = f"{path}: check #{i}"
        _unknown_keys(table, CHECK_KEYS, where)
        for key in ("variant", "expect"):
            if key not in table:
                raise ExpectedFileError(f"{where}: missing required key '{key}'")
        if not isinstance(table["expect"], str):
            raise ExpectedFileError(f"{where}: 'expect' must be a string")
        sel = _selector(table, where, default_tool="native")
        phase = table.get("phase")
        if phase is not None and not isinstance(phase, str):
            raise ExpectedFileError(f"{where}: 'phase' must be a string")
        canary = table.get("canary", "any")
        if canary != "any" and not isinstance(canary, bool):
            raise ExpectedFileError(f"{where}: 'canary' must be true, false or \"any\"")
        exp.checks.append(Check(
            expect=table["expect"], variant=sel.variant, tool=sel.tool,
            allocator=sel.allocator, scale=sel.scale, phase=phase,
            why=str(table.get("why", "")), index=i, canary=None if canary == "any" else canary))
    for i, table in enumerate(data.get("args", []), 1):
        where = f"{path}: args #{i}"
        _unknown_keys(table, ARGS_KEYS, where)
        opts = table.get("options")
        if not isinstance(opts, list) or not all(isinstance(o, (str, int)) for o in opts):
            raise ExpectedFileError(f"{where}: 'options' must be a list such as [\"--workers\", \"200\"]")
        exp.args.append(ArgsRule(_selector(table, where), [str(o) for o in opts]))
    for i, table in enumerate(data.get("driver", []), 1):
        where = f"{path}: driver #{i}"
        _unknown_keys(table, DRIVER_KEYS, where)
        if not isinstance(table.get("on"), str):
            raise ExpectedFileError(f"{where}: 'on' (the event name that triggers the step) is required")
        run = table.get("run", [])
        if not isinstance(run, list) or not all(isinstance(a, str) for a in run):
            raise ExpectedFileError(f"{where}: 'run' must be a list of strings (argv)")
        send = table.get("send")
        if send is not None and (not isinstance(send, str) or not re.fullmatch(r"[\w.-]+", send)):
            raise ExpectedFileError(f"{where}: 'send' must be one word")
        if not run and send is None:
            raise ExpectedFileError(f"{where}: give 'run', 'send' or both")
        exp.drivers.append(DriverStep(_selector(table, where), table["on"], run, send))
    return exp


# ---- expressions -----------------------------------------------------------

# A string literal, or a metric reference. References start with a letter, so
# `__import__` and friends are never turned into references and fall to the
# AST whitelist below. The look-behind keeps `e6` in `1e6` from matching.
_LEX = re.compile(r"""
    (?P<str>"[^"\\]*"|'[^'\\]*')
  | (?P<ref>(?<![\w.])(?P<name>[A-Za-z]\w*(?:\.[A-Za-z]\w*)*)
        (?:\((?P<args>[^()]*)\))?
        (?:@(?P<phase>[A-Za-z]\w*))?)
""", re.X)
_PLACEHOLDER = "_ref{}_"


def parse(expect):
    """Parses `LEFT OP RIGHT`; returns (left_ast, op, right_ast, refs by placeholder).
    Raises ExpressionError for anything outside the grammar."""
    if not expect.strip():
        raise ExpressionError("empty expect")
    refs = {}
    out = []
    pos = 0
    for m in _LEX.finditer(expect):
        out.append(expect[pos:m.start()])
        pos = m.end()
        if m.group("str"):
            out.append(m.group("str"))
            continue
        name, args, phase = m.group("name"), m.group("args"), m.group("phase")
        if any(keyword.iskeyword(part) for part in name.split(".")):
            raise ExpressionError(f"'{name}': Python keywords are not names here")
        if args is not None and name not in FUNCTIONS:
            raise ExpressionError(
                f"'{name}(...)' is not a known function (known: {', '.join(sorted(FUNCTIONS))})")
        if args is None and name in FUNCTIONS:
            raise ExpressionError(f"'{name}' needs {FUNCTIONS[name]} argument(s) in parentheses")
        argv = ()
        if args is not None:
            argv = tuple(a.strip().strip("\"'") for a in args.split(","))
            if len(argv) != FUNCTIONS[name] or not all(argv):
                raise ExpressionError(f"'{name}' takes {FUNCTIONS[name]} argument(s), got '{args}'")
        key = _PLACEHOLDER.format(len(refs))
        refs[key] = Ref(name, argv, phase, m.group("ref"))
        out.append(key)
    out.append(expect[pos:])
    source = "".join(out)
    # Outside string literals no identifier may start with '_': only our
    # placeholders do, so a user cannot smuggle in a dunder or fake a reference.
    if re.search(r"(?<![\w.])_", _LEX.sub(" ", expect)):
        raise ExpressionError("names may not start with '_'")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"not a valid expression: {e.msg}") from None
    body = tree.body
    if not isinstance(body, ast.Compare) or len(body.ops) != 1:
        raise ExpressionError("expect must be LEFT OP RIGHT with exactly one of >= <= == != > <")
    op = OPS.get(type(body.ops[0]))
    if op is None:
        raise ExpressionError("comparison must be one of >= <= == != > <")
    for side in (body.left, body.comparators[0]):
        _whitelist(side, refs)
    return body.left, op, body.comparators[0], refs


_ALLOWED = (ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
            ast.USub, ast.UAdd, ast.Constant, ast.Name, ast.Load)


def _whitelist(node, refs):
    for sub in ast.walk(node):
        if not isinstance(sub, _ALLOWED):
            raise ExpressionError(f"'{type(sub).__name__}' is not allowed in an expect line")
        if isinstance(sub, ast.Name) and sub.id not in refs:
            raise ExpressionError(f"name '{sub.id}' is not allowed")
        if isinstance(sub, ast.Constant) and (
                isinstance(sub.value, bool) or not isinstance(sub.value, (int, float, str))):
            raise ExpressionError(f"constant {sub.value!r} is not allowed")


def _eval(node, refs, resolve):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        value = resolve(refs[node.id])
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise Unresolved(f"{refs[node.id].text} is not a number or string ({value!r})")
        return value
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, refs, resolve)
        if isinstance(v, str):
            raise ExpressionError("arithmetic on a string")
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a = _eval(node.left, refs, resolve)
        b = _eval(node.right, refs, resolve)
        if isinstance(a, str) or isinstance(b, str):
            raise ExpressionError("arithmetic on a string")
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if b == 0:
            raise Unresolved("division by zero")
        return a / b
    raise ExpressionError(f"'{type(node).__name__}' is not allowed")  # whitelist keeps us from here


@dataclass
class Outcome:
    verdict: str            # PASS, FAIL or ERROR
    op: str | None = None
    left: object = None     # observed
    right: object = None    # expected (right side evaluated)
    detail: str = ""
    is_bytes: bool = False


def evaluate(expect, resolve):
    """Evaluates an expect line; `resolve(Ref)` returns a value or raises Unresolved.
    Never raises: a malformed line or an unresolved name is an ERROR outcome."""
    try:
        left, op, right, refs = parse(expect)
    except ExpressionError as e:
        return Outcome("ERROR", detail=f"malformed expect: {e}")
    left_refs = [refs[n.id] for n in ast.walk(left) if isinstance(n, ast.Name)]
    all_refs = list(refs.values())
    is_bytes = any(r.is_bytes for r in (left_refs or all_refs))
    try:
        lv = _eval(left, refs, resolve)
        rv = _eval(right, refs, resolve)
    except Unresolved as e:
        return Outcome("ERROR", op=op, detail=str(e), is_bytes=is_bytes)
    except ExpressionError as e:
        return Outcome("ERROR", op=op, detail=f"malformed expect: {e}", is_bytes=is_bytes)
    if isinstance(lv, str) != isinstance(rv, str):
        return Outcome("ERROR", op, lv, rv, "compares a string with a number", is_bytes)
    if isinstance(lv, str) and op not in ("==", "!="):
        return Outcome("ERROR", op, lv, rv, "strings compare only with == or !=", is_bytes)
    ok = _COMPARE[op](lv, rv)
    return Outcome("PASS" if ok else "FAIL", op, lv, rv, "", is_bytes)
