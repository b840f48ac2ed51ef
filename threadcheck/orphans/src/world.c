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
#include "../../src/restart_rules.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* Installs the handler at the first analysis; fails (and says why) if the
 * program has its own handler on that signal. The disposition is read again
 * before every stop: a program that reset it since (to SIG_DFL, as daemons
 * do for every signal) would be killed by the next stop signal, one that
 * installed its own handler would receive it; either way orphans sends
 * nothing and says why. */
static int install(int sig, char *why, size_t why_len)
{
    struct sigaction old;
    if (sigaction(sig, NULL, &old) != 0) {
        snprintf(why, why_len, "stop_signal=%d: %s", sig, strerror(errno));
        return -1;
    }
    bool ours = (old.sa_flags & SA_SIGINFO) && old.sa_sigaction == stop_handler;
    if (world.installed_signal == sig) {
        if (ours)
            return 0;
        snprintf(why, why_len,
                 "the program changed the disposition of stop_signal=%d after orphans installed its handler: a "
                 "stop signal now would %s; no thread was signalled (choose another with ORPHANS_OPTIONS=stop_signal=N)",
                 sig, (old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)
                          ? "run the program's handler"
                          : old.sa_handler == SIG_IGN ? "be ignored" : "kill the process");
        return -1;
    }
    if (!ours && ((old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))) {
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

/* ---- whom a stop signal may reach ------------------------------------------------- */
/* A signal is only sent to a thread whose handler run cannot show: running
 * in user space, or asleep in a system call the kernel restarts after a
 * handler as if nothing happened (SA_RESTART and no partial progress). Read
 * from /proc/self/task/TID/status and .../syscall just before the signal. */

enum may { MAY_SEND = 0, MAY_GONE, MAY_NOT, MAY_LATER };
enum { BLOCKED_WAIT_MS = 200 };

static ssize_t read_task_file(int taskfd, pid_t tid, const char *file, char *buf, size_t cap)
{
    char path[48];
    snprintf(path, sizeof path, "%d/%s", (int)tid, file);
    int fd = openat(taskfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, buf, cap - 1);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = n == 0 ? ESRCH : saved; /* empty: the task is being reaped */
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

static unsigned long long status_mask(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? strtoull(p + strlen(key), NULL, 16) : 0;
}

static const char *syscall_name(long nr)
{
    switch (nr) {
    case SYS_futex: return "a timed futex wait";
    case SYS_rt_sigtimedwait: return "sigwaitinfo/sigtimedwait";
    case SYS_epoll_wait: return "epoll_wait";
    case SYS_epoll_pwait: return "epoll_pwait";
    case SYS_poll: return "poll";
    case SYS_ppoll: return "ppoll";
    case SYS_select: return "select";
    case SYS_pselect6: return "pselect";
    case SYS_nanosleep: return "nanosleep";
    case SYS_clock_nanosleep: return "clock_nanosleep";
    case SYS_pause: return "pause";
    case SYS_rt_sigsuspend: return "sigsuspend";
    case SYS_write: return "write";
    case SYS_writev: return "writev";
    case SYS_sendto: return "send";
    case SYS_sendmsg: return "sendmsg";
    case SYS_read: return "read";
    case SYS_recvfrom: return "recv";
    case SYS_recvmsg: return "recvmsg";
    case SYS_connect: return "connect";
    case SYS_io_getevents: return "io_getevents";
    case SYS_semtimedop: return "semtimedop";
    case SYS_msgrcv: return "msgrcv";
    case SYS_restart_syscall: return "a restarted sleep";
    default: return NULL;
    }
}

/* Whether thread tid may be sent the stop signal now; if not, why. */
static int may_signal(int taskfd, pid_t tid, int sig, char *why, size_t why_len)
{
    char text[4096];
    if (read_task_file(taskfd, tid, "status", text, sizeof text) <= 0)
        goto unreadable;
    const char *state = strstr(text, "State:");
    char st = state ? state[7] : '?';
    if (st == 'Z' || st == 'X')
        return MAY_GONE; /* exited, not yet reaped (main after pthread_exit): no registers, no stack in use */
    unsigned long long bit = 1ULL << (sig - 1);
    char sc[256];
    if (read_task_file(taskfd, tid, "syscall", sc, sizeof sc) <= 0)
        goto unreadable;
    char *p = sc, *end;
    long nr = strncmp(sc, "running", 7) == 0 ? -2 : strtol(p, &end, 10);
    if (status_mask(text, "\nSigBlk:") & bit) {
        /* glibc blocks every signal for a moment (a thread being created or
         * exiting, posix_spawn, some of its own critical sections): such a
         * thread is asked again shortly (MAY_LATER, a short bounded wait).
         * One waiting for signals (sigwait, sigsuspend, pause) is refused
         * now: it would take the stop signal as its own. */
        if (nr != SYS_rt_sigtimedwait && nr != SYS_rt_sigsuspend && nr != SYS_pause)
            return MAY_LATER;
        snprintf(why, why_len,
                 "thread %d blocks the stop signal (%d), so it was not sent: its registers cannot be read, so no "
                 "thread can be proved leaked; unblock it, or choose another with ORPHANS_OPTIONS=stop_signal=N",
                 (int)tid, sig);
        return MAY_NOT;
    }
    if (status_mask(text, "\nSigPnd:") & bit) {
        snprintf(why, why_len,
                 "thread %d has not yet taken an earlier stop signal (%d): orphans sends no second one; its "
                 "registers cannot be read, so no thread can be proved leaked",
                 (int)tid, sig);
        return MAY_NOT;
    }
    if (st == 'T' || st == 't') {
        snprintf(why, why_len, "thread %d is stopped (SIGSTOP or a tracer): it cannot answer a stop signal",
                 (int)tid);
        return MAY_NOT;
    }
    if (nr == -2)
        return MAY_SEND; /* user space (or about to be): nothing to interrupt */
    if (nr < 0)
        return MAY_SEND; /* in the kernel, not in a system call (a page fault) */
    unsigned long args[6] = {0};
    p = end;
    for (int i = 0; i < 6; i++, p = end)
        args[i] = strtoul(p, &end, 16);
    if (tc_restarts_unseen(nr, args)) /* restart_rules.h, threadcheck's table */
        return MAY_SEND;
    const char *name = syscall_name(nr);
    char number[32];
    if (!name) {
        snprintf(number, sizeof number, "system call %ld", nr);
        name = number;
    }
    snprintf(why, why_len,
             "thread %d is in %s, which a signal would visibly interrupt (EINTR or a partial result), so it was not "
             "sent one: its registers cannot be read, so no thread can be proved leaked",
             (int)tid, name);
    return MAY_NOT;
unreadable:
    /* Only "no such thread" means gone: any other failure (no descriptor
     * left, say) leaves a live thread unknown, never dropped. */
    if (errno == ENOENT || errno == ESRCH)
        return MAY_GONE;
    snprintf(why, why_len, "cannot read /proc/self/task/%d: %s: its state is unknown, so it was not signalled",
             (int)tid, strerror(errno));
    return MAY_NOT;
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
    double t0 = or_now_ms(), c0 = or_cpu_ms();
    memset(w, 0, sizeof *w);
    world.pid = getpid();
    if (install(sig, w->why, sizeof w->why) != 0) {
        /* No thread was signalled: incomplete, not an error of ours. */
        w->refused = true;
        w->ms = or_now_ms() - t0;
        return 0;
    }
    uint32_t gen = atomic_load(&world.gen) + 1;
    if (gen == 0)
        gen = 1;
    w->gen = gen;

    pid_t self = gettid_raw();
    int taskfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (taskfd < 0) {
        snprintf(w->why, sizeof w->why, "cannot open /proc/self/task: %s", strerror(errno));
        return -1;
    }
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
                close(taskfd);
                return -1;
            }
            tids = fresh;
            tids_cap = guess;
        }
        n = list_tasks(tids, tids_cap, &ok);
        if (!ok) {
            snprintf(w->why, sizeof w->why, "cannot read /proc/self/task: %s", strerror(errno));
            or_unmap(tids, tids_cap * sizeof *tids);
            close(taskfd);
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
        close(taskfd);
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
    size_t sent_count = 0, gone_after_send = 0; /* signals sent; of their threads, found gone since */
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
            double send_t0 = or_now_ms();
            int may = may_signal(taskfd, tid, sig, w->why, sizeof w->why);
            /* A thread blocking the signal for a moment: asked again for up to
             * BLOCKED_WAIT_MS (a thread that keeps it blocked costs that much
             * per analysis, not stop_timeout_ms). */
            double blocked_wait = timeout_ms < BLOCKED_WAIT_MS ? timeout_ms : BLOCKED_WAIT_MS;
            for (double asked = or_now_ms(); may == MAY_LATER;) {
                if (or_now_ms() - asked > blocked_wait) {
                    snprintf(w->why, sizeof w->why,
                             "thread %d blocks the stop signal (%d) (for %.0f ms and on), so it was not sent: its "
                             "registers cannot be read, so no thread can be proved leaked; unblock it, or choose "
                             "another with ORPHANS_OPTIONS=stop_signal=N",
                             (int)tid, sig, blocked_wait);
                    may = MAY_NOT;
                    break;
                }
                struct timespec pause = {0, 200 * 1000};
                nanosleep(&pause, NULL);
                may = may_signal(taskfd, tid, sig, w->why, sizeof w->why);
            }
            if (may == MAY_GONE) {
                atomic_store(&slot->state, OR_SLOT_GONE);
                nslots++;
                continue;
            }
            if (may == MAY_NOT) {
                /* Nothing more is sent: the analysis is incomplete anyway. */
                w->complete = false;
                w->refused = true;
                goto wait_sent;
            }
            int r;
            while ((r = send_stop(tid, sig, gen, (uint32_t)nslots)) != 0 && errno == EAGAIN) {
                /* The queue of pending real-time signals is full (RLIMIT_SIGPENDING,
                 * per user): let the threads signalled so far drain it. */
                uint32_t now_acked = atomic_load(&world.acked);
                if (now_acked != acked_seen)
                    acked_seen = now_acked, last_progress = or_now_ms();
                if (or_now_ms() - last_progress > timeout_ms)
                    break;
                /* Sleep until a handler answers (1 ms at most) rather than
                 * spin: on a busy machine a spinning sender takes the CPU the
                 * handlers need to drain the queue. */
                struct timespec tick = {0, 1000 * 1000};
                or_futex(&world.acked, FUTEX_WAIT_PRIVATE, now_acked, &tick);
            }
            nslots++;
            added++;
            w->send_ms += or_now_ms() - send_t0;
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
                sent_count++;
            }
        }
        if (!first && added == 0)
            break;
        /* Wait until every signalled thread stopped or is gone. Each answer
         * wakes this thread: it compares counts then (a scan of every slot per
         * answer would cost 10,000 x 10,000 loads at seed scale); the slots
         * are scanned only when no thread answered for a tick, to find the
         * threads that exited meanwhile (and, at the end, one to name). */
        for (;;) {
            uint32_t now_acked = atomic_load(&world.acked);
            if (now_acked + gone_after_send >= sent_count)
                break;
            if (now_acked != acked_seen) {
                acked_seen = now_acked, last_progress = or_now_ms();
            } else {
                pid_t late = 0;
                for (size_t s = 1; s < nslots; s++) {
                    if (atomic_load_explicit(&slots[s].state, memory_order_acquire) != OR_SLOT_SENT)
                        continue;
                    int expected = OR_SLOT_SENT;
                    if (syscall(SYS_tgkill, world.pid, slots[s].tid, 0) != 0 && errno == ESRCH &&
                        atomic_compare_exchange_strong(&slots[s].state, &expected, OR_SLOT_GONE))
                        gone_after_send++;
                    else
                        late = slots[s].tid;
                }
                if (atomic_load(&world.acked) + gone_after_send >= sent_count)
                    break;
                if (or_now_ms() - last_progress > timeout_ms) {
                    explain(late, sig, w->why, sizeof w->why);
                    w->complete = false;
                    goto done;
                }
            }
            struct timespec tick = {0, 2 * 1000 * 1000};
            or_futex(&world.acked, FUTEX_WAIT_PRIVATE, now_acked, &tick);
        }
        /* List again: a thread not yet stopped may have created another. */
        double relist_t0 = or_now_ms();
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
        w->relist_ms += or_now_ms() - relist_t0;
    }
    goto done;
wait_sent:
    /* Refused: the threads already signalled stop (each was signalled in a
     * call it restarts unseen) and are released with the others; waiting for
     * them here keeps every signal of this generation answered before the
     * next, so none lingers. Bounded like the wait above. */
    for (double start = or_now_ms(); or_now_ms() - start < timeout_ms;) {
        size_t waiting = 0;
        for (size_t s = 1; s < nslots; s++)
            if (atomic_load_explicit(&slots[s].state, memory_order_acquire) == OR_SLOT_SENT &&
                !(syscall(SYS_tgkill, world.pid, slots[s].tid, 0) != 0 && errno == ESRCH))
                waiting++;
        if (waiting == 0)
            break;
        uint32_t seen = atomic_load(&world.acked);
        struct timespec tick = {0, 2 * 1000 * 1000};
        or_futex(&world.acked, FUTEX_WAIT_PRIVATE, seen, &tick);
    }
done:
    close(taskfd);
    or_unmap(known.keys, known.cap * sizeof *known.keys);
    or_unmap(tids, tids_cap * sizeof *tids);
    w->slots = slots;
    w->nslots = nslots;
    w->ms = or_now_ms() - t0;
    w->cpu_ms = or_cpu_ms() - c0;
    return 0;
}

void or_world_resume(or_world *w)
{
    if (w->gen == 0)
        return; /* nothing was stopped (the handler could not be installed): the last release stands */
    atomic_store(&world.released, w->gen);
    or_futex(&world.released, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
    /* Late handlers of this generation return at once: released == gen. */
}
