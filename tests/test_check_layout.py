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


if __name__ == "__main__":
    unittest.main()
