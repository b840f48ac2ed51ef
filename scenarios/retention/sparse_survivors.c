/* sparse_survivors - one live object per page keeps every page resident.
 *
 * The pattern every allocator shares: a cache fills with --objects small
 * objects (a 56-byte request, a 64-byte slot in glibc, tcmalloc and
 * jemalloc alike), then is pruned: only the first object of each 4 KiB page
 * survives (an LRU that kept one entry in 64, by address rather than by
 * age, so the count is exact). 63 of every 64 objects are freed, in use
 * falls to 1/64 of the peak, and RSS does not move: an allocator can return
 * only whole pages, and not one page is empty. No release call helps:
 * both variants call the allocator's (malloc_trim(0),
 * ReleaseFreeMemory after flushing the thread's cache, arena purge) before
 * the [truth] phase.
 *
 * Go's view: HeapInuse stays high with HeapAlloc low (fragmentation inside
 * spans); Go cannot move objects either.
 *
 * The fix (variant returned): compaction. The survivors are copied into one
 * dense array and the scattered originals freed; now whole pages are free,
 * and the release call returns them.
 *
 * Phases: baseline, allocated, released (the [truth]).
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    QUICK_OBJECTS = 1 << 18, /* 262,144 x 64 B = 16 MiB */
    SEED_OBJECTS = 1 << 22,  /* 4,194,304 x 64 B = 256 MiB */
    MAX_OBJECTS = 1 << 26,
    OBJECT_BYTES = 56,       /* a 64-byte slot in each allocator (glibc: 56 + 8 header) */
    SLOT_BYTES = 64,
    PAGE_BYTES = 4096,
};

/* tcmalloc keeps freed small objects in the thread's cache, which its
 * release call does not touch: flush it first when running on tcmalloc
 * (weak: absent, and not called, under the other allocators). */
void MallocExtension_MarkThreadIdle(void) __attribute__((weak));

static const ll_option options[] = {
    {"objects", "objects", SEED_OBJECTS, QUICK_OBJECTS, PAGE_BYTES / SLOT_BYTES, MAX_OBJECTS,
     "small objects the cache fills with before it is pruned to one per page"},
    {0},
};

static atomic_llong survivors;

static const ll_counter counters[] = {
    {"survivors", &survivors},
    {0},
};

struct object {
    uint64_t key;
    char value[OBJECT_BYTES - sizeof(uint64_t)];
};

static uintptr_t page_of(const void *p) { return (uintptr_t)p / PAGE_BYTES; }

/* Prunes the cache: keeps the first object met on each page (its pointer
 * goes to `keep`), frees the rest. Returns how many survive. */
static long long prune(struct object **all, long long n, struct object **keep)
{
    long long count = 0;
    for (long long i = 0; i < n; i++) {
        if (i == 0 || page_of(all[i]) != page_of(all[i - 1]))
            keep[count++] = all[i]; /* a new page: its first object survives */
        else
            free(all[i]);
    }
    return count;
}

static void release_everything(void)
{
    if (MallocExtension_MarkThreadIdle)
        MallocExtension_MarkThreadIdle();
    ll_alloc_release();
}

/* The two lists (every object, the survivors) are allocated and written
 * before `baseline` and live past `released`: the truth counts the objects
 * alone. At the default scales they are mmapped (2 MiB and more), away from
 * the heap the objects fill. */
static void run_cache(ll_run *run, bool compact)
{
    long long n = ll_opt(run, "objects");
    struct object **all = ll_xmalloc(run, (size_t)n * sizeof *all);
    struct object **keep = ll_xmalloc(run, (size_t)n * sizeof *keep);
    memset(all, 0, (size_t)n * sizeof *all);
    memset(keep, 0, (size_t)n * sizeof *keep);
    ll_phase(run, "baseline");

    for (long long i = 0; i < n; i++) {
        all[i] = ll_xmalloc(run, sizeof(struct object));
        all[i]->key = (uint64_t)i;
        memset(all[i]->value, 'v', sizeof all[i]->value);
    }
    ll_phase(run, "allocated");

    long long count = prune(all, n, keep);
    struct object *dense = NULL;
    if (compact) {
        dense = ll_xmalloc(run, (size_t)count * sizeof *dense);
        for (long long i = 0; i < count; i++) {
            dense[i] = *keep[i];
            free(keep[i]);
            keep[i] = &dense[i];
        }
    }
    atomic_store(&survivors, count);
    release_everything();
    ll_phase(run, "released");

    if (!dense)
        for (long long i = 0; i < count; i++)
            free(keep[i]);
    free(dense);
    free(keep);
    free(all);
    atomic_store(&survivors, 0);
}

static void run_kept(ll_run *run) { run_cache(run, false); }

static void run_returned(ll_run *run)
{
    run_cache(run, LL_FIX_VALUE(true, false)); /* FIX: move the survivors together, then release */
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "objects"), SLOT_BYTES, "--objects x 64-byte slots", why,
                         why_len);
}

static const ll_variant variants[] = {
    {"kept", "one survivor per page: no page is empty, no release call returns anything", run_kept},
    {"returned", "the survivors are compacted into one array: whole pages are free and returned", run_returned},
    {0},
};

static const ll_scenario scenario = {
    .name = "sparse_survivors",
    .summary = "A cache of small objects is pruned to one per 4 KiB page: in use falls 64-fold,\n"
               "RSS does not, under every allocator, release call or not.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
