/* user_stacks - a target for `leaklab memstats`: two threads on stacks the program
 * malloc'ed itself (pthread_attr_setstack), one small (from an arena heap) and one large
 * (an mmapped chunk), each touched in full. Such a stack is heap to glibc (in use, in
 * mallinfo2's uordblks or hblkhd) and a thread stack to the thread: memstats must count its
 * bytes once, in the heap line. Prints "ready" once both threads run, then waits for its
 * stdin to close (bounded by alarm). Exit 99 when a thread cannot be made. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SMALL = 64 * 1024, LARGE = 1024 * 1024, RUN_LIMIT_S = 120 };

static pthread_barrier_t started;

static void *idle(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&started);
    char c;
    while (read(STDIN_FILENO, &c, 1) > 0)
        ;
    return NULL;
}

int main(void)
{
    alarm(RUN_LIMIT_S);
    static const size_t sizes[] = {SMALL, LARGE};
    pthread_barrier_init(&started, NULL, 3);
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        void *stack = malloc(sizes[i]);
        if (!stack)
            return 99;
        memset(stack, 1, sizes[i]); /* resident in full, so a count twice would show */
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstack(&attr, stack, sizes[i]);
        if (pthread_create(&threads[i], &attr, idle, NULL) != 0)
            return 99;
        pthread_attr_destroy(&attr);
    }
    pthread_barrier_wait(&started);
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    return 0;
}
