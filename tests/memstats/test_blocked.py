"""`leaklab memstats` on blocked_workers (leaky, quick) held at `steady`, every worker
blocked holding its buffer: the HeapInuse line's Go figure within 2 % of the scenario's own
alloc.in_use_bytes at steady, the items within 1 % of RSS, every live thread's stack found,
and the table printed for people names the same lines.

The HeapInuse line's resident bytes are well below the heap in use here (measured: 83 of
136 MB at quick scale): each buffer is a mmapped chunk grown like Go's append, and the
capacity past the last element written was never touched, so never resident."""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks  # noqa: E402
from support import Held, binary, memstats, memstats_json, require  # noqa: E402

TARGET = binary("blocked_workers")


class BlockedWorkers(unittest.TestCase):
    def test_steady(self):
        with Held(TARGET, "steady", ["--variant", "leaky", "--scale", "quick"]) as held:
            snap = memstats_json(held.pid)
            own = held.phase["snapshot"]["alloc"]["in_use_bytes"]
            self.assertEqual(checks.heap_inuse_problems(snap, own, 0.02), [])
            self.assertEqual(checks.sum_problems(snap), [])
            workers = held.phase["snapshot"]["threads"] - 1
            self.assertEqual(snap["stacks"]["live"], workers)
            self.assertGreater(snap["go"]["StackInuse"], 0)
            item = checks.heap_inuse_item(snap)
            print(f"HeapInuse {item['go_bytes']} (scenario {own}), resident {item['bytes']}, "
                  f"RSS {snap['rss_bytes']}, remainder {snap['items'][-1]['bytes']}")
            table = memstats(held.pid)
            self.assertEqual(table.returncode, 0, table.stderr)
            for it in snap["items"]:
                self.assertIn(it["name"], table.stdout)
            self.assertEqual(checks.task_problems(held.pid), [])


if __name__ == "__main__":
    require(TARGET)
    unittest.main()
