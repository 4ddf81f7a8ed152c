/*
 * The node controller: everything addressed to a pid of another node.
 *
 * Placement.  The controller is a component of shard 0, not a process: it
 * owns one endpoint per distribution transport (all on shard 0), its peer
 * directory, and the connections.  An item for another node routed on
 * shard 0 reaches it by a call; one routed on another shard or by a thread
 * outside the engine travels to shard 0 as a task through the same FIFO
 * ring (or foreign queue) as that sender's other items, so per-pair order
 * holds.  (Later, lanes: one endpoint per shard, so a shard's processes
 * talk to a peer without the hop; the wire format already names pids
 * without their node, so a lane is only a connection.)
 *
 * Connections.  Traffic from this node to a peer rides one reliable-ordered
 * connection we open (`out`); traffic from the peer rides the one it opens
 * to us.  The first frame on each is a HELLO naming the sender's node id
 * and its addresses.  A node that receives a HELLO from a peer it has no
 * connection to connects back at once, so after one exchange both sides
 * know each other and can answer (DOWN, exit signals) without a dial.
 *
 * Watches.  For each peer the controller keeps every link and monitor that
 * crosses to it: OUT (a local process watches a pid of the peer) and IN (a
 * pid of the peer watches a local process), recorded as the signals pass
 * through and removed by the signals that end them.  When the link to the
 * peer is lost, each OUT watch fires at its local watcher with reason
 * disconnect (an exit signal for a link, a DOWN for a monitor) and each IN
 * watch is dropped from its local target (as if unlinked), with no traffic.
 *
 * Threads: everything here runs on shard 0, except kumo__dist_route's
 * hand-off, kumo__dist_start/stop/free (the thread starting or stopping
 * the node) and kumo_node_connect's wait.
 */
#include "proc/dist/dist.h"

#include "proc/dist/wire.h"
#include "engine/bytes.h"
#include "transport/create.h"

#include <kumo/dist.h>

#include <errno.h>
#include <stdio.h>
#include <time.h>

/* A frame waiting for its connection (a copy). */
struct pend {
    struct pend *next;
    size_t len;
    uint8_t bytes[];
};

enum { W_OUT = 1, W_IN = 2 };

struct dwatch {
    kumo_pid local, remote;
    uint64_t ref; /* monitors; 0 for links */
    uint8_t kind; /* W_LINK, W_MONITOR */
    uint8_t dir;  /* W_OUT, W_IN */
};

enum { OUT_NONE = 0, OUT_CONNECTING, OUT_UP };

/*
 * Disconnect and reconnect (Cloud Haskell's semantics): once a link to a
 * peer is lost, a (sender, receiver) pair that had traffic before the loss
 * stays disconnected, its sends dropped, until the sender calls
 * kumo_reconnect.  A pair that first talks after the loss is not affected.
 * So each peer keeps, per local sender, the receivers it sent to and the
 * link epoch of the first send; the peer's epoch counts its losses.
 */
struct pair_rx {
    kumo_pid to;
    uint64_t epoch;
};

struct pair_sender {
    struct pair_sender *next;
    kumo_pid from;
    uint32_t n, cap;
    struct pair_rx *v;
};

struct pair_tab {
    struct pair_sender **b;
    uint32_t nb, count;
};

struct waiter;
struct pspawn;

struct peer {
    struct peer *next;
    uint64_t id; /* 0 until its HELLO: a peer known by address only */
    uint8_t naddr;
    kumo_address addr[KUMO__DW_MAX_ADDRS];
    int tix;          /* our transport that reaches it (-1: none) */
    kumo_address via; /* its address on that transport */
    uint8_t out;      /* OUT_* */
    uint32_t gen;     /* bumped at each loss: stale connect callbacks */
    kumo_conn conn;
    bool hello_in; /* its HELLO arrived on a connection that is up */
    struct pend *ph, **pt;
    struct dwatch *w; /* links, monitors and node monitors (W_NODE, W_OUT) */
    uint32_t nw, capw;
    struct waiter *waiters;
    struct pspawn *spawns; /* our requests it has not answered */
    uint64_t epoch;        /* links to it lost so far */
    bool ready_wait;       /* a kumo_conn_when_ready is armed on conn */
    /* An old incarnation: its endpoint is not found any more, or a new
     * node spoke from its place.  Kept so its pids are answered (sends
     * dropped, links and monitors unknown-id, node monitors down at once);
     * never connected to again. */
    bool gone;
    struct pair_tab pairs;
    /* The pair pair_open let through last, at link epoch pair_epoch: a
     * stream from one sender to one receiver skips the table. */
    kumo_pid pair_from, pair_to;
    uint64_t pair_epoch;
    /* Bytes queued in ph; over the node's dist_busy_bytes the peer is
     * marked busy (proc/busy.c) until they drop below half of it. */
    size_t pend_bytes, pend_peak;
    bool busy;
};

/* A request we sent a peer and wait the answer of: a remote spawn, a
 * remote registry request, or a process info request (whose answer is a
 * data message from `about`). */
enum { REQ_SPAWN, REQ_REG, REQ_INFO };
struct pspawn {
    struct pspawn *next;
    struct kumo__timer timer;
    struct kumo__dist *d;
    struct peer *p;
    kumo_pid requester;
    kumo_pid about; /* REQ_INFO: the pid asked about */
    uint64_t ref;
    uint8_t flags;
    uint8_t kind; /* REQ_* */
};

static void pspawn_answer(struct kumo__dist *d, struct pspawn *s, int err);

struct in_conn {
    struct in_conn *next;
    struct dist_ep *de;
    uint64_t id;
    struct peer *peer; /* NULL until its HELLO, and again once it is lost */
    bool helloed;
    kumo_address from;
};

struct dist_ep {
    struct kumo__dist *d;
    kumo_transport *t;
    kumo_endpoint *ep;
    kumo_address addr;
    unsigned tix;
};

struct kumo__dist {
    struct kumo_node *node;
    struct pshard *ps; /* shard 0 */
    unsigned n;
    struct dist_ep ep[KUMO_DIST_MAX_TRANSPORTS];
    struct peer *peers;
    struct peer *last; /* the peer found last (peers are never freed before the node) */
    struct in_conn *ins;
    bool stopping;
};

/* Answers a request that will get no answer from its peer. */
static void pspawn_answer(struct kumo__dist *d, struct pspawn *s, int err)
{
    if (s->kind == REQ_SPAWN)
        kumo__spawn_reply(d->node, d->ps, s->requester, s->ref, 0, (kumo_pid){0}, err);
    else if (s->kind == REQ_REG)
        kumo__reg_reply(d->node, d->ps, s->requester, s->ref, (kumo_pid){0}, err);
    else
        kumo__info_answer(d->node, d->ps, s->about, NULL, s->requester, s->ref, err);
}

/* kumo_node_connect's rendezvous: shared by the waiting thread and the
 * controller, freed by whichever lets go last. */
struct waiter {
    struct kumo__task task;
    struct waiter *next;
    struct kumo__dist *d;
    kumo_address addr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int refs;
    bool done;
    int err;
    uint64_t peer;
    kumo_peer_info *peers; /* kumo_node_peers: where to write, and room */
    unsigned max;
};

/* An item handed to shard 0 from elsewhere. */
struct env {
    struct kumo__task task;
    struct kumo__dist *d;
    kumo_pid to;
    struct kumo_msg *m;
};

static void peer_lost(struct kumo__dist *d, struct peer *p, const char *why);
static void peer_gone(struct kumo__dist *d, struct peer *p, const char *why);

/* ------------------------------------------------------------------ */
/* Waiters                                                             */
/* ------------------------------------------------------------------ */

static void waiter_put(struct waiter *w)
{
    if (atomic_fetch_sub(&w->refs, 1) == 1) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        kumo__free(w, sizeof *w);
    }
}

static void waiter_finish(struct waiter *w, int err, uint64_t peer)
{
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->err = err;
    w->peer = peer;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    waiter_put(w);
}

/* A waiter's task on shard 0: the waiter, or NULL when the engine stopped
 * before it ran (the waiter is then finished with -KUMO_ESHUTDOWN). */
static struct waiter *waiter_task(struct kumo__shard *sh, struct kumo__task *t)
{
    struct waiter *w = (struct waiter *)t;
    if (!sh) {
        waiter_finish(w, -KUMO_ESHUTDOWN, 0);
        return NULL;
    }
    return w;
}

/* A peer is connected once both directions are up. */
static void peer_check_waiters(struct peer *p)
{
    if (!(p->hello_in && p->out == OUT_UP && p->id))
        return;
    while (p->waiters) {
        struct waiter *w = p->waiters;
        p->waiters = w->next;
        waiter_finish(w, 0, p->id);
    }
}

static void peer_fail_waiters(struct peer *p, int err)
{
    while (p->waiters) {
        struct waiter *w = p->waiters;
        p->waiters = w->next;
        waiter_finish(w, err, 0);
    }
}

/* ------------------------------------------------------------------ */
/* Peers and watches                                                   */
/* ------------------------------------------------------------------ */

static struct peer *peer_by_id(struct kumo__dist *d, uint64_t id)
{
    if (!id)
        return NULL; /* the null pid's node; peers known by address only have id 0 */
    if (d->last && d->last->id == id)
        return d->last;
    for (struct peer *p = d->peers; p; p = p->next)
        if (p->id == id)
            return d->last = p;
    return NULL;
}

static bool peer_has_addr(const struct peer *p, const kumo_address *a)
{
    if (p->tix >= 0 && kumo_address_eq(&p->via, a))
        return true;
    for (unsigned i = 0; i < p->naddr; i++)
        if (kumo_address_eq(&p->addr[i], a))
            return true;
    return false;
}

static struct peer *peer_by_addr(struct kumo__dist *d, const kumo_address *a)
{
    for (struct peer *p = d->peers; p; p = p->next)
        if (peer_has_addr(p, a))
            return p;
    return NULL;
}

/* A peer dialled by address whose node we do not know yet: at `a`
 * itself, or, when one of the two is a place (an address without
 * incarnation), at the same place. */
static struct peer *anon_peer_by_addr(struct kumo__dist *d, const kumo_address *a)
{
    for (struct peer *p = d->peers; p; p = p->next)
        if (!p->id &&
            (peer_has_addr(p, a) ||
             (p->tix >= 0 && (kumo_address_is_place(&p->via) || kumo_address_is_place(a)) &&
              kumo_address_same_place(&p->via, a))))
            return p;
    return NULL;
}

/* The node known at place `a` (one of its addresses is there), not gone. */
static struct peer *node_at_place(struct kumo__dist *d, const kumo_address *a)
{
    for (struct peer *p = d->peers; p; p = p->next)
        for (unsigned i = 0; p->id && !p->gone && i < p->naddr; i++)
            if (kumo_address_same_place(a, &p->addr[i]))
                return p;
    return NULL;
}

/* Our transport for an address (by its transport tag), or -1. */
static int tix_for(struct kumo__dist *d, const kumo_address *a)
{
    if (a->len < 2)
        return -1;
    for (unsigned i = 0; i < d->n; i++)
        if (d->ep[i].addr.len >= 2 && d->ep[i].addr.bytes[1] == a->bytes[1])
            return (int)i;
    return -1;
}

/* Picks how to reach p: the first of our transports (in configured order)
 * for which p advertised an address. */
static void peer_choose_route(struct kumo__dist *d, struct peer *p)
{
    for (unsigned t = 0; t < d->n; t++)
        for (unsigned i = 0; i < p->naddr; i++)
            if (tix_for(d, &p->addr[i]) == (int)t) {
                p->tix = (int)t;
                p->via = p->addr[i];
                return;
            }
}

static struct peer *peer_new(struct kumo__dist *d, uint64_t id)
{
    struct peer *p = kumo__zalloc(sizeof *p);
    if (!p)
        return NULL;
    p->id = id;
    p->tix = -1;
    p->pt = &p->ph;
    p->next = d->peers;
    d->peers = p;
    return p;
}

static int watch_add(struct peer *p, kumo_pid local, kumo_pid remote, uint64_t ref, uint8_t kind,
                     uint8_t dir)
{
    if (p->nw == p->capw) {
        uint32_t ncap = p->capw ? p->capw * 2 : 8;
        struct dwatch *nv = kumo__alloc(sizeof *nv * ncap);
        if (!nv)
            return -ENOMEM;
        if (p->nw)
            memcpy(nv, p->w, sizeof *nv * p->nw);
        kumo__free(p->w, sizeof *p->w * p->capw);
        p->w = nv;
        p->capw = ncap;
    }
    p->w[p->nw++] =
        (struct dwatch){.local = local, .remote = remote, .ref = ref, .kind = kind, .dir = dir};
    return 0;
}

static void watch_remove(struct peer *p, kumo_pid local, kumo_pid remote, uint64_t ref,
                         uint8_t kind, uint8_t dir)
{
    for (uint32_t i = 0; i < p->nw; i++) {
        struct dwatch *w = &p->w[i];
        if (w->kind == kind && w->dir == dir && w->ref == ref && kumo_pid_eq(w->local, local) &&
            kumo_pid_eq(w->remote, remote)) {
            *w = p->w[--p->nw];
            return;
        }
    }
}

static uint32_t pid_hash(kumo_pid p)
{
    uint64_t k = p.serial ^ (p.node * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)p.slot << 20) ^ p.shard;
    k *= 0xff51afd7ed558ccdull;
    return (uint32_t)(k ^ (k >> 33));
}

static struct pair_sender **pair_slot(struct pair_tab *t, kumo_pid from)
{
    struct pair_sender **pp = &t->b[pid_hash(from) & (t->nb - 1)];
    while (*pp && !kumo_pid_eq((*pp)->from, from))
        pp = &(*pp)->next;
    return pp;
}

static void pair_grow(struct pair_tab *t)
{
    uint32_t nb = t->nb ? t->nb * 2 : 64;
    struct pair_sender **b = kumo__zalloc(sizeof *b * nb);
    if (!b)
        return; /* keep the chains longer */
    for (uint32_t i = 0; i < t->nb; i++)
        while (t->b[i]) {
            struct pair_sender *s = t->b[i];
            t->b[i] = s->next;
            uint32_t h = pid_hash(s->from) & (nb - 1);
            s->next = b[h];
            b[h] = s;
        }
    kumo__free(t->b, sizeof *t->b * t->nb);
    t->b = b;
    t->nb = nb;
}

static bool pair_open_slow(struct peer *p, kumo_pid from, kumo_pid to);

/* Whether `from` may send to `to` on p now (recording a first send). */
static inline __attribute__((always_inline)) bool pair_open(struct peer *p, const kumo_pid *from,
                                                            const kumo_pid *to)
{
    if (p->pair_epoch == p->epoch && kumo__pid_eq_p(from, &p->pair_from) &&
        kumo__pid_eq_p(to, &p->pair_to))
        return true;
    if (!pair_open_slow(p, *from, *to))
        return false;
    p->pair_from = *from;
    p->pair_to = *to;
    p->pair_epoch = p->epoch;
    return true;
}

static bool pair_open_slow(struct peer *p, kumo_pid from, kumo_pid to)
{
    struct pair_tab *t = &p->pairs;
    if (t->count >= t->nb)
        pair_grow(t);
    if (!t->nb)
        return true; /* no memory to remember: let it through */
    struct pair_sender **pp = pair_slot(t, from);
    struct pair_sender *s = *pp;
    if (!s) {
        s = kumo__zalloc(sizeof *s);
        if (!s)
            return true;
        s->from = from;
        *pp = s;
        t->count++;
    }
    for (uint32_t i = 0; i < s->n; i++)
        if (kumo_pid_eq(s->v[i].to, to))
            return s->v[i].epoch == p->epoch;
    if (s->n == s->cap) {
        uint32_t ncap = s->cap ? s->cap * 2 : 4;
        struct pair_rx *nv = kumo__alloc(sizeof *nv * ncap);
        if (!nv)
            return true;
        if (s->n)
            memcpy(nv, s->v, sizeof *nv * s->n);
        kumo__free(s->v, sizeof *s->v * s->cap);
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->n++] = (struct pair_rx){.to = to, .epoch = p->epoch};
    return true;
}

static void pair_sender_free(struct pair_tab *t, struct pair_sender **pp)
{
    struct pair_sender *s = *pp;
    *pp = s->next;
    kumo__free(s->v, sizeof *s->v * s->cap);
    kumo__free(s, sizeof *s);
    t->count--;
}

/* kumo_reconnect: the pair starts afresh. */
static void pair_reset(struct peer *p, kumo_pid from, kumo_pid to)
{
    p->pair_from = p->pair_to = (kumo_pid){0};
    if (!p->pairs.nb)
        return;
    struct pair_sender **pp = pair_slot(&p->pairs, from);
    struct pair_sender *s = *pp;
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n; i++)
        if (kumo_pid_eq(s->v[i].to, to)) {
            s->v[i] = s->v[--s->n];
            break;
        }
    if (!s->n)
        pair_sender_free(&p->pairs, pp);
}

static void pair_forget_sender(struct peer *p, kumo_pid from)
{
    p->pair_from = p->pair_to = (kumo_pid){0};
    if (!p->pairs.nb)
        return;
    struct pair_sender **pp = pair_slot(&p->pairs, from);
    if (*pp)
        pair_sender_free(&p->pairs, pp);
}

static void pair_tab_free(struct pair_tab *t)
{
    for (uint32_t i = 0; i < t->nb; i++)
        while (t->b[i])
            pair_sender_free(t, &t->b[i]);
    kumo__free(t->b, sizeof *t->b * t->nb);
    *t = (struct pair_tab){0};
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */
/* ------------------------------------------------------------------ */

/* The queue for p shrank: below half the limit, a busy p is not busy any
 * more and the processes it suspended run again. */
static void pend_shrunk(struct kumo__dist *d, struct peer *p)
{
    if (p->busy && p->pend_bytes <= d->node->dist_busy_bytes / 2) {
        p->busy = false;
        kumo__busy_clear(d->node, d->ps, p->id);
    }
}

static void free_pend(struct kumo__dist *d, struct peer *p)
{
    while (p->ph) {
        struct pend *q = p->ph;
        p->ph = q->next;
        kumo__free(q, sizeof *q + q->len);
    }
    p->pt = &p->ph;
    p->pend_bytes = 0;
    pend_shrunk(d, p);
}

static size_t iov_total(const struct iovec *iov, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    return len;
}

static int pend_add(struct kumo__dist *d, struct peer *p, const struct iovec *iov, int n)
{
    size_t len = iov_total(iov, n);
    struct pend *q = kumo__alloc(sizeof *q + len);
    if (!q)
        return -ENOMEM;
    q->next = NULL;
    q->len = len;
    kumo__iov_gather(q->bytes, iov, n);
    *p->pt = q;
    p->pt = &q->next;
    p->pend_bytes += len;
    if (p->pend_bytes > p->pend_peak)
        p->pend_peak = p->pend_bytes;
    if (!p->busy && p->id && p->pend_bytes > d->node->dist_busy_bytes)
        p->busy = kumo__busy_set(d->node, p->id);
    return 0;
}

static void peer_out_up(struct kumo__dist *d, struct peer *p);

static void connect_done(kumo_endpoint *ep, kumo_conn conn, int err, void *arg);

struct connect_arg {
    struct kumo__dist *d;
    struct peer *p;
    uint32_t gen;
};

static void peer_connect(struct kumo__dist *d, struct peer *p)
{
    if (p->out != OUT_NONE || p->tix < 0 || p->gone)
        return;
    struct connect_arg *ca = kumo__alloc(sizeof *ca);
    if (!ca)
        return;
    *ca = (struct connect_arg){.d = d, .p = p, .gen = p->gen};
    kumo_hints h = {.priority = KUMO_HINT_LATENCY, .class_name = "kumo.dist"};
    int err = kumo_connect(d->ep[p->tix].ep, &p->via, KUMO_RELIABLE_ORDERED, &h, connect_done, ca);
    if (err) {
        kumo__free(ca, sizeof *ca);
        kumo__log(KUMO_LOG_WARN, "dist: connect to node %016llx failed at once: %s",
                  (unsigned long long)p->id, kumo_strerror(err));
        return;
    }
    p->out = OUT_CONNECTING;
}

static void flush_pend(struct kumo__dist *d, struct peer *p);

struct ready_arg {
    struct kumo__dist *d;
    struct peer *p;
    uint32_t gen;
};

static void on_ready(kumo_conn c, int err, void *arg)
{
    struct ready_arg *ra = arg;
    struct peer *p = ra->p;
    struct kumo__dist *d = ra->d;
    bool current = ra->gen == p->gen;
    kumo__free(ra, sizeof *ra);
    (void)c;
    if (!current)
        return;
    p->ready_wait = false;
    if (err == 0 && p->out == OUT_UP && !d->stopping)
        flush_pend(d, p); /* re-arms if the link fills up again */
}

/* The link is busy: flush what is queued once it drains. */
static void wait_ready(struct kumo__dist *d, struct peer *p)
{
    if (p->ready_wait)
        return;
    struct ready_arg *ra = kumo__alloc(sizeof *ra);
    if (!ra)
        return; /* the next send retries */
    *ra = (struct ready_arg){.d = d, .p = p, .gen = p->gen};
    if (kumo_conn_when_ready(p->conn, on_ready, ra)) {
        kumo__free(ra, sizeof *ra);
        return;
    }
    p->ready_wait = true;
}

/* Sends one frame to p: at once when its connection is up, else queued
 * behind the connect (started here if needed) or behind a busy link. */
static void peer_send(struct kumo__dist *d, struct peer *p, const struct iovec *iov, int n)
{
    if (p->out == OUT_UP && !p->ph) {
        int err = kumo_conn_send(p->conn, iov, n, NULL, NULL);
        if (err == 0)
            return;
        if (err != -KUMO_EBUSY) {
            peer_lost(d, p, kumo_strerror(err));
            return;
        }
        /* busy: queue it (past dist_busy_bytes its senders are suspended:
         * proc/busy.c) */
    }
    if (pend_add(d, p, iov, n) != 0)
        return;
    if (p->out == OUT_NONE)
        peer_connect(d, p);
    else if (p->out == OUT_UP)
        wait_ready(d, p);
}

static void flush_pend(struct kumo__dist *d, struct peer *p)
{
    while (p->ph && p->out == OUT_UP) {
        struct pend *q = p->ph;
        struct iovec v = {q->bytes, q->len};
        int err = kumo_conn_send(p->conn, &v, 1, NULL, NULL);
        if (err == -KUMO_EBUSY) {
            wait_ready(d, p); /* stays queued until the link drains */
            pend_shrunk(d, p);
            return;
        }
        p->ph = q->next;
        if (!p->ph)
            p->pt = &p->ph;
        p->pend_bytes -= q->len;
        kumo__free(q, sizeof *q + q->len);
        if (err) {
            peer_lost(d, p, kumo_strerror(err));
            return;
        }
    }
    pend_shrunk(d, p);
}

static void send_hello(struct kumo__dist *d, struct peer *p)
{
    uint8_t buf[KUMO__DW_HELLO_MAX];
    kumo_address addrs[KUMO__DW_MAX_ADDRS];
    for (unsigned i = 0; i < d->n; i++)
        addrs[i] = d->ep[i].addr;
    size_t len = kumo__dw_hello(buf, KUMO__DW_HELLO, d->node->id, p->id, addrs, d->n);
    struct iovec v = {buf, len};
    int err = kumo_conn_send(p->conn, &v, 1, NULL, NULL);
    if (err)
        peer_lost(d, p, kumo_strerror(err));
}

/* Tells `to` where node `x` is (a DIR frame), unless it is `to` itself. */
static void send_dir(struct kumo__dist *d, struct peer *to, const struct peer *x)
{
    if (x == to || !x->id || !x->naddr || x->id == to->id)
        return;
    uint8_t buf[KUMO__DW_HELLO_MAX];
    size_t len = kumo__dw_hello(buf, KUMO__DW_DIR, x->id, 0, x->addr, x->naddr);
    struct iovec v = {buf, len};
    peer_send(d, to, &v, 1);
}

/* A node this one just learned of: every peer we talk to hears of it
 * before anything we send it later, so a pid of `x` that travels from here
 * in a payload arrives after x's addresses (docs/architecture.md §5). */
static void announce(struct kumo__dist *d, const struct peer *x)
{
    for (struct peer *p = d->peers; p; p = p->next)
        if (p != x && p->id && p->out != OUT_NONE)
            send_dir(d, p, x);
}

static void connect_done(kumo_endpoint *ep, kumo_conn conn, int err, void *arg)
{
    (void)ep;
    struct connect_arg *ca = arg;
    struct kumo__dist *d = ca->d;
    struct peer *p = ca->p;
    bool stale = ca->gen != p->gen || p->out != OUT_CONNECTING || d->stopping;
    kumo__free(ca, sizeof *ca);
    if (stale) {
        if (!err)
            kumo_conn_close(conn);
        return;
    }
    if (err) {
        char ab[128];
        kumo__log(KUMO_LOG_WARN, "dist: cannot connect to %s: %s",
                  kumo_address_str(&p->via, ab, sizeof ab), kumo_strerror(err));
        peer_fail_waiters(p, err);
        if (err == -KUMO_ENOTFOUND && p->id) {
            /* No endpoint of that incarnation exists there any more, and
             * none ever will: the node is gone for good. */
            peer_gone(d, p, "its endpoint is not found: stopped, or restarted");
            return;
        }
        /* What waited for this connection is lost, as on a broken link. */
        peer_lost(d, p, kumo_strerror(err));
        return;
    }
    p->out = OUT_UP;
    p->conn = conn;
    send_hello(d, p);
    peer_out_up(d, p);
}

/* p's connection is up and carried our HELLO: everything we know of goes
 * first, then whatever waited for the link. */
static void peer_out_up(struct kumo__dist *d, struct peer *p)
{
    if (p->out == OUT_UP && p->id) {
        struct pend *queued = p->ph;
        struct pend **qtail = p->pt;
        p->ph = NULL;
        p->pt = &p->ph;
        for (struct peer *x = d->peers; x && p->out == OUT_UP; x = x->next)
            send_dir(d, p, x);
        if (queued && p->out != OUT_UP) {
            /* lost while announcing: what waited is lost with the link */
            p->ph = queued;
            p->pt = qtail;
            free_pend(d, p);
        } else if (queued) {
            *p->pt = queued;
            p->pt = qtail;
        }
    }
    if (p->out == OUT_UP)
        flush_pend(d, p);
    peer_check_waiters(p);
}

/* ------------------------------------------------------------------ */
/* Pending spawns                                                      */
/* ------------------------------------------------------------------ */

static void pspawn_unlink(struct pspawn *s)
{
    for (struct pspawn **pp = &s->p->spawns; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

static void pspawn_timeout(struct kumo__shard *sh, struct kumo__timer *t)
{
    (void)sh;
    struct pspawn *s = (struct pspawn *)((char *)t - offsetof(struct pspawn, timer));
    struct kumo__dist *d = s->d;
    pspawn_unlink(s);
    kumo__log(KUMO_LOG_WARN, "dist: %s request to node %016llx got no answer in time",
              s->kind == REQ_SPAWN ? "spawn"
              : s->kind == REQ_REG ? "registry"
                                   : "process info",
              (unsigned long long)s->p->id);
    pspawn_answer(d, s, -KUMO_ETIMEOUT);
    kumo__free(s, sizeof *s);
}

static struct pspawn *pspawn_take(struct peer *p, kumo_pid requester, uint64_t ref)
{
    for (struct pspawn **pp = &p->spawns; *pp; pp = &(*pp)->next) {
        struct pspawn *s = *pp;
        if (s->ref == ref && kumo_pid_eq(s->requester, requester)) {
            *pp = s->next;
            kumo__timer_cancel(&s->d->ps->sh->timers, &s->timer);
            return s;
        }
    }
    return NULL;
}

/* Every spawn still waiting on p fails with err (no timer fires later). */
static void pspawn_fail_all(struct kumo__dist *d, struct peer *p, int err, bool reply)
{
    while (p->spawns) {
        struct pspawn *s = p->spawns;
        p->spawns = s->next;
        kumo__timer_cancel(&d->ps->sh->timers, &s->timer);
        if (reply)
            pspawn_answer(d, s, err);
        kumo__free(s, sizeof *s);
    }
}

/* ------------------------------------------------------------------ */
/* Loss                                                                */
/* ------------------------------------------------------------------ */

/* The link to p is lost: everything that crossed it fires with `kind`
 * (disconnect; unknown-id for watches an old incarnation never got). */
static void peer_lost_as(struct kumo__dist *d, struct peer *p, const char *why,
                         kumo_reason_kind kind)
{
    struct kumo_node *node = d->node;
    if (p->out != OUT_NONE || p->hello_in || p->nw || p->spawns)
        kumo__log(KUMO_LOG_INFO, "dist: link to node %016llx lost (%s): %u links/monitors fire",
                  (unsigned long long)p->id, why, (unsigned)p->nw);
    if (p->out == OUT_UP)
        kumo_conn_close(p->conn);
    p->out = OUT_NONE;
    p->conn = (kumo_conn){0};
    p->hello_in = false;
    p->ready_wait = false;
    p->gen++;
    p->epoch++; /* every pair that talked so far is now disconnected */
    free_pend(d, p);
    for (struct in_conn *in = d->ins; in; in = in->next)
        if (in->peer == p)
            in->peer = NULL; /* whatever still arrives on it is ignored */
    kumo_reason r;
    kumo__reason_set(&r, kind, NULL);
    /* Take the list first: posting may route back here. */
    struct dwatch *w = p->w;
    uint32_t nw = p->nw;
    uint32_t capw = p->capw;
    p->w = NULL;
    p->nw = p->capw = 0;
    for (uint32_t i = 0; i < nw; i++) {
        struct dwatch *x = &w[i];
        if (x->kind == W_NODE) {
            kumo__node_down(node, d->ps, x->local, x->ref, p->id);
        } else if (x->kind == W_ELINK) {
            kumo__post_reason_from(node, d->ps, x->remote, x->local, SIG_EXIT, MF_ELINK, 0, &r);
        } else if (x->dir == W_OUT) {
            if (x->kind == W_LINK)
                kumo__post_reason_from(node, d->ps, x->remote, x->local, SIG_EXIT, MF_LINK, 0, &r);
            else
                kumo__post_reason_from(node, d->ps, x->remote, x->local, SIG_DOWN, 0, x->ref, &r);
        } else {
            struct kumo_msg *m = kumo__msg_new(0);
            if (!m)
                continue;
            m->kind = x->kind == W_LINK ? SIG_UNLINK : SIG_DEMONITOR;
            m->aux = x->ref;
            m->from = x->remote;
            msg_set_dst(m, x->local);
            kumo__post_local(node, d->ps, m);
        }
    }
    kumo__free(w, sizeof *w * capw);
    pspawn_fail_all(d, p, -KUMO_ECONNLOST, true);
    peer_fail_waiters(p, -KUMO_ECONNLOST);
}

static void peer_lost(struct kumo__dist *d, struct peer *p, const char *why)
{
    peer_lost_as(d, p, why, KUMO_DISCONNECT);
}

/* p is an old incarnation.  What crossed a link that was up fires with
 * disconnect (it is declared lost first: Erlang's rule for a new
 * incarnation); what waited for a connection never reached p, so it fires
 * with unknown-id. */
static void peer_gone(struct kumo__dist *d, struct peer *p, const char *why)
{
    if (p->gone)
        return;
    kumo__log(KUMO_LOG_WARN, "dist: node %016llx is gone (%s): its pids are dead from now on",
              (unsigned long long)p->id, why);
    peer_lost_as(d, p, why, p->out == OUT_UP ? KUMO_DISCONNECT : KUMO_UNKNOWN_ID);
    p->gone = true;
}

/* ------------------------------------------------------------------ */
/* Outgoing items                                                      */
/* ------------------------------------------------------------------ */

/* The signals that cross as frames of their own, and their ops. */
static const struct {
    uint8_t kind, op;
} signal_ops[] = {
    {SIG_LINK, KUMO__DW_LINK},       {SIG_UNLINK, KUMO__DW_UNLINK},
    {SIG_MONITOR, KUMO__DW_MONITOR}, {SIG_DEMONITOR, KUMO__DW_DEMONITOR},
    {SIG_EXIT, KUMO__DW_EXIT},       {SIG_KILL, KUMO__DW_KILL},
    {SIG_DOWN, KUMO__DW_DOWN},       {SIG_ELINK, KUMO__DW_ELINK},
    {SIG_EUNLINK, KUMO__DW_EUNLINK}, {SIG_INFO, KUMO__DW_INFO},
};

static uint8_t wire_op(uint8_t kind)
{
    for (unsigned i = 0; i < sizeof signal_ops / sizeof signal_ops[0]; i++)
        if (signal_ops[i].kind == kind)
            return signal_ops[i].op;
    return 0;
}

static uint8_t signal_kind(uint8_t op)
{
    for (unsigned i = 0; i < sizeof signal_ops / sizeof signal_ops[0]; i++)
        if (signal_ops[i].op == op)
            return signal_ops[i].kind;
    return 0;
}

/*
 * The watches a signal between local process `local` and remote pid
 * `remote` starts or ends, whichever way it crosses (`sent`: local ->
 * remote).  A link or monitor signal comes from its watcher, so the
 * watcher is the local side when it is sent (OUT) and the remote one when
 * it is received (IN); an exit signal that fires a link, and a DOWN, come
 * from the target, the other way round.  An Erlang link is one OUT entry
 * whichever end made it.  Returns -ENOMEM if a watch could not be added.
 */
static int track(struct peer *p, uint8_t kind, uint8_t flags, kumo_pid local, kumo_pid remote,
                 uint64_t ref, bool sent)
{
    uint8_t local_watches = sent ? W_OUT : W_IN;
    uint8_t local_is_watched = sent ? W_IN : W_OUT;
    switch (kind) {
    case SIG_LINK:
        return watch_add(p, local, remote, 0, W_LINK, local_watches);
    case SIG_UNLINK:
        watch_remove(p, local, remote, 0, W_LINK, local_watches);
        break;
    case SIG_MONITOR:
        return watch_add(p, local, remote, ref, W_MONITOR, local_watches);
    case SIG_DEMONITOR:
        watch_remove(p, local, remote, ref, W_MONITOR, local_watches);
        break;
    case SIG_EXIT:
        if (flags & MF_LINK)
            watch_remove(p, local, remote, 0, W_LINK, local_is_watched);
        if (flags & MF_ELINK)
            watch_remove(p, local, remote, 0, W_ELINK, W_OUT);
        break;
    case SIG_DOWN:
        watch_remove(p, local, remote, ref, W_MONITOR, local_is_watched);
        break;
    case SIG_ELINK:
        watch_remove(p, local, remote, 0, W_ELINK, W_OUT);
        return watch_add(p, local, remote, 0, W_ELINK, W_OUT);
    case SIG_EUNLINK:
        watch_remove(p, local, remote, 0, W_ELINK, W_OUT);
        break;
    }
    return 0;
}

/* An item for a node that cannot be reached: answered as the loss of the
 * link would answer it. */
/* Answers an item for a node we cannot reach (kind disconnect) or an old
 * incarnation's pid (unknown-id). */
static void unreachable_as(struct kumo__dist *d, kumo_pid to, struct kumo_msg *m,
                           kumo_reason_kind kind)
{
    if (m->kind == SIG_SPAWN_REQ)
        kumo__spawn_reply(d->node, d->ps, m->from, m->aux, 0, (kumo_pid){0}, -KUMO_ECONNLOST);
    else if (m->kind == SIG_REG_REQ &&
             ((const struct kumo__reg_req *)m->data)->op != KUMO__REG_NSEND)
        kumo__reg_reply(d->node, d->ps, m->from, m->aux, (kumo_pid){0}, -KUMO_ECONNLOST);
    else if (m->kind == SIG_MONITOR_NODE)
        kumo__node_down(d->node, d->ps, m->from, m->aux, to.node);
    else if (m->kind == SIG_INFO)
        kumo__info_answer(d->node, d->ps, to, NULL, m->from, m->aux,
                          kind == KUMO_DISCONNECT ? -KUMO_ECONNLOST : 0);
    if (m->kind == SIG_ELINK) {
        kumo_reason r;
        kumo__reason_set(&r, kind, NULL);
        kumo__post_reason_from(d->node, d->ps, to, m->from, SIG_EXIT, MF_ELINK, 0, &r);
    }
    if (m->kind == SIG_LINK || m->kind == SIG_MONITOR) {
        kumo_reason r;
        kumo__reason_set(&r, kind, NULL);
        bool link = m->kind == SIG_LINK;
        kumo__post_reason_from(d->node, d->ps, to, m->from, link ? SIG_EXIT : SIG_DOWN,
                               link ? MF_LINK : 0, m->aux, &r);
    }
    kumo__msg_free(m);
}

static void unreachable(struct kumo__dist *d, kumo_pid to, struct kumo_msg *m)
{
    unreachable_as(d, to, m, KUMO_DISCONNECT);
}

/*
 * A large message is lent to the transport instead of copied into its
 * send queue: the frame's header goes in a small block with the message,
 * and both are freed when the transport is done with the payload (the
 * transport's release may run on any thread; messages are freed from any
 * shard already).  Small ones are cheaper to copy into the batch.
 */
#define LEND_MIN 4096u

struct lend {
    struct kumo_msg *m;
    uint8_t hdr[KUMO__DW_CHAN_HDR];
};

static void lend_release(void *arg)
{
    struct lend *l = arg;
    kumo__msg_free(l->m);
    kumo__free(l, sizeof *l);
}

/* True when m went out lent (it is the transport's now). */
static bool send_lent(struct peer *p, kumo_pid to, struct kumo_msg *m)
{
    struct lend *l = kumo__alloc(sizeof *l);
    if (!l)
        return false;
    l->m = m;
    size_t hl = kumo__dw_data_hdr(l->hdr, &to, &m->from, m->type, m->kind == SIG_CHAN ? m->aux : 0);
    struct iovec v[2] = {{l->hdr, hl}, {m->data, m->len}};
    if (kumo_conn_send(p->conn, v, 2, lend_release, l) == 0)
        return true;
    kumo__free(l, sizeof *l); /* busy or failed: the copying path decides */
    return false;
}

/* A SIG_SPAWN_REQ for peer p: remembered until answered (or timed out),
 * sent as a SPAWN frame. */
/* Remembers a request to p until its answer (or its deadline, or the
 * loss of the link); false (after answering -ENOMEM) if it cannot. */
static bool pending_add(struct kumo__dist *d, struct peer *p, kumo_pid requester, uint64_t ref,
                        uint8_t flags, uint8_t kind)
{
    struct pspawn *s = kumo__zalloc(sizeof *s);
    if (s) {
        s->d = d;
        s->p = p;
        s->requester = requester;
        s->ref = ref;
        s->flags = flags;
        s->kind = kind;
        kumo__timer_init(&s->timer);
        s->timer.fn = pspawn_timeout;
        if (kumo__timer_arm(&d->ps->sh->timers, &s->timer,
                            kumo__now_ns() + d->node->spawn_timeout_ns) == 0) {
            s->next = p->spawns;
            p->spawns = s;
            return true;
        }
        kumo__free(s, sizeof *s);
    }
    struct pspawn tmp = {.requester = requester, .ref = ref, .kind = kind};
    pspawn_answer(d, &tmp, -ENOMEM);
    return false;
}

static void spawn_out(struct kumo__dist *d, struct peer *p, struct kumo_msg *m)
{
    const struct kumo__spawn_req *h = (const struct kumo__spawn_req *)m->data;
    if (!pending_add(d, p, m->from, m->aux, h->flags, REQ_SPAWN)) {
        kumo__msg_free(m);
        return;
    }
    const char *name = (const char *)m->data + sizeof *h;
    size_t args = m->len - sizeof *h - h->namelen;
    uint8_t hdr[KUMO__DW_SPAWN_HDR_MAX];
    size_t hl = kumo__dw_spawn_hdr(hdr, m->from, m->aux, h->shard, h->flags, name, h->namelen);
    struct iovec v[2] = {{hdr, hl}, {(uint8_t *)name + h->namelen, args}};
    peer_send(d, p, v, args ? 2 : 1);
    kumo__msg_free(m);
}

/* A SIG_REG_REQ for peer p, sent as a REG frame (an NSEND gets no
 * answer, so it is not remembered). */
static void reg_out(struct kumo__dist *d, struct peer *p, struct kumo_msg *m)
{
    const struct kumo__reg_req *h = (const struct kumo__reg_req *)m->data;
    if (h->op != KUMO__REG_NSEND && !pending_add(d, p, m->from, m->aux, 0, REQ_REG)) {
        kumo__msg_free(m);
        return;
    }
    const char *name = (const char *)m->data + sizeof *h;
    size_t bytes = m->len - sizeof *h - h->namelen;
    uint8_t hdr[KUMO__DW_REG_HDR_MAX];
    size_t hl = kumo__dw_reg_hdr(hdr, h->op, h->pid, m->from, m->aux, h->type, name, h->namelen);
    struct iovec v[2] = {{hdr, hl}, {(uint8_t *)name + h->namelen, bytes}};
    peer_send(d, p, v, bytes ? 2 : 1);
    kumo__msg_free(m);
}

/* On shard 0: an item for `to` on another node. */
static void dist_out(struct kumo__dist *d, kumo_pid to, struct kumo_msg *m)
{
    struct peer *p = d->stopping ? NULL : peer_by_id(d, to.node);
    if (!p || p->tix < 0) {
        unreachable(d, to, m);
        return;
    }
    if (p->gone) {
        unreachable_as(d, to, m, KUMO_UNKNOWN_ID); /* sends are dropped */
        return;
    }
    kumo_pid from = m->from;
    if (m->kind == SIG_RECONNECT) {
        pair_reset(p, from, to);
        kumo__msg_free(m);
        return;
    }
    if (m->kind == SIG_DATA || m->kind == SIG_CHAN) {
        if (!(m->flags & MF_USEND) && !pair_open(p, &from, &to)) {
            kumo__msg_free(m); /* disconnected until kumo_reconnect */
            return;
        }
        if (m->len >= LEND_MIN && p->out == OUT_UP && !p->ph && send_lent(p, to, m))
            return;
        uint8_t hdr[KUMO__DW_CHAN_HDR];
        size_t hl = kumo__dw_data_hdr(hdr, &to, &from, m->type, m->kind == SIG_CHAN ? m->aux : 0);
        struct iovec v[2] = {{hdr, hl}, {m->data, m->len}};
        peer_send(d, p, v, m->len ? 2 : 1);
        kumo__msg_free(m);
        return;
    }
    if (m->kind == SIG_SPAWN_REQ) {
        spawn_out(d, p, m);
        return;
    }
    if (m->kind == SIG_REG_REQ) {
        reg_out(d, p, m);
        return;
    }
    if (m->kind == SIG_MONITOR_NODE) {
        kumo_pid node_pid = {.node = p->id};
        if (watch_add(p, from, node_pid, m->aux, W_NODE, W_OUT)) {
            unreachable(d, to, m);
            return;
        }
        if (p->out == OUT_NONE)
            peer_connect(d, p);
        kumo__msg_free(m);
        return;
    }
    if (m->kind == SIG_DEMONITOR_NODE) {
        watch_remove(p, from, (kumo_pid){.node = p->id}, m->aux, W_NODE, W_OUT);
        kumo__msg_free(m);
        return;
    }
    uint8_t op = wire_op(m->kind);
    if (!op) {
        kumo__log(KUMO_LOG_ERROR, "dist: item of kind %u cannot cross nodes", m->kind);
        kumo__msg_free(m);
        return;
    }
    if (m->kind == SIG_INFO) {
        /* answered exactly once: by `to`, or here if the link goes first */
        if (!pending_add(d, p, from, m->aux, 0, REQ_INFO)) {
            kumo__msg_free(m);
            return;
        }
        p->spawns->about = to;
    }
    const kumo_reason *r = NULL;
    uint64_t ref = m->aux;
    if (m->kind == SIG_EXIT || m->kind == SIG_KILL)
        r = &((kumo_exit_msg *)m->data)->reason;
    else if (m->kind == SIG_DOWN)
        r = &((kumo_down_msg *)m->data)->reason;
    if (track(p, m->kind, m->flags, from, to, ref, true)) {
        unreachable(d, to, m); /* no memory to track it: fire it now */
        return;
    }
    uint8_t buf[KUMO__DW_SIGNAL_MAX];
    uint16_t wflags = ((m->flags & MF_LINK) ? KUMO__DW_F_LINK : 0) |
                      ((m->flags & MF_ELINK) ? KUMO__DW_F_ELINK : 0);
    size_t len = kumo__dw_signal(buf, op, wflags, to, from, ref, r);
    struct iovec v = {buf, len};
    peer_send(d, p, &v, 1);
    kumo__msg_free(m);
}

bool kumo__dist_send_direct(struct kumo_node *node, const kumo_pid *from, const kumo_pid *to,
                            uint64_t type, const void *data, size_t len, uint8_t flags)
{
    struct kumo__dist *d = node->dist;
    if (len >= LEND_MIN || d->stopping)
        return false;
    struct peer *p = peer_by_id(d, to->node);
    if (!p || p->tix < 0 || p->gone || p->out != OUT_UP || p->ph)
        return false; /* the item's path knows what to do */
    if (!(flags & MF_USEND) && !pair_open(p, from, to))
        return true; /* disconnected until kumo_reconnect: dropped */
    uint8_t hdr[KUMO__DW_CHAN_HDR];
    size_t hl = kumo__dw_data_hdr(hdr, to, from, type, 0);
    struct iovec v[2] = {{hdr, hl}, {(void *)data, len}};
    peer_send(d, p, v, len ? 2 : 1);
    return true;
}

static void env_run(struct kumo__shard *sh, struct kumo__task *t)
{
    struct env *e = (struct env *)t;
    if (sh)
        dist_out(e->d, e->to, e->m);
    else
        kumo__msg_free(e->m);
    kumo__free(e, sizeof *e);
}

void kumo__dist_route(struct kumo_node *node, struct pshard *src, kumo_pid to, struct kumo_msg *m)
{
    struct kumo__dist *d = node->dist;
    if (!d || to.node == 0) {
        /* No controller: another node cannot be reached (disconnect, as
         * for a node the controller cannot reach).  And the null pid
         * (node 0) is no process anywhere (unknown-id). */
        if (m->kind == SIG_LINK || m->kind == SIG_MONITOR || m->kind == SIG_ELINK) {
            kumo_reason r;
            kumo__reason_set(&r, to.node ? KUMO_DISCONNECT : KUMO_UNKNOWN_ID, NULL);
            uint8_t kind = m->kind == SIG_MONITOR ? SIG_DOWN : SIG_EXIT;
            uint8_t flags = m->kind == SIG_LINK ? MF_LINK : m->kind == SIG_ELINK ? MF_ELINK : 0;
            kumo__post_reason_from(node, src, to, m->from, kind, flags, m->aux, &r);
        }
        if (m->kind == SIG_INFO)
            kumo__info_answer(node, src, to, NULL, m->from, m->aux, to.node ? -KUMO_ECONNLOST : 0);
        kumo__msg_free(m);
        return;
    }
    if (src && src->id == 0) {
        dist_out(d, to, m);
        return;
    }
    struct env *e = kumo__alloc(sizeof *e);
    if (!e) {
        kumo__msg_free(m); /* as a message lost on the way */
        return;
    }
    *e = (struct env){.task.fn = env_run, .d = d, .to = to, .m = m};
    if (kumo__task_post(node->eng, 0, &e->task)) {
        kumo__msg_free(m);
        kumo__free(e, sizeof *e);
    }
}

struct forget {
    struct kumo__task task;
    struct kumo__dist *d;
    kumo_pid sender;
};

static void forget_now(struct kumo__dist *d, kumo_pid sender)
{
    for (struct peer *p = d->peers; p; p = p->next)
        pair_forget_sender(p, sender);
}

static void forget_run(struct kumo__shard *sh, struct kumo__task *t)
{
    struct forget *f = (struct forget *)t;
    if (sh)
        forget_now(f->d, f->sender);
    kumo__free(f, sizeof *f);
}

void kumo__dist_forget(struct kumo_node *node, struct pshard *src, kumo_pid sender)
{
    struct kumo__dist *d = node->dist;
    if (!d)
        return;
    if (src && src->id == 0) {
        forget_now(d, sender);
        return;
    }
    struct forget *f = kumo__alloc(sizeof *f);
    if (!f)
        return; /* its pairs stay until the node stops */
    *f = (struct forget){.task.fn = forget_run, .d = d, .sender = sender};
    if (kumo__task_post(node->eng, 0, &f->task))
        kumo__free(f, sizeof *f);
}

/* ------------------------------------------------------------------ */
/* Incoming                                                            */
/* ------------------------------------------------------------------ */

static struct in_conn *in_find(struct kumo__dist *d, uint64_t id, struct in_conn ***prevp)
{
    struct in_conn **pp = &d->ins;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            if (prevp)
                *prevp = pp;
            return *pp;
        }
    return NULL;
}

/* Copies bytes [off, off+len) of a message in pieces. */
static void iov_copy(const struct iovec *iov, int n, size_t off, void *dst, size_t len)
{
    uint8_t *out = dst;
    for (int i = 0; i < n && len; i++) {
        size_t l = iov[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        size_t k = l - off < len ? l - off : len;
        memcpy(out, (const uint8_t *)iov[i].iov_base + off, k);
        out += k;
        len -= k;
        off = 0;
    }
}

static void malformed(struct dist_ep *de, struct in_conn *in, const char *why)
{
    char ab[128];
    kumo__log(KUMO_LOG_WARN, "dist: malformed frame from %s (%s): closing the link",
              kumo_address_str(&in->from, ab, sizeof ab), why);
    kumo_transport_break_link(de->ep, &in->from);
}

/* A HELLO from node f->from_node: any other node known at one of the
 * places it speaks from (kumo_address_same_place) is an old incarnation,
 * declared lost before the new one is accepted (Erlang's rule).  Only a
 * HELLO counts, never a DIR entry: a third node's news may be stale. */
static void supersede(struct kumo__dist *d, const struct kumo__dw_frame *f)
{
    for (struct peer *q = d->peers; q; q = q->next) {
        if (!q->id || q->id == f->from_node || q->gone)
            continue;
        for (unsigned i = 0; i < f->naddr; i++) {
            bool same = q->tix >= 0 && kumo_address_same_place(&q->via, &f->addr[i]);
            for (unsigned j = 0; !same && j < q->naddr; j++)
                same = kumo_address_same_place(&q->addr[j], &f->addr[i]);
            if (same) {
                char ab[128], why[200];
                snprintf(why, sizeof why, "node %016llx now speaks from %s",
                         (unsigned long long)f->from_node,
                         kumo_address_str(&f->addr[i], ab, sizeof ab));
                peer_gone(d, q, why);
                break;
            }
        }
    }
}

/*
 * Node p, known already, says HELLO: a dial we made to a place where it
 * is (kumo_node_connect to "tcp://host:port" while p's link was down) has
 * found p again.  Its waiters wait for p, and its connection becomes p's
 * if p has none; the anonymous peer is emptied (it never matches again).
 */
static void adopt_place_dial(struct kumo__dist *d, struct peer *p, struct in_conn *in,
                             const struct kumo__dw_frame *f)
{
    struct peer *a = anon_peer_by_addr(d, &in->from);
    for (unsigned i = 0; !a && i < f->naddr; i++)
        a = anon_peer_by_addr(d, &f->addr[i]);
    if (!a || a == p || a->tix < 0 || !kumo_address_is_place(&a->via))
        return;
    while (a->waiters) {
        struct waiter *w = a->waiters;
        a->waiters = w->next;
        w->next = p->waiters;
        p->waiters = w;
    }
    bool take = a->out == OUT_UP && p->out == OUT_NONE && !a->ready_wait && !a->ph;
    if (take) {
        p->conn = a->conn;
        p->out = OUT_UP;
        p->tix = a->tix;
        for (unsigned i = 0; i < f->naddr; i++)
            if (kumo_address_same_place(&a->via, &f->addr[i]))
                p->via = f->addr[i];
    }
    /* Otherwise a's connection is left open, idle: closing it would tell
     * the peer its link to us was lost.  It ends with that link. */
    a->out = OUT_NONE;
    a->conn = (kumo_conn){0};
    a->ready_wait = false;
    a->gen++; /* its connect callback, if still to come, is stale */
    a->tix = -1;
    memset(&a->via, 0, sizeof a->via);
    free_pend(d, a);
    if (take)
        peer_out_up(d, p);
}

static void on_hello(struct kumo__dist *d, struct dist_ep *de, struct in_conn *in,
                     const struct kumo__dw_frame *f)
{
    if (f->to_node && f->to_node != d->node->id) {
        char ab[128];
        kumo__log(KUMO_LOG_WARN,
                  "dist: %s addressed node %016llx, we are %016llx (another incarnation): "
                  "ignoring it",
                  kumo_address_str(&in->from, ab, sizeof ab), (unsigned long long)f->to_node,
                  (unsigned long long)d->node->id);
        kumo_transport_break_link(de->ep, &in->from);
        return;
    }
    if (f->from_node == d->node->id) {
        malformed(de, in, "HELLO claims our own node id");
        return;
    }
    struct peer *p = peer_by_id(d, f->from_node);
    if (p && p->gone) {
        malformed(de, in, "HELLO from a node incarnation already replaced");
        return;
    }
    if (p)
        adopt_place_dial(d, p, in, f);
    supersede(d, f);
    bool news = !p || !p->naddr;
    if (!p) {
        /* A peer we dialled by address only (by any of the addresses it
         * now names: it may answer over another transport than the one
         * we dialled), or a new one. */
        p = anon_peer_by_addr(d, &in->from);
        for (unsigned i = 0; !p && i < f->naddr; i++)
            p = anon_peer_by_addr(d, &f->addr[i]);
        if (!p)
            p = peer_new(d, f->from_node);
        if (!p)
            return;
        p->id = f->from_node;
    }
    p->naddr = f->naddr;
    memcpy(p->addr, f->addr, sizeof p->addr[0] * f->naddr);
    /* Dialled at a place: from now on this incarnation's own address, so
     * a reconnect never reaches a later node there as if it were this. */
    for (unsigned i = 0; p->tix >= 0 && kumo_address_is_place(&p->via) && i < f->naddr; i++)
        if (kumo_address_same_place(&p->via, &f->addr[i]))
            p->via = f->addr[i];
    if (p->tix < 0)
        peer_choose_route(d, p);
    if (p->tix < 0) {
        p->tix = (int)de->tix;
        p->via = in->from;
    }
    in->peer = p;
    in->helloed = true;
    p->hello_in = true;
    if (p->out == OUT_NONE)
        peer_connect(d, p); /* answer on our own connection */
    if (news)
        announce(d, p);
    peer_check_waiters(p);
}

/* A peer told us where a third node is. */
static void on_dir(struct kumo__dist *d, const struct kumo__dw_frame *f)
{
    if (f->from_node == d->node->id || !f->naddr)
        return;
    struct peer *x = peer_by_id(d, f->from_node);
    if (x && (x->naddr || x->gone))
        return; /* known: news travel once */
    if (!x)
        x = peer_new(d, f->from_node);
    if (!x)
        return;
    x->naddr = f->naddr;
    memcpy(x->addr, f->addr, sizeof x->addr[0] * f->naddr);
    if (x->tix < 0)
        peer_choose_route(d, x);
    announce(d, x);
}

/* A peer asks us to spawn a closure for its process `requester`. */
static void spawn_in(struct kumo__dist *d, struct peer *p, const struct kumo__dw_frame *f,
                     kumo_pid requester, const struct iovec *iov, int n)
{
    struct kumo_node *node = d->node;
    kumo_pid child = {0};
    int err = -ENOMEM;
    uint8_t small[256];
    uint8_t *args = f->len <= sizeof small ? small : kumo__alloc(f->len);
    if (f->len > node->max_message)
        err = -KUMO_ETOOBIG;
    else if (args) {
        iov_copy(iov, n, f->payload_off, args, f->len);
        err = kumo__closure_spawn(node, d->ps, NULL, requester, f->aux, f->shard, f->sflags,
                                  f->name, f->namelen, args, f->len, &child);
    }
    if (args && args != small)
        kumo__free(args, f->len);
    if (!err && (f->sflags & MF_SP_LINK))
        watch_add(p, child, requester, 0, W_LINK, W_IN);
    if (!err && (f->sflags & MF_SP_MONITOR))
        watch_add(p, child, requester, f->aux, W_MONITOR, W_IN);
    uint8_t buf[KUMO__DW_SPAWN_REPLY_LEN];
    kumo_pid to = requester;
    size_t len = kumo__dw_spawn_reply(buf, to, child, f->aux, err);
    struct iovec v = {buf, len};
    peer_send(d, p, &v, 1);
}

/* A peer's request to our registry, for its process `requester`. */
static void reg_in(struct kumo__dist *d, struct peer *p, const struct kumo__dw_frame *f,
                   kumo_pid pid, kumo_pid requester, const struct iovec *iov, int n)
{
    uint8_t small[256];
    uint8_t *data = f->len <= sizeof small ? small : kumo__alloc(f->len);
    kumo_pid found = {0};
    int err = -ENOMEM;
    if (data) {
        iov_copy(iov, n, f->payload_off, data, f->len);
        err = kumo__reg_exec(d->node, d->ps, requester, (uint8_t)f->flags, f->name, f->namelen, pid,
                             f->type, data, f->len, &found);
    }
    if (data && data != small)
        kumo__free(data, f->len);
    if (f->flags == KUMO__REG_NSEND)
        return;
    uint8_t buf[KUMO__DW_REG_REPLY_LEN];
    size_t len = kumo__dw_reg_reply(buf, requester, found, f->aux, err);
    struct iovec v = {buf, len};
    peer_send(d, p, &v, 1);
}

/* The answer to one of our spawns. */
static void spawn_reply_in(struct kumo__dist *d, struct peer *p, const struct kumo__dw_frame *f,
                           kumo_pid requester, kumo_pid child)
{
    int err = f->shard;
    struct pspawn *s = pspawn_take(p, requester, f->aux);
    if (!s) {
        if (err == 0) {
            /* We gave up on it (timed out): the child must not live on. */
            kumo_reason r;
            kumo__reason_set(&r, KUMO_KILLED, "its spawn timed out");
            uint8_t buf[KUMO__DW_SIGNAL_MAX];
            size_t len = kumo__dw_signal(buf, KUMO__DW_KILL, 0, child, requester, 0, &r);
            struct iovec v = {buf, len};
            peer_send(d, p, &v, 1);
        }
        return;
    }
    uint8_t flags = s->flags;
    kumo__free(s, sizeof *s);
    if (err == 0 && (flags & MF_SP_LINK))
        watch_add(p, requester, child, 0, W_LINK, W_OUT);
    if (err == 0 && (flags & MF_SP_MONITOR))
        watch_add(p, requester, child, f->aux, W_MONITOR, W_OUT);
    if (err > 0 || err < -KUMO_ETRANSPORT_LAST)
        err = -KUMO_EBADWIRE; /* not a code we know: say so rather than pass it on */
    kumo__spawn_reply(d->node, d->ps, requester, f->aux, flags, err ? (kumo_pid){0} : child, err);
}

/* A frame from peer p, to a process of ours. */
static void on_frame(struct kumo__dist *d, struct peer *p, const struct kumo__dw_frame *f,
                     const struct iovec *iov, int n)
{
    struct kumo_node *node = d->node;
    kumo_pid to = kumo__dw_pid(&f->to, node->id), from = kumo__dw_pid(&f->from, p->id);
    struct kumo_msg *m;
    if (f->op == KUMO__DW_SPAWN) {
        spawn_in(d, p, f, from, iov, n);
        return;
    }
    if (f->op == KUMO__DW_SPAWN_REPLY) {
        spawn_reply_in(d, p, f, to, from);
        return;
    }
    if (f->op == KUMO__DW_REG) {
        /* any node's pid (or none): its node came along */
        kumo_pid subject = kumo__dw_pid(&f->to, f->pid_node);
        reg_in(d, p, f, subject, from, iov, n);
        return;
    }
    if (f->op == KUMO__DW_REG_REPLY) {
        struct pspawn *s = pspawn_take(p, to, f->aux);
        /* no pid (an error, or whereis of a free name) crosses as zeros;
         * a name may hold any node's pid: its node came along */
        kumo_pid found = kumo__dw_pid(&f->from, f->pid_node);
        if (f->shard || f->from.serial == 0)
            found = (kumo_pid){0};
        int err = f->shard > 0 || f->shard < -KUMO_ETRANSPORT_LAST ? -KUMO_EBADWIRE : f->shard;
        if (s && s->kind == REQ_REG)
            kumo__reg_reply(node, d->ps, to, f->aux, found, err);
        if (s)
            kumo__free(s, sizeof *s);
        return;
    }
    if (f->op == KUMO__DW_DATA || f->op == KUMO__DW_CHAN) {
        if (f->len > node->max_message) {
            kumo__log(KUMO_LOG_WARN,
                      "dist: dropping a %zu-byte message from node %016llx "
                      "(over this node's max_message)",
                      f->len, (unsigned long long)p->id);
            return;
        }
        if (f->op == KUMO__DW_DATA && f->type == node->type_info &&
            f->len == sizeof(kumo_process_info_msg)) {
            /* The answer to one of our process info requests; one already
             * answered here (the link was lost first, or its deadline
             * passed) is dropped, as a late spawn or registry reply is. */
            kumo_ref r;
            iov_copy(iov, n, f->payload_off, &r, sizeof r);
            struct pspawn *s = pspawn_take(p, to, r.id);
            if (!s)
                return;
            kumo__free(s, sizeof *s);
        }
        m = kumo__msg_new(f->len);
        if (!m)
            return;
        m->kind = f->op == KUMO__DW_CHAN ? SIG_CHAN : SIG_DATA;
        m->type = f->type;
        m->aux = f->aux;
        iov_copy(iov, n, f->payload_off, m->data, f->len);
    } else {
        uint8_t kind = signal_kind(f->op);
        uint8_t mflags = ((f->flags & KUMO__DW_F_LINK) ? MF_LINK : 0) |
                         ((f->flags & KUMO__DW_F_ELINK) ? MF_ELINK : 0);
        track(p, kind, mflags, to, from, f->aux, false); /* no memory: untracked */
        bool reason = kind == SIG_EXIT || kind == SIG_KILL || kind == SIG_DOWN;
        if (reason) {
            int err =
                kumo__post_reason_from(node, d->ps, from, to, kind, mflags, f->aux, &f->reason);
            (void)err; /* no memory: lost, as on a broken link */
            return;
        }
        m = kumo__msg_new(0);
        if (!m)
            return;
        m->kind = kind;
        m->aux = f->aux;
    }
    m->from = from;
    msg_set_dst(m, to);
    kumo__post_local(node, d->ps, m);
}

static void on_received(struct kumo__dist *d, struct dist_ep *de, const kumo_event *ev)
{
    struct in_conn *in = in_find(d, ev->conn, NULL);
    if (!in)
        return;
    /* Decode from a private copy of the frame's head: a shm peer could
     * change the bytes in its ring while we read them. */
    uint8_t head[KUMO__DW_HEAD_MAX];
    size_t avail = ev->len < sizeof head ? ev->len : sizeof head;
    iov_copy(ev->iov, ev->iovcnt, 0, head, avail);
    if (avail >= 2 && !kumo__dw_has_payload(head[1]) && avail < ev->len) {
        malformed(de, in, "control frame longer than any valid one");
        return;
    }
    struct kumo__dw_frame f;
    const char *why = NULL;
    if (kumo__dw_decode(head, avail, ev->len, &f, &why)) {
        malformed(de, in, why);
        return;
    }
    if (f.op == KUMO__DW_HELLO) {
        if (in->helloed) {
            malformed(de, in, "a second HELLO");
            return;
        }
        on_hello(d, de, in, &f);
        return;
    }
    if (!in->helloed) {
        malformed(de, in, "a frame before HELLO");
        return;
    }
    if (!in->peer)
        return; /* its peer was declared lost: what still arrives is dropped */
    if (f.op == KUMO__DW_DIR) {
        on_dir(d, &f);
        return;
    }
    on_frame(d, in->peer, &f, ev->iov, ev->iovcnt);
}

static void on_event(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    struct dist_ep *de = arg;
    struct kumo__dist *d = de->d;
    (void)ep;
    switch (ev->kind) {
    case KUMO_EV_CONNECTION_OPENED: {
        struct in_conn *in = kumo__zalloc(sizeof *in);
        if (!in)
            return;
        in->de = de;
        in->id = ev->conn;
        in->from = *ev->address;
        in->next = d->ins;
        d->ins = in;
        break;
    }
    case KUMO_EV_RECEIVED:
        if (!d->stopping)
            on_received(d, de, ev);
        break;
    case KUMO_EV_CONNECTION_CLOSED: {
        struct in_conn **pp;
        struct in_conn *in = in_find(d, ev->conn, &pp);
        if (!in)
            break;
        *pp = in->next;
        struct peer *p = in->peer;
        kumo__free(in, sizeof *in);
        if (p && !d->stopping)
            peer_lost(d, p, "the peer closed its connection");
        break;
    }
    case KUMO_EV_ERROR:
        if (ev->error == KUMO_ERR_CONNECTION_LOST && ev->address) {
            for (struct in_conn **pp = &d->ins; *pp;) {
                struct in_conn *in = *pp;
                if (in->de == de && kumo_address_eq(&in->from, ev->address)) {
                    *pp = in->next;
                    struct peer *p = in->peer;
                    kumo__free(in, sizeof *in);
                    if (p)
                        peer_lost(d, p, kumo_strerror(ev->reason));
                } else {
                    pp = &in->next;
                }
            }
            for (struct peer *p = d->peers; p; p = p->next)
                if (p->tix == (int)de->tix && kumo_address_eq(&p->via, ev->address) &&
                    (p->out != OUT_NONE || p->hello_in || p->nw))
                    peer_lost(d, p, kumo_strerror(ev->reason));
        } else {
            kumo__log(KUMO_LOG_ERROR, "dist: transport %s failed: %s", kumo_transport_name(de->t),
                      kumo_strerror(ev->reason));
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------ */
/* kumo_node_connect                                                   */
/* ------------------------------------------------------------------ */

static void connect_task(struct kumo__shard *sh, struct kumo__task *t)
{
    struct waiter *w = waiter_task(sh, t);
    if (!w)
        return;
    struct kumo__dist *d = w->d;
    if (d->stopping) {
        waiter_finish(w, -KUMO_ESHUTDOWN, 0);
        return;
    }
    int tix = tix_for(d, &w->addr);
    bool place = kumo_address_is_place(&w->addr);
    struct peer *p = peer_by_addr(d, &w->addr);
    if (!p && place)
        p = node_at_place(d, &w->addr);
    /* A place whose known node is gone, or down: another incarnation may
     * listen there now, so the place is dialled anew (if the same node
     * answers, it takes the dial over: adopt_place_dial). */
    if (p && place && p->id && (p->gone || (p->out == OUT_NONE && !p->hello_in)))
        p = NULL;
    /* A dial on its way there already (at this place, or at an address
     * of it, or at a place this address is at): the same dial. */
    if (!p)
        p = anon_peer_by_addr(d, &w->addr);
    if (!p) {
        /* An anonymous peer emptied by adopt_place_dial serves again, so
         * repeated place dials do not grow the list. */
        for (struct peer *q = d->peers; !p && q; q = q->next)
            if (!q->id && q->tix < 0 && q->out == OUT_NONE && !q->waiters && !q->naddr &&
                !q->gone && !q->ph)
                p = q;
        if (!p)
            p = peer_new(d, 0);
        if (!p) {
            waiter_finish(w, -ENOMEM, 0);
            return;
        }
        p->tix = tix;
        p->via = w->addr;
    }
    if (p->gone) {
        waiter_finish(w, -KUMO_ENOTFOUND, 0); /* that incarnation's address */
        return;
    }
    w->next = p->waiters;
    p->waiters = w;
    peer_connect(d, p);
    peer_check_waiters(p);
}

int kumo_node_connect(kumo_node *node, const kumo_address *address, int64_t timeout_ns,
                      uint64_t *peer)
{
    if (!node || !address || kumo__shard_current())
        return -EINVAL;
    struct kumo__dist *d = node->dist;
    if (!d || tix_for(d, address) < 0)
        return -EINVAL;
    if (atomic_load(&node->stopping))
        return -KUMO_ESHUTDOWN;
    struct waiter *w = kumo__zalloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    w->task.fn = connect_task;
    w->d = d;
    w->addr = *address;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&w->refs, 2);
    if (kumo__task_post(node->eng, 0, &w->task)) {
        waiter_put(w);
        waiter_put(w);
        return -KUMO_ESHUTDOWN;
    }
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_ns < 0)
        timeout_ns = 30LL * 1000000000;
    dl.tv_sec += timeout_ns / 1000000000;
    dl.tv_nsec += timeout_ns % 1000000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (!w->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
    int err = w->done ? w->err : -KUMO_ETIMEOUT;
    if (w->done && !err && peer)
        *peer = w->peer;
    pthread_mutex_unlock(&w->mu);
    waiter_put(w);
    return err;
}

static void break_task(struct kumo__shard *sh, struct kumo__task *t)
{
    struct waiter *w = waiter_task(sh, t);
    if (!w)
        return;
    struct kumo__dist *d = w->d;
    struct peer *p = d->stopping ? NULL : peer_by_id(d, w->peer);
    if (p && p->tix >= 0)
        kumo_transport_break_link(d->ep[p->tix].ep, &p->via);
    waiter_finish(w, 0, 0);
}

/* Runs fn on shard 0 with a waiter carrying `peer` (and `peers`, `max`)
 * and waits for it. */
static int run_on_shard0_with(struct kumo_node *node,
                              void (*fn)(struct kumo__shard *, struct kumo__task *), uint64_t peer,
                              kumo_peer_info *peers, unsigned max)
{
    struct waiter *w = kumo__zalloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    w->task.fn = fn;
    w->d = node->dist;
    w->peer = peer;
    w->peers = peers;
    w->max = max;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    atomic_init(&w->refs, 2);
    if (kumo__task_post(node->eng, 0, &w->task)) {
        waiter_put(w);
        waiter_put(w);
        return -KUMO_ESHUTDOWN;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    int err = w->err;
    pthread_mutex_unlock(&w->mu);
    waiter_put(w);
    return err;
}

static int run_on_shard0(struct kumo_node *node,
                         void (*fn)(struct kumo__shard *, struct kumo__task *), uint64_t peer)
{
    return run_on_shard0_with(node, fn, peer, NULL, 0);
}

static void peers_task(struct kumo__shard *sh, struct kumo__task *t)
{
    struct waiter *w = waiter_task(sh, t);
    if (!w)
        return;
    struct kumo__dist *d = w->d;
    unsigned n = 0;
    for (struct peer *p = d->stopping ? NULL : d->peers; p; p = p->next) {
        if (!p->id)
            continue; /* dialled, not introduced yet */
        if (n < w->max) {
            kumo_peer_info *o = &w->peers[n];
            memset(o, 0, sizeof *o);
            o->node = p->id;
            o->state = p->gone                             ? KUMO_PEER_GONE
                       : p->out == OUT_UP && p->hello_in   ? KUMO_PEER_UP
                       : p->out != OUT_NONE || p->hello_in ? KUMO_PEER_CONNECTING
                                                           : KUMO_PEER_KNOWN;
            if (p->tix >= 0) {
                o->transport = kumo_transport_name(d->ep[p->tix].t);
                o->address = p->via;
            }
            o->losses = p->epoch;
            uint32_t links = 0, mons = 0;
            for (uint32_t i = 0; i < p->nw; i++) {
                if (p->w[i].kind == W_NODE)
                    o->node_monitors++;
                else if (p->w[i].kind == W_MONITOR)
                    mons++;
                else
                    links++;
            }
            o->links = links;
            o->monitors = mons;
            o->queued_bytes = p->pend_bytes;
            o->queued_peak = p->pend_peak;
            o->busy = p->busy;
        }
        n++;
    }
    waiter_finish(w, (int)n, 0);
}

int kumo_node_peers(kumo_node *node, kumo_peer_info *out, unsigned max)
{
    if (!node || kumo__shard_current() || (max && !out))
        return -EINVAL;
    if (!node->dist)
        return 0;
    if (atomic_load(&node->stopping))
        return -KUMO_ESHUTDOWN;
    return run_on_shard0_with(node, peers_task, 0, out, max);
}

int kumo_node_break_link(kumo_node *node, uint64_t peer)
{
    if (!node || kumo__shard_current())
        return -EINVAL;
    if (!node->dist)
        return 0;
    if (atomic_load(&node->stopping))
        return -KUMO_ESHUTDOWN;
    return run_on_shard0(node, break_task, peer);
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */
/* ------------------------------------------------------------------ */

int kumo__dist_start(struct kumo_node *node, const struct kumo_dist_transport *tv, unsigned n)
{
    if (n > KUMO_DIST_MAX_TRANSPORTS || !tv)
        return -EINVAL;
    struct kumo__dist *d = kumo__zalloc(sizeof *d);
    if (!d)
        return -ENOMEM;
    d->node = node;
    d->ps = node->ps[0];
    node->dist = d;
    int err = 0;
    for (unsigned i = 0; i < n && !err; i++) {
        struct dist_ep *de = &d->ep[i];
        de->d = d;
        de->tix = i;
        err = kumo__transport_new(node->eng, tv[i].name, tv[i].config, &de->t);
        if (err) {
            kumo__log(KUMO_LOG_ERROR, "dist: transport %s: %s", tv[i].name ? tv[i].name : "?",
                      kumo_strerror(err));
            break;
        }
        d->n = i + 1;
        err = kumo_endpoint_new(de->t, 0, on_event, de, &de->ep);
        if (!err)
            de->addr = *kumo_endpoint_address(de->ep);
    }
    if (err) {
        kumo__dist_stop(node);
        kumo__dist_free(node);
    }
    return err;
}

static void stop_task(struct kumo__shard *sh, struct kumo__task *t)
{
    struct waiter *w = (struct waiter *)t;
    if (sh) {
        struct kumo__dist *d = w->d;
        d->stopping = true;
        for (struct peer *p = d->peers; p; p = p->next) {
            if (p->out == OUT_UP)
                kumo_conn_close(p->conn);
            p->out = OUT_NONE;
            p->gen++;
            free_pend(d, p);
            peer_fail_waiters(p, -KUMO_ESHUTDOWN);
            pspawn_fail_all(d, p, -KUMO_ESHUTDOWN, true);
        }
    }
    waiter_finish(w, 0, 0);
}

void kumo__dist_stop(struct kumo_node *node)
{
    struct kumo__dist *d = node->dist;
    if (!d)
        return;
    /* First make shard 0 stop using the endpoints, then free them. */
    if (run_on_shard0(node, stop_task, 0))
        d->stopping = true; /* the shards are gone: nothing runs there */
    for (unsigned i = 0; i < d->n; i++) {
        if (d->ep[i].t)
            kumo_transport_free(d->ep[i].t);
        d->ep[i].t = NULL;
        d->ep[i].ep = NULL;
    }
}

void kumo__dist_free(struct kumo_node *node)
{
    struct kumo__dist *d = node->dist;
    if (!d)
        return;
    while (d->peers) {
        struct peer *p = d->peers;
        d->peers = p->next;
        p->busy = false; /* the shards are gone: nothing to resume */
        free_pend(d, p);
        peer_fail_waiters(p, -KUMO_ESHUTDOWN);
        while (p->spawns) {
            struct pspawn *x = p->spawns;
            p->spawns = x->next;
            kumo__free(x, sizeof *x);
        }
        kumo__free(p->w, sizeof *p->w * p->capw);
        pair_tab_free(&p->pairs);
        kumo__free(p, sizeof *p);
    }
    while (d->ins) {
        struct in_conn *in = d->ins;
        d->ins = in->next;
        kumo__free(in, sizeof *in);
    }
    kumo__free(d, sizeof *d);
    node->dist = NULL;
}

/* ------------------------------------------------------------------ */
/* Identity                                                            */
/* ------------------------------------------------------------------ */

uint64_t kumo_self_node_id(const kumo_proc *self)
{
    return self->node->id;
}

int kumo_node_address(const kumo_node *node, unsigned i, kumo_address *out)
{
    const struct kumo__dist *d = node->dist;
    if (!d || i >= d->n || !d->ep[i].ep)
        return -ENOENT;
    *out = d->ep[i].addr;
    return 0;
}
