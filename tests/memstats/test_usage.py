"""`leaklab memstats` on bad input exits 2 with a message naming the PID: not a number, zero,
negative, no such process, a thread id, a zombie; --watch and --count out of range; run as
another user (uid 65534) on a root process it exits 99 with the remedy. The control: the
same command on a live process id exits 0 (so the checks can fail). --watch
prints one object per interval up to --count, ends with exit 0 when the target exits, and
Ctrl-C (SIGINT) ends it cleanly: exit 0, no traceback."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import LEAKLAB, memstats, read_line  # noqa: E402


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=60)
    return proc.pid  # reaped: free unless reused, checked below


class Usage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # a process with a second thread (its tid is not a process id) and a zombie child
        cls.proc = subprocess.Popen([sys.executable, "-c", "import threading, subprocess, sys\n"
                                     "z = subprocess.Popen(['true'])\n"
                                     "t = threading.Thread(target=sys.stdin.read); t.start()\n"
                                     "print(threading.get_native_id() and t.native_id, z.pid, flush=True); t.join()"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        tid, zombie = read_line(cls.proc.stdout, time.monotonic() + 60, "tid").split()
        cls.tid, cls.zombie = int(tid), int(zombie)

    @classmethod
    def tearDownClass(cls):
        cls.proc.stdin.close()
        cls.proc.wait(timeout=60)
        cls.proc.stdout.close()

    def assert_usage(self, *args, says):
        run = memstats(*args)
        self.assertEqual(run.returncode, 2, f"{args}: {run.stdout} {run.stderr}")
        self.assertIn(says, run.stderr)
        self.assertNotIn("Traceback", run.stderr)

    def test_bad_pids(self):
        self.assert_usage("abc", says="not a process id")
        self.assert_usage("0", says="not a process id")
        self.assert_usage("-5", says="")  # argparse or ours: either way exit 2
        pid = dead_pid()
        if not os.path.exists(f"/proc/{pid}"):
            self.assert_usage(str(pid), says="no process")
        self.assert_usage(str(self.tid), says="is a thread of process")
        deadline = time.monotonic() + 30
        while Path(f"/proc/{self.zombie}/stat").read_text().split()[2] != "Z":
            self.assertLess(time.monotonic(), deadline, "the child did not become a zombie")
            time.sleep(0.01)  # exiting is a kernel-side change with no event to wait on here
        self.assert_usage(str(self.zombie), says="exited")

    def test_another_users_process_is_refused_with_99(self):
        python = "/usr/bin/python3"  # readable by any user, unlike a per-user Python
        if os.geteuid() != 0 or not shutil.which("setpriv") or not os.access(python, os.X_OK):
            self.skipTest("needs root, setpriv and /usr/bin/python3 to run memstats as another user")
        r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", python,
                            *LEAKLAB[1:], "memstats", str(self.proc.pid)], capture_output=True, text=True,
                           timeout=120)
        if "Permission denied" in r.stderr and "leaklab memstats" not in r.stderr:
            self.skipTest(f"uid 65534 cannot run memstats here: {r.stderr.strip()[-200:]}")
        self.assertEqual(r.returncode, 99, r.stderr)
        self.assertIn("run as the target's user or as root", r.stderr)
        self.assertNotIn("Traceback", r.stderr)

    def test_bad_watch(self):
        self.assert_usage(str(self.proc.pid), "--watch", "0", says="--watch")
        self.assert_usage(str(self.proc.pid), "--watch", "1", "--count", "0", says="--count")

    def test_control_a_live_pid_exits_0(self):
        run = memstats(str(self.proc.pid))
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("unexplained remainder", run.stdout)

    def test_watch_count(self):
        run = memstats(str(self.proc.pid), "--json", "--watch", "0.05", "--count", "3")
        self.assertEqual(run.returncode, 0, run.stderr)
        lines = run.stdout.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(all(json.loads(line)["pid"] == self.proc.pid for line in lines))

    def test_watch_ends_when_the_target_exits_and_on_ctrl_c(self):
        target = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        watch = subprocess.Popen([*LEAKLAB, "memstats", str(target.pid), "--json", "--watch", "0.05"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            read_line(watch.stdout, time.monotonic() + 60, "a first snapshot")
            target.stdin.close()
            target.wait(timeout=60)
            out, err = watch.communicate(timeout=60)
            self.assertEqual(watch.returncode, 0, err)
            self.assertIn("exited", err)
        finally:
            for p in (target, watch):
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=60)
        watch = subprocess.Popen([*LEAKLAB, "memstats", str(self.proc.pid), "--watch", "0.05"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            read_line(watch.stdout, time.monotonic() + 60, "a first table")
            watch.send_signal(signal.SIGINT)
            out, err = watch.communicate(timeout=60)
            self.assertEqual(watch.returncode, 0, err)
            self.assertNotIn("Traceback", err)
        finally:
            if watch.poll() is None:
                watch.kill()
            watch.wait(timeout=60)


if __name__ == "__main__":
    unittest.main()
