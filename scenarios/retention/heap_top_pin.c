/* heap_top_pin - a small block at the heap's top pins everything freed below it.
 *
 * The pattern: a worker thread's burst allocates --blocks blocks of
 * --block-bytes (below glibc's 128 KiB mmap threshold, so they come from its
 * arena's heap, one above the other), and right after it the program keeps
 * one small long-lived block (a log record, a cache entry: --pin-bytes). Then
 * the burst is freed. The blocks coalesce into one free chunk, but it sits
 * *below* the small block, and glibc gives memory back from a heap's top only
 * (free() trims when the top chunk exceeds M_TRIM_THRESHOLD). So every freed
 * byte stays resident: in use is the small block, RSS is the burst.
 *
 * Go's view: HeapIdle high, HeapReleased 0 (freed, kept, not returned). Go's
 * scavenger would return the idle pages; glibc has none.
 *
 * The fixes, one variant each:
 *   trimmed: after the burst, malloc_trim(0): since glibc 2.8 it also gives
 *            back the whole pages inside free chunks (MADV_DONTNEED), so the
 *            hole stays in the heap (mallinfo2 still counts it free) but is
 *            no longer resident (Go: HeapReleased).
 *   ordered: the long-lived block is allocated *before* the burst, so the
 *            freed burst merges into the top chunk and free() itself shrinks
 *            the heap (a thread arena's heap_trim; sbrk in the main arena):
 *            the memory leaves the allocator's figures and RSS.
 *
 * Phases: baseline (the worker has its arena, nothing else), allocated (the
 * burst is live), freed (the burst is freed: the [truth] of
 * expected/retention/heap_top_pin.toml).
 */
#include "leaklab.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    QUICK_BLOCKS = 256,           /* x 64 KiB = 16 MiB */
    SEED_BLOCKS = 960,            /* x 64 KiB = 60 MiB: one thread arena heap (64 MiB at most) */
    MAX_BLOCKS = 1 << 16,
    BLOCK_BYTES = 64 * 1024,
    MIN_BLOCK_BYTES = 2048,       /* above the fastbins and the tcache: real coalescing chunks */
    MAX_BURST_MIB = 60,           /* the burst stays in the worker arena's first heap */
    MAX_BLOCK_BYTES = 120 * 1024, /* below the 128 KiB mmap threshold: from the heap */
    PIN_BYTES = 64,
};

#define WORKER_STACK_BYTES (64 * 1024)

static const ll_option options[] = {
    {"blocks", "blocks", SEED_BLOCKS, QUICK_BLOCKS, 1, MAX_BLOCKS, "blocks the burst allocates and frees"},
    {"block-bytes", "bytes", BLOCK_BYTES, BLOCK_BYTES, MIN_BLOCK_BYTES, MAX_BLOCK_BYTES,
     "size of each block (below glibc's mmap threshold, so from the heap)"},
    {"pin-bytes", "bytes", PIN_BYTES, PIN_BYTES, 1, 1024, "size of the long-lived block"},
    {0},
};

static atomic_llong live_blocks;

static const ll_counter counters[] = {
    {"blocks", &live_blocks},
    {0},
};

/* The burst runs in a thread of its own, so it has an arena of its own:
 * a fresh heap with no free chunk of anyone else's in it, where the record
 * kept right after the burst cannot land in an old hole (in the main arena
 * it did: the harness's freed buffers served it, below the burst). Main
 * takes the snapshots between the worker's steps. */
enum order { PIN_AFTER_BURST, PIN_BEFORE_BURST };

struct burst {
    ll_run *run;
    pthread_barrier_t step; /* worker and main, at each step */
    char **blocks;
    char *pin;
    long long count;
    size_t bytes;
    enum order order;
    bool trim;
};

/* The burst: every block written, so every page of it is resident. */
static void allocate_burst(struct burst *b)
{
    for (long long i = 0; i < b->count; i++) {
        b->blocks[i] = ll_xmalloc(b->run, b->bytes);
        memset(b->blocks[i], (int)(i & 0x7f) + 1, b->bytes);
        atomic_fetch_add(&live_blocks, 1);
    }
}

static void free_burst(struct burst *b)
{
    for (long long i = 0; i < b->count; i++) {
        free(b->blocks[i]);
        atomic_fetch_sub(&live_blocks, 1);
    }
}

/* The long-lived block: what a server keeps after a burst of work. */
static char *keep_record(struct burst *b)
{
    size_t bytes = (size_t)ll_opt(b->run, "pin-bytes");
    char *pin = ll_xmalloc(b->run, bytes);
    memset(pin, 'r', bytes);
    return pin;
}

static void *worker(void *arg)
{
    struct burst *b = arg;
    b->blocks = ll_xmalloc(b->run, (size_t)b->count * sizeof *b->blocks); /* takes the arena */
    pthread_barrier_wait(&b->step); /* main: baseline */
    pthread_barrier_wait(&b->step);

    if (b->order == PIN_BEFORE_BURST)
        b->pin = keep_record(b);
    allocate_burst(b);
    if (b->order == PIN_AFTER_BURST)
        b->pin = keep_record(b); /* lands on the burst, at the heap's top */
    pthread_barrier_wait(&b->step); /* main: allocated */
    pthread_barrier_wait(&b->step);

    free_burst(b);
    if (b->trim)
        malloc_trim(0);
    pthread_barrier_wait(&b->step); /* main: freed */
    return NULL;
}

/* The variants differ only in when the record is kept and whether anyone
 * asks for the hole back. */
static void run_burst(ll_run *run, enum order order, bool trim)
{
    struct burst b = {.run = run, .count = ll_opt(run, "blocks"), .bytes = (size_t)ll_opt(run, "block-bytes"),
                      .order = order, .trim = trim};
    pthread_barrier_init(&b.step, NULL, 2);
    pthread_t thread;
    ll_thread_start(run, &thread, worker, &b);
    pthread_barrier_wait(&b.step);
    ll_phase(run, "baseline");
    pthread_barrier_wait(&b.step);
    pthread_barrier_wait(&b.step);
    ll_phase(run, "allocated");
    pthread_barrier_wait(&b.step);
    pthread_barrier_wait(&b.step);
    pthread_join(thread, NULL);
    ll_phase(run, "freed");

    free(b.pin);
    free(b.blocks);
    pthread_barrier_destroy(&b.step);
}

static void run_kept(ll_run *run) { run_burst(run, PIN_AFTER_BURST, false); }

static void run_trimmed(ll_run *run)
{
    run_burst(run, PIN_AFTER_BURST, LL_FIX_VALUE(true, false)); /* FIX: malloc_trim(0) after the burst */
}

static void run_ordered(ll_run *run)
{
    run_burst(run, LL_FIX_VALUE(PIN_BEFORE_BURST, PIN_AFTER_BURST), false); /* FIX: keep the record first */
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    if (ll_opt(run, "blocks") * ll_opt(run, "block-bytes") > (long long)MAX_BURST_MIB << 20) {
        snprintf(why, why_len, "--blocks x --block-bytes must fit one thread arena heap: at most %d MiB",
                 MAX_BURST_MIB);
        return false;
    }
    return ll_payload_of(out, (uint64_t)ll_opt(run, "blocks"), (uint64_t)ll_opt(run, "block-bytes"),
                         "--blocks x --block-bytes", why, why_len);
}

static const ll_variant variants[] = {
    {"kept", "the record is kept after the burst, at the heap's top: the freed burst stays resident", run_kept},
    {"trimmed", "the same, then malloc_trim(0): the hole's pages are given back (MADV_DONTNEED)", run_trimmed},
    {"ordered", "the record is kept before the burst: the freed burst merges into the top and is trimmed",
     run_ordered},
    {0},
};

static const ll_scenario scenario = {
    .name = "heap_top_pin",
    .summary = "A burst of blocks is freed, but one small block kept after it sits at the heap's top:\n"
               "glibc shrinks a heap only from its top, so the freed burst stays resident.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
    .thread_stack_bytes = WORKER_STACK_BYTES,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
