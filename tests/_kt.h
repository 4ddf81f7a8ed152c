/*
 * Test helpers shared by every suite (linked into each test binary).
 *
 * Every test is written once as a body taking the shard count and runs as
 * two Criterion tests, `<name>_1shard` and `<name>_2shards` (KT_TEST).  A
 * body starts its node with kt_start() and ends with kt_stop(), which stops
 * and frees the node and then asserts, inside the test body, that nothing
 * leaked (docs/architecture.md, §6, says why it must be inside the body).
 *
 * Tests observe the system through blocking inboxes.  Every wait is bounded
 * (KT_WAIT_NS) and fails with a dump of what did arrive; negatives use a
 * marker message sent after the thing that must not produce a message, so
 * no test sleeps.
 */
#ifndef KUMO_TESTS_KT_H
#define KUMO_TESTS_KT_H

#include "config.h"
#include <kumo/kumo.h>

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Per-test limit (seconds); every test uses it through KT_TEST. */
#define KT_TIMEOUT 30.0
/* Longest a helper waits for one expected event. */
#define KT_WAIT_NS (10LL * 1000 * 1000 * 1000)
#define KT_MS (1000LL * 1000)

/*
 * How kt_stop checks for leaks: LeakSanitizer in AddressSanitizer builds,
 * jemalloc's allocated-bytes count in builds that use jemalloc.  Other
 * builds (ThreadSanitizer, UBSan alone) have no way to check and say so in
 * each test's log.
 */
#if (defined(KUMO_SANITIZE_ADDRESS) && KUMO_SANITIZE_ADDRESS) || defined(__SANITIZE_ADDRESS__)
#define KT_LEAKS_LSAN 1
#define KT_LEAKS_JEMALLOC 0
#elif defined(KUMO_USE_JEMALLOC) && KUMO_USE_JEMALLOC
#define KT_LEAKS_LSAN 0
#define KT_LEAKS_JEMALLOC 1
#else
#define KT_LEAKS_LSAN 0
#define KT_LEAKS_JEMALLOC 0
#endif

/*
 * KT_TEST(suite, name) { ... body using kt_shards ... }
 * defines suite::name_1shard and suite::name_2shards.
 */
#define KT_TEST(suite, name)                                                                       \
    static void suite##__##name(unsigned kt_shards);                                               \
    Test(suite, name##_1shard, .timeout = KT_TIMEOUT)                                              \
    {                                                                                              \
        suite##__##name(1);                                                                        \
    }                                                                                              \
    Test(suite, name##_2shards, .timeout = KT_TIMEOUT)                                             \
    {                                                                                              \
        suite##__##name(2);                                                                        \
    }                                                                                              \
    static void suite##__##name(unsigned kt_shards)

/* The shard "other than 0" for placing a peer: 1 with two shards, else 0. */
#define KT_OTHER(shards) ((shards) > 1 ? 1 : 0)

/* ---- node ---- */

/* Starts a node with `shards` shards (unpinned, short spin, WARN logging)
 * and records the allocation baseline for kt_stop. */
kumo_node *kt_start(unsigned shards);
/* Same with a caller's config (unpinned; spin_ns 0 means 20 us here). */
kumo_node *kt_start_cfg(kumo_node_config cfg);
/* Another node in this OS process, set up as kt_start_cfg sets up its
 * node (unpinned, parking soon), with no leak baseline of its own: the
 * first node's kt_stop checks for both.  Asserts success. */
kumo_node *kt_start_more(kumo_node_config cfg);
/* The engine's defaults: pinned shards, default spin. */
kumo_node *kt_start_pinned(unsigned shards);
/* Stops and frees the node, then asserts nothing leaked. */
void kt_stop(kumo_node *node);
/* The leak check alone, for a test that freed its node itself. */
void kt_leak_check(void);
/* For helpers that run something other than a node (tests/_tt.c): have
 * glibc's one-time allocations (cached thread stacks, time zone data) made
 * before the baseline, then record the baseline kt_leak_check compares
 * with. */
void kt_leak_warm_libc(void);
void kt_leak_baseline(void);

/* ---- inboxes ---- */

kumo_inbox *kt_inbox(kumo_node *node);

/* Most tests' setting: a node, an inbox on it where the test receives, and
 * the inbox's process (`me`), which the test sends as.  `peer` is the node
 * where the processes the test talks to live: `node` itself, or a second
 * node (the topology axis, KT_NET_TEST). */
typedef struct kt_env {
    kumo_node *node;
    kumo_inbox *ib;
    kumo_proc *me;
    kumo_node *peer;
    const char *topology; /* "local", "inmem", "tcp" or "shm" */
} kt_env;

/* kt_start(shards) and an inbox on it; peer is the same node. */
kt_env kt_env_start(unsigned shards);
/*
 * The same on a topology: "local" as kt_env_start; "inmem", "tcp" or
 * "shm" start a second node `peer` in this OS process (unpinned, same
 * shard count) reached over that transport, already connected.  Both
 * nodes run the closure table of kt_spawn_peer.
 */
kt_env kt_env_start_on(const char *topology, unsigned shards);
/* Frees the inbox and the peer node, then kt_stop (with its leak check). */
void kt_env_stop(kt_env *e);
/*
 * Spawns init(state) on e->peer as the test inbox's process would (opts'
 * link and monitor are atomic with the spawn, as locally).  On another
 * node it is a remote spawn by closure whose argument bytes are the
 * function and state pointers (both nodes live in this OS process);
 * opts->on_exit is then ignored.  Asserts success.
 */
kumo_pid kt_spawn_peer(kt_env *e, const kumo_spawn_opts *opts, kumo_init_fn init, void *state);
/*
 * From a process (on its shard): spawns init(state) on `node` with opts.
 * On the process's own node this is kumo_spawn and *out is the pid; on
 * another it is kumo_spawn_remote of kt_spawn_peer's closure, *out stays
 * null and the pid comes in a did_spawn message (kt_is_did_spawn).
 * Returns the spawn's error.
 */
int kt_spawn_at(kumo_proc *self, kumo_node *node, const kumo_spawn_opts *opts, kumo_init_fn init,
                void *state, kumo_pid *out);
/* True for a did_spawn message; its pid (null on failure) in *pid. */
bool kt_is_did_spawn(const kumo_msg *m, kumo_pid *pid);
/* True when e->peer is another node. */
#define KT_REMOTE(e) ((e)->peer != (e)->node)

/*
 * KT_NET_TEST(suite, name) { ... body using kt_topology and kt_shards ... }
 * runs the body on every topology (local, inmem, tcp, shm) with 1 and 2
 * shards: suite::name_<topology>_<n>shard(s).
 */
#define KT_NET_CASE(suite, name, topo, n, sfx)                                                     \
    Test(suite, name##_##topo##_##sfx, .timeout = KT_TIMEOUT)                                      \
    {                                                                                              \
        suite##__##name(#topo, n);                                                                 \
    }
#define KT_NET_TEST(suite, name)                                                                   \
    static void suite##__##name(const char *kt_topology, unsigned kt_shards);                      \
    KT_NET_CASE(suite, name, local, 1, 1shard)                                                     \
    KT_NET_CASE(suite, name, local, 2, 2shards)                                                    \
    KT_NET_CASE(suite, name, inmem, 1, 1shard)                                                     \
    KT_NET_CASE(suite, name, inmem, 2, 2shards)                                                    \
    KT_NET_CASE(suite, name, tcp, 1, 1shard)                                                       \
    KT_NET_CASE(suite, name, tcp, 2, 2shards)                                                      \
    KT_NET_CASE(suite, name, shm, 1, 1shard)                                                       \
    KT_NET_CASE(suite, name, shm, 2, 2shards)                                                      \
    static void suite##__##name(const char *kt_topology, unsigned kt_shards)

/* A message type with a name kept for failure dumps. */
uint64_t kt_type(const char *name);
/* Name of a type registered with kt_type (or the engine's), else "0x...". */
const char *kt_type_name(uint64_t type, char *buf, size_t len);

/* Waits for the first message of `type` (mailbox order); fails the test
 * with a dump of the queue if none arrives within KT_WAIT_NS. */
kumo_msg *kt_expect(kumo_inbox *ib, uint64_t type);
/* The next message, whatever it is (fails on timeout). */
kumo_msg *kt_next(kumo_inbox *ib);
/* The next message must be of `type` (the marker technique for negatives:
 * anything queued before it fails the test). */
kumo_msg *kt_expect_next(kumo_inbox *ib, uint64_t type);
/* The queue must be empty right now. */
void kt_expect_empty(kumo_inbox *ib);
/* Copies the fixed payload of `m` (asserting its length) and frees m. */
void kt_take(kumo_msg *m, void *out, size_t len);
#define KT_TAKE(m, var) kt_take((m), &(var), sizeof(var))
/* Waits for a DOWN about `pid`; returns its payload. */
kumo_down_msg kt_expect_down(kumo_inbox *ib, kumo_pid pid);
/* Waits for a trapped exit signal from `pid`; returns its payload. */
kumo_exit_msg kt_expect_exit(kumo_inbox *ib, kumo_pid pid);
/* Waits for the DOWN of monitor `ref`. */
kumo_down_msg kt_expect_down_ref(kumo_inbox *ib, kumo_ref ref);
/* The same, asserting the reason (text NULL: any text). */
kumo_down_msg kt_down(kumo_inbox *ib, kumo_pid pid, kumo_reason_kind kind, const char *text);
kumo_exit_msg kt_exit(kumo_inbox *ib, kumo_pid pid, kumo_reason_kind kind, const char *text);
/* Receives `type` carrying a uint64_t and returns the value. */
uint64_t kt_expect_u64(kumo_inbox *ib, uint64_t type);

void kt_assert_reason(const kumo_reason *r, kumo_reason_kind kind, const char *text);

/* Sends a uint64_t payload from a process or inbox proc. */
void kt_send_u64(kumo_proc *self, kumo_pid to, uint64_t type, uint64_t v);

/* ---- stock processes ---- */

/* Answers every message with a copy (same type and payload) sent to the
 * message's sender; a message of type kt_type("kt.stop") ends it normally.
 * State: unused (NULL). */
void kt_echo_init(kumo_proc *self, void *state);
uint64_t kt_type_stop(void);

/* Channel and mailbox order: a kt.order message carrying an encoded send
 * port makes this process send 0..KT_ORDER_N-1 alternately on the channel
 * and to the message's sender (type kt.order.m), even numbers channel
 * first, odd ones mailbox first; then it ends normally.  State: unused. */
#define KT_ORDER_N 1000
void kt_order_sender_init(kumo_proc *self, void *state);
/* From the inbox that owns the port: hands it to `sender` and checks that
 * each value's first half was queued by the time its second half came. */
void kt_order_check(kumo_inbox *ib, kumo_pid sender, kumo_send_port sp, kumo_recv_port *rp);

/* Spawns from the inbox, asserting success. */
kumo_pid kt_spawn(kumo_node *node, kumo_inbox *ib, const kumo_spawn_opts *opts, kumo_init_fn init,
                  void *state);

/* ---- identifiers ---- */

/* A pid that never existed: `real` with a serial nobody got. */
kumo_pid kt_forge_pid(kumo_pid real);
const char *kt_pid(kumo_pid p); /* thread-local rotating buffers */

/* ---- thread-side counters (on_exit runs on shards) ---- */

typedef struct kt_count {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t n;
} kt_count;

#define KT_COUNT_INIT                                                                              \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0                                     \
    }
void kt_count_add(kt_count *c, uint64_t k);
/* Waits until the count reaches at least n; fails after KT_WAIT_NS. */
void kt_count_wait(kt_count *c, uint64_t n, const char *what);
uint64_t kt_count_get(kt_count *c);

uint64_t kt_now_ns(void);

#endif
