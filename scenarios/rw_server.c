/* rw_server.c - rw_gateway's plumbing: the listener, main's wait, the send
 * queue, the race-window widener, the reader's frame loop (why they are
 * apart from the story: rw_server.h). */
#include "rw_server.h"
#include "rw_protocol.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    FD_MARGIN = 64,        /* stdio, events file, listener, eventfd, tools */
    LISTEN_BACKLOG = 4096, /* the kernel caps it at net.core.somaxconn */
};

/* File scope, so main's bookkeeping stays reachable for leak checkers. */
static struct listener {
    ll_run *run;
    rw_server_hooks hooks;
    bool drained, stop;
    int listen_fd, wake_fd;
    pthread_t acceptor;
    pthread_mutex_t lock; /* guards conns, drained, stop */
    pthread_cond_t changed;
    struct conn *conns;
} ls = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

/* ---- the listener ---- */

static void start_session(int fd)
{
    struct conn *c = ll_xmalloc(ls.run, sizeof *c);
    *c = (struct conn){0};
    void *s = ls.hooks.session_new(fd, c);
    atomic_fetch_add(&accepted, 1), atomic_fetch_add(&readers_live, 1), atomic_fetch_add(&writers_live, 1);
    ll_thread_start(ls.run, &c->reader, ls.hooks.reader, s);
    ll_thread_start(ls.run, &c->writer, ls.hooks.writer, s);
    pthread_mutex_lock(&ls.lock);
    c->next = ls.conns, ls.conns = c;
    pthread_mutex_unlock(&ls.lock);
}

static void *acceptor(void *arg)
{
    (void)arg;
    struct pollfd p[2] = {{.fd = ls.listen_fd, .events = POLLIN}, {.fd = ls.wake_fd, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            ll_refuse(ls.run, "poll (listener)", errno, "this is a bug; report it with the events file");
        uint64_t n; /* main's request, read before the accepts: what it asks about is queued by now */
        bool asked = read(ls.wake_fd, &n, sizeof n) == sizeof n;
        int fd;
        while ((fd = accept4(ls.listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0 || errno == EINTR || errno == ECONNABORTED)
            if (fd >= 0)
                start_session(fd);
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            ll_refuse(ls.run, "accept4", errno,
                      "one descriptor per connection: raise the open-files limit (ulimit -n, hard: ulimit -Hn) "
                      "or lower --connections");
        if (asked) { /* the backlog is drained: tell main; stop if it asked us to */
            pthread_mutex_lock(&ls.lock);
            ls.drained = true;
            bool stop = ls.stop;
            pthread_cond_broadcast(&ls.changed);
            pthread_mutex_unlock(&ls.lock);
            if (stop)
                return NULL;
        }
    }
}

struct conn *ask_acceptor(bool stop)
{
    pthread_mutex_lock(&ls.lock);
    ls.drained = false, ls.stop = stop;
    if (eventfd_write(ls.wake_fd, 1) != 0)
        ll_refuse(ls.run, "eventfd_write", errno, "this is a bug; report it with the events file");
    while (!ls.drained)
        pthread_cond_wait(&ls.changed, &ls.lock);
    struct conn *conns = ls.conns;
    ls.conns = NULL;
    pthread_mutex_unlock(&ls.lock);
    return conns;
}

/* The socket calls are rw_protocol.c's; the gateway reports their failures. */
int rw_server_start(ll_run *run, long long connections, const rw_server_hooks *hooks)
{
    ls.run = run, ls.hooks = *hooks;
    unsigned long long limit;
    if (!rw_raise_fd_limit((long)connections + FD_MARGIN, &limit))
        ll_refuse(run, "raising RLIMIT_NOFILE", EMFILE,
                  "The gateway needs --connections + 64 descriptors: raise the hard limit "
                  "(ulimit -Hn; nofile in /etc/security/limits.conf) or lower --connections");
    int port;
    if ((ls.listen_fd = rw_listen_loopback(LISTEN_BACKLOG, &port)) < 0)
        ll_refuse(run, "listening on 127.0.0.1:0", errno, "check that the loopback interface is up");
    if ((ls.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        ll_refuse(run, "eventfd", errno, "raise the open-files limit");
    ll_thread_start(run, &ls.acceptor, acceptor, NULL);
    return port;
}

void rw_server_stop(void)
{
    ask_acceptor(true);
    pthread_join(ls.acceptor, NULL);
}

/* ---- main's wait ---- */

void changed(atomic_llong *counter, int delta)
{
    atomic_fetch_add(counter, delta);
    pthread_mutex_lock(&ls.lock);
    pthread_cond_broadcast(&ls.changed);
    pthread_mutex_unlock(&ls.lock);
}

void wait_until_at_least(atomic_llong *count, atomic_llong *target)
{
    pthread_mutex_lock(&ls.lock);
    while (atomic_load(count) < atomic_load(target))
        pthread_cond_wait(&ls.changed, &ls.lock);
    pthread_mutex_unlock(&ls.lock);
}

/* ---- the send queue ---- */

void queue_init(struct send_queue *q, unsigned char *buf, size_t size)
{
    q->buf = buf, q->size = size, q->sent = q->queued = 0;
    pthread_cond_init(&q->space, NULL);
}

void queue_destroy(struct send_queue *q) { pthread_cond_destroy(&q->space); }

bool queue_has_room(const struct send_queue *q, size_t len) { return q->size - q->queued >= RW_HEADER_BYTES + len; }

void queue_append(struct send_queue *q, const unsigned char *hdr, const unsigned char *payload, size_t len)
{
    memcpy(q->buf + q->queued, hdr, RW_HEADER_BYTES);
    memcpy(q->buf + q->queued + RW_HEADER_BYTES, payload, len);
    q->queued += RW_HEADER_BYTES + len;
}

size_t queue_unsent(const struct send_queue *q, const unsigned char **p)
{
    *p = q->buf + q->sent;
    return q->queued - q->sent;
}

void queue_sent(struct send_queue *q, size_t len)
{
    q->sent += len;
    if (q->sent == q->queued) {
        q->sent = q->queued = 0;
        pthread_cond_signal(&q->space);
    }
}

/* ---- the race-window widener ---- */

void window_init(struct race_window *w)
{
    pthread_cond_init(&w->moved, NULL);
    w->moves = 0;
}

void window_destroy(struct race_window *w) { pthread_cond_destroy(&w->moved); }

void reader_moved(struct race_window *w)
{
    w->moves++;
    pthread_cond_broadcast(&w->moved);
}

void race_window(struct race_window *w, pthread_mutex_t *lock, unsigned long moves_seen, bool closed, long long us)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + us * 1000;
    until.tv_sec += ns / 1000000000, until.tv_nsec = ns % 1000000000;
    while (us > 0 && w->moves == moves_seen && !closed &&
           pthread_cond_clockwait(&w->moved, lock, CLOCK_MONOTONIC, &until) != ETIMEDOUT)
        ;
}

/* ---- the reader's frame loop ---- */

enum ending read_frames(int fd, unsigned char *rbuf, bool (*reply)(void *session, const unsigned char *hdr, size_t len),
                        void *session)
{
    rw_decoder frame;
    rw_decoder_init(&frame, rbuf);
    for (;;) {
        unsigned char *into;
        size_t want = rw_decoder_want(&frame, &into);
        ssize_t r = recv(fd, into, want, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return END_RESET;
        if (r == 0) /* the stream ended: between frames, or inside one */
            return rw_decoder_between_frames(&frame) ? END_EOF : END_REJECT;
        rw_verdict v = rw_decoder_took(&frame, (size_t)r);
        if (v == RW_NEED_MORE)
            continue;
        if (v != RW_FRAME)
            return END_REJECT; /* garbage, or a length no frame may have: never read on */
        if (!reply(session, frame.header, frame.len))
            return END_EOF; /* fixed: the writer lost the peer */
        atomic_fetch_add(&frames, 1);
    }
}
