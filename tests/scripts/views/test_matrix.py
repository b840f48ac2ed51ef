"""Tests of the cross-tool matrix: every tool's report parsed into tool.json, exit codes as data, baseline diffs."""

import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import fakes
from scripts.expect import comparer
from scripts.expect import expected
from scripts.tools import heapcheck
from scripts.tools import heapprof
from scripts.tools import heaptrack
from scripts.views import matrix
from scripts.tools import memcheck
from scripts.run import runner
from scripts.tools import sanitizer
from scripts.tools import tools

LEAKLAB = [sys.executable, str(fakes.SCRIPTS / "leaklab.py")]

LSAN_REPORT = """
=================================================================
==30686==ERROR: LeakSanitizer: detected memory leaks

Direct leak of 31337 byte(s) in 1 object(s) allocated from:
    #0 0x5556311d4242 in __interceptor_malloc (/b/blocked_workers-lsan+0x32242) (BuildId: 4385)
    #1 0x5556311d82cd in ll_canary_leak /work/main/common/harness.c:326:28
    #2 0x5556311d7d98 in ll_main /work/main/common/harness.c:502:9
    #3 0x5556311d6994 in main /work/main/scenarios/blocked_workers.c:173:42

Indirect leak of 64 byte(s) in 2 object(s) allocated from:
    #0 0x5556311d4694 in __interceptor_realloc (/b/blocked_workers-lsan+0x32694)
    #1 0x5556311d8000 in ll_xrealloc /work/main/common/harness.c:140:15
    #2 0x5556311d8100 in lose_list /work/main/scenarios/x.c:10:3

SUMMARY: LeakSanitizer: 31401 byte(s) leaked in 3 allocation(s).
"""

ASAN_ERROR = """
==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010 at pc 0x1 bp 0x2 sp 0x3
READ of size 4 at 0x602000000010 thread T0
    #0 0x55 in main /x.c:5:3
SUMMARY: AddressSanitizer: heap-use-after-free /x.c:5:3 in main
"""

TSAN_REPORT = """==================
WARNING: ThreadSanitizer: thread leak (pid=16416)
  Thread T1 (tid=16419, finished) created by main thread at:
    #0 pthread_create <null> (blocked_workers-tsan+0x5244d) (BuildId: b75e)
    #1 ll_thread_start /work/main/common/harness.c:156:15 (blocked_workers-tsan+0xd1d66) (BuildId: b75e)
    #2 ll_canary_unjoined_thread /work/main/common/harness.c:352:5 (blocked_workers-tsan+0xd2cde) (BuildId: b75e)
    #3 ll_main /work/main/common/harness.c:504:9 (blocked_workers-tsan+0xd2cde)

  And 4 more similar thread leaks.

SUMMARY: ThreadSanitizer: thread leak (/b/blocked_workers-tsan+0x5244d) in pthread_create
==================
==================
WARNING: ThreadSanitizer: data race (pid=16416)
  Write of size 8 at 0x7b0400000000 by thread T2:
    #0 worker /x.c:3:5 (x+0x1)

SUMMARY: ThreadSanitizer: data race /x.c:3:5 in worker
==================
ThreadSanitizer: reported 2 warnings
"""

HEAPCHECK_LEAKS = """WARNING: Perftools heap leak checker is active -- Performance may suffer
Have memory regions w/o callers: might report false leaks
Leak check _main_ detected leaks of 31337 bytes in 1 objects
The 1 largest leaks:
Using local file /work/main/build/scenarios/blocked_workers-tcmalloc.
Leak of 31337 bytes in 1 objects allocated from:
\t@ 56038f8e4d1e ll_canary_leak
\t@ 56038f8e5fb6 ll_main
\t@ 7f352464524a __libc_start_call_main

Exiting with error code (instead of crashing) because of whole-program memory leaks
"""
HEAPCHECK_NONE = ('WARNING: Perftools heap leak checker is active -- Performance may suffer\n'
                  'No leaks found for check "_main_" (but no 100% guarantee that there aren\'t any): '
                  'found 2019 reachable heap objects of 131513542 bytes\n')

HEAPTRACK_FLAMEGRAPH = """_start;__libc_start_main_impl (libc-start.c);ll_main (harness.c); 24
_start;__libc_start_main_impl (libc-start.c);ll_main (harness.c);ll_canary_leak (harness.c); 31337
_start;ll_main (harness.c);run_fixed (blocked_workers.c);__GI__dl_allocate_tls (dl-tls.c);calloc (rtld-malloc.h);allocate_dtv (dl-tls.c); 192320
clone3 (clone3.S);start_thread (pthread_create.c);worker (blocked_workers.c);fill_buffer (blocked_workers.c); 4730880
clone3 (clone3.S);start_thread (pthread_create.c);worker (blocked_workers.c);fill_buffer (blocked_workers.c); 0
"""


class SanitizerReports(unittest.TestCase):
    def test_lsan_kinds_functions_and_summary(self):
        r = sanitizer.parse_leaks(LSAN_REPORT)
        self.assertEqual(r["kinds"], {"definite": {"bytes": 31337, "blocks": 1},
                                      "indirect": {"bytes": 64, "blocks": 2}})
        self.assertEqual(r["by_function"]["definite"], {"ll_canary_leak": {"bytes": 31337, "blocks": 1}})
        # The interceptor and the harness's wrapper are skipped.
        self.assertEqual(list(r["by_function"]["indirect"]), ["lose_list"])
        self.assertEqual(r["summary"], (31401, 3))
        self.assertEqual(r["errors"], {})

    def test_asan_errors_are_counted_not_taken_for_leaks(self):
        r = sanitizer.parse_leaks(ASAN_ERROR + LSAN_REPORT)
        self.assertEqual(r["errors"], {"heap-use-after-free": 1})
        self.assertEqual(r["kinds"]["definite"]["bytes"], 31337)

    def test_nothing_to_say(self):
        r = sanitizer.parse_leaks("")
        self.assertEqual(r["kinds"]["definite"], {"bytes": 0, "blocks": 0})
        self.assertIsNone(r["summary"])

    def test_fatal_error_is_seen(self):
        r = sanitizer.parse_leaks("==1==LeakSanitizer has encountered a fatal error.\n")
        self.assertIn("fatal error", r["fatal"])

    def test_tsan_out_of_mappings_is_fatal(self):
        # What TSan says at 10,000 threads here: vm.max_map_count is spent.
        r = sanitizer.parse_tsan("==16747==ERROR: ThreadSanitizer failed to allocate 0x3f000 (258048) bytes "
                                 "at address fa062141000 (errno: 12)\n")
        self.assertIn("failed to allocate", r["fatal"])

    def test_tsan_thread_leaks_and_races(self):
        r = sanitizer.parse_tsan(TSAN_REPORT)
        self.assertEqual(r["kinds"]["thread"], {"bytes": 0, "blocks": 5})  # 1 + "And 4 more"
        self.assertEqual(r["by_function"]["thread"], {"ll_canary_unjoined_thread": {"bytes": 0, "blocks": 5}})
        self.assertEqual(r["errors"], {"data race": 1})
        self.assertEqual((r["warnings"], r["reports"]), (2, 2))
        self.assertEqual(r["states"], {"finished": 1})

    def test_user_options_come_first_ours_win(self):
        with mock.patch.dict(os.environ, {"LSAN_OPTIONS": "verbosity=1:log_path=/tmp/x"}):
            env = sanitizer.options_env("LSAN_OPTIONS", {"log_path": "lsan", "exitcode": 23})
        self.assertEqual(env["LSAN_OPTIONS"], "verbosity=1:log_path=/tmp/x:log_path=lsan:exitcode=23")


class OtherReports(unittest.TestCase):
    def test_heapcheck_leaks(self):
        r = heapcheck.parse(HEAPCHECK_LEAKS)
        self.assertEqual(r["said"], "leaks")
        self.assertEqual(r["kinds"]["definite"], {"bytes": 31337, "blocks": 1})
        self.assertEqual(r["by_function"]["definite"], {"ll_canary_leak": {"bytes": 31337, "blocks": 1}})

    def test_heapcheck_no_leaks_counts_reachable(self):
        r = heapcheck.parse(HEAPCHECK_NONE)
        self.assertEqual(r["said"], "no leaks")
        self.assertEqual(r["kinds"]["reachable"], {"bytes": 131513542, "blocks": 2019})
        self.assertEqual(r["kinds"]["definite"]["bytes"], 0)

    def test_heapcheck_stub_says_nothing(self):
        # gperftools >= 2.17: HEAPCHECK is accepted and ignored.
        self.assertIsNone(heapcheck.parse("")["said"])

    def test_heaptrack_flamegraph_is_exact_and_skips_allocators(self):
        sites = heaptrack.parse_flamegraph(HEAPTRACK_FLAMEGRAPH)
        self.assertEqual(sites, {"ll_main": 24, "ll_canary_leak": 31337, "allocate_dtv": 192320,
                                 "fill_buffer": 4730880})

    def test_heaptrack_total_line(self):
        self.assertEqual(heaptrack.parse_total("peak RSS: 1M\ntotal memory leaked: 4.95M\n"), 4950000)
        self.assertEqual(heaptrack.parse_total("total memory leaked: 344B\n"), 344)
        self.assertIsNone(heaptrack.parse_total("nothing"))

    def test_memcheck_in_tool_shape(self):
        report = {"kinds": {"definitely_lost": {"bytes": 0, "blocks": 0},
                            "indirectly_lost": {"bytes": 0, "blocks": 0},
                            "possibly_lost": {"bytes": 272000, "blocks": 1000},
                            "still_reachable": {"bytes": 131120208, "blocks": 1005}},
                  "by_function": {"definitely_lost": {}, "indirectly_lost": {},
                                  "possibly_lost": {"allocate_dtv": {"bytes": 272000, "blocks": 1000}},
                                  "still_reachable": {"fill_buffer": {"bytes": 131072000, "blocks": 1000}}},
                  "errors": {}}
        doc = memcheck.tool_report(report, {"tool_path": "/usr/bin/valgrind", "tool_version": "valgrind-3.19.0"})
        # still reachable is counted but hidden by default: the verdict and
        # the top function come from what memcheck shows.
        self.assertEqual(doc["verdict"], "reported")
        self.assertEqual(doc["reported_bytes"], 272000)
        self.assertEqual(doc["top_function"], "allocate_dtv")
        self.assertEqual(doc["kinds"]["reachable"]["bytes"], 131120208)

    def test_heapprof_infrastructure_never_makes_the_verdict(self):
        summary = {"phase": "end", "profile": "02-end.heap",
                   "sites": {"GetHeapProfile": 1048576, "allocate_dtv": 204800, "ll_buf_printf": 512,
                             "fill_buffer": 0}}
        doc = heapprof.tool_report(summary, {"tool_path": "libtcmalloc.so.4", "tool_version": "gperftools 2.10"})
        self.assertEqual(doc["verdict"], "not reported")
        self.assertEqual(doc["infrastructure_bytes"]["GetHeapProfile"], 1048576)
        summary["sites"]["ll_canary_leak"] = 31337
        doc = heapprof.tool_report(summary, {"tool_path": "x", "tool_version": "y"})
        self.assertEqual((doc["verdict"], doc["top_function"], doc["kinds"]["in_use"]["bytes"]),
                         ("reported", "ll_canary_leak", 31337))


class ToolHelpers(unittest.TestCase):
    def test_override_pointing_nowhere_says_so(self):
        with mock.patch.dict(os.environ, {"LEAKLAB_HEAPTRACK": "/nonexistent/heaptrack"}):
            path, why = tools.resolve("LEAKLAB_HEAPTRACK", "heaptrack")
            self.assertIsNone(path)
            self.assertIn("LEAKLAB_HEAPTRACK=/nonexistent/heaptrack", why)
            self.assertIn("LEAKLAB_HEAPTRACK", heaptrack.unavailable(None))

    def test_override_wins_over_path(self):
        with mock.patch.dict(os.environ, {"LEAKLAB_VALGRIND": sys.executable}):
            self.assertEqual(memcheck.valgrind_path(), str(Path(sys.executable).resolve()))

    def test_elf_comment_of_a_script_is_empty(self):
        self.assertEqual(tools.elf_comment(__file__), [])
        self.assertIsNone(tools.compiler_of(__file__))

    def test_elf_comment_of_python(self):
        # Whatever built the interpreter, reading must not raise.
        self.assertIsInstance(tools.elf_comment(sys.executable), list)

    def test_alloc_frames(self):
        self.assertEqual(tools.charged_function(["__interceptor_malloc", "ll_xrealloc", "fill_buffer"]),
                         "fill_buffer")
        self.assertIsNone(tools.charged_function(["malloc"]))


class ToolNamesInExpectations(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def run_dir(self, doc, tool="lsan", canary_bytes=31337):
        run_dir = fakes.make_run(self.tmp, [("end", fakes.snapshot())], tool=tool, variant="fixed")
        events = (run_dir / "events.jsonl").read_text().replace('"canary_bytes": 0', f'"canary_bytes": {canary_bytes}')
        (run_dir / "events.jsonl").write_text(events)
        (run_dir / "tool.json").write_text(json.dumps(doc))
        return run_dir

    def test_tool_names_resolve(self):
        sample = sanitizer.parse_leaks(LSAN_REPORT)
        doc = tools.report("lsan", tool_path="/b/x-lsan", tool_version="clang 14", kinds=sample["kinds"],
                           reported_kinds=("definite", "indirect"), by_function=sample["by_function"])
        exp = fakes.write_expected(self.tmp, """
            [[check]]
            variant = "fixed"
            tool = "lsan"
            canary = true
            expect = 'tool.verdict == "reported"'
            [[check]]
            variant = "fixed"
            tool = "lsan"
            expect = 'tool.bytes(definite) == canary_bytes'
            [[check]]
            variant = "fixed"
            tool = "lsan"
            expect = 'tool.bytes_by_function(direct, ll_canary_leak) == 31337'
            [[check]]
            variant = "fixed"
            tool = "lsan"
            expect = 'tool.top_function == "ll_canary_leak"'
            [[check]]
            variant = "fixed"
            tool = "lsan"
            canary = false
            expect = 'tool.verdict == "not reported"'
            [[check]]
            variant = "fixed"
            tool = "lsan"
            expect = 'tool.bytes(reachable) == 0'
        """)
        v = comparer.compare(self.run_dir(doc), exp)
        verdicts = {r.check: r.verdict for r in v.rows}
        self.assertEqual(verdicts['tool.verdict == "reported"'], "PASS")
        self.assertEqual(verdicts["tool.bytes(definite) == canary_bytes"], "PASS")
        self.assertEqual(verdicts["tool.bytes_by_function(direct, ll_canary_leak) == 31337"], "PASS")
        self.assertEqual(verdicts['tool.top_function == "ll_canary_leak"'], "PASS")
        self.assertNotIn('tool.verdict == "not reported"', verdicts)  # canary = false: not this run
        # LSan tells no "reachable" apart: an unknown kind is an ERROR, never a silent 0.
        self.assertEqual(verdicts["tool.bytes(reachable) == 0"], "ERROR")

    def test_canary_key_is_validated(self):
        exp = fakes.write_expected(self.tmp, """
            [[check]]
            variant = "fixed"
            canary = "yes"
            expect = "threads == 1"
        """)
        with self.assertRaises(expected.ExpectedFileError):
            expected.load(exp)

    def test_unknown_canary_matches_only_any(self):
        exp = fakes.write_expected(self.tmp, """
            [[check]]
            variant = "fixed"
            canary = true
            expect = "threads == 1"
            [[check]]
            variant = "fixed"
            expect = "threads == 1"
        """)
        e = expected.load(exp)
        self.assertEqual(len(e.applicable("fixed", "native", "glibc", "quick")), 1)
        self.assertEqual(len(e.applicable("fixed", "native", "glibc", "quick", canary=True)), 2)
        self.assertEqual(len(e.applicable("fixed", "native", "glibc", "quick", canary=False)), 1)

    def test_native_run_has_no_tool_names(self):
        run_dir = fakes.make_run(self.tmp, [("end", fakes.snapshot())], variant="fixed")
        exp = fakes.write_expected(self.tmp, """
            [[check]]
            variant = "fixed"
            expect = 'tool.verdict == "reported"'
        """)
        v = comparer.compare(run_dir, exp)
        self.assertEqual(v.rows[0].verdict, "ERROR")
        self.assertIn("without a tool", v.rows[0].detail)


# A fake LeakSanitizer build: runs the fake scenario, then writes an LSan
# report where log_path says (relative: the run directory) and exits 23, as
# LSan does. FAKE_LSAN_MODE=silent: exits 23 but writes no report (a report
# that went missing); detect_leaks=0 in LSAN_OPTIONS: a sanitizer that hides
# its report (no report, exit 0).
FAKE_LSAN = r'''#!/bin/sh
"$(dirname "$0")/fake_scn" "$@" || exit $?
case "$LSAN_OPTIONS" in *detect_leaks=0*) exit 0;; esac
if [ "$FAKE_LSAN_MODE" != silent ]; then
cat > "lsan.$$" <<'EOF'
==1==ERROR: LeakSanitizer: detected memory leaks

Direct leak of 31337 byte(s) in 1 object(s) allocated from:
    #0 0x1 in __interceptor_malloc (/x+0x1)
    #1 0x2 in ll_canary_leak /common/harness.c:326:28

SUMMARY: LeakSanitizer: 31337 byte(s) leaked in 1 allocation(s).
EOF
fi
exit 23
'''

EXPECTED_LSAN = """
[[check]]
variant = ["leaky", "fixed"]
tool = "lsan"
expect = 'tool.verdict == "reported"'
why = "the fake always reports its canary"

[[check]]
variant = ["leaky", "fixed"]
tool = "lsan"
expect = 'tool.bytes(definite) == 31337'

[[check]]
variant = "any"
tool = "heaptrack"
expect = 'tool.verdict == "reported"'
"""


class FakeSanitizerRuns(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)
        self.build = fakes.make_build(self.tmp)
        lsan_bin = self.build / "scenarios" / "fake_scn-lsan"
        lsan_bin.write_text(FAKE_LSAN)
        lsan_bin.chmod(0o755)
        self.expected_dir = self.tmp / "expected"
        self.expected_dir.mkdir()
        (self.expected_dir / "fake_scn.toml").write_text(EXPECTED_LSAN)

    def tearDown(self):
        self._tmp.cleanup()

    def spec(self, **over):
        args = dict(scenario="fake_scn", variant="leaky", scale="quick", tool="lsan", out=self.tmp / "runs",
                    build_dir=self.build, timeout_s=240)  # a hang guard: the fake takes well under 1 s of CPU
        args.update(over)
        return runner.RunSpec(**args)

    def test_leak_exit_code_is_data(self):
        run_dir, info = runner.execute(self.spec())
        self.assertEqual(info["process_exit_code"], 23)
        self.assertEqual(info["exit_code"], 0)
        self.assertEqual(info["tool_exit"]["code"], 23)
        self.assertEqual(info["runner_status"], 0, info["runner_errors"])
        doc = json.loads((run_dir / "tool.json").read_text())
        self.assertEqual((doc["verdict"], doc["top_function"], doc["exit_code"]), ("reported", "ll_canary_leak", 23))
        self.assertTrue(doc["raw"].startswith("lsan."))
        self.assertIn("LSAN_OPTIONS", (run_dir / "command.txt").read_text())
        v = comparer.compare(run_dir, self.expected_dir / "fake_scn.toml")
        self.assertEqual(v.code, 0, comparer.table(v.rows))

    def test_leak_exit_without_a_report_is_a_harness_failure(self):
        with mock.patch.dict(os.environ, {"FAKE_LSAN_MODE": "silent"}):
            _, info = runner.execute(self.spec())
        self.assertEqual(info["runner_status"], 99)
        self.assertTrue(any("lists nothing" in e for e in info["runner_errors"]), info["runner_errors"])

    def test_missing_sanitizer_binary_is_skip(self):
        (self.build / "scenarios" / "fake_scn-lsan").unlink()
        with self.assertRaises(runner.Skip) as cm:
            runner.execute(self.spec())
        self.assertIn("fake_scn-lsan", str(cm.exception))
        with mock.patch.dict(os.environ, {"LEAKLAB_SANITIZER_BUILD_DIR": str(self.tmp / "nowhere")}):
            with self.assertRaises(runner.Skip) as cm:
                runner.execute(self.spec(tool="tsan"))
        self.assertIn("LEAKLAB_SANITIZER_BUILD_DIR", str(cm.exception))

    def test_missing_heaptrack_is_skip_with_the_reason(self):
        with mock.patch.dict(os.environ, {"LEAKLAB_HEAPTRACK": "/nonexistent"}):
            with self.assertRaises(runner.Skip) as cm:
                runner.execute(self.spec(tool="heaptrack"))
        self.assertIn("LEAKLAB_HEAPTRACK=/nonexistent", str(cm.exception))
        out = subprocess.run(LEAKLAB + ["check", "fake_scn", "--tool", "heaptrack", "--build-dir", str(self.build),
                                        "--out", str(self.tmp / "runs"), "--expected",
                                        str(self.expected_dir / "fake_scn.toml")],
                             capture_output=True, text=True, env={**os.environ, "LEAKLAB_HEAPTRACK": "/nonexistent"})
        self.assertEqual(out.returncode, 77, out.stdout + out.stderr)
        self.assertIn("LEAKLAB_HEAPTRACK=/nonexistent", out.stdout)

    def test_tool_allocator_mismatch_is_usage(self):
        with self.assertRaises(runner.UsageError):
            runner.execute(self.spec(tool="heapcheck", allocator="glibc"))
        with self.assertRaises(runner.UsageError):
            runner.execute(self.spec(tool="lsan", allocator="tcmalloc"))

    def matrix(self, out):
        return matrix.run_matrix(["fake_scn"], {"fake_scn": ["leaky", "fixed"]}, ["lsan"], scale="quick",
                                 build_dir=self.build, out=out, expected_dir=self.expected_dir, timeout_s=240)

    def test_matrix_and_a_baseline_that_catches_a_hidden_report(self):
        doc = self.matrix(self.tmp / "m1")
        self.assertEqual(matrix.exit_code(doc), 0, matrix.table(doc))
        self.assertEqual(len(doc["cells"]), 3)  # leaky, fixed, fixed + canary
        self.assertEqual([c["canary"] for c in doc["cells"]], [False, False, True])
        self.assertEqual(doc["cells"][2]["scale"]["options"], ["--canary"])
        self.assertIn("yes 31,337 B definite", matrix.table(doc))
        baseline = matrix.to_baseline(doc, "fake")
        self.assertNotIn("run_dir", baseline["cells"][0])
        # The same tool again: nothing changed.
        again = self.matrix(self.tmp / "m2")
        changes, _ = matrix.diff(baseline, again)
        self.assertEqual(changes, [])
        # The tool swapped for one that hides its report.
        with mock.patch.dict(os.environ, {"LSAN_OPTIONS": "detect_leaks=0"}):
            hidden = self.matrix(self.tmp / "m3")
        self.assertEqual(matrix.exit_code(hidden), 1)
        self.assertEqual(hidden["columns"]["lsan"], "canary missed")
        changes, _ = matrix.diff(baseline, hidden)
        self.assertEqual({tool for tool, _, _ in changes}, {"lsan"})
        self.assertEqual(len(changes), 3)  # every row of its column
        self.assertIn("verdict: reported -> not reported", changes[0][2])
        md = matrix.markdown(hidden)
        self.assertIn("CANARY MISSED", md)


def cell(**over):
    c = {"scenario": "blocked_workers", "variant": "leaky", "tool": "memcheck", "canary": False,
         "status": "match", "verdict": "reported", "reported_kinds": ["definite", "possible"],
         "kinds": {"definite": {"bytes": 0, "blocks": 0}, "possible": {"bytes": 272000, "blocks": 1000},
                   "reachable": {"bytes": 131120208, "blocks": 1005}},
         "reported_bytes": 272000, "top_function": "allocate_dtv",
         "scale": {"scale": "quick", "payload_bytes": 80000000, "workers": 1000},
         "failed_checks": [], "tool_version": "valgrind-3.19.0", "tool_path": "/usr/bin/valgrind"}
    c.update(over)
    return c


def doc_of(*cells):
    d = matrix.document(list(cells), ["blocked_workers"], sorted({c["tool"] for c in cells}), "quick")
    return d


class BaselineDiff(unittest.TestCase):
    def setUp(self):
        self.base = matrix.to_baseline(doc_of(cell(), cell(tool="lsan", verdict="not reported",
                                                           kinds={"definite": {"bytes": 0, "blocks": 0}},
                                                           reported_kinds=["definite"], top_function=None,
                                                           reported_bytes=0)), "b")

    def modified(self, **over):
        d = copy.deepcopy(self.base)
        d["cells"][0].update(over)
        return d

    def test_same_matrix_no_change(self):
        self.assertEqual(matrix.diff(self.base, copy.deepcopy(self.base)), ([], []))

    def test_verdict_change_is_flagged(self):
        changes, _ = matrix.diff(self.base, self.modified(verdict="not reported"))
        self.assertEqual(changes[0][0], "memcheck")
        self.assertIn("verdict: reported -> not reported", changes[0][2])

    def test_kind_gone_is_flagged(self):
        kinds = copy.deepcopy(self.base["cells"][0]["kinds"])
        kinds["possible"] = {"bytes": 0, "blocks": 0}
        changes, _ = matrix.diff(self.base, self.modified(kinds=kinds))
        self.assertTrue(any("kind possible: gone" in w for w in changes[0][2]))

    def test_bytes_beyond_tolerance_and_floor(self):
        kinds = copy.deepcopy(self.base["cells"][0]["kinds"])
        kinds["reachable"]["bytes"] = 100_000_000  # -24 %, 31 MB > 10 % of the 80 MB payload
        changes, _ = matrix.diff(self.base, self.modified(kinds=kinds))
        self.assertTrue(any("kind reachable: bytes 131,120,208 -> 100,000,000" in w for w in changes[0][2]))

    def test_bytes_within_tolerance_or_floor_are_not(self):
        kinds = copy.deepcopy(self.base["cells"][0]["kinds"])
        kinds["reachable"]["bytes"] = 133_000_000          # +1.4 %
        kinds["possible"]["bytes"] = 400_000               # +47 %, but 128 kB is noise at an 80 MB payload
        self.assertEqual(matrix.diff(self.base, self.modified(kinds=kinds))[0], [])
        # A tighter floor makes the second one count.
        changes, _ = matrix.diff(self.base, self.modified(kinds=kinds), floor=0.0)
        self.assertTrue(any("kind possible" in w for w in changes[0][2]))

    def test_count_only_kind(self):
        base = matrix.to_baseline(doc_of(cell(tool="tsan", kinds={"thread": {"bytes": 0, "blocks": 1}},
                                              reported_kinds=["thread"], top_function="ll_canary_unjoined_thread")),
                                  "t")
        new = copy.deepcopy(base)
        new["cells"][0]["kinds"]["thread"]["blocks"] = 2
        changes, _ = matrix.diff(base, new)
        self.assertIn("kind thread: 1 -> 2", changes[0][2])

    def test_top_function_and_expectations(self):
        changes, _ = matrix.diff(self.base, self.modified(
            top_function="fill_buffer", functions={"fill_buffer": [131072000, 1000], "allocate_dtv": [0, 0]},
            status="differs", failed_checks=[{"check": 'tool.top_function == "allocate_dtv"'}]))
        text = "\n".join(changes[0][2])
        self.assertIn("top function: allocate_dtv -> fill_buffer", text)
        self.assertIn("expectations: now differs", text)

    def test_top_functions_of_about_the_same_size_may_swap(self):
        # heaptrack on delayed_exit: glibc's TLS blocks (192 kB) against the
        # realloc race's crossed records (0-626 kB), a different top each run.
        changes, _ = matrix.diff(self.base, self.modified(
            top_function="fill_buffer", functions={"fill_buffer": [600000, 0], "allocate_dtv": [272000, 1000]}))
        self.assertEqual(changes, [])

    def test_versions_are_told_not_counted(self):
        new = copy.deepcopy(self.base)
        new["versions"]["memcheck"]["tool_version"] = "valgrind-3.22.0"
        changes, infos = matrix.diff(self.base, new)
        self.assertEqual(changes, [])
        self.assertTrue(any("valgrind-3.19.0 -> valgrind-3.22.0" in i for i in infos))

    def test_skipped_cell(self):
        changes, _ = matrix.diff(self.base, self.modified(status="skipped", reason="valgrind not found"))
        self.assertIn("cell match -> skipped: valgrind not found", changes[0][2])

    def test_cli_diff_against_a_modified_report(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "bl").mkdir()
            (tmp / "bl" / "b.json").write_text(json.dumps(self.base))
            same = tmp / "same.json"
            same.write_text(json.dumps(self.base))
            changed = tmp / "changed.json"
            changed.write_text(json.dumps(self.modified(verdict="not reported", kinds={})))
            ok = subprocess.run(LEAKLAB + ["baseline", "diff", "b", "--dir", str(tmp / "bl"), "--against", str(same)],
                                capture_output=True, text=True)
            self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
            self.assertIn("no change", ok.stdout)
            bad = subprocess.run(LEAKLAB + ["baseline", "diff", "b", "--dir", str(tmp / "bl"), "--against",
                                            str(changed)], capture_output=True, text=True)
            self.assertEqual(bad.returncode, 1, bad.stdout + bad.stderr)
            self.assertIn("memcheck: 1 cell changed", bad.stdout)
            self.assertNotIn("lsan:", bad.stdout)
            missing = subprocess.run(LEAKLAB + ["baseline", "diff", "nope", "--dir", str(tmp / "bl")],
                                     capture_output=True, text=True)
            self.assertEqual(missing.returncode, 2)
            saved = subprocess.run(LEAKLAB + ["baseline", "save", "c", "--dir", str(tmp / "bl"), "--from", str(same)],
                                   capture_output=True, text=True)
            self.assertEqual(saved.returncode, 0, saved.stdout + saved.stderr)
            self.assertEqual(json.loads((tmp / "bl" / "c.json").read_text())["name"], "c")

    def test_cell_text(self):
        self.assertEqual(matrix.cell_text(cell()), "yes 272,000 B possible +125.0 MiB reachable")
        self.assertEqual(matrix.cell_text(cell(status="differs", verdict="not reported",
                                               kinds={"definite": {"bytes": 0, "blocks": 0}})), "! no")
        self.assertEqual(matrix.cell_text(cell(status="skipped")), "skip")
        self.assertEqual(matrix.cell_text(cell(verdict="reported", reported_kinds=["thread"],
                                               kinds={"thread": {"bytes": 0, "blocks": 1}})), "yes 1 thread")

    def test_exit_codes(self):
        self.assertEqual(matrix.exit_code(doc_of(cell())), 0)
        self.assertEqual(matrix.exit_code(doc_of(cell(status="skipped"))), 77)
        self.assertEqual(matrix.exit_code(doc_of(cell(status="error"))), 99)
        self.assertEqual(matrix.exit_code(doc_of(cell(status="differs"), cell(status="error"))), 1)
        missed = doc_of(cell(), cell(canary=True, verdict="not reported", status="match"))
        self.assertEqual(missed["columns"]["memcheck"], "canary missed")
        self.assertEqual(matrix.exit_code(missed), 1)



def zoo_cell(scenario, variant, tool, *, verdict, kinds, reported, leaks=True, pinned=65536, status="match",
             canary=False):
    reported_bytes = sum((kinds.get(k) or {}).get("bytes") or 0 for k in reported)
    return {"scenario": scenario, "variant": variant, "tool": tool, "canary": canary, "status": status,
            "verdict": verdict, "kinds": kinds, "reported_kinds": reported, "reported_bytes": reported_bytes,
            "scale": {"scale": "quick", "payload_bytes": 65536, "params": {"instances": 1}},
            "failed_checks": [],
            "truth": {"leaks": leaks, "leaked_threads": 2 if leaks else 0, "unjoined_threads": 0,
                      "pinned_bytes": pinned if leaks else 0, "orphaned": True if leaks else None}}


class DetectionSummary(unittest.TestCase):
    """The zoo's detection summary from fake cells: threads or at least the
    pinned bytes detect a kernel; less than the pinned bytes does not; a
    fixed twin with any report is a false positive; canary rows, skipped
    cells and rows without a truth are left out."""

    def doc(self):
        B = lambda n: {"bytes": n, "blocks": 1}  # noqa: E731
        cells = [
            # heaptrack: every byte never freed: the payload -> detected; the fixed twin's 2 kB -> false positive
            zoo_cell("k1", "leaky", "heaptrack", verdict="reported", kinds={"leaked": B(70000)}, reported=["leaked"]),
            zoo_cell("k1", "fixed", "heaptrack", verdict="reported", kinds={"leaked": B(2112)}, reported=["leaked"],
                     leaks=False),
            zoo_cell("k2", "leaky", "heaptrack", verdict="reported", kinds={"leaked": B(60000)}, reported=["leaked"]),
            # memcheck: reports possibly lost TLS blocks, far below the pinned bytes -> missed
            zoo_cell("k1", "leaky", "memcheck", verdict="reported", kinds={"possible": B(640), "reachable": B(65832)},
                     reported=["definite", "indirect", "possible"]),
            zoo_cell("k1", "fixed", "memcheck", verdict="not reported", kinds={"possible": B(0)},
                     reported=["possible"], leaks=False),
            zoo_cell("k2", "leaky", "memcheck", verdict="not reported", kinds={}, reported=["definite"], status="skipped"),
            # threadcheck: reports the threads alive (no bytes) -> detected
            zoo_cell("k1", "leaky", "threadcheck", verdict="reported", kinds={"alive": {"bytes": 0, "blocks": 2}},
                     reported=["alive"]),
            zoo_cell("k2", "leaky", "threadcheck", verdict="reported", kinds={"alive": {"bytes": 0, "blocks": 2}},
                     reported=["alive"]),
            # a canary row and a row without truth count for nothing
            zoo_cell("k1", "fixed", "threadcheck", verdict="reported", kinds={"alive": {"bytes": 0, "blocks": 1}},
                     reported=["alive"], leaks=False, canary=True),
            {**cell(tool="threadcheck", verdict="reported"), "scenario": "blocked_workers"},
        ]
        return matrix.document(cells, ["k1", "k2", "blocked_workers"], ["heaptrack", "memcheck", "threadcheck"],
                               "quick")

    def test_summary(self):
        d = self.doc()["detection"]
        self.assertEqual(d["heaptrack"], {"leaky": 2, "detected": ["k1"], "missed": ["k2"], "fixed": 1,
                                          "false_positives": ["k1"], "not_run": []})
        self.assertEqual(d["memcheck"]["detected"], [])
        self.assertEqual(d["memcheck"]["missed"], ["k1"])
        self.assertEqual(d["memcheck"]["leaky"], 1)
        self.assertEqual(d["memcheck"]["not_run"], ["k2/leaky"])
        self.assertEqual(d["memcheck"]["false_positives"], [])
        self.assertEqual(d["threadcheck"]["detected"], ["k1", "k2"])
        self.assertEqual(d["threadcheck"]["fixed"], 0)  # the canary row is not a fixed twin

    def test_heaptrack_below_the_pinned_bytes_is_a_miss(self):
        # k2's heaptrack cell reports 60,000 B of a 65,536 B payload.
        self.assertIn("k2", self.doc()["detection"]["heaptrack"]["missed"])

    def test_written_at_the_end_of_the_table_and_the_page(self):
        doc = self.doc()
        text = matrix.table(doc)
        self.assertIn("Detection summary (zoo;", text)
        self.assertRegex(text, r"heaptrack\s+1/2\s+k2\s+1/1\s+k1")
        md = matrix.markdown(doc)
        self.assertIn("## Detection summary (zoo)", md)
        self.assertIn("| memcheck | 0/1 | k1 | 0/1 | - | - | - | - | k2/leaky |", md)
        self.assertTrue(md.rstrip().endswith("|"))  # the summary is the page's last section

    def test_cause_recall(self):
        """A tool that names causes gets a cause recall (its cause == the
        truth's), cause false positives (a fixed twin it names any cause for)
        and real deadlocks (leaky lock-cycle kernels it names a lock cause for);
        a tool that names none gets '-'."""
        holding = {"holding": {"bytes": 0, "blocks": 2}}
        def hg(scenario, variant, cause, truth_cause, **kw):
            c = zoo_cell(scenario, variant, "helgrind", verdict="reported" if cause != "none" else "not reported",
                         kinds=holding if variant == "leaky" else {"holding": {"bytes": 0, "blocks": 0}},
                         reported=["holding"], leaks=variant == "leaky", **kw)
            c["cause"], c["truth"]["cause"] = cause, truth_cause
            return c
        cells = [
            hg("k1", "leaky", "none", "lock_order"),            # a real AB-BA deadlock: threads held, no cycle named
            hg("k2", "leaky", "double_lock", "double_lock"),    # the re-lock, named before blocking
            hg("k3", "leaky", "wait_holding_lock", "wait_holding_lock"),
            hg("k4", "leaky", "missing_unlock", "wait_holding_lock"),   # a cause, but not the truth's
            hg("k1", "fixed", "none", "lock_order"),
            hg("k2", "fixed", "data_race", "double_lock"),      # any cause on a fixed twin: a false positive
            zoo_cell("k1", "leaky", "threadcheck", verdict="reported", kinds={"alive": {"bytes": 0, "blocks": 2}},
                     reported=["alive"]),
        ]
        doc = matrix.document(cells, ["k1", "k2", "k3", "k4"], ["helgrind", "threadcheck"], "quick")
        d = doc["detection"]["helgrind"]
        self.assertEqual(d["detected"], ["k1", "k2", "k3", "k4"])   # the leak: threads named holding locks
        self.assertEqual((d["cause_leaky"], d["cause_detected"]), (4, ["k2", "k3"]))
        self.assertEqual(d["cause_false_positives"], ["k2"])
        self.assertEqual((d["deadlocks"], d["deadlocks_seen"]), (2, ["k2"]))
        self.assertNotIn("cause_leaky", doc["detection"]["threadcheck"])
        md = matrix.markdown(doc)
        self.assertIn("| helgrind | 4/4 | - | 1/2 | k2 | 2/4 | 1/2 | 1/2 | - |", md)
        self.assertIn("| threadcheck | 1/1 | - | 0/0 | - | - | - | - | - |", md)

    def test_no_zoo_no_summary(self):
        doc = matrix.document([cell()], ["blocked_workers"], ["memcheck"], "quick")
        self.assertEqual(doc["detection"], {})
        self.assertNotIn("Detection summary", matrix.table(doc))
        self.assertNotIn("Detection summary", matrix.markdown(doc))


if __name__ == "__main__":
    unittest.main()
