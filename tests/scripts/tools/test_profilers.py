"""Tests of the profilers' parsers (massif --pages-as-heap, DHAT) and of their canary checks: each
fed a good report, a report whose canary is missing, and malformed output."""

import json
import tempfile
import unittest
from pathlib import Path

from fakes import make_run, snapshot, write_expected
from scripts.expect import comparer, expected
from scripts.tools import dhat, massif

CANARY_MAP = 5505024

# A --pages-as-heap profile shaped like valgrind 3.19's: snapshot 1 is marked "peak" but is not
# the largest (Massif refreshes its peak only after a release); the last snapshot is the program
# at exit, with the canary's pages charged through mmap to ll_canary_map and glibc's heap pages
# through sysmalloc to burst.
MASSIF_OUT = """desc: --pages-as-heap=yes --massif-out-file=massif.out --detailed-freq=1
cmd: ./heap_top_pin --variant kept
time_unit: i
#-----------
snapshot=0
#-----------
time=0
mem_heap_B=4096
mem_heap_extra_B=0
mem_stacks_B=0
heap_tree=empty
#-----------
snapshot=1
#-----------
time=1000
mem_heap_B=4157440
mem_heap_extra_B=0
mem_stacks_B=0
heap_tree=peak
n1: 4157440 (page allocation syscalls) mmap/mremap/brk, --alloc-fns, etc.
 n0: 4157440 0x4020CA3: __mmap64 (mmap64.c:58)
#-----------
snapshot=2
#-----------
time=5000
mem_heap_B=80000000
mem_heap_extra_B=0
mem_stacks_B=0
heap_tree=detailed
n1: 80000000 (page allocation syscalls) mmap/mremap/brk, --alloc-fns, etc.
 n0: 80000000 0x49499B3: __mmap64 (mmap64.c:58)
#-----------
snapshot=3
#-----------
time=9000
mem_heap_B=75505024
mem_heap_extra_B=0
mem_stacks_B=0
heap_tree=detailed
n3: 75505024 (page allocation syscalls) mmap/mremap/brk, --alloc-fns, etc.
 n2: 70000000 0x49499B3: __mmap64 (mmap64.c:58)
  n1: 64494976 0x49499B3: mmap (mmap64.c:46)
   n1: 64494976 0x48DDE60: sysmalloc_mmap_fallback.constprop.0 (malloc.c:2520)
    n1: 64494976 0x48DEE35: sysmalloc (malloc.c:2746)
     n1: 64494976 0x48E00BD: _int_malloc (malloc.c:4403)
      n1: 64494976 0x48E0AC9: malloc (malloc.c:3315)
       n0: 64494976 0x109196: burst (heap_top_pin.c:5)
  n1: 5505024 0x49499B3: mmap (mmap64.c:46)
   n1: 5505024 0x10A2B1: ll_canary_map (harness.c:523)
    n0: 5505024 0x10A5F0: ll_main (harness.c:615)
 n0: 5000000 0x4945C47: brk (brk.c:37)
 n0: 505024 in 3 places, all below massif's threshold (0.50%)
"""


def massif_file(tmp, text, name="massif.out"):
    path = Path(tmp) / name
    path.write_text(text)
    return path


class MassifParse(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def test_peak_is_the_largest_snapshot_not_massifs_mark(self):
        p = massif.parse_out(massif_file(self.tmp, MASSIF_OUT))
        self.assertTrue(p["pages_as_heap"])
        self.assertEqual((p["peak_bytes"], p["peak_snapshot"]), (80_000_000, 2))
        self.assertEqual(p["final_bytes"], 75_505_024)
        self.assertEqual(p["snapshots"], 4)

    def test_pages_charged_past_the_allocator_and_syscall_frames(self):
        p = massif.parse_out(massif_file(self.tmp, MASSIF_OUT))
        fns = p["final_by_function"]
        self.assertEqual(fns["ll_canary_map"], CANARY_MAP)
        self.assertEqual(fns["burst"], 64_494_976)
        self.assertEqual(fns["brk"], 5_000_000)           # no caller below it: the leaf frame itself
        self.assertEqual(fns[massif.BELOW_THRESHOLD], 505_024)
        self.assertEqual(sum(fns.values()), p["final_bytes"])

    def test_tcmalloc_pages_charged_to_the_program(self):
        # tcmalloc maps through its own mmap, which calls syscall(): measured in tcmalloc_cache's
        # massif.out; both are a mapping's insides, not the program's call.
        tree = massif.parse_tree([
            "n1: 8388608 (page allocation syscalls) mmap/mremap/brk, --alloc-fns, etc.",
            " n1: 8388608 0x4B7C829: syscall (syscall.S:38)",
            "  n1: 8388608 0x4882055: mmap (in /usr/lib/x86_64-linux-gnu/libtcmalloc.so.4.5.10)",
            "   n1: 8388608 0x486C555: MmapSysAllocator::Alloc(unsigned long, unsigned long*, unsigned long) "
            "(in /usr/lib/x86_64-linux-gnu/libtcmalloc.so.4.5.10)",
            "    n1: 8388608 0x486F9EB: tcmalloc::PageHeap::GrowHeap(unsigned long) (in /usr/lib/libtcmalloc.so.4)",
            "     n1: 8388608 0x10B154: ll_xmalloc (harness.c:137)",
            "      n0: 8388608 0x10A6EC: run_job (tcmalloc_cache.c:86)"])
        self.assertEqual(massif.charge(tree), {"run_job": 8388608})

    def test_tool_report_kinds(self):
        doc = massif.tool_report(massif.parse_out(massif_file(self.tmp, MASSIF_OUT)),
                                 {"tool_path": "/usr/bin/valgrind", "tool_version": "valgrind-3.19.0"})
        self.assertEqual(doc["kinds"]["final"], {"bytes": 75_505_024, "blocks": None})
        self.assertEqual(doc["kinds"]["peak"]["bytes"], 80_000_000)
        self.assertEqual(doc["verdict"], "reported")
        self.assertEqual(doc["tool_version"], "valgrind-3.19.0")

    def test_malformed_outputs_are_errors(self):
        cut = MASSIF_OUT[:MASSIF_OUT.index("mem_heap_extra_B=0\nmem_stacks_B=0\nheap_tree=detailed\nn3")]
        broken_tree = MASSIF_OUT.replace("   n1: 5505024 0x10A2B1", "      n1: 5505024 0x10A2B1")
        cases = {
            "empty": "",
            "not massif": "desc\nhello\n",
            "no snapshot": "desc: --pages-as-heap=yes\ncmd: x\ntime_unit: i\n",
            "cut in a snapshot": cut,
            "tree line out of place": broken_tree,
            "not a tree line": MASSIF_OUT.replace(" n0: 5000000 0x4945C47", " xx 5000000 0x4945C47"),
        }
        for name, text in cases.items():
            with self.subTest(name), self.assertRaises(ValueError):
                massif.parse_out(massif_file(self.tmp, text, name.replace(" ", "_")))

    def test_command_keeps_the_exit_state(self):
        # --run-libc-freeres=no: Valgrind's __libc_freeres at exit emptied glibc's stack cache
        # before the last snapshot (stack_cache kept: 17,825,792 B of cached stacks measured
        # with it, 1,040,384 B without: the check in expected/retention/stack_cache.toml failed).
        argv, env = massif.command(None, "b", Path(self.tmp), ["b"], ["--threads", "8"])
        self.assertIn("--pages-as-heap=yes", argv)
        self.assertIn("--run-libc-freeres=no", argv)
        self.assertEqual(argv[-3:], ["b", "--threads", "8"])

    def test_postprocess_refuses_a_heap_level_profile(self):
        run = Path(self.tmp) / "run"
        run.mkdir()
        (run / "massif.out").write_text(MASSIF_OUT.replace("--pages-as-heap=yes ", ""))
        doc, errors, _ = massif.postprocess(None, None, run, {})
        self.assertIsNotNone(doc)
        self.assertTrue(any("pages-as-heap" in e for e in errors), errors)

    def test_postprocess_without_output_is_an_error(self):
        doc, errors, _ = massif.postprocess(None, None, Path(self.tmp), {})
        self.assertIsNone(doc)
        self.assertTrue(errors)


def dhat_doc(canary=True):
    """A DHAT heap-mode file: a burst freed before the end, and (canary) one block of 31,337
    bytes, allocated by ll_canary_leak, live at t-gmax and at t-end."""
    pps = [{"tb": 65_536_000, "tbk": 1000, "tl": 1, "mb": 65_536_000, "mbk": 1000, "gb": 65_536_000, "gbk": 1000,
            "eb": 0, "ebk": 0, "rb": 0, "wb": 0, "fs": [1, 3, 4]},
           {"tb": 64, "tbk": 1, "tl": 1, "mb": 64, "mbk": 1, "gb": 64, "gbk": 1, "eb": 64, "ebk": 1,
            "rb": 0, "wb": 0, "fs": [1, 5]}]
    if canary:
        pps.append({"tb": 31337, "tbk": 1, "tl": 1, "mb": 31337, "mbk": 1, "gb": 31337, "gbk": 1, "eb": 31337,
                    "ebk": 1, "rb": 0, "wb": 31337, "fs": [1, 2, 6]})
    return {"dhatFileVersion": 2, "mode": "heap", "verb": "Allocated", "bklt": True, "bkacc": True, "tu": "instrs",
            "Mtu": "Minstr", "tuth": 500, "cmd": "./heap_top_pin", "pid": 1, "te": 100, "tg": 50, "pps": pps,
            "ftbl": ["[root]", "0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_dhat-amd64-linux.so)",
                     "0x1091D0: ll_canary_leak (harness.c:349)", "0x109196: burst.isra.0 (heap_top_pin.c:5)",
                     "0x1091FF: main (heap_top_pin.c:9)", "0x1091EF: keep_record (heap_top_pin.c:8)",
                     "0x10A5F0: ll_main (harness.c:583)"]}


class DhatParse(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def parse(self, doc):
        path = Path(self.tmp) / "dhat.json"
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return dhat.parse_json(path)

    def test_totals_and_charged_functions(self):
        p = self.parse(dhat_doc())
        self.assertEqual(p["kinds"]["total"], {"bytes": 65_536_000 + 64 + 31337, "blocks": 1002})
        self.assertEqual(p["kinds"]["peak"], {"bytes": 65_536_000 + 64 + 31337, "blocks": 1002})
        self.assertEqual(p["kinds"]["final"], {"bytes": 64 + 31337, "blocks": 2})
        self.assertEqual(p["by_function"]["final"]["ll_canary_leak"], {"bytes": 31337, "blocks": 1})
        self.assertEqual(p["by_function"]["total"]["burst"]["blocks"], 1000)   # burst.isra.0 is burst
        self.assertNotIn("burst", p["by_function"]["final"])                  # freed: no bytes at t-end

    def test_malformed_outputs_are_errors(self):
        no_field = dhat_doc()
        del no_field["pps"][0]["eb"]
        bad_frame = dhat_doc()
        bad_frame["pps"][0]["fs"] = [1, 99]
        copy_mode = dhat_doc()
        copy_mode["mode"] = "copy"
        cases = {"cut": json.dumps(dhat_doc())[:300], "not dhat": {"hello": 1}, "copy mode": copy_mode,
                 "a record without eb": no_field, "a frame not in ftbl": bad_frame, "no pps": {**dhat_doc(), "pps": None}}
        for name, doc in cases.items():
            with self.subTest(name), self.assertRaises(ValueError):
                self.parse(doc)


class CanaryChecks(unittest.TestCase):
    """The canary checks of expected/delayed_exit.toml and expected/retention/*.toml, as written
    there, against a report that has the canary and one that has not (a broken tool)."""
    MASSIF_CANARY = "tool.bytes_by_function(final, ll_canary_map) == canary_map_bytes"
    DHAT_CANARY = "tool.bytes_by_function(final, ll_canary_leak) == canary_bytes"
    DHAT_CANARY_BLOCKS = "tool.blocks_by_function(final, ll_canary_leak) == 1"

    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def verdicts(self, tool, report, start, *expects):
        run = make_run(self.tmp, [("freed", snapshot())], tool=tool, variant="kept")
        lines = (run / "events.jsonl").read_text().splitlines()
        first = json.loads(lines[0])
        first.update(start)
        (run / "events.jsonl").write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
        (run / "tool.json").write_text(json.dumps(report))
        checks = "".join(f'[[check]]\nvariant = "kept"\ntool = "{tool}"\ncanary = true\nexpect = "{e}"\n\n' for e in expects)
        exp = write_expected(self.tmp, checks)
        v = comparer.compare(run, exp)
        return [r.verdict for r in v.rows if r.check.startswith("tool.")]

    def massif_report(self, text):
        return massif.tool_report(massif.parse_out(massif_file(self.tmp, text)), {"tool_path": "v", "tool_version": "v"})

    def test_massif_canary(self):
        start = {"canary_map_bytes": CANARY_MAP}
        self.assertEqual(self.verdicts("massif", self.massif_report(MASSIF_OUT), start, self.MASSIF_CANARY), ["PASS"])
        missing = MASSIF_OUT.replace("ll_canary_map (harness.c:523)", "other_map (x.c:1)")
        self.assertEqual(self.verdicts("massif", self.massif_report(missing), start, self.MASSIF_CANARY), ["FAIL"])

    def test_dhat_canary(self):
        def report(doc):
            path = Path(self.tmp) / "d.json"
            path.write_text(json.dumps(doc))
            return dhat.tool_report(dhat.parse_json(path), {"tool_path": "v", "tool_version": "v"})
        start = {"canary_bytes": 31337}
        self.assertEqual(self.verdicts("dhat", report(dhat_doc()), start, self.DHAT_CANARY, self.DHAT_CANARY_BLOCKS),
                         ["PASS", "PASS"])
        self.assertEqual(self.verdicts("dhat", report(dhat_doc(canary=False)), start, self.DHAT_CANARY,
                                       self.DHAT_CANARY_BLOCKS), ["FAIL", "FAIL"])


class MatrixAllocator(unittest.TestCase):
    """A matrix cell runs under the allocator its expected file checks the tool under: tcmalloc_cache
    skips (77) under glibc, so its massif and dhat cells must run its -tcmalloc binary."""

    def test_cell_allocator(self):
        from scripts.views import matrix
        tmp = tempfile.mkdtemp()
        only_tc = expected.load(write_expected(tmp, """
            [[check]]
            variant = "kept"
            tool = "massif"
            allocator = "tcmalloc"
            expect = "tool.bytes(final) > 0"
            """, "only_tc.toml"))
        both = expected.load(write_expected(tmp, """
            [[check]]
            variant = "kept"
            tool = "massif"
            expect = "tool.bytes(final) > 0"

            [[check]]
            variant = "kept"
            tool = "massif"
            allocator = "jemalloc"
            expect = "tool.bytes(final) > 0"
            """, "both.toml"))
        self.assertEqual(matrix.cell_allocator(only_tc, "massif", "kept", "quick"), "tcmalloc")
        self.assertEqual(matrix.cell_allocator(only_tc, "dhat", "kept", "quick"), "glibc")     # no dhat check
        self.assertEqual(matrix.cell_allocator(only_tc, "memcheck", "kept", "quick"), "glibc")
        self.assertEqual(matrix.cell_allocator(both, "massif", "kept", "quick"), "glibc")      # the default first
        self.assertEqual(matrix.cell_allocator(only_tc, "heapprof", "kept", "quick"), "tcmalloc")


if __name__ == "__main__":
    unittest.main()
