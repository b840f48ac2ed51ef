"""Unit tests of check_tiers.py: each promise of the default tier, broken."""
import unittest

from check_tiers import problems

QUICK_NATIVE = {"quick", "native", "leaky"}


def tier(*labels, full=False):
    return set(labels) | ({"full"} if full else set())


def healthy():
    """A small suite that keeps every promise."""
    return [
        ("blocked_workers.leaky.native", tier("quick", "native", "leaky")),
        ("blocked_workers.leaky.native.seed", tier("seed", "native", "leaky", full=True)),
        ("blocked_workers.leaky.memcheck", tier("quick", "memcheck", "leaky")),
        ("blocked_workers.fixed.memcheck.canary", tier("quick", "memcheck", "fixed", "canary")),
        ("delayed_exit.retained.native.jemalloc", tier("quick", "native", "retained")),
        ("delayed_exit.retained.memcheck", tier("quick", "memcheck", "retained", full=True)),
        ("delayed_exit.returned.memcheck.canary", tier("quick", "memcheck", "returned", full=True)),
        ("blocked_workers.leaky.lsan@clang-19", tier("quick", "lsan@clang-19", "releases", full=True)),
        ("blocked_workers.fixed.lsan@clang-19.canary", tier("quick", "canary", "releases", full=True)),
        ("blocked_workers.fixed.lsan.canary", tier("quick", "lsan", "canary")),
        ("blocked_workers.leaky.lsan", tier("quick", "lsan", "leaky")),
        ("broken.blocked_workers.fixed.native", tier("quick", "native", "broken")),
        ("threads.seed", tier("seed", "threads", full=True)),
        ("scripts.unit", tier("quick", "scripts")),
        ("lane.quick_matrix", tier("lane", full=True)),
    ]


class Tiers(unittest.TestCase):
    def test_a_healthy_suite_has_no_problem(self):
        self.assertEqual(problems(healthy()), [])

    def replaced(self, name, labels):
        return [(n, labels if n == name else l) for n, l in healthy()]

    def test_seed_in_the_default_tier(self):
        found = problems(self.replaced("threads.seed", tier("seed", "threads")))
        self.assertEqual(found, ["threads.seed: seed scale, but in the default tier (add the label `full`)"])

    def test_a_native_quick_run_only_in_full(self):
        found = problems(self.replaced("delayed_exit.retained.native.jemalloc",
                                       tier("quick", "native", "retained", full=True)))
        self.assertEqual(len(found), 1)
        self.assertIn("a native quick run, but only in the full tier", found[0])

    def test_a_library_test_only_in_full(self):
        found = problems(self.replaced("scripts.unit", tier("quick", "scripts", full=True)))
        self.assertEqual(found, ["scripts.unit: not a scenario x tool cell nor seed scale, but only in the full tier"])

    def test_a_release_column_in_the_default_tier(self):
        found = problems(self.replaced("blocked_workers.leaky.lsan@clang-19", tier("quick", "releases")))
        self.assertEqual(found, ["blocked_workers.leaky.lsan@clang-19: a tool release column, "
                                 "but in the default tier (add the label `full`)"])

    def test_a_tool_without_its_canary_in_the_default_tier(self):
        found = problems(self.replaced("blocked_workers.fixed.lsan.canary", tier("quick", "lsan", "canary", full=True)))
        self.assertEqual(found, ["tool lsan: no canary in the default tier (a broken lsan would pass it)"])

    def test_a_tool_without_a_cell_in_the_default_tier(self):
        found = problems(self.replaced("blocked_workers.leaky.memcheck", tier("quick", "memcheck", "leaky", full=True)))
        self.assertEqual(found, ["tool memcheck: no scenario cell in the default tier"])


if __name__ == "__main__":
    unittest.main()
