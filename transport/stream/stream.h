/*
 * The stream transports' shared implementation (stream.c), for the ops
 * tables of transport/tcp/ and transport/shm/.  Each function has the
 * contract of the op of the same name in transport/transport.h.
 */
#ifndef KUMO_TRANSPORT_STREAM_STREAM_H
#define KUMO_TRANSPORT_STREAM_STREAM_H

#include "transport/transport.h"

/* Creates a stream transport.  The caller resolves the fields only it
 * uses (tcp: receive buffers, zero-copy; shm: the ring size); zero fields
 * the two share (timeouts, heartbeats, sizes, send_queue_max) get their
 * defaults here.  -EINVAL for impossible values.  shm != 0 selects rings of
 * `ring_bytes` per direction over Unix sockets instead of TCP. */
int kumo__stream_create(struct kumo__engine *eng, const kumo_tcp_config *cfg, bool shm,
                        uint32_t ring_bytes, struct kumo_transport **out);
int kumo__stream_endpoint_new(struct kumo_transport *t, struct kumo_endpoint *tmpl,
                              struct kumo_endpoint **out);
void kumo__stream_endpoint_close(struct kumo_endpoint *ep);
void kumo__stream_when_ready(struct kumo_endpoint *ep, struct kumo__conn *c, struct kumo__ready *r);
void kumo__stream_connect(struct kumo_endpoint *ep, struct kumo__connect_req *req);
int kumo__stream_send(struct kumo_endpoint *ep, struct kumo__conn *c, const struct iovec *iov,
                      int n, size_t len, kumo_release_fn release, void *release_arg);
void kumo__stream_conn_close(struct kumo_endpoint *ep, struct kumo__conn *c);
void kumo__stream_break_link(struct kumo_endpoint *ep, const kumo_address *peer);
void kumo__stream_destroy(struct kumo_transport *t);
size_t kumo__stream_max_message(const struct kumo_transport *t);
void kumo__stream_address_str(const kumo_address *a, char *buf, size_t len);
int kumo__tcp_address_parse(const char *s, kumo_address *out);
int kumo__shm_address_parse(const char *s, kumo_address *out);

/* The ops both stream transports' tables share (after name, tag, create). */
/* Address lengths: version, tag, IPv4 (4), port (2, big-endian),
 * incarnation (8); version, tag, pid (4), incarnation (8). */
#define KUMO__TCP_ADDR_LEN 16
#define KUMO__SHM_ADDR_LEN 14

#define KUMO__STREAM_OPS                                                                           \
    .endpoint_new = kumo__stream_endpoint_new, .endpoint_close = kumo__stream_endpoint_close,      \
    .connect = kumo__stream_connect, .send = kumo__stream_send,                                    \
    .when_ready = kumo__stream_when_ready, .conn_close = kumo__stream_conn_close,                  \
    .break_link = kumo__stream_break_link, .destroy = kumo__stream_destroy,                        \
    .address_str = kumo__stream_address_str, .max_message = kumo__stream_max_message

#endif
