/* htslib_flush - C: samtools/htslib pull 1309 (commit 5fbd7e7), a pool's
 * work left at close: the flush that ends a CRAM file waits for a queued job
 * that no idle pool thread will take, because each idle worker counts itself
 * as busy and the output queue's last slot as not enough; the thread that
 * would empty the output queue is the one waiting in the flush.
 *
 * The original (thread_pool.c before 5fbd7e7, 2021): a worker takes a job
 * only if the process queue has room for the results of every running
 * worker,
 *
 *     if (q && q->input_head
 *         && q->qsize - q->n_output > p->tsize - p->nwaiting   // the bug
 *         && !q->shutdown) { work_to_do = 1; ... }
 *     if (!work_to_do) { p->nwaiting++; pthread_cond_wait(&w->pending_c, ..); p->nwaiting--; continue; }
 *
 * and hts_tpool_process_flush wakes every waiting worker "for the final
 * sprint", then waits while n_input or n_processing (timed waits of 1 s, in
 * a loop). The commit: "the output queue is full, meaning the flush isn't
 * something that we can call and just wait on unless we have a separate
 * thread that is able to drain the queue. (This is valid for SAM and BAM,
 * but not CRAM where the result consumer is also the same thread that calls
 * the flush)"; "the initial [check] in tpool_worker didn't consider that the
 * current worker thread isn't executing". The checking worker never counts
 * as waiting, so tsize - nwaiting is at least 1: with one free output slot
 * no worker ever takes the job. (Seen once in 750 runs of test_view upstream.)
 *
 * The C form: a pool of TSIZE = 2 workers and one process queue of qsize 2,
 * the parts of thread_pool.c the bug needs (t_stack, nwaiting,
 * wake_next_worker's test, the job and result counts, the flush). A job
 * compresses one slice of the container (CONTAINER_BYTES, the payload, which
 * the closing thread owns). The closing thread (cram_close) dispatches job
 * 1, then, before it reads job 1's result, dispatches job 2 and flushes. One
 * gate forces the interleaving the bug needs: job 2 is dispatched once job
 * 1's result is in the output queue (the closer waits on output_avail_c
 * without taking the result). From there the deadlock is certain, not
 * timed: n_output 1 of qsize 2, and every worker that looks sees
 * 2 - 1 > 2 - nwaiting false. Per instance three threads leak: the two
 * workers in tpool_worker (pending_c) and the closer in
 * hts_tpool_process_flush (input_empty_c), holding the container; nothing
 * else reaches the pool (orphaned).
 *
 * The fix (the commit's, suggested by Rob Davies): test against the jobs
 * actually running, `q->qsize - q->n_output > q->n_processing`, which "also
 * now matches the hts_tpool_process_flush logic". The worker takes job 2,
 * the flush returns, the closer reads both results and destroys the pool.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    TSIZE = 2,                     /* p->tsize: the pool's workers */
    QSIZE = 2,                     /* q->qsize: the process queue's size */
    JOBS = 2,                      /* the container's slices */
    CONTAINER_BYTES = 64 * 1024,   /* the data the jobs compress: the payload of one instance */
};

struct tpool;

struct tpool_worker {
    struct tpool *p;
    int idx;
    pthread_cond_t pending_c;
    pthread_t tid;
};

struct tpool {                     /* hts_tpool with its one hts_tpool_process */
    pthread_mutex_t pool_m;
    struct tpool_worker t[TSIZE];
    int t_stack[TSIZE], t_stack_top;
    int nwaiting, njobs;
    bool shutdown, fixed;
    /* the process queue */
    int qsize, n_input, n_processing, n_output, next_job;
    pthread_cond_t input_empty_c, none_processing_c, output_avail_c;
    unsigned char *container;
    size_t compressed[JOBS];       /* the results */
    pthread_t closer;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct tpool *new_tpool(ll_run *run, bool fixed)
{
    struct tpool *p = ll_xmalloc(run, sizeof *p);
    *p = (struct tpool){.container = ll_xmalloc(run, CONTAINER_BYTES), .fixed = fixed,
                        .qsize = QSIZE, .t_stack_top = -1};
    memset(p->container, 0x5a, CONTAINER_BYTES);
    pthread_mutex_init(&p->pool_m, NULL);
    pthread_cond_init(&p->input_empty_c, NULL);
    pthread_cond_init(&p->none_processing_c, NULL);
    pthread_cond_init(&p->output_avail_c, NULL);
    for (int i = 0; i < TSIZE; i++) {
        p->t[i] = (struct tpool_worker){.p = p, .idx = i};
        pthread_cond_init(&p->t[i].pending_c, NULL);
    }
    return p;
}

static void free_tpool(struct tpool *p)
{
    for (int i = 0; i < TSIZE; i++)
        pthread_cond_destroy(&p->t[i].pending_c);
    pthread_cond_destroy(&p->output_avail_c);
    pthread_cond_destroy(&p->none_processing_c);
    pthread_cond_destroy(&p->input_empty_c);
    pthread_mutex_destroy(&p->pool_m);
    free(p->container);
    free(p);
}

/* A job: "compresses" one slice of the container. */
static size_t compress_slice(const unsigned char *slice, size_t n)
{
    size_t runs = 1;
    for (size_t i = 1; i < n; i++)
        runs += slice[i] != slice[i - 1];
    return runs;
}

static LL_WAIT_SITE void *tpool_worker(void *arg)
{
    struct tpool_worker *w = arg;
    struct tpool *p = w->p;
    pthread_mutex_lock(&p->pool_m);
    while (!p->shutdown) {
        bool work_to_do = p->n_input > 0 && !p->shutdown
            && p->qsize - p->n_output > LL_FIX_VALUE(p->fixed ? p->n_processing : TSIZE - p->nwaiting,
                                                     TSIZE - p->nwaiting); /* FIX: count the running jobs */
        if (!work_to_do) {
            p->nwaiting++;
            if (p->t_stack_top == -1 || p->t_stack_top > w->idx)
                p->t_stack_top = w->idx;
            p->t_stack[w->idx] = 1;
            pthread_cond_wait(&w->pending_c, &p->pool_m); /* leaky: no one will take job 2 */
            p->t_stack[w->idx] = 0;
            p->t_stack_top = -1;
            for (int i = 0; i < TSIZE; i++)
                if (p->t_stack[i]) {
                    p->t_stack_top = i;
                    break;
                }
            p->nwaiting--;
            continue;
        }
        int job = p->next_job++;
        p->n_input--;
        p->n_processing++;
        p->njobs--;
        if (p->n_input == 0)
            pthread_cond_signal(&p->input_empty_c);
        pthread_mutex_unlock(&p->pool_m);
        size_t result = compress_slice(p->container + job * (CONTAINER_BYTES / JOBS), CONTAINER_BYTES / JOBS);
        pthread_mutex_lock(&p->pool_m);               /* hts_tpool_add_result */
        p->compressed[job] = result;
        if (--p->n_processing == 0)
            pthread_cond_signal(&p->none_processing_c);
        p->n_output++;
        pthread_cond_broadcast(&p->output_avail_c);
    }
    pthread_mutex_unlock(&p->pool_m);
    return NULL;
}

/* hts_tpool_dispatch and its wake_next_worker. */
static void tpool_dispatch(struct tpool *p)
{
    pthread_mutex_lock(&p->pool_m);
    p->njobs++;
    p->n_input++;
    if (p->t_stack_top >= 0 && p->njobs > TSIZE - p->nwaiting && p->n_processing < p->qsize - p->n_output)
        pthread_cond_signal(&p->t[p->t_stack_top].pending_c);
    pthread_mutex_unlock(&p->pool_m);
}

/* hts_tpool_process_flush. */
static LL_WAIT_SITE void hts_tpool_process_flush(struct tpool *p)
{
    pthread_mutex_lock(&p->pool_m);
    for (int i = 0; i < TSIZE; i++) /* "Wake up everything for the final sprint!" */
        if (p->t_stack[i])
            pthread_cond_signal(&p->t[i].pending_c);
    if (p->qsize < p->n_output + p->n_input + p->n_processing) /* "Shouldn't be possible to get here" */
        p->qsize = p->n_output + p->n_input + p->n_processing;
    while (p->n_input || p->n_processing) {
        while (p->n_input) {
            struct timespec timeout;
            clock_gettime(CLOCK_REALTIME, &timeout);
            timeout.tv_sec += 1;
            pthread_cond_timedwait(&p->input_empty_c, &p->pool_m, &timeout); /* leaky: forever, a second at a time */
        }
        while (p->n_processing) {
            struct timespec timeout;
            clock_gettime(CLOCK_REALTIME, &timeout);
            timeout.tv_sec += 1;
            pthread_cond_timedwait(&p->none_processing_c, &p->pool_m, &timeout);
        }
    }
    pthread_mutex_unlock(&p->pool_m);
}

/* The closing thread (cram_close): the results' consumer, and the flusher. */
static void *cram_close(void *arg)
{
    struct tpool *p = arg;
    tpool_dispatch(p);                                /* job 1 */
    pthread_mutex_lock(&p->pool_m);
    while (p->n_output < 1)                           /* the gate: job 1's result is out, not yet read */
        pthread_cond_wait(&p->output_avail_c, &p->pool_m);
    pthread_mutex_unlock(&p->pool_m);
    tpool_dispatch(p);                                /* job 2 */
    hts_tpool_process_flush(p);
    pthread_mutex_lock(&p->pool_m);                   /* the results, then hts_tpool_destroy */
    p->n_output = 0;
    p->shutdown = true;
    for (int i = 0; i < TSIZE; i++)
        pthread_cond_signal(&p->t[i].pending_c);
    pthread_mutex_unlock(&p->pool_m);
    for (int i = 0; i < TSIZE; i++)
        pthread_join(p->t[i].tid, NULL);
    return NULL;
}

static struct tpool *open_and_close(ll_run *run, bool fixed)
{
    struct tpool *p = new_tpool(run, fixed);
    for (int i = 0; i < TSIZE; i++)
        ll_thread_start(run, &p->t[i].tid, tpool_worker, &p->t[i]);
    for (int i = 0; i < TSIZE; i++) /* idle before the first job */
        ll_await_parked(run, p->t[i].tid, &p->t[i].pending_c, sizeof p->t[i].pending_c);
    ll_thread_start(run, &p->closer, cram_close, p);
    return p;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct tpool *p = open_and_close(run, false);
    ll_await_parked(run, p->closer, &p->input_empty_c, sizeof p->input_empty_c); /* flushing */
    for (int i = 0; i < TSIZE; i++) /* each worker has looked, and gone back to sleep */
        ll_await_parked(run, p->t[i].tid, &p->t[i].pending_c, sizeof p->t[i].pending_c);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct tpool *p = open_and_close(run, true);
    LL_FIX(pthread_join(p->closer, NULL)); /* FIX: job 2 was taken: the flush returned, the pool was destroyed */
    LL_FIX(free_tpool(p));
}

static const ll_zoo_kernel kernel = {
    .name = "htslib_flush",
    .summary = "C: samtools/htslib pull 1309 (work left at close): the flush waits for a queued job that\n"
               "no idle pool thread takes, since each counts itself busy; the flusher is the output's reader.",
    .leaky_summary = "one output slot left, every looking worker counts itself: job 2 is never taken; flush and pool wait",
    .fixed_summary = "workers test against the running jobs: job 2 is taken, the flush returns, the pool is destroyed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CONTAINER_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
