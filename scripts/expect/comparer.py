"""Compares a run directory with expected/SCENARIO.toml: verdict table, verdict.json, exit code."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from scripts.base import eventlog
from scripts.base.exits import EXIT_FAILED, EXIT_OK, EXIT_SKIP, EXIT_SYSTEM, EXIT_USAGE
from scripts.expect import expected
from scripts.expect.expected import Unresolved
from scripts.tools import memcheck, tools

RUN_LEVEL = ("payload_bytes", "workers")
CENSUS_TOP = {"census.top_state": "state", "census.top_wchan": "wchan", "census.top_syscall": "syscall"}


@dataclass
class RunData:
    """Everything a check can read from a run directory."""
    run_dir: Path
    info: dict = field(default_factory=dict)       # run.json
    start: dict = field(default_factory=dict)
    end: dict | None = None
    phases: dict = field(default_factory=dict)     # phase name -> LAST phase event of that name
    phase_order: list = field(default_factory=list)
    event_errors: list = field(default_factory=list)
    holds: dict = field(default_factory=dict)      # phase name -> `hold` event (--hold-at PHASE)

    @classmethod
    def load(cls, run_dir):
        run_dir = Path(run_dir)
        data = cls(run_dir)
        try:
            data.info = json.loads((run_dir / "run.json").read_text())
        except (OSError, ValueError) as e:
            data.event_errors.append(f"run.json unreadable: {e}")
        events, problems = eventlog.read(run_dir / "events.jsonl")
        data.event_errors.extend(problems)
        for ev in events:
            kind = ev.get("event")
            if kind == "start":
                data.start = ev
            elif kind == "end":
                data.end = ev
            elif kind == "phase" and isinstance(ev.get("phase"), str):
                data.phases[ev["phase"]] = ev
                data.phase_order.append(ev["phase"])
            elif kind == "hold" and isinstance(ev.get("phase"), str):
                data.holds[ev["phase"]] = ev
        return data

    # The run's identity: run.json's, corrected by what the start event says ran.
    def field(self, key, default=None):
        return self.start.get(key) or self.info.get(key) or default

    @property
    def exit_code(self):
        return self.info.get("exit_code")

    # ---- name resolution ---------------------------------------------------

    def resolve(self, ref, default_phase):
        name = ref.name
        if name.startswith("heapprof."):
            return self._heapprof(ref, ref.phase or default_phase)
        if name.startswith("memcheck."):
            if ref.phase:
                raise Unresolved(f"{ref.text}: memcheck reports once per run; drop '@{ref.phase}'")
            return self._memcheck(ref)
        if name.startswith("tool."):
            if ref.phase:
                raise Unresolved(f"{ref.text}: a tool reports once per run (tool.json); drop '@{ref.phase}'")
            return self._tool(ref)
        if name.startswith(("memstats.", "hold.")):
            return self._held(ref, ref.phase or default_phase)
        # Bare names the start event carries (payload_bytes, workers,
        # canary_bytes, params.*) are run-level; everything else, or any name
        # with @PHASE, is read from a phase snapshot.
        if ref.phase is None and (name in RUN_LEVEL or name.startswith("params.")
                                  or name in ("exit_code", "wall_s")
                                  or ("." not in name and name in self.start)):
            return self._run_level(ref)
        phase = ref.phase or default_phase
        if phase is None:
            raise Unresolved(f"{ref.text}: no phase: set phase = \"...\" in the check or write {name}@PHASE")
        phase = _key(self.phases, phase)  # rss_bytes@after_load reads phase after-load
        ev = self.phases.get(phase)
        if ev is None:
            seen = ", ".join(dict.fromkeys(self.phase_order)) or "none"
            raise Unresolved(f"phase '{phase}' not in this run (phases seen: {seen})")
        if name == "t":
            return _number(ev.get("t"), ref)
        snap = ev.get("snapshot")
        if not isinstance(snap, dict):
            raise Unresolved(f"phase '{phase}' has no snapshot")
        if name.startswith("census."):
            return self._census(ref, snap.get("census"), phase)
        value = snap
        for part in name.split("."):
            part = _key(value, part) if isinstance(value, dict) else part
            if not isinstance(value, dict) or part not in value:
                raise Unresolved(f"{ref.text}: no '{name}' in the '{phase}' snapshot")
            value = value[part]
        if name.startswith("alloc.") and isinstance(value, (int, float)) and value < 0:
            raise Unresolved(f"{ref.text}: not known for allocator "
                             f"{snap.get('alloc', {}).get('allocator', '?')} (reported {value})")
        return _number(value, ref, allow_str=True)

    def _run_level(self, ref):
        name = ref.name
        if name == "exit_code":
            if self.exit_code is None:
                raise Unresolved("exit_code: the run has no exit code (run.json)")
            return self.exit_code
        if name == "wall_s":
            return _number(self.info.get("wall_s"), ref)
        if not self.start:
            raise Unresolved(f"{ref.text}: no start event in events.jsonl")
        if name.startswith("params."):
            params = self.start.get("params") or {}
            key = _key(params, name[len("params."):])
            if key not in params:
                raise Unresolved(f"{ref.text}: no parameter '{key}' (parameters: {', '.join(params) or 'none'})")
            return _number(params[key], ref)
        if name not in self.start:
            raise Unresolved(f"{ref.text}: not in the start event")
        return _number(self.start[name], ref)

    def _census(self, ref, census, phase):
        if not isinstance(census, list):
            raise Unresolved(f"{ref.text}: no census in the '{phase}' snapshot")
        if ref.name == "census.groups":
            return len(census)
        if not census:
            raise Unresolved(f"{ref.text}: the census of '{phase}' is empty")
        top = max(census, key=lambda g: g.get("count", 0))
        if ref.name == "census.largest":
            return _number(top.get("count"), ref)
        if ref.name in CENSUS_TOP:
            return str(top.get(CENSUS_TOP[ref.name], ""))
        if ref.name == "census.total":
            return sum(g.get("count", 0) for g in census)
        if ref.name == "census.count_at":
            return sum(g.get("count", 0) for g in census if ref.args[0] in census_functions(g))
        if ref.name in ("census.top_frame", "census.largest_stack"):
            stack = top.get("stack")
            if not isinstance(stack, list):
                raise Unresolved(f"{ref.text}: the census of '{phase}' has no stacks (a build before the "
                                 "census by stack, or LEAKLAB_CENSUS_STACKS=0)")
            if not stack:
                raise Unresolved(f"{ref.text}: the largest group's stack was not captured "
                                 f"({top.get('stack_status') or 'no reason given'})")
            if ref.name == "census.largest_stack":
                return " <- ".join(stack)
            return census_top_frame(top)
        raise Unresolved(f"{ref.text}: unknown census metric (known: census.largest, census.groups, "
                         f"census.total, {', '.join(CENSUS_TOP)}, census.top_frame, census.largest_stack, "
                         "census.count_at(F))")

    def _heapprof(self, ref, phase):
        if self.field("tool") != "heapprof":
            raise Unresolved(f"{ref.text}: this run was not made with --tool heapprof")
        if phase is None:
            raise Unresolved(f"{ref.text}: no phase: set phase = \"...\" or write {ref.name}(...)@PHASE")
        phase = _key(self.phases, phase)
        ev = self.phases.get(phase)
        if ev is None:
            raise Unresolved(f"phase '{phase}' not in this run")
        profile = ev.get("heap_profile")
        if not profile:
            raise Unresolved(f"phase '{phase}' names no heap profile")
        summary_path = self.run_dir / "heap" / (Path(profile).stem + ".json")
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            raise Unresolved(f"{ref.text}: no parsed profile {summary_path.name} (rendering failed?)") from None
        if summary.get("truncated"):
            raise Unresolved(f"heap profile truncated: {summary['truncated']}")
        name = ref.name[len("heapprof."):]
        if name in ("top_function",):
            if not summary.get("top_function"):
                raise Unresolved(f"{ref.text}: the profile is empty")
            return summary["top_function"]
        if name in ("top_share", "top_bytes", "total_bytes"):
            return _number(summary.get(name), ref)
        tables = {"bytes": "sites", "flat_bytes": "flat", "cum_bytes": "cum"}
        if name in tables:
            # pprof lists every function holding memory (nodecount and
            # fractions lifted), so an absent function holds none.
            return summary.get(tables[name], {}).get(ref.args[0], 0)
        raise Unresolved(f"{ref.text}: unknown heapprof metric (known: top_function, top_share, top_bytes, "
                         "total_bytes, bytes(F), flat_bytes(F), cum_bytes(F))")

    def _memcheck(self, ref):
        if self.field("tool") != "memcheck":
            raise Unresolved(f"{ref.text}: this run was not made with --tool memcheck")
        try:
            report = json.loads((self.run_dir / "memcheck.json").read_text())
        except (OSError, ValueError):
            raise Unresolved(f"{ref.text}: no memcheck.json (did valgrind finish?)") from None
        name = ref.name[len("memcheck."):]
        if name in ("bytes_by_function", "blocks_by_function"):
            kind = memcheck.KIND_ALIASES.get(ref.args[0])
            if kind is None:
                raise Unresolved(f"{ref.text}: unknown leak kind '{ref.args[0]}' "
                                 "(definite, indirect, possible, reachable)")
            entry = report["by_function"].get(kind, {}).get(ref.args[1], {})
            return entry.get("bytes" if name.startswith("bytes") else "blocks", 0)
        if name == "error_count":
            return report.get("error_count", 0)
        for kind in memcheck.KINDS.values():
            for unit in ("bytes", "blocks"):
                if name == f"{kind}_{unit}":
                    return report["kinds"][kind][unit]
        raise Unresolved(f"{ref.text}: unknown memcheck metric (known: KIND_bytes, KIND_blocks for "
                         f"{', '.join(memcheck.KINDS.values())}; error_count; bytes_by_function(KIND, F))")


    def _held(self, ref, phase):
        """memstats.NAME: `leaklab memstats` of the process held at PHASE (--hold-at), which an
        expected file's [[driver]] on "hold" wrote to memstats-PHASE.json; NAME is a dotted path
        into its JSON (rss_bytes, go.HeapInuse, glibc.free_resident_bytes, settled as 1 / 0) or
        items_sum (the items added up) or remainder (the unexplained remainder, unsigned).
        hold.NAME: the hold event at PHASE (hold.alloc.in_use_bytes: the allocator's own figures
        as the hold began, the ones memstats' outside look is compared with)."""
        if phase is None:
            raise Unresolved(f"{ref.text}: no phase: set phase = \"...\" or write {ref.name}@PHASE")
        phase = _key(self.phases, phase)
        if phase not in self.holds:
            raise Unresolved(f"{ref.text}: the run was not held at '{phase}' (--hold-at {phase}:SECONDS; "
                             f"held at: {', '.join(self.holds) or 'none'})")
        if ref.name.startswith("hold."):
            value, path = self.holds[phase], ref.name.split(".")[1:]
        else:
            snap_path = self.run_dir / f"memstats-{phase}.json"
            try:
                value = json.loads(snap_path.read_text())
            except (OSError, ValueError) as e:
                raise Unresolved(f"{ref.text}: no memstats snapshot {snap_path.name} ({e}; see driver-*.txt)") \
                    from None
            path = ref.name.split(".")[1:]
            items = value.get("items") or []
            if path == ["items_sum"]:
                return sum(it.get("bytes", 0) for it in items)
            if path == ["remainder"]:
                last = items[-1] if items else {}
                if last.get("name") != "unexplained remainder":
                    raise Unresolved(f"{ref.text}: the last item is not the unexplained remainder")
                return abs(last["bytes"])
        for part in path:
            if not isinstance(value, dict) or part not in value:
                raise Unresolved(f"{ref.text}: no '{'.'.join(path)}' in {ref.name.split('.')[0]} at '{phase}'")
            value = value[part]
        if isinstance(value, bool):
            return int(value)
        return _number(value, ref)

    TOOL_SCALARS = ("verdict", "top_function", "reported_bytes", "reported_blocks", "error_count", "exit_code",
                    "cause")  # cause: helgrind, drd, tsan (a word of expected.CAUSES, another word, or "none")

    def _tool(self, ref):
        tool = self.field("tool", "native")
        if tool == "native":
            raise Unresolved(f"{ref.text}: this run was made without a tool (--tool native)")
        try:
            report = json.loads((self.run_dir / "tool.json").read_text())
        except (OSError, ValueError):
            raise Unresolved(f"{ref.text}: no tool.json ({tool}'s report was not parsed; see the runner "
                             "rows)") from None
        name = ref.name[len("tool."):]
        if name in self.TOOL_SCALARS:
            value = report.get(name)
            if value is None:
                if name == "top_function":
                    raise Unresolved(f"{ref.text}: {tool} reported nothing, so it names no function")
                raise Unresolved(f"{ref.text}: not in {tool}'s tool.json")
            return value
        if name == "reports":
            # The cause checkers' reports by the cause each names (helgrind.py, tsan.py):
            # a cause none of them named was reported 0 times.
            if "causes" not in report:
                raise Unresolved(f"{ref.text}: {tool} does not sort its reports by cause")
            return report["causes"].get(ref.args[0], 0)
        if name in ("bytes", "blocks", "bytes_by_function", "blocks_by_function"):
            kind = tools.KIND_ALIASES.get(ref.args[0])
            known = ", ".join(report.get("kinds", {})) or "none"
            if kind is None or kind not in report.get("kinds", {}):
                raise Unresolved(f"{ref.text}: {tool} tells no kind '{ref.args[0]}' apart (its kinds: {known})")
            unit = "bytes" if name.startswith("bytes") else "blocks"
            if name in ("bytes", "blocks"):
                value = report["kinds"][kind][unit]
            else:
                # A function the tool does not list holds none of that kind.
                value = report.get("by_function", {}).get(kind, {}).get(ref.args[1], {}).get(unit, 0)
            if value is None:
                raise Unresolved(f"{ref.text}: {tool} does not count {unit} of '{kind}'")
            return value
        raise Unresolved(f"{ref.text}: unknown tool metric (known: {', '.join(self.TOOL_SCALARS)}, "
                         "bytes(KIND), blocks(KIND), bytes_by_function(KIND, F), blocks_by_function(KIND, F), reports(CAUSE))")


# ---- the census by stack -------------------------------------------------------

# Frames that are the C library's, the loader's or a tool's, not the program's:
# census.top_frame looks past them. The census marks them itself ("system");
# for a group without that mark, by name.
SYSTEM_FUNCTION_PREFIXES = ("__", "pthread_", "sem_", "futex", "start_thread", "clone", "_start",
                            "___interceptor_", "__interceptor_")


def _is_system(frame):
    if isinstance(frame, dict):
        if "system" in frame:
            return bool(frame["system"])
        frame = frame.get("function") or ""
    return str(frame).startswith(SYSTEM_FUNCTION_PREFIXES)


def census_top_frame(group):
    """The first frame of a census group's stack outside libc/pthread (and
    the loader, the sanitizers, threadcheck): where its threads wait in the
    program's own code. Falls back to the stack's first name."""
    frames = group.get("frames")
    if isinstance(frames, list) and frames:
        for f in frames:
            if isinstance(f, dict) and f.get("function") and not _is_system(f):
                return tools.source_name(f["function"])
    stack = group.get("stack") or []
    for name in stack:
        if not _is_system(name):
            return tools.source_name(name)
    return tools.source_name(stack[0]) if stack else None


def census_functions(group):
    """Every function name (source-level) on a census group's stack, its
    system frames included (count_at(pthread_cond_wait) works too)."""
    names = {tools.source_name(n) for n in group.get("stack") or [] if isinstance(n, str)}
    names |= {tools.source_name(f.get("function")) for f in group.get("frames") or []
              if isinstance(f, dict) and f.get("function")}
    return names


def _key(table, name):
    """Option and phase names may have hyphens (hold-ms, after-load), which an
    expression cannot spell: params.hold_ms finds hold-ms."""
    if name not in table and name.replace("_", "-") in table:
        return name.replace("_", "-")
    return name


def _number(value, ref, allow_str=False):
    if isinstance(value, bool) or value is None:
        raise Unresolved(f"{ref.text}: no value")
    if isinstance(value, (int, float)) or (allow_str and isinstance(value, str)):
        return value
    raise Unresolved(f"{ref.text}: not a number ({type(value).__name__})")


# ---- formatting --------------------------------------------------------------

def human(value, is_bytes):
    if value is None:
        return "-"
    if isinstance(value, str):
        return f'"{value}"'
    if is_bytes:
        # MiB with one decimal, and the raw count; below 0.1 MiB that would
        # read "0.0 MiB", so small figures get KiB or bytes instead.
        if abs(value) >= 0.1 * 1048576:
            return f"{value / 1048576:.1f} MiB ({round(value)})"
        if abs(value) >= 1024:
            return f"{value / 1024:.1f} KiB ({round(value)})"
        return f"{round(value)} B"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return str(round(value))


@dataclass
class Row:
    check: str
    expected: str
    observed: str
    verdict: str
    why: str = ""
    detail: str = ""
    raw: dict = field(default_factory=dict)


def _row(check_text, outcome, why=""):
    expected_col = f"{outcome.op} {human(outcome.right, outcome.is_bytes)}" if outcome.op else "-"
    observed = human(outcome.left, outcome.is_bytes) if outcome.verdict != "ERROR" else "ERROR"
    if outcome.verdict == "ERROR" and outcome.right is None and outcome.op:
        expected_col = outcome.op + " ?"
    return Row(check_text, expected_col, observed, outcome.verdict, why, outcome.detail,
               {"op": outcome.op, "expected_value": outcome.right, "observed_value": outcome.left})


def table(rows):
    head = ("check", "expected", "observed", "verdict")
    cells = [head] + [(r.check, r.expected, r.observed, r.verdict) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    out = []
    for c in cells:
        out.append(f"{c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}  {c[2]:<{widths[2]}}  {c[3]}")
    return "\n".join(out + failure_notes(rows))


def failure_notes(rows):
    """The lines under a verdict table: each row that did not pass, its detail and its why."""
    notes = [r for r in rows if r.verdict != "PASS" and (r.detail or r.why)]
    out = [""] if notes else []
    for r in notes:
        out.append(f"{r.verdict}: {r.check}")
        if r.detail:
            out.append(f"    {r.detail}")
        if r.why:
            out.append(f"    why it should hold: {r.why}")
    return out


# ---- the comparison ----------------------------------------------------------

@dataclass
class Verdict:
    code: int
    rows: list
    message: str = ""


def identity(data):
    # A sanitizer run's tool is TOOL@RELEASE (lsan@clang-14, even for plain
    # lsan: run.json's release is the one that ran), so a check may name one release.
    tool = data.field("tool", "native")
    release = data.info.get("release")
    if release and "@" not in tool:
        tool = f"{tool}@{release}"
    return (data.field("variant"), tool, data.field("allocator"), data.field("scale", "seed"))


def canary_of(data):
    """True when the run planted a canary (--canary, --canary-thread,
    --canary-stuck-thread, --canary-orphan, --canary-lock-order,
    --canary-race or --canary-map), False when it did not, None when the start event does
    not say."""
    keys = ("canary_bytes", "canary_threads", "canary_stuck_threads", "canary_orphans", "canary_lock_orders",
            "canary_races", "canary_map_bytes")
    if not any(k in data.start for k in keys):
        return None
    return any(bool(data.start.get(k)) for k in keys)


def compare(run_dir, expected_path):
    """Evaluates every applicable check against the run; writes verdict.json."""
    data = RunData.load(run_dir)
    variant, tool, allocator, scale = identity(data)
    try:
        exp = expected.load(expected_path)
    except expected.ExpectedFileError as e:
        return _finish(data, Verdict(EXIT_FAILED, [], f"broken expected file: {e}"))
    checks = exp.applicable(variant, tool, allocator, scale, canary_of(data))
    what = f"{data.field('scenario')} variant={variant} tool={tool} allocator={allocator} scale={scale}"
    if data.info.get("runner_status") == EXIT_SKIP or data.exit_code == EXIT_SKIP:
        return _finish(data, Verdict(EXIT_SKIP, [], f"skipped: the scenario exited 77: {_exit_detail(data)}"))
    truth = truth_rows(data, exp, variant, tool)
    if not checks and not truth:
        return _finish(data, Verdict(EXIT_FAILED, [], f"no expectations for {what} in {expected_path}"))

    rows = []
    for problem in data.event_errors:
        rows.append(Row("events.jsonl well-formed", "-", "ERROR", "ERROR", detail=problem))
    for check in checks:
        outcome = expected.evaluate(check.expect, lambda ref, c=check: data.resolve(ref, c.phase))
        rows.append(_row(check.expect, outcome, check.why))
        rows[-1].raw["phase"] = check.phase  # the snapshot its bare names read (views say which)
    rows.extend(truth)

    # A non-zero exit fails the run unless a check states the exit code it expects.
    exit_expected = any(c.mentions_exit_code() for c in checks)
    code = data.exit_code
    if not exit_expected:
        ok = code == 0
        detail = "" if ok else _exit_detail(data)
        observed = "-" if code is None else str(code)
        tool_exit = data.info.get("tool_exit")
        if tool_exit and code == 0:
            observed += f" ({tool} exited {tool_exit['code']})"
        rows.append(Row("exit_code == 0", "== 0", observed,
                        "PASS" if ok else "FAIL", detail=detail,
                        raw={"op": "==", "expected_value": 0, "observed_value": code}))
    for err in data.info.get("runner_errors", []):
        rows.append(Row("runner", "-", "ERROR", "ERROR", detail=err))

    if data.info.get("runner_status") == EXIT_SYSTEM:
        result = EXIT_SYSTEM
    elif not exit_expected and code in (EXIT_USAGE, EXIT_SYSTEM):
        result = code  # bad usage and harness failures keep their meaning
    elif all(r.verdict in ("PASS", "SKIP") for r in rows):  # SKIP: a truth row whose observer is missing
        result = EXIT_OK
    else:
        result = EXIT_FAILED
    return _finish(data, Verdict(result, rows, what))


# ---- the zoo's [truth], checked on every native run ---------------------------

# What a native run can observe of a kernel's [truth] (expected.py), at the
# zoo's "steady" phase: the thread count, the threads that ended and were
# never joined (counters.unjoined_threads: glibc's descriptors, which zoo.c
# reads before each phase), the census at the wait sites, and
# the heap still in use since "baseline". In use is not pinned bytes alone:
# each instance adds its bookkeeping (channels, structs, each leaked thread's
# TLS block: measured 1.5-5.7 % of the payload for the exemplars), and the
# harness adds its own (glibc's per-thread caches, the census's buffers:
# measured 19.5-26 KB, whatever the scale). The upper bound allows both.
TRUTH_HEAP_SLACK = 0.10    # x payload_bytes
TRUTH_HEAP_NOISE = 65536   # bytes
TRUTH_PHASE, TRUTH_BASELINE = "steady", "baseline"
HEAP_GROWTH = f"alloc.in_use_bytes - alloc.in_use_bytes@{TRUTH_BASELINE}"
UNJOINED = "counters.unjoined_threads"


def truth_checks(truth, variant):
    """[(expect, why)] for a variant's truth: the rows every native run gets.
    Names truth.X are the truth's expressions evaluated for the run."""
    tv = truth.variants[variant]
    out = [("threads == 1 + truth.leaked_threads",
            tv.why or "every leaked thread is still there at steady, plus main; every other thread has ended"),
           (f"{UNJOINED} == truth.unjoined_threads",
            "every thread that ended was joined, but the truth's unjoined ones (glibc keeps their descriptors)")]
    if tv.wait_site:
        total = " + ".join(f"census.count_at({s})" for s in tv.wait_site)
        out.append((f"{total} == truth.leaked_threads",
                    f"each leaked thread waits in {' or '.join(tv.wait_site)} ({', '.join(tv.primitive)})"))
        if len(tv.wait_site) > 1:
            out += [(f"census.count_at({s}) >= truth.instances", f"every instance leaves a thread in {s}")
                    for s in tv.wait_site]
    else:
        out += [(f"census.count_at({s}) == 0", f"no thread is left where the leaky code waits ({s})")
                for s in truth.wait_sites()]
    if tv.value("pinned_bytes", 1):
        out.append((f"{HEAP_GROWTH} >= truth.pinned_bytes", "the leaked threads still hold their payload"))
    out.append((f"{HEAP_GROWTH} <= truth.pinned_bytes + {TRUTH_HEAP_SLACK} * payload_bytes + {TRUTH_HEAP_NOISE}",
                "nothing beyond the pinned payload is held, but each instance's bookkeeping and the harness's "
                "own (comparer.TRUTH_HEAP_SLACK, TRUTH_HEAP_NOISE)"))
    return out


def truth_rows(data, exp, variant, tool):
    """The [truth] rows of a native run (none for a tool run or a file
    without [truth]). A row that disagrees with the run FAILs."""
    truth = exp.truth
    if truth is None or expected.split_tool(tool)[0] != "native":
        return []
    if getattr(truth, "retention", False):  # a retention kernel's bytes by category (retention.py)
        from scripts.expect import retention
        return retention.truth_rows(data, truth, variant)
    if variant not in truth.variants:
        return [Row("truth", "-", "ERROR", "ERROR",
                    detail=f"[truth] has no table for variant '{variant}' (it has: {', '.join(truth.variants)})")]
    instances = (data.start.get("params") or {}).get("instances")
    if not isinstance(instances, int) or isinstance(instances, bool):
        return [Row("truth", "-", "ERROR", "ERROR",
                    detail="the start event has no params.instances: is this a zoo kernel (ll_zoo_main)?")]
    tv = truth.variants[variant]

    def resolve(ref):
        if ref.name.startswith("truth."):
            key = ref.name[len("truth."):]
            if key == "instances":
                return instances
            if key not in expected.TRUTH_EXPRESSIONS:
                raise Unresolved(f"{ref.text}: the truth has {', '.join(expected.TRUTH_EXPRESSIONS)}, instances")
            return tv.value(key, instances)
        return data.resolve(ref, TRUTH_PHASE)

    rows = []
    for expect, why in truth_checks(truth, variant):
        if "census.count_at" in expect and "census.count_at" not in expected.FUNCTIONS:
            rows.append(Row(f"truth: {expect}", "-", "-", "SKIP",
                            detail="census.count_at is not available in this tree (the census by stack, issue 11)"))
            continue
        if expect.startswith(UNJOINED) and not _unjoined_observed(data):
            rows.append(Row(f"truth: {expect}", "-", "-", "SKIP",
                            detail=f"the run has no {UNJOINED} >= 0 at {TRUTH_PHASE}: glibc's thread "
                                   "descriptors could not be read (not glibc?), or a kernel built before zoo.c counted them"))
            continue
        rows.append(_row(f"truth: {expect}", expected.evaluate(expect, resolve), why))
        rows[-1].raw["phase"] = TRUTH_PHASE
    return rows


def _unjoined_observed(data):
    """Whether the run's steady snapshot counted the unjoined threads."""
    try:
        value = data.resolve(expected.Ref(UNJOINED, text=UNJOINED), TRUTH_PHASE)
    except Unresolved:
        return False
    return isinstance(value, (int, float)) and value >= 0


def truth_of_run(exp, variant, instances):
    """The truth of one run, evaluated: {"leaks", "leaked_threads",
    "unjoined_threads", "pinned_bytes", "orphaned"} (None without a truth)."""
    if exp is None or exp.truth is None or variant not in exp.truth.variants or not isinstance(instances, int):
        return None
    tv = exp.truth.variants[variant]
    values = {k: tv.value(k, instances) for k in expected.TRUTH_EXPRESSIONS}
    return {"leaks": any(values.values()), **values, "orphaned": tv.orphaned}


def _exit_detail(data):
    parts = []
    if data.info.get("signal"):
        parts.append(f"killed by {data.info['signal']}")
    if data.end and data.end.get("reason"):
        parts.append(f"end event: {data.end['reason']}")
    try:
        tail = (data.run_dir / "stderr.txt").read_text(errors="replace").strip().splitlines()[-1:]
        parts += [f"stderr: {t[:200]}" for t in tail]
    except OSError:
        pass
    return "; ".join(parts) or "the scenario exited non-zero"


def _finish(data, verdict):
    doc = {
        "run_dir": str(data.run_dir),
        "scenario": data.field("scenario"), "variant": data.field("variant"),
        "tool": data.field("tool"), "allocator": data.field("allocator"), "scale": data.field("scale"),
        "canary": canary_of(data),
        "exit_code": data.exit_code, "result": verdict.code, "message": verdict.message,
        "checks": [{"check": r.check, "expected": r.expected, "observed": r.observed,
                    "verdict": r.verdict, "detail": r.detail, "why": r.why, **r.raw}
                   for r in verdict.rows],
    }
    try:
        (Path(data.run_dir) / "verdict.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    except OSError:
        pass  # a read-only run dir still gets its verdict printed
    return verdict
