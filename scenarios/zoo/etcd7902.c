/* etcd7902 - GoKer etcd#7902 (channel & lock): a follower waits for the
 * leader's signal while holding the mutex the leader must take to send it.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/etcd7902.go; the fix: etcd-io/etcd pull 7902):
 *
 *     rcs[i].validate = func() { rcNextc = nextc }
 *     rcs[i].release = func() {
 *         if i == 0 { close(nextc); nextc = make(chan bool) }   // the leader
 *         <-rcNextc }                                 // a follower waits here, holding mu
 *     func doRounds(rcs []roundClient, rounds int) {  // called by runElectionFunc: G1
 *         var mu sync.Mutex; var wg sync.WaitGroup
 *         wg.Add(len(rcs))
 *         for i := range rcs {
 *             go func(rc *roundClient) {              // G2 (leader), G3... (followers)
 *                 defer wg.Done()
 *                 for rc.progress < rounds {
 *                     rc.acquire()
 *                     mu.Lock(); rc.validate(); mu.Unlock()
 *                     time.Sleep(10 * time.Millisecond)
 *                     rc.progress++
 *                     mu.Lock(); rc.release(); mu.Unlock() } }(&rcs[i])   // the leader waits in Lock
 *         }
 *         wg.Wait() }                                 // G1 waits here
 *
 * Go's goroutineleak profile reports doRounds.func1 [chan receive] and
 * [sync.Mutex.Lock] and runElectionFunc [sync.WaitGroup.Wait] (flaky in
 * Go: a follower must take mu before the leader).
 *
 * The C form: nextc is an ll_chan (closing it is the leader's signal), mu a
 * mutex, wg an ll_waitgroup; 3 round clients, rcs[0] the leader, as in Go.
 * The 10 ms sleep, which lets every client validate before any releases,
 * is a barrier; one round shows the bug (Go's 100 only repeat it). The
 * order is forced: follower 1 takes mu for its release first, and the
 * leader and follower 2 take it only once follower 1 sleeps on nextc. The
 * second mu.Lock() is a frame of its own (round_lock), so the census tells
 * the waits apart. The clients hold the election's state (ELECTION_BYTES,
 * the payload). Main waits until all four sleep and forgets the election:
 * only they reach it (orphaned).
 *
 * What the tools see: see expected/zoo/etcd7902.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the pull request's): release() runs without mu (the Lock and
 * Unlock around it are removed).
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { CLIENTS = 3, ELECTION_BYTES = 64 * 1024 }; /* the election's state: the payload of one instance */

struct election;

struct round_client {
    struct election *e;
    int id;                         /* 0: the leader */
    int progress;
    ll_chan *next;                  /* Go: rcNextc, set by validate */
};

struct election {
    ll_run *run;
    pthread_mutex_t mu;
    ll_waitgroup wg;
    pthread_barrier_t slept;        /* Go: time.Sleep(10 * time.Millisecond) */
    ll_chan *nextc;
    ll_chan *first_waits;           /* forced order: closed once follower 1 sleeps on nextc */
    ll_chan *started;               /* closed once G1 has started the clients (clients[] set) */
    struct round_client rcs[CLIENTS];
    unsigned char *state;
    bool fixed;
    pthread_t g1, clients[CLIENTS];
};

__attribute__((noinline)) static struct election *new_election(ll_run *run, bool fixed)
{
    struct election *e = ll_xmalloc(run, sizeof *e);
    *e = (struct election){.run = run, .nextc = ll_chan_new(run, 0), .first_waits = ll_chan_new(run, 0),
                           .started = ll_chan_new(run, 0), .state = ll_xmalloc(run, ELECTION_BYTES),
                           .fixed = fixed};
    memset(e->state, 0x5a, ELECTION_BYTES);
    pthread_mutex_init(&e->mu, NULL);
    ll_waitgroup_init(&e->wg, run);
    pthread_barrier_init(&e->slept, NULL, CLIENTS);
    for (int i = 0; i < CLIENTS; i++)
        e->rcs[i] = (struct round_client){.e = e, .id = i};
    return e;
}

static void free_election(struct election *e)
{
    pthread_mutex_destroy(&e->mu);
    ll_waitgroup_destroy(&e->wg);
    pthread_barrier_destroy(&e->slept);
    ll_chan_free(e->nextc);           /* the leader's fresh nextc; the first one was freed by it */
    ll_chan_free(e->first_waits);
    ll_chan_free(e->started);
    free(e->state);
    free(e);
}

static LL_WAIT_SITE void round_release(struct round_client *rc)
{
    void *unused;
    if (rc->id == 0) {                /* the leader */
        ll_chan_close(rc->e->nextc);
        rc->e->nextc = ll_chan_new(rc->e->run, 0);
    }
    ll_chan_recv(rc->next, &unused); /* <-rcNextc: leaky: a follower waits here, holding mu */
}

static LL_WAIT_SITE void round_lock(struct election *e)
{
    pthread_mutex_lock(&e->mu);       /* leaky: the leader and follower 2 wait here */
    __asm__ volatile("" ::: "memory"); /* no tail call: this frame stays on the waiter's stack */
}

/* G2 (leader) and the followers. */
static void *round_client(void *arg)
{
    struct round_client *rc = arg;
    struct election *e = rc->e;
    void *unused;
    while (rc->progress < 1) {        /* one round */
        pthread_mutex_lock(&e->mu);
        rc->next = e->nextc;          /* rc.validate(): rcNextc = nextc */
        pthread_mutex_unlock(&e->mu);
        pthread_barrier_wait(&e->slept);
        rc->progress++;
        if (rc->id != 1)
            ll_chan_recv(e->first_waits, &unused); /* forced order: follower 1 releases first */
        bool locked = e->fixed ? LL_FIX_VALUE(false, true) : true; /* FIX: no mu around release() */
        if (locked)
            round_lock(e);
        if (rc->id == 1)
            ll_chan_close(e->first_waits);
        round_release(rc);
        if (locked)
            pthread_mutex_unlock(&e->mu);
    }
    ll_waitgroup_done(&e->wg);
    return NULL;
}

/* G1: runElectionFunc() -> doRounds(rcs, 1). */
static LL_WAIT_SITE void *do_rounds(void *arg)
{
    struct election *e = arg;
    ll_waitgroup_add(&e->wg, CLIENTS);
    for (int i = 0; i < CLIENTS; i++)
        ll_thread_start(e->run, &e->clients[i], round_client, &e->rcs[i]);
    ll_chan_close(e->started);
    ll_waitgroup_wait(&e->wg);
    return NULL;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct election *e = new_election(run, false);
    void *unused;
    ll_thread_start(run, &e->g1, do_rounds, e);
    ll_chan_recv(e->started, &unused);
    ll_chan_recv(e->first_waits, &unused);  /* follower 1 holds mu ... */
    ll_chan_await_parked(run, e->rcs[1].next, e->clients[1]); /* ... and sleeps on nextc */
    ll_await_parked(run, e->clients[0], &e->mu, sizeof e->mu);
    ll_await_parked(run, e->clients[2], &e->mu, sizeof e->mu);
    ll_await_parked(run, e->g1, &e->wg, sizeof e->wg);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct election *e = new_election(run, true);
    void *unused;
    ll_thread_start(run, &e->g1, do_rounds, e);
    ll_chan_recv(e->started, &unused);
    ll_chan_recv(e->first_waits, &unused);   /* follower 1 releases first, as in the leak */
    LL_FIX(pthread_join(e->g1, NULL));       /* FIX: the leader closes nextc unhindered: all end: join */
    for (int i = 0; i < CLIENTS; i++)
        LL_FIX(pthread_join(e->clients[i], NULL));
    LL_FIX(ll_chan_free(e->rcs[1].next));    /* FIX: and free what Go's GC would (the first nextc) */
    LL_FIX(free_election(e));
}

static const ll_zoo_kernel kernel = {
    .name = "etcd7902",
    .summary = "GoKer etcd#7902 (channel & lock): a follower waits for the leader's signal in release()\n"
               "while holding mu; the leader must take mu to send it.",
    .leaky_summary = "a follower waits on nextc holding mu, the leader and follower 2 wait for mu, G1 for all",
    .fixed_summary = "release() runs without mu: the leader closes nextc, all clients finish, joined and freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = ELECTION_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
