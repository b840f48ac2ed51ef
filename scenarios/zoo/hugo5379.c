/* hugo5379 - GoKer hugo#5379 (double locking through sync.Once): rendering
 * a page's content starts a goroutine that holds contentInitMu and, through
 * a shortcode, asks for the same page's content again; the renderer times
 * out, moves on to the plain text, and the two wait for each other.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/hugo5379.go; the fix: gohugoio/hugo pull 5379, "hugolib: Fix
 * deadlock when content building times out"):
 *
 *     func (p *Page) initContent() {
 *         p.contentInit.Do(func() {                         // O2
 *             ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
 *             c := make(chan error, 1)
 *             go func() {                                   // G2
 *                 p.contentInitMu.Lock(); defer p.contentInitMu.Unlock()     // L1
 *                 err := p.prepareForRender()               // -> shortcode -> p.WordCount() -> initContent, initPlain
 *                 c <- err }()
 *             select { case <-ctx.Done(): case <-c: } }) }  // the renderer times out
 *     func (p *Page) initPlain(lock bool) {
 *         p.plainInit.Do(func() { if lock { p.contentInitMu.Lock(); defer ... } }) }   // O4, L1
 *     WordCount() -> initContent(); initPlain(true)
 *     renderPages(): 2 x go pageRenderer(s, wg) -> WordCount(); wg.Wait()   // G3a, G3b; G1
 *
 * G3a's Do times out; G3a then holds O4's mutex inside plainInit.Do and
 * waits for L1, which G2 holds while it waits for O4. Go's goroutineleak
 * profile reports initContent.func1.1 [sync.Mutex.Lock], pageRenderer
 * [sync.Mutex.Lock] and Hugo5379.func2 [sync.WaitGroup.Wait] (flaky in Go).
 *
 * The C form: sync.Once is what Go's is, a mutex and a done flag (Do runs
 * f holding the mutex; a concurrent Do waits on it); L1 a mutex, the
 * WaitGroup an ll_waitgroup, the context an ll_context with a 1 ms timeout
 * (a timed wait, as Go's), c an ll_chan of capacity 1. One site, one page,
 * two renderers, as in Go. The order is forced at two points: the Do's
 * timed wait starts once G2 holds L1 (Go's scheduler nearly always runs G2
 * within the millisecond), and G2 and the second renderer enter plainInit
 * only once the first renderer sleeps inside it on L1. The page holds its rendered content (CONTENT_BYTES, the
 * payload). Main waits until all four sleep and forgets the site: only they
 * reach it (orphaned).
 *
 * What the tools see: see expected/zoo/hugo5379.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix, in the kernel's terms (the pull request's diff was not read
 * here): the caller of contentInit.Do holds L1 around the goroutine and
 * its timed wait, and the goroutine does not lock it, so L1 is free again
 * once the wait times out.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { RENDERERS = 2, CONTENT_BYTES = 64 * 1024 }; /* the page's rendered content: the payload of one instance */
enum { CONTENT_TIMEOUT_MS = 1 };                   /* Go: time.Millisecond */

struct once { pthread_mutex_t m; bool done; };     /* Go's sync.Once: a mutex and a flag */

struct page {
    ll_run *run;
    struct once content_init, plain_init, shortcodes_init; /* O2, O4, O1 */
    pthread_mutex_t content_init_mu;                 /* L1 */
    bool shortcodes_ready;                           /* contentShortcodesDelta = {0: render} */
    unsigned char *content;
    ll_chan *c;                                      /* the Do's result channel, capacity 1 */
    ll_context *ctx;
    ll_waitgroup wg;
    ll_chan *first_in_plain;                         /* forced order: closed once G3a sleeps on L1 in plainInit */
    ll_chan *started;                                /* closed once G1 started the renderers */
    ll_chan *g2_holds;                               /* forced order: closed once G2 is past its Lock */
    bool fixed;
    pthread_t g1, g2, renderers[RENDERERS];
};

struct renderer { struct page *p; int id; };

static void once_init(struct once *o) { pthread_mutex_init(&o->m, NULL); o->done = false; }

static void once_do(struct once *o, void (*f)(struct page *), struct page *p)
{
    pthread_mutex_lock(&o->m);                       /* a concurrent Do waits here */
    if (!o->done) {
        f(p);
        o->done = true;
    }
    pthread_mutex_unlock(&o->m);
}

__attribute__((noinline)) static struct page *new_page(ll_run *run, bool fixed)
{
    struct page *p = ll_xmalloc(run, sizeof *p);
    *p = (struct page){.run = run, .content = ll_xmalloc(run, CONTENT_BYTES), .first_in_plain = ll_chan_new(run, 0),
                       .started = ll_chan_new(run, 0), .g2_holds = ll_chan_new(run, 0), .fixed = fixed};
    memset(p->content, 0x5a, CONTENT_BYTES);
    once_init(&p->content_init);
    once_init(&p->plain_init);
    once_init(&p->shortcodes_init);
    pthread_mutex_init(&p->content_init_mu, NULL);
    ll_waitgroup_init(&p->wg, run);
    return p;
}

static void free_page(struct page *p)
{
    pthread_mutex_destroy(&p->content_init.m);
    pthread_mutex_destroy(&p->plain_init.m);
    pthread_mutex_destroy(&p->shortcodes_init.m);
    pthread_mutex_destroy(&p->content_init_mu);
    void *err;
    ll_chan_close(p->c);
    ll_chan_recv(p->c, &err);                        /* G2's result, if it sent one */
    ll_chan_free(p->c);
    ll_context_free(p->ctx);
    ll_waitgroup_destroy(&p->wg);
    ll_chan_free(p->first_in_plain);
    ll_chan_free(p->started);
    ll_chan_free(p->g2_holds);
    free(p->content);
    free(p);
}

static void word_count(struct page *p, bool renderer_a);

static void plain_locked(struct page *p)             /* initPlain(true)'s f */
{
    pthread_mutex_lock(&p->content_init_mu);         /* "Double locking here": G3a waits here */
    pthread_mutex_unlock(&p->content_init_mu);
}

static void init_plain(struct page *p, bool renderer_a)
{
    void *unused;
    if (!renderer_a)
        ll_chan_recv(p->first_in_plain, &unused);    /* forced order: the first renderer is in first */
    once_do(&p->plain_init, plain_locked, p);        /* the others wait here, on O4's mutex */
}

/* G2: prepareForRender() -> handleShortcodes -> the shortcode's render -> p.WordCount(). */
static LL_WAIT_SITE void *render_content(void *arg)
{
    static char no_error;
    struct page *p = arg;
    bool locks = p->fixed ? LL_FIX_VALUE(false, true) : true; /* FIX: the goroutine does not take L1 */
    if (locks)
        pthread_mutex_lock(&p->content_init_mu);
    ll_chan_close(p->g2_holds);                      /* forced order */
    if (p->shortcodes_ready)
        word_count(p, false);                        /* renderShortcodeWithPage -> p.WordCount() */
    ll_chan_send(p->c, &no_error);                   /* c <- err (capacity 1) */
    if (locks)
        pthread_mutex_unlock(&p->content_init_mu);
    return NULL;
}

static void content_init_f(struct page *p)           /* contentInit.Do's f */
{
    p->ctx = ll_context_with_timeout(p->run, CONTENT_TIMEOUT_MS);
    p->c = ll_chan_new(p->run, 1);
    bool caller_locks = p->fixed ? LL_FIX_VALUE(true, false) : false; /* FIX: the caller holds L1 here */
    if (caller_locks)
        pthread_mutex_lock(&p->content_init_mu);
    ll_thread_start(p->run, &p->g2, render_content, p);
    void *unused;
    ll_chan_recv(p->g2_holds, &unused);              /* G2 runs before the millisecond is up (Go: nearly always) */
    ll_select_case cases[] = {{.chan = ll_context_done(p->ctx)}, {.chan = p->c}};
    ll_select(cases, 2, false);                      /* leaky: G2 never sends: the 1 ms timeout */
    if (cases[1].ok)
        ll_chan_send(p->c, cases[1].item);           /* (keep G2's result for free_page) */
    if (caller_locks)
        pthread_mutex_unlock(&p->content_init_mu);
}

static void word_count(struct page *p, bool renderer_a)
{
    once_do(&p->content_init, content_init_f, p);    /* initContent(); G2 waits here first */
    init_plain(p, renderer_a);                       /* initPlain(true) */
}

/* G3: pageRenderer(s, wg) -> renderAndWritePage -> renderForLayouts -> p.WordCount(). */
static LL_WAIT_SITE void *page_renderer(void *arg)
{
    struct renderer *r = arg;
    struct page *p = r->p;
    word_count(p, r->id == 0);
    ll_waitgroup_done(&p->wg);
    free(r);
    return NULL;
}

static void shortcodes_f(struct page *p) { p->shortcodes_ready = true; } /* createShortcodeRenderers */

/* G1: sitesBuilder.Build() -> render(): preparePagesForRender, renderPages. */
static LL_WAIT_SITE void *build_sites(void *arg)
{
    struct page *p = arg;
    once_do(&p->shortcodes_init, shortcodes_f, p);   /* p.setContentInit() -> updateDelta() */
    for (int i = 0; i < RENDERERS; i++) {
        struct renderer *r = ll_xmalloc(p->run, sizeof *r);
        *r = (struct renderer){.p = p, .id = i};
        ll_waitgroup_add(&p->wg, 1);
        ll_thread_start(p->run, &p->renderers[i], page_renderer, r);
    }
    ll_chan_close(p->started);
    ll_waitgroup_wait(&p->wg);                       /* leaky: the renderers never finish */
    return NULL;
}

static struct page *start(ll_run *run, bool fixed)
{
    struct page *p = new_page(run, fixed);
    void *unused;
    ll_thread_start(run, &p->g1, build_sites, p);
    ll_chan_recv(p->started, &unused);
    return p;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct page *p = start(run, false);
    ll_await_parked(run, p->renderers[0], &p->content_init_mu, sizeof p->content_init_mu);
    ll_chan_close(p->first_in_plain);
    ll_await_parked(run, p->g2, &p->plain_init.m, sizeof p->plain_init.m);
    ll_await_parked(run, p->renderers[1], &p->plain_init.m, sizeof p->plain_init.m);
    ll_await_parked(run, p->g1, &p->wg, sizeof p->wg);
    ll_chan_free(p->first_in_plain);                 /* the forced order's gates, done with (every thread */
    ll_chan_free(p->started);                        /* is past them): no part of the kernel */
    ll_chan_free(p->g2_holds);
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct page *p = start(run, true);
    ll_chan_close(p->first_in_plain);                /* no order matters once L1 is free after the timeout */
    LL_FIX(pthread_join(p->g1, NULL));               /* FIX: both renderers finish: G1's Wait returns ... */
    for (int i = 0; i < RENDERERS; i++)
        LL_FIX(pthread_join(p->renderers[i], NULL));
    LL_FIX(pthread_join(p->g2, NULL));               /* ... and the content goroutine ends: join all */
    LL_FIX(free_page(p));                            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "hugo5379",
    .summary = "GoKer hugo#5379 (double locking through sync.Once): content rendering times out while its\n"
               "goroutine holds contentInitMu; the renderer then waits for it inside plainInit.Do.",
    .leaky_summary = "the renderer waits for L1 inside O4, the content goroutine for O4 holding L1: four threads wait",
    .fixed_summary = "L1 is held by the Do's caller, free after the timeout: everything finishes, joined, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = CONTENT_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }
