/* boost_owner_dead - C++: boostorg/interprocess issue 65 and pull 67,
 * fixed by commit 7c88937 (2021): the owner of an interprocess mutex dies
 * holding it, and every later taker blocks forever; the fix makes the mutex
 * robust and handles EOWNERDEAD.
 *
 * The original (boost/interprocess/sync/posix/mutex.hpp and
 * pthread_helpers.hpp before 7c88937): interprocess_mutex is a
 * PTHREAD_PROCESS_SHARED pthread mutex in a shared segment, never robust,
 * and its lock() treats any non-zero result as an error:
 *
 *     inline void posix_mutex::lock()
 *     { if (pthread_mutex_lock(&m_mut) != 0) throw lock_exception(); }
 *
 * Issue 65 ("Robustness of the interprocess mutex"): "both mutex will cause
 * deadlock, when process crash"; pull 67: "the previous owner of the mutex
 * has been dead without releasing the mutex, so all others which are
 * waiting for the same mutex will be blocked forever".
 *
 * The C form: struct ipc_segment stands for the shared segment: the mutex
 * (process-shared, as Boost's) and the data it guards (SEGMENT_BYTES, the
 * payload). The owner, a thread standing for the process that crashes,
 * locks the mutex, writes, and ends without unlocking (a crash does not
 * unlock); the instance joins it, so the owner is gone for good. Then a
 * taker calls posix_mutex_lock. Leaky: the mutex is not robust, so the
 * taker sleeps in futex(2) on it forever: its owner's tid belongs to no
 * thread. Per instance one thread leaks (posix_mutex_lock, mutex), holding
 * the segment; nothing else reaches it (orphaned: in the C form the segment
 * is heap that the instance drops; a real shared mapping would be a root).
 * No interleaving to force: the owner has ended before the taker starts.
 *
 * The fix (7c88937's): the mutex is made robust
 * (pthread_mutexattr_setrobust PTHREAD_MUTEX_ROBUST), so the taker's lock
 * returns EOWNERDEAD instead of blocking, and lock() handles it: "We can't
 * inform the application and data might corrupted, so be safe and mark the
 * mutex as not recoverable": it unlocks without pthread_mutex_consistent
 * (every later lock gets ENOTRECOVERABLE, at once) and throws
 * lock_exception(not_recoverable). Here the error is returned; the taker
 * gives up the segment and ends, joined. (With robustness alone and
 * EOWNERDEAD still taken as a plain error, the taker would throw holding
 * the lock, and the next taker would block on a live owner: the handling
 * is half the fix.)
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    SEGMENT_BYTES = 64 * 1024, /* the data the mutex guards: the payload of one instance */
    LOCK_OK = 0,
    LOCK_NOT_RECOVERABLE = -1, /* lock_exception(not_recoverable) */
    LOCK_ERROR = -2,           /* lock_exception() */
};

struct ipc_segment {
    pthread_mutex_t mut;       /* interprocess_mutex: process-shared */
    unsigned char *data;
    bool fixed;
    int taker_result;
    pthread_t owner, taker;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct ipc_segment *new_segment(ll_run *run, bool fixed)
{
    struct ipc_segment *s = ll_xmalloc(run, sizeof *s);
    *s = (struct ipc_segment){.data = ll_xmalloc(run, SEGMENT_BYTES), .fixed = fixed};
    memset(s->data, 0, SEGMENT_BYTES);
    pthread_mutexattr_t attr;                  /* mutexattr_wrapper */
    if (pthread_mutexattr_init(&attr) != 0
        || pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) != 0
        || pthread_mutexattr_setrobust(&attr, fixed ? LL_FIX_VALUE(PTHREAD_MUTEX_ROBUST, PTHREAD_MUTEX_STALLED)
                                                    : PTHREAD_MUTEX_STALLED) != 0 /* FIX: robust */
        || pthread_mutex_init(&s->mut, &attr) != 0)
        ll_refuse(run, "pthread_mutexattr_setrobust", EINVAL, "this C library lacks robust process-shared mutexes");
    pthread_mutexattr_destroy(&attr);
    return s;
}

static void free_segment(struct ipc_segment *s)
{
    pthread_mutex_destroy(&s->mut);
    free(s->data);
    free(s);
}

/* posix_mutex::lock(). */
static LL_WAIT_SITE int posix_mutex_lock(struct ipc_segment *s)
{
    int res = pthread_mutex_lock(&s->mut); /* leaky: the owner is dead: sleeps forever */
    if (s->fixed && res == EOWNERDEAD) {
        /* FIX: "mark the mutex as not recoverable so applications can act accordingly" */
        LL_FIX(pthread_mutex_unlock(&s->mut); return LOCK_NOT_RECOVERABLE);
    }
    if (s->fixed && res == ENOTRECOVERABLE)
        LL_FIX(return LOCK_NOT_RECOVERABLE);
    return res != 0 ? LOCK_ERROR : LOCK_OK;
}

/* The process that crashes: takes the lock, writes, dies holding it. */
static void *owner_process(void *arg)
{
    struct ipc_segment *s = arg;
    pthread_mutex_lock(&s->mut);
    memset(s->data, 0x5a, SEGMENT_BYTES / 2); /* half written when it dies */
    return NULL;                              /* no unlock: a crash does not unlock */
}

/* The next process to use the segment. */
static void *taker_process(void *arg)
{
    struct ipc_segment *s = arg;
    s->taker_result = posix_mutex_lock(s);
    if (s->taker_result == LOCK_OK) {
        memset(s->data, 0xa5, SEGMENT_BYTES);
        pthread_mutex_unlock(&s->mut);
    }
    return NULL;
}

static void crash_owner(ll_run *run, struct ipc_segment *s)
{
    ll_thread_start(run, &s->owner, owner_process, s);
    pthread_join(s->owner, NULL); /* the owner is gone, the mutex still locked in its name */
    ll_thread_start(run, &s->taker, taker_process, s);
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct ipc_segment *s = new_segment(run, false);
    crash_owner(run, s);
    ll_await_parked(run, s->taker, &s->mut, sizeof s->mut); /* the taker sleeps on a dead owner's mutex */
}

static void fixed_instance(ll_run *run, long long instance)
{
    struct ipc_segment *s = new_segment(run, true);
    crash_owner(run, s);
    LL_FIX(pthread_join(s->taker, NULL)); /* FIX: EOWNERDEAD handled: the taker gave up, join it */
    if (instance == 0) /* the fix means something only if the C library's robust mutexes work */
        LL_FIX(if (s->taker_result != LOCK_NOT_RECOVERABLE)
                   ll_skip(run, "the taker of a dead owner's robust mutex did not get EOWNERDEAD: "
                                "this C library's robust mutexes do not work as POSIX says"));
    LL_FIX(free_segment(s));
}

static const ll_zoo_kernel kernel = {
    .name = "boost_owner_dead",
    .summary = "C++: boostorg/interprocess issue 65, pull 67, commit 7c88937 (owner dead): the owner of\n"
               "a non-robust interprocess mutex dies holding it; the next taker blocks forever.",
    .leaky_summary = "the mutex is not robust: the taker sleeps on the lock of a thread that is gone",
    .fixed_summary = "robust mutex, EOWNERDEAD handled (unlock, not recoverable): the taker gives up, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = SEGMENT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
