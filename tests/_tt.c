/* Transport test helpers: see _tt.h. */
#include "_tt.h"
#include "_kt.h"

#include "engine/alloc.h"
#include "transport/stream/auth.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t tt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timespec deadline_in(int64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec += ns % 1000000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/* ------------------------------------------------------------------ */
/* Engine and leak check                                               */
/* ------------------------------------------------------------------ */

static void h_deliver(void *ctx, struct kumo__shard *sh, struct kumo__item *it) {}
static unsigned h_run(void *ctx, struct kumo__shard *sh)
{
    return 0;
}
static void h_timer(void *ctx, struct kumo__shard *sh, struct kumo__timer *t) {}
static void h_shutdown(void *ctx, struct kumo__shard *sh) {}
static void h_discard(void *ctx, struct kumo__item *it) {}

static struct kumo__engine *engine_new(unsigned shards)
{
    struct kumo__engine_config cfg = {.shards = shards, .no_pin = true, .spin_ns = 20000};
    struct kumo__engine_hooks hooks = {.deliver = h_deliver,
                                       .run = h_run,
                                       .timer = h_timer,
                                       .shutdown = h_shutdown,
                                       .discard = h_discard};
    struct kumo__engine *eng = NULL;
    int err = kumo__engine_create(&cfg, &hooks, &eng);
    cr_assert_eq(err, 0, "engine create: %s", kumo_strerror(err));
    err = kumo__engine_start(eng);
    cr_assert_eq(err, 0, "engine start: %s", kumo_strerror(err));
    return eng;
}

struct kumo__engine *tt_start(unsigned shards)
{
    kumo_log_set_level(KUMO_LOG_WARN);
    setenv("KUMO_COOKIE", TT_COOKIE, 0);
#if KT_LEAKS_JEMALLOC
    /* As in _kt.c: glibc's one-time allocations and the transport list go
     * into the baseline. */
    static unsigned warmed_for;
    if (warmed_for < shards) {
        struct kumo__engine *w = engine_new(shards);
        kt_leak_warm_libc();
        kumo__engine_stop(w);
        kumo__engine_destroy(w);
        const char *names[8];
        kumo_transport_list(names, 8);
        warmed_for = shards;
    }
#endif
    kt_leak_baseline();
    return engine_new(shards);
}

void tt_stop(struct kumo__engine *eng)
{
    kumo__engine_stop(eng);
    kumo__engine_destroy(eng);
    kt_leak_check();
}

kumo_transport *tt_transport_cfg(struct kumo__engine *eng, const char *name, const void *cfg)
{
    kumo_transport *t = NULL;
    int err = kumo__transport_new(eng, name, cfg, &t);
    cr_assert_eq(err, 0, "transport %s: %s", name, kumo_transport_strerror(err));
    return t;
}

kumo_transport *tt_transport(struct kumo__engine *eng, const char *name)
{
    if (strcmp(name, "tcp") == 0) {
        static kumo_tcp_config cfg;
        cfg = (kumo_tcp_config){.bind_host = "127.0.0.1"};
        return tt_transport_cfg(eng, name, &cfg);
    }
    return tt_transport_cfg(eng, name, NULL);
}

/* ------------------------------------------------------------------ */
/* Recorders                                                           */
/* ------------------------------------------------------------------ */

static const char *kind_name(kumo_event_kind k)
{
    switch (k) {
    case KUMO_EV_CONNECTION_OPENED:
        return "ConnectionOpened";
    case KUMO_EV_RECEIVED:
        return "Received";
    case KUMO_EV_CONNECTION_CLOSED:
        return "ConnectionClosed";
    case KUMO_EV_RECEIVED_MULTICAST:
        return "ReceivedMulticast";
    case KUMO_EV_ENDPOINT_CLOSED:
        return "EndPointClosed";
    case KUMO_EV_ERROR:
        return "Error";
    }
    return "?";
}

static const char *error_name(kumo_event_error e)
{
    switch (e) {
    case KUMO_ERR_CONNECTION_LOST:
        return "ConnectionLost";
    case KUMO_ERR_ENDPOINT_FAILED:
        return "EndPointFailed";
    case KUMO_ERR_TRANSPORT_FAILED:
        return "TransportFailed";
    }
    return "?";
}

const char *tt_ev_str(const tt_ev *ev, char *buf, size_t len)
{
    char ab[128];
    switch (ev->kind) {
    case KUMO_EV_ERROR:
        snprintf(buf, len, "Error(%s %s, %s)", error_name(ev->error),
                 kumo_address_str(&ev->addr, ab, sizeof ab), kumo_transport_strerror(ev->reason));
        break;
    case KUMO_EV_RECEIVED:
        snprintf(buf, len, "Received(conn %" PRIu64 ", %zu bytes in %d pieces)", ev->conn, ev->len,
                 ev->iovcnt);
        break;
    case KUMO_EV_CONNECTION_OPENED:
        snprintf(buf, len, "ConnectionOpened(conn %" PRIu64 ", from %s)", ev->conn,
                 kumo_address_str(&ev->addr, ab, sizeof ab));
        break;
    case KUMO_EV_CONNECTION_CLOSED:
        snprintf(buf, len, "ConnectionClosed(conn %" PRIu64 ")", ev->conn);
        break;
    default:
        snprintf(buf, len, "%s", kind_name(ev->kind));
    }
    return buf;
}

void tt_ev_free(tt_ev *ev)
{
    if (ev->data)
        free(ev->data);
    ev->data = NULL;
}

void tt_ep_failf(tt_ep *e, const char *fmt, ...)
{
    pthread_mutex_lock(&e->mu);
    if (!e->fail[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->fail, sizeof e->fail, fmt, ap);
        va_end(ap);
    }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void tt_ep_check(tt_ep *e)
{
    pthread_mutex_lock(&e->mu);
    char f[256];
    snprintf(f, sizeof f, "%s", e->fail);
    unsigned after = e->after_closed;
    pthread_mutex_unlock(&e->mu);
    cr_assert_eq(f[0], 0, "%s: %s", e->name, f);
    cr_assert_eq(after, 0, "%s: %u events after EndPointClosed", e->name, after);
}

static void tt_cb(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    tt_ep *e = arg;
    bool record = e->hook ? e->hook(e, ev) : true;
    tt_ev r = {.kind = ev->kind,
               .error = ev->error,
               .reason = ev->reason,
               .conn = ev->conn,
               .reliability = ev->reliability,
               .len = ev->len,
               .iovcnt = ev->iovcnt};
    if (ev->address)
        r.addr = *ev->address;
    if (record && e->copy_data && ev->kind == KUMO_EV_RECEIVED) {
        r.data = malloc(ev->len ? ev->len : 1);
        size_t off = 0;
        for (int i = 0; i < ev->iovcnt; i++) {
            memcpy(r.data + off, ev->iov[i].iov_base, ev->iov[i].iov_len);
            off += ev->iov[i].iov_len;
        }
        if (off != ev->len)
            tt_ep_failf(e, "Received: iov total %zu != len %zu", off, ev->len);
    }
    pthread_mutex_lock(&e->mu);
    if (e->closed)
        e->after_closed++;
    switch (ev->kind) {
    case KUMO_EV_RECEIVED:
        e->received++;
        break;
    case KUMO_EV_CONNECTION_OPENED:
        e->opened++;
        break;
    case KUMO_EV_CONNECTION_CLOSED:
        e->conn_closed++;
        break;
    case KUMO_EV_ERROR:
        if (ev->error == KUMO_ERR_CONNECTION_LOST)
            e->lost++;
        break;
    case KUMO_EV_ENDPOINT_CLOSED:
        e->closed = true;
        break;
    default:
        break;
    }
    if (record) {
        if (e->n == e->cap) {
            size_t ncap = e->cap ? e->cap * 2 : 64;
            tt_ev *nq = malloc(sizeof(*nq) * ncap);
            for (size_t i = 0; i < e->n; i++)
                nq[i] = e->q[(e->head + i) % e->cap];
            free(e->q);
            e->q = nq;
            e->cap = ncap;
            e->head = 0;
        }
        e->q[(e->head + e->n) % e->cap] = r;
        e->n++;
    }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

tt_ep *tt_ep_new_hook(kumo_transport *t, unsigned shard, const char *name, tt_hook hook, void *user)
{
    tt_ep *e = calloc(1, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->name = name;
    e->copy_data = true;
    e->hook = hook;
    e->user = user;
    int err = kumo_endpoint_new(t, shard, tt_cb, e, &e->ep);
    cr_assert_eq(err, 0, "endpoint %s on shard %u: %s", name, shard, kumo_transport_strerror(err));
    e->addr = *kumo_endpoint_address(e->ep);
    return e;
}

tt_ep *tt_ep_new(kumo_transport *t, unsigned shard, const char *name)
{
    return tt_ep_new_hook(t, shard, name, NULL, NULL);
}

static bool echo_hook(tt_ep *e, const kumo_event *ev);

void tt_ep_free(tt_ep *e)
{
    if (!e)
        return;
    if (e->hook == echo_hook)
        free(e->user); /* its table went with EndPointClosed */
    for (size_t i = 0; i < e->n; i++)
        tt_ev_free(&e->q[(e->head + i) % e->cap]);
    free(e->q);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

static const char *dump(tt_ep *e, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < e->n && i < 12 && off + 100 < len; i++) {
        char eb[200];
        off += (size_t)snprintf(buf + off, len - off, "\n    #%zu %s", i,
                                tt_ev_str(&e->q[(e->head + i) % e->cap], eb, sizeof eb));
    }
    if (!e->n)
        snprintf(buf, len, " (empty)");
    return buf;
}

/* Waits for an event satisfying (kind == 0 || kind matches); with `skip`,
 * earlier events are dropped. */
static tt_ev take(tt_ep *e, kumo_event_kind kind, bool skip, const char *what)
{
    struct timespec dl = deadline_in(TT_WAIT_NS);
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (e->n) {
            tt_ev ev = e->q[e->head];
            if (!kind || ev.kind == kind || !skip) {
                e->head = (e->head + 1) % e->cap;
                e->n--;
                pthread_mutex_unlock(&e->mu);
                return ev;
            }
            e->head = (e->head + 1) % e->cap;
            e->n--;
            tt_ev_free(&ev);
        }
        if (pthread_cond_timedwait(&e->cv, &e->mu, &dl) == ETIMEDOUT && !e->n) {
            char b[2048];
            dump(e, b, sizeof b);
            pthread_mutex_unlock(&e->mu);
            cr_assert_fail("%s: no %s within %lld ms; queue:%s", e->name, what, TT_WAIT_NS / TT_MS,
                           b);
        }
    }
}

tt_ev tt_next(tt_ep *e)
{
    return take(e, 0, false, "event");
}

tt_ev tt_expect(tt_ep *e, kumo_event_kind kind)
{
    tt_ev ev = take(e, kind, false, kind_name(kind));
    if (ev.kind != kind) {
        char a[200], b[2048];
        tt_ev_str(&ev, a, sizeof a);
        pthread_mutex_lock(&e->mu);
        dump(e, b, sizeof b);
        pthread_mutex_unlock(&e->mu);
        cr_assert_fail("%s: expected %s, got %s; rest of queue:%s", e->name, kind_name(kind), a, b);
    }
    return ev;
}

tt_ev tt_expect_error(tt_ep *e, kumo_event_error error)
{
    tt_ev ev = tt_expect(e, KUMO_EV_ERROR);
    cr_assert_eq(ev.error, error, "%s: expected Error(%s), got Error(%s)", e->name,
                 error_name(error), error_name(ev.error));
    return ev;
}

tt_ev tt_find(tt_ep *e, kumo_event_kind kind)
{
    return take(e, kind, true, kind_name(kind));
}

tt_ev tt_recv(tt_ep *e)
{
    return tt_expect(e, KUMO_EV_RECEIVED);
}

void tt_wait_counter(tt_ep *e, const uint64_t *counter, uint64_t n, const char *what)
{
    struct timespec dl = deadline_in(TT_WAIT_NS);
    pthread_mutex_lock(&e->mu);
    while (*counter < n && !e->fail[0]) {
        if (pthread_cond_timedwait(&e->cv, &e->mu, &dl) == ETIMEDOUT && *counter < n) {
            uint64_t have = *counter;
            pthread_mutex_unlock(&e->mu);
            cr_assert_fail("%s: %s reached %" PRIu64 " of %" PRIu64 " within %lld ms", e->name,
                           what, have, n, TT_WAIT_NS / TT_MS);
        }
    }
    pthread_mutex_unlock(&e->mu);
    tt_ep_check(e);
}

void tt_expect_empty(tt_ep *e)
{
    pthread_mutex_lock(&e->mu);
    size_t n = e->n;
    char b[2048];
    dump(e, b, sizeof b);
    pthread_mutex_unlock(&e->mu);
    cr_assert_eq(n, 0, "%s: expected no events, have:%s", e->name, b);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
    kumo_conn c;
};

static void connect_cb(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->err = err;
    w->c = c;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int tt_connect_err(tt_ep *from, const kumo_address *to, kumo_conn *out)
{
    return tt_connect_hints(from, to, NULL, out);
}

int tt_connect_hints(tt_ep *from, const kumo_address *to, const kumo_hints *hints, kumo_conn *out)
{
    struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    int err = kumo_connect(from->ep, to, KUMO_RELIABLE_ORDERED, hints, connect_cb, &w);
    if (err)
        return err;
    struct timespec dl = deadline_in(TT_WAIT_NS);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        if (pthread_cond_timedwait(&w.cv, &w.mu, &dl) == ETIMEDOUT && !w.done) {
            pthread_mutex_unlock(&w.mu);
            cr_assert_fail("%s: connect callback not called within %lld ms", from->name,
                           TT_WAIT_NS / TT_MS);
        }
    pthread_mutex_unlock(&w.mu);
    if (out)
        *out = w.c;
    return w.err;
}

kumo_conn tt_connect(tt_ep *from, const kumo_address *to)
{
    kumo_conn c = {0};
    int err = tt_connect_err(from, to, &c);
    char ab[128];
    cr_assert_eq(err, 0, "%s: connect to %s: %s", from->name, kumo_address_str(to, ab, sizeof ab),
                 kumo_transport_strerror(err));
    cr_assert_not_null(c.ep);
    return c;
}

void tt_send(kumo_conn c, const void *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    int err = kumo_conn_send(c, &iov, 1, NULL, NULL);
    cr_assert_eq(err, 0, "send %zu bytes: %s", len, kumo_transport_strerror(err));
}

/* ------------------------------------------------------------------ */
/* Echo server                                                         */
/* ------------------------------------------------------------------ */

struct echo_conn {
    struct echo *es;
    uint64_t id;
    kumo_address from;
    kumo_conn reply;
    bool ready, close_after, orphan;
    kumo_rx **pend;
    size_t npend, cap;
};

struct echo {
    struct echo_conn **by_id;
    size_t cap;
    _Atomic uint64_t open_replies;
};

static void ec_free(struct echo_conn *ec)
{
    for (size_t i = 0; i < ec->npend; i++)
        kumo_rx_free(ec->pend[i]);
    free(ec->pend);
    free(ec);
}

static void rx_release(void *arg)
{
    kumo_rx_free(arg);
}

static void echo_send(tt_ep *e, struct echo_conn *ec, kumo_rx *rx)
{
    const struct iovec *iov;
    int n = kumo_rx_iov(rx, &iov);
    int err = kumo_conn_send(ec->reply, iov, n, rx_release, rx);
    if (err) {
        kumo_rx_free(rx);
        if (err != -KUMO_ECONNLOST && err != -KUMO_ECLOSED)
            tt_ep_failf(e, "echo send: %s", kumo_transport_strerror(err));
    }
}

static void echo_connected(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    struct echo_conn *ec = arg;
    if (ec->orphan || err) {
        if (!err)
            kumo_conn_close(c);
        if (!ec->orphan)
            ec->es->by_id[ec->id] = NULL;
        ec_free(ec);
        return;
    }
    ec->reply = c;
    ec->ready = true;
    atomic_fetch_add(&ec->es->open_replies, 1);
    for (size_t i = 0; i < ec->npend; i++) {
        const struct iovec *iov;
        int n = kumo_rx_iov(ec->pend[i], &iov);
        if (kumo_conn_send(ec->reply, iov, n, rx_release, ec->pend[i]))
            kumo_rx_free(ec->pend[i]);
    }
    ec->npend = 0;
    if (ec->close_after) {
        kumo_conn_close(ec->reply);
        atomic_fetch_sub(&ec->es->open_replies, 1);
        ec->es->by_id[ec->id] = NULL;
        ec_free(ec);
    }
}

static void echo_drop(struct echo *es, struct echo_conn *ec)
{
    if (ec->ready) {
        kumo_conn_close(ec->reply);
        atomic_fetch_sub(&es->open_replies, 1);
        es->by_id[ec->id] = NULL;
        ec_free(ec);
    } else {
        ec->close_after = true;
    }
}

static bool echo_hook(tt_ep *e, const kumo_event *ev)
{
    struct echo *es = e->user;
    switch (ev->kind) {
    case KUMO_EV_CONNECTION_OPENED: {
        if (ev->conn >= es->cap) {
            size_t ncap = es->cap ? es->cap : 64;
            while (ncap <= ev->conn)
                ncap *= 2;
            es->by_id = realloc(es->by_id, sizeof(*es->by_id) * ncap);
            memset(es->by_id + es->cap, 0, sizeof(*es->by_id) * (ncap - es->cap));
            es->cap = ncap;
        }
        struct echo_conn *ec = calloc(1, sizeof *ec);
        ec->es = es;
        ec->id = ev->conn;
        ec->from = *ev->address;
        es->by_id[ev->conn] = ec;
        int err = kumo_connect(e->ep, ev->address, KUMO_RELIABLE_ORDERED, NULL, echo_connected, ec);
        if (err) {
            tt_ep_failf(e, "echo connect: %s", kumo_transport_strerror(err));
            es->by_id[ev->conn] = NULL;
            free(ec);
        }
        return false;
    }
    case KUMO_EV_RECEIVED: {
        struct echo_conn *ec = ev->conn < es->cap ? es->by_id[ev->conn] : NULL;
        if (!ec) {
            tt_ep_failf(e, "echo: message on unknown connection %" PRIu64, ev->conn);
            return false;
        }
        kumo_rx *rx = kumo_event_keep(ev);
        if (!rx) {
            tt_ep_failf(e, "echo: kumo_event_keep failed");
            return false;
        }
        if (ec->ready) {
            echo_send(e, ec, rx);
        } else {
            if (ec->npend == ec->cap) {
                ec->cap = ec->cap ? ec->cap * 2 : 16;
                ec->pend = realloc(ec->pend, sizeof(*ec->pend) * ec->cap);
            }
            ec->pend[ec->npend++] = rx;
        }
        return false;
    }
    case KUMO_EV_CONNECTION_CLOSED: {
        struct echo_conn *ec = ev->conn < es->cap ? es->by_id[ev->conn] : NULL;
        if (ec)
            echo_drop(es, ec);
        return true;
    }
    case KUMO_EV_ERROR:
        if (ev->error == KUMO_ERR_CONNECTION_LOST)
            for (size_t i = 0; i < es->cap; i++)
                if (es->by_id[i] && kumo_address_eq(&es->by_id[i]->from, ev->address))
                    echo_drop(es, es->by_id[i]);
        return true;
    case KUMO_EV_ENDPOINT_CLOSED:
        for (size_t i = 0; i < es->cap; i++) {
            struct echo_conn *ec = es->by_id[i];
            if (!ec)
                continue;
            if (ec->ready) {
                atomic_fetch_sub(&es->open_replies, 1);
                ec_free(ec);
            } else {
                ec->orphan = true; /* its connect callback frees it */
            }
        }
        free(es->by_id);
        es->by_id = NULL;
        es->cap = 0;
        return true;
    default:
        return true;
    }
}

tt_pair tt_pair_new(struct kumo__engine *eng, kumo_transport *t)
{
    tt_log_capture();
    tt_pair p = {.eng = eng, .t = t};
    p.srv = tt_ep_new(t, 1, "server");
    p.cl = tt_ep_new(t, 0, "client");
    p.c = tt_connect(p.cl, &p.srv->addr);
    tt_ev o = tt_expect(p.srv, KUMO_EV_CONNECTION_OPENED);
    cr_assert(kumo_address_eq(&o.addr, &p.cl->addr));
    return p;
}

void tt_pair_finish(tt_pair *p)
{
    kumo_transport_free(p->t);
    tt_ep_check(p->srv);
    tt_ep_check(p->cl);
    tt_ep_free(p->srv);
    tt_ep_free(p->cl);
    kumo_log_set_sink(NULL, NULL);
    tt_stop(p->eng);
}

tt_ep *tt_echo_new(kumo_transport *t, unsigned shard)
{
    struct echo *es = calloc(1, sizeof *es);
    return tt_ep_new_hook(t, shard, "echo", echo_hook, es);
}

uint64_t tt_echo_open(tt_ep *e)
{
    struct echo *es = e->user;
    return atomic_load(&es->open_replies);
}

/* ------------------------------------------------------------------ */
/* Running code on a shard                                             */
/* ------------------------------------------------------------------ */

struct on_shard {
    struct kumo__task task;
    void (*fn)(void *arg);
    void *arg;
    struct waiter w;
};

static void on_shard_run(struct kumo__shard *sh, struct kumo__task *t)
{
    struct on_shard *o = (struct on_shard *)t;
    if (sh)
        o->fn(o->arg);
    pthread_mutex_lock(&o->w.mu);
    o->w.done = true;
    o->w.err = sh ? 0 : -1;
    pthread_cond_broadcast(&o->w.cv);
    pthread_mutex_unlock(&o->w.mu);
}

void tt_on_shard(struct kumo__engine *eng, unsigned shard, void (*fn)(void *arg), void *arg)
{
    struct on_shard o = {.task.fn = on_shard_run,
                         .fn = fn,
                         .arg = arg,
                         .w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER}};
    cr_assert_eq(kumo__task_post(eng, shard, &o.task), 0);
    pthread_mutex_lock(&o.w.mu);
    while (!o.w.done)
        pthread_cond_wait(&o.w.cv, &o.w.mu);
    pthread_mutex_unlock(&o.w.mu);
    cr_assert_eq(o.w.err, 0, "task did not run on shard %u", shard);
}

/* ------------------------------------------------------------------ */
/* Log capture                                                         */
/* ------------------------------------------------------------------ */

static struct {
    pthread_mutex_t mu;
    char text[1u << 20]; /* (static: a test at DEBUG level logs a lot) */
    size_t off;
} logcap = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void capture(kumo_log_level level, const char *line, void *arg)
{
    pthread_mutex_lock(&logcap.mu);
    size_t n = strlen(line);
    if (logcap.off + n + 2 < sizeof logcap.text) {
        memcpy(logcap.text + logcap.off, line, n);
        logcap.off += n;
        logcap.text[logcap.off++] = '\n';
        logcap.text[logcap.off] = 0;
    }
    pthread_mutex_unlock(&logcap.mu);
}

void tt_log_capture(void)
{
    pthread_mutex_lock(&logcap.mu);
    logcap.off = 0;
    logcap.text[0] = 0;
    pthread_mutex_unlock(&logcap.mu);
    kumo_log_set_sink(capture, NULL);
}

bool tt_logged(const char *needle)
{
    pthread_mutex_lock(&logcap.mu);
    bool found = strstr(logcap.text, needle) != NULL;
    pthread_mutex_unlock(&logcap.mu);
    return found;
}

const char *tt_log_text(void)
{
    return logcap.text;
}

/* ---- raw peers ---- */

_Static_assert(sizeof(((tt_hs *)0)->nonce_c) == KUMO__NONCE, "tt_hs's nonce");

size_t tt_hs_hello(tt_hs *hs, const kumo_address *from, const kumo_address *to, uint8_t *out)
{
    uint8_t hello[KUMO__TCP_HELLO_MAX];
    hs->from = *from;
    hs->to = *to;
    kumo__auth_nonce(hs->nonce_c);
    size_t n = kumo__tcp_hello_encode(hello, from, to, 0, hs->nonce_c);
    unsigned h = kumo__tcp_hdr_encode(out, KUMO__T_HELLO, 0, 0, (uint32_t)n, 0);
    memcpy(out + h, hello, n);
    return h + n;
}

bool tt_hs_auth(tt_hs *hs, const char *cookie, const uint8_t *ack, size_t ack_len, uint8_t *out,
                size_t *len)
{
    cr_assert_eq(ack_len, (size_t)KUMO__TCP_ACK_OK, "an OK HELLO_ACK is %d bytes, not %zu",
                 KUMO__TCP_ACK_OK, ack_len);
    const uint8_t *nonce_a = ack + KUMO__TCP_ACK;
    uint8_t want[KUMO__MAC], mac[KUMO__MAC];
    const uint8_t *key = (const uint8_t *)cookie;
    size_t klen = strlen(cookie);
    kumo__auth_mac(key, klen, true, hs->nonce_c, nonce_a, &hs->from, &hs->to, want);
    bool ok = kumo__auth_equal(ack + KUMO__TCP_ACK + KUMO__NONCE, want);
    kumo__auth_mac(key, klen, false, hs->nonce_c, nonce_a, &hs->from, &hs->to, mac);
    unsigned h = kumo__tcp_hdr_encode(out, KUMO__T_AUTH, 0, 0, KUMO__MAC, 0);
    memcpy(out + h, mac, KUMO__MAC);
    *len = h + KUMO__MAC;
    return ok;
}
