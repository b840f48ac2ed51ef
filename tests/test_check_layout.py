"""The layout check must fail on each kind of inconsistency (a check that
cannot fail is a defect)."""
import pathlib
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import check_layout  # noqa: E402


def tree(d, registered=("a",), sources=("a",), expected=("a",), docs=("a",)):
    root = pathlib.Path(d)
    for sub in ("scenarios", "expected", "docs/scenarios"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "scenarios" / "CMakeLists.txt").write_text(
        "".join(f"leaklab_add_scenario({n} TOOLS memcheck)\n" for n in registered)
        + "# leaklab_add_scenario(commented_out)\n")
    for n in sources:
        (root / "scenarios" / f"{n}.c").write_text("")
    for n in expected:
        (root / "expected" / f"{n}.toml").write_text("")
    for n in docs:
        (root / "docs" / "scenarios" / f"{n}.md").write_text("")
    return root


class Layout(unittest.TestCase):
    def check(self, **kw):
        with tempfile.TemporaryDirectory() as d:
            return check_layout.problems(tree(d, **kw))

    def test_consistent(self):
        self.assertEqual(self.check(), [])

    def test_missing_expected_file(self):
        self.assertEqual(self.check(expected=()), ["scenario a: no expected/a.toml"])

    def test_missing_doc_page(self):
        self.assertEqual(self.check(docs=()), ["scenario a: no docs/scenarios/a.md"])

    def test_expected_file_without_scenario(self):
        self.assertEqual(self.check(expected=("a", "b")),
                         ["expected/b.toml: no scenario b is registered in scenarios/CMakeLists.txt"])

    def test_doc_page_without_scenario(self):
        self.assertEqual(self.check(docs=("a", "c")),
                         ["docs/scenarios/c.md: no scenario c is registered in scenarios/CMakeLists.txt"])

    def test_registered_without_source(self):
        self.assertEqual(self.check(sources=()), ["scenario a: registered, but scenarios/a.c does not exist"])

    def test_commented_out_call_does_not_count(self):
        self.assertNotIn("commented_out", check_layout.scenarios_registered(
            tree(tempfile.mkdtemp())))


class IncludeCycles(unittest.TestCase):
    """Quoted includes of every C file, resolved next to the file and then in
    the build's include directories: a cycle is reported once, by its files."""

    def check(self, files):
        with tempfile.TemporaryDirectory() as d:
            root = tree(d)
            for name, text in files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(text)
            return check_layout.problems(root)

    def test_two_files_including_each_other(self):
        self.assertEqual(self.check({"common/chan.c": '#include "sync.c"\n',
                                     "common/sync.c": '  #  include "chan.c" /* why */\n'}),
                         ["include cycle: common/chan.c -> common/sync.c -> common/chan.c"])

    def test_cycle_through_an_include_directory(self):
        self.assertEqual(self.check({"common/a.h": '#include "b.h"\n',
                                     "threadcheck/outside/b.h": '#include "c.h"\n',
                                     "threadcheck/orphans/src/c.h": '#include "a.h"\n',
                                     "tests/t.c": '#include "a.h"\n'}),
                         ["include cycle: common/a.h -> threadcheck/outside/b.h -> "
                          "threadcheck/orphans/src/c.h -> common/a.h"])

    def test_file_including_itself(self):
        self.assertEqual(self.check({"threadcheck/src/k.h": '#include "k.h"\n'}),
                         ["include cycle: threadcheck/src/k.h -> threadcheck/src/k.h"])

    def test_shared_header_and_system_includes_are_no_cycle(self):
        self.assertEqual(self.check({"common/park.h": '#include "leaklab.h"\n#include <park.h>\n',
                                     "common/leaklab.h": '#include <stdio.h>\n#include "missing.h"\n',
                                     "common/chan.c": '#include "park.h"\n',
                                     "common/park.c": '#include "park.h"\n',
                                     "tests/broken/b.c": '#include "a.c"\n'}), [])

    def test_two_files_using_each_other_through_a_header(self):
        # chan.c and sync.c before park.c: each called functions the other defines.
        self.assertEqual(self.check({
            "common/park.h": "bool ll_park_observe(int tid);\n",
            "common/chan.c": '#include "park.h"\n\nvoid ll_chan_close(ll_chan *ch)\n{\n    ll_park_observe(1);\n}\n',
            "common/sync.c": ('#include "park.h"\n\nbool ll_park_observe(int tid)\n{\n    return tid;\n}\n\n'
                              "void ll_context_cancel(ll_context *ctx)\n{\n    ll_chan_close(ctx->done);\n}\n"),
        }), ["C files that need each other: common/chan.c -> common/sync.c -> common/chan.c"])

    def test_one_way_use_static_functions_and_other_folders_are_no_cycle(self):
        self.assertEqual(self.check({
            # park.c is used, uses nothing back; a comment naming a function is no use
            "common/park.c": "/* ll_chan_close() */\nbool ll_park_observe(int tid)\n{\n    return tid > 0;\n}\n",
            "common/chan.c": "void ll_chan_close(ll_chan *ch)\n{\n    ll_park_observe(1);\n}\n",
            # a.c's own static worker() is not b.c's worker(): b.c uses a.c, not back
            "tests/orphans/a.c": "static void worker(void)\n{\n}\nvoid setup(void)\n{\n    worker();\n}\n",
            "tests/orphans/b.c": "void worker(void)\n{\n}\nint main(void)\n{\n    setup();\n    worker();\n}\n",
            # a function of another folder (another program) named the same
            "tests/t.c": "void ll_chan_close(void *ch)\n{\n    ll_park_observe(0);\n}\n",
        }), [])


def zoo_tree(d, registered=("k",), sources=("k",), expected=("k",), rows=("k",)):
    root = tree(d)
    for sub in ("scenarios/zoo", "expected/zoo"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "scenarios" / "zoo" / "CMakeLists.txt").write_text(
        "".join(f"leaklab_add_scenario({n})\n" for n in registered) + "# leaklab_add_scenario(old)\n")
    for n in sources:
        (root / "scenarios" / "zoo" / f"{n}.c").write_text("")
    for n in expected:
        (root / "expected" / "zoo" / f"{n}.toml").write_text("")
    (root / "docs" / "zoo.md").write_text(
        "| kernel | pattern |\n|---|---|\n"
        + "".join(f"| [{n}](../scenarios/zoo/{n}.c) | a pattern |\n" for n in rows)
        + "Text that mentions [x](../scenarios/zoo/x.c) outside a row.\n")
    return root


class ZooLayout(unittest.TestCase):
    def check(self, **kw):
        with tempfile.TemporaryDirectory() as d:
            return check_layout.problems(zoo_tree(d, **kw))

    def test_consistent(self):
        self.assertEqual(self.check(), [])

    def test_kernel_without_source(self):
        self.assertEqual(self.check(sources=()),
                         ["zoo kernel k: registered, but scenarios/zoo/k.c does not exist"])

    def test_kernel_without_expected_file(self):
        self.assertEqual(self.check(expected=()), ["zoo kernel k: no expected/zoo/k.toml"])

    def test_kernel_without_catalog_row(self):
        self.assertEqual(self.check(rows=()),
                         ["zoo kernel k: no row in docs/zoo.md (| [k](../scenarios/zoo/k.c) | ...)"])

    def test_source_expected_file_and_row_without_kernel(self):
        self.assertEqual(self.check(sources=("k", "s"), expected=("k", "e"), rows=("k", "r")), [
            "scenarios/zoo/s.c: not registered in scenarios/zoo/CMakeLists.txt",
            "expected/zoo/e.toml: no zoo kernel e is registered in scenarios/zoo/CMakeLists.txt",
            "docs/zoo.md: a row for r, but no zoo kernel r is registered",
        ])

    def test_a_zoo_kernel_needs_no_scenario_page(self):
        with tempfile.TemporaryDirectory() as d:
            root = zoo_tree(d)
            self.assertFalse((root / "docs" / "scenarios" / "k.md").exists())
            self.assertEqual(check_layout.problems(root), [])


if __name__ == "__main__":
    unittest.main()
