"""Tests of the retention kernels' [truth] (scripts/expect/retention.py): the
table's validation, its expressions, and the rows a native run gets. Every
row has a violating case: a run that disagrees with the truth must FAIL."""

import json
import tempfile
import unittest
from pathlib import Path

import fakes
from fakes import make_run, snapshot
from scripts.expect import comparer, expected, retention

MB = 1 << 20
PAGE = 4096

TRUTH = """
[[check]]
variant = "kept"
phase = "freed"
expect = "threads == 1"

[truth]
pattern = "a small block at the top pins the burst below it"
phase = "freed"
tolerance = 0.02
noise_bytes = 524288

[truth.kept]
in_use = "pin_bytes + 16"
free_resident = "blocks * block_bytes"

[truth.kept.counters]
blocks = "0"

[truth.trimmed]
in_use = "pin_bytes + 16"
free_resident = "2 * page"
released = "blocks * block_bytes - 2 * page"

[truth.trimmed.tcmalloc]
free_resident = "0"
"""
PARAMS = {"blocks": 256, "block-bytes": 65536, "pin-bytes": 64}
PAYLOAD = 256 * 65536


def load_text(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k.toml"
        path.write_text(text)
        return expected.load(path)


def phases(rss_anon, in_use, free_held, released=-1, blocks=0, allocator="glibc"):
    """baseline, then `freed` grown by the given bytes."""
    base = snapshot(rss_anon_bytes=10 * MB, threads=1, counters={"blocks": 0},
                    alloc={"allocator": allocator, "in_use_bytes": MB, "free_held_bytes": MB,
                           "released_bytes": -1 if released == -1 else 0, "arenas": 1})
    freed = snapshot(rss_anon_bytes=10 * MB + rss_anon, threads=1, counters={"blocks": blocks},
                     alloc={"allocator": allocator, "in_use_bytes": MB + in_use, "free_held_bytes": MB + free_held,
                            "released_bytes": released, "arenas": 1})
    return [("baseline", base), ("freed", freed)]


def verdict(tmp, variant, ph, allocator="glibc", looks=None):
    """The comparer's verdict on a fake run; `looks` {phase: memstats snapshot} makes it a run
    held at those phases, with memstats-PHASE.json written as the driver would (None: a
    snapshot that the driver's failed look left out)."""
    holds = [{"event": "hold", "t": 50.0, "until": "driver", "phase": p} for p in (looks or {})]
    run = make_run(tmp, ph, variant=variant, allocator=allocator, params=PARAMS, payload_bytes=PAYLOAD,
                   extra_events=holds)
    for p, snap in (looks or {}).items():
        if snap is not None:
            (run / f"memstats-{p}.json").write_text(json.dumps(snap))
    exp = Path(tmp) / "k.toml"
    exp.write_text(TRUTH)
    return comparer.compare(run, exp)


def look(in_use, idle, released, allocator="glibc", purged=0, metadata=0):
    """A memstats snapshot as scripts/outside/memstats.py writes it, reduced to what the
    truth's rows read."""
    go = {"HeapInuse": in_use, "HeapIdle": idle, "HeapReleased": released, "StackInuse": 0, "StackCached": 0}
    snap = {"allocator": allocator, "go": go, "items": []}
    if allocator == "glibc":
        snap["glibc"] = {"arenas": []}
    else:
        snap[allocator] = {"figures": {"purged": purged} if allocator == "jemalloc" else {},
                           "metadata_resident_bytes": metadata}
    return snap


class TruthTable(unittest.TestCase):
    def test_loads_as_a_retention_truth(self):
        t = load_text(TRUTH).truth
        self.assertTrue(t.retention)
        self.assertEqual(t.phase, "freed")
        self.assertEqual(set(t.variants), {"kept", "trimmed"})
        self.assertEqual(t.value("kept", "free_resident", PARAMS), PAYLOAD)
        self.assertEqual(t.value("kept", "resident", PARAMS), PAYLOAD + 80)
        self.assertEqual(t.value("trimmed", "free_resident", PARAMS, "tcmalloc"), 0)
        self.assertEqual(t.value("trimmed", "free_resident", PARAMS, "glibc"), 2 * PAGE)

    def test_the_zoo_truth_is_still_the_zoo_s(self):
        zoo = (Path(fakes.REPO) / "expected" / "zoo" / "ncast_leak.toml")
        self.assertFalse(getattr(expected.load(zoo).truth, "retention", False))

    def test_expressions(self):
        self.assertEqual(retention.evaluate("min(threads, floor(40 * MiB / (64 * KiB + page)))", {"threads": 2048}), 602)
        self.assertEqual(retention.evaluate("huge_pages * huge_page", {"huge-pages": 3}), 3 * 2 * MB)
        with self.assertRaises(expected.Unresolved):
            retention.evaluate("nosuch * 2", PARAMS)

    def test_broken_tables_are_refused(self):
        for bad, why in [(TRUTH.replace('phase = "freed"\ntolerance', 'tolerance'), "zoo"),
                         (TRUTH.replace('free_resident = "blocks * block_bytes"', 'free_resident = "__import__(1)"'),
                          "call"),
                         (TRUTH.replace('in_use = "pin_bytes + 16"\nfree_resident = "blocks',
                                        'in_use = "pin_bytes + 16"\nkept_bytes = "1"\nfree_resident = "blocks'), "key"),
                         (TRUTH.replace("noise_bytes = 524288", "noise_bytes = -1"), "noise"),
                         (TRUTH.replace('[truth.trimmed.tcmalloc]\nfree_resident = "0"', '[truth.trimmed.musl]\nx = "0"'),
                          "allocator")]:
            with self.subTest(why), self.assertRaises(expected.ExpectedFileError):
                load_text(bad)

    def test_every_retention_file_loads(self):
        names = expected.scenarios_in(Path(fakes.REPO) / "expected", "retention")
        self.assertGreaterEqual(len(names), 8)
        for name in names:
            with self.subTest(name):
                self.assertTrue(expected.load(expected.path_for(name, Path(fakes.REPO) / "expected")).truth.retention)


class TruthRows(unittest.TestCase):
    def rows(self, v):  # the native rows (memstats' rows: MemstatsRows below)
        return {r.check: r.verdict for r in v.rows
                if r.check.startswith("truth:") and not r.check.startswith("truth: memstats")}

    def test_a_run_that_keeps_the_burst_passes_kept(self):
        with tempfile.TemporaryDirectory() as tmp:
            v = verdict(tmp, "kept", phases(rss_anon=PAYLOAD + 300_000, in_use=20_000, free_held=PAYLOAD))
            self.assertEqual(set(self.rows(v).values()), {"PASS"}, v.rows)
            self.assertEqual(v.code, 0)

    def test_a_run_that_returned_the_burst_fails_kept(self):
        with tempfile.TemporaryDirectory() as tmp:
            v = verdict(tmp, "kept", phases(rss_anon=200_000, in_use=20_000, free_held=PAYLOAD))
            self.assertEqual(self.rows(v)["truth: rss_anon_bytes@freed - @baseline ≈ resident"], "FAIL")
            self.assertEqual(v.code, 1)

    def test_glibc_free_held_counts_released_too(self):
        with tempfile.TemporaryDirectory() as tmp:
            ok = verdict(tmp, "trimmed", phases(rss_anon=150_000, in_use=20_000, free_held=PAYLOAD))
            self.assertEqual(set(self.rows(ok).values()), {"PASS"}, ok.rows)
        with tempfile.TemporaryDirectory() as tmp:
            bad = verdict(tmp, "trimmed", phases(rss_anon=150_000, in_use=20_000, free_held=0))
            self.assertEqual(self.rows(bad)["truth: alloc.free_held_bytes@freed - @baseline ≈ free_resident + released"],
                             "FAIL")

    def test_tcmalloc_released_is_checked(self):
        with tempfile.TemporaryDirectory() as tmp:
            v = verdict(tmp, "trimmed", phases(rss_anon=0, in_use=0, free_held=0, released=0, allocator="tcmalloc"),
                        allocator="tcmalloc")
            self.assertEqual(self.rows(v)["truth: alloc.released_bytes@freed - @baseline ≈ released"], "FAIL")

    def test_counters(self):
        with tempfile.TemporaryDirectory() as tmp:
            v = verdict(tmp, "kept", phases(rss_anon=PAYLOAD, in_use=0, free_held=PAYLOAD, blocks=5))
            self.assertEqual(self.rows(v)["truth: counters.blocks@freed - @baseline ≈ counters.blocks"], "FAIL")

    def test_a_variant_without_truth_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            v = verdict(tmp, "ordered", phases(rss_anon=0, in_use=0, free_held=0))
            self.assertIn("ERROR", {r.verdict for r in v.rows})
            self.assertEqual(v.code, 1)


class MemstatsRows(unittest.TestCase):
    """Every native run of a retention kernel is held at the truth's baseline and phase while
    memstats looks (attach_native_runs); its growth between the looks meets the truth."""

    def rows(self, v):
        return {r.check: r for r in v.rows if r.check.startswith("truth: memstats")}

    def test_native_runs_are_held_and_looked_at(self):
        exp = load_text(TRUTH)
        for allocator, preload in (("glibc", []), ("tcmalloc", ["allocstats"]), ("jemalloc", ["allocstats"])):
            sel = ("kept", "native", allocator, "seed")
            self.assertEqual(exp.options_for(*sel), ["--hold-at", "baseline:driver", "--hold-at", "freed:driver"])
            self.assertEqual(exp.preloads_for(*sel), preload)
            self.assertEqual([(d.on, d.phase, d.send) for d in exp.drivers_for(*sel)],
                             [("hold", "baseline", "go-on"), ("hold", "freed", "go-on")])
        self.assertEqual((exp.options_for("kept", "memcheck", "glibc", "quick"),
                          exp.drivers_for("kept", "memcheck", "glibc", "quick")), ([], []))

    def test_a_look_that_meets_the_truth_passes_and_one_that_does_not_fails(self):
        ph = phases(rss_anon=PAYLOAD + 300_000, in_use=20_000, free_held=PAYLOAD)
        base = look(MB, MB, 0)
        with tempfile.TemporaryDirectory() as tmp:
            v = verdict(tmp, "kept", ph, looks={"baseline": base, "freed": look(MB + 80, MB + PAYLOAD, 0)})
            self.assertEqual({r.verdict for r in self.rows(v).values()}, {"PASS"}, v.rows)
            self.assertEqual(len(self.rows(v)), 4)
            self.assertEqual(v.code, 0)
        with tempfile.TemporaryDirectory() as tmp:  # memstats calls the burst returned: kept says resident
            v = verdict(tmp, "kept", ph, looks={"baseline": base, "freed": look(MB + 80, MB + PAYLOAD, PAYLOAD)})
            rows = self.rows(v)
            self.assertEqual(rows["truth: memstats HeapIdle-HeapReleased@freed - @baseline ≈ free_resident"].verdict,
                             "FAIL")
            self.assertEqual(rows["truth: memstats HeapReleased@freed - @baseline ≈ released"].verdict, "FAIL")
            self.assertEqual(v.code, 1)

    def test_jemalloc_released_is_its_purge_count(self):
        ph = phases(rss_anon=150_000, in_use=20_000, free_held=2 * PAGE, allocator="jemalloc")
        base = look(MB, MB, 3 * MB, "jemalloc", purged=0)
        given_back = PAYLOAD - 2 * PAGE
        name = "truth: memstats purged@freed - @baseline ≈ released + unmapped"
        with tempfile.TemporaryDirectory() as tmp:  # retained grew by a never-touched reserve too: not read
            at = look(MB + 80, MB + 2 * PAGE + given_back + 3 * MB, 3 * MB + given_back + 3 * MB, "jemalloc",
                      purged=given_back)
            v = verdict(tmp, "trimmed", ph, "jemalloc", looks={"baseline": base, "freed": at})
            self.assertEqual(self.rows(v)[name].verdict, "PASS", v.rows)
        with tempfile.TemporaryDirectory() as tmp:  # nothing purged: the burst was not given back
            at["jemalloc"]["figures"]["purged"] = 0
            v = verdict(tmp, "trimmed", ph, "jemalloc", looks={"baseline": base, "freed": at})
            self.assertEqual(self.rows(v)[name].verdict, "FAIL")

    def test_a_missing_look_is_an_error_and_an_unheld_run_skips(self):
        ph = phases(rss_anon=PAYLOAD + 300_000, in_use=20_000, free_held=PAYLOAD)
        with tempfile.TemporaryDirectory() as tmp:
            v = verdict(tmp, "kept", ph, looks={"baseline": look(MB, MB, 0), "freed": None})
            self.assertEqual([r.verdict for r in self.rows(v).values()], ["ERROR"])
            self.assertIn("memstats-freed.json", next(iter(self.rows(v).values())).detail)
            self.assertEqual(v.code, 1)
        with tempfile.TemporaryDirectory() as tmp:  # tcmalloc's heap not itemized (no agent answered)
            v = verdict(tmp, "kept", phases(rss_anon=PAYLOAD, in_use=0, free_held=PAYLOAD, allocator="tcmalloc"),
                        "tcmalloc", looks={"baseline": look(MB, MB, 0), "freed": look(MB, MB, 0)})
            self.assertEqual([r.verdict for r in self.rows(v).values()], ["ERROR"])
        with tempfile.TemporaryDirectory() as tmp:  # not held at all: said, not passed over in silence
            v = verdict(tmp, "kept", ph)
            self.assertEqual([r.verdict for r in self.rows(v).values()], ["SKIP"])
            self.assertIn("not held for memstats", next(iter(self.rows(v).values())).detail)


if __name__ == "__main__":
    unittest.main()
