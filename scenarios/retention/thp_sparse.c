/* thp_sparse - transparent huge pages turn a sparse touch into 2 MiB of RSS.
 *
 * With transparent huge pages, the first write into a 2 MiB-aligned range of
 * a region that allows them (THP "always", or "madvise" and the region
 * madvised MADV_HUGEPAGE, as glibc.malloc.hugetlb=1 and jemalloc's
 * opt.thp:always do) faults in a whole 2 MiB page, zero-filled. A heap that
 * is written sparsely (a hash table's buckets, an index with one entry per
 * 2 MiB, a big buffer written at its head only) then costs 512 times what it
 * uses.
 *
 * The pattern: one buffer of --huge-pages x 2 MiB (malloc'ed: an mmapped
 * chunk), its 2 MiB-aligned part madvised MADV_HUGEPAGE, then one 64-byte
 * record written at the start of every 2 MiB. Phase touched (the [truth]):
 * RSS = --huge-pages x 2 MiB; the program wrote --huge-pages x 64 bytes.
 *
 * Go's view: HeapInuse is the whole buffer either way; Go's runtime itself
 * gives up huge pages for sparse heaps (it marks sparse regions NOHUGEPAGE).
 *
 * The fix (variant fixed): MADV_NOHUGEPAGE on the buffer (or THP "madvise"
 * without anyone asking for huge pages): each record costs one 4 KiB page.
 *
 * Skips (exit 77) when /sys/kernel/mm/transparent_hugepage/enabled is
 * "never" or missing: there is nothing to show.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum {
    QUICK_HUGE_PAGES = 16,   /* 32 MiB */
    SEED_HUGE_PAGES = 128,   /* 256 MiB */
    MAX_HUGE_PAGES = 8192,
    RECORD_BYTES = 64,
};

#define HUGE_PAGE_BYTES ((size_t)2 << 20)
#define THP_ENABLED "/sys/kernel/mm/transparent_hugepage/enabled"

static const ll_option options[] = {
    {"huge-pages", "2 MiB ranges", SEED_HUGE_PAGES, QUICK_HUGE_PAGES, 1, MAX_HUGE_PAGES,
     "2 MiB ranges of the buffer, each written once (one 64-byte record at its start)"},
    {0},
};

static atomic_llong records;
static atomic_llong anon_huge_bytes; /* AnonHugePages, read before the phase */

static const ll_counter counters[] = {
    {"records", &records},
    {"anon_huge_bytes", &anon_huge_bytes},
    {0},
};

/* THP's mode, the word in brackets: "always", "madvise" or "never". */
static void thp_mode(ll_run *run, char *mode, size_t len)
{
    FILE *f = fopen(THP_ENABLED, "re");
    char line[128] = "";
    if (!f || !fgets(line, sizeof line, f))
        ll_skip(run, "no " THP_ENABLED ": this kernel has no transparent huge pages");
    fclose(f);
    char *open = strchr(line, '['), *close = open ? strchr(open, ']') : NULL;
    if (!open || !close)
        ll_skip(run, THP_ENABLED " names no mode in brackets");
    snprintf(mode, len, "%.*s", (int)(close - open - 1), open + 1);
}

static long long read_anon_huge(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "re");
    if (!f)
        return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static void run_buffer(ll_run *run, int advice)
{
    char mode[32];
    thp_mode(run, mode, sizeof mode);
    if (strcmp(mode, "never") == 0)
        ll_skip(run, THP_ENABLED " is [never]: no huge pages to show (echo madvise > it, as root)");
    long long n = ll_opt(run, "huge-pages");
    ll_phase(run, "baseline");

    /* One huge page more than needed, to find a 2 MiB boundary inside. */
    char *buffer = ll_xmalloc(run, (size_t)(n + 1) * HUGE_PAGE_BYTES);
    char *aligned = (char *)(((uintptr_t)buffer + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1));
    if (madvise(aligned, (size_t)n * HUGE_PAGE_BYTES, advice) != 0)
        ll_refuse(run, "madvise", errno, "this kernel refuses the advice (CONFIG_TRANSPARENT_HUGEPAGE?)");
    for (long long i = 0; i < n; i++) {
        memset(aligned + (size_t)i * HUGE_PAGE_BYTES, 'r', RECORD_BYTES);
        atomic_fetch_add(&records, 1);
    }
    atomic_store(&anon_huge_bytes, read_anon_huge());
    ll_phase(run, "touched");

    free(buffer);
    atomic_store(&records, 0);
}

static void run_leaky(ll_run *run) { run_buffer(run, MADV_HUGEPAGE); }

static void run_fixed(ll_run *run)
{
    run_buffer(run, LL_FIX_VALUE(MADV_NOHUGEPAGE, MADV_HUGEPAGE)); /* FIX: no huge pages for a sparse buffer */
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "huge-pages"), HUGE_PAGE_BYTES, "--huge-pages x 2 MiB", why,
                         why_len);
}

static const ll_variant variants[] = {
    {"leaky", "the buffer asks for huge pages: each 64-byte record faults in 2 MiB", run_leaky},
    {"fixed", "MADV_NOHUGEPAGE: each record costs one 4 KiB page", run_fixed},
    {0},
};

static const ll_scenario scenario = {
    .name = "thp_sparse",
    .summary = "A buffer written once every 2 MiB, with transparent huge pages allowed: each write\n"
               "faults in a whole 2 MiB page, so RSS is 512 times what was written.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
