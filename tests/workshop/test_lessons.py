#!/usr/bin/env python3
"""Runs each lesson of docs/workshop.md as a learner would and asserts every figure its text quotes."""

# The convention (docs/workshop.md, "How this page is tested"):
#   - a lesson is a `## Lesson N: SCENARIO — title` section;
#   - every `./leaklab run|check|report|compare ...` line of its ```sh blocks
#     is run, in order (run directories go to a temporary folder);
#   - a line ending in "(`SCENARIO.VARIANT.TOOL[.ALLOCATOR]`):" names the run
#     the list below it is about (the newest run directory starting so);
#   - in that list each **FIGURE** is checked against the first "(`EXPR`"
#     after it, EXPR in the expected files' expression language.
# Steps run in document order, so a figure is read from the newest run at
# that point of the lesson, as the learner would read it.
#
# Command line: test_lessons.py [--lesson SCENARIO] [--static] [-v]
# exits 0 (pass), 1 (a figure or a command failed), 77 (every selected
# lesson skipped: its scenario is not built or has no expected file).

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the `scripts` package

from scripts.expect import comparer  # noqa: E402
from scripts.expect import expected  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quotes  # noqa: E402  (the source a page quotes must be in the code)

WORKSHOP = REPO / "docs" / "workshop.md"
COMMAND_TIMEOUT_S = 900   # a memcheck run at quick scale takes ~10 s; this is the hang guard
APPROX = 0.10             # "≈ X" holds within 10 % of X
EXIT_SKIP = 77

LESSON_RE = re.compile(r"^##\s+Lesson\s+(\d+):\s+([a-z][a-z0-9_]*)\b(.*)$")
CONTEXT_RE = re.compile(r"\(`([a-z][a-z0-9_]*\.[a-z0-9_]+\.[a-z]+(?:\.[a-z]+)?)`\):\s*$")
BULLET_RE = re.compile(r"^\s*[-*]\s+")
BOLD_RE = re.compile(r"\*\*(.+?)\*\*")
EXPR_RE = re.compile(r"\(`([^`]+)`")
RUNNABLE = ("run", "check", "report", "compare")

OPS = {"≥": ">=", ">=": ">=", "at least": ">=", "≤": "<=", "<=": "<=", "at most": "<=",
       ">": ">", "<": "<", "=": "==", "==": "==", "≈": "~", "~": "~", "about": "~"}
UNITS = {"": 1, "%": None, "×": 1, "x": 1, "MiB": 1 << 20, "KiB": 1 << 10, "B": 1}
# "measured 0.15-0.21 ×" after a figure's expression: the range runs under load
# gave (both cores busy, 20+ runs), checked like the figure. A single measured
# value cannot be checked (the next run differs), so the page may not give one.
MEASURED_RE = re.compile(r"\bmeasured\s+(?P<lo>\d[\d,]*(?:\.\d+)?)"
                         r"(?:\s*(?:-|–|to)\s*(?P<hi>\d[\d,]*(?:\.\d+)?))?\s*(?P<unit>%|×|x|MiB|KiB|B)?")
FIGURE_RE = re.compile(
    r"^(?P<op>≥|>=|≤|<=|≈|~|>|<|==|=|at least|at most|about)?\s*"
    r"(?P<num>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>%|×|x|MiB|KiB|B)?$")


@dataclass
class Figure:
    line: int
    run: str          # run directory name prefix
    text: str         # the figure as written, e.g. "≥ 95 %"
    op: str           # >= <= > < == ~
    value: object     # number or string
    expr: str

    def describe(self):
        return f"docs/workshop.md:{self.line}: **{self.text}** ({self.expr}) in run {self.run}"


@dataclass
class Lesson:
    number: int
    scenario: str
    title: str
    line: int
    steps: list = field(default_factory=list)   # ("cmd", line, argv) or ("figure", Figure)

    @property
    def name(self):
        return f"lesson_{self.number}_{self.scenario}"

    def commands(self):
        return [s for s in self.steps if s[0] == "cmd"]

    def figures(self):
        return [s[1] for s in self.steps if s[0] == "figure"]


class DocError(Exception):
    """docs/workshop.md breaks the convention; the message names the line."""


def parse_figure(text):
    """'≥ 95 %' -> ('>=', 0.95); '1,001' -> ('==', 1001); '`fill_buffer`' -> ('==', 'fill_buffer')."""
    text = text.strip()
    if text.startswith("`") and text.endswith("`") and len(text) > 2:
        return "==", text[1:-1]
    m = FIGURE_RE.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a figure ([≥ ≤ ≈ < > =] NUMBER [% × MiB KiB B], or `word`)")
    number = float(m.group("num").replace(",", ""))
    unit = m.group("unit") or ""
    number = number / 100 if unit == "%" else number * UNITS[unit]  # / 100: 95 % is 0.95 exactly
    if number.is_integer() and m.group("unit") != "%":
        number = int(number)
    return OPS[m.group("op")] if m.group("op") else "==", number


def measured_figure(n, context, m, expr):
    """The Figure for "measured LO-HI UNIT" (op 'in', value (lo, hi)). Raises DocError for a single value."""
    if not m.group("hi"):
        raise DocError(f"docs/workshop.md:{n}: '{m.group(0)}' is one value: give the range runs under "
                       "load measured (measured LO-HI), or none")
    unit = m.group("unit") or ""
    scale = 0.01 if unit == "%" else UNITS[unit]
    lo, hi = (float(m.group(k).replace(",", "")) * scale for k in ("lo", "hi"))
    return Figure(n, context, m.group(0), "in", (lo, hi), expr)


def parse_lessons(text):
    """The lessons of docs/workshop.md, in order. Raises DocError."""
    lessons = []
    lesson = None
    fence = None          # the info string of the open code block, or None
    context = None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:].strip() or "text")
            continue
        if fence is not None:
            if lesson and fence == "sh" and stripped.startswith("./leaklab "):
                argv = shlex.split(stripped, comments=True)
                if len(argv) > 1 and argv[1] in RUNNABLE:
                    lesson.steps.append(("cmd", n, argv[1:]))
            continue
        if line.startswith("## "):
            m = LESSON_RE.match(line)
            lesson = Lesson(int(m.group(1)), m.group(2), m.group(3).strip(" —-"), n) if m else None
            if lesson:
                lessons.append(lesson)
            context = None
            continue
        if lesson is None:
            continue
        m = CONTEXT_RE.search(line)
        if m and not BULLET_RE.match(line):
            context = m.group(1)
            continue
        consumed = []
        if not BULLET_RE.match(line) or not BOLD_RE.search(line):
            _refuse_loose_measured(n, line, consumed)
            continue
        if context is None:
            raise DocError(f"docs/workshop.md:{n}: a bold figure with no run named above it "
                           "(a line ending in (`SCENARIO.VARIANT.TOOL`):)")
        pos = 0
        for b in BOLD_RE.finditer(line):
            if b.start() < pos:
                raise DocError(f"docs/workshop.md:{n}: **{b.group(1)}** sits inside the previous figure's expression")
            e = EXPR_RE.search(line, b.end())
            if not e:
                raise DocError(f"docs/workshop.md:{n}: **{b.group(1)}** has no (`expression`) after it")
            try:
                op, value = parse_figure(b.group(1))
            except ValueError as err:
                raise DocError(f"docs/workshop.md:{n}: {err}") from None
            lesson.steps.append(("figure", Figure(n, context, b.group(1), op, value, e.group(1))))
            pos = e.end()
            following = BOLD_RE.search(line, pos)
            measured = MEASURED_RE.search(line, pos, following.start() if following else len(line))
            if measured:
                lesson.steps.append(("figure", measured_figure(n, context, measured, e.group(1))))
                consumed.append(measured.start())
                pos = measured.end()
        _refuse_loose_measured(n, line, consumed)
    return lessons


def _refuse_loose_measured(n, line, consumed):
    """A "measured ..." that follows no figure's expression cannot be checked: refused."""
    for m in MEASURED_RE.finditer(line):
        if m.start() not in consumed:
            raise DocError(f"docs/workshop.md:{n}: '{m.group(0)}' follows no figure's (`expression`): "
                           "a measured range goes right after the figure it measures (or goes)")


def run_prefix(argv):
    """The run directory name prefix a `run`/`check` command makes: SCENARIO.VARIANT.TOOL.ALLOCATOR
    (without --variant the runner names the variant `default`)."""
    if argv[0] not in ("run", "check"):
        return None
    opts = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    values = {}
    for i, a in enumerate(opts):
        if a.startswith("--") and i + 1 < len(opts):
            values[a] = opts[i + 1]
    tool = values.get("--tool", "native")
    allocator = values.get("--allocator", "tcmalloc" if tool == "heapprof" else "glibc")
    return f"{opts[0]}.{values.get('--variant', 'default')}.{tool}.{allocator}"


def build_dir():
    return Path(os.environ.get("LEAKLAB_BUILD_DIR") or REPO / "build")


def not_landed(scenario):
    """Why a lesson cannot run yet (None when it can): the scenario is built and has its expected file."""
    binary = build_dir() / "scenarios" / scenario
    if not binary.is_file():
        return f"{scenario} is not built ({binary} missing)"
    if not (REPO / "expected" / f"{scenario}.toml").is_file():
        return f"{scenario} has no expected/{scenario}.toml yet"
    return None


def with_dirs(argv, runs):
    """The command with its run directories sent to `runs`."""
    if argv[0] in ("run", "check"):
        cut = argv.index("--") if "--" in argv else len(argv)
        return argv[:cut] + ["--out", str(runs)] + argv[cut:]
    return argv + ["--runs", str(runs)]


def newest(runs, prefix):
    matches = [p for p in Path(runs).iterdir() if p.is_dir() and p.name.startswith(prefix)]
    return max(matches, key=lambda p: p.stat().st_mtime) if matches else None


def check_figure(fig, run_dir):
    """(ok, observed text) for one figure against a run directory."""
    data = comparer.RunData.load(run_dir)

    def resolve(ref):
        return data.resolve(ref, None)
    if fig.op == "in":
        # The stated range was rounded outwards from what was measured: a value
        # that rounds to its ends (at the precision written) is inside.
        low = expected.evaluate(f"{fig.expr} >= {fig.value[0] - _half_step(fig.text, 'lo')!r}", resolve)
        high = expected.evaluate(f"{fig.expr} <= {fig.value[1] + _half_step(fig.text, 'hi')!r}", resolve)
        return low.verdict == high.verdict == "PASS", _observed(low, fig.expr)
    if fig.op == "~":
        low = expected.evaluate(f"{fig.expr} >= {fig.value * (1 - APPROX)!r}", resolve)
        high = expected.evaluate(f"{fig.expr} <= {fig.value * (1 + APPROX)!r}", resolve)
        ok = low.verdict == high.verdict == "PASS"
        return ok, _observed(low, fig.expr)
    value = f'"{fig.value}"' if isinstance(fig.value, str) else repr(fig.value)
    outcome = expected.evaluate(f"{fig.expr} {fig.op} {value}", resolve)
    return outcome.verdict == "PASS", _observed(outcome, fig.expr)


def _half_step(text, end):
    """Half the last written digit of one end of "measured LO-HI UNIT", in the figure's scale."""
    m = MEASURED_RE.search(text)
    digits = m.group(end).replace(",", "")
    step = 10 ** -len(digits.split(".")[1]) if "." in digits else 1
    unit = m.group("unit") or ""
    return step / 2 * (0.01 if unit == "%" else UNITS[unit])


def _observed(outcome, expr):
    if outcome.verdict == "ERROR":
        return f"ERROR: {outcome.detail}"
    # A quotient of two byte counts is a ratio, not bytes.
    return comparer.human(outcome.left, outcome.is_bytes and "/" not in expr)


def run_lesson(lesson, runs, log=print):
    """Runs a lesson's steps in order. Returns (failures, skipped figures), each a list of lines."""
    failures, skipped = [], []
    unavailable = {}  # run prefix -> why its command was skipped (exit 77)
    for step in lesson.steps:
        if step[0] == "cmd":
            _, line, argv = step
            names = [a for a in argv[1:] if not a.startswith("-")] if argv[0] in ("report", "compare") else []
            gone = next((w for n in names for p, w in unavailable.items() if p.startswith(n)), None)
            if gone:  # a page about a run that could not be made
                skipped.append(f"docs/workshop.md:{line}: ./leaklab {shlex.join(argv)}: skipped: {gone[0]}")
                continue
            full = [str(REPO / "leaklab"), *with_dirs(argv, runs)]
            done = subprocess.run(full, cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
            log(f"  $ ./leaklab {shlex.join(argv)}  -> exit {done.returncode}")
            if done.returncode == EXIT_SKIP:
                prefix = run_prefix(argv)
                if prefix:
                    unavailable[prefix] = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["exit 77"]
                continue
            if done.returncode != 0:
                failures.append(f"docs/workshop.md:{line}: ./leaklab {shlex.join(argv)} exited {done.returncode}\n"
                                f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
                continue
            problem = _output_problem(argv, done.stdout, runs)
            if problem:
                failures.append(f"docs/workshop.md:{line}: ./leaklab {shlex.join(argv)}: {problem}")
            continue
        fig = step[1]
        why = next((w for p, w in unavailable.items() if p.startswith(fig.run) or fig.run.startswith(p)), None)
        if why:
            skipped.append(f"{fig.describe()}: skipped, its run exited 77: {why[0]}")
            continue
        run_dir = newest(runs, fig.run)
        if run_dir is None:
            failures.append(f"{fig.describe()}: no run directory starts with {fig.run} (did a command above make it?)")
            continue
        ok, observed = check_figure(fig, run_dir)
        log(f"  {'ok  ' if ok else 'FAIL'} **{fig.text}** ({fig.expr}): observed {observed}")
        if not ok:
            failures.append(f"{fig.describe()}: observed {observed}")
    return failures, skipped


# What the guide shows a run printing (docs/workshop.md, "Set-up"): its first
# line names the run directory SCENARIO.VARIANT.TOOL.ALLOCATOR-DATE-TIME-PID,
# its last says how the scenario exited.
RUN_DIR_LINE = re.compile(r"^run dir: (?:.*/)?([a-z][a-z0-9_]*\.[a-z0-9_]+\.[a-z]+\.[a-z]+)-\d{8}-\d{6}-\d+$")
LAST_LINE = re.compile(r"^exit \d+: \S")
TERMINAL_COLUMNS = 160   # `compare` fits a terminal this wide (whole stacks are on its page and in its JSON)


def _output_problem(argv, stdout, runs):
    """What a learner would miss in the output, or read differently from the guide:
    the run directory's name, the report path, the last line, the compare page."""
    lines = stdout.strip().splitlines()
    if argv[0] == "run":
        first = RUN_DIR_LINE.match(lines[0]) if lines else None
        if not first or first.group(1) != run_prefix(argv):
            return (f"its first line is {lines[0] if lines else '(none)'!r}, not 'run dir: "
                    f"{run_prefix(argv)}-DATE-TIME-PID' as the guide shows")
        if not LAST_LINE.match(lines[-1]):
            return f"its last line is {lines[-1]!r}, not 'exit N: ...' as the guide shows"
    if "--report" in argv or argv[0] == "report":
        m = re.search(r"^report: (.+)$", stdout, re.M)
        if not m or not Path(m.group(1)).is_file():
            return "printed no 'report: PATH' line naming a written page"
        if 'id="verdict"' not in Path(m.group(1)).read_text():
            return f"{m.group(1)} has no verdict section"
    if argv[0] == "compare":
        wide = [line for line in lines if len(line) > TERMINAL_COLUMNS]
        if wide:
            return f"{len(wide)} lines wider than {TERMINAL_COLUMNS} columns, e.g. {wide[0][:80]!r}..."
        m = re.search(r"^page: (.+)$", stdout, re.M)
        if not m or not Path(m.group(1)).is_file():
            return "printed no 'page: PATH' line naming a written page"
    return None


# ---- unittest -----------------------------------------------------------------

def load_lessons():
    return parse_lessons(WORKSHOP.read_text())


class TheConvention(unittest.TestCase):
    """Static: the page parses, and the parser can tell a good figure from a bad one."""

    def test_a_measured_range_is_checked_and_a_lone_value_refused(self):
        doc = ("## Lesson 1: x — t\nIn it (`x.leaky.native`):\n\n"
               "- a **≤ 25 %** (`rss_bytes@released / rss_bytes@allocated`); measured 0.15-0.21 ×: so\n")
        figs = parse_lessons(doc)[0].figures()
        self.assertEqual([(f.op, f.value) for f in figs], [("<=", 0.25), ("in", (0.15, 0.21))])
        self.assertAlmostEqual(_half_step(figs[1].text, "hi"), 0.005)
        with self.assertRaises(DocError):
            parse_lessons(doc.replace("0.15-0.21", "0.12"))
        with self.assertRaises(DocError):  # a range in prose, attached to nothing
            parse_lessons(doc + "\nThe race leaks some (measured 84 to 164 of 200 across runs).\n")

    def test_figures_parse(self):
        self.assertEqual(parse_figure("1,001"), ("==", 1001))
        self.assertEqual(parse_figure("≥ 95 %"), (">=", 0.95))
        self.assertEqual(parse_figure("≤ 1 %"), ("<=", 0.01))
        self.assertEqual(parse_figure("≥ 1.6 ×"), (">=", 1.6))
        self.assertEqual(parse_figure("≈ 130 MiB"), ("~", 130 << 20))
        self.assertEqual(parse_figure("0 B"), ("==", 0))
        self.assertEqual(parse_figure("`fill_buffer`"), ("==", "fill_buffer"))
        for bad in ("many", "still reachable", "≥", "95 % of it"):
            with self.assertRaises(ValueError, msg=bad):
                parse_figure(bad)

    def test_a_bold_word_that_is_no_figure_is_refused(self):
        doc = ("## Lesson 1: x — t\nIn it (`x.leaky.native`):\n\n"
               "- it is **still reachable** (`memcheck.still_reachable_bytes`)\n")
        with self.assertRaises(DocError):
            parse_lessons(doc)

    def test_a_figure_without_a_run_is_refused(self):
        with self.assertRaises(DocError):
            parse_lessons("## Lesson 1: x — t\n\n- threads: **3** (`threads@end`)\n")

    def test_two_figures_on_one_line_pair_in_order(self):
        doc = ("## Lesson 1: x — t\nIn it (`x.leaky.native`):\n\n"
               "- a **1** (`threads@a`), then **`futex`** (`census.top_syscall@a`) (`ignored`)\n")
        figs = parse_lessons(doc)[0].figures()
        self.assertEqual([(f.value, f.expr) for f in figs], [(1, "threads@a"), ("futex", "census.top_syscall@a")])

    def test_the_guide_shows_what_a_run_prints(self):
        text = WORKSHOP.read_text()
        m = re.search(r"```text\n(run dir: .*?)```", text, re.S)
        self.assertTrue(m, "the guide shows what `./leaklab run` prints (a ```text block starting 'run dir: ')")
        shown = m.group(1).strip().splitlines()
        self.assertRegex(shown[0], RUN_DIR_LINE)
        self.assertRegex(shown[-1], LAST_LINE)
        self.assertTrue(any(line.startswith("report: ") for line in shown))

    def test_the_workshop_page_follows_it(self):
        lessons = load_lessons()
        self.assertGreaterEqual(len(lessons), 3, "three lessons: blocked_workers, delayed_exit, rw_gateway")
        self.assertEqual([le.number for le in lessons], list(range(1, len(lessons) + 1)))
        for lesson in lessons:
            with self.subTest(lesson=lesson.name):
                self.assertTrue((REPO / "scenarios" / f"{lesson.scenario}.c").is_file(),
                                f"lesson {lesson.number} names an unknown scenario {lesson.scenario}")
                self.assertTrue(lesson.commands(), "a lesson runs something")
                self.assertGreaterEqual(len(lesson.figures()), 3, "a lesson states what the learner should see")
                made = [run_prefix(s[2]) for s in lesson.commands()]
                for fig in lesson.figures():
                    # Every expression is valid in the expected files' language.
                    value = f'"{fig.value}"' if isinstance(fig.value, str) else repr(fig.value)
                    if fig.op == "in":
                        value = repr(fig.value[0])
                    op = ">=" if fig.op in ("~", "in") else fig.op
                    try:
                        expected.parse(f"{fig.expr} {op} {value}")
                    except expected.ExpressionError as e:
                        self.fail(f"{fig.describe()}: {e}")
                    self.assertTrue(any(p and p.startswith(fig.run) for p in made),
                                    f"{fig.describe()}: no run/check command of this lesson makes that run")


class TheQuotes(unittest.TestCase):
    """Static: every line of code the pages quote is in the code, as written."""

    def test_the_workshop_quotes_the_code(self):
        bad = quotes.problems(quotes.workshop_quotes(WORKSHOP.read_text(), _doc_name(WORKSHOP)),
                              quotes.sources(REPO))
        self.assertFalse(bad, "docs/workshop.md quotes code that is not there:\n" + "\n".join(bad))

    def test_the_scenario_pages_quote_the_code(self):
        bad = []
        for page in sorted((REPO / "docs" / "scenarios").glob("*.md")):
            bad += quotes.problems(quotes.c_block_quotes(page.read_text(), _doc_name(page)),
                                   quotes.sources(REPO))
        self.assertFalse(bad, "a scenario page quotes code that is not there:\n" + "\n".join(bad))

    def test_a_quote_that_drifted_is_caught(self):
        code = {"scenarios/x.c": "    while (s->queue.queued == 0 && !s->closed) /* FIX: re-check */\n"
                                 "        writer_wait(s);\n    shutdown(s->fd, SHUT_RDWR);\n"
                                 "    if (s->queue.queued == 0)\n        writer_wait(s); /* BUG */\n"}
        page = ("## Lesson 1: x — t\n\n### Read the source\n\n`scenarios/x.c`: loops on "
                "`while (s->queue.queued == 0 && !s->closed)`, the `/* FIX: */` line, `shutdown()`, "
                "`writer_wait(s)`.\n")
        self.assertEqual(quotes.problems(quotes.workshop_quotes(page), code), [])
        old = page.replace("s->queue.queued", "s->ring_used")
        self.assertEqual(len(quotes.problems(quotes.workshop_quotes(old), code)), 1)
        block = "```c\nif (s->queued == 0)\n    writer_wait(s);   /* (3) sleeps */\n...\n```\n"
        self.assertEqual(len(quotes.problems(quotes.c_block_quotes(block, "docs/scenarios/x.md"), code)), 1)
        self.assertEqual(quotes.problems(quotes.c_block_quotes(block.replace("s->queued", "s->queue.queued"),
                                                               "docs/scenarios/x.md"), code), [])


def _doc_name(path):
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


class Lessons(unittest.TestCase):
    """Each lesson run for real (one test per lesson, skipped until its scenario has landed)."""
    verbose = False


def _lesson_test(lesson):
    def test(self):
        why = not_landed(lesson.scenario)
        if why:
            self.skipTest(why)
        log = print if Lessons.verbose else (lambda *a: None)
        log(f"\n{lesson.name}:")
        keep = os.environ.get("LEAKLAB_LESSON_RUNS")
        with tempfile.TemporaryDirectory(prefix=f"leaklab-{lesson.name}-") as tmp:
            runs = Path(keep) / lesson.name if keep else Path(tmp)
            runs.mkdir(parents=True, exist_ok=True)
            failures, skipped = run_lesson(lesson, runs, log)
        for s in skipped:
            log(f"  {s}")
        if failures:
            self.fail("\n".join(failures))
        if skipped and len(skipped) == len(lesson.figures()):
            self.skipTest("every figure's run was skipped: " + skipped[0])
    test.__doc__ = f"Lesson {lesson.number}: {lesson.scenario}"
    return test


def register_lessons():
    """One Lessons test per lesson of WORKSHOP (again after --page names another copy)."""
    for name in [n for n in vars(Lessons) if n.startswith("test_lesson_")]:
        delattr(Lessons, name)
    try:
        for lesson in load_lessons():
            setattr(Lessons, f"test_{lesson.name}", _lesson_test(lesson))
    except (OSError, DocError):
        pass  # TheConvention.test_the_workshop_page_follows_it reports it


register_lessons()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lesson", metavar="SCENARIO", help="run only this scenario's lesson")
    p.add_argument("--static", action="store_true", help="only check the page's convention (no runs)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each command and figure")
    p.add_argument("--page", type=Path, metavar="FILE",
                   help="check this copy of docs/workshop.md instead (its lessons and its quotes)")
    args = p.parse_args(argv)
    if args.page:
        global WORKSHOP
        WORKSHOP = args.page.resolve()
        register_lessons()
    Lessons.verbose = args.verbose
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    if args.static or not args.lesson:
        suite.addTests(loader.loadTestsFromTestCase(TheConvention))
        suite.addTests(loader.loadTestsFromTestCase(TheQuotes))
    if not args.static:
        names = [n for n in loader.getTestCaseNames(Lessons)
                 if not args.lesson or n.endswith(f"_{args.lesson}")]
        if args.lesson and not names:
            print(f"test_lessons.py: no lesson for '{args.lesson}' in {WORKSHOP}", file=sys.stderr)
            return 2
        suite.addTests(Lessons(n) for n in names)
    result = unittest.TextTestRunner(verbosity=2 if args.verbose else 1).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.testsRun and len(result.skipped) == result.testsRun:
        return EXIT_SKIP
    return 0


if __name__ == "__main__":
    sys.exit(main())
