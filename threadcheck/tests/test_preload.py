"""LD_PRELOAD=libthreadcheck.so: the check at exit, its exit code, options and report.

Run by CTest (label threadcheck) as:
    python3 -m unittest test_preload   with THREADCHECK_LIB, EXIT_PROGRAM, LEAKLAB_BUILD_DIR set.
Every case has its violating twin: a program that leaves a thread must fail
(66), the same program without it must pass (0)."""
import os
import re
import subprocess
import tempfile
import unittest
from pathlib import Path

LIB = os.environ.get("THREADCHECK_LIB", "")
PROGRAM = os.environ.get("EXIT_PROGRAM", "")
BUILD = Path(os.environ.get("LEAKLAB_BUILD_DIR", "build"))


def run(argv, options=None, preload=True, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "THREADCHECK_OPTIONS")}
    if preload:
        env["LD_PRELOAD"] = LIB
    if options is not None:
        env["THREADCHECK_OPTIONS"] = options
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


class PlainProgram(unittest.TestCase):
    def test_clean_exit_passes_silently(self):
        r = run([PROGRAM, "clean"])
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout, "main done\n")

    def test_return_from_main_with_a_thread_left_fails_66(self):
        r = run([PROGRAM, "return"], "deadline_ms=100")
        self.assertEqual(r.returncode, 66, r.stderr)
        self.assertIn("threadcheck: found unexpected threads at exit: 1 thread in 1 group", r.stderr)
        self.assertIn("\n1 @ stuck_forever <- stuck <- start_thread", r.stderr)
        self.assertIn("exit_program.c:", r.stderr)  # file:line
        self.assertIn("SUMMARY: 1 unexpected thread in 1 group (exit code 66)", r.stderr)
        self.assertEqual(r.stdout, "main done\n")  # flushed before the exit

    def test_exit_call_with_a_thread_left_fails_66(self):
        r = run([PROGRAM, "exit"], "deadline_ms=100")
        self.assertEqual(r.returncode, 66, r.stderr)
        self.assertIn("1 @ stuck_forever <- stuck", r.stderr)

    def test_without_preload_nothing_is_checked(self):
        r = run([PROGRAM, "return"], preload=False)
        self.assertEqual((r.returncode, r.stderr), (0, ""))

    def test_exitcode_option(self):
        r = run([PROGRAM, "return"], "exitcode=3:deadline_ms=50")
        self.assertEqual(r.returncode, 3, r.stderr)

    def test_ignore_top_and_any(self):
        self.assertEqual(run([PROGRAM, "library"], "deadline_ms=50").returncode, 66)
        r = run([PROGRAM, "library"], "deadline_ms=50:ignore_top=stuck_forever")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        r = run([PROGRAM, "library"], "deadline_ms=50:ignore_any=library_poller")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(run([PROGRAM, "library"], "deadline_ms=50:ignore_top=library_poller").returncode, 66)

    def test_thread_winding_down_passes_with_retry_fails_without(self):
        r = run([PROGRAM, "winding"], "deadline_ms=5000")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        r = run([PROGRAM, "winding"], "deadline_ms=1")
        self.assertEqual(r.returncode, 66, r.stderr)
        self.assertIn("1 @ ", r.stderr)  # its stack, or its timed wait (not signalled: EINTR-prone)

    def test_log_path_writes_path_pid(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = run([PROGRAM, "return"], f"deadline_ms=50:log_path={tmp}/tc")
            self.assertEqual((r.returncode, r.stderr), (66, ""))
            files = list(Path(tmp).glob("tc.*"))
            self.assertEqual(len(files), 1)
            self.assertRegex(files[0].name, r"^tc\.\d+$")
            self.assertIn("1 @ stuck_forever", files[0].read_text())

    def test_verbosity_says_when_it_passes(self):
        r = run([PROGRAM, "clean"], "verbosity=1")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stderr, r"^threadcheck: no unexpected threads at exit \(pid \d+\)\n$")

    def test_bad_option_exits_2_naming_it(self):
        r = run([PROGRAM, "clean"], "deadline_ms=soon")
        self.assertEqual(r.returncode, 2)
        self.assertIn("THREADCHECK_OPTIONS: deadline_ms=soon: expected an integer in [1, 3600000]", r.stderr)
        r = run([PROGRAM, "clean"], "exitcod=3")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option 'exitcod'", r.stderr)


class WhenTheCheckRuns(unittest.TestCase):
    """The check at exit runs after the program's atexit handlers and its own destructors
    and after every shared library's destructor: a library that joins its own thread in
    its destructor leaves nothing behind. (With atexit() from the library the check ran at
    libthreadcheck's own finalisation, before the other libraries' destructors, and reported
    such a thread: exit 66 for a correct program.)"""

    def test_after_the_destructors_of_the_programs_libraries(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "lib.c").write_text(
                '#include <pthread.h>\n#include <unistd.h>\n'
                'static int fds[2]; static pthread_t logger;\n'
                'static void *log_main(void *a) { char c; (void)a; while (read(fds[0], &c, 1) > 0) ; return 0; }\n'
                '__attribute__((constructor)) static void init(void) {\n'
                '    if (pipe(fds) == 0) pthread_create(&logger, 0, log_main, 0); }\n'
                '__attribute__((destructor)) static void fini(void) {\n'
                '    close(fds[1]); pthread_join(logger, 0); write(2, "library destructor\\n", 19); }\n'
                'void lib_fn(void) {}\n')
            Path(tmp, "main.c").write_text(
                '#include <stdlib.h>\n#include <unistd.h>\nvoid lib_fn(void);\n'
                'static void at_exit(void) { write(2, "program atexit\\n", 15); }\n'
                'int main(void) { atexit(at_exit); lib_fn(); return 0; }\n')
            for argv in (["cc", "-shared", "-fPIC", "-pthread", "-o", f"{tmp}/liblate.so", f"{tmp}/lib.c"],
                         ["cc", "-o", f"{tmp}/main", f"{tmp}/main.c", f"-L{tmp}", "-llate", f"-Wl,-rpath,{tmp}"]):
                subprocess.run(argv, check=True, capture_output=True, timeout=120)
            r = run([f"{tmp}/main"], "verbosity=1")
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = [line.split(" (pid")[0] for line in r.stderr.splitlines()]
            self.assertEqual(lines, ["program atexit", "library destructor",
                                     "threadcheck: no unexpected threads at exit"])

    def test_exit_from_a_thread_with_the_smallest_stack(self):
        """exit() runs the check on the calling thread: one made with PTHREAD_STACK_MIN
        (16 KiB) is too small for it (the old check died there of SIGSEGV); it runs on a
        stack of its own."""
        r = run([PROGRAM, "small_stack"], "deadline_ms=50")
        self.assertEqual(r.returncode, 66, r.stderr)
        self.assertIn("1 @ stuck_forever <- stuck <- start_thread", r.stderr)


@unittest.skipUnless((BUILD / "scenarios" / "blocked_workers").exists(), "blocked_workers not built")
class BlockedWorkers(unittest.TestCase):
    """The issue's acceptance: leaky exits 66 naming the group and its stack, fixed exits 0."""

    def scenario(self, variant):
        with tempfile.TemporaryDirectory() as tmp:
            return run([str(BUILD / "scenarios" / "blocked_workers"), "--variant", variant, "--scale", "quick",
                        "--events", f"{tmp}/events.jsonl"])

    def test_leaky_exits_66_with_the_group(self):
        r = self.scenario("leaky")
        self.assertEqual(r.returncode, 66, r.stderr[-2000:])
        self.assertIn("found unexpected threads at exit: 1000 threads in 1 group", r.stderr)
        # the channel's wait may show above the receive (wait_on, inlined into it)
        self.assertRegex(r.stderr, r"\n1000 @ (\S+ <- )?ll_chan_recv <- worker <- start_thread")
        self.assertRegex(r.stderr, r"#\t0x[0-9a-f]+\tworker\+0x[0-9a-f]+\t\S*scenarios/blocked_workers\.c:\d+")

    def test_fixed_exits_0_silently(self):
        r = self.scenario("fixed")
        self.assertEqual((r.returncode, r.stderr), (0, ""))


if __name__ == "__main__":
    unittest.main()
