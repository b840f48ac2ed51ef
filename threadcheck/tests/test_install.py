"""An installed copy of threadcheck (cmake --install BUILD --prefix DIR) builds and
links a three-line test program through pkg-config, and the program fails when
it leaves a thread behind (the violating twin).

    python3 test_install.py BUILD_DIR        (CTest: threadcheck.install)"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

BUILD = Path(sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("LEAKLAB_BUILD_DIR", "build")).resolve()

THREE_LINES = """#include <threadcheck.h>
/* goleak's `defer goleak.VerifyNone(t)`: fail when a thread outlives the test */
int main(void) { return threadcheck_verify_none(NULL) != THREADCHECK_OK; }
"""

LEAVES_A_THREAD = """#include <threadcheck.h>
#include <pthread.h>
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static void *stays(void *arg) { pthread_mutex_lock(&lock); for (;;) pthread_cond_wait(&never, &lock); return arg; }
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, stays, NULL);
    threadcheck_options opts = {.deadline_ms = 100};
    return threadcheck_verify_none(&opts) != THREADCHECK_OK;
}
"""


class Installed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("pkg-config"):
            raise unittest.SkipTest("pkg-config not installed")
        cls.tmp = tempfile.TemporaryDirectory()
        cls.prefix = Path(cls.tmp.name) / "prefix"
        r = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(cls.prefix)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"cmake --install failed:\n{r.stdout}{r.stderr}")
        pcs = list(cls.prefix.rglob("threadcheck.pc"))
        if len(pcs) != 1:
            raise AssertionError(f"expected one threadcheck.pc under {cls.prefix}, found {pcs}")
        cls.env = {**os.environ, "PKG_CONFIG_PATH": str(pcs[0].parent)}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def build(self, name, source):
        src = Path(self.tmp.name) / f"{name}.c"
        src.write_text(source)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "threadcheck"], env=self.env,
                               capture_output=True, text=True, check=True).stdout.split()
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "threadcheck"], env=self.env,
                                capture_output=True, text=True, check=True).stdout.strip()
        out = Path(self.tmp.name) / name
        cc = os.environ.get("CC", "cc")
        r = subprocess.run([cc, "-Wall", "-Werror", "-o", str(out), str(src), *flags, "-lpthread",
                            f"-Wl,-rpath,{libdir}"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out, Path(libdir)

    def test_files_are_installed(self):
        self.assertEqual(len(list(self.prefix.rglob("include/threadcheck.h"))), 1)
        self.assertTrue(list(self.prefix.rglob("libthreadcheck.so.1")))

    def test_three_line_program_passes(self):
        program, libdir = self.build("three_lines", THREE_LINES)
        ldd = subprocess.run(["ldd", str(program)], capture_output=True, text=True).stdout
        loaded = [line.split("=>")[1].split("(")[0].strip() for line in ldd.splitlines()
                  if "libthreadcheck.so" in line and "=>" in line]
        self.assertEqual(len(loaded), 1, ldd)
        self.assertTrue(Path(loaded[0]).resolve().is_relative_to(self.prefix.resolve()),
                        f"{loaded[0]} is not the installed copy under {self.prefix}")
        r = subprocess.run([str(program)], capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stderr), (0, ""))

    def test_program_leaving_a_thread_fails(self):
        program, _ = self.build("leaves_a_thread", LEAVES_A_THREAD)
        r = subprocess.run([str(program)], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("1 @ stays <- start_thread", r.stderr)


if __name__ == "__main__":
    unittest.main()
