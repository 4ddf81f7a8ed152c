/*
 * Nodes: start, stop and free, the engine hooks for shutdown and for items
 * left over after it, and the node's accessors.  The rest of the local
 * runtime is split by concern: slots.c (where a pid finds its process),
 * route.c (where an item goes), deliver.c (what it does there), sched.c
 * (run queue, receive, run loop), spawn.c, proc.c (records and death),
 * chan.c, watch.c, inbox.c; the node controller is proc/dist/.
 */
#include "proc/internal.h"
#include "proc/dist/dist.h"
#include "transport/create.h"

#include <kumo/dist.h>

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <xxhash.h>

static void hook_shutdown(void *ctx, struct kumo__shard *sh)
{
    struct pshard *ps = sh->user;
    ps->stopping = true;
    kumo_reason r;
    kumo__reason_set(&r, KUMO_SHUTDOWN, NULL);
    uint32_t hwm = atomic_load(&ps->hwm);
    for (uint32_t i = 0; i < hwm; i++) {
        struct slot *s = kumo__slot_at(ps, i);
        if (!s || !atomic_load(&s->serial))
            continue;
        struct kumo_proc *p = atomic_load(&s->p);
        if (p && !(p->flags & (PF_EMBRYO | PF_DEAD))) {
            p->flags &= ~PF_INIT;
            kumo__die(ps, p, &r);
        }
    }
}

/* After the shard threads are gone: free an item that never arrived.  A
 * spawn item carries an embryo that never ran: it ends with shutdown. */
static void hook_discard(void *ctx, struct kumo__item *it)
{
    (void)ctx;
    struct kumo_msg *m = (struct kumo_msg *)it;
    if (m->kind == SIG_SPAWN) {
        struct kumo_proc *p;
        memcpy(&p, m->data, sizeof p);
        kumo__msg_free_chain(p->mbox_head);
        kumo_reason r;
        kumo__reason_set(&r, KUMO_SHUTDOWN, NULL);
        atomic_fetch_sub(&p->node->remote_live, 1);
        if (p->on_exit)
            p->on_exit(p->state, &r);
        kumo__proc_free(p);
    }
    kumo__msg_free(m);
}
/* ------------------------------------------------------------------ */
/* Node                                                                */
/* ------------------------------------------------------------------ */

static void pshard_free(struct pshard *ps)
{
    if (!ps)
        return;
    for (uint32_t c = 0; c < SLOT_MAX_CHUNKS; c++) {
        struct slot *ch = atomic_load(&ps->chunks[c]);
        if (ch)
            kumo__free(ch, sizeof(struct slot) * SLOT_CHUNK);
    }
    kumo__free(ps->free_local, sizeof(uint32_t) * ps->capfree_local);
    kumo__free(ps->free_shared, sizeof(uint32_t) * ps->capfree_shared);
    pthread_mutex_destroy(&ps->free_mu);
    kumo__free(ps, sizeof *ps);
}

int kumo_node_start(const kumo_node_config *cfg, kumo_node **out)
{
    static const kumo_node_config defaults;
    if (!cfg)
        cfg = &defaults;
    kumo_node *node = kumo__zalloc(sizeof *node);
    if (!node)
        return -ENOMEM;
    int err = kumo__names_init(&node->names);
    if (err) {
        kumo__free(node, sizeof *node);
        return err;
    }
    while (node->id == 0)
        if (getrandom(&node->id, sizeof node->id, 0) != sizeof node->id)
            node->id = XXH3_64bits(&node, sizeof node) ^ (uint64_t)kumo__now_ns();
    node->max_message = cfg->max_message ? cfg->max_message : (64u << 20);
    if (node->max_message > UINT32_MAX - 4096)
        node->max_message = UINT32_MAX - 4096;
    node->budget = cfg->budget ? cfg->budget : 64;
    node->type_exit = kumo_type(KUMO_TYPE_EXIT_NAME);
    node->type_down = kumo_type(KUMO_TYPE_DOWN_NAME);
    node->type_did_spawn = kumo_type(KUMO_TYPE_DID_SPAWN_NAME);
    node->type_node_down = kumo_type(KUMO_TYPE_NODE_DOWN_NAME);
    node->type_port_down = kumo_type(KUMO_TYPE_PORT_DOWN_NAME);
    node->type_info = kumo_type(KUMO_TYPE_PROCESS_INFO_NAME);
    node->type_reg_reply = kumo_type(KUMO_TYPE_REG_REPLY_NAME);
    node->spawn_timeout_ns = cfg->spawn_timeout_ns ? cfg->spawn_timeout_ns : 10000000000ull;
    node->dist_busy_bytes = cfg->dist_busy_bytes ? cfg->dist_busy_bytes : (8u << 20);
    if (cfg->nclosures) {
        node->closures = kumo__alloc(sizeof *node->closures * cfg->nclosures);
        if (!node->closures) {
            kumo__names_fini(&node->names);
            kumo__free(node, sizeof *node);
            return -ENOMEM;
        }
        memcpy(node->closures, cfg->closures, sizeof *node->closures * cfg->nclosures);
        node->nclosures = cfg->nclosures;
    }

    struct kumo__engine_config ec = {.shards = cfg->shards,
                                     .no_pin = cfg->no_pin,
                                     .spin_ns = cfg->spin_ns,
                                     .ring_entries = cfg->ring_entries};
    struct kumo__engine_hooks hooks = {.ctx = node,
                                       .deliver = kumo__hook_deliver,
                                       .run = kumo__hook_run,
                                       .timer = kumo__hook_timer,
                                       .shutdown = hook_shutdown,
                                       .discard = hook_discard};
    err = kumo__engine_create(&ec, &hooks, &node->eng);
    if (err)
        goto fail;
    node->n = node->eng->n;
    node->ps = kumo__zalloc(sizeof(*node->ps) * node->n);
    if (!node->ps) {
        err = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < node->n; i++) {
        struct pshard *ps = kumo__zalloc(sizeof *ps);
        if (!ps) {
            err = -ENOMEM;
            goto fail;
        }
        node->ps[i] = ps;
        ps->sh = node->eng->shards[i];
        ps->sh->user = ps;
        ps->node = node;
        ps->id = i;
        ps->rq_tail = &ps->rq_head;
        ps->lq_tail = &ps->lq_head;
        pthread_mutex_init(&ps->free_mu, NULL);
    }
    err = kumo__engine_start(node->eng);
    if (err)
        goto fail;
    if (cfg->ntransports) {
        err = kumo__dist_start(node, cfg->transports, cfg->ntransports);
        if (err) {
            atomic_store(&node->stopping, 1);
            kumo__engine_stop(node->eng);
            goto fail;
        }
    }
    *out = node;
    return 0;
fail:
    if (node->eng)
        kumo__engine_destroy(node->eng);
    if (node->ps)
        for (unsigned i = 0; i < node->n; i++)
            pshard_free(node->ps[i]);
    kumo__free(node->ps, sizeof(*node->ps) * node->n);
    kumo__names_fini(&node->names);
    kumo__free(node->closures, sizeof *node->closures * node->nclosures);
    kumo__free(node, sizeof *node);
    return err;
}

void kumo_node_stop(kumo_node *node)
{
    if (!node || node->stopped)
        return;
    atomic_store(&node->stopping, 1);
    kumo__dist_stop(node);
    kumo__engine_stop(node->eng);
    /* An inbox published while shard 0 was already shutting down was never
     * seen by it: close it here (the shards are gone, we are alone). */
    struct pshard *ps = node->ps[0];
    uint32_t hwm = atomic_load(&ps->hwm);
    for (uint32_t i = 0; i < hwm; i++) {
        struct slot *s = kumo__slot_at(ps, i);
        struct kumo_proc *p = s && atomic_load(&s->serial) ? atomic_load(&s->p) : NULL;
        if (p && (p->flags & PF_FOREIGN) && !(p->flags & PF_DEAD)) {
            kumo__inbox_lock(p);
            p->flags |= PF_DEAD;
            atomic_store(&s->serial, 0);
            atomic_fetch_sub(&node->inboxes_live, 1);
            kumo__inbox_closed(p, true);
            kumo__inbox_unlock(p);
        }
    }
    node->stopped = true;
}

void kumo_node_free(kumo_node *node)
{
    if (!node)
        return;
    kumo_node_stop(node);
    kumo__dist_free(node);
    kumo__engine_destroy(node->eng);
    for (unsigned i = 0; i < node->n; i++)
        pshard_free(node->ps[i]);
    kumo__free(node->ps, sizeof(*node->ps) * node->n);
    kumo__names_fini(&node->names);
    kumo__free(node->closures, sizeof *node->closures * node->nclosures);
    kumo__free(node, sizeof *node);
}

/* The node owns the engine; transports are built on it (proc may use the
 * transport interface, transports know nothing of nodes). */
int kumo_transport_new(kumo_node *node, const char *name, const void *config, kumo_transport **out)
{
    if (!node || !name || !out)
        return -EINVAL;
    if (atomic_load(&node->stopping))
        return -KUMO_ESHUTDOWN;
    return kumo__transport_new(node->eng, name, config, out);
}

unsigned kumo_node_shards(const kumo_node *node)
{
    return node->n;
}
uint64_t kumo_node_id(const kumo_node *node)
{
    return node->id;
}

uint64_t kumo_node_process_count(kumo_node *node)
{
    int64_t n = atomic_load(&node->inboxes_live) + atomic_load(&node->remote_live);
    for (unsigned i = 0; i < node->n; i++)
        n += atomic_load_explicit(&node->ps[i]->live, memory_order_relaxed);
    return n > 0 ? (uint64_t)n : 0;
}
