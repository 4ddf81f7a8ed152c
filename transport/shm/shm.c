/*
 * "shm": the stream transport between processes of one host over shared
 * memory rings (transport/shm/ring.h), set up over abstract Unix sockets
 * (the implementation is shared with tcp in transport/stream/stream.c).
 * This file maps kumo_shm_config to the shared implementation and is the
 * transport's ops table.
 */
#include "transport/shm/ring.h"
#include "transport/stream/stream.h"

#include <errno.h>

static int shm_create(struct kumo__engine *eng, const void *vcfg, struct kumo_transport **out)
{
    kumo_shm_config s = {0};
    if (vcfg)
        s = *(const kumo_shm_config *)vcfg;
    if (!s.ring_bytes)
        s.ring_bytes = 1u << 20;
    if (s.ring_bytes < KUMO__SHM_MIN_RING || s.ring_bytes > KUMO__SHM_MAX_RING ||
        (s.ring_bytes & (s.ring_bytes - 1)))
        return -EINVAL;
    kumo_tcp_config c = {
        .connect_timeout_ns = s.connect_timeout_ns ? s.connect_timeout_ns : 10000000000ull,
        /* No heartbeats (the socket's EOF tells a dead peer); the timeout
         * bounds how long a closing endpoint waits for its peers. */
        .heartbeat_interval_ns = 1000000000ull,
        .heartbeat_timeout_ns = 5000000000ull,
        .max_message = s.max_message ? s.max_message : 256u << 20,
        .fragment_size = s.fragment_size ? s.fragment_size : 64u << 10,
        .rx_buffer_size = 4096, /* the handshake's receive buffer */
        .send_queue_max = s.send_queue_max ? s.send_queue_max : KUMO__SEND_QUEUE_MAX,
    };
    if (c.fragment_size < 64)
        return -EINVAL;
    return kumo__stream_create(eng, &c, true, s.ring_bytes, out);
}

const struct kumo__transport_ops kumo__shm_ops = {
    .name = "shm",
    .tag = 's',
    .caps = 0,
    .create = shm_create,
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
