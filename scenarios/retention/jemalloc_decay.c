/* jemalloc_decay - freed pages stay dirty until the decay gets round to them.
 *
 * jemalloc keeps freed pages as "dirty" and purges them along a decay curve
 * over opt.dirty_decay_ms (10 s by default). Without a background thread
 * (background_thread:false, the default) the curve only advances when the
 * arena is used: a process that frees a burst and then goes quiet keeps the
 * whole burst resident for as long as it stays quiet.
 *
 * The pattern: --blocks blocks of 64 KiB (large extents; above the tcache's
 * 32 KiB, so they go straight back to the arena) are allocated and written;
 * then all are freed but one in --keep-every (the requests still in flight).
 * Phase freed (the [truth]) is taken right after: the freed blocks are dirty,
 * resident, in use nowhere.
 *
 * Why some are kept: jemalloc coalesces freed large extents at once, and a
 * dirty run that reaches opt.oversize_threshold (8 MiB) is purged on the
 * spot. Freed whole, the burst partly purged itself (seed scale: 94 of 272
 * MiB stayed, and how much depended on how jemalloc had grown its address
 * space). A live block every 64 keeps each freed run at 63 blocks (4.2 MiB):
 * every run waits for the decay, as scattered frees in a server do.
 *
 * Go's view: HeapIdle, waiting for the scavenger (Go's background scavenger
 * is jemalloc's background_thread).
 *
 * The fixes:
 *   returned: the arena's dirty_decay_ms set to 0 before the burst is freed
 *             (mallctl arena.<i>.dirty_decay_ms; MALLOC_CONF=dirty_decay_ms:0
 *             process-wide): every free purges at once.
 *   purged:   after the burst, one purge of every arena (arena.<ALL>.purge;
 *             Go: debug.FreeOSMemory()).
 *
 * Phases: baseline, allocated, freed.
 */
#include "leaklab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    QUICK_BLOCKS = 256,  /* x 64 KiB = 16 MiB */
    SEED_BLOCKS = 4096,  /* x 64 KiB = 256 MiB */
    MAX_BLOCKS = 1 << 20,
    BLOCK_BYTES = 64 * 1024,
    KEEP_EVERY = 64,     /* 63 freed blocks between two live ones: 4.2 MiB, under the 8 MiB oversize purge */
    ARENAS_ALL = 4096,   /* jemalloc's MALLCTL_ARENAS_ALL */
};

/* jemalloc's control interface, weak: under the other allocators the kernel
 * says it has nothing to show (exit 77). */
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) __attribute__((weak));

static const ll_option options[] = {
    {"blocks", "blocks", SEED_BLOCKS, QUICK_BLOCKS, 1, MAX_BLOCKS, "64 KiB blocks allocated, written and freed"},
    {"keep-every", "blocks", KEEP_EVERY, KEEP_EVERY, 2, MAX_BLOCKS,
     "one block in this many stays live (freed runs stay under jemalloc's 8 MiB oversize purge)"},
    {0},
};

static atomic_llong live_blocks;

static const ll_counter counters[] = {
    {"blocks", &live_blocks},
    {0},
};

static void control(ll_run *run, const char *name, void *newp, size_t newlen)
{
    int err = mallctl(name, NULL, NULL, newp, newlen);
    if (err)
        ll_refuse(run, name, err, "this jemalloc does not accept the control (jemalloc 5 is needed)");
}

/* Decay 0 on the arena this thread allocates from: frees purge at once. */
static void decay_now(ll_run *run)
{
    unsigned arena = 0;
    size_t len = sizeof arena;
    if (mallctl("thread.arena", &arena, &len, NULL, 0))
        ll_refuse(run, "mallctl thread.arena", 0, "jemalloc 5 is needed");
    char name[64];
    snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", arena);
    ssize_t zero = 0;
    control(run, name, &zero, sizeof zero);
}

enum fix { NO_FIX, DECAY_ZERO, PURGE };

static void run_burst(ll_run *run, enum fix fix)
{
    if (!mallctl)
        ll_skip(run, "jemalloc's dirty decay: run the -jemalloc binary (--allocator jemalloc)");
    long long n = ll_opt(run, "blocks");
    char **blocks = ll_xmalloc(run, (size_t)n * sizeof *blocks);
    ll_phase(run, "baseline");

    for (long long i = 0; i < n; i++) {
        blocks[i] = ll_xmalloc(run, BLOCK_BYTES);
        memset(blocks[i], (int)(i & 0x7f) + 1, BLOCK_BYTES);
        atomic_fetch_add(&live_blocks, 1);
    }
    ll_phase(run, "allocated");

    if (fix == DECAY_ZERO)
        decay_now(run);
    long long every = ll_opt(run, "keep-every");
    for (long long i = 0; i < n; i++) {
        if (i % every == every - 1)
            continue; /* in flight: freed after the phase */
        free(blocks[i]);
        blocks[i] = NULL;
        atomic_fetch_sub(&live_blocks, 1);
    }
    if (fix == PURGE) {
        char name[64];
        snprintf(name, sizeof name, "arena.%u.purge", (unsigned)ARENAS_ALL);
        control(run, name, NULL, 0);
    }
    ll_phase(run, "freed");
    for (long long i = 0; i < n; i++)
        free(blocks[i]);
    atomic_store(&live_blocks, 0);
    free(blocks);
}

static void run_kept(ll_run *run) { run_burst(run, NO_FIX); }

static void run_returned(ll_run *run)
{
    run_burst(run, LL_FIX_VALUE(DECAY_ZERO, NO_FIX)); /* FIX: dirty_decay_ms 0 on the arena: free purges */
}

static void run_purged(ll_run *run)
{
    run_burst(run, LL_FIX_VALUE(PURGE, NO_FIX)); /* FIX: purge every arena once the burst is over */
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "blocks"), BLOCK_BYTES, "--blocks x 64 KiB", why, why_len);
}

static const ll_variant variants[] = {
    {"kept", "the freed burst is dirty: resident until the 10 s decay runs, which needs arena activity", run_kept},
    {"returned", "dirty_decay_ms 0 on the arena before the frees: each free purges its pages", run_returned},
    {"purged", "one arena.<ALL>.purge after the frees (Go: debug.FreeOSMemory())", run_purged},
    {0},
};

static const ll_scenario scenario = {
    .name = "jemalloc_decay",
    .summary = "A freed burst stays dirty in jemalloc's arena: resident until the 10 s decay runs,\n"
               "and without a background thread the decay runs only when the arena is used.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
