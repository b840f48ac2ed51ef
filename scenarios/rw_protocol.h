/* rw_protocol.h - what rw_gateway and rw_client share: the frame format, its
 * encoder and decoder, and the loopback socket calls of both sides
 * (rw_protocol.c). The scenario's story - sessions, the reader and the
 * writer, the race - stays in rw_gateway.c; the load stays in rw_client.c.
 * Nothing here uses the harness (leaklab.h): the client is a plain program,
 * and the fuzz target (fuzz/gateway_decoder) compiles this code alone.
 *
 * A frame is an 8-byte header, the magic "LLGW" and the payload length as a
 * big-endian uint32 in [1, RW_MAX_FRAME_BYTES], followed by the payload. The
 * gateway answers every frame with the same frame (an echo). Anything else -
 * another magic, a length of 0 or above the maximum, a frame cut short by the
 * end of the stream - is a protocol violation: the gateway closes that
 * connection and counts a reject.
 *
 * The decoder is pure (no I/O, no allocation: the caller lends the payload
 * buffer), so the bytes any client may send can be fuzzed without a socket
 * (fuzz/gateway_decoder). It is driven one of two ways:
 *   - pulled, as the gateway reads: rw_decoder_want() says where the next
 *     bytes go and how many the frame still needs, the caller recv()s at most
 *     that many and hands the count to rw_decoder_took(). A reader that asks
 *     for no more never reads past the frame it is in, so a violation is seen
 *     before a byte of what follows it is read;
 *   - pushed, for bytes already in memory in chunks of any size:
 *     rw_decoder_feed().
 * Both give the same frames and the same verdict for the same bytes, however
 * they are split (the fuzz target checks that). */
#ifndef RW_PROTOCOL_H
#define RW_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RW_MAGIC "LLGW"
enum {
    RW_MAGIC_BYTES = 4,
    RW_HEADER_BYTES = 8,
    RW_MAX_FRAME_BYTES = 16384, /* a game message is far smaller; 16 KiB bounds the read buffer */
};

static inline uint32_t rw_get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void rw_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
    p[3] = (unsigned char)v;
}

/* ---- frames ---- */

/* Writes the header of a frame whose payload is `len` bytes. Any len is
 * written as given: the hostile client sends lengths no frame may have. */
void rw_encode_header(unsigned char hdr[RW_HEADER_BYTES], uint32_t len);

/* What a complete header, or the decoder's last step, says. */
typedef enum rw_verdict {
    RW_NEED_MORE,  /* the frame is not complete yet: read on */
    RW_FRAME,      /* a frame is complete: header, len and payload are valid until the next step */
    RW_BAD_MAGIC,  /* not "LLGW": another protocol on the port, or garbage */
    RW_BAD_LENGTH, /* 0, or above RW_MAX_FRAME_BYTES: never read on (the length is the client's word) */
} rw_verdict;

/* Checks a complete header; on RW_FRAME *len is the payload length. */
rw_verdict rw_decode_header(const unsigned char hdr[RW_HEADER_BYTES], uint32_t *len);

typedef struct rw_decoder {
    unsigned char header[RW_HEADER_BYTES]; /* the current frame's header */
    unsigned char *payload;                /* the caller's buffer of RW_MAX_FRAME_BYTES */
    uint32_t len;                          /* the current frame's payload length, once its header is in */
    uint32_t have;                         /* bytes of the current part (header, then payload) received */
    bool in_payload;                       /* the header is in and valid */
    rw_verdict failed;                     /* RW_NEED_MORE, or the violation that ended the stream */
} rw_decoder;

/* Starts a stream; `payload` must hold RW_MAX_FRAME_BYTES and outlive the decoder. */
void rw_decoder_init(rw_decoder *d, unsigned char *payload);

/* Where the next bytes go (*into) and how many the current part still
 * needs; 0 once the stream failed (read nothing more). */
size_t rw_decoder_want(const rw_decoder *d, unsigned char **into);

/* `n` bytes (at most what rw_decoder_want() asked for) arrived where it
 * said. RW_FRAME: d->header, d->len and d->payload hold a whole frame, valid
 * until the next call; the next bytes start the next frame. A violation is
 * final: every later call returns it again. */
rw_verdict rw_decoder_took(rw_decoder *d, size_t n);

/* At the end of the stream: true if it ended between two frames (a clean
 * close), false if inside one (a truncated frame: a violation). */
bool rw_decoder_between_frames(const rw_decoder *d);

/* Pushes `n` bytes (any split of the stream), calling on_frame for each
 * frame completed. Returns the violation that ended the stream, or
 * RW_NEED_MORE if every byte was taken. Bytes after a violation are not looked at. */
rw_verdict rw_decoder_feed(rw_decoder *d, const unsigned char *bytes, size_t n,
                           void (*on_frame)(void *ctx, const rw_decoder *d), void *ctx);

/* Byte `pos` of the client's frame number `frame` on connection `id`, whose
 * payload is `payload_len` bytes: the header, then a pattern that differs
 * per connection and frame, so a misrouted echo is caught. */
unsigned char rw_frame_byte(uint32_t payload_len, unsigned id, unsigned frame, size_t pos);

/* ---- sockets: 127.0.0.1 only, one descriptor per connection ---- */

/* Raises the soft open-files limit to the hard one. False if the limit is
 * still below `needed` (*limit: what it is); true if it is not (or cannot
 * be read: then the sockets themselves will say). */
bool rw_raise_fd_limit(long needed, unsigned long long *limit);

/* A non-blocking listening socket on 127.0.0.1, an ephemeral port (*port).
 * -1 with errno set if any step fails. */
int rw_listen_loopback(int backlog, int *port);

/* A non-blocking socket connecting to 127.0.0.1:port (under way, or done).
 * RW_NO_SOCKET (errno set) if no socket could be made; -1 if the connect
 * failed at once. */
enum { RW_NO_SOCKET = -2 };
int rw_connect_loopback(int port);

/* Sends all `len` bytes on a blocking socket; false once send() fails
 * (the peer is gone). Never raises SIGPIPE. */
bool rw_send_all(int fd, const unsigned char *p, size_t len);

/* Deadline-bound calls on a non-blocking socket, for a client that must
 * stop by itself. `until` is a CLOCK_MONOTONIC time in ms (rw_now_ms()). */
long long rw_now_ms(void);
int rw_ms_left(long long until); /* 0 once passed; at most a minute */
bool rw_connected_by(int fd, long long until);
bool rw_send_by(int fd, const unsigned char *buf, size_t len, long long until);
int rw_recv_by(int fd, unsigned char *buf, size_t len, long long until); /* 1 done, 0 closed (EOF or reset), -1 timed out */
bool rw_closed_by(int fd, long long until); /* reads and drops until the peer closes */

#endif
