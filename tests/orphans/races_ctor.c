/* libraces_ctor: a library whose constructor starts a thread that allocates
 * at once, before the constructors of libraries initialised after it (a
 * logging or telemetry library does the same), and races_ctor_main, linked
 * with it and run with liborphans preloaded (a preloaded library is
 * initialised after the program's own). test_races.py stops the thread
 * inside liborphans' block table with a shard lock held and lets the main
 * thread run liborphans' constructor: the lock must still be held after it
 * (until 2026-12-06 the constructor re-initialised every shard lock, so one
 * could be unlocked under its holder, and two threads could change one
 * shard at once). Bounded: the thread stops after 2^30 allocations or when
 * main asks. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_bool stop;
static pthread_t churner;
static int started;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t allocated = PTHREAD_COND_INITIALIZER;
static bool first_done;

static void *churn(void *arg)
{
    (void)arg;
    for (unsigned long i = 0; i < (1UL << 30) && !atomic_load(&stop); i++) {
        void *volatile p = malloc(48);
        free(p);
        if (i == 0) { /* the allocator is set up: the constructor may return */
            pthread_mutex_lock(&lock);
            first_done = true;
            pthread_cond_signal(&allocated);
            pthread_mutex_unlock(&lock);
        }
    }
    return NULL;
}

/* Returns once the thread has allocated, so that it is in its loop (and
 * liborphans' wrappers have found libc's malloc) before the next
 * library's constructor runs. */
__attribute__((constructor)) static void races_ctor_start(void)
{
    started = pthread_create(&churner, NULL, churn, NULL) == 0;
    pthread_mutex_lock(&lock);
    while (started && !first_done)
        pthread_cond_wait(&allocated, &lock);
    pthread_mutex_unlock(&lock);
}

__attribute__((visibility("default"))) void races_ctor_stop(void)
{
    atomic_store(&stop, true);
    if (started)
        pthread_join(churner, NULL);
    started = 0;
}
