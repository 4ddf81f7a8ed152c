/*
 * The transport layer's inside: what every implementation shares, and the
 * ops table each one fills in (docs/architecture.md §6: a transport is one
 * folder, one const ops table, one line in transport/registry.c).
 *
 * The generic layer (transport/core.c) owns handles and threads:
 *  - it validates arguments, refuses what a transport's caps lack
 *    (-ENOTSUP), and forwards every call made off the endpoint's shard to
 *    that shard as an engine task, so every op below runs on the shard of
 *    the endpoint it is given (except create/endpoint_new/destroy);
 *  - it keeps each endpoint's table of outgoing connections (the slots
 *    behind kumo_conn values), whose state any thread may read;
 *  - it delivers events (kumo__emit) and finishes connects and endpoint
 *    closes for the implementation.
 * Implementations never know about processes (never include proc/).
 */
#ifndef KUMO_TRANSPORT_TRANSPORT_H
#define KUMO_TRANSPORT_TRANSPORT_H

#include "engine/bytes.h"
#include "engine/engine.h"

#include "transport/create.h"

#include <kumo/transport.h>

#include <pthread.h>
#include <stdatomic.h>

struct kumo__conn;
struct kumo__connect_req;
struct kumo__ready;

struct kumo__transport_ops {
    const char *name;
    unsigned caps; /* KUMO_TCAP_* */

    /* ---- required (checked at registration) ---- */

    /* Allocates the implementation's transport (which embeds struct
     * kumo_transport first) for `cfg` (the implementation's config type, or
     * NULL for defaults).  Any thread.  The generic fields are filled in by
     * the caller after success. */
    int (*create)(struct kumo__engine *eng, const void *cfg, struct kumo_transport **out);
    /* Allocates an endpoint (embedding struct kumo_endpoint first) and sets
     * its address; ep->t, ->shard, ->fn, ->arg are set before the call.  Any
     * thread; may do non-blocking syscalls.  On failure frees what it made. */
    int (*endpoint_new)(struct kumo_transport *t, struct kumo_endpoint *ep_template,
                        struct kumo_endpoint **out);
    /* On the shard: close everything the endpoint owns.  Every connection
     * slot is already CLOSED.  When nothing of the endpoint is in flight any
     * more, the implementation calls kumo__endpoint_closed(ep) (on the
     * shard), which delivers EndPointClosed. */
    void (*endpoint_close)(struct kumo_endpoint *ep);
    /* On the shard: start a connect; finish it with kumo__connect_done. */
    void (*connect)(struct kumo_endpoint *ep, struct kumo__connect_req *req);
    /* On the shard: send on an OPEN connection.  Same contract as kumo_conn_send
     * (len is the total of iov).  Returns 0 or -errno; on failure release is
     * not called. */
    int (*send)(struct kumo_endpoint *ep, struct kumo__conn *c, const struct iovec *iov, int n,
                size_t len, kumo_release_fn release, void *release_arg);
    /* ---- back-pressure (optional: without it no connection is busy) ---- */

    /* On the shard, for an OPEN connection marked busy: keep `r` and finish
     * it with kumo__ready_done once the connection is not busy, or with an
     * error when its link fails. */
    void (*when_ready)(struct kumo_endpoint *ep, struct kumo__conn *c, struct kumo__ready *r);
    /* On the shard: the user closed `c` (state CLOSED or was FAILED).  The
     * slot is freed by the caller right after. */
    void (*conn_close)(struct kumo_endpoint *ep, struct kumo__conn *c);
    /* On the shard: the test hook (see kumo_transport_break_link). */
    void (*break_link)(struct kumo_endpoint *ep, const kumo_address *peer);
    /* Any thread, after every endpoint delivered EndPointClosed and the
     * engine drained every task: frees the implementation's transport and
     * endpoints. */
    void (*destroy)(struct kumo_transport *t);

    /* ---- optional ---- */

    /* Human-readable address (kumo_address_str) for this transport's tag. */
    void (*address_str)(const kumo_address *a, char *buf, size_t len);
    /* The inverse (kumo_address_parse): `s` is what address_str wrote
     * after "<name>://".  Pure; 0 or -EINVAL. */
    int (*address_parse)(const char *s, kumo_address *out);
    /* Multicast (KUMO_TCAP_MULTICAST), on the shard. */
    int (*multicast_new)(struct kumo_endpoint *ep, kumo_address *group);
    int (*multicast_subscribe)(struct kumo_endpoint *ep, const kumo_address *group);
    int (*multicast_send)(struct kumo_endpoint *ep, const kumo_address *group,
                          const struct iovec *iov, int n);
    /* Largest message accepted by send; 0 = SIZE_MAX. */
    size_t (*max_message)(const struct kumo_transport *t);
    /* Whether two addresses of this transport name one place, where only
     * one endpoint can live at a time (any incarnation): see
     * kumo_address_same_place.  NULL: its addresses have no such place. */
    bool (*same_place)(const kumo_address *a, const kumo_address *b);
    /* Whether `a` names a place only (no incarnation): see
     * kumo_address_is_place.  NULL: no address does. */
    bool (*is_place)(const kumo_address *a);
    /* Address tag byte (bytes[1]) this transport uses. */
    uint8_t tag;
    /* The length of every address of this transport (0: they vary):
     * kumo_connect refuses others with -EINVAL. */
    uint8_t addr_len;
};

/* The registry (transport/registry.c). */
const struct kumo__transport_ops *kumo__transport_find(const char *name);
const struct kumo__transport_ops *kumo__transport_by_tag(uint8_t tag);

/* ------------------------------------------------------------------ */
/* Generic objects                                                     */
/* ------------------------------------------------------------------ */

struct kumo_transport {
    const struct kumo__transport_ops *ops;
    struct kumo__engine *eng;
    size_t max_message;
    /* Set by create: a message sent off the endpoint's shard (its bytes
     * copied into the forwarding task) and at most this long is passed to
     * send as a copy, the task freed at once, rather than lent until the
     * implementation's release: for an implementation that batches small
     * copies more cheaply than it queues lent buffers.  0: always lent. */
    size_t fwd_copy_max;
    pthread_mutex_t mu; /* guards the fields below */
    pthread_cond_t cv;
    bool closed;
    unsigned open_eps; /* endpoints that have not delivered EndPointClosed */
    struct kumo_endpoint *eps;
};

/* Connection slot states. */
enum { KUMO__CONN_FREE = 0, KUMO__CONN_OPEN, KUMO__CONN_CLOSED, KUMO__CONN_FAILED };

/* The slot behind a kumo_conn.  gen and state may be read by any thread;
 * everything else is the endpoint shard's. */
struct kumo__conn {
    _Atomic uint32_t gen;
    _Atomic uint32_t state;
    _Atomic bool busy; /* set by the implementation: sends fail with -KUMO_EBUSY */
    uint32_t slot;
    uint32_t next_free;
    void *impl; /* the implementation's connection; NULL once detached (link failed) */
};

#define KUMO__CONN_CHUNK 256u
#define KUMO__CONN_MAX_CHUNKS 4096u

struct kumo__conn_table {
    _Atomic(struct kumo__conn *) chunks[KUMO__CONN_MAX_CHUNKS];
    _Atomic uint32_t hwm; /* slots ever handed out */
    uint32_t free_head;   /* UINT32_MAX: none */
    uint32_t live;
};

struct kumo_endpoint {
    struct kumo_transport *t;
    unsigned shard;
    kumo_address addr;
    kumo_event_fn fn;
    void *arg;
    _Atomic int closing; /* kumo_endpoint_close was called */
    bool shut;           /* the close reached the shard (shard-owned) */
    bool closed;         /* EndPointClosed delivered (shard-owned) */
    struct kumo__conn_table conns;
    struct kumo_endpoint *next; /* in t->eps */
};

/* A connect request; the implementation may use `impl` and `next`. */
struct kumo__connect_req {
    struct kumo__task task;
    struct kumo_endpoint *ep;
    kumo_address to;
    kumo_reliability rel;
    kumo_hints hints;
    char class_name[32];
    kumo_connect_fn cb;
    void *arg;
    /* free for the implementation */
    void *impl;
    uint64_t deadline;
    struct kumo__connect_req *next;
};

/* A kumo_conn_when_ready wait; the implementation may use `next`. */
struct kumo__ready {
    struct kumo__task task;
    kumo_conn h;
    kumo_ready_fn fn;
    void *arg;
    struct kumo__ready *next;
};

/* Default send_queue_max of the stream transports. */
#define KUMO__SEND_QUEUE_MAX ((size_t)32 << 20)

/* ---- for implementations, on the endpoint's shard ---- */

/* Calls the waiter's callback with err (0: not busy) and frees it. */
void kumo__ready_done(struct kumo__ready *r, int err);

/* Allocates an OPEN slot holding `impl`.  NULL on -ENOMEM. */
struct kumo__conn *kumo__conn_alloc(struct kumo_endpoint *ep, void *impl);
/* Finishes a connect: err == 0 with the slot from kumo__conn_alloc, or err
 * < 0 with c == NULL.  Calls the user's callback and frees req. */
void kumo__connect_done(struct kumo__connect_req *req, struct kumo__conn *c, int err);
/* The link under an OPEN connection failed: later sends get -KUMO_ECONNLOST
 * (the slot stays until the user closes it). */
void kumo__conn_fail(struct kumo__conn *c);
/* The handle value for a slot. */
static inline kumo_conn kumo__conn_handle(struct kumo_endpoint *ep, struct kumo__conn *c)
{
    return (kumo_conn){
        .ep = ep, .slot = c->slot, .gen = atomic_load_explicit(&c->gen, memory_order_relaxed)};
}
/* Calls every live slot's fn (endpoint close, link failure sweeps). */
void kumo__conn_each(struct kumo_endpoint *ep, void (*fn)(struct kumo__conn *c, void *arg),
                     void *arg);

/* Delivers an event to the endpoint's callback (dropped once the endpoint
 * delivered EndPointClosed). */
static inline void kumo__emit(struct kumo_endpoint *ep, const kumo_event *ev)
{
    if (!ep->closed)
        ep->fn(ep, ev, ep->arg);
}
/* Convenience: Error(ConnectionLost, addr). */
void kumo__emit_lost(struct kumo_endpoint *ep, const kumo_address *addr, int reason);
/* The implementation has released everything of `ep`: frees the slots,
 * delivers EndPointClosed, tells kumo_transport_free. */
void kumo__endpoint_closed(struct kumo_endpoint *ep);

/* ---- received messages ---- */

/* Every received message an event carries.  keep() returns an owned rx
 * (itself after setting `kept`, or a copy) or NULL; free() frees an owned
 * one. */
struct kumo_rx {
    const struct iovec *iov;
    int iovcnt;
    size_t len;
    bool kept;
    struct kumo_rx *(*keep)(struct kumo_rx *rx);
    void (*free)(struct kumo_rx *rx);
};

/* A received message in one heap block: its kumo_rx, its one iovec, then
 * the bytes.  kumo_event_keep hands it over as it is (no copy);
 * kumo_rx_free frees it (rx.free is NULL). */
struct kumo__rx_block {
    struct kumo_rx rx;
    struct iovec v;
    uint8_t data[];
};

/* A block for `len` bytes (not filled), or NULL. */
struct kumo__rx_block *kumo__rx_block_new(size_t len);

/* A keep() for messages the transport does not reuse: marks it kept. */
struct kumo_rx *kumo__rx_keep_self(struct kumo_rx *rx);

/* A keep() for messages in buffers the transport reuses: copies the
 * message into a block. */
struct kumo_rx *kumo__rx_copy(struct kumo_rx *rx);

/* ---- misc ---- */

/* Internal creation: transport/create.h. */

/* True when the calling thread is shard `shard` of `eng`. */
static inline bool kumo__on_shard(struct kumo__engine *eng, unsigned shard)
{
    struct kumo__shard *sh = kumo__shard_current();
    return sh && sh->eng == eng && sh->id == shard;
}

/* Sum of iov lengths, or SIZE_MAX if n < 0 or an entry is invalid. */
size_t kumo__iov_len(const struct iovec *iov, int n);

/* What a queued send keeps of the caller's message, in a block that ends
 * with `dst`: the iovec array itself when the buffers are lent, else one
 * iovec over a copy of the `len` bytes placed right after it.
 * kumo__iov_hold_size is the room `dst` needs; kumo__iov_hold fills it and
 * returns the number of iovecs kept. */
static inline size_t kumo__iov_hold_size(int n, size_t len, bool lent)
{
    return lent ? sizeof(struct iovec) * (size_t)n : sizeof(struct iovec) + len;
}

static inline int kumo__iov_hold(struct iovec *dst, const struct iovec *iov, int n, size_t len,
                                 bool lent)
{
    if (lent) {
        if (n)
            memcpy(dst, iov, sizeof(struct iovec) * (size_t)n);
        return n;
    }
    uint8_t *p = (uint8_t *)(dst + 1);
    kumo__iov_gather(p, iov, n);
    dst[0] = (struct iovec){.iov_base = p, .iov_len = len};
    return 1;
}

/* Address format: bytes[0] = version (1), bytes[1] = transport tag. */
#define KUMO__ADDR_VERSION 1

#endif
