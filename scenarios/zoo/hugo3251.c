/* hugo3251 - GoKer hugo#3251 (AB-BA, RWMutex and Mutex): URLLock takes the
 * per-URL mutex while it still holds the map's write lock; URLUnlock needs
 * the map's read lock to release the per-URL mutex.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/hugo3251.go; the fix: gohugoio/hugo, issue/pull 3251):
 *
 *     func (l *remoteLock) URLLock(url string) {
 *         l.Lock()                                  // L1 (RWMutex)
 *         if _, ok := l.m[url]; !ok { l.m[url] = &sync.Mutex{} }
 *         l.m[url].Lock()                           // L2: G2b waits here, holding L1
 *         runtime.Gosched()
 *         l.Unlock() }
 *     func (l *remoteLock) URLUnlock(url string) {
 *         l.RLock(); defer l.RUnlock()              // G2a waits here, holding L2
 *         if um, ok := l.m[url]; ok { um.Unlock() } }
 *     go func() {                                   // G1
 *         for range []bool{false, true} {
 *             var wg sync.WaitGroup
 *             for i := 0; i < 100; i++ { wg.Add(1)
 *                 go func() { defer wg.Done()       // G2
 *                     for j := 0; j < 200; j++ { resGetRemote(remoteURLLock, url) } }() }
 *             wg.Wait() } }()                       // G1 waits here
 *
 * G2a holds L2 and has released L1; G2b takes L1 and waits for L2; G2a's
 * URLUnlock waits for L1. Go's goroutineleak profile reports Hugo3251.func2
 * [sync.WaitGroup.Wait], Hugo3251.func2.1 [sync.Mutex.Lock] and
 * Hugo3251.func2.1 [sync.RWMutex.RLock] (flaky in Go: it needs that order).
 *
 * The C form: L1 is a writer-preferring pthread rwlock, L2 a malloc'ed
 * mutex in a one-entry map, the WaitGroup an ll_waitgroup. Two workers make
 * one call each (Go's 100 x 200 calls in 2 rounds only hunt the window,
 * which C forces): G2a holds L2 and has released L1, then waits until G2b
 * sleeps on L2 before its URLUnlock. The remote lock holds the fetched
 * resources (RESOURCES_BYTES, the payload). Main waits until all three
 * sleep and forgets the lock: only they reach it (orphaned).
 *
 * What the tools see: see expected/zoo/hugo3251.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix, in the kernel's terms (hugo's pull request was not read here):
 * URLLock releases L1 before it takes L2, so no thread waits for L2 while
 * holding L1.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { WORKERS = 2, RESOURCES_BYTES = 64 * 1024 }; /* the fetched resources: the payload of one instance */

struct remote_lock {
    ll_run *run;
    pthread_rwlock_t l1;            /* Go: the embedded sync.RWMutex */
    pthread_mutex_t *l2;            /* Go: m[url], made by the first URLLock */
    unsigned char *resources;
    ll_waitgroup wg;
    ll_chan *a_holds;               /* forced order: closed once G2a holds L2 and has released L1 */
    ll_chan *b_waits;               /* forced order: closed once G2b sleeps on L2 */
    ll_chan *started;               /* closed once G1 has started both workers (g2[] set) */
    bool fixed;
    pthread_t g1, g2[WORKERS];
};

struct worker { struct remote_lock *l; int id; };

__attribute__((noinline)) static struct remote_lock *new_remote_lock(ll_run *run, bool fixed)
{
    struct remote_lock *l = ll_xmalloc(run, sizeof *l);
    *l = (struct remote_lock){.run = run, .resources = ll_xmalloc(run, RESOURCES_BYTES),
                              .a_holds = ll_chan_new(run, 0), .b_waits = ll_chan_new(run, 0),
                              .started = ll_chan_new(run, 0), .fixed = fixed};
    memset(l->resources, 0x5a, RESOURCES_BYTES);
    ll_rwlock_init_writer_preferring(run, &l->l1); /* Go's preference, checked: exit 77 where not honoured */
    ll_waitgroup_init(&l->wg, run);
    return l;
}

static void free_remote_lock(struct remote_lock *l)
{
    pthread_rwlock_destroy(&l->l1);
    pthread_mutex_destroy(l->l2);
    free(l->l2);
    ll_waitgroup_destroy(&l->wg);
    ll_chan_free(l->a_holds);
    ll_chan_free(l->b_waits);
    ll_chan_free(l->started);
    free(l->resources);
    free(l);
}

static LL_WAIT_SITE void url_lock(struct remote_lock *l)
{
    pthread_rwlock_wrlock(&l->l1);
    if (!l->l2) {
        l->l2 = ll_xmalloc(l->run, sizeof *l->l2);
        pthread_mutex_init(l->l2, NULL);
    }
    pthread_mutex_t *l2 = l->l2;
    bool l1_first = l->fixed ? LL_FIX_VALUE(true, false) : false; /* FIX: let go of L1 before taking L2 */
    if (l1_first)
        pthread_rwlock_unlock(&l->l1);
    pthread_mutex_lock(l2);                    /* leaky: G2b waits here, holding L1 */
    if (!l1_first)
        pthread_rwlock_unlock(&l->l1);
}

static LL_WAIT_SITE void url_unlock(struct remote_lock *l)
{
    pthread_rwlock_rdlock(&l->l1);             /* leaky: G2a waits here, holding L2 */
    pthread_mutex_unlock(l->l2);
    pthread_rwlock_unlock(&l->l1);
}

/* G2: resGetRemote(remoteURLLock, url), once. */
static void *worker(void *arg)
{
    struct worker *w = arg;
    struct remote_lock *l = w->l;
    void *unused;
    if (w->id == 1)
        ll_chan_recv(l->a_holds, &unused);     /* forced order: G2b comes second */
    url_lock(l);
    if (w->id == 0) {
        ll_chan_close(l->a_holds);
        ll_chan_recv(l->b_waits, &unused);     /* forced order: G2b sleeps on L2 */
    }
    url_unlock(l);                             /* defer URLUnlock(url) */
    ll_waitgroup_done(&l->wg);
    free(w);
    return NULL;
}

/* G1. */
static LL_WAIT_SITE void *fetch_resources(void *arg)
{
    struct remote_lock *l = arg;
    for (int i = 0; i < WORKERS; i++) {
        struct worker *w = ll_xmalloc(l->run, sizeof *w);
        *w = (struct worker){.l = l, .id = i};
        ll_waitgroup_add(&l->wg, 1);
        ll_thread_start(l->run, &l->g2[i], worker, w);
    }
    ll_chan_close(l->started);
    ll_waitgroup_wait(&l->wg);                 /* leaky: the workers never finish */
    return NULL;
}

static struct remote_lock *start(ll_run *run, bool fixed)
{
    struct remote_lock *l = new_remote_lock(run, fixed);
    void *unused;
    ll_thread_start(run, &l->g1, fetch_resources, l);
    ll_chan_recv(l->started, &unused);         /* g2[] are set */
    ll_chan_recv(l->a_holds, &unused);         /* G2a holds L2 (l2 is made) */
    ll_await_parked(run, l->g2[1], l->l2, sizeof *l->l2);
    ll_chan_close(l->b_waits);
    return l;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct remote_lock *l = start(run, false);
    ll_await_parked(run, l->g2[0], &l->l1, sizeof l->l1);
    ll_await_parked(run, l->g1, &l->wg, sizeof l->wg);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct remote_lock *l = start(run, true);
    LL_FIX(pthread_join(l->g1, NULL));         /* FIX: both workers finish, so G1's Wait returns: join all */
    LL_FIX(pthread_join(l->g2[0], NULL));
    LL_FIX(pthread_join(l->g2[1], NULL));
    LL_FIX(free_remote_lock(l));               /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "hugo3251",
    .summary = "GoKer hugo#3251 (AB-BA): URLLock takes the per-URL mutex while holding the map's write\n"
               "lock; URLUnlock needs the map's read lock to release the per-URL mutex.",
    .leaky_summary = "one worker holds L2 and waits for L1, the other holds L1 and waits for L2; G1 waits for both",
    .fixed_summary = "URLLock releases L1 before taking L2: both workers finish, G1 returns, all joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RESOURCES_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
