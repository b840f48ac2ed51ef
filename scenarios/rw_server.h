/* rw_server.h - rw_gateway's plumbing: the parts of a threaded TCP gateway
 * that are not the lesson (rw_server.c).
 *
 * rw_gateway.c tells the story - the session, the reader's close, the leaky
 * and the fixed writer side by side, main's joins - and is read in one
 * sitting; what it stands on is here: the listener (an acceptor thread that
 * accepts on 127.0.0.1 and starts each connection's reader and writer, and
 * the records main joins them by), the wait main and the writers share, the
 * send queue a reader fills and its writer empties, the race-window widener
 * (--race-window-us: instrumentation, not the bug) and the reader's frame
 * loop. rw_protocol.c has the frames and the socket calls the client shares.
 * Gateway-only: it uses the harness (leaklab.h); rw_client does not.
 *
 * The symbols the tools name stay where they were: session_new, reader and
 * the writers are the gateway's (static, handed over as pointers;
 * writer_wait is LL_WAIT_SITE, a frame of its own); acceptor (with
 * start_session inlined into it, as before) is here, so heap profiles still
 * charge the sessions to session_new <- acceptor.
 */
#ifndef RW_SERVER_H
#define RW_SERVER_H

#include "leaklab.h"

#include <stdbool.h>
#include <stddef.h>

/* The gateway's counters (its `counters` table, in rw_gateway.c, names
 * them); the listener counts a connection and its two threads. */
extern atomic_llong accepted, sessions_live, readers_live, writers_live, writers_asleep, frames, rejects, resets,
    wakeups_lost;

/* ---- the listener ---- */

/* Main's record of a connection: outlives the session, so main can join;
 * only the reader writes to it, and main frees it once it has joined. */
struct conn {
    pthread_t reader, writer;
    bool writer_lost; /* set by the reader: its close will not reach the writer (a lost wake-up) */
    struct conn *next;
};

/* What the gateway runs per accepted connection: the session both threads
 * get (made by session_new(fd, record)), the reader and the writer. */
typedef struct rw_server_hooks {
    void *(*session_new)(int fd, struct conn *conn);
    void *(*reader)(void *session);
    void *(*writer)(void *session);
} rw_server_hooks;

/* Listens on 127.0.0.1 (an ephemeral port: returned) with the open-files
 * limit raised for `connections`, and starts the acceptor thread. Exits 99
 * (ll_refuse) saying what to raise if the system refuses. */
int rw_server_start(ll_run *run, long long connections, const rw_server_hooks *hooks);

/* Has the acceptor accept everything queued on the listener (or stop), and
 * hands main the records of the connections accepted since the last call. */
struct conn *ask_acceptor(bool stop);

/* Stops the acceptor and joins it; sessions and their threads stay. */
void rw_server_stop(void);

/* Counts a change main may be waiting for, and wakes it (under the
 * listener's lock, so no wake-up of main's is lost). */
void changed(atomic_llong *counter, int delta);

/* Main: returns once *count >= *target; both only grow through changed(). */
void wait_until_at_least(atomic_llong *count, atomic_llong *target);

/* ---- the send queue: a session's replies, guarded by the session's lock ---- */

/* The reader appends whole echoes; the writer sends [sent, queued)
 * unlocked (the reader appends past it) and then marks it sent. */
struct send_queue {
    unsigned char *buf;
    size_t size, sent, queued;
    pthread_cond_t space; /* the reader waits here: the writer sent everything queued */
};

void queue_init(struct send_queue *q, unsigned char *buf, size_t size);
void queue_destroy(struct send_queue *q);
bool queue_has_room(const struct send_queue *q, size_t len);
/* Appends a frame: its header, then `len` bytes of payload. */
void queue_append(struct send_queue *q, const unsigned char *hdr, const unsigned char *payload, size_t len);
/* What is queued and not sent yet, and where it starts. */
size_t queue_unsent(const struct send_queue *q, const unsigned char **p);
/* `len` more bytes are sent; once everything is, the queue starts over and
 * a reader waiting for room is woken. */
void queue_sent(struct send_queue *q, size_t len);

/* ---- the race-window widener (--race-window-us), the teaching knob ---- */

/* The reader's moves: it queued a reply, or closed (under the session's lock). */
struct race_window {
    pthread_cond_t moved;
    unsigned long moves;
};

void window_init(struct race_window *w);
void window_destroy(struct race_window *w);
void reader_moved(struct race_window *w);

/* The one deliberate delay of the gateway: after its send, the writer stays
 * away from its wait until the reader moves again (queues the next reply,
 * or closes - or had closed already: `closed`) or `us` microseconds pass. A
 * close that comes within the window always lands in it and is lost; the
 * bound only matters when the reader is descheduled between its last reply
 * and its EOF (measured at seed scale on 2 cores: 1 ms caught 97.9-99.5% of
 * the closes, 10 ms 98.9-99.7%, 100 ms all). At 0 the window is the send
 * alone: the natural race. Called with `lock` (the session's) held;
 * `moves_seen` is w->moves as it was before the send. */
void race_window(struct race_window *w, pthread_mutex_t *lock, unsigned long moves_seen, bool closed, long long us);

/* ---- the reader's frame loop ---- */

enum ending { END_EOF, END_RESET, END_REJECT };

/* Frames in from `fd` into `rbuf` (RW_MAX_FRAME_BYTES), each handed to
 * reply(session, header, payload length) until the stream ends or reply()
 * says the session closed (END_EOF). The decoder (rw_protocol.c) says how
 * many bytes the frame still needs and recv() asks for no more: a bad
 * header is seen before anything after it is read. */
enum ending read_frames(int fd, unsigned char *rbuf, bool (*reply)(void *session, const unsigned char *hdr, size_t len),
                        void *session);

#endif
