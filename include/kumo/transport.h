/*
 * Kumo transports: Cloud Haskell's `network-transport` model in C, event
 * driven for a shard-per-core engine.  Transports know nothing of processes.
 *
 * Model
 *  - A *transport* (one implementation: "inmem", "tcp", ...) creates
 *    *endpoints*.  An endpoint is heavyweight (sockets, buffers); it lives on
 *    one shard and has an *address*: a value of bytes that can be copied,
 *    compared and sent to other nodes inside messages.
 *  - From an endpoint, kumo_connect() opens a *lightweight connection* to the
 *    endpoint at an address: unidirectional (the connecting side only sends)
 *    and message oriented.  All lightweight connections between two
 *    endpoints, in both directions, share one *heavyweight link* (one socket,
 *    one ring pair, ...).
 *  - Each endpoint has exactly one event stream, delivered by one callback
 *    on the endpoint's shard, one event at a time: ConnectionOpened,
 *    Received, ConnectionClosed, ReceivedMulticast, EndPointClosed, Error.
 *
 * Reliability.  KUMO_RELIABLE_ORDERED is the one every transport provides:
 * messages arrive whole, uncorrupted, at most once, and in the order they
 * were sent on that connection (there is no order between connections).
 * Sending is somewhat asynchronous: success means "accepted", not
 * "delivered".  Unordered, unreliable and multicast delivery are optional;
 * a transport that lacks them says so in kumo_transport_caps() and the calls
 * that need them return -ENOTSUP.
 *
 * Failure is per heavyweight link.  When the link between endpoints A and B
 * fails (network error, peer process died, heartbeat timeout, malformed
 * input, or the test hook kumo_transport_break_link), every lightweight
 * connection between them fails at once, and each side that had at least
 * one connection on the link (incoming or outgoing) gets exactly one
 * Error(ConnectionLost, address of the other side).  ConnectionLost implies
 * that every incoming connection from that address is gone (no
 * ConnectionClosed follows for them), and sends on outgoing connections to
 * it fail with -KUMO_ECONNLOST.  A later kumo_connect to the same address
 * makes a new link.
 *
 * Closing an endpoint is orderly: each peer sees ConnectionClosed for every
 * connection the endpoint had opened to it (after the messages sent on
 * them), and a peer that had outgoing connections to the closed endpoint
 * gets one ConnectionLost(address) and its later sends fail.  The closed
 * endpoint gets EndPointClosed as its last event; kumo_connect to its
 * address then fails with -KUMO_ENOTFOUND.
 *
 * Threads.  Every callback runs on the shard of the endpoint it belongs to
 * and must not block.  Unless a function says otherwise it may be called
 * from any thread (the endpoint's shard, another shard, or a thread outside
 * the engine) and never blocks; calls made on the endpoint's own shard take
 * the fast path, calls from elsewhere are forwarded to that shard in the
 * order each thread made them.  Callbacks may call every function here
 * except kumo_transport_free.
 *
 * Errors follow Kumo's convention: 0 (or a count) on success, -errno or
 * -KUMO_E* on failure; a function that fails takes ownership of nothing and
 * never calls the callback it was given.  kumo_transport_strerror() names
 * every code, the transport ones included.
 *
 * Lifetimes (close / stop / free).
 *  - kumo_conn is a value (endpoint + id + generation): once closed, or once
 *    its link failed and it was closed, a stale handle is refused with
 *    -KUMO_ECLOSED, never a crash.
 *  - kumo_endpoint_close() releases the endpoint's resources; the handle
 *    itself stays valid (every call on it fails with -KUMO_ECLOSED) until
 *    kumo_transport_free().
 *  - kumo_transport_close() closes every endpoint; kumo_transport_free()
 *    waits for every endpoint's EndPointClosed and for every in-flight
 *    kernel operation, then frees everything.  It must run before the
 *    engine (node) the transport runs on is stopped.
 */
#ifndef KUMO_TRANSPORT_H
#define KUMO_TRANSPORT_H

#include <kumo/kumo.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kumo_transport kumo_transport;
typedef struct kumo_endpoint kumo_endpoint;

/* ------------------------------------------------------------------ */
/* Addresses                                                           */
/* ------------------------------------------------------------------ */

/* Longest address any transport produces, in bytes. */
#define KUMO_ADDRESS_MAX 48

/*
 * An endpoint address: a plain value.  Only `len` bytes of `bytes` are
 * meaningful; every transport starts its addresses with a one-byte format
 * version and a one-byte transport tag, and includes an incarnation number,
 * so an endpoint re-created at the same place gets a different address and
 * stale addresses do not reach it.  (A tcp *place*, an address with
 * incarnation 0, names whatever endpoint listens there: see
 * kumo_address_is_place.)
 */
typedef struct kumo_address {
    uint8_t len;
    uint8_t bytes[KUMO_ADDRESS_MAX];
} kumo_address;

KUMO_API bool kumo_address_eq(const kumo_address *a, const kumo_address *b);
/* A total order (bytes, then length): the tie-break crossed connects use. */
KUMO_API int kumo_address_cmp(const kumo_address *a, const kumo_address *b);
/* Serialises: writes len + 1 bytes (a length byte, then the bytes) to out,
 * which must have room for KUMO_ADDRESS_WIRE_MAX.  Returns the count. */
#define KUMO_ADDRESS_WIRE_MAX (1 + KUMO_ADDRESS_MAX)
KUMO_API size_t kumo_address_encode(const kumo_address *a, uint8_t *out);
/* Reads an address from in[0..len).  Returns the bytes consumed, or
 * -KUMO_EBADWIRE (short input, or a length over KUMO_ADDRESS_MAX). */
KUMO_API int kumo_address_decode(const uint8_t *in, size_t len, kumo_address *out);
/* Whether a and b name one place where only one endpoint can live at a
 * time, whatever their incarnations: for tcp the same IPv4 address and
 * port (an endpoint at b is a later or earlier incarnation of the one at
 * a, or the same one).  Always false for transports without such places
 * (shm and inmem: one OS process holds many endpoints). */
KUMO_API bool kumo_address_same_place(const kumo_address *a, const kumo_address *b);
/* Whether `a` names a place without an incarnation ("tcp://<IPv4>:<port>"
 * parsed by kumo_address_parse).  kumo_connect to a place reaches the
 * endpoint listening there now: it answers with its own address and the
 * connection is made to that (over tcp, one extra connect on the first
 * contact).  Always false for shm and inmem addresses. */
KUMO_API bool kumo_address_is_place(const kumo_address *a);
/* Human-readable form ("tcp://127.0.0.1:4000/1a2b...", a place without
 * "/<incarnation>"), NUL-terminated, truncated to len.  Returns buf. */
KUMO_API char *kumo_address_str(const kumo_address *a, char *buf, size_t len);
/* Longest kumo_address_str of any address, with its NUL. */
#define KUMO_ADDRESS_STR_MAX 96
/*
 * The inverse of kumo_address_str: "tcp://<IPv4>:<port>/<incarnation>",
 * "shm://<pid>/<incarnation>", "inmem://<transport>/<index>/<incarnation>"
 * (incarnations and inmem's transport in hex, as printed), so an address
 * can travel on a command line, in a file or in the environment.  Pure;
 * any thread.  Returns 0, or -EINVAL (unknown scheme, malformed or out of
 * range).  The incarnation is part of the address: a string names one
 * endpoint, never a later one at the same place.  A tcp address may omit
 * "/<incarnation>" ("tcp://127.0.0.1:4369"): that names the place, whatever
 * endpoint listens there when it is used (kumo_address_is_place).
 */
KUMO_API int kumo_address_parse(const char *s, kumo_address *out);

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/*
 * Codes transports return (negated), besides plain -errno values such as
 * -EINVAL, -ENOMEM and -ENOTSUP, and kumo.h's -KUMO_ETIMEOUT (connect: no
 * answer within the connect timeout) and -KUMO_ETOOBIG (message over the
 * transport's maximum).  They sit in their own range above kumo.h's;
 * kumo_strerror() and kumo_transport_strerror() both name them.
 */
enum {
    KUMO_ETRANSPORT_BASE = 10100,
    KUMO_ENOTFOUND,    /* connect: no endpoint at that address (closed, never
                          existed, or another incarnation) */
    KUMO_ENORESOURCES, /* connect: this side or the peer lacks resources
                          (descriptors, memory, buffer space) */
    KUMO_ECONNFAILED,  /* connect: any other failure (unreachable, protocol
                          mismatch, link failed while connecting) */
    KUMO_ECLOSED,      /* the connection, its endpoint or the transport was
                          closed */
    KUMO_ECONNLOST,    /* the connection's heavyweight link failed */
    KUMO_EBUSY,        /* send: the link's send queue is full; nothing was
                          taken (kumo_conn_when_ready) */
    KUMO_EAUTH,        /* connect: the peer failed the cookie handshake (its
                          cookie differs from ours, or it is no Kumo node) */
    KUMO_ETRANSPORT_LAST
};

/* A static string for any code a transport returns (also every code
 * kumo_strerror knows). */
KUMO_API const char *kumo_transport_strerror(int err);

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

typedef enum kumo_reliability {
    KUMO_RELIABLE_ORDERED = 0, /* required of every transport */
    KUMO_RELIABLE_UNORDERED,   /* optional: KUMO_TCAP_UNORDERED */
    KUMO_UNRELIABLE,           /* optional: KUMO_TCAP_UNRELIABLE */
} kumo_reliability;

/* What a transport offers beyond reliable-ordered connections. */
enum {
    KUMO_TCAP_UNORDERED = 1u << 0,
    KUMO_TCAP_UNRELIABLE = 1u << 1,
    KUMO_TCAP_MULTICAST = 1u << 2,
};

typedef enum kumo_hint_priority {
    KUMO_HINT_DEFAULT = 0,
    KUMO_HINT_LATENCY,   /* small messages, answer soon (tcp: TCP_NODELAY) */
    KUMO_HINT_BANDWIDTH, /* large transfers (tcp: bigger socket buffers) */
} kumo_hint_priority;

/*
 * Connect hints: transport-neutral statements about how the connection will
 * be used; each transport maps them to its own knobs.  A zeroed struct (or
 * NULL) means defaults.  Hints about the link (priority, volume) apply when
 * the connect creates the heavyweight link.
 */
typedef struct kumo_hints {
    /* Give up after this long (ns); 0 = the transport's default. */
    uint64_t connect_timeout_ns;
    kumo_hint_priority priority;
    /* Expected bytes per second on this connection; 0 = unknown. */
    uint64_t expected_volume;
    /* A class name configurations can match on ("control", "bulk", ...);
     * may be NULL.  Copied during the call. */
    const char *class_name;
} kumo_hints;

/* A lightweight connection: a value.  Copy it freely; compare with
 * kumo_conn_eq.  The all-zero value is "no connection". */
typedef struct kumo_conn {
    kumo_endpoint *ep;
    uint32_t slot;
    uint32_t gen;
} kumo_conn;

static inline bool kumo_conn_eq(kumo_conn a, kumo_conn b)
{
    return a.ep == b.ep && a.slot == b.slot && a.gen == b.gen;
}

/*
 * Called once, on the endpoint's shard, when a kumo_connect that returned 0
 * has finished: err == 0 and a usable `conn`, or err < 0 (-KUMO_ENOTFOUND,
 * -KUMO_ENORESOURCES, -KUMO_ETIMEOUT, -KUMO_ECONNFAILED, -KUMO_ECLOSED if
 * the endpoint closed meanwhile) and a zero conn.
 */
typedef void (*kumo_connect_fn)(kumo_endpoint *ep, kumo_conn conn, int err, void *arg);

/*
 * Opens a lightweight connection from `ep` to the endpoint at `to`
 * (connecting to `ep`'s own address is allowed and gives a loopback
 * connection).  Non-blocking: returns 0 and calls cb(arg) later, exactly
 * once, or returns an error and never calls it: -EINVAL (bad address or
 * arguments), -ENOTSUP (reliability the transport lacks), -KUMO_ECLOSED
 * (endpoint closed), -ENOMEM.  `to` and `hints` are copied.
 * Each successful connect makes a new connection, even to the same address.
 */
KUMO_API int kumo_connect(kumo_endpoint *ep, const kumo_address *to, kumo_reliability rel,
                          const kumo_hints *hints, kumo_connect_fn cb, void *arg);

/*
 * Releases buffers lent to kumo_conn_send.  Called exactly once per successful
 * lending send, from any thread (often the endpoint's shard, or the
 * receiving shard for in-memory zero-copy delivery), when the transport
 * will not read the buffers again: they were handed to the kernel and the
 * kernel is done with them, the receiver freed them, or the message was
 * dropped because the connection closed or failed.  Must not block.
 */
typedef void (*kumo_release_fn)(void *arg);

/*
 * Sends one message made of iov[0..n) (gathered; n >= 0, total length may
 * be 0) on `c`.
 *  - release == NULL: the buffers are read during the call only (the
 *    transport copies what it cannot hand over at once: in-memory delivery
 *    copies once into the receiver's buffer; tcp copies small messages into
 *    its frame batch and large ones into a send buffer).
 *  - release != NULL: the buffers are *lent*, no copy is made: they must
 *    stay valid and unchanged until release(release_arg) is called.  The
 *    iovec array itself is copied during the call.
 * Returns 0 (accepted; delivery is not confirmed), -KUMO_ECLOSED (c was
 * closed, its endpoint closed, or c is stale), -KUMO_ECONNLOST (its link
 * failed), -KUMO_ETOOBIG, -EINVAL, -ENOMEM.  On failure nothing was lent
 * and release is not called.
 */
KUMO_API int kumo_conn_send(kumo_conn c, const struct iovec *iov, int n, kumo_release_fn release,
                            void *release_arg);

/*
 * Back-pressure.  A tcp or shm link holds at most its configured
 * send_queue_max bytes that were accepted but not yet handed to the kernel
 * or the ring.  A send that takes the queue to the limit is accepted (so
 * one message of any allowed size goes through an idle link); after it,
 * every connection on the link is busy and kumo_conn_send fails with
 * -KUMO_EBUSY, taking nothing, until the queue has drained below half the
 * limit.  A sender waits with kumo_conn_when_ready, as Erlang suspends a
 * process sending to a busy distribution port, so a slow or stuck peer
 * costs bounded memory and never blocks a shard.  (inmem hands messages
 * over at once and is never busy.)
 *
 * Calls fn(c, err, arg) exactly once, on c's endpoint's shard and never
 * from within this call: err 0 once c is not busy (soon, if it is not busy
 * now), or err < 0 (-KUMO_ECLOSED, -KUMO_ECONNLOST) if c was closed or its
 * link failed first.  Any thread.  Returns 0, or -EINVAL / -ENOMEM /
 * -KUMO_ECLOSED, and then fn is never called.
 */
typedef void (*kumo_ready_fn)(kumo_conn c, int err, void *arg);
KUMO_API int kumo_conn_when_ready(kumo_conn c, kumo_ready_fn fn, void *arg);

/*
 * Closes `c`: the peer gets ConnectionClosed after every message sent on c
 * before this call.  Idempotent: closing a closed, failed or stale handle is
 * a no-op.  Always returns 0 (or -EINVAL for a null handle).
 */
KUMO_API int kumo_conn_close(kumo_conn c);

/* ------------------------------------------------------------------ */
/* Events                                                              */
/* ------------------------------------------------------------------ */

typedef enum kumo_event_kind {
    KUMO_EV_CONNECTION_OPENED = 1, /* conn, reliability, address */
    KUMO_EV_RECEIVED,              /* conn, iov/iovcnt/len */
    KUMO_EV_CONNECTION_CLOSED,     /* conn */
    KUMO_EV_RECEIVED_MULTICAST,    /* address (the group), iov/iovcnt/len */
    KUMO_EV_ENDPOINT_CLOSED,       /* the last event of the endpoint */
    KUMO_EV_ERROR,                 /* error (+ address for ConnectionLost) */
} kumo_event_kind;

typedef enum kumo_event_error {
    KUMO_ERR_CONNECTION_LOST = 1, /* the link to `address` failed */
    KUMO_ERR_ENDPOINT_FAILED,     /* the endpoint is unusable; EndPointClosed follows */
    KUMO_ERR_TRANSPORT_FAILED,    /* the whole transport is unusable */
} kumo_event_error;

/* An opaque received message taken with kumo_event_keep. */
typedef struct kumo_rx kumo_rx;

/*
 * One event.  Everything it points to is valid only during the callback.
 * `conn` ids name *incoming* connections: unique within the receiving
 * endpoint for its whole life, never 0.
 */
typedef struct kumo_event {
    kumo_event_kind kind;
    kumo_event_error error;       /* KUMO_EV_ERROR */
    int reason;                   /* KUMO_EV_ERROR: -errno / -KUMO_E* detail */
    uint64_t conn;                /* OPENED, RECEIVED, CLOSED */
    kumo_reliability reliability; /* OPENED */
    const kumo_address *address;  /* OPENED: the remote endpoint; ERROR
                                     ConnectionLost: the other side */
    const struct iovec *iov;      /* RECEIVED*: the message, in iovcnt pieces */
    int iovcnt;
    size_t len; /* RECEIVED*: total bytes */
    kumo_rx *rx;
} kumo_event;

/* The endpoint's event callback; runs on the endpoint's shard. */
typedef void (*kumo_event_fn)(kumo_endpoint *ep, const kumo_event *ev, void *arg);

/*
 * Inside the callback, for a RECEIVED* event: takes ownership of the
 * message, which otherwise is freed when the callback returns.  Zero-copy
 * where the transport can (in-memory messages, reassembled tcp messages);
 * otherwise the message is copied into one buffer.  Returns NULL on -ENOMEM
 * (the event's buffers stay valid until the callback returns).
 */
KUMO_API kumo_rx *kumo_event_keep(const kumo_event *ev);
/* The kept message's pieces; returns the piece count. */
KUMO_API int kumo_rx_iov(const kumo_rx *rx, const struct iovec **iov);
KUMO_API size_t kumo_rx_len(const kumo_rx *rx);
/* Frees a kept message, from any thread. */
KUMO_API void kumo_rx_free(kumo_rx *rx);

/* ------------------------------------------------------------------ */
/* Multicast (optional: KUMO_TCAP_MULTICAST)                           */
/* ------------------------------------------------------------------ */

/*
 * Unreliable one-to-many groups with a bounded message size.  A transport
 * without KUMO_TCAP_MULTICAST returns -ENOTSUP from all three.
 * kumo_multicast_new makes a group owned by `ep` and writes its address;
 * kumo_multicast_subscribe makes `ep` receive ReceivedMulticast events for
 * the group; kumo_multicast_send sends (from the group's owner only).
 */
KUMO_API int kumo_multicast_new(kumo_endpoint *ep, kumo_address *group);
KUMO_API int kumo_multicast_subscribe(kumo_endpoint *ep, const kumo_address *group);
KUMO_API int kumo_multicast_send(kumo_endpoint *ep, const kumo_address *group,
                                 const struct iovec *iov, int n);

/* ------------------------------------------------------------------ */
/* Endpoints                                                           */
/* ------------------------------------------------------------------ */

/*
 * Creates an endpoint on shard `shard` of the transport's engine, whose
 * events go to on_event(ep, ev, arg) on that shard.  Its address is known
 * at once (kumo_endpoint_address).  Non-blocking (a tcp endpoint binds and
 * listens synchronously).  Returns 0, -EINVAL (bad shard), -KUMO_ECLOSED
 * (transport closed), -ENOMEM, or the -errno of bind/listen.
 */
KUMO_API int kumo_endpoint_new(kumo_transport *t, unsigned shard, kumo_event_fn on_event, void *arg,
                               kumo_endpoint **out);
KUMO_API const kumo_address *kumo_endpoint_address(const kumo_endpoint *ep);
KUMO_API unsigned kumo_endpoint_shard(const kumo_endpoint *ep);
KUMO_API kumo_transport *kumo_endpoint_transport(const kumo_endpoint *ep);

/*
 * Closes the endpoint (non-blocking, idempotent): outgoing connections
 * close in order after what was sent on them, peers are told (see the top
 * of this file), sockets and buffers are released, and EndPointClosed is
 * delivered as the last event.  Returns 0.
 */
KUMO_API int kumo_endpoint_close(kumo_endpoint *ep);

/* ------------------------------------------------------------------ */
/* Transports                                                          */
/* ------------------------------------------------------------------ */

/* Creates a transport of implementation `name` ("inmem", "tcp", "shm",
 * see kumo_transport_list) on `node`'s shards.  `config` is that
 * implementation's configuration struct (kumo_tcp_config, kumo_shm_config)
 * or NULL for its defaults.  Returns 0, -ENOENT for an unknown name,
 * -EINVAL, -ENOMEM or -KUMO_ESHUTDOWN.  Free it with kumo_transport_free
 * before stopping the node.  From any thread outside the node's shards. */
KUMO_API int kumo_transport_new(kumo_node *node, const char *name, const void *config,
                                kumo_transport **out);

/* The registered implementations, in registration order: writes up to
 * `max` names (static strings) and returns how many there are. */
KUMO_API unsigned kumo_transport_list(const char **names, unsigned max);

KUMO_API const char *kumo_transport_name(const kumo_transport *t);
KUMO_API unsigned kumo_transport_caps(const kumo_transport *t);

/* Closes every endpoint; later kumo_endpoint_new calls fail with
 * -KUMO_ECLOSED.  Non-blocking, idempotent. */
KUMO_API void kumo_transport_close(kumo_transport *t);

/* Closes (if needed), waits until every endpoint has delivered
 * EndPointClosed and every kernel operation has completed, and frees the
 * transport and its endpoints.  Blocks: call it from a thread outside the
 * engine, before the engine stops. */
KUMO_API void kumo_transport_free(kumo_transport *t);

/*
 * Test hook, provided by every transport: breaks the heavyweight link
 * between `ep` and the endpoint at `peer`, as if the network between them
 * failed.  Both sides then see the failure as described at the top of this
 * file (one ConnectionLost each side that had connections on it; failed
 * sends).  Returns 0 (also when there was no link: nothing happens), or
 * -KUMO_ECLOSED.
 */
KUMO_API int kumo_transport_break_link(kumo_endpoint *ep, const kumo_address *peer);

/* ------------------------------------------------------------------ */
/* Creation and per-transport configuration                            */
/* ------------------------------------------------------------------ */

/*
 * A transport runs on the shards of an engine.  Until the node layer offers
 * a public constructor over a kumo_node (it needs the node's engine, which
 * only proc/ can hand out), transports are created with the internal
 * kumo__transport_new(engine, name, config, &out) (transport/transport.h),
 * where `config` points to the configuration struct below that matches
 * `name` (or is NULL for defaults).
 */

/* "inmem": endpoints inside one OS process, on any shards.  Every inmem
 * transport of the OS process (on any engine, so of any node) reaches
 * every other's endpoints by address.  No configuration: pass NULL. */

/* "tcp": io_uring TCP.  A zeroed struct (or NULL) means every default.
 * Peers must agree on fragment_size (a frame larger than the receiver's
 * fragment_size closes the link). */
/* kumo_tcp_config.zerocopy_min's default, for links that leave the host.
 * Not measured here (this machine has loopback only, where zero-copy never
 * pays: perf/transport_tcp's tcp_oneway_*_kumo_{zc,copy} lines); the
 * kernel's MSG_ZEROCOPY notes put the break-even near 10 KB, and 64 KiB
 * stays clear of it. */
#define KUMO_TCP_ZEROCOPY_MIN (64u << 10)

typedef struct kumo_tcp_config {
    /* IPv4 address endpoints bind to, dotted quad; NULL = "127.0.0.1". */
    const char *bind_host;
    /* Port of the first endpoint; 0 = an ephemeral port per endpoint.
     * Endpoint k of a transport with a fixed port binds port + k. */
    uint16_t port;
    /* Default connect timeout (ns); 0 = 10 s. */
    uint64_t connect_timeout_ns;
    /* An idle link sends a heartbeat every interval and is declared dead
     * when nothing arrived for `timeout`.  0 = 1 s / 5 s. */
    uint64_t heartbeat_interval_ns;
    uint64_t heartbeat_timeout_ns;
    /* Largest message accepted (sent or received); 0 = 256 MiB. */
    size_t max_message;
    /* Messages are cut into frames of at most this many payload bytes so a
     * large message does not hold small ones up for long; 0 = 64 KiB.
     * Frames over this size from a peer close the link. */
    uint32_t fragment_size;
    /* Receive buffer ring per endpoint: count (power of two) x size.
     * 0 = 64 x 64 KiB. */
    unsigned rx_buffers;
    uint32_t rx_buffer_size;
    /* SO_SNDBUF / SO_RCVBUF for links hinted KUMO_HINT_BANDWIDTH (bytes);
     * 0 = the kernel's default (autotuning). */
    int bandwidth_sockbuf;
    /* A batch that carries at least this many bytes of lent payload (sends
     * with a release function) and nothing copied goes out with
     * IORING_OP_SENDMSG_ZC: the kernel sends from the lent pages, and
     * release runs after the kernel's notification that it is done with
     * them.  Below the threshold the kernel's copy is cheaper than pinning
     * pages and waiting for the notification.  0 = the default
     * (KUMO_TCP_ZEROCOPY_MIN), SIZE_MAX = never.  Links whose peer is on
     * this host (127/8, or our own address) use it only with
     * zerocopy_on_host: the kernel copies on local delivery anyway, and
     * measured here zero-copy over loopback is 2.5-4x slower than the
     * copying send.  Ignored where the kernel lacks SENDMSG_ZC. */
    size_t zerocopy_min;
    /* Zero-copy on links within this host too (for tests and measuring). */
    bool zerocopy_on_host;
    /* Bytes a link queues before its connections are busy (see
     * kumo_conn_when_ready); 0 = 32 MiB. */
    size_t send_queue_max;
    /* The secret both ends of a link must share (1 to 1024 bytes, copied).
     * A link carries nothing before each side has proven it knows the
     * cookie by HMAC-SHA256 over fresh nonces of both; the cookie never
     * crosses the wire.  A connect to a peer with another cookie fails
     * with -KUMO_EAUTH, the peer logs and drops the link.  NULL = the
     * environment's KUMO_COOKIE, else ~/.kumo.cookie (created with a
     * random cookie, mode 0400, if missing; it must be accessible by its
     * owner only), as Erlang's ~/.erlang.cookie. */
    const char *cookie;
} kumo_tcp_config;

/*
 * "shm": endpoints in processes of one host.  A link is a pair of byte
 * rings in shared memory (a sealed memfd passed over an abstract Unix
 * socket, with an eventfd per side for wake-ups); the socket's EOF reports
 * a peer process that died.  A zeroed struct (or NULL) means every default.
 */
typedef struct kumo_shm_config {
    /* Bytes per ring (one ring per direction), a power of two in
     * [4 KiB, 1 GiB]; 0 = 1 MiB.  Messages larger than a ring go through it
     * in pieces. */
    uint32_t ring_bytes;
    /* Default connect timeout (ns); 0 = 10 s. */
    uint64_t connect_timeout_ns;
    /* Largest message accepted; 0 = 256 MiB. */
    size_t max_message;
    /* Frame size large messages are cut into; 0 = 64 KiB. */
    uint32_t fragment_size;
    /* As kumo_tcp_config's; 0 = 32 MiB. */
    size_t send_queue_max;
    /* As kumo_tcp_config's: any process of the host may reach an abstract
     * Unix socket, so shm links prove the cookie too. */
    const char *cookie;
} kumo_shm_config;

#ifdef __cplusplus
}
#endif
#endif
