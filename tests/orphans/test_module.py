"""scripts/tools/orphans.py: the report parsed into tool.json, and every way a
report can be wrong caught (a parser that only ever sees good reports cannot
fail)."""

import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the `scripts` package
from scripts.tools import orphans  # noqa: E402
from scripts.run import runner  # noqa: E402

REPORT = """\
==4242== orphans at exit: 1001 leaked threads in 2 groups: blocked on objects that no thread able to run can reach

1000 leaked threads @ wait_on <- ll_chan_recv <- worker <- start_thread <- __clone3
  waiting: cond, futex 0x55b3ab9380f0 in heap block 0x55b3ab9380a0 (360 bytes) that nothing able to run reaches
  pins 131105040 bytes in 2004 heap blocks
    #0 0x7f0000000f14 __futex_abstimed_wait_common (/usr/lib/x86_64-linux-gnu/libc.so.6)
    #1 0x7f00000005d8 pthread_cond_wait (/usr/lib/x86_64-linux-gnu/libc.so.6)
    #2 0x55b3aa0012b5 wait_on common/chan.c:140
    #3 0x55b3aa0013b5 ll_chan_recv common/chan.c:180
    #4 0x55b3aa0022b5 worker scenarios/blocked_workers.c:91
  created by ll_thread_start <- start_orphans <- run_orphaned <- ll_main <- main
  tids 861 32712 32713 32714 32715 32716 32717 32722 +992 more

1 leaked thread @ ll_canary_orphan <- start_thread <- __clone3
  waiting: cond, futex 0x55b3ab937f20 in heap block 0x55b3ab937ea0 (144 bytes) that nothing able to run reaches
  pins 144 bytes in 1 heap blocks
  1 of them could still be ended by pthread_cancel (their pthread_t is reachable; cancellation does not wake them)
  created by ll_thread_start <- ll_canary_orphan_thread <- ll_main
  tids 32711

==4242== orphans: 1003 threads (1002 blocked), 3006 heap blocks (131441208 bytes); world stopped 1 time, 101.8 ms the last, marked in 1020.9 ms, whole analysis 1562.7 ms
==4242== SUMMARY: orphans: 1001 leaked threads in 2 groups pinning 131105184 bytes in 2005 blocks (and 335664 bytes of glibc's thread blocks)
"""

NONE = """\
==77== orphans at exit: no leaked threads (1001 threads, 1000 blocked, all wakeable)
==77== orphans: 1001 threads (1000 blocked), 2005 heap blocks (131448392 bytes); world stopped 1 time, 42.5 ms the last, marked in 1139.8 ms, whole analysis 1310.7 ms
"""


def postprocess(text, name="orphans.4242"):
    with tempfile.TemporaryDirectory() as d:
        if text is not None:
            (Path(d) / name).write_text(text)
        spec = runner.RunSpec(scenario="blocked_workers", tool="orphans", build_dir=Path(d))
        return orphans.postprocess(spec, None, d, {"process_exit_code": 23})


class Parse(unittest.TestCase):
    def test_groups_and_kinds(self):
        doc, errors, _ = postprocess(REPORT)
        self.assertEqual(errors, [])
        self.assertEqual(doc["verdict"], "reported")
        self.assertEqual(doc["kinds"]["orphan"], {"bytes": 131105184, "blocks": 1001})
        # charged to the scenario's wait site, past the harness's channel helpers
        self.assertEqual(doc["by_function"]["orphan"]["worker"], {"bytes": 131105040, "blocks": 1000})
        self.assertEqual(doc["top_function"], "worker")
        self.assertEqual(doc["glibc_bytes"], 335664)
        self.assertEqual(doc["groups"][1]["cancellable"], 1)
        self.assertEqual(doc["groups"][0]["created"][:2], ["ll_thread_start", "start_orphans"])
        self.assertEqual(doc["analysis"]["stop_ms"], 101.8)

    def test_nothing_leaked(self):
        doc, errors, _ = postprocess(NONE)
        self.assertEqual(errors, [])
        self.assertEqual(doc["verdict"], "not reported")
        self.assertEqual(doc["kinds"]["orphan"], {"bytes": 0, "blocks": 0})
        self.assertEqual(doc["analysis"]["blocked"], 1000)

    def test_missing_report_is_an_error(self):
        doc, errors, _ = postprocess(None)
        self.assertTrue(any("no report file" in e for e in errors), errors)

    def test_truncated_report_is_an_error(self):
        cut = REPORT[:REPORT.index("1 leaked thread @")]
        _, errors, _ = postprocess(cut)
        self.assertTrue(any("not fully parsed" in e for e in errors), errors)

    def test_summary_disagreeing_is_an_error(self):
        _, errors, _ = postprocess(REPORT.replace("pinning 131105184 bytes", "pinning 5 bytes"))
        self.assertTrue(any("SUMMARY" in e for e in errors), errors)

    def test_unparsable_is_an_error(self):
        _, errors, _ = postprocess("something else entirely\n")
        self.assertTrue(any("not parsed" in e for e in errors), errors)

    def test_incomplete_is_declined_never_not_reported(self):
        # orphans declining (a thread it must not signal) is no verdict: not "not
        # reported", and no count of orphans for a check to read as 0.
        doc, errors, _ = postprocess("==9== orphans at exit: no analysis (incomplete): thread 12 blocks the stop "
                                     "signal (43)\n")
        self.assertEqual(errors, [])
        self.assertEqual(doc["verdict"], "declined")
        self.assertEqual(doc["kinds"], {})
        self.assertEqual(doc["declined"], "thread 12 blocks the stop signal (43)")

    def test_other_no_analysis_is_an_error(self):
        _, errors, _ = postprocess("==9== orphans at exit: no analysis (unsupported): this C library is not glibc\n")
        self.assertTrue(any("unsupported" in e for e in errors), errors)

    def test_command_keeps_the_users_options_first(self):
        import os
        spec = runner.RunSpec(scenario="x", tool="orphans", build_dir=Path("/nonexistent"))
        os.environ["LEAKLAB_ORPHANS"] = __file__  # any existing file stands for the library
        os.environ["ORPHANS_OPTIONS"] = "cancel_wakes=1"
        try:
            argv, env = orphans.command(spec, None, "/tmp", ["prog"], ["--x"])
        finally:
            del os.environ["LEAKLAB_ORPHANS"], os.environ["ORPHANS_OPTIONS"]
        self.assertEqual(argv, ["prog", "--x"])
        self.assertTrue(env["ORPHANS_OPTIONS"].startswith("cancel_wakes=1:"))
        self.assertIn("log_path=orphans", env["ORPHANS_OPTIONS"])
        self.assertEqual(env["LD_PRELOAD"], str(Path(__file__).resolve()))


if __name__ == "__main__":
    unittest.main()
