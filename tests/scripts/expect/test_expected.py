"""Tests of the expected-file loader and the expression language, including its safety."""

import tempfile
import unittest

import fakes  # noqa: F401  (puts the repo, with the `scripts` package, on sys.path)
from scripts.expect import expected
from scripts.expect.expected import ExpressionError, Unresolved


def values(table):
    """A resolver over a dict keyed by reference text; missing => Unresolved."""
    def resolve(ref):
        if ref.text not in table:
            raise Unresolved(f"no {ref.text}")
        return table[ref.text]
    return resolve


class Safety(unittest.TestCase):
    REJECTED = [
        "__import__('os') == 1",
        "__import__('os').system('true') == 0",
        "open('/etc/passwd') == 1",
        "threads.__class__ == 1",
        "(lambda: 1)() == 1",
        "[1][0] == 1",
        "threads if 1 else 2 == 1",
        "_ref0_ == 1",
        "threads == 1 == 1",
        "threads",
        "threads ** 2 >= 1",
        "threads >= ",
        "threads in 1",
        "True == True",
        "min(threads, 1) == 1",
        "heapprof.bytes == 1",
    ]

    def test_rejects_everything_outside_the_grammar(self):
        for text in self.REJECTED:
            with self.subTest(text=text):
                with self.assertRaises(ExpressionError):
                    expected.parse(text)

    def test_rejected_expression_is_an_error_verdict_and_never_runs(self):
        called = []
        out = expected.evaluate("__import__('os').system('touch /tmp/leaklab-pwned') == 0",
                                lambda ref: called.append(ref) or 0)
        self.assertEqual(out.verdict, "ERROR")
        self.assertIn("malformed", out.detail)
        self.assertEqual(called, [])

    def test_true_is_not_a_constant(self):
        out = expected.evaluate("threads == True", values({"threads": 1, "True": 1}))
        self.assertEqual(out.verdict, "ERROR")


class Grammar(unittest.TestCase):
    def test_references(self):
        _, op, _, refs = expected.parse(
            "rss_bytes@released + heapprof.bytes(fill_buffer)@steady <= 0.2 * alloc.in_use_bytes + 1e6 + 1_000")
        self.assertEqual(op, "<=")
        got = {(r.name, r.args, r.phase) for r in refs.values()}
        self.assertEqual(got, {("rss_bytes", (), "released"),
                               ("heapprof.bytes", ("fill_buffer",), "steady"),
                               ("alloc.in_use_bytes", (), None)})

    def test_function_arguments(self):
        _, _, _, refs = expected.parse('memcheck.bytes_by_function(definite, "lose_list") > 0')
        (ref,) = refs.values()
        self.assertEqual(ref.args, ("definite", "lose_list"))
        with self.assertRaises(ExpressionError):
            expected.parse("memcheck.bytes_by_function(definite) > 0")

    def test_string_literal_is_not_a_reference(self):
        _, _, right, refs = expected.parse('heapprof.top_function == "fill_buffer"')
        self.assertEqual(len(refs), 1)


class Evaluate(unittest.TestCase):
    CASES = [
        # (expect, observed values, verdict)
        ("threads >= workers + 1", {"threads": 1001, "workers": 1000}, "PASS"),
        ("threads >= workers + 1", {"threads": 1000, "workers": 1000}, "FAIL"),
        ("threads <= 1", {"threads": 1}, "PASS"),
        ("threads <= 1", {"threads": 2}, "FAIL"),
        ("threads == 1", {"threads": 2}, "FAIL"),
        ("threads != 1", {"threads": 1}, "FAIL"),
        ("threads > 1", {"threads": 1}, "FAIL"),
        ("threads < 1", {"threads": 1}, "FAIL"),
        ("rss_bytes@released <= 0.2 * rss_bytes@exited",
         {"rss_bytes@released": 30, "rss_bytes@exited": 100}, "FAIL"),
        ("rss_bytes@released <= 0.2 * rss_bytes@exited",
         {"rss_bytes@released": 20, "rss_bytes@exited": 100}, "PASS"),
        ("-(threads) + 2 * (workers - 1) / 2 >= 0", {"threads": 999, "workers": 1000}, "PASS"),
        ('heapprof.top_function == "fill_buffer"', {"heapprof.top_function": "fill_buffer"}, "PASS"),
        ('heapprof.top_function == "fill_buffer"', {"heapprof.top_function": "main"}, "FAIL"),
    ]

    def test_cases(self):
        for text, table, verdict in self.CASES:
            with self.subTest(expect=text, values=table):
                self.assertEqual(expected.evaluate(text, values(table)).verdict, verdict)

    def test_unresolved_name_is_error(self):
        out = expected.evaluate("threads >= workers", values({"threads": 3}))
        self.assertEqual(out.verdict, "ERROR")
        self.assertIn("workers", out.detail)

    def test_type_errors_are_errors(self):
        for text, table in [
            ('threads == "3"', {"threads": 3}),
            ('heapprof.top_function >= "a"', {"heapprof.top_function": "b"}),
            ('heapprof.top_function + 1 == 2', {"heapprof.top_function": "b"}),
            ("threads / workers == 1", {"threads": 3, "workers": 0}),
        ]:
            with self.subTest(expect=text):
                self.assertEqual(expected.evaluate(text, values(table)).verdict, "ERROR")

    def test_bytes_units_follow_the_left_side(self):
        self.assertTrue(expected.evaluate("rss_bytes >= 1", values({"rss_bytes": 2})).is_bytes)
        self.assertFalse(expected.evaluate("threads >= 1", values({"threads": 2})).is_bytes)


class Load(unittest.TestCase):
    def load(self, text):
        with tempfile.TemporaryDirectory() as tmp:
            return expected.load(fakes.write_expected(tmp, text))

    def test_defaults_and_applicability(self):
        exp = self.load('''
            [[check]]
            variant = "leaky"
            expect = "threads >= 1"
            [[check]]
            variant = ["leaky", "fixed"]
            tool = "any"
            allocator = "tcmalloc"
            scale = "seed"
            expect = "threads >= 1"
            [[args]]
            tool = "memcheck"
            options = ["--workers", 200]
        ''')
        first, second = exp.checks
        self.assertEqual(first.tool, ("native",))
        self.assertTrue(first.applies("leaky", "native", "jemalloc", "quick"))
        self.assertFalse(first.applies("leaky", "memcheck", "glibc", "quick"))
        self.assertFalse(first.applies("fixed", "native", "glibc", "quick"))
        self.assertTrue(second.applies("fixed", "heapprof", "tcmalloc", "seed"))
        self.assertFalse(second.applies("fixed", "heapprof", "tcmalloc", "quick"))
        self.assertEqual(exp.options_for("leaky", "memcheck", "glibc", "quick"), ["--workers", "200"])
        self.assertEqual(exp.options_for("leaky", "native", "glibc", "quick"), [])

    def test_broken_files_name_the_problem(self):
        for text, words in [
            ('[[check]]\nexpect = "threads >= 1"\n', "variant"),
            ('[[check]]\nvariant = "leaky"\n', "expect"),
            ('[[check]]\nvariant = "leaky"\nexpect = "a >= 1"\nallocater = "glibc"\n', "allocater"),
            ('[[check]]\nvariant = "leaky"\nexpect = "a >= 1"\ntool = "callgrind"\n', "callgrind"),
            ('[[check]\n', "TOML"),
            ('[[driver]]\non = "listening"\n', "run"),
            ('[[driver]]\non = "listening"\nmemstats = true\n', "memstats = true"),
            ('[[driver]]\non = "hold"\nmemstats = true\nrun = ["true"]\n', "memstats = true"),
            ('[[driver]]\non = "hold"\nmemstats = false\nsend = "go-on"\n', "memstats = true"),
        ]:
            with self.subTest(text=text):
                with self.assertRaises(expected.ExpectedFileError) as cm:
                    self.load(text)
                self.assertIn(words, str(cm.exception))

    def test_a_memstats_driver_looks_at_the_held_process(self):
        exp = self.load('[[driver]]\non = "hold"\nphase = "exited"\nmemstats = true\nsend = "go-on"\n')
        (step,) = exp.drivers
        self.assertEqual((step.on, step.phase, step.run, step.send), ("hold", "exited", expected.MEMSTATS_LOOK, "go-on"))

    def test_exit_code_mention(self):
        exp = self.load('[[check]]\nvariant = "leaky"\nexpect = "exit_code == 99"\n')
        self.assertTrue(exp.checks[0].mentions_exit_code())


if __name__ == "__main__":
    unittest.main()
