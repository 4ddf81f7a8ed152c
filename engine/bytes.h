/* Little-endian byte packing for wire formats (pids, frames, addresses):
 * byte by byte, so independent of the host's order and alignment.  And
 * gathering an iovec array into one buffer. */
#ifndef KUMO_ENGINE_BYTES_H
#define KUMO_ENGINE_BYTES_H

#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

/* Copies iov[0..n) one after another to p; returns the end of the copy. */
static inline uint8_t *kumo__iov_gather(uint8_t *p, const struct iovec *iov, int n)
{
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len)
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    return p;
}

static inline void kumo__put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void kumo__put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void kumo__put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t kumo__get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t kumo__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t kumo__get64(const uint8_t *p)
{
    return (uint64_t)kumo__get32(p) | (uint64_t)kumo__get32(p + 4) << 32;
}

#endif
