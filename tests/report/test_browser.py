#!/usr/bin/env python3
"""Renders a report in headless Chromium: the timeline plot, the profile graph and the verdict table, sized."""

# Exit 77 (skipped) when Chromium is not installed: run as a script, the
# check below happens before anything else; under unittest the class is
# skipped. The page is rendered twice: once with --dump-dom on a copy that
# carries a tiny measuring script (the report itself has no JavaScript), and
# once with --screenshot, kept for people to look at.
#
# The run reported: a real `--tool heapprof` run of blocked_workers when the
# build and the tools are there (so the page is what a learner sees), else a
# fake run directory whose SVGs are shaped like gnuplot's and pprof's.
# LEAKLAB_SCREENSHOT=PATH keeps the screenshot there.

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_runs  # noqa: E402
import report  # noqa: E402
import runner  # noqa: E402

EXIT_SKIP = 77
# LEAKLAB_CHROMIUM names the browser (empty: pretend there is none, to see the skip).
_CANDIDATES = ((os.environ["LEAKLAB_CHROMIUM"],) if "LEAKLAB_CHROMIUM" in os.environ else
               (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"),
                shutil.which("google-chrome")))
CHROMIUM = next((p for p in _CANDIDATES if p and os.access(p, os.X_OK)), None)
WINDOW = (1280, 2400)
BROWSER_TIMEOUT_S = 120

# Appended to a copy of the page: writes the rendered size of every figure
# and of the verdict table into the DOM, where --dump-dom shows it.
MEASURE = """
<pre id="leaklab-measured"></pre>
<script>
(function () {
  var out = {figures: [], verdict: null, overflowX: document.documentElement.scrollWidth > window.innerWidth};
  document.querySelectorAll("svg[data-figure]").forEach(function (e) {
    var r = e.getBoundingClientRect();
    out.figures.push({figure: e.getAttribute("data-figure"), width: r.width, height: r.height});
  });
  var t = document.getElementById("verdict-table");
  if (t) {
    var r = t.getBoundingClientRect();
    out.verdict = {width: r.width, height: r.height, rows: t.querySelectorAll("tbody tr").length,
                   words: Array.prototype.map.call(t.querySelectorAll("td.v"),
                                                   function (c) { return c.textContent.trim(); })};
  }
  document.getElementById("leaklab-measured").textContent = JSON.stringify(out);
})();
</script>
"""


def chromium(args, timeout=BROWSER_TIMEOUT_S):
    """Runs headless Chromium with a throw-away profile and no network services."""
    with tempfile.TemporaryDirectory(prefix="leaklab-chromium-") as profile:
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def make_report(tmp):
    """(run dir, how it was made): a real heapprof run if possible, else a fake one."""
    build = Path(os.environ.get("LEAKLAB_BUILD_DIR") or report.REPO / "build")
    spec = runner.RunSpec(scenario="blocked_workers", variant="leaky", scale="quick", tool="heapprof",
                          allocator="tcmalloc", out=Path(tmp), build_dir=build, timeout_s=300)
    if (build / "scenarios" / "blocked_workers-tcmalloc").is_file() and shutil.which("dot") and shutil.which("gnuplot"):
        try:
            run_dir, info = runner.execute(spec)
            if info["exit_code"] == 0 and list((run_dir / "heap").glob("*.svg")):
                return run_dir, "a real blocked_workers --tool heapprof run"
        except runner.Outcome:
            pass  # google-pprof missing: the fake run below still tests the page
    run_dir = fake_runs.make_run(tmp, tool="heapprof", allocator="tcmalloc", heap=True,
                                 verdict=[("threads == workers + 1", "== 1001", "1001", "PASS"),
                                          ("census.largest == workers", "== 1000", "998", "FAIL")])
    return run_dir, "a fake run directory (no build, or no gperftools/graphviz/gnuplot)"


@unittest.skipUnless(CHROMIUM, "chromium not found (apt-get install chromium)")
class InChromium(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="leaklab-browser-")
        cls.run_dir, cls.made_from = make_report(cls._tmp.name)
        cls.page = report.write_report(cls.run_dir)
        measured = cls.page.with_name("report-measure.html")
        text = cls.page.read_text()
        measured.write_text(text.replace("</body>", MEASURE + "</body>"))
        done = chromium(["--dump-dom", measured.as_uri()])
        cls.dom, cls.stderr = done.stdout, done.stderr
        m = re.search(r'<pre id="leaklab-measured">(.*?)</pre>', cls.dom, re.S)
        cls.measured = json.loads(html.unescape(m.group(1))) if m and m.group(1) else None
        if os.environ.get("LEAKLAB_SCREENSHOT"):
            print(f"\nmeasured in Chromium ({cls.made_from}): {cls.measured}", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def figures(self, name):
        self.assertIsNotNone(self.measured, f"Chromium rendered nothing measurable ({self.made_from}); "
                                            f"stderr: {self.stderr[-1500:]}")
        return [f for f in self.measured["figures"] if f["figure"] == name]

    def test_timeline_plot_is_drawn_and_sized(self):
        plots = self.figures("timeline")
        self.assertEqual(len(plots), 1, self.measured)
        # The plot's viewBox is 1000 x 520: full width of the column, same aspect.
        self.assertGreaterEqual(plots[0]["width"], 600, plots[0])
        self.assertGreaterEqual(plots[0]["height"], 300, plots[0])
        self.assertAlmostEqual(plots[0]["width"] / plots[0]["height"], 1000 / 520, delta=0.05)

    def test_profile_graph_is_drawn_and_sized(self):
        graphs = self.figures("heap-graph")
        self.assertGreaterEqual(len(graphs), 1, self.measured)
        for g in graphs:
            self.assertGreater(g["width"], 300, g)
            self.assertGreater(g["height"], 150, g)

    def test_verdict_table_is_there_in_words(self):
        self.figures("timeline")
        verdict = self.measured["verdict"]
        self.assertIsNotNone(verdict, "no #verdict-table in the rendered page")
        self.assertGreater(verdict["height"], 40, verdict)
        self.assertGreater(verdict["rows"], 0, verdict)
        for word in verdict["words"]:
            self.assertRegex(word, r"(PASS|FAIL|ERROR)$")

    def test_the_page_fits_the_window(self):
        self.figures("timeline")
        self.assertFalse(self.measured["overflowX"], "the page scrolls sideways at 1280 px")

    def test_screenshot(self):
        shot = Path(os.environ.get("LEAKLAB_SCREENSHOT") or self.run_dir / "report.png").resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        done = chromium([f"--screenshot={shot}", self.page.as_uri()])
        self.assertTrue(shot.is_file(), f"no screenshot; stderr: {done.stderr[-1500:]}")
        self.assertEqual(shot.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(shot.stat().st_size, 20000, "a blank page compresses to almost nothing")
        if os.environ.get("LEAKLAB_SCREENSHOT"):
            print(f"\nscreenshot ({self.made_from}): {shot}", file=sys.stderr)


def main():
    if not CHROMIUM:
        print("SKIP: chromium not found (apt-get install chromium; scripts/install-deps installs it)")
        return EXIT_SKIP
    result = unittest.main(exit=False, verbosity=2).result
    if not result.wasSuccessful():
        return 1
    return EXIT_SKIP if result.testsRun and len(result.skipped) == result.testsRun else 0


if __name__ == "__main__":
    sys.exit(main())
