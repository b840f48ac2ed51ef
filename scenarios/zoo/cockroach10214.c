/* cockroach10214 - GoKer cockroach#10214: two locks taken in opposite
 * orders (AB-BA); both threads wait for each other forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach10214.go; the fix: cockroachdb/cockroach pull 10214):
 *
 *     G1: store.sendQueuedHeartbeats()     G2: replica.tick()
 *         coalescedMu.Lock()       [A]         raftMu.Lock()              [B]
 *         ... reportUnreachable()              ... tickRaftMuLocked()
 *             raftMu.Lock()        [B]             mu.Lock()
 *                                                  maybeCoalesceHeartbeat()
 *                                                      coalescedMu.Lock() [A]
 *
 * Go's goroutineleak profile reports (*Store).sendQueuedHeartbeats and
 * (*Replica).tick, both [sync.Mutex.Lock]; the Go test calls it flaky: the
 * bad order needs both goroutines inside their window at once (3 runs in 100).
 *
 * The C form: sync.Mutex is a pthread mutex (default type); the store and
 * its replicas are one malloc'ed struct, holding the coalesced heartbeats
 * (HEARTBEATS_BYTES, the payload). The window is forced, not hoped for: a
 * barrier where Go called runtime.Gosched() lets neither thread ask for its
 * second lock before both hold their first, so every instance deadlocks.
 * Main then forgets the store: only the two blocked threads reach it.
 *
 * What the tools see (one instance; expected/zoo/cockroach10214.toml): the
 * census, one thread in send_queued_heartbeats and one in tick, each in a
 * futex wait on a mutex of the store; the heap profile, 65,816 B in use
 * (new_store); memcheck, 65,832 B "still reachable" (hidden) and the two
 * threads' TLS blocks "possibly lost" (640 B); heaptrack, 66,536 B leaked;
 * threadcheck, 2 threads alive; the heap checker, LSan, ASan: nothing; TSan
 * neither (its lock-order check is off by default).
 *
 * The fix (the pull request's): sendQueuedHeartbeats takes the batch under
 * coalescedMu and lets go of it before it takes any raftMu.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    REPLICAS = 2,                   /* rp1 and rp2 */
    HEARTBEAT_RESPONSES = 2,        /* heartbeatResponses = [1, 2] */
    HEARTBEATS_BYTES = 64 * 1024,   /* the coalesced heartbeats: the payload of one instance */
};

struct store;

struct replica {
    pthread_mutex_t raft_mu;        /* Go: raftMu, lock B */
    pthread_mutex_t mu;
    struct store *store;
};

struct store {
    pthread_mutex_t coalesced_mu;   /* Go: coalescedMu, lock A */
    int heartbeat_responses;        /* guarded by coalesced_mu */
    unsigned char *heartbeats;
    struct replica replicas[REPLICAS];
    pthread_barrier_t both_hold_first; /* the forced window: Go's runtime.Gosched() */
    pthread_t sender, ticker;
};

static struct store *new_store(ll_run *run)
{
    struct store *s = ll_xmalloc(run, sizeof *s);
    *s = (struct store){.heartbeat_responses = HEARTBEAT_RESPONSES, .heartbeats = ll_xmalloc(run, HEARTBEATS_BYTES)};
    memset(s->heartbeats, 0x5a, HEARTBEATS_BYTES);
    pthread_mutex_init(&s->coalesced_mu, NULL);
    for (int i = 0; i < REPLICAS; i++) {
        s->replicas[i].store = s;
        pthread_mutex_init(&s->replicas[i].raft_mu, NULL);
        pthread_mutex_init(&s->replicas[i].mu, NULL);
    }
    pthread_barrier_init(&s->both_hold_first, NULL, 2);
    return s;
}

static void free_store(struct store *s)
{
    pthread_barrier_destroy(&s->both_hold_first);
    free(s->heartbeats);
    free(s);
}

static void report_unreachable(struct replica *r)
{
    pthread_mutex_lock(&r->raft_mu); /* B: G1 waits here, holding A */
    pthread_mutex_unlock(&r->raft_mu);
}

static void send_queued_heartbeats_to_node(struct store *s)
{
    for (int i = 0; i < REPLICAS; i++)
        report_unreachable(&s->replicas[i]);
}

/* G1, leaky: A is held across every B. */
static LL_WAIT_SITE void send_queued_heartbeats(struct store *s)
{
    pthread_mutex_lock(&s->coalesced_mu);
    pthread_barrier_wait(&s->both_hold_first);
    for (int i = 0; i < s->heartbeat_responses; i++)
        send_queued_heartbeats_to_node(s);
    pthread_mutex_unlock(&s->coalesced_mu);
}

/* G1, fixed: take the batch under A, let go of A, then take the Bs. */
static LL_WAIT_SITE void send_queued_heartbeats_fixed(struct store *s)
{
    pthread_mutex_lock(&s->coalesced_mu);
    pthread_barrier_wait(&s->both_hold_first);
    int responses = s->heartbeat_responses;
    LL_FIX(pthread_mutex_unlock(&s->coalesced_mu)); /* FIX: release coalescedMu before any raftMu */
    for (int i = 0; i < responses; i++)
        send_queued_heartbeats_to_node(s);
}

static bool maybe_coalesce_heartbeat(struct replica *r)
{
    pthread_mutex_lock(&r->store->coalesced_mu); /* A: G2 waits here, holding B */
    pthread_mutex_unlock(&r->store->coalesced_mu);
    return true;
}

static bool maybe_quiesce_locked(struct replica *r)
{
    for (int i = 0; i < 2; i++)
        if (!maybe_coalesce_heartbeat(r))
            return true;
    return false;
}

static void tick_raft_mu_locked(struct replica *r)
{
    pthread_mutex_lock(&r->mu);
    maybe_quiesce_locked(r);
    pthread_mutex_unlock(&r->mu);
}

/* G2, the same in both variants: B, then (under B) A. */
static LL_WAIT_SITE void tick(struct replica *r)
{
    pthread_mutex_lock(&r->raft_mu);
    pthread_barrier_wait(&r->store->both_hold_first);
    tick_raft_mu_locked(r);
    pthread_mutex_unlock(&r->raft_mu);
}

static void *sender_leaky(void *s) { send_queued_heartbeats(s); return NULL; }
static void *sender_fixed(void *s) { send_queued_heartbeats_fixed(s); return NULL; }
static void *ticker(void *r) { tick(r); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct store *s = new_store(run);
    ll_thread_start(run, &s->sender, sender_leaky, s);
    ll_thread_start(run, &s->ticker, ticker, &s->replicas[0]); /* rp1.tick() */
    /* Deadlocked for good once each sleeps on the other's lock. */
    ll_await_parked(run, s->sender, &s->replicas[0].raft_mu, sizeof(pthread_mutex_t));
    ll_await_parked(run, s->ticker, &s->coalesced_mu, sizeof(pthread_mutex_t));
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct store *s = new_store(run);
    ll_thread_start(run, &s->sender, sender_fixed, s);
    ll_thread_start(run, &s->ticker, ticker, &s->replicas[0]);
    LL_FIX(pthread_join(s->sender, NULL)); /* FIX: no cycle, so both finish: join them */
    LL_FIX(pthread_join(s->ticker, NULL));
    LL_FIX(free_store(s));                 /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach10214",
    .summary = "GoKer cockroach#10214 (AB-BA): sendQueuedHeartbeats holds coalescedMu while it takes\n"
               "raftMu, tick holds raftMu while it takes coalescedMu; both wait forever.",
    .leaky_summary = "the two lock orders, forced to interleave: both threads deadlock, holding the store",
    .fixed_summary = "coalescedMu released before any raftMu: both finish, joined, the store freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = HEARTBEATS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
