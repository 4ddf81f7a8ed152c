/*
 * Process layer internals.
 *
 * Ownership rules:
 *  - A process (struct kumo_proc) and everything hanging off it is touched
 *    only by its shard's thread, with two exceptions: an embryo (spawned
 *    from another thread) is filled in by the spawner before its slot is
 *    published, and an inbox (FOREIGN) process's mailbox and link/monitor
 *    lists are guarded by the inbox mutex.
 *  - Every signal and message is one struct kumo_msg, allocated once and
 *    owned by exactly one party: sender until posted, then the queue it is
 *    in, then the receiving process (or freed on delivery).
 *  - Delivery order: items from one sender to one receiver go through one
 *    FIFO (the shard-local queue, one SPSC ring, or the foreign queue), so
 *    messages and signals keep their order, same shard or not.
 *
 * Process lifecycle: EMBRYO (slot published, spawn item in flight; whatever
 * arrives is parked in order) -> ready with INIT -> running/waiting ->
 * dead (slot cleared, watchers notified, on_exit called).  The struct is
 * freed at death unless it sits in the run queue, in which case the run
 * loop frees it when it pops it.
 */
#ifndef KUMO_PROC_INTERNAL_H
#define KUMO_PROC_INTERNAL_H

#include <kumo/dist.h>
#include <kumo/kumo.h>

#include "engine/alloc.h"
#include "engine/engine.h"
#include "engine/log.h"
#include "proc/pid.h"
#include "registry/names.h"

#include <pthread.h>

/*
 * The signal set: what one struct kumo_msg carries (kumo_msg.kind), the
 * process layer's counterpart of Erlang's distribution operations (DOP_*)
 * and Cloud Haskell's ProcessSignal.  Every item addressed to a pid goes
 * through one routing function (kumo__route, proc/route.c): delivered on
 * this node when the pid is local, handed to the node controller
 * (proc/dist/) when it is not.  A signal between one pair of processes
 * keeps its place among the messages between them.
 *
 *   kind           from -> to         aux      payload         effect at `to`
 *   SIG_DATA       sender -> dst      -        bytes           queued in the mailbox
 *   SIG_CHAN       sender -> owner    chan id  bytes           queued on the channel's port
 *   SIG_LINK       linker -> target   -        -               target notes the linker
 *   SIG_UNLINK     linker -> target   -        -               ... and forgets it
 *   SIG_MONITOR    watcher -> target  ref id   -               target notes (watcher, ref)
 *   SIG_DEMONITOR  watcher -> target  ref id   -               ... and forgets it
 *   SIG_EXIT       sender -> dst      -        kumo_exit_msg   exit signal; flag MF_LINK:
 *                                                              it fires a link dst holds
 *   SIG_KILL       sender -> dst      -        kumo_exit_msg   untrappable kill
 *   SIG_DOWN       target -> watcher  ref id   kumo_down_msg   DOWN, if dst still holds ref
 *   SIG_ELINK      linker -> target   -        -               an Erlang link: both now hold it
 *   SIG_EUNLINK    linker -> target   -        -               ... and both forget it
 *   SIG_INFO       asker -> target    ref id   -               target answers with a
 *                                                              kumo.process_info message
 *   (an exit signal that fires an Erlang link has flag MF_ELINK)
 *
 * Between a process and its node's controller (to = {node: the peer}):
 *   SIG_SPAWN_REQ     requester -> node   payload: struct kumo__spawn_req, the closure's
 *                                         name, its argument bytes (crosses as SPAWN)
 *   SIG_MONITOR_NODE   watcher -> node    aux: ref; the controller notes it
 *   SIG_DEMONITOR_NODE watcher -> node    aux: ref; ... and forgets it
 *   SIG_RECONNECT     sender -> receiver  the sender accepts the loss: its
 *                                         later sends to receiver go out again
 *   SIG_REG_REQ       requester -> node   payload: struct kumo__reg_req, name, bytes;
 *                                         aux: ref (crosses as REG; answered with a
 *                                         kumo.reg_reply data message)
 * and back (local):
 *   SIG_SPAWN_REPLY   -> requester        payload: kumo_did_spawn_msg; flags MF_SP_*:
 *                                         the requester now links/monitors the child
 *   SIG_NODE_DOWN     -> watcher          payload: kumo_node_down_msg, if still held
 *
 * Local only (never cross a node):
 *   SIG_SPAWN        -> embryo        payload: its struct kumo_proc *; activates a
 *                                     process spawned from another thread or shard
 *   SIG_INBOX_CLOSE  inbox -> itself  ends the inbox's process
 *
 * An item for a pid that is dead or never existed is answered as Erlang
 * does: SIG_LINK with an unknown-id exit signal, SIG_MONITOR with an
 * unknown-id DOWN, SIG_INFO with "not alive"; everything else is dropped.
 */
enum {
    SIG_DATA = 0,
    SIG_CHAN,
    SIG_SPAWN,
    SIG_LINK,
    SIG_UNLINK,
    SIG_MONITOR,
    SIG_DEMONITOR,
    SIG_EXIT,
    SIG_KILL,
    SIG_DOWN,
    SIG_INBOX_CLOSE,
    SIG_SPAWN_REQ,
    SIG_SPAWN_REPLY,
    SIG_MONITOR_NODE,
    SIG_DEMONITOR_NODE,
    SIG_NODE_DOWN,
    SIG_RECONNECT,
    SIG_REG_REQ,
    SIG_ELINK,
    SIG_EUNLINK,
    SIG_INFO,
};

/* The fixed head of a SIG_REG_REQ payload (a remote registry request);
 * the name and, for KUMO__REG_NSEND, the message's bytes follow. */
enum { KUMO__REG_WHEREIS = 1, KUMO__REG_REGISTER, KUMO__REG_UNREGISTER, KUMO__REG_NSEND };
struct kumo__reg_req {
    kumo_pid pid;  /* KUMO__REG_REGISTER: whom */
    uint64_t type; /* KUMO__REG_NSEND: the message's type */
    uint8_t op;
    uint8_t namelen;
    uint16_t pad;
    uint32_t pad2;
};

/* The fixed head of a SIG_SPAWN_REQ payload; the name and the argument
 * bytes follow. */
struct kumo__spawn_req {
    int32_t shard;
    uint8_t flags; /* MF_SP_* */
    uint8_t namelen;
    uint16_t pad;
};

enum {
    MF_LINK = 1,
    /* SIG_DATA: kumo_usend (ignores the pair's reconnect history) */
    MF_USEND = 2,
    /* SIG_EXIT: fires an Erlang-style link (kumo_erlang_link) */
    MF_ELINK = 4,
    /* SIG_SPAWN_REQ / SIG_SPAWN_REPLY */
    MF_SP_LINK = 1,
    MF_SP_MONITOR = 2,
    MF_SP_TRAP = 4,
    MF_SP_CALL = 8, /* the child answers the requester with kumo_call_return */
};

struct kumo_msg {
    /* First cache line: everything the receiving side reads to match,
     * route and free a message (a mailbox of 250k queued messages is read
     * from memory, one line per message if these all sit here). */
    struct kumo__item link; /* next, in every queue */
    kumo_pid from;
    uint64_t type;
    uint32_t len; /* payload bytes (also the allocation size) */
    uint32_t reserved;
    uint64_t dst_serial;
    uint32_t dst_slot;
    uint16_t dst_shard;
    uint8_t kind;
    uint8_t flags;
    /* Second line: rarely used, then the payload. */
    uint64_t aux; /* channel id, monitor ref */
    _Alignas(8) unsigned char data[];
};

_Static_assert(offsetof(struct kumo_msg, aux) == 64, "routing fields fill the first cache line");

static inline struct kumo_msg *msg_next(const struct kumo_msg *m)
{
    return (struct kumo_msg *)m->link.next;
}

/* Most peer nodes that can be busy at once (beyond: not suspended). */
#define KUMO__BUSY_MAX 64

/* Process flags. */
enum {
    PF_QUEUED = 1u << 0,  /* in the run queue */
    PF_WAITING = 1u << 1, /* has a declared receive and found nothing */
    PF_TRAP = 1u << 2,
    PF_DEAD = 1u << 3,
    PF_EMBRYO = 1u << 4,
    PF_FOREIGN = 1u << 5, /* an inbox */
    PF_INIT = 1u << 6,    /* init not run yet */
    PF_DYING = 1u << 7,   /* kumo_die or a self-kill during a handler */
    PF_RUNNING = 1u << 8, /* inside init or a handler */
    PF_POLL = 1u << 9,    /* declared timeout 0 */
    PF_TIMEDOUT = 1u << 10,
    PF_DECLARED = 1u << 11, /* declared a receive during this callback */
    PF_MSG_TAKEN = 1u << 12,
    PF_DIST = 1u << 14,         /* sent data to another node: the controller
                                   keeps (sender, receiver) pairs for it */
    PF_NODE_COUNTED = 1u << 13, /* spawned from another thread: counted in
                                   node->remote_live for its whole life */
    PF_BUSY = 1u << 15,         /* suspended: sent data to a busy peer node; in its
                                   shard's busy list (linked by rq_next) until the
                                   peer drains (proc/busy.c) */
};

enum {
    W_LINK = 1,
    W_MONITOR = 2,
    W_NODE = 4,  /* pid: {node}, ref */
    W_ELINK = 8, /* an Erlang link: in both processes' watchers and watching */
};

struct watch {
    kumo_pid pid;
    uint64_t ref; /* monitor ref id (0 for links) */
    uint32_t kind;
};

/* See proc/watch.c. */
struct watch_list {
    struct watch *v;
    uint32_t n, cap;
    uint32_t *h; /* index: entry position + 1, 0 = empty; NULL while small */
    uint32_t hcap;
    bool by_watcher; /* a watchers list: monitors keyed by (ref, watcher's node) */
};

/* A receive port, in its owner's list (proc_ext.ports) from creation to
 * close (or the owner's end).  For an inbox the list and the queues are
 * guarded by the inbox's mutex (the inbox's thread and shard 0 both use
 * them). */
struct kumo_recv_port {
    struct kumo_recv_port *next; /* in the owner's list */
    struct kumo_proc *owner;
    uint64_t id; /* channel id; 0 for merged ports */
    uint64_t type;
    uint8_t kind;  /* PORT_CHAN, PORT_BIASED, PORT_RR */
    bool closed;   /* takes nothing, is given nothing; freed when refs is 0 */
    uint32_t refs; /* merged ports that refer to this one */
    uint32_t nchild, rr_next;
    struct kumo_msg *qhead, **qtail;
    struct kumo_recv_port **child;
};

enum { PORT_CHAN = 1, PORT_BIASED, PORT_RR };

/* Rarely needed per-process state, allocated on first use. */
struct proc_ext {
    struct kumo_proc *p;
    struct kumo__timer timer;
    struct watch_list watchers; /* notified when this process ends */
    struct watch_list watching; /* links and monitors this process holds */
    struct kumo_recv_port *ports;
    uint64_t next_chan;
    kumo_reason reason; /* for PF_DYING */
    kumo_recv expect_set;
    kumo_match expect_match;
    struct kumo_inbox *inbox;
    kumo_pid call_to; /* a call's requester, until kumo_call_return (null: none) */
    /* Port monitors held (kumo_monitor_port): monitors of the ports'
     * owners whose DOWN becomes a port-down naming the port. */
    struct port_mon *port_mons;
    uint32_t nport_mons, capport_mons;
};

struct port_mon {
    uint64_t ref;
    kumo_send_port port;
};

/* Removes port monitor `ref` from e, its port in *port (may be NULL);
 * false if e holds none such.  Under the inbox lock for inboxes. */
bool kumo__port_mon_take(struct proc_ext *e, uint64_t ref, kumo_send_port *port);

/* Allocated from the engine's 128-byte block cache (see the static
 * assertion in node.c): spawn and exit are on a hot path too. */
struct kumo_proc {
    struct kumo_proc *rq_next;
    struct kumo_msg *mbox_head;
    struct kumo_msg **mbox_tail;
    struct kumo_msg **cursor; /* scan position of the current wait */
    union {
        const kumo_recv *set; /* current wait */
        kumo_init_fn init;    /* while PF_INIT */
    };
    const kumo_recv *prev_set; /* last set waited on, for resuming the scan */
    void *state;
    kumo_exit_fn on_exit;
    struct proc_ext *ext;
    struct kumo_node *node;
    uint64_t serial;
    uint32_t slot;
    uint16_t shard;
    uint16_t pad;
    uint32_t flags;
};

/* Slot table: chunks of slots, chunk pointers installed once with CAS. */
#define SLOT_CHUNK_BITS 12
#define SLOT_CHUNK (1u << SLOT_CHUNK_BITS)
#define SLOT_MAX_CHUNKS 4096

struct slot {
    _Atomic(struct kumo_proc *) p;
    _Atomic uint64_t serial; /* 0 = free */
    _Atomic int named;       /* a name may point here */
};

/* Per-shard process state (kumo__shard.user). */
struct pshard {
    struct kumo__shard *sh;
    struct kumo_node *node;
    unsigned id;
    bool stopping;
    /* run queue and the shard-local delivery queue */
    struct kumo_proc *rq_head, **rq_tail;
    struct kumo_msg *lq_head, **lq_tail;
    struct kumo_proc *current;
    struct kumo_msg *cur_msg;
    uint64_t serial_next;
    uint64_t ref_next;
    uint64_t slice_end; /* kumo__cycles() at which the run phase yields */
    unsigned rr_next;
    /* slots */
    _Atomic(struct slot *) chunks[SLOT_MAX_CHUNKS];
    _Atomic uint32_t hwm;
    uint32_t *free_local;
    uint32_t nfree_local, capfree_local;
    pthread_mutex_t free_mu; /* guards free_shared (for spawns from elsewhere) */
    uint32_t *free_shared;
    uint32_t nfree_shared, capfree_shared;
    _Atomic uint32_t nfree_shared_hint; /* lets the owner skip the lock */
    /* processes alive on this shard: written by the owner only (plain
     * stores), read by kumo_node_process_count from anywhere */
    _Atomic int64_t live;
    struct kumo_proc *busy_head; /* PF_BUSY processes, linked by rq_next */
    /* The task that resumes them (proc/busy.c): one per shard, posted by
     * the controller when a busy peer drains, unless already on its way. */
    struct kumo__task resume;
    _Atomic bool resume_posted;
};

static inline void pshard_live_add(struct pshard *ps, int64_t d)
{
    atomic_store_explicit(&ps->live, atomic_load_explicit(&ps->live, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

struct kumo_node {
    struct kumo__engine *eng;
    struct pshard **ps;
    unsigned n;
    uint64_t id;
    size_t max_message;
    unsigned budget;
    _Atomic int stopping;
    bool stopped;
    _Atomic uint64_t foreign_serial;
    _Atomic uint64_t foreign_ref;
    _Atomic unsigned foreign_rr;
    _Atomic int64_t inboxes_live;
    /* processes spawned from another thread (counted there, atomically,
     * from spawn to death: moving them to the owner's plain counter at
     * activation let a concurrent kumo_node_process_count miss or double
     * count them) */
    _Atomic int64_t remote_live;
    struct kumo__names names;
    uint64_t type_exit, type_down, type_did_spawn, type_node_down, type_reg_reply, type_port_down,
        type_info;
    /* the remote table (copied from the config) */
    struct kumo_closure *closures;
    unsigned nclosures;
    uint64_t spawn_timeout_ns;
    struct kumo__dist *dist; /* the node controller (proc/dist/), or NULL */
    /* Peer nodes whose link is busy (proc/busy.c): written by the
     * controller on shard 0, read by senders anywhere. */
    size_t dist_busy_bytes;
    _Atomic uint32_t nbusy;
    _Atomic uint64_t busy_ids[KUMO__BUSY_MAX]; /* 0: a free entry */
};

struct kumo_inbox {
    struct kumo_proc proc;
    struct proc_ext ext;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool closed;   /* the process ended (killed, freed or node stopped) */
    bool shutdown; /* ... because the node stopped */
};

/* ---- messages and identities (inline) ---- */

/* An inbox's mailbox and link/monitor lists are shared between shard 0
 * and the inbox's thread: take its mutex around them.  No-op for other
 * processes (their state belongs to their shard alone). */
static inline void kumo__inbox_lock(struct kumo_proc *p)
{
    if (p->flags & PF_FOREIGN)
        pthread_mutex_lock(&((struct kumo_inbox *)p)->mu);
}

static inline void kumo__inbox_unlock(struct kumo_proc *p)
{
    if (p->flags & PF_FOREIGN)
        pthread_mutex_unlock(&((struct kumo_inbox *)p)->mu);
}

/* Storage for a message of `len` payload bytes: a small-block class when
 * it fits, the allocator otherwise (kumo__msg_free mirrors this).  No
 * field is initialised. */
static inline struct kumo_msg *kumo__msg_raw(size_t len)
{
    size_t sz = sizeof(struct kumo_msg) + len;
    int c = kumo__blk_class(sz);
    return c >= 0 ? (struct kumo_msg *)kumo__blk_alloc_class(c)
                  : (struct kumo_msg *)kumo__alloc(sz);
}

/* A message with `len` payload bytes; kind SIG_DATA, no sender. */
static inline struct kumo_msg *kumo__msg_new(size_t len)
{
    struct kumo_msg *m = kumo__msg_raw(len);
    if (!m)
        return NULL;
    m->link.next = NULL;
    m->from = (kumo_pid){0};
    m->aux = 0;
    m->flags = 0;
    m->kind = SIG_DATA;
    m->len = (uint32_t)len;
    m->reserved = 0;
    return m;
}
static inline void kumo__msg_free(struct kumo_msg *m)
{
    size_t sz = sizeof *m + m->len;
    int c = kumo__blk_class(sz);
    if (c >= 0)
        kumo__blk_free_class(m, c);
    else
        kumo__free(m, sz);
}
static inline void msg_set_dst(struct kumo_msg *m, kumo_pid to)
{
    m->dst_serial = to.serial;
    m->dst_slot = to.slot;
    m->dst_shard = to.shard;
}
/* ---- link and monitor lists (proc/watch.c) ---- */
int kumo__watch_add(struct watch_list *l, kumo_pid pid, uint64_t ref, uint32_t kind);
bool kumo__watch_remove(struct watch_list *l, kumo_pid pid, uint64_t ref, uint32_t kind);
/* Position of the entry, or -1.  Monitors are found by ref alone. */
int kumo__watch_find(const struct watch_list *l, kumo_pid pid, uint64_t ref, uint32_t kind);
/* Removes the monitor (kind W_MONITOR) or node monitor (W_NODE) `ref`,
 * telling whom it watched. */
bool kumo__watch_take_ref(struct watch_list *l, uint64_t ref, uint32_t kind, kumo_pid *pid);
void kumo__watch_free(struct watch_list *l);

static inline kumo_pid kumo__pid_of(const struct kumo_proc *p)
{
    return kumo__pid_make(p->node->id, p->serial, p->slot, p->shard);
}

/* Copies a payload; the common tiny sizes without a call to memcpy. */
static inline void kumo__copy(void *dst, const void *src, size_t n)
{
    if (n <= 16 && n >= 8) {
        uint64_t a, b;
        __builtin_memcpy(&a, src, 8);
        __builtin_memcpy(&b, (const char *)src + n - 8, 8);
        __builtin_memcpy(dst, &a, 8);
        __builtin_memcpy((char *)dst + n - 8, &b, 8);
    } else if (n) {
        memcpy(dst, src, n);
    }
}

/* Writes p's pid into *out field by field: building it in a temporary and
 * copying it as words made a store-forwarding stall on the send path. */
static inline void kumo__pid_store(kumo_pid *out, const struct kumo_proc *p)
{
    out->node = p->node->id;
    out->serial = p->serial;
    out->slot = p->slot;
    out->shard = p->shard;
    out->reserved = 0;
}
/* What every send checks first: 0, -KUMO_ETOOBIG or -KUMO_ESHUTDOWN. */
static inline int kumo__check_send(struct kumo_node *node, size_t len)
{
    if (len > node->max_message)
        return -KUMO_ETOOBIG;
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    return 0;
}

/* A message from self to `to` (SIG_DATA, or SIG_CHAN with aux = channel id)
 * of len payload bytes, every header field written once. */
static inline struct kumo_msg *kumo__msg_from(struct kumo_proc *self, kumo_pid to, uint8_t kind,
                                              uint64_t type, uint64_t aux, size_t len)
{
    struct kumo_msg *m = kumo__msg_raw(len);
    if (!m)
        return NULL;
    m->link.next = NULL;
    kumo__pid_store(&m->from, self);
    m->type = type;
    m->aux = aux;
    msg_set_dst(m, to);
    m->kind = kind;
    m->flags = 0;
    m->len = (uint32_t)len;
    m->reserved = 0;
    return m;
}

static inline struct pshard *kumo__pshard_of(struct kumo_proc *self)
{
    if (!self || (self->flags & PF_FOREIGN))
        return NULL;
    return self->node->ps[self->shard];
}

/* ---- the slot table (proc/slots.c) ---- */

static inline struct slot *kumo__slot_at(struct pshard *ps, uint32_t idx)
{
    if (idx >= SLOT_CHUNK * SLOT_MAX_CHUNKS)
        return NULL;
    struct slot *c =
        atomic_load_explicit(&ps->chunks[idx >> SLOT_CHUNK_BITS], memory_order_acquire);
    return c ? &c[idx & (SLOT_CHUNK - 1)] : NULL;
}

/* The live process in (slot, serial) of ps, or NULL.  Any thread may look;
 * only ps's shard may use what it finds (other than inboxes). */
static inline struct kumo_proc *kumo__lookup(struct pshard *ps, uint32_t slot, uint64_t serial)
{
    struct slot *s = kumo__slot_at(ps, slot);
    if (!s || atomic_load_explicit(&s->serial, memory_order_acquire) != serial || serial == 0)
        return NULL;
    return atomic_load_explicit(&s->p, memory_order_relaxed);
}

/* A free slot index of ps: `owner` when called on ps's shard (its private
 * free list), else from the shared list or a new one.  0 or -ENOMEM. */
int kumo__slot_alloc(struct pshard *ps, bool owner, uint32_t *out);
/* Owner only: idx is free again. */
void kumo__slot_release(struct pshard *ps, uint32_t idx);
/* Any thread: a slot taken with owner == false and never published. */
void kumo__slot_give_back(struct pshard *ps, uint32_t idx);
/* Makes p findable at (p->slot, p->serial); clears the named mark. */
void kumo__slot_publish(struct pshard *ps, struct kumo_proc *p);
/* A local pid whose process is alive now (any thread; racy by nature). */
bool kumo__pid_alive(struct kumo_node *node, kumo_pid pid);
/* Notes that a name may point to pid (its death then releases names). */
void kumo__mark_named(struct kumo_node *node, kumo_pid pid);
/* Reserves a slot on shard 0 from the inbox's thread and publishes it. */
int kumo__inbox_publish(struct kumo_node *node, struct kumo_proc *p);

/* ---- process records and death (proc/proc.c) ---- */

/* p's rarely used state, allocated on first use; NULL on -ENOMEM. */
struct proc_ext *kumo__ext(struct kumo_proc *p);
/* Frees p and its ext (not its mailbox). */
void kumo__proc_free(struct kumo_proc *p);
/* Frees a chain of messages linked by link.next. */
void kumo__msg_free_chain(struct kumo_msg *m);
/* A monitor ref id unique in this node incarnation. */
uint64_t kumo__new_ref(struct kumo_node *node, struct kumo_proc *self);
void kumo__reason_set(kumo_reason *r, kumo_reason_kind k, const char *text);
/*
 * Ends p with `why` on its shard: clears its slot, releases its names,
 * notifies its watchers (exit signals to linkers, DOWN to monitors), tells
 * what it watched to forget it, frees its queues, runs on_exit.  Inside one
 * of p's own callbacks the death is deferred to the callback's end.
 */
void kumo__die(struct pshard *ps, struct kumo_proc *p, const kumo_reason *why);

/* ---- routing and posting (proc/route.c) ---- */

/* Answers a SIG_INFO about `about` (p: the process, on this shard; NULL
 * when it is not alive) to `asker`, with request ref `ref` and error `err`
 * (0, or -KUMO_ECONNLOST when `about`'s node could not be reached).  The
 * answer goes as a data message from `about` (proc/info.c). */
void kumo__info_answer(struct kumo_node *node, struct pshard *src, kumo_pid about,
                       struct kumo_proc *p, kumo_pid asker, uint64_t ref, int err);
/* From an inbox's thread: waits up to timeout_ns for the answer message
 * of `type` (len bytes, starting with its kumo_ref) to request `ref`, and
 * copies it to out.  Other messages stay queued.  0 or kumo_inbox_recv's
 * error (proc/inbox.c). */
int kumo__inbox_take_answer(kumo_inbox *ib, uint64_t type, kumo_ref ref, int64_t timeout_ns,
                            void *out, size_t len);
/*
 * The one way an item reaches a pid: `m` (built for `to`, dst fields set)
 * is delivered on this node when to.node is this node, else handed to the
 * node controller (kumo__dist_route).  `src` is the sending shard, or NULL
 * from a thread outside the engine (inboxes).  Takes m in every case.
 */
void kumo__route(struct kumo_node *node, struct pshard *src, kumo_pid to, struct kumo_msg *m);
/* ---- busy peers (proc/busy.c): Erlang's busy distribution port ---- */

/* Whether node `id`'s link is busy (its queue in the controller is over
 * node->dist_busy_bytes).  Any thread. */
static inline bool kumo__node_busy(struct kumo_node *node, uint64_t id)
{
    if (__builtin_expect(!atomic_load_explicit(&node->nbusy, memory_order_relaxed), 1))
        return false;
    for (unsigned i = 0; i < KUMO__BUSY_MAX; i++)
        if (atomic_load_explicit(&node->busy_ids[i], memory_order_acquire) == id)
            return true;
    return false;
}
/* self sent data to busy node `id`: a process is suspended after its
 * current callback (PF_BUSY) until the node drains; an inbox's thread
 * waits here until it has drained (or the node stops). */
void kumo__busy_suspend(struct kumo_node *node, struct kumo_proc *self, uint64_t id);
/* On the controller (shard 0): marks node `id` busy / not busy; the
 * second resumes every suspended process of the node.  Marking fails
 * (false, nothing suspended for it) when KUMO__BUSY_MAX are busy. */
bool kumo__busy_set(struct kumo_node *node, uint64_t id);
void kumo__busy_clear(struct kumo_node *node, struct pshard *src, uint64_t id);
/* On a shard: takes p out of its shard's busy list (p is dying). */
void kumo__busy_unlink(struct pshard *ps, struct kumo_proc *p);

/* kumo__route from `self` (a process or an inbox); data to a busy node
 * suspends a process after the send, an inbox's thread before it. */
static inline void kumo__post(struct kumo_node *node, struct kumo_proc *self, kumo_pid to,
                              struct kumo_msg *m)
{
    if (__builtin_expect(to.node != node->id, 0)) {
        bool data = m->kind == SIG_DATA || m->kind == SIG_CHAN;
        if (!(self->flags & PF_FOREIGN)) {
            self->flags |= PF_DIST; /* (an inbox's flags belong to shard 0) */
        } else if (data && kumo__node_busy(node, to.node)) {
            kumo__busy_suspend(node, self, to.node); /* waits before it sends */
        }
        kumo__route(node, kumo__pshard_of(self), to, m);
        if (data && !(self->flags & PF_FOREIGN) && kumo__node_busy(node, to.node))
            kumo__busy_suspend(node, self, to.node);
        return;
    }
    kumo__route(node, kumo__pshard_of(self), to, m);
}
/* The pid a node's registry monitors other nodes' registered processes
 * as (registry/registry.c): no process has it, so their DOWNs end in
 * kumo__dead_letter, which releases the dead process's names. */
#define KUMO__REGISTRY_SLOT UINT32_MAX
static inline kumo_pid kumo__registry_pid(const struct kumo_node *node)
{
    return (kumo_pid){.node = node->id, .serial = 1, .slot = KUMO__REGISTRY_SLOT, .shard = 0};
}
/* Local delivery: to the dst shard's queue (or the mailbox at once, for
 * data on the sending shard while nothing is queued before it). */
void kumo__post_local(struct kumo_node *node, struct pshard *src, struct kumo_msg *m);
/* An item for a local pid with no process (dead, never existed, or no
 * such shard): SIG_LINK and SIG_MONITOR are answered with unknown-id, the
 * rest dropped.  Takes m.  From any shard (src) or thread (src NULL). */
void kumo__dead_letter(struct kumo_node *node, struct pshard *src, struct kumo_msg *m);
/* Builds and routes a signal with a reason payload (SIG_EXIT, SIG_KILL,
 * SIG_DOWN; aux = the ref for DOWN).  0 or -ENOMEM. */
int kumo__post_reason_from(struct kumo_node *node, struct pshard *src, kumo_pid from, kumo_pid to,
                           uint8_t kind, uint8_t flags, uint64_t aux, const kumo_reason *r);
static inline int kumo__post_reason(struct kumo_node *node, struct kumo_proc *self, kumo_pid from,
                                    kumo_pid to, uint8_t kind, uint8_t flags, uint64_t aux,
                                    const kumo_reason *r)
{
    return kumo__post_reason_from(node, kumo__pshard_of(self), from, to, kind, flags, aux, r);
}

/* ---- delivery (proc/deliver.c) ---- */

/* On the dst shard: applies an item to its local process. */
void kumo__deliver(struct pshard *ps, struct kumo_msg *m);
void kumo__hook_deliver(void *ctx, struct kumo__shard *sh, struct kumo__item *it);

/* ---- run queue, receive, run loop (proc/sched.c) ---- */

void kumo__proc_make_ready(struct pshard *ps, struct kumo_proc *p);
unsigned kumo__hook_run(void *ctx, struct kumo__shard *sh);
void kumo__hook_timer(void *ctx, struct kumo__shard *sh, struct kumo__timer *t);

/* ---- spawn (proc/spawn.c) ---- */

/* A watcher on another node that a spawn links and/or monitors the child
 * to atomically (remote spawn): the child's watchers list gets it before
 * the child can run. */
struct kumo__spawn_watch {
    kumo_pid watcher;
    uint64_t ref;
    bool link, monitor;
};
/* kumo_spawn with the spawning shard given (src: NULL from a thread
 * outside the engine), for the controller; self (or NULL) is who links or
 * monitors through opts; rw may be NULL, and when rw->watcher is self both
 * sides of its link/monitor are set up (self's with ref rw->ref). */
int kumo__spawn(struct kumo_node *node, struct pshard *src, kumo_proc *self,
                const kumo_spawn_opts *opts, kumo_init_fn init, void *state,
                const struct kumo__spawn_watch *rw, kumo_pid *out);

/* ---- channels (proc/chan.c) ---- */
void kumo__chan_deliver(struct kumo_proc *p, struct kumo_msg *m);
struct kumo_msg *kumo__port_take(struct kumo_recv_port *port);
void kumo__ports_free(struct kumo_proc *p);

/* ---- inbox (proc/inbox.c) ---- */
void kumo__inbox_deliver(struct kumo_proc *p, struct kumo_msg *m);
/* The same with the inbox's lock (kumo__inbox_lock) held by the caller. */
void kumo__inbox_deliver_locked(struct kumo_proc *p, struct kumo_msg *m);
/* Wakes the inbox's thread; with its mutex held. */
void kumo__inbox_wake(struct kumo_proc *p);
void kumo__inbox_closed(struct kumo_proc *p, bool shutdown);

#endif
