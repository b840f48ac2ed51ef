/* exit_program.c - a plain program (no harness) for the preload tests:
 *
 *   exit_program MODE      MODE: clean | return | exit | library | winding | small_stack
 *
 * clean: no other thread at exit. return / exit: one thread left blocked in
 * stuck_forever, then main returns / calls exit(0). library: the blocked
 * thread is a library's own (library_poller). winding: a detached thread that
 * needs 200 ms more when main returns. small_stack: a thread left blocked, and
 * exit(0) called from a thread with the smallest stack glibc allows. It prints "main done" with stdio
 * (buffered when stdout is a file) so the tests see that the check at exit
 * flushed what the program wrote. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int waiting;

__attribute__((noinline)) static void stuck_forever(void)
{
    pthread_mutex_lock(&lock);
    waiting = 1;
    pthread_cond_broadcast(&cond);
    for (;;)
        pthread_cond_wait(&cond, &lock); /* nobody sets anything: blocked for good */
}

static void *stuck(void *arg) { (void)arg; stuck_forever(); return NULL; }
__attribute__((noinline)) static void library_poller(void) { stuck_forever(); }
static void *library_thread(void *arg) { (void)arg; library_poller(); return NULL; }

static void *winding(void *arg)
{
    (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 200 * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&lock);
    waiting = 1;
    pthread_cond_broadcast(&cond);
    while (pthread_cond_timedwait(&cond, &lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *exit_from_small_stack(void *arg)
{
    (void)arg;
    printf("main done\n");
    exit(0);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    void *(*fn)(void *) = NULL;
    if (strcmp(mode, "return") == 0 || strcmp(mode, "exit") == 0 || strcmp(mode, "small_stack") == 0)
        fn = stuck;
    else if (strcmp(mode, "library") == 0)
        fn = library_thread;
    else if (strcmp(mode, "winding") == 0)
        fn = winding;
    else if (strcmp(mode, "clean") != 0) {
        fprintf(stderr, "usage: exit_program clean|return|exit|library|winding|small_stack\n");
        return 2;
    }
    if (fn) {
        pthread_t t;
        if (pthread_create(&t, NULL, fn, NULL) != 0)
            return 99;
        pthread_detach(t);
        pthread_mutex_lock(&lock);
        while (!waiting)
            pthread_cond_wait(&cond, &lock);
        pthread_mutex_unlock(&lock);
    }
    if (strcmp(mode, "small_stack") == 0) {
        pthread_attr_t attr;
        pthread_t t;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, PTHREAD_STACK_MIN);
        if (pthread_create(&t, &attr, exit_from_small_stack, NULL) != 0)
            return 99;
        pthread_join(t, NULL); /* never returns: the thread calls exit */
        return 99;
    }
    printf("main done\n");
    if (strcmp(mode, "exit") == 0)
        exit(0);
    return 0;
}
