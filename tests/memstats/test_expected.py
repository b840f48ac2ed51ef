"""expected/delayed_exit.toml's memstats checks, each fed a wrong snapshot.

Every native quick run of delayed_exit holds 3 s at `exited` while a [[driver]] runs
`leaklab memstats PID --json` into the run directory (memstats-exited.json); the comparer
reads it as memstats.PATH and the hold event as hold.PATH (scripts/expect/comparer.py,
RunData._held). This test makes one real run per variant under glibc (`leaklab run`), sees
every memstats check pass on it, then edits a copy of its snapshot so that each check in
turn must fail: the items no longer adding up to RSS, a remainder over 1 %, an unsettled
walk, a heap in use or free off the in-process figures by 5 %, the resident / returned split
swapped. A run without a snapshot is an ERROR, never a pass.

Exits 77 when delayed_exit is not built, or when memstats could not walk glibc's heap here
(no libc6-dbg: the snapshot says so)."""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import BUILD, REPO, binary, require  # noqa: E402  (support puts REPO on sys.path)

from scripts.expect import comparer  # noqa: E402

EXPECTED = REPO / "expected" / "delayed_exit.toml"
SNAPSHOT = "memstats-exited.json"
RUNS = {}  # variant -> run directory (made once, in setUpModule)
TMP = None


def setUpModule():
    global TMP
    TMP = tempfile.mkdtemp(prefix="leaklab-memstats-expected-")
    for variant in ("retained", "returned"):
        done = subprocess.run([str(REPO / "leaklab"), "run", "delayed_exit", "--variant", variant,
                               "--scale", "quick", "--out", TMP], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "LEAKLAB_BUILD_DIR": str(BUILD)}, stdin=subprocess.DEVNULL)
        runs = sorted(Path(TMP).glob(f"delayed_exit.{variant}.native.glibc-*"))
        if done.returncode != 0 or not runs:
            raise AssertionError(f"leaklab run delayed_exit --variant {variant} exited {done.returncode}:\n"
                                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        RUNS[variant] = runs[-1]
        snap = json.loads((runs[-1] / SNAPSHOT).read_text())
        if not snap.get("glibc"):
            raise unittest.SkipTest(f"memstats did not walk glibc's heap here: {snap.get('notes')}")


def tearDownModule():
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def memstats_rows(run_dir):
    """{check text: Row} of the checks that read memstats (or the hold event)."""
    verdict = comparer.compare(run_dir, EXPECTED)
    return {r.check: r for r in verdict.rows if "memstats." in r.check or "hold." in r.check}


class TheDriver(unittest.TestCase):
    """The [[driver]] step that takes the snapshot: it walks the held process, never stops it,
    and always lets the scenario go on (its `send`), a failed walk leaving no snapshot."""

    def run_driver(self, pid_of):
        import re
        import signal
        from scripts.expect import expected
        step = next(d for d in expected.load(EXPECTED).drivers if d.on == "hold")
        self.assertEqual(step.send, "go-on", "the hold must end when the walk is done")
        with tempfile.TemporaryDirectory() as run_dir:
            target = subprocess.Popen(["sleep", "60"])
            try:
                values = {"python": sys.executable, "leaklab": str(REPO / "scripts" / "leaklab.py"),
                          "pid": str(pid_of(target)), "run_dir": run_dir, "phase": "exited"}
                argv = [re.sub(r"\{([\w.]+)\}", lambda m: values[m.group(1)], a) for a in step.run]
                done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
                status = Path(f"/proc/{target.pid}/status").read_text()
                state = re.search(r"State:\s+(\S)", status).group(1)
                tracer = re.search(r"TracerPid:\s+(\d+)", status).group(1)
                snap = Path(run_dir) / "memstats-exited.json"
                return done, state, tracer, snap.exists() and json.loads(snap.read_text())
            finally:
                target.send_signal(signal.SIGKILL)
                target.wait()

    def test_walks_a_held_process_and_leaves_it_running(self):
        done, state, tracer, snap = self.run_driver(lambda target: target.pid)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn(state, "tT", "the driver left the process stopped")
        self.assertEqual(tracer, "0")
        self.assertTrue(snap and snap["rss_bytes"] > 0)

    def test_a_failed_walk_leaves_no_snapshot_and_still_lets_it_go_on(self):
        done, state, tracer, snap = self.run_driver(lambda target: 0x3fffffff)  # no such process
        self.assertEqual(done.returncode, 0, "the driver must exit 0 so that its send ends the hold")
        self.assertIn("failed", done.stderr)
        self.assertFalse(snap)


class MemstatsChecks(unittest.TestCase):
    def edited(self, variant, edit):
        """The memstats rows of a copy of the variant's run whose snapshot `edit` changed."""
        tmp = Path(tempfile.mkdtemp(dir=TMP))
        run = tmp / RUNS[variant].name
        shutil.copytree(RUNS[variant], run)
        if edit is None:
            (run / SNAPSHOT).unlink()
        else:
            snap = json.loads((run / SNAPSHOT).read_text())
            edit(snap)
            (run / SNAPSHOT).write_text(json.dumps(snap))
        return memstats_rows(run)

    def assert_verdicts(self, rows, failing, verdict="FAIL"):
        """The rows named in `failing` have that verdict, every other row passes."""
        for check in failing:
            self.assertIn(check, rows)
        for check, row in rows.items():
            want = verdict if check in failing else "PASS"
            self.assertEqual(row.verdict, want, f"{check}: observed {row.observed} ({row.detail})")

    def test_real_runs_pass(self):
        for variant in RUNS:
            rows = memstats_rows(RUNS[variant])
            self.assertEqual(len(rows), 9, sorted(rows))  # 3 for every allocator, 4 glibc, 2 the split
            self.assert_verdicts(rows, [])

    def test_items_not_adding_up(self):
        def edit(s):
            s["items"][0]["bytes"] += 4096
        self.assert_verdicts(self.edited("retained", edit), ["memstats.items_sum == memstats.rss_bytes"])

    def test_remainder_over_one_percent(self):
        def edit(s):  # the sum still holds: a line lost 2 % of RSS to the remainder
            moved = s["rss_bytes"] // 50
            s["items"][1]["bytes"] -= moved
            s["items"][-1]["bytes"] += moved
        self.assert_verdicts(self.edited("retained", edit), ["memstats.remainder <= 0.01 * memstats.rss_bytes"])

    def test_negative_remainder_counts_too(self):
        def edit(s):
            moved = s["rss_bytes"] // 50
            s["items"][1]["bytes"] += moved
            s["items"][-1]["bytes"] -= moved
        self.assert_verdicts(self.edited("returned", edit), ["memstats.remainder <= 0.01 * memstats.rss_bytes"])

    def test_unsettled(self):
        def edit(s):
            s["settled"] = False
        self.assert_verdicts(self.edited("retained", edit), ["memstats.settled == 1"])

    def test_heap_in_use_off(self):
        for factor, check in ((1.05, "memstats.go.HeapInuse <= 1.01 * hold.alloc.in_use_bytes"),
                              (0.95, "memstats.go.HeapInuse >= 0.99 * hold.alloc.in_use_bytes")):
            def edit(s, factor=factor):
                s["go"]["HeapInuse"] = round(s["go"]["HeapInuse"] * factor)
            self.assert_verdicts(self.edited("retained", edit), [check])

    def test_heap_free_off(self):
        for factor, check in ((1.05, "memstats.go.HeapIdle <= 1.01 * hold.alloc.free_held_bytes"),
                              (0.95, "memstats.go.HeapIdle >= 0.99 * hold.alloc.free_held_bytes")):
            def edit(s, factor=factor):  # the split moves with it: keep the resident part as it was
                grown = round(s["go"]["HeapIdle"] * factor) - s["go"]["HeapIdle"]
                s["go"]["HeapIdle"] += grown
                s["go"]["HeapReleased"] += grown
            self.assert_verdicts(self.edited("returned", edit), [check])

    def test_retained_split_swapped(self):
        def edit(s):  # as if the kept burst had been returned
            s["go"]["HeapReleased"] = s["go"]["HeapIdle"]
        self.assert_verdicts(self.edited("retained", edit), [
            "memstats.go.HeapIdle - memstats.go.HeapReleased >= 0.3 * payload_bytes",
            "memstats.go.HeapReleased <= 0.2 * payload_bytes"])

    def test_returned_split_swapped(self):
        def edit(s):  # as if malloc_trim had returned nothing
            s["go"]["HeapReleased"] = 0
        self.assert_verdicts(self.edited("returned", edit), [
            "memstats.go.HeapReleased >= 0.5 * payload_bytes",
            "memstats.go.HeapIdle - memstats.go.HeapReleased <= 0.2 * payload_bytes"])

    def test_no_snapshot_is_an_error(self):
        rows = self.edited("retained", None)
        self.assert_verdicts(rows, [c for c in rows if "memstats." in c], verdict="ERROR")


if __name__ == "__main__":
    require(binary("delayed_exit"))
    unittest.main()
