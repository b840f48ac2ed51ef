#!/usr/bin/env python3
"""fuzz_expected.py - a coverage-guided mutational fuzz of the expected files'
expression language (scripts/expect/expected.py: parse() and evaluate()).

The language is Python-side only (the comparer reads expected/*.toml), so
libFuzzer cannot reach it; this is the same idea with the standard library:
a corpus of seed expressions (fuzz/expected/corpus: every expect line of the
real expected files, and more), mutated (tokens of the language and of
Python inserted, spans deleted, repeated and spliced, characters replaced);
an input that reaches a new line-to-line edge of expected.py (sys.settrace)
or a new kind of verdict joins the corpus. Every input must keep the
module's promises:

  - parse() returns or raises ExpressionError, nothing else;
  - evaluate() returns an Outcome, never raises (its docstring says so),
    with verdict PASS, FAIL or ERROR, and PASS/FAIL only between two numbers
    or two strings;
  - nothing outside the whitelist is evaluated: the tree parse() returns
    holds only whitelisted nodes, every name in it is one of its references,
    every reference is a dotted name (a function of FUNCTIONS with its number
    of arguments), and no code runs: an audit hook fails the input on any
    exec, import, open, process or socket event while it is parsed and
    evaluated;
  - no input takes more than --slow seconds of CPU time (this thread's: the
    work the input causes, not how busy the machine is, so a loaded machine
    cannot turn a smoke run red).

Exit 0: the budget (--runs, --seconds) ran out without a finding; 1: a
finding, written to ARTIFACTS/crash-SHA1 with its traceback on stderr (fix
it, then add it to the corpus); 2: bad usage.
"""

import argparse
import ast
import hashlib
import os
import random
import re
import sys
import time
import traceback
import unicodedata  # noqa: F401  (the parser imports it for non-ASCII names: loaded now, not mid-input)
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))  # the `scripts` package

from scripts.expect import expected  # noqa: E402

EXPECTED_FILE = os.path.realpath(expected.__file__)

# Words of the language and of Python around it: what a mutation inserts.
TOKENS = [
    "threads", "workers", "payload_bytes", "rss_bytes", "alloc.in_use_bytes", "counters.sessions_live",
    "census.largest", "census.top_syscall", "exit_code", "wall_s", "params.hold_ms", "t", "@steady", "@exited",
    "heapprof.bytes(", "heapprof.cum_bytes(fill_buffer)", "memcheck.bytes_by_function(still_reachable, f)",
    "tool.blocks(definite)", "tool.bytes_by_function(", "tool.verdict", '"reported"', "'x'", '"', "'",
    " >= ", " <= ", " == ", " != ", " > ", " < ", " + ", " - ", " * ", " / ", " ** ", " // ", " % ", "(", ")",
    ",", ".", "@", "_", "__", "__import__('os')", "__class__", "_ref0_", "lambda", "not ", " and ", " or ",
    " if ", " else ", "[", "]", "{", "}", ":", ";", "=", "\\", "\n", "\t", "\x00", "#", "e", "E", "j", "0x",
    "1e308", "1e-308", "0", "1", "-1", "2", "0.5", "9" * 50, "9" * 400, "True", "None", "...", "f'{1}'",
    "b'x'", "√", "١", "ℌ", "ß", "\u2028", "\ufeff", "·",
]
OPS = (">=", "<=", "==", "!=", ">", "<")
FORBIDDEN_EVENTS = ("exec", "import", "open", "os.", "subprocess.", "socket.", "ctypes.", "shutil.",
                    "builtins.input", "code.", "pty.", "webbrowser.")


class Finding(Exception):
    """A broken promise; the message says which."""


# ---- the oracle ---------------------------------------------------------------

_armed = False


def _audit(event, args):
    if _armed and event.startswith(FORBIDDEN_EVENTS):
        raise Finding(f"audit event {event!r} {args!r:.200} while parsing or evaluating")


NAME_RE = re.compile(r"[A-Za-z]\w*(?:\.[A-Za-z]\w*)*\Z")


def check_ref(ref):
    if not isinstance(ref, expected.Ref) or not NAME_RE.match(ref.name):
        raise Finding(f"a reference outside the grammar: {ref!r}")
    if ref.args:
        if ref.name not in expected.FUNCTIONS or len(ref.args) != expected.FUNCTIONS[ref.name]:
            raise Finding(f"a call outside the whitelist: {ref!r}")
    elif ref.name in expected.FUNCTIONS:
        raise Finding(f"a function used without its arguments: {ref!r}")


def check_tree(left, right, refs):
    for side in (left, right):
        for node in ast.walk(side):
            if not isinstance(node, expected._ALLOWED):
                raise Finding(f"a {type(node).__name__} node passed the whitelist")
            if isinstance(node, ast.Name) and node.id not in refs:
                raise Finding(f"a name that is not a reference passed: {node.id!r}")
            if isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                                   or not isinstance(node.value, (int, float, str))):
                raise Finding(f"a constant outside the whitelist passed: {node.value!r}")
    for ref in refs.values():
        check_ref(ref)


def resolver(features):
    """A resolve() that checks what it is asked for and answers per name:
    numbers small and huge, strings, zero, a bool, None, or Unresolved."""
    def resolve(ref):
        check_ref(ref)
        pick = int(hashlib.sha1(ref.name.encode() + repr(ref.args).encode()).hexdigest(), 16) % 10
        features.add(("resolved", pick))
        if pick == 7:
            raise expected.Unresolved(f"{ref.text}: not observed")
        return [3, 2.5, 0, 10 ** 400, -(10 ** 400), 1e308, "futex", True, None, 10 ** 20][pick]
    return resolve


def kind_of(message):
    """A message without the input's own text in it: its kind, a feature."""
    message = re.sub(r"^.*?(?= is not a number|: not observed)", "REF", message, flags=re.S)
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "", message, flags=re.S)
    message = re.split(r"['\"\n(]", message)[0]
    return re.sub(r"U\+[0-9A-Fa-f]+|\d+", "", message)[:60]


def run_one(text, features):
    """Runs one input through parse() and evaluate(); raises Finding."""
    global _armed
    _armed = True
    try:
        try:
            left, op, right, refs = expected.parse(text)
        except expected.ExpressionError as e:
            features.add(("refused", kind_of(str(e))))
        else:
            if op not in OPS:
                raise Finding(f"parse() returned the operator {op!r}")
            check_tree(left, right, refs)
            features.add(("parsed", op, len(refs) > 0))
        outcome = expected.evaluate(text, resolver(features))
    except Finding:
        raise
    except BaseException as e:  # anything else escaping is the finding
        raise Finding(f"{type(e).__name__} escaped: {e}".replace("\n", " ")[:300]) from e
    finally:
        _armed = False
    if not isinstance(outcome, expected.Outcome) or outcome.verdict not in ("PASS", "FAIL", "ERROR"):
        raise Finding(f"evaluate() returned {outcome!r}")
    if outcome.verdict != "ERROR":
        for value in (outcome.left, outcome.right):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise Finding(f"{outcome.verdict} over a {type(value).__name__}: {value!r:.80}")
        if isinstance(outcome.left, str) != isinstance(outcome.right, str):
            raise Finding(f"{outcome.verdict} between a string and a number")
    features.add(("outcome", outcome.verdict, kind_of(outcome.detail)))


# ---- coverage ---------------------------------------------------------------

class Coverage:
    """Line-to-line edges taken inside scripts/expect/expected.py."""

    def __init__(self):
        self.edges = set()
        self._prev = None

    def _local(self, frame, event, arg):
        if event == "line":
            self.edges.add((self._prev, frame.f_lineno))
            self._prev = frame.f_lineno
        return self._local

    # Loops over every node of the tree: their lines say nothing new after the
    # first input, and tracing them costs most of the time.
    UNTRACED = {"_depth", "<genexpr>"}

    def _global(self, frame, event, arg):
        if frame.f_code.co_filename == EXPECTED_FILE and frame.f_code.co_name not in self.UNTRACED:
            self._prev = -frame.f_code.co_firstlineno
            return self._local
        return None

    def __enter__(self):
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)


# ---- mutations ----------------------------------------------------------------

def mutate(rng, text, corpus, max_len):
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        pos = rng.randint(0, len(text))
        if kind <= 2:                                   # insert a word of the language
            text = text[:pos] + rng.choice(TOKENS) + text[pos:]
        elif kind == 3 and text:                        # delete a span
            end = min(len(text), pos + rng.randint(1, 8))
            text = text[:pos] + text[end:]
        elif kind == 4 and text:                        # replace a character
            text = text[:pos] + chr(rng.choice([rng.randint(32, 126), rng.randint(0, 0x2fff)])) + text[pos + 1:]
        elif kind == 5 and text:                        # repeat a span (deep nesting, long numbers)
            start = rng.randint(0, len(text) - 1)
            span = text[start:start + rng.randint(1, 6)]
            text = text[:start] + span * rng.choice([2, 3, 10, 100, 500]) + text[start:]
        elif kind == 6 and corpus:                      # splice with another input
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            text = text[:pos] + other[cut:]
        elif kind == 7:                                 # another comparison
            for op in OPS:
                if op in text:
                    text = text.replace(op, rng.choice(OPS + ("**", "=", "<>", "in", "is")), 1)
                    break
        else:                                           # wrap: nesting
            wrap = rng.choice([("(", ")"), ("-", ""), ("+", ""), ("-(", ")"), ("1*(", ")")])
            n = rng.choice([1, 2, 50, 300, 1000])
            text = wrap[0] * n + text + wrap[1] * n
    return text[:max_len]


# ---- the loop ---------------------------------------------------------------------

def load_corpus(dirs):
    inputs = []
    for d in dirs:
        for path in sorted(Path(d).iterdir()) if Path(d).is_dir() else []:
            if path.is_file():
                inputs.append(path.read_bytes().decode("utf-8", "replace"))
    return inputs


def write_input(directory, text, prefix=""):
    directory.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8", "surrogatepass")
    path = directory / f"{prefix}{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return path


def fuzz(args):
    rng = random.Random(args.seed)
    sys.addaudithook(_audit)
    sys.setrecursionlimit(1000)   # the interpreter's default: what the comparer runs with
    corpus_dirs = [Path(d) for d in args.corpus]
    seeds = load_corpus(corpus_dirs)
    if not seeds:
        seeds = ["threads >= workers + 1"]
    coverage = Coverage()
    features = set()
    corpus = []
    execs = 0
    started = time.monotonic()
    last_report = started

    def execute(text, keep=True):
        nonlocal execs
        before = (len(coverage.edges), len(features))
        t0 = time.thread_time()
        try:
            with coverage:
                run_one(text, features)
        except Finding as e:
            path = write_input(Path(args.artifacts), text, "crash-")
            print(f"fuzz_expected: FINDING: {e}", file=sys.stderr)
            if e.__cause__ is not None:
                traceback.print_exception(e.__cause__, file=sys.stderr)
            print(f"fuzz_expected: input {text[:300]!r}{'...' if len(text) > 300 else ''}\n"
                  f"fuzz_expected: written to {path}", file=sys.stderr)
            return False
        took = time.thread_time() - t0
        execs += 1
        if took > args.slow:  # tracing costs much: time it again untraced before calling it slow
            t0 = time.thread_time()
            run_one(text, set())
            took = time.thread_time() - t0
        if took > args.slow:
            path = write_input(Path(args.artifacts), text, "slow-")
            print(f"fuzz_expected: FINDING: one input took {took:.2f} s of CPU time (--slow {args.slow}); "
                  f"written to {path}", file=sys.stderr)
            return False
        if keep and (len(coverage.edges), len(features)) != before:
            corpus.append(text)
            if args.corpus_out:
                write_input(Path(args.corpus_out), text)
        return True

    for text in seeds:                     # every seed first: regressions included
        if not execute(text[:args.max_len], keep=False):
            return report(1, execs, started, coverage, features, corpus)
    corpus.extend(seeds)
    print(f"fuzz_expected: INITED {len(seeds)} seed inputs, cov {len(coverage.edges)} edges, "
          f"ft {len(features)}", flush=True)
    deadline = started + args.seconds if args.seconds else None
    while (args.runs is None or execs < args.runs) and (deadline is None or time.monotonic() < deadline):
        base = rng.choice(corpus)
        if not execute(mutate(rng, base, corpus, args.max_len)):
            return report(1, execs, started, coverage, features, corpus)
        now = time.monotonic()
        if now - last_report >= 10:
            last_report = now
            print(f"fuzz_expected: #{execs} cov {len(coverage.edges)} ft {len(features)} corp {len(corpus)} "
                  f"exec/s {execs / (now - started):.0f}", flush=True)
    return report(0, execs, started, coverage, features, corpus)


def report(code, execs, started, coverage, features, corpus):
    took = time.monotonic() - started
    print(f"fuzz_expected: {'FINDING' if code else 'DONE'} #{execs} in {took:.1f} s, exec/s {execs / max(took, 1e-9):.0f}, "
          f"cov {len(coverage.edges)} edges of expected.py, ft {len(features)}, corp {len(corpus)}", flush=True)
    print(f"stat::number_of_executed_units: {execs}")
    return code


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="exit codes: 0 no finding, 1 a finding, 2 bad usage")
    p.add_argument("corpus", nargs="*", default=[str(HERE / "corpus")],
                   help="corpus folders to start from (default: fuzz/expected/corpus)")
    p.add_argument("--runs", type=int, help="stop after this many mutated inputs")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1: the same run every time)")
    p.add_argument("--max-len", type=int, default=1024,
                   help="longest input, in characters (default 1024: real expect lines are under 200, "
                        "and nesting past every limit fits)")
    p.add_argument("--slow", type=float, default=2.0,
                   help="an input taking more CPU time is a finding (default 2 s)")
    p.add_argument("--artifacts", default=".", help="where a finding is written (default: .)")
    p.add_argument("--corpus-out", help="also write the inputs that found something new here")
    args = p.parse_args(argv)
    if args.runs is None and args.seconds is None:
        args.runs = 10000
    if (args.runs is not None and args.runs < 0) or (args.seconds is not None and args.seconds <= 0) \
            or args.max_len < 1 or args.slow <= 0:
        p.error("--runs, --seconds, --max-len and --slow must be positive")
    return fuzz(args)


if __name__ == "__main__":
    sys.exit(main())
