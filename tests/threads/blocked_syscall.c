/* blocked_syscall - a target for `leaklab threads` that checks, from inside,
 * that being dumped changed nothing it can see.
 *
 *     blocked_syscall MODE      (MODE: epoll_wait poll nanosleep sigtimedwait
 *                                read_pipe futex write_pipe)
 *
 * A worker thread makes the system call MODE names in a bounded loop and
 * records every result a program would not expect from it: -1 with EINTR,
 * a short count (write_pipe: fewer than WRITE_BYTES written), or a sleep
 * cut short. The test synchronises through pipes, never through sleeps:
 *   1. the target prints "ready TID" (TID: the worker's) and the worker
 *      enters its call; the test waits until /proc/PID/task/TID/syscall
 *      shows that call, dumps the process, then
 *   2. writes one byte to the target's stdin: the worker (or, for
 *      write_pipe, the main thread, which then drains the full pipe) sees
 *      it and the loop ends;
 *   3. the target prints "calls N eintr N short N" and exits 0 when nothing
 *      unexpected happened, 1 when something did.
 * Timed calls use TIMEOUT_MS so that the loop checks stdin between calls;
 * the whole run is bounded by alarm(RUN_LIMIT_S) (SIGALRM kills it: the
 * test sees a signal, not a hang). Exit 2: bad usage; 99: setup failed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
    TIMEOUT_MS = 400,            /* each timed call; the loop looks at stdin in between */
    MAX_CALLS = 1000,            /* the loop's bound (about 400 s of timed calls) */
    RUN_LIMIT_S = 120,
    WRITE_BYTES = 1 << 20,       /* far more than a pipe holds (64 KiB): the write blocks part-way */
};

static const char *mode;
static int stop_fd = STDIN_FILENO; /* readable once the test says stop */
static int out_pipe[2];            /* write_pipe: the pipe nobody reads until the end */
static long calls, eintr, shorts;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* True once the stop byte is there (a zero-timeout poll: never blocks). */
static bool stop_requested(void)
{
    struct pollfd p = {stop_fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

static void note(long r, int err, long expected_min)
{
    calls++;
    if (r < 0 && err == EINTR)
        eintr++;
    else if (expected_min > 0 && r >= 0 && r < expected_min)
        shorts++;
}

static void *worker(void *arg)
{
    (void)arg;
    static atomic_int futex_word;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN}, got;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev) != 0) {
        perror("blocked_syscall: epoll");
        exit(99);
    }
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    printf("ready %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);

    for (int i = 0; i < MAX_CALLS; i++) {
        long r;
        if (strcmp(mode, "epoll_wait") == 0) {
            r = epoll_wait(ep, &got, 1, TIMEOUT_MS);
            note(r, errno, 0);
            if (r == 1)
                break;
        } else if (strcmp(mode, "poll") == 0) {
            struct pollfd p = {stop_fd, POLLIN, 0};
            r = poll(&p, 1, TIMEOUT_MS);
            note(r, errno, 0);
            if (r == 1)
                break;
        } else if (strcmp(mode, "nanosleep") == 0) {
            struct timespec t = {0, TIMEOUT_MS * 1000000L}, rem = {0, 0};
            double start = now_ms();
            r = nanosleep(&t, &rem);
            note(r, errno, 0);
            if (r == 0 && now_ms() - start < TIMEOUT_MS)
                shorts++; /* returned 0 before its time */
            if (stop_requested())
                break;
        } else if (strcmp(mode, "sigtimedwait") == 0) {
            struct timespec t = {0, TIMEOUT_MS * 1000000L};
            r = sigtimedwait(&usr1, NULL, &t);
            note(r, errno == EAGAIN ? 0 : errno, 0);
            if (stop_requested())
                break;
        } else if (strcmp(mode, "read_pipe") == 0) {
            char c;
            r = read(stop_fd, &c, 1);
            note(r, errno, 1);
            if (r == 1)
                break;
        } else if (strcmp(mode, "futex") == 0) {
            struct timespec t = {0, TIMEOUT_MS * 1000000L};
            r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &t, NULL, 0);
            note(r, errno == ETIMEDOUT ? 0 : errno, 0);
            if (stop_requested())
                break;
        } else { /* write_pipe: one write, blocked part-way until main drains the pipe */
            char *buf = calloc(1, WRITE_BYTES);
            if (!buf)
                exit(99);
            r = write(out_pipe[1], buf, WRITE_BYTES);
            note(r, errno, WRITE_BYTES);
            free(buf);
            break;
        }
    }
    close(ep);
    return NULL;
}

/* write_pipe: the main thread waits for the stop byte, then drains the pipe
 * until the worker's write has finished (its end is closed after it). */
static void drain_after_stop(pthread_t t)
{
    char c, buf[65536];
    if (read(stop_fd, &c, 1) != 1)
        exit(99);
    int fl = fcntl(out_pipe[0], F_GETFL);
    fcntl(out_pipe[0], F_SETFL, fl | O_NONBLOCK);
    size_t total = 0;
    while (pthread_tryjoin_np(t, NULL) != 0) {
        ssize_t n = read(out_pipe[0], buf, sizeof buf);
        if (n > 0)
            total += (size_t)n;
        else
            sched_yield();
    }
    (void)total;
}

int main(int argc, char **argv)
{
    static const char *const modes[] = {"epoll_wait", "poll", "nanosleep", "sigtimedwait",
                                        "read_pipe",  "futex", "write_pipe"};
    mode = argc == 2 ? argv[1] : "";
    bool known = false;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        known = known || strcmp(mode, modes[i]) == 0;
    if (!known) {
        fprintf(stderr, "usage: blocked_syscall MODE (epoll_wait poll nanosleep sigtimedwait read_pipe futex "
                        "write_pipe)\n");
        return 2;
    }
    alarm(RUN_LIMIT_S);
    /* SIGUSR1 blocked everywhere: sigtimedwait waits for it; nobody sends it. */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    if (pipe(out_pipe) != 0) {
        perror("blocked_syscall: pipe");
        return 99;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) {
        fprintf(stderr, "blocked_syscall: pthread_create failed\n");
        return 99;
    }
    if (strcmp(mode, "write_pipe") == 0)
        drain_after_stop(t);
    else
        pthread_join(t, NULL);
    printf("calls %ld eintr %ld short %ld\n", calls, eintr, shorts);
    return eintr || shorts ? 1 : 0;
}
