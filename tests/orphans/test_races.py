#!/usr/bin/env python3
"""test_races.py - orphans' two races of microseconds, held open by gdb
(races.c and races_ctor.c say what each is). RACES_PROGRAM is races.c's
program (linked with liborphans), RACES_CTOR_PROGRAM races_ctor_main (run
with ORPHANS_LIB preloaded), ORPHANS_SOURCE the folder of orphans' sources
(a breakpoint is set on a line of heap.c). gdb stops and resumes threads of
a program it started itself: nothing else is traced.

    test_races.py ctor | unwind | unwind-control"""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PROGRAM = os.environ.get("RACES_PROGRAM", "")
CTOR_PROGRAM = os.environ.get("RACES_CTOR_PROGRAM", "")
LIB = os.environ.get("ORPHANS_LIB", "")
# orphans' stop signal (and any real-time signal) is the program's business:
# gdb passes them on without stopping.
QUIET_SIGNALS = "handle " + " ".join(f"SIG{n}" for n in range(34, 65)) + " nostop noprint pass"
SOURCE = Path(os.environ.get("ORPHANS_SOURCE", Path(__file__).resolve().parents[2] / "threadcheck/orphans/src"))

# gdb's side of `ctor`: at liborphans' heap_init (the main thread running
# the constructors), the constructor's thread, already in its allocation
# loop, is run alone until it is inside the block table with a shard lock
# held; then the main thread alone finishes heap_init, and the shard's lock
# word is read.
CTOR = r'''
import gdb, os
def ex(c): return gdb.execute(c, to_string=True)
ex("set pagination off"); ex("set confirm off"); ex("set breakpoint pending on")
ex("%(quiet)s"); ex("set startup-with-shell off"); ex("set environment LD_PRELOAD=%(lib)s")
gdb.Breakpoint("heap_init")
ex("run")
threads = gdb.selected_inferior().threads()
main = [t for t in threads if t.num == 1][0]
others = [t for t in threads if t.num != 1]
if gdb.selected_frame().name() != "heap_init" or not others:
    print("RACES: no thread of the constructor's library is running at liborphans' heap_init", flush=True)
    gdb.execute("kill"); os._exit(99)
ex("delete")
ex("break heap.c:%(line)d if $_thread != 1")
ex("set scheduler-locking on")
others[0].switch()
ex("continue")
holder = gdb.selected_thread().num
shard = int(gdb.parse_and_eval("s - 'heap.c'::shards"))
ex("delete")
main.switch()
ex("finish")
word = int(gdb.parse_and_eval("'heap.c'::shards[%%d].lock.__data.__lock" %% shard))
print("RACES-LOCK-AFTER-CONSTRUCTOR thread=%%d shard=%%d lock=%%d" %% (holder, shard, word))
ex("set scheduler-locking off")
ex("continue")
'''

# gdb's side of `unwind`: when the report starts unwinding the leaked
# threads (the world runs again), the victim's return address into
# victim_main is overwritten with one inside decoy_frame.
UNWIND = r'''
import gdb, re
def ex(c): return gdb.execute(c, to_string=True)
ex("set pagination off"); ex("set confirm off"); ex("set breakpoint pending on")
ex("%(quiet)s")
gdb.Breakpoint("raw_stacks")
ex("run")
here = gdb.selected_thread()
victim = [t for t in gdb.selected_inferior().threads() if t.name == "victim"][0]
victim.switch()
f = gdb.newest_frame()
while f is not None and f.name() != "victim_wait":
    f = f.older()
f.select()
slot = int(re.search(r"rip at (0x[0-9a-f]+)", ex("info frame")).group(1), 16)
ex("set var *(void **)%%#x = (char *)decoy_frame + 2" %% slot)
print("RACES-TAMPERED slot=%%#x" %% slot)
here.switch()
ex("delete")
ex("continue")
'''


def lock_line():
    """The line after table_insert's shard lock, in heap.c."""
    lines = (SOURCE / "heap.c").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("static void table_insert("))
    at = next(i for i in range(start, len(lines)) if "pthread_mutex_lock(&s->lock);" in lines[i])
    return at + 2  # 1-based, and the line after the lock


def under_gdb(script, program):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        return subprocess.run(["gdb", "-nx", "-batch", "-x", f.name, "--args", program],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    finally:
        os.unlink(f.name)


def main(argv):
    if len(argv) != 1 or argv[0] not in ("ctor", "unwind", "unwind-control") or not (PROGRAM and CTOR_PROGRAM and LIB):
        print("usage: RACES_PROGRAM=... test_races.py ctor|unwind|unwind-control", file=sys.stderr)
        return 2
    mode = argv[0]
    if mode == "unwind-control":
        # Without gdb the report names the frame the victim waits in: the
        # check below (no decoy_frame) is made on a report that has stacks.
        r = subprocess.run([PROGRAM], capture_output=True, text=True, timeout=120)
        print(r.stdout + r.stderr)
        ok = r.returncode == 0 and "victim_wait" in r.stdout and "1 leaked thread" in r.stdout.replace("threads", "thread")
        print("PASS" if ok else "FAIL: the untouched report does not show the victim leaked in victim_wait")
        return 0 if ok else 1
    if mode == "ctor":
        done = under_gdb(CTOR % {"line": lock_line(), "quiet": QUIET_SIGNALS, "lib": LIB}, CTOR_PROGRAM)
        print(done.stdout[-4000:] + done.stderr[-2000:])
        m = re.search(r"RACES-LOCK-AFTER-CONSTRUCTOR thread=(\d+) shard=(\d+) lock=(-?\d+)", done.stdout)
        if not m or "races: the constructor's thread stopped" not in done.stdout:
            print("FAIL: gdb did not reach the point to check (see above)")
            return 99
        if int(m.group(3)) == 0:
            print(f"FAIL: shard {m.group(2)}'s lock, held by thread {m.group(1)}, is unlocked after liborphans' "
                  "constructor: it was re-initialised under its holder")
            return 1
        print(f"PASS: shard {m.group(2)}'s lock is still held by thread {m.group(1)} after liborphans' constructor")
        return 0
    done = under_gdb(UNWIND % {"quiet": QUIET_SIGNALS}, PROGRAM)
    print(done.stdout[-6000:] + done.stderr[-2000:])
    if "RACES-TAMPERED" not in done.stdout or "SUMMARY: orphans" not in done.stdout:
        print("FAIL: gdb did not reach the report, or the report did not come (see above)")
        return 99
    if "decoy_frame" in done.stdout.split("RACES-TAMPERED", 1)[1]:
        print("FAIL: the report names decoy_frame, a frame the victim was not in when it was analysed")
        return 1
    print("PASS: the victim's stack as it was analysed, or none; never the rewritten one")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
