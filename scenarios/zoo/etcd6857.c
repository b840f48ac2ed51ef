/* etcd6857 - GoKer etcd#6857 (channel): Status() sends its request on the
 * node's status channel after the node's run loop has stopped; nobody will
 * ever receive it.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/etcd6857.go; the fix: etcd-io/etcd pull 6857):
 *
 *     func (n *node) Status() Status {
 *         c := make(chan Status)
 *         n.status <- c                        // G2 waits here: run has returned
 *         return <-c }
 *     func (n *node) run() {                   // G1
 *         for { select {
 *               case c := <-n.status: c <- Status{}
 *               case <-n.stop: close(n.done); return } } }
 *     func (n *node) Stop() {                  // G3
 *         select { case n.stop <- struct{}{}: case <-n.done: return }
 *         <-n.done }
 *     go n.run(); go n.Status(); go n.Stop()
 *
 * In the bad order Stop reaches run first; run closes done and returns,
 * and Status's send has no receiver left. Go's goroutineleak profile
 * reports (*node).Status [chan send] (flaky in Go: it needs that order).
 *
 * The C form: status, stop and done are rendezvous ll_chans (status carries
 * the reply channel, an ll_chan too), the node malloc'ed with its raft
 * state (NODE_BYTES, the payload). The order is forced: Status starts only
 * once Stop and run have both returned (joined: Go reclaims them). Main
 * waits until Status sleeps in its send and forgets the node: only Status
 * reaches it (orphaned).
 *
 * What the tools see: see expected/zoo/etcd6857.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix, in the kernel's terms (pull 6857's diff was not read here):
 * Status's send is a select that also watches done, and returns an empty
 * Status once the node has stopped.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { NODE_BYTES = 64 * 1024 }; /* the node's raft state: the payload of one instance */

struct node {
    ll_run *run;
    ll_chan *status;                /* Go: chan chan Status */
    ll_chan *stop, *done;
    unsigned char *state;
    pthread_t g1, g2, g3;
};

__attribute__((noinline)) static struct node *new_node(ll_run *run)
{
    struct node *n = ll_xmalloc(run, sizeof *n);
    *n = (struct node){.run = run, .status = ll_chan_new(run, 0), .stop = ll_chan_new(run, 0),
                       .done = ll_chan_new(run, 0), .state = ll_xmalloc(run, NODE_BYTES)};
    memset(n->state, 0x5a, NODE_BYTES);
    return n;
}

static void free_node(struct node *n)
{
    ll_chan_free(n->status);
    ll_chan_free(n->stop);
    ll_chan_free(n->done);
    free(n->state);
    free(n);
}

/* G1. */
static void *node_run(void *arg)
{
    struct node *n = arg;
    static char status;
    for (;;) {
        ll_select_case cases[] = {{.chan = n->status}, {.chan = n->stop}};
        if (ll_select(cases, 2, false) == 1) {
            ll_chan_close(n->done);
            return NULL;
        }
        ll_chan_send(cases[0].item, &status); /* c <- Status{} */
    }
}

/* G3. */
static void *node_stop(void *arg)
{
    struct node *n = arg;
    static char stop;
    void *unused;
    ll_select_case cases[] = {{.chan = n->stop, .send = true, .item = &stop}, {.chan = n->done}};
    if (ll_select(cases, 2, false) == 0)
        ll_chan_recv(n->done, &unused);
    return NULL;
}

/* G2. */
static LL_WAIT_SITE void node_status(struct node *n, bool fixed)
{
    ll_chan *c = ll_chan_new(n->run, 0);
    void *status;
    if (fixed) {
        ll_select_case cases[] = {{.chan = n->status, .send = true, .item = c},
                                  {.chan = LL_FIX_VALUE(n->done, NULL)}}; /* FIX: ...or the node is done */
        if (ll_select(cases, 2, false) == 0)
            ll_chan_recv(c, &status);
    } else if (ll_chan_send(n->status, c)) { /* leaky: run has returned: no receiver, ever */
        ll_chan_recv(c, &status);
    }
    ll_chan_free(c);
}

static void *status_leaky(void *n) { node_status(n, false); return NULL; }
static void *status_fixed(void *n) { node_status(n, true); return NULL; }

static struct node *start(ll_run *run, void *(*status)(void *))
{
    struct node *n = new_node(run);
    ll_thread_start(run, &n->g1, node_run, n);  /* go n.run() */
    ll_thread_start(run, &n->g3, node_stop, n); /* go n.Stop() */
    pthread_join(n->g3, NULL);                  /* forced order: Stop and run are done first */
    pthread_join(n->g1, NULL);                  /* (Go reclaims them, C joins them) */
    ll_thread_start(run, &n->g2, status, n);    /* go n.Status() */
    return n;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct node *n = start(run, status_leaky);
    ll_chan_await_parked(run, n->status, n->g2);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct node *n = start(run, status_fixed);
    LL_FIX(pthread_join(n->g2, NULL)); /* FIX: Status sees done and returns: join it */
    LL_FIX(free_node(n));              /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "etcd6857",
    .summary = "GoKer etcd#6857 (channel): Status() sends its request on the node's status channel\n"
               "after Stop() has ended the node's run loop; nobody will receive it.",
    .leaky_summary = "Status() sends to a stopped node: it waits forever, holding the node",
    .fixed_summary = "Status() selects on done too: it returns, joined, the node freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = NODE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
