/* kubernetes30872 - GoKer kubernetes#30872 (AB-BA): a federated informer's
 * sub-informer holds its queue's lock while it adds a cluster under the
 * informer's lock; ClustersSynced holds the informer's lock while it asks
 * the sub-informer, which takes the queue's lock. A third thread, stopping
 * the informer, queues up behind them.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes30872.go; the fix: kubernetes/kubernetes pull 30872,
 * "Fix deadlock possibility in federated informer"):
 *
 *     G2: controller.Run(stopChan)          G4: deliverer's handler
 *         loop: DeltaFIFO.Pop()                 reconcileNamespace() -> ClustersSynced()
 *               f.lock.Lock()       [L2]            f.Lock()                 [L1]
 *               process() -> addCluster()           controller.HasSynced()
 *                   f.Lock()        [L1]                DeltaFIFO.lock.Lock() [L2]
 *     G3: <-stop; informer.Stop(): f.Lock() [L1]
 *     G1: nc.Run(stop): Start() (go G2), go G3, go G4; then close(stop)
 *
 * Go's goroutineleak profile reports (*DelayingDeliverer).StartWithHandler
 * .func1, (*Controller).Run and (*NamespaceController).Run.func1, all
 * [sync.Mutex.Lock] (flaky in Go: it needs both windows at once).
 *
 * The C form: the informer's lock L1 is a pthread mutex, the queue's lock
 * L2 a writer-preferring pthread rwlock taken for writing (Go's
 * RWMutex.Lock); stop channels are ll_chans; G1 is the caller itself (it
 * returns, as in Go). The namespace controller is malloc'ed with its state
 * (CONTROLLER_BYTES, the payload). The window is forced, not hoped for: on
 * its first pop G2 waits at a barrier with G4, so neither asks for its
 * second lock before both hold their first; the caller closes stop only
 * once G2 is popping (else the controller may stop before its first pop,
 * and there is no bug to see) and, in the leaky run, once both wait, so
 * G3 finds L1 taken. G2, G3 and G4 are left, and only
 * they reach the controller (orphaned).
 *
 * The fix (the pull request's: "at most 1 lock taken in federated
 * informer"): ClustersSynced no longer takes L1 (the sub-informer is set
 * once, in the constructor).
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { CONTROLLER_BYTES = 64 * 1024 }; /* the namespace controller's state: the payload of one instance */

struct namespace_controller {
    pthread_mutex_t informer_lock;  /* Go: federatedInformerImpl's sync.Mutex, L1 */
    pthread_rwlock_t fifo_lock;     /* Go: DeltaFIFO.lock, L2 */
    ll_chan *informer_stop;         /* Go: clusterInformer.stopChan */
    ll_chan *stop;                  /* Go: NamespaceController.Run's stopChan */
    unsigned char *state;
    bool fixed;
    bool first_pop_done;            /* G2 only */
    pthread_barrier_t both_hold_first; /* the forced window */
    ll_chan *popping;               /* forced order: closed once G2 is in its first pop */
    pthread_t controller, stopper, handler;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct namespace_controller *new_namespace_controller(ll_run *run, bool fixed)
{
    struct namespace_controller *nc = ll_xmalloc(run, sizeof *nc);
    *nc = (struct namespace_controller){.stop = ll_chan_new(run, 0), .state = ll_xmalloc(run, CONTROLLER_BYTES),
                                        .fixed = fixed, .popping = ll_chan_new(run, 0)};
    memset(nc->state, 0x5a, CONTROLLER_BYTES);
    pthread_mutex_init(&nc->informer_lock, NULL);
    ll_rwlock_init_writer_preferring(run, &nc->fifo_lock); /* Go's preference, checked: exit 77 where not honoured */
    pthread_barrier_init(&nc->both_hold_first, NULL, 2);
    return nc;
}

static void free_namespace_controller(struct namespace_controller *nc)
{
    pthread_barrier_destroy(&nc->both_hold_first);
    pthread_rwlock_destroy(&nc->fifo_lock);
    pthread_mutex_destroy(&nc->informer_lock);
    ll_chan_free(nc->informer_stop);
    ll_chan_free(nc->stop);
    ll_chan_free(nc->popping);
    free(nc->state);
    free(nc);
}

static void add_cluster(struct namespace_controller *nc) /* the sub-informer's AddFunc */
{
    pthread_mutex_lock(&nc->informer_lock);  /* L1: leaky, G4 holds it */
    pthread_mutex_unlock(&nc->informer_lock);
}

static void pop(struct namespace_controller *nc)          /* DeltaFIFO.Pop(process) */
{
    pthread_rwlock_wrlock(&nc->fifo_lock);   /* L2 */
    if (!nc->first_pop_done) {
        nc->first_pop_done = true;
        pthread_barrier_wait(&nc->both_hold_first);
        ll_chan_close(nc->popping);          /* forced order: stop may come now, not before */
    }
    add_cluster(nc);                         /* process() -> OnAdd() */
    pthread_rwlock_unlock(&nc->fifo_lock);
}

/* G2: Controller.Run(stopChan) -> Util -> JitterUntil(processLoop). */
static LL_WAIT_SITE void controller_run(struct namespace_controller *nc)
{
    for (;;) {
        ll_select_case stop = {.chan = nc->informer_stop};
        if (ll_select(&stop, 1, true) == 0) /* case <-stopCh: return; default: */
            return;
        pop(nc);
    }
}

static void has_synced(struct namespace_controller *nc)   /* the sub-informer's HasSynced */
{
    pthread_rwlock_wrlock(&nc->fifo_lock);   /* L2: leaky, G2 holds it */
    pthread_rwlock_unlock(&nc->fifo_lock);
}

/* G4: the deliverer's handler, reconcileNamespace() -> isSynced() -> ClustersSynced(). */
static LL_WAIT_SITE void clusters_synced(struct namespace_controller *nc)
{
    bool locks = nc->fixed ? LL_FIX_VALUE(false, true) : true; /* FIX: no L1: the sub-informer never changes */
    if (locks)
        pthread_mutex_lock(&nc->informer_lock); /* L1 */
    pthread_barrier_wait(&nc->both_hold_first);
    has_synced(nc);
    if (locks)
        pthread_mutex_unlock(&nc->informer_lock);
}

/* G3: <-stopChan; namespaceFederatedInformer.Stop(). */
static LL_WAIT_SITE void run_stopper(struct namespace_controller *nc)
{
    void *unused;
    ll_chan_recv(nc->stop, &unused);
    pthread_mutex_lock(&nc->informer_lock);  /* L1: leaky, G4 holds it */
    ll_chan_close(nc->informer_stop);
    pthread_mutex_unlock(&nc->informer_lock);
}

static void *controller_thread(void *nc) { controller_run(nc); return NULL; }
static void *handler_thread(void *nc) { clusters_synced(nc); return NULL; }
static void *stopper_thread(void *nc) { run_stopper(nc); return NULL; }

/* G1: NamespaceController.Run(stop). */
static struct namespace_controller *namespace_controller_run(ll_run *run, bool fixed)
{
    struct namespace_controller *nc = new_namespace_controller(run, fixed);
    pthread_mutex_lock(&nc->informer_lock);  /* informer.Start(): L1 */
    nc->informer_stop = ll_chan_new(run, 0);
    ll_thread_start(run, &nc->controller, controller_thread, nc); /* go controller.Run(stopChan) */
    pthread_mutex_unlock(&nc->informer_lock);
    ll_thread_start(run, &nc->stopper, stopper_thread, nc);       /* go func() { <-stop; Stop() }() */
    ll_thread_start(run, &nc->handler, handler_thread, nc);       /* deliverer.StartWithHandler */
    void *unused;
    ll_chan_recv(nc->popping, &unused);      /* forced order: G2 pops (in Go: before Stop, or no bug) */
    return nc;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct namespace_controller *nc = namespace_controller_run(run, false);
    ll_await_parked(run, nc->controller, &nc->informer_lock, sizeof nc->informer_lock); /* G2 waits for L1 */
    ll_await_parked(run, nc->handler, &nc->fifo_lock, sizeof nc->fifo_lock);           /* G4 waits for L2 */
    ll_chan_close(nc->stop);                                                            /* close(stop) */
    ll_await_parked(run, nc->stopper, &nc->informer_lock, sizeof nc->informer_lock);   /* G3 waits for L1 */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct namespace_controller *nc = namespace_controller_run(run, true);
    ll_chan_close(nc->stop);                   /* close(stop) */
    LL_FIX(pthread_join(nc->handler, NULL));   /* FIX: one lock at a time: the handler finishes, */
    LL_FIX(pthread_join(nc->stopper, NULL));   /* Stop takes L1 and closes the informer's stop, */
    LL_FIX(pthread_join(nc->controller, NULL)); /* the controller sees it: join all three */
    LL_FIX(free_namespace_controller(nc));     /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes30872",
    .summary = "GoKer kubernetes#30872 (AB-BA): a sub-informer holds its queue's lock and adds a cluster\n"
               "under the informer's lock; ClustersSynced holds the informer's and takes the queue's.",
    .leaky_summary = "ClustersSynced takes the informer's lock: three threads wait forever, holding the controller",
    .fixed_summary = "ClustersSynced takes no informer lock: everything finishes, joined, the controller freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CONTROLLER_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
