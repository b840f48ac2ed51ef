/* moby25384 - GoKer moby#25384 (WaitGroup misuse): the plugin manager adds
 * every plugin to the WaitGroup at once but waits inside the loop, after
 * starting only the first: the wait needs Dones that are never started.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby25384.go, registered as Moby25348; the fix: moby/moby pull
 * 25384):
 *
 *     func (pm *Manager) init() {                  // G1
 *         var group sync.WaitGroup
 *         group.Add(len(pm.plugins))               // 2
 *         for _, p := range pm.plugins {
 *             go func(p *plugin) { defer group.Done() }(p)
 *             group.Wait()                         // G1 waits here: 1 of 2 Dones
 *         }
 *     }
 *     pm := &Manager{plugins: []*plugin{p1, p2}}; go pm.init()
 *
 * Go's goroutineleak profile reports (*Manager).init
 * [sync.WaitGroup.Wait] (not flaky in Go's test).
 *
 * The C form: the WaitGroup is an ll_waitgroup inside the malloc'ed
 * manager, which holds its plugins' state (PLUGINS_BYTES, the payload).
 * Nothing needs forcing: the count stays at one whatever the order. The
 * first plugin's thread ends and is joined (Go reclaims it); G1 is left
 * waiting on a WaitGroup only it reaches (orphaned).
 *
 * The fix (the pull request's): the Wait moves after the loop, once every
 * plugin's goroutine is started.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum {
    PLUGINS = 2,                    /* Go: []*plugin{p1, p2} */
    PLUGINS_BYTES = 64 * 1024,      /* the plugins' state: the payload of one instance */
};

struct manager {
    ll_run *run;
    ll_waitgroup group;             /* Go: init's group (escapes to the heap: the goroutines use it) */
    unsigned char *plugins;
    bool fixed;
    ll_chan *first_started;         /* closed once G1 has started the first plugin's thread */
    pthread_t init, plugin_threads[PLUGINS];
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct manager *new_manager(ll_run *run, bool fixed)
{
    struct manager *pm = ll_xmalloc(run, sizeof *pm);
    *pm = (struct manager){.run = run, .plugins = ll_xmalloc(run, PLUGINS_BYTES), .fixed = fixed,
                           .first_started = ll_chan_new(run, 0)};
    memset(pm->plugins, 0x5a, PLUGINS_BYTES);
    ll_waitgroup_init(&pm->group, run);
    return pm;
}

static void free_manager(struct manager *pm)
{
    ll_waitgroup_destroy(&pm->group);
    ll_chan_free(pm->first_started);
    free(pm->plugins);
    free(pm);
}

static void *plugin_init(void *pm) { ll_waitgroup_done(&((struct manager *)pm)->group); return NULL; }

/* G1. */
static LL_WAIT_SITE void manager_init(struct manager *pm)
{
    ll_waitgroup_add(&pm->group, PLUGINS);
    bool wait_in_loop = pm->fixed ? LL_FIX_VALUE(false, true) : true; /* FIX: wait once, after the loop */
    for (int i = 0; i < PLUGINS; i++) {
        ll_thread_start(pm->run, &pm->plugin_threads[i], plugin_init, pm);
        if (i == 0)
            ll_chan_close(pm->first_started);
        if (wait_in_loop)
            ll_waitgroup_wait(&pm->group);   /* leaky: one Done of two, and the loop never goes on */
    }
    if (!wait_in_loop)
        ll_waitgroup_wait(&pm->group);
}

static void *init_thread(void *pm) { manager_init(pm); return NULL; }

static struct manager *start(ll_run *run, bool fixed)
{
    struct manager *pm = new_manager(run, fixed);
    ll_thread_start(run, &pm->init, init_thread, pm); /* go pm.init() */
    void *unused;
    ll_chan_recv(pm->first_started, &unused);         /* the first plugin's thread is started */
    return pm;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct manager *pm = start(run, false);
    ll_await_parked(run, pm->init, &pm->group, sizeof pm->group); /* G1 waits for the second Done */
    pthread_join(pm->plugin_threads[0], NULL); /* the first plugin's goroutine ended; Go reclaims it */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct manager *pm = start(run, true);
    LL_FIX(pthread_join(pm->init, NULL));     /* FIX: both plugins started, both Done: G1 returns */
    LL_FIX(for (int i = 0; i < PLUGINS; i++) pthread_join(pm->plugin_threads[i], NULL)); /* join them all */
    LL_FIX(free_manager(pm));                 /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby25384",
    .summary = "GoKer moby#25384 (WaitGroup misuse): the plugin manager adds every plugin to the\n"
               "WaitGroup but waits inside the loop, after starting only the first.",
    .leaky_summary = "Wait inside the loop: it needs a Done never started, and waits forever holding the plugins",
    .fixed_summary = "Wait after the loop: every Done comes, the manager returns, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = PLUGINS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
