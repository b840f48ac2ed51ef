/* moby28462 - GoKer moby#28462 (channel & lock): StateChanged holds the
 * container's lock while it sends on the health monitor's stop channel; the
 * monitor, past its select, waits for that lock; neither moves again.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby28462.go; the fix: moby/moby pull 28462):
 *
 *     G1: monitor(c, stop)                    G2: d.StateChanged()
 *         for { select {                          c.Lock()
 *               case <-stop: return                d.updateHealthMonitorElseBranch(c)
 *               default: handleProbeResult(c)          h.CloseMonitorChannel()
 *         } }                                              s.stop <- struct{}{}  // unbuffered
 *     handleProbeResult(c):                       defer c.Unlock()
 *         runtime.Gosched(); c.Lock(); defer c.Unlock()
 *
 * G1 takes the default branch, G2 locks the container and sends; G1 is not
 * in its select any more to receive, and waits for the lock G2 holds. Go's
 * goroutineleak profile reports monitor [sync.Mutex.Lock] and
 * (*Daemon).StateChanged [chan send]; flaky in Go (69 runs in 100).
 *
 * The C form: the container's sync.Mutex is a pthread mutex, the health's
 * stop an unbuffered ll_chan, the select an ll_select with a default; the
 * container, its state and its health are one malloc'ed struct holding the
 * container's state (CONTAINER_BYTES, the payload). The order is forced,
 * not hoped for: G1, where Go calls runtime.Gosched(), tells main it is past
 * its select (in_window) and waits until G2 holds the lock (lock_held);
 * main starts G2 only once G1 is past its select. Main then forgets the
 * container: the two blocked threads alone reach it (orphaned).
 *
 * What the tools see: see expected/zoo/moby28462.toml (measured).
 *
 * The fix, upstream's (moby/moby pull 28462, commit 89b12347), in two parts:
 * CloseMonitorChannel closes the stop channel instead of sending on it, so
 * StateChanged never waits for the monitor; and handleProbeResult takes the
 * stop channel (`done`) and checks it again once it holds the lock ("probe
 * may have been cancelled while waiting on lock. Ignore result then"), so a
 * probe cancelled while it waited does not record its result.
 */
#include "leaklab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { CONTAINER_BYTES = 64 * 1024 }; /* the container's state: the payload of one instance */

struct container {                   /* Go: Container, its State and its Health */
    pthread_mutex_t mu;              /* Go: the embedded sync.Mutex */
    ll_chan *stop;                   /* Go: State.Health.stop, unbuffered */
    unsigned char *state;
    long long probe_results;         /* Go: the results appended to State.Health.Log */
    bool fixed;
    ll_chan *in_window;              /* forced order: closed once G1 is past its select */
    ll_chan *lock_held;              /* forced order: closed once G2 holds the lock */
    pthread_t monitor, state_changer;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct container *new_daemon_and_container(ll_run *run, bool fixed)
{
    struct container *c = ll_xmalloc(run, sizeof *c);
    *c = (struct container){.stop = ll_chan_new(run, 0), .state = ll_xmalloc(run, CONTAINER_BYTES),
                            .fixed = fixed, .in_window = ll_chan_new(run, 0), .lock_held = ll_chan_new(run, 0)};
    memset(c->state, 0x5a, CONTAINER_BYTES);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void free_container(struct container *c)
{
    pthread_mutex_destroy(&c->mu);
    ll_chan_free(c->stop);
    ll_chan_free(c->in_window);
    ll_chan_free(c->lock_held);
    free(c->state);
    free(c);
}

static void handle_probe_result(struct container *c, ll_chan *done)
{
    ll_chan_close(c->in_window);     /* forced order, where Go calls runtime.Gosched(): */
    void *unused;
    ll_chan_recv(c->lock_held, &unused); /* G1 takes the lock only once G2 holds it */
    pthread_mutex_lock(&c->mu);      /* leaky: G2 holds it, sending to nobody */
    if (c->fixed) {
        ll_select_case cancelled = {.chan = done};
        bool stopped = ll_select(&cancelled, 1, true) == 0; /* select { case <-done: default: } */
        if (LL_FIX_VALUE(stopped, false)) { /* FIX: cancelled while waiting on the lock: ignore the result */
            pthread_mutex_unlock(&c->mu);
            return;
        }
    }
    c->probe_results++;              /* h.Log = append(h.Log, result) */
    pthread_mutex_unlock(&c->mu);
}

/* G1: the health monitor. */
static LL_WAIT_SITE void monitor(struct container *c)
{
    for (;;) {
        ll_select_case stop = {.chan = c->stop};
        if (ll_select(&stop, 1, true) == 0) /* case <-stop: return; default: */
            return;
        handle_probe_result(c, c->stop);
    }
}

static void close_monitor_channel(struct container *c)
{
    if (c->fixed && LL_FIX_VALUE(true, false)) /* FIX: close(s.stop) instead of a send: nobody need be there */
        ll_chan_close(c->stop);
    else
        ll_chan_send(c->stop, NULL); /* leaky: s.stop <- struct{}{}, and G1 is not in its select */
}

static void update_health_monitor_else_branch(struct container *c) { close_monitor_channel(c); }

/* G2: d.StateChanged(). */
static LL_WAIT_SITE void state_changed(struct container *c)
{
    pthread_mutex_lock(&c->mu);
    ll_chan_close(c->lock_held);     /* forced order: G2 holds the lock */
    update_health_monitor_else_branch(c);
    pthread_mutex_unlock(&c->mu);
}

static void *monitor_thread(void *c) { monitor(c); return NULL; }
static void *state_changed_thread(void *c) { state_changed(c); return NULL; }

static struct container *start(ll_run *run, bool fixed)
{
    struct container *c = new_daemon_and_container(run, fixed);
    ll_thread_start(run, &c->monitor, monitor_thread, c); /* go monitor(c, c.State.Health.OpenMonitorChannel()) */
    void *unused;
    ll_chan_recv(c->in_window, &unused);                   /* forced order: G1 is past its select */
    ll_thread_start(run, &c->state_changer, state_changed_thread, c); /* go d.StateChanged() */
    return c;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct container *c = start(run, false);
    /* Deadlocked for good once G1 sleeps on the lock and G2 in its send. */
    ll_await_parked(run, c->monitor, &c->mu, sizeof c->mu);
    ll_chan_await_parked(run, c->stop, c->state_changer);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct container *c = start(run, true);
    LL_FIX(pthread_join(c->state_changer, NULL)); /* FIX: the close does not wait: G2 unlocks and returns, */
    LL_FIX(pthread_join(c->monitor, NULL));       /* G1 gets the lock, sees stop closed, returns: join both */
    if (c->probe_results != 0) /* the probe cancelled while it waited recorded nothing (the re-check above) */
        ll_refuse(run, "moby28462's fixed variant", EPROTO,
                  "the monitor recorded a probe result after its stop channel was closed: upstream's re-check is missing");
    LL_FIX(free_container(c));                    /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby28462",
    .summary = "GoKer moby#28462 (channel & lock): StateChanged holds the container lock while it\n"
               "sends on the monitor's stop channel; the monitor, past its select, waits for the lock.",
    .leaky_summary = "stop is sent on under the lock: the monitor and StateChanged wait forever, holding the container",
    .fixed_summary = "stop is closed instead, and the monitor re-checks it under the lock: both return, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CONTAINER_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
