/* threadcheck.h - where every thread of this process waits, by stack; and a
 * goleak for C: fail a test when threads outlive it.
 *
 * Two halves, one library (libthreadcheck.so, pkg-config name threadcheck):
 *
 *   1. A census by stack (Go's /debug/pprof/goroutine?debug=1 for pthreads):
 *      threadcheck_snapshot_take() lists every thread of the calling process
 *      with its kernel state, system call, futex wait address and user-space
 *      stack, symbolized (function names; file:line where debug info
 *      allows), and groups identical threads:
 *
 *          10000 @ wait_on <- ll_chan_recv <- worker <- start_thread <- __clone3
 *
 *   2. A leak check in goleak's shape: take a baseline of the threads alive
 *      now (goleak.IgnoreCurrent), and at the end of a test verify that no
 *      other thread is alive, retrying with backoff up to a deadline while
 *      threads wind down, ignoring threads by their top function or by any
 *      function on their stack (goleak.IgnoreTopFunction /
 *      IgnoreAnyFunction). The same check runs at process exit when the
 *      library is preloaded: LD_PRELOAD=libthreadcheck.so ./program.
 *
 * How stacks are captured. The caller reads /proc/self/task/TID/{stat,
 * wchan,syscall} of every thread, then sends each thread a real-time signal
 * (tgkill; THREADCHECK_OPTIONS=signal=N, default SIGRTMIN+8 on glibc); the
 * thread's handler unwinds its own stack with libunwind's local unwinder
 * (unw_init_local, unw_step and unw_get_reg are documented as safe in a
 * signal handler: unw_init_local(3), unw_step(3), libunwind(3)) into a slot
 * allocated before the signal was sent, on a stack borrowed from that
 * allocation (so the thread's own untouched stack pages stay untouched),
 * and posts a semaphore (sem_post is async-signal-safe, signal-safety(7)). The caller waits for the answers with
 * a bounded wait, then symbolizes outside any handler (elfutils libdwfl).
 * No thread is stopped for longer than its own unwind (tens of microseconds).
 *
 * What is never signalled. A signal handler interrupts some blocking system
 * calls with EINTR even under SA_RESTART (signal(7): poll, select, epoll_wait,
 * nanosleep, clock_nanosleep, sigtimedwait, futex waits with a timeout, socket
 * calls on a socket with SO_RCVTIMEO/SO_SNDTIMEO, ...). A program that does
 * not expect EINTR there would misbehave, so threadcheck signals a thread only
 * when it runs in user space or sits in a system call known to restart
 * (futex waits without a timeout, read/recv/accept on sockets without
 * timeouts and on pipes, wait4, flock, ...). A sleeping write, send, splice
 * or connect is not signalled either: a handler ends a transfer that has
 * moved data with a short count. Every other thread is
 * reported with its system call and THREADCHECK_STACK_NOT_SIGNALLED, "stack
 * not captured", and the one frame the kernel tells (the user-space address
 * the system call was made from). A thread that blocks the signal (in
 * sigwait, on a signalfd, or anywhere) is never sent it, nor is a thread that
 * still has one pending from an earlier capture: THREADCHECK_STACK_BLOCKED,
 * _PENDING; one that does not answer in time is reported as _TIMEOUT.
 * A thread that reads "running" and enters such a call between the read and
 * the signal (microseconds) can still see one EINTR: a known limit.
 *
 * Library manners. Nothing runs at load time that can fail the host: the
 * signal handler is installed at the first capture that needs it and then
 * kept for the life of the process, so a late signal (a thread that answers
 * after the caller gave up) never meets SIG_DFL; if the program already has a
 * handler on that signal, threadcheck leaves it alone and captures no stacks
 * (the snapshot says why). The library prints nothing unless a function whose
 * job is printing is called, or the preload check at exit finds threads.
 *
 * Thread safety. Every function may be called from any thread; captures are
 * serialized by an internal lock (one census of a process at a time). No
 * function of this header is async-signal-safe: never call one from a signal
 * handler. After fork() the child may call them (its only thread is
 * captured directly).
 *
 * Ownership. Every object a function returns belongs to the caller and is
 * released with its _free function; pointers inside it (frames, names,
 * groups) stay valid until then. Options structs and strings passed in are
 * only read during the call (a baseline passed in options must outlive the
 * call).
 *
 * Errors. Functions returning a pointer return NULL with errno set (ENOMEM,
 * or the errno of the /proc read that failed); functions returning int return
 * THREADCHECK_ERROR (-1) with errno set. A capture that cannot get stacks
 * (signal in use, sanitizer or valgrind quirks) is not an error: the snapshot
 * still lists every thread, with the reason in `stacks_unavailable`.
 */
#ifndef THREADCHECK_H
#define THREADCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define THREADCHECK_VERSION "1.0.0"

/* Every function below is exported; the library's internals are hidden. */
#if defined(THREADCHECK_BUILDING) && defined(__GNUC__)
#define THREADCHECK_API __attribute__((visibility("default")))
#else
#define THREADCHECK_API
#endif

/* Return values of threadcheck_verify() and friends. */
enum {
    THREADCHECK_OK = 0,      /* no unexpected thread */
    THREADCHECK_LEAKED = 1,  /* unexpected threads were still alive at the deadline */
    THREADCHECK_ERROR = -1,  /* the check could not run; errno says why */
};

/* What became of a thread's stack capture. */
typedef enum threadcheck_stack_status {
    THREADCHECK_STACK_CAPTURED = 0,   /* unwound (by its own handler, or directly for the caller) */
    THREADCHECK_STACK_NOT_SIGNALLED,  /* in a system call a signal could interrupt (EINTR, a short count) */
    THREADCHECK_STACK_BLOCKED,        /* the thread blocks the capture signal */
    THREADCHECK_STACK_TIMEOUT,        /* signalled, no answer within the capture timeout */
    THREADCHECK_STACK_EXITED,         /* the thread exited during the capture */
    THREADCHECK_STACK_STOPPED,        /* stopped, traced or a zombie: it cannot run a handler */
    THREADCHECK_STACK_UNAVAILABLE,    /* no capture at all this time: see stacks_unavailable */
    THREADCHECK_STACK_SKIPPED,        /* not asked for (THREADCHECK_NO_STACKS) */
    THREADCHECK_STACK_PENDING,        /* an earlier capture's signal is still pending: not sent again */
} threadcheck_stack_status;

/* One frame, innermost first. Strings belong to the snapshot. */
typedef struct threadcheck_frame {
    uintptr_t address;      /* the program counter (for outer frames the return address) */
    const char *function;   /* symbol name; NULL if no symbol covers the address */
    uintptr_t offset;       /* address - start of `function` */
    const char *module;     /* path of the ELF object (executable or shared library) */
    const char *file;       /* source file from DWARF line info; NULL without debug info */
    int line;               /* 0 without debug info */
    bool system;            /* in the C library, the dynamic loader, a sanitizer runtime or threadcheck */
    bool inlined;           /* a call inlined into the next frame's function (same address) */
} threadcheck_frame;

/* One thread, as read from /proc/self/task/TID and its own stack. */
typedef struct threadcheck_thread {
    pid_t tid;
    char name[16];          /* comm (pthread_setname_np) */
    char state;             /* R running, S sleeping, D disk sleep, T/t stopped, Z zombie, ... */
    char wchan[64];         /* kernel wait channel ("futex_wait_queue"), "-" when none */
    long syscall;           /* system call number; -1 not in one; -2 running (unknown) */
    const char *syscall_name; /* "futex", "read", ..., or the number as text; "running", "none" */
    uintptr_t wait_address; /* futex word the thread waits on; 0 when not in a futex wait */
    unsigned long long start_time; /* clock ticks after boot (identity against TID reuse) */
    threadcheck_stack_status status;
    size_t nframes;
    threadcheck_frame *frames;
    bool truncated;         /* more frames than THREADCHECK_MAX_FRAMES */
} threadcheck_thread;

#define THREADCHECK_MAX_FRAMES 64

/* Threads alike in state, wait channel, system call, capture status and
 * symbolized stack (function names), largest first. */
typedef struct threadcheck_group {
    size_t count;
    const threadcheck_thread *thread; /* the first member: its fields describe the group */
    size_t top;             /* index in thread->frames of the first non-system frame (nframes if none) */
    uintptr_t wait_address; /* shared by every member, or 0 when they wait on different words */
    size_t wait_addresses;  /* how many distinct futex words the members wait on */
    const pid_t *tids;      /* count member TIDs */
} threadcheck_group;

typedef struct threadcheck_snapshot {
    pid_t pid;
    pid_t caller;           /* the thread that took it (captured directly, no signal) */
    size_t nthreads;
    threadcheck_thread *threads;
    size_t ngroups;
    threadcheck_group *groups;
    int signal;             /* the capture signal used, 0 when none was sent */
    const char *stacks_unavailable; /* why no stack was captured at all, or NULL */
    double capture_ms;      /* reading /proc + signals + waiting */
    double symbolize_ms;    /* symbolizing outside the handlers */
} threadcheck_snapshot;

/* Flags of threadcheck_capture_options. */
enum {
    THREADCHECK_NO_STACKS = 1u << 0,   /* /proc only: state, wait channel, system call */
    THREADCHECK_NO_SYMBOLS = 1u << 1,  /* stacks as addresses: no libdwfl at all */
    THREADCHECK_NO_LINES = 1u << 2,    /* function names but no file:line (no DWARF line tables) */
    THREADCHECK_GROUP_BY_ADDRESS = 1u << 3, /* the futex word is part of the group key */
};

typedef struct threadcheck_capture_options {
    unsigned flags;
    unsigned timeout_ms;    /* the wait ends when no thread answered for this long; 0 = 250 */
    int signal;             /* 0 = THREADCHECK_OPTIONS signal=, else SIGRTMIN+8 */
} threadcheck_capture_options;

/* Lists, captures and groups every thread of the calling process. `opts` may
 * be NULL (defaults). Returns NULL with errno set if /proc/self/task cannot be
 * read or memory runs out; the caller frees the result. Cost at 10,000
 * threads: see docs/threadcheck.md ("Cost"). */
THREADCHECK_API threadcheck_snapshot *threadcheck_snapshot_take(const threadcheck_capture_options *opts);

THREADCHECK_API void threadcheck_snapshot_free(threadcheck_snapshot *snapshot);

/* Writes the snapshot as Go's goroutine?debug=1 dump: one paragraph per
 * group, "COUNT @ top <- ... <- outermost", its state and wait, then one
 * "#\tADDRESS\tFUNCTION+OFFSET\tFILE:LINE" line per frame. Returns
 * THREADCHECK_OK, or THREADCHECK_ERROR with errno if writing failed. */
THREADCHECK_API int threadcheck_snapshot_print(const threadcheck_snapshot *snapshot, FILE *out);

/* The stack of a group as text, "f <- g <- h" from its top (first
 * non-system) frame, into buf (always NUL-terminated, truncated to len).
 * Returns the length the full text needs, like snprintf. */
THREADCHECK_API size_t threadcheck_group_stack_text(const threadcheck_group *group, char *buf, size_t len);

/* "captured", "not signalled", ... (static strings). */
THREADCHECK_API const char *threadcheck_stack_status_text(threadcheck_stack_status status);

/* A hook for tools built on threadcheck (orphans): symbolizes and groups
 * stacks the caller captured itself. stacks[i] holds lens[i] program
 * counters, innermost first; the first is exact when exact_first is true (an
 * interrupted pc), every other one a return address. tids may be NULL. The
 * threads of the result carry only tid, status (captured) and frames.
 * Returns NULL with errno on failure; free with threadcheck_snapshot_free. */
THREADCHECK_API threadcheck_snapshot *threadcheck_snapshot_from_stacks(const uintptr_t *const *stacks,
                                                                       const size_t *lens, const pid_t *tids,
                                                                       size_t n, bool exact_first, unsigned flags);

/* ---- the goleak half ------------------------------------------------------- */

/* The threads alive at a moment, by (TID, start time). */
typedef struct threadcheck_baseline threadcheck_baseline;

/* Records every thread alive now (goleak.IgnoreCurrent). Cheap: reads
 * /proc/self/task and each thread's stat, sends no signal. NULL + errno on
 * failure. */
THREADCHECK_API threadcheck_baseline *threadcheck_baseline_take(void);

THREADCHECK_API void threadcheck_baseline_free(threadcheck_baseline *baseline);

/* Number of threads recorded (the caller included). */
THREADCHECK_API size_t threadcheck_baseline_count(const threadcheck_baseline *baseline);

typedef struct threadcheck_options {
    /* Threads in this baseline are expected (goleak.IgnoreCurrent). NULL:
     * only the calling thread is. */
    const threadcheck_baseline *ignore_current;
    /* NULL-terminated lists of function names. ignore_top: a thread whose top
     * frame (first non-system frame) is one of these is expected
     * (goleak.IgnoreTopFunction); ignore_any: one with any of these anywhere
     * on its stack is (goleak.IgnoreAnyFunction). Names are compared after
     * dropping GCC clone suffixes (.isra.0, .constprop.0, .part.0, .cold). */
    const char *const *ignore_top;
    const char *const *ignore_any;
    /* Retry until this many ms have passed while unexpected threads remain,
     * sleeping 1, 2, 4, ... ms between tries, at most max_sleep_ms
     * (goleak.MaxRetryAttempts/MaxSleepInterval as a deadline). 0 = 1000 / 100. */
    unsigned deadline_ms;
    unsigned max_sleep_ms;
    /* Don't apply the built-in ignores (runtime threads of ThreadSanitizer and
     * other sanitizers, glibc's timer and AIO helpers: docs/threadcheck.md). */
    bool no_default_ignores;
    /* Capture options for the stacks (timeout, signal, flags). */
    threadcheck_capture_options capture;
} threadcheck_options;

/* goleak.Find: waits up to the deadline for every unexpected thread to end.
 * Returns THREADCHECK_OK when none is left, THREADCHECK_LEAKED when some
 * are (then *leftover, if `leftover` is not NULL, receives a snapshot of just
 * those threads, grouped: free it with threadcheck_snapshot_free), or
 * THREADCHECK_ERROR with errno. `opts` may be NULL (defaults). A thread whose
 * stack could not be captured cannot match an ignore rule: it counts as
 * unexpected (and says why in the report). Prints nothing. */
THREADCHECK_API int threadcheck_verify(const threadcheck_options *opts, threadcheck_snapshot **leftover);

/* goleak.VerifyNone: threadcheck_verify(), and when threads are left, the
 * failure message (threadcheck_report_print) on stderr. Returns the same
 * values, so a test can `return threadcheck_verify_none(&opts);` or
 * assert it is 0. */
THREADCHECK_API int threadcheck_verify_none(const threadcheck_options *opts);

/* The failure message for a leftover snapshot:
 *   threadcheck: found unexpected threads: N threads in G groups
 *   <the debug=1 dump of each group>
 *   threadcheck: SUMMARY: N unexpected threads in G groups
 * Returns THREADCHECK_OK or THREADCHECK_ERROR (errno) if writing failed. */
THREADCHECK_API int threadcheck_report_print(const threadcheck_snapshot *leftover, FILE *out);

/* Fills `opts` from a THREADCHECK_OPTIONS-style string ("deadline_ms=500:
 * ignore_top=f,g:ignore_any=h"). Lists it allocates stay valid until
 * threadcheck_options_release(opts). Returns THREADCHECK_OK, or
 * THREADCHECK_ERROR with a message naming the bad option in `why`. Keys that
 * only the preload check uses (exitcode, log_path, at_exit, verbosity) are
 * accepted and ignored here. */
THREADCHECK_API int threadcheck_options_parse(threadcheck_options *opts, const char *text, char *why, size_t why_len);
THREADCHECK_API void threadcheck_options_release(threadcheck_options *opts);

#ifdef __cplusplus
}
#endif

#endif
