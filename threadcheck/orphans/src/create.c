/* create.c - pthread_create, interposed: where each thread was created.
 *
 * The creator's stack (its return addresses, libunwind's unw_backtrace) is
 * kept in a table of our own keyed by the new thread's descriptor address
 * (its pthread_t): glibc reuses a descriptor only with its stack block, and
 * the newest record wins. No trampoline around the start routine, so every
 * thread's own stack reads exactly as without orphans. Off with
 * ORPHANS_OPTIONS=creation_stacks=0. */

#include "internal.h"

#include <dlfcn.h>
#include <libunwind.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

enum { NRECORDS = 1 << 16 }; /* open addressing; a full table overwrites (a lost site, not a wrong one) */

typedef struct record {
    _Atomic uintptr_t pd;          /* 0 = empty; (uintptr_t)-1 = being written */
    uint8_t n;
    uintptr_t pcs[OR_CREATION_FRAMES];
} record;

static record *records;            /* or_map()ed at the first creation */
static _Atomic bool enabled = true;
static atomic_flag records_lock = ATOMIC_FLAG_INIT;

void or_creation_enable(bool on) { atomic_store(&enabled, on); }

static size_t slot_of(uintptr_t pd) { return (size_t)((pd >> 6) * 0x9e3779b97f4a7c15ULL >> 48) & (NRECORDS - 1); }

static void remember(uintptr_t pd, const uintptr_t *pcs, size_t n)
{
    while (atomic_flag_test_and_set_explicit(&records_lock, memory_order_acquire))
        sched_yield();
    if (!records)
        records = or_map((size_t)NRECORDS * sizeof *records);
    if (records) {
        size_t b = slot_of(pd);
        for (size_t probe = 0; probe < 64; probe++, b = (b + 1) & (NRECORDS - 1)) {
            uintptr_t k = atomic_load(&records[b].pd);
            if (k == 0 || k == pd || probe == 63) {
                records[b].n = (uint8_t)n;
                memcpy(records[b].pcs, pcs, n * sizeof *pcs);
                atomic_store(&records[b].pd, pd);
                break;
            }
        }
    }
    atomic_flag_clear_explicit(&records_lock, memory_order_release);
}

size_t or_creation_lookup(uintptr_t pd, uintptr_t *pcs, size_t cap)
{
    if (!records || !pd)
        return 0;
    size_t b = slot_of(pd);
    for (size_t probe = 0; probe < 64; probe++, b = (b + 1) & (NRECORDS - 1)) {
        uintptr_t k = atomic_load(&records[b].pd);
        if (k == 0)
            return 0;
        if (k == pd) {
            size_t n = records[b].n < cap ? records[b].n : cap;
            memcpy(pcs, records[b].pcs, n * sizeof *pcs);
            return n;
        }
    }
    return 0;
}

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static create_fn real_create;

__attribute__((visibility("default"))) int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                                                          void *(*start)(void *), void *arg)
{
    if (!real_create) {
        /* pthread_create has two versions in glibc 2.34+; dlvsym asks for the current one. */
        create_fn fn = (create_fn)dlvsym(RTLD_NEXT, "pthread_create", "GLIBC_2.34");
        if (!fn)
            fn = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
        real_create = fn;
    }
    uintptr_t pcs[OR_CREATION_FRAMES + 1];
    int n = 0;
    if (atomic_load(&enabled))
        n = unw_backtrace((void **)pcs, OR_CREATION_FRAMES + 1);
    int err = real_create(thread, attr, start, arg);
    if (err == 0 && n > 1)
        remember((uintptr_t)*thread, pcs + 1, (size_t)n - 1); /* frame 0 is this wrapper */
    return err;
}
