/* kubernetes10182 - GoKer kubernetes#10182 (channel & lock): SetPodStatus
 * sends on podStatusChannel while it holds podStatusesLock; the status
 * manager's loop, the only receiver, first wants that lock to delete a
 * status.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes10182.go; the fix: kubernetes/kubernetes pull 10182):
 *
 *     func (s *statusManager) Start() {
 *         go func() { for i := 0; i < 2; i++ { s.syncBatch() } }()  // G1
 *     }
 *     func (s *statusManager) syncBatch() {
 *         <-s.podStatusChannel
 *         s.DeletePodStatus()          // Lock(); defer Unlock(): G1 waits here
 *     }
 *     func (s *statusManager) SetPodStatus() {                       // G2, G3
 *         s.podStatusesLock.Lock(); defer s.podStatusesLock.Unlock()
 *         s.podStatusChannel <- true   // unbuffered: G3 waits here, holding the lock
 *     }
 *     go s.Start(); go s.SetPodStatus(); go s.SetPodStatus()
 *
 * G2's status is received; before G1 deletes it, G3 takes the lock and
 * sends. Go's goroutineleak profile reports (*statusManager).Start.func1
 * [sync.Mutex.Lock] and (*statusManager).SetPodStatus [chan send] (flaky
 * in Go: 15 runs in 100).
 *
 * The C form: podStatusesLock is a writer-preferring pthread rwlock (Go's
 * RWMutex; only its Lock is used), podStatusChannel a rendezvous ll_chan;
 * the manager is malloc'ed with the statuses it caches (STATUSES_BYTES,
 * the payload). The order is forced, not hoped for: G1, having received
 * G2's status, deletes it only once G3 holds the lock (a gate G3 closes,
 * where the window is in Go); G3 starts once G2 has returned (joined, as
 * Go reclaims it). G1 and G3 are left, each waiting for the other, holding
 * the manager (orphaned).
 *
 * The fix (the pull request's, in syncBatch: "goroutine to avoid deadlock
 * when the channel is full; the channel writer holds a lock and is
 * blocked, Delete blocks for the same lock"): `go s.DeletePodStatus()`.
 * The loop goes back to its receive, G3's send completes, and the delete
 * runs once G3 has let go of the lock.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    BATCHES = 2,                    /* Go: for i := 0; i < 2; i++ */
    STATUSES_BYTES = 64 * 1024,     /* the cached pod statuses: the payload of one instance */
};

struct status_manager {
    ll_run *run;
    pthread_rwlock_t pod_statuses_lock; /* Go: podStatusesLock */
    ll_chan *pod_status_channel;    /* Go: podStatusChannel, unbuffered */
    unsigned char *statuses;
    bool fixed;
    ll_chan *second_locked;         /* forced order: closed once G3 holds the lock */
    pthread_t loop, setters[2], deleters[BATCHES];
};

struct set_call { struct status_manager *s; ll_chan *locked; }; /* locked: NULL, or the gate to close */

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct status_manager *new_status_manager(ll_run *run, bool fixed)
{
    struct status_manager *s = ll_xmalloc(run, sizeof *s);
    *s = (struct status_manager){.run = run, .pod_status_channel = ll_chan_new(run, 0),
                                 .statuses = ll_xmalloc(run, STATUSES_BYTES), .fixed = fixed,
                                 .second_locked = ll_chan_new(run, 0)};
    memset(s->statuses, 0x5a, STATUSES_BYTES);
    ll_rwlock_init_writer_preferring(run, &s->pod_statuses_lock); /* Go's preference, checked: exit 77 where not honoured */
    return s;
}

static void free_status_manager(struct status_manager *s)
{
    pthread_rwlock_destroy(&s->pod_statuses_lock);
    ll_chan_free(s->pod_status_channel);
    ll_chan_free(s->second_locked);
    free(s->statuses);
    free(s);
}

static void delete_pod_status(struct status_manager *s)
{
    pthread_rwlock_wrlock(&s->pod_statuses_lock); /* leaky: G3 holds it, sending to G1 */
    pthread_rwlock_unlock(&s->pod_statuses_lock);
}

static void *delete_pod_status_thread(void *s) { delete_pod_status(s); return NULL; }

static void sync_batch(struct status_manager *s, int batch)
{
    void *unused;
    ll_chan_recv(s->pod_status_channel, &unused);
    if (batch == 0)
        ll_chan_recv(s->second_locked, &unused); /* forced order: G3 holds the lock now */
    if (s->fixed)
        LL_FIX(ll_thread_start(s->run, &s->deleters[batch], delete_pod_status_thread, s)); /* FIX: go s.DeletePodStatus() */
    else
        delete_pod_status(s);
}

/* G1: Start's goroutine. */
static LL_WAIT_SITE void sync_loop(struct status_manager *s)
{
    for (int i = 0; i < BATCHES; i++)
        sync_batch(s, i);
}

/* G2, G3. */
static LL_WAIT_SITE void set_pod_status(struct status_manager *s, ll_chan *locked)
{
    pthread_rwlock_wrlock(&s->pod_statuses_lock);
    if (locked != NULL)
        ll_chan_close(locked);                  /* forced order: the second setter holds the lock */
    ll_chan_send(s->pod_status_channel, NULL);  /* leaky: G1 is not receiving, it waits for this lock */
    pthread_rwlock_unlock(&s->pod_statuses_lock);
}

static void *sync_loop_thread(void *s) { sync_loop(s); return NULL; }
static void *set_pod_status_thread(void *arg)
{
    struct set_call *c = arg;
    set_pod_status(c->s, c->locked);
    return NULL;
}

static struct status_manager *start(ll_run *run, bool fixed, struct set_call calls[2])
{
    struct status_manager *s = new_status_manager(run, fixed);
    calls[0] = (struct set_call){s, NULL};
    calls[1] = (struct set_call){s, s->second_locked};
    ll_thread_start(run, &s->loop, sync_loop_thread, s);                    /* go s.Start() */
    ll_thread_start(run, &s->setters[0], set_pod_status_thread, &calls[0]); /* go s.SetPodStatus(): G2 */
    pthread_join(s->setters[0], NULL);      /* G1 took G2's status; Go reclaims G2, C joins it */
    ll_thread_start(run, &s->setters[1], set_pod_status_thread, &calls[1]); /* go s.SetPodStatus(): G3 */
    return s;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct set_call calls[2];
    struct status_manager *s = start(run, false, calls);
    ll_chan_await_parked(run, s->pod_status_channel, s->setters[1]);      /* G3 sends, holding the lock */
    ll_await_parked(run, s->loop, &s->pod_statuses_lock, sizeof s->pod_statuses_lock); /* G1 waits for it */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct set_call calls[2];
    struct status_manager *s = start(run, true, calls);
    LL_FIX(pthread_join(s->loop, NULL));       /* FIX: the loop received G3's status too: everyone */
    LL_FIX(pthread_join(s->setters[1], NULL)); /* finishes, the deletes once G3 let go: join them all */
    LL_FIX(for (int i = 0; i < BATCHES; i++) pthread_join(s->deleters[i], NULL));
    LL_FIX(free_status_manager(s));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes10182",
    .summary = "GoKer kubernetes#10182 (channel & lock): SetPodStatus sends on podStatusChannel\n"
               "holding podStatusesLock; the loop that receives it first waits for that lock.",
    .leaky_summary = "syncBatch deletes inline: the loop and the second SetPodStatus wait forever, holding the manager",
    .fixed_summary = "syncBatch deletes in a goroutine of its own: every thread finishes, joined, the manager freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = STATUSES_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
