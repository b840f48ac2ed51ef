"""Tests of the reliability tools: scripts/dev/flaky.py (a fake CTest tree with a
test that fails every other run), scripts/fuzz.py (a fake libFuzzer binary
that finds, does not find, or breaks), and the oracle of
fuzz/expected/fuzz_expected.py (fed an expression module that breaks each
promise it checks)."""

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from unittest import mock

import fakes

FLAKY = [sys.executable, str(fakes.SCRIPTS / "dev" / "flaky.py")]
FUZZ = [sys.executable, str(fakes.SCRIPTS / "fuzz.py")]
sys.path.insert(0, str(fakes.REPO / "fuzz" / "expected"))

from scripts.expect import expected  # noqa: E402
import fuzz_expected  # noqa: E402


class Flaky(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.build = Path(self._tmp.name)
        counter = self.build / "count"
        # Fails on its 2nd and 4th run: a counter, not a clock or a race.
        every_other = f"import pathlib,sys; p=pathlib.Path({str(counter)!r}); n=int(p.read_text() if p.exists() else 0)+1; " \
                      "p.write_text(str(n)); sys.exit(n % 2 == 0)"
        (self.build / "CTestTestfile.cmake").write_text(textwrap.dedent(f"""\
            add_test(steady "{sys.executable}" "-c" "pass")
            set_tests_properties(steady PROPERTIES LABELS "quick")
            add_test(every_other "{sys.executable}" "-c" "{every_other}")
            set_tests_properties(every_other PROPERTIES LABELS "quick")
            add_test(missing_tool "{sys.executable}" "-c" "raise SystemExit(77)")
            set_tests_properties(missing_tool PROPERTIES LABELS "quick" SKIP_RETURN_CODE 77)
            add_test(other_label "{sys.executable}" "-c" "raise SystemExit(1)")
            set_tests_properties(other_label PROPERTIES LABELS "seed")
            """))

    def tearDown(self):
        self._tmp.cleanup()

    def flaky(self, *args):
        return subprocess.run(FLAKY + ["--build-dir", str(self.build), *args], capture_output=True, text=True,
                              timeout=300)

    def test_counts_each_tests_failed_runs(self):
        r = self.flaky("-L", "quick", "-n", "4")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        rows = {line.split()[0]: line.split()[1:3] for line in r.stdout.splitlines()
                if line.split() and line.split()[0] in ("steady", "every_other", "missing_tool", "other_label")}
        self.assertEqual(rows, {"every_other": ["2/4", "0"], "steady": ["0/4", "0"], "missing_tool": ["0/4", "4"]})
        self.assertIn("2 failed run(s) in 1 test(s)", r.stdout)
        self.assertIn("flaky: every_other", r.stdout)

    def test_zero_failures_is_0(self):
        r = self.flaky("-R", "steady|missing_tool", "-n", "2", "-j", "2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("0 failed run(s)", r.stdout)

    def test_an_empty_selection_or_no_build_is_99_and_bad_usage_2(self):
        self.assertEqual(self.flaky("-R", "nothing_is_called_so", "-n", "1").returncode, 99)
        r = subprocess.run(FLAKY + ["--build-dir", str(self.build / "nowhere")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 99)
        self.assertIn("not a configured build", r.stderr)
        self.assertEqual(self.flaky("-n", "0").returncode, 2)


# A stand-in for a libFuzzer binary: honours -artifact_prefix, and
# FAKE_FUZZ=ok|crash|broken says what it does.
FAKE_LIBFUZZER = """#!{python}
import os, sys
prefix = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("-artifact_prefix="))
mode = os.environ.get("FAKE_FUZZ", "ok")
print("INFO: Seed: 1")
print("#2048\\tpulse  cov: 40 ft: 90 corp: 12/300b exec/s: 1024")
if mode == "crash":
    open(prefix + "crash-0123abcd", "wb").write(b"bad input")
    print("==1==ERROR: AddressSanitizer: heap-buffer-overflow")
    print("SUMMARY: AddressSanitizer: heap-buffer-overflow x.c:3 in decode")
    sys.exit(1)
if mode == "broken":
    print("ERROR: unknown flag")
    sys.exit(1)
print("#5000\\tDONE   cov: 41 ft: 93 corp: 13/310b exec/s: 2500")
print("stat::number_of_executed_units: 5000")
"""


class Fuzz(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.build = Path(self._tmp.name)
        (self.build / "fuzz").mkdir()
        binary = self.build / "fuzz" / "fuzz_options"
        binary.write_text(FAKE_LIBFUZZER.format(python=sys.executable))
        binary.chmod(0o755)

    def tearDown(self):
        self._tmp.cleanup()

    def fuzz(self, *args, mode="ok"):
        return subprocess.run(FUZZ + [*args, "--build-dir", str(self.build)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "FAKE_FUZZ": mode})

    def test_no_finding_is_0_with_the_figures(self):
        r = self.fuzz("options", "--runs", "5000")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"fuzz options: 5,000 executions in \d+ s \([\d,]+/s\), coverage 41 edges, "
                                   r"93 features, corpus 13 inputs; findings: none")
        self.assertIn("-runs=5000", r.stdout)
        self.assertIn(str(fakes.REPO / "fuzz" / "options" / "corpus"), r.stdout)

    def test_a_finding_is_1_naming_the_input(self):
        r = self.fuzz("options", "--seconds", "5", mode="crash")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("findings: 1: SUMMARY: AddressSanitizer: heap-buffer-overflow", r.stdout)
        self.assertIn(str(self.build / "fuzz" / "artifacts" / "options" / "crash-0123abcd"), r.stdout)
        self.assertIn("-max_total_time=5", r.stdout)
        self.assertIn("as a regression input", r.stdout)

    def test_smoke_uses_a_fixed_seed_and_a_folder_of_its_own(self):
        r = self.fuzz("options", "--smoke", "--runs", "10", mode="crash")
        self.assertEqual(r.returncode, 1)
        self.assertIn("-seed=1", r.stdout)
        self.assertTrue((self.build / "fuzz" / "artifacts" / "options" / "smoke" / "crash-0123abcd").is_file())

    def test_a_fuzzer_that_fails_without_a_finding_is_99(self):
        self.assertEqual(self.fuzz("options", "--runs", "1", mode="broken").returncode, 99)

    def test_a_target_not_built_is_77_and_bad_usage_2(self):
        r = self.fuzz("gateway_decoder", "--smoke")
        self.assertEqual(r.returncode, 77, r.stdout + r.stderr)
        self.assertIn("libclang-rt", r.stdout)
        self.assertEqual(self.fuzz("no_such_target").returncode, 2)
        self.assertEqual(self.fuzz("options", "--seconds", "0").returncode, 2)


class ExpressionOracle(unittest.TestCase):
    """fuzz_expected.run_one must call each broken promise a finding."""

    def finding(self, text="threads >= 1"):
        with self.assertRaises(fuzz_expected.Finding) as cm:
            fuzz_expected.run_one(text, set())
        return str(cm.exception)

    def test_the_real_module_keeps_its_promises(self):
        for text in ("threads >= workers + 1", "nonsense((", "-" * 500 + "1 > 0", "1\x00 > 2",
                     "9" * 400 + " * 0.5 > threads"):
            fuzz_expected.run_one(text, set())

    def test_an_exception_escaping_evaluate(self):
        with mock.patch.object(expected, "evaluate", side_effect=RecursionError("deep")):
            self.assertIn("RecursionError escaped", self.finding())

    def test_an_exception_escaping_parse_other_than_expression_error(self):
        with mock.patch.object(expected, "parse", side_effect=ValueError("nul")):
            self.assertIn("ValueError escaped", self.finding())

    def test_code_that_runs(self):
        real = expected.parse

        def parse_that_evaluates(text):
            eval("1")  # what the whitelist exists to prevent
            return real(text)
        fuzz_expected.sys.addaudithook(fuzz_expected._audit)
        with mock.patch.object(expected, "parse", parse_that_evaluates):
            self.assertIn("audit event 'exec'", self.finding())

    def test_a_node_outside_the_whitelist(self):
        real = expected.parse

        def parse_with_a_call(text):
            left, op, right, refs = real(text)
            return expected.ast.parse("print(1)", mode="eval").body, op, right, refs
        with mock.patch.object(expected, "parse", parse_with_a_call):
            self.assertIn("node passed the whitelist", self.finding())

    def test_a_verdict_over_something_not_a_number(self):
        with mock.patch.object(expected, "evaluate", return_value=expected.Outcome("PASS", ">=", True, 1)):
            self.assertIn("PASS over a bool", self.finding())

    def test_a_reference_outside_the_grammar(self):
        real = expected.parse

        def parse_with_a_dunder(text):
            left, op, right, refs = real(text)
            name = next(iter(refs))
            return left, op, right, {**refs, name: expected.Ref("__class__.__bases__")}
        with mock.patch.object(expected, "parse", parse_with_a_dunder):
            self.assertIn("a reference outside the grammar", self.finding())


class SlowInputs(unittest.TestCase):
    """--slow counts the CPU time an input costs, never the wall time a busy
    machine adds: a smoke run must not turn red because others use the CPU."""

    def fuzz_one_seed(self, evaluate):
        with tempfile.TemporaryDirectory() as tmp:
            corpus, artifacts = Path(tmp, "corpus"), Path(tmp, "artifacts")
            corpus.mkdir()
            (corpus / "seed").write_text("threads >= 1")
            with mock.patch.object(expected, "evaluate", evaluate), \
                    contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = fuzz_expected.main([str(corpus), "--runs", "0", "--slow", "0.2", "--artifacts", str(artifacts)])
            return code, sorted(p.name.partition("-")[0] for p in artifacts.glob("*"))

    def test_an_input_that_waits_is_not_slow(self):
        def waits(text, resolve):
            time.sleep(0.5)  # what a descheduled process looks like: wall time, no CPU
            return expected.Outcome("PASS", ">=", 3, 1)
        self.assertEqual(self.fuzz_one_seed(waits), (0, []))

    def test_an_input_that_computes_is_slow(self):
        def computes(text, resolve):
            t0 = time.thread_time()
            while time.thread_time() - t0 < 0.5:
                pass
            return expected.Outcome("PASS", ">=", 3, 1)
        self.assertEqual(self.fuzz_one_seed(computes), (1, ["slow"]))


if __name__ == "__main__":
    unittest.main()
