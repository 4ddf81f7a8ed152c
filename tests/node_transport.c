/* A transport made from a node (kumo_transport_new) carries a message over
 * an endpoint's connection to itself; transport error codes have names. */
#include "_kt.h"

#include <kumo/transport.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

struct probe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kumo_conn conn;
    int connect_err;
    bool connected, received, closed;
    char got[32];
};

static void on_connect(kumo_endpoint *ep, kumo_conn conn, int err, void *arg)
{
    struct probe *p = arg;
    pthread_mutex_lock(&p->mu);
    p->conn = conn;
    p->connect_err = err;
    p->connected = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void on_event(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    struct probe *p = arg;
    pthread_mutex_lock(&p->mu);
    if (ev->kind == KUMO_EV_RECEIVED && ev->len < sizeof p->got) {
        size_t off = 0;
        for (int i = 0; i < ev->iovcnt; i++) {
            memcpy(p->got + off, ev->iov[i].iov_base, ev->iov[i].iov_len);
            off += ev->iov[i].iov_len;
        }
        p->received = true;
    } else if (ev->kind == KUMO_EV_ENDPOINT_CLOSED) {
        p->closed = true;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Waits (bounded) until *flag is set; returns it. */
static bool wait_flag(struct probe *p, bool *flag)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&p->mu);
    while (!*flag && pthread_cond_timedwait(&p->cv, &p->mu, &dl) == 0)
        ;
    bool v = *flag;
    pthread_mutex_unlock(&p->mu);
    return v;
}

KT_TEST(node_transport, inmem_from_a_node_carries_a_message)
{
    kumo_node *node = kt_start(kt_shards);
    kumo_transport *t, *bad;
    cr_assert_eq(kumo_transport_new(node, "no-such-transport", NULL, &bad), -ENOENT);
    cr_assert_eq(kumo_transport_new(node, "inmem", NULL, &t), 0);

    static struct probe p = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    p.connected = p.received = p.closed = false;
    kumo_endpoint *ep;
    cr_assert_eq(kumo_endpoint_new(t, kt_shards - 1, on_event, &p, &ep), 0);
    cr_assert_eq(
        kumo_connect(ep, kumo_endpoint_address(ep), KUMO_RELIABLE_ORDERED, NULL, on_connect, &p),
        0);
    cr_assert(wait_flag(&p, &p.connected), "no connect result");
    cr_assert_eq(p.connect_err, 0, "connect: %s", kumo_strerror(p.connect_err));
    struct iovec iov[2] = {{.iov_base = "hello ", .iov_len = 6},
                           {.iov_base = "node", .iov_len = 5}};
    cr_assert_eq(kumo_conn_send(p.conn, iov, 2, NULL, NULL), 0);
    cr_assert(wait_flag(&p, &p.received), "message not received");
    cr_assert_str_eq(p.got, "hello node");
    cr_assert_eq(kumo_conn_close(p.conn), 0);
    cr_assert_eq(kumo_endpoint_close(ep), 0);
    cr_assert(wait_flag(&p, &p.closed), "no EndPointClosed");
    kumo_transport_free(t);
    kt_stop(node);
}

Test(node_transport, transport_codes_are_named_by_kumo_strerror)
{
    cr_assert_str_eq(kumo_strerror(-KUMO_ECLOSED), kumo_transport_strerror(-KUMO_ECLOSED));
    cr_assert_str_neq(kumo_strerror(-KUMO_ENOTFOUND), "unknown error");
    cr_assert_str_eq(kumo_strerror(-KUMO_ETRANSPORT_LAST), "unknown error");
}
