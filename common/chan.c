/* chan.c - ll_chan, a channel of pointers that reads like Go's, and
 * ll_select, Go's select over several of them.
 *
 * Buffered (capacity >= 1): a ring; send blocks while full, recv while empty.
 * Rendezvous (capacity 0, Go's unbuffered channel): the channel has one
 *   slot. A sender puts an offer there (its item) and waits until a receiver
 *   has taken it: only then has the send happened. Offers are taken one at a
 *   time; senders wait for the slot in turn.
 * Close wakes every waiter; an offer still in the slot is withdrawn.
 * Deadlines (ll_chan_close_after): the channel counts as closed from that
 *   time on. Nothing fires a timer: every wait on such a channel is a timed
 *   wait that ends at the deadline, and whoever notices first closes it.
 *
 * Where threads wait (the contract with a reachability analysis, issue 12):
 * plain senders and receivers wait on the channel's own condition variables,
 * inside the malloc'ed ll_chan. A blocked select waits on a waiter of its
 * own, malloc'ed for the call, linked from every channel of its cases
 * (a channel cannot hold the condition variables of every select that might
 * wait on it; the waiter is reachable exactly when one of its channels is).
 *
 * Locking: every state change a waiter could wait for is made under the
 * channel's mutex and followed by a signal or broadcast, so no wake-up is
 * lost (the mistake rw_gateway's leaky writer makes). A select locks all of
 * its channels in address order; a waiter's own mutex is only ever taken
 * with channel locks held or alone, never the other way round. */
#include "chan_internal.h"
#include "park.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- shared helpers ---- */

static void init_cond(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* deadlines ignore wall-clock jumps */
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

static bool passed(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* Tells every select waiting on `ch` (but `except`) to look again. */
static void poke_selects(ll_chan *ch, struct select_waiter *except)
{
    for (struct select_node *n = ch->selects; n; n = n->next) {
        if (n->waiter == except)
            continue;
        pthread_mutex_lock(&n->waiter->lock);
        n->waiter->poked = true;
        pthread_cond_signal(&n->waiter->wake);
        pthread_mutex_unlock(&n->waiter->lock);
    }
}

static void close_locked(ll_chan *ch)
{
    if (ch->closed)
        return;
    ch->closed = true;
    /* A pending offer is withdrawn; the hand-off record stays: its select
     * has already returned, promised to a receiver that was waiting. */
    if (ch->slot && ch->slot != &ch->handoff) {
        ch->slot->withdrawn = true;
        ch->slot = NULL;
    }
    pthread_cond_broadcast(&ch->not_empty);
    pthread_cond_broadcast(&ch->not_full);
    pthread_cond_broadcast(&ch->taken);
    poke_selects(ch, NULL);
}

/* Closed, or past its deadline (which closes it now). */
static bool is_closed(ll_chan *ch)
{
    if (!ch->closed && ch->has_deadline && passed(&ch->deadline))
        close_locked(ch);
    return ch->closed;
}

static void wait_on(ll_chan *ch, pthread_cond_t *cond)
{
    if (ch->has_deadline && !ch->closed)
        pthread_cond_timedwait(cond, &ch->lock, &ch->deadline);
    else
        pthread_cond_wait(cond, &ch->lock);
}

/* ---- the channel ---- */

ll_chan *ll_chan_new(ll_run *run, size_t capacity)
{
    ll_chan *ch = ll_xmalloc(run, sizeof *ch);
    *ch = (ll_chan){.capacity = capacity ? capacity : 1, .rendezvous = capacity == 0};
    ch->ring = ll_xmalloc(run, ch->capacity * sizeof(void *));
    pthread_mutex_init(&ch->lock, NULL);
    init_cond(&ch->not_empty);
    init_cond(&ch->not_full);
    init_cond(&ch->taken);
    init_cond(&ch->receivers_changed);
    return ch;
}

static void push(ll_chan *ch, void *item)
{
    ch->ring[(ch->head + ch->count++) % ch->capacity] = item;
    pthread_cond_signal(&ch->not_empty);
    poke_selects(ch, NULL);
}

static void *pop(ll_chan *ch)
{
    void *item = ch->ring[ch->head];
    ch->head = (ch->head + 1) % ch->capacity;
    ch->count--;
    pthread_cond_signal(&ch->not_full);
    poke_selects(ch, NULL);
    return item;
}

static void free_slot(ll_chan *ch, struct select_waiter *except)
{
    ch->slot = NULL;
    pthread_cond_signal(&ch->not_full);
    poke_selects(ch, except);
}

/* Takes the offer in a rendezvous channel's slot, if there is one that is
 * still good; `self` (a select) never takes its own. A select's offer is
 * taken only if that select is not already committed to another case: the
 * taker claims it (Go's selectDone); a stale offer is cleared away. */
static bool take_offer(ll_chan *ch, void **item, struct select_waiter *self)
{
    struct offer *o = ch->slot;
    if (!o || (self && o->select == self))
        return false;
    if (o->select) {
        struct select_waiter *w = o->select;
        pthread_mutex_lock(&w->lock);
        bool stale = w->claimed;
        if (!stale) {
            w->claimed = true;
            w->fired = o->case_index;
            pthread_cond_signal(&w->wake);
        }
        pthread_mutex_unlock(&w->lock);
        if (stale) {
            free_slot(ch, self);
            return false;
        }
    }
    *item = o->item;
    o->taken = true;
    pthread_cond_broadcast(&ch->taken);
    free_slot(ch, self);
    return true;
}

bool ll_chan_send(ll_chan *ch, void *item)
{
    pthread_mutex_lock(&ch->lock);
    bool sent = false;
    if (!ch->rendezvous) {
        while (ch->count == ch->capacity && !is_closed(ch))
            wait_on(ch, &ch->not_full);
        if (!ch->closed) {
            push(ch, item);
            sent = true;
        }
    } else {
        struct offer mine = {.item = item};
        while (ch->slot && !is_closed(ch))
            wait_on(ch, &ch->not_full);
        if (!ch->closed) {
            ch->slot = &mine;
            pthread_cond_signal(&ch->not_empty);
            poke_selects(ch, NULL);
            while (!mine.taken && !mine.withdrawn && !is_closed(ch))
                wait_on(ch, &ch->taken);
            sent = mine.taken; /* closing withdrew it otherwise */
        }
    }
    pthread_mutex_unlock(&ch->lock);
    return sent;
}

bool ll_chan_recv(ll_chan *ch, void **item)
{
    pthread_mutex_lock(&ch->lock);
    bool received = false;
    for (;;) {
        if (ch->rendezvous ? take_offer(ch, item, NULL) : ch->count > 0) {
            if (!ch->rendezvous)
                *item = pop(ch);
            received = true; /* a closed buffered channel still drains */
            break;
        }
        if (is_closed(ch))
            break;
        if (++ch->receivers_waiting == ch->receivers_awaited)
            pthread_cond_signal(&ch->receivers_changed);
        wait_on(ch, &ch->not_empty);
        ch->receivers_waiting--;
    }
    pthread_mutex_unlock(&ch->lock);
    return received;
}

void ll_chan_close(ll_chan *ch)
{
    pthread_mutex_lock(&ch->lock);
    close_locked(ch);
    pthread_mutex_unlock(&ch->lock);
}

void ll_chan_close_after(ll_chan *ch, long long ms)
{
    pthread_mutex_lock(&ch->lock);
    clock_gettime(CLOCK_MONOTONIC, &ch->deadline);
    ch->deadline.tv_sec += ms / 1000;
    ch->deadline.tv_nsec += (ms % 1000) * 1000000L;
    if (ch->deadline.tv_nsec >= 1000000000L) {
        ch->deadline.tv_sec++;
        ch->deadline.tv_nsec -= 1000000000L;
    }
    ch->has_deadline = true;
    /* Waiters already asleep must learn that their wait is now timed. */
    pthread_cond_broadcast(&ch->not_empty);
    pthread_cond_broadcast(&ch->not_full);
    pthread_cond_broadcast(&ch->taken);
    poke_selects(ch, NULL);
    pthread_mutex_unlock(&ch->lock);
}

void ll_chan_await_receivers(ll_chan *ch, size_t n)
{
    pthread_mutex_lock(&ch->lock);
    ch->receivers_awaited = n;
    while (ch->receivers_waiting < n)
        pthread_cond_wait(&ch->receivers_changed, &ch->lock);
    ch->receivers_awaited = 0;
    pthread_mutex_unlock(&ch->lock);
}

void ll_chan_free(ll_chan *ch)
{
    if (!ch)
        return;
    pthread_mutex_destroy(&ch->lock);
    pthread_cond_destroy(&ch->not_empty);
    pthread_cond_destroy(&ch->not_full);
    pthread_cond_destroy(&ch->taken);
    pthread_cond_destroy(&ch->receivers_changed);
    free(ch->ring);
    free(ch);
}

/* ---- select ---- */

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(ll_chan *const *)a, y = (uintptr_t)*(ll_chan *const *)b;
    return (x > y) - (x < y);
}

/* The distinct channels of `cases`, in address order (the lock order). */
static size_t lock_order(const ll_select_case *cases, size_t n, ll_chan **out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (cases[i].chan)
            out[m++] = cases[i].chan;
    qsort(out, m, sizeof *out, by_address);
    size_t distinct = 0;
    for (size_t i = 0; i < m; i++)
        if (distinct == 0 || out[distinct - 1] != out[i])
            out[distinct++] = out[i];
    return distinct;
}

static void lock_all(ll_chan **chans, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pthread_mutex_lock(&chans[i]->lock);
}

static void unlock_all(ll_chan **chans, size_t n)
{
    for (size_t i = n; i-- > 0;)
        pthread_mutex_unlock(&chans[i]->lock);
}

/* Performs case i if it can complete now; all channels are locked. */
static bool try_case(ll_select_case *c, struct select_waiter *self)
{
    ll_chan *ch = c->chan;
    if (!ch)
        return false;
    if (!c->send) {
        if (ch->rendezvous ? take_offer(ch, &c->item, self) : ch->count > 0) {
            if (!ch->rendezvous)
                c->item = pop(ch);
            c->ok = true;
            return true;
        }
        if (is_closed(ch)) {
            c->item = NULL;
            c->ok = false;
            return true;
        }
        return false;
    }
    if (is_closed(ch)) {
        c->ok = false;
        return true;
    }
    if (!ch->rendezvous) {
        if (ch->count == ch->capacity)
            return false;
        push(ch, c->item);
        c->ok = true;
        return true;
    }
    /* A receiver blocked in ll_chan_recv and an empty slot: it will take
     * whatever is offered next, so the send happens now (as in Go). The
     * channel's own record carries the item, as this call returns at once. */
    if (!ch->slot && ch->receivers_waiting > 0) {
        ch->handoff = (struct offer){.item = c->item};
        ch->slot = &ch->handoff;
        pthread_cond_signal(&ch->not_empty);
        poke_selects(ch, self);
        c->ok = true;
        return true;
    }
    return false;
}

static struct select_waiter *new_waiter(const ll_select_case *cases, size_t n)
{
    struct select_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        static const char msg[] = "leaklab: ll_select: out of memory for its waiter\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(LL_EXIT_SYSTEM);
    }
    pthread_mutex_init(&w->lock, NULL);
    init_cond(&w->wake);
    w->tid = (pid_t)syscall(SYS_gettid);
    for (size_t i = 0; i < n; i++) {
        ll_chan *ch = cases[i].chan;
        if (!ch)
            continue;
        w->nodes[i] = (struct select_node){.waiter = w, .next = ch->selects};
        if (ch->selects)
            ch->selects->prev = &w->nodes[i];
        ch->selects = &w->nodes[i];
        w->registered[i] = true;
    }
    return w;
}

static void free_waiter(struct select_waiter *w, const ll_select_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ll_chan *ch = cases[i].chan;
        if (!w->registered[i])
            continue;
        struct select_node *node = &w->nodes[i];
        if (node->prev)
            node->prev->next = node->next;
        else
            ch->selects = node->next;
        if (node->next)
            node->next->prev = node->prev;
        if (cases[i].send && ch->slot == &w->offers[i])
            free_slot(ch, w); /* withdraw what no receiver took */
    }
}

/* Puts an offer on every rendezvous channel we send on whose slot is free. */
static void place_offers(struct select_waiter *w, const ll_select_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ll_chan *ch = cases[i].chan;
        if (!ch || !cases[i].send || !ch->rendezvous || ch->slot || ch->closed)
            continue;
        w->offers[i] = (struct offer){.item = cases[i].item, .select = w, .case_index = i};
        ch->slot = &w->offers[i];
        pthread_cond_signal(&ch->not_empty);
        poke_selects(ch, w);
    }
}

static const struct timespec *earliest_deadline(ll_chan **chans, size_t n)
{
    const struct timespec *t = NULL;
    for (size_t i = 0; i < n; i++)
        if (chans[i]->has_deadline && !chans[i]->closed &&
            (!t || chans[i]->deadline.tv_sec < t->tv_sec ||
             (chans[i]->deadline.tv_sec == t->tv_sec && chans[i]->deadline.tv_nsec < t->tv_nsec)))
            t = &chans[i]->deadline;
    return t;
}

int ll_select(ll_select_case *cases, size_t n, bool has_default)
{
    if (n > LL_SELECT_MAX_CASES) {
        fprintf(stderr, "leaklab: ll_select: %zu cases, at most %d\n", n, LL_SELECT_MAX_CASES);
        _exit(LL_EXIT_SYSTEM);
    }
    ll_chan *chans[LL_SELECT_MAX_CASES];
    size_t nchans = lock_order(cases, n, chans);
    struct select_waiter *w = NULL;
    int fired = LL_SELECT_DEFAULT;

    lock_all(chans, nchans);
    for (;;) {
        if (w) {
            pthread_mutex_lock(&w->lock);
            bool claimed = w->claimed;
            pthread_mutex_unlock(&w->lock);
            if (claimed) { /* a receiver took one of our offers */
                fired = (int)w->fired;
                cases[fired].ok = true;
                break;
            }
        }
        for (size_t i = 0; i < n && fired < 0; i++)
            if (try_case(&cases[i], w))
                fired = (int)i;
        if (fired >= 0 || has_default)
            break;
        if (!w)
            w = new_waiter(cases, n);
        place_offers(w, cases, n);
        const struct timespec *deadline = earliest_deadline(chans, nchans);
        struct timespec until = deadline ? *deadline : (struct timespec){0};
        /* Reset under the channel locks: any change after this scan pokes. */
        pthread_mutex_lock(&w->lock);
        w->poked = false;
        pthread_mutex_unlock(&w->lock);
        unlock_all(chans, nchans);

        pthread_mutex_lock(&w->lock);
        while (!w->poked && !w->claimed) {
            if (!deadline) {
                pthread_cond_wait(&w->wake, &w->lock);
            } else if (pthread_cond_timedwait(&w->wake, &w->lock, &until) == ETIMEDOUT) {
                break; /* the deadline channel closes itself on the next scan */
            }
        }
        pthread_mutex_unlock(&w->lock);
        lock_all(chans, nchans);
    }
    if (w)
        free_waiter(w, cases, n);
    unlock_all(chans, nchans);
    if (w) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
    }
    return fired;
}

/* ---- watching a thread park on a channel ---- */

static bool within(uintptr_t addr, const void *object, size_t size)
{
    return addr >= (uintptr_t)object && addr < (uintptr_t)object + size;
}

bool ll_chan_is_parked_wait(const ll_chan *ch, uintptr_t select_waiter, uintptr_t futex_addr)
{
    const struct select_waiter *w = (const struct select_waiter *)select_waiter;
    return within(futex_addr, &ch->not_empty, sizeof ch->not_empty) ||
           within(futex_addr, &ch->not_full, sizeof ch->not_full) ||
           within(futex_addr, &ch->taken, sizeof ch->taken) ||
           (w && within(futex_addr, &w->wake, sizeof w->wake)); /* only compared, never dereferenced */
}

void ll_chan_await_parked(ll_run *run, ll_chan *ch, pthread_t thread)
{
    pid_t tid = ll_park_tid(run, thread);
    for (;;) {
        /* Where it may sleep: the channel itself, or the waiter of a select
         * it registered on the channel (its address is read under the
         * channel's lock and only compared after, never dereferenced). */
        uintptr_t waiter = 0;
        pthread_mutex_lock(&ch->lock);
        for (struct select_node *n = ch->selects; n; n = n->next)
            if (n->waiter->tid == tid)
                waiter = (uintptr_t)n->waiter;
        pthread_mutex_unlock(&ch->lock);

        long nr;
        uintptr_t addr;
        if (!ll_park_observe(tid, &nr, &addr))
            ll_park_ended(run, tid, "a channel");
        if (nr == SYS_futex && ll_chan_is_parked_wait(ch, waiter, addr))
            return;
        ll_park_yield();
    }
}
