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

struct kumo_dist_transport;

/* From kumo_node_start, after the engine started: opens each transport
 * and its endpoint on shard 0.  0 or -errno (nothing left open). */
int kumo__dist_start(struct kumo_node *node, const struct kumo_dist_transport *tv, unsigned n);
/* From kumo_node_stop, before the engine stops: stops using the
 * connections and frees the transports (blocks until they are closed). */
void kumo__dist_stop(struct kumo_node *node);
/* After the engine stopped: frees the controller. */
void kumo__dist_free(struct kumo_node *node);

#endif
