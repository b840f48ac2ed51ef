"""`leaklab memstats` counts a thread stack the program malloc'ed itself (user_stacks.c: one
from an arena heap, one an mmapped chunk) once, in the heap line: the items still add up to
RSS within 1 % (counted twice, the 1 MiB stack alone would put the remainder at minus a
third of this small process's RSS), both stacks are reported as inside the heap, and the
mmapped one is found. Exits 77 when user_stacks is not built."""
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks  # noqa: E402
from support import BUILD, memstats_json, read_line, require  # noqa: E402

TARGET = BUILD / "tests" / "memstats" / "user_stacks"


class UserStacks(unittest.TestCase):
    def test_counted_once(self):
        proc = subprocess.Popen([str(TARGET)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            self.assertEqual(read_line(proc.stdout, time.monotonic() + 60, "'ready'").strip(), "ready")
            snap = memstats_json(proc.pid)
            self.assertEqual(checks.sum_problems(snap), [], snap["items"])
            self.assertEqual(snap["stacks"]["in_heap"], 2, snap["stacks"])
            mm = snap["glibc"]["mmapped"]
            self.assertEqual((mm["found_bytes"], mm["found_count"]), (mm["bytes"], mm["count"]), mm)
            self.assertGreaterEqual(checks.heap_inuse_item(snap)["bytes"], 1024 * 1024 + 64 * 1024)
        finally:
            proc.stdin.close()
            if proc.wait(timeout=60) is None:
                proc.kill()
            proc.stdout.close()
        self.assertEqual(proc.returncode, 0)


if __name__ == "__main__":
    require(TARGET)
    unittest.main()
