/* unjoined.c - threads that ended and were never joined: ThreadSanitizer's
 * "thread leak", which nothing else a running process shows can see. The
 * thread is gone from /proc/self/task (the kernel reaps a thread at once);
 * what stays is glibc's part: its descriptor, its stack mapping with the
 * static TLS inside it, its dynamic TLS vector (dtv) on the heap, and the
 * value it returned, all kept for a pthread_join that never comes.
 *
 * ll_await_finished(): how a kernel leaves such a thread behind on purpose,
 * and knows it has (the thread has really ended, not just said so).
 * ll_unjoined_threads(): how many there are, read the way a debugger reads
 * them, so the zoo can check a kernel's truth (unjoined_threads) on every
 * native run: glibc links the descriptor of every thread whose stack it
 * allocated into its list of stacks in use (_dl_stack_used in the dynamic
 * loader's _rtld_global) until the thread is joined or detached, when it
 * moves to the cache; the kernel clears the descriptor's tid when the thread
 * ends (CLONE_CHILD_CLEARTID, what pthread_join waits on). So an unjoined
 * thread is a descriptor on the in-use list with tid 0. The list's place and
 * the fields' offsets come from the descriptors glibc exports for
 * libthread_db (_thread_db_*), the contract gdb relies on. */
#include "park.h"

#include <dlfcn.h>
#include <errno.h>
#include <time.h>

/* ---- waiting for a thread to end, without joining it ---- */

void ll_await_finished(ll_run *run, pthread_t thread)
{
    clockid_t clock;
    int err = pthread_getcpuclockid(thread, &clock);
    if (err == ESRCH)
        return; /* its tid is cleared already: it has ended, as far as pthread_join could tell */
    if (err)
        ll_refuse(run, "pthread_getcpuclockid", err, "ll_await_finished needs a thread that was not joined");
    pid_t tid = (pid_t) ~(clock >> 3); /* Linux: CPUCLOCK_PID(clock) */
    long nr;
    uintptr_t arg0;
    /* Until its task is gone (no longer counted in /proc/self/status either);
     * the kernel clears the tid before it lets the task go. */
    while (ll_park_observe(tid, &nr, &arg0))
        ll_park_yield();
}

/* ---- counting the unjoined ---- */

struct list_head { /* glibc's list_t */
    struct list_head *next, *prev;
};

enum { MAX_DESCRIPTORS = 1 << 22 }; /* a longer list is not one we understand */

static struct {
    pthread_once_t once;
    bool ok;
    size_t off_tid, off_list;
    const struct list_head *used;
} glibc = {.once = PTHREAD_ONCE_INIT};

/* A libthread_db field descriptor is {bits, count, offset}. */
static bool field_offset(const char *symbol, size_t *offset)
{
    const uint32_t *d = dlsym(RTLD_DEFAULT, symbol);
    if (!d)
        return false;
    *offset = d[2];
    return true;
}

static void look_up_glibc(void)
{
    const uint32_t *sizeof_pthread = dlsym(RTLD_DEFAULT, "_thread_db_sizeof_pthread");
    const char *rtld = dlsym(RTLD_DEFAULT, "_rtld_global");
    size_t used;
    if (!sizeof_pthread || !rtld || !field_offset("_thread_db_pthread_tid", &glibc.off_tid) ||
        !field_offset("_thread_db_pthread_list", &glibc.off_list) ||
        !field_offset("_thread_db_rtld_global__dl_stack_used", &used))
        return;
    if (glibc.off_tid + sizeof(pid_t) > *sizeof_pthread || glibc.off_list + sizeof(struct list_head) > *sizeof_pthread)
        return;
    glibc.used = (const struct list_head *)(rtld + used);
    glibc.ok = true;
}

/* Sanitizers would check these reads of glibc's own memory, which is not
 * theirs to check (ThreadSanitizer saw its own TLS set-up write the
 * descriptors of live threads, and called our read of a tid a race). The
 * tid is read as a volatile int: one aligned load, which no_sanitize leaves
 * alone (an __atomic builtin ThreadSanitizer instruments even here). */
__attribute__((no_sanitize("address", "thread", "undefined")))
long long ll_unjoined_threads(void)
{
    pthread_once(&glibc.once, look_up_glibc);
    if (!glibc.ok)
        return -1;
    long long unjoined = 0;
    size_t seen = 0;
    for (const struct list_head *p = glibc.used->next; p != glibc.used; p = p->next) {
        if (!p || !p->next || p->next->prev != p || ++seen > MAX_DESCRIPTORS)
            return -1; /* not a list, or one changing under us */
        const char *descriptor = (const char *)p - glibc.off_list;
        if (*(const volatile pid_t *)(descriptor + glibc.off_tid) == 0)
            unjoined++;
    }
    return unjoined;
}
