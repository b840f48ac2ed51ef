/* arena_fanout - every thread gets an arena, and every arena keeps its peak.
 *
 * glibc gives a thread that starts allocating while the others are busy an
 * arena of its own (up to 8 x cores of them), so threads do not queue on one
 * lock. The cost: freed memory is kept per arena. A server whose workers each
 * run a burst now and then keeps one burst per arena, not one per process.
 *
 * The pattern: --threads workers start together (each takes its arena with a
 * first malloc while all are alive: a barrier), then take turns: worker i
 * allocates --burst-bytes in 16 KiB blocks, keeps the last one (the job's
 * result, which main keeps), frees the rest and hands the turn on. Each
 * arena heap now holds one freed burst below a live block: a heap shrinks
 * only from its top, so every arena keeps its burst resident.
 *
 * Go has one heap for every goroutine; this is the C server's "RSS grows with
 * the core count" (glibc's M_ARENA_MAX, MALLOC_ARENA_MAX).
 *
 * The fix (variant fixed): one arena (mallopt(M_ARENA_MAX, 1), or
 * MALLOC_ARENA_MAX=1 in the environment). The bursts now follow each other in
 * the same heap, each reusing the hole the previous one left (its blocks
 * fit it exactly; its result comes from the top, above the last result):
 * one burst is kept, whatever the number of threads. (The price is lock contention, which
 * this kernel does not measure.)
 *
 * Phases: baseline, done (every worker joined: the [truth]).
 */
#include "leaklab.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

enum {
    THREADS = 8,                 /* glibc creates up to 8 arenas before it looks at the core count */
    MAX_THREADS = 8,
    QUICK_BURST_BYTES = 4 << 20, /* x 8 threads = 32 MiB kept */
    SEED_BURST_BYTES = 32 << 20, /* x 8 threads = 256 MiB kept */
    MAX_BURST_BYTES = 48 << 20,  /* a thread arena's heap is at most 64 MiB */
    BLOCK_BYTES = 16 * 1024,     /* from the arena's heap (below the mmap threshold) */
};

#define WORKER_STACK_BYTES (64 * 1024)

static const ll_option options[] = {
    {"threads", "threads", THREADS, THREADS, 1, MAX_THREADS,
     "workers, each taking an arena of its own (glibc's first 8 arenas do not depend on the cores)"},
    {"burst-bytes", "bytes", SEED_BURST_BYTES, QUICK_BURST_BYTES, BLOCK_BYTES, MAX_BURST_BYTES,
     "what each worker allocates and frees in its turn"},
    {0},
};

static atomic_llong records;

static const ll_counter counters[] = {
    {"records", &records},
    {0},
};

struct turns {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    long long next; /* whose turn it is */
};

struct worker_args {
    ll_run *run;
    pthread_barrier_t *attached;
    struct turns *turns;
    char **record; /* main keeps it */
    long long id;
};

/* The worker's first allocation takes its arena (glibc picks one on a
 * thread's first malloc that finds no arena yet). */
static void take_arena(ll_run *run)
{
    void *p = ll_xmalloc(run, 1);
    free(p);
}

/* One job: --burst-bytes of blocks, written; the last one is the job's
 * result, which main keeps (the session record); the rest are freed. */
static void run_burst(struct worker_args *w)
{
    long long n = ll_opt(w->run, "burst-bytes") / BLOCK_BYTES;
    char **blocks = ll_xmalloc(w->run, (size_t)n * sizeof *blocks);
    for (long long i = 0; i < n; i++) {
        blocks[i] = ll_xmalloc(w->run, BLOCK_BYTES);
        memset(blocks[i], (int)(w->id + 1), BLOCK_BYTES);
    }
    *w->record = blocks[n - 1]; /* the result: at the heap's top, above the rest of the burst */
    atomic_fetch_add(&records, 1);
    for (long long i = 0; i < n - 1; i++)
        free(blocks[i]);
    free(blocks);
}

static void *worker(void *arg)
{
    struct worker_args *w = arg;
    take_arena(w->run);
    pthread_barrier_wait(w->attached);

    pthread_mutex_lock(&w->turns->lock);
    while (w->turns->next != w->id)
        pthread_cond_wait(&w->turns->changed, &w->turns->lock);
    pthread_mutex_unlock(&w->turns->lock);

    run_burst(w);

    pthread_mutex_lock(&w->turns->lock);
    w->turns->next++;
    pthread_cond_broadcast(&w->turns->changed);
    pthread_mutex_unlock(&w->turns->lock);
    return NULL;
}

static void run_workers(ll_run *run)
{
    long long count = ll_opt(run, "threads");
    pthread_t threads[MAX_THREADS];
    struct worker_args args[MAX_THREADS];
    char *kept[MAX_THREADS] = {0};
    struct turns turns = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    pthread_barrier_t attached;
    pthread_barrier_init(&attached, NULL, (unsigned)count + 1);
    ll_phase(run, "baseline");

    for (long long i = 0; i < count; i++) {
        args[i] = (struct worker_args){run, &attached, &turns, &kept[i], i};
        ll_thread_start(run, &threads[i], worker, &args[i]);
    }
    pthread_barrier_wait(&attached); /* every worker has its arena; the turns begin with worker 0 */
    for (long long i = 0; i < count; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&attached);
    ll_phase(run, "done");

    for (long long i = 0; i < count; i++)
        free(kept[i]);
    atomic_store(&records, 0);
}

static void run_leaky(ll_run *run) { run_workers(run); }

static void run_fixed(ll_run *run)
{
    LL_FIX(mallopt(M_ARENA_MAX, 1)); /* FIX: one arena for every thread (MALLOC_ARENA_MAX=1) */
    run_workers(run);
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "threads"), (uint64_t)ll_opt(run, "burst-bytes"),
                         "--threads x --burst-bytes", why, why_len);
}

static const ll_variant variants[] = {
    {"leaky", "each worker's arena keeps its freed burst below the result it kept", run_leaky},
    {"fixed", "M_ARENA_MAX 1: the bursts share one heap and reuse one hole", run_fixed},
    {0},
};

static const ll_scenario scenario = {
    .name = "arena_fanout",
    .summary = "Workers in their own glibc arenas each free a burst below the one block they keep:\n"
               "every arena keeps its burst resident, so RSS grows with the number of arenas.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
    .thread_stack_bytes = WORKER_STACK_BYTES,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
