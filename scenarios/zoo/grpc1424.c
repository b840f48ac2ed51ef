/* grpc1424 - GoKer grpc#1424 (channel): DialContext's goroutine waits for
 * the balancer watcher to signal doneChan; the watcher returns when the
 * balancer's channel closes, without closing doneChan.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/grpc1424.go; the fix: grpc/grpc-go pull 1424, "Fix a goroutine
 * leak in DialContext"):
 *
 *     func (cc *ClientConn) lbWatcher(doneChan chan bool) {   // G3
 *         for addr := range cc.dopts.balancer.Notify() { ... tear down conns ... } }
 *     func DialContext() {                                    // G1
 *         cc := NewClientConn()                               // addrCh: make(chan bool)
 *         go func() {                                         // G2
 *             defer close(waitC)
 *             if ch := cc.dopts.balancer.Notify(); ch != nil {
 *                 doneChan := make(chan bool)
 *                 go cc.lbWatcher(doneChan)
 *                 <-doneChan } }()                            // G2 waits here
 *         close(cc.dopts.balancer.(*roundRobin).addrCh) }
 *
 * Go's goroutineleak profile reports DialContext.func1 [chan receive] (not
 * flaky). The pull request: "The loop in ClientConn.lbWatcher breaks and
 * doneChan never gets closed."
 *
 * The C form: addrCh and doneChan are rendezvous ll_chans, the ClientConn
 * malloc'ed with its balancer's address state (BALANCER_BYTES, the
 * payload). No interleaving is needed: G3 returns whenever addrCh closes,
 * and G2 waits whatever the order. G1 is main; it waits until G2 has
 * started the watcher (to learn doneChan), joins G3 (it returned: Go
 * reclaims it) and forgets the ClientConn: only G2 reaches it (orphaned).
 *
 * What the tools see: see expected/zoo/grpc1424.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix, in the kernel's terms (the pull request's diff was not read
 * here; its issue suggests it): lbWatcher closes doneChan when it returns.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { BALANCER_BYTES = 64 * 1024 }; /* the balancer's address state: the payload of one instance */

struct client_conn {
    ll_run *run;
    ll_chan *addr_ch;               /* Go: roundRobin.addrCh */
    ll_chan *done_chan;             /* made by G2 */
    ll_chan *wait_c;                /* Go: waitC, capacity 1 */
    ll_chan *watching;              /* closed once G2 has started G3 (so main knows doneChan) */
    unsigned char *addrs;
    bool fixed;
    pthread_t g2, g3;
};

__attribute__((noinline)) static struct client_conn *new_client_conn(ll_run *run, bool fixed)
{
    struct client_conn *cc = ll_xmalloc(run, sizeof *cc);
    *cc = (struct client_conn){.run = run, .addr_ch = ll_chan_new(run, 0), .wait_c = ll_chan_new(run, 1),
                               .watching = ll_chan_new(run, 0), .addrs = ll_xmalloc(run, BALANCER_BYTES),
                               .fixed = fixed};
    memset(cc->addrs, 0x5a, BALANCER_BYTES);
    return cc;
}

static void free_client_conn(struct client_conn *cc)
{
    ll_chan_free(cc->addr_ch);
    ll_chan_free(cc->done_chan);
    ll_chan_free(cc->wait_c);
    ll_chan_free(cc->watching);
    free(cc->addrs);
    free(cc);
}

/* G3. */
static void *lb_watcher(void *arg)
{
    struct client_conn *cc = arg;
    void *addr;
    while (ll_chan_recv(cc->addr_ch, &addr)) {
        /* tear down the conns the new addresses replace: there are none here */
    }
    if (cc->fixed)
        LL_FIX(ll_chan_close(cc->done_chan)); /* FIX: tell DialContext the watcher is done */
    return NULL;
}

static LL_WAIT_SITE void await_lb_watcher(struct client_conn *cc)
{
    void *unused;
    ll_chan_recv(cc->done_chan, &unused); /* <-doneChan: leaky: nobody closes it */
}

/* G2. */
static void *dial_goroutine(void *arg)
{
    struct client_conn *cc = arg;
    cc->done_chan = ll_chan_new(cc->run, 0);
    ll_thread_start(cc->run, &cc->g3, lb_watcher, cc); /* go cc.lbWatcher(doneChan) */
    ll_chan_close(cc->watching);
    await_lb_watcher(cc);
    ll_chan_close(cc->wait_c);                         /* defer close(waitC) */
    return NULL;
}

/* G1: DialContext(). */
static struct client_conn *dial_context(ll_run *run, bool fixed)
{
    struct client_conn *cc = new_client_conn(run, fixed);
    ll_thread_start(run, &cc->g2, dial_goroutine, cc);
    ll_chan_close(cc->addr_ch);                        /* close(addrCh) */
    void *unused;
    ll_chan_recv(cc->watching, &unused);
    pthread_join(cc->g3, NULL);                        /* the watcher returned (Go reclaims it) */
    return cc;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct client_conn *cc = dial_context(run, false);
    ll_chan_await_parked(run, cc->done_chan, cc->g2);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct client_conn *cc = dial_context(run, true);
    LL_FIX(pthread_join(cc->g2, NULL)); /* FIX: doneChan is closed: G2 returns: join it */
    LL_FIX(free_client_conn(cc));       /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "grpc1424",
    .summary = "GoKer grpc#1424 (channel): DialContext's goroutine waits on doneChan for the balancer\n"
               "watcher, which returns when the address channel closes without closing doneChan.",
    .leaky_summary = "the watcher returns without closing doneChan: G2 waits forever, holding the ClientConn",
    .fixed_summary = "the watcher closes doneChan as it returns: G2 ends, joined, the ClientConn freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = BALANCER_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
