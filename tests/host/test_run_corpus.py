"""The host corpus' runner must be able to fail (issue 20's negative control).

A detector that changes its host has to be flagged: libhost_fake.so
(fake_preload.c) writes to stdout, changes the exit status, or adds a stray
line to a report; a fake `leaklab threads` sends the target a signal (the
targets' own check must catch the EINTR and the short write it causes). The
same comparisons with a fake that changes nothing must pass, so none of these
tests passes by failing everything.

Needs HOST_FAKE_LIB and HOST_BIN (tests/host/CMakeLists.txt sets them).
"""
import ctypes
import os
import re
import signal
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_corpus as rc  # noqa: E402

SYS_TGKILL = 234  # x86_64
LOOK_SETTLE_S = 10


def _pending_unblocked(pid, tid, bit):
    """Whether thread tid of pid has signal `bit` pending and not blocked (it is yet to take it)."""
    try:
        fields = dict(line.split(":\t", 1) for line in
                      Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines() if ":\t" in line)
    except OSError:
        return False  # the thread is gone
    return bool(int(fields["SigPnd"], 16) & bit) and not int(fields["SigBlk"], 16) & bit

FAKE = os.environ.get("HOST_FAKE_LIB")
HOST_BIN = os.environ.get("HOST_BIN")


def runner(run_limit=rc.RUN_LIMIT_S):
    args = rc.argparse.Namespace(build_dir=os.environ.get("LEAKLAB_BUILD_DIR"), host_bin=HOST_BIN,
                                 threadcheck_lib=None, orphans_lib=None, leaklab=None)
    return rc.Runner(rc.paths_from(args), run_limit=run_limit)


def probe(expect, mode):
    """host_ctor (prints, exits 0, no thread left) with the fake in a given mode."""
    return rc.Case("probe", "negative control", ["{host}/host_ctor"],
                   {"threadcheck": (expect, "negative control")}, env={"HOST_FAKE": mode})


@unittest.skipUnless(FAKE and HOST_BIN, "HOST_FAKE_LIB and HOST_BIN not set (run through ctest)")
class PreloadComparison(unittest.TestCase):
    def outcome(self, expect, mode, run_limit=rc.RUN_LIMIT_S):
        return rc.run_one(runner(run_limit), probe(expect, mode), "threadcheck", lib=FAKE)

    def test_a_host_that_never_ends_is_flagged(self):
        o = self.outcome(rc.CLEAN, "hang", run_limit=5)
        self.assertEqual(o.verdict, "FAIL")
        self.assertEqual(o.under.status, "timeout")
        self.assertIn("did not end within the time bound", o.problems)

    def test_a_process_left_behind_is_flagged(self):
        o = self.outcome(rc.CLEAN, "child")
        self.assertEqual(o.verdict, "FAIL")
        left = [p for p in o.problems if p.startswith("left processes behind")]
        self.assertTrue(left, o.problems)
        pid = int(re.search(r"behind: (\d+)", left[0]).group(1))
        try:   # killed by the runner: gone, or a zombie until init reaps it
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
        self.assertIn(state, ("gone", "Z"), f"the fake's child {pid} is still alive")

    def test_unchanged_host_passes(self):
        o = self.outcome(rc.CLEAN, "none")
        self.assertEqual(o.verdict, "pass", o.problems)

    def test_a_line_on_stdout_is_flagged(self):
        o = self.outcome(rc.CLEAN, "stdout")
        self.assertEqual(o.verdict, "FAIL")
        self.assertTrue(any(p.startswith("stdout differs") for p in o.problems), o.problems)

    def test_a_changed_exit_status_is_flagged(self):
        o = self.outcome(rc.CLEAN, "status")
        self.assertEqual(o.verdict, "FAIL")
        self.assertTrue(any("exit status 5" in p for p in o.problems), o.problems)

    def test_a_report_where_none_is_expected_is_flagged(self):
        o = self.outcome(rc.CLEAN, "report")
        self.assertEqual(o.verdict, "FAIL")
        self.assertTrue(any("exit status 66" in p for p in o.problems), o.problems)
        self.assertTrue(any(p.startswith("stderr differs") for p in o.problems), o.problems)

    def test_a_well_formed_report_passes_where_expected(self):
        o = self.outcome(rc.REPORTS, "report")
        self.assertEqual(o.verdict, "pass", o.problems)

    def test_a_stray_line_inside_a_report_is_flagged(self):
        o = self.outcome(rc.REPORTS, "report_junk")
        self.assertEqual(o.verdict, "FAIL")
        self.assertTrue(any("not the report" in p and "short count" in p for p in o.problems), o.problems)

    def test_a_missing_report_is_flagged(self):
        o = self.outcome(rc.REPORTS, "none")
        self.assertEqual(o.verdict, "FAIL")
        self.assertTrue(any("expected the report's 66" in p for p in o.problems), o.problems)
        self.assertTrue(any(p.startswith("no report") for p in o.problems), o.problems)


@unittest.skipUnless(HOST_BIN, "HOST_BIN not set (run through ctest)")
class ObservedComparison(unittest.TestCase):
    """A fake `leaklab threads` that signals the target (SIGWINCH: the targets
    handle it with SA_RESTART, unblocked only in the waiting thread)."""

    def outcome(self, case, looker):
        r = runner()
        r.look = looker
        return rc.run_one(r, rc.BY_NAME[case], "threads")

    @staticmethod
    def signalling_look(pid):
        # To every thread by its tid (tgkill), not to the process: a
        # process-directed signal once went undelivered to the waiting
        # thread in a run of the full tier (the fault was not injected, so
        # the control "passed"); a thread-directed one lands where it must.
        libc = ctypes.CDLL(None, use_errno=True)
        tids = os.listdir(f"/proc/{pid}/task")
        for tid in tids:
            libc.syscall(SYS_TGKILL, pid, int(tid), signal.SIGWINCH)
        # ... and returns once each thread that takes it has taken it, as a real look returns
        # after its work: the target wakes its waiter on the word that follows the look, and
        # a waiter scheduled only after that wake finds its event ready, so epoll_wait
        # returns it and the handler runs without EINTR (seen once, under the full tier's
        # load). Bounded: a thread that never takes it is the target's problem to report.
        bit = 1 << (signal.SIGWINCH - 1)
        deadline = time.monotonic() + LOOK_SETTLE_S
        while time.monotonic() < deadline and any(_pending_unblocked(pid, tid, bit) for tid in tids):
            time.sleep(0.001)  # polling the kernel's view of the target, not synchronising by time
        return (0, 1, "fake look: sent SIGWINCH to every thread")

    @staticmethod
    def quiet_look(pid):
        return (0, 1, "fake look: did nothing")

    def test_a_quiet_look_passes(self):
        for case in ("epoll_wait", "pipe_write"):
            o = self.outcome(case, self.quiet_look)
            self.assertEqual(o.verdict, "pass", (case, o.problems))

    def test_eintr_from_epoll_wait_is_flagged(self):
        o = self.outcome("epoll_wait", self.signalling_look)
        self.assertEqual(o.verdict, "FAIL", (o.under.dumps, o.under.stdout, o.under.stderr[-500:]))
        self.assertTrue(any("Interrupted system call" in p for p in o.problems), o.problems)
        self.assertTrue(any("exit status 1" in p for p in o.problems), o.problems)

    def test_a_short_write_is_flagged(self):
        o = self.outcome("pipe_write", self.signalling_look)
        self.assertEqual(o.verdict, "FAIL")
        self.assertTrue(any("short count" in p for p in o.problems), o.problems)

    def test_a_failed_look_is_flagged(self):
        o = self.outcome("pipe_read", lambda pid: (99, 0, "fake look: ptrace refused"))
        self.assertEqual(o.verdict, "FAIL")
        self.assertTrue(any("exit 99" in p for p in o.problems), o.problems)


class ReportGrammar(unittest.TestCase):
    REPORT = (b"threadcheck: found unexpected threads at exit: 1 thread in 1 group (pid 18042)\n\n"
              b"1 @ call_read <- waiter_main <- start_thread <- __clone3\n"
              b"#\tstate S (sleeping), syscall read, wchan anon_pipe_read; stack captured; tids 18047\n"
              b"#\t0x7efffbd6f2ea\tread+0x4a\t/usr/lib/x86_64-linux-gnu/libc.so.6\n\n"
              b"threadcheck: SUMMARY: 1 unexpected thread in 1 group (exit code 66)\n")

    def test_report_after_the_programs_stderr(self):
        report, problem = rc.split_report("threadcheck", b"own line\n", b"own line\n" + self.REPORT)
        self.assertIsNone(problem)
        self.assertTrue(report.startswith("threadcheck: found"))

    def test_programs_stderr_changed(self):
        _, problem = rc.split_report("threadcheck", b"own line\n", b"other line\n" + self.REPORT)
        self.assertIn("does not begin", problem)

    def test_orphans_incomplete_notice_is_not_a_leak_report(self):
        _, problem = rc.split_report("orphans", b"", b"==1== orphans at exit: no analysis (incomplete): thread 2\n")
        self.assertIn("does not say threads leaked", problem)


if __name__ == "__main__":
    unittest.main()
