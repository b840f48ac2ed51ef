/* syncthing5795 - GoKer syncthing#5795 (channel): a connection's Close,
 * called from the dispatcher loop's own callback, waits for that loop to
 * stop; the loop never gets back to stop, and its starter waits too.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/syncthing5795.go; the fix: syncthing/syncthing pull 5795,
 * "lib/protocol: Don't block on Close"):
 *
 *     func (c *rawConnection) dispatcherLoop() {        // G2
 *         defer close(c.dispatcherLoopStopped)
 *         for { select { case msg = <-c.inbox: case <-c.closed: return }
 *               switch msg.(type) { case *ClusterConfig: c.receiver.ClusterConfig(msg)
 *                                   default: return } }
 *     }
 *     func (c *rawConnection) Close() {
 *         c.closeOnce.Do(func() { close(c.closed); <-c.dispatcherLoopStopped })  // G2 waits here
 *     }
 *     go func() {                                       // G1
 *         m.ccFn = c.Close                              // the model's ClusterConfig closes
 *         c.Start(); c.inbox <- &ClusterConfig{}
 *         <-c.dispatcherLoopStopped                     // G1 waits here
 *     }()
 *
 * Go's goroutineleak profile reports (*rawConnection).dispatcherLoop
 * [chan receive] and Syncthing5795.func2 [chan receive] (not flaky in Go's
 * test).
 *
 * The C form: inbox, closed and dispatcherLoopStopped are ll_chans,
 * closeOnce a flag under a pthread mutex; the connection is malloc'ed with
 * its buffers (CONN_BYTES, the payload). Nothing needs forcing: the loop
 * takes the message and closes itself from inside, whatever the order.
 * G1 and G2 are left waiting on a channel only G2's return would close
 * (orphaned).
 *
 * The fix (as the pull request's title says: Close no longer blocks): Close
 * does its closing, the close of `closed` and the wait for the loop, in a
 * goroutine of its own, so a Close from the loop's callback returns and
 * the loop sees `closed`.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { CONN_BYTES = 64 * 1024 }; /* the connection's buffers: the payload of one instance */

static const char CLUSTER_CONFIG[] = "ClusterConfig";

struct raw_connection {
    ll_run *run;
    ll_chan *inbox;                 /* Go: inbox, unbuffered */
    ll_chan *dispatcher_loop_stopped;
    ll_chan *closed;
    pthread_mutex_t close_once_mu;  /* Go: closeOnce */
    bool close_once_done;
    unsigned char *buffers;
    bool fixed;
    ll_chan *started;               /* closed once G1 has started G2: c->dispatcher is set */
    pthread_t starter, dispatcher, closer; /* G1, G2, the fix's closer */
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct raw_connection *new_raw_connection(ll_run *run, bool fixed)
{
    struct raw_connection *c = ll_xmalloc(run, sizeof *c);
    *c = (struct raw_connection){.run = run, .inbox = ll_chan_new(run, 0),
                                 .dispatcher_loop_stopped = ll_chan_new(run, 0), .closed = ll_chan_new(run, 0),
                                 .buffers = ll_xmalloc(run, CONN_BYTES), .fixed = fixed,
                                 .started = ll_chan_new(run, 0)};
    memset(c->buffers, 0x5a, CONN_BYTES);
    pthread_mutex_init(&c->close_once_mu, NULL);
    return c;
}

static void free_raw_connection(struct raw_connection *c)
{
    pthread_mutex_destroy(&c->close_once_mu);
    ll_chan_free(c->inbox);
    ll_chan_free(c->dispatcher_loop_stopped);
    ll_chan_free(c->closed);
    ll_chan_free(c->started);
    free(c->buffers);
    free(c);
}

/* closeOnce's body: close(c.closed); <-c.dispatcherLoopStopped */
static void close_and_wait(struct raw_connection *c)
{
    void *unused;
    ll_chan_close(c->closed);
    ll_chan_recv(c->dispatcher_loop_stopped, &unused); /* leaky: called from the loop itself */
}

static void *closer(void *c) { close_and_wait(c); return NULL; }

static void connection_close(struct raw_connection *c)
{
    pthread_mutex_lock(&c->close_once_mu);
    bool first = !c->close_once_done;
    c->close_once_done = true;
    pthread_mutex_unlock(&c->close_once_mu);
    if (!first)
        return;
    if (c->fixed && LL_FIX_VALUE(true, false))
        ll_thread_start(c->run, &c->closer, closer, c); /* FIX: don't block on Close */
    else
        close_and_wait(c);
}

/* G2. */
static LL_WAIT_SITE void dispatcher_loop(struct raw_connection *c)
{
    for (;;) {
        ll_select_case cases[] = {{.chan = c->inbox}, {.chan = c->closed}};
        if (ll_select(cases, 2, false) == 1)
            break;                           /* case <-c.closed: return */
        if (cases[0].item != CLUSTER_CONFIG)
            break;                           /* default: return */
        connection_close(c);                 /* c.receiver.ClusterConfig(msg): the model's ccFn */
    }
    ll_chan_close(c->dispatcher_loop_stopped); /* defer close(c.dispatcherLoopStopped) */
}

static void *dispatcher(void *c) { dispatcher_loop(c); return NULL; }

/* G1. */
static LL_WAIT_SITE void start_and_wait(struct raw_connection *c)
{
    ll_thread_start(c->run, &c->dispatcher, dispatcher, c); /* c.Start() */
    ll_chan_close(c->started);
    ll_chan_send(c->inbox, (void *)CLUSTER_CONFIG);
    void *unused;
    bool stopped = !ll_chan_recv(c->dispatcher_loop_stopped, &unused); /* leaky: never closed */
    c->buffers[0] = stopped;
}

static void *starter(void *c) { start_and_wait(c); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct raw_connection *c = new_raw_connection(run, false);
    ll_thread_start(run, &c->starter, starter, c);
    void *unused;
    ll_chan_recv(c->started, &unused);
    ll_chan_await_parked(run, c->dispatcher_loop_stopped, c->starter); /* G1 waits for the loop ... */
    ll_chan_await_parked(run, c->dispatcher_loop_stopped, c->dispatcher); /* ... which waits for itself */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct raw_connection *c = new_raw_connection(run, true);
    ll_thread_start(run, &c->starter, starter, c);
    LL_FIX(pthread_join(c->starter, NULL));    /* FIX: Close returned, the loop saw closed and stopped: */
    LL_FIX(pthread_join(c->dispatcher, NULL)); /* join G1, G2 and the closer */
    LL_FIX(pthread_join(c->closer, NULL));
    LL_FIX(free_raw_connection(c));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "syncthing5795",
    .summary = "GoKer syncthing#5795 (channel): Close, called from the dispatcher loop's callback,\n"
               "waits for that loop to stop; the loop and its starter wait forever.",
    .leaky_summary = "Close blocks inside the loop: the loop waits for itself, its starter for the loop",
    .fixed_summary = "Close closes in a thread of its own: the loop stops, everyone returns, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CONN_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
