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
    /* No heartbeats (the socket's EOF tells a dead peer): the default
     * heartbeat timeout only bounds how long a closing endpoint waits for
     * its peers.  Zero fields get the stream defaults. */
    kumo_tcp_config c = {
        .connect_timeout_ns = s.connect_timeout_ns,
        .max_message = s.max_message,
        .fragment_size = s.fragment_size,
        .rx_buffer_size = 4096, /* the handshake's receive buffer */
        .send_queue_max = s.send_queue_max,
        .cookie = s.cookie,
    };
    return kumo__stream_create(eng, &c, true, s.ring_bytes, out);
}

const struct kumo__transport_ops kumo__shm_ops = {
    .name = "shm",
    .tag = 's',
    .addr_len = KUMO__SHM_ADDR_LEN,
    .create = shm_create,
    .address_parse = kumo__shm_address_parse,
    KUMO__STREAM_OPS,
};
