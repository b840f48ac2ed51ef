/* kubernetes38669 - GoKer kubernetes#38669 (channel): a cache watcher
 * sends its initial events on a result channel nobody reads; Stop closes
 * the input but cannot reach the blocked send.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/kubernetes38669.go; the fix: kubernetes/kubernetes pull 38669,
 * "Fix leaking goroutines in watch cache"):
 *
 *     func (c *cacheWatcher) process(initEvents []watchCacheEvent) {   // G
 *         for _, event := range initEvents {
 *             c.result <- Event(event)        // unbuffered: G waits here
 *         }
 *         defer close(c.result); defer c.Stop()
 *         for { if _, ok := <-c.input; !ok { return } }
 *     }
 *     func (c *cacheWatcher) stop() {
 *         c.Lock(); defer c.Unlock()
 *         if !c.stopped { c.stopped = true; close(c.input) }
 *     }
 *     w := newCacheWatcher(0, []watchCacheEvent{1, 2})   // go w.process(initEvents)
 *     w.Stop()
 *
 * Go's goroutineleak profile reports (*cacheWatcher).process [chan send]
 * (not flaky in Go's test).
 *
 * The C form: input and result are rendezvous ll_chans (chanSize 0), the
 * watcher's lock a pthread mutex; the caller plays Go's test goroutine
 * (it stops the watcher and returns). The initial events are the payload
 * (EVENTS_BYTES). Nothing needs forcing: whenever Stop runs, the send has
 * no receiver. The watcher thread is left holding the events and the only
 * pointers to the watcher (orphaned).
 *
 * The fix (the pull request's: Stop must release a send on result once
 * the user has stopped reading): stop also closes a done channel, and
 * every send on result is a select with done.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    INIT_EVENTS = 2,                /* Go: initEvents := []watchCacheEvent{1, 2} */
    EVENTS_BYTES = 64 * 1024,       /* the initial events: the payload of one instance */
};

struct cache_watcher {
    pthread_mutex_t mu;             /* Go: cacheWatcher's sync.Mutex */
    ll_chan *input;                 /* Go: input, chanSize 0 */
    ll_chan *result;                /* Go: result, chanSize 0 */
    ll_chan *done;                  /* the fix's: closed by stop */
    bool stopped;
    bool fixed;
    unsigned char *init_events;
    pthread_t processor;
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct cache_watcher *new_watcher_struct(ll_run *run, bool fixed)
{
    struct cache_watcher *c = ll_xmalloc(run, sizeof *c);
    *c = (struct cache_watcher){.input = ll_chan_new(run, 0), .result = ll_chan_new(run, 0),
                                .done = ll_chan_new(run, 0), .fixed = fixed,
                                .init_events = ll_xmalloc(run, EVENTS_BYTES)};
    memset(c->init_events, 0x5a, EVENTS_BYTES);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void free_watcher(struct cache_watcher *c)
{
    pthread_mutex_destroy(&c->mu);
    ll_chan_free(c->input);
    ll_chan_free(c->result);
    ll_chan_free(c->done);
    free(c->init_events);
    free(c);
}

static void stop(struct cache_watcher *c)
{
    pthread_mutex_lock(&c->mu);
    if (!c->stopped) {
        c->stopped = true;
        if (c->fixed)
            LL_FIX(ll_chan_close(c->done)); /* FIX: tell the sender nobody reads any more */
        ll_chan_close(c->input);
    }
    pthread_mutex_unlock(&c->mu);
}

static void send_watch_cache_event(struct cache_watcher *c, void *event)
{
    if (!c->fixed) {
        ll_chan_send(c->result, event);  /* leaky: c.result <- event, and nobody reads result */
        return;
    }
    ll_select_case send_or_done[] = {{.chan = c->result, .send = true, .item = event},
                                     {.chan = c->done}}; /* FIX: ...or the watcher was stopped */
    ll_select(send_or_done, 2, false);
}

/* The watcher's goroutine. */
static LL_WAIT_SITE void process(struct cache_watcher *c)
{
    for (int i = 0; i < INIT_EVENTS; i++)
        send_watch_cache_event(c, c->init_events + i * (EVENTS_BYTES / INIT_EVENTS));
    void *unused;
    while (ll_chan_recv(c->input, &unused))
        ;
    stop(c);                                 /* defer c.Stop() */
    ll_chan_close(c->result);                /* defer close(c.result) */
}

static void *process_thread(void *c) { process(c); return NULL; }

static struct cache_watcher *watch_and_stop(ll_run *run, bool fixed)
{
    struct cache_watcher *c = new_watcher_struct(run, fixed);
    ll_thread_start(run, &c->processor, process_thread, c); /* go watcher.process(initEvents) */
    stop(c);                                                /* w.Stop() */
    return c;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct cache_watcher *c = watch_and_stop(run, false);
    ll_chan_await_parked(run, c->result, c->processor);     /* the first event, sent to nobody */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct cache_watcher *c = watch_and_stop(run, true);
    LL_FIX(pthread_join(c->processor, NULL)); /* FIX: done released the sends: the watcher returns, join it */
    LL_FIX(free_watcher(c));                  /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "kubernetes38669",
    .summary = "GoKer kubernetes#38669 (channel): a cache watcher sends its initial events on a result\n"
               "channel nobody reads; Stop closes the input but cannot reach the blocked send.",
    .leaky_summary = "plain sends on result: the watcher waits forever, holding its events",
    .fixed_summary = "the sends are selects with a done channel Stop closes: the watcher returns, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = EVENTS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
