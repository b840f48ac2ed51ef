/* cockroach35073 - GoKer cockroach#35073 (channel): the outbox's row channel
 * is full and its consumer fails at startup without closing it; every
 * pusher blocks on the full buffer forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach35073.go; the fix: cockroachdb/cockroach pull 35073,
 * "distsqlrun: ensure outbox's RowChannel is closed"):
 *
 *     func (rc *RowChannel) Push() ConsumerStatus {
 *         switch status := atomic.Load(&rc.consumerStatus) {
 *         case NeedMoreRows: rc.dataChan <- msg      // blocks while the buffer is full
 *         case DrainRequested, ConsumerClosed:       // nothing sent
 *         } ... }
 *     func (rc *RowChannel) ConsumerClosed() {       // never called: the bug
 *         rc.consumerClosed(); select { case <-rc.dataChan: default: } }
 *     func (m *outbox) run(wg) { wg.Done() }         // fails at startup
 *     go func() {                                    // G1
 *         outbox.init()                              // dataChan: make(chan, 16)
 *         for i := 0; i < 16; i++ { outbox.Push() }  // the buffer is full
 *         go func() { outbox.Push(); ... }()         // G2 waits here
 *         outbox.start(&wg); wg.Wait()
 *         outbox.Push()                              // G1 waits here
 *     }()
 *
 * Go's goroutineleak profile reports Cockroach35073.func2.1 [chan send]
 * and Cockroach35073.func2 [chan send] (not flaky).
 *
 * The C form: dataChan is an ll_chan of capacity 16, the consumer status
 * an atomic, the outbox's run() a thread joined through the WaitGroup as
 * in Go. Each row pushed is malloc'ed (ROW_BYTES; 18 pushes, the payload
 * is 18 x ROW_BYTES): 16 sit in the buffer and 2 in the blocked pushers'
 * hands. One order is forced where Go leaves it to the scheduler: G1
 * starts the outbox only once G2 is asleep in its push (the fix's drain
 * then meets it). Main waits until both pushers sleep and forgets the
 * outbox: only they reach it (orphaned).
 *
 * What the tools see: see expected/zoo/cockroach35073.toml (native only so
 * far: the truth, checked on every run).
 *
 * The fix (the pull request's): the outbox's run closes its RowChannel
 * however it ends (ConsumerClosed): the status turns ConsumerClosed and
 * one buffered row is drained, so the blocked pusher completes and later
 * pushes send nothing.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    BUF_ROWS = 16,                  /* Go: rowChannelBufSize, outboxBufRows */
    ROW_BYTES = 4096,               /* one pushed row */
    PUSHES = BUF_ROWS + 2,          /* the buffer's 16, G2's and G1's */
    OUTBOX_BYTES = PUSHES * ROW_BYTES, /* the payload of one instance: every row pushed */
};
enum { NEED_MORE_ROWS, DRAIN_REQUESTED, CONSUMER_CLOSED };

struct outbox {
    ll_run *run;
    atomic_int consumer_status;
    ll_chan *data_chan;             /* Go: dataChan, capacity 16 */
    ll_waitgroup wg, blocked_pusher_wg;
    bool fixed;
    pthread_t g1, g2, runner;
};

__attribute__((noinline)) static void *new_row(ll_run *run)
{
    void *row = ll_xmalloc(run, ROW_BYTES);
    memset(row, 0x5a, ROW_BYTES);
    return row;
}

static struct outbox *new_outbox(ll_run *run, bool fixed)
{
    struct outbox *m = ll_xmalloc(run, sizeof *m);
    *m = (struct outbox){.run = run, .data_chan = ll_chan_new(run, BUF_ROWS), .fixed = fixed};
    ll_waitgroup_init(&m->wg, run);
    ll_waitgroup_init(&m->blocked_pusher_wg, run);
    return m;
}

static void free_outbox(struct outbox *m)
{
    void *row;
    ll_chan_close(m->data_chan);
    while (ll_chan_recv(m->data_chan, &row)) /* the rows still buffered */
        free(row);
    ll_chan_free(m->data_chan);
    ll_waitgroup_destroy(&m->wg);
    ll_waitgroup_destroy(&m->blocked_pusher_wg);
    free(m);
}

static void push(struct outbox *m)
{
    void *row = new_row(m->run);
    if (atomic_load(&m->consumer_status) != NEED_MORE_ROWS || !ll_chan_send(m->data_chan, row))
        free(row); /* DrainRequested, ConsumerClosed: nothing sent */
}

/* rc.ConsumerClosed(): closed, and one buffered row drained. */
static void consumer_closed(struct outbox *m)
{
    atomic_store(&m->consumer_status, CONSUMER_CLOSED);
    ll_select_case drain = {.chan = m->data_chan};
    if (ll_select(&drain, 1, true) == 0 && drain.ok)
        free(drain.item);
}

/* The outbox's run(): it fails at startup. */
static void *outbox_run(void *arg)
{
    struct outbox *m = arg;
    if (m->fixed)
        LL_FIX(consumer_closed(m)); /* FIX: close the RowChannel however run ends */
    ll_waitgroup_done(&m->wg);
    return NULL;
}

/* G2. */
static LL_WAIT_SITE void *blocked_pusher(void *arg)
{
    struct outbox *m = arg;
    push(m);
    ll_waitgroup_done(&m->blocked_pusher_wg);
    return NULL;
}

/* G1. */
static LL_WAIT_SITE void *outbox_test(void *arg)
{
    struct outbox *m = arg;
    for (int i = 0; i < BUF_ROWS; i++)
        push(m);
    ll_waitgroup_add(&m->blocked_pusher_wg, 1);
    ll_thread_start(m->run, &m->g2, blocked_pusher, m);
    ll_chan_await_parked(m->run, m->data_chan, m->g2); /* forced order: G2 is asleep in its push */
    ll_waitgroup_add(&m->wg, 1);                       /* outbox.start(&wg) */
    ll_thread_start(m->run, &m->runner, outbox_run, m);
    ll_waitgroup_wait(&m->wg);
    push(m);                                           /* leaky: the buffer is full: G1 waits here */
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct outbox *m = new_outbox(run, false);
    ll_thread_start(run, &m->g1, outbox_test, m);
    ll_chan_await_parked(run, m->data_chan, m->g1);     /* G1 in its last push (only that one can block) */
    pthread_join(m->runner, NULL);                      /* run() ended: Go reclaims it, C joins it */
    ll_chan_await_parked(run, m->data_chan, m->g2);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct outbox *m = new_outbox(run, true);
    ll_thread_start(run, &m->g1, outbox_test, m);
    LL_FIX(pthread_join(m->g1, NULL));     /* FIX: the consumer is closed: G1's push sends nothing: join */
    LL_FIX(pthread_join(m->runner, NULL));
    LL_FIX(pthread_join(m->g2, NULL));     /* FIX: G2's push got the drained slot */
    LL_FIX(free_outbox(m));                /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach35073",
    .summary = "GoKer cockroach#35073 (channel): the outbox's RowChannel is full and its run() fails\n"
               "without closing it; the pushers block on the full buffer forever.",
    .leaky_summary = "run() ends without ConsumerClosed: two pushers block on the full row channel, holding 18 rows",
    .fixed_summary = "run() closes the RowChannel (drains one row): the pushers finish, joined, the rows freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = OUTBOX_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
