/* internal.h - what threadcheck's source files share; nothing here is API. */
#ifndef THREADCHECK_INTERNAL_H
#define THREADCHECK_INTERNAL_H

#include "threadcheck.h"

#include <stdatomic.h>

#define TC_HIDDEN __attribute__((visibility("hidden")))

enum {
    TC_DEFAULT_TIMEOUT_MS = 250,
    TC_DEFAULT_DEADLINE_MS = 1000,
    TC_DEFAULT_MAX_SLEEP_MS = 100,
    TC_DEFAULT_EXITCODE = 66,
};

/* A thread as captured, before symbolization: raw program counters. */
typedef struct tc_raw_thread {
    threadcheck_thread info;         /* frames == NULL until symbolized */
    uintptr_t pcs[THREADCHECK_MAX_FRAMES];
    int npcs;
    int first_exact;                 /* index of the frame whose pc is exact (interrupted), -1 none */
    bool from_proc;                  /* not signalled: unwind from /proc's view (tc_unwind_from_proc) */
    uintptr_t sp;                    /* /proc's stack pointer, with pcs[0] and info.syscall */
    unsigned long args[6];           /* the system call's arguments (its argument registers) */
} tc_raw_thread;

/* Unwinds every raw thread marked from_proc from the stack pointer, pc and
 * argument registers /proc showed, without signalling it (unwind_proc.c). */
TC_HIDDEN void tc_unwind_from_proc(int taskfd, tc_raw_thread *raw, size_t n);

/* Which threads to capture: all, or only those a filter accepts (by TID). */
typedef bool (*tc_tid_filter)(pid_t tid, unsigned long long start_time, void *arg);

/* Reads and captures the threads of this process; fills *out (calloc'd
 * array) and *n. Returns 0 or -1 with errno. `why` receives the reason when
 * stacks could not be captured at all (static string). */
TC_HIDDEN int tc_capture(const threadcheck_capture_options *opts, tc_tid_filter filter, void *arg,
                         tc_raw_thread **out, size_t *n, const char **why, int *signal_used);

/* Symbolizes and groups raw threads into a snapshot (takes ownership of raw). */
TC_HIDDEN threadcheck_snapshot *tc_build_snapshot(tc_raw_thread *raw, size_t n, unsigned flags,
                                                  const char *why, int signal_used, double capture_ms);

/* Name of a system call by number ("futex"), or NULL. */
TC_HIDDEN const char *tc_syscall_name(long nr);

/* The capture signal from THREADCHECK_OPTIONS (signal=N), else the default. */
TC_HIDDEN int tc_default_signal(void);

TC_HIDDEN double tc_now_ms(void);

/* Calls fn(arg) with the stack pointer at `top`, then puts it back
 * (x86_64 and aarch64; elsewhere on the current stack). */
TC_HIDDEN void tc_call_on_stack(void (*fn)(void *), void *arg, void *top);

/* The runtime pools ignored by default, one indented line each, into buf
 * (for help=1). Returns the length, or -1. */
TC_HIDDEN int tc_default_ignores_help(char *buf, size_t len);

/* Source-level name of a symbol: GCC clone suffixes dropped, into buf. */
TC_HIDDEN const char *tc_source_name(const char *fn, char *buf, size_t len);

/* The failure message; `where` is "" or " at exit"; exitcode < 0: none. */
TC_HIDDEN int tc_report_print_where(const threadcheck_snapshot *s, FILE *out, const char *where, int exitcode);

/* Index of the first non-system frame (nframes when none). */
TC_HIDDEN size_t tc_top_frame(const threadcheck_thread *t);

#endif
