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
#
# LessonPages then makes one run of each lesson of docs/workshop.md the way a
# learner does (`./leaklab run ... --report`, `./leaklab compare`) and checks
# that what the lesson is about is visible: the plateau's phases and its shaded
# stretch (delayed_exit), both runs on one plot (compare), the top function in
# the first heap graph (rw_gateway), the snapshot chart of a zoo kernel, phase
# labels that do not overlap. LEAKLAB_LESSON_SHOTS=DIR keeps a screenshot of each.

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
from scripts.views import plot, report  # noqa: E402
from scripts.run import runner  # noqa: E402

EXIT_SKIP = 77
# LEAKLAB_CHROMIUM names the browser (empty: pretend there is none, to see the skip).
_CANDIDATES = ((os.environ["LEAKLAB_CHROMIUM"],) if "LEAKLAB_CHROMIUM" in os.environ else
               (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"),
                shutil.which("google-chrome")))
CHROMIUM = next((p for p in _CANDIDATES if p and os.access(p, os.X_OK)), None)
WINDOW = (1280, 2400)
IDLE = ["--", "--idle-ms", "600", "--idle-step-ms", "100"]   # the lesson's plateau (docs/workshop.md, Lesson 2)
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
  function box(e) { var r = e.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; }
  out.labels = Array.prototype.map.call(document.querySelectorAll("text.phase-label"), function (e) {
    var b = box(e); b.phase = e.getAttribute("data-phase"); b.run = e.getAttribute("data-run"); return b; });
  out.bands = Array.prototype.map.call(document.querySelectorAll("g.band"), function (e) {
    var b = box(e); b.band = e.getAttribute("data-band"); return b; });
  out.runs = Array.prototype.map.call(document.querySelectorAll("svg[data-figure=timeline-overlay]"),
                                      function (e) { return e.getAttribute("data-runs"); });
  out.series = Array.prototype.map.call(document.querySelectorAll(".series[data-run]"), function (e) {
    var b = box(e); return {series: e.getAttribute("data-series"), run: e.getAttribute("data-run"), w: b.w, h: b.h}; });
  var graph = document.querySelector("svg[data-figure=heap-graph]");
  out.heapTop = null;
  if (graph) {  /* the largest text drawn in the first graph: the function holding the most */
    var best = null;
    graph.querySelectorAll("text").forEach(function (t) {
      var b = box(t);
      if (b.w > 0 && b.h > 0 && (!best || b.h > best.h)) { best = b; best.text = t.textContent.trim(); }
    });
    out.heapTop = best;
  }
  out.banner = (document.querySelector(".banner") || {textContent: ""}).textContent;
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
        plots = self.figures("timeline") + self.figures("phase-snapshots")
        self.assertEqual(len(plots), 1, self.measured)
        # The plot's viewBox is plot.W x plot.H: full width of the column, same aspect.
        self.assertGreaterEqual(plots[0]["width"], 600, plots[0])
        self.assertGreaterEqual(plots[0]["height"], 250, plots[0])
        self.assertAlmostEqual(plots[0]["width"] / plots[0]["height"], plot.W / plot.H, delta=0.05)

    def test_profile_graph_is_drawn_and_sized(self):
        graphs = self.figures("heap-graph")
        self.assertGreaterEqual(len(graphs), 1, self.measured)
        for g in graphs:
            self.assertGreater(g["width"], 300, g)
            self.assertGreater(g["height"], 150, g)

    def test_verdict_table_is_there_in_words(self):
        self.figures("heap-graph")
        verdict = self.measured["verdict"]
        self.assertIsNotNone(verdict, "no #verdict-table in the rendered page")
        self.assertGreater(verdict["height"], 40, verdict)
        self.assertGreater(verdict["rows"], 0, verdict)
        for word in verdict["words"]:
            self.assertRegex(word, r"(PASS|FAIL|ERROR)$")

    def test_the_page_fits_the_window(self):
        self.figures("heap-graph")
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


def measure(page):
    """What Chromium renders of `page` (the MEASURE script's JSON), or (None, stderr)."""
    measured = page.with_name(page.stem + "-measure.html")
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    done = chromium(["--dump-dom", measured.as_uri()])
    m = re.search(r'<pre id="leaklab-measured">(.*?)</pre>', done.stdout, re.S)
    return (json.loads(html.unescape(m.group(1))) if m and m.group(1) else None), done.stderr


def leaklab(argv, runs):
    """`./leaklab ARGV` as the lesson has it, run directories under `runs`; its stdout."""
    cut = argv.index("--") if "--" in argv else len(argv)
    full = argv[:cut] + (["--out", str(runs)] if argv[0] == "run" else ["--runs", str(runs)]) + argv[cut:]
    done = subprocess.run([str(report.REPO / "leaklab"), *full], cwd=report.REPO, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"./leaklab {' '.join(argv)} exited {done.returncode}: {done.stdout[-800:]}{done.stderr[-800:]}")
    return done.stdout


def written(stdout, key):
    m = re.search(rf"^{key}: (.+)$", stdout, re.M)
    return Path(m.group(1)) if m else None


def _built(*names):
    build = Path(os.environ.get("LEAKLAB_BUILD_DIR") or report.REPO / "build")
    return all((build / "scenarios" / n).is_file() for n in names)


@unittest.skipUnless(CHROMIUM, "chromium not found (apt-get install chromium)")
@unittest.skipUnless(_built("blocked_workers", "delayed_exit", "rw_gateway-tcmalloc", "cockroach10214"),
                     "the lessons' scenarios are not built")
class LessonPages(unittest.TestCase):
    """One run of each lesson, its pages rendered: what the lesson is about is visible."""

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="leaklab-lessons-")
        runs = Path(cls._tmp.name)
        q = ["--scale", "quick", "--report"]
        cls.pages = {
            "lesson1-leaky-heapprof": written(leaklab(["run", "blocked_workers", "--variant", "leaky", *q,
                                                       "--tool", "heapprof"], runs), "report"),
        }
        leaklab(["run", "blocked_workers", "--variant", "leaky", *q], runs)
        leaklab(["run", "blocked_workers", "--variant", "fixed", *q], runs)
        cls.pages["lesson1-compare"] = written(leaklab(["compare", "blocked_workers.leaky.native",
                                                        "blocked_workers.fixed.native"], runs), "page")
        cls.pages["lesson2-retained"] = written(leaklab(["run", "delayed_exit", "--variant", "retained", *q, *IDLE],
                                                        runs), "report")
        leaklab(["run", "delayed_exit", "--variant", "returned", *q, *IDLE], runs)
        cls.pages["lesson2-compare"] = written(leaklab(["compare", "delayed_exit.retained.native.glibc",
                                                        "delayed_exit.returned.native.glibc"], runs), "page")
        cls.pages["lesson3-leaky-heapprof"] = written(leaklab(["run", "rw_gateway", "--variant", "leaky", *q,
                                                               "--tool", "heapprof"], runs), "report")
        cls.pages["zoo-cockroach10214"] = written(leaklab(["run", "cockroach10214", "--variant", "leaky", *q],
                                                          runs), "report")
        cls.measured = {}
        shots = os.environ.get("LEAKLAB_LESSON_SHOTS")
        for name, page in cls.pages.items():
            cls.measured[name], _ = measure(page)
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                chromium([f"--screenshot={Path(shots).resolve() / (name + '.png')}", page.as_uri()])

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def m(self, name):
        got = self.measured.get(name)
        self.assertIsNotNone(got, f"Chromium rendered nothing measurable of {self.pages.get(name)}")
        return got

    def visible_labels(self, name, run=None):
        return {lb["phase"] for lb in self.m(name)["labels"] if lb["w"] > 0 and lb["h"] > 0
                and (run is None or lb["run"] == run)}

    def test_lesson2_shows_the_plateau_and_the_step_down(self):
        got = self.m("lesson2-retained")
        self.assertLessEqual({"allocated", "exited", "idle", "released"}, self.visible_labels("lesson2-retained"))
        bands = [b for b in got["bands"] if b["band"] == "retained" and b["w"] > 20 and b["h"] > 50]
        self.assertEqual(len(bands), 1, got["bands"])  # the stretch RSS stays up, shaded and named
        self.assertIn("as designed", got["banner"])
        # The negative control: a leak holds its memory in use, nothing was freed and kept.
        for name in ("lesson1-leaky-heapprof", "lesson3-leaky-heapprof"):
            self.assertEqual(self.m(name)["bands"], [], name)

    def test_phase_labels_never_overlap(self):
        for name, got in self.measured.items():
            labels = [lb for lb in (got or {}).get("labels", []) if lb["w"] > 0]
            self.assertGreaterEqual(len(labels), 1, f"{name}: no phase label drawn")
            for i, a in enumerate(labels):
                for b in labels[i + 1:]:
                    overlap = (a["x"] < b["x"] + b["w"] - 0.5 and b["x"] < a["x"] + a["w"] - 0.5
                               and a["y"] < b["y"] + b["h"] - 0.5 and b["y"] < a["y"] + a["h"] - 0.5)
                    self.assertFalse(overlap, f"{name}: {a} overlaps {b}")

    def test_the_compare_pages_overlay_both_runs(self):
        for name in ("lesson1-compare", "lesson2-compare"):
            got = self.m(name)
            self.assertEqual(got["runs"], ["2"], name)
            drawn = {(s["run"], s["series"]) for s in got["series"] if s["w"] > 0 or s["h"] > 0}
            self.assertLessEqual({("A", "rss"), ("B", "rss")}, drawn, name)
            self.assertTrue(self.visible_labels(name, "A") and self.visible_labels(name, "B"), name)

    def test_the_first_heap_graph_names_the_top_function(self):
        for name, top in (("lesson1-leaky-heapprof", "fill_buffer"), ("lesson3-leaky-heapprof", "session_new")):
            got = self.m(name)
            self.assertIsNotNone(got["heapTop"], name)
            self.assertEqual(got["heapTop"]["text"], top, got["heapTop"])
            self.assertGreater(got["heapTop"]["h"], 14, "the top function's label is large enough to read")

    def test_a_zoo_kernel_gets_its_snapshots_charted(self):
        got = self.m("zoo-cockroach10214")
        charts = [f for f in got["figures"] if f["figure"] == "phase-snapshots"]
        self.assertEqual(len(charts), 1, got["figures"])
        self.assertGreater(charts[0]["height"], 250)
        self.assertLessEqual({"baseline", "steady"}, self.visible_labels("zoo-cockroach10214"))


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
