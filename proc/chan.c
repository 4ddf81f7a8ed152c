/* Typed channels: per-channel queues owned by the creating process (or
 * inbox), merged ports (biased and round-robin) over them, and closing. */
#include "proc/internal.h"

#include <errno.h>

static size_t port_size(void)
{
    return sizeof(struct kumo_recv_port);
}

int kumo_new_chan(kumo_proc *self, uint64_t type, kumo_send_port *sp, kumo_recv_port **rp)
{
    struct proc_ext *e = kumo__ext(self);
    if (!e)
        return -ENOMEM;
    struct kumo_recv_port *p = kumo__zalloc(port_size());
    if (!p)
        return -ENOMEM;
    p->owner = self;
    p->type = type;
    p->kind = PORT_CHAN;
    p->qtail = &p->qhead;
    kumo__inbox_lock(self);
    p->id = ++e->next_chan;
    p->next = e->ports;
    e->ports = p;
    kumo__inbox_unlock(self);
    *sp = (kumo_send_port){.owner = kumo__pid_of(self), .id = p->id, .type = type};
    *rp = p;
    return 0;
}

int kumo_send_chan(kumo_proc *self, kumo_send_port sp, const void *data, size_t len)
{
    kumo_node *node = self->node;
    int err = kumo__check_send(node, len);
    if (err)
        return err;
    if (!sp.id)
        return 0; /* no port: dropped, as a send to a dead pid */
    struct kumo_msg *m = kumo__msg_from(self, sp.owner, SIG_CHAN, sp.type, sp.id, len);
    if (!m)
        return -ENOMEM;
    kumo__copy(m->data, data, len);
    kumo__post(node, self, sp.owner, m);
    return 0;
}

static int merge(kumo_proc *self, kumo_recv_port *const *ports, int n, uint8_t kind,
                 kumo_recv_port **out)
{
    if (n <= 0 || !ports)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!ports[i] || ports[i]->owner != self || ports[i]->closed)
            return -KUMO_ENOTOWNER;
    struct proc_ext *e = kumo__ext(self);
    if (!e)
        return -ENOMEM;
    struct kumo_recv_port *p = kumo__zalloc(port_size());
    if (!p)
        return -ENOMEM;
    p->child = kumo__alloc(sizeof(*p->child) * (size_t)n);
    if (!p->child) {
        kumo__free(p, port_size());
        return -ENOMEM;
    }
    memcpy(p->child, ports, sizeof(*p->child) * (size_t)n);
    p->nchild = (uint32_t)n;
    p->owner = self;
    p->kind = kind;
    p->type = ports[0]->type;
    p->qtail = &p->qhead;
    kumo__inbox_lock(self);
    for (int i = 0; i < n; i++)
        ports[i]->refs++;
    p->next = e->ports;
    e->ports = p;
    kumo__inbox_unlock(self);
    *out = p;
    return 0;
}

/* Frees a closed port that nothing refers to any more, and so on down the
 * ports it merged.  With the owner's list lock held (inboxes). */
static void port_release(struct proc_ext *e, struct kumo_recv_port *port)
{
    if (!port->closed || port->refs)
        return;
    struct kumo_recv_port **pp = &e->ports;
    while (*pp != port)
        pp = &(*pp)->next;
    *pp = port->next;
    for (uint32_t i = 0; i < port->nchild; i++) {
        port->child[i]->refs--;
        port_release(e, port->child[i]);
    }
    if (port->child)
        kumo__free(port->child, sizeof(*port->child) * port->nchild);
    kumo__free(port, port_size());
}

int kumo_close_port(kumo_proc *self, kumo_recv_port *port)
{
    if (!port || port->owner != self || port->closed)
        return -KUMO_ENOTOWNER;
    kumo__inbox_lock(self);
    kumo__msg_free_chain(port->qhead);
    port->qhead = NULL;
    port->qtail = &port->qhead;
    port->closed = true;
    port_release(self->ext, port);
    kumo__inbox_unlock(self);
    return 0;
}

int kumo_merge_ports_biased(kumo_proc *self, kumo_recv_port *const *ports, int n,
                            kumo_recv_port **out)
{
    return merge(self, ports, n, PORT_BIASED, out);
}

int kumo_merge_ports_rr(kumo_proc *self, kumo_recv_port *const *ports, int n, kumo_recv_port **out)
{
    return merge(self, ports, n, PORT_RR, out);
}

struct kumo_msg *kumo__port_take(struct kumo_recv_port *port)
{
    if (port->closed)
        return NULL;
    switch (port->kind) {
    case PORT_CHAN: {
        struct kumo_msg *m = port->qhead;
        if (m) {
            port->qhead = msg_next(m);
            if (!port->qhead)
                port->qtail = &port->qhead;
        }
        return m;
    }
    case PORT_BIASED:
        for (uint32_t i = 0; i < port->nchild; i++) {
            struct kumo_msg *m = kumo__port_take(port->child[i]);
            if (m)
                return m;
        }
        return NULL;
    case PORT_RR:
        for (uint32_t k = 0; k < port->nchild; k++) {
            uint32_t i = (port->rr_next + k) % port->nchild;
            struct kumo_msg *m = kumo__port_take(port->child[i]);
            if (m) {
                port->rr_next = (i + 1) % port->nchild;
                return m;
            }
        }
        return NULL;
    }
    return NULL;
}

void kumo__chan_deliver(struct kumo_proc *p, struct kumo_msg *m)
{
    kumo__inbox_lock(p);
    struct kumo_recv_port *port = p->ext ? p->ext->ports : NULL;
    while (port && !(port->kind == PORT_CHAN && port->id == m->aux && !port->closed))
        port = port->next;
    if (!port) {
        kumo__inbox_unlock(p);
        kumo__msg_free(m); /* closed, or never opened: dropped */
        return;
    }
    m->link.next = NULL;
    *port->qtail = m;
    port->qtail = (struct kumo_msg **)&m->link.next;
    if (p->flags & PF_FOREIGN) {
        kumo__inbox_wake(p);
        kumo__inbox_unlock(p);
        return;
    }
    if (p->flags & PF_WAITING)
        kumo__proc_make_ready(p->node->ps[p->shard], p);
}

void kumo__ports_free(struct kumo_proc *p)
{
    struct kumo_recv_port *port = p->ext->ports;
    while (port) {
        struct kumo_recv_port *next = port->next;
        kumo__msg_free_chain(port->qhead);
        if (port->child)
            kumo__free(port->child, sizeof(*port->child) * port->nchild);
        kumo__free(port, port_size());
        port = next;
    }
    p->ext->ports = NULL;
}
