/* harness.c - ll_main(): the command line, the watchdog, the events and the
 * exit codes, so that a scenario file holds only its story.
 *
 * Events are JSON lines written with one write(2) each to stdout or --events
 * FILE: a line is never torn, and nothing waits in a stdio buffer when the
 * process is killed. The watchdog is alarm(2) with a handler that writes a
 * pre-formatted `end` line and calls _exit(99): no extra thread, so thread
 * counts in snapshots are the scenario's own plus main. */
#include "internal.h"
#include "thread_limits.h"
#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifdef LL_HEAP_PROFILER
#include <gperftools/heap-profiler.h>
#endif

enum { CANARY_BYTES = 31337 };
/* massif's canary: 84 x 64 KiB (a whole number of pages at any page size). */
enum { CANARY_MAP_BYTES = 84 * 65536 };

/* ---- events ---- */

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Writes `{"event":NAME,"t":SECONDS,<body>}\n` as one write. */
static void emit(ll_run *run, const char *event, const ll_buf *body)
{
    ll_buf line = {0};
    ll_buf_printf(&line, "{\"event\":\"%s\",\"t\":%.6f%s%.*s}\n", event, seconds_since(&run->started),
                  body && body->len ? "," : "", body ? (int)body->len : 0, body ? body->data : "");
    pthread_mutex_lock(&run->events_lock);
    for (size_t off = 0; off < line.len;) {
        ssize_t n = write(run->events_fd, line.data + off, line.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the reader went away; the scenario still runs to its end */
        off += (size_t)n;
    }
    pthread_mutex_unlock(&run->events_lock);
    ll_buf_free(&line);
}

void ll_event(ll_run *run, const char *event, const char *fields_json)
{
    ll_buf body = {0};
    ll_buf_printf(&body, "%s", fields_json);
    emit(run, event, &body);
    ll_buf_free(&body);
}

static void dump_heap_profile(ll_run *run, const char *phase, ll_buf *body)
{
#ifdef LL_HEAP_PROFILER
    if (!run->heap_profile_dir)
        return;
    /* GetHeapProfile() rather than HeapProfilerDump(): the file is named after
     * the phase, so the runner never has to guess which numbered dump is which. */
    char path[4096];
    snprintf(path, sizeof path, "%s/%02d-%s.heap", run->heap_profile_dir, ++run->heap_profile_seq, phase);
    char *profile = GetHeapProfile();
    FILE *f = fopen(path, "we");
    if (!profile || !f || fputs(profile, f) == EOF || fclose(f) != 0) {
        int err = errno;
        free(profile);
        ll_refuse(run, "writing the heap profile", err, "check that --heap-profile names a writable directory");
    }
    free(profile);
    ll_buf_printf(body, ",\"heap_profile\":");
    ll_buf_json_string(body, path);
#else
    (void)run, (void)phase, (void)body;
#endif
}

static void hold_at(ll_run *run, const char *phase);

void ll_phase(ll_run *run, const char *phase)
{
    ll_buf body = {0};
    ll_buf_printf(&body, "\"phase\":");
    ll_buf_json_string(&body, phase);
    ll_buf_printf(&body, ",");
    ll_snapshot_json(&body, run->scenario->counters);
    dump_heap_profile(run, phase, &body);
    emit(run, "phase", &body);
    ll_buf_free(&body);
    hold_at(run, phase);
}

/* ---- failures ---- */

static ll_run *the_run; /* for the signal handlers; set once before any thread starts */

static void emit_end(ll_run *run, int status, const char *reason)
{
    ll_buf body = {0};
    ll_buf_printf(&body, "\"status\":%d,\"reason\":", status);
    ll_buf_json_string(&body, reason);
    emit(run, "end", &body);
    ll_buf_free(&body);
}

_Noreturn void ll_refuse(ll_run *run, const char *what, int err, const char *remedy)
{
    char reason[2048];
    snprintf(reason, sizeof reason, "%s failed after %ld threads started by this run: %s. %s", what,
             atomic_load(&run->threads_started), strerror(err), remedy);
    emit_end(run, LL_EXIT_SYSTEM, reason);
    fprintf(stderr, "%s: %s\n", run->scenario->name, reason);
    /* _exit, not exit: other threads may be mid-work; the process ends with
     * all of them, so nothing is left behind. */
    _exit(LL_EXIT_SYSTEM);
}

_Noreturn void ll_skip(ll_run *run, const char *reason)
{
    emit_end(run, LL_EXIT_SKIP, reason);
    fprintf(stderr, "%s: skipped: %s\n", run->scenario->name, reason);
    _exit(LL_EXIT_SKIP); /* as ll_refuse: other threads may be mid-work */
}

void *ll_xmalloc(ll_run *run, size_t bytes) { return ll_xrealloc(run, NULL, bytes); }

void *ll_xrealloc(ll_run *run, void *old, size_t bytes)
{
    void *p = realloc(old, bytes);
    if (!p && bytes)
        ll_refuse(run, "malloc", ENOMEM, "lower the scale (--workers, --elements) or free memory on this machine");
    return p;
}

void ll_thread_start(ll_run *run, pthread_t *thread, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (run->scenario->thread_stack_bytes)
        pthread_attr_setstacksize(&attr, run->scenario->thread_stack_bytes);
    if (!run->guard_pages)
        pthread_attr_setguardsize(&attr, 0);
    int err = pthread_create(thread, &attr, fn, arg);
    if (err) {
        /* EAGAIN stands for any of half a dozen limits: name the one hit. */
        size_t stack = 0, guard = 0;
        pthread_attr_getstacksize(&attr, &stack);
        pthread_attr_getguardsize(&attr, &guard);
        ll_limit_readings limits;
        ll_limits_read("/", &limits);
        char why[1536];
        ll_limits_explain(&limits, stack + guard, why, sizeof why);
        ll_refuse(run, "pthread_create", err, why);
    }
    pthread_attr_destroy(&attr);
    atomic_fetch_add(&run->threads_started, 1);
}

/* The watchdog and signal paths may only use async-signal-safe calls, so their
 * end lines are formatted before they can be needed. */
static char timeout_line[512], interrupt_line[256], hold_end_line[256];
static volatile sig_atomic_t holding;

static void write_all(int fd, const char *s)
{
    for (size_t len = strlen(s), off = 0; off < len;) {
        ssize_t n = write(fd, s + off, len - off);
        if (n <= 0)
            return;
        off += (size_t)n;
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    write_all(the_run->events_fd, timeout_line);
    write_all(2, "leaklab: watchdog: the run did not end within --timeout; "
                 "raise --timeout or lower the scale\n");
    _exit(LL_EXIT_SYSTEM);
}

static void on_terminate(int sig)
{
    (void)sig;
    write_all(the_run->events_fd, holding ? hold_end_line : interrupt_line);
    _exit(holding ? LL_EXIT_OK : LL_EXIT_SYSTEM);
}

static void arm_signals(ll_run *run, long long timeout_s)
{
    snprintf(timeout_line, sizeof timeout_line,
             "{\"event\":\"end\",\"status\":99,\"reason\":\"watchdog: no end after --timeout %lld s\"}\n",
             timeout_s);
    snprintf(interrupt_line, sizeof interrupt_line,
             "{\"event\":\"end\",\"status\":99,\"reason\":\"interrupted by a signal before the end\"}\n");
    snprintf(hold_end_line, sizeof hold_end_line,
             "{\"event\":\"end\",\"status\":0,\"reason\":\"hold ended by a signal\"}\n");
    the_run = run;
    struct sigaction sa = {0};
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_terminate;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* A reader that closes the events pipe must not kill us silently. */
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)timeout_s);
}

/* Keeps the process as it is for `seconds` (-1: until SIGTERM/SIGINT, which end it
 * with exit 0), after a `hold` event that says so. The watchdog is off meanwhile. */
static void hold_here(ll_run *run, long long seconds, const char *phase)
{
    holding = 1;
    /* --hold-at: the allocator's figures as the hold starts, read before this event's own
     * buffer exists, so an outside look (memstats' tests) compares with the heap it sees:
     * the phase's snapshot was read while the harness was still building that event. */
    ll_alloc_stats a = {0};
    if (phase)
        ll_alloc_read(&a);
    ll_buf body = {0};
    if (seconds == LL_HOLD_FOR_DRIVER)
        ll_buf_printf(&body, "\"until\":\"driver\"");
    else
        ll_buf_printf(&body, "\"seconds\":%lld", seconds);
    if (phase) {
        ll_buf_printf(&body, ",\"phase\":");
        ll_buf_json_string(&body, phase);
        ll_buf_printf(&body, ",\"alloc\":{\"allocator\":\"%s\",\"in_use_bytes\":%lld,\"free_held_bytes\":%lld,"
                      "\"released_bytes\":%lld,\"arenas\":%lld}", a.allocator, (long long)a.in_use_bytes,
                      (long long)a.free_held_bytes, (long long)a.released_bytes, (long long)a.arenas);
    }
    emit(run, "hold", &body);
    ll_buf_free(&body);
    if (seconds == LL_HOLD_FOR_DRIVER) { /* the watchdog still runs: a driver that never answers ends in 99 */
        ll_await_driver(run, LL_HOLD_DRIVER_WORD);
        holding = 0;
        return;
    }
    struct timespec left = {seconds < 0 ? 0 : seconds, 0};
    if (seconds < 0)
        for (;;)
            pause();
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
    holding = 0;
}

/* --hold-at PHASE[:SECONDS]: hold at the first phase of that name (an outside tool
 * such as `leaklab memstats` looks at the process there), then carry on with the
 * watchdog's time as it was. */
static void hold_at(ll_run *run, const char *phase)
{
    for (int i = 0; i < run->hold_at_count; i++) {
        struct ll_hold_at *h = &run->hold_at[i];
        if (strcmp(h->phase, phase) != 0)
            continue;
        h->phase[0] = '\0'; /* once: a phase such as `idle` comes again and again */
        if (h->seconds == LL_HOLD_FOR_DRIVER) {
            hold_here(run, h->seconds, phase);
            return;
        }
        unsigned watchdog_left = alarm(0);
        hold_here(run, h->seconds, phase);
        alarm(watchdog_left ? watchdog_left : 1);
        return;
    }
}

/* ---- the driver's word on stdin ---- */

void ll_await_driver(ll_run *run, const char *word)
{
    /* read(2) a byte at a time rather than fgets: stdio would allocate a
     * buffer for stdin, and heap profiles would charge it to the scenario. */
    char line[128];
    size_t len = 0;
    for (char c; len + 1 < sizeof line;) {
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ll_refuse(run, "waiting for the driver", EPIPE, "the runner closed stdin before saying it was done");
        if (c == '\n')
            break;
        line[len++] = c;
    }
    line[len] = '\0';
    if (strcmp(line, word) != 0) {
        char remedy[256];
        snprintf(remedy, sizeof remedy, "expected the line '%s' on stdin, got '%.100s'", word, line);
        ll_refuse(run, "waiting for the driver", EPROTO, remedy);
    }
}

/* ---- options ---- */

static void print_help(const ll_scenario *s)
{
    printf("usage: %s [--variant NAME] [--scale quick|seed] [options]\n\n%s\n\nvariants:\n", s->name, s->summary);
    for (size_t i = 0; s->variants[i].name; i++)
        printf("  %-8s %s%s\n", s->variants[i].name, s->variants[i].summary, i == 0 ? " (default)" : "");
    printf("\nscenario options (integers; default at --scale seed / quick; accepted range):\n");
    for (size_t i = 0; s->options[i].name; i++) {
        const ll_option *o = &s->options[i];
        printf("  --%-16s %s\n  %-18s   %s; default %lld / %lld; range [%lld, %lld]\n", o->name, o->help, "",
               o->unit, o->seed, o->quick, o->min, o->max);
    }
    printf("\nharness options:\n"
           "  --variant NAME      which variant to run\n"
           "  --scale quick|seed  defaults for the scenario options (seed: the incident's scale)\n"
           "  --events FILE       write the JSON-lines events to FILE instead of stdout\n"
           "  --timeout SECONDS   watchdog: exit 99 if the run has not ended by then (default %d)\n"
           "  --hold SECONDS|forever\n"
           "                      after the last phase keep the process (and its blocked threads)\n"
           "                      alive for inspection; SIGTERM/SIGINT end it with an end event\n"
           "  --hold-at PHASE[:SECONDS|:driver]\n"
           "                      the same at the first phase of that name (default: until a signal),\n"
           "                      then go on; the `hold` event names the phase. :driver holds until\n"
           "                      the line '" LL_HOLD_DRIVER_WORD "' on stdin (a [[driver]]'s send), watchdog running;\n"
           "                      up to %d times, one phase each\n"
           "  --heap-profile DIR  dump a gperftools heap profile at every phase (tcmalloc builds)\n"
           "  --guard-pages on|off  thread stack guard pages (default on; see docs/tools.md)\n"
           "  --canary            plant one definite leak of %d bytes, for tool canaries\n"
           "  --canary-thread     leave one finished thread unjoined (ThreadSanitizer's canary)\n"
           "  --canary-stuck-thread  leave one thread blocked for good (threadcheck's canary)\n"
           "  --canary-orphan     leave one thread blocked on a condition variable whose only\n"
           "                      pointer was dropped (orphans' canary)\n"
           "  --canary-lock-order take two locks in both orders, one thread after the other\n"
           "                      (a lock-order inversion that cannot deadlock: Helgrind's canary)\n"
           "  --canary-race       two threads write one variable, ordered only by a pipe\n"
           "                      (a data race to a race detector: DRD's canary)\n"
           "  --canary-map        map, touch and keep 5,505,024 bytes of anonymous pages\n"
           "                      (what a page-level profiler must count: massif's canary)\n"
           "  --help              this text\n"
           "\nexit codes: 0 ran as designed, 2 bad usage, 99 refused resource or timeout\n",
           LL_DEFAULT_TIMEOUT_S, LL_MAX_HOLD_AT, CANARY_BYTES);
}

/* The canary: one block of a size no scenario uses, its only pointer dropped,
 * so a leak checker that works must call it definitely lost. noinline keeps
 * the allocation in a frame of its own that the caller's later calls overwrite. */
__attribute__((noinline)) static void ll_canary_leak(void)
{
    volatile char *block = malloc(CANARY_BYTES);
    if (block)
        block[0] = 1;
    block = NULL;
}

/* The thread canary: a thread that has finished but is never joined, which
 * a thread-leak checker (ThreadSanitizer) must report. Main waits until the
 * thread has returned, so the leak is certain, not a race with exit. */
static pthread_mutex_t canary_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t canary_done = PTHREAD_COND_INITIALIZER;
static bool canary_returned;

static void *canary_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&canary_lock);
    canary_returned = true;
    pthread_cond_signal(&canary_done);
    pthread_mutex_unlock(&canary_lock);
    return NULL;
}

static void ll_canary_unjoined_thread(ll_run *run)
{
    pthread_t thread;
    ll_thread_start(run, &thread, canary_thread, NULL);
    pthread_mutex_lock(&canary_lock);
    while (!canary_returned)
        pthread_cond_wait(&canary_done, &canary_lock);
    pthread_mutex_unlock(&canary_lock);
    /* Not joined, on purpose. Returning from canary_thread happens right
     * after the unlock above; a thread checker reports the thread as leaked
     * at exit whether or not its last instructions have run by then. */
}

/* A canary thread that stays (stuck, orphan) is the harness's, not the
 * program's: it must never take a process-directed signal the program sends
 * itself, trusting its own threads to block it (mooncake_signal's fixed twin
 * sends SIGUSR1 to the process; a canary thread with the signal's default
 * action killed the run). It starts with the standard signals blocked, the
 * faults aside; the real-time ones stay open (orphans stops threads with
 * one, glibc keeps two for itself). */
static void canary_thread_start(ll_run *run, pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t block, old;
    sigemptyset(&block);
    for (int sig = 1; sig < SIGRTMIN; sig++)
        if (sig != SIGSEGV && sig != SIGBUS && sig != SIGFPE && sig != SIGILL && sig != SIGTRAP && sig != SIGSYS)
            sigaddset(&block, sig);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    ll_thread_start(run, thread, fn, arg); /* it inherits the mask */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* threadcheck's canary: a thread left blocked on purpose on a condition
 * variable nobody signals, alive at exit, which a check for threads that
 * outlive their work must report. Main returns once the thread is waiting. */
static pthread_cond_t stuck_forever = PTHREAD_COND_INITIALIZER;
static bool stuck_parked;

__attribute__((noinline)) static void *ll_canary_stuck(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&canary_lock);
    stuck_parked = true;
    pthread_cond_signal(&canary_done);
    for (;;)
        pthread_cond_wait(&stuck_forever, &canary_lock); /* never signalled */
    return NULL;
}

static void ll_canary_stuck_thread(ll_run *run)
{
    pthread_t thread;
    canary_thread_start(run, &thread, ll_canary_stuck, NULL);
    pthread_mutex_lock(&canary_lock);
    while (!stuck_parked)
        pthread_cond_wait(&canary_done, &canary_lock);
    pthread_mutex_unlock(&canary_lock);
}

/* orphans' canary: a thread blocked on a condition variable whose only
 * pointer was dropped. The box is malloc'ed and handed to the thread alone;
 * main waits (on the box's other condition variable) until the thread
 * sleeps, then returns and forgets the box; the thread is detached, so no
 * pthread_t of it is kept either. No thread that can run and no global
 * reaches the box: a reachability analysis must call the thread leaked,
 * while threadcheck's stuck thread (a global condition variable) must not be. */
struct orphan_box {
    pthread_mutex_t lock;
    pthread_cond_t parked, never;
    bool waiting;
};

__attribute__((noinline)) static void *ll_canary_orphan(void *arg)
{
    struct orphan_box *box = arg;
    pthread_mutex_lock(&box->lock);
    box->waiting = true;
    pthread_cond_signal(&box->parked);
    for (;;)
        pthread_cond_wait(&box->never, &box->lock); /* nobody else knows `never` */
    return NULL;
}

__attribute__((noinline)) static void ll_canary_orphan_thread(ll_run *run)
{
    struct orphan_box *box = ll_xmalloc(run, sizeof *box);
    *box = (struct orphan_box){.waiting = false};
    pthread_mutex_init(&box->lock, NULL);
    pthread_cond_init(&box->parked, NULL);
    pthread_cond_init(&box->never, NULL);
    pthread_t thread;
    canary_thread_start(run, &thread, ll_canary_orphan, box);
    pthread_detach(thread);
    pthread_mutex_lock(&box->lock);
    while (!box->waiting)
        pthread_cond_wait(&box->parked, &box->lock);
    pthread_mutex_unlock(&box->lock);
}

/* Helgrind's canary: a lock-order inversion that cannot deadlock. A thread
 * takes A then B and ends; main joins it, then takes B then A. No run ever
 * waits, yet a lock-order checker (Helgrind, TSan's detect_deadlocks) must
 * see the cycle in its graph of lock orders. */
static pthread_mutex_t canary_a = PTHREAD_MUTEX_INITIALIZER, canary_b = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) static void *ll_canary_a_then_b(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&canary_a);
    pthread_mutex_lock(&canary_b);
    pthread_mutex_unlock(&canary_b);
    pthread_mutex_unlock(&canary_a);
    return NULL;
}

__attribute__((noinline)) static void ll_canary_lock_order(ll_run *run)
{
    pthread_t thread;
    ll_thread_start(run, &thread, ll_canary_a_then_b, NULL);
    pthread_join(thread, NULL);
    pthread_mutex_lock(&canary_b);
    pthread_mutex_lock(&canary_a);
    pthread_mutex_unlock(&canary_a);
    pthread_mutex_unlock(&canary_b);
}

/* DRD's canary: a data race. A thread writes canary_racy, then a byte into a
 * pipe; main reads the byte, then writes canary_racy. The pipe orders the
 * two writes in fact (the canary is deterministic), but Valgrind's race
 * detectors model no syscalls as synchronisation, so to them the writes are
 * concurrent. volatile keeps both stores. */
static volatile int canary_racy;

__attribute__((noinline)) static void *ll_canary_racer(void *arg)
{
    int *fds = arg;
    canary_racy = 1;
    ssize_t n = write(fds[1], "r", 1);
    (void)n;
    return NULL;
}

__attribute__((noinline)) static void ll_canary_race(ll_run *run)
{
    int fds[2];
    char byte;
    if (pipe(fds) != 0) {
        fprintf(stderr, "--canary-race: pipe: %s (free file descriptors)\n", strerror(errno));
        exit(LL_EXIT_SYSTEM);
    }
    pthread_t thread;
    ll_thread_start(run, &thread, ll_canary_racer, fds);
    while (read(fds[0], &byte, 1) < 0 && errno == EINTR)
        ;
    canary_racy = 2;
    pthread_join(thread, NULL);
    close(fds[0]);
    close(fds[1]);
}

/* massif's canary (--pages-as-heap): anonymous pages mapped by a call of
 * their own, every page touched (resident too), kept to exit: the profile must
 * charge exactly CANARY_MAP_BYTES to ll_canary_map at its last snapshot. */
__attribute__((noinline)) static void ll_canary_map(void)
{
    char *pages = mmap(NULL, CANARY_MAP_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED) {
        fprintf(stderr, "--canary-map: mmap of %d bytes: %s (free memory or raise ulimit -v)\n", CANARY_MAP_BYTES,
                strerror(errno));
        exit(LL_EXIT_SYSTEM);
    }
    for (size_t i = 0; i < CANARY_MAP_BYTES; i += 4096)
        ((volatile char *)pages)[i] = 1;
}

int ll_main(const ll_scenario *s, int argc, char **argv)
{
    static ll_run run;
    size_t nopts = ll_option_count(s);
    run.values = calloc(nopts + 1, sizeof *run.values);
    if (!run.values) {
        fprintf(stderr, "%s: out of memory at start\n", s->name);
        return LL_EXIT_SYSTEM;
    }
    ll_cli cli;
    char msg[1024];
    int status = ll_cli_parse(s, argc, argv, &run, &cli, msg, sizeof msg);
    if (status == LL_EXIT_SYSTEM) {
        fprintf(stderr, "%s: %s\n", s->name, msg);
        return LL_EXIT_SYSTEM;
    }
    if (status != LL_EXIT_OK) {
        fprintf(stderr, "%s: %s\nTry '%s --help'.\n", s->name, msg, s->name);
        exit(LL_EXIT_USAGE);
    }
    if (cli.help) {
        print_help(s);
        return LL_EXIT_OK;
    }
    run.events_fd = STDOUT_FILENO;
    run.guard_pages = cli.guard_pages;
    run.heap_profile_dir = cli.heap_profile_dir;
    run.hold_at = cli.hold_at;
    run.hold_at_count = cli.hold_at_count;
    pthread_mutex_init(&run.events_lock, NULL);
    long long timeout_s = cli.timeout_s, hold_s = cli.hold_s;
    bool canary = cli.canary, canary_thread_wanted = cli.canary_thread;
    const char *events_path = cli.events_path;

    if (events_path) {
        run.events_fd = open(events_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (run.events_fd < 0) {
            fprintf(stderr, "%s: --events: cannot open '%s': %s\n", s->name, events_path, strerror(errno));
            return LL_EXIT_USAGE;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &run.started);
    arm_signals(&run, timeout_s);

    ll_alloc_stats alloc = {0};
    ll_alloc_read(&alloc);
    ll_buf start = {0};
    ll_buf_printf(&start, "\"scenario\":\"%s\",\"variant\":\"%s\",\"scale\":\"%s\",\"allocator\":\"%s\",\"pid\":%ld,"
                  "\"params\":{", s->name, run.variant->name, run.scale, alloc.allocator, (long)getpid());
    for (size_t i = 0; i < nopts; i++)
        ll_buf_printf(&start, "%s\"%s\":%lld", i ? "," : "", s->options[i].name, run.values[i]);
    ll_buf_printf(&start, "},\"t0_monotonic_s\":%.6f,\"payload_bytes\":%llu,\"workers\":%llu,\"timeout_s\":%lld,\"guard_pages\":%s,"
                  "\"canary_bytes\":%d,\"canary_threads\":%d,\"canary_stuck_threads\":%d,\"canary_orphans\":%d,"
                  "\"canary_lock_orders\":%d,\"canary_races\":%d,\"canary_map_bytes\":%d",
                  (double)run.started.tv_sec + (double)run.started.tv_nsec / 1e9,
                  (unsigned long long)run.payload.bytes, (unsigned long long)run.payload.workers, timeout_s,
                  run.guard_pages ? "true" : "false", canary ? CANARY_BYTES : 0,
                  canary_thread_wanted ? 1 : 0, cli.canary_stuck_thread ? 1 : 0, cli.canary_orphan ? 1 : 0,
                  cli.canary_lock_order ? 1 : 0, cli.canary_race ? 1 : 0, cli.canary_map ? CANARY_MAP_BYTES : 0);
    emit(&run, "start", &start);
    ll_buf_free(&start);

#ifdef LL_HEAP_PROFILER
    if (run.heap_profile_dir) {
        char prefix[4096];
        snprintf(prefix, sizeof prefix, "%s/periodic", run.heap_profile_dir);
        HeapProfilerStart(prefix);
    }
#endif
    if (canary)
        ll_canary_leak();
    if (canary_thread_wanted)
        ll_canary_unjoined_thread(&run);
    if (cli.canary_stuck_thread)
        ll_canary_stuck_thread(&run);
    if (cli.canary_orphan)
        ll_canary_orphan_thread(&run);
    if (cli.canary_lock_order)
        ll_canary_lock_order(&run);
    if (cli.canary_race)
        ll_canary_race(&run);
    if (cli.canary_map)
        ll_canary_map();

    run.variant->run(&run);

    if (hold_s != 0) {
        /* Hold for inspection: the watchdog no longer applies, the user asked
         * to keep the process; a signal (or the hold running out) ends it. */
        alarm(0);
        hold_here(&run, hold_s, NULL); /* -1: forever */
    }
#ifdef LL_HEAP_PROFILER
    /* Every phase has its profile; without this gperftools adds one more at
     * exit ("Exiting"), which names no phase. */
    if (run.heap_profile_dir)
        HeapProfilerStop();
#endif
    emit_end(&run, LL_EXIT_OK, "ran as designed");
    /* exit(), not _exit(): leak checkers (LeakSanitizer, the heap checker) run
     * from exit handlers. A leaky variant's threads stay blocked meanwhile,
     * touching nothing exit() tears down. */
    exit(LL_EXIT_OK);
}
