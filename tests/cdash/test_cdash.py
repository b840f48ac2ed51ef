#!/usr/bin/env python3
"""test_cdash.py - the results reach CTest's files and a CDash server.

Three tests against a real build (LEAKLAB_BUILD_DIR), each in a scratch
directory whose CTestTestfile.cmake includes the build's tests
(`subdirs(BUILD)`), so the build's own Testing/ folder is left alone:

  MeasurementsTest  `ctest -T Test -R blocked_workers.leaky.native` (and an
                    LSan canary) leaves the check's figures in Test.xml as
                    NamedMeasurements: threads, RSS, heap in use, the tool's
                    reported bytes, the verdict.
  SubmitTest        ctest/dashboard.cmake's test and submit steps (on a test
                    of its own, so the build's state does not matter), pointed
                    at tests/cdash/receiver.py on 127.0.0.1: Test.xml and
                    Done.xml arrive, for project leaklab; a receiver that
                    answers 500 fails the script; no URL, nothing is sent.
  JunitTest         `ctest --output-junit` lists every test ctest ran, with
                    its status (passed, failed, skipped).

Each checker also gets a violating case (a Test.xml without measurements, a
JUnit file that drops a test), so none of them can pass on anything.
usage: LEAKLAB_BUILD_DIR=BUILD test_cdash.py [TestClass ...] [-v]
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import receiver  # noqa: E402

BUILD = Path(os.environ.get("LEAKLAB_BUILD_DIR") or REPO / "build").resolve()
CTEST = shutil.which("ctest") or "ctest"
NATIVE = "blocked_workers.leaky.native"
CANARY = "blocked_workers.fixed.lsan.canary"
# What a check test must leave in Test.xml (scripts/views/measurements.py).
REQUIRED = {
    NATIVE: ("threads", "rss_bytes", "in_use_bytes", "threads_end", "wall_s", "workers", "payload_bytes",
             "checks_passed", "checks_failed", "result", "verdict"),
    CANARY: ("tool_reported", "tool_reported_bytes", "tool_reported_blocks", "tool_version", "tool_release",
             "result", "verdict"),
}


# ---- the checkers ------------------------------------------------------------------------

def test_xml_measurements(path):
    """{test name: {measurement name: value}} from a CTest Test.xml (values as text)."""
    found = {}
    for test in ET.parse(path).getroot().iter("Test"):
        name = test.findtext("Name")
        if name is None:
            continue
        values = {}
        for m in test.iter("NamedMeasurement"):
            values[m.get("name")] = m.findtext("Value")
        found[name] = {"status": test.get("Status"), **values}
    return found


def measurement_problems(found, required):
    """What is missing from `found` (test_xml_measurements) against {test: [names]}."""
    problems = []
    for test, names in required.items():
        if test not in found:
            problems.append(f"{test}: not in Test.xml")
            continue
        for name in names:
            if found[test].get(name) in (None, ""):
                problems.append(f"{test}: no measurement '{name}'")
    return problems


def junit_cases(path):
    """{test name: passed | failed | skipped} from a JUnit file."""
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            status = "failed"
        elif case.find("skipped") is not None:
            status = "skipped"
        else:
            status = "passed"
        cases[case.get("name")] = status
    return cases


def junit_problems(cases, expected):
    """Differences between the JUnit cases and {test name: status} (every test ctest listed)."""
    problems = [f"{name}: missing from the JUnit file" for name in expected if name not in cases]
    problems += [f"{name}: {cases[name]} in the JUnit file, {status} by ctest" for name, status in expected.items()
                 if name in cases and status is not None and cases[name] != status]
    problems += [f"{name}: in the JUnit file but not a test ctest ran" for name in cases if name not in expected]
    return problems


def scratch_project(folder, extra=""):
    """A folder whose CTestTestfile.cmake holds `extra` tests and the build's own."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build = f'subdirs("{BUILD}")\n' if (BUILD / "CTestTestfile.cmake").is_file() else ""
    (folder / "CTestTestfile.cmake").write_text(extra + build)
    return folder


def run(argv, cwd=None, timeout=600):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def listed(cwd, regex):
    """The tests ctest would run for -R regex, from its own JSON listing."""
    code, out = run([CTEST, "--show-only=json-v1", "-R", regex], cwd=cwd)
    text = out[out.index("{"):] if "{" in out else "{}"
    return [t["name"] for t in json.loads(text).get("tests", [])]


def require_build():
    if not (BUILD / "CTestTestfile.cmake").is_file():
        raise unittest.SkipTest(f"{BUILD} is not a configured build (set LEAKLAB_BUILD_DIR)")


# ---- the tests -----------------------------------------------------------------------------

class MeasurementsTest(unittest.TestCase):
    def test_check_figures_land_in_test_xml(self):
        require_build()
        with tempfile.TemporaryDirectory(prefix="leaklab-cdash-") as tmp:
            folder = scratch_project(tmp)
            regex = f"^({NATIVE.replace('.', '[.]')}|{CANARY.replace('.', '[.]')})$"
            code, out = run([CTEST, "-T", "Test", "-R", regex, "--output-on-failure"], cwd=folder)
            xmls = sorted(folder.glob("Testing/*/Test.xml"))
            self.assertTrue(xmls, f"no Testing/*/Test.xml after ctest -T Test:\n{out[-2000:]}")
            found = test_xml_measurements(xmls[-1])
            required = dict(REQUIRED)
            if found.get(CANARY, {}).get("status") == "notrun":
                print(f"note: {CANARY} was not run (LeakSanitizer not built): its figures are not checked")
                required.pop(CANARY)
            self.assertEqual(measurement_problems(found, required), [], out[-3000:])
            native = found[NATIVE]
            self.assertEqual(native["status"], "passed", out[-3000:])
            self.assertEqual(int(float(native["threads"])), int(float(native["workers"])) + 1,
                             "blocked_workers leaky: every worker blocked, plus main")
            self.assertGreaterEqual(float(native["in_use_bytes"]), 0.95 * float(native["payload_bytes"]))
            self.assertGreater(float(native["rss_bytes"]), 0)
            self.assertEqual(native["verdict"], "PASS")
            self.assertEqual(float(native["result"]), 0)
            if CANARY in required:
                canary = found[CANARY]
                self.assertEqual(float(canary["tool_reported_bytes"]), 31337, "the planted canary, exactly")
                self.assertEqual(float(canary["tool_reported"]), 1)
                self.assertIn("clang", canary["tool_version"])
                self.assertNotIn("in_use_bytes", canary, "LSan's allocator replaces malloc: glibc's 0 is no figure")
            # The measurement lines are taken out of the output CTest keeps
            # (which CTest stores zlib-compressed, though it says "gzip").
            for test in ET.parse(xmls[-1]).getroot().iter("Test"):
                out_el = test.find("Results/Measurement/Value")
                if out_el is not None and out_el.get("compression") == "gzip":
                    text = zlib.decompress(base64.b64decode(out_el.text)).decode(errors="replace")
                    self.assertIn("check", text, "the verdict table is kept")
                    self.assertNotIn("<CTestMeasurement", text)

    def test_checker_flags_a_test_xml_without_measurements(self):
        with tempfile.TemporaryDirectory() as tmp:
            bare = Path(tmp) / "Test.xml"
            bare.write_text(f'<Site><Testing><Test Status="passed"><Name>{NATIVE}</Name><Results>'
                            '<NamedMeasurement type="numeric/double" name="Execution Time"><Value>1</Value>'
                            '</NamedMeasurement></Results></Test></Testing></Site>')
            problems = measurement_problems(test_xml_measurements(bare), {NATIVE: REQUIRED[NATIVE]})
            self.assertIn(f"{NATIVE}: no measurement 'threads'", problems)
            self.assertIn(f"{CANARY}: not in Test.xml", measurement_problems(test_xml_measurements(bare), REQUIRED))


class SubmitTest(unittest.TestCase):
    # A test of our own that passes, so the submission does not hang on the
    # state of the build's tests (MeasurementsTest runs those).
    PASSING = f'add_test(synthetic.pass "{sys.executable}" "-c" "print(\'submitted\')")\n'

    def dashboard(self, folder, url, include="^synthetic[.]pass$"):
        argv = [CTEST, f"-DLEAKLAB_DASHBOARD_BUILD_DIR={folder}", "-DLEAKLAB_DASHBOARD_STEPS=test;submit",
                f"-DLEAKLAB_DASHBOARD_INCLUDE={include}", "-DCTEST_SITE=leaklab-test",
                "-DLEAKLAB_DASHBOARD_SUBMIT_RETRIES=0",
                "-DCTEST_BUILD_NAME=cdash-submit-test"]
        if url:
            argv.append(f"-DLEAKLAB_CDASH_URL={url}")
        env_url = os.environ.pop("LEAKLAB_CDASH_URL", None)
        try:
            return run(argv + ["-S", str(REPO / "ctest" / "dashboard.cmake"), "-V"], cwd=folder)
        finally:
            if env_url is not None:
                os.environ["LEAKLAB_CDASH_URL"] = env_url

    def test_submission_arrives(self):
        with tempfile.TemporaryDirectory(prefix="leaklab-cdash-") as tmp:
            server = receiver.Receiver(Path(tmp) / "received").start()
            try:
                code, out = self.dashboard(scratch_project(Path(tmp) / "build", self.PASSING), server.url)
            finally:
                server.stop()
            self.assertEqual(code, 0, out[-3000:])
            files = {r["file"]: r for r in server.received if r["file"]}
            names = sorted(files)
            self.assertTrue(any(n.endswith("___XML___Test.xml") for n in names), f"no Test.xml arrived: {names}")
            self.assertTrue(any(n.endswith("___XML___Done.xml") for n in names), f"no Done.xml arrived: {names}")
            for r in files.values():
                self.assertEqual(r["query"].get("project"), "leaklab")
                self.assertEqual(r["query"].get("site"), "leaklab-test")
                self.assertEqual(r["query"].get("build"), "cdash-submit-test")
            test_xml = next(Path(tmp) / "received" / n for n in names if n.endswith("Test.xml"))
            self.assertIn("synthetic.pass", test_xml.read_text(), "the submitted Test.xml names the test run")

    def test_failed_submission_fails_the_script(self):
        with tempfile.TemporaryDirectory(prefix="leaklab-cdash-") as tmp:
            server = receiver.Receiver(Path(tmp) / "received", fail=True).start()
            try:
                code, out = self.dashboard(scratch_project(Path(tmp) / "build", self.PASSING), server.url)
            finally:
                server.stop()
            self.assertNotEqual(code, 0, "a server answering 500 must fail the dashboard script")
            self.assertIn("failed: submit", out)

    def test_no_url_submits_nothing(self):
        with tempfile.TemporaryDirectory(prefix="leaklab-cdash-") as tmp:
            code, out = self.dashboard(scratch_project(Path(tmp) / "build", self.PASSING), None)
            self.assertEqual(code, 0, out[-3000:])
            self.assertIn("nothing submitted", out)
            self.assertNotIn("Submit files", out)


class JunitTest(unittest.TestCase):
    SYNTHETIC = (f'add_test(synthetic.pass "{sys.executable}" "-c" "raise SystemExit(0)")\n'
                 f'add_test(synthetic.fail "{sys.executable}" "-c" "raise SystemExit(1)")\n'
                 f'add_test(synthetic.skip "{sys.executable}" "-c" "raise SystemExit(77)")\n'
                 'set_tests_properties(synthetic.skip PROPERTIES SKIP_RETURN_CODE 77)\n')

    def test_junit_lists_every_test(self):
        require_build()
        with tempfile.TemporaryDirectory(prefix="leaklab-junit-") as tmp:
            folder = scratch_project(tmp, self.SYNTHETIC)
            regex = r"^(synthetic[.]|layout[.]consistency$)"
            names = listed(folder, regex)
            self.assertIn("layout.consistency", names)
            junit = folder / "junit.xml"
            code, out = run([CTEST, "--output-junit", str(junit), "-R", regex], cwd=folder)
            self.assertNotEqual(code, 0, "synthetic.fail fails, so ctest must say so")
            expected = {name: None for name in names}
            # The build's own test is listed whatever its state (another
            # change may have broken it); ours have known outcomes.
            expected.update({"synthetic.pass": "passed", "synthetic.fail": "failed", "synthetic.skip": "skipped"})
            self.assertEqual(junit_problems(junit_cases(junit), expected), [], out[-2000:])

    def test_checker_flags_a_junit_file_that_drops_a_test(self):
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            junit.write_text('<testsuite><testcase name="a" status="run"/>'
                             '<testcase name="b" status="fail"><failure message=""/></testcase></testsuite>')
            problems = junit_problems(junit_cases(junit), {"a": "passed", "b": "passed", "c": None})
            self.assertIn("c: missing from the JUnit file", problems)
            self.assertIn("b: failed in the JUnit file, passed by ctest", problems)


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
