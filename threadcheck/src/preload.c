/* preload.c - THREADCHECK_OPTIONS, and the check at process exit when the
 * library is preloaded (LD_PRELOAD=libthreadcheck.so ./program).
 *
 * At load time the constructor only decides whether the check is wanted (the
 * library is named in LD_PRELOAD, or THREADCHECK_OPTIONS says at_exit=1) and
 * registers it as an exit handler; it allocates nothing, prints nothing, and
 * a failure to register is silent (the program runs unchecked, as without the
 * library). Registered that early, the check runs after the program's own
 * exit handlers and C++ static destructors and after every shared library's
 * destructor (see the constructor at the end). Options
 * are parsed at exit; a bad one is reported then, with exit code 2. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern int __cxa_atexit(void (*fn)(void *), void *arg, void *dso_handle);

struct tc_config {
    threadcheck_options opts;
    int exitcode;
    char log_path[PATH_MAX];     /* "" = stderr */
    int at_exit;                 /* -1 = not said */
    int verbosity;
    bool help;
};

static const char options_help[] =
    "THREADCHECK_OPTIONS: KEY=VALUE pairs separated by ':' (or blanks):\n"
    "  exitcode=N            exit code when threads are left at exit (default 66, as ThreadSanitizer's)\n"
    "  deadline_ms=N         retry for up to N ms while threads wind down (default 1000)\n"
    "  max_sleep_ms=N        longest pause between two tries (default 100; pauses double from 1 ms)\n"
    "  ignore_top=F,G        ignore threads whose top frame is F or G (goleak.IgnoreTopFunction)\n"
    "  ignore_any=F,G        ignore threads with F or G anywhere on their stack (goleak.IgnoreAnyFunction)\n"
    "  default_ignores=0|1   ignore the runtime threads listed below (default 1)\n"
    "  log_path=PATH         write the report to PATH.PID (default: stderr; also 'stderr', 'stdout')\n"
    "  verbosity=0|1         1: say so when the check passes\n"
    "  capture_timeout_ms=N  how long a capture waits for a thread's answer (default 250)\n"
    "  signal=N              the capture signal (default SIGRTMIN+8); must have no handler of the program's\n"
    "  at_exit=0|1           check at exit (default: 1 when preloaded, 0 when linked)\n"
    "  help=1                print this text at exit\n"
    "default_ignores=1 ignores, each known by its library's code on its stack:\n";

/* The options, then the runtime threads ignored by default. */
static void print_help(FILE *out)
{
    char pools[2048];
    fputs(options_help, out);
    if (tc_default_ignores_help(pools, sizeof pools) > 0)
        fputs(pools, out);
}

static int parse_number(const char *key, const char *value, long long min, long long max, long long *out, char *why,
                        size_t why_len)
{
    char *end = NULL;
    errno = 0;
    long long v = (value[0] >= '0' && value[0] <= '9') ? strtoll(value, &end, 10) : -1;
    if (!end || *end != '\0' || errno == ERANGE || v < min || v > max) {
        snprintf(why, why_len, "%s=%s: expected an integer in [%lld, %lld]", key, value, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* A NULL-terminated list of the comma-separated names in `value`, in one
 * allocation (the array, then the strings). */
static const char *const *parse_list(const char *key, const char *value, char *why, size_t why_len)
{
    size_t count = 1;
    for (const char *p = value; *p; p++)
        count += *p == ',';
    size_t len = strlen(value) + 1;
    char **list = malloc((count + 1) * sizeof *list + len);
    if (!list) {
        snprintf(why, why_len, "%s: out of memory", key);
        return NULL;
    }
    char *text = (char *)(list + count + 1);
    memcpy(text, value, len);
    size_t n = 0;
    for (char *save = NULL, *name = strtok_r(text, ",", &save); name; name = strtok_r(NULL, ",", &save))
        list[n++] = name;
    list[n] = NULL;
    if (n != count) {
        free(list);
        snprintf(why, why_len, "%s=%s: expected function names separated by commas, none empty", key, value);
        return NULL;
    }
    return (const char *const *)list;
}

static void release_lists(threadcheck_options *o)
{
    free((void *)o->ignore_top);
    free((void *)o->ignore_any);
    o->ignore_top = o->ignore_any = NULL;
}

static int parse_config(const char *text, struct tc_config *c, char *why, size_t why_len)
{
    *c = (struct tc_config){.exitcode = TC_DEFAULT_EXITCODE, .at_exit = -1};
    if (!text)
        return 0;
    char *copy = strdup(text);
    if (!copy) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    int result = 0;
    for (char *save = NULL, *pair = strtok_r(copy, ": \t\n", &save); pair && result == 0;
         pair = strtok_r(NULL, ": \t\n", &save)) {
        char *eq = strchr(pair, '=');
        if (!eq || eq == pair || eq[1] == '\0') {
            snprintf(why, why_len, "'%s': expected KEY=VALUE", pair);
            result = -1;
            break;
        }
        *eq = '\0';
        const char *key = pair, *value = eq + 1;
        long long v = 0;
        if (strcmp(key, "exitcode") == 0) {
            result = parse_number(key, value, 0, 255, &v, why, why_len);
            c->exitcode = (int)v;
        } else if (strcmp(key, "deadline_ms") == 0) {
            result = parse_number(key, value, 1, 3600000, &v, why, why_len);
            c->opts.deadline_ms = (unsigned)v;
        } else if (strcmp(key, "max_sleep_ms") == 0) {
            result = parse_number(key, value, 1, 60000, &v, why, why_len);
            c->opts.max_sleep_ms = (unsigned)v;
        } else if (strcmp(key, "capture_timeout_ms") == 0) {
            result = parse_number(key, value, 1, 60000, &v, why, why_len);
            c->opts.capture.timeout_ms = (unsigned)v;
        } else if (strcmp(key, "signal") == 0) {
            result = parse_number(key, value, SIGRTMIN, SIGRTMAX, &v, why, why_len);
            c->opts.capture.signal = (int)v;
        } else if (strcmp(key, "ignore_top") == 0 || strcmp(key, "ignore_any") == 0) {
            const char *const *list = parse_list(key, value, why, why_len);
            const char *const **slot = key[7] == 't' ? &c->opts.ignore_top : &c->opts.ignore_any;
            free((void *)*slot);
            *slot = list;
            result = list ? 0 : -1;
        } else if (strcmp(key, "default_ignores") == 0) {
            result = parse_number(key, value, 0, 1, &v, why, why_len);
            c->opts.no_default_ignores = v == 0;
        } else if (strcmp(key, "log_path") == 0) {
            if (strlen(value) + 24 >= sizeof c->log_path) {
                snprintf(why, why_len, "log_path: longer than %zu characters", sizeof c->log_path - 24);
                result = -1;
            }
            snprintf(c->log_path, sizeof c->log_path, "%s", value);
        } else if (strcmp(key, "at_exit") == 0) {
            result = parse_number(key, value, 0, 1, &v, why, why_len);
            c->at_exit = (int)v;
        } else if (strcmp(key, "verbosity") == 0) {
            result = parse_number(key, value, 0, 1, &v, why, why_len);
            c->verbosity = (int)v;
        } else if (strcmp(key, "help") == 0) {
            result = parse_number(key, value, 0, 1, &v, why, why_len);
            c->help = v == 1;
        } else {
            snprintf(why, why_len, "unknown option '%s' (known: exitcode, deadline_ms, max_sleep_ms, ignore_top, "
                     "ignore_any, default_ignores, log_path, verbosity, capture_timeout_ms, signal, at_exit, help)",
                     key);
            result = -1;
        }
    }
    free(copy);
    if (result != 0)
        release_lists(&c->opts);
    return result;
}

int threadcheck_options_parse(threadcheck_options *opts, const char *text, char *why, size_t why_len)
{
    struct tc_config c;
    if (!opts) {
        errno = EINVAL;
        return THREADCHECK_ERROR;
    }
    if (parse_config(text, &c, why, why_len) != 0) {
        errno = EINVAL;
        return THREADCHECK_ERROR;
    }
    *opts = c.opts;
    return THREADCHECK_OK;
}

void threadcheck_options_release(threadcheck_options *opts)
{
    if (opts)
        release_lists(opts);
}

/* ---- the check at exit --------------------------------------------------------- */

/* Whether LD_PRELOAD names this library: an entry whose file name starts
 * with "libthreadcheck.so". */
static bool preloaded(void)
{
    const char *list = getenv("LD_PRELOAD");
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ": ");
        const char *base = p;
        for (const char *q = p; q < p + len; q++)
            if (*q == '/')
                base = q + 1;
        if ((size_t)(p + len - base) >= 17 && strncmp(base, "libthreadcheck.so", 17) == 0)
            return true;
        p += len;
        p += strspn(p, ": ");
    }
    return false;
}

static FILE *open_log(const struct tc_config *c, bool *close_it)
{
    *close_it = false;
    if (c->log_path[0] == '\0' || strcmp(c->log_path, "stderr") == 0)
        return stderr;
    if (strcmp(c->log_path, "stdout") == 0)
        return stdout;
    char path[PATH_MAX + 16]; /* log_path is at most PATH_MAX - 24 long */
    snprintf(path, sizeof path, "%s.%d", c->log_path, (int)getpid());
    FILE *f = fopen(path, "we");
    if (!f) {
        fprintf(stderr, "threadcheck: log_path: cannot open '%s': %s; writing to stderr\n", path, strerror(errno));
        return stderr;
    }
    *close_it = true;
    return f;
}

static void check_at_exit_here(void *unused)
{
    (void)unused;
    struct tc_config c;
    char why[512];
    int saved_errno = errno;
    if (parse_config(getenv("THREADCHECK_OPTIONS"), &c, why, sizeof why) != 0) {
        fprintf(stderr, "threadcheck: THREADCHECK_OPTIONS: %s\n", why);
        print_help(stderr);
        fflush(NULL);
        _exit(2);
    }
    if (c.help)
        print_help(stderr);
    threadcheck_snapshot *left = NULL;
    int result = threadcheck_verify(&c.opts, &left);
    bool close_it = false;
    if (result == THREADCHECK_LEAKED) {
        FILE *log = open_log(&c, &close_it);
        tc_report_print_where(left, log, " at exit", c.exitcode);
        if (close_it)
            fclose(log);
        threadcheck_snapshot_free(left);
        release_lists(&c.opts);
        /* exit() cannot be given another status from here: flush what the
         * program wrote (exit would have) and end with ours, as the
         * sanitizers do. */
        fflush(NULL);
        _exit(c.exitcode);
    }
    if (c.verbosity > 0 || result == THREADCHECK_ERROR) {
        FILE *log = open_log(&c, &close_it);
        if (result == THREADCHECK_ERROR)
            fprintf(log, "threadcheck: the check at exit could not run: %s\n", strerror(errno));
        else
            fprintf(log, "threadcheck: no unexpected threads at exit (pid %d)\n", (int)getpid());
        if (close_it)
            fclose(log);
    }
    release_lists(&c.opts);
    errno = saved_errno;
}

/* The check needs more stack than some threads have: exit() runs it on the
 * thread that called it, and a thread made with PTHREAD_STACK_MIN (16 KiB)
 * may call exit (measured: such a host died of SIGSEGV in the symbolizer).
 * So it runs on a stack of its own, mapped for the purpose (the same thread:
 * its TID, the one the check leaves out, does not change). */
enum { CHECK_STACK_BYTES = 1 << 20 };

static void check_at_exit(void *arg)
{
    (void)arg;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *stack = mmap(NULL, page + CHECK_STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) {
        check_at_exit_here(NULL);
        return;
    }
    mprotect(stack, page, PROT_NONE); /* a guard page below it */
    tc_call_on_stack(check_at_exit_here, NULL, stack + page + CHECK_STACK_BYTES);
    munmap(stack, page + CHECK_STACK_BYTES);
}

__attribute__((constructor)) static void threadcheck_preload_init(void)
{
    const char *env = getenv("THREADCHECK_OPTIONS");
    const char *at_exit = env ? strstr(env, "at_exit=") : NULL;
    bool wanted = at_exit ? at_exit[8] == '1' : preloaded();
    /* on_exit-style registration with no DSO handle: atexit() from a shared
     * library ties the handler to that library's finalisation (it would run
     * right after the executable's destructors, before those of the other
     * libraries). Registered here, before the C library registers the
     * dynamic loader's finaliser, it runs after every destructor, the
     * libraries' included: a library whose destructor joins its own thread
     * leaves nothing behind (threadcheck.preload, WhenTheCheckRuns). */
    if (wanted)
        (void)__cxa_atexit(check_at_exit, NULL, NULL); /* fails only without memory */
}
