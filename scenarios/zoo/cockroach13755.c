/* cockroach13755 - GoKer cockroach#13755 (channel & context): Rows starts a
 * goroutine that waits for the rows' context to end; the rows are never
 * closed, so it waits forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach13755.go; the fix: cockroachdb/cockroach pull 13755):
 *
 *     func (rs *Rows) initContextClose(ctx context.Context) {
 *         ctx, rs.cancel = context.WithCancel(ctx)
 *         go rs.awaitDone(ctx)                 // G2
 *     }
 *     func (rs *Rows) awaitDone(ctx context.Context) {
 *         <-ctx.Done()                         // G2 waits here
 *         rs.close(ctx.Err())                  // -> rs.cancel()
 *     }
 *     rs := &Rows{}; rs.initContextClose(context.Background())   // G1: never rs.Close()
 *
 * Go's goroutineleak profile reports (*Rows).awaitDone [chan receive] (not
 * flaky: nothing races). The kernel is cut from database/sql's Rows, as
 * cockroach13197 is from its Tx.
 *
 * The C form: the derived context is an ll_context (Done an ll_chan that
 * cancel closes), the Rows malloc'ed with the result rows they buffer
 * (ROWS_BYTES, the payload), awaitDone a thread blocked in ll_chan_recv on
 * Done; once Done fires, close() releases the rows' buffer, so the buffer
 * is in use by that thread across its wait. No interleaving to force: main
 * waits until G2 is parked on Done, then forgets the Rows, the only way to
 * cancel: G2 alone reaches the Rows and the context (orphaned).
 *
 * What the tools see: see expected/zoo/cockroach13755.toml (native only so
 * far: the truth, checked on every run).
 *
 * The fix, in the kernel's terms (pull 13755's diff was not read here):
 * the caller closes the Rows, rs.Close() -> close() -> cancel(), so
 * awaitDone returns.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { ROWS_BYTES = 64 * 1024 }; /* the buffered result rows: the payload of one instance */

struct rows {
    ll_context *ctx;                /* Go: the ctx awaitDone waits on, and rs.cancel */
    unsigned char *buffer;
    size_t buffered;                /* only awaitDone's close() changes it */
    pthread_t awaiter;              /* G2 */
};

__attribute__((noinline)) static struct rows *new_rows(ll_run *run)
{
    struct rows *rs = ll_xmalloc(run, sizeof *rs);
    *rs = (struct rows){.ctx = ll_context_with_cancel(run), .buffer = ll_xmalloc(run, ROWS_BYTES),
                        .buffered = ROWS_BYTES};
    memset(rs->buffer, 0x5a, ROWS_BYTES);
    return rs;
}

static void free_rows(struct rows *rs)
{
    ll_context_free(rs->ctx);
    free(rs->buffer);
    free(rs);
}

/* rs.close(err): cancel, and the rows' buffer is done with. */
static void rows_close(struct rows *rs)
{
    ll_context_cancel(rs->ctx);
    rs->buffered = 0;
}

/* G2. */
static LL_WAIT_SITE void await_done(struct rows *rs)
{
    void *unused;
    ll_chan_recv(ll_context_done(rs->ctx), &unused); /* <-ctx.Done() */
    rows_close(rs);
}

static void *awaiter(void *rs) { await_done(rs); return NULL; }

static struct rows *init_context_close(ll_run *run)
{
    struct rows *rs = new_rows(run);
    ll_thread_start(run, &rs->awaiter, awaiter, rs); /* go rs.awaitDone(ctx) */
    return rs;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct rows *rs = init_context_close(run);
    ll_chan_await_parked(run, ll_context_done(rs->ctx), rs->awaiter);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct rows *rs = init_context_close(run);
    ll_chan_await_parked(run, ll_context_done(rs->ctx), rs->awaiter); /* the same order: it waits first */
    LL_FIX(ll_context_cancel(rs->ctx));       /* FIX: rs.Close(): cancel the rows' context */
    LL_FIX(pthread_join(rs->awaiter, NULL));  /* FIX: awaitDone returns: join it */
    LL_FIX(free_rows(rs));                    /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach13755",
    .summary = "GoKer cockroach#13755 (channel & context): initContextClose starts awaitDone on the\n"
               "rows' context; the rows are never closed, so the context is never cancelled.",
    .leaky_summary = "the Rows are dropped unclosed: awaitDone waits on ctx.Done() forever, holding them",
    .fixed_summary = "the caller closes the Rows (cancel): awaitDone returns, joined, the Rows freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = ROWS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
