/* cockroach3710 - GoKer cockroach#3710 (RWMutex): a store's scan read-locks
 * s.mu and, under it, calls into the raft log queue, which read-locks s.mu
 * again; a writer that queued in between blocks both read locks.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach3710.go; the fix: cockroachdb/cockroach pull 3710,
 * "Release RLock before calling MaybeAdd to avoid deadlock"):
 *
 *     func (s *Store) ForceRaftLogScanAndProcess() {      // G1
 *         s.mu.RLock()
 *         runtime.Gosched()
 *         for _, r := range s.replicas { s.raftLogQueue.MaybeAdd(r) }
 *         s.mu.RUnlock() }
 *     // MaybeAdd: bq.Lock() -> shouldQueue -> getTruncatableIndexes ->
 *     //     r.store.RaftStatus(): s.mu.RLock()           // G1 waits here
 *     func (s *Store) processRaft() {
 *         go func() { s.mu.Lock(); ... s.mu.Unlock() }() } // G2 waits here
 *     go store.ForceRaftLogScanAndProcess(); go store.processRaft()
 *
 * Go's RWMutex makes a new reader wait behind a waiting writer. Go's
 * goroutineleak profile reports (*Store).ForceRaftLogScanAndProcess
 * [sync.RWMutex.RLock] and (*Store).processRaft.func1 [sync.RWMutex.Lock]
 * (flaky in Go: the writer must queue inside G1's window).
 *
 * The C form: s.mu is a writer-preferring pthread rwlock (Go's preference),
 * the queue's mutex a mutex, the store malloc'ed with its two replicas'
 * raft logs (RAFT_LOG_BYTES, the payload). processRaft only starts its
 * goroutine, so C starts that goroutine (G2) directly. The order is forced
 * where Go yields: G1 read-locks, then waits until G2 sleeps in wrlock.
 * Main waits until G1 sleeps in its second rdlock and forgets the store:
 * only G1 and G2 reach it (orphaned).
 *
 * What the tools see: see expected/zoo/cockroach3710.toml (native only so
 * far: the truth, checked on every run).
 *
 * The fix (the pull request's): copy the replicas under the read lock,
 * release it, then call MaybeAdd on the copy.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { REPLICAS = 2, RAFT_LOG_BYTES = 64 * 1024 }; /* the replicas' raft logs: the payload of one instance */

struct store;
struct replica { struct store *store; };

struct store {
    pthread_rwlock_t mu;            /* Go: s.mu, a sync.RWMutex */
    pthread_mutex_t queue_mu;       /* Go: baseQueue's sync.Mutex */
    struct replica replicas[REPLICAS];
    unsigned char *raft_logs;
    ll_chan *reader_holds;          /* forced order: closed once G1 holds its read lock */
    ll_chan *writer_waits;          /* forced order: closed once G2 sleeps in wrlock */
    pthread_t g1, g2;
};

__attribute__((noinline)) static struct store *new_store(ll_run *run)
{
    struct store *s = ll_xmalloc(run, sizeof *s);
    *s = (struct store){.raft_logs = ll_xmalloc(run, RAFT_LOG_BYTES), .reader_holds = ll_chan_new(run, 0),
                        .writer_waits = ll_chan_new(run, 0)};
    memset(s->raft_logs, 0x5a, RAFT_LOG_BYTES);
    for (int i = 0; i < REPLICAS; i++)
        s->replicas[i].store = s;
    ll_rwlock_init_writer_preferring(run, &s->mu); /* Go's preference, checked: exit 77 where not honoured */
    pthread_mutex_init(&s->queue_mu, NULL);
    return s;
}

static void free_store(struct store *s)
{
    pthread_rwlock_destroy(&s->mu);
    pthread_mutex_destroy(&s->queue_mu);
    ll_chan_free(s->reader_holds);
    ll_chan_free(s->writer_waits);
    free(s->raft_logs);
    free(s);
}

/* s.RaftStatus(), reached from getTruncatableIndexes. */
static void raft_status(struct store *s)
{
    pthread_rwlock_rdlock(&s->mu); /* leaky: G1 already reads; behind the writer it waits forever */
    pthread_rwlock_unlock(&s->mu);
}

/* bq.MaybeAdd(r) -> impl.shouldQueue(r) -> getTruncatableIndexes(r). */
static void maybe_add(struct replica *r)
{
    pthread_mutex_lock(&r->store->queue_mu);
    raft_status(r->store);
    pthread_mutex_unlock(&r->store->queue_mu);
}

/* G1. */
static LL_WAIT_SITE void force_raft_log_scan_and_process(struct store *s, bool fixed)
{
    void *unused;
    struct replica *replicas[REPLICAS];
    pthread_rwlock_rdlock(&s->mu);
    ll_chan_close(s->reader_holds);          /* forced order, where Go had runtime.Gosched() */
    ll_chan_recv(s->writer_waits, &unused);
    if (fixed) {
        for (int i = 0; i < REPLICAS; i++)
            replicas[i] = &s->replicas[i];   /* copy the replicas under the lock */
        LL_FIX(pthread_rwlock_unlock(&s->mu)); /* FIX: release the read lock before MaybeAdd */
        for (int i = 0; i < REPLICAS; i++)
            maybe_add(replicas[i]);
        return;
    }
    for (int i = 0; i < REPLICAS; i++)
        maybe_add(&s->replicas[i]);
    pthread_rwlock_unlock(&s->mu);
}

static void *g1_leaky(void *s) { force_raft_log_scan_and_process(s, false); return NULL; }
static void *g1_fixed(void *s) { force_raft_log_scan_and_process(s, true); return NULL; }

/* G2: processRaft's goroutine. */
static LL_WAIT_SITE void *process_raft(void *arg)
{
    struct store *s = arg;
    void *unused;
    ll_chan_recv(s->reader_holds, &unused); /* forced order */
    pthread_rwlock_wrlock(&s->mu);          /* waits for G1's first read lock */
    pthread_rwlock_unlock(&s->mu);
    return NULL;
}

static struct store *start(ll_run *run, void *(*g1)(void *))
{
    struct store *s = new_store(run);
    ll_thread_start(run, &s->g1, g1, s);
    ll_thread_start(run, &s->g2, process_raft, s);
    ll_await_parked(run, s->g2, &s->mu, sizeof s->mu);
    ll_chan_close(s->writer_waits);
    return s;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct store *s = start(run, g1_leaky);
    ll_await_parked(run, s->g1, &s->mu, sizeof s->mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct store *s = start(run, g1_fixed);
    LL_FIX(pthread_join(s->g1, NULL)); /* FIX: the writer gets its turn, then G1's reads: join both */
    LL_FIX(pthread_join(s->g2, NULL));
    LL_FIX(free_store(s));             /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach3710",
    .summary = "GoKer cockroach#3710 (RWMutex): ForceRaftLogScanAndProcess read-locks s.mu and, under\n"
               "it, RaftStatus read-locks it again; a writer queued in between blocks both.",
    .leaky_summary = "a writer queues between two read locks of one thread: the writer and the reader wait forever",
    .fixed_summary = "the read lock is released before MaybeAdd: both finish, joined, the store freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RAFT_LOG_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
