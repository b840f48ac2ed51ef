/* no_close_range - LeakProf's NoCloseRange: workers range over a channel
 * nobody ever closes; with no workers at all, the sender blocks instead.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * commonpatterns.go, from "Unveiling and Vanquishing Goroutine Leaks in
 * Enterprise Microservices", CGO 2024):
 *
 *     func noCloseRange(list []any, workers int) {
 *         ch := make(chan any)                                  // unbuffered
 *         for i := 0; i < workers; i++ {
 *             go func() { for item := range ch { _ = item } }() // each worker
 *         }
 *         for _, item := range list { ch <- item }              // no workers: blocks
 *         // ch is never closed: the workers wait for more items forever
 *     }
 *     go noCloseRange([]any{1, 2, 3}, 0)
 *     go noCloseRange([]any{1, 2, 3}, 3)
 *
 * Go's goroutineleak profile reports noCloseRange [chan send] (the call
 * with no workers, blocked on its first item) and noCloseRange.func1 [chan
 * receive] (the 3 workers of the other call, once the list is sent).
 *
 * The C form: noCloseRange is no_close_range(), each worker a thread
 * running process_items(), ch a rendezvous ll_chan, `for item := range ch`
 * a loop on ll_chan_recv; the list is ITEMS items of ITEM_BYTES. One
 * instance makes both calls of the original: the 3-worker call on main (it
 * returns once its 3 items are taken; its 3 workers stay in ll_chan_recv)
 * and the no-worker call on a thread of its own (in ll_chan_send on its
 * first item, holding its list: the payload). The workers only take the
 * items (Go's `_ = item`), so the 3-worker call's list is garbage once the
 * call returns: main frees it in both variants, as Go's collector would.
 * No order needs forcing: every run ends the same way. Nothing else points
 * to either call's channel: the blocked threads are all that is left of
 * them (orphaned).
 *
 * What the tools see (one instance; expected/zoo/no_close_range.toml): the
 * census, 3 threads in process_items (ll_chan_recv) and 1 in no_close_range
 * (ll_chan_send); the heap profile, 74,592 B in use (new_call's list
 * first); memcheck, 74,608 B "still reachable" (hidden), the 4 threads' TLS
 * blocks "possibly lost" (1,280 B); heaptrack, 76,016 B leaked;
 * threadcheck, 4 threads alive; the heap checker, LSan, ASan and TSan:
 * nothing (blocked stacks are roots, and no thread has finished).
 *
 * The fix (the one commonpatterns.go's comment points at, "The channel is
 * never closed"): close the channel once the list is sent, so the
 * workers' range ends, and give it room for the whole list,
 * make(chan any, len(list)), so a call with no workers (or a worker that
 * gave up) cannot block the sender. In C the caller then joins the threads
 * and frees the channel and the list.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    ITEMS = 3,                           /* the original's []any{1, 2, 3} */
    WORKERS = 3,                         /* noCloseRange(list, 3) */
    ITEM_BYTES = 24 * 1024,              /* one item of the list */
    LIST_BYTES = ITEMS * ITEM_BYTES,     /* the payload of one instance: 72 KiB, the no-worker call's list */
};

struct call {                            /* one call of noCloseRange */
    ll_run *run;
    ll_chan *ch;                         /* Go: ch */
    unsigned char *list;                 /* ITEMS x ITEM_BYTES */
    int workers;
    pthread_t worker[WORKERS];
    pthread_t caller;                    /* the thread of the no-worker call */
};

/* The list and the channel its items go out on (made inside noCloseRange
 * in Go: who allocates them changes nothing, and main needs the channel's
 * address to see the threads park). */
static struct call *new_call(ll_run *run, int workers, size_t capacity)
{
    struct call *c = ll_xmalloc(run, sizeof *c);
    *c = (struct call){.run = run, .ch = ll_chan_new(run, capacity), .workers = workers};
    c->list = malloc(LIST_BYTES); /* malloc here: tools charge the payload to new_call */
    if (!c->list)
        ll_refuse(run, "malloc", ENOMEM, "lower --instances");
    memset(c->list, 0x5a, LIST_BYTES);
    return c;
}

/* What Go's garbage collector does once nobody uses the call any more. */
static void free_call(struct call *c)
{
    ll_chan_free(c->ch);
    free(c->list);
    free(c);
}

/* Go: go func() { for item := range ch { _ = item } }() - one worker. */
static LL_WAIT_SITE void *process_items(void *arg)
{
    struct call *c = arg;
    void *item;
    while (ll_chan_recv(c->ch, &item)) /* leaky: ch is never closed, so the range never ends */
        (void)item;                    /* Go: _ = item (the item is not read) */
    return NULL;
}

/* The buggy function: workers started, the list sent, the channel left open. */
static LL_WAIT_SITE void no_close_range(struct call *c)
{
    for (int i = 0; i < c->workers; i++)
        ll_thread_start(c->run, &c->worker[i], process_items, c);
    for (size_t i = 0; i < ITEMS; i++)
        if (!ll_chan_send(c->ch, c->list + i * ITEM_BYTES)) /* no workers: nobody ever takes it */
            break;
}

static LL_WAIT_SITE void no_close_range_fixed(struct call *c)
{
    for (int i = 0; i < c->workers; i++)
        ll_thread_start(c->run, &c->worker[i], process_items, c);
    for (size_t i = 0; i < ITEMS; i++)
        if (!ll_chan_send(c->ch, c->list + i * ITEM_BYTES))
            break;
    LL_FIX(ll_chan_close(c->ch)); /* FIX: defer close(ch): the workers' range ends */
}

static void *call_no_close_range(void *c) { no_close_range(c); return NULL; }
static void *call_no_close_range_fixed(void *c) { no_close_range_fixed(c); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct call *none = new_call(run, 0, 0);              /* go noCloseRange([]any{1, 2, 3}, 0) */
    ll_thread_start(run, &none->caller, call_no_close_range, none);
    struct call *three = new_call(run, WORKERS, 0);       /* noCloseRange([]any{1, 2, 3}, 3) */
    no_close_range(three);
    free(three->list); /* taken, never read: Go's collector frees it; the workers hold only ch */
    three->list = NULL;
    /* The leak is complete once the sender and the 3 workers sleep in their
     * waits; then main forgets both calls. */
    for (int i = 0; i < WORKERS; i++)
        ll_chan_await_parked(run, three->ch, three->worker[i]);
    ll_chan_await_parked(run, none->ch, none->caller);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct call *none = new_call(run, 0, LL_FIX_VALUE(ITEMS, 0)); /* FIX: make(chan any, len(list)) */
    ll_thread_start(run, &none->caller, call_no_close_range_fixed, none);
    struct call *three = new_call(run, WORKERS, LL_FIX_VALUE(ITEMS, 0));
    no_close_range_fixed(three);
    free(three->list);
    three->list = NULL;
    for (int i = 0; i < WORKERS; i++)
        LL_FIX(pthread_join(three->worker[i], NULL)); /* FIX: the range ended: join the workers */
    LL_FIX(pthread_join(none->caller, NULL));         /* FIX: the list fit in the buffer: the call returned */
    LL_FIX(free_call(three));                         /* FIX: and C frees what the GC would */
    LL_FIX(free_call(none));
}

static const ll_zoo_kernel kernel = {
    .name = "no_close_range",
    .summary = "LeakProf NoCloseRange: workers range over a channel that is never closed; a call\n"
               "with no workers blocks its sender instead.",
    .leaky_summary = "unbuffered, never closed: the 3 workers and the no-worker call's sender block, holding its list",
    .fixed_summary = "a buffer for the whole list, closed once sent: every thread ends, joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = LIST_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
