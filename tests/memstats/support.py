"""support.py - what the tests of `leaklab memstats` share: a scenario held at a named phase
(`--hold-at PHASE`: started, waited for through its `hold` event, never through a sleep, and
always killed), the in-process figures of that phase, memstats run as a command, and the
checks (checks.py) applied to what it printed.

The build directory comes from LEAKLAB_BUILD_DIR (CTest sets it)."""
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD = Path(os.environ.get("LEAKLAB_BUILD_DIR", REPO / "build")).resolve()
LEAKLAB = [sys.executable, str(REPO / "scripts" / "leaklab.py")]
EXIT_SKIP = 77

sys.path.insert(0, str(REPO))


def _threads_support():
    """tests/threads/support.py, loaded under a name of its own (both folders call theirs support)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("threads_support", HERE.parent / "threads" / "support.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


read_line = _threads_support().read_line  # one line from a pipe, bounded by a deadline


def binary(scenario, allocator="glibc"):
    return BUILD / "scenarios" / (scenario if allocator == "glibc" else f"{scenario}-{allocator}")


def require(*paths):
    """Exit 77 (CTest "Not Run") when a binary is not built here (an allocator not installed)."""
    for path in paths:
        if not os.access(path, os.X_OK):
            print(f"SKIP: {path} is not built (LEAKLAB_BUILD_DIR={BUILD})")
            sys.exit(EXIT_SKIP)


class Held:
    """A scenario run with --hold-at PHASE (until a signal), from its start to the `hold`
    event; `phase` is the event of the phase it holds at, `hold` the hold event (with the
    allocator's figures as the hold began). Killed on leaving the with-block."""

    def __init__(self, path, phase, args=(), start_timeout=240):
        self.argv = [str(path), "--hold-at", phase, *args]
        self.phase_name = phase
        self.start_timeout = start_timeout

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self.phase = None
        try:
            deadline = time.monotonic() + self.start_timeout
            while True:
                event = json.loads(read_line(self.proc.stdout, deadline, "'hold' event"))
                if event["event"] == "phase" and event["phase"] == self.phase_name:
                    self.phase = event
                if event["event"] == "hold":
                    if event.get("phase") != self.phase_name or self.phase is None or "alloc" not in event:
                        raise AssertionError(f"held elsewhere than at {self.phase_name}: {event}")
                    self.hold = event
                    return self
                if event["event"] == "end":
                    raise AssertionError(f"the target ended before holding: {event}")
        except BaseException:
            self.kill()
            raise

    def __exit__(self, *exc):
        self.kill()

    @property
    def alloc(self):
        """The allocator's in-process figures as the hold began (the hold event's: the phase's
        own were read while the harness was building that phase's event)."""
        return self.hold["alloc"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def end_and_status(self, timeout=60):
        """SIGTERM, then the `end` event and the exit status: only a running process answers."""
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(read_line(self.proc.stdout, deadline, "'end' event after SIGTERM"))
            if event["event"] == "end":
                return event, self.proc.wait(timeout=max(1, deadline - time.monotonic()))


def memstats(pid, *args, timeout=120):
    return subprocess.run([*LEAKLAB, "memstats", str(pid), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def memstats_json(pid):
    run = memstats(pid, "--json")
    if run.returncode != 0:
        raise AssertionError(f"memstats {pid} exited {run.returncode}: {run.stderr}")
    return json.loads(run.stdout)
