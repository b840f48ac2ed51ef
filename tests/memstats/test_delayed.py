"""`leaklab memstats` on delayed_exit held at each of its phases, allocated, exited, released
and idle, under one allocator (argv[1]: glibc, tcmalloc or jemalloc; argv[2]: the scale,
quick unless `seed`):

  - the items add up to RSS, the unexplained remainder within 1 % of it;
  - glibc: the heap in use equals mallinfo2's uordblks + hblkhd and the free bytes its
    fordblks, both read in-process at the same phase (the harness's alloc figures), within
    1 %; every arena's resident bytes equal what pagemap says (read by the test), split
    into in use and free, the free split into resident and not;
  - tcmalloc, jemalloc: their heap is a line of its own that says it is not itemized.

Exits 77 when that allocator's build of delayed_exit is missing."""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks  # noqa: E402
from support import Held, binary, memstats_json, require  # noqa: E402

ALLOCATOR = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "glibc"
SCALE = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "quick"
PHASES = {"allocated": (), "exited": (), "released": (), "idle": ("--idle-ms", "300", "--idle-step-ms", "100")}
TARGET = binary("delayed_exit", ALLOCATOR)


class DelayedExit(unittest.TestCase):
    def check_phase(self, phase):
        with Held(TARGET, phase, ["--scale", SCALE, *PHASES[phase]], start_timeout=600) as held:
            snap = memstats_json(held.pid)
            self.assertEqual(snap["allocator"], ALLOCATOR)
            self.assertEqual(checks.sum_problems(snap), [], snap["items"])
            if ALLOCATOR == "glibc":
                self.assertEqual(checks.mallinfo_problems(snap, held.alloc), [])
                self.assertEqual(checks.split_problems(snap), [])
                print(f"{phase}: in use {snap['glibc']['in_use_bytes']} (mallinfo2 {held.alloc['in_use_bytes']}), "
                      f"free {snap['glibc']['free_bytes']} (fordblks {held.alloc['free_held_bytes']}), resident "
                      f"{snap['glibc']['free_resident_bytes']}, RSS {snap['rss_bytes']}, "
                      f"remainder {snap['items'][-1]['bytes']}")
            else:
                names = [it["name"] for it in snap["items"]]
                self.assertIn(f"allocator heap ({ALLOCATOR}): not itemized", names)
                print(f"{phase}: RSS {snap['rss_bytes']}, remainder {snap['items'][-1]['bytes']}")
            self.assertTrue(snap["settled"], snap["notes"])

    def test_allocated(self):
        self.check_phase("allocated")

    def test_exited(self):
        self.check_phase("exited")

    def test_released(self):
        self.check_phase("released")

    def test_idle(self):
        self.check_phase("idle")


if __name__ == "__main__":
    require(TARGET)
    unittest.main()
