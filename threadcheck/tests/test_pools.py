"""The runtime threads ordinary C programs carry are ignored by default at exit, each known
by its library's own code on its stack (threadcheck/src/verify.c, runtime_pools), and every
one is reported with THREADCHECK_OPTIONS=default_ignores=0 (so each case could fail).

pool_program MODE leaves one library's threads alive at exit: glibc's timer, AIO and
getaddrinfo_a helpers always; libgomp, OpenBLAS and GLib where the build found them
(POOL_PROGRAMS maps each mode built to its binary, one per library). glib_stuck is the negative control: a GThreadPool thread
stuck in the program's own code is not an idle pool thread and is reported by default.

Run by CTest (label threadcheck) with THREADCHECK_LIB and POOL_PROGRAMS set."""
import os
import subprocess
import sys
import unittest

LIB = os.environ.get("THREADCHECK_LIB", "")
# mode -> the pool_program binary built with that library (POOL_PROGRAMS: mode=path,...)
PROGRAMS = dict(item.split("=", 1) for item in os.environ.get("POOL_PROGRAMS", "").split(",") if "=" in item)
MODES = list(PROGRAMS)

# mode -> what the report names when the pool is reported (its library's code)
SHOWN_AS = {
    "timer": "timer_helper_thread",
    "aio": "handle_fildes_io",
    "gai": "handle_requests",
    "openmp": "libgomp",
    "openblas": "openblas",
    "glib_pool": "libglib-2.0",
    "glib_worker": "libglib-2.0",
    "glib_stuck": "pool_task",
}


# Libraries whose destructor joins their threads: nothing of theirs is left for the check
# at exit (it runs after every library's destructor), only the API sees them.
JOINED_BY_DESTRUCTOR = {"openblas"}


def run(mode, options=None, how="preload"):
    """The check at exit (how="preload", LD_PRELOAD) or threadcheck_verify() at the end of
    main (how="verify", the API, every library still loaded)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "THREADCHECK_OPTIONS")}
    argv = [PROGRAMS[mode], mode]
    if how == "preload":
        env["LD_PRELOAD"] = LIB
    else:
        argv.append("verify")
    if options:
        env["THREADCHECK_OPTIONS"] = options
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


class DefaultIgnores(unittest.TestCase):
    def test_every_pool_is_ignored_by_default_and_reported_without(self):
        for mode in MODES:
            for how in ("verify", "preload"):
                if how == "preload" and mode in JOINED_BY_DESTRUCTOR:
                    continue
                with self.subTest(mode=mode, how=how):
                    self.check(mode, how)

    def check(self, mode, how):
        # without the default ignores: reported (a short deadline, so that a helper which
        # ends itself after an idle second is still there)
        r = run(mode, "default_ignores=0:deadline_ms=100", how)
        self.assertEqual(r.returncode, 66, f"{mode}: its thread must be there\n{r.stderr}")
        self.assertIn(SHOWN_AS[mode], r.stderr)
        r = run(mode, None, how)
        if mode == "glib_stuck":  # a pool thread in the program's own code counts
            self.assertEqual(r.returncode, 66, r.stderr)
            self.assertIn("pool_task", r.stderr)
        else:
            self.assertEqual((r.returncode, r.stderr), (0, ""), f"{mode}: not ignored by default")

    def test_help_lists_the_default_ignores(self):
        r = run("timer", "help=1")
        for name in ("libgomp (OpenMP) thread pool", "OpenBLAS worker threads", "GLib thread pool",
                     "glibc timer_create(SIGEV_THREAD) helper", "glibc POSIX AIO helpers",
                     "glibc getaddrinfo_a helpers"):
            self.assertIn(name, r.stderr)


if __name__ == "__main__":
    if not (LIB and MODES):
        print("SKIP: THREADCHECK_LIB and POOL_PROGRAMS must be set (CTest sets them)")
        sys.exit(77)
    print(f"modes built: {', '.join(MODES)}")
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
