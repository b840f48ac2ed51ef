/* analyze.c - which blocked threads can never run again: GOLF's marking
 * (Go's goroutineleak profile) on a stopped C process.
 *
 * The rule, and why it is sound (docs/orphans.md has the long version):
 *
 * Roots are what a thread that can run could read without first reading
 * memory that is not a root: every readable, writable mapping (the data and
 * bss of every loaded object, anonymous mappings the program made, shared
 * memory), minus
 *   - malloc's memory (arena heaps, mmap()ed chunks, the brk area): blocks
 *     are reached through pointers to them, and free chunks hold only stale
 *     words;
 *   - every thread stack block, the dead stacks glibc caches included; a
 *     live thread's region [SP - 128, end of its descriptor) comes back as
 *     a root when the thread can run;
 *   - liborphans' own bookkeeping.
 * A runnable thread adds its live stack region and its registers (general
 * purpose and XMM). The caller adds its stack above its entry into
 * orphans_find() and the registers it saved there.
 *
 * Marking is conservative: any aligned word whose value falls inside a heap
 * block (interior pointers included; one past the end not, as in
 * LeakSanitizer: glibc's free lists point there) marks that block,
 * whose contents are then scanned in turn. A word pointing into a blocked
 * thread's stack region (its frames or static TLS) makes that whole region
 * a root: a C program can only reach another thread's locals through a
 * pointer the program published, and from one address in a frame it may
 * reach the rest of it. A word pointing into a thread descriptor (struct
 * pthread) is not followed: the dynamic loader links every descriptor into
 * its lists, and a descriptor holds the thread's start argument, its
 * thread-specific data and glibc's cleanup buffers pointing into its
 * frames; none of these can be reached through the pthread API by another
 * thread (pthread_t is only a handle), so following them would make every
 * thread's wait object look reachable (Go's runtime hides its sudogs' wait
 * pointers from the marker for the same reason). The one exception is the
 * value a finished, unjoined thread returned: pthread_join hands it out, so
 * the descriptor of every exited, unjoined thread is a root.
 *
 * Blocked: a thread stopped at an untimed, process-private FUTEX_WAIT(_BITSET)
 * whose word still holds the expected value (world.c says why that is read
 * soundly). Anything else runs. Its wait object is then
 *   - in a heap block: reachable when the block is marked;
 *   - in a thread's live stack region: reachable when that region is a
 *     root (its owner can run, or a pointer into it was found);
 *   - the tid word of a descriptor (pthread_join): reachable when the joined
 *     thread can run (only it can end, and so wake its joiner);
 *   - anywhere else (a global, an unknown place): reachable.
 * A blocked thread whose object becomes reachable is wakeable: its region
 * and registers become roots, and marking goes on to a fixed point. The
 * blocked threads left are leaked. Last, marking from each leaked thread in
 * turn finds what only they keep alive: the bytes they pin. */

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <linux/futex.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

enum { RED_ZONE = 128, PAGE = 4096 };

/* ---- the mappings -------------------------------------------------------------- */

enum map_kind { MAP_ANON, MAP_FILE, MAP_HEAP, MAP_STACK, MAP_SPECIAL, MAP_DEVICE };

typedef struct map {
    uintptr_t lo, hi;
    bool r, w;
    int kind;
    char name[48];  /* the path's last component, for explain=1 */
} map;

static or_vec maps; /* sorted: /proc/self/maps is */

static bool read_maps(void)
{
    maps.elem = sizeof(map);
    maps.len = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[65536];
    char line[4352];
    size_t used = 0;
    bool ok = true;
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            ok = got == 0;
            break;
        }
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] != '\n') {
                if (used < sizeof line - 1)
                    line[used++] = buf[i];
                continue;
            }
            line[used] = '\0';
            used = 0;
            map m = {0};
            char perms[8] = "", path[4096] = "";
            unsigned long lo, hi;
            if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %4095[^\n]", &lo, &hi, perms, path) < 3)
                continue;
            m.lo = lo, m.hi = hi;
            m.r = perms[0] == 'r';
            m.w = perms[1] == 'w';
            const char *p = path;
            while (*p == ' ')
                p++;
            if (*p == '\0' || strncmp(p, "[anon:", 6) == 0)
                m.kind = MAP_ANON;
            else if (strcmp(p, "[heap]") == 0)
                m.kind = MAP_HEAP;
            else if (strcmp(p, "[stack]") == 0)
                m.kind = MAP_STACK;
            else if (p[0] == '[')
                m.kind = MAP_SPECIAL; /* [vvar], [vdso], [vsyscall], [uprobes] */
            else if (strncmp(p, "/dev/", 5) == 0 && strncmp(p, "/dev/shm/", 9) != 0 && strncmp(p, "/dev/zero", 9) != 0)
                m.kind = MAP_DEVICE; /* reading device memory may have side effects */
            else if (strncmp(p, "anon_inode:", 11) == 0 && strcmp(p, "anon_inode:[io_uring]") != 0)
                m.kind = MAP_DEVICE; /* a kernel object's memory (perf, kvm, a driver's buffers): its
                                      * fault handler is the driver's; io_uring's rings are plain
                                      * memory holding the program's requests (user_data), a root */
            else
                m.kind = MAP_FILE;
            const char *base = strrchr(p, '/');
            snprintf(m.name, sizeof m.name, "%s", base ? base + 1 : *p ? p : "anonymous");
            if (!or_vec_push(&maps, &m)) {
                ok = false;
                break;
            }
        }
        if (!ok)
            break;
    }
    close(fd);
    return ok;
}

static const map *map_of(uintptr_t a)
{
    size_t lo = 0, hi = maps.len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const map *m = &OR_AT(maps, map, mid);
        if (a < m->lo)
            hi = mid;
        else if (a >= m->hi)
            lo = mid + 1;
        else
            return m;
    }
    return NULL;
}

/* [a, a+n) lies in readable mappings (contiguous ones may chain). */
static bool readable(uintptr_t a, size_t n)
{
    uintptr_t end = a + n;
    if (end < a)
        return false;
    while (a < end) {
        const map *m = map_of(a);
        if (!m || !m->r || m->kind == MAP_DEVICE || m->kind == MAP_SPECIAL)
            return false;
        a = m->hi;
    }
    return true;
}

/* ---- faults while scanning ------------------------------------------------------- */
/* A file mapped past its end raises SIGBUS; the world is stopped, so the
 * analysing thread may own SIGSEGV/SIGBUS for the duration. */

static __thread sigjmp_buf *fault_jump;
static __thread uintptr_t fault_address;
static struct sigaction old_segv, old_bus;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (!fault_jump) { /* not ours: give it back to whoever had it */
        sigaction(sig, sig == SIGSEGV ? &old_segv : &old_bus, NULL);
        return;
    }
    fault_address = (uintptr_t)si->si_addr;
    siglongjmp(*fault_jump, 1);
}

static void guard_faults(bool on)
{
    if (on) {
        struct sigaction sa = {0};
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
    } else {
        sigaction(SIGSEGV, &old_segv, NULL);
        sigaction(SIGBUS, &old_bus, NULL);
    }
}

/* ---- the marking ------------------------------------------------------------------ */

enum { WHITE = 0, LIVE = 1, PINNED = 2 };

typedef struct interval {
    uintptr_t lo, hi;
    size_t thread;
    bool descriptor; /* [pd, pd + sizeof(struct pthread)) */
} interval;

typedef struct marker {
    or_analysis *a;
    const or_block *blocks;
    size_t nblocks;
    uint8_t *color;
    uintptr_t heap_lo, heap_span;
    or_vec intervals;       /* sorted, disjoint */
    uintptr_t stack_lo, stack_span;
    or_vec work;            /* size_t: block index, or thread index | THREAD_BIT */
    uint8_t paint;          /* LIVE or PINNED */
    uintptr_t alloc_data[4][2]; /* the allocator's own writable data (glibc: main_arena's free lists) */
    size_t nalloc_data;
    uintptr_t *from;        /* explain=1: per block, the address of the word that first marked it */
    uint32_t *dtv_of;       /* per block: 1 + the thread whose TLS vector (dtv) it is, or 0 */
    size_t scanning_dtv_of; /* while scanning a dtv: its thread, whose region it may not open */
    size_t painted_bytes, painted_blocks;
} marker;

#define THREAD_BIT ((size_t)1 << 63)

static or_thread *thread_at(marker *m, size_t i) { return &OR_AT(m->a->threads, or_thread, i); }

static ssize_t block_of(const marker *m, uintptr_t v)
{
    size_t lo = 0, hi = m->nblocks;
    while (lo < hi) { /* last block with addr <= v */
        size_t mid = (lo + hi) / 2;
        if (m->blocks[mid].addr <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return -1;
    /* Interior pointers count; one past the end does not: glibc's free lists
     * (main_arena's bins, in libc's data) point at the next chunk's header,
     * which is exactly one past the end of the block before it. */
    const or_block *b = &m->blocks[lo - 1];
    return v < b->addr + (b->size ? b->size : 1) ? (ssize_t)(lo - 1) : -1;
}

static const interval *interval_of(const marker *m, uintptr_t v)
{
    size_t lo = 0, hi = m->intervals.len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const interval *in = &OR_AT(m->intervals, interval, mid);
        if (v < in->lo)
            hi = mid;
        else if (v >= in->hi)
            lo = mid + 1;
        else
            return in;
    }
    return NULL;
}

static void push(marker *m, size_t item)
{
    if (!or_vec_push(&m->work, &item))
        m->a->status = ORPHANS_ERROR; /* out of memory: reported as an error, never as a result */
}

/* The holder of a value found in thread i's registers (explain=1). */
#define REGS_HOLDER(i) (~(uintptr_t)0 - (i))

/* glibc's chunk header after block b (mem2chunk(p) + request2size(size)): a
 * request of 8 mod 16 bytes ends 8 bytes into the next chunk, whose header
 * main_arena's free lists point at. */
static bool malloc_bookkeeping(const marker *m, const or_block *b, uintptr_t v, uintptr_t holder)
{
    size_t request = (b->size + sizeof(size_t) + 15) & ~(size_t)15;
    if (request < 32)
        request = 32;
    if (v != b->addr - 2 * sizeof(size_t) + request)
        return false;
    for (size_t i = 0; i < m->nalloc_data; i++)
        if (holder >= m->alloc_data[i][0] && holder < m->alloc_data[i][1])
            return true;
    return false;
}

static inline void consider(marker *m, uintptr_t v, uintptr_t holder)
{
    if (v - m->heap_lo < m->heap_span) {
        ssize_t b = block_of(m, v);
        if (b >= 0 && m->color[b] == WHITE && !malloc_bookkeeping(m, &m->blocks[b], v, holder)) {
            m->color[b] = m->paint;
            if (m->from)
                m->from[b] = holder;
            m->painted_bytes += m->blocks[b].size;
            m->painted_blocks++;
            push(m, (size_t)b);
        }
    }
    if (v - m->stack_lo < m->stack_span) {
        const interval *in = interval_of(m, v);
        if (!in)
            return;
        or_thread *t = thread_at(m, in->thread);
        if (in->descriptor) {
            if (v == t->pd && m->paint == LIVE)
                t->handle_seen = true; /* a pthread_t: join, signal or cancel it */
        } else if (!t->region_root && in->thread != m->scanning_dtv_of) {
            /* (a thread's dtv points into its own static TLS: glibc's, like the descriptor) */
            t->region_root = true;
            t->touched_from = holder;
            push(m, in->thread | THREAD_BIT);
        }
    }
}

/* /proc/self/pagemap, open during the analysis: a page neither present nor
 * swapped out was never written, reads as zeros, and holds no pointer, so a
 * large range skips it instead of faulting the zero page in (measured: most
 * of the marking's CPU time on blocked_workers' half-written buffers). */
static int pagemap_fd = -1;

static void scan_words_in(marker *m, uintptr_t lo, uintptr_t hi);

static void scan_paged(marker *m, uintptr_t lo, uintptr_t hi, bool always);

static void scan(marker *m, uintptr_t lo, uintptr_t hi) { scan_paged(m, lo, hi, false); }

/* A root mapping is read only where its pages are present (or swapped):
 * a page that is not may be served by a userfaultfd handler or a FUSE
 * daemon, and reading it would wait for them, with the world stopped,
 * possibly forever (the thread that serves the faults is stopped too). */
static void scan_root(marker *m, uintptr_t lo, uintptr_t hi) { scan_paged(m, lo, hi, true); }

static void scan_paged(marker *m, uintptr_t lo, uintptr_t hi, bool always)
{
    lo = (lo + 7) & ~(uintptr_t)7;
    hi &= ~(uintptr_t)7;
    if (pagemap_fd < 0 || (!always && hi - lo < 16 * PAGE)) {
        scan_words_in(m, lo, hi);
        return;
    }
    while (lo < hi) {
        uint64_t entries[512];
        uintptr_t first = lo / PAGE;
        size_t pages = ((hi - 1) / PAGE) - first + 1;
        if (pages > 512)
            pages = 512;
        ssize_t got = pread(pagemap_fd, entries, pages * sizeof entries[0], (off_t)(first * sizeof entries[0]));
        if (got < (ssize_t)sizeof entries[0]) {
            scan_words_in(m, lo, hi); /* cannot tell: scan it all (unsound otherwise) */
            return;
        }
        pages = (size_t)got / sizeof entries[0];
        for (size_t i = 0; i < pages && lo < hi; i++) {
            uintptr_t page_end = (first + i + 1) * PAGE;
            uintptr_t end = page_end < hi ? page_end : hi;
            if (entries[i] & ((1ULL << 63) | (1ULL << 62))) /* present, or swapped */
                scan_words_in(m, lo, end);
            lo = end;
        }
    }
}

static void scan_words_in(marker *m, uintptr_t from, uintptr_t hi)
{
    volatile uintptr_t cursor = from; /* survives a siglongjmp from on_fault */
    sigjmp_buf jb;
    if (sigsetjmp(jb, 0)) {
        /* skip the page that faulted */
        fault_jump = NULL;
        uintptr_t next = (fault_address & ~(uintptr_t)(PAGE - 1)) + PAGE;
        uintptr_t at = cursor;
        cursor = next > at ? next : (at & ~(uintptr_t)(PAGE - 1)) + PAGE;
    }
    while (cursor < hi) {
        uintptr_t lo = cursor;
        uintptr_t chunk_end = hi - lo > (1u << 16) ? lo + (1u << 16) : hi;
        fault_jump = &jb;
        for (const uintptr_t *p = (const uintptr_t *)lo, *e = (const uintptr_t *)chunk_end; p < e; p++)
            consider(m, *p, (uintptr_t)p);
        fault_jump = NULL;
        cursor = chunk_end;
    }
}

static void scan_words(marker *m, const uint64_t *w, size_t n, uintptr_t holder)
{
    for (size_t i = 0; i < n; i++)
        consider(m, (uintptr_t)w[i], holder);
}

static void drain(marker *m)
{
    while (m->work.len && m->a->status != ORPHANS_ERROR) {
        size_t item = OR_AT(m->work, size_t, --m->work.len);
        if (item & THREAD_BIT) {
            const or_thread *t = thread_at(m, item & ~THREAD_BIT);
            scan(m, t->lo, t->hi);
        } else {
            const or_block *b = &m->blocks[item];
            m->scanning_dtv_of = m->dtv_of[item] ? m->dtv_of[item] - 1 : SIZE_MAX;
            scan(m, b->addr, b->addr + ((b->size + 7) & ~(size_t)7));
            m->scanning_dtv_of = SIZE_MAX;
        }
    }
}

/* A thread's live region (if not yet) and its registers, as roots. */
static void thread_roots(marker *m, size_t i)
{
    or_thread *t = thread_at(m, i);
    if (!t->region_root) {
        t->region_root = true;
        push(m, i | THREAD_BIT);
    }
    if (!t->regs_root && t->slot) {
        t->regs_root = true;
        scan_words(m, t->slot->gregs, 16, REGS_HOLDER(i)); /* R8 ... RSP; not RIP and the flags */
        scan_words(m, t->slot->xmm, OR_NXMM, REGS_HOLDER(i));
    }
}

/* ---- sorting -------------------------------------------------------------------------- */

static bool sort_blocks(or_block *b, size_t n)
{
    if (n < 2)
        return true;
    or_block *tmp = or_map(n * sizeof *tmp);
    if (!tmp)
        return false;
    or_block *src = b, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 16) {
        size_t count[65537] = {0};
        for (size_t i = 0; i < n; i++)
            count[((src[i].addr >> shift) & 0xffff) + 1]++;
        for (size_t d = 0; d < 65536; d++)
            count[d + 1] += count[d];
        for (size_t i = 0; i < n; i++)
            dst[count[(src[i].addr >> shift) & 0xffff]++] = src[i];
        or_block *t = src;
        src = dst;
        dst = t;
    }
    /* four passes: the result is back in b */
    or_unmap(tmp, n * sizeof *tmp);
    return true;
}

static int cmp_interval(const void *x, const void *y)
{
    const interval *a = x, *b = y;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* Ranges [lo, hi) as pairs; sorts and merges in place, returns the count. */
typedef struct range {
    uintptr_t lo, hi;
} range;

static void sort_ranges(range *r, size_t n)
{
    for (size_t i = 1; i < n; i++) { /* shell sort: no malloc, no qsort */
        (void)0;
    }
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++) {
            range x = r[i];
            size_t j = i;
            for (; j >= gap && r[j - gap].lo > x.lo; j -= gap)
                r[j] = r[j - gap];
            r[j] = x;
        }
}

static void sort_intervals(interval *v, size_t n)
{
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++) {
            interval x = v[i];
            size_t j = i;
            for (; j >= gap && cmp_interval(&v[j - gap], &x) > 0; j -= gap)
                v[j] = v[j - gap];
            v[j] = x;
        }
}

static size_t merge_ranges(range *r, size_t n)
{
    sort_ranges(r, n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].hi <= r[i].lo)
            continue;
        if (k && r[i].lo <= r[k - 1].hi) {
            if (r[i].hi > r[k - 1].hi)
                r[k - 1].hi = r[i].hi;
        } else {
            r[k++] = r[i];
        }
    }
    return k;
}

/* ---- classifying the threads ------------------------------------------------------------ */

static bool at_syscall(const or_slot *s)
{
    uintptr_t rip = s->gregs[REG_RIP];
    if (!readable(rip, 2))
        return false;
    const unsigned char *insn = (const unsigned char *)rip;
    return insn[0] == 0x0f && insn[1] == 0x05;
}

/* Whether pthread_cancel would end thread t where it waits now: cancellation
 * enabled, and t inside a cancellation point (or in asynchronous mode).
 * glibc before 2.41 switched a thread to asynchronous cancellation around
 * each blocking cancellation point (__pthread_enable_asynccancel), so the
 * type bit said it. glibc 2.41 ([BZ 12683], "Race conditions in pthread
 * cancellation") leaves the type alone: every cancellable syscall goes
 * through __syscall_cancel_arch, whose single syscall instruction the
 * SIGCANCEL handler recognises by address. That symbol is hidden, so orphans
 * recognises its code instead: the instruction before the syscall is
 * `mov %r11,0x8(%rsp)`, storing the &pd->cancelhandling it was called with
 * (__internal_syscall_cancel calls it only with cancellation enabled). A
 * thread stopped there (at_syscall: the restarted syscall) with that very
 * address at sp + 8 waits in a cancellation point. */
static bool cancellable_now(const or_glibc *g, const or_thread *t)
{
    enum { CANCELSTATE_DISABLE = 1, CANCELTYPE_ASYNC = 2 };
    uintptr_t handling = t->pd + g->off_cancelhandling;
    uint32_t ch = 0;
    memcpy(&ch, (const void *)handling, sizeof ch);
    if (!t->handle_seen || (ch & CANCELSTATE_DISABLE))
        return false;
    if (ch & CANCELTYPE_ASYNC)
        return true; /* glibc < 2.41 inside a cancellation point, or asynchronous by choice */
    const or_slot *s = t->slot;
    if (!s || s->at_safe_point || s->on_altstack || !at_syscall(s))
        return false;
    static const unsigned char mov_r11_to_sp8[5] = {0x4c, 0x89, 0x5c, 0x24, 0x08};
    uintptr_t rip = s->gregs[REG_RIP], sp = s->gregs[REG_RSP];
    if (!readable(rip - sizeof mov_r11_to_sp8, sizeof mov_r11_to_sp8) ||
        memcmp((const void *)(rip - sizeof mov_r11_to_sp8), mov_r11_to_sp8, sizeof mov_r11_to_sp8) != 0 ||
        !readable(sp + 8, sizeof(uintptr_t)))
        return false;
    uintptr_t saved;
    memcpy(&saved, (const void *)(sp + 8), sizeof saved);
    return saved == handling; /* glibc >= 2.41: in __syscall_cancel_arch */
}

/* The futex word a thread waits on without a timeout, or 0 (runnable). */
static uintptr_t futex_wait_of(const or_slot *s, bool *shared)
{
    if (s->at_safe_point || s->on_altstack || !at_syscall(s))
        return 0;
    if ((long)s->gregs[REG_RAX] != SYS_futex)
        return 0;
    int op = (int)s->gregs[REG_RSI];
    int cmd = op & FUTEX_CMD_MASK;
    if ((cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET) || s->gregs[REG_R10] != 0)
        return 0; /* another operation, or a timeout: it will return by itself */
    uintptr_t word = s->gregs[REG_RDI];
    if ((word & 3) || !readable(word, 4))
        return 0;
    uint32_t now;
    memcpy(&now, (const void *)word, sizeof now);
    if (now != (uint32_t)s->gregs[REG_RDX])
        return 0; /* the word changed: the restarted wait returns at once */
    *shared = (op & FUTEX_PRIVATE_FLAG) == 0;
    return word;
}

/* The stopped threads by descriptor address: sorted (pd, index) pairs. */
typedef struct pd_index {
    uintptr_t pd;
    size_t thread;
} pd_index;

static or_vec by_pd;

static void index_pds(const or_analysis *a)
{
    by_pd.len = 0;
    for (size_t i = 0; i < a->threads.len; i++) {
        pd_index e = {OR_AT(a->threads, or_thread, i).pd, i};
        if (!or_vec_push(&by_pd, &e))
            return;
    }
    pd_index *v = by_pd.data;
    size_t n = by_pd.len;
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++) {
            pd_index x = v[i];
            size_t j = i;
            for (; j >= gap && v[j - gap].pd > x.pd; j -= gap)
                v[j] = v[j - gap];
            v[j] = x;
        }
}

/* The thread whose descriptor is pd, or not_found; *dup when two share it. */
static size_t thread_by_pd(uintptr_t pd, size_t not_found, bool *dup)
{
    size_t lo = 0, hi = by_pd.len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (OR_AT(by_pd, pd_index, mid).pd < pd)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == by_pd.len || OR_AT(by_pd, pd_index, lo).pd != pd)
        return not_found;
    if (dup)
        *dup = lo + 1 < by_pd.len && OR_AT(by_pd, pd_index, lo + 1).pd == pd;
    return OR_AT(by_pd, pd_index, lo).thread;
}

/* ---- explain=1: why a blocked thread can run ------------------------------------------ */

static void say(or_analysis *a, const char *fmt, ...)
{
    if (!a->explained) {
        a->explained_cap = 1 << 16;
        a->explained = or_map(a->explained_cap);
        if (!a->explained)
            return;
    }
    size_t used = strlen(a->explained);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->explained + used, a->explained_cap - used, fmt, ap); /* no malloc for these formats */
    va_end(ap);
}

static const char *kind_text(int kind)
{
    switch (kind) {
    case MAP_ANON: return "anonymous mapping";
    case MAP_FILE: return "data of";
    default: return "mapping";
    }
}

static void explain_thread(marker *m, size_t i)
{
    or_analysis *a = m->a;
    const or_thread *t = thread_at(m, i);
    say(a, "orphans: thread %d (futex %#lx) can be woken:", (int)t->tid, (unsigned long)t->futex);
    if (t->wait == OR_WAIT_JOIN) {
        say(a, " it joins thread %d, which can run\n", (int)thread_at(m, t->target)->tid);
        return;
    }
    if (t->wait == OR_WAIT_OTHER) {
        say(a, " its futex word is in no heap block or thread stack (a global, or unknown)\n");
        return;
    }
    if (t->wait == OR_WAIT_SHARED) {
        say(a, " it waits on a process-shared futex, which another process may wake\n");
        return;
    }
    uintptr_t addr = t->futex;
    for (int depth = 0; depth < 24; depth++) {
        if (addr >= REGS_HOLDER(a->threads.len - 1)) {
            say(a, " <- registers of thread %d\n", (int)thread_at(m, REGS_HOLDER(0) - addr)->tid);
            return;
        }
        ssize_t b = block_of(m, addr);
        if (b >= 0) {
            say(a, " <- heap block %#lx (%zu bytes)", (unsigned long)m->blocks[b].addr, m->blocks[b].size);
            if (!m->from || !m->from[b]) {
                say(a, " <- ?\n");
                return;
            }
            say(a, " [word %#lx]", (unsigned long)m->from[b]);
            addr = m->from[b];
            continue;
        }
        const interval *in = interval_of(m, addr);
        if (in) {
            const or_thread *o = thread_at(m, in->thread);
            if (o->wait == OR_WAIT_NONE) {
                say(a, " <- stack of thread %d, which runs\n", (int)o->tid);
                return;
            }
            if (o->fate == OR_WAKEABLE && o->touched_from == 0) {
                say(a, " <- stack of thread %d, which can be woken\n", (int)o->tid);
                return;
            }
            say(a, " <- stack of blocked thread %d, pointed into [word %#lx]", (int)o->tid,
                (unsigned long)o->touched_from);
            addr = o->touched_from;
            continue;
        }
        const map *mp = map_of(addr);
        if (mp)
            say(a, " <- %s %s %#lx-%#lx\n", kind_text(mp->kind), mp->name, (unsigned long)mp->lo, (unsigned long)mp->hi);
        else
            say(a, " <- %#lx (not mapped)\n", (unsigned long)addr);
        return;
    }
    say(a, " <- ...\n");
}

/* ---- the leaked threads' stacks, for the report ----------------------------------------------- */

/* The report unwinds each leaked thread after the world is released
 * (unwinding calls dl_iterate_phdr, whose lock a stopped thread may hold).
 * By then a leaked thread cannot be woken, but it can still run: a
 * cancellation, a signal handler. So its live stack [sp, hi) is copied now,
 * while it is stopped; the report reads return addresses from the copy and
 * unwinds the live stack only after checking it still equals the copy.
 * At most STACK_COPIES_MAX bytes in all; beyond, a thread's stack is
 * reported unknown rather than read live unchecked. */
enum { STACK_COPIES_MAX = 256 << 20 };

static void copy_leaked_stacks(or_analysis *a)
{
    size_t total = 0;
    for (size_t i = 0; i < a->threads.len; i++) {
        or_thread *t = &OR_AT(a->threads, or_thread, i);
        t->copy_len = 0;
        if ((t->fate != OR_LEAKED && t->fate != OR_CANCELLABLE) || t->hi <= t->sp)
            continue;
        size_t len = t->hi - t->sp;
        if (total + len > STACK_COPIES_MAX)
            continue;
        t->copy_off = total;
        t->copy_len = len;
        total += len;
    }
    if (total == 0)
        return;
    a->stack_copies = or_map(total);
    if (!a->stack_copies) {
        for (size_t i = 0; i < a->threads.len; i++)
            OR_AT(a->threads, or_thread, i).copy_len = 0;
        return;
    }
    a->stack_copies_bytes = total;
    for (size_t i = 0; i < a->threads.len; i++) {
        const or_thread *t = &OR_AT(a->threads, or_thread, i);
        if (t->copy_len)
            memcpy(a->stack_copies + t->copy_off, (const void *)t->sp, t->copy_len);
    }
}

/* ---- the analysis ------------------------------------------------------------------------------ */

static int stop_and_settle(or_analysis *a, const void *uc, uintptr_t sp)
{
    for (unsigned attempt = 0;; attempt++) {
        if (or_world_stop(&a->world, a->cfg.stop_signal, a->cfg.stop_timeout_ms, uc, sp) != 0) {
            snprintf(a->why, sizeof a->why, "%s", a->world.why);
            return ORPHANS_ERROR;
        }
        a->settle_stops++;
        a->stop_total_ms += a->world.ms;
        a->stop_cpu_ms += a->world.cpu_ms;
        a->send_total_ms += a->world.send_ms;
        a->relist_total_ms += a->world.relist_ms;
        if (a->world.ms > a->stop_max_ms)
            a->stop_max_ms = a->world.ms;
        if (!a->world.complete) {
            snprintf(a->why, sizeof a->why, "%s", a->world.why);
            return ORPHANS_INCOMPLETE;
        }
        if (attempt >= a->cfg.settle_tries)
            return ORPHANS_NONE;
        /* A thread running in user space may be a step from blocking (between
         * a condition variable's unlock and its futex call): let it get there. */
        if (!read_maps())
            return ORPHANS_NONE;
        size_t running = 0;
        /* glibc's thread lists mid-update (a thread inside pthread_create or
         * exiting): their stacks could not be told apart; go round again. */
        or_vec probe = OR_VEC(or_pd);
        if (!or_glibc_threads(or_glibc_get(), &probe, readable))
            running++;
        or_vec_free(&probe);
        for (size_t i = 1; i < a->world.nslots; i++) {
            const or_slot *s = &a->world.slots[i];
            if (atomic_load(&s->state) == OR_SLOT_STOPPED && (s->at_safe_point || !at_syscall(s)))
                running++;
        }
        if (running == 0)
            return ORPHANS_NONE;
        or_world_resume(&a->world);
        struct timespec pause = {0, (long)(attempt + 1) * 2 * 1000 * 1000};
        double paused = or_now_ms();
        nanosleep(&pause, NULL);
        a->pause_ms += or_now_ms() - paused;
    }
}

int or_analyze(or_analysis *a, const void *caller_uc, uintptr_t caller_sp)
{
    double t0 = or_now_ms();
    a->threads = OR_VEC(or_thread);
    a->blocks = OR_VEC(or_block);
    maps = OR_VEC(map);
#if !defined(__x86_64__)
    snprintf(a->why, sizeof a->why, "orphans reads interrupted registers on x86-64 only");
    return a->status = ORPHANS_UNSUPPORTED;
#endif
    if (!or_heap_interposed()) {
        snprintf(a->why, sizeof a->why,
                 "liborphans is not this process's malloc (preload it, or link it ahead of libc), or its block table "
                 "ran out of memory: the heap's blocks are unknown");
        return a->status = ORPHANS_UNSUPPORTED;
    }
    or_glibc *g = (or_glibc *)or_glibc_get();
    if (!g->ok) {
        snprintf(a->why, sizeof a->why, "%s", g->why);
        return a->status = ORPHANS_UNSUPPORTED;
    }
    or_own_segments_init();
    uintptr_t alloc_data[4][2];
    size_t nalloc_data = or_object_writable(or_real_malloc_address(), alloc_data, 4);

    int st = stop_and_settle(a, caller_uc, caller_sp);
    a->stop_ms = a->world.ms;
    if (st != ORPHANS_NONE) {
        if (st == ORPHANS_INCOMPLETE)
            or_world_resume(&a->world);
        a->total_ms = or_now_ms() - t0;
        return a->status = st;
    }
    double tm = or_now_ms(), tc = or_cpu_ms();
    marker m = {.a = a, .paint = LIVE, .nalloc_data = nalloc_data};
    memcpy(m.alloc_data, alloc_data, sizeof alloc_data);
    m.intervals = OR_VEC(interval);
    m.work = OR_VEC(size_t);
    or_vec pds = OR_VEC(or_pd), excl = OR_VEC(range), roots = OR_VEC(range);
    a->status = ORPHANS_NONE;

    if (!read_maps()) {
        snprintf(a->why, sizeof a->why, "cannot read /proc/self/maps");
        a->status = ORPHANS_ERROR;
        goto resume;
    }

    /* The heap's blocks, sorted. */
    for (size_t want = or_heap_count() + 1024;;) {
        if (!or_vec_reserve(&a->blocks, want))
            goto oom;
        size_t n = or_heap_snapshot(a->blocks.data, a->blocks.cap);
        if (n <= a->blocks.cap) {
            a->blocks.len = n;
            break;
        }
        want = n;
    }
    if (!sort_blocks(a->blocks.data, a->blocks.len))
        goto oom;
    m.blocks = a->blocks.data;
    m.nblocks = a->blocks.len;
    m.color = or_map(m.nblocks + 1);
    if (!m.color)
        goto oom;
    if (a->cfg.explain && !(m.from = or_map((m.nblocks + 1) * sizeof *m.from)))
        goto oom;
    for (size_t i = 0; i < m.nblocks; i++) {
        a->heap_bytes += m.blocks[i].size;
    }
    a->heap_blocks = m.nblocks;
    a->table_bytes = or_heap_table_bytes();
    if (m.nblocks) {
        m.heap_lo = m.blocks[0].addr;
        m.heap_span = m.blocks[m.nblocks - 1].addr + m.blocks[m.nblocks - 1].size + 1 - m.heap_lo;
    }

    /* The threads. */
    pid_t pid = getpid();
    uintptr_t pd_list[4096], sp_list[4096];
    size_t nlearn = 0;
    for (size_t i = 0; i < a->world.nslots; i++) {
        const or_slot *s = &a->world.slots[i];
        int state = atomic_load(&s->state);
        if (state != OR_SLOT_STOPPED && state != OR_SLOT_SELF)
            continue;
        or_thread t = {.tid = s->tid, .pd = s->pd, .sp = s->gregs[REG_RSP], .slot = s};
        t.is_main = s->tid == pid;
        t.is_caller = state == OR_SLOT_SELF;
        if (!or_vec_push(&a->threads, &t))
            goto oom;
        if (!t.is_main && !s->on_altstack && nlearn < 4096) {
            pd_list[nlearn] = t.pd;
            sp_list[nlearn++] = t.sp;
        }
    }
    or_glibc_learn_stacks(g, pd_list, sp_list, nlearn, readable);
    bool lists = or_glibc_threads(g, &pds, readable);
    by_pd = OR_VEC(pd_index);
    index_pds(a);
    if (by_pd.len != a->threads.len)
        goto oom;
    /* Where each stopped thread's stack block is: from its own descriptor. */
    for (size_t i = 0; i < a->threads.len; i++) {
        or_thread *t = thread_at(&m, i);
        if (!t->is_main && !or_glibc_stack_block(g, t->pd, &t->block_lo, &t->block_hi, readable))
            t->block_lo = t->block_hi = 0;
    }

    /* Each thread's live region, and its whole block where known. */
    for (size_t i = 0; i < a->threads.len; i++) {
        or_thread *t = thread_at(&m, i);
        const map *sm = map_of(t->sp);
        bool pd_shared = false; /* a raw clone() sharing its creator's TLS */
        thread_by_pd(t->pd, SIZE_MAX, &pd_shared);
        if (t->is_main || pd_shared || t->slot->on_altstack) {
            t->lo = t->sp - (t->is_caller ? 0 : RED_ZONE);
            t->hi = sm ? sm->hi : t->sp;
            if (!t->is_main)
                t->pd = 0; /* no descriptor of its own to speak of */
        } else {
            t->lo = t->sp - (t->is_caller ? 0 : RED_ZONE); /* below the caller's entry: our own frames */
            t->hi = t->pd + g->sizeof_pthread;
        }
        if (!readable(t->lo, t->hi > t->lo ? t->hi - t->lo : 1) || t->hi <= t->lo) {
            /* The stack pointer is not where a stack should be: let the thread
             * count as runnable, and scan the whole mapping it is in. */
            t->lo = sm ? sm->lo : t->sp;
            t->hi = sm ? sm->hi : t->sp;
            t->slot = t->slot; /* registers stay roots below */
            t->wait = OR_WAIT_NONE;
        }
        interval in = {.lo = t->lo, .hi = t->pd && !t->is_main && t->pd > t->lo && t->pd < t->hi ? t->pd : t->hi,
                       .thread = i};
        if (!or_vec_push(&m.intervals, &in))
            goto oom;
        if (t->pd && !t->is_main && t->pd > t->lo && t->pd < t->hi) {
            interval d = {.lo = t->pd, .hi = t->hi, .thread = i, .descriptor = true};
            if (!or_vec_push(&m.intervals, &d))
                goto oom;
        }
    }
    sort_intervals(m.intervals.data, m.intervals.len);
    /* Each thread's TLS vector (tcbhead_t.dtv, at %fs:8, one entry into the block). */
    m.scanning_dtv_of = SIZE_MAX;
    m.dtv_of = or_map((m.nblocks + 1) * sizeof *m.dtv_of);
    if (!m.dtv_of)
        goto oom;
    for (size_t i = 0; i < a->threads.len; i++) {
        const or_thread *t = thread_at(&m, i);
        uintptr_t dtv = 0;
        if (t->pd && readable(t->pd + 8, 8))
            memcpy(&dtv, (const void *)(t->pd + 8), sizeof dtv);
        ssize_t db = dtv ? block_of(&m, dtv) : -1;
        if (db >= 0)
            m.dtv_of[db] = (uint32_t)(i + 1);
    }
    for (size_t i = 1; i < m.intervals.len; i++) /* overlapping regions: clip (conservative either way) */
        if (OR_AT(m.intervals, interval, i).lo < OR_AT(m.intervals, interval, i - 1).hi)
            OR_AT(m.intervals, interval, i - 1).hi = OR_AT(m.intervals, interval, i).lo;
    if (m.intervals.len) {
        m.stack_lo = OR_AT(m.intervals, interval, 0).lo;
        m.stack_span = OR_AT(m.intervals, interval, m.intervals.len - 1).hi - m.stack_lo;
    }

    /* What each thread waits on. */
    for (size_t i = 0; i < a->threads.len; i++) {
        or_thread *t = thread_at(&m, i);
        if (t->is_caller)
            continue;
        bool shared = false;
        uintptr_t word = futex_wait_of(t->slot, &shared);
        if (!word)
            continue;
        a->blocked++;
        t->futex = word;
        t->wait = OR_WAIT_OTHER;
        const interval *in = interval_of(&m, word);
        ssize_t b;
        if (in && in->descriptor) {
            const or_thread *owner = thread_at(&m, in->thread);
            if (word == owner->pd + g->off_tid && in->thread != i) {
                t->wait = OR_WAIT_JOIN; /* pthread_join waits for the kernel to clear the tid (a shared futex) */
                t->target = in->thread;
            }
        } else if (shared) {
            t->wait = OR_WAIT_SHARED; /* another process may wake it */
        } else if ((b = block_of(&m, word)) >= 0) {
            t->wait = OR_WAIT_HEAP;
            t->target = (size_t)b;
        } else if (in) {
            t->wait = OR_WAIT_STACK;
            t->target = in->thread;
        }
    }

    /* Exclusions from the roots: malloc's memory, stacks, ours. */
    uintptr_t brk_lo = 0, brk_hi = 0;
    for (size_t i = 0; i < maps.len; i++) {
        const map *mp = &OR_AT(maps, map, i);
        if (mp->kind == MAP_HEAP) {
            brk_lo = mp->lo;
            brk_hi = mp->hi;
        }
        if (mp->kind == MAP_HEAP || mp->kind == MAP_STACK) {
            range r = {mp->lo, mp->hi};
            if (!or_vec_push(&excl, &r))
                goto oom;
        }
    }
    {
        /* every arena heap, live blocks or not: free chunks hold only stale words */
        static uintptr_t heaps[4096][2];
        size_t n = or_glibc_arena_heaps((const uintptr_t(*)[2])m.alloc_data, m.nalloc_data, brk_lo, brk_hi, heaps, 4096,
                                        readable);
        a->arena_heaps = n;
        for (size_t i = 0; i < n; i++) {
            range r = {heaps[i][0], heaps[i][1]};
            if (!or_vec_push(&excl, &r))
                goto oom;
        }
    }
    for (size_t i = 0; i < m.nblocks; i++) {
        range r;
        or_glibc_block_extent(&m.blocks[i], brk_lo, brk_hi, &r.lo, &r.hi, readable);
        if (excl.len && OR_AT(excl, range, excl.len - 1).lo == r.lo && OR_AT(excl, range, excl.len - 1).hi == r.hi)
            continue; /* the same arena heap as the block before */
        if (!or_vec_push(&excl, &r))
            goto oom;
    }
    for (size_t i = 0; i < a->threads.len; i++) {
        const or_thread *t = thread_at(&m, i);
        range r = {t->lo, t->hi};
        if (!or_vec_push(&excl, &r))
            goto oom;
        if (t->block_lo) {
            range blk = {t->block_lo, t->block_hi};
            if (!or_vec_push(&excl, &blk))
                goto oom;
        }
    }
    for (size_t k = 0; k < pds.len; k++) {
        const or_pd *d = &OR_AT(pds, or_pd, k);
        bool ours = thread_by_pd(d->pd, SIZE_MAX, NULL) != SIZE_MAX;
        if (ours || !d->block_lo)
            continue;
        if (d->cached || d->tid == 0) { /* a dead stack: nobody's frames */
            range r = {d->block_lo, d->block_hi};
            if (!or_vec_push(&excl, &r))
                goto oom;
        }
    }
    {
        static uintptr_t own[16384][2];
        size_t n = or_own_ranges(own, 16384);
        for (size_t i = 0; i < n; i++) {
            range r = {own[i][0], own[i][1]};
            if (!or_vec_push(&excl, &r))
                goto oom;
        }
    }
    excl.len = merge_ranges(excl.data, excl.len);

    /* The roots: writable mappings minus the exclusions. */
    for (size_t i = 0, e = 0; i < maps.len; i++) {
        const map *mp = &OR_AT(maps, map, i);
        if (!mp->r || !mp->w || mp->kind == MAP_SPECIAL || mp->kind == MAP_DEVICE)
            continue;
        uintptr_t lo = mp->lo;
        while (e < excl.len && OR_AT(excl, range, e).hi <= lo)
            e++;
        for (size_t k = e; lo < mp->hi; k++) {
            uintptr_t cut = k < excl.len ? OR_AT(excl, range, k).lo : mp->hi;
            if (cut > mp->hi)
                cut = mp->hi;
            if (cut > lo) {
                range r = {lo, cut};
                if (!or_vec_push(&roots, &r))
                    goto oom;
                a->root_bytes += cut - lo;
            }
            if (k >= excl.len)
                break;
            if (OR_AT(excl, range, k).hi > lo)
                lo = OR_AT(excl, range, k).hi;
        }
    }
    /* Exited, unjoined threads: pthread_join would hand out what they returned. */
    for (size_t k = 0; lists && k < pds.len; k++) {
        const or_pd *d = &OR_AT(pds, or_pd, k);
        if (d->cached || thread_by_pd(d->pd, SIZE_MAX, NULL) != SIZE_MAX)
            continue;
        range r = d->tid == 0 ? (range){d->pd, d->pd + g->sizeof_pthread}
                              : (range){d->block_lo ? d->block_lo : d->pd, d->block_lo ? d->block_hi : d->pd + g->sizeof_pthread};
        if (!or_vec_push(&roots, &r)) /* a live descriptor we did not stop: all of its block */
            goto oom;
    }

    pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    guard_faults(true);
    a->phase_ms[0] = or_now_ms() - tm;
    a->phase_cpu_ms[0] = or_cpu_ms() - tc; /* preparing: maps, blocks, threads, roots */
    /* Mark from the roots and from every thread that can run. */
    for (size_t i = 0; i < roots.len; i++)
        scan_root(&m, OR_AT(roots, range, i).lo, OR_AT(roots, range, i).hi);
    for (size_t i = 0; i < a->threads.len; i++)
        if (thread_at(&m, i)->wait == OR_WAIT_NONE)
            thread_roots(&m, i);
    drain(&m);
    a->phase_ms[1] = or_now_ms() - tm;
    a->phase_cpu_ms[1] = or_cpu_ms() - tc;

    /* The fixed point: a blocked thread whose object is reachable can run. */
    for (bool changed = true; changed && a->status != ORPHANS_ERROR;) {
        changed = false;
        for (size_t i = 0; i < a->threads.len; i++) {
            or_thread *t = thread_at(&m, i);
            if (t->wait == OR_WAIT_NONE || t->fate == OR_WAKEABLE)
                continue;
            bool reachable = false;
            switch (t->wait) {
            case OR_WAIT_HEAP: reachable = m.color[t->target] == LIVE; break;
            case OR_WAIT_STACK: reachable = thread_at(&m, t->target)->region_root; break;
            case OR_WAIT_JOIN: {
                const or_thread *o = thread_at(&m, t->target);
                reachable = o->wait == OR_WAIT_NONE || o->fate == OR_WAKEABLE;
                break;
            }
            default: reachable = true;
            }
            if (!reachable && a->cfg.cancel_wakes)
                reachable = cancellable_now(g, t);
            if (reachable) {
                t->fate = OR_WAKEABLE;
                thread_roots(&m, i);
                changed = true;
            }
        }
        drain(&m);
    }

    if (a->cfg.explain) {
        size_t told = 0;
        for (size_t i = 0; i < a->threads.len; i++)
            if (thread_at(&m, i)->fate == OR_WAKEABLE && told++ < 32)
                explain_thread(&m, i);
        if (told > 32)
            say(a, "orphans: ... and %zu more wakeable threads\n", told - 32);
    }

    /* The leaked, and what each of them pins. */
    a->phase_ms[2] = or_now_ms() - tm;
    a->phase_cpu_ms[2] = or_cpu_ms() - tc;
    m.paint = PINNED;
    for (size_t i = 0; i < a->threads.len && a->status != ORPHANS_ERROR; i++) {
        or_thread *t = thread_at(&m, i);
        if (t->wait == OR_WAIT_NONE || t->fate == OR_WAKEABLE)
            continue;
        bool cancellable = cancellable_now(g, t);
        t->fate = cancellable ? OR_CANCELLABLE : OR_LEAKED;
        a->leaked++;
        a->cancellable += cancellable;
        m.painted_bytes = m.painted_blocks = 0;
        /* glibc's TLS vector of the thread (tcbhead_t.dtv, at %fs:8, points one
         * entry into it): its contents are scanned for this thread, but the
         * block itself is glibc's, counted apart from what the program pins. */
        uintptr_t dtv = 0;
        if (t->pd && readable(t->pd + 8, 8))
            memcpy(&dtv, (const void *)(t->pd + 8), sizeof dtv);
        ssize_t db = dtv ? block_of(&m, dtv) : -1;
        if (db >= 0 && m.color[db] == WHITE) {
            m.color[db] = PINNED;
            a->glibc_bytes += m.blocks[db].size;
            push(&m, (size_t)db);
        }
        t->region_root = false; /* scan it now, for this thread's account */
        thread_roots(&m, i);
        drain(&m);
        t->pinned_bytes = m.painted_bytes;
        t->pinned_blocks = m.painted_blocks;
        a->pinned_bytes += m.painted_bytes;
        a->pinned_blocks += m.painted_blocks;
    }
    copy_leaked_stacks(a);
    guard_faults(false);
    if (pagemap_fd >= 0)
        close(pagemap_fd);
    pagemap_fd = -1;
    a->phase_ms[3] = or_now_ms() - tm;
    a->phase_cpu_ms[3] = or_cpu_ms() - tc;
    for (size_t i = 0; i < m.nblocks; i++)
        if (m.color[i] == WHITE) {
            a->unreachable_bytes += m.blocks[i].size;
            a->unreachable_blocks++;
        }
    if (a->status != ORPHANS_ERROR)
        a->status = a->leaked ? ORPHANS_FOUND : ORPHANS_NONE;
    goto resume;

oom:
    snprintf(a->why, sizeof a->why, "out of memory for the analysis");
    a->status = ORPHANS_ERROR;
resume:
    or_world_resume(&a->world);
    a->mark_ms = or_now_ms() - tm;
    a->mark_cpu_ms = or_cpu_ms() - tc;
    or_unmap(m.color, m.nblocks + 1);
    or_unmap(m.from, (m.nblocks + 1) * sizeof *m.from);
    or_unmap(m.dtv_of, (m.nblocks + 1) * sizeof *m.dtv_of);
    or_vec_free(&m.intervals);
    or_vec_free(&m.work);
    or_vec_free(&pds);
    or_vec_free(&excl);
    or_vec_free(&roots);
    or_vec_free(&maps);
    or_vec_free(&by_pd);
    a->total_ms = or_now_ms() - t0;
    return a->status;
}

void or_analysis_free(or_analysis *a)
{
    or_unmap(a->explained, a->explained_cap);
    or_unmap(a->stack_copies, a->stack_copies_bytes);
    or_vec_free(&a->blocks);
    or_vec_free(&a->threads);
}
