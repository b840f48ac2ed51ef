"""checks.py - the checks the memstats tests apply to a snapshot. Each returns a list of
problems (empty: the check holds), so that test_checks.py can feed each one a wrong
snapshot and see it fail."""
import os
import struct
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def within(a, b, tol):
    return abs(a - b) <= tol * max(abs(b), 1)


def sum_problems(snap, tol=0.01):
    """The items add up to rss_bytes, and what no line explains (the remainder, last) is
    within tol of it."""
    out = []
    items = snap.get("items") or []
    for it in items:
        if set(it) - {"go_bytes"} != {"name", "bytes", "go"}:
            out.append(f"item without name/bytes/go: {it}")
    total = sum(it["bytes"] for it in items)
    if total != snap["rss_bytes"]:
        out.append(f"items add up to {total}, RSS is {snap['rss_bytes']}")
    if not items or items[-1]["name"] != "unexplained remainder":
        out.append("the last item is not the unexplained remainder")
    elif not within(snap["rss_bytes"] - items[-1]["bytes"], snap["rss_bytes"], tol):
        out.append(f"the lines explain {snap['rss_bytes'] - items[-1]['bytes']} of RSS {snap['rss_bytes']} "
                   f"(remainder {items[-1]['bytes']}, over {tol:.0%})")
    return out


def heap_inuse_item(snap):
    found = [it for it in snap["items"] if it["go"] == "HeapInuse"]
    return found[0] if len(found) == 1 else None


def heap_inuse_problems(snap, in_use_bytes, tol):
    """The HeapInuse line's Go figure (the heap in use, touched or not) is within tol of the
    program's own count, and its resident bytes are no more than that."""
    it = heap_inuse_item(snap)
    if it is None:
        return ["no single item with go HeapInuse"]
    out = []
    if not within(it.get("go_bytes", -1), in_use_bytes, tol):
        out.append(f"HeapInuse {it.get('go_bytes')} vs the program's in use {in_use_bytes} (over {tol:.0%})")
    if it["bytes"] > it.get("go_bytes", 0):
        out.append(f"HeapInuse resident {it['bytes']} exceeds the heap in use {it.get('go_bytes')}")
    return out


def mallinfo_problems(snap, alloc, tol=0.01):
    """glibc's in use = mallinfo2 uordblks + hblkhd, free = fordblks, read in-process at the
    same phase (the harness's alloc.in_use_bytes and alloc.free_held_bytes)."""
    g = snap.get("glibc")
    if not g:
        return ["no glibc walk in the snapshot"]
    out = []
    if not within(g["in_use_bytes"], alloc["in_use_bytes"], tol):
        out.append(f"in use {g['in_use_bytes']} vs mallinfo2 {alloc['in_use_bytes']} (over {tol:.0%})")
    if not within(g["free_bytes"], alloc["free_held_bytes"], tol):
        out.append(f"free {g['free_bytes']} vs mallinfo2 fordblks {alloc['free_held_bytes']} (over {tol:.0%})")
    return out


def resident_from_pagemap(pid, start, end):
    """Resident bytes of [start, end) as the test reads /proc/PID/pagemap itself."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        first, last = start // PAGE, (end + PAGE - 1) // PAGE
        f.seek(first * 8)
        raw = f.read((last - first) * 8)
    total = 0
    for i, (entry,) in enumerate(struct.iter_unpack("<Q", raw)):
        if entry >> 63:
            lo, hi = max(start, (first + i) * PAGE), min(end, (first + i + 1) * PAGE)
            total += hi - lo
    return total


def split_problems(snap, resident=None):
    """Per arena: its heaps' resident bytes by pagemap (read here, not by memstats) equal
    memstats' resident bytes; in use resident + free resident = that; free resident + free
    not resident = free; and the items carry the same sums."""
    g = snap.get("glibc")
    if not g:
        return ["no glibc walk in the snapshot"]
    resident = resident or (lambda a, b: resident_from_pagemap(snap["pid"], a, b))
    out, free_res = [], 0
    for a in g["arenas"]:
        by_pagemap = sum(resident(int(lo, 16), int(lo, 16) + size) for lo, size in a["heaps"])
        if by_pagemap != a["resident_bytes"]:
            out.append(f"arena {a['address']}: pagemap says {by_pagemap} resident, memstats {a['resident_bytes']}")
        if a["free_resident_bytes"] + a["free_not_resident_bytes"] != a["free_bytes"]:
            out.append(f"arena {a['address']}: free resident + not resident != free")
        if not 0 <= a["free_resident_bytes"] <= a["resident_bytes"]:
            out.append(f"arena {a['address']}: free resident {a['free_resident_bytes']} outside [0, resident]")
        free_res += a["free_resident_bytes"]
    item = {it["go"]: it["bytes"] for it in snap["items"]}
    if item.get("HeapIdle-HeapReleased") != free_res:
        out.append(f"the free-resident item {item.get('HeapIdle-HeapReleased')} != the arenas' {free_res}")
    if snap["go"].get("HeapReleased") != g["free_not_resident_bytes"]:
        out.append("HeapReleased != the arenas' free bytes not resident")
    return out


def task_problems(pid):
    """Threads of pid that are traced or stopped (t: traced stop, T: job-control stop)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        state, tracer = fields["State"].split()[0], int(fields["TracerPid"])
        if tracer != 0 or state in "tT":
            out.append(f"thread {tid}: state {state}, TracerPid {tracer}")
    return out
