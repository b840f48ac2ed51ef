/* moby30408 - GoKer moby#30408 (condition variable): waitActive() waits on
 * a condition variable for an activation that failed; nobody signals it.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby30408.go; the fix: moby/moby pull 30408):
 *
 *     func (p *Plugin) waitActive() error {
 *         p.activateWait.L.Lock()
 *         for !p.activated() {              // activated: p.Manifest != nil
 *             p.activateWait.Wait()          // no Signal or Broadcast, ever
 *         }
 *         p.activateWait.L.Unlock()
 *         return p.activateErr
 *     }
 *     func testActive(p *Plugin) {
 *         done := make(chan struct{})
 *         go func() { p.waitActive(); close(done) }()   // G2
 *         <-done                                        // G1
 *     }
 *     go func() { p := &Plugin{activateWait: sync.NewCond(&sync.Mutex{})}
 *                 p.activateErr = errors.New("some junk happened")
 *                 testActive(p) }()                     // G1
 *
 * The plugin's activation failed (activateErr is set, Manifest stays nil),
 * so G2 waits for an activation that will never happen, and G1 for G2. Go's
 * goroutineleak profile reports Moby30408.func2 [chan receive] and
 * testActive.func1 [sync.Cond.Wait]; not flaky in Go (no order needed).
 *
 * The C form: sync.Cond and its Mutex are a pthread_cond_t and mutex inside
 * the malloc'ed plugin, done an ll_chan; G1 runs test_active(), G2
 * wait_active(). The plugin holds its state (PLUGIN_BYTES, the payload).
 * No order needs forcing: every interleaving leaks. Each instance waits
 * until G2 sleeps on the condition variable and G1 on done, then forgets
 * the plugin: only the two blocked threads reach it (orphaned).
 *
 * What the tools see: see expected/zoo/moby30408.toml (measured).
 *
 * The fix (the pull request's): waitActive also stops waiting once the
 * activation has failed: for !p.activated() && p.activateErr == nil.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { PLUGIN_BYTES = 64 * 1024 }; /* the plugin's state: the payload of one instance */

static const char ACTIVATE_ERR[] = "some junk happened";

struct plugin {
    pthread_mutex_t mu;             /* Go: the Cond's L, &sync.Mutex{} */
    pthread_cond_t activate_wait;   /* Go: activateWait */
    const char *activate_err;       /* Go: activateErr */
    void *manifest;                 /* Go: Manifest; NULL: not activated */
    unsigned char *state;
    bool fixed;
    ll_chan *done;                  /* testActive's done */
    ll_chan *started;               /* forced order: closed once G1 has started G2 */
    pthread_t g1, g2;
    ll_run *run;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct plugin *new_plugin(ll_run *run, bool fixed)
{
    struct plugin *p = ll_xmalloc(run, sizeof *p);
    *p = (struct plugin){.state = ll_xmalloc(run, PLUGIN_BYTES), .fixed = fixed, .done = ll_chan_new(run, 0),
                         .started = ll_chan_new(run, 0), .run = run};
    memset(p->state, 0x5a, PLUGIN_BYTES);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->activate_wait, NULL);
    p->activate_err = ACTIVATE_ERR; /* p.activateErr = errors.New("some junk happened") */
    return p;
}

static void free_plugin(struct plugin *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->activate_wait);
    ll_chan_free(p->done);
    ll_chan_free(p->started);
    free(p->state);
    free(p);
}

static bool activated(const struct plugin *p) { return p->manifest != NULL; }

/* G2's wait, leaky: only an activation ends it, and none comes. */
static LL_WAIT_SITE const char *wait_active(struct plugin *p)
{
    pthread_mutex_lock(&p->mu);
    while (!activated(p))
        pthread_cond_wait(&p->activate_wait, &p->mu); /* nobody signals */
    pthread_mutex_unlock(&p->mu);
    return p->activate_err;
}

/* G2's wait, fixed: a failed activation ends it too. */
static LL_WAIT_SITE const char *wait_active_fixed(struct plugin *p)
{
    pthread_mutex_lock(&p->mu);
    while (!activated(p) && LL_FIX_VALUE(p->activate_err == NULL, true)) /* FIX: && p.activateErr == nil */
        pthread_cond_wait(&p->activate_wait, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return p->activate_err;
}

static void *wait_active_then_close(void *arg) /* G2: go func() { p.waitActive(); close(done) }() */
{
    struct plugin *p = arg;
    if (p->fixed)
        wait_active_fixed(p);
    else
        wait_active(p);
    ll_chan_close(p->done);
    return NULL;
}

/* G1: testActive(p). Returns whether done was closed (it always is, once
 * G2 returns); computed after the receive, so the frame stays on the stack. */
static LL_WAIT_SITE bool test_active(struct plugin *p)
{
    ll_thread_start(p->run, &p->g2, wait_active_then_close, p);
    ll_chan_close(p->started); /* forced order: main may now watch G2 */
    void *unused;
    return !ll_chan_recv(p->done, &unused); /* leaky: <-done, never closed */
}

static void *test_active_thread(void *p) { test_active(p); return NULL; } /* G1: go func() { ... testActive(p) }() */

static struct plugin *start(ll_run *run, bool fixed)
{
    struct plugin *p = new_plugin(run, fixed);
    ll_thread_start(run, &p->g1, test_active_thread, p);
    void *unused;
    ll_chan_recv(p->started, &unused); /* G1 has started G2: p->g2 is set */
    return p;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct plugin *p = start(run, false);
    /* The leak is complete once G2 sleeps on the condition variable and G1
     * on done; then main forgets the plugin. */
    ll_await_parked(run, p->g2, &p->activate_wait, sizeof p->activate_wait);
    ll_chan_await_parked(run, p->done, p->g1);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct plugin *p = start(run, true);
    LL_FIX(pthread_join(p->g1, NULL)); /* FIX: G2 returned the error and closed done, so both end: join them */
    LL_FIX(pthread_join(p->g2, NULL));
    LL_FIX(free_plugin(p));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby30408",
    .summary = "GoKer moby#30408 (condition variable): waitActive() waits for a plugin activation\n"
               "that failed; no Signal or Broadcast comes, and testActive waits for it forever.",
    .leaky_summary = "the wait loop ignores the activation error: both threads wait forever, holding the plugin",
    .fixed_summary = "the loop also ends on an activation error: both threads return, joined, the plugin freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = PLUGIN_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
