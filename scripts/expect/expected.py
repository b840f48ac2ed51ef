"""The expected-file format (expected/SCENARIO.toml) and its small, safe expression language."""

# The format, in brief (docs/ has the long version):
#
#   summary = "one line"                 optional
#   [[check]]                            one per expectation
#   variant = "leaky"                    required; a string or a list; "any"
#   tool = "native"                      default native; heapprof, memcheck, heapcheck,
#                                        lsan, asan, tsan, heaptrack, any; a release of a
#                                        sanitizer: lsan@clang-14 (only that release;
#                                        plain lsan selects every release); a check or
#                                        [[args]] that names a release needs a `why`
#                                        with the measured evidence
#   allocator = "any"                    default any; glibc, tcmalloc, jemalloc
#   scale = "any"                        default any; quick, seed
#   canary = true                        default any: true = only runs with a canary
#                                        planted (--canary, --canary-thread), false = only without
#   phase = "steady"                     phase read by bare snapshot names
#   expect = "threads >= workers + 1"    LEFT OP RIGHT, OP one of >= <= == != > <
#   why = "..."                          printed when the check does not pass
#   overrides = "memcheck.payload_reachable"   in a file with [truth]: this check is an
#                                        exception to a tool's rule (expected/tools/TOOL.toml)
#                                        and replaces that rule's derived check wherever
#                                        it applies; needs `measured` (the figure seen)
#   measured = "quick, Debian 12: ..."   the measured figure behind an exception
#
#   [[args]]                             scenario options for matching runs
#   tool = "memcheck"                    (same selectors as a check, default any)
#   options = ["--workers", "200"]       options given after `--` win
#   why = "..."                          optional; required when tool names a release
#
#   [[driver]]                           act on a scenario event, once
#   on = "listening"                     event name
#   phase = "exited"                     optional: only that event at this phase (a hold's;
#                                        a hold for the driver no step acts on stops the run, 99)
#   memstats = true                      optional, on a hold: run `leaklab memstats PID --json`
#                                        into memstats-PHASE.json (MEMSTATS_LOOK; a failed
#                                        look leaves none), instead of `run`
#   run = ["{build}/scenarios/rw_client", "--port", "{port}"]   optional helper;
#                                        {build} {run_dir} {FIELD of the event}
#                                        {python} {leaklab} (scripts/leaklab.py)
#                                        {params.NAME} {payload_bytes} {workers}
#   send = "load-done"                   optional word written on the scenario's stdin
#                                        (after `run` exited 0)
#
#   [truth]                              a zoo kernel's ground truth, per variant: leaked
#                                        threads, wait sites, pinned bytes (see "The zoo's
#                                        [truth]" at the end of this file). Its tool checks
#                                        follow from it and expected/tools/TOOL.toml
#                                        (scripts/expect/derive.py): load() adds them
#
# Names in expressions: snapshot metrics by dotted path (threads, rss_bytes,
# alloc.in_use_bytes, counters.X), census.largest / groups / total /
# top_state / top_wchan / top_syscall, the census by stack: census.top_frame
# (the first frame outside libc, the loader and threadcheck of the largest
# group's stack, e.g. "writer_wait"), census.largest_stack (that stack,
# " <- "-joined: "writer_wait <- writer_leaky <- start_thread <- __clone3"),
# census.count_at(F) (threads in groups whose stack holds function F), t
# (phase time), any of them at another phase as NAME@PHASE; run-level start-event fields (payload_bytes, workers,
# canary_bytes, params.NAME), exit_code, wall_s; heapprof.top_function,
# top_share (0..1), top_bytes, total_bytes, bytes(F), flat_bytes(F),
# cum_bytes(F); memcheck.KIND_bytes / KIND_blocks (KIND: definitely_lost,
# indirectly_lost, possibly_lost, still_reachable), error_count,
# bytes_by_function(KIND, F), blocks_by_function(KIND, F); and for every tool
# alike (tool.json): tool.verdict ("reported" / "not reported"),
# tool.top_function, tool.reported_bytes, tool.reported_blocks,
# tool.error_count, tool.exit_code (the process's own), tool.cause (helgrind,
# drd, tsan: the cause they name, a word of CAUSES or "none"), tool.reports(CAUSE)
# (helgrind, drd, tsan: how many of their reports name CAUSE, a word of CAUSES,
# data_race, bad_unlock or api_misuse; 0 when none does), tool.bytes(KIND),
# tool.blocks(KIND), tool.bytes_by_function(KIND, F),
# tool.blocks_by_function(KIND, F), with KIND one of definite, indirect,
# possible, reachable, leaked, in_use, thread (tools.py); memstats.PATH at a
# phase the run was held at (memstats-PHASE.json, a [[driver]] on "hold" wrote
# it: go.HeapInuse, rss_bytes, items_sum, remainder) and hold.PATH (the hold
# event: hold.alloc.in_use_bytes). A hyphen in an
# option or phase name is written as an underscore (params.hold_ms).

import ast
import keyword
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from scripts.tools.tools import RELEASE, RELEASE_TOOLS, release_tool_error, split_tool  # noqa: F401

TOOLS = ("native", "heapprof", "memcheck", "heapcheck", "lsan", "asan", "tsan", "heaptrack", "threadcheck", "orphans",
         "helgrind", "drd", "massif", "dhat")
ALLOCATORS = ("glibc", "tcmalloc", "jemalloc")
SCALES = ("quick", "seed")
# TOOL@RELEASE (lsan@clang-19): the syntax is the tool registry's (scripts/tools/tools.py),
# re-exported here because the expected-file language accepts it.

# Keys a [[check]] table may carry; anything else is a typo that would silently
# widen or narrow what the check applies to, so it is refused.
CHECK_KEYS = {"variant", "tool", "allocator", "scale", "canary", "phase", "expect", "why", "overrides", "measured"}
ARGS_KEYS = {"variant", "tool", "allocator", "scale", "options", "why"}
DRIVER_KEYS = {"on", "phase", "memstats", "run", "send", "variant", "tool", "allocator", "scale"}
# A [[driver]]'s `memstats = true`: memstats of the held process into memstats-PHASE.json, which
# the comparer reads as memstats.PATH (and a retention truth's rows read); a failed look leaves
# no file, so the checks that read it come out ERROR.
MEMSTATS_LOOK = ["sh", "-c", '''"$0" "$1" memstats "$2" --json > "$3/memstats-$4.json" || { echo "memstats of PID $2 at $4 failed" >&2; rm -f "$3/memstats-$4.json"; }
exit 0''', "{python}", "{leaklab}", "{pid}", "{run_dir}", "{phase}"]
TOP_KEYS = {"summary", "check", "args", "driver", "truth"}

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
    "tool.reports": 1,
    "census.count_at": 1,
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
    rule: str = ""               # derived from this tool rule (TOOL.ID; derive.py), "" when written
    overrides: tuple = ()        # rules (TOOL.ID) this written check is an exception to
    measured: str = ""           # an exception's measured figure
    suppressed_by: list = field(default_factory=list)   # a derived check: the exceptions replacing it

    def applies(self, variant, tool, allocator, scale, canary=None):
        # A canary-specific check applies only when the run's canary is known
        # and the same; an unknown canary (None) matches only "any". A derived
        # check gives way wherever an exception to its rule applies.
        return (_match(self.variant, variant) and _match_tool(self.tool, tool)
                and _match(self.allocator, allocator) and _match(self.scale, scale)
                and (self.canary is None or self.canary == canary)
                and not any(o.applies(variant, tool, allocator, scale, canary) for o in self.suppressed_by))

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
        return (_match(self.variant, variant) and _match_tool(self.tool, tool)
                and _match(self.allocator, allocator) and _match(self.scale, scale))


@dataclass
class ArgsRule:
    selector: Selector
    options: list
    preload: tuple = ()   # libraries the run starts with (runner.PRELOADS); only a [truth] adds them
    fixed_layout: bool = False   # start without address-space randomization; only a [truth] asks


@dataclass
class DriverStep:
    """When event `on` appears (its phase `phase`, if given): run `run` (if any), then write
    `send` to stdin. Each step acts once."""
    selector: Selector
    on: str
    run: list = field(default_factory=list)
    send: str | None = None
    phase: str | None = None


@dataclass
class Expected:
    path: Path
    summary: str = ""
    checks: list = field(default_factory=list)
    args: list = field(default_factory=list)
    drivers: list = field(default_factory=list)
    truth: "Truth | None" = None   # a zoo kernel's [truth] table (see "The zoo's [truth]" below)

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

    def preloads_for(self, variant, tool, allocator, scale):
        return [lib for rule in self.args if rule.selector.applies(variant, tool, allocator, scale)
                for lib in rule.preload]

    def fixed_layout_for(self, variant, tool, allocator, scale):
        return any(rule.fixed_layout for rule in self.args if rule.selector.applies(variant, tool, allocator, scale))


def _match(accepted, actual):
    # "any" matches everything; an unknown actual value (None) only matches "any".
    return "any" in accepted or actual in accepted


def _match_tool(accepted, actual):
    """A tool selector: "lsan" selects every release of lsan (a run of
    lsan@clang-14 or lsan@gcc-12), "lsan@clang-14" that release only."""
    if _match(accepted, actual):
        return True
    return bool(actual) and "@" in actual and actual.split("@", 1)[0] in accepted


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


def _tool_choice(table, where, default):
    values = _choice(table, "tool", where, None, default)
    for v in values:
        if v == "any" or v in TOOLS:
            continue
        why = release_tool_error(v) if "@" in v else None
        if why or "@" not in v:
            raise ExpectedFileError(f"{where}: tool = '{v}' (accepted: any, {', '.join(TOOLS)}, or TOOL@RELEASE "
                                    f"such as lsan@clang-19{': ' + why if why else ''})")
    if any("@" in v for v in values) and not str(table.get("why", "")).strip():
        raise ExpectedFileError(f"{where}: names a release ({', '.join(v for v in values if '@' in v)}): "
                                "give a `why` with the measured evidence that this release differs")
    return values


def _selector(table, where, default_tool="any"):
    return Selector(
        variant=_choice(table, "variant", where, None, "any"),
        tool=_tool_choice(table, where, default_tool),
        allocator=_choice(table, "allocator", where, ALLOCATORS, "any"),
        scale=_choice(table, "scale", where, SCALES, "any"))


def _unknown_keys(table, allowed, where):
    extra = sorted(set(table) - allowed)
    if extra:
        raise ExpectedFileError(
            f"{where}: unknown key(s) {', '.join(extra)} (accepted: {', '.join(sorted(allowed))})")


def load(path, rules_dir=None):
    """Reads and validates an expected file; raises ExpectedFileError naming the spot.
    A file with [truth] also gets the checks derived from it (derive.py) by the
    rules in `rules_dir` (default: the expected/tools/ of the file's tree)."""
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
        overrides = table.get("overrides", ())
        overrides = (overrides,) if isinstance(overrides, str) else tuple(overrides)
        if not all(isinstance(o, str) and re.fullmatch(r"\w+\.\w+", o) for o in overrides):
            raise ExpectedFileError(f"{where}: 'overrides' names rules as TOOL.ID (memcheck.payload_reachable)")
        if overrides and not (str(table.get("why", "")).strip() and str(table.get("measured", "")).strip()):
            raise ExpectedFileError(f"{where}: an exception (overrides) needs a `why` and the `measured` figure")
        exp.checks.append(Check(
            expect=table["expect"], variant=sel.variant, tool=sel.tool,
            allocator=sel.allocator, scale=sel.scale, phase=phase,
            why=str(table.get("why", "")), index=i, canary=None if canary == "any" else canary,
            overrides=overrides, measured=str(table.get("measured", ""))))
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
        if "memstats" in table:
            if table["memstats"] is not True or run or table["on"] != "hold":
                raise ExpectedFileError(f"{where}: 'memstats = true' takes the place of 'run', on = \"hold\"")
            run = list(MEMSTATS_LOOK)
        send = table.get("send")
        if send is not None and (not isinstance(send, str) or not re.fullmatch(r"[\w.-]+", send)):
            raise ExpectedFileError(f"{where}: 'send' must be one word")
        if not run and send is None:
            raise ExpectedFileError(f"{where}: give 'run', 'send' or both")
        phase = table.get("phase")
        if phase is not None and not isinstance(phase, str):
            raise ExpectedFileError(f"{where}: 'phase' must be a string")
        exp.drivers.append(DriverStep(_selector(table, where), table["on"], run, send, phase))
    if "truth" in data:
        from scripts.expect import retention  # a retention kernel's [truth] names its phase (retention.py)
        if retention.is_retention(data["truth"]):
            exp.truth = retention.load_truth(data["truth"], str(path))
            retention.attach_native_runs(exp)
        else:
            exp.truth = load_truth(data["truth"], str(path))
    if exp.truth is not None or any(c.overrides for c in exp.checks):
        from scripts.expect import derive  # derive builds on this module
        derive.attach(exp, rules_dir if rules_dir is not None else derive.rules_dir_for(path))
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
        with warnings.catch_warnings():  # "1if x": Python warns and guesses; an expect line is refused
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"not a valid expression: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # a NUL byte; nesting past the parser's stack
        raise ExpressionError(f"not a valid expression: {e}") from None
    if _depth(tree) > MAX_DEPTH:  # _eval recurses once per level (fuzz/expected found 1,000 unary '+')
        raise ExpressionError(f"nested more than {MAX_DEPTH} deep")
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


MAX_DEPTH = 100  # far beyond any real expect line, far below the interpreter's recursion limit


def _depth(tree):
    """How deep the tree nests, counted without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


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
    except OverflowError as e:  # an int past a float's range met a float (fuzz/expected found it)
        return Outcome("ERROR", op=op, detail=f"arithmetic overflow: {e}", is_bytes=is_bytes)
    if isinstance(lv, str) != isinstance(rv, str):
        return Outcome("ERROR", op, lv, rv, "compares a string with a number", is_bytes)
    if isinstance(lv, str) and op not in ("==", "!="):
        return Outcome("ERROR", op, lv, rv, "strings compare only with == or !=", is_bytes)
    ok = _COMPARE[op](lv, rv)
    return Outcome("PASS" if ok else "FAIL", op, lv, rv, "", is_bytes)


# ---- the zoo's [truth] -------------------------------------------------------
#
# A zoo kernel's expected file (expected/zoo/KERNEL.toml) states what the
# kernel leaks, written from its code and its Go original before any tool
# is run, in a form a program can read:
#
#   [truth]
#   pattern = "one line: the leak pattern"
#   origin = "GoKer cockroach#10214" / "LeakProf NCastLeak" / "C only"
#   go_test = "Cockroach10214"           the Go runtime's test of the original (optional)
#   go_leaks = ['regex', ...]            what goroutineleakprofile_test.go expects Go's
#                                        goroutineleak profile to report for it ([] for C only)
#   go_flaky = true                      the Go test calls it flaky (makeFlakyTest)
#   cause = "lock_order"                 why the threads block, one of CAUSES (docs/zoo.md,
#                                        "Causes"); tools that name a cause are scored on it
#
#   [truth.leaky]                        one table per variant, every variant of the kernel
#   leaked_threads = "2 * instances"     live threads that can never run again
#   unjoined_threads = "instances"       finished, never joined (default "0"; TSan's thread leak;
#                                        observed as counters.unjoined_threads, zoo.c)
#   wait_site = ["f", "g"]               the function each leaked thread is blocked in
#                                        (a string, or a list where they wait in different places)
#   primitive = ["mutex", "mutex"]       what it waits on: one of PRIMITIVES, or a list beside wait_site
#   pinned_bytes = "instances * 65536"   heap only the leaked threads keep alive (the kernel's payload)
#   alloc_site = "new_store"             optional: the function that malloc's the pinned payload
#                                        (heapprof and heaptrack charge it there; derive.py)
#   orphaned = true                      no thread that can still run and no global reaches the
#                                        object the leaked threads wait on (what a reachability
#                                        analysis such as Go's goroutineleak profile can prove)
#   why = "..."                          optional: printed when a truth row fails
#
# Expressions are numbers, `instances` (the run's --instances), + - * / and
# parentheses, and must grow linearly with instances (f(N) = N x f(1)): a
# leak found by accumulation. A variant that leaks no thread gives no
# wait_site, primitive or orphaned. The comparer checks what a native run can
# observe of the truth on every native run (comparer.truth_rows), so the
# truth cannot drift from the code; tools never edit it.

PRIMITIVES = ("mutex", "rwlock", "cond", "barrier", "chan_send", "chan_recv", "select", "counter_wait",
              "join", "pipe_read", "socket_read", "once")  # once: asleep in pthread_once (its control word)
# The cause vocabulary (docs/zoo.md, "Causes"): what a fix would change, in
# words a tool's report can be mapped to (scripts/tools/*.py cause_of).
CAUSES = ("lock_order", "double_lock", "recursive_rlock", "missing_unlock", "wait_holding_lock",
          "lost_wakeup", "missing_close", "missing_send", "missing_receive", "channel_cycle",
          "wait_for_self", "wrong_waitgroup", "missing_join")
TRUTH_TOP_KEYS = {"pattern", "origin", "go_test", "go_leaks", "go_flaky", "cause"}
TRUTH_VARIANT_KEYS = {"leaked_threads", "unjoined_threads", "wait_site", "primitive", "pinned_bytes",
                      "orphaned", "why", "alloc_site"}
TRUTH_EXPRESSIONS = ("leaked_threads", "unjoined_threads", "pinned_bytes")


@dataclass
class TruthVariant:
    variant: str
    leaked_threads: str
    pinned_bytes: str
    unjoined_threads: str = "0"
    wait_site: tuple = ()
    primitive: tuple = ()     # one per wait_site
    orphaned: bool | None = None
    why: str = ""
    alloc_site: str = ""      # the function that malloc's the pinned payload ("" when not given)

    def value(self, name, instances):
        """An expression of the truth (leaked_threads, unjoined_threads,
        pinned_bytes) evaluated for a run of `instances` instances."""
        return truth_value(getattr(self, name), instances)

    def leaks(self, instances=1):
        return any(self.value(n, instances) for n in TRUTH_EXPRESSIONS)


@dataclass
class Truth:
    pattern: str
    origin: str
    go_test: str = ""
    go_leaks: tuple = ()
    go_flaky: bool = False
    cause: str = ""           # one of CAUSES; "" while a kernel in the making has none
    variants: dict = field(default_factory=dict)   # name -> TruthVariant

    def wait_sites(self):
        """Every wait site of every variant, in order, once."""
        return tuple(dict.fromkeys(s for v in self.variants.values() for s in v.wait_site))


def _truth_ast(text):
    if len(str(text)) > 200:
        raise ExpressionError(f"'{str(text)[:40]}...': longer than 200 characters")
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"'{text}' is not an expression: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise ExpressionError(f"'{text[:40]}' is not an expression ({type(e).__name__})") from None
    for node in ast.walk(tree.body):
        if isinstance(node, ast.Name) and node.id != "instances":
            raise ExpressionError(f"'{text}': name '{node.id}' (only `instances` and numbers)")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                               or not isinstance(node.value, (int, float))):
            raise ExpressionError(f"'{text}': constant {node.value!r} (only numbers)")
        if not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub,
                                 ast.Constant, ast.Name, ast.Load)):
            raise ExpressionError(f"'{text}': '{type(node).__name__}' is not allowed (numbers, instances, + - * /)")
    return tree.body


def truth_value(text, instances):
    """Evaluates a truth expression for `instances`; an int when whole. The
    arithmetic is the expectations' own (_eval), `instances` its one name."""
    tree = _truth_ast(text)
    try:
        value = _eval(tree, {"instances": "instances"}, lambda _name: instances)
    except Unresolved as e:
        raise ExpressionError(f"'{text}': {e}") from None
    return int(value) if float(value).is_integer() else value


def _truth_list(table, key, where):
    value = table.get(key, ())
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) and v for v in values):
        raise ExpectedFileError(f"{where}: '{key}' must be a string or a list of strings")
    return tuple(values)


def load_truth(table, where):
    """Validates a [truth] table into a Truth; raises ExpectedFileError naming the spot."""
    where = f"{where}: [truth]"
    if not isinstance(table, dict):
        raise ExpectedFileError(f"{where} must be a table")
    variants = {k: v for k, v in table.items() if isinstance(v, dict)}
    _unknown_keys({k: v for k, v in table.items() if k not in variants}, TRUTH_TOP_KEYS, where)
    for key in ("pattern", "origin"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise ExpectedFileError(f"{where}: '{key}' is required (one line)")
    go_flaky = table.get("go_flaky", False)
    if not isinstance(go_flaky, bool):
        raise ExpectedFileError(f"{where}: 'go_flaky' must be true or false")
    go_leaks = _truth_list(table, "go_leaks", where)
    for leak in go_leaks:
        try:
            re.compile(leak)
        except re.error as e:
            raise ExpectedFileError(f"{where}: go_leaks '{leak}' is not a regular expression: {e}") from None
    cause = table.get("cause", "")
    if cause and cause not in CAUSES:
        raise ExpectedFileError(f"{where}: cause = {cause!r} is not one of {', '.join(CAUSES)}")
    truth = Truth(pattern=table["pattern"].strip(), origin=table["origin"].strip(),
                  go_test=str(table.get("go_test", "")), go_leaks=go_leaks, go_flaky=go_flaky,
                  cause=cause)
    if not variants:
        raise ExpectedFileError(f"{where}: no variant table ([truth.leaky], [truth.fixed], ...)")
    for name, v in variants.items():
        truth.variants[name] = _truth_variant(name, v, f"{where[:-len('[truth]')]}[truth.{name}]")
    if not any(v.leaks() for v in truth.variants.values()):
        raise ExpectedFileError(f"{where}: no variant leaks anything: a zoo kernel shows a leak and its fix")
    return truth


def _truth_variant(name, table, where):
    _unknown_keys(table, TRUTH_VARIANT_KEYS, where)
    for key in ("leaked_threads", "pinned_bytes"):
        if key not in table:
            raise ExpectedFileError(f"{where}: missing required key '{key}'")
    exprs = {}
    for key in TRUTH_EXPRESSIONS:
        text = table.get(key, "0")
        if isinstance(text, bool) or not isinstance(text, (str, int)):
            raise ExpectedFileError(f"{where}: '{key}' must be an expression of instances, e.g. \"2 * instances\"")
        text = str(text)
        try:
            one, two, many = (truth_value(text, n) for n in (1, 2, 1000))
        except ExpressionError as e:
            raise ExpectedFileError(f"{where}: {key}: {e}") from None
        if not all(isinstance(x, int) and x >= 0 for x in (one, two, many)):
            raise ExpectedFileError(f"{where}: {key} = '{text}' must be a whole number >= 0 for every instances "
                                    f"(1: {one}, 2: {two}, 1000: {many})")
        if two != 2 * one or many != 1000 * one:
            raise ExpectedFileError(f"{where}: {key} = '{text}' does not grow linearly with instances "
                                    f"(1: {one}, 2: {two}, 1000: {many}): a zoo leak is N x one call's")
        exprs[key] = text
    sites = _truth_list(table, "wait_site", where)
    prims = _truth_list(table, "primitive", where)
    orphaned = table.get("orphaned")
    leaked = truth_value(exprs["leaked_threads"], 1)
    if leaked:
        if not sites or not prims or orphaned is None:
            raise ExpectedFileError(f"{where}: a variant that leaks threads gives wait_site, primitive and orphaned")
        if len(prims) == 1 and len(sites) > 1:
            prims = prims * len(sites)
        if len(prims) != len(sites):
            raise ExpectedFileError(f"{where}: {len(sites)} wait_site(s) but {len(prims)} primitive(s): "
                                    "give one primitive, or one per wait site")
        if len(sites) > leaked:
            raise ExpectedFileError(f"{where}: {len(sites)} wait sites for {leaked} leaked thread(s) per instance")
        if len(set(sites)) != len(sites):
            raise ExpectedFileError(f"{where}: a wait_site is listed twice")
        for s in sites:
            if not re.fullmatch(r"[A-Za-z_]\w*", s):
                raise ExpectedFileError(f"{where}: wait_site '{s}' is not a function name")
        for p in prims:
            if p not in PRIMITIVES:
                raise ExpectedFileError(f"{where}: primitive = '{p}' (accepted: {', '.join(PRIMITIVES)})")
        if not isinstance(orphaned, bool):
            raise ExpectedFileError(f"{where}: 'orphaned' must be true or false")
    elif sites or prims or orphaned is not None:
        raise ExpectedFileError(f"{where}: leaks no thread, so it has no wait_site, primitive or orphaned")
    alloc_site = table.get("alloc_site", "")
    if alloc_site and (not isinstance(alloc_site, str) or not re.fullmatch(r"[A-Za-z_]\w*", alloc_site)):
        raise ExpectedFileError(f"{where}: alloc_site = {alloc_site!r} is not a function name")
    if alloc_site and not truth_value(exprs["pinned_bytes"], 1):
        raise ExpectedFileError(f"{where}: alloc_site names where the pinned payload is malloc'ed, but pinned_bytes is 0")
    return TruthVariant(variant=name, leaked_threads=exprs["leaked_threads"], pinned_bytes=exprs["pinned_bytes"],
                        unjoined_threads=exprs["unjoined_threads"], wait_site=sites, primitive=prims,
                        orphaned=orphaned, why=str(table.get("why", "")), alloc_site=alloc_site)


# ---- where expected files are ----------------------------------------------------

# Groups of scenarios a command may name instead of listing them: the zoo's
# kernels keep their expected files in expected/zoo/.
GROUPS = {"zoo": "zoo", "retention": "retention"}


def path_for(scenario, expected_dir):
    """expected/SCENARIO.toml, or expected/zoo/SCENARIO.toml for a zoo kernel
    (the first that exists; the first when neither does)."""
    expected_dir = Path(expected_dir)
    for folder in ("", *GROUPS.values()):
        path = expected_dir / folder / f"{scenario}.toml"
        if path.exists():
            return path
    return expected_dir / f"{scenario}.toml"


def scenarios_in(expected_dir, group=None):
    """Names with an expected file: at the top (group None), or in a group's folder."""
    folder = Path(expected_dir) / (GROUPS[group] if group else "")
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
