/* api.c - orphans_find() and friends: the entry points a test calls. */

#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <ucontext.h>

static pthread_mutex_t analysis_lock = PTHREAD_MUTEX_INITIALIZER; /* one analysis at a time */

/* A fork while an analysis holds the lock (building its result after the
 * world was released: other threads run then, and may fork): the child has
 * no such analysis, only the locked mutex, and would deadlock in its own
 * (at its exit, preloaded). The child starts unlocked. */
static void analysis_lock_child(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    analysis_lock = fresh;
    or_own_after_fork();
}

__attribute__((constructor)) static void api_init(void)
{
    (void)pthread_atfork(NULL, NULL, analysis_lock_child); /* fails only without memory */
}

static double process_cpu_ms(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

struct find_call {
    const or_config *cfg;
    const void *caller_ucontext;
    uintptr_t caller_sp;
    orphans_result *result;
};

static void find_on_own_stack(void *arg)
{
    struct find_call *call = arg;
    double t0 = or_now_ms(), c0 = or_cpu_ms(), p0 = process_cpu_ms();
    pthread_mutex_lock(&analysis_lock);
    or_creation_enable(call->cfg->creation_stacks);
    or_analysis a;
    memset(&a, 0, sizeof a);
    a.cfg = *call->cfg;
    or_analyze(&a, call->caller_ucontext, call->caller_sp);
    orphans_result *r = or_result_build(&a);
    or_analysis_free(&a);
    pthread_mutex_unlock(&analysis_lock);
    if (r) {
        r->total_ms = or_now_ms() - t0;
        or_result_set_cpu(r, or_cpu_ms() - c0, process_cpu_ms() - p0);
    }
    call->result = r;
}

/* The caller's stack is only scanned (from caller_sp up): the analysis runs
 * on a stack of its own, so a thread with a small stack can call it (at
 * exit, any thread may be the caller). */
orphans_result *or_find(const or_config *cfg, const void *caller_ucontext, uintptr_t caller_sp)
{
    struct find_call call = {cfg, caller_ucontext, caller_sp, NULL};
    or_on_own_stack(find_on_own_stack, &call);
    return call.result;
}

/* The caller's registers, saved at the entry, and its stack pointer: the
 * stack above this function's frame (its return address, then the caller's
 * frames). This frame itself holds the half-filled ucontext and stale words
 * of earlier calls, so it is not scanned; the registers come from uc. */
#define CALLER_CONTEXT(uc, sp)                                   \
    ucontext_t uc;                                               \
    memset(&uc, 0, sizeof uc);                                   \
    getcontext(&uc);                                             \
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0) + 2 * sizeof(void *)

static __attribute__((noinline)) orphans_result *find_from(const char *options, const ucontext_t *uc, uintptr_t sp)
{
    or_config cfg;
    or_config_defaults(&cfg);
    char why[256] = "";
    if (or_config_parse(&cfg, options ? options : getenv("ORPHANS_OPTIONS"), why, sizeof why) != 0) {
        char text[300];
        snprintf(text, sizeof text, "%s: %s", options ? "options" : "ORPHANS_OPTIONS", why);
        return or_result_error(ORPHANS_ERROR, text);
    }
    return or_find(&cfg, uc, sp);
}

__attribute__((visibility("default"), noinline)) orphans_result *orphans_find(const char *options)
{
    CALLER_CONTEXT(uc, sp);
    return find_from(options, &uc, sp);
}

__attribute__((visibility("default"), noinline)) int orphans_verify_none(const char *options)
{
    CALLER_CONTEXT(uc, sp);
    orphans_result *r = find_from(options, &uc, sp);
    if (!r) {
        fprintf(stderr, "orphans: out of memory for the result\n");
        return ORPHANS_ERROR;
    }
    int status = r->status;
    if (status != ORPHANS_NONE)
        orphans_result_print(r, stderr);
    orphans_result_free(r);
    return status;
}
