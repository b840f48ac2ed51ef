#!/usr/bin/env python3
"""Release-aware baselines: the distribution every result records
(scripts/base/distro.py) and `baseline diff --between debian12 debian13` or
`memcheck@3.19 memcheck@3.24` on saved baselines (scripts/views/between.py),
on hand-made baselines whose differences are known."""
import contextlib
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.base import distro  # noqa: E402
from scripts.run import runner  # noqa: E402
from scripts.views import between  # noqa: E402


def cell(tool, verdict="not reported", definite=0, scenario="blocked_workers", variant="leaky", status="match"):
    return {"scenario": scenario, "variant": variant, "tool": tool, "canary": False, "allocator": "glibc",
            "scale": {"scale": "quick", "options": [], "payload_bytes": 1_000_000}, "status": status,
            "verdict": verdict, "kinds": {"definite": {"bytes": definite, "blocks": 1 if definite else 0}},
            "top_function": "f" if definite else None, "functions": {"f": [definite, 1]} if definite else {},
            "failed_checks": []}


def baseline(name, distribution, glibc, versions, cells):
    return {"name": name, "schema": 1, "scale": "quick", "tolerance": {"relative": 0.05, "payload_floor": 0.1},
            "machine": {"glibc": glibc, **({"distribution": distribution} if distribution else {})},
            "versions": {t: {"tool_version": v} for t, v in versions.items()}, "cells": cells}


class Distribution(unittest.TestCase):
    def os_release(self, text):
        tmp = tempfile.NamedTemporaryFile("w", suffix="os-release", delete=False)
        self.addCleanup(Path(tmp.name).unlink)
        tmp.write(text)
        tmp.close()
        return distro.distribution([tmp.name])

    def test_debian_13(self):
        got = self.os_release('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\n'
                              'VERSION_ID="13"\nVERSION_CODENAME=trixie\nID=debian\n')
        self.assertEqual(got, {"distribution": "Debian GNU/Linux 13 (trixie)", "distribution_id": "debian13"})

    def test_a_point_release_and_sid(self):
        self.assertEqual(self.os_release("ID=ubuntu\nVERSION_ID=\"24.04\"\n")["distribution_id"], "ubuntu24")
        self.assertEqual(self.os_release("ID=debian\nVERSION_CODENAME=forky\n")["distribution_id"], "debianforky")

    def test_no_os_release(self):
        self.assertEqual(distro.distribution(["/nonexistent/os-release"]),
                         {"distribution": None, "distribution_id": None})

    def test_this_machine_is_recorded(self):
        self.assertTrue(distro.distribution()["distribution_id"])
        self.assertRegex(distro.glibc() or "", r"^glibc \d+\.\d+")


class Between(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.save(baseline("debian12-quick", None, "glibc 2.36",
                           {"memcheck": "valgrind-3.19.0", "heapprof": "gperftools 2.10"},
                           [cell("memcheck", "reported", definite=500_000), cell("heapprof")]))
        self.save(baseline("debian13-quick", "Debian GNU/Linux 13 (trixie)", "glibc 2.41",
                           {"memcheck": "valgrind-3.24.0", "heapprof": "gperftools 2.16"},
                           [cell("memcheck"), cell("heapprof", "reported", definite=900_000)]))
        self.save(baseline("debian12-lsan-releases", None, "glibc 2.36", {"lsan": "clang 14"}, [cell("lsan")]))

    def tearDown(self):
        self.tmp.cleanup()

    def save(self, doc):
        (self.dir / f"{doc['name']}.json").write_text(json.dumps(doc))

    def run_cmd(self, a, b):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = between.cmd(a, b, self.dir)
        return code, out.getvalue()

    def test_two_distributions(self):
        code, out = self.run_cmd("debian12", "debian13")
        self.assertEqual(code, 1, out)
        self.assertIn("== debian12-quick -> debian13-quick", out)
        self.assertIn("note: machine: distribution not recorded, glibc 2.36 -> Debian GNU/Linux 13 (trixie), glibc 2.41", out)
        self.assertIn("note: memcheck: tool version valgrind-3.19.0 -> valgrind-3.24.0", out)
        self.assertIn("blocked_workers/leaky: verdict: reported -> not reported", out)
        self.assertIn("blocked_workers/leaky: verdict: not reported -> reported", out)
        self.assertIn("note: debian12-lsan-releases: no partner on the other side (not compared)", out)
        self.assertIn("2 cells changed beyond tolerance in 1 pair of baselines", out)

    def test_one_tool_at_two_versions(self):
        code, out = self.run_cmd("memcheck@3.19", "memcheck@3.24")
        self.assertEqual(code, 1, out)
        self.assertIn("memcheck: 1 cell changed", out)
        self.assertNotIn("heapprof", out)  # the other tools' cells are not this comparison's

    def test_nothing_changed(self):
        code, out = self.run_cmd("debian12", "debian12")
        self.assertEqual(code, 0, out)
        self.assertIn("0 cells changed", out)

    def test_a_side_without_baselines(self):
        with self.assertRaises(runner.UsageError) as e:
            self.run_cmd("debian12", "debian14")
        self.assertIn("no ", str(e.exception))
        self.assertIn("debian14-*.json", str(e.exception))
        with self.assertRaises(runner.UsageError):
            self.run_cmd("memcheck@3.19", "memcheck@9.9")

    def test_the_command_line(self):
        import subprocess
        r = subprocess.run([sys.executable, str(REPO / "scripts" / "leaklab.py"), "baseline", "diff",
                            "--between", "debian12", "debian13", "--dir", str(self.dir)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("diff of debian12 against debian13 (saved baselines):", r.stdout)
        r = subprocess.run([sys.executable, str(REPO / "scripts" / "leaklab.py"), "baseline", "diff",
                            "--between", "debian12", "debian13", "--against", "x.json", "--dir", str(self.dir)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_versions_match_as_numbers(self):
        self.assertTrue(between.version_matches("valgrind-3.19.0", "3.19"))
        self.assertTrue(between.version_matches("gperftools 2.16", "2.16"))
        self.assertFalse(between.version_matches("valgrind-3.190", "3.19"))
        self.assertFalse(between.version_matches("valgrind-13.19.0", "3.19"))

    def test_columns_stay_columns(self):
        self.assertTrue(between.is_column("lsan@clang-14"))
        self.assertTrue(between.is_column("memcheck"))
        self.assertFalse(between.is_column("debian12"))
        self.assertFalse(between.is_column("memcheck@3.19"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
