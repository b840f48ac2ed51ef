/* capture.c - every thread's kernel view from /proc/self/task, and its stack
 * from a signal handler that unwinds its own thread into a preallocated slot.
 *
 * The protocol, caller side (one capture at a time, under capture_lock):
 *   1. read stat, wchan and syscall of every thread; decide who may be
 *      signalled (user space, or a system call that restarts under
 *      SA_RESTART) and who may not (EINTR-prone calls, stopped threads);
 *   2. mmap a block of slots, one per thread to signal, with a TID -> slot
 *      hash, and publish it in active_block;
 *   3. tgkill each thread; wait until every slot is answered or no answer
 *      came for timeout_ms;
 *   4. abandon the unanswered slots (a CAS the handler also needs, so a late
 *      handler never writes into a slot the caller has read), unpublish the
 *      block, wait for handlers still inside to leave, unmap it (or, if one
 *      never leaves, keep the mapping forever rather than free it under it).
 *
 * Handler side: look up its own TID in the published block, claim the slot
 * (CAS waiting -> writing), unwind with libunwind's local unwinder, mark it
 * done, and sem_post when it is the last answer. Everything it calls is
 * async-signal-safe: atomics, gettid, libunwind's local unw_getcontext /
 * unw_init_local / unw_step / unw_get_reg / unw_is_signal_frame
 * (unw_init_local(3), unw_step(3), libunwind(3): "any routine that may be
 * needed for local unwinding is signal-safe"), and sem_post
 * (signal-safety(7)). errno is saved and restored. */
#include "internal.h"
#include "restart_rules.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* libunwind probes whether an address is readable by writing a byte of it
 * to a pipe (validate_mem); under Valgrind memcheck reports each probe of a
 * page below the stack pointer as an error of the program's. The probes are
 * deliberate, so error reporting is off for this thread while it unwinds
 * (a client request: a no-op sequence of instructions outside Valgrind). */
#if defined(__has_include) && __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define QUIET_UNDER_VALGRIND_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define QUIET_UNDER_VALGRIND_END() VALGRIND_ENABLE_ERROR_REPORTING
#define UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#else
#define QUIET_UNDER_VALGRIND_BEGIN() ((void)0)
#define QUIET_UNDER_VALGRIND_END() ((void)0)
#define UNDER_VALGRIND() false
#endif

enum { SLOT_WAITING, SLOT_WRITING, SLOT_DONE, SLOT_ABANDONED };

/* Stacks the handlers borrow to unwind on (see call_on_stack): a handler
 * keeps one for tens of microseconds; with 2 cores, 8 are rarely all taken.
 * libunwind needs a few KiB; 64 KiB leaves room for deep DWARF programs. */
enum { UNWIND_STACKS = 8, UNWIND_STACK_BYTES = 64 * 1024 };

enum {
    POLL_SLICE_MS = 5,             /* how often the caller looks at the answer count */
    LEAVE_WAIT_MS = 2000,          /* how long handlers still inside may take to leave */
    MAX_WAIT_FACTOR = 40,          /* absolute cap on the wait: timeout_ms x this */
};

struct slot {
    atomic_int state;
    pid_t tid;
    int npcs;
    int first_exact;               /* index of the interrupted frame (exact pc), -1 if no signal frame */
    bool truncated;
    uintptr_t pcs[THREADCHECK_MAX_FRAMES];
};

struct block {
    size_t bytes;                  /* of the mapping */
    size_t nslots;
    size_t hash_mask;
    atomic_int *hash;              /* slot index + 1 per bucket, 0 = empty; published with release */
    atomic_size_t answered;
    atomic_int inside;             /* handlers working in this block */
    atomic_size_t expected;        /* SIZE_MAX while signals are still being sent */
    sem_t all_answered;
    atomic_ullong free_stacks;     /* bit k: borrowed stack k is free */
    char *stacks;                  /* UNWIND_STACKS x (guard page, stack of UNWIND_STACK_BYTES) */
    size_t page;
    struct slot slots[];
};

static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct block *) active_block;
/* Handlers between loading active_block and counting themselves in the
 * block they found: three atomic operations, during which every
 * asynchronous signal is blocked (the handler's sa_mask), so nothing can
 * leave them half done. The count of handlers inside a block is the
 * block's own (b->inside): a handler that never leaves (a fault in the
 * unwinder whose program handler siglongjmps out) pins that one block, kept
 * mapped for ever, and no later capture waits for it. */
static atomic_int handlers_entering;
/* Signals whose handler is ours (installed once, never removed). */
static atomic_ullong handled_signals;

/* ---- the handler ---------------------------------------------------------- */

static size_t tid_hash(pid_t tid, size_t mask) { return ((uint32_t)tid * 2654435761u) & mask; }

static struct slot *slot_of(struct block *b, pid_t tid)
{
    for (size_t i = tid_hash(tid, b->hash_mask);; i = (i + 1) & b->hash_mask) {
        int v = atomic_load_explicit(&b->hash[i], memory_order_acquire);
        if (v == 0)
            return NULL;
        if (b->slots[v - 1].tid == tid)
            return &b->slots[v - 1];
    }
}

/* Walks the stack from `context` into pcs[]. From a signal frame (the
 * kernel's ucontext: interrupted = true) the first frame is the interrupted
 * one, its pc exact. From unw_getcontext the frames up to the signal frame
 * (if any) are the handler's own, and the one after it is the interrupted
 * one. */
static void unwind_from(unw_context_t *context, bool interrupted, uintptr_t *pcs, int *npcs, int *first_exact,
                        bool *truncated)
{
    unw_cursor_t cursor;
    int n = 0, exact = -1;
    bool after_signal_frame = interrupted;
    *truncated = false;
    QUIET_UNDER_VALGRIND_BEGIN();
    int init = interrupted ? unw_init_local2(&cursor, context, UNW_INIT_SIGNAL_FRAME)
                           : unw_init_local(&cursor, context);
    if (init == 0) {
        for (bool first = true;; first = false) {
            if (!(first && interrupted) && unw_step(&cursor) <= 0)
                break;
            if (n == THREADCHECK_MAX_FRAMES) {
                *truncated = true;
                break;
            }
            unw_word_t ip;
            if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0)
                break;
            if (after_signal_frame && exact < 0)
                exact = n;
            pcs[n++] = (uintptr_t)ip;
            if (!after_signal_frame && unw_is_signal_frame(&cursor) > 0)
                after_signal_frame = true;
        }
    }
    QUIET_UNDER_VALGRIND_END();
    *npcs = n;
    *first_exact = exact;
}

/* Unwinds the calling thread on its own stack: the caller of a capture when
 * no handler may be used. noinline: the context is this frame's. */
__attribute__((noinline)) static void unwind_self(uintptr_t *pcs, int *npcs, int *first_exact, bool *truncated)
{
    unw_context_t context;
    *npcs = 0;
    *first_exact = -1;
    *truncated = false;
    if (unw_getcontext(&context) == 0)
        unwind_from(&context, false, pcs, npcs, first_exact, truncated);
}

/* ---- unwinding on a borrowed stack ----------------------------------------
 * libunwind's unw_step uses about 4 KiB of stack below the interrupted
 * frame. On a blocked thread's stack those pages were never touched, and
 * they stay resident afterwards (glibc even caches the stacks of exited
 * threads): measured +4.1 MB of RSS for 1,000 threads, which a suite that
 * measures RSS must not add. So the handler takes the context on its own
 * stack (one frame) and runs the walk on one of a few stacks in the capture
 * block, claimed and released with atomics (async-signal-safe); when all are
 * taken it walks on its own stack. */

struct unwind_job {
    unw_context_t *context;
    bool interrupted;
    struct slot *slot;
};

static void run_job(void *arg)
{
    struct unwind_job *job = arg;
    struct slot *s = job->slot;
    unwind_from(job->context, job->interrupted, s->pcs, &s->npcs, &s->first_exact, &s->truncated);
}

/* ThreadSanitizer delays a signal to a thread that is not blocked in an
 * intercepted call and then calls the handler with the ucontext saved when
 * the signal came: the thread has run on since, so that context is stale.
 * Under TSan the handler unwinds from its own context instead. */
extern void __tsan_init(void) __attribute__((weak));

__attribute__((noinline)) static void unwind_from_here(struct slot *s)
{
    unw_context_t context;
    if (unw_getcontext(&context) == 0)
        unwind_from(&context, false, s->pcs, &s->npcs, &s->first_exact, &s->truncated);
    else
        s->npcs = 0;
}

/* Calls fn(arg) with the stack pointer at `top` (16-byte aligned), then puts
 * it back. x86_64 and aarch64; elsewhere fn runs on the current stack. */
void tc_call_on_stack(void (*fn)(void *), void *arg, void *top)
{
#if defined(__x86_64__)
    __asm__ volatile("mov %%rsp, %%r12\n\t"
                     "mov %[top], %%rsp\n\t"
                     "and $-16, %%rsp\n\t"
                     "call *%[fn]\n\t"
                     "mov %%r12, %%rsp\n\t"
                     : "+D"(arg)
                     : [fn] "r"(fn), [top] "r"(top)
                     : "r12", "rax", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1",
                       "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15");
#elif defined(__aarch64__)
    register void *x0 __asm__("x0") = arg;
    __asm__ volatile("mov x19, sp\n\t"
                     "mov sp, %[top]\n\t"
                     "blr %[fn]\n\t"
                     "mov sp, x19\n\t"
                     : "+r"(x0)
                     : [fn] "r"(fn), [top] "r"((uintptr_t)top & ~(uintptr_t)15)
                     : "x19", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
                       "x14", "x15", "x16", "x17", "x30", "memory", "cc", "v0", "v1", "v2", "v3", "v4", "v5", "v6",
                       "v7", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27",
                       "v28", "v29", "v30", "v31");
#else
    (void)top;
    fn(arg);
#endif
}

/* Takes a free borrowed stack (its index), or -1 when all are taken. */
static int claim_stack(struct block *b)
{
    unsigned long long free = atomic_load(&b->free_stacks);
    while (free) {
        int k = __builtin_ctzll(free);
        if (atomic_compare_exchange_weak(&b->free_stacks, &free, free & ~(1ull << k)))
            return k;
    }
    return -1;
}

/* The highest address of borrowed stack k (stacks grow down). */
static void *stack_top(struct block *b, int k)
{
    return b->stacks + (size_t)(k + 1) * (b->page + UNWIND_STACK_BYTES);
}

static void on_capture_signal(int sig, siginfo_t *info, void *ucontext)
{
    (void)sig, (void)info;
    int saved_errno = errno;
    atomic_fetch_add(&handlers_entering, 1);
    struct block *b = atomic_load(&active_block);
    if (b)
        atomic_fetch_add(&b->inside, 1);
    atomic_fetch_sub(&handlers_entering, 1);
    if (b) {
        struct slot *s = slot_of(b, (pid_t)syscall(SYS_gettid));
        int waiting = SLOT_WAITING;
        if (s && atomic_compare_exchange_strong(&s->state, &waiting, SLOT_WRITING)) {
            /* The kernel's ucontext is a libunwind context on Linux
             * (unw_tdep_context_t is ucontext_t): nothing more is put on this
             * thread's stack, and the walk runs on a borrowed one. */
            struct unwind_job job = {ucontext, true, s};
            int k = -1;
            if (&__tsan_init != NULL)
                unwind_from_here(s);
            else if (!UNDER_VALGRIND() && (k = claim_stack(b)) >= 0) {
                /* (memcheck takes a jump of the stack pointer within 2 MB
                 * for the stack shrinking, and the frames above it for dead:
                 * under Valgrind the walk stays on the thread's stack) */
                tc_call_on_stack(run_job, &job, stack_top(b, k));
                atomic_fetch_or(&b->free_stacks, 1ull << k);
            } else {
                run_job(&job);
            }
            atomic_store(&s->state, SLOT_DONE);
            if (atomic_fetch_add(&b->answered, 1) + 1 == atomic_load(&b->expected))
                sem_post(&b->all_answered);
        }
    }
    if (b)
        atomic_fetch_sub(&b->inside, 1);
    errno = saved_errno;
}

/* Installs the handler on `sig` unless something else handles it. Once ours,
 * it stays: a late signal must find it, never SIG_DFL (which would kill the
 * process). Returns NULL, or why stacks cannot be captured. */
static const char *ensure_handler(int sig)
{
    static char why[160];
    if (sig <= 0 || sig >= 64)
        return "the capture signal is out of range (THREADCHECK_OPTIONS=signal=N, N in SIGRTMIN..SIGRTMAX)";
    if (atomic_load(&handled_signals) & (1ull << sig)) {
        struct sigaction now;
        if (sigaction(sig, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_capture_signal)
            return NULL;
        snprintf(why, sizeof why, "signal %d: the program replaced threadcheck's handler "
                 "(set THREADCHECK_OPTIONS=signal=N to a free one)", sig);
        return why;
    }
    struct sigaction old;
    if (sigaction(sig, NULL, &old) != 0) {
        snprintf(why, sizeof why, "signal %d: sigaction: %s", sig, strerror(errno));
        return why;
    }
    bool ours = (old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_capture_signal;
    if (!ours && old.sa_handler != SIG_DFL) {
        snprintf(why, sizeof why, "signal %d already has a handler or is ignored in this program "
                 "(set THREADCHECK_OPTIONS=signal=N to a free one)", sig);
        return why;
    }
    if (!ours) {
        struct sigaction sa = {0};
        sa.sa_sigaction = on_capture_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
        /* Every asynchronous signal waits while the handler runs: no handler
         * of the program's runs inside ours (and could leave it with
         * siglongjmp). A fault (SIGSEGV, SIGBUS...) is synchronous: blocking
         * it would kill the process, so it stays open. */
        sigfillset(&sa.sa_mask);
        static const int synchronous[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};
        for (size_t i = 0; i < sizeof synchronous / sizeof synchronous[0]; i++)
            sigdelset(&sa.sa_mask, synchronous[i]);
        /* glibc's sigfillset leaves out its own SIGCANCEL (32) and SIGSETXID
         * (33); the kernel takes them in a handler's mask: an asynchronous
         * pthread_cancel then acts when the handler returns, never inside it. */
        sa.sa_mask.__val[0] |= 3ul << 31;
        if (sigaction(sig, &sa, NULL) != 0) {
            snprintf(why, sizeof why, "signal %d: sigaction: %s", sig, strerror(errno));
            return why;
        }
    }
    atomic_fetch_or(&handled_signals, 1ull << sig);
    return NULL;
}

/* ---- /proc ---------------------------------------------------------------- */

/* Reads a small /proc file relative to `dirfd` into buf (NUL-terminated,
 * trailing newline dropped). Returns its length, or -1. */
static ssize_t read_small(int dirfd, const char *path, char *buf, size_t len)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, len - 1 - (size_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += n;
        if ((size_t)got == len - 1)
            break;
    }
    close(fd);
    if (got > 0 && buf[got - 1] == '\n')
        got--;
    buf[got] = '\0';
    return got;
}

struct proc_view {
    char state;
    char name[16];
    unsigned long long start_time;
    char wchan[64];
    long syscall;               /* -1 none, -2 running */
    unsigned long args[6];
    uintptr_t pc, sp;
};

static int read_stat(int taskfd, pid_t tid, struct proc_view *v)
{
    char path[48], buf[1024];
    snprintf(path, sizeof path, "%d/stat", (int)tid);
    if (read_small(taskfd, path, buf, sizeof buf) <= 0)
        return -1;
    /* "TID (comm) S ppid ... starttime(22) ...": comm may hold spaces and ')'. */
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open || close[1] == '\0')
        return -1;
    size_t namelen = (size_t)(close - open - 1);
    if (namelen >= sizeof v->name)
        namelen = sizeof v->name - 1;
    memcpy(v->name, open + 1, namelen);
    v->name[namelen] = '\0';
    v->state = close[2];
    /* Field 3 is the state; starttime is field 22, 19 further fields on. */
    char *p = close + 2;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    v->start_time = p ? strtoull(p, NULL, 10) : 0;
    return 0;
}

static void read_wchan_syscall(int taskfd, pid_t tid, struct proc_view *v)
{
    char path[48], buf[256];
    snprintf(path, sizeof path, "%d/wchan", (int)tid);
    if (read_small(taskfd, path, v->wchan, sizeof v->wchan) <= 0 || strcmp(v->wchan, "0") == 0)
        snprintf(v->wchan, sizeof v->wchan, "-");
    v->syscall = -2;
    memset(v->args, 0, sizeof v->args);
    v->pc = 0;
    snprintf(path, sizeof path, "%d/syscall", (int)tid);
    if (read_small(taskfd, path, buf, sizeof buf) <= 0 || strncmp(buf, "running", 7) == 0)
        return;
    /* "NR a1 a2 a3 a4 a5 a6 SP PC", or "-1 SP PC" when not in a system call. */
    char *p = buf, *end;
    v->syscall = strtol(p, &end, 10);
    p = end;
    unsigned long words[8];
    int n = 0;
    while (n < 8) {
        unsigned long w = strtoul(p, &end, 16);
        if (end == p)
            break;
        words[n++] = w;
        p = end;
    }
    if (v->syscall >= 0 && n == 8) {
        memcpy(v->args, words, sizeof v->args);
        v->sp = words[6];
        v->pc = words[7];
    } else if (v->syscall < 0 && n == 2) {
        v->syscall = -1;
        v->pc = words[1];
    }
}

/* Bit `sig` of a mask line of status ("SigBlk:\t0000000000000000"). */
static bool mask_has(const char *status, const char *key, int sig)
{
    const char *p = strstr(status, key);
    if (!p)
        return false;
    unsigned long long mask = strtoull(p + strlen(key), NULL, 16);
    return (mask >> (sig - 1)) & 1;
}

/* The blocked-signal mask from status. */
static bool blocks_signal(int taskfd, pid_t tid, int sig)
{
    char path[48], buf[2048];
    snprintf(path, sizeof path, "%d/status", (int)tid);
    if (read_small(taskfd, path, buf, sizeof buf) <= 0)
        return false;
    return mask_has(buf, "\nSigBlk:", sig);
}

/* Why the capture signal must not be sent to the thread at all, from its
 * status, or -1 when it may be: it blocks the signal (a thread blocked in
 * sigwait or reading a signalfd blocks it too, and would take our signal for
 * one of its own; a blocked real-time signal queues, and every capture would
 * add one until RLIMIT_SIGPENDING, counted for the whole user, refuses
 * signals to every process of that user), or one sent by an earlier capture
 * is still pending (at most one in flight per thread). */
static int must_not_signal(int taskfd, pid_t tid, int sig)
{
    char path[48], buf[2048];
    snprintf(path, sizeof path, "%d/status", (int)tid);
    if (read_small(taskfd, path, buf, sizeof buf) <= 0)
        return -1; /* gone: tgkill will say so */
    if (mask_has(buf, "\nSigBlk:", sig))
        return THREADCHECK_STACK_BLOCKED;
    if (mask_has(buf, "\nSigPnd:", sig))
        return THREADCHECK_STACK_PENDING;
    return -1;
}

static bool task_exists(int taskfd, pid_t tid)
{
    char path[24];
    snprintf(path, sizeof path, "%d", (int)tid);
    return faccessat(taskfd, path, F_OK, 0) == 0;
}

/* ---- which threads may be signalled --------------------------------------- */

/* True when a handler run in this thread cannot make what it is doing
 * visible: running, faulting, or asleep in a system call that restarts
 * unseen (restart_rules.h, shared with orphans). */
static bool restartable(const struct proc_view *v)
{
    if (v->syscall < 0) /* -2: running in user space (or on a CPU); -1: a page fault */
        return true;
    return tc_restarts_unseen(v->syscall, v->args);
}

/* ---- the capture ---------------------------------------------------------- */

double tc_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void reset_after_fork(void)
{
    /* The child has one thread; a capture in progress in the parent (if any)
     * is not the child's. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    capture_lock = fresh;
    atomic_store(&active_block, NULL);
    atomic_store(&handlers_entering, 0);
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, reset_after_fork); }

/* Lists /proc/self/task. Returns a malloc'd array (caller frees) or NULL. */
static pid_t *list_tids(size_t *n)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return NULL;
    size_t cap = 64, len = 0;
    pid_t *tids = malloc(cap * sizeof *tids);
    for (struct dirent *e; tids && (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        if (len == cap) {
            pid_t *more = realloc(tids, 2 * cap * sizeof *tids);
            if (!more) {
                free(tids);
                tids = NULL;
                break;
            }
            tids = more;
            cap *= 2;
        }
        tids[len++] = (pid_t)atoi(e->d_name);
    }
    int err = errno;
    closedir(d);
    if (!tids)
        errno = err ? err : ENOMEM;
    *n = len;
    return tids;
}

static struct block *block_new(size_t nslots)
{
    size_t hash_cap = 16;
    while (hash_cap < 2 * nslots)
        hash_cap *= 2;
    size_t bytes = sizeof(struct block) + nslots * sizeof(struct slot) + hash_cap * sizeof(atomic_int);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    bytes = (bytes + page - 1) / page * page;
    size_t head = bytes;
    bytes += UNWIND_STACKS * (page + UNWIND_STACK_BYTES); /* the borrowed stacks, each above a guard page */
    /* mmap, not malloc: the mapping may have to outlive a handler that never
     * leaves, and the census must not churn the heap it measures. */
    struct block *b = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        return NULL;
    b->bytes = bytes;
    b->hash_mask = hash_cap - 1;
    b->page = page;
    b->stacks = (char *)b + head;
    unsigned long long free = 0;
    for (int k = 0; k < UNWIND_STACKS; k++)
        if (mprotect(b->stacks + (size_t)k * (page + UNWIND_STACK_BYTES), page, PROT_NONE) == 0)
            free |= 1ull << k; /* a stack whose guard page could not be set is not lent */
    atomic_init(&b->free_stacks, free);
    b->hash = (atomic_int *)(void *)&b->slots[nslots];
    atomic_init(&b->expected, SIZE_MAX);
    sem_init(&b->all_answered, 0, 0);
    return b;
}

/* Adds a slot for `tid` while the block is live: the slot is filled before
 * its hash entry is published (release), so a handler that finds the entry
 * (acquire) sees a ready slot. Only the capturing thread adds. */
static struct slot *block_add(struct block *b, pid_t tid)
{
    size_t idx = b->nslots++;
    struct slot *s = &b->slots[idx];
    atomic_init(&s->state, SLOT_WAITING);
    s->tid = tid;
    s->first_exact = -1;
    size_t i = tid_hash(tid, b->hash_mask);
    while (atomic_load_explicit(&b->hash[i], memory_order_relaxed) != 0)
        i = (i + 1) & b->hash_mask;
    atomic_store_explicit(&b->hash[i], (int)idx + 1, memory_order_release);
    return s;
}

/* A slot that will never be answered (the thread is gone, or the signal
 * could not be queued) counts as answered, so nobody waits for it. */
static void block_give_up(struct block *b, struct slot *s)
{
    int waiting = SLOT_WAITING;
    if (atomic_compare_exchange_strong(&s->state, &waiting, SLOT_ABANDONED) &&
        atomic_fetch_add(&b->answered, 1) + 1 == atomic_load(&b->expected))
        sem_post(&b->all_answered);
}

/* Unpublishes the block and unmaps it once no handler is inside; keeps it
 * mapped for ever if one never leaves (it would write into freed memory). */
static void block_retire(struct block *b)
{
    atomic_store(&active_block, NULL);
    /* First no handler may still be about to count itself in b, then none
     * may still be inside it. */
    double until = tc_now_ms() + LEAVE_WAIT_MS;
    while (atomic_load(&handlers_entering) != 0 || atomic_load(&b->inside) != 0) {
        if (tc_now_ms() > until)
            return; /* leaked on purpose */
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    sem_destroy(&b->all_answered);
    munmap(b, b->bytes);
}

static void wait_for_answers(struct block *b, unsigned timeout_ms)
{
    size_t expected = atomic_load(&b->expected);
    if (expected == 0)
        return;
    double start = tc_now_ms(), last_progress = start;
    size_t seen = 0;
    while (atomic_load(&b->answered) < expected) {
        double now = tc_now_ms();
        size_t answered = atomic_load(&b->answered);
        if (answered != seen)
            seen = answered, last_progress = now;
        if (now - last_progress > timeout_ms || now - start > (double)timeout_ms * MAX_WAIT_FACTOR)
            return;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += POLL_SLICE_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        while (sem_clockwait(&b->all_answered, CLOCK_MONOTONIC, &until) != 0 && errno == EINTR)
            ;
    }
}

int tc_default_signal(void)
{
    const char *env = getenv("THREADCHECK_OPTIONS");
    const char *p = env ? strstr(env, "signal=") : NULL;
    while (p && p != env && p[-1] != ':' && p[-1] != ' ')
        p = strstr(p + 1, "signal=");
    if (p) {
        long sig = strtol(p + 7, NULL, 10);
        if (sig >= SIGRTMIN && sig <= SIGRTMAX)
            return (int)sig;
    }
    return SIGRTMIN + 8;
}

int tc_capture(const threadcheck_capture_options *opts, tc_tid_filter filter, void *arg, tc_raw_thread **out,
               size_t *nout, const char **why, int *signal_used)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handler);
    unsigned flags = opts ? opts->flags : 0;
    unsigned timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : TC_DEFAULT_TIMEOUT_MS;
    int sig = opts && opts->signal ? opts->signal : tc_default_signal();
    bool stacks = !(flags & THREADCHECK_NO_STACKS);
    *why = NULL;
    *signal_used = 0;

    pthread_mutex_lock(&capture_lock);
    size_t ntids = 0;
    pid_t *tids = list_tids(&ntids);
    int taskfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    tc_raw_thread *raw = tids && taskfd >= 0 ? calloc(ntids ? ntids : 1, sizeof *raw) : NULL;
    if (!raw) {
        int err = errno ? errno : ENOMEM;
        free(tids);
        if (taskfd >= 0)
            close(taskfd);
        pthread_mutex_unlock(&capture_lock);
        errno = err;
        return -1;
    }
    pid_t self = (pid_t)syscall(SYS_gettid), pid = getpid();

    /* One slot per thread that may be signalled, filled as threads are read
     * (a thread's slot is published before its signal is sent). */
    struct block *b = NULL;
    if (stacks) {
        *why = ensure_handler(sig);
        if (!*why && !(b = block_new(ntids)))
            *why = "no memory for the capture slots (mmap failed)";
        if (b) {
            /* libunwind initialises itself lazily (its signal masks, its
             * caches): once here, outside any handler, before the block is
             * published, so handlers only read what it set up (ThreadSanitizer
             * calls the lazy first run in two handlers at once a race). */
            uintptr_t warm[THREADCHECK_MAX_FRAMES];
            int warm_n, warm_exact;
            bool warm_truncated;
            unwind_self(warm, &warm_n, &warm_exact, &warm_truncated);
            *signal_used = sig;
            atomic_store(&active_block, b);
        }
    }
    size_t n = 0;
    int refusal;
    for (size_t i = 0; i < ntids; i++) {
        struct proc_view v = {0};
        if (read_stat(taskfd, tids[i], &v) != 0)
            continue; /* exited since the listing */
        if (filter && !filter(tids[i], v.start_time, arg))
            continue;
        read_wchan_syscall(taskfd, tids[i], &v);
        tc_raw_thread *t = &raw[n++];
        t->info.tid = tids[i];
        memcpy(t->info.name, v.name, sizeof t->info.name);
        t->info.state = v.state;
        memcpy(t->info.wchan, v.wchan, sizeof t->info.wchan);
        t->info.syscall = v.syscall;
        t->info.start_time = v.start_time;
        t->info.wait_address = v.syscall == SYS_futex ? (uintptr_t)v.args[0] : 0;
        t->first_exact = -1;
        /* Where the kernel says the thread is: the one frame a thread that
         * is not signalled still gets (replaced by its stack if it answers). */
        if (v.pc) {
            t->pcs[0] = v.pc;
            t->npcs = 1;
        }
        if (!stacks) {
            t->info.status = THREADCHECK_STACK_SKIPPED;
        } else if (tids[i] == self) {
            /* The caller too unwinds in its handler (the signal to itself is
             * delivered before tgkill returns): one code path for every
             * thread, and the one valgrind finds clean (libunwind's memory
             * validation from an ordinary frame reads below the stack
             * pointer: memcheck reports it). */
            t->info.status = b ? THREADCHECK_STACK_TIMEOUT : THREADCHECK_STACK_CAPTURED;
            if (b)
                block_add(b, tids[i]);
            else
                unwind_self(t->pcs, &t->npcs, &t->first_exact, &t->info.truncated);
        } else if (strchr("TtZXx", v.state)) {
            t->info.status = THREADCHECK_STACK_STOPPED;
        } else if (!restartable(&v)) {
            t->info.status = THREADCHECK_STACK_NOT_SIGNALLED;
        } else if (!b) {
            t->info.status = THREADCHECK_STACK_UNAVAILABLE;
        } else if ((refusal = must_not_signal(taskfd, tids[i], sig)) >= 0) {
            t->info.status = (threadcheck_stack_status)refusal;
        } else {
            t->info.status = THREADCHECK_STACK_TIMEOUT; /* until it answers */
            block_add(b, tids[i]);
        }
        /* Not signalled, asleep in a system call: its stack is read from
         * /proc's registers instead, once the signalled ones have answered. */
        t->from_proc = v.syscall >= 0 && v.sp && v.pc && strchr("SD", v.state) &&
                       (t->info.status == THREADCHECK_STACK_NOT_SIGNALLED ||
                        t->info.status == THREADCHECK_STACK_BLOCKED || t->info.status == THREADCHECK_STACK_PENDING);
        if (t->from_proc) {
            t->sp = v.sp;
            memcpy(t->args, v.args, sizeof t->args);
        }
    }
    free(tids);

    /* Every signal after every /proc read: the states read are the threads'
     * own, not those of threads busy in a handler. */
    if (b)
        for (size_t i = 0; i < b->nslots; i++)
            if (syscall(SYS_tgkill, pid, b->slots[i].tid, sig) != 0)
                block_give_up(b, &b->slots[i]); /* gone (ESRCH) or the signal queue is full (EAGAIN) */
    /* A caller that blocks the signal has not answered itself: it unwinds
     * directly (its queued signal finds its slot abandoned later). */
    for (size_t i = 0; b && i < n; i++) {
        struct slot *s = slot_of(b, self);
        int waiting = SLOT_WAITING;
        if (raw[i].info.tid != self || !s || !atomic_compare_exchange_strong(&s->state, &waiting, SLOT_WRITING))
            continue;
        unwind_self(s->pcs, &s->npcs, &s->first_exact, &s->truncated);
        atomic_store(&s->state, SLOT_DONE);
        atomic_fetch_add(&b->answered, 1);
    }

    if (b) {
        atomic_store(&b->expected, b->nslots);
        wait_for_answers(b, timeout_ms);
        /* Abandon what did not answer, so a late handler leaves it alone; a
         * handler caught writing gets a moment to finish. */
        for (size_t i = 0; i < b->nslots; i++) {
            struct slot *s = &b->slots[i];
            int waiting = SLOT_WAITING;
            atomic_compare_exchange_strong(&s->state, &waiting, SLOT_ABANDONED);
            for (double until = tc_now_ms() + 100; atomic_load(&s->state) == SLOT_WRITING && tc_now_ms() < until;)
                sched_yield();
        }
        for (size_t i = 0, k = 0; i < n; i++) {
            tc_raw_thread *t = &raw[i];
            if (t->info.status != THREADCHECK_STACK_TIMEOUT)
                continue;
            struct slot *s = &b->slots[k++];
            if (atomic_load(&s->state) == SLOT_DONE) {
                memcpy(t->pcs, s->pcs, (size_t)s->npcs * sizeof t->pcs[0]);
                t->npcs = s->npcs;
                t->first_exact = s->first_exact;
                t->info.truncated = s->truncated;
                t->info.status = THREADCHECK_STACK_CAPTURED;
            } else if (!task_exists(taskfd, t->info.tid)) {
                t->info.status = THREADCHECK_STACK_EXITED;
            } else if (blocks_signal(taskfd, t->info.tid, sig)) {
                t->info.status = THREADCHECK_STACK_BLOCKED;
            }
        }
        block_retire(b);
    }
    if (stacks)
        tc_unwind_from_proc(taskfd, raw, n);
    close(taskfd);
    pthread_mutex_unlock(&capture_lock);
    *out = raw;
    *nout = n;
    return 0;
}
