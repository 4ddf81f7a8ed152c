/*
 * The node controller: everything addressed to a pid of another node.
 */
#include "proc/dist/dist.h"

void kumo__dist_route(struct kumo_node *node, struct pshard *src, kumo_pid to, struct kumo_msg *m)
{
    if (m->kind == SIG_LINK || m->kind == SIG_MONITOR) {
        kumo_reason r;
        kumo__reason_set(&r, KUMO_UNKNOWN_ID, NULL);
        bool link = m->kind == SIG_LINK;
        kumo__post_reason_from(node, src, to, m->from, link ? SIG_EXIT : SIG_DOWN,
                               link ? MF_LINK : 0, m->aux, &r);
    }
    kumo__msg_free(m);
}
