"""Tests of the zoo's script parts: the [truth] table (expected.py), the truth
rows every native run gets (comparer.py), where zoo expected files are found
and how `list` and `--scenarios zoo` see them (leaklab.py). Every check here
has a violating case: a truth that disagrees with the run must FAIL."""

import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

import fakes
from fakes import make_run, snapshot
from scripts.expect import comparer
from scripts.expect import expected

LEAKLAB = [sys.executable, str(fakes.SCRIPTS / "leaklab.py")]

TRUTH = """
[truth]
pattern = "N senders, one receive"
origin = "LeakProf NCastLeak"
go_test = "NCastLeak"
go_leaks = ['nCastLeak\\.func1\\(.* \\[chan send\\]']
go_flaky = false

[truth.leaky]
leaked_threads = "5 * instances"
wait_site = ["send_result", "ncast_leak"]
primitive = ["chan_send", "chan_recv"]
pinned_bytes = "81920 * instances"
orphaned = true

[truth.fixed]
leaked_threads = "0"
pinned_bytes = "0"
"""


def load_text(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k.toml"
        path.write_text(textwrap.dedent(text))
        return expected.load(path)


def broken(text):
    """The ExpectedFileError message for a file, or None when it loads."""
    try:
        load_text(text)
    except expected.ExpectedFileError as e:
        return str(e)
    return None


class TruthTable(unittest.TestCase):
    def test_reads_the_table(self):
        t = load_text(TRUTH).truth
        self.assertEqual(t.origin, "LeakProf NCastLeak")
        leaky = t.variants["leaky"]
        self.assertEqual(leaky.value("leaked_threads", 1000), 5000)
        self.assertEqual(leaky.value("pinned_bytes", 2), 163840)
        self.assertEqual(leaky.primitive, ("chan_send", "chan_recv"))
        self.assertTrue(leaky.leaks())
        self.assertFalse(t.variants["fixed"].leaks())
        self.assertEqual(t.wait_sites(), ("send_result", "ncast_leak"))
        self.assertEqual(t.cause, "")
        self.assertEqual(load_text(TRUTH.replace("go_flaky = false", 'go_flaky = false\ncause = "missing_receive"'))
                         .truth.cause, "missing_receive")

    def test_one_primitive_for_every_site(self):
        t = load_text(TRUTH.replace('primitive = ["chan_send", "chan_recv"]', 'primitive = "mutex"')).truth
        self.assertEqual(t.variants["leaky"].primitive, ("mutex", "mutex"))

    def test_refused(self):
        cases = {
            "unknown top key": (TRUTH.replace("go_flaky = false", "go_flakey = false"), "unknown key(s) go_flakey"),
            "unknown variant key": (TRUTH.replace("orphaned = true", "orphaned = true\nleaked = 1"),
                                    "unknown key(s) leaked"),
            "a name other than instances": (TRUTH.replace('"5 * instances"', '"5 * workers"'), "name 'workers'"),
            "a call": (TRUTH.replace('"5 * instances"', '"__import__(1)"'), "not allowed"),
            "not linear": (TRUTH.replace('"5 * instances"', '"5 * instances + 1"'), "does not grow linearly"),
            "negative": (TRUTH.replace('"0"\npinned_bytes = "0"', '"-instances"\npinned_bytes = "0"'),
                         "whole number >= 0"),
            "fractional": (TRUTH.replace('"81920 * instances"', '"instances / 2"'), "whole number"),
            "unknown primitive": (TRUTH.replace('"chan_recv"]', '"chan_receive"]'), "primitive = 'chan_receive'"),
            "sites and primitives differ": (TRUTH.replace('["chan_send", "chan_recv"]', '["a", "b", "c"]'),
                                            "2 wait_site(s) but 3 primitive(s)"),
            "leaks but no wait site": (TRUTH.replace('wait_site = ["send_result", "ncast_leak"]\n', ""),
                                       "gives wait_site, primitive and orphaned"),
            "no leak but a wait site": (TRUTH.replace('leaked_threads = "0"', 'leaked_threads = "0"\nwait_site = "x"'),
                                        "has no wait_site"),
            "more sites than threads": (TRUTH.replace('"5 * instances"', '"instances"'), "2 wait sites for 1"),
            "nothing leaks": (TRUTH.replace('"5 * instances"', '"0"').replace('"81920 * instances"', '"0"')
                              .replace('wait_site = ["send_result", "ncast_leak"]\n', "")
                              .replace('primitive = ["chan_send", "chan_recv"]\n', "")
                              .replace("orphaned = true\n", ""), "no variant leaks"),
            "no origin": (TRUTH.replace('origin = "LeakProf NCastLeak"\n', ""), "'origin' is required"),
            "bad regex": (TRUTH.replace("go_leaks = ['nCastLeak", "go_leaks = ['(nCastLeak"), "not a regular expression"),
            "orphaned not a bool": (TRUTH.replace("orphaned = true", 'orphaned = "yes"'), "true or false"),
            "unknown cause": (TRUTH.replace("go_flaky = false", 'go_flaky = false\ncause = "deadlock"'),
                              "cause = 'deadlock' is not one of lock_order"),
            "a site that is no function name": (TRUTH.replace('"ncast_leak"]', '"x) + census.count_at(y"]'),
                                                "is not a function name"),
            "deeply nested": (TRUTH.replace('"5 * instances"', '"' + "(" * 150 + "instances" + ")" * 150 + '"'),
                              "longer than 200"),
        }
        for name, (text, message) in cases.items():
            with self.subTest(name):
                self.assertIn(message, broken(text) or "loaded")


def zoo_snapshot(threads, in_use, census, unjoined=0):
    counters = {} if unjoined is None else {"unjoined_threads": unjoined}  # None: a run that did not count them
    return snapshot(threads=threads, alloc__in_use_bytes=in_use, census=census, counters=counters)


def group(count, *stack):
    return {"state": "S", "wchan": "futex_wait_queue", "syscall": "futex", "count": count,
            "stack": list(stack) + ["start_thread", "clone3"]}


MAIN = group(1, "census_json", "ll_snapshot_json", "ll_phase", "ll_main")


class TruthRows(unittest.TestCase):
    """The comparer's truth rows on fake native runs: they pass on a run that
    matches the truth and FAIL on every kind of disagreement."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)
        self.exp = self.tmp / "ncast_leak.toml"
        self.exp.write_text(textwrap.dedent(TRUTH))

    def tearDown(self):
        self._tmp.cleanup()

    def run_dir(self, variant, threads, in_use, census, instances=1, tool="native", baseline=3584, unjoined=0):
        return make_run(self.tmp / f"{variant}{threads}{in_use}{instances}{tool}{unjoined}",
                        [("baseline", zoo_snapshot(1, baseline, [MAIN])),
                         ("steady", zoo_snapshot(threads, in_use, census, unjoined))],
                        variant=variant, tool=tool, params={"instances": instances},
                        payload_bytes=81920 * instances, workers=instances)

    def verdicts(self, run):
        v = comparer.compare(run, self.exp)
        return v, {r.check: r.verdict for r in v.rows}

    LEAKY_CENSUS = [group(4, "wait_on", "ll_chan_send", "send_result"), group(1, "wait_on", "ll_chan_recv", "ncast_leak"),
                    MAIN]

    def test_matching_run_passes(self):
        v, rows = self.verdicts(self.run_dir("leaky", 6, 3584 + 101936, self.LEAKY_CENSUS))
        self.assertEqual(v.code, 0, comparer.table(v.rows))
        self.assertEqual(rows["truth: threads == 1 + truth.leaked_threads"], "PASS")
        self.assertEqual(rows["truth: counters.unjoined_threads == truth.unjoined_threads"], "PASS")
        self.assertEqual(len([r for r in rows if r.startswith("truth:")]), 7)
        fixed, rows = self.verdicts(self.run_dir("fixed", 1, 3584 + 20000, [MAIN]))
        self.assertEqual(fixed.code, 0, comparer.table(fixed.rows))
        self.assertEqual(rows["truth: census.count_at(send_result) == 0"], "PASS")

    def test_scales_with_instances(self):
        census = [dict(g, count=g["count"] * 1000) if g is not MAIN else g for g in self.LEAKY_CENSUS]
        v, _ = self.verdicts(self.run_dir("leaky", 5001, 3584 + 84849088, census, instances=1000))
        self.assertEqual(v.code, 0, comparer.table(v.rows))

    def test_wrong_thread_count_fails(self):
        v, rows = self.verdicts(self.run_dir("leaky", 7, 3584 + 101936, self.LEAKY_CENSUS))
        self.assertEqual(v.code, 1)
        self.assertEqual(rows["truth: threads == 1 + truth.leaked_threads"], "FAIL")

    def test_threads_elsewhere_fail_the_census_rows(self):
        census = [group(4, "wait_on", "ll_chan_send", "send_result"), group(1, "somewhere_else"), MAIN]
        v, rows = self.verdicts(self.run_dir("leaky", 6, 3584 + 101936, census))
        self.assertEqual(v.code, 1)
        self.assertEqual(rows["truth: census.count_at(send_result) + census.count_at(ncast_leak) == "
                              "truth.leaked_threads"], "FAIL")
        self.assertEqual(rows["truth: census.count_at(ncast_leak) >= truth.instances"], "FAIL")

    def test_a_thread_left_unjoined_fails(self):
        # A thread that returned and nobody joined: gone from the thread
        # count, still in glibc's descriptors (counters.unjoined_threads).
        v, rows = self.verdicts(self.run_dir("fixed", 1, 3584 + 20000, [MAIN], unjoined=1))
        self.assertEqual(v.code, 1)
        self.assertEqual(rows["truth: threads == 1 + truth.leaked_threads"], "PASS")
        self.assertEqual(rows["truth: counters.unjoined_threads == truth.unjoined_threads"], "FAIL")

    def test_unjoined_truth_must_be_met(self):
        self.exp.write_text(textwrap.dedent(TRUTH).replace('leaked_threads = "0"',
                                                           'leaked_threads = "0"\nunjoined_threads = "instances"'))
        v, rows = self.verdicts(self.run_dir("fixed", 1, 3584 + 20000, [MAIN], instances=3, unjoined=3))
        self.assertEqual(v.code, 0, comparer.table(v.rows))
        v, rows = self.verdicts(self.run_dir("fixed", 1, 3584 + 20000, [MAIN], instances=3, unjoined=2))
        self.assertEqual(rows["truth: counters.unjoined_threads == truth.unjoined_threads"], "FAIL")

    def test_uncounted_unjoined_threads_skip_their_row(self):
        for unjoined in (None, -1):  # no counter (an older kernel), or glibc's lists unreadable
            with self.subTest(unjoined=unjoined):
                v, rows = self.verdicts(self.run_dir("fixed", 1, 3584 + 20000, [MAIN], unjoined=unjoined))
                self.assertEqual(rows["truth: counters.unjoined_threads == truth.unjoined_threads"], "SKIP")
                self.assertEqual(v.code, 0, comparer.table(v.rows))

    def test_heap_below_the_pinned_bytes_fails(self):
        v, rows = self.verdicts(self.run_dir("leaky", 6, 3584 + 40000, self.LEAKY_CENSUS))
        self.assertEqual(rows["truth: alloc.in_use_bytes - alloc.in_use_bytes@baseline >= truth.pinned_bytes"], "FAIL")
        self.assertEqual(v.code, 1)

    def test_heap_far_above_the_pinned_bytes_fails(self):
        v, rows = self.verdicts(self.run_dir("leaky", 6, 3584 + 2 * 81920 + 65536, self.LEAKY_CENSUS))
        self.assertEqual(v.code, 1)
        self.assertTrue(any(k.startswith("truth: alloc.in_use_bytes - alloc.in_use_bytes@baseline <=") and x == "FAIL"
                            for k, x in rows.items()))

    def test_fixed_twin_that_leaks_fails(self):
        v, rows = self.verdicts(self.run_dir("fixed", 6, 3584 + 101936, self.LEAKY_CENSUS))
        self.assertEqual(v.code, 1)
        self.assertEqual(rows["truth: threads == 1 + truth.leaked_threads"], "FAIL")
        self.assertEqual(rows["truth: census.count_at(send_result) == 0"], "FAIL")

    def test_not_a_zoo_run_is_an_error(self):
        run = make_run(self.tmp / "plain", [("steady", snapshot())], variant="leaky")  # no params.instances
        v, rows = self.verdicts(run)
        self.assertEqual(rows["truth"], "ERROR")
        self.assertEqual(v.code, 1)

    def test_a_variant_without_truth_is_an_error(self):
        v, rows = self.verdicts(self.run_dir("other", 1, 3584, [MAIN]))
        self.assertEqual(rows["truth"], "ERROR")

    def test_tool_runs_get_no_truth_rows(self):
        run = self.run_dir("leaky", 6, 3584 + 101936, self.LEAKY_CENSUS, tool="memcheck")
        v = comparer.compare(run, self.exp)
        self.assertEqual(v.rows, [])
        self.assertIn("no expectations", v.message)

    def test_truth_of_run(self):
        exp = expected.load(self.exp)
        self.assertEqual(comparer.truth_of_run(exp, "leaky", 3),
                         {"leaks": True, "leaked_threads": 15, "unjoined_threads": 0, "pinned_bytes": 245760,
                          "orphaned": True})
        self.assertFalse(comparer.truth_of_run(exp, "fixed", 3)["leaks"])
        self.assertIsNone(comparer.truth_of_run(exp, "other", 3))


class WhereZooFilesAre(unittest.TestCase):
    def test_path_for_finds_the_zoo_folder(self):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            (d / "zoo").mkdir()
            (d / "a.toml").write_text("")
            (d / "zoo" / "k.toml").write_text("")
            self.assertEqual(expected.path_for("a", d), d / "a.toml")
            self.assertEqual(expected.path_for("k", d), d / "zoo" / "k.toml")
            self.assertEqual(expected.path_for("nope", d), d / "nope.toml")
            self.assertEqual(expected.scenarios_in(d), ["a"])
            self.assertEqual(expected.scenarios_in(d, "zoo"), ["k"])

    def test_every_zoo_expected_file_has_a_valid_truth(self):
        names = expected.scenarios_in(fakes.REPO / "expected", "zoo")
        self.assertTrue(names)
        for name in names:
            with self.subTest(name):
                exp = expected.load(expected.path_for(name, fakes.REPO / "expected"))
                self.assertIsNotNone(exp.truth, f"expected/zoo/{name}.toml has no [truth]")
                self.assertEqual(set(exp.truth.variants), {"leaky", "fixed"})
                self.assertIn(exp.truth.cause, expected.CAUSES, f"expected/zoo/{name}.toml: [truth] has no cause")

    def test_list_shows_the_zoo_with_pattern_and_origin(self):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run(LEAKLAB + ["list", "--build-dir", d], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        head, _, zoo = r.stdout.partition("\nzoo (")
        self.assertIn("blocked_workers", head)
        self.assertNotIn("ncast_leak", head)  # kernels are listed in their own section only
        self.assertIn("ncast_leak", zoo)
        self.assertIn("LeakProf NCastLeak", zoo)
        self.assertIn("N senders on an unbuffered channel", zoo)

    def test_unknown_group_member_is_usage(self):
        r = subprocess.run(LEAKLAB + ["matrix", "--scenarios", "zoo,no_such_kernel", "--build-dir", "/nonexistent"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("no_such_kernel", r.stderr)



class Catalog(unittest.TestCase):
    """docs/zoo.md's table: generated from the truth and a matrix; --check
    fails when the page says something else."""

    def doc(self, heaptrack_fixed="reported"):
        def c(variant, tool, verdict, kinds, reported, leaks):
            return {"scenario": "ncast_leak", "variant": variant, "tool": tool, "canary": False, "status": "match",
                    "verdict": verdict, "kinds": kinds, "reported_kinds": reported,
                    "reported_bytes": sum(kinds[k]["bytes"] for k in reported if k in kinds),
                    "truth": {"leaks": leaks, "pinned_bytes": 81920 if leaks else 0}}
        cells = [c("leaky", "heaptrack", "reported", {"leaked": {"bytes": 90000, "blocks": 3}}, ["leaked"], True),
                 c("fixed", "heaptrack", heaptrack_fixed, {"leaked": {"bytes": 2000, "blocks": 6}}, ["leaked"], False),
                 c("leaky", "lsan", "not reported", {"definite": {"bytes": 0, "blocks": 0}}, ["definite"], True),
                 c("leaky", "threadcheck", "reported", {"alive": {"bytes": 0, "blocks": 5}}, ["alive"], True)]
        return {"tools": ["heaptrack", "lsan", "threadcheck"], "scale": "quick", "made_at": "2026-01-01",
                "machine": {"kernel": "6.1"}, "cells": cells}

    def test_tools_column(self):
        from scripts.views import zoo_catalog
        self.assertEqual(zoo_catalog.tools_that_see("ncast_leak", self.doc()), "heaptrack\\*, threadcheck")
        self.assertEqual(zoo_catalog.tools_that_see("ncast_leak", self.doc("not reported")), "heaptrack, threadcheck")
        self.assertEqual(zoo_catalog.tools_that_see("cockroach10214", self.doc()), "not in the matrix yet")
        self.assertEqual(zoo_catalog.tools_that_see("ncast_leak", None), "not measured yet")

    def test_check_fails_on_a_stale_page(self):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            m = d / "m.json"
            m.write_text(__import__("json").dumps(self.doc()))
            page = d / "zoo.md"
            page.write_text("# zoo\n<!-- zoo-catalog:begin -->\nold table\n<!-- zoo-catalog:end -->\ntail\n")
            script = [sys.executable, str(fakes.SCRIPTS / "zoo_catalog.py"), "--matrix", str(m), "--doc", str(page)]
            stale = subprocess.run(script + ["--check"], capture_output=True, text=True)
            self.assertEqual(stale.returncode, 1, stale.stdout + stale.stderr)
            self.assertEqual(subprocess.run(script + ["--write"], capture_output=True).returncode, 0)
            self.assertTrue(page.read_text().endswith("<!-- zoo-catalog:end -->\ntail\n"))
            self.assertIn("| [ncast_leak](../scenarios/zoo/ncast_leak.c) |", page.read_text())
            self.assertEqual(subprocess.run(script + ["--check"], capture_output=True).returncode, 0)
            page.write_text("no markers\n")
            self.assertEqual(subprocess.run(script + ["--check"], capture_output=True).returncode, 2)


if __name__ == "__main__":
    unittest.main()
