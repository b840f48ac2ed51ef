/* kubernetes6632 - GoKer kubernetes#6632 (channel & lock): WriteFrame
 * sends on resetChan while it holds writeLock; monitor, told to close,
 * needs writeLock to close resetChan, and nobody else reads it.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes6632.go; the fix: kubernetes/kubernetes pull 6632):
 *
 *     func (i *idleAwareFramer) monitor() {          // G1
 *         select { case <-i.conn.closeChan:
 *             i.writeLock.Lock()                     // G1 waits here
 *             close(resetChan); i.resetChan = nil
 *             i.writeLock.Unlock() }
 *     }
 *     func (i *idleAwareFramer) WriteFrame() {       // G2
 *         i.writeLock.Lock(); defer i.writeLock.Unlock()
 *         if i.resetChan == nil { return }
 *         i.resetChan <- true                        // G2 waits here, unbuffered
 *     }
 *     go func() { i.conn.closeChan <- true }()       // helper
 *     go i.monitor(); go i.WriteFrame()
 *
 * G2 takes the lock and sends; the helper wakes G1, which waits for the
 * lock. Go's goroutineleak profile reports (*idleAwareFramer).monitor
 * [sync.Mutex.Lock] and (*idleAwareFramer).WriteFrame [chan send] (flaky
 * in Go: it needs WriteFrame to take the lock first, 4 runs in 100).
 *
 * The C form: writeLock is a pthread mutex, resetChan and closeChan
 * rendezvous ll_chans; the framer is malloc'ed with its frame buffer
 * (FRAME_BYTES, the payload). The order is forced, not hoped for: G1 is
 * parked on closeChan first, the helper is started only once G2 holds the
 * lock and is parked in its send. The helper's send completes (G1 took
 * it) and it is joined (Go reclaims it); G1 and G2 are left, each on what
 * only the other could release, holding the framer (orphaned).
 *
 * The fix (the pull request's, "create a goroutine to drain the
 * channel"): on close, monitor first starts a drainer that receives from
 * resetChan until it is closed, so the send under the lock completes.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { FRAME_BYTES = 64 * 1024 }; /* the framer's buffer: the payload of one instance */

struct framer {                     /* Go: idleAwareFramer and its Connection */
    ll_run *run;
    ll_chan *reset_chan;            /* Go: resetChan, unbuffered; NULL once closed */
    ll_chan *reset_chan_made;       /* the channel itself, to free it (Go's GC) */
    pthread_mutex_t write_lock;     /* Go: writeLock */
    ll_chan *close_chan;            /* Go: conn.closeChan */
    unsigned char *frame;
    bool fixed;
    pthread_t monitor, writer, helper, drainer;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct framer *new_idle_aware_framer(ll_run *run, bool fixed)
{
    struct framer *f = ll_xmalloc(run, sizeof *f);
    *f = (struct framer){.run = run, .reset_chan = ll_chan_new(run, 0), .close_chan = ll_chan_new(run, 0),
                         .frame = ll_xmalloc(run, FRAME_BYTES), .fixed = fixed};
    f->reset_chan_made = f->reset_chan;
    memset(f->frame, 0x5a, FRAME_BYTES);
    pthread_mutex_init(&f->write_lock, NULL);
    return f;
}

static void free_framer(struct framer *f)
{
    ll_chan_free(f->reset_chan_made);
    ll_chan_free(f->close_chan);
    pthread_mutex_destroy(&f->write_lock);
    free(f->frame);
    free(f);
}

/* The fix's drainer: go func() { for range resetChan {} }() */
static void *drain(void *arg)
{
    void *unused;
    while (ll_chan_recv(arg, &unused))
        ;
    return NULL;
}

/* G1. */
static LL_WAIT_SITE void monitor(struct framer *f)
{
    ll_chan *reset_chan = f->reset_chan;
    void *unused;
    ll_chan_recv(f->close_chan, &unused); /* case <-i.conn.closeChan: */
    if (f->fixed)
        LL_FIX(ll_thread_start(f->run, &f->drainer, drain, reset_chan)); /* FIX: drain resetChan first */
    pthread_mutex_lock(&f->write_lock);   /* leaky: G2 holds it, sending to nobody */
    ll_chan_close(reset_chan);
    f->reset_chan = NULL;
    pthread_mutex_unlock(&f->write_lock);
}

/* G2. */
static LL_WAIT_SITE void write_frame(struct framer *f)
{
    pthread_mutex_lock(&f->write_lock);
    if (f->reset_chan != NULL)
        ll_chan_send(f->reset_chan, f->frame); /* leaky: unbuffered, and monitor never reads it */
    pthread_mutex_unlock(&f->write_lock);
}

static void *monitor_thread(void *f) { monitor(f); return NULL; }
static void *write_frame_thread(void *f) { write_frame(f); return NULL; }
static void *helper(void *f) { ll_chan_send(((struct framer *)f)->close_chan, NULL); return NULL; }

static struct framer *start(ll_run *run, bool fixed)
{
    struct framer *f = new_idle_aware_framer(run, fixed);
    ll_thread_start(run, &f->monitor, monitor_thread, f);  /* go i.monitor() */
    ll_chan_await_parked(run, f->close_chan, f->monitor);  /* forced order: G1 waits for the close */
    ll_thread_start(run, &f->writer, write_frame_thread, f); /* go i.WriteFrame() */
    ll_chan_await_parked(run, f->reset_chan, f->writer);      /* forced order: G2 sends, holding the lock */
    ll_thread_start(run, &f->helper, helper, f);           /* go func() { i.conn.closeChan <- true }() */
    pthread_join(f->helper, NULL);                         /* G1 took it; Go reclaims the helper, C joins it */
    return f;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct framer *f = start(run, false);
    ll_await_parked(run, f->monitor, &f->write_lock, sizeof f->write_lock); /* G1 waits for G2's lock */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct framer *f = start(run, true);
    LL_FIX(pthread_join(f->monitor, NULL)); /* FIX: the drainer took G2's send: G2 unlocked, G1 closed */
    LL_FIX(pthread_join(f->writer, NULL));  /* resetChan, the drainer saw it closed: join all three */
    LL_FIX(pthread_join(f->drainer, NULL));
    LL_FIX(free_framer(f));                 /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes6632",
    .summary = "GoKer kubernetes#6632 (channel & lock): WriteFrame sends on resetChan holding\n"
               "writeLock; monitor, closing, waits for writeLock to close resetChan.",
    .leaky_summary = "nobody drains resetChan: WriteFrame and monitor wait forever, holding the framer",
    .fixed_summary = "monitor drains resetChan before taking the lock: all three finish, joined, the framer freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = FRAME_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
