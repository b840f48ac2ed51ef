#!/usr/bin/env python3
"""The report page's memstats section: a run with memstats-PHASE.json (delayed_exit's quick
native runs, held at `exited`) gets a stacked bar of its RSS by line, Go's names beside
them; a run without one (or with an unreadable one) gets no such section."""

import json
import re
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_runs import make_run, snapshot  # noqa: E402
from scripts.views import report  # noqa: E402

MiB = 1 << 20
# A glibc snapshot's items as memstats prints them (the shape of memstats.py's docstring).
ITEMS = [("heap in use (glibc arenas + mmapped chunks)", 1 * MiB, "HeapInuse"),
         ("heap free, still resident (glibc bins, fastbins, top)", 60 * MiB, "HeapIdle-HeapReleased"),
         ("thread stacks (live threads, main included)", MiB // 4, "StackInuse"),
         ("thread stacks cached by glibc (exited threads)", 5 * MiB, None),
         ("code and libraries", 3 * MiB, None),
         ("other anonymous", MiB // 4, None),
         ("unexplained remainder", MiB // 2, None)]


def memstats_snapshot(items=ITEMS, settled=True):
    return {"pid": 1, "allocator": "glibc", "rss_bytes": sum(b for _, b, _ in items),
            "items": [{"name": n, "bytes": b, "go": g} for n, b, g in items],
            "go": {"HeapInuse": MiB, "HeapIdle": 70 * MiB, "HeapReleased": 10 * MiB}, "settled": settled}


def section(page, sid="memstats"):
    m = re.search(rf'<section id="{sid}">.*?</section>', page, re.S)
    return m.group(0) if m else None


class MemstatsSection(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)
        self.addCleanup(self._tmp.cleanup)

    def run_with(self, files):
        run = make_run(self.tmp, phases=[("allocated", snapshot()), ("exited", snapshot())])
        for name, text in files.items():
            (run / name).write_text(text)
        return report.write_report(run).read_text()

    def test_a_held_run_gets_a_bar_of_its_rss(self):
        page = self.run_with({"memstats-exited.json": json.dumps(memstats_snapshot())})
        sec = section(page)
        self.assertIsNotNone(sec, "no memstats section")
        self.assertIn('href="#memstats"', page)  # in the navigation
        self.assertIn('data-figure="memstats-exited"', sec)
        widths = [float(w) for w in re.findall(r'<span style="width:([\d.]+)%', sec)]
        self.assertEqual(len(widths), 6)  # in use, free resident, stacks, cached stacks, code, other
        self.assertAlmostEqual(sum(widths), 100.0, delta=0.05)
        self.assertAlmostEqual(widths[1], 60 / 70 * 100, delta=0.01)  # free, still resident: 60 of 70 MiB
        for go in ("HeapInuse", "HeapIdle - HeapReleased", "StackInuse"):
            self.assertIn(f"<code>{go}</code>", sec)
        for label in ("heap in use", "heap free, still resident", "cached thread stacks", "code and libraries"):
            self.assertIn(label, sec)
        # other = other anonymous + the remainder: 0.75 MiB
        self.assertRegex(sec, r"other</td><td><code>-</code></td><td class=\"num\">0\.8 MiB</td>")
        self.assertIn("HeapReleased) 10.0 MiB", sec)
        self.assertNotIn("did not settle", sec)

    def test_an_unsettled_walk_says_so(self):
        sec = section(self.run_with({"memstats-exited.json": json.dumps(memstats_snapshot(settled=False))}))
        self.assertIn("did not settle", sec)

    def test_phases_in_run_order(self):
        page = self.run_with({"memstats-exited.json": json.dumps(memstats_snapshot()),
                              "memstats-allocated.json": json.dumps(memstats_snapshot())})
        sec = section(page)
        self.assertLess(sec.index("memstats-allocated"), sec.index("memstats-exited"))

    def test_no_snapshot_no_section(self):
        page = self.run_with({})
        self.assertIsNone(section(page))
        self.assertNotIn('href="#memstats"', page)

    def test_an_unreadable_snapshot_is_no_section(self):
        page = self.run_with({"memstats-exited.json": "{not json", "memstats-allocated.json": json.dumps({"items": 3})})
        self.assertIsNone(section(page))


if __name__ == "__main__":
    unittest.main()
