"""`leaklab threads PID` changes nothing its target can see in the system call a thread is
blocked in: no EINTR, no short count, no sleep cut short.

For each call, blocked_syscall (built beside this test) makes it in a bounded loop and keeps
count of what a program would not expect. The test waits until /proc shows the worker in a
system call (a kernel-side state change: polled with a bound), dumps the process twice
(threaddump, then `leaklab threads`), checks that the dump saw the worker in that very call
(so the test could fail), tells the target to stop through its stdin, and reads its verdict:
"calls N eintr 0 short 0" and exit 0.

Measured on the old stopper (PTRACE_INTERRUPT of every thread, nothing more): epoll_wait and
sigtimedwait returned -1 EINTR, and write(1 MiB) into a full pipe returned 65,536; gdb's
`thread apply all bt` and eu-stack -p do the same to those three (kernel 6.18).

Exits 77 when threaddump is not built."""
import json
import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import BUILD, DUMPER, EXIT_SKIP, leaklab_threads, read_line, wait_until  # noqa: E402

TARGET = BUILD / "tests" / "threads" / "blocked_syscall"
DUMPS = 2

# mode -> the names threaddump gives the worker's call (glibc's nanosleep is clock_nanosleep;
# a poll or a timed futex wait interrupted by an earlier dump continues as restart_syscall)
CALLS = {
    "epoll_wait": {"epoll_wait", "epoll_pwait"},
    "poll": {"poll", "ppoll"},
    "nanosleep": {"nanosleep", "clock_nanosleep"},
    "sigtimedwait": {"rt_sigtimedwait"},
    "read_pipe": {"read"},
    "futex": {"futex"},
    "write_pipe": {"write"},
}


def in_a_syscall(pid, tid):
    """True when the thread sleeps in a system call; "gone" when it has exited."""
    try:
        line = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
    except OSError:
        return "gone"
    return line and line[0] not in ("running", "-1")


class NothingTheTargetCanSee(unittest.TestCase):
    def run_mode(self, mode):
        proc = subprocess.Popen([str(TARGET), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            ready = read_line(proc.stdout, deadline, "'ready TID'").split()
            self.assertEqual(ready[0], "ready")
            tid = int(ready[1])
            for round_ in range(DUMPS):
                if wait_until(lambda: in_a_syscall(proc.pid, tid), 30, f"{mode}: worker {tid} in a system call",
                              interval=0.01) == "gone":
                    break  # its call returned and its loop ended: the verdict says how
                if round_ == 0:  # threaddump's document: the worker was seen in its call
                    run = subprocess.run([str(DUMPER), str(proc.pid)], capture_output=True, text=True, timeout=120)
                    self.assertEqual(run.returncode, 0, run.stderr)
                    worker = next(t for t in json.loads(run.stdout)["threads"] if t["tid"] == tid)
                    self.assertIn(worker["syscall"], CALLS[mode] | {"restart_syscall"}, worker)
                    self.assertTrue(worker["stack"], worker)
                    if mode == "write_pipe":  # never stopped: its stack read from /proc's registers
                        self.assertEqual((worker["fate"], worker["stop"]), ("unstopped", "none"), worker)
                        self.assertGreaterEqual(len(worker["stack"]), 2, worker)
                else:  # the command people type
                    run = leaklab_threads(proc.pid, timeout=120)
                    self.assertEqual(run.returncode, 0, run.stderr)
                    self.assertIn(f"{tid}", run.stdout)
            proc.stdin.write(b"x")
            proc.stdin.flush()
            verdict = read_line(proc.stdout, time.monotonic() + 60, "the verdict line").strip()
            code = proc.wait(timeout=60)
            self.assertEqual((verdict.split()[2:], code), (["eintr", "0", "short", "0"], 0),
                             f"{mode}: the target saw its call changed: {verdict}")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
            for s in (proc.stdin, proc.stdout, proc.stderr):
                s.close()

    def test_epoll_wait(self):
        self.run_mode("epoll_wait")

    def test_epoll_wait_when_the_dumper_is_killed_while_it_holds_the_thread(self):
        """SIGKILL to threaddump while the worker sits in its ptrace stop: the kernel releases
        it, and its epoll_wait must restart then too (the call is set to restart as soon as
        its registers are read, not at the detach)."""
        proc = subprocess.Popen([str(TARGET), "epoll_wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        dumper = None
        try:
            tid = int(read_line(proc.stdout, time.monotonic() + 60, "'ready TID'").split()[1])
            wait_until(lambda: in_a_syscall(proc.pid, tid), 30, f"worker {tid} in a system call", interval=0.01)
            dumper = subprocess.Popen([str(DUMPER), "--pause-after", "stopped", str(proc.pid)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.assertIn("paused after stopped", read_line(dumper.stderr, time.monotonic() + 60, "the pause"))
            status = Path(f"/proc/{proc.pid}/task/{tid}/status").read_text()
            self.assertIn("State:\tt", status, "the worker is held in a ptrace stop")
            dumper.kill()
            dumper.wait(timeout=60)
            wait_until(lambda: "TracerPid:\t0" in Path(f"/proc/{proc.pid}/task/{tid}/status").read_text(), 30,
                       "the worker released")
            proc.stdin.write(b"x")
            proc.stdin.flush()
            verdict = read_line(proc.stdout, time.monotonic() + 60, "the verdict line").strip()
            self.assertEqual((verdict.split()[2:], proc.wait(timeout=60)), (["eintr", "0", "short", "0"], 0),
                             f"the target saw its call changed: {verdict}")
        finally:
            for p in (proc, dumper):
                if p is not None:
                    if p.poll() is None:
                        p.kill()
                    p.wait(timeout=60)
                    for s in (p.stdin, p.stdout, p.stderr):
                        s.close()

    def test_poll(self):
        self.run_mode("poll")

    def test_nanosleep(self):
        self.run_mode("nanosleep")

    def test_sigtimedwait(self):
        self.run_mode("sigtimedwait")

    def test_read_pipe(self):
        self.run_mode("read_pipe")

    def test_futex(self):
        self.run_mode("futex")

    def test_write_pipe(self):
        self.run_mode("write_pipe")


if __name__ == "__main__":
    for path, why in ((DUMPER, "threaddump is not built (it needs libdw-dev)"), (TARGET, "blocked_syscall is not built")):
        if not os.access(path, os.X_OK):
            print(f"SKIP: {why}: {path} missing")
            sys.exit(EXIT_SKIP)
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
