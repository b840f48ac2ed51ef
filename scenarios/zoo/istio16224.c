/* istio16224 - GoKer istio#16224 (channel & lock): the test's event handler
 * sends on done while holding the test's lock; the test takes that lock
 * before it receives from done.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/istio16224.go; the fix: istio/istio pull 16224, "Fix memory
 * monitor test deadlock"):
 *
 *     func (m *configstoreMonitor) Run(stop <-chan struct{}) {   // G2
 *         for { select {
 *               case <-stop:
 *                   if _, ok := <-m.eventCh; ok { close(m.eventCh) }   // blocks too: see below
 *                   return
 *               case ce, ok := <-m.eventCh:
 *                   if ok { m.processConfigEvent(ce) } } } }          // -> the handler
 *     go func() {                                                 // G1
 *         controller.RegisterEventHandler(func(event) {
 *             lock.Lock(); defer lock.Unlock()
 *             done <- true })                                     // G2 waits here, holding lock
 *         go controller.Run(stop)
 *         controller.Create()                                     // m.eventCh <- event
 *         lock.Lock(); lock.Unlock()                              // G1 waits here
 *         <-done
 *         close(stop) }()
 *
 * Go's goroutineleak profile reports Istio16224.func2 [sync.Mutex.Lock]
 * and (*controller).Run in [chan send] or, when G1 wins the lock, in
 * [chan receive] (the receive after stop; flaky in Go: either order leaks).
 *
 * The C form: eventCh, done and stop are rendezvous ll_chans, the lock a
 * mutex, the monitor malloc'ed with the config store it watches
 * (CONFIG_BYTES, the payload). The order is forced: G1 takes the lock only
 * once the handler sleeps in its send. Main waits until G1 sleeps on the
 * lock and forgets the monitor: only G1 and G2 reach it (orphaned).
 *
 * What the tools see: see expected/zoo/istio16224.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the pull request's): the handler releases the lock before it
 * sends on done. Upstream left Run's receive after stop alone (the GoKer
 * kernel calls it "not described, but a true positive"): with the lock
 * fixed, G1 closes stop and that receive would still wait forever, so the
 * kernel's fix also makes it a select with a default. That second part is
 * the kernel's, not the pull request's.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { CONFIG_BYTES = 64 * 1024 }; /* the watched config store: the payload of one instance */

struct monitor {
    ll_run *run;
    ll_chan *event_ch;              /* Go: eventCh, unbuffered */
    ll_chan *done, *stop;
    pthread_mutex_t lock;           /* the test's lock */
    unsigned char *configs;
    bool fixed;
    pthread_t g1, g2;
};

__attribute__((noinline)) static struct monitor *new_monitor(ll_run *run, bool fixed)
{
    struct monitor *m = ll_xmalloc(run, sizeof *m);
    *m = (struct monitor){.run = run, .event_ch = ll_chan_new(run, 0), .done = ll_chan_new(run, 0),
                          .stop = ll_chan_new(run, 0), .configs = ll_xmalloc(run, CONFIG_BYTES), .fixed = fixed};
    memset(m->configs, 0x5a, CONFIG_BYTES);
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void free_monitor(struct monitor *m)
{
    ll_chan_free(m->event_ch);
    ll_chan_free(m->done);
    ll_chan_free(m->stop);
    pthread_mutex_destroy(&m->lock);
    free(m->configs);
    free(m);
}

/* The test's handler, applied by processConfigEvent. */
static LL_WAIT_SITE void event_handler(struct monitor *m)
{
    static char yes;
    pthread_mutex_lock(&m->lock);
    if (m->fixed) {
        LL_FIX(pthread_mutex_unlock(&m->lock)); /* FIX: release the lock before sending on done */
        ll_chan_send(m->done, &yes);
        return;
    }
    ll_chan_send(m->done, &yes);    /* leaky: G1 waits for the lock before it receives */
    pthread_mutex_unlock(&m->lock);
}

/* G2: controller.Run(stop) -> monitor.Run(stop). */
static void *monitor_run(void *arg)
{
    struct monitor *m = arg;
    for (;;) {
        ll_select_case cases[] = {{.chan = m->stop}, {.chan = m->event_ch}};
        if (ll_select(cases, 2, false) == 0) {
            ll_select_case drain = {.chan = m->event_ch};
            bool nonblocking = m->fixed ? LL_FIX_VALUE(true, false) : false; /* FIX (the kernel's): don't wait */
            if (ll_select(&drain, 1, nonblocking) == 0 && drain.ok)
                ll_chan_close(m->event_ch);
            return NULL;
        }
        if (cases[1].ok)
            event_handler(m);
    }
}

/* G1. */
static LL_WAIT_SITE void *monitor_test(void *arg)
{
    static char event;
    struct monitor *m = arg;
    void *unused;
    ll_thread_start(m->run, &m->g2, monitor_run, m); /* go controller.Run(stop) */
    ll_chan_send(m->event_ch, &event);               /* controller.Create() */
    ll_chan_await_parked(m->run, m->done, m->g2);    /* forced order: the handler holds the lock */
    pthread_mutex_lock(&m->lock);                    /* leaky: G1 waits here */
    pthread_mutex_unlock(&m->lock);
    ll_chan_recv(m->done, &unused);
    ll_chan_close(m->stop);
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct monitor *m = new_monitor(run, false);
    ll_thread_start(run, &m->g1, monitor_test, m);
    ll_await_parked(run, m->g1, &m->lock, sizeof m->lock);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct monitor *m = new_monitor(run, true);
    ll_thread_start(run, &m->g1, monitor_test, m);
    LL_FIX(pthread_join(m->g1, NULL)); /* FIX: done is received and stop closed: join G1 ... */
    LL_FIX(pthread_join(m->g2, NULL)); /* ... and Run, which returns on stop */
    LL_FIX(free_monitor(m));           /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "istio16224",
    .summary = "GoKer istio#16224 (channel & lock): the test's event handler sends on done while holding\n"
               "the test's lock; the test takes that lock before it receives from done.",
    .leaky_summary = "the handler sends on done holding the lock, the test waits for the lock: both forever",
    .fixed_summary = "the handler unlocks before sending: the test receives and stops Run, both joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CONFIG_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
