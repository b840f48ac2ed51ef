#!/usr/bin/env python3
"""Tests of report.py: the page's sections, verdict rows, missing captures, no network, SVG inlining, compare."""

import contextlib
import html
import io
import os
import re
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_runs  # noqa: E402
from fake_runs import MB, MEMCHECK, make_run, snapshot  # noqa: E402
from scripts.views import plot, report, verdicts  # noqa: E402
from scripts.run import runner  # noqa: E402

SECTIONS = ("story", "verdict", "timeline", "census", "heap", "memcheck", "reproduce", "facts")
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def _section(page, sid):
    return re.search(rf'<section id="{sid}">.*?</section>', page, re.S).group(0)


def _text(fragment):
    """What a reader sees of an HTML fragment: tags gone, entities decoded, spaces squashed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).replace(" ,", ",").strip()


def network_references(page):
    """Everything in a page that could make a browser fetch something."""
    found = [u for u in re.findall(r"https?://[^\s\"'<>)]*", page) if u not in NAMESPACES]
    found += re.findall(r"<(?:script|link|img|iframe|object|embed)\b[^>]*>", page, re.I)
    found += re.findall(r"\bsrc\s*=", page, re.I)
    found += re.findall(r"@import", page)
    found += [u for u in re.findall(r"url\(\s*([^)]*)\)", page) if not u.strip().startswith("#")]
    # Links may go to an anchor on the page or to a file next to it, never to a scheme.
    found += [h for h in re.findall(r"""\bhref\s*=\s*["']([^"']*)""", page)
              if not h.startswith("#") and (":" in h or h.startswith("//"))]
    return found


class Base(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def page(self, run_dir):
        path = report.write_report(run_dir)
        self.assertEqual(path, Path(run_dir) / "report.html")
        return path.read_text()


class ThePage(Base):
    def test_every_section_is_there(self):
        run = make_run(self.tmp, tool="heapprof", allocator="tcmalloc", heap=True,
                       verdict=[("threads == workers + 1", "== 1001", "1001", "PASS")])
        page = self.page(run)
        for sid in SECTIONS:
            self.assertIn(f'<section id="{sid}">', page)
        self.assertIn('data-figure="timeline"', page)
        self.assertIn('data-figure="heap-graph"', page)
        self.assertIn('id="verdict-table"', page)
        self.assertIn("fill_buffer", page)            # the pprof top lines
        self.assertIn("futex_do_wait", page)          # the census
        self.assertIn("./leaklab run fake_scn --variant leaky --scale quick --tool heapprof --report", page)
        self.assertIn("/nonexistent/fake_scn --variant leaky", page)  # command.txt

    def test_a_failed_check_reads_fail_in_words_and_colour(self):
        run = make_run(self.tmp, verdict=[("threads == 1", "== 1", "1001", "FAIL"),
                                          ("rss_bytes >= payload_bytes", ">= 76 MiB", "ERROR", "ERROR"),
                                          ("census.largest == workers", "== 1000", "1000", "PASS")])
        page = self.page(run)
        row = re.search(r"<tr class=\"row-fail\">.*?</tr>", page, re.S).group(0)
        self.assertIn("threads == 1", row)
        self.assertRegex(row, r'<td class="v fail">.*FAIL</td>')
        self.assertRegex(page, r'<td class="v error">.*ERROR</td>')
        self.assertRegex(page, r'<td class="v pass">.*PASS</td>')
        self.assertRegex(page, r'class="banner fail".*<strong>FAIL</strong>')

    def test_missing_captures_are_stated_in_one_line(self):
        run = make_run(self.tmp, timeline=False, phases=[("steady", snapshot(census=None) | {"census": None})])
        page = self.page(run)
        self.assertIn("No heap profile: this run was made with --tool native", page)
        self.assertIn("No memcheck report: this run was made with --tool native", page)
        self.assertIn("No thread census", page)
        self.assertIn("not compared: there is no expected/fake_scn.toml", page)
        self.assertEqual(re.findall(r'data-figure="([^"]+)"', page), ["timeline"])  # drawn here, no gnuplot needed

    def test_no_samples_and_no_phases_say_so(self):
        run = make_run(self.tmp, samples=False, phases=[])
        page = self.page(run)
        self.assertIn("No timeline plot: no RSS samples", page)
        self.assertNotIn("data-figure", page)

    def test_memcheck_summary_by_kind(self):
        run = make_run(self.tmp, tool="memcheck", memcheck=MEMCHECK)
        page = self.page(run)
        table = re.search(r'<table class="memcheck">.*?</table>', page, re.S).group(0)
        for kind in ("definitely lost", "indirectly lost", "possibly lost", "still reachable"):
            self.assertIn(kind, table)
        self.assertIn("125.0 MiB", table)  # still reachable: 131,120,208 bytes
        self.assertIn("allocate_dtv", table)
        self.assertIn("Valgrind", page)    # the note on allocator statistics under valgrind

    def test_no_network_references(self):
        run = make_run(self.tmp, tool="heapprof", allocator="tcmalloc", heap=True, memcheck=MEMCHECK)
        page = self.page(run)
        self.assertEqual(network_references(page), [])
        self.assertNotIn("cyberz.org", page)  # the URL in pprof's script comment went with the script

    def test_the_checker_would_catch_a_reference(self):
        for bad in ('<img src="x.png">', '<a href="https://example.com/">', "<style>@import 'a.css'</style>",
                    '<div style="background:url(http://e.com/a.png)">', "<script>1</script>"):
            self.assertTrue(network_references(bad), bad)

    def test_ids_are_unique_on_the_page(self):
        run = make_run(self.tmp, tool="heapprof", allocator="tcmalloc", heap=True,
                       phases=[("steady", snapshot()), ("end", snapshot(threads=1))])
        page = self.page(run)
        ids = re.findall(r'\bid="([^"]+)"', page)
        self.assertEqual(len(ids), len(set(ids)), sorted(i for i in ids if ids.count(i) > 1))
        self.assertEqual(page.count('data-figure="heap-graph"'), 2)

    def test_a_page_without_docs_shows_no_internal_message(self):
        page = self.page(make_run(self.tmp))  # fake_scn has no docs page, no expected file
        body = _text(re.sub(r"<style>.*?</style>", "", page, flags=re.S))
        for internal in ("not found", "has no", "Traceback", "None"):
            self.assertNotIn(internal, body, internal)
        self.assertIn("the scenario\u2019s --help", html.unescape(page))  # the facts say where the story came from

    def test_the_story_says_this_run_s_scale_and_variant(self):
        page = self.page(make_run(self.tmp, scale="quick"))
        self.assertIn("<strong>This run:</strong> the leaky variant at quick scale: 1,000 worker threads, "
                      "payload 76.3 MiB. A PASS here means it leaked as designed.", page)
        page = self.page(make_run(self.tmp, "fake_scn.fixed.native.glibc-20260101-120000-2", variant="fixed"))
        self.assertIn("the fixed variant at quick scale", page)
        self.assertIn("A PASS here means the fix held", page)
        self.assertNotIn("as designed", page)

    def test_a_quick_leaky_page_tells_the_story_at_its_own_scale(self):
        run = make_run(self.tmp, "blocked_workers.leaky.native.glibc-20260101-120000-4", scenario="blocked_workers",
                       variant="leaky", scale="quick", params={"workers": 1000, "elements": 10000})
        story = _text(_section(self.page(run), "story"))
        self.assertIn("1,000 threads each append 10,000 random int64 to a buffer, then wait on a channel that "
                      "nobody closes. They never run again", story)
        self.assertIn("76.3 MiB of buffers, held", story)
        for seed in ("Ten thousand", "10,000 goroutines", "goroutines fill"):
            self.assertNotIn(seed, story)

    def test_a_fixed_page_tells_the_fix_not_the_leak(self):
        run = make_run(self.tmp, "blocked_workers.fixed.native.glibc-20260101-120000-5", scenario="blocked_workers",
                       variant="fixed", scale="quick", params={"workers": 1000, "elements": 10000})
        story = _text(_section(self.page(run), "story"))
        self.assertIn("Main closes it: every receive returns", story)
        self.assertNotIn("never run again", story)
        self.assertNotIn("as designed", story)
        self.assertIn("the fix held", story)

    def test_options_with_dashes_fill_their_placeholders(self):
        run = make_run(self.tmp, "delayed_exit.retained.native.glibc-20260101-120000-10", scenario="delayed_exit",
                       variant="retained", payload=89_184_000,
                       params={"workers": 1000, "elements": 10000, "records": 1, "hold-ms": 200, "idle-ms": 0})
        story = _text(_section(self.page(run), "story"))
        self.assertIn("1,000 threads each grow a buffer of 10,000 int64 (85.1 MiB in all), hold it 200 ms", story)

    def test_a_compare_page_tells_both_variants(self):
        a = make_run(self.tmp, "blocked_workers.leaky.native.glibc-20260101-120000-6", scenario="blocked_workers",
                     variant="leaky", params={"workers": 1000, "elements": 10000})
        b = make_run(self.tmp, "blocked_workers.fixed.native.glibc-20260101-120000-7", scenario="blocked_workers",
                     variant="fixed", params={"workers": 1000, "elements": 10000})
        story = _text(_section(report.render_compare(report.Run(a), report.Run(b), []), "story"))
        self.assertIn("A, leaky: 1,000 threads", story)
        self.assertIn("B, fixed: 1,000 threads", story)
        self.assertIn("Main closes it", story)

    def test_every_variant_of_a_scenario_page_has_its_run_story(self):
        # Each paragraph names only figures a run of it has: its options, and the payload.
        for name, variants, options in (("blocked_workers", {"leaky", "orphaned", "fixed"}, {"workers", "elements"}),
                                        ("delayed_exit", {"retained", "returned"},
                                         {"workers", "elements", "records", "hold_ms", "idle_ms", "idle_step_ms"}),
                                        ("rw_gateway", {"leaky", "fixed"},
                                         {"connections", "frames", "session_kb", "race_window_us"})):
            stories = report.run_stories((report.DOCS / f"{name}.md").read_text())
            self.assertEqual(set(stories), variants, name)
            for variant, text in stories.items():
                self.assertLessEqual(set(report.PLACEHOLDER.findall(text)), options | {"payload"}, (name, variant))
                self.assertIsNotNone(report.fill(text, dict.fromkeys(options | {"payload"}, "1")), (name, variant))

    def test_a_zoo_kernel_without_a_docs_page_says_what_this_run_leaves(self):
        if not (report.EXPECTED_DIR / "zoo" / "cockroach10214.toml").is_file():
            self.skipTest("no expected/zoo/cockroach10214.toml")
        run = make_run(self.tmp, "cockroach10214.leaky.native.glibc-20260101-120000-8", scenario="cockroach10214",
                       variant="leaky", params={"instances": 1})
        page = self.page(run)
        story = _text(_section(page, "story"))
        self.assertIn("calls the leaky function once: it leaves 2 threads blocked for good", story)
        self.assertIn("64.0 KiB of heap they keep alive", story)
        fixed = make_run(self.tmp, "cockroach10214.fixed.native.glibc-20260101-120000-9", scenario="cockroach10214",
                         variant="fixed", params={"instances": 3})
        story = _text(_section(self.page(fixed), "story"))
        self.assertIn("calls the fixed function 3 times: every thread it starts finishes", story)
        self.assertNotIn("not found", _text(page))
        self.assertIn("scenarios/zoo/cockroach10214.c", html.unescape(page))  # the facts point at the kernel
        self.assertIn("compared now with expected/zoo/cockroach10214.toml", page)  # the file that exists

    def test_verdict_rows_name_their_phase_and_a_leak_s_pass_says_what_it_means(self):
        rows = [("threads == workers + 1", "== 1001", "1001", "PASS"),
                ("rss_bytes@released / rss_bytes@allocated <= 0.25", "<= 0.25", "0.15", "PASS"),
                ("exit_code == 0", "== 0", "0", "PASS")]
        page = self.page(make_run(self.tmp, verdict=rows, verdict_phases=["steady", None, None]))
        cells = re.findall(r'<td class="phase"><code>([^<]*)</code>', page)
        self.assertEqual(cells, ["steady", "released, allocated", "whole run"])
        self.assertRegex(page, r'class="banner pass".*<strong>PASS \(leaked as designed\)</strong>')
        fixed = self.page(make_run(self.tmp, "fake_scn.fixed.native.glibc-20260101-120000-3", variant="fixed",
                                   verdict=rows[:1], verdict_phases=["end"]))
        self.assertRegex(fixed, r'class="banner pass".*<strong>PASS</strong>')

    def test_the_heap_profile_that_teaches_comes_first(self):
        run = make_run(self.tmp, tool="heapprof", allocator="tcmalloc", heap=True,
                       phases=[("listening", snapshot()), ("after-load", snapshot())])
        (run / "heap" / "01-listening.json").write_text(
            '{"phase": "listening", "total_bytes": 1100000, "top_function": "GetHeapProfile", '
            '"top_share": 0.996, "top_bytes": 1095600, "sites": {"GetHeapProfile": 1095600}}')
        page = self.page(run)
        heap = re.search(r'<section id="heap">.*?</section>', page, re.S).group(0)
        self.assertLess(heap.index("at <code>after-load</code>"), heap.index("<details"))
        self.assertGreater(heap.index("at <code>listening</code>"), heap.index("<details"))

    def test_memcheck_plot_says_why_there_is_no_heap_line(self):
        quiet = snapshot(in_use=0)
        run = make_run(self.tmp, tool="memcheck", memcheck=MEMCHECK, phases=[("steady", quiet)] * 3)
        page = self.page(run)
        self.assertIn("heap in use not plotted: under Valgrind", page)
        self.assertNotIn('data-series="in_use"', page)

    def test_story_comes_from_the_doc_page(self):
        text, source = report.story("blocked_workers")
        self.assertTrue(text.startswith("Ten thousand goroutines"), text)
        self.assertEqual(len(report._sentences(text)), 2)
        self.assertIn("docs/scenarios/blocked_workers.md", source)


class CensusStack(Base):
    """The census table shows each group's stack, its top frame in bold, the
    frames with file:line, and says why a group has none."""
    FRAMES = [{"function": "pthread_cond_wait", "file": None, "line": None, "address": "0x7f01",
               "module": "/usr/lib/x86_64-linux-gnu/libc.so.6", "system": True, "inlined": False},
              {"function": "ll_chan_recv", "file": "/src/common/chan.c", "line": 53, "address": "0x5501",
               "module": "/b/blocked_workers", "system": False, "inlined": False},
              {"function": "worker", "file": "/src/scenarios/blocked_workers.c", "line": 92, "address": "0x5502",
               "module": "/b/blocked_workers", "system": False, "inlined": False}]

    def census(self, **over):
        workers = {"state": "S", "wchan": "futex_do_wait", "syscall": "futex", "count": 1000,
                   "wait_address": "0x55d0c8a2e2c8", "wait_addresses": 1, "stack_status": "captured",
                   "stack": ["ll_chan_recv", "worker", "start_thread", "__clone3"], "frames": self.FRAMES}
        workers.update(over)
        poller = {"state": "S", "wchan": "do_poll", "syscall": "poll", "count": 1, "wait_address": None,
                  "wait_addresses": 0, "stack": [], "frames": [],
                  "stack_status": "not captured: in a system call a signal would interrupt (EINTR)"}
        return [workers, poller]

    def test_the_stack_is_shown_with_its_top_frame(self):
        page = self.page(make_run(self.tmp, phases=[("steady", snapshot(census=self.census()))]))
        self.assertIn("<code><b>ll_chan_recv</b></code> &larr; <code>worker</code>", page)
        self.assertIn("/src/common/chan.c:53", page)          # the frames, with file:line
        self.assertIn("on <code>0x55d0c8a2e2c8</code>", page)  # one futex word for the group
        self.assertIn("not captured: in a system call a signal would interrupt (EINTR)", page)

    def test_the_bold_frame_follows_the_stack(self):
        # a violating case: another top frame must move the bold, not keep ll_chan_recv
        frames = [dict(f, function="ll_chan_send") if f["function"] == "ll_chan_recv" else f for f in self.FRAMES]
        page = self.page(make_run(self.tmp, phases=[("steady", snapshot(census=self.census(
            stack=["ll_chan_send", "worker"], frames=frames)))]))
        self.assertIn("<code><b>ll_chan_send</b></code>", page)
        self.assertNotIn("<b>ll_chan_recv</b>", page)

    def test_a_census_without_stacks_says_so(self):
        page = self.page(make_run(self.tmp, phases=[("steady", snapshot())]))
        self.assertIn("not captured (a census without stacks)", page)


class Svg(Base):
    def inline(self, text, prefix="p-"):
        path = self.tmp / "x.svg"
        path.write_text(text)
        return report.inline_svg(path, prefix, "fig", "a figure")

    def test_pprof_svg_gets_a_viewbox_and_loses_its_script(self):
        svg = self.inline(fake_runs.PPROF_SVG)
        self.assertTrue(svg.startswith("<svg"))
        self.assertIn('viewBox="0 0 1058 762"', svg)   # translate(4 758) + the polygon -4..1054, -758..4
        self.assertNotIn("<script", svg)
        self.assertNotIn("onclick", svg)
        self.assertNotIn("DOCTYPE", svg)
        self.assertNotIn('width="100%"', svg)
        self.assertIn('id="p-viewport"', svg)
        self.assertIn('id="p-viewport-2"', svg)

    def test_gnuplot_references_follow_their_ids(self):
        svg = self.inline(fake_runs.TIMELINE_SVG, "a-")
        self.assertIn("id=\"a-gpDot\"", svg)
        self.assertIn('xlink:href="#a-gpDot"', svg)
        self.assertIn('viewBox="0 0 1000 520"', svg)
        self.assertIn("max-width:1000px", svg)

    def test_an_unreadable_file_is_none(self):
        self.assertIsNone(report.inline_svg(self.tmp / "missing.svg", "p-", "f", "l"))
        self.assertIsNone(self.inline("not an svg at all"))


class Fold(unittest.TestCase):
    """heapgraph.fold: the graph opens on the program's code, not on thread start-up frames."""

    @staticmethod
    def node(n, name, flat, y):
        return (f'<g id="node{n}" class="node"><title>N{n}</title><polygon points="0,{y} 100,{y} 100,{y + 30} 0,{y + 30}"/>'
                f'<text x="1" y="{y}">{name}</text><text x="1" y="{y + 10}">{flat}</text></g>')

    @staticmethod
    def edge(n, a, b):
        return f'<g id="edge{n}" class="edge"><title>N{a}&#45;&gt;N{b}</title><path d="M0,0"/></g>'

    def test_start_up_frames_that_allocate_nothing_are_folded(self):
        from scripts.views import heapgraph
        svg = ('<svg viewBox="0 0 100 400"><g id="graph0" class="graph" transform="translate(4 400)">'
               + self.node(1, "clone3", "0.0 (0.0%)", -390) + self.node(2, "start_thread", "0.0 (0.0%)", -300)
               + self.node(3, "worker", "0.0 (0.0%)", -200) + self.node(4, "fill_buffer", "125.0 (98.9%)", -100)
               + self.edge(1, 1, 2) + self.edge(2, 2, 3) + self.edge(3, 3, 4) + "</g></svg>")
        out, _ = heapgraph.fold(svg, "fill_buffer")
        folded = set(re.findall(r'<g id="(node\d)" data-folded="1"', out))
        self.assertEqual(folded, {"node1", "node2"})
        self.assertIn('viewBox="-8 188 ', out)   # cropped to worker and fill_buffer: -200 + 400 - 12
        # A start-up frame that allocates is the program's own: kept.
        kept = svg.replace(self.node(1, "clone3", "0.0 (0.0%)", -390), self.node(1, "clone3", "1.0 (0.8%)", -390))
        out, _ = heapgraph.fold(kept, "fill_buffer")
        self.assertEqual(set(re.findall(r'<g id="(node\d)" data-folded="1"', out)), set())


class Story(unittest.TestCase):
    def test_skips_code_and_its_introduction(self):
        md = ("# x\n\n## The story\n\nThe first demo, in Go:\n\n```go\nfor {}\n```\n\n"
              "Ten goroutines wait. They never run again. A third sentence.\n\n## Next\n")
        self.assertEqual(report.two_sentences(report.story_paragraph(md)),
                         "Ten goroutines wait. They never run again.")

    def test_joins_a_sentence_interrupted_by_code(self):
        md = ("## The story\n\nThe second lesson. Once they were fixed,\n\n```go\nx()\n```\n\n"
              "the count fell but RSS stayed. People hunted a leak.\n")
        self.assertEqual(report.two_sentences(report.story_paragraph(md)),
                         "The second lesson. Once they were fixed, the count fell but RSS stayed.")

    def test_no_section_no_story(self):
        self.assertIsNone(report.story_paragraph("# x\n\n## Run it\n\nText.\n"))

    def test_markdown_becomes_html(self):
        self.assertEqual(report.md_inline("a `b` **c** [d](e.md) <f>"),
                         "a <code>b</code> <strong>c</strong> d &lt;f&gt;")


class Verdict(Base):
    def test_a_plain_run_is_compared_with_its_expected_file(self):
        exp_dir = self.tmp / "expected"
        exp_dir.mkdir()
        (exp_dir / "fake_scn.toml").write_text(
            '[[check]]\nvariant = "leaky"\nphase = "steady"\nexpect = "threads == 5"\nwhy = "test"\n')
        run = make_run(self.tmp / "runs")
        old = report.EXPECTED_DIR
        report.EXPECTED_DIR = exp_dir
        try:
            page = self.page(run)
        finally:
            report.EXPECTED_DIR = old
        self.assertIn("compared now with expected/fake_scn.toml", page)
        self.assertRegex(page, r"threads == 5</code>.*?<td class=\"v fail\">.*?FAIL</td>")
        self.assertTrue((run / "verdict.json").is_file())


class Reproduce(Base):
    def test_commands_name_only_what_differs_from_the_defaults(self):
        run = report.Run(make_run(self.tmp, tool="heapprof", allocator="tcmalloc", options=["--workers", "200"]))
        run_line, check_line = report.leaklab_commands(run)
        self.assertEqual(run_line, "./leaklab run fake_scn --variant leaky --scale quick --tool heapprof "
                                   "--report -- --workers 200")
        self.assertTrue(check_line.startswith("./leaklab check fake_scn"))
        run = report.Run(make_run(self.tmp, "b", allocator="jemalloc"))
        self.assertIn("--allocator jemalloc", report.leaklab_commands(run)[0])


class Compare(Base):
    def runs(self, scale_b="quick"):
        a = make_run(self.tmp, "fake_scn.leaky.native.glibc-20260101-120000-1",
                     verdict=[("threads == 1001", "== 1001", "1001", "PASS")])
        b = make_run(self.tmp, "fake_scn.fixed.native.glibc-20260101-120005-2", variant="fixed", scale=scale_b,
                     phases=[("steady", snapshot()), ("end", snapshot(threads=1, rss=11 * MB, in_use=200_000,
                                                                      census=[]))],
                     verdict=[("threads == 1", "== 1", "1001", "FAIL")])
        return a, b

    def test_terminal_table_and_page(self):
        a, b = self.runs()
        text, path = report.compare(a, b)
        self.assertEqual(path, self.tmp / f"compare-{a.name}-vs-fixed.native.glibc.html")
        self.assertRegex(text, r"steady: threads\s+1,001\s+1,001\s+same")
        self.assertRegex(text, r"end: threads\s+-\s+1")
        self.assertRegex(text, r"last phase \(steady \| end\): threads\s+1,001\s+1\s+-1,000")
        self.assertRegex(text, r"run: verdict\s+PASS \(exit 0\)\s+FAIL \(exit 1\)")
        page = path.read_text()
        self.assertEqual(page.count('data-figure="timeline-overlay"'), 1)  # both runs, one pair of axes
        self.assertEqual(page.count('data-figure="timeline"'), 0)
        self.assertIn('data-run="A"', page)
        self.assertIn('data-run="B"', page)
        ids = re.findall(r'\bid="([^"]+)"', page)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(network_references(page), [])
        self.assertRegex(page, r'<td class="v fail">.*?FAIL</td>')

    def test_the_terminal_table_fits_160_columns_and_the_json_keeps_stacks(self):
        stack = ["wait_on", "ll_chan_recv", "worker", "start_thread", "__clone3"] * 8
        census = [{"state": "S", "wchan": "futex_do_wait", "syscall": "futex", "count": 1000, "stack": stack},
                  {"state": "R", "wchan": "-", "syscall": "read", "count": 1, "stack": ["census_json"]}]
        a = make_run(self.tmp, "fake_scn.leaky.native.glibc-20260101-120000-1",
                     phases=[("a-phase-with-a-rather-long-name", snapshot(census=census))])
        b = make_run(self.tmp, "fake_scn.fixed.native.glibc-20260101-120005-2", variant="fixed",
                     phases=[("a-phase-with-a-rather-long-name", snapshot(census=census))])
        text, path = report.compare(a, b)
        widest = max(text.splitlines(), key=len)
        self.assertLessEqual(len(widest), report.TERMINAL_COLUMNS, widest)
        self.assertIn("1000 x futex @ wait_on <- \u2026", text)
        whole = path.with_suffix(".json").read_text()
        self.assertIn(" <- ".join(stack), whole)
        self.assertIn(" <- ".join(stack).replace("<", "&lt;"), path.read_text())  # the page keeps it whole

    def test_different_scales_are_pointed_out(self):
        a, b = self.runs(scale_b="seed")
        text, _ = report.compare(a, b, self.tmp / "out.html")
        self.assertIn("note: A ran at quick scale and B at seed scale", text)
        self.assertTrue((self.tmp / "out.html").is_file())


class Resolve(Base):
    def test_a_name_prefix_finds_the_newest_run(self):
        make_run(self.tmp, "fake_scn.leaky.native.glibc-20260101-120000-1")
        newer = make_run(self.tmp, "fake_scn.leaky.native.glibc-20260101-130000-7")
        make_run(self.tmp, "fake_scn.fixed.native.glibc-20260101-140000-3")
        self.assertEqual(report.resolve_run("fake_scn.leaky", self.tmp), newer.resolve())
        self.assertEqual(report.resolve_run(str(newer), self.tmp), newer.resolve())

    def test_bad_names_are_usage_errors(self):
        (self.tmp / "plain").mkdir()
        with self.assertRaises(runner.UsageError):
            report.resolve_run(str(self.tmp / "plain"), self.tmp)
        with self.assertRaises(runner.UsageError):
            report.resolve_run("nothing_like_it", self.tmp)

    def test_command_line_exit_codes(self):
        run = make_run(self.tmp)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            self.assertEqual(report.main(["report", str(run)]), 0)
            self.assertEqual(report.main(["report", "no_such_run", "--runs", str(self.tmp)]), 2)
            self.assertEqual(report.main(["compare", str(run), str(run), "--out", str(self.tmp / "c.html")]), 0)
            with self.assertRaises(SystemExit) as cm:
                report.main(["report"])
            self.assertEqual(cm.exception.code, 2)
        self.assertIn(f"report: {run / 'report.html'}", out.getvalue())
        self.assertIn("neither a run directory", err.getvalue())


def _build_dir():
    return Path(os.environ.get("LEAKLAB_BUILD_DIR") or report.REPO / "build")


@unittest.skipUnless((_build_dir() / "scenarios" / "blocked_workers").is_file(),
                     "blocked_workers is not built (cmake --build build)")
class RealRun(Base):
    """One real run of the seed scenario, reported: the page must read what a real run leaves."""

    def test_blocked_workers_report(self):
        spec = runner.RunSpec(scenario="blocked_workers", variant="leaky", scale="quick", out=self.tmp,
                              build_dir=_build_dir(), timeout_s=300, options=["--workers", "100"])
        run_dir, info = runner.execute(spec)
        self.assertEqual(info["exit_code"], 0, info)
        page = self.page(run_dir)
        for sid in SECTIONS:
            self.assertIn(f'<section id="{sid}">', page)
        self.assertIn("100 threads each append 10,000 random int64", page)  # the story at this run's scale,
        self.assertNotIn("Ten thousand", page)                            # and then what this run is:
        self.assertIn("<strong>This run:</strong> the leaky variant at quick scale: 100 worker threads", page)
        self.assertIn('id="verdict-table"', page)                 # compared now: blocked_workers has checks
        self.assertIn("threads == workers + 1", page)
        self.assertIn("at <code>steady</code>: 101 threads", page)  # the census, whatever the kernel calls the wait
        self.assertIn("No heap profile", page)
        self.assertIn("./leaklab run blocked_workers --variant leaky --scale quick --report -- --workers 100", page)
        self.assertRegex(page, r'data-figure="(timeline|phase-snapshots)"')  # 100 workers may be over in 0.1 s
        self.assertEqual(network_references(page), [])


class Plots(unittest.TestCase):
    """The plots' layout rules, on data shaped like the lessons'."""

    def test_phase_labels_never_overlap(self):
        s = plot.Series("x", samples=[(t / 100, 50 * MB, 3) for t in range(0, 160)],
                        phases=[(0.50, "allocated", 90 * MB, 95 * MB), (0.84, "exited", 300_000, 77 * MB),
                                (0.86, "idle", 300_000, 77 * MB), (0.9, "idle", 300_000, 77 * MB),
                                (0.91, "released", 300_000, 12 * MB), (0.92, "end", 0, 11 * MB)])
        svg = plot.timeline_svg([s], "t")
        boxes = []
        for m in re.finditer(r'<text class="phase-label"[^>]* x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)<', svg):
            x, y, text = float(m.group(1)), float(m.group(2)), html.unescape(m.group(3))
            boxes.append((x, x + len(text) * plot.CHAR_W, y))
        self.assertEqual(len(boxes), 5, svg)  # the two idle snapshots are one mark
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                same_row = a[2] == b[2]
                self.assertFalse(same_row and a[0] < b[1] and b[0] < a[1], (a, b))

    def test_retention_is_shaded_and_a_leak_is_not(self):
        kept = plot.Series("x", samples=[(t / 10, 80 * MB, 1) for t in range(20)],
                           phases=[(0.5, "allocated", 90 * MB, 95 * MB), (0.8, "exited", 300_000, 77 * MB),
                                   (1.4, "idle", 300_000, 77 * MB), (1.5, "released", 300_000, 12 * MB)])
        self.assertEqual(plot.retained_stretch(kept)[:2], (0.8, 1.5))
        self.assertIn('data-band="retained"', plot.timeline_svg([kept]))
        leak = plot.Series("y", samples=[(t / 10, 90 * MB, 1001) for t in range(20)],
                           phases=[(0.5, "steady", 130 * MB, 90 * MB)])
        self.assertIsNone(plot.retained_stretch(leak))
        baseline = plot.Series("w", samples=[(t / 10, 10 * MB, 2) for t in range(8)] +
                               [(t / 10, 27 * MB, 202) for t in range(8, 10)],
                               phases=[(0.1, "listening", 75_000, 10 * MB), (0.8, "after-load", 13 * MB, 27 * MB)])
        self.assertIsNone(plot.retained_stretch(baseline))  # nothing was freed before `listening`

    def test_a_short_run_is_short_and_the_thread_axis_counts_its_threads(self):
        short = plot.Series("z", samples=[(0.01, 5 * MB, 3), (0.02, 5 * MB, 3)],
                            phases=[(0.015, "steady", MB, 5 * MB)])
        self.assertTrue(short.is_short())
        events = [{"event": "phase", "phase": "baseline", "snapshot": snapshot(threads=1, census=[])},
                  {"event": "phase", "phase": "steady", "snapshot": snapshot(threads=3, census=[])}]
        svg = plot.snapshot_svg(events, "z")
        self.assertIn('data-figure="phase-snapshots"', svg)
        self.assertIn(">3 threads<", svg)
        self.assertEqual(plot.nice_max(3, integer=True), (4, 1))

    def test_the_terminal_says_a_leak_passed_as_designed_and_names_phases(self):
        from scripts.cli import leaklab
        from scripts.expect import comparer
        rows = [comparer.Row("threads == workers + 1", "== 1001", "1001", "PASS", raw={"phase": "steady"}),
                comparer.Row("exit_code == 0", "== 0", "0", "PASS", raw={})]
        for variant, last in (("leaky", "PASS (leaked as designed) (exit 0)"), ("fixed", "PASS (exit 0)")):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                leaklab.report(comparer.Verdict(0, rows, f"x variant={variant} tool=native"))
            lines = out.getvalue().splitlines()
            self.assertRegex(lines[0], r"^check\s+phase\s+expected\s+observed\s+verdict$")
            self.assertRegex(lines[1], r"^threads == workers \+ 1\s+steady\s+")
            self.assertTrue(lines[-1].startswith(last), lines[-1])

    def test_verdict_phases(self):
        self.assertEqual(verdicts.phases_of({"check": "threads == 1", "phase": "exited"}), ["exited"])
        self.assertEqual(verdicts.phases_of({"check": "rss_bytes <= 0.25 * rss_bytes@allocated",
                                             "phase": "released"}), ["released", "allocated"])
        self.assertEqual(verdicts.phases_of({"check": "memcheck.definitely_lost_bytes == 0", "phase": None}), [])
        # A tool's report is once per run, whatever the check's phase; a function's argument is no metric.
        self.assertEqual(verdicts.phases_of({"check": "tool.blocks(alive) == workers", "phase": "steady"}), [])
        self.assertEqual(verdicts.phases_of({"check": "census.count_at(hold_buffer) == workers",
                                             "phase": "allocated"}), ["allocated"])
        self.assertEqual(verdicts.phase_text({"check": "exit_code == 0", "phase": None}), "whole run")
        self.assertEqual(verdicts.phase_text({"check": "exit_code == 0"}), "-")  # an old verdict.json
        self.assertEqual(verdicts.pass_word("PASS", "leaky"), "PASS (leaked as designed)")
        self.assertEqual(verdicts.pass_word("FAIL", "leaky"), "FAIL")
        self.assertEqual(verdicts.pass_word("PASS", "fixed"), "PASS")


if __name__ == "__main__":
    unittest.main()
