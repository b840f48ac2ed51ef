/* heap.c - the malloc family, interposed, and the exact table of live blocks.
 *
 * Every wrapper calls the next allocator in the lookup chain (glibc's, or a
 * preloaded jemalloc's: dlsym(RTLD_NEXT)) and records the block in a hash
 * table keyed by its address: 1,024 shards, each an open-addressing table in
 * memory of our own (mmap: the table must not use what it tracks) behind its
 * own mutex, so 10,000 threads allocating at once rarely meet.
 *
 * Consistency with the stop (world.c). A wrapper is a critical section from
 * before the real call to after the table update (a thread-local flag, two
 * stores): the stop signal arriving inside one is deferred to the wrapper's
 * end. So no thread is ever stopped holding a shard lock, or between
 * realloc's removal of the old address and its insertion of the new one, or
 * inside the real allocator (whose locks the analysis would otherwise meet).
 * realloc removes the old address BEFORE the real call: once the real
 * realloc frees it, another thread may be handed that address and insert
 * it, and a late removal would delete the newcomer (heaptrack's crossed
 * records, expected/blocked_workers.toml).
 *
 * Bootstrap. dlsym itself may call calloc before the real allocator is
 * known: while a thread resolves, its own calls are served from a static
 * buffer (never freed, never recorded: it belongs to the dynamic loader's
 * error state); other threads wait for the lookup to finish. */

#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

__thread or_tls_state or_tls OR_TLS;

/* ---- the real allocator ------------------------------------------------------------ */

static struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    void *(*memalign)(size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    size_t (*usable_size)(void *);
    struct mallinfo2 (*mallinfo2)(void);
    int (*trim)(size_t);
    int (*info)(int, FILE *);
    void (*stats)(void);
    void (*free_sized)(void *, size_t);                 /* glibc 2.41 (C23); NULL before */
    void (*free_aligned_sized)(void *, size_t, size_t);
} real;

enum { UNRESOLVED = 0, RESOLVING = 1, READY = 2 };
static _Atomic int resolve_state;

/* dlsym's own allocations while resolving: 64 KiB, 16-byte aligned, each
 * preceded by its size (realloc of one needs it). */
enum { BOOT_BYTES = 64 * 1024 };
static _Alignas(16) unsigned char boot[BOOT_BYTES];
static _Atomic size_t boot_used;

static bool from_boot(const void *p)
{
    return (const unsigned char *)p >= boot && (const unsigned char *)p < boot + BOOT_BYTES;
}

static void *boot_alloc(size_t n, size_t align)
{
    if (align < 16)
        align = 16;
    for (;;) {
        size_t used = atomic_load(&boot_used);
        size_t start = (used + 16 + align - 1) & ~(align - 1);
        if (start + n > BOOT_BYTES || n > BOOT_BYTES)
            return NULL;
        if (atomic_compare_exchange_weak(&boot_used, &used, start + n)) {
            memcpy(boot + start - sizeof n, &n, sizeof n);
            return boot + start; /* static: already zero */
        }
    }
}

static size_t boot_size(const void *p)
{
    size_t n;
    memcpy(&n, (const unsigned char *)p - sizeof n, sizeof n);
    return n;
}

static void resolve(void)
{
    int expected = UNRESOLVED;
    if (atomic_compare_exchange_strong(&resolve_state, &expected, RESOLVING)) {
        or_tls.resolving = 1;
#define NEXT(field, name) real.field = (__typeof__(real.field))dlsym(RTLD_NEXT, name)
        NEXT(malloc, "malloc");
        NEXT(calloc, "calloc");
        NEXT(realloc, "realloc");
        NEXT(free, "free");
        NEXT(memalign, "memalign");
        NEXT(posix_memalign, "posix_memalign");
        NEXT(aligned_alloc, "aligned_alloc");
        NEXT(valloc, "valloc");
        NEXT(pvalloc, "pvalloc");
        NEXT(usable_size, "malloc_usable_size");
        NEXT(mallinfo2, "mallinfo2");
        NEXT(trim, "malloc_trim");
        NEXT(info, "malloc_info");
        NEXT(stats, "malloc_stats");
        NEXT(free_sized, "free_sized");
        NEXT(free_aligned_sized, "free_aligned_sized");
#undef NEXT
        or_tls.resolving = 0;
        if (!real.malloc || !real.calloc || !real.realloc || !real.free) {
            /* No allocator after us: nothing can run. Say so the only way left. */
            static const char msg[] = "orphans: no malloc found after liborphans (dlsym RTLD_NEXT)\n";
            (void)!write(2, msg, sizeof msg - 1);
            _exit(127);
        }
        atomic_store(&resolve_state, READY);
        return;
    }
    while (atomic_load(&resolve_state) != READY)
        sched_yield(); /* another thread is resolving: a few microseconds, once */
}

/* ---- the table ------------------------------------------------------------------------ */

enum { NSHARDS = 1024, FIRST_CAP = 16, EMPTY = 0, TOMB = 1 };

typedef struct entry {
    uintptr_t key;
    size_t size;
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry *slots;
    size_t cap, used, live; /* used counts tombstones */
} __attribute__((aligned(64))) shard;

/* Initialised statically, never in a constructor: a thread started by an
 * earlier constructor (another library's) may already hold a shard's lock
 * when ours runs, and re-initialising a held mutex would let two threads
 * into one shard. */
static shard shards[NSHARDS] = {[0 ... NSHARDS - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER}};
static _Atomic bool table_lost; /* an insert failed for want of memory: the table is no longer exact */
static _Atomic size_t live_blocks;

static inline uint64_t hash_of(uintptr_t p)
{
    uint64_t h = (uint64_t)(p >> 4) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

static inline shard *shard_of(uint64_t h) { return &shards[h >> (64 - 10)]; }

/* Slot arrays. A shard's array below a page comes from 64 KiB slabs of our
 * own, size classes of 256 B to 2 KiB, reused when a shard outgrows them:
 * a page per shard would cost 4 MiB for 1,024 shards whatever the heap
 * (1,300 B per block on a 3,000-block program). Larger arrays are mappings
 * of their own. The slab lock is taken only under a shard lock (in grow),
 * so no thread holds it at a fork (fork_prepare holds every shard lock). */
enum { SLAB_BYTES = 64 * 1024, SMALL_MIN = FIRST_CAP * 16, SMALL_MAX = 2048, SMALL_CLASSES = 4 };

static struct {
    atomic_flag lock;
    unsigned char *at, *end;
    void *free_list[SMALL_CLASSES]; /* 256, 512, 1024, 2048 bytes: first word links */
    _Atomic size_t mapped;          /* slabs and large arrays, bytes */
} slots_mem = {.lock = ATOMIC_FLAG_INIT};

static int small_class(size_t bytes)
{
    int c = 0;
    for (size_t b = SMALL_MIN; b < bytes; b *= 2)
        c++;
    return c;
}

static entry *slots_alloc(size_t cap)
{
    size_t bytes = cap * sizeof(entry);
    if (bytes > SMALL_MAX) {
        entry *p = or_map(bytes);
        if (p)
            atomic_fetch_add(&slots_mem.mapped, (bytes + 4095) & ~(size_t)4095);
        return p;
    }
    int c = small_class(bytes);
    while (atomic_flag_test_and_set_explicit(&slots_mem.lock, memory_order_acquire))
        sched_yield();
    unsigned char *p = slots_mem.free_list[c];
    if (p) {
        memcpy(&slots_mem.free_list[c], p, sizeof(void *));
    } else {
        if (!slots_mem.at || slots_mem.at + bytes > slots_mem.end) {
            unsigned char *slab = or_map(SLAB_BYTES);
            if (slab) {
                slots_mem.at = slab;
                slots_mem.end = slab + SLAB_BYTES;
                atomic_fetch_add(&slots_mem.mapped, SLAB_BYTES);
            }
        }
        if (slots_mem.at && slots_mem.at + bytes <= slots_mem.end) {
            p = slots_mem.at;
            slots_mem.at += bytes;
        }
    }
    atomic_flag_clear_explicit(&slots_mem.lock, memory_order_release);
    if (p)
        memset(p, 0, bytes);
    return (entry *)p;
}

static void slots_free(entry *p, size_t cap)
{
    size_t bytes = cap * sizeof(entry);
    if (!p)
        return;
    if (bytes > SMALL_MAX) {
        or_unmap(p, bytes);
        atomic_fetch_sub(&slots_mem.mapped, (bytes + 4095) & ~(size_t)4095);
        return;
    }
    int c = small_class(bytes);
    while (atomic_flag_test_and_set_explicit(&slots_mem.lock, memory_order_acquire))
        sched_yield();
    memcpy(p, &slots_mem.free_list[c], sizeof(void *));
    slots_mem.free_list[c] = p;
    atomic_flag_clear_explicit(&slots_mem.lock, memory_order_release);
}

/* Grows (or rehashes) a shard to load at most 1/2 (it grows again at 3/4). */
static bool grow(shard *s)
{
    size_t cap = FIRST_CAP;
    while (cap < 2 * (s->live + 1))
        cap *= 2;
    entry *fresh = slots_alloc(cap);
    if (!fresh)
        return false;
    for (size_t i = 0; i < s->cap; i++) {
        uintptr_t k = s->slots[i].key;
        if (k == EMPTY || k == TOMB)
            continue;
        size_t b = hash_of(k) & (cap - 1);
        while (fresh[b].key != EMPTY)
            b = (b + 1) & (cap - 1);
        fresh[b] = s->slots[i];
    }
    slots_free(s->slots, s->cap);
    s->slots = fresh;
    s->cap = cap;
    s->used = s->live;
    return true;
}

static void table_insert(void *p, size_t size)
{
    uintptr_t key = (uintptr_t)p;
    uint64_t h = hash_of(key);
    shard *s = shard_of(h);
    pthread_mutex_lock(&s->lock);
    if ((s->used + 1) * 4 > s->cap * 3 && !grow(s)) {
        atomic_store(&table_lost, true);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    size_t b = h & (s->cap - 1), tomb = SIZE_MAX;
    for (;; b = (b + 1) & (s->cap - 1)) {
        uintptr_t k = s->slots[b].key;
        if (k == key) { /* cannot happen with a correct allocator; keep the newest size */
            s->slots[b].size = size;
            pthread_mutex_unlock(&s->lock);
            return;
        }
        if (k == TOMB && tomb == SIZE_MAX)
            tomb = b;
        if (k == EMPTY)
            break;
    }
    if (tomb != SIZE_MAX)
        b = tomb;
    else
        s->used++;
    s->slots[b] = (entry){key, size};
    s->live++;
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
}

/* Removes p; returns true (and its size) if it was there. */
static bool table_remove(void *p, size_t *size)
{
    uintptr_t key = (uintptr_t)p;
    uint64_t h = hash_of(key);
    shard *s = shard_of(h);
    bool found = false;
    pthread_mutex_lock(&s->lock);
    if (s->cap) {
        for (size_t b = h & (s->cap - 1);; b = (b + 1) & (s->cap - 1)) {
            uintptr_t k = s->slots[b].key;
            if (k == EMPTY)
                break;
            if (k == key) {
                if (size)
                    *size = s->slots[b].size;
                s->slots[b].key = TOMB;
                s->live--;
                found = true;
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (found)
        atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
    return found;
}

size_t or_heap_count(void) { return atomic_load(&live_blocks); }

size_t or_heap_table_bytes(void) { return atomic_load(&slots_mem.mapped); }

size_t or_heap_snapshot(or_block *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < NSHARDS; i++) {
        const shard *s = &shards[i];
        for (size_t b = 0; b < s->cap; b++) {
            uintptr_t k = s->slots[b].key;
            if (k == EMPTY || k == TOMB)
                continue;
            if (n < cap)
                out[n] = (or_block){k, s->slots[b].size};
            n++;
        }
    }
    return n;
}

/* fork: no shard may stay locked in the child. */
static void fork_prepare(void)
{
    for (size_t i = 0; i < NSHARDS; i++)
        pthread_mutex_lock(&shards[i].lock);
}

static void fork_parent(void)
{
    for (size_t i = NSHARDS; i-- > 0;)
        pthread_mutex_unlock(&shards[i].lock);
}

static void fork_child(void)
{
    for (size_t i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&shards[i].lock, NULL);
}

__attribute__((constructor)) static void heap_init(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child); /* fails only without memory */
}

/* ---- critical sections ---------------------------------------------------------------- */

static inline void enter(void) { or_tls.critical++; }

static inline void leave(void)
{
    if (--or_tls.critical == 0 && or_tls.stop_pending)
        or_world_safe_point();
}

static inline bool ready(void)
{
    if (__builtin_expect(atomic_load_explicit(&resolve_state, memory_order_acquire) == READY, 1))
        return true;
    if (or_tls.resolving)
        return false;
    resolve();
    return true;
}

/* ---- the wrappers -------------------------------------------------------------------------- */

extern void *or_malloc_self(size_t) __attribute__((alias("malloc"), visibility("hidden"), malloc, nothrow, leaf, alloc_size(1)));

bool or_heap_interposed(void)
{
    return dlsym(RTLD_DEFAULT, "malloc") == (void *)or_malloc_self && !atomic_load(&table_lost);
}

uintptr_t or_real_malloc_address(void)
{
    ready();
    return (uintptr_t)real.malloc;
}

void *or_real_malloc(size_t n)
{
    if (!ready())
        return boot_alloc(n, 16);
    return real.malloc(n);
}

void or_real_free(void *p)
{
    if (p && !from_boot(p))
        real.free(p);
}

__attribute__((visibility("default"))) void *malloc(size_t n)
{
    if (!ready())
        return boot_alloc(n, 16);
    enter();
    void *p = real.malloc(n);
    if (p)
        table_insert(p, n);
    leave();
    return p;
}

__attribute__((visibility("default"))) void *calloc(size_t count, size_t n)
{
    size_t total;
    if (__builtin_mul_overflow(count, n, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (!ready())
        return boot_alloc(total, 16);
    enter();
    void *p = real.calloc(count, n);
    if (p)
        table_insert(p, total);
    leave();
    return p;
}

__attribute__((visibility("default"))) void free(void *p)
{
    if (!p || from_boot(p))
        return;
    if (!ready())
        return; /* a block from before the lookup cannot exist */
    enter();
    table_remove(p, NULL);
    real.free(p);
    leave();
}

/* C23's sized frees (glibc 2.41). Defined here whatever the glibc, so a
 * program built against 2.41 reaches these and not glibc's (which would
 * free behind the table's back); the real one is called where it exists,
 * free where it does not (the size is only a hint). */
__attribute__((visibility("default"))) void free_sized(void *p, size_t n)
{
    if (!p || from_boot(p))
        return;
    if (!ready())
        return;
    enter();
    table_remove(p, NULL);
    if (real.free_sized)
        real.free_sized(p, n);
    else
        real.free(p);
    leave();
}

__attribute__((visibility("default"))) void free_aligned_sized(void *p, size_t align, size_t n)
{
    if (!p || from_boot(p))
        return;
    if (!ready())
        return;
    enter();
    table_remove(p, NULL);
    if (real.free_aligned_sized)
        real.free_aligned_sized(p, align, n);
    else
        real.free(p);
    leave();
}

__attribute__((visibility("default"))) void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (from_boot(p)) {
        void *q = malloc(n);
        if (q) {
            size_t old = boot_size(p);
            memcpy(q, p, old < n ? old : n);
        }
        return q;
    }
    if (!ready())
        return NULL;
    enter();
    size_t old = 0;
    bool known = table_remove(p, &old);
    void *q = real.realloc(p, n);
    if (q)
        table_insert(q, n);
    else if (known && n != 0)
        table_insert(p, old); /* refused: the old block is still there */
    leave();
    return q;
}

__attribute__((visibility("default"))) void *reallocarray(void *p, size_t count, size_t n)
{
    size_t total;
    if (__builtin_mul_overflow(count, n, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

static void *aligned(void *(*fn)(size_t, size_t), size_t align, size_t n)
{
    if (!ready())
        return boot_alloc(n, align);
    enter();
    void *p = fn(align, n);
    if (p)
        table_insert(p, n);
    leave();
    return p;
}

__attribute__((visibility("default"))) void *memalign(size_t align, size_t n)
{
    if (!ready())
        return boot_alloc(n, align);
    return aligned(real.memalign, align, n);
}

__attribute__((visibility("default"))) void *aligned_alloc(size_t align, size_t n)
{
    if (!ready())
        return boot_alloc(n, align);
    return aligned(real.aligned_alloc, align, n);
}

__attribute__((visibility("default"))) int posix_memalign(void **out, size_t align, size_t n)
{
    if (!ready()) {
        void *p = boot_alloc(n, align);
        if (!p)
            return ENOMEM;
        *out = p;
        return 0;
    }
    enter();
    int err = real.posix_memalign(out, align, n);
    if (err == 0 && *out)
        table_insert(*out, n);
    leave();
    return err;
}

__attribute__((visibility("default"))) void *valloc(size_t n)
{
    if (!ready())
        return boot_alloc(n, 4096);
    enter();
    void *p = real.valloc(n);
    if (p)
        table_insert(p, n);
    leave();
    return p;
}

__attribute__((visibility("default"))) void *pvalloc(size_t n)
{
    if (!ready())
        return boot_alloc(n, 4096);
    enter();
    void *p = real.pvalloc(n);
    if (p)
        table_insert(p, n);
    leave();
    return p;
}

__attribute__((visibility("default"))) size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    if (from_boot(p))
        return boot_size(p);
    if (!ready() || !real.usable_size)
        return 0;
    return real.usable_size(p);
}

/* The statistics and trimming calls take the allocator's locks: wrapped as
 * critical sections too, so no thread is stopped holding one. */
__attribute__((visibility("default"))) struct mallinfo2 mallinfo2(void)
{
    struct mallinfo2 m = {0};
    if (!ready() || !real.mallinfo2)
        return m;
    enter();
    m = real.mallinfo2();
    leave();
    return m;
}

__attribute__((visibility("default"))) int malloc_trim(size_t pad)
{
    if (!ready() || !real.trim)
        return 0;
    enter();
    int r = real.trim(pad);
    leave();
    return r;
}

__attribute__((visibility("default"))) int malloc_info(int options, FILE *out)
{
    if (!ready() || !real.info) {
        errno = ENOSYS;
        return -1;
    }
    enter();
    int r = real.info(options, out);
    leave();
    return r;
}

__attribute__((visibility("default"))) void malloc_stats(void)
{
    if (!ready() || !real.stats)
        return;
    enter();
    real.stats();
    leave();
}
