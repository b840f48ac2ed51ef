"""Tests of the runner and the command line with a fake scenario binary: run dirs, cleanup, exit codes."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

import fakes
from scripts.expect import expected
from scripts.run import runner
from scripts.run import timeline

LEAKLAB = [sys.executable, str(fakes.SCRIPTS / "leaklab.py")]
HANG_GUARD_S = 240  # within scripts.unit's CTest TIMEOUT (300 s), far beyond what a fake run takes


class Base(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)
        self.build = fakes.make_build(self.tmp, allocators=("glibc",))

    def tearDown(self):
        self._tmp.cleanup()

    def spec(self, *options, **over):
        # timeout_s is a hang guard only: the fake ends in well under a
        # second of CPU, but on a loaded machine its wall time is anyone's.
        args = dict(scenario="fake_scn", variant="leaky", scale="quick", out=self.tmp / "runs",
                    build_dir=self.build, timeout_s=HANG_GUARD_S, options=list(options))
        args.update(over)
        return runner.RunSpec(**args)


class Execute(Base):
    def test_run_directory_contents(self):
        run_dir, info = runner.execute(self.spec())
        self.assertTrue(run_dir.name.startswith("fake_scn.leaky.native.glibc-"))
        for name in ("command.txt", "run.json", "events.jsonl", "stdout.txt", "stderr.txt",
                     "timeline.csv", "phases.csv"):
            self.assertTrue((run_dir / name).is_file(), name)
        self.assertEqual(info["exit_code"], 0)
        self.assertEqual(info["runner_status"], 0)
        saved = json.loads((run_dir / "run.json").read_text())
        for key in ("wall_s", "child_user_s", "child_sys_s", "sampler_cpu_s", "runner_cpu_s", "versions", "argv"):
            self.assertIn(key, saved)
        self.assertIn("--events", saved["argv"])
        self.assertEqual((run_dir / "stdout.txt").read_text(), "stdout of the fake\n")
        phases = (run_dir / "phases.csv").read_text().splitlines()
        self.assertEqual(phases[0], "t_s,phase,in_use_bytes,rss_bytes")
        self.assertEqual(phases[1].split(",")[1:], ["steady", "4096", "1000"])
        listing = "\n".join(runner.listing(run_dir))
        self.assertIn("command.txt", listing)
        self.assertIn("exact command line", listing)

    def test_two_runs_in_one_second_get_two_directories(self):
        first, _ = runner.execute(self.spec())
        second, _ = runner.execute(self.spec())
        self.assertNotEqual(first, second)

    def test_command_txt_reproduces_the_run(self):
        run_dir, _ = runner.execute(self.spec("--mode", "ok"))
        command = (run_dir / "command.txt").read_text().splitlines()[-1]
        (run_dir / "events.jsonl").unlink()
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=HANG_GUARD_S)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn('"phase": "steady"', (run_dir / "events.jsonl").read_text())

    def test_fixed_layout_starts_without_randomization(self):
        if runner.layout_fixed(os.getpid()):
            self.skipTest("this test process already runs without address-space randomization")
        for fixed in (True, False):
            run_dir, info = runner.execute(self.spec("--mode", "environ", fixed_layout=fixed))
            persona = int(json.loads((run_dir / "environ.json").read_text())["personality"], 16)
            self.assertEqual(bool(persona & 0x0040000), fixed, hex(persona))
            self.assertNotIn(runner.FIXED_LAYOUT_REFUSED, info["notes"])
            self.assertEqual("&& setarch -R " in (run_dir / "command.txt").read_text(), fixed)

    def test_a_preload_starts_the_run_with_it(self):
        with self.assertRaisesRegex(runner.SystemFailure, "liballocstats.so is not built"):
            runner.execute(self.spec("--mode", "environ", preload=["allocstats"]))
        library = self.build / runner.PRELOADS["allocstats"]
        library.parent.mkdir(parents=True)
        library.write_bytes(b"")  # the fake reads only the name (ld.so skips an empty file, on stderr)
        run_dir, info = runner.execute(self.spec("--mode", "environ", preload=["allocstats"]))
        self.assertEqual(json.loads((run_dir / "environ.json").read_text())["LD_PRELOAD"], str(library))
        self.assertIn(f"LD_PRELOAD={library}", (run_dir / "command.txt").read_text())
        with self.assertRaisesRegex(runner.UsageError, "native runs only"):
            runner.prepare(self.spec(preload=["allocstats"], tool="memcheck"))

    def test_no_orphans_survive(self):
        run_dir, info = runner.execute(self.spec("--mode", "orphan"))
        pid = int((run_dir / "orphan.pid").read_text())
        self.assertFalse(fakes.pid_alive(pid), "the scenario's grandchild outlived the run")
        self.assertEqual(info["exit_code"], 0)

    def test_timeout_kills_the_group_and_is_99(self):
        # The fake hangs longer than CTest waits for this whole suite, so the
        # run can only have ended by the runner's timeout: no wall-clock bound
        # is needed to tell (one would fail on a slow enough machine). On a
        # loaded machine the 1 s may run out before the fake has written a
        # line, so the group comes from the runner's own kill, not the events.
        with mock.patch.object(runner, "kill_group", wraps=runner.kill_group) as kill_group:
            run_dir, info = runner.execute(self.spec("--mode", "hang", timeout_s=1))
        self.assertEqual(info["runner_status"], runner.EXIT_SYSTEM)
        self.assertIn("timeout", " ".join(info["runner_errors"]))
        self.assertIn(info["signal"], ("SIGTERM", "SIGKILL"), "the scenario was killed, not left to finish")
        events = (run_dir / "events.jsonl").read_text().splitlines()
        self.assertNotIn("end", [json.loads(line)["event"] for line in events if line.endswith("}")])
        group = kill_group.call_args_list[0].args[0]
        self.assertEqual(runner.group_members(group), [])

    def test_a_stop_signal_only_notes_the_request(self):
        # SIGTERM once landed inside Thread.start() of the sampler, and the
        # exception its handler raised there broke threading's lock ("release
        # unlocked lock", exit 1, not 99). The handler must not raise at all:
        # call it from that very spot, as the signal did, and the run must
        # still stop cleanly with the runner's own Terminated.
        raised = []
        real_start = timeline.Sampler.start
        handler_before = signal.getsignal(signal.SIGTERM)

        def start_with_a_sigterm(sampler):
            try:
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            except BaseException as e:
                raised.append(e)
            real_start(sampler)

        with mock.patch.object(timeline.Sampler, "start", start_with_a_sigterm):
            with self.assertRaises(runner.Terminated):
                runner.execute(self.spec("--mode", "hang"))
        self.assertEqual(raised, [], "the handler raised")
        run_json = json.loads(next((self.tmp / "runs").glob("*/run.json")).read_text())
        self.assertEqual(run_json["runner_status"], runner.EXIT_SYSTEM)
        self.assertIn("runner terminated by a signal", run_json["runner_errors"])
        self.assertEqual(signal.getsignal(signal.SIGTERM), handler_before, "the handler was not put back")

    def test_scenario_failure_exit_code_is_recorded(self):
        _, info = runner.execute(self.spec("--mode", "fail"))
        self.assertEqual(info["exit_code"], 99)
        self.assertEqual(info["runner_status"], 0)

    def test_driver_writes_the_word_after_the_event(self):
        step = expected.DriverStep(expected.Selector(), on="listening",
                                   run=["sh", "-c", "echo port {port} workers {params.workers}"], send="done")
        run_dir, info = runner.execute(self.spec("--mode", "driver", drivers=[step]))
        self.assertEqual(info["exit_code"], 0, (run_dir / "stderr.txt").read_text())
        self.assertEqual((run_dir / "driver-1.txt").read_text(), "port 4242 workers 4\n")
        self.assertIn("wrote 'done'", " ".join(info["driver"]))

    def test_each_hold_gets_the_step_for_its_phase(self):
        steps = [expected.DriverStep(expected.Selector(), on="hold", run=["sh", "-c", "echo {phase}"], send="go-on",
                                     phase=p) for p in ("a", "b")]
        run_dir, info = runner.execute(self.spec("--mode", "holds", drivers=steps))
        self.assertEqual((info["exit_code"], info["runner_status"]), (0, 0), info["runner_errors"])
        self.assertEqual([(run_dir / f"driver-{i}.txt").read_text() for i in (1, 2)], ["a\n", "b\n"])

    def test_a_hold_no_step_acts_on_stops_the_run_with_an_error(self):
        step = expected.DriverStep(expected.Selector(), on="hold", send="go-on", phase="a")
        t0 = time.monotonic()
        _, info = runner.execute(self.spec("--mode", "holds", drivers=[step]))
        self.assertLess(time.monotonic() - t0, HANG_GUARD_S / 2, "the second hold waited for the timeout")
        self.assertEqual(info["runner_status"], runner.EXIT_SYSTEM)
        self.assertIn("held at 'b' for the driver, but no [[driver]] step acts on that hold",
                      " ".join(info["runner_errors"]))

    def test_failing_driver_step_is_99(self):
        step = expected.DriverStep(expected.Selector(), on="listening", run=["sh", "-c", "exit 3"], send="done")
        _, info = runner.execute(self.spec("--mode", "driver", drivers=[step]))
        self.assertEqual(info["runner_status"], runner.EXIT_SYSTEM)
        self.assertIn("driver #1", " ".join(info["runner_errors"]))

    def test_helpers_are_not_scenarios(self):
        helper = self.build / "scenarios" / "fake_client"
        helper.write_text("#!/bin/sh\necho 'usage: fake_client --port N'\n")
        helper.chmod(0o755)
        self.assertEqual(runner.built_scenarios(self.build), {"fake_scn": ["glibc"]})

    def test_missing_glibc_binary_is_99(self):
        with self.assertRaises(runner.SystemFailure) as cm:
            runner.execute(self.spec(scenario="nothing_built"))
        self.assertIn("build first", str(cm.exception))

    def test_missing_allocator_binary_is_skip(self):
        with self.assertRaises(runner.Skip) as cm:
            runner.execute(self.spec(allocator="jemalloc"))
        self.assertIn("jemalloc", str(cm.exception))

    def test_missing_tool_is_skip(self):
        fakes.make_build(self.tmp, allocators=("tcmalloc",))
        with mock.patch("scripts.tools.heapprof.pprof_path", return_value=None):
            with self.assertRaises(runner.Skip):
                runner.execute(self.spec(tool="heapprof", allocator="tcmalloc"))
        with mock.patch("scripts.tools.memcheck.valgrind_path", return_value=None):
            with self.assertRaises(runner.Skip):
                runner.execute(self.spec(tool="memcheck"))

    def test_tool_allocator_mismatch_is_usage(self):
        with self.assertRaises(runner.UsageError):
            runner.execute(self.spec(tool="heapprof", allocator="glibc"))

    def test_merge_options(self):
        self.assertEqual(runner.merge_options(["--workers", "200", "--elements", "9"], ["--workers", "5"]),
                         ["--elements", "9", "--workers", "5"])
        self.assertEqual(runner.merge_options(["--canary"], []), ["--canary"])


class Timeline(unittest.TestCase):
    def test_read_status_of_self(self):
        rss, threads = timeline.read_status(os.getpid())
        self.assertGreater(rss, 0)
        self.assertGreaterEqual(threads, 1)
        self.assertIsNone(timeline.read_status(2 ** 22 + 1))

    def test_event_tail_waits_for_complete_lines(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "events.jsonl"
            tail = timeline.EventTail(path)
            self.assertEqual(tail.read(), [])
            with open(path, "w") as f:
                f.write('{"event":"start"}\n{"event":"ph')
                f.flush()
                self.assertEqual(tail.read(), [{"event": "start"}])
                f.write('ase","phase":"x"}\n')
                f.flush()
                self.assertEqual(tail.read(), [{"event": "phase", "phase": "x"}])
            tail.close()

    def test_sampler_rows_and_exact_phase_time(self):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            events = Path(tmp) / "events.jsonl"
            seen = []
            sampler = timeline.Sampler(os.getpid(), events, tmp, 0.01, t0, seen.append)
            sampler.start()
            events.write_text(json.dumps({"event": "start", "t": 0.0, "t0_monotonic_s": t0 + 1.0}) + "\n" +
                              json.dumps({"event": "phase", "t": 0.5, "phase": "steady",
                                          "snapshot": {"rss_bytes": 7, "alloc": {"in_use_bytes": 5}}}) + "\n")
            # Wait for what is asserted below (six samples, both events read)
            # rather than for a time that holds only where the sampler thread
            # gets the CPU often enough; the deadline is a hang guard only.
            deadline = time.monotonic() + 60
            while (sampler.samples < 6 or len(seen) < 2) and time.monotonic() < deadline:
                time.sleep(0.01)
            sampler.stop()
            rows = Path(tmp, "timeline.csv").read_text().splitlines()
            self.assertEqual(rows[0], "t_s,rss_bytes,threads")
            self.assertGreater(len(rows), 5)
            self.assertEqual(Path(tmp, "phases.csv").read_text().splitlines()[1], "1.5000,steady,5,7")
            self.assertEqual([e["event"] for e in seen], ["start", "phase"])
            self.assertGreater(sampler.cpu_s, 0)

    def test_script_marks_each_phase_change_once(self):
        script = timeline.gnuplot_script('a "title"', [("0.5", "steady", "100"), ("0.6", "idle", ""),
                                                       ("0.7", "idle", ""), ("0.8", "end", "")])
        self.assertEqual(script.count("set arrow"), 3)
        self.assertIn('"steady"', script)
        self.assertIn('a \\"title\\"', script)
        self.assertIn("axes x1y2", script)

    def test_missing_gnuplot_is_a_note(self):
        with tempfile.TemporaryDirectory() as tmp:
            with mock.patch("shutil.which", return_value=None):
                note = timeline.draw_svg(tmp, "t")
        self.assertIn("gnuplot not found", note)

    @unittest.skipUnless(timeline.shutil.which("gnuplot"), "gnuplot not installed")
    def test_svg_is_drawn(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "timeline.csv").write_text("t_s,rss_bytes,threads\n0.0,1048576,1\n0.1,2097152,5\n")
            Path(tmp, "phases.csv").write_text("t_s,phase,in_use_bytes,rss_bytes\n0.05,steady,1048576,2097152\n")
            self.assertIsNone(timeline.draw_svg(tmp, "test"))
            self.assertIn("<svg", Path(tmp, "timeline.svg").read_text())


class CommandLine(Base):
    def cli(self, *args, expected_file=None):
        argv = LEAKLAB + list(args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=self.tmp,
                              env=fakes.env_without_build_dir())

    def expected(self, text):
        return fakes.write_expected(self.tmp, text)

    def test_unknown_scenario_is_2_and_lists_known(self):
        r = self.cli("run", "no_such", "--build-dir", str(self.build))
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown scenario 'no_such'", r.stderr)
        self.assertIn("fake_scn", r.stderr)

    def test_bad_option_values_are_2(self):
        for args, word in [(["--scale", "huge"], "--scale"), (["--tool", "callgrind"], "--tool"),
                           (["--allocator", "mimalloc"], "--allocator"), (["--interval-ms", "0"], "--interval-ms"),
                           (["--variant", "sideways"], "--variant")]:
            with self.subTest(args=args):
                r = self.cli("run", "fake_scn", "--build-dir", str(self.build), *args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertIn(word, r.stderr)

    def test_run_prints_dir_and_listing(self):
        r = self.cli("run", "fake_scn", "--variant", "leaky", "--scale", "quick", "--build-dir", str(self.build),
                     "--out", str(self.tmp / "runs"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("run dir: ", r.stdout)
        self.assertIn("events.jsonl", r.stdout)

    def test_check_pass_fail_and_compare_only(self):
        good = self.expected('[[check]]\nvariant = "leaky"\nphase = "steady"\nexpect = "threads == workers + 1"\n')
        r = self.cli("check", "fake_scn", "--variant", "leaky", "--build-dir", str(self.build),
                     "--out", str(self.tmp / "runs"), "--expected", str(good))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("PASS", r.stdout)
        run_dir = Path(r.stdout.split("run dir: ")[1].split()[0])
        self.assertTrue((run_dir / "verdict.json").is_file())

        bad = self.expected('[[check]]\nvariant = "leaky"\nphase = "steady"\nexpect = "threads == workers"\n')
        r = self.cli("compare-only", str(run_dir), "--expected", str(bad))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("FAIL", r.stdout)

    def test_check_without_applicable_expectations_is_1(self):
        exp = self.expected('[[check]]\nvariant = "fixed"\nphase = "steady"\nexpect = "threads == 1"\n')
        r = self.cli("check", "fake_scn", "--variant", "leaky", "--build-dir", str(self.build),
                     "--out", str(self.tmp / "runs"), "--expected", str(exp))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no expectations for", r.stdout)
        self.assertFalse((self.tmp / "runs").exists(), "nothing should run without expectations")

    def test_check_passes_scenario_failure_through(self):
        exp = self.expected('[[check]]\nvariant = "leaky"\nphase = "steady"\nexpect = "threads >= 1"\n')
        r = self.cli("check", "fake_scn", "--variant", "leaky", "--build-dir", str(self.build),
                     "--out", str(self.tmp / "runs"), "--expected", str(exp), "--", "--mode", "fail")
        self.assertEqual(r.returncode, 99, r.stdout)
        self.assertIn("exit_code == 0", r.stdout)
        self.assertIn("refused", r.stdout)  # the stderr line explains the failure

    def test_check_skips_missing_allocator(self):
        exp = self.expected('[[check]]\nvariant = "leaky"\nphase = "steady"\nexpect = "threads >= 1"\n')
        r = self.cli("check", "fake_scn", "--variant", "leaky", "--allocator", "tcmalloc", "--build-dir",
                     str(self.build), "--out", str(self.tmp / "runs"), "--expected", str(exp))
        self.assertEqual(r.returncode, 77, r.stdout + r.stderr)
        self.assertIn("SKIP", r.stdout)

    def start_hanging_run(self):
        proc = subprocess.Popen(LEAKLAB + ["run", "fake_scn", "--build-dir", str(self.build), "--out",
                                           str(self.tmp / "runs"), "--", "--mode", "hang"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=fakes.env_without_build_dir())
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline:
            events = list((self.tmp / "runs").glob("*/events.jsonl"))
            first = events[0].read_text().partition("\n") if events else ("", "", "")
            if first[1]:  # a whole line, not one caught half written
                return proc, json.loads(first[0])["pid"]
            time.sleep(0.05)
        proc.kill()
        self.fail("the fake scenario never started")

    def test_sigterm_to_the_runner_kills_the_scenario(self):
        proc, pid = self.start_hanging_run()
        proc.terminate()
        out, err = proc.communicate(timeout=HANG_GUARD_S)
        self.assertEqual(proc.returncode, 99, out + err)
        self.assertFalse(fakes.pid_alive(pid))
        run_json = json.loads(next((self.tmp / "runs").glob("*/run.json")).read_text())
        self.assertEqual(run_json["runner_status"], 99)

    def test_sigkill_to_the_runner_still_kills_the_scenario(self):
        proc, pid = self.start_hanging_run()
        proc.kill()
        proc.communicate(timeout=HANG_GUARD_S)
        deadline = time.monotonic() + 60  # a hang guard: the kernel's SIGKILL usually lands within milliseconds
        while fakes.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(fakes.pid_alive(pid), "PR_SET_PDEATHSIG did not take the scenario down")

    def test_list(self):
        r = self.cli("list", "--build-dir", str(self.build))
        self.assertEqual(r.returncode, 0)
        self.assertIn("fake_scn", r.stdout)
        self.assertIn("A fake scenario for tests.", r.stdout)
        r = self.cli("list", "--variants", "fake_scn", "--build-dir", str(self.build))
        self.assertEqual(r.stdout.split(), ["leaky", "fixed"])


if __name__ == "__main__":
    unittest.main()
