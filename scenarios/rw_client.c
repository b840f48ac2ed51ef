/* rw_client - the load client of rw_gateway (not a scenario: a helper the driver runs).
 *
 * Load mode (the default): opens --connections to the gateway on
 * 127.0.0.1:--port, the way the seed's load test did: every connection
 * exchanges its first frame, then waits until all of them have (so all the
 * sessions exist at once), then exchanges its other --frames - 1 frames and
 * disconnects right after its last echo. Each echo is checked byte for byte.
 *
 * Hostile mode (--hostile): one connection per kind of bad input - an
 * oversize length, garbage, a truncated frame, an abrupt reset, a half-close
 * - checking that the gateway closes each (or, for the half-close, still
 * sends the echoes), then one normal connection that must be served.
 *
 * One thread, non-blocking sockets, epoll. Bounded in count (each connection
 * ends: done, failed, or cut at the deadline) and in time (--timeout), so it
 * always stops by itself. Prints a one-line summary, and with --json FILE the
 * same as JSON. Exit codes: 0 every exchange done, 1 some failed, 2 bad usage,
 * 99 a refused resource (descriptors, memory) or the deadline.
 */
#include "rw_protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_SYSTEM = 99,
    DEF_CONNECTIONS = 3000, MAX_CONNECTIONS = 50000, DEF_FRAMES = 10, MAX_FRAMES = 100000,
    DEF_FRAME_BYTES = 512, DEF_TIMEOUT_S = 300, MAX_TIMEOUT_S = 86400,
    MAX_CONNECTING = 512,   /* connects in flight at once: stay well inside the accept backlog */
    FD_MARGIN = 16,
    EVENTS = 256,
    CASE_TIMEOUT_MS = 5000, /* hostile mode: how long the gateway may take to close a bad connection */
    HALF_CLOSE_FRAMES = 3,
};

static struct {
    int port;
    long connections, frames, frame_bytes, timeout_s;
    const char *json;
    bool hostile;
} opt = {0, DEF_CONNECTIONS, DEF_FRAMES, DEF_FRAME_BYTES, DEF_TIMEOUT_S, NULL, false};

static struct timespec started;
static unsigned char scratch[RW_HEADER_BYTES + RW_MAX_FRAME_BYTES];

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static double elapsed_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - started.tv_sec) + (double)(t.tv_nsec - started.tv_nsec) / 1e9;
}

static long long deadline_ms;

static int ms_left(long long until)
{
    long long left = (until < deadline_ms ? until : deadline_ms) - now_ms();
    return left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

/* Byte `pos` of frame `frame` of connection `id`: header, then a pattern
 * that differs per connection and frame, so a misrouted echo is caught. */
static unsigned char frame_byte(unsigned id, unsigned frame, size_t pos)
{
    if (pos < RW_HEADER_BYTES) {
        unsigned char hdr[RW_HEADER_BYTES];
        rw_encode_header(hdr, (uint32_t)opt.frame_bytes);
        return hdr[pos];
    }
    return (unsigned char)(id * 131u + frame * 31u + (unsigned)pos);
}

static size_t frame_len(void) { return RW_HEADER_BYTES + (size_t)opt.frame_bytes; }

static int open_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "rw_client: socket: %s; raise the open-files limit (ulimit -n) or lower --connections\n",
                strerror(errno));
        exit(EXIT_SYSTEM);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- load mode ---- */

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
        int wait = ms_left(deadline_ms);
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

/* ---- hostile mode: one connection per kind of bad input ---- */

static long long case_until;

static int h_connect(void)
{
    int fd = open_socket();
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    if (fd < 0 || poll(&p, 1, ms_left(case_until)) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static bool h_send(int fd, const unsigned char *buf, size_t len)
{
    for (size_t off = 0; off < len;) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, ms_left(case_until)) != 1)
            return false;
        ssize_t r = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        off += r > 0 ? (size_t)r : 0;
    }
    return true;
}

/* Reads `len` bytes: 1 done, 0 the gateway closed (EOF or reset), -1 timeout. */
static int h_recv(int fd, unsigned char *buf, size_t len)
{
    for (size_t off = 0; off < len;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms_left(case_until)) != 1)
            return -1;
        ssize_t r = recv(fd, buf + off, len - off, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return 0;
        off += r > 0 ? (size_t)r : 0;
    }
    return 1;
}

static const char *h_expect_closed(int fd)
{
    unsigned char sink[4096];
    for (;;) {
        int r = h_recv(fd, sink, 1);
        if (r == 0)
            return NULL;
        if (r < 0)
            return "the gateway did not close the connection";
    }
}

static const char *h_exchange(int fd, unsigned id, unsigned frames)
{
    size_t len = frame_len();
    for (unsigned f = 0; f < frames; f++) {
        for (size_t k = 0; k < len; k++)
            scratch[k] = frame_byte(id, f, k);
        if (!h_send(fd, scratch, len))
            return "could not send a frame";
        unsigned char echo[sizeof scratch];
        if (h_recv(fd, echo, len) != 1)
            return "no echo";
        if (memcmp(echo, scratch, len) != 0)
            return "wrong echo";
    }
    return NULL;
}

static const char *case_frames(const unsigned char *bytes, size_t len, bool half_close)
{
    int fd = h_connect();
    if (fd < 0)
        return "connect failed";
    const char *why = h_send(fd, bytes, len) ? NULL : "send failed";
    if (!why && half_close)
        shutdown(fd, SHUT_WR);
    if (!why)
        why = h_expect_closed(fd);
    close(fd);
    return why;
}

static const char *case_oversize(void)
{
    unsigned char hdr[RW_HEADER_BYTES];
    rw_encode_header(hdr, 0x7fffffffu);
    return case_frames(hdr, sizeof hdr, false);
}

static const char *case_garbage(void)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"; /* the wrong client on the port */
    return case_frames((const unsigned char *)http, sizeof http - 1, false);
}

static const char *case_truncated(void)
{
    unsigned char frame[RW_HEADER_BYTES + 40] = {0};
    rw_encode_header(frame, 100); /* promises 100 bytes, sends 40, then EOF */
    return case_frames(frame, sizeof frame, true);
}

static const char *case_reset(void)
{
    int fd = h_connect();
    if (fd < 0)
        return "connect failed";
    const char *why = h_exchange(fd, 1, 1);
    struct linger abort_on_close = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    close(fd); /* RST instead of FIN: the gateway's recv() fails with ECONNRESET */
    return why;
}

static const char *case_half_close(void)
{
    int fd = h_connect();
    if (fd < 0)
        return "connect failed";
    size_t len = frame_len();
    const char *why = NULL;
    for (unsigned f = 0; f < HALF_CLOSE_FRAMES && !why; f++) {
        for (size_t k = 0; k < len; k++)
            scratch[k] = frame_byte(2, f, k);
        why = h_send(fd, scratch, len) ? NULL : "send failed";
    }
    shutdown(fd, SHUT_WR); /* done sending, still reading: every echo must come, then EOF */
    unsigned char echo[sizeof scratch];
    for (unsigned f = 0; f < HALF_CLOSE_FRAMES && !why; f++) {
        if (h_recv(fd, echo, len) != 1)
            why = "an echo did not come after the half-close";
        for (size_t k = 0; !why && k < len; k++)
            if (echo[k] != frame_byte(2, f, k))
                why = "wrong echo after the half-close";
    }
    if (!why)
        why = h_expect_closed(fd);
    close(fd);
    return why;
}

static const char *case_normal(void)
{
    int fd = h_connect();
    if (fd < 0)
        return "connect failed";
    const char *why = h_exchange(fd, 3, (unsigned)opt.frames);
    close(fd);
    return why;
}

static const struct {
    const char *name;
    const char *(*run)(void);
    int rejects, resets; /* what the gateway must count for it */
} cases[] = {
    {"oversize", case_oversize, 1, 0},   {"garbage", case_garbage, 1, 0}, {"truncated", case_truncated, 1, 0},
    {"reset", case_reset, 0, 1},         {"half_close", case_half_close, 0, 0},
    {"normal_after", case_normal, 0, 0}, /* the gateway still serves */
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* ---- command line and summary ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rw_client --port N [--connections N] [--frames N] [--frame-bytes N]\n"
            "                 [--timeout S] [--json FILE] [--hostile]\n\n"
            "The load client of rw_gateway, on 127.0.0.1 only. Opens --connections, exchanges\n"
            "the first frame on each, holds them until all have, then exchanges the other\n"
            "frames and disconnects each right after its last echo.\n\n"
            "  --port N          the gateway's port (its `listening` event), 1..65535 (required)\n"
            "  --connections N   connections to make, 1..%d (default %d)\n"
            "  --frames N        frames per connection, 1..%d (default %d)\n"
            "  --frame-bytes N   payload bytes per frame, 1..%d (default %d)\n"
            "  --timeout S       stop after S seconds whatever happens, 1..%d (default %d)\n"
            "  --json FILE       also write the summary as JSON to FILE\n"
            "  --hostile         send each kind of bad input on its own connection, then a\n"
            "                    normal exchange; checks the gateway closes the bad ones\n"
            "  --help            this text\n\n"
            "exit codes: 0 every exchange done, 1 some failed, 2 bad usage,\n"
            "99 refused resource (descriptors, memory) or the --timeout deadline\n",
            MAX_CONNECTIONS, DEF_CONNECTIONS, MAX_FRAMES, DEF_FRAMES, RW_MAX_FRAME_BYTES, DEF_FRAME_BYTES,
            MAX_TIMEOUT_S, DEF_TIMEOUT_S);
}

static long parse(const char *name, const char *text, long min, long max)
{
    char *end = NULL;
    errno = 0;
    long v = (text[0] >= '0' && text[0] <= '9') ? strtol(text, &end, 10) : -1;
    if (!end || *end || errno == ERANGE || v < min || v > max) {
        fprintf(stderr, "rw_client: --%s: '%s' is not an integer in [%ld, %ld]\nTry 'rw_client --help'.\n", name,
                text, min, max);
        exit(EXIT_USAGE);
    }
    return v;
}

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},        {"connections", required_argument, NULL, 'c'},
        {"frames", required_argument, NULL, 'f'},      {"frame-bytes", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 't'},     {"json", required_argument, NULL, 'j'},
        {"hostile", no_argument, NULL, 'H'},           {"help", no_argument, NULL, 'h'},
        {0},
    };
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1;) {
        switch (c) {
        case 'p': opt.port = (int)parse("port", optarg, 1, 65535); break;
        case 'c': opt.connections = parse("connections", optarg, 1, MAX_CONNECTIONS); break;
        case 'f': opt.frames = parse("frames", optarg, 1, MAX_FRAMES); break;
        case 'b': opt.frame_bytes = parse("frame-bytes", optarg, 1, RW_MAX_FRAME_BYTES); break;
        case 't': opt.timeout_s = parse("timeout", optarg, 1, MAX_TIMEOUT_S); break;
        case 'j': opt.json = optarg; break;
        case 'H': opt.hostile = true; break;
        case 'h': usage(stdout); exit(EXIT_OK);
        case ':': fprintf(stderr, "rw_client: option '%s' needs a value\n", argv[optind - 1]); exit(EXIT_USAGE);
        default: fprintf(stderr, "rw_client: unknown option '%s'\nTry 'rw_client --help'.\n", argv[optind - 1]);
                 exit(EXIT_USAGE);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rw_client: unexpected argument '%s'\nTry 'rw_client --help'.\n", argv[optind]);
        exit(EXIT_USAGE);
    }
    if (!opt.port) {
        fprintf(stderr, "rw_client: --port is required (the gateway's `listening` event has it)\n");
        exit(EXIT_USAGE);
    }
}

/* One descriptor per connection: take the hard limit, or say what to raise. */
static void raise_fd_limit(long needed)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)needed) {
        fprintf(stderr, "rw_client: %ld connections need %ld descriptors, the hard limit is %llu: raise it "
                "(ulimit -Hn; nofile in /etc/security/limits.conf) or lower --connections\n",
                opt.connections, needed, (unsigned long long)rl.rlim_cur);
        exit(EXIT_SYSTEM);
    }
}

static void write_summary(FILE *f, const char *results, long failed, bool timed_out)
{
    if (opt.hostile) {
        int rejects = 0, resets = 0;
        for (int k = 0; k < NCASES; k++)
            rejects += cases[k].rejects, resets += cases[k].resets;
        fprintf(f, "{\"mode\":\"hostile\",\"cases\":{%s},\"failed\":%ld,\"expected_rejects\":%d,"
                "\"expected_resets\":%d,\"connections\":%d,\"elapsed_s\":%.3f}\n",
                results, failed, rejects, resets, NCASES, elapsed_s());
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
    clock_gettime(CLOCK_MONOTONIC, &started);
    deadline_ms = now_ms() + opt.timeout_s * 1000;
    setvbuf(stdout, NULL, _IOLBF, 0);
    raise_fd_limit((opt.hostile ? 1 : opt.connections) + FD_MARGIN);

    char results[1024] = "";
    long failed = 0;
    bool timed_out = false;
    if (opt.hostile) {
        for (int k = 0; k < NCASES; k++) {
            case_until = now_ms() + CASE_TIMEOUT_MS;
            const char *why = cases[k].run();
            failed += why != NULL;
            printf("rw_client: %-12s %s%s\n", cases[k].name, why ? "FAIL: " : "pass", why ? why : "");
            snprintf(results + strlen(results), sizeof results - strlen(results), "%s\"%s\":\"%s\"", k ? "," : "",
                     cases[k].name, why ? why : "pass");
        }
        timed_out = ms_left(deadline_ms) == 0;
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
