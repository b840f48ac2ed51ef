/* sync.c - Go's sync.WaitGroup, sync.RWMutex's writer preference and
 * context.Context for the zoo's kernels.
 *
 * Every wait here is a futex wait inside a heap object the caller owns (the
 * struct embedding an ll_waitgroup, the ll_context's done channel), so a
 * reachability analysis can tell whether anyone left can wake it. */
#include "leaklab.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* ---- sync.RWMutex: a waiting writer blocks new readers ---- */

static void init_kind(pthread_rwlock_t *rw, int kind)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, kind);
    pthread_rwlock_init(rw, &attr);
    pthread_rwlockattr_destroy(&attr);
}

static void *write_once(void *rw)
{
    pthread_rwlock_wrlock(rw);
    pthread_rwlock_unlock(rw);
    return NULL;
}

/* Main read-holds a probe lock, a writer queues on it (seen asleep in its
 * futex wait, so no timing is involved), then main tries a new read lock. */
bool ll_rwlock_kind_prefers_writers(ll_run *run, int kind)
{
    pthread_rwlock_t probe;
    init_kind(&probe, kind);
    pthread_rwlock_rdlock(&probe);
    pthread_t writer;
    int err = pthread_create(&writer, NULL, write_once, &probe);
    if (err)
        ll_refuse(run, "pthread_create (the rwlock preference check)", err, "raise the thread limits (ulimit -u)");
    ll_await_parked(run, writer, &probe, sizeof probe);
    bool reader_got_in = pthread_rwlock_tryrdlock(&probe) == 0;
    if (reader_got_in)
        pthread_rwlock_unlock(&probe);
    pthread_rwlock_unlock(&probe);
    pthread_join(writer, NULL);
    pthread_rwlock_destroy(&probe);
    return !reader_got_in;
}

void ll_rwlock_init_writer_preferring(ll_run *run, pthread_rwlock_t *rw)
{
    static atomic_int checked; /* once per process */
    if (!atomic_load(&checked)) {
        if (!ll_rwlock_kind_prefers_writers(run, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
            ll_skip(run, "this C library lets a new reader past a waiting writer even with "
                         "PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP: Go's RWMutex does not, "
                         "so the kernel would not port the bug (glibc honours it)");
        atomic_store(&checked, 1);
    }
    init_kind(rw, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
}

/* ---- sync.WaitGroup ---- */

void ll_waitgroup_init(ll_waitgroup *wg, ll_run *run)
{
    pthread_mutex_init(&wg->lock, NULL);
    pthread_cond_init(&wg->zero, NULL);
    wg->count = 0;
    wg->run = run;
}

void ll_waitgroup_add(ll_waitgroup *wg, long long delta)
{
    pthread_mutex_lock(&wg->lock);
    wg->count += delta;
    if (wg->count < 0)
        ll_refuse(wg->run, "ll_waitgroup_add", EINVAL,
                  "sync: negative WaitGroup counter: a kernel called Done more often than Add (Go panics here)");
    if (wg->count == 0)
        pthread_cond_broadcast(&wg->zero);
    pthread_mutex_unlock(&wg->lock);
}

void ll_waitgroup_done(ll_waitgroup *wg) { ll_waitgroup_add(wg, -1); }

void ll_waitgroup_wait(ll_waitgroup *wg)
{
    pthread_mutex_lock(&wg->lock);
    while (wg->count > 0)
        pthread_cond_wait(&wg->zero, &wg->lock);
    pthread_mutex_unlock(&wg->lock);
}

void ll_waitgroup_destroy(ll_waitgroup *wg)
{
    pthread_mutex_destroy(&wg->lock);
    pthread_cond_destroy(&wg->zero);
}

/* ---- context.Context ---- */

struct ll_context {
    ll_chan *done;
    atomic_bool cancelled;
    bool has_deadline;
    struct timespec deadline; /* CLOCK_MONOTONIC */
};

ll_context *ll_context_with_cancel(ll_run *run)
{
    ll_context *ctx = ll_xmalloc(run, sizeof *ctx);
    *ctx = (ll_context){.done = ll_chan_new(run, 0)};
    return ctx;
}

ll_context *ll_context_with_timeout(ll_run *run, long long timeout_ms)
{
    ll_context *ctx = ll_context_with_cancel(run);
    clock_gettime(CLOCK_MONOTONIC, &ctx->deadline);
    ctx->deadline.tv_sec += timeout_ms / 1000;
    ctx->deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ctx->deadline.tv_nsec >= 1000000000L) {
        ctx->deadline.tv_sec++;
        ctx->deadline.tv_nsec -= 1000000000L;
    }
    ctx->has_deadline = true;
    ll_chan_close_after(ctx->done, timeout_ms);
    return ctx;
}

ll_chan *ll_context_done(const ll_context *ctx) { return ctx->done; }

void ll_context_cancel(ll_context *ctx)
{
    atomic_store(&ctx->cancelled, true);
    ll_chan_close(ctx->done);
}

int ll_context_err(const ll_context *ctx)
{
    if (atomic_load(&((ll_context *)ctx)->cancelled))
        return LL_CONTEXT_CANCELED;
    if (ctx->has_deadline) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > ctx->deadline.tv_sec ||
            (now.tv_sec == ctx->deadline.tv_sec && now.tv_nsec >= ctx->deadline.tv_nsec))
            return LL_CONTEXT_DEADLINE_EXCEEDED;
    }
    return LL_CONTEXT_OK;
}

void ll_context_free(ll_context *ctx)
{
    if (!ctx)
        return;
    ll_chan_free(ctx->done);
    free(ctx);
}
