/* kubernetes25331 - GoKer kubernetes#25331 (channel & context): a watch's
 * run loop, handed an error, sends the result on a channel the stopping
 * user no longer reads; cancelling the context does not reach a plain send.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes25331.go; the fix: kubernetes/kubernetes pull 25331):
 *
 *     func (wc *watchChan) run() {                   // G1
 *         select {
 *         case err := <-wc.errChan:
 *             errResult := len(err.Error()) != 0
 *             wc.cancel()                            // removed in the fix
 *             wc.resultChan <- errResult             // unbuffered: G1 waits here
 *         case <-wc.ctx.Done():
 *         }
 *     }
 *     func (wc *watchChan) Stop() {                  // G2
 *         wc.errChan <- errors.New("Error")
 *         wc.cancel()
 *     }
 *     go wc.run(); go wc.Stop()
 *
 * Go's goroutineleak profile reports (*watchChan).run [chan send] (not
 * flaky in Go's test).
 *
 * The C form: errChan and resultChan are rendezvous ll_chans, the context
 * an ll_context; the error G1 turns into a result is the payload
 * (RESULT_BYTES). Nothing needs forcing: errChan is unbuffered, so Stop's
 * send completes only once run's select has taken it, and Stop's cancel
 * comes after. Stop returns and is joined (Go reclaims it); G1 is left
 * holding the result and the only pointers to the watch (orphaned).
 *
 * The fix (the pull request's): the result is sent in a select with
 * ctx.Done(), so a user who has stopped watching (and cancelled) releases
 * the sender; the cancel moves after it.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { RESULT_BYTES = 64 * 1024 }; /* the error's result: the payload of one instance */

static const char ERROR_TEXT[] = "Error";

struct watch_chan {
    ll_run *run;
    ll_context *ctx;                /* Go: ctx, cancel */
    ll_chan *result_chan;           /* Go: resultChan, unbuffered */
    ll_chan *err_chan;              /* Go: errChan, unbuffered */
    bool fixed;
    pthread_t runner, stopper;
};

static struct watch_chan *new_watch_chan(ll_run *run, bool fixed)
{
    struct watch_chan *wc = ll_xmalloc(run, sizeof *wc);
    *wc = (struct watch_chan){.run = run, .ctx = ll_context_with_cancel(run), .result_chan = ll_chan_new(run, 0),
                              .err_chan = ll_chan_new(run, 0), .fixed = fixed};
    return wc;
}

static void free_watch_chan(struct watch_chan *wc)
{
    ll_context_free(wc->ctx);
    ll_chan_free(wc->result_chan);
    ll_chan_free(wc->err_chan);
    free(wc);
}

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static void *parse_error(ll_run *run, const char *err)
{
    unsigned char *result = ll_xmalloc(run, RESULT_BYTES);
    memset(result, err[0] != '\0', RESULT_BYTES); /* errResult := len(err.Error()) != 0 */
    return result;
}

/* G1. */
static LL_WAIT_SITE void watch_chan_run(struct watch_chan *wc)
{
    ll_select_case cases[] = {{.chan = wc->err_chan}, {.chan = ll_context_done(wc->ctx)}};
    if (ll_select(cases, 2, false) != 0)  /* case <-wc.ctx.Done(): */
        return;
    void *result = parse_error(wc->run, cases[0].item);
    bool sent;
    if (wc->fixed) {
        ll_select_case send_or_done[] = {
            {.chan = wc->result_chan, .send = true, .item = result},
            {.chan = LL_FIX_VALUE(ll_context_done(wc->ctx), NULL)}, /* FIX: ...or the user gave up */
        };
        sent = ll_select(send_or_done, 2, false) == 0;
        ll_context_cancel(wc->ctx);       /* the fix's cancel, after the send */
    } else {
        ll_context_cancel(wc->ctx);       /* wc.cancel(): nothing waits on it but Stop's caller */
        sent = ll_chan_send(wc->result_chan, result); /* leaky: nobody reads resultChan */
    }
    if (!sent)
        free(result);
}

/* G2. */
static void *stop(void *arg)
{
    struct watch_chan *wc = arg;
    ll_chan_send(wc->err_chan, (void *)ERROR_TEXT); /* wc.errChan <- errors.New("Error") */
    ll_context_cancel(wc->ctx);
    return NULL;
}

static void *run_thread(void *wc) { watch_chan_run(wc); return NULL; }

static struct watch_chan *start(ll_run *run, bool fixed)
{
    struct watch_chan *wc = new_watch_chan(run, fixed);
    ll_thread_start(run, &wc->runner, run_thread, wc); /* go wc.run() */
    ll_thread_start(run, &wc->stopper, stop, wc);      /* go wc.Stop() */
    pthread_join(wc->stopper, NULL);                   /* Stop returns; Go reclaims it, C joins it */
    return wc;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct watch_chan *wc = start(run, false);
    ll_chan_await_parked(run, wc->result_chan, wc->runner); /* G1 sends to nobody */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct watch_chan *wc = start(run, true);
    LL_FIX(pthread_join(wc->runner, NULL)); /* FIX: Stop's cancel released the send: join G1 */
    LL_FIX(free_watch_chan(wc));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes25331",
    .summary = "GoKer kubernetes#25331 (channel & context): a watch's run loop sends an error's result\n"
               "on a channel its stopping user no longer reads; the cancel does not reach a plain send.",
    .leaky_summary = "a plain send of the result: run waits forever, holding it",
    .fixed_summary = "the send is a select with ctx.Done(): Stop's cancel releases run, joined, all freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RESULT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
