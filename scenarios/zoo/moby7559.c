/* moby7559 - GoKer moby#7559 (double locking): the UDP proxy's loop
 * `continue`s past a failed dial without unlocking, and its next Lock
 * waits for the thread itself, forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby7559.go; the fix: moby/moby pull 7559):
 *
 *     func (proxy *UDPProxy) Run() {            // G1
 *         for i := 0; i < 2; i++ {
 *             proxy.connTrackLock.Lock()        // G1 waits here, the second time
 *             _, err := net.DialUDP("udp", nil, nil)
 *             if err != nil {
 *                 continue                      // missing proxy.connTrackLock.Unlock()
 *             }
 *             if i == 0 { break }
 *         }
 *         proxy.connTrackLock.Unlock()
 *     }
 *     go (&UDPProxy{}).Run()
 *
 * net.DialUDP with no remote address always fails. Go's goroutineleak
 * profile reports (*UDPProxy).Run [sync.Mutex.Lock] (not flaky in Go's
 * test).
 *
 * The C form: connTrackLock is a pthread mutex initialised
 * PTHREAD_MUTEX_NORMAL explicitly (POSIX then guarantees that a re-lock by
 * its owner deadlocks); the dial is a stand-in that fails as Go's does
 * with no remote address (EDESTADDRREQ). The proxy is malloc'ed with its
 * connection table (CONNTRACK_BYTES, the payload). No interleaving to
 * force: one thread, the same path every time. The proxy thread is left
 * holding the proxy, and nothing else reaches it (orphaned).
 *
 * The fix (the pull request's): unlock before the continue. (The kernel's
 * Unlock after the loop belongs to the path that still holds the lock; with
 * the fix and every dial failing, Go's would unlock an unlocked mutex, a
 * fatal error, so the C form unlocks there only if it holds the lock.)
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    ATTEMPTS = 2,                   /* Go: for i := 0; i < 2; i++ */
    CONNTRACK_BYTES = 64 * 1024,    /* the proxy's connection table: the payload of one instance */
};

struct udp_proxy {
    pthread_mutex_t conn_track_lock; /* Go: connTrackLock */
    unsigned char *conn_track;
    bool fixed;
    pthread_t runner;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct udp_proxy *new_udp_proxy(ll_run *run, bool fixed)
{
    struct udp_proxy *p = ll_xmalloc(run, sizeof *p);
    *p = (struct udp_proxy){.conn_track = ll_xmalloc(run, CONNTRACK_BYTES), .fixed = fixed};
    memset(p->conn_track, 0x5a, CONNTRACK_BYTES);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL); /* a re-lock deadlocks, by POSIX */
    pthread_mutex_init(&p->conn_track_lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return p;
}

static void free_udp_proxy(struct udp_proxy *p)
{
    pthread_mutex_destroy(&p->conn_track_lock);
    free(p->conn_track);
    free(p);
}

/* net.DialUDP("udp", nil, nil): no remote address, so it fails. */
static int dial_udp(const void *raddr)
{
    return raddr == NULL ? -EDESTADDRREQ : 0;
}

/* G1. */
static LL_WAIT_SITE void udp_proxy_run(struct udp_proxy *p)
{
    bool held = false;
    for (int i = 0; i < ATTEMPTS; i++) {
        pthread_mutex_lock(&p->conn_track_lock); /* leaky: the second time, G1 holds it already */
        held = true;
        if (dial_udp(NULL) != 0) {
            if (p->fixed)
                LL_FIX(pthread_mutex_unlock(&p->conn_track_lock); held = false); /* FIX: unlock before the continue */
            continue;
        }
        if (i == 0)
            break;
    }
    if (held)
        pthread_mutex_unlock(&p->conn_track_lock);
}

static void *runner(void *p) { udp_proxy_run(p); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct udp_proxy *p = new_udp_proxy(run, false);
    ll_thread_start(run, &p->runner, runner, p); /* go (&UDPProxy{}).Run() */
    ll_await_parked(run, p->runner, &p->conn_track_lock, sizeof p->conn_track_lock); /* on its own lock */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct udp_proxy *p = new_udp_proxy(run, true);
    ll_thread_start(run, &p->runner, runner, p);
    LL_FIX(pthread_join(p->runner, NULL)); /* FIX: every failed dial unlocked: the proxy returns, join it */
    LL_FIX(free_udp_proxy(p));             /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby7559",
    .summary = "GoKer moby#7559 (double locking): the UDP proxy's loop continues past a failed dial\n"
               "without unlocking, and its next Lock waits for the thread itself.",
    .leaky_summary = "the continue skips the unlock: the proxy re-locks its own mutex and sleeps forever",
    .fixed_summary = "unlock before the continue: the proxy returns, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CONNTRACK_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
