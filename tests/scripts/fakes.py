"""Helpers for the script tests: fake run directories, fake scenario binaries, sample tool outputs."""

import json
import os
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
if str(REPO) not in sys.path:  # the `scripts` package
    sys.path.insert(0, str(REPO))

MB = 1 << 20


def snapshot(**over):
    """A phase snapshot shaped like the harness's, with overrides (dotted keys allowed)."""
    snap = {
        "rss_bytes": 100 * MB, "rss_anon_bytes": 95 * MB, "hwm_bytes": 100 * MB,
        "threads": 1001, "lazyfree_bytes": 0, "fds": 4,
        "alloc": {"allocator": "glibc", "in_use_bytes": 130 * MB, "free_held_bytes": MB,
                  "released_bytes": -1, "arenas": 16},
        "counters": {"sessions_live": 0},
        "census": [{"state": "S", "wchan": "futex_wait_queue", "syscall": "futex", "count": 1000},
                   {"state": "R", "wchan": "-", "syscall": "read", "count": 1}],
    }
    for key, value in over.items():
        parts = key.split("__")
        target = snap
        for p in parts[:-1]:
            target = target[p]
        target[parts[-1]] = value
    return snap


def make_run(root, phases, *, variant="leaky", tool="native", allocator="glibc", scale="quick",
             exit_code=0, workers=1000, payload_bytes=80_000_000, runner_status=0,
             runner_errors=(), extra_events=(), raw_event_lines=(), params=None):
    """Writes a run directory: run.json and events.jsonl. `phases` is a list
    of (name, snapshot) or (name, snapshot, extra fields) in order."""
    run_dir = Path(root) / f"fake.{variant}.{tool}.{allocator}"
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"scenario": "fake_scn", "variant": variant, "tool": tool, "allocator": allocator,
            "scale": scale, "exit_code": exit_code, "runner_status": runner_status,
            "runner_errors": list(runner_errors), "notes": []}
    (run_dir / "run.json").write_text(json.dumps(info))
    events = [{"event": "start", "t": 0.0, "scenario": "fake_scn", "variant": variant, "scale": scale,
               "allocator": allocator, "pid": 1, "params": params or {"workers": workers, "elements": 10000},
               "payload_bytes": payload_bytes, "workers": workers, "canary_bytes": 0}]
    for i, ph in enumerate(phases, 1):
        ev = {"event": "phase", "t": float(i), "phase": ph[0], "snapshot": ph[1]}
        if len(ph) > 2:
            ev.update(ph[2])
        events.append(ev)
    events.extend(extra_events)
    events.append({"event": "end", "t": 99.0, "status": exit_code, "reason": "test"})
    lines = [json.dumps(e) for e in events] + list(raw_event_lines)
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def write_expected(root, text, name="fake_scn.toml"):
    path = Path(root) / name
    path.write_text(textwrap.dedent(text))
    return path


# A fake scenario binary: a Python script that follows the harness's CLI far
# enough for the runner (--events FILE, --variant, --scale), and whose
# behaviour is chosen with --mode.
FAKE_SCENARIO = r'''#!{python}
import json, os, sys, time, subprocess
args = sys.argv[1:]
def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default
if "--help" in args:
    print("usage: fake_scn [--variant NAME] [--scale quick|seed] [options]\n\nA fake scenario for tests.\n\n"
          "variants:\n  leaky    leaks (default)\n  fixed    does not\n\nscenario options:")
    sys.exit(0)
mode = opt("--mode", "ok")
variant = opt("--variant", "leaky")
if variant not in ("leaky", "fixed"):
    print("--variant: unknown variant; accepted: leaky, fixed", file=sys.stderr); sys.exit(2)
ev = open(opt("--events"), "w", buffering=1)
def emit(**kw): ev.write(json.dumps(kw) + "\n")
emit(event="start", t=0.0, scenario="fake_scn", variant=variant, scale=opt("--scale", "seed"),
     allocator="glibc", pid=os.getpid(), params={{"workers": 4}}, payload_bytes=4000, workers=4)
snap = {{"rss_bytes": 1000, "threads": 5, "alloc": {{"allocator": "glibc", "in_use_bytes": 4096}},
         "census": [{{"state": "S", "wchan": "futex", "syscall": "futex", "count": 4}}]}}
if mode == "orphan":
    # A grandchild in our process group that would outlive us.
    child = subprocess.Popen(["sleep", "300"])
    open(os.path.join(os.path.dirname(opt("--events")), "orphan.pid"), "w").write(str(child.pid))
elif mode == "holds":
    # --hold-at a:driver --hold-at b:driver, as the harness does it: a hold event, then the
    # driver's word on stdin
    for phase in ("a", "b"):
        emit(event="phase", t=0.01, phase=phase, snapshot=snap)
        emit(event="hold", t=0.02, until="driver", phase=phase)
        line = sys.stdin.readline().strip()
        if line != "go-on":
            print(f"expected go-on, got {{line!r}}", file=sys.stderr); sys.exit(99)
elif mode == "environ":
    # what the runner started us with: our personality and LD_PRELOAD
    with open(os.path.join(os.path.dirname(opt("--events")), "environ.json"), "w") as out:
        json.dump({{"personality": open("/proc/self/personality").read().strip(),
                   "LD_PRELOAD": os.environ.get("LD_PRELOAD")}}, out)
elif mode == "hang":
    time.sleep(3600)  # longer than any test waits: only a kill ends it
elif mode == "driver":
    emit(event="listening", t=0.01, port=4242)
    line = sys.stdin.readline().strip()
    if line != "done":
        print(f"expected done, got {{line!r}}", file=sys.stderr); sys.exit(99)
emit(event="phase", t=0.05, phase="steady", snapshot=snap)
if mode == "fail":
    print("refused: pthread_create failed", file=sys.stderr)
    emit(event="end", t=0.06, status=99, reason="refused")
    sys.exit(99)
emit(event="end", t=0.06, status=0, reason="ran as designed")
print("stdout of the fake")
'''


def make_build(root, name="fake_scn", allocators=("glibc",)):
    """A build dir whose scenarios/ holds the fake scenario for each allocator."""
    build = Path(root) / "build"
    (build / "scenarios").mkdir(parents=True, exist_ok=True)
    for alloc in allocators:
        path = build / "scenarios" / (name if alloc == "glibc" else f"{name}-{alloc}")
        path.write_text(FAKE_SCENARIO.format(python=sys.executable))
        path.chmod(0o755)
    return build


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def env_without_build_dir():
    env = dict(os.environ)
    env.pop("LEAKLAB_BUILD_DIR", None)
    return env
