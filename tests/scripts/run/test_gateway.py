"""Tests of scripts/gateway.py (the rw_gateway driver) with a fake gateway and a fake client."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path
from unittest import mock

import fakes  # noqa: F401  (puts the repo, with the `scripts` package, on sys.path)
from scripts.run import gateway
from scripts.run import runner

# How long a drive may take before the test calls it a hang: far beyond what
# the fakes need (well under a second of CPU), within scripts.unit's TIMEOUT.
HANG_GUARD_S = 240

# A stand-in for rw_gateway: events like the harness's, then waits for the
# driver's word on stdin and records it. FAKE_GW_MODE=die ends before listening.
# With FAKE_GW_GATE=FILE it writes nothing until FILE exists: the test creates
# it once the driver has had its first look, so that look sees the file as
# the test left it (not a sleep that hopes the driver is quicker).
FAKE_GATEWAY = textwrap.dedent("""\
    import json, os, sys, time
    events, mode = sys.argv[1], os.environ.get("FAKE_GW_MODE", "ok")
    def emit(**ev):
        with open(events, "a") as f:
            f.write(json.dumps(ev) + "\\n")
    gate, deadline = os.environ.get("FAKE_GW_GATE"), time.monotonic() + 3600  # the test's kill ends it first
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    emit(event="start", pid=os.getpid(), params={"connections": 7, "frames": 3})
    if mode == "die":
        emit(event="end", status=99, reason="listening on 127.0.0.1:0 failed")
        sys.exit(99)
    emit(event="listening", port=4242)
    line = sys.stdin.readline()
    emit(event="word", word=line.strip())
    """)

# A stand-in for rw_client: writes its argv as the summary, exits FAKE_CLIENT_EXIT.
FAKE_CLIENT = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    argv = sys.argv[1:]
    with open(argv[argv.index("--json") + 1], "w") as f:
        json.dump({{"argv": argv}}, f)
    sys.exit(int(os.environ.get("FAKE_CLIENT_EXIT", "0")))
    """)


class Drive(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)
        client = self.tmp / "build" / "scenarios" / "rw_client"
        client.parent.mkdir(parents=True)
        client.write_text(FAKE_CLIENT.format(python=sys.executable))
        client.chmod(0o755)
        (self.tmp / "fake_gateway.py").write_text(FAKE_GATEWAY)
        self.events = self.tmp / "events.jsonl"
        self.procs = []

    def tearDown(self):
        for proc in self.procs:
            gateway.kill_group(proc)
            proc.stdin.close()
        self._tmp.cleanup()

    def popen(self, argv, **env):
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, start_new_session=True, env={**os.environ, **env})
        self.procs.append(proc)
        return proc

    def start(self, **env):
        return self.popen([sys.executable, str(self.tmp / "fake_gateway.py"), str(self.events)], **env)

    def events_named(self, name):
        return [e for e in gateway.read_events(self.events) if e.get("event") == name]

    def test_runs_the_client_on_the_port_then_says_load_done(self):
        gw = self.start()
        result = gateway.drive(gw, self.events, self.tmp / "build", self.tmp, timeout_s=HANG_GUARD_S)
        self.assertEqual(gw.wait(timeout=HANG_GUARD_S), 0)
        argv = result["client"]["argv"]
        self.assertEqual(result["port"], 4242)
        self.assertEqual(argv[argv.index("--port") + 1], "4242")
        self.assertEqual(argv[argv.index("--connections") + 1], "7")  # from the gateway's params
        self.assertEqual(argv[argv.index("--frames") + 1], "3")
        self.assertEqual(self.events_named("word")[0]["word"], "load-done")
        self.assertTrue((self.tmp / "client.txt").read_text().startswith("# "))

    def test_a_previous_runs_events_are_ignored(self):
        self.events.write_text(json.dumps({"event": "start", "pid": 1, "params": {}}) + "\n"
                               + json.dumps({"event": "listening", "port": 1}) + "\n")
        gate = self.tmp / "gate"
        looks = []
        read_events = gateway.read_events

        def first_look_then_open_the_gate(path):
            looks.append(read_events(path))
            gate.touch()
            return looks[-1]

        gw = self.start(FAKE_GW_GATE=str(gate))
        with mock.patch.object(gateway, "read_events", first_look_then_open_the_gate):
            result = gateway.drive(gw, self.events, self.tmp / "build", self.tmp, timeout_s=HANG_GUARD_S)
        gw.wait(timeout=HANG_GUARD_S)
        self.assertEqual([e["event"] for e in looks[0]], ["start", "listening"], "the first look saw only the stale run")
        self.assertEqual(result["port"], 4242)

    def test_a_failed_client_kills_both_and_raises(self):
        gw = self.start()
        os.environ["FAKE_CLIENT_EXIT"] = "1"
        try:
            with self.assertRaisesRegex(gateway.DriveError, "client exited 1"):
                gateway.drive(gw, self.events, self.tmp / "build", self.tmp, timeout_s=HANG_GUARD_S)
        finally:
            del os.environ["FAKE_CLIENT_EXIT"]
        self.assertIsNotNone(gw.poll(), "the gateway was left running")
        self.assertEqual(runner.live_group_members(gw.pid), [])
        self.assertEqual(self.events_named("word"), [])  # load-done was never said

    def test_a_gateway_that_ends_early_is_reported_with_its_reason(self):
        gw = self.start(FAKE_GW_MODE="die")
        with self.assertRaisesRegex(gateway.DriveError, "listening on 127.0.0.1:0 failed"):
            gateway.drive(gw, self.events, self.tmp / "build", self.tmp, timeout_s=HANG_GUARD_S)

    def test_no_listening_event_in_time(self):
        # A gateway that never writes, for longer than CTest waits: only the
        # driver's timeout ends this (then it kills the gateway's group), so
        # no wall-clock bound is needed, nor one that a slow machine breaks.
        gw = self.popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with self.assertRaisesRegex(gateway.DriveError, "no 'start' event"):
            gateway.drive(gw, self.events, self.tmp / "build", self.tmp, timeout_s=1)
        self.assertEqual(gw.poll(), -signal.SIGKILL, "the driver killed the silent gateway")


class Verdict(unittest.TestCase):
    def args(self, **over):
        return type("Args", (), {"hostile": True, "variant": "fixed", **over})()

    def report(self, **over):
        return {"rejects": 3, "resets": 1, "connections": 6, "sessions_leaked": 0, **over}

    CLIENT = {"client_exit": 0, "client": {"expected_rejects": 3, "expected_resets": 1, "connections": 6}}

    def test_hostile_counts_that_match_pass(self):
        self.assertEqual(gateway.verdict(self.args(), self.report(), self.CLIENT), gateway.EXIT_OK)

    def test_a_reject_the_gateway_did_not_count_fails(self):
        r = self.report(rejects=2)
        self.assertEqual(gateway.verdict(self.args(), r, self.CLIENT), gateway.EXIT_FAILED)
        self.assertIn("rejects = 2", r["problems"][0])

    def test_a_session_left_after_hostile_clients_fails(self):
        r = self.report(sessions_leaked=1)
        self.assertEqual(gateway.verdict(self.args(), r, self.CLIENT), gateway.EXIT_FAILED)

    def test_a_failed_client_case_fails(self):
        bad = {"client_exit": 1, "client": {**self.CLIENT["client"], "cases": {"half_close": "no EOF"}}}
        self.assertEqual(gateway.verdict(self.args(), self.report(), bad), gateway.EXIT_FAILED)


if __name__ == "__main__":
    unittest.main()
