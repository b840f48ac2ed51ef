/* istio18454 - GoKer istio#18454 (channel & timer): the strategy's event
 * loop drains its timer's channel after a failed Stop(), but it already
 * took that tick: the drain waits forever, and the processor then blocks on
 * the full reset channel.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/istio18454.go; istio/istio pull 18454):
 *
 *     eventLoop := func(ctx) {                        // the strategy's worker
 *         for { select {
 *               case <-s.timer.C:
 *               case <-s.resetChan:
 *                   if !s.timer.Stop() { <-s.timer.C }   // waits here: the tick was taken
 *                   s.timer.Reset(s.timerFrequency)
 *               case <-ctx.Done(): s.timer.Stop(); return } } }
 *     func (s *Strategy) OnChange() {
 *         s.stateLock.Lock()
 *         if s.timer != nil {
 *             s.stateLock.Unlock(); s.resetChan <- struct{}{}; return }   // the processor waits here
 *         s.startTimerFn(); s.stateLock.Unlock() }     // NewTimer(1 ns); go eventLoop
 *     runFn := func(ctx) {                            // the processor's worker
 *         defer p.stateStrategy.Close()
 *         for { select { case <-ctx.Done(): return
 *                        case <-p.eventCh: p.stateStrategy.OnChange() } } }
 *     p.Start()   // setupFn queues 1024 events (eventCh: capacity 1024); go runFn
 *     defer p.Stop()
 *
 * Go's goroutineleak profile reports (*Worker).Start.func1 twice, in [chan
 * receive] (the drain) and [chan send] (the reset) (flaky in Go: the loop
 * must take the tick before the reset).
 *
 * The C form: a time.Timer is a struct with its channel C (an ll_chan of
 * capacity 1) and whether it is active; a 1 ns timer fires at once, so
 * NewTimer and Reset put their tick in C (non-blocking, as the runtime
 * does) and Stop then reports false. resetChan is an ll_chan of capacity 1,
 * eventCh one of 16, the contexts ll_contexts. Where Go's selects pick at
 * random, C takes the first ready case, written in the order the bug
 * needs: the loop takes the tick before a reset, the processor its events
 * before its context. 16 events are queued, not 1,024 (four show the
 * bug). Each Worker.Start is a thread. The processor holds its state
 * (STATE_BYTES, the payload). Main waits until the loop sleeps in
 * its drain and the processor on resetChan, then stops the processor (the
 * deferred p.Stop(): it is not listening) and forgets it: only the two
 * blocked threads reach it (orphaned).
 *
 * What the tools see: see expected/zoo/istio18454.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix, in the kernel's terms (the pull request was not read here): the
 * drain after a failed Stop is non-blocking (a select with a default), the
 * way to reset a timer whose tick may already have been taken.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

/* Go queues eventChCap = 1024 events; the bug needs four (a timer start, a reset taken, one
 * buffered, one blocked), so the kernel queues 16, sparing the seed scale 1,000 x 1,024 events. */
enum { EVENTS = 16, STATE_BYTES = 64 * 1024 }; /* the processor's state: the payload of one instance */

struct timer {                      /* time.Timer with a 1 ns period */
    ll_chan *c;                     /* Go: C, capacity 1 */
    bool active;
};

struct worker {                     /* Go: Worker */
    ll_context *ctx;                /* ctx and ctxCancel */
    pthread_t thread;
};

struct processor {
    ll_run *run;
    pthread_mutex_t state_lock;     /* the strategy's stateLock */
    struct timer *timer;            /* NULL until the first OnChange */
    ll_chan *reset_chan;            /* capacity 1 */
    struct worker strategy_worker, worker;
    ll_chan *event_ch;              /* capacity EVENTS */
    unsigned char *state;
    bool fixed;
};

static void timer_fire(struct timer *t)
{
    static char tick;
    ll_select_case send = {.chan = t->c, .send = true, .item = &tick};
    ll_select(&send, 1, true);      /* the runtime's send never blocks */
    t->active = false;
}

static struct timer *new_timer(ll_run *run)
{
    struct timer *t = ll_xmalloc(run, sizeof *t);
    *t = (struct timer){.c = ll_chan_new(run, 1), .active = true};
    timer_fire(t);                  /* 1 ns: it has fired by the time anyone looks */
    return t;
}

static bool timer_stop(struct timer *t) { bool was = t->active; t->active = false; return was; }
static void timer_reset(struct timer *t) { t->active = true; timer_fire(t); }

__attribute__((noinline)) static struct processor *new_processor(ll_run *run, bool fixed)
{
    struct processor *p = ll_xmalloc(run, sizeof *p);
    *p = (struct processor){.run = run, .reset_chan = ll_chan_new(run, 1),
                            .strategy_worker.ctx = ll_context_with_cancel(run),
                            .worker.ctx = ll_context_with_cancel(run), .event_ch = ll_chan_new(run, EVENTS),
                            .state = ll_xmalloc(run, STATE_BYTES), .fixed = fixed};
    memset(p->state, 0x5a, STATE_BYTES);
    pthread_mutex_init(&p->state_lock, NULL);
    return p;
}

static void free_processor(struct processor *p)
{
    pthread_mutex_destroy(&p->state_lock);
    if (p->timer) {
        ll_chan_free(p->timer->c);
        free(p->timer);
    }
    ll_chan_free(p->reset_chan);
    ll_context_free(p->strategy_worker.ctx);
    ll_context_free(p->worker.ctx);
    ll_chan_free(p->event_ch);
    free(p->state);
    free(p);
}

/* The strategy's worker. */
static LL_WAIT_SITE void *event_loop(void *arg)
{
    struct processor *p = arg;
    void *unused;
    for (;;) {
        ll_select_case cases[] = {{.chan = p->timer->c}, {.chan = p->reset_chan},
                                  {.chan = ll_context_done(p->strategy_worker.ctx)}};
        int i = ll_select(cases, 3, false);
        if (i == 1) {
            if (!timer_stop(p->timer)) {
                ll_select_case drain = {.chan = p->timer->c};
                /* FIX: select { case <-s.timer.C: default: } */
                bool nonblocking = p->fixed ? LL_FIX_VALUE(true, false) : false;
                if (nonblocking)
                    ll_select(&drain, 1, true);
                else
                    ll_chan_recv(p->timer->c, &unused); /* leaky: <-s.timer.C: the tick was taken */
            }
            timer_reset(p->timer);
        } else if (i == 2) {
            timer_stop(p->timer);
            return NULL;
        }
    }
}

static void on_change(struct processor *p)
{
    static char reset;
    pthread_mutex_lock(&p->state_lock);
    if (p->timer) {
        pthread_mutex_unlock(&p->state_lock);
        ll_chan_send(p->reset_chan, &reset);        /* leaky: the loop is stuck, the buffer full */
        return;
    }
    p->timer = new_timer(p->run);                   /* startTimer(): NewTimer, worker.Start(eventLoop) */
    ll_thread_start(p->run, &p->strategy_worker.thread, event_loop, p);
    pthread_mutex_unlock(&p->state_lock);
}

/* The processor's worker: runFn. */
static LL_WAIT_SITE void *process_events(void *arg)
{
    struct processor *p = arg;
    for (;;) {
        ll_select_case cases[] = {{.chan = p->event_ch}, {.chan = ll_context_done(p->worker.ctx)}};
        if (ll_select(cases, 2, false) == 1)
            break;
        on_change(p);                               /* p.processEvent() */
    }
    ll_context_cancel(p->strategy_worker.ctx);      /* defer p.stateStrategy.Close() */
    return NULL;
}

static struct processor *start(ll_run *run, bool fixed)
{
    static char event;
    struct processor *p = new_processor(run, fixed);
    for (int i = 0; i < EVENTS; i++)                /* setupFn */
        ll_chan_send(p->event_ch, &event);
    ll_thread_start(run, &p->worker.thread, process_events, p);
    return p;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct processor *p = start(run, false);
    ll_chan_await_parked(run, p->reset_chan, p->worker.thread); /* (strategy_worker is set by then) */
    ll_chan_await_parked(run, p->timer->c, p->strategy_worker.thread);
    ll_chan_await_parked(run, p->reset_chan, p->worker.thread); /* its last send, the loop being stuck */
    ll_context_cancel(p->worker.ctx);                           /* defer p.Stop(): nobody listens */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct processor *p = start(run, true);
    ll_context_cancel(p->worker.ctx);                /* defer p.Stop(): taken after the events */
    LL_FIX(pthread_join(p->worker.thread, NULL));    /* FIX: every reset is taken: runFn returns ... */
    LL_FIX(pthread_join(p->strategy_worker.thread, NULL)); /* ... and Close() ends the loop: join both */
    LL_FIX(free_processor(p));                       /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "istio18454",
    .summary = "GoKer istio#18454 (channel & timer): the event loop drains its timer after a failed\n"
               "Stop() though it already took the tick; the processor then blocks on the full reset channel.",
    .leaky_summary = "the loop waits on a timer channel it already drained, the processor on the full reset channel",
    .fixed_summary = "the drain is non-blocking: every reset is taken, both workers stop, joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = STATE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
