/* blocked_workers - threads blocked forever keep everything they reference.
 *
 * The Go original (the seed's first demo):
 *
 *     for i := 0; i < 10000; i++ {
 *         go func() {
 *             var s []int64
 *             for j := 0; j < 10000; j++ { s = append(s, rand.Int63()) }
 *             <-c // nobody ever closes c
 *         }()
 *     }
 *
 * Each worker fills a buffer grown like append (realloc, doubling) and then
 * waits on a channel nobody closes. The buffer's only pointer lives on the
 * blocked thread's stack, so the memory is held for as long as the thread
 * waits: forever. (Go's precise GC would see `s` is dead after the loop and
 * free it, leaking only the goroutine stacks; C - and every conservative
 * tool - treats a pointer on a live stack as a root and keeps everything.)
 *
 * What the tools see, leaky variant: threads == workers + 1, heap in use
 * ~ workers x elements x 8 bytes, the census puts every worker in futex wait
 * (ll_chan_recv). Valgrind memcheck calls the buffers "still reachable"
 * (a live thread's stack is a root); the heap profiler names fill_buffer.
 *
 * The orphaned variant is the same leak as Go has it: the goroutines
 * captured c and nothing else did. Main keeps neither the channel nor the
 * threads; each worker's arguments are its own. The leaky variant keeps the
 * channel in a file-scope struct (correct C: main could still close it), so
 * a reachability analysis (orphans, Go 1.26's goroutineleak profile for
 * pthreads) must call every leaky worker wakeable; in the orphaned variant
 * no thread that can run and no global reaches the channel, so orphans
 * proves all the workers leaked and counts the buffers they pin.
 *
 * The fix: whoever owns the workers' lifetime closes the channel when they
 * are no longer needed (Go: close(c), or a context's cancel); every receive
 * returns, each worker frees its buffer and exits, main joins them.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>

enum {
    SEED_WORKERS = 10000,   /* the seed's 10,000 goroutines */
    QUICK_WORKERS = 1000,
    SEED_ELEMENTS = 10000,  /* each appends 10,000 int64 */
    MAX_WORKERS = 100000,
    MAX_ELEMENTS = 100000000,
    FIRST_CAPACITY = 1,     /* append starts from an empty slice */
};

/* 10,000 threads at glibc's default 8 MiB stack reserve 80 GiB of address
 * space, and under Valgrind every stack is really allocated (measured: 1,000
 * threads took 11 GB with 8 MiB stacks, 1.3 GB with 64 KiB). A worker's deepest
 * call chain (fill_buffer -> realloc, or ll_chan_recv -> futex) needs a few KiB;
 * 64 KiB leaves a wide margin. */
#define WORKER_STACK_BYTES (64 * 1024)

static const ll_option options[] = {
    {"workers", "threads", SEED_WORKERS, QUICK_WORKERS, 1, MAX_WORKERS, "worker threads to start"},
    {"elements", "int64 per worker", SEED_ELEMENTS, SEED_ELEMENTS, 1, MAX_ELEMENTS,
     "random int64 each worker appends to its buffer"},
    {0},
};

struct worker_args {
    ll_run *run;
    ll_chan *done;              /* the channel nobody closes (leaky) */
    long long elements;
    uint64_t seed;
};

/* Go's append: when the slice is full, allocate twice the capacity and copy
 * (realloc does both). noinline, and realloc called here rather than through
 * a wrapper such as ll_xrealloc, so heap profiles and memcheck name this
 * function as the one holding the memory. */
__attribute__((noinline)) static int64_t *fill_buffer(ll_run *run, long long elements, uint64_t seed)
{
    int64_t *values = NULL;
    size_t len = 0, cap = 0;
    for (long long i = 0; i < elements; i++) {
        if (len == cap) {
            cap = cap ? 2 * cap : FIRST_CAPACITY;
            int64_t *grown = realloc(values, cap * sizeof *values);
            if (!grown)
                ll_refuse(run, "realloc", ENOMEM, "lower --workers or --elements");
            values = grown;
        }
        values[len++] = (int64_t)(ll_rand_next(&seed) >> 1); /* rand.Int63: non-negative */
    }
    return values;
}

static void *worker(void *arg)
{
    struct worker_args *w = arg;
    /* The buffer's only pointer is this local: the blocked thread holds it. */
    int64_t *values = fill_buffer(w->run, w->elements, w->seed);

    void *unused;
    ll_chan_recv(w->done, &unused); /* leaky: blocks forever; fixed: returns when closed */

    free(values);
    return NULL;
}

struct workers {
    pthread_t *threads;
    struct worker_args *args;
    ll_chan *done;
    long long count;
};

/* Counted is not yet asleep: ll_chan_await_receivers returns once every
 * worker has counted itself waiting, and the last ones may still be on their
 * way into pthread_cond_wait's futex (measured: with 20 workers, the last one
 * was still running when the census read it in 8 of 30 runs on a busy
 * machine). The snapshot must see them asleep, so ask the kernel, thread by
 * thread. */
static void await_asleep(ll_run *run, ll_chan *ch, const pthread_t *threads, long long count)
{
    for (long long i = 0; i < count; i++)
        ll_chan_await_parked(run, ch, threads[i]);
}

/* Starts every worker and returns once all of them have filled their buffer
 * and are blocked on the channel: the steady state the snapshot shows. */
static void start_workers(ll_run *run, struct workers *ws)
{
    ws->count = ll_opt(run, "workers");
    ws->threads = ll_xmalloc(run, (size_t)ws->count * sizeof *ws->threads);
    ws->args = ll_xmalloc(run, (size_t)ws->count * sizeof *ws->args);
    ws->done = ll_chan_new(run, 1);
    for (long long i = 0; i < ws->count; i++) {
        ws->args[i] = (struct worker_args){run, ws->done, ll_opt(run, "elements"), (uint64_t)i + 1};
        ll_thread_start(run, &ws->threads[i], worker, &ws->args[i]);
    }
    /* Not a barrier: a barrier says every worker has filled its buffer and
     * is on its way to the channel; this says every one of them is waiting. */
    ll_chan_await_receivers(ws->done, (size_t)ws->count);
    await_asleep(run, ws->done, ws->threads, ws->count);
}

/* File scope, so main's own bookkeeping (thread ids, arguments) stays
 * reachable and leak checkers report only what the workers hold. */
static struct workers ws;

static void run_leaky(ll_run *run)
{
    start_workers(run, &ws);
    ll_phase(run, "steady");
    /* Nobody closes ws.done: the workers stay blocked, holding their buffers,
     * until the process ends (or --hold lets you look at them). */
}

/* Go's closure captured c; nothing else did. Each worker gets its own
 * arguments, so its own pointer to the channel; main's last one dies when
 * this function returns, and the workers are detached: nobody will join
 * them (a goroutine has no handle either). */
__attribute__((noinline)) static void start_orphans(ll_run *run)
{
    long long count = ll_opt(run, "workers");
    ll_chan *done = ll_chan_new(run, 1);
    /* The handles only until every worker is asleep, then freed: a thread
     * handle reaches nothing a detector follows, and none is kept. */
    pthread_t *threads = ll_xmalloc(run, (size_t)count * sizeof *threads);
    for (long long i = 0; i < count; i++) {
        struct worker_args *own = ll_xmalloc(run, sizeof *own);
        *own = (struct worker_args){run, done, ll_opt(run, "elements"), (uint64_t)i + 1};
        ll_thread_start(run, &threads[i], worker, own);
        pthread_detach(threads[i]);
    }
    ll_chan_await_receivers(done, (size_t)count);
    await_asleep(run, done, threads, count);
    free(threads);
}

static void run_orphaned(ll_run *run)
{
    start_orphans(run);
    ll_phase(run, "steady");
    /* The channel is lost along with every pointer to it: the workers wait
     * on an object only they can reach, holding their buffers, for good. */
}

static void run_fixed(ll_run *run)
{
    start_workers(run, &ws);
    ll_phase(run, "steady");

    ll_chan_close(ws.done); /* FIX: close the channel: every receive returns */
    for (long long i = 0; i < ws.count; i++)
        pthread_join(ws.threads[i], NULL); /* FIX: and wait for each worker to free and exit */

    ll_chan_free(ws.done);
    free(ws.args);
    free(ws.threads);
    ll_phase(run, "end");
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "workers"), (uint64_t)ll_opt(run, "elements") * sizeof(int64_t),
                         "--workers x --elements x 8", why, why_len);
}

static const ll_variant variants[] = {
    {"leaky", "nobody closes the channel; the workers stay blocked, holding their buffers", run_leaky},
    {"orphaned", "the same, but main keeps no pointer to the channel: only the blocked workers reach it",
     run_orphaned},
    {"fixed", "main closes the channel and joins; each worker frees its buffer and exits", run_fixed},
    {0},
};

static const ll_scenario scenario = {
    .name = "blocked_workers",
    .summary = "Workers fill a buffer, then block forever on a channel nobody closes;\n"
               "the blocked threads keep their buffers (the seed's 10,000 goroutines).",
    .variants = variants,
    .options = options,
    .payload = payload,
    .thread_stack_bytes = WORKER_STACK_BYTES,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
