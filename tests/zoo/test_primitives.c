/* test_primitives.c - the zoo's Go-like primitives (common/chan.c, sync.c):
 * rendezvous channels, select, deadlines, WaitGroup, context, the helpers
 * that watch a thread park, and the count of threads never joined
 * (common/unjoined.c). Each test says what Go does and checks
 * that the C form does the same; the violating cases (a thread that ends
 * instead of parking, a negative WaitGroup) must end the process with 99.
 *
 * Runs as a harness program (ll_main gives it an ll_run, the watchdog and
 * the exit codes): test_primitives [--events /dev/null] [--timeout S].
 * Exit 0 when every test passes, 1 on the first failure (file:line and
 * what was expected on stderr). No test waits on time except the deadline
 * tests, which check that a timed wait ends at (not before) its deadline. */
#include "leaklab.h"
#include "chan_internal.h" /* ll_chan_is_parked_wait: which waits count as parked */
#include "park.h" /* ll_park_tid: the clock-id decoding is checked against gettid */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static ll_run *the_run;
static int passed;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
            _exit(LL_EXIT_FAILED);                                                       \
        }                                                                                \
    } while (0)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- threads that do one thing ---- */

struct op {
    ll_chan *ch;
    void *item;
    bool ok;
    ll_select_case cases[2];
    size_t ncases;
    int fired;
    pthread_mutex_t *mutex;
    ll_waitgroup *wg;
    int fd;
    atomic_int tid;
};

static void *do_send(void *arg) { struct op *o = arg; o->ok = ll_chan_send(o->ch, o->item); return NULL; }
static void *do_recv(void *arg) { struct op *o = arg; o->ok = ll_chan_recv(o->ch, &o->item); return NULL; }
static void *do_select(void *arg) { struct op *o = arg; o->fired = ll_select(o->cases, o->ncases, false); return NULL; }
static void *do_lock(void *arg)
{
    struct op *o = arg;
    atomic_store(&o->tid, (int)syscall(SYS_gettid));
    pthread_mutex_lock(o->mutex);
    pthread_mutex_unlock(o->mutex);
    return NULL;
}
static void *do_wait(void *arg) { struct op *o = arg; ll_waitgroup_wait(o->wg); return NULL; }
static void *do_read(void *arg)
{
    struct op *o = arg;
    char c;
    o->ok = read(o->fd, &c, 1) == 1;
    return NULL;
}
static void *do_nothing(void *arg) { (void)arg; return NULL; }

static pthread_t start(void *(*fn)(void *), struct op *o)
{
    pthread_t t;
    ll_thread_start(the_run, &t, fn, o);
    return t;
}

/* ---- rendezvous channels ---- */

static void test_rendezvous_send_waits_for_a_receiver(void)
{
    /* Go: an unbuffered send blocks until a receiver takes the value. */
    ll_chan *ch = ll_chan_new(the_run, 0);
    struct op s = {.ch = ch, .item = &s};
    pthread_t t = start(do_send, &s);
    ll_chan_await_parked(the_run, ch, t); /* parked with no receiver */
    void *got = NULL;
    CHECK(ll_chan_recv(ch, &got) && got == &s);
    pthread_join(t, NULL);
    CHECK(s.ok);
    ll_chan_free(ch);
    passed++;
}

static void test_close_withdraws_an_offer(void)
{
    /* A sender still waiting when the channel closes sent nothing (Go panics). */
    ll_chan *ch = ll_chan_new(the_run, 0);
    struct op s = {.ch = ch, .item = &s, .ok = true};
    pthread_t t = start(do_send, &s);
    ll_chan_await_parked(the_run, ch, t);
    ll_chan_close(ch);
    pthread_join(t, NULL);
    CHECK(!s.ok);
    void *got = &got;
    CHECK(!ll_chan_recv(ch, &got));
    CHECK(!ll_chan_send(ch, NULL));
    ll_chan_free(ch);
    passed++;
}

static void test_buffered_blocks_only_when_full(void)
{
    ll_chan *ch = ll_chan_new(the_run, 2);
    int a, b, c;
    CHECK(ll_chan_send(ch, &a) && ll_chan_send(ch, &b));
    struct op s = {.ch = ch, .item = &c};
    pthread_t t = start(do_send, &s);
    ll_chan_await_parked(the_run, ch, t); /* the third send waits for room */
    void *got;
    CHECK(ll_chan_recv(ch, &got) && got == &a);
    pthread_join(t, NULL);
    CHECK(s.ok);
    ll_chan_close(ch); /* a closed buffered channel still drains */
    CHECK(ll_chan_recv(ch, &got) && got == &b);
    CHECK(ll_chan_recv(ch, &got) && got == &c);
    CHECK(!ll_chan_recv(ch, &got));
    ll_chan_free(ch);
    passed++;
}

/* ---- select ---- */

static void test_select_default_first_ready_and_nil(void)
{
    ll_chan *x = ll_chan_new(the_run, 1), *y = ll_chan_new(the_run, 1);
    ll_select_case cases[] = {{.chan = NULL}, {.chan = x}, {.chan = y}};
    CHECK(ll_select(cases, 3, true) == LL_SELECT_DEFAULT); /* nothing ready */
    int a, b;
    ll_chan_send(y, &b);
    ll_chan_send(x, &a);
    CHECK(ll_select(cases, 3, true) == 1 && cases[1].ok && cases[1].item == &a); /* the first ready, not random */
    CHECK(ll_select(cases, 3, false) == 2 && cases[2].item == &b);
    ll_select_case send[] = {{.chan = x, .send = true, .item = &a}};
    ll_chan_close(x);
    CHECK(ll_select(send, 1, false) == 0 && !send[0].ok); /* a send on a closed channel fires, ok false */
    CHECK(ll_select(cases, 3, false) == 1 && !cases[1].ok && cases[1].item == NULL);
    ll_chan_free(x);
    ll_chan_free(y);
    passed++;
}

static void test_two_selects_meet(void)
{
    /* A select sending on an unbuffered channel meets a select receiving on it. */
    ll_chan *x = ll_chan_new(the_run, 0), *never = ll_chan_new(the_run, 0);
    struct op s = {.cases = {{.chan = never}, {.chan = x, .send = true}}, .ncases = 2};
    s.cases[1].item = &s;
    pthread_t t = start(do_select, &s);
    ll_chan_await_parked(the_run, x, t);
    ll_select_case recv[] = {{.chan = never}, {.chan = x}};
    CHECK(ll_select(recv, 2, false) == 1 && recv[1].ok && recv[1].item == &s);
    pthread_join(t, NULL);
    CHECK(s.fired == 1 && s.cases[1].ok);
    ll_chan_free(x);
    ll_chan_free(never);
    passed++;
}

static void test_untaken_offer_is_withdrawn(void)
{
    /* A select that fires another case leaves nothing behind on the channel it offered to. */
    ll_chan *x = ll_chan_new(the_run, 0), *y = ll_chan_new(the_run, 1);
    struct op s = {.cases = {{.chan = x, .send = true}, {.chan = y}}, .ncases = 2};
    pthread_t t = start(do_select, &s);
    ll_chan_await_parked(the_run, y, t);
    int v;
    ll_chan_send(y, &v);
    pthread_join(t, NULL);
    CHECK(s.fired == 1 && s.cases[1].item == &v);
    ll_select_case recv[] = {{.chan = x}};
    CHECK(ll_select(recv, 1, true) == LL_SELECT_DEFAULT); /* no stale offer on x */
    ll_chan_free(x);
    ll_chan_free(y);
    passed++;
}

static void test_select_send_to_a_waiting_receiver(void)
{
    /* Go: with a receiver waiting, a select's send case is ready (not default). */
    ll_chan *x = ll_chan_new(the_run, 0);
    struct op r = {.ch = x};
    pthread_t t = start(do_recv, &r);
    ll_chan_await_parked(the_run, x, t);
    int v;
    ll_select_case send[] = {{.chan = x, .send = true, .item = &v}};
    CHECK(ll_select(send, 1, true) == 0 && send[0].ok);
    pthread_join(t, NULL);
    CHECK(r.ok && r.item == &v);
    ll_chan_free(x);
    passed++;
}

/* Many senders and receivers, plain and select, on two unbuffered channels:
 * every item arrives exactly once. */
enum { STRESS_SENDERS = 4, STRESS_ITEMS = 2000, STRESS_RECEIVERS = 3 };
static ll_chan *stress_x, *stress_y;
static atomic_llong stress_sum, stress_count;

static void *stress_sender(void *arg)
{
    long long base = (long long)(intptr_t)arg * STRESS_ITEMS;
    for (long long i = 1; i <= STRESS_ITEMS; i++) {
        void *item = (void *)(intptr_t)(base + i);
        if (i % 3 == 0) {
            CHECK(ll_chan_send(stress_x, item));
        } else {
            ll_select_case c[] = {{.chan = stress_x, .send = true, .item = item},
                                  {.chan = stress_y, .send = true, .item = item}};
            CHECK(ll_select(c, 2, false) >= 0);
        }
    }
    return NULL;
}

static void *stress_receiver(void *arg)
{
    bool plain = arg != NULL;
    ll_chan *x = stress_x, *y = plain ? NULL : stress_y;
    for (;;) {
        void *item;
        if (plain) {
            if (!ll_chan_recv(x, &item))
                return NULL;
        } else {
            if (!x && !y)
                return NULL;
            ll_select_case c[] = {{.chan = x}, {.chan = y}};
            int fired = ll_select(c, 2, false);
            if (!c[fired].ok) {
                if (fired == 0)
                    x = NULL;
                else
                    y = NULL;
                continue;
            }
            item = c[fired].item;
        }
        atomic_fetch_add(&stress_sum, (long long)(intptr_t)item);
        atomic_fetch_add(&stress_count, 1);
    }
}

static void test_stress_no_item_lost_or_doubled(void)
{
    stress_x = ll_chan_new(the_run, 0);
    stress_y = ll_chan_new(the_run, 0);
    pthread_t s[STRESS_SENDERS], r[STRESS_RECEIVERS];
    for (int i = 0; i < STRESS_RECEIVERS; i++)
        ll_thread_start(the_run, &r[i], stress_receiver, i == 0 ? (void *)1 : NULL);
    for (int i = 0; i < STRESS_SENDERS; i++)
        ll_thread_start(the_run, &s[i], stress_sender, (void *)(intptr_t)i);
    for (int i = 0; i < STRESS_SENDERS; i++)
        pthread_join(s[i], NULL);
    ll_chan_close(stress_x);
    ll_chan_close(stress_y);
    for (int i = 0; i < STRESS_RECEIVERS; i++)
        pthread_join(r[i], NULL);
    long long n = (long long)STRESS_SENDERS * STRESS_ITEMS;
    CHECK(atomic_load(&stress_count) == n);
    CHECK(atomic_load(&stress_sum) == n * (n + 1) / 2);
    ll_chan_free(stress_x);
    ll_chan_free(stress_y);
    passed++;
}

/* ---- deadlines and contexts ---- */

static void test_deadline_closes_the_channel(void)
{
    /* Go: <-time.After(d). The wait is a timed wait: it ends at the deadline, not before. */
    ll_chan *after = ll_chan_new(the_run, 0), *never = ll_chan_new(the_run, 0);
    double t0 = now_s();
    ll_chan_close_after(after, 50);
    ll_select_case c[] = {{.chan = never}, {.chan = after}};
    CHECK(ll_select(c, 2, false) == 1 && !c[1].ok);
    CHECK(now_s() - t0 >= 0.050);
    void *got;
    CHECK(!ll_chan_recv(after, &got)); /* and stays closed */
    ll_chan_free(after);
    ll_chan_free(never);
    passed++;
}

static void test_context(void)
{
    ll_context *ctx = ll_context_with_cancel(the_run);
    CHECK(ll_context_err(ctx) == LL_CONTEXT_OK);
    ll_select_case c[] = {{.chan = ll_context_done(ctx)}};
    CHECK(ll_select(c, 1, true) == LL_SELECT_DEFAULT);
    struct op r = {.ch = ll_context_done(ctx), .ok = true};
    pthread_t t = start(do_recv, &r);
    ll_chan_await_parked(the_run, r.ch, t);
    ll_context_cancel(ctx);
    ll_context_cancel(ctx); /* idempotent */
    pthread_join(t, NULL);
    CHECK(!r.ok && ll_context_err(ctx) == LL_CONTEXT_CANCELED);
    ll_context_free(ctx);

    double t0 = now_s();
    ctx = ll_context_with_timeout(the_run, 30);
    void *got;
    CHECK(!ll_chan_recv(ll_context_done(ctx), &got));
    CHECK(now_s() - t0 >= 0.030 && ll_context_err(ctx) == LL_CONTEXT_DEADLINE_EXCEEDED);
    ll_context_free(ctx);
    passed++;
}

/* ---- WaitGroup, and watching threads park ---- */

static void test_waitgroup(void)
{
    ll_waitgroup *wg = ll_xmalloc(the_run, sizeof *wg);
    ll_waitgroup_init(wg, the_run);
    ll_waitgroup_add(wg, 2);
    struct op w = {.wg = wg};
    pthread_t t = start(do_wait, &w);
    ll_await_parked(the_run, t, wg, sizeof *wg);
    ll_waitgroup_done(wg);
    ll_await_parked(the_run, t, wg, sizeof *wg); /* still waiting: one Done is not enough */
    ll_waitgroup_done(wg);
    pthread_join(t, NULL);
    ll_waitgroup_wait(wg); /* zero: returns at once */
    ll_waitgroup_destroy(wg);
    free(wg);
    passed++;
}

static void test_await_parked_on_a_mutex_names_the_right_thread(void)
{
    pthread_mutex_t *m = ll_xmalloc(the_run, sizeof *m);
    pthread_mutex_init(m, NULL);
    pthread_mutex_lock(m);
    struct op o = {.mutex = m};
    pthread_t t = start(do_lock, &o);
    ll_await_parked(the_run, t, m, sizeof *m);
    CHECK(ll_park_tid(the_run, t) == (pid_t)atomic_load(&o.tid)); /* the thread parked is the one named */
    pthread_mutex_unlock(m);
    pthread_join(t, NULL);
    pthread_mutex_destroy(m);
    free(m);
    passed++;
}

/* A thread contending for a channel's lock (or a select waiter's) is about
 * to run, not parked: only the channel's condition variables and a select's
 * `wake` count. (ll_chan_await_parked once took any futex wait inside the
 * channel, its lock included, which the watcher itself takes while it
 * looks: a thread queued behind the watcher counted as parked.) */
static void test_a_lock_wait_is_not_parked(void)
{
    ll_chan *ch = ll_chan_new(the_run, 0);
    struct select_waiter w;
    uintptr_t waiter = (uintptr_t)&w;
    CHECK(!ll_chan_is_parked_wait(ch, 0, (uintptr_t)&ch->lock));
    CHECK(!ll_chan_is_parked_wait(ch, waiter, (uintptr_t)&w.lock));
    CHECK(!ll_chan_is_parked_wait(ch, 0, (uintptr_t)&ch->receivers_changed)); /* a watcher's wait */
    CHECK(ll_chan_is_parked_wait(ch, 0, (uintptr_t)&ch->not_empty));      /* a receiver */
    CHECK(ll_chan_is_parked_wait(ch, 0, (uintptr_t)&ch->not_full + 4));   /* a sender on a full ring */
    CHECK(ll_chan_is_parked_wait(ch, 0, (uintptr_t)&ch->taken));          /* a sender on a rendezvous */
    CHECK(ll_chan_is_parked_wait(ch, waiter, (uintptr_t)&w.wake));        /* a select */
    CHECK(!ll_chan_is_parked_wait(ch, 0, (uintptr_t)&w.wake));            /* another thread's select */
    ll_chan_free(ch);
    passed++;
}

/* Go's RWMutex makes a new reader wait behind a waiting writer; the kernels
 * that port its bugs check glibc does the same for the writer-preferring
 * kind, and glibc's default kind must fail that check. */
static void test_rwlock_preference_check(void)
{
    CHECK(ll_rwlock_kind_prefers_writers(the_run, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP));
    CHECK(!ll_rwlock_kind_prefers_writers(the_run, PTHREAD_RWLOCK_PREFER_READER_NP));
    passed++;
}

static void test_await_reading_a_pipe(void)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    struct op o = {.fd = fds[0]};
    pthread_t t = start(do_read, &o);
    ll_await_reading(the_run, t, fds[0]);
    CHECK(write(fds[1], "x", 1) == 1);
    pthread_join(t, NULL);
    CHECK(o.ok);
    close(fds[0]);
    close(fds[1]);
    passed++;
}

/* A thread that returned and was never joined: gone from /proc, still on
 * glibc's list until it is joined; a thread still running, or joined, is
 * not counted. */
static void test_unjoined_threads_are_counted(void)
{
    long long before = ll_unjoined_threads();
    CHECK(before == 0); /* every test before this one joined its threads */
    pthread_mutex_t *m = ll_xmalloc(the_run, sizeof *m);
    pthread_mutex_init(m, NULL);
    pthread_mutex_lock(m);
    struct op o = {.mutex = m};
    pthread_t t = start(do_lock, &o);
    ll_await_parked(the_run, t, m, sizeof *m);
    CHECK(ll_unjoined_threads() == 0); /* alive: not counted */
    pid_t tid = (pid_t)atomic_load(&o.tid);
    pthread_mutex_unlock(m);
    ll_await_finished(the_run, t);
    long nr;
    uintptr_t arg0;
    CHECK(!ll_park_observe(tid, &nr, &arg0)); /* its task is gone */
    CHECK(ll_unjoined_threads() == 1);         /* but glibc keeps it for a join */
    ll_await_finished(the_run, t);             /* already ended: returns at once */
    pthread_join(t, NULL);
    CHECK(ll_unjoined_threads() == 0);
    pthread_mutex_destroy(m);
    free(m);
    passed++;
}

/* Runs `fn` in a child process; returns its exit status (the violations
 * end the process, so they run where that is all they end). */
static int in_child(void (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2); /* the child's remedy text is not this test's output */
        fn();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void await_a_thread_that_ends(void)
{
    int word = 0;
    pthread_t t;
    ll_thread_start(the_run, &t, do_nothing, NULL);
    ll_await_parked(the_run, t, &word, sizeof word); /* it returns instead: exit 99 */
}

static void negative_waitgroup(void)
{
    ll_waitgroup wg;
    ll_waitgroup_init(&wg, the_run);
    ll_waitgroup_done(&wg); /* Go panics: "sync: negative WaitGroup counter" */
}

static void test_violations_exit_99(void)
{
    CHECK(in_child(await_a_thread_that_ends) == LL_EXIT_SYSTEM);
    CHECK(in_child(negative_waitgroup) == LL_EXIT_SYSTEM);
    passed++;
}

static void run_all(ll_run *run)
{
    the_run = run;
    test_violations_exit_99(); /* first: fork while this process has one thread */
    test_rendezvous_send_waits_for_a_receiver();
    test_close_withdraws_an_offer();
    test_buffered_blocks_only_when_full();
    test_select_default_first_ready_and_nil();
    test_two_selects_meet();
    test_untaken_offer_is_withdrawn();
    test_select_send_to_a_waiting_receiver();
    test_stress_no_item_lost_or_doubled();
    test_deadline_closes_the_channel();
    test_context();
    test_waitgroup();
    test_await_parked_on_a_mutex_names_the_right_thread();
    test_a_lock_wait_is_not_parked();
    test_rwlock_preference_check();
    test_await_reading_a_pipe();
    test_unjoined_threads_are_counted();
    fprintf(stderr, "test_primitives: %d tests passed\n", passed);
}

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    (void)run;
    return ll_payload_of(out, 1, 0, "", why, why_len);
}

static const ll_variant variants[] = {{"all", "every test", run_all}, {0}};
static const ll_option options[] = {{0}};
static const ll_scenario scenario = {
    .name = "test_primitives",
    .summary = "Tests of the zoo's Go-like primitives.",
    .variants = variants,
    .options = options,
    .payload = payload,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
