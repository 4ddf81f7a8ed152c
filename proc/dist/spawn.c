/*
 * Spawn by closure and node monitors, the process side: the calls a
 * process makes, and the spawn a node makes for a request (its own or a
 * peer's) from its remote table.
 */
#include "proc/dist/dist.h"

#include <errno.h>

uint64_t kumo_type_did_spawn(void)
{
    return kumo_type(KUMO_TYPE_DID_SPAWN_NAME);
}

uint64_t kumo_type_node_down(void)
{
    return kumo_type(KUMO_TYPE_NODE_DOWN_NAME);
}

/* What a closure-spawned process carries until its init has run. */
struct closure_start {
    const kumo_closure *c;
    kumo_pid call_to; /* a call's requester, or null */
    size_t len;
    uint8_t args[];
};

static void closure_never_ran(void *state, const kumo_reason *why)
{
    (void)why;
    struct closure_start *cs = state;
    kumo__free(cs, sizeof *cs + cs->len);
}

static void closure_init(kumo_proc *self, void *state)
{
    struct closure_start *cs = state;
    const kumo_closure *c = cs->c;
    self->state = NULL;
    self->on_exit = c->on_exit;
    if (!kumo_pid_is_null(cs->call_to)) {
        struct proc_ext *e = kumo__ext(self);
        if (!e) {
            kumo__free(cs, sizeof *cs + cs->len);
            kumo_die(self, KUMO_EXCEPTION, "no memory for a call");
            return;
        }
        e->call_to = cs->call_to;
    }
    c->init(self, cs->args, cs->len);
    kumo__free(cs, sizeof *cs + cs->len);
}

static const kumo_closure *closure_find(struct kumo_node *node, const char *name, size_t n)
{
    for (unsigned i = 0; i < node->nclosures; i++) {
        const char *cn = node->closures[i].name;
        if (cn && strlen(cn) == n && memcmp(cn, name, n) == 0)
            return &node->closures[i];
    }
    return NULL;
}

int kumo__closure_spawn(struct kumo_node *node, struct pshard *src, kumo_proc *self,
                        kumo_pid requester, uint64_t ref, int32_t shard, uint8_t flags,
                        const char *name, size_t namelen, const void *args, size_t len,
                        kumo_pid *out)
{
    const kumo_closure *c = closure_find(node, name, namelen);
    if (!c) {
        char pb[80];
        kumo__log(KUMO_LOG_WARN,
                  "spawn: no closure \"%.*s\" in this node's remote table "
                  "(requested by %s)",
                  (int)namelen, name, kumo_pid_str(requester, pb, sizeof pb));
        return -KUMO_ENOCLOSURE;
    }
    if (shard >= 0 && (unsigned)shard >= node->n)
        return -EINVAL;
    struct closure_start *cs = kumo__alloc(sizeof *cs + len);
    if (!cs)
        return -ENOMEM;
    cs->c = c;
    cs->call_to = (flags & MF_SP_CALL) ? requester : (kumo_pid){0};
    cs->len = len;
    if (len)
        memcpy(cs->args, args, len);
    kumo_spawn_opts o = {.shard = shard == KUMO_SHARD_SAME ? KUMO_SHARD_RR : shard,
                         .trap_exit = (flags & MF_SP_TRAP) != 0,
                         .on_exit = closure_never_ran};
    struct kumo__spawn_watch rw = {.watcher = requester,
                                   .ref = ref,
                                   .link = (flags & MF_SP_LINK) != 0,
                                   .monitor = (flags & MF_SP_MONITOR) != 0};
    int err = kumo__spawn(node, src, self, &o, closure_init, cs, &rw, out);
    if (err)
        kumo__free(cs, sizeof *cs + len);
    return err;
}

void kumo__spawn_reply(struct kumo_node *node, struct pshard *src, kumo_pid requester, uint64_t ref,
                       uint8_t flags, kumo_pid child, int err)
{
    struct kumo_msg *m = kumo__msg_new(sizeof(kumo_did_spawn_msg));
    if (!m)
        return; /* lost, as on a broken link */
    m->kind = SIG_SPAWN_REPLY;
    m->flags = err ? 0 : flags;
    m->aux = ref;
    kumo_did_spawn_msg *r = (kumo_did_spawn_msg *)m->data;
    memset(r, 0, sizeof *r);
    r->ref = (kumo_ref){.node = requester.node, .id = ref};
    r->pid = err ? (kumo_pid){0} : child;
    r->err = err;
    msg_set_dst(m, requester);
    kumo__route(node, src, requester, m);
}

int kumo_spawn_remote(kumo_proc *self, uint64_t nid, const char *name, const void *args, size_t len,
                      const kumo_spawn_opts *opts, kumo_ref *ref)
{
    static const kumo_spawn_opts defaults = {.shard = KUMO_SHARD_SAME};
    if (!opts)
        opts = &defaults;
    if (!self || !name || (len && !args))
        return -EINVAL;
    struct kumo_node *node = self->node;
    size_t namelen = strlen(name);
    if (namelen == 0 || namelen > KUMO_CLOSURE_NAME_MAX || len > node->max_message)
        return -EINVAL;
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    uint64_t id = kumo__new_ref(node, self);
    uint8_t flags = (opts->link ? MF_SP_LINK : 0) | (opts->monitor ? MF_SP_MONITOR : 0) |
                    (opts->trap_exit ? MF_SP_TRAP : 0) | (opts->call ? MF_SP_CALL : 0);
    kumo_pid me = kumo__pid_of(self);
    struct pshard *src = kumo__pshard_of(self);
    kumo_ref r = {.node = node->id, .id = id};
    if (ref)
        *ref = r;
    if (opts->monitor)
        *opts->monitor = r;
    if (nid == node->id) {
        kumo_pid child = {0};
        /* Here the link and monitor are set up on both sides at once. */
        int err = kumo__closure_spawn(node, src, self, me, id, opts->shard, flags, name, namelen,
                                      args, len, &child);
        kumo__spawn_reply(node, src, me, id, 0, child, err);
        return 0;
    }
    size_t plen = sizeof(struct kumo__spawn_req) + namelen + len;
    struct kumo_msg *m = kumo__msg_new(plen);
    if (!m)
        return -ENOMEM;
    m->kind = SIG_SPAWN_REQ;
    m->flags = flags;
    m->aux = id;
    m->from = me;
    kumo_pid to = {.node = nid};
    msg_set_dst(m, to);
    struct kumo__spawn_req *h = (struct kumo__spawn_req *)m->data;
    *h =
        (struct kumo__spawn_req){.shard = opts->shard, .flags = flags, .namelen = (uint8_t)namelen};
    memcpy(m->data + sizeof *h, name, namelen);
    if (len)
        memcpy(m->data + sizeof *h + namelen, args, len);
    kumo__route(node, src, to, m);
    return 0;
}

int kumo_spawn_remote_wait(kumo_inbox *ib, uint64_t nid, const char *name, const void *args,
                           size_t len, const kumo_spawn_opts *opts, kumo_pid *out)
{
    kumo_proc *self = kumo_inbox_proc(ib);
    kumo_ref ref;
    int err = kumo_spawn_remote(self, nid, name, args, len, opts, &ref);
    if (err)
        return err;
    /* The node answers within its spawn timeout; wait a little longer. */
    int64_t wait = (int64_t)self->node->spawn_timeout_ns + 1000000000;
    kumo_did_spawn_msg r;
    err = kumo__inbox_take_answer(ib, self->node->type_did_spawn, ref, wait, &r, sizeof r);
    if (err)
        return err;
    if (r.err == 0 && out)
        *out = r.pid;
    return r.err;
}

uint64_t kumo_type_call_return(void)
{
    return kumo_type(KUMO_TYPE_CALL_RETURN_NAME);
}

int kumo_call_return(kumo_proc *self, const void *data, size_t len)
{
    struct proc_ext *e = self->ext;
    if ((self->flags & PF_FOREIGN) || !e || kumo_pid_is_null(e->call_to))
        return -EINVAL;
    int err = kumo_send(self, e->call_to, kumo_type_call_return(), data, len);
    if (err)
        return err;
    e->call_to = (kumo_pid){0};
    kumo_die(self, KUMO_NORMAL, NULL); /* a call's process ends with its answer */
    return 0;
}

/* What ends a call's wait: its answer from the child, or the child's DOWN. */
struct call_match {
    uint64_t ret, down;
    kumo_pid child;
    kumo_ref mon;
};

static bool is_call_end(const kumo_msg *m, void *arg)
{
    const struct call_match *c = arg;
    if (kumo_msg_type(m) == c->ret)
        return kumo_pid_eq(kumo_msg_sender(m), c->child);
    if (kumo_msg_type(m) != c->down || kumo_msg_len(m) != sizeof(kumo_down_msg))
        return false;
    kumo_down_msg d;
    memcpy(&d, kumo_msg_data(m), sizeof d);
    return kumo_ref_eq(d.ref, c->mon);
}

int kumo_call_wait(kumo_inbox *ib, uint64_t nid, const char *name, const void *args, size_t len,
                   int64_t timeout_ns, kumo_msg **result, kumo_reason *why)
{
    kumo_proc *self = kumo_inbox_proc(ib);
    kumo_ref mon;
    kumo_spawn_opts o = {.shard = KUMO_SHARD_SAME, .monitor = &mon, .call = true};
    kumo_pid child;
    int err = kumo_spawn_remote_wait(ib, nid, name, args, len, &o, &child);
    if (err)
        return err;
    struct call_match c = {
        .ret = kumo_type_call_return(), .down = self->node->type_down, .child = child, .mon = mon};
    kumo_msg *m = NULL;
    err = kumo_inbox_recv(ib, is_call_end, &c, timeout_ns, &m);
    if (err) {
        /* No answer in time: nothing of the call is left behind. */
        kumo_unmonitor(self, mon);
        kumo_kill(self, child, "its call timed out");
        return err;
    }
    if (kumo_msg_type(m) == c.ret) {
        kumo_unmonitor(self, mon); /* the child's normal DOWN, queued or not */
        *result = m;
        return 0;
    }
    kumo_down_msg d;
    memcpy(&d, kumo_msg_data(m), sizeof d);
    kumo_msg_free(m);
    if (why)
        *why = d.reason;
    return -KUMO_ENOPROC;
}

int kumo_monitor_node(kumo_proc *self, uint64_t nid, kumo_ref *ref)
{
    struct kumo_node *node = self->node;
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    uint64_t id = kumo__new_ref(node, self);
    kumo_pid target = {.node = nid};
    kumo__inbox_lock(self);
    struct proc_ext *e = kumo__ext(self);
    int err = e ? kumo__watch_add(&e->watching, target, id, W_NODE) : -ENOMEM;
    kumo__inbox_unlock(self);
    if (err)
        return err;
    if (ref)
        *ref = (kumo_ref){.node = node->id, .id = id};
    if (nid == node->id)
        return 0; /* our own node: never fires */
    struct kumo_msg *m = kumo__msg_new(0);
    if (!m) {
        kumo__inbox_lock(self);
        kumo__watch_remove(&e->watching, target, id, W_NODE);
        kumo__inbox_unlock(self);
        return -ENOMEM;
    }
    m->kind = SIG_MONITOR_NODE;
    m->aux = id;
    m->from = kumo__pid_of(self);
    msg_set_dst(m, target);
    kumo__route(node, kumo__pshard_of(self), target, m);
    return 0;
}

void kumo__node_down(struct kumo_node *node, struct pshard *src, kumo_pid watcher, uint64_t ref,
                     uint64_t nid)
{
    struct kumo_msg *m = kumo__msg_new(sizeof(kumo_node_down_msg));
    if (!m)
        return;
    m->kind = SIG_NODE_DOWN;
    m->aux = ref;
    kumo_node_down_msg *d = (kumo_node_down_msg *)m->data;
    memset(d, 0, sizeof *d);
    d->ref = (kumo_ref){.node = watcher.node, .id = ref};
    d->node = nid;
    kumo__reason_set(&d->reason, KUMO_DISCONNECT, NULL);
    msg_set_dst(m, watcher);
    kumo__route(node, src, watcher, m);
}
