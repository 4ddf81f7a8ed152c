/*
 * Process info (kumo_process_info): a SIG_INFO travels to the process like
 * any signal (so it is answered in order with what the asker sent before),
 * and the process's own shard answers with a snapshot, as a data message
 * from the process to the asker.  A dead pid is answered by the dead-letter
 * path, an unreachable node by the controller.
 */
#include "proc/internal.h"

#include "registry/names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

uint64_t kumo_type_process_info(void)
{
    return kumo_type(KUMO_TYPE_PROCESS_INFO_NAME);
}

struct names_of {
    kumo_pid pid;
    kumo_process_info_msg *out;
};

static void count_name(const char *name, kumo_pid pid, void *arg)
{
    struct names_of *n = arg;
    if (!kumo_pid_eq(pid, n->pid))
        return;
    if (n->out->names++ == 0)
        snprintf(n->out->name, sizeof n->out->name, "%s", name);
}

static void count_watches(const struct watch_list *l, uint32_t *links, uint32_t *monitors)
{
    for (uint32_t i = 0; i < l->n; i++) {
        uint32_t k = l->v[i].kind;
        if (k == W_LINK || k == W_ELINK)
            ++*links;
        else
            ++*monitors;
    }
}

void kumo__info_answer(struct kumo_node *node, struct pshard *src, kumo_pid about,
                       struct kumo_proc *p, kumo_pid asker, uint64_t ref, int err)
{
    struct kumo_msg *m = kumo__msg_new(sizeof(kumo_process_info_msg));
    if (!m)
        return; /* as an answer lost on the way */
    kumo_process_info_msg *info = (kumo_process_info_msg *)m->data;
    memset(info, 0, sizeof *info);
    info->ref = (kumo_ref){.node = asker.node, .id = ref};
    info->pid = about;
    info->err = err;
    info->shard = about.shard;
    if (p) {
        kumo__inbox_lock(p);
        info->alive = true;
        info->inbox = (p->flags & PF_FOREIGN) != 0;
        info->trap_exit = (p->flags & PF_TRAP) != 0;
        for (const struct kumo_msg *q = p->mbox_head; q; q = msg_next(q))
            info->mailbox_len++;
        if (p->ext) {
            count_watches(&p->ext->watching, &info->links, &info->monitors);
            count_watches(&p->ext->watchers, &info->linked_by, &info->monitored_by);
        }
        kumo__inbox_unlock(p);
        struct names_of n = {.pid = about, .out = info};
        kumo__names_each(&node->names, count_name, &n);
    }
    m->kind = SIG_DATA;
    m->type = node->type_info;
    m->aux = ref;
    m->from = about;
    m->flags |= MF_USEND; /* an answer, whoever sends it: no reconnect history */
    msg_set_dst(m, asker);
    kumo__route(node, src, asker, m);
}

int kumo_process_info(kumo_proc *self, kumo_pid pid, kumo_ref *ref)
{
    kumo_node *node = self->node;
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    struct kumo_msg *m = kumo__msg_new(0);
    if (!m)
        return -ENOMEM;
    uint64_t id = kumo__new_ref(node, self);
    m->kind = SIG_INFO;
    m->aux = id;
    m->from = kumo__pid_of(self);
    msg_set_dst(m, pid);
    kumo__post(node, self, pid, m);
    if (ref)
        *ref = (kumo_ref){.node = node->id, .id = id};
    return 0;
}

int kumo_process_info_wait(kumo_inbox *ib, kumo_pid pid, int64_t timeout_ns,
                           kumo_process_info_msg *out)
{
    kumo_proc *self = kumo_inbox_proc(ib);
    kumo_ref ref;
    int err = kumo_process_info(self, pid, &ref);
    if (err)
        return err;
    return kumo__inbox_take_answer(ib, self->node->type_info, ref, timeout_ns, out, sizeof *out);
}
