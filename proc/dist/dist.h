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
 * Until a controller is running, the other node is unreachable: data is
 * dropped, SIG_LINK and SIG_MONITOR are answered with unknown-id, as for a
 * dead pid.
 */
void kumo__dist_route(struct kumo_node *node, struct pshard *src, kumo_pid to, struct kumo_msg *m);

#endif
