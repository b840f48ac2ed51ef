"""`leaklab threads` at the seed's scale: a held blocked_workers with 10,000 workers
(10,001 threads) dumps as one group of 10,000 at ll_chan_recv <- worker, and every thread
runs on untraced afterwards. The time is printed, not asserted (benchmarks/ compares it
with eu-stack and gdb side by side).

Exits 77 when threaddump or blocked_workers is not built."""
import json
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import HeldTarget, leaklab_threads, require_dumper, tasks, traced_or_stopped  # noqa: E402

SEED_WORKERS = 10000


class SeedScale(unittest.TestCase):
    def test_ten_thousand_workers_one_group(self):
        with HeldTarget("seed", start_timeout=900) as target:
            started = time.monotonic()
            r = leaklab_threads(target.pid, "--json", timeout=600)
            elapsed = time.monotonic() - started
            self.assertEqual(r.returncode, 0, r.stderr)
            doc = json.loads(r.stdout)
            print(f"\nleaklab threads on {doc['threads_seen']} threads: {elapsed:.2f} s wall; "
                  f"threaddump {doc['timing_s']}", flush=True)
            self.assertEqual((doc["threads_seen"], doc["unwound"]), (SEED_WORKERS + 1, SEED_WORKERS + 1))
            largest = doc["groups"][0]
            self.assertEqual(largest["count"], SEED_WORKERS)
            stack = largest["stack"]
            self.assertIn("ll_chan_recv", stack)
            self.assertEqual(stack[stack.index("ll_chan_recv") + 1:][:1], ["worker"], stack)
            self.assertEqual(traced_or_stopped(target.pid), {})
            self.assertEqual(len(tasks(target.pid)), SEED_WORKERS + 1)
            end, status = target.end_and_status(timeout=300)
            self.assertEqual((end["reason"], status), ("hold ended by a signal", 0))


if __name__ == "__main__":
    require_dumper()
    unittest.main(verbosity=2)
