/* moby36114 - GoKer moby#36114 (double locking): hotAddVHDsAtStart holds
 * the service VM's lock when its error path calls hotRemoveVHDsAtStart,
 * which takes the same lock again.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby36114.go; the fix: moby/moby pull 36114, "LCOW: Graphdriver fix
 * deadlock in hotRemoveVHDs"):
 *
 *     func (svm *serviceVM) hotAddVHDsAtStart() {      // G1
 *         svm.Lock(); defer svm.Unlock()
 *         svm.hotRemoveVHDsAtStart()
 *     }
 *     func (svm *serviceVM) hotRemoveVHDsAtStart() {
 *         svm.Lock(); defer svm.Unlock()               // G1 waits here, for itself
 *     }
 *     go s.hotAddVHDsAtStart()
 *
 * Go's goroutineleak profile reports (*serviceVM).hotAddVHDsAtStart
 * [sync.Mutex.Lock] (flaky in Go's test: the profile may come first).
 *
 * The C form: the service VM's sync.Mutex is a pthread mutex initialised
 * PTHREAD_MUTEX_NORMAL explicitly (POSIX then guarantees that a re-lock by
 * its owner deadlocks); the service VM is malloc'ed with its attached VHDs
 * (VHDS_BYTES, the payload). No interleaving to force: one thread, the
 * same path every time. It is left holding the service VM, which nothing
 * else reaches (orphaned).
 *
 * The fix (the pull request's): the removal's body moves to
 * _hotRemoveVHDs, whose contract is "the service VM lock must be held";
 * hotAddVHDsAtStart, holding it, calls that instead of the locking
 * wrapper.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { VHDS_BYTES = 64 * 1024 }; /* the attached VHDs: the payload of one instance */

struct service_vm {
    pthread_mutex_t mu;             /* Go: serviceVM's sync.Mutex */
    unsigned char *attached_vhds;
    bool fixed;
    pthread_t adder;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct service_vm *new_service_vm(ll_run *run, bool fixed)
{
    struct service_vm *svm = ll_xmalloc(run, sizeof *svm);
    *svm = (struct service_vm){.attached_vhds = ll_xmalloc(run, VHDS_BYTES), .fixed = fixed};
    memset(svm->attached_vhds, 0x5a, VHDS_BYTES);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL); /* a re-lock deadlocks, by POSIX */
    pthread_mutex_init(&svm->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    return svm;
}

static void free_service_vm(struct service_vm *svm)
{
    pthread_mutex_destroy(&svm->mu);
    free(svm->attached_vhds);
    free(svm);
}

/* _hotRemoveVHDs: the caller holds svm's lock. */
static void hot_remove_vhds_locked(struct service_vm *svm)
{
    memset(svm->attached_vhds, 0, 1);
}

static void hot_remove_vhds_at_start(struct service_vm *svm)
{
    pthread_mutex_lock(&svm->mu);            /* leaky: the caller holds it already */
    hot_remove_vhds_locked(svm);
    pthread_mutex_unlock(&svm->mu);
}

/* G1. */
static LL_WAIT_SITE void hot_add_vhds_at_start(struct service_vm *svm)
{
    pthread_mutex_lock(&svm->mu);
    if (svm->fixed && LL_FIX_VALUE(true, false)) /* FIX: call the body, not the locking wrapper */
        hot_remove_vhds_locked(svm);
    else
        hot_remove_vhds_at_start(svm);
    pthread_mutex_unlock(&svm->mu);
}

static void *adder(void *svm) { hot_add_vhds_at_start(svm); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct service_vm *svm = new_service_vm(run, false);
    ll_thread_start(run, &svm->adder, adder, svm); /* go s.hotAddVHDsAtStart() */
    ll_await_parked(run, svm->adder, &svm->mu, sizeof svm->mu); /* asleep on its own lock */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct service_vm *svm = new_service_vm(run, true);
    ll_thread_start(run, &svm->adder, adder, svm);
    LL_FIX(pthread_join(svm->adder, NULL)); /* FIX: one lock, taken once: G1 returns, join it */
    LL_FIX(free_service_vm(svm));           /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby36114",
    .summary = "GoKer moby#36114 (double locking): hotAddVHDsAtStart holds the service VM's lock when\n"
               "it calls hotRemoveVHDsAtStart, which locks it again.",
    .leaky_summary = "the locking wrapper is called under the lock: the thread waits for itself forever",
    .fixed_summary = "the lock-held body is called instead: the thread returns, joined, the service VM freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = VHDS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
