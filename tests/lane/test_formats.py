#!/usr/bin/env python3
"""What the Debian 13 lane found in the tools' own output formats, kept
working on both releases: heaptrack 1.5's names for inlined frames."""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.tools import heaptrack  # noqa: E402

# heaptrack_print -F --flamegraph-cost-type leaked, cockroach10214 --variant leaky
# at quick scale, shortened: the same stack from each release (measured).
HEAPTRACK_1_4 = ("_start;ll_main (harness.c);run_instances (zoo.c);leaky_instance (cockroach10214.c);"
                 "new_store (cockroach10214.c);ll_xrealloc (harness.c);ll_xmalloc (harness.c); 65536\n")
HEAPTRACK_1_5 = ("_start;ll_main (harness.c);run_instances (zoo.c);leaky_instance (cockroach10214.c);"
                 "new_store (cockroach10214.c);ll_xmalloc::ll_xrealloc (harness.c);ll_xmalloc (harness.c); 65536\n")


class HeaptrackInlinedFrames(unittest.TestCase):
    def test_heaptrack_1_4(self):
        self.assertEqual(heaptrack.parse_flamegraph(HEAPTRACK_1_4), {"new_store": 65536})

    def test_heaptrack_1_5_names_an_inlined_frame_after_its_caller(self):
        self.assertEqual(heaptrack.parse_flamegraph(HEAPTRACK_1_5), {"new_store": 65536})

    def test_a_cpp_name_is_left_alone(self):
        text = "_start;main (m.cc);std::vector<int>::push_back (vector.h);grow (g.cc); 10\n"
        self.assertEqual(heaptrack.parse_flamegraph(text), {"grow": 10})
        text = "_start;main (m.cc);std::vector<int>::push_back (vector.h); 10\n"
        self.assertEqual(heaptrack.parse_flamegraph(text), {"std::vector<int>::push_back": 10})


if __name__ == "__main__":
    unittest.main(verbosity=2)
