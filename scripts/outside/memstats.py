"""memstats.py - `leaklab memstats PID`: the RSS of a running process, itemized from outside,
with Go's runtime.MemStats names beside each line (docs/memstats.md).

    snapshot(pid) -> dict          the library call (the comparer and tests use it)
    leaklab memstats PID           a table; --json one object; --watch SECONDS a live view

The object snapshot() returns (and --json prints):

    {"pid": 1234, "command": "delayed_exit", "allocator": "glibc" | "tcmalloc" | "jemalloc",
     "allocator_figures_from": "walk" | "agent" | None,
                                           where the heap lines come from: glibc's arenas read
                                           from outside ("walk"), the allocator's own figures
                                           from the opt-in allocstats agent ("agent": tcmalloc,
                                           jemalloc), or nowhere (None: not itemized)
     "rss_bytes": N,                       Rss of /proc/PID/smaps_rollup
     "items": [{"name": str, "bytes": N, "go": str | None}, ...],
                                           resident bytes by cause; they add up to rss_bytes
                                           exactly, the last item ("unexplained remainder")
                                           being what no other line explains (the time between
                                           reads of a running target; it may be negative);
                                           the HeapInuse item also has "go_bytes": Go's figure,
                                           the heap in use whether resident or not
     "go": {"HeapInuse": N, "HeapIdle": N, "HeapReleased": N, "HeapSys": N,
            "StackInuse": N, "StackCached": N},
                                           Go-style figures: HeapInuse = glibc's in use (virtual,
                                           = mallinfo2 uordblks + hblkhd); HeapIdle = free in bins,
                                           fastbins and top (= fordblks); HeapReleased = the part
                                           of HeapIdle not resident (returned or never touched);
                                           absent keys: not known for this allocator
     "agent": {...} | None,                the allocstats agent's answer as it came (allocstats.h)
     "tcmalloc" | "jemalloc": {...},       with the agent: the allocator's figures in Go's terms
                                           (in_use, free_resident, released, metadata, muzzy),
                                           its mappings' resident bytes and how they were split
     "glibc": {...} | None,                per arena: address, heaps, system_mem, in_use_bytes,
                                           free_bytes (top, bins, fastbins), free_resident_bytes,
                                           free_not_resident_bytes; mmapped chunks; the walk
     "stacks": {"live": n, "cached": n, "live_bytes": N, "cached_bytes": N, "in_heap": n},
                                           live: threads in glibc's lists with a stack (main's
                                           [stack] is in live_bytes, not in live); in_heap: user
                                           stacks inside the heap (counted there, not here)
     "also": [{"name", "bytes", "go"}],    smaps figures inside (AnonHugePages, LazyFree) or
                                           outside (Swap) the RSS, not part of the sum
     "settled": bool, "walks": n,          did two consecutive walks (around the reads of smaps
                                           and pagemap) agree; how many walks it took
     "notes": [str], "elapsed_s": float}

Items, in order (the go name where one fits):
    heap in use (glibc arenas + mmapped chunks)         HeapInuse
    heap free, still resident (glibc bins/fastbins/top) HeapIdle-HeapReleased
    glibc heap mappings beyond the arenas' chunks       -
    heap in use (tcmalloc|jemalloc's own count)         HeapInuse              } with the
    heap free, still resident (tcmalloc|jemalloc: ...)  HeapIdle-HeapReleased  } allocstats
    allocator metadata (tcmalloc|jemalloc's own count)  MSpanSys               } agent
    heap free, MADV_FREE'd ... (jemalloc muzzy pages)   -                      }
    allocator heap (tcmalloc|jemalloc): not itemized    HeapSys-HeapReleased   (without it)
    thread stacks (live threads, main included)         StackInuse
    thread stacks cached by glibc (exited threads)      -
    code and libraries                                  -
    other file-backed                                   -
    shared memory                                       -
    other anonymous                                     -
    unexplained remainder                               -

How: glibc's struct layouts and the addresses of main_arena, mp_ and _rtld_global come from
the debug information of the target's own libc and ld.so (libc6-dbg), read once per build-id
with `gdb -batch` on the FILES (never attached to the target) and cached. The arenas, the
free lists and glibc's thread lists are read from /proc/PID/mem, residency from
/proc/PID/pagemap, mappings from /proc/PID/smaps. The target is never stopped, traced or
signalled: a consistent picture comes from walking twice and accepting only two walks that
agree (at most MAX_WALKS walks, or fewer once WALK_BUDGET_S has passed; see `settled`).
tcmalloc's and jemalloc's figures cannot be read from outside (no debug information, no
stable layout); a program started with LD_PRELOAD=liballocstats.so (threadcheck/allocstats)
answers a datagram on "@leaklab-allocstats.PID" with them, asked with every walk."""
import argparse
import bisect
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from array import array
from itertools import accumulate
from pathlib import Path

from scripts.base.exits import EXIT_OK, EXIT_SYSTEM, EXIT_USAGE

PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_WALKS = 10                # walks before the snapshot is called unsettled
WALK_BUDGET_S = 3.0           # ... or once this time has passed with one complete walk
MAX_ARENAS = 4096
MAX_HEAPS_PER_ARENA = 1 << 16
MAX_THREADS = 1 << 22
CACHE_FORMAT = 1
MMAP_SCAN_PAGES = 1 << 16     # resident pages tried for mmapped chunks not at a mapping's start
# glibc's HEAP_MAX_SIZE on 64-bit: 2 * DEFAULT_MMAP_THRESHOLD_MAX (4 MiB * sizeof(long))
DEFAULT_HEAP_MAX = 2 * 4 * 1024 * 1024 * 8
IS_MMAPPED, SIZE_BITS = 0x2, 0x7
NONCONTIGUOUS_BIT = 0x2

ITEM_IN_USE = "heap in use (glibc arenas + mmapped chunks)"
ITEM_FREE_RESIDENT = "heap free, still resident (glibc bins, fastbins, top)"
ITEM_BEYOND = "glibc heap mappings beyond the arenas' chunks"
ITEM_STACKS = "thread stacks (live threads, main included)"
ITEM_CACHED = "thread stacks cached by glibc (exited threads)"
ITEM_CODE = "code and libraries"
ITEM_FILE = "other file-backed"
ITEM_SHARED = "shared memory"
ITEM_ANON = "other anonymous"
ITEM_REMAINDER = "unexplained remainder"
GO_NAMES = {ITEM_IN_USE: "HeapInuse", ITEM_FREE_RESIDENT: "HeapIdle-HeapReleased", ITEM_STACKS: "StackInuse"}
# tcmalloc's and jemalloc's heap, itemized with the allocator's own figures when the program
# was started with the opt-in agent (threadcheck/allocstats, LD_PRELOAD=liballocstats.so)
AGENT_SOCKET = "\0leaklab-allocstats.{pid}"   # allocstats.h: ALLOCSTATS_SOCKET_PREFIX + pid
AGENT_FORMAT = 1                               # allocstats.h: ALLOCSTATS_FORMAT
AGENT_TIMEOUT_S = 1.0
AGENT_HINT = ("start the program with LD_PRELOAD=BUILD/threadcheck/allocstats/liballocstats.so (the opt-in "
              "agent, docs/memstats.md) to itemize it with the allocator's own figures")
ALLOC_FREE_WHAT = {"tcmalloc": "page heap, central, transfer and thread caches",
                   "jemalloc": "dirty pages, tcaches, free slab regions"}
ALLOC_RELEASED_WHAT = {"tcmalloc": "unmapped page heap", "jemalloc": "retained"}


def alloc_items(allocator):
    """The names of the lines an agent's figures itemize (in use, free resident, metadata,
    muzzy) for `allocator`."""
    return (f"heap in use ({allocator}'s own count)",
            f"heap free, still resident ({allocator}: {ALLOC_FREE_WHAT.get(allocator, 'free lists')})",
            f"allocator metadata ({allocator}'s own count)",
            f"heap free, MADV_FREE'd, resident until reclaimed ({allocator} muzzy pages)")


class BadInput(Exception):
    """Exit 2: not a PID, no such process, a thread id."""


class Refused(Exception):
    """Exit 99: the kernel refused a read; the message names the cause and the remedy."""


class Torn(Exception):
    """A walk met a pointer that does not hold (the target changed it meanwhile): walk again."""


# ---- the target's files ----

def check_pid(pid):
    text = str(pid)
    if not re.fullmatch(r"[1-9][0-9]{0,9}", text):
        raise BadInput(f"PID: '{text}' is not a process id (a positive integer)")
    try:
        status = Path(f"/proc/{text}/status").read_text()
    except FileNotFoundError:
        raise BadInput(f"PID: no process {text}") from None
    except OSError as e:
        raise Refused(f"reading /proc/{text}/status: {e.strerror}; run as the target's user or as root") from None
    tgid = re.search(r"^Tgid:\s*(\d+)", status, re.M)
    if tgid and tgid.group(1) != text:
        raise BadInput(f"PID: {text} is a thread of process {tgid.group(1)}; give the process id")
    if re.search(r"^State:\s*Z", status, re.M):
        raise BadInput(f"PID: process {text} has exited (a zombie)")
    return int(text)


def refusal(pid, what, err):
    scope = ""
    try:
        scope = Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        pass
    return Refused(f"reading /proc/{pid}/{what}: {err.strerror}. Reading another process's memory needs "
                   f"the right to trace it (never used: memstats does not attach); run as the target's user "
                   f"or as root" + (f", and see /proc/sys/kernel/yama/ptrace_scope (now {scope})"
                                   if scope not in ("", "0") else ""))


def open_proc(pid, what):
    try:
        return os.open(f"/proc/{pid}/{what}", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise BadInput(f"PID: process {pid} has exited") from None
    except PermissionError as e:
        raise refusal(pid, what, e) from None


def read_proc(pid, what):
    fd = open_proc(pid, what)
    try:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except PermissionError as e:
                raise refusal(pid, what, e) from None
            except ProcessLookupError:
                raise BadInput(f"PID: process {pid} has exited") from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


class Vma:
    __slots__ = ("start", "end", "perms", "offset", "inode", "path", "rss", "anon_huge", "lazyfree", "swap")

    def __init__(self, start, end, perms, offset, inode, path):
        self.start, self.end, self.perms, self.offset, self.inode, self.path = start, end, perms, offset, inode, path
        self.rss = self.anon_huge = self.lazyfree = self.swap = 0


SMAPS_FIELDS = {b"Rss": "rss", b"AnonHugePages": "anon_huge", b"LazyFree": "lazyfree", b"Swap": "swap"}


def read_smaps(pid):
    """Every mapping with its Rss, AnonHugePages, LazyFree and Swap (bytes), by address."""
    vmas = []
    for line in read_proc(pid, "smaps").split(b"\n"):
        if not line:
            continue
        if line[0] in b"0123456789abcdef":  # a mapping's header; field names start upper-case
            parts = line.split(None, 5)
            lo, hi = parts[0].split(b"-")
            vmas.append(Vma(int(lo, 16), int(hi, 16), parts[1].decode(), int(parts[2], 16), int(parts[4]),
                            parts[5].decode(errors="replace") if len(parts) > 5 else ""))
            continue
        key, _, rest = line.partition(b":")
        attr = SMAPS_FIELDS.get(key)
        if attr and vmas:
            setattr(vmas[-1], attr, int(rest.split()[0]) * 1024)
    return vmas


def rollup_rss(pid):
    m = re.search(rb"^Rss:\s+(\d+) kB", read_proc(pid, "smaps_rollup"), re.M)
    if not m:
        raise Refused(f"/proc/{pid}/smaps_rollup has no Rss line (kernel older than 4.14?)")
    return int(m.group(1)) * 1024


class Mem:
    """/proc/PID/mem and /proc/PID/pagemap: reads of a live process, no attach, no stop."""

    def __init__(self, pid):
        self.pid = pid
        self.fd = open_proc(pid, "mem")
        self.pm = open_proc(pid, "pagemap")

    def close(self):
        os.close(self.fd)
        os.close(self.pm)

    def read(self, addr, n):
        try:
            data = os.pread(self.fd, n, addr)
        except PermissionError as e:
            raise refusal(self.pid, "mem", e) from None
        except (OSError, OverflowError) as e:
            raise Torn(f"cannot read {n} bytes at {addr:#x}: {getattr(e, 'strerror', e)}") from None
        if len(data) != n:
            raise Torn(f"short read of {n} bytes at {addr:#x}")
        return data

    def u64(self, addr):
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def present(self, start, end):
        """One 0/1 per page of [start, end) (page-aligned outward): resident now. A page in swap
        is not resident (smaps counts it under Swap, not Rss)."""
        first, last = start // PAGE, (end + PAGE - 1) // PAGE
        if last <= first:
            return []
        try:
            raw = os.pread(self.pm, 8 * (last - first), 8 * first)
        except PermissionError as e:
            raise refusal(self.pid, "pagemap", e) from None
        except OSError as e:
            raise Torn(f"pagemap at {start:#x}: {e.strerror}") from None
        entries = array("Q")
        entries.frombytes(raw[:len(raw) // 8 * 8])
        return [e >> 63 for e in entries]

    def resident(self, start, end):
        return Residency(self, start, end).bytes(start, end)


class Residency:
    """Resident bytes of any sub-range of [start, end), from one pagemap read."""

    def __init__(self, mem, start, end):
        self.base = start // PAGE * PAGE
        self.prefix = list(accumulate(mem.present(start, end), initial=0))

    def bytes(self, a, b):
        if b <= a:
            return 0
        pa, pb = (a - self.base) // PAGE, (b - 1 - self.base) // PAGE
        if pa < 0 or pb >= len(self.prefix) - 1:
            raise ValueError(f"range {a:#x}-{b:#x} outside the pagemap read")
        on = lambda i: self.prefix[i + 1] - self.prefix[i]  # noqa: E731
        if pa == pb:
            return (b - a) * on(pa)
        head = (self.base + (pa + 1) * PAGE - a) * on(pa)
        tail = (b - (self.base + pb * PAGE)) * on(pb)
        return head + (self.prefix[pb] - self.prefix[pa + 1]) * PAGE + tail


# ---- glibc's layouts, from its debug information ----

LIBC_QUERIES = {
    "main_arena": "(long)&main_arena",
    "mp_": "(long)&mp_",
    "ms.size": "sizeof(struct malloc_state)",
    "ms.flags": "(long)&((struct malloc_state*)0)->flags",
    "ms.fastbinsY": "(long)&((struct malloc_state*)0)->fastbinsY",
    "ms.nfastbins": "sizeof(((struct malloc_state*)0)->fastbinsY)/sizeof(void*)",
    "ms.top": "(long)&((struct malloc_state*)0)->top",
    "ms.bins": "(long)&((struct malloc_state*)0)->bins",
    "ms.nbins": "sizeof(((struct malloc_state*)0)->bins)/sizeof(void*)",
    "ms.next": "(long)&((struct malloc_state*)0)->next",
    "ms.system_mem": "(long)&((struct malloc_state*)0)->system_mem",
    "mp.size": "sizeof(struct malloc_par)",
    "mp.n_mmaps": "(long)&((struct malloc_par*)0)->n_mmaps",
    "mp.mmapped_mem": "(long)&((struct malloc_par*)0)->mmapped_mem",
    "mp.sbrk_base": "(long)&((struct malloc_par*)0)->sbrk_base",
    "mp.hp_pagesize": "(long)&((struct malloc_par*)0)->hp_pagesize",  # glibc >= 2.35; optional
    "heap.size_of": "sizeof(struct _heap_info)",
    "heap.ar_ptr": "(long)&((struct _heap_info*)0)->ar_ptr",
    "heap.prev": "(long)&((struct _heap_info*)0)->prev",
    "heap.size": "(long)&((struct _heap_info*)0)->size",
    "chunk.size": "(long)&((struct malloc_chunk*)0)->mchunk_size",
    "chunk.fd": "(long)&((struct malloc_chunk*)0)->fd",
    "pthread.list": "(long)&((struct pthread*)0)->list",
    "pthread.tid": "(long)&((struct pthread*)0)->tid",
    "pthread.stackblock": "(long)&((struct pthread*)0)->stackblock",
    "pthread.stackblock_size": "(long)&((struct pthread*)0)->stackblock_size",
}
OPTIONAL = {"mp.hp_pagesize"}
LD_QUERIES = {
    "_rtld_global": "(long)&_rtld_global",
    "rg.stack_used": "(long)&((struct rtld_global*)0)->_dl_stack_used",
    "rg.stack_user": "(long)&((struct rtld_global*)0)->_dl_stack_user",
    "rg.stack_cache": "(long)&((struct rtld_global*)0)->_dl_stack_cache",
}


def build_id(path):
    """The GNU build-id of an ELF64 little-endian file (hex), or None."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            ptype, _flags, offset, _va, _pa, filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
            if ptype != 4:  # PT_NOTE
                continue
            f.seek(offset)
            notes, pos = f.read(filesz), 0
            while pos + 12 <= len(notes):
                namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
                name_at = pos + 12
                desc_at = name_at + (namesz + 3) // 4 * 4
                if ntype == 3 and notes[name_at:name_at + namesz].rstrip(b"\0") == b"GNU":
                    return notes[desc_at:desc_at + descsz].hex()
                pos = desc_at + (descsz + 3) // 4 * 4
    return None


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "leaklab" / "memstats"


def layouts(path, queries, notes):
    """{key: number} for `queries` evaluated by gdb on the FILE (its debug info found by
    build-id, as libc6-dbg installs it), cached per build-id. None when gdb or the debug
    information is missing (the reason goes to notes)."""
    bid = build_id(path)
    cached = cache_dir() / f"{bid}.json" if bid else None
    if cached and cached.is_file():
        try:
            data = json.loads(cached.read_text())
            if data.get("format") == CACHE_FORMAT and set(queries) <= set(data["values"]):
                return data["values"]
        except (OSError, ValueError, KeyError):
            pass
    gdb = shutil.which("gdb")
    if not gdb:
        notes.append("gdb is not installed (scripts/install-deps): glibc's layouts cannot be read")
        return None
    argv = [gdb, "-batch", "-nx", "-iex", "set debuginfod enabled off"]
    for key, expr in queries.items():
        argv += ["-ex", f'printf "{key} %ld\\n", {expr}']
    argv.append(str(path))
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        notes.append(f"gdb took over 120 s on {path}")
        return None
    values = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in queries:
            values[parts[0]] = int(parts[1])
    missing = set(queries) - set(values) - OPTIONAL
    if missing:
        notes.append(f"no debug information for {path} (build-id {bid}): {', '.join(sorted(missing))} unknown; "
                     f"install the matching libc6-dbg (scripts/install-deps)")
        return None
    if cached:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"format": CACHE_FORMAT, "file": str(path), "values": values}))
            os.replace(tmp, cached)
        except OSError:
            pass  # no cache: gdb runs again next time
    return values


def glibc_version(path):
    with open(path, "rb") as f:
        m = re.search(rb"release version (\d+)\.(\d+)", f.read())
    return (int(m.group(1)), int(m.group(2))) if m else None


# ---- the walks ----

def u64(buf, off):
    return struct.unpack_from("<Q", buf, off)[0]


def i32(buf, off):
    return struct.unpack_from("<i", buf, off)[0]


def walk_arenas(mem, L, base, safe_linking):
    """Every arena from main_arena along ->next, with its heaps and its free chunks.
    Raises Torn when a pointer does not hold (the target changed it meanwhile)."""
    mp = mem.read(base + L["mp_"], L["mp.size"])
    sbrk_base = u64(mp, L["mp.sbrk_base"])
    hp = u64(mp, L["mp.hp_pagesize"]) if "mp.hp_pagesize" in L else 0
    heap_max = hp * 4 if hp else DEFAULT_HEAP_MAX
    main = base + L["main_arena"]
    arenas, a = [], main
    csize, cfd = L["chunk.size"], L["chunk.fd"]
    while True:
        if len(arenas) >= MAX_ARENAS or any(x["address"] == a for x in arenas):
            raise Torn("the arena list does not come back to main_arena")
        st = mem.read(a, L["ms.size"])
        top = u64(st, L["ms.top"])
        system_mem = u64(st, L["ms.system_mem"])
        bins0 = a + L["ms.bins"] - cfd  # bin_at(1): the unsorted bin's fake chunk
        if a == main and (system_mem == 0 or sbrk_base == 0):
            break  # main_arena never used: no glibc heap (another allocator, or none yet)
        topsize = mem.u64(top + csize) & ~SIZE_BITS
        if a == main:
            regions = [(sbrk_base, top + topsize)]
        else:
            regions, h = [], top & ~(heap_max - 1)
            while h:
                if len(regions) >= MAX_HEAPS_PER_ARENA:
                    raise Torn("an arena's heap list does not end")
                hb = mem.read(h, L["heap.size_of"])
                if u64(hb, L["heap.ar_ptr"]) != a:
                    raise Torn(f"heap {h:#x} does not belong to arena {a:#x}")
                regions.append((h, h + u64(hb, L["heap.size"])))
                h = u64(hb, L["heap.prev"])
        starts = sorted(regions)
        total = sum(e - s for s, e in regions)
        bound = total // 16 + 2

        def inside(p, n=16):
            i = bisect.bisect_right(starts, (p, float("inf"))) - 1
            return i >= 0 and p % 16 == 0 and starts[i][0] <= p and p + n <= starts[i][1]

        free, seen = [], set()

        def take(p, kind):
            if not inside(p) or p in seen or len(free) > bound:
                raise Torn(f"{kind} chunk {p:#x} outside the arena's heaps or seen twice")
            seen.add(p)
            hdr = mem.read(p, cfd + 8)
            size = u64(hdr, csize) & ~SIZE_BITS
            if size < 32 or not inside(p, size):
                raise Torn(f"{kind} chunk {p:#x} has size {size:#x}")
            free.append((p, size, kind))
            return u64(hdr, cfd)

        for i in range(L["ms.nfastbins"]):
            p = u64(st, L["ms.fastbinsY"] + 8 * i)
            while p:
                fd = take(p, "fastbin")
                p = fd ^ ((p + cfd) >> 12) if safe_linking else fd  # glibc >= 2.32: PROTECT_PTR
        for i in range(L["ms.nbins"] // 2):
            head = bins0 + 16 * i
            p = u64(st, L["ms.bins"] + 16 * i)
            while p != head:
                p = take(p, "bin")
        if top not in seen and inside(top, topsize):
            free.append((top, topsize, "top"))
        elif top != bins0:
            raise Torn(f"top chunk {top:#x} outside the arena's heaps")
        arenas.append({"address": a, "main": a == main, "regions": sorted(regions), "system_mem": system_mem,
                       "flags": i32(st, L["ms.flags"]), "free": sorted(free)})
        a = u64(st, L["ms.next"])
        if a == main:
            break
    return {"arenas": arenas, "mmapped_mem": u64(mp, L["mp.mmapped_mem"]), "n_mmaps": i32(mp, L["mp.n_mmaps"])}


def walk_threads(mem, L, base):
    """glibc's three lists of thread descriptors: stacks in use (its own), user stacks (main's
    descriptor among them), and the cache of exited threads' stacks."""
    out = {}
    rg = base + L["_rtld_global"]
    for name in ("used", "user", "cache"):
        head = rg + L[f"rg.stack_{name}"]
        stacks, p = [], mem.u64(head)
        while p != head:
            if len(stacks) >= MAX_THREADS or not p:
                raise Torn(f"glibc's stack list {name} does not come back to its head")
            pd = p - L["pthread.list"]
            block = mem.read(pd + L["pthread.stackblock"], 16)
            stacks.append((u64(block, 0), u64(block, 8)))
            p = mem.u64(p)
        out[name] = stacks
    return out


def summary(walk):
    """What two walks must agree on to be called consistent."""
    g = walk.get("glibc")
    arenas = [(a["address"], a["system_mem"], tuple(a["regions"]), tuple(a["free"])) for a in g["arenas"]] if g else []
    agent = walk.get("agent") or {}
    figures = {k: {f: v for f, v in agent[k].items() if f != "from"} for k in ("tcmalloc", "jemalloc") if k in agent}
    return (arenas, g and (g["mmapped_mem"], g["n_mmaps"]), walk.get("threads"), json.dumps(figures, sort_keys=True))


# ---- the snapshot ----

def find_library(vmas, pattern):
    for v in vmas:
        if v.offset == 0 and re.search(pattern, os.path.basename(v.path)):
            return v
    return None


def readable_path(pid, path):
    """The file as the target sees it (it may live in another mount namespace)."""
    inside = f"/proc/{pid}/root{path}"
    return inside if os.path.exists(inside) else path


def ask_agent(pid, timeout=AGENT_TIMEOUT_S):
    """The allocstats agent's answer (allocstats.h: one datagram in, one JSON line out) as a
    dict, or (None, why) when the process has no agent or it did not answer. Not a signal,
    not an attach: a datagram to a socket the program itself opened because it was started
    with the preload. The answer counts only if the kernel says it came from process `pid`
    (SO_PASSCRED: the sender's pid as this pid namespace sees it), whatever it claims."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    ucred = struct.Struct("iII")  # struct ucred: pid, uid, gid
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind("")  # autobind: an address for the answer
        sock.settimeout(timeout)
        try:
            sock.sendto(b"allocstats?", AGENT_SOCKET.format(pid=pid).encode())
        except (ConnectionRefusedError, FileNotFoundError):
            return None, "no allocstats agent"
        try:
            data, ancillary, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(ucred.size))
        except socket.timeout:
            return None, f"the allocstats agent did not answer within {timeout:g} s (another user's process?)"
    except OSError as e:
        return None, f"the allocstats agent could not be asked: {e.strerror or e}"
    finally:
        sock.close()
    sender = next((ucred.unpack(d[:ucred.size])[0] for level, kind, d in ancillary
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(d) >= ucred.size), None)
    if sender != pid:
        return None, f"the answer to {AGENT_SOCKET.format(pid=pid)[1:]!r} came from process {sender}, not {pid}"
    try:
        answer = json.loads(data)
    except ValueError:
        return None, "the allocstats agent's answer is not JSON"
    if not isinstance(answer, dict) or answer.get("allocstats") != AGENT_FORMAT:
        return None, f"the allocstats agent's answer is not format {AGENT_FORMAT}"
    return answer, None


def agent_figures(answer, allocator):
    """The allocator's own figures from the agent's answer, in Go's terms (bytes): in_use,
    free_resident, released, metadata, muzzy (and jemalloc's purged: pages given back so far,
    cumulative, or None); None when the answer has no usable section."""
    a = (answer or {}).get(allocator)
    if not isinstance(a, dict):
        return None
    if allocator == "tcmalloc":
        keys = ("current_allocated_bytes", "heap_size", "total_physical_bytes", "pageheap_free_bytes",
                "pageheap_unmapped_bytes", "central_cache_free_bytes", "transfer_cache_free_bytes",
                "thread_cache_free_bytes")
        if any(not isinstance(a.get(k), int) or a[k] < 0 for k in keys):
            return None
        # gperftools 2.10 has no metadata property; tcmalloc.cc computes total_physical_bytes
        # as system_bytes + metadata_bytes - unmapped_bytes (heap_size is system_bytes)
        return {"in_use": a["current_allocated_bytes"],
                "free_resident": a["pageheap_free_bytes"] + a["central_cache_free_bytes"]
                + a["transfer_cache_free_bytes"] + a["thread_cache_free_bytes"],
                "released": a["pageheap_unmapped_bytes"],
                "metadata": max(a["total_physical_bytes"] - a["heap_size"] + a["pageheap_unmapped_bytes"], 0),
                "muzzy": 0}
    if allocator == "jemalloc":
        keys = ("allocated", "metadata", "resident", "retained")
        if any(not isinstance(a.get(k), int) or a[k] < 0 for k in keys):
            return None
        # as the harness counts it (common/alloc_jemalloc.c): allocated also holds the tcaches'
        # objects and jemalloc's internal allocations (both in its metadata too)
        cached = sum(max(a.get(k, 0), 0) for k in ("tcache_bytes", "tcache_stashed_bytes", "internal"))
        in_use = max(a["allocated"] - cached, 0)
        # retained is address space kept without pages: what was purged, and what extent growth
        # reserved and never touched (both read non-present in pagemap too); only the purge
        # counts tell what was given back. They are cumulative: a page purged and in use again
        # still counts, and with muzzy decay on (MADV_FREE first) a page can count twice.
        purged = [a.get(k) for k in ("dirty_purged_bytes", "muzzy_purged_bytes")]
        return {"in_use": in_use, "free_resident": max(a["resident"] - in_use - a["metadata"], 0),
                "released": a["retained"], "metadata": a["metadata"], "muzzy": max(a.get("muzzy_bytes", 0), 0),
                "purged": sum(purged) if all(isinstance(n, int) and n >= 0 for n in purged) else None}
    return None


def detect_allocator(vmas):
    names = {os.path.basename(v.path) for v in vmas}
    for lib, name in (("libtcmalloc", "tcmalloc"), ("libjemalloc", "jemalloc")):
        if any(n.startswith(lib) for n in names):
            return name
    return "glibc"


def one_walk(mem, libc, ld, pid=None):
    walk = {}
    if pid is not None:  # asked with every walk: two walks agree only if its figures held still
        walk["agent"], walk["agent_note"] = ask_agent(pid)
    if libc:
        walk["glibc"] = walk_arenas(mem, libc["L"], libc["base"], libc["safe_linking"])
    if ld:
        walk["threads"] = walk_threads(mem, ld["L"], ld["base"])
    return walk


def chunk_at(mem, p, end):
    """The size of an mmapped chunk whose header is at page p (prev_size 0, IS_MMAPPED alone,
    whole pages, ending by `end`), else 0."""
    try:
        prev, size = struct.unpack("<QQ", mem.read(p, 16))
    except Torn:
        return 0
    n = size & ~SIZE_BITS
    if prev != 0 or size & SIZE_BITS != IS_MMAPPED or n == 0 or n % PAGE or p + n > end:
        return 0
    return n


def mmapped_chunks(mem, vmas, claimed, expected_bytes, expected_count):
    """glibc's mmapped chunks (hblkhd): anonymous rw mappings that start with a chunk header
    marked IS_MMAPPED whose size is a whole number of pages within the mapping; neighbours the
    kernel merged into one mapping are followed header to header. When these do not make
    glibc's count (a chunk merged behind some other anonymous mapping), every resident page
    start of those mappings is tried too, within a budget, and what that finds is kept only
    if the total then equals mp_.mmapped_mem and n_mmaps exactly."""
    found, rest = [], []
    for v in vmas:
        if v.path or v.perms[:2] != "rw" or v.perms[3] != "p" or claimed(v.start):
            continue
        p = v.start
        while p + 16 <= v.end and (n := chunk_at(mem, p, v.end)):
            found.append((p, n))
            p += n
        if p < v.end:
            rest.append((p, v.end))
    if sum(n for _, n in found) == expected_bytes or not rest:
        return found
    more, budget = [], MMAP_SCAN_PAGES
    for lo, hi in rest:
        present = mem.present(lo, hi)
        budget -= sum(present)
        if budget < 0:
            return found
        p = lo
        while p < hi:
            n = chunk_at(mem, p, hi) if present[(p - lo) // PAGE] else 0
            if n:
                more.append((p, n))
            p += n or PAGE
    if sum(n for _, n in found + more) == expected_bytes and len(found) + len(more) == expected_count:
        return found + more
    return found


def snapshot(pid, max_walks=MAX_WALKS, between_walks=None):
    """The itemized RSS of process `pid` as a dict (the shape is in this module's docstring).
    Raises BadInput (exit 2) or Refused (exit 99). between_walks(): called between the two
    walks of the first pair (the safety test kills memstats there)."""
    t0 = time.monotonic()
    pid = check_pid(pid)
    notes = []
    vmas = read_smaps(pid)
    allocator = detect_allocator(vmas)
    libc = ld = None
    lv = find_library(vmas, r"^libc(\.so\.6|-[\d.]+\.so)$")
    if lv:
        path = readable_path(pid, lv.path)
        L = layouts(path, LIBC_QUERIES, notes)
        version = glibc_version(path)
        if L:
            libc = {"L": L, "base": lv.start, "version": version,
                    "safe_linking": version is None or version >= (2, 32)}
    else:
        notes.append("no glibc (libc.so.6) mapped: the heap and thread stacks are not itemized")
    dv = find_library(vmas, r"^ld-linux.*\.so")
    if dv and libc:
        L = layouts(readable_path(pid, dv.path), LD_QUERIES, notes)
        if L:  # struct pthread's layout is libc's
            ld = {"L": {**L, **{k: v for k, v in libc["L"].items() if k.startswith("pthread.")}}, "base": dv.start}
    mem = Mem(pid)
    try:
        # walk, read the mappings and pagemap, walk again: the figures stand when the two walks
        # around the reads agree; otherwise the second walk becomes the first of the next pair
        prev, result, settled, walks, last_error = None, None, False, 0, None
        deadline = t0 + WALK_BUDGET_S
        while walks < max_walks:
            walks += 1
            attempt_notes = list(notes)
            try:
                if prev is None:
                    prev = one_walk(mem, libc, ld, pid)
                    if between_walks and walks == 1:
                        between_walks()
                vmas = read_smaps(pid)
                candidate = itemize(mem, pid, vmas, rollup_rss(pid), prev, allocator, libc, attempt_notes)
                current = one_walk(mem, libc, ld, pid)
            except Torn as e:
                last_error, prev = str(e), None
                continue
            result, result_notes = candidate, attempt_notes
            if summary(prev) == summary(current):
                settled = True
                break
            prev = current
            if time.monotonic() > deadline:
                break
        if result is None:
            # Never one whole walk: itemize the mappings alone and say so.
            notes.append(f"the heap changed under every one of {walks} walks ({last_error}): "
                         "glibc's heap and stacks are not itemized")
            result = itemize(mem, pid, read_smaps(pid), rollup_rss(pid), {}, allocator, libc, notes)
        else:
            notes = result_notes
            if not settled:
                notes.append(f"the heap kept changing: no two consecutive of {walks} walks agreed; "
                             "the figures are from the last complete one")
    finally:
        mem.close()
    result.update(settled=settled, walks=walks, notes=notes, elapsed_s=round(time.monotonic() - t0, 3))
    first_keys = ("pid", "command", "allocator", "allocator_figures_from", "rss_bytes", "items", "go")
    return {**{k: result[k] for k in first_keys}, **{k: v for k, v in result.items() if k not in first_keys}}


def itemize(mem, pid, vmas, rss, walk, allocator, libc, notes):
    starts = [v.start for v in vmas]
    carved = {}          # vma index -> resident bytes claimed by a finer line
    items = {}

    def add(name, n):
        items[name] = items.get(name, 0) + n

    def claim(a, b, name, residency=None):
        """Resident bytes of [a, b) go to `name`, taken out of the mappings they lie in."""
        i = max(bisect.bisect_right(starts, a) - 1, 0)
        total = 0
        while i < len(vmas) and vmas[i].start < b:
            lo, hi = max(a, vmas[i].start), min(b, vmas[i].end)
            if lo < hi:
                n = residency.bytes(lo, hi) if residency else mem.resident(lo, hi)
                carved[i] = carved.get(i, 0) + n
                total += n
            i += 1
        add(name, total)
        return total

    def vma_of(addr):
        i = bisect.bisect_right(starts, addr) - 1
        return i if i >= 0 and addr < vmas[i].end else None

    heap_vmas, stack_vmas = set(), set()
    heap_ranges = []     # arena heaps and mmapped chunks: a user stack (pthread_attr_setstack)
                         # carved out of the heap stays heap, never counted twice
    result = {"pid": pid, "command": comm(pid), "allocator": allocator, "rss_bytes": rss}
    go = {}
    g = walk.get("glibc")
    if g is not None and not g["arenas"] and not g["mmapped_mem"]:
        g = None  # glibc's malloc never used (tcmalloc or jemalloc took its place)
    if g is not None:
        arenas, in_use_total, free_total, free_res_total = [], 0, 0, 0
        for a in g["arenas"]:
            free_b = sum(size for _, size, _ in a["free"])
            free_res = region_res = 0
            for lo, hi in a["regions"]:
                res = Residency(mem, lo, hi)
                region_res += claim(lo, hi, ITEM_IN_USE, res)
                free_res += sum(res.bytes(p, p + size) for p, size, _ in a["free"] if lo <= p < hi)
                heap_vmas.update(i for i in (vma_of(lo), vma_of(hi - 1)) if i is not None)
                heap_ranges.append((lo, hi))
            in_use = a["system_mem"] - free_b  # as mallinfo2's uordblks: tcache chunks are in use
            items[ITEM_IN_USE] -= free_res
            add(ITEM_FREE_RESIDENT, free_res)
            in_use_total += in_use
            free_total += free_b
            free_res_total += free_res
            by_kind = {k: sum(s for _, s, kk in a["free"] if kk == k) for k in ("top", "bin", "fastbin")}
            arenas.append({"address": hex(a["address"]), "main": a["main"],
                           "heaps": [[hex(lo), hi - lo] for lo, hi in a["regions"]],
                           "system_mem": a["system_mem"], "in_use_bytes": in_use, "free_bytes": free_b,
                           "top_bytes": by_kind["top"], "bin_bytes": by_kind["bin"],
                           "fastbin_bytes": by_kind["fastbin"],
                           "free_chunks": len(a["free"]), "free_resident_bytes": free_res,
                           "free_not_resident_bytes": free_b - free_res, "resident_bytes": region_res})
            if a["main"] and a["flags"] & NONCONTIGUOUS_BIT:
                notes.append("main_arena is non-contiguous (sbrk failed once): its mmapped parts are "
                             "counted from sbrk_base to top only")
        claimed_vma = lambda addr: vma_of(addr) in heap_vmas or vma_of(addr) in stack_vmas  # noqa: E731
        # stacks first, so that mmapped chunks are not looked for in them
        thread_lists = walk.get("threads") or {}
        stack_ranges = {k: [(b, b + s) for b, s in v if b] for k, v in thread_lists.items()}
        # (user stacks are not skipped: one may be a malloc'ed, mmapped chunk)
        for lo, hi in stack_ranges.get("used", []) + stack_ranges.get("cache", []):
            stack_vmas.update(i for i in (vma_of(lo), vma_of(hi - 1)) if i is not None)
        chunks = mmapped_chunks(mem, vmas, claimed_vma, g["mmapped_mem"], g["n_mmaps"])
        found = sum(s for _, s in chunks)
        mm_res = sum(claim(p, p + s, ITEM_IN_USE) for p, s in chunks)
        heap_ranges.extend((p, p + s) for p, s in chunks)
        if found != g["mmapped_mem"]:
            notes.append(f"mmapped chunks: glibc counts {g['mmapped_mem']} bytes in {g['n_mmaps']}, "
                         f"{found} bytes found; the rest stays in 'other anonymous'")
        go.update(HeapInuse=in_use_total + g["mmapped_mem"], HeapIdle=free_total,
                  HeapReleased=free_total - free_res_total,
                  HeapSys=sum(a["system_mem"] for a in g["arenas"]) + g["mmapped_mem"])
        mi = (walk.get("agent") or {}).get("mallinfo2")
        if isinstance(mi, dict) and "libc.so" in str(mi.get("from")):
            agent_in_use = mi.get("uordblks", 0) + mi.get("hblkhd", 0)
            walked = in_use_total + g["mmapped_mem"]
            if abs(agent_in_use - walked) > 0.01 * max(walked, 1):
                notes.append(f"the allocstats agent's mallinfo2 says {agent_in_use} bytes in use, the walk "
                             f"{walked} (read at different moments)")
        result["glibc"] = {"version": ".".join(map(str, libc["version"])) if libc["version"] else None,
                           "arenas": arenas, "in_use_bytes": in_use_total + g["mmapped_mem"],
                           "arena_in_use_bytes": in_use_total, "free_bytes": free_total,
                           "free_resident_bytes": free_res_total,
                           "free_not_resident_bytes": free_total - free_res_total,
                           "mmapped": {"bytes": g["mmapped_mem"], "count": g["n_mmaps"], "found_bytes": found,
                                       "found_count": len(chunks), "resident_bytes": mm_res}}
    else:
        result["glibc"] = None
    heap_ranges.sort()

    def in_heap(lo, hi):
        i = bisect.bisect_right(heap_ranges, (lo, float("inf"))) - 1
        return i >= 0 and heap_ranges[i][1] > lo or (i + 1 < len(heap_ranges) and heap_ranges[i + 1][0] < hi)

    threads = walk.get("threads")
    stacks = {"live": 0, "cached": 0, "live_bytes": 0, "cached_bytes": 0, "in_heap": 0}
    if threads is not None:
        for lo, hi in [(b, b + s) for b, s in threads["used"] + threads["user"] if b]:
            if in_heap(lo, hi):
                stacks["in_heap"] += 1  # its bytes are in the heap line already
                continue
            stacks["live_bytes"] += claim(lo, hi, ITEM_STACKS)
            stacks["live"] += 1
        for lo, hi in [(b, b + s) for b, s in threads["cache"] if b]:
            stacks["cached_bytes"] += claim(lo, hi, ITEM_CACHED)
            stacks["cached"] += 1
        add(ITEM_CACHED, 0)
    result["stacks"] = stacks
    # the rest, mapping by mapping
    exec_paths = {v.path for v in vmas if v.path.startswith("/") and "x" in v.perms}
    agent = walk.get("agent")
    figures = agent_figures(agent, allocator) if allocator != "glibc" else None
    result["agent"] = agent
    result["allocator_figures_from"] = ("agent" if figures else None) if allocator != "glibc" else (
        "walk" if g is not None else None)
    other_anon = ITEM_ANON if allocator == "glibc" else f"allocator heap ({allocator}): not itemized"
    go_names = {**GO_NAMES, other_anon: "HeapSys-HeapReleased"} if allocator != "glibc" else GO_NAMES
    if allocator != "glibc" and not figures:
        why = walk.get("agent_note") if agent is None else f"the agent's answer has no {allocator} figures"
        notes.append(f"{allocator}'s own figures are not read from outside (docs/memstats.md): its heap is "
                     f"the anonymous memory outside thread stacks, libraries' data included ({why}); "
                     + AGENT_HINT)
    if figures:
        # the allocator's mappings are not told apart from other anonymous ones (no addresses
        # in its figures), but libraries' data (bss: the anonymous mapping right after a
        # library's file mapping) is, and stays "other anonymous"
        other_anon = f"allocator heap ({allocator})"
        ends = {v.end for v in vmas if v.path.startswith("/") and v.inode}
    main_stack = 0
    for i, v in enumerate(vmas):
        # Below zero only when finer lines claimed more of this mapping than smaps says is
        # resident (a page counted twice, or the target changed between the reads): that goes
        # to the remainder, where it shows, not into this mapping's line.
        left = max(v.rss - carved.get(i, 0), 0)
        if i in heap_vmas:
            name = ITEM_BEYOND
        elif v.path == "[heap]":
            name = ITEM_BEYOND if g is not None and g["arenas"] else other_anon
        elif v.path == "[stack]":
            name = ITEM_STACKS
            main_stack += left
        elif v.path.startswith("[v") or v.path in exec_paths:
            name = ITEM_CODE
        elif v.path.startswith(("/dev/shm/", "/memfd:", "/SYSV", "/dev/zero")) or (
                v.perms[3] == "s" and not (v.path.startswith("/") and v.inode)):
            name = ITEM_SHARED
        elif v.path.startswith("/") and v.inode:
            name = ITEM_FILE
        elif figures and not v.path and v.start in ends:
            name = ITEM_ANON
        else:
            name = other_anon
        add(name, left)
    stacks["live_bytes"] += main_stack
    agent_lines = []
    if figures:
        # the allocator's heap, itemized with its own figures; what its mappings hold beyond
        # them (or what the figures count but is not resident) shows in the remainder
        heap_resident = items.pop(other_anon, 0)
        in_use_item, free_item, meta_item, muzzy_item = agent_lines = alloc_items(allocator)
        # The figures count bytes mapped, not resident, and carry no addresses, so pagemap
        # cannot place them: what is measured is the resident bytes of the allocator's
        # mappings, handed to the figures in this order, each up to its own count: in use
        # (what a program allocated, it wrote), free (freed memory was in use once), muzzy,
        # metadata last (both allocators reserve metadata in large blocks touched as needed:
        # jemalloc counted 2.8 MB of it where all its mappings held 0.75 MB resident). The
        # part of a figure left without resident bytes was never touched or was returned
        # (below the line; for the free figure it is HeapReleased, as in Go); resident bytes
        # beyond all the figures are not the allocator's to claim: they stay in the remainder.
        in_use_res = min(figures["in_use"], heap_resident)
        free_res = min(figures["free_resident"], heap_resident - in_use_res)
        muzzy_res = min(figures["muzzy"], heap_resident - in_use_res - free_res)
        meta_res = min(figures["metadata"], heap_resident - in_use_res - free_res - muzzy_res)
        add(in_use_item, in_use_res)
        add(free_item, free_res)
        add(meta_item, meta_res)
        if allocator == "jemalloc":
            add(muzzy_item, muzzy_res)
        go_names = {**go_names, in_use_item: "HeapInuse", free_item: "HeapIdle-HeapReleased", meta_item: "MSpanSys"}
        free_not_res = figures["free_resident"] - free_res
        result[allocator] = {"figures": figures, "heap_resident_bytes": heap_resident,
                             "in_use_resident_bytes": in_use_res, "free_resident_bytes": free_res,
                             "free_not_resident_bytes": free_not_res, "metadata_resident_bytes": meta_res,
                             "muzzy_resident_bytes": muzzy_res,
                             "heap_resident_unexplained_bytes":
                                 heap_resident - in_use_res - meta_res - muzzy_res - free_res}
        go.update(HeapInuse=figures["in_use"], HeapIdle=figures["free_resident"] + figures["released"],
                  HeapReleased=figures["released"] + free_not_res,
                  HeapSys=figures["in_use"] + figures["free_resident"] + figures["released"],
                  MSpanSys=figures["metadata"])
        other_anon = None
    add(ITEM_REMAINDER, rss - sum(items.values()))
    order = [ITEM_IN_USE, ITEM_FREE_RESIDENT, ITEM_BEYOND, *agent_lines,
             other_anon if allocator != "glibc" else None,
             ITEM_STACKS, ITEM_CACHED, ITEM_CODE, ITEM_FILE, ITEM_SHARED, ITEM_ANON, ITEM_REMAINDER]
    keep_zero = {ITEM_REMAINDER, *agent_lines[:3]} | ({ITEM_IN_USE, ITEM_FREE_RESIDENT} if g is not None else set())
    result["items"] = [{"name": n, "bytes": items[n], "go": go_names.get(n)}
                       for n in dict.fromkeys(x for x in order if x) if n in items and (items[n] or n in keep_zero)]
    if g is not None:  # Go's HeapInuse counts the heap in use whether or not each page was touched
        result["items"][0]["go_bytes"] = go["HeapInuse"]
    elif figures:  # the allocator's count: handed out, touched or not (the remainder shows the difference)
        next(it for it in result["items"] if it["name"] == agent_lines[0])["go_bytes"] = figures["in_use"]
    if stacks["live"] or main_stack:
        go["StackInuse"] = stacks["live_bytes"]
    if threads is not None:
        go["StackCached"] = stacks["cached_bytes"]
    result["go"] = go
    also = [("AnonHugePages (inside the lines above)", sum(v.anon_huge for v in vmas), None),
            ("LazyFree: MADV_FREE'd, reclaimable (inside the lines above)", sum(v.lazyfree for v in vmas), None),
            ("swap (outside RSS)", sum(v.swap for v in vmas), None)]
    if g is not None:
        also[0:0] = [("heap in use, not resident: allocated, never touched (outside RSS)",
                      go["HeapInuse"] - items[ITEM_IN_USE], None),
                     ("heap free, not resident: returned or never touched (outside RSS)",
                      go["HeapReleased"], "HeapReleased")]
    elif figures:
        # jemalloc's purge counts, beside the released line they tell apart
        returned = [] if figures.get("purged") is None else [
            (f"heap returned so far: pages {allocator} purged since the start (its cumulative count; some may "
             "be in use again)", figures["purged"], None)]
        also[0:0] = [(f"heap in use, not resident ({allocator}'s count beyond its mappings' resident bytes)",
                      figures["in_use"] - result[allocator]["in_use_resident_bytes"], None),
                     (f"heap free, not resident: never touched, or returned ({allocator}'s free figure beyond "
                      "its mappings' resident bytes)", result[allocator]["free_not_resident_bytes"], None),
                     (f"allocator metadata, not resident ({allocator}'s count beyond its mappings' resident "
                      "bytes)", figures["metadata"] - result[allocator]["metadata_resident_bytes"], None),
                     (f"heap released ({allocator}: {ALLOC_RELEASED_WHAT[allocator]}), as {allocator} counts it "
                      "(outside RSS)", figures["released"], None),
                     *returned,
                     ("heap free not resident + heap released: Go's HeapReleased", go["HeapReleased"],
                      "HeapReleased")]
    result["also"] = [{"name": n, "bytes": b, "go": gname} for n, b, gname in also]
    return result


def comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


# ---- the command ----

def human(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def table(snap):
    rss = snap["rss_bytes"] or 1
    lines = [f"memstats of PID {snap['pid']} ({snap['command']}), allocator {snap['allocator']}: "
             f"RSS {human(snap['rss_bytes'])} ({snap['rss_bytes']:,} bytes)",
             f"  {'bytes':>15} {'RSS':>6}  {'Go name':<22} line"]
    for it in snap["items"]:
        lines.append(f"  {it['bytes']:>15,} {100 * it['bytes'] / rss:>5.1f}%  {it['go'] or '-':<22} {it['name']}")
    lines.append("  not in the sum:")
    for it in snap["also"]:
        lines.append(f"  {it['bytes']:>15,} {'':>6}  {it['go'] or '-':<22} {it['name']}")
    g = snap.get("glibc")
    if g:
        lines.append(f"  glibc {g['version']}: {len(g['arenas'])} arenas, in use {g['in_use_bytes']:,} "
                     f"(mallinfo2 uordblks+hblkhd), free {g['free_bytes']:,} of which resident "
                     f"{g['free_resident_bytes']:,}; mmapped chunks {g['mmapped']['count']} "
                     f"({g['mmapped']['bytes']:,} bytes)")
    for name in ("tcmalloc", "jemalloc"):
        a = snap.get(name)
        if snap.get("allocator_figures_from") == "agent" and a:
            f = a["figures"]
            lines.append(f"  {name}'s own figures (allocstats agent, in-process): in use {f['in_use']:,}, free "
                         f"resident {f['free_resident']:,}, released {f['released']:,}, metadata "
                         f"{f['metadata']:,}; its mappings hold {a['heap_resident_bytes']:,} resident "
                         f"(beyond all its figures: {a['heap_resident_unexplained_bytes']:,}, in the remainder)")
    st = snap["stacks"]
    lines.append(f"  threads: {st['live']} live stacks from glibc's list (+ main), {st['cached']} cached")
    if not snap["settled"]:
        lines.append(f"  NOT SETTLED after {snap['walks']} pairs of walks: the heap kept changing")
    for note in snap["notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"  ({snap['elapsed_s']:.2f} s, {snap['walks']} walk pair(s))")
    return "\n".join(lines)


def add_arguments(p):
    p.add_argument("pid", metavar="PID", help="the process (any process you may read, leaklab's or not)")
    p.add_argument("--json", action="store_true", help="print one JSON object (rss_bytes, items, go, glibc, ...)")
    p.add_argument("--watch", metavar="SECONDS", type=float,
                   help="print a fresh snapshot every SECONDS until Ctrl-C, the target's exit or --count")
    p.add_argument("--count", metavar="N", type=int, default=1000,
                   help="with --watch: at most N snapshots (default 1000)")
    # For the safety test: pause between the first two walks, say so on stderr, wait for a line on stdin.
    p.add_argument("--pause-mid-walk", action="store_true", help=argparse.SUPPRESS)


EPILOG = ("Reads /proc/PID/smaps, mem and pagemap; never stops, traces or signals the target. glibc's "
          "layouts come from its debug information (libc6-dbg) through gdb run on the library file, "
          "cached per build-id. tcmalloc's and jemalloc's heaps are itemized when the program was started "
          "with LD_PRELOAD=liballocstats.so (the opt-in allocstats agent). exit codes: 0 printed, 2 bad "
          "PID (not a number, no such process, a thread "
          "id), 99 a read refused (the cause and remedy are printed). See docs/memstats.md.")


def pause_mid_walk():
    print("memstats: paused mid-walk", file=sys.stderr, flush=True)
    sys.stdin.readline()


def cmd_memstats(args):
    if args.watch is not None and not (0.05 <= args.watch <= 86400):
        print("leaklab memstats: --watch: SECONDS must be in [0.05, 86400]", file=sys.stderr)
        return EXIT_USAGE
    if args.count < 1:
        print("leaklab memstats: --count: N must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    rounds = args.count if args.watch is not None else 1
    try:
        for n in range(rounds):
            try:
                snap = snapshot(args.pid, between_walks=pause_mid_walk if args.pause_mid_walk else None)
            except BadInput as e:
                if n > 0:  # the watched process ended
                    print(f"leaklab memstats: process {args.pid} exited", file=sys.stderr)
                    return EXIT_OK
                raise
            if args.json:
                print(json.dumps(snap), flush=True)
            else:
                if args.watch is not None and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")
                print(table(snap), flush=True)
            if n + 1 < rounds:
                time.sleep(args.watch)
    except BadInput as e:
        print(f"leaklab memstats: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Refused as e:
        print(f"leaklab memstats: {e}", file=sys.stderr)
        return EXIT_SYSTEM
    except KeyboardInterrupt:
        # nothing to undo in the target: it was never stopped or attached
        if args.watch is not None:
            return EXIT_OK
        print("leaklab memstats: interrupted before the snapshot was complete", file=sys.stderr)
        return EXIT_SYSTEM
    except BrokenPipeError:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return EXIT_OK
    return EXIT_OK


def main(argv=None):
    p = argparse.ArgumentParser(prog="leaklab memstats", epilog=EPILOG)
    add_arguments(p)
    return cmd_memstats(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
