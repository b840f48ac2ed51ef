"""Samples a running scenario's RSS and threads from /proc, tails its events, and draws timeline.svg."""

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

TIMELINE_HEADER = "t_s,rss_bytes,threads\n"
PHASES_HEADER = "t_s,phase,in_use_bytes,rss_bytes\n"


def read_status(pid):
    """(rss_bytes, threads) from /proc/PID/status, or None once the process is
    gone or a zombie (a zombie has no VmRSS line)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rss = threads = None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024  # the kernel reports kB
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    if rss is None or threads is None:
        return None
    return rss, threads


class EventTail:
    """Reads new complete lines of a JSON-lines file that another process is
    still writing; a half-written last line waits for the next read."""

    def __init__(self, path):
        self.path = Path(path)
        self._file = None
        self._partial = b""

    def read(self):
        if self._file is None:
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError:
                return []  # the scenario has not opened it yet
        data = self._partial + self._file.read()
        *lines, self._partial = data.split(b"\n")
        events = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # the comparer reports malformed lines; the sampler only looks
            if isinstance(ev, dict):
                events.append(ev)
        return events

    def close(self):
        if self._file:
            self._file.close()


class Sampler(threading.Thread):
    """Every interval: one timeline.csv row from /proc/PID/status, and any new
    events (phases go to phases.csv, every event to `on_event`).

    Times are seconds on the runner's clock since `t0` (time.monotonic() at
    spawn). Phase events carry the scenario's own clock; they are shifted by
    the offset observed when the start event was first read, so a phase line
    may sit up to one interval late on the plot."""

    def __init__(self, pid, events_path, out_dir, interval_s, t0, on_event=None):
        super().__init__(name="leaklab-sampler", daemon=True)
        self.pid = pid
        self.tail = EventTail(events_path)
        self.out_dir = Path(out_dir)
        self.interval_s = interval_s
        self.t0 = t0
        self.on_event = on_event
        self.samples = 0
        self.max_gap_s = 0.0  # longest time between two samples: how regular the grid was
        self.cpu_s = 0.0
        self.offset = None
        self._last_poll = 0.0  # t0 is taken just before the spawn
        self.errors = []
        self._stop_flag = threading.Event()

    def stop(self, timeout=10.0):
        self._stop_flag.set()
        self.join(timeout)

    def run(self):
        cpu0 = time.thread_time()  # this thread only: the sampler's own cost
        try:
            with open(self.out_dir / "timeline.csv", "w") as tl, \
                    open(self.out_dir / "phases.csv", "w") as ph:
                tl.write(TIMELINE_HEADER)
                ph.write(PHASES_HEADER)
                deadline = time.monotonic()
                last = None
                while not self._stop_flag.is_set():
                    now = time.monotonic() - self.t0
                    sample = read_status(self.pid)
                    if sample:
                        tl.write(f"{now:.4f},{sample[0]},{sample[1]}\n")
                        self.samples += 1
                        if last is not None:
                            self.max_gap_s = max(self.max_gap_s, now - last)
                        last = now
                    self._drain(ph, now)
                    # A fixed grid, not sleep(interval): the work above must
                    # not stretch the period.
                    deadline += self.interval_s
                    delay = deadline - time.monotonic()
                    if delay < 0:
                        deadline = time.monotonic()
                        delay = 0
                    self._stop_flag.wait(delay)
                self._drain(ph, time.monotonic() - self.t0)
        except Exception as e:  # a sampler crash must not hide the run's own result
            self.errors.append(f"sampler: {type(e).__name__}: {e}")
        finally:
            self.tail.close()
            self.cpu_s = time.thread_time() - cpu0

    def _drain(self, ph, now):
        events = self.tail.read()
        self._drain_events(ph, now, events)
        self._last_poll = now

    def _drain_events(self, ph, now, events):
        for ev in events:
            t = ev.get("t")
            anchor = ev.get("t0_monotonic_s")
            if isinstance(anchor, (int, float)):
                # The harness said when its t=0 was on CLOCK_MONOTONIC, the
                # clock time.monotonic() reads: the offset is exact.
                self.offset = anchor - self.t0
            elif self.offset is None and isinstance(t, (int, float)):
                # The line was written between the previous poll and this
                # one: take the middle, so the error is at most half an interval.
                seen = (self._last_poll + now) / 2
                self.offset = seen - t
            if ev.get("event") == "phase":
                snap = ev.get("snapshot") or {}
                in_use = (snap.get("alloc") or {}).get("in_use_bytes")
                rss = snap.get("rss_bytes")
                tt = t + self.offset if isinstance(t, (int, float)) else now
                ph.write(f"{tt:.4f},{ev.get('phase', '')},"
                         f"{in_use if isinstance(in_use, int) and in_use >= 0 else ''},"
                         f"{rss if isinstance(rss, int) else ''}\n")
                ph.flush()
            if self.on_event:
                try:
                    self.on_event(ev)
                except Exception as e:
                    self.errors.append(f"event handler: {type(e).__name__}: {e}")


def _gp_string(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rows(path):
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return []
    return [line.split(",") for line in lines if line.strip()]


def gnuplot_script(title, phases):
    """The gnuplot program for timeline.svg; `phases` is [(t_s, name, in_use)]."""
    lines = [
        'set terminal svg size 1000,520 dynamic noenhanced font "sans,11" background rgb "white"',
        'set output "timeline.svg"',
        'set datafile separator ","',
        f"set title {_gp_string(title)}",
        'set xlabel "seconds since the runner started the scenario"',
        'set ylabel "MiB"',
        'set y2label "threads"',
        "set ytics nomirror",
        "set y2tics",
        "set yrange [0:*]",
        "set y2range [0:*]",
        "set grid",
        "set key below",  # inside, the legend would hide phase labels and data
    ]
    # One line per phase change; periodic snapshots of the same phase would
    # otherwise paint the plot grey.
    previous = None
    n = 0
    for t, name, _ in phases:
        if name == previous:
            continue
        previous = name
        n += 1
        lines.append(f'set arrow {n} from {t}, graph 0 to {t}, graph 1 nohead dt 2 lc rgb "#777777"')
        lines.append(f"set label {n} {_gp_string(name)} at {t}, graph 0.98 rotate by 90 right "
                     'offset -0.7,0 textcolor rgb "#444444"')
    plots = ['"timeline.csv" skip 1 using 1:($2/1048576) with lines lw 2 lc rgb "#1f77b4" '
             'title "RSS (sampled)"']
    if any(in_use for _, _, in_use in phases):
        # Known only at snapshots: points, joined by steps (a straight line
        # between two snapshots would invent values nobody measured).
        plots.append('"phases.csv" skip 1 using 1:($3/1048576) with steps dt 2 lc rgb "#d62728" notitle')
        plots.append('"phases.csv" skip 1 using 1:($3/1048576) with points pt 7 ps 0.9 '
                     'lc rgb "#d62728" title "heap in use (phase snapshots)"')
    plots.append('"timeline.csv" skip 1 using 1:3 axes x1y2 with steps lw 1.5 lc rgb "#2ca02c" '
                 'title "threads"')
    lines.append("plot " + ", \\\n     ".join(plots))
    return "\n".join(lines) + "\n"


def draw_svg(run_dir, title):
    """Writes timeline.gp and runs gnuplot on it. Returns None on success or a
    note saying why there is no SVG; a missing plot is never a run failure."""
    run_dir = Path(run_dir)
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return "gnuplot not found: timeline.svg skipped (apt-get install gnuplot-nox)"
    if not _rows(run_dir / "timeline.csv"):
        return "no RSS samples (the run ended before the first sample): timeline.svg skipped"
    phases = [(r[0], r[1], r[2]) for r in _rows(run_dir / "phases.csv") if len(r) >= 3]
    (run_dir / "timeline.gp").write_text(gnuplot_script(title, phases))
    try:
        done = subprocess.run([gnuplot, "timeline.gp"], cwd=run_dir, capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "gnuplot took over 120 s: timeline.svg skipped"
    if done.returncode != 0:
        return f"gnuplot failed ({done.stderr.strip()[-300:]}): timeline.svg skipped"
    return None
