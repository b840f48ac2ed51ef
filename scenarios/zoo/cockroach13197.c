/* cockroach13197 - GoKer cockroach#13197 (channel & context): begin()
 * starts a goroutine that waits for the transaction's context to end, and
 * the caller drops the transaction without ever cancelling that context.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach13197.go; the fix: cockroachdb/cockroach pull 13197):
 *
 *     func (db *DB) begin(ctx context.Context) *Tx {
 *         ctx, cancel := context.WithCancel(ctx)
 *         tx := &Tx{cancel: cancel, ctx: ctx}
 *         go tx.awaitDone()                   // G2
 *         return tx
 *     }
 *     func (tx *Tx) awaitDone() { <-tx.ctx.Done() }
 *     func (tx *Tx) Rollback() { tx.rollback() }   // -> close() -> tx.cancel()
 *
 *     db.begin(context.Background())          // G1: the Tx is dropped, never rolled back
 *
 * Go's goroutineleak profile reports (*Tx).awaitDone [chan receive] (not
 * flaky in Go's test: nothing races).
 *
 * The C form: context.WithCancel is an ll_context (its Done an ll_chan that
 * cancel closes), the Tx a malloc'ed struct holding the context, its cancel
 * and the transaction's buffered writes (TXN_BYTES, the payload), awaitDone
 * a thread blocked in ll_chan_recv on Done. Once Done fires, awaitDone
 * discards the Tx's work, as database/sql's Tx.awaitDone (the code the
 * kernel is cut from) does with tx.rollback(true): the GoKer kernel leaves
 * that line out, but without it the thread would hold only the context and
 * the Tx would be plain garbage, not memory a blocked thread pins
 * (LeakSanitizer, run on that first version, called its 65,592 B definitely
 * lost). No interleaving to force: main waits until the thread is parked on
 * Done, then forgets the Tx, the only way anyone could have cancelled it.
 * The blocked thread alone reaches the Tx, the context and its channel
 * (orphaned).
 *
 * What the tools see (one instance; expected/zoo/cockroach13197.toml): the
 * census, one thread in await_done (ll_chan_recv on the context's Done);
 * the heap profile, 65,968 B in use (new_tx); memcheck, 65,984 B "still
 * reachable" (hidden) and the thread's TLS block "possibly lost" (320 B);
 * heaptrack, 66,336 B leaked; threadcheck, 1 thread alive; the heap
 * checker, LSan, ASan, TSan: nothing.
 *
 * The fix (the pull request's, in the kernel's terms): the caller ends the
 * transaction, tx.Rollback() -> close() -> cancel(), so awaitDone returns.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { TXN_BYTES = 64 * 1024 }; /* the transaction's buffered writes: the payload of one instance */

struct tx {
    ll_context *ctx;                /* Go: ctx and its cancel (ll_context_cancel) */
    unsigned char *writes;
    size_t pending;                 /* writes not yet committed; only awaitDone changes it */
    pthread_t awaiter;              /* G2 */
};

/* db.begin(ctx): the Tx and its context (WithCancel of Background). */
static struct tx *new_tx(ll_run *run)
{
    struct tx *tx = ll_xmalloc(run, sizeof *tx);
    *tx = (struct tx){.ctx = ll_context_with_cancel(run), .writes = ll_xmalloc(run, TXN_BYTES),
                      .pending = TXN_BYTES};
    memset(tx->writes, 0x5a, TXN_BYTES);
    return tx;
}

static void free_tx(struct tx *tx)
{
    ll_context_free(tx->ctx);
    free(tx->writes);
    free(tx);
}

/* G2: <-tx.ctx.Done(), then discard the Tx's work (database/sql's
 * tx.rollback(true), the line the GoKer kernel leaves out): the Tx stays in
 * use by this thread across the wait, as in the code the bug came from. */
static LL_WAIT_SITE void await_done(struct tx *tx)
{
    void *unused;
    ll_chan_recv(ll_context_done(tx->ctx), &unused); /* ok == false once cancelled */
    tx->pending = 0;
}

static void *awaiter(void *tx) { await_done(tx); return NULL; }

static struct tx *begin(ll_run *run)
{
    struct tx *tx = new_tx(run);
    ll_thread_start(run, &tx->awaiter, awaiter, tx); /* go tx.awaitDone() */
    return tx;
}

/* tx.Rollback() -> rollback() -> close() -> cancel(): what the leaky caller never calls. */
static void rollback(struct tx *tx) { ll_context_cancel(tx->ctx); }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct tx *tx = begin(run);
    /* Parked on Done; once main lets go of tx, nobody can cancel it. */
    ll_chan_await_parked(run, ll_context_done(tx->ctx), tx->awaiter);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct tx *tx = begin(run);
    ll_chan_await_parked(run, ll_context_done(tx->ctx), tx->awaiter); /* the same worst order: it waits first */
    LL_FIX(rollback(tx));                     /* FIX: end the transaction: cancel its context */
    LL_FIX(pthread_join(tx->awaiter, NULL));  /* FIX: awaitDone returns: join it */
    LL_FIX(free_tx(tx));                      /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach13197",
    .summary = "GoKer cockroach#13197 (channel & context): begin() starts awaitDone, which waits for\n"
               "the transaction's context to end; the caller drops the Tx and never cancels it.",
    .leaky_summary = "the Tx is dropped without Rollback: awaitDone waits on ctx.Done() forever, holding the Tx",
    .fixed_summary = "the caller rolls the Tx back (cancel): awaitDone returns, joined, the Tx freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = TXN_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
