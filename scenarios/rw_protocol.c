/* rw_protocol.c - the frame format and the loopback socket calls rw_gateway
 * and rw_client share (rw_protocol.h says what each does).
 *
 * Compiled into both programs, into the sanitizer builds of the gateway and
 * into fuzz/gateway_decoder, so it uses nothing but libc: what fails is
 * returned, and each caller reports it its own way (the gateway through the
 * harness, exit 99 with a remedy; the client on stderr). */
#include "rw_protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- frames ---- */

void rw_encode_header(unsigned char hdr[RW_HEADER_BYTES], uint32_t len)
{
    memcpy(hdr, RW_MAGIC, RW_MAGIC_BYTES);
    rw_put_be32(hdr + RW_MAGIC_BYTES, len);
}

rw_verdict rw_decode_header(const unsigned char hdr[RW_HEADER_BYTES], uint32_t *len)
{
    if (memcmp(hdr, RW_MAGIC, RW_MAGIC_BYTES) != 0)
        return RW_BAD_MAGIC;
    *len = rw_get_be32(hdr + RW_MAGIC_BYTES);
    return *len == 0 || *len > RW_MAX_FRAME_BYTES ? RW_BAD_LENGTH : RW_FRAME;
}

void rw_decoder_init(rw_decoder *d, unsigned char *payload)
{
    memset(d, 0, sizeof *d);
    d->payload = payload;
    d->failed = RW_NEED_MORE;
}

size_t rw_decoder_want(const rw_decoder *d, unsigned char **into)
{
    if (d->failed != RW_NEED_MORE) {
        *into = NULL;
        return 0;
    }
    if (d->in_payload) {
        *into = d->payload + d->have;
        return d->len - d->have;
    }
    *into = (unsigned char *)d->header + d->have;
    return RW_HEADER_BYTES - d->have;
}

rw_verdict rw_decoder_took(rw_decoder *d, size_t n)
{
    if (d->failed != RW_NEED_MORE)
        return d->failed;
    d->have += (uint32_t)n;
    if (!d->in_payload) {
        if (d->have < RW_HEADER_BYTES)
            return RW_NEED_MORE;
        rw_verdict v = rw_decode_header(d->header, &d->len);
        if (v != RW_FRAME)
            return d->failed = v;
        d->in_payload = true, d->have = 0;
        return RW_NEED_MORE;
    }
    if (d->have < d->len)
        return RW_NEED_MORE;
    d->in_payload = false, d->have = 0;
    return RW_FRAME;
}

bool rw_decoder_between_frames(const rw_decoder *d)
{
    return d->failed == RW_NEED_MORE && !d->in_payload && d->have == 0;
}

rw_verdict rw_decoder_feed(rw_decoder *d, const unsigned char *bytes, size_t n,
                           void (*on_frame)(void *ctx, const rw_decoder *d), void *ctx)
{
    while (n > 0) {
        unsigned char *into;
        size_t want = rw_decoder_want(d, &into);
        if (want == 0)
            return d->failed;
        size_t take = n < want ? n : want;
        memcpy(into, bytes, take);
        bytes += take, n -= take;
        rw_verdict v = rw_decoder_took(d, take);
        if (v == RW_FRAME && on_frame)
            on_frame(ctx, d);
        else if (v != RW_NEED_MORE && v != RW_FRAME)
            return v;
    }
    return d->failed;
}

unsigned char rw_frame_byte(uint32_t payload_len, unsigned id, unsigned frame, size_t pos)
{
    if (pos < RW_HEADER_BYTES) {
        unsigned char hdr[RW_HEADER_BYTES];
        rw_encode_header(hdr, payload_len);
        return hdr[pos];
    }
    return (unsigned char)(id * 131u + frame * 31u + (unsigned)pos);
}

/* ---- sockets ---- */

bool rw_raise_fd_limit(long needed, unsigned long long *limit)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return true;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* one descriptor per connection: take all we may */
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    *limit = (unsigned long long)rl.rlim_cur;
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)needed;
}

int rw_listen_loopback(int backlog, int *port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        return -1; /* the caller exits, which closes fd */
    *port = ntohs(addr.sin_port);
    return fd;
}

int rw_connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return RW_NO_SOCKET;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

bool rw_send_all(int fd, const unsigned char *p, size_t len)
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

long long rw_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int rw_ms_left(long long until)
{
    long long left = until - rw_now_ms();
    return left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

bool rw_connected_by(int fd, long long until)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    return poll(&p, 1, rw_ms_left(until)) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && !err;
}

bool rw_send_by(int fd, const unsigned char *buf, size_t len, long long until)
{
    for (size_t off = 0; off < len;) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, rw_ms_left(until)) != 1)
            return false;
        ssize_t r = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        off += r > 0 ? (size_t)r : 0;
    }
    return true;
}

int rw_recv_by(int fd, unsigned char *buf, size_t len, long long until)
{
    for (size_t off = 0; off < len;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, rw_ms_left(until)) != 1)
            return -1;
        ssize_t r = recv(fd, buf + off, len - off, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return 0;
        off += r > 0 ? (size_t)r : 0;
    }
    return 1;
}

bool rw_closed_by(int fd, long long until)
{
    unsigned char sink[1];
    int r;
    while ((r = rw_recv_by(fd, sink, 1, until)) == 1)
        ;
    return r == 0;
}
