"""Tests of the tool parsers: heap profile truncation, pprof text and stacks, memcheck XML."""

import tempfile
import unittest
from pathlib import Path

import fakes  # noqa: F401
from scripts.tools import drd
from scripts.tools import heapprof
from scripts.tools import helgrind
from scripts.tools import memcheck
from scripts.tools import sanitizer
from scripts.tools import tsan

MAPS = ("\nMAPPED_LIBRARIES:\n"
        "5647000-5648000 r-xp 00001000 00:00 10952868    /build/scenarios/blocked_workers\n"
        "7ffe418e7000-7ffe41908000 rw-p 00000000 00:00 0           [stack]\n")
RECORDS = ("heap profile:    111: 81058576 [   111: 81058576] @ heapprofile\n"
           "   100: 80000000 [   100: 80000000] @ 0x5647083111d2 0x5647083111ef 0x564708311255\n"
           "     1:  1048576 [     1:  1048576] @ 0x7fa23b8311d0 0x56470831127f\n"
           "    10:    10000 [    10:    10000] @ 0x564708311214 0x564708311270\n")

PPROF_MB = """Total: 77.3 MB
    76.3  98.7%  98.7%     76.3  98.7% ll_xrealloc
     1.0   1.3% 100.0%      1.0   1.3% GetHeapProfile
     0.0   0.0% 100.0%      0.0   0.0% small
     0.0   0.0% 100.0%     76.3  98.7% fill_buffer
     0.0   0.0% 100.0%     77.3 100.0% main
"""
PPROF_BYTES = """Total: 81058576 B
80000000  98.7%  98.7% 80000000  98.7% ll_xrealloc
 1048576   1.3% 100.0%  1048576   1.3% GetHeapProfile
   10000   0.0% 100.0%    10000   0.0% small
       0   0.0% 100.0% 80000000  98.7% fill_buffer
       0   0.0% 100.0% 81058576 100.0% main
"""
PPROF_STACKS = """Total: 81058576 B
Stacks:

1048576  (00007fa23b8311d0) ??:0:GetHeapProfile
         (000056470831127e) /src/harness.c:13:main

80000000 (00005647083111d2) /src/harness.c:130:ll_xrealloc
         (00005647083111ee) /src/blocked_workers.c:74:fill_buffer
         (0000564708311254) /src/blocked_workers.c:86:worker

10000    (0000564708311214) /src/t.c:7:small
         (000056470831126f) /src/t.c:12:main

Leak of 80000000 bytes in 100 objects allocated from:
	@ 5647083111d2 unknown
	@ 00005647083111ee fill_buffer /src/blocked_workers.c:74
"""


class HeapProfileTruncation(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.path = Path(self._tmp.name) / "01-steady.heap"

    def tearDown(self):
        self._tmp.cleanup()

    def check(self, content):
        self.path.write_bytes(content.encode() if isinstance(content, str) else content)
        return heapprof.check_profile(self.path)

    def test_complete_profile(self):
        self.assertIsNone(self.check(RECORDS + MAPS))
        self.assertIsNone(self.check(RECORDS + MAPS.rstrip("\n")))  # no final newline is fine

    def test_cut_inside_the_maps_header(self):
        self.assertIn("MAPPED_LIBRARIES", self.check(RECORDS + "\nMAPPED_LIB"))

    def test_cut_inside_the_records(self):
        self.assertIsNotNone(self.check(RECORDS[:150]))

    def test_dropped_records(self):
        # gperftools 2.10 writes the maps first and drops records that no
        # longer fit: the header total then exceeds the records' sum.
        lines = RECORDS.splitlines(keepends=True)
        why = self.check("".join(lines[:2]) + MAPS)
        self.assertIn("dropped", why)

    def test_header_cut(self):
        # What gperftools 2.10 wrote at 10,000 threads with guard pages on:
        # the maps filled the buffer and the header's totals did not fit.
        maps_body = MAPS * 8000
        content = "heap profile: " + maps_body
        content = content[:heapprof.DUMP_BUFFER_BYTES - 29]
        why = self.check(content)
        self.assertIn("header line is cut", why)
        self.assertIn("--guard-pages off", why)

    def test_empty_file(self):
        self.assertIn("empty", self.check(""))

    def test_not_a_profile(self):
        self.assertIn("header", self.check("hello\n" + MAPS))

    def test_size_at_the_dump_buffer_limit(self):
        filler = "x" * (heapprof.DUMP_BUFFER_BYTES - 4 - len(RECORDS) - len(MAPS))
        why = self.check(RECORDS + MAPS + filler)
        self.assertIsNotNone(why)
        self.assertIn("1048576", why)

    def test_missing_file(self):
        self.assertIn("cannot read", heapprof.check_profile(self.path))

    def test_megabytes_text_is_what_pprof_prints_without_show_bytes(self):
        # google-pprof 2.10's own output for a 10,000-worker profile (PPROF_MB
        # is shortened): "%8s %6s %6s %8s %6s %s", MB with one decimal.
        text = heapprof.megabytes_text(PPROF_BYTES)
        self.assertEqual(text.splitlines()[0], "Total: 77.3 MB")
        self.assertEqual(text.splitlines()[1], "    76.3  98.7%  98.7%     76.3  98.7% ll_xrealloc")
        self.assertEqual(heapprof.parse_text(text)["rows"], heapprof.parse_text(PPROF_MB)["rows"])

    def test_in_use_only_drops_freed_records_and_keeps_the_rest(self):
        freed = "     0:        0 [   700:  9000000] @ 0x7f00000000a1 0x7f00000000a2\n"
        lines = RECORDS.splitlines(keepends=True)
        self.check(lines[0] + freed + "".join(lines[1:]) + MAPS)
        out = heapprof.in_use_only(self.path, self.path.with_suffix(".in-use.heap"))
        text = out.read_text()
        self.assertEqual(text, RECORDS.rstrip("\n") + MAPS)
        self.assertNotIn("0x7f00000000a1", text)
        self.assertIsNone(heapprof.check_profile(out))  # the in-use totals still add up


class PprofParsing(unittest.TestCase):
    def test_text_in_mb(self):
        parsed = heapprof.parse_text("Using local file x.\n" + PPROF_MB)
        self.assertEqual(parsed["total_bytes"], round(77.3 * (1 << 20)))
        first = parsed["rows"][0]
        self.assertEqual(first["function"], "ll_xrealloc")
        self.assertEqual(first["flat_bytes"], round(76.3 * (1 << 20)))
        self.assertAlmostEqual(first["flat_share"], 0.987)
        self.assertEqual(parsed["rows"][3]["cum_bytes"], round(76.3 * (1 << 20)))

    def test_text_in_bytes(self):
        parsed = heapprof.parse_text(PPROF_BYTES)
        self.assertEqual(parsed["total_bytes"], 81058576)
        self.assertEqual(parsed["rows"][1], {"function": "GetHeapProfile", "flat_bytes": 1048576,
                                             "flat_share": 0.013, "cum_bytes": 1048576})

    def test_text_without_total_is_refused(self):
        with self.assertRaises(ValueError):
            heapprof.parse_text("google-pprof: no profile\n")

    def test_stacks(self):
        stacks = heapprof.parse_stacks(PPROF_STACKS)
        self.assertEqual(stacks[1], (80000000, ["ll_xrealloc", "fill_buffer", "worker"]))
        self.assertEqual(len(stacks), 3)  # the "Leak of" listing is not counted twice

    def test_summary_folds_the_harness_wrappers(self):
        s = heapprof.summarize(PPROF_BYTES, PPROF_STACKS)
        self.assertEqual(s["top_function"], "fill_buffer")
        self.assertEqual(s["sites"]["fill_buffer"], 80000000)
        self.assertAlmostEqual(s["top_share"], 80000000 / 81058576)
        self.assertEqual(s["flat"]["ll_xrealloc"], 80000000)  # pprof's own column is kept
        self.assertEqual(s["cum"]["fill_buffer"], 80000000)

    def test_inline_copies_count_under_the_function(self):
        text = PPROF_BYTES + "     512   0.0% 100.0%      512   0.0% small (inline)\n"
        s = heapprof.summarize(text)
        self.assertEqual(s["flat"]["small"], 10512)
        self.assertNotIn("small (inline)", s["flat"])

    def test_summary_without_stacks_uses_flat(self):
        s = heapprof.summarize(PPROF_BYTES)
        self.assertEqual(s["top_function"], "ll_xrealloc")


MEMCHECK_XML = """<?xml version="1.0"?>
<valgrindoutput>
<protocolversion>4</protocolversion>
<status><state>RUNNING</state></status>
<status><state>FINISHED</state></status>
<error>
  <unique>0x0</unique><tid>1</tid><kind>Leak_DefinitelyLost</kind>
  <xwhat><text>40 bytes in 1 blocks are definitely lost in loss record 1 of 5</text>
    <leakedbytes>40</leakedbytes><leakedblocks>1</leakedblocks></xwhat>
  <stack>
    <frame><ip>0x48417B4</ip><obj>/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so</obj><fn>malloc</fn></frame>
    <frame><ip>0x109231</ip><fn>main</fn></frame>
  </stack>
</error>
<error>
  <unique>0x1</unique><tid>1</tid><kind>Leak_IndirectlyLost</kind>
  <xwhat><text>64 bytes in 1 blocks are indirectly lost in loss record 2 of 5</text>
    <leakedbytes>64</leakedbytes><leakedblocks>1</leakedblocks></xwhat>
  <stack>
    <frame><fn>malloc</fn></frame><frame><fn>lose_list</fn></frame><frame><fn>main</fn></frame>
  </stack>
</error>
<error>
  <unique>0x2</unique><tid>1</tid><kind>Leak_DefinitelyLost</kind>
  <xwhat><text>128 (64 direct, 64 indirect) bytes in 1 blocks are definitely lost in loss record 3 of 5</text>
    <leakedbytes>128</leakedbytes><leakedblocks>1</leakedblocks></xwhat>
  <stack>
    <frame><fn>realloc</fn></frame><frame><fn>ll_xrealloc</fn></frame>
    <frame><fn>lose_list</fn></frame><frame><fn>main</fn></frame>
  </stack>
</error>
<error>
  <unique>0x3</unique><tid>1</tid><kind>Leak_PossiblyLost</kind>
  <xwhat><text>272 bytes in 1 blocks are possibly lost in loss record 4 of 5</text>
    <leakedbytes>272</leakedbytes><leakedblocks>1</leakedblocks></xwhat>
  <stack>
    <frame><fn>calloc</fn></frame><frame><fn>calloc</fn></frame><frame><fn>allocate_dtv</fn></frame>
  </stack>
</error>
<error>
  <unique>0x4</unique><tid>1</tid><kind>Leak_StillReachable</kind>
  <xwhat><text>1,000 bytes in 1 blocks are still reachable in loss record 5 of 5</text>
    <leakedbytes>1000</leakedbytes><leakedblocks>1</leakedblocks></xwhat>
  <stack><frame><fn>calloc</fn></frame><frame><fn>reach</fn></frame></stack>
</error>
<error>
  <unique>0x5</unique><tid>2</tid><kind>InvalidRead</kind>
  <what>Invalid read of size 4</what>
  <stack><frame><fn>worker</fn></frame></stack>
</error>
<errorcounts><pair><count>3</count><unique>0x5</unique></pair></errorcounts>
</valgrindoutput>
"""


class ValgrindCommands(unittest.TestCase):
    def test_a_forked_child_writes_no_report(self):
        # photon_fork_lock forks: the child's XML appended to the parent's made the
        # file two documents, and memcheck's fixed cells came out ERROR.
        for argv in (memcheck.valgrind_argv(Path("/r"), 500), helgrind.valgrind_argv("helgrind", Path("/r"), 500),
                     helgrind.valgrind_argv("drd", Path("/r"), 500)):
            self.assertIn("--child-silent-after-fork=yes", argv)


class MemcheckParsing(unittest.TestCase):
    def parse(self, text):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "memcheck.xml"
            path.write_text(text)
            return memcheck.parse_xml(path)

    def test_kinds_count_direct_bytes(self):
        r = self.parse(MEMCHECK_XML)
        # 40 + 64 direct: the 64 indirect bytes are reported once, as indirectly lost.
        self.assertEqual(r["kinds"]["definitely_lost"], {"bytes": 104, "blocks": 2})
        self.assertEqual(r["kinds"]["indirectly_lost"], {"bytes": 64, "blocks": 1})
        self.assertEqual(r["kinds"]["possibly_lost"], {"bytes": 272, "blocks": 1})
        self.assertEqual(r["kinds"]["still_reachable"], {"bytes": 1000, "blocks": 1})
        self.assertTrue(r["finished"])

    def test_by_function_skips_allocators_and_wrappers(self):
        r = self.parse(MEMCHECK_XML)
        self.assertEqual(r["by_function"]["definitely_lost"],
                         {"main": {"bytes": 40, "blocks": 1}, "lose_list": {"bytes": 64, "blocks": 1}})
        self.assertEqual(list(r["by_function"]["possibly_lost"]), ["allocate_dtv"])

    def test_other_errors_are_counted(self):
        r = self.parse(MEMCHECK_XML)
        self.assertEqual(r["errors"], {"InvalidRead": 3})
        self.assertEqual(r["error_count"], 3)

    def test_incomplete_xml_is_refused(self):
        with self.assertRaises(ValueError):
            self.parse(MEMCHECK_XML[:700])

    def test_unfinished_run_is_flagged(self):
        r = self.parse(MEMCHECK_XML.replace("<status><state>FINISHED</state></status>", ""))
        self.assertFalse(r["finished"])

    def test_max_threads(self):
        self.assertEqual(memcheck.max_threads_for(["--workers", "200"]), 500)
        self.assertEqual(memcheck.max_threads_for(["--workers=1000"]), 2064)
        self.assertEqual(memcheck.max_threads_for([]), memcheck.DEFAULT_MAX_THREADS)


if __name__ == "__main__":
    unittest.main()


def valgrind_xml(*errors, finished=True):
    """A Helgrind/DRD --xml=yes report: errors as (kind, text, [functions]), innermost first."""
    body = []
    for i, (kind, text, fns) in enumerate(errors):
        frames = "".join(f"<frame><fn>{fn}</fn></frame>" for fn in fns)
        body.append(f"<error><unique>0x{i:x}</unique><tid>1</tid><kind>{kind}</kind>"
                    f"<xwhat><text>{text}</text></xwhat><stack>{frames}</stack></error>")
    status = "<status><state>RUNNING</state></status>" + ("<status><state>FINISHED</state></status>" if finished else "")
    return f"<?xml version='1.0'?><valgrindoutput>{status}{''.join(body)}</valgrindoutput>"


class CauseParsing(unittest.TestCase):
    """Helgrind's, DRD's and TSan's reports mapped to the truth's causes
    (docs/tools.md, "Causes"): each of their words, the census's own reports
    left out, and the one cause a report names."""

    def parse(self, module, *errors, finished=True):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "x.xml"
            path.write_text(valgrind_xml(*errors, finished=finished))
            return helgrind.parse_xml(path, module.classify)

    def test_helgrind_words(self):
        p = self.parse(helgrind,
                       ("LockOrder", 'Thread #1: lock order "0x1 before 0x2" violated', ["ll_canary_lock_order"]),
                       ("Misc", "Thread #2: Attempt to re-lock a non-recursive lock I already hold", ["manage"]),
                       ("Misc", "Thread #1: Exiting thread still holds 1 lock", ["_Exit", "exit", "ll_main"]),
                       ("Misc", "Thread #3: Exiting thread still holds 1 lock",
                        ["futex_wait", "__pthread_cond_wait_common", "pthread_cond_wait@@GLIBC_2.3.2", "stop"]),
                       ("Misc", "Thread #4: Exiting thread still holds 2 locks",
                        ["futex_wait", "__lll_lock_wait", "pthread_mutex_lock@@GLIBC_2.2.5", "report_unreachable"]),
                       ("Race", "Possible data race during read of size 4 at 0x1 by thread #2", ["worker"]),
                       # the census's own: left out, whatever it says
                       ("Race", "Possible data race during read of size 8", ["slot_of", "on_capture_signal"]),
                       ("Race", "Possible data race during read of size 8", ["memmove", "tc_capture",
                                                                             "threadcheck_snapshot_take"]))
        self.assertEqual(p["causes"], {"lock_order": 1, "double_lock": 1, "missing_unlock": 1,
                                       "wait_holding_lock": 1, "data_race": 1})
        self.assertEqual((p["holding"], p["harness"], p["error_count"]), (3, 2, 6))
        self.assertEqual(helgrind.main_cause(p["causes"]), "lock_order")
        self.assertTrue(p["finished"])

    def test_blocked_on_a_lock_names_no_cause(self):
        p = self.parse(helgrind, ("Misc", "Thread #2: Exiting thread still holds 1 lock",
                                  ["futex_wait", "__lll_lock_wait", "lll_mutex_lock_optimized",
                                   "pthread_mutex_lock@@GLIBC_2.2.5", "send_queued_heartbeats"]))
        self.assertEqual((p["causes"], p["holding"]), ({}, 1))
        self.assertEqual(helgrind.main_cause(p["causes"]), "none")
        doc = helgrind.tool_report("helgrind", p, {"tool_path": "v", "tool_version": "valgrind-3.19.0"})
        self.assertEqual((doc["verdict"], doc["cause"], doc["kinds"]["holding"]["blocks"]), ("reported", "none", 1))

    def test_only_the_census_is_not_reported(self):
        p = self.parse(helgrind, ("Race", "Possible data race", ["slot_of", "on_capture_signal"]))
        doc = helgrind.tool_report("helgrind", p, {"tool_path": "v", "tool_version": "v"})
        self.assertEqual((doc["verdict"], doc["cause"], doc["harness_errors"]), ("not reported", "none", 1))

    def test_drd_words(self):
        p = self.parse(drd, ("MutexErr", "Recursive locking not allowed: mutex 0x4bbf060, recursion count 1, owner 2.",
                             ["pthread_mutex_lock@*", "manage"]),
                       ("ConflictingAccess", "Conflicting store by thread 1 at 0x1 size 4", ["ll_canary_race"]),
                       ("MutexErr", "Mutex not locked by calling thread: mutex 0x1", ["f"]),
                       ("MutexErr", "Mutex still locked at thread exit: mutex 0x1, recursion count 1, owner 2.",
                        ["start_thread"]),
                       # the harness's count of unjoined threads reads glibc's list unlocked: left out
                       ("ConflictingAccess", "Conflicting load by thread 1", ["ll_unjoined_threads", "phase"]))
        self.assertEqual(p["causes"], {"double_lock": 1, "data_race": 1, "bad_unlock": 1, "missing_unlock": 1})
        self.assertEqual(p["harness"], 1)
        self.assertEqual(p["holding"], 0)
        doc = helgrind.tool_report("drd", p, {"tool_path": "v", "tool_version": "v"}, holding_kind=False)
        self.assertEqual((doc["verdict"], doc["cause"], doc["kinds"]), ("reported", "double_lock", {}))

    def test_unfinished_xml_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "x.xml"
            path.write_text(valgrind_xml(("Race", "r", ["f"]))[:-30])
            with self.assertRaises(ValueError):
                helgrind.parse_xml(path)

    def test_tsan_causes(self):
        parsed = sanitizer.parse_tsan(
            "==================\nWARNING: ThreadSanitizer: lock-order-inversion (potential deadlock) (pid=1)\n"
            "  Cycle in lock order graph: M1 => M2 => M1\n==================\n"
            "==================\nWARNING: ThreadSanitizer: thread leak (pid=1)\n  Thread T1 (tid=2, finished) created by main thread at:\n"
            "    #0 pthread_create x.c:1\n    #1 ll_canary_unjoined_thread x.c:2\n==================\n"
            "ThreadSanitizer: reported 2 warnings\n")
        causes, cause = tsan.causes_of(parsed)
        self.assertEqual(causes, {"lock_order": 1, "missing_join": 1})
        self.assertEqual(cause, "lock_order")
        empty = sanitizer.parse_tsan("")
        self.assertEqual(tsan.causes_of(empty), ({}, "none"))

    def test_tsan_asks_for_the_deadlock_detector(self):
        env = tsan.command(None, None, None, [], [])[1]["TSAN_OPTIONS"]
        self.assertIn("detect_deadlocks=1", env)
        self.assertIn("second_deadlock_stack=1", env)


class SourceNames(unittest.TestCase):
    """An expect line names the source function, whatever GCC cloned it into."""

    def test_clone_suffixes_and_inline_marks_are_dropped(self):
        from scripts.tools import tools
        for symbol, name in [("fill_buffer.isra.0", "fill_buffer"), ("start_workers.constprop.0", "start_workers"),
                             ("f.part.0", "f"), ("f.cold", "f"), ("f.constprop.0.isra.0", "f"),
                             ("ll_xrealloc (inline)", "ll_xrealloc"), ("fill_buffer", "fill_buffer"),
                             ("std::vector<int>::push_back(int const&)", "std::vector<int>::push_back(int const&)")]:
            self.assertEqual(tools.source_name(symbol), name)
