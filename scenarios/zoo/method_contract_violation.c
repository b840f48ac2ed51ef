/* method_contract_violation - LeakProf's MethodContractViolation: a worker
 * that must be stopped once started is never stopped; its goroutine waits
 * in a select forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * commonpatterns.go, from "Unveiling and Vanquishing Goroutine Leaks in
 * Enterprise Microservices", CGO 2024):
 *
 *     type worker struct { ch, done chan any }
 *     func (w worker) Start() {
 *         go func() { for { select {
 *             case <-w.ch:                 // normal workflow
 *             case <-w.done: return        // shut down
 *         } } }()
 *     }
 *     func (w worker) Stop()                { close(w.done) }
 *     func (w worker) AddToQueue(item any)  { w.ch <- item }
 *     func workerLifecycle(items []any) {
 *         w := worker{ch: make(chan any), done: make(chan any)}
 *         w.Start()
 *         for _, item := range items { w.AddToQueue(item) }
 *         // exits without calling Stop
 *     }
 *     workerLifecycle(make([]any, 10))
 *
 * Go's goroutineleak profile reports worker.Start.func1 [select].
 *
 * The C form: the worker is a malloc'ed struct with its two rendezvous
 * ll_chans (ch, done) and its queue (QUEUE_BYTES, the payload: the slots
 * where the worker's loop records what it took, standing for the state a
 * real worker owns); Start's goroutine is a thread running worker_loop(),
 * its select an ll_select with the two receive cases in Go's order (only
 * one is ever ready at a time, so the order decides nothing). Each
 * AddToQueue returns once the worker has taken the item; after the tenth
 * the worker is back in its select, where main waits to see it park. No
 * order needs forcing. Then workerLifecycle returns and main forgets the
 * worker: only its own blocked thread reaches ch and done (orphaned).
 *
 * What the tools see (one instance; expected/zoo/method_contract_violation.toml):
 * the census, 1 thread in worker_loop (ll_select); the heap profile,
 * 66,888 B in use (new_worker's queue first); memcheck, 66,904 B "still
 * reachable" (hidden), the thread's TLS block "possibly lost" (320 B);
 * heaptrack, 67,256 B leaked; threadcheck, 1 thread alive; the heap
 * checker, LSan, ASan and TSan: nothing.
 *
 * The fix (the contract's): `defer w.Stop()` in workerLifecycle; the
 * select's done case fires and the goroutine returns. In C the caller joins
 * it and frees the worker.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    ITEMS = 10,                          /* workerLifecycle(make([]any, 10)) */
    QUEUE_BYTES = 64 * 1024,             /* the worker's queue: the payload of one instance */
    QUEUE_SLOTS = QUEUE_BYTES / sizeof(void *),
};

struct worker {
    ll_run *run;
    ll_chan *ch;                         /* Go: w.ch, the items */
    ll_chan *done;                       /* Go: w.done, closed by Stop */
    void **queue;                        /* QUEUE_SLOTS items: what the worker took */
    size_t taken;
    pthread_t thread;                    /* Start's goroutine */
};

static struct worker *new_worker(ll_run *run)
{
    struct worker *w = ll_xmalloc(run, sizeof *w);
    *w = (struct worker){.run = run, .ch = ll_chan_new(run, 0), .done = ll_chan_new(run, 0)};
    w->queue = malloc(QUEUE_BYTES); /* malloc here: tools charge the payload to new_worker */
    if (!w->queue)
        ll_refuse(run, "malloc", ENOMEM, "lower --instances");
    memset(w->queue, 0, QUEUE_BYTES);
    return w;
}

/* What Go's garbage collector does once nobody uses the worker any more. */
static void free_worker(struct worker *w)
{
    ll_chan_free(w->ch);
    ll_chan_free(w->done);
    free(w->queue);
    free(w);
}

/* Go: worker.Start's goroutine. */
static LL_WAIT_SITE void *worker_loop(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        ll_select_case cases[] = {{.chan = w->ch}, {.chan = w->done}};
        if (ll_select(cases, 2, false) == 1) /* case <-w.done: return (shut down) */
            break;
        w->queue[w->taken++ % QUEUE_SLOTS] = cases[0].item; /* case <-w.ch: normal workflow */
    }
    return NULL;
}

static void worker_start(struct worker *w) { ll_thread_start(w->run, &w->thread, worker_loop, w); }
static void worker_stop(struct worker *w) { ll_chan_close(w->done); } /* once, as the contract says */
static void worker_add_to_queue(struct worker *w, void *item) { ll_chan_send(w->ch, item); }

/* The buggy function: the worker is started and used, never stopped. */
static struct worker *worker_lifecycle(ll_run *run, void *const *items, size_t n)
{
    struct worker *w = new_worker(run);
    worker_start(w);
    for (size_t i = 0; i < n; i++)
        worker_add_to_queue(w, items[i]);
    return w; /* leaky: no Stop; returned only so main can watch the worker park */
}

static struct worker *worker_lifecycle_fixed(ll_run *run, void *const *items, size_t n)
{
    struct worker *w = new_worker(run);
    worker_start(w);
    for (size_t i = 0; i < n; i++)
        worker_add_to_queue(w, items[i]);
    LL_FIX(worker_stop(w)); /* FIX: defer w.Stop() */
    return w;
}

static void *const no_items[ITEMS]; /* make([]any, 10): ten nil items */

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct worker *w = worker_lifecycle(run, no_items, ITEMS);
    ll_chan_await_parked(run, w->ch, w->thread); /* back in its select, for good */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct worker *w = worker_lifecycle_fixed(run, no_items, ITEMS);
    LL_FIX(pthread_join(w->thread, NULL)); /* FIX: stopped, the goroutine returned: join it */
    LL_FIX(free_worker(w));                /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "method_contract_violation",
    .summary = "LeakProf MethodContractViolation: a worker started with Start is never stopped;\n"
               "its goroutine waits in its select on ch and done forever.",
    .leaky_summary = "workerLifecycle returns without Stop: the worker blocks in its select, holding its queue",
    .fixed_summary = "defer w.Stop(): the done case fires, the worker returns, joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = QUEUE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
