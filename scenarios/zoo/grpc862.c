/* grpc862 - GoKer grpc#862 (channel & context): DialContext gives up when
 * its context is cancelled but does not close the ClientConn it created,
 * so the goroutine resetting the connection waits on the connection's
 * context forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/grpc862.go; the fix: grpc/grpc-go pull 862, "Avoid goroutine leak
 * in clientconn"):
 *
 *     func DialContext(ctx) (conn *ClientConn) {     // G1
 *         cc := &ClientConn{}; cc.ctx, cc.cancel = context.WithCancel(Background())
 *         defer func() {
 *             select { case <-ctx.Done():
 *                          if conn != nil { conn.Close() }   // conn is nil: cc never closed
 *                          conn = nil
 *                      default: } }()
 *         go func() { cc.resetAddrConn() }()          // G2: ac.ctx = WithCancel(cc.ctx);
 *         return conn }                               //     ac.resetTransport(): <-ac.ctx.Done()
 *     go DialContext(ctx); go cancel()                // helper
 *
 * Go's goroutineleak profile reports DialContext.func2 [chan receive] (not
 * flaky in Go's test).
 *
 * The C form: the contexts are ll_contexts (cancel closes Done). Go derives
 * ac.ctx from cc.ctx; ll_context has no parent, and none is needed: Close
 * cancels cc.ctx and tears down (cancels) every addrConn, the path the fix
 * takes. The dial's 10 ns timeout context, cancelled at once, is left out:
 * it changes nothing. G1 is main. The order is forced: the helper's cancel
 * comes first, and DialContext's deferred check runs once G2 has
 * registered its addrConn and sleeps on its Done. The addrConn holds the
 * transport's buffers (TRANSPORT_BYTES, the payload). Main forgets the
 * ClientConn: only G2 reaches it (orphaned).
 *
 * What the tools see: see expected/zoo/grpc862.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the pull request's): when the dial fails, the deferred function
 * closes cc itself (cc.Close()), which tears down its addrConns.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { TRANSPORT_BYTES = 64 * 1024 }; /* the addrConn's transport buffers: the payload of one instance */

struct client_conn;

struct addr_conn {
    struct client_conn *cc;
    ll_context *ctx;                /* Go: ac.ctx, ac.cancel */
    unsigned char *transport;
};

struct client_conn {
    ll_run *run;
    ll_context *ctx;                /* Go: cc.ctx, cc.cancel */
    struct addr_conn *conns;        /* the one addrConn resetAddrConn adds */
    ll_chan *registered;            /* forced order: closed once G2 has added its addrConn */
    pthread_t g2;
};

__attribute__((noinline)) static struct addr_conn *new_addr_conn(struct client_conn *cc)
{
    struct addr_conn *ac = ll_xmalloc(cc->run, sizeof *ac);
    *ac = (struct addr_conn){.cc = cc, .ctx = ll_context_with_cancel(cc->run),
                             .transport = ll_xmalloc(cc->run, TRANSPORT_BYTES)};
    memset(ac->transport, 0x5a, TRANSPORT_BYTES);
    return ac;
}

static void free_client_conn(struct client_conn *cc)
{
    ll_context_free(cc->conns->ctx);
    free(cc->conns->transport);
    free(cc->conns);
    ll_context_free(cc->ctx);
    ll_chan_free(cc->registered);
    free(cc);
}

/* cc.Close(): cancel, and tear down every addrConn. */
static void client_conn_close(struct client_conn *cc)
{
    ll_context_cancel(cc->ctx);
    if (cc->conns)
        ll_context_cancel(cc->conns->ctx); /* ac.tearDown() */
}

static LL_WAIT_SITE void reset_transport(struct addr_conn *ac)
{
    void *unused;
    ll_chan_recv(ll_context_done(ac->ctx), &unused); /* <-ac.ctx.Done(): leaky: never cancelled */
}

/* G2: cc.resetAddrConn(). */
static void *reset_addr_conn(void *arg)
{
    struct client_conn *cc = arg;
    struct addr_conn *ac = new_addr_conn(cc);
    cc->conns = ac;                  /* cc.conns = append(cc.conns, ac) */
    ll_chan_close(cc->registered);   /* forced order */
    reset_transport(ac);
    return NULL;
}

/* G1: DialContext(ctx), with ctx already cancelled by the helper. */
static struct client_conn *dial_context(ll_run *run, ll_context *ctx, bool fixed)
{
    struct client_conn *cc = ll_xmalloc(run, sizeof *cc);
    *cc = (struct client_conn){.run = run, .ctx = ll_context_with_cancel(run), .registered = ll_chan_new(run, 0)};
    ll_thread_start(run, &cc->g2, reset_addr_conn, cc);
    void *unused;
    ll_chan_recv(cc->registered, &unused);
    ll_chan_await_parked(run, ll_context_done(cc->conns->ctx), cc->g2);
    /* the deferred check: return conn (nil) */
    ll_select_case done = {.chan = ll_context_done(ctx)};
    if (ll_select(&done, 1, true) == 0 && fixed)
        LL_FIX(client_conn_close(cc)); /* FIX: the dial failed: close cc */
    return cc;                         /* Go returns nil: the caller never sees cc */
}

static void run_instance(ll_run *run, bool fixed)
{
    ll_context *ctx = ll_context_with_cancel(run);
    ll_context_cancel(ctx);            /* go cancel(): forced to come first */
    struct client_conn *cc = dial_context(run, ctx, fixed);
    ll_context_free(ctx);
    if (fixed) {
        LL_FIX(pthread_join(cc->g2, NULL)); /* FIX: resetTransport sees its context done: join G2 */
        LL_FIX(free_client_conn(cc));       /* FIX: and free what Go's GC would */
    }
}

static void leaky_instance(ll_run *run, long long instance) { (void)instance; run_instance(run, false); }
static void fixed_instance(ll_run *run, long long instance) { (void)instance; run_instance(run, true); }

static const ll_zoo_kernel kernel = {
    .name = "grpc862",
    .summary = "GoKer grpc#862 (channel & context): DialContext gives up on a cancelled context without\n"
               "closing its ClientConn; the goroutine resetting the connection waits forever.",
    .leaky_summary = "the failed dial never closes cc: resetTransport waits on ac.ctx.Done() forever",
    .fixed_summary = "the failed dial closes cc: resetTransport returns, joined, the ClientConn freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = TRANSPORT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
