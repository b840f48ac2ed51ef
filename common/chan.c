/* chan.c - ll_chan, a bounded channel of pointers that reads like Go's:
 * send blocks while full, recv blocks while empty, close wakes every waiter.
 * One mutex and two condition variables; every state change that a waiter
 * could be waiting for is made under the mutex and followed by a broadcast,
 * so no wake-up is lost (the mistake rw_gateway's leaky writer makes). */
#include "leaklab.h"

#include <stdlib.h>

struct ll_chan {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    pthread_cond_t receivers_changed; /* for ll_chan_await_receivers */
    void **ring;
    size_t capacity, head, count;
    size_t receivers_waiting, receivers_awaited;
    bool closed;
};

ll_chan *ll_chan_new(ll_run *run, size_t capacity)
{
    if (capacity == 0)
        capacity = 1;
    ll_chan *ch = ll_xmalloc(run, sizeof *ch);
    *ch = (ll_chan){.capacity = capacity, .ring = ll_xmalloc(run, capacity * sizeof(void *))};
    pthread_mutex_init(&ch->lock, NULL);
    pthread_cond_init(&ch->not_empty, NULL);
    pthread_cond_init(&ch->not_full, NULL);
    pthread_cond_init(&ch->receivers_changed, NULL);
    return ch;
}

bool ll_chan_send(ll_chan *ch, void *item)
{
    pthread_mutex_lock(&ch->lock);
    while (ch->count == ch->capacity && !ch->closed)
        pthread_cond_wait(&ch->not_full, &ch->lock);
    bool sent = !ch->closed;
    if (sent) {
        ch->ring[(ch->head + ch->count++) % ch->capacity] = item;
        pthread_cond_signal(&ch->not_empty);
    }
    pthread_mutex_unlock(&ch->lock);
    return sent;
}

bool ll_chan_recv(ll_chan *ch, void **item)
{
    pthread_mutex_lock(&ch->lock);
    while (ch->count == 0 && !ch->closed) {
        if (++ch->receivers_waiting == ch->receivers_awaited)
            pthread_cond_signal(&ch->receivers_changed);
        pthread_cond_wait(&ch->not_empty, &ch->lock);
        ch->receivers_waiting--;
    }
    bool received = ch->count > 0; /* a closed channel still drains */
    if (received) {
        *item = ch->ring[ch->head];
        ch->head = (ch->head + 1) % ch->capacity;
        ch->count--;
        pthread_cond_signal(&ch->not_full);
    }
    pthread_mutex_unlock(&ch->lock);
    return received;
}

void ll_chan_close(ll_chan *ch)
{
    pthread_mutex_lock(&ch->lock);
    ch->closed = true;
    pthread_cond_broadcast(&ch->not_empty);
    pthread_cond_broadcast(&ch->not_full);
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
    pthread_cond_destroy(&ch->receivers_changed);
    free(ch->ring);
    free(ch);
}
