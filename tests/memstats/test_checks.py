"""Every check of the memstats tests fails when it should: each is fed a snapshot made wrong
on purpose (a sum off, an in-use figure off, a resident split off) and a stopped process,
beside a snapshot of a real process (this test's own child) that passes."""
import copy
import os
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks  # noqa: E402
from support import REPO  # noqa: E402,F401  (puts the repository on sys.path)
from scripts.outside import memstats  # noqa: E402


class Checks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A small glibc process that holds a few blocks: python itself, sleeping on a pipe.
        cls.proc = subprocess.Popen([sys.executable, "-c", "import sys; b = [bytearray(200000) for _ in range(20)]; "
                                     "print('ready', flush=True); sys.stdin.read()"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert cls.proc.stdout.readline().strip() == "ready"
        cls.snap = memstats.snapshot(cls.proc.pid)

    @classmethod
    def tearDownClass(cls):
        cls.proc.kill()
        cls.proc.wait(timeout=60)
        cls.proc.stdin.close()
        cls.proc.stdout.close()

    def test_a_real_snapshot_passes(self):
        self.assertEqual(checks.sum_problems(self.snap), [])
        self.assertEqual(checks.split_problems(self.snap), [])
        g = self.snap["glibc"]
        self.assertEqual(checks.mallinfo_problems(self.snap, {"in_use_bytes": g["in_use_bytes"],
                                                              "free_held_bytes": g["free_bytes"]}), [])
        self.assertEqual(checks.heap_inuse_problems(self.snap, g["in_use_bytes"], 0.02), [])
        self.assertEqual(checks.task_problems(self.proc.pid), [])

    def test_a_wrong_sum_fails(self):
        bad = copy.deepcopy(self.snap)
        bad["items"][0]["bytes"] += 4096
        self.assertTrue(checks.sum_problems(bad))
        bad = copy.deepcopy(self.snap)  # adds up, but the remainder explains 5 % of RSS
        bad["items"][-1]["bytes"] += bad["rss_bytes"] // 20
        bad["items"][0]["bytes"] -= bad["rss_bytes"] // 20
        self.assertTrue(checks.sum_problems(bad))

    def test_a_wrong_in_use_fails(self):
        g = self.snap["glibc"]
        self.assertTrue(checks.heap_inuse_problems(self.snap, g["in_use_bytes"] * 1.05, 0.02))
        self.assertTrue(checks.mallinfo_problems(self.snap, {"in_use_bytes": g["in_use_bytes"] * 1.02,
                                                             "free_held_bytes": g["free_bytes"]}))
        self.assertTrue(checks.mallinfo_problems(self.snap, {"in_use_bytes": g["in_use_bytes"],
                                                             "free_held_bytes": g["free_bytes"] * 1.02 + 4096}))

    def test_a_wrong_split_fails(self):
        bad = copy.deepcopy(self.snap)
        bad["glibc"]["arenas"][0]["resident_bytes"] += 4096
        self.assertTrue(checks.split_problems(bad))
        # pagemap (here a fake one) disagreeing with memstats' residency
        self.assertTrue(checks.split_problems(self.snap, resident=lambda a, b: 0))

    def test_a_stopped_process_fails(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 30
            while not checks.task_problems(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)  # the stop is a kernel-side change with no event to wait on
            self.assertTrue(checks.task_problems(self.proc.pid))
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)


if __name__ == "__main__":
    unittest.main()
