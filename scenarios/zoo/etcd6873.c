/* etcd6873 - GoKer etcd#6873 (channel & lock): stop() holds the mutex while
 * it waits for the coalescing goroutine to finish, and that goroutine needs
 * the mutex to finish its last update.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/etcd6873.go; the fix: etcd-io/etcd commit 7618fdd):
 *
 *     func newWatchBroadcasts() *watchBroadcasts {
 *         wbs := &watchBroadcasts{updatec: make(chan *watchBroadcast, 1), donec: make(chan struct{})}
 *         go func() {                              // G2
 *             defer close(wbs.donec)
 *             for wb := range wbs.updatec { wbs.coalesce(wb) }   // coalesce: mu.Lock(); mu.Unlock()
 *         }()
 *         return wbs }
 *     func (wbs *watchBroadcasts) stop() {         // G3
 *         wbs.mu.Lock(); defer wbs.mu.Unlock()
 *         close(wbs.updatec)
 *         <-wbs.donec }                            // G3 waits here, holding mu
 *     wbs := newWatchBroadcasts()                  // G1
 *     wbs.update(&watchBroadcast{})                // select { case updatec <- wb: default: }
 *     go wbs.stop()
 *
 * In the bad order G3 locks mu before G2 coalesces the update: G2 waits for
 * mu, G3 for donec. Go's goroutineleak profile reports (*watchBroadcasts).stop
 * [chan receive] and newWatchBroadcasts.func1 [sync.Mutex.Lock] (flaky in Go:
 * it needs that order).
 *
 * The C form: updatec is an ll_chan of capacity 1 (a closed channel still
 * delivers what it buffers, as Go's), donec an ll_chan, mu a mutex, the
 * broadcasts malloc'ed with the watchers' state (WATCHERS_BYTES, the
 * payload). The order is forced: G2 takes its first update only once G3 is
 * asleep on donec, holding mu. G1 is main. Main waits until G2 sleeps on mu
 * and forgets the broadcasts: only G2 and G3 reach them (orphaned).
 *
 * What the tools see: see expected/zoo/etcd6873.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the commit's): stop() unlocks mu before it waits on donec.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { WATCHERS_BYTES = 64 * 1024 }; /* the watchers' state: the payload of one instance */

struct watch_broadcasts {
    pthread_mutex_t mu;
    ll_chan *updatec;               /* capacity 1 */
    ll_chan *donec;
    ll_chan *stop_waits;            /* forced order: closed once G3 sleeps on donec, holding mu */
    unsigned char *watchers;
    pthread_t g2, g3;
};

__attribute__((noinline)) static struct watch_broadcasts *new_broadcasts(ll_run *run)
{
    struct watch_broadcasts *wbs = ll_xmalloc(run, sizeof *wbs);
    *wbs = (struct watch_broadcasts){.updatec = ll_chan_new(run, 1), .donec = ll_chan_new(run, 0),
                                     .stop_waits = ll_chan_new(run, 0),
                                     .watchers = ll_xmalloc(run, WATCHERS_BYTES)};
    memset(wbs->watchers, 0x5a, WATCHERS_BYTES);
    pthread_mutex_init(&wbs->mu, NULL);
    return wbs;
}

static void free_broadcasts(struct watch_broadcasts *wbs)
{
    pthread_mutex_destroy(&wbs->mu);
    ll_chan_free(wbs->updatec);
    ll_chan_free(wbs->donec);
    ll_chan_free(wbs->stop_waits);
    free(wbs->watchers);
    free(wbs);
}

static LL_WAIT_SITE void coalesce(struct watch_broadcasts *wbs)
{
    pthread_mutex_lock(&wbs->mu); /* leaky: G3 holds it while it waits for G2 */
    pthread_mutex_unlock(&wbs->mu);
}

/* G2. */
static void *coalescer(void *arg)
{
    struct watch_broadcasts *wbs = arg;
    void *wb;
    ll_chan_recv(wbs->stop_waits, &wb); /* forced order */
    while (ll_chan_recv(wbs->updatec, &wb)) /* for wb := range wbs.updatec */
        coalesce(wbs);
    ll_chan_close(wbs->donec);              /* defer close(wbs.donec) */
    return NULL;
}

/* G3. */
static LL_WAIT_SITE void watch_broadcasts_stop(struct watch_broadcasts *wbs, bool fixed)
{
    void *unused;
    pthread_mutex_lock(&wbs->mu);
    ll_chan_close(wbs->updatec);
    if (fixed) {
        LL_FIX(pthread_mutex_unlock(&wbs->mu)); /* FIX: let go of mu before waiting for G2 */
        ll_chan_recv(wbs->donec, &unused);
        return;
    }
    ll_chan_recv(wbs->donec, &unused); /* leaky: waits for G2, which waits for mu */
    pthread_mutex_unlock(&wbs->mu);
}

static void *stop_leaky(void *wbs) { watch_broadcasts_stop(wbs, false); return NULL; }
static void *stop_fixed(void *wbs) { watch_broadcasts_stop(wbs, true); return NULL; }

/* G1: newWatchBroadcasts(), update(), go stop(). */
static struct watch_broadcasts *start(ll_run *run, void *(*stop)(void *))
{
    static char wb;
    struct watch_broadcasts *wbs = new_broadcasts(run);
    ll_thread_start(run, &wbs->g2, coalescer, wbs);
    ll_select_case update = {.chan = wbs->updatec, .send = true, .item = &wb};
    ll_select(&update, 1, true); /* wbs.update(wb): the buffer is empty, so it is sent */
    ll_thread_start(run, &wbs->g3, stop, wbs);
    ll_chan_await_parked(run, wbs->donec, wbs->g3);
    ll_chan_close(wbs->stop_waits);
    return wbs;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct watch_broadcasts *wbs = start(run, stop_leaky);
    ll_await_parked(run, wbs->g2, &wbs->mu, sizeof wbs->mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct watch_broadcasts *wbs = start(run, stop_fixed);
    LL_FIX(pthread_join(wbs->g2, NULL)); /* FIX: G2 coalesces and closes donec: join it ... */
    LL_FIX(pthread_join(wbs->g3, NULL)); /* ... and stop() */
    LL_FIX(free_broadcasts(wbs));        /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "etcd6873",
    .summary = "GoKer etcd#6873 (channel & lock): stop() holds mu while it waits for the coalescing\n"
               "goroutine to finish, and that goroutine needs mu for its last update.",
    .leaky_summary = "stop() waits on donec holding mu, the coalescer waits for mu: both forever",
    .fixed_summary = "stop() unlocks before it waits: the coalescer finishes, both joined, the watchers freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = WATCHERS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
