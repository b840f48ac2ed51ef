"""`leaklab threads` never leaves its target stopped or traced.

threaddump --pause-after PHASE holds the dump at its most delicate moment (every thread
interrupted, or every thread stopped) until a line arrives on its stdin, so each case below
first checks that the target really is traced and stopped by the tool (so the test could
fail), then kills the tool (SIGKILL, SIGINT, SIGTERM; threaddump alone, or `leaklab threads`
and its child together as Ctrl-C does), or kills the target instead, and checks that the
target runs on untraced, or that the dump ends cleanly. Nothing here waits without a bound.

Exits 77 when threaddump or blocked_workers is not built."""
import json
import os
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (BUILD, DUMPER, LEAKLAB, HeldTarget, read_line, require_dumper, tasks,  # noqa: E402
                     traced_or_stopped, wait_until)

QUICK_THREADS = 1001
RELEASE_TIMEOUT_S = 30  # the kernel releases at once; the bound is for a loaded machine


def paused_dumper(pid, phase, wrapper=False):
    """threaddump (or `leaklab threads`) paused after phase, in its own process group."""
    if wrapper:
        argv = [*LEAKLAB, "threads", str(pid), "--pause-after", phase, "--build-dir", str(BUILD)]
    else:
        argv = [str(DUMPER), "--pause-after", phase, str(pid)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    line = read_line(proc.stderr, time.monotonic() + 120, f"threaddump's 'paused after {phase}' line")
    if f"paused after {phase}" not in line:
        proc.kill()
        raise AssertionError(f"unexpected: {line}")
    return proc


def dumper_pid(proc, wrapper):
    """The pid of the process that traces: the wrapper's child when it is the wrapper."""
    if not wrapper:
        return proc.pid
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


class KillTheTool(unittest.TestCase):
    def assert_held_by(self, target, tracer, all_stopped):
        states = tasks(target.pid)
        self.assertEqual(len(states), QUICK_THREADS)
        self.assertEqual({tracer_pid for _, tracer_pid in states.values()}, {tracer},
                         "every thread is traced by the paused dumper")
        if all_stopped:
            self.assertEqual({state for state, _ in states.values()}, {"t"}, "every thread is in a ptrace stop")

    def assert_released_and_running(self, target):
        wait_until(lambda: traced_or_stopped(target.pid) == {}, RELEASE_TIMEOUT_S,
                   "every thread untraced and not stopped")
        self.assertEqual(len(tasks(target.pid)), QUICK_THREADS, "no thread was lost")
        end, status = target.end_and_status()  # only a running process can answer
        self.assertEqual((end["reason"], status), ("hold ended by a signal", 0))

    def kill_dumper(self, sig, phase="stopped"):
        with HeldTarget("quick") as target:
            proc = paused_dumper(target.pid, phase)
            try:
                self.assert_held_by(target, proc.pid, all_stopped=phase == "stopped")
                proc.send_signal(sig)
                code = proc.wait(timeout=60)
                self.assertEqual(code, -sig if sig == signal.SIGKILL else 99)
                if sig != signal.SIGKILL:
                    self.assertIn("interrupted by a signal", proc.stderr.read().decode())
            finally:
                proc.kill()
                proc.wait(timeout=60)
                proc.stdin.close(), proc.stdout.close(), proc.stderr.close()
            self.assert_released_and_running(target)

    def test_sigkill_while_every_thread_is_stopped(self):
        self.kill_dumper(signal.SIGKILL)

    def test_sigint_while_every_thread_is_stopped(self):
        self.kill_dumper(signal.SIGINT)

    def test_sigterm_while_every_thread_is_stopped(self):
        self.kill_dumper(signal.SIGTERM)

    def test_sigkill_while_threads_are_being_interrupted(self):
        self.kill_dumper(signal.SIGKILL, phase="seized")

    def kill_wrapper_group(self, sig):
        """Ctrl-C (or kill -9 -PGID) reaches `leaklab threads` and threaddump together."""
        with HeldTarget("quick") as target:
            proc = paused_dumper(target.pid, "stopped", wrapper=True)
            try:
                self.assert_held_by(target, dumper_pid(proc, wrapper=True), all_stopped=True)
                os.killpg(proc.pid, sig)
                code = proc.wait(timeout=60)
                if sig == signal.SIGINT:
                    self.assertEqual(code, 99)
                    err = proc.stderr.read().decode()
                    self.assertIn("leaklab threads: interrupted", err)
                    self.assertNotIn("Traceback", err)
                else:
                    self.assertEqual(code, -sig)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=60)
                proc.stdin.close(), proc.stdout.close(), proc.stderr.close()
            self.assert_released_and_running(target)

    def test_ctrl_c_on_leaklab_threads(self):
        self.kill_wrapper_group(signal.SIGINT)

    def test_sigkill_on_leaklab_threads_and_its_child(self):
        self.kill_wrapper_group(signal.SIGKILL)


class TargetExitsMidCensus(unittest.TestCase):
    def kill_target(self, phase):
        with HeldTarget("quick") as target:
            proc = paused_dumper(target.pid, phase)
            try:
                os.kill(target.pid, signal.SIGKILL)
                proc.stdin.write(b"go on\n")
                proc.stdin.flush()
                out, err = proc.communicate(timeout=120)  # the bound: a hang fails here
            finally:
                proc.kill()
                proc.wait(timeout=60)
            err = err.decode()
            self.assertIn(proc.returncode, (0, 2), err)
            self.assertNotIn("Segmentation", err)
            if proc.returncode == 0:  # a clean result: what was read before it died
                doc = json.loads(out)
                self.assertTrue(doc["exited"])
                self.assertEqual(doc["threads_seen"], QUICK_THREADS)
            else:  # a clean error
                self.assertIn(f"process {target.pid} exited during the dump", err)
            target.proc.wait(timeout=60)  # reaped: nothing traced it any more

    def test_target_killed_while_every_thread_is_stopped(self):
        self.kill_target("stopped")

    def test_target_killed_while_threads_are_being_interrupted(self):
        self.kill_target("seized")

    def test_leaklab_threads_reports_an_exited_target_cleanly(self):
        """Through the wrapper: exit 0 with a note, or exit 2 with the message; never a traceback."""
        with HeldTarget("quick") as target:
            proc = paused_dumper(target.pid, "stopped", wrapper=True)
            try:
                os.kill(target.pid, signal.SIGKILL)
                proc.stdin.write(b"go on\n")
                proc.stdin.flush()
                out, err = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
            out, err = out.decode(), err.decode()
            self.assertIn(proc.returncode, (0, 2), err)
            self.assertNotIn("Traceback", err)
            if proc.returncode == 0:
                self.assertIn("the process exited during the dump", out)
            else:
                self.assertIn("exited during the dump", err)
            target.proc.wait(timeout=60)


if __name__ == "__main__":
    require_dumper()
    unittest.main(verbosity=2)
