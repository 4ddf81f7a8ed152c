/* Sending: ordering, payloads, size limits, dead and foreign pids, the
 * zero-copy calls, sender pids, type fingerprints. */
#include "_kt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t T_DATA, T_ACK, T_DONE, T_GAP, T_PING, T_PONG, T_GO, T_REP;

static void types_init(void)
{
    T_DATA = kt_type("data");
    T_ACK = kt_type("ack");
    T_DONE = kt_type("done");
    T_GAP = kt_type("gap");
    T_PING = kt_type("ping");
    T_PONG = kt_type("pong");
    T_GO = kt_type("go");
    T_REP = kt_type("rep");
}

/* ------------------------------------------------------------------ */
/* FIFO between one sender and one receiver                            */
/* ------------------------------------------------------------------ */

/*
 * 1,000,000 messages (fewer where a test says why), windowed so memory
 * stays bounded: the receiver acks every FIFO_WINDOW messages and the
 * sender keeps at most two windows in flight.  (Well under a second even
 * under ASan.)
 */
#define FIFO_N 1000000u
#define FIFO_WINDOW 10000u

struct gap {
    uint64_t expected, got;
};

struct fifo_recv {
    kumo_pid ib;
    kumo_pid sender;
    uint64_t next, n;
};

static void fifo_recv_data(kumo_proc *self, void *st, kumo_msg *m)
{
    struct fifo_recv *r = st;
    uint64_t seq;
    memcpy(&seq, kumo_msg_data(m), sizeof seq);
    if (r->next == 0)
        r->sender = kumo_msg_sender(m);
    if (seq != r->next || kumo_msg_len(m) != sizeof seq ||
        !kumo_pid_eq(kumo_msg_sender(m), r->sender)) {
        struct gap g = {r->next, seq};
        kumo_send(self, r->ib, T_GAP, &g, sizeof g);
        kumo_die(self, KUMO_EXCEPTION, "gap at %llu", (unsigned long long)r->next);
        return;
    }
    r->next++;
    if (r->next % FIFO_WINDOW == 0)
        kumo_send(self, r->sender, T_ACK, NULL, 0);
    if (r->next == r->n) {
        kumo_send(self, r->ib, T_DONE, &r->next, sizeof r->next);
        return; /* normal exit */
    }
    kumo_expect(self, T_DATA, fifo_recv_data);
}

static void fifo_recv_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_expect(self, T_DATA, fifo_recv_data);
}

struct fifo_send {
    kumo_pid to;
    uint64_t sent, acked, n;
};

static void fifo_send_window(kumo_proc *self, struct fifo_send *s)
{
    for (unsigned i = 0; i < FIFO_WINDOW && s->sent < s->n; i++, s->sent++)
        if (kumo_send(self, s->to, T_DATA, &s->sent, sizeof s->sent))
            kumo_die(self, KUMO_EXCEPTION, "send failed");
}

static void fifo_send_ack(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)m;
    struct fifo_send *s = st;
    s->acked += FIFO_WINDOW;
    if (s->acked == s->n)
        return; /* everything arrived */
    fifo_send_window(self, s);
    kumo_expect(self, T_ACK, fifo_send_ack);
}

static void fifo_send_init(kumo_proc *self, void *st)
{
    fifo_send_window(self, st);
    fifo_send_window(self, st);
    kumo_expect(self, T_ACK, fifo_send_ack);
}

static bool is_outcome(const kumo_msg *m, void *arg)
{
    (void)arg;
    return kumo_msg_type(m) == T_DONE || kumo_msg_type(m) == T_GAP;
}

/* The receiver's report: the count it took in order (a gap fails the
 * test).  The sender's DOWN may come before it: the sender ends on the
 * last ack, which the receiver sends just before its report. */
static uint64_t fifo_outcome(kumo_inbox *ib)
{
    kumo_msg *m = NULL;
    int err = kumo_inbox_recv(ib, is_outcome, NULL, KT_WAIT_NS, &m);
    cr_assert_eq(err, 0, "no report from the receiver: %s", kumo_strerror(err));
    if (kumo_msg_type(m) == T_GAP) {
        struct gap g;
        KT_TAKE(m, g);
        cr_assert_fail("order broken: expected seq %llu, got %llu", (unsigned long long)g.expected,
                       (unsigned long long)g.got);
    }
    uint64_t n;
    KT_TAKE(m, n);
    return n;
}

static void fifo_run_n(kumo_node_config cfg, int send_shard, int recv_shard, uint64_t total)
{
    types_init();
    kumo_node *node = kt_start_cfg(cfg);
    kumo_inbox *ib = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);

    struct fifo_recv r = {.ib = kumo_inbox_pid(ib), .n = total};
    struct fifo_send s = {.n = total};
    kumo_ref rref, sref;
    kumo_pid rp, sp;
    cr_assert_eq(kumo_spawn(node, me, &(kumo_spawn_opts){.shard = recv_shard, .monitor = &rref},
                            fifo_recv_init, &r, &rp),
                 0);
    s.to = rp;
    cr_assert_eq(kumo_spawn(node, me, &(kumo_spawn_opts){.shard = send_shard, .monitor = &sref},
                            fifo_send_init, &s, &sp),
                 0);
    cr_assert_eq(rp.shard, recv_shard);
    cr_assert_eq(sp.shard, send_shard);

    cr_assert_eq(fifo_outcome(ib), total);
    cr_assert(kumo_pid_eq(r.sender, sp), "messages came from %s, not the sender %s",
              kt_pid(r.sender), kt_pid(sp));
    kt_down(ib, rp, KUMO_NORMAL, "");
    kt_down(ib, sp, KUMO_NORMAL, "");
    kumo_inbox_free(ib);
    kt_stop(node);
}

static void fifo_run(unsigned shards, int send_shard, int recv_shard)
{
    fifo_run_n((kumo_node_config){.shards = shards}, send_shard, recv_shard, FIFO_N);
}

/* Both on shard 0. */
KT_TEST(messaging, fifo_same_shard)
{
    fifo_run(kt_shards, 0, 0);
}

/* Sender on shard 0, receiver on shard 1 (both on shard 0 with one shard). */
KT_TEST(messaging, fifo_cross_shard)
{
    fifo_run(kt_shards, 0, KT_OTHER(kt_shards));
}

/* Receiver on shard 0 (the inbox's), sender elsewhere. */
KT_TEST(messaging, fifo_cross_shard_reverse)
{
    fifo_run(kt_shards, KT_OTHER(kt_shards), 0);
}

/* Between nodes: the sender on the test's node and the receiver on the
 * peer, then the other way round (the peer's shard 1 with two shards). */
static void fifo_between(kt_env *env, bool sender_on_peer, int peer_shard, uint64_t total)
{
    struct fifo_recv r = {.ib = kumo_inbox_pid(env->ib), .n = total};
    struct fifo_send s = {.n = total};
    kumo_ref rref, sref;
    kumo_spawn_opts ro = {.shard = sender_on_peer ? 0 : peer_shard, .monitor = &rref};
    kumo_pid rp = sender_on_peer ? kt_spawn(env->node, env->ib, &ro, fifo_recv_init, &r)
                                 : kt_spawn_peer(env, &ro, fifo_recv_init, &r);
    s.to = rp;
    kumo_spawn_opts so = {.shard = sender_on_peer ? peer_shard : 0, .monitor = &sref};
    kumo_pid sp = sender_on_peer ? kt_spawn_peer(env, &so, fifo_send_init, &s)
                                 : kt_spawn(env->node, env->ib, &so, fifo_send_init, &s);
    cr_assert_eq(fifo_outcome(env->ib), total);
    cr_assert(kumo_pid_eq(r.sender, sp), "messages came from %s, not the sender %s",
              kt_pid(r.sender), kt_pid(sp));
    kt_down(env->ib, rp, KUMO_NORMAL, "");
    kt_down(env->ib, sp, KUMO_NORMAL, "");
}

KT_NET_TEST(messaging, fifo_to_and_from_the_peer)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    /* Fewer between nodes: each crosses a transport twice per window. */
    uint64_t n = KT_REMOTE(&env) ? FIFO_N / 5 : FIFO_N;
    fifo_between(&env, false, KT_OTHER(kt_shards), n);
    fifo_between(&env, true, KT_OTHER(kt_shards), n);
    kt_env_stop(&env);
}

/* Two-entry rings (so nearly every cross-shard message takes the overflow
 * path) and a budget of one message per turn.  100k messages: every one
 * crosses the overflow list, and two shards that hand over one message at a
 * time slow down a lot when other programs take the CPUs (a million took
 * over 10 s on a loaded 2-CPU machine). */
KT_TEST(messaging, fifo_tiny_rings_budget_1)
{
    fifo_run_n((kumo_node_config){.shards = kt_shards, .ring_entries = 2, .budget = 1}, 0,
               KT_OTHER(kt_shards), 100000);
}

/* A process's messages to itself keep their order among others'. */
struct selfsend {
    kumo_pid ib;
    uint64_t got[6];
    unsigned n;
};

static void selfsend_any(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match selfsend_match[] = {{.kind = KUMO_MATCH_ANY, .fn = selfsend_any}};
static const kumo_recv selfsend_set = {.matches = selfsend_match, .n = 1};

static void selfsend_any(kumo_proc *self, void *st, kumo_msg *m)
{
    struct selfsend *s = st;
    memcpy(&s->got[s->n], kumo_msg_data(m), sizeof(uint64_t));
    if (++s->n == 6) {
        kumo_send(self, s->ib, T_DONE, s->got, sizeof s->got);
        return;
    }
    kumo_receive(self, &selfsend_set, KUMO_INFINITY);
}

static void selfsend_init(kumo_proc *self, void *st)
{
    for (uint64_t v = 100; v < 103; v++)
        kumo_send(self, kumo_self(self), T_DATA, &v, sizeof v);
    kumo_receive(self, &selfsend_set, KUMO_INFINITY);
}

KT_TEST(messaging, send_to_self)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct selfsend s = {.ib = kumo_inbox_pid(env.ib)};
    kumo_pid p = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)},
                          selfsend_init, &s);
    for (uint64_t v = 0; v < 3; v++)
        kt_send_u64(kumo_inbox_proc(env.ib), p, T_DATA, v);
    uint64_t got[6];
    KT_TAKE(kt_expect(env.ib, T_DONE), got);
    /* Each sender's messages in order; the inbox's may come before,
     * between or after the process's own. */
    uint64_t next_self = 100, next_ib = 0;
    for (int i = 0; i < 6; i++) {
        if (got[i] >= 100)
            cr_assert_eq(got[i], next_self++, "self-sent out of order at %d", i);
        else
            cr_assert_eq(got[i], next_ib++, "inbox-sent out of order at %d", i);
    }
    kt_env_stop(&env);
}

/* A plain thread (inbox) to a process on each shard: the foreign path
 * (and, to another node, the controller's). */
struct count_recv {
    kumo_pid ib;
    uint64_t next, n;
};

static void count_data(kumo_proc *self, void *st, kumo_msg *m)
{
    struct count_recv *c = st;
    uint64_t seq;
    memcpy(&seq, kumo_msg_data(m), sizeof seq);
    if (seq != c->next) {
        struct gap g = {c->next, seq};
        kumo_send(self, c->ib, T_GAP, &g, sizeof g);
        return;
    }
    if (++c->next == c->n) {
        kumo_send(self, c->ib, T_DONE, &c->next, sizeof c->next);
        return;
    }
    kumo_expect(self, T_DATA, count_data);
}

static void count_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_expect(self, T_DATA, count_data);
}

KT_NET_TEST(messaging, fifo_from_thread)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    const uint64_t n = 100000;
    struct count_recv c[2];
    kumo_pid pid[2];
    for (unsigned s = 0; s < kt_shards; s++) {
        c[s] = (struct count_recv){.ib = kumo_inbox_pid(env.ib), .n = n};
        pid[s] = kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = (int)s}, count_init, &c[s]);
    }
    for (uint64_t i = 0; i < n; i++)
        for (unsigned s = 0; s < kt_shards; s++)
            cr_assert_eq(kumo_send(env.me, pid[s], T_DATA, &i, sizeof i), 0);
    for (unsigned s = 0; s < kt_shards; s++) {
        kumo_msg *m = kt_next(env.ib);
        if (kumo_msg_type(m) == T_GAP) {
            struct gap g;
            KT_TAKE(m, g);
            cr_assert_fail("order broken: expected seq %llu, got %llu",
                           (unsigned long long)g.expected, (unsigned long long)g.got);
        }
        cr_assert_eq(kumo_msg_type(m), T_DONE);
        uint64_t got;
        KT_TAKE(m, got);
        cr_assert_eq(got, n);
    }
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Dead, unknown and foreign pids                                      */
/* ------------------------------------------------------------------ */

static void quit_init(kumo_proc *self, void *st)
{
    (void)self;
    (void)st; /* returns without waiting: normal exit */
}

KT_NET_TEST(messaging, send_to_dead_pid_is_dropped)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_ref ref;
    kumo_pid dead = kt_spawn_peer(
        &env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref}, quit_init, NULL);
    kt_down(env.ib, dead, KUMO_NORMAL, "");

    kumo_pid other_node = dead;
    other_node.node ^= 1;
    kumo_pid bad_shard = dead;
    bad_shard.shard = 77;
    kumo_pid bad_slot = dead;
    bad_slot.slot = 0x7fffffff;
    const kumo_pid targets[] = {dead,       kt_forge_pid(dead), (kumo_pid){0},
                                other_node, bad_shard,          bad_slot};
    for (unsigned i = 0; i < sizeof targets / sizeof *targets; i++) {
        cr_assert_eq(kumo_send(env.me, targets[i], T_DATA, "x", 1), 0, "send to %s",
                     kt_pid(targets[i]));
        struct iovec iov = {.iov_base = "y", .iov_len = 1};
        cr_assert_eq(kumo_sendv(env.me, targets[i], T_DATA, &iov, 1), 0);
        void *pl;
        kumo_msg *m = kumo_msg_alloc(env.me, T_DATA, 4, &pl);
        cr_assert_not_null(m);
        memset(pl, 0, 4);
        cr_assert_eq(kumo_send_msg(env.me, targets[i], m), 0); /* ownership moved: dropped */
    }
    /* Still working: a live process answers. */
    kumo_pid echo =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    cr_assert_eq(kumo_send(env.me, echo, T_PING, "hi", 3), 0);
    kumo_msg *m = kt_expect_next(env.ib, T_PING);
    cr_assert_str_eq(kumo_msg_data(m), "hi");
    kumo_msg_free(m);
    kumo_send(env.me, echo, kt_type_stop(), NULL, 0);
    kt_env_stop(&env);
}

/*
 * A spawner process reuses slots locally: the pid of a dead process must
 * not reach the process that got its slot.
 */
struct reuse {
    kumo_pid ib, first, second;
    kumo_ref ref;
};

static void reuse_child_msg(kumo_proc *self, void *st, kumo_msg *m)
{
    struct reuse *r = st;
    /* Report the first message this child gets, then end. */
    kumo_send(self, r->ib, T_REP, &(uint64_t){kumo_msg_type(m)}, sizeof(uint64_t));
}

static const kumo_match reuse_child_match[] = {{.kind = KUMO_MATCH_ANY, .fn = reuse_child_msg}};
static const kumo_recv reuse_child_set = {.matches = reuse_child_match, .n = 1};

static void reuse_child_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_receive(self, &reuse_child_set, KUMO_INFINITY);
}

static void reuse_down(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)m;
    struct reuse *r = st;
    kumo_spawn(kumo_self_node(self), self, NULL, reuse_child_init, r, &r->second);
    kumo_send(self, r->first, T_DATA, "stale", 6);
    kumo_send(self, r->second, T_PING, NULL, 0);
    kumo_send(self, r->ib, T_DONE, NULL, 0);
}

static void reuse_init(kumo_proc *self, void *st)
{
    struct reuse *r = st;
    kumo_spawn(kumo_self_node(self), self, &(kumo_spawn_opts){.monitor = &r->ref}, quit_init, NULL,
               &r->first);
    kumo_expect(self, kumo_type_down(), reuse_down);
}

KT_TEST(messaging, stale_pid_never_reaches_slot_reuser)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct reuse r = {.ib = kumo_inbox_pid(env.ib)};
    kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, reuse_init, &r);
    kumo_msg_free(kt_expect(env.ib, T_DONE));
    uint64_t first = kt_expect_u64(env.ib, T_REP);
    cr_assert_eq(first, T_PING, "the new process got a message sent to the dead pid");
    cr_assert(!kumo_pid_eq(r.first, r.second));
    cr_assert_neq(r.first.serial, r.second.serial);
    /* Not a requirement, but the test means little if the slot was not reused. */
    cr_expect_eq(r.first.slot, r.second.slot, "slot not reused (%u vs %u)", r.first.slot,
                 r.second.slot);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Size limit                                                          */
/* ------------------------------------------------------------------ */

struct big_sender {
    kumo_pid ib, to;
};

static void big_sender_init(kumo_proc *self, void *st)
{
    struct big_sender *b = st;
    char buf[1025] = {0};
    int64_t r[2] = {kumo_send(self, b->to, T_DATA, buf, 1025),
                    kumo_send(self, b->to, T_DATA, buf, 1024)};
    kumo_send(self, b->ib, T_REP, r, sizeof r);
}

KT_TEST(messaging, max_message_limit)
{
    types_init();
    kumo_node *node = kt_start_cfg((kumo_node_config){.shards = kt_shards, .max_message = 1024});
    kumo_inbox *ib = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    kumo_pid echo =
        kt_spawn(node, ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    unsigned char buf[2048];
    for (unsigned i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7);

    cr_assert_eq(kumo_send(me, echo, T_DATA, buf, 1025), -KUMO_ETOOBIG);
    struct iovec iov[2] = {{buf, 512}, {buf + 512, 513}};
    cr_assert_eq(kumo_sendv(me, echo, T_DATA, iov, 2), -KUMO_ETOOBIG);
    void *pl = NULL;
    cr_assert_null(kumo_msg_alloc(me, T_DATA, 1025, &pl));
    /* Dead pids do not bypass the check. */
    cr_assert_eq(kumo_send(me, kt_forge_pid(echo), T_DATA, buf, 1025), -KUMO_ETOOBIG);

    /* Exactly the limit goes through intact, by each call. */
    cr_assert_eq(kumo_send(me, echo, T_DATA, buf, 1024), 0);
    iov[1].iov_len = 512;
    cr_assert_eq(kumo_sendv(me, echo, T_DATA, iov, 2), 0);
    kumo_msg *am = kumo_msg_alloc(me, T_DATA, 1024, &pl);
    cr_assert_not_null(am);
    memcpy(pl, buf, 1024);
    cr_assert_eq(kumo_send_msg(me, echo, am), 0);
    for (int k = 0; k < 3; k++) {
        kumo_msg *m = kt_expect_next(ib, T_DATA);
        cr_assert_eq(kumo_msg_len(m), 1024);
        cr_assert_arr_eq(kumo_msg_data(m), buf, 1024, "payload %d corrupted", k);
        kumo_msg_free(m);
    }
    /* And from a process. */
    struct big_sender b = {.ib = kumo_inbox_pid(ib), .to = echo};
    kt_spawn(node, ib, &(kumo_spawn_opts){.shard = 0}, big_sender_init, &b);
    int64_t r[2];
    KT_TAKE(kt_expect(ib, T_REP), r);
    cr_assert_eq(r[0], -KUMO_ETOOBIG);
    cr_assert_eq(r[1], 0);
    kumo_send(me, echo, kt_type_stop(), NULL, 0);
    kumo_inbox_free(ib);
    kt_stop(node);
}

KT_NET_TEST(messaging, default_limit_is_64mib)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    const size_t lim = 64u << 20;
    unsigned char *buf = malloc(lim + 1);
    cr_assert_not_null(buf);
    for (size_t i = 0; i <= lim; i++)
        buf[i] = (unsigned char)(i ^ (i >> 11));
    kumo_pid echo =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    cr_assert_eq(kumo_send(env.me, echo, T_DATA, buf, lim + 1), -KUMO_ETOOBIG);
    cr_assert_eq(kumo_send(env.me, echo, T_DATA, buf, lim), 0);
    kumo_msg *m = kt_expect_next(env.ib, T_DATA);
    cr_assert_eq(kumo_msg_len(m), lim);
    cr_assert(memcmp(kumo_msg_data(m), buf, lim) == 0, "64 MiB payload corrupted");
    kumo_msg_free(m);
    free(buf);
    kumo_send(env.me, echo, kt_type_stop(), NULL, 0);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Payloads, zero-copy sends, senders                                  */
/* ------------------------------------------------------------------ */

KT_NET_TEST(messaging, sendv_gathers_and_empty_payloads)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_pid echo =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    struct iovec iov[4] = {{"abc", 3}, {NULL, 0}, {"defg", 4}, {"h", 2}};
    cr_assert_eq(kumo_sendv(env.me, echo, T_DATA, iov, 4), 0);
    cr_assert_eq(kumo_sendv(env.me, echo, T_PING, NULL, 0), 0);
    cr_assert_eq(kumo_send(env.me, echo, T_PONG, NULL, 0), 0);
    kumo_msg *m = kt_expect_next(env.ib, T_DATA);
    cr_assert_eq(kumo_msg_len(m), 9);
    cr_assert_str_eq(kumo_msg_data(m), "abcdefgh");
    cr_assert(kumo_pid_eq(kumo_msg_sender(m), echo));
    kumo_msg_free(m);
    m = kt_expect_next(env.ib, T_PING);
    cr_assert_eq(kumo_msg_len(m), 0);
    kumo_msg_free(m);
    m = kt_expect_next(env.ib, T_PONG);
    cr_assert_eq(kumo_msg_len(m), 0);
    kumo_msg_free(m);
    kumo_send(env.me, echo, kt_type_stop(), NULL, 0);
    kt_env_stop(&env);
}

/* Forwards every message to `to` without a copy. */
struct fwd {
    kumo_pid to;
    int err;
};

static void fwd_any(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match fwd_match[] = {{.kind = KUMO_MATCH_ANY, .fn = fwd_any}};
static const kumo_recv fwd_set = {.matches = fwd_match, .n = 1};

static void fwd_any(kumo_proc *self, void *st, kumo_msg *m)
{
    struct fwd *f = st;
    if (kumo_msg_type(m) == kt_type_stop())
        return;
    int err = kumo_forward(self, f->to, m);
    if (err)
        f->err = err;
    kumo_receive(self, &fwd_set, KUMO_INFINITY);
}

static void fwd_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_receive(self, &fwd_set, KUMO_INFINITY);
}

/* Keeps messages until it has three, then sends them back in reverse. */
struct keeper {
    kumo_pid to;
    kumo_msg *kept[3];
    int n;
};

static void keep_any(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match keep_match[] = {{.kind = KUMO_MATCH_ANY, .fn = keep_any}};
static const kumo_recv keep_set = {.matches = keep_match, .n = 1};

static void keep_any(kumo_proc *self, void *st, kumo_msg *m)
{
    struct keeper *k = st;
    k->kept[k->n++] = kumo_msg_keep(self, m);
    if (k->n == 3) {
        while (k->n > 0)
            kumo_send_msg(self, k->to, k->kept[--k->n]);
        return;
    }
    kumo_receive(self, &keep_set, KUMO_INFINITY);
}

static void keep_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_receive(self, &keep_set, KUMO_INFINITY);
}

KT_NET_TEST(messaging, forward_keep_and_alloc)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_pid self_pid = kumo_inbox_pid(env.ib);

    /* forward: the payload arrives untouched; the forwarder is the sender */
    struct fwd f = {.to = self_pid};
    kumo_ref fref;
    kumo_pid fp = kt_spawn_peer(
        &env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &fref}, fwd_init, &f);
    void *pl;
    kumo_msg *am = kumo_msg_alloc(env.me, T_DATA, 5, &pl);
    cr_assert_not_null(am);
    cr_assert_eq(kumo_msg_type(am), T_DATA);
    cr_assert_eq(kumo_msg_len(am), 5);
    memcpy(pl, "fwd!", 5);
    cr_assert_eq(kumo_send_msg(env.me, fp, am), 0);
    kumo_msg *m = kt_expect_next(env.ib, T_DATA);
    cr_assert_str_eq(kumo_msg_data(m), "fwd!");
    cr_assert(kumo_pid_eq(kumo_msg_sender(m), fp), "sender %s, forwarder %s",
              kt_pid(kumo_msg_sender(m)), kt_pid(fp));
    /* A received message can be sent on again by its new owner. */
    cr_assert_eq(kumo_send_msg(env.me, fp, m), 0);
    m = kt_expect_next(env.ib, T_DATA);
    cr_assert_str_eq(kumo_msg_data(m), "fwd!");
    kumo_msg_free(m);
    kumo_send(env.me, fp, kt_type_stop(), NULL, 0);
    kt_down(env.ib, fp, KUMO_NORMAL, "");
    cr_assert_eq(f.err, 0, "kumo_forward: %s", kumo_strerror(f.err));

    /* keep: messages outlive their handler and go back in reverse order */
    struct keeper k = {.to = self_pid};
    kumo_ref kref;
    kumo_pid kp = kt_spawn_peer(
        &env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &kref}, keep_init, &k);
    for (uint64_t i = 1; i <= 3; i++)
        kt_send_u64(env.me, kp, T_DATA, i);
    for (uint64_t i = 3; i >= 1; i--)
        cr_assert_eq(kt_expect_u64(env.ib, T_DATA), i);
    kt_down(env.ib, kp, KUMO_NORMAL, "");

    /* An unsent alloc is the caller's to free. */
    kumo_msg_free(kumo_msg_alloc(env.me, T_DATA, 100, NULL));
    kt_env_stop(&env);
}

KT_NET_TEST(messaging, sender_pids)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_ref ref;
    kumo_pid echo =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref},
                      kt_echo_init, NULL);
    cr_assert_eq(echo.node, kumo_node_id(env.peer));
    cr_assert_eq(echo.reserved, 0);
    cr_assert(kumo_pid_eq(kumo_self(env.me), kumo_inbox_pid(env.ib)));
    kumo_send(env.me, echo, T_PING, NULL, 0);
    kumo_msg *m = kt_expect_next(env.ib, T_PING);
    cr_assert(kumo_pid_eq(kumo_msg_sender(m), echo));
    kumo_msg_free(m);
    kumo_send(env.me, echo, kt_type_stop(), NULL, 0);
    /* Engine messages have no sender. */
    m = kt_expect_next(env.ib, kumo_type_down());
    cr_assert(kumo_pid_is_null(kumo_msg_sender(m)), "DOWN has sender %s",
              kt_pid(kumo_msg_sender(m)));
    kumo_msg_free(m);
    kumo_pid dead = echo;
    kumo_link(env.me, dead);
    m = kt_expect_next(env.ib, kumo_type_exit());
    cr_assert(kumo_pid_is_null(kumo_msg_sender(m)), "exit message has sender %s",
              kt_pid(kumo_msg_sender(m)));
    kumo_msg_free(m);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* After stop                                                          */
/* ------------------------------------------------------------------ */

KT_TEST(messaging, calls_after_stop_return_eshutdown)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    kumo_pid echo = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)},
                             kt_echo_init, NULL);
    /* Leave one message queued: send two, take the second (FIFO: the
     * first is in by then). */
    kumo_send(env.me, kumo_inbox_pid(env.ib), T_DATA, "q", 2);
    kumo_send(env.me, kumo_inbox_pid(env.ib), T_PONG, NULL, 0);
    kumo_msg_free(kt_expect(env.ib, T_PONG));
    kumo_node_stop(env.node);
    kumo_node_stop(env.node); /* idempotent */
    cr_assert_eq(kumo_send(env.me, echo, T_DATA, "x", 1), -KUMO_ESHUTDOWN);
    struct iovec iov = {"x", 1};
    cr_assert_eq(kumo_sendv(env.me, echo, T_DATA, &iov, 1), -KUMO_ESHUTDOWN);
    void *pl;
    kumo_msg *am = kumo_msg_alloc(env.me, T_DATA, 1, &pl);
    if (am) {
        cr_assert_eq(kumo_send_msg(env.me, echo, am), -KUMO_ESHUTDOWN);
        kumo_msg_free(am); /* a failed send takes no ownership */
    }
    kumo_pid p;
    cr_assert_eq(kumo_spawn(env.node, env.me, NULL, kt_echo_init, NULL, &p), -KUMO_ESHUTDOWN);
    cr_assert_eq(kumo_spawn(env.node, NULL, NULL, kt_echo_init, NULL, &p), -KUMO_ESHUTDOWN);
    kumo_inbox *ib2;
    cr_assert_eq(kumo_inbox_new(env.node, &ib2), -KUMO_ESHUTDOWN);
    /* The queued message is still there; then the wait reports shutdown. */
    kumo_msg *m = NULL;
    cr_assert_eq(kumo_inbox_recv(env.ib, NULL, NULL, KT_WAIT_NS, &m), 0);
    kumo_msg_free(m);
    cr_assert_eq(kumo_inbox_recv(env.ib, NULL, NULL, KT_WAIT_NS, &m), -KUMO_ESHUTDOWN);
    cr_assert_eq(kumo_inbox_recv(env.ib, NULL, NULL, 0, &m), -KUMO_ESHUTDOWN);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Types and error names                                               */
/* ------------------------------------------------------------------ */

#include <xxhash.h>

KT_TEST(messaging, type_fingerprints_and_error_names)
{
    kumo_node *node = kt_start(kt_shards);
    cr_assert_eq(kumo_type("a.b"), XXH3_64bits("a.b", 3));
    cr_assert_eq(kumo_type("a.b"), kumo_type("a.b"));
    cr_assert_neq(kumo_type("a.b"), kumo_type("a.c"));
    cr_assert_eq(kumo_type_exit(), kumo_type(KUMO_TYPE_EXIT_NAME));
    cr_assert_eq(kumo_type_down(), kumo_type(KUMO_TYPE_DOWN_NAME));
    cr_assert_neq(kumo_type_exit(), kumo_type_down());

    const char *unknown = kumo_strerror(-(KUMO_ELAST + 5));
    for (int e = KUMO_EBASE + 1; e < KUMO_ELAST; e++) {
        const char *s = kumo_strerror(-e);
        cr_assert_not_null(s);
        cr_assert_str_neq(s, unknown, "code %d has no name", e);
        for (int f = KUMO_EBASE + 1; f < e; f++)
            cr_assert_str_neq(s, kumo_strerror(-f), "codes %d and %d share a name", e, f);
    }
    cr_assert_str_eq(kumo_strerror(-ENOMEM), strerror(ENOMEM));
    cr_assert_str_neq(kumo_strerror(0), unknown);
    for (int k = KUMO_NORMAL; k <= KUMO_NODE_DOWN; k++)
        cr_assert_str_neq(kumo_reason_kind_str((kumo_reason_kind)k), "?");
    kt_stop(node);
}

/* kumo_send_msg on the message being handled, without kumo_msg_keep: it
 * is passed on like a forward, not freed again after the handler (a double
 * free under ASan before). */
static void bounce_h(kumo_proc *self, void *st, kumo_msg *m)
{
    kumo_send_msg(self, kumo_msg_sender(m), m);
}

static void bounce_init(kumo_proc *self, void *st)
{
    kumo_expect(self, T_PING, bounce_h);
}

KT_NET_TEST(messaging, send_msg_of_the_handled_message_passes_it_on)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_pid pid =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = (int)kt_shards - 1}, bounce_init, NULL);
    kt_send_u64(kumo_inbox_proc(env.ib), pid, T_PING, 42);
    kumo_msg *m = kt_expect(env.ib, T_PING);
    uint64_t v;
    cr_assert_eq(kumo_msg_len(m), sizeof v);
    memcpy(&v, kumo_msg_data(m), sizeof v);
    cr_assert_eq(v, 42);
    cr_assert(kumo_pid_eq(kumo_msg_sender(m), pid), "the bouncer is the sender");
    kumo_msg_free(m);
    kt_env_stop(&env);
}
