/* cockroach9935 - GoKer cockroach#9935 (double locking): the logger's error
 * path calls exit() while it still holds the log mutex, and exit() locks it
 * again: the thread waits for itself, forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/cockroach9935.go; the fix: cockroachdb/cockroach pull 9935):
 *
 *     func (l *loggingT) outputLogEntry() {
 *         l.mu.Lock()
 *         if err := l.createFile(); err != nil {   // fails 6 times in 8 (rand.Intn(8)%4 > 0)
 *             l.exit(err)                          // -> l.mu.Lock(): G1 waits here
 *         }
 *         l.mu.Unlock()
 *     }
 *     go l.outputLogEntry()                        // G1
 *
 * Go's goroutineleak profile reports (*loggingT).outputLogEntry
 * [sync.Mutex.Lock] (flaky in Go's test: createFile succeeds 2 times in 8,
 * and the profile may be taken before G1 has run).
 *
 * The C form: sync.Mutex is a pthread mutex initialised PTHREAD_MUTEX_NORMAL
 * (POSIX: a re-lock by its owner deadlocks). The random failure is made
 * certain: create_file always fails, the branch the bug needs (Go takes it
 * 6 times in 8). The logger is malloc'ed with the entry it was about to
 * write (ENTRY_BYTES, the payload). One thread, the same path every time;
 * main waits until it is asleep in exit()'s lock and forgets the logger:
 * only the blocked thread reaches it and its mutex (orphaned).
 *
 * What the tools see: see expected/zoo/cockroach9935.toml (native only so
 * far: the truth, checked on every run).
 *
 * The fix (the pull request's, as the GoKer kernel describes it): release
 * l.mu before exit() takes it again.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { ENTRY_BYTES = 64 * 1024 }; /* the log entry being written: the payload of one instance */

struct logging {                    /* Go: loggingT */
    pthread_mutex_t mu;
    unsigned char *entry;
    pthread_t thread;               /* G1 */
};

__attribute__((noinline)) static struct logging *new_logging(ll_run *run)
{
    struct logging *l = ll_xmalloc(run, sizeof *l);
    *l = (struct logging){.entry = ll_xmalloc(run, ENTRY_BYTES)};
    memset(l->entry, 0x5a, ENTRY_BYTES);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL); /* re-lock by the owner deadlocks, as Go's */
    pthread_mutex_init(&l->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    return l;
}

static void free_logging(struct logging *l)
{
    pthread_mutex_destroy(&l->mu);
    free(l->entry);
    free(l);
}

/* Go: rand.Intn(8)%4 > 0; the kernel takes the failing branch every time. */
static bool create_file(void) { return false; }

static void log_exit(struct logging *l)
{
    pthread_mutex_lock(&l->mu); /* leaky: G1 already holds it, and waits here forever */
    pthread_mutex_unlock(&l->mu);
}

/* G1. */
static LL_WAIT_SITE void output_log_entry(struct logging *l, bool fixed)
{
    pthread_mutex_lock(&l->mu);
    if (!create_file()) {
        if (fixed) {
            LL_FIX(pthread_mutex_unlock(&l->mu)); /* FIX: let go of l.mu before exit() takes it */
            log_exit(l);
            return;
        }
        log_exit(l);
    }
    pthread_mutex_unlock(&l->mu);
}

static void *logger_leaky(void *l) { output_log_entry(l, false); return NULL; }
static void *logger_fixed(void *l) { output_log_entry(l, true); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct logging *l = new_logging(run);
    ll_thread_start(run, &l->thread, logger_leaky, l); /* go l.outputLogEntry() */
    ll_await_parked(run, l->thread, &l->mu, sizeof l->mu);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct logging *l = new_logging(run);
    ll_thread_start(run, &l->thread, logger_fixed, l);
    LL_FIX(pthread_join(l->thread, NULL)); /* FIX: exit() gets the lock and returns: join it */
    LL_FIX(free_logging(l));               /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "cockroach9935",
    .summary = "GoKer cockroach#9935 (double locking): outputLogEntry holds l.mu when createFile fails\n"
               "and calls exit(), which locks l.mu again.",
    .leaky_summary = "exit() re-locks the mutex its caller holds: the thread waits for itself, holding the entry",
    .fixed_summary = "l.mu is released before exit() takes it: the thread ends, joined, the logger freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = ENTRY_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
