/*
 * Distribution: processes on two nodes working together.  Each test body
 * runs on every transport topology (DT_TEST: two nodes in this OS process
 * over inmem, tcp and shm; tests/dist_os.c puts them in two OS processes)
 * with 1 and 2 shards per node.  The nodes are `a`
 * and `b`; each has an inbox where the test receives.
 */
#include "_kt.h"

#include <kumo/dist.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DT_COOKIE "kumo-dist-test-cookie"

typedef struct dt_env {
    kumo_node *a, *b;
    kumo_inbox *ia, *ib;
    uint64_t a_id, b_id;
    const char *transport;
} dt_env;

/* ---- the remote table every test node runs ---- */

static void echo_closure(kumo_proc *self, const void *args, size_t len)
{
    (void)args;
    (void)len;
    kt_echo_init(self, NULL);
}

/* Sends its argument bytes back to the pid they start with, then waits
 * for anything: the first message ends it with an exception. */
static void crash_on_msg(kumo_proc *self, void *state, kumo_msg *m);
static void crasher_init(kumo_proc *self, void *state);
static void crasher_closure(kumo_proc *self, const void *args, size_t len)
{
    (void)args;
    (void)len;
    crasher_init(self, NULL);
}

/* Ends at once with an exception naming its argument. */
static void failing_closure(kumo_proc *self, const void *args, size_t len)
{
    kumo_die(self, KUMO_EXCEPTION, "failed with %.*s", (int)len, (const char *)args);
}

/* A call: answers with the square of its u64 argument, and reports (in
 * the answer's second word) what a second answer returned. */
static void square_closure(kumo_proc *self, const void *args, size_t len)
{
    uint64_t x = 0;
    if (len == sizeof x)
        memcpy(&x, args, sizeof x);
    uint64_t out = x * x;
    int err = kumo_call_return(self, &out, sizeof out);
    if (err)
        kumo_die(self, KUMO_EXCEPTION, "call_return: %d", err);
    else if (kumo_call_return(self, &out, sizeof out) != -EINVAL)
        kumo_die(self, KUMO_EXCEPTION, "a second answer was not refused");
}

static const kumo_closure dt_table[] = {
    {.name = "dt.echo", .init = echo_closure},
    {.name = "dt.square", .init = square_closure},
    {.name = "dt.crasher", .init = crasher_closure},
    {.name = "dt.fail", .init = failing_closure},
};

static const kumo_tcp_config dt_tcp = {.cookie = DT_COOKIE};
static const kumo_shm_config dt_shm = {.cookie = DT_COOKIE};
/* With a small send queue, for the busy-peer tests (dt_busy_bytes != 0). */
static const kumo_tcp_config dt_tcp_small = {.cookie = DT_COOKIE, .send_queue_max = 1u << 20};
static const kumo_shm_config dt_shm_small = {.cookie = DT_COOKIE, .send_queue_max = 1u << 20};
static size_t dt_busy_bytes; /* 0: the node's default */

static kumo_node_config dt_cfg(const char *transport, unsigned shards, kumo_dist_transport *slot)
{
    bool small = dt_busy_bytes != 0;
    slot->name = transport;
    slot->config = strcmp(transport, "tcp") == 0
                       ? (small ? (const void *)&dt_tcp_small : (const void *)&dt_tcp)
                   : strcmp(transport, "shm") == 0
                       ? (small ? (const void *)&dt_shm_small : (const void *)&dt_shm)
                       : NULL;
    return (kumo_node_config){.shards = shards,
                              .transports = slot,
                              .ntransports = 1,
                              .closures = dt_table,
                              .nclosures = sizeof dt_table / sizeof dt_table[0],
                              .dist_busy_bytes = dt_busy_bytes};
}

static dt_env dt_start(const char *transport, unsigned shards)
{
    dt_env e = {.transport = transport};
    kumo_dist_transport ta, tb;
    e.a = kt_start_cfg(dt_cfg(transport, shards, &ta));
    e.b = kt_start_more(dt_cfg(transport, shards, &tb));
    e.ia = kt_inbox(e.a);
    e.ib = kt_inbox(e.b);
    kumo_address ab;
    cr_assert_eq(kumo_node_address(e.b, 0, &ab), 0);
    int err = kumo_node_connect(e.a, &ab, KT_WAIT_NS, &e.b_id);
    cr_assert_eq(err, 0, "kumo_node_connect a -> b: %s", kumo_strerror(err));
    cr_assert_eq(e.b_id, kumo_node_id(e.b));
    e.a_id = kumo_node_id(e.a);
    return e;
}

static void dt_stop(dt_env *e)
{
    kumo_inbox_free(e->ib);
    kumo_node_free(e->b);
    kumo_inbox_free(e->ia);
    kt_stop(e->a);
}

/* Takes the first message of `type` (len bytes starting with a kumo_ref)
 * into out, asserting its ref. */
static void expect_with_ref(kumo_inbox *ib, uint64_t type, kumo_ref ref, void *out, size_t len)
{
    kt_take(kt_expect(ib, type), out, len);
    kumo_ref got;
    memcpy(&got, out, sizeof got);
    cr_assert(kumo_ref_eq(got, ref), "%s for ref %llx, expected %llx",
              kt_type_name(type, (char[32]){0}, 32), (unsigned long long)got.id,
              (unsigned long long)ref.id);
}

#define DT_TEST(suite, name)                                                                       \
    static void suite##__##name(dt_env *e, unsigned kt_shards);                                    \
    static void suite##__##name##_run(const char *tr, unsigned shards)                             \
    {                                                                                              \
        dt_env e = dt_start(tr, shards);                                                           \
        suite##__##name(&e, shards);                                                               \
        dt_stop(&e);                                                                               \
    }                                                                                              \
    Test(suite, name##_inmem_1shard, .timeout = KT_TIMEOUT)                                        \
    {                                                                                              \
        suite##__##name##_run("inmem", 1);                                                         \
    }                                                                                              \
    Test(suite, name##_inmem_2shards, .timeout = KT_TIMEOUT)                                       \
    {                                                                                              \
        suite##__##name##_run("inmem", 2);                                                         \
    }                                                                                              \
    Test(suite, name##_tcp_1shard, .timeout = KT_TIMEOUT)                                          \
    {                                                                                              \
        suite##__##name##_run("tcp", 1);                                                           \
    }                                                                                              \
    Test(suite, name##_tcp_2shards, .timeout = KT_TIMEOUT)                                         \
    {                                                                                              \
        suite##__##name##_run("tcp", 2);                                                           \
    }                                                                                              \
    Test(suite, name##_shm_1shard, .timeout = KT_TIMEOUT)                                          \
    {                                                                                              \
        suite##__##name##_run("shm", 1);                                                           \
    }                                                                                              \
    Test(suite, name##_shm_2shards, .timeout = KT_TIMEOUT)                                         \
    {                                                                                              \
        suite##__##name##_run("shm", 2);                                                           \
    }                                                                                              \
    static void suite##__##name(dt_env *e, unsigned kt_shards)

/* ------------------------------------------------------------------ */

DT_TEST(dist, a_message_crosses_and_the_reply_comes_back)
{
    uint64_t T = kt_type("dt.ping");
    kumo_pid echo =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    cr_assert_eq(echo.node, e->b_id);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    cr_assert_eq(kumo_send(me, echo, T, "hello", 5), 0);
    kumo_msg *m = kt_expect(e->ia, T);
    cr_assert_eq(kumo_msg_len(m), 5);
    cr_assert_eq(memcmp(kumo_msg_data(m), "hello", 5), 0);
    cr_assert(kumo_pid_eq(kumo_msg_sender(m), echo), "reply from %s, expected %s",
              kt_pid(kumo_msg_sender(m)), kt_pid(echo));
    kumo_msg_free(m);
    kt_send_u64(me, echo, kt_type_stop(), 0);
}

DT_TEST(dist, messages_between_one_pair_arrive_in_order)
{
    uint64_t T = kt_type("dt.seq");
    kumo_pid echo =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    enum { N = 2000 };
    for (uint64_t i = 0; i < N; i++)
        kt_send_u64(me, echo, T, i);
    for (uint64_t i = 0; i < N; i++) {
        uint64_t v = kt_expect_u64(e->ia, T);
        cr_assert_eq(v, i, "message %llu arrived as number %llu", (unsigned long long)v,
                     (unsigned long long)i);
    }
    kt_send_u64(me, echo, kt_type_stop(), 0);
}

DT_TEST(dist, a_big_message_crosses_whole)
{
    uint64_t T = kt_type("dt.big");
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    size_t len = (3u << 20) + 7;
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    cr_assert_eq(kumo_send(me, echo, T, buf, len), 0);
    kumo_msg *m = kt_expect(e->ia, T);
    cr_assert_eq(kumo_msg_len(m), len);
    cr_assert_eq(memcmp(kumo_msg_data(m), buf, len), 0, "payload changed on the way");
    kumo_msg_free(m);
    free(buf);
    kt_send_u64(me, echo, kt_type_stop(), 0);
}

/* A process that dies with an exception on any message. */
static void crash_on_msg(kumo_proc *self, void *state, kumo_msg *m)
{
    (void)state;
    kumo_die(self, KUMO_EXCEPTION, "boom %zu", kumo_msg_len(m));
}
static void crasher_init(kumo_proc *self, void *state)
{
    static kumo_match any = {.kind = KUMO_MATCH_ANY, .fn = crash_on_msg};
    static const kumo_recv set = {.matches = &any, .n = 1};
    (void)state;
    kumo_receive(self, &set, KUMO_INFINITY);
}

DT_TEST(dist, a_remote_monitor_gets_one_down_with_the_reason)
{
    kumo_pid c =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, crasher_init, NULL);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, c, &ref), 0);
    cr_assert_eq(ref.node, e->a_id);
    /* The monitor reaches b before the message that ends c (one pair, in
     * order). */
    cr_assert_eq(kumo_send(me, c, kt_type("dt.x"), "xyz", 3), 0);
    kumo_down_msg d = kt_expect_down_ref(e->ia, ref);
    cr_assert(kumo_pid_eq(d.pid, c));
    kt_assert_reason(&d.reason, KUMO_EXCEPTION, "boom 3");
    /* exactly one: a marker from b's side comes next */
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kt_send_u64(me, echo, kt_type("dt.marker"), 1);
    kumo_msg_free(kt_expect_next(e->ia, kt_type("dt.marker")));
    kt_send_u64(me, echo, kt_type_stop(), 0);
}

DT_TEST(dist, monitoring_a_dead_remote_pid_says_unknown_id)
{
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_pid ghost = kt_forge_pid(echo);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, ghost, &ref), 0);
    kumo_down_msg d = kt_expect_down_ref(e->ia, ref);
    cr_assert(kumo_pid_eq(d.pid, ghost));
    kt_assert_reason(&d.reason, KUMO_UNKNOWN_ID, NULL);
    kt_send_u64(me, echo, kt_type_stop(), 0);
}

DT_TEST(dist, a_remote_link_fires_with_the_reason)
{
    kumo_pid c =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, crasher_init, NULL);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    cr_assert_eq(kumo_link(me, c), 0);
    cr_assert_eq(kumo_send(me, c, kt_type("dt.x"), "ab", 2), 0);
    kumo_exit_msg x = kt_expect_exit(e->ia, c);
    kt_assert_reason(&x.reason, KUMO_EXCEPTION, "boom 2");
}

DT_TEST(dist, a_remote_kill_ends_the_process)
{
    kumo_pid echo =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    kumo_ref local;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ib), echo, &local), 0);
    /* b's monitor is in place once the echo has answered b */
    kt_send_u64(kumo_inbox_proc(e->ib), echo, kt_type("dt.sync"), 3);
    cr_assert_eq(kt_expect_u64(e->ib, kt_type("dt.sync")), 3);
    /* and a's monitor and link, in place before the kill (one pair) */
    kumo_ref remote;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ia), echo, &remote), 0);
    cr_assert_eq(kumo_link(kumo_inbox_proc(e->ia), echo), 0);
    cr_assert_eq(kumo_kill(kumo_inbox_proc(e->ia), echo, "from a"), 0);
    /* Everyone is told who did it (killed-by), on both nodes. */
    kumo_pid killer = kumo_inbox_pid(e->ia);
    kumo_down_msg d = kt_expect_down_ref(e->ib, local);
    kt_assert_reason(&d.reason, KUMO_KILLED, "from a");
    cr_assert_eq(d.reason.via, KUMO_VIA_KILL);
    cr_assert(kumo_pid_eq(d.reason.by, killer), "by %s", kt_pid(d.reason.by));
    d = kt_expect_down_ref(e->ia, remote);
    kt_assert_reason(&d.reason, KUMO_KILLED, "from a");
    cr_assert_eq(d.reason.via, KUMO_VIA_KILL);
    cr_assert(kumo_pid_eq(d.reason.by, killer), "by %s", kt_pid(d.reason.by));
    kumo_exit_msg x = kt_expect_exit(e->ia, echo);
    cr_assert_eq(x.reason.via, KUMO_VIA_KILL);
    cr_assert(kumo_pid_eq(x.reason.by, killer), "by %s", kt_pid(x.reason.by));
}

DT_TEST(dist, a_watcher_on_the_other_node_is_told_by_the_death_of_its_target)
{
    /* b's process monitors and links a's inbox? a's inbox is the target
     * here: b's inbox monitors a process of a, which a then kills. */
    kumo_pid echo = kt_spawn(e->a, e->ia, NULL, kt_echo_init, NULL);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ib), echo, &ref), 0);
    cr_assert_eq(ref.node, e->b_id);
    /* The monitor has arrived once the echo answers b. */
    kt_send_u64(kumo_inbox_proc(e->ib), echo, kt_type("dt.sync"), 7);
    cr_assert_eq(kt_expect_u64(e->ib, kt_type("dt.sync")), 7);
    cr_assert_eq(kumo_kill(kumo_inbox_proc(e->ia), echo, "local kill"), 0);
    kumo_down_msg d = kt_expect_down_ref(e->ib, ref);
    cr_assert(kumo_pid_eq(d.pid, echo));
    kt_assert_reason(&d.reason, KUMO_KILLED, "local kill");
}

DT_TEST(dist, a_broken_link_fires_monitors_and_links_with_disconnect)
{
    kumo_pid echo =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, echo, &ref), 0);
    cr_assert_eq(kumo_link(me, echo), 0);
    kt_send_u64(me, echo, kt_type("dt.sync"), 1);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.sync")), 1);
    cr_assert_eq(kumo_node_break_link(e->a, e->b_id), 0);
    kumo_down_msg d = kt_expect_down_ref(e->ia, ref);
    cr_assert(kumo_pid_eq(d.pid, echo));
    kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);
    kumo_exit_msg x = kt_expect_exit(e->ia, echo);
    kt_assert_reason(&x.reason, KUMO_DISCONNECT, NULL);
    /* The echo lives on: the link break did not touch b's processes. */
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ib), echo, &ref), 0);
    kt_send_u64(kumo_inbox_proc(e->ib), echo, kt_type_stop(), 0);
    kt_down(e->ib, echo, KUMO_NORMAL, NULL);
}

DT_TEST(dist, a_stopped_node_fires_monitors_with_disconnect)
{
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, echo, &ref), 0);
    kt_send_u64(me, echo, kt_type("dt.sync"), 1);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.sync")), 1);
    kumo_node_stop(e->b);
    kumo_down_msg d = kt_expect_down_ref(e->ia, ref);
    kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);
}

/* A process that opens a channel and sends its send port to the pid in its
 * state, then echoes each value it receives on the port back to it. */
struct chan_state {
    kumo_pid reply_to;
    kumo_recv_port *rp;
    kumo_match m;
    kumo_recv set;
};
static void chan_got(kumo_proc *self, void *state, kumo_msg *m)
{
    struct chan_state *s = state;
    kumo_send(self, s->reply_to, kt_type("dt.chan.back"), kumo_msg_data(m), kumo_msg_len(m));
    kumo_receive(self, &s->set, KUMO_INFINITY);
}
static void chan_init(kumo_proc *self, void *state)
{
    struct chan_state *s = state;
    kumo_send_port sp;
    cr_assert_eq(kumo_new_chan(self, kt_type("dt.chan"), &sp, &s->rp), 0);
    s->m = (kumo_match){.kind = KUMO_MATCH_PORT, .port = s->rp, .fn = chan_got};
    s->set = (kumo_recv){.matches = &s->m, .n = 1};
    kumo_send(self, s->reply_to, kt_type("dt.port"), &sp, sizeof sp);
    kumo_receive(self, &s->set, KUMO_INFINITY);
}

/* A channel process on b (state *s, freed by the caller), its send port
 * in *sp, handed to a's inbox. */
static kumo_pid chan_on_b(dt_env *e, unsigned shards, struct chan_state **s, kumo_send_port *sp)
{
    *s = calloc(1, sizeof **s);
    (*s)->reply_to = kumo_inbox_pid(e->ia);
    kumo_pid c =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(shards)}, chan_init, *s);
    KT_TAKE(kt_expect(e->ia, kt_type("dt.port")), *sp);
    cr_assert(kumo_pid_eq(sp->owner, c));
    return c;
}

DT_TEST(dist, a_send_port_works_from_the_other_node)
{
    struct chan_state *s;
    kumo_send_port sp;
    kumo_pid c = chan_on_b(e, kt_shards, &s, &sp);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    for (uint64_t i = 0; i < 10; i++)
        cr_assert_eq(kumo_send_chan(me, sp, &i, sizeof i), 0);
    for (uint64_t i = 0; i < 10; i++)
        cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.chan.back")), i);
    kumo_kill(me, c, NULL);
    kumo_ref ref;
    kumo_monitor(kumo_inbox_proc(e->ib), c, &ref);
    kt_expect_down_ref(e->ib, ref);
    free(s);
}

static kumo_port_down_msg expect_port_down(kumo_inbox *ib, kumo_ref ref)
{
    kumo_port_down_msg d;
    expect_with_ref(ib, kumo_type_port_down(), ref, &d, sizeof d);
    return d;
}

DT_TEST(dist, a_port_monitor_names_the_port_when_its_owner_ends)
{
    /* Monitors of a port on the other node and on the same node: each
     * gets one port-down naming the port, with the owner's reason; one
     * cancelled by kumo_unmonitor says nothing; a port whose owner is gone
     * says unknown-id at once. */
    struct chan_state *s;
    kumo_send_port sp;
    kumo_pid c = chan_on_b(e, kt_shards, &s, &sp);
    kumo_proc *me = kumo_inbox_proc(e->ia), *local = kumo_inbox_proc(e->ib);
    kumo_ref ra, rb, gone;
    cr_assert_eq(kumo_monitor_port(me, sp, &ra), 0);
    cr_assert_eq(kumo_monitor_port(local, sp, &rb), 0);
    cr_assert_eq(kumo_monitor_port(me, sp, &gone), 0);
    cr_assert_eq(kumo_unmonitor(me, gone), 0);
    /* The monitors are in place once a value sent after them came back. */
    uint64_t v = 5;
    cr_assert_eq(kumo_send_chan(me, sp, &v, sizeof v), 0);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.chan.back")), 5);
    cr_assert_eq(kumo_kill(me, c, "done"), 0);

    kumo_port_down_msg d = expect_port_down(e->ia, ra);
    cr_assert(kumo_send_port_eq(d.port, sp));
    kt_assert_reason(&d.reason, KUMO_KILLED, "done");
    cr_assert(kumo_pid_eq(d.reason.by, kumo_inbox_pid(e->ia)), "killed-by");
    d = expect_port_down(e->ib, rb);
    cr_assert(kumo_send_port_eq(d.port, sp));
    kt_assert_reason(&d.reason, KUMO_KILLED, "done");

    cr_assert_eq(kumo_monitor_port(me, sp, &ra), 0);
    d = expect_port_down(e->ia, ra);
    kt_assert_reason(&d.reason, KUMO_UNKNOWN_ID, NULL);
    /* Nothing else: no plain DOWN, nothing for the cancelled one. */
    kt_expect_empty(e->ia);
    kt_expect_empty(e->ib);
    free(s);
}

DT_TEST(dist, monitors_from_two_nodes_with_equal_ref_ids_stay_apart)
{
    /* Both inboxes' first refs come from counters that start alike on
     * every node: the target must tell them apart by the watcher's node. */
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kumo_ref ra, rb;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ia), echo, &ra), 0);
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ib), echo, &rb), 0);
    cr_assert_eq(ra.id, rb.id, "the refs were meant to collide (%llx, %llx)",
                 (unsigned long long)ra.id, (unsigned long long)rb.id);
    cr_assert_eq(kumo_unmonitor(kumo_inbox_proc(e->ia), ra), 0);
    /* a's DEMONITOR reaches the echo before this message does */
    kt_send_u64(kumo_inbox_proc(e->ia), echo, kt_type_stop(), 0);
    kumo_down_msg d = kt_expect_down_ref(e->ib, rb);
    kt_assert_reason(&d.reason, KUMO_NORMAL, NULL);
    /* and a, having unmonitored, gets nothing: a marker from b comes first */
    kumo_pid echo2 = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kt_send_u64(kumo_inbox_proc(e->ia), echo2, kt_type("dt.marker"), 1);
    kumo_msg_free(kt_expect_next(e->ia, kt_type("dt.marker")));
    kt_send_u64(kumo_inbox_proc(e->ia), echo2, kt_type_stop(), 0);
}

/* ------------------------------------------------------------------ */
/* Remote spawn and node monitors                                      */
/* ------------------------------------------------------------------ */

DT_TEST(dist, a_closure_spawned_on_the_other_node_runs_there)
{
    kumo_pid echo;
    int err = kumo_spawn_remote_wait(e->ia, e->b_id, "dt.echo", NULL, 0, NULL, &echo);
    cr_assert_eq(err, 0, "spawn: %s", kumo_strerror(err));
    cr_assert_eq(echo.node, e->b_id);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kt_send_u64(me, echo, kt_type("dt.hi"), 42);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.hi")), 42);
    kt_send_u64(me, echo, kt_type_stop(), 0);
}

DT_TEST(dist, an_unknown_closure_is_refused_and_the_node_goes_on)
{
    kumo_pid pid = {0};
    int err = kumo_spawn_remote_wait(e->ia, e->b_id, "dt.no-such-closure", "x", 1, NULL, &pid);
    cr_assert_eq(err, -KUMO_ENOCLOSURE, "got %s", kumo_strerror(err));
    cr_assert(kumo_pid_is_null(pid));
    err = kumo_spawn_remote_wait(e->ia, e->b_id, "dt.echo", NULL, 0, NULL, &pid);
    cr_assert_eq(err, 0, "the node no longer spawns: %s", kumo_strerror(err));
    kt_send_u64(kumo_inbox_proc(e->ia), pid, kt_type_stop(), 0);
}

DT_TEST(dist, a_remote_spawn_with_monitor_sees_an_immediate_death)
{
    kumo_ref mon;
    kumo_spawn_opts o = {.monitor = &mon, .shard = KT_OTHER(kt_shards)};
    kumo_pid pid;
    int err = kumo_spawn_remote_wait(e->ia, e->b_id, "dt.fail", "now", 3, &o, &pid);
    cr_assert_eq(err, 0, "spawn: %s", kumo_strerror(err));
    cr_assert_eq(pid.shard, KT_OTHER(kt_shards));
    kumo_down_msg d = kt_expect_down_ref(e->ia, mon);
    cr_assert(kumo_pid_eq(d.pid, pid));
    kt_assert_reason(&d.reason, KUMO_EXCEPTION, "failed with now");
}

DT_TEST(dist, a_remote_spawn_with_link_gets_the_exit_signal)
{
    kumo_spawn_opts o = {.link = true};
    kumo_pid pid;
    int err = kumo_spawn_remote_wait(e->ia, e->b_id, "dt.fail", "soon", 4, &o, &pid);
    cr_assert_eq(err, 0, "spawn: %s", kumo_strerror(err));
    kumo_exit_msg x = kt_expect_exit(e->ia, pid);
    kt_assert_reason(&x.reason, KUMO_EXCEPTION, "failed with soon");
}

DT_TEST(dist, a_spawn_on_an_unknown_node_fails_with_connlost)
{
    kumo_pid pid;
    int err = kumo_spawn_remote_wait(e->ia, 0x1234567890abcdefull, "dt.echo", NULL, 0, NULL, &pid);
    cr_assert_eq(err, -KUMO_ECONNLOST, "got %s", kumo_strerror(err));
}

DT_TEST(dist, a_spawn_on_this_node_by_closure_works_too)
{
    kumo_ref mon;
    kumo_spawn_opts o = {.monitor = &mon};
    kumo_pid pid;
    int err = kumo_spawn_remote_wait(e->ia, e->a_id, "dt.fail", "here", 4, &o, &pid);
    cr_assert_eq(err, 0, "spawn: %s", kumo_strerror(err));
    cr_assert_eq(pid.node, e->a_id);
    kumo_down_msg d = kt_expect_down_ref(e->ia, mon);
    kt_assert_reason(&d.reason, KUMO_EXCEPTION, "failed with here");
}

DT_TEST(dist, call_runs_a_closure_and_returns_its_answer)
{
    /* Cloud Haskell's call, on the other node and on this one. */
    uint64_t nodes[] = {e->b_id, e->a_id};
    for (int i = 0; i < 2; i++) {
        uint64_t x = 12 + (uint64_t)i;
        kumo_msg *r = NULL;
        kumo_reason why;
        int err = kumo_call_wait(e->ia, nodes[i], "dt.square", &x, sizeof x, KT_WAIT_NS, &r, &why);
        cr_assert_eq(err, 0, "call: %s", kumo_strerror(err));
        cr_assert_eq(kumo_msg_type(r), kumo_type_call_return());
        cr_assert_eq(kumo_msg_sender(r).node, nodes[i]);
        uint64_t v;
        KT_TAKE(r, v);
        cr_assert_eq(v, x * x);
    }

    /* A call whose process ends without answering: its reason. */
    kumo_msg *r = NULL;
    kumo_reason why;
    int err = kumo_call_wait(e->ia, e->b_id, "dt.fail", "here", 4, KT_WAIT_NS, &r, &why);
    cr_assert_eq(err, -KUMO_ENOPROC, "got %s", kumo_strerror(err));
    kt_assert_reason(&why, KUMO_EXCEPTION, "failed with here");
    cr_assert_eq(kumo_call_wait(e->ia, e->b_id, "dt.nothing", NULL, 0, KT_WAIT_NS, &r, &why),
                 -KUMO_ENOCLOSURE);
    /* One that never answers: the wait ends, and the child with it. */
    err = kumo_call_wait(e->ia, e->b_id, "dt.echo", NULL, 0, 20 * KT_MS, &r, &why);
    cr_assert_eq(err, -KUMO_ETIMEOUT, "got %s", kumo_strerror(err));
    /* The answers, spawn replies and DOWNs of all of that were taken. */
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kt_send_u64(kumo_inbox_proc(e->ia), echo, kt_type("dt.sync"), 1);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.sync")), 1);
    kt_expect_empty(e->ia);
    kt_send_u64(kumo_inbox_proc(e->ia), echo, kt_type_stop(), 0);
}

static kumo_node_down_msg expect_node_down(kumo_inbox *ib, kumo_ref ref)
{
    kumo_node_down_msg d;
    expect_with_ref(ib, kumo_type_node_down(), ref, &d, sizeof d);
    return d;
}

DT_TEST(dist, a_node_monitor_fires_once_when_the_link_breaks)
{
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor_node(me, e->b_id, &ref), 0);
    cr_assert_eq(kumo_node_break_link(e->a, e->b_id), 0);
    kumo_node_down_msg d = expect_node_down(e->ia, ref);
    cr_assert_eq(d.node, e->b_id);
    kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);
    /* The controller reconnects by itself: a spawn works again, and no
     * second node-down came before its answer. */
    kumo_pid pid;
    int err = kumo_spawn_remote_wait(e->ia, e->b_id, "dt.echo", NULL, 0, NULL, &pid);
    cr_assert_eq(err, 0, "spawn after the break: %s", kumo_strerror(err));
    kt_expect_empty(e->ia);
    kt_send_u64(me, pid, kt_type_stop(), 0);
}

DT_TEST(dist, monitoring_an_unknown_node_fires_at_once)
{
    kumo_ref ref;
    cr_assert_eq(kumo_monitor_node(kumo_inbox_proc(e->ia), 0xfeedfacecafebeefull, &ref), 0);
    kumo_node_down_msg d = expect_node_down(e->ia, ref);
    cr_assert_eq(d.node, 0xfeedfacecafebeefull);
    kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);
}

DT_TEST(dist, an_unmonitored_node_sends_nothing)
{
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_ref ref, keep;
    cr_assert_eq(kumo_monitor_node(me, e->b_id, &ref), 0);
    cr_assert_eq(kumo_monitor_node(me, e->b_id, &keep), 0);
    cr_assert_eq(kumo_unmonitor(me, ref), 0);
    cr_assert_eq(kumo_node_break_link(e->a, e->b_id), 0);
    kumo_node_down_msg d = expect_node_down(e->ia, keep);
    kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);
    kt_expect_empty(e->ia);
}

DT_TEST(dist, channel_and_mailbox_messages_keep_their_order_across_nodes)
{
    /* b's process sends alternately on a channel an inbox of a owns and to
     * that inbox's mailbox: each value's first half is queued by the time
     * its second half can be received. */
    kumo_send_port sp;
    kumo_recv_port *rp;
    cr_assert_eq(kumo_new_chan(kumo_inbox_proc(e->ia), kt_type("dt.ch"), &sp, &rp), 0);
    kumo_pid s = kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)},
                          kt_order_sender_init, NULL);
    kt_order_check(e->ia, s, sp, rp);
    cr_assert_eq(kumo_close_port(kumo_inbox_proc(e->ia), rp), 0);
}

/* ------------------------------------------------------------------ */
/* A third node                                                        */
/* ------------------------------------------------------------------ */

DT_TEST(dist, a_pid_of_a_third_node_got_in_a_message_is_usable)
{
    /* c is known to b only; a gets a pid of c from b, in a payload, and
     * talks to it without ever being introduced to c. */
    kumo_dist_transport tc;
    kumo_node *c = kt_start_more(dt_cfg(e->transport, kt_shards, &tc));
    kumo_inbox *ic = kt_inbox(c);
    kumo_address ca;
    cr_assert_eq(kumo_node_address(c, 0, &ca), 0);
    uint64_t c_id;
    cr_assert_eq(kumo_node_connect(e->b, &ca, KT_WAIT_NS, &c_id), 0);
    kumo_pid echo = kt_spawn(c, ic, NULL, kt_echo_init, NULL);

    /* c's echo hands b its own pid (the reply's sender); b passes it on */
    uint64_t T = kt_type("dt.pid");
    kumo_proc *bp = kumo_inbox_proc(e->ib);
    kt_send_u64(bp, echo, kt_type("dt.hello"), 1);
    kumo_msg *m = kt_expect(e->ib, kt_type("dt.hello"));
    kumo_pid got = kumo_msg_sender(m);
    kumo_msg_free(m);
    cr_assert(kumo_pid_eq(got, echo));
    cr_assert_eq(kumo_send(bp, kumo_inbox_pid(e->ia), T, &got, sizeof got), 0);
    kumo_pid third;
    KT_TAKE(kt_expect(e->ia, T), third);
    cr_assert_eq(third.node, c_id);

    kumo_proc *ap = kumo_inbox_proc(e->ia);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(ap, third, &ref), 0);
    kt_send_u64(ap, third, kt_type("dt.direct"), 99);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.direct")), 99);
    kt_send_u64(ap, third, kt_type_stop(), 0);
    kumo_down_msg d = kt_expect_down_ref(e->ia, ref);
    kt_assert_reason(&d.reason, KUMO_NORMAL, NULL);

    /* A reason that names a process of c reaches a whole: c kills a
     * process of b that a monitors, and a's DOWN says killed-by c. */
    kumo_pid victim = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    cr_assert_eq(kumo_monitor(ap, victim, &ref), 0);
    kt_send_u64(ap, victim, kt_type("dt.sync"), 5); /* the monitor is in place */
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.sync")), 5);
    cr_assert_eq(kumo_kill(kumo_inbox_proc(ic), victim, "from c"), 0);
    d = kt_expect_down_ref(e->ia, ref);
    kt_assert_reason(&d.reason, KUMO_KILLED, "from c");
    cr_assert_eq(d.reason.via, KUMO_VIA_KILL);
    cr_assert(kumo_pid_eq(d.reason.by, kumo_inbox_pid(ic)), "by %s, expected %s",
              kt_pid(d.reason.by), kt_pid(kumo_inbox_pid(ic)));
    cr_assert_eq(d.reason.by.node, c_id);

    kumo_inbox_free(ic);
    kumo_node_free(c);
}

/* ------------------------------------------------------------------ */
/* Node incarnations                                                   */
/* ------------------------------------------------------------------ */

DT_TEST(dist, a_node_restarted_at_its_place_is_another_node)
{
    /* b is stopped and started again at the same place: over tcp on the
     * same port, over shm in the same OS process.  a learns that the old
     * incarnation is gone (from the new one's HELLO, or from its old
     * address not being found), and b's old pids are dead from then on. */
    bool tcp = strcmp(e->transport, "tcp") == 0;
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_pid old =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, old, &ref), 0);
    kt_send_u64(me, old, kt_type("dt.sync"), 1);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.sync")), 1);
    kumo_address old_addr;
    cr_assert_eq(kumo_node_address(e->b, 0, &old_addr), 0);
    uint64_t old_id = e->b_id;

    kumo_inbox_free(e->ib);
    kumo_node_free(e->b);
    kumo_down_msg d = kt_expect_down_ref(e->ia, ref); /* watches that had crossed */
    kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);

    kumo_dist_transport tb;
    kumo_node_config cb = dt_cfg(e->transport, kt_shards, &tb);
    kumo_tcp_config tcfg = dt_tcp;
    if (tcp) {
        char as[128];
        unsigned a0, a1, a2, a3, port;
        kumo_address_str(&old_addr, as, sizeof as);
        cr_assert_eq(sscanf(as, "tcp://%u.%u.%u.%u:%u", &a0, &a1, &a2, &a3, &port), 5, "%s", as);
        tcfg.port = (uint16_t)port;
        tb.config = &tcfg;
    }
    e->b = kt_start_more(cb);
    e->ib = kt_inbox(e->b);
    kumo_address new_addr;
    cr_assert_eq(kumo_node_address(e->b, 0, &new_addr), 0);
    cr_assert(!kumo_address_eq(&old_addr, &new_addr), "a new incarnation has a new address");
    cr_assert_eq(kumo_address_same_place(&old_addr, &new_addr), tcp);
    cr_assert_eq(kumo_node_connect(e->a, &new_addr, KT_WAIT_NS, &e->b_id), 0);
    cr_assert_neq(e->b_id, old_id);

    /* The old pids: monitor and link say unknown-id (not disconnect). */
    cr_assert_eq(kumo_monitor(me, old, &ref), 0);
    d = kt_expect_down_ref(e->ia, ref);
    kt_assert_reason(&d.reason, KUMO_UNKNOWN_ID, NULL);
    cr_assert_eq(kumo_link(me, old), 0);
    kumo_exit_msg x = kt_expect_exit(e->ia, old);
    kt_assert_reason(&x.reason, KUMO_UNKNOWN_ID, NULL);
    kumo_ref nref;
    cr_assert_eq(kumo_monitor_node(me, old_id, &nref), 0);
    kumo_node_down_msg nd = expect_node_down(e->ia, nref);
    cr_assert_eq(nd.node, old_id);
    /* Its old address is not found; a spawn there fails. */
    uint64_t id = 0;
    cr_assert_eq(kumo_node_connect(e->a, &old_addr, KT_WAIT_NS, &id), -KUMO_ENOTFOUND);
    kumo_pid pid;
    cr_assert_eq(kumo_spawn_remote_wait(e->ia, old_id, "dt.echo", NULL, 0, NULL, &pid),
                 -KUMO_ECONNLOST);

    /* A send to an old pid never reaches the new node, even where the new
     * node has a process with the same local part. */
    kumo_pid fresh =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    kumo_pid stale = fresh;
    stale.node = old_id;
    kt_send_u64(me, stale, kt_type("dt.which"), 1);
    kt_send_u64(me, fresh, kt_type("dt.which"), 2);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.which")), 2);
    kt_send_u64(me, fresh, kt_type("dt.sync"), 3);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.sync")), 3);
    kt_expect_empty(e->ia);
    kt_send_u64(me, fresh, kt_type_stop(), 0);
}

/* ------------------------------------------------------------------ */
/* Disconnect, reconnect, usend                                        */
/* ------------------------------------------------------------------ */

/* Breaks the a-b link and waits until a has seen the loss. */
static void dt_break(dt_env *e)
{
    kumo_ref nref;
    cr_assert_eq(kumo_monitor_node(kumo_inbox_proc(e->ia), e->b_id, &nref), 0);
    cr_assert_eq(kumo_node_break_link(e->a, e->b_id), 0);
    expect_node_down(e->ia, nref);
}

/* Forwards every message to the pid in its state (which must outlive
 * it): what a receiver got, observed on its own node. */
/* Ends a process of b from b's inbox and waits until it is gone (before
 * its state, on the test's stack, goes away). */
static void dt_end_on_b(dt_env *e, kumo_pid pid)
{
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ib), pid, &ref), 0);
    cr_assert_eq(kumo_kill(kumo_inbox_proc(e->ib), pid, NULL), 0);
    kt_expect_down_ref(e->ib, ref);
}

static void relay_got(kumo_proc *self, void *state, kumo_msg *m);
static kumo_match relay_any = {.kind = KUMO_MATCH_ANY, .fn = relay_got};
static const kumo_recv relay_set = {.matches = &relay_any, .n = 1};
static void relay_got(kumo_proc *self, void *state, kumo_msg *m)
{
    kumo_forward(self, *(kumo_pid *)state, m);
    kumo_receive(self, &relay_set, KUMO_INFINITY);
}
static void relay_init(kumo_proc *self, void *state)
{
    (void)state;
    kumo_receive(self, &relay_set, KUMO_INFINITY);
}

DT_TEST(dist, after_a_break_sends_are_dropped_until_reconnect)
{
    /* Cloud Haskell's testReconnect: the receiver gets m1 and m3, never m2
     * (sent after the break, before reconnect). */
    uint64_t T = kt_type("dt.m");
    kumo_pid to_b = kumo_inbox_pid(e->ib);
    kumo_pid relay =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, relay_init, &to_b);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kt_send_u64(me, relay, T, 1);
    cr_assert_eq(kt_expect_u64(e->ib, T), 1);
    dt_break(e);
    cr_assert_eq(kumo_send(me, relay, T, &(uint64_t){2}, 8), 0, "a dropped send still returns 0");
    cr_assert_eq(kumo_reconnect(me, relay), 0);
    kt_send_u64(me, relay, T, 3);
    cr_assert_eq(kt_expect_u64(e->ib, T), 3, "m2 arrived: the pair was not disconnected");
    kt_expect_empty(e->ib);
    dt_end_on_b(e, relay);
}

DT_TEST(dist, a_reply_over_a_broken_pair_needs_its_own_reconnect)
{
    /* The echo answered a before the break, so its pair (echo, a) is
     * disconnected too: its answers are dropped until it reconnects. */
    uint64_t T = kt_type("dt.m");
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kt_send_u64(me, echo, T, 1);
    cr_assert_eq(kt_expect_u64(e->ia, T), 1);
    dt_break(e);
    cr_assert_eq(kumo_reconnect(me, echo), 0);
    kt_send_u64(me, echo, T, 2); /* arrives; its answer is dropped on b */
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, echo, &ref), 0);
    kt_send_u64(me, echo, kt_type_stop(), 0);
    kumo_down_msg d = kt_expect_down_ref(e->ia, ref);
    kt_assert_reason(&d.reason, KUMO_NORMAL, NULL);
    kt_expect_empty(e->ia);
}

DT_TEST(dist, a_pair_that_first_talks_after_a_break_is_not_disconnected)
{
    uint64_t T = kt_type("dt.m");
    kumo_pid to_b = kumo_inbox_pid(e->ib);
    kumo_pid old = kt_spawn(e->b, e->ib, NULL, relay_init, &to_b);
    kumo_pid fresh = kt_spawn(e->b, e->ib, NULL, relay_init, &to_b);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kt_send_u64(me, old, T, 1);
    cr_assert_eq(kt_expect_u64(e->ib, T), 1);
    dt_break(e);
    kt_send_u64(me, fresh, T, 2);
    cr_assert_eq(kt_expect_u64(e->ib, T), 2);
    kt_send_u64(me, old, T, 3); /* dropped: this pair talked before */
    kt_send_u64(me, fresh, T, 4);
    cr_assert_eq(kt_expect_u64(e->ib, T), 4);
    kt_expect_empty(e->ib);
    dt_end_on_b(e, old);
    dt_end_on_b(e, fresh);
}

DT_TEST(dist, usend_ignores_the_reconnect_history)
{
    /* Cloud Haskell's testUSend: a break before each send blocks none. */
    uint64_t T = kt_type("dt.u");
    kumo_pid to_b = kumo_inbox_pid(e->ib);
    kumo_pid relay = kt_spawn(e->b, e->ib, NULL, relay_init, &to_b);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    for (uint64_t i = 0; i < 5; i++) {
        cr_assert_eq(kumo_usend(me, relay, T, &i, sizeof i), 0);
        cr_assert_eq(kt_expect_u64(e->ib, T), i);
        dt_break(e);
    }
    dt_end_on_b(e, relay);
}

/* ------------------------------------------------------------------ */
/* A busy link                                                         */
/* ------------------------------------------------------------------ */

/* Checks that messages arrive numbered 0, 1, 2, ... (the first 8 bytes)
 * and answers each one's number to b's inbox (the pid in its state). */
static void seq_got(kumo_proc *self, void *state, kumo_msg *m);
static kumo_match seq_any = {.kind = KUMO_MATCH_ANY, .fn = seq_got};
static const kumo_recv seq_set = {.matches = &seq_any, .n = 1};
struct seq_state {
    kumo_pid report;
    uint64_t next;
};
static void seq_got(kumo_proc *self, void *state, kumo_msg *m)
{
    struct seq_state *s = state;
    uint64_t v = UINT64_MAX;
    if (kumo_msg_len(m) >= 8)
        memcpy(&v, kumo_msg_data(m), 8);
    if (v != s->next)
        v |= 1ull << 63; /* out of order or a gap */
    s->next++;
    kumo_send(self, s->report, kt_type("dt.seq.got"), &v, sizeof v);
    kumo_receive(self, &seq_set, KUMO_INFINITY);
}
static void seq_init(kumo_proc *self, void *state)
{
    (void)state;
    kumo_receive(self, &seq_set, KUMO_INFINITY);
}

DT_TEST(dist, a_flood_past_the_links_send_queue_arrives_whole_and_in_order)
{
    /* 48 MiB sent at once: past the transport's 32 MiB send queue, so the
     * link goes busy and the controller must resume when it drains. */
    struct seq_state st = {.report = kumo_inbox_pid(e->ib)};
    kumo_pid seq =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, seq_init, &st);
    size_t len = 1u << 20;
    uint8_t *buf = calloc(1, len);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    enum { N = 48 };
    for (uint64_t i = 0; i < N; i++) {
        memcpy(buf, &i, 8);
        buf[len - 1] = (uint8_t)i;
        cr_assert_eq(kumo_send(me, seq, kt_type("dt.flood"), buf, len), 0);
    }
    for (uint64_t i = 0; i < N; i++) {
        uint64_t v = kt_expect_u64(e->ib, kt_type("dt.seq.got"));
        cr_assert_eq(v, i, "message %llu arrived as %llx", (unsigned long long)i,
                     (unsigned long long)v);
    }
    free(buf);
    dt_end_on_b(e, seq);
}

/* ------------------------------------------------------------------ */
/* Remote registry                                                     */
/* ------------------------------------------------------------------ */

DT_TEST(dist, a_name_registered_remotely_is_found_and_used_from_the_other_node)
{
    kumo_pid echo =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    int err = kumo_register_remote_wait(e->ia, e->b_id, "dt.svc", echo, KT_WAIT_NS);
    cr_assert_eq(err, 0, "register_remote: %s", kumo_strerror(err));
    kumo_pid got;
    cr_assert_eq(kumo_whereis(e->b, "dt.svc", &got), 0, "the name is on b");
    cr_assert(kumo_pid_eq(got, echo));
    err = kumo_whereis_remote_wait(e->ia, e->b_id, "dt.svc", KT_WAIT_NS, &got);
    cr_assert_eq(err, 0, "whereis_remote: %s", kumo_strerror(err));
    cr_assert(kumo_pid_eq(got, echo));
    /* a name already taken, a dead pid */
    err = kumo_register_remote_wait(e->ia, e->b_id, "dt.svc", echo, KT_WAIT_NS);
    cr_assert_eq(err, -KUMO_ENAMETAKEN, "got %s", kumo_strerror(err));
    err = kumo_register_remote_wait(e->ia, e->b_id, "dt.ghost", kt_forge_pid(echo), KT_WAIT_NS);
    cr_assert_eq(err, -KUMO_ENOPROC, "got %s", kumo_strerror(err));
    /* nsend_remote reaches it, from a's inbox */
    uint64_t v = 77;
    cr_assert_eq(
        kumo_nsend_remote(kumo_inbox_proc(e->ia), e->b_id, "dt.svc", kt_type("dt.n"), &v, sizeof v),
        0);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.n")), 77);
    /* to an unknown name: dropped, and nothing else goes wrong */
    kumo_nsend_remote(kumo_inbox_proc(e->ia), e->b_id, "dt.nobody", kt_type("dt.n"), &v, 8);
    err = kumo_unregister_remote_wait(e->ia, e->b_id, "dt.svc", KT_WAIT_NS);
    cr_assert_eq(err, 0, "unregister_remote: %s", kumo_strerror(err));
    err = kumo_whereis_remote_wait(e->ia, e->b_id, "dt.svc", KT_WAIT_NS, &got);
    cr_assert_eq(err, -KUMO_ENONAME, "got %s", kumo_strerror(err));
    err = kumo_unregister_remote_wait(e->ia, e->b_id, "dt.svc", KT_WAIT_NS);
    cr_assert_eq(err, -KUMO_ENONAME, "got %s", kumo_strerror(err));
    kt_expect_empty(e->ia);
    kt_send_u64(kumo_inbox_proc(e->ia), echo, kt_type_stop(), 0);
}

DT_TEST(dist, a_remote_name_dies_with_its_process)
{
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    cr_assert_eq(kumo_register_remote_wait(e->ia, e->b_id, "dt.mortal", echo, KT_WAIT_NS), 0);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ia), echo, &ref), 0);
    kt_send_u64(kumo_inbox_proc(e->ia), echo, kt_type_stop(), 0);
    kt_expect_down_ref(e->ia, ref);
    kumo_pid got;
    int err = kumo_whereis_remote_wait(e->ia, e->b_id, "dt.mortal", KT_WAIT_NS, &got);
    cr_assert_eq(err, -KUMO_ENONAME, "got %s", kumo_strerror(err));
}

DT_TEST(dist, registry_requests_to_an_unreachable_node_fail_with_connlost)
{
    kumo_pid got;
    int err = kumo_whereis_remote_wait(e->ia, 0x0badc0ffee0ddf00dull, "x", KT_WAIT_NS, &got);
    cr_assert_eq(err, -KUMO_ECONNLOST, "got %s", kumo_strerror(err));
    err = kumo_whereis_remote_wait(e->ia, e->a_id, "x", KT_WAIT_NS, &got);
    cr_assert_eq(err, -KUMO_ENONAME, "own node: got %s", kumo_strerror(err));
}

/* ------------------------------------------------------------------ */
/* Erlang-style links across nodes                                     */
/* ------------------------------------------------------------------ */

/* Erlang-links to target, then says hello to it: when the (echo) target
 * answers, the link is in place on its node, and the process tells
 * `report`.  Then it echoes like kt_echo. */
struct elinker {
    kumo_pid target, report;
};
static void elinker_got(kumo_proc *self, void *state, kumo_msg *m)
{
    struct elinker *l = state;
    if (kumo_msg_type(m) == kt_type("dt.hello")) {
        kumo_send(self, l->report, kt_type("dt.linked"), NULL, 0);
        kt_echo_init(self, NULL);
    }
}
static void elinker_init(kumo_proc *self, void *state)
{
    struct elinker *l = state;
    kumo_erlang_link(self, l->target);
    kumo_send(self, l->target, kt_type("dt.hello"), NULL, 0);
    kumo_expect(self, kt_type("dt.hello"), elinker_got);
}

static kumo_pid spawn_elinker(dt_env *e, struct elinker *l, kumo_ref *mon)
{
    l->report = kumo_inbox_pid(e->ia);
    kumo_pid p = kt_spawn(e->a, e->ia, &(kumo_spawn_opts){.monitor = mon}, elinker_init, l);
    kumo_msg_free(kt_expect(e->ia, kt_type("dt.linked")));
    return p;
}

DT_TEST(dist, an_erlang_link_across_nodes_spreads_a_crash_and_ignores_a_normal_end)
{
    kumo_pid crasher =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    kumo_pid quiet = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kumo_ref r1, r2;
    struct elinker l1 = {.target = crasher}, l2 = {.target = quiet};
    spawn_elinker(e, &l1, &r1);
    kumo_pid a2 = spawn_elinker(e, &l2, &r2);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_kill(kumo_inbox_proc(e->ib), crasher, "from b");
    kumo_down_msg d = kt_expect_down_ref(e->ia, r1);
    kt_assert_reason(&d.reason, KUMO_KILLED, "from b");
    kt_send_u64(kumo_inbox_proc(e->ib), quiet, kt_type_stop(), 0);
    /* a2 survives the normal end: it still answers, after b's echo is gone */
    kumo_ref rq;
    cr_assert_eq(kumo_monitor(me, quiet, &rq), 0);
    kt_expect_down_ref(e->ia, rq);
    kt_send_u64(me, a2, kt_type("dt.alive"), 3);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.alive")), 3);
    kt_send_u64(me, a2, kt_type_stop(), 0);
    kt_expect_down_ref(e->ia, r2);
}

DT_TEST(dist, a_broken_link_ends_both_ends_of_an_erlang_link_with_disconnect)
{
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kumo_ref r, rb;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ib), echo, &rb), 0);
    kt_send_u64(kumo_inbox_proc(e->ib), echo, kt_type("dt.sync"), 1);
    cr_assert_eq(kt_expect_u64(e->ib, kt_type("dt.sync")), 1);
    struct elinker l = {.target = echo};
    spawn_elinker(e, &l, &r);
    cr_assert_eq(kumo_node_break_link(e->a, e->b_id), 0);
    /* both ends of the link fire, as Erlang's noconnection does */
    kumo_down_msg d = kt_expect_down_ref(e->ia, r);
    kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);
    kumo_down_msg db = kt_expect_down_ref(e->ib, rb);
    kt_assert_reason(&db.reason, KUMO_DISCONNECT, NULL);
}

/* ------------------------------------------------------------------ */
/* Connecting                                                          */
/* ------------------------------------------------------------------ */

struct crossed {
    kumo_node *from;
    kumo_address to;
    uint64_t peer;
    int err;
    pthread_barrier_t *go;
};

static void *connect_thread(void *arg)
{
    struct crossed *c = arg;
    pthread_barrier_wait(c->go);
    c->err = kumo_node_connect(c->from, &c->to, KT_WAIT_NS, &c->peer);
    return NULL;
}

DT_TEST(dist, crossed_simultaneous_connects_give_one_working_pair)
{
    /* two fresh nodes dial each other at the same moment */
    kumo_dist_transport t1, t2;
    kumo_node *x = kt_start_more(dt_cfg(e->transport, kt_shards, &t1));
    kumo_node *y = kt_start_more(dt_cfg(e->transport, kt_shards, &t2));
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    struct crossed cx = {.from = x, .go = &go}, cy = {.from = y, .go = &go};
    cr_assert_eq(kumo_node_address(y, 0, &cx.to), 0);
    cr_assert_eq(kumo_node_address(x, 0, &cy.to), 0);
    pthread_t tx, ty;
    pthread_create(&tx, NULL, connect_thread, &cx);
    pthread_create(&ty, NULL, connect_thread, &cy);
    pthread_join(tx, NULL);
    pthread_join(ty, NULL);
    pthread_barrier_destroy(&go);
    cr_assert_eq(cx.err, 0, "x -> y: %s", kumo_strerror(cx.err));
    cr_assert_eq(cy.err, 0, "y -> x: %s", kumo_strerror(cy.err));
    cr_assert_eq(cx.peer, kumo_node_id(y));
    cr_assert_eq(cy.peer, kumo_node_id(x));
    /* both directions carry messages and signals */
    kumo_inbox *ix = kt_inbox(x), *iy = kt_inbox(y);
    kumo_pid ex = kt_spawn(x, ix, NULL, kt_echo_init, NULL);
    kumo_pid ey = kt_spawn(y, iy, NULL, kt_echo_init, NULL);
    kt_send_u64(kumo_inbox_proc(ix), ey, kt_type("dt.x"), 1);
    kt_send_u64(kumo_inbox_proc(iy), ex, kt_type("dt.y"), 2);
    cr_assert_eq(kt_expect_u64(ix, kt_type("dt.x")), 1);
    cr_assert_eq(kt_expect_u64(iy, kt_type("dt.y")), 2);
    kumo_ref r;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(ix), ey, &r), 0);
    kt_send_u64(kumo_inbox_proc(ix), ey, kt_type("dt.x"), 3); /* behind the monitor */
    cr_assert_eq(kt_expect_u64(ix, kt_type("dt.x")), 3);
    kt_send_u64(kumo_inbox_proc(iy), ey, kt_type_stop(), 0);
    kumo_down_msg d = kt_expect_down_ref(ix, r);
    kt_assert_reason(&d.reason, KUMO_NORMAL, NULL);
    kt_send_u64(kumo_inbox_proc(ix), ex, kt_type_stop(), 0);
    kumo_inbox_free(ix);
    kumo_inbox_free(iy);
    kumo_node_free(x);
    kumo_node_free(y);
}

/* Two nodes on shm and tcp.  a introduces itself over tcp; b answers over
 * the first of its transports that a offers, shm, so a must match the
 * answer to the node it dialled by any address b names (it did not: the
 * connect timed out). */
Test(dist, a_peer_dialled_over_tcp_that_answers_over_shm_is_one_peer, .timeout = KT_TIMEOUT)
{
    kumo_dist_transport both[2] = {{.name = "shm", .config = &dt_shm},
                                   {.name = "tcp", .config = &dt_tcp}};
    kumo_node_config cfg = {.shards = 1,
                            .transports = both,
                            .ntransports = 2,
                            .closures = dt_table,
                            .nclosures = sizeof dt_table / sizeof dt_table[0]};
    kumo_node *a = kt_start_cfg(cfg);
    kumo_node *b = kt_start_more(cfg);
    kumo_address b_tcp, b_shm;
    cr_assert_eq(kumo_node_address(b, 0, &b_shm), 0);
    cr_assert_eq(kumo_node_address(b, 1, &b_tcp), 0);
    char s1[128];
    cr_assert(strncmp(kumo_address_str(&b_shm, s1, sizeof s1), "shm://", 6) == 0, "%s", s1);
    cr_assert_eq(kumo_node_address(b, 2, &b_tcp) == -ENOENT, 1);
    cr_assert_eq(kumo_node_address(b, 1, &b_tcp), 0);
    /* introduced over tcp; b answers over its preferred transport, shm */
    kumo_inbox *ia = kt_inbox(a), *ib = kt_inbox(b);
    uint64_t bid;
    cr_assert_eq(kumo_node_connect(a, &b_tcp, KT_WAIT_NS, &bid), 0);
    kumo_pid echo;
    cr_assert_eq(kumo_spawn_remote_wait(ia, bid, "dt.echo", NULL, 0, NULL, &echo), 0);
    kt_send_u64(kumo_inbox_proc(ia), echo, kt_type("dt.two"), 5);
    cr_assert_eq(kt_expect_u64(ia, kt_type("dt.two")), 5);
    kumo_ref r;
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(ia), echo, &r), 0);
    kt_send_u64(kumo_inbox_proc(ia), echo, kt_type_stop(), 0);
    kt_expect_down_ref(ia, r);
    kumo_inbox_free(ib);
    kumo_node_free(b);
    kumo_inbox_free(ia);
    kt_stop(a);
}

struct dial {
    kumo_node *node;
    kumo_address addr;
    uint64_t id;
    int err;
};

static void *dial_thread(void *arg)
{
    struct dial *x = arg;
    x->err = kumo_node_connect(x->node, &x->addr, KT_WAIT_NS, &x->id);
    return NULL;
}

/* "tcp://127.0.0.1:<port>" without an incarnation: the node listening
 * there now, as an Erlang user names a node by host. */
Test(dist, a_node_is_reached_by_its_host_and_port_alone, .timeout = KT_TIMEOUT)
{
    kumo_dist_transport ta, tb;
    kumo_node *a = kt_start_cfg(dt_cfg("tcp", 1, &ta));
    kumo_node_config cb = dt_cfg("tcp", 1, &tb);
    kumo_node *b = kt_start_more(cb);
    kumo_address real, place;
    cr_assert_eq(kumo_node_address(b, 0, &real), 0);
    char s[KUMO_ADDRESS_STR_MAX];
    kumo_address_str(&real, s, sizeof s);
    *strrchr(s, '/') = 0;
    cr_assert_eq(kumo_address_parse(s, &place), 0, "%s", s);
    kumo_inbox *ia = kt_inbox(a);
    /* Dialled by place and by its full address at once: one peer, and
     * both calls answered with it. */
    struct dial other = {.node = a, .addr = real};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, dial_thread, &other), 0);
    uint64_t bid = 0;
    int err = kumo_node_connect(a, &place, KT_WAIT_NS, &bid);
    pthread_join(t, NULL);
    cr_assert_eq(err, 0, "connect to %s: %s", s, kumo_strerror(err));
    cr_assert_eq(bid, kumo_node_id(b));
    cr_assert_eq(other.err, 0, "connect to the full address: %s", kumo_strerror(other.err));
    cr_assert_eq(other.id, bid);
    kumo_pid echo;
    cr_assert_eq(kumo_spawn_remote_wait(ia, bid, "dt.echo", NULL, 0, NULL, &echo), 0);
    kt_send_u64(kumo_inbox_proc(ia), echo, kt_type("dt.place"), 9);
    cr_assert_eq(kt_expect_u64(ia, kt_type("dt.place")), 9);
    /* Again: the node is known, the answer is the same. */
    uint64_t again = 0;
    cr_assert_eq(kumo_node_connect(a, &place, KT_WAIT_NS, &again), 0);
    cr_assert_eq(again, bid);

    /* The link broken: the place reaches the same node again. */
    kumo_ref nref;
    cr_assert_eq(kumo_monitor_node(kumo_inbox_proc(ia), bid, &nref), 0);
    cr_assert_eq(kumo_node_break_link(a, bid), 0);
    kumo_node_down_msg nd = expect_node_down(ia, nref);
    cr_assert_eq(nd.node, bid);
    cr_assert_eq(kumo_node_connect(a, &place, KT_WAIT_NS, &again), 0);
    cr_assert_eq(again, bid);

    /* b restarted at the same port: the place reaches the new node. */
    kumo_node_free(b);
    kumo_tcp_config tcfg = dt_tcp;
    tcfg.port = (uint16_t)(place.bytes[6] << 8 | place.bytes[7]);
    tb.config = &tcfg;
    b = kt_start_more(cb);
    err = kumo_node_connect(a, &place, KT_WAIT_NS, &again);
    cr_assert_eq(err, 0, "connect to %s after the restart: %s", s, kumo_strerror(err));
    cr_assert_eq(again, kumo_node_id(b));
    cr_assert_neq(again, bid);
    err = kumo_spawn_remote_wait(ia, again, "dt.echo", NULL, 0, NULL, &echo);
    cr_assert_eq(err, 0, "spawn on the new node: %s", kumo_strerror(err));
    kt_send_u64(kumo_inbox_proc(ia), echo, kt_type("dt.place"), 10);
    cr_assert_eq(kt_expect_u64(ia, kt_type("dt.place")), 10);
    kumo_node_free(b);
    kumo_inbox_free(ia);
    kt_stop(a);
}

DT_TEST(dist, the_null_pid_is_no_process_on_a_distributed_node)
{
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, (kumo_pid){0}, &ref), 0);
    kumo_down_msg d = kt_expect_down_ref(e->ia, ref);
    kt_assert_reason(&d.reason, KUMO_UNKNOWN_ID, NULL);
    cr_assert_eq(kumo_send(me, (kumo_pid){0}, kt_type("dt.void"), "x", 1), 0);
    kt_expect_empty(e->ia);
    kt_expect_empty(e->ib);
}

/* ------------------------------------------------------------------ */
/* Many nodes in one OS process                                        */
/* ------------------------------------------------------------------ */

#define MANY 10
#define MANY_STOPPED 5

KT_TEST(dist, ten_nodes_over_inmem_monitor_each_other_and_one_stops)
{
    /* Ten nodes over inmem in this OS process, each connected to every
     * other.  Each node's inbox monitors every other node and the echo
     * process running there.  Node 5 stops: every other node sees exactly
     * its node-down and its echo's DOWN, both with disconnect, and the
     * other nine go on talking. */
    kumo_node *n[MANY];
    kumo_inbox *ib[MANY];
    kumo_pid echo[MANY];
    uint64_t id[MANY];
    kumo_ref pmon[MANY][MANY], nmon[MANY][MANY];
    kumo_dist_transport slot[MANY];
    for (int i = 0; i < MANY; i++) {
        kumo_node_config c = dt_cfg("inmem", kt_shards, &slot[i]);
        n[i] = i == 0 ? kt_start_cfg(c) : kt_start_more(c);
        ib[i] = kt_inbox(n[i]);
        id[i] = kumo_node_id(n[i]);
        echo[i] = kt_spawn(n[i], ib[i], &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)},
                           kt_echo_init, NULL);
    }
    for (int i = 0; i < MANY; i++)
        for (int j = i + 1; j < MANY; j++) {
            kumo_address a;
            uint64_t got = 0;
            cr_assert_eq(kumo_node_address(n[j], 0, &a), 0);
            int err = kumo_node_connect(n[i], &a, KT_WAIT_NS, &got);
            cr_assert_eq(err, 0, "connect %d -> %d: %s", i, j, kumo_strerror(err));
            cr_assert_eq(got, id[j]);
        }
    for (int i = 0; i < MANY; i++) {
        kumo_proc *me = kumo_inbox_proc(ib[i]);
        for (int j = 0; j < MANY; j++) {
            if (j == i)
                continue;
            cr_assert_eq(kumo_monitor_node(me, id[j], &nmon[i][j]), 0);
            cr_assert_eq(kumo_monitor(me, echo[j], &pmon[i][j]), 0);
        }
        /* Every monitor is in place at its target once an echo from each
         * node came back (the MONITOR went first on the same pair). */
        for (int j = 0; j < MANY; j++)
            if (j != i)
                kt_send_u64(me, echo[j], kt_type("dt.many"), (uint64_t)j);
        uint64_t seen = 0;
        for (int k = 0; k < MANY - 1; k++)
            seen |= 1ull << kt_expect_u64(ib[i], kt_type("dt.many"));
        cr_assert_eq(seen, ((1ull << MANY) - 1) & ~(1ull << i), "node %d heard %llx", i,
                     (unsigned long long)seen);
    }

    kumo_inbox_free(ib[MANY_STOPPED]);
    kumo_node_free(n[MANY_STOPPED]);

    for (int i = 0; i < MANY; i++) {
        if (i == MANY_STOPPED)
            continue;
        kumo_down_msg d = kt_expect_down_ref(ib[i], pmon[i][MANY_STOPPED]);
        cr_assert(kumo_pid_eq(d.pid, echo[MANY_STOPPED]));
        kt_assert_reason(&d.reason, KUMO_DISCONNECT, NULL);
        kumo_node_down_msg nd = expect_node_down(ib[i], nmon[i][MANY_STOPPED]);
        cr_assert_eq(nd.node, id[MANY_STOPPED]);
        kt_assert_reason(&nd.reason, KUMO_DISCONNECT, NULL);
        /* The others are up: one round of echoes, and nothing else came. */
        kumo_proc *me = kumo_inbox_proc(ib[i]);
        for (int j = 0; j < MANY; j++)
            if (j != i && j != MANY_STOPPED)
                kt_send_u64(me, echo[j], kt_type("dt.many"), (uint64_t)j);
        for (int k = 0; k < MANY - 2; k++)
            kumo_msg_free(kt_expect_next(ib[i], kt_type("dt.many")));
        kt_expect_empty(ib[i]);
    }

    for (int i = MANY - 1; i >= 0; i--) {
        if (i == MANY_STOPPED)
            continue;
        kumo_inbox_free(ib[i]);
        if (i == 0)
            kt_stop(n[0]);
        else
            kumo_node_free(n[i]);
    }
}

KT_TEST(dist, a_node_id_prints_and_parses_back)
{
    kt_env e = kt_env_start(kt_shards);
    uint64_t id = kumo_node_id(e.node), back = 0;
    char s[32], p[64];
    kumo_node_id_str(id, s, sizeof s);
    cr_assert_eq(strlen(s), 16u);
    /* A pid's text starts with its node's. */
    kumo_pid_str(kumo_inbox_pid(e.ib), p, sizeof p);
    cr_assert_eq(strncmp(p, s, 16), 0, "%s vs %s", p, s);
    cr_assert_eq(kumo_node_id_parse(s, &back), 0);
    cr_assert_eq(back, id);
    cr_assert_eq(kumo_node_id_parse("00000000000000ff", &back), 0);
    cr_assert_eq(back, 0xffu);
    const char *bad[] = {"", "0", "0000000000000000", "12345678901234567", "12g4", " 12", "-1"};
    back = 7;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(kumo_node_id_parse(bad[i], &back), -EINVAL, "\"%s\" parsed", bad[i]);
    cr_assert_eq(back, 7u);
    kt_env_stop(&e);
}

/* Waits for "dt.wake" only: everything else stays in its mailbox. */
static void sleeper_woke(kumo_proc *self, void *state, kumo_msg *m)
{
    (void)self;
    (void)state;
    (void)m;
}
static void sleeper_init(kumo_proc *self, void *state)
{
    (void)state;
    static kumo_type_decl T_WAKE = KUMO_TYPE_DECL("dt.wake");
    static const kumo_match m = {.kind = KUMO_MATCH_TYPE, .decl = &T_WAKE, .fn = sleeper_woke};
    static const kumo_recv set = {.matches = &m, .n = 1};
    kumo_receive(self, &set, KUMO_INFINITY);
}

static void expect_info(kumo_inbox *ib, kumo_pid pid, kumo_process_info_msg *out)
{
    int err = kumo_process_info_wait(ib, pid, KT_WAIT_NS, out);
    cr_assert_eq(err, 0, "process_info: %s", kumo_strerror(err));
    cr_assert(kumo_pid_eq(out->pid, pid));
}

DT_TEST(dist, process_info_of_a_local_and_a_remote_pid)
{
    /* A process on b with 3 messages queued, monitored from both nodes,
     * registered under one name: asked about from b and from a. */
    kumo_pid s =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, sleeper_init, NULL);
    cr_assert_eq(kumo_register(e->b, "dt.sleeper", s), 0);
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_ref ra, rb;
    cr_assert_eq(kumo_monitor(me, s, &ra), 0);
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(e->ib), s, &rb), 0);
    for (uint64_t i = 0; i < 3; i++)
        kt_send_u64(me, s, kt_type("dt.junk"), i);

    /* Each answer comes after what its asker sent before, not after what
     * the other one sent: one round from each first, and both monitors
     * are in place. */
    kumo_inbox *asker[] = {e->ia, e->ib};
    kumo_process_info_msg in;
    expect_info(e->ia, s, &in);
    expect_info(e->ib, s, &in);
    for (int k = 0; k < 2; k++) {
        expect_info(asker[k], s, &in);
        cr_assert_eq(in.err, 0);
        cr_assert(in.alive);
        cr_assert(!in.inbox);
        cr_assert(!in.trap_exit);
        cr_assert_eq(in.shard, KT_OTHER(kt_shards));
        cr_assert_eq(in.mailbox_len, 3u, "asked from %s", k ? "b" : "a");
        cr_assert_eq(in.monitored_by, 2u);
        cr_assert_eq(in.linked_by, 0u);
        cr_assert_eq(in.links, 0u);
        cr_assert_eq(in.monitors, 0u);
        cr_assert_eq(in.names, 1u);
        cr_assert_str_eq(in.name, "dt.sleeper");
    }
    /* An inbox, seen from the other node: it holds the monitor. */
    expect_info(e->ib, kumo_inbox_pid(e->ia), &in);
    cr_assert(in.alive && in.inbox);
    cr_assert_eq(in.monitors, 1u);

    /* Dead: not alive, and its name went with it. */
    cr_assert_eq(kumo_kill(me, s, NULL), 0);
    kt_expect_down_ref(e->ia, ra);
    kt_expect_down_ref(e->ib, rb);
    expect_info(e->ia, s, &in);
    cr_assert_eq(in.err, 0);
    cr_assert(!in.alive);
    cr_assert_eq(in.names, 0u);
    kumo_pid found;
    cr_assert_eq(kumo_whereis(e->b, "dt.sleeper", &found), -KUMO_ENONAME);
    /* A node nobody can reach, and the null pid. */
    kumo_pid far = {.node = 0xfeedfacecafebeefull, .serial = 1};
    expect_info(e->ia, far, &in);
    cr_assert_eq(in.err, -KUMO_ECONNLOST);
    cr_assert(!in.alive);
    expect_info(e->ia, (kumo_pid){0}, &in);
    cr_assert_eq(in.err, 0);
    cr_assert(!in.alive);
    kt_expect_empty(e->ia);
}

DT_TEST(dist, node_peers_lists_the_other_node_and_its_state)
{
    kumo_peer_info pi[4];
    cr_assert_eq(kumo_node_peers(e->a, NULL, 0), 1, "the count alone");
    cr_assert_eq(kumo_node_peers(e->a, pi, 4), 1);
    cr_assert_eq(pi[0].node, e->b_id);
    cr_assert_eq(pi[0].state, KUMO_PEER_UP);
    cr_assert_str_eq(pi[0].transport, e->transport);
    kumo_address ab;
    cr_assert_eq(kumo_node_address(e->b, 0, &ab), 0);
    cr_assert(kumo_address_eq(&pi[0].address, &ab));
    cr_assert_eq(pi[0].losses, 0u);
    cr_assert_eq(kumo_node_peers(e->b, pi, 4), 1);
    cr_assert_eq(pi[0].node, e->a_id);

    /* A monitor across, and a node monitor: counted; a break: one loss. */
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    kumo_ref ref, nref;
    cr_assert_eq(kumo_monitor(me, echo, &ref), 0);
    cr_assert_eq(kumo_monitor_node(me, e->b_id, &nref), 0);
    kt_send_u64(me, echo, kt_type("dt.sync"), 1);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.sync")), 1);
    cr_assert_eq(kumo_node_peers(e->a, pi, 4), 1);
    cr_assert_eq(pi[0].monitors, 1u);
    cr_assert_eq(pi[0].node_monitors, 1u);
    cr_assert_eq(pi[0].links, 0u);
    cr_assert_eq(kumo_node_break_link(e->a, e->b_id), 0);
    expect_node_down(e->ia, nref);
    kt_expect_down_ref(e->ia, ref);
    cr_assert_eq(kumo_node_peers(e->a, pi, 4), 1);
    cr_assert_eq(pi[0].losses, 1u);
    cr_assert_eq(pi[0].monitors, 0u, "the lost link took its watches");
    cr_assert_eq(pi[0].node_monitors, 0u);
    cr_assert_neq(pi[0].state, KUMO_PEER_GONE);
    kt_send_u64(kumo_inbox_proc(e->ib), echo, kt_type_stop(), 0);
}

/* ------------------------------------------------------------------ */
/* A peer that does not drain (Erlang's busy distribution port)        */
/* ------------------------------------------------------------------ */

/* Blocks its shard (and so everything that shard does: b's controller
 * reads nothing) from its first message until `release` is posted. */
struct blocker {
    sem_t entered, release;
};
static void blocker_got(kumo_proc *self, void *state, kumo_msg *m)
{
    (void)self;
    (void)m;
    struct blocker *b = state;
    sem_post(&b->entered);
    sem_wait(&b->release);
}
static void blocker_init(kumo_proc *self, void *state)
{
    (void)state;
    static kumo_match m = {.kind = KUMO_MATCH_ANY, .fn = blocker_got};
    static const kumo_recv set = {.matches = &m, .n = 1};
    kumo_receive(self, &set, KUMO_INFINITY);
}

/* Blocks b's shard 0 (its controller: b reads nothing) until
 * sem_post(&bl->release); returns the blocker's pid. */
static kumo_pid block_b(dt_env *e, struct blocker *bl)
{
    sem_init(&bl->entered, 0, 0);
    sem_init(&bl->release, 0, 0);
    kumo_pid blk = kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = 0}, blocker_init, bl);
    kt_send_u64(kumo_inbox_proc(e->ib), blk, kt_type("dt.block"), 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += KT_WAIT_NS / 1000000000;
    cr_assert_eq(sem_timedwait(&bl->entered, &dl), 0, "b's shard 0 never blocked");
    return blk;
}

/* After the release: ends the blocker and frees what block_b made. */
static void blocker_end(dt_env *e, struct blocker *bl, kumo_pid blk)
{
    dt_end_on_b(e, blk);
    sem_destroy(&bl->entered);
    sem_destroy(&bl->release);
}

/* Sends K messages of 64 KiB (numbered) to `to` per callback, then a
 * "more" to itself, FLOOD_TURNS times; then tells `report`. */
struct flooder {
    kumo_pid to, report;
    uint64_t next, turns;
    uint8_t *buf;
    size_t len;     /* each message */
    unsigned k;     /* messages per callback */
    unsigned nturn; /* callbacks */
};
static void flood_turn(kumo_proc *self, void *state, kumo_msg *m);
static void flood_turn(kumo_proc *self, void *state, kumo_msg *m)
{
    (void)m;
    struct flooder *f = state;
    for (unsigned k = 0; k < f->k; k++, f->next++) {
        memcpy(f->buf, &f->next, 8);
        kumo_send(self, f->to, kt_type("dt.flood"), f->buf, f->len);
    }
    if (++f->turns == f->nturn) {
        kumo_send(self, f->report, kt_type("dt.flood.done"), &f->next, 8);
        return;
    }
    static kumo_match more = {.kind = KUMO_MATCH_ANY, .fn = flood_turn};
    static const kumo_recv set = {.matches = &more, .n = 1};
    kumo_send(self, kumo_self(self), kt_type("dt.flood.more"), NULL, 0);
    kumo_receive(self, &set, KUMO_INFINITY);
}
static void flooder_init(kumo_proc *self, void *state)
{
    flood_turn(self, state, NULL);
}

static void a_flood_to_a_node_that_does_not_drain_stays_bounded(const char *tr, unsigned shards,
                                                                size_t len, unsigned k,
                                                                unsigned turns)
{
    /* b's shard 0 stops reading: a's link to b fills (a 1 MiB transport
     * queue here), the controller queues, and past dist_busy_bytes the
     * flooder on a is suspended until b reads again.  What a held for b
     * never grew past the limit plus one callback's sends; nothing was
     * lost or reordered.  (inmem has no back-pressure: a node's messages
     * wait in the receiving node's queue, so it is not among the
     * topologies here.) */
    dt_busy_bytes = 1u << 20;
    dt_env env = dt_start(tr, shards);
    dt_env *e = &env;
    dt_busy_bytes = 0;
    struct seq_state st = {.report = kumo_inbox_pid(e->ib)};
    kumo_pid seq =
        kt_spawn(e->b, e->ib, &(kumo_spawn_opts){.shard = KT_OTHER(shards)}, seq_init, &st);
    struct blocker bl;
    kumo_pid blk = block_b(e, &bl);

    struct flooder f = {.to = seq,
                        .report = kumo_inbox_pid(e->ia),
                        .buf = calloc(1, len),
                        .len = len,
                        .k = k,
                        .nturn = turns};
    kt_spawn(e->a, e->ia, &(kumo_spawn_opts){.shard = 0}, flooder_init, &f);
    /* Wait (bounded) until a's senders to b are suspended. */
    kumo_peer_info pi;
    uint64_t t0 = kt_now_ns();
    for (;;) {
        cr_assert_eq(kumo_node_peers(e->a, &pi, 1), 1);
        if (pi.busy)
            break;
        cr_assert_lt(kt_now_ns() - t0, (uint64_t)KT_WAIT_NS, "b never got busy (queued %zu B)",
                     pi.queued_bytes);
        struct timespec ms = {.tv_nsec = 1000000};
        nanosleep(&ms, NULL);
    }
    sem_post(&bl.release);

    uint64_t n = (uint64_t)k * turns;
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.flood.done")), n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = kt_expect_u64(e->ib, kt_type("dt.seq.got"));
        cr_assert_eq(v, i, "message %llu arrived as %llx", (unsigned long long)i,
                     (unsigned long long)v);
    }
    cr_assert_eq(kumo_node_peers(e->a, &pi, 1), 1);
    size_t frame = len + 64; /* a message and its frame header */
    cr_assert_gt(pi.queued_peak, (size_t)(1u << 20), "the limit was crossed");
    cr_assert_leq(pi.queued_peak, (size_t)(1u << 20) + k * frame,
                  "a held %zu B for b: more than the limit and one callback's sends",
                  pi.queued_peak);
    cr_assert(!pi.busy);
    cr_assert_eq(pi.queued_bytes, 0u);
    free(f.buf);
    blocker_end(e, &bl, blk);
    dt_end_on_b(e, seq);
    dt_stop(e);
}

/* 64 KiB messages (lent to the transport, queued as copies while busy),
 * and 1 KiB ones (framed straight into the link when it is idle). */
#define BUSY_CASE(tr, n, sh)                                                                       \
    Test(dist, a_flood_to_a_node_that_does_not_drain_stays_bounded_##tr##_##n,                     \
         .timeout = KT_TIMEOUT)                                                                    \
    {                                                                                              \
        a_flood_to_a_node_that_does_not_drain_stays_bounded(#tr, sh, 64u << 10, 8, 64);            \
    }                                                                                              \
    Test(dist, a_flood_of_small_messages_to_a_node_that_does_not_drain_stays_bounded_##tr##_##n,   \
         .timeout = KT_TIMEOUT)                                                                    \
    {                                                                                              \
        a_flood_to_a_node_that_does_not_drain_stays_bounded(#tr, sh, 1024, 128, 128);              \
    }
BUSY_CASE(tcp, 1shard, 1)
BUSY_CASE(tcp, 2shards, 2)
BUSY_CASE(shm, 1shard, 1)
BUSY_CASE(shm, 2shards, 2)

/* Waits (bounded) until `name` is gone from node's registry: a name of
 * another node's process goes when the DOWN of its monitor arrives. */
static void wait_no_name(kumo_node *node, const char *name)
{
    uint64_t t0 = kt_now_ns();
    kumo_pid got;
    while (kumo_whereis(node, name, &got) == 0) {
        cr_assert_lt(kt_now_ns() - t0, (uint64_t)KT_WAIT_NS, "%s is still registered", name);
        struct timespec ms = {.tv_nsec = 1000000};
        nanosleep(&ms, NULL);
    }
}

DT_TEST(dist, a_pid_of_another_node_registered_here_loses_its_name_when_it_ends)
{
    /* Cloud Haskell's testRegistryRemoteProcess: a registers a process of
     * b; whereis and nsend on a reach it; when it ends, the name goes. */
    kumo_proc *me = kumo_inbox_proc(e->ia);
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    cr_assert_eq(kumo_register(e->a, "dt.far", echo), 0);
    kumo_pid got;
    cr_assert_eq(kumo_whereis(e->a, "dt.far", &got), 0);
    cr_assert(kumo_pid_eq(got, echo));
    uint64_t v = 5;
    cr_assert_eq(kumo_nsend(me, "dt.far", kt_type("dt.n"), &v, sizeof v), 0);
    cr_assert_eq(kt_expect_u64(e->ia, kt_type("dt.n")), 5);
    cr_assert_eq(kumo_register(e->a, "dt.far", echo), -KUMO_ENAMETAKEN);
    /* One registry monitor per name: unregistering ends it. */
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(kumo_unregister(e->a, "dt.far"), 0);
        cr_assert_eq(kumo_register(e->a, "dt.far", echo), 0);
    }
    kumo_process_info_msg in;
    expect_info(e->ia, echo, &in);
    cr_assert_eq(in.monitored_by, 1u, "%u monitors on it", in.monitored_by);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, echo, &ref), 0);
    cr_assert_eq(kumo_kill(me, echo, NULL), 0);
    kt_expect_down_ref(e->ia, ref);
    wait_no_name(e->a, "dt.far");

    /* b holds a pid of a under a name (registerRemote of one's own
     * process); the link between them is lost: b's name goes. */
    kumo_pid mine = kt_spawn(e->a, e->ia, NULL, kt_echo_init, NULL);
    int err = kumo_register_remote_wait(e->ia, e->b_id, "dt.back", mine, KT_WAIT_NS);
    cr_assert_eq(err, 0, "register_remote of a's pid on b: %s", kumo_strerror(err));
    cr_assert_eq(kumo_whereis(e->b, "dt.back", &got), 0);
    cr_assert(kumo_pid_eq(got, mine));
    /* asked from a, the answer names a's pid whole (its node included) */
    got = (kumo_pid){0};
    cr_assert_eq(kumo_whereis_remote_wait(e->ia, e->b_id, "dt.back", KT_WAIT_NS, &got), 0);
    cr_assert(kumo_pid_eq(got, mine), "whereis_remote gave %s", kt_pid(got));
    dt_break(e);
    wait_no_name(e->b, "dt.back");
    kt_send_u64(me, mine, kt_type_stop(), 0);
}

DT_TEST(dist, process_info_lost_with_its_link_is_answered_with_connlost)
{
    /* b's shard 0 (its controller) is blocked, so b answers nothing; the
     * link breaks: the request is answered once, by a, with connlost. */
    kumo_pid echo = kt_spawn(e->b, e->ib, NULL, kt_echo_init, NULL);
    struct blocker bl;
    kumo_pid blk = block_b(e, &bl);
    kumo_ref ref;
    cr_assert_eq(kumo_process_info(kumo_inbox_proc(e->ia), echo, &ref), 0);
    dt_break(e);
    kumo_msg *m = kt_expect(e->ia, kumo_type_process_info());
    kumo_process_info_msg in;
    KT_TAKE(m, in);
    cr_assert(kumo_ref_eq(in.ref, ref));
    cr_assert_eq(in.err, -KUMO_ECONNLOST, "got %s", kumo_strerror(in.err));
    cr_assert(!in.alive);
    sem_post(&bl.release);
    blocker_end(e, &bl, blk);
    dt_end_on_b(e, echo);
    /* nothing else came: no second answer */
    kt_send_u64(kumo_inbox_proc(e->ia), kumo_inbox_pid(e->ia), kt_type("dt.mark"), 0);
    kumo_msg_free(kt_expect_next(e->ia, kt_type("dt.mark")));
}
