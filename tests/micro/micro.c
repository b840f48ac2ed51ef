/* micro.c - Go's 14 micro tests of the goroutineleak profile, in C: one
 * variant per test (`micro --variant chan_recv`), each the smallest leak of
 * one concurrency primitive, run under liborphans and libthreadcheck by
 * check_micro.py, which sets each answer beside Go's expectation.
 *
 * The Go originals: golang/go src/runtime/testdata/testgoroutineleakprofile/
 * simple.go, expected by src/runtime/goroutineleakprofile_test.go's
 * `microTests` (each a makeTest: not flaky, GOMAXPROCS=1, run 3 times; every
 * expected leak must be reported, and nothing else). In every test but
 * NoLeakGlobal a goroutine blocks on an object that only it (or another
 * blocked goroutine) can reach; Go's main yields a few times, then writes
 * the profile. SelectNoCasesMain, also in simple.go, is registered there but
 * not among the test's cases, so not here.
 *
 * The C form, test by test the same parties and objects:
 * - a goroutine is a thread whose start routine carries Go's name for its
 *   function literal (NilRecv.func1 is nil_recv_func1), so the frame above
 *   start_thread names it as Go's report does; "panic: should not be
 *   reached" is unreachable() (exit 99);
 * - Go's channels, select and WaitGroup are the zoo's (common/chan.c,
 *   sync.c): a nil channel is an ll_select case whose channel is NULL,
 *   `select {}` is ll_select with no case; sync.Mutex is a default (normal)
 *   pthread mutex, which deadlocks when its owner locks it again;
 *   sync.RWMutex a pthread rwlock; sync.Cond a condition variable and the
 *   mutex it is given;
 * - a local variable of the goroutine (`var mu sync.Mutex`, `var wg
 *   sync.WaitGroup`) is a local of the thread; what Go's code allocates
 *   (make, &sync.Mutex{}, sync.NewCond) or shares between goroutines is
 *   malloc'ed (orphans names the place, and cases.toml asserts it);
 * - instead of Go's yields, main waits until every goroutine that must block
 *   sleeps in its wait (below), then returns; the tools look at exit.
 *
 * Two steps Go does not take (docs/orphans.md, "Go's micro tests, case by
 * case"): glibc answers EDEADLK to a thread that read- or write-locks an
 * rwlock it holds for writing (Go's RWMutex has no owner, so its goroutine
 * blocks), so after that answer the write lock is taken again by a helper
 * thread that ends holding it, and the goroutine's second lock then blocks
 * as Go's does (the events log says `self_deadlock_refused`); and a
 * goroutine that ended is reclaimed in Go, while here main joins the
 * threads that end (MutexHeap.func1).
 *
 * Watching them park without handing main a pointer. A pointer main keeps
 * (in a global, on its stack at exit, in a register) to what a goroutine
 * waits on would make that object reachable, and the thread wakeable, which
 * is exactly what the cases test. So a goroutine posts on a board (a global)
 * its pthread_t and its wait object's address XORed with HIDE (not a value a
 * conservative marker takes for a pointer); main decodes each one only in
 * the frame that waits for it to park, then clears the board before it
 * returns. (Those frames are dead at exit, below main's stack pointer, which
 * orphans does not scan; words the exit path's frames leave unwritten could
 * still hold a decoded address: measured, orphans gave each case's answer
 * in 20 runs of 20, so nothing scrubs them.) A select on nil channels, or
 * on none, waits on a waiter ll_select allocates inside the call, whose
 * address nobody can post: for those main waits until the thread sleeps in
 * a condition-variable wait (FUTEX_WAIT_BITSET; mutexes, malloc's arena
 * locks included, wait with FUTEX_WAIT), which on that path is only the
 * select's own.
 */
#include "leaklab.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum {
    GOROUTINES = 1000,   /* MutexStack and MutexHeap start 1,000 each, as Go's do */
    BOARD_SLOTS = GOROUTINES + 8,
    STACK_BYTES = 64 * 1024,
};
#define HIDE ((uintptr_t)0xa5a5a5a5a5a5a5a5ULL) /* an address XOR HIDE is no address a marker would follow */

/* ---- the board: how main learns where each goroutine will wait ---- */

enum wait_on {
    WAIT_OBJECT, /* a futex wait inside [object, object + size): mutex, rwlock, cond, WaitGroup */
    WAIT_CHAN,   /* in ll_chan_send/recv on the channel, or a select with a case on it */
    WAIT_SELECT, /* a select whose waiter nobody can name: any condition-variable wait */
};

struct post {
    pthread_t thread;
    pid_t tid;
    enum wait_on how;
    uintptr_t hidden; /* the object's address XOR HIDE */
    size_t size;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t posted;
    size_t count;
    struct post posts[BOARD_SLOTS];
} board = {.lock = PTHREAD_MUTEX_INITIALIZER, .posted = PTHREAD_COND_INITIALIZER};

/* Called by a goroutine just before its wait. */
static void post(enum wait_on how, const void *object, size_t size)
{
    pthread_mutex_lock(&board.lock);
    if (board.count < BOARD_SLOTS)
        board.posts[board.count] = (struct post){.thread = pthread_self(), .tid = (pid_t)syscall(SYS_gettid),
                                                 .how = how, .hidden = (uintptr_t)object ^ HIDE, .size = size};
    board.count++;
    pthread_cond_broadcast(&board.posted);
    pthread_mutex_unlock(&board.lock);
}

/* Whether thread `tid` sleeps in a condition-variable wait: futex(2) with
 * FUTEX_WAIT_BITSET, read from /proc/self/task/TID/syscall ("NR ARG0 ARG1
 * ..." while in a system call). An observation polled until it holds; the
 * watchdog bounds the wait. */
static bool in_cond_wait(ll_run *run, pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        ll_refuse(run, "micro: a goroutine ended instead of parking", errno, "the case's forced order is broken");
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char *end;
    if (!got || line[0] < '0' || line[0] > '9' || strtol(line, &end, 10) != SYS_futex)
        return false;
    strtoull(end, &end, 16); /* the futex word */
    unsigned long op = strtoul(end, NULL, 16);
    return (op & FUTEX_CMD_MASK) == FUTEX_WAIT_BITSET;
}

/* Waits until `n` goroutines have posted and each sleeps in its wait, then
 * wipes the board, so that nothing main keeps names what they wait on. */
static void await_parked(ll_run *run, size_t n)
{
    pthread_mutex_lock(&board.lock);
    while (board.count < n)
        pthread_cond_wait(&board.posted, &board.lock);
    if (board.count != n)
        ll_refuse(run, "micro: more goroutines posted than the case starts", EPROTO, "a case posts once per goroutine");
    pthread_mutex_unlock(&board.lock);
    for (size_t i = 0; i < n; i++) {
        struct post *p = &board.posts[i];
        switch (p->how) {
        case WAIT_OBJECT:
            ll_await_parked(run, p->thread, (const void *)(p->hidden ^ HIDE), p->size);
            break;
        case WAIT_CHAN:
            ll_chan_await_parked(run, (ll_chan *)(p->hidden ^ HIDE), p->thread);
            break;
        case WAIT_SELECT:
            while (!in_cond_wait(run, p->tid))
                sched_yield();
            break;
        }
    }
    pthread_mutex_lock(&board.lock);
    memset(board.posts, 0, sizeof board.posts);
    board.count = 0;
    pthread_mutex_unlock(&board.lock);
}

/* Go's panic("should not be reached"): a wait that can never end ended. */
static _Noreturn void unreachable(ll_run *run, const char *where)
{
    ll_refuse(run, where, EPROTO, "a wait that nothing can end returned: should not be reached");
}

static void go(ll_run *run, void *(*fn)(void *), void *arg)
{
    pthread_t thread;
    ll_thread_start(run, &thread, fn, arg);
}

/* ---- NilRecv, NilSend, SelectNoCases: waits on no object at all ---- */

/* go func() { var c chan int; <-c }() */
static void *nil_recv_func1(void *arg)
{
    ll_run *run = arg;
    ll_select_case c = {.chan = NULL, .send = false}; /* var c chan int: nil */
    post(WAIT_SELECT, NULL, 0);
    ll_select(&c, 1, false); /* <-c */
    unreachable(run, "NilRecv.func1");
}

/* go func() { var c chan int; c <- 0 }() */
static void *nil_send_func1(void *arg)
{
    ll_run *run = arg;
    ll_select_case c = {.chan = NULL, .send = true, .item = NULL};
    post(WAIT_SELECT, NULL, 0);
    ll_select(&c, 1, false); /* c <- 0 */
    unreachable(run, "NilSend.func1");
}

/* go func() { select {} }() */
static void *select_no_cases_func1(void *arg)
{
    ll_run *run = arg;
    post(WAIT_SELECT, NULL, 0);
    ll_select(NULL, 0, false); /* select {} */
    unreachable(run, "SelectNoCases.func1");
}

/* ---- ChanRecv, ChanSend, Select: a channel only the goroutine has ---- */

/* go func() { <-make(chan int) }() */
static void *chan_recv_func1(void *arg)
{
    ll_run *run = arg;
    ll_chan *ch = ll_chan_new(run, 0);
    void *item;
    post(WAIT_CHAN, ch, 0);
    ll_chan_recv(ch, &item);
    unreachable(run, "ChanRecv.func1");
}

/* go func() { make(chan int) <- 0 }() */
static void *chan_send_func1(void *arg)
{
    ll_run *run = arg;
    ll_chan *ch = ll_chan_new(run, 0);
    post(WAIT_CHAN, ch, 0);
    ll_chan_send(ch, NULL);
    unreachable(run, "ChanSend.func1");
}

/* go func() { select { case make(chan int) <- 0: case <-make(chan int): } }() */
static void *select_func1(void *arg)
{
    ll_run *run = arg;
    ll_select_case cases[2] = {
        {.chan = ll_chan_new(run, 0), .send = true, .item = NULL},
        {.chan = ll_chan_new(run, 0), .send = false},
    };
    post(WAIT_CHAN, cases[1].chan, 0);
    ll_select(cases, 2, false);
    unreachable(run, "Select.func1");
}

/* ---- WaitGroup, MutexStack: an object on the goroutine's own stack ---- */

/* go func() { var wg sync.WaitGroup; wg.Add(1); wg.Wait() }() */
static void *wait_group_func1(void *arg)
{
    ll_run *run = arg;
    ll_waitgroup wg;
    ll_waitgroup_init(&wg, run);
    ll_waitgroup_add(&wg, 1);
    post(WAIT_OBJECT, &wg, sizeof wg);
    ll_waitgroup_wait(&wg);
    unreachable(run, "WaitGroup.func1");
}

/* go func() { var mu sync.Mutex; mu.Lock(); mu.Lock() }(), 1,000 times */
static void *mutex_stack_func1(void *arg)
{
    ll_run *run = arg;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* normal: a second lock by its owner waits forever */
    pthread_mutex_lock(&mu);
    post(WAIT_OBJECT, &mu, sizeof mu);
    pthread_mutex_lock(&mu);
    unreachable(run, "MutexStack.func1");
}

/* ---- MutexHeap: a mutex on the heap, the goroutine that made it gone ---- */

struct mutex_heap_closure { /* what the inner func literal captures: mu */
    ll_run *run;
    pthread_mutex_t *mu;
};

static void *mutex_heap_func1_1(void *arg)
{
    struct mutex_heap_closure *f = arg;
    pthread_mutex_lock(f->mu);
    post(WAIT_OBJECT, f->mu, sizeof *f->mu);
    pthread_mutex_lock(f->mu);
    unreachable(f->run, "MutexHeap.func1.1");
}

/* go func() { mu := &sync.Mutex{}; go func() { mu.Lock(); mu.Lock() }() }(), 1,000 times */
static void *mutex_heap_func1(void *arg)
{
    ll_run *run = arg;
    struct mutex_heap_closure *f = ll_xmalloc(run, sizeof *f);
    f->run = run;
    f->mu = ll_xmalloc(run, sizeof *f->mu);
    pthread_mutex_init(f->mu, NULL);
    go(run, mutex_heap_func1_1, f);
    return NULL;
}

/* ---- RWMutexRLock, RWMutexLock: an rwlock write-locked for good ---- */

static void *take_write_lock_and_end(void *arg)
{
    pthread_rwlock_wrlock(arg);
    return NULL; /* ends holding it: nobody will ever unlock it */
}

/* mu.Lock(); then mu.RLock() or mu.Lock() again, which blocks in Go. glibc
 * refuses the second with EDEADLK (the caller holds the write lock); then
 * the lock is handed to a helper that ends holding it, and the second lock
 * is asked again: now it blocks, on a lock no thread will release, as Go's. */
static void lock_twice(ll_run *run, pthread_rwlock_t *mu, int (*second)(pthread_rwlock_t *), const char *where)
{
    pthread_rwlock_wrlock(mu);
    post(WAIT_OBJECT, mu, sizeof *mu);
    int err = second(mu);
    if (err == EDEADLK) {
        ll_event(run, "self_deadlock_refused", "\"errno\":\"EDEADLK\",\"then\":\"helper\"");
        pthread_rwlock_unlock(mu);
        pthread_t helper;
        ll_thread_start(run, &helper, take_write_lock_and_end, mu);
        pthread_join(helper, NULL);
        err = second(mu);
    }
    (void)err;
    unreachable(run, where);
}

/* go func() { mu := &sync.RWMutex{}; mu.Lock(); mu.RLock() }() */
static void *rw_mutex_rlock_func1(void *arg)
{
    ll_run *run = arg;
    pthread_rwlock_t *mu = ll_xmalloc(run, sizeof *mu);
    pthread_rwlock_init(mu, NULL);
    lock_twice(run, mu, pthread_rwlock_rdlock, "RWMutexRLock.func1");
    return NULL;
}

/* go func() { mu := &sync.RWMutex{}; mu.Lock(); mu.Lock() }() */
static void *rw_mutex_lock_func1(void *arg)
{
    ll_run *run = arg;
    pthread_rwlock_t *mu = ll_xmalloc(run, sizeof *mu);
    pthread_rwlock_init(mu, NULL);
    lock_twice(run, mu, pthread_rwlock_wrlock, "RWMutexLock.func1");
    return NULL;
}

/* ---- Cond: a condition variable nobody signals ---- */

struct cond { /* sync.NewCond(&sync.Mutex{}): the Cond and the mutex it is given */
    pthread_cond_t c;
    pthread_mutex_t *L;
};

/* go func() { cond := sync.NewCond(&sync.Mutex{}); cond.L.Lock(); cond.Wait() }() */
static void *cond_func1(void *arg)
{
    ll_run *run = arg;
    struct cond *cond = ll_xmalloc(run, sizeof *cond);
    pthread_cond_init(&cond->c, NULL);
    cond->L = ll_xmalloc(run, sizeof *cond->L);
    pthread_mutex_init(cond->L, NULL);
    pthread_mutex_lock(cond->L);
    post(WAIT_OBJECT, &cond->c, sizeof cond->c);
    pthread_cond_wait(&cond->c, cond->L);
    unreachable(run, "Cond.func1");
}

/* ---- Mixed: two goroutines waiting on each other ---- */

struct mixed_closure { /* ch and wg, captured by the inner func literal */
    ll_run *run;
    ll_chan *ch;
    ll_waitgroup wg;
};

/* go func() { ch <- 0; wg.Done() }(): the send has no receiver yet, and
 * the receiver waits for the Done that follows it. */
static void *mixed_func1_1(void *arg)
{
    struct mixed_closure *f = arg;
    post(WAIT_CHAN, f->ch, 0);
    ll_chan_send(f->ch, NULL);
    ll_waitgroup_done(&f->wg);
    unreachable(f->run, "Mixed.func1.1");
}

static void *mixed_func1(void *arg)
{
    ll_run *run = arg;
    struct mixed_closure *f = ll_xmalloc(run, sizeof *f);
    f->run = run;
    f->ch = ll_chan_new(run, 0);          /* ch := make(chan int) */
    ll_waitgroup_init(&f->wg, run);       /* wg := sync.WaitGroup{} */
    ll_waitgroup_add(&f->wg, 1);
    go(run, mixed_func1_1, f);
    post(WAIT_OBJECT, &f->wg, sizeof f->wg);
    ll_waitgroup_wait(&f->wg);
    void *item;
    ll_chan_recv(f->ch, &item);
    unreachable(run, "Mixed.func1");
}

/* ---- NoLeakGlobal: a channel a global keeps ---- */

static ll_chan *global_ch; /* var ch = make(chan int) */

/* go func() { <-ch }() */
static void *no_leak_global_func1(void *arg)
{
    ll_run *run = arg;
    void *item;
    post(WAIT_CHAN, global_ch, 0);
    ll_chan_recv(global_ch, &item);
    unreachable(run, "NoLeakGlobal.func1");
}

/* ---- the tests' bodies: start, wait until parked, return ---- */

static void run_one(ll_run *run, void *(*fn)(void *))
{
    go(run, fn, run);
    await_parked(run, 1);
}

static void nil_recv(ll_run *run) { run_one(run, nil_recv_func1); }
static void nil_send(ll_run *run) { run_one(run, nil_send_func1); }
static void select_no_cases(ll_run *run) { run_one(run, select_no_cases_func1); }
static void chan_recv(ll_run *run) { run_one(run, chan_recv_func1); }
static void chan_send(ll_run *run) { run_one(run, chan_send_func1); }
static void select_(ll_run *run) { run_one(run, select_func1); }
static void wait_group(ll_run *run) { run_one(run, wait_group_func1); }
static void rw_mutex_rlock(ll_run *run) { run_one(run, rw_mutex_rlock_func1); }
static void rw_mutex_lock(ll_run *run) { run_one(run, rw_mutex_lock_func1); }
static void cond(ll_run *run) { run_one(run, cond_func1); }

static void mutex_stack(ll_run *run)
{
    for (int i = 0; i < GOROUTINES; i++)
        go(run, mutex_stack_func1, run);
    await_parked(run, GOROUTINES);
}

static void mutex_heap(ll_run *run)
{
    static pthread_t outer[GOROUTINES]; /* joined below, then nothing refers to them */
    for (int i = 0; i < GOROUTINES; i++)
        ll_thread_start(run, &outer[i], mutex_heap_func1, run);
    for (int i = 0; i < GOROUTINES; i++)
        pthread_join(outer[i], NULL); /* func1 returned: Go reclaims it, C joins it */
    memset(outer, 0, sizeof outer);
    await_parked(run, GOROUTINES);
}

static void mixed(ll_run *run)
{
    go(run, mixed_func1, run);
    await_parked(run, 2); /* func1 in wg.Wait, func1.1 in ch <- 0 */
}

static void no_leak_global(ll_run *run)
{
    global_ch = ll_chan_new(run, 0);
    run_one(run, no_leak_global_func1);
}

static const ll_variant variants[] = {
    {"nil_recv", "NilRecv: a receive from a nil channel", nil_recv},
    {"nil_send", "NilSend: a send on a nil channel", nil_send},
    {"select_no_cases", "SelectNoCases: select {}", select_no_cases},
    {"chan_recv", "ChanRecv: a receive from a channel only the receiver has", chan_recv},
    {"chan_send", "ChanSend: a send on a channel only the sender has", chan_send},
    {"select", "Select: a select over two channels only it has", select_},
    {"wait_group", "WaitGroup: Wait on the goroutine's own WaitGroup after Add(1)", wait_group},
    {"mutex_stack", "MutexStack: 1,000 goroutines lock their own stack mutex twice", mutex_stack},
    {"mutex_heap", "MutexHeap: 1,000 goroutines lock twice a heap mutex whose maker ended", mutex_heap},
    {"rw_mutex_rlock", "RWMutexRLock: RLock after Lock on the goroutine's own RWMutex", rw_mutex_rlock},
    {"rw_mutex_lock", "RWMutexLock: Lock after Lock on the goroutine's own RWMutex", rw_mutex_lock},
    {"cond", "Cond: Wait on a Cond nobody else has", cond},
    {"mixed", "Mixed: a WaitGroup waiter and a sender that wait on each other", mixed},
    {"no_leak_global", "NoLeakGlobal: a receive from a channel a global keeps (no leak)", no_leak_global},
    {0},
};

static const ll_option options[] = {{0}};

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    (void)run;
    return ll_payload_of(out, 1, 0, "(none)", why, why_len); /* the cases hold no payload */
}

static const ll_scenario scenario = {
    .name = "micro",
    .summary = "Go's 14 micro tests of the goroutineleak profile (runtime/testdata/testgoroutineleakprofile/\n"
               "simple.go), one variant each; tests/micro/check_micro.py compares orphans and threadcheck with Go.",
    .variants = variants,
    .options = options,
    .payload = payload,
    .thread_stack_bytes = STACK_BYTES,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
