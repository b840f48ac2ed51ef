/* world.c - stopping every other thread for the analysis, and letting them go.
 *
 * LeakSanitizer stops the world with ptrace from a helper task
 * (sanitizer_stoptheworld_linux_libcdep.cpp); orphans uses a signal, which
 * needs no ptrace permission and works under a debugger. The caller lists
 * /proc/self/task and sends each thread the stop signal with
 * rt_tgsigqueueinfo, carrying the analysis' generation and the thread's slot
 * number. The handler (async-signal-safe: it only copies memory and makes
 * futex system calls) copies the interrupted registers out of its ucontext
 * into the slot, counts itself stopped, and waits on a futex until the
 * caller releases the generation. The list is read again until no new thread
 * shows up: a stopped thread creates none, so the loop ends.
 *
 * What the ucontext tells. A thread interrupted inside an untimed futex wait
 * has its system call restarted when the handler returns (SA_RESTART and
 * -ERESTARTSYS): the kernel rewinds RIP to the `syscall` instruction and
 * puts the system call number back in RAX before saving the context, so the
 * saved state reads "about to call futex(RDI, RSI, RDX, R10)". A thread
 * that was woken before the signal shows its return value in RAX instead,
 * and a timed wait comes back with -EINTR: neither is taken as blocked. The
 * registers are read after the thread stopped, so there is no window in
 * which a thread woken between a read and its stop passes for blocked
 * (reading /proc/self/task/TID/syscall first would have one).
 *
 * A thread inside one of the allocator wrappers defers the stop to the
 * wrapper's end (heap.c), where it stops itself with getcontext().
 *
 * Threads that cannot stop: one that blocks the signal, is stopped by
 * SIGSTOP or a tracer, or one that cannot even be sent the signal (the
 * per-user queue of real-time signals stays full). The wait gives up when no
 * thread has answered for stop_timeout_ms (a loaded machine schedules 10,000
 * handlers slowly, but they progress). The analysis then is incomplete and
 * reports nothing (the registers of the thread that did not stop are
 * unknown: anything could be in them). A thread that exits before it answers
 * (ESRCH) is simply gone; no other failure ever counts as gone.
 *
 * The handler stays installed once installed (a late signal must never meet
 * SIG_DFL, which would kill the process), and the slots are never unmapped
 * (a late handler may still write into its slot). */

#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct {
    _Atomic uint32_t gen;       /* current analysis; 0 = none */
    _Atomic uint32_t released;  /* generation released */
    _Atomic uint32_t acked;     /* threads stopped in this generation */
    or_slot *_Atomic slots;     /* this generation's slots */
    _Atomic size_t nslots;
    int installed_signal;
    pid_t pid;
} world;

/* Every slots array ever used: never unmapped (see above). */
static or_slot *arena;
static size_t arena_cap;

static pid_t gettid_raw(void) { return (pid_t)syscall(SYS_gettid); }

static void copy_context(or_slot *slot, const ucontext_t *uc)
{
    for (int i = 0; i < OR_NGREGS; i++)
        slot->gregs[i] = (uint64_t)uc->uc_mcontext.gregs[i];
    const struct _libc_fpstate *fp = uc->uc_mcontext.fpregs;
    if (fp)
        for (int i = 0; i < 16; i++) {
            uint64_t w[2];
            memcpy(w, &fp->_xmm[i], sizeof w);
            slot->xmm[2 * i] = w[0];
            slot->xmm[2 * i + 1] = w[1];
        }
}

/* Records this thread in slot `index` of generation `gen` and waits for the release. */
static void stop_here(uint32_t gen, uint32_t index, const ucontext_t *uc, bool safe_point)
{
    if (atomic_load(&world.gen) != gen)
        return; /* a late signal from an analysis that is over */
    or_slot *slots = atomic_load(&world.slots);
    if (!slots || index >= atomic_load(&world.nslots))
        return;
    or_slot *slot = &slots[index];
    if (slot->gen != gen || slot->tid != gettid_raw())
        return;
    copy_context(slot, uc);
    slot->pd = (uintptr_t)pthread_self();
    slot->on_altstack = (uc->uc_stack.ss_flags & SS_ONSTACK) != 0;
    slot->at_safe_point = safe_point;
    atomic_store_explicit(&slot->state, OR_SLOT_STOPPED, memory_order_release);
    atomic_fetch_add(&world.acked, 1);
    or_futex(&world.acked, FUTEX_WAKE_PRIVATE, 1, NULL);
    for (;;) {
        uint32_t r = atomic_load(&world.released);
        if (r == gen || atomic_load(&world.gen) != gen)
            break;
        or_futex(&world.released, FUTEX_WAIT_PRIVATE, r, NULL);
    }
}

static void stop_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    int saved_errno = errno;
    if (si->si_code != SI_QUEUE || si->si_pid != world.pid) {
        errno = saved_errno;
        return; /* not ours: someone else sent this signal */
    }
    uint64_t value = (uint64_t)(uintptr_t)si->si_value.sival_ptr;
    if (or_tls.critical) {
        /* Inside an allocator wrapper: stop at its end instead (heap.c). */
        or_tls.pending_value = value;
        or_tls.stop_pending = 1;
    } else {
        stop_here((uint32_t)(value >> 32), (uint32_t)value, ucv, false);
    }
    errno = saved_errno;
}

void or_world_safe_point(void)
{
    int saved_errno = errno;
    or_tls.stop_pending = 0;
    uint64_t value = or_tls.pending_value;
    ucontext_t uc;
    if (getcontext(&uc) == 0)
        stop_here((uint32_t)(value >> 32), (uint32_t)value, &uc, true);
    errno = saved_errno;
}

/* Installs the handler once; fails (and says why) if the program has its
 * own handler on that signal. */
static int install(int sig, char *why, size_t why_len)
{
    if (world.installed_signal == sig)
        return 0;
    struct sigaction old;
    if (sigaction(sig, NULL, &old) != 0) {
        snprintf(why, why_len, "stop_signal=%d: %s", sig, strerror(errno));
        return -1;
    }
    if ((old.sa_flags & SA_SIGINFO) ? old.sa_sigaction != stop_handler
                                    : (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
        snprintf(why, why_len,
                 "stop_signal=%d already has a handler in this program; choose another with ORPHANS_OPTIONS=stop_signal=N",
                 sig);
        return -1;
    }
    struct sigaction sa = {0};
    sa.sa_sigaction = stop_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask); /* no other handler runs on top of ours */
    if (sigaction(sig, &sa, NULL) != 0) {
        snprintf(why, why_len, "stop_signal=%d: sigaction: %s", sig, strerror(errno));
        return -1;
    }
    world.installed_signal = sig;
    return 0;
}

/* The TIDs in /proc/self/task, without malloc (getdents64). */
static size_t list_tasks(pid_t *out, size_t cap, bool *ok)
{
    *ok = false;
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t n = 0;
    char buf[32768];
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (got <= 0) {
            *ok = got == 0;
            break;
        }
        for (long off = 0; off < got;) {
            struct {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(buf + off);
            off += d->reclen;
            if (d->name[0] < '0' || d->name[0] > '9')
                continue;
            long tid = 0;
            for (const char *c = d->name; *c >= '0' && *c <= '9'; c++)
                tid = tid * 10 + (*c - '0');
            if (n < cap)
                out[n] = (pid_t)tid;
            n++;
        }
    }
    close(fd);
    return n;
}

static bool grow_arena(size_t want)
{
    if (want <= arena_cap)
        return true;
    size_t cap = arena_cap ? arena_cap : 1024;
    while (cap < want)
        cap *= 2;
    or_slot *fresh = or_map(cap * sizeof *fresh);
    if (!fresh)
        return false;
    /* The old array stays mapped (a late handler may write to it), but is no
     * longer recorded as ours... it is: or_map recorded it, and it stays so. */
    arena = fresh;
    arena_cap = cap;
    return true;
}

/* The TIDs already given a slot: an open-addressing set (0 = empty). */
typedef struct tid_set {
    pid_t *keys;
    size_t cap;
} tid_set;

static bool tid_set_add(tid_set *set, pid_t tid) /* true if it was new */
{
    size_t b = ((size_t)tid * 2654435761u) & (set->cap - 1);
    for (; set->keys[b]; b = (b + 1) & (set->cap - 1))
        if (set->keys[b] == tid)
            return false;
    set->keys[b] = tid;
    return true;
}

static int send_stop(pid_t tid, int sig, uint32_t gen, uint32_t index)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    info.si_signo = sig;
    info.si_code = SI_QUEUE;
    info.si_pid = world.pid;
    info.si_uid = getuid();
    info.si_value.sival_ptr = (void *)(uintptr_t)(((uint64_t)gen << 32) | index);
    return (int)syscall(SYS_rt_tgsigqueueinfo, world.pid, tid, sig, &info);
}

/* Why a thread did not answer: blocks the signal, stopped, or slow. */
static void explain(pid_t tid, int sig, char *why, size_t why_len)
{
    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0) {
        snprintf(why, why_len, "thread %d did not answer the stop signal", (int)tid);
        return;
    }
    text[n] = '\0';
    const char *blk = strstr(text, "SigBlk:");
    const char *state = strstr(text, "State:");
    if (blk) {
        unsigned long long mask = strtoull(blk + 7, NULL, 16);
        if (mask & (1ULL << (sig - 1))) {
            snprintf(why, why_len,
                     "thread %d blocks the stop signal (%d): its registers cannot be read, so no thread can be "
                     "proved leaked; unblock it, or choose another with ORPHANS_OPTIONS=stop_signal=N",
                     (int)tid, sig);
            return;
        }
    }
    if (state && (state[7] == 'T' || state[7] == 't')) {
        snprintf(why, why_len, "thread %d is stopped (SIGSTOP or a tracer) and cannot answer the stop signal",
                 (int)tid);
        return;
    }
    snprintf(why, why_len, "thread %d did not answer the stop signal within stop_timeout_ms", (int)tid);
}

int or_world_stop(or_world *w, int sig, unsigned timeout_ms, const void *caller_ucontext, uintptr_t caller_sp)
{
    double t0 = or_now_ms();
    memset(w, 0, sizeof *w);
    world.pid = getpid();
    if (install(sig, w->why, sizeof w->why) != 0)
        return -1;
    uint32_t gen = atomic_load(&world.gen) + 1;
    if (gen == 0)
        gen = 1;
    w->gen = gen;

    pid_t self = gettid_raw();
    size_t guess = 64;
    pid_t *tids = NULL;
    size_t tids_cap = 0;
    bool ok = false;
    size_t n = 0;
    for (;;) { /* size the first listing */
        if (guess > tids_cap) {
            pid_t *fresh = or_remap(tids, tids_cap * sizeof *tids, guess * sizeof *tids);
            if (!fresh) {
                snprintf(w->why, sizeof w->why, "out of memory listing threads");
                or_unmap(tids, tids_cap * sizeof *tids);
                return -1;
            }
            tids = fresh;
            tids_cap = guess;
        }
        n = list_tasks(tids, tids_cap, &ok);
        if (!ok) {
            snprintf(w->why, sizeof w->why, "cannot read /proc/self/task: %s", strerror(errno));
            or_unmap(tids, tids_cap * sizeof *tids);
            return -1;
        }
        if (n <= tids_cap)
            break;
        guess = 2 * n;
    }
    size_t slot_cap = 2 * n + 16; /* threads created meanwhile get these spare slots */
    if (!grow_arena(slot_cap)) {
        snprintf(w->why, sizeof w->why, "out of memory for %zu thread slots", n);
        or_unmap(tids, tids_cap * sizeof *tids);
        return -1;
    }
    or_slot *slots = arena;
    memset(slots, 0, slot_cap * sizeof *slots);
    /* slot 0: the caller, from the context it saved on entry */
    slots[0].tid = self;
    slots[0].gen = gen;
    copy_context(&slots[0], caller_ucontext);
    /* Across the call into orphans, the caller's live values are in memory or
     * in the callee-saved registers (SysV x86-64 ABI); the others, XMM
     * included, hold whatever the calls before left there. */
    for (int i = 0; i < OR_NGREGS; i++)
        if (i != REG_RBX && i != REG_RBP && i != REG_R12 && i != REG_R13 && i != REG_R14 && i != REG_R15)
            slots[0].gregs[i] = 0;
    memset(slots[0].xmm, 0, sizeof slots[0].xmm);
    slots[0].gregs[REG_RSP] = caller_sp;
    slots[0].pd = (uintptr_t)pthread_self();
    atomic_store(&slots[0].state, OR_SLOT_SELF);
    size_t nslots = 1;

    atomic_store(&world.acked, 0);
    atomic_store(&world.slots, slots);
    atomic_store(&world.nslots, slot_cap);
    atomic_store(&world.gen, gen);

    /* The wait ends when no thread has answered for timeout_ms: on a busy
     * machine 10,000 handlers take long to be scheduled, but they progress. */
    double last_progress = t0;
    uint32_t acked_seen = 0;
    w->complete = true;
    tid_set known = {.cap = 1};
    while (known.cap < 4 * slot_cap)
        known.cap *= 2;
    known.keys = or_map(known.cap * sizeof *known.keys);
    if (!known.keys) {
        snprintf(w->why, sizeof w->why, "out of memory for the thread set");
        w->complete = false;
        goto done;
    }
    tid_set_add(&known, self);
    for (bool first = true;; first = false) {
        /* Signal every listed thread that has no slot yet. */
        size_t added = 0;
        for (size_t i = 0; i < n && i < tids_cap; i++) {
            pid_t tid = tids[i];
            if (!tid_set_add(&known, tid))
                continue;
            if (nslots >= slot_cap) {
                /* More threads appeared than there are spare slots. */
                snprintf(w->why, sizeof w->why, "the process created threads faster than they could be stopped");
                w->complete = false;
                goto done;
            }
            or_slot *slot = &slots[nslots];
            slot->tid = tid;
            slot->gen = gen;
            atomic_store(&slot->state, OR_SLOT_SENT);
            int r;
            while ((r = send_stop(tid, sig, gen, (uint32_t)nslots)) != 0 && errno == EAGAIN) {
                /* The queue of pending real-time signals is full (RLIMIT_SIGPENDING,
                 * per user): let the threads signalled so far drain it. */
                uint32_t now_acked = atomic_load(&world.acked);
                if (now_acked != acked_seen)
                    acked_seen = now_acked, last_progress = or_now_ms();
                if (or_now_ms() - last_progress > timeout_ms)
                    break;
                sched_yield();
            }
            nslots++;
            added++;
            if (r != 0 && errno == ESRCH) {
                atomic_store(&slot->state, OR_SLOT_GONE); /* exited meanwhile */
            } else if (r != 0) {
                /* Never take a thread we could not signal for gone: its registers are unknown. */
                snprintf(w->why, sizeof w->why,
                         "could not send the stop signal to thread %d: %s (RLIMIT_SIGPENDING: ulimit -i)", (int)tid,
                         strerror(errno));
                w->complete = false;
                goto done;
            } else {
                last_progress = or_now_ms();
            }
        }
        if (!first && added == 0)
            break;
        /* Wait until every signalled thread stopped or is gone. */
        for (;;) {
            size_t waiting = 0;
            pid_t late = 0;
            uint32_t now_acked = atomic_load(&world.acked);
            bool stalled = now_acked == acked_seen; /* only then look for threads that exited */
            if (!stalled)
                acked_seen = now_acked, last_progress = or_now_ms();
            for (size_t s = 1; s < nslots; s++) {
                int st = atomic_load_explicit(&slots[s].state, memory_order_acquire);
                if (st != OR_SLOT_SENT)
                    continue;
                if (stalled && syscall(SYS_tgkill, world.pid, slots[s].tid, 0) != 0 && errno == ESRCH) {
                    int expected = OR_SLOT_SENT;
                    atomic_compare_exchange_strong(&slots[s].state, &expected, OR_SLOT_GONE);
                    continue;
                }
                waiting++;
                late = slots[s].tid;
            }
            if (waiting == 0)
                break;
            if (or_now_ms() - last_progress > timeout_ms) {
                explain(late, sig, w->why, sizeof w->why);
                w->complete = false;
                goto done;
            }
            uint32_t seen = atomic_load(&world.acked);
            struct timespec tick = {0, 2 * 1000 * 1000};
            or_futex(&world.acked, FUTEX_WAIT_PRIVATE, seen, &tick);
        }
        /* List again: a thread not yet stopped may have created another. */
        for (;;) {
            n = list_tasks(tids, tids_cap, &ok);
            if (!ok) {
                snprintf(w->why, sizeof w->why, "cannot read /proc/self/task again: %s", strerror(errno));
                w->complete = false;
                goto done;
            }
            if (n <= tids_cap)
                break;
            pid_t *fresh = or_remap(tids, tids_cap * sizeof *tids, 2 * n * sizeof *tids);
            if (!fresh) {
                snprintf(w->why, sizeof w->why, "out of memory listing threads");
                w->complete = false;
                goto done;
            }
            tids = fresh;
            tids_cap = 2 * n;
        }
    }
done:
    or_unmap(known.keys, known.cap * sizeof *known.keys);
    or_unmap(tids, tids_cap * sizeof *tids);
    w->slots = slots;
    w->nslots = nslots;
    w->ms = or_now_ms() - t0;
    return 0;
}

void or_world_resume(or_world *w)
{
    atomic_store(&world.released, w->gen);
    or_futex(&world.released, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
    /* Late handlers of this generation return at once: released == gen. */
}
