/* mooncake_signal - C++: kvcache-ai/Mooncake pull 840 (a signal handler
 * takes a lock the interrupted thread holds): the termination handler calls
 * cleanupAllResources(), which locks the tracker's mutex; when the signal
 * lands on a thread inside that mutex, the thread waits for itself forever.
 *
 * The original (mooncake-store, the client's ResourceTracker before pull
 * 840, 2025): a handler installed for SIGINT/SIGTERM ran the cleanup in
 * signal context. The pull request draws it:
 *
 *     [Thread T2 running normally]
 *       Executing: lock(mutex_) ...
 *         (SIGINT arrives, kernel interrupts T2)
 *         Run signalHandler(SIGINT)
 *           -> calls cleanupAllResources
 *           -> tries to lock(mutex_)
 *     "If the signal interrupts a thread that already holds the mutex, the
 *     handler will try to lock the same mutex again -> self-deadlock."
 *
 * The C form: struct tracker is the ResourceTracker: its mutex_ and the
 * clients it tracks (CLIENTS_BYTES, the payload); every tracker is linked
 * from a global list, as upstream's is a static singleton (so the waiting
 * thread is reachable from a global: not orphaned). One tracker per
 * instance, so --instances N leaves N of them. The client thread registers
 * a client: it locks mutex_ and, inside, waits for the registration to be
 * acknowledged (a condition variable of its own: a thread "running
 * normally" in the critical section). SIGUSR1 stands for SIGINT and SIGTERM
 * (the harness keeps SIGINT for itself). The bad delivery is forced: the
 * signal is directed at the client thread once it sits inside the mutex
 * (ll_await_parked on its acknowledgement), the worst of the threads a
 * process-directed signal may pick. The handler runs on that thread and
 * sleeps on mutex_, which the same thread holds; the normal mutex never
 * tells it so. Per instance one thread leaks (cleanup_all_resources, its
 * frame above register_client's), holding the tracker.
 *
 * The fix (the pull request's, "use dedicated thread for signal handling"):
 * the termination signals are blocked in the application's threads and a
 * dedicated thread takes them with sigwait(), then runs
 * cleanupAllResources() "in normal thread context": it waits for mutex_
 * like any other thread, and gets it when the client leaves its critical
 * section. The fixed twin sends the signal to the process (as Ctrl-C does):
 * every thread blocks it, so its only delivery is the sigwait; it forces the
 * same adverse moment (the cleanup waits on mutex_ while the client holds
 * it), then lets the client go.
 */
#include "leaklab.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { CLIENTS_BYTES = 64 * 1024 }; /* what the tracker tracks: the payload of one instance */

#define TERMINATION_SIGNAL SIGUSR1  /* stands for SIGINT/SIGTERM */

struct tracker {
    pthread_mutex_t mutex_;         /* ResourceTracker::mutex_ */
    unsigned char *clients;
    pthread_mutex_t ack_m;          /* the client's acknowledgement, inside mutex_ */
    pthread_cond_t ack_c;
    bool acked;
    struct tracker *next;           /* the global list */
    pthread_t client, signal_thread;
};

static pthread_mutex_t trackers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tracker *trackers;                /* every tracker alive: the static singleton's role */
static struct tracker *volatile signalled;      /* the tracker the handler cleans (one instance at a time) */

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct tracker *new_tracker(ll_run *run)
{
    struct tracker *t = ll_xmalloc(run, sizeof *t);
    *t = (struct tracker){.clients = ll_xmalloc(run, CLIENTS_BYTES)};
    memset(t->clients, 0x5a, CLIENTS_BYTES);
    pthread_mutex_init(&t->mutex_, NULL);
    pthread_mutex_init(&t->ack_m, NULL);
    pthread_cond_init(&t->ack_c, NULL);
    pthread_mutex_lock(&trackers_lock);
    t->next = trackers;
    trackers = t;
    pthread_mutex_unlock(&trackers_lock);
    return t;
}

static void free_tracker(struct tracker *t)
{
    pthread_mutex_lock(&trackers_lock);
    for (struct tracker **p = &trackers; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            break;
        }
    pthread_mutex_unlock(&trackers_lock);
    pthread_cond_destroy(&t->ack_c);
    pthread_mutex_destroy(&t->ack_m);
    pthread_mutex_destroy(&t->mutex_);
    free(t->clients);
    free(t);
}

/* cleanupAllResources(): tears the clients down under mutex_. */
static LL_WAIT_SITE void cleanup_all_resources(struct tracker *t)
{
    pthread_mutex_lock(&t->mutex_); /* leaky: in the handler, on the thread that holds it: forever */
    memset(t->clients, 0, CLIENTS_BYTES);
    pthread_mutex_unlock(&t->mutex_);
}

/* The leaky handler: the cleanup in signal context. */
static void signal_handler(int sig)
{
    (void)sig;
    cleanup_all_resources(signalled);
}

/* A client registers itself: inside mutex_ until acknowledged. */
static void *register_client(void *arg)
{
    struct tracker *t = arg;
    pthread_mutex_lock(&t->mutex_);
    pthread_mutex_lock(&t->ack_m);
    while (!t->acked)
        pthread_cond_wait(&t->ack_c, &t->ack_m); /* leaky: the signal lands here */
    pthread_mutex_unlock(&t->ack_m);
    pthread_mutex_unlock(&t->mutex_);
    return NULL;
}

/* The fix: the dedicated thread takes the signal and cleans up in thread context. */
static void *signal_thread(void *arg)
{
    struct tracker *t = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, TERMINATION_SIGNAL);
    int sig;
    if (sigwait(&set, &sig) == 0)
        cleanup_all_resources(t);
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    if (instance == 0) {
        struct sigaction sa = {.sa_handler = signal_handler};
        sigemptyset(&sa.sa_mask);
        if (sigaction(TERMINATION_SIGNAL, &sa, NULL) != 0)
            ll_refuse(run, "sigaction(SIGUSR1)", errno, "this is a bug; report it");
    }
    struct tracker *t = new_tracker(run);
    ll_thread_start(run, &t->client, register_client, t);
    ll_await_parked(run, t->client, &t->ack_c, sizeof t->ack_c); /* the client is inside mutex_ */
    signalled = t;
    pthread_kill(t->client, TERMINATION_SIGNAL);                  /* the signal lands on it */
    ll_await_parked(run, t->client, &t->mutex_, sizeof t->mutex_); /* its handler sleeps on its own lock */
}

static void fixed_instance(ll_run *run, long long instance)
{
    if (instance == 0) {
        sigset_t set; /* FIX: the application's threads block the signal (they inherit main's mask) */
        sigemptyset(&set);
        sigaddset(&set, TERMINATION_SIGNAL);
        LL_FIX(pthread_sigmask(SIG_BLOCK, &set, NULL));
    }
    struct tracker *t = new_tracker(run);
    LL_FIX(ll_thread_start(run, &t->signal_thread, signal_thread, t)); /* FIX: a dedicated thread sigwaits */
    ll_thread_start(run, &t->client, register_client, t);
    ll_await_parked(run, t->client, &t->ack_c, sizeof t->ack_c);
    kill(getpid(), TERMINATION_SIGNAL); /* to the process, as Ctrl-C: only the sigwait can take it */
    LL_FIX(ll_await_parked(run, t->signal_thread, &t->mutex_, sizeof t->mutex_)); /* the cleanup waits, in thread context */
    pthread_mutex_lock(&t->ack_m);
    t->acked = true;                   /* the client leaves mutex_ */
    pthread_cond_signal(&t->ack_c);
    pthread_mutex_unlock(&t->ack_m);
    pthread_join(t->client, NULL);
    LL_FIX(pthread_join(t->signal_thread, NULL));
    LL_FIX(free_tracker(t));
}

static const ll_zoo_kernel kernel = {
    .name = "mooncake_signal",
    .summary = "C++: kvcache-ai/Mooncake pull 840 (signal handler and lock): the termination handler\n"
               "locks the tracker's mutex on a thread that already holds it, and waits for itself.",
    .leaky_summary = "the handler runs the cleanup on the thread inside mutex_: it sleeps on its own lock",
    .fixed_summary = "the signal is blocked and taken by a dedicated sigwait thread: the cleanup waits its turn, ends",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CLIENTS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
