"""support.py - what the tests of `leaklab threads` share: a held blocked_workers to dump
(started, waited for through its `hold` event, never through a sleep, and always killed),
the target's ptrace and scheduler state from /proc, and bounded waits.

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
DUMPER = BUILD / "threadcheck" / "outside" / "threaddump"
BLOCKED = BUILD / "scenarios" / "blocked_workers"
EXIT_SKIP = 77


def require_dumper():
    """Exit 77 (CTest "Not Run") when threaddump or the scenario is not built here."""
    for path, why in ((DUMPER, "threaddump is not built (it needs libdw-dev: scripts/install-deps)"),
                      (BLOCKED, "blocked_workers is not built")):
        if not os.access(path, os.X_OK):
            print(f"SKIP: {why}: {path} missing (LEAKLAB_BUILD_DIR={BUILD})")
            sys.exit(EXIT_SKIP)


def read_line(stream, deadline, what):
    """One line from a pipe, waiting at most until the deadline (time.monotonic())."""
    buf = b""
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {what} within the time allowed (read so far: {buf!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"end of output before {what} (read so far: {buf!r})")
        buf += chunk
    return buf.decode(errors="replace")


class HeldTarget:
    """blocked_workers --variant leaky --hold forever, from start to its `hold` event
    (every worker blocked on the channel); killed on exit from the with-block."""

    def __init__(self, scale="quick", extra=(), start_timeout=120):
        self.argv = [str(BLOCKED), "--variant", "leaky", "--scale", scale, "--hold", "forever", *extra]
        self.start_timeout = start_timeout

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        try:
            deadline = time.monotonic() + self.start_timeout
            while True:
                event = json.loads(read_line(self.proc.stdout, deadline, "'hold' event"))
                if event["event"] == "hold":
                    return self
                if event["event"] == "end":
                    raise AssertionError(f"the target ended before holding: {event}")
        except BaseException:
            self.kill()
            raise

    def __exit__(self, *exc):
        self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass  # a tracer still holds its zombie threads; the test's own failure says why
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def end_and_status(self, timeout=60):
        """SIGTERM, then the `end` event and the exit status: only a running (not stopped,
        not traced-and-stopped) process can answer."""
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(read_line(self.proc.stdout, deadline, "'end' event after SIGTERM"))
            if event["event"] == "end":
                return event, self.proc.wait(timeout=max(1, deadline - time.monotonic()))


def tasks(pid):
    """{tid: (state letter, TracerPid)} of every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        out[int(tid)] = (fields["State"].split()[0], int(fields["TracerPid"]))
    return out


def traced_or_stopped(pid):
    """The threads that are traced, or stopped (t: traced stop, T: job-control stop)."""
    return {tid: st for tid, st in tasks(pid).items() if st[1] != 0 or st[0] in "tT"}


def wait_until(condition, timeout, what, interval=0.05):
    """Polls condition() until it is true or the timeout passes (then fails, naming what).
    Used for kernel-side state changes that signal no event we could wait on."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def leaklab_threads(*args, timeout=300, **kw):
    return subprocess.run([*LEAKLAB, "threads", *map(str, args), "--build-dir", str(BUILD)],
                          capture_output=True, text=True, timeout=timeout, **kw)
