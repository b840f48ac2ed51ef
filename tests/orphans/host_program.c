/* host_program - plain programs orphans must not disturb (it does not link
 * liborphans): test_host.py runs each case alone and with liborphans
 * preloaded, and the two runs must agree on exit status and stdout. Every
 * case also checks itself: when it sees what orphans must never cause (a
 * short write, EINTR, a signal it did not ask for) it says so on stdout and
 * exits 1.
 *
 *   stack KIB     a worker with a KIB-KiB stack calls exit(1) while main
 *                 joins it: the check at exit runs on that small stack
 *   sigwait       a thread in sigwait() on a full signal set (every thread
 *                 blocks every signal): it must receive nothing
 *   sigwaitinfo   a thread in sigwaitinfo({SIGUSR1}), the stop signal not
 *                 blocked: sigwaitinfo must not fail with EINTR
 *   pipe_write    a thread blocked in write() of 1 MiB into a full pipe at
 *                 exit; a stdio stream of ours, flushed by exit() after every
 *                 atexit handler (orphans' included), drains the pipe: the
 *                 write must return 1 MiB, not a short count
 *   epoll         a thread in epoll_wait() on a pipe nobody writes: no EINTR
 *   nanosleep     a thread in a one-hour nanosleep(): no EINTR
 *
 * Every case waits (bounded) until its thread sleeps in the system call it
 * is about (/proc/self/task/TID/syscall), then main returns 0 (stack: the
 * worker exits 1). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { PIPE_WRITE_BYTES = 1 << 20, WAIT_S = 30 };

static _Atomic pid_t worker_tid;
static int pipe_fds[2] = {-1, -1};
static _Atomic long written = -2; /* pipe_write: what write() returned (-2: not yet) */
static pthread_t writer;

static void fail(const char *what)
{
    printf("%s\n", what);
    fflush(stdout);
    _exit(1);
}

static void note_tid(void) { atomic_store(&worker_tid, (pid_t)syscall(SYS_gettid)); }

/* Waits until the worker sleeps in system call `nr` or `alt` (bounded: exit 99). */
static void await_syscall(long nr, long alt)
{
    time_t end = time(NULL) + WAIT_S;
    while (atomic_load(&worker_tid) == 0)
        if (time(NULL) > end)
            exit(99);
    char path[64], text[64], want[16], want_alt[16];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)atomic_load(&worker_tid));
    snprintf(want, sizeof want, "%ld ", nr);
    snprintf(want_alt, sizeof want_alt, "%ld ", alt);
    for (;;) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t got = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (got > 0 && (strncmp(text, want, strlen(want)) == 0 || strncmp(text, want_alt, strlen(want_alt)) == 0))
            return;
        if (time(NULL) > end)
            exit(99);
        sched_yield();
    }
}

static pthread_t start(void *(*fn)(void *), size_t stack)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack)
        pthread_attr_setstacksize(&attr, stack);
    pthread_t t;
    int err = pthread_create(&t, &attr, fn, NULL);
    pthread_attr_destroy(&attr);
    if (err) {
        fprintf(stderr, "host_program: pthread_create: %s\n", strerror(err));
        exit(99);
    }
    return t;
}

/* ---- the cases ---- */

static void *exit_one(void *arg)
{
    (void)arg;
    exit(1);
}

static void *sigwait_all(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    note_tid();
    for (;;) {
        int sig = 0;
        if (sigwait(&all, &sig) == 0) {
            printf("got signal %d\n", sig);
            fflush(stdout);
        }
    }
    return NULL;
}

static void *sigwaitinfo_usr1(void *arg)
{
    (void)arg;
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    note_tid();
    for (;;)
        if (sigwaitinfo(&usr1, NULL) < 0 && errno == EINTR)
            fail("sigwaitinfo: EINTR");
    return NULL;
}

static void *write_mib(void *arg)
{
    (void)arg;
    static char buf[PIPE_WRITE_BYTES];
    memset(buf, 'x', sizeof buf);
    note_tid();
    ssize_t n = write(pipe_fds[1], buf, sizeof buf);
    atomic_store(&written, n < 0 ? -(long)errno - 1000 : (long)n);
    close(pipe_fds[1]);
    return NULL;
}

/* The pipe is drained from a stdio stream of our own, flushed by exit()
 * after every atexit handler (orphans' check included: glibc runs
 * _IO_cleanup last); a destructor would be too early (_dl_fini is itself an
 * atexit handler, registered after orphans' constructor, so it runs first). */
static ssize_t drain_pipe(void *cookie, const char *data, size_t len)
{
    (void)cookie, (void)data;
    static char buf[65536];
    long total = 0;
    for (;;) {
        ssize_t n = read(pipe_fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            fail("read: EINTR");
        if (n <= 0)
            break;
        total += n;
    }
    pthread_join(writer, NULL);
    long w = atomic_load(&written);
    char text[96];
    int n = snprintf(text, sizeof text, "write returned %ld of %d, read %ld\n", w, PIPE_WRITE_BYTES, total);
    (void)!write(1, text, (size_t)n); /* stdout's stdio may be flushed already */
    if (w != PIPE_WRITE_BYTES)
        _exit(1);
    return (ssize_t)len;
}

static void drain_at_the_very_end(void)
{
    static char buffer[64];
    FILE *late = fopencookie(NULL, "w", (cookie_io_functions_t){.write = drain_pipe});
    if (!late || setvbuf(late, buffer, _IOFBF, sizeof buffer) != 0)
        exit(99);
    fputc('x', late); /* buffered: written (drain_pipe) when exit() flushes every stream */
}

static void *epoll_forever(void *arg)
{
    (void)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pipe_fds[0], &ev) != 0)
        exit(99);
    note_tid();
    for (;;) {
        struct epoll_event got;
        if (epoll_wait(ep, &got, 1, -1) < 0 && errno == EINTR)
            fail("epoll_wait: EINTR");
    }
    return NULL;
}

static void *sleep_hour(void *arg)
{
    (void)arg;
    note_tid();
    struct timespec hour = {3600, 0};
    if (nanosleep(&hour, NULL) != 0 && errno == EINTR)
        fail("nanosleep: EINTR");
    return NULL;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "stack") == 0 && argc > 2) {
        pthread_t t = start(exit_one, (size_t)atoi(argv[2]) * 1024);
        pthread_join(t, NULL); /* never returns: the worker exits the process */
        return 98;
    }
    if (strcmp(c, "sigwait") == 0) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL); /* sigwait's rule: every thread blocks them */
        start(sigwait_all, 0);
        await_syscall(SYS_rt_sigtimedwait, SYS_rt_sigtimedwait);
        return 0;
    }
    if (strcmp(c, "sigwaitinfo") == 0) {
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, NULL);
        start(sigwaitinfo_usr1, 0);
        await_syscall(SYS_rt_sigtimedwait, SYS_rt_sigtimedwait);
        return 0;
    }
    if (strcmp(c, "pipe_write") == 0) {
        if (pipe2(pipe_fds, O_CLOEXEC) != 0)
            return 99;
        writer = start(write_mib, 0);
        await_syscall(SYS_write, SYS_write);
        drain_at_the_very_end();
        return 0;
    }
    if (strcmp(c, "epoll") == 0) {
        if (pipe2(pipe_fds, O_CLOEXEC) != 0)
            return 99;
        start(epoll_forever, 0);
        await_syscall(SYS_epoll_wait, SYS_epoll_pwait);
        return 0;
    }
    if (strcmp(c, "nanosleep") == 0) {
        start(sleep_hour, 0);
        await_syscall(SYS_nanosleep, SYS_clock_nanosleep);
        return 0;
    }
    fprintf(stderr, "usage: host_program stack KIB | sigwait | sigwaitinfo | pipe_write | epoll | nanosleep\n");
    return 2;
}
