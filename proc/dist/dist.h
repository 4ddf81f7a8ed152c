/*
 * The node controller's interface to the local runtime (proc/).  The
 * controller (proc/dist/) maps processes and their signals onto transport
 * connections; it sees the transports only through <kumo/transport.h>.
 */
#ifndef KUMO_PROC_DIST_DIST_H
#define KUMO_PROC_DIST_DIST_H

#include "proc/internal.h"

/*
 * An item of the signal set addressed to `to`, a pid of another node
 * (kumo__route calls this for every such item).  `src` is the sending
 * shard, or NULL from a thread outside the engine.  Takes m in every case.
 * A node without a controller sees another node's pid as a dead one: data
 * is dropped, SIG_LINK and SIG_MONITOR are answered with unknown-id.  With
 * one, a node it cannot reach answers them with disconnect.
 */
void kumo__dist_route(struct kumo_node *node, struct pshard *src, kumo_pid to, struct kumo_msg *m);

/*
 * kumo_send's short cut for a process on shard 0 (the controller's): a
 * small message to a peer whose connection is up and has nothing queued
 * goes from the caller's bytes straight into the connection, without a
 * message of its own.  Returns true when it took the send (sent, queued,
 * or dropped as the item would have been), false when the caller must
 * route a message as usual.  flags: 0 or MF_USEND.  On shard 0 only.
 * (Pids by pointer here and below: a kumo_pid passed by value goes
 * through the stack in parts and is read back whole, which stalls.)
 */
bool kumo__dist_send_direct(struct kumo_node *node, const kumo_pid *from, const kumo_pid *to,
                            uint64_t type, const void *data, size_t len, uint8_t flags);

struct kumo_dist_transport;

/* A local process that sent to other nodes (PF_DIST) has ended: the
 * controller forgets its (sender, receiver) pairs.  From its shard. */
void kumo__dist_forget(struct kumo_node *node, struct pshard *src, kumo_pid sender);

/* ---- spawn by closure (proc/dist/spawn.c) ---- */

/* Spawns closure name[0..namelen) of node's remote table for `requester`
 * (linking and monitoring it to the child atomically per flags MF_SP_*;
 * ref is the monitor's; self: the requester when it is local, else NULL).  0 and *out, or
 * -KUMO_ENOCLOSURE (logged), -EINVAL (no such shard), -ENOMEM, -KUMO_ESHUTDOWN. */
int kumo__closure_spawn(struct kumo_node *node, struct pshard *src, kumo_proc *self,
                        kumo_pid requester, uint64_t ref, int32_t shard, uint8_t flags,
                        const char *name, size_t namelen, const void *args, size_t len,
                        kumo_pid *out);
/* Posts the SIG_SPAWN_REPLY for a request to its (local) requester. */
void kumo__spawn_reply(struct kumo_node *node, struct pshard *src, kumo_pid requester, uint64_t ref,
                       uint8_t flags, kumo_pid child, int err);
/* ---- the remote registry (proc/dist/reg.c) ---- */

/* Runs a registry request (KUMO__REG_*) on this node's names for
 * `requester`; *found: whereis's answer.  Returns the request's error. */
int kumo__reg_exec(struct kumo_node *node, struct pshard *src, kumo_pid requester, uint8_t op,
                   const char *name, size_t namelen, kumo_pid pid, uint64_t type, const void *data,
                   size_t len, kumo_pid *found);
/* Posts the kumo.reg_reply message for a request to its (local) requester. */
void kumo__reg_reply(struct kumo_node *node, struct pshard *src, kumo_pid requester, uint64_t ref,
                     kumo_pid pid, int err);

/* Posts a SIG_NODE_DOWN (reason disconnect) about node nid to a local
 * watcher. */
void kumo__node_down(struct kumo_node *node, struct pshard *src, kumo_pid watcher, uint64_t ref,
                     uint64_t nid);

/* From kumo_node_start, after the engine started: opens each transport
 * and its endpoint on shard 0.  0 or -errno (nothing left open). */
int kumo__dist_start(struct kumo_node *node, const struct kumo_dist_transport *tv, unsigned n);
/* From kumo_node_stop, before the engine stops: stops using the
 * connections and frees the transports (blocks until they are closed). */
void kumo__dist_stop(struct kumo_node *node);
/* After the engine stopped: frees the controller. */
void kumo__dist_free(struct kumo_node *node);

#endif
