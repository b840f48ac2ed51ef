/* preload.c - the check at exit, and on a signal, when liborphans is
 * preloaded (LD_PRELOAD=liborphans.so ./program).
 *
 * At load time the constructor parses ORPHANS_OPTIONS (without malloc) and
 * registers the check with atexit() when it is wanted (liborphans is named
 * in LD_PRELOAD, or at_exit=1); nothing else, unless report_signal=N asked
 * for reports on a signal: then it also installs that signal's handler and
 * starts one thread of its own that waits on a pipe (the handler only
 * writes a byte to it: async-signal-safe) and runs the analysis outside any
 * handler. Every failure at load is silent (the program runs unchecked,
 * as without the library); a bad ORPHANS_OPTIONS is reported at exit, with
 * exit status 2. */

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static or_config config;
static char config_error[256];
static int report_pipe[2] = {-1, -1};

static bool preloaded(void)
{
    const char *list = getenv("LD_PRELOAD");
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ": ");
        const char *base = p;
        for (const char *q = p; q < p + len; q++)
            if (*q == '/')
                base = q + 1;
        if ((size_t)(p + len - base) >= 13 && strncmp(base, "liborphans.so", 13) == 0)
            return true;
        p += len;
        p += strspn(p, ": ");
    }
    return false;
}

static FILE *open_log(bool *close_it)
{
    *close_it = false;
    if (config.log_path[0] == '\0' || strcmp(config.log_path, "stderr") == 0)
        return stderr;
    if (strcmp(config.log_path, "stdout") == 0)
        return stdout;
    char path[sizeof config.log_path + 16];
    snprintf(path, sizeof path, "%s.%d", config.log_path, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
    if (!f) {
        fprintf(stderr, "orphans: log_path: cannot open '%s': %s; writing to stderr\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return stderr;
    }
    *close_it = true;
    return f;
}

struct check_call {
    const char *where;
    const ucontext_t *uc;
    uintptr_t sp;
    int status;
};

/* The analysis and the report, on orphans' own stack (or_on_own_stack):
 * the thread calling exit() may have a small one. A report is written when
 * threads leaked, or when asked (verbosity, unreachable): an analysis that
 * could not be made (incomplete, unsupported) says why at verbosity=1 and
 * is otherwise silent, since it adds nothing the program asked for. */
static void check_on_own_stack(void *arg)
{
    struct check_call *call = arg;
    orphans_result *r = or_find(&config, call->uc, call->sp);
    if (!r) {
        call->status = ORPHANS_ERROR;
        return;
    }
    int status = r->status;
    if (status == ORPHANS_FOUND || config.verbosity > 0 || config.unreachable) {
        bool close_it;
        FILE *log = open_log(&close_it);
        or_result_print_where(r, log, call->where, config.verbosity, config.unreachable);
        if (close_it)
            fclose(log);
    }
    orphans_result_free(r);
    call->status = status;
}

/* Runs the analysis from here (the caller's context saved at this frame)
 * and writes the report; returns the status. */
static __attribute__((noinline)) int check(const char *where)
{
    ucontext_t uc; /* as api.c's CALLER_CONTEXT: scan from above this frame */
    memset(&uc, 0, sizeof uc);
    getcontext(&uc);
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0) + 2 * sizeof(void *);
    struct check_call call = {where, &uc, sp, ORPHANS_ERROR};
    or_on_own_stack(check_on_own_stack, &call);
    return call.status;
}

static void check_at_exit(void)
{
    int saved_errno = errno;
    if (config_error[0]) {
        fprintf(stderr, "orphans: ORPHANS_OPTIONS: %s\n%s", config_error, or_options_help);
        fflush(NULL);
        _exit(2);
    }
    if (config.help)
        fprintf(stderr, "%s", or_options_help);
    if (check(" at exit") == ORPHANS_FOUND && config.exitcode != 0) {
        /* exit() cannot be given another status from here: flush what the
         * program wrote (exit would have) and end with ours, as the
         * sanitizers do. */
        fflush(NULL);
        _exit(config.exitcode);
    }
    errno = saved_errno;
}

static void on_report_signal(int sig)
{
    (void)sig;
    int saved_errno = errno;
    char byte = 1;
    (void)!write(report_pipe[1], &byte, 1);
    errno = saved_errno;
}

static void *reporter(void *arg)
{
    (void)arg;
    for (;;) {
        char byte;
        ssize_t n = read(report_pipe[0], &byte, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        char where[48];
        snprintf(where, sizeof where, " on signal %d", config.report_signal);
        check(where);
    }
}

static void start_reporter(void)
{
    if (pipe2(report_pipe, O_CLOEXEC) != 0)
        return;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&thread, &attr, reporter, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0)
        return;
    pthread_setname_np(thread, "orphans-report");
    struct sigaction sa = {0};
    sa.sa_handler = on_report_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(config.report_signal, &sa, NULL);
}

__attribute__((constructor)) static void orphans_preload_init(void)
{
    or_config_defaults(&config);
    if (or_config_parse(&config, getenv("ORPHANS_OPTIONS"), config_error, sizeof config_error) != 0) {
        if (preloaded())
            (void)atexit(check_at_exit); /* to say what is wrong, at exit */
        return;
    }
    or_creation_enable(config.creation_stacks);
    bool wanted = config.at_exit >= 0 ? config.at_exit == 1 : preloaded();
    if (wanted)
        (void)atexit(check_at_exit); /* fails only without memory: then the program runs unchecked */
    if (config.report_signal)
        start_reporter();
}
