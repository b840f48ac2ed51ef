"""Python programs of the host corpus (issue 20): run by the system's python3,
never imported. `python3 py_cases.py CASE`:

  joined           four threads take work from a queue; main joins them all
  daemon           two daemon threads wait on an Event nobody sets; main returns
                   (Python does not join daemon threads: they outlive main)
  pool_subprocess  a ThreadPoolExecutor whose tasks also run a subprocess
                   (the child inherits LD_PRELOAD: the library runs in it too)

Observed (HOST_OBSERVE="READY_FD,GO_FD", tests/host/README.md): the threads
are held at their wait while the runner looks, then the program goes on.
Every wait is bounded (60 s)."""
import concurrent.futures
import os
import queue
import select
import subprocess
import sys
import threading
import time

LIMIT_S = 60


def rendezvous():
    """Says "ready" to the runner and waits for its "go" (observed runs only)."""
    spec = os.environ.get("HOST_OBSERVE")
    if not spec:
        return
    ready_fd, go_fd = (int(x) for x in spec.split(","))
    os.write(ready_fd, b"ready\n")
    line = b""
    while not line.endswith(b"\n"):
        if not select.select([go_fd], [], [], LIMIT_S)[0]:
            sys.exit("py_cases: no go from the runner in 60 s")
        chunk = os.read(go_fd, 1)
        if not chunk:
            sys.exit("py_cases: the runner closed the go pipe")
        line += chunk


def joined():
    work, results = queue.Queue(), queue.Queue()
    parked = threading.Barrier(5, timeout=LIMIT_S)

    def worker():
        parked.wait()
        while (item := work.get(timeout=LIMIT_S)) is not None:
            results.put(item * item)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    parked.wait()
    rendezvous()  # the four wait in Queue.get: a lock's sem_wait/futex
    for i in range(100):
        work.put(i)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join(LIMIT_S)
    total = sum(results.get_nowait() for _ in range(100))
    print(f"joined: 4 threads squared 100 numbers, sum {total}; all joined: "
          f"{not any(t.is_alive() for t in threads)}")


def await_futex_wait(native_ids):
    """Waits (bounded) until each thread sleeps in a futex wait, by the
    kernel's view (/proc/self/task/TID/{stat,syscall}). A daemon thread still
    on its way to the wait when Python finalizes ends itself (it cannot take
    the GIL any more): then nothing would outlive main."""
    deadline = time.monotonic() + LIMIT_S
    for tid in native_ids:
        while True:
            try:
                stat = open(f"/proc/self/task/{tid}/stat").read()
                call = open(f"/proc/self/task/{tid}/syscall").read().split()
            except OSError:
                stat, call = ")  ", []
            if stat[stat.rindex(")") + 2] == "S" and call[:1] == ["202"]:  # SYS_futex on x86-64
                break
            if time.monotonic() > deadline:
                sys.exit(f"py_cases: thread {tid} never reached its wait")
            time.sleep(0.001)


def daemon():
    never = threading.Event()
    ids = queue.Queue()

    def waiter():
        ids.put(threading.get_native_id())
        never.wait()

    for _ in range(2):
        threading.Thread(target=waiter, daemon=True).start()
    await_futex_wait([ids.get(timeout=LIMIT_S) for _ in range(2)])
    rendezvous()
    print("daemon: two daemon threads wait on an Event nobody sets; main returns")


def pool_subprocess():
    def task(i):
        if i == 3:
            out = subprocess.run(["/bin/echo", "child of task 3"], capture_output=True, timeout=LIMIT_S, check=True)
            return out.stdout.decode().strip()
        return str(i * i)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        first = list(pool.map(task, range(3)))
        rendezvous()  # the pool's two threads idle in its work queue
        rest = list(pool.map(task, range(3, 6)))
    print("pool_subprocess:", ", ".join(first + rest))


CASES = {"joined": joined, "daemon": daemon, "pool_subprocess": pool_subprocess}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(f"usage: py_cases.py {{{','.join(CASES)}}}", file=sys.stderr)
        sys.exit(2)
    CASES[sys.argv[1]]()
