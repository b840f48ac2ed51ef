/* races.c - one of orphans' races of microseconds, made deterministic by a
 * debugger (test_races.py drives this program under gdb; races_ctor.c is
 * the other): one thread ("victim") is leaked for good in victim_wait; the
 * report unwinds it after the world runs again, and gdb rewrites its return
 * address into decoy_frame in between. The report must never name
 * decoy_frame (a frame the thread was not in when it was analysed); without
 * gdb it names victim_wait.
 *
 * Exit 0 ran, 99 could not set up. Bounded: the victim is parked within
 * PARK_DEADLINE_S. */

#include <orphans.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { PARK_DEADLINE_S = 30 };

/* ---- unwind ------------------------------------------------------------------ */

struct box {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    _Atomic pid_t tid;
};

/* Never called: test_races.py writes its address into the victim's stack. */
__attribute__((noinline, used)) void decoy_frame(void) { __asm__ volatile("nop; nop; nop; nop"); }

__attribute__((noinline)) static void victim_wait(struct box *b)
{
    pthread_mutex_lock(&b->lock);
    atomic_store(&b->tid, (pid_t)syscall(SYS_gettid));
    for (;;) /* nobody signals: the box's only pointer is this frame's */
        pthread_cond_wait(&b->cond, &b->lock);
}

static void *victim_main(void *arg)
{
    pthread_setname_np(pthread_self(), "victim");
    victim_wait(arg);
    return NULL;
}

/* Polls /proc/self/task/TID/syscall until the thread sleeps in futex. */
static void await_futex(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    for (time_t end = time(NULL) + PARK_DEADLINE_S; time(NULL) < end; sched_yield()) {
        char text[64] = "";
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
        if (fd >= 0)
            close(fd);
        if (n > 0 && strtol(text, NULL, 10) == SYS_futex)
            return;
    }
    fprintf(stderr, "races: the victim did not park within %d s\n", PARK_DEADLINE_S);
    exit(99);
}

__attribute__((noinline)) static void start_victim(void)
{
    struct box *b = calloc(1, sizeof *b);
    pthread_t t;
    if (!b || pthread_mutex_init(&b->lock, NULL) || pthread_cond_init(&b->cond, NULL) ||
        pthread_create(&t, NULL, victim_main, b) != 0) {
        perror("races: victim");
        exit(99);
    }
    pthread_detach(t);
    while (atomic_load(&b->tid) == 0)
        sched_yield();
    await_futex(atomic_load(&b->tid));
}

/* Clears the dead frames start_victim left below main's, where a copy of
 * the box's pointer would make the victim look wakeable. */
__attribute__((noinline)) static void scrub(void)
{
    volatile char junk[16384];
    memset((char *)junk, 0, sizeof junk);
}

int main(void)
{
    start_victim();
    scrub();
    orphans_result *r = orphans_find("symbolize=1");
    if (!r) {
        perror("races: orphans_find");
        return 99;
    }
    orphans_result_print(r, stdout);
    fflush(stdout);
    orphans_result_free(r);
    return 0;
}
