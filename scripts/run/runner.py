"""Runs one scenario binary, natively or under a tool, into a run directory, and leaves no process behind."""

import ctypes
import datetime
import json
import os
import platform
import re
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.base import distro, eventlog
from scripts.base.exits import EXIT_FAILED, EXIT_OK, EXIT_SKIP, EXIT_SYSTEM, EXIT_USAGE  # noqa: F401  (runner.EXIT_* for its callers)
from scripts.expect import expected
from scripts.run import timeline
from scripts.tools import (asan, dhat, drd, heapcheck, heapprof, heaptrack, helgrind, lsan, massif, memcheck, orphans,
                           threadcheck, tools, tsan)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_S = 1800
KILL_GRACE_S = 2.0       # SIGTERM first: the harness then writes its end line
REAP_WAIT_S = 30.0       # how long SIGKILLed group members may take to vanish (10,000
                         # threads and a GiB of heap take seconds to tear down under load)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)  # the runner stops the run on these


class Outcome(Exception):
    """A run that cannot go on; `code` is the exit code of DESIGN.md."""
    code = EXIT_SYSTEM


class UsageError(Outcome):
    code = EXIT_USAGE


class Skip(Outcome):
    code = EXIT_SKIP


class SystemFailure(Outcome):
    code = EXIT_SYSTEM


class Terminated(BaseException):
    """SIGTERM/SIGHUP to the runner: unwinds like Ctrl-C so cleanup runs."""


# ---- tools ------------------------------------------------------------------
# Each tool is a module with the same interface (see memcheck.py):
#   NAME, TITLE, ALLOCATORS        which builds it runs on (the first is its default)
#   CANARY_OPTIONS                 scenario options that plant what the tool must report
#   LEAK_EXIT_CODES                {code: meaning}: the tool's own "leaks found" exit
#                                  code, data (not a scenario failure) when the
#                                  scenario's end event says it ran as designed
#   REPORTED_KINDS                 the leak kinds the tool shows by default (its verdict)
#   binary(spec)                   its own binary (sanitizers: NAME-lsan ...) or None
#   unavailable(spec)              why it cannot run here (-> skip, 77), or None
#   setup(run_dir)                 optional: folders it writes into
#   command(spec, binary, run_dir, head, options) -> (argv, env)
#   versions(spec, binary)         {"tool_path", "tool_version", ...}
#   postprocess(spec, binary, run_dir, info) -> (tool.json dict or None, errors, notes)
TOOL_MODULES = {m.NAME: m for m in (heapprof, memcheck, heapcheck, lsan, asan, tsan, heaptrack, threadcheck,
                                    orphans, helgrind, drd, massif, dhat)}
# Why a tool needs the allocator it needs (the usage error says it).
ALLOCATOR_WHY = {
    "heapprof": "the gperftools heap profiler lives in tcmalloc",
    "heapcheck": "the gperftools heap checker lives in tcmalloc",
    "memcheck": "valgrind replaces malloc itself",
    "heaptrack": "leaklab measures heaptrack over glibc malloc",
    "lsan": "the sanitizer brings its own allocator; NAME-lsan is built once",
    "asan": "the sanitizer brings its own allocator; NAME-asan is built once",
    "tsan": "the sanitizer brings its own allocator; NAME-tsan is built once",
    "threadcheck": "libthreadcheck.so is preloaded into the scenario's glibc build",
    "orphans": "liborphans.so is preloaded into the scenario's glibc build (its malloc family must be the process's)",
    "helgrind": "valgrind replaces malloc itself",
    "drd": "valgrind replaces malloc itself",
    "massif": "massif --pages-as-heap runs under glibc, tcmalloc or jemalloc (it leaves malloc alone)",
    "dhat": "valgrind replaces malloc itself (a -tcmalloc or -jemalloc binary runs on Valgrind's malloc)",
}
# Libraries a native run can be started with (RunSpec.preload, from an expected file's
# [truth]: a retention kernel's tcmalloc and jemalloc runs start with the allocstats agent,
# so that memstats can itemize their heaps; docs/memstats.md), under the build folder.
PRELOADS = {"allocstats": "threadcheck/allocstats/liballocstats.so"}


def default_allocator(tool):
    module = TOOL_MODULES.get(expected.split_tool(tool)[0])
    return module.ALLOCATORS[0] if module else "glibc"


def canary_options(tool):
    module = TOOL_MODULES.get(expected.split_tool(tool)[0])
    return list(module.CANARY_OPTIONS) if module else ["--canary"]


def parse_tool(text, known=None):
    """'lsan@clang-19' -> ('lsan', 'clang-19'), 'memcheck' -> ('memcheck', None);
    UsageError for a tool that is not known or a release a tool cannot have.
    `known`: the accepted plain names (default: native and every tool module)."""
    known = list(known or ["native", *TOOL_MODULES])
    tool, release = expected.split_tool(text)
    if tool not in known:
        raise UsageError(f"--tool: unknown tool '{text}'; accepted: {', '.join(known)}, or TOOL@RELEASE "
                         f"for {', '.join(t for t in expected.RELEASE_TOOLS if t in known)} (e.g. lsan@clang-19; "
                         "leaklab.py list --tools)")
    if "@" in (text or ""):
        why = expected.release_tool_error(text)
        if why:
            raise UsageError(f"--tool: {why}")
    return tool, release


def tool_id(spec):
    """The tool as expected files select it: TOOL@RELEASE for a tool with
    releases, the release resolved (plain lsan is lsan@clang-14 when the
    default clang is 14), else TOOL."""
    module = TOOL_MODULES.get(spec.tool)
    release = module.release(spec) if module is not None and hasattr(module, "release") else None
    return f"{spec.tool}@{release}" if release else spec.tool


@dataclass
class RunSpec:
    scenario: str
    variant: str | None = None
    scale: str | None = None
    allocator: str = "glibc"
    tool: str = "native"
    release: str | None = None   # a sanitizer's release (lsan@clang-19 -> "clang-19"); None: the default
    out: Path = REPO / "runs"
    build_dir: Path = REPO / "build"
    interval_ms: float = 10.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    options: list = field(default_factory=list)   # scenario options after `--`
    drivers: list = field(default_factory=list)   # expected.DriverStep
    preload: list = field(default_factory=list)   # names of PRELOADS, native runs only
    fixed_layout: bool = False                    # start without address-space randomization


def resolve_build_dir(arg):
    value = arg or os.environ.get("LEAKLAB_BUILD_DIR") or str(REPO / "build")
    return Path(value).resolve()


def binary_path(build_dir, scenario, allocator):
    name = scenario if allocator == "glibc" else f"{scenario}-{allocator}"
    return Path(build_dir) / "scenarios" / name


_HELP_CACHE = {}


def is_scenario_binary(path):
    """Helpers built next to the scenarios (e.g. a load client) are not
    scenarios: only the harness's --help has a `variants:` section."""
    key = str(path)
    if key not in _HELP_CACHE:
        try:
            out = subprocess.run([key, "--help"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        _HELP_CACHE[key] = "\nvariants:\n" in out
    return _HELP_CACHE[key]


def built_scenarios(build_dir):
    """{scenario: [allocators]} for the scenario binaries in the build dir."""
    found = {}
    folder = Path(build_dir) / "scenarios"
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not os.access(path, os.X_OK):
            continue
        name, allocator = path.name, "glibc"
        for alloc in ("tcmalloc", "jemalloc"):
            if name.endswith("-" + alloc):
                name, allocator = name[: -len(alloc) - 1], alloc
        if re.fullmatch(r"[a-z][a-z0-9_]*", name):
            found.setdefault(name, []).append(allocator)
    # One --help per name (the glibc build, else any): twins share their main().
    return {name: allocs for name, allocs in found.items()
            if is_scenario_binary(binary_path(build_dir, name, allocs[0]))}


def find_binary(spec):
    """The binary for the spec, or Skip/SystemFailure saying what is missing."""
    path = binary_path(spec.build_dir, spec.scenario, spec.allocator)
    if path.is_file():
        return path
    if spec.allocator == "glibc":
        raise SystemFailure(f"{path} not found: build first: ./leaklab test or cmake --build build")
    glibc = binary_path(spec.build_dir, spec.scenario, "glibc")
    if not glibc.is_file():
        raise SystemFailure(f"{path} not found: build first: ./leaklab test or cmake --build build")
    raise Skip(f"{spec.allocator} not available: {path} was not built (CMake did not find "
               f"{spec.allocator} when it configured {spec.build_dir}; install it and reconfigure)")


def merge_options(from_file, from_user):
    """Scenario options: the expected file's [[args]] first, minus every option
    the user gave after `--` (the user's value wins; the harness keeps only the
    last one anyway, but a doubled option would make command.txt misleading)."""
    given = {o.split("=")[0] for o in from_user if o.startswith("--")}
    merged, skip_value = [], False
    for opt in from_file:
        if skip_value:
            skip_value = False
            if not opt.startswith("--"):
                continue
        if opt.startswith("--") and opt.split("=")[0] in given:
            skip_value = "=" not in opt
            continue
        merged.append(opt)
    return merged + list(from_user)


def apply_expected(spec, exp, sel, user_options):
    """What expected file `exp` says of the run `sel` (variant, tool, allocator, scale) selects:
    its [[args]] options (the user's options win), [[driver]] steps, preloads and layout."""
    spec.options = merge_options(exp.options_for(*sel), user_options)
    spec.drivers = exp.drivers_for(*sel)
    spec.preload = exp.preloads_for(*sel)
    spec.fixed_layout = exp.fixed_layout_for(*sel)


def _first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def compiler_version(build_dir):
    """First line of `CC --version` for the compiler CMake used (gcc if unknown)."""
    cc = "gcc"
    try:
        for line in (Path(build_dir) / "CMakeCache.txt").read_text().splitlines():
            if line.startswith("CMAKE_C_COMPILER:"):
                cc = line.split("=", 1)[1].strip() or cc
                break
    except OSError:
        pass
    return _first_line([cc, "--version"])


def tool_versions(spec, used, binary=None):
    """What a run was measured with: compiler (of the binary itself, from its
    ELF .comment), allocator and its version, the tool's path and version."""
    versions = {"compiler": (tools.compiler_of(binary) if binary else None) or compiler_version(spec.build_dir),
                "kernel": platform.release(),
                "glibc": os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None,
                "python": platform.python_version(),
                **distro.distribution()}  # "Debian GNU/Linux 13 (trixie)", "debian13"
    if binary:
        versions.update(tools.allocator_info(binary, spec.allocator,
                                             os.environ.get(heapprof.ENV_TCMALLOC)
                                             if spec.allocator == "tcmalloc" else None))
    module = TOOL_MODULES.get(spec.tool)
    if module:
        v = module.versions(spec, binary)
        versions["tool"] = spec.tool
        versions.update({k: v[k] for k in v if k in ("tool_path", "tool_version", "compiler_path",
                                                     "release", "release_version")})
        if "allocator" in v:  # a sanitizer's own allocator replaces malloc
            versions["allocator"], versions["allocator_version"] = v["allocator"], v["allocator_version"]
            versions.pop("allocator_path", None)
    if "google-pprof" in used:
        versions["google-pprof"] = _first_line([heapprof.pprof_path(), "--version"])
    if "valgrind" in used:
        versions["valgrind"] = memcheck.valgrind_version()
    if "gnuplot" in used:
        versions["gnuplot"] = _first_line(["gnuplot", "--version"])
    return versions


def run_dir_name(spec, now=None):
    now = now or datetime.datetime.now()
    tool = f"{spec.tool}@{spec.release}" if spec.release else spec.tool
    return (f"{spec.scenario}.{spec.variant or 'default'}.{tool}.{spec.allocator}"
            f"-{now:%Y%m%d-%H%M%S}-{os.getpid()}")


# ---- the process group ------------------------------------------------------

def group_members(pgid):
    """PIDs whose process group is `pgid` (zombies included), from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        # Fields after the command name, which may itself contain ") ".
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def kill_group(pgid, grace_s=0.0):
    """SIGTERM (if grace_s) then SIGKILL to the whole group; returns the PIDs
    still there after REAP_WAIT_S (zombies of our own children excluded: the
    caller reaps them)."""
    try:
        if grace_s > 0:
            os.killpg(pgid, signal.SIGTERM)
            end = time.monotonic() + grace_s
            while time.monotonic() < end and _live(group_members(pgid)):
                time.sleep(0.05)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return []
    end = time.monotonic() + REAP_WAIT_S
    while True:
        left = _live(group_members(pgid))
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def live_group_members(pgid):
    """Live (non-zombie) PIDs of process group `pgid`."""
    return _live(group_members(pgid))


def _live(pids):
    """PIDs not yet zombies: a zombie holds no memory and no threads."""
    live = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
            if stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X"):
                live.append(pid)
        except OSError:
            pass
    return live


_PR_SET_PDEATHSIG = 1
_ADDR_NO_RANDOMIZE = 0x0040000   # linux/personality.h
FIXED_LAYOUT_REFUSED = ("the address layout stayed randomized (personality(ADDR_NO_RANDOMIZE) refused, "
                        "as in a container's default seccomp profile): tcmalloc's page map may take a 2 MiB "
                        "step between two phases (about 1 run in 100; docs/retention.md)")


def die_with_parent():
    # In the child before exec: if the runner is killed outright (SIGKILL,
    # a CTest timeout), the kernel kills the scenario too, so no 10,000-thread
    # process outlives its runner.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def fixed_layout_and_die_with_parent():
    # In the child before exec, as `setarch -R` does: the same address layout in every run
    # (RunSpec.fixed_layout). A refusal leaves the run as it was; the runner notes it.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        persona = libc.personality(0xffffffff)
        if persona != -1:
            libc.personality(persona | _ADDR_NO_RANDOMIZE)
    except (OSError, AttributeError):
        pass
    die_with_parent()


def layout_fixed(pid):
    """Whether process `pid` runs without address-space randomization (/proc/PID/personality)."""
    try:
        return bool(int(Path(f"/proc/{pid}/personality").read_text(), 16) & _ADDR_NO_RANDOMIZE)
    except (OSError, ValueError):
        return False


# ---- driver steps -----------------------------------------------------------

class Driver:
    """Acts on the scenario's events as the expected file's [[driver]] steps
    say: run a helper (e.g. a load client) and/or write a word on stdin."""

    def __init__(self, steps, run_dir, build_dir, stdin):
        self.steps = list(steps)
        self.fired = set()
        # {python} {leaklab}: a step may run leaklab itself (delayed_exit's memstats at its hold)
        self.values = {"build": str(build_dir), "run_dir": str(run_dir), "python": sys.executable,
                       "leaklab": str(REPO / "scripts" / "leaklab.py")}
        self.run_dir = run_dir
        self.stdin = stdin
        self.errors = []
        self.log = []
        self.threads = []
        self.procs = []
        self._lock = threading.Lock()

    def on_event(self, ev):
        if ev.get("event") == "start":
            for k, v in (ev.get("params") or {}).items():
                self.values[f"params.{k}"] = str(v)
            for k in ("payload_bytes", "workers", "pid"):
                if k in ev:
                    self.values[k] = str(ev[k])
        acted = False
        for i, step in enumerate(self.steps):
            if i in self.fired or ev.get("event") != step.on or (step.phase and ev.get("phase") != step.phase):
                continue
            self.fired.add(i)
            acted = True
            values = dict(self.values)
            values.update({k: str(v) for k, v in ev.items() if not isinstance(v, (dict, list))})
            t = threading.Thread(target=self._do, args=(i, step, values), daemon=True)
            self.threads.append(t)
            t.start()
        if ev.get("event") == "hold" and ev.get("until") == "driver" and not acted:
            # held for a driver that has no step for it (--hold-at PHASE:driver given by hand):
            # an error, on which the runner stops the run, rather than a wait only the
            # scenario's watchdog would end
            self.errors.append(f"held at '{ev.get('phase')}' for the driver, but no [[driver]] step acts on that "
                               "hold")

    def _do(self, i, step, values):
        try:
            if step.run:
                argv = [re.sub(r"\{([\w.]+)\}", lambda m: values[m.group(1)], a) for a in step.run]
                self.log.append(f"driver #{i + 1}: {shlex.join(argv)}")
                with open(self.run_dir / f"driver-{i + 1}.txt", "w") as out:
                    # A group of its own (the scenario's is in another session,
                    # which setpgid refuses); the runner kills it at the end.
                    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=die_with_parent)
                    self.procs.append(proc)
                    code = proc.wait()
                if code != 0:
                    self.errors.append(f"driver #{i + 1} ({argv[0]}) exited {code}; "
                                       f"see driver-{i + 1}.txt")
                    return
            if step.send:
                with self._lock:
                    self.stdin.write((step.send + "\n").encode())
                    self.stdin.flush()
                self.log.append(f"driver #{i + 1}: wrote '{step.send}' on stdin after event '{step.on}'")
        except KeyError as e:
            self.errors.append(f"driver #{i + 1}: no value for placeholder {{{e.args[0]}}}")
        except (OSError, ValueError) as e:
            self.errors.append(f"driver #{i + 1}: {e}")


# ---- the run ----------------------------------------------------------------

def prepare(spec):
    """Checks prerequisites; returns (binary, argv, extra env, run dir to create).
    Raises Skip / SystemFailure / UsageError."""
    module = TOOL_MODULES.get(spec.tool)
    if spec.tool != "native" and module is None:
        raise UsageError(f"--tool: unknown tool '{spec.tool}'; accepted: native, {', '.join(TOOL_MODULES)}")
    if spec.release and not hasattr(module, "release"):
        raise UsageError(f"--tool {spec.tool}@{spec.release}: {spec.tool} has no releases "
                         f"(only {', '.join(expected.RELEASE_TOOLS)} do)")
    if module and spec.allocator not in module.ALLOCATORS:
        raise UsageError(f"--tool {spec.tool} needs --allocator {' or '.join(module.ALLOCATORS)} "
                         f"(got '{spec.allocator}'): {ALLOCATOR_WHY.get(spec.tool, '')}".rstrip(": "))
    own = module.binary(spec) if module else None
    if own is not None:
        why = module.unavailable(spec)
        if why:
            raise Skip(f"{spec.tool}: {why}")
        binary = Path(own)
    else:
        binary = find_binary(spec)
        why = module.unavailable(spec) if module else None
        if why:
            raise Skip(f"{spec.tool}: {why}")
    run_dir = (Path(spec.out) / run_dir_name(spec)).resolve()
    n = 1
    while run_dir.exists():  # two runs by one process within a second
        n += 1
        run_dir = run_dir.with_name(f"{run_dir_name(spec)}.{n}")
    head = [str(binary)]
    if spec.variant:
        head += ["--variant", spec.variant]
    if spec.scale:
        head += ["--scale", spec.scale]
    head += ["--events", str(run_dir / "events.jsonl")]
    if module:
        if spec.preload:
            raise UsageError(f"--tool {spec.tool}: a preload ({', '.join(spec.preload)}) is for native runs only")
        argv, env = module.command(spec, binary, run_dir, head, list(spec.options))
    else:
        argv, env = head + list(spec.options), {}
        libraries = []
        for name in spec.preload:
            library = Path(spec.build_dir) / PRELOADS[name]
            if not library.exists():
                raise SystemFailure(f"{library} is not built (the run starts with it: {name}); "
                                    f"build it: cmake --build {spec.build_dir}")
            libraries.append(str(library))
        if libraries:
            env = {"LD_PRELOAD": " ".join(libraries)}
    return binary, argv, env, run_dir


def command_text(argv, env, run_dir, drivers, fixed_layout=False):
    lines = ["# Reproduce this run (events go to the same run directory):"]
    if drivers:
        lines.append("# stdin: the runner's [[driver]] steps acted on events; see run.json 'driver'.")
    prefix = ["env", *[f"{k}={v}" for k, v in env.items()]] if env else []
    if fixed_layout:  # util-linux's way to the same personality (RunSpec.fixed_layout)
        prefix = ["setarch", "-R", *prefix]
    lines.append(f"cd {shlex.quote(str(run_dir))} && {shlex.join(prefix + list(argv))}")
    return "\n".join(lines) + "\n"


def execute(spec, announce=None):
    """Runs the scenario; returns (run_dir, info) where info is run.json's
    content. Harness-level trouble (timeout, survivors, tool failures) sets
    info['runner_status'] = 99 with the reasons in info['runner_errors']."""
    binary, argv, env, run_dir = prepare(spec)
    run_dir.mkdir(parents=True, exist_ok=False)
    module = TOOL_MODULES.get(spec.tool)
    if module and hasattr(module, "setup"):
        module.setup(run_dir)
    (run_dir / "command.txt").write_text(command_text(argv, env, run_dir, spec.drivers, spec.fixed_layout))
    if announce:
        announce(run_dir)
    info = {
        "scenario": spec.scenario, "variant": spec.variant, "scale": spec.scale,
        "allocator": spec.allocator, "tool": spec.tool, "binary": str(binary),
        "release": tool_id(spec).partition("@")[2] or None,
        "argv": list(argv), "env": env, "cwd": str(run_dir), "options": list(spec.options),
        "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "interval_ms": spec.interval_ms, "timeout_s": spec.timeout_s,
        "exit_code": None, "signal": None, "runner_status": EXIT_OK,
        "runner_errors": [], "notes": [],
    }
    errors = info["runner_errors"]

    # SIGTERM, SIGHUP and SIGINT only note that the runner was asked to stop;
    # the wait loop below sees the note and stops the run. An exception raised
    # from the handler would land wherever the main thread happens to be: once
    # it was inside threading's own locks (Thread.start() of the sampler),
    # which came out as "RuntimeError: release unlocked lock" and exit 1
    # instead of a clean stop with 99.
    stop_requests = []

    def request_stop(signum, frame):
        stop_requests.append(signum)

    old_handlers = {}
    if threading.current_thread() is threading.main_thread():  # signal() works only there
        old_handlers = {s: signal.signal(s, request_stop) for s in STOP_SIGNALS}
    stdout = open(run_dir / "stdout.txt", "wb")
    stderr = open(run_dir / "stderr.txt", "wb")
    proc = sampler = driver = None
    status = rusage = None
    t0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        proc = subprocess.Popen(argv, cwd=run_dir, env={**os.environ, **env},
                                stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, start_new_session=True,
                                preexec_fn=fixed_layout_and_die_with_parent if spec.fixed_layout else die_with_parent)
        if spec.fixed_layout and not layout_fixed(proc.pid):
            info["notes"].append(FIXED_LAYOUT_REFUSED)
        driver = Driver(spec.drivers, run_dir, spec.build_dir, proc.stdin)

        def on_event(ev, driver=driver):
            # A tool that runs the scenario as its child (heaptrack's script)
            # would have the timeline sample the wrapper: the start event
            # names the scenario's own PID, so sample that from then on.
            if ev.get("event") == "start" and isinstance(ev.get("pid"), int) and sampler is not None:
                sampler.pid = ev["pid"]
            driver.on_event(ev)
        sampler = timeline.Sampler(proc.pid, run_dir / "events.jsonl", run_dir,
                                   spec.interval_ms / 1000.0, t0, on_event)
        sampler.start()
        deadline = t0 + spec.timeout_s
        while not stop_requests:
            # WNOWAIT: learn that the child exited without reaping it, so its
            # PID (= the group id) cannot be reused before the group is killed.
            done = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if done is not None:
                break
            if time.monotonic() > deadline:
                errors.append(f"runner timeout: the scenario ran past {spec.timeout_s:g} s; "
                              "its process group was killed (raise --timeout or lower the scale)")
                info["timed_out"] = True
                break
            if driver.errors:
                # The scenario waits for a word that will not come: stop now,
                # not at the timeout. (The errors are reported below.)
                errors.append("a driver step failed; the scenario's process group was killed")
                break
            time.sleep(0.02)
    finally:
        wall = time.monotonic() - t0
        if proc is not None:
            left = kill_group(proc.pid, KILL_GRACE_S if errors or stop_requests else 0.0)
            if left:
                errors.append(f"processes of group {proc.pid} survived SIGKILL: {left}")
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            for p in (driver.procs if driver else []):
                left = kill_group(p.pid)  # start_new_session: each helper leads a group
                if left:
                    errors.append(f"driver helper group {p.pid} survived SIGKILL: {left}")
                p.wait()
            try:
                proc.stdin.close()
            except OSError:
                pass  # the reader is gone: a broken pipe at close is expected
        if sampler is not None:
            sampler.stop()
            errors.extend(sampler.errors)
        stdout.close()
        stderr.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    raise_after = None
    if stop_requests:  # also one that came during the clean-up
        interrupted = stop_requests[0] == signal.SIGINT
        errors.append("interrupted" if interrupted else "runner terminated by a signal")
        raise_after = KeyboardInterrupt() if interrupted else Terminated()

    code = os.waitstatus_to_exitcode(status) if status is not None else None
    if code is not None and code < 0:
        info["signal"] = signal.Signals(-code).name
        code = 128 - code
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    info.update({
        "exit_code": code,
        "process_exit_code": code,
        "wall_s": round(wall, 3),
        "child_user_s": round(rusage.ru_utime, 3) if rusage else None,
        "child_sys_s": round(rusage.ru_stime, 3) if rusage else None,
        "child_maxrss_bytes": rusage.ru_maxrss * 1024 if rusage else None,
        "sampler_cpu_s": round(sampler.cpu_s, 3) if sampler else None,
        "sampler_samples": sampler.samples if sampler else 0,
        "sampler_max_gap_s": round(sampler.max_gap_s, 4) if sampler else None,
        "runner_cpu_s": round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 3),
    })
    if driver:
        errors.extend(driver.errors)
        info["driver"] = driver.log
    if raise_after is None:
        _postprocess(spec, binary, run_dir, info)
    used = {"heapprof": {"google-pprof"}, "memcheck": {"valgrind"}}.get(spec.tool, set())
    if "timeline.svg" in os.listdir(run_dir) or (run_dir / "timeline.gp").exists():
        used.add("gnuplot")
    info["versions"] = tool_versions(spec, used, binary)
    if errors:
        info["runner_status"] = EXIT_SYSTEM
    (run_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")
    if raise_after is not None:
        raise raise_after
    return run_dir, info


def _tool_exit(spec, module, info, end, doc):
    """A tool's own "leaks found" exit code is data, not a scenario failure,
    when the scenario's end event says it ran as designed: exit_code becomes
    the scenario's 0, process_exit_code keeps what the process returned, and
    the report must agree with the code (a report that went missing while
    the tool still said "leaks" is a harness failure, not a clean run)."""
    code = info.get("process_exit_code")
    codes = module.LEAK_EXIT_CODES
    said = code in codes and bool(end) and end.get("status") == 0
    if said:
        info["exit_code"] = 0
        info["tool_exit"] = {"code": code, "meaning": codes[code]}
        info["notes"].append(f"{spec.tool} exited {code}: {codes[code]} (data, see tool.json); "
                             "the scenario itself ran as designed")
    if doc is None or not codes:
        return
    found = doc["verdict"] == tools.REPORTED or doc.get("error_count", 0) > 0
    if said and not found:
        info["runner_errors"].append(
            f"{spec.tool} exited {code} ({codes[code]}) but its report "
            f"({doc.get('raw') or 'none was written'}) lists nothing: the report went missing or was not parsed")
    elif found and not said and code == 0 and end and end.get("status") == 0:
        info["runner_errors"].append(
            f"{spec.tool}'s report lists findings but it exited 0, not {' or '.join(map(str, codes))}: "
            "was its exit code overridden?")


def _postprocess(spec, binary, run_dir, info):
    """After the process group is gone: fill in what the start event knows,
    render tool output, draw the timeline."""
    errors, notes = info["runner_errors"], info["notes"]
    start, end = {}, None
    events, problems = eventlog.read(Path(run_dir) / "events.jsonl")
    if problems == ["no events.jsonl"]:
        notes.append("no events.jsonl: the scenario wrote no events")
    for ev in events:
        if ev.get("event") == "start":
            start = ev
        elif ev.get("event") == "end":
            end = ev
    for key in ("variant", "scale"):
        if start.get(key):
            info[key] = start[key]  # what actually ran, even if defaulted
    module = TOOL_MODULES.get(spec.tool)
    if module:
        doc, problems, tool_notes = module.postprocess(spec, binary, run_dir, info)
        errors.extend(problems)
        notes.extend(tool_notes)
        _tool_exit(spec, module, info, end, doc)
        if doc is not None:
            tools.write(run_dir, doc)
    title = (f"{spec.scenario} {info.get('variant') or ''} ({spec.tool}, {spec.allocator}, "
             f"{info.get('scale') or 'seed'} scale)")
    note = timeline.draw_svg(run_dir, title)
    if note:
        notes.append(note)


# ---- what is in a run directory --------------------------------------------

DESCRIPTIONS = [
    (r"command\.txt", "the exact command line (shell-quoted); rerun it from here"),
    (r"run\.json", "what ran: options, exit code, wall/CPU time, tool versions"),
    (r"events\.jsonl", "the scenario's JSON-lines events: start, phases with snapshots, end"),
    (r"stdout\.txt", "the scenario's standard output"),
    (r"stderr\.txt", "the scenario's standard error (harness messages, remedies)"),
    (r"timeline\.csv", "RSS and thread count sampled from /proc every interval"),
    (r"phases\.csv", "when each phase happened, with heap in use and RSS"),
    (r"timeline\.gp", "the gnuplot program that draws timeline.svg"),
    (r"timeline\.svg", "plot: RSS, heap in use and threads over time, phases marked"),
    (r"verdict\.json", "the comparer's verdict per check"),
    (r"report\.html", "the run's report: one self-contained page (./leaklab report RUN_DIR)"),
    (r"memcheck\.xml", "valgrind memcheck's full XML report"),
    (r"memcheck\.log", "valgrind's own messages"),
    (r"memcheck\.json", "memcheck leak summary: bytes/blocks per kind and per function"),
    (r"tool\.json", "the tool's report in the one shape every tool shares: verdict, kinds, top function, version"),
    (r"lsan\.\d+", "LeakSanitizer's report (log_path), raw"),
    (r"asan\.\d+", "AddressSanitizer's report (log_path), raw"),
    (r"tsan\.\d+", "ThreadSanitizer's report (log_path), raw"),
    (r"threadcheck\.\d+", "threadcheck's report at exit (log_path): thread groups with their stacks, raw"),
    (r"orphans\.\d+", "orphans' report at exit (log_path): leaked threads by stack, what they wait on and pin, raw"),
    (r"heaptrack\.(zst|gz)", "heaptrack's data file (heaptrack --analyze FILE, or heaptrack_print -f FILE)"),
    (r"heaptrack\.txt", "heaptrack_print's report: peaks, allocators, leaks, totals"),
    (r"heaptrack\.leaked\.txt", "heaptrack_print -F, leaked bytes per stack (exact; flamegraph format)"),
    (r"heapcheck/.*", "a heap dump the gperftools heap checker wrote (its pprof hint names it)"),
    (r"driver-\d+\.txt", "output of a driver step (helper program)"),
    (r"heap/periodic\..*", "heap profile gperftools wrote on its own (at exit); not checked"),
    (r"heap/.*\.heap", "gperftools heap profile of a phase, raw (google-pprof BINARY FILE)"),
    (r"heap/.*\.bytes\.txt", "pprof --text --show_bytes: in-use bytes per function"),
    (r"heap/.*\.stacks\.txt", "pprof --text --stacks: in-use bytes per allocation stack"),
    (r"heap/.*\.txt", "pprof --text --inuse_space: in-use MB per function"),
    (r"heap/.*\.svg", "pprof call graph of in-use space"),
    (r"heap/.*\.json", "parsed profile: top function, its share, bytes per function"),
]


def listing(run_dir):
    """One line per file: its path inside the run dir and what it is."""
    run_dir = Path(run_dir)
    files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
    width = max((len(f) for f in files), default=0)
    lines = []
    for f in files:
        what = next((d for pat, d in DESCRIPTIONS if re.fullmatch(pat, f)), "")
        lines.append(f"  {f:<{width}}  {what}".rstrip())
    return lines
