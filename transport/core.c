/*
 * The generic half of every transport: handles, the connection table,
 * forwarding calls to the endpoint's shard, events, and teardown.
 */
#include "transport/transport.h"

#include "engine/alloc.h"
#include "engine/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

size_t kumo__iov_len(const struct iovec *iov, int n)
{
    if (n < 0 || (n > 0 && !iov))
        return SIZE_MAX;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len && !iov[i].iov_base)
            return SIZE_MAX;
        if (len + iov[i].iov_len < len)
            return SIZE_MAX;
        len += iov[i].iov_len;
    }
    return len;
}

const char *kumo_transport_strerror(int err)
{
    switch (-err) {
    case KUMO_ENOTFOUND:
        return "no endpoint at that address";
    case KUMO_ENORESOURCES:
        return "insufficient resources";
    case KUMO_ECONNFAILED:
        return "connect failed";
    case KUMO_ECLOSED:
        return "closed";
    case KUMO_ECONNLOST:
        return "connection lost";
    case KUMO_EBUSY:
        return "link busy: its send queue is full";
    case KUMO_EAUTH:
        return "authentication failed: the peer's cookie differs";
    default:
        return kumo_strerror(err);
    }
}

/* ------------------------------------------------------------------ */
/* Addresses                                                           */
/* ------------------------------------------------------------------ */

/* (eq, cmp, encode, decode: transport/address.c, pure, for the fuzzers) */

bool kumo_address_same_place(const kumo_address *a, const kumo_address *b)
{
    if (a->len < 2 || b->len < 2 || a->bytes[0] != b->bytes[0] || a->bytes[1] != b->bytes[1])
        return false;
    const struct kumo__transport_ops *ops = kumo__transport_by_tag(a->bytes[1]);
    return ops && ops->same_place && ops->same_place(a, b);
}

bool kumo_address_is_place(const kumo_address *a)
{
    if (a->len < 2)
        return false;
    const struct kumo__transport_ops *ops = kumo__transport_by_tag(a->bytes[1]);
    return ops && ops->is_place && ops->is_place(a);
}

int kumo_address_parse(const char *s, kumo_address *out)
{
    if (!s || !out)
        return -EINVAL;
    const char *sep = strstr(s, "://");
    char name[16];
    size_t n = sep ? (size_t)(sep - s) : 0;
    if (!n || n >= sizeof name)
        return -EINVAL;
    memcpy(name, s, n);
    name[n] = 0;
    const struct kumo__transport_ops *ops = kumo__transport_find(name);
    if (!ops || !ops->address_parse)
        return -EINVAL;
    kumo_address a;
    memset(&a, 0, sizeof a);
    int err = ops->address_parse(sep + 3, &a);
    if (err)
        return err;
    *out = a;
    return 0;
}

char *kumo_address_str(const kumo_address *a, char *buf, size_t len)
{
    if (!len)
        return buf;
    const struct kumo__transport_ops *ops = a->len >= 2 && a->bytes[0] == KUMO__ADDR_VERSION
                                                ? kumo__transport_by_tag(a->bytes[1])
                                                : NULL;
    if (ops && ops->address_str) {
        ops->address_str(a, buf, len);
        return buf;
    }
    size_t off = (size_t)snprintf(buf, len, "raw:");
    for (unsigned i = 0; i < a->len && off + 3 <= len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%02x", a->bytes[i]);
    return buf;
}

/* ------------------------------------------------------------------ */
/* Connection table                                                    */
/* ------------------------------------------------------------------ */

static struct kumo__conn *slot_at(struct kumo__conn_table *tb, uint32_t slot)
{
    uint32_t ci = slot / KUMO__CONN_CHUNK;
    if (ci >= KUMO__CONN_MAX_CHUNKS)
        return NULL;
    struct kumo__conn *ch = atomic_load_explicit(&tb->chunks[ci], memory_order_acquire);
    return ch ? &ch[slot % KUMO__CONN_CHUNK] : NULL;
}

struct kumo__conn *kumo__conn_alloc(struct kumo_endpoint *ep, void *impl)
{
    struct kumo__conn_table *tb = &ep->conns;
    struct kumo__conn *c;
    if (tb->free_head != UINT32_MAX) {
        c = slot_at(tb, tb->free_head);
        tb->free_head = c->next_free;
    } else {
        uint32_t s = atomic_load_explicit(&tb->hwm, memory_order_relaxed);
        uint32_t ci = s / KUMO__CONN_CHUNK;
        if (ci >= KUMO__CONN_MAX_CHUNKS)
            return NULL;
        struct kumo__conn *ch = atomic_load_explicit(&tb->chunks[ci], memory_order_relaxed);
        if (!ch) {
            ch = kumo__zalloc(sizeof(*ch) * KUMO__CONN_CHUNK);
            if (!ch)
                return NULL;
            for (uint32_t i = 0; i < KUMO__CONN_CHUNK; i++) {
                ch[i].slot = ci * KUMO__CONN_CHUNK + i;
                atomic_init(&ch[i].gen, 1);
            }
            atomic_store_explicit(&tb->chunks[ci], ch, memory_order_release);
        }
        c = &ch[s % KUMO__CONN_CHUNK];
        atomic_store_explicit(&tb->hwm, s + 1, memory_order_release);
    }
    c->impl = impl;
    c->next_free = UINT32_MAX;
    atomic_store_explicit(&c->busy, false, memory_order_relaxed);
    tb->live++;
    atomic_store_explicit(&c->state, KUMO__CONN_OPEN, memory_order_release);
    return c;
}

static void conn_release(struct kumo_endpoint *ep, struct kumo__conn *c)
{
    struct kumo__conn_table *tb = &ep->conns;
    c->impl = NULL;
    /* Bump the generation first: a handle that still names this slot must
     * not see the FREE (or a later OPEN) state as its own. */
    uint32_t g = atomic_load_explicit(&c->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&c->gen, g ? g : 1, memory_order_release);
    atomic_store_explicit(&c->state, KUMO__CONN_FREE, memory_order_release);
    c->next_free = tb->free_head;
    tb->free_head = c->slot;
    tb->live--;
}

void kumo__conn_fail(struct kumo__conn *c)
{
    uint32_t open = KUMO__CONN_OPEN;
    atomic_compare_exchange_strong(&c->state, &open, KUMO__CONN_FAILED);
}

void kumo__conn_each(struct kumo_endpoint *ep, void (*fn)(struct kumo__conn *c, void *arg),
                     void *arg)
{
    uint32_t hwm = atomic_load_explicit(&ep->conns.hwm, memory_order_relaxed);
    for (uint32_t s = 0; s < hwm; s++) {
        struct kumo__conn *c = slot_at(&ep->conns, s);
        if (c && atomic_load_explicit(&c->state, memory_order_relaxed) != KUMO__CONN_FREE)
            fn(c, arg);
    }
}

/* Looks a handle up from any thread: the slot if its generation matches. */
static struct kumo__conn *conn_lookup(kumo_conn h)
{
    struct kumo__conn *c = slot_at(&h.ep->conns, h.slot);
    if (!c || atomic_load_explicit(&c->gen, memory_order_acquire) != h.gen)
        return NULL;
    return c;
}

static int state_error(uint32_t st)
{
    return st == KUMO__CONN_FAILED ? -KUMO_ECONNLOST : -KUMO_ECLOSED;
}

/* ------------------------------------------------------------------ */
/* Events                                                              */
/* ------------------------------------------------------------------ */

void kumo__emit_lost(struct kumo_endpoint *ep, const kumo_address *addr, int reason)
{
    kumo_event ev = {.kind = KUMO_EV_ERROR,
                     .error = KUMO_ERR_CONNECTION_LOST,
                     .reason = reason,
                     .address = addr};
    kumo__emit(ep, &ev);
}

static void free_slot_fn(struct kumo__conn *c, void *arg)
{
    conn_release(arg, c);
}

void kumo__endpoint_closed(struct kumo_endpoint *ep)
{
    if (ep->closed)
        return;
    kumo__conn_each(ep, free_slot_fn, ep);
    kumo_event ev = {.kind = KUMO_EV_ENDPOINT_CLOSED};
    kumo__emit(ep, &ev);
    ep->closed = true;
    struct kumo_transport *t = ep->t;
    pthread_mutex_lock(&t->mu);
    t->open_eps--;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

struct kumo_rx *kumo__rx_keep_self(struct kumo_rx *rx)
{
    rx->kept = true;
    return rx;
}

struct kumo__rx_block *kumo__rx_block_new(size_t len)
{
    struct kumo__rx_block *b = kumo__alloc(sizeof *b + len);
    if (!b)
        return NULL;
    b->v = (struct iovec){.iov_base = b->data, .iov_len = len};
    /* free NULL: kumo_rx_free frees the block */
    b->rx = (struct kumo_rx){.iov = &b->v, .iovcnt = 1, .len = len, .keep = kumo__rx_keep_self};
    return b;
}

struct kumo_rx *kumo__rx_copy(struct kumo_rx *rx)
{
    struct kumo__rx_block *b = kumo__rx_block_new(rx->len);
    if (!b)
        return NULL;
    kumo__iov_gather(b->data, rx->iov, rx->iovcnt);
    b->rx.kept = true;
    return &b->rx;
}

kumo_rx *kumo_event_keep(const kumo_event *ev)
{
    if (!ev || !ev->rx || (ev->kind != KUMO_EV_RECEIVED && ev->kind != KUMO_EV_RECEIVED_MULTICAST))
        return NULL;
    struct kumo_rx *rx = ev->rx;
    if (rx->kept)
        return NULL; /* kept once already */
    return rx->keep ? rx->keep(rx) : kumo__rx_copy(rx);
}

int kumo_rx_iov(const kumo_rx *rx, const struct iovec **iov)
{
    *iov = rx->iov;
    return rx->iovcnt;
}

size_t kumo_rx_len(const kumo_rx *rx)
{
    return rx->len;
}

void kumo_rx_free(kumo_rx *rx)
{
    if (!rx)
        return;
    if (rx->free) {
        rx->free(rx);
        return;
    }
    kumo__free(rx, sizeof(struct kumo__rx_block) + rx->len);
}

/* ------------------------------------------------------------------ */
/* Forwarding to the endpoint's shard                                  */
/* ------------------------------------------------------------------ */

/* A call made off the endpoint's shard. */
enum fwd_kind { FWD_SEND, FWD_CLOSE_CONN, FWD_CLOSE_EP, FWD_BREAK };

struct fwd {
    struct kumo__task task;
    enum fwd_kind kind;
    kumo_conn c;
    kumo_endpoint *ep;
    kumo_address addr;
    kumo_release_fn release;
    void *release_arg;
    size_t len;
    int n;
    size_t size; /* of this block */
    struct iovec iov[];
};

static void fwd_free(struct fwd *f)
{
    kumo__free(f, f->size);
}

static void fwd_release_self(void *arg)
{
    fwd_free(arg);
}

static void do_close_conn(kumo_conn h)
{
    struct kumo__conn *c = conn_lookup(h);
    if (!c)
        return;
    uint32_t st = atomic_load_explicit(&c->state, memory_order_acquire);
    if (st == KUMO__CONN_FREE)
        return;
    h.ep->t->ops->conn_close(h.ep, c);
    conn_release(h.ep, c);
}

static void do_close_ep(kumo_endpoint *ep);

static void fwd_run(struct kumo__shard *sh, struct kumo__task *t)
{
    struct fwd *f = (struct fwd *)t;
    if (!sh) { /* the engine stopped first: drop */
        if (f->kind == FWD_SEND && f->release)
            f->release(f->release_arg);
        fwd_free(f);
        return;
    }
    switch (f->kind) {
    case FWD_SEND: {
        kumo_endpoint *ep = f->c.ep;
        struct kumo__conn *c = conn_lookup(f->c);
        int err = -KUMO_ECLOSED;
        /* The caller's buffers (lent), or the block's copy of them: lent to
         * the transport too, or, when small, passed as a copy and the
         * block freed at once (fwd_copy_max). */
        bool lent = f->release != NULL;
        bool copy = !lent && f->len <= ep->t->fwd_copy_max;
        kumo_release_fn rel = lent ? f->release : copy ? NULL : fwd_release_self;
        void *rarg = lent ? f->release_arg : copy ? NULL : f;
        /* The caller's own close (or endpoint close) may have marked the
         * slot CLOSED already, but its task is behind this one: what was
         * sent before a close still goes out.  A slot the close already
         * freed fails the lookup; a FAILED one is dropped. */
        uint32_t st = c ? atomic_load_explicit(&c->state, memory_order_acquire) : KUMO__CONN_FREE;
        if (c && !ep->shut && c->impl && (st == KUMO__CONN_OPEN || st == KUMO__CONN_CLOSED))
            err = ep->t->ops->send(ep, c, f->iov, f->n, f->len, rel, rarg);
        /* An error means dropped: the connection closed or failed after
         * the caller's check (the message counts as sent into a failing
         * link). */
        if (err && rel)
            rel(rarg); /* (the block's own release frees it) */
        if (lent || copy)
            fwd_free(f);
        return;
    }
    case FWD_CLOSE_CONN:
        do_close_conn(f->c);
        break;
    case FWD_CLOSE_EP:
        do_close_ep(f->ep);
        break;
    case FWD_BREAK:
        if (!f->ep->closed && !atomic_load(&f->ep->closing))
            f->ep->t->ops->break_link(f->ep, &f->addr);
        break;
    default:
        break;
    }
    fwd_free(f);
}

static struct fwd *fwd_new(enum fwd_kind kind, size_t extra)
{
    size_t size = sizeof(struct fwd) + extra;
    struct fwd *f = kumo__alloc(size);
    if (!f)
        return NULL;
    memset(f, 0, sizeof *f);
    f->task.fn = fwd_run;
    f->kind = kind;
    f->size = size;
    return f;
}

static int fwd_post(kumo_endpoint *ep, struct fwd *f)
{
    int err = kumo__task_post(ep->t->eng, ep->shard, &f->task);
    if (err) {
        fwd_free(f);
        return -KUMO_ECLOSED;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

int kumo_conn_send(kumo_conn h, const struct iovec *iov, int n, kumo_release_fn release,
                   void *release_arg)
{
    kumo_endpoint *ep = h.ep;
    if (!ep)
        return -EINVAL;
    size_t len = kumo__iov_len(iov, n);
    if (len == SIZE_MAX)
        return -EINVAL;
    struct kumo__conn *c = conn_lookup(h);
    if (!c)
        return -KUMO_ECLOSED;
    if (atomic_load_explicit(&ep->closing, memory_order_relaxed))
        return -KUMO_ECLOSED;
    uint32_t st = atomic_load_explicit(&c->state, memory_order_acquire);
    if (st != KUMO__CONN_OPEN)
        return state_error(st);
    if (len > ep->t->max_message)
        return -KUMO_ETOOBIG;
    if (atomic_load_explicit(&c->busy, memory_order_relaxed))
        return -KUMO_EBUSY;
    if (kumo__on_shard(ep->t->eng, ep->shard))
        return ep->t->ops->send(ep, c, iov, n, len, release, release_arg);

    /* Off the shard: forward.  Without a release the bytes travel in the
     * task (lent to the implementation, freed by its release). */
    struct fwd *f = fwd_new(FWD_SEND, kumo__iov_hold_size(n, len, release != NULL));
    if (!f)
        return -ENOMEM;
    f->n = kumo__iov_hold(f->iov, iov, n, len, release != NULL);
    f->c = h;
    f->len = len;
    f->release = release;
    f->release_arg = release_arg;
    return fwd_post(ep, f);
}

void kumo__ready_done(struct kumo__ready *r, int err)
{
    if (!err) { /* ready, unless the user closed it meanwhile */
        struct kumo__conn *c = conn_lookup(r->h);
        if (!c || atomic_load_explicit(&c->state, memory_order_acquire) != KUMO__CONN_OPEN)
            err = -KUMO_ECLOSED;
    }
    r->fn(r->h, err, r->arg);
    kumo__free(r, sizeof *r);
}

static void ready_run(struct kumo__shard *sh, struct kumo__task *t)
{
    struct kumo__ready *r = (struct kumo__ready *)t;
    if (!sh) { /* the engine stopped first */
        kumo__ready_done(r, -KUMO_ECLOSED);
        return;
    }
    kumo_endpoint *ep = r->h.ep;
    struct kumo__conn *c = conn_lookup(r->h);
    uint32_t st = c ? atomic_load_explicit(&c->state, memory_order_acquire) : KUMO__CONN_FREE;
    if (!c || ep->shut || st != KUMO__CONN_OPEN)
        kumo__ready_done(r, c && st == KUMO__CONN_FAILED ? -KUMO_ECONNLOST : -KUMO_ECLOSED);
    else if (!atomic_load_explicit(&c->busy, memory_order_relaxed) || !ep->t->ops->when_ready)
        kumo__ready_done(r, 0);
    else
        ep->t->ops->when_ready(ep, c, r);
}

int kumo_conn_when_ready(kumo_conn h, kumo_ready_fn fn, void *arg)
{
    kumo_endpoint *ep = h.ep;
    if (!ep || !fn)
        return -EINVAL;
    if (!conn_lookup(h))
        return -KUMO_ECLOSED;
    struct kumo__ready *r = kumo__alloc(sizeof *r);
    if (!r)
        return -ENOMEM;
    memset(r, 0, sizeof *r);
    r->task.fn = ready_run;
    r->h = h;
    r->fn = fn;
    r->arg = arg;
    /* Always through a task, even on the shard: fn never runs inside this
     * call. */
    if (kumo__task_post(ep->t->eng, ep->shard, &r->task)) {
        kumo__free(r, sizeof *r);
        return -KUMO_ECLOSED;
    }
    return 0;
}

int kumo_conn_close(kumo_conn h)
{
    kumo_endpoint *ep = h.ep;
    if (!ep)
        return -EINVAL;
    struct kumo__conn *c = conn_lookup(h);
    if (!c)
        return 0;
    uint32_t st = atomic_load_explicit(&c->state, memory_order_acquire);
    for (;;) {
        if (st != KUMO__CONN_OPEN && st != KUMO__CONN_FAILED)
            return 0; /* closed already, or stale */
        if (atomic_compare_exchange_weak(&c->state, &st, KUMO__CONN_CLOSED))
            break;
    }
    if (atomic_load_explicit(&c->gen, memory_order_acquire) != h.gen) {
        /* The slot was reused under us: the CAS hit a newer connection's
         * state only if it was OPEN/FAILED; give it back. */
        atomic_compare_exchange_strong(&c->state, &(uint32_t){KUMO__CONN_CLOSED}, st);
        return 0;
    }
    if (kumo__on_shard(ep->t->eng, ep->shard)) {
        do_close_conn(h);
        return 0;
    }
    struct fwd *f = fwd_new(FWD_CLOSE_CONN, 0);
    if (!f)
        return 0; /* state is CLOSED: the endpoint's close frees the slot */
    f->c = h;
    fwd_post(ep, f);
    return 0;
}

static void connect_run(struct kumo__shard *sh, struct kumo__task *t)
{
    struct kumo__connect_req *req = (struct kumo__connect_req *)t;
    if (!sh) {
        kumo__free(req, sizeof *req);
        return;
    }
    kumo_endpoint *ep = req->ep;
    if (ep->closed || atomic_load(&ep->closing)) {
        kumo__connect_done(req, NULL, -KUMO_ECLOSED);
        return;
    }
    ep->t->ops->connect(ep, req);
}

int kumo_connect(kumo_endpoint *ep, const kumo_address *to, kumo_reliability rel,
                 const kumo_hints *hints, kumo_connect_fn cb, void *arg)
{
    if (!ep || !to || !cb || to->len > KUMO_ADDRESS_MAX)
        return -EINVAL;
    if (to->len < 2 || to->bytes[0] != KUMO__ADDR_VERSION || to->bytes[1] != ep->t->ops->tag ||
        (ep->t->ops->addr_len && to->len != ep->t->ops->addr_len))
        return -EINVAL; /* not an address of this transport */
    if (rel != KUMO_RELIABLE_ORDERED) {
        unsigned need = rel == KUMO_RELIABLE_UNORDERED ? KUMO_TCAP_UNORDERED
                        : rel == KUMO_UNRELIABLE       ? KUMO_TCAP_UNRELIABLE
                                                       : 0;
        if (!need)
            return -EINVAL;
        if (!(ep->t->ops->caps & need))
            return -ENOTSUP;
    }
    if (atomic_load(&ep->closing))
        return -KUMO_ECLOSED;
    struct kumo__connect_req *req = kumo__zalloc(sizeof *req);
    if (!req)
        return -ENOMEM;
    req->task.fn = connect_run;
    req->ep = ep;
    req->to = *to;
    req->rel = rel;
    if (hints) {
        req->hints = *hints;
        if (hints->class_name) {
            snprintf(req->class_name, sizeof req->class_name, "%s", hints->class_name);
            req->hints.class_name = req->class_name;
        }
    }
    req->cb = cb;
    req->arg = arg;
    /* Always through a task (to ourselves when on the shard): the callback
     * never runs inside this call. */
    if (kumo__task_post(ep->t->eng, ep->shard, &req->task)) {
        kumo__free(req, sizeof *req);
        return -KUMO_ECLOSED;
    }
    return 0;
}

void kumo__connect_done(struct kumo__connect_req *req, struct kumo__conn *c, int err)
{
    kumo_endpoint *ep = req->ep;
    kumo_conn h = {0};
    if (!err)
        h = kumo__conn_handle(ep, c);
    req->cb(ep, h, err, req->arg);
    kumo__free(req, sizeof *req);
}

/* ------------------------------------------------------------------ */
/* Multicast                                                           */
/* ------------------------------------------------------------------ */

/* What every multicast call requires: a transport that has it, called on
 * the endpoint's shard (where multicast groups are made and used). */
static int multicast_check(const kumo_endpoint *ep, const kumo_address *group)
{
    if (!ep || !group)
        return -EINVAL;
    if (!(ep->t->ops->caps & KUMO_TCAP_MULTICAST))
        return -ENOTSUP;
    if (!kumo__on_shard(ep->t->eng, ep->shard))
        return -EINVAL;
    return 0;
}

int kumo_multicast_new(kumo_endpoint *ep, kumo_address *group)
{
    int err = multicast_check(ep, group);
    if (err)
        return err;
    return ep->t->ops->multicast_new(ep, group);
}

int kumo_multicast_subscribe(kumo_endpoint *ep, const kumo_address *group)
{
    int err = multicast_check(ep, group);
    if (err)
        return err;
    return ep->t->ops->multicast_subscribe(ep, group);
}

int kumo_multicast_send(kumo_endpoint *ep, const kumo_address *group, const struct iovec *iov,
                        int n)
{
    int err = multicast_check(ep, group);
    if (err)
        return err;
    return ep->t->ops->multicast_send(ep, group, iov, n);
}

/* ------------------------------------------------------------------ */
/* Endpoints                                                           */
/* ------------------------------------------------------------------ */

int kumo_endpoint_new(kumo_transport *t, unsigned shard, kumo_event_fn on_event, void *arg,
                      kumo_endpoint **out)
{
    if (!t || !on_event || !out || shard >= t->eng->n)
        return -EINVAL;
    pthread_mutex_lock(&t->mu);
    bool closed = t->closed;
    if (!closed)
        t->open_eps++; /* reserved now so a concurrent free waits for us */
    pthread_mutex_unlock(&t->mu);
    if (closed)
        return -KUMO_ECLOSED;
    /* Every generic field is set here, before the implementation publishes
     * the endpoint to its shard (which may use it at once). */
    struct kumo_endpoint tmpl = {.t = t, .shard = shard, .fn = on_event, .arg = arg};
    tmpl.conns.free_head = UINT32_MAX;
    struct kumo_endpoint *ep = NULL;
    int err = t->ops->endpoint_new(t, &tmpl, &ep);
    pthread_mutex_lock(&t->mu);
    if (err) {
        t->open_eps--;
        pthread_cond_broadcast(&t->cv);
    } else {
        ep->next = t->eps;
        t->eps = ep;
    }
    bool close_now = !err && t->closed;
    pthread_mutex_unlock(&t->mu);
    if (err)
        return err;
    if (close_now)
        kumo_endpoint_close(ep);
    *out = ep;
    return 0;
}

const kumo_address *kumo_endpoint_address(const kumo_endpoint *ep)
{
    return &ep->addr;
}
unsigned kumo_endpoint_shard(const kumo_endpoint *ep)
{
    return ep->shard;
}
kumo_transport *kumo_endpoint_transport(const kumo_endpoint *ep)
{
    return ep->t;
}

static void close_conn_state(struct kumo__conn *c, void *arg)
{
    atomic_store_explicit(&c->state, KUMO__CONN_CLOSED, memory_order_release);
}

static void do_close_ep(kumo_endpoint *ep)
{
    if (ep->shut)
        return;
    ep->shut = true;
    kumo__conn_each(ep, close_conn_state, NULL);
    ep->t->ops->endpoint_close(ep);
}

int kumo_endpoint_close(kumo_endpoint *ep)
{
    if (!ep)
        return -EINVAL;
    if (atomic_exchange(&ep->closing, 1))
        return 0;
    if (kumo__on_shard(ep->t->eng, ep->shard)) {
        do_close_ep(ep);
        return 0;
    }
    struct fwd *f;
    /* The close must happen: retry the allocation rather than lose it. */
    while (!(f = fwd_new(FWD_CLOSE_EP, 0)))
        sched_yield();
    f->ep = ep;
    return fwd_post(ep, f);
}

int kumo_transport_break_link(kumo_endpoint *ep, const kumo_address *peer)
{
    if (!ep || !peer)
        return -EINVAL;
    if (atomic_load(&ep->closing))
        return -KUMO_ECLOSED;
    if (kumo__on_shard(ep->t->eng, ep->shard)) {
        ep->t->ops->break_link(ep, peer);
        return 0;
    }
    struct fwd *f = fwd_new(FWD_BREAK, 0);
    if (!f)
        return -ENOMEM;
    f->ep = ep;
    f->addr = *peer;
    return fwd_post(ep, f);
}

/* ------------------------------------------------------------------ */
/* Transports                                                          */
/* ------------------------------------------------------------------ */

int kumo__transport_new(struct kumo__engine *eng, const char *name, const void *cfg,
                        kumo_transport **out)
{
    if (!eng || !name || !out)
        return -EINVAL;
    const struct kumo__transport_ops *ops = kumo__transport_find(name);
    if (!ops)
        return -ENOENT;
    struct kumo_transport *t = NULL;
    int err = ops->create(eng, cfg, &t);
    if (err)
        return err;
    t->ops = ops;
    t->eng = eng;
    t->max_message = ops->max_message ? ops->max_message(t) : SIZE_MAX;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->closed = false;
    t->open_eps = 0;
    t->eps = NULL;
    *out = t;
    return 0;
}

const char *kumo_transport_name(const kumo_transport *t)
{
    return t->ops->name;
}
unsigned kumo_transport_caps(const kumo_transport *t)
{
    return t->ops->caps;
}

void kumo_transport_close(kumo_transport *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->closed = true;
    struct kumo_endpoint *list = t->eps;
    pthread_mutex_unlock(&t->mu);
    /* Endpoints are only ever prepended, so the list from here on is
     * stable; one made concurrently closes itself (close_now). */
    for (struct kumo_endpoint *ep = list; ep; ep = ep->next)
        kumo_endpoint_close(ep);
}

/* Engine barrier: once every shard has seen a task from every shard (and
 * from this thread) after the endpoints closed, no task posted before
 * remains queued anywhere, because each (source, destination) path is
 * FIFO. */
struct barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned pending;
    struct kumo__engine *eng;
};

struct barrier_task {
    struct kumo__task task;
    struct barrier *b;
    bool fan_out;
};

static void barrier_done(struct barrier *b)
{
    pthread_mutex_lock(&b->mu);
    b->pending--;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void barrier_run(struct kumo__shard *sh, struct kumo__task *t)
{
    struct barrier_task *bt = (struct barrier_task *)t;
    struct barrier *b = bt->b;
    if (sh && bt->fan_out) {
        /* Reuse this task for ourselves after posting to the others. */
        for (unsigned i = 0; i < b->eng->n; i++) {
            if (i == sh->id)
                continue;
            struct barrier_task *o = kumo__alloc(sizeof *o);
            if (o) {
                *o = (struct barrier_task){.task.fn = barrier_run, .b = b};
                if (kumo__task_post(b->eng, i, &o->task) == 0)
                    continue;
                kumo__free(o, sizeof *o);
            }
            barrier_done(b); /* could not post: the engine is stopping */
        }
    }
    kumo__free(bt, sizeof *bt);
    barrier_done(b);
}

static void engine_barrier(struct kumo__engine *eng)
{
    struct barrier b = {.pending = eng->n * eng->n, .eng = eng};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    for (unsigned i = 0; i < eng->n; i++) {
        struct barrier_task *bt = kumo__alloc(sizeof *bt);
        bool ok = false;
        if (bt) {
            *bt = (struct barrier_task){.task.fn = barrier_run, .b = &b, .fan_out = true};
            ok = kumo__task_post(eng, i, &bt->task) == 0;
            if (!ok)
                kumo__free(bt, sizeof *bt);
        }
        if (!ok) {
            pthread_mutex_lock(&b.mu);
            b.pending -= eng->n;
            pthread_mutex_unlock(&b.mu);
        }
    }
    pthread_mutex_lock(&b.mu);
    while (b.pending)
        pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cv);
}

static void free_chunks(struct kumo_endpoint *ep)
{
    for (uint32_t i = 0; i < KUMO__CONN_MAX_CHUNKS; i++) {
        struct kumo__conn *ch = atomic_load(&ep->conns.chunks[i]);
        if (!ch)
            break;
        kumo__free(ch, sizeof(*ch) * KUMO__CONN_CHUNK);
    }
}

void kumo_transport_free(kumo_transport *t)
{
    if (!t)
        return;
    kumo_transport_close(t);
    pthread_mutex_lock(&t->mu);
    while (t->open_eps)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    engine_barrier(t->eng);
    for (struct kumo_endpoint *ep = t->eps; ep; ep = ep->next)
        free_chunks(ep);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    t->ops->destroy(t);
}
