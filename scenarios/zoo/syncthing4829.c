/* syncthing4829 - GoKer syncthing#4829 (double locking): clearAddresses
 * write-locks a NAT mapping and calls notify, which read-locks the same
 * RWMutex: a Go RWMutex never grants a read lock while a writer holds it,
 * even to the writer itself.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/syncthing4829.go; the fix: syncthing/syncthing pull 4829,
 * "lib/nat: Fix clearAddresses/notify deadlock"):
 *
 *     func (m *Mapping) clearAddresses() {
 *         m.mut.Lock()                          // L2
 *         ... remove every address ...
 *         if len(removed) > 0 { m.notify(nil, removed) }   // m.mut.RLock(): G1 waits here
 *         m.mut.Unlock()
 *     }
 *     go func() {                               // G1
 *         natSvc := &Service{}; m := natSvc.NewMapping(); m.extAddresses["test"] = 0
 *         natSvc.RemoveMapping(m)               // s.mut.Lock() [L1] -> m.clearAddresses()
 *     }()
 *
 * Go's goroutineleak profile reports Syncthing4829.func2
 * [sync.RWMutex.RLock] (not flaky in Go's test).
 *
 * The C form: glibc's pthread rwlock does not deadlock here, it refuses:
 * pthread_rwlock_rdlock by the thread that holds the write lock returns
 * EDEADLK. So the kernel carries a Go-like RWMutex of its own (a mutex, a
 * condition variable, a writer flag and a reader count; a read lock waits
 * while a writer holds or waits for it), and the read lock waits, on its
 * condition variable, as Go's does. The mapping is malloc'ed with its
 * addresses (ADDRESSES_BYTES, the payload). No interleaving to force: one
 * thread, the same path every time. It is left holding the service and
 * the mapping, which nothing else reaches (orphaned).
 *
 * The fix (the pull request's): clearAddresses unlocks the mapping before
 * it calls notify.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { ADDRESSES_BYTES = 64 * 1024 }; /* the mapping's external addresses: the payload of one instance */

/* sync.RWMutex as Go has it: no read lock while a writer holds or waits. */
struct go_rwmutex {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    int readers;
    int writers_waiting;
    bool writer;
};

static void go_rwmutex_init(struct go_rwmutex *rw)
{
    *rw = (struct go_rwmutex){0};
    pthread_mutex_init(&rw->mu, NULL);
    pthread_cond_init(&rw->changed, NULL);
}

static void go_rwmutex_destroy(struct go_rwmutex *rw)
{
    pthread_cond_destroy(&rw->changed);
    pthread_mutex_destroy(&rw->mu);
}

static void go_rwmutex_lock(struct go_rwmutex *rw)
{
    pthread_mutex_lock(&rw->mu);
    rw->writers_waiting++;
    while (rw->writer || rw->readers > 0)
        pthread_cond_wait(&rw->changed, &rw->mu);
    rw->writers_waiting--;
    rw->writer = true;
    pthread_mutex_unlock(&rw->mu);
}

static void go_rwmutex_unlock(struct go_rwmutex *rw)
{
    pthread_mutex_lock(&rw->mu);
    rw->writer = false;
    pthread_cond_broadcast(&rw->changed);
    pthread_mutex_unlock(&rw->mu);
}

static void go_rwmutex_rlock(struct go_rwmutex *rw)
{
    pthread_mutex_lock(&rw->mu);
    while (rw->writer || rw->writers_waiting > 0) /* leaky: the writer is this very thread */
        pthread_cond_wait(&rw->changed, &rw->mu);
    rw->readers++;
    pthread_mutex_unlock(&rw->mu);
}

static void go_rwmutex_runlock(struct go_rwmutex *rw)
{
    pthread_mutex_lock(&rw->mu);
    if (--rw->readers == 0)
        pthread_cond_broadcast(&rw->changed);
    pthread_mutex_unlock(&rw->mu);
}

struct mapping {
    struct go_rwmutex mut;          /* Go: Mapping.mut, L2 */
    unsigned char *ext_addresses;   /* Go: extAddresses */
    int count;
};

struct service {
    struct go_rwmutex mut;          /* Go: Service.mut, L1 */
    struct mapping *mapping;        /* Go: mappings (one) */
    bool fixed;
    pthread_t g1;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct mapping *new_mapping(ll_run *run, struct service *s)
{
    struct mapping *m = ll_xmalloc(run, sizeof *m);
    *m = (struct mapping){.ext_addresses = ll_xmalloc(run, ADDRESSES_BYTES)};
    memset(m->ext_addresses, 0x5a, ADDRESSES_BYTES);
    go_rwmutex_init(&m->mut);
    go_rwmutex_lock(&s->mut);
    s->mapping = m;                          /* s.mappings = append(s.mappings, mapping) */
    go_rwmutex_unlock(&s->mut);
    return m;
}

static void free_service(struct service *s)
{
    go_rwmutex_destroy(&s->mapping->mut);
    free(s->mapping->ext_addresses);
    free(s->mapping);
    go_rwmutex_destroy(&s->mut);
    free(s);
}

static void notify(struct mapping *m)
{
    go_rwmutex_rlock(&m->mut);               /* leaky: the caller holds the write lock */
    go_rwmutex_runlock(&m->mut);
}

static LL_WAIT_SITE void clear_addresses(struct mapping *m, bool fixed)
{
    go_rwmutex_lock(&m->mut);
    int removed = m->count;
    m->count = 0;                            /* delete(m.extAddresses, id) for each */
    if (fixed && LL_FIX_VALUE(true, false)) { /* FIX: unlock before notify */
        go_rwmutex_unlock(&m->mut);
        if (removed > 0)
            notify(m);
        return;
    }
    if (removed > 0)
        notify(m);
    go_rwmutex_unlock(&m->mut);
}

static void remove_mapping(struct service *s, struct mapping *m)
{
    go_rwmutex_lock(&s->mut);                /* L1 */
    if (s->mapping == m)
        clear_addresses(m, s->fixed);
    go_rwmutex_unlock(&s->mut);
}

/* G1. */
static void *g1(void *arg)
{
    struct service *s = arg;
    struct mapping *m = s->mapping;
    m->count = 1;                            /* m.extAddresses["test"] = 0 */
    remove_mapping(s, m);
    return NULL;
}

static struct service *start(ll_run *run, bool fixed)
{
    struct service *s = ll_xmalloc(run, sizeof *s); /* natSvc := &Service{} */
    *s = (struct service){.fixed = fixed};
    go_rwmutex_init(&s->mut);
    new_mapping(run, s);                     /* natSvc.NewMapping(), made before G1 starts */
    ll_thread_start(run, &s->g1, g1, s);
    return s;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct service *s = start(run, false);
    ll_await_parked(run, s->g1, &s->mapping->mut, sizeof s->mapping->mut); /* waits for itself */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct service *s = start(run, true);
    LL_FIX(pthread_join(s->g1, NULL));       /* FIX: notify's read lock is free: G1 returns, join it */
    LL_FIX(free_service(s));                 /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "syncthing4829",
    .summary = "GoKer syncthing#4829 (double locking): clearAddresses write-locks a NAT mapping and\n"
               "calls notify, which read-locks it: the thread waits for itself.",
    .leaky_summary = "notify under the write lock: the thread waits for its own lock forever, holding the mapping",
    .fixed_summary = "unlock before notify: the thread returns, joined, the service and mapping freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = ADDRESSES_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
