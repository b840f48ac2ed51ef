/* pipe_reader - C only: a reader blocked in read() on a pipe whose write
 * end nobody closes; it waits for an end of file that never comes.
 *
 * No Go original (a goroutine blocked on an os.Pipe is the same bug, but the
 * goroutineleak profile does not report it: a wait on a file descriptor is
 * one the kernel can end, never provably leaked). The classic form in C:
 * a collector thread drains a job's output until EOF, and the code that
 * made the pipe keeps its copy of the write end open (it meant to hand it
 * to the job, a child process, and close its own): read() returns EOF only
 * once every write end is closed.
 *
 * The C form: run_job() is the buggy function: it makes the pipe, starts the
 * collector (collect_output, reading into the job's OUTPUT_BYTES buffer, the
 * payload), writes the job's output and forgets to close the write end. The
 * collector reads it and blocks in read() for more. Each instance waits
 * until the collector sits in read() on the pipe (ll_await_reading) and
 * forgets the job; both ends of the pipe stay open (2 descriptors per
 * instance). Not orphaned: the write end is still in the process's
 * descriptor table, and any thread could write to it or close it; a file
 * descriptor is a root no reachability analysis may ignore.
 *
 * What the tools see: see expected/zoo/pipe_reader.toml (measured).
 *
 * The fix: close the write end once the output is written; the collector
 * reads EOF, closes the read end and returns; the caller joins it.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

enum {
    OUTPUT_BYTES = 64 * 1024, /* the collector's buffer: the payload of one instance */
    FDS_PER_INSTANCE = 2,     /* a leaky instance keeps both ends of its pipe open */
    FD_MARGIN = 64,           /* stdio, the events file, the census's /proc reads */
};

static const char JOB_OUTPUT[] = "job 1: done\n"; /* what the job writes */

struct job {
    int out[2];               /* the output pipe: out[0] the collector reads, out[1] the job writes */
    unsigned char *output;    /* what the collector has read */
    size_t got;
    pthread_t collector;
};

/* The leaky variant keeps 2 descriptors per instance: take every one the
 * hard limit allows, as a server would, or say what to raise. */
static void allow_descriptors(ll_run *run)
{
    rlim_t need = (rlim_t)(FDS_PER_INSTANCE * ll_opt(run, "instances") + FD_MARGIN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
        ll_refuse(run, "raising RLIMIT_NOFILE", EMFILE,
                  "pipe_reader needs 2 x --instances + 64 descriptors: raise the hard limit "
                  "(ulimit -Hn; nofile in /etc/security/limits.conf) or lower --instances");
}

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct job *new_job(ll_run *run)
{
    struct job *job = ll_xmalloc(run, sizeof *job);
    *job = (struct job){.output = malloc(OUTPUT_BYTES)};
    if (!job->output)
        ll_refuse(run, "malloc", ENOMEM, "lower --instances");
    memset(job->output, 0x5a, OUTPUT_BYTES); /* resident, as a buffer in use is */
    if (pipe(job->out) != 0)
        ll_refuse(run, "pipe", errno, "raise the open-files limit (ulimit -n) or lower --instances");
    return job;
}

static void free_job(struct job *job)
{
    free(job->output);
    free(job);
}

/* The collector: drains the job's output until EOF. */
static LL_WAIT_SITE void collect_output(struct job *job)
{
    for (;;) {
        unsigned char overflow; /* a full buffer still drains the pipe */
        bool full = job->got == OUTPUT_BYTES;
        ssize_t n = read(job->out[0], full ? &overflow : job->output + job->got,
                         full ? 1 : OUTPUT_BYTES - job->got); /* leaky: blocks here for good */
        if (n == 0 || (n < 0 && errno != EINTR))
            break; /* EOF: every write end is closed */
        if (n > 0 && !full)
            job->got += (size_t)n;
    }
    close(job->out[0]);
}

static void *collector(void *job) { collect_output(job); return NULL; }

/* The buggy function: the job's output goes through the pipe, and the
 * write end stays open. */
static void run_job(ll_run *run, struct job *job, bool fixed)
{
    ll_thread_start(run, &job->collector, collector, job);
    if (write(job->out[1], JOB_OUTPUT, sizeof JOB_OUTPUT - 1) != (ssize_t)(sizeof JOB_OUTPUT - 1))
        ll_refuse(run, "write", errno, "the pipe refused a dozen bytes: this is a bug; report it");
    if (fixed)
        LL_FIX(close(job->out[1])); /* FIX: close the write end: the collector reads EOF */
}

static void leaky_instance(ll_run *run, long long instance)
{
    if (instance == 0)
        allow_descriptors(run);
    struct job *job = new_job(run);
    run_job(run, job, false);
    /* The leak is complete once the collector sits in read() on the pipe;
     * then main forgets the job (both descriptors stay open). */
    ll_await_reading(run, job->collector, job->out[0]);
}

static void fixed_instance(ll_run *run, long long instance)
{
    if (instance == 0)
        allow_descriptors(run);
    struct job *job = new_job(run);
    run_job(run, job, true);
    LL_FIX(pthread_join(job->collector, NULL)); /* FIX: the collector read EOF: join it */
    LL_FIX(free_job(job));                      /* FIX: and free its buffer */
}

static const ll_zoo_kernel kernel = {
    .name = "pipe_reader",
    .summary = "C only (pipe): a collector thread reads a job's output pipe until EOF; the write\n"
               "end is never closed, so it blocks in read() for good, holding its buffer.",
    .leaky_summary = "the write end stays open: the collector blocks in read(), both descriptors stay open",
    .fixed_summary = "the write end is closed after the output: the collector reads EOF, is joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = OUTPUT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
