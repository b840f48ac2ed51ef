"""The harness's --hold-at PHASE[:SECONDS] (common/harness.c), which the memstats tests hold
their targets with: a bad value exits 2 naming the option; PHASE:1 holds once at the first
phase of that name, says so in a `hold` event (phase and the allocator's figures), then goes
on to the end with exit 0; a phase the run never reaches holds nothing (the control: the
same run with a phase it does reach has a `hold` event); given twice, it holds at each
phase in the run's order, right after that phase (a retention kernel's runs hold at its
truth's baseline and phase), and a fifth time exits 2; SIGTERM during a hold ends the run
with exit 0 and an `end` event. Exits 77 when delayed_exit is not built."""
import json
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import Held, binary, require  # noqa: E402

TARGET = binary("delayed_exit")
QUICK = ["--scale", "quick", "--workers", "20", "--hold-ms", "0"]


def run(*args):
    return subprocess.run([str(TARGET), *QUICK, *args], capture_output=True, text=True, timeout=120)


def events(out):
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


class HoldAt(unittest.TestCase):
    def test_bad_values_exit_2(self):
        for value in (":3", "exited:0", "exited:x", "exited:-1", "x" * 64):
            r = run("--hold-at", value)
            self.assertEqual(r.returncode, 2, value)
            self.assertIn("--hold-at", r.stderr)

    def test_holds_once_then_goes_on(self):
        r = run("--hold-at", "idle:1", "--idle-ms", "30", "--idle-step-ms", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        seen = events(r.stdout)
        holds = [e for e in seen if e["event"] == "hold"]
        self.assertEqual(len(holds), 1, holds)  # `idle` comes three times, the hold once
        self.assertEqual((holds[0]["phase"], holds[0]["seconds"]), ("idle", 1))
        self.assertIn("in_use_bytes", holds[0]["alloc"])
        names = [e["event"] if e["event"] != "phase" else e["phase"] for e in seen]
        self.assertEqual(names[names.index("hold") - 1], "idle")
        self.assertEqual(seen[-1]["event"], "end")
        self.assertEqual(seen[-1]["status"], 0)

    def test_holds_at_each_phase_given(self):
        # given in the other order than the run reaches them: each holds at its own phase
        r = run("--hold-at", "exited:1", "--hold-at", "allocated:1")
        self.assertEqual(r.returncode, 0, r.stderr)
        seen = events(r.stdout)
        self.assertEqual([e["phase"] for e in seen if e["event"] == "hold"], ["allocated", "exited"])
        for i, e in enumerate(seen):  # each hold right after the first phase event of its name
            if e["event"] == "hold":
                self.assertEqual((seen[i - 1]["event"], seen[i - 1]["phase"]), ("phase", e["phase"]))
                self.assertEqual(next(p for p in seen if p.get("phase") == e["phase"]), seen[i - 1])
        r = run(*[a for p in ("a", "b", "c", "d", "e") for a in ("--hold-at", f"{p}:1")])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("more than 4 times", r.stderr)

    def test_a_phase_never_reached_holds_nothing(self):
        r = run("--hold-at", "nonesuch")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("hold", [e["event"] for e in events(r.stdout)])
        r = run("--hold-at", "exited:1")  # control
        self.assertIn("hold", [e["event"] for e in events(r.stdout)])

    def test_sigterm_ends_a_hold(self):
        with Held(TARGET, "allocated", QUICK) as held:
            event, status = held.end_and_status()
            self.assertEqual((event["status"], status), (0, 0), event)


if __name__ == "__main__":
    require(TARGET)
    unittest.main()
