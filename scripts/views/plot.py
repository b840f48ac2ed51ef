"""Draws a run's timeline (or two runs on shared axes) and a phase-snapshot chart as inline SVG, from its CSV files."""

# The report's plots are drawn here rather than taken from the runner's
# gnuplot timeline.svg, because a learner's page needs what a generic plot
# does not give: phase labels that never overlap (each takes the first free
# row above the plot), one label for a run of same-named snapshots (`idle`),
# the stretch where freed memory stays resident shaded and named, two runs on
# one pair of axes, and a bar chart of the snapshots for a run too short to
# have a timeline (a zoo kernel runs in tens of milliseconds).
#
# Every element a test looks for carries a class or data attribute:
# svg[data-figure=timeline|timeline-overlay|phase-snapshots], text.phase-label
# [data-phase], g.band[data-band=retained], path.series[data-series][data-run].

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

W, H = 1000, 460
LEFT, RIGHT, BOTTOM = 72, 72, 70
ROW_H = 16                   # one row of phase labels
CHAR_W = 6.4                 # width of a label character at 11 px (sans), for the placement
SHORT_RUN_S = 0.25           # a run shorter than this (or with fewer samples) gets the snapshot chart
SHORT_RUN_SAMPLES = 12
RETAINED_FREED = 0.50        # a phase "keeps freed memory" when at least half the most heap ever in use was freed
RETAINED_SHARE = 0.30        # ... and RSS stays this share of the run's peak RSS above heap in use
COLOURS = {"rss": "#1f77b4", "in_use": "#d62728", "threads": "#2ca02c"}
DASH = {0: "", 1: "7 4"}     # run A solid, run B dashed
MIB = 1 << 20


@dataclass
class Series:
    """What the plots read of one run directory (runner-clock seconds)."""
    name: str
    samples: list = field(default_factory=list)   # (t, rss, threads)
    phases: list = field(default_factory=list)    # (t, phase, in_use or None, rss or None)
    heap_measured: bool = True                    # False under Valgrind: its malloc replaces the allocator's

    @property
    def duration(self):
        ts = [s[0] for s in self.samples] + [p[0] for p in self.phases]
        return (max(ts) - min(ts)) if ts else 0.0

    def is_short(self):
        return len(self.samples) < SHORT_RUN_SAMPLES or self.duration < SHORT_RUN_S


def _rows(path):
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return []
    return [line.split(",") for line in lines if line.strip()]


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def load(run_dir, name="", tool="native"):
    s = Series(name, heap_measured=tool not in ("memcheck",))
    for r in _rows(Path(run_dir) / "timeline.csv"):
        try:
            s.samples.append((float(r[0]), int(r[1]), int(r[2])))
        except (ValueError, IndexError):
            continue
    for r in _rows(Path(run_dir) / "phases.csv"):
        try:
            s.phases.append((float(r[0]), r[1], _int(r[2] if len(r) > 2 else None), _int(r[3] if len(r) > 3 else None)))
        except (ValueError, IndexError):
            continue
    if s.heap_measured and s.phases and not any(p[2] for p in s.phases):
        s.heap_measured = False  # every snapshot read 0 or nothing: the allocator's statistics are not there
    return s


def phase_runs(phases):
    """[(name, t_first, t_last, count)]: consecutive snapshots of one phase are one mark."""
    out = []
    for t, name, *_ in phases:
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1], t, out[-1][3] + 1)
        else:
            out.append((name, t, t, 1))
    return out


def retained_stretch(s):
    """(t_from, t_to, rss, in_use) for the stretch where freed memory stays resident:
    consecutive snapshots after a large free (heap in use fell) whose RSS stays well
    above heap in use (delayed_exit's exited..idle), up to the next snapshot that is
    not; None if none. A baseline (nothing freed yet) is not retention."""
    if not s.heap_measured or not s.samples:
        return None
    peak = max(r[1] for r in s.samples)
    start = last = None
    most_in_use = 0
    for t, _, in_use, rss in s.phases:
        keeps = (in_use is not None and rss and most_in_use - in_use >= RETAINED_FREED * most_in_use > 0
                 and rss - in_use >= RETAINED_SHARE * peak)
        most_in_use = max(most_in_use, in_use or 0)
        if keeps and start is None:
            start = (t, rss, in_use)
        elif keeps:
            last = (t, rss, in_use)
        elif start is not None:
            return (start[0], t, (last or start)[1], (last or start)[2])
    if start is not None:
        return (start[0], s.samples[-1][0], (last or start)[1], (last or start)[2])
    return None


def nice_max(v, integer=False):
    """A round axis maximum just above v, and its tick step (about 4 to 8 ticks)."""
    if v <= 0:
        return (4, 1) if integer else (1.0, 0.25)
    raw = v / 7
    exp = 10 ** math.floor(math.log10(raw))
    step = next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= raw)
    if integer:
        step = max(1, math.ceil(step))
    top = math.ceil(v * 1.02 / step) * step
    return top, step


def _fmt_tick(v):
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-9 else f"{v:,.2f}".rstrip("0").rstrip(".")


def _mib(b):
    return f"{b / MIB:.1f} MiB" if b >= 0.1 * MIB else (f"{b / 1024:.1f} KiB" if b >= 1024 else f"{b} B")


def esc(text):
    return html.escape(str(text))


def _place_labels(marks, x_of, left, right):
    """Greedy rows: each label goes in the first row where it clears the label before it.
    marks: [(t, text, attrs)]. Returns [(x, row, text, attrs)] and the number of rows."""
    rows_end = []
    placed = []
    for t, text, attrs in sorted(marks, key=lambda m: m[0]):
        x = x_of(t)
        width = len(text) * CHAR_W + 6
        x_text = min(x + 3, right - width)  # a label at the right edge grows leftwards
        for row, end in enumerate(rows_end):
            if x_text > end + 4:
                rows_end[row] = x_text + width
                break
        else:
            rows_end.append(x_text + width)
            row = len(rows_end) - 1
        placed.append((x, x_text, row, text, attrs))
    return placed, len(rows_end)


def timeline_svg(series, title=""):
    """One run, or two (A solid, B dashed) on shared axes: RSS (blue) and heap in use
    at each snapshot (red) on the left axis in MiB, threads (green) on the right."""
    overlay = len(series) > 1
    t_max = max((s.samples[-1][0] if s.samples else 0) for s in series)
    t_max = max([t_max] + [p[0] for s in series for p in s.phases])
    x_top, x_step = nice_max(t_max or 1)
    y_vals = [r[1] for s in series for r in s.samples] + [p[2] or 0 for s in series for p in s.phases if s.heap_measured]
    y_top, y_step = nice_max(max(y_vals or [1]) / MIB)
    th_top, th_step = nice_max(max((r[2] for s in series for r in s.samples), default=1), integer=True)

    marks = []
    for i, s in enumerate(series):
        prefix = f"{'AB'[i]}: " if overlay else ""
        for name, t0, _, count in phase_runs(s.phases):
            text = prefix + name + (f" (×{count})" if count > 1 else "")
            marks.append((t0, text, {"data-phase": name, "data-run": "AB"[i]}))
    plot_right = W - RIGHT
    placed, nrows = _place_labels(marks, lambda t: LEFT + (plot_right - LEFT) * t / x_top, LEFT, plot_right)
    top = 28 + max(1, nrows) * ROW_H + 6
    plot_bottom = H - BOTTOM
    height = plot_bottom - top

    def X(t):
        return LEFT + (plot_right - LEFT) * t / x_top

    def Y(mib):
        return plot_bottom - height * mib / y_top

    def Y2(n):
        return plot_bottom - height * n / th_top

    out = [f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{esc(title)}</text>']
    # Grid and axes.
    v = 0.0
    while v <= y_top + 1e-9:
        out.append(f'<line x1="{LEFT}" x2="{plot_right}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#e4e4e8"/>'
                   f'<text x="{LEFT - 6}" y="{Y(v) + 4:.1f}" text-anchor="end" font-size="11">{_fmt_tick(v)}</text>')
        v += y_step
    n = 0
    while n <= th_top:
        out.append(f'<text x="{plot_right + 6}" y="{Y2(n) + 4:.1f}" font-size="11" fill="{COLOURS["threads"]}">'
                   f'{n:,}</text>')
        n += th_step
    v = 0.0
    while v <= x_top + 1e-9:
        out.append(f'<line x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{top}" y2="{plot_bottom}" stroke="#f0f0f3"/>'
                   f'<text x="{X(v):.1f}" y="{plot_bottom + 16}" text-anchor="middle" font-size="11">{_fmt_tick(v)}</text>')
        v += x_step
    out.append(f'<rect x="{LEFT}" y="{top}" width="{plot_right - LEFT}" height="{height}" fill="none" stroke="#999"/>')
    out.append(f'<text x="{(LEFT + plot_right) / 2}" y="{plot_bottom + 34}" text-anchor="middle" font-size="12">'
               'seconds since the runner started the scenario</text>')
    out.append(f'<text transform="translate(18,{(top + plot_bottom) / 2}) rotate(-90)" text-anchor="middle" '
               'font-size="12">MiB (RSS, heap in use)</text>')
    out.append(f'<text transform="translate({W - 14},{(top + plot_bottom) / 2}) rotate(90)" text-anchor="middle" '
               f'font-size="12" fill="{COLOURS["threads"]}">threads</text>')

    # The stretch where freed memory stays resident (one run only: two would cover each other).
    if not overlay:
        band = retained_stretch(series[0])
        if band:
            t0, t1, rss, in_use = band
            label = f"freed, still resident: RSS {_mib(rss)}, heap in use {_mib(in_use or 0)}"
            lx = min(X(t0) + 4, plot_right - len(label) * CHAR_W - 4)
            out.append(f'<g class="band" data-band="retained"><rect x="{X(t0):.1f}" y="{top}" '
                       f'width="{max(2, X(t1) - X(t0)):.1f}" height="{height}" fill="#fff3c4" opacity="0.75"/>'
                       f'<text x="{lx:.1f}" y="{Y(rss / MIB) - 8:.1f}" font-size="12" fill="#7a5200" '
                       f'font-weight="bold">{esc(label)}</text></g>')

    # Phase marks: a dashed line, its label in the first free row above the plot.
    for x, x_text, row, text, attrs in placed:
        y = 28 + row * ROW_H + 11
        extra = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items())
        colour = "#444" if attrs.get("data-run", "A") == "A" else "#8a3ab9"
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 3}" y2="{plot_bottom}" stroke="{colour}" '
                   f'stroke-dasharray="3 3" stroke-width="1"/>')
        out.append(f'<text class="phase-label"{extra} x="{x_text:.1f}" y="{y}" font-size="11" '
                   f'fill="{colour}">{esc(text)}</text>')

    # The series.
    for i, s in enumerate(series):
        run = "AB"[i]
        dash = f' stroke-dasharray="{DASH[i]}"' if DASH.get(i) else ""
        if s.samples:
            rss = " ".join(f"{X(t):.1f},{Y(r / MIB):.1f}" for t, r, _ in s.samples)
            out.append(f'<path class="series" data-series="rss" data-run="{run}" d="M{rss.replace(" ", " L")}" '
                       f'fill="none" stroke="{COLOURS["rss"]}" stroke-width="2"{dash}/>')
            steps, prev = [], None
            for t, _, th in s.samples:
                if prev is not None:
                    steps.append(f"{X(t):.1f},{Y2(prev):.1f}")
                steps.append(f"{X(t):.1f},{Y2(th):.1f}")
                prev = th
            out.append(f'<path class="series" data-series="threads" data-run="{run}" d="M{" L".join(steps)}" '
                       f'fill="none" stroke="{COLOURS["threads"]}" stroke-width="1.5"{dash}/>')
        if s.heap_measured:
            pts = [(t, u) for t, _, u, _ in s.phases if u is not None]
            for t, u in pts:
                shape = (f'<circle cx="{X(t):.1f}" cy="{Y(u / MIB):.1f}" r="4" fill="{COLOURS["in_use"]}"/>' if i == 0 else
                         f'<rect x="{X(t) - 4:.1f}" y="{Y(u / MIB) - 4:.1f}" width="8" height="8" fill="none" '
                         f'stroke="{COLOURS["in_use"]}" stroke-width="1.5"/>')
                out.append(f'<g class="series" data-series="in_use" data-run="{run}">{shape}</g>')
        else:
            note = (f'{"AB"[i] + ": " if overlay else ""}heap in use not plotted: under Valgrind the program\u2019s '
                    'malloc is Valgrind\u2019s, which the allocator\u2019s statistics do not see')
            y = plot_bottom - 14 - 18 * i  # at the bottom, where RSS has not climbed yet or has fallen
            out.append(f'<rect x="{LEFT + 4}" y="{y - 13}" width="{len(note) * CHAR_W + 8:.0f}" height="18" '
                       f'fill="#fff8e1" opacity="0.92"/><text class="note" x="{LEFT + 8}" y="{y}" font-size="12" '
                       f'fill="#7a5200">{esc(note)}</text>')

    # Legend.
    ly = H - 14
    items = [("RSS (sampled)", COLOURS["rss"], "line")]
    if any(s.heap_measured for s in series):
        items.append(("heap in use (snapshots)", COLOURS["in_use"], "dot"))
    items.append(("threads (right axis)", COLOURS["threads"], "line"))
    x = LEFT
    for text, colour, kind in items:
        mark = (f'<line x1="{x}" x2="{x + 22}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2.5"/>'
                if kind == "line" else f'<circle cx="{x + 11}" cy="{ly - 4}" r="4" fill="{colour}"/>')
        out.append(mark + f'<text x="{x + 28}" y="{ly}" font-size="12">{esc(text)}</text>')
        x += 28 + len(text) * 7 + 24
    if overlay:
        out.append(f'<text x="{x}" y="{ly}" font-size="12" font-weight="bold">A: solid line, dot; '
                   'B: dashed line, square</text>')
    figure = "timeline-overlay" if overlay else "timeline"
    return _svg(out, figure, title, f' data-runs="{len(series)}"')


def snapshot_svg(events, title="", heap_measured=True):
    """A bar chart of the phase snapshots (the last of each phase): RSS and heap in use in
    MiB, threads on the right axis. For a run too short for its timeline to show anything."""
    last = {}
    for ev in events:
        if isinstance(ev.get("phase"), str):
            last[ev["phase"]] = ev.get("snapshot") or {}
    names = list(last)
    if not names:
        return None

    def val(snap, key):
        if key == "in_use":
            v = (snap.get("alloc") or {}).get("in_use_bytes")
        elif key == "rss":
            v = snap.get("rss_bytes")
        else:
            v = snap.get("threads")
        return v if isinstance(v, (int, float)) and v >= 0 else None
    y_top, y_step = nice_max(max([val(s, "rss") or 0 for s in last.values()] +
                                 [val(s, "in_use") or 0 for s in last.values()] + [1]) / MIB)
    th_top, th_step = nice_max(max([val(s, "threads") or 0 for s in last.values()] + [1]), integer=True)
    top, bottom = 40, H - BOTTOM
    height = bottom - top
    plot_right = W - RIGHT
    group_w = (plot_right - LEFT) / len(names)
    bar_w = min(60, group_w / 4.5)
    out = [f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{esc(title)}</text>']
    v = 0.0
    while v <= y_top + 1e-9:
        y = bottom - height * v / y_top
        out.append(f'<line x1="{LEFT}" x2="{plot_right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e8"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{_fmt_tick(v)}</text>')
        v += y_step
    n = 0
    while n <= th_top:
        y = bottom - height * n / th_top
        out.append(f'<text x="{plot_right + 6}" y="{y + 4:.1f}" font-size="11" fill="{COLOURS["threads"]}">{n:,}</text>')
        n += th_step
    out.append(f'<rect x="{LEFT}" y="{top}" width="{plot_right - LEFT}" height="{height}" fill="none" stroke="#999"/>')
    out.append(f'<text transform="translate(18,{(top + bottom) / 2}) rotate(-90)" text-anchor="middle" '
               'font-size="12">MiB (RSS, heap in use)</text>')
    out.append(f'<text transform="translate({W - 14},{(top + bottom) / 2}) rotate(90)" text-anchor="middle" '
               f'font-size="12" fill="{COLOURS["threads"]}">threads</text>')
    bars = [("rss", COLOURS["rss"], y_top * MIB, _mib)]
    if heap_measured:
        bars.append(("in_use", COLOURS["in_use"], y_top * MIB, _mib))
    bars.append(("threads", COLOURS["threads"], th_top, lambda v: f"{v:,} thread{'s' if v != 1 else ''}"))
    for gi, name in enumerate(names):
        snap = last[name]
        x0 = LEFT + gi * group_w + (group_w - len(bars) * (bar_w + 6)) / 2
        out.append(f'<g class="snapshot" data-phase="{esc(name)}">')
        for bi, (key, colour, scale_top, fmt) in enumerate(bars):
            v = val(snap, key)
            if v is None:
                continue
            h = height * v / scale_top
            x = x0 + bi * (bar_w + 6)
            out.append(f'<rect data-series="{key}" x="{x:.1f}" y="{bottom - h:.1f}" width="{bar_w:.1f}" '
                       f'height="{max(h, 1):.1f}" fill="{colour}"/>'
                       f'<text x="{x + bar_w / 2:.1f}" y="{bottom - h - 4:.1f}" text-anchor="middle" font-size="11">'
                       f'{esc(fmt(v))}</text>')
        out.append(f'<text class="phase-label" data-phase="{esc(name)}" x="{LEFT + (gi + 0.5) * group_w:.1f}" '
                   f'y="{bottom + 18}" text-anchor="middle" font-size="13">{esc(name)}</text></g>')
    ly = H - 14
    x = LEFT
    legend = [("RSS", COLOURS["rss"])] + ([("heap in use", COLOURS["in_use"])] if heap_measured else []) + \
             [("threads (right axis)", COLOURS["threads"])]
    for text, colour in legend:
        out.append(f'<rect x="{x}" y="{ly - 10}" width="14" height="10" fill="{colour}"/>'
                   f'<text x="{x + 20}" y="{ly}" font-size="12">{esc(text)}</text>')
        x += 20 + len(text) * 7 + 24
    return _svg(out, "phase-snapshots", title)


def _svg(parts, figure, label, extra=""):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="figure-svg plot-svg" '
            f'data-figure="{figure}"{extra} role="img" aria-label="{esc(label)}" '
            f'preserveAspectRatio="xMidYMin meet" style="max-width:{W}px" font-family="system-ui, sans-serif">'
            + "\n".join(parts) + "</svg>")
