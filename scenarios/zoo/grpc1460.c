/* grpc1460 - GoKer grpc#1460 (channel & lock): the keepalive goroutine waits
 * to be woken while holding the transport's mutex; the stream that would
 * wake it needs that mutex first.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/grpc1460.go; the fix: grpc/grpc-go pull 1460, "transport: Fix
 * deadlock in client keepalive"):
 *
 *     func (t *http2Client) keepalive() {                // G1
 *         t.mu.Lock()
 *         if len(t.activeStream) < 1 {
 *             <-t.awakenKeepalive                        // G1 waits here, holding t.mu
 *             t.mu.Unlock()
 *         } else { t.mu.Unlock() } }
 *     func (t *http2Client) NewStream() {                // G2
 *         t.mu.Lock()                                    // G2 waits here
 *         t.activeStream = append(t.activeStream, &Stream{})
 *         if len(t.activeStream) == 1 {
 *             select { case t.awakenKeepalive <- struct{}{}: default: } }
 *         t.mu.Unlock() }
 *     go client.keepalive(); go client.NewStream()
 *
 * Go's goroutineleak profile reports (*http2Client).keepalive [chan receive]
 * and (*http2Client).NewStream [sync.Mutex.Lock] (flaky in Go: keepalive
 * must lock first).
 *
 * The C form: awakenKeepalive is an ll_chan, mu a mutex, the transport
 * malloc'ed with its connection buffers (TRANSPORT_BYTES, the payload). The
 * order is forced: NewStream starts once keepalive sleeps on the channel.
 * Main waits until NewStream sleeps on mu and forgets the transport: only
 * the two blocked threads reach it (orphaned).
 *
 * What the tools see: see expected/zoo/grpc1460.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the pull request's, in the kernel's terms): keepalive goes
 * dormant with t.mu released, and awakenKeepalive keeps one wake-up
 * (capacity 1), so NewStream's non-blocking send is not lost when
 * keepalive is not waiting yet.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { TRANSPORT_BYTES = 64 * 1024 }; /* the transport's connection buffers: the payload of one instance */

struct http2_client {
    pthread_mutex_t mu;
    ll_chan *awaken_keepalive;
    int active_streams;
    unsigned char *buffers;
    bool fixed;
    pthread_t g1, g2;
};

__attribute__((noinline)) static struct http2_client *new_client(ll_run *run, bool fixed)
{
    struct http2_client *t = ll_xmalloc(run, sizeof *t);
    size_t awaken_capacity = fixed ? LL_FIX_VALUE(1, 0) : 0; /* FIX: awakenKeepalive keeps one wake-up */
    *t = (struct http2_client){.awaken_keepalive = ll_chan_new(run, awaken_capacity),
                               .buffers = ll_xmalloc(run, TRANSPORT_BYTES), .fixed = fixed};
    memset(t->buffers, 0x5a, TRANSPORT_BYTES);
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

static void free_client(struct http2_client *t)
{
    pthread_mutex_destroy(&t->mu);
    ll_chan_free(t->awaken_keepalive);
    free(t->buffers);
    free(t);
}

/* G1. */
static LL_WAIT_SITE void *keepalive(void *arg)
{
    struct http2_client *t = arg;
    void *unused;
    pthread_mutex_lock(&t->mu);
    if (t->active_streams < 1) {
        if (t->fixed) {
            LL_FIX(pthread_mutex_unlock(&t->mu)); /* FIX: go dormant with the lock released */
            ll_chan_recv(t->awaken_keepalive, &unused);
            return NULL;
        }
        ll_chan_recv(t->awaken_keepalive, &unused); /* leaky: waits holding t.mu */
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* G2. */
static LL_WAIT_SITE void *new_stream(void *arg)
{
    static char wake;
    struct http2_client *t = arg;
    pthread_mutex_lock(&t->mu); /* leaky: keepalive holds it */
    t->active_streams++;
    if (t->active_streams == 1) {
        ll_select_case awaken = {.chan = t->awaken_keepalive, .send = true, .item = &wake};
        ll_select(&awaken, 1, true);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static struct http2_client *start(ll_run *run, bool fixed)
{
    struct http2_client *t = new_client(run, fixed);
    ll_thread_start(run, &t->g1, keepalive, t);
    ll_chan_await_parked(run, t->awaken_keepalive, t->g1); /* forced order: keepalive waits first */
    ll_thread_start(run, &t->g2, new_stream, t);
    return t;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct http2_client *t = start(run, false);
    ll_await_parked(run, t->g2, &t->mu, sizeof t->mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct http2_client *t = start(run, true);
    LL_FIX(pthread_join(t->g2, NULL)); /* FIX: NewStream gets the lock and wakes keepalive: join both */
    LL_FIX(pthread_join(t->g1, NULL));
    LL_FIX(free_client(t));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "grpc1460",
    .summary = "GoKer grpc#1460 (channel & lock): keepalive waits to be woken while holding the\n"
               "transport's mutex; NewStream, which would wake it, needs the mutex first.",
    .leaky_summary = "keepalive waits on its channel holding t.mu, NewStream waits for t.mu: both forever",
    .fixed_summary = "keepalive waits with t.mu released: NewStream wakes it, both joined, the transport freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = TRANSPORT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
