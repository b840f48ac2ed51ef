"""An installed copy of orphans (cmake --install BUILD --prefix DIR) builds and
links a small test program through pkg-config (pkg-config orphans pulls in
threadcheck); the program passes when nothing is orphaned and fails when a
thread is left waiting on a condition variable nobody can reach (the twin).

    python3 test_install.py BUILD_DIR        (CTest: orphans.install)"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

BUILD = Path(sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("LEAKLAB_BUILD_DIR", "build")).resolve()

PROGRAM = """#include <orphans.h>
#include <pthread.h>
#include <stdlib.h>
struct box { pthread_mutex_t lock; pthread_cond_t never; };
static void *stays(void *arg) {
    struct box *b = arg;
    pthread_mutex_lock(&b->lock);
    for (;;) pthread_cond_wait(&b->never, &b->lock);
    return NULL;
}
static int orphan(void) {
    struct box *b = calloc(1, sizeof *b);
    pthread_t t;
    return pthread_create(&t, NULL, stays, b) || pthread_detach(t);
}
int main(int argc, char **argv) {
    (void)argv;
    if (argc > 1 && orphan() != 0) return 99;
    /* orphans_verify_none: 0 when no thread is leaked; settle_tries lets the new thread get to its wait */
    return orphans_verify_none("settle_tries=20") != ORPHANS_NONE;
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
        pcs = list(cls.prefix.rglob("orphans.pc"))
        if len(pcs) != 1:
            raise AssertionError(f"expected one orphans.pc under {cls.prefix}, found {pcs}")
        cls.env = {**os.environ, "PKG_CONFIG_PATH": str(pcs[0].parent)}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_files_are_installed(self):
        self.assertEqual(len(list(self.prefix.rglob("include/orphans.h"))), 1)
        self.assertTrue(list(self.prefix.rglob("liborphans.so.1")))

    def test_program_through_pkg_config(self):
        src = Path(self.tmp.name) / "program.c"
        src.write_text(PROGRAM)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "orphans"], env=self.env,
                               capture_output=True, text=True, check=True).stdout.split()
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "orphans"], env=self.env,
                                capture_output=True, text=True, check=True).stdout.strip()
        out = Path(self.tmp.name) / "program"
        cc = os.environ.get("CC", "cc")
        r = subprocess.run([cc, "-Wall", "-Werror", "-o", str(out), str(src), *flags, "-lpthread",
                            f"-Wl,-rpath,{libdir}"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        ldd = subprocess.run(["ldd", str(out)], capture_output=True, text=True).stdout
        loaded = [line.split("=>")[1].split("(")[0].strip() for line in ldd.splitlines()
                  if "liborphans.so" in line and "=>" in line]
        self.assertEqual(len(loaded), 1, ldd)
        self.assertTrue(Path(loaded[0]).resolve().is_relative_to(self.prefix.resolve()), loaded[0])
        env = {k: v for k, v in os.environ.items() if k not in ("ORPHANS_OPTIONS", "LD_PRELOAD")}
        clean = subprocess.run([str(out)], capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(clean.returncode, 0, clean.stderr)
        self.assertEqual(clean.stderr, "")
        leaky = subprocess.run([str(out), "orphan"], capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(leaky.returncode, 1, leaky.stderr)
        self.assertIn("1 leaked thread @ stays", leaky.stderr)


if __name__ == "__main__":
    unittest.main()
