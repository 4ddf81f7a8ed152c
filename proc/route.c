/*
 * Routing: the one function every item addressed to a pid goes through
 * (data, channel sends, exit and kill, link and monitor signals, DOWN).
 * A pid of this node is delivered here: through the shard-local queue, one
 * cross-shard SPSC ring, or the foreign queue, each FIFO, so items from one
 * sender to one receiver keep their order.  A pid of another node goes to
 * the node controller (proc/dist/), which keeps that order across the
 * link.
 */
#include "proc/internal.h"
#include "proc/dist/dist.h"

#include <errno.h>

void kumo__dead_letter(struct kumo_node *node, struct pshard *src, struct kumo_msg *m)
{
    if (m->kind == SIG_DOWN && m->dst_slot == KUMO__REGISTRY_SLOT && m->dst_shard == 0 &&
        m->dst_serial == 1) {
        /* A process of another node registered here has ended (or its
         * node is lost): its names go. */
        kumo__names_release(&node->names, ((const kumo_down_msg *)m->data)->pid);
        kumo__msg_free(m);
        return;
    }
    kumo_pid dst = {
        .node = node->id, .serial = m->dst_serial, .slot = m->dst_slot, .shard = m->dst_shard};
    kumo_reason r;
    kumo__reason_set(&r, KUMO_UNKNOWN_ID, NULL);
    if (m->kind == SIG_LINK)
        kumo__post_reason_from(node, src, dst, m->from, SIG_EXIT, MF_LINK, 0, &r);
    else if (m->kind == SIG_ELINK)
        kumo__post_reason_from(node, src, dst, m->from, SIG_EXIT, MF_ELINK, 0, &r);
    else if (m->kind == SIG_MONITOR)
        kumo__post_reason_from(node, src, dst, m->from, SIG_DOWN, 0, m->aux, &r);
    else if (m->kind == SIG_INFO)
        kumo__info_answer(node, src, dst, NULL, m->from, m->aux, 0);
    kumo__msg_free(m);
}

void kumo__post_local(struct kumo_node *node, struct pshard *src, struct kumo_msg *m)
{
    if (m->dst_shard >= node->n) {
        kumo__dead_letter(node, src, m);
        return;
    }
    if (src) {
        if (m->dst_shard == src->id) {
            /* Data goes straight to the mailbox while nothing is queued
             * locally (a queued signal must keep its place before it);
             * signals always queue, so a chain of exits never recurses. */
            if (m->kind == SIG_DATA && !src->lq_head) {
                kumo__deliver(src, m);
                return;
            }
            m->link.next = NULL;
            *src->lq_tail = m;
            src->lq_tail = (struct kumo_msg **)&m->link.next;
        } else {
            kumo__shard_put(src->sh, m->dst_shard, &m->link);
        }
    } else if (kumo__foreign_put(node->eng, m->dst_shard, &m->link)) {
        kumo__msg_free(m);
    }
}

void kumo__route(struct kumo_node *node, struct pshard *src, kumo_pid to, struct kumo_msg *m)
{
    if (__builtin_expect(to.node == node->id, 1))
        kumo__post_local(node, src, m);
    else
        kumo__dist_route(node, src, to, m);
}

int kumo__post_reason_from(struct kumo_node *node, struct pshard *src, kumo_pid from, kumo_pid to,
                           uint8_t kind, uint8_t flags, uint64_t aux, const kumo_reason *r)
{
    size_t len = kind == SIG_DOWN ? sizeof(kumo_down_msg) : sizeof(kumo_exit_msg);
    struct kumo_msg *m = kumo__msg_new(len);
    if (!m)
        return -ENOMEM;
    m->kind = kind;
    m->flags = flags;
    m->aux = aux;
    m->from = from;
    m->type = 0;
    msg_set_dst(m, to);
    if (kind == SIG_DOWN) {
        kumo_down_msg *d = (kumo_down_msg *)m->data;
        memset(d, 0, sizeof *d);
        /* The ref was made by the watcher's node: the one `to` is on. */
        d->ref = (kumo_ref){.node = to.node, .id = aux};
        d->pid = from;
        d->reason = *r;
    } else {
        kumo_exit_msg *e = (kumo_exit_msg *)m->data;
        memset(e, 0, sizeof *e);
        e->from = from;
        e->reason = *r;
    }
    kumo__route(node, src, to, m);
    return 0;
}
