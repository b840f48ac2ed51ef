/* orphans.h - threads that can never run again, proved by reachability:
 * Go 1.26's goroutineleak profile (GOLF, Saioc et al., ASPLOS 2025; Go
 * proposal 74609) for pthreads.
 *
 * A thread blocked in an untimed wait on a futex (a pthread mutex, condition
 * variable, rwlock, barrier, semaphore, or pthread_join) can only be woken by
 * a thread that can reach the object it waits on. orphans stops the process's
 * other threads for a moment, marks memory conservatively from the roots
 * (globals of every loaded object, anonymous mappings the program made, the
 * stacks and registers of every thread that can run), and calls a blocked
 * thread "wakeable" once its wait object is marked: its stack and registers
 * then become roots too, and marking goes on to a fixed point. The blocked
 * threads left over are leaked: nothing that can run will ever reach their
 * wait object. They are reported grouped by stack, with the heap reachable
 * only from them (what they pin), and where each was created.
 *
 * The rule it never breaks: a thread that could run again is never called
 * leaked. Every wait orphans cannot prove permanent counts as wakeable: a
 * read/recv/poll on a file descriptor (the writer may be another process), a
 * sleep, a futex wait with a timeout, a process-shared futex, a wait on an
 * object it cannot place. Conservative marking errs the same way: a word
 * that looks like a pointer keeps its target alive. A miss is a known limit
 * (docs/orphans.md lists them: pointers hidden by XOR, kept only in a file
 * or a kernel object, ...); a false accusation is a bug.
 *
 * Requirements. x86-64 Linux with glibc, and liborphans must be the
 * process's malloc: preloaded (LD_PRELOAD=liborphans.so ./program) or linked
 * into the program (its malloc family then interposes libc's). Anything else
 * gets ORPHANS_UNSUPPORTED, never a guess.
 *
 * Two ways to use it:
 *   - from a test: orphans_find() returns the result; orphans_verify_none()
 *     prints the report on stderr and returns ORPHANS_FOUND when threads
 *     leaked, so a test can fail on it;
 *   - preloaded: the check runs at exit (the report on stderr or in
 *     log_path.PID, exit status `exitcode`, default 23) and, with
 *     report_signal=N, each time signal N arrives (a report, no exit).
 * Options, for both, in ORPHANS_OPTIONS (help=1 lists them), in the
 * sanitizers' key=value:key=value style.
 *
 * Costs and side effects (docs/orphans.md, "Safety"). Stopping the world
 * sends one real-time signal to every other thread that can take it unseen
 * (stop_signal, default SIGRTMIN+9; the handler is installed at the first
 * analysis and kept): running in user space, or asleep in a call that
 * restarts after a handler as if nothing happened (an untimed futex wait, a
 * read). A thread that blocks the signal, waits for signals, or sleeps in a
 * call a handler would visibly interrupt (poll, epoll_wait, nanosleep, a
 * timed wait, a write) is never signalled: the analysis is then
 * ORPHANS_INCOMPLETE, naming it. Every malloc/free pays a hash-table update
 * (docs/orphans.md, "Cost"). The analysis runs on a stack of its own, so any
 * thread, whatever its stack size, may call it (or exit()).
 *
 * Library manners. Nothing at load time can fail the host program; nothing
 * is printed unless a printing function is called, or a preloaded check
 * finds leaked threads (or verbosity>0: then also why an analysis could not
 * be made). No function of this header is
 * async-signal-safe. Analyses are serialized by an internal lock.
 *
 * Ownership. orphans_find() returns memory the caller frees with
 * orphans_result_free(); every pointer inside the result stays valid until
 * then.
 */
#ifndef ORPHANS_H
#define ORPHANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "threadcheck.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ORPHANS_VERSION "1.0.0"

#if defined(ORPHANS_BUILDING) && defined(__GNUC__)
#define ORPHANS_API __attribute__((visibility("default")))
#else
#define ORPHANS_API
#endif

/* orphans_result.status, and what orphans_verify_none() returns. */
enum {
    ORPHANS_NONE = 0,        /* analysed: no thread is leaked */
    ORPHANS_FOUND = 1,       /* analysed: `leaked` threads can never run again */
    ORPHANS_INCOMPLETE = 2,  /* not analysed soundly (a thread did not stop, ...): nothing is
                              * reported; `why` says what happened */
    ORPHANS_UNSUPPORTED = 3, /* liborphans is not this process's malloc, or not x86-64 glibc */
    ORPHANS_ERROR = -1,      /* bad options (`why` names the option) or no memory (errno) */
};

/* A group of leaked threads: the same stack and the same kind of wait. */
typedef struct orphans_group {
    size_t threads;              /* leaked threads in the group */
    const char *kind;            /* what they wait for: "cond", "mutex", "rwlock", "barrier",
                                  * "semaphore", "join", "futex" (unknown primitive) */
    const char *place;           /* where the object is: "heap", "stack" (another thread's, or their
                                  * own), "thread" (the thread a pthread_join waits for) */
    uintptr_t futex;             /* the futex word of the first member */
    size_t objects;              /* distinct futex words among the members */
    uintptr_t block;             /* place "heap": the heap block holding the word ... */
    size_t block_size;           /* ... and its size as allocated */
    pid_t owner;                 /* place "stack": the thread whose stack holds it; "thread": the one joined */
    size_t pinned_bytes;         /* heap reachable from these threads and from nothing that can run */
    size_t pinned_blocks;        /* (a block reachable from several groups is charged to the first) */
    size_t cancellable;          /* members whose pthread_t is still reachable and which wait at a
                                  * cancellation point: pthread_cancel could end (not wake) them */
    const char *top;             /* the first frame that is not libc's: the wait site */
    size_t nframes;              /* the first member's stack, innermost first */
    const threadcheck_frame *frames;
    size_t ncreated;             /* where the first member was created (pthread_create's callers) */
    const threadcheck_frame *created;
    const pid_t *tids;           /* the members */
} orphans_group;

typedef struct orphans_result {
    int status;                  /* ORPHANS_NONE ... ORPHANS_ERROR */
    char why[256];               /* INCOMPLETE / UNSUPPORTED / ERROR: the reason */
    size_t threads;              /* threads at the stop, the caller included */
    size_t blocked;              /* of them, in an untimed private futex wait */
    size_t leaked;               /* of those, on an object nothing that can run reaches */
    size_t ngroups;
    const orphans_group *groups; /* largest first */
    size_t pinned_bytes, pinned_blocks;         /* all groups: the program's heap */
    size_t glibc_bytes;          /* glibc's per-thread TLS vectors (dtv) of the leaked threads, which only
                                  * they keep too: not in pinned_bytes (memcheck calls them "possibly lost") */
    size_t heap_bytes, heap_blocks;             /* every block in use at the stop */
    size_t unreachable_bytes, unreachable_blocks; /* reachable from nothing at all, the leaked
                                                   * threads included: ordinary leaks, LeakSanitizer's */
    unsigned stops;              /* how often the world was stopped (settle_tries) */
    double stop_ms;              /* stopping it took this long (the last time) */
    double mark_ms;              /* marking, while stopped */
    double total_ms;             /* the whole call, symbolization included */
} orphans_result;

/* Runs the analysis. `options` uses ORPHANS_OPTIONS' syntax ("cancel_wakes=1:
 * stop_timeout_ms=500"); NULL reads ORPHANS_OPTIONS. Returns the result
 * (check its status), or NULL with errno (ENOMEM) when even that could not
 * be allocated. Prints nothing. */
ORPHANS_API orphans_result *orphans_find(const char *options);

ORPHANS_API void orphans_result_free(orphans_result *result);

/* The report, as the preloaded check writes it:
 *   ==PID== orphans: N leaked threads in G groups ...
 *   one paragraph per group (count, wait, object, pins, stack, created by)
 *   ==PID== SUMMARY: orphans: N leaked threads in G groups pinning B bytes in K blocks
 * Returns 0, or -1 with errno if writing failed. */
ORPHANS_API int orphans_result_print(const orphans_result *result, FILE *out);

/* goleak's VerifyNone for thread leaks: orphans_find(options), the report on
 * stderr when threads leaked or the analysis could not run, and the status
 * (ORPHANS_NONE = 0 means pass). */
ORPHANS_API int orphans_verify_none(const char *options);

/* "none", "found", "incomplete", "unsupported", "error" (static strings). */
ORPHANS_API const char *orphans_status_text(int status);

#ifdef __cplusplus
}
#endif

#endif
