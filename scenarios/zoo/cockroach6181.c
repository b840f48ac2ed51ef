/* cockroach6181 - GoKer cockroach#6181 (RWMutex): LookupRangeDescriptor
 * read-locks the range cache and, under it, String() read-locks it again;
 * another lookup's write lock queued in between blocks them all, and the
 * test waits for them on a WaitGroup.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach6181.go; the fix: cockroachdb/cockroach pull 6181):
 *
 *     func (rdc *rangeDescriptorCache) LookupRangeDescriptor() {
 *         rdc.rangeCacheMu.RLock()
 *         runtime.Gosched()
 *         io.Discard.Write([]byte(rdc.String()))   // String(): RLock again: G2 waits here
 *         rdc.rangeCacheMu.RUnlock()
 *         rdc.rangeCacheMu.Lock()                  // G3 waits here, for G2's read lock
 *         rdc.rangeCacheMu.Unlock() }
 *     func testRangeCacheCoalescedRequests() {     // G1
 *         var wg sync.WaitGroup
 *         for i := 0; i < 3; i++ { wg.Add(1)
 *             go func() { doLookupWithToken(db.cache); wg.Done() }() }   // G2, G3, G4
 *         wg.Wait() }                              // G1 waits here
 *
 * Go's goroutineleak profile reports testRangeCacheCoalescedRequests
 * [sync.WaitGroup.Wait] and its func1.1 in [sync.(RW)Mutex.Lock] and
 * [sync.RWMutex.RLock] (flaky in Go: it needs the writer inside G2's window).
 *
 * The C form: rangeCacheMu is a writer-preferring pthread rwlock (Go's
 * preference), wg an ll_waitgroup. LookupRangeDescriptor's two halves are
 * frames of their own, range_cache_lookup (the read-locked part) and
 * range_cache_insert (the write lock), so the census tells the waits apart.
 * The order is forced where Go yields: G2 holds its read lock until G3
 * sleeps in wrlock; the third worker, G4, starts its lookup only then, so
 * its first rdlock queues behind the writer too. The cache holds the range
 * descriptors (DESCRIPTORS_BYTES, the payload). Main waits until all four
 * sleep and forgets the cache: only they reach it (orphaned).
 *
 * What the tools see: see expected/zoo/cockroach6181.toml (native only so
 * far: the truth, checked on every run).
 *
 * The fix, in the kernel's terms (pull 6181's diff was not read here):
 * under the read lock, LookupRangeDescriptor calls stringLocked(), not
 * String().
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { WORKERS = 3, DESCRIPTORS_BYTES = 64 * 1024 }; /* the cached range descriptors: the payload of one instance */

struct range_cache {
    ll_run *run;
    pthread_rwlock_t mu;            /* Go: rangeCacheMu */
    unsigned char *descriptors;
    ll_waitgroup wg;
    ll_chan *reader_holds;          /* forced order: closed once G2 holds its read lock */
    ll_chan *writer_waits;          /* forced order: closed once G3 sleeps in wrlock */
    ll_chan *started;               /* closed once G1 has started the workers (workers[] set) */
    bool fixed;
    pthread_t g1, workers[WORKERS];
};

struct worker { struct range_cache *rdc; int id; };

__attribute__((noinline)) static struct range_cache *new_range_cache(ll_run *run, bool fixed)
{
    struct range_cache *rdc = ll_xmalloc(run, sizeof *rdc);
    *rdc = (struct range_cache){.run = run, .descriptors = ll_xmalloc(run, DESCRIPTORS_BYTES),
                                .reader_holds = ll_chan_new(run, 0), .writer_waits = ll_chan_new(run, 0),
                                .started = ll_chan_new(run, 0), .fixed = fixed};
    memset(rdc->descriptors, 0x5a, DESCRIPTORS_BYTES);
    ll_rwlock_init_writer_preferring(run, &rdc->mu); /* Go's preference, checked: exit 77 where not honoured */
    ll_waitgroup_init(&rdc->wg, run);
    return rdc;
}

static void free_range_cache(struct range_cache *rdc)
{
    pthread_rwlock_destroy(&rdc->mu);
    ll_waitgroup_destroy(&rdc->wg);
    ll_chan_free(rdc->reader_holds);
    ll_chan_free(rdc->writer_waits);
    ll_chan_free(rdc->started);
    free(rdc->descriptors);
    free(rdc);
}

static size_t string_locked(struct range_cache *rdc) { return rdc->descriptors[0]; /* "something here" */ }

static size_t range_cache_string(struct range_cache *rdc)
{
    pthread_rwlock_rdlock(&rdc->mu); /* leaky: G2 already reads; behind the writer it waits forever */
    size_t s = string_locked(rdc);
    pthread_rwlock_unlock(&rdc->mu);
    return s;
}

/* The read-locked half of LookupRangeDescriptor. */
static LL_WAIT_SITE void range_cache_lookup(struct range_cache *rdc, int id)
{
    void *unused;
    if (id == 2)
        ll_chan_recv(rdc->writer_waits, &unused); /* forced order: G4 comes after the writer */
    pthread_rwlock_rdlock(&rdc->mu);             /* G4 waits here, behind the writer */
    if (id == 0) {
        ll_chan_close(rdc->reader_holds);        /* forced order, where Go had runtime.Gosched() */
        ll_chan_recv(rdc->writer_waits, &unused);
    }
    volatile size_t discard = rdc->fixed ? LL_FIX_VALUE(string_locked(rdc), range_cache_string(rdc)) /* FIX */
                                         : range_cache_string(rdc);
    (void)discard;
    pthread_rwlock_unlock(&rdc->mu);
}

/* The write-locked half. */
static LL_WAIT_SITE void range_cache_insert(struct range_cache *rdc)
{
    pthread_rwlock_wrlock(&rdc->mu);             /* G3 waits here, for G2's read lock */
    pthread_rwlock_unlock(&rdc->mu);
}

/* G2, G3, G4: doLookupWithToken(db.cache) -> LookupRangeDescriptor(). */
static void *lookup_worker(void *arg)
{
    struct worker *w = arg;
    struct range_cache *rdc = w->rdc;
    void *unused;
    if (w->id == 1)
        ll_chan_recv(rdc->reader_holds, &unused); /* forced order: G3 looks up while G2 reads */
    range_cache_lookup(rdc, w->id);
    range_cache_insert(rdc);
    ll_waitgroup_done(&rdc->wg);
    free(w);
    return NULL;
}

/* G1. */
static LL_WAIT_SITE void *pause_lookup_resume_and_assert(void *arg)
{
    struct range_cache *rdc = arg;
    for (int i = 0; i < WORKERS; i++) {
        struct worker *w = ll_xmalloc(rdc->run, sizeof *w);
        *w = (struct worker){.rdc = rdc, .id = i};
        ll_waitgroup_add(&rdc->wg, 1);
        ll_thread_start(rdc->run, &rdc->workers[i], lookup_worker, w);
    }
    ll_chan_close(rdc->started);
    ll_waitgroup_wait(&rdc->wg);
    return NULL;
}

static struct range_cache *start(ll_run *run, bool fixed)
{
    struct range_cache *rdc = new_range_cache(run, fixed);
    void *unused;
    ll_thread_start(run, &rdc->g1, pause_lookup_resume_and_assert, rdc);
    ll_chan_recv(rdc->started, &unused);
    ll_await_parked(run, rdc->workers[1], &rdc->mu, sizeof rdc->mu); /* G3 in wrlock */
    ll_chan_close(rdc->writer_waits);
    return rdc;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct range_cache *rdc = start(run, false);
    ll_await_parked(run, rdc->workers[0], &rdc->mu, sizeof rdc->mu);
    ll_await_parked(run, rdc->workers[2], &rdc->mu, sizeof rdc->mu);
    ll_await_parked(run, rdc->g1, &rdc->wg, sizeof rdc->wg);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct range_cache *rdc = start(run, true);
    LL_FIX(pthread_join(rdc->g1, NULL));  /* FIX: every lookup finishes, so Wait returns: join all */
    for (int i = 0; i < WORKERS; i++)
        LL_FIX(pthread_join(rdc->workers[i], NULL));
    LL_FIX(free_range_cache(rdc));        /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach6181",
    .summary = "GoKer cockroach#6181 (RWMutex): LookupRangeDescriptor read-locks the range cache and\n"
               "String() read-locks it again; a writer queued in between blocks every lookup.",
    .leaky_summary = "a writer queues inside one lookup's two read locks: three lookups and the test wait forever",
    .fixed_summary = "the lookup calls stringLocked() under its read lock: all finish, joined, the cache freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = DESCRIPTORS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
