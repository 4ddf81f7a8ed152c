/*
 * Back-pressure on the queueing transports (tcp, shm): a link whose peer
 * stops reading fills its send queue up to send_queue_max, then its
 * connections are busy (kumo_conn_send fails with -KUMO_EBUSY, taking
 * nothing) until the queue drains; kumo_conn_when_ready says when.  inmem
 * hands messages over at once and is never busy.
 *
 * The receiver's shard is held inside its event callback (a gate the test
 * opens), so the peer really stops reading: the kernel's socket buffers or
 * the shm ring fill, then the link's own queue.
 */
#include "_tt.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#define BP_TIMEOUT 60
#define MSG 1024
#define LIMIT (256u << 10)

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    uint64_t next; /* the sequence number expected next */
};

static bool gate_hook(tt_ep *e, const kumo_event *ev)
{
    struct gate *g = e->user;
    if (ev->kind != KUMO_EV_RECEIVED)
        return true;
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    uint64_t seq;
    memcpy(&seq, ev->iov[0].iov_base, sizeof seq);
    if (seq != g->next || ev->len != MSG)
        tt_ep_failf(e, "got message %" PRIu64 " (%zu bytes), expected %" PRIu64, seq, ev->len,
                    g->next);
    g->next++;
    return false; /* (counted by the recorder, not kept) */
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Sends MSG-byte numbered messages on the sender's shard until one fails. */
struct fill {
    kumo_conn c;
    uint64_t sent; /* accepted so far (the next sequence number) */
    uint64_t now;  /* accepted by this call */
    int err;
};

static void fill_run(void *arg)
{
    struct fill *f = arg;
    static uint8_t buf[MSG];
    f->now = 0;
    for (;;) {
        memcpy(buf, &f->sent, sizeof f->sent);
        f->err = kumo_conn_send(f->c, &(struct iovec){buf, MSG}, 1, NULL, NULL);
        if (f->err)
            return;
        f->sent++;
        f->now++;
        if (f->now > (64u << 20) / MSG)
            return; /* a queue that never fills: the caller fails */
    }
}

/* Fills until the link stays busy across loop iterations: a fill call
 * whose first send is refused (everything before it went to the kernel or
 * the ring and stuck there). */
static void fill_until_stuck(struct kumo__engine *eng, struct fill *f)
{
    for (int round = 0; round < 2000; round++) {
        tt_on_shard(eng, 0, fill_run, f);
        cr_assert_eq(f->err, -KUMO_EBUSY, "send %" PRIu64 ": %s (expected busy)", f->sent,
                     kumo_transport_strerror(f->err));
        if (f->now == 0)
            return;
    }
    cr_assert_fail("the link never stayed busy (%" PRIu64 " messages accepted)", f->sent);
}

struct ready {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int err;
};

static void ready_fn(kumo_conn c, int err, void *arg)
{
    (void)c;
    struct ready *r = arg;
    pthread_mutex_lock(&r->mu);
    r->calls++;
    r->err = err;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int ready_wait(struct ready *r)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += TT_WAIT_NS / 1000000000;
    pthread_mutex_lock(&r->mu);
    while (!r->calls && pthread_cond_timedwait(&r->cv, &r->mu, &dl) == 0)
        ;
    int calls = r->calls, err = r->err;
    pthread_mutex_unlock(&r->mu);
    cr_assert_eq(calls, 1, "the ready callback ran %d times", calls);
    return err;
}

static void noop(void *arg)
{
    (void)arg;
}

static kumo_transport *limited(struct kumo__engine *eng, const char *tr)
{
    if (!strcmp(tr, "tcp")) {
        static kumo_tcp_config c;
        c = (kumo_tcp_config){.bind_host = "127.0.0.1", .send_queue_max = LIMIT};
        return tt_transport_cfg(eng, tr, &c);
    }
    static kumo_shm_config s;
    s = (kumo_shm_config){.ring_bytes = 64u << 10, .send_queue_max = LIMIT};
    return tt_transport_cfg(eng, tr, &s);
}

/* A sender (endpoint tx, shard 0) with two connections, c and c2, whose
 * link to a held receiver (rx, shard 1) is full and stays busy. */
struct stuck {
    struct kumo__engine *eng;
    kumo_transport *t;
    struct gate g;
    tt_ep *rx, *tx;
    kumo_conn c, c2;
    struct fill f;
};

static void stuck_start(struct stuck *s, const char *tr)
{
    s->eng = tt_start(2);
    kumo_log_set_level(KUMO_LOG_ERROR);
    s->t = limited(s->eng, tr);
    s->g = (struct gate){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    s->rx = tt_ep_new_hook(s->t, 1, "receiver", gate_hook, &s->g);
    s->tx = tt_ep_new(s->t, 0, "sender");
    s->c = tt_connect(s->tx, &s->rx->addr);
    s->c2 = tt_connect(s->tx, &s->rx->addr);
    tt_expect(s->rx, KUMO_EV_CONNECTION_OPENED);
    tt_expect(s->rx, KUMO_EV_CONNECTION_OPENED);
    s->f = (struct fill){.c = s->c};
    fill_until_stuck(s->eng, &s->f);
}

/* Lets the receiver go, then frees everything (and checks for leaks). */
static void stuck_finish(struct stuck *s)
{
    gate_open(&s->g);
    kumo_transport_free(s->t);
    tt_ep_check(s->rx);
    tt_ep_free(s->rx);
    tt_ep_free(s->tx);
    tt_stop(s->eng);
}

static void busy_then_ready(const char *tr)
{
    static struct stuck s;
    stuck_start(&s, tr);
    /* Busy is per link: the other connection, and a send from this (plain)
     * thread, are refused too; nothing was taken. */
    uint8_t one[MSG] = {0};
    cr_assert_eq(kumo_conn_send(s.c2, &(struct iovec){one, MSG}, 1, NULL, NULL), -KUMO_EBUSY);
    cr_assert_eq(kumo_conn_send(s.c, &(struct iovec){one, MSG}, 1, NULL, NULL), -KUMO_EBUSY);

    static struct ready r;
    r = (struct ready){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    cr_assert_eq(kumo_conn_when_ready(s.c, ready_fn, &r), 0);
    /* Two round trips through the sender's shard: the wait is registered,
     * and with the receiver held nothing drains, so it has not fired. */
    tt_on_shard(s.eng, 0, noop, NULL);
    tt_on_shard(s.eng, 0, noop, NULL);
    pthread_mutex_lock(&r.mu);
    int early = r.calls;
    pthread_mutex_unlock(&r.mu);
    cr_assert_eq(early, 0, "ready while the peer reads nothing");

    gate_open(&s.g);
    cr_assert_eq(ready_wait(&r), 0);
    /* Sends are taken again, and everything arrives in order. */
    uint8_t buf[MSG];
    memcpy(buf, &s.f.sent, sizeof s.f.sent);
    int err = kumo_conn_send(s.c, &(struct iovec){buf, MSG}, 1, NULL, NULL);
    cr_assert_eq(err, 0, "send after ready: %s", kumo_transport_strerror(err));
    tt_wait_counter(s.rx, &s.rx->received, s.f.sent + 1, "received");
    stuck_finish(&s);
}

static void busy_then_lost(const char *tr)
{
    static struct stuck s;
    stuck_start(&s, tr);
    static struct ready r;
    r = (struct ready){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    cr_assert_eq(kumo_conn_when_ready(s.c, ready_fn, &r), 0);
    cr_assert_eq(kumo_transport_break_link(s.tx->ep, &s.rx->addr), 0);
    cr_assert_eq(ready_wait(&r), -KUMO_ECONNLOST);
    cr_assert_eq(kumo_conn_send(s.c, &(struct iovec){"x", 1}, 1, NULL, NULL), -KUMO_ECONNLOST);
    stuck_finish(&s);
}

Test(backpressure, tcp_busy_then_ready, .timeout = BP_TIMEOUT)
{
    busy_then_ready("tcp");
}

Test(backpressure, shm_busy_then_ready, .timeout = BP_TIMEOUT)
{
    busy_then_ready("shm");
}

Test(backpressure, tcp_busy_then_link_lost, .timeout = BP_TIMEOUT)
{
    busy_then_lost("tcp");
}

Test(backpressure, shm_busy_then_link_lost, .timeout = BP_TIMEOUT)
{
    busy_then_lost("shm");
}

/* inmem is never busy; when_ready still answers, once, off the call. */
Test(backpressure, inmem_is_never_busy, .timeout = BP_TIMEOUT)
{
    struct kumo__engine *eng = tt_start(2);
    kumo_transport *t = tt_transport(eng, "inmem");
    tt_ep *rx = tt_ep_new(t, 1, "receiver");
    tt_ep *tx = tt_ep_new(t, 0, "sender");
    kumo_conn c = tt_connect(tx, &rx->addr);
    static struct ready r;
    r = (struct ready){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    cr_assert_eq(kumo_conn_when_ready(c, ready_fn, &r), 0);
    cr_assert_eq(ready_wait(&r), 0);
    cr_assert_eq(kumo_conn_when_ready((kumo_conn){0}, ready_fn, &r), -EINVAL);
    kumo_transport_free(t);
    tt_ep_free(rx);
    tt_ep_free(tx);
    tt_stop(eng);
}
