/* etcd7492 - GoKer etcd#7492 (channel & lock): an Authenticate holds the
 * token mutex while it hands its token to the TTL keeper on a full channel;
 * the keeper, ticking, waits for that mutex before it reads the channel
 * again; the test waits for every Authenticate.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/etcd7492.go; the fix: etcd-io/etcd pull 7492, "auth: get rid of
 * deadlocking channel passing scheme in simpleTokenTTL"):
 *
 *     func (tm *simpleTokenTTLKeeper) run() {               // the keeper
 *         for { select {
 *               case <-tm.addSimpleTokenCh: tm.tokens["1"] = time.Now()
 *               case <-tokenTicker.C:                       // a 1 ns ticker
 *                   runtime.Gosched()
 *                   for t := range tm.tokens { tm.deleteTokenFunc(t); ... }   // Lock: waits here
 *               case waitCh := <-tm.stopCh: waitCh <- struct{}{}; return } } }
 *     func (t *tokenSimple) assignSimpleTokenToUser() {
 *         t.simpleTokensMu.Lock(); runtime.Gosched()
 *         t.simpleTokenKeeper.addSimpleToken()              // addSimpleTokenCh <- (capacity 1): waits here
 *         t.simpleTokensMu.Unlock() }
 *     go func() {                                           // G1
 *         as, tearDown := setupAuthStore(); defer tearDown()  // starts the keeper
 *         wg.Add(3)
 *         for i := 0; i < 3; i++ { go func() { as.Authenticate(); wg.Done() }() }   // G2
 *         wg.Wait() }()                                     // G1 waits here
 *
 * Go's goroutineleak profile reports Etcd7492.func2 [sync.WaitGroup.Wait],
 * Etcd7492.func2.1 [chan send] and (*simpleTokenTTLKeeper).run
 * [sync.Mutex.Lock] (flaky in Go; the pull request: "Just use the mutex
 * instead").
 *
 * The C form: addSimpleTokenCh is an ll_chan of capacity 1, the ticker's C
 * an ll_chan of capacity 1 (a Ticker's) into which main puts the tick, the
 * RWMutex used only as a lock its writer mutex, the WaitGroup an
 * ll_waitgroup. The order of the leak is forced where Go yields: the first
 * Authenticate's token reaches the keeper; the keeper takes a tick and
 * pauses (its Gosched) until the second Authenticate has filled the buffer
 * and the third sleeps in its send, holding the mutex. The store holds its
 * users' tokens (TOKENS_BYTES, the payload). Main waits until the three
 * sleep, joins the two finished Authenticates (Go reclaims them) and
 * forgets the store: only the blocked threads reach it (orphaned).
 *
 * What the tools see: see expected/zoo/etcd7492.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the pull request's): no channel: addSimpleToken records the
 * token under the token mutex its caller holds, and the keeper's tick
 * takes that same mutex around its deletions.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { USERS = 3, TOKENS_BYTES = 64 * 1024 }; /* the users' tokens: the payload of one instance */

struct auth_store {
    ll_run *run;
    pthread_mutex_t simple_tokens_mu; /* Go: simpleTokensMu (an RWMutex write-locked only) */
    ll_chan *add_simple_token_ch;   /* capacity 1 */
    ll_chan *ticker;                /* tokenTicker.C, capacity 1 */
    ll_chan *stop_ch;               /* chan chan struct{} */
    int tokens;                     /* len(tm.tokens) */
    unsigned char *token_state;
    ll_waitgroup wg;
    ll_chan *token_taken;           /* forced order: closed once the first token is recorded */
    ll_chan *in_tick;               /* forced order: closed once the keeper has taken a tick */
    ll_chan *tick_window;           /* forced order: the keeper's Gosched ends when main closes it */
    ll_chan *second_done;           /* forced order: closed once the second Authenticate returned */
    ll_chan *started;               /* closed once G1 has started every thread (handles set) */
    ll_chan *wait_ch;               /* tearDown's waitCh, freed with the store (after the joins) */
    bool fixed;
    pthread_t g1, keeper, users[USERS];
};

struct user { struct auth_store *as; int id; };

__attribute__((noinline)) static struct auth_store *new_auth_store(ll_run *run, bool fixed)
{
    struct auth_store *as = ll_xmalloc(run, sizeof *as);
    *as = (struct auth_store){.run = run, .add_simple_token_ch = ll_chan_new(run, 1), .ticker = ll_chan_new(run, 1),
                              .stop_ch = ll_chan_new(run, 0), .token_state = ll_xmalloc(run, TOKENS_BYTES),
                              .token_taken = ll_chan_new(run, 0), .in_tick = ll_chan_new(run, 0),
                              .tick_window = ll_chan_new(run, 0), .second_done = ll_chan_new(run, 0),
                              .started = ll_chan_new(run, 0), .fixed = fixed};
    memset(as->token_state, 0x5a, TOKENS_BYTES);
    pthread_mutex_init(&as->simple_tokens_mu, NULL);
    ll_waitgroup_init(&as->wg, run);
    return as;
}

static void free_auth_store(struct auth_store *as)
{
    pthread_mutex_destroy(&as->simple_tokens_mu);
    ll_chan *chans[] = {as->add_simple_token_ch, as->ticker, as->stop_ch, as->token_taken, as->in_tick,
                        as->tick_window, as->second_done, as->started};
    for (size_t i = 0; i < sizeof chans / sizeof chans[0]; i++)
        ll_chan_free(chans[i]);
    if (as->wait_ch)                            /* not before: the keeper may still be in its send */
        ll_chan_free(as->wait_ch);
    ll_waitgroup_destroy(&as->wg);
    free(as->token_state);
    free(as);
}

/* newDeleterFunc(t): the keeper's deleteTokenFunc. */
static LL_WAIT_SITE void delete_token(struct auth_store *as, bool locks)
{
    if (locks)
        pthread_mutex_lock(&as->simple_tokens_mu); /* leaky: the third Authenticate holds it */
    as->tokens--;
    if (locks)
        pthread_mutex_unlock(&as->simple_tokens_mu);
}

/* The keeper: simpleTokenTTLKeeper.run(). */
static void *keeper_run(void *arg)
{
    struct auth_store *as = arg;
    void *item;
    /* FIX: the tick holds the token mutex around its deletions (deleteTokenFunc no longer locks) */
    bool tick_locks = as->fixed ? LL_FIX_VALUE(true, false) : false;
    for (;;) {
        ll_select_case cases[] = {{.chan = as->add_simple_token_ch}, {.chan = as->ticker}, {.chan = as->stop_ch}};
        int i = ll_select(cases, 3, false);
        if (i == 0) {
            if (as->tokens++ == 0)
                ll_chan_close(as->token_taken);   /* tm.tokens["1"] = time.Now() */
        } else if (i == 1) {
            ll_chan_close(as->in_tick);           /* forced order, where Go has runtime.Gosched() */
            ll_chan_recv(as->tick_window, &item);
            if (tick_locks)
                pthread_mutex_lock(&as->simple_tokens_mu);
            while (as->tokens > 0)
                delete_token(as, !tick_locks);
            if (tick_locks)
                pthread_mutex_unlock(&as->simple_tokens_mu);
        } else {
            static char stopped;
            ll_chan_send(cases[2].item, &stopped);  /* waitCh <- struct{}{} */
            return NULL;
        }
    }
}

static LL_WAIT_SITE void add_simple_token(struct auth_store *as)
{
    static char token;
    bool via_channel = as->fixed ? LL_FIX_VALUE(false, true) : true; /* FIX: no channel: record it here */
    if (via_channel) {
        ll_chan_send(as->add_simple_token_ch, &token); /* leaky: the third waits here, holding the mutex */
    } else if (as->tokens++ == 0) {
        ll_chan_close(as->token_taken);
    }
    __asm__ volatile("" ::: "memory"); /* no tail call: this frame stays on the waiter's stack */
}

/* G2: as.Authenticate() -> assign() -> assignSimpleTokenToUser(). */
static void *authenticate(void *arg)
{
    struct user *u = arg;
    struct auth_store *as = u->as;
    void *unused;
    if (u->id == 1)
        ll_chan_recv(as->in_tick, &unused);      /* forced order: after the keeper took its tick */
    if (u->id == 2)
        ll_chan_recv(as->second_done, &unused);
    pthread_mutex_lock(&as->simple_tokens_mu);
    add_simple_token(as);
    pthread_mutex_unlock(&as->simple_tokens_mu);
    if (u->id == 1)
        ll_chan_close(as->second_done);
    ll_waitgroup_done(&as->wg);
    free(u);
    return NULL;
}

/* tearDown(): disable() -> keeper.stop(), then the token mutex once. */
static void tear_down(struct auth_store *as)
{
    void *unused;
    as->wait_ch = ll_chan_new(as->run, 0);      /* waitCh := make(chan struct{}) */
    ll_chan_send(as->stop_ch, as->wait_ch);
    ll_chan_recv(as->wait_ch, &unused);
    pthread_mutex_lock(&as->simple_tokens_mu);
    pthread_mutex_unlock(&as->simple_tokens_mu);
}

/* G1. */
static LL_WAIT_SITE void *authenticate_users(void *arg)
{
    struct auth_store *as = arg;
    ll_thread_start(as->run, &as->keeper, keeper_run, as); /* setupAuthStore(): enable() */
    ll_waitgroup_add(&as->wg, USERS);
    for (int i = 0; i < USERS; i++) {
        struct user *u = ll_xmalloc(as->run, sizeof *u);
        *u = (struct user){.as = as, .id = i};
        ll_thread_start(as->run, &as->users[i], authenticate, u);
    }
    ll_chan_close(as->started);
    ll_waitgroup_wait(&as->wg);                  /* leaky: the third Authenticate never returns */
    tear_down(as);                               /* defer tearDown() */
    return NULL;
}

static struct auth_store *start(ll_run *run, bool fixed)
{
    static char tick;
    struct auth_store *as = new_auth_store(run, fixed);
    void *unused;
    ll_thread_start(run, &as->g1, authenticate_users, as);
    ll_chan_recv(as->started, &unused);
    ll_chan_recv(as->token_taken, &unused);      /* the first token is in */
    ll_chan_send(as->ticker, &tick);             /* the ticker ticks */
    return as;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct auth_store *as = start(run, false);
    ll_chan_await_parked(run, as->add_simple_token_ch, as->users[2]);
    ll_chan_close(as->tick_window);
    ll_await_parked(run, as->keeper, &as->simple_tokens_mu, sizeof as->simple_tokens_mu);
    ll_await_parked(run, as->g1, &as->wg, sizeof as->wg);
    pthread_join(as->users[0], NULL);            /* they returned: Go reclaims them, C joins them */
    pthread_join(as->users[1], NULL);
    ll_chan *gates[] = {as->token_taken, as->in_tick, as->tick_window, as->second_done, as->started};
    for (size_t i = 0; i < sizeof gates / sizeof gates[0]; i++)
        ll_chan_free(gates[i]);                  /* the forced order's gates, done with: no part of the kernel */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct auth_store *as = start(run, true);
    ll_chan_close(as->tick_window);
    LL_FIX(pthread_join(as->g1, NULL));          /* FIX: every Authenticate returns, tearDown stops the keeper */
    LL_FIX(pthread_join(as->keeper, NULL));
    for (int i = 0; i < USERS; i++)
        LL_FIX(pthread_join(as->users[i], NULL));
    LL_FIX(free_auth_store(as));                 /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "etcd7492",
    .summary = "GoKer etcd#7492 (channel & lock): Authenticate holds the token mutex while it sends its\n"
               "token on the keeper's full channel; the ticking keeper waits for that mutex.",
    .leaky_summary = "a sender holds the mutex on a full channel, the keeper waits for the mutex, G1 for both",
    .fixed_summary = "tokens are recorded under the mutex, no channel: all return, the keeper stops, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = TOKENS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
