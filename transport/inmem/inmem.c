/*
 * "inmem": endpoints inside one OS process, on any shards.
 *
 * Everything one endpoint tells another travels as an engine task from the
 * sender's shard to the receiver's shard.  Each (source shard, destination
 * shard) path is FIFO and every message of a connection leaves from its
 * endpoint's shard, so order per connection holds, and a peer's
 * notifications (close, endpoint closed) arrive after the messages sent
 * before them.
 *
 * Zero copies: a lent send (kumo_conn_send with a release) hands the sender's
 * buffers to the receiver's Received event and calls release when the
 * receiver is done with them (after the callback, or at kumo_rx_free if it
 * kept the message).  A plain send copies once, into the message the
 * receiver gets; keeping it is free.
 *
 * The heavyweight link between two endpoints is a `struct link`, shared by
 * both; each endpoint has its own view of it (`struct side`, touched only
 * on that endpoint's shard).  Breaking a link sets `broken` (so messages
 * still in flight on it are dropped on arrival) and tells both sides.
 *
 * One net per OS process.  Every inmem transport of the process (one per
 * node, for nodes in one OS process talking over inmem) shares one
 * directory of endpoints and one list of links, so an endpoint reaches
 * the endpoints of every inmem transport, whatever engine runs them.  The
 * net owns endpoints and links: they stay allocated until the last inmem
 * transport is destroyed (a few hundred bytes per endpoint ever made), so
 * a peer's record or a message in flight never points to freed memory.
 * A message to an endpoint of another transport goes through that
 * engine's foreign queue, under the net's mutex, which also tells whether
 * the engine is still there (a destroyed transport's endpoints are
 * detached: `eng` is NULL).  Between endpoints of one transport, nothing
 * is locked.  The mutex also guards the directory and the current link of
 * each pair: connect, close and break are rare.  Hints have no knobs to
 * map to here and are ignored.
 */
#include "transport/transport.h"

#include "engine/alloc.h"
#include "engine/list.h"
#include "engine/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define INMEM_TAG 'm'
/* version, tag, transport id (8), endpoint index (4), incarnation (8) */
#define INMEM_ADDR_LEN 22

struct inmem_ep;

struct link {
    struct link *next_all; /* t->links: freed with the transport */
    struct inmem_ep *a, *b;
    _Atomic bool broken;
    bool current; /* still the pair's link in t->links lookups (under mu) */
};

struct in_conn {
    struct in_conn *prev, *next;
    uint64_t id;
};

struct out_conn {
    struct out_conn *prev, *next;
    struct side *side;
    struct kumo__conn *rec;
    uint64_t id;
    struct in_conn *remote; /* the receiver's record (owned by it after OPEN) */
};

/* One endpoint's view of one link. */
struct side {
    struct side *next;
    struct link *L;
    struct inmem_ep *peer;
    struct in_conn *in;
    struct out_conn *out;
};

struct inmem_t {
    struct kumo_transport base;
    uint64_t id;
};

/* The process-wide net (see the top of the file). */
static struct {
    pthread_mutex_t mu;
    unsigned users; /* inmem transports not yet destroyed */
    struct inmem_ep **dir;
    uint32_t ndir, capdir;
    struct link *links;
} net = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct inmem_ep {
    struct kumo_endpoint base;
    struct inmem_t *owner;    /* compared only: may be freed when detached */
    uint64_t tid;             /* the owner's id, as in the address */
    struct kumo__engine *eng; /* the owner's engine; NULL (under net.mu)
                               * once the owner is destroyed */
    uint32_t index;           /* in net.dir */
    uint64_t inc;
    bool gone;                /* under net.mu: refuses connects */
    _Atomic uint64_t next_in; /* incoming connection ids */
    struct side *sides;       /* shard-owned */
};

enum { M_OPEN = 1, M_DATA, M_CLOSE, M_PEER_CLOSED, M_BROKEN };

struct imsg {
    struct kumo__task task;
    struct kumo_rx rx;
    uint8_t kind;
    kumo_reliability reliability;
    struct inmem_ep *to;
    struct inmem_ep *from; /* M_OPEN: the connector */
    struct link *L;
    uint64_t id;
    struct in_conn *rec;
    kumo_release_fn release;
    void *release_arg;
    size_t size;
    struct iovec iov[];
};

static inline struct inmem_t *T(struct kumo_transport *t)
{
    return (struct inmem_t *)t;
}
static inline struct inmem_ep *E(struct kumo_endpoint *ep)
{
    return (struct inmem_ep *)ep;
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

static void msg_free(struct imsg *m)
{
    if (m->release)
        m->release(m->release_arg);
    kumo__free(m, m->size);
}

static void msg_rx_free(struct kumo_rx *rx)
{
    msg_free((struct imsg *)((char *)rx - offsetof(struct imsg, rx)));
}

static void run_msg(struct kumo__shard *sh, struct kumo__task *t);

static struct imsg *msg_new(uint8_t kind, size_t extra)
{
    size_t size = sizeof(struct imsg) + extra;
    struct imsg *m = kumo__alloc(size);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->task.fn = run_msg;
    m->kind = kind;
    m->size = size;
    return m;
}

/* Control messages must not be lost to a failed allocation: they are
 * small, so wait for memory rather than leave a peer uninformed. */
static struct imsg *ctl_new(uint8_t kind)
{
    struct imsg *m;
    while (!(m = msg_new(kind, 0)))
        sched_yield();
    return m;
}

/* Posts a task to `to`'s shard from a shard running an endpoint of
 * `from`: without a lock within one transport (its engine lives while we
 * run), else under net.mu, where an endpoint that is closing (`gone`) or
 * detached is refused.  So once an endpoint's close has taken net.mu, no
 * other engine adds a task for it: what was posted before is flushed by
 * the engine barrier kumo_transport_free runs after the close, before the
 * net can free anything a task points to. */
static int task_to(const struct inmem_t *from, struct inmem_ep *to, struct kumo__task *task)
{
    if (to->owner == from)
        return kumo__task_post(to->eng, to->base.shard, task);
    pthread_mutex_lock(&net.mu);
    int err = to->eng && !to->gone ? kumo__task_post(to->eng, to->base.shard, task) : -KUMO_ECLOSED;
    pthread_mutex_unlock(&net.mu);
    return err;
}

static int post(const struct inmem_ep *from, struct inmem_ep *to, struct imsg *m)
{
    m->to = to;
    int err = task_to(from->owner, to, &m->task);
    if (err) {
        msg_free(m);
        return -KUMO_ECLOSED;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sides                                                               */
/* ------------------------------------------------------------------ */

static struct side *side_find(struct inmem_ep *ep, struct link *L)
{
    for (struct side *s = ep->sides; s; s = s->next)
        if (s->L == L)
            return s;
    return NULL;
}

static struct side *side_get(struct inmem_ep *ep, struct link *L, struct inmem_ep *peer)
{
    struct side *s = side_find(ep, L);
    if (s)
        return s;
    s = kumo__zalloc(sizeof *s);
    if (!s)
        return NULL;
    s->L = L;
    s->peer = peer;
    s->next = ep->sides;
    ep->sides = s;
    return s;
}

static void side_unlink(struct inmem_ep *ep, struct side *s)
{
    for (struct side **pp = &ep->sides; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

/* Drops the side's connections: incoming ones are forgotten (each reported
 * closed when `report_closed`), outgoing ones fail.  Returns whether there
 * were outgoing / any connections. */
static void side_teardown(struct inmem_ep *ep, struct side *s, bool report_closed, bool *had_out,
                          bool *had_any)
{
    *had_out = s->out != NULL;
    *had_any = s->out != NULL || s->in != NULL;
    while (s->in) {
        struct in_conn *ic = s->in;
        s->in = ic->next;
        if (report_closed) {
            kumo_event ev = {.kind = KUMO_EV_CONNECTION_CLOSED, .conn = ic->id};
            kumo__emit(&ep->base, &ev);
        }
        kumo__free(ic, sizeof *ic);
    }
    while (s->out) {
        struct out_conn *oc = s->out;
        s->out = oc->next;
        kumo__conn_fail(oc->rec);
        oc->rec->impl = NULL;
        kumo__free(oc, sizeof *oc);
    }
    side_unlink(ep, s);
    kumo__free(s, sizeof *s);
}

/* Tears side s down and reports its link lost (`reason`) when it had
 * outgoing connections (out_only) or any connection at all. */
static void side_lose(struct inmem_ep *ep, struct side *s, bool report_closed, bool out_only,
                      int reason)
{
    kumo_address addr = s->peer->base.addr;
    bool had_out, had_any;
    side_teardown(ep, s, report_closed, &had_out, &had_any);
    if (out_only ? had_out : had_any)
        kumo__emit_lost(&ep->base, &addr, reason);
}

/* ------------------------------------------------------------------ */
/* Receiving                                                           */
/* ------------------------------------------------------------------ */

static void run_msg(struct kumo__shard *sh, struct kumo__task *t)
{
    struct imsg *m = (struct imsg *)t;
    struct inmem_ep *ep = m->to;
    if (!sh || ep->base.closed || atomic_load_explicit(&ep->base.closing, memory_order_relaxed)) {
        /* Nobody to deliver to.  An OPEN's record was never linked. */
        if (m->kind == M_OPEN)
            kumo__free(m->rec, sizeof *m->rec);
        msg_free(m);
        return;
    }
    bool broken = atomic_load_explicit(&m->L->broken, memory_order_acquire);
    switch (m->kind) {
    case M_DATA: {
        if (broken)
            break;
        kumo_event ev = {.kind = KUMO_EV_RECEIVED,
                         .conn = m->id,
                         .iov = m->rx.iov,
                         .iovcnt = m->rx.iovcnt,
                         .len = m->rx.len,
                         .rx = &m->rx};
        kumo__emit(&ep->base, &ev);
        if (m->rx.kept)
            return; /* the receiver frees it with kumo_rx_free */
        break;
    }
    case M_OPEN: {
        struct side *s = broken ? NULL : side_get(ep, m->L, m->from);
        if (!s) {
            /* A broken link (the OPEN is lost with it), or no memory for
             * the side: then the connection cannot be tracked, and the
             * link is failed for both ends rather than half-open. */
            if (!broken) {
                /* As a break: no later connect reuses the link, and the
                 * connector hears of it. */
                kumo__log(KUMO_LOG_WARN, "inmem: no memory to accept a connection: link failed");
                pthread_mutex_lock(&net.mu);
                m->L->current = false;
                pthread_mutex_unlock(&net.mu);
                atomic_store(&m->L->broken, true);
                struct imsg *b = ctl_new(M_BROKEN);
                b->L = m->L;
                post(ep, m->from, b);
            }
            kumo__free(m->rec, sizeof *m->rec);
            break;
        }
        struct in_conn *ic = m->rec;
        KUMO__LIST_PUSH(s->in, ic, prev, next);
        kumo_event ev = {.kind = KUMO_EV_CONNECTION_OPENED,
                         .conn = ic->id,
                         .reliability = m->reliability,
                         .address = &m->from->base.addr};
        kumo__emit(&ep->base, &ev);
        break;
    }
    case M_CLOSE: {
        if (broken)
            break;
        struct side *s = side_find(ep, m->L);
        struct in_conn *ic = m->rec;
        if (!s)
            break; /* cannot happen: a side lives until its link ends */
        KUMO__LIST_REMOVE(s->in, ic, prev, next);
        kumo_event ev = {.kind = KUMO_EV_CONNECTION_CLOSED, .conn = ic->id};
        kumo__free(ic, sizeof *ic);
        kumo__emit(&ep->base, &ev);
        break;
    }
    case M_PEER_CLOSED: {
        struct side *s = side_find(ep, m->L);
        if (s)
            side_lose(ep, s, true, true, -KUMO_ECLOSED);
        break;
    }
    case M_BROKEN: {
        struct side *s = side_find(ep, m->L);
        if (s)
            side_lose(ep, s, false, false, -KUMO_ECONNLOST);
        break;
    }
    }
    msg_free(m);
}

/* ------------------------------------------------------------------ */
/* Directory and links (under net.mu)                                   */
/* ------------------------------------------------------------------ */

static struct inmem_ep *dir_lookup(const kumo_address *a)
{
    if (a->len != INMEM_ADDR_LEN || a->bytes[0] != KUMO__ADDR_VERSION || a->bytes[1] != INMEM_TAG)
        return NULL;
    uint32_t idx = kumo__get32(a->bytes + 10);
    if (idx >= net.ndir)
        return NULL;
    struct inmem_ep *ep = net.dir[idx];
    if (ep->gone || !ep->eng || ep->tid != kumo__get64(a->bytes + 2) ||
        ep->inc != kumo__get64(a->bytes + 14))
        return NULL;
    return ep;
}

static struct link *link_current(struct inmem_ep *x, struct inmem_ep *y)
{
    for (struct link *L = net.links; L; L = L->next_all)
        if (L->current && ((L->a == x && L->b == y) || (L->a == y && L->b == x)))
            return L;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Ops                                                                 */
/* ------------------------------------------------------------------ */

static int im_create(struct kumo__engine *eng, const void *cfg, struct kumo_transport **out)
{
    (void)eng;
    (void)cfg;
    struct inmem_t *t = kumo__zalloc(sizeof *t);
    if (!t)
        return -ENOMEM;
    if (getrandom(&t->id, sizeof t->id, 0) != sizeof t->id)
        t->id = kumo__now_ns() ^ (uint64_t)(uintptr_t)t;
    pthread_mutex_lock(&net.mu);
    net.users++;
    pthread_mutex_unlock(&net.mu);
    *out = &t->base;
    return 0;
}

static int im_endpoint_new(struct kumo_transport *bt, struct kumo_endpoint *tmpl,
                           struct kumo_endpoint **out)
{
    struct inmem_t *t = T(bt);
    struct inmem_ep *ep = kumo__zalloc(sizeof *ep);
    if (!ep)
        return -ENOMEM;
    ep->base = *tmpl;
    ep->owner = t;
    ep->tid = t->id;
    ep->eng = bt->eng;
    atomic_init(&ep->next_in, 1);
    if (getrandom(&ep->inc, sizeof ep->inc, 0) != sizeof ep->inc)
        ep->inc = kumo__now_ns() ^ (uint64_t)(uintptr_t)ep;
    pthread_mutex_lock(&net.mu);
    if (net.ndir == net.capdir) {
        uint32_t ncap = net.capdir ? net.capdir * 2 : 16;
        struct inmem_ep **nd = kumo__alloc(sizeof(*nd) * ncap);
        if (!nd) {
            pthread_mutex_unlock(&net.mu);
            kumo__free(ep, sizeof *ep);
            return -ENOMEM;
        }
        if (net.ndir)
            memcpy(nd, net.dir, sizeof(*nd) * net.ndir);
        kumo__free(net.dir, sizeof(*nd) * net.capdir);
        net.dir = nd;
        net.capdir = ncap;
    }
    ep->index = net.ndir;
    /* The address is complete before the directory shows the endpoint to
     * connects from other threads. */
    kumo_address *a = &ep->base.addr;
    a->len = INMEM_ADDR_LEN;
    a->bytes[0] = KUMO__ADDR_VERSION;
    a->bytes[1] = INMEM_TAG;
    kumo__put64(a->bytes + 2, t->id);
    kumo__put32(a->bytes + 10, ep->index);
    kumo__put64(a->bytes + 14, ep->inc);
    net.dir[net.ndir++] = ep;
    pthread_mutex_unlock(&net.mu);
    *out = &ep->base;
    return 0;
}

static void im_connect(struct kumo_endpoint *bep, struct kumo__connect_req *req)
{
    struct inmem_ep *ep = E(bep);
    /* A link to the same address that the other end broke, whose news
     * (M_BROKEN) has not reached us yet: report its loss now, before the
     * new connection exists.  Otherwise the ConnectionLost, which names
     * only the address, would arrive after the new connection was made
     * and read as the loss of that one too. */
    for (;;) {
        struct side *s = ep->sides;
        while (s && !(atomic_load_explicit(&s->L->broken, memory_order_acquire) &&
                      kumo_address_eq(&s->peer->base.addr, &req->to)))
            s = s->next;
        if (!s)
            break;
        side_lose(ep, s, false, false, -KUMO_ECONNLOST); /* may change the sides: look again */
    }
    pthread_mutex_lock(&net.mu);
    struct inmem_ep *peer = dir_lookup(&req->to);
    if (!peer) {
        pthread_mutex_unlock(&net.mu);
        kumo__connect_done(req, NULL, -KUMO_ENOTFOUND);
        return;
    }
    struct link *L = link_current(ep, peer);
    if (!L) {
        L = kumo__zalloc(sizeof *L);
        if (!L) {
            pthread_mutex_unlock(&net.mu);
            kumo__connect_done(req, NULL, -KUMO_ENORESOURCES);
            return;
        }
        L->a = ep;
        L->b = peer;
        L->current = true;
        L->next_all = net.links;
        net.links = L;
    }
    pthread_mutex_unlock(&net.mu);

    struct side *s = side_get(ep, L, peer);
    struct out_conn *oc = kumo__zalloc(sizeof *oc);
    struct in_conn *ic = kumo__zalloc(sizeof *ic);
    struct imsg *m = msg_new(M_OPEN, 0);
    struct kumo__conn *rec = s && oc && ic && m ? kumo__conn_alloc(bep, oc) : NULL;
    if (!rec) {
        kumo__free(oc, sizeof *oc);
        kumo__free(ic, sizeof *ic);
        if (m)
            msg_free(m);
        if (s && !s->in && !s->out) {
            side_unlink(ep, s);
            kumo__free(s, sizeof *s);
        }
        kumo__connect_done(req, NULL, -KUMO_ENORESOURCES);
        return;
    }
    oc->side = s;
    oc->rec = rec;
    oc->id = atomic_fetch_add_explicit(&peer->next_in, 1, memory_order_relaxed);
    oc->remote = ic;
    KUMO__LIST_PUSH(s->out, oc, prev, next);
    ic->id = oc->id;
    m->from = ep;
    m->L = L;
    m->id = oc->id;
    m->rec = ic;
    m->reliability = req->rel;
    if (post(ep, peer, m)) {
        /* The engine is stopping: the OPEN and its record are gone. */
        kumo__free(ic, sizeof *ic);
        oc->remote = NULL;
    }
    kumo__connect_done(req, rec, 0);
}

static int im_send(struct kumo_endpoint *bep, struct kumo__conn *c, const struct iovec *iov, int n,
                   size_t len, kumo_release_fn release, void *release_arg)
{
    struct out_conn *oc = c->impl;
    struct imsg *m = msg_new(M_DATA, kumo__iov_hold_size(n, len, release != NULL));
    if (!m)
        return -ENOMEM;
    m->rx.iovcnt = kumo__iov_hold(m->iov, iov, n, len, release != NULL);
    m->rx.iov = m->iov;
    m->rx.len = len;
    m->rx.keep = kumo__rx_keep_self;
    m->rx.free = msg_rx_free;
    m->L = oc->side->L;
    m->id = oc->id;
    struct inmem_ep *peer = oc->side->peer;
    m->to = peer;
    m->release = release;
    m->release_arg = release_arg;
    if (task_to(E(bep)->owner, peer, &m->task)) {
        /* A failed send takes no ownership: do not release the lend. */
        m->release = NULL;
        msg_free(m);
        return -KUMO_ECLOSED;
    }
    return 0;
}

static void im_conn_close(struct kumo_endpoint *bep, struct kumo__conn *c)
{
    struct out_conn *oc = c->impl;
    if (!oc)
        return; /* its link failed: already detached */
    struct side *s = oc->side;
    KUMO__LIST_REMOVE(s->out, oc, prev, next);
    if (oc->remote && !atomic_load(&s->L->broken)) {
        struct imsg *m = ctl_new(M_CLOSE);
        m->L = s->L;
        m->id = oc->id;
        m->rec = oc->remote;
        post(E(bep), s->peer, m);
    }
    c->impl = NULL;
    kumo__free(oc, sizeof *oc);
}

static void im_endpoint_close(struct kumo_endpoint *bep)
{
    struct inmem_ep *ep = E(bep);
    pthread_mutex_lock(&net.mu);
    ep->gone = true;
    for (struct link *L = net.links; L; L = L->next_all)
        if (L->current && (L->a == ep || L->b == ep))
            L->current = false;
    pthread_mutex_unlock(&net.mu);
    while (ep->sides) {
        struct side *s = ep->sides;
        if (s->peer != ep && !atomic_load(&s->L->broken)) {
            struct imsg *m = ctl_new(M_PEER_CLOSED);
            m->L = s->L;
            post(ep, s->peer, m);
        }
        bool had_out, had_any;
        side_teardown(ep, s, false, &had_out, &had_any);
    }
    kumo__endpoint_closed(bep);
}

static void im_break_link(struct kumo_endpoint *bep, const kumo_address *peer_addr)
{
    struct inmem_ep *ep = E(bep);
    struct link *L = NULL;
    struct inmem_ep *peer = NULL;
    pthread_mutex_lock(&net.mu);
    /* The peer may be closing: look it up even if gone. */
    for (struct link *x = net.links; x; x = x->next_all) {
        struct inmem_ep *other = x->a == ep ? x->b : x->b == ep ? x->a : NULL;
        if (x->current && other && kumo_address_eq(&other->base.addr, peer_addr)) {
            L = x;
            peer = other;
            break;
        }
    }
    if (L) {
        L->current = false;
        atomic_store_explicit(&L->broken, true, memory_order_release);
    }
    pthread_mutex_unlock(&net.mu);
    if (!L)
        return;
    struct side *s = side_find(ep, L);
    if (s)
        side_lose(ep, s, false, false, -KUMO_ECONNLOST);
    if (peer != ep) {
        struct imsg *m = ctl_new(M_BROKEN);
        m->L = L;
        post(ep, peer, m);
    }
}

/* Detaches the transport's endpoints (nothing reaches them any more); the
 * last transport out frees the net's endpoints and links. */
static void im_destroy(struct kumo_transport *bt)
{
    struct inmem_t *t = T(bt);
    pthread_mutex_lock(&net.mu);
    for (uint32_t i = 0; i < net.ndir; i++)
        if (net.dir[i]->owner == t) {
            net.dir[i]->eng = NULL;
            net.dir[i]->gone = true;
        }
    if (--net.users == 0) {
        while (net.links) {
            struct link *L = net.links;
            net.links = L->next_all;
            kumo__free(L, sizeof *L);
        }
        for (uint32_t i = 0; i < net.ndir; i++)
            kumo__free(net.dir[i], sizeof *net.dir[i]);
        kumo__free(net.dir, sizeof(*net.dir) * net.capdir);
        net.dir = NULL;
        net.ndir = net.capdir = 0;
    }
    pthread_mutex_unlock(&net.mu);
    kumo__free(t, sizeof *t);
}

static void im_address_str(const kumo_address *a, char *buf, size_t len)
{
    if (a->len != INMEM_ADDR_LEN) {
        snprintf(buf, len, "inmem://?");
        return;
    }
    snprintf(buf, len, "inmem://%016llx/%u/%016llx", (unsigned long long)kumo__get64(a->bytes + 2),
             kumo__get32(a->bytes + 10), (unsigned long long)kumo__get64(a->bytes + 14));
}

/* "<transport hex>/<index>/<incarnation hex>", as im_address_str writes. */
static int im_address_parse(const char *s, kumo_address *out)
{
    uint64_t tid, idx, inc;
    const char *r;
    if (!kumo__parse_hex(s, 16, "/", &tid, &r) || *r != '/' ||
        !kumo__parse_dec(r + 1, "/", UINT32_MAX, &idx, &r) || *r != '/' ||
        !kumo__parse_hex(r + 1, 16, "", &inc, &r) || *r)
        return -EINVAL;
    out->len = INMEM_ADDR_LEN;
    out->bytes[0] = KUMO__ADDR_VERSION;
    out->bytes[1] = INMEM_TAG;
    kumo__put64(out->bytes + 2, tid);
    kumo__put32(out->bytes + 10, (uint32_t)idx);
    kumo__put64(out->bytes + 14, inc);
    return 0;
}

const struct kumo__transport_ops kumo__inmem_ops = {
    .name = "inmem",
    .addr_len = INMEM_ADDR_LEN,
    .tag = INMEM_TAG,
    .caps = 0,
    .create = im_create,
    .endpoint_new = im_endpoint_new,
    .endpoint_close = im_endpoint_close,
    .connect = im_connect,
    .send = im_send,
    .conn_close = im_conn_close,
    .break_link = im_break_link,
    .destroy = im_destroy,
    .address_str = im_address_str,
    .address_parse = im_address_parse,
};
