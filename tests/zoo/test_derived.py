"""The zoo's tool checks follow from each kernel's [truth] and the tools' rules
(expected/tools/TOOL.toml, scripts/expect/derive.py). Tested against the saved
zoo matrix (baselines/debian12-zoo-quick.json, 73 kernels x 9 tools, every
cell measured): the checks every kernel gets now pass on every cell, and a
cell whose tool said something else fails them. Then the rules format itself,
each refusal with its violating case."""

import copy
import json
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.expect import derive, expected  # noqa: E402
from scripts.expect.expected import Unresolved  # noqa: E402
from scripts.tools import tools  # noqa: E402
from scripts.views import matrix  # noqa: E402

BASELINE = REPO / "baselines" / "debian12-zoo-quick.json"
EXPECTED = REPO / "expected"
RULES = EXPECTED / "tools"
# What the harness plants for each canary option (common/harness.c: CANARY_BYTES,
# one thread for each thread canary).
CANARIES = {"--canary": ("canary_bytes", 31337), "--canary-thread": ("canary_threads", 1),
            "--canary-stuck-thread": ("canary_stuck_threads", 1), "--canary-orphan": ("canary_orphans", 1)}


def cell_tool(cell):
    """The tool as a run of the cell identifies itself: TOOL@RELEASE for a sanitizer."""
    return f"{cell['tool']}@{cell['release']}" if cell.get("release") and "@" not in cell["tool"] else cell["tool"]


def cell_resolver(cell):
    """Resolves the names a tool check uses from a saved matrix cell (what
    tool.json said, as the matrix keeps it)."""
    scale = cell["scale"]
    run = {"payload_bytes": scale.get("payload_bytes"), "workers": scale.get("workers")}
    for opt in scale.get("options", []):
        if opt in CANARIES:
            run[CANARIES[opt][0]] = CANARIES[opt][1]

    def kind(name):
        k = tools.KIND_ALIASES.get(name)
        if k not in cell["kinds"]:
            raise Unresolved(f"{cell['tool']} tells no kind '{name}' apart")
        return k

    def resolve(ref):
        n = ref.name
        if n.startswith("params."):
            return scale["params"][n[len("params."):]]
        if n in run:
            if run[n] is None:
                raise Unresolved(f"{n}: not in the cell")
            return run[n]
        if n in ("canary_bytes", "canary_threads", "canary_stuck_threads", "canary_orphans"):
            return 0   # the start event says 0 when no canary was planted
        if n in ("tool.verdict", "tool.top_function", "tool.reported_bytes", "tool.reported_blocks",
                 "tool.error_count"):
            value = cell.get(n[len("tool."):])
            if value is None:
                raise Unresolved(f"{n}: none in the cell")
            return value
        if n in ("tool.bytes", "tool.blocks"):
            value = cell["kinds"][kind(ref.args[0])]["bytes" if n == "tool.bytes" else "blocks"]
            if value is None:
                raise Unresolved(f"{ref.text}: not counted")
            return value
        if n in ("tool.bytes_by_function", "tool.blocks_by_function"):
            k = kind(ref.args[0])
            if k not in cell["reported_kinds"]:
                raise Unresolved(f"{ref.text}: the cell keeps functions of its reported kinds only")
            return cell["functions"].get(ref.args[1], [0, 0])[0 if n == "tool.bytes_by_function" else 1]
        raise Unresolved(f"{ref.text}: not kept in a matrix cell")
    return resolve


def outcomes(cell, exp):
    """[(check, Outcome)] of every check the expected file applies to the cell."""
    checks = exp.applicable(cell["variant"], cell_tool(cell), cell["allocator"], cell["scale"]["scale"],
                            cell["canary"])
    resolve = cell_resolver(cell)
    return [(c, expected.evaluate(c.expect, resolve)) for c in checks]


def load_kernel(name):
    return expected.load(expected.path_for(name, EXPECTED))


class SavedMatrix(unittest.TestCase):
    """Every cell of the saved zoo matrix against the checks its kernel gets now."""

    @classmethod
    def setUpClass(cls):
        cls.doc = json.loads(BASELINE.read_text())
        cls.exps = {name: load_kernel(name) for name in cls.doc["scenarios"]}

    def test_the_baseline_is_the_whole_matrix(self):
        names = expected.scenarios_in(EXPECTED, "zoo")
        self.assertEqual(sorted(self.doc["scenarios"]), names)   # every kernel of the zoo
        self.assertEqual(len(self.doc["cells"]), len(names) * 9 * 3)   # leaky, fixed, fixed + canary
        self.assertEqual({c["status"] for c in self.doc["cells"]}, {"match"})

    def test_every_cell_passes_its_checks(self):
        for cell in self.doc["cells"]:
            with self.subTest(cell=f"{cell['scenario']}/{cell['variant']}{'+canary' if cell['canary'] else ''}"
                                   f"/{cell['tool']}"):
                results = outcomes(cell, self.exps[cell["scenario"]])
                self.assertTrue(results, "no check applies: the cell would read 'no expectations'")
                bad = [f"{c.expect}: {o.verdict} (observed {o.left!r}, {o.detail})" for c, o in results
                       if o.verdict != "PASS"]
                self.assertEqual(bad, [])

    def test_every_cell_has_a_verdict_or_canary_check(self):
        # The matrix reads `tool.verdict == "..."` as the cell's expected verdict;
        # a canary cell may check the planted figure instead.
        for cell in self.doc["cells"]:
            checks = [c.expect for c, _ in outcomes(cell, self.exps[cell["scenario"]])]
            with self.subTest(cell=f"{cell['scenario']}/{cell['variant']}/{cell['tool']}/{cell['canary']}"):
                self.assertTrue(cell["canary"] or any(e.startswith("tool.verdict") for e in checks)
                                or cell["tool"] == "orphans", checks)
                if cell["canary"]:
                    self.assertTrue(any("canary" in e for e in checks), checks)

    def test_as_many_checks_as_the_hand_written_files_ran(self):
        # cell["checks"]["total"]: the rows the comparer made when the matrix
        # was measured (the hand-written checks, plus its exit-code row).
        fewer = []
        for cell in self.doc["cells"]:
            n = len(outcomes(cell, self.exps[cell["scenario"]]))
            if n + 1 < cell["checks"]["total"]:
                fewer.append(f"{cell['scenario']}/{cell['variant']}/{cell['tool']}/{cell['canary']}: "
                             f"{n} + 1 < {cell['checks']['total']}")
        self.assertEqual(fewer, [])

    def test_a_cell_that_says_otherwise_fails(self):
        # The violating case of every cell: the tool's answer turned around
        # (verdict flipped; what it reported gone, or a report made up).
        for cell in self.doc["cells"]:
            bad = copy.deepcopy(cell)
            if bad["verdict"] == tools.REPORTED:
                bad["verdict"] = tools.NOT_REPORTED
                bad["top_function"] = None
                bad["functions"] = {}
                for k in bad["kinds"].values():
                    k["bytes"] = 0 if k["bytes"] is not None else None
                    k["blocks"] = 0 if k["blocks"] is not None else None
            else:
                bad["verdict"] = tools.REPORTED
                for k in bad["kinds"].values():
                    k["blocks"] = (k["blocks"] or 0) + 3
                    k["bytes"] = (k["bytes"] or 0) + 10 * (bad["scale"]["payload_bytes"] or 0)
            with self.subTest(cell=f"{cell['scenario']}/{cell['variant']}/{cell['tool']}/{cell['canary']}"):
                verdicts = [o.verdict for _, o in outcomes(bad, self.exps[cell["scenario"]])]
                self.assertTrue(any(v != "PASS" for v in verdicts), verdicts)

    def test_a_count_off_by_one_fails(self):
        # Finer than a flipped verdict: one thread fewer than the truth says.
        seen = 0
        for cell in self.doc["cells"]:
            if cell["canary"] or cell["variant"] != "leaky" or cell["tool"] not in ("threadcheck", "orphans"):
                continue
            kind = "alive" if cell["tool"] == "threadcheck" else "orphan"
            if not cell["kinds"].get(kind, {}).get("blocks"):
                continue   # nothing reported (or orphans declined): nothing to miscount
            bad = copy.deepcopy(cell)
            bad["kinds"][kind]["blocks"] -= 1
            with self.subTest(cell=f"{cell['scenario']}/{cell['tool']}"):
                failed = [c.expect for c, o in outcomes(bad, self.exps[cell["scenario"]]) if o.verdict == "FAIL"]
                self.assertTrue(any(f"blocks({kind})" in e for e in failed), failed)
                seen += 1
        # Every leaky kernel whose threads the tool counts, on the saved matrix of 73
        # kernels: threadcheck all but the two whose threads end unjoined
        # (opencl_pool_join, unjoined_thread); orphans the orphaned ones (not those two,
        # nor pipe_reader, photon_fork_lock, mooncake_signal: reachable; boost_owner_dead:
        # a process-shared wait; htslib_flush: declined).
        self.assertEqual(seen, 71 + 66)

    def test_an_exception_is_needed(self):
        # ncast_leak's memcheck exceptions are real: without them the rules fail its cell.
        cell = next(c for c in self.doc["cells"] if c["scenario"] == "ncast_leak" and c["tool"] == "memcheck"
                    and c["variant"] == "leaky")
        exp = load_kernel("ncast_leak")   # a copy of its own: the exceptions are taken out
        for c in exp.checks:
            c.suppressed_by = []
        exp.checks = [c for c in exp.checks if not c.overrides]
        failed = {c.rule for c, o in outcomes(cell, exp) if o.verdict != "PASS"}
        self.assertEqual(failed, {"memcheck.payload_reachable", "memcheck.top_dtv"})


class EveryKernel(unittest.TestCase):
    """Adding a kernel takes its .c and its [truth]: every kernel of the zoo
    gets a check for every matrix cell, with no tool check written by hand."""

    def test_every_cell_has_checks(self):
        default = {t: f"{t}@clang-14" for t in expected.RELEASE_TOOLS}
        names = expected.scenarios_in(EXPECTED, "zoo")
        self.assertGreaterEqual(len(names), 64)
        for name in names:
            exp = load_kernel(name)
            for variant in exp.truth.variants:
                for tool in matrix.ZOO_TOOLS:   # the profilers (massif, dhat) are not zoo columns
                    for canary in (False, True):
                        if canary and exp.truth.variants[variant].leaks():
                            continue   # the matrix plants canaries in the fixed twin
                        with self.subTest(f"{name}/{variant}/{tool}/{canary}"):
                            self.assertTrue(exp.applicable(variant, default.get(tool, tool), "glibc", "quick",
                                                           canary))

    def test_kernel_files_hold_truth_and_exceptions_only(self):
        # A hand-written tool check needs a why; one that contradicts a rule is an exception.
        for name in expected.scenarios_in(EXPECTED, "zoo"):
            for c in load_kernel(name).checks:
                if not c.rule:
                    with self.subTest(f"{name}: {c.expect}"):
                        self.assertTrue(c.why.strip())
                        if c.overrides:
                            self.assertTrue(c.measured.strip())


class MatrixNote(unittest.TestCase):
    def test_no_expectation_names_the_zoo_path(self):
        from scripts.views import matrix
        cell = {"scenario": "ncast_leak", "variant": "leaky", "tool": "memcheck", "canary": False,
                "status": "no expectation", "failed_checks": []}
        notes = matrix.notes({"columns": {}, "cells": [cell]})
        self.assertTrue(any("expected/zoo/ncast_leak.toml" in n for n in notes), notes)


class GeneratedCounts(unittest.TestCase):
    """docs/zoo.md's figures are generated with its catalog (zoo_catalog.py):
    a page whose counts went stale fails `--check` (the test zoo.catalog)."""

    def test_stale_counts_fail_the_check(self):
        import re
        from scripts.views import zoo_catalog
        page = (REPO / "docs" / "zoo.md").read_text()
        self.assertRegex(page, r"Counts \(generated\): \d+ kernels")
        with tempfile.TemporaryDirectory() as d:
            doc = Path(d) / "zoo.md"
            doc.write_text(page)
            self.assertEqual(zoo_catalog.main(["--write", "--doc", str(doc)]), 0)   # today's, whatever the page says
            self.assertEqual(zoo_catalog.main(["--check", "--doc", str(doc)]), 0)
            doc.write_text(re.sub(r"Counts \(generated\): (\d+)", lambda m: f"Counts (generated): {int(m[1]) - 1}",
                                  doc.read_text()))
            self.assertEqual(zoo_catalog.main(["--check", "--doc", str(doc)]), 1)

    def test_counts_follow_the_files(self):
        from scripts.views import zoo_catalog
        names = expected.scenarios_in(EXPECTED, "zoo")
        line = zoo_catalog.counts(names, EXPECTED)
        self.assertIn(f"{len(names)} kernels", line)
        self.assertIn(f"{len(names) * len(matrix.ZOO_TOOLS) * 3:,} cells", line)   # 2 variants + a canary row
        self.assertEqual(zoo_catalog.counts(names[:2], EXPECTED).split(" kernels")[0], "Counts (generated): 2")


TRUTH = """
[truth]
pattern = "p"
origin = "C only"

[truth.leaky]
leaked_threads = "2 * instances + 0"
wait_site = "w"
primitive = "mutex"
pinned_bytes = "65536 * instances"
alloc_site = "new_thing"
orphaned = true

[truth.fixed]
leaked_threads = "0"
pinned_bytes = "0"
"""

RULE = """
tool = "threadcheck"

[[rule]]
id = "alive_count"
when = "leaked_threads > 0"
expect = "tool.blocks(alive) == truth.leaked_threads"
why = "w"

[[rule]]
id = "none_alive"
when = "leaked_threads == 0"
expect = 'tool.verdict == "not reported"'
why = "w"
"""


class RulesFormat(unittest.TestCase):
    def tree(self, kernel, rules=None, rules_name="threadcheck.toml"):
        """An expected tree in a temporary folder: tools/ and zoo/k.toml; returns the load result."""
        d = Path(self.enterContext(tempfile.TemporaryDirectory()))
        (d / "tools").mkdir()
        (d / "zoo").mkdir()
        (d / "tools" / rules_name).write_text(textwrap.dedent(rules if rules is not None else RULE))
        path = d / "zoo" / "k.toml"
        path.write_text(textwrap.dedent(kernel))
        return expected.load(path)

    def refused(self, kernel, rules=None, rules_name="threadcheck.toml"):
        try:
            self.tree(kernel, rules, rules_name)
        except expected.ExpectedFileError as e:
            return str(e)
        return None

    def test_derives_with_truth_expressions(self):
        exp = self.tree(TRUTH)
        got = {(c.variant, c.expect) for c in exp.checks}
        self.assertEqual(got, {(("leaky",), "tool.blocks(alive) == (2 * params.instances + 0)"),
                               (("fixed",), 'tool.verdict == "not reported"')})
        self.assertTrue(all(c.why.startswith("[threadcheck.") for c in exp.checks))

    def test_no_rules_folder_derives_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "k.toml"
            path.write_text(textwrap.dedent(TRUTH))
            self.assertEqual(expected.load(path).checks, [])

    def test_alloc_site_rules_need_an_alloc_site(self):
        rules = RULE.replace('tool = "threadcheck"', 'tool = "heaptrack"') + """
[[rule]]
id = "top"
when = "pinned_bytes > 0"
expect = "tool.top_function == truth.alloc_site"
why = "w"
"""
        exp = self.tree(TRUTH, rules, "heaptrack.toml")
        self.assertIn('tool.top_function == "new_thing"', [c.expect for c in exp.checks])
        exp = self.tree(TRUTH.replace('alloc_site = "new_thing"\n', ""), rules, "heaptrack.toml")
        self.assertNotIn("top", [c.rule.split(".")[1] for c in exp.checks])

    def test_an_exception_replaces_its_rule_where_it_applies(self):
        kernel = TRUTH + """
[[check]]
variant = "leaky"
tool = "threadcheck"
scale = "seed"
overrides = "threadcheck.alive_count"
expect = "tool.blocks(alive) == 3 * params.instances"
why = "a helper thread also stays at seed scale"
measured = "3000 at --instances 1000"
"""
        exp = self.tree(kernel)
        exps = lambda scale: [c.expect for c in exp.applicable("leaky", "threadcheck", "glibc", scale, False)]  # noqa: E731
        self.assertEqual(exps("seed"), ["tool.blocks(alive) == 3 * params.instances"])
        # a quick run is not the exception's: the rule's check stays
        self.assertEqual(exps("quick"), ["tool.blocks(alive) == (2 * params.instances + 0)"])

    def test_refusals(self):
        exception = TRUTH + """
[[check]]
variant = "leaky"
tool = "threadcheck"
overrides = "threadcheck.alive_count"
expect = "tool.blocks(alive) == 3 * params.instances"
why = "w"
measured = "3"
"""
        self.assertIsNone(self.refused(exception))
        cases = {
            "unknown rule": (exception.replace("threadcheck.alive_count", "threadcheck.nope"), None, "no such rule"),
            "stale exception": (exception.replace('variant = "leaky"\ntool', 'variant = "fixed"\ntool'), None,
                                "a stale exception"),
            "no measured figure": (exception.replace('measured = "3"\n', ""), None, "`measured`"),
            "no why": (exception.replace('why = "w"\nmeasured', "measured"), None, "`measured`"),
            "unknown when name": (TRUTH, RULE.replace("when = \"leaked_threads > 0\"", "when = \"threads > 0\""),
                                  "'threads'"),
            "unknown truth name": (TRUTH, RULE.replace("truth.leaked_threads", "truth.wait_site"),
                                   "truth.wait_site"),
            "duplicate id": (TRUTH, RULE.replace('id = "none_alive"', 'id = "alive_count"'), "unique"),
            "missing why": (TRUTH, RULE.replace('why = "w"\n\n', "\n", 1), "'why' is required"),
            "unknown key": (TRUTH, RULE.replace('why = "w"\n\n', 'why = "w"\nvariant = "leaky"\n\n', 1),
                            "unknown key(s) variant"),
            "another tool's release": (TRUTH, RULE.replace('id = "none_alive"', 'id = "none_alive"\ntool = "lsan"'),
                                       "is threadcheck's"),
            "misnamed file": (TRUTH, RULE, "named after its tool"),
        }
        for what, (kernel, rules, message) in cases.items():
            with self.subTest(what):
                got = self.refused(kernel, rules, "memcheck.toml" if what == "misnamed file" else "threadcheck.toml")
                self.assertIsNotNone(got)
                self.assertIn(message, got)

    def test_real_rules_load(self):
        rules = derive.load_rules(RULES)
        self.assertEqual(set(rules) - set(expected.TOOLS), set())
        self.assertTrue(all(r.why for rs in rules.values() for r in rs))


if __name__ == "__main__":
    unittest.main()
