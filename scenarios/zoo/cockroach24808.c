/* cockroach24808 - GoKer cockroach#24808 (channel): Start() sends on the
 * compactor's buffered channel, which already holds a suggestion; the only
 * reader is the worker Start() would start next, so the send never ends.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach24808.go; the fix: cockroachdb/cockroach pull 24808,
 * "compactor: don't block during suggestion in Start()"):
 *
 *     func (c *Compactor) Start(ctx, stopper) {
 *         c.ch <- struct{}{}                        // G1 waits here: the buffer is full
 *         stopper.RunWorker(ctx, func(ctx) {        // the reader, never started
 *             for { select { case <-stopper.ShouldStop(): return
 *                            case <-c.ch: } } })
 *     }
 *     go func() {                                   // G1
 *         stopper := &Stopper{stopper: make(chan struct{})}
 *         defer stopper.Stop()
 *         compactor := &Compactor{ch: make(chan struct{}, 1)}
 *         compactor.ch <- struct{}{}                // a suggestion came in before Start
 *         compactor.Start(context.Background(), stopper)
 *     }()
 *
 * Go's goroutineleak profile reports Cockroach24808.func2 [chan send] (not
 * flaky: no order needed, G1 blocks on its own).
 *
 * The C form: ch is an ll_chan of capacity 1, the stopper an ll_chan that
 * Stop closes and a WaitGroup for its workers, the compactor malloc'ed with
 * its queued suggestions (SUGGESTIONS_BYTES, the payload). One thread, the
 * same path every time; main waits until it is asleep in the send and
 * forgets the compactor: only G1 reaches the channel (orphaned).
 *
 * What the tools see: see expected/zoo/cockroach24808.toml (native only so
 * far: the truth, checked on every run).
 *
 * The fix (the pull request's): the send in Start() does not block: a
 * select with a default, since a suggestion already queued will be seen
 * by the worker anyway.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { SUGGESTIONS_BYTES = 64 * 1024 }; /* the compactor's queued suggestions: the payload of one instance */

struct stopper {
    ll_chan *stopper;               /* Go: stopper, closed by Stop (ShouldStop) */
    ll_waitgroup stop;
};

struct compactor {
    ll_run *run;
    ll_chan *ch;                    /* Go: ch, capacity 1 */
    struct stopper stopper;
    unsigned char *suggestions;
    pthread_t g1, worker;
};

__attribute__((noinline)) static struct compactor *new_compactor(ll_run *run)
{
    struct compactor *c = ll_xmalloc(run, sizeof *c);
    *c = (struct compactor){.run = run, .ch = ll_chan_new(run, 1), .stopper.stopper = ll_chan_new(run, 0),
                            .suggestions = ll_xmalloc(run, SUGGESTIONS_BYTES)};
    memset(c->suggestions, 0x5a, SUGGESTIONS_BYTES);
    ll_waitgroup_init(&c->stopper.stop, run);
    return c;
}

static void free_compactor(struct compactor *c)
{
    ll_chan_free(c->ch);
    ll_chan_free(c->stopper.stopper);
    ll_waitgroup_destroy(&c->stopper.stop);
    free(c->suggestions);
    free(c);
}

/* The worker Start() runs: drains suggestions until the stopper stops. */
static void *compactor_worker(void *arg)
{
    struct compactor *c = arg;
    for (;;) {
        ll_select_case cases[] = {{.chan = c->stopper.stopper}, {.chan = c->ch}};
        if (ll_select(cases, 2, false) == 0)
            break;
    }
    ll_waitgroup_done(&c->stopper.stop); /* Go: defer s.stop.Done() */
    return NULL;
}

static LL_WAIT_SITE void compactor_start(struct compactor *c, bool fixed)
{
    static char suggestion;
    if (fixed) {
        ll_select_case send = {.chan = c->ch, .send = true, .item = &suggestion};
        ll_select(&send, 1, LL_FIX_VALUE(true, false)); /* FIX: with a default: a queued suggestion is enough */
    } else {
        ll_chan_send(c->ch, &suggestion); /* leaky: the buffer is full and its reader not started */
    }
    ll_waitgroup_add(&c->stopper.stop, 1); /* stopper.RunWorker(...) */
    ll_thread_start(c->run, &c->worker, compactor_worker, c);
}

/* G1. */
static void compactor_test(struct compactor *c, bool fixed)
{
    static char suggestion;
    ll_chan_send(c->ch, &suggestion); /* compactor.ch <- struct{}{}: fills the buffer */
    compactor_start(c, fixed);
    ll_chan_close(c->stopper.stopper); /* defer stopper.Stop() */
}

static void *g1_leaky(void *c) { compactor_test(c, false); return NULL; }
static void *g1_fixed(void *c) { compactor_test(c, true); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct compactor *c = new_compactor(run);
    ll_thread_start(run, &c->g1, g1_leaky, c);
    ll_chan_await_parked(run, c->ch, c->g1);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct compactor *c = new_compactor(run);
    ll_thread_start(run, &c->g1, g1_fixed, c);
    LL_FIX(pthread_join(c->g1, NULL));     /* FIX: Start returns and Stop runs: join G1 ... */
    LL_FIX(pthread_join(c->worker, NULL)); /* ... and the worker, which sees the stopper closed */
    LL_FIX(free_compactor(c));             /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach24808",
    .summary = "GoKer cockroach#24808 (channel): Start() sends on the compactor's channel, whose\n"
               "one-slot buffer already holds a suggestion and whose reader is not started yet.",
    .leaky_summary = "Start() blocks on the full channel before starting its reader, holding the compactor",
    .fixed_summary = "the send is non-blocking: the worker starts, Stop() ends it, all joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = SUGGESTIONS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
