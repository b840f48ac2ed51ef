/* kubernetes70277 - GoKer kubernetes#70277 (channel): WaitFor hands the
 * poller the caller's own stop channel as `done`; the caller, once WaitFor
 * returns, waits for that done channel, which only its own deferred close
 * would ever close.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes70277.go; the fix: kubernetes/kubernetes pull 70277):
 *
 *     func WaitFor(wait WaitFunc, fn ConditionFunc, done <-chan struct{}) error {
 *         c := wait(done)                      // the poller quits on done or its timeout
 *         for { _, open := <-c; if ok, _ := fn(); ok { return nil }; if !open { break } }
 *         return nil
 *     }
 *     go func() {                                          // G
 *         stopCh := make(chan struct{}); defer close(stopCh)
 *         var doneCh <-chan struct{}
 *         WaitFor(func(done) { doneCh = done; return poller(done) }, fn, stopCh)
 *         <-doneCh                             // G waits here: doneCh is stopCh
 *     }()
 *
 * Go's goroutineleak profile reports Kubernetes70277.func2 [chan receive]
 * (flaky in Go's test: the profile may come before the poller is done).
 *
 * The C form: the channels are ll_chans, the poller a thread whose ticker
 * and timeout are ll_chans that close themselves (ll_chan_close_after:
 * timed waits, no timer thread); fn returns true at once (Go's sleep only
 * spaces the ticks). The intervals are shortened (TICK_MS, TIMEOUT_MS) so
 * that 1,000 calls stay quick: the leak does not depend on them. The
 * caller's state is the payload (STATE_BYTES). Nothing needs forcing: the
 * receive on doneCh can never complete. The poller ends at its timeout and
 * is joined (Go reclaims it); G is left holding its state and the only
 * pointer to stopCh (orphaned).
 *
 * The fix (the pull request's): WaitFor makes a stop channel of its own,
 * passes that to wait() and closes it when it returns (defer close), so
 * the poller stops with WaitFor and doneCh is closed.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    TICK_MS = 1,                    /* Go: time.Millisecond */
    TIMEOUT_MS = 5,                 /* Go: 80 * time.Millisecond */
    STATE_BYTES = 64 * 1024,        /* the caller's state: the payload of one instance */
};

struct waiter {
    ll_run *run;
    ll_chan *stop_ch;               /* Go: stopCh, the caller's */
    ll_chan *wait_for_stop;         /* the fix's: WaitFor's own stop channel */
    ll_chan *done_ch;               /* Go: doneCh, what wait() was handed */
    ll_chan *c;                     /* the poller's channel */
    ll_chan *polling;               /* closed once the poller is started: main may watch it */
    unsigned char *state;
    bool fixed;
    pthread_t caller, poller;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct waiter *new_waiter(ll_run *run, bool fixed)
{
    struct waiter *w = ll_xmalloc(run, sizeof *w);
    *w = (struct waiter){.run = run, .stop_ch = ll_chan_new(run, 0), .polling = ll_chan_new(run, 0),
                         .state = ll_xmalloc(run, STATE_BYTES), .fixed = fixed};
    memset(w->state, 0x5a, STATE_BYTES);
    return w;
}

static void free_waiter(struct waiter *w)
{
    ll_chan_free(w->stop_ch);
    ll_chan_free(w->wait_for_stop);
    ll_chan_free(w->c);
    ll_chan_free(w->polling);
    free(w->state);
    free(w);
}

/* poller's goroutine: tick until `done` closes or the timeout passes. */
static void *poll(void *arg)
{
    struct waiter *w = arg;
    ll_chan *after = ll_chan_new(w->run, 0);
    ll_chan_close_after(after, TIMEOUT_MS);
    for (;;) {
        ll_chan *tick = ll_chan_new(w->run, 0);
        ll_chan_close_after(tick, TICK_MS);
        ll_select_case cases[] = {{.chan = tick}, {.chan = after}, {.chan = w->done_ch}};
        int fired = ll_select(cases, 3, false);
        ll_chan_free(tick);
        if (fired != 0)                      /* case <-after, case <-done: return */
            break;
        ll_select_case send = {.chan = w->c, .send = true};
        ll_select(&send, 1, true);           /* select { case ch <- struct{}{}: default: } */
    }
    ll_chan_free(after);
    ll_chan_close(w->c);                     /* defer close(ch) */
    return NULL;
}

/* wait(done): doneCh = done; return poller(interval, timeout)(done). */
static ll_chan *wait_func(struct waiter *w, ll_chan *done)
{
    w->done_ch = done;
    w->c = ll_chan_new(w->run, 0);
    ll_thread_start(w->run, &w->poller, poll, w);
    ll_chan_close(w->polling);
    return w->c;
}

static bool condition(void) { return true; } /* fn: (true, nil) */

static void wait_for(struct waiter *w, ll_chan *done)
{
    if (w->fixed)
        LL_FIX(w->wait_for_stop = ll_chan_new(w->run, 0); done = w->wait_for_stop); /* FIX: a stop of its own */
    ll_chan *c = wait_func(w, done);
    for (;;) {
        void *unused;
        bool open = ll_chan_recv(c, &unused);
        if (condition() || !open)
            break;
    }
    if (w->fixed)
        LL_FIX(ll_chan_close(w->wait_for_stop)); /* FIX: defer close(stopCh): the poller and doneCh end */
}

/* G: the test's goroutine (its stopCh made by new_waiter, the same channel). */
static LL_WAIT_SITE void test_wait_for(struct waiter *w)
{
    wait_for(w, w->stop_ch);
    void *unused;
    ll_chan_recv(w->done_ch, &unused);       /* leaky: doneCh is stopCh, closed only below */
    ll_chan_close(w->stop_ch);               /* defer close(stopCh) */
}

static void *caller(void *w) { test_wait_for(w); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct waiter *w = new_waiter(run, false);
    ll_thread_start(run, &w->caller, caller, w);
    void *unused;
    ll_chan_recv(w->polling, &unused);       /* the poller is started: w->poller is set */
    ll_chan_await_parked(run, w->stop_ch, w->caller); /* G waits on its own stopCh */
    pthread_join(w->poller, NULL);           /* the poller timed out; Go reclaims it, C joins it */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct waiter *w = new_waiter(run, true);
    ll_thread_start(run, &w->caller, caller, w);
    LL_FIX(pthread_join(w->caller, NULL));   /* FIX: doneCh was WaitFor's own, closed: G returns */
    LL_FIX(pthread_join(w->poller, NULL));   /* and the poller saw it: join both */
    LL_FIX(free_waiter(w));                  /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes70277",
    .summary = "GoKer kubernetes#70277 (channel): WaitFor hands the poller the caller's stop channel;\n"
               "the caller then waits for it, though only its own deferred close would close it.",
    .leaky_summary = "WaitFor passes the caller's stopCh on: the caller waits on it forever, holding its state",
    .fixed_summary = "WaitFor passes and closes a stop channel of its own: the caller and the poller end, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = STATE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
