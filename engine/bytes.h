/* Little-endian byte packing for wire formats (pids, frames, addresses):
 * byte by byte, so independent of the host's order and alignment;
 * gathering an iovec array into one buffer; and the numbers of the text
 * forms of identifiers and addresses. */
#ifndef KUMO_ENGINE_BYTES_H
#define KUMO_ENGINE_BYTES_H

#include <stdbool.h>
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

/* On a little-endian host the byte order is the host's own: one unaligned
 * load or store each (the compiler's memcpy), not a loop of byte moves. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KUMO__LE_HOST 1
#else
#define KUMO__LE_HOST 0
#endif

static inline void kumo__put16(uint8_t *p, uint16_t v)
{
    if (KUMO__LE_HOST) {
        memcpy(p, &v, 2);
        return;
    }
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void kumo__put32(uint8_t *p, uint32_t v)
{
    if (KUMO__LE_HOST) {
        memcpy(p, &v, 4);
        return;
    }
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void kumo__put64(uint8_t *p, uint64_t v)
{
    if (KUMO__LE_HOST) {
        memcpy(p, &v, 8);
        return;
    }
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t kumo__get16(const uint8_t *p)
{
    if (KUMO__LE_HOST) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t kumo__get32(const uint8_t *p)
{
    if (KUMO__LE_HOST) {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t kumo__get64(const uint8_t *p)
{
    if (KUMO__LE_HOST) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    return (uint64_t)kumo__get32(p) | (uint64_t)kumo__get32(p + 4) << 32;
}

/* Text forms of identifiers and addresses (pure).  A number runs from s
 * up to the first character in `stops` (or the end); *rest is set there. */

/* Hexadecimal: exactly `digits` digits when digits > 0, else 1..16. */
static inline bool kumo__parse_hex(const char *s, int digits, const char *stops, uint64_t *v,
                                   const char **rest)
{
    uint64_t x = 0;
    int n = 0;
    for (; *s && !strchr(stops, *s); s++, n++) {
        int d = *s >= '0' && *s <= '9'   ? *s - '0'
                : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                         : -1;
        if (d < 0 || n == 16)
            return false;
        x = x << 4 | (uint64_t)d;
    }
    if (!n || (digits > 0 && n != digits))
        return false;
    *v = x;
    *rest = s;
    return true;
}

/* Decimal, 1..10 digits, at most max. */
static inline bool kumo__parse_dec(const char *s, const char *stops, uint64_t max, uint64_t *v,
                                   const char **rest)
{
    uint64_t x = 0;
    int n = 0;
    for (; *s && !strchr(stops, *s); s++, n++) {
        if (*s < '0' || *s > '9' || n == 10)
            return false;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    if (!n || x > max)
        return false;
    *v = x;
    *rest = s;
    return true;
}

#endif
