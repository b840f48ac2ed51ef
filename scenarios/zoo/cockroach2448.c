/* cockroach2448 - GoKer cockroach#2448 (channel): the raft state loop blocks
 * sending an event to the store while the store, handling the previous
 * event, blocks sending a callback to the state loop.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach2448.go; the fix: cockroachdb/cockroach pull 2448, "try to
 * resolve the deadlock between multiraft eventsChan and callbackChan"):
 *
 *     func (s *state) start() {                      // G2
 *         for { select {
 *               case <-s.stopper.ShouldStop(): return
 *               case cb := <-s.callbackChan: cb()
 *               default: s.handleWriteResponse()     // -> sendEvent: G2 waits here
 *                        time.Sleep(100 * time.Microsecond) } } }
 *     func (m *MultiRaft) sendEvent(event) {
 *         select { case m.Events <- event: case <-m.stopper.ShouldStop(): } }
 *     // the event's Callback: select { case s.callbackChan <- func(){}: case <-ShouldStop(): }
 *     func (s *Store) processRaft() {                // G1
 *         for { select {
 *               case e := <-s.multiraft.Events:
 *                   callback := e.Callback; runtime.Gosched()
 *                   callback()                       // G1 waits here
 *               case <-s.multiraft.stopper.ShouldStop(): return } } }
 *     go s.processRaft(); go st.start()
 *
 * Events and callbackChan are unbuffered. Go's goroutineleak profile
 * reports (*Store).processRaft [select] and (*state).start [select]
 * (flaky in Go: G2 must send its next event inside G1's window).
 *
 * The C form: Events, callbackChan and the stopper's Done are rendezvous
 * ll_chans, the selects ll_select. Each event is malloc'ed; the multiraft
 * holds its raft groups' state (RAFT_BYTES, the payload). The order is
 * forced where Go yields: G1, holding the first event, runs its callback
 * only once G2 sleeps sending the second. Main waits until both sleep and
 * forgets the multiraft: nobody will stop it, and only G1 and G2 reach it
 * (orphaned). The endless write responses of the kernel (one per 100 us)
 * are two here: the second is the one that blocks.
 *
 * What the tools see: see expected/zoo/cockroach2448.toml (native only so
 * far: the truth, checked on every run).
 *
 * The fix (the pull request's, in the kernel's terms): the state loop no
 * longer sends events from a blocking select of their own; it queues them
 * and offers the oldest as one more case of its main select, beside
 * callbackChan, so it always takes the store's callbacks.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { RESPONSES = 2, RAFT_BYTES = 64 * 1024 }; /* the raft groups' state: the payload of one instance */

struct multiraft {
    ll_run *run;
    ll_chan *stopper;               /* Go: stopper.Done, closed by Stop */
    ll_chan *events;                /* Go: Events, unbuffered */
    ll_chan *callback_chan;         /* unbuffered */
    unsigned char *groups;
    ll_chan *first_sent;            /* forced order: closed once the first event has left G2 */
    ll_chan *g1_window;             /* forced order: G1's Gosched ends when main closes it */
    ll_chan *callbacks_done;        /* closed by G1 once every event's callback was taken (fixed) */
    bool fixed;
    pthread_t g1, g2;
};

struct event { struct multiraft *m; };  /* EventMembershipChangeCommitted; its Callback is event_callback */

__attribute__((noinline)) static struct multiraft *new_multiraft(ll_run *run, bool fixed)
{
    struct multiraft *m = ll_xmalloc(run, sizeof *m);
    *m = (struct multiraft){.run = run, .stopper = ll_chan_new(run, 0), .events = ll_chan_new(run, 0),
                            .callback_chan = ll_chan_new(run, 0), .groups = ll_xmalloc(run, RAFT_BYTES),
                            .first_sent = ll_chan_new(run, 0), .g1_window = ll_chan_new(run, 0),
                            .callbacks_done = ll_chan_new(run, 0), .fixed = fixed};
    memset(m->groups, 0x5a, RAFT_BYTES);
    return m;
}

static void free_multiraft(struct multiraft *m)
{
    ll_chan *chans[] = {m->stopper, m->events, m->callback_chan, m->first_sent, m->g1_window, m->callbacks_done};
    for (size_t i = 0; i < sizeof chans / sizeof chans[0]; i++)
        ll_chan_free(chans[i]);
    free(m->groups);
    free(m);
}

static void noop_callback(void) {}     /* func() { time.Sleep(time.Nanosecond) } */

/* The event's Callback: hand the state loop a function to run. */
static void event_callback(struct event *e)
{
    ll_select_case cases[] = {{.chan = e->m->callback_chan, .send = true, .item = (void *)noop_callback},
                              {.chan = e->m->stopper}};
    ll_select(cases, 2, false);         /* leaky: G2 is not listening: G1 waits here */
}

/* G1: Store.processRaft(). */
static LL_WAIT_SITE void *process_raft(void *arg)
{
    struct multiraft *m = arg;
    void *unused;
    for (int handled = 0;;) {
        ll_select_case cases[] = {{.chan = m->events}, {.chan = m->stopper}};
        if (ll_select(cases, 2, false) == 1)
            return NULL;
        struct event *e = cases[0].item;
        ll_chan_recv(m->g1_window, &unused); /* forced order, where Go has runtime.Gosched() */
        event_callback(e);
        free(e);
        if (++handled == RESPONSES)
            ll_chan_close(m->callbacks_done);
    }
}

static struct event *handle_write_response(struct multiraft *m)
{
    struct event *e = ll_xmalloc(m->run, sizeof *e);
    e->m = m;
    return e;
}

/* G2, leaky: sendEvent blocks in a select of its own. */
static LL_WAIT_SITE void state_start(struct multiraft *m)
{
    int responses = RESPONSES;
    for (bool sent = false;;) {
        ll_select_case cases[] = {{.chan = m->stopper}, {.chan = m->callback_chan}};
        int i = ll_select(cases, 2, responses > 0); /* default: while there are write responses */
        if (i == 0)
            return;
        if (i == 1) {
            ((void (*)(void))cases[1].item)();
            continue;
        }
        responses--;
        struct event *e = handle_write_response(m);
        ll_select_case send[] = {{.chan = m->events, .send = true, .item = e}, {.chan = m->stopper}};
        if (ll_select(send, 2, false) != 0 || !send[0].ok) /* sendEvent: G2 waits here, the second time */
            free(e);
        if (!sent) {
            sent = true;
            ll_chan_close(m->first_sent);
        }
    }
}

/* G2, fixed: events wait in a queue and leave through the main select. */
static void state_start_fixed(struct multiraft *m)
{
    struct event *pending[RESPONSES];
    int queued = 0, responses = RESPONSES;
    for (bool sent = false;;) {
        ll_select_case cases[] = {{.chan = m->stopper}, {.chan = m->callback_chan},
                                  {.chan = queued ? m->events : NULL, .send = true, .item = queued ? pending[0] : NULL}};
        int i = ll_select(cases, 3, responses > 0);
        if (i == 0) {
            while (queued)
                free(pending[--queued]);
            return;
        }
        if (i == 1) {
            ((void (*)(void))cases[1].item)();
        } else if (i == 2) {            /* the oldest event left */
            memmove(pending, pending + 1, --queued * sizeof pending[0]);
            if (!sent) {
                sent = true;
                ll_chan_close(m->first_sent);
            }
        } else {
            responses--;
            pending[queued++] = handle_write_response(m);
        }
    }
}

static void *g2_leaky(void *m) { state_start(m); return NULL; }
static void *g2_fixed(void *m)
{
    struct multiraft *mr = m;
    if (LL_FIX_VALUE(true, false)) /* FIX: the queueing state loop */
        state_start_fixed(mr);
    else
        state_start(mr);
    return NULL;
}

static struct multiraft *start(ll_run *run, bool fixed)
{
    struct multiraft *m = new_multiraft(run, fixed);
    void *unused;
    ll_thread_start(run, &m->g1, process_raft, m);
    ll_thread_start(run, &m->g2, fixed ? g2_fixed : g2_leaky, m);
    ll_chan_recv(m->first_sent, &unused);     /* G1 holds the first event ... */
    ll_chan_await_parked(run, m->events, m->g2); /* ... and G2 offers the second */
    ll_chan_close(m->g1_window);
    return m;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct multiraft *m = start(run, false);
    ll_chan_await_parked(run, m->callback_chan, m->g1);
    ll_chan_free(m->first_sent);           /* the forced order's gates are done with (and no part */
    ll_chan_free(m->g1_window);            /* of the kernel): G1 and G2 will not touch them again */
    ll_chan_free(m->callbacks_done);
    m->first_sent = m->g1_window = m->callbacks_done = NULL;
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct multiraft *m = start(run, true);
    void *unused;
    LL_FIX(ll_chan_recv(m->callbacks_done, &unused)); /* FIX: every callback is taken (both events handled) */
    LL_FIX(ll_chan_close(m->stopper));     /* FIX: then stop: both loops return: join them */
    LL_FIX(pthread_join(m->g1, NULL));
    LL_FIX(pthread_join(m->g2, NULL));
    LL_FIX(free_multiraft(m));             /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach2448",
    .summary = "GoKer cockroach#2448 (channel): the raft state loop blocks sending an event to the store\n"
               "while the store, handling the previous event, blocks sending the loop a callback.",
    .leaky_summary = "each loop waits to send to the other: both selects wait forever, holding the multiraft",
    .fixed_summary = "events leave through the state loop's main select, beside the callbacks: both stop, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = RAFT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
