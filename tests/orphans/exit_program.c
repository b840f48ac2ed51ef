/* exit_program - a plain program for orphans' preload tests (it does not
 * link liborphans): `exit_program N M [hold]` leaves N threads blocked on a
 * condition variable only they reach (orphans) and M blocked on one a global
 * reaches (wakeable), then exits 0; with `hold` it first writes "parked" on
 * stdout and waits for a line on stdin (so a test can signal it meanwhile). */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct box {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    _Atomic int parked;
    _Atomic pid_t tids[64];
};

static struct box *volatile reachable; /* volatile: GCC drops stores to a static never read */

static void *wait_forever(void *arg)
{
    struct box *b = arg;
    pthread_mutex_lock(&b->lock);
    int i = atomic_fetch_add(&b->parked, 1);
    if (i < 64)
        atomic_store(&b->tids[i], (pid_t)syscall(SYS_gettid));
    for (;;)
        pthread_cond_wait(&b->cond, &b->lock);
    return NULL;
}

/* Waits until every counted waiter sleeps in futex(2) (/proc/self/task/TID/syscall). */
static void await_parked(struct box *b, int n)
{
    time_t end = time(NULL) + 30;
    while (atomic_load(&b->parked) < n || atomic_load(&b->tids[n - 1]) == 0)
        if (time(NULL) > end)
            exit(99);
    for (int i = 0; i < n && i < 64; i++) {
        char path[64], text[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)atomic_load(&b->tids[i]));
        for (;;) {
            int fd = open(path, O_RDONLY);
            ssize_t got = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
            if (fd >= 0)
                close(fd);
            if (got > 4 && strncmp(text, "202 ", 4) == 0)
                break;
            if (time(NULL) > end)
                exit(99);
            sched_yield();
        }
    }
}

static __attribute__((noinline)) struct box *start(int n)
{
    struct box *b = calloc(1, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        pthread_create(&t, NULL, wait_forever, b);
        pthread_detach(t);
    }
    if (n)
        await_parked(b, n);
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: exit_program ORPHANS WAKEABLE [hold]\n");
        return 2;
    }
    start(atoi(argv[1]));              /* dropped: only its waiters reach it */
    reachable = start(atoi(argv[2]));  /* kept in a global */
    if (argc > 3 && strcmp(argv[3], "hold") == 0) {
        printf("parked\n");
        fflush(stdout);
        char line[16];
        if (!fgets(line, sizeof line, stdin))
            return 1;
    }
    return 0;
}
