/* delayed_exit - freed is not returned: every worker exits, RSS stays high.
 *
 * The seed's second lesson. Once the goroutines of blocked_workers were fixed
 * to give up after five seconds,
 *
 *     go func() {
 *         var s []int64
 *         for j := 0; j < 10000; j++ { s = append(s, rand.Int63()) }
 *         select { case <-c: case <-time.After(5 * time.Second): }
 *     }()
 *
 * the goroutine count fell and the GC collected the heap, yet RSS stayed
 * high: Go keeps freed spans (HeapIdle) instead of returning them to the OS
 * (HeapReleased) until its scavenger or debug.FreeOSMemory() runs, and people
 * went on hunting a leak that was no longer there. C allocators keep freed
 * memory too (docs/allocators.md): glibc inside its arena heaps, which only
 * shrink from the top; tcmalloc in its thread/central caches and page heap,
 * returned only from inside free(); jemalloc as dirty pages, purged after
 * 10 s - but only when an arena is next used (no background thread).
 *
 * The pattern: --workers threads each grow a buffer of --elements int64 the
 * way Go's append grows a slice (doubling, then +25% and 192 elements:
 * 89,184 bytes for the seed's 10,000), leave --records small records with
 * main (a session summary the server keeps), hold the buffer --hold-ms (the
 * seed's 5 s), free it and exit; main joins them.
 *
 * Why the records: every long-running server keeps some, and they make
 * glibc's retention visible. A record comes from the worker's arena as soon
 * as its buffer is full, so it tends to land just above it (measured: 54-58%
 * within 100 KB above; the rest fill holes other threads' growth left). Once
 * the buffers are freed, live records sit between the holes and at the top of
 * every arena heap: glibc keeps 88-95% of the payload resident (seed scale).
 * Without them (--records 0) each freed buffer merges into its heap's top and
 * free() trims it: 936 MB -> 64 MB, nothing to teach about glibc, though
 * tcmalloc (3.4 GB) and jemalloc (200 MB) still keep much of it.
 *
 * What the tools see, variant retained: at `exited` threads == 1 and in use
 * is the records alone (<= 2% of the payload), but RSS still holds most of
 * the payload, tcmalloc's nearly four times it (free_held_bytes says where).
 * Retention, not a leak: in use fell, RSS did not, and at `released` one
 * release call (ll_alloc_release) brings RSS down. --idle-ms watches what the
 * allocator gives back on its own meanwhile: nothing, for all three.
 *
 * The fix (variant returned): when a burst of work is over, ask the allocator
 * to give the freed memory back (Go: debug.FreeOSMemory()), or configure it to
 * do so sooner (the knobs in docs/allocators.md).
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

enum {
    SEED_WORKERS = 10000,  /* the seed's 10,000 goroutines */
    QUICK_WORKERS = 1000,
    SEED_ELEMENTS = 10000, /* each appends 10,000 int64 */
    MAX_WORKERS = 100000,
    MAX_ELEMENTS = 100000000,
    SEED_RECORDS = 1,      /* one session summary per worker pins its buffer's neighbourhood */
    MAX_RECORDS = 1000,
    SEED_HOLD_MS = 5000,   /* time.After(5 * time.Second) */
    /* No check depends on the hold (its clock starts after the `allocated`
     * snapshot); 200 ms is 20 samples of the runner's 10 ms RSS sampler. */
    QUICK_HOLD_MS = 200,
    MAX_MS = 600000,
    IDLE_STEP_MS = 1000,   /* one `idle` snapshot a second while --idle-ms runs */
    MIN_IDLE_STEP_MS = 10,
    GO_SMALL_SLICE = 256,  /* Go's growslice: double below 256 elements, then +25% + 192 */
};

/* As in blocked_workers: 10,000 default 8 MiB stacks reserve 80 GiB; a worker
 * needs a few KiB (fill_buffer -> realloc, pthread_cond_timedwait). */
#define WORKER_STACK_BYTES (64 * 1024)

static const ll_option options[] = {
    {"workers", "threads", SEED_WORKERS, QUICK_WORKERS, 1, MAX_WORKERS, "worker threads to start"},
    {"elements", "int64 per worker", SEED_ELEMENTS, SEED_ELEMENTS, 1, MAX_ELEMENTS,
     "random int64 each worker appends to its buffer (grown like Go's append)"},
    {"records", "per worker", SEED_RECORDS, SEED_RECORDS, 0, MAX_RECORDS,
     "small long-lived records each worker leaves with main, allocated after its buffer;\n"
     "                       0 = buffers alone (glibc then trims nearly everything on free)"},
    {"hold-ms", "ms", SEED_HOLD_MS, QUICK_HOLD_MS, 0, MAX_MS, "how long each worker holds its full buffer"},
    {"idle-ms", "ms", 0, 0, 0, MAX_MS,
     "after the join, watch the allocator on its own this long (0 = no `idle` phase)"},
    {"idle-step-ms", "ms", IDLE_STEP_MS, IDLE_STEP_MS, MIN_IDLE_STEP_MS, MAX_MS,
     "one `idle` snapshot every this many ms during --idle-ms"},
    {0},
};

/* A session summary the server keeps after the session ends: 64 bytes. */
struct record {
    uint64_t worker, elements, capacity;
    int64_t checksum;
    char note[32];
};

static atomic_llong holding; /* workers holding a full buffer */
static atomic_llong kept;    /* records main keeps */

static const ll_counter counters[] = {
    {"holding", &holding},
    {"records", &kept},
    {0},
};

/* The hold's clock starts once main has taken the `allocated` snapshot, so
 * that snapshot never races the first free. */
struct hold {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast once: the clock starts */
    bool started;
    struct timespec deadline;
};

struct worker_args {
    ll_run *run;
    pthread_barrier_t *filled; /* every worker and main: "all buffers full" */
    struct hold *hold;
    struct record **records;   /* this worker's slots in main's registry */
    long long elements, nrecords;
    uint64_t seed, id;
};

/* Go's growslice (1.18+): double while small, then grow by a quarter plus
 * 192 elements. Without the size-class rounding: 10,000 elements end in a
 * capacity of 11,148 (89,184 bytes). */
static size_t next_capacity(size_t cap)
{
    if (cap == 0)
        return 1;
    return cap < GO_SMALL_SLICE ? 2 * cap : cap + (cap + 3 * GO_SMALL_SLICE) / 4;
}

static size_t final_capacity(long long elements)
{
    size_t cap = 0;
    while (cap < (size_t)elements)
        cap = next_capacity(cap);
    return cap;
}

/* s = append(s, rand.Int63()), `elements` times. noinline so profiles and
 * memcheck name this function as the one that allocated the buffers. */
__attribute__((noinline)) static int64_t *fill_buffer(ll_run *run, long long elements, uint64_t seed)
{
    int64_t *values = NULL;
    size_t len = 0, cap = 0;
    for (long long i = 0; i < elements; i++) {
        if (len == cap) {
            cap = next_capacity(cap);
            values = ll_xrealloc(run, values, cap * sizeof *values);
        }
        values[len++] = (int64_t)(ll_rand_next(&seed) >> 1); /* rand.Int63: non-negative */
    }
    return values;
}

/* The server state: small records that outlive the worker. Allocated by the
 * worker (so from its arena, among the buffers), owned by main. */
__attribute__((noinline)) static void keep_records(struct worker_args *w, const int64_t *values)
{
    int64_t sum = 0;
    for (long long i = 0; i < w->elements; i++)
        sum += values[i] & 0xffff;
    for (long long j = 0; j < w->nrecords; j++) {
        struct record *r = ll_xmalloc(w->run, sizeof *r);
        *r = (struct record){w->id, (uint64_t)w->elements, final_capacity(w->elements), sum, "session summary"};
        w->records[j] = r;
        atomic_fetch_add(&kept, 1);
    }
}

/* select { case <-c: case <-time.After(hold) }: wait for the clock to start,
 * then until its deadline. Nobody signals the end; only the deadline does. */
static void hold_buffer(struct hold *h)
{
    pthread_mutex_lock(&h->lock);
    while (!h->started)
        pthread_cond_wait(&h->cond, &h->lock);
    while (pthread_cond_timedwait(&h->cond, &h->lock, &h->deadline) != ETIMEDOUT)
        ; /* spurious wake-up: the deadline has not passed */
    pthread_mutex_unlock(&h->lock);
}

static void *worker(void *arg)
{
    struct worker_args *w = arg;
    int64_t *values = fill_buffer(w->run, w->elements, w->seed);
    keep_records(w, values);
    atomic_fetch_add(&holding, 1);
    pthread_barrier_wait(w->filled);

    hold_buffer(w->hold);

    free(values); /* the buffer is freed: in use falls; what RSS does is the allocator's business */
    atomic_fetch_sub(&holding, 1);
    return NULL;
}

struct workers {
    pthread_t *threads;
    struct worker_args *args;
    struct record **records; /* main's registry: workers x --records slots */
    pthread_barrier_t filled;
    struct hold hold;
    long long count, nrecords;
};

/* Now + ms on CLOCK_MONOTONIC, the clock of every timed wait here. */
static struct timespec after_ms(long long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long long ns = t.tv_nsec + (ms % 1000) * 1000000;
    t.tv_sec += ms / 1000 + ns / 1000000000;
    t.tv_nsec = ns % 1000000000;
    return t;
}

/* Starts the workers, snapshots `allocated` once every one of them sleeps in
 * hold_buffer with its buffer full, lets the hold run out and joins them:
 * snapshot `exited` is the caller's. */
static void run_workers(ll_run *run, struct workers *ws)
{
    ws->count = ll_opt(run, "workers");
    ws->nrecords = ll_opt(run, "records");
    ws->threads = ll_xmalloc(run, (size_t)ws->count * sizeof *ws->threads);
    ws->args = ll_xmalloc(run, (size_t)ws->count * sizeof *ws->args);
    ws->records = ll_xmalloc(run, (size_t)(ws->count * ws->nrecords + 1) * sizeof *ws->records);
    pthread_barrier_init(&ws->filled, NULL, (unsigned)ws->count + 1);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ws->hold.cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&ws->hold.lock, NULL);
    ws->hold.started = false;

    for (long long i = 0; i < ws->count; i++) {
        ws->args[i] = (struct worker_args){run, &ws->filled, &ws->hold, &ws->records[i * ws->nrecords],
                                           ll_opt(run, "elements"), ws->nrecords, (uint64_t)i + 1, (uint64_t)i};
        ll_thread_start(run, &ws->threads[i], worker, &ws->args[i]);
    }
    pthread_barrier_wait(&ws->filled);
    /* Past the barrier is not yet in the hold (measured: 150 of 1,000
     * workers still on their way out of pthread_barrier_wait when the census
     * read them, on a fast machine). The snapshot must see every one of them
     * asleep in hold_buffer, so ask the kernel, thread by thread. */
    for (long long i = 0; i < ws->count; i++)
        ll_await_parked(run, ws->threads[i], &ws->hold.cond, sizeof ws->hold.cond);
    ll_phase(run, "allocated");

    pthread_mutex_lock(&ws->hold.lock); /* start the clock */
    ws->hold.deadline = after_ms(ll_opt(run, "hold-ms"));
    ws->hold.started = true;
    pthread_cond_broadcast(&ws->hold.cond);
    pthread_mutex_unlock(&ws->hold.lock);

    for (long long i = 0; i < ws->count; i++)
        pthread_join(ws->threads[i], NULL);
    pthread_barrier_destroy(&ws->filled);
    free(ws->args);
    free(ws->threads);
}

/* `idle`: a snapshot every --idle-step-ms until --idle-ms has passed, so the
 * timeline shows what the allocator returns on its own (decay, release rate).
 * Main only waits: a timed wait on a condition nobody signals. */
static void watch_idle(ll_run *run, struct hold *h)
{
    long long idle = ll_opt(run, "idle-ms"), step = ll_opt(run, "idle-step-ms");
    struct timespec end = after_ms(idle);
    pthread_mutex_lock(&h->lock);
    for (long long waited = 0; waited < idle; waited += step) {
        struct timespec next = after_ms(step);
        if (waited + step >= idle)
            next = end;
        while (pthread_cond_timedwait(&h->cond, &h->lock, &next) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(&h->lock);
        ll_phase(run, "idle");
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

/* The release call, `released`, then the server shuts down: main frees the
 * records it kept. */
static void release_and_finish(ll_run *run, struct workers *ws)
{
    watch_idle(run, &ws->hold);
    ll_alloc_release(); /* Go: debug.FreeOSMemory() */
    ll_phase(run, "released");

    for (long long i = 0; i < ws->count * ws->nrecords; i++)
        free(ws->records[i]);
    atomic_store(&kept, 0);
    free(ws->records);
    pthread_cond_destroy(&ws->hold.cond);
    pthread_mutex_destroy(&ws->hold.lock);
}

static void run_retained(ll_run *run)
{
    struct workers ws;
    run_workers(run, &ws);
    /* Every worker freed its buffer and exited. Nothing asks the allocator to
     * give the freed memory back: RSS stays where the burst left it. */
    ll_phase(run, "exited");
    release_and_finish(run, &ws);
}

static void run_returned(ll_run *run)
{
    struct workers ws;
    run_workers(run, &ws);
    ll_alloc_release(); /* FIX: the burst is over: return the freed memory now (Go: debug.FreeOSMemory()) */
    ll_phase(run, "exited");
    release_and_finish(run, &ws);
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    /* What the buffers really occupy: their final capacity, not --elements. */
    return ll_payload_of(out, (uint64_t)ll_opt(run, "workers"),
                         (uint64_t)final_capacity(ll_opt(run, "elements")) * sizeof(int64_t),
                         "--workers x (--elements grown like append) x 8", why, why_len);
}

static const ll_variant variants[] = {
    {"retained", "workers free and exit; the allocator keeps the freed memory until `released`", run_retained},
    {"returned", "main asks the allocator to return the freed memory as soon as the workers are joined",
     run_returned},
    {0},
};

static const ll_scenario scenario = {
    .name = "delayed_exit",
    .summary = "Workers fill a buffer, hold it --hold-ms, free it and exit; every thread is gone\n"
               "and in-use memory is tiny, yet RSS stays high: the allocator keeps what was freed.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
    .thread_stack_bytes = WORKER_STACK_BYTES,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
