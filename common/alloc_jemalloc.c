/* alloc_jemalloc.c - allocator statistics for jemalloc.
 *
 * mallctl's stats are a snapshot refreshed by writing "epoch". allocated is
 * what the program holds; resident - allocated is what jemalloc keeps mapped
 * (dirty and muzzy pages, metadata: Go's HeapIdle - HeapReleased); retained
 * is address space given back to the OS but kept reserved (Go: HeapReleased).
 * Release purges every arena ("arena.<MALLCTL_ARENAS_ALL>.purge"). */
#include "leaklab.h"

#include <jemalloc/jemalloc.h>
#include <stdio.h>

static int64_t stat_size(const char *name)
{
    size_t value = 0, len = sizeof value;
    return mallctl(name, &value, &len, NULL, 0) == 0 ? (int64_t)value : -1;
}

void ll_alloc_read(ll_alloc_stats *out)
{
    uint64_t epoch = 1;
    size_t len = sizeof epoch;
    mallctl("epoch", &epoch, &len, &epoch, len);
    unsigned narenas = 0;
    len = sizeof narenas;
    mallctl("arenas.narenas", &narenas, &len, NULL, 0);
    int64_t allocated = stat_size("stats.allocated"), resident = stat_size("stats.resident");
    *out = (ll_alloc_stats){
        .allocator = "jemalloc",
        .in_use_bytes = allocated,
        .free_held_bytes = resident >= allocated ? resident - allocated : 0,
        .released_bytes = stat_size("stats.retained"),
        .arenas = narenas,
    };
}

void ll_alloc_release(void)
{
    char name[64];
    snprintf(name, sizeof name, "arena.%u.purge", (unsigned)MALLCTL_ARENAS_ALL);
    mallctl(name, NULL, NULL, NULL, 0);
}
