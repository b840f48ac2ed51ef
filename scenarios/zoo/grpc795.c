/* grpc795 - GoKer grpc#795 (double locking): the second GracefulStop() finds
 * the server draining and locks its mutex again instead of unlocking it;
 * the server's Serve() then waits for the mutex too.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/grpc795.go; the fix: grpc/grpc-go pull 795):
 *
 *     func (s *Server) GracefulStop() {
 *         s.mu.Lock()
 *         if s.drain { s.mu.Lock(); return }     // G1 waits here: should be Unlock
 *         s.drain = true
 *         s.mu.Unlock() }
 *     func (s *Server) Serve() { s.mu.Lock(); s.mu.Unlock() }   // G2 waits here
 *     func testServerGracefulStopIdempotent() {  // G1
 *         te := newTest(); te.startServer()      // go s.Serve(): G2
 *         for i := 0; i < 3; i++ { te.srv.GracefulStop() } }
 *
 * Go's goroutineleak profile reports (*Server).Serve [sync.Mutex.Lock] and
 * testServerGracefulStopIdempotent [sync.Mutex.Lock] (flaky in Go: Serve
 * leaks only if it locks after the second GracefulStop).
 *
 * The C form: the server's mutex is PTHREAD_MUTEX_NORMAL (a re-lock by its
 * owner deadlocks, as Go's), the server malloc'ed with its listeners'
 * state (SERVER_BYTES, the payload). The order is forced: Serve locks only
 * once G1 is asleep in its second lock. Main waits until both sleep and
 * forgets the test: only they reach the server (orphaned).
 *
 * What the tools see: see expected/zoo/grpc795.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix, in the kernel's terms (pull 795's diff was not read here): a
 * GracefulStop that finds the server draining unlocks and returns.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { SERVER_BYTES = 64 * 1024 }; /* the server's listeners and connections: the payload of one instance */

struct server {
    ll_run *run;
    pthread_mutex_t mu;
    bool drain;
    unsigned char *conns;
    ll_chan *serve_gate;            /* forced order: closed once G1 sleeps in its second lock */
    bool fixed;
    pthread_t g1, g2;
};

__attribute__((noinline)) static struct server *new_server(ll_run *run, bool fixed)
{
    struct server *s = ll_xmalloc(run, sizeof *s);
    *s = (struct server){.run = run, .conns = ll_xmalloc(run, SERVER_BYTES), .serve_gate = ll_chan_new(run, 0),
                         .fixed = fixed};
    memset(s->conns, 0x5a, SERVER_BYTES);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL); /* re-lock by the owner deadlocks, as Go's */
    pthread_mutex_init(&s->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    return s;
}

static void free_server(struct server *s)
{
    pthread_mutex_destroy(&s->mu);
    ll_chan_free(s->serve_gate);
    free(s->conns);
    free(s);
}

/* G2. */
static LL_WAIT_SITE void *server_serve(void *arg)
{
    struct server *s = arg;
    void *unused;
    ll_chan_recv(s->serve_gate, &unused); /* forced order */
    pthread_mutex_lock(&s->mu);           /* leaky: G1 holds it forever */
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void graceful_stop(struct server *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->drain) {
        if (s->fixed) {
            LL_FIX(pthread_mutex_unlock(&s->mu)); /* FIX: unlock, not lock, before returning */
            return;
        }
        pthread_mutex_lock(&s->mu); /* leaky: G1 waits for itself */
        return;
    }
    s->drain = true;
    pthread_mutex_unlock(&s->mu);
}

/* G1. */
static LL_WAIT_SITE void *test_server_graceful_stop_idempotent(void *arg)
{
    struct server *s = arg;
    ll_thread_start(s->run, &s->g2, server_serve, s); /* te.startServer(): go s.Serve() */
    for (int i = 0; i < 3; i++)
        graceful_stop(s);
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct server *s = new_server(run, false);
    ll_thread_start(run, &s->g1, test_server_graceful_stop_idempotent, s);
    ll_await_parked(run, s->g1, &s->mu, sizeof s->mu);
    ll_chan_close(s->serve_gate);
    ll_await_parked(run, s->g2, &s->mu, sizeof s->mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct server *s = new_server(run, true);
    ll_thread_start(run, &s->g1, test_server_graceful_stop_idempotent, s);
    LL_FIX(pthread_join(s->g1, NULL)); /* FIX: the three stops return: join G1 */
    ll_chan_close(s->serve_gate);      /* Serve locks after them, as in the leaky order */
    LL_FIX(pthread_join(s->g2, NULL)); /* FIX: and Serve gets the mutex: join it */
    LL_FIX(free_server(s));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "grpc795",
    .summary = "GoKer grpc#795 (double locking): the second GracefulStop() locks the server's mutex\n"
               "again instead of unlocking it; Serve() then waits for the mutex too.",
    .leaky_summary = "GracefulStop re-locks its own mutex, Serve waits behind it: both forever",
    .fixed_summary = "a repeated GracefulStop unlocks and returns: both threads end, joined, the server freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = SERVER_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
