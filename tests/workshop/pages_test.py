#!/usr/bin/env python3
"""The scenario pages and docs/zoo.md's prose: every quote in the code, every figure checked, generated or cited.

Command line:
  pages_test.py                 the static checks (quotes, ledger, code values) and the
                                checker's own violation tests; exit 0 / 1
  pages_test.py --measure [-n N] [--only TEXT] [--survey] [--json FILE] [--ledger FILE]
                                runs every `measured` figure's run N times (default 1)
                                and checks each value is in the page's range; --survey
                                prints min-max instead of judging, and --json keeps the
                                values: how a range is made (-n 20, under
                                `flock /work/notes/heavy.lock`, two busy loops beside it).
                                Not a CTest test: a run outside a 20-run range is no
                                defect (about 2 in 21 runs, more under heavier load).
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

import pages  # noqa: E402
import quotes  # noqa: E402


def _resolver():
    return pages.Resolver(REPO)


class ThePages(unittest.TestCase):
    """The real pages against the real code, build and ledger."""

    def test_every_quote_and_figure_is_accounted_for(self):
        build = _resolver().build
        if not (build / "scenarios" / "blocked_workers").is_file():
            self.skipTest(f"not built ({build}): option defaults come from the binaries")
        bad = pages.problems()
        self.assertFalse(bad, f"{len(bad)} problems:\n" + "\n".join(bad))

    def test_the_ledger_names_only_these_pages(self):
        for e in pages.load_ledger():
            self.assertIn(e.doc, pages.PAGES, e.text)


CODE = {"scenarios/x.c": "#define STACK (64 * 1024)\nwhile (s->queue.queued == 0 && !s->closed) /* FIX: re-check */\n"
                         "    writer_wait(s);\nshutdown(s->fd, SHUT_RDWR);\n"}


class TheChecker(unittest.TestCase):
    """Violations fed on purpose: each kind of wrong page is caught."""

    def check(self, page, ledger_entries, values=None):
        resolve = (lambda expr: values[expr]) if values is not None else (lambda expr: 0)
        return pages.problems(repo=REPO, entries=ledger_entries, resolve=resolve, pages=("docs/p.md",),
                              texts={"docs/p.md": page}, code=CODE)

    def entry(self, text, kind="code", **kw):
        return pages.Entry(doc="docs/p.md", text=text, kind=kind, **kw)

    def test_a_good_page_passes(self):
        page = ("The writer loops on `while (s->queue.queued == 0 && !s->closed) writer_wait(s);` and calls "
                "`shutdown(fd, SHUT_RDWR)`; stacks are 64 KiB.\n\n```c\nint 99;\n```\n")
        self.assertEqual(self.check(page, [self.entry("stacks are 64 KiB", values={"64": "s"})], {"s": 64}), [])

    def test_a_quote_that_drifted_is_caught(self):
        page = "The writer loops on `while (s->ring_used == 0 && !s->closed) writer_wait(s);`.\n"
        bad = self.check(page, [])
        self.assertEqual(len(bad), 1, bad)
        self.assertIn("ring_used", bad[0])
        self.assertEqual(len(self.check("It calls `shutdown(fd, SHUT_RD)`.\n", [])), 1)

    def test_a_number_nobody_accounts_for_is_caught(self):
        bad = self.check("Stacks are 64 KiB; 73-185 of 200 leaked.\n", [self.entry("Stacks are 64 KiB",
                                                                                    values={"64": "s"})], {"s": 64})
        self.assertEqual([b.split(" is neither")[0] for b in bad], ["docs/p.md: 73-185", "docs/p.md: 200"])

    def test_a_figure_that_is_not_what_the_code_says_is_caught(self):
        bad = self.check("Stacks are 64 KiB.\n", [self.entry("Stacks are 64 KiB", values={"64": "s"})], {"s": 128})
        self.assertEqual(len(bad), 1, bad)
        self.assertIn("the page says 64, s is 128", bad[0])

    def test_a_page_edited_without_its_ledger_is_caught(self):
        bad = self.check("Stacks are 32 KiB.\n", [self.entry("Stacks are 64 KiB", values={"64": "s"})], {"s": 64})
        self.assertEqual(len(bad), 2, bad)   # the phrase is gone, and 32 is nobody's
        self.assertIn("is not on the page", bad[0])

    def test_a_measured_range_must_be_the_page_s(self):
        e = self.entry("leaked 73-185 of", kind="measured", run=["x"], expr="a", range=[73, 185],
                       measured="20 runs")
        self.assertEqual(self.check("It leaked 73-185 of them.\n", [e]), [])
        bad = self.check("It leaked 84-164 of them.\n", [self.entry("leaked 84-164 of", kind="measured", run=["x"],
                                                                     expr="a", range=[73, 185], measured="20")])
        self.assertEqual(len(bad), 1, bad)
        self.assertIn("the measured range is 73-185", bad[0])

    def test_a_measured_value_outside_the_range_fails(self):
        e = self.entry("0.03–0.27 %", kind="measured", run=["x"], expr="a", range=[0.03, 0.27], measured="20")
        self.assertEqual(out_of_range(e, [0.031, 0.27, 0.274]), [])   # rounds to 0.27
        self.assertEqual(len(out_of_range(e, [0.12, 0.29])), 1)
        self.assertEqual(len(out_of_range(e, [0.0249])), 1)

    def test_an_uncited_figure_is_refused(self):
        bad = self.check("Go 1.26 added it.\n", [self.entry("Go 1.26", kind="cited")])
        self.assertIn("says whose", bad[0])

    def test_the_real_pages_catch_a_planted_wrong_fragment_and_figure(self):
        """Each page of the checker's, with one quote and one figure made wrong: both are reported."""
        entries = pages.load_ledger()
        resolve = _resolver()
        if not (resolve.build / "scenarios" / "blocked_workers").is_file():
            self.skipTest("not built")
        code = quotes.sources(REPO)
        for doc in pages.PAGES:
            with self.subTest(doc=doc):
                text = (REPO / doc).read_text()
                planted = text + "\n\nThe loop is `while (s->ring_used == 0 && !s->closed)`.\n"
                bad = pages.problems(entries=entries, resolve=resolve, pages=(doc,), texts={doc: planted},
                                     code=code)
                self.assertTrue(any("ring_used" in b for b in bad), bad)
                mine = [e for e in entries if e.doc == doc and e.kind != "cited"
                        and pages.NUMBER.search(e.squashed)]
                self.assertTrue(mine, f"{doc}: no checked figure to make wrong")
                phrase = mine[0].squashed
                wrong = pages.NUMBER.sub(lambda m: _off_by_one(m.group(1)), phrase, count=1)
                bad = pages.problems(entries=entries, resolve=resolve, pages=(doc,),
                                     texts={doc: replace_phrase(text, phrase, wrong)}, code=code)
                self.assertTrue(any("is not on the page" in b for b in bad), bad)
                self.assertTrue(any("neither checked" in b for b in bad), bad)


def replace_phrase(text, phrase, new):
    """The page with `phrase` (white space squashed) replaced, its line breaks elsewhere kept."""
    rx = re.compile(r"\s+".join(re.escape(w) for w in phrase.split(" ")))
    changed, n = rx.subn(lambda m: new, text, count=1)
    assert n == 1, f"not on the page: {phrase}"
    return changed


def _off_by_one(token):
    first = re.match(r"\d[\d,]*(?:\.\d+)?", token).group(0)
    digits = first.replace(",", "")
    value = str(int(digits.split(".")[0]) + 1) + (("." + digits.split(".")[1]) if "." in digits else "")
    return token.replace(first, value, 1)


# ---- measuring ------------------------------------------------------------------

def _half_step(entry, i=0):
    """Half the last written digit of a range's ends: a value that rounds to an end is inside."""
    lo, hi = (str(x) for x in entry.ranges()[i])
    decimals = max(len(x.split(".")[1]) if "." in x and not x.endswith(".0") else 0 for x in (lo, hi))
    return 0.5 * 10 ** -decimals


def out_of_range(entry, values, i=0):
    lo, hi = (float(x) for x in entry.ranges()[i])
    slack = _half_step(entry, i)
    return [v for v in values if not (lo - slack <= v <= hi + slack)]


def measure_once(argv, runs):
    """One `./leaklab run ARGV` into `runs`; the run directory."""
    from test_lessons import newest, run_prefix, with_dirs
    done = subprocess.run([str(REPO / "leaklab"), *with_dirs(argv, runs)], cwd=REPO, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode not in (0, 1):   # 1: an expectation failed, e.g. the natural race's `== workers` rows
        raise RuntimeError(f"./leaklab {shlex.join(argv)} exited {done.returncode}: {done.stdout[-600:]}"
                           f"{done.stderr[-600:]}")
    return newest(runs, run_prefix(argv))


def value_of(expr, run_dir):
    from scripts.expect import comparer, expected
    data = comparer.RunData.load(run_dir)
    outcome = expected.evaluate(f"{expr} >= -1e300", lambda ref: data.resolve(ref, None))
    if outcome.verdict == "ERROR":
        raise RuntimeError(f"{expr}: {outcome.detail} ({run_dir})")
    return float(outcome.left)


def measure(entries, repeat, survey, log=print, values=None, progress=None):
    """Runs each distinct run `repeat` times; returns the problems (none in survey mode).
    `values` gets {"PHRASE #I": [value, ...]} for each range I of each phrase."""
    by_run = {}
    for e in entries:
        by_run.setdefault(tuple(e.run), []).append(e)
    problems, seen = [], {}
    with tempfile.TemporaryDirectory(prefix="leaklab-pages-") as tmp:
        for n, (argv, group) in enumerate(by_run.items()):
            for i in range(repeat):
                runs = Path(tmp) / f"r{n}-{i}"
                runs.mkdir()
                run_dir = measure_once(list(argv), runs)
                for e in group:
                    for k, expr in enumerate(e.exprs()):
                        seen.setdefault((id(e), k), (e, k, []))[2].append(value_of(expr, run_dir))
                subprocess.run(["rm", "-rf", str(runs)], check=False)
            log(f"{shlex.join(argv)}: {repeat} run(s)")
            if progress:   # a long survey's figures so far, kept if it is stopped
                progress({f"{e.text} #{k}": got for e, k, got in seen.values()})
    for e, k, got in seen.values():
        if values is not None:
            values[f"{e.text} #{k}"] = got
        lo, hi = e.ranges()[k]
        line = (f"{e.doc}: \u201c{e.squashed[:60]}\u201d #{k}: {min(got):.6g}-{max(got):.6g} in {len(got)} runs "
                f"(page: {lo}-{hi})")
        log("  " + line)
        bad = out_of_range(e, got, k)
        if bad and not survey:
            problems.append(f"{line}: outside: {', '.join(f'{v:.6g}' for v in bad)}")
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measure", action="store_true")
    p.add_argument("-n", "--repeat", type=int, default=1)
    p.add_argument("--only", help="only measured figures whose phrase or run contains this text")
    p.add_argument("--survey", action="store_true")
    p.add_argument("--json", type=Path, help="with --survey: write {phrase: [values]} here")
    p.add_argument("--ledger", type=Path, default=pages.LEDGER, help="the figures' ledger (default: %(default)s)")
    args, rest = p.parse_known_args(argv)
    if args.measure:
        entries = [e for e in pages.load_ledger(args.ledger) if e.kind == "measured"
                   and (not args.only or args.only in e.text or args.only in " ".join(e.run))]
        if not entries:
            print("SKIP: no measured figure" + (f" matches {args.only!r}" if args.only else " in the ledger"))
            return 77
        values = {}
        keep = (lambda so_far: args.json.write_text(json.dumps(so_far, indent=1))) if args.json else None
        problems = measure(entries, args.repeat, args.survey, values=values, progress=keep)
        if args.json:
            args.json.write_text(json.dumps(values, indent=1))
        for line in problems:
            print("FAIL " + line)
        return 1 if problems else 0
    result = unittest.main(argv=[sys.argv[0], *rest], exit=False, verbosity=2).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
