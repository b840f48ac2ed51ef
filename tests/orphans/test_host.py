"""orphans must not change what its host does: `test_host.py CASE [ARG]` runs
host_program CASE alone and with liborphans preloaded; exit status, stdout
and stderr must be the same (and the plain run what the case expects).

Exit 0 when they agree, 1 when they differ (both runs printed), 99 when the
plain run itself is not as the case says (the machine, not orphans)."""

import os
import subprocess
import sys

LIB = os.environ["ORPHANS_LIB"]
PROGRAM = os.environ["HOST_PROGRAM"]
TIMEOUT_S = 120

# The plain run's exit status per case.
EXPECTED_STATUS = {"stack": 1}
# Preloaded runs per case: where a stack overflow lands depends on the
# address-space layout (it may write into a mapping below instead of the
# guard page), so the stack cases run several times.
RUNS = {"stack": 5}


def run(args, preload):
    env = dict(os.environ)
    env.pop("ORPHANS_OPTIONS", None)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = LIB
    try:
        done = subprocess.run([PROGRAM, *args], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        return ("timeout", e.stdout or "", e.stderr or "")
    return (done.returncode, done.stdout, done.stderr)


def show(name, result):
    status, out, err = result
    return f"{name}: status {status}\n  stdout: {out!r}\n  stderr: {err[-2000:]!r}"


def main():
    if len(sys.argv) < 2:
        print("usage: test_host.py CASE [ARG]", file=sys.stderr)
        return 2
    args = sys.argv[1:]
    plain = run(args, preload=False)
    if plain[0] != EXPECTED_STATUS.get(args[0], 0):
        print("the plain run is not as designed (not orphans' doing):\n" + show("plain", plain))
        return 99
    print(show("plain", plain))
    for i in range(RUNS.get(args[0], 1)):
        preloaded = run(args, preload=True)
        print(show(f"preloaded (run {i + 1})", preloaded))
        if preloaded != plain:
            print(f"FAIL: {' '.join(args)}: liborphans changed what the program does")
            return 1
    print(f"ok: {' '.join(args)}: same status and output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
