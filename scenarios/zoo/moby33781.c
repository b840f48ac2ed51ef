/* moby33781 - GoKer moby#33781 (channel & context): the health monitor,
 * told to stop while a probe runs, returns without draining the probe's
 * results channel; the probe blocks forever sending its result.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby33781.go; the fix: moby/moby pull 33781):
 *
 *     func monitor(stop chan bool) {                             // G1
 *         for { select {
 *         case <-stop: return
 *         case <-time.After(probeInterval):
 *             results := make(chan bool)
 *             ctx, cancelProbe := context.WithTimeout(context.Background(), probeTimeout)
 *             go func() { results <- true; close(results) }()    // G3 waits here
 *             select {
 *             case <-stop: cancelProbe(); return                // results should be drained here
 *             case <-results: cancelProbe()
 *             case <-ctx.Done(): cancelProbe(); <-results
 *             }
 *         } }
 *     }
 *     go monitor(stop); go func() { time.Sleep(i ms); stop <- true }()   // G2
 *
 * Go's goroutineleak profile reports monitor_moby33781.func1 [chan send]
 * (flaky in Go: 25 runs in 100).
 *
 * The C form: stop and results are rendezvous ll_chans, time.After an
 * ll_chan that closes itself PROBE_INTERVAL_MS from now (a timed wait, no
 * timer thread); G2 is the caller itself (its send completes, as in Go).
 * The probe's result is the payload (RESULT_BYTES). The order is forced,
 * not hoped for: stop is sent once G1 waits in its second select, and the
 * probe sends its result only once G1 has taken stop (a gate where Go's
 * probe takes its time). The probe's context is a plain cancel context:
 * its timeout belongs to another interleaving (a probe that outlasts it),
 * which the drawn one never reaches. G1 returns and is joined; G3 is left
 * sending to nobody, holding its result (orphaned).
 *
 * The fix (the pull request's, where the kernel says "results should be
 * drained here"): on stop, G1 cancels the probe and waits for its result
 * before returning.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    PROBE_INTERVAL_MS = 1,          /* Go: probeInterval := time.Millisecond */
    RESULT_BYTES = 64 * 1024,       /* the probe's result: the payload of one instance */
};

struct health {
    ll_run *run;
    ll_chan *stop;                  /* Go: stop, unbuffered */
    ll_chan *results;               /* Go: results, the current probe's, unbuffered */
    bool fixed;
    ll_chan *probing;               /* forced order: closed once G1 has started the probe */
    ll_chan *gave_up;               /* forced order: closed once G1 has taken stop */
    pthread_t monitor, prober;      /* G1, G3 */
};

static void free_health(struct health *h)
{
    ll_chan_free(h->stop);
    ll_chan_free(h->results);
    ll_chan_free(h->probing);
    ll_chan_free(h->gave_up);
    free(h);
}

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static void *probe_result(ll_run *run)
{
    void *result = ll_xmalloc(run, RESULT_BYTES);
    memset(result, 0x5a, RESULT_BYTES);
    return result;
}

/* G3: the probe. */
static LL_WAIT_SITE void run_probe(struct health *h)
{
    void *result = probe_result(h->run), *unused;
    ll_chan_recv(h->gave_up, &unused);        /* forced order: the probe ends after the stop */
    if (!ll_chan_send(h->results, result))    /* leaky: results <- true, and nobody drains it */
        free(result);
    ll_chan_close(h->results);
}

static void *prober(void *h) { run_probe(h); return NULL; }

/* G1. */
static void monitor(struct health *h)
{
    for (;;) {
        ll_chan *after = ll_chan_new(h->run, 0);
        ll_chan_close_after(after, PROBE_INTERVAL_MS); /* time.After(probeInterval) */
        ll_select_case wait[] = {{.chan = h->stop}, {.chan = after}};
        int fired = ll_select(wait, 2, false);
        ll_chan_free(after);
        if (fired == 0)
            return;
        h->results = ll_chan_new(h->run, 0);
        ll_context *ctx = ll_context_with_cancel(h->run);
        ll_thread_start(h->run, &h->prober, prober, h);
        ll_chan_close(h->probing);
        ll_select_case probe[] = {{.chan = h->stop}, {.chan = h->results}, {.chan = ll_context_done(ctx)}};
        fired = ll_select(probe, 3, false);
        ll_context_cancel(ctx);              /* cancelProbe() */
        ll_context_free(ctx);
        void *result = fired == 1 ? probe[1].item : NULL;
        if (fired == 0) {                    /* case <-stop: */
            ll_chan_close(h->gave_up);
            if (h->fixed)
                LL_FIX(ll_chan_recv(h->results, &result)); /* FIX: drain results before returning */
            free(result);
            return;                          /* leaky: the probe is left sending */
        }
        if (fired == 2)                      /* case <-ctx.Done(): <-results */
            ll_chan_recv(h->results, &result);
        free(result);
    }
}

static void *monitor_thread(void *h) { monitor(h); return NULL; }

static struct health *start(ll_run *run, bool fixed)
{
    struct health *h = ll_xmalloc(run, sizeof *h);
    *h = (struct health){.run = run, .stop = ll_chan_new(run, 0), .fixed = fixed,
                         .probing = ll_chan_new(run, 0), .gave_up = ll_chan_new(run, 0)};
    ll_thread_start(run, &h->monitor, monitor_thread, h); /* go monitor(stop) */
    void *unused;
    ll_chan_recv(h->probing, &unused);                     /* the interval passed, the probe started */
    ll_chan_await_parked(run, h->results, h->monitor);     /* forced order: G1 waits in its second select */
    ll_chan_send(h->stop, NULL);                           /* G2: stop <- true */
    pthread_join(h->monitor, NULL);                        /* G1 returned; Go reclaims it, C joins it */
    return h;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct health *h = start(run, false);
    ll_chan_await_parked(run, h->results, h->prober);      /* the probe sends to nobody */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct health *h = start(run, true);
    LL_FIX(pthread_join(h->prober, NULL));   /* FIX: G1 took the result: the probe returns, join it */
    LL_FIX(free_health(h));                  /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby33781",
    .summary = "GoKer moby#33781 (channel & context): the health monitor, stopped while a probe runs,\n"
               "returns without draining the probe's results channel.",
    .leaky_summary = "stop returns at once: the probe waits forever to send its result",
    .fixed_summary = "stop cancels and drains the probe's result: the probe returns, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RESULT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
