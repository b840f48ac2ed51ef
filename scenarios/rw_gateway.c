/* rw_gateway - a reader/writer race on disconnect leaves a thread and its session behind.
 *
 * The seed's real incident: a game gateway ran two goroutines per TCP
 * connection, a reader (frames in, replies onto a send queue) and a writer
 * (send queue out onto the socket). After a 3,000-connection load test its
 * memory never came down: on disconnect the reader marked the session closed
 * and woke the writer, but the writer had looked at the flag already and went
 * on to wait for a reply that would never come. One goroutine per leaked
 * connection stayed blocked, and with it the connection's memory.
 *
 * Here with pthreads and real sockets: the gateway listens on 127.0.0.1 (an
 * ephemeral port, announced in the `listening` event); per connection it
 * allocates a session (--session-kb: a read buffer for the largest frame and a
 * send queue of replies) and starts a reader and a writer. rw_client is the
 * load: --connections, --frames echoed frames on each, then disconnect.
 *
 * The race, leaky variant: the writer looks at `closed` under the lock, lets
 * go of it to send, then locks again and waits for the queue - without
 * looking at `closed` again. The client sends its last frame and hangs up at
 * once (it still reads the echo), so the reader sees EOF while the writer is
 * sending that echo: the reader's wake-up finds nobody waiting and is lost,
 * and the writer sleeps forever on the empty queue of a closed session,
 * holding it. A real race: some connections leak, some do not (counter
 * wakeups_lost; 36-92% here). --race-window-us N holds the writer's window
 * open after each send until the reader's next move, at most N us: at
 * 1000000 every connection leaks (the teaching and testing knob).
 *
 * What the tools see after the load, leaky: threads = the listener baseline +
 * one writer per leaked session, all in one census group (futex wait: the
 * session's condition variable); heap in use >= leaked x --session-kb, charged
 * by the heap profile to session_new; memcheck calls the sessions "still
 * reachable" (each blocked writer's stack points at its session).
 *
 * The fix: the writer's wait is a loop that re-checks `closed` under the lock
 * the reader sets it under, and the reader broadcasts; whoever leaves first
 * shuts the socket down so the other's blocking call returns (close() alone
 * does not wake a thread blocked in recv(), and does nothing for a writer
 * blocked on the queue); the session is reference-counted and freed by the
 * last thread out; main joins both threads. Hostile input (a bad length or
 * magic, a truncated frame, a reset) closes that connection and is counted.
 */
#include "leaklab.h"
#include "rw_protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    SEED_CONNECTIONS = 3000, /* the seed's load test */
    QUICK_CONNECTIONS = 200,
    MAX_CONNECTIONS = 50000,
    FRAMES = 10,             /* per connection, exchanged by rw_client */
    MAX_FRAMES = 100000,
    /* A read buffer for the largest frame (16 KiB) and a 48 KiB send queue,
     * the order of a real gateway's per-connection buffers; 3,000 sessions
     * hold 188 MiB, enough to dominate the process at seed scale. */
    SESSION_KB = 64,
    MIN_SESSION_KB = 36,     /* the read buffer plus a queue holding one largest reply */
    MAX_SESSION_KB = 16384,
    MAX_RACE_WINDOW_US = 1000000,
    FD_MARGIN = 64,          /* stdio, events file, listener, eventfd, tools */
    LISTEN_BACKLOG = 4096,   /* the kernel caps it at net.core.somaxconn */
};

/* 6,000 threads at seed scale: glibc's default 8 MiB stacks would reserve
 * 47 GiB of address space, and Valgrind allocates every stack for real. The
 * deepest chain here (recv/send, pthread_cond_wait) needs a few KiB. */
#define THREAD_STACK_BYTES (64 * 1024)

static const ll_option options[] = {
    {"connections", "connections", SEED_CONNECTIONS, QUICK_CONNECTIONS, 1, MAX_CONNECTIONS,
     "connections the load client makes (the driver passes it on); the payload is one session each"},
    {"frames", "frames", FRAMES, FRAMES, 1, MAX_FRAMES, "frames the load client exchanges on each connection"},
    {"session-kb", "KiB", SESSION_KB, SESSION_KB, MIN_SESSION_KB, MAX_SESSION_KB,
     "per-connection session: a 16 KiB read buffer plus the send queue"},
    {"race-window-us", "microseconds", 0, 0, 0, MAX_RACE_WINDOW_US,
     "after each send the writer keeps away from its wait until the reader moves,\n"
     "                       at most this long (0: the natural race; 1000000: every connection leaks)"},
    {0},
};

static atomic_llong accepted, sessions_live, readers_live, writers_live, writers_asleep, frames, rejects, resets,
    wakeups_lost;

static const ll_counter counters[] = {
    {"connections_accepted", &accepted}, {"sessions_live", &sessions_live},   {"readers_live", &readers_live},
    {"writers_live", &writers_live},     {"writers_asleep", &writers_asleep}, {"frames", &frames},
    {"rejects", &rejects},               {"resets", &resets},                 {"wakeups_lost", &wakeups_lost},
    {0},
};

/* Main's record of a connection: outlives the session, so main can join;
 * only the reader writes to it, and main frees it once it has joined. */
struct conn {
    pthread_t reader, writer;
    bool writer_lost; /* set by the reader: its close will not reach the writer (a lost wake-up) */
    struct conn *next;
};

struct session {
    int fd;
    pthread_mutex_t lock;
    pthread_cond_t wake;   /* writer: a reply is queued, or the session closed */
    pthread_cond_t space;  /* reader: the writer sent everything queued */
    pthread_cond_t moved;  /* --race-window-us only: the reader queued a reply or closed */
    unsigned long moves;   /* --race-window-us only: how often it did */
    bool closed;           /* the reader saw the end (or, fixed, the writer lost the peer) */
    bool writer_will_look; /* its next step is a look at `closed`: it sleeps on `wake`, or has not looked yet */
    int refs;              /* fixed: threads still using the session */
    struct conn *conn;
    unsigned char *queue;  /* the send queue: replies in [sent, queued) are still to send */
    size_t queue_size, sent, queued;
    unsigned char rbuf[];  /* RW_MAX_FRAME_BYTES of read buffer, then the send queue */
};

/* File scope, so main's bookkeeping stays reachable for leak checkers. */
static struct gateway {
    ll_run *run;
    bool fixed, drained, stop;
    long long race_window_us;
    size_t session_bytes;
    int listen_fd, wake_fd;
    pthread_t acceptor;
    pthread_mutex_t lock;  /* guards conns, drained, stop */
    pthread_cond_t changed;
    struct conn *conns;
} gw = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

/* One allocation per session; noinline and malloc called here, so heap
 * profiles and memcheck name session_new. Zeroed with explicit_bzero, which
 * the compiler may not turn into calloc (whose fresh pages stay untouched):
 * the buffers are resident, as those of a session that has been used are. */
__attribute__((noinline)) static struct session *session_new(int fd, struct conn *conn)
{
    struct session *s = malloc(gw.session_bytes);
    if (!s)
        ll_refuse(gw.run, "malloc (session)", ENOMEM, "lower --connections or --session-kb");
    explicit_bzero(s, gw.session_bytes);
    s->fd = fd, s->refs = 2, s->conn = conn, s->writer_will_look = true;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->space, NULL);
    pthread_cond_init(&s->moved, NULL);
    s->queue = s->rbuf + RW_MAX_FRAME_BYTES;
    s->queue_size = gw.session_bytes - sizeof *s - RW_MAX_FRAME_BYTES;
    atomic_fetch_add(&sessions_live, 1);
    return s;
}

static void session_free(struct session *s)
{
    close(s->fd);
    pthread_cond_destroy(&s->moved);
    pthread_cond_destroy(&s->space);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
    atomic_fetch_sub(&sessions_live, 1);
}

/* ---- the reader: frames in, echoes onto the send queue ---- */

enum ending { END_EOF, END_RESET, END_REJECT };

/* For the race-window widener only (see race_window): the reader moved. */
static void reader_moved(struct session *s)
{
    s->moves++;
    pthread_cond_broadcast(&s->moved);
}

/* Queues the frame (hdr, then rbuf) as its own echo; false once the session closed. */
static bool queue_reply(struct session *s, const unsigned char *hdr, size_t len)
{
    pthread_mutex_lock(&s->lock);
    while (s->queue_size - s->queued < RW_HEADER_BYTES + len && !s->closed)
        pthread_cond_wait(&s->space, &s->lock);
    bool ok = !s->closed;
    if (ok) { /* the writer sends [sent, queued) unlocked; this lands past it */
        memcpy(s->queue + s->queued, hdr, RW_HEADER_BYTES);
        memcpy(s->queue + s->queued + RW_HEADER_BYTES, s->rbuf, len);
        s->queued += RW_HEADER_BYTES + len;
        pthread_cond_signal(&s->wake);
        reader_moved(s);
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* Frames in, each queued as its own echo, until the stream ends. The decoder
 * (rw_protocol.h) says how many bytes the frame still needs and recv() asks
 * for no more: a bad header is seen before anything after it is read. */
static enum ending read_frames(struct session *s)
{
    rw_decoder frame;
    rw_decoder_init(&frame, s->rbuf);
    for (;;) {
        unsigned char *into;
        size_t want = rw_decoder_want(&frame, &into);
        ssize_t r = recv(s->fd, into, want, 0);
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
        if (!queue_reply(s, frame.header, frame.len))
            return END_EOF; /* fixed: the writer lost the peer */
        atomic_fetch_add(&frames, 1);
    }
}

static void release(struct session *s)
{
    pthread_mutex_lock(&s->lock);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last)
        session_free(s);
}

static void *reader(void *arg)
{
    struct session *s = arg;
    enum ending end = read_frames(s);
    if (end != END_EOF)
        atomic_fetch_add(end == END_REJECT ? &rejects : &resets, 1);

    pthread_mutex_lock(&s->lock);
    s->closed = true;
    /* Bookkeeping: unless the leaky writer's next step is a look at `closed`
     * with nothing left to send, it will sleep again without looking: this
     * wake-up is lost (the writer is sending, or still has replies to send). */
    if (!gw.fixed && !(s->writer_will_look && s->queued == 0)) {
        s->conn->writer_lost = true;
        atomic_fetch_add(&wakeups_lost, 1);
    }
    if (gw.fixed)
        pthread_cond_broadcast(&s->wake); /* FIX: every waiter, and `closed` set under the same lock */
    else
        pthread_cond_signal(&s->wake);
    reader_moved(s);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_sub(&readers_live, 1);
    if (!gw.fixed)
        return NULL; /* leaky: the writer frees the session when it leaves - if it ever does */
    if (end != END_EOF)
        shutdown(s->fd, SHUT_RDWR); /* FIX: drop a hostile or broken peer now; a blocked send returns */
    release(s);                     /* FIX: whoever leaves last frees */
    return NULL;
}

/* ---- the writer: the send queue out onto the socket ---- */

static bool send_all(int fd, const unsigned char *p, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, p + off, len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EINTR)
            return false;
    }
    return true;
}

/* Counts a change main may be waiting for (under gw.lock, so no wake-up of
 * main's is lost). */
static void changed(atomic_llong *counter, int delta)
{
    atomic_fetch_add(counter, delta);
    pthread_mutex_lock(&gw.lock);
    pthread_cond_broadcast(&gw.changed);
    pthread_mutex_unlock(&gw.lock);
}

/* The writer sleeps until the reader signals `wake`, and then looks at
 * `closed` (writer_will_look tells the reader so); writers_asleep tells main. */
static void writer_wait(struct session *s)
{
    s->writer_will_look = true;
    changed(&writers_asleep, 1);
    pthread_cond_wait(&s->wake, &s->lock);
    changed(&writers_asleep, -1);
}

/* The teaching knob, and the one deliberate delay in this file: after its
 * send, the writer stays away from its wait until the reader moves again
 * (queues the next reply, or closes - or had closed already) or
 * --race-window-us pass. A close that comes within the window always lands
 * in it and is lost; the bound only matters when the reader is descheduled
 * between its last reply and its EOF (measured at seed scale on 2 cores: 1 ms
 * caught 97.9-99.5% of the closes, 10 ms 98.9-99.7%, 100 ms all). At 0 the
 * window is the send alone: the natural race. Called with s->lock held. */
static void race_window(struct session *s, unsigned long moves_seen)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + gw.race_window_us * 1000;
    until.tv_sec += ns / 1000000000, until.tv_nsec = ns % 1000000000;
    while (gw.race_window_us > 0 && s->moves == moves_seen && !s->closed &&
           pthread_cond_clockwait(&s->moved, &s->lock, CLOCK_MONOTONIC, &until) != ETIMEDOUT)
        ;
}

/* What is queued and not sent yet, and where it starts. */
static size_t queue_unsent(const struct session *s, const unsigned char **p)
{
    *p = s->queue + s->sent;
    return s->queued - s->sent;
}

/* `len` more bytes are sent; once everything is, the queue starts over. */
static void queue_sent(struct session *s, size_t len)
{
    s->sent += len;
    if (s->sent == s->queued) {
        s->sent = s->queued = 0;
        pthread_cond_signal(&s->space);
    }
}

static void *writer_leaky(void *arg)
{
    struct session *s = arg;
    const unsigned char *p;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        size_t len = queue_unsent(s, &p);
        if (s->closed && len == 0)
            break;
        s->writer_will_look = false; /* it looked; it will not look again before it sleeps */
        unsigned long moves = s->moves;
        pthread_mutex_unlock(&s->lock);
        send_all(s->fd, p, len); /* a failed send is dropped: the reader will see the end */
        pthread_mutex_lock(&s->lock);
        race_window(s, moves);
        queue_sent(s, len);
        if (s->queued == 0)
            writer_wait(s); /* BUG: sleeps without looking at `closed` again */
    }
    pthread_mutex_unlock(&s->lock);
    session_free(s);
    atomic_fetch_sub(&writers_live, 1);
    return NULL;
}

static void *writer_fixed(void *arg)
{
    struct session *s = arg;
    const unsigned char *p;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->queued == 0 && !s->closed) /* FIX: the wait re-checks `closed`, under its lock */
            writer_wait(s);
        size_t len = queue_unsent(s, &p);
        if (len == 0)
            break; /* closed, and every reply sent */
        unsigned long moves = s->moves;
        pthread_mutex_unlock(&s->lock);
        bool sent = send_all(s->fd, p, len);
        pthread_mutex_lock(&s->lock);
        race_window(s, moves); /* the same window: harmless now */
        queue_sent(s, len);
        if (!sent) {
            s->closed = true; /* FIX: the peer is gone: stop, and a reader waiting for room returns */
            pthread_cond_broadcast(&s->space);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    shutdown(s->fd, SHUT_RDWR); /* FIX: a reader blocked in recv() returns (close() would not wake it) */
    atomic_fetch_sub(&writers_live, 1);
    release(s);
    return NULL;
}

/* ---- the listener ---- */

static void start_session(int fd)
{
    struct conn *c = ll_xmalloc(gw.run, sizeof *c);
    *c = (struct conn){0};
    struct session *s = session_new(fd, c);
    atomic_fetch_add(&accepted, 1), atomic_fetch_add(&readers_live, 1), atomic_fetch_add(&writers_live, 1);
    ll_thread_start(gw.run, &c->reader, reader, s);
    ll_thread_start(gw.run, &c->writer, gw.fixed ? writer_fixed : writer_leaky, s);
    pthread_mutex_lock(&gw.lock);
    c->next = gw.conns, gw.conns = c;
    pthread_mutex_unlock(&gw.lock);
}

static void *acceptor(void *arg)
{
    (void)arg;
    struct pollfd p[2] = {{.fd = gw.listen_fd, .events = POLLIN}, {.fd = gw.wake_fd, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            ll_refuse(gw.run, "poll (listener)", errno, "this is a bug; report it with the events file");
        uint64_t n; /* main's request, read before the accepts: what it asks about is queued by now */
        bool asked = read(gw.wake_fd, &n, sizeof n) == sizeof n;
        int fd;
        while ((fd = accept4(gw.listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0 || errno == EINTR || errno == ECONNABORTED)
            if (fd >= 0)
                start_session(fd);
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            ll_refuse(gw.run, "accept4", errno,
                      "one descriptor per connection: raise the open-files limit (ulimit -n, hard: ulimit -Hn) "
                      "or lower --connections");
        if (asked) { /* the backlog is drained: tell main; stop if it asked us to */
            pthread_mutex_lock(&gw.lock);
            gw.drained = true;
            bool stop = gw.stop;
            pthread_cond_broadcast(&gw.changed);
            pthread_mutex_unlock(&gw.lock);
            if (stop)
                return NULL;
        }
    }
}

/* Has the acceptor accept everything queued on the listener (or stop), and
 * hands main the records of the connections accepted so far. */
static struct conn *ask_acceptor(bool stop)
{
    pthread_mutex_lock(&gw.lock);
    gw.drained = false, gw.stop = stop;
    if (eventfd_write(gw.wake_fd, 1) != 0)
        ll_refuse(gw.run, "eventfd_write", errno, "this is a bug; report it with the events file");
    while (!gw.drained)
        pthread_cond_wait(&gw.changed, &gw.lock);
    struct conn *conns = gw.conns;
    gw.conns = NULL;
    pthread_mutex_unlock(&gw.lock);
    return conns;
}

static int listen_loopback(ll_run *run)
{
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* one descriptor per connection: take all we may */
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)(ll_opt(run, "connections") + FD_MARGIN))
        ll_refuse(run, "raising RLIMIT_NOFILE", EMFILE,
                  "The gateway needs --connections + 64 descriptors: raise the hard limit "
                  "(ulimit -Hn; nofile in /etc/security/limits.conf) or lower --connections");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    gw.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (gw.listen_fd < 0 || bind(gw.listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(gw.listen_fd, LISTEN_BACKLOG) != 0 || getsockname(gw.listen_fd, (struct sockaddr *)&addr, &len) != 0)
        ll_refuse(run, "listening on 127.0.0.1:0", errno, "check that the loopback interface is up");
    if ((gw.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        ll_refuse(run, "eventfd", errno, "raise the open-files limit");
    return ntohs(addr.sin_port);
}

static void serve(ll_run *run, bool fixed)
{
    gw.run = run, gw.fixed = fixed;
    gw.race_window_us = ll_opt(run, "race-window-us");
    gw.session_bytes = (size_t)ll_opt(run, "session-kb") * 1024;
    char fields[160];
    snprintf(fields, sizeof fields, "\"port\":%d", listen_loopback(run));
    ll_thread_start(run, &gw.acceptor, acceptor, NULL);
    ll_phase(run, "listening"); /* the baseline: main and the acceptor */
    ll_event(run, "listening", fields);

    ll_await_driver(run, "load-done"); /* the client has made, used and closed its connections */
    /* Every connection it left in the backlog is accepted; every reader then
     * sees EOF and ends; every writer ends too, unless its wake-up was lost. */
    for (struct conn *c = ask_acceptor(false), *next; c; c = next) {
        pthread_join(c->reader, NULL);
        if (!c->writer_lost)
            pthread_join(c->writer, NULL); /* FIX (and leaky's lucky ones): joined, not left as zombies */
        next = c->next;
        free(c); /* a server must not keep a record per connection it ever served */
    }
    pthread_mutex_lock(&gw.lock);
    while (atomic_load(&writers_asleep) < atomic_load(&wakeups_lost)) /* the lost ones: asleep for good */
        pthread_cond_wait(&gw.changed, &gw.lock);
    pthread_mutex_unlock(&gw.lock);
    snprintf(fields, sizeof fields, "\"connections\":%lld,\"sessions_leaked\":%lld,\"wakeups_lost\":%lld",
             atomic_load(&accepted), atomic_load(&sessions_live), atomic_load(&wakeups_lost));
    ll_event(run, "leaked", fields);
    ll_phase(run, "after-load");
    ask_acceptor(true); /* stop serving; blocked writers stay blocked until the process ends */
    pthread_join(gw.acceptor, NULL);
}

static void run_leaky(ll_run *run) { serve(run, false); }
static void run_fixed(ll_run *run) { serve(run, true); }

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "connections"), (uint64_t)ll_opt(run, "session-kb") * 1024,
                         "--connections x --session-kb", why, why_len);
}

static const ll_variant variants[] = {
    {"leaky", "the writer's check of `closed` and its wait are apart: a lost wake-up leaks the session", run_leaky},
    {"fixed", "wait loop re-checks `closed` under the lock, broadcast, shutdown, refcount, join", run_fixed},
    {0},
};

static const ll_scenario scenario = {
    .name = "rw_gateway",
    .summary = "A TCP echo gateway with a reader and a writer thread per connection; on disconnect\n"
               "a lost wake-up leaves the writer blocked, holding the session (the seed's incident).",
    .variants = variants,
    .options = options,
    .counters = counters,
    .payload = payload,
    .thread_stack_bytes = THREAD_STACK_BYTES,
};

int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); }
