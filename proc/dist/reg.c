/*
 * The remote registry, the process side: requests to another node's (or
 * this node's) registry, and their execution on the node that holds the
 * names.
 */
#include "proc/dist/dist.h"

#include <errno.h>
#include <stdio.h>

uint64_t kumo_type_reg_reply(void)
{
    return kumo_type(KUMO_TYPE_REG_REPLY_NAME);
}

void kumo__reg_reply(struct kumo_node *node, struct pshard *src, kumo_pid requester, uint64_t ref,
                     kumo_pid pid, int err)
{
    struct kumo_msg *m = kumo__msg_new(sizeof(kumo_reg_reply_msg));
    if (!m)
        return; /* lost, as on a broken link */
    m->type = node->type_reg_reply;
    m->aux = ref;
    kumo_reg_reply_msg *r = (kumo_reg_reply_msg *)m->data;
    memset(r, 0, sizeof *r);
    r->ref = (kumo_ref){.node = requester.node, .id = ref};
    r->pid = pid;
    r->err = err;
    msg_set_dst(m, requester);
    kumo__route(node, src, requester, m);
}

int kumo__reg_exec(struct kumo_node *node, struct pshard *src, kumo_pid requester, uint8_t op,
                   const char *name, size_t namelen, kumo_pid pid, uint64_t type, const void *data,
                   size_t len, kumo_pid *found)
{
    char nm[KUMO_NAME_MAX + 1];
    if (namelen == 0 || namelen > KUMO_NAME_MAX)
        return -EINVAL;
    memcpy(nm, name, namelen);
    nm[namelen] = 0;
    *found = (kumo_pid){0};
    switch (op) {
    case KUMO__REG_WHEREIS:
        if (kumo_whereis(node, nm, found))
            *found = (kumo_pid){0};
        return 0;
    case KUMO__REG_REGISTER:
        return kumo_register(node, nm, pid);
    case KUMO__REG_UNREGISTER:
        return kumo_unregister(node, nm);
    case KUMO__REG_NSEND: {
        kumo_pid to;
        if (kumo_whereis(node, nm, &to) || len > node->max_message)
            return 0; /* unknown name: dropped */
        struct kumo_msg *m = kumo__msg_new(len);
        if (!m)
            return -ENOMEM;
        m->type = type;
        m->from = requester;
        if (len)
            memcpy(m->data, data, len);
        msg_set_dst(m, to);
        kumo__route(node, src, to, m);
        return 0;
    }
    default:
        return -EINVAL;
    }
}

static int reg_request(kumo_proc *self, uint64_t nid, uint8_t op, const char *name, kumo_pid pid,
                       uint64_t type, const void *data, size_t len, kumo_ref *ref)
{
    struct kumo_node *node = self->node;
    size_t namelen = name ? strlen(name) : 0;
    if (namelen == 0 || namelen > KUMO_NAME_MAX || (len && !data))
        return -EINVAL;
    int err = kumo__check_send(node, len);
    if (err)
        return err;
    uint64_t id = kumo__new_ref(node, self);
    kumo_pid me = kumo__pid_of(self);
    struct pshard *src = kumo__pshard_of(self);
    if (ref)
        *ref = (kumo_ref){.node = node->id, .id = id};
    if (nid == node->id) {
        kumo_pid found;
        err = kumo__reg_exec(node, src, me, op, name, namelen, pid, type, data, len, &found);
        if (op != KUMO__REG_NSEND)
            kumo__reg_reply(node, src, me, id, found, err);
        return op == KUMO__REG_NSEND ? err : 0;
    }
    if (!(self->flags & PF_FOREIGN))
        self->flags |= PF_DIST;
    struct kumo_msg *m = kumo__msg_new(sizeof(struct kumo__reg_req) + namelen + len);
    if (!m)
        return -ENOMEM;
    m->kind = SIG_REG_REQ;
    m->aux = id;
    m->from = me;
    kumo_pid to = {.node = nid};
    msg_set_dst(m, to);
    struct kumo__reg_req *h = (struct kumo__reg_req *)m->data;
    *h = (struct kumo__reg_req){.pid = pid, .type = type, .op = op, .namelen = (uint8_t)namelen};
    memcpy(m->data + sizeof *h, name, namelen);
    if (len)
        memcpy(m->data + sizeof *h + namelen, data, len);
    kumo__route(node, src, to, m);
    return 0;
}

int kumo_whereis_remote(kumo_proc *self, uint64_t node, const char *name, kumo_ref *ref)
{
    return reg_request(self, node, KUMO__REG_WHEREIS, name, (kumo_pid){0}, 0, NULL, 0, ref);
}

int kumo_register_remote(kumo_proc *self, uint64_t node, const char *name, kumo_pid pid,
                         kumo_ref *ref)
{
    return reg_request(self, node, KUMO__REG_REGISTER, name, pid, 0, NULL, 0, ref);
}

int kumo_unregister_remote(kumo_proc *self, uint64_t node, const char *name, kumo_ref *ref)
{
    return reg_request(self, node, KUMO__REG_UNREGISTER, name, (kumo_pid){0}, 0, NULL, 0, ref);
}

int kumo_nsend_remote(kumo_proc *self, uint64_t node, const char *name, uint64_t type,
                      const void *data, size_t len)
{
    return reg_request(self, node, KUMO__REG_NSEND, name, (kumo_pid){0}, type, data, len, NULL);
}

static int wait_reply(kumo_inbox *ib, kumo_ref ref, int64_t timeout_ns, kumo_reg_reply_msg *out)
{
    int err = kumo__inbox_take_answer(ib, kumo_inbox_proc(ib)->node->type_reg_reply, ref,
                                      timeout_ns, out, sizeof *out);
    return err ? err : out->err;
}

int kumo_whereis_remote_wait(kumo_inbox *ib, uint64_t node, const char *name, int64_t timeout_ns,
                             kumo_pid *pid)
{
    kumo_ref ref;
    int err = kumo_whereis_remote(kumo_inbox_proc(ib), node, name, &ref);
    if (err)
        return err;
    kumo_reg_reply_msg r;
    err = wait_reply(ib, ref, timeout_ns, &r);
    if (err)
        return err;
    if (kumo_pid_is_null(r.pid))
        return -KUMO_ENONAME;
    if (pid)
        *pid = r.pid;
    return 0;
}

int kumo_register_remote_wait(kumo_inbox *ib, uint64_t node, const char *name, kumo_pid pid,
                              int64_t timeout_ns)
{
    kumo_ref ref;
    int err = kumo_register_remote(kumo_inbox_proc(ib), node, name, pid, &ref);
    if (err)
        return err;
    kumo_reg_reply_msg r;
    return wait_reply(ib, ref, timeout_ns, &r);
}

int kumo_unregister_remote_wait(kumo_inbox *ib, uint64_t node, const char *name, int64_t timeout_ns)
{
    kumo_ref ref;
    int err = kumo_unregister_remote(kumo_inbox_proc(ib), node, name, &ref);
    if (err)
        return err;
    kumo_reg_reply_msg r;
    return wait_reply(ib, ref, timeout_ns, &r);
}
