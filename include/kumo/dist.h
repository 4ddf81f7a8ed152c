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
 * kumo_node_address values), waits until both have exchanged their
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
