#!/usr/bin/env python3
"""Writes a run directory's report.html (one self-contained page); compares two runs in the terminal and as a page."""

# The page is for people, in a workshop: the scenario's story, the verdict
# table, the timeline plot, the thread census, the heap profile, the memcheck
# summary and the commands that reproduce the run. It must open anywhere with
# no network: every SVG is inlined (scripts stripped, ids prefixed), the CSS
# is inline, there is no JavaScript. A capture the run does not have gets one
# line saying so, never an empty section.

import argparse
import html
import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path


from scripts.base import eventlog
from scripts.base.exits import EXIT_OK, EXIT_SYSTEM, EXIT_USAGE
from scripts.expect import comparer, expected
from scripts.run import runner
from scripts.views import heapgraph, plot, verdicts

REPO = runner.REPO
DOCS = REPO / "docs" / "scenarios"
EXPECTED_DIR = REPO / "expected"
RUNS_DIR = REPO / "runs"

HEAP_TOP_LINES = 12      # pprof --text lines shown: the Total line and the largest functions
CENSUS_MAX_GROUPS = 12   # a census has a handful of groups; a runaway one is cut, and says so
PHASE_ROWS_MAX = 40      # delayed_exit's idle phase snapshots once a second

# What a census group's system call usually means for these scenarios: the
# kernel's side of a wait, so a learner can name the user-space call.
SYSCALL_MEANING = {
    "futex": "waiting on a mutex or condition variable (pthread_cond_wait: a channel receive, a queue)",
    "read": "in read(): usually main, reading /proc for this very snapshot",
    "running": "running on a CPU",
    "poll": "waiting in poll(): the gateway's listener waiting for connections",
    "accept": "waiting in accept() for a connection",
    "accept4": "waiting in accept() for a connection",
    "recvfrom": "blocked receiving on a socket",
    "sendto": "blocked sending on a socket",
    "epoll_wait": "waiting in epoll_wait() for I/O",
    "nanosleep": "sleeping",
    "clock_nanosleep": "sleeping",
}
STATE_MEANING = {"S": "sleeping", "R": "running", "D": "uninterruptible wait", "Z": "zombie", "T": "stopped"}

VERDICT_STYLE = {  # text, symbol, css class: the verdict reads without colour too
    "PASS": ("\u2714", "pass"), "FAIL": ("\u2718", "fail"), "ERROR": ("\u26a0", "error"), "SKIP": ("\u2013", "skip"),
}


class UsageError(runner.UsageError):
    """A RUN_DIR that names no run directory (exit 2)."""


# ---- finding and reading a run ---------------------------------------------

def is_run_dir(path):
    path = Path(path)
    return path.is_dir() and ((path / "run.json").is_file() or (path / "events.jsonl").is_file())


def resolve_run(arg, runs_dir=None):
    """A run directory from a path, or from the start of a run directory's name
    under runs_dir (the newest match): `blocked_workers.leaky.native` finds the
    last leaky native run. Raises UsageError naming what was looked for."""
    path = Path(arg)
    if is_run_dir(path):
        return path.resolve()
    if path.exists():
        raise UsageError(f"RUN_DIR: '{arg}' is not a run directory (no run.json, no events.jsonl)")
    runs_dir = Path(runs_dir or RUNS_DIR)
    if "/" not in str(arg) and runs_dir.is_dir():
        matches = [p for p in runs_dir.iterdir() if p.name.startswith(str(arg)) and is_run_dir(p)]
        if matches:
            return max(matches, key=_started).resolve()
    raise UsageError(f"RUN_DIR: '{arg}' is neither a run directory nor the start of a run "
                     f"directory's name in {runs_dir} (e.g. blocked_workers.leaky.native)")


def _started(run_dir):
    # The name carries the start time (…-YYYYmmdd-HHMMSS-PID); the mtime breaks
    # ties between runs started within one second.
    m = re.search(r"-(\d{8}-\d{6})-\d+(?:\.\d+)?$", run_dir.name)
    return (m.group(1) if m else "", run_dir.stat().st_mtime)


class Run:
    """What the report reads from one run directory."""

    def __init__(self, run_dir):
        self.dir = Path(run_dir)
        self.data = comparer.RunData.load(self.dir)
        self.info = self.data.info
        self.events, _ = eventlog.read(self.dir / "events.jsonl")  # the verdict table reports malformed lines
        self.phase_events = [e for e in self.events if e.get("event") == "phase"]
        self.scenario = self.data.field("scenario") or "?"
        self.variant, self.tool, self.allocator, self.scale = comparer.identity(self.data)
        self.tool = self.tool or "native"

    @property
    def title(self):
        return f"{self.scenario} {self.variant or ''} ({self.tool}, {self.allocator}, {self.scale} scale)"

    def last_phases(self):
        """[(name, event)] with the last event of each phase, in first-seen order."""
        return [(name, self.data.phases[name]) for name in dict.fromkeys(self.data.phase_order)]

    def timeline(self):
        """[(t, rss, threads)] from timeline.csv ([] when absent)."""
        rows = []
        try:
            lines = (self.dir / "timeline.csv").read_text().splitlines()[1:]
        except OSError:
            return rows
        for line in lines:
            parts = line.split(",")
            try:
                rows.append((float(parts[0]), int(parts[1]), int(parts[2])))
            except (ValueError, IndexError):
                continue
        return rows

    def heap_profiles(self):
        """[(stem, summary dict)] for heap/*.json, in phase order."""
        out = []
        for path in sorted((self.dir / "heap").glob("*.json")) if (self.dir / "heap").is_dir() else ():
            try:
                summary = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(summary, dict) and "phase" in summary:
                out.append((path.stem, summary))
        return out

    def memcheck(self):
        try:
            return json.loads((self.dir / "memcheck.json").read_text())
        except (OSError, ValueError):
            return None


def verdict_of(run):
    """(verdict.json as a dict or None, a note on where it came from).
    A plain `run` has no verdict.json: the comparer computes it now, as
    `check` would have, when the scenario has an expected file."""
    path = run.dir / "verdict.json"
    if path.is_file():
        try:
            return json.loads(path.read_text()), "from verdict.json in the run directory"
        except ValueError:
            pass
    exp_path = expected.path_for(run.scenario, EXPECTED_DIR)
    if not exp_path.is_file():
        return None, f"not compared: there is no {_expected_name(run.scenario)}"
    try:
        comparer.compare(run.dir, exp_path)  # writes verdict.json, like `check`
    except Exception as e:  # a page with no verdict beats no page: the rest is still worth reading
        return None, f"not compared: the comparer failed ({type(e).__name__}: {e})"
    try:
        return json.loads(path.read_text()), f"compared now with {_expected_name(run.scenario)} (the run was not checked)"
    except (OSError, ValueError):
        return None, "not compared: the comparer could not write verdict.json (read-only run directory?)"


# ---- the scenario's story ----------------------------------------------------

def story(scenario):
    """(two sentences, where they came from). The source is the first prose
    paragraph of the '## The story' section of docs/scenarios/NAME.md, so the
    docs stay the one place the story is written; without the page, the
    expected file's summary (a zoo kernel's) or the binary's --help stand in."""
    path = DOCS / f"{scenario}.md"
    try:
        text = path.read_text()
    except OSError:
        text = None
    if text is not None:
        para = story_paragraph(text)
        if para:
            return two_sentences(para), f"docs/scenarios/{scenario}.md, \u201cThe story\u201d"
    exp = _expected(scenario)
    summary = exp.summary if exp else ""
    if summary:
        where = _expected_name(scenario)
        if exp.truth is not None:
            where += (f" (summary and [truth]); the kernel, its Go original and its fix: "
                      f"scenarios/zoo/{scenario}.c; the zoo: docs/zoo.md")
        return summary, where
    return "", "the scenario\u2019s --help (the seed scenarios\u2019 stories are in docs/scenarios/)"


def _expected(scenario):
    try:
        return expected.load(expected.path_for(scenario, EXPECTED_DIR))
    except expected.ExpectedFileError:
        return None


def _expected_name(scenario):
    """expected/SCENARIO.toml or expected/zoo/SCENARIO.toml, as a learner finds it in the tree."""
    path = expected.path_for(scenario, EXPECTED_DIR)
    return str(Path("expected") / path.relative_to(EXPECTED_DIR))


# The docs page's "### On a run's report page" list: one paragraph per
# variant ("- `leaky`: ..."), `{name}` standing for the run's own figures, so
# a page never tells a 1,000-thread run that it had ten thousand, nor a fixed
# run that its threads never run again.
RUN_STORY_HEADING = re.compile(r"^###\s+On a run\u2019s report page\s*$|^###\s+On a run's report page\s*$", re.M)
RUN_STORY_ITEM = re.compile(r"^-\s+`([a-z][a-z0-9_]*)`:\s+(.*)$")
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def run_stories(markdown):
    """{variant: paragraph with {placeholders}} from the docs page's
    "### On a run's report page" list ({} when the page has none)."""
    m = RUN_STORY_HEADING.search(markdown or "")
    if not m:
        return {}
    out, current = {}, None
    for line in markdown[m.end():].splitlines():
        if line.startswith("#"):
            break
        item = RUN_STORY_ITEM.match(line)
        if item:
            current = item.group(1)
            out[current] = item.group(2).strip()
        elif current and line.startswith("  ") and line.strip():
            out[current] += " " + line.strip()
        elif not line.strip() and current:
            current = None
    return out


def run_figures(run):
    """{placeholder: text}: the run's scenario options (thousands separated)
    and its payload."""
    start = run.data.start or {}
    figures = {k.replace("-", "_"): (f"{v:,}" if isinstance(v, int) else str(v))
               for k, v in (start.get("params") or {}).items()}   # --hold-ms is {hold_ms}
    if isinstance(start.get("payload_bytes"), int) and start["payload_bytes"] > 0:
        figures["payload"] = fmt_bytes(start["payload_bytes"])
    return figures


def fill(template, figures):
    """The template with every {name} replaced, or None when the run lacks one."""
    missing = [n for n in PLACEHOLDER.findall(template) if n not in figures]
    if missing:
        return None
    return PLACEHOLDER.sub(lambda m: figures[m.group(1)], template)


def run_story(run):
    """(text, source) of this run's story at its own scale and variant, or None:
    the docs page's paragraph for the variant, or for a zoo kernel what its
    [truth] says this run leaves behind."""
    try:
        markdown = (DOCS / f"{run.scenario}.md").read_text()
    except OSError:
        markdown = None
    template = run_stories(markdown).get(run.variant or "")
    if template:
        text = fill(template, run_figures(run))
        if text:
            return text, f"docs/scenarios/{run.scenario}.md, \u201cOn a run\u2019s report page\u201d"
    exp = None if markdown else _expected(run.scenario)
    if exp is not None and exp.truth is not None and run.variant in exp.truth.variants:
        return truth_story(exp, run), (f"{_expected_name(run.scenario)} (summary and [truth]); the kernel, its Go "
                                       f"original and its fix: scenarios/zoo/{run.scenario}.c; the zoo: docs/zoo.md")
    return None


def truth_story(exp, run):
    """A zoo kernel's story for this run: its summary, then what this many calls leave behind."""
    truth = exp.truth.variants[run.variant]
    instances = (run.data.start or {}).get("params", {}).get("instances")
    instances = instances if isinstance(instances, int) and instances > 0 else 1
    calls = "once" if instances == 1 else f"{instances:,} times"
    threads = truth.value("leaked_threads", instances)
    pinned = truth.value("pinned_bytes", instances)
    unjoined = truth.value("unjoined_threads", instances)
    text = f"{exp.summary.rstrip('.')}." if exp.summary else f"{exp.truth.pattern}."
    text += f" This run ({exp.truth.origin}) calls the {run.variant} function {calls}"
    if threads or unjoined or pinned:
        left = []
        if threads:
            sites = ", ".join(f"`{s}`" for s in truth.wait_site)
            left.append(f"{threads:,} thread{'s' if threads != 1 else ''} blocked for good"
                        + (f" (in {sites})" if sites else ""))
        if unjoined:
            left.append(f"{unjoined:,} ended thread{'s' if unjoined != 1 else ''} never joined")
        if pinned:
            left.append(f"{fmt_bytes(pinned)} of heap they keep alive")
        text += ": it leaves " + ", and ".join(left) + "."
    else:
        text += ": every thread it starts finishes and is joined, and nothing is left behind."
    return text


def story_paragraph(markdown):
    """The first prose paragraph of the '## The story' section, or None.
    Skipped: code blocks, the paragraph that introduces one ("…, in Go:"),
    the continuation after one (it starts in lower case), lists, tables,
    quotes and headings."""
    m = re.search(r"^##\s+The story\s*$(.*?)(?=^##\s|\Z)", markdown, re.M | re.S)
    if not m:
        return None
    blocks, para, in_code = [], [], False
    for line in m.group(1).splitlines():
        if line.lstrip().startswith("```"):
            if para:
                blocks.append(("para", " ".join(para)))
                para = []
            if not in_code:
                blocks.append(("code", ""))
            in_code = not in_code
        elif in_code:
            continue
        elif line.strip():
            para.append(line.strip())
        elif para:
            blocks.append(("para", " ".join(para)))
            para = []
    if para:
        blocks.append(("para", " ".join(para)))
    # A sentence interrupted by a code block ("…were fixed to give up,
    # <code> the goroutine count fell…") is one paragraph without the code.
    merged = []
    for kind, text in blocks:
        if (kind == "para" and text[:1].islower() and len(merged) >= 2 and merged[-1][0] == "code"
                and merged[-2][0] == "para" and not merged[-2][1].endswith(":")):
            merged.pop()
            merged[-1] = ("para", merged[-1][1] + " " + text)
        else:
            merged.append((kind, text))
    for i, (kind, text) in enumerate(merged):
        introduces_code = i + 1 < len(merged) and merged[i + 1][0] == "code"
        lone_intro = text.endswith((":", ",")) and len(_sentences(text)) < 2
        if (kind == "para" and not introduces_code and not lone_intro and text[:1].isupper()
                and not re.match(r"([-*>|#]|\d+\.)\s", text)):
            return text
    return None


def _sentences(para):
    return re.split(r"(?<=[.!?])\s+(?=[A-Z`*\"(])", para)


def two_sentences(para):
    return " ".join(_sentences(para)[:2])


def help_summary(binary):
    """The summary paragraph of `BINARY --help` (empty when it cannot run)."""
    try:
        out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = out.splitlines()
    para = []
    for line in lines[2:] if lines and lines[0].startswith("usage:") else ():
        if not line.strip():
            break
        para.append(line.strip())
    return " ".join(para)


def md_inline(text):
    """The inline Markdown of a doc paragraph as HTML: `code`, **strong**, *em*, [text](link) -> text."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"(?<!\*)\*([^*]+)\*(?!\*)", r"<em>\1</em>", out)


# ---- inlining an SVG ------------------------------------------------------------

_NS_OK = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")


def inline_svg(path, prefix, figure, label):
    """An SVG file as an <svg> element to put in the page, or None when the
    file is missing or unreadable. Scripts (pprof embeds a pan/zoom script),
    event attributes, comments and the DOCTYPE go; every id and reference to
    one gets `prefix` so two figures on a page cannot collide; the root gets
    a viewBox (pprof's --svg drops graphviz's) so CSS can size it."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    text = re.sub(r"<\?xml.*?\?>", "", text, flags=re.S)
    text = re.sub(r"<!DOCTYPE[^>\[]*(\[.*?\])?\s*>", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<script\b.*?</script\s*>", "", text, flags=re.S | re.I)
    text = re.sub(r"\son[a-z]+\s*=\s*(\"[^\"]*\"|'[^']*')", "", text, flags=re.I)
    seen = {}

    def new_id(m):
        # pprof's SVG has two groups with id "viewport": ids must be unique in a page.
        name = m.group(2)
        seen[name] = seen.get(name, 0) + 1
        return f'id="{prefix}{name}"' if seen[name] == 1 else f'id="{prefix}{name}-{seen[name]}"'
    text = re.sub(r"""(?<![\w:-])id\s*=\s*(["'])([^"']+)\1""", new_id, text)
    text = re.sub(r"""(\b(?:xlink:)?href\s*=\s*)(["'])#([^"']+)\2""",
                  lambda m: f'{m.group(1)}"#{prefix}{m.group(3)}"', text)
    text = re.sub(r"url\(\s*#([^)\s]+)\s*\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    root = re.search(r"<svg\b([^>]*)>", text)
    if not root:
        return None
    attrs = root.group(1)
    box = _attr(attrs, "viewBox") or _graphviz_box(text) or _size_box(attrs)
    attrs = re.sub(r"""\s(width|height|viewBox|style|class)\s*=\s*(["'])[^"']*\2""", "", attrs)
    width = None
    if box:
        attrs += f' viewBox="{box}"'
        try:
            width = float(box.split()[2])
        except (IndexError, ValueError):
            width = None
    # Never wider than drawn (small text stays readable); narrower to fit the page.
    style = f' style="max-width:{width:g}px"' if width else ' style="height:600px"'
    attrs += (f' class="figure-svg" data-figure="{html.escape(figure)}" role="img" '
              f'aria-label="{html.escape(label)}" preserveAspectRatio="xMidYMin meet"{style}')
    body = text[root.end():]
    end = body.rfind("</svg>")
    return f"<svg{attrs}>{body[:end] if end >= 0 else body}</svg>"


def _attr(attrs, name):
    m = re.search(rf"""\b{name}\s*=\s*(["'])([^"']*)\1""", attrs)
    return m.group(2).strip() if m else None


def _size_box(attrs):
    w, h = _attr(attrs, "width"), _attr(attrs, "height")
    try:
        return f"0 0 {float(re.sub('(pt|px)$', '', w)):g} {float(re.sub('(pt|px)$', '', h)):g}"
    except (TypeError, ValueError):
        return None


def _graphviz_box(text):
    """The drawing's box from graphviz's own output: the graph group's
    translate() and its background polygon, which spans the whole graph."""
    m = re.search(r"""<g\b[^>]*class=["']graph["'][^>]*transform=["'][^"']*"""
                  r"""translate\(\s*([-\d.]+)[ ,]+([-\d.]+)\s*\)""", text)
    if not m:
        return None
    poly = re.search(r"""<polygon\b[^>]*points=["']([^"']+)["']""", text[m.end():])
    if not poly:
        return None
    try:
        pts = [tuple(float(v) for v in p.split(",")) for p in poly.group(1).split()]
        tx, ty = float(m.group(1)), float(m.group(2))
    except ValueError:
        return None
    xs = [x + tx for x, _ in pts]
    ys = [y + ty for _, y in pts]
    w, h = max(xs) - min(xs), max(ys) - min(ys)
    if w <= 0 or h <= 0:
        return None
    return f"{min(xs):g} {min(ys):g} {w:g} {h:g}"


# ---- formatting ---------------------------------------------------------------

def fmt_bytes(n):
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    if n < 0:
        return "n/a"  # the allocator does not report it (e.g. glibc's released bytes)
    if n >= 0.1 * 1048576:
        return f"{n / 1048576:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} B"


def fmt_num(n):
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:.4g}"
    return f"{int(n):,}"


def esc(value):
    return html.escape(str(value))


def verdict_cell(word):
    symbol, css = VERDICT_STYLE.get(word, ("?", "error"))
    return f'<td class="v {css}"><span aria-hidden="true">{symbol} </span>{esc(word)}</td>'


def result_word(code):
    return {0: "PASS", 1: "FAIL", 77: "SKIP"}.get(code, "ERROR")


# ---- the report's sections -------------------------------------------------------

def section_story(run, other=None):
    """The story (from the docs, else the expected file's or the binary's summary),
    then what this run is: its variant and its real scale. Where the text came
    from, or why the docs had none, goes to the run facts, not to the learner."""
    own = [run_story(r) for r in ((run,) if other is None else (run, other))]
    if all(own) and other is not None and other.variant != run.variant:
        out = [f'<p class="story"><strong>{letter}, {esc(r.variant)}:</strong> {md_inline(s[0])}</p>'
               for letter, r, s in zip("AB", (run, other), own)]
    elif own[0]:
        out = [f'<p class="story">{md_inline(own[0][0])}</p>']
    else:
        text, source = story(run.scenario)
        if not text:
            text = help_summary(run.info.get("binary") or "")
        out = [f'<p class="story">{md_inline(text)}</p>'] if text else []
    if own[0] and own[0][1].startswith("docs/"):
        out.append(f'<p class="source">Told at this run\u2019s scale; the seed\u2019s story, in Go, is in '
                   f'docs/scenarios/{esc(run.scenario)}.md.</p>')
    if other is None:
        out.append(f'<p class="this-run"><strong>This run:</strong> {esc(this_run(run))}</p>')
    else:
        out.append(f'<p class="this-run"><strong>A:</strong> {esc(this_run(run))}<br>'
                   f'<strong>B:</strong> {esc(this_run(other))}</p>')
    return "\n".join(out)


def story_note(run):
    """Where the story came from (for the run facts)."""
    own = run_story(run)
    return own[1] if own else story(run.scenario)[1]


def this_run(run):
    """'the leaky variant at quick scale: 1,000 workers, payload 76.3 MiB. PASS means it leaked as designed.'"""
    start = run.data.start or {}
    params = start.get("params") or {}
    counts = []
    for key, one, many in (("workers", "worker thread", "worker threads"), ("connections", "connection", "connections"),
                           ("instances", "instance", "instances")):
        if isinstance(params.get(key), int):
            counts.append(f"{params[key]:,} {one if params[key] == 1 else many}")
    if not counts and isinstance(start.get("workers"), int) and start["workers"]:
        counts.append(f"{start['workers']:,} workers")
    payload = start.get("payload_bytes")
    if isinstance(payload, int) and payload > 0:
        counts.append(f"payload {fmt_bytes(payload)}")
    text = f"the {run.variant or 'default'} variant at {run.scale or '?'} scale"
    if counts:
        text += ": " + ", ".join(counts)
    meaning = verdicts.designed(run.variant)
    if meaning:
        text += f". A PASS here means it {meaning}."
    elif run.variant and run.variant != "default":
        text += ". A PASS here means the fix held: nothing the leaky variant keeps is left."
    else:
        text += "."
    return text


def section_verdict(run, table_id="verdict-table"):
    doc, note = verdict_of(run)
    if doc is None:
        return f'<p class="missing">Verdict: {esc(note)}.</p>'
    word = result_word(doc.get("result"))
    symbol, css = VERDICT_STYLE[word]
    shown = verdicts.pass_word(word, doc.get("variant"))
    out = [f'<p class="banner {css}"><span aria-hidden="true">{symbol} </span><strong>{esc(shown)}</strong> '
           f'(exit {esc(doc.get("result"))}): {esc(doc.get("message", ""))}</p>',
           f'<p class="source">Verdict {esc(note)}.</p>']
    checks = doc.get("checks") or []
    if checks:
        out.append(f'<table class="verdict" id="{table_id}"><thead><tr><th>check</th><th>phase</th>'
                   '<th>expected</th><th>observed</th><th>verdict</th></tr></thead><tbody>')
        for c in checks:
            v = c.get("verdict", "ERROR")
            notes = []
            if c.get("detail"):
                notes.append(f'<div class="detail">{esc(c["detail"])}</div>')
            if c.get("why"):
                notes.append(f'<div class="why">why: {esc(c["why"])}</div>')
            out.append(f'<tr class="row-{VERDICT_STYLE.get(v, ("", "error"))[1]}"><td><code>{esc(c.get("check", ""))}'
                       f'</code>{"".join(notes)}</td><td class="phase"><code>{esc(verdicts.phase_text(c))}</code></td>'
                       f'<td>{esc(c.get("expected", ""))}</td>'
                       f'<td>{esc(c.get("observed", ""))}</td>{verdict_cell(v)}</tr>')
        out.append("</tbody></table>")
    return "\n".join(out)


def section_timeline(run):
    series = plot.load(run.dir, run.title, run.tool)
    out = []
    gnuplot = (' The runner’s own plot: <a href="timeline.svg">timeline.svg</a>.'
               if (run.dir / "timeline.svg").is_file() else "")
    if series.is_short() and run.phase_events:
        svg = plot.snapshot_svg(run.phase_events, f"{run.title}: the phase snapshots", series.heap_measured)
        out.append(f'<figure class="plot">{svg}<figcaption>This run lasted '
                   f'{series.duration * 1000:.0f} ms, too short for a timeline to show anything: the bars are '
                   'what each phase snapshot measured (RSS in blue, heap in use in red, threads in green on the '
                   f'right axis).{gnuplot}</figcaption></figure>')
    elif series.samples:
        svg = plot.timeline_svg([series], run.title)
        caption = (f'RSS sampled from /proc every {esc(run.info.get("interval_ms", "?"))} ms (blue), heap in use '
                   'at each phase snapshot (red dots), threads (green, right axis); dashed lines mark the phases.')
        if plot.retained_stretch(series):
            caption += (' The shaded stretch is memory the program freed and the allocator kept: heap in use is '
                        'low, RSS is not.')
        if not series.heap_measured:
            caption += (' Heap in use is not plotted: under Valgrind the program’s malloc is Valgrind’s '
                        'replacement, which the allocator’s statistics do not see; the memcheck section '
                        'below has what it found.')
        out.append(f'<figure class="plot">{svg}<figcaption>{caption}{gnuplot}</figcaption></figure>')
    else:
        why = next((n for n in run.info.get("notes", []) if "timeline" in n), "no RSS samples in timeline.csv")
        out.append(f'<p class="missing">No timeline plot: {esc(why)}.</p>')
    out.append(phase_table(run))
    return "\n".join(out)


def phase_table(run):
    if not run.phase_events:
        return '<p class="missing">No phase snapshots: events.jsonl has no phase events.</p>'
    rows = ['<table class="phases"><thead><tr><th>phase</th><th>t (s)</th><th>threads</th><th>RSS</th>'
            '<th>heap in use</th><th>freed, kept by the allocator</th><th>counters</th></tr></thead><tbody>']
    events = run.phase_events
    cut = len(events) - PHASE_ROWS_MAX
    if cut > 0:  # keep the first and the last ones: the story is at the edges
        events = events[:PHASE_ROWS_MAX // 2] + events[-PHASE_ROWS_MAX // 2:]
    for i, ev in enumerate(events):
        if cut > 0 and i == PHASE_ROWS_MAX // 2:
            rows.append(f'<tr><td colspan="7" class="missing">{cut} more snapshots '
                        '(events.jsonl has them all)</td></tr>')
        snap = ev.get("snapshot") or {}
        alloc = snap.get("alloc") or {}
        counters = ", ".join(f"{k} {fmt_num(v)}" for k, v in (snap.get("counters") or {}).items())
        rows.append(f'<tr><td><code>{esc(ev.get("phase", "?"))}</code></td><td>{esc(fmt_num(ev.get("t")))}</td>'
                    f'<td>{fmt_num(snap.get("threads"))}</td><td>{fmt_bytes(snap.get("rss_bytes"))}</td>'
                    f'<td>{fmt_bytes(alloc.get("in_use_bytes"))}</td><td>{fmt_bytes(alloc.get("free_held_bytes"))}</td>'
                    f'<td>{esc(counters) or "-"}</td></tr>')
    rows.append("</tbody></table>")
    alloc_name = next(((e.get("snapshot") or {}).get("alloc", {}).get("allocator") for e in run.phase_events), None)
    note = (f'<p class="source">Heap figures are the allocator\u2019s own statistics ({esc(alloc_name or "?")}), '
            'taken inside the process at each phase; RSS is what the kernel counts resident.')
    if run.tool == "memcheck":
        note += (" Under Valgrind the scenario\u2019s malloc is Valgrind\u2019s replacement, which the "
                 "allocator statistics do not see (they read 0): the memcheck section has the heap.")
    return "\n".join(rows) + "\n" + note + "</p>"


# `leaklab memstats` of the run held at a phase (memstats-PHASE.json, which an expected
# file's [[driver]] on "hold" writes: delayed_exit's quick native runs): one stacked bar
# of the RSS per snapshot. Its items grouped: (label, Go's name, colour, item-name prefixes);
# the last group takes every other item, the unexplained remainder included.
MEMSTATS_GROUPS = (
    ("heap in use", "HeapInuse", "#d62728", ("heap in use",)),
    ("heap free, still resident", "HeapIdle - HeapReleased", "#ff9896", ("heap free, still resident",)),
    ("allocator heap, not itemized", "HeapSys - HeapReleased", "#e377c2", ("allocator heap",)),
    ("thread stacks", "StackInuse", "#2ca02c", ("thread stacks (live",)),
    ("cached thread stacks", "-", "#98df8a", ("thread stacks cached",)),
    ("code and libraries", "-", "#1f77b4", ("code and libraries",)),
    ("other", "-", "#c7c7c7", ()),
)


def memstats_snapshots(run):
    """[(phase, snapshot)] of the run's memstats-PHASE.json files, in phase order."""
    found = []
    for path in sorted(run.dir.glob("memstats-*.json")):
        try:
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(snap, dict) and isinstance(snap.get("items"), list) and isinstance(snap.get("rss_bytes"), int) \
                and snap["rss_bytes"] > 0:
            found.append((path.stem[len("memstats-"):], snap))
    order = {name: i for i, name in enumerate(dict.fromkeys(run.data.phase_order))}
    return sorted(found, key=lambda f: order.get(f[0], len(order)))


def memstats_groups(snap):
    """[(label, go name, colour, bytes)] of the groups with bytes, in MEMSTATS_GROUPS' order."""
    sums = dict.fromkeys((g[0] for g in MEMSTATS_GROUPS), 0)
    for item in snap["items"]:
        n = item.get("bytes") if isinstance(item, dict) else None
        if not isinstance(n, int) or isinstance(n, bool):
            continue
        name = str(item.get("name", ""))
        label = next((g[0] for g in MEMSTATS_GROUPS if any(name.startswith(p) for p in g[3])), "other")
        sums[label] += n
    return [(label, go, colour, sums[label]) for label, go, colour, _ in MEMSTATS_GROUPS if sums[label]]


def section_memstats(run):
    out = ['<p>The RSS itemized from outside (<code>leaklab memstats PID</code>, '
           '<code>docs/memstats.md</code>) while the run was held at a phase: glibc’s '
           'arenas walked through /proc/PID/mem, residency from /proc/PID/pagemap, the rest from '
           '/proc/PID/smaps; Go’s <code>runtime.MemStats</code> name beside each line.</p>']
    for phase, snap in memstats_snapshots(run):
        rss = snap["rss_bytes"]
        groups = memstats_groups(snap)
        segments = "".join(
            f'<span style="width:{max(n, 0) / rss * 100:.2f}%;background:{colour}" '
            f'title="{esc(label)}: {esc(fmt_bytes(n))}"></span>' for label, _, colour, n in groups)
        rows = "".join(
            f'<tr><td><span class="swatch" style="background:{colour}"></span>{esc(label)}</td>'
            f'<td><code>{esc(go)}</code></td><td class="num">{esc(fmt_bytes(n) if n >= 0 else "-" + fmt_bytes(-n))}</td>'
            f'<td class="num">{n / rss * 100:.1f} %</td></tr>' for label, go, colour, n in groups)
        released = (snap.get("go") or {}).get("HeapReleased")
        notes = (f'<p class="source">Not in RSS: heap free and already returned to the kernel (HeapReleased) '
                 f'{esc(fmt_bytes(released))}.</p>' if isinstance(released, int) else "")
        if not snap.get("settled", True):
            notes += '<p class="missing">memstats’ walks did not settle: the figures are from its last walk.</p>'
        out.append(f'<h3>At <code>{esc(phase)}</code>: RSS {esc(fmt_bytes(rss))}</h3>\n'
                   f'<div class="membar" data-figure="memstats-{esc(phase)}">{segments}</div>\n'
                   '<table class="memstats"><thead><tr><th>line</th><th>Go name</th><th>bytes</th>'
                   f'<th>of RSS</th></tr></thead><tbody>{rows}</tbody></table>{notes}')
    return "\n".join(out)


def section_census(run):
    phases = [(name, ev) for name, ev in run.last_phases()
              if isinstance((ev.get("snapshot") or {}).get("census"), list)]
    if not phases:
        return '<p class="missing">No thread census: the phase snapshots carry none.</p>'
    out = ['<p>Every thread of the process at each phase, grouped by state, kernel wait channel, '
           'system call and stack: the pthread answer to Go\u2019s <code>/debug/pprof/goroutine?debug=1</code>. '
           'The stack (threadcheck\u2019s capture: each thread unwinds itself in a signal handler) says '
           '<em>where in the code</em> the threads wait, innermost first, from the first frame outside '
           'the C library; open a group for every frame with its file and line. A thread in a call a '
           'signal would interrupt (poll, sleep) is not signalled: its stack says so.</p>']
    for name, ev in phases:
        census = sorted(ev["snapshot"]["census"], key=lambda g: -g.get("count", 0))
        total = sum(g.get("count", 0) for g in census)
        out.append(f'<h3>at <code>{esc(name)}</code>: {fmt_num(total)} thread{"s" if total != 1 else ""} in {len(census)} '
                   f'group{"s" if len(census) != 1 else ""}</h3>')
        out.append('<table class="census"><thead><tr><th>threads</th><th>state</th><th>wait channel</th>'
                   '<th>system call</th><th>what it usually means</th><th>stack (where they wait)</th>'
                   '</tr></thead><tbody>')
        for g in census[:CENSUS_MAX_GROUPS]:
            state = g.get("state", "?")
            out.append(f'<tr><td>{fmt_num(g.get("count"))}</td><td>{esc(state)} '
                       f'({esc(STATE_MEANING.get(state, "?"))})</td><td><code>{esc(g.get("wchan", "?"))}</code></td>'
                       f'<td><code>{esc(g.get("syscall", "?"))}</code>{census_wait_text(g)}</td>'
                       f'<td>{esc(SYSCALL_MEANING.get(g.get("syscall"), ""))}</td>'
                       f'<td class="stack">{census_stack_cell(g)}</td></tr>')
        if len(census) > CENSUS_MAX_GROUPS:
            out.append(f'<tr><td colspan="6" class="missing">{len(census) - CENSUS_MAX_GROUPS} smaller groups '
                       'not shown (events.jsonl has them)</td></tr>')
        out.append("</tbody></table>")
    return "\n".join(out)


def census_wait_text(g):
    """' on 0x...' (one futex word for the whole group) or ' on N futexes'."""
    if g.get("wait_address"):
        return f'<br><small>on <code>{esc(g["wait_address"])}</code></small>'
    if (g.get("wait_addresses") or 0) > 1:
        return f'<br><small>on {fmt_num(g["wait_addresses"])} futexes</small>'
    return ""


def census_stack_cell(g):
    """The group's stack: "top <- caller <- ..." with the top frame (where the
    program's own code waits) in bold, and every frame with file:line in a
    <details>; or why there is none."""
    stack = g.get("stack")
    if stack is None:
        return '<span class="missing">not captured (a census without stacks)</span>'
    status = g.get("stack_status") or ""
    if not stack:
        return f'<span class="missing">{esc(status or "no stack")}</span>'
    top = comparer.census_top_frame(g)
    names = [f"<b>{esc(n)}</b>" if n == top else esc(n) for n in stack]
    text = " &larr; ".join(f"<code>{n}</code>" for n in names)
    if status and status != "captured":
        text += f'<br><small class="missing">{esc(status)}</small>'
    frames = [f for f in g.get("frames") or [] if isinstance(f, dict)]
    if frames:
        lines = []
        for f in frames:
            where = f"{f.get('file')}:{f.get('line')}" if f.get("file") else (f.get("module") or "")
            fn = f.get("function") or "?"
            lines.append(f'{esc(f.get("address") or "")}  {esc(fn)}{" (inlined)" if f.get("inlined") else ""}'
                         f'  {esc(where)}')
        text += f'<details><summary>{len(frames)} frames</summary><pre>{chr(10).join(lines)}</pre></details>'
    return text


def section_heap(run):
    profiles = run.heap_profiles()
    if run.tool != "heapprof" and not profiles:
        return (f'<p class="missing">No heap profile: this run was made with --tool {esc(run.tool)}; '
                'profiles come with <code>--tool heapprof</code> (tcmalloc\u2019s gperftools heap profiler).</p>')
    if not profiles:
        return ('<p class="missing">No heap profile: the run has no heap/*.json (was the profile '
                'rendered? see run.json runner_errors).</p>')
    out = []
    # The profile that teaches first: the phase holding the most (the leak, the
    # steady state). The others (a baseline, where the profiler's own buffer is
    # nearly all there is) are folded away below it.
    first = max(range(len(profiles)), key=lambda i: profiles[i][1].get("total_bytes") or 0)
    ordered = [profiles[first]] + [p for i, p in enumerate(profiles) if i != first]
    for n, (stem, s) in enumerate(ordered, 1):
        if n == 2:
            out.append(f'<details class="other-profiles"><summary>{len(ordered) - 1} more heap '
                       f'profile{"s" if len(ordered) > 2 else ""} ('
                       + esc(", ".join(p[1].get("phase", "?") for p in ordered[1:]))
                       + '): the baseline, mostly the profiler’s own buffer</summary>')
        out.append(f'<h3>at <code>{esc(s.get("phase"))}</code> '
                   f'<span class="source">(heap/{esc(stem)}.heap)</span></h3>')
        if s.get("truncated"):
            out.append(f'<p class="missing">This profile is truncated and was not read: {esc(s["truncated"])}</p>')
            continue
        total = s.get("total_bytes") or 0
        if s.get("top_function"):
            share = 100 * (s.get("top_share") or 0)
            out.append(f'<p><code>{esc(s["top_function"])}</code> allocated <strong>{share:.1f} %</strong> of the '
                       f'{fmt_bytes(total)} in use ({fmt_bytes(s.get("top_bytes"))}); the harness\u2019s '
                       f'wrappers ({esc(", ".join(s.get("wrappers_folded", [])))}) are charged to their callers.</p>')
        # The graph first: it answers "who holds it" at a glance; the tables give the figures.
        svg = inline_svg(run.dir / "heap" / f"{stem}.svg", f"hp{n}-", "heap-graph",
                         f"heap profile call graph at {s.get('phase')}")
        if svg:
            svg, folded = heapgraph.fold(svg, s.get("top_function"))
            infra = [f for f in folded if f not in heapgraph.PASSTHROUGH]
            start = [f for f in folded if f in heapgraph.PASSTHROUGH]
            folded_text = (f' Folded away: {esc(", ".join(infra))} (the profiler\u2019s own buffer, thread TLS) and '
                           'the calls that lead only to them.' if infra else "")
            folded_text += (f' The start-up frames above the program\u2019s code ({esc(", ".join(start))}) are '
                            'folded too.' if start else "")
            out.append(f'<figure class="graph">{svg}<figcaption>Call graph of in-use space '
                       f'(<code>google-pprof --svg</code>): boxes are functions, sized by what they hold; '
                       f'edges are calls.{folded_text} The whole graph: '
                       f'<a href="heap/{esc(stem)}.svg">heap/{esc(stem)}.svg</a>.</figcaption></figure>')
        else:
            why = next((x for x in run.info.get("notes", []) if f"{stem}.svg" in x), f"no heap/{stem}.svg")
            out.append(f'<p class="missing">No call graph: {esc(why)}.</p>')
        sites = list((s.get("sites") or {}).items())[:5]
        if sites:
            out.append('<table class="sites"><thead><tr><th>allocated by</th><th>in use</th><th>share</th></tr>'
                       '</thead><tbody>' + "".join(
                           f'<tr><td><code>{esc(f)}</code>{heapgraph.role(f)}</td><td>{fmt_bytes(b)}</td>'
                           f'<td>{(100 * b / total if total else 0):.1f} %</td></tr>' for f, b in sites if b)
                       + "</tbody></table>")
        try:
            lines = (run.dir / "heap" / f"{stem}.txt").read_text().splitlines()[:HEAP_TOP_LINES]
            out.append('<p>Top of <code>google-pprof --text --inuse_space</code> (flat MB, flat %, sum %, '
                       f'cum MB, cum %, function):</p><pre class="pprof">{esc(chr(10).join(lines))}</pre>')
        except OSError:
            out.append(f'<p class="missing">No heap/{esc(stem)}.txt.</p>')
    if len(ordered) > 1:
        out.append("</details>")
    return "\n".join(out)


MEMCHECK_KINDS = [  # (key, label, what it means here)
    ("definitely_lost", "definitely lost", "no pointer to the block anywhere"),
    ("indirectly_lost", "indirectly lost", "reachable only from definitely lost blocks"),
    ("possibly_lost", "possibly lost", "reachable only through a pointer into its middle"),
    ("still_reachable", "still reachable", "a pointer to it remains (a global, a live thread\u2019s stack)"),
]


def section_memcheck(run):
    report = run.memcheck()
    if report is None:
        if run.tool != "memcheck":
            return (f'<p class="missing">No memcheck report: this run was made with --tool {esc(run.tool)}; '
                    'Valgrind\u2019s leak check comes with <code>--tool memcheck</code>.</p>')
        return '<p class="missing">No memcheck report: memcheck.json is missing (did Valgrind finish?).</p>'
    out = ['<p>Valgrind memcheck\u2019s leak summary at exit, by leak kind, with the functions the '
           'blocks were allocated by (allocator and harness wrappers skipped).</p>',
           '<table class="memcheck"><thead><tr><th>kind</th><th>bytes</th><th>blocks</th><th>allocated by</th>'
           '<th>meaning</th></tr></thead><tbody>']
    for key, label, meaning in MEMCHECK_KINDS:
        k = report.get("kinds", {}).get(key, {})
        funcs = sorted((report.get("by_function", {}).get(key) or {}).items(), key=lambda kv: -kv[1].get("bytes", 0))
        names = ", ".join(f"{f} ({fmt_bytes(v.get('bytes'))})" for f, v in funcs[:4]) or "-"
        out.append(f'<tr><td>{esc(label)}</td><td>{fmt_bytes(k.get("bytes"))}</td><td>{fmt_num(k.get("blocks"))}</td>'
                   f'<td><code>{esc(names)}</code></td><td>{esc(meaning)}</td></tr>')
    out.append("</tbody></table>")
    if report.get("error_count"):
        out.append(f'<p>Other memcheck errors: {esc(report.get("errors"))}.</p>')
    if not report.get("finished", True):
        out.append('<p class="missing">Valgrind did not finish: the summary may be partial.</p>')
    return "\n".join(out)


def leaklab_commands(run):
    """The `./leaklab run` and `check` lines that make this run again."""
    args = [run.scenario]
    if run.variant:
        args += ["--variant", run.variant]
    args += ["--scale", run.scale or "seed"]
    if run.tool != "native":
        args += ["--tool", run.tool]
    default_alloc = "tcmalloc" if run.tool == "heapprof" else "glibc"
    if run.allocator and run.allocator != default_alloc:
        args += ["--allocator", run.allocator]
    options = list(run.info.get("options") or [])
    try:  # the expected file's [[args]] come first and are added again by the runner
        exp = expected.load(expected.path_for(run.scenario, EXPECTED_DIR))
        from_file = exp.options_for(run.variant, run.tool, run.allocator, run.scale)
        if options[:len(from_file)] == from_file:
            options = options[len(from_file):]
    except expected.ExpectedFileError:
        pass
    tail = ["--", *options] if options else []
    run_line = shlex.join(["./leaklab", "run", *args, "--report", *tail])
    check_line = shlex.join(["./leaklab", "check", *args, "--report", *tail])
    return run_line, check_line


def section_reproduce(run):
    run_line, check_line = leaklab_commands(run)
    try:
        command = (run.dir / "command.txt").read_text().rstrip()
    except OSError:
        command = "(no command.txt in the run directory)"
    return (f'<p>From the repository, on a built tree (a new run directory under <code>runs/</code>):</p>'
            f'<pre class="cmd">{esc(run_line)}\n{esc(check_line)}   # and compare with the expected file</pre>'
            '<p>The scenario binary exactly as the runner started it (<code>command.txt</code>; the '
            'runner\u2019s RSS sampling and tool rendering are not part of it):</p>'
            f'<pre class="cmd">{esc(command)}</pre>')


def section_facts(run):
    info = run.info
    facts = [("run directory", str(run.dir)), ("started", info.get("started_at")),
             ("exit code", f'{info.get("exit_code")}' + (f' ({info["signal"]})' if info.get("signal") else "")),
             ("wall time", f'{info["wall_s"]} s' if info.get("wall_s") is not None else None),
             ("peak RSS (kernel, rusage)", fmt_bytes(info.get("child_maxrss_bytes"))
              if info.get("child_maxrss_bytes") else None)]
    for k, v in (info.get("versions") or {}).items():
        facts.append((k, v))
    for n in info.get("notes", []):
        facts.append(("note", n))
    facts.append(("story from", story_note(run)))
    for e in info.get("runner_errors", []):
        facts.append(("runner error", e))
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts if v not in (None, ""))
    files = "\n".join(runner.listing(run.dir))
    return (f'<table class="facts">{rows}</table>'
            f'<details><summary>Files in the run directory</summary><pre>{esc(files)}</pre></details>')


# ---- the page -------------------------------------------------------------------

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0;
       background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.2em 1.5em 4em; background: #fff; }
h1 { font-size: 1.5em; margin: .2em 0 .1em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h3 { font-size: 1em; margin: 1.2em 0 .4em; }
nav { font-size: .9em; margin: .4em 0 1em; } nav a { margin-right: .9em; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: .9em; }
pre { background: #f4f4f6; padding: .6em .8em; overflow-x: auto; border-radius: 4px; }
table { border-collapse: collapse; margin: .4em 0 .8em; font-size: .92em; }
th, td { border: 1px solid #d9d9de; padding: .3em .55em; text-align: left; vertical-align: top; }
th { background: #f1f1f4; }
td.v { font-weight: 700; white-space: nowrap; }
.pass { background: #e6f4ea; color: #0d652d; } .fail { background: #fce8e6; color: #a50e0e; }
.error { background: #fef3d6; color: #8a4b00; } .skip { background: #eeeeee; color: #444; }
.banner { padding: .5em .8em; border-radius: 4px; font-size: 1.05em; }
.detail { color: #a50e0e; font-size: .9em; } .why { color: #555; font-size: .85em; }
.story { font-size: 1.1em; } .source { color: #666; font-size: .85em; }
.missing { color: #6b4f00; background: #fff8e1; padding: .35em .6em; border-left: 3px solid #e0a800; }
figure { margin: .6em 0 1em; } figcaption { color: #555; font-size: .85em; margin-top: .3em; }
svg.figure-svg { display: block; width: 100%; height: auto; background: #fff; }
figure.graph { max-height: 900px; overflow: auto; border: 1px solid #ddd; padding: .3em; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; } .side > div { min-width: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.membar { display: flex; height: 1.4em; max-width: 760px; border: 1px solid #ccc; margin: .3em 0; }
.membar > span { display: block; height: 100%; }
.swatch { display: inline-block; width: .9em; height: .9em; margin-right: .4em; vertical-align: -.1em; }
"""


def page(title, nav, sections):
    links = "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name in nav)
    body = "\n".join(f'<section id="{sid}"><h2>{esc(name)}</h2>\n{content}\n</section>'
                     for sid, name, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f'<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{esc(title)}</h1>\n<nav>{links}</nav>\n'
            f'{body}\n</main>\n</body>\n</html>\n')


def render_report(run):
    sections = [
        # The plot before the verdict table: what happened, at a glance, then what was checked.
        ("story", "The story", section_story(run)),
        ("timeline", "Timeline: RSS, heap in use, threads", section_timeline(run)),
        ("verdict", "Verdict", section_verdict(run)),
        # Only when the run was looked at from outside (memstats-PHASE.json).
        *([("memstats", "Where the RSS went: memstats", section_memstats(run))] if memstats_snapshots(run) else []),
        ("census", "Thread census, grouped by wait site", section_census(run)),
        ("heap", "Heap profile: who holds the memory", section_heap(run)),
        ("memcheck", "Valgrind memcheck", section_memcheck(run)),
        ("reproduce", "Reproduce this run", section_reproduce(run)),
        ("facts", "Run facts", section_facts(run)),
    ]
    return page(f"leaklab: {run.title}", [(s[0], s[1].split(":")[0]) for s in sections], sections)


def write_report(run_dir):
    """Writes RUN_DIR/report.html; returns its path. Raises OSError if it cannot be written."""
    run = Run(run_dir)
    path = run.dir / "report.html"
    path.write_text(render_report(run))
    return path


# ---- comparing two runs ------------------------------------------------------------

def _last(run):
    """The last phase snapshot: where each variant ends up (leaky: steady, blocked; fixed: end)."""
    return run.phase_events[-1] if run.phase_events else None


def metric_rows(a, b):
    """[(group, label, value_a, value_b, kind)] with kind 'bytes', 'num' or 'text'."""
    rows = []

    def add(group, label, va, vb, kind="num"):
        if va is None and vb is None:
            return
        rows.append((group, label, va, vb, kind))

    va, vb = verdict_of(a)[0], verdict_of(b)[0]
    def word(v):
        return f'{result_word(v.get("result"))} (exit {v.get("result")})' if v else "not compared"
    add("run", "verdict", word(va), word(vb), "text")
    add("run", "payload (declared)", a.data.start.get("payload_bytes"), b.data.start.get("payload_bytes"), "bytes")
    add("run", "exit code", a.info.get("exit_code"), b.info.get("exit_code"))
    add("run", "wall time (s)", a.info.get("wall_s"), b.info.get("wall_s"))
    ta, tb = a.timeline(), b.timeline()
    add("timeline", "peak RSS", max((r[1] for r in ta), default=None), max((r[1] for r in tb), default=None), "bytes")
    add("timeline", "peak threads", max((r[2] for r in ta), default=None), max((r[2] for r in tb), default=None))
    add("timeline", "RSS at the last sample", ta[-1][1] if ta else None, tb[-1][1] if tb else None, "bytes")
    phases_a, phases_b = dict(a.last_phases()), dict(b.last_phases())
    order = list(dict.fromkeys([*phases_a, *phases_b]))
    for name in order + ["(last phase)"]:
        if name == "(last phase)":
            ea, eb = _last(a), _last(b)
            if not ea or not eb or ea.get("phase") == eb.get("phase"):
                continue  # only worth a row when the two runs end in different phases
            name = f"last phase ({ea.get('phase')} | {eb.get('phase')})"
        else:
            ea, eb = phases_a.get(name), phases_b.get(name)
        sa, sb = (ea or {}).get("snapshot") or {}, (eb or {}).get("snapshot") or {}
        add(name, "threads", sa.get("threads"), sb.get("threads"))
        add(name, "RSS", sa.get("rss_bytes"), sb.get("rss_bytes"), "bytes")
        add(name, "heap in use", (sa.get("alloc") or {}).get("in_use_bytes"),
            (sb.get("alloc") or {}).get("in_use_bytes"), "bytes")
        add(name, "freed, kept by the allocator", (sa.get("alloc") or {}).get("free_held_bytes"),
            (sb.get("alloc") or {}).get("free_held_bytes"), "bytes")
        add(name, "largest census group", _census_top(sa), _census_top(sb), "text")
    ha, hb = dict((s["phase"], s) for _, s in a.heap_profiles()), dict((s["phase"], s) for _, s in b.heap_profiles())
    for phase in dict.fromkeys([*ha, *hb]):
        pa, pb = ha.get(phase, {}), hb.get(phase, {})
        add(f"heap profile @{phase}", "top function", pa.get("top_function"), pb.get("top_function"), "text")
        add(f"heap profile @{phase}", "its share", _pct(pa.get("top_share")), _pct(pb.get("top_share")), "text")
        add(f"heap profile @{phase}", "total in use", pa.get("total_bytes"), pb.get("total_bytes"), "bytes")
    ma, mb = a.memcheck(), b.memcheck()
    if ma or mb:
        for key, label, _ in MEMCHECK_KINDS:
            add("memcheck", label, ((ma or {}).get("kinds", {}).get(key) or {}).get("bytes"),
                ((mb or {}).get("kinds", {}).get(key) or {}).get("bytes"), "bytes")
    return rows


def _census_top(snap):
    census = snap.get("census")
    if not isinstance(census, list) or not census:
        return None
    g = max(census, key=lambda g: g.get("count", 0))
    where = f' @ {" <- ".join(g["stack"])}' if g.get("stack") else ""
    return f'{g.get("count")} x {g.get("state")} {g.get("wchan")} {g.get("syscall")}{where}'


def _pct(share):
    return f"{100 * share:.1f} %" if isinstance(share, (int, float)) else None


def _fmt(value, kind):
    if value is None:
        return "-"
    return fmt_bytes(value) if kind == "bytes" else (fmt_num(value) if kind == "num" else str(value))


def _change(va, vb, kind):
    if kind == "text" or not isinstance(va, (int, float)) or not isinstance(vb, (int, float)):
        return ""
    if kind == "bytes" and (va < 0 or vb < 0):
        return ""
    diff = vb - va
    sign = "+" if diff > 0 else ("-" if diff < 0 else "")
    text = sign + (fmt_bytes(abs(diff)) if kind == "bytes" else fmt_num(abs(diff)))
    if diff == 0:
        return "same"
    if va:
        text += f" (x{vb / va:.3g})"
    return text


def _label(run):
    return f"{run.variant or '?'}, {run.tool}, {run.allocator}, {run.scale}"


# The terminal table fits TERMINAL_COLUMNS: each column has a budget, and a
# cell over it is shortened (a census stack to its top frame, anything else cut
# with an ellipsis). The page and the JSON keep every cell whole.
TERMINAL_COLUMNS = 160
CELL_BUDGET = (52, 38, 38, 24)   # + 3 x 2 spaces = 158


def shorten(text, width):
    """`text` in at most `width` characters; a census group's stack keeps its top frame."""
    if len(text) <= width:
        return text
    if " @ " in text:  # "1000 x S futex_do_wait futex @ top <- caller <- ...": count, call, top frame
        head, stack = text.split(" @ ", 1)
        frames = stack.split(" <- ")
        words = head.split()
        short = f"{words[0]} x {words[-1]}" if len(words) >= 3 and words[1] == "x" else head
        for text in (f"{short} @ {frames[0]}" + (" <- \u2026" if len(frames) > 1 else ""), f"{short} @ {frames[0]}"):
            if len(text) <= width:
                return text
    return text[:width - 1] + "\u2026"


def compare_table(a, b, rows):
    head = ("", f"A: {_label(a)}", f"B: {_label(b)}", "B - A")
    cells = [head] + [(f"{g}: {label}" if g else label, _fmt(va, k), _fmt(vb, k), _change(va, vb, k))
                      for g, label, va, vb, k in rows]
    cells = [tuple(shorten(c, w) for c, w in zip(row, CELL_BUDGET)) for row in cells]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = [shorten(f"A: {a.dir}", TERMINAL_COLUMNS), shorten(f"B: {b.dir}", TERMINAL_COLUMNS)]
    for n in compare_notes(a, b):
        lines += textwrap.wrap(f"note: {n}", TERMINAL_COLUMNS, subsequent_indent="      ")
    lines.append("")
    for c in cells:
        lines.append(f"{c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}  {c[2]:<{widths[2]}}  {c[3]}".rstrip())
    return "\n".join(lines)


def compare_json(a, b, rows):
    """The comparison whole (stacks and all), for a program to read."""
    return {"a": str(a.dir), "b": str(b.dir), "notes": compare_notes(a, b),
            "rows": [{"group": g, "label": label, "a": va, "b": vb, "kind": k, "change": _change(va, vb, k)}
                     for g, label, va, vb, k in rows]}


def render_compare(a, b, rows):
    head = (f'<table class="compare" id="compare-table"><thead><tr><th></th><th>A: {esc(_label(a))}</th>'
            f'<th>B: {esc(_label(b))}</th><th>B &minus; A</th></tr></thead><tbody>')
    body = []
    group = None
    for g, label, va, vb, kind in rows:
        if g != group:
            group = g
            body.append(f'<tr><th colspan="4">{esc(g)}</th></tr>')
        if label == "verdict":
            body.append(f'<tr><td>{esc(label)}</td>{verdict_cell(str(va).split()[0])}{verdict_cell(str(vb).split()[0])}'
                        '<td></td></tr>')
            continue
        body.append(f'<tr><td>{esc(label)}</td><td class="num">{esc(_fmt(va, kind))}</td>'
                    f'<td class="num">{esc(_fmt(vb, kind))}</td><td class="num">{esc(_change(va, vb, kind))}</td></tr>')
    table = head + "\n".join(body) + "</tbody></table>"
    dirs = (f'<p class="source">A: {esc(a.dir)}<br>B: {esc(b.dir)}<br>Each run has its own report: '
            '<code>./leaklab report RUN_DIR</code>.</p>')

    notes = "".join(f'<p class="missing">{esc(n)}</p>' for n in compare_notes(a, b))

    # One plot, both runs on the same axes (A solid, B dashed): two plots with
    # their own ranges cannot be read together.
    series = [plot.load(a.dir, "A", a.tool), plot.load(b.dir, "B", b.tool)]
    if all(s.samples for s in series):
        svg = plot.timeline_svg(series, f"A: {_label(a)}   vs   B: {_label(b)}")
        plots = (f'<figure class="plot">{svg}<figcaption>Both runs on shared axes, each from the moment the '
                 'runner started it: A solid with round heap dots, B dashed with square ones; each run\u2019s '
                 'phases are marked and labelled with its letter.</figcaption></figure>')
    else:
        missing = ", ".join(r.dir.name for r, s in zip((a, b), series) if not s.samples)
        plots = f'<p class="missing">No shared timeline: {esc(missing)} has no RSS samples.</p>'
    verdicts = (f'<div class="side"><div><h3>A: {esc(_label(a))}</h3>{section_verdict(a, "verdict-table-a")}</div>'
                f'<div><h3>B: {esc(_label(b))}</h3>{section_verdict(b, "verdict-table-b")}</div></div>')
    story_html = section_story(a, b) if a.scenario == b.scenario else (section_story(a) + section_story(b))
    # The plot first: it is what the two runs look like at a glance; the table has the figures.
    sections = [("story", "The story", story_html),
                ("timelines", "Timelines", plots),
                ("figures", "Side by side", notes + dirs + table),
                ("verdicts", "Verdicts", verdicts)]
    return page(f"leaklab compare: {a.title} vs {b.title}", [(s[0], s[1]) for s in sections], sections)


def compare_notes(a, b):
    """What makes the two runs' raw figures not comparable one to one."""
    notes = []
    if a.scenario != b.scenario:
        notes.append(f"A and B are different scenarios ({a.scenario}, {b.scenario}).")
    if a.scale != b.scale:
        notes.append(f"A ran at {a.scale} scale and B at {b.scale} scale: compare figures as ratios "
                     "of the declared payload, not as raw bytes.")
    if a.tool != b.tool:
        notes.append(f"A ran under {a.tool} and B under {b.tool}: a tool changes timing, RSS and "
                     "which allocator statistics exist.")
    return notes


def compare_name(a, b):
    """compare-A-vs-B.html, B without its time stamp (A's keeps the name unique) and
    without the scenario when both runs share it: the `page:` line stays short."""
    kind = re.sub(r"-\d{8}-\d{6}-\d+$", "", b.dir.name)
    if a.scenario == b.scenario and kind.startswith(f"{b.scenario}."):
        kind = kind[len(b.scenario) + 1:]
    return f"compare-{a.dir.name}-vs-{kind}.html"


def compare(run_a, run_b, out=None):
    """Compares two run directories. Returns (terminal table, path of the page written)."""
    a, b = Run(run_a), Run(run_b)
    rows = metric_rows(a, b)
    path = Path(out) if out else a.dir.parent / compare_name(a, b)
    path.write_text(render_compare(a, b, rows))
    path.with_suffix(".json").write_text(json.dumps(compare_json(a, b, rows), indent=1, default=str) + "\n")
    return compare_table(a, b, rows), path


# ---- command line -----------------------------------------------------------------

RUN_DIR_HELP = ("a run directory, or the start of a run directory's name under --runs "
                "(the newest match), e.g. blocked_workers.leaky.native")


def add_report_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument("--runs", type=Path, metavar="DIR", help="where names are looked up (default: runs/ in the repo)")


def add_compare_arguments(p):
    p.add_argument("run_a", metavar="RUN_A", help=RUN_DIR_HELP)
    p.add_argument("run_b", metavar="RUN_B", help="the other run, the same way")
    p.add_argument("--runs", type=Path, metavar="DIR", help="where names are looked up (default: runs/ in the repo)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="the page to write (default: compare-A-vs-B.html next to RUN_A)")


def cmd_report(args):
    run_dir = resolve_run(args.run_dir, args.runs)
    path = write_report(run_dir)
    print(f"report: {path}")
    return EXIT_OK


def cmd_compare(args):
    a = resolve_run(args.run_a, args.runs)
    b = resolve_run(args.run_b, args.runs)
    text, path = compare(a, b, args.out)
    print(text)
    print(f"\npage: {path}")
    print(f"json: {path.with_suffix('.json')}")
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv=None):
    """`report.py report RUN_DIR` or `report.py compare RUN_A RUN_B [--out FILE]`."""
    top = _Parser(prog="report.py", description="Write a run's report.html, or compare two runs.",
                  epilog="exit codes: 0 page written, 2 bad usage, 99 the page could not be written")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    add_report_arguments(sub.add_parser("report", help="write RUN_DIR/report.html"))
    add_compare_arguments(sub.add_parser("compare", help="two runs side by side, in the terminal and as a page"))
    args = top.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return cmd_report(args) if args.command == "report" else cmd_compare(args)
    except runner.Outcome as e:
        print(f"report.py: {e}", file=sys.stderr)
        return e.code
    except OSError as e:
        print(f"report.py: {e.filename or ''}: {e.strerror or e} (check permissions and free space)", file=sys.stderr)
        return EXIT_SYSTEM


if __name__ == "__main__":
    sys.exit(main())
