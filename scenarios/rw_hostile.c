/* rw_hostile.c - rw_client's hostile mode (--hostile): one connection per
 * kind of bad input - an oversize length, garbage, a truncated frame, an
 * abrupt reset, a half-close - checking that the gateway closes each (or,
 * for the half-close, still sends the echoes), then one normal connection
 * that must be served. Apart from rw_client.c, whose story is the load; the
 * gateway's side of it is its reader (rw_gateway.c) and the decoder
 * (rw_protocol.c). Each case is bounded by CASE_TIMEOUT_MS (or --timeout).
 */
#include "rw_client.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    CASE_TIMEOUT_MS = 5000, /* how long the gateway may take to close a bad connection */
    HALF_CLOSE_FRAMES = 3,
};

static long long case_until; /* this case's deadline: CASE_TIMEOUT_MS, or --timeout if sooner */

static int h_connect(void)
{
    int fd = open_socket();
    if (fd >= 0 && !rw_connected_by(fd, case_until)) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool h_send(int fd, const unsigned char *buf, size_t len) { return rw_send_by(fd, buf, len, case_until); }

/* Reads `len` bytes: 1 done, 0 the gateway closed (EOF or reset), -1 timeout. */
static int h_recv(int fd, unsigned char *buf, size_t len) { return rw_recv_by(fd, buf, len, case_until); }

static const char *h_expect_closed(int fd)
{
    return rw_closed_by(fd, case_until) ? NULL : "the gateway did not close the connection";
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

long run_hostile(char *results, size_t size)
{
    long failed = 0;
    for (int k = 0; k < NCASES; k++) {
        case_until = rw_now_ms() + CASE_TIMEOUT_MS;
        case_until = case_until < deadline_ms ? case_until : deadline_ms;
        const char *why = cases[k].run();
        failed += why != NULL;
        printf("rw_client: %-12s %s%s\n", cases[k].name, why ? "FAIL: " : "pass", why ? why : "");
        snprintf(results + strlen(results), size - strlen(results), "%s\"%s\":\"%s\"", k ? "," : "",
                 cases[k].name, why ? why : "pass");
    }
    return failed;
}

void hostile_summary(FILE *f, const char *results, long failed)
{
    int rejects = 0, resets = 0;
    for (int k = 0; k < NCASES; k++)
        rejects += cases[k].rejects, resets += cases[k].resets;
    fprintf(f, "{\"mode\":\"hostile\",\"cases\":{%s},\"failed\":%ld,\"expected_rejects\":%d,"
            "\"expected_resets\":%d,\"connections\":%d,\"elapsed_s\":%.3f}\n",
            results, failed, rejects, resets, NCASES, elapsed_s());
}
