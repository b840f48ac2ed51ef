#!/usr/bin/env python3
"""gateway.py - drives rw_gateway: waits for its port, runs the load client, says load-done.

The runner can drive rw_gateway on its own through the [[driver]] step of
expected/rw_gateway.toml (on "listening": run rw_client, then send
"load-done"). This module does the same from Python for callers that want the
client's summary back, and its command line runs the gateway without the
runner: for measuring (--repeat) and for the hostile-input test (--hostile).

Interface
---------
drive(gateway, events_path, build_dir, run_dir, *, timeout_s=300.0,
      hostile=False, connections=None, frames=None, client_args=()) -> dict

  gateway      subprocess.Popen of rw_gateway, started with stdin=PIPE and,
               so it can be killed as a whole, start_new_session=True
  events_path  the gateway's --events FILE
  build_dir    the CMake build dir; the client is BUILD/scenarios/rw_client
  run_dir      receives client.txt (the client's stdout and stderr) and
               client.json (its summary: see `rw_client --help`)
  connections, frames
               default to the gateway's own --connections/--frames, read from
               its start event, so the client makes what the payload declares
  hostile      run `rw_client --hostile` (each kind of bad input, then a
               normal exchange) instead of the load

  Waits for the gateway's `listening` event (bounded by timeout_s), runs the
  client against that port in a process group of its own (bounded by the
  client's --timeout and by timeout_s), writes "load-done\\n" on the gateway's
  stdin, and returns {"port", "client_exit", "client" (client.json as a dict),
  "client_s"}. On any failure - the gateway ended before listening, no port in
  time, the client failed, crashed or ran out of time - it kills the client's
  group and the gateway's group and raises DriveError naming the file to read.

Command line
------------
  gateway.py [--build-dir B] [--variant leaky|fixed] [--scale quick|seed]
             [--allocator A] [--run-dir DIR] [--timeout S] [--repeat N]
             [--hostile] [-- gateway options, e.g. --race-window-us 1000]

Starts the gateway itself (own process group), drives it, waits for it to end,
kills both groups, checks that no process of either is left, and prints what
the after-load snapshot says. Exit: 0 ok, 1 a check failed (client errors,
hostile-input verdicts), 2 bad usage, 99 system failure or survivors.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.base import eventlog
from scripts.run import runner

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SYSTEM = 0, 1, 2, 99
REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.02
CLIENT_GRACE_S = 10.0   # beyond the client's own --timeout before we kill it
REAP_WAIT_S = 5.0


class DriveError(Exception):
    """The drive could not complete; both process groups have been killed."""


# ---- processes --------------------------------------------------------------

def kill_group(proc):
    """SIGKILL to proc's whole group, reap proc; returns PIDs still alive after REAP_WAIT_S."""
    if proc is None:
        return []
    left = runner.kill_group(proc.pid)
    try:
        proc.wait(timeout=REAP_WAIT_S)
    except subprocess.TimeoutExpired:
        pass
    return left


# ---- events -----------------------------------------------------------------

def read_events(events_path):
    """The events written so far (a line still being written is skipped)."""
    return eventlog.read(events_path)[0]


def wait_for_event(events_path, name, deadline, proc=None):
    """The first event called `name` written by proc (events before a start
    event carrying proc's pid are a previous run's and are skipped); raises
    DriveError if proc ends first or the deadline passes."""
    while True:
        ours = proc is None
        for ev in read_events(events_path):
            if ev.get("event") == "start":
                ours = proc is None or ev.get("pid") == proc.pid
            if not ours:
                continue
            if ev.get("event") == name:
                return ev
            if ev.get("event") == "end":
                raise DriveError(f"the gateway ended before '{name}': {ev.get('reason')}")
        if proc is not None and proc.poll() is not None:
            raise DriveError(f"the gateway exited ({proc.returncode}) before '{name}'; see its stderr")
        if time.monotonic() > deadline:
            raise DriveError(f"no '{name}' event in {events_path} in time")
        time.sleep(POLL_S)


def client_path(build_dir):
    return Path(build_dir) / "scenarios" / "rw_client"


# ---- the driver ---------------------------------------------------------------

def drive(gateway, events_path, build_dir, run_dir, *, timeout_s=300.0, hostile=False,
          connections=None, frames=None, client_args=()):
    """See the module docstring."""
    run_dir = Path(run_dir)
    deadline = time.monotonic() + timeout_s
    client = None
    try:
        start = wait_for_event(events_path, "start", deadline, gateway)
        params = start.get("params") or {}
        port = wait_for_event(events_path, "listening", deadline, gateway).get("port")
        if not isinstance(port, int):
            raise DriveError(f"the 'listening' event carries no port: {events_path}")
        binary = client_path(build_dir)
        if not binary.is_file():
            raise DriveError(f"{binary} not found: build first (cmake --build build)")
        client_timeout = max(1, int(deadline - time.monotonic()))
        argv = [str(binary), "--port", str(port), "--timeout", str(client_timeout),
                "--json", str(run_dir / "client.json")]
        if hostile:
            argv += ["--hostile", "--frames", str(frames or params.get("frames", 10))]
        else:
            argv += ["--connections", str(connections or params["connections"]),
                     "--frames", str(frames or params["frames"])]
        argv += list(client_args)
        t0 = time.monotonic()
        with open(run_dir / "client.txt", "w") as out:
            out.write("# " + " ".join(argv) + "\n")
            out.flush()
            client = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True, preexec_fn=runner.die_with_parent)
            try:
                code = client.wait(timeout=client_timeout + CLIENT_GRACE_S)
            except subprocess.TimeoutExpired:
                raise DriveError(f"the client ran past its --timeout {client_timeout} s; see {run_dir}/client.txt")
        client_s = time.monotonic() - t0
        summary = {}
        try:
            summary = json.loads((run_dir / "client.json").read_text())
        except (OSError, ValueError):
            pass
        if code != 0 and not (hostile and code == EXIT_FAILED):
            # (a hostile case that failed is a verdict, reported by the caller;
            # everything else means the load did not happen as declared)
            raise DriveError(f"the client exited {code}; see {run_dir}/client.txt")
        if gateway.poll() is not None:
            raise DriveError(f"the gateway exited ({gateway.returncode}) during the load; see its stderr")
        gateway.stdin.write(b"load-done\n")
        gateway.stdin.flush()
        return {"port": port, "client_exit": code, "client": summary, "client_s": round(client_s, 3)}
    except (DriveError, OSError, KeyError) as e:
        kill_group(client)
        kill_group(gateway)
        if isinstance(e, DriveError):
            raise
        raise DriveError(f"driving the gateway failed: {e!r}") from None
    finally:
        if client is not None and client.poll() is None:
            kill_group(client)


# ---- the command line ---------------------------------------------------------

def gateway_binary(build_dir, allocator):
    name = "rw_gateway" if allocator == "glibc" else f"rw_gateway-{allocator}"
    return Path(build_dir) / "scenarios" / name


def one_run(args, run_dir):
    """Starts the gateway, drives it, waits for its end; returns (code, report dict)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    events = run_dir / "events.jsonl"
    for stale in ("events.jsonl", "client.json", "client.txt"):
        (run_dir / stale).unlink(missing_ok=True)
    binary = gateway_binary(args.build_dir, args.allocator)
    if not binary.is_file():
        raise DriveError(f"{binary} not found: build first (cmake --build build)")
    argv = [str(binary), "--variant", args.variant, "--scale", args.scale, "--events", str(events),
            "--timeout", str(int(args.timeout)), *args.gateway_options]
    (run_dir / "command.txt").write_text(" ".join(argv) + "\n")
    t0 = time.monotonic()
    with open(run_dir / "stdout.txt", "wb") as out, open(run_dir / "stderr.txt", "wb") as err:
        gw = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err,
                              start_new_session=True, preexec_fn=runner.die_with_parent)
    survivors = []
    try:
        result = drive(gw, events, args.build_dir, run_dir, timeout_s=args.timeout, hostile=args.hostile)
        try:
            gw.wait(timeout=max(1.0, args.timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            raise DriveError(f"the gateway did not end within --timeout {args.timeout:g} s")
    finally:
        survivors = kill_group(gw)
    wall = time.monotonic() - t0
    if survivors:
        raise DriveError(f"processes of the gateway's group survived SIGKILL: {survivors}")
    evs = read_events(events)
    phases = {e["phase"]: e.get("snapshot", {}) for e in evs if e.get("event") == "phase"}
    end = next((e for e in evs if e.get("event") == "end"), {})
    start = next((e for e in evs if e.get("event") == "start"), {})
    if gw.returncode != 0 or "after-load" not in phases:
        raise DriveError(f"the gateway exited {gw.returncode} ({end.get('reason', 'no end event')}); "
                         f"see {run_dir}/stderr.txt")
    base, after = phases.get("listening", {}), phases["after-load"]
    c = after.get("counters", {})
    session_bytes = start.get("payload_bytes", 0) // max(1, start.get("workers", 1))
    leaked = c.get("sessions_live", 0)
    grown = after["alloc"]["in_use_bytes"] - base.get("alloc", {}).get("in_use_bytes", 0)
    report = {
        "variant": start.get("variant"), "connections": c.get("connections_accepted"),
        "params": start.get("params"), "sessions_leaked": leaked, "wakeups_lost": c.get("wakeups_lost"),
        "writers_live": c.get("writers_live"), "frames": c.get("frames"),
        "rejects": c.get("rejects"), "resets": c.get("resets"),
        "threads_listening": base.get("threads"), "threads_after": after.get("threads"),
        "census_largest": max((g["count"] for g in after.get("census", [])), default=0),
        "in_use_growth_bytes": grown, "session_bytes": session_bytes,
        "in_use_growth_per_leaked_session": round(grown / leaked) if leaked else None,
        "rss_after_bytes": after.get("rss_bytes"), "peak_rss_bytes": after.get("hwm_bytes"),
        "wall_s": round(wall, 3), "client_s": result["client_s"], "client": result["client"],
        "run_dir": str(run_dir),
    }
    return verdict(args, report, result), report


def verdict(args, report, result):
    """Exit code of one run: the client must have succeeded; in hostile mode the
    gateway must have counted exactly what the client sent and freed everything."""
    problems = []
    client = result["client"]
    if result["client_exit"] != 0:
        problems.append(f"client exit {result['client_exit']}: {client.get('cases') or client.get('errors')}")
    if args.hostile:
        want = {"rejects": client.get("expected_rejects"), "resets": client.get("expected_resets"),
                "connections": client.get("connections")}
        for key, value in want.items():
            if report[key] != value:
                problems.append(f"gateway counted {key} = {report[key]}, the client sent {value}")
        if args.variant == "fixed" and report["sessions_leaked"] != 0:
            problems.append(f"{report['sessions_leaked']} sessions still allocated after the hostile clients")
    report["problems"] = problems
    return EXIT_FAILED if problems else EXIT_OK


def mb(n):
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def print_report(r):
    print(f"{r['variant']}: {r['connections']} connections, {r['sessions_leaked']} sessions leaked "
          f"({r['wakeups_lost']} wake-ups lost), threads {r['threads_listening']} -> {r['threads_after']} "
          f"(largest census group {r['census_largest']}), heap in use +{mb(r['in_use_growth_bytes'])}"
          + (f" = {r['in_use_growth_per_leaked_session']} B per leaked session" if r['sessions_leaked'] else "")
          + f", RSS after {mb(r['rss_after_bytes'])}, peak RSS {mb(r['peak_rss_bytes'])}, "
          f"wall {r['wall_s']} s (client {r['client_s']} s)")
    if r["rejects"] or r["resets"]:
        print(f"  rejects {r['rejects']}, resets {r['resets']}; client: {r['client'].get('cases')}")
    for p in r.get("problems", []):
        print(f"  PROBLEM: {p}")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    gateway_options = []
    if "--" in argv:
        i = argv.index("--")
        argv, gateway_options = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="gateway.py", description=__doc__.split("\n")[0].split(" - ")[1])
    p.add_argument("--build-dir", type=Path,
                   default=Path(os.environ.get("LEAKLAB_BUILD_DIR") or REPO / "build"))
    p.add_argument("--variant", choices=("leaky", "fixed"), default="leaky")
    p.add_argument("--scale", choices=("quick", "seed"), default="quick")
    p.add_argument("--allocator", choices=("glibc", "tcmalloc", "jemalloc"), default="glibc")
    p.add_argument("--run-dir", type=Path, help="where the files go (default: a new directory under /tmp)")
    p.add_argument("--timeout", type=float, default=600.0, help="bound on each run, s (default 600)")
    p.add_argument("--repeat", type=int, default=1, help="runs in a row, e.g. to see the natural race's spread")
    p.add_argument("--hostile", action="store_true", help="the hostile-input test instead of the load")
    p.add_argument("--json", action="store_true", help="print each run's report as JSON too")
    args = p.parse_args(argv)
    args.gateway_options = gateway_options
    if not 1 <= args.repeat <= 1000 or not 1 <= args.timeout <= 86400:
        p.error("--repeat must be in [1, 1000] and --timeout in [1, 86400]")
    root = args.run_dir or Path(tempfile.mkdtemp(prefix="rw_gateway."))
    status = EXIT_OK
    leaked = []
    for n in range(args.repeat):
        run_dir = root if args.repeat == 1 else root / f"run-{n + 1}"
        try:
            code, report = one_run(args, run_dir)
        except DriveError as e:
            print(f"gateway.py: {e}", file=sys.stderr)
            return EXIT_SYSTEM
        except KeyboardInterrupt:
            print("gateway.py: interrupted; both process groups were killed", file=sys.stderr)
            return EXIT_SYSTEM
        print_report(report)
        if args.json:
            print(json.dumps(report))
        leaked.append(report["sessions_leaked"])
        status = max(status, code)
    if args.repeat > 1:
        print(f"sessions leaked per run: {leaked} (min {min(leaked)}, max {max(leaked)})")
    print(f"run directory: {root}")
    return status


if __name__ == "__main__":
    sys.exit(main())
