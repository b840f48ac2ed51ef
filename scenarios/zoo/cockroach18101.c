/* cockroach18101 - GoKer cockroach#18101 (channel & context): a cancelled
 * reader returns after one item; the sender fills the buffered channel and
 * blocks on its next send, forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach18101.go; the fix: cockroachdb/cockroach pull 18101):
 *
 *     func restore(ctx context.Context) bool {             // G1
 *         readyForImportCh := make(chan bool, 6)
 *         go func() {                                      // G2
 *             defer close(readyForImportCh)
 *             splitAndScatter(ctx, readyForImportCh)       // 8 sends
 *         }()
 *         for readyForImportSpan := range readyForImportCh {
 *             select { case <-ctx.Done(): return readyForImportSpan }
 *         }
 *         return true
 *     }
 *     ctx, cancel := context.WithCancel(context.Background())
 *     go restore(ctx)                                      // G1
 *     go cancel()                                          // helper
 *
 * G1 takes one item, waits for the cancel and returns; the channel holds 6
 * more, so G2's 8th send has nowhere to go. Go's goroutineleak profile
 * reports restore.func1 [chan send] (G2); flaky in Go's test (the profile
 * may come before G2 has sent its 8th).
 *
 * The C form: the channel is a buffered ll_chan of capacity 6 (the bools
 * are pointers, NULL for false), the context an ll_context, each goroutine
 * a thread; a select with one case is a plain receive. G2 splits the spans
 * it scatters into a buffer (SPANS_BYTES, the payload) it holds while it
 * sends. No interleaving to force: whatever the order, G1 takes exactly one
 * item and G2 blocks on its 8th send, never earlier for good. Main joins
 * G1 and the helper (they return; Go reclaims them), waits until G2 is
 * parked on the channel, and forgets the job: G2 alone reaches the channel
 * it waits on (orphaned).
 *
 * What the tools see (one instance; expected/zoo/cockroach18101.toml): the
 * census, one thread in split_and_scatter (ll_chan_send); the heap profile,
 * 66,400 B in use (split_and_scatter's spans first); memcheck, 66,416 B
 * "still reachable" (hidden) and the thread's TLS block "possibly lost"
 * (320 B); heaptrack, 67,472 B leaked; threadcheck, 1 thread alive; the
 * heap checker, LSan, ASan, TSan: nothing.
 *
 * The fix (ours, the usual one for this pattern: the kernel does not carry
 * the pull request's diff): the sender's every send is a select with
 * ctx.Done(), so a cancelled restore stops its sender too.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    CHAN_SIZE = 6,                  /* chanSize = 6 */
    SENDS = CHAN_SIZE + 2,          /* splitAndScatter sends chanSize + 2 */
    SPANS_BYTES = 64 * 1024,        /* the spans G2 splits and scatters: the payload of one instance */
};

struct restore_job {                /* what restore's goroutines share */
    ll_run *run;
    ll_context *ctx;
    ll_chan *ready_for_import;      /* Go: readyForImportCh, made in restore */
    bool fixed;
    pthread_t restorer, canceller, scatterer; /* G1, the helper, G2 */
};

/* G2's work. Leaky: plain sends; fixed: each send is a select with ctx.Done(). */
static LL_WAIT_SITE void split_and_scatter(struct restore_job *job)
{
    unsigned char *spans = ll_xmalloc(job->run, SPANS_BYTES);
    memset(spans, 0x5a, SPANS_BYTES);
    for (int i = 0; i < SENDS; i++) {
        void *ready = i != 0 ? &spans[i] : NULL; /* readyForImportCh <- (false || i != 0) */
        if (!job->fixed) {
            ll_chan_send(job->ready_for_import, ready); /* G2 waits here on its 8th send */
            continue;
        }
        ll_select_case send_or_done[] = {
            {.chan = job->ready_for_import, .send = true, .item = ready},
            {.chan = LL_FIX_VALUE(ll_context_done(job->ctx), NULL)}, /* FIX: ...or stop once cancelled */
        };
        if (ll_select(send_or_done, 2, false) == 1)
            break;
    }
    free(spans);
}

static void *scatterer(void *arg)
{
    struct restore_job *job = arg;
    split_and_scatter(job);
    ll_chan_close(job->ready_for_import); /* defer close(readyForImportCh) */
    return NULL;
}

/* G1: restore(ctx). */
static bool restore(struct restore_job *job)
{
    job->ready_for_import = ll_chan_new(job->run, CHAN_SIZE);
    ll_thread_start(job->run, &job->scatterer, scatterer, job);
    void *ready_for_import_span;
    while (ll_chan_recv(job->ready_for_import, &ready_for_import_span)) {
        void *unused;
        ll_chan_recv(ll_context_done(job->ctx), &unused); /* select { case <-ctx.Done(): ... } */
        return ready_for_import_span != NULL;
    }
    return true;
}

static void *restorer(void *job) { restore(job); return NULL; }
static void *canceller(void *job) { ll_context_cancel(((struct restore_job *)job)->ctx); return NULL; }

static void free_job(struct restore_job *job)
{
    ll_chan_free(job->ready_for_import);
    ll_context_free(job->ctx);
    free(job);
}

/* ctx, cancel := context.WithCancel(...); go restore(ctx); go cancel().
 * Returns once G1 and the helper are done and joined. */
static struct restore_job *run_restore(ll_run *run, bool fixed)
{
    struct restore_job *job = ll_xmalloc(run, sizeof *job);
    *job = (struct restore_job){.run = run, .ctx = ll_context_with_cancel(run), .fixed = fixed};
    ll_thread_start(run, &job->restorer, restorer, job);
    ll_thread_start(run, &job->canceller, canceller, job);
    pthread_join(job->restorer, NULL);  /* G1 returns; Go reclaims it, C joins it */
    pthread_join(job->canceller, NULL);
    return job;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct restore_job *job = run_restore(run, false);
    /* G1 took its one item: G2 can send 7 and is parked on the 8th for good. */
    ll_chan_await_parked(run, job->ready_for_import, job->scatterer);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct restore_job *job = run_restore(run, true);
    LL_FIX(pthread_join(job->scatterer, NULL)); /* FIX: the cancel reaches G2 too: it returns, join it */
    LL_FIX(free_job(job));                      /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach18101",
    .summary = "GoKer cockroach#18101 (channel & context): restore returns on ctx.Done() after one item;\n"
               "splitAndScatter's 8 sends outnumber the 6-slot channel and the last blocks forever.",
    .leaky_summary = "the cancelled reader leaves: the sender blocks on a full channel forever, holding its spans",
    .fixed_summary = "each send is a select with ctx.Done(): the sender stops too, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = SPANS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
