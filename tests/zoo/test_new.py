"""`./leaklab new KERNEL` (scripts/dev/scaffold.py): a kernel's three pieces
and nothing else, in a copy of the tree. The scaffold's expected file gets a
check for every matrix cell from its [truth] alone; its C compiles with the
project's warnings as errors (given LEAKLAB_CC, as CTest does); an existing
or malformed name is refused with exit 2 and nothing written."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.expect import expected  # noqa: E402
from scripts.views import matrix  # noqa: E402

LEAKLAB = [sys.executable, str(REPO / "scripts" / "leaklab.py")]


class New(unittest.TestCase):
    def setUp(self):
        self.root = Path(self.enterContext(tempfile.TemporaryDirectory()))
        for folder in ("scenarios/zoo", "expected/zoo"):
            (self.root / folder).mkdir(parents=True)
        shutil.copytree(REPO / "expected" / "tools", self.root / "expected" / "tools")
        for path in ("scenarios/zoo/kernel.c.in", "scenarios/zoo/CMakeLists.txt", "scenarios/zoo/ncast_leak.c",
                     "expected/zoo/ncast_leak.toml"):
            shutil.copy(REPO / path, self.root / path)

    def new(self, *args):
        return subprocess.run(LEAKLAB + ["new", *args, "--root", str(self.root)], capture_output=True, text=True,
                              timeout=60)

    def tree(self):
        return {str(p.relative_to(self.root)): p.read_bytes() for p in self.root.rglob("*") if p.is_file()}

    def test_writes_the_three_pieces(self):
        before = (self.root / "scenarios/zoo/CMakeLists.txt").read_text().splitlines()
        r = self.new("lost_wakeup")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Adding a kernel", r.stdout)
        c = (self.root / "scenarios/zoo/lost_wakeup.c").read_text()
        self.assertNotIn("@NAME@", c)
        self.assertIn('.name = "lost_wakeup"', c)
        after = (self.root / "scenarios/zoo/CMakeLists.txt").read_text().splitlines()
        added = [line for line in after if line not in before]
        self.assertEqual(added, ["leaklab_add_scenario(lost_wakeup ${zoo_matrix_only_tests})"])
        self.assertEqual(len(after), len(before) + 1)
        # its place: right after the last registration, so it is read with its siblings
        last = max(i for i, line in enumerate(before) if line.startswith("leaklab_add_scenario("))
        self.assertEqual(after[last + 1], added[0])

    def test_its_truth_alone_gives_every_cell_a_check(self):
        self.assertEqual(self.new("lost_wakeup").returncode, 0)
        exp = expected.load(self.root / "expected/zoo/lost_wakeup.toml")
        self.assertIn(exp.truth.cause, expected.CAUSES)
        self.assertFalse([c for c in exp.checks if not c.rule], "the scaffold writes no tool check by hand")
        default = {t: f"{t}@clang-14" for t in expected.RELEASE_TOOLS}
        for tool in matrix.ZOO_TOOLS:   # the profilers (massif, dhat) are not zoo columns
            for variant, canary in (("leaky", False), ("fixed", False), ("fixed", True)):
                with self.subTest(f"{variant}/{tool}/{canary}"):
                    self.assertTrue(exp.applicable(variant, default.get(tool, tool), "glibc", "quick", canary))

    def test_refuses_an_existing_name(self):
        before = self.tree()
        for name in ("ncast_leak", "lost_wakeup"):
            if name == "lost_wakeup":
                self.assertEqual(self.new(name).returncode, 0)
                before = self.tree()
            r = self.new(name)
            with self.subTest(name):
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertIn("exists already", r.stderr)
                self.assertEqual(self.tree(), before, "nothing written")

    def test_refuses_a_registered_name_without_files(self):
        with open(self.root / "scenarios/zoo/CMakeLists.txt", "a") as f:
            f.write("leaklab_add_scenario(ghost NO_MATRIX)\n")
        r = self.new("ghost")
        self.assertEqual(r.returncode, 2)
        self.assertIn("registered", r.stderr)

    def test_refuses_a_malformed_name(self):
        before = self.tree()
        for name in ("Lost", "lost-wakeup", "1lost", "lost/../x", "x" * 49):
            with self.subTest(name):
                r = self.new(name)
                self.assertEqual(r.returncode, 2)
                self.assertIn("not a kernel name", r.stderr)
        self.assertEqual(self.tree(), before)

    @unittest.skipUnless(os.environ.get("LEAKLAB_CC"), "LEAKLAB_CC not set (CTest sets the project's compiler)")
    def test_the_kernel_compiles_warning_free(self):
        self.assertEqual(self.new("lost_wakeup").returncode, 0)
        for extra in ([], ["-DLL_BREAK_FIX"]):   # tests/broken builds fixed twins without their fix
            r = subprocess.run([os.environ["LEAKLAB_CC"], "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                                *extra, "-I", str(REPO / "common"), "-c",
                                str(self.root / "scenarios/zoo/lost_wakeup.c"), "-o", os.devnull],
                               capture_output=True, text=True, timeout=120)
            with self.subTest(extra=extra):
                self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
