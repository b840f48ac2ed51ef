#!/usr/bin/env python3
"""The host corpus (issue 20): programs nobody in leaklab wrote, or small ones
that stand for a class of them, each run plain and then under a detector, and
compared byte for byte. A detector that changes what its host does (exit
status, stdout, stderr, a system call's result, a signal) is broken, whatever
it reports.

Three detectors, three ways of running a case:

  threadcheck, orphans  preloaded (LD_PRELOAD=lib): stdout identical, and
        either everything identical (the case expects `clean`), or stderr is
        the plain run's stderr followed by the library's documented report and
        nothing else, with the library's exit code (66 / 23) (the case
        expects `reports`: threads really outlive main / are proven leaked).
  threads    `./leaklab threads PID --json` on the running target, at each of
        its rendezvous (the target says "ready" on a pipe and waits for "go":
        HOST_OBSERVE=READY_FD,GO_FD), or, for programs that read stdin, each
        time the target has read a chunk and waits for the next. The observed
        run must print and exit exactly as the plain run; the targets check
        their own system calls (no EINTR, no short count) and say so.

Every run has a time bound; a run that leaves a process of its session behind
fails. Usage:

  run_corpus.py --list                       the cases (for tests/host/CMakeLists.txt)
  run_corpus.py --case C --tool T [paths]    one test: exit 0 pass, 1 fail, 77 skip, 99 harness
  run_corpus.py --table FILE [paths]         every case x tool; the Markdown table into FILE

paths: --host-bin DIR (host_cases, host_omp, host_ctor), --threadcheck-lib,
--orphans-lib, --leaklab (the entry point; LEAKLAB_BUILD_DIR must name the
build). Exit codes as everywhere in leaklab: 0 pass, 1 a detector changed its
host, 2 bad usage, 77 skipped (a program is missing), 99 harness failure.
"""
import argparse
import array
import ctypes
import dataclasses
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_SKIP, EXIT_HARNESS = 0, 1, 2, 77, 99
TOOLS = ("threadcheck", "orphans", "threads")
REPORT_EXIT = {"threadcheck": 66, "orphans": 23}   # docs/threadcheck.md, docs/orphans.md
RUN_LIMIT_S = 120          # one run of one program (many_threads measured at 2-7 s under load 25)
DUMP_LIMIT_S = 120         # one `leaklab threads`
CHUNK_WAIT_S = 60          # a stdin-fed target reaching its next read
LEFTOVER_GRACE_S = 5       # processes of the run's session still alive that long after it: left behind
# The detectors' own variables: a run must not inherit them from the caller.
SCRUBBED_ENV = ("LD_PRELOAD", "THREADCHECK_OPTIONS", "ORPHANS_OPTIONS", "HOST_OBSERVE", "HOST_FAKE")


class Skip(Exception):
    """The case cannot run here (a program is missing): exit 77 with the reason."""


class HarnessFailure(Exception):
    """The plain run itself misbehaved, or the machine refused: exit 99."""


# ---------------------------------------------------------------- the cases

@dataclasses.dataclass
class Case:
    name: str
    what: str                       # one line: the class of real programs it stands for
    argv: list                      # {host} {python} {src} {work} are filled in
    expect: dict                    # "threadcheck"/"orphans" -> "clean" | "reports", with why
    observe: str = "protocol"       # "protocol" (HOST_OBSERVE) or "stdin" (fed in chunks)
    stdin_chunks: object = None     # callable -> list of bytes, for "stdin" cases and plain feeding
    env: dict = dataclasses.field(default_factory=dict)
    needs: tuple = ()               # programs that must be installed
    setup: object = None            # callable(work_dir): prepares files, run plain (no detector)
    serial: bool = False            # needs the machine to itself (many threads)
    closes_stderr: bool = False     # the program closes fd 2 before exit: a report cannot be seen
    status: int = 0                 # the plain run's exit status


def _text_lines(n, seed=1):
    """Deterministic lines of words (xz and sort input): a small LCG, no randomness."""
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
    x, out = seed, []
    for i in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        out.append(f"{words[x % 10]} {x:010d} {words[(x >> 8) % 10]} line {i}\n")
    return "".join(out).encode()


def _chunks(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


def _git_repo(work):
    repo = work / "repo"
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env, timeout=60)
    for i in range(40):
        (repo / f"file{i:02d}.txt").write_text("".join(
            f"line {j} of file {i}{' needle' if (i * 7 + j) % 13 == 0 else ''}\n" for j in range(200)))
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env, timeout=60)


CLEAN = "clean"
REPORTS = "reports"
OUTLIVES = (REPORTS, "threads outlive main: the documented report, exit 66")
FD_WAIT = (CLEAN, "waits on a file descriptor or a signal: never proven leaked")
JOINED = (CLEAN, "every thread is joined before exit")
RUNTIME_POOL = (CLEAN, "a runtime's own idle pool: a background thread, ignored by default")


def _c(name, what, tc=OUTLIVES, orph=FD_WAIT, **kw):
    return Case(name, what, ["{host}/host_cases", name], {"threadcheck": tc, "orphans": orph}, **kw)


def _xz_sandboxes_itself():
    """True when xz locks itself in a Linux Landlock sandbox reading stdin and writing
    stdout: xz 5.5.1 and later (its NEWS: "Added support for Linux Landlock"; Debian 12's
    5.4.1 has none, Debian 13's 5.8.1 has it) on a kernel that offers Landlock
    (landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) gives its ABI)."""
    xz = shutil.which("xz")
    if not xz:
        return False
    try:
        out = subprocess.run([xz, "--robot", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    m = re.search(r"^XZ_VERSION=(\d+)$", out, re.M)  # 5.5.1alpha: 50050010 (major, minor, patch, stability)
    if not m or int(m.group(1)) < 50050010:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(444, None, 0, 1) >= 1  # SYS_landlock_create_ruleset (x86-64), version query


# xz's idle workers outlive main unless xz sandboxes itself: then the check at exit is
# denied /proc/self/task by the sandbox and cannot run; its message ("the check at exit
# could not run") goes to the stderr xz has closed, and xz exits as without it. Measured
# in the Debian 13 lane (xz 5.8.1): exit 0 under threadcheck, and exit 66 again, as on
# Debian 12, when a preloaded shim makes the Landlock system calls fail with ENOSYS.
XZ_THREADCHECK = (
    (CLEAN, "xz >= 5.5.1 sandboxes itself with Landlock (stdin to stdout): the check at exit is denied "
            "/proc/self/task and cannot run; its message goes to the stderr xz closed (tuklib_exit)")
    if _xz_sandboxes_itself() else
    (REPORTS, "xz exits without joining its two idle workers (no lzma_end): "
              "exit 66; it closed stderr first (tuklib_exit), so no report can show"))


CASES = [
    Case("python_joined", "CPython: four threads on a queue, all joined",
         ["{python}", "{src}/py_cases.py", "joined"], {"threadcheck": JOINED, "orphans": JOINED},
         needs=("python3",)),
    Case("python_daemon", "CPython: daemon threads waiting on an Event at exit",
         ["{python}", "{src}/py_cases.py", "daemon"],
         {"threadcheck": OUTLIVES, "orphans": (CLEAN, "the Event's lock is reachable from the interpreter")},
         needs=("python3",)),
    Case("python_pool_subprocess", "CPython: ThreadPoolExecutor whose task runs a subprocess",
         ["{python}", "{src}/py_cases.py", "pool_subprocess"], {"threadcheck": JOINED, "orphans": JOINED},
         needs=("python3",)),
    Case("openmp", "an OpenMP program (libgomp keeps its pool at exit)", ["{host}/host_omp"],
         {"threadcheck": RUNTIME_POOL, "orphans": (CLEAN, "the pool is reachable from libgomp's data")},
         env={"OMP_NUM_THREADS": "4"}, needs=("host:host_omp",)),
    Case("xz", "xz -T2: compresses 2.4 MB from stdin on two threads",
         ["xz", "-T2", "-1", "--block-size=262144", "-c"],
         {"threadcheck": XZ_THREADCHECK,
          "orphans": (CLEAN, "the idle workers wait on the coder, reachable from xz's data")},
         observe="stdin", stdin_chunks=lambda: _chunks(_text_lines(40000), 600000), needs=("xz",),
         closes_stderr=True),
    # sort starts a second thread only for at least 131,072 lines in one buffer
    # (coreutils' SUBTHREAD_LINES_HEURISTIC): 160,000 lines, a 64 MiB buffer.
    Case("sort", "sort --parallel=2 on 160,000 lines (two threads sort them)",
         ["sort", "--parallel=2", "-S", "64M", "-T", "{work}"], {"threadcheck": JOINED, "orphans": JOINED},
         observe="stdin", stdin_chunks=lambda: _chunks(_text_lines(160000, seed=7), 2000000),
         env={"LC_ALL": "C"}, needs=("sort",)),
    Case("cmake", "cmake -P: a script that pipes stdin through cat and sort (libuv, children)",
         ["cmake", "-P", "{src}/cmake_case.cmake"], {"threadcheck": JOINED, "orphans": JOINED},
         observe="stdin", stdin_chunks=lambda: _chunks(_text_lines(300, seed=3), 6000), needs=("cmake",)),
    Case("git", "git grep --threads=2 -f - (patterns from stdin) over 40 files",
         ["git", "-C", "{work}/repo", "grep", "--threads=2", "-n", "-f", "-"],
         {"threadcheck": JOINED, "orphans": JOINED}, observe="stdin",
         stdin_chunks=lambda: [b"need", b"le\n"], env={"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"},
         setup=_git_repo, needs=("git",)),
    Case("bash_fork_exec", "bash: a read loop that forks and execs /bin/echo per line",
         ["bash", "-c", 'while IFS= read -r line; do /bin/echo "got: $line"; done'],
         {"threadcheck": (CLEAN, "single-threaded, and so is every child"), "orphans": (CLEAN, "no thread")},
         observe="stdin", stdin_chunks=lambda: _chunks(b"".join(f"line {i}\n".encode() for i in range(30)), 80),
         needs=("bash",)),
    Case("valgrind_none", "valgrind --tool=none running host_cases pipe_read (the library in the client)",
         ["valgrind", "--tool=none", "-q", "{host}/host_cases", "pipe_read"],
         {"threadcheck": OUTLIVES, "orphans": (CLEAN, "Valgrind's malloc: unsupported, silently")},
         needs=("valgrind",)),
    _c("forking_server", "a server thread in accept that forks a child per connection"),
    _c("sigwait_full", "a signal-handling thread in sigwait on a full set"),
    _c("signalfd", "a thread reading a signalfd"),
    _c("pipe_read", "a thread blocked in read on a pipe"),
    _c("pipe_write", "a thread blocked in one 1 MiB write into a full pipe"),
    _c("socket_read", "a thread blocked in read on a Unix stream socket"),
    _c("socket_write", "a thread blocked in one 1 MiB write into a full Unix socket"),
    _c("epoll_wait", "a thread in epoll_wait with no timeout"),
    _c("poll", "a thread in poll with no timeout"),
    _c("nanosleep", "a thread in nanosleep (30 s)", orph=(CLEAN, "a sleep ends by itself: never leaked")),
    _c("sigtimedwait", "a thread in sigtimedwait (60 s)"),
    _c("small_stack_exit", "a thread with a 16 KiB stack calls exit() while main joins it",
       tc=(REPORTS, "main is still alive when another thread exits: reported, exit 66"),
       orph=(CLEAN, "main waits on a thread that runs")),
    _c("fork_during_report", "a thread forks and execs 50 children (sh -c 'exit 7') while the check at exit runs",
       orph=(CLEAN, "the forker runs or waits on a child")),
    _c("cancel_during_report", "a thread cancels 20 threads while the check at exit runs",
       orph=(CLEAN, "the canceller runs or waits on a pipe")),
    _c("sig_dfl", "a program that resets every signal (the detectors' too) to SIG_DFL"),
    _c("block_all_signals", "a program that blocks every signal in every thread"),
    Case("ctor_thread", "a library that starts a thread from its constructor (joined in its destructor)",
         ["{host}/host_ctor"], {"threadcheck": (CLEAN, "the library's destructor joins it"),
                                "orphans": (CLEAN, "the thread waits on the library's global")}),
    _c("orphaned_mutex", "a thread waiting on a heap mutex nobody can reach (a real leak)",
       orph=(REPORTS, "proven leaked: the documented report, exit 23")),
    _c("many_threads", "10,000 threads blocked in read on one pipe", serial=True),
]
BY_NAME = {c.name: c for c in CASES}


# ---------------------------------------------------------------- running one program

@dataclasses.dataclass
class Run:
    status: object          # int exit status, "signal N", or "timeout"
    stdout: bytes
    stderr: bytes
    seconds: float
    leftovers: list         # processes of its session still alive after it ended
    dumps: list = dataclasses.field(default_factory=list)   # (exit, threads seen, message) per look
    rounds: int = 0


def _session_members(sid):
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _reap_session(sid):
    """Gives what the run left in its session LEFTOVER_GRACE_S to end by itself
    (a child forked just before its parent exited is still finishing its own
    exit), then kills what is left and returns their descriptions."""
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while _session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.01)    # polling the process table, bounded
    left = []
    for pid in _session_members(sid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
            wchan = Path(f"/proc/{pid}/wchan").read_text().strip() or "-"
            left.append(f"{pid} ({Path(f'/proc/{pid}/comm').read_text().strip()}, state {state}, "
                        f"parent {ppid}, wchan {wchan})")
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while _session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.01)    # SIGKILL takes effect asynchronously: wait until they are gone (or zombies)
    return left


def _status(returncode):
    return returncode if returncode >= 0 else f"signal {-returncode}"


def _waiting_for_input(proc):
    """True when the target has read everything written to its stdin so far
    and no thread of it or of its descendants runs: it waits for more (in
    read, poll or select: xz polls a non-blocking stdin)."""
    unread = array.array("i", [0])
    fcntl.ioctl(proc.stdin.fileno(), termios.FIONREAD, unread)
    if unread[0]:
        return False
    todo, seen = [proc.pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                stat = (task / "stat").read_text()
                if stat[stat.rindex(")") + 2] not in "SD":
                    return False
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    return True


class Runner:
    def __init__(self, paths, run_limit=RUN_LIMIT_S):
        self.paths = paths
        self.run_limit = run_limit

    def argv(self, case, work):
        fill = {"host": str(self.paths.host_bin), "python": self.paths.python, "src": str(HERE), "work": str(work)}
        return [a.format(**fill) for a in case.argv]

    def env(self, case, extra=None):
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env.update(case.env)
        env.update(extra or {})
        return env

    def check_needs(self, case):
        for prog in case.needs:
            if prog.startswith("host:"):
                if not (self.paths.host_bin / prog[5:]).exists():
                    raise Skip(f"{prog[5:]} is not built (OpenMP not found when configuring?)")
            elif prog == "python3":
                if not self.paths.python:
                    raise Skip("no system python3 (/usr/bin/python3)")
            elif not shutil.which(prog):
                raise Skip(f"{prog} is not installed (scripts/install-deps installs it)")

    def run(self, case, work, rendezvous=False, extra_env=None, looker=None):
        """Runs the case's program once. rendezvous: with the observed protocol
        (HOST_OBSERVE) for a "protocol" case; looker(pid) is called at each
        rendezvous (None: the plain run, which keeps the same rendezvous)."""
        out_path, err_path = work / "out", work / "err"
        env = self.env(case, extra_env)
        ready_r = ready_w = go_r = go_w = None
        pass_fds = ()
        if case.observe == "protocol" and rendezvous:
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
            env["HOST_OBSERVE"] = f"{ready_w},{go_r}"
            pass_fds = (ready_w, go_r)
        chunks = case.stdin_chunks() if case.stdin_chunks else None
        start = time.monotonic()
        deadline = start + self.run_limit
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(self.argv(case, work), stdin=subprocess.PIPE if chunks else subprocess.DEVNULL,
                                    stdout=out, stderr=err, env=env, cwd=work, pass_fds=pass_fds,
                                    start_new_session=True)
        result = Run(None, b"", b"", 0.0, [])
        try:
            if pass_fds:
                os.close(ready_w)
                os.close(go_r)
                self._protocol(proc, ready_r, go_w, deadline, looker, result)
            elif chunks is not None:
                self._feed(proc, chunks, deadline, looker, result)
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            result.status = _status(proc.returncode)
        except subprocess.TimeoutExpired:
            result.status = "timeout"
        finally:
            for fd in (ready_r, go_w):
                if fd is not None:
                    os.close(fd)
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            result.leftovers = _reap_session(proc.pid)
        result.seconds = time.monotonic() - start
        result.stdout, result.stderr = out_path.read_bytes(), err_path.read_bytes()
        return result

    def _protocol(self, proc, ready_r, go_w, deadline, looker, result):
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([ready_r], [], [], left)[0]:
                raise subprocess.TimeoutExpired(proc.args, self.run_limit)
            chunk = os.read(ready_r, 64)
            if not chunk:
                return          # the target closed its end: it is done with rounds
            buf += chunk
            while b"\n" in buf:
                _, buf = buf.split(b"\n", 1)
                result.rounds += 1
                if looker:
                    result.dumps.append(looker(proc.pid))
                os.write(go_w, b"go\n")

    def _feed(self, proc, chunks, deadline, looker, result):
        """Writes stdin a chunk at a time; before each next chunk, waits until
        the target reads stdin again and (observed) looks at it."""
        for i, chunk in enumerate(chunks):
            if i > 0:
                chunk_deadline = min(deadline, time.monotonic() + CHUNK_WAIT_S)
                while not _waiting_for_input(proc) and proc.poll() is None:
                    if time.monotonic() > chunk_deadline:
                        raise subprocess.TimeoutExpired(proc.args, self.run_limit)
                    time.sleep(0.002)   # polling the kernel's view of the target, not synchronising by time
                result.rounds += 1
                if looker and proc.poll() is None:
                    result.dumps.append(looker(proc.pid))
            try:
                proc.stdin.write(chunk)
                proc.stdin.flush()
            except BrokenPipeError:
                break
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass

    def look(self, pid):
        """`./leaklab threads PID --json`: (exit status, number of threads it listed, message)."""
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env["LEAKLAB_BUILD_DIR"] = str(self.paths.build_dir)
        try:
            done = subprocess.run(self.paths.looker + [str(pid), "--json"], capture_output=True, env=env,
                                  timeout=DUMP_LIMIT_S)
        except subprocess.TimeoutExpired:
            return ("timeout", 0, f"leaklab threads did not finish in {DUMP_LIMIT_S} s")
        threads = 0
        if done.returncode == EXIT_SKIP:
            raise Skip(f"leaklab threads cannot run: {done.stdout.decode(errors='replace').strip()} "
                       f"{done.stderr.decode(errors='replace').strip()}")
        if done.returncode == 0:
            try:
                doc = json.loads(done.stdout)
                threads = _count_threads(doc)
            except ValueError as e:
                return (done.returncode, 0, f"not JSON: {e}")
        return (done.returncode, threads, done.stderr.decode(errors="replace").strip()[-300:])


def _count_threads(doc):
    """Threads listed by `leaklab threads --json` (its groups' counts)."""
    if isinstance(doc, dict):
        for key in ("threads_seen", "threads"):
            if isinstance(doc.get(key), int):
                return doc[key]
            if isinstance(doc.get(key), list):
                return len(doc[key])
        groups = doc.get("groups")
        if isinstance(groups, list):
            return sum(g.get("count", len(g.get("tids", []))) for g in groups if isinstance(g, dict))
    return 0


# ---------------------------------------------------------------- the comparison

TC_REPORT_LINE = re.compile(r"^(threadcheck: (found unexpected threads|SUMMARY: ).*|\d+ @ .*|#\t.*|)$")
ORPHANS_REPORT_LINE = re.compile(r"^(==\d+== (orphans|SUMMARY: orphans).*|\d+ leaked threads? @ .*| {2}.*|)$")


def split_report(tool, plain_err, tool_err):
    """The part of tool_err that is the library's report: (report, problem).
    The program's own stderr comes first, whole; then the report, every line of
    which is one the documented report has; nothing after it."""
    if not tool_err.startswith(plain_err):
        return None, "stderr does not begin with the plain run's stderr"
    rest = tool_err[len(plain_err):].decode(errors="replace")
    lines = rest.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first = {"threadcheck": "threadcheck: found unexpected threads", "orphans": "orphans at exit: "}[tool]
    if not lines or first not in lines[0]:
        return None, f"no report: stderr should go on with the report ({first!r}), got {lines[:1]!r}"
    grammar = TC_REPORT_LINE if tool == "threadcheck" else ORPHANS_REPORT_LINE
    stray = [line for line in lines if not grammar.match(line)]
    if stray:
        return None, f"stderr has lines that are not the report: {stray[:3]!r}"
    if tool == "orphans" and "leaked thread" not in lines[0]:
        return None, f"the report does not say threads leaked: {lines[0]!r}"
    return rest, None


def _diff(label, a, b):
    a_lines, b_lines = a.decode(errors="replace").splitlines(), b.decode(errors="replace").splitlines()
    for i, (x, y) in enumerate(zip(a_lines, b_lines)):
        if x != y:
            return f"{label} differs at line {i + 1}: plain {x[:160]!r}, under the tool {y[:160]!r}"
    if len(a_lines) != len(b_lines):
        extra = (b_lines[len(a_lines):] or a_lines[len(b_lines):])[:3]
        return (f"{label} differs: plain {len(a_lines)} lines, under the tool {len(b_lines)} "
                f"(first of the difference: {extra!r})")
    return f"{label} differs ({len(a)} vs {len(b)} bytes)"


def compare_preload(case, tool, plain, under):
    """What the detector changed, as a list of problems (empty: passed)."""
    expect = case.expect[tool][0]
    problems = []
    if under.status == "timeout":
        problems.append("did not end within the time bound")
    if under.leftovers:
        problems.append(f"left processes behind: {', '.join(under.leftovers)}")
    if under.stdout != plain.stdout:
        problems.append(_diff("stdout", plain.stdout, under.stdout))
    if expect == CLEAN:
        if under.status != plain.status:
            problems.append(f"exit status {under.status}, plain {plain.status} (expected: {case.expect[tool][1]})")
        if under.stderr != plain.stderr:
            problems.append(_diff("stderr", plain.stderr, under.stderr))
    else:
        if under.status != REPORT_EXIT[tool]:
            problems.append(f"exit status {under.status}, expected the report's {REPORT_EXIT[tool]}")
        if case.closes_stderr:
            if under.stderr != plain.stderr:
                problems.append(_diff("stderr (closed by the program before exit)", plain.stderr, under.stderr))
        else:
            _, problem = split_report(tool, plain.stderr, under.stderr)
            if problem:
                problems.append(problem)
    return problems


def compare_observed(plain, looked):
    problems = []
    for label, run in (("plain", plain), ("looked at", looked)):
        if run.status == "timeout":
            problems.append(f"the {label} run did not end within the time bound")
        if run.leftovers:
            problems.append(f"the {label} run left processes behind: {', '.join(run.leftovers)}")
    if looked.status != plain.status:
        problems.append(f"exit status {looked.status} looked at, plain {plain.status}")
    if looked.stdout != plain.stdout:
        problems.append(_diff("stdout", plain.stdout, looked.stdout))
    if looked.stderr != plain.stderr:
        problems.append(_diff("stderr", plain.stderr, looked.stderr))
    if looked.rounds != plain.rounds:
        problems.append(f"{looked.rounds} rendezvous looked at, {plain.rounds} plain")
    if not looked.dumps:
        problems.append("never looked at: the target reached no rendezvous")
    for i, (code, threads, message) in enumerate(looked.dumps):
        if code != 0 or threads < 1:
            problems.append(f"look {i + 1}: `leaklab threads` exit {code}, {threads} threads: {message}")
    return problems


# ---------------------------------------------------------------- one test, the table

@dataclasses.dataclass
class Outcome:
    case: str
    tool: str
    verdict: str            # "pass", "FAIL", "skip"
    plain: object = None
    under: object = None
    problems: list = dataclasses.field(default_factory=list)
    expected: str = ""


def run_one(runner, case, tool, lib=None):
    """Runs one case under one tool. lib overrides the library (the negative control)."""
    outcome = Outcome(case.name, tool, "pass")
    try:
        runner.check_needs(case)
    except Skip as e:
        outcome.verdict, outcome.problems = "skip", [str(e)]
        return outcome
    with tempfile.TemporaryDirectory(prefix=f"host-{case.name}-") as tmp:
        work = Path(tmp)
        if case.setup:
            case.setup(work)
        plain = runner.run(case, work, rendezvous=tool == "threads")
        if plain.status != case.status or plain.leftovers:
            raise HarnessFailure(f"{case.name}: the plain run exited {plain.status} (expected {case.status}), "
                                 f"left {plain.leftovers}; stderr: {plain.stderr[-500:]!r}")
        if tool == "threads":
            try:
                under = runner.run(case, work, rendezvous=True, looker=runner.look)
            except Skip as e:
                outcome.verdict, outcome.problems = "skip", [str(e)]
                return outcome
            outcome.problems = compare_observed(plain, under)
            outcome.expected = "identical, every look succeeds"
        else:
            library = lib or {"threadcheck": runner.paths.threadcheck_lib, "orphans": runner.paths.orphans_lib}[tool]
            under = runner.run(case, work, extra_env={"LD_PRELOAD": str(library)})
            outcome.problems = compare_preload(case, tool, plain, under)
            verdict, why = case.expect[tool]
            outcome.expected = (f"report, exit {REPORT_EXIT[tool]}" if verdict == REPORTS else "identical") + f" ({why})"
        outcome.plain, outcome.under = plain, under
    if outcome.problems:
        outcome.verdict = "FAIL"
    return outcome


def _describe(run, plain=None):
    if run is None:
        return "-"
    out = f"{len(run.stdout.splitlines())} lines" if run.stdout else "empty"
    if plain is not None:
        out = "same" if run.stdout == plain.stdout else "DIFFERS"
        if run.stderr == plain.stderr:
            err = "same"
        elif not run.stderr.startswith(plain.stderr):
            err = "DIFFERS"
        elif any(split_report(t, plain.stderr, run.stderr)[1] is None for t in REPORT_EXIT):
            err = f"+report ({len(run.stderr) - len(plain.stderr)} B)"
        else:
            err = f"+{len(run.stderr) - len(plain.stderr)} B"
    else:
        err = f"{len(run.stderr)} B" if run.stderr else "empty"
    return f"exit {run.status}, stdout {out}, stderr {err}, {run.seconds:.1f} s"


def print_outcome(o, stream=sys.stdout):
    print(f"host.{o.case}.{o.tool}: {o.verdict}", file=stream)
    if o.expected:
        print(f"  expected: {o.expected}", file=stream)
    if o.plain:
        print(f"  plain:    {_describe(o.plain)}", file=stream)
        label = "looked at" if o.tool == "threads" else "preloaded"
        print(f"  {label + ':':9} {_describe(o.under, o.plain)}", file=stream)
        for code, threads, _ in o.under.dumps:
            print(f"    look: exit {code}, {threads} threads", file=stream)
    for p in o.problems:
        print(f"  problem: {p}", file=stream)
    if o.verdict == "FAIL" and o.under is not None:
        tail = o.under.stderr[-1500:].decode(errors="replace")
        print("  stderr under the tool (end):\n    " + "\n    ".join(tail.splitlines()), file=stream)


def _cell(o):
    """One case x tool cell: what was expected, what the run under the tool did."""
    if o.verdict == "skip":
        return "skip: " + "; ".join(o.problems)
    if o.under is None:
        return "**FAIL**: " + "; ".join(o.problems)
    expect = "identical" if o.tool == "threads" or BY_NAME[o.case].expect[o.tool][0] == CLEAN \
        else f"{REPORT_EXIT[o.tool]} + report"
    got = _describe(o.under, o.plain).rsplit(",", 1)[0]
    if o.tool == "threads":
        got += f", {len(o.under.dumps)} looks"
    return f"expects {expect}; {got}: " + ("pass" if o.verdict == "pass" else "**FAIL**")


def write_table(outcomes, path):
    """The matrix (case x tool, plain vs under the tool), then each failure's problems."""
    by_case = {}
    for o in outcomes:
        by_case.setdefault(o.case, {})[o.tool] = o
    rows = ["| case | stands for | plain run | threadcheck | orphans | threads |", "|---|---|---|---|---|---|"]
    for name, cells in by_case.items():
        plain = next((o.plain for o in cells.values() if o.plain), None)
        plain_text = _describe(plain).rsplit(",", 1)[0] if plain else "-"
        rows.append(f"| {name} | {BY_NAME[name].what} | {plain_text} | "
                    + " | ".join(_cell(cells[t]) if t in cells else "-" for t in TOOLS) + " |")
    failed = [o for o in outcomes if o.verdict == "FAIL"]
    skipped = [o for o in outcomes if o.verdict == "skip"]
    summary = (f"{len(outcomes)} runs: {len(outcomes) - len(failed) - len(skipped)} pass, {len(failed)} fail, "
               f"{len(skipped)} skipped")
    details = [f"- `host.{o.case}.{o.tool}`: " + "; ".join(p[:300] for p in o.problems) for o in failed]
    why = [f"- `{c.name}`: threadcheck {c.expect['threadcheck'][0]} ({c.expect['threadcheck'][1]}); "
           f"orphans {c.expect['orphans'][0]} ({c.expect['orphans'][1]})" for c in CASES if c.name in by_case]
    Path(path).write_text(
        "# Host corpus: plain vs under each detector\n\n"
        f"Written by `tests/host/run_corpus.py --table` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" ({os.cpu_count()} cores). {summary}. Each cell: what the case expects under that tool, then the "
        "run under the tool (exit status; stdout and stderr against the plain run; `+report`: the plain "
        "stderr followed by the documented report; time). tests/host/README.md says how runs are compared.\n\n"
        + "\n".join(rows) + "\n\n## Failures\n\n" + ("\n".join(details) or "none") + "\n\n"
        "## Expected verdicts, and why\n\n" + "\n".join(why) + "\n")
    return summary


# ---------------------------------------------------------------- command line

def paths_from(args):
    build = Path(args.build_dir or os.environ.get("LEAKLAB_BUILD_DIR") or REPO / "build").resolve()
    ns = argparse.Namespace()
    ns.build_dir = build
    ns.host_bin = Path(args.host_bin or build / "tests" / "host").resolve()
    ns.threadcheck_lib = Path(args.threadcheck_lib or build / "threadcheck" / "libthreadcheck.so")
    ns.orphans_lib = Path(args.orphans_lib or build / "threadcheck" / "orphans" / "liborphans.so")
    ns.looker = [str(Path(args.leaklab or REPO / "leaklab")), "threads"]
    # The system's interpreter, a real program: not a pyenv shim (a bash script) or a venv.
    ns.python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
    return ns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the cases, one per line (' serial' when it needs the machine)")
    parser.add_argument("--case", help="one case (see --list)")
    parser.add_argument("--tool", choices=TOOLS)
    parser.add_argument("--table", metavar="FILE", help="run every case x tool, write the Markdown table to FILE")
    parser.add_argument("--cases", help="with --table: a comma-separated subset")
    parser.add_argument("--build-dir")
    parser.add_argument("--host-bin")
    parser.add_argument("--threadcheck-lib")
    parser.add_argument("--orphans-lib")
    parser.add_argument("--leaklab")
    args = parser.parse_args(argv)

    if args.list:
        for c in CASES:
            print(c.name + (" serial" if c.serial else ""))
        return EXIT_OK
    runner = Runner(paths_from(args))
    if args.table:
        names = args.cases.split(",") if args.cases else [c.name for c in CASES]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            parser.error(f"--cases: unknown {unknown} (see --list)")
        outcomes = []
        for name in names:
            for tool in TOOLS:
                try:
                    o = run_one(runner, BY_NAME[name], tool)
                except HarnessFailure as e:
                    o = Outcome(name, tool, "FAIL", problems=[f"harness: {e}"])
                print_outcome(o)
                sys.stdout.flush()
                outcomes.append(o)
        print(write_table(outcomes, args.table))
        return EXIT_FAIL if any(o.verdict == "FAIL" for o in outcomes) else EXIT_OK
    if not args.case or not args.tool:
        parser.error("give --list, --table FILE, or --case CASE --tool TOOL")
    if args.case not in BY_NAME:
        parser.error(f"--case {args.case}: unknown (see --list)")
    try:
        outcome = run_one(runner, BY_NAME[args.case], args.tool)
    except HarnessFailure as e:
        print(f"run_corpus: {e}", file=sys.stderr)
        return EXIT_HARNESS
    except OSError as e:
        print(f"run_corpus: {e} (is the build complete? --host-bin, LEAKLAB_BUILD_DIR)", file=sys.stderr)
        return EXIT_HARNESS
    print_outcome(outcome)
    return {"pass": EXIT_OK, "FAIL": EXIT_FAIL, "skip": EXIT_SKIP}[outcome.verdict]


if __name__ == "__main__":
    sys.exit(main())
