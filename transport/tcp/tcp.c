/*
 * "tcp": the stream transport over TCP sockets (implementation shared with
 * shm in transport/stream/stream.c; wire format in transport/stream/wire.h).
 * This file maps kumo_tcp_config to the shared implementation and is the
 * transport's ops table.
 */
#include "transport/stream/stream.h"

#include <errno.h>

static int tcp_create(struct kumo__engine *eng, const void *vcfg, struct kumo_transport **out)
{
    kumo_tcp_config c = {0};
    if (vcfg)
        c = *(const kumo_tcp_config *)vcfg;
    /* The fields shm shares get their defaults in kumo__stream_create. */
    if (!c.rx_buffers)
        c.rx_buffers = 64;
    if (!c.zerocopy_min)
        c.zerocopy_min = KUMO_TCP_ZEROCOPY_MIN;
    if (!c.rx_buffer_size)
        c.rx_buffer_size = 64u << 10;
    if ((c.rx_buffers & (c.rx_buffers - 1)) || c.rx_buffers > 32768 || c.rx_buffer_size < 256)
        return -EINVAL;
    return kumo__stream_create(eng, &c, false, 0, out);
}

/* version, tag, IPv4 (4), port (2), incarnation (8): the place is the
 * IPv4 address and the port. */
static bool tcp_same_place(const kumo_address *a, const kumo_address *b)
{
    return a->len == KUMO__TCP_ADDR_LEN && b->len == KUMO__TCP_ADDR_LEN &&
           memcmp(a->bytes + 2, b->bytes + 2, 6) == 0;
}

/* Incarnation 0: "tcp://<IPv4>:<port>" without one. */
static bool tcp_is_place(const kumo_address *a)
{
    return a->len == KUMO__TCP_ADDR_LEN && kumo__get64(a->bytes + 8) == 0;
}

const struct kumo__transport_ops kumo__tcp_ops = {
    .name = "tcp",
    .tag = 't',
    .addr_len = KUMO__TCP_ADDR_LEN,
    .create = tcp_create,
    .same_place = tcp_same_place,
    .is_place = tcp_is_place,
    .address_parse = kumo__tcp_address_parse,
    KUMO__STREAM_OPS,
};
