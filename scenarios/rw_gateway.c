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
 * 1000000 every connection leaks (the teaching and testing knob; it and the
 * rest of the plumbing - listener, send queue, frame loop - are rw_server.c's).
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
#include "rw_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

atomic_llong accepted, sessions_live, readers_live, writers_live, writers_asleep, frames, rejects, resets,
    wakeups_lost;

static const ll_counter counters[] = {
    {"connections_accepted", &accepted}, {"sessions_live", &sessions_live},   {"readers_live", &readers_live},
    {"writers_live", &writers_live},     {"writers_asleep", &writers_asleep}, {"frames", &frames},
    {"rejects", &rejects},               {"resets", &resets},                 {"wakeups_lost", &wakeups_lost},
    {0},
};

struct session {
    int fd;
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* writer: a reply is queued, or the session closed */
    bool closed;               /* the reader saw the end (or, fixed, the writer lost the peer) */
    bool writer_will_look;     /* its next step is a look at `closed`: it sleeps on `wake`, or has not looked yet */
    int refs;                  /* fixed: threads still using the session */
    struct conn *conn;         /* main's record (rw_server.h) */
    struct send_queue queue;   /* the replies still to send (rw_server.h) */
    struct race_window window; /* --race-window-us only: the reader's moves (rw_server.h) */
    unsigned char rbuf[];      /* RW_MAX_FRAME_BYTES of read buffer, then the send queue's bytes */
};

static struct gateway {
    ll_run *run;
    bool fixed;
    long long race_window_us;
    size_t session_bytes;
} gw;

/* One allocation per session; noinline and malloc called here, so heap
 * profiles and memcheck name session_new. Zeroed with explicit_bzero, which
 * the compiler may not turn into calloc (whose fresh pages stay untouched):
 * the buffers are resident, as those of a session that has been used are. */
__attribute__((noinline)) static void *session_new(int fd, struct conn *conn)
{
    struct session *s = malloc(gw.session_bytes);
    if (!s)
        ll_refuse(gw.run, "malloc (session)", ENOMEM, "lower --connections or --session-kb");
    explicit_bzero(s, gw.session_bytes);
    s->fd = fd, s->refs = 2, s->conn = conn, s->writer_will_look = true;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    window_init(&s->window);
    queue_init(&s->queue, s->rbuf + RW_MAX_FRAME_BYTES, gw.session_bytes - sizeof *s - RW_MAX_FRAME_BYTES);
    atomic_fetch_add(&sessions_live, 1);
    return s;
}

static void session_free(struct session *s)
{
    close(s->fd);
    window_destroy(&s->window);
    queue_destroy(&s->queue);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
    atomic_fetch_sub(&sessions_live, 1);
}

/* ---- the reader: frames in, echoes onto the send queue ---- */

/* Queues the frame (hdr, then rbuf) as its own echo; false once the session
 * closed. read_frames (rw_server.c) calls it for every frame. */
static bool queue_reply(void *session, const unsigned char *hdr, size_t len)
{
    struct session *s = session;
    pthread_mutex_lock(&s->lock);
    while (!queue_has_room(&s->queue, len) && !s->closed)
        pthread_cond_wait(&s->queue.space, &s->lock);
    bool ok = !s->closed;
    if (ok) {
        queue_append(&s->queue, hdr, s->rbuf, len);
        pthread_cond_signal(&s->wake);
        reader_moved(&s->window);
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
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
    enum ending end = read_frames(s->fd, s->rbuf, queue_reply, s);
    if (end != END_EOF)
        atomic_fetch_add(end == END_REJECT ? &rejects : &resets, 1);

    pthread_mutex_lock(&s->lock);
    s->closed = true;
    /* Bookkeeping: unless the leaky writer's next step is a look at `closed`
     * with nothing left to send, it will sleep again without looking: this
     * wake-up is lost (the writer is sending, or still has replies to send). */
    if (!gw.fixed && !(s->writer_will_look && s->queue.queued == 0)) {
        s->conn->writer_lost = true;
        atomic_fetch_add(&wakeups_lost, 1);
    }
    if (gw.fixed)
        pthread_cond_broadcast(&s->wake); /* FIX: every waiter, and `closed` set under the same lock */
    else
        pthread_cond_signal(&s->wake);
    reader_moved(&s->window);
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

/* The writer sleeps until the reader signals `wake`, and then looks at
 * `closed` (writer_will_look tells the reader so); writers_asleep tells main.
 * A frame of its own (LL_WAIT_SITE), so the census and the tools name it. */
LL_WAIT_SITE static void writer_wait(struct session *s)
{
    s->writer_will_look = true;
    changed(&writers_asleep, 1);
    pthread_cond_wait(&s->wake, &s->lock);
    changed(&writers_asleep, -1);
}

static void *writer_leaky(void *arg)
{
    struct session *s = arg;
    const unsigned char *p;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        size_t len = queue_unsent(&s->queue, &p);
        if (s->closed && len == 0)
            break;
        s->writer_will_look = false; /* it looked; it will not look again before it sleeps */
        unsigned long moves = s->window.moves;
        pthread_mutex_unlock(&s->lock);
        rw_send_all(s->fd, p, len); /* a failed send is dropped: the reader will see the end */
        pthread_mutex_lock(&s->lock);
        race_window(&s->window, &s->lock, moves, s->closed, gw.race_window_us); /* --race-window-us */
        queue_sent(&s->queue, len);
        if (s->queue.queued == 0)
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
        while (s->queue.queued == 0 && !s->closed) /* FIX: the wait re-checks `closed`, under its lock */
            writer_wait(s);
        size_t len = queue_unsent(&s->queue, &p);
        if (len == 0)
            break; /* closed, and every reply sent */
        unsigned long moves = s->window.moves;
        pthread_mutex_unlock(&s->lock);
        bool sent = rw_send_all(s->fd, p, len);
        pthread_mutex_lock(&s->lock);
        /* the same window: harmless now */
        race_window(&s->window, &s->lock, moves, s->closed, gw.race_window_us);
        queue_sent(&s->queue, len);
        if (!sent) {
            s->closed = true; /* FIX: the peer is gone: stop, and a reader waiting for room returns */
            pthread_cond_broadcast(&s->queue.space);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    shutdown(s->fd, SHUT_RDWR); /* FIX: a reader blocked in recv() returns (close() would not wake it) */
    atomic_fetch_sub(&writers_live, 1);
    release(s);
    return NULL;
}

static void serve(ll_run *run, bool fixed)
{
    gw.run = run, gw.fixed = fixed;
    gw.race_window_us = ll_opt(run, "race-window-us");
    gw.session_bytes = (size_t)ll_opt(run, "session-kb") * 1024;
    const rw_server_hooks hooks = {session_new, reader, fixed ? writer_fixed : writer_leaky};
    char fields[160];
    snprintf(fields, sizeof fields, "\"port\":%d", rw_server_start(run, ll_opt(run, "connections"), &hooks));
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
    wait_until_at_least(&writers_asleep, &wakeups_lost); /* the lost ones: asleep for good */
    snprintf(fields, sizeof fields, "\"connections\":%lld,\"sessions_leaked\":%lld,\"wakeups_lost\":%lld",
             atomic_load(&accepted), atomic_load(&sessions_live), atomic_load(&wakeups_lost));
    ll_event(run, "leaked", fields);
    ll_phase(run, "after-load");
    rw_server_stop(); /* blocked writers stay blocked until the process ends */
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
