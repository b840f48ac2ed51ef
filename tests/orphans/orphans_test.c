/* orphans_test - orphans' API, case by case: `orphans_test CASE` exits 0
 * when the case holds, 1 (with the report) when it does not, 77 when the
 * machine cannot run it. Every case builds the situation, waits until each
 * thread that must be blocked really sleeps in its wait (read from
 * /proc/self/task/TID/syscall, polled: an observation, never a sleep), then
 * asks orphans_find() and checks what it says. The pairs go both ways: the
 * same threads, once with a root that reaches their object (not reported)
 * and once without (reported), so a detector that reports everything or
 * nothing fails. */
#include "orphans.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { PARK_DEADLINE_S = 20, SYS_FUTEX_NR = 202 };

static int failures;

#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

static pid_t gettid_raw(void) { return (pid_t)syscall(SYS_gettid); }

/* Polls /proc/self/task/TID/syscall until the thread sleeps in system call
 * `nr` (-1: any); bounded by PARK_DEADLINE_S. */
static void await_parked(pid_t tid, long nr)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    time_t end = time(NULL) + PARK_DEADLINE_S;
    while (time(NULL) < end) {
        char text[256] = "";
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "thread %d is gone\n", (int)tid);
            exit(99);
        }
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        if (n > 0 && text[0] >= '0' && text[0] <= '9') {
            long got = strtol(text, NULL, 10);
            if (nr < 0 || got == nr)
                return;
        }
        sched_yield();
    }
    fprintf(stderr, "thread %d did not park within %d s\n", (int)tid, PARK_DEADLINE_S);
    exit(99);
}

static orphans_result *find(const char *options)
{
    orphans_result *r = orphans_find(options);
    if (!r) {
        perror("orphans_find");
        exit(99);
    }
    if (r->status == ORPHANS_UNSUPPORTED) {
        fprintf(stderr, "skip: %s\n", r->why);
        exit(77);
    }
    return r;
}

static void show(const orphans_result *r)
{
    if (failures)
        orphans_result_print(r, stderr);
}

/* ---- a waiter and its box ------------------------------------------------------ */

struct box {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct box *next;     /* another box this one leads to */
    _Atomic pid_t tid;    /* the thread waiting on it */
    bool wake;
};

static struct box *box_new(void)
{
    struct box *b = calloc(1, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    return b;
}

/* Waits on its box until woken; `keep` is a pointer it holds on its stack
 * meanwhile (another box, or NULL). */
struct waiter_args {
    struct box *box;
    struct box *keep;
};

static void *waiter(void *arg)
{
    struct waiter_args a = *(struct waiter_args *)arg;
    free(arg);
    struct box *volatile keep = a.keep; /* on this thread's stack, and only here */
    pthread_mutex_lock(&a.box->lock);
    atomic_store(&a.box->tid, gettid_raw());
    while (!a.box->wake)
        pthread_cond_wait(&a.box->cond, &a.box->lock);
    pthread_mutex_unlock(&a.box->lock);
    (void)keep;
    return NULL;
}

/* Starts a detached waiter on `box` (keeping `keep`), returns once it sleeps. */
static __attribute__((noinline)) void start_waiter(struct box *box, struct box *keep)
{
    struct waiter_args *a = malloc(sizeof *a);
    *a = (struct waiter_args){box, keep};
    pthread_t t;
    if (pthread_create(&t, NULL, waiter, a) != 0) {
        perror("pthread_create");
        exit(99);
    }
    pthread_detach(t);
    while (atomic_load(&box->tid) == 0)
        sched_yield();
    await_parked(atomic_load(&box->tid), SYS_FUTEX_NR);
}

/* Scrubs the stack below the caller (where dead frames of the setup left
 * copies of the pointers it dropped): orphans scans only live frames, but
 * this keeps the tests independent of what the compiler spills. */
static __attribute__((noinline)) void scrub(void)
{
    volatile char junk[16384];
    memset((char *)junk, 0, sizeof junk);
}

/* ---- cases ------------------------------------------------------------------------ */

/* Roots are volatile: GCC drops a store to a static that is never read. */
static struct box *volatile global_box;

/* A waiter on a box only a global reaches: wakeable. Then the global is
 * dropped: now it is leaked. */
static __attribute__((noinline)) void setup_global(void)
{
    global_box = box_new();
    start_waiter(global_box, NULL);
}

static int case_global(void)
{
    setup_global();
    scrub();
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_NONE && r->leaked == 0, "status %s, %zu leaked", orphans_status_text(r->status), r->leaked);
    EXPECT(r->blocked >= 1, "%zu blocked", r->blocked);
    show(r);
    orphans_result_free(r);
    global_box = NULL; /* the negative control: same thread, no root */
    scrub();
    r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1, "status %s, %zu leaked", orphans_status_text(r->status), r->leaked);
    if (r->ngroups == 1) {
        EXPECT(strcmp(r->groups[0].kind, "cond") == 0, "kind %s", r->groups[0].kind);
        EXPECT(strcmp(r->groups[0].place, "heap") == 0, "place %s", r->groups[0].place);
        EXPECT(r->groups[0].block_size == sizeof(struct box), "block %zu", r->groups[0].block_size);
        EXPECT(r->groups[0].top && strcmp(r->groups[0].top, "waiter") == 0, "top %s", r->groups[0].top);
    }
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* A blocked on box A, which nothing reaches; B blocked on box B, which only
 * A's stack reaches: B is leaked through A (transitively). With A's box in a
 * global, A can be woken, so its stack is a root and B is wakeable too. */
static struct box *volatile root_of_a;

static __attribute__((noinline)) void setup_chain(void)
{
    struct box *a = box_new(), *b = box_new();
    start_waiter(b, NULL);
    start_waiter(a, b); /* a's thread holds the only pointer to b */
    root_of_a = a;
}

static int case_transitive(void)
{
    setup_chain();
    scrub();
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_NONE, "with A's box in a global: status %s, %zu leaked", orphans_status_text(r->status),
           r->leaked);
    show(r);
    orphans_result_free(r);
    root_of_a = NULL;
    scrub();
    r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 2, "without: status %s, %zu leaked (want 2: A and, through "
           "A's stack, B)", orphans_status_text(r->status), r->leaked);
    size_t pinned = 0;
    for (size_t g = 0; g < r->ngroups; g++)
        pinned += r->groups[g].pinned_bytes;
    EXPECT(pinned >= 2 * sizeof(struct box), "pinned %zu", pinned);
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* A box whose only pointer sits in a register of a thread that runs: the
 * waiter on it is wakeable. The pointer reaches the spinning thread XORed
 * with a key, and is decoded into r12, where it stays. */
#define KEY ((uintptr_t)0x5a5a5a5a5a5a5a5aULL)
static atomic_bool spin_stop;
static _Atomic int spinning;

static void *spin_with_register(void *arg)
{
    register uintptr_t held __asm__("r12") = (uintptr_t)arg ^ KEY;
    atomic_store(&spinning, 1);
    while (!atomic_load_explicit(&spin_stop, memory_order_relaxed))
        __asm__ volatile("" : "+r"(held));
    return NULL;
}

static void *spin_hidden(void *arg)
{
    register uintptr_t held __asm__("r12") = (uintptr_t)arg; /* still XORed: no pointer anywhere */
    atomic_store(&spinning, 1);
    while (!atomic_load_explicit(&spin_stop, memory_order_relaxed))
        __asm__ volatile("" : "+r"(held));
    return NULL;
}

static pthread_t spinner;

static __attribute__((noinline)) void setup_register(void *(*spin)(void *))
{
    struct box *b = box_new();
    start_waiter(b, NULL);
    uintptr_t hidden = (uintptr_t)b ^ KEY;
    b = NULL;
    atomic_store(&spinning, 0);
    atomic_store(&spin_stop, false);
    pthread_create(&spinner, NULL, spin, (void *)hidden);
    while (!atomic_load(&spinning))
        sched_yield();
}

static int case_registers(void)
{
    setup_register(spin_with_register);
    scrub();
    /* settle_tries=0: the spinner always runs; no point waiting for it */
    orphans_result *r = find("settle_tries=0");
    EXPECT(r->status == ORPHANS_NONE && r->leaked == 0, "the box is in a running thread's r12: status %s, %zu leaked",
           orphans_status_text(r->status), r->leaked);
    show(r);
    orphans_result_free(r);
    atomic_store(&spin_stop, true);
    pthread_join(spinner, NULL);
    return failures != 0;
}

/* The documented limit: a pointer kept only XORed is no pointer to a
 * conservative marker. The box IS reachable (the program can decode it), yet
 * its waiter is reported; the test pins that, then proves the program could
 * indeed wake it. */
static volatile uintptr_t xor_hidden;

static __attribute__((noinline)) void setup_xor(void)
{
    struct box *b = box_new();
    start_waiter(b, NULL);
    xor_hidden = (uintptr_t)b ^ KEY;
}

static int case_xor(void)
{
    setup_xor();
    scrub();
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1,
           "a box kept only XORed in a global: status %s, %zu leaked (the documented limit says 1)",
           orphans_status_text(r->status), r->leaked);
    show(r);
    pid_t tid = r->ngroups ? r->groups[0].tids[0] : 0;
    orphans_result_free(r);
    /* ... and yet the program can wake it: */
    struct box *b = (struct box *)(xor_hidden ^ KEY);
    pthread_mutex_lock(&b->lock);
    b->wake = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)tid);
    time_t end = time(NULL) + PARK_DEADLINE_S;
    while (tid && access(path, F_OK) == 0 && time(NULL) < end)
        sched_yield();
    EXPECT(tid && access(path, F_OK) != 0, "the reported thread %d did wake and exit once the box was decoded", (int)tid);
    /* A second set up the same way, with the spinner holding it XORed in a
     * register: reported too (registers are scanned as they are). */
    setup_register(spin_hidden);
    scrub();
    r = find("settle_tries=0");
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1, "XORed in a register: status %s, %zu leaked",
           orphans_status_text(r->status), r->leaked);
    show(r);
    orphans_result_free(r);
    atomic_store(&spin_stop, true);
    pthread_join(spinner, NULL);
    return failures != 0;
}

/* Waits on file descriptors are never leaks: the other end may be in
 * another process. Each thread's pipe/socket is reachable from nothing. */
static void *read_pipe(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    (void)!read(fd, &c, 1);
    return NULL;
}

static _Atomic int interrupted; /* EINTRs seen by threads orphans must never interrupt */

static void *poll_fd(void *arg)
{
    struct pollfd p = {.fd = (int)(intptr_t)arg, .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        atomic_fetch_add(&interrupted, 1);
    return NULL;
}

static void *recv_socket(void *arg)
{
    char c;
    (void)!recv((int)(intptr_t)arg, &c, 1, 0);
    return NULL;
}

/* Starts fn(arg) on a detached thread and returns once it sleeps in a
 * system call (nr, or any with -1). Its TID comes from its CPU clock id
 * (Linux encodes it there: tid = ~(clock >> 3)). */
static pid_t start_parked(void *(*fn)(void *), void *arg, long nr)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0) {
        perror("pthread_create");
        exit(99);
    }
    clockid_t clock;
    if (pthread_getcpuclockid(t, &clock) != 0) {
        fprintf(stderr, "pthread_getcpuclockid failed\n");
        exit(99);
    }
    pthread_detach(t);
    pid_t tid = (pid_t)~(clock >> 3);
    await_parked(tid, nr);
    return tid;
}

static int case_fds(void)
{
    int p[2], s[2], q[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, s) || pipe(q)) {
        perror("pipe");
        return 99;
    }
    start_parked(read_pipe, (void *)(intptr_t)p[0], -1);
    start_parked(recv_socket, (void *)(intptr_t)s[0], -1);
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_NONE && r->leaked == 0 && r->blocked == 0,
           "threads in read, recv: status %s, %zu blocked, %zu leaked", orphans_status_text(r->status), r->blocked,
           r->leaked);
    show(r);
    orphans_result_free(r);
    /* poll returns EINTR after any handler: that thread is never signalled,
     * so its registers are unknown and nothing can be proved (incomplete). */
    pid_t poller = start_parked(poll_fd, (void *)(intptr_t)q[0], -1);
    r = find(NULL);
    char name[48];
    snprintf(name, sizeof name, "thread %d is in poll", (int)poller);
    EXPECT(r->status == ORPHANS_INCOMPLETE && r->leaked == 0 && strstr(r->why, name),
           "a thread in poll: status %s, %zu leaked, why: %s", orphans_status_text(r->status), r->leaked, r->why);
    EXPECT(atomic_load(&interrupted) == 0, "poll saw EINTR %d times", atomic_load(&interrupted));
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* Timed waits end by themselves: never reported, even on an orphaned object. */
static void *timed_cond(void *arg)
{
    struct box *b = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3600;
    pthread_mutex_lock(&b->lock);
    atomic_store(&b->tid, gettid_raw());
    while (!b->wake)
        if (pthread_cond_timedwait(&b->cond, &b->lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static void *timed_sem(void *arg)
{
    sem_t *sem = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3600;
    while (sem_timedwait(sem, &until) != 0 && errno == EINTR)
        atomic_fetch_add(&interrupted, 1);
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    struct timespec left = {3600, 0};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        atomic_fetch_add(&interrupted, 1);
    return NULL;
}

static __attribute__((noinline)) void setup_timed(void)
{
    struct box *b = box_new();
    pthread_t t;
    pthread_create(&t, NULL, timed_cond, b);
    pthread_detach(t);
    while (atomic_load(&b->tid) == 0)
        sched_yield();
    await_parked(atomic_load(&b->tid), SYS_FUTEX_NR);
    sem_t *sem = malloc(sizeof *sem);
    sem_init(sem, 0, 0);
    start_parked(timed_sem, sem, SYS_FUTEX_NR);
    start_parked(sleeper, NULL, -1);
}

static int case_timed(void)
{
    setup_timed();
    scrub();
    for (int i = 0; i < 3; i++) {
        /* A timed wait returns EINTR after a handler (sem_timedwait and
         * nanosleep pass it on): those threads are not signalled, so the
         * analysis is incomplete, and never names them leaked. */
        orphans_result *r = find(NULL);
        EXPECT(r->status == ORPHANS_INCOMPLETE && r->leaked == 0 && strstr(r->why, "which a signal would visibly"),
               "round %d: timed waits on orphaned objects: status %s, %zu leaked, why: %s", i,
               orphans_status_text(r->status), r->leaked, r->why);
        show(r);
        orphans_result_free(r);
    }
    EXPECT(atomic_load(&interrupted) == 0, "sem_timedwait and nanosleep saw EINTR %d times", atomic_load(&interrupted));
    return failures != 0;
}

/* pthread_join on a thread blocked for good: the joiner can never return
 * either. With the joined thread's box in a global, both can. */
static struct box *volatile join_root;
static _Atomic pid_t joiner_tid;

static void *joiner(void *arg)
{
    atomic_store(&joiner_tid, gettid_raw());
    pthread_join(*(pthread_t *)arg, NULL);
    return NULL;
}

static __attribute__((noinline)) void setup_join(void)
{
    struct box *b = box_new();
    struct waiter_args *a = malloc(sizeof *a);
    *a = (struct waiter_args){b, NULL};
    pthread_t *target = malloc(sizeof *target);
    pthread_create(target, NULL, waiter, a);
    while (atomic_load(&b->tid) == 0)
        sched_yield();
    await_parked(atomic_load(&b->tid), SYS_FUTEX_NR);
    pthread_t j;
    pthread_create(&j, NULL, joiner, target); /* only the joiner knows target's handle */
    pthread_detach(j);
    while (atomic_load(&joiner_tid) == 0)
        sched_yield();
    await_parked(atomic_load(&joiner_tid), SYS_FUTEX_NR);
    join_root = b;
}

static int case_join(void)
{
    setup_join();
    scrub();
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_NONE, "the joined thread's box in a global: status %s, %zu leaked",
           orphans_status_text(r->status), r->leaked);
    show(r);
    orphans_result_free(r);
    join_root = NULL;
    scrub();
    r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 2, "status %s, %zu leaked (want 2: the waiter and its joiner)",
           orphans_status_text(r->status), r->leaked);
    bool saw_join = false;
    for (size_t g = 0; g < r->ngroups; g++)
        if (strcmp(r->groups[g].kind, "join") == 0 && strcmp(r->groups[g].place, "thread") == 0)
            saw_join = true;
    EXPECT(saw_join, "no group waits in pthread_join");
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* A condition variable on the waiter's own stack, never published: leaked.
 * The same on another thread's stack that is published in a global: not. */
static _Atomic(pthread_cond_t *) published;
static _Atomic pid_t local_tid;

static void *wait_on_local(void *arg)
{
    bool publish = arg != NULL;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    if (publish)
        atomic_store(&published, &cond);
    pthread_mutex_lock(&lock);
    atomic_store(&local_tid, gettid_raw());
    for (;;)
        pthread_cond_wait(&cond, &lock);
    return NULL;
}

static int case_stack_object(void)
{
    pthread_t t;
    pthread_create(&t, NULL, wait_on_local, (void *)1);
    pthread_detach(t);
    while (atomic_load(&local_tid) == 0)
        sched_yield();
    await_parked(atomic_load(&local_tid), SYS_FUTEX_NR);
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_NONE, "a stack condvar published in a global: status %s, %zu leaked",
           orphans_status_text(r->status), r->leaked);
    show(r);
    orphans_result_free(r);
    atomic_store(&local_tid, 0);
    pthread_create(&t, NULL, wait_on_local, NULL);
    pthread_detach(t);
    while (atomic_load(&local_tid) == 0)
        sched_yield();
    await_parked(atomic_load(&local_tid), SYS_FUTEX_NR);
    r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1, "a condvar on the waiter's own stack: status %s, %zu leaked",
           orphans_status_text(r->status), r->leaked);
    if (r->ngroups == 1)
        EXPECT(strcmp(r->groups[0].place, "stack") == 0, "place %s", r->groups[0].place);
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* pthread_cancel could still end a thread whose handle is reachable: by
 * default it is reported (it can never be woken), flagged cancellable;
 * cancel_wakes=1 counts it as able to run. */
static pthread_t kept_handle;

static __attribute__((noinline)) void setup_cancellable(void)
{
    struct box *b = box_new();
    struct waiter_args *a = malloc(sizeof *a);
    *a = (struct waiter_args){b, NULL};
    pthread_create(&kept_handle, NULL, waiter, a);
    while (atomic_load(&b->tid) == 0)
        sched_yield();
    await_parked(atomic_load(&b->tid), SYS_FUTEX_NR);
}

static int case_cancellable(void)
{
    setup_cancellable();
    scrub();
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1 && r->ngroups == 1 && r->groups[0].cancellable == 1,
           "status %s, %zu leaked, cancellable %zu", orphans_status_text(r->status), r->leaked,
           r->ngroups ? r->groups[0].cancellable : 0);
    show(r);
    orphans_result_free(r);
    r = find("cancel_wakes=1");
    EXPECT(r->status == ORPHANS_NONE, "cancel_wakes=1: status %s, %zu leaked", orphans_status_text(r->status), r->leaked);
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* The API: verify_none's status, options errors, the report's text. */
static int case_api(void)
{
    EXPECT(orphans_verify_none(NULL) == ORPHANS_NONE, "nothing blocked yet");
    orphans_result *r = orphans_find("no_such_option=1");
    EXPECT(r && r->status == ORPHANS_ERROR && strstr(r->why, "no_such_option"), "why: %s", r ? r->why : "?");
    orphans_result_free(r);
    r = orphans_find("stop_timeout_ms=abc");
    EXPECT(r && r->status == ORPHANS_ERROR && strstr(r->why, "stop_timeout_ms"), "why: %s", r ? r->why : "?");
    orphans_result_free(r);
    setup_global();
    global_box = NULL;
    scrub();
    EXPECT(orphans_verify_none(NULL) == ORPHANS_FOUND, "one orphan: verify_none says found");
    r = find(NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    orphans_result_print(r, f);
    fclose(f);
    EXPECT(text && strstr(text, "1 leaked thread @ waiter") && strstr(text, "SUMMARY: orphans: 1 leaked threads"),
           "report:\n%s", text ? text : "");
    EXPECT(text && strstr(text, "created by start_waiter <- setup_global"), "creation site missing:\n%s",
           text ? text : "");
    free(text);
    orphans_result_free(r);
    EXPECT(strcmp(orphans_status_text(ORPHANS_INCOMPLETE), "incomplete") == 0, "status text");
    return failures != 0;
}

/* A thread that blocks the stop signal: its registers are unknown, so
 * nothing may be reported (incomplete, naming it), even with an orphan. */
static void *blocks_signals(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    atomic_store((_Atomic pid_t *)arg, gettid_raw());
    for (;;)
        pause();
    return NULL;
}

static int case_blocked_signal(void)
{
    setup_global();
    global_box = NULL; /* an orphan that would be reported */
    static _Atomic pid_t tid;
    pthread_t t;
    pthread_create(&t, NULL, blocks_signals, &tid);
    pthread_detach(t);
    while (atomic_load(&tid) == 0)
        sched_yield();
    await_parked(atomic_load(&tid), -1);
    scrub();
    orphans_result *r = find("stop_timeout_ms=300");
    char name[32];
    snprintf(name, sizeof name, "thread %d blocks", (int)atomic_load(&tid));
    EXPECT(r->status == ORPHANS_INCOMPLETE && r->leaked == 0 && strstr(r->why, name),
           "status %s, %zu leaked, why: %s", orphans_status_text(r->status), r->leaked, r->why);
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* The stop signal's disposition reset by the program (to SIG_DFL, as
 * daemons do for every signal) after orphans installed its handler: the
 * next analysis sends nothing (a stop signal would kill the process) and
 * says why. */
static int case_sigdfl(void)
{
    setup_global();
    global_box = NULL;
    scrub();
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1, "first analysis: status %s", orphans_status_text(r->status));
    orphans_result_free(r);
    signal(SIGRTMIN + 9, SIG_DFL);
    r = find(NULL);
    EXPECT(r->status == ORPHANS_INCOMPLETE && r->leaked == 0 && strstr(r->why, "kill the process"),
           "after SIG_DFL: status %s, why: %s", orphans_status_text(r->status), r->why);
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* A thread that blocks the stop signal, asleep in read(): twenty analyses,
 * each incomplete, must queue no signal on it (real-time signals queue, up
 * to RLIMIT_SIGPENDING, counted per user). Woken, it counts the stop
 * signals pending for it. */
static int pending_pipe[2];
static _Atomic pid_t pending_tid;
static _Atomic int pending_count = -1;

static void *blocks_stop_in_read(void *arg)
{
    (void)arg;
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGRTMIN + 9);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    atomic_store(&pending_tid, gettid_raw());
    char c;
    (void)!read(pending_pipe[0], &c, 1);
    int n = 0;
    struct timespec zero = {0, 0};
    while (sigtimedwait(&stop, NULL, &zero) > 0)
        n++;
    atomic_store(&pending_count, n);
    return NULL;
}

static int case_sigpending(void)
{
    if (pipe(pending_pipe) != 0)
        return 99;
    pthread_t t;
    pthread_create(&t, NULL, blocks_stop_in_read, NULL);
    while (atomic_load(&pending_tid) == 0)
        sched_yield();
    await_parked(atomic_load(&pending_tid), 0 /* read */);
    for (int i = 0; i < 20; i++) {
        orphans_result *r = find("stop_timeout_ms=50");
        EXPECT(r->status == ORPHANS_INCOMPLETE, "round %d: status %s", i, orphans_status_text(r->status));
        orphans_result_free(r);
    }
    (void)!write(pending_pipe[1], "x", 1);
    pthread_join(t, NULL);
    EXPECT(atomic_load(&pending_count) == 0, "stop signals left queued on the thread that blocks them: %d",
           atomic_load(&pending_count));
    return failures != 0;
}

/* fork() while an analysis holds orphans' locks (building its result after
 * the world is released): the child must be able to run its own. A thread
 * forks in a loop while the main thread runs analyses; each child runs one
 * analysis under alarm(). */
static atomic_bool fork_stop;
static _Atomic int fork_failed, fork_count;

static void *forker(void *arg)
{
    (void)arg;
    while (!atomic_load(&fork_stop)) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(20); /* a deadlocked child ends by SIGALRM */
            orphans_result *r = orphans_find("settle_tries=0");
            _exit(r && r->status != ORPHANS_ERROR ? 0 : 3);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            atomic_fetch_add(&fork_failed, 1);
        atomic_fetch_add(&fork_count, 1);
    }
    return NULL;
}

static int case_fork(void)
{
    setup_global();
    global_box = NULL;
    pthread_t f;
    pthread_create(&f, NULL, forker, NULL);
    for (int round = 0; round < 40; round++) {
        orphans_result *r = find("settle_tries=0");
        orphans_result_free(r);
    }
    atomic_store(&fork_stop, true);
    pthread_join(f, NULL);
    EXPECT(atomic_load(&fork_failed) == 0, "%d of %d children forked during analyses failed (deadlocked: SIGALRM)",
           atomic_load(&fork_failed), atomic_load(&fork_count));
    fprintf(stderr, "%d forks during 40 analyses\n", atomic_load(&fork_count));
    return failures != 0;
}

/* free_sized and free_aligned_sized (C23, glibc 2.41) are orphans' too: a
 * block freed through them leaves the table (where glibc has them, the real
 * ones are called; here, glibc 2.36, free). */
static int case_free_sized(void)
{
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*fas)(void *, size_t, size_t) = (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    EXPECT(fs && fas, "free_sized %p, free_aligned_sized %p: not defined", (void *)fs, (void *)fas);
    if (!fs || !fas)
        return 1;
    orphans_result *r = find(NULL);
    size_t before = r->heap_blocks;
    orphans_result_free(r);
    void *volatile p = malloc(100), *volatile q = aligned_alloc(64, 128);
    r = find(NULL);
    size_t during = r->heap_blocks;
    orphans_result_free(r);
    fs(p, 100);
    fas(q, 64, 128);
    r = find(NULL);
    size_t after = r->heap_blocks;
    orphans_result_free(r);
    EXPECT(during == before + 2 && after == before, "heap blocks: %zu, %zu with two more, %zu after free_sized and "
           "free_aligned_sized", before, during, after);
    return failures != 0;
}

/* Mappings of kernel objects (anon_inode:): a driver's memory, not the
 * program's; reading it may have effects, so it is no root (the documented
 * limit: a pointer kept only there is not seen), except io_uring's rings,
 * which are plain memory the program writes its requests (and their
 * user_data) into. A box whose only pointer is in a perf_event control page
 * (data_tail, the one word user space writes there) is reported; one whose
 * only pointer is in an io_uring submission entry is not. */
static int case_anon_inode(void)
{
    struct perf_event_attr pe = {.type = PERF_TYPE_SOFTWARE, .size = sizeof pe, .config = PERF_COUNT_SW_DUMMY,
                                 .disabled = 1, .exclude_kernel = 1, .exclude_hv = 1};
    int pfd = (int)syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0);
    struct io_uring_params up = {0};
    int ufd = (int)syscall(SYS_io_uring_setup, 4, &up);
    if (pfd < 0 || ufd < 0) {
        fprintf(stderr, "skip: perf_event_open %d, io_uring_setup %d: %s\n", pfd, ufd, strerror(errno));
        return 77;
    }
    struct perf_event_mmap_page *page = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, pfd, 0);
    struct io_uring_sqe *sqes = mmap(NULL, up.sq_entries * sizeof *sqes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                                     ufd, IORING_OFF_SQES);
    if (page == MAP_FAILED || sqes == MAP_FAILED) {
        fprintf(stderr, "skip: mmap of perf_event / io_uring: %s\n", strerror(errno));
        return 77;
    }
    setup_global();
    page->data_tail = (uint64_t)(uintptr_t)global_box; /* its only pointer: in the perf page */
    global_box = NULL;
    scrub();
    orphans_result *r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1, "a box kept only in a perf_event page: status %s, %zu leaked "
           "(not read: the documented limit says 1)", orphans_status_text(r->status), r->leaked);
    show(r);
    orphans_result_free(r);
    page->data_tail = 0;
    setup_global();
    sqes[0].user_data = (uint64_t)(uintptr_t)global_box; /* its only pointer: an io_uring request's user_data */
    global_box = NULL;
    scrub();
    r = find(NULL);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1, "... and one kept in an io_uring entry: status %s, %zu leaked "
           "(the perf one only)", orphans_status_text(r->status), r->leaked);
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* A mapping whose missing pages a userfaultfd serves (or a FUSE daemon:
 * the same wait), none of them ever touched: reading it would wait for a
 * handler forever, with the world stopped. Two pages, below the size from
 * which orphans used to consult /proc/self/pagemap. alarm() ends a hang. */
static int case_userfaultfd(void)
{
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0)
        uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
    struct uffdio_api api = {.api = UFFD_API};
    if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) != 0) {
        fprintf(stderr, "skip: userfaultfd: %s\n", strerror(errno));
        return 77;
    }
    size_t len = 2 * 4096;
    char *area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct uffdio_register reg = {.range = {(uintptr_t)area, len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (area == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
        fprintf(stderr, "skip: UFFDIO_REGISTER: %s\n", strerror(errno));
        return 77;
    }
    setup_global();
    global_box = NULL;
    scrub();
    alarm(60);
    orphans_result *r = find(NULL);
    alarm(0);
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1, "with a userfaultfd mapping: status %s, %zu leaked",
           orphans_status_text(r->status), r->leaked);
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

/* Threads come and go (created, run, joined) while analyses run: each
 * analysis completes, and finds the one orphan, nothing more. */
static atomic_bool churn_stop;

static void *short_lived(void *arg)
{
    free(malloc(64));
    return arg;
}

static void *churn(void *arg)
{
    (void)arg;
    while (!atomic_load(&churn_stop)) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++)
            pthread_create(&t[i], NULL, short_lived, NULL);
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
    }
    return NULL;
}

/* docs/orphans.md, "Its signal handler": installed with SA_SIGINFO |
 * SA_RESTART and every signal blocked while it runs, and the program's own
 * SIGSEGV and SIGBUS handlers (taken for the analysing thread while the
 * world is stopped) given back, untouched, after each analysis. */
static void program_segv(int sig) { (void)sig; }

static int case_handler(void)
{
    struct sigaction mine = {.sa_handler = program_segv, .sa_flags = SA_NODEFER}, before, seen;
    sigemptyset(&mine.sa_mask);
    sigaddset(&mine.sa_mask, SIGUSR2);
    sigaction(SIGSEGV, &mine, NULL);
    sigaction(SIGBUS, &mine, NULL);
    sigaction(SIGBUS, NULL, &before); /* as the kernel keeps it (glibc adds SA_RESTORER) */
    setup_global();
    global_box = NULL;
    scrub();
    for (int round = 0; round < 2; round++) {
        orphans_result *r = find(NULL);
        EXPECT(r->status == ORPHANS_FOUND, "analysis %d: status %s", round + 1, orphans_status_text(r->status));
        orphans_result_free(r);
        for (int sig = SIGSEGV; sig; sig = sig == SIGSEGV ? SIGBUS : 0) {
            sigaction(sig, NULL, &seen);
            EXPECT(seen.sa_handler == program_segv && seen.sa_flags == before.sa_flags &&
                       sigismember(&seen.sa_mask, SIGUSR2) && !sigismember(&seen.sa_mask, SIGUSR1),
                   "the program's handler of signal %d is not given back as it was", sig);
        }
    }
    struct sigaction stop;
    sigaction(SIGRTMIN + 9, NULL, &stop);
    EXPECT((stop.sa_flags & SA_SIGINFO) && (stop.sa_flags & SA_RESTART), "stop handler flags %#x", stop.sa_flags);
    for (int sig = 1; sig <= SIGRTMAX; sig++) /* 32 and 33 are glibc's own: it never lets them be blocked */
        if (sig != SIGKILL && sig != SIGSTOP && (sig < 32 || sig >= SIGRTMIN))
            EXPECT(sigismember(&stop.sa_mask, sig) == 1, "signal %d is not blocked while the stop handler runs", sig);
    return failures != 0;
}

/* docs/orphans.md: the stop handler "acts only on a signal queued by this
 * process (SI_QUEUE, our pid)". The same signal number sent by anyone else
 * (kill, or sigqueue from another process: si_pid is not ours) must return
 * at once: a worker that takes it goes on to answer on a pipe. Had the
 * handler taken it for a stop, the worker would wait for a release that
 * never comes, and the poll below would time out. */
static int foreign_pipe[2];
static _Atomic pid_t foreign_tid;

static void *foreign_worker(void *arg)
{
    (void)arg;
    atomic_store(&foreign_tid, gettid_raw());
    char c;
    while (read(foreign_pipe[0], &c, 1) == 1 && c == 'x') /* one answer per signal sent */
        (void)!write(foreign_pipe[1], "y", 1);
    return NULL;
}

static int case_foreign_signal(void)
{
    orphans_result *r = find(NULL); /* installs the handler */
    orphans_result_free(r);
    int to_worker[2];
    if (pipe(to_worker) != 0 || pipe(foreign_pipe) != 0) {
        perror("pipe");
        return 99;
    }
    int answers = foreign_pipe[0];
    foreign_pipe[0] = to_worker[0];
    pthread_t t;
    if (pthread_create(&t, NULL, foreign_worker, NULL) != 0)
        return 99;
    while (atomic_load(&foreign_tid) == 0)
        sched_yield();
    pid_t tid = atomic_load(&foreign_tid);
    const char *how[] = {"kill (SI_USER)", "sigqueue from another pid (SI_QUEUE)", "tgkill (SI_TKILL)"};
    for (int i = 0; i < 3; i++) {
        await_parked(tid, SYS_read);
        if (i == 0) {
            kill(getpid(), SIGRTMIN + 9); /* some thread takes it; the worker alone does not block it... */
        } else if (i == 1) {
            siginfo_t info = {.si_signo = SIGRTMIN + 9, .si_code = SI_QUEUE};
            info.si_pid = getppid(); /* not ours */
            info.si_uid = getuid();
            syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, SIGRTMIN + 9, &info);
        } else {
            syscall(SYS_tgkill, getpid(), tid, SIGRTMIN + 9);
        }
        (void)!write(to_worker[1], "x", 1);
        struct pollfd p = {answers, POLLIN, 0};
        char c;
        bool answered = poll(&p, 1, 10000) == 1 && read(answers, &c, 1) == 1;
        EXPECT(answered, "after a stop signal by %s the worker no longer answers: the handler kept it", how[i]);
        if (!answered)
            return 1;
    }
    (void)!write(to_worker[1], "q", 1);
    pthread_join(t, NULL);
    return failures != 0;
}

/* docs/orphans.md, "Memory": what an analysis maps is unmapped when it ends
 * (the thread slots, kept for a late handler, are reused): twenty analyses
 * of the same threads leave the process's mappings as the first left them.
 * The block table is filled first: each of its 1,024 shards takes its first
 * slot array (from 64 KiB slabs, the documented 256 KiB floor) when a block
 * first hashes into it, which the results' own blocks would otherwise do a
 * slab at a time over the rounds (measured: 64 KiB more at the 4th and the
 * 13th analysis without the warm-up). */
static long mapped_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static int case_memory(void)
{
    enum { WARM = 50000 };
    void **warm = malloc(WARM * sizeof *warm);
    for (int i = 0; warm && i < WARM; i++)
        warm[i] = malloc(16 + (size_t)(i % 7) * 16);
    for (int i = 0; warm && i < WARM; i++)
        free(warm[i]);
    free(warm);
    setup_global();
    global_box = NULL;
    scrub();
    enum { ROUNDS = 20 };
    long after[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        orphans_result *r = find(NULL);
        EXPECT(r->status == ORPHANS_FOUND, "analysis %d: status %s", i + 1, orphans_status_text(r->status));
        orphans_result_free(r);
        after[i] = mapped_kib();
    }
    printf("mapped after each analysis (KiB):");
    for (int i = 0; i < ROUNDS; i++)
        printf(" %ld", after[i]);
    printf("\n");
    EXPECT(after[ROUNDS - 1] == after[0], "%d analyses grew the mappings from %ld KiB to %ld KiB", ROUNDS, after[0],
           after[ROUNDS - 1]);
    return failures != 0;
}

static int case_churn(void)
{
    setup_global();
    global_box = NULL;
    pthread_t c[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&c[i], NULL, churn, NULL);
    for (int round = 0; round < 20; round++) {
        orphans_result *r = find("settle_tries=0:explain=1");
        EXPECT(r->status == ORPHANS_FOUND && r->leaked == 1, "round %d: status %s, %zu leaked, why %s", round,
               orphans_status_text(r->status), r->leaked, r->why);
        show(r);
        orphans_result_free(r);
        if (failures)
            break;
    }
    atomic_store(&churn_stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(c[i], NULL);
    return failures != 0;
}

/* 10,000 threads: half blocked on one orphaned box, half on one box a global
 * reaches. One group of 5,000 leaked; the analysis completes. */
static struct box *volatile many_root;

static void *many_waiter(void *arg)
{
    struct box *b = arg;
    pthread_mutex_lock(&b->lock);
    atomic_fetch_add((_Atomic int *)&b->tid, 1);
    while (!b->wake)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static __attribute__((noinline)) int setup_many(int n)
{
    struct box *orphan = box_new();
    many_root = box_new();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        int err = pthread_create(&t, &attr, many_waiter, i % 2 ? many_root : orphan);
        if (err) {
            fprintf(stderr, "skip: pthread_create refused thread %d: %s (raise the thread limits)\n", i, strerror(err));
            return 77;
        }
    }
    pthread_attr_destroy(&attr);
    time_t end = time(NULL) + 300;
    for (struct box *b = orphan;; b = many_root) { /* every waiter counted itself under the lock */
        for (;;) {
            pthread_mutex_lock(&b->lock);
            int in = atomic_load((_Atomic int *)&b->tid);
            pthread_mutex_unlock(&b->lock);
            if (in == n / 2)
                break;
            if (time(NULL) > end)
                return 99;
            sched_yield();
        }
        if (b == many_root)
            break;
    }
    /* Counted under the lock means on the way into the wait: now watch all
     * of them sleep in futex(2). */
    for (;;) {
        int parked = 0;
        DIR *d = opendir("/proc/self/task");
        for (struct dirent *e; d && (e = readdir(d));) {
            char path[300], text[64] = "";
            snprintf(path, sizeof path, "/proc/self/task/%s/syscall", e->d_name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            ssize_t got = read(fd, text, sizeof text - 1);
            close(fd);
            parked += got > 4 && strncmp(text, "202 ", 4) == 0;
        }
        if (d)
            closedir(d);
        if (parked >= n)
            return 0;
        if (time(NULL) > end)
            return 99;
        sched_yield();
    }
}

static int case_many(void)
{
    int st = setup_many(10000);
    if (st)
        return st;
    scrub();
    orphans_result *r = find("settle_tries=5");
    EXPECT(r->status == ORPHANS_FOUND && r->leaked == 5000 && r->ngroups == 1 && r->groups[0].threads == 5000,
           "status %s, %zu leaked in %zu groups (want 5000 in 1), %zu threads", orphans_status_text(r->status), r->leaked,
           r->ngroups, r->threads);
    EXPECT(r->threads == 10001, "%zu threads", r->threads);
    fprintf(stderr, "10,000 threads: stopped in %.1f ms, marked in %.1f ms, %.1f ms in all\n", r->stop_ms, r->mark_ms,
            r->total_ms);
    show(r);
    orphans_result_free(r);
    return failures != 0;
}

static const struct {
    const char *name;
    int (*run)(void);
} cases[] = {
    {"global", case_global},
    {"transitive", case_transitive},
    {"registers", case_registers},
    {"xor", case_xor},
    {"fds", case_fds},
    {"timed", case_timed},
    {"join", case_join},
    {"stack_object", case_stack_object},
    {"cancellable", case_cancellable},
    {"api", case_api},
    {"blocked_signal", case_blocked_signal},
    {"sigdfl", case_sigdfl},
    {"sigpending", case_sigpending},
    {"fork", case_fork},
    {"free_sized", case_free_sized},
    {"anon_inode", case_anon_inode},
    {"userfaultfd", case_userfaultfd},
    {"handler", case_handler},
    {"foreign_signal", case_foreign_signal},
    {"memory", case_memory},
    {"churn", case_churn},
    {"many", case_many},
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: orphans_test CASE\ncases:");
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            fprintf(stderr, " %s", cases[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(argv[1], cases[i].name) == 0) {
            int st = cases[i].run();
            if (st == 0)
                printf("PASS %s\n", argv[1]);
            return st;
        }
    fprintf(stderr, "orphans_test: unknown case '%s'\n", argv[1]);
    return 2;
}
