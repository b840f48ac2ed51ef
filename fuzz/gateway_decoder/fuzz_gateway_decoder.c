/* fuzz_gateway_decoder - the bytes any client may send rw_gateway, through
 * its frame decoder (scenarios/rw_protocol.c), split every which way.
 *
 * Input: one byte that seeds how the stream is cut into reads, then the
 * stream itself. The stream is decoded three ways and each must agree with a
 * reference written straight from the format's definition (whole stream in
 * memory, one frame after the other):
 *   pulled  as the gateway reads: a recv() returns any number of bytes up to
 *           what rw_decoder_want() asked for;
 *   pushed  rw_decoder_feed() in chunks of any size;
 *   whole   rw_decoder_feed() with every byte at once.
 * Each must deliver the same frames (length and every byte, at the right
 * offset) and end the same way (clean, truncated, bad magic, bad length).
 * The pulled decoder must also stop reading right at the bad header, never a
 * byte past it. AddressSanitizer guards the payload buffer, which is exactly
 * RW_MAX_FRAME_BYTES long. Any disagreement aborts: libFuzzer saves the input. */
#include "rw_protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ending { END_CLEAN, END_TRUNCATED, END_BAD_MAGIC, END_BAD_LENGTH };
static const char *const ending_names[] = {"clean", "truncated", "bad magic", "bad length"};

enum { MAX_FRAMES = 1 << 16 };

/* The reference decoding of the whole stream. */
static struct reference {
    size_t frames, offset[MAX_FRAMES]; /* where each frame's payload starts */
    uint32_t len[MAX_FRAMES];
    enum ending end;
    size_t bad_header_end; /* for a bad header: the offset just past it */
} ref;

static void reference(const uint8_t *p, size_t n)
{
    ref.frames = 0;
    for (size_t pos = 0;;) {
        if (pos == n) {
            ref.end = END_CLEAN;
            return;
        }
        if (n - pos < RW_HEADER_BYTES) {
            ref.end = END_TRUNCATED;
            return;
        }
        uint32_t len = (uint32_t)p[pos + 4] << 24 | (uint32_t)p[pos + 5] << 16 | (uint32_t)p[pos + 6] << 8 | p[pos + 7];
        if (p[pos] != 'L' || p[pos + 1] != 'L' || p[pos + 2] != 'G' || p[pos + 3] != 'W' || len == 0 ||
            len > RW_MAX_FRAME_BYTES) {
            bool magic = p[pos] == 'L' && p[pos + 1] == 'L' && p[pos + 2] == 'G' && p[pos + 3] == 'W';
            ref.end = magic ? END_BAD_LENGTH : END_BAD_MAGIC;
            ref.bad_header_end = pos + RW_HEADER_BYTES;
            return;
        }
        if (n - pos - RW_HEADER_BYTES < len) {
            ref.end = END_TRUNCATED;
            return;
        }
        if (ref.frames == MAX_FRAMES) { /* cannot happen: 9 bytes a frame at least, inputs are smaller */
            ref.end = END_CLEAN;
            return;
        }
        ref.offset[ref.frames] = pos + RW_HEADER_BYTES;
        ref.len[ref.frames++] = len;
        pos += RW_HEADER_BYTES + len;
    }
}

static void fail(const char *how, const char *what)
{
    fprintf(stderr, "fuzz_gateway_decoder: %s decoder: %s\n", how, what);
    abort();
}

/* Checks each delivered frame against the reference's next one. */
struct check {
    const char *how;
    const uint8_t *stream;
    size_t next;
};

static void on_frame(void *ctx, const rw_decoder *d)
{
    struct check *c = ctx;
    if (c->next >= ref.frames)
        fail(c->how, "a frame the reference does not have");
    if (d->len != ref.len[c->next] || d->len == 0 || d->len > RW_MAX_FRAME_BYTES)
        fail(c->how, "a frame of the wrong length");
    const uint8_t *want = c->stream + ref.offset[c->next];
    if (memcmp(d->header, want - RW_HEADER_BYTES, RW_HEADER_BYTES) != 0 || memcmp(d->payload, want, d->len) != 0)
        fail(c->how, "a frame with the wrong bytes");
    c->next++;
}

static enum ending ending_of(rw_verdict v, const rw_decoder *d)
{
    if (v == RW_BAD_MAGIC)
        return END_BAD_MAGIC;
    if (v == RW_BAD_LENGTH)
        return END_BAD_LENGTH;
    return rw_decoder_between_frames(d) ? END_CLEAN : END_TRUNCATED;
}

static void agree(struct check *c, enum ending end)
{
    if (c->next != ref.frames)
        fail(c->how, "fewer frames than the reference");
    if (end != ref.end) {
        char what[128];
        snprintf(what, sizeof what, "ended %s, the reference %s", ending_names[end], ending_names[ref.end]);
        fail(c->how, what);
    }
}

/* Read sizes: a small generator seeded by the input's first byte, mostly
 * short reads (the splits that break decoders), sometimes long ones. */
static size_t next_cut(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    uint32_t r = *state >> 16;
    return r % 4 == 0 ? 1 + r % 20000 : 1 + r % 13;
}

static void pulled(const uint8_t *p, size_t n, uint32_t seed, unsigned char *buf)
{
    struct check c = {"pulled", p, 0};
    rw_decoder d;
    rw_decoder_init(&d, buf);
    size_t pos = 0;
    rw_verdict v = RW_NEED_MORE;
    while (pos < n) {
        unsigned char *into;
        size_t want = rw_decoder_want(&d, &into);
        if (want == 0)
            fail(c.how, "asks for nothing while the stream is good");
        size_t got = next_cut(&seed);
        got = got < want ? got : want;
        got = got < n - pos ? got : n - pos;
        memcpy(into, p + pos, got); /* the recv() */
        pos += got;
        v = rw_decoder_took(&d, got);
        if (v == RW_FRAME)
            on_frame(&c, &d);
        else if (v != RW_NEED_MORE)
            break;
    }
    if ((v == RW_BAD_MAGIC || v == RW_BAD_LENGTH) && pos != ref.bad_header_end)
        fail(c.how, "read past the bad header, or stopped before its end");
    if (v != RW_NEED_MORE && v != RW_FRAME) {
        unsigned char *into;
        if (rw_decoder_want(&d, &into) != 0 || rw_decoder_took(&d, 0) != v)
            fail(c.how, "a violation that does not stick");
    }
    agree(&c, ending_of(v == RW_FRAME ? RW_NEED_MORE : v, &d));
}

static void pushed(const uint8_t *p, size_t n, uint32_t seed, unsigned char *buf, bool whole)
{
    struct check c = {whole ? "whole" : "pushed", p, 0};
    rw_decoder d;
    rw_decoder_init(&d, buf);
    rw_verdict v = RW_NEED_MORE;
    for (size_t pos = 0; pos < n && v == RW_NEED_MORE;) {
        size_t chunk = whole ? n : next_cut(&seed);
        chunk = chunk < n - pos ? chunk : n - pos;
        v = rw_decoder_feed(&d, p + pos, chunk, on_frame, &c);
        pos += chunk;
    }
    if (v == RW_FRAME)
        fail(c.how, "rw_decoder_feed returned RW_FRAME");
    agree(&c, ending_of(v, &d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t seed = data[0];
    const uint8_t *stream = data + 1;
    size_t n = size - 1;
    static unsigned char *buf;
    if (!buf && !(buf = malloc(RW_MAX_FRAME_BYTES)))
        abort();
    reference(stream, n);
    pulled(stream, n, seed, buf);
    pushed(stream, n, seed ^ 0x5a5au, buf, false);
    pushed(stream, n, 0, buf, true);

    /* The encoder writes what the decoder reads, for every length. */
    unsigned char hdr[RW_HEADER_BYTES];
    uint32_t len = n >= 4 ? rw_get_be32(stream) : (uint32_t)n;
    rw_encode_header(hdr, len);
    uint32_t back = 0;
    rw_verdict v = rw_decode_header(hdr, &back);
    if (back != len || v != (len == 0 || len > RW_MAX_FRAME_BYTES ? RW_BAD_LENGTH : RW_FRAME))
        fail("encoder", "rw_decode_header(rw_encode_header(len)) is not len");
    return 0;
}
