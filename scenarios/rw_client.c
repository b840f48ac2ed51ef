/* rw_client - the load client of rw_gateway (not a scenario: a helper the driver runs).
 *
 * Load mode (the default): opens --connections to the gateway on
 * 127.0.0.1:--port, the way the seed's load test did: every connection
 * exchanges its first frame, then waits until all of them have (so all the
 * sessions exist at once), then exchanges its other --frames - 1 frames and
 * disconnects right after its last echo. Each echo is checked byte for byte.
 * The last frame goes out with the goodbye (shutdown(SHUT_WR) at once): that
 * is what lands the gateway's EOF in its writer's race window.
 *
 * Hostile mode (--hostile, rw_hostile.c): one connection per kind of bad
 * input, checking that the gateway closes each, then a normal one.
 *
 * One thread, non-blocking sockets, epoll. Bounded in count (each connection
 * ends: done, failed, or cut at the deadline) and in time (--timeout), so it
 * always stops by itself. Prints a one-line summary, and with --json FILE the
 * same as JSON. Exit codes: 0 every exchange done, 1 some failed, 2 bad usage,
 * 99 a refused resource (descriptors, memory) or the deadline.
 *
 * Here is the load's state machine and main; the command line and the
 * helpers both modes use are rw_client_cli.c's, the frames and the socket
 * calls rw_protocol.c's, shared with the gateway (rw_client.h).
 */
#include "rw_client.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    MAX_CONNECTING = 512,   /* connects in flight at once: stay well inside the accept backlog */
    FD_MARGIN = 16,
    EVENTS = 256,
};

/* ---- the load ---- */

enum state { C_NEW, C_CONNECTING, C_SEND, C_RECV, C_HOLD, C_DONE, C_FAILED };
enum error { E_CONNECT, E_RESET, E_EOF, E_MISMATCH, E_CUT, E_KINDS };
static const char *const error_names[E_KINDS] = {"connect", "reset", "eof", "mismatch", "cut_at_deadline"};

struct conn {
    int fd;
    enum state state;
    unsigned frame; /* the frame being exchanged */
    size_t off;     /* bytes of it sent, or of its echo received */
    bool arrived;   /* past the first echo (or failed): counted at the barrier */
};

static struct conn *conns;
static int ep;
static long opened, connecting, arrived, finished, connected, completed, frames_echoed;
static long errors[E_KINDS];
static bool released;

static void watch(long i, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)i};
    epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev);
}

static void next_step(long i);

static void arrive(long i)
{
    if (conns[i].arrived)
        return;
    conns[i].arrived = true;
    if (++arrived < opt.connections)
        return;
    released = true; /* every connection is past its first echo: go on, all at once */
    for (long j = 0; j < opt.connections; j++)
        if (conns[j].state == C_HOLD)
            next_step(j);
}

static void finish(long i, enum state st, int err)
{
    struct conn *c = &conns[i];
    if (c->state == C_CONNECTING)
        connecting--;
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = st;
    finished++;
    if (st == C_FAILED)
        errors[err]++;
    else
        completed++;
    arrive(i);
}

static void send_more(long i)
{
    struct conn *c = &conns[i];
    size_t len = frame_len();
    while (c->off < len) {
        size_t n = len - c->off;
        for (size_t k = 0; k < n; k++)
            scratch[k] = frame_byte((unsigned)i, c->frame, c->off + k);
        ssize_t r = send(c->fd, scratch, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(i, EPOLLOUT);
            return;
        }
        if (r < 0) {
            finish(i, C_FAILED, errno == ECONNRESET || errno == EPIPE ? E_RESET : E_EOF);
            return;
        }
        c->off += (size_t)r;
    }
    /* The last frame after the hold goes out with the goodbye: the client
     * shuts its sending side at once (it still reads the echo), so the
     * gateway's reader sees EOF while the writer is sending that echo. */
    if (released && c->frame + 1 == (unsigned)opt.frames)
        shutdown(c->fd, SHUT_WR);
    c->state = C_RECV, c->off = 0;
    watch(i, EPOLLIN);
}

static void next_step(long i)
{
    struct conn *c = &conns[i];
    if (c->frame == (unsigned)opt.frames) {
        finish(i, C_DONE, 0); /* disconnect right after the last echo */
        return;
    }
    c->state = C_SEND, c->off = 0;
    send_more(i);
}

static void receive(long i)
{
    struct conn *c = &conns[i];
    size_t len = frame_len();
    for (;;) {
        ssize_t r = recv(c->fd, scratch, len - c->off, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            finish(i, C_FAILED, r == 0 ? E_EOF : E_RESET);
            return;
        }
        for (ssize_t k = 0; k < r; k++)
            if (scratch[k] != frame_byte((unsigned)i, c->frame, c->off + (size_t)k)) {
                finish(i, C_FAILED, E_MISMATCH);
                return;
            }
        c->off += (size_t)r;
        if (c->off < len)
            continue;
        frames_echoed++;
        c->frame++;
        if (c->frame == 1 && !released) { /* hold until every connection got here */
            c->state = C_HOLD;
            watch(i, EPOLLIN);
            arrive(i);
            return;
        }
        next_step(i);
        return;
    }
}

static void open_more(void)
{
    while (opened < opt.connections && connecting < MAX_CONNECTING) {
        long i = opened++;
        struct conn *c = &conns[i];
        c->fd = open_socket();
        if (c->fd < 0) {
            c->state = C_CONNECTING, connecting++;
            finish(i, C_FAILED, E_CONNECT);
            continue;
        }
        c->state = C_CONNECTING, connecting++;
        struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
            fprintf(stderr, "rw_client: epoll_ctl: %s\n", strerror(errno));
            exit(EXIT_SYSTEM);
        }
    }
}

static void handle(long i, uint32_t events)
{
    struct conn *c = &conns[i];
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            finish(i, C_FAILED, E_CONNECT);
            return;
        }
        connecting--, connected++;
        next_step(i);
    } else if (c->state == C_SEND) {
        send_more(i);
    } else if (c->state == C_RECV) {
        receive(i);
    } else if (c->state == C_HOLD) {
        finish(i, C_FAILED, (events & EPOLLERR) ? E_RESET : E_EOF); /* nothing may arrive while held */
    }
}

static bool run_load(void)
{
    conns = calloc((size_t)opt.connections, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || ep < 0) {
        fprintf(stderr, "rw_client: %s: %s\n", conns ? "epoll_create1" : "calloc", strerror(errno));
        exit(EXIT_SYSTEM);
    }
    struct epoll_event evs[EVENTS];
    bool timed_out = false;
    while (finished < opt.connections) {
        open_more();
        if (finished >= opt.connections)
            break;
        int wait = rw_ms_left(deadline_ms);
        if (wait == 0) {
            timed_out = true;
            break;
        }
        int n = epoll_wait(ep, evs, EVENTS, wait);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "rw_client: epoll_wait: %s\n", strerror(errno));
            exit(EXIT_SYSTEM);
        }
        for (int k = 0; k < n; k++)
            if (conns[evs[k].data.u64].fd >= 0)
                handle((long)evs[k].data.u64, evs[k].events);
    }
    errors[E_CUT] += opt.connections - opened; /* the deadline came first: never opened, or still open */
    for (long i = 0; i < opened; i++)
        if (conns[i].fd >= 0) {
            close(conns[i].fd);
            errors[E_CUT]++;
        }
    return timed_out;
}

/* ---- the summary ---- */

static void write_summary(FILE *f, const char *results, long failed, bool timed_out)
{
    if (opt.hostile) {
        hostile_summary(f, results, failed);
        return;
    }
    fprintf(f, "{\"mode\":\"load\",\"connections\":%ld,\"frames_per_connection\":%ld,\"frame_bytes\":%ld,"
            "\"connected\":%ld,\"completed\":%ld,\"frames_echoed\":%ld,\"failed\":%ld,\"errors\":{",
            opt.connections, opt.frames, opt.frame_bytes, connected, completed, frames_echoed, failed);
    for (int k = 0; k < E_KINDS; k++)
        fprintf(f, "%s\"%s\":%ld", k ? "," : "", error_names[k], errors[k]);
    fprintf(f, "},\"timed_out\":%s,\"elapsed_s\":%.3f}\n", timed_out ? "true" : "false", elapsed_s());
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    start_clock();
    setvbuf(stdout, NULL, _IOLBF, 0);
    raise_fd_limit((opt.hostile ? 1 : opt.connections) + FD_MARGIN);

    char results[1024] = "";
    long failed = 0;
    bool timed_out = false;
    if (opt.hostile) {
        failed = run_hostile(results, sizeof results);
        timed_out = rw_ms_left(deadline_ms) == 0;
    } else {
        timed_out = run_load();
        for (int k = 0; k < E_KINDS; k++)
            failed += errors[k];
        printf("rw_client: %ld connections, %ld completed, %ld frames echoed, %ld failed%s in %.3f s\n",
               opt.connections, completed, frames_echoed, failed, timed_out ? " (deadline reached)" : "", elapsed_s());
    }
    write_summary(stdout, results, failed, timed_out);
    if (opt.json) {
        FILE *f = fopen(opt.json, "w");
        if (!f || (write_summary(f, results, failed, timed_out), fclose(f) != 0)) {
            fprintf(stderr, "rw_client: --json: cannot write '%s': %s\n", opt.json, strerror(errno));
            return EXIT_SYSTEM;
        }
    }
    return timed_out ? EXIT_SYSTEM : failed ? EXIT_FAILED : EXIT_OK;
}
