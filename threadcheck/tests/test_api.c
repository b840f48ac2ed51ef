/* test_api.c - threadcheck's API, one case per CTest test (label threadcheck):
 *
 *   test_api CASE
 *
 * Every case checks both sides: what must be reported is reported, and
 * what must pass passes, so a library that always says "no leak" (or always
 * "leak") fails. Threads are synchronised with condition variables; the one
 * timed wait is the winding-down thread, whose slowness is what the retry
 * case is about. Exit 0 pass, 1 fail, 2 unknown case. */
#include <threadcheck.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

/* ---- threads to look at ---------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;       /* park() waits on it */
static pthread_cond_t parked_changed = PTHREAD_COND_INITIALIZER; /* the test waits on it */
static int parked;        /* threads waiting in park() */
static bool released;     /* park() returns once this is set */

/* Waits on `changed` until released: a thread blocked where a test left it. */
__attribute__((noinline)) static void park(void)
{
    pthread_mutex_lock(&lock);
    parked++;
    pthread_cond_broadcast(&parked_changed);
    while (!released)
        pthread_cond_wait(&changed, &lock);
    parked--;
    pthread_cond_broadcast(&parked_changed);
    pthread_mutex_unlock(&lock);
}

__attribute__((noinline)) static void *leaked_worker(void *arg) { (void)arg; park(); return NULL; }
/* A library's own background thread: its loop calls the wait function. */
__attribute__((noinline)) static void library_poller(void) { park(); }
__attribute__((noinline)) static void *library_main_loop(void *arg) { (void)arg; library_poller(); return NULL; }

static pthread_t start(void *(*fn)(void *), size_t stack_bytes)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack_bytes)
        pthread_attr_setstacksize(&attr, stack_bytes);
    pthread_t t;
    int err = pthread_create(&t, &attr, fn, NULL);
    pthread_attr_destroy(&attr);
    if (err) {
        fprintf(stderr, "pthread_create: %s\n", strerror(err));
        exit(99);
    }
    return t;
}

static void await_parked(int n)
{
    pthread_mutex_lock(&lock);
    while (parked < n)
        pthread_cond_wait(&parked_changed, &lock);
    pthread_mutex_unlock(&lock);
}

static void release_all(pthread_t *threads, int n)
{
    pthread_mutex_lock(&lock);
    released = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    released = false;
}

static char *report_text(const threadcheck_snapshot *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    threadcheck_report_print(s, f);
    fclose(f);
    return text;
}

static const threadcheck_options quick = {.deadline_ms = 50};

/* ---- cases -------------------------------------------------------------------- */

/* A thread left blocked is reported, grouped, with its stack; once it ends,
 * verify passes. */
static void case_verify(void)
{
    CHECK(threadcheck_verify(&quick, NULL) == THREADCHECK_OK, "a lone main thread is not a leak");
    pthread_t t = start(leaked_worker, 0);
    await_parked(1);
    threadcheck_snapshot *left = NULL;
    CHECK(threadcheck_verify(&quick, &left) == THREADCHECK_LEAKED, "a parked thread must be reported");
    CHECK(left && left->ngroups == 1 && left->groups[0].count == 1, "one group of one thread");
    if (left && left->ngroups == 1) {
        const threadcheck_group *g = &left->groups[0];
        char stack[512];
        threadcheck_group_stack_text(g, stack, sizeof stack);
        CHECK(strncmp(stack, "park <- leaked_worker <- start_thread", 37) == 0, "stack text: '%s'", stack);
        CHECK(g->thread->status == THREADCHECK_STACK_CAPTURED, "status %d", g->thread->status);
        CHECK(g->wait_address != 0 && g->wait_addresses == 1, "futex word %#lx", (unsigned long)g->wait_address);
        CHECK(strcmp(g->thread->syscall_name, "futex") == 0, "syscall %s", g->thread->syscall_name);
        const threadcheck_frame *top = &g->thread->frames[g->top];
        CHECK(top->file && strstr(top->file, "test_api.c") && top->line > 0, "file:line of park");
    }
    threadcheck_snapshot_free(left);
    release_all(&t, 1);
    CHECK(threadcheck_verify(&quick, NULL) == THREADCHECK_OK, "after the join nothing is left");
}

/* goleak.IgnoreCurrent: threads in the baseline are expected, new ones not. */
static void case_baseline(void)
{
    pthread_t before = start(leaked_worker, 0);
    await_parked(1);
    threadcheck_baseline *b = threadcheck_baseline_take();
    CHECK(b && threadcheck_baseline_count(b) == 2, "baseline of main + 1");
    threadcheck_options opts = quick;
    opts.ignore_current = b;
    CHECK(threadcheck_verify(&opts, NULL) == THREADCHECK_OK, "the baseline's thread is expected");
    CHECK(threadcheck_verify(&quick, NULL) == THREADCHECK_LEAKED, "without the baseline it is not");
    pthread_t after = start(leaked_worker, 0);
    await_parked(2);
    threadcheck_snapshot *left = NULL;
    CHECK(threadcheck_verify(&opts, &left) == THREADCHECK_LEAKED, "a thread started after the baseline counts");
    CHECK(left && left->nthreads == 1 && left->threads[0].tid != 0, "only the new thread is left");
    threadcheck_snapshot_free(left);
    threadcheck_baseline_free(b);
    pthread_t both[] = {before, after};
    release_all(both, 2);
}

/* goleak.IgnoreTopFunction / IgnoreAnyFunction: a library's own thread. */
static void case_ignore(void)
{
    pthread_t t = start(library_main_loop, 0);
    await_parked(1);
    threadcheck_options opts = quick;
    CHECK(threadcheck_verify(&opts, NULL) == THREADCHECK_LEAKED, "the library thread counts without a rule");
    opts.ignore_top = (const char *const[]){"park", NULL};
    CHECK(threadcheck_verify(&opts, NULL) == THREADCHECK_OK, "ignore_top park");
    opts.ignore_top = (const char *const[]){"library_poller", NULL};
    CHECK(threadcheck_verify(&opts, NULL) == THREADCHECK_LEAKED, "library_poller is not the top frame");
    opts.ignore_top = NULL;
    opts.ignore_any = (const char *const[]){"library_main_loop", NULL};
    CHECK(threadcheck_verify(&opts, NULL) == THREADCHECK_OK, "ignore_any library_main_loop");
    opts.ignore_any = (const char *const[]){"some_other_function", NULL};
    CHECK(threadcheck_verify(&opts, NULL) == THREADCHECK_LEAKED, "an unrelated name ignores nothing");

    char why[256] = "";
    threadcheck_options parsed;
    CHECK(threadcheck_options_parse(&parsed, "deadline_ms=50:ignore_any=x,library_main_loop", why, sizeof why) ==
              THREADCHECK_OK, "parse: %s", why);
    CHECK(threadcheck_verify(&parsed, NULL) == THREADCHECK_OK, "ignore_any from an options string");
    threadcheck_options_release(&parsed);
    release_all(&t, 1);
}

/* goleak's retry: a thread still winding down when the check starts (it
 * takes 200 ms to finish) fails a check without retries, passes one that
 * retries long enough. */
static pthread_mutex_t wind_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wind_cond = PTHREAD_COND_INITIALIZER;
static bool wind_started;

static void *winding_down(void *arg)
{
    (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 200 * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&wind_lock);
    wind_started = true;
    pthread_cond_broadcast(&wind_cond);
    /* its last 200 ms of work (a flush, a close): the slowness under test */
    while (pthread_cond_timedwait(&wind_cond, &wind_lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&wind_lock);
    return NULL;
}

static void case_retry(void)
{
    for (int deadline = 0; deadline < 2; deadline++) {
        pthread_mutex_lock(&wind_lock);
        wind_started = false;
        pthread_mutex_unlock(&wind_lock);
        pthread_t t = start(winding_down, 0);
        pthread_detach(t); /* it ends on its own, as a detached worker would */
        pthread_mutex_lock(&wind_lock);
        while (!wind_started)
            pthread_cond_wait(&wind_cond, &wind_lock);
        pthread_mutex_unlock(&wind_lock);
        threadcheck_options opts = {.deadline_ms = deadline ? 5000 : 1};
        threadcheck_snapshot *left = NULL;
        int result = threadcheck_verify(&opts, &left);
        if (deadline) {
            CHECK(result == THREADCHECK_OK, "retrying for 5 s must see the thread end");
        } else {
            CHECK(result == THREADCHECK_LEAKED, "a 1 ms deadline must see it still there");
            CHECK(left && left->nthreads == 1, "the winding-down thread is the one left");
            /* wait for it to end before the next round */
            threadcheck_options patient = {.deadline_ms = 5000};
            CHECK(threadcheck_verify(&patient, NULL) == THREADCHECK_OK, "it ends");
        }
        threadcheck_snapshot_free(left);
    }
}

/* The failure message: header, the group line with the stack, frames with
 * file:line, and the summary. */
static void case_report(void)
{
    pthread_t t[3] = {start(leaked_worker, 0), start(leaked_worker, 0), start(leaked_worker, 0)};
    await_parked(3);
    threadcheck_snapshot *left = NULL;
    CHECK(threadcheck_verify(&quick, &left) == THREADCHECK_LEAKED, "three parked threads");
    char *text = left ? report_text(left) : NULL;
    if (!text)
        text = strdup("(no report)");
    CHECK(strstr(text, "threadcheck: found unexpected threads: 3 threads in 1 group"), "header:\n%s", text);
    CHECK(strstr(text, "\n3 @ park <- leaked_worker <- start_thread"), "group line:\n%s", text);
    CHECK(strstr(text, "state S (sleeping), syscall futex"), "state line:\n%s", text);
    CHECK(strstr(text, "test_api.c:"), "file:line:\n%s", text);
    CHECK(strstr(text, "threadcheck: SUMMARY: 3 unexpected threads in 1 group\n"), "summary:\n%s", text);
    free(text);
    threadcheck_snapshot_free(left);
    release_all(t, 3);
}

/* Threads in calls a handler would interrupt with EINTR are not signalled:
 * a poll() must still return its event, never -1/EINTR. */
static int poll_pipe[2];
static int poll_result, poll_errno;

static void *poller(void *arg)
{
    (void)arg;
    struct pollfd p = {.fd = poll_pipe[0], .events = POLLIN};
    poll_result = poll(&p, 1, -1);
    poll_errno = errno;
    return NULL;
}

/* sem_timedwait passes EINTR on to its caller (a futex wait with a timeout
 * is not restarted after a handler): the hardest case to get right. */
static sem_t sem;
static int sem_result, sem_errno;

static void *sem_waiter(void *arg)
{
    (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    sem_result = sem_timedwait(&sem, &until);
    sem_errno = errno;
    return NULL;
}

static bool in_syscall(const threadcheck_snapshot *s, const char *name, int min)
{
    int n = 0;
    for (size_t i = 0; s && i < s->nthreads; i++)
        n += s->threads[i].syscall_name && strcmp(s->threads[i].syscall_name, name) == 0;
    return n >= min;
}

static void case_eintr(void)
{
    if (pipe(poll_pipe) != 0 || sem_init(&sem, 0, 0) != 0)
        exit(99);
    pthread_t t = start(poller, 0), w = start(sem_waiter, 0);
    threadcheck_snapshot *s = NULL;
    /* until the poller is in poll() (the kernel says so) */
    for (int tries = 0; tries < 5000; tries++) {
        s = threadcheck_snapshot_take(NULL);
        if (in_syscall(s, "poll", 1) && in_syscall(s, "futex", 1))
            break;
        threadcheck_snapshot_free(s);
        s = NULL;
        sched_yield();
    }
    CHECK(s != NULL, "the poller and the semaphore waiter never showed up in their calls");
    for (size_t i = 0; s && i < s->nthreads; i++)
        if (strcmp(s->threads[i].syscall_name, "poll") == 0 || strcmp(s->threads[i].syscall_name, "futex") == 0)
            CHECK(s->threads[i].status == THREADCHECK_STACK_NOT_SIGNALLED, "%s: status %d",
                  s->threads[i].syscall_name, s->threads[i].status);
    for (int i = 0; i < 20; i++) /* many captures: each would be an EINTR if it signalled */
        threadcheck_snapshot_free(threadcheck_snapshot_take(NULL));
    threadcheck_snapshot_free(s);
    if (write(poll_pipe[1], "x", 1) != 1)
        exit(99);
    pthread_join(t, NULL);
    CHECK(poll_result == 1, "poll returned %d (errno %s)", poll_result, strerror(poll_errno));
    sem_post(&sem);
    pthread_join(w, NULL);
    CHECK(sem_result == 0, "sem_timedwait returned %d (errno %s)", sem_result, strerror(sem_errno));
}

/* A thread that blocks the capture signal is reported as such, and its
 * late signal (delivered when it unblocks) harms nothing. */
static pthread_mutex_t mask_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mask_cond = PTHREAD_COND_INITIALIZER;
static int mask_stage; /* 1 blocked and waiting, 2 unblock now, 3 unblocked */

static atomic_int masked_tid;

static void *masked(void *arg)
{
    (void)arg;
    atomic_store(&masked_tid, (int)syscall(SYS_gettid));
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&mask_lock);
    mask_stage = 1;
    pthread_cond_broadcast(&mask_cond);
    while (mask_stage != 2)
        pthread_cond_wait(&mask_cond, &mask_lock);
    pthread_mutex_unlock(&mask_lock);
    pthread_sigmask(SIG_UNBLOCK, &all, NULL); /* the pending capture signal runs its handler now */
    pthread_mutex_lock(&mask_lock);
    mask_stage = 3;
    pthread_cond_broadcast(&mask_cond);
    pthread_mutex_unlock(&mask_lock);
    return NULL;
}

static void case_blocked(void)
{
    pthread_t t = start(masked, 0);
    pthread_mutex_lock(&mask_lock);
    while (mask_stage != 1)
        pthread_cond_wait(&mask_cond, &mask_lock);
    pthread_mutex_unlock(&mask_lock);
    threadcheck_snapshot *s = threadcheck_snapshot_take(&(threadcheck_capture_options){.timeout_ms = 100});
    int blocked = 0;
    for (size_t i = 0; s && i < s->nthreads; i++)
        blocked += s->threads[i].status == THREADCHECK_STACK_BLOCKED;
    CHECK(blocked == 1, "one thread blocks the signal (saw %d)", blocked);
    threadcheck_snapshot_free(s);
    pthread_mutex_lock(&mask_lock);
    mask_stage = 2;
    pthread_cond_broadcast(&mask_cond);
    while (mask_stage != 3)
        pthread_cond_wait(&mask_cond, &mask_lock);
    pthread_mutex_unlock(&mask_lock);
    pthread_join(t, NULL);
    /* the process is alive, and captures still work */
    s = threadcheck_snapshot_take(NULL);
    CHECK(s && s->nthreads == 1 && s->threads[0].status == THREADCHECK_STACK_CAPTURED, "capture after a late signal");
    threadcheck_snapshot_free(s);
}


/* ---- signal hygiene: what a capture must never do to its host ---------------- */

/* The status of the thread `tid` in a snapshot (-1 if absent). */
static int status_of(const threadcheck_snapshot *s, pid_t tid)
{
    for (size_t i = 0; s && i < s->nthreads; i++)
        if (s->threads[i].tid == tid)
            return (int)s->threads[i].status;
    return -1;
}

/* Waits (a bounded number of snapshots) until thread `tid` sits in system
 * call `name`; returns that snapshot (NULL if it never did). */
static threadcheck_snapshot *await_in_call(pid_t tid, const char *name)
{
    for (int tries = 0; tries < 5000; tries++) {
        threadcheck_snapshot *s = threadcheck_snapshot_take(&(threadcheck_capture_options){.flags = THREADCHECK_NO_STACKS});
        for (size_t i = 0; s && i < s->nthreads; i++)
            if (s->threads[i].tid == tid && s->threads[i].syscall_name && strcmp(s->threads[i].syscall_name, name) == 0)
                return s;
        threadcheck_snapshot_free(s);
        sched_yield();
    }
    return NULL;
}

static atomic_int announced_tid;

/* A write of 1 MiB into a pipe nobody reads sleeps with 64 KiB written; a
 * handler run then would return 65,536 (issue 20, defect 3). */
enum { BIG_WRITE = 1 << 20 };
static int big_pipe[2];
static ssize_t big_written;

static void *big_writer(void *arg)
{
    (void)arg;
    char *buf = calloc(1, BIG_WRITE);
    if (!buf)
        exit(99);
    atomic_store(&announced_tid, (int)syscall(SYS_gettid));
    big_written = write(big_pipe[1], buf, BIG_WRITE);
    free(buf);
    return NULL;
}

static void case_short_write(void)
{
    if (pipe(big_pipe) != 0)
        exit(99);
    pthread_t t = start(big_writer, 0);
    while (atomic_load(&announced_tid) == 0)
        sched_yield();
    pid_t tid = atomic_load(&announced_tid);
    threadcheck_snapshot *s = await_in_call(tid, "write");
    CHECK(s != NULL, "the writer never showed up in write()");
    threadcheck_snapshot_free(s);
    for (int i = 0; i < 20; i++) { /* each capture would cut the write short if it signalled */
        s = threadcheck_snapshot_take(NULL);
        if (i == 0)
            CHECK(status_of(s, tid) == THREADCHECK_STACK_NOT_SIGNALLED, "the writer's status %d", status_of(s, tid));
        threadcheck_snapshot_free(s);
    }
    CHECK(threadcheck_verify(&quick, NULL) == THREADCHECK_LEAKED, "the blocked writer is still reported");
    /* Drain until the writer has returned (however much it wrote). */
    char buf[65536];
    int flags = fcntl(big_pipe[0], F_GETFL);
    fcntl(big_pipe[0], F_SETFL, flags | O_NONBLOCK);
    while (pthread_tryjoin_np(t, NULL) != 0)
        if (read(big_pipe[0], buf, sizeof buf) <= 0)
            sched_yield();
    CHECK(big_written == BIG_WRITE, "write returned %zd of %d", big_written, BIG_WRITE);
}

/* A thread reading a signalfd of the capture signal blocks that signal: a
 * capture that sent it anyway would hand the thread our signal as if the
 * program had sent it. The first signal the thread reads must be ours (the
 * test's, with value 42). */
static int sfd_code, sfd_value;

static void *signalfd_reader(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 8);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (fd < 0)
        exit(99);
    atomic_store(&announced_tid, (int)syscall(SYS_gettid));
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) == sizeof si) {
        sfd_code = si.ssi_code;
        sfd_value = si.ssi_int;
    }
    close(fd);
    return NULL;
}

static void case_signalfd(void)
{
    pthread_t t = start(signalfd_reader, 0);
    while (atomic_load(&announced_tid) == 0)
        sched_yield();
    pid_t tid = atomic_load(&announced_tid);
    threadcheck_snapshot *s = await_in_call(tid, "read");
    CHECK(s != NULL, "the reader never showed up in read()");
    threadcheck_snapshot_free(s);
    s = threadcheck_snapshot_take(NULL);
    CHECK(status_of(s, tid) == THREADCHECK_STACK_BLOCKED, "the reader's status %d", status_of(s, tid));
    threadcheck_snapshot_free(s);
    union sigval v = {.sival_int = 42};
    CHECK(pthread_sigqueue(t, SIGRTMIN + 8, v) == 0, "pthread_sigqueue");
    pthread_join(t, NULL);
    CHECK(sfd_code == SI_QUEUE && sfd_value == 42, "the reader's first signal: code %d value %d (42 from SI_QUEUE "
          "expected; anything else came from a capture)", sfd_code, sfd_value);
}

/* A thread that blocks the capture signal is never sent it: after 20
 * captures none is pending for it (a blocked real-time signal queues, one
 * per capture, against RLIMIT_SIGPENDING of the whole user). */
static void case_pending(void)
{
    mask_stage = 0;
    pthread_t t = start(masked, 0);
    pthread_mutex_lock(&mask_lock);
    while (mask_stage != 1)
        pthread_cond_wait(&mask_cond, &mask_lock);
    pthread_mutex_unlock(&mask_lock);
    for (int i = 0; i < 20; i++)
        threadcheck_snapshot_free(threadcheck_snapshot_take(&(threadcheck_capture_options){.timeout_ms = 20}));
    char path[64], status[4096] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/status", atomic_load(&masked_tid));
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(status, 1, sizeof status - 1, f) : 0;
    status[n] = '\0';
    if (f)
        fclose(f);
    const char *q = strstr(status, "\nSigPnd:");
    unsigned long long pending = q ? strtoull(q + 8, NULL, 16) : ~0ull;
    CHECK(q && !((pending >> (SIGRTMIN + 8 - 1)) & 1), "the masked thread has the capture signal pending "
          "(SigPnd %016llx): sent to a thread that blocks it", pending);
    pthread_mutex_lock(&mask_lock);
    mask_stage = 2;
    pthread_cond_broadcast(&mask_cond);
    while (mask_stage != 3)
        pthread_cond_wait(&mask_cond, &mask_lock);
    pthread_mutex_unlock(&mask_lock);
    pthread_join(t, NULL);
}


/* No handler of the program's runs inside the capture handler (and could
 * leave it with siglongjmp, or cancel the thread in it asynchronously,
 * leaving the handler's bookkeeping unbalanced): the handler's mask holds
 * every asynchronous signal, glibc's SIGCANCEL (32) too, and no fault signal
 * (a blocked fault kills the process). */
static void case_handler_mask(void)
{
    threadcheck_snapshot_free(threadcheck_snapshot_take(NULL)); /* installs the handler */
    struct sigaction sa;
    CHECK(sigaction(SIGRTMIN + 8, NULL, &sa) == 0 && (sa.sa_flags & SA_SIGINFO), "the handler is installed");
    static const int asynchronous[] = {SIGUSR1, SIGUSR2, SIGALRM, SIGINT, SIGTERM, SIGCHLD, SIGPIPE, SIGIO};
    for (size_t i = 0; i < sizeof asynchronous / sizeof asynchronous[0]; i++)
        CHECK(sigismember(&sa.sa_mask, asynchronous[i]) == 1, "signal %d not blocked in the handler",
              asynchronous[i]);
    CHECK((sa.sa_mask.__val[0] >> 31) & 1, "SIGCANCEL (32) not blocked in the handler");
    CHECK(sigismember(&sa.sa_mask, SIGSEGV) == 0 && sigismember(&sa.sa_mask, SIGBUS) == 0,
          "a fault signal is blocked in the handler");
}

/* Many threads on one condition variable: one group, one futex word; a
 * thread with the smallest stack glibc allows is captured without harm. */
static void case_group(void)
{
    enum { N = 200 };
    pthread_t t[N + 1];
    for (int i = 0; i < N; i++)
        t[i] = start(leaked_worker, 64 * 1024);
    t[N] = start(leaked_worker, 16384 /* PTHREAD_STACK_MIN */);
    await_parked(N + 1);
    /* The last to park may still be between its unlock and its futex call
     * when the test wakes: look again (a bounded number of times) until
     * every one is in the wait. */
    threadcheck_snapshot *s = NULL;
    for (int tries = 0; tries < 1000; tries++) {
        threadcheck_snapshot_free(s);
        s = threadcheck_snapshot_take(NULL);
        if (s && s->ngroups >= 2 && s->groups[0].count == N + 1)
            break;
        sched_yield();
    }
    CHECK(s && s->ngroups >= 2, "the workers and main");
    if (s && s->ngroups >= 2) {
        CHECK(s->groups[0].count == N + 1, "largest group %zu", s->groups[0].count);
        CHECK(s->groups[0].wait_address != 0 && s->groups[0].wait_addresses == 1, "one futex word");
        CHECK(s->groups[0].thread->status == THREADCHECK_STACK_CAPTURED, "captured");
    }
    threadcheck_snapshot_free(s);
    release_all(t, N + 1);
}

/* The program's own handler on the capture signal is left alone: no stacks,
 * and the snapshot says why. Run in its own process (a handler, once
 * threadcheck's, stays). */
static void on_user_signal(int sig) { (void)sig; }

static void case_signal_in_use(void)
{
    int sig = SIGRTMIN + 8;
    signal(sig, on_user_signal);
    pthread_t t = start(leaked_worker, 0);
    await_parked(1);
    threadcheck_snapshot *s = threadcheck_snapshot_take(NULL);
    CHECK(s && s->stacks_unavailable && strstr(s->stacks_unavailable, "already has a handler"), "why: %s",
          s && s->stacks_unavailable ? s->stacks_unavailable : "(none)");
    bool unavailable = false;
    for (size_t i = 0; s && i < s->nthreads; i++)
        unavailable |= s->threads[i].status == THREADCHECK_STACK_UNAVAILABLE;
    CHECK(unavailable, "the worker's stack is unavailable");
    struct sigaction now;
    sigaction(sig, NULL, &now);
    CHECK(now.sa_handler == on_user_signal, "the program's handler is still there");
    threadcheck_snapshot_free(s);
    /* another signal works */
    s = threadcheck_snapshot_take(&(threadcheck_capture_options){.signal = SIGRTMIN + 9});
    CHECK(s && !s->stacks_unavailable && s->groups[0].thread->status == THREADCHECK_STACK_CAPTURED,
          "signal= another one");
    threadcheck_snapshot_free(s);
    release_all(&t, 1);
}

/* THREADCHECK_OPTIONS parsing: good strings parse, bad ones name the key. */
static void case_options(void)
{
    threadcheck_options o;
    char why[256];
    CHECK(threadcheck_options_parse(&o, "deadline_ms=200:max_sleep_ms=10 ignore_top=a,b", why, sizeof why) == 0,
          "%s", why);
    CHECK(o.deadline_ms == 200 && o.max_sleep_ms == 10 && o.ignore_top && strcmp(o.ignore_top[1], "b") == 0 &&
              o.ignore_top[2] == NULL, "values");
    threadcheck_options_release(&o);
    const char *bad[][2] = {{"deadline_ms=-1", "deadline_ms"}, {"nonsense=1", "unknown option 'nonsense'"},
                            {"exitcode=300", "exitcode"}, {"ignore_top=a,,b", "ignore_top"},
                            {"deadline_ms", "KEY=VALUE"}, {"signal=1", "signal"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        CHECK(threadcheck_options_parse(&o, bad[i][0], why, sizeof why) == THREADCHECK_ERROR, "'%s' accepted",
              bad[i][0]);
        CHECK(strstr(why, bad[i][1]) != NULL, "'%s': message '%s'", bad[i][0], why);
    }
}

int main(int argc, char **argv)
{
    static const struct { const char *name; void (*fn)(void); } cases[] = {
        {"verify", case_verify}, {"baseline", case_baseline}, {"ignore", case_ignore},
        {"retry", case_retry},   {"report", case_report},     {"eintr", case_eintr},
        {"blocked", case_blocked}, {"group", case_group},     {"signal_in_use", case_signal_in_use},
        {"options", case_options}, {"short_write", case_short_write}, {"signalfd", case_signalfd},
        {"pending", case_pending}, {"handler_mask", case_handler_mask},
    };
    if (argc != 2) {
        fprintf(stderr, "usage: test_api CASE\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(argv[1], cases[i].name) == 0) {
            cases[i].fn();
            printf("%s: %s\n", argv[1], failures ? "FAILED" : "passed");
            return failures ? 1 : 0;
        }
    fprintf(stderr, "test_api: unknown case '%s'\n", argv[1]);
    return 2;
}
