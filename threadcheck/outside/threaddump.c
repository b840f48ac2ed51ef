/* threaddump - where every thread of a running process is, from outside:
 * a goroutine dump for pthreads (and any program with symbols).
 *
 * The dump, in the order it happens:
 *   1. validate PID and seize one thread, without stopping it: if ptrace is
 *      refused we say why (another tracer, Yama, another user) and stop here;
 *   2. load the process's modules and their unwind tables (libdw) while
 *      everything still runs;
 *   3. read every thread's state, wait channel and system call from /proc
 *      (as it was before we touched anything), then seize and interrupt each
 *      thread, except those a stop would harm (stopper.c, stop_would_show);
 *      collect the stops, and list the threads again for any created
 *      meanwhile;
 *   4. read every stopped thread's registers (a call the stop ended with
 *      EINTR is set to restart), unwind every stack (a thread left running
 *      from the registers /proc shows);
 *   5. detach every thread: the process runs on;
 *   6. name each distinct PC once (function, file:line, inlined calls) and
 *      print one JSON document.
 * Threads are held from the first interrupt to the detach; naming happens
 * after they run again.
 * stopper.c explains why the process is never left stopped or traced, even
 * when this program is killed. `leaklab threads PID` (scripts/threads.py)
 * groups the threads by stack and prints them like Go's debug=1 dump. */
#include "threaddump.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    DEFAULT_MAX_FRAMES = 256,
    MAX_MAX_FRAMES = 65536,
    MAX_ROUNDS = 8, /* listings of /proc/PID/task; a second one normally finds nothing new */
};
#define DEFAULT_STOP_TIMEOUT_S 2.0

/* ---- leaving on a signal ---- */

static void on_terminate(int sig)
{
    /* Async-signal-safe: write and _exit. Exiting is all it takes: the
     * kernel detaches every thread we traced and they run on. */
    static const char msg[] = "threaddump: interrupted by a signal; exiting (the kernel detaches every thread "
                              "this process traced, and they run on)\n";
    (void)sig;
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(TD_EXIT_SYSTEM);
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_terminate};
    sigemptyset(&sa.sa_mask);
    int fatal[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigaction(fatal[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);  /* a closed stdout is an error to report, not a death */
    signal(SIGCHLD, SIG_DFL);  /* an inherited SIG_IGN would change how tracees are reaped */
}

/* ---- options ---- */

struct options {
    pid_t pid;
    double stop_timeout_s;
    int max_frames;
    const char *pause_after; /* NULL, "seized" or "stopped" */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: threaddump [options] PID\n"
            "\n"
            "Stops every thread of process PID with ptrace (PTRACE_SEIZE and PTRACE_INTERRUPT:\n"
            "no signal is sent), unwinds each stack with elfutils' libdw, lets the threads go,\n"
            "and prints one JSON document on stdout: each thread's state, wait channel and\n"
            "system call as /proc showed them, and its stack as indexes into a table of\n"
            "named locations (function, file:line, inlined calls). `leaklab threads PID`\n"
            "groups the threads by stack and prints them like Go's goroutine dump.\n"
            "\n"
            "options:\n"
            "  --stop-timeout SEC   give up on the threads that have not stopped once SEC seconds\n"
            "                       pass with no thread stopping (a thread in uninterruptible\n"
            "                       sleep stops only when it wakes) (default %g; 0.01 to 600)\n"
            "  --max-frames N       deepest stack to unwind (default %d; 1 to %d)\n"
            "  --pause-after PHASE  for tests: after PHASE (seized: every thread interrupted;\n"
            "                       stopped: every thread stopped, registers read) say so on\n"
            "                       stderr and wait for a line, or end of file, on stdin\n"
            "  -h, --help           this text\n"
            "\n"
            "The process is never left stopped or traced, even if threaddump is killed: a dead\n"
            "tracer's tracees are detached by the kernel, and no SIGSTOP is ever sent. A system\n"
            "call a stop ends with EINTR (epoll_wait, sigtimedwait...) is set to restart; a thread\n"
            "in a transfer a stop would cut short (write, send, splice...) is not stopped at all,\n"
            "and its stack is read from the registers /proc shows (fate \"unstopped\").\n"
            "Separate debug info is looked up locally (/usr/lib/debug); DEBUGINFOD_URLS is ignored.\n"
            "\n"
            "exit codes: 0 dumped; 2 bad usage, no such process, or it exited before any thread\n"
            "was unwound; 99 ptrace refused (the cause and the remedy are printed) or a system failure\n",
            DEFAULT_STOP_TIMEOUT_S, DEFAULT_MAX_FRAMES, MAX_MAX_FRAMES);
}

static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("threaddump: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see threaddump --help)\n", stderr);
    va_end(ap);
    return TD_EXIT_USAGE;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_STOP_TIMEOUT = 256, OPT_MAX_FRAMES, OPT_PAUSE_AFTER };
    static const struct option longs[] = {
        {"stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT},
        {"max-frames", required_argument, NULL, OPT_MAX_FRAMES},
        {"pause-after", required_argument, NULL, OPT_PAUSE_AFTER},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    *o = (struct options){.stop_timeout_s = DEFAULT_STOP_TIMEOUT_S, .max_frames = DEFAULT_MAX_FRAMES};
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "+:h", longs, NULL)) != -1;) {
        char *end;
        switch (c) {
        case 'h':
            usage(stdout);
            exit(TD_EXIT_OK);
        case OPT_STOP_TIMEOUT:
            errno = 0;
            o->stop_timeout_s = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->stop_timeout_s >= 0.01 && o->stop_timeout_s <= 600))
                return bad_usage("--stop-timeout: '%s' is not a number of seconds in [0.01, 600]", optarg);
            break;
        case OPT_MAX_FRAMES: {
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || n < 1 || n > MAX_MAX_FRAMES)
                return bad_usage("--max-frames: '%s' is not an integer in [1, %d]", optarg, MAX_MAX_FRAMES);
            o->max_frames = (int)n;
            break;
        }
        case OPT_PAUSE_AFTER:
            if (strcmp(optarg, "seized") != 0 && strcmp(optarg, "stopped") != 0)
                return bad_usage("--pause-after: '%s'; accepted: seized, stopped", optarg);
            o->pause_after = optarg;
            break;
        case ':':
            return bad_usage("option '%s' needs a value", argv[optind - 1]);
        default:
            return bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind == argc)
        return bad_usage("missing PID: the process to dump");
    if (optind + 1 < argc)
        return bad_usage("unexpected argument '%s' after the PID", argv[optind + 1]);
    const char *text = argv[optind];
    char *end;
    errno = 0;
    long long pid = strtoll(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end)
        return bad_usage("PID: '%s' is not a number; expected a process id (a positive integer)", text);
    if (errno || pid < 1 || pid > INT_MAX)
        return bad_usage("PID: %s is out of range; expected a process id in [1, %d]", text, INT_MAX);
    o->pid = (pid_t)pid;
    return TD_EXIT_OK;
}

static void pause_here(const char *phase, const struct target *t)
{
    size_t stopped = 0;
    for (size_t i = 0; i < t->nthreads; i++)
        stopped += t->threads[i].fate == FATE_STOPPED;
    fprintf(stderr, "threaddump: paused after %s (%zu of %zu threads stopped); waiting for a line on stdin\n",
            phase, stopped, t->nthreads);
    for (char c; read(STDIN_FILENO, &c, 1) > 0 && c != '\n';)
        ;
}

/* ---- JSON ---- */

struct out {
    char *buf;
    size_t len, cap;
    bool failed;
};

static void out_printf(struct out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = o->cap - o->len;
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? 2 * o->cap : 1 << 20;
        while (cap - o->len <= (size_t)n)
            cap *= 2;
        char *more = realloc(o->buf, cap);
        if (!more) {
            o->failed = true;
            return;
        }
        o->buf = more;
        o->cap = cap;
    }
}

static void out_string(struct out *o, const char *s)
{
    if (!s) {
        out_printf(o, "null");
        return;
    }
    out_printf(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            out_printf(o, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            out_printf(o, "\\u%04x", *p);
        else
            out_printf(o, "%c", *p);
    }
    out_printf(o, "\"");
}

static const char *fate_name(enum fate f)
{
    switch (f) {
    case FATE_DETACHED: return "unwound";
    case FATE_LATE: return "late";
    case FATE_GONE: return "gone";
    case FATE_REFUSED: return "refused";
    case FATE_STOPPED: return "stopped";
    case FATE_SEIZED: return "seized";
    case FATE_LISTED: return "listed";
    case FATE_UNSTOPPED: return "unstopped";
    }
    return "?";
}

static void stop_text(const struct thread *th, char *buf, size_t len)
{
    switch (th->stop_kind) {
    case STOP_INTERRUPT: snprintf(buf, len, "interrupt"); break;
    case STOP_SIGNAL: snprintf(buf, len, "signal %s", sigabbrev_np(th->stop_signal) ?: "?"); break;
    case STOP_GROUP: snprintf(buf, len, "group-stop"); break;
    default: snprintf(buf, len, "%s", th->fate == FATE_UNSTOPPED ? "none" : "");
    }
}

struct timings {
    double start, prepared, stopped, unwound, detached, named;
    double seizing, waiting; /* within the stop phase: listing, /proc and seize+interrupt; then the waits */
};

static void write_json(struct out *o, const struct target *t, const struct timings *tm, size_t detached)
{
    size_t counts[FATE_UNSTOPPED + 1] = {0};
    for (size_t i = 0; i < t->nthreads; i++)
        counts[t->threads[i].fate]++;
    out_printf(o, "{\"tool\":\"threaddump\",\"format\":1,\"pid\":%d,\"command\":", t->pid);
    out_string(o, t->comm);
    out_printf(o, ",\"exe\":");
    out_string(o, t->exe[0] ? t->exe : NULL);
    size_t restarted = 0;
    for (size_t i = 0; i < t->nthreads; i++)
        restarted += t->threads[i].restarted;
    out_printf(o,
               ",\"exited\":%s,\"threads_seen\":%zu,\"unwound\":%zu,\"late\":%zu,\"gone\":%zu,\"refused\":%zu,"
               "\"unstopped\":%zu,\"restarted\":%zu",
               t->exited ? "true" : "false", t->nthreads, detached, counts[FATE_LATE], counts[FATE_GONE],
               counts[FATE_REFUSED], counts[FATE_UNSTOPPED], restarted);
    out_printf(o,
               ",\"timing_s\":{\"prepare\":%.4f,\"stop\":%.4f,\"stop_seize\":%.4f,\"stop_wait\":%.4f,"
               "\"unwind\":%.4f,\"detach\":%.4f,\"symbolize\":%.4f,\"total\":%.4f,\"target_stopped\":%.4f}",
               tm->prepared - tm->start, tm->stopped - tm->prepared, tm->seizing, tm->waiting, tm->unwound - tm->stopped,
               tm->detached - tm->unwound, tm->named - tm->detached, tm->named - tm->start,
               t->first_interrupt_s > 0 ? tm->detached - t->first_interrupt_s : 0.0);

    out_printf(o, ",\n\"modules\":[");
    for (size_t i = 0; i < t->nmodules; i++) {
        const struct module *m = &t->modules[i];
        out_printf(o, "%s\n{\"id\":%zu,\"name\":", i ? "," : "", i);
        out_string(o, m->name);
        out_printf(o, ",\"start\":\"0x%" PRIx64 "\",\"end\":\"0x%" PRIx64 "\",\"build_id\":", m->start, m->end);
        out_string(o, m->build_id[0] ? m->build_id : NULL);
        out_printf(o, "}");
    }
    out_printf(o, "],\n\"locations\":[");
    for (size_t i = 0; i < t->nlocations; i++) {
        const struct location *l = &t->locations[i];
        out_printf(o, "%s\n{\"id\":%zu,\"address\":\"0x%" PRIx64 "\",\"activation\":%s,\"module\":", i ? "," : "", i,
                   l->pc, l->activation ? "true" : "false");
        if (l->module >= 0)
            out_printf(o, "%d", l->module);
        else
            out_printf(o, "null");
        out_printf(o, ",\"frames\":[");
        for (uint32_t k = 0; k < l->nframes; k++) {
            const struct frame *f = &l->frames[k];
            out_printf(o, "%s{\"function\":", k ? "," : "");
            out_string(o, f->function);
            out_printf(o, ",\"symbol\":");
            out_string(o, f->symbol);
            out_printf(o, ",\"offset\":%" PRIu64 ",\"file\":", f->offset);
            out_string(o, f->file);
            out_printf(o, ",\"line\":%d,\"inlined\":%s}", f->line, f->inlined ? "true" : "false");
        }
        out_printf(o, "]}");
    }
    out_printf(o, "],\n\"threads\":[");
    for (size_t i = 0; i < t->nthreads; i++) {
        const struct thread *th = &t->threads[i];
        char stop[48], state[2] = {th->state, '\0'};
        stop_text(th, stop, sizeof stop);
        out_printf(o, "%s\n{\"tid\":%d,\"name\":", i ? "," : "", th->tid);
        out_string(o, th->name);
        out_printf(o, ",\"state\":");
        out_string(o, state);
        out_printf(o, ",\"wchan\":");
        out_string(o, th->wchan);
        out_printf(o, ",\"syscall\":");
        out_string(o, th->syscall);
        if (th->has_wait_address)
            out_printf(o, ",\"wait_address\":\"0x%" PRIx64 "\"", th->wait_address);
        else
            out_printf(o, ",\"wait_address\":null");
        out_printf(o, ",\"fate\":\"%s\",\"stop\":", fate_name(th->fate));
        out_string(o, stop[0] ? stop : NULL);
        out_printf(o, ",\"restarted\":%s", th->restarted ? "true" : "false");
        out_printf(o, ",\"stack\":[");
        for (uint32_t k = 0; k < th->depth; k++)
            out_printf(o, "%s%" PRIu32, k ? "," : "", th->stack[k]);
        out_printf(o, "],\"error\":");
        out_string(o, th->error[0] ? th->error : NULL);
        out_printf(o, "}");
    }
    out_printf(o, "]}\n");
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt;
    int rc = parse_options(argc, argv, &opt);
    if (rc)
        return rc;
    install_signals();
    unsetenv("DEBUGINFOD_URLS"); /* no network lookups, and no waiting on them with threads stopped */

    struct timings tm = {.start = now_s()};
    struct target t;
    if ((rc = target_open(&t, opt.pid)) || (rc = target_probe(&t)))
        return rc; /* exiting releases the probe's thread */
    struct unwinder *u = unwinder_new(&t);
    if (!u)
        return TD_EXIT_SYSTEM;
    tm.prepared = now_s();

    for (int round = 0; round < MAX_ROUNDS; round++) {
        double round_start = now_s();
        size_t found = seize_new_threads(&t);
        tm.seizing += now_s() - round_start;
        if (t.refused)
            return TD_EXIT_SYSTEM;
        if (round > 0 && found == 0)
            break;
        if (round == 0 && opt.pause_after && strcmp(opt.pause_after, "seized") == 0)
            pause_here("seized", &t);
        double wait_start = now_s();
        await_stops(&t, opt.stop_timeout_s);
        tm.waiting += now_s() - wait_start;
    }
    tm.stopped = now_s();
    read_registers(&t);
    if (opt.pause_after && strcmp(opt.pause_after, "stopped") == 0)
        pause_here("stopped", &t);

    unwind_all(u, opt.max_frames);
    recheck_unstopped(&t);
    tm.unwound = now_s();
    size_t detached = detach_all(&t);
    tm.detached = now_s();
    symbolize_all(u);
    tm.named = now_s();
    t.exited = t.exited || target_gone(&t);

    size_t with_stack = 0;
    for (size_t i = 0; i < t.nthreads; i++)
        with_stack += t.threads[i].depth > 0;

    struct out o = {0};
    write_json(&o, &t, &tm, detached);
    if (o.failed) {
        fprintf(stderr, "threaddump: out of memory while writing the dump\n");
        return TD_EXIT_SYSTEM;
    }
    if (write_all(STDOUT_FILENO, o.buf, o.len) != 0) {
        fprintf(stderr, "threaddump: cannot write the dump to stdout: %s\n", strerror(errno));
        return TD_EXIT_SYSTEM;
    }
    if (t.exited && with_stack == 0) {
        fprintf(stderr, "threaddump: process %d exited during the dump, before any thread could be unwound\n",
                t.pid);
        return TD_EXIT_USAGE;
    }
    unwinder_free(u);
    return TD_EXIT_OK;
}
