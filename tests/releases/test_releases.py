#!/usr/bin/env python3
"""test_releases.py - tool releases as columns, and stability as data.

Unit tests (no build needed): TOOL@RELEASE names and expected-file
selectors (validated; plain lsan selects every release, lsan@clang-14 one),
releases read from compiler version strings and the build's manifest, the
reasons a missing release skips with, crash detection in a sanitizer's
report, a cell run R times (crashed / timed out / verdict changed), the
table's "crashed 2/5", baseline diffs of stability and of two columns.

Against a real build (LEAKLAB_BUILD_DIR; 77 when the sanitizers are not
built): the default release answers to both of its names (plain lsan and
lsan@<its release> agree cell by cell under --repeat 2); a release that
crashes every other run (a wrapper, pointed at with
LEAKLAB_SANITIZER_BUILD_DIR) shows as "crashed 1/2", exits 1 and is flagged
by `baseline diff --between`; a release that is not there skips (77)
naming what to install; `list --tools` lists every release with its version.
usage: LEAKLAB_BUILD_DIR=BUILD test_releases.py [-v]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the `scripts` package

from scripts.expect import comparer  # noqa: E402
from scripts.expect import expected  # noqa: E402
from scripts.views import matrix  # noqa: E402
from scripts.run import runner  # noqa: E402
from scripts.tools import sanitizer  # noqa: E402

BUILD = Path(os.environ.get("LEAKLAB_BUILD_DIR") or REPO / "build").resolve()
# The real runs keep small (50 workers, over the expected file's [[args]]): what
# is tested is the columns and the counting, not the scale; the checks are ratios.
SMALL = ("--workers", "50")
LEAKLAB = [sys.executable, str(REPO / "scripts" / "leaklab.py")]

LSAN_CRASH = """==3663==ERROR: LeakSanitizer: SEGV on unknown address 0x7f85d5da5ff8 (pc 0x556344fe6104 bp 0x00000000001e sp 0x7f85cdf42660 T511)
==3663==The signal is caused by a READ memory access.
    #0 0x556344fe6104 in __lsan::CurrentThreadContext() (/b/blocked_workers-lsan@clang-16+0x33104)
    #1 0x556344fdfbc1 in __sanitizer::BufferedStackTrace::UnwindImpl(unsigned long, unsigned long, void*, bool, unsigned int) (/b/x+0x2cbc1)
    #2 0x556344fe41cd in __interceptor_realloc (/b/x+0x311cd)
    #3 0x556344fe67bc in fill_buffer /work/main/scenarios/blocked_workers.c:75:30

LeakSanitizer can not provide additional info.
SUMMARY: LeakSanitizer: SEGV (/b/blocked_workers-lsan@clang-16+0x33104) in __lsan::CurrentThreadContext()
"""

UNSYMBOLIZED = """==25817==WARNING: invalid path to external symbolizer!
==25817==WARNING: Failed to use and restart external symbolizer!
"""


def write_expected(folder, text):
    path = Path(folder) / "x.toml"
    path.write_text(text)
    return path


class ToolNames(unittest.TestCase):
    def test_parse_tool(self):
        self.assertEqual(runner.parse_tool("lsan@clang-19"), ("lsan", "clang-19"))
        self.assertEqual(runner.parse_tool("tsan@gcc-12"), ("tsan", "gcc-12"))
        self.assertEqual(runner.parse_tool("memcheck"), ("memcheck", None))
        for bad in ("memcheck@clang-19", "lsan@clang", "lsan@msvc-19", "lsan@", "nosuchtool", "lsan@clang-19@x"):
            with self.assertRaises(runner.UsageError, msg=bad):
                runner.parse_tool(bad)

    def test_run_dir_names_the_release(self):
        spec = runner.RunSpec(scenario="s", variant="leaky", tool="lsan", release="clang-19")
        self.assertIn(".lsan@clang-19.glibc-", runner.run_dir_name(spec))

    def test_default_allocator_and_canary_of_a_release(self):
        self.assertEqual(runner.default_allocator("lsan@clang-19"), "glibc")
        self.assertEqual(runner.canary_options("tsan@gcc-12"), ["--canary-thread"])


class ExpectedSelectors(unittest.TestCase):
    def load(self, text):
        with tempfile.TemporaryDirectory() as tmp:
            return expected.load(write_expected(tmp, text))

    def test_plain_tool_selects_every_release_and_a_release_only_itself(self):
        exp = self.load('''
[[check]]
variant = "leaky"
tool = "lsan"
expect = "threads >= 1"

[[check]]
variant = "leaky"
tool = "lsan@clang-14"
expect = "threads >= 2"
why = "measured: clang 14 differs (test)"

[[args]]
tool = "lsan@clang-14"
options = ["--workers", "500"]
why = "measured: clang 14 crashes at its 512th thread (test)"
''')
        at = lambda tool: [c.expect for c in exp.applicable("leaky", tool, "glibc", "quick")]  # noqa: E731
        self.assertEqual(at("lsan@clang-19"), ["threads >= 1"])
        self.assertEqual(at("lsan@clang-14"), ["threads >= 1", "threads >= 2"])
        self.assertEqual(at("lsan"), ["threads >= 1"])
        self.assertEqual(at("asan@clang-14"), [])
        self.assertEqual(exp.options_for("leaky", "lsan@clang-14", "glibc", "quick"), ["--workers", "500"])
        self.assertEqual(exp.options_for("leaky", "lsan@gcc-12", "glibc", "quick"), [])

    def test_bad_release_selectors_are_refused(self):
        cases = {
            'tool = "memcheck@valgrind-3"': "only lsan, asan, tsan have releases",
            'tool = "lsan@clang"': "a release is clang-N or gcc-N",
            'tool = "lsan@clang-19"': "give a `why`",
        }
        for line, message in cases.items():
            with self.subTest(line=line), self.assertRaises(expected.ExpectedFileError) as caught:
                self.load(f'[[check]]\nvariant = "leaky"\n{line}\nexpect = "threads >= 1"\n')
            self.assertIn(message, str(caught.exception))

    def test_a_plain_lsan_run_is_its_release(self):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            run.mkdir()
            (run / "run.json").write_text(json.dumps({"scenario": "x", "variant": "leaky", "tool": "lsan",
                                                      "allocator": "glibc", "scale": "quick",
                                                      "release": "clang-14"}))
            (run / "events.jsonl").write_text("")
            self.assertEqual(comparer.identity(comparer.RunData.load(run))[1], "lsan@clang-14")


class Releases(unittest.TestCase):
    def test_release_of_version_strings(self):
        self.assertEqual(sanitizer.release_of_version("Debian clang version 19.1.7 (3~deb12u1)"), "clang-19")
        self.assertEqual(sanitizer.release_of_version("Debian clang version 14.0.6"), "clang-14")
        self.assertEqual(sanitizer.release_of_version("GCC: (Debian 12.2.0-14+deb12u1) 12.2.0"), "gcc-12")
        self.assertEqual(sanitizer.release_of_version("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"), "gcc-12")
        self.assertIsNone(sanitizer.release_of_version("GNU ld (GNU Binutils for Debian) 2.40"))
        self.assertIsNone(sanitizer.release_of_version(None))

    def test_missing_release_says_what_to_do(self):
        with tempfile.TemporaryDirectory() as tmp:
            build = Path(tmp)
            (build / "scenarios").mkdir()
            (build / "sanitizers").mkdir()
            (build / "sanitizers" / "releases.json").write_text(json.dumps({
                "default_release": "clang-14", "releases": {
                    "clang-16": {"tools": {"lsan": {"status": "not requested",
                                                    "why": "clang-16 is installed but not asked for"}}},
                    "clang-19": {"tools": {"lsan": {"status": "built"}}}}}))
            env = os.environ.pop(sanitizer.ENV_BUILD_DIR, None)
            try:
                self.assertIn("not asked for", sanitizer.missing(build, "x", "lsan", "clang-16"))
                self.assertIn("build first", sanitizer.missing(build, "x", "lsan", "clang-19"))
                self.assertIn("clang-77 is not installed", sanitizer.missing(build, "x", "lsan", "clang-77"))
                self.assertIn("scripts/install-deps --tool-releases", sanitizer.missing(build, "x", "lsan", "clang-77"))
                (build / "scenarios" / "x-lsan@clang-19").write_text("#!/bin/sh\n")
                (build / "scenarios" / "x-lsan@clang-19").chmod(0o755)
                self.assertIsNone(sanitizer.missing(build, "x", "lsan", "clang-19"))
            finally:
                if env is not None:
                    os.environ[sanitizer.ENV_BUILD_DIR] = env

    def test_install_deps_knows_the_releases(self):
        script = str(REPO / "scripts" / "install-deps")
        plain = subprocess.run([script, "--check"], capture_output=True, text=True)
        wide = subprocess.run([script, "--check", "--tool-releases"], capture_output=True, text=True)
        for package in ("clang-19", "libclang-rt-19-dev", "llvm-19", "clang-16", "liblsan0", "libtsan2"):
            self.assertIn(package, wide.stdout, "--tool-releases must check the release packages")
            self.assertNotIn(f" {package} ", f" {plain.stdout.replace(chr(10), ' ')} ",
                             "the default install must stay as it is")
        self.assertIn(wide.returncode, (0, 1))
        self.assertEqual(subprocess.run([script, "--no-such-option"], capture_output=True).returncode, 2)

    def test_crash_and_unsymbolized_reports(self):
        parsed = sanitizer.parse_leaks(LSAN_CRASH)
        self.assertEqual(sanitizer.crash_text(parsed["crash"]), "SEGV in __lsan::CurrentThreadContext() (T511)")
        self.assertEqual(parsed["errors"], {"SEGV": 1})
        self.assertIsNone(sanitizer.parse_leaks("SUMMARY: LeakSanitizer: 31337 byte(s) leaked in 1 allocation(s).\n")["crash"])
        self.assertIn("install llvm-19", sanitizer.unsymbolized(UNSYMBOLIZED, "clang-19"))
        self.assertIsNone(sanitizer.unsymbolized(LSAN_CRASH, "clang-19"))


def run_(status="match", verdict="not reported", crashed=False, timed_out=False, crash=None):
    return {"status": status, "verdict": verdict, "crashed": crashed, "timed_out": timed_out, "crash": crash,
            "kinds": {}, "reported_kinds": ["definite"], "wall_s": 1.0, "run_dir": "/tmp/r",
            "scale": {"scale": "quick", "workers": 1000, "options": []}}


class Stability(unittest.TestCase):
    def cell(self, runs, tool="lsan@clang-14"):
        return {"scenario": "blocked_workers", "variant": "leaky", "tool": tool, "canary": False,
                **matrix.summarize(runs)}

    def test_every_run_matched(self):
        cell = self.cell([run_() for _ in range(3)])
        self.assertEqual(cell["status"], "match")
        self.assertEqual(matrix.cell_text(cell), "no (3/3 alike)")

    def test_crashes_make_the_cell_unstable(self):
        crash = "SEGV in __lsan::CurrentThreadContext() (T511)"
        runs = [run_(), run_("differs", None, crashed=True, crash=crash), run_(), run_(),
                run_("differs", "not reported", crashed=True, crash=crash)]
        cell = self.cell(runs)
        self.assertEqual(cell["status"], "unstable")
        self.assertEqual(cell["stability"]["crashed"], 2)
        self.assertEqual(cell["stability"]["matched"], 3)
        self.assertEqual(cell["verdict"], "not reported", "the representative run is one that finished")
        self.assertEqual(matrix.cell_text(cell), "! no (crashed 2/5)")
        doc = matrix.document([cell], ["blocked_workers"], ["lsan@clang-14"], "seed")
        self.assertEqual(matrix.exit_code(doc), runner.EXIT_FAILED)
        self.assertIn("crashed 2/5", matrix.markdown(doc))
        self.assertTrue(any("crashed 2/5 over 5 runs" in n for n in matrix.notes(doc)), matrix.notes(doc))

    def test_timeouts_and_verdict_changes_are_counted(self):
        cell = self.cell([run_(), run_("differs", "reported"), run_("error", None, timed_out=True)])
        self.assertEqual(cell["stability"]["timed_out"], 1)
        self.assertEqual(cell["stability"]["verdict_changed"], 1)
        self.assertEqual(cell["stability"]["crashed"], 0)
        self.assertIn("timed out 1/3, verdict changed 1/3", matrix.cell_text(cell))

    def test_runs_that_fail_alike_keep_their_status(self):
        cell = self.cell([run_("differs"), run_("differs")])
        self.assertEqual(cell["status"], "differs")

    def test_baseline_keeps_no_run_dirs(self):
        cell = self.cell([run_(), run_()])
        doc = matrix.document([cell], ["blocked_workers"], ["lsan@clang-14"], "quick")
        kept = matrix.to_baseline(doc, "b")["cells"][0]
        self.assertNotIn("run_dirs", kept["stability"])
        self.assertNotIn("run_dir", kept)

    def test_diff_notices_a_cell_that_became_unstable_not_one_that_stayed_so(self):
        stable = self.cell([run_() for _ in range(4)])
        flaky = self.cell([run_(), run_("differs", None, crashed=True), run_(), run_()])
        flakier = self.cell([run_("differs", None, crashed=True)] * 2 + [run_()] * 2)
        changes = matrix.diff_cells(stable, flaky)
        self.assertIn("stability: 4/4 alike -> crashed 1/4", changes)
        self.assertTrue(any(c.startswith("expectations: now unstable") for c in changes), changes)
        self.assertIn("stability: crashed 1/4 -> 4/4 alike", matrix.diff_cells(flaky, stable))
        self.assertFalse(any(c.startswith("stability") for c in matrix.diff_cells(flaky, flakier)))

    def test_diff_between_two_columns(self):
        cells = [self.cell([run_() for _ in range(4)], "lsan@clang-19"),
                 self.cell([run_(), run_("differs", None, crashed=True), run_(), run_()], "lsan@clang-14")]
        doc = matrix.document(cells, ["blocked_workers"], ["lsan@clang-14", "lsan@clang-19"], "seed")
        changes, infos = matrix.diff_columns(doc, "lsan@clang-14", "lsan@clang-19")
        self.assertEqual(changes[0][0], "lsan@clang-14 -> lsan@clang-19")
        self.assertIn("stability: crashed 1/4 -> 4/4 alike", changes[0][2])
        self.assertEqual(matrix.diff_columns(doc, "lsan@clang-19", "lsan@clang-19")[0], [])
        with self.assertRaises(runner.UsageError):
            matrix.diff_columns(doc, "lsan@clang-14", "lsan@gcc-12")


CRASH_EVERY_OTHER_RUN = """#!/bin/sh
# A release that crashes every other run: counts its runs in a file.
n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}
if [ $((n % 2)) -eq 0 ]; then kill -SEGV $$; fi
exec {real} "$@"
"""


class RealBuild(unittest.TestCase):
    def setUp(self):
        if not (BUILD / "scenarios" / "blocked_workers-lsan").is_file():
            self.skipTest(f"{BUILD}/scenarios/blocked_workers-lsan not built (no clang at configure time)")
        self.release = sanitizer.release_of(BUILD / "scenarios" / "blocked_workers-lsan")
        if not self.release:
            self.skipTest("the default LeakSanitizer's release cannot be read from its binary")

    def leaklab(self, *argv, env=None):
        done = subprocess.run(LEAKLAB + list(argv), capture_output=True, text=True, timeout=600,
                              env={**os.environ, **(env or {})})
        return done.returncode, done.stdout + done.stderr

    def test_default_release_answers_to_both_names(self):
        both = f"lsan,lsan@{self.release}"
        with tempfile.TemporaryDirectory(prefix="leaklab-releases-") as tmp:
            code, out = self.leaklab("matrix", "--build-dir", str(BUILD), "--out", tmp, "--scenarios",
                                     "blocked_workers", "--variants", "fixed", "--tools", both, "--repeat", "2",
                                     "--", *SMALL)
            self.assertEqual(code, 0, out[-3000:])
            doc = json.loads((Path(tmp) / "matrix.json").read_text())
            self.assertEqual(doc["repeat"], 2)
            for cell in doc["cells"]:
                self.assertEqual(cell["stability"]["runs"], 2)
                self.assertEqual(cell["release"], self.release)
            self.assertIn("2/2 alike", (Path(tmp) / "matrix.md").read_text())
            code, out = self.leaklab("baseline", "diff", "--between", "lsan", f"lsan@{self.release}",
                                     "--against", str(Path(tmp) / "matrix.json"))
            self.assertEqual(code, 0, out)
            self.assertIn("no change beyond tolerance", out)

    def test_a_crashing_release_shows_as_crashed(self):
        with tempfile.TemporaryDirectory(prefix="leaklab-releases-") as tmp:
            folder = Path(tmp) / "binaries"
            folder.mkdir()
            real = BUILD / "scenarios" / "blocked_workers-lsan"
            (folder / "blocked_workers-lsan").symlink_to(real)
            flaky = folder / "blocked_workers-lsan@clang-99"
            flaky.write_text(CRASH_EVERY_OTHER_RUN.format(counter=Path(tmp) / "count", real=real))
            flaky.chmod(0o755)
            env = {sanitizer.ENV_BUILD_DIR: str(folder)}
            code, out = self.leaklab("matrix", "--build-dir", str(BUILD), "--out", str(Path(tmp) / "m"),
                                     "--scenarios", "blocked_workers", "--variants", "fixed", "--no-canaries",
                                     "--tools", "lsan,lsan@clang-99", "--repeat", "2", "--", *SMALL, env=env)
            self.assertEqual(code, 1, out[-3000:])
            self.assertIn("crashed 1/2", out)
            doc = json.loads((Path(tmp) / "m" / "matrix.json").read_text())
            flaky_cell = next(c for c in doc["cells"] if c["tool"] == "lsan@clang-99")
            self.assertEqual(flaky_cell["status"], "unstable")
            self.assertEqual(flaky_cell["stability"]["crashed"], 1)
            self.assertEqual(flaky_cell["stability"]["outcomes"], ["match", "crashed (SIGSEGV)"])
            code, out = self.leaklab("baseline", "diff", "--between", "lsan", "lsan@clang-99",
                                     "--against", str(Path(tmp) / "m" / "matrix.json"))
            self.assertEqual(code, 1, out)
            self.assertIn("stability: 2/2 alike -> crashed 1/2", out)

    def test_missing_release_skips(self):
        with tempfile.TemporaryDirectory(prefix="leaklab-releases-") as tmp:
            code, out = self.leaklab("check", "blocked_workers", "--variant", "fixed", "--scale", "quick",
                                     "--tool", "lsan@clang-77", "--build-dir", str(BUILD), "--out", tmp)
        self.assertEqual(code, 77, out)
        self.assertIn("clang-77 is not installed", out)
        code, out = self.leaklab("check", "blocked_workers", "--tool", "memcheck@clang-19", "--build-dir", str(BUILD))
        self.assertEqual(code, 2, out)

    def test_list_tools(self):
        code, out = self.leaklab("list", "--tools", "--build-dir", str(BUILD))
        self.assertEqual(code, 0, out)
        rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
        self.assertIn(f"{self.release} (default)", rows["lsan"])
        self.assertIn("ready", rows[f"lsan@{self.release}"])
        version = sanitizer.compiler_version(sanitizer.manifest(BUILD)["releases"][self.release]["compiler"])
        self.assertIn(version, rows[f"lsan@{self.release}"])


def main():
    """unittest's main, with DESIGN.md's exit codes: 77 when every test was skipped (no build)."""
    result = unittest.main(exit=False).result
    if not result.wasSuccessful():
        return 1
    if result.testsRun and len(result.skipped) == result.testsRun:
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
