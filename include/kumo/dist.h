/*
 * Kumo distribution: processes on different nodes working together.
 *
 * A node started with transports in its kumo_node_config
 * (kumo_dist_transport) runs a *node controller*: every item addressed to a
 * pid of another node (kumo_send and its siblings, kumo_send_chan, exit
 * and kill, link and monitor, DOWN) travels to that node over one of those
 * transports, and arrives as it would locally.  Nothing else changes for
 * the caller: the same functions, the same contracts.
 *
 * Node identity.  A node id (kumo_pid.node, kumo_node_id) names one node
 * incarnation: a random 64-bit value drawn at kumo_node_start, so a node
 * restarted at the same address is a different node, and pids of the old
 * one never reach the new one.  A node is reached through its addresses,
 * one per transport (kumo_node_address), each carrying the endpoint's own
 * incarnation.  Nodes learn each other's addresses in their first
 * exchange (HELLO) and keep them in a directory (node id -> addresses).
 * An incarnation is known to be gone when a connect to it finds no
 * endpoint (-KUMO_ENOTFOUND: stopped, or restarted), or when another node
 * says HELLO from its place (kumo_address_same_place: tcp's host and
 * port).  In the second case the old one's link is declared lost first,
 * as Erlang does: what had crossed it fires with disconnect.  From then on
 * its pids are dead: sends are dropped, links and monitors fire at once
 * with unknown-id, node monitors with node-down, spawns and registry
 * requests fail with -KUMO_ECONNLOST, and its addresses are refused with
 * -KUMO_ENOTFOUND.
 *
 * Connecting.  kumo_node_connect() introduces a node by address; after
 * that, its pids (got in any way: spawned from here, in a message, out of
 * band) work.  Nodes connect on demand, never to every node they know.
 *
 * Semantics (Cloud Haskell's): messages between one pair of processes
 * arrive in order; when the link between two nodes fails, what was in
 * flight is lost, and every link and monitor across it fires with reason
 * KUMO_DISCONNECT, on both sides, without any further traffic.
 */
#ifndef KUMO_DIST_H
#define KUMO_DIST_H

#include <kumo/kumo.h>
#include <kumo/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One transport a node runs for distribution: its name ("tcp", "shm",
 * see kumo_transport_list) and its configuration struct (kumo_tcp_config,
 * kumo_shm_config) or NULL for its defaults.  Copied at kumo_node_start
 * (the config's strings, such as the cookie, must stay valid until then
 * only). */
typedef struct kumo_dist_transport {
    const char *name;
    const void *config;
} kumo_dist_transport;

/* Most transports one node runs. */
#define KUMO_DIST_MAX_TRANSPORTS 4

/* The node id of the caller's node (kumo_node_id of kumo_self_node). */
KUMO_API uint64_t kumo_self_node_id(const kumo_proc *self);

/* The node's address on its i-th distribution transport.  Returns 0, or
 * -ENOENT when the node has no i-th transport.  Any thread. */
KUMO_API int kumo_node_address(const kumo_node *node, unsigned i, kumo_address *out);

/*
 * Connects `node` to the node listening at `address` (one of that node's
 * kumo_node_address values, or a tcp place such as "tcp://10.0.0.5:4369"
 * from kumo_address_parse: the live node known there, else whoever
 * listens there now), waits until both have exchanged their
 * identities, and stores the peer's node id in *peer.  Blocks up to
 * timeout_ns (KUMO_INFINITY: the transport's connect timeout); call it from
 * a thread outside the node's shards.  Connecting to a node already
 * connected returns at once.  Returns 0, -EINVAL (no transport of the
 * address's kind on this node, or a shard thread), -KUMO_ETIMEOUT, the
 * transport's connect error (-KUMO_ENOTFOUND, -KUMO_EAUTH,
 * -KUMO_ECONNFAILED, ...), -ENOMEM or -KUMO_ESHUTDOWN.
 */
KUMO_API int kumo_node_connect(kumo_node *node, const kumo_address *address, int64_t timeout_ns,
                               uint64_t *peer);

/* ------------------------------------------------------------------ */
/* Disconnect and reconnect                                            */
/* ------------------------------------------------------------------ */

/*
 * When the link to a node is lost, what was in flight to it is dropped,
 * and every (sender, receiver) pair that had traffic over the lost link
 * stays disconnected: the sender's later kumo_send / kumo_send_chan /
 * kumo_forward to that receiver are dropped (still returning 0, as a send
 * to a dead pid does) until the sender calls kumo_reconnect(self,
 * receiver), accepting the loss.  The receiver thus sees a prefix of what
 * was sent before the break, never a gap.  A pair that first talks after
 * the loss is not affected, and signals (links, monitors, exit, kill,
 * spawn) between controllers reconnect by themselves.  A channel's pair is
 * (sender, the port's owner).
 *
 * kumo_reconnect returns 0 (also for a local pid or a pair that was never
 * disconnected), or -KUMO_ESHUTDOWN.  It takes effect in order with the
 * caller's sends: the next send to `pid` goes out.
 */
KUMO_API int kumo_reconnect(kumo_proc *self, kumo_pid pid);

/*
 * Unreliable send (Cloud Haskell's usend): as kumo_send, but it ignores
 * the pair's reconnect history, so it may be dropped by a lost link
 * without any later send being blocked; messages that arrive arrive in
 * order.  Returns as kumo_send.
 */
KUMO_API int kumo_usend(kumo_proc *self, kumo_pid to, uint64_t type, const void *data, size_t len);

/* ------------------------------------------------------------------ */
/* Remote spawn by closure                                             */
/* ------------------------------------------------------------------ */

/*
 * A closure: a name in every node's remote table (kumo_node_config
 * .closures) and the code it stands for.  Code never travels: every node
 * runs the same binary and looks the name up.  init runs as the new
 * process's init, on its shard, with the argument bytes the spawner sent
 * (valid during the call only): it decodes them itself, may set the
 * process's state (kumo_set_state) and declares its first receive as any
 * init does.  on_exit (may be NULL) is the process's on_exit.
 */
typedef struct kumo_closure {
    const char *name;
    void (*init)(kumo_proc *self, const void *args, size_t len);
    kumo_exit_fn on_exit;
} kumo_closure;

/* Longest closure name. */
#define KUMO_CLOSURE_NAME_MAX 200

/* The answer to a remote spawn, delivered to the spawner as a message of
 * type KUMO_TYPE_DID_SPAWN with this payload: err 0 and the new pid, or
 * err < 0 and a null pid. */
#define KUMO_TYPE_DID_SPAWN_NAME "kumo.did_spawn"
KUMO_API uint64_t kumo_type_did_spawn(void);
typedef struct kumo_did_spawn_msg {
    kumo_ref ref;
    kumo_pid pid;
    int32_t err;
} kumo_did_spawn_msg;

/*
 * Spawns closure `name` on node `node` (this node's id works too) with the
 * argument bytes args[0..len) (copied).  Asynchronous: returns 0 and the
 * request's ref, and exactly one KUMO_TYPE_DID_SPAWN message with that ref
 * follows, within the node's spawn_timeout_ns: err 0 and the pid, or
 * -KUMO_ENOCLOSURE (the node's table lacks `name`; it logs a line),
 * -KUMO_ECONNLOST (the node is unreachable, or its link was lost before it
 * answered), -KUMO_ESHUTDOWN (that node is stopping), -KUMO_ETIMEOUT (no
 * answer in time; a process spawned after all is killed), -EINVAL (a shard
 * that node lacks), -ENOMEM.
 *
 * opts as for kumo_spawn: shard (KUMO_SHARD_SAME, the default, means
 * round-robin over that node's shards), trap_exit, link, monitor.  Link
 * and monitor are atomic with the spawn: the child cannot end unseen.  The
 * monitor's ref is the request's ref (also stored in *opts->monitor).
 * on_exit is ignored (the closure's own runs).
 *
 * Returns 0, -EINVAL (no self, a name longer than KUMO_CLOSURE_NAME_MAX,
 * args over max_message), -ENOMEM or -KUMO_ESHUTDOWN.  The call itself
 * never waits on the network.
 */
KUMO_API int kumo_spawn_remote(kumo_proc *self, uint64_t node, const char *name, const void *args,
                               size_t len, const kumo_spawn_opts *opts, kumo_ref *ref);

/*
 * The synchronous form for an inbox: kumo_spawn_remote, then waits (other
 * messages stay queued) for its answer.  Returns 0 and the pid, the
 * answer's err, or an error of kumo_spawn_remote / kumo_inbox_recv.
 */
KUMO_API int kumo_spawn_remote_wait(kumo_inbox *ib, uint64_t node, const char *name,
                                    const void *args, size_t len, const kumo_spawn_opts *opts,
                                    kumo_pid *out);

/*
 * Cloud Haskell's call: run a closure on a node and get its answer.
 *
 * A child spawned with kumo_spawn_opts.call (by any process) answers once
 * with kumo_call_return(self, data, len): the bytes go to the spawner as a
 * KUMO_TYPE_CALL_RETURN message sent by the child, and the child ends
 * normally when the handler (or init) that answered returns.  A process
 * that spawns a call receives the did_spawn answer, then the call's
 * answer or, if the child ended without one, its DOWN (monitor it).
 * kumo_call_return returns 0, -EINVAL (not a call's process, or answered
 * already) or an error of kumo_send.
 *
 * kumo_call_wait is the whole exchange for an inbox: spawns `name` on
 * `node` as a monitored call, waits up to timeout_ns (KUMO_INFINITY: no
 * limit) for its answer, and returns 0 with the answer message in
 * *result (the caller frees it); -KUMO_ENOPROC if the child ended without
 * answering (its reason in *why, if why is not NULL: an exception, killed,
 * disconnect, ...); -KUMO_ETIMEOUT (the child is killed and its DOWN
 * never delivered; an answer it sent just before may still arrive), or an
 * error of kumo_spawn_remote_wait.  Other messages stay queued.
 */
#define KUMO_TYPE_CALL_RETURN_NAME "kumo.call_return"
KUMO_API uint64_t kumo_type_call_return(void);
KUMO_API int kumo_call_return(kumo_proc *self, const void *data, size_t len);
KUMO_API int kumo_call_wait(kumo_inbox *ib, uint64_t node, const char *name, const void *args,
                            size_t len, int64_t timeout_ns, kumo_msg **result, kumo_reason *why);

/* ------------------------------------------------------------------ */
/* Node monitors                                                       */
/* ------------------------------------------------------------------ */

/* A node monitor's notification: a message of type KUMO_TYPE_NODE_DOWN
 * with this payload (reason KUMO_DISCONNECT: the link to the node was lost
 * or could not be made). */
#define KUMO_TYPE_NODE_DOWN_NAME "kumo.node_down"
KUMO_API uint64_t kumo_type_node_down(void);
typedef struct kumo_node_down_msg {
    kumo_ref ref;
    uint64_t node;
    kumo_reason reason;
} kumo_node_down_msg;

/*
 * Monitors node `node`: exactly one KUMO_TYPE_NODE_DOWN message with the
 * ref when the link to it is lost; at once when it cannot be reached (not
 * known, or the connect fails).  kumo_unmonitor(ref) cancels it (removing
 * a queued notification too).  Monitoring this node itself never fires.
 * Returns 0 and the ref, -ENOMEM or -KUMO_ESHUTDOWN.
 */
KUMO_API int kumo_monitor_node(kumo_proc *self, uint64_t node, kumo_ref *ref);

/* ------------------------------------------------------------------ */
/* Remote registry                                                     */
/* ------------------------------------------------------------------ */

/*
 * Each node's registry (kumo_register, ...) used from another node, as
 * Cloud Haskell's whereisRemoteAsync, registerRemoteAsync and nsendRemote.
 * The request is asynchronous: exactly one KUMO_TYPE_REG_REPLY message
 * with the returned ref follows (not for kumo_nsend_remote): err 0 (and
 * for whereis the pid, null when the name is not registered), or the
 * error the node's kumo_register / kumo_unregister returned
 * (-KUMO_ENAMETAKEN, -KUMO_ENOPROC: a pid of that node that is dead,
 * -KUMO_ENONAME, -EINVAL), or -KUMO_ECONNLOST when the node cannot be
 * reached or the link is lost before it answers.  `node` may be this
 * node's own id.  The pid registered may be any node's (the caller's own,
 * typically): that node then monitors it.  Names live on their node: they
 * die with their process, with the link to the process's node, and with
 * their node.  Each call returns 0 and the ref, -EINVAL (a name
 * empty or over KUMO_NAME_MAX), -ENOMEM or -KUMO_ESHUTDOWN.
 */
#define KUMO_TYPE_REG_REPLY_NAME "kumo.reg_reply"
KUMO_API uint64_t kumo_type_reg_reply(void);
typedef struct kumo_reg_reply_msg {
    kumo_ref ref;
    kumo_pid pid; /* whereis: the name's pid, or null */
    int32_t err;
} kumo_reg_reply_msg;

KUMO_API int kumo_whereis_remote(kumo_proc *self, uint64_t node, const char *name, kumo_ref *ref);
KUMO_API int kumo_register_remote(kumo_proc *self, uint64_t node, const char *name, kumo_pid pid,
                                  kumo_ref *ref);
KUMO_API int kumo_unregister_remote(kumo_proc *self, uint64_t node, const char *name,
                                    kumo_ref *ref);
/* Sends to the process registered as `name` on `node` (dropped, as a
 * send to a dead pid, when there is none).  Returns as kumo_send. */
KUMO_API int kumo_nsend_remote(kumo_proc *self, uint64_t node, const char *name, uint64_t type,
                               const void *data, size_t len);

/* The inbox forms: the request, then a wait of at most timeout_ns for its
 * reply (other messages stay queued).  Return 0 (and the pid for whereis:
 * -KUMO_ENONAME when the name is not registered), the reply's err, or
 * -KUMO_ETIMEOUT. */
KUMO_API int kumo_whereis_remote_wait(kumo_inbox *ib, uint64_t node, const char *name,
                                      int64_t timeout_ns, kumo_pid *pid);
KUMO_API int kumo_register_remote_wait(kumo_inbox *ib, uint64_t node, const char *name,
                                       kumo_pid pid, int64_t timeout_ns);
KUMO_API int kumo_unregister_remote_wait(kumo_inbox *ib, uint64_t node, const char *name,
                                         int64_t timeout_ns);

/* ------------------------------------------------------------------ */
/* Peers                                                               */
/* ------------------------------------------------------------------ */

typedef enum kumo_peer_state {
    KUMO_PEER_KNOWN = 1,  /* its addresses are known (a DIR entry, or a lost link) */
    KUMO_PEER_CONNECTING, /* one direction is up or being dialled */
    KUMO_PEER_UP,         /* both directions are up: it can be reached */
    KUMO_PEER_GONE,       /* an old incarnation: never reached again */
} kumo_peer_state;

/* A node this node knows of, as its controller sees it. */
typedef struct kumo_peer_info {
    uint64_t node;
    kumo_peer_state state;
    const char *transport;  /* the transport that reaches it ("tcp", ...); NULL: none */
    kumo_address address;   /* its address on that transport */
    uint64_t losses;        /* links to it lost so far */
    uint32_t links;         /* links crossing to it (either way) */
    uint32_t monitors;      /* process monitors crossing to it (either way) */
    uint32_t node_monitors; /* node monitors on it held here */
    /* Bytes the controller holds for it, waiting for its link (a link
     * still connecting, or busy: kumo_node_config.dist_busy_bytes), now
     * and at most so far; and whether its senders are being suspended. */
    size_t queued_bytes, queued_peak;
    bool busy;
} kumo_peer_info;

/*
 * The nodes `node` knows of (Erlang's nodes(), with their state): writes up
 * to max entries to out and returns how many there are (more than max: call
 * again with more room), 0 for a node without distribution, -EINVAL (a
 * shard thread, or out NULL with max > 0) or -KUMO_ESHUTDOWN.  Blocks until
 * shard 0 has answered; call it from a thread outside the node's shards.
 * The transport names are static strings.
 */
KUMO_API int kumo_node_peers(kumo_node *node, kumo_peer_info *out, unsigned max);

/*
 * Test hook: breaks the link between `node` and node `peer` as if the
 * network between them failed (kumo_transport_break_link on the transport
 * that carries it): both nodes see the loss, and every link and monitor
 * across it fires with KUMO_DISCONNECT.  Returns 0 (also when there was no
 * link), -EINVAL from a shard thread, or -KUMO_ESHUTDOWN.  Blocks until
 * shard 0 has broken it.
 */
KUMO_API int kumo_node_break_link(kumo_node *node, uint64_t peer);

#ifdef __cplusplus
}
#endif
#endif
