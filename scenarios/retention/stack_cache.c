/* stack_cache - threads are gone, their stacks are not.
 *
 * When a thread that glibc gave a stack ends, glibc keeps the stack for the
 * next pthread_create (its stack cache, up to 40 MiB of stacks by default:
 * glibc.pthread.stack_cache_size). Before it ends, the thread gives back most
 * of its stack (MADV_DONTNEED below its last frame) but keeps
 * PTHREAD_STACK_MIN (16 KiB) below that frame, and the pages above it: the
 * thread descriptor and its TLS. So every cached stack of a thread that used
 * its stack keeps about 16 KiB + 2 pages resident, and a burst of short-lived
 * threads leaves up to 40 MiB / stack size of them behind.
 *
 * The pattern: --threads threads start together; each uses --touch-kib of its
 * stack (a request parsed into a buffer on the stack, say), waits for the
 * others (a barrier: all alive at once, so none reuses another's stack) and
 * ends; main joins them all (phase exited: the [truth]). No heap is involved:
 * in use does not move, RSS does.
 *
 * Go's view: StackInuse falls when goroutines end; Go frees their stacks to
 * its stack pool (StackSys), and its scavenger returns the pages.
 *
 * The fix (variant returned): the program brings its own stacks
 * (pthread_attr_setstack, mmap) and unmaps them once the threads are joined:
 * glibc never caches a stack it did not allocate. The configuration fix,
 * GLIBC_TUNABLES=glibc.pthread.stack_cache_size=0 (or smaller), is in
 * docs/retention.md: it must be set before the process starts.
 *
 * Phases: baseline, running (every thread has used its stack and waits),
 * exited.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum {
    QUICK_THREADS = 256,  /* x 64 KiB: 17 MiB of stacks, all cached */
    SEED_THREADS = 2048,  /* 136 MiB of stacks: the cache keeps 40 MiB of them */
    MAX_THREADS = 10000,
    STACK_BYTES = 64 * 1024,
    TOUCH_KIB = 32,       /* more than PTHREAD_STACK_MIN: the part the exit keeps is all touched */
    MIN_TOUCH_KIB = 1,
    MAX_TOUCH_KIB = 48,   /* leaves the frames above the buffer room in 64 KiB */
};

static const ll_option options[] = {
    {"threads", "threads", SEED_THREADS, QUICK_THREADS, 1, MAX_THREADS, "threads started together, then joined"},
    {"touch-kib", "KiB", TOUCH_KIB, TOUCH_KIB, MIN_TOUCH_KIB, MAX_TOUCH_KIB,
     "how much of its 64 KiB stack each thread writes"},
    {0},
};

static atomic_llong running;

static const ll_counter counters[] = {
    {"running", &running},
    {0},
};

struct crowd {
    pthread_barrier_t used; /* every thread and main: every stack is used */
    pthread_barrier_t done; /* every thread and main: main has taken `running` */
    long long touch_bytes;
};

/* A request parsed into a buffer on the stack: touch_bytes of it written,
 * at its end, the end nearest the caller (the stack grows down), so the
 * pages just below the thread's last frames are the ones written. */
__attribute__((noinline)) static long use_stack(long long touch_bytes)
{
    char buf[MAX_TOUCH_KIB * 1024];
    char *from = buf + sizeof buf - touch_bytes;
    memset(from, 'x', (size_t)touch_bytes);
    __asm__ volatile("" : : "r"(buf) : "memory"); /* the writes happen */
    return from[0];
}

static void *thread_main(void *arg)
{
    struct crowd *c = arg;
    use_stack(c->touch_bytes);
    atomic_fetch_add(&running, 1);
    pthread_barrier_wait(&c->used);
    pthread_barrier_wait(&c->done);
    atomic_fetch_sub(&running, 1);
    return NULL;
}

/* Starts every thread, on glibc's stacks or (own_stacks) on the program's. */
static void run_crowd(ll_run *run, bool own_stacks)
{
    long long n = ll_opt(run, "threads");
    struct crowd c = {.touch_bytes = ll_opt(run, "touch-kib") * 1024};
    pthread_t *threads = ll_xmalloc(run, (size_t)n * sizeof *threads);
    void **stacks = ll_xmalloc(run, (size_t)n * sizeof *stacks);
    pthread_barrier_init(&c.used, NULL, (unsigned)n + 1);
    pthread_barrier_init(&c.done, NULL, (unsigned)n + 1);
    ll_phase(run, "baseline");

    for (long long i = 0; i < n; i++) {
        if (!own_stacks) {
            ll_thread_start(run, &threads[i], thread_main, &c); /* glibc's stack: STACK_BYTES + guard */
            continue;
        }
        stacks[i] = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stacks[i] == MAP_FAILED)
            ll_refuse(run, "mmap (a thread stack)", errno, "lower --threads or raise vm.max_map_count");
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstack(&attr, stacks[i], STACK_BYTES);
        int err = pthread_create(&threads[i], &attr, thread_main, &c);
        pthread_attr_destroy(&attr);
        if (err)
            ll_refuse(run, "pthread_create", err, "lower --threads or raise the limit on threads (ulimit -u)");
    }
    pthread_barrier_wait(&c.used);
    ll_phase(run, "running");
    pthread_barrier_wait(&c.done);
    for (long long i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    if (own_stacks)
        for (long long i = 0; i < n; i++)
            munmap(stacks[i], STACK_BYTES); /* the thread is joined: its stack is the program's again */
    ll_phase(run, "exited");

    pthread_barrier_destroy(&c.used);
    pthread_barrier_destroy(&c.done);
    free(stacks);
    free(threads);
}

static void run_kept(ll_run *run) { run_crowd(run, false); }

static void run_returned(ll_run *run)
{
    run_crowd(run, LL_FIX_VALUE(true, false)); /* FIX: the program's own stacks, unmapped after the join */
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "threads"), STACK_BYTES, "--threads x 64 KiB stacks", why,
                         why_len);
}

static const ll_variant variants[] = {
    {"kept", "glibc's stacks: after the join its stack cache keeps them, each with ~24 KiB resident", run_kept},
    {"returned", "the program's own stacks (pthread_attr_setstack), unmapped after the join", run_returned},
    {0},
};

static const ll_scenario scenario = {
    .name = "stack_cache",
    .summary = "Threads use their stacks and end; glibc keeps up to 40 MiB of their stacks for reuse,\n"
               "each with the pages below its last frame still resident.",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
    .thread_stack_bytes = STACK_BYTES,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
