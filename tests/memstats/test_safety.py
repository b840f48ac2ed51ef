"""`leaklab memstats` changes nothing its target can see:

  - after walks of a held blocked_workers no thread is traced (TracerPid 0) or stopped, and
    the target still answers SIGTERM with its `end` event;
  - a thread blocked in epoll_wait, and one in nanosleep, while memstats walks their process
    (blocked_syscall, tests/threads) see no EINTR, no short count, no sleep cut short; the
    negative control: a SIGSTOP/SIGCONT of the same epoll_wait target (what an attach-and-
    stop tool does) is seen as EINTR by the same check, so the check can fail;
  - memstats killed (SIGKILL) between its first two walks leaves the target running.

Exits 77 when blocked_workers or blocked_syscall is not built."""
import os
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks  # noqa: E402
from support import BUILD, LEAKLAB, Held, binary, memstats_json, read_line, require  # noqa: E402

TARGET = binary("blocked_workers")
SYSCALL_TARGET = BUILD / "tests" / "threads" / "blocked_syscall"
WALKS = 3


def wait_until(condition, timeout, what, interval=0.01):
    """Polls a kernel-side state change that signals no event we could wait on, bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


def in_a_syscall(pid, tid):
    try:
        line = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
    except OSError:
        return False
    return bool(line) and line[0] not in ("running", "-1")


class Safety(unittest.TestCase):
    def test_not_traced_not_stopped(self):
        with Held(TARGET, "steady", ["--variant", "leaky", "--scale", "quick"]) as held:
            for _ in range(WALKS):
                snap = memstats_json(held.pid)
                self.assertEqual(snap["stacks"]["live"], held.phase["snapshot"]["threads"] - 1)
                self.assertEqual(checks.task_problems(held.pid), [])
            event, status = held.end_and_status()
            self.assertEqual((event["status"], status), (0, 0), event)

    def syscall_verdict(self, mode, disturb):
        proc = subprocess.Popen([str(SYSCALL_TARGET), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            ready = read_line(proc.stdout, time.monotonic() + 60, "'ready TID'").split()
            tid = int(ready[1])
            for _ in range(WALKS):
                wait_until(lambda: in_a_syscall(proc.pid, tid), 30, f"{mode}: worker {tid} in its call")
                disturb(proc.pid)
            proc.stdin.write(b"x")
            proc.stdin.flush()
            verdict = read_line(proc.stdout, time.monotonic() + 60, "the verdict line").split()
            return verdict, proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
            for s in (proc.stdin, proc.stdout, proc.stderr):
                s.close()

    def walk(self, pid):
        snap = memstats_json(pid)
        self.assertGreaterEqual(snap["stacks"]["live"], 1)  # the worker's stack was walked
        self.assertEqual(checks.task_problems(pid), [])

    def test_epoll_wait_and_nanosleep_see_nothing(self):
        for mode in ("epoll_wait", "nanosleep"):
            verdict, code = self.syscall_verdict(mode, self.walk)
            self.assertEqual((verdict[2:], code), (["eintr", "0", "short", "0"], 0), f"{mode}: {verdict}")

    def test_negative_control_stop_and_continue_is_seen(self):
        def stop_continue(pid):
            os.kill(pid, signal.SIGSTOP)
            wait_until(lambda: checks.task_problems(pid), 30, "the target stopped")
            os.kill(pid, signal.SIGCONT)
        verdict, code = self.syscall_verdict("epoll_wait", stop_continue)
        self.assertNotEqual(verdict[3], "0", f"a stop/continue went unseen: {verdict}")
        self.assertEqual(code, 1, verdict)

    def test_killed_mid_walk_leaves_the_target_running(self):
        with Held(TARGET, "steady", ["--variant", "leaky", "--scale", "quick"]) as held:
            tool = subprocess.Popen([*LEAKLAB, "memstats", str(held.pid), "--pause-mid-walk"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                line = read_line(tool.stderr, time.monotonic() + 120, "memstats' pause")
                self.assertIn("paused mid-walk", line)
                tool.kill()
                self.assertEqual(tool.wait(timeout=60), -signal.SIGKILL)
            finally:
                if tool.poll() is None:
                    tool.kill()
                tool.wait(timeout=60)
                for s in (tool.stdin, tool.stdout, tool.stderr):
                    s.close()
            self.assertEqual(checks.task_problems(held.pid), [])
            event, status = held.end_and_status()
            self.assertEqual((event["status"], status), (0, 0), event)


if __name__ == "__main__":
    require(TARGET, SYSCALL_TARGET)
    unittest.main()
