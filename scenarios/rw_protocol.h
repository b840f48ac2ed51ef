/* rw_protocol.h - the frame format rw_gateway and rw_client share.
 *
 * A frame is an 8-byte header, the magic "LLGW" and the payload length as a
 * big-endian uint32 in [1, RW_MAX_FRAME_BYTES], followed by the payload. The
 * gateway answers every frame with the same frame (an echo). Anything else -
 * another magic, a length of 0 or above the maximum, a frame cut short by the
 * end of the stream - is a protocol violation: the gateway closes that
 * connection and counts a reject. */
#ifndef RW_PROTOCOL_H
#define RW_PROTOCOL_H

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

#endif
