/* Selective receive: matching, order of what stays queued, ports and the
 * mailbox in one set, timeouts, the scan position. */
#include "_kt.h"

#include <string.h>

static uint64_t T_A, T_B, T_X, T_Y, T_GO, T_PING, T_PONG, T_REP, T_PORT, T_CH;

static void types_init(void)
{
    T_A = kt_type("A");
    T_B = kt_type("B");
    T_X = kt_type("X");
    T_Y = kt_type("Y");
    T_GO = kt_type("go");
    T_PING = kt_type("ping");
    T_PONG = kt_type("pong");
    T_REP = kt_type("rep");
    T_PORT = kt_type("port");
    T_CH = kt_type("ch");
}

/* What a test process reports: which handler ran, on what. */
struct rep {
    uint64_t tag; /* usually the message type; TAG_* otherwise */
    uint64_t v;
};

enum { TAG_TIMEOUT = 1, TAG_NULL_MSG, TAG_DONE };

static uint64_t msg_u64(const kumo_msg *m)
{
    uint64_t v = 0;
    if (kumo_msg_len(m) == sizeof v)
        memcpy(&v, kumo_msg_data(m), sizeof v);
    return v;
}

static void report(kumo_proc *self, kumo_pid ib, uint64_t tag, uint64_t v)
{
    struct rep r = {tag, v};
    kumo_send(self, ib, T_REP, &r, sizeof r);
}

static void expect_rep(kumo_inbox *ib, uint64_t tag, uint64_t v)
{
    struct rep r;
    KT_TAKE(kt_expect(ib, T_REP), r);
    char a[64], b[64];
    cr_assert(r.tag == tag && r.v == v, "report (%s, %llu), expected (%s, %llu)",
              kt_type_name(r.tag, a, sizeof a), (unsigned long long)r.v,
              kt_type_name(tag, b, sizeof b), (unsigned long long)v);
}

/* A process that runs a script of receive sets: state common to most tests. */
struct proc {
    kumo_pid ib;
    int step;
    uint64_t n, calls, limit;
    uint64_t t0;
    void *pred_state_seen;
    kumo_recv sets[4];
    kumo_match m[4][3];
    kumo_recv_port *rp;
    kumo_send_port sp;
};

/* On the test's peer node: what it receives comes from the test's inbox,
 * on this node or across the topology. */
static void spawn_proc(kt_env *env, struct proc *p, kumo_init_fn init, unsigned shards,
                       kumo_pid *pid, kumo_ref *ref)
{
    p->ib = kumo_inbox_pid(env->ib);
    *pid =
        kt_spawn_peer(env, &(kumo_spawn_opts){.shard = KT_OTHER(shards), .monitor = ref}, init, p);
}

/* The usual GO handler: start receiving with set 1. */
static void go_set1(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)m;
    struct proc *p = st;
    kumo_receive(self, &p->sets[1], KUMO_INFINITY);
}

/* ------------------------------------------------------------------ */
/* Unmatched messages stay in place, in order                          */
/* ------------------------------------------------------------------ */

static void sel_any(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    if (++p->n < 4)
        kumo_receive(self, &p->sets[2], KUMO_INFINITY);
}

static void sel_b(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    p->n++;
    kumo_receive(self, &p->sets[p->n < 2 ? 1 : 2], KUMO_INFINITY);
}

static void sel_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_GO, .fn = go_set1};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_B, .fn = sel_b};
    p->m[2][0] = (kumo_match){.kind = KUMO_MATCH_ANY, .fn = sel_any};
    for (int i = 0; i < 3; i++)
        p->sets[i] = (kumo_recv){.matches = p->m[i], .n = 1};
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_NET_TEST(receive, unmatched_stay_in_order)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, sel_init, kt_shards, &pid, &ref);
    /* A1 B1 A2 B2, then go: all four are queued before the first B is
     * taken. */
    kt_send_u64(env.me, pid, T_A, 1);
    kt_send_u64(env.me, pid, T_B, 1);
    kt_send_u64(env.me, pid, T_A, 2);
    kt_send_u64(env.me, pid, T_B, 2);
    kt_send_u64(env.me, pid, T_GO, 0);
    expect_rep(env.ib, T_B, 1);
    expect_rep(env.ib, T_B, 2);
    expect_rep(env.ib, T_A, 1);
    expect_rep(env.ib, T_A, 2);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Predicates, ANY, match order                                        */
/* ------------------------------------------------------------------ */

static bool pred_gt5(const kumo_msg *m, void *state)
{
    struct proc *p = state;
    p->pred_state_seen = state;
    p->calls++;
    return msg_u64(m) > 5;
}

static void if_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    report(self, p->ib, TAG_DONE, p->pred_state_seen == st);
    kumo_receive(self, &p->sets[2], KUMO_INFINITY);
}

static void if_rest(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    if (++p->n < 9)
        kumo_receive(self, &p->sets[2], KUMO_INFINITY);
}

static void if_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_GO, .fn = go_set1};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_IF, .type = T_A, .pred = pred_gt5, .fn = if_hit};
    p->m[2][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_A, .fn = if_rest};
    for (int i = 0; i < 3; i++)
        p->sets[i] = (kumo_recv){.matches = p->m[i], .n = 1};
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_NET_TEST(receive, match_if_predicate)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, if_init, kt_shards, &pid, &ref);
    for (uint64_t v = 1; v <= 10; v++)
        kt_send_u64(env.me, pid, T_A, v);
    kt_send_u64(env.me, pid, T_GO, 0);
    expect_rep(env.ib, T_A, 6);      /* the first for which the predicate holds */
    expect_rep(env.ib, TAG_DONE, 1); /* and it saw the process state */
    for (uint64_t v = 1; v <= 10; v++)
        if (v != 6)
            expect_rep(env.ib, T_A, v); /* the rest, in order */
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    /* The predicate never saw 7..10: the scan stopped at 6. */
    cr_assert_eq(p.calls, 6);
    kt_env_stop(&env);
}

/* {IF(A, v > 5) -> h1, TYPE A -> h2, ANY -> h3}: each message, in mailbox
 * order, goes to the first match that accepts it. */
static void mo_h(kumo_proc *self, void *st, kumo_msg *m, uint64_t which)
{
    struct proc *p = st;
    report(self, p->ib, which, msg_u64(m) * 1000 + (kumo_msg_type(m) == T_A));
    if (++p->n < 4)
        kumo_receive(self, &p->sets[1], KUMO_INFINITY);
}
static void mo_h1(kumo_proc *self, void *st, kumo_msg *m)
{
    mo_h(self, st, m, 1);
}
static void mo_h2(kumo_proc *self, void *st, kumo_msg *m)
{
    mo_h(self, st, m, 2);
}
static void mo_h3(kumo_proc *self, void *st, kumo_msg *m)
{
    mo_h(self, st, m, 3);
}

static void mo_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_GO, .fn = go_set1};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_IF, .type = T_A, .pred = pred_gt5, .fn = mo_h1};
    p->m[1][1] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_A, .fn = mo_h2};
    p->m[1][2] = (kumo_match){.kind = KUMO_MATCH_ANY, .fn = mo_h3};
    p->sets[0] = (kumo_recv){.matches = p->m[0], .n = 1};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 3};
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_NET_TEST(receive, first_accepting_match_in_mailbox_order)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, mo_init, kt_shards, &pid, &ref);
    kt_send_u64(env.me, pid, T_B, 1); /* only ANY accepts it */
    kt_send_u64(env.me, pid, T_A, 2); /* TYPE A (the IF refuses) */
    kt_send_u64(env.me, pid, T_A, 9); /* IF */
    kt_send_u64(env.me, pid, T_B, 3); /* ANY */
    kt_send_u64(env.me, pid, T_GO, 0);
    expect_rep(env.ib, 3, 1000);
    expect_rep(env.ib, 2, 2001);
    expect_rep(env.ib, 1, 9001);
    expect_rep(env.ib, 3, 3000);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* {TYPE X -> hx, ANY(fn NULL)}: everything but X is dropped while waiting;
 * then a poll finds the mailbox empty. */
static void drop_empty(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, m ? kumo_msg_type(m) : TAG_TIMEOUT, m ? msg_u64(m) : 0);
}

static void drop_x(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    kumo_receive(self, &p->sets[1], 0);
}

static void drop_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_X, .fn = drop_x};
    p->m[0][1] = (kumo_match){.kind = KUMO_MATCH_ANY, .fn = NULL};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_ANY, .fn = drop_empty};
    p->sets[0] = (kumo_recv){.matches = p->m[0], .n = 2};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 1, .on_timeout = drop_empty};
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_NET_TEST(receive, match_any_null_drops_and_keeps_waiting)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, drop_init, kt_shards, &pid, &ref);
    for (uint64_t v = 0; v < 100; v++)
        kt_send_u64(env.me, pid, v % 2 ? T_A : T_B, v);
    kt_send_u64(env.me, pid, T_X, 7);
    expect_rep(env.ib, T_X, 7);
    expect_rep(env.ib, TAG_TIMEOUT, 0); /* nothing was left behind */
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* A port and the mailbox in one set                                   */
/* ------------------------------------------------------------------ */

static void pm_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    if (++p->n < 4)
        kumo_receive(self, &p->sets[1], KUMO_INFINITY);
}

/* step 0: port first in the set; step 1: mailbox first. */
static void pm_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    if (kumo_new_chan(self, T_CH, &p->sp, &p->rp)) {
        kumo_die(self, KUMO_EXCEPTION, "new_chan");
        return;
    }
    kumo_match port = {.kind = KUMO_MATCH_PORT, .port = p->rp, .fn = pm_hit};
    kumo_match mbox = {.kind = KUMO_MATCH_TYPE, .type = T_A, .fn = pm_hit};
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_GO, .fn = go_set1};
    p->m[1][0] = p->step == 0 ? port : mbox;
    p->m[1][1] = p->step == 0 ? mbox : port;
    p->sets[0] = (kumo_recv){.matches = p->m[0], .n = 1};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 2};
    kumo_send(self, p->ib, T_PORT, &p->sp, sizeof p->sp);
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_NET_TEST(receive, port_and_mailbox_in_one_set)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    for (int order = 0; order < 2; order++) {
        struct proc p = {.step = order};
        kumo_pid pid;
        kumo_ref ref;
        spawn_proc(&env, &p, pm_init, kt_shards, &pid, &ref);
        kumo_send_port sp;
        KT_TAKE(kt_expect(env.ib, T_PORT), sp);
        cr_assert(kumo_pid_eq(sp.owner, pid));
        cr_assert_eq(sp.type, T_CH);
        /* Interleaved: two on the channel, two in the mailbox, all queued
         * before the process looks. */
        uint64_t v = 1;
        cr_assert_eq(kumo_send_chan(env.me, sp, &v, sizeof v), 0);
        kt_send_u64(env.me, pid, T_A, 2);
        v = 3;
        cr_assert_eq(kumo_send_chan(env.me, sp, &v, sizeof v), 0);
        kt_send_u64(env.me, pid, T_A, 4);
        kt_send_u64(env.me, pid, T_GO, 0);
        if (order == 0) { /* the port match comes first: it wins while it has messages */
            expect_rep(env.ib, T_CH, 1);
            expect_rep(env.ib, T_CH, 3);
            expect_rep(env.ib, T_A, 2);
            expect_rep(env.ib, T_A, 4);
        } else {
            expect_rep(env.ib, T_A, 2);
            expect_rep(env.ib, T_A, 4);
            expect_rep(env.ib, T_CH, 1);
            expect_rep(env.ib, T_CH, 3);
        }
        kt_down(env.ib, pid, KUMO_NORMAL, "");
    }
    kt_env_stop(&env);
}

/* Groups: [mailbox A, port, mailbox B] tries A, then the port, then B. */
static void grp_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    if (++p->n < 5)
        kumo_receive(self, &p->sets[1], KUMO_INFINITY);
}

static void grp_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    if (kumo_new_chan(self, T_CH, &p->sp, &p->rp)) {
        kumo_die(self, KUMO_EXCEPTION, "new_chan");
        return;
    }
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_GO, .fn = go_set1};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_A, .fn = grp_hit};
    p->m[1][1] = (kumo_match){.kind = KUMO_MATCH_PORT, .port = p->rp, .fn = grp_hit};
    p->m[1][2] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_B, .fn = grp_hit};
    p->sets[0] = (kumo_recv){.matches = p->m[0], .n = 1};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 3};
    kumo_send(self, p->ib, T_PORT, &p->sp, sizeof p->sp);
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_NET_TEST(receive, match_groups_are_tried_in_the_order_listed)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, grp_init, kt_shards, &pid, &ref);
    kumo_send_port sp;
    KT_TAKE(kt_expect(env.ib, T_PORT), sp);
    /* All queued before the process looks: B 1, ch 2, A 3, B 4, ch 5. */
    kt_send_u64(env.me, pid, T_B, 1);
    uint64_t v = 2;
    cr_assert_eq(kumo_send_chan(env.me, sp, &v, sizeof v), 0);
    kt_send_u64(env.me, pid, T_A, 3);
    kt_send_u64(env.me, pid, T_B, 4);
    v = 5;
    cr_assert_eq(kumo_send_chan(env.me, sp, &v, sizeof v), 0);
    kt_send_u64(env.me, pid, T_GO, 0);
    /* A's group first although B 1 is older; then the port's group, ahead
     * of the queued B messages; B 1 (before the taken A) is still found. */
    expect_rep(env.ib, T_A, 3);
    expect_rep(env.ib, T_CH, 2);
    expect_rep(env.ib, T_CH, 5);
    expect_rep(env.ib, T_B, 1);
    expect_rep(env.ib, T_B, 4);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* A receive set that is static const: its types are declared statically
 * and resolved on first use (kumo_type_decl). */
static kumo_type_decl D_SA = KUMO_TYPE_DECL("static.a");
static kumo_type_decl D_SB = KUMO_TYPE_DECL("static.b");
static void st_hit(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match st_m[] = {
    {.kind = KUMO_MATCH_TYPE, .decl = &D_SB, .fn = st_hit},
    {.kind = KUMO_MATCH_IF, .decl = &D_SA, .pred = pred_gt5, .fn = st_hit},
};
static const kumo_recv st_set = {.matches = st_m, .n = 2};

static void st_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    if (++p->n < 3)
        kumo_receive(self, &st_set, KUMO_INFINITY);
}

static void st_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_receive(self, &st_set, KUMO_INFINITY);
}

KT_NET_TEST(receive, a_static_const_set_with_declared_types)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    uint64_t a = kumo_type("static.a"), b = kumo_type("static.b");
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, st_init, kt_shards, &pid, &ref);
    kt_send_u64(env.me, pid, a, 1); /* not > 5: stays */
    kt_send_u64(env.me, pid, T_X, 2);
    kt_send_u64(env.me, pid, b, 3);
    kt_send_u64(env.me, pid, a, 9);
    kt_send_u64(env.me, pid, b, 4);
    expect_rep(env.ib, b, 3);
    expect_rep(env.ib, a, 9);
    expect_rep(env.ib, b, 4);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    cr_assert_eq(kumo_type_of(&D_SA), a);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Timeouts                                                            */
/* ------------------------------------------------------------------ */

#define TMO_NS (30 * KT_MS)

static void tmo_fired(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, m ? TAG_NULL_MSG : TAG_TIMEOUT, kt_now_ns() - p->t0);
    /* step 1: the unmatched messages are all still there */
    if (p->step == 1) {
        p->step = 2;
        kumo_receive(self, &p->sets[1], 0);
    }
}

static void tmo_count(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    (void)m;
    p->n++;
    kumo_receive(self, &p->sets[1], 0);
}

static void tmo_drained(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, TAG_DONE, p->n);
}

static void tmo_x(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, T_X, 0);
}

static void tmo_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_X, .fn = tmo_x};
    p->sets[0] = (kumo_recv){.matches = p->m[0], .n = 1, .on_timeout = tmo_fired};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_ANY, .fn = tmo_count};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 1, .on_timeout = tmo_drained};
    p->t0 = kt_now_ns();
    kumo_receive(self, &p->sets[0], p->limit ? (int64_t)p->limit : TMO_NS);
    if (p->step == 1)
        kumo_send(self, p->ib, T_GO, NULL, 0); /* ready for the noise */
}

KT_TEST(receive, timeout_fires_with_null_message)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    /* Nothing arrives. */
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, tmo_init, kt_shards, &pid, &ref);
    struct rep r;
    KT_TAKE(kt_expect(env.ib, T_REP), r);
    cr_assert_eq(r.tag, TAG_TIMEOUT, "on_timeout got a message");
    cr_assert_geq(r.v, (uint64_t)TMO_NS, "timed out after %llu ns, before %lld",
                  (unsigned long long)r.v, (long long)TMO_NS);
    kt_down(env.ib, pid, KUMO_NORMAL, "");

    /* Unmatched messages arrive meanwhile: the timeout still fires and they
     * stay queued.  (300 ms leaves the 50 sends ample time to land first.) */
    struct proc q = {.step = 1, .limit = 300 * KT_MS};
    spawn_proc(&env, &q, tmo_init, kt_shards, &pid, &ref);
    kumo_msg_free(kt_expect(env.ib, T_GO));
    for (uint64_t v = 0; v < 50; v++)
        kt_send_u64(env.me, pid, T_Y, v);
    KT_TAKE(kt_expect(env.ib, T_REP), r);
    cr_assert_eq(r.tag, TAG_TIMEOUT);
    cr_assert_geq(r.v, (uint64_t)(300 * KT_MS));
    expect_rep(env.ib, TAG_DONE, 50);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* A message that arrives in time cancels the timer: a later, longer wait
 * is not cut short by it.  The first wait (W1) must outlast the inbox's
 * answer; the second (W2) ends after the first one's deadline would have. */
#define TC_W1 (200 * KT_MS)
#define TC_W2 (400 * KT_MS)
static void tc_late(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, m ? TAG_NULL_MSG : TAG_TIMEOUT, kt_now_ns() - p->t0);
}

static void tc_x(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, T_X, 0);
    p->t0 = kt_now_ns();
    kumo_receive(self, &p->sets[1], TC_W2);
}

static void tc_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_X, .fn = tc_x};
    p->sets[0] = (kumo_recv){.matches = p->m[0], .n = 1, .on_timeout = tc_late};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_Y, .fn = tc_x};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 1, .on_timeout = tc_late};
    p->t0 = kt_now_ns();
    kumo_send(self, p->ib, T_GO, NULL, 0);
    kumo_receive(self, &p->sets[0], TC_W1);
}

KT_NET_TEST(receive, timeout_cancelled_by_message)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    /* If the machine is so loaded that the inbox cannot answer within W1,
     * the test says so rather than passing by luck. */
    spawn_proc(&env, &p, tc_init, kt_shards, &pid, &ref);
    kumo_msg_free(kt_expect(env.ib, T_GO));
    kt_send_u64(env.me, pid, T_X, 0);
    struct rep r;
    KT_TAKE(kt_expect(env.ib, T_REP), r);
    cr_assert_eq(r.tag, T_X, "the first wait timed out before X arrived (machine too loaded?)");
    KT_TAKE(kt_expect(env.ib, T_REP), r);
    cr_assert_eq(r.tag, TAG_TIMEOUT);
    cr_assert_geq(r.v, (uint64_t)TC_W2, "second wait ended after %llu ns (stale timer?)",
                  (unsigned long long)r.v);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* Timeout 0: one pass over what is queued. */
static void poll_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, m ? kumo_msg_type(m) : TAG_TIMEOUT, m ? msg_u64(m) : 0);
    if (++p->n < 3)
        kumo_receive(self, &p->sets[1], 0);
}

static void poll_go(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)m;
    struct proc *p = st;
    kumo_receive(self, &p->sets[1], 0);
}

static void poll_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_GO, .fn = poll_go};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_X, .fn = poll_hit};
    p->sets[0] = (kumo_recv){.matches = p->m[0], .n = 1};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 1, .on_timeout = poll_hit};
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_TEST(receive, timeout_zero_is_one_pass)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, poll_init, kt_shards, &pid, &ref);
    /* Queued before the poll: Y (no match), X 1, X 2.  Three polls: two
     * take the X's (past the Y), the third finds nothing and times out at
     * once. */
    kt_send_u64(env.me, pid, T_Y, 0);
    kt_send_u64(env.me, pid, T_X, 1);
    kt_send_u64(env.me, pid, T_X, 2);
    kt_send_u64(env.me, pid, T_GO, 0);
    expect_rep(env.ib, T_X, 1);
    expect_rep(env.ib, T_X, 2);
    expect_rep(env.ib, TAG_TIMEOUT, 0);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* The scan position                                                   */
/* ------------------------------------------------------------------ */

#define SCAN_N 10000u

static bool pred_never(const kumo_msg *m, void *state)
{
    struct proc *p = state;
    p->calls++;
    return msg_u64(m) == UINT64_MAX;
}

static void scan_drain(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    if (!m) {
        report(self, p->ib, TAG_DONE, p->n);
        return;
    }
    if (msg_u64(m) != p->n) {
        report(self, p->ib, T_Y, msg_u64(m)); /* out of order */
        return;
    }
    p->n++;
    kumo_receive(self, &p->sets[1], 0);
}

static void scan_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), p->calls);
    kumo_receive(self, &p->sets[1], 0);
}

static void scan_ping(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    kumo_send(self, kumo_msg_sender(m), T_PONG, NULL, 0);
    kumo_receive(self, &p->sets[0], KUMO_INFINITY); /* the same set again */
}

/* step 0: {TYPE X, TYPE PING};  step 1: {IF(Y, never), TYPE X, TYPE PING}
 * flagged pure, counting predicate calls. */
static void scan_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    int k = 0;
    if (p->step == 1)
        p->m[0][k++] =
            (kumo_match){.kind = KUMO_MATCH_IF, .type = T_Y, .pred = pred_never, .fn = scan_hit};
    p->m[0][k++] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_X, .fn = scan_hit};
    p->m[0][k++] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_PING, .fn = scan_ping};
    p->sets[0] = (kumo_recv){
        .matches = p->m[0], .n = (uint32_t)k, .flags = p->step == 1 ? KUMO_RECV_PURE : 0};
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_ANY, .fn = scan_drain};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 1, .on_timeout = scan_drain};
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_NET_TEST(receive, scan_position_many_unmatched)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    for (int step = 0; step < 2; step++) {
        struct proc p = {.step = step};
        kumo_pid pid;
        kumo_ref ref;
        spawn_proc(&env, &p, scan_init, kt_shards, &pid, &ref);
        /* Two rounds of SCAN_N unmatched messages, each ending with a ping
         * that is taken from behind them (the same set re-declared). */
        uint64_t seq = 0;
        for (int round = 0; round < 2; round++) {
            for (unsigned i = 0; i < SCAN_N; i++, seq++)
                kt_send_u64(env.me, pid, T_Y, seq);
            kumo_send(env.me, pid, T_PING, NULL, 0);
            kumo_msg_free(kt_expect(env.ib, T_PONG));
        }
        kt_send_u64(env.me, pid, T_X, 0);
        if (step == 0) {
            expect_rep(env.ib, T_X, 0);
        } else {
            /* Pure set: every Y was tested exactly once, however often the
             * set was re-declared. */
            expect_rep(env.ib, T_X, 2 * SCAN_N);
        }
        expect_rep(env.ib, TAG_DONE, 2 * SCAN_N); /* all still queued, in order */
        kt_down(env.ib, pid, KUMO_NORMAL, "");
    }
    kt_env_stop(&env);
}

/* Without KUMO_RECV_PURE an IF set is re-tested from the start when it is
 * declared again: a predicate that reads state sees the state change. */
static bool pred_limit(const kumo_msg *m, void *state)
{
    struct proc *p = state;
    return msg_u64(m) <= p->limit;
}

static void impure_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
}

static void impure_ping(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    p->limit = 10;
    kumo_send(self, kumo_msg_sender(m), T_PONG, NULL, 0);
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

static void impure_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[0][0] =
        (kumo_match){.kind = KUMO_MATCH_IF, .type = T_A, .pred = pred_limit, .fn = impure_hit};
    p->m[0][1] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_PING, .fn = impure_ping};
    p->sets[0] = (kumo_recv){.matches = p->m[0], .n = 2};
    kumo_receive(self, &p->sets[0], KUMO_INFINITY);
}

KT_NET_TEST(receive, impure_set_rescans_after_state_change)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct proc p = {.limit = 0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, impure_init, kt_shards, &pid, &ref);
    kt_send_u64(env.me, pid, T_A, 5); /* refused while limit is 0 */
    kumo_send(env.me, pid, T_PING, NULL, 0);
    kumo_msg_free(kt_expect(env.ib, T_PONG));
    expect_rep(env.ib, T_A, 5); /* found once the limit is 10 */
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Declarations                                                        */
/* ------------------------------------------------------------------ */

static void decl_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, kumo_msg_type(m), msg_u64(m));
    if (++p->n == 1)
        kumo_expect(self, T_A, decl_hit); /* expect: the A left behind */
}

static void decl_go(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)m;
    struct proc *p = st;
    /* The last declaration wins. */
    kumo_receive(self, &p->sets[1], KUMO_INFINITY);
    kumo_receive(self, &p->sets[2], KUMO_INFINITY);
}

static void decl_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    p->m[1][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_A, .fn = decl_hit};
    p->m[2][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_B, .fn = decl_hit};
    p->sets[1] = (kumo_recv){.matches = p->m[1], .n = 1};
    p->sets[2] = (kumo_recv){.matches = p->m[2], .n = 1};
    kumo_expect(self, T_GO, decl_go);
}

KT_TEST(receive, last_declaration_wins_and_expect)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct proc p = {0};
    kumo_pid pid;
    kumo_ref ref;
    spawn_proc(&env, &p, decl_init, kt_shards, &pid, &ref);
    kt_send_u64(env.me, pid, T_A, 1);
    kt_send_u64(env.me, pid, T_B, 2);
    kt_send_u64(env.me, pid, T_GO, 0);
    expect_rep(env.ib, T_B, 2);
    expect_rep(env.ib, T_A, 1);
    kt_down(env.ib, pid, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* kumo_die wins over a receive declared before or after it. */
static void die_hit(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    if (msg_u64(m) == 1) {
        kumo_expect(self, T_A, die_hit);
        kumo_die(self, KUMO_EXCEPTION, "after receive %d", 1);
    } else {
        kumo_die(self, KUMO_EXCEPTION, "before receive");
        kumo_expect(self, T_A, die_hit);
    }
    (void)p;
}

static void die_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_expect(self, T_A, die_hit);
}

KT_TEST(receive, die_overrides_declarations)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    for (uint64_t v = 1; v <= 2; v++) {
        struct proc p = {0};
        kumo_pid pid;
        kumo_ref ref;
        spawn_proc(&env, &p, die_init, kt_shards, &pid, &ref);
        kt_send_u64(env.me, pid, T_A, v);
        kt_send_u64(env.me, pid, T_A, v); /* would be taken if the receive held */
        kt_down(env.ib, pid, KUMO_EXCEPTION, v == 1 ? "after receive 1" : "before receive");
    }
    kt_env_stop(&env);
}

/* Processes killed while waiting with a timeout: their timers must never
 * fire (under ASan a fired timer of a freed process is a use-after-free).
 * A sentinel with a longer timeout reports after theirs were due. */
static void kw_never(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, TAG_NULL_MSG, 0); /* a killed process ran */
}

static void kw_init(kumo_proc *self, void *st)
{
    struct proc *p = st;
    kumo_receive(self, &p->sets[0], 20 * KT_MS);
}

static void kw_sentinel_done(kumo_proc *self, void *st, kumo_msg *m)
{
    struct proc *p = st;
    report(self, p->ib, TAG_TIMEOUT, 0);
}

static void kw_sentinel(kumo_proc *self, void *st)
{
    struct proc *p = st;
    kumo_receive(self, &p->sets[1], 60 * KT_MS);
}

KT_TEST(receive, killed_waiters_timers_never_fire)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct proc p = {.ib = kumo_inbox_pid(env.ib)};
    p.m[0][0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_X, .fn = kw_never};
    p.sets[0] = (kumo_recv){.matches = p.m[0], .n = 1, .on_timeout = kw_never};
    p.sets[1] = (kumo_recv){.matches = p.m[0], .n = 1, .on_timeout = kw_sentinel_done};
    enum { N = 200 };
    kumo_pid pids[N];
    for (int i = 0; i < N; i++) {
        kumo_ref ref;
        pids[i] =
            kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .monitor = &ref},
                     kw_init, &p);
    }
    for (int i = 0; i < N; i++)
        kumo_kill(env.me, pids[i], NULL);
    for (int i = 0; i < N; i++)
        kt_down(env.ib, pids[i], KUMO_KILLED, "");
    /* Their timers were due 20 ms after they started; the sentinels'
     * (one per shard) 60 ms after theirs. */
    for (unsigned s = 0; s < kt_shards; s++)
        kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = (int)s}, kw_sentinel, &p);
    for (unsigned s = 0; s < kt_shards; s++)
        expect_rep(env.ib, TAG_TIMEOUT, 0);
    kt_expect_empty(env.ib);
    kt_env_stop(&env);
}
