/*
 * Distribution across OS processes, and what a hostile or broken peer can
 * do.  Node B runs in a child process (forked before node A starts, so no
 * engine thread crosses the fork) for every case that needs a real process
 * boundary: SIGKILL of a node.  The raw-peer cases speak the transport
 * (cookie and all) but not the controller's protocol.  Each case runs over
 * tcp and shm with 1 and 2 shards.
 */
#include "_kt.h"

#include <kumo/dist.h>

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The controller wire format's version (proc/dist/wire.h): the raw peer
 * below speaks it by hand. */
#define WIRE_V 3

#define OS_COOKIE "kumo-dist-os-test-cookie"

static void echo_closure(kumo_proc *self, const void *args, size_t len)
{
    (void)args;
    (void)len;
    kt_echo_init(self, NULL);
}

static const kumo_closure os_table[] = {{.name = "os.echo", .init = echo_closure}};

static const kumo_tcp_config os_tcp = {.cookie = OS_COOKIE};
static const kumo_shm_config os_shm = {.cookie = OS_COOKIE};

static kumo_node_config os_cfg(const char *transport, unsigned shards, kumo_dist_transport *slot)
{
    slot->name = transport;
    slot->config = strcmp(transport, "tcp") == 0 ? (const void *)&os_tcp : (const void *)&os_shm;
    return (kumo_node_config){.shards = shards,
                              .spin_ns = 20000,
                              .no_pin = true,
                              .transports = slot,
                              .ntransports = 1,
                              .closures = os_table,
                              .nclosures = 1};
}

/* A node in a child process: writes its address to `out`, then serves
 * until killed (or until its parent goes away). */
static pid_t os_child_node(const char *transport, unsigned shards, kumo_address *addr)
{
    int p[2], ctl[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe(ctl), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        close(ctl[1]);
        kumo_log_set_level(KUMO_LOG_ERROR);
        kumo_dist_transport t;
        kumo_node_config cfg = os_cfg(transport, shards, &t);
        kumo_node *node;
        kumo_address a;
        if (kumo_node_start(&cfg, &node) || kumo_node_address(node, 0, &a))
            _exit(2);
        if (write(p[1], &a, sizeof a) != (ssize_t)sizeof a)
            _exit(2);
        char c;
        while (read(ctl[0], &c, 1) > 0)
            ;
        _exit(0); /* the parent died: no orderly stop needed */
    }
    close(p[1]);
    close(ctl[0]); /* kept open by nobody else: the child's read ends with us */
    cr_assert_eq(read(p[0], addr, sizeof *addr), (ssize_t)sizeof *addr, "child node did not start");
    close(p[0]);
    return pid;
}

#define OS_TEST(name)                                                                              \
    static void os__##name(const char *tr, unsigned kt_shards);                                    \
    Test(dist_os, name##_tcp_1shard, .timeout = KT_TIMEOUT)                                        \
    {                                                                                              \
        os__##name("tcp", 1);                                                                      \
    }                                                                                              \
    Test(dist_os, name##_tcp_2shards, .timeout = KT_TIMEOUT)                                       \
    {                                                                                              \
        os__##name("tcp", 2);                                                                      \
    }                                                                                              \
    Test(dist_os, name##_shm_1shard, .timeout = KT_TIMEOUT)                                        \
    {                                                                                              \
        os__##name("shm", 1);                                                                      \
    }                                                                                              \
    Test(dist_os, name##_shm_2shards, .timeout = KT_TIMEOUT)                                       \
    {                                                                                              \
        os__##name("shm", 2);                                                                      \
    }                                                                                              \
    static void os__##name(const char *tr, unsigned kt_shards)

OS_TEST(sigkill_of_a_node_fires_monitors_links_and_node_monitors)
{
    kumo_address baddr;
    pid_t child = os_child_node(tr, kt_shards, &baddr);
    kumo_dist_transport t;
    kumo_node *a = kt_start_cfg(os_cfg(tr, kt_shards, &t));
    kumo_inbox *ib = kt_inbox(a);
    kumo_proc *me = kumo_inbox_proc(ib);
    uint64_t b;
    int err = kumo_node_connect(a, &baddr, KT_WAIT_NS, &b);
    cr_assert_eq(err, 0, "connect: %s", kumo_strerror(err));

    kumo_ref mon, nmon;
    kumo_spawn_opts o = {.monitor = &mon, .link = true, .shard = KT_OTHER(kt_shards)};
    kumo_pid echo;
    err = kumo_spawn_remote_wait(ib, b, "os.echo", NULL, 0, &o, &echo);
    cr_assert_eq(err, 0, "spawn: %s", kumo_strerror(err));
    cr_assert_eq(kumo_monitor_node(me, b, &nmon), 0);
    kt_send_u64(me, echo, kt_type("os.ping"), 5);
    cr_assert_eq(kt_expect_u64(ib, kt_type("os.ping")), 5);

    cr_assert_eq(kill(child, SIGKILL), 0);
    cr_assert_eq(waitpid(child, NULL, 0), child);

    kumo_down_msg d = kt_expect_down_ref(ib, mon);
    cr_assert(kumo_pid_eq(d.pid, echo));
    kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);
    kumo_exit_msg x = kt_expect_exit(ib, echo);
    kt_assert_reason(&x.reason, KUMO_DISCONNECT, NULL);
    kumo_msg *m = kt_expect(ib, kumo_type_node_down());
    kumo_node_down_msg nd;
    KT_TAKE(m, nd);
    cr_assert(kumo_ref_eq(nd.ref, nmon));
    cr_assert_eq(nd.node, b);
    /* exactly one of each */
    kt_expect_empty(ib);
    /* and the node goes on: a spawn on the dead node fails cleanly */
    err = kumo_spawn_remote_wait(ib, b, "os.echo", NULL, 0, NULL, &echo);
    cr_assert_eq(err, -KUMO_ECONNLOST, "spawn on a dead node: %s", kumo_strerror(err));
    kumo_inbox_free(ib);
    kt_stop(a);
}

/* ------------------------------------------------------------------ */
/* A raw peer: the transport's handshake, then frames of its choosing  */
/* ------------------------------------------------------------------ */

struct raw {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kumo_conn conn;
    int err;
    bool connected, lost, opened; /* opened: a connection came in */
};

static void raw_connected(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    struct raw *r = arg;
    pthread_mutex_lock(&r->mu);
    r->conn = c;
    r->err = err;
    r->connected = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void raw_event(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    struct raw *r = arg;
    if (ev->kind == KUMO_EV_CONNECTION_OPENED) {
        pthread_mutex_lock(&r->mu);
        r->opened = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    if (ev->kind == KUMO_EV_ERROR && ev->error == KUMO_ERR_CONNECTION_LOST) {
        pthread_mutex_lock(&r->mu);
        r->lost = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
}

static bool raw_wait(struct raw *r, bool *flag)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += KT_WAIT_NS / 1000000000;
    pthread_mutex_lock(&r->mu);
    while (!*flag)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &dl))
            break;
    bool ok = *flag;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* Sends `frame` to node a from a bare endpoint (no controller) and
 * asserts that a closes the link and keeps serving its other peers. */
static void garbage_case(const char *tr, unsigned shards, const uint8_t *frame, size_t len,
                         bool hello_first)
{
    kumo_dist_transport t;
    kumo_node *a = kt_start_cfg(os_cfg(tr, shards, &t));
    kumo_node_config cb = os_cfg(tr, shards, &t);
    kumo_node *b;
    cr_assert_eq(kumo_node_start(&cb, &b), 0);
    kumo_inbox *ib = kt_inbox(b);
    kumo_address aaddr;
    cr_assert_eq(kumo_node_address(a, 0, &aaddr), 0);
    uint64_t a_id;
    cr_assert_eq(kumo_node_connect(b, &aaddr, KT_WAIT_NS, &a_id), 0);

    /* the raw peer: a transport on a node of its own, without distribution */
    kumo_node *rn = NULL;
    cr_assert_eq(kumo_node_start(&(kumo_node_config){.shards = 1, .no_pin = true}, &rn), 0);
    kumo_transport *rt;
    cr_assert_eq(kumo_transport_new(rn, tr, t.config, &rt), 0);
    struct raw r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    kumo_endpoint *rep;
    cr_assert_eq(kumo_endpoint_new(rt, 0, raw_event, &r, &rep), 0);
    cr_assert_eq(kumo_connect(rep, &aaddr, KUMO_RELIABLE_ORDERED, NULL, raw_connected, &r), 0);
    cr_assert(raw_wait(&r, &r.connected), "raw connect did not finish");
    cr_assert_eq(r.err, 0, "raw connect: %s", kumo_strerror(r.err));
    if (hello_first) {
        /* a well-formed HELLO from a made-up node (op 1) */
        uint8_t hello[4 + 17] = {WIRE_V, 1, 0, 0};
        hello[4] = 0x42; /* from-node 0x42 */
        struct iovec v = {hello, sizeof hello};
        cr_assert_eq(kumo_conn_send(r.conn, &v, 1, NULL, NULL), 0);
    }
    struct iovec v = {(void *)frame, len};
    cr_assert_eq(kumo_conn_send(r.conn, &v, 1, NULL, NULL), 0);
    cr_assert(raw_wait(&r, &r.lost), "node a did not close the link to a garbage peer");

    /* a goes on serving b */
    kumo_pid echo;
    int err = kumo_spawn_remote_wait(ib, a_id, "os.echo", NULL, 0, NULL, &echo);
    cr_assert_eq(err, 0, "a no longer serves: %s", kumo_strerror(err));
    kt_send_u64(kumo_inbox_proc(ib), echo, kt_type("os.after"), 7);
    cr_assert_eq(kt_expect_u64(ib, kt_type("os.after")), 7);
    kt_send_u64(kumo_inbox_proc(ib), echo, kt_type_stop(), 0);

    kumo_transport_free(rt);
    kumo_node_free(rn);
    kumo_inbox_free(ib);
    kumo_node_free(b);
    kt_stop(a);
}

OS_TEST(a_frame_of_an_unknown_version_closes_the_link)
{
    static const uint8_t f[] = {9, 2, 0, 0, 1, 2, 3};
    garbage_case(tr, kt_shards, f, sizeof f, false);
}

OS_TEST(a_frame_before_hello_is_refused)
{
    static const uint8_t f[] = {WIRE_V, 2, 0, 0}; /* a DATA header cut short */
    garbage_case(tr, kt_shards, f, sizeof f, false);
}

OS_TEST(a_truncated_signal_after_hello_closes_the_link)
{
    static const uint8_t f[] = {WIRE_V, 8, 0, 0, 1, 2, 3, 4, 5}; /* EXIT, too short */
    garbage_case(tr, kt_shards, f, sizeof f, true);
}

OS_TEST(an_unknown_op_after_hello_closes_the_link)
{
    static const uint8_t f[] = {WIRE_V, 200, 0, 0};
    garbage_case(tr, kt_shards, f, sizeof f, true);
}

OS_TEST(a_spawn_with_a_bad_name_length_closes_the_link)
{
    uint8_t f[4 + 28 + 14] = {WIRE_V, 11, 0, 0}; /* SPAWN */
    f[4 + 28 + 13] = 255;                        /* name length over KUMO_CLOSURE_NAME_MAX */
    garbage_case(tr, kt_shards, f, sizeof f, true);
}

/* ------------------------------------------------------------------ */
/* A new incarnation at a place                                        */
/* ------------------------------------------------------------------ */

/* A raw tcp peer says HELLO as node X1, then, on a new connection from the
 * same place, as node X2: a declares X1 lost (its node monitor fires) and
 * gone (a new monitor of it fires at once) before it accepts X2. */
static void raw_hello(kumo_endpoint *rep, const kumo_address *aaddr, struct raw *r, uint64_t id)
{
    r->connected = false;
    cr_assert_eq(kumo_connect(rep, aaddr, KUMO_RELIABLE_ORDERED, NULL, raw_connected, r), 0);
    cr_assert(raw_wait(r, &r->connected), "raw connect did not finish");
    cr_assert_eq(r->err, 0, "raw connect: %s", kumo_strerror(r->err));
    uint8_t hello[4 + 17 + KUMO_ADDRESS_WIRE_MAX] = {WIRE_V, 1, 0, 0};
    for (int i = 0; i < 8; i++)
        hello[4 + i] = (uint8_t)(id >> (8 * i)); /* from-node, little-endian */
    hello[4 + 16] = 1;                           /* one address: where it speaks from */
    size_t n = 4 + 17 + kumo_address_encode(kumo_endpoint_address(rep), hello + 4 + 17);
    struct iovec v = {hello, n};
    cr_assert_eq(kumo_conn_send(r->conn, &v, 1, NULL, NULL), 0);
}

static void new_incarnation_case(unsigned shards)
{
    kumo_dist_transport t;
    kumo_node *a = kt_start_cfg(os_cfg("tcp", shards, &t));
    kumo_inbox *ia = kt_inbox(a);
    kumo_proc *me = kumo_inbox_proc(ia);
    kumo_address aaddr;
    cr_assert_eq(kumo_node_address(a, 0, &aaddr), 0);

    kumo_node *rn = NULL;
    cr_assert_eq(kumo_node_start(&(kumo_node_config){.shards = 1, .no_pin = true}, &rn), 0);
    kumo_transport *rt;
    cr_assert_eq(kumo_transport_new(rn, "tcp", t.config, &rt), 0);
    struct raw r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    kumo_endpoint *rep;
    cr_assert_eq(kumo_endpoint_new(rt, 0, raw_event, &r, &rep), 0);

    const uint64_t x1 = 0x1111, x2 = 0x2222;
    raw_hello(rep, &aaddr, &r, x1);
    cr_assert(raw_wait(&r, &r.opened), "a did not answer X1's HELLO");
    kumo_ref ref1;
    cr_assert_eq(kumo_monitor_node(me, x1, &ref1), 0);
    kumo_msg *m = NULL;
    cr_assert_eq(kumo_inbox_recv(ia, NULL, NULL, 50 * KT_MS, &m), -KUMO_ETIMEOUT,
                 "X1 was reported down while its link was up");

    raw_hello(rep, &aaddr, &r, x2);
    m = kt_expect(ia, kumo_type_node_down());
    kumo_node_down_msg nd;
    KT_TAKE(m, nd);
    cr_assert(kumo_ref_eq(nd.ref, ref1));
    cr_assert_eq(nd.node, x1);
    kumo_ref ref1b;
    cr_assert_eq(kumo_monitor_node(me, x1, &ref1b), 0);
    KT_TAKE(kt_expect(ia, kumo_type_node_down()), nd);
    cr_assert(kumo_ref_eq(nd.ref, ref1b), "a later monitor of the old incarnation fires at once");
    cr_assert_eq(nd.node, x1);

    kumo_inbox_free(ia);
    kumo_transport_free(rt);
    kumo_node_free(rn);
    kt_stop(a);
}

Test(dist_os, a_new_incarnation_at_a_place_replaces_the_old_one_tcp_1shard, .timeout = KT_TIMEOUT)
{
    new_incarnation_case(1);
}

Test(dist_os, a_new_incarnation_at_a_place_replaces_the_old_one_tcp_2shards, .timeout = KT_TIMEOUT)
{
    new_incarnation_case(2);
}
