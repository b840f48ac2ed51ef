/* cockroach16167 - GoKer cockroach#16167 (double locking): a goroutine
 * read-locks an RWMutex twice; a writer that queues in between blocks the
 * second RLock, and waits itself for the first one's RUnlock: both leak.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach16167.go; the fix: cockroachdb/cockroach pull 16167):
 *
 *     G1: e.systemConfigCond = sync.NewCond(e.systemConfigMu.RLocker())
 *         go e.Start()                 // G2: updateSystemConfig(): systemConfigMu.Lock()
 *         e.execParsed(s)
 *             systemConfigCond.L.Lock()           // = systemConfigMu.RLock()  [L1]
 *             runTxnAttempt -> execStmtsInCurrentTxn -> execStmtInOpenTxn
 *                 -> PreparedStatements.New -> Prepare -> resetForBatch
 *                 -> getDatabaseCache(): systemConfigMu.RLock()              [L1]
 *
 * If G2's Lock comes between G1's two RLocks, Go's writer-preferring
 * RWMutex makes the second RLock wait for the writer, which waits for the
 * first RLock to be released. Go's goroutineleak profile reports
 * Cockroach16167.func2 [sync.RWMutex.RLock] (G1) and (*Executor).Start
 * [sync.RWMutex.Lock] (G2); flaky in Go's test (it needs that order).
 *
 * The C form: sync.RWMutex is a pthread rwlock of kind
 * PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP, writer-preferring as Go's
 * (glibc's default prefers readers: the second rdlock would succeed and
 * nothing would leak). The cond is only ever used through its L (never
 * Wait or Signal), so its C form is that L: the rdlock side of the same
 * rwlock. The executor is malloc'ed with its system config
 * (SYSTEM_CONFIG_BYTES, the payload). The order is forced, not hoped for:
 * G2 asks for the write lock only once G1 holds its read lock (a gate G1
 * closes where Go called runtime.Gosched()), and main lets G1 on to its
 * second rdlock only once G2 is seen asleep in wrlock (ll_await_parked).
 * Main then forgets the executor: the two blocked threads alone reach it
 * and the rwlock they wait on (orphaned).
 *
 * What the tools see (one instance; expected/zoo/cockroach16167.toml): the
 * census, one thread in get_database_cache and one in update_system_config,
 * each in a futex wait on the rwlock; the heap profile, 66,384 B in use
 * (new_executor); memcheck, 66,400 B "still reachable" (hidden) and the two
 * threads' TLS blocks "possibly lost" (640 B); heaptrack, 67,104 B leaked;
 * threadcheck, 2 threads alive; the heap checker, LSan, ASan, TSan: nothing.
 *
 * The fix, upstream's (cockroachdb/cockroach pull 16167, commit d064942b):
 * execParsed keeps the cond's read lock for the whole statement, on purpose
 * ("so that no gossip updates sneak in under us"); instead the database
 * cache became an atomic value: updateSystemConfig stores a new one under
 * the write lock, and getDatabaseCache loads it without any lock. No thread
 * asks for a read lock it already holds, so the queued writer gets its turn
 * when the statement ends.
 *
 * glibc honours the writer preference; another C library might not (the
 * second rdlock would then succeed and nothing would leak), so the rwlock
 * comes from ll_rwlock_init_writer_preferring, which checks the preference
 * at run time and skips (exit 77) where it does not hold.
 */
#include "leaklab.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { SYSTEM_CONFIG_BYTES = 64 * 1024 }; /* the executor's system config: the payload of one instance */

struct executor {
    ll_run *run;
    pthread_rwlock_t system_config_mu;   /* Go: systemConfigMu, L1 */
    pthread_rwlock_t *system_config_cond_l; /* Go: systemConfigCond.L = systemConfigMu.RLocker() */
    unsigned char *system_config;
    unsigned char *database_cache;          /* Go: databaseCache, read under RLock (leaky) */
    _Atomic(unsigned char *) database_cache_value; /* Go after the fix: databaseCache atomic.Value */
    ll_chan *reader_holds;               /* forced order: closed once G1 holds its first read lock */
    ll_chan *writer_waits;               /* forced order: closed once G2 is asleep in wrlock */
    pthread_t execer, starter;           /* G1, G2 */
};

struct session { struct executor *e; }; /* Go: Session and its PreparedStatements{session} */

/* Not inlined, so the heap profilers charge the payload to it by name. */
__attribute__((noinline)) static struct executor *new_executor(ll_run *run)
{
    struct executor *e = ll_xmalloc(run, sizeof *e);
    *e = (struct executor){.run = run, .system_config = ll_xmalloc(run, SYSTEM_CONFIG_BYTES),
                           .reader_holds = ll_chan_new(run, 0), .writer_waits = ll_chan_new(run, 0)};
    memset(e->system_config, 0x5a, SYSTEM_CONFIG_BYTES);
    ll_rwlock_init_writer_preferring(run, &e->system_config_mu); /* Go's preference, checked */
    e->system_config_cond_l = &e->system_config_mu;
    return e;
}

static void free_executor(struct executor *e)
{
    pthread_rwlock_destroy(&e->system_config_mu);
    ll_chan_free(e->reader_holds);
    ll_chan_free(e->writer_waits);
    free(e->system_config);
    free(e);
}

/* G2: e.Start() -> updateSystemConfig(), the same in both variants: under
 * the write lock, the system config's new database cache (stored both ways,
 * so each variant's reader finds it). */
static LL_WAIT_SITE void update_system_config(struct executor *e)
{
    void *unused;
    ll_chan_recv(e->reader_holds, &unused);   /* forced order: G1 holds its read lock */
    pthread_rwlock_wrlock(&e->system_config_mu); /* G2 waits here, for G1's first read lock */
    e->database_cache = e->system_config;     /* databaseCache = newDatabaseCache(cfg) */
    atomic_store(&e->database_cache_value, e->system_config); /* after the fix: databaseCache.Store */
    pthread_rwlock_unlock(&e->system_config_mu);
}

static void *starter(void *e) { update_system_config(e); return NULL; }

/* The second read lock, deep in the statement's execution. */
static LL_WAIT_SITE unsigned char *get_database_cache(struct executor *e)
{
    pthread_rwlock_rdlock(&e->system_config_mu); /* G1 waits here, behind the waiting writer */
    unsigned char *cache = e->database_cache;
    pthread_rwlock_unlock(&e->system_config_mu);
    return cache;
}

/* FIX: upstream's getDatabaseCache: an atomic load, no read lock. */
static unsigned char *get_database_cache_fixed(struct executor *e)
{
    return atomic_load(&e->database_cache_value);
}

/* runTxnAttempt -> execStmtsInCurrentTxn -> execStmtInOpenTxn ->
 * PreparedStatements.New -> Prepare -> resetForBatch -> getDatabaseCache */
static void run_txn_attempt(struct session *s, unsigned char *(*get_cache)(struct executor *))
{
    (void)get_cache(s->e);
}

/* Up to its first read lock and the forced window, the same in both variants. */
static void read_lock_and_let_the_writer_queue(struct executor *e)
{
    pthread_rwlock_rdlock(e->system_config_cond_l); /* systemConfigCond.L.Lock() */
    ll_chan_close(e->reader_holds);                 /* forced order, where Go had runtime.Gosched() */
    void *unused;
    ll_chan_recv(e->writer_waits, &unused);
}

/* The same in both variants: the cond's read lock held for the whole
 * statement, as upstream keeps it; only getDatabaseCache differs. */
static void exec_parsed(struct session *s, unsigned char *(*get_cache)(struct executor *))
{
    read_lock_and_let_the_writer_queue(s->e);
    run_txn_attempt(s, get_cache);                  /* leaky: its RLock waits forever */
    pthread_rwlock_unlock(s->e->system_config_cond_l); /* defer systemConfigCond.L.Unlock() */
}

/* G1: go e.Start(); e.execParsed(s) */
static void *execer(void *arg, unsigned char *(*get_cache)(struct executor *))
{
    struct executor *e = arg;
    struct session s = {.e = e};
    ll_thread_start(e->run, &e->starter, starter, e);
    exec_parsed(&s, get_cache);
    return NULL;
}

static void *execer_leaky(void *e) { return execer(e, get_database_cache); }
static void *execer_fixed(void *e) /* FIX: the cache read without a lock */
{
    (void)get_database_cache_fixed; /* referenced even where LL_BREAK_FIX takes the fix out */
    return execer(e, LL_FIX_VALUE(get_database_cache_fixed, get_database_cache));
}

/* Starts G1 and forces the order: G1 read-locked, G2 asleep in wrlock,
 * then G1 goes on. */
static struct executor *start(ll_run *run, void *(*g1)(void *))
{
    struct executor *e = new_executor(run);
    ll_thread_start(run, &e->execer, g1, e);
    void *unused;
    ll_chan_recv(e->reader_holds, &unused);        /* G1 holds its read lock and has started G2 */
    ll_await_parked(run, e->starter, &e->system_config_mu, sizeof e->system_config_mu);
    ll_chan_close(e->writer_waits);
    return e;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct executor *e = start(run, execer_leaky);
    /* G1's second rdlock queues behind the writer: deadlocked for good. */
    ll_await_parked(run, e->execer, &e->system_config_mu, sizeof e->system_config_mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct executor *e = start(run, execer_fixed);
    LL_FIX(pthread_join(e->execer, NULL));  /* FIX: G1's statement ends, then the writer's turn: join both */
    LL_FIX(pthread_join(e->starter, NULL));
    LL_FIX(free_executor(e));               /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach16167",
    .summary = "GoKer cockroach#16167 (double locking): execParsed read-locks systemConfigMu (through\n"
               "the cond's RLocker) and read-locks it again; a writer queued in between blocks both.",
    .leaky_summary = "a writer queues between two read locks of one thread: the writer and the reader wait forever",
    .fixed_summary = "upstream's fix: the database cache is read atomically, without a second read lock: both finish",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = SYSTEM_CONFIG_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
