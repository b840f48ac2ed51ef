/* istio17860 - GoKer istio#17860 (channel): the agent's run loop returns
 * once no epoch is active; a restart that comes after that starts an epoch
 * whose exit status is sent on a channel nobody reads any more.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/istio17860.go; istio/istio pull 17860, which fixed issue 17853,
 * "pilot-agent hot restarts end up in a bad state"):
 *
 *     func (a *agent) Run(ctx) {                       // the run loop
 *         for { select {
 *               case status := <-a.statusCh:
 *                   a.mu.Lock(); delete(a.activeEpochs, int(status)); active := len(a.activeEpochs); a.mu.Unlock()
 *                   if active == 0 { return }
 *               case <-ctx.Done(): return } } }
 *     func (a *agent) Restart() {
 *         a.mu.Lock(); defer a.mu.Unlock()
 *         a.waitUntilLive()                            // returns at once when no epoch is active
 *         a.currentEpoch++; a.activeEpochs[a.currentEpoch] = struct{}{}
 *         go a.runWait(a.currentEpoch) }
 *     func (a *agent) runWait(epoch int) { a.statusCh <- exitStatus(epoch) }   // waits here
 *     go func() {
 *         ctx, cancel := context.WithCancel(...); defer cancel()
 *         go func() { a.Run(ctx) }()
 *         a.Restart(); go a.Restart()
 *         time.Sleep(200 * time.Nanosecond) }()
 *
 * In the bad order epoch 1 exits and Run returns before the second Restart
 * starts epoch 2. Go's goroutineleak profile reports (*agent).runWait
 * [chan send] (flaky in Go).
 *
 * The C form: statusCh is a rendezvous ll_chan, the context an ll_context,
 * the agent's mutex a mutex, its epochs a counter; waitUntilLive's timer
 * (the proxy is never live) is an ll_chan closing itself 1 ms on, the
 * shortest wait it takes (Go's 100 ns; its 30 ns ticker only re-asks a
 * proxy that never answers yes). The test is main; the bad order is forced:
 * the second Restart starts once Run and epoch 1's runWait have returned
 * (joined: Go reclaims them), so its waitUntilLive returns at once. The
 * agent holds the proxy's config (CONFIG_BYTES, the payload). Main cancels
 * the context (the deferred cancel) and forgets the agent: only epoch 2's
 * runWait reaches it (orphaned).
 *
 * What the tools see: see expected/zoo/istio17860.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix, in the kernel's terms (the pull request was not read here; the
 * agent's later code does this): runWait's send also watches the agent's
 * context, which the test cancels as it returns.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { CONFIG_BYTES = 64 * 1024 }; /* the proxy's config: the payload of one instance */
enum { LIVE_TIMEOUT_MS = 1 };      /* Go: 100 ns */

struct agent {
    ll_run *run;
    pthread_mutex_t mu;
    ll_chan *status_ch;
    ll_context *ctx;                /* the test's ctx, handed to Run (and, fixed, to runWait) */
    int current_epoch, active_epochs;
    unsigned char *config;
    bool fixed;
    pthread_t runner, restarter, waiters[2];
};

struct epoch { struct agent *a; int epoch; };

__attribute__((noinline)) static struct agent *new_agent(ll_run *run, bool fixed)
{
    struct agent *a = ll_xmalloc(run, sizeof *a);
    *a = (struct agent){.run = run, .status_ch = ll_chan_new(run, 0), .ctx = ll_context_with_cancel(run),
                        .config = ll_xmalloc(run, CONFIG_BYTES), .fixed = fixed};
    memset(a->config, 0x5a, CONFIG_BYTES);
    pthread_mutex_init(&a->mu, NULL);
    return a;
}

static void free_agent(struct agent *a)
{
    pthread_mutex_destroy(&a->mu);
    ll_chan_free(a->status_ch);
    ll_context_free(a->ctx);
    free(a->config);
    free(a);
}

/* Run(ctx). */
static void *agent_run(void *arg)
{
    struct agent *a = arg;
    for (;;) {
        ll_select_case cases[] = {{.chan = a->status_ch}, {.chan = ll_context_done(a->ctx)}};
        if (ll_select(cases, 2, false) == 1)
            return NULL;
        struct epoch *status = cases[0].item;
        pthread_mutex_lock(&a->mu);
        int active = --a->active_epochs;  /* delete(a.activeEpochs, status) */
        pthread_mutex_unlock(&a->mu);
        free(status);
        if (active == 0)
            return NULL;
    }
}

/* runWait(epoch): the proxy has exited; report it. */
static LL_WAIT_SITE void *run_wait(void *arg)
{
    struct epoch *e = arg;
    struct agent *a = e->a;
    if (a->fixed) {
        ll_select_case cases[] = {{.chan = a->status_ch, .send = true, .item = e},
                                  {.chan = LL_FIX_VALUE(ll_context_done(a->ctx), NULL)}}; /* FIX: or ctx.Done() */
        if (ll_select(cases, 2, false) != 0)
            free(e);
        return NULL;
    }
    ll_chan_send(a->status_ch, e);       /* leaky: Run has returned: nobody receives, ever */
    return NULL;
}

static void wait_until_live(struct agent *a)
{
    if (a->active_epochs == 0)
        return;
    void *unused;                        /* the proxy never goes live: wait for the timer */
    ll_chan *timer = ll_chan_new(a->run, 0);
    ll_chan_close_after(timer, LIVE_TIMEOUT_MS);
    ll_chan_recv(timer, &unused);
    ll_chan_free(timer);
}

static void agent_restart(struct agent *a)
{
    pthread_mutex_lock(&a->mu);
    wait_until_live(a);
    a->active_epochs++;
    struct epoch *e = ll_xmalloc(a->run, sizeof *e);
    *e = (struct epoch){.a = a, .epoch = ++a->current_epoch};
    ll_thread_start(a->run, &a->waiters[e->epoch - 1], run_wait, e); /* go a.runWait(a.currentEpoch) */
    pthread_mutex_unlock(&a->mu);
}

static void *restarter(void *a) { agent_restart(a); return NULL; }

/* The test's goroutine, run by main. */
static struct agent *agent_test(ll_run *run, bool fixed)
{
    struct agent *a = new_agent(run, fixed);
    ll_thread_start(run, &a->runner, agent_run, a); /* go func() { a.Run(ctx) }() */
    agent_restart(a);                               /* a.Restart() */
    pthread_join(a->runner, NULL);                  /* forced order: epoch 1 exits, Run returns ... */
    pthread_join(a->waiters[0], NULL);
    ll_thread_start(run, &a->restarter, restarter, a); /* ... then go a.Restart() */
    pthread_join(a->restarter, NULL);
    return a;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct agent *a = agent_test(run, false);
    ll_chan_await_parked(run, a->status_ch, a->waiters[1]);
    ll_context_cancel(a->ctx);                      /* defer cancel(): Run is gone already */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct agent *a = agent_test(run, true);
    ll_chan_await_parked(run, a->status_ch, a->waiters[1]); /* the same order: epoch 2 reports in vain */
    ll_context_cancel(a->ctx);                      /* defer cancel() */
    LL_FIX(pthread_join(a->waiters[1], NULL));      /* FIX: runWait sees ctx done: join it */
    LL_FIX(free_agent(a));                          /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "istio17860",
    .summary = "GoKer istio#17860 (channel): the agent's run loop returns once no epoch is active; a\n"
               "later restart's epoch reports its exit on a channel nobody reads.",
    .leaky_summary = "Run has returned: the second epoch's runWait sends its status forever, holding the agent",
    .fixed_summary = "runWait's send also watches ctx: the test's cancel ends it, joined, the agent freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CONFIG_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
