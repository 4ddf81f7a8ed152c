/* Typed channels: send ports as values, receive ports, merging, death. */
#include "_kt.h"

#include <errno.h>
#include <string.h>

static uint64_t T_CH, T_CH2, T_GO, T_REP, T_PORTS, T_DONE, T_PORTMSG, T_ERR;

static void types_init(void)
{
    T_CH = kt_type("ch");
    T_CH2 = kt_type("ch2");
    T_GO = kt_type("go");
    T_REP = kt_type("rep");
    T_PORTS = kt_type("ports");
    T_DONE = kt_type("done");
    T_PORTMSG = kt_type("portmsg");
    T_ERR = kt_type("err");
}

enum mode { SINGLE, BIASED, RR, NESTED };

/* A channel owner: makes `nch` channels (and a merged port per `mode`),
 * sends the send ports to the inbox, waits for GO, then takes `count`
 * messages from its port, reporting each, and finally reports how many
 * messages its mailbox holds (channel messages must not be there). */
struct owner {
    kumo_pid ib;
    enum mode mode;
    unsigned nch, count, taken, mbox;
    kumo_send_port sp[3];
    kumo_recv_port *rp[3], *merged, *inner;
    kumo_match port_match[1], go_match[1], drain_match[1];
    kumo_recv port_set, go_set, drain_set;
};

struct rep {
    uint64_t type, v;
    kumo_pid from;
};

static void end_now(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)self;
    (void)st;
    (void)m; /* declares nothing: normal exit */
}

static void owner_drain(kumo_proc *self, void *st, kumo_msg *m)
{
    struct owner *o = st;
    if (m) {
        o->mbox++;
        kumo_receive(self, &o->drain_set, 0);
        return;
    }
    kumo_send(self, o->ib, T_DONE, &(uint64_t){o->mbox}, sizeof(uint64_t));
    kumo_expect(self, kt_type_stop(), end_now); /* wait to be told to end */
}

static void owner_port(kumo_proc *self, void *st, kumo_msg *m)
{
    struct owner *o = st;
    struct rep r = {.type = kumo_msg_type(m), .from = kumo_msg_sender(m)};
    if (kumo_msg_len(m) == sizeof r.v)
        memcpy(&r.v, kumo_msg_data(m), sizeof r.v);
    kumo_send(self, o->ib, T_REP, &r, sizeof r);
    if (++o->taken < o->count)
        kumo_receive(self, &o->port_set, KUMO_INFINITY);
    else
        kumo_receive(self, &o->drain_set, 0);
}

static void owner_go(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)m;
    struct owner *o = st;
    kumo_receive(self, &o->port_set, KUMO_INFINITY);
}

static void owner_init(kumo_proc *self, void *st)
{
    struct owner *o = st;
    for (unsigned i = 0; i < o->nch; i++) {
        int err = kumo_new_chan(self, i == 2 ? T_CH2 : T_CH, &o->sp[i], &o->rp[i]);
        if (err) {
            kumo_die(self, KUMO_EXCEPTION, "new_chan: %s", kumo_strerror(err));
            return;
        }
    }
    int err = 0;
    switch (o->mode) {
    case SINGLE:
        o->merged = o->rp[0];
        break;
    case BIASED:
        err = kumo_merge_ports_biased(self, o->rp, (int)o->nch, &o->merged);
        break;
    case RR:
        err = kumo_merge_ports_rr(self, o->rp, (int)o->nch, &o->merged);
        break;
    case NESTED: /* biased(rr(rp0, rp1), rp2) */
        err = kumo_merge_ports_rr(self, o->rp, 2, &o->inner);
        if (!err) {
            kumo_recv_port *outer[2] = {o->inner, o->rp[2]};
            err = kumo_merge_ports_biased(self, outer, 2, &o->merged);
        }
        break;
    }
    if (err) {
        kumo_die(self, KUMO_EXCEPTION, "merge: %s", kumo_strerror(err));
        return;
    }
    o->port_match[0] = (kumo_match){.kind = KUMO_MATCH_PORT, .port = o->merged, .fn = owner_port};
    o->port_set = (kumo_recv){.matches = o->port_match, .n = 1};
    o->go_match[0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_GO, .fn = owner_go};
    o->go_set = (kumo_recv){.matches = o->go_match, .n = 1};
    o->drain_match[0] = (kumo_match){.kind = KUMO_MATCH_ANY, .fn = owner_drain};
    o->drain_set = (kumo_recv){.matches = o->drain_match, .n = 1, .on_timeout = owner_drain};
    kumo_send(self, o->ib, T_PORTS, o->sp, sizeof o->sp);
    kumo_receive(self, &o->go_set, KUMO_INFINITY);
}

/* The owner lives on the test's peer node. */
static kumo_pid spawn_owner(kt_env *env, unsigned shards, struct owner *o, kumo_ref *ref)
{
    o->ib = kumo_inbox_pid(env->ib);
    kumo_pid pid = kt_spawn_peer(env, &(kumo_spawn_opts){.shard = KT_OTHER(shards), .monitor = ref},
                                 owner_init, o);
    kumo_send_port sp[3];
    KT_TAKE(kt_expect(env->ib, T_PORTS), sp);
    for (unsigned i = 0; i < o->nch; i++) {
        cr_assert(kumo_pid_eq(sp[i].owner, pid));
        cr_assert_eq(sp[i].type, i == 2 ? T_CH2 : T_CH);
        cr_assert_neq(sp[i].id, 0);
        for (unsigned j = 0; j < i; j++)
            cr_assert_neq(sp[i].id, sp[j].id, "two channels share an id");
    }
    return pid;
}

static void chan_send(kumo_proc *me, kumo_send_port sp, uint64_t v)
{
    int err = kumo_send_chan(me, sp, &v, sizeof v);
    cr_assert_eq(err, 0, "kumo_send_chan: %s", kumo_strerror(err));
}

static struct rep next_rep(kumo_inbox *ib)
{
    struct rep r;
    KT_TAKE(kt_expect(ib, T_REP), r);
    return r;
}

static void finish_owner(kumo_inbox *ib, kumo_pid pid, uint64_t mbox)
{
    cr_assert_eq(kt_expect_u64(ib, T_DONE), mbox, "messages in the owner's mailbox");
    kumo_send(kumo_inbox_proc(ib), pid, kt_type_stop(), NULL, 0);
    kt_down(ib, pid, KUMO_NORMAL, "");
}

KT_NET_TEST(channels, send_and_receive_on_typed_channel)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct owner o = {.mode = SINGLE, .nch = 1, .count = 100};
    kumo_ref ref;
    kumo_pid pid = spawn_owner(&env, kt_shards, &o, &ref);
    kumo_send_port sp = o.sp[0];
    /* Mailbox noise before and after: it stays in the mailbox. */
    kumo_send(env.me, pid, T_CH, "mbox", 5);
    for (uint64_t i = 0; i < 100; i++)
        chan_send(env.me, sp, i);
    kumo_send(env.me, pid, T_CH, "mbox", 5);
    kumo_send(env.me, pid, T_GO, NULL, 0);
    for (uint64_t i = 0; i < 100; i++) {
        struct rep r = next_rep(env.ib);
        cr_assert_eq(r.v, i, "channel message %llu out of order (%llu)", (unsigned long long)i,
                     (unsigned long long)r.v);
        cr_assert_eq(r.type, T_CH);
        cr_assert(kumo_pid_eq(r.from, kumo_inbox_pid(env.ib)), "channel message from %s",
                  kt_pid(r.from));
    }
    finish_owner(env.ib, pid, 2);
    kt_env_stop(&env);
}

KT_NET_TEST(channels, merge_biased_prefers_first_port)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct owner o = {.mode = BIASED, .nch = 2, .count = 8};
    kumo_ref ref;
    kumo_pid pid = spawn_owner(&env, kt_shards, &o, &ref);
    /* Second port filled first: still drained last. */
    for (uint64_t i = 0; i < 4; i++)
        chan_send(env.me, o.sp[1], 100 + i);
    for (uint64_t i = 0; i < 4; i++)
        chan_send(env.me, o.sp[0], i);
    kumo_send(env.me, pid, T_GO, NULL, 0);
    for (uint64_t i = 0; i < 4; i++)
        cr_assert_eq(next_rep(env.ib).v, i);
    for (uint64_t i = 0; i < 4; i++)
        cr_assert_eq(next_rep(env.ib).v, 100 + i);
    finish_owner(env.ib, pid, 0);
    kt_env_stop(&env);
}

KT_NET_TEST(channels, merge_rr_alternates)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct owner o = {.mode = RR, .nch = 3, .count = 10};
    kumo_ref ref;
    kumo_pid pid = spawn_owner(&env, kt_shards, &o, &ref);
    /* 4 on port 0, 4 on port 1, 2 on port 2 (a different type: a merged
     * port may carry several). */
    for (uint64_t i = 0; i < 4; i++)
        chan_send(env.me, o.sp[1], 100 + i);
    for (uint64_t i = 0; i < 4; i++)
        chan_send(env.me, o.sp[0], i);
    for (uint64_t i = 0; i < 2; i++)
        chan_send(env.me, o.sp[2], 200 + i);
    kumo_send(env.me, pid, T_GO, NULL, 0);
    const uint64_t want[] = {0, 100, 200, 1, 101, 201, 2, 102, 3, 103};
    for (unsigned i = 0; i < 10; i++) {
        struct rep r = next_rep(env.ib);
        cr_assert_eq(r.v, want[i], "take %u: got %llu, expected %llu", i, (unsigned long long)r.v,
                     (unsigned long long)want[i]);
        cr_assert_eq(r.type, want[i] >= 200 ? T_CH2 : T_CH);
    }
    finish_owner(env.ib, pid, 0);
    kt_env_stop(&env);
}

KT_NET_TEST(channels, merged_ports_nest)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct owner o = {.mode = NESTED, .nch = 3, .count = 6};
    kumo_ref ref;
    kumo_pid pid = spawn_owner(&env, kt_shards, &o, &ref);
    chan_send(env.me, o.sp[2], 200);
    chan_send(env.me, o.sp[0], 0);
    chan_send(env.me, o.sp[0], 1);
    chan_send(env.me, o.sp[1], 100);
    chan_send(env.me, o.sp[1], 101);
    chan_send(env.me, o.sp[2], 201);
    kumo_send(env.me, pid, T_GO, NULL, 0);
    /* biased(rr(0, 1), 2): the inner alternation first, then port 2 */
    const uint64_t want[] = {0, 100, 1, 101, 200, 201};
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(next_rep(env.ib).v, want[i], "take %u", i);
    finish_owner(env.ib, pid, 0);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Send ports as values                                                */
/* ------------------------------------------------------------------ */

KT_TEST(channels, wire_encodings)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    kumo_pid pid = kumo_inbox_pid(env.ib);
    pid.slot = 0x01020304; /* every byte distinct */

    uint8_t w[KUMO_PID_WIRE_SIZE + 8];
    memset(w, 0xee, sizeof w);
    kumo_pid_encode(pid, w);
    cr_assert_eq(w[KUMO_PID_WIRE_SIZE], 0xee, "encode wrote past KUMO_PID_WIRE_SIZE");
    kumo_pid back;
    cr_assert_eq(kumo_pid_decode(w, KUMO_PID_WIRE_SIZE, &back), 0);
    cr_assert(kumo_pid_eq(back, pid));
    cr_assert_eq(back.reserved, 0);
    cr_assert_eq(kumo_pid_decode(w, sizeof w, &back), 0); /* longer input: fine */
    /* little-endian, after one version byte */
    cr_assert_eq(w[1], (uint8_t)pid.node);
    cr_assert_eq(w[17], 0x04);
    cr_assert_eq(w[20], 0x01);
    for (size_t len = 0; len < KUMO_PID_WIRE_SIZE; len++)
        cr_assert_eq(kumo_pid_decode(w, len, &back), -KUMO_EBADWIRE, "short input %zu", len);
    cr_assert_eq(kumo_pid_decode(NULL, KUMO_PID_WIRE_SIZE, &back), -KUMO_EBADWIRE);
    uint8_t bad[KUMO_PID_WIRE_SIZE];
    memcpy(bad, w, sizeof bad);
    bad[0] = 0;
    cr_assert_eq(kumo_pid_decode(bad, sizeof bad, &back), -KUMO_EBADWIRE);
    bad[0] = 0xff;
    cr_assert_eq(kumo_pid_decode(bad, sizeof bad, &back), -KUMO_EBADWIRE);
    memset(bad, 0xa5, sizeof bad);
    cr_assert_eq(kumo_pid_decode(bad, sizeof bad, &back), -KUMO_EBADWIRE);
    kumo_pid null = {0};
    kumo_pid_encode(null, w);
    cr_assert_eq(kumo_pid_decode(w, KUMO_PID_WIRE_SIZE, &back), 0);
    cr_assert(kumo_pid_is_null(back));

    kumo_send_port sp = {.owner = pid, .id = 0x1122334455667788ull, .type = T_CH};
    uint8_t pw[KUMO_SEND_PORT_WIRE_SIZE + 4];
    memset(pw, 0xee, sizeof pw);
    kumo_send_port_encode(sp, pw);
    cr_assert_eq(pw[KUMO_SEND_PORT_WIRE_SIZE], 0xee);
    kumo_send_port sb;
    cr_assert_eq(kumo_send_port_decode(pw, KUMO_SEND_PORT_WIRE_SIZE, &sb), 0);
    cr_assert(kumo_pid_eq(sb.owner, sp.owner));
    cr_assert_eq(sb.id, sp.id);
    cr_assert_eq(sb.type, sp.type);
    for (size_t len = 0; len < KUMO_SEND_PORT_WIRE_SIZE; len++)
        cr_assert_eq(kumo_send_port_decode(pw, len, &sb), -KUMO_EBADWIRE, "short port %zu", len);
    cr_assert_eq(kumo_send_port_decode(NULL, KUMO_SEND_PORT_WIRE_SIZE, &sb), -KUMO_EBADWIRE);
    pw[0] = 0x7f;
    cr_assert_eq(kumo_send_port_decode(pw, KUMO_SEND_PORT_WIRE_SIZE, &sb), -KUMO_EBADWIRE);

    char buf[128];
    cr_assert_eq(kumo_pid_str(pid, buf, sizeof buf), buf);
    cr_assert_gt(strlen(buf), 0);
    char tiny[4];
    kumo_pid_str(pid, tiny, sizeof tiny);
    cr_assert_eq(strlen(tiny), 3, "kumo_pid_str must truncate and terminate");
    kt_env_stop(&env);
}

/* A send port encoded into a message travels to another process, which
 * decodes it and sends on it. */
struct relay {
    kumo_pid ib;
    int err;
};

static void relay_msg(kumo_proc *self, void *st, kumo_msg *m)
{
    struct relay *r = st;
    kumo_send_port sp;
    r->err = kumo_send_port_decode(kumo_msg_data(m), kumo_msg_len(m), &sp);
    if (r->err) {
        kumo_send(self, r->ib, T_ERR, &r->err, sizeof r->err);
        return;
    }
    for (uint64_t v = 7; v < 10; v++)
        kumo_send_chan(self, sp, &v, sizeof v);
}

static void relay_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_expect(self, T_PORTMSG, relay_msg);
}

KT_NET_TEST(channels, send_port_travels_in_message)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct owner o = {.mode = SINGLE, .nch = 1, .count = 3};
    kumo_ref ref, rref;
    kumo_pid pid = spawn_owner(&env, kt_shards, &o, &ref);
    struct relay r = {.ib = kumo_inbox_pid(env.ib)};
    kumo_pid rp = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = 0, .monitor = &rref},
                           relay_init, &r);
    uint8_t w[KUMO_SEND_PORT_WIRE_SIZE];
    kumo_send_port_encode(o.sp[0], w);
    cr_assert_eq(kumo_send(env.me, rp, T_PORTMSG, w, sizeof w), 0);
    kt_down(env.ib, rp, KUMO_NORMAL, ""); /* the relay has sent by now */
    kumo_send(env.me, pid, T_GO, NULL, 0);
    for (uint64_t v = 7; v < 10; v++) {
        struct rep x = next_rep(env.ib);
        cr_assert_eq(x.v, v);
        cr_assert(kumo_pid_eq(x.from, rp));
    }
    finish_owner(env.ib, pid, 0);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Death, ownership, limits                                            */
/* ------------------------------------------------------------------ */

KT_NET_TEST(channels, channel_dies_with_owner)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct owner o = {.mode = RR, .nch = 2, .count = 1};
    kumo_ref ref;
    kumo_pid pid = spawn_owner(&env, kt_shards, &o, &ref);
    /* Messages queued on its channels when it dies are freed with them. */
    for (uint64_t i = 0; i < 50; i++) {
        chan_send(env.me, o.sp[0], i);
        chan_send(env.me, o.sp[1], i);
    }
    kumo_kill(env.me, pid, NULL);
    kt_down(env.ib, pid, KUMO_KILLED, "");
    for (uint64_t i = 0; i < 50; i++)
        chan_send(env.me, o.sp[i % 2], i); /* dropped, returns 0 */

    /* A live process, a channel id it never made: dropped too. */
    struct owner live = {.mode = SINGLE, .nch = 1, .count = 1};
    kumo_pid lp = spawn_owner(&env, kt_shards, &live, &ref);
    kumo_send_port forged = live.sp[0];
    forged.id += 1000;
    chan_send(env.me, forged, 1);
    chan_send(env.me, live.sp[0], 2);
    kumo_send(env.me, lp, T_GO, NULL, 0);
    cr_assert_eq(next_rep(env.ib).v, 2);
    finish_owner(env.ib, lp, 0);
    kt_env_stop(&env);
}

/* A process may not merge another's receive ports. */
struct thief {
    kumo_pid ib;
    kumo_recv_port *stolen; /* set by the test from the victim's state */
};

static void thief_go(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)m;
    struct thief *t = st;
    kumo_recv_port *out = NULL;
    int64_t err[4];
    err[0] = kumo_merge_ports_biased(self, &t->stolen, 1, &out);
    err[1] = kumo_merge_ports_rr(self, &t->stolen, 1, &out);
    /* mixed with a port of its own */
    kumo_send_port sp;
    kumo_recv_port *mine[2] = {NULL, t->stolen};
    err[2] = kumo_new_chan(self, T_CH, &sp, &mine[0]);
    err[3] = kumo_merge_ports_biased(self, mine, 2, &out);
    kumo_send(self, t->ib, T_REP, err, sizeof err);
}

static void thief_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_expect(self, T_GO, thief_go);
}

KT_TEST(channels, merging_ports_not_owned_is_refused)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct owner o = {.mode = SINGLE, .nch = 1, .count = 1};
    kumo_ref ref, tref;
    kumo_pid pid = spawn_owner(&env, kt_shards, &o, &ref); /* waits for GO: stays alive */
    struct thief t = {.ib = kumo_inbox_pid(env.ib), .stolen = o.rp[0]};
    kumo_pid tp = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = 0, .monitor = &tref},
                           thief_init, &t);
    kumo_send(env.me, tp, T_GO, NULL, 0);
    int64_t err[4];
    KT_TAKE(kt_expect(env.ib, T_REP), err);
    cr_assert_eq(err[0], -KUMO_ENOTOWNER);
    cr_assert_eq(err[1], -KUMO_ENOTOWNER);
    cr_assert_eq(err[2], 0);
    cr_assert_eq(err[3], -KUMO_ENOTOWNER);
    kt_down(env.ib, tp, KUMO_NORMAL, "");
    kumo_kill(env.me, pid, NULL);
    kt_down(env.ib, pid, KUMO_KILLED, "");
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Inbox-owned channels, closing ports, order with the mailbox          */
/* ------------------------------------------------------------------ */

static uint64_t port_u64(kumo_inbox *ib, kumo_recv_port *rp, uint64_t type)
{
    kumo_msg *m = NULL;
    int err = kumo_inbox_recv_port(ib, rp, KT_WAIT_NS, &m);
    cr_assert_eq(err, 0, "nothing on the port: %s", kumo_strerror(err));
    cr_assert_eq(kumo_msg_type(m), type);
    uint64_t v;
    KT_TAKE(m, v);
    return v;
}

static void port_empty(kumo_inbox *ib, kumo_recv_port *rp)
{
    kumo_msg *m = NULL;
    int err = kumo_inbox_recv_port(ib, rp, 0, &m);
    cr_assert_eq(err, -KUMO_ETIMEOUT, "the port still had a message (%d)", err);
}

KT_NET_TEST(channels, an_inbox_owns_channels_and_closes_them)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_send_port s1, s2;
    kumo_recv_port *r1, *r2, *mg;
    cr_assert_eq(kumo_new_chan(env.me, T_CH, &s1, &r1), 0);
    cr_assert_eq(kumo_new_chan(env.me, T_CH2, &s2, &r2), 0);
    cr_assert(kumo_pid_eq(s1.owner, kumo_inbox_pid(env.ib)));

    /* A process sends on the inbox's channel; nothing enters the mailbox. */
    struct relay r = {.ib = kumo_inbox_pid(env.ib)};
    kumo_ref rref;
    kumo_pid rp = kt_spawn_peer(
        &env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &rref}, relay_init, &r);
    uint8_t w[KUMO_SEND_PORT_WIRE_SIZE];
    kumo_send_port_encode(s1, w);
    cr_assert_eq(kumo_send(env.me, rp, T_PORTMSG, w, sizeof w), 0);
    kt_down(env.ib, rp, KUMO_NORMAL, "");
    for (uint64_t v = 7; v < 10; v++)
        cr_assert_eq(port_u64(env.ib, r1, T_CH), v);
    port_empty(env.ib, r1);
    cr_assert_eq(kumo_inbox_count(env.ib), 0);

    /* Closing a merged port's member: what it queued is gone, later sends
     * to it are dropped, the merge goes on with the other member. */
    kumo_recv_port *both[2] = {r1, r2};
    cr_assert_eq(kumo_merge_ports_biased(env.me, both, 2, &mg), 0);
    chan_send(env.me, s1, 1);
    chan_send(env.me, s2, 2);
    cr_assert_eq(kumo_close_port(env.me, r1), 0);
    cr_assert_eq(port_u64(env.ib, mg, T_CH2), 2);
    port_empty(env.ib, mg);
    chan_send(env.me, s1, 3);
    chan_send(env.me, s2, 4); /* after 3, from the same sender */
    cr_assert_eq(port_u64(env.ib, mg, T_CH2), 4);
    port_empty(env.ib, mg);                       /* so 3 was dropped */
    cr_assert_eq(kumo_close_port(env.me, mg), 0); /* frees r1 with it */
    cr_assert_eq(kumo_close_port(env.me, r2), 0);
    chan_send(env.me, s2, 5); /* dropped: nothing to find it */
    cr_assert_eq(kumo_inbox_count(env.ib), 0);

    /* Not the inbox's: refused. */
    struct owner o = {.mode = SINGLE, .nch = 1, .count = 1};
    kumo_ref oref;
    kumo_pid op = spawn_owner(&env, kt_shards, &o, &oref);
    kumo_msg *m = NULL;
    cr_assert_eq(kumo_close_port(env.me, o.rp[0]), -KUMO_ENOTOWNER);
    cr_assert_eq(kumo_inbox_recv_port(env.ib, o.rp[0], 0, &m), -KUMO_ENOTOWNER);
    cr_assert_eq(kumo_close_port(env.me, NULL), -KUMO_ENOTOWNER);
    kumo_kill(env.me, op, NULL);
    kt_down(env.ib, op, KUMO_KILLED, "");

    /* Many short-lived reply channels: each is gone once closed. */
    for (int i = 0; i < 10000; i++) {
        kumo_send_port sp;
        kumo_recv_port *rp1;
        cr_assert_eq(kumo_new_chan(env.me, T_CH, &sp, &rp1), 0);
        chan_send(env.me, sp, (uint64_t)i);
        cr_assert_eq(port_u64(env.ib, rp1, T_CH), (uint64_t)i);
        cr_assert_eq(kumo_close_port(env.me, rp1), 0);
    }
    kt_env_stop(&env);
}

/* A process closes its own port from a handler; a send that arrives after
 * finds nothing (ASan checks it touches no freed port). */
struct closer {
    kumo_pid ib;
    kumo_send_port sp;
    kumo_recv_port *rp;
    kumo_match m;
    kumo_recv set;
};

static void closer_port(kumo_proc *self, void *st, kumo_msg *m)
{
    struct closer *c = st;
    uint64_t v = 0;
    memcpy(&v, kumo_msg_data(m), sizeof v);
    int64_t rep[2] = {(int64_t)v, kumo_close_port(self, c->rp)};
    kumo_send(self, c->ib, T_REP, rep, sizeof rep);
    kumo_expect(self, T_DONE, end_now);
}

static void closer_init(kumo_proc *self, void *st)
{
    struct closer *c = st;
    if (kumo_new_chan(self, T_CH, &c->sp, &c->rp)) {
        kumo_die(self, KUMO_EXCEPTION, "new_chan");
        return;
    }
    c->m = (kumo_match){.kind = KUMO_MATCH_PORT, .port = c->rp, .fn = closer_port};
    c->set = (kumo_recv){.matches = &c->m, .n = 1};
    kumo_send(self, c->ib, T_PORTS, &c->sp, sizeof c->sp);
    kumo_receive(self, &c->set, KUMO_INFINITY);
}

KT_NET_TEST(channels, a_process_closes_its_port)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct closer c = {.ib = kumo_inbox_pid(env.ib)};
    kumo_ref ref;
    kumo_pid pid = kt_spawn_peer(
        &env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref}, closer_init, &c);
    kumo_send_port sp;
    KT_TAKE(kt_expect(env.ib, T_PORTS), sp);
    chan_send(env.me, sp, 41);
    int64_t rep[2];
    KT_TAKE(kt_expect(env.ib, T_REP), rep);
    cr_assert_eq(rep[0], 41);
    cr_assert_eq(rep[1], 0, "close: %lld", (long long)rep[1]);
    for (uint64_t i = 0; i < 100; i++)
        chan_send(env.me, sp, i); /* dropped */
    kumo_send(env.me, pid, T_DONE, NULL, 0);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

KT_NET_TEST(channels, channel_and_mailbox_messages_from_one_sender_keep_their_order)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_send_port sp;
    kumo_recv_port *rp;
    cr_assert_eq(kumo_new_chan(env.me, T_CH, &sp, &rp), 0);
    kumo_ref ref;
    kumo_pid s =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref},
                      kt_order_sender_init, NULL);
    kt_order_check(env.ib, s, sp, rp);
    kt_down(env.ib, s, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

KT_TEST(channels, size_limit_and_shutdown)
{
    types_init();
    kumo_node *node = kt_start_cfg((kumo_node_config){.shards = kt_shards, .max_message = 256});
    kumo_inbox *ib = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    struct owner o = {.mode = SINGLE, .nch = 1, .count = 1};
    kumo_ref ref;
    kt_env env = {.node = node, .ib = ib, .me = me, .peer = node, .topology = "local"};
    kumo_pid pid = spawn_owner(&env, kt_shards, &o, &ref);
    char buf[257] = {0};
    cr_assert_eq(kumo_send_chan(me, o.sp[0], buf, 257), -KUMO_ETOOBIG);
    cr_assert_eq(kumo_send_chan(me, o.sp[0], buf, 256), 0);
    kumo_send(me, pid, T_GO, NULL, 0);
    struct rep r = next_rep(ib);
    cr_assert_eq(r.type, T_CH);
    finish_owner(ib, pid, 0);
    kumo_node_stop(node);
    cr_assert_eq(kumo_send_chan(me, o.sp[0], buf, 8), -KUMO_ESHUTDOWN);
    kumo_inbox_free(ib);
    kt_stop(node);
}
