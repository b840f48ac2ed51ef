/* ncast_leak - LeakProf's NCastLeak: N senders on an unbuffered channel, one
 * receive; the other N-1 senders block forever, holding the request.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * commonpatterns.go, from "Unveiling and Vanquishing Goroutine Leaks in
 * Enterprise Microservices", CGO 2024):
 *
 *     func nCastLeak(items []any) {
 *         ch := make(chan any)                       // unbuffered
 *         for range items {
 *             go func() { ch <- struct{}{} }()       // every item's result
 *         }
 *         <-ch                                       // only the first is taken
 *     }
 *     go func() { nCastLeak(nil) }()                 // no sender: the receive blocks
 *     go func() { nCastLeak(make([]any, 5)) }()      // 4 senders block
 *
 * Go's goroutineleak profile reports nCastLeak.func1 [chan send] (4 per call)
 * and NCastLeak.func2 [chan receive] (the call with no items).
 *
 * The C form: nCastLeak is ncast_leak(), each `go func` a thread running
 * send_result(), ch a rendezvous ll_chan (capacity 0), the items a request
 * of ITEMS x ITEM_BYTES every sender reads. One instance makes both calls of
 * the original: the 5-item call on main (it returns with the first result;
 * 4 senders stay blocked in ll_chan_send) and the no-item call on a thread
 * of its own (blocked in ll_chan_recv). Nothing else points to the two
 * requests or their channels: the blocked threads are all that is left of
 * them (orphaned, as Go's profile proves it for the goroutines).
 *
 * What the tools see (one instance; expected/zoo/ncast_leak.toml): the
 * census, 4 threads in send_result and 1 in ncast_leak; the heap profile,
 * 83,056 B in use, new_request first; memcheck, "possibly lost" 83,720 B
 * (each sender holds &request->senders[i], an interior pointer, not the
 * request's start); heaptrack, 85,184 B leaked; threadcheck, 5 threads
 * alive; the heap checker, LSan, ASan and TSan: nothing (blocked stacks
 * are roots, and no thread has finished).
 *
 * The fix is this port's own: commonpatterns.go carries only the leak, and
 * LeakProf names the pattern without a patch. Room for every result,
 * make(chan any, len(items)), the usual remedy for an N-cast, so each
 * sender can leave; and, for the call with no items (which the buffer
 * alone does not help: no sender will ever come), return before
 * receiving. Go's garbage collector then frees the request; in C the
 * caller joins the senders and frees it.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    ITEMS = 5,                          /* the original's make([]any, 5) */
    ITEM_BYTES = 16 * 1024,             /* what one sender reads */
    REQUEST_BYTES = ITEMS * ITEM_BYTES, /* the payload of one instance: 80 KiB */
};

struct request;

struct sender {
    struct request *req;
    size_t index;
    pthread_t thread;
    uint64_t result;
};

struct request {
    ll_run *run;
    ll_chan *results;                   /* Go: ch */
    size_t items;
    unsigned char *body;                /* items x ITEM_BYTES; NULL without items */
    struct sender senders[ITEMS];
    pthread_t caller;                   /* the thread of the no-item call */
};

/* The request and the channel its results come back on (made inside
 * nCastLeak in Go: who allocates it changes nothing, and main needs its
 * address to see the threads park). */
static struct request *new_request(ll_run *run, size_t items, size_t capacity)
{
    struct request *req = ll_xmalloc(run, sizeof *req);
    *req = (struct request){.run = run, .results = ll_chan_new(run, capacity), .items = items};
    if (items) {
        req->body = malloc(items * ITEM_BYTES); /* malloc here: tools charge the payload to new_request */
        if (!req->body)
            ll_refuse(run, "malloc", ENOMEM, "lower --instances");
        memset(req->body, 0x5a, items * ITEM_BYTES);
    }
    return req;
}

/* Go: go func() { ch <- struct{}{} }() - each item's result. */
static void *send_result(void *arg)
{
    struct sender *s = arg;
    for (size_t i = 0; i < ITEM_BYTES; i++)
        s->result += s->req->body[s->index * ITEM_BYTES + i];
    ll_chan_send(s->req->results, s); /* leaky: only the first send is ever received */
    return NULL;
}

/* The buggy function: every item gets a sender, one result is taken. */
static LL_WAIT_SITE struct sender *ncast_leak(struct request *req)
{
    for (size_t i = 0; i < req->items; i++) {
        req->senders[i] = (struct sender){.req = req, .index = i};
        ll_thread_start(req->run, &req->senders[i].thread, send_result, &req->senders[i]);
    }
    void *first = NULL;
    ll_chan_recv(req->results, &first); /* no items: nobody will ever send */
    return first;
}

static LL_WAIT_SITE struct sender *ncast_fixed(struct request *req)
{
    LL_FIX(if (req->items == 0) return NULL); /* FIX: no items, no result to wait for */
    for (size_t i = 0; i < req->items; i++) {
        req->senders[i] = (struct sender){.req = req, .index = i};
        ll_thread_start(req->run, &req->senders[i].thread, send_result, &req->senders[i]);
    }
    void *first = NULL;
    ll_chan_recv(req->results, &first);
    return first;
}

static void *call_ncast_leak(void *req) { return ncast_leak(req); }
static void *call_ncast_fixed(void *req) { return ncast_fixed(req); }

/* What Go's garbage collector does once the goroutines are gone. */
static void finish_request(struct request *req)
{
    for (size_t i = 0; i < req->items; i++)
        pthread_join(req->senders[i].thread, NULL);
    ll_chan_free(req->results);
    free(req->body);
    free(req);
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct request *none = new_request(run, 0, 0);                  /* go func() { nCastLeak(nil) }() */
    ll_thread_start(run, &none->caller, call_ncast_leak, none);
    struct request *five = new_request(run, ITEMS, 0);              /* nCastLeak(make([]any, 5)) */
    struct sender *first = ncast_leak(five);
    pthread_join(first->thread, NULL); /* Go reclaims a goroutine that returns; C joins it */
    /* The leak is complete once the other senders and the no-item caller
     * sleep in their waits; then main forgets both requests. */
    for (size_t i = 0; i < ITEMS; i++)
        if (&five->senders[i] != first)
            ll_chan_await_parked(run, five->results, five->senders[i].thread);
    ll_chan_await_parked(run, none->results, none->caller);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct request *none = new_request(run, 0, 0);
    ll_thread_start(run, &none->caller, call_ncast_fixed, none);
    struct request *five = new_request(run, ITEMS, LL_FIX_VALUE(ITEMS, 0)); /* FIX: make(chan any, len(items)) */
    ncast_fixed(five);
    LL_FIX(pthread_join(none->caller, NULL)); /* FIX: the no-item call has returned */
    LL_FIX(finish_request(none));             /* FIX: and C frees what the GC would */
    LL_FIX(finish_request(five));             /* FIX: every sender could leave: join them, free the request */
}

static const ll_zoo_kernel kernel = {
    .name = "ncast_leak",
    .summary = "LeakProf NCastLeak: N senders on an unbuffered channel, one receive;\n"
               "the other N-1 senders (and a receiver with no sender) block forever.",
    .leaky_summary = "unbuffered channel: 4 senders and the no-item receiver block, holding the request",
    .fixed_summary = "a buffer for every result, no receive without items; everything joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = REQUEST_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
