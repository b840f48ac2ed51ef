/* thread_limits.h - which system limit refused a new thread, and what to change.
 *
 * pthread_create() answers EAGAIN ("Resource temporarily unavailable") for
 * half a dozen different limits: the user's RLIMIT_NPROC, a cgroup's
 * pids.max, kernel.threads-max, kernel.pid_max, vm.max_map_count (glibc maps
 * each stack, and its guard page splits the mapping), and memory (the commit
 * limit under vm.overcommit_memory=2, or RLIMIT_AS). "Raise the limits" is no
 * help to someone who has to pick one, so when a thread is refused the
 * harness reads each limit next to its current use and names the exhausted
 * one, with the figures and the remedy.
 *
 * Reading and deciding are apart, and the reader takes the filesystem root
 * as a parameter ("/" on this machine; a test passes a fake tree holding
 * proc/... and sys/fs/cgroup/...), so every limit, including the ones a test
 * cannot provoke safely (pid_max, max_map_count), has a unit test:
 * tests/harness/test_limits.c.
 *
 * Neither function allocates on the heap except through opendir(3) (the scan
 * of proc/ for the user's threads; skipped if it fails): they run when the
 * process may be short of memory. */
#ifndef LEAKLAB_THREAD_LIMITS_H
#define LEAKLAB_THREAD_LIMITS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define LL_LIMIT_UNKNOWN (-1LL)           /* the file was missing or unreadable */
#define LL_LIMIT_UNLIMITED LLONG_MAX      /* "unlimited" / "max" */

/* Each limit with its current use; LL_LIMIT_UNKNOWN where it could not be read. */
typedef struct ll_limit_readings {
    long long uid;                        /* real uid (proc/self/status Uid:) */
    bool nproc_exempt;                    /* uid 0, CAP_SYS_RESOURCE or CAP_SYS_ADMIN: RLIMIT_NPROC is not enforced */
    long long nproc_limit;                /* RLIMIT_NPROC soft limit (proc/self/limits "Max processes") */
    long long user_threads;               /* threads of every process with this real uid (proc/PID/status) */
    long long process_threads;            /* this process's threads (proc/self/status Threads:) */
    long long system_threads;             /* threads on the system (proc/loadavg, the kernel's nr_threads) */
    long long threads_max;                /* proc/sys/kernel/threads-max */
    long long pid_max;                    /* proc/sys/kernel/pid_max */
    long long pids_max, pids_current;     /* the cgroup pids controller with the least headroom on this process's path */
    char pids_cgroup[256];                /* that cgroup's directory, relative to the root */
    long long maps;                       /* this process's mappings (lines of proc/self/maps) */
    long long max_map_count;              /* proc/sys/vm/max_map_count */
    long long overcommit_memory;          /* proc/sys/vm/overcommit_memory: 0 heuristic, 1 always, 2 strict */
    long long commit_limit, committed_as; /* proc/meminfo CommitLimit and Committed_AS, bytes */
    long long as_limit;                   /* RLIMIT_AS soft limit, bytes (proc/self/limits "Max address space") */
    long long vm_size;                    /* this process's address space (proc/self/status VmSize), bytes */
} ll_limit_readings;

/* The kernel keeps the pids below 300 for daemons started at boot once pids
 * wrap (RESERVED_PIDS): a system runs out of pids about 300 short of pid_max. */
enum { LL_RESERVED_PIDS = 300 };

/* Fills every field from the tree under `root` ("/" for this machine). A
 * missing or malformed file leaves its fields LL_LIMIT_UNKNOWN. */
void ll_limits_read(const char *root, ll_limit_readings *r);

/* Which limit refused a new thread with a stack of `stack_bytes` (guard page
 * included): one or more sentences, each naming an exhausted limit with its
 * figures and remedy, or, when no reading is at its limit, the readings and
 * the general remedy. A limit counts as exhausted when its use is within 1 %
 * of it (other processes come and go between the refusal and the reading).
 * Writes at most `len` bytes, NUL included; returns how many limits it named
 * exhausted (0: none). Pure: no I/O. */
int ll_limits_explain(const ll_limit_readings *r, size_t stack_bytes, char *out, size_t len);

#endif
