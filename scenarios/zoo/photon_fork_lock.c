/* photon_fork_lock - C++: alibaba/PhotonLibOS pull 1573 (fork with a lock
 * held): a thread forks while another thread holds the log's rotation
 * mutex; the child inherits the mutex locked by a thread it does not have,
 * and its first log rotation waits forever. Here the parent thread waits
 * for the child's report, forever too.
 *
 * The original (PhotonLibOS common/alog.cpp before pull 1573, 2026):
 * LogOutputFile::write() guards log rotation with a function-local
 * `static std::mutex`. The pull request: "POSIX fork() clones only the
 * calling thread, so if a fork happens while another thread is holding this
 * mutex during rotation, the child inherits the mutex in a permanently
 * locked state - the owner thread does not exist in the child. The next
 * time the child's log size exceeds the rotate limit, it deadlocks
 * forever." (The same bug, seen from the parent, in cvmfs/cvmfs pull 3995:
 * the forked child logs between fork() and exec(), blocks on the log
 * buffer's mutex, "and the parent process waits forever".)
 *
 *     logger thread:                    forking thread:            child (only the forking thread's copy):
 *       lock(rotation_mutex);
 *       ... rotating ...                  pid = fork();  ------->    write() -> rotate:
 *                                         read(report)  // waits      lock(rotation_mutex)  // no owner here
 *       unlock(rotation_mutex);
 *
 * The C form: the rotation mutex is a file-scope pthread mutex, as after the
 * fix. Each instance has a logger thread that takes it and stays inside
 * (rotating) on a gate, and a spawner thread that forks a child to do a
 * job and waits for the child's report on a pipe (REPORT_BYTES, the
 * payload, which the spawner reads into). The bad order is forced: the
 * spawner starts only once the logger sits inside the mutex; the child logs
 * first thing, and the instance waits until the child sleeps in futex(2) on
 * its copy of the mutex (read from /proc/PID/syscall), then lets the logger
 * finish. What stays: the spawner, blocked in read() on the report pipe
 * (leaked_threads = instances, pipe_read, not orphaned: a descriptor is a
 * root), and one child process per instance, blocked on a mutex whose owner
 * does not exist in it: the truth language has no word for a process
 * (expected/zoo/photon_fork_lock.toml says what a tool should see). The
 * kernel bounds its children: each sets PR_SET_PDEATHSIG, SIGKILL when the
 * thread that forked it ends, which the leaky spawner does only when the
 * process ends (at exit, or killed by the watchdog), so no child outlives the
 * run. Nothing kills them earlier: an atexit handler that did (an earlier
 * form of this kernel) closed the report pipe's last write end, woke the
 * spawner at exit and hid the leak from every tool that looks then
 * (threadcheck saw no thread alive, ThreadSanitizer a finished one).
 *
 * The fix (the pull request's): the standard three-phase pthread_atfork
 * protection: "prepare: acquire the lock before fork, waiting out any
 * in-flight rotation, so at the instant of fork the lock is held by the
 * forking thread itself; parent / child: release it after fork. Since the
 * holder is the forking thread, unlocking on both sides is well-defined."
 * The fixed twin forces the same adverse moment (the fork starts while the
 * logger holds the mutex: the prepare handler waits for it), then the child
 * logs, reports and exits, and the spawner reaps it.
 */
#include "leaklab.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    REPORT_BYTES = 64 * 1024, /* the spawner's report buffer: the payload of one instance */
    FDS_PER_INSTANCE = 1,     /* a leaky instance keeps the report pipe's read end open */
    FD_MARGIN = 64,
};

static pthread_mutex_t rotation_mutex = PTHREAD_MUTEX_INITIALIZER; /* alog's rotation lock */

struct job {
    ll_run *run;
    int report[2];            /* the child writes report[1], the spawner reads report[0] */
    unsigned char *buf;
    size_t got;
    pid_t parent;
    _Atomic pid_t child;      /* set by the spawner after fork */
    pthread_mutex_t gate_m;   /* holds the logger inside the rotation mutex */
    pthread_cond_t gate_c;
    bool gate_open;
    pthread_t logger, spawner;
};

/* The fix: the three-phase atfork protection of the rotation mutex. */
static void prepare(void) { pthread_mutex_lock(&rotation_mutex); }
static void release(void) { pthread_mutex_unlock(&rotation_mutex); }

/* A leaky instance keeps one descriptor: take what the hard limit allows (as pipe_reader does). */
static void allow_descriptors(ll_run *run)
{
    rlim_t need = (rlim_t)(FDS_PER_INSTANCE * ll_opt(run, "instances") + FD_MARGIN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
        ll_refuse(run, "raising RLIMIT_NOFILE", EMFILE,
                  "photon_fork_lock needs --instances + 64 descriptors: raise the hard limit (ulimit -Hn)");
}

static void first_instance(ll_run *run, bool fixed)
{
    allow_descriptors(run);
    if (fixed)
        LL_FIX(pthread_atfork(prepare, release, release)); /* FIX: no fork while another thread holds the lock */
}

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct job *new_job(ll_run *run)
{
    struct job *j = ll_xmalloc(run, sizeof *j);
    *j = (struct job){.run = run, .buf = ll_xmalloc(run, REPORT_BYTES), .parent = getpid()};
    memset(j->buf, 0x5a, REPORT_BYTES);
    pthread_mutex_init(&j->gate_m, NULL);
    pthread_cond_init(&j->gate_c, NULL);
    if (pipe(j->report) != 0)
        ll_refuse(run, "pipe", errno, "raise the open-files limit (ulimit -n) or lower --instances");
    return j;
}

static void free_job(struct job *j)
{
    pthread_cond_destroy(&j->gate_c);
    pthread_mutex_destroy(&j->gate_m);
    free(j->buf);
    free(j);
}

/* LogOutputFile::write() at the rotate limit. */
static void log_rotate(void)
{
    pthread_mutex_lock(&rotation_mutex); /* leaky, in the child: locked by a thread it does not have */
    pthread_mutex_unlock(&rotation_mutex);
}

/* The logger: inside the rotation mutex until the gate opens. */
static void *logger_thread(void *arg)
{
    struct job *j = arg;
    pthread_mutex_lock(&rotation_mutex);
    pthread_mutex_lock(&j->gate_m);
    while (!j->gate_open)
        pthread_cond_wait(&j->gate_c, &j->gate_m); /* rotating */
    pthread_mutex_unlock(&j->gate_m);
    pthread_mutex_unlock(&rotation_mutex);
    return NULL;
}

/* The child: logs, reports, exits. Async-signal-safe calls only, but the lock. */
static _Noreturn void child_job(struct job *j)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* bound: dies with the thread that forked it */
    if (getppid() != j->parent)
        _exit(1);
    close(j->report[0]);
    log_rotate();                     /* leaky: sleeps here forever */
    static const char done[] = "job done\n";
    ssize_t n = write(j->report[1], done, sizeof done - 1);
    _exit(n == (ssize_t)(sizeof done - 1) ? 0 : 1);
}

/* The spawner: forks the child and waits for its report until EOF. */
static LL_WAIT_SITE void spawn_and_wait(struct job *j)
{
    pid_t pid = fork(); /* fixed: the prepare handler waits for the logger */
    if (pid < 0)
        ll_refuse(j->run, "fork", errno, "raise the process limit (ulimit -u) or lower --instances");
    if (pid == 0)
        child_job(j);
    j->child = pid;
    close(j->report[1]);
    for (;;) {
        ssize_t n = read(j->report[0], j->buf + j->got, REPORT_BYTES - j->got); /* leaky: forever */
        if (n > 0 && j->got + (size_t)n < REPORT_BYTES)
            j->got += (size_t)n;
        else if (n == 0 || (n < 0 && errno != EINTR))
            break;
    }
    close(j->report[0]);
    waitpid(pid, NULL, 0);
}

static void *spawner_thread(void *j) { spawn_and_wait(j); return NULL; }

/* Waits until process `pid` sleeps in futex(2) on `object` (its copy). */
static void await_child_parked(ll_run *run, pid_t pid, const void *object)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    for (;;) {
        FILE *f = fopen(path, "re");
        bool got = f && fgets(line, sizeof line, f) != NULL;
        if (f)
            fclose(f);
        if (!got)
            ll_refuse(run, "await_child_parked", ESRCH, "the child ended instead of blocking on the rotation mutex");
        char *end;
        long nr = strtol(line, &end, 10);
        if (line[0] >= '0' && line[0] <= '9' && nr == SYS_futex
            && (uintptr_t)strtoull(end, NULL, 16) == (uintptr_t)object)
            return;
        sched_yield();
    }
}

static void open_gate(struct job *j)
{
    pthread_mutex_lock(&j->gate_m);
    j->gate_open = true;
    pthread_cond_signal(&j->gate_c);
    pthread_mutex_unlock(&j->gate_m);
}

static struct job *start_logger(ll_run *run, long long instance, bool fixed)
{
    if (instance == 0)
        first_instance(run, fixed);
    struct job *j = new_job(run);
    ll_thread_start(run, &j->logger, logger_thread, j);
    ll_await_parked(run, j->logger, &j->gate_c, sizeof j->gate_c); /* inside the rotation mutex */
    ll_thread_start(run, &j->spawner, spawner_thread, j);
    return j;
}

static void leaky_instance(ll_run *run, long long instance)
{
    struct job *j = start_logger(run, instance, false);
    ll_await_reading(run, j->spawner, j->report[0]);   /* forked: the child pid is set */
    await_child_parked(run, j->child, &rotation_mutex); /* the child sleeps on its copy of the lock */
    open_gate(j);                                       /* the parent's logger finishes its rotation */
    pthread_join(j->logger, NULL);
}

static void fixed_instance(ll_run *run, long long instance)
{
    struct job *j = start_logger(run, instance, true);
    LL_FIX(ll_await_parked(run, j->spawner, &rotation_mutex, sizeof rotation_mutex)); /* FIX: fork waits in prepare */
    open_gate(j);
    pthread_join(j->logger, NULL);
    LL_FIX(pthread_join(j->spawner, NULL)); /* FIX: the child logged, reported, exited, was reaped */
    LL_FIX(free_job(j));
}

static const ll_zoo_kernel kernel = {
    .name = "photon_fork_lock",
    .summary = "C++: alibaba/PhotonLibOS pull 1573 (fork with a lock held): the child inherits the log's\n"
               "rotation mutex locked by another thread and blocks on it; its parent waits for it forever.",
    .leaky_summary = "fork while the logger holds the rotation mutex: the child blocks on it, the spawner waits for the child",
    .fixed_summary = "pthread_atfork takes the mutex before fork and releases it on both sides: the child reports, is reaped",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = REPORT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
