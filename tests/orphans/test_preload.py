"""orphans preloaded (LD_PRELOAD=liborphans.so ./program): the check at exit,
its options, the report on a signal, and its manners (nothing printed when
there is nothing to say, a bad option named with exit 2)."""

import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

LIB = os.environ["ORPHANS_LIB"]
PROGRAM = os.environ["EXIT_PROGRAM"]


def run(args, options=None, stdin=None, timeout=120):
    env = dict(os.environ, LD_PRELOAD=LIB)
    env.pop("ORPHANS_OPTIONS", None)
    if options is not None:
        env["ORPHANS_OPTIONS"] = options
    return subprocess.run([PROGRAM, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


class AtExit(unittest.TestCase):
    def test_orphans_reported_exit_23(self):
        done = run(["3", "2"])
        self.assertEqual(done.returncode, 23, done.stderr)
        self.assertRegex(done.stderr, r"orphans at exit: 3 leaked threads in 1 group")
        self.assertIn("3 leaked threads @ wait_forever", done.stderr)
        self.assertRegex(done.stderr, r"created by start <- main")
        self.assertRegex(done.stderr, r"SUMMARY: orphans: 3 leaked threads in 1 groups pinning \d+ bytes")

    def test_wakeable_only_is_silent(self):
        done = run(["0", "3"])
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stderr, "", "no output unless asked")

    def test_verbosity_says_none(self):
        done = run(["0", "2"], "verbosity=1")
        self.assertEqual(done.returncode, 0)
        self.assertRegex(done.stderr, r"no leaked threads \(3 threads, 2 blocked, all wakeable\)")

    def test_exitcode_option(self):
        self.assertEqual(run(["1", "0"], "exitcode=0").returncode, 0)
        self.assertEqual(run(["1", "0"], "exitcode=42").returncode, 42)

    def test_at_exit_off(self):
        done = run(["2", "0"], "at_exit=0")
        self.assertEqual(done.returncode, 0)
        self.assertEqual(done.stderr, "")

    def test_log_path(self):
        with tempfile.TemporaryDirectory() as d:
            done = run(["2", "1"], f"log_path={d}/report")
            self.assertEqual(done.returncode, 23)
            self.assertEqual(done.stderr, "")
            files = os.listdir(d)
            self.assertEqual(len(files), 1, files)
            self.assertRegex(files[0], r"^report\.\d+$")
            text = open(os.path.join(d, files[0])).read()
            self.assertIn("2 leaked threads @ wait_forever", text)

    def test_bad_option_exit_2(self):
        done = run(["1", "0"], "exitcode=300")
        self.assertEqual(done.returncode, 2)
        self.assertIn("exitcode=300: expected an integer in [0, 255]", done.stderr)
        done = run(["1", "0"], "frobnicate=1")
        self.assertEqual(done.returncode, 2)
        self.assertIn("unknown option 'frobnicate'", done.stderr)

    def test_help(self):
        done = run(["0", "0"], "help=1")
        self.assertEqual(done.returncode, 0)
        self.assertIn("ORPHANS_OPTIONS: KEY=VALUE pairs", done.stderr)
        self.assertIn("report_signal=N", done.stderr)


def read_reports(folder, count, deadline):
    """Polls the report file (an observation, bounded) until it holds `count` reports."""
    text = ""
    while time.monotonic() < deadline:
        for name in os.listdir(folder):
            text = open(os.path.join(folder, name)).read()
        if text.count("SUMMARY") >= count:
            break
        time.sleep(0.01)
    return text


class OnSignal(unittest.TestCase):
    def test_report_signal_goes_on_running(self):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, LD_PRELOAD=LIB,
                       ORPHANS_OPTIONS=f"report_signal={int(signal.SIGUSR2)}:at_exit=0:log_path={d}/r")
            proc = subprocess.Popen([PROGRAM, "2", "1", "hold"], env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                self.assertEqual(proc.stdout.readline().strip(), "parked")
                text = ""
                for n in (1, 2):
                    os.kill(proc.pid, signal.SIGUSR2)
                    text = read_reports(d, n, time.monotonic() + 60)
                    self.assertEqual(text.count("SUMMARY"), n, text)
                out, err = proc.communicate("go\n", timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            self.assertEqual(proc.returncode, 0, err)
            self.assertEqual(len(re.findall(r"orphans on signal \d+: 2 leaked threads", text)), 2, text)


if __name__ == "__main__":
    unittest.main()
