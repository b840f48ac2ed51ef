/* glibc.c - what glibc keeps about threads and heap blocks, read the way a
 * debugger reads it.
 *
 * Thread descriptors. Every thread's struct pthread sits at the top of its
 * stack block, with its static TLS just below; the dynamic loader links
 * every descriptor into one of three lists in _rtld_global: stacks in use
 * (_dl_stack_used), stacks the application gave (_dl_stack_user), and
 * cached stacks of exited threads waiting for reuse (_dl_stack_cache). The
 * sizes and offsets come from the descriptors glibc exports for
 * libthread_db (_thread_db_sizeof_pthread, _thread_db_pthread_tid,
 * _thread_db_pthread_list, _thread_db_rtld_global__dl_stack_used, ...): the
 * same contract gdb relies on. The cache list is declared right after the
 * user list (ldsodefs.h); we use that only when the used and user lists are
 * that far apart too, and every list must validate (a doubly linked circle
 * of readable descriptors) or it is not used at all.
 *
 * The stack block's own fields (stackblock, stackblock_size) have no
 * libthread_db descriptor: their offset is learnt from the live threads
 * themselves, as the one offset at which every stopped thread's descriptor
 * holds a block that contains its stack pointer and ends just above the
 * descriptor; the fields libthread_db names (list, tid, cancelhandling)
 * are never taken for it: the list's back pointer to the descriptor below
 * and the tid after it look like (block, size) when the tid is about one
 * stack block's size (64 KiB stacks and thread IDs near 111,000, which a
 * PID namespace reaches; pid_max 32,768 never does). Without a unanimous
 * answer the dead parts of stacks are scanned as roots (conservative: more
 * marked, never less, and so every thread on a signal frame that names its
 * own wait object wakeable).
 *
 * Heap blocks. glibc's malloc puts a header (prev_size, size|flags) in the
 * 16 bytes before every block. IS_MMAPPED blocks are whole mappings;
 * NON_MAIN_ARENA blocks live in a 64 MiB-aligned heap that starts with a
 * heap_info (ar_ptr, prev, size, mprotect_size); the main arena is the brk
 * area. Knowing those extents lets the analysis leave malloc's free chunks
 * and bookkeeping out of the roots (stale pointers in freed memory would
 * keep objects falsely alive). Every extent is validated; one that does not
 * validate shrinks to the block itself. */

#include "internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static or_glibc info;
static bool looked;

static bool field(const char *name, size_t *offset)
{
    const uint32_t *d = dlsym(RTLD_DEFAULT, name); /* {bits, count, offset} */
    if (!d)
        return false;
    *offset = d[2];
    return true;
}

const or_glibc *or_glibc_get(void)
{
    if (looked)
        return &info;
    looked = true;
    info.off_stackblock = -1;
    const uint32_t *size = dlsym(RTLD_DEFAULT, "_thread_db_sizeof_pthread");
    char *rtld = dlsym(RTLD_DEFAULT, "_rtld_global");
    size_t used = 0, user = 0;
    if (!size || !rtld || !field("_thread_db_pthread_tid", &info.off_tid) ||
        !field("_thread_db_pthread_list", &info.off_list) ||
        !field("_thread_db_pthread_cancelhandling", &info.off_cancelhandling) ||
        !field("_thread_db_rtld_global__dl_stack_used", &used) ||
        !field("_thread_db_rtld_global__dl_stack_user", &user)) {
        snprintf(info.why, sizeof info.why,
                 "glibc's libthread_db descriptors (_thread_db_*) were not found: not glibc, or a static build");
        return &info;
    }
    info.sizeof_pthread = size[0];
    if (info.sizeof_pthread < 512 || info.sizeof_pthread > 65536 || info.off_tid + 4 > info.sizeof_pthread ||
        info.off_list + 16 > info.sizeof_pthread) {
        snprintf(info.why, sizeof info.why, "glibc's struct pthread descriptors make no sense (size %zu)",
                 info.sizeof_pthread);
        return &info;
    }
    info.stack_used = (uintptr_t)rtld + used;
    info.stack_user = (uintptr_t)rtld + user;
    if (user == used + 2 * sizeof(void *))
        info.stack_cache = (uintptr_t)rtld + user + 2 * sizeof(void *);
    info.ok = true;
    return &info;
}

/* Whether bytes [off, off + len) of a descriptor overlap a field whose
 * offset libthread_db gives: none of them is the stack block. */
static bool named_field(const or_glibc *g, size_t off, size_t len)
{
    const size_t fields[][2] = {{g->off_list, 2 * sizeof(uintptr_t)}, {g->off_tid, sizeof(int32_t)},
                                {g->off_cancelhandling, sizeof(int32_t)}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (off < fields[i][0] + fields[i][1] && fields[i][0] < off + len)
            return true;
    return false;
}

void or_glibc_learn_stacks(or_glibc *g, const uintptr_t *pds, const uintptr_t *sps, size_t n,
                           bool (*readable)(uintptr_t, size_t))
{
    if (!g->ok || g->off_stackblock >= 0 || n == 0)
        return;
    ssize_t answer = -1;
    size_t words = g->sizeof_pthread / sizeof(uintptr_t);
    for (size_t i = 0; i < n; i++) {
        if (!readable(pds[i], g->sizeof_pthread))
            return;
        const uintptr_t *w = (const uintptr_t *)pds[i];
        uintptr_t top = pds[i] + g->sizeof_pthread;
        ssize_t found = -1;
        int matches = 0;
        for (size_t k = 0; k + 1 < words; k++) {
            if (named_field(g, k * sizeof(uintptr_t), 2 * sizeof(uintptr_t)))
                continue;
            uintptr_t lo = w[k], size = w[k + 1];
            if (lo && size && size < ((uintptr_t)1 << 40) && lo <= sps[i] && lo + size > sps[i] && lo + size >= top &&
                lo + size - top < 65536) {
                found = (ssize_t)(k * sizeof(uintptr_t));
                matches++;
            }
        }
        if (matches != 1 || (answer >= 0 && found != answer))
            return; /* not unanimous: keep the dead parts of stacks as roots */
        answer = found;
    }
    g->off_stackblock = answer;
}

static bool descriptor(const or_glibc *g, uintptr_t pd, or_pd *out, bool cached,
                       bool (*readable)(uintptr_t, size_t))
{
    if (!readable(pd, g->sizeof_pthread))
        return false;
    int32_t tid;
    memcpy(&tid, (const void *)(pd + g->off_tid), sizeof tid);
    *out = (or_pd){.pd = pd, .tid = tid, .cached = cached};
    if (g->off_stackblock >= 0) {
        uintptr_t lo, size;
        memcpy(&lo, (const void *)(pd + (size_t)g->off_stackblock), sizeof lo);
        memcpy(&size, (const void *)(pd + (size_t)g->off_stackblock + sizeof lo), sizeof size);
        if (lo && size && lo < pd && lo + size >= pd + g->sizeof_pthread && lo + size - pd < (1u << 20)) {
            out->block_lo = lo;
            out->block_hi = lo + size;
        }
    }
    return true;
}

bool or_glibc_stack_block(const or_glibc *g, uintptr_t pd, uintptr_t *lo, uintptr_t *hi,
                          bool (*readable)(uintptr_t, size_t))
{
    or_pd d;
    if (!descriptor(g, pd, &d, false, readable) || !d.block_lo)
        return false;
    *lo = d.block_lo;
    *hi = d.block_hi;
    return true;
}

static bool walk(const or_glibc *g, uintptr_t head, bool cached, or_vec *out, bool (*readable)(uintptr_t, size_t))
{
    if (!readable(head, 2 * sizeof(uintptr_t)))
        return false;
    uintptr_t prev = head, node;
    memcpy(&node, (const void *)head, sizeof node);
    for (size_t steps = 0; node != head; steps++) {
        if (steps > (1u << 24) || !readable(node, 2 * sizeof(uintptr_t)))
            return false;
        uintptr_t back;
        memcpy(&back, (const void *)(node + sizeof(uintptr_t)), sizeof back);
        if (back != prev)
            return false; /* a list being changed when the world stopped */
        or_pd d;
        if (!descriptor(g, node - g->off_list, &d, cached, readable) || !or_vec_push(out, &d))
            return false;
        prev = node;
        memcpy(&node, (const void *)node, sizeof node);
    }
    return true;
}

bool or_glibc_threads(const or_glibc *g, or_vec *out, bool (*readable)(uintptr_t, size_t))
{
    out->len = 0;
    if (!g->ok)
        return false;
    if (!walk(g, g->stack_used, false, out, readable) || !walk(g, g->stack_user, false, out, readable)) {
        out->len = 0;
        return false;
    }
    size_t live = out->len;
    if (g->stack_cache && !walk(g, g->stack_cache, true, out, readable))
        out->len = live; /* the cache is only an optimisation: without it, cached stacks stay roots */
    return true;
}

/* ---- malloc's extents ---------------------------------------------------------------- */

enum { PREV_INUSE = 1, IS_MMAPPED = 2, NON_MAIN_ARENA = 4 };
#define HEAP_MAX ((uintptr_t)64 << 20) /* 2 x DEFAULT_MMAP_THRESHOLD_MAX on 64-bit */

void or_glibc_block_extent(const or_block *b, uintptr_t brk_lo, uintptr_t brk_hi, uintptr_t *lo, uintptr_t *hi,
                           bool (*readable)(uintptr_t, size_t))
{
    *lo = b->addr;
    *hi = b->addr + b->size;
    uintptr_t chunk = b->addr - 2 * sizeof(size_t);
    if (b->addr < 4096 || !readable(chunk, 2 * sizeof(size_t)))
        return;
    size_t prev_size, head;
    memcpy(&prev_size, (const void *)chunk, sizeof prev_size);
    memcpy(&head, (const void *)(chunk + sizeof(size_t)), sizeof head);
    size_t csize = head & ~(size_t)7;
    if (csize < b->size || csize - b->size > (1u << 20) + 4096)
        return; /* not a glibc chunk header (another allocator behind us) */
    if (head & IS_MMAPPED) {
        uintptr_t map = chunk - prev_size;
        if ((map & 4095) == 0 && ((prev_size + csize) & 4095) == 0) {
            *lo = map;
            *hi = chunk + csize;
        }
        return;
    }
    if (head & NON_MAIN_ARENA) {
        uintptr_t heap = chunk & ~(HEAP_MAX - 1);
        size_t hinfo[4]; /* ar_ptr, prev, size, mprotect_size */
        if (!readable(heap, sizeof hinfo))
            return;
        memcpy(hinfo, (const void *)heap, sizeof hinfo);
        size_t size = hinfo[2], mprotect_size = hinfo[3];
        size_t extent = size > mprotect_size ? size : mprotect_size;
        if (hinfo[0] && extent <= HEAP_MAX && chunk + csize <= heap + extent) {
            *lo = heap;
            *hi = heap + extent;
        }
        return;
    }
    if (brk_lo && b->addr >= brk_lo && b->addr + b->size <= brk_hi) {
        *lo = brk_lo;
        *hi = brk_hi;
    }
}

/* ---- malloc's arenas ------------------------------------------------------------------ */
/* struct malloc_state (malloc.c, glibc 2.26 and later, 64-bit): mutex, flags,
 * have_fastchunks, fastbinsY[10] at 16, top at 96, last_remainder, bins[254],
 * binmap[4], next at 2160. struct heap_info: ar_ptr, prev, size,
 * mprotect_size. Every value read is validated before it is believed. */
enum { ARENA_TOP = 96, ARENA_NEXT = 2160, ARENA_SIZE = 2200 };

static bool word_at(uintptr_t a, uintptr_t *out, bool (*readable)(uintptr_t, size_t))
{
    if (!readable(a, sizeof *out))
        return false;
    memcpy(out, (const void *)a, sizeof *out);
    return true;
}

/* main_arena: the malloc_state in the allocator's data whose top chunk ends
 * exactly at the end of the brk heap. */
static uintptr_t find_main_arena(const uintptr_t (*data)[2], size_t ndata, uintptr_t brk_lo, uintptr_t brk_hi,
                                 bool (*readable)(uintptr_t, size_t))
{
    uintptr_t found = 0;
    for (size_t r = 0; r < ndata; r++)
        for (uintptr_t x = (data[r][0] + 7) & ~(uintptr_t)7; x + ARENA_SIZE <= data[r][1]; x += 8) {
            uintptr_t top, head;
            memcpy(&top, (const void *)(x + ARENA_TOP), sizeof top);
            if (top < brk_lo || top + 16 > brk_hi || (top & 15) || !word_at(top + 8, &head, readable))
                continue;
            if (top + (head & ~(uintptr_t)7) != brk_hi)
                continue;
            if (found)
                return 0; /* two candidates: believe neither */
            found = x;
        }
    return found;
}

size_t or_glibc_arena_heaps(const uintptr_t (*data)[2], size_t ndata, uintptr_t brk_lo, uintptr_t brk_hi,
                            uintptr_t (*out)[2], size_t cap, bool (*readable)(uintptr_t, size_t))
{
    static uintptr_t main_arena; /* where it is never changes */
    if (!main_arena && brk_lo)
        main_arena = find_main_arena(data, ndata, brk_lo, brk_hi, readable);
    if (!main_arena)
        return 0;
    size_t n = 0;
    uintptr_t arena;
    if (!word_at(main_arena + ARENA_NEXT, &arena, readable))
        return 0;
    for (size_t steps = 0; arena != main_arena; steps++) {
        if (steps > 4096 || !arena)
            return 0;
        /* a non-main arena sits in its first heap, right after the heap_info */
        uintptr_t first = arena & ~(HEAP_MAX - 1), owner, top, next;
        if (!word_at(first, &owner, readable) || owner != arena || !word_at(arena + ARENA_TOP, &top, readable) ||
            !word_at(arena + ARENA_NEXT, &next, readable))
            return 0;
        for (uintptr_t h = top & ~(HEAP_MAX - 1), hops = 0; h; hops++) {
            uintptr_t info[4]; /* ar_ptr, prev, size, mprotect_size */
            if (hops > 4096 || !readable(h, sizeof info))
                return 0;
            memcpy(info, (const void *)h, sizeof info);
            uintptr_t extent = info[2] > info[3] ? info[2] : info[3];
            if (info[0] != arena || extent > HEAP_MAX)
                return 0;
            if (n < cap) {
                out[n][0] = h;
                out[n][1] = h + extent;
                n++;
            }
            h = info[1];
        }
        arena = next;
    }
    return n;
}
