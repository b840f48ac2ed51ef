/* grpc3017 - GoKer grpc#3017 (missing unlock): the sub-connection cache's
 * deletion timer returns early without unlocking the cache's mutex when
 * its deletion was aborted; the next RemoveSubConn waits for it forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/grpc3017.go; grpc/grpc-go's lbCacheClientConn, fixed upstream by
 * adding the missing unlock):
 *
 *     func (ccc *lbCacheClientConn) RemoveSubConn(sc SubConn) {
 *         ccc.mu.Lock(); defer ccc.mu.Unlock()        // G2 waits here, the second time
 *         ... entry := &subConnCacheEntry{sc: sc}; ccc.subConnCache[addr] = entry
 *         timer := time.AfterFunc(ccc.timeout, func() {  // G3
 *             ccc.mu.Lock()
 *             if entry.abortDeleting { return }       // missing unlock
 *             delete(...); ccc.mu.Unlock() })
 *         entry.cancel = func() { if !timer.Stop() { entry.abortDeleting = true } } }
 *     func (ccc *lbCacheClientConn) NewSubConn(addrs) SubConn {
 *         ccc.mu.Lock(); defer ccc.mu.Unlock()
 *         if entry, ok := ccc.subConnCache[addr]; ok { entry.cancel(); delete(...); return entry.sc }
 *         ... }
 *     go func() {                                     // G1
 *         sc := ccc.NewSubConn([]Address{1})
 *         go func() {                                 // G2
 *             for i := 0; i < 10000; i++ { ccc.RemoveSubConn(sc); sc = ccc.NewSubConn([]Address{1}) }
 *             close(done) }()
 *         <-done }()                                  // G1 waits here
 *
 * The timer (1 ns) fires before NewSubConn cancels it, so Stop fails and
 * the deletion is marked aborted; the timer's function then takes the lock
 * and returns holding it. Go's goroutineleak profile reports Grpc3017.func2
 * [chan receive], Grpc3017.func2.1 [sync.Mutex.Lock] and, for timers still
 * queued, RemoveSubConn.func1 [sync.Mutex.Lock] (flaky in Go).
 *
 * The C form: the maps hold one address, so they are two fields; the mutex
 * is a pthread mutex, done an ll_chan. time.AfterFunc is a thread started
 * by RemoveSubConn (the timer has fired once its function runs, so Stop
 * fails); the order of the GoKer trace is forced: the timer's function
 * takes the lock only once NewSubConn has cancelled it, and G2 goes on only
 * once that function has returned (G2 joins it: Go reclaims it). Two turns
 * of G2's loop show the bug (Go's 10,000 hunt the window, which C forces).
 * The cache holds its sub-connections' state (CACHE_BYTES, the payload).
 * Main waits until G1 and G2 sleep and forgets the cache: the mutex is held
 * by a thread that has ended, and only G1 and G2 reach it (orphaned).
 *
 * What the tools see: see expected/zoo/grpc3017.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the GoKer kernel marks it "Missing unlock"): unlock before the
 * early return.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { TURNS = 2, CACHE_BYTES = 64 * 1024 }; /* the sub-connections' state: the payload of one instance */

struct lb_cache;

struct cache_entry {                /* Go: subConnCacheEntry */
    struct lb_cache *ccc;
    int sc;
    bool abort_deleting;
    bool timer_fired;               /* the AfterFunc's function has started: Stop() fails */
    ll_chan *cancelled;             /* forced order: closed once NewSubConn has cancelled the timer */
    pthread_t timer;                /* G3 */
};

struct lb_cache {                   /* Go: lbCacheClientConn, for the one address 1 */
    ll_run *run;
    pthread_mutex_t mu;             /* L1 */
    struct cache_entry *cached;     /* subConnCache[1], or NULL */
    bool mapped;                    /* subConnToAddr[sc] == 1 */
    unsigned char *state;
    ll_chan *done;
    bool fixed;
    pthread_t g1, g2;
};

__attribute__((noinline)) static struct lb_cache *new_lb_cache(ll_run *run, bool fixed)
{
    struct lb_cache *ccc = ll_xmalloc(run, sizeof *ccc);
    *ccc = (struct lb_cache){.run = run, .state = ll_xmalloc(run, CACHE_BYTES), .done = ll_chan_new(run, 0),
                             .fixed = fixed};
    memset(ccc->state, 0x5a, CACHE_BYTES);
    pthread_mutex_init(&ccc->mu, NULL);
    return ccc;
}

static void free_lb_cache(struct lb_cache *ccc)
{
    pthread_mutex_destroy(&ccc->mu);
    ll_chan_free(ccc->done);
    free(ccc->state);
    free(ccc);
}

/* G3: the AfterFunc's function. */
static void *deletion_timer(void *arg)
{
    struct cache_entry *entry = arg;
    struct lb_cache *ccc = entry->ccc;
    void *unused;
    ll_chan_recv(entry->cancelled, &unused); /* forced order */
    pthread_mutex_lock(&ccc->mu);
    if (entry->abort_deleting) {
        if (ccc->fixed)
            LL_FIX(pthread_mutex_unlock(&ccc->mu)); /* FIX: unlock before the early return */
        return NULL;                                 /* leaky: returns holding ccc.mu */
    }
    ccc->mapped = false;
    ccc->cached = NULL;
    pthread_mutex_unlock(&ccc->mu);
    return NULL;
}

static LL_WAIT_SITE struct cache_entry *remove_sub_conn(struct lb_cache *ccc, int sc)
{
    pthread_mutex_lock(&ccc->mu);   /* leaky: the second time, G2 waits here forever */
    struct cache_entry *entry = NULL;
    if (ccc->mapped && !ccc->cached) {
        entry = ll_xmalloc(ccc->run, sizeof *entry);
        *entry = (struct cache_entry){.ccc = ccc, .sc = sc, .cancelled = ll_chan_new(ccc->run, 0)};
        ccc->cached = entry;
        entry->timer_fired = true;  /* time.AfterFunc(1 ns, ...): it fires at once */
        ll_thread_start(ccc->run, &entry->timer, deletion_timer, entry);
    }
    pthread_mutex_unlock(&ccc->mu);
    return entry;
}

static int new_sub_conn(struct lb_cache *ccc)
{
    pthread_mutex_lock(&ccc->mu);
    struct cache_entry *entry = ccc->cached;
    int sc = 1;
    if (entry) {
        if (entry->timer_fired)     /* entry.cancel(): !timer.Stop() */
            entry->abort_deleting = true;
        ccc->cached = NULL;
        sc = entry->sc;
    } else {
        ccc->mapped = true;         /* subConnToAddr[1] = 1 */
    }
    pthread_mutex_unlock(&ccc->mu);
    return sc;
}

/* G2. */
static void *sub_conn_churn(void *arg)
{
    struct lb_cache *ccc = arg;
    int sc = 1;
    for (int i = 0; i < TURNS; i++) {
        struct cache_entry *entry = remove_sub_conn(ccc, sc);
        sc = new_sub_conn(ccc);
        if (entry) {
            ll_chan_close(entry->cancelled);   /* forced order: now the timer's function runs ... */
            pthread_join(entry->timer, NULL);  /* ... and returns (Go reclaims it, C joins it) */
            ll_chan_free(entry->cancelled);
            free(entry);
        }
    }
    ll_chan_close(ccc->done);
    return NULL;
}

/* G1. */
static LL_WAIT_SITE void *lb_cache_test(void *arg)
{
    struct lb_cache *ccc = arg;
    void *unused;
    new_sub_conn(ccc);
    ll_thread_start(ccc->run, &ccc->g2, sub_conn_churn, ccc);
    ll_chan_recv(ccc->done, &unused);          /* leaky: G2 never closes it */
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct lb_cache *ccc = new_lb_cache(run, false);
    ll_thread_start(run, &ccc->g1, lb_cache_test, ccc);
    ll_chan_await_parked(run, ccc->done, ccc->g1);
    ll_await_parked(run, ccc->g2, &ccc->mu, sizeof ccc->mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct lb_cache *ccc = new_lb_cache(run, true);
    ll_thread_start(run, &ccc->g1, lb_cache_test, ccc);
    LL_FIX(pthread_join(ccc->g1, NULL)); /* FIX: the timer unlocks, G2 finishes and closes done: join */
    LL_FIX(pthread_join(ccc->g2, NULL));
    LL_FIX(free_lb_cache(ccc));          /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "grpc3017",
    .summary = "GoKer grpc#3017 (missing unlock): the cache's deletion timer returns without unlocking\n"
               "when its deletion was aborted; the next RemoveSubConn and the test wait forever.",
    .leaky_summary = "a finished timer still holds ccc.mu: RemoveSubConn waits for it, the test waits on done",
    .fixed_summary = "the timer unlocks before returning: the churn finishes, done closes, all joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CACHE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
