"""Tests of the C harness (common/) through a real scenario binary: strict
option validation (exit 2), refused threads (exit 99, nothing left behind),
the watchdog, --hold and its signals, the events' shape, and the canary.

The binary directory comes from LEAKLAB_BUILD_DIR (set by CTest)."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("LEAKLAB_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BLOCKED = os.path.join(BUILD, "scenarios", "blocked_workers")


def run(*args, timeout=120, **kw):
    return subprocess.run([BLOCKED, *args], capture_output=True, text=True, timeout=timeout, **kw)


def events(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def processes_named(name):
    """PIDs of live (non-zombie) processes whose command name is `name`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        if comm == name[:15] and state != "Z":
            pids.append(int(pid))
    return pids


class BadInput(unittest.TestCase):
    """Each bad value exits 2 and the message names the option and its range."""

    cases = [
        (["--workers", "abc"], "--workers: 'abc' is not a number; expected an integer in [1, 100000]"),
        (["--workers", "-1"], "--workers: '-1' is negative; expected an integer in [1, 100000]"),
        (["--workers", "0"], "--workers: 0 is out of range; expected an integer in [1, 100000]"),
        (["--workers", "12x"], "--workers: '12x' is not a number"),
        (["--workers", ""], "--workers: '' is not a number"),
        (["--workers", "99999999999999999999"], "--workers: 99999999999999999999 is out of range"),
        (["--elements", "99999999999999"], "--elements: 99999999999999 is out of range; expected an integer in [1, 100000000]"),
        (["--workers", "100000", "--elements", "100000000"], "the payload would be 80000000000000 bytes"),
        (["--bogus"], "unknown option '--bogus'"),
        (["--workers"], "option '--workers' needs a value"),
        (["--variant", "leakyy"], "--variant: unknown variant 'leakyy'; accepted: leaky, fixed"),
        (["--scale", "huge"], "--scale: 'huge' is not a scale; accepted: quick, seed"),
        (["--timeout", "0"], "--timeout: 0 is out of range"),
        (["--hold", "soon"], "--hold: 'soon' is not a number"),
        (["--guard-pages", "maybe"], "--guard-pages: 'maybe'; accepted: on, off"),
        (["stray"], "unexpected argument 'stray'"),
    ]

    def test_each_bad_value_exits_2_naming_option_and_range(self):
        for args, message in self.cases:
            with self.subTest(args=args):
                r = run(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(message, r.stderr)
                self.assertEqual(r.stdout, "", "no event may be printed before validation passes")

    def test_heap_profile_needs_the_tcmalloc_build(self):
        r = run("--heap-profile", "/tmp")
        self.assertEqual(r.returncode, 2)
        self.assertIn("blocked_workers-tcmalloc", r.stderr)

    def test_help_is_generated_from_the_options_table(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for text in ("--workers", "default 10000 / 1000; range [1, 100000]", "--elements", "leaky", "fixed",
                     "--hold SECONDS|forever", "exit codes"):
            self.assertIn(text, r.stdout)


class Events(unittest.TestCase):
    def test_start_phase_end_lines(self):
        r = run("--scale", "quick", "--workers", "20", "--elements", "100", "--variant", "fixed")
        self.assertEqual(r.returncode, 0, r.stderr)
        evs = events(r.stdout)
        self.assertEqual([e["event"] for e in evs], ["start", "phase", "phase", "end"])
        start, steady, end_phase, end = evs
        self.assertEqual(start["params"], {"workers": 20, "elements": 100})
        self.assertEqual(start["payload_bytes"], 20 * 100 * 8)
        self.assertEqual(start["pid"] > 0, True)
        self.assertEqual(steady["phase"], "steady")
        self.assertEqual(steady["snapshot"]["threads"], 21)
        self.assertEqual(end_phase["snapshot"]["threads"], 1)
        for key in ("rss_bytes", "rss_anon_bytes", "hwm_bytes", "lazyfree_bytes", "fds", "alloc", "census"):
            self.assertIn(key, steady["snapshot"])
        census = steady["snapshot"]["census"]
        self.assertEqual(census[0], {"state": "S", "wchan": census[0]["wchan"], "syscall": "futex", "count": 20})
        self.assertEqual(end, {"event": "end", "t": end["t"], "status": 0, "reason": "ran as designed"})

    def test_events_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "events.jsonl")
            r = run("--workers", "3", "--elements", "10", "--events", path)
            self.assertEqual(r.returncode, 0)
            self.assertEqual(r.stdout, "")
            with open(path) as f:
                self.assertEqual([e["event"] for e in events(f.read())], ["start", "phase", "end"])

    def test_unwritable_events_file_is_usage_error(self):
        r = run("--events", "/nonexistent-dir/events.jsonl")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot open '/nonexistent-dir/events.jsonl'", r.stderr)


class Hold(unittest.TestCase):
    def test_sigterm_during_hold_ends_cleanly(self):
        p = subprocess.Popen([BLOCKED, "--workers", "50", "--elements", "10", "--hold", "forever"],
                             stdout=subprocess.PIPE, text=True)
        seen = []
        for line in p.stdout:  # bounded: the process holds only after its last phase
            seen.append(json.loads(line))
            if seen[-1]["event"] == "hold":
                break
        self.assertEqual(seen[-1], {"event": "hold", "t": seen[-1]["t"], "seconds": -1})
        with open(f"/proc/{p.pid}/status") as f:
            self.assertIn("Threads:\t51\n", f.read(), "the workers stay blocked during the hold")
        p.send_signal(signal.SIGTERM)
        rest = p.stdout.read()
        p.stdout.close()
        self.assertEqual(p.wait(timeout=30), 0)
        self.assertEqual(json.loads(rest)["reason"], "hold ended by a signal")

    def test_sigterm_before_the_end_is_a_failure(self):
        """A signal that ends the run early must not look like a pass."""
        p = subprocess.Popen([BLOCKED, "--workers", "100000", "--elements", "1", "--guard-pages", "off"],
                             stdout=subprocess.PIPE, text=True)
        p.stdout.readline()  # the start event: the workers are being started now
        p.send_signal(signal.SIGTERM)
        rest = p.stdout.read()
        p.stdout.close()
        self.assertEqual(p.wait(timeout=60), 99)
        self.assertIn("interrupted by a signal before the end", rest)

    def test_finite_hold(self):
        r = run("--workers", "5", "--elements", "10", "--hold", "1")
        self.assertEqual(r.returncode, 0)
        self.assertEqual([e["event"] for e in events(r.stdout)], ["start", "phase", "hold", "end"])


class Refusals(unittest.TestCase):
    @unittest.skipUnless(shutil.which("setpriv") and shutil.which("prlimit"), "needs setpriv and prlimit (util-linux)")
    def test_refused_thread_creation_exits_99_and_leaves_nothing(self):
        # root ignores RLIMIT_NPROC, so the run drops to nobody first.
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               "prlimit", "--nproc=200", BLOCKED, "--workers", "1000", "--elements", "10"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 99, r.stderr)
        self.assertRegex(r.stderr, r"pthread_create failed after \d+ threads started by this run: "
                                   r"Resource temporarily unavailable")
        self.assertIn("ulimit -u", r.stderr)
        end = events(r.stdout)[-1]
        self.assertEqual((end["event"], end["status"]), ("end", 99))
        self.assertEqual(processes_named("blocked_workers"), [], "a refused run must leave no process behind")

    def test_watchdog_exits_99(self):
        # 100,000 threads cannot be started within one second on this machine's
        # two cores (measured: 10,000 take ~4 s), so the watchdog fires first.
        r = run("--workers", "100000", "--elements", "1", "--timeout", "1", "--guard-pages", "off")
        self.assertEqual(r.returncode, 99, r.stderr)
        self.assertIn("watchdog", r.stderr)
        self.assertIn("no end after --timeout 1 s", events(r.stdout)[-1]["reason"])


if __name__ == "__main__":
    unittest.main()
