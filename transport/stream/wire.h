/*
 * The wire format of the stream transports (tcp, shm) (version 2).  Shared by the transport
 * and by tests that play a raw peer.
 *
 * Every frame starts with a 12-byte header, little-endian:
 *     u32 len      payload bytes after the header
 *     u8  version  KUMO__TCP_VERSION; anything else is refused
 *     u8  type     T_*
 *     u8  flags    F_*; bits a type does not define must be 0
 *     u8  zero     must be 0
 *     u32 conn     lightweight connection id (sender-assigned per link
 *                  direction), 0 for link-level frames
 * A DATA frame with F_FIRST (the first piece of a fragmented message)
 * carries 8 more header bytes: u64 total message length.
 *
 * A link starts with HELLO (connector -> acceptor), HELLO_ACK (back) and,
 * when the ACK says OK, AUTH (connector -> acceptor); nothing else may come
 * before them.  HELLO's payload:
 *     u32 magic "KUMO", u16 protocol version, u16 zero, u64 capability bits,
 *     32-byte connector nonce, sender address (kumo_address_encode),
 *     target address (same)
 * HELLO_ACK's payload: u8 status (ACK_*), 7 zero bytes, u64 capability
 * bits; with ACK_OK, then the 32-byte acceptor nonce and the acceptor's
 * 32-byte MAC.  AUTH's payload: the connector's 32-byte MAC.  The MACs
 * prove each side knows the shared cookie without sending it
 * (transport/stream/auth.h); until the acceptor has checked AUTH, any other
 * frame closes the link.  Capability bits are negotiated (the link uses
 * the intersection); none are defined, so both sides send 0 and ignore
 * bits they do not know.
 *
 * The decoder checks every length against what arrived before reading it:
 * frames over their type's maximum, unknown versions, types or flags,
 * non-zero reserved bytes and inconsistent fragment totals are malformed,
 * and a malformed frame closes the link with a logged reason.
 */
#ifndef KUMO_TRANSPORT_STREAM_WIRE_H
#define KUMO_TRANSPORT_STREAM_WIRE_H

#include "transport/transport.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KUMO__TCP_VERSION 2
#define KUMO__TCP_MAGIC 0x4f4d554bu /* "KUMO" little-endian */
#define KUMO__TCP_HDR 12
#define KUMO__TCP_HDR_MAX 20
#define KUMO__TCP_CTL_MAX 256 /* largest payload of a non-DATA frame */

enum {
    KUMO__T_HELLO = 1,
    KUMO__T_HELLO_ACK,
    KUMO__T_OPEN,  /* payload: u8 reliability */
    KUMO__T_CLOSE, /* no payload */
    KUMO__T_DATA,
    KUMO__T_PING, /* no payload; any frame counts as life */
    KUMO__T_BYE,  /* the sender's endpoint is closing; no payload */
    KUMO__T_AUTH, /* payload: the connector's MAC (handshake) */
    KUMO__T_LAST
};

enum {
    KUMO__F_MORE = 1u << 0,  /* DATA: more pieces of this message follow */
    KUMO__F_FIRST = 1u << 1, /* DATA: first piece; header carries the total */
};

/* HELLO_ACK statuses.  REDIRECT answers a HELLO whose target is a place
 * (a tcp address with incarnation 0, kumo_address_parse of "ip:port"):
 * its payload is the 16-byte refusal followed by the acceptor's own
 * address (kumo_address_encode); the connector then connects there. */
enum {
    KUMO__ACK_OK = 0,
    KUMO__ACK_NOT_FOUND,
    KUMO__ACK_CROSSED,
    KUMO__ACK_BUSY,
    KUMO__ACK_REDIRECT
};

struct kumo__tcp_hdr {
    uint32_t len;
    uint8_t type, flags;
    uint32_t conn;
    uint64_t total; /* F_FIRST only */
    unsigned hlen;  /* 12 or 20 */
};

/* Writes a header; returns its length (12, or 20 with F_FIRST). */
static inline unsigned kumo__tcp_hdr_encode(uint8_t *p, uint8_t type, uint8_t flags, uint32_t conn,
                                            uint32_t len, uint64_t total)
{
    kumo__put32(p, len);
    p[4] = KUMO__TCP_VERSION;
    p[5] = type;
    p[6] = flags;
    p[7] = 0;
    kumo__put32(p + 8, conn);
    if (flags & KUMO__F_FIRST) {
        kumo__put64(p + 12, total);
        return 20;
    }
    return 12;
}

/*
 * Decodes a header from p[0..have).  Returns 0 with *h filled, a positive
 * count of header bytes needed when `have` is short, or -1 with *why set
 * when the header is malformed.  `max_payload` bounds DATA frames,
 * `max_message` the total of a fragmented message.
 */
static inline int kumo__tcp_hdr_decode(const uint8_t *p, size_t have, uint32_t max_payload,
                                       uint64_t max_message, struct kumo__tcp_hdr *h,
                                       const char **why)
{
    if (have < KUMO__TCP_HDR)
        return KUMO__TCP_HDR;
    h->len = kumo__get32(p);
    h->type = p[5];
    h->flags = p[6];
    h->conn = kumo__get32(p + 8);
    h->total = 0;
    h->hlen = KUMO__TCP_HDR;
    if (p[4] != KUMO__TCP_VERSION) {
        *why = "unknown frame version";
        return -1;
    }
    if (p[7] != 0) {
        *why = "reserved header byte set";
        return -1;
    }
    if (h->type == 0 || h->type >= KUMO__T_LAST) {
        *why = "unknown frame type";
        return -1;
    }
    if (h->type != KUMO__T_DATA) {
        if (h->flags) {
            *why = "flags on a control frame";
            return -1;
        }
        if (h->len > KUMO__TCP_CTL_MAX) {
            *why = "control frame over its maximum length";
            return -1;
        }
        bool per_conn = h->type == KUMO__T_OPEN || h->type == KUMO__T_CLOSE;
        if (per_conn != (h->conn != 0)) {
            *why = per_conn ? "connection frame for connection 0" : "link frame names a connection";
            return -1;
        }
        bool empty = h->type == KUMO__T_CLOSE || h->type == KUMO__T_PING || h->type == KUMO__T_BYE;
        if ((empty && h->len) || (h->type == KUMO__T_OPEN && h->len != 1)) {
            *why = "wrong payload length for the frame type";
            return -1;
        }
        return 0;
    }
    if (h->flags & ~(KUMO__F_MORE | KUMO__F_FIRST)) {
        *why = "unknown DATA flags";
        return -1;
    }
    if (h->conn == 0) {
        *why = "DATA for connection 0";
        return -1;
    }
    if (h->len > max_payload) {
        *why = "DATA frame over the maximum frame size";
        return -1;
    }
    if (h->flags & KUMO__F_FIRST) {
        if (!(h->flags & KUMO__F_MORE)) {
            *why = "first piece without more to follow";
            return -1;
        }
        if (have < 20)
            return 20;
        h->total = kumo__get64(p + 12);
        h->hlen = 20;
        if (h->total > max_message) {
            *why = "message over the maximum message size";
            return -1;
        }
        if (h->total <= h->len) {
            *why = "fragmented message no longer than its first piece";
            return -1;
        }
    }
    return 0;
}

#define KUMO__NONCE 32 /* handshake nonces */
#define KUMO__MAC 32   /* HMAC-SHA256 */

/* HELLO payload: 4 + 2 + 2 + 8 + nonce + two addresses. */
#define KUMO__TCP_HELLO_MAX (16 + KUMO__NONCE + 2 * KUMO_ADDRESS_WIRE_MAX)
/* HELLO_ACK payload: refusals 16 bytes, OK 16 + nonce + MAC. */
#define KUMO__TCP_ACK 16
#define KUMO__TCP_ACK_OK (KUMO__TCP_ACK + KUMO__NONCE + KUMO__MAC)

static inline size_t kumo__tcp_hello_encode(uint8_t *p, const kumo_address *from,
                                            const kumo_address *to, uint64_t caps,
                                            const uint8_t nonce[KUMO__NONCE])
{
    kumo__put32(p, KUMO__TCP_MAGIC);
    kumo__put16(p + 4, KUMO__TCP_VERSION);
    kumo__put16(p + 6, 0);
    kumo__put64(p + 8, caps);
    memcpy(p + 16, nonce, KUMO__NONCE);
    size_t n = 16 + KUMO__NONCE;
    n += kumo_address_encode(from, p + n);
    n += kumo_address_encode(to, p + n);
    return n;
}

/* Returns 0 (*nonce points into p), or -1 with *why set. */
static inline int kumo__tcp_hello_decode(const uint8_t *p, size_t len, kumo_address *from,
                                         kumo_address *to, uint64_t *caps, const uint8_t **nonce,
                                         const char **why)
{
    if (len < 16 + KUMO__NONCE) {
        *why = "short HELLO";
        return -1;
    }
    if (kumo__get32(p) != KUMO__TCP_MAGIC) {
        *why = "HELLO without the magic";
        return -1;
    }
    if (kumo__get16(p + 4) != KUMO__TCP_VERSION || kumo__get16(p + 6) != 0) {
        *why = "HELLO of an unknown protocol version";
        return -1;
    }
    *caps = kumo__get64(p + 8);
    *nonce = p + 16;
    size_t at = 16 + KUMO__NONCE;
    int a = kumo_address_decode(p + at, len - at, from);
    if (a < 0) {
        *why = "HELLO with a bad sender address";
        return -1;
    }
    at += (size_t)a;
    int b = kumo_address_decode(p + at, len - at, to);
    if (b < 0) {
        *why = "HELLO with a bad target address";
        return -1;
    }
    if (at + (size_t)b != len) {
        *why = "HELLO with trailing bytes";
        return -1;
    }
    return 0;
}

#endif
