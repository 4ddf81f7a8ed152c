/*
 * Kumo — Cloud Haskell's process model on a shard-per-core engine.
 *
 * This header is the whole public API of a single node: nodes and shards,
 * processes, messages, selective receive, links and monitors, typed
 * channels, the local registry, and the blocking inbox through which
 * ordinary threads (main, tests) take part.
 *
 * Conventions (docs/architecture.md §6):
 *  - Functions return 0 (or a count) on success and -errno on failure;
 *    Kumo-specific codes are in the KUMO_E* range, kumo_strerror() names
 *    every code.
 *  - Identifiers (kumo_pid, kumo_ref, kumo_send_port) are plain values:
 *    copy them, compare them with the *_eq helpers, send them.
 *  - Ownership is stated per function.  A function that fails takes
 *    ownership of nothing and calls no callback.
 *
 * Execution model.  A process is a state machine: it never blocks.  Its
 * init function and every handler run to completion on the process's shard
 * and, before returning, declare what the process waits for next with
 * kumo_receive() (or kumo_expect()).  A handler that returns without
 * declaring a receive (and without kumo_die()) ends the process with reason
 * normal.  All kumo_* calls that take a `kumo_proc *self` must be made on
 * the thread currently running `self` (inside its init or handlers), or, for
 * an inbox (kumo_inbox_proc()), by the thread that owns that inbox.
 */
#ifndef KUMO_KUMO_H
#define KUMO_KUMO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KUMO_API __attribute__((visibility("default")))

/* The running process, as seen by its own code (see "Processes"). */
typedef struct kumo_proc kumo_proc;

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* Kumo-specific error codes, returned negated like errno values. */
enum {
    KUMO_EBASE = 10000,
    KUMO_ENOPROC,    /* no such process (dead, or never existed) */
    KUMO_ENAMETAKEN, /* registry: the name is already registered */
    KUMO_ENONAME,    /* registry: the name is not registered */
    KUMO_ETIMEOUT,   /* a wait ran out of time */
    KUMO_ESHUTDOWN,  /* the node is stopping or stopped */
    KUMO_ETOOBIG,    /* message over the node's size limit */
    KUMO_EBADWIRE,   /* malformed or unknown-version encoding */
    KUMO_ENOTOWNER,  /* receive port used by a process that does not own it */
    KUMO_ENOCLOSURE, /* remote spawn: the node's remote table lacks the closure */
    KUMO_ELAST
};

/* A static string for a 0 / -errno / -KUMO_E* code. */
KUMO_API const char *kumo_strerror(int err);

/* ------------------------------------------------------------------ */
/* Identifiers                                                         */
/* ------------------------------------------------------------------ */

/*
 * A process id.  `node` identifies the node incarnation (a restarted node
 * gets a new one), `shard` and `slot` locate the process, `serial` is
 * unique among all processes ever spawned in this node incarnation, so a
 * pid of a dead process never reaches a later one.  The all-zero pid is
 * "no process" (kumo_pid_is_null).
 */
typedef struct kumo_pid {
    uint64_t node;
    uint64_t serial;
    uint32_t slot;
    uint16_t shard;
    uint16_t reserved; /* always 0 */
} kumo_pid;

KUMO_API bool kumo_pid_eq(kumo_pid a, kumo_pid b);
static inline bool kumo_pid_is_null(kumo_pid p)
{
    return p.node == 0 && p.serial == 0;
}

/* Formats "<node-hex>.<shard>.<slot>.<serial>" into buf (NUL-terminated,
 * truncated to len).  Returns buf. */
KUMO_API char *kumo_pid_str(kumo_pid p, char *buf, size_t len);

/* A monitor reference: unique per node incarnation. */
typedef struct kumo_ref {
    uint64_t node;
    uint64_t id;
} kumo_ref;

KUMO_API bool kumo_ref_eq(kumo_ref a, kumo_ref b);

/* ------------------------------------------------------------------ */
/* Wire encodings of identifiers (fixed size, versioned)               */
/* ------------------------------------------------------------------ */

/* A pid inside a payload: 1 version byte + 24 bytes, little-endian. */
#define KUMO_PID_WIRE_SIZE 25
/* Writes exactly KUMO_PID_WIRE_SIZE bytes to out. */
KUMO_API void kumo_pid_encode(kumo_pid p, uint8_t out[KUMO_PID_WIRE_SIZE]);
/* Reads a pid from in[0..len).  Returns 0, or -KUMO_EBADWIRE if len is short
 * or the version is unknown. */
KUMO_API int kumo_pid_decode(const uint8_t *in, size_t len, kumo_pid *out);

/* ------------------------------------------------------------------ */
/* Node                                                                */
/* ------------------------------------------------------------------ */

typedef struct kumo_node kumo_node;

typedef struct kumo_node_config {
    /* Number of shards (event-loop threads).  0 = one per CPU in the
     * process's affinity mask. */
    unsigned shards;
    /* Pin shard i to the i-th CPU of the affinity mask (default true when
     * this struct is zeroed: set no_pin to disable). */
    bool no_pin;
    /* How long an idle shard polls its rings before parking, in ns.
     * 0 = default (50 us).  Use KUMO_SPIN_NEVER to park at once. */
    uint64_t spin_ns;
    /* Capacity (entries, power of two) of each cross-shard ring (one per
     * ordered pair of shards).  0 = default: 8192 up to 4 shards, 4096 up
     * to 16, 1024 beyond.  A full ring never blocks or drops: the sender
     * queues privately until there is room. */
    unsigned ring_entries;
    /* Largest message payload accepted by send (bytes).  0 = 64 MiB. */
    size_t max_message;
    /* Messages a process may handle in one turn before others run.
     * 0 = default (64). */
    unsigned budget;
    /* Distribution (<kumo/dist.h>): the transports this node is reachable
     * on, in order of preference for reaching a peer that offers several.
     * NULL / 0: a node of its own, whose processes see other nodes' pids
     * as dead ones. */
    const struct kumo_dist_transport *transports;
    unsigned ntransports;
    /* The remote table (<kumo/dist.h>): closures other nodes (and this
     * one) may spawn here by name.  The array is copied; the names must
     * stay valid while the node runs. */
    const struct kumo_closure *closures;
    unsigned nclosures;
    /* How long a remote spawn waits for its answer before it fails with
     * -KUMO_ETIMEOUT; 0 = 10 s. */
    uint64_t spawn_timeout_ns;
    /* A peer node is *busy* when the controller holds more than this many
     * bytes queued for it (its link is slow or it does not read): a
     * process that sends it data is then suspended after the callback
     * that sent, until the queue drains below half of it (Erlang's busy
     * distribution port); an inbox's thread waits in the send.  Nothing is
     * dropped.  0 = 8 MiB. */
    size_t dist_busy_bytes;
} kumo_node_config;

#define KUMO_SPIN_NEVER UINT64_MAX

/* Starts a node: its shards run until kumo_node_stop().  `cfg` may be NULL
 * (defaults).  Returns 0 and sets *out, or -errno (-ENOSYS / -EPERM when
 * io_uring is unavailable, with a log line saying why). */
KUMO_API int kumo_node_start(const kumo_node_config *cfg, kumo_node **out);

/* Orderly stop: every process ends with reason shutdown (their on_exit
 * callbacks run on their shards), every shard thread is joined, every
 * queued message is freed.  Inboxes stay allocated (kumo_inbox_free them)
 * but their waits return -KUMO_ESHUTDOWN.  Blocks; must not be called from a
 * shard thread.  Idempotent. */
KUMO_API void kumo_node_stop(kumo_node *node);

/* Frees a stopped node (stops it first if needed).  All inboxes of the node
 * must have been freed. */
KUMO_API void kumo_node_free(kumo_node *node);

KUMO_API unsigned kumo_node_shards(const kumo_node *node);
/* The node's id: a random nonzero value drawn at kumo_node_start, naming
 * this incarnation (kumo_pid.node).  Node ids are plain values: compare
 * them with ==; 0 is no node. */
KUMO_API uint64_t kumo_node_id(const kumo_node *node);
/* Formats a node id as 16 hex digits (as kumo_pid_str starts), into buf
 * (NUL-terminated, truncated to len).  Returns buf. */
KUMO_API char *kumo_node_id_str(uint64_t node, char *buf, size_t len);
/* The inverse: 1..16 hex digits.  Returns 0, or -EINVAL (malformed, or
 * 0, which is no node). */
KUMO_API int kumo_node_id_parse(const char *s, uint64_t *node);

/* Counts processes currently alive on the node (a racy snapshot, for tests
 * and tools). */
KUMO_API uint64_t kumo_node_process_count(kumo_node *node);

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

/* A message type fingerprint: XXH3-64 of the type's name.  Pure function;
 * equal names give equal fingerprints on every node. */
KUMO_API uint64_t kumo_type(const char *name);

/*
 * A message type declared for use in constant initialisers, so receive
 * sets can be static const:
 *
 *     static kumo_type_decl T_PING = KUMO_TYPE_DECL("ping");
 *     static const kumo_match m[] = {{.kind = KUMO_MATCH_TYPE, .decl = &T_PING,
 *                                     .fn = on_ping}};
 *
 * kumo_type_of(&T_PING) is kumo_type("ping"), computed on first use from
 * any thread (the object itself must be writable: not const).
 */
typedef struct kumo_type_decl {
    const char *name;
    uint64_t id; /* 0 until first use; read and written atomically */
} kumo_type_decl;
#define KUMO_TYPE_DECL(name)                                                                       \
    {                                                                                              \
        (name), 0                                                                                  \
    }

static inline uint64_t kumo_type_of(kumo_type_decl *t)
{
    uint64_t id = __atomic_load_n(&t->id, __ATOMIC_RELAXED);
    if (__builtin_expect(id == 0, 0)) {
        id = kumo_type(t->name); /* every thread computes the same value */
        __atomic_store_n(&t->id, id, __ATOMIC_RELAXED);
    }
    return id;
}

/* Fingerprints of the messages the engine itself delivers. */
#define KUMO_TYPE_EXIT_NAME "kumo.exit" /* trapped exit signal */
#define KUMO_TYPE_DOWN_NAME "kumo.down" /* monitor notification */
KUMO_API uint64_t kumo_type_exit(void);
KUMO_API uint64_t kumo_type_down(void);

/* A message as a handler sees it.  Owned by the engine unless the handler
 * forwards it (kumo_forward) or keeps it (kumo_msg_keep). */
typedef struct kumo_msg kumo_msg;

KUMO_API uint64_t kumo_msg_type(const kumo_msg *m);
KUMO_API const void *kumo_msg_data(const kumo_msg *m);
KUMO_API size_t kumo_msg_len(const kumo_msg *m);
/* The process that sent it (null pid for messages from the engine). */
KUMO_API kumo_pid kumo_msg_sender(const kumo_msg *m);

/* Inside a handler: take ownership of the message being handled; it is
 * then the caller's to free with kumo_msg_free or send with kumo_send_msg. */
KUMO_API kumo_msg *kumo_msg_keep(kumo_proc *self, kumo_msg *m);
KUMO_API void kumo_msg_free(kumo_msg *m);

/* ------------------------------------------------------------------ */
/* Exit reasons                                                        */
/* ------------------------------------------------------------------ */

typedef enum kumo_reason_kind {
    KUMO_NORMAL = 0, /* returned without waiting, or kumo_die(normal) */
    KUMO_SHUTDOWN,   /* the node stopped */
    KUMO_EXCEPTION,  /* kumo_die / kumo_exit with an error text */
    KUMO_KILLED,     /* kumo_kill */
    KUMO_UNKNOWN_ID, /* monitor/link target was dead or never existed */
    KUMO_DISCONNECT, /* connection to the target's node was lost */
    KUMO_NODE_DOWN,  /* the target's node is down */
} kumo_reason_kind;

/* How another process ended this one (kumo_reason.via). */
typedef enum kumo_reason_via {
    KUMO_VIA_NONE = 0,
    KUMO_VIA_KILL, /* a kumo_kill from `by` */
    KUMO_VIA_EXIT, /* a kumo_exit from `by` (which may be the process itself) */
    KUMO_VIA_LINK, /* the end of `by`, a linked process (CH's link exception):
                      kind and text are `by`'s own reason */
} kumo_reason_via;

#define KUMO_REASON_TEXT 96

typedef struct kumo_reason {
    kumo_reason_kind kind;
    char text[KUMO_REASON_TEXT]; /* NUL-terminated, may be empty */
    /* What ended the process, if another process's signal did (Cloud
     * Haskell's killed-by=<pid> and exit-from=<pid>): `via` says how and
     * `by` who.  KUMO_VIA_NONE (and the null pid) when it ended by itself
     * (returning, kumo_die), at shutdown, or in a reason that is not a
     * process's end (a DOWN or link exit saying unknown-id, disconnect,
     * node-down).  Kept in DOWN and EXIT messages, across nodes too. */
    kumo_reason_via via;
    kumo_pid by;
} kumo_reason;

KUMO_API const char *kumo_reason_kind_str(kumo_reason_kind k);
/* Formats a reason: "<kind>", then ":<text>" if it has a text, then
 * ",killed-by=<pid>", ",exit-from=<pid>" or ",link-from=<pid>" as `via`
 * says (Cloud Haskell's spelling).  NUL-terminated, truncated to len.
 * Returns buf. */
KUMO_API char *kumo_reason_str(const kumo_reason *r, char *buf, size_t len);

/* Payload of a KUMO_TYPE_EXIT message (a trapped exit signal). */
typedef struct kumo_exit_msg {
    kumo_pid from;
    kumo_reason reason;
} kumo_exit_msg;

/* Payload of a KUMO_TYPE_DOWN message (monitor notification). */
typedef struct kumo_down_msg {
    kumo_ref ref;
    kumo_pid pid;
    kumo_reason reason;
} kumo_down_msg;

/* ------------------------------------------------------------------ */
/* Processes                                                           */
/* ------------------------------------------------------------------ */

/* kumo_proc (declared above) is valid only during the init call and the
 * handler calls it is passed to, or for as long as its inbox lives. */

typedef void (*kumo_init_fn)(kumo_proc *self, void *state);
typedef void (*kumo_handler)(kumo_proc *self, void *state, kumo_msg *m);
/* Called once when the process has ended, on its shard, after links and
 * monitors were notified: the place to free `state`.  (A process whose
 * spawn was still in flight when the node stopped never ran: its on_exit
 * runs with reason shutdown on the thread calling kumo_node_stop.) */
typedef void (*kumo_exit_fn)(void *state, const kumo_reason *why);

enum {
    KUMO_SHARD_SAME = -1, /* the spawner's shard (shard 0 from an inbox) */
    KUMO_SHARD_RR = -2,   /* round-robin over the node's shards */
};

typedef struct kumo_spawn_opts {
    int shard;      /* index, KUMO_SHARD_SAME (also when opts is NULL) or _RR */
    bool trap_exit; /* start with exits trapped */
    kumo_exit_fn on_exit;
    /* Link the spawner to the new process atomically (the spawner gets an
     * exit signal when the child ends). */
    bool link;
    /* Monitor the new process atomically; the ref is stored here. */
    kumo_ref *monitor;
    /* kumo_spawn_remote only: the child is a call (Cloud Haskell's call):
     * its kumo_call_return reaches the spawner (<kumo/dist.h>). */
    bool call;
} kumo_spawn_opts;

/*
 * Spawns a process on `node` that starts by running init(self, state).
 * `self` is the spawning process (or an inbox proc, or NULL from any other
 * thread, in which case link/monitor options are refused with -EINVAL).
 * The pid is valid at once: messages sent to it before init runs are
 * queued.  `state` is the process's state pointer, passed to every
 * handler; the process owns it from success on (free it in on_exit).
 * Returns 0, -EINVAL, -ENOMEM or -KUMO_ESHUTDOWN.
 */
KUMO_API int kumo_spawn(kumo_node *node, kumo_proc *self, const kumo_spawn_opts *opts,
                        kumo_init_fn init, void *state, kumo_pid *out);

KUMO_API kumo_pid kumo_self(const kumo_proc *self);
KUMO_API kumo_node *kumo_self_node(const kumo_proc *self);
KUMO_API unsigned kumo_self_shard(const kumo_proc *self);
KUMO_API void *kumo_state(const kumo_proc *self);
KUMO_API void kumo_set_state(kumo_proc *self, void *state);

/* ------------------------------------------------------------------ */
/* Sending                                                             */
/* ------------------------------------------------------------------ */

/*
 * Sends a copy of data[0..len) as a message of `type` to `to`.  `self` is
 * the sending process (or an inbox's proc, from its thread); never NULL:
 * a plain thread sends through an inbox.  Sending is
 * asynchronous and never blocks.  Messages from one process to another
 * arrive in the order sent (same shard or not).  Sending to a dead or
 * unknown pid is not an error: the message is dropped (as in Erlang).
 * Returns 0, -KUMO_ETOOBIG, -ENOMEM or -KUMO_ESHUTDOWN.
 */
KUMO_API int kumo_send(kumo_proc *self, kumo_pid to, uint64_t type, const void *data, size_t len);
/* Gathers iov[0..n) into one message. */
KUMO_API int kumo_sendv(kumo_proc *self, kumo_pid to, uint64_t type, const struct iovec *iov,
                        int n);

/* Allocates an engine message with a payload of `len` bytes for the caller
 * to fill in place (*payload).  The caller owns it until kumo_send_msg
 * succeeds (or frees it with kumo_msg_free). */
KUMO_API kumo_msg *kumo_msg_alloc(kumo_proc *self, uint64_t type, size_t len, void **payload);
/* Sends an engine message, transferring ownership on success: no copy
 * within the node.  Also used to forward a message kept from a handler. */
KUMO_API int kumo_send_msg(kumo_proc *self, kumo_pid to, kumo_msg *m);
/* Inside a handler: pass the message being handled on to `to` without a
 * copy (the engine no longer frees it after the handler).  Returns as
 * kumo_send. */
KUMO_API int kumo_forward(kumo_proc *self, kumo_pid to, kumo_msg *m);

/* "Cloud Haskell's say": one log line "<UTC time> pid://<pid> SAY <text>". */
KUMO_API void kumo_say(kumo_proc *self, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ */
/* Typed channels                                                      */
/* ------------------------------------------------------------------ */

/* The sending end: a value, serialisable, may travel in messages. */
typedef struct kumo_send_port {
    kumo_pid owner;
    uint64_t id;
    uint64_t type;
} kumo_send_port;

KUMO_API bool kumo_send_port_eq(kumo_send_port a, kumo_send_port b);

#define KUMO_SEND_PORT_WIRE_SIZE (1 + 24 + 8 + 8)
KUMO_API void kumo_send_port_encode(kumo_send_port p, uint8_t out[KUMO_SEND_PORT_WIRE_SIZE]);
KUMO_API int kumo_send_port_decode(const uint8_t *in, size_t len, kumo_send_port *out);

/* The receiving end: owned by the process (or inbox) that created it,
 * usable only by it, freed by kumo_close_port or when the owner ends (an
 * inbox's: by kumo_inbox_free).  Not serialisable. */
typedef struct kumo_recv_port kumo_recv_port;

/* Creates a channel carrying messages of `type`.  A process waits on it
 * with a KUMO_MATCH_PORT match, an inbox's thread with
 * kumo_inbox_recv_port.  Returns 0 or -ENOMEM. */
KUMO_API int kumo_new_chan(kumo_proc *self, uint64_t type, kumo_send_port *sp, kumo_recv_port **rp);
/* Sends on a channel (copying data).  Channel messages never enter the
 * owner's mailbox; a closed channel drops them.  Messages from one process
 * to another keep their order across its channels and its mailbox
 * together: a channel message sent before a mailbox message is queued on
 * its port by the time the mailbox message can be received, and the other
 * way round (on one node and across nodes).  Returns as kumo_send. */
KUMO_API int kumo_send_chan(kumo_proc *self, kumo_send_port sp, const void *data, size_t len);
/*
 * Port monitor (Cloud Haskell's monitorPort): one KUMO_TYPE_PORT_DOWN
 * message with the ref, the port and the reason when the process that owns
 * sp's receive port ends (on this node or another: reasons as kumo_monitor,
 * disconnect and unknown-id included).  It is a monitor of sp.owner that
 * names the port: kumo_unmonitor(ref) cancels it as any monitor (removing
 * a queued notification too).  Returns 0 and *ref, or as kumo_monitor.
 */
#define KUMO_TYPE_PORT_DOWN_NAME "kumo.port_down"
KUMO_API uint64_t kumo_type_port_down(void);
typedef struct kumo_port_down_msg {
    kumo_ref ref;
    kumo_send_port port;
    kumo_reason reason;
} kumo_port_down_msg;
KUMO_API int kumo_monitor_port(kumo_proc *self, kumo_send_port sp, kumo_ref *ref);

/* Closes a receive port: what is queued on it is freed and later sends to
 * its channel are dropped.  A merged port's close releases the merge only
 * (the ports it merged stay open); a port that open merged ports refer to
 * takes and is given nothing from its close on, and its memory goes with
 * the last of them.  rp must not be used after (nor appear in a receive
 * set).  From the owner only (a handler, or the inbox's thread).  Returns
 * 0, or -KUMO_ENOTOWNER (not the caller's port). */
KUMO_API int kumo_close_port(kumo_proc *self, kumo_recv_port *rp);

/* Merges ports into a new receive port of the same owner.  Biased: each
 * take prefers ports[0], then ports[1], ...  Round-robin: the port after
 * the one last taken from is tried first.  The merged port refers to the
 * originals (which stay usable); all die with the owner. */
KUMO_API int kumo_merge_ports_biased(kumo_proc *self, kumo_recv_port *const *ports, int n,
                                     kumo_recv_port **out);
KUMO_API int kumo_merge_ports_rr(kumo_proc *self, kumo_recv_port *const *ports, int n,
                                 kumo_recv_port **out);

/* ------------------------------------------------------------------ */
/* Selective receive                                                   */
/* ------------------------------------------------------------------ */

typedef bool (*kumo_pred)(const kumo_msg *m, void *state);

typedef enum kumo_match_kind {
    KUMO_MATCH_TYPE = 1, /* messages of `type` */
    KUMO_MATCH_IF,       /* messages of `type` for which pred(m, state) holds */
    KUMO_MATCH_ANY,      /* any message; with fn == NULL it is removed unhandled
                            (Cloud Haskell's matchUnknown) */
    KUMO_MATCH_PORT,     /* the next message on receive port `port` */
} kumo_match_kind;

typedef struct kumo_match {
    kumo_match_kind kind;
    uint64_t type; /* TYPE, IF: the fingerprint, unless decl is set */
    kumo_pred pred;
    kumo_recv_port *port;
    kumo_handler fn;
    kumo_type_decl *decl; /* TYPE, IF: the type, declared statically */
} kumo_match;

/* Receive-set flags. */
enum {
    /* The predicates depend only on the message (not on state that
     * handlers change): re-declaring this same set keeps the scan position,
     * so messages already found unmatched are not tested again. */
    KUMO_RECV_PURE = 1u << 0,
};

/*
 * A receive set.  The memory must stay valid and unchanged while the
 * process waits on it (make it static const, with its types declared by
 * kumo_type_decl, or keep it in the process state); a set re-declared at the same address must have
 * the same contents (its scan position is kept), so wait for something else with another kumo_recv.
 * Consecutive matches of one kind form a group, and groups are tried in the order listed (Cloud
 * Haskell's receiveWait): a group of port matches takes the head of the first of its ports that has
 * a message; a group of mailbox matches (TYPE, IF, ANY) is tried against
 * each message in mailbox order, and the first message that any of them
 * accepts is removed and handed to the first match that accepts it.  So in
 * [mailbox A, port r, mailbox B] a value queued on r is taken before an
 * older B.  Unmatched messages stay queued, in order.
 */
typedef struct kumo_recv {
    const kumo_match *matches;
    uint32_t n;
    uint32_t flags;
    /* Called with m == NULL when the wait times out. */
    kumo_handler on_timeout;
} kumo_recv;

#define KUMO_INFINITY (-1)

/*
 * Declares the process's next wait: `set`, for at most timeout_ns
 * (KUMO_INFINITY: no limit; 0: one pass over what is queued, then
 * on_timeout).  Takes effect when the current handler returns; the last
 * declaration wins.  The wait does not scan from scratch per arriving
 * message: when a message arrives only that message is tested (Erlang's
 * receive marker), and re-declaring the same set with KUMO_RECV_PURE (or
 * with no IF matches) resumes the scan where it stopped.
 */
KUMO_API void kumo_receive(kumo_proc *self, const kumo_recv *set, int64_t timeout_ns);

/* Shorthand: wait for one message of `type` (Cloud Haskell's expect). */
KUMO_API void kumo_expect(kumo_proc *self, uint64_t type, kumo_handler fn);

/* ------------------------------------------------------------------ */
/* Termination, links, monitors                                        */
/* ------------------------------------------------------------------ */

/* Ends the calling process with `kind` (KUMO_NORMAL or KUMO_EXCEPTION) and
 * an optional text, once the current handler returns; nothing it declared
 * afterwards takes effect. */
KUMO_API void kumo_die(kumo_proc *self, kumo_reason_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends an exit signal to `pid`.  A process that traps exits receives it as
 * a KUMO_TYPE_EXIT message; otherwise a `normal` exit signal is ignored
 * (unless a process sends it to itself: then it ends normally, as Erlang's
 * exit(self(), normal)) and any other ends it with that reason.  Returns 0
 * (dead pids are ignored), or -KUMO_ESHUTDOWN. */
KUMO_API int kumo_exit(kumo_proc *self, kumo_pid pid, kumo_reason_kind kind, const char *text);

/* Kills `pid` with reason killed(text): cannot be trapped. */
KUMO_API int kumo_kill(kumo_proc *self, kumo_pid pid, const char *text);

/* Traps (or stops trapping) exit signals: they become KUMO_TYPE_EXIT
 * messages.  Kill signals are never trapped.  No effect on an inbox, which
 * always traps. */
KUMO_API void kumo_trap_exit(kumo_proc *self, bool on);

/*
 * Unidirectional link (Cloud Haskell's): when `pid` ends, for any reason,
 * normal included, or becomes unreachable, the caller gets an exit signal
 * with that reason: a caller that traps exits receives it as a
 * KUMO_TYPE_EXIT message, any other ends with the same reason (Cloud
 * Haskell's ProcessLinkException, DiedNormal too).  Linking to a dead or
 * unknown pid gives an unknown-id exit signal.  The target is not
 * affected by the caller's end.  Returns 0, -ENOMEM or -KUMO_ESHUTDOWN.
 * (Erlang's link, both ways and ignoring normal exits: kumo_erlang_link.)
 */
KUMO_API int kumo_link(kumo_proc *self, kumo_pid pid);
/* Removes the link; an exit signal from it already on its way is dropped. */
KUMO_API int kumo_unlink(kumo_proc *self, kumo_pid pid);

/*
 * Erlang's link: bidirectional.  When either process ends with reason R,
 * the other gets an exit signal with R: received as a KUMO_TYPE_EXIT
 * message if it traps exits, ignored if R is normal, otherwise it ends
 * with R (and so on along a chain of linked processes: how supervision
 * trees fail together).  Linking to a dead or unknown pid gives an
 * unknown-id exit signal (which ends a caller that does not trap exits),
 * to oneself does nothing, twice is one link.  kumo_erlang_unlink removes
 * it from both ends (an exit signal from it already on its way is
 * dropped).  Both return 0, -ENOMEM or -KUMO_ESHUTDOWN.
 */
KUMO_API int kumo_erlang_link(kumo_proc *self, kumo_pid pid);
KUMO_API int kumo_erlang_unlink(kumo_proc *self, kumo_pid pid);

/* Monitors `pid`: exactly one KUMO_TYPE_DOWN message per ref, with reason
 * normal | exception | killed | shutdown | unknown-id (dead, never
 * existed, or of a node incarnation that is gone: <kumo/dist.h>) | disconnect (the link to pid's
 * node was lost, or the node cannot be reached: <kumo/dist.h>).  Returns 0 and the ref, -ENOMEM or
 * -KUMO_ESHUTDOWN. */
KUMO_API int kumo_monitor(kumo_proc *self, kumo_pid pid, kumo_ref *ref);
/* Cancels a monitor: no DOWN for `ref` is delivered after this call, even
 * one already queued in the caller's mailbox.  Returns 0, or -ENOENT if the
 * ref is not an active monitor of the caller. */
KUMO_API int kumo_unmonitor(kumo_proc *self, kumo_ref ref);

/* ------------------------------------------------------------------ */
/* Process info                                                        */
/* ------------------------------------------------------------------ */

#define KUMO_NAME_MAX 255

/* What a process looks like from outside (Cloud Haskell's
 * getProcessInfo, Erlang's process_info), as its own shard saw it when
 * the request reached it. */
#define KUMO_TYPE_PROCESS_INFO_NAME "kumo.process_info"
typedef struct kumo_process_info_msg {
    kumo_ref ref; /* the request's */
    kumo_pid pid; /* whom it is about */
    /* 0; or -KUMO_ECONNLOST: pid's node could not be reached, or the
     * link to it was lost before it answered; -KUMO_ETIMEOUT: it did not
     * answer within the node's spawn_timeout_ns; -ENOMEM (then nothing
     * below is known; alive is false). */
    int err;
    bool alive; /* false: dead, never existed, or of a gone incarnation */
    bool inbox; /* a thread's inbox rather than a process */
    bool trap_exit;
    uint16_t shard;
    uint64_t mailbox_len;         /* messages queued in its mailbox */
    uint32_t links;               /* links it holds (kumo_link, kumo_erlang_link) */
    uint32_t monitors;            /* monitors it holds (process, port and node) */
    uint32_t linked_by;           /* processes linked to it */
    uint32_t monitored_by;        /* monitors on it */
    uint32_t names;               /* names it is registered under on its node */
    char name[KUMO_NAME_MAX + 1]; /* the first of them ("" if none) */
} kumo_process_info_msg;
KUMO_API uint64_t kumo_type_process_info(void);

/*
 * Asks about `pid`, on this node or another: one KUMO_TYPE_PROCESS_INFO
 * message answers, sent by `pid` itself (for a dead one too), with payload
 * kumo_process_info_msg carrying *ref.  Its mailbox is counted and its names
 * found by walking them (costs grow with its mailbox and with the node's
 * names: a diagnostic, not a hot path).  Returns 0 and *ref, -ENOMEM or
 * -KUMO_ESHUTDOWN.
 *
 * kumo_process_info_wait is the same from an inbox's thread, waiting up to
 * timeout_ns for the answer (other messages stay queued).  Returns 0 and
 * *out, -KUMO_ETIMEOUT, or as kumo_process_info.
 */
KUMO_API int kumo_process_info(kumo_proc *self, kumo_pid pid, kumo_ref *ref);
typedef struct kumo_inbox kumo_inbox;
KUMO_API int kumo_process_info_wait(kumo_inbox *ib, kumo_pid pid, int64_t timeout_ns,
                                    kumo_process_info_msg *out);

/* ------------------------------------------------------------------ */
/* Local registry                                                      */
/* ------------------------------------------------------------------ */

/* Registers `name` for `pid` in this node's registry.  pid may be of
 * another node (Cloud Haskell's register of a remote process): the node
 * then monitors it, and the name goes when that process ends or the link
 * to its node is lost (asynchronously: a whereis just after may still see
 * it).  Errors: -KUMO_ENAMETAKEN, -KUMO_ENOPROC (a local pid that is dead,
 * or another node's pid on a node without distribution), -EINVAL (empty or
 * too long), -ENOMEM.  The name is released when the process ends. */
KUMO_API int kumo_register(kumo_node *node, const char *name, kumo_pid pid);
/* Returns 0, or -KUMO_ENONAME. */
KUMO_API int kumo_unregister(kumo_node *node, const char *name);
/* Returns 0 and sets *pid, or -KUMO_ENONAME. */
KUMO_API int kumo_whereis(kumo_node *node, const char *name, kumo_pid *pid);
/* Calls fn(name, pid, arg) for each registered name (a snapshot; fn may be
 * NULL to count only); returns the count. */
KUMO_API int kumo_registered(kumo_node *node, void (*fn)(const char *name, kumo_pid pid, void *arg),
                             void *arg);
/* Named send: to an unknown name the message is dropped (returns 0). */
KUMO_API int kumo_nsend(kumo_proc *self, const char *name, uint64_t type, const void *data,
                        size_t len);

/* ------------------------------------------------------------------ */
/* Blocking inbox: processes for ordinary threads                      */
/* ------------------------------------------------------------------ */

/*
 * An inbox is a real process whose mailbox an ordinary thread waits on.
 * Its proc (kumo_inbox_proc) works with kumo_send, kumo_spawn, kumo_link,
 * kumo_monitor, kumo_register, ... from the owning thread.  Exit signals to
 * an inbox are always trapped (they arrive as KUMO_TYPE_EXIT messages);
 * a kill closes it.
 */
typedef struct kumo_inbox kumo_inbox;

KUMO_API int kumo_inbox_new(kumo_node *node, kumo_inbox **out);
KUMO_API kumo_proc *kumo_inbox_proc(kumo_inbox *ib);
KUMO_API kumo_pid kumo_inbox_pid(kumo_inbox *ib);

/*
 * Waits up to timeout_ns (KUMO_INFINITY, or 0 for a poll) for the first
 * message in mailbox order for which match(m, arg) holds (match == NULL:
 * any message), removes it and returns it in *out, owned by the caller
 * (kumo_msg_free).  Returns 0, -KUMO_ETIMEOUT, -KUMO_ESHUTDOWN (the node
 * stopped) or -KUMO_ENOPROC (the inbox was killed); messages already
 * queued are still returned first.
 */
KUMO_API int kumo_inbox_recv(kumo_inbox *ib, kumo_pred match, void *arg, int64_t timeout_ns,
                             kumo_msg **out);
/* Shorthand: the first message of `type`. */
KUMO_API int kumo_inbox_expect(kumo_inbox *ib, uint64_t type, int64_t timeout_ns, kumo_msg **out);
/* Waits as kumo_inbox_recv for the next message on a receive port the
 * inbox owns (a channel, or a merge of its channels).  Returns the same,
 * or -KUMO_ENOTOWNER for a port not the inbox's or closed. */
KUMO_API int kumo_inbox_recv_port(kumo_inbox *ib, kumo_recv_port *rp, int64_t timeout_ns,
                                  kumo_msg **out);
/* Number of queued messages. */
KUMO_API size_t kumo_inbox_count(kumo_inbox *ib);

/* Ends the inbox process (reason normal) and frees it with its queue. */
KUMO_API void kumo_inbox_free(kumo_inbox *ib);

/* ------------------------------------------------------------------ */
/* Logging                                                             */
/* ------------------------------------------------------------------ */

typedef enum kumo_log_level {
    KUMO_LOG_DEBUG,
    KUMO_LOG_INFO,
    KUMO_LOG_WARN,
    KUMO_LOG_ERROR
} kumo_log_level;

/* Lines below `level` are dropped.  Default: INFO, or $KUMO_LOG
 * (debug|info|warn|error) when set. */
KUMO_API void kumo_log_set_level(kumo_log_level level);
/* Redirects log lines (each a whole line without '\n').  NULL restores
 * stderr.  The sink may be called from any shard thread concurrently. */
KUMO_API void kumo_log_set_sink(void (*sink)(kumo_log_level, const char *line, void *arg),
                                void *arg);

#ifdef __cplusplus
}
#endif
#endif
