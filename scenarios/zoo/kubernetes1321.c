/* kubernetes1321 - GoKer kubernetes#1321 (channel & lock): the mux's
 * distribute loop sends to a watcher under the mux lock; the watcher's
 * Stop, which would close that channel, needs the mux lock first.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes1321.go; the fix: kubernetes/kubernetes pull 1321):
 *
 *     func (m *Mux) distribute() {                // G2, go m.loop(): 100 times
 *         m.lock.Lock(); defer m.lock.Unlock()
 *         for _, w := range m.watchers { w.result <- struct{}{} }  // G2 waits here
 *     }
 *     func (m *Mux) stopWatching(id int64) {      // G1, via w.Stop()
 *         m.lock.Lock(); defer m.lock.Unlock()    // G1 waits here
 *         delete(m.watchers, id); close(w.result)
 *     }
 *     func testMuxWatcherClose() {                // G1
 *         m := NewMux()                           // go m.loop()
 *         m.watchers[m.Watch().id].Stop()
 *     }
 *
 * Go keeps this kernel in its folder but its test does not run it: "a race
 * condition in the original program that may, in extremely rare cases,
 * lead to nil pointer dereference crashes" (goroutineleakprofile_test.go).
 * The race is the kernel's own: its Watch adds to m.watchers without
 * m.lock while distribute ranges over it. The test's commented-out entry
 * expects NewMux.gowrap1 [chan send] and testMuxWatcherClose
 * [sync.Mutex.Lock].
 *
 * The C form: Watch adds its watcher under m.lock, as upstream's Watch did
 * (the race, not the leak, is what kept Go from running the kernel); the
 * mux lock is a pthread mutex, result a rendezvous ll_chan. The mux holds
 * the events it distributes (EVENTS_BYTES, the payload). The order is
 * forced, not hoped for: the loop's first distribute waits until Watch has
 * added the watcher (a gate where the kernel calls runtime.Gosched()), and
 * G1 calls Stop only once G2 is parked in its send, holding the lock. G1
 * and G2 are left, each waiting for the other, holding the mux (orphaned).
 *
 * The fix (the pull request's): each watcher gets a second channel,
 * stopped, that Stop closes before it takes the lock; distribute's send is
 * a select with it, so a stopping watcher releases the distributor.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    DISTRIBUTIONS = 100,            /* Go: for i := 0; i < 100; i++ { m.distribute() } */
    EVENTS_BYTES = 64 * 1024,       /* the events the mux distributes: the payload of one instance */
};

struct mux;

struct mux_watcher {
    ll_chan *result;                /* Go: result, unbuffered */
    ll_chan *stopped;               /* the fix's: closed by Stop, without the lock */
    struct mux *m;
};

struct mux {
    ll_run *run;
    pthread_mutex_t lock;           /* Go: m.lock */
    struct mux_watcher *watcher;    /* Go: m.watchers (one Watch: at most one) */
    struct mux_watcher made;        /* the watcher's storage, to free it (Go's GC) */
    unsigned char *events;
    bool fixed;
    ll_chan *watched;               /* forced order: closed once Watch has added the watcher */
    pthread_t tester, loop;         /* G1, G2 */
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct mux *new_mux_struct(ll_run *run, bool fixed)
{
    struct mux *m = ll_xmalloc(run, sizeof *m);
    *m = (struct mux){.run = run, .events = ll_xmalloc(run, EVENTS_BYTES), .fixed = fixed,
                      .watched = ll_chan_new(run, 0)};
    memset(m->events, 0x5a, EVENTS_BYTES);
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void free_mux(struct mux *m)
{
    ll_chan_free(m->made.result);
    ll_chan_free(m->made.stopped);
    ll_chan_free(m->watched);
    pthread_mutex_destroy(&m->lock);
    free(m->events);
    free(m);
}

/* G2: m.loop() -> m.distribute(). */
static LL_WAIT_SITE void distribute(struct mux *m)
{
    pthread_mutex_lock(&m->lock);
    struct mux_watcher *w = m->watcher;
    if (w != NULL) {
        if (m->fixed) {
            ll_select_case send_or_stopped[] = {{.chan = w->result, .send = true, .item = m->events},
                                                {.chan = LL_FIX_VALUE(w->stopped, NULL)}}; /* FIX: ...or Stop */
            ll_select(send_or_stopped, 2, false);
        } else {
            ll_chan_send(w->result, m->events); /* leaky: nobody reads; Stop waits for this lock */
        }
    }
    pthread_mutex_unlock(&m->lock);
}

static void *loop(void *arg)
{
    struct mux *m = arg;
    void *unused;
    ll_chan_recv(m->watched, &unused);       /* forced order: distribute once the watcher is there */
    for (int i = 0; i < DISTRIBUTIONS; i++)
        distribute(m);
    return NULL;
}

static struct mux_watcher *watch(struct mux *m)
{
    pthread_mutex_lock(&m->lock);            /* upstream's Watch locks; the kernel's races */
    m->made = (struct mux_watcher){.result = ll_chan_new(m->run, 0), .stopped = ll_chan_new(m->run, 0), .m = m};
    m->watcher = &m->made;
    pthread_mutex_unlock(&m->lock);
    return m->watcher;
}

static LL_WAIT_SITE void stop_watching(struct mux *m)
{
    pthread_mutex_lock(&m->lock);            /* leaky: G2 holds it, sending to this very watcher */
    struct mux_watcher *w = m->watcher;
    m->watcher = NULL;                       /* delete(m.watchers, id) */
    ll_chan_close(w->result);
    pthread_mutex_unlock(&m->lock);
}

static void watcher_stop(struct mux_watcher *w)
{
    if (w->m->fixed)
        LL_FIX(ll_chan_close(w->stopped));   /* FIX: release the distributor first, no lock needed */
    stop_watching(w->m);
}

/* G1: testMuxWatcherClose. */
static void *test_mux_watcher_close(void *arg)
{
    struct mux *m = arg;
    ll_thread_start(m->run, &m->loop, loop, m);    /* NewMux(): go m.loop() */
    struct mux_watcher *w = watch(m);
    ll_chan_close(m->watched);
    ll_chan_await_parked(m->run, w->result, m->loop); /* forced order: G2 sends, holding the lock */
    watcher_stop(w);                               /* m.watchers[id].Stop() */
    return NULL;
}

static struct mux *start(ll_run *run, bool fixed)
{
    struct mux *m = new_mux_struct(run, fixed);
    ll_thread_start(run, &m->tester, test_mux_watcher_close, m);
    void *unused;
    ll_chan_recv(m->watched, &unused);             /* G1 has started G2 and added the watcher */
    return m;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct mux *m = start(run, false);
    ll_await_parked(run, m->tester, &m->lock, sizeof m->lock); /* G1 waits for the lock ... */
    ll_chan_await_parked(run, m->made.result, m->loop);        /* ... that G2 holds, sending */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct mux *m = start(run, true);
    LL_FIX(pthread_join(m->tester, NULL));   /* FIX: stopped released G2's send: Stop gets the lock, */
    LL_FIX(pthread_join(m->loop, NULL));     /* the loop runs out of watchers: join both */
    LL_FIX(free_mux(m));                     /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes1321",
    .summary = "GoKer kubernetes#1321 (channel & lock): the mux's distribute sends to a watcher under\n"
               "the mux lock; the watcher's Stop, which would close that channel, waits for the lock.",
    .leaky_summary = "a plain send under the lock: distribute and Stop wait forever, holding the mux",
    .fixed_summary = "the send is a select with a stopped channel Stop closes first: both finish, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = EVENTS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
