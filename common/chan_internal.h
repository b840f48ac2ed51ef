/* chan_internal.h - the layout of ll_chan and of a select's waiter, shared
 * by chan.c and its white-box test (tests/zoo/test_primitives.c), which
 * checks which futex waits ll_chan_await_parked takes for "parked". Nothing
 * else includes it: scenarios see ll_chan as an opaque type (leaklab.h). */
#ifndef LL_CHAN_INTERNAL_H
#define LL_CHAN_INTERNAL_H

#include "leaklab.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct select_waiter;

/* An item offered on a rendezvous channel: by a plain sender (on its stack,
 * waiting on the channel's `taken`), a select (in its waiter), or the
 * channel's own hand-off record (a select that found a receiver waiting). */
struct offer {
    void *item;
    struct select_waiter *select; /* NULL: not a select's */
    size_t case_index;
    bool taken, withdrawn;
};

struct select_node {
    struct select_waiter *waiter;
    struct select_node *prev, *next;
};

struct select_waiter {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool poked;       /* a channel of ours changed: look again */
    bool claimed;     /* a receiver took one of our offers: that send case fired */
    size_t fired;
    pid_t tid;        /* for ll_chan_await_parked */
    struct select_node nodes[LL_SELECT_MAX_CASES];
    bool registered[LL_SELECT_MAX_CASES];
    struct offer offers[LL_SELECT_MAX_CASES];
};

struct ll_chan {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full, taken;
    pthread_cond_t receivers_changed; /* for ll_chan_await_receivers */
    void **ring;                      /* buffered */
    size_t capacity, head, count;
    bool rendezvous;
    struct offer *slot;               /* rendezvous: the offer on the table, or NULL */
    struct offer handoff;             /* rendezvous: a select's item for a waiting receiver */
    size_t receivers_waiting, receivers_awaited;
    bool closed, has_deadline;
    struct timespec deadline;         /* CLOCK_MONOTONIC */
    struct select_node *selects;      /* selects waiting on this channel */
};

/* Whether a futex wait at `futex_addr` is a thread parked on `ch`: a plain
 * sender or receiver asleep on one of the channel's condition variables, or
 * a select asleep on its waiter's `wake` (`select_waiter`: the waiter the
 * thread registered on `ch`, 0 if none). Never a lock: a thread contending
 * for the channel's or a waiter's mutex is about to run, not parked (and
 * the watcher itself takes the channel's lock while it looks). */
bool ll_chan_is_parked_wait(const ll_chan *ch, uintptr_t select_waiter, uintptr_t futex_addr);

#endif
