"""check_micro.py must fail when an answer is not the asserted one: fed a
wrong expectation (a wrong kind, a leak Go does not expect, a documented
difference taken away), it exits 1 and names the case; a cases file whose
Go regexp does not match the leak it stands for is refused (2); reports
are read right, and silence is never read as "no leak".

The runs need the micro binary and both libraries (MICRO_PROGRAM,
ORPHANS_LIB, THREADCHECK_LIB, set by tests/micro/CMakeLists.txt)."""
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import check_micro  # noqa: E402

CASES = (HERE / "cases.toml").read_text()

ORPHANS_REPORT = """\
==5482== orphans at exit: 2 leaked threads in 2 groups: blocked on objects that no thread able to run can reach

1 leaked thread @ ll_waitgroup_wait <- mixed_func1 <- start_thread <- __clone3
  waiting: cond, futex 0x7f1dc8000bd0 in heap block 0x7f1dc8000b70 (120 bytes) that nothing able to run reaches
  pins 824 bytes in 4 heap blocks
    #0 0x7f1dcdfddf14 __futex_abstimed_wait_common (/usr/lib/x86_64-linux-gnu/libc.so.6)

1000 leaked threads @ mutex_stack_func1 <- start_thread <- __clone3
  waiting: mutex, futex 0x7fd78c069e50 on the stack of thread 5488, which cannot run; 1000 distinct objects
"""

THREADCHECK_REPORT = """\
threadcheck: found unexpected threads at exit: 2 threads in 2 groups (pid 6697)

1 @ lock_twice <- rw_mutex_rlock_func1 <- start_thread <- __clone3
#\tstate S (sleeping), syscall futex, wchan futex_do_wait, futex 0x7f982c000bc0; stack captured; tids 6698
#\t0x7f91b2e06e94\t__futex_abstimed_wait_common+0xc4\t/usr/lib/x86_64-linux-gnu/libc.so.6
#\t0x7f91b2e0f956\tpthread_rwlock_rdlock+0x1e8\t/usr/lib/x86_64-linux-gnu/libc.so.6
#\t0x5596b3226fa7\tlock_twice+0x36\t/work/main/tests/micro/micro.c:331

1 @ ll_select <- nil_recv_func1 <- start_thread <- __clone3
#\tstate S (sleeping), syscall futex, wchan futex_do_wait, futex 0x7f982c000bc0; stack captured; tids 6698
#\t0x7f9832898f14\t__futex_abstimed_wait_common+0xc4\t/usr/lib/x86_64-linux-gnu/libc.so.6
#\t0x7f983289b5d8\tpthread_cond_wait+0x1e8\t/usr/lib/x86_64-linux-gnu/libc.so.6

threadcheck: SUMMARY: 2 unexpected threads in 2 groups (exit code 66)
"""


class Reports(unittest.TestCase):
    def test_orphans_groups(self):
        self.assertEqual(check_micro.parse_orphans(ORPHANS_REPORT),
                         [("mixed_func1", "cond", 1, "heap"), ("mutex_stack_func1", "mutex", 1000, "stack")])

    def test_orphans_clean_must_say_so(self):
        self.assertEqual(check_micro.parse_orphans(
            "==1== orphans at exit: no leaked threads (2 threads, 1 blocked, all wakeable)\n"), [])
        with self.assertRaises(check_micro.RunError):  # silence (verbosity=0) is not "no leak"
            check_micro.parse_orphans("")
        with self.assertRaises(check_micro.RunError):
            check_micro.parse_orphans("==1== orphans at exit: analysis incomplete: thread 7 blocks the stop signal\n")

    def test_threadcheck_groups_and_kinds(self):
        self.assertEqual(check_micro.parse_threadcheck(THREADCHECK_REPORT),
                         [("nil_recv_func1", "cond", 1), ("rw_mutex_rlock_func1", "rwlock", 1)])
        self.assertEqual(check_micro.parse_threadcheck("threadcheck: no unexpected threads at exit (pid 3)\n"), [])
        with self.assertRaises(check_micro.RunError):
            check_micro.parse_threadcheck("")


class Judge(unittest.TestCase):
    def setUp(self):
        self.cases = {case["variant"]: case for case in check_micro.load_cases(HERE / "cases.toml")}

    def test_go_answer_agrees(self):
        verdict, problems = check_micro.judge(self.cases["chan_recv"], "orphans",
                                              [[("chan_recv_func1", "cond", 1, "heap")]] * 3)
        self.assertEqual((verdict, problems), ("yes", []))

    def test_documented_difference(self):
        verdict, problems = check_micro.judge(self.cases["no_leak_global"], "threadcheck",
                                              [[("no_leak_global_func1", "cond", 1)]] * 3)
        self.assertEqual((verdict, problems), ("no, documented", []))

    def test_one_run_of_three_differs(self):
        answers = [[("mutex_heap_func1_1", "mutex", 1000, "heap")]] * 2 + [[("mutex_heap_func1_1", "mutex", 999, "heap")]]
        verdict, problems = check_micro.judge(self.cases["mutex_heap"], "orphans", answers)
        self.assertEqual(verdict, "FAIL")
        self.assertIn("run 3", problems[0])

    def test_false_accusation(self):
        verdict, _ = check_micro.judge(self.cases["no_leak_global"], "orphans",
                                       [[("no_leak_global_func1", "cond", 1, "heap")]])
        self.assertEqual(verdict, "FAIL")


def needs_build(test):
    names = ("MICRO_PROGRAM", "ORPHANS_LIB", "THREADCHECK_LIB")
    return unittest.skipUnless(all(os.environ.get(n) for n in names), "needs " + ", ".join(names))(test)


@needs_build
class RealRuns(unittest.TestCase):
    """The checker run for real, on cases files with one thing wrong."""

    def check(self, cases_text, case, tool, *extra):
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "cases.toml"
            path.write_text(cases_text)
            proc = subprocess.run(
                [sys.executable, str(HERE / "check_micro.py"), "--program", os.environ["MICRO_PROGRAM"],
                 "--orphans", os.environ["ORPHANS_LIB"], "--threadcheck", os.environ["THREADCHECK_LIB"],
                 "--cases", str(path), "--case", case, "--tool", tool, "--repeat", "1", *extra],
                capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout + proc.stderr

    def replaced(self, old, new):
        self.assertEqual(CASES.count(old), 1, old)
        return CASES.replace(old, new)

    def test_control_passes(self):
        status, out = self.check(CASES, "chan_recv", "orphans")
        self.assertEqual(status, 0, out)
        self.assertIn("orphans: yes", out)

    def test_wrong_kind_fails(self):
        wrong = self.replaced('function = "chan_recv_func1", kind = "cond"', 'function = "chan_recv_func1", kind = "mutex"')
        status, out = self.check(wrong, "chan_recv", "orphans")
        self.assertEqual(status, 1, out)
        self.assertIn("FAIL chan_recv: orphans, run 1", out)
        # the evidence: the library's report of the run, its figures included
        self.assertIn("chan_recv: orphans, run 1, its report:", out)
        self.assertIn("orphans: 2 threads (1 blocked)", out)

    def test_first_tid_runs_from_that_id(self):
        """--first-tid: the run's process ID is the one asked for (or 77 where no PID namespace can be made)."""
        status, out = self.check(CASES, "chan_recv", "orphans", "--first-tid", "111000")
        if status == 77:
            self.skipTest(out.strip())
        self.assertEqual(status, 0, out)
        self.assertIn("orphans: yes", out)

    def test_first_tid_usage(self):
        status, out = self.check(CASES, "chan_recv", "orphans", "--first-tid", "5")
        self.assertEqual(status, 2, out)
        self.assertIn("between 1000 and 4,000,000", out)
        status, out = self.check(CASES, "chan_recv", "threadcheck", "--first-tid", "111000")
        self.assertEqual(status, 2, out)
        self.assertIn("takes --tool orphans", out)

    def test_leak_go_does_not_expect_fails(self):
        """NoLeakGlobal asserted to leak: orphans (rightly) does not report it."""
        wrong = self.replaced('go_test = "NoLeakGlobal"\nleaks = []',
                              'go_test = "NoLeakGlobal"\nleaks = [{go = \'NoLeakGlobal\\.func1\\(.* \\[chan receive\\]\', '
                              'go_function = "NoLeakGlobal.func1", go_reason = "chan receive", '
                              'function = "no_leak_global_func1", kind = "cond", threads = 1, place = "heap"}]')
        status, out = self.check(wrong, "no_leak_global", "orphans")
        self.assertEqual(status, 1, out)
        self.assertIn("missing: 1 @ no_leak_global_func1 [cond, heap]", out)

    def test_undocumented_difference_fails(self):
        """threadcheck's NoLeakGlobal answer without its documented exception."""
        start = CASES.index("\n[case.threadcheck]\n")
        status, out = self.check(CASES[:start], "no_leak_global", "threadcheck")
        self.assertEqual(status, 1, out)
        self.assertIn("FAIL no_leak_global: threadcheck", out)

    def test_wrong_place_fails(self):
        """WaitGroup's wg asserted on the heap: the port keeps it on the thread's stack."""
        wrong = self.replaced('kind = "cond", threads = 1, place = "stack"', 'kind = "cond", threads = 1, place = "heap"')
        status, out = self.check(wrong, "wait_group", "orphans")
        self.assertEqual(status, 1, out)
        self.assertIn("1 @ wait_group_func1 [cond, stack]", out)

    def test_wrong_count_fails(self):
        wrong = self.replaced('kind = "mutex", threads = 1000, place = "stack"', 'kind = "mutex", threads = 999, place = "stack"')
        status, out = self.check(wrong, "mutex_stack", "threadcheck")
        self.assertEqual(status, 1, out)
        self.assertIn("1000 @ mutex_stack_func1 [mutex]", out)

    def test_mistranscribed_go_regexp_is_refused(self):
        wrong = self.replaced("'Select\\.func1\\(.* \\[select\\]'", "'Select\\.func1\\(.* \\[select \\(no cases\\)\\]'")
        status, out = self.check(wrong, "select", "orphans")
        self.assertEqual(status, 2, out)
        self.assertIn("does not match 'Select.func1() [select]:'", out)

    def test_documented_difference_needs_why(self):
        wrong = self.replaced("why = \"threadcheck is goleak", "because = \"threadcheck is goleak")
        status, out = self.check(wrong, "no_leak_global", "threadcheck")
        self.assertEqual(status, 2, out)
        self.assertIn("without a `why`", out)


if __name__ == "__main__":
    unittest.main()
