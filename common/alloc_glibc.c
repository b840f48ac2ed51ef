/* alloc_glibc.c - allocator statistics for glibc malloc (ptmalloc2).
 *
 * mallinfo2() sums every arena: uordblks (in use in arenas) + hblkhd (in use
 * in mmap'd chunks) is what the program holds; fordblks is free memory the
 * arenas keep. glibc does not count what it has handed back with
 * MADV_DONTNEED inside an arena (malloc_trim does that page by page), so
 * released_bytes is -1 ("not known"); RSS tells the rest. */
#include "leaklab.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arenas are counted from malloc_info()'s XML: one <heap nr="..."> per arena. */
static int64_t count_arenas(void)
{
    char *xml = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&xml, &len);
    if (!f)
        return -1;
    int64_t arenas = -1;
    if (malloc_info(0, f) == 0) {
        fflush(f);
        arenas = 0;
        for (const char *p = xml; (p = strstr(p, "<heap nr=")); p++)
            arenas++;
    }
    fclose(f);
    free(xml);
    return arenas;
}

void ll_alloc_read(ll_alloc_stats *out)
{
    struct mallinfo2 mi = mallinfo2();
    *out = (ll_alloc_stats){
        .allocator = "glibc",
        .in_use_bytes = (int64_t)(mi.uordblks + mi.hblkhd),
        .free_held_bytes = (int64_t)mi.fordblks,
        .released_bytes = -1,
        .arenas = count_arenas(),
    };
}

void ll_alloc_release(void) { malloc_trim(0); }
