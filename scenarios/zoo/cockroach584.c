/* cockroach584 - GoKer cockroach#584 (double locking): a loop breaks out
 * without unlocking, so the next function's Lock waits for the thread
 * itself, forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach584.go; the fix: cockroachdb/cockroach pull 584):
 *
 *     func (g *gossip) bootstrap() {          func (g *gossip) manage() {
 *         for {                                   for {
 *             g.mu.Lock()                             g.mu.Lock()      // G1 waits here
 *             if g.closed {                           if g.closed {
 *                 break // missing g.mu.Unlock            break // missing g.mu.Unlock
 *             }                                       }
 *             g.mu.Unlock()                           g.mu.Unlock()
 *         }                                       }
 *     }                                       }
 *     g := &gossip{closed: true}
 *     go func() { g.bootstrap(); g.manage() }()   // G1
 *
 * Go's goroutineleak profile reports Cockroach584.func2 [sync.Mutex.Lock]
 * (flaky in Go's test: the profile may be taken before G1 has run).
 *
 * The C form: sync.Mutex is a pthread mutex initialised
 * PTHREAD_MUTEX_NORMAL explicitly: POSIX then guarantees that a re-lock by
 * its owner deadlocks (the default type leaves it undefined; glibc happens
 * to deadlock too). The gossip struct is malloc'ed with the info it gossips
 * (INFOS_BYTES, the payload). No interleaving to force: one thread, the
 * same path every time; main waits until it is asleep in manage()'s lock.
 * Main then forgets the gossip: only the blocked thread reaches it and the
 * mutex it waits on (orphaned).
 *
 * What the tools see (one instance; expected/zoo/cockroach584.toml): the
 * census, one thread in manage, in a futex wait on the gossip's mutex; the
 * heap profile, 65,600 B in use (new_gossip); memcheck, 65,616 B "still
 * reachable" (hidden) and the thread's TLS block "possibly lost" (320 B);
 * heaptrack, 65,968 B leaked; threadcheck, 1 thread alive; the heap
 * checker, LSan, ASan: nothing; TSan neither (its double-lock report comes
 * after a lock returns, and this one never does).
 *
 * The fix (the pull request's): unlock before the break, in both loops.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { INFOS_BYTES = 64 * 1024 }; /* the gossiped infos: the payload of one instance */

struct gossip {
    pthread_mutex_t mu;             /* Go: mu, L1 */
    bool closed;
    unsigned char *infos;
    pthread_t thread;               /* G1 */
};

static struct gossip *new_gossip(ll_run *run)
{
    struct gossip *g = ll_xmalloc(run, sizeof *g);
    *g = (struct gossip){.closed = true, .infos = ll_xmalloc(run, INFOS_BYTES)};
    memset(g->infos, 0x5a, INFOS_BYTES);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL); /* a re-lock deadlocks, by POSIX */
    pthread_mutex_init(&g->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    return g;
}

static void free_gossip(struct gossip *g)
{
    pthread_mutex_destroy(&g->mu);
    free(g->infos);
    free(g);
}

/* Leaky: both loops break out holding mu. */
static void bootstrap(struct gossip *g)
{
    for (;;) {
        pthread_mutex_lock(&g->mu);
        if (g->closed)
            break; /* missing unlock: leaves holding mu */
        pthread_mutex_unlock(&g->mu);
    }
}

static LL_WAIT_SITE void manage(struct gossip *g)
{
    for (;;) {
        pthread_mutex_lock(&g->mu); /* G1 already holds mu: waits for itself */
        if (g->closed)
            break;
        pthread_mutex_unlock(&g->mu);
    }
}

/* Fixed: the same loops, unlocking on the way out. */
static void bootstrap_fixed(struct gossip *g)
{
    for (;;) {
        pthread_mutex_lock(&g->mu);
        if (g->closed) {
            LL_FIX(pthread_mutex_unlock(&g->mu)); /* FIX: unlock before the break */
            break;
        }
        pthread_mutex_unlock(&g->mu);
    }
}

static LL_WAIT_SITE void manage_fixed(struct gossip *g)
{
    for (;;) {
        pthread_mutex_lock(&g->mu);
        if (g->closed) {
            LL_FIX(pthread_mutex_unlock(&g->mu)); /* FIX: unlock before the break */
            break;
        }
        pthread_mutex_unlock(&g->mu);
    }
}

/* G1: go func() { g.bootstrap(); g.manage() }() */
static void *gossip_leaky(void *g) { bootstrap(g); manage(g); return NULL; }
static void *gossip_fixed(void *g) { bootstrap_fixed(g); manage_fixed(g); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct gossip *g = new_gossip(run);
    ll_thread_start(run, &g->thread, gossip_leaky, g);
    /* Asleep on its own lock: nothing will ever unlock it. */
    ll_await_parked(run, g->thread, &g->mu, sizeof g->mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct gossip *g = new_gossip(run);
    ll_thread_start(run, &g->thread, gossip_fixed, g);
    LL_FIX(pthread_join(g->thread, NULL)); /* FIX: both loops let go of mu, so G1 returns: join it */
    LL_FIX(free_gossip(g));                /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach584",
    .summary = "GoKer cockroach#584 (double locking): bootstrap() breaks out of its loop holding\n"
               "g.mu, so manage()'s Lock on the same thread waits forever.",
    .leaky_summary = "the break skips the unlock: the thread re-locks its own mutex and sleeps forever, holding the gossip",
    .fixed_summary = "unlock before the break: the thread returns, joined, the gossip freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = INFOS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
