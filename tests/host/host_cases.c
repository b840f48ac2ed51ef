/* host_cases: small programs that stand for classes of real ones, one per
 * case argument, for the host corpus (issue 20, tests/host/README.md). Each
 * puts threads into one kind of wait, then either returns from main with
 * them still waiting (the preload run: what libthreadcheck and liborphans do
 * at exit) or, observed (HOST_OBSERVE="READY_FD,GO_FD"), holds them there
 * for a few rounds while `leaklab threads` looks, then wakes them and
 * checks every result.
 *
 * Every waiting thread checks its own system call: a call that fails with
 * EINTR, returns a short count or an unexpected signal is reported on stderr
 * ("host_cases: CASE: ...") the moment it happens, and an observed run then
 * exits 1. No detector may cause any of that (a program that does not retry
 * on EINTR is within its rights: SA_RESTART and untimed waits promise it).
 *
 * Synchronisation is by pipes and by reading the kernel's view of a thread
 * (/proc/self/task/TID/{stat,syscall}: "blocked in read"), never by sleeping;
 * every wait is bounded (WAIT_LIMIT_S) and ends in exit 99 with the reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* gettid, signalfd, ppoll */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    WAIT_LIMIT_S = 60,          /* any wait of this program: then exit 99 */
    ROUNDS = 2,                 /* observed: rounds of "look, then wake" */
    BIG_WRITE = 1 << 20,        /* 1 MiB in one write(): 16 times a pipe's capacity */
    SMALL_READ = 4096,
    MANY_THREADS = 10000,
    MANY_STACK = 64 * 1024,
    FORKS_PER_BURST = 50,
    CANCELS_PER_BURST = 20,
    LONG_SLEEP_S = 30,          /* preload runs: longer than the check at exit */
};

static const char *case_name = "?";
static atomic_int anomalies;
static int ready_fd = -1, go_fd = -1;    /* observed runs only */

/* ---- small helpers: each says how it fails ---- */

static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1)
        n = sizeof line - 1;
    (void)!write(STDERR_FILENO, line, (size_t)n);
}

/* The host's own check failed: a system call came back changed. */
static void anomaly(const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&anomalies, 1);
    say("host_cases: %s: %s\n", case_name, what);
}

static _Noreturn void fail(const char *what)
{
    say("host_cases: %s: %s: %s (harness failure; is the machine overloaded?)\n", case_name, what,
        errno ? strerror(errno) : "timed out");
    _exit(99);
}

static void xpipe(int fds[2])
{
    if (pipe(fds) != 0)
        fail("pipe");
}

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* True when thread tid sleeps in one of the system calls nrs (the kernel's
 * view: state S and /proc/.../syscall's first field). */
static int blocked_in(pid_t tid, const long *nrs)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close_paren = strrchr(buf, ')');
    if (!close_paren || close_paren[1] != ' ' || close_paren[2] != 'S')
        return 0;
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    if (!(f = fopen(path, "r")))
        return 0;
    long nr = -2;
    int got = fscanf(f, "%ld", &nr);
    fclose(f);
    for (; got == 1 && *nrs >= 0; nrs++)
        if (nr == *nrs)
            return 1;
    return 0;
}

/* Waits (bounded) until thread tid sleeps in one of nrs: a parked-thread check. */
static void await_blocked(pid_t tid, const long *nrs)
{
    double deadline = now_s() + WAIT_LIMIT_S;
    while (!blocked_in(tid, nrs)) {
        if (now_s() > deadline) {
            errno = 0;
            fail("a thread never reached its blocking system call");
        }
        sched_yield();
    }
}

/* Reads exactly one byte from fd, waiting at most WAIT_LIMIT_S. Returns the
 * byte, or -1 at end of file. Used by the harness side of each case only. */
static int read_byte(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, WAIT_LIMIT_S * 1000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            fail("waiting on a pipe of the harness");
        unsigned char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail("read");
        return n == 0 ? -1 : c;
    }
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail("write");
        p += n;
        len -= (size_t)n;
    }
}

static void read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail("read");
        p += n;
        len -= (size_t)n;
    }
}

static pthread_t start(void *(*fn)(void *), void *arg, size_t stack)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack)
        pthread_attr_setstacksize(&attr, stack);
    pthread_t t;
    int e = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    if (e) {
        errno = e;
        fail("pthread_create");
    }
    return t;
}

/* ---- the observed protocol: "ready" to the runner, "go" back ---- */

static int observed(void) { return ready_fd >= 0; }

/* Tells the runner every thread waits where the case wants it, then waits
 * (bounded) for it to have looked. */
static void rendezvous(void)
{
    write_all(ready_fd, "ready\n", 6);
    int c;
    while ((c = read_byte(go_fd)) != '\n')
        if (c < 0) {
            errno = 0;
            fail("the runner closed the go pipe");
        }
}

/* Observed runs install a no-op SIGWINCH handler (as terminal programs do)
 * and leave SIGWINCH unblocked only in the waiting threads: the runner's
 * negative control sends it to prove that a signal really does change
 * these calls, and that each thread's check catches it. */
static void on_winch(int sig) { (void)sig; }

static void winch_setup(void)
{
    struct sigaction sa = {.sa_handler = on_winch, .sa_flags = SA_RESTART};
    sigaction(SIGWINCH, &sa, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static void winch_allow_here(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGWINCH);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

/* ---- one waiting thread, generic: it repeats its call until told to stop ---- */

struct waiter {
    const long *nrs;            /* the system calls it blocks in */
    int (*call)(struct waiter *);  /* one call; checks its own result; 0 to go on */
    void (*wake)(struct waiter *); /* harness side: make one call complete */
    int fds[2], extra[2];
    int block_all;              /* the thread blocks every signal (sigwait on a full set) */
    pthread_t thread;
    pid_t tid;
    atomic_int done;            /* calls completed */
    atomic_int stop;
    char *buf;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    __atomic_store_n(&w->tid, gettid_(), __ATOMIC_RELEASE);
    if (observed() && !w->block_all)
        winch_allow_here();
    while (!atomic_load(&w->stop) && w->call(w) == 0)
        atomic_fetch_add(&w->done, 1);
    return NULL;
}

/* Waits (bounded) until a started thread has published its tid. */
static void await_tid(pid_t *tid)
{
    double deadline = now_s() + WAIT_LIMIT_S;
    while (__atomic_load_n(tid, __ATOMIC_ACQUIRE) == 0) {
        if (now_s() > deadline) {
            errno = 0;
            fail("a thread never started");
        }
        sched_yield();
    }
}

/* The run of a one-waiter case. Preload: main returns with the waiter
 * blocked (it outlives main). Observed: ROUNDS times look, wake, check. */
static int run_waiter(struct waiter *w, const char *story)
{
    sigset_t all, old;
    sigfillset(&all);
    if (w->block_all)
        pthread_sigmask(SIG_SETMASK, &all, &old);
    w->thread = start(waiter_main, w, 0);
    if (w->block_all)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    await_tid(&w->tid);
    await_blocked(w->tid, w->nrs);
    if (!observed()) {
        printf("%s: %s; main returns with it still waiting\n", case_name, story);
        return 0;
    }
    for (int round = 0; round < ROUNDS; round++) {
        rendezvous();
        int before = atomic_load(&w->done);
        if (round == ROUNDS - 1)
            atomic_store(&w->stop, 1);
        w->wake(w);
        if (round < ROUNDS - 1) {
            double deadline = now_s() + WAIT_LIMIT_S;
            while (atomic_load(&w->done) == before || !blocked_in(w->tid, w->nrs)) {
                if (now_s() > deadline) {
                    errno = 0;
                    fail("the waiter did not come back to its call");
                }
                sched_yield();
            }
        }
    }
    pthread_join(w->thread, NULL);
    printf("%s: %s; woken %d times, every result as expected: %s\n", case_name, story, ROUNDS,
           atomic_load(&anomalies) ? "no" : "yes");
    return atomic_load(&anomalies) ? 1 : 0;
}

/* ---- the cases that are one waiter ---- */

static const long NR_READ[] = {SYS_read, -1};
static const long NR_WRITE[] = {SYS_write, -1};
static const long NR_EPOLL[] = {SYS_epoll_wait, SYS_epoll_pwait, -1};
static const long NR_POLL[] = {SYS_poll, SYS_ppoll, -1};
static const long NR_SLEEP[] = {SYS_nanosleep, SYS_clock_nanosleep, -1};
static const long NR_SIGWAIT[] = {SYS_rt_sigtimedwait, -1};
static const long NR_ACCEPT[] = {SYS_accept, SYS_accept4, -1};

static int check_count(const char *call, ssize_t n, size_t want)
{
    if (n < 0)
        anomaly("%s failed: %s", call, strerror(errno));
    else if ((size_t)n != want)
        anomaly("%s returned %zd of %zu bytes (a short count)", call, n, want);
    return n < 0 && errno != EINTR ? -1 : 0;
}

/* After a short count, the rest is moved anyway (as a careful program
 * would), so the stream stays in step with the harness: one complaint per
 * changed call, not a cascade. */
static void finish_short(int fd, char *buf, ssize_t n, size_t want, int writing)
{
    if (n < 0 || (size_t)n >= want)
        return;
    if (writing)
        write_all(fd, buf + n, want - (size_t)n);
    else
        read_all(fd, buf + n, want - (size_t)n);
}

/* read of SMALL_READ bytes on a pipe or a socket: the harness writes them at once */
static int call_read(struct waiter *w)
{
    ssize_t n = read(w->fds[0], w->buf, SMALL_READ);
    int r = check_count("read", n, SMALL_READ);
    finish_short(w->fds[0], w->buf, n, SMALL_READ, 0);
    return r;
}
static void wake_read(struct waiter *w) { write_all(w->fds[1], w->buf + SMALL_READ, SMALL_READ); }

/* 1 MiB in one write into a pipe or socket the harness drains */
static int call_write(struct waiter *w)
{
    ssize_t n = write(w->fds[1], w->buf, BIG_WRITE);
    int r = check_count("write", n, BIG_WRITE);
    finish_short(w->fds[1], w->buf, n, BIG_WRITE, 1);
    return r;
}
static void wake_write(struct waiter *w) { read_all(w->fds[0], w->buf + BIG_WRITE, BIG_WRITE); }

static int call_epoll(struct waiter *w)
{
    struct epoll_event ev;
    int n = epoll_wait(w->extra[0], &ev, 1, -1);
    if (n != 1) {
        anomaly("epoll_wait (no timeout) returned %d: %s", n, n < 0 ? strerror(errno) : "no event");
        return n < 0 && errno != EINTR ? -1 : 0;
    }
    return check_count("read after epoll_wait", read(w->fds[0], w->buf, 1), 1);
}
static void wake_one_byte(struct waiter *w) { write_all(w->fds[1], "x", 1); }

static int call_poll(struct waiter *w)
{
    struct pollfd p = {.fd = w->fds[0], .events = POLLIN};
    int n = poll(&p, 1, -1);
    if (n != 1) {
        anomaly("poll (no timeout) returned %d: %s", n, n < 0 ? strerror(errno) : "no event");
        return n < 0 && errno != EINTR ? -1 : 0;
    }
    return check_count("read after poll", read(w->fds[0], w->buf, 1), 1);
}

/* nanosleep cannot be woken: observed, it sleeps 20 ms at a time while the
 * runner looks; preloaded, it sleeps LONG_SLEEP_S, through the exit. */
static int call_sleep(struct waiter *w)
{
    struct timespec ts = {.tv_sec = observed() ? 0 : LONG_SLEEP_S, .tv_nsec = observed() ? 20000000 : 0};
    struct timespec left;
    if (nanosleep(&ts, &left) != 0)
        anomaly("nanosleep returned early: %s (%ld.%09ld s left)", strerror(errno), (long)left.tv_sec,
                left.tv_nsec);
    (void)w;
    return 0;
}
static void wake_sleep(struct waiter *w)
{
    int before = atomic_load(&w->done);
    double deadline = now_s() + WAIT_LIMIT_S;
    while (atomic_load(&w->done) == before) {
        if (now_s() > deadline) {
            errno = 0;
            fail("nanosleep never ended");
        }
        sched_yield();
    }
}

/* sigtimedwait for SIGUSR1 (blocked in every thread), 60 s at most */
static int call_sigtimedwait(struct waiter *w)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    struct timespec limit = {.tv_sec = WAIT_LIMIT_S};
    siginfo_t si;
    int sig = sigtimedwait(&s, &si, &limit);
    if (sig != SIGUSR1)
        anomaly("sigtimedwait returned %d: %s", sig, sig < 0 ? strerror(errno) : "another signal");
    (void)w;
    return 0;
}
static void wake_signal(struct waiter *w)
{
    int e = pthread_kill(w->thread, SIGUSR1);
    if (e) {
        errno = e;
        fail("pthread_kill");
    }
}

/* sigwait on a full set: the thread blocks every signal and takes whatever
 * comes; in this program only SIGUSR1 is ever sent. */
static int call_sigwait_full(struct waiter *w)
{
    sigset_t all;
    sigfillset(&all);
    int sig = 0;
    int e = sigwait(&all, &sig);
    if (e)
        anomaly("sigwait failed: %s", strerror(e));
    else if (sig != SIGUSR1)
        anomaly("sigwait took signal %d, which this program never sends", sig);
    (void)w;
    return 0;
}

/* a signalfd reader for SIGUSR2 (blocked in every thread), sent to the process */
static int call_signalfd(struct waiter *w)
{
    struct signalfd_siginfo si;
    ssize_t n = read(w->extra[0], &si, sizeof si);
    if (check_count("read on a signalfd", n, sizeof si) == 0 && n == (ssize_t)sizeof si &&
        si.ssi_signo != SIGUSR2)
        anomaly("signalfd delivered signal %u, which this program never sends", si.ssi_signo);
    return 0;
}
static void wake_signalfd(struct waiter *w)
{
    (void)w;
    if (kill(getpid(), SIGUSR2) != 0)
        fail("kill");
}

static void block_signal(int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static char *xmalloc(size_t n)
{
    char *p = calloc(1, n);
    if (!p)
        fail("malloc");
    return p;
}

static int case_waiter(const char *name, int block_all)
{
    static struct waiter w;
    const char *story = NULL;
    w.buf = xmalloc(2 * BIG_WRITE);
    if (!strcmp(name, "pipe_read") || !strcmp(name, "socket_read")) {
        if (name[0] == 'p')
            xpipe(w.fds);
        else if (socketpair(AF_UNIX, SOCK_STREAM, 0, w.fds) != 0)
            fail("socketpair");
        w.nrs = NR_READ, w.call = call_read, w.wake = wake_read;
        story = name[0] == 'p' ? "a thread blocks in read on an empty pipe"
                               : "a thread blocks in read on a Unix stream socket";
    } else if (!strcmp(name, "pipe_write") || !strcmp(name, "socket_write")) {
        int fds[2];
        if (name[0] == 'p')
            xpipe(fds);
        else if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
            fail("socketpair");
        w.fds[0] = fds[0], w.fds[1] = fds[1];
        w.nrs = NR_WRITE, w.call = call_write, w.wake = wake_write;
        story = name[0] == 'p' ? "a thread blocks writing 1 MiB in one write into a pipe nobody reads"
                               : "a thread blocks writing 1 MiB in one write into a Unix socket nobody reads";
    } else if (!strcmp(name, "epoll_wait")) {
        xpipe(w.fds);
        w.extra[0] = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLIN};
        if (w.extra[0] < 0 || epoll_ctl(w.extra[0], EPOLL_CTL_ADD, w.fds[0], &ev) != 0)
            fail("epoll");
        w.nrs = NR_EPOLL, w.call = call_epoll, w.wake = wake_one_byte;
        story = "a thread blocks in epoll_wait with no timeout on an empty pipe";
    } else if (!strcmp(name, "poll")) {
        xpipe(w.fds);
        w.nrs = NR_POLL, w.call = call_poll, w.wake = wake_one_byte;
        story = "a thread blocks in poll with no timeout on an empty pipe";
    } else if (!strcmp(name, "nanosleep")) {
        w.nrs = NR_SLEEP, w.call = call_sleep, w.wake = wake_sleep;
        story = "a thread sleeps in nanosleep";
    } else if (!strcmp(name, "sigtimedwait") || !strcmp(name, "sigwait_full")) {
        block_signal(SIGUSR1);
        w.nrs = NR_SIGWAIT, w.wake = wake_signal;
        w.call = name[3] == 't' ? call_sigtimedwait : call_sigwait_full;
        story = name[3] == 't' ? "a thread waits in sigtimedwait (60 s) for SIGUSR1"
                               : "a thread waits in sigwait on a full signal set";
    } else if (!strcmp(name, "signalfd")) {
        block_signal(SIGUSR2);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR2);
        w.extra[0] = signalfd(-1, &s, 0);
        if (w.extra[0] < 0)
            fail("signalfd");
        w.nrs = NR_READ, w.call = call_signalfd, w.wake = wake_signalfd;
        story = "a thread reads a signalfd for SIGUSR2";
    } else {
        return -1;
    }
    w.block_all = w.call == call_sigwait_full || block_all;
    return run_waiter(&w, story);
}

/* ---- a forking server: one thread accepts, forks a child per connection ---- */

static struct {
    int listener;
    pid_t tid;
    atomic_int stop;
} server;

static void *server_main(void *arg)
{
    (void)arg;
    __atomic_store_n(&server.tid, gettid_(), __ATOMIC_RELEASE);
    while (!atomic_load(&server.stop)) {
        int conn = accept(server.listener, NULL, NULL);
        if (conn < 0) {
            anomaly("accept failed: %s", strerror(errno));
            if (errno == EINTR)
                continue;
            return NULL;
        }
        pid_t child = fork();
        if (child < 0)
            fail("fork");
        if (child == 0) {
            /* the child answers and exits through exit(): a preloaded
             * library's exit path runs in a forked child of a threaded process */
            char req[64] = {0}, reply[80];
            ssize_t n = read(conn, req, sizeof req - 1);
            int len = snprintf(reply, sizeof reply, "pong %s", n > 5 ? req + 5 : "?\n");
            write_all(conn, reply, (size_t)len);
            exit(0);
        }
        close(conn);
        int status = 0;
        pid_t got;
        while ((got = waitpid(child, &status, 0)) < 0 && errno == EINTR)
            anomaly("waitpid failed: EINTR");
        if (got != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            anomaly("a server child ended with status 0x%x, expected exit 0", status);
    }
    return NULL;
}

static void server_request(const struct sockaddr_un *addr, socklen_t len, int i, int print)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (const struct sockaddr *)addr, len) != 0)
        fail("connect to the forking server");
    char req[32], reply[64] = {0};
    int n = snprintf(req, sizeof req, "ping %d\n", i);
    write_all(s, req, (size_t)n);
    size_t got = 0;
    for (int c; got < sizeof reply - 1 && (c = read_byte(s)) >= 0 && (reply[got++] = (char)c) != '\n';)
        ;
    close(s);
    if (print)
        printf("forking_server: asked \"ping %d\", got \"%.*s\"\n", i, (int)(got ? got - 1 : 0), reply);
}

static int case_forking_server(void)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    /* abstract name: nothing on disk to clean up, unique per process */
    int len = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "leaklab-host-%d", getpid());
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
    server.listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (server.listener < 0 || bind(server.listener, (struct sockaddr *)&addr, alen) != 0 ||
        listen(server.listener, 8) != 0)
        fail("listen");
    pthread_t t = start(server_main, NULL, 0);
    for (int i = 1; i <= 3; i++)
        server_request(&addr, alen, i, 1);
    await_tid(&server.tid);
    await_blocked(server.tid, NR_ACCEPT);
    if (!observed()) {
        printf("forking_server: main returns with the server waiting in accept\n");
        return 0;
    }
    for (int round = 0; round < ROUNDS; round++) {
        rendezvous();
        if (round == ROUNDS - 1)
            atomic_store(&server.stop, 1);
        server_request(&addr, alen, 10 + round, 0);
        if (round < ROUNDS - 1)
            await_blocked(server.tid, NR_ACCEPT);
    }
    pthread_join(t, NULL);
    printf("forking_server: every request answered, every child exited 0: %s\n",
           atomic_load(&anomalies) ? "no" : "yes");
    return atomic_load(&anomalies) ? 1 : 0;
}

/* ---- a thread with glibc's smallest stack calls exit() ---- */

static int small_pipe[2];
static pid_t small_tid;

static void *small_main(void *arg)
{
    (void)arg;
    __atomic_store_n(&small_tid, gettid_(), __ATOMIC_RELEASE);
    if (observed())
        for (int round = 0; round < ROUNDS; round++) {
            char c;
            ssize_t n = read(small_pipe[0], &c, 1);
            if (n != 1)
                anomaly("read returned %zd: %s", n, n < 0 ? strerror(errno) : "end of file");
        }
    printf("small_stack_exit: a thread with a %d-byte stack calls exit(0) while main joins it\n",
           (int)PTHREAD_STACK_MIN);
    exit(atomic_load(&anomalies) ? 1 : 0);
}

static int case_small_stack_exit(void)
{
    xpipe(small_pipe);
    pthread_t t = start(small_main, NULL, PTHREAD_STACK_MIN);
    if (observed()) {
        await_tid(&small_tid);
        for (int round = 0; round < ROUNDS; round++) {
            await_blocked(small_tid, NR_READ);
            rendezvous();
            write_all(small_pipe[1], "x", 1);
        }
    }
    pthread_join(t, NULL);
    errno = 0;
    fail("pthread_join returned although the thread called exit()");
}

/* ---- a fork, and a cancellation, while the check at exit runs ---- */

/* Preloaded, the burst starts in the program's last exit handler: it runs
 * while the library's check at exit does (that comes after the program's
 * handlers). Observed, it runs while the runner looks. */
static struct {
    int pipe[2];
    pid_t tid;
    atomic_int stop;
} burst;

static void burst_start(void)
{
    fflush(NULL); /* the children exit through exit(): nothing buffered to flush twice */
    write_all(burst.pipe[1], "x", 1);
}

static void *forker_main(void *arg)
{
    (void)arg;
    __atomic_store_n(&burst.tid, gettid_(), __ATOMIC_RELEASE);
    char c;
    if (read(burst.pipe[0], &c, 1) != 1)
        anomaly("read on the start pipe failed: %s", strerror(errno));
    for (int i = 0; observed() ? !atomic_load(&burst.stop) : i < FORKS_PER_BURST; i++) {
        pid_t child = fork();
        if (child < 0)
            fail("fork");
        if (child == 0) {
            /* fork+exec, as programs do: a preloaded library starts afresh in
             * sh and runs its exit path there. (Not exit() in the forked child:
             * forked while main is inside exit(), the child inherits glibc's
             * exit-handler lock held and deadlocks, with or without a
             * detector: measured 1 in ~115 plain runs.) */
            execl("/bin/sh", "sh", "-c", "exit 7", (char *)NULL);
            _exit(127);
        }
        int status = 0;
        pid_t got;
        while ((got = waitpid(child, &status, 0)) < 0 && errno == EINTR)
            anomaly("waitpid failed: EINTR");
        if (got != child || !WIFEXITED(status) || WEXITSTATUS(status) != 7)
            anomaly("a child running sh -c 'exit 7' ended with status 0x%x", status);
    }
    if (!observed()) /* the burst done, it waits for good: it outlives main */
        (void)!read(burst.pipe[0], &c, 1);
    return NULL;
}

static void *victim_main(void *arg)
{
    int *fds = arg;
    char c;
    (void)!read(fds[0], &c, 1); /* a cancellation point nobody ends but pthread_cancel */
    anomaly("a victim's read returned");
    return NULL;
}

static void *canceller_main(void *arg)
{
    (void)arg;
    __atomic_store_n(&burst.tid, gettid_(), __ATOMIC_RELEASE);
    char c;
    if (read(burst.pipe[0], &c, 1) != 1)
        anomaly("read on the start pipe failed: %s", strerror(errno));
    int never[2];
    xpipe(never);
    for (int i = 0; observed() ? !atomic_load(&burst.stop) : i < CANCELS_PER_BURST; i++) {
        pthread_t victim = start(victim_main, never, 0);
        /* cancel it at once: wherever it is, the next cancellation point ends it */
        int e = pthread_cancel(victim);
        if (e)
            anomaly("pthread_cancel failed: %s", strerror(e));
        void *ret = NULL;
        e = pthread_join(victim, &ret);
        if (e || ret != PTHREAD_CANCELED)
            anomaly("a cancelled thread was joined with %s, result %p", e ? strerror(e) : "success", ret);
    }
    if (!observed())
        (void)!read(burst.pipe[0], &c, 1);
    return NULL;
}

static int case_burst(int forks)
{
    xpipe(burst.pipe);
    pthread_t t = start(forks ? forker_main : canceller_main, NULL, 0);
    await_tid(&burst.tid);
    await_blocked(burst.tid, NR_READ);
    if (!observed()) {
        printf("%s: main returns; its last exit handler starts %d %s on a thread\n", case_name,
               forks ? FORKS_PER_BURST : CANCELS_PER_BURST,
               forks ? "fork+exec(sh -c 'exit 7')+waitpid" : "pthread_create+pthread_cancel+pthread_join");
        atexit(burst_start);
        return 0;
    }
    burst_start();
    for (int round = 0; round < ROUNDS; round++)
        rendezvous();
    atomic_store(&burst.stop, 1);
    pthread_join(t, NULL);
    printf("%s: %s while being looked at, every result as expected: %s\n", case_name,
           forks ? "forked and reaped children" : "created and cancelled threads",
           atomic_load(&anomalies) ? "no" : "yes");
    return atomic_load(&anomalies) ? 1 : 0;
}

/* ---- 10,000 threads reading one pipe ---- */

static struct {
    int pipe[2];
    pid_t tids[MANY_THREADS];
    atomic_int started, done, stop;
} many;

static void *many_main(void *arg)
{
    long i = (long)arg;
    __atomic_store_n(&many.tids[i], gettid_(), __ATOMIC_RELEASE);
    atomic_fetch_add(&many.started, 1);
    while (!atomic_load(&many.stop)) {
        char c;
        ssize_t n = read(many.pipe[0], &c, 1);
        if (n != 1)
            anomaly("read returned %zd: %s", n, n < 0 ? strerror(errno) : "end of file");
        if (n < 0 && errno != EINTR)
            break;
        atomic_fetch_add(&many.done, 1);
    }
    return NULL;
}

static void many_await_blocked(void)
{
    double deadline = now_s() + WAIT_LIMIT_S;
    while (atomic_load(&many.started) < MANY_THREADS) {
        if (now_s() > deadline) {
            errno = 0;
            fail("the threads never all started");
        }
        sched_yield();
    }
    for (int i = 0; i < MANY_THREADS; i++)
        await_blocked(many.tids[i], NR_READ);
}

static int case_many_threads(void)
{
    xpipe(many.pipe);
    static pthread_t threads[MANY_THREADS];
    for (long i = 0; i < MANY_THREADS; i++)
        threads[i] = start(many_main, (void *)i, MANY_STACK);
    many_await_blocked();
    if (!observed()) {
        printf("many_threads: %d threads block in read on one pipe; main returns\n", MANY_THREADS);
        return 0;
    }
    static char bytes[MANY_THREADS];
    memset(bytes, 'x', sizeof bytes);
    for (int round = 0; round < ROUNDS; round++) {
        rendezvous();
        int before = atomic_load(&many.done);
        if (round == ROUNDS - 1)
            atomic_store(&many.stop, 1);
        write_all(many.pipe[1], bytes, sizeof bytes);
        double deadline = now_s() + WAIT_LIMIT_S;
        while (atomic_load(&many.done) - before < MANY_THREADS) {
            if (now_s() > deadline) {
                errno = 0;
                fail("the threads did not all read their byte");
            }
            sched_yield();
        }
        if (round < ROUNDS - 1)
            many_await_blocked();
    }
    for (int i = 0; i < MANY_THREADS; i++)
        pthread_join(threads[i], NULL);
    printf("many_threads: %d threads each read one byte %d times, every result as expected: %s\n", MANY_THREADS,
           ROUNDS, atomic_load(&anomalies) ? "no" : "yes");
    return atomic_load(&anomalies) ? 1 : 0;
}

/* ---- a thread proven leaked: it waits on a mutex only it can still reach ---- */

static pid_t orphan_tid;

static void *orphan_main(void *arg)
{
    __atomic_store_n(&orphan_tid, gettid_(), __ATOMIC_RELEASE);
    pthread_mutex_lock(arg); /* held by nobody that can run: it never returns */
    anomaly("the orphaned thread got its mutex");
    return NULL;
}

/* Kept out of main so that no register or live stack slot of main still
 * holds the mutex's address afterwards: only the waiting thread does. */
static __attribute__((noinline)) void start_orphan(void)
{
    pthread_mutex_t *m = (pthread_mutex_t *)xmalloc(sizeof *m);
    pthread_mutex_init(m, NULL);
    pthread_mutex_lock(m);
    pthread_t t = start(orphan_main, m, 0);
    pthread_detach(t);
    __asm__ volatile("" : : "r"(m) : "memory");
}

static __attribute__((noinline)) void scrub_stack(void)
{
    volatile char junk[4096];
    memset((char *)junk, 0, sizeof junk);
}

static int case_orphaned_mutex(void)
{
    static const long nr_futex[] = {SYS_futex, -1};
    start_orphan();
    scrub_stack();
    await_tid(&orphan_tid);
    await_blocked(orphan_tid, nr_futex);
    if (observed())
        for (int round = 0; round < ROUNDS; round++)
            rendezvous();
    printf("orphaned_mutex: a thread waits on a heap mutex whose only pointer main dropped; main returns\n");
    return atomic_load(&anomalies) ? 1 : 0;
}

/* ---- the program ---- */

static const char usage[] =
    "usage: host_cases CASE   (HOST_OBSERVE=READY_FD,GO_FD: the observed protocol, tests/host/README.md)\n"
    "cases: pipe_read pipe_write socket_read socket_write epoll_wait poll nanosleep sigtimedwait\n"
    "       sigwait_full signalfd forking_server small_stack_exit fork_during_report\n"
    "       cancel_during_report sig_dfl block_all_signals many_threads orphaned_mutex\n";

int main(int argc, char **argv)
{
    if (argc != 2) {
        fputs(usage, stderr);
        return 2;
    }
    case_name = argv[1];
    /* line-buffered: nothing is pending in stdio when a thread forks */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *obs = getenv("HOST_OBSERVE");
    if (obs && sscanf(obs, "%d,%d", &ready_fd, &go_fd) != 2) {
        fprintf(stderr, "host_cases: HOST_OBSERVE='%s': expected READY_FD,GO_FD\n", obs);
        return 2;
    }
    if (observed())
        winch_setup();

    if (!strcmp(case_name, "forking_server"))
        return case_forking_server();
    if (!strcmp(case_name, "small_stack_exit"))
        return case_small_stack_exit();
    if (!strcmp(case_name, "fork_during_report") || !strcmp(case_name, "cancel_during_report"))
        return case_burst(case_name[0] == 'f');
    if (!strcmp(case_name, "many_threads"))
        return case_many_threads();
    if (!strcmp(case_name, "orphaned_mutex"))
        return case_orphaned_mutex();
    if (!strcmp(case_name, "sig_dfl")) {
        /* as daemons and shells do at start: every signal back to its default
         * action (the libraries' own signals included) */
        for (int sig = 1; sig <= SIGRTMAX; sig++)
            signal(sig, SIG_DFL);
        printf("sig_dfl: every signal reset to SIG_DFL\n");
        return case_waiter("pipe_read", 0);
    }
    if (!strcmp(case_name, "block_all_signals")) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, NULL); /* main, and every thread it starts */
        printf("block_all_signals: every signal blocked in every thread\n");
        return case_waiter("pipe_read", 1);
    }
    int r = case_waiter(case_name, 0);
    if (r >= 0)
        return r;
    fprintf(stderr, "host_cases: unknown case '%s'\n%s", case_name, usage);
    return 2;
}
