"""Folds the infrastructure out of a pprof call graph (SVG) so the page opens on the code that holds the memory."""

# pprof's graph shows every allocation site, and in a leaklab run some are the
# measuring itself: the heap profiler's own buffer (GetHeapProfile, 1 MiB,
# reached through main -> ll_phase -> dump_heap_profile) and each thread's
# TLS block (allocate_dtv). At a baseline they are nearly all there is
# ("GetHeapProfile 99.6 %"); at the leak they are a side branch that squeezes
# the graph. A node is folded when every allocation below it is such
# infrastructure; the top function is never folded. The folded nodes stay in
# the SVG, hidden (data-folded), and the full graph is the file next to it.
# The view box is then cropped to what is left, so the boxes that matter are
# drawn larger and their labels can be read.

import re

INFRASTRUCTURE = ("GetHeapProfile", "HeapProfilerDump", "dump_heap_profile", "allocate_dtv", "_dl_allocate_tls",
                  "_IO_file_doallocate")
PASSTHROUGH = ("clone3", "__clone3", "clone", "__clone", "start_thread", "_start", "__libc_start_main",
               "__libc_start_call_main", "main")
ALLOCATES_NOTHING = re.compile(r">\s*0\.0 \(0\.0%\)\s*<")   # pprof's flat line of a node: "0.0 (0.0%)"
NODE_RE = re.compile(r'<g id="([^"]+)" class="node">\s*<title>([^<]+)</title>(.*?)</g>', re.S)
EDGE_RE = re.compile(r'<g id="([^"]+)" class="edge">\s*<title>([^<]+?)&#45;&gt;([^<]+?)</title>(.*?)</g>', re.S)
TEXT_RE = re.compile(r"<text\b[^>]*>([^<]*)</text>")
NUM_PAIR = re.compile(r"(-?[\d.]+),(-?[\d.]+)")
PAD = 12
MAX_HEIGHT = 760   # px: a graph taller than a screen is scrolled, not read


def _name(body):
    m = TEXT_RE.search(body)
    return m.group(1).strip() if m else ""


def _is_infrastructure(name):
    return any(name == f or name.startswith(f) or name.endswith(f) for f in INFRASTRUCTURE)


ROLES = {"GetHeapProfile": "the heap profiler\u2019s own buffer", "dump_heap_profile": "the heap profiler\u2019s own buffer",
         "allocate_dtv": "a thread\u2019s TLS block", "_dl_allocate_tls": "a thread\u2019s TLS block",
         "_IO_file_doallocate": "a stdio buffer"}


def role(function):
    """' <small>(the heap profiler's own buffer)</small>' for an infrastructure site, '' otherwise."""
    what = next((r for f, r in ROLES.items() if function == f or function.endswith(f)), None)
    return f' <small class="source">({what})</small>' if what else ""


def fold(svg, top_function=None):
    """(svg with the infrastructure hidden and the view box cropped, [folded function names])."""
    nodes = {m.group(2): (m.group(1), _name(m.group(3)), m.group(3)) for m in NODE_RE.finditer(svg)}
    children = {}
    for m in EDGE_RE.finditer(svg):
        children.setdefault(m.group(2), []).append(m.group(3))
    memo = {}

    def only_infrastructure(node, seen=()):
        """True when every allocation at or below `node` is infrastructure."""
        if node in memo:
            return memo[node]
        if node in seen:
            return True  # a cycle adds nothing new
        name = nodes.get(node, ("", "", ""))[1]
        if name == top_function:
            memo[node] = False
        elif _is_infrastructure(name):
            memo[node] = True
        elif not children.get(node):
            memo[node] = False  # a leaf of the program's own
        else:
            memo[node] = all(only_infrastructure(c, seen + (node,)) for c in children[node])
        return memo[node]

    hidden = {t for t in nodes if nodes[t][1] and t != "Legend" and only_infrastructure(t)}
    # The thread and process start-up frames above the program's own code
    # (clone3 -> start_thread -> worker) allocate nothing themselves: boxes a
    # learner reads first, saying nothing. Folded from the top down, while
    # every caller of one is folded too.
    parents = {}
    for caller, callees in children.items():
        for c in callees:
            parents.setdefault(c, []).append(caller)
    changed = True
    while changed:
        changed = False
        for t_, (_, name, body) in nodes.items():
            if (t_ not in hidden and name in PASSTHROUGH and name != top_function and ALLOCATES_NOTHING.search(body)
                    and all(p_ in hidden for p_ in parents.get(t_, ()))):
                hidden.add(t_)
                changed = True
    if not hidden or len(hidden) == len([t for t in nodes if t != "Legend"]):
        return svg, []
    hide_ids = {nodes[t][0] for t in hidden}
    hide_ids |= {m.group(1) for m in EDGE_RE.finditer(svg) if m.group(2) in hidden or m.group(3) in hidden}
    # The legend (binary, totals) repeats the paragraph above the graph and is
    # the widest block: it goes too, so the crop fits the graph itself.
    hide_ids.add(nodes["Legend"][0]) if "Legend" in nodes else None

    def hide(m):
        return m.group(0).replace(f'id="{m.group(1)}"', f'id="{m.group(1)}" data-folded="1" style="display:none"', 1)
    svg = re.sub(r'<g id="([^"]+)" class="(?:node|edge)"', lambda m: hide(m) if m.group(1) in hide_ids else m.group(0),
                 svg)
    svg = _crop(svg, [nodes[t][2] for t in nodes if t not in hidden and t != "Legend"])
    folded = sorted({nodes[t][1] for t in hidden if _is_infrastructure(nodes[t][1])})
    folded += sorted({nodes[t][1] for t in hidden if nodes[t][1] in PASSTHROUGH})
    return svg, folded


def _crop(svg, bodies):
    """The view box around the visible nodes (graphviz coordinates + the graph's translate)."""
    shift = re.search(r"""class=["']graph["'][^>]*transform=["'][^"']*translate\(\s*([-\d.]+)[ ,]+([-\d.]+)\s*\)""", svg)
    if not shift:
        return svg
    tx, ty = float(shift.group(1)), float(shift.group(2))
    xs, ys = [], []
    for body in bodies:
        for pts in re.findall(r'points="([^"]+)"', body):
            for x, y in NUM_PAIR.findall(pts):
                xs.append(float(x))
                ys.append(float(y))
    if not xs:
        return svg
    x0, y0 = min(xs) + tx - PAD, min(ys) + ty - PAD
    w, h = max(xs) - min(xs) + 2 * PAD, max(ys) - min(ys) + 2 * PAD
    svg = re.sub(r'viewBox="[^"]*"', f'viewBox="{x0:g} {y0:g} {w:g} {h:g}"', svg, count=1)
    # Drawn up to twice its natural size (small labels become readable) while it
    # stays within MAX_HEIGHT and the column; never smaller than drawn.
    width = max(min(w, 1040), min(2 * w, 1040, MAX_HEIGHT * w / h))
    return re.sub(r'style="max-width:[^"]*"', f'style="max-width:{width:.0f}px"', svg, count=1)
