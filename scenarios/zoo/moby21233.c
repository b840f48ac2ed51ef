/* moby21233 - GoKer moby#21233 (channel): a transfer test's progress
 * consumer returns early (t.Fatalf in the original test); the transfers'
 * watchers block sending progress nobody reads, and the test, releasing a
 * watcher, waits for it to stop running.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby21233.go; upstream: moby/moby pull 21233):
 *
 *     func (t *Transfer) Watch(progressOutput Output) *Watcher {
 *         go func() {                                    // G2, one per transfer
 *             defer close(w.running)
 *             for {
 *                 t.mu.Lock(); t.mu.Unlock()
 *                 if rand.Int31n(2) >= 1 { progressOutput.WriteProgress(p) }  // chan send: G2 waits here
 *                 if done { return }
 *                 select { case <-w.signalChan: case <-w.releaseChan: done = true }
 *             }
 *         }()
 *     }
 *     func testTransfer() {                              // G1
 *         go func() { for p := range progressChan { if rand.Int31n(2) >= 1 { return } } // G3
 *                     close(progressDone) }()
 *         for i := range ids { xrefs[i], watchers[i] = tm.Transfer(ChanOutput(progressChan)) }
 *         for i := range xrefs { xrefs[i].Release(watchers[i]) }  // close(releaseChan); <-running: G1 waits
 *         close(progressChan); <-progressDone
 *     }
 *
 * Go's goroutineleak profile reports (*Transfer).Watch.func1 [chan send] or
 * [select], and testTransfer [chan receive] (flaky in Go: which watchers
 * are where depends on the coins and the sleeps).
 *
 * The C form: progressChan, releaseChan, running and signalChan are
 * rendezvous ll_chans, the locks pthread mutexes; the test is malloc'ed
 * with its progress state (PROGRESS_BYTES, the payload: 120 KiB, as each
 * call keeps four threads and a dozen channels, about 10 KiB of
 * bookkeeping, more than the truth's 10 % allowance of a 64 KiB payload;
 * under glibc's 128 KiB mmap threshold, so it is not rounded to pages). The coins are
 * fixed: a watcher writes progress on every pass, the consumer returns
 * after the first update. The order is forced, not hoped for: the consumer
 * reads only once the first watcher is parked in its send, and the next
 * transfers start once that update is taken (Go's sleeps). All three
 * watchers end blocked in their send, the test on the first watcher's
 * running channel; the consumer returned and is joined (Go reclaims it).
 * Nothing that can run reaches the progress channel (orphaned).
 *
 * The fix: the port follows the GoKer description of the upstream change
 * (the consumer must not stop consuming: the original test's t.Fatalf
 * ended the only reader): the consumer drains progressChan until it is
 * closed.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    TRANSFERS = 3,                  /* Go: ids := []string{"id1", "id2", "id3"} */
    PROGRESS_BYTES = 120 * 1024,    /* the test's progress state: the payload of one instance (see below) */
};

struct transfer_test;

struct watcher {                    /* Go: Transfer and its Watcher */
    struct transfer_test *tt;
    pthread_mutex_t mu;             /* Go: Transfer.mu */
    ll_chan *signal_chan, *release_chan, *running;
    pthread_t thread;               /* G2 */
};

struct transfer_test {
    ll_run *run;
    pthread_mutex_t tm_mu;          /* Go: TransferManager.mu */
    ll_chan *progress_chan;         /* Go: progressChan, unbuffered */
    ll_chan *progress_done;
    unsigned char *progress;
    bool fixed;
    ll_chan *first_parked;          /* forced order: closed once the first watcher waits to send */
    ll_chan *transferred;           /* closed once G1 has started every transfer */
    struct watcher watchers[TRANSFERS];
    pthread_t tester, consumer;     /* G1, G3 */
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct transfer_test *new_transfer_test(ll_run *run, bool fixed)
{
    struct transfer_test *tt = ll_xmalloc(run, sizeof *tt);
    *tt = (struct transfer_test){.run = run, .progress_chan = ll_chan_new(run, 0),
                                 .progress_done = ll_chan_new(run, 0), .progress = ll_xmalloc(run, PROGRESS_BYTES),
                                 .fixed = fixed, .first_parked = ll_chan_new(run, 0),
                                 .transferred = ll_chan_new(run, 0)};
    memset(tt->progress, 0x5a, PROGRESS_BYTES);
    pthread_mutex_init(&tt->tm_mu, NULL);
    return tt;
}

static void free_transfer_test(struct transfer_test *tt)
{
    for (int i = 0; i < TRANSFERS; i++) {
        struct watcher *w = &tt->watchers[i];
        pthread_mutex_destroy(&w->mu);
        ll_chan_free(w->signal_chan);
        ll_chan_free(w->release_chan);
        ll_chan_free(w->running);
    }
    pthread_mutex_destroy(&tt->tm_mu);
    ll_chan_free(tt->progress_chan);
    ll_chan_free(tt->progress_done);
    ll_chan_free(tt->first_parked);
    ll_chan_free(tt->transferred);
    free(tt->progress);
    free(tt);
}

/* G2: Watch's goroutine. */
static LL_WAIT_SITE void watch_loop(struct watcher *w)
{
    bool done = false;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        pthread_mutex_unlock(&w->mu);
        if (!ll_chan_send(w->tt->progress_chan, w->tt->progress)) /* WriteProgress: leaky, no reader left */
            break;
        if (done)
            break;
        ll_select_case cases[] = {{.chan = w->signal_chan}, {.chan = w->release_chan}};
        if (ll_select(cases, 2, false) == 1)
            done = true;
    }
    ll_chan_close(w->running);               /* defer close(w.running) */
}

static void *watch_thread(void *w) { watch_loop(w); return NULL; }

/* G3: the progress consumer. */
static void *consume(void *arg)
{
    struct transfer_test *tt = arg;
    void *p;
    ll_chan_recv(tt->first_parked, &p);      /* forced order: Go's time.Sleep(1ms) */
    bool returns_early = tt->fixed ? LL_FIX_VALUE(false, true) : true; /* FIX: keep consuming */
    while (ll_chan_recv(tt->progress_chan, &p))
        if (returns_early)                   /* Go: rand.Int31n(2) >= 1 (the test's t.Fatalf) */
            return NULL;
    ll_chan_close(tt->progress_done);
    return NULL;
}

static struct watcher *transfer(struct transfer_test *tt, int i) /* tm.Transfer -> t.Watch */
{
    struct watcher *w = &tt->watchers[i];
    pthread_mutex_lock(&tt->tm_mu);
    *w = (struct watcher){.tt = tt, .signal_chan = ll_chan_new(tt->run, 0),
                          .release_chan = ll_chan_new(tt->run, 0), .running = ll_chan_new(tt->run, 0)};
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_lock(&w->mu);
    ll_thread_start(tt->run, &w->thread, watch_thread, w);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_unlock(&tt->tm_mu);
    return w;
}

static void release(struct watcher *w)
{
    pthread_mutex_lock(&w->mu);
    pthread_mutex_unlock(&w->mu);
    ll_chan_close(w->release_chan);
    void *unused;
    ll_chan_recv(w->running, &unused);       /* leaky: the watcher is stuck in its send */
}

/* G1. */
static LL_WAIT_SITE void test_transfer(struct transfer_test *tt)
{
    ll_thread_start(tt->run, &tt->consumer, consume, tt);
    for (int i = 0; i < TRANSFERS; i++) {
        struct watcher *w = transfer(tt, i);
        if (i == 0) {                        /* forced order: the consumer takes the first update */
            ll_chan_await_parked(tt->run, tt->progress_chan, w->thread);
            ll_chan_close(tt->first_parked);
            ll_chan_await_parked(tt->run, w->release_chan, w->thread);
        }
    }
    ll_chan_close(tt->transferred);
    for (int i = 0; i < TRANSFERS; i++)
        release(&tt->watchers[i]);
    ll_chan_close(tt->progress_chan);
    void *unused;
    ll_chan_recv(tt->progress_done, &unused);
}

static void *tester(void *tt) { test_transfer(tt); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct transfer_test *tt = new_transfer_test(run, false);
    ll_thread_start(run, &tt->tester, tester, tt);
    void *unused;
    ll_chan_recv(tt->transferred, &unused);
    pthread_join(tt->consumer, NULL);        /* it returned early; Go reclaims it, C joins it */
    ll_chan_free(tt->first_parked);          /* the gates are done with (G1 is past them) */
    ll_chan_free(tt->transferred);
    for (int i = 0; i < TRANSFERS; i++)      /* every watcher sends to nobody */
        ll_chan_await_parked(run, tt->progress_chan, tt->watchers[i].thread);
    ll_chan_await_parked(run, tt->watchers[0].running, tt->tester); /* the test waits for the first */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct transfer_test *tt = new_transfer_test(run, true);
    ll_thread_start(run, &tt->tester, tester, tt);
    LL_FIX(pthread_join(tt->tester, NULL));  /* FIX: every update is read: each watcher stops when */
    LL_FIX(pthread_join(tt->consumer, NULL)); /* released, the test returns: join them all */
    LL_FIX(for (int i = 0; i < TRANSFERS; i++) pthread_join(tt->watchers[i].thread, NULL));
    LL_FIX(free_transfer_test(tt));          /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby21233",
    .summary = "GoKer moby#21233 (channel): a transfer test's progress consumer returns early; the\n"
               "watchers block sending progress, and the test waits for a released watcher to stop.",
    .leaky_summary = "the consumer returns after one update: three watchers and the test wait forever",
    .fixed_summary = "the consumer drains until close: the watchers stop, the test returns, all joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = PROGRESS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
