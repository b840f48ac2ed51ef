/* etcd5509 - GoKer etcd#5509 (double locking, RWMutex): acquire() returns
 * ErrConnClosed without its RUnlock; the client's Close() then waits for
 * the write lock behind a read lock nobody holds any more.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/etcd5509.go; the fix: etcd-io/etcd pull 5509):
 *
 *     func (r *remoteClient) acquire(ctx) error {
 *         for {
 *             r.client.mu.RLock()
 *             closed := r.client.cancel == nil
 *             r.mu.Lock(); r.mu.Unlock()
 *             if closed { return ErrConnClosed }    // missing RUnlock
 *             r.client.mu.RUnlock()
 *         } }
 *     func (c *Client) Close() { c.mu.Lock(); defer c.mu.Unlock()   // G1 waits here
 *                                if c.cancel == nil { return } ... }
 *     go func() {                                       // G1
 *         cli := &Client{ctx: ctx}                      // cancel is nil: "closed"
 *         go func() { defer close(donec); kv.Get(ctx) }()   // G2 -> acquire
 *         runtime.Gosched(); cli.Close(); <-donec
 *     }()
 *
 * Go's goroutineleak profile reports Etcd5509.func2 [sync.RWMutex.Lock]
 * (not flaky in Go's test).
 *
 * The C form: the client's mu is a pthread rwlock (writer-preferring, as
 * Go's), remoteClient's mu a mutex, donec an ll_chan. Where Go yields
 * (runtime.Gosched), G1 waits until G2 has returned from Get: G2 leaves
 * the read lock held as it ends (it is joined, as Go reclaims it), and
 * G1's Close waits in wrlock for a reader that is gone. The client holds
 * its connection state (CLIENT_BYTES, the payload). Main waits until G1
 * sleeps in wrlock, then forgets the client: only G1 reaches it (orphaned).
 *
 * What the tools see: see expected/zoo/etcd5509.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the GoKer kernel marks it "Missing RUnlock before return"):
 * RUnlock before returning ErrConnClosed.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { CLIENT_BYTES = 64 * 1024 }; /* the client's connection state: the payload of one instance */

struct client {
    ll_run *run;
    pthread_rwlock_t mu;            /* Go: Client.mu */
    pthread_mutex_t rc_mu;          /* Go: remoteClient.mu */
    bool cancel_set;                /* Go: cancel != nil; never set: the client counts as closed */
    unsigned char *conn;
    ll_chan *donec;
    ll_chan *got;                   /* forced order: closed once G2 has returned from Get */
    bool fixed;
    pthread_t g1, g2;
};

__attribute__((noinline)) static struct client *new_client(ll_run *run, bool fixed)
{
    struct client *c = ll_xmalloc(run, sizeof *c);
    *c = (struct client){.run = run, .conn = ll_xmalloc(run, CLIENT_BYTES), .donec = ll_chan_new(run, 0),
                         .got = ll_chan_new(run, 0), .fixed = fixed};
    memset(c->conn, 0x5a, CLIENT_BYTES);
    ll_rwlock_init_writer_preferring(run, &c->mu); /* Go's preference, checked: exit 77 where not honoured */
    pthread_mutex_init(&c->rc_mu, NULL);
    return c;
}

static void free_client(struct client *c)
{
    pthread_rwlock_destroy(&c->mu);
    pthread_mutex_destroy(&c->rc_mu);
    ll_chan_free(c->donec);
    ll_chan_free(c->got);
    free(c->conn);
    free(c);
}

/* remoteClient.acquire, reached through kv.Get -> Do -> do -> getRemote. */
static int acquire(struct client *c)
{
    for (;;) {
        pthread_rwlock_rdlock(&c->mu);
        bool closed = !c->cancel_set;
        pthread_mutex_lock(&c->rc_mu);
        pthread_mutex_unlock(&c->rc_mu);
        if (closed) {
            if (c->fixed)
                LL_FIX(pthread_rwlock_unlock(&c->mu)); /* FIX: RUnlock before returning */
            return -1;                                  /* leaky: ErrConnClosed, still read-locked */
        }
        pthread_rwlock_unlock(&c->mu);
    }
}

/* G2. */
static void *getter(void *arg)
{
    struct client *c = arg;
    (void)acquire(c);              /* ErrConnClosed is what the test expects */
    ll_chan_close(c->got);         /* forced order: G1 closes the client only now */
    ll_chan_close(c->donec);       /* defer close(donec) */
    return NULL;
}

/* G1: cli.Close(). */
static LL_WAIT_SITE void client_close(struct client *c)
{
    pthread_rwlock_wrlock(&c->mu); /* leaky: behind the read lock G2 never released */
    if (!c->cancel_set) {
        pthread_rwlock_unlock(&c->mu);
        return;
    }
    pthread_rwlock_unlock(&c->mu);
}

static void *closer(void *arg)
{
    struct client *c = arg;
    void *unused;
    ll_thread_start(c->run, &c->g2, getter, c);
    ll_chan_recv(c->got, &unused); /* where Go had runtime.Gosched() */
    client_close(c);
    ll_chan_recv(c->donec, &unused);
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct client *c = new_client(run, false);
    ll_thread_start(run, &c->g1, closer, c);
    ll_await_parked(run, c->g1, &c->mu, sizeof c->mu);
    pthread_join(c->g2, NULL); /* G2 returned: Go reclaims it, C joins it */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct client *c = new_client(run, true);
    ll_thread_start(run, &c->g1, closer, c);
    LL_FIX(pthread_join(c->g1, NULL)); /* FIX: Close gets the lock and returns: join G1 ... */
    LL_FIX(pthread_join(c->g2, NULL)); /* ... and G2 */
    LL_FIX(free_client(c));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "etcd5509",
    .summary = "GoKer etcd#5509 (double locking, RWMutex): acquire() returns ErrConnClosed still\n"
               "holding the client's read lock; Close() then waits for the write lock forever.",
    .leaky_summary = "a finished thread left a read lock held: Close() waits in wrlock forever, holding the client",
    .fixed_summary = "acquire() read-unlocks before returning: Close() returns, both joined, the client freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CLIENT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
