"""`go tool pprof` (Debian's golang-go) reads what `leaklab threads --pprof FILE` writes:
on a held quick-scale blocked_workers, -top shows the 1,000 workers under `worker` and
`ll_chan_recv`, and -traces prints their stack.

Exits 77 when go, threaddump or blocked_workers is missing."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import HeldTarget, leaklab_threads, require_dumper, traced_or_stopped  # noqa: E402

QUICK_WORKERS = 1000
GO = shutil.which("go")


def go_pprof(*args):
    # pprof may want a home for its cache and settings: a temporary one, not the user's.
    env = dict(os.environ, HOME=tempfile.gettempdir(), PPROF_TMPDIR=tempfile.gettempdir())
    return subprocess.run([GO, "tool", "pprof", *args], capture_output=True, text=True, timeout=300, env=env)


class GoToolPprof(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.profile = Path(cls.tmp.name) / "threads.pb.gz"
        with HeldTarget("quick") as target:
            r = leaklab_threads(target.pid, "--pprof", cls.profile)
            assert r.returncode == 0, r.stderr
            assert traced_or_stopped(target.pid) == {}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_top_shows_the_workers_under_worker(self):
        r = go_pprof("-top", str(self.profile))
        self.assertEqual(r.returncode, 0, r.stderr)
        head = r.stdout[:3000]
        self.assertIn("Type: threads", head)
        self.assertIn(f"of {QUICK_WORKERS + 1} total", head)
        # rows: flat flat% sum% cum cum% name
        cum = {m.group(2): int(m.group(1)) for m in
               re.finditer(r"^\s*\d+\s+\S+%\s+\S+%\s+(\d+)\s+\S+%\s+(\S+)", r.stdout, re.M)}
        self.assertEqual(cum.get("worker"), QUICK_WORKERS, head)
        self.assertEqual(cum.get("ll_chan_recv"), QUICK_WORKERS, head)
        self.assertEqual(cum.get("start_thread"), QUICK_WORKERS, head)

    def test_traces_group_identical_stacks_like_a_goroutine_profile(self):
        # pprof prints a trace per sample; Go 1.19's merged identical samples of a lone
        # profile, Go 1.24's does not (Debian 13 printed 1,001 traces when leaklab wrote a
        # sample per thread): the grouping is the profile's own, as in a goroutine profile.
        r = go_pprof("-traces", str(self.profile))
        self.assertEqual(r.returncode, 0, r.stderr)
        traces = [t for t in r.stdout.split("-----------+") if re.search(r"^\s+\d+\s+\S", t, re.M)]
        self.assertEqual(len(traces), 2, r.stdout[:3000])  # the workers, and main
        workers = next(t for t in traces if "ll_chan_recv" in t)
        # the count, on the leaf frame: glibc 2.36's futex wait, or 2.41's __syscall_cancel_arch
        # (every cancellable call goes through it since 2.41) with the futex wait under it
        self.assertRegex(workers, rf"(?m)^\s+{QUICK_WORKERS}\s+(__futex|__syscall_cancel_arch\b)")
        self.assertIn("__futex_abstimed_wait_common", workers)
        self.assertRegex(workers, r"(?s)ll_chan_recv\s+worker\s+start_thread")
        self.assertRegex(workers, r"syscall:\s+futex")


if __name__ == "__main__":
    if not GO:
        print("SKIP: go is not installed (Debian: golang-go, in scripts/install-deps)")
        sys.exit(77)
    require_dumper()
    unittest.main(verbosity=2)
