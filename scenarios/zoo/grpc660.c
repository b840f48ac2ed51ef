/* grpc660 - GoKer grpc#660 (channel): the benchmark loop returns on stop
 * while the call it started is still to send its result on an unbuffered
 * channel nobody will read.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/grpc660.go; the fix: grpc/grpc-go pull 660):
 *
 *     func (bc *benchmarkClient) doCloseLoopUnary() {  // G1
 *         for {
 *             done := make(chan bool)
 *             go func() {                              // G2
 *                 if rand.Intn(10) > 7 { done <- false; return }
 *                 done <- true                         // G2 waits here
 *             }()
 *             select { case <-bc.stop: return          // G1 returns: nobody reads done
 *                      case <-done: } } }
 *     go bc.doCloseLoopUnary()
 *     go func() { bc.stop <- true }()                  // helper
 *
 * Go's goroutineleak profile reports (*benchmarkClient).doCloseLoopUnary.func1
 * [chan send] (not flaky in Go's test). The GoKer kernel's description: "the
 * parent function could return without draining the done channel".
 *
 * The C form: stop and done are rendezvous ll_chans, the selects ll_select
 * (stop first: when both are ready, C takes the first case, which is the
 * bad one). Each call is malloc'ed with its response (RESPONSE_BYTES, the
 * payload), which G2 holds until its send completes. The order is forced:
 * G2 sends only once G1 has taken stop and returned (joined, with the
 * helper: Go reclaims them). Main waits until G2 sleeps in its send and
 * forgets the client: only G2 reaches the call and done (orphaned).
 *
 * What the tools see: see expected/zoo/grpc660.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix: the kernel's, for want of the pull request's diff (not read
 * here): done gets a buffer of one, so G2's send completes whether or not
 * G1 still listens, and G2 ends.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { RESPONSE_BYTES = 64 * 1024 }; /* the unary call's response: the payload of one instance */

struct call {                       /* one iteration's done channel and what G2 sends on it */
    ll_chan *done;
    unsigned char *response;
    ll_chan *loop_gone;             /* forced order: closed once G1 has returned */
};

struct benchmark_client {
    ll_run *run;
    ll_chan *stop;
    ll_chan *loop_gone;
    bool fixed;
    struct call *call;              /* the call G1 started last (for main's joins) */
    pthread_t g1, g2, helper;
};

__attribute__((noinline)) static struct call *new_call(ll_run *run, ll_chan *loop_gone, bool fixed)
{
    struct call *c = ll_xmalloc(run, sizeof *c);
    size_t capacity = fixed ? LL_FIX_VALUE(1, 0) : 0; /* FIX: make(chan bool, 1) */
    *c = (struct call){.done = ll_chan_new(run, capacity),
                       .response = ll_xmalloc(run, RESPONSE_BYTES), .loop_gone = loop_gone};
    memset(c->response, 0x5a, RESPONSE_BYTES);
    return c;
}

static void free_call(struct call *c)
{
    void *unused;
    ll_chan_close(c->done);
    ll_chan_recv(c->done, &unused); /* the buffered result nobody read */
    ll_chan_free(c->done);
    free(c->response);
    free(c);
}

/* G2: the unary call. */
static LL_WAIT_SITE void *unary_call(void *arg)
{
    struct call *c = arg;
    void *unused;
    ll_chan_recv(c->loop_gone, &unused); /* forced order: G1 has returned */
    ll_chan_send(c->done, c->response);  /* done <- true; leaky: nobody reads it, ever */
    return NULL;
}

/* G1. */
static void *do_close_loop_unary(void *arg)
{
    struct benchmark_client *bc = arg;
    for (;;) { /* one turn: G2 cannot send before G1 has returned, so stop always comes first */
        struct call *c = new_call(bc->run, bc->loop_gone, bc->fixed);
        bc->call = c;
        ll_thread_start(bc->run, &bc->g2, unary_call, c);
        ll_select_case cases[] = {{.chan = bc->stop}, {.chan = c->done}};
        if (ll_select(cases, 2, false) == 0)
            return NULL;                 /* case <-bc.stop: return */
        pthread_join(bc->g2, NULL);
        free_call(c);
    }
}

static void *stopper(void *arg)
{
    static char stop;
    struct benchmark_client *bc = arg;
    ll_chan_send(bc->stop, &stop);       /* bc.stop <- true */
    return NULL;
}

static struct benchmark_client *start(ll_run *run, bool fixed)
{
    struct benchmark_client *bc = ll_xmalloc(run, sizeof *bc);
    *bc = (struct benchmark_client){.run = run, .stop = ll_chan_new(run, 0), .loop_gone = ll_chan_new(run, 0),
                                    .fixed = fixed};
    ll_thread_start(run, &bc->g1, do_close_loop_unary, bc);
    ll_thread_start(run, &bc->helper, stopper, bc);
    pthread_join(bc->g1, NULL);          /* G1 took stop and returned (Go reclaims it, C joins it) */
    pthread_join(bc->helper, NULL);
    ll_chan_close(bc->loop_gone);        /* now G2 sends */
    return bc;
}

static void free_client(struct benchmark_client *bc)
{
    ll_chan_free(bc->stop);
    ll_chan_free(bc->loop_gone);
    free(bc);
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct benchmark_client *bc = start(run, false);
    struct call *c = bc->call;
    pthread_t g2 = bc->g2;
    ll_chan_await_parked(run, c->done, g2);
    ll_chan_free(bc->stop);              /* what G1 and the helper used: G2 keeps only its call */
    free(bc);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct benchmark_client *bc = start(run, true);
    LL_FIX(pthread_join(bc->g2, NULL));  /* FIX: the send lands in the buffer: join G2 */
    LL_FIX(free_call(bc->call));         /* FIX: and free what Go's GC would */
    LL_FIX(free_client(bc));
}

static const ll_zoo_kernel kernel = {
    .name = "grpc660",
    .summary = "GoKer grpc#660 (channel): doCloseLoopUnary returns on stop while the call it started\n"
               "still has to send its result on an unbuffered channel nobody will read.",
    .leaky_summary = "the loop returns on stop: the call's send on done waits forever, holding its response",
    .fixed_summary = "done has a buffer of one: the call's send completes, joined, everything freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RESPONSE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
