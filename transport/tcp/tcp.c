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
    if (!c.connect_timeout_ns)
        c.connect_timeout_ns = 10000000000ull;
    if (!c.heartbeat_interval_ns)
        c.heartbeat_interval_ns = 1000000000ull;
    if (!c.heartbeat_timeout_ns)
        c.heartbeat_timeout_ns = 5000000000ull;
    if (!c.max_message)
        c.max_message = 256u << 20;
    if (!c.fragment_size)
        c.fragment_size = 64u << 10;
    if (!c.rx_buffers)
        c.rx_buffers = 64;
    if (!c.send_queue_max)
        c.send_queue_max = KUMO__SEND_QUEUE_MAX;
    if (!c.zerocopy_min)
        c.zerocopy_min = KUMO_TCP_ZEROCOPY_MIN;
    if (!c.rx_buffer_size)
        c.rx_buffer_size = 64u << 10;
    if ((c.rx_buffers & (c.rx_buffers - 1)) || c.rx_buffers > 32768 || c.fragment_size < 64 ||
        c.rx_buffer_size < 256 || c.heartbeat_timeout_ns <= c.heartbeat_interval_ns)
        return -EINVAL;
    return kumo__stream_create(eng, &c, false, 0, out);
}

const struct kumo__transport_ops kumo__tcp_ops = {
    .name = "tcp",
    .tag = 't',
    .caps = 0,
    .create = tcp_create,
    .endpoint_new = kumo__stream_endpoint_new,
    .endpoint_close = kumo__stream_endpoint_close,
    .connect = kumo__stream_connect,
    .send = kumo__stream_send,
    .when_ready = kumo__stream_when_ready,
    .conn_close = kumo__stream_conn_close,
    .break_link = kumo__stream_break_link,
    .destroy = kumo__stream_destroy,
    .address_str = kumo__stream_address_str,
    .max_message = kumo__stream_max_message,
};
