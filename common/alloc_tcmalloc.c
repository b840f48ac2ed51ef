/* alloc_tcmalloc.c - allocator statistics for gperftools' tcmalloc.
 *
 * MallocExtension's numeric properties: generic.current_allocated_bytes is
 * what the program holds; page-heap free bytes plus the central, transfer and
 * per-thread caches are freed memory still mapped (Go: HeapIdle -
 * HeapReleased); pageheap_unmapped_bytes was given back with MADV_DONTNEED
 * (Go: HeapReleased). tcmalloc has no arenas: one page heap, -1. */
#include "leaklab.h"

#include <gperftools/malloc_extension_c.h>

static int64_t property(const char *name)
{
    size_t value = 0;
    return MallocExtension_GetNumericProperty(name, &value) ? (int64_t)value : -1;
}

void ll_alloc_read(ll_alloc_stats *out)
{
    int64_t caches = property("tcmalloc.central_cache_free_bytes") + property("tcmalloc.transfer_cache_free_bytes") +
                     property("tcmalloc.thread_cache_free_bytes");
    *out = (ll_alloc_stats){
        .allocator = "tcmalloc",
        .in_use_bytes = property("generic.current_allocated_bytes"),
        .free_held_bytes = property("tcmalloc.pageheap_free_bytes") + caches,
        .released_bytes = property("tcmalloc.pageheap_unmapped_bytes"),
        .arenas = -1,
    };
}

void ll_alloc_release(void) { MallocExtension_ReleaseFreeMemory(); }
