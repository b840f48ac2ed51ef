"""The census by stack in expected files (census.top_frame, census.largest_stack,
census.count_at(F)) and threadcheck's report parser: each fed a violating case."""

import json
import tempfile
import unittest
from pathlib import Path

from fakes import make_run, snapshot, write_expected
from scripts.expect import comparer
from scripts.tools import threadcheck
from scripts.tools import tools


def group(count, stack, system_prefix=("pthread_cond_wait",), status="captured", **extra):
    frames = [{"function": f, "file": None, "line": None, "address": "0x1", "module": "/lib/libc.so.6",
               "system": True, "inlined": False} for f in system_prefix]
    frames += [{"function": f, "file": "x.c", "line": 3, "address": "0x2", "module": "/bin/x",
                "system": f in ("start_thread", "__clone3"), "inlined": False} for f in stack]
    return {"state": "S", "wchan": "futex_do_wait", "syscall": "futex", "count": count,
            "wait_address": "0x10", "wait_addresses": 1, "stack_status": status,
            "stack": list(stack), "frames": frames, **extra}


WORKERS = group(1000, ["ll_chan_recv", "worker", "start_thread", "__clone3"])
MAIN = {**group(1, ["census_json", "ll_phase", "main"], system_prefix=()), "state": "R", "syscall": "read"}


class CensusByStack(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def check(self, census, expect):
        run = make_run(self.tmp, [("steady", snapshot(census=census))])
        exp = write_expected(self.tmp, f'[[check]]\nvariant = "leaky"\nphase = "steady"\nexpect = \'{expect}\'\n')
        v = comparer.compare(run, exp)
        return v.rows[0].verdict, v.rows[0]

    def test_top_frame_passes_and_fails(self):
        self.assertEqual(self.check([WORKERS, MAIN], 'census.top_frame == "ll_chan_recv"')[0], "PASS")
        self.assertEqual(self.check([WORKERS, MAIN], 'census.top_frame == "worker"')[0], "FAIL")

    def test_top_frame_skips_libc_and_pthread_frames(self):
        # a census without the "system" marks: told by name
        bare = {**WORKERS, "frames": None, "stack": ["__futex_abstimed_wait_common", "pthread_cond_wait",
                                                     "ll_chan_recv", "worker"]}
        self.assertEqual(self.check([bare], 'census.top_frame == "ll_chan_recv"')[0], "PASS")

    def test_top_frame_drops_clone_suffixes(self):
        clone = group(5, ["fill_buffer.isra.0", "worker"])
        self.assertEqual(self.check([clone], 'census.top_frame == "fill_buffer"')[0], "PASS")

    def test_largest_stack(self):
        self.assertEqual(self.check([MAIN, WORKERS], 'census.largest_stack == '
                                    '"ll_chan_recv <- worker <- start_thread <- __clone3"')[0], "PASS")
        self.assertEqual(self.check([MAIN, WORKERS], 'census.largest_stack == "ll_chan_recv <- worker"')[0], "FAIL")

    def test_count_at_sums_every_group_holding_the_function(self):
        other = group(7, ["ll_chan_send", "worker", "start_thread"])
        self.assertEqual(self.check([WORKERS, other, MAIN], "census.count_at(worker) == 1007")[0], "PASS")
        self.assertEqual(self.check([WORKERS, other, MAIN], "census.count_at(ll_chan_recv) == 1000")[0], "PASS")
        self.assertEqual(self.check([WORKERS, other, MAIN], "census.count_at(pthread_cond_wait) == 1007")[0], "PASS")
        self.assertEqual(self.check([WORKERS, other, MAIN], "census.count_at(worker) == 1000")[0], "FAIL")
        self.assertEqual(self.check([WORKERS, MAIN], "census.count_at(nowhere) == 0")[0], "PASS")

    def test_a_census_without_stacks_is_an_error_not_a_pass(self):
        old = [{"state": "S", "wchan": "futex", "syscall": "futex", "count": 1000}]
        verdict, row = self.check(old, 'census.top_frame == "ll_chan_recv"')
        self.assertEqual(verdict, "ERROR")
        self.assertIn("no stacks", row.detail)

    def test_an_uncaptured_largest_group_is_an_error(self):
        poll = {**group(3, []), "syscall": "poll",
                "stack_status": "not captured: in a system call a signal would interrupt (EINTR)"}
        verdict, row = self.check([poll], 'census.top_frame == "x"')
        self.assertEqual(verdict, "ERROR")
        self.assertIn("EINTR", row.detail)

    def test_count_at_needs_its_argument(self):
        verdict, row = self.check([WORKERS], "census.count_at == 1")
        self.assertEqual(verdict, "ERROR")


REPORT = """threadcheck: found unexpected threads at exit: 1001 threads in 2 groups (pid 42)

1000 @ ll_chan_recv <- worker <- start_thread <- __clone3
#\tstate S (sleeping), syscall futex, wchan futex_do_wait, futex 0x55d0c8a2e2c8; stack captured; tids 43 +999 more
#\t0x7ff569c445d8\tpthread_cond_wait+0x1e8\t/usr/lib/x86_64-linux-gnu/libc.so.6
#\t0x559daaaab7bc\tll_chan_recv+0x3c\t/work/main/common/chan.c:53
#\t0x559daaaa770e\tworker+0x2e\t/work/main/scenarios/blocked_workers.c:92

1 @ __poll
#\tstate S (sleeping), syscall poll, wchan poll_schedule_timeout.constprop.0; stack not captured: in a system call a signal would interrupt (EINTR) (poll); tids 44
#\t0x7f3140f9926f\t__poll+0x4f\t/usr/lib/x86_64-linux-gnu/libc.so.6

threadcheck: SUMMARY: 1001 unexpected threads in 2 groups (exit code 66)
"""


class ThreadcheckReport(unittest.TestCase):
    def test_groups_stacks_and_totals(self):
        p = threadcheck.parse(REPORT)
        self.assertEqual((p["threads"], p["summary"], p["header"]), (1001, (1001, 2), (1001, 2)))
        g = p["groups"][0]
        self.assertEqual((g["count"], g["stack"][:2], g["syscall"], g["futex"], g["status"]),
                         (1000, ["ll_chan_recv", "worker"], "futex", "0x55d0c8a2e2c8", "captured"))
        self.assertEqual(g["frames"][1], {"address": "0x559daaaab7bc", "function": "ll_chan_recv",
                                          "where": "/work/main/common/chan.c:53"})
        self.assertEqual(threadcheck.top_function(g), "ll_chan_recv")
        self.assertEqual(p["groups"][1]["status"].split(":")[0], "not captured")

    def run_dir(self, text, exit_code=66):
        tmp = tempfile.mkdtemp()
        if text is not None:
            (Path(tmp) / "threadcheck.4242").write_text(text)
        spec = type("Spec", (), {"build_dir": tmp})()
        return spec, tmp, {"process_exit_code": exit_code}

    def test_postprocess_counts_threads_as_blocks(self):
        spec, tmp, info = self.run_dir(REPORT)
        doc, errors, _ = threadcheck.postprocess(spec, None, tmp, info)
        self.assertEqual(errors, [])
        self.assertEqual(doc["verdict"], tools.REPORTED)
        self.assertEqual(doc["kinds"]["alive"], {"bytes": None, "blocks": 1001})
        self.assertEqual(doc["top_function"], "ll_chan_recv")
        self.assertEqual(doc["by_function"]["alive"]["__poll"]["blocks"], 1)

    def test_a_truncated_report_is_an_error(self):
        cut = REPORT[:REPORT.index("\n1 @ __poll")] + "\n"
        spec, tmp, info = self.run_dir(cut)
        _, errors, _ = threadcheck.postprocess(spec, None, tmp, info)
        self.assertTrue(any("not fully parsed" in e for e in errors), errors)

    def test_no_report_is_not_reported(self):
        spec, tmp, info = self.run_dir(None, exit_code=0)
        doc, errors, notes = threadcheck.postprocess(spec, None, tmp, info)
        self.assertEqual((doc["verdict"], errors), (tools.NOT_REPORTED, []))
        self.assertTrue(notes)

    def test_bad_options_are_an_error(self):
        spec, tmp, info = self.run_dir(None, exit_code=2)
        (Path(tmp) / "stderr.txt").write_text("threadcheck: THREADCHECK_OPTIONS: unknown option 'x'\n")
        _, errors, _ = threadcheck.postprocess(spec, None, tmp, info)
        self.assertTrue(any("unknown option" in e for e in errors), errors)

    def test_kind_alive_is_a_thread_kind(self):
        self.assertIn("alive", tools.KINDS)
        self.assertIn("alive", tools.THREAD_KINDS)


if __name__ == "__main__":
    unittest.main()
