/* cockroach1055 - GoKer cockroach#1055 (channel & WaitGroup, and a mutex):
 * Stop() holds the stopper's mutex while it waits for its workers; one
 * worker waits for that mutex, another for a stop that never comes.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach1055.go; the fix: cockroachdb/cockroach pull 1055):
 *
 *     Quiesce(): mu.Lock(); draining = 1; drain.Wait(); draining = 0; mu.Unlock()
 *     Stop():    mu.Lock(); draining = 1; drain.Wait(); close(stopper); stop.Wait(); mu.Unlock()
 *     StartTask(): if draining == 0 { mu.Lock(); drain.Add(1); mu.Unlock() }
 *     G1: two stoppers; for each s: s.AddWorker(); go func() {             // G2
 *             s.StartTask(); <-s.ShouldStop(); s.SetStopped() }()
 *         go func() { for each s: s.Quiesce(); for each s: s.Stop(); close(done) }() // G3
 *         <-done
 *
 * The worker of stopper 0 passes its draining check, and before it takes mu,
 * G3 has quiesced both stoppers and entered Stop(stopper 0): it holds mu
 * while it waits for that worker's SetStopped. The worker waits for mu;
 * Stop(stopper 1) never comes, so its worker (whose task did start) waits in
 * <-ShouldStop(); G1 waits for done. Go's goroutineleak profile reports
 * Cockroach1055.func2 [chan receive] (G1), .func2.2 [sync.WaitGroup.Wait]
 * (G3), .func2.1 [sync.Mutex.Lock] and .func2.1 [chan receive] (the two
 * workers); flaky in Go: each needs its own order.
 *
 * The C form: each stopper is a struct of the malloc'ed test, with the
 * stopper channel (an ll_chan Stop closes), the stop and drain WaitGroups
 * (ll_waitgroup), mu (a pthread mutex) and the closers it would close once
 * stopped (CLOSERS_BYTES each, 2 x 32 KiB: the payload). G1 runs
 * test_stoppers(), G3 quiesce_and_stop(), each G2 worker(); the receive of
 * ShouldStop() is await_should_stop(), so the census tells that wait from
 * StartTask's. The order is forced, not hoped for: each worker, between its
 * draining check and mu.Lock(), waits at a gate (task_window); G1 starts G3
 * only once both workers wait there; main opens the gate once G3 sleeps in
 * Stop(stopper 0)'s stop.Wait(). All four are left, each waiting on what
 * only another of them could release; nothing else points to the test
 * (orphaned).
 *
 * What the tools see: see expected/zoo/cockroach1055.toml (measured).
 *
 * The fix: the pull request's: Quiesce leaves the stopper draining, and
 * StartTask checks draining again once it holds mu, so no task starts after
 * Quiesce. GoKer's Stop also holds mu while it waits for the workers, which
 * the pull request did not touch (cockroach's Stop then took mu only after
 * its workers had stopped, to run its closers); with mu held there, a worker
 * between its check and its lock still deadlocks with Stop in the order
 * forced here. So the fixed Stop also lets go of mu before it waits, as
 * cockroach's did.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    STOPPERS = 2,                   /* for i := 0; i < 2; i++ */
    CLOSERS_BYTES = 32 * 1024,      /* one stopper's closers: 2 x 32 KiB, the payload of one instance */
};

struct stopper {
    ll_chan *stopper;               /* Go: stopper; closed by Stop (ShouldStop) */
    ll_waitgroup stop;              /* one count per worker: AddWorker, SetStopped */
    pthread_mutex_t mu;
    atomic_int draining;
    ll_waitgroup drain;             /* one count per started task (this kernel finishes none) */
    unsigned char *closers;
    ll_chan *task_window;           /* forced order: the test's gate */
    bool fixed;
};

struct test {                       /* one call of Cockroach1055's G1 */
    ll_run *run;
    struct stopper stoppers[STOPPERS];
    ll_chan *done;
    ll_chan *task_window;           /* forced order: closed once G3 waits in Stop(stoppers[0]) */
    ll_chan *started;               /* forced order: closed once G1 has started G2s and G3 */
    pthread_t tester, stopping, workers[STOPPERS];
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct test *new_test(ll_run *run, bool fixed)
{
    struct test *t = ll_xmalloc(run, sizeof *t);
    *t = (struct test){.run = run, .done = ll_chan_new(run, 0), .task_window = ll_chan_new(run, 0),
                       .started = ll_chan_new(run, 0)};
    for (int i = 0; i < STOPPERS; i++) { /* NewStopper() */
        struct stopper *s = &t->stoppers[i];
        *s = (struct stopper){.stopper = ll_chan_new(run, 0), .closers = ll_xmalloc(run, CLOSERS_BYTES),
                              .task_window = t->task_window, .fixed = fixed};
        memset(s->closers, 0x5a, CLOSERS_BYTES);
        ll_waitgroup_init(&s->stop, run);
        ll_waitgroup_init(&s->drain, run);
        pthread_mutex_init(&s->mu, NULL);
    }
    return t;
}

static void free_test(struct test *t)
{
    for (int i = 0; i < STOPPERS; i++) {
        struct stopper *s = &t->stoppers[i];
        ll_chan_free(s->stopper);
        ll_waitgroup_destroy(&s->stop);
        ll_waitgroup_destroy(&s->drain);
        pthread_mutex_destroy(&s->mu);
        free(s->closers);
    }
    ll_chan_free(t->done);
    ll_chan_free(t->task_window);
    ll_chan_free(t->started);
    free(t);
}

static void add_worker(struct stopper *s) { ll_waitgroup_add(&s->stop, 1); }
static ll_chan *should_stop(struct stopper *s) { return s->stopper; }
static void set_stopped(struct stopper *s) { ll_waitgroup_done(&s->stop); }

static void stopper_quiesce(struct stopper *s)
{
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->draining, 1);
    ll_waitgroup_wait(&s->drain);
    atomic_store(&s->draining, s->fixed ? LL_FIX_VALUE(1, 0) : 0); /* FIX: Quiesce leaves the stopper draining */
    pthread_mutex_unlock(&s->mu);
}

/* G3 waits here, holding mu, for the worker that waits for mu. */
static LL_WAIT_SITE void stopper_stop(struct stopper *s)
{
    pthread_mutex_lock(&s->mu); /* L1 */
    atomic_store(&s->draining, 1);
    ll_waitgroup_wait(&s->drain);
    bool held = true;
    if (s->fixed)
        LL_FIX(pthread_mutex_unlock(&s->mu); held = false); /* FIX: let go of mu before waiting for the workers */
    ll_chan_close(s->stopper);
    ll_waitgroup_wait(&s->stop); /* leaky: a worker waits for mu and never gets to SetStopped */
    if (held)
        pthread_mutex_unlock(&s->mu);
}

/* A worker of stopper 0 waits here for mu. */
static LL_WAIT_SITE bool start_task(struct stopper *s)
{
    if (atomic_load(&s->draining) == 0) {
        void *unused;
        ll_chan_recv(s->task_window, &unused); /* forced order: mu only once Stop(stoppers[0]) waits */
        pthread_mutex_lock(&s->mu);            /* leaky, stopper 0: Stop holds it for good */
        if (s->fixed)
            LL_FIX(if (atomic_load(&s->draining)) { pthread_mutex_unlock(&s->mu); return false; }); /* FIX: draining now? refuse the task */
        ll_waitgroup_add(&s->drain, 1);
        pthread_mutex_unlock(&s->mu);
        return true;
    }
    return false;
}

/* <-s.ShouldStop(), in a frame of its own (in Go, the same closure as
 * StartTask's wait); returns whether the stopper was stopped, computed
 * after the receive so the frame stays on the stack. */
static LL_WAIT_SITE bool await_should_stop(struct stopper *s)
{
    void *unused;
    return !ll_chan_recv(should_stop(s), &unused); /* leaky, stopper 1: Stop(stoppers[1]) never comes */
}

static void *worker(void *arg) /* G2 */
{
    struct stopper *s = arg;
    start_task(s);
    await_should_stop(s);
    set_stopped(s);
    return NULL;
}

static void *quiesce_and_stop(void *arg) /* G3 */
{
    struct test *t = arg;
    for (int i = 0; i < STOPPERS; i++)
        stopper_quiesce(&t->stoppers[i]);
    for (int i = 0; i < STOPPERS; i++)
        stopper_stop(&t->stoppers[i]);
    ll_chan_close(t->done);
    return NULL;
}

/* G1: starts a worker per stopper and the stopping goroutine, waits for done. */
static LL_WAIT_SITE bool test_stoppers(struct test *t)
{
    for (int i = 0; i < STOPPERS; i++) {
        add_worker(&t->stoppers[i]);
        ll_thread_start(t->run, &t->workers[i], worker, &t->stoppers[i]);
    }
    ll_chan_await_receivers(t->task_window, STOPPERS); /* forced order: both workers passed their check */
    ll_thread_start(t->run, &t->stopping, quiesce_and_stop, t);
    ll_chan_close(t->started);                         /* forced order: main may now watch them */
    void *unused;
    return !ll_chan_recv(t->done, &unused);            /* leaky: <-done, never closed */
}

static void *tester(void *t) { test_stoppers(t); return NULL; }

static struct test *start(ll_run *run, bool fixed)
{
    struct test *t = new_test(run, fixed);
    ll_thread_start(run, &t->tester, tester, t);  /* go func() { ... }(): G1 */
    void *unused;
    ll_chan_recv(t->started, &unused);            /* G1 has started everyone: the pthread_ts are set */
    ll_await_parked(run, t->stopping, &t->stoppers[0].stop, sizeof t->stoppers[0].stop);
    ll_chan_close(t->task_window);                /* forced order: G3 waits in Stop(stoppers[0]): the workers go on */
    return t;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct test *t = start(run, false);
    /* All four are stuck for good once each sleeps in its wait. */
    ll_await_parked(run, t->workers[0], &t->stoppers[0].mu, sizeof t->stoppers[0].mu);
    ll_chan_await_parked(run, t->stoppers[1].stopper, t->workers[1]);
    ll_chan_await_parked(run, t->done, t->tester);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct test *t = start(run, true);
    LL_FIX(pthread_join(t->tester, NULL));     /* FIX: no task starts after Quiesce and Stop waits without mu: */
    LL_FIX(pthread_join(t->stopping, NULL));   /* the workers stop, Stop returns, done is closed: join all four */
    LL_FIX(pthread_join(t->workers[0], NULL));
    LL_FIX(pthread_join(t->workers[1], NULL));
    LL_FIX(free_test(t));                      /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach1055",
    .summary = "GoKer cockroach#1055 (channel & WaitGroup, mutex): Stop() holds the stopper's mutex\n"
               "while it waits for a worker that waits for that mutex; four threads wait forever.",
    .leaky_summary = "Stop waits for its workers under mu: G1, G3 and both workers wait forever, holding the stoppers",
    .fixed_summary = "no task after Quiesce, Stop waits without mu: every worker stops, all joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = STOPPERS * CLOSERS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
