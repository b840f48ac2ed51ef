/* verify.c - the goleak half: a baseline of the threads alive now, and a
 * check that no other thread is alive, retried with backoff up to a
 * deadline, with goleak's ignore rules and its failure message. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- baseline ---------------------------------------------------------------- */

struct threadcheck_baseline {
    size_t n;
    struct member { pid_t tid; unsigned long long start_time; } members[];
};

static int by_tid(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    return (x->tid > y->tid) - (x->tid < y->tid);
}

threadcheck_baseline *threadcheck_baseline_take(void)
{
    threadcheck_capture_options opts = {.flags = THREADCHECK_NO_STACKS};
    tc_raw_thread *raw = NULL;
    size_t n = 0;
    const char *why;
    int sig;
    if (tc_capture(&opts, NULL, NULL, &raw, &n, &why, &sig) != 0)
        return NULL;
    threadcheck_baseline *b = malloc(sizeof *b + n * sizeof b->members[0]);
    if (!b) {
        free(raw);
        errno = ENOMEM;
        return NULL;
    }
    b->n = n;
    for (size_t i = 0; i < n; i++)
        b->members[i] = (struct member){raw[i].info.tid, raw[i].info.start_time};
    free(raw);
    qsort(b->members, n, sizeof b->members[0], by_tid);
    return b;
}

void threadcheck_baseline_free(threadcheck_baseline *baseline) { free(baseline); }

size_t threadcheck_baseline_count(const threadcheck_baseline *baseline) { return baseline ? baseline->n : 0; }

struct filter_arg {
    const threadcheck_baseline *baseline;
    pid_t caller;
};

/* The threads a verify looks at: not the caller, not in the baseline (a TID
 * reused by a new thread has another start time, so it is looked at). */
static bool unexpected_candidate(pid_t tid, unsigned long long start_time, void *arg)
{
    const struct filter_arg *f = arg;
    if (tid == f->caller)
        return false;
    if (!f->baseline)
        return true;
    struct member key = {tid, 0};
    const struct member *m = bsearch(&key, f->baseline->members, f->baseline->n, sizeof key, by_tid);
    return !(m && m->start_time == start_time);
}

/* ---- ignore rules ------------------------------------------------------------- */

static bool name_in(const char *fn, const char *const *list)
{
    if (!fn || !list)
        return false;
    char name[256], want[256];
    tc_source_name(fn, name, sizeof name);
    for (size_t i = 0; list[i]; i++)
        if (strcmp(name, tc_source_name(list[i], want, sizeof want)) == 0)
            return true;
    return false;
}

/* Runtime threads the program did not start itself, ignored by default as
 * goleak ignores the Go runtime's own goroutines (isStdLibStack,
 * isSyscallStack). Each is known by its library's own code on its stack,
 * never by its thread name alone:
 *   - by function, where the library's symbols are there to name it
 *     (glibc's helpers, jemalloc, the sanitizers);
 *   - by module, for the pools of libraries shipped stripped (libgomp,
 *     OpenBLAS, GLib: their start routines are static functions without a
 *     symbol): a thread whose stack is complete (captured down to the C
 *     library's start_thread/clone) and whose every frame outside the C
 *     library is in the pool's library. An idle pool thread is that; a pool
 *     thread stuck in the program's own code (an OpenMP region's body, a
 *     GThreadPool task) has a frame of the program's, and is reported.
 * THREADCHECK_OPTIONS=help=1 prints this table (tc_default_ignores_help). */
struct runtime_pool {
    const char *name;         /* for help=1 */
    const char *modules[3];   /* substrings of the module path; NULL-terminated */
    const char *functions[4]; /* any of them on the stack (with symbols); NULL-terminated */
    bool whole_stack;         /* also: every non-C-library frame in `modules` (stripped libraries) */
};

static const struct runtime_pool runtime_pools[] = {
    {"glibc timer_create(SIGEV_THREAD) helper", {"libc.so", "librt.so"}, {"timer_helper_thread"}, false},
    {"glibc POSIX AIO helpers (aio_read...)", {"libc.so", "librt.so"}, {"handle_fildes_io"}, false},
    {"glibc getaddrinfo_a helpers", {"libc.so", "libanl.so"}, {"handle_requests"}, false},
    {"jemalloc background purging thread", {NULL}, {"background_thread_entry"}, false},
    {"libgomp (OpenMP) thread pool", {"libgomp.so"}, {"gomp_thread_start"}, true},
    {"OpenBLAS worker threads", {"openblas"}, {"blas_thread_server"}, true},
    {"GLib thread pool, worker (gmain) and GDBus threads", {"libglib-2.0.so", "libgio-2.0.so", "libgobject-2.0.so"},
     {"g_thread_pool_thread_proxy", "glib_worker_main", "gdbus_shared_thread_func"}, true},
};

int tc_default_ignores_help(char *buf, size_t len)
{
    size_t used = 0;
    for (size_t i = 0; i < sizeof runtime_pools / sizeof runtime_pools[0] && used < len; i++) {
        int n = snprintf(buf + used, len - used, "                          %s\n", runtime_pools[i].name);
        if (n < 0)
            return -1;
        used += (size_t)n;
    }
    int n = used < len ? snprintf(buf + used, len - used,
                                  "                          the sanitizers' background threads\n")
                       : 0;
    return n < 0 ? -1 : (int)(used + (size_t)n);
}

static bool module_in(const char *module, const char *const *list)
{
    if (!list[0])
        return true; /* any module (jemalloc is often linked into the program) */
    for (size_t i = 0; module && i < 3 && list[i]; i++)
        if (strstr(module, list[i]))
            return true;
    return false;
}

/* The C library's own frames: start_thread and clone at the bottom of every
 * thread, the system-call wrappers at the top. */
static bool in_c_library(const threadcheck_frame *f)
{
    static const char *const libc[] = {"/libc.so", "/ld-linux", NULL};
    return f->module && (strstr(f->module, libc[0]) || strstr(f->module, libc[1]));
}

/* The stack is whole (not cut short, and it ends in the C library's
 * start_thread/clone: the frame above those is its start routine) and every
 * frame outside the C library is in the pool's library. */
static bool whole_stack_in(const threadcheck_thread *t, const struct runtime_pool *pool)
{
    if (t->truncated || t->nframes < 3 ||
        !in_c_library(&t->frames[t->nframes - 1]))
        return false;
    size_t own = 0;
    for (size_t i = 0; i < t->nframes; i++) {
        if (in_c_library(&t->frames[i]))
            continue;
        if (!module_in(t->frames[i].module, pool->modules))
            return false;
        own++;
    }
    return own > 0;
}

static bool default_ignored(const threadcheck_thread *t)
{
    for (size_t p = 0; p < sizeof runtime_pools / sizeof runtime_pools[0]; p++) {
        const struct runtime_pool *pool = &runtime_pools[p];
        for (size_t i = 0; i < t->nframes; i++)
            if (module_in(t->frames[i].module, pool->modules) && name_in(t->frames[i].function, pool->functions))
                return true;
        if (pool->whole_stack && whole_stack_in(t, pool))
            return true;
    }
    for (size_t i = 0; i < t->nframes; i++) {
        const char *fn = t->frames[i].function;
        /* __tsan::BackgroundThread, __sanitizer::BackgroundThread (mangled) */
        if (fn && strstr(fn, "BackgroundThread") && (strstr(fn, "__tsan") || strstr(fn, "__sanitizer")))
            return true;
    }
    return false;
}

static bool ignored(const threadcheck_group *g, const threadcheck_options *opts)
{
    const threadcheck_thread *t = g->thread;
    if (t->nframes == 0)
        return false; /* no stack, nothing to match: it counts */
    if (!opts->no_default_ignores && default_ignored(t))
        return true;
    if (g->top < t->nframes && name_in(t->frames[g->top].function, opts->ignore_top))
        return true;
    for (size_t i = 0; i < t->nframes; i++)
        if (name_in(t->frames[i].function, opts->ignore_any))
            return true;
    return false;
}

/* ---- verify --------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec left = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

struct tid_index {
    pid_t tid;
    size_t at;
};

static int by_tid_index(const void *a, const void *b)
{
    const struct tid_index *x = a, *y = b;
    return (x->tid > y->tid) - (x->tid < y->tid);
}

/* One look: the unexpected threads now, as a grouped snapshot (NULL + errno
 * on failure); *count = how many. */
static threadcheck_snapshot *look(const threadcheck_options *opts, struct filter_arg *fa, size_t *count)
{
    double t0 = tc_now_ms();
    tc_raw_thread *raw = NULL;
    size_t n = 0;
    const char *why = NULL;
    int sig = 0;
    if (tc_capture(&opts->capture, unexpected_candidate, fa, &raw, &n, &why, &sig) != 0)
        return NULL;
    /* A copy of the raw threads survives the grouping, to rebuild the
     * snapshot from the unexpected ones only. */
    tc_raw_thread *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (n && !copy) {
        free(raw);
        errno = ENOMEM;
        return NULL;
    }
    if (n)
        memcpy(copy, raw, n * sizeof *copy);
    threadcheck_snapshot *all = tc_build_snapshot(raw, n, opts->capture.flags, why, sig, tc_now_ms() - t0);
    if (!all) {
        free(copy);
        return NULL;
    }
    size_t kept = 0;
    bool any_ignored = false;
    for (size_t g = 0; g < all->ngroups; g++) {
        if (ignored(&all->groups[g], opts)) {
            any_ignored = true;
            continue;
        }
        kept += all->groups[g].count;
    }
    *count = kept;
    if (!any_ignored) {
        free(copy);
        return all;
    }
    /* Rebuild from the threads of the groups that count. */
    tc_raw_thread *left = malloc((kept ? kept : 1) * sizeof *left);
    if (!left) {
        free(copy);
        threadcheck_snapshot_free(all);
        errno = ENOMEM;
        return NULL;
    }
    /* all->threads[i] is copy[i] (the grouping keeps the order): mark the
     * threads of ignored groups through a TID-sorted index. */
    bool *drop = calloc(n ? n : 1, sizeof *drop);
    struct tid_index *index = malloc((n ? n : 1) * sizeof *index);
    if (!drop || !index) {
        free(drop);
        free(index);
        free(left);
        free(copy);
        threadcheck_snapshot_free(all);
        errno = ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        index[i] = (struct tid_index){copy[i].info.tid, i};
    qsort(index, n, sizeof *index, by_tid_index);
    for (size_t g = 0; g < all->ngroups; g++) {
        if (!ignored(&all->groups[g], opts))
            continue;
        for (size_t m = 0; m < all->groups[g].count; m++) {
            struct tid_index key = {all->groups[g].tids[m], 0};
            const struct tid_index *hit = bsearch(&key, index, n, sizeof key, by_tid_index);
            if (hit)
                drop[hit->at] = true;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!drop[i])
            left[k++] = copy[i];
    free(drop);
    free(index);
    threadcheck_snapshot_free(all);
    free(copy);
    return tc_build_snapshot(left, k, opts->capture.flags, why, sig, tc_now_ms() - t0);
}

int threadcheck_verify(const threadcheck_options *user, threadcheck_snapshot **leftover)
{
    threadcheck_options opts = user ? *user : (threadcheck_options){0};
    unsigned deadline_ms = opts.deadline_ms ? opts.deadline_ms : TC_DEFAULT_DEADLINE_MS;
    unsigned max_sleep = opts.max_sleep_ms ? opts.max_sleep_ms : TC_DEFAULT_MAX_SLEEP_MS;
    struct filter_arg fa = {opts.ignore_current, (pid_t)syscall(SYS_gettid)};
    if (leftover)
        *leftover = NULL;
    double deadline = tc_now_ms() + deadline_ms;
    for (unsigned sleep = 1;; sleep = sleep * 2 > max_sleep ? max_sleep : sleep * 2) {
        size_t count = 0;
        threadcheck_snapshot *now = look(&opts, &fa, &count);
        if (!now)
            return THREADCHECK_ERROR;
        if (count == 0) {
            threadcheck_snapshot_free(now);
            return THREADCHECK_OK;
        }
        double left = deadline - tc_now_ms();
        if (left <= 0) {
            if (leftover)
                *leftover = now;
            else
                threadcheck_snapshot_free(now);
            return THREADCHECK_LEAKED;
        }
        threadcheck_snapshot_free(now);
        sleep_ms(sleep < left ? sleep : (unsigned)left + 1);
    }
}

/* ---- the failure message ------------------------------------------------------ */

int tc_report_print_where(const threadcheck_snapshot *s, FILE *out, const char *where, int exitcode)
{
    if (!s || !out) {
        errno = EINVAL;
        return THREADCHECK_ERROR;
    }
    size_t total = 0;
    for (size_t g = 0; g < s->ngroups; g++)
        total += s->groups[g].count;
    fprintf(out, "threadcheck: found unexpected threads%s: %zu thread%s in %zu group%s (pid %d)\n\n", where, total,
            total == 1 ? "" : "s", s->ngroups, s->ngroups == 1 ? "" : "s", (int)s->pid);
    if (threadcheck_snapshot_print(s, out) != THREADCHECK_OK)
        return THREADCHECK_ERROR;
    if (s->stacks_unavailable)
        fprintf(out, "threadcheck: stacks were not captured: %s\n", s->stacks_unavailable);
    fprintf(out, "threadcheck: SUMMARY: %zu unexpected thread%s in %zu group%s", total, total == 1 ? "" : "s",
            s->ngroups, s->ngroups == 1 ? "" : "s");
    if (exitcode >= 0)
        fprintf(out, " (exit code %d)", exitcode);
    fprintf(out, "\n");
    fflush(out);
    if (ferror(out)) {
        errno = EIO;
        return THREADCHECK_ERROR;
    }
    return THREADCHECK_OK;
}

int threadcheck_report_print(const threadcheck_snapshot *leftover, FILE *out)
{
    return tc_report_print_where(leftover, out, "", -1);
}

int threadcheck_verify_none(const threadcheck_options *opts)
{
    threadcheck_snapshot *left = NULL;
    int result = threadcheck_verify(opts, &left);
    if (result == THREADCHECK_LEAKED)
        threadcheck_report_print(left, stderr);
    else if (result == THREADCHECK_ERROR)
        fprintf(stderr, "threadcheck: the check could not run: %s\n", strerror(errno));
    threadcheck_snapshot_free(left);
    return result;
}
