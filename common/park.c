/* park.c - watching a thread park: ll_await_parked, ll_await_reading and
 * the helpers behind them (park.h), which chan.c (ll_chan_await_parked) and
 * unjoined.c (ll_await_finished) use too.
 *
 * A file of its own so the dependencies between the harness files run one
 * way: chan.c and unjoined.c use park.c, sync.c's context uses chan.c, and
 * park.c uses neither. (They were in sync.c, which made chan.c and sync.c
 * depend on each other.) */
#include "park.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>

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
