/* timeout - LeakProf's Timeout: a select takes the context's Done instead
 * of the message; the sender's send on an unbuffered channel blocks forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * commonpatterns.go, from "Unveiling and Vanquishing Goroutine Leaks in
 * Enterprise Microservices", CGO 2024):
 *
 *     func timeout(ctx context.Context) {
 *         ch := make(chan any)
 *         go func() { ch <- struct{}{} }()
 *         select {
 *         case <-ch:             // receive message: the sender is released
 *         case <-ctx.Done():     // context cancelled or timed out: the sender leaks
 *         }
 *     }
 *     ctx, cancel := context.WithCancel(context.Background())
 *     cancel()
 *     for i := 0; i < 100; i++ { go timeout(ctx) }
 *
 * Go's goroutineleak profile reports timeout.func1 [chan send]. (The Go
 * test notes that it is flaky in theory: a call leaks only when its select
 * picks Done, at random among the ready cases; one of 100 calls always does.)
 *
 * The C form: timeout is timeout(), its goroutine a thread running
 * send_result() that owns a malloc'ed closure (ch, freed when it returns),
 * ch a rendezvous ll_chan, the context an ll_context made
 * with ll_context_with_cancel and cancelled at once, the select an
 * ll_select; what the sender sends is a result of RESULT_BYTES (the
 * payload) it allocates first. The leaky order is forced by the select's
 * case order: ll_select fires the FIRST ready case (Go: a random one), and
 * ctx.Done() is written first, so the select takes Done whether or not the
 * sender is already offering its result: every call is the one in Go that
 * picked Done. One instance is one call, on main (Go's `go timeout(ctx)`
 * returns and is reclaimed; the call on main leaves the same thing behind),
 * with a context of its own, freed once the call returns (the sender never
 * sees it). Main waits until the sender is parked in ll_chan_send, then
 * forgets the call's locals: only the blocked sender reaches ch (orphaned).
 *
 * What the tools see (one instance; expected/zoo/timeout.toml): the
 * census, one thread in send_result, in ll_chan_send on the channel's
 * condition variable; the heap profile, 65,920 B in use (send_result);
 * memcheck, 65,936 B "still reachable" (hidden) and the blocked thread's
 * TLS block "possibly lost" (320 B); heaptrack, 66,288 B leaked;
 * threadcheck, 1 thread alive; orphans, 1 thread pinning 65,920 B; the
 * heap checker, LSan, ASan and TSan: nothing.
 *
 * The fix (this port's: commonpatterns.go carries only the leak): room for
 * the message, make(chan any, 1): the send completes whichever case the
 * select took, and the sender returns. In C the caller joins it and frees
 * the channel and the result left in it.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { RESULT_BYTES = 64 * 1024 }; /* what the sender sends: the payload of one instance */

struct closure {                   /* what `go func() { ch <- struct{}{} }()` captures */
    ll_run *run;
    ll_chan *ch;
};

struct call {                      /* timeout's locals, where main can watch them park */
    ll_chan *ch;                   /* Go: ch */
    pthread_t sender;
};

static LL_WAIT_SITE void send_result(ll_run *run, ll_chan *ch)
{
    unsigned char *result = malloc(RESULT_BYTES); /* malloc here: tools charge the payload to send_result */
    if (!result)
        ll_refuse(run, "malloc", ENOMEM, "lower --instances");
    memset(result, 0x5a, RESULT_BYTES);
    if (!ll_chan_send(ch, result)) /* leaky: the select took Done, nobody receives */
        free(result);              /* (a closed channel; never here: Go would panic) */
}

/* Go: go func() { ch <- struct{}{} }() - the sender. It owns its closure and
 * frees it when it returns (Go's collector would); if it never returns, it
 * keeps it. */
static void *go_send_result(void *arg)
{
    struct closure *f = arg;
    send_result(f->run, f->ch);
    free(f);
    return NULL;
}

static void go(ll_run *run, pthread_t *thread, ll_chan *ch)
{
    struct closure *f = ll_xmalloc(run, sizeof *f);
    *f = (struct closure){.run = run, .ch = ch};
    ll_thread_start(run, thread, go_send_result, f);
}

/* The select of both variants. Done is the first case: C's select fires
 * the first ready one, and the context is already cancelled. */
static void await_result_or_done(ll_chan *ch, ll_context *ctx)
{
    ll_select_case cases[] = {
        {.chan = ll_context_done(ctx)}, /* case <-ctx.Done(): the sender leaks */
        {.chan = ch},                   /* case <-ch: the sender is released */
    };
    if (ll_select(cases, 2, false) == 1 && cases[1].ok)
        free(cases[1].item);            /* (never taken here: Done is ready first) */
}

/* The buggy function. */
static void timeout(ll_run *run, struct call *c, ll_context *ctx)
{
    c->ch = ll_chan_new(run, 0); /* leaky: ch := make(chan any) */
    go(run, &c->sender, c->ch);
    await_result_or_done(c->ch, ctx);
}

static void timeout_fixed(ll_run *run, struct call *c, ll_context *ctx)
{
    c->ch = ll_chan_new(run, LL_FIX_VALUE(1, 0)); /* FIX: make(chan any, 1): room for the message */
    go(run, &c->sender, c->ch);
    await_result_or_done(c->ch, ctx);
}

/* What Go's garbage collector does once the sender is gone: the channel
 * and the result still in its buffer. */
static void free_channel(ll_chan *ch)
{
    ll_select_case left = {.chan = ch};
    if (ll_select(&left, 1, true) == 0)
        free(left.item);
    ll_chan_free(ch);
}

static ll_context *cancelled_context(ll_run *run)
{
    ll_context *ctx = ll_context_with_cancel(run); /* ctx, cancel := context.WithCancel(...) */
    ll_context_cancel(ctx);                        /* cancel() */
    return ctx;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    ll_context *ctx = cancelled_context(run);
    struct call c;
    timeout(run, &c, ctx);                     /* go timeout(ctx) */
    ll_context_free(ctx);                      /* the call returned; the sender never held it */
    ll_chan_await_parked(run, c.ch, c.sender); /* the send, for good */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    ll_context *ctx = cancelled_context(run);
    struct call c;
    timeout_fixed(run, &c, ctx);
    ll_context_free(ctx);
    LL_FIX(pthread_join(c.sender, NULL)); /* FIX: the send completed: the sender returned, join it */
    LL_FIX(free_channel(c.ch));           /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "timeout",
    .summary = "LeakProf Timeout: a select on a message and an already-cancelled context takes\n"
               "Done; the sender's send on an unbuffered channel blocks forever.",
    .leaky_summary = "unbuffered: the select takes ctx.Done(), the sender blocks in its send, holding its result",
    .fixed_summary = "a buffer of one: the sender's send completes, it returns, joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RESULT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
