/* cockroach1462 - GoKer cockroach#1462 (channel & WaitGroup): Stop() waits
 * on the workers' WaitGroup while a worker is stuck sending on a channel
 * nobody reads any more; neither can finish.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach1462.go; the fix: cockroachdb/cockroach pull 1462):
 *
 *     lt.start():  stopper.RunWorker(func() {                       // G2
 *                      for { select {
 *                            case <-stopper.ShouldStop(): return
 *                            default: lt.Events <- interceptMessage(0) // unbuffered
 *                      } } })
 *     stopper.RunWorker(func() { processEventsUntil(lt.Events, stopper) }) // G3:
 *                      // select { case <-ch: ... case <-stopper.ShouldStop(): return }
 *     stopper.Stop()   // G1: Quiesce(); close(stopper); stop.Wait(); ...
 *
 * G2 passes its select (not stopped yet) and goes to send; Stop closes the
 * stopper; G3 sees it and returns; G2's send has no receiver left, so it
 * never calls stop.Done(), and G1 waits in stop.Wait() forever. Go's
 * goroutineleak profile reports (*Stopper).RunWorker.func1 [chan send] and
 * Cockroach1462.func2 [sync.WaitGroup.Wait] (flaky in Go: it needs that order).
 *
 * The C form: Events is a rendezvous ll_chan, the stopper's ShouldStop an
 * ll_chan that Stop closes, stop an ll_waitgroup inside the malloc'ed
 * stopper, the selects ll_select. G2 holds one message (MESSAGE_BYTES, the
 * payload) it is trying to send. The order is forced, not hoped for: G2
 * waits, between its select and its send, until G3 has returned; main
 * starts G1 (Stop) only once G2 is past its select. G3 ends and is joined
 * (Go reclaims it); G1 and G2 are left, each waiting on the other's object,
 * and nothing else points to the stopper or the transport (orphaned).
 *
 * What the tools see (one instance; expected/zoo/cockroach1462.toml): the
 * census, one thread in transport_loop (ll_chan_send) and one in
 * stopper_stop (ll_waitgroup_wait); the heap profile, 67,656 B in use
 * (transport_loop's message first); memcheck, 67,672 B "still reachable"
 * (hidden), the TLS blocks "possibly lost" (640 B); heaptrack, 68,728 B
 * leaked; threadcheck, 2 threads alive; the heap checker, LSan, ASan, TSan:
 * nothing.
 *
 * The fix (the pull request's): the send goes inside a select with
 * ShouldStop, so a stopping transport stops sending.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { MESSAGE_BYTES = 64 * 1024 }; /* one intercepted message: the payload of one instance */

struct stopper {
    ll_chan *stopper;               /* Go: stopper; closed by Stop (ShouldStop) */
    ll_chan *stopped;
    ll_waitgroup stop;              /* one count per worker */
    pthread_mutex_t mu;
    pthread_cond_t drain;
    bool draining;
    int num_tasks;
};

struct transport {                  /* Go: localInterceptableTransport */
    ll_run *run;
    ll_chan *events;                /* Go: Events, unbuffered */
    struct stopper *stopper;
    ll_chan *in_window;             /* forced order: closed once G2 is past its select */
    ll_chan *receiver_gone;         /* forced order: closed once G3 has returned */
    pthread_t worker, receiver, stopping;
};

static struct transport *new_transport(ll_run *run)
{
    struct stopper *s = ll_xmalloc(run, sizeof *s);
    *s = (struct stopper){.stopper = ll_chan_new(run, 0), .stopped = ll_chan_new(run, 0)};
    ll_waitgroup_init(&s->stop, run);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->drain, NULL);
    struct transport *lt = ll_xmalloc(run, sizeof *lt);
    *lt = (struct transport){.run = run, .events = ll_chan_new(run, 0), .stopper = s,
                             .in_window = ll_chan_new(run, 0), .receiver_gone = ll_chan_new(run, 0)};
    return lt;
}

static void free_transport(struct transport *lt)
{
    struct stopper *s = lt->stopper;
    ll_chan_free(s->stopper);
    ll_chan_free(s->stopped);
    ll_waitgroup_destroy(&s->stop);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->drain);
    free(s);
    ll_chan_free(lt->events);
    ll_chan_free(lt->in_window);
    ll_chan_free(lt->receiver_gone);
    free(lt);
}

static void run_worker(ll_run *run, struct transport *lt, pthread_t *thread, void *(*fn)(void *))
{
    ll_waitgroup_add(&lt->stopper->stop, 1); /* Go: AddWorker() */
    ll_thread_start(run, thread, fn, lt);
}

/* G1: Stop(). */
static LL_WAIT_SITE void stopper_stop(struct stopper *s)
{
    pthread_mutex_lock(&s->mu); /* Quiesce(): no task ever started here */
    s->draining = true;
    while (s->num_tasks > 0)
        pthread_cond_wait(&s->drain, &s->mu);
    pthread_mutex_unlock(&s->mu);
    ll_chan_close(s->stopper);
    ll_waitgroup_wait(&s->stop); /* leaky: G2 never gets to Done */
    pthread_mutex_lock(&s->mu);
    ll_chan_close(s->stopped);
    pthread_mutex_unlock(&s->mu);
}

static void *stop_thread(void *s) { stopper_stop(s); return NULL; }

/* G2, lt.start's worker. The fixed send waits on the stopper too. */
static LL_WAIT_SITE void transport_loop(struct transport *lt, bool fixed)
{
    for (;;) {
        ll_select_case stop = {.chan = lt->stopper->stopper};
        if (ll_select(&stop, 1, true) == 0) /* case <-ShouldStop(): return; default: */
            break;
        void *message = ll_xmalloc(lt->run, MESSAGE_BYTES);
        memset(message, 0x5a, MESSAGE_BYTES);
        ll_chan_close(lt->in_window);                 /* forced order: G2 is past its select ... */
        void *unused;
        ll_chan_recv(lt->receiver_gone, &unused);     /* ... and sends only once G3 has returned */
        ll_select_case send_or_stop[] = {
            {.chan = lt->events, .send = true, .item = message},
            {.chan = LL_FIX_VALUE(lt->stopper->stopper, NULL)}, /* FIX: ...or stop, whichever comes first */
        };
        bool sent = fixed ? ll_select(send_or_stop, 2, false) == 0 && send_or_stop[0].ok
                          : ll_chan_send(lt->events, message); /* leaky: lt.Events <- message */
        if (!sent) { /* stopped: the message never left */
            free(message);
            break;
        }
    }
    ll_waitgroup_done(&lt->stopper->stop); /* Go: defer s.SetStopped() */
}

static void *worker_leaky(void *lt) { transport_loop(lt, false); return NULL; }
static void *worker_fixed(void *lt) { transport_loop(lt, true); return NULL; }

/* G3: processEventsUntil(lt.Events, stopper). */
static void *receiver(void *arg)
{
    struct transport *lt = arg;
    for (;;) {
        ll_select_case cases[] = {{.chan = lt->events}, {.chan = lt->stopper->stopper}};
        if (ll_select(cases, 2, false) == 1 || !cases[0].ok)
            break;
        free(cases[0].item);
    }
    ll_chan_close(lt->receiver_gone); /* forced order */
    ll_waitgroup_done(&lt->stopper->stop);
    return NULL;
}

static struct transport *start(ll_run *run, void *(*worker)(void *))
{
    struct transport *lt = new_transport(run);
    run_worker(run, lt, &lt->worker, worker);     /* NewLocalInterceptableTransport: lt.start() */
    run_worker(run, lt, &lt->receiver, receiver); /* stopper.RunWorker(processEventsUntil) */
    void *unused;
    ll_chan_recv(lt->in_window, &unused);         /* forced order: G2 is past its select */
    ll_thread_start(run, &lt->stopping, stop_thread, lt->stopper); /* stopper.Stop(), Go's G1 */
    pthread_join(lt->receiver, NULL);             /* G3 returns; Go reclaims it, C joins it */
    return lt;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct transport *lt = start(run, worker_leaky);
    ll_chan_await_parked(run, lt->events, lt->worker);
    ll_await_parked(run, lt->stopping, &lt->stopper->stop, sizeof lt->stopper->stop);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct transport *lt = start(run, worker_fixed);
    LL_FIX(pthread_join(lt->worker, NULL));   /* FIX: the worker stopped, so Stop returns: join both */
    LL_FIX(pthread_join(lt->stopping, NULL));
    LL_FIX(free_transport(lt));               /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach1462",
    .summary = "GoKer cockroach#1462 (channel & WaitGroup): Stop() waits for the workers while one\n"
               "of them is stuck sending on a channel its reader has stopped reading.",
    .leaky_summary = "the worker's send ignores the stopper: it and Stop() wait forever, holding a message",
    .fixed_summary = "the send is a select with ShouldStop: the worker stops, Stop returns, all joined",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = MESSAGE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
