"""The retention kernels' [truth]: where the bytes are, by category, at a named phase.

A retention kernel (scenarios/retention/, docs/retention.md) frees or idles
memory that stays resident. Its expected file (expected/retention/KERNEL.toml)
states, written from the kernel's code before any run, how many bytes each
category holds at one phase, counted from a baseline phase taken before the
pattern starts, as expressions of the kernel's options:

  [truth]
  pattern = "one line: the retention pattern"
  phase = "freed"                 the phase where the truth holds
  baseline = "baseline"           what it is counted from (default "baseline")
  tolerance = 0.03                each row's allowance, x payload_bytes ...
  noise_bytes = 1048576           ... plus this (or a table per allocator:
                                  {glibc = ..., tcmalloc = ..., jemalloc = ...})
  why = "..."                     the measurements behind the tolerance

  [truth.VARIANT]                 one table per variant
  in_use = "blocks * 8 + 80"      handed out to the program     (Go: HeapInuse)
  free_resident = "blocks * block_bytes"  freed, kept, resident (Go: HeapIdle - HeapReleased)
  released = "0"                  freed, still reserved, not resident (Go: HeapReleased)
  unmapped = "0"                  freed and given back entirely (sbrk, munmap)
  stacks = "0"                    thread stacks, live or cached (Go: StackInuse / StackSys)
  metadata = "0"                  the allocator's own structures for what it manages
                                  (jemalloc's extent headers, tcmalloc's spans; Go: MSpanSys)
  resident = "..."                optional: RSS growth when it is not in_use + free_resident
                                  + stacks + metadata (a buffer in use but never touched)
  [truth.VARIANT.ALLOCATOR]       optional: categories that differ under one allocator
  unmapped = "..."                (glibc trims a heap's top with sbrk where tcmalloc and
                                  jemalloc keep the address space: unmapped vs released)
  [truth.VARIANT.counters]        optional: the kernel's own counters' growth since the baseline
  survivors = "objects / 64"      (within counter_tolerance x the value, + 1 for a count,
                                  + noise_bytes for a counter of bytes: NAME_bytes)
  why = "..."                     optional: printed when a row fails

Names in expressions: the kernel's options (hyphens as underscores:
block_bytes), the constants page (4096), huge_page (2 MiB), KiB, MiB, GiB,
and min(a, b), max(a, b), floor(x); + - * / and parentheses.

What a native run can observe of it, and checks on every native run
(truth_rows): anonymous RSS growth against the resident bytes; the allocator's in-use
growth against in_use; its free-held growth against free_resident (glibc's
mallinfo2 cannot tell released pages from resident ones, so for glibc
against free_resident + released); its released growth against released
where the allocator counts exactly that (tcmalloc's unmapped page heap); and
the counters. And what `leaklab memstats` itemizes from outside: every
native run of a retention kernel is held at the truth's baseline and at its
phase (attach_native_runs adds the options and a [[driver]] that runs
`leaklab memstats --json` there, and starts tcmalloc and jemalloc runs with
the allocstats agent, whose figures memstats itemizes those heaps with), and
memstats' growth between the two looks meets the truth's categories; so the
instrument is tested on every run.
"""

import ast
import json
import math
from dataclasses import dataclass, field

from scripts.expect.expected import (ALLOCATORS, MEMSTATS_LOOK, ArgsRule, DriverStep, ExpectedFileError, Ref, Selector,
                                     Unresolved)

CATEGORIES = ("in_use", "free_resident", "released", "unmapped", "stacks", "metadata")
VARIANT_KEYS = set(CATEGORIES) | {"resident", "counters", "why", *ALLOCATORS}
TOP_KEYS = {"pattern", "phase", "baseline", "tolerance", "noise_bytes", "counter_tolerance", "why"}
CONSTANTS = {"page": 4096, "huge_page": 2 << 20, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
CALLS = {"min": (2, min), "max": (2, max), "floor": (1, math.floor)}
# Go's runtime.MemStats name for each category, for the docs and the rows.
GO_NAMES = {"in_use": "HeapInuse", "free_resident": "HeapIdle - HeapReleased", "released": "HeapReleased",
            "unmapped": "(gone from HeapSys)", "stacks": "StackInuse / StackSys",
            "metadata": "MSpanSys / OtherSys"}


def is_retention(table):
    """A [truth] table is a retention kernel's when it names its phase (the
    zoo's truth holds at the zoo's one phase and names none)."""
    return isinstance(table, dict) and "phase" in table


@dataclass
class RetentionTruth:
    pattern: str
    phase: str
    baseline: str = "baseline"
    tolerance: float = 0.03
    noise_bytes: dict = field(default_factory=dict)   # allocator or "any" -> bytes
    counter_tolerance: float = 0.02
    why: str = ""
    variants: dict = field(default_factory=dict)      # name -> {category: expr, "counters": {...}, "why": ...}
    retention: bool = True                            # comparer.truth_rows dispatches on it

    def noise(self, allocator):
        return self.noise_bytes.get(allocator, self.noise_bytes.get("any", 0))

    def value(self, variant, key, params, allocator=None):
        """A category's (or `resident`'s) bytes for a run with these options,
        under `allocator` (its own table first, then the variant's)."""
        table = {**self.variants[variant], **self.variants[variant].get(allocator, {})}
        if key == "resident" and "resident" not in table:
            return sum(self.value(variant, k, params, allocator)
                       for k in ("in_use", "free_resident", "stacks", "metadata"))
        return evaluate(table.get(key, "0"), params)


def _check_ast(text, where):
    if not isinstance(text, (str, int)) or isinstance(text, bool):
        raise ExpectedFileError(f"{where}: must be an expression of the options, e.g. \"blocks * block_bytes\"")
    text = str(text)
    if len(text) > 300:
        raise ExpectedFileError(f"{where}: longer than 300 characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ExpectedFileError(f"{where}: '{text}' is not an expression: {e.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in CALLS or node.keywords \
                    or len(node.args) != CALLS[node.func.id][0]:
                raise ExpectedFileError(f"{where}: '{text}': calls are min(a, b), max(a, b), floor(x)")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpectedFileError(f"{where}: '{text}': constant {node.value!r} (numbers only)")
        elif not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub,
                                   ast.Name, ast.Load)):
            raise ExpectedFileError(f"{where}: '{text}': '{type(node).__name__}' is not allowed")
    return text


def evaluate(text, params):
    """The bytes an expression names for a run whose options are `params`
    (option name -> value); raises Unresolved for a name it does not know."""
    names = {k.replace("-", "_"): v for k, v in params.items()}

    def ev(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in names:
                return names[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise Unresolved(f"'{text}': no option or constant '{node.id}' (options: {', '.join(names)})")
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand)
        if isinstance(node, ast.Call):
            return CALLS[node.func.id][1](*(ev(a) for a in node.args))
        a, b = ev(node.left), ev(node.right)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if b == 0:
            raise Unresolved(f"'{text}': division by zero")
        return a / b

    return ev(ast.parse(str(text).strip(), mode="eval").body)


def _number(table, key, where, default):
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ExpectedFileError(f"{where}: '{key}' must be a number >= 0")
    return value


def load_truth(table, where):
    """Validates a retention [truth] table; raises ExpectedFileError naming the spot."""
    where = f"{where}: [truth]"
    variants = {k: v for k, v in table.items() if isinstance(v, dict) and k != "noise_bytes"}
    extra = sorted(set(table) - TOP_KEYS - set(variants))
    if extra:
        raise ExpectedFileError(f"{where}: unknown key(s) {', '.join(extra)} (accepted: {', '.join(sorted(TOP_KEYS))}, "
                                "and one table per variant)")
    for key in ("pattern", "phase"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise ExpectedFileError(f"{where}: '{key}' is required (one line)")
    noise = table.get("noise_bytes", 0)
    noise = noise if isinstance(noise, dict) else {"any": noise}
    for k, v in noise.items():
        if k != "any" and k not in ALLOCATORS:
            raise ExpectedFileError(f"{where}: noise_bytes.{k}: not an allocator ({', '.join(ALLOCATORS)})")
        _number({k: v}, k, f"{where}: noise_bytes", 0)
    truth = RetentionTruth(pattern=table["pattern"].strip(), phase=table["phase"],
                           baseline=str(table.get("baseline", "baseline")),
                           tolerance=_number(table, "tolerance", where, 0.03), noise_bytes=noise,
                           counter_tolerance=_number(table, "counter_tolerance", where, 0.02),
                           why=str(table.get("why", "")))
    if not variants:
        raise ExpectedFileError(f"{where}: no variant table ([truth.kept], [truth.returned], ...)")
    for name, v in variants.items():
        vwhere = f"{where[:-len('[truth]')]}[truth.{name}]"
        extra = sorted(set(v) - VARIANT_KEYS)
        if extra:
            raise ExpectedFileError(f"{vwhere}: unknown key(s) {', '.join(extra)} "
                                    f"(accepted: {', '.join(sorted(VARIANT_KEYS))})")
        entry = {k: _check_ast(v[k], f"{vwhere}: {k}") for k in (*CATEGORIES, "resident") if k in v}
        for alloc in ALLOCATORS:
            if alloc not in v:
                continue
            if not isinstance(v[alloc], dict) or set(v[alloc]) - {*CATEGORIES, "resident"}:
                raise ExpectedFileError(f"{vwhere}.{alloc}: a table of categories ({', '.join(CATEGORIES)}, resident)")
            entry[alloc] = {k: _check_ast(e, f"{vwhere}.{alloc}: {k}") for k, e in v[alloc].items()}
        counters = v.get("counters", {})
        if not isinstance(counters, dict):
            raise ExpectedFileError(f"{vwhere}: 'counters' must be a table of counter = expression")
        entry["counters"] = {k: _check_ast(e, f"{vwhere}.counters: {k}") for k, e in counters.items()}
        entry["why"] = str(v.get("why", ""))
        truth.variants[name] = entry
    return truth


# ---- what a native run shows of it ----------------------------------------------

def truth_rows(data, truth, variant):
    """The rows of a native run (comparer.RunData `data`) against the truth."""
    from scripts.expect import comparer  # comparer calls us; no import cycle at load time

    def error(detail):
        return [comparer.Row("truth", "-", "ERROR", "ERROR", detail=detail)]

    if variant not in truth.variants:
        return error(f"[truth] has no table for variant '{variant}' (it has: {', '.join(truth.variants)})")
    params = data.start.get("params")
    if not isinstance(params, dict):
        return error("the start event has no params: is this a retention kernel's run?")
    allocator = data.field("allocator")
    payload = data.start.get("payload_bytes") or 0
    tol = truth.tolerance * payload + truth.noise(allocator)
    entry = truth.variants[variant]
    why = entry["why"] or truth.why

    def growth(name):
        now = data.resolve(Ref(name, text=name), truth.phase)
        then = data.resolve(Ref(name, phase=truth.baseline, text=f"{name}@{truth.baseline}"), truth.phase)
        return now - then

    def row(label, observe, expect_keys, allowance=tol, counted=False):
        try:
            expected = sum(truth.value(variant, k, params, allocator) for k in expect_keys) if not counted \
                else evaluate(entry["counters"][expect_keys[0]], params)
            observed = observe()
        except Unresolved as e:
            return comparer.Row(f"truth: {label}", "-", "ERROR", "ERROR", why, str(e))
        if counted:  # a count within counter_tolerance; a byte counter also within the noise
            allowance = truth.counter_tolerance * abs(expected) + (
                truth.noise(allocator) if expect_keys[0].endswith("_bytes") else 1)
        ok = abs(observed - expected) <= allowance
        fmt = (lambda v: comparer.human(v, False)) if counted else (lambda v: comparer.human(v, True))
        return comparer.Row(
            f"truth: {label}", f"{fmt(expected)} ± {fmt(allowance)}", fmt(observed), "PASS" if ok else "FAIL",
            why, "" if ok else f"off by {fmt(observed - expected)} (allowed ± {fmt(allowance)})",
            {"op": "≈", "expected_value": expected, "observed_value": observed, "allowance": allowance,
             "phase": truth.phase})

    base = f"@{truth.phase} - @{truth.baseline}"
    # Anonymous RSS: the heap and the stacks are anonymous memory; the file
    # pages the snapshots' census touches in the libraries (up to 0.7 MiB
    # between two snapshots, measured) are not the kernel's.
    rows = [row(f"rss_anon_bytes{base} ≈ resident", lambda: growth("rss_anon_bytes"), ("resident",)),
            row(f"alloc.in_use_bytes{base} ≈ in_use", lambda: growth("alloc.in_use_bytes"), ("in_use",))]
    free_keys = ("free_resident", "released") if allocator == "glibc" else ("free_resident",)
    rows.append(row(f"alloc.free_held_bytes{base} ≈ {' + '.join(free_keys)}",
                    lambda: growth("alloc.free_held_bytes"), free_keys))
    # Released is checked where the allocator counts exactly that: tcmalloc's
    # unmapped page heap. glibc does not count it (alloc_glibc.c); jemalloc's
    # stats.retained also holds the address space its extent growth reserved
    # and never used (measured: +2.5 MiB with nothing purged, sparse_survivors
    # kept, quick), so there RSS alone tells released from kept.
    if allocator == "tcmalloc":
        rows.append(row(f"alloc.released_bytes{base} ≈ released", lambda: growth("alloc.released_bytes"),
                        ("released",)))
    for name in entry["counters"]:
        rows.append(row(f"counters.{name}{base} ≈ counters.{name}", lambda n=name: growth(f"counters.{n}"),
                        (name,), counted=True))
    # What memstats itemized from outside, at the two holds (attach_native_runs)
    if not data.holds:
        return rows + [comparer.Row(f"truth: memstats{base}", "-", "-", "SKIP", why,
                                    "the run was not held for memstats (a run made without the options "
                                    "attach_native_runs gives every native run)")]
    try:
        looks = {p: memstats_snapshot(data.run_dir, p, allocator) for p in (truth.baseline, truth.phase)}
    except Unresolved as e:
        return rows + [comparer.Row(f"truth: memstats{base}", "-", "ERROR", "ERROR", why, str(e))]
    for name, keys in FIGURES[allocator]:
        rows.append(row(f"memstats {name}{base} ≈ {' + '.join(keys)}",
                        lambda n=name: (memstats_figure(looks[truth.phase], n)
                                        - memstats_figure(looks[truth.baseline], n)), keys))
    return rows


# ---- what `leaklab memstats` sees of it, from outside ------------------------------

def attach_native_runs(exp):
    """Every native run of the kernel holds at the truth's baseline and phase
    (--hold-at PHASE:driver, twice) while memstats looks; tcmalloc and
    jemalloc runs start with the allocstats agent (memstats cannot read
    those heaps from outside). The phases' own snapshots are taken before
    each hold, so no other row moves.

    tcmalloc runs also start with a fixed address layout (setarch -R's
    personality): gperftools 2.10's page map (TCMalloc_PageMap2<35>,
    page_heap.h) has one 2 MiB leaf per 2 GiB of address space, allocated
    as metadata and zero-filled whole (pagemap.h, Ensure) when the heap
    first grows into that range. With randomization the program break
    starts anywhere in such a range, and about 1 run in 100 grows across a
    boundary between the baseline and the phase: 2 MiB more resident and
    more metadata, the allocator's, not the pattern's (measured with the
    looks then taken from two processes: 35 of 2,000 runs of
    sparse_survivors kept, each predicted from the heap's addresses; 0 of
    1,000 with the layout fixed, where the break starts 682 MiB below the
    next boundary). Where the personality is refused, the run notes it and
    goes on."""
    truth = exp.truth
    native = Selector(tool=("native",))
    exp.args.append(ArgsRule(native, ["--hold-at", f"{truth.baseline}:driver", "--hold-at", f"{truth.phase}:driver"]))
    exp.args.append(ArgsRule(Selector(tool=("native",), allocator=("tcmalloc", "jemalloc")), [], ("allocstats",)))
    exp.args.append(ArgsRule(Selector(tool=("native",), allocator=("tcmalloc",)), [], fixed_layout=True))
    for phase in (truth.baseline, truth.phase):
        exp.drivers.append(DriverStep(native, "hold", list(MEMSTATS_LOOK), "go-on", phase))


# memstats' Go-style figures (scripts/outside/memstats.py, "go"), each with
# the truth's categories it itemizes. glibc: memstats walks glibc's arenas
# and tells the free bytes still resident from those returned (pagemap).
MEMSTATS_FIGURES = (("HeapInuse", ("in_use",)), ("HeapIdle-HeapReleased", ("free_resident",)),
                    ("HeapReleased", ("released",)), ("StackCached", ("stacks",)))
# tcmalloc and jemalloc: memstats' heap lines come from the allocator's own
# figures through the agent. What was given back is compared with released +
# unmapped (both allocators keep the address space). The truth's metadata is
# resident bytes, so it meets the metadata line (the resident part of the
# allocator's count), not MSpanSys, the count itself (jemalloc's jumps by a
# whole new base block, 2 MiB, in about 1 run in 10: sparse_survivors and
# jemalloc_decay kept, quick). Stacks: live and cached.
AGENT_FIGURES = (("HeapInuse", ("in_use",)), ("HeapIdle-HeapReleased", ("free_resident",)),
                 ("HeapReleased", ("released", "unmapped")), ("StackInuse+StackCached", ("stacks",)),
                 ("metadata_resident", ("metadata",)))
# jemalloc's HeapReleased is stats.retained, which also holds the address
# space its extent growth reserved and never touched (+2.5 to 2.9 MiB with
# nothing purged, sparse_survivors kept, quick): what was given back between
# the two looks is the growth of its purge count (memstats' "heap returned so
# far"), so that is what the truth's released meets.
JEMALLOC_FIGURES = tuple(("purged", keys) if name == "HeapReleased" else (name, keys) for name, keys in AGENT_FIGURES)
FIGURES = {"glibc": MEMSTATS_FIGURES, "tcmalloc": AGENT_FIGURES, "jemalloc": JEMALLOC_FIGURES}


def memstats_figure(snap, name):
    go = snap.get("go") or {}
    if name == "HeapIdle-HeapReleased":
        if "HeapIdle" not in go or "HeapReleased" not in go:
            raise Unresolved("memstats gave no HeapIdle / HeapReleased (its heap lines not itemized?)")
        return go["HeapIdle"] - go["HeapReleased"]
    if name == "StackInuse+StackCached":
        return go.get("StackInuse", 0) + go.get("StackCached", 0)
    if name in ("metadata_resident", "purged"):
        figures = snap.get(snap.get("allocator")) or {}
        value = figures.get("metadata_resident_bytes") if name == "metadata_resident" \
            else (figures.get("figures") or {}).get("purged")
        if value is None:
            raise Unresolved(f"memstats gave no {name} for {snap.get('allocator')} (no allocstats agent answer?)")
        return value
    if name not in go:
        raise Unresolved(f"memstats gave no {name}")
    return go[name]


def memstats_snapshot(run_dir, phase, allocator):
    """memstats-PHASE.json of a held run, checked to itemize `allocator`'s heap."""
    path = run_dir / f"memstats-{phase}.json"
    try:
        snap = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Unresolved(f"no memstats snapshot {path.name} ({e}; see driver-*.txt)") from None
    if snap.get("allocator") != allocator or not snap.get("glibc" if allocator == "glibc" else allocator):
        raise Unresolved(f"memstats did not itemize {allocator}'s heap at {phase}: {snap.get('notes')}")
    return snap
