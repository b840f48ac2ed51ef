/* mmap_ratchet - once a large block is freed, large blocks stop going back.
 *
 * glibc serves a request of M_MMAP_THRESHOLD or more (128 KiB at start) with
 * a mapping of its own, unmapped on free: such blocks never stay. But the
 * threshold is dynamic: freeing an mmapped block raises it to that block's
 * size (up to 32 MiB), and the trim threshold to twice that, so a program
 * that once freed a 1 MiB buffer serves every later 256 KiB block from its
 * heap. There they stay after free: between the small records the program
 * keeps, and under a trim threshold that has ratcheted up too.
 *
 * The pattern: one --first-bytes buffer is allocated and freed (phase
 * ratcheted), then --blocks blocks of --block-bytes (above the initial
 * threshold, below the raised one), each followed by a small record the
 * program keeps; then the blocks are freed. Each freed block is a hole
 * between two live records: resident, in use nowhere.
 *
 * Go's view: HeapIdle; Go's large objects are spans of its one heap too, but
 * its scavenger returns idle ones.
 *
 * The fix (variant fixed): set M_MMAP_THRESHOLD explicitly (mallopt, or
 * MALLOC_MMAP_THRESHOLD_=131072): a fixed threshold turns the dynamic
 * adjustment off, every block gets its own mapping again, and free() unmaps it.
 *
 * Phases: baseline, ratcheted, allocated, freed (the [truth]).
 */
#include "leaklab.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    QUICK_BLOCKS = 64,          /* x 256 KiB = 16 MiB */
    SEED_BLOCKS = 1024,         /* x 256 KiB = 256 MiB */
    MAX_BLOCKS = 1 << 16,
    BLOCK_BYTES = 256 * 1024,
    INITIAL_THRESHOLD = 128 * 1024, /* glibc's DEFAULT_MMAP_THRESHOLD_MIN */
    FIRST_BYTES = 1 << 20,      /* raises the threshold to 1 MiB */
    MAX_FIRST_BYTES = 32 << 20, /* glibc's DEFAULT_MMAP_THRESHOLD_MAX (64-bit) */
    RECORD_BYTES = 64,
};

static const ll_option options[] = {
    {"blocks", "blocks", SEED_BLOCKS, QUICK_BLOCKS, 1, MAX_BLOCKS, "blocks allocated after the ratchet, then freed"},
    {"block-bytes", "bytes", BLOCK_BYTES, BLOCK_BYTES, INITIAL_THRESHOLD, MAX_FIRST_BYTES,
     "size of each block: at least the initial mmap threshold (128 KiB), below --first-bytes"},
    {"first-bytes", "bytes", FIRST_BYTES, FIRST_BYTES, INITIAL_THRESHOLD, MAX_FIRST_BYTES,
     "the one large buffer whose free raises the threshold"},
    {0},
};

static atomic_llong kept_records;

static const ll_counter counters[] = {
    {"records", &kept_records},
    {0},
};

/* The large buffer: mmapped (above the threshold), written, freed. Its free
 * is what moves the threshold. */
static void ratchet(ll_run *run)
{
    size_t bytes = (size_t)ll_opt(run, "first-bytes");
    char *first = ll_xmalloc(run, bytes);
    memset(first, 'f', bytes);
    free(first);
}

static void run_pattern(ll_run *run)
{
    long long n = ll_opt(run, "blocks");
    size_t bytes = (size_t)ll_opt(run, "block-bytes");
    char **blocks = ll_xmalloc(run, (size_t)n * sizeof *blocks);
    char **records = ll_xmalloc(run, (size_t)n * sizeof *records);
    ll_phase(run, "baseline");

    ratchet(run);
    ll_phase(run, "ratcheted");

    /* A block the heap served (below the program break: the main arena)
     * needs its record right above it, carved from the top: glibc hands a
     * small request a chunk from its free lists first (the harness's own
     * freed blocks), and records taken from there would leave the blocks
     * side by side, to be trimmed whole from the top on free. So a record
     * that lands below its block is kept aside (linked through its first
     * word, freed at the end) and another is asked for: at most what the
     * free lists hold. A block with a mapping of its own (the fixed variant)
     * needs nothing of its record. */
    char *misplaced = NULL;
    for (long long i = 0; i < n; i++) {
        blocks[i] = ll_xmalloc(run, bytes);
        memset(blocks[i], (int)(i & 0x7f) + 1, bytes);
        bool from_heap = (void *)blocks[i] < sbrk(0);
        for (;;) {
            records[i] = ll_xmalloc(run, RECORD_BYTES); /* kept: a summary of what the block held */
            if (!from_heap || records[i] > blocks[i])
                break;
            memcpy(records[i], &misplaced, sizeof misplaced);
            misplaced = records[i];
        }
        memset(records[i], 'r', RECORD_BYTES);
        atomic_fetch_add(&kept_records, 1);
    }
    ll_phase(run, "allocated");

    for (long long i = 0; i < n; i++)
        free(blocks[i]);
    ll_phase(run, "freed");

    while (misplaced) {
        char *next;
        memcpy(&next, misplaced, sizeof next);
        free(misplaced);
        misplaced = next;
    }
    for (long long i = 0; i < n; i++)
        free(records[i]);
    atomic_store(&kept_records, 0);
    free(records);
    free(blocks);
}

static void run_leaky(ll_run *run) { run_pattern(run); }

static void run_fixed(ll_run *run)
{
    LL_FIX(mallopt(M_MMAP_THRESHOLD, INITIAL_THRESHOLD)); /* FIX: a fixed threshold does not ratchet */
    run_pattern(run);
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    if (ll_opt(run, "block-bytes") >= ll_opt(run, "first-bytes")) {
        snprintf(why, why_len, "--block-bytes must be below --first-bytes, or the ratchet does not reach the blocks");
        return false;
    }
    return ll_payload_of(out, (uint64_t)ll_opt(run, "blocks"), (uint64_t)ll_opt(run, "block-bytes"),
                         "--blocks x --block-bytes", why, why_len);
}

static const ll_variant variants[] = {
    {"leaky", "the freed large buffer raised the threshold: the blocks come from the heap and stay", run_leaky},
    {"fixed", "M_MMAP_THRESHOLD set to 128 KiB: every block is mmapped and unmapped on free", run_fixed},
    {0},
};

static const ll_scenario scenario = {
    .name = "mmap_ratchet",
    .summary = "One freed large buffer raises glibc's mmap threshold: later large blocks come from the\n"
               "heap, and once freed between small live records they stay resident.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
