/* asterisk_cancel - C: asterisk/asterisk issue 308, pull 309 (a thread
 * cancelled while holding a lock): hanging up a console channel cancels
 * the stream monitor while it holds the channel's lock, then takes that
 * lock itself, forever.
 *
 * The original (asterisk channels/chan_console.c before pull 309, 2023):
 *
 *     stream_monitor(pvt):                        stop_stream(pvt):  (console_hangup)
 *       for (;;) {
 *         pthread_testcancel();
 *         console_pvt_lock(pvt);
 *         res = Pa_ReadStream(pvt->stream, ..);     pthread_cancel(pvt->thread);
 *         // cancelled in here, holding the lock    pthread_kill(pvt->thread, SIGURG);
 *         console_pvt_unlock(pvt);                  pthread_join(pvt->thread, NULL);
 *         ...                                       console_pvt_lock(pvt);  // forever
 *       }                                           Pa_AbortStream(..); Pa_CloseStream(..);
 *
 * The pull request: "stop_stream causes pthread_cancel to make
 * stream_monitor exit. However, commit 5b8fea9 added locking to this
 * function which results in deadlock due to the stream_monitor thread being
 * killed while it's holding the pvt lock." (Issue 308: "Frequency of
 * Occurrence: Constant".)
 *
 * The C form: struct console_pvt is one console channel: its lock (ao2's
 * mutex), the stream (a pipe standing for the PortAudio input device: the
 * blocking read in Pa_ReadStream is read(2), a cancellation point) and the
 * frame buffer the monitor reads into (FRAMES_BYTES, the payload). The
 * hangup runs in a thread of its own (Asterisk's channel thread). The bad
 * order is forced, not hoped for: the hangup starts only once the monitor
 * sits in read() holding the lock (ll_await_reading), where a cancellation
 * request acts at once. The monitor is cancelled there, unwinds without
 * unlocking (it has no cleanup handler) and is joined; stop_stream then
 * sleeps on the lock in the name of a thread that is gone. Per instance one
 * thread leaks (stop_stream, mutex), holding the channel; nothing else
 * reaches it (orphaned). Once it sleeps the instance closes the pipe: the
 * stream's descriptors are not what this kernel shows, and 1,000 instances
 * would need 2,000 of them.
 *
 * The fix (the pull request's): no pthread_cancel; stop_stream sets
 * pvt->abort and wakes the monitor with SIGURG (Asterisk's no-op SIGURG
 * handler, installed here as in Asterisk without SA_RESTART, makes the
 * blocking read return EINTR), joins it, and the monitor leaves through its
 * own path, unlocking on the way ("a flag is now set and read to indicate
 * abort, so the use of pthread_cancel and pthread_kill can be avoided").
 */
#include "leaklab.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { FRAMES_BYTES = 64 * 1024 }; /* the monitor's frame buffer: the payload of one instance */

struct console_pvt {
    ll_run *run;
    pthread_mutex_t lock;      /* console_pvt_lock: ao2_lock(pvt) */
    int stream[2];             /* the input device: stream[0] is read, nobody writes stream[1] */
    unsigned char *frames;
    bool abort;                /* pvt->abort (the fix); read and written atomically */
    bool fixed;
    pthread_t thread;          /* pvt->thread: stream_monitor */
    pthread_t hangup;          /* the channel thread that hangs up */
};

/* Asterisk's SIGURG handler does nothing: the signal only interrupts a
 * blocking system call. */
static void urg_handler(int sig) { (void)sig; }

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct console_pvt *new_pvt(ll_run *run, bool fixed)
{
    struct console_pvt *pvt = ll_xmalloc(run, sizeof *pvt);
    *pvt = (struct console_pvt){.run = run, .fixed = fixed, .frames = ll_xmalloc(run, FRAMES_BYTES)};
    memset(pvt->frames, 0x5a, FRAMES_BYTES);
    pthread_mutex_init(&pvt->lock, NULL);
    if (pipe(pvt->stream) != 0)
        ll_refuse(run, "pipe", errno, "raise the open-files limit (ulimit -n)");
    return pvt;
}

static void close_stream(struct console_pvt *pvt)
{
    close(pvt->stream[0]);
    close(pvt->stream[1]);
}

static void free_pvt(struct console_pvt *pvt)
{
    pthread_mutex_destroy(&pvt->lock);
    free(pvt->frames);
    free(pvt);
}

/* The monitor: reads the input stream under the channel's lock. */
static void *stream_monitor(void *arg)
{
    struct console_pvt *pvt = arg;
    for (;;) {
        pthread_testcancel();
        pthread_mutex_lock(&pvt->lock);
        ssize_t n = read(pvt->stream[0], pvt->frames, FRAMES_BYTES); /* Pa_ReadStream: leaky: cancelled here */
        pthread_mutex_unlock(&pvt->lock);
        if (__atomic_load_n(&pvt->abort, __ATOMIC_ACQUIRE) || n == 0)
            return NULL;
        pthread_testcancel();
    }
}

/* The buggy function: stops the monitor, then takes the lock to close the stream. */
static LL_WAIT_SITE void stop_stream(struct console_pvt *pvt)
{
    if (!pvt->fixed) {
        pthread_cancel(pvt->thread);   /* leaky: the monitor dies holding the lock */
        pthread_kill(pvt->thread, SIGURG);
    } else {
        LL_FIX(__atomic_store_n(&pvt->abort, true, __ATOMIC_RELEASE)); /* FIX: ask it to leave by itself */
        LL_FIX(pthread_kill(pvt->thread, SIGURG));                      /* FIX: and wake its read */
    }
    pthread_join(pvt->thread, NULL);
    pthread_mutex_lock(&pvt->lock);    /* leaky: held in the name of the cancelled monitor: forever */
    close_stream(pvt);                 /* Pa_AbortStream, Pa_CloseStream */
    pthread_mutex_unlock(&pvt->lock);
}

static void *hangup_thread(void *pvt) { stop_stream(pvt); return NULL; }

/* start_stream, then the hangup once the monitor reads holding the lock. */
static struct console_pvt *call_and_hang_up(ll_run *run, long long instance, bool fixed)
{
    if (instance == 0) {
        struct sigaction sa = {.sa_handler = urg_handler}; /* no SA_RESTART: the read returns EINTR */
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGURG, &sa, NULL) != 0)
            ll_refuse(run, "sigaction(SIGURG)", errno, "this is a bug; report it");
    }
    struct console_pvt *pvt = new_pvt(run, fixed);
    pthread_mutex_lock(&pvt->lock);
    ll_thread_start(run, &pvt->thread, stream_monitor, pvt);
    pthread_mutex_unlock(&pvt->lock);
    ll_await_reading(run, pvt->thread, pvt->stream[0]); /* the monitor is in read(), holding the lock */
    ll_thread_start(run, &pvt->hangup, hangup_thread, pvt);
    return pvt;
}

static void leaky_instance(ll_run *run, long long instance)
{
    struct console_pvt *pvt = call_and_hang_up(run, instance, false);
    ll_await_parked(run, pvt->hangup, &pvt->lock, sizeof pvt->lock); /* the monitor is gone, its lock is not */
    close_stream(pvt); /* the descriptors are not this kernel's leak (see the header) */
}

static void fixed_instance(ll_run *run, long long instance)
{
    struct console_pvt *pvt = call_and_hang_up(run, instance, true);
    LL_FIX(pthread_join(pvt->hangup, NULL)); /* FIX: the monitor left by itself, unlocking: the hangup ends */
    LL_FIX(free_pvt(pvt));
}

static const ll_zoo_kernel kernel = {
    .name = "asterisk_cancel",
    .summary = "C: asterisk/asterisk issue 308, pull 309 (cancelled holding a lock): the hangup cancels\n"
               "the stream monitor inside its locked read, then waits for that lock forever.",
    .leaky_summary = "pthread_cancel lands in the monitor's locked read: it dies holding the lock; the hangup waits on it",
    .fixed_summary = "an abort flag and SIGURG instead of pthread_cancel: the monitor unlocks and leaves; the hangup ends",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = FRAMES_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
