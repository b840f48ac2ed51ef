/* sync.c - Go's sync.WaitGroup and context.Context for the zoo's kernels,
 * and the helpers that watch a thread park (ll_await_parked and friends).
 *
 * Every wait here is a futex wait inside a heap object the caller owns (the
 * struct embedding an ll_waitgroup, the ll_context's done channel), so a
 * reachability analysis can tell whether anyone left can wake it. */
#include "park.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

/* ---- watching a thread park ---- */

pid_t ll_park_tid(ll_run *run, pthread_t thread)
{
    clockid_t clock;
    int err = pthread_getcpuclockid(thread, &clock);
    if (err == ESRCH) /* its thread id is already cleared: it has ended */
        ll_park_ended(run, 0, "what it was meant to wait on");
    if (err)
        ll_refuse(run, "pthread_getcpuclockid", err, "ll_await_parked needs a thread that was not joined");
    return (pid_t) ~(clock >> 3); /* Linux: CPUCLOCK_PID(clock) */
}

bool ll_park_observe(pid_t tid, long *nr, uintptr_t *arg0)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool read = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    *nr = -1;
    *arg0 = 0;
    /* "NR ARG0 ARG1 ... SP PC" while blocked in a system call; "running" or
     * "-1 SP PC" otherwise. */
    if (read && line[0] >= '0' && line[0] <= '9') {
        char *end;
        *nr = strtol(line, &end, 10);
        *arg0 = (uintptr_t)strtoull(end, NULL, 16);
    }
    return true;
}

void ll_park_yield(void) { sched_yield(); }

_Noreturn void ll_park_ended(ll_run *run, pid_t tid, const char *what)
{
    char remedy[256];
    snprintf(remedy, sizeof remedy,
             "thread %d ended instead of parking on %s: the kernel's forced interleaving is broken", (int)tid, what);
    ll_refuse(run, "ll_await_parked", ESRCH, remedy);
}

void ll_await_parked(ll_run *run, pthread_t thread, const void *object, size_t size)
{
    pid_t tid = ll_park_tid(run, thread);
    uintptr_t lo = (uintptr_t)object, hi = lo + size;
    for (;;) {
        long nr;
        uintptr_t addr;
        if (!ll_park_observe(tid, &nr, &addr))
            ll_park_ended(run, tid, "a lock or condition variable");
        if (nr == SYS_futex && addr >= lo && addr < hi)
            return;
        ll_park_yield();
    }
}

void ll_await_reading(ll_run *run, pthread_t thread, int fd)
{
    pid_t tid = ll_park_tid(run, thread);
    for (;;) {
        long nr;
        uintptr_t arg0;
        if (!ll_park_observe(tid, &nr, &arg0))
            ll_park_ended(run, tid, "a file descriptor");
        if ((nr == SYS_read || nr == SYS_readv || nr == SYS_recvfrom || nr == SYS_recvmsg) &&
            arg0 == (uintptr_t)fd)
            return;
        ll_park_yield();
    }
}
