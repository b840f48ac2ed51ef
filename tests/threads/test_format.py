"""scripts/outside/threads.py and scripts/tools/pprof_format.py on a hand-made threaddump document: the
grouping (what splits a group, largest first), the headline stack (the C library's frames
skipped), the text and JSON outputs, and the pprof encoding read back field by field.
No process is traced here."""
import copy
import gzip
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the `scripts` package

from scripts.tools import pprof_format  # noqa: E402
from scripts.run import runner  # noqa: E402
from scripts.outside import threads  # noqa: E402

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def frame(function, file=None, line=0, inlined=False, offset=16):
    return {"function": function, "symbol": None if inlined else function, "offset": 0 if inlined else offset,
            "file": file, "line": line, "inlined": inlined}


def thread(tid, stack, wait="0x1000", state="S", fate="unwound", error=None, name="app"):
    return {"tid": tid, "name": name, "state": state, "wchan": "futex_do_wait" if wait else "-",
            "syscall": "futex" if wait else "none", "wait_address": wait, "fate": fate,
            "stop": "interrupt" if stack else None, "stack": stack, "error": error}


DOC = {
    "tool": "threaddump", "format": 1, "pid": 42, "command": "app", "exe": "/bin/app", "exited": False,
    "threads_seen": 8, "unwound": 7, "late": 1, "gone": 0, "refused": 0,
    "timing_s": {"total": 0.5, "target_stopped": 0.25},
    "modules": [{"id": 0, "name": "/bin/app", "start": "0x400000", "end": "0x410000", "build_id": "abcd"},
                {"id": 1, "name": LIBC, "start": "0x7f0000000000", "end": "0x7f0000200000", "build_id": None}],
    "locations": [
        {"id": 0, "address": "0x7f0000001010", "activation": True, "module": 1,
         "frames": [frame("__futex_wait", "futex.c", 57, inlined=True), frame("pthread_cond_wait", "cond.c", 618)]},
        {"id": 1, "address": "0x401010", "activation": False, "module": 0,
         "frames": [frame("ll_chan_recv", "/src/chan.c", 53)]},
        {"id": 2, "address": "0x401210", "activation": False, "module": 0, "frames": [frame("worker", "/src/w.c", 92)]},
        {"id": 3, "address": "0x7f0000002010", "activation": False, "module": 1, "frames": [frame("start_thread")]},
        {"id": 4, "address": "0x401410", "activation": False, "module": 0, "frames": [frame("other", "/src/w.c", 7)]},
        {"id": 5, "address": "0x402abc", "activation": False, "module": 0, "frames": [frame(None, offset=0)]},
    ],
    "threads": [
        thread(1, [5], wait=None),
        thread(2, [0, 1, 2, 3]), thread(3, [0, 1, 2, 3]), thread(4, [0, 1, 2, 3]),
        thread(5, [0, 1, 2, 3], wait="0x2000"),  # same stack, another futex: the same group
        thread(8, [0, 1, 4, 3], state="R"),  # same stack, another state: another group
        thread(6, [0, 1, 4, 3]),
        thread(7, [], wait=None, state="D", fate="late", error="did not stop within 2 s (state D)"),
    ],
}


class Grouping(unittest.TestCase):
    def setUp(self):
        self.groups = threads.group_threads(DOC)

    def test_identical_stacks_make_one_group_largest_first_stackless_last(self):
        self.assertEqual([(g["count"], g["tids"]) for g in self.groups],
                         [(4, [2, 3, 4, 5]), (1, [1]), (1, [6]), (1, [8]), (1, [7])])

    def test_the_futex_word_does_not_split_a_group(self):
        g = self.groups[0]
        self.assertEqual((g["wait_address"], g["wait_addresses"]), (None, 2))
        one = next(g for g in self.groups if g["tids"] == [6])
        self.assertEqual((one["wait_address"], one["wait_addresses"]), ("0x1000", 1))

    def test_headline_skips_the_c_librarys_frames_frames_keep_them(self):
        g = self.groups[0]
        self.assertEqual(g["stack"], ["ll_chan_recv", "worker", "start_thread"])
        self.assertEqual([f["function"] for f in g["frames"]],
                         ["__futex_wait", "pthread_cond_wait", "ll_chan_recv", "worker", "start_thread"])
        self.assertEqual([f["inlined"] for f in g["frames"]], [True, False, False, False, False])
        self.assertEqual(g["frames"][2], {"function": "ll_chan_recv", "file": "/src/chan.c", "line": 53,
                                          "address": "0x401010", "offset": 16, "inlined": False,
                                          "module": "/bin/app"})

    def test_only_c_library_frames_keep_them_all(self):
        self.assertEqual(threads.headline_stack([{"function": "pause", "module": LIBC}]), ["pause"])

    def test_a_frame_without_symbol_is_named_by_module_and_offset(self):
        g = next(g for g in self.groups if g["tids"] == [1])
        self.assertEqual(g["stack"], ["app+0x2abc"])
        self.assertIsNone(g["frames"][0]["offset"])

    def test_a_thread_that_did_not_stop_is_a_group_without_stack(self):
        g = next(g for g in self.groups if g["tids"] == [7])
        self.assertEqual((g["stack"], g["state"]), ([], "D"))
        self.assertIn("did not stop", g["error"])

    def test_gone_threads_are_counted_not_grouped(self):
        doc = copy.deepcopy(DOC)
        doc["threads"][1]["fate"] = "gone"
        self.assertEqual(sum(g["count"] for g in threads.group_threads(doc)), 7)


class Text(unittest.TestCase):
    def test_go_debug_1_layout(self):
        out = threads.text(DOC, threads.group_threads(DOC))
        lines = out.splitlines()
        self.assertEqual(lines[0], "threads profile: total 8, pid 42 (app)")
        self.assertIn("4 @ ll_chan_recv <- worker <- start_thread", lines)
        self.assertIn("#\tstate S (sleeping), futex wait on 2 different words, wchan futex_do_wait", lines)
        self.assertIn("#\tstate S (sleeping), futex wait on 0x1000, wchan futex_do_wait", lines)
        self.assertIn("#\tstate R (running), futex wait on 0x1000, wchan futex_do_wait", lines)
        self.assertIn("#\t0x7f0000001010\t__futex_wait (inlined)\tfutex.c:57", lines)
        self.assertIn("#\t0x401010\tll_chan_recv+0x10\t/src/chan.c:53", lines)
        self.assertIn("#\t0x7f0000002010\tstart_thread+0x10\t(libc.so.6)", lines)
        self.assertIn("#\t0x402abc\tapp+0x2abc\t(app)", lines)
        self.assertIn("1 @ (no stack: did not stop within 2 s (state D))", lines)
        self.assertIn("#\tstate D (uninterruptible sleep)", lines)

    def test_exited_process_is_said(self):
        doc = dict(DOC, exited=True, gone=2)
        out = threads.text(doc, threads.group_threads(doc))
        self.assertIn("# 2 threads exited during the dump", out)
        self.assertIn("the process exited during the dump", out)


class Json(unittest.TestCase):
    def test_census_keys(self):
        out = threads.to_json(DOC, threads.group_threads(DOC))
        self.assertEqual(out["pid"], 42)
        g = out["groups"][0]
        for key in ("count", "state", "wchan", "syscall", "wait_address", "stack", "frames"):
            self.assertIn(key, g)
        self.assertEqual((g["count"], g["wait_address"], g["wait_addresses"]), (4, None, 2))


class Pprof(unittest.TestCase):
    def setUp(self):
        self.blob = threads.profile(DOC, now_ns=123).gzipped()
        self.p = pprof_format.decode(self.blob)

    def names(self, sample):
        return [self.p["functions"][fid]["name"] for lid in sample["location_ids"]
                for fid, _ in self.p["locations"][lid]["lines"]]

    def test_is_gzip_and_one_sample_per_identical_threads(self):
        self.assertEqual(self.blob[:2], b"\x1f\x8b")
        # tids 2, 3, 4 are one sample (same stack, same labels); 5 waits on another futex,
        # 8 runs: samples of their own; the late thread has no stack. First seen, first.
        self.assertEqual([s["values"] for s in self.p["samples"]], [[1], [3], [1], [1], [1]])
        self.assertEqual(self.p["sample_type"], [("threads", "count")])
        self.assertEqual((self.p["period_type"], self.p["period"]), (("threads", "count"), 1))
        self.assertEqual(self.p["strings"][0], "")
        self.assertEqual(self.p["comments"], ["leaklab threads: pid 42 (app), 8 threads"])

    def test_stack_is_leaf_first_with_inlined_lines(self):
        s = self.p["samples"][1]  # tid 2's, in the document's order
        self.assertEqual(self.names(s), ["__futex_wait", "pthread_cond_wait", "ll_chan_recv", "worker", "start_thread"])
        first = self.p["locations"][s["location_ids"][0]]
        self.assertEqual(first["address"], 0x7f0000001010)
        self.assertEqual([line for _, line in first["lines"]], [57, 618])
        self.assertEqual(s["labels"], {"state": "S", "wchan": "futex_do_wait", "syscall": "futex",
                                       "thread": "app", "wait": "0x1000"})

    def test_functions_have_files_mappings_have_modules(self):
        worker = next(f for f in self.p["functions"].values() if f["name"] == "worker")
        self.assertEqual(worker["filename"], "/src/w.c")
        mappings = sorted((m["filename"], m["start"], m["limit"], m["build_id"]) for m in self.p["mappings"].values())
        self.assertEqual(mappings, [("/bin/app", 0x400000, 0x410000, "abcd"), (LIBC, 0x7f0000000000, 0x7f0000200000, "")])
        loc = next(l for l in self.p["locations"].values() if l["address"] == 0x401210)
        self.assertEqual(self.p["mappings"][loc["mapping_id"]]["filename"], "/bin/app")


class Encoder(unittest.TestCase):
    def test_varints(self):
        self.assertEqual(pprof_format.varint(0), b"\x00")
        self.assertEqual(pprof_format.varint(300), b"\xac\x02")
        self.assertEqual(pprof_format.varint(-1), b"\xff" * 9 + b"\x01")

    def test_known_bytes(self):
        # Profile{sample_type: [{type: 1, unit: 2}], string_table: ["", "threads", "count"], period_type, period 1}
        p = pprof_format.Profile(sample_type=("threads", "count"))
        self.assertEqual(p.serialize(), b"\x0a\x04\x08\x01\x10\x02" + b"\x32\x00" + b"\x32\x07threads"
                         + b"\x32\x05count" + b"\x5a\x04\x08\x01\x10\x02" + b"\x60\x01")

    def test_decoder_rejects_garbage(self):
        with self.assertRaises(ValueError):
            pprof_format.decode(gzip.compress(b"\x0a\xff\xff"))


class Usage(unittest.TestCase):
    def test_bad_pids(self):
        for text, message in (("abc", "is not a number"), ("", "is not a number"), ("0", "out of range"),
                              ("4294967296", "out of range")):
            with self.subTest(text=text), self.assertRaises(runner.UsageError) as e:
                threads.parse_pid(text)
            self.assertIn(message, str(e.exception))

    def test_missing_dumper_is_a_skip(self):
        with self.assertRaises(runner.Skip) as e:
            threads.dump(1, build_dir="/nonexistent-build")
        self.assertIn("libdw-dev", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
