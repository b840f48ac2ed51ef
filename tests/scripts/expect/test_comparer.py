"""Tests of the comparer on fake run directories: every kind of check must be able to fail."""

import json
import tempfile
import unittest
from pathlib import Path

import fakes
from fakes import MB, make_run, snapshot, write_expected
from scripts.expect import comparer


def check_file(tmp, *checks, extra=""):
    """An expected file with one [[check]] per (variant, phase, expect[, tool])."""
    parts = []
    for c in checks:
        variant, phase, expect = c[:3]
        tool = c[3] if len(c) > 3 else "native"
        phase_line = f'phase = "{phase}"\n' if phase else ""
        parts.append(f'[[check]]\nvariant = "{variant}"\ntool = "{tool}"\n{phase_line}'
                     f"expect = '{expect}'\nwhy = \"test\"\n")
    return write_expected(tmp, "\n".join(parts) + extra)


class Base(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def compare(self, run_dir, *checks, extra=""):
        return comparer.compare(run_dir, check_file(self.tmp, *checks, extra=extra))

    def verdicts(self, verdict):
        return {r.check: r.verdict for r in verdict.rows}


class EveryKindCanFail(Base):
    def run_with(self, **snap):
        return make_run(self.tmp, [("steady", snapshot(**snap)), ("end", snapshot(threads=1))])

    def test_ge_passes_and_fails(self):
        good = self.compare(self.run_with(threads=1001), ("leaky", "steady", "threads >= workers + 1"))
        self.assertEqual(good.code, 0, comparer.table(good.rows))
        bad = self.compare(self.run_with(threads=1000), ("leaky", "steady", "threads >= workers + 1"))
        self.assertEqual(bad.code, 1)
        self.assertEqual(self.verdicts(bad)["threads >= workers + 1"], "FAIL")

    def test_le_fails(self):
        v = self.compare(self.run_with(alloc__in_use_bytes=2 * MB),
                         ("leaky", "steady", "alloc.in_use_bytes <= 0.01 * payload_bytes"))
        self.assertEqual(v.code, 1)
        self.assertEqual(v.rows[0].verdict, "FAIL")
        # bytes are shown as MiB with one decimal, and raw
        self.assertEqual(v.rows[0].expected, "<= 0.8 MiB (800000)")
        self.assertEqual(v.rows[0].observed, "2.0 MiB (2097152)")

    def test_eq_fails(self):
        v = self.compare(self.run_with(), ("leaky", "steady", "census.largest == workers + 1"))
        self.assertEqual(v.code, 1)
        self.assertEqual(v.rows[0].verdict, "FAIL")

    def test_cross_phase_fails(self):
        run = make_run(self.tmp, [("exited", snapshot(rss_bytes=100 * MB)),
                                  ("released", snapshot(rss_bytes=50 * MB))])
        v = self.compare(run, ("leaky", None, "rss_bytes@released <= 0.2 * rss_bytes@exited"))
        self.assertEqual(v.code, 1)
        self.assertEqual(v.rows[0].verdict, "FAIL")
        run = make_run(self.tmp, [("exited", snapshot(rss_bytes=100 * MB)),
                                  ("released", snapshot(rss_bytes=10 * MB))])
        self.assertEqual(self.compare(run, ("leaky", None, "rss_bytes@released <= 0.2 * rss_bytes@exited")).code, 0)

    def test_missing_metric_is_error(self):
        v = self.compare(self.run_with(), ("leaky", "steady", "counters.no_such_counter == 0"))
        self.assertEqual(v.code, 1)
        self.assertEqual(v.rows[0].verdict, "ERROR")
        self.assertIn("no_such_counter", v.rows[0].detail)

    def test_missing_phase_is_error(self):
        v = self.compare(self.run_with(), ("leaky", "released", "threads <= 1000000"))
        self.assertEqual(v.code, 1)
        self.assertEqual(v.rows[0].verdict, "ERROR")
        self.assertIn("released", v.rows[0].detail)
        self.assertIn("steady, end", v.rows[0].detail)  # says which phases were seen

    def test_hyphenated_phase_via_underscore(self):
        run = make_run(self.tmp, [("after-load", snapshot(threads=3))])
        self.assertEqual(self.compare(run, ("leaky", None, "threads@after_load == 3")).code, 0)
        self.assertEqual(self.compare(run, ("leaky", "after-load", "threads == 4")).code, 1)

    def test_missing_phase_via_at_is_error(self):
        v = self.compare(self.run_with(), ("leaky", "steady", "threads@nowhere >= 0"))
        self.assertEqual(v.rows[0].verdict, "ERROR")

    def test_metric_without_phase_is_error(self):
        v = self.compare(self.run_with(), ("leaky", None, "threads >= 0"))
        self.assertEqual(v.rows[0].verdict, "ERROR")
        self.assertIn("no phase", v.rows[0].detail)

    def test_unknown_allocator_figure_is_error_not_pass(self):
        v = self.compare(self.run_with(), ("leaky", "steady", "alloc.released_bytes >= 0"))
        self.assertEqual(v.rows[0].verdict, "ERROR")
        self.assertIn("not known", v.rows[0].detail)

    def test_malformed_expect_is_error(self):
        v = self.compare(self.run_with(), ("leaky", "steady", "threads >>= 1"))
        self.assertEqual(v.code, 1)
        self.assertEqual(v.rows[0].verdict, "ERROR")

    def test_unsafe_expect_is_error(self):
        v = self.compare(self.run_with(), ("leaky", "steady", "__import__(\"os\").getpid() > 0"))
        self.assertEqual(v.code, 1)
        self.assertEqual(v.rows[0].verdict, "ERROR")

    def test_string_equality_fails(self):
        v = self.compare(self.run_with(), ("leaky", "steady", 'census.top_wchan == "pipe_read"'))
        self.assertEqual(v.rows[0].verdict, "FAIL")


class RunLevel(Base):
    def test_no_applicable_checks(self):
        run = make_run(self.tmp, [("steady", snapshot())], variant="fixed")
        v = self.compare(run, ("leaky", "steady", "threads >= 1"))
        self.assertEqual(v.code, 1)
        self.assertIn("no expectations for", v.message)
        self.assertEqual(v.rows, [])

    def test_tool_filter(self):
        run = make_run(self.tmp, [("steady", snapshot())], tool="memcheck")
        v = self.compare(run, ("leaky", "steady", "threads >= 1"))  # tool defaults to native
        self.assertIn("no expectations", v.message)

    def test_nonzero_exit_adds_a_failing_row(self):
        run = make_run(self.tmp, [("steady", snapshot())], exit_code=1)
        v = self.compare(run, ("leaky", "steady", "threads >= 1"))
        self.assertEqual(v.code, 1)
        self.assertEqual(self.verdicts(v)["exit_code == 0"], "FAIL")
        self.assertEqual(self.verdicts(v)["threads >= 1"], "PASS")

    def test_exit_99_passes_through_with_the_table(self):
        run = make_run(self.tmp, [("steady", snapshot())], exit_code=99)
        v = self.compare(run, ("leaky", "steady", "threads >= 1"))
        self.assertEqual(v.code, 99)
        self.assertEqual(self.verdicts(v)["exit_code == 0"], "FAIL")

    def test_exit_2_passes_through(self):
        run = make_run(self.tmp, [], exit_code=2)
        self.assertEqual(self.compare(run, ("leaky", "steady", "threads >= 1")).code, 2)

    def test_a_check_on_exit_code_replaces_the_automatic_row(self):
        run = make_run(self.tmp, [("steady", snapshot())], exit_code=99)
        v = self.compare(run, ("leaky", None, "exit_code == 99"))
        self.assertEqual(v.code, 0, comparer.table(v.rows))
        self.assertNotIn("exit_code == 0", self.verdicts(v))
        v = self.compare(run, ("leaky", None, "exit_code == 0"))
        self.assertEqual(v.code, 1)

    def test_runner_failure_is_99(self):
        run = make_run(self.tmp, [("steady", snapshot())], runner_status=99,
                       runner_errors=["runner timeout: the scenario ran past 5 s"])
        v = self.compare(run, ("leaky", "steady", "threads >= 1"))
        self.assertEqual(v.code, 99)
        self.assertIn("runner", self.verdicts(v))

    def test_last_phase_of_a_name_wins(self):
        run = make_run(self.tmp, [("idle", snapshot(threads=50)), ("idle", snapshot(threads=3))])
        self.assertEqual(self.compare(run, ("leaky", "idle", "threads == 3")).code, 0)
        self.assertEqual(self.compare(run, ("leaky", "idle", "threads == 50")).code, 1)

    def test_run_level_names(self):
        run = make_run(self.tmp, [("steady", snapshot())], params={"workers": 1000, "elements": 7, "hold-ms": 5})
        v = self.compare(run, ("leaky", None, "params.elements * workers == 7000"),
                         ("leaky", None, "params.hold_ms == 5"),
                         ("leaky", None, "canary_bytes == 0"),
                         ("leaky", None, "params.nope == 1"))
        self.assertEqual(self.verdicts(v)["params.elements * workers == 7000"], "PASS")
        self.assertEqual(self.verdicts(v)["canary_bytes == 0"], "PASS")
        self.assertEqual(self.verdicts(v)["params.hold_ms == 5"], "PASS")
        self.assertEqual(self.verdicts(v)["params.nope == 1"], "ERROR")

    def test_census_metrics(self):
        run = make_run(self.tmp, [("steady", snapshot())])
        v = self.compare(run, ("leaky", "steady", "census.groups == 2"),
                         ("leaky", "steady", 'census.top_state == "S"'),
                         ("leaky", "steady", "census.total == workers + 1"))
        self.assertEqual(v.code, 0, comparer.table(v.rows))

    def test_malformed_events_line_is_error(self):
        run = make_run(self.tmp, [("steady", snapshot())], raw_event_lines=['{"event":"phase",'])
        v = self.compare(run, ("leaky", "steady", "threads >= 1"))
        self.assertEqual(v.code, 1)
        self.assertIn("events.jsonl well-formed", self.verdicts(v))

    def test_verdict_json_is_written(self):
        run = make_run(self.tmp, [("steady", snapshot(threads=2))])
        self.compare(run, ("leaky", "steady", "threads >= workers"))
        doc = json.loads((run / "verdict.json").read_text())
        self.assertEqual(doc["result"], 1)
        self.assertEqual(doc["checks"][0]["verdict"], "FAIL")
        self.assertEqual(doc["checks"][0]["observed_value"], 2)
        self.assertEqual(doc["checks"][0]["expected_value"], 1000)

    def test_broken_expected_file_fails(self):
        run = make_run(self.tmp, [("steady", snapshot())])
        path = write_expected(self.tmp, "[[check]]\nvariant = 'leaky'\n")
        v = comparer.compare(run, path)
        self.assertEqual(v.code, 1)
        self.assertIn("expect", v.message)


class ToolMetrics(Base):
    def heap_run(self, summary, profile="heap/01-steady.heap"):
        run = make_run(self.tmp, [("steady", snapshot(), {"heap_profile": str(self.tmp / profile)})],
                       tool="heapprof", allocator="tcmalloc")
        (run / "heap").mkdir(exist_ok=True)
        (run / "heap" / "01-steady.json").write_text(json.dumps(summary))
        return run

    def test_truncated_heap_profile_never_passes(self):
        run = self.heap_run({"truncated": "it is cut before the MAPPED_LIBRARIES section"})
        v = self.compare(run, ("leaky", "steady", 'heapprof.top_function == "fill_buffer"', "heapprof"),
                         ("leaky", "steady", "heapprof.bytes(fill_buffer) >= 0", "heapprof"))
        self.assertEqual(v.code, 1)
        for row in v.rows[:2]:
            self.assertEqual(row.verdict, "ERROR")
            self.assertIn("heap profile truncated", row.detail)

    def test_heapprof_metrics(self):
        run = self.heap_run({"truncated": None, "top_function": "fill_buffer", "top_share": 0.98,
                             "total_bytes": 131 * MB, "sites": {"fill_buffer": 130 * MB},
                             "flat": {"ll_xrealloc": 130 * MB}, "cum": {"fill_buffer": 130 * MB}})
        checks = [
            ("leaky", "steady", 'heapprof.top_function == "fill_buffer"', "heapprof"),
            ("leaky", "steady", "heapprof.top_share >= 0.9", "heapprof"),
            ("leaky", "steady", "heapprof.bytes(fill_buffer) >= 0.95 * payload_bytes", "heapprof"),
            ("leaky", "steady", "heapprof.cum_bytes(fill_buffer) >= 0.95 * payload_bytes", "heapprof"),
            ("leaky", "steady", "heapprof.bytes(not_in_profile) == 0", "heapprof"),
        ]
        self.assertEqual(self.compare(run, *checks).code, 0)
        v = self.compare(run, ("leaky", "steady", 'heapprof.top_function == "main"', "heapprof"),
                         ("leaky", "steady", "heapprof.top_share >= 0.99", "heapprof"))
        self.assertEqual([r.verdict for r in v.rows[:2]], ["FAIL", "FAIL"])

    def test_heapprof_name_on_native_run_is_error(self):
        run = make_run(self.tmp, [("steady", snapshot())])
        v = self.compare(run, ("leaky", "steady", "heapprof.top_share >= 0.9"))
        self.assertEqual(v.rows[0].verdict, "ERROR")

    def memcheck_run(self):
        run = make_run(self.tmp, [("steady", snapshot())], tool="memcheck")
        report = {"kinds": {"definitely_lost": {"bytes": 104, "blocks": 2},
                            "indirectly_lost": {"bytes": 64, "blocks": 1},
                            "possibly_lost": {"bytes": 0, "blocks": 0},
                            "still_reachable": {"bytes": 80 * MB, "blocks": 1000}},
                  "by_function": {"definitely_lost": {"lose_list": {"bytes": 64, "blocks": 1}}},
                  "errors": {}, "error_count": 0, "finished": True}
        (run / "memcheck.json").write_text(json.dumps(report))
        return run

    def test_memcheck_metrics(self):
        run = self.memcheck_run()
        ok = self.compare(run, ("leaky", None, "memcheck.still_reachable_bytes >= payload_bytes", "memcheck"),
                          ("leaky", None, "memcheck.definitely_lost_blocks == 2", "memcheck"),
                          ("leaky", None, "memcheck.bytes_by_function(definite, lose_list) == 64", "memcheck"),
                          ("leaky", None, "memcheck.bytes_by_function(reachable, nobody) == 0", "memcheck"))
        self.assertEqual(ok.code, 0, comparer.table(ok.rows))
        bad = self.compare(run, ("leaky", None, "memcheck.definitely_lost_bytes == 0", "memcheck"),
                           ("leaky", None, "memcheck.no_such_bytes == 0", "memcheck"),
                           ("leaky", None, "memcheck.bytes_by_function(sorta, f) == 0", "memcheck"))
        self.assertEqual([r.verdict for r in bad.rows[:3]], ["FAIL", "ERROR", "ERROR"])

    def test_memcheck_without_report_is_error(self):
        run = make_run(self.tmp, [("steady", snapshot())], tool="memcheck")
        v = self.compare(run, ("leaky", None, "memcheck.definitely_lost_bytes == 0", "memcheck"))
        self.assertEqual(v.rows[0].verdict, "ERROR")


    def cause_checker_run(self, causes):
        run = make_run(self.tmp, [("steady", snapshot())], tool="drd")
        report = {"tool": "drd", "verdict": "reported" if causes else "not reported", "kinds": {},
                  "error_count": sum(causes.values()), "cause": next(iter(causes), "none")}
        if causes is not None:
            report["causes"] = causes
        (run / "tool.json").write_text(json.dumps(report))
        return run

    def test_tool_reports_counts_one_cause(self):
        # The canary rule of helgrind and drd: the canary's own reports, whatever else
        # the twin reports (expected/tools/{helgrind,drd}.toml canary_one_report).
        run = self.cause_checker_run({"data_race": 2, "lock_order": 1})
        ok = self.compare(run, ("leaky", None, "tool.reports(lock_order) == 1", "drd"),
                          ("leaky", None, "tool.reports(lost_wakeup) == 0", "drd"))
        self.assertEqual(ok.code, 0, comparer.table(ok.rows))
        bad = self.compare(run, ("leaky", None, "tool.reports(data_race) == 1", "drd"))
        self.assertEqual(bad.rows[0].verdict, "FAIL")

    def test_tool_reports_of_a_tool_without_causes_is_error(self):
        run = make_run(self.tmp, [("steady", snapshot())], tool="drd")
        (run / "tool.json").write_text(json.dumps({"tool": "drd", "verdict": "not reported"}))
        v = self.compare(run, ("leaky", None, "tool.reports(data_race) == 0", "drd"))
        self.assertEqual(v.rows[0].verdict, "ERROR")


class Table(unittest.TestCase):
    def test_table_lists_why_of_failures(self):
        rows = [comparer.Row("threads >= 2", ">= 2", "1", "FAIL", why="main plus a worker"),
                comparer.Row("fds <= 10", "<= 10", "4", "PASS", why="unused")]
        text = comparer.table(rows)
        self.assertIn("check", text.splitlines()[0])
        self.assertIn("why it should hold: main plus a worker", text)
        self.assertNotIn("unused", text)


if __name__ == "__main__":
    unittest.main()
