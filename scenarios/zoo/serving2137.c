/* serving2137 - GoKer serving#2137 (channel & lock): a breaker test holds
 * every request's lock and releases them one at a time, waiting on each
 * request's answer; the second request took the breaker's only active
 * slot and waits for its lock, the first waits for the slot.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/serving2137.go; upstream: knative/serving pull 2137):
 *
 *     func (b *Breaker) Maybe(thunk func()) bool {
 *         select {
 *         default: return false
 *         case b.pendingRequests <- t:                 // capacity 2
 *             b.activeRequests <- t                    // capacity 1: G2 waits here
 *             defer func() { <-b.activeRequests; <-b.pendingRequests }()
 *             thunk(); return true                     // r.lock.Lock(): G3 waits here
 *         }
 *     }
 *     func (b *Breaker) concurrentRequest() request {   // G1
 *         r := request{lock: &sync.Mutex{}, accepted: make(chan bool, 1)}
 *         r.lock.Lock()
 *         go func() { start.Done(); ok := b.Maybe(func() { r.lock.Lock(); r.lock.Unlock() }); r.accepted <- ok }()
 *         start.Wait(); return r
 *     }
 *     locks := b.concurrentRequests(2)                  // G1: two requests, G2 and G3
 *     unlockAll(locks)    // for each: lc.lock.Unlock(); ok := <-lc.accepted (G1 waits here); lc.accepted <- ok
 *
 * Go's goroutineleak profile reports (*Breaker).concurrentRequest.func1
 * [chan send] and [sync.Mutex.Lock], and Serving2137.func2 [chan receive]
 * (flaky in Go: the second request must reach the active slot first).
 *
 * The C form: the breaker's queues are buffered ll_chans (pending 2,
 * active 1), each request's lock a pthread mutex (locked and unlocked by
 * G1, and by its own goroutine, never across), accepted a buffered
 * ll_chan; the breaker is malloc'ed with its state (BREAKER_BYTES, the
 * payload). The order is forced, not hoped for: the first request enters
 * Maybe only once the second holds the active slot (a gate where Go calls
 * runtime.Gosched()). G1, G2 and G3 are left, each waiting on what another
 * of them holds, and only they reach the breaker (orphaned).
 *
 * The fix: upstream's change (knative/serving pull 2137) was not available
 * to this port. The fix here is the smallest one that breaks the cycle,
 * in the test's unlockAll: release every request's lock first, then wait
 * for each answer.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    REQUESTS = 2,                   /* Go: b.concurrentRequests(2) */
    QUEUE_DEPTH = 1, MAX_CONCURRENCY = 1, /* Go: NewBreaker(1, 1) */
    BREAKER_BYTES = 64 * 1024,      /* the breaker's state: the payload of one instance */
};

struct breaker;

struct request {
    struct breaker *b;
    int index;
    pthread_mutex_t lock;           /* Go: request.lock */
    ll_chan *accepted;              /* Go: accepted, make(chan bool, 1) */
    ll_waitgroup start;
    pthread_t thread;               /* G2 (index 0), G3 (index 1) */
};

struct breaker {
    ll_run *run;
    ll_chan *pending_requests;      /* Go: pendingRequests, capacity queueDepth + maxConcurrency */
    ll_chan *active_requests;       /* Go: activeRequests, capacity maxConcurrency */
    unsigned char *state;
    bool fixed;
    ll_chan *second_active;         /* forced order: closed once the second request holds the slot */
    ll_chan *requested;             /* closed once G1 has made both requests: their threads are set */
    struct request requests[REQUESTS];
    pthread_t tester;               /* G1 */
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct breaker *new_breaker(ll_run *run, bool fixed)
{
    struct breaker *b = ll_xmalloc(run, sizeof *b);
    *b = (struct breaker){.run = run, .pending_requests = ll_chan_new(run, QUEUE_DEPTH + MAX_CONCURRENCY),
                          .active_requests = ll_chan_new(run, MAX_CONCURRENCY),
                          .state = ll_xmalloc(run, BREAKER_BYTES), .fixed = fixed,
                          .second_active = ll_chan_new(run, 0), .requested = ll_chan_new(run, 0)};
    memset(b->state, 0x5a, BREAKER_BYTES);
    return b;
}

static void free_breaker(struct breaker *b)
{
    for (int i = 0; i < REQUESTS; i++) {
        pthread_mutex_destroy(&b->requests[i].lock);
        ll_chan_free(b->requests[i].accepted);
        ll_waitgroup_destroy(&b->requests[i].start);
    }
    ll_chan_free(b->pending_requests);
    ll_chan_free(b->active_requests);
    ll_chan_free(b->second_active);
    ll_chan_free(b->requested);
    free(b->state);
    free(b);
}

/* b.activeRequests <- t, a frame of its own: where the first request waits. */
static LL_WAIT_SITE bool acquire_active(struct breaker *b)
{
    bool sent = ll_chan_send(b->active_requests, NULL); /* leaky: the second request holds the only slot */
    return sent && b->state != NULL;
}

/* The request's thunk: r.lock.Lock(); r.lock.Unlock(). */
static LL_WAIT_SITE void request_thunk(struct request *r)
{
    if (r->index == 1)
        ll_chan_close(r->b->second_active); /* forced order: the second request holds the slot */
    pthread_mutex_lock(&r->lock);            /* leaky: G1 still holds it */
    pthread_mutex_unlock(&r->lock);
}

static bool maybe(struct breaker *b, struct request *r)
{
    ll_select_case pending = {.chan = b->pending_requests, .send = true};
    if (ll_select(&pending, 1, true) == LL_SELECT_DEFAULT)
        return false;                        /* the pending queue is full */
    if (!acquire_active(b))                  /* never: nobody closes the queues */
        return false;
    request_thunk(r);
    void *unused;
    ll_chan_recv(b->active_requests, &unused); /* deferred: release the slots */
    ll_chan_recv(b->pending_requests, &unused);
    return true;
}

/* G2, G3: concurrentRequest's goroutine. */
static void *request_thread(void *arg)
{
    struct request *r = arg;
    ll_waitgroup_done(&r->start);
    if (r->index == 0) {
        void *unused;
        ll_chan_recv(r->b->second_active, &unused); /* forced order: the first request comes second */
    }
    bool ok = maybe(r->b, r);
    ll_chan_send(r->accepted, ok ? r : NULL);
    return NULL;
}

static void concurrent_request(struct breaker *b, int index)
{
    struct request *r = &b->requests[index];
    *r = (struct request){.b = b, .index = index, .accepted = ll_chan_new(b->run, 1)};
    pthread_mutex_init(&r->lock, NULL);
    ll_waitgroup_init(&r->start, b->run);
    pthread_mutex_lock(&r->lock);
    ll_waitgroup_add(&r->start, 1);
    ll_thread_start(b->run, &r->thread, request_thread, r);
    ll_waitgroup_wait(&r->start);
}

static void unlock_request(struct request *r, bool unlock)
{
    if (unlock)
        pthread_mutex_unlock(&r->lock);
    void *ok;
    ll_chan_recv(r->accepted, &ok);          /* leaky: the first request never answers */
    ll_chan_send(r->accepted, ok);           /* requeue for next usage */
}

/* G1: the test's unlockAll. */
static LL_WAIT_SITE void unlock_all(struct breaker *b)
{
    bool unlock_first = b->fixed ? LL_FIX_VALUE(true, false) : false; /* FIX: release every lock first */
    if (unlock_first)
        for (int i = 0; i < REQUESTS; i++)
            pthread_mutex_unlock(&b->requests[i].lock);
    for (int i = 0; i < REQUESTS; i++)
        unlock_request(&b->requests[i], !unlock_first);
}

static void *tester(void *arg)
{
    struct breaker *b = arg;
    for (int i = 0; i < REQUESTS; i++)
        concurrent_request(b, i);            /* locks := b.concurrentRequests(2) */
    ll_chan_close(b->requested);
    unlock_all(b);
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct breaker *b = new_breaker(run, false);
    ll_thread_start(run, &b->tester, tester, b);
    void *unused;
    ll_chan_recv(b->requested, &unused);
    struct request *first = &b->requests[0], *second = &b->requests[1];
    ll_await_parked(run, second->thread, &second->lock, sizeof second->lock); /* G3 holds the slot, */
    ll_chan_await_parked(run, b->active_requests, first->thread);  /* G2 waits for it, */
    ll_chan_await_parked(run, first->accepted, b->tester);         /* G1 for G2's answer */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct breaker *b = new_breaker(run, true);
    ll_thread_start(run, &b->tester, tester, b);
    LL_FIX(pthread_join(b->tester, NULL));   /* FIX: both locks free: both requests answer, G1 returns */
    LL_FIX(for (int i = 0; i < REQUESTS; i++) pthread_join(b->requests[i].thread, NULL));
    LL_FIX(free_breaker(b));                 /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "serving2137",
    .summary = "GoKer serving#2137 (channel & lock): a breaker test releases its requests' locks one\n"
               "at a time; the second request holds the only active slot and waits for its lock.",
    .leaky_summary = "unlock and wait, one request at a time: the test and both requests wait forever",
    .fixed_summary = "unlock every request first, then wait for each: all answer, joined, the breaker freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = BREAKER_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
