/* rw_protocol.h - the frame format rw_gateway and rw_client share, and its
 * encoder and decoder.
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
#include <string.h>

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

/* Writes the header of a frame whose payload is `len` bytes. Any len is
 * written as given: the hostile client sends lengths no frame may have. */
static inline void rw_encode_header(unsigned char hdr[RW_HEADER_BYTES], uint32_t len)
{
    memcpy(hdr, RW_MAGIC, RW_MAGIC_BYTES);
    rw_put_be32(hdr + RW_MAGIC_BYTES, len);
}

/* What a complete header, or the decoder's last step, says. */
typedef enum rw_verdict {
    RW_NEED_MORE,  /* the frame is not complete yet: read on */
    RW_FRAME,      /* a frame is complete: header, len and payload are valid until the next step */
    RW_BAD_MAGIC,  /* not "LLGW": another protocol on the port, or garbage */
    RW_BAD_LENGTH, /* 0, or above RW_MAX_FRAME_BYTES: never read on (the length is the client's word) */
} rw_verdict;

/* Checks a complete header; on RW_FRAME *len is the payload length. */
static inline rw_verdict rw_decode_header(const unsigned char hdr[RW_HEADER_BYTES], uint32_t *len)
{
    if (memcmp(hdr, RW_MAGIC, RW_MAGIC_BYTES) != 0)
        return RW_BAD_MAGIC;
    *len = rw_get_be32(hdr + RW_MAGIC_BYTES);
    return *len == 0 || *len > RW_MAX_FRAME_BYTES ? RW_BAD_LENGTH : RW_FRAME;
}

typedef struct rw_decoder {
    unsigned char header[RW_HEADER_BYTES]; /* the current frame's header */
    unsigned char *payload;                /* the caller's buffer of RW_MAX_FRAME_BYTES */
    uint32_t len;                          /* the current frame's payload length, once its header is in */
    uint32_t have;                         /* bytes of the current part (header, then payload) received */
    bool in_payload;                       /* the header is in and valid */
    rw_verdict failed;                     /* RW_NEED_MORE, or the violation that ended the stream */
} rw_decoder;

/* Starts a stream; `payload` must hold RW_MAX_FRAME_BYTES and outlive the decoder. */
static inline void rw_decoder_init(rw_decoder *d, unsigned char *payload)
{
    memset(d, 0, sizeof *d);
    d->payload = payload;
    d->failed = RW_NEED_MORE;
}

/* Where the next bytes go (*into) and how many the current part still
 * needs; 0 once the stream failed (read nothing more). */
static inline size_t rw_decoder_want(const rw_decoder *d, unsigned char **into)
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

/* `n` bytes (at most what rw_decoder_want() asked for) arrived where it
 * said. RW_FRAME: d->header, d->len and d->payload hold a whole frame, valid
 * until the next call; the next bytes start the next frame. A violation is
 * final: every later call returns it again. */
static inline rw_verdict rw_decoder_took(rw_decoder *d, size_t n)
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

/* At the end of the stream: true if it ended between two frames (a clean
 * close), false if inside one (a truncated frame: a violation). */
static inline bool rw_decoder_between_frames(const rw_decoder *d)
{
    return d->failed == RW_NEED_MORE && !d->in_payload && d->have == 0;
}

/* Pushes `n` bytes (any split of the stream), calling on_frame for each
 * frame completed. Returns the violation that ended the stream, or
 * RW_NEED_MORE if every byte was taken. Bytes after a violation are not looked at. */
static inline rw_verdict rw_decoder_feed(rw_decoder *d, const unsigned char *bytes, size_t n,
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

#endif
