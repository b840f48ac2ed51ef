/* tcmalloc_cache - idle threads' caches keep what they freed.
 *
 * tcmalloc (gperftools) gives every thread a cache of freed small objects,
 * so most malloc/free pairs take no lock. A thread that freed a lot and then
 * went idle (a pool worker waiting for the next job) keeps its cache, and
 * nothing returns it: MallocExtension::ReleaseFreeMemory() gives back the
 * page heap's free spans only, and a span is free only when every object of
 * it is back in the central lists. Freed objects a thread still caches are
 * neither in use nor returnable.
 *
 * The pattern: --threads pool workers each run --jobs jobs (a job allocates
 * --objects objects of 1 KiB, its buffers, and frees them), then wait for the
 * next job (a condition variable nobody signals until the end). The jobs
 * warm each thread's cache the way a server's traffic does: its limit
 * starts at 64 KiB and grows by 64 KiB each time the thread fills it, and
 * each free list's length limit grows with use, until one job's objects fit. Main then calls
 * ReleaseFreeMemory() (phase released: the [truth]), as a careful server
 * does after a burst.
 *
 * Go's view: Go's per-P caches (mcache) hold at most one span per size
 * class; freed memory goes back to the heap at GC and is scavenged.
 *
 * The fix (variant returned): each worker, before it waits, calls
 * MallocExtension::MarkThreadIdle(), which hands its cache back to the
 * central lists; then ReleaseFreeMemory() returns the empty spans.
 *
 * Phases: baseline, idle (every worker waits; nothing released yet),
 * released.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    QUICK_THREADS = 8,   /* x 1 MiB = 8 MiB */
    SEED_THREADS = 12,   /* x 2 MiB = 24 MiB: under the 32 MiB all thread caches may hold together */
    MAX_THREADS = 1024,
    QUICK_OBJECTS = 1024,
    SEED_OBJECTS = 2048, /* x 1 KiB: 2 MiB, under a thread cache's 4 MiB limit */
    MAX_OBJECTS = 1 << 20,
    OBJECT_BYTES = 1024,
    JOBS = 16,           /* enough for a cache limit of 64 KiB to grow past 2 MiB (measured) */
    MAX_JOBS = 10000,
};

#define WORKER_STACK_BYTES (64 * 1024)

/* gperftools' C interface, weak: the kernel means something only under
 * tcmalloc, and says so (exit 77) elsewhere. */
void MallocExtension_MarkThreadIdle(void) __attribute__((weak));
void MallocExtension_ReleaseFreeMemory(void) __attribute__((weak));
int MallocExtension_GetNumericProperty(const char *property, size_t *value) __attribute__((weak));

static const ll_option options[] = {
    {"threads", "threads", SEED_THREADS, QUICK_THREADS, 1, MAX_THREADS, "pool workers"},
    {"objects", "objects", SEED_OBJECTS, QUICK_OBJECTS, 1, MAX_OBJECTS, "1 KiB objects each job allocates and frees"},
    {"jobs", "jobs", JOBS, JOBS, 1, MAX_JOBS,
     "jobs each worker runs before it idles: each one grows the thread's cache limit (64 KiB a time)"},
    {0},
};

static atomic_llong idle_workers;
static atomic_llong thread_cache_bytes; /* tcmalloc's own figure, set before each phase */

static const ll_counter counters[] = {
    {"idle", &idle_workers},
    {"thread_cache_bytes", &thread_cache_bytes},
    {0},
};

struct pool {
    ll_run *run;
    pthread_barrier_t worked; /* every worker: all jobs are done before any worker idles */
    pthread_mutex_t lock;
    pthread_cond_t work; /* broadcast once: shut down */
    bool shutdown;
    bool mark_idle;
    long long objects, jobs;
};

/* One job: its buffers allocated, written, freed. */
static void run_job(struct pool *p, char **objs)
{
    for (long long i = 0; i < p->objects; i++) {
        objs[i] = ll_xmalloc(p->run, OBJECT_BYTES);
        memset(objs[i], 'j', OBJECT_BYTES);
    }
    for (long long i = 0; i < p->objects; i++)
        free(objs[i]);
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    char **objs = ll_xmalloc(p->run, (size_t)p->objects * sizeof *objs);
    for (long long j = 0; j < p->jobs; j++)
        run_job(p, objs);
    free(objs);
    /* No worker's freed objects serve another's jobs: the peak is every
     * worker's, in both variants, whatever the scheduling. */
    pthread_barrier_wait(&p->worked);
    if (p->mark_idle)
        MallocExtension_MarkThreadIdle();

    pthread_mutex_lock(&p->lock);
    atomic_fetch_add(&idle_workers, 1);
    while (!p->shutdown)
        pthread_cond_wait(&p->work, &p->lock);
    pthread_mutex_unlock(&p->lock);
    atomic_fetch_sub(&idle_workers, 1);
    return NULL;
}

static void read_cache(void)
{
    size_t bytes = 0;
    MallocExtension_GetNumericProperty("tcmalloc.thread_cache_free_bytes", &bytes);
    atomic_store(&thread_cache_bytes, (long long)bytes);
}

static void run_pool(ll_run *run, bool mark_idle)
{
    if (!MallocExtension_ReleaseFreeMemory || !MallocExtension_MarkThreadIdle || !MallocExtension_GetNumericProperty)
        ll_skip(run, "tcmalloc's thread caches: run the -tcmalloc binary (--allocator tcmalloc)");
    long long n = ll_opt(run, "threads");
    struct pool p = {.run = run, .lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
                     .mark_idle = mark_idle, .objects = ll_opt(run, "objects"), .jobs = ll_opt(run, "jobs")};
    pthread_t *threads = ll_xmalloc(run, (size_t)n * sizeof *threads);
    pthread_barrier_init(&p.worked, NULL, (unsigned)n);
    read_cache();
    ll_phase(run, "baseline");

    for (long long i = 0; i < n; i++)
        ll_thread_start(run, &threads[i], worker, &p);
    for (long long i = 0; i < n; i++)
        ll_await_parked(run, threads[i], &p.work, sizeof p.work); /* each has freed its job and waits */
    read_cache();
    ll_phase(run, "idle");

    MallocExtension_ReleaseFreeMemory(); /* what a careful server calls after a burst */
    read_cache();
    ll_phase(run, "released");

    pthread_mutex_lock(&p.lock);
    p.shutdown = true;
    pthread_cond_broadcast(&p.work);
    pthread_mutex_unlock(&p.lock);
    for (long long i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&p.worked);
    free(threads);
}

static void run_kept(ll_run *run) { run_pool(run, false); }

static void run_returned(ll_run *run)
{
    run_pool(run, LL_FIX_VALUE(true, false)); /* FIX: each worker hands its cache back before it idles */
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "threads"), (uint64_t)ll_opt(run, "objects") * OBJECT_BYTES,
                         "--threads x --objects x 1 KiB", why, why_len);
}

static const ll_variant variants[] = {
    {"kept", "idle workers keep their thread caches; ReleaseFreeMemory cannot reach them", run_kept},
    {"returned", "each worker calls MarkThreadIdle before it waits; ReleaseFreeMemory returns it all",
     run_returned},
    {0},
};

static const ll_scenario scenario = {
    .name = "tcmalloc_cache",
    .summary = "Pool workers free their jobs' objects and idle: tcmalloc's thread caches keep them,\n"
               "and ReleaseFreeMemory() does not reach a thread's cache.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
    .thread_stack_bytes = WORKER_STACK_BYTES,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
