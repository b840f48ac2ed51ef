/* unjoined_thread - C only: a worker returns its result and ends, and
 * nobody joins it; glibc keeps what it left for a pthread_join that never
 * comes (ThreadSanitizer's "thread leak").
 *
 * No Go original: a goroutine that returns is gone, and with it whatever
 * only it referenced. A pthread is not: until someone joins (or detaches)
 * it, glibc keeps its descriptor, its stack mapping (LL_ZOO_STACK_BYTES and
 * a guard page of address space, the descriptor and static TLS at its top)
 * and its dynamic TLS vector (the dtv, a few hundred heap bytes), so that
 * pthread_join can hand out the value the thread returned. A worker that
 * reports its result that way is the usual reason a thread is created
 * joinable; a caller that forgets the join loses the result too.
 *
 * The C form: render_report() is the buggy function: it starts a worker
 * (build_report) that renders a report of REPORT_BYTES (the payload) and
 * returns it, then forgets the worker: neither joined nor detached. Each
 * instance waits until the worker has really ended (ll_await_finished:
 * its tid cleared, its task gone) and drops the pthread_t. Nothing is left
 * running: the leak is one finished, unjoined thread per call, holding its
 * report through its descriptor (leaked_threads 0, unjoined_threads =
 * instances, pinned_bytes = the report; the dtv, glibc's, is left to the
 * truth's slack, and the stack mapping is not heap). The harness sees it
 * natively in counters.unjoined_threads (glibc's list of stacks in use).
 *
 * What the tools see: see expected/zoo/unjoined_thread.toml (measured).
 *
 * The fix: join the worker, take the report it returned, free it.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { REPORT_BYTES = 64 * 1024 }; /* the report one worker returns: the payload of one instance */

struct job {                /* what the worker renders the report from; the worker's to free */
    ll_run *run;
    unsigned seed;
};

/* The worker: renders the report and returns it, for pthread_join to hand
 * out. malloc here: tools charge the payload to build_report. */
static void *build_report(void *arg)
{
    struct job *job = arg;
    unsigned char *report = malloc(REPORT_BYTES);
    if (!report)
        ll_refuse(job->run, "malloc", ENOMEM, "lower --instances");
    memset(report, (int)(job->seed & 0xff), REPORT_BYTES);
    free(job);
    return report;
}

/* The buggy function: starts the worker and forgets it. (It returns the
 * handle only so that the instance can watch the worker end.) */
static pthread_t render_report(ll_run *run, unsigned seed)
{
    struct job *job = ll_xmalloc(run, sizeof *job);
    *job = (struct job){.run = run, .seed = seed};
    pthread_t worker;
    ll_thread_start(run, &worker, build_report, job);
    return worker; /* leaky: no pthread_join, no pthread_detach: its descriptor, stack and report stay */
}

static void leaky_instance(ll_run *run, long long instance)
{
    pthread_t worker = render_report(run, (unsigned)instance);
    ll_await_finished(run, worker); /* the leak is complete once the worker has ended; its handle is forgotten */
}

static void fixed_instance(ll_run *run, long long instance)
{
    pthread_t worker = render_report(run, (unsigned)instance);
    ll_await_finished(run, worker); /* the same order: the worker has ended before the join */
    void *report = NULL;
    LL_FIX(pthread_join(worker, &report)); /* FIX: join the worker, take its report */
    LL_FIX(free(report));                  /* FIX: and free it once used */
}

static const ll_zoo_kernel kernel = {
    .name = "unjoined_thread",
    .summary = "C only (join): a worker returns its result and ends; nobody joins it, so glibc keeps\n"
               "its descriptor, stack, TLS and the result for a pthread_join that never comes.",
    .leaky_summary = "the worker is neither joined nor detached: it ends, its result and stack stay behind",
    .fixed_summary = "the caller joins the worker, takes the result it returned and frees it",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = REPORT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
