/* early_return - LeakProf's EarlyReturn: the parent returns on an error
 * before it receives what its child sends; the child's send on an
 * unbuffered channel blocks forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * commonpatterns.go, from "Unveiling and Vanquishing Goroutine Leaks in
 * Enterprise Microservices", CGO 2024):
 *
 *     func earlyReturn(err error) {
 *         ch := make(chan any)                   // synchronous
 *         go func() { ch <- struct{}{} }()       // leaks if the parent returns early
 *         if err != nil {
 *             return                             // interrupt evaluation early on error
 *         }
 *         <-ch                                   // only receive if there is no error
 *     }
 *     go earlyReturn(fmt.Errorf("error"))
 *
 * Go's goroutineleak profile reports earlyReturn.func1 [chan send].
 *
 * The C form: earlyReturn is early_return(), its goroutine a thread
 * running send_result() that owns a malloc'ed closure (ch, freed when it
 * returns), ch a rendezvous ll_chan; what the child sends is a result of
 * RESULT_BYTES (the payload) that it allocates first. One
 * instance is one call with an error, on main (Go's `go earlyReturn(...)`
 * returns, so its goroutine is reclaimed; the call on main leaves the same
 * thing behind). The order needs no forcing: whenever the child gets to its
 * send, nobody will ever receive. Main waits until the child is parked in
 * ll_chan_send, then forgets the call's locals: only the blocked child
 * reaches ch (orphaned).
 *
 * What the tools see (one instance; expected/zoo/early_return.toml): the
 * census, one thread in send_result, in ll_chan_send on the channel's
 * condition variable; the heap profile, 65,920 B in use (send_result);
 * memcheck, 65,936 B "still reachable" (hidden) and the blocked thread's
 * TLS block "possibly lost" (320 B); heaptrack, 66,288 B leaked;
 * threadcheck, 1 thread alive; orphans, 1 thread pinning 65,920 B; the
 * heap checker, LSan, ASan and TSan: nothing.
 *
 * The fix (this port's: commonpatterns.go carries only the leak): room for
 * the one result, make(chan any, 1): the send completes whether or not
 * anyone receives, and the child returns. In C the caller joins it and
 * frees the channel and the result left in it.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { RESULT_BYTES = 64 * 1024 }; /* what the child sends: the payload of one instance */

struct closure {                   /* what `go func() { ch <- struct{}{} }()` captures */
    ll_run *run;
    ll_chan *ch;
};

struct call {                      /* early_return's locals, where main can watch them park */
    ll_chan *ch;                   /* Go: ch */
    pthread_t child;
};

static LL_WAIT_SITE void send_result(ll_run *run, ll_chan *ch)
{
    unsigned char *result = malloc(RESULT_BYTES); /* malloc here: tools charge the payload to send_result */
    if (!result)
        ll_refuse(run, "malloc", ENOMEM, "lower --instances");
    memset(result, 0x5a, RESULT_BYTES);
    if (!ll_chan_send(ch, result)) /* leaky: the parent has returned, nobody receives */
        free(result);              /* (a closed channel; never here: Go would panic) */
}

/* Go: go func() { ch <- struct{}{} }() - the child. It owns its closure and
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

/* The buggy function. */
static void early_return(ll_run *run, struct call *c, bool err)
{
    c->ch = ll_chan_new(run, 0); /* leaky: ch := make(chan any), synchronous */
    go(run, &c->child, c->ch);
    if (err)
        return; /* interrupt evaluation early in case of error: the child is left sending */
    void *result = NULL;
    ll_chan_recv(c->ch, &result);
    free(result);
}

static void early_return_fixed(ll_run *run, struct call *c, bool err)
{
    c->ch = ll_chan_new(run, LL_FIX_VALUE(1, 0)); /* FIX: make(chan any, 1): room for the result */
    go(run, &c->child, c->ch);
    if (err)
        return;
    void *result = NULL;
    ll_chan_recv(c->ch, &result);
    free(result);
}

/* What Go's garbage collector does once the child is gone: the channel and
 * the result still in its buffer. */
static void free_channel(ll_chan *ch)
{
    ll_select_case left = {.chan = ch};
    if (ll_select(&left, 1, true) == 0)
        free(left.item);
    ll_chan_free(ch);
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct call c;
    early_return(run, &c, true);              /* earlyReturn(fmt.Errorf("error")) */
    ll_chan_await_parked(run, c.ch, c.child); /* the send, for good */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct call c;
    early_return_fixed(run, &c, true);
    LL_FIX(pthread_join(c.child, NULL)); /* FIX: the send completed: the child returned, join it */
    LL_FIX(free_channel(c.ch));          /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "early_return",
    .summary = "LeakProf EarlyReturn: the parent returns on an error before it receives; the\n"
               "child's send on an unbuffered channel blocks forever.",
    .leaky_summary = "unbuffered: the parent returns early, the child blocks in its send, holding its result",
    .fixed_summary = "a buffer of one: the child's send completes, it returns, joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RESULT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
