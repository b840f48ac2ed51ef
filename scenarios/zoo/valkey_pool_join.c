/* valkey_pool_join - C++: valkey-io/valkey-search pull 1062 (commit
 * fe65a49), a thread pool whose shutdown joins its workers while holding
 * the lock a worker needs in order to leave: JoinWorkers holds the thread
 * vector's mutex across pthread_join, and a worker that was resized away
 * takes that mutex to move itself to the pending-join list.
 *
 * The original (vmsdk/src/thread_pool.cc before fe65a49, 2026):
 *
 *     JoinWorkers():                                  WorkerThread(thread):
 *       { MutexLock l(&queue_mutex_);                   MutexLock l(&queue_mutex_);
 *         stop_mode_ = kGraceful; SignalAll(); }        while (!QueueReady()) {
 *       threads_.ClearWithCallback(                       condition_.WaitWithTimeout(&queue_mutex_, 1s);
 *         [](t) { pthread_join(t->thread_id); });         if (thread->IsShutdown()) {
 *       // ClearWithCallback holds threads_' mutex          thread->InvokeShutdownCallback();
 *                                                           threads_.PopIf(..);        // threads_' mutex
 *                                                           pending_join_threads_.Add(thread);
 *                                                           return; } }
 *
 * DecrThreadCountBy (a resize down) pops the last workers off threads_ and
 * flags them shut down; each notices on its next wake-up. The commit:
 * "Hang happened because of ThreadPool::JoinWorkers was holding a mutex
 * while calling pthread_join as part of the shutdown logic. The deadlock
 * would happen when the worker thread noticed the shutdown request and
 * moved itself from threads_ array to pending_join_threads_ array." The
 * worker does that holding queue_mutex_, which the worker being joined
 * needs to see the stop: a cycle of three.
 *
 * The C form: two workers, W2 busy with a long task (it waits on a gate of
 * the kernel's, outside queue_mutex_) and W1 idle; the pool is resized down
 * by one (W1 popped and flagged, no wake-up, as before the fix), then the
 * pool is destroyed from a thread of its own (JoinWorkers). The workers
 * wait on condition_ without a timeout (upstream's 1 s timeout would only
 * let W1 notice earlier, the benign order; here it notices at JoinWorkers'
 * SignalAll). One gate forces the rest, in the shutdown callback that
 * upstream invokes just before PopIf: W1 goes on once JoinWorkers sleeps in
 * pthread_join(W2) holding threads_' mutex. Then W2's task ends and W2
 * waits for queue_mutex_, which W1 holds. Per instance three threads leak:
 * join_workers (join, on W2), and the two workers in worker_thread (each on
 * a mutex); they hold the pool and its task data (TASK_BYTES, the payload);
 * nothing else reaches the pool (orphaned).
 *
 * The fix (the commit's): "remove the pending_join_threads_ concept": a
 * worker leaving only marks itself joinable (no lock); a resize leaves the
 * workers in threads_ (and wakes the idle ones); JoinWorkers pops each
 * worker under the mutex and joins it with "no ThreadSafeVector mutex
 * held". (Upstream also polls, every 10 ms for 5 s at most, until every
 * worker is joinable before joining; the C form joins at once, which waits
 * for the same thing without a sleep.)
 */
#include "leaklab.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum {
    WORKERS = 2,
    TASK_BYTES = 64 * 1024,   /* what the long task works on: the payload of one instance */
    PTHREAD_DESCRIPTOR = 4096, /* glibc's struct pthread, which holds the tid a join waits on, is well under a page */
};

struct pool;

struct worker {
    struct pool *pool;
    pthread_t thread_id;
    atomic_bool shutdown_flag;
    atomic_bool joinable;     /* the fix */
    bool has_callback;        /* the shutdown callback: here, the kernel's gate */
};

struct thread_vector {        /* ThreadSafeVector<std::shared_ptr<Thread>> */
    pthread_mutex_t mutex_;
    struct worker *vec[WORKERS];
    int n;
};

struct pool {
    ll_run *run;
    bool fixed;
    pthread_mutex_t queue_mutex_;
    pthread_cond_t condition_;
    bool stop;                /* stop_mode_ == kGraceful */
    int tasks;
    struct thread_vector threads_, pending_join_threads_;
    struct worker w[WORKERS];
    pthread_mutex_t task_m;   /* the long task's gate */
    pthread_cond_t task_c;
    bool task_go;
    unsigned char *task_data;
    pthread_t joiner;
    _Atomic(pthread_t) joiner_self; /* JoinWorkers' thread, as it knows itself */
    atomic_bool joiner_known;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct pool *new_pool(ll_run *run, bool fixed)
{
    struct pool *p = ll_xmalloc(run, sizeof *p);
    memset(p, 0, sizeof *p);
    p->run = run;
    p->fixed = fixed;
    p->task_data = ll_xmalloc(run, TASK_BYTES);
    memset(p->task_data, 0x5a, TASK_BYTES);
    pthread_mutex_init(&p->queue_mutex_, NULL);
    pthread_cond_init(&p->condition_, NULL);
    pthread_mutex_init(&p->threads_.mutex_, NULL);
    pthread_mutex_init(&p->pending_join_threads_.mutex_, NULL);
    pthread_mutex_init(&p->task_m, NULL);
    pthread_cond_init(&p->task_c, NULL);
    for (int i = 0; i < WORKERS; i++)
        p->w[i].pool = p;
    return p;
}

static void free_pool(struct pool *p)
{
    pthread_cond_destroy(&p->task_c);
    pthread_mutex_destroy(&p->task_m);
    pthread_mutex_destroy(&p->pending_join_threads_.mutex_);
    pthread_mutex_destroy(&p->threads_.mutex_);
    pthread_cond_destroy(&p->condition_);
    pthread_mutex_destroy(&p->queue_mutex_);
    free(p->task_data);
    free(p);
}

static void vector_add(struct thread_vector *v, struct worker *w)
{
    pthread_mutex_lock(&v->mutex_);
    v->vec[v->n++] = w;
    pthread_mutex_unlock(&v->mutex_);
}

/* PopIf(t == w) / PopBack / pop the first: under the vector's mutex. */
static struct worker *vector_pop(struct thread_vector *v, struct worker *w)
{
    struct worker *out = NULL;
    pthread_mutex_lock(&v->mutex_); /* leaky, in W1: held by JoinWorkers across its join */
    for (int i = 0; i < v->n; i++)
        if (!w || v->vec[i] == w) {
            out = v->vec[i];
            v->vec[i] = v->vec[--v->n];
            break;
        }
    pthread_mutex_unlock(&v->mutex_);
    return out;
}

/* The long task W2 runs: it ends when the kernel opens its gate. */
static void long_task(struct pool *p)
{
    pthread_mutex_lock(&p->task_m);
    while (!p->task_go)
        pthread_cond_wait(&p->task_c, &p->task_m);
    pthread_mutex_unlock(&p->task_m);
    p->task_data[0]++;
}

/* The gate in the shutdown callback: W1 goes on once JoinWorkers sleeps in
 * its join of W2, holding threads_' mutex. */
static void shutdown_callback(struct pool *p)
{
    while (!atomic_load(&p->joiner_known))
        sched_yield(); /* set by JoinWorkers before its SignalAll woke us: never waits long */
    ll_await_parked(p->run, atomic_load(&p->joiner_self), (const void *)p->w[1].thread_id, PTHREAD_DESCRIPTOR);
}

static LL_WAIT_SITE void worker_thread(struct worker *w)
{
    struct pool *p = w->pool;
    for (;;) {
        pthread_mutex_lock(&p->queue_mutex_); /* leaky, in W2: held by W1 */
        while (!p->stop && p->tasks == 0) {
            pthread_cond_wait(&p->condition_, &p->queue_mutex_);
            if (atomic_load(&w->shutdown_flag)) {
                if (p->fixed) {
                    LL_FIX(atomic_store(&w->joinable, true)); /* FIX: only mark joinable, no lock */
                } else {
                    if (w->has_callback)
                        shutdown_callback(p);
                    vector_pop(&p->threads_, w);           /* leaky: blocks, holding queue_mutex_ */
                    vector_add(&p->pending_join_threads_, w);
                }
                pthread_mutex_unlock(&p->queue_mutex_);
                return;
            }
        }
        if (p->stop && p->tasks == 0) {
            if (p->fixed)
                LL_FIX(atomic_store(&w->joinable, true));
            pthread_mutex_unlock(&p->queue_mutex_);
            return;
        }
        p->tasks--;
        pthread_mutex_unlock(&p->queue_mutex_);
        long_task(p);
    }
}

static void *worker_main(void *w) { worker_thread(w); return NULL; }

/* ~ThreadPool: the buggy function. */
static LL_WAIT_SITE void join_workers(struct pool *p)
{
    atomic_store(&p->joiner_self, pthread_self());
    atomic_store(&p->joiner_known, true);
    pthread_mutex_lock(&p->queue_mutex_);
    p->stop = true;
    pthread_cond_broadcast(&p->condition_);
    pthread_mutex_unlock(&p->queue_mutex_);
    if (!p->fixed) {
        pthread_mutex_lock(&p->threads_.mutex_);  /* ClearWithCallback */
        for (int i = 0; i < p->threads_.n; i++)
            pthread_join(p->threads_.vec[i]->thread_id, NULL); /* leaky: W2 needs queue_mutex_, W1 holds it */
        p->threads_.n = 0;
        pthread_mutex_unlock(&p->threads_.mutex_);
        struct worker *w;                         /* JoinTerminatedWorkers */
        while ((w = vector_pop(&p->pending_join_threads_, NULL)))
            pthread_join(w->thread_id, NULL);
    } else {
        struct worker *w; /* FIX: pop under the mutex, join with "no ThreadSafeVector mutex held" */
        while ((w = vector_pop(&p->threads_, NULL)))
            LL_FIX(pthread_join(w->thread_id, NULL));
    }
}

static void *joiner_main(void *p) { join_workers(p); return NULL; }

static void start_worker(struct pool *p, int i)
{
    ll_thread_start(p->run, &p->w[i].thread_id, worker_main, &p->w[i]);
    vector_add(&p->threads_, &p->w[i]);
}

/* W2 busy in its long task, W1 idle, then a resize down by one and the
 * pool's destruction. Index 1 is W2, index 0 is W1 (the last one added). */
static struct pool *resize_and_destroy(ll_run *run, bool fixed)
{
    struct pool *p = new_pool(run, fixed);
    start_worker(p, 1);
    ll_await_parked(run, p->w[1].thread_id, &p->condition_, sizeof p->condition_);
    pthread_mutex_lock(&p->queue_mutex_);      /* Schedule(long task) */
    p->tasks++;
    pthread_cond_signal(&p->condition_);
    pthread_mutex_unlock(&p->queue_mutex_);
    ll_await_parked(run, p->w[1].thread_id, &p->task_c, sizeof p->task_c);
    start_worker(p, 0);
    ll_await_parked(run, p->w[0].thread_id, &p->condition_, sizeof p->condition_);
    if (!fixed) {                              /* DecrThreadCountBy(1, false): pop, flag, no wake-up */
        vector_pop(&p->threads_, &p->w[0]);
        p->w[0].has_callback = true;
        atomic_store(&p->w[0].shutdown_flag, true);
    } else {                                   /* FIX: leave it in threads_, flag it, wake the idle ones */
        atomic_store(&p->w[0].shutdown_flag, true);
        pthread_mutex_lock(&p->queue_mutex_);
        pthread_cond_broadcast(&p->condition_);
        pthread_mutex_unlock(&p->queue_mutex_);
    }
    ll_thread_start(run, &p->joiner, joiner_main, p);
    return p;
}

static void open_task_gate(struct pool *p)
{
    pthread_mutex_lock(&p->task_m);
    p->task_go = true;
    pthread_cond_signal(&p->task_c);
    pthread_mutex_unlock(&p->task_m);
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct pool *p = resize_and_destroy(run, false);
    ll_await_parked(run, p->w[0].thread_id, &p->threads_.mutex_, sizeof p->threads_.mutex_);
    open_task_gate(p); /* W2's task ends: it needs queue_mutex_ to see the stop */
    ll_await_parked(run, p->w[1].thread_id, &p->queue_mutex_, sizeof p->queue_mutex_);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct pool *p = resize_and_destroy(run, true);
    /* the same adverse moment: JoinWorkers sleeps in the join of the busy W2 */
    ll_await_parked(run, p->joiner, (const void *)p->w[1].thread_id, PTHREAD_DESCRIPTOR);
    open_task_gate(p);
    LL_FIX(pthread_join(p->joiner, NULL)); /* FIX: every worker left and was joined */
    LL_FIX(free_pool(p));
}

static const ll_zoo_kernel kernel = {
    .name = "valkey_pool_join",
    .summary = "C++: valkey-io/valkey-search pull 1062 (pool shutdown): JoinWorkers joins holding the\n"
               "thread vector's mutex, which a resized-away worker needs to leave, holding the queue's.",
    .leaky_summary = "join under the vector's mutex; W1 waits for it holding queue_mutex_, which W2 needs to leave",
    .fixed_summary = "workers only mark themselves joinable; JoinWorkers joins with no mutex held",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = TASK_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
