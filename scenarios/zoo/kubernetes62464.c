/* kubernetes62464 - GoKer kubernetes#62464 (RWR deadlock): a thread
 * read-locks the CPU manager's state it already read-holds, while a writer
 * waits between the two; with a writer-preferring lock neither moves.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes62464.go; the fix: kubernetes/kubernetes pull 62464):
 *
 *     func (s *stateMemory) GetCPUSetOrDefault() {   // G1, m.reconcileState()
 *         s.RLock(); defer s.RUnlock()               // removed by the fix
 *         if ok := s.GetCPUSet(); ok { return }      //  -> s.RLock(): G1 waits here
 *         s.GetDefaultCPUSet()                       //  -> s.RLock()
 *     }
 *     func (p *staticPolicy) RemoveContainer(s State) {  // G2
 *         s.GetDefaultCPUSet()                       // RLock; RUnlock
 *         s.SetDefaultCPUSet()                       // s.Lock(): G2 waits here
 *     }
 *     go m.reconcileState(); go p.RemoveContainer(m.state)
 *
 * Go's goroutineleak profile reports (*manager).reconcileState
 * [sync.RWMutex.RLock] and (*staticPolicy).RemoveContainer
 * [sync.(RW)Mutex.Lock] (flaky in Go: 8 runs in 100).
 *
 * The C form: the state's sync.RWMutex is a pthread rwlock of kind
 * PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP (Go's: a waiting writer
 * blocks new readers); the state is malloc'ed with its CPU sets
 * (CPUSETS_BYTES, the payload). The window is forced, not hoped for: G1,
 * holding its first read lock, asks for the second only once G2 waits for
 * the write lock (a gate where Go calls runtime.Gosched()). GetCPUSet's
 * coin (rand.Intn in Go) says "not found" every time. G1 and G2 are left
 * on the rwlock, which only they reach (orphaned).
 *
 * The fix (the pull request's): GetCPUSetOrDefault takes no lock of its
 * own: the getters it calls lock for themselves.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { CPUSETS_BYTES = 64 * 1024 }; /* the state's CPU sets: the payload of one instance */

struct state_memory {
    pthread_rwlock_t mu;            /* Go: stateMemory's sync.RWMutex */
    unsigned char *cpusets;
    bool fixed;
    ll_chan *read_held;             /* forced order: closed once G1 is inside GetCPUSetOrDefault */
    ll_chan *writer_waits;          /* forced order: closed once G2 has asked for the write lock */
    pthread_t reconciler, remover;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct state_memory *new_state_memory(ll_run *run, bool fixed)
{
    struct state_memory *s = ll_xmalloc(run, sizeof *s);
    *s = (struct state_memory){.cpusets = ll_xmalloc(run, CPUSETS_BYTES), .fixed = fixed,
                               .read_held = ll_chan_new(run, 0), .writer_waits = ll_chan_new(run, 0)};
    memset(s->cpusets, 0x5a, CPUSETS_BYTES);
    ll_rwlock_init_writer_preferring(run, &s->mu); /* Go's preference, checked: exit 77 where not honoured */
    return s;
}

static void free_state_memory(struct state_memory *s)
{
    pthread_rwlock_destroy(&s->mu);
    ll_chan_free(s->read_held);
    ll_chan_free(s->writer_waits);
    free(s->cpusets);
    free(s);
}

static bool get_cpu_set(struct state_memory *s)
{
    void *unused;
    ll_chan_close(s->read_held);              /* forced order, where Go calls runtime.Gosched(): */
    ll_chan_recv(s->writer_waits, &unused);   /* G1 asks again only once G2 waits to write */
    pthread_rwlock_rdlock(&s->mu);            /* leaky: G1 already read-holds it; the writer goes first */
    bool found = s->cpusets[0] == 0;          /* Go: rand.Intn(10) > 5; here never */
    pthread_rwlock_unlock(&s->mu);
    return found;
}

static void get_default_cpu_set(struct state_memory *s)
{
    pthread_rwlock_rdlock(&s->mu);
    pthread_rwlock_unlock(&s->mu);
}

/* G1: m.reconcileState() -> m.state.GetCPUSetOrDefault(). */
static LL_WAIT_SITE void get_cpu_set_or_default(struct state_memory *s)
{
    bool locks = s->fixed ? LL_FIX_VALUE(false, true) : true; /* FIX: no lock of its own */
    if (locks)
        pthread_rwlock_rdlock(&s->mu);
    if (!get_cpu_set(s))
        get_default_cpu_set(s);
    if (locks)
        pthread_rwlock_unlock(&s->mu);
}

/* G2: p.RemoveContainer(s) ends in SetDefaultCPUSet. */
static LL_WAIT_SITE void set_default_cpu_set(struct state_memory *s)
{
    pthread_rwlock_wrlock(&s->mu);           /* leaky: G1 read-holds it */
    pthread_rwlock_unlock(&s->mu);
}

static void *reconcile_state(void *s) { get_cpu_set_or_default(s); return NULL; }
static void *remove_container(void *s) { get_default_cpu_set(s); set_default_cpu_set(s); return NULL; }

static struct state_memory *start(ll_run *run, bool fixed)
{
    struct state_memory *s = new_state_memory(run, fixed);
    ll_thread_start(run, &s->reconciler, reconcile_state, s); /* go m.reconcileState() */
    void *unused;
    ll_chan_recv(s->read_held, &unused);                      /* forced order: G1 is in its window */
    ll_thread_start(run, &s->remover, remove_container, s);   /* go p.RemoveContainer(m.state) */
    return s;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct state_memory *s = start(run, false);
    ll_await_parked(run, s->remover, &s->mu, sizeof s->mu);    /* G2 waits to write, behind G1's read */
    ll_chan_close(s->writer_waits);
    ll_await_parked(run, s->reconciler, &s->mu, sizeof s->mu); /* G1's second read waits behind G2 */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct state_memory *s = start(run, true);
    LL_FIX(pthread_join(s->remover, NULL));    /* FIX: G1 holds no lock in its window: G2 writes and returns */
    ll_chan_close(s->writer_waits);
    LL_FIX(pthread_join(s->reconciler, NULL)); /* and G1's read lock is granted: join both */
    LL_FIX(free_state_memory(s));              /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes62464",
    .summary = "GoKer kubernetes#62464 (RWR deadlock): GetCPUSetOrDefault read-locks the state and\n"
               "calls a getter that read-locks it again, while SetDefaultCPUSet waits to write.",
    .leaky_summary = "a recursive read lock behind a waiting writer: both threads wait forever, holding the state",
    .fixed_summary = "GetCPUSetOrDefault takes no lock of its own: the writer and the reader finish, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CPUSETS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
