"""`leaklab threads PID` on live processes: a held quick-scale blocked_workers (one group of
1,000 at ll_chan_recv <- worker, and the process runs on untraced afterwards), ordinary
programs not built with leaklab (`sleep`, a small C program built here), bad PIDs (exit 2)
and PIDs that cannot be traced (exit 99, naming the cause and the remedy).

Exits 77 when threaddump or blocked_workers is not built."""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the `scripts` package

from scripts.tools import pprof_format  # noqa: E402
from support import (DUMPER, HeldTarget, leaklab_threads, require_dumper, tasks, traced_or_stopped,  # noqa: E402
                     wait_until, read_line)

QUICK_WORKERS = 1000


class HeldBlockedWorkers(unittest.TestCase):
    """One held target for the class: dumped several ways, then checked it still runs."""

    @classmethod
    def setUpClass(cls):
        cls.target = HeldTarget("quick").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.target.kill()

    def assert_released(self):
        self.assertEqual(traced_or_stopped(self.target.pid), {},
                         "every thread must be untraced (TracerPid 0) and not stopped after the dump")

    def test_json_one_group_of_the_workers_at_the_wait_site(self):
        r = leaklab_threads(self.target.pid, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["threads_seen"], QUICK_WORKERS + 1)
        self.assertEqual(doc["unwound"], QUICK_WORKERS + 1)
        largest = doc["groups"][0]
        self.assertEqual(largest["count"], QUICK_WORKERS, [(g["count"], g["stack"]) for g in doc["groups"]])
        stack = largest["stack"]
        self.assertIn("ll_chan_recv", stack)
        # worker called ll_chan_recv: adjacent, callee first (the wait may sit in a helper below it)
        self.assertEqual(stack[stack.index("ll_chan_recv") + 1:][:2], ["worker", "start_thread"], stack)
        self.assertEqual(largest["state"], "S")
        self.assertEqual(largest["syscall"], "futex")
        self.assertRegex(largest["wait_address"], r"^0x[0-9a-f]+$")
        # file:line from the scenario's own debug info
        where = {f["function"]: f for f in largest["frames"]}
        self.assertTrue(where["ll_chan_recv"]["file"].endswith("common/chan.c"), where["ll_chan_recv"])
        self.assertTrue(where["worker"]["file"].endswith("scenarios/blocked_workers.c"), where["worker"])
        self.assertGreater(where["worker"]["line"], 0)
        # the main thread is the other group, held in pause() under ll_main
        self.assertEqual(sum(g["count"] for g in doc["groups"]), QUICK_WORKERS + 1)
        main = [g for g in doc["groups"] if "ll_main" in g["stack"]]
        self.assertEqual([g["count"] for g in main], [1])
        self.assertEqual(main[0]["tids"], [self.target.pid])
        self.assert_released()

    def test_text_dump_reads_like_gos_debug_1(self):
        r = leaklab_threads(self.target.pid)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], f"threads profile: total {QUICK_WORKERS + 1}, pid {self.target.pid} (blocked_workers)")
        headers = [line for line in lines if " @ " in line]
        self.assertRegex(headers[0], rf"^{QUICK_WORKERS} @ (\S+ <- )*ll_chan_recv <- worker <- start_thread")
        self.assertRegex(r.stdout, r"#\tstate S \(sleeping\), futex wait on 0x[0-9a-f]+")
        self.assertRegex(r.stdout, r"#\t0x[0-9a-f]+\tll_chan_recv\+0x[0-9a-f]+\t\S*common/chan\.c:\d+")
        self.assertRegex(r.stdout, r"#\t0x[0-9a-f]+\tworker\+0x[0-9a-f]+\t\S*scenarios/blocked_workers\.c:\d+")
        self.assert_released()

    def test_pprof_one_sample_per_group_of_identical_threads(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "threads.pb.gz"
            r = leaklab_threads(self.target.pid, "--pprof", path)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"wrote {path}", r.stderr)
            p = pprof_format.decode(path.read_bytes())
        self.assertEqual(p["sample_type"], [("threads", "count")])
        # the workers (identical stack and labels: one futex) and main, as a goroutine profile
        self.assertEqual(sorted(s["values"] for s in p["samples"]), [[1], [QUICK_WORKERS]])

        def names(sample):
            return [p["functions"][fid]["name"] for lid in sample["location_ids"]
                    for fid, _ in p["locations"][lid]["lines"]]
        under_worker = [s for s in p["samples"] if "worker" in names(s)]
        self.assertEqual(len(under_worker), 1)
        self.assertEqual(under_worker[0]["values"], [QUICK_WORKERS])
        self.assertTrue(all("ll_chan_recv" in names(s) for s in under_worker))
        self.assertEqual({s["labels"]["syscall"] for s in under_worker}, {"futex"})
        self.assertEqual(len({s["labels"]["wait"] for s in under_worker}), 1, "one futex, as in the group")
        self.assertTrue(all(m["has_functions"] for m in p["mappings"].values()))
        self.assert_released()

    def test_zz_target_still_runs_after_the_dumps(self):
        """Last (zz): the dumps above left a process that still answers SIGTERM."""
        leaklab_threads(self.target.pid, "--json")
        self.assert_released()
        end, status = self.target.end_and_status()
        self.assertEqual((end["reason"], status), ("hold ended by a signal", 0))


class BadPids(unittest.TestCase):
    def check(self, pid, message, code=2):
        r = leaklab_threads(pid)
        self.assertEqual(r.returncode, code, (pid, r.stdout, r.stderr))
        self.assertIn(message, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertNotIn("Traceback", r.stderr)

    def test_not_a_number(self):
        for text in ("abc", "12x", "-5", "1.5", " 7"):
            with self.subTest(pid=text):
                self.check(text, f"PID: '{text}' is not a number")

    def test_out_of_range(self):
        self.check("0", "PID: 0 is out of range")
        self.check("99999999999", "PID: 99999999999 is out of range")

    def test_no_such_process(self):
        # Above pid_max: never handed out (a reaped child's pid could be reused at
        # once here: pid_max is 32768 and tests start thousands of threads).
        pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
        self.check(pid, f"no process {pid}")

    def test_a_zombie(self):
        child = subprocess.Popen(["true"])
        wait_until(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                   30, "the child to become a zombie")
        try:
            self.check(child.pid, "has exited (a zombie")
        finally:
            child.wait(timeout=30)

    def test_a_thread_id_names_its_process(self):
        with HeldTarget("quick", extra=("--workers", "2")) as target:
            tid = max(tasks(target.pid))
            self.check(tid, f"{tid} is a thread of process {target.pid}, not a process; pass {target.pid}")


PTRACE_SEIZE = 0x4206


class Refused(unittest.TestCase):
    """ptrace refused: exit 99, the cause and the remedy named, nothing left behind."""

    def test_already_traced_by_another_process(self):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        sleeper = subprocess.Popen(["sleep", "300"])
        try:
            # This test process seizes sleep (no stop): now it has a tracer.
            self.assertEqual(libc.ptrace(PTRACE_SEIZE, sleeper.pid, None, None), 0, os.strerror(ctypes.get_errno()))
            r = leaklab_threads(sleeper.pid)
            self.assertEqual(r.returncode, 99, r.stderr)
            self.assertIn(f"already traced by process {os.getpid()}", r.stderr)
            self.assertIn("Remedy: detach that tracer", r.stderr)
        finally:
            sleeper.kill()
            sleeper.wait(timeout=30)

    def test_another_users_process(self):
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            self.skipTest("needs root and setpriv to run threaddump as another user")
        sleeper = subprocess.Popen(["sleep", "300"])  # runs as root
        try:
            r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                str(DUMPER), str(sleeper.pid)], capture_output=True, text=True, timeout=60)
            if "Permission denied" in r.stderr and "exec" in r.stderr.lower():
                self.skipTest(f"uid 65534 cannot run {DUMPER}: {r.stderr.strip()}")
            self.assertEqual(r.returncode, 99, r.stderr)
            self.assertIn("it runs as uid 0 and you are uid 65534", r.stderr)
            self.assertIn("Remedy: run as uid 0, or as root", r.stderr)
            self.assertEqual(traced_or_stopped(sleeper.pid), {})
        finally:
            sleeper.kill()
            sleeper.wait(timeout=30)


TINY_PROGRAM = textwrap.dedent("""\
    /* Not a leaklab program: three threads blocked three ways, main joining them. */
    #include <pthread.h>
    #include <stdio.h>
    #include <unistd.h>

    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
    static int pipe_fds[2];

    __attribute__((noinline)) static void *wait_on_cond(void *arg)
    {
        pthread_mutex_lock(&lock);
        for (;;)
            pthread_cond_wait(&never, &lock); /* WAIT_ON_COND */
        return arg;
    }

    __attribute__((noinline)) static void *read_forever(void *arg)
    {
        char c;
        read(pipe_fds[0], &c, 1); /* READ_FOREVER */
        return arg;
    }

    __attribute__((noinline)) static void join_all(pthread_t *threads, int n)
    {
        for (int i = 0; i < n; i++)
            pthread_join(threads[i], NULL); /* JOIN_ALL */
    }

    int main(void)
    {
        alarm(300); /* never outlives a test that forgot it */
        pipe(pipe_fds);
        pthread_t threads[3];
        pthread_create(&threads[0], NULL, wait_on_cond, NULL);
        pthread_create(&threads[1], NULL, wait_on_cond, NULL);
        pthread_create(&threads[2], NULL, read_forever, NULL);
        printf("started\\n");
        fflush(stdout);
        join_all(threads, 3);
        return 0;
    }
    """)


class OrdinaryPrograms(unittest.TestCase):
    def test_sleep_without_debug_info(self):
        sleeper = subprocess.Popen(["sleep", "300"])
        try:
            wait_until(lambda: "nanosleep" in Path(f"/proc/{sleeper.pid}/wchan").read_text()
                       or Path(f"/proc/{sleeper.pid}/syscall").read_text().split()[0] == "230",
                       30, "sleep to block in clock_nanosleep")
            r = leaklab_threads(sleeper.pid, "--json")
            self.assertEqual(r.returncode, 0, r.stderr)
            doc = json.loads(r.stdout)
            self.assertEqual([g["count"] for g in doc["groups"]], [1])
            g = doc["groups"][0]
            self.assertEqual(g["syscall"], "clock_nanosleep")
            names = [f["function"] for f in g["frames"]]
            self.assertTrue(any("nanosleep" in n for n in names), names)
            self.assertGreaterEqual(len(names), 3, "unwound past libc into sleep itself")
            self.assertEqual(traced_or_stopped(sleeper.pid), {})
            self.assertIsNone(sleeper.poll(), "sleep still runs")
        finally:
            sleeper.kill()
            sleeper.wait(timeout=30)

    def test_a_small_c_program_built_here(self):
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if not cc:
            self.skipTest("no C compiler")
        with tempfile.TemporaryDirectory() as tmp:
            source, binary = Path(tmp) / "tiny.c", Path(tmp) / "tiny"
            source.write_text(TINY_PROGRAM)
            subprocess.run([cc, "-g", "-O1", "-pthread", "-o", str(binary), str(source)], check=True, timeout=120)
            lines = {tag: n for n, text in enumerate(TINY_PROGRAM.splitlines(), 1)
                     for tag in ("WAIT_ON_COND", "READ_FOREVER", "JOIN_ALL") if tag in text}
            proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE)
            try:
                self.assertEqual(read_line(proc.stdout, time.monotonic() + 30, "'started'"), "started\n")
                # Every thread in its blocking call (the kernel says so; nothing to wait on).
                wait_until(lambda: len(tasks(proc.pid)) == 4 and all(
                    Path(f"/proc/{proc.pid}/task/{t}/syscall").read_text().split()[0] in ("0", "202")
                    for t in tasks(proc.pid)), 30, "the four threads to block")
                r = leaklab_threads(proc.pid, "--json")
                self.assertEqual(r.returncode, 0, r.stderr)
                doc = json.loads(r.stdout)
                found = {(g["count"], g["stack"][0]) for g in doc["groups"]}
                self.assertEqual(found, {(2, "wait_on_cond"), (1, "read_forever"), (1, "join_all")}, doc["groups"])
                for g in doc["groups"]:
                    top = next(f for f in g["frames"] if f["function"] == g["stack"][0])
                    tag = g["stack"][0].upper()
                    self.assertEqual((Path(top["file"]).name, top["line"]), ("tiny.c", lines[tag]), g["frames"])
                join = next(g for g in doc["groups"] if g["stack"][0] == "join_all")
                self.assertEqual(join["stack"][1], "main")
                self.assertEqual(traced_or_stopped(proc.pid), {})
                self.assertIsNone(proc.poll())
            finally:
                proc.kill()
                proc.wait(timeout=30)
                proc.stdout.close()


if __name__ == "__main__":
    require_dumper()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    unittest.main(verbosity=2)
