/* double_send - LeakProf's DoubleSend: a `return` is missing after the
 * error send, so the function sends twice; the second send on an
 * unbuffered channel has no receiver and blocks forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * commonpatterns.go, from "Unveiling and Vanquishing Goroutine Leaks in
 * Enterprise Microservices", CGO 2024):
 *
 *     func doubleSend(ch chan any, err error) {
 *         if err != nil {
 *             ch <- nil                  // in case of an error, send nil
 *             // return is missing here
 *         }
 *         ch <- struct{}{}               // still executed in the error case
 *     }
 *     ch := make(chan any)
 *     go func() { doubleSend(ch, nil) }()              // func2: one send, received
 *     <-ch
 *     go func() { doubleSend(ch, fmt.Errorf("error")) }() // func3: nil received, 2nd send blocks
 *     <-ch
 *     ch1 := make(chan any, 1)
 *     go func() { doubleSend(ch1, fmt.Errorf("error")) }() // func4: the buffer takes the 2nd send
 *     <-ch1
 *
 * Go's goroutineleak profile reports DoubleSend.func3 [chan send] (func1 is
 * the test's deferred profile write): the error call on the unbuffered
 * channel. The buffered one's second send fits once the nil is taken.
 *
 * The C form: doubleSend is double_send(), each goroutine a thread that
 * owns a malloc'ed closure (ch and err, freed when it returns), ch a
 * rendezvous ll_chan, ch1 an ll_chan of capacity 1; the normal path's
 * value is a response of RESPONSE_BYTES (the payload) that double_send
 * allocates and sends. One instance runs DoubleSend's body: the three calls
 * in Go's order on the same channels, main receiving once per call,
 * joining the two threads that return (Go reclaims them) and freeing what
 * Go's collector would (the first response; ch1, with the response the
 * third call left in its buffer; DoubleSend's own frame). The order needs
 * no forcing: each receive has exactly one sender to meet. The error call
 * on ch is left in ll_chan_send, holding its closure and its response;
 * main forgets ch, so nothing but that blocked thread reaches it
 * (orphaned).
 *
 * What the tools see (one instance; expected/zoo/double_send.toml): the
 * census, one thread in double_send, in ll_chan_send on the channel's
 * condition variable; the heap profile, 65,928 B in use (double_send);
 * memcheck, 65,944 B "still reachable" (hidden) and the blocked thread's
 * TLS block "possibly lost" (320 B); heaptrack, 66,648 B leaked;
 * threadcheck, 1 thread alive; orphans, 1 thread pinning 65,928 B; the
 * heap checker, LSan, ASan and TSan: nothing.
 *
 * The fix (the one commonpatterns.go's comment names, "Return is missing
 * here"): the missing `return` after the error send.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { RESPONSE_BYTES = 64 * 1024 }; /* the normal path's response: the payload of one instance */

struct closure {                     /* what `go func() { doubleSend(ch, err) }()` captures */
    ll_run *run;
    ll_chan *ch;
    bool err;
};

struct test {                        /* Go: DoubleSend's own frame, main's bookkeeping */
    ll_chan *ch;                     /* unbuffered */
    ll_chan *ch1;                    /* make(chan any, 1) */
    pthread_t ok, error, buffered;   /* func2, func3, func4 */
};

/* The buggy function. */
static LL_WAIT_SITE void double_send(ll_run *run, ll_chan *ch, bool err)
{
    if (err) {
        ll_chan_send(ch, NULL); /* in case of an error, send nil */
        /* leaky: the return is missing here */
    }
    unsigned char *response = malloc(RESPONSE_BYTES); /* malloc here: tools charge the payload to double_send */
    if (!response)
        ll_refuse(run, "malloc", ENOMEM, "lower --instances");
    memset(response, 0x5a, RESPONSE_BYTES);
    if (!ll_chan_send(ch, response)) /* the error call on ch: nobody receives any more */
        free(response);              /* (a closed channel; never here: Go would panic) */
}

static LL_WAIT_SITE void double_send_fixed(ll_run *run, ll_chan *ch, bool err)
{
    if (err) {
        ll_chan_send(ch, NULL);
        LL_FIX(return); /* FIX: return after the error send */
    }
    unsigned char *response = malloc(RESPONSE_BYTES);
    if (!response)
        ll_refuse(run, "malloc", ENOMEM, "lower --instances");
    memset(response, 0x5a, RESPONSE_BYTES);
    if (!ll_chan_send(ch, response))
        free(response);
}

/* A goroutine: it owns its closure and frees it when it returns (Go's
 * collector would); one that never returns keeps it. */
static void *go_double_send(void *arg)
{
    struct closure *f = arg;
    double_send(f->run, f->ch, f->err);
    free(f);
    return NULL;
}

static void *go_double_send_fixed(void *arg)
{
    struct closure *f = arg;
    double_send_fixed(f->run, f->ch, f->err);
    free(f);
    return NULL;
}

static void go(ll_run *run, pthread_t *thread, void *(*fn)(void *), ll_chan *ch, bool err)
{
    struct closure *f = ll_xmalloc(run, sizeof *f);
    *f = (struct closure){.run = run, .ch = ch, .err = err};
    ll_thread_start(run, thread, fn, f);
}

/* Go's DoubleSend() up to its return: every receive it makes. */
static struct test *double_send_test(ll_run *run, void *(*fn)(void *))
{
    struct test *t = ll_xmalloc(run, sizeof *t);
    *t = (struct test){.ch = ll_chan_new(run, 0)};
    void *item = NULL;
    go(run, &t->ok, fn, t->ch, false);       /* go func() { doubleSend(ch, nil) }() */
    ll_chan_recv(t->ch, &item);
    free(item);                              /* its response: garbage once received */
    pthread_join(t->ok, NULL);               /* it returned; Go reclaims it, C joins it */
    go(run, &t->error, fn, t->ch, true);     /* go func() { doubleSend(ch, fmt.Errorf("error")) }() */
    ll_chan_recv(t->ch, &item);              /* the nil */
    t->ch1 = ll_chan_new(run, 1);            /* ch1 := make(chan any, 1) */
    go(run, &t->buffered, fn, t->ch1, true); /* go func() { doubleSend(ch1, fmt.Errorf("error")) }() */
    ll_chan_recv(t->ch1, &item);             /* the nil; the response then fits the buffer */
    pthread_join(t->buffered, NULL);
    ll_select_case left = {.chan = t->ch1};  /* what Go's collector frees with ch1: */
    if (ll_select(&left, 1, true) == 0)      /* the response still in its buffer */
        free(left.item);
    ll_chan_free(t->ch1);
    return t;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct test *t = double_send_test(run, go_double_send);
    ll_chan_await_parked(run, t->ch, t->error); /* the second send, for good */
    free(t); /* DoubleSend returns: its frame is gone, ch is left to the blocked call */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct test *t = double_send_test(run, go_double_send_fixed);
    LL_FIX(pthread_join(t->error, NULL)); /* FIX: the error call returned after its nil: join it */
    LL_FIX(ll_chan_free(t->ch));          /* FIX: and free what Go's GC would */
    free(t);
}

static const ll_zoo_kernel kernel = {
    .name = "double_send",
    .summary = "LeakProf DoubleSend: a return is missing after the error send, so the error call\n"
               "sends twice; its second send on an unbuffered channel blocks forever.",
    .leaky_summary = "no return after the error send: the error call blocks in its second send, holding a response",
    .fixed_summary = "the missing return: every call sends once and returns, joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RESPONSE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
