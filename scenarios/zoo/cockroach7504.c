/* cockroach7504 - GoKer cockroach#7504 (AB-BA, three locks): the lease
 * manager takes a lease's lock and then the name cache's, the name cache
 * takes its own lock and then a lease's; both wait for each other forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach7504.go; the fix: cockroachdb/cockroach pull 7504):
 *
 *     G1: mgr.AcquireByName(0)             G2: mgr.Release(lset.find(0))
 *         tableNames.get(id)                   t.release(lease)
 *             c.mu.Lock()          [L2]            t.mu.Lock()            [L3]
 *             lease.mu.Lock()      [L1]            s.mu.Lock()            [L1]
 *                                                  t.removeLease(s)
 *                                                      tableNameCache.remove()
 *                                                          c.mu.Lock()    [L2]
 *
 * Go's goroutineleak profile reports Cockroach7504.func2.1 and
 * Cockroach7504.func2.2 (G1 and G2), both [sync.Mutex.Lock]; Go's test does
 * not call it flaky (it runs the pair 100 times and expects both leaks).
 *
 * The C form: each sync.Mutex is a pthread mutex (default type) inside the
 * struct that holds it in Go; the leases, their set, the name cache, the
 * table state and the manager are malloc'ed; each lease holds its table
 * descriptor (LEASES x DESCRIPTOR_BYTES, the payload). The window is forced,
 * not hoped for: a barrier where G2 called runtime.Gosched() (right after
 * L1) and where G1 holds L2 lets neither thread ask for its second lock
 * before both hold their first, so every instance deadlocks. Main then
 * forgets the manager: only the two blocked threads reach the leases and
 * the cache, and the mutexes they wait on (orphaned). L3 is held by G2 too
 * but nobody waits for it.
 *
 * What the tools see (one instance; expected/zoo/cockroach7504.toml): the
 * census, one thread in table_name_cache_get (waiting for L1) and one in
 * table_name_cache_remove (waiting for L2), each in a futex wait on a mutex
 * of a lease or of the cache; the heap profile, 65,864 B in use
 * (new_lease_manager); memcheck, 65,880 B "still reachable" (hidden) and
 * the two threads' TLS blocks "possibly lost" (640 B); heaptrack, 66,584 B
 * leaked; threadcheck, 2 threads alive; the heap checker, LSan, ASan:
 * nothing; TSan neither (its lock-order check, on by default, learns an
 * order only from a lock that succeeds, and neither second lock ever does).
 *
 * The fix (ours: the kernel does not carry the pull request's diff): the
 * name cache reads the lease under L2 and lets go of L2 before it takes
 * L1, so no thread holds L2 while it waits for L1.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    LEASES = 2,                             /* leaseNum := 2 */
    DESCRIPTOR_BYTES = 32 * 1024,           /* one lease's table descriptor */
    LEASES_BYTES = LEASES * DESCRIPTOR_BYTES, /* the payload of one instance: 64 KiB */
};

struct lease_state {
    pthread_mutex_t mu;             /* Go: LeaseState.mu, L1 */
    int id;
    unsigned char *descriptor;
};

struct lease_set {                  /* Go: LeaseSet, a slice of leases */
    struct lease_state *data[LEASES];
    int len;
};

struct table_name_cache {
    pthread_mutex_t mu;             /* L2 */
    struct lease_state *tables[LEASES]; /* Go: map[int]*LeaseState, by id; NULL: deleted */
};

struct table_state {
    struct table_name_cache *table_name_cache;
    pthread_mutex_t mu;             /* L3 */
    struct lease_set *active;
};

struct lease_manager {
    struct table_name_cache *table_names;
    struct table_state *tables[1];  /* Go: map[int]*tableState, {0: ts} */
    struct lease_state *leases[LEASES]; /* every lease, for the fixed variant's free (Go's GC) */
    pthread_barrier_t both_hold_first; /* the forced window: Go's runtime.Gosched() */
    pthread_t acquirer, releaser;   /* G1, G2 */
};

static struct lease_manager *new_lease_manager(ll_run *run)
{
    struct lease_manager *m = ll_xmalloc(run, sizeof *m);
    struct lease_set *lset = ll_xmalloc(run, sizeof *lset);
    struct table_name_cache *nc = ll_xmalloc(run, sizeof *nc);
    struct table_state *ts = ll_xmalloc(run, sizeof *ts);
    *lset = (struct lease_set){.len = LEASES};
    *nc = (struct table_name_cache){0};
    pthread_mutex_init(&nc->mu, NULL);
    for (int i = 0; i < LEASES; i++) {
        struct lease_state *l = ll_xmalloc(run, sizeof *l);
        *l = (struct lease_state){.id = i, .descriptor = ll_xmalloc(run, DESCRIPTOR_BYTES)};
        memset(l->descriptor, 0x5a, DESCRIPTOR_BYTES);
        pthread_mutex_init(&l->mu, NULL);
        lset->data[i] = nc->tables[i] = m->leases[i] = l;
    }
    *ts = (struct table_state){.table_name_cache = nc, .active = lset};
    pthread_mutex_init(&ts->mu, NULL);
    m->table_names = nc;
    m->tables[0] = ts;
    pthread_barrier_init(&m->both_hold_first, NULL, 2);
    return m;
}

static void free_lease_manager(struct lease_manager *m)
{
    for (int i = 0; i < LEASES; i++) {
        pthread_mutex_destroy(&m->leases[i]->mu);
        free(m->leases[i]->descriptor);
        free(m->leases[i]);
    }
    pthread_mutex_destroy(&m->table_names->mu);
    free(m->table_names);
    pthread_mutex_destroy(&m->tables[0]->mu);
    free(m->tables[0]->active);
    free(m->tables[0]);
    pthread_barrier_destroy(&m->both_hold_first);
    free(m);
}

static void lease_set_remove(struct lease_set *l, struct lease_state *s)
{
    for (int i = 0; i < l->len; i++)
        if (l->data[i] == s) {
            memmove(&l->data[i], &l->data[i + 1], (size_t)(l->len - i - 1) * sizeof l->data[0]);
            l->len--;
            break;
        }
}

/* G1, leaky: L2, then (under L2) L1. */
static LL_WAIT_SITE void table_name_cache_get(struct lease_manager *m, int id)
{
    struct table_name_cache *c = m->table_names;
    pthread_mutex_lock(&c->mu);                  /* L2 */
    pthread_barrier_wait(&m->both_hold_first);
    struct lease_state *lease = c->tables[id];
    if (lease) {
        pthread_mutex_lock(&lease->mu);          /* L1: G1 waits here, holding L2 */
        pthread_mutex_unlock(&lease->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

/* G1, fixed: read the lease under L2, let go of L2, then take L1. */
static LL_WAIT_SITE void table_name_cache_get_fixed(struct lease_manager *m, int id)
{
    struct table_name_cache *c = m->table_names;
    pthread_mutex_lock(&c->mu);
    pthread_barrier_wait(&m->both_hold_first);
    struct lease_state *lease = c->tables[id];
    LL_FIX(pthread_mutex_unlock(&c->mu));        /* FIX: release L2 before taking L1 */
    if (lease) {
        pthread_mutex_lock(&lease->mu);
        pthread_mutex_unlock(&lease->mu);
    }
}

/* G2's last step, the same in both variants: L2, under L3 and L1. */
static LL_WAIT_SITE void table_name_cache_remove(struct table_name_cache *c, struct lease_state *lease)
{
    pthread_mutex_lock(&c->mu);                  /* L2: G2 waits here, holding L3 and L1 */
    if (c->tables[lease->id] == lease)
        c->tables[lease->id] = NULL;             /* delete(c.tables, key) */
    pthread_mutex_unlock(&c->mu);
}

static void remove_lease(struct table_state *t, struct lease_state *lease)
{
    lease_set_remove(t->active, lease);
    table_name_cache_remove(t->table_name_cache, lease);
}

/* G2: mgr.Release(lease) -> findTableState -> t.release(lease). */
static void release(struct lease_manager *m, struct lease_state *lease)
{
    struct table_state *t = m->tables[lease->id]; /* findTableState(lease): only lease 0 is released */
    pthread_mutex_lock(&t->mu);                  /* L3 */
    struct lease_state *s = t->active->data[lease->id]; /* t.active.find(MakeCacheKey(lease)) */
    pthread_mutex_lock(&s->mu);                  /* L1 */
    pthread_barrier_wait(&m->both_hold_first);
    remove_lease(t, s);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&t->mu);
}

static void *acquirer_leaky(void *m) { table_name_cache_get(m, 0); return NULL; }      /* mgr.AcquireByName(0) */
static void *acquirer_fixed(void *m) { table_name_cache_get_fixed(m, 0); return NULL; }
static void *releaser(void *arg)
{
    struct lease_manager *m = arg;
    release(m, m->tables[0]->active->data[0]); /* mgr.Release(lset.find(0)) */
    return NULL;
}

static struct lease_manager *start(ll_run *run, void *(*acquirer)(void *))
{
    struct lease_manager *m = new_lease_manager(run);
    ll_thread_start(run, &m->acquirer, acquirer, m);
    ll_thread_start(run, &m->releaser, releaser, m);
    return m;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct lease_manager *m = start(run, acquirer_leaky);
    /* Deadlocked for good once each sleeps on the other's lock. */
    ll_await_parked(run, m->acquirer, &m->leases[0]->mu, sizeof(pthread_mutex_t));
    ll_await_parked(run, m->releaser, &m->table_names->mu, sizeof(pthread_mutex_t));
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct lease_manager *m = start(run, acquirer_fixed);
    LL_FIX(pthread_join(m->acquirer, NULL)); /* FIX: no cycle, so both finish: join them */
    LL_FIX(pthread_join(m->releaser, NULL));
    LL_FIX(free_lease_manager(m));           /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach7504",
    .summary = "GoKer cockroach#7504 (AB-BA, three locks): Release holds the table's and the lease's\n"
               "locks while it takes the name cache's; get holds the cache's while it takes the lease's.",
    .leaky_summary = "the two lock orders, forced to interleave: both threads deadlock, holding the leases",
    .fixed_summary = "the name cache lets go of its lock before locking the lease: both finish, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = LEASES_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
