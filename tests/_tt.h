/*
 * Transport test helpers (linked into every test binary; used by the
 * transport_* suites).
 *
 * A test starts a bare engine (shards, no processes: transports must not
 * need them) with tt_start(), makes a transport, observes endpoints through
 * recorders (tt_ep: every event copied into a queue the test thread waits
 * on), and ends with tt_finish(), which frees the transport, stops the
 * engine and asserts inside the test body that nothing leaked
 * (docs/architecture.md, §6).  Every wait is bounded (TT_WAIT_NS) and fails with a dump
 * of what did arrive; no test sleeps.
 *
 * Callbacks run on shard threads, where Criterion assertions must not be
 * used: hooks record problems (tt_ep.fail) and the test thread asserts.
 */
#ifndef KUMO_TESTS_TT_H
#define KUMO_TESTS_TT_H

#include "config.h"
#include "engine/engine.h"
#include "transport/transport.h"

#include <kumo/transport.h>

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define TT_WAIT_NS (20LL * 1000 * 1000 * 1000)
#define TT_MS (1000LL * 1000)

/* The cookie tt_start puts in KUMO_COOKIE (unless a test set it first), so
 * every transport a test makes without one of its own shares it and no
 * test reads ~/.kumo.cookie. */
#define TT_COOKIE "kumo-test-cookie"

/* ---- engine ---- */

/* A bare engine with `shards` shards (unpinned, short spin); records the
 * allocation baseline for the leak check. */
struct kumo__engine *tt_start(unsigned shards);
/* Stops and destroys the engine, then asserts nothing leaked. */
void tt_stop(struct kumo__engine *eng);

/* The transport under test with test-friendly settings (tcp: loopback,
 * short heartbeats when `fast_heartbeat`). */
kumo_transport *tt_transport(struct kumo__engine *eng, const char *name);
kumo_transport *tt_transport_cfg(struct kumo__engine *eng, const char *name, const void *cfg);

/* ---- recorders ---- */

typedef struct tt_ev {
    kumo_event_kind kind;
    kumo_event_error error;
    int reason;
    uint64_t conn;
    kumo_reliability reliability;
    kumo_address addr;
    size_t len;
    int iovcnt;
    uint8_t *data; /* copy of the message (when the recorder copies) */
} tt_ev;

typedef struct tt_ep tt_ep;
/* A hook runs on the endpoint's shard for every event before it is
 * recorded; returning false skips recording it. */
typedef bool (*tt_hook)(tt_ep *e, const kumo_event *ev);

struct tt_ep {
    kumo_endpoint *ep;
    kumo_address addr;
    const char *name;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tt_ev *q;
    size_t head, n, cap;
    bool copy_data;
    bool closed;           /* EndPointClosed seen */
    unsigned after_closed; /* events delivered after EndPointClosed (must stay 0) */
    tt_hook hook;
    void *user;
    /* counters kept under mu */
    uint64_t received, opened, conn_closed, lost;
    /* first problem a hook saw (asserted by the test thread) */
    char fail[256];
};

/* Creates an endpoint on `shard` with a recorder that copies messages. */
tt_ep *tt_ep_new(kumo_transport *t, unsigned shard, const char *name);
tt_ep *tt_ep_new_hook(kumo_transport *t, unsigned shard, const char *name, tt_hook hook,
                      void *user);
/* Frees the recorder (after the transport was freed). */
void tt_ep_free(tt_ep *e);
/* Records a problem seen on a shard (first one wins). */
void tt_ep_failf(tt_ep *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Asserts no hook recorded a problem. */
void tt_ep_check(tt_ep *e);

/* Waits for the next event (fails the test after TT_WAIT_NS). */
tt_ev tt_next(tt_ep *e);
/* The next event must be of `kind` (and for errors, of `error`). */
tt_ev tt_expect(tt_ep *e, kumo_event_kind kind);
tt_ev tt_expect_error(tt_ep *e, kumo_event_error error);
/* Skips events until one of `kind` (fails after TT_WAIT_NS). */
tt_ev tt_find(tt_ep *e, kumo_event_kind kind);
/* Waits until a counter reaches n (fails after TT_WAIT_NS). */
void tt_wait_counter(tt_ep *e, const uint64_t *counter, uint64_t n, const char *what);
/* Nothing is queued right now. */
void tt_expect_empty(tt_ep *e);
/* Frees an event's copy. */
void tt_ev_free(tt_ev *ev);
/* Event as text for messages. */
const char *tt_ev_str(const tt_ev *ev, char *buf, size_t len);

/* ---- connections ---- */

/* Connects and waits for the callback; returns the error (0 on success). */
int tt_connect_err(tt_ep *from, const kumo_address *to, kumo_conn *out);
/* Same, asserting success. */
kumo_conn tt_connect(tt_ep *from, const kumo_address *to);
/* tt_connect_err with connect hints (e.g. a connect timeout). */
int tt_connect_hints(tt_ep *from, const kumo_address *to, const kumo_hints *hints, kumo_conn *out);
/* Sends a copy of data[0..len); asserts success. */
void tt_send(kumo_conn c, const void *data, size_t len);
/* Receives the next message on `e`: skips nothing, asserts the kind. */
tt_ev tt_recv(tt_ep *e);

/* ---- a client and a server ---- */

/* A "client" endpoint on shard 0 connected (c) to a "server" on shard 1 of
 * transport t, the server having seen the connection open from the
 * client's address; Kumo's log goes to the capture (tt_log_capture). */
typedef struct tt_pair {
    struct kumo__engine *eng;
    kumo_transport *t;
    tt_ep *srv, *cl;
    kumo_conn c;
} tt_pair;

tt_pair tt_pair_new(struct kumo__engine *eng, kumo_transport *t);
/* Frees the transport, checks and frees both recorders, restores the log
 * and stops the engine (with its leak check). */
void tt_pair_finish(tt_pair *p);

/* ---- an echo server ---- */

/*
 * An endpoint that opens a connection back to every peer connection's
 * source (one reply connection per incoming connection) and sends every
 * message back on it, lending the received buffers (kept with
 * kumo_event_keep) so the zero-copy paths run.  Closing an incoming
 * connection closes its reply connection.
 */
tt_ep *tt_echo_new(kumo_transport *t, unsigned shard);
/* Number of reply connections still open. */
uint64_t tt_echo_open(tt_ep *e);

/* Log capture: route Kumo's log lines into a buffer (from any thread);
 * tt_logged tells whether a line containing `needle` was logged since the
 * last tt_log_capture.  Restore with kumo_log_set_sink(NULL, NULL). */
void tt_log_capture(void);
bool tt_logged(const char *needle);
const char *tt_log_text(void);

/* Allocation-free engine task helper: runs fn(arg) on `shard` and waits. */
void tt_on_shard(struct kumo__engine *eng, unsigned shard, void (*fn)(void *arg), void *arg);

uint64_t tt_now_ns(void);

/* ---- raw peers: the stream transports' handshake by hand ---- */

/* A connector's side of one handshake (transport/stream/auth.h). */
typedef struct tt_hs {
    kumo_address from, to;
    uint8_t nonce_c[32];
} tt_hs;

/* Writes the HELLO frame (header and payload) as `from` to the endpoint at
 * `to`, with a fresh nonce kept in *hs; returns its length (at most 512). */
size_t tt_hs_hello(tt_hs *hs, const kumo_address *from, const kumo_address *to, uint8_t *out);
/* Given an OK HELLO_ACK's payload, checks the acceptor's MAC under `cookie`
 * (true: it is right) and writes the AUTH frame that answers it (with a MAC
 * under `cookie`) to out (64 bytes); *len gets its length. */
bool tt_hs_auth(tt_hs *hs, const char *cookie, const uint8_t *ack, size_t ack_len, uint8_t *out,
                size_t *len);

#endif
