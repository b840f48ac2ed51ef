"""`leaklab memstats` with the allocstats agent (threadcheck/allocstats, the opt-in route to
tcmalloc's and jemalloc's own figures) on delayed_exit under one allocator (argv[1]: glibc,
tcmalloc or jemalloc), held at `allocated` and at `exited`:

  - started with LD_PRELOAD=liballocstats.so, the agent answers with the allocator's own
    figures (glibc: mallinfo2, tcmalloc: MallocExtension, jemalloc: mallctl), and memstats
    says where its figures come from (allocator_figures_from: "agent" for tcmalloc and
    jemalloc, "walk" for glibc, whose arenas it reads from outside);
  - memstats' heap in use (the HeapInuse line's Go figure) is the scenario's own
    alloc.in_use_bytes, read in-process as the hold began, within 2 %;
  - the items add up to RSS, the unexplained remainder within 1 % of it;
  - jemalloc's purge counts (what it gave back) are in the answer, and memstats shows their
    sum as the "heap returned so far" line;
  - without the preload, tcmalloc's and jemalloc's heap is the one "not itemized" line, and
    a note names the opt-in.

Exits 77 when that allocator's build of delayed_exit or the library is missing."""
import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks  # noqa: E402
from support import BUILD, Held, binary, memstats_json, require  # noqa: E402

ALLOCATOR = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "glibc"
TARGET = binary("delayed_exit", ALLOCATOR)
# LEAKLAB_ALLOCSTATS_LIB: another build of the agent (to show the test failing on a broken one)
LIB = Path(os.environ.get("LEAKLAB_ALLOCSTATS_LIB") or BUILD / "threadcheck" / "allocstats" / "liballocstats.so")
IN_USE_TOL = 0.02


class Preloaded:
    """LD_PRELOAD for the children started inside the block (Held inherits the environment)."""

    def __init__(self, lib):
        self.lib = lib

    def __enter__(self):
        self.saved = os.environ.get("LD_PRELOAD")
        if self.lib:
            os.environ["LD_PRELOAD"] = str(self.lib)
        else:
            os.environ.pop("LD_PRELOAD", None)

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = self.saved


class AllocStats(unittest.TestCase):
    def check_phase(self, phase):
        with Preloaded(LIB), Held(TARGET, phase, ["--scale", "quick"], start_timeout=120) as held:
            snap = memstats_json(held.pid)
        agent = snap.get("agent")
        self.assertIsInstance(agent, dict, f"the agent did not answer: {snap['notes']}")
        self.assertEqual(agent["pid"], snap["pid"])
        expected_from = "walk" if ALLOCATOR == "glibc" else "agent"
        self.assertEqual(snap["allocator_figures_from"], expected_from, snap["notes"])
        self.assertIn("mallinfo2" if ALLOCATOR == "glibc" else ALLOCATOR, agent)
        self.assertEqual(checks.heap_inuse_problems(snap, held.alloc["in_use_bytes"], IN_USE_TOL), [])
        self.assertEqual(checks.sum_problems(snap), [], snap["items"])
        if ALLOCATOR == "jemalloc":  # what was given back: the purge counts, a line of their own
            purged = agent["jemalloc"]["dirty_purged_bytes"] + agent["jemalloc"]["muzzy_purged_bytes"]
            self.assertGreaterEqual(min(agent["jemalloc"]["dirty_purged_bytes"],
                                        agent["jemalloc"]["muzzy_purged_bytes"]), 0, agent["jemalloc"])
            returned = [a["bytes"] for a in snap["also"] if a["name"].startswith("heap returned so far")]
            self.assertEqual(returned, [purged], snap["also"])
        inuse = checks.heap_inuse_item(snap)
        print(f"{ALLOCATOR} {phase}: memstats in use {inuse['go_bytes']} (resident {inuse['bytes']}), "
              f"scenario's alloc.in_use_bytes {held.alloc['in_use_bytes']}, RSS {snap['rss_bytes']}, "
              f"remainder {snap['items'][-1]['bytes']}")

    def test_allocated(self):
        self.check_phase("allocated")

    def test_exited(self):
        self.check_phase("exited")

    @unittest.skipIf(ALLOCATOR == "glibc", "glibc's heap is itemized from outside, agent or not")
    def test_without_agent(self):
        with Preloaded(None), Held(TARGET, "exited", ["--scale", "quick"], start_timeout=120) as held:
            snap = memstats_json(held.pid)
        self.assertIsNone(snap["allocator_figures_from"])
        self.assertIn(f"allocator heap ({ALLOCATOR}): not itemized", [it["name"] for it in snap["items"]])
        self.assertTrue(any("liballocstats.so" in n for n in snap["notes"]), snap["notes"])
        self.assertEqual(checks.sum_problems(snap), [], snap["items"])


if __name__ == "__main__":
    require(TARGET, LIB)
    unittest.main()
