/* kubernetes13135 - GoKer kubernetes#13135 (AB-BA): the Cacher's caching
 * loop holds the Cacher's lock while it takes the WatchCache's; an event
 * holds the WatchCache's while its callback takes the Cacher's.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes13135.go; the fix: kubernetes/kubernetes pull 13135,
 * "Fix deadlock in Cacher on etcd errors"):
 *
 *     func (c *Cacher) startCaching(stop) {      // G2, under Util's loop
 *         c.Lock()                               // A; not unlocked here:
 *         c.reflector.ListAndWatch(stop)         //  -> w.Replace(): w.Lock() [B]
 *     }                                          //     -> onReplace: initOnce(Done); c.Unlock()
 *     func (w *WatchCache) Add(obj) {            // G3
 *         w.Lock()                               // B
 *         w.onEvent()                            //  -> c.processEvent(): c.Lock() [A]
 *     }
 *     c := NewCacher(stop)   // G1: go Util(startCaching, 0, stop); initialized.Wait()
 *     go c.watchCache.Add(nil); go close(stop)
 *
 * The first pass initialises the cache and lets go of A; Util loops and
 * the second pass takes A again while G3 holds B. Go's goroutineleak
 * profile reports Util_kubernetes13135 [sync.Mutex.Lock] and
 * (*WatchCache).Add [sync.Mutex.Lock] (flaky in Go: 93 runs in 100).
 *
 * The C form: the Cacher's lock is a pthread mutex, the WatchCache's a
 * writer-preferring pthread rwlock taken for writing (Go's RWMutex.Lock),
 * initialized an ll_waitgroup; G1 is the caller itself (it returns, as in
 * Go). The Cacher is malloc'ed with its cache (CACHE_BYTES, the payload).
 * The window is forced, not hoped for: in the second pass a barrier,
 * where Go has its window, lets neither G2 nor G3 ask for its second lock
 * before both hold their first. The stop channel is closed once both wait
 * (Go's `go close(stop)`), too late for Util to see it. G2 and G3 are left,
 * each holding what the other waits for (orphaned).
 *
 * The fix (the pull request's): startCaching holds a mutex of its own,
 * `usable` (released by onReplace as A was), instead of the Cacher's lock,
 * so an event's callback never waits for the caching loop.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    WINDOW_PASS = 2,                /* the caching pass that meets the event */
    CACHE_BYTES = 64 * 1024,        /* the Cacher's cache: the payload of one instance */
};

struct cacher {
    pthread_mutex_t mu;             /* Go: Cacher's sync.Mutex, lock A */
    pthread_mutex_t usable;         /* the fix's own mutex for the caching loop */
    ll_waitgroup initialized;
    bool init_done;                 /* Go: initOnce; guarded by watch_cache */
    pthread_rwlock_t watch_cache;   /* Go: WatchCache's sync.RWMutex, lock B */
    unsigned char *cache;
    bool fixed;
    int pass;                       /* startCaching passes so far (G2 only) */
    ll_chan *stop;                  /* Go: StopChannel */
    pthread_barrier_t both_hold_first; /* the forced window */
    pthread_t caching, adder;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct cacher *new_cacher_struct(ll_run *run, bool fixed)
{
    struct cacher *c = ll_xmalloc(run, sizeof *c);
    *c = (struct cacher){.cache = ll_xmalloc(run, CACHE_BYTES), .fixed = fixed, .stop = ll_chan_new(run, 0)};
    memset(c->cache, 0x5a, CACHE_BYTES);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->usable, NULL);
    ll_waitgroup_init(&c->initialized, run);
    ll_rwlock_init_writer_preferring(run, &c->watch_cache); /* Go's preference, checked: exit 77 where not honoured */
    pthread_barrier_init(&c->both_hold_first, NULL, 2);
    return c;
}

static void free_cacher(struct cacher *c)
{
    pthread_barrier_destroy(&c->both_hold_first);
    pthread_rwlock_destroy(&c->watch_cache);
    ll_waitgroup_destroy(&c->initialized);
    pthread_mutex_destroy(&c->usable);
    pthread_mutex_destroy(&c->mu);
    ll_chan_free(c->stop);
    free(c->cache);
    free(c);
}

/* The lock startCaching holds until onReplace: A, or with the fix `usable`. */
static pthread_mutex_t *caching_lock(struct cacher *c)
{
    return c->fixed ? LL_FIX_VALUE(&c->usable, &c->mu) : &c->mu; /* FIX: a mutex of its own */
}

/* WatchCache.Replace, with the Cacher's onReplace callback. */
static void replace(struct cacher *c)
{
    pthread_rwlock_wrlock(&c->watch_cache);  /* B: leaky, G3 holds it */
    if (!c->init_done) {                     /* cacher.initOnce.Do(initialized.Done) */
        c->init_done = true;
        ll_waitgroup_done(&c->initialized);
    }
    pthread_mutex_unlock(caching_lock(c));   /* cacher.Unlock() */
    pthread_rwlock_unlock(&c->watch_cache);
}

static void start_caching(struct cacher *c)
{
    pthread_mutex_lock(caching_lock(c));     /* A, held until onReplace */
    if (++c->pass == WINDOW_PASS)
        pthread_barrier_wait(&c->both_hold_first);
    replace(c);                              /* reflector.ListAndWatch -> syncWith -> store.Replace */
}

/* G2: Util(startCaching, 0, stop). */
static LL_WAIT_SITE void util(struct cacher *c)
{
    for (;;) {
        ll_select_case stop = {.chan = c->stop};
        if (ll_select(&stop, 1, true) == 0) /* case <-stopCh: return; default: */
            return;
        start_caching(c);
    }
}

/* G3: WatchCache.Add, with the Cacher's onEvent callback. */
static LL_WAIT_SITE void watch_cache_add(struct cacher *c)
{
    pthread_rwlock_wrlock(&c->watch_cache);  /* B */
    pthread_barrier_wait(&c->both_hold_first);
    pthread_mutex_lock(&c->mu);              /* A: leaky, G2 holds it (cacher.processEvent) */
    pthread_mutex_unlock(&c->mu);
    pthread_rwlock_unlock(&c->watch_cache);
}

static void *util_thread(void *c) { util(c); return NULL; }
static void *add_thread(void *c) { watch_cache_add(c); return NULL; }

/* G1: NewCacher, then go c.watchCache.Add(nil). */
static struct cacher *start(ll_run *run, bool fixed)
{
    struct cacher *c = new_cacher_struct(run, fixed);
    ll_waitgroup_add(&c->initialized, 1);
    ll_thread_start(run, &c->caching, util_thread, c);
    ll_waitgroup_wait(&c->initialized);      /* the first pass has replaced the cache */
    ll_thread_start(run, &c->adder, add_thread, c);
    return c;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct cacher *c = start(run, false);
    ll_await_parked(run, c->caching, &c->watch_cache, sizeof c->watch_cache); /* G2 waits for B */
    ll_await_parked(run, c->adder, &c->mu, sizeof c->mu);                     /* G3 waits for A */
    ll_chan_close(c->stop);                  /* go close(stop): too late, nobody looks */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct cacher *c = start(run, true);
    LL_FIX(pthread_join(c->adder, NULL));    /* FIX: A is free, so the event completes: join it */
    ll_chan_close(c->stop);                  /* go close(stop) */
    LL_FIX(pthread_join(c->caching, NULL));  /* FIX: the loop sees stop and returns: join it */
    LL_FIX(free_cacher(c));                  /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes13135",
    .summary = "GoKer kubernetes#13135 (AB-BA): the Cacher's caching loop holds the Cacher's lock\n"
               "while it takes the WatchCache's; an event holds the WatchCache's and takes the Cacher's.",
    .leaky_summary = "startCaching holds the Cacher's lock: the loop and the event deadlock, holding the Cacher",
    .fixed_summary = "startCaching holds a mutex of its own: the event completes, the loop stops, all freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CACHE_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
