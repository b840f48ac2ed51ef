/* opencl_pool_join - C++: KhronosGroup/OpenCL-CTS pull 1553 (a thread pool
 * never joined at shutdown): ThreadPool_Exit tells the workers to stop and
 * waits until they have all left, but never joins them; every worker ends
 * and stays behind, unjoined (ThreadSanitizer's "thread leak").
 *
 * The original (test_common/harness/ThreadPool.cpp before commit 191fd0f,
 * 2022): ThreadPool_Init starts gThreadCount workers with pthread_create and
 * keeps no pthread_t; ThreadPool_Exit, registered with atexit:
 *
 *     gRunCount = CL_INT_MAX;                      // the workers' signal to leave
 *     for (count = 0; 0 != gThreadCount && count < 1000; count++) {
 *         pthread_cond_broadcast(&cond_var);       // wake the idle ones
 *         usleep(1000);
 *     }
 *     log_info("Thread pool exited in a orderly fashion.\n");
 *
 * Each worker decrements gThreadCount and returns. The commit message: "the
 * threads are only informed to stop waiting on the condition variable which
 * unblocks the worker thread but does not clean up after itself", with
 * TSan's report "thread leak ... Thread T9 (tid=..., finished) created by
 * main thread at: ... ThreadPool_Init()" and "7 more similar thread leaks".
 *
 * The C form: struct thread_pool is one pool (the original's globals, here
 * one per call, so --instances N leaves N pools' workers), WORKERS workers
 * waiting on cond_var for work. pool_exit is ThreadPool_Exit; it waits for
 * gThreadCount to reach 0 on a condition variable the last worker signals,
 * where the original polls it with usleep(1000) (no sleeps in the zoo; the
 * bug is the missing join, not the wait). The leaky call then waits until
 * every worker has really ended (ll_await_finished) and forgets the pool.
 * Nothing is left running: the leak is WORKERS finished, unjoined threads
 * per call (leaked_threads 0, unjoined_threads = 2 x instances): glibc keeps
 * each one's descriptor, stack mapping and TLS for a pthread_join that never
 * comes. They return nothing, so they pin no heap (pinned_bytes 0); the
 * payload, the data the pool's jobs work on (JOB_BYTES), is freed by the
 * caller in both variants. The harness sees the leak natively in
 * counters.unjoined_threads.
 *
 * The fix (the commit's): ThreadPool_Init keeps every pthread_t (a static
 * std::vector<pthread_t> pthreads), and ThreadPool_Exit joins each of them
 * once gThreadCount is 0 ("The list of pthread_t's is then used by
 * ThreadPool_Exit to call pthread_join").
 */
#include "leaklab.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum {
    WORKERS = 2,              /* gThreadCount: the pool's workers */
    JOB_BYTES = 64 * 1024,    /* the data the jobs work on: the payload of one instance */
};

struct thread_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond_var;  /* the workers wait here for work */
    pthread_cond_t left;      /* gThreadCount reached 0 (the original polls it) */
    int run_count;            /* gRunCount: INT_MAX tells the workers to leave */
    int thread_count;         /* gThreadCount */
    pthread_t pthreads[WORKERS]; /* the fix's std::vector<pthread_t> (kept in both: the leaky forgets them) */
    unsigned char *jobs;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct thread_pool *new_pool(ll_run *run)
{
    struct thread_pool *p = ll_xmalloc(run, sizeof *p);
    *p = (struct thread_pool){.jobs = ll_xmalloc(run, JOB_BYTES)};
    memset(p->jobs, 0x5a, JOB_BYTES);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond_var, NULL);
    pthread_cond_init(&p->left, NULL);
    return p;
}

static void free_pool(struct thread_pool *p)
{
    pthread_cond_destroy(&p->left);
    pthread_cond_destroy(&p->cond_var);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ThreadPool_WorkerFunc: waits for work until told to leave. */
static void *thread_pool_worker(void *arg)
{
    struct thread_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    while (p->run_count != INT_MAX)
        pthread_cond_wait(&p->cond_var, &p->lock);
    if (--p->thread_count == 0)
        pthread_cond_signal(&p->left);
    pthread_mutex_unlock(&p->lock);
    return NULL; /* leaky: nobody joins it */
}

static struct thread_pool *thread_pool_init(ll_run *run)
{
    struct thread_pool *p = new_pool(run);
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < WORKERS; i++) {
        ll_thread_start(run, &p->pthreads[i], thread_pool_worker, p);
        p->thread_count++;
    }
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < WORKERS; i++) /* idle, as after the last job */
        ll_await_parked(run, p->pthreads[i], &p->cond_var, sizeof p->cond_var);
    return p;
}

/* ThreadPool_Exit: the buggy function. */
static void thread_pool_exit(struct thread_pool *p, bool fixed)
{
    pthread_mutex_lock(&p->lock);
    p->run_count = INT_MAX;
    pthread_cond_broadcast(&p->cond_var);
    while (p->thread_count != 0)
        pthread_cond_wait(&p->left, &p->lock); /* "spin waiting for threads to die" */
    pthread_mutex_unlock(&p->lock);
    if (fixed)
        for (int i = 0; i < WORKERS; i++)
            LL_FIX(pthread_join(p->pthreads[i], NULL)); /* FIX: join every pthread_t ThreadPool_Init kept */
    /* "Thread pool exited in a orderly fashion." */
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct thread_pool *p = thread_pool_init(run);
    thread_pool_exit(p, false);
    for (int i = 0; i < WORKERS; i++) /* the leak is complete once each worker has ended */
        ll_await_finished(run, p->pthreads[i]);
    free(p->jobs); /* the caller frees the jobs' data; the workers kept no pointer to it */
    free_pool(p);  /* the pthread_t's go with it: nobody can join the workers now */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct thread_pool *p = thread_pool_init(run);
    thread_pool_exit(p, true);
    free(p->jobs);
    free_pool(p);
}

static const ll_zoo_kernel kernel = {
    .name = "opencl_pool_join",
    .summary = "C++: KhronosGroup/OpenCL-CTS pull 1553 (pool never joined): ThreadPool_Exit waits until\n"
               "its workers have left but never joins them; each stays behind, ended and unjoined.",
    .leaky_summary = "the workers leave when told and are never joined: 2 finished threads per pool stay behind",
    .fixed_summary = "ThreadPool_Exit joins every pthread_t ThreadPool_Init kept",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = JOB_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
