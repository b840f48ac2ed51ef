/* fsevents_wakeup - C: fsevents/fsevents pull 290 (lost wake-up): the
 * thread that starts the run loop waits for its "ready" signal with no
 * predicate, after letting the signal go first; the signal is lost and the
 * wait never ends, and the run loop it started waits for a stop that never
 * comes.
 *
 * The original (fsevents/fsevents src/rawfsevents.c before commit f95c1ac,
 * "Fix random thread hanging due to incorrect pthread_cond_wait usage
 * (#290)", 2019; the Node.js binding behind Gatsby's hang, gatsbyjs/gatsby
 * issue 17131):
 *
 *     fse_watch():                              fse_run_loop():  (new thread)
 *       lock(&fsevents.lock);
 *       if (!fsevents.loop) {
 *         pthread_create(.., fse_run_loop, ..);
 *         unlock(&fsevents.lock);                 fsevents.loop = CFRunLoopGetCurrent();
 *                                                 unlock(&fsevents.lock);
 *                                                 pthread_cond_signal(&fsevents.init);  // nobody waits yet
 *         pthread_cond_wait(&fsevents.init,       ...
 *                           &fsevents.lock);      CFRunLoopRun();
 *       }                                         // runs until the loop is stopped
 *
 * The pull request's words: "pthread_cond_signal was sometimes fired
 * before pthread_cond_wait. In such case the thread was not able to wake
 * up and got stuck." (A SIGWINCH, from resizing the terminal, woke it.)
 *
 * The C form: struct fse_loop is one fsevents instance (the original's is
 * a static; here one per call, so --instances N makes N of them). The run
 * loop is a wait on `stop` under the lock (CFRunLoopRun until
 * CFRunLoopStop); fse_watch runs in a thread of its own (the original's
 * caller is Node's main thread, which the harness cannot give away). The
 * original calls pthread_cond_wait without holding the mutex (undefined;
 * glibc tolerates it); the C form retakes the lock first, which changes
 * nothing in the bug: the signal sent in the gap is lost either way. The
 * bad order is forced, not hoped for: fse_watch opens its gap until the run
 * loop thread has signalled and sits in its run loop (ll_await_parked on
 * `stop_c`), then waits. Per instance two threads leak, both in
 * pthread_cond_wait: fse_watch on `init` (a signal already spent) and
 * fse_run_loop on `stop_c` (fse_unwatch, which would stop it, comes after
 * fse_watch returns). They hold the watcher's event buffer (EVENTS_BYTES,
 * the payload); nothing else reaches the instance (orphaned).
 *
 * The fix (the pull request's): keep the lock from the check to the wait
 * and wait in a loop on the predicate, `while (!fsevents.loop)
 * pthread_cond_wait(...)`: the run loop thread cannot set `loop` and signal
 * before the waiter is waiting (it needs the lock), and a signal sent
 * earlier is not needed (the predicate is already true). The fixed twin
 * forces the same adverse order: fse_watch waits only once the run loop
 * thread is blocked on the lock.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { EVENTS_BYTES = 64 * 1024 }; /* the watcher's event buffer: the payload of one instance */

struct fse_loop {
    ll_run *run;
    pthread_mutex_t lock;   /* fsevents.lock */
    pthread_cond_t init;    /* fsevents.init: "the run loop exists" */
    pthread_cond_t stop_c;  /* what CFRunLoopStop would wake */
    void *loop;             /* fsevents.loop: set by the run loop thread */
    bool stop;
    bool fixed;
    unsigned char *events;
    pthread_t thread;       /* fsevents.thread: the run loop */
    pthread_t caller;       /* the thread that calls fse_watch */
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct fse_loop *fse_init(ll_run *run, bool fixed)
{
    struct fse_loop *f = ll_xmalloc(run, sizeof *f);
    *f = (struct fse_loop){.run = run, .fixed = fixed, .events = ll_xmalloc(run, EVENTS_BYTES)};
    memset(f->events, 0x5a, EVENTS_BYTES);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->init, NULL);
    pthread_cond_init(&f->stop_c, NULL);
    return f;
}

static void fse_free(struct fse_loop *f)
{
    pthread_cond_destroy(&f->stop_c);
    pthread_cond_destroy(&f->init);
    pthread_mutex_destroy(&f->lock);
    free(f->events);
    free(f);
}

/* The run loop thread: publishes the loop, signals, runs until stopped. */
static LL_WAIT_SITE void fse_run_loop(struct fse_loop *f)
{
    pthread_mutex_lock(&f->lock);        /* fixed: blocks here until fse_watch waits */
    f->loop = f;                         /* CFRunLoopGetCurrent() */
    pthread_mutex_unlock(&f->lock);
    pthread_cond_signal(&f->init);       /* leaky: nobody waits yet: the signal is lost */
    pthread_mutex_lock(&f->lock);
    while (!f->stop)
        pthread_cond_wait(&f->stop_c, &f->lock); /* CFRunLoopRun(); leaky: nobody stops it */
    f->loop = NULL;
    pthread_mutex_unlock(&f->lock);
}

static void *run_loop_thread(void *f) { fse_run_loop(f); return NULL; }

/* The buggy function: starts the run loop and waits for it to exist. */
static LL_WAIT_SITE void fse_watch(struct fse_loop *f)
{
    pthread_mutex_lock(&f->lock);
    if (!f->loop) {
        ll_thread_start(f->run, &f->thread, run_loop_thread, f);
        if (!f->fixed) {
            pthread_mutex_unlock(&f->lock);
            /* the gap: the run loop thread signals and enters its loop */
            ll_await_parked(f->run, f->thread, &f->stop_c, sizeof f->stop_c);
            pthread_mutex_lock(&f->lock);
            pthread_cond_wait(&f->init, &f->lock); /* leaky: no predicate: the signal was spent */
        } else {
            /* the same adverse order: the run loop thread is as far as it can get */
            ll_await_parked(f->run, f->thread, &f->lock, sizeof f->lock);
            LL_FIX(while (!f->loop) pthread_cond_wait(&f->init, &f->lock)); /* FIX: keep the lock, wait on the predicate */
        }
    }
    pthread_mutex_unlock(&f->lock);
}

/* Stops the run loop (CFRunLoopStop) and joins it. */
static void fse_unwatch(struct fse_loop *f)
{
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_cond_signal(&f->stop_c);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
}

static void *caller_thread(void *arg)
{
    struct fse_loop *f = arg;
    fse_watch(f);
    fse_unwatch(f); /* leaky: never reached */
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct fse_loop *f = fse_init(run, false);
    ll_thread_start(run, &f->caller, caller_thread, f);
    /* The leak is complete once fse_watch waits on `init` (the run loop
     * thread is already in its loop: fse_watch waited for that). */
    ll_await_parked(run, f->caller, &f->init, sizeof f->init);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct fse_loop *f = fse_init(run, true);
    ll_thread_start(run, &f->caller, caller_thread, f);
    LL_FIX(pthread_join(f->caller, NULL)); /* FIX: fse_watch returned, the loop was stopped and joined */
    LL_FIX(fse_free(f));
}

static const ll_zoo_kernel kernel = {
    .name = "fsevents_wakeup",
    .summary = "C: fsevents/fsevents pull 290 (lost wake-up): fse_watch waits for the run loop's\n"
               "\"ready\" signal with no predicate after the signal was sent; it waits forever.",
    .leaky_summary = "the signal comes before the wait: fse_watch and the run loop it started wait forever",
    .fixed_summary = "the lock is kept until the wait, which loops on the predicate: fse_watch returns, the loop is stopped",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = EVENTS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
