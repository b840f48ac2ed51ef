/* kubernetes5316 - GoKer kubernetes#5316 (channel): a request handler
 * gives up on a timeout; the worker it started blocks forever sending its
 * result on an unbuffered channel nobody reads any more.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes5316.go; the fix: kubernetes/kubernetes pull 5316):
 *
 *     func finishRequest(timeout time.Duration, fn func() error) {   // G1
 *         ch := make(chan bool)
 *         errCh := make(chan error)
 *         go func() {                                                // G2
 *             if err := fn(); err != nil { errCh <- err } else { ch <- true }
 *         }()
 *         select {
 *         case <-ch:
 *         case <-errCh:
 *         case <-time.After(timeout):
 *         }
 *     }
 *
 * fn takes longer than the timeout (it sleeps 2 ms, the timeout is 1 us):
 * G1 takes the timer's case and returns; G2's send has no receiver left.
 * Go's goroutineleak profile reports finishRequest_kubernetes5316.func1
 * [chan send] (not flaky in Go's test).
 *
 * The C form: ch and errCh are rendezvous ll_chans, time.After is an
 * ll_chan that closes itself TIMEOUT_MS from now (ll_chan_close_after: a
 * timed wait, no timer thread). G1 is the caller itself (it returns, as in
 * Go); G2 computes the result (RESULT_BYTES, the payload) and sends it.
 * The order is forced, not hoped for: fn waits at a gate that G1 closes
 * once its select has returned, so the timeout always comes first. Which
 * channel G2 sends on was rand.Intn in Go: here it alternates with the
 * instance (odd instances fail), the same wait either way. G2 is left
 * alone holding the only pointers to both channels and its result
 * (orphaned).
 *
 * The fix (the pull request's): both channels get a buffer of one, so G2's
 * send completes whether or not G1 is still there; what it sent is freed
 * with the channels (Go's GC).
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    RESULT_BYTES = 64 * 1024,       /* the request's result: the payload of one instance */
    TIMEOUT_MS = 1,                 /* Go: time.Microsecond; the gate makes the length irrelevant */
};

struct request {
    ll_run *run;
    ll_chan *ch, *err_ch;           /* Go: ch (chan bool), errCh (chan error) */
    ll_chan *gave_up;               /* forced order: closed once G1's select has returned */
    bool fails;                     /* Go: rand.Intn(10) > 5 */
    pthread_t worker;               /* G2 */
};

static bool fn(struct request *r, void **result)
{
    void *unused;
    ll_chan_recv(r->gave_up, &unused); /* forced order: fn outlasts the timeout (Go: time.Sleep(2ms)) */
    *result = ll_xmalloc(r->run, RESULT_BYTES);
    memset(*result, 0x5a, RESULT_BYTES);
    return !r->fails;
}

/* G2: the worker; it sends whatever fn produced, an error or a result. */
static LL_WAIT_SITE void finish_request_worker(struct request *r)
{
    void *result;
    bool sent = !fn(r, &result) ? ll_chan_send(r->err_ch, result) /* leaky: errCh <- err, nobody receives */
                                : ll_chan_send(r->ch, result);    /* leaky: ch <- true, nobody receives */
    if (!sent) /* never here: no one closes the channels */
        free(result);
}

static void *worker(void *r) { finish_request_worker(r); return NULL; }

/* G1: finishRequest. Both variants wait the same way; they differ in the
 * channels' capacity. */
static struct request *finish_request(ll_run *run, long long instance, size_t capacity)
{
    struct request *r = ll_xmalloc(run, sizeof *r);
    *r = (struct request){.run = run, .ch = ll_chan_new(run, capacity), .err_ch = ll_chan_new(run, capacity),
                          .gave_up = ll_chan_new(run, 0), .fails = instance % 2 == 1};
    ll_thread_start(run, &r->worker, worker, r);
    ll_chan *after = ll_chan_new(run, 0);
    ll_chan_close_after(after, TIMEOUT_MS); /* time.After(timeout) */
    ll_select_case cases[] = {{.chan = r->ch}, {.chan = r->err_ch}, {.chan = after}};
    ll_select(cases, 3, false);             /* only the timer can be ready: fn is still at its gate */
    ll_chan_free(after);
    ll_chan_close(r->gave_up);              /* forced order: G1 has given up; now fn may finish */
    return r;
}

static void leaky_instance(ll_run *run, long long instance)
{
    struct request *r = finish_request(run, instance, 0);
    ll_chan_await_parked(run, r->fails ? r->err_ch : r->ch, r->worker); /* G2 sends to nobody */
}

static void fixed_instance(ll_run *run, long long instance)
{
    struct request *r = finish_request(run, instance, LL_FIX_VALUE(1, 0)); /* FIX: make(chan T, 1): the send never waits */
    LL_FIX(pthread_join(r->worker, NULL)); /* FIX: G2's send completed into the buffer: join it */
    void *result;
    LL_FIX(if (ll_chan_recv(r->fails ? r->err_ch : r->ch, &result)) free(result)); /* FIX: and free what */
    LL_FIX(ll_chan_free(r->ch); ll_chan_free(r->err_ch); ll_chan_free(r->gave_up); free(r)); /* Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes5316",
    .summary = "GoKer kubernetes#5316 (channel): finishRequest times out and returns; the worker it\n"
               "started blocks forever sending its result on an unbuffered channel.",
    .leaky_summary = "unbuffered result channels: the worker waits forever to hand over its result",
    .fixed_summary = "buffered result channels: the worker's send completes, it is joined, the result freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RESULT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
