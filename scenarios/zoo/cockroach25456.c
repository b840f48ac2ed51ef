/* cockroach25456 - GoKer cockroach#25456 (channel): the consistency queue
 * asks "is the store draining?" with a plain receive on the stopper's
 * quiesce channel, which blocks until the store does start draining.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach25456.go; the fix: cockroachdb/cockroach pull 25456,
 * "storage: fix deadlock in consistency queue"):
 *
 *     func (q *consistencyQueue) process(repl *Replica) {
 *         <-repl.store.Stopper().ShouldQuiesce()   // G1 waits here: nobody quiesces
 *     }
 *     go func() {                                  // G1
 *         stopper := NewStopper()                  // quiescer: make(chan struct{})
 *         tc := testContext{}; tc.StartWithStoreConfig(stopper)
 *         for i := 0; i < 2; i++ { tc.store.consistencyQueue.process(tc.repl) }
 *     }()
 *
 * Go's goroutineleak profile reports Cockroach25456.func2 [chan receive]
 * (not flaky: G1 blocks on its own). The pull request: "The dual return
 * form of chan receive isn't non-blocking ... Switch to a select instead."
 *
 * The C form: the quiescer is an ll_chan nobody closes, the store malloc'ed
 * with the replica's checksum state (CHECKSUM_BYTES, the payload). One
 * thread, the same path every time; main waits until it is asleep in the
 * receive and forgets the store: only G1 reaches the stopper (orphaned).
 *
 * What the tools see: see expected/zoo/cockroach25456.toml (native only so
 * far: the truth, checked on every run).
 *
 * The fix (the pull request's): the draining check is a select with a
 * default, so it answers "not draining" at once.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { CHECKSUM_BYTES = 64 * 1024 }; /* the replica's consistency-check state: the payload of one instance */

struct store {
    ll_chan *quiescer;              /* Go: stopper.quiescer, closed only when the store drains */
    unsigned char *checksum;
    pthread_t g1;
};

__attribute__((noinline)) static struct store *new_store(ll_run *run)
{
    struct store *s = ll_xmalloc(run, sizeof *s);
    *s = (struct store){.quiescer = ll_chan_new(run, 0), .checksum = ll_xmalloc(run, CHECKSUM_BYTES)};
    memset(s->checksum, 0x5a, CHECKSUM_BYTES);
    return s;
}

static void free_store(struct store *s)
{
    ll_chan_free(s->quiescer);
    free(s->checksum);
    free(s);
}

/* consistencyQueue.process(repl): is the store draining? */
static LL_WAIT_SITE void consistency_queue_process(struct store *s, bool fixed)
{
    ll_select_case quiesce = {.chan = s->quiescer};
    if (fixed)
        ll_select(&quiesce, 1, LL_FIX_VALUE(true, false)); /* FIX: select { case <-ShouldQuiesce(): default: } */
    else
        ll_chan_recv(s->quiescer, &quiesce.item);          /* leaky: _, ok := <-ShouldQuiesce() blocks */
}

/* G1: the test's two passes of the queue. */
static void consistency_test(struct store *s, bool fixed)
{
    for (int i = 0; i < 2; i++)
        consistency_queue_process(s, fixed);
}

static void *g1_leaky(void *s) { consistency_test(s, false); return NULL; }
static void *g1_fixed(void *s) { consistency_test(s, true); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct store *s = new_store(run);
    ll_thread_start(run, &s->g1, g1_leaky, s);
    ll_chan_await_parked(run, s->quiescer, s->g1);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct store *s = new_store(run);
    ll_thread_start(run, &s->g1, g1_fixed, s);
    LL_FIX(pthread_join(s->g1, NULL)); /* FIX: both passes return at once: join G1 */
    LL_FIX(free_store(s));             /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach25456",
    .summary = "GoKer cockroach#25456 (channel): the consistency queue checks whether the store is\n"
               "draining with a plain receive on the quiesce channel, which blocks until it does.",
    .leaky_summary = "the receive on the never-closed quiesce channel blocks forever, holding the store",
    .fixed_summary = "the check is a select with a default: both passes return, joined, the store freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CHECKSUM_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
