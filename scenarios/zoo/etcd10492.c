/* etcd10492 - GoKer etcd#10492 (double locking): Renew() holds the lessor's
 * lock while it calls the checkpointer, and the checkpointer calls
 * Checkpoint(), which takes the same lock.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/etcd10492.go; the fix: etcd-io/etcd pull 10492):
 *
 *     func (le *lessor) Checkpoint() { le.mu.Lock(); defer le.mu.Unlock() }   // G1 waits here
 *     func (le *lessor) Renew() {
 *         le.mu.Lock()
 *         unlock := func() { le.mu.Unlock() }
 *         defer func() { unlock() }()
 *         if le.cp != nil { le.cp(context.Background()) } }   // cp -> le.Checkpoint()
 *     go func() {                                             // G1
 *         le := &lessor{}
 *         le.SetCheckpointer(func(ctx) { le.Checkpoint() })
 *         le.mu.Lock(); le.mu.Unlock()
 *         le.Renew() }()
 *
 * Go's goroutineleak profile reports Etcd10492.func2 [sync.Mutex.Lock]: the
 * lock is a sync.RWMutex, and its Lock waits first on the RWMutex's own
 * writer mutex (rw.w), the wait Go reports. Not flaky: G1 blocks on its own.
 *
 * The C form: le.mu is only ever write-locked here, so it is that writer
 * mutex: a PTHREAD_MUTEX_NORMAL (POSIX: a re-lock by its owner deadlocks,
 * as Go's does; glibc's rwlock would refuse the same re-lock with EDEADLK
 * instead of blocking). The checkpointer is a function pointer. The lessor
 * holds its leases (LEASES_BYTES, the payload). Main waits until G1 sleeps
 * in Checkpoint's lock and forgets the lessor: only G1 reaches it
 * (orphaned).
 *
 * What the tools see: see expected/zoo/etcd10492.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix, in the kernel's terms (pull 10492's diff was not read here;
 * the kernel keeps the deferred unlock closure such a fix would use):
 * Renew releases le.mu before it calls the checkpointer, and its deferred
 * unlock becomes a no-op.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { LEASES_BYTES = 64 * 1024 }; /* the lessor's leases: the payload of one instance */

struct lessor {
    pthread_mutex_t mu;             /* Go: mu sync.RWMutex, write-locked only: its writer mutex */
    void (*cp)(struct lessor *);    /* Go: cp Checkpointer */
    unsigned char *leases;
    bool fixed;
    pthread_t g1;
};

__attribute__((noinline)) static struct lessor *new_lessor(ll_run *run, bool fixed)
{
    struct lessor *le = ll_xmalloc(run, sizeof *le);
    *le = (struct lessor){.leases = ll_xmalloc(run, LEASES_BYTES), .fixed = fixed};
    memset(le->leases, 0x5a, LEASES_BYTES);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL); /* re-lock by the owner deadlocks, as Go's */
    pthread_mutex_init(&le->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    return le;
}

static void free_lessor(struct lessor *le)
{
    pthread_mutex_destroy(&le->mu);
    free(le->leases);
    free(le);
}

static LL_WAIT_SITE void lessor_checkpoint(struct lessor *le)
{
    pthread_mutex_lock(&le->mu); /* leaky: Renew, on this same thread, holds it */
    pthread_mutex_unlock(&le->mu);
}

static void set_checkpointer(struct lessor *le, void (*cp)(struct lessor *))
{
    pthread_mutex_lock(&le->mu);
    le->cp = cp;
    pthread_mutex_unlock(&le->mu);
}

static void lessor_renew(struct lessor *le)
{
    pthread_mutex_lock(&le->mu);
    bool unlock = true;                          /* Go: unlock := func() { le.mu.Unlock() } */
    if (le->cp) {
        if (le->fixed) {
            LL_FIX(pthread_mutex_unlock(&le->mu)); /* FIX: release le.mu before calling out ... */
            LL_FIX(unlock = false);                /* ... and the deferred unlock becomes a no-op */
        }
        le->cp(le);
    }
    if (unlock)                                  /* defer func() { unlock() }() */
        pthread_mutex_unlock(&le->mu);
}

/* G1. */
static void *lessor_test(void *arg)
{
    struct lessor *le = arg;
    set_checkpointer(le, lessor_checkpoint);     /* func(ctx) { le.Checkpoint() } */
    pthread_mutex_lock(&le->mu);
    pthread_mutex_unlock(&le->mu);
    lessor_renew(le);
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct lessor *le = new_lessor(run, false);
    ll_thread_start(run, &le->g1, lessor_test, le);
    ll_await_parked(run, le->g1, &le->mu, sizeof le->mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct lessor *le = new_lessor(run, true);
    ll_thread_start(run, &le->g1, lessor_test, le);
    LL_FIX(pthread_join(le->g1, NULL)); /* FIX: Checkpoint gets the lock: G1 returns: join it */
    LL_FIX(free_lessor(le));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "etcd10492",
    .summary = "GoKer etcd#10492 (double locking): Renew() holds le.mu while it calls the checkpointer,\n"
               "which calls Checkpoint(), which locks le.mu again.",
    .leaky_summary = "Checkpoint re-locks the mutex Renew holds on the same thread: it waits forever",
    .fixed_summary = "Renew releases le.mu before calling the checkpointer: G1 returns, joined, the lessor freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = LEASES_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
