/* park.h - watching a thread park: park.c's helpers, which chan.c and
 * unjoined.c use too (not for scenarios: they call ll_await_parked and
 * friends in leaklab.h). */
#ifndef LEAKLAB_PARK_H
#define LEAKLAB_PARK_H

#include "leaklab.h"

#include <sys/types.h>

/* The kernel thread id of a live, unjoined thread. pthread_getcpuclockid()
 * encodes it in the clock id (Linux's CPUCLOCK_PID: tid = ~(clock >> 3)),
 * so no registry of threads is needed. Exit 99 if the thread is gone. */
pid_t ll_park_tid(ll_run *run, pthread_t thread);

/* One reading of /proc/self/task/TID/syscall. Returns false when the thread
 * no longer exists; else sets *nr to the system call it is blocked in (-1:
 * running or not in a system call) and *arg0 to its first argument (the
 * futex address, the file descriptor). */
bool ll_park_observe(pid_t tid, long *nr, uintptr_t *arg0);

/* Gives the CPU to the thread being waited for between two readings. */
void ll_park_yield(void);

/* The thread ended instead of parking: exit 99, naming what it should have
 * waited on. */
_Noreturn void ll_park_ended(ll_run *run, pid_t tid, const char *what);

#endif
