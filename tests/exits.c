/* Termination, links, monitors, exit signals and trapping. */
#include "_kt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint64_t T_REP, T_PING, T_GO, T_SURVIVED, T_READY;

static void types_init(void)
{
    T_REP = kt_type("rep");
    T_PING = kt_type("ping");
    T_GO = kt_type("go");
    T_SURVIVED = kt_type("survived");
    T_READY = kt_type("ready");
}

/* How a test child ends. */
enum how { RETURN, DIE_NORMAL, DIE_EXCEPTION, WAIT };

struct child {
    enum how how;
    const char *text;
};

static void child_init(kumo_proc *self, void *st)
{
    struct child *c = st;
    switch (c->how) {
    case RETURN:
        return;
    case DIE_NORMAL:
        kumo_die(self, KUMO_NORMAL, NULL);
        return;
    case DIE_EXCEPTION:
        kumo_die(self, KUMO_EXCEPTION, "%s", c->text);
        return;
    case WAIT:
        kt_echo_init(self, NULL);
        return;
    }
}

/* On the test's peer node, from its inbox. */
static kumo_pid spawn_child(kt_env *env, unsigned shards, struct child *c, kumo_ref *mon, bool link)
{
    return kt_spawn_peer(
        env, &(kumo_spawn_opts){.shard = KT_OTHER(shards), .monitor = mon, .link = link},
        child_init, c);
}

/* ------------------------------------------------------------------ */
/* Monitors and links to what is not there                             */
/* ------------------------------------------------------------------ */

KT_NET_TEST(exits, monitor_dead_or_unknown_pid_gives_unknown_id)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct child c = {.how = RETURN};
    kumo_ref r0;
    kumo_pid dead = spawn_child(&env, kt_shards, &c, &r0, false);
    kt_down(env.ib, dead, KUMO_NORMAL, "");

    kumo_pid other_node = dead;
    other_node.node ^= 0x10;
    kumo_pid bad_shard = dead;
    bad_shard.shard = 999;
    const kumo_pid targets[] = {dead, kt_forge_pid(dead), kt_forge_pid(kumo_inbox_pid(env.ib)),
                                other_node, bad_shard};
    for (unsigned i = 0; i < sizeof targets / sizeof *targets; i++) {
        kumo_ref ref = {0};
        cr_assert_eq(kumo_monitor(env.me, targets[i], &ref), 0);
        cr_assert_eq(ref.node, kumo_node_id(env.node));
        kumo_msg *m = kt_expect_next(env.ib, kumo_type_down());
        kumo_down_msg d;
        KT_TAKE(m, d);
        cr_assert(kumo_pid_eq(d.pid, targets[i]), "DOWN about %s, monitored %s", kt_pid(d.pid),
                  kt_pid(targets[i]));
        cr_assert(kumo_ref_eq(d.ref, ref));
        /* A node nobody can reach: disconnect (Cloud Haskell's
         * DiedDisconnect), on a node with distribution or without. */
        kt_assert_reason(&d.reason, i == 3 ? KUMO_DISCONNECT : KUMO_UNKNOWN_ID, NULL);
        /* The monitor is spent: cancelling it now finds nothing. */
        cr_assert_eq(kumo_unmonitor(env.me, ref), -ENOENT);
    }
    kt_expect_empty(env.ib);
    kt_env_stop(&env);
}

/* A process (not an inbox) monitoring and linking to a dead pid. */
static void prober_any(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match prober_match[] = {{.kind = KUMO_MATCH_ANY, .fn = prober_any}};
static const kumo_recv prober_set = {.matches = prober_match, .n = 1};

struct prober {
    kumo_pid ib, target;
    kumo_ref ref;
};

static void prober_any(kumo_proc *self, void *st, kumo_msg *m)
{
    struct prober *p = st;
    kumo_forward(self, p->ib, m); /* the DOWN or EXIT, as received */
    kumo_receive(self, &prober_set, KUMO_INFINITY);
}

static void prober_mon_init(kumo_proc *self, void *st)
{
    struct prober *p = st;
    kumo_monitor(self, p->target, &p->ref);
    kumo_receive(self, &prober_set, KUMO_INFINITY);
}

static void prober_link_init(kumo_proc *self, void *st)
{
    struct prober *p = st;
    kumo_link(self, p->target);
    kumo_receive(self, &prober_set, KUMO_INFINITY);
}

KT_NET_TEST(exits, link_to_dead_pid_gives_unknown_id)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct child c = {.how = RETURN};
    kumo_ref r0;
    kumo_pid dead = spawn_child(&env, kt_shards, &c, &r0, false);
    kt_down(env.ib, dead, KUMO_NORMAL, "");

    /* The inbox traps: the signal arrives as a message. */
    cr_assert_eq(kumo_link(env.me, dead), 0);
    kumo_exit_msg e;
    KT_TAKE(kt_expect_next(env.ib, kumo_type_exit()), e);
    cr_assert(kumo_pid_eq(e.from, dead));
    kt_assert_reason(&e.reason, KUMO_UNKNOWN_ID, NULL);
    cr_assert_eq(kumo_link(env.me, kt_forge_pid(dead)), 0);
    KT_TAKE(kt_expect_next(env.ib, kumo_type_exit()), e);
    cr_assert(kumo_pid_eq(e.from, kt_forge_pid(dead)));
    kt_assert_reason(&e.reason, KUMO_UNKNOWN_ID, NULL);

    /* A trapping process gets it as a message too. */
    struct prober p = {.ib = kumo_inbox_pid(env.ib), .target = dead};
    kumo_ref pref;
    kumo_pid pp = kt_spawn(env.node, env.ib,
                           &(kumo_spawn_opts){.shard = 0, .trap_exit = true, .monitor = &pref},
                           prober_link_init, &p);
    KT_TAKE(kt_expect(env.ib, kumo_type_exit()), e);
    cr_assert(kumo_pid_eq(e.from, dead));
    kt_assert_reason(&e.reason, KUMO_UNKNOWN_ID, NULL);
    kumo_kill(env.me, pp, NULL);
    kt_down(env.ib, pp, KUMO_KILLED, "");

    /* One that does not trap dies of it. */
    struct prober q = {.ib = kumo_inbox_pid(env.ib), .target = dead};
    kumo_ref qref;
    kumo_pid qp = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = 0, .monitor = &qref},
                           prober_link_init, &q);
    kumo_down_msg d = kt_down(env.ib, qp, KUMO_UNKNOWN_ID, NULL);
    cr_assert(kumo_ref_eq(d.ref, qref));

    /* And a process monitoring a never-existing pid gets the DOWN. */
    struct prober m = {.ib = kumo_inbox_pid(env.ib), .target = kt_forge_pid(qp)};
    kumo_ref mref;
    kumo_pid mp = kt_spawn(env.node, env.ib,
                           &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &mref},
                           prober_mon_init, &m);
    kumo_down_msg md = kt_expect_down(env.ib, m.target);
    kt_assert_reason(&md.reason, KUMO_UNKNOWN_ID, NULL);
    cr_assert(kumo_ref_eq(md.ref, m.ref));
    kumo_kill(env.me, mp, NULL);
    kt_down(env.ib, mp, KUMO_KILLED, "");
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Exit reasons reach monitors and linkers                             */
/* ------------------------------------------------------------------ */

KT_NET_TEST(exits, reasons_reach_monitors_and_linkers)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct {
        struct child c;
        int signal; /* 0 none, 1 kill, 2 exit(exception) */
        kumo_reason_kind kind;
        const char *text;
    } cases[] = {
        {{RETURN, NULL}, 0, KUMO_NORMAL, ""},
        {{DIE_NORMAL, NULL}, 0, KUMO_NORMAL, ""},
        {{DIE_EXCEPTION, "boom 42"}, 0, KUMO_EXCEPTION, "boom 42"},
        {{WAIT, NULL}, 1, KUMO_KILLED, "bye"},
        {{WAIT, NULL}, 2, KUMO_EXCEPTION, "told to"},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        kumo_ref ref, ref2;
        kumo_pid pid = spawn_child(&env, kt_shards, &cases[i].c, &ref, true);
        /* A second monitor gets its own DOWN.  (Only for a child still
         * alive: one that ended in init may be gone, and then the right
         * answer is unknown-id.) */
        if (cases[i].c.how == WAIT) {
            cr_assert_eq(kumo_monitor(env.me, pid, &ref2), 0);
            cr_assert(!kumo_ref_eq(ref, ref2));
        }
        if (cases[i].signal == 1)
            cr_assert_eq(kumo_kill(env.me, pid, "bye"), 0);
        else if (cases[i].signal == 2)
            cr_assert_eq(kumo_exit(env.me, pid, KUMO_EXCEPTION, "told to"), 0);
        kumo_exit_msg e = kt_exit(env.ib, pid, cases[i].kind, cases[i].text);
        cr_assert(kumo_pid_eq(e.from, pid));
        kumo_down_msg d = kt_down(env.ib, pid, cases[i].kind, cases[i].text);
        cr_assert(kumo_ref_eq(d.ref, ref)); /* the spawn's monitor was set first */
        if (cases[i].c.how == WAIT) {
            kumo_down_msg d2 = kt_down(env.ib, pid, cases[i].kind, cases[i].text);
            cr_assert(kumo_ref_eq(d2.ref, ref2));
        }
    }
    kt_expect_empty(env.ib);
    kt_env_stop(&env);
}

/* A linker L spawns a child C with link (and, for the survival case, a
 * monitor set after the link, so C's DOWN reaches L after its exit
 * signal). */
static void linker_msg(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match linker_match[] = {{.kind = KUMO_MATCH_ANY, .fn = linker_msg}};
static const kumo_recv linker_set = {.matches = linker_match, .n = 1};

struct linker {
    kumo_pid ib, child;
    kumo_node *child_node;
    struct child c;
    unsigned child_shard;
    bool trap, with_monitor;
    kumo_ref ref;
};

static void linker_msg(kumo_proc *self, void *st, kumo_msg *m)
{
    struct linker *l = st;
    if (kt_is_did_spawn(m, &l->child)) { /* the child is on another node */
        if (kumo_pid_is_null(l->child))
            kumo_die(self, KUMO_EXCEPTION, "remote spawn failed");
        else
            kumo_send(self, l->ib, T_READY, &l->child, sizeof l->child);
    } else if (kumo_msg_type(m) == kumo_type_exit()) {
        kumo_send(self, l->ib, T_REP, kumo_msg_data(m), kumo_msg_len(m));
    } else if (kumo_msg_type(m) == kumo_type_down()) {
        /* The link's signal came first and did not end us. */
        kumo_send(self, l->ib, T_SURVIVED, NULL, 0);
    } else if (kumo_msg_type(m) == kt_type_stop()) {
        return;
    }
    kumo_receive(self, &linker_set, KUMO_INFINITY);
}

static void linker_init(kumo_proc *self, void *st)
{
    struct linker *l = st;
    int err = kt_spawn_at(self, l->child_node,
                          &(kumo_spawn_opts){.shard = (int)l->child_shard,
                                             .link = true,
                                             .monitor = l->with_monitor ? &l->ref : NULL},
                          child_init, &l->c, &l->child);
    if (err) {
        kumo_die(self, KUMO_EXCEPTION, "spawn: %s", kumo_strerror(err));
        return;
    }
    if (!kumo_pid_is_null(l->child))
        kumo_send(self, l->ib, T_READY, &l->child, sizeof l->child);
    kumo_receive(self, &linker_set, KUMO_INFINITY);
}

/*
 * A linker on the test's node whose child is on its peer node.  It reports
 * the child's pid (T_READY) once it knows it; from another node that is
 * when the did_spawn arrives, and a linker that does not trap may die of
 * a child that ended at once before that: then the report may or may not
 * come (the test drops it with drop_ready once the linker's DOWN is in).
 */
static kumo_pid spawn_linker(kt_env *env, unsigned shards, struct linker *l, kumo_ref *ref)
{
    l->ib = kumo_inbox_pid(env->ib);
    l->child_node = env->peer;
    l->child_shard = KT_OTHER(shards);
    kumo_pid pid = kt_spawn(env->node, env->ib,
                            &(kumo_spawn_opts){.shard = 0, .trap_exit = l->trap, .monitor = ref},
                            linker_init, l);
    if (KT_REMOTE(env) && !l->trap && l->c.how != WAIT)
        return pid;
    kumo_pid child;
    KT_TAKE(kt_expect(env->ib, T_READY), child);
    cr_assert(kumo_pid_eq(child, l->child));
    return pid;
}

static bool is_ready(const kumo_msg *m, void *arg)
{
    (void)arg;
    return kumo_msg_type(m) == T_READY;
}

/* After a linker's DOWN: takes the report it may have sent (see above). */
static void drop_ready(kt_env *env)
{
    kumo_msg *m = NULL;
    if (kumo_inbox_recv(env->ib, is_ready, NULL, 0, &m) == 0) {
        cr_assert(KT_REMOTE(env), "a second report from a local linker");
        kumo_msg_free(m);
    }
}

KT_NET_TEST(exits, trapping_linker_gets_exit_messages)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct child kinds[] = {{RETURN, NULL}, {DIE_EXCEPTION, "oops"}, {WAIT, NULL}};
    kumo_reason_kind want[] = {KUMO_NORMAL, KUMO_EXCEPTION, KUMO_KILLED};
    const char *want_text[] = {"", "oops", "k"};
    for (unsigned i = 0; i < 3; i++) {
        struct linker l = {.c = kinds[i], .trap = true};
        kumo_ref ref;
        kumo_pid lp = spawn_linker(&env, kt_shards, &l, &ref);
        if (kinds[i].how == WAIT)
            kumo_kill(env.me, l.child, "k");
        kumo_exit_msg e;
        KT_TAKE(kt_expect(env.ib, T_REP), e);
        cr_assert(kumo_pid_eq(e.from, l.child));
        kt_assert_reason(&e.reason, want[i], want_text[i]);
        kumo_send(env.me, lp, kt_type_stop(), NULL, 0);
        kt_down(env.ib, lp, KUMO_NORMAL, "");
    }
    kt_env_stop(&env);
}

KT_NET_TEST(exits, untrapped_linker_dies_with_abnormal_reason)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);

    struct linker l = {.c = {DIE_EXCEPTION, "boom"}};
    kumo_ref ref;
    kumo_pid lp = spawn_linker(&env, kt_shards, &l, &ref);
    kt_down(env.ib, lp, KUMO_EXCEPTION, "boom");
    drop_ready(&env);

    /* A killed child's "killed" reason also ends an untrapped linker. */
    struct linker k = {.c = {WAIT, NULL}};
    kumo_pid kp = spawn_linker(&env, kt_shards, &k, &ref);
    kumo_kill(env.me, k.child, "shot");
    kt_down(env.ib, kp, KUMO_KILLED, "shot");
    kt_env_stop(&env);
}

KT_NET_TEST(exits, untrapped_linker_dies_with_the_normal_exit_of_its_target)
{
    /* Cloud Haskell's link: a normal end fires it too (DiedNormal). */
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct child ends[] = {{RETURN, NULL}, {DIE_NORMAL, NULL}};
    for (unsigned i = 0; i < 2; i++) {
        struct linker l = {.c = ends[i], .with_monitor = true};
        kumo_ref ref;
        kumo_pid lp = spawn_linker(&env, kt_shards, &l, &ref);
        /* The linker ends before its DOWN of the child could reach it. */
        kt_down(env.ib, lp, KUMO_NORMAL, "");
        drop_ready(&env);
        kumo_msg *m = NULL;
        cr_assert_eq(kumo_inbox_recv(env.ib, NULL, NULL, 0, &m), -KUMO_ETIMEOUT,
                     "the linker survived: it reported to the inbox");
    }
    kt_env_stop(&env);
}

static void assert_cause(const kumo_reason *r, kumo_reason_via via, kumo_pid by, const char *str)
{
    char a[64], b[64], buf[256];
    cr_assert_eq(r->via, via, "reason's via %d, expected %d", r->via, via);
    cr_assert(kumo_pid_eq(r->by, by), "reason's by %s, expected %s",
              kumo_pid_str(r->by, a, sizeof a), kumo_pid_str(by, b, sizeof b));
    kumo_reason_str(r, buf, sizeof buf);
    if (kumo_pid_is_null(by)) {
        cr_assert_str_eq(buf, str);
    } else {
        char want[256];
        snprintf(want, sizeof want, "%s%s", str, kumo_pid_str(by, a, sizeof a));
        cr_assert_str_eq(buf, want);
    }
}

KT_NET_TEST(exits, a_reason_names_the_process_that_ended_it)
{
    /* Cloud Haskell's killed-by=<pid> and exit-from=<pid>: for monitors,
     * links and trapped exits alike. */
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_pid me = kumo_inbox_pid(env.ib);

    /* Killed: its monitor, its trapping linker and its untrapped linker
     * see who did it; the untrapped linker's own end names the child. */
    for (int trap = 0; trap < 2; trap++) {
        struct linker l = {.c = {WAIT, NULL}, .trap = trap};
        kumo_ref lref, cref;
        kumo_pid lp = spawn_linker(&env, kt_shards, &l, &lref);
        cr_assert_eq(kumo_monitor(env.me, l.child, &cref), 0);
        cr_assert_eq(kumo_kill(env.me, l.child, "shot"), 0);
        kumo_down_msg d = kt_expect_down_ref(env.ib, cref);
        kt_assert_reason(&d.reason, KUMO_KILLED, "shot");
        assert_cause(&d.reason, KUMO_VIA_KILL, me, "killed:shot,killed-by=");
        if (trap) {
            kumo_exit_msg e;
            KT_TAKE(kt_expect(env.ib, T_REP), e);
            cr_assert(kumo_pid_eq(e.from, l.child));
            assert_cause(&e.reason, KUMO_VIA_KILL, me, "killed:shot,killed-by=");
            kumo_send(env.me, lp, kt_type_stop(), NULL, 0);
            d = kt_expect_down_ref(env.ib, lref);
            assert_cause(&d.reason, KUMO_VIA_NONE, (kumo_pid){0}, "normal");
        } else {
            d = kt_expect_down_ref(env.ib, lref);
            kt_assert_reason(&d.reason, KUMO_KILLED, "shot");
            assert_cause(&d.reason, KUMO_VIA_LINK, l.child, "killed:shot,link-from=");
        }
    }

    /* Ended by an exit signal, from another process or from itself. */
    struct child c = {.how = WAIT};
    kumo_ref ref;
    kumo_pid p = spawn_child(&env, kt_shards, &c, &ref, false);
    cr_assert_eq(kumo_exit(env.me, p, KUMO_EXCEPTION, "boom"), 0);
    kumo_down_msg d = kt_expect_down_ref(env.ib, ref);
    assert_cause(&d.reason, KUMO_VIA_EXIT, me, "exception:boom,exit-from=");

    /* Ended by itself: nobody is named. */
    c = (struct child){.how = DIE_EXCEPTION, .text = "own"};
    p = spawn_child(&env, kt_shards, &c, &ref, false);
    d = kt_expect_down_ref(env.ib, ref);
    assert_cause(&d.reason, KUMO_VIA_NONE, (kumo_pid){0}, "exception:own");
    c = (struct child){.how = RETURN};
    p = spawn_child(&env, kt_shards, &c, &ref, false);
    d = kt_expect_down_ref(env.ib, ref);
    assert_cause(&d.reason, KUMO_VIA_NONE, (kumo_pid){0}, "normal");

    /* A monitor of what was never there names nobody either. */
    cr_assert_eq(kumo_monitor(env.me, p, &ref), 0);
    d = kt_expect_down_ref(env.ib, ref);
    assert_cause(&d.reason, KUMO_VIA_NONE, (kumo_pid){0}, "unknown-id");
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Erlang-style links                                                  */
/* ------------------------------------------------------------------ */

/* Waits for anything; ends normally on kt.stop, dies with an exception on
 * dt.crash. */
static void elinked_msg(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match elinked_any[] = {{.kind = KUMO_MATCH_ANY, .fn = elinked_msg}};
static const kumo_recv elinked_set = {.matches = elinked_any, .n = 1};
static void elinked_msg(kumo_proc *self, void *st, kumo_msg *m)
{
    if (kumo_msg_type(m) == kt_type_stop())
        return;
    if (kumo_msg_type(m) == kumo_type("ex.crash")) {
        kumo_die(self, KUMO_EXCEPTION, "crashed");
        return;
    }
    if (kumo_msg_type(m) == kumo_type("ex.link")) {
        /* payload: whom to link to, whom to tell once the link is there
         * (the ack follows the link signal to the target, in order) */
        kumo_pid p[2];
        memcpy(p, kumo_msg_data(m), sizeof p);
        kumo_erlang_link(self, p[0]);
        kumo_send(self, p[0], kumo_type("ex.ack"), &p[1], sizeof p[1]);
    } else if (kumo_msg_type(m) == kumo_type("ex.ack")) {
        kumo_pid report;
        memcpy(&report, kumo_msg_data(m), sizeof report);
        kumo_send(self, report, kumo_type("ex.linked"), NULL, 0);
    }
    kumo_receive(self, &elinked_set, KUMO_INFINITY);
}
static void elinked_init(kumo_proc *self, void *st)
{
    kumo_receive(self, &elinked_set, KUMO_INFINITY);
}

KT_NET_TEST(exits, an_erlang_link_ignores_normal_ends_and_spreads_abnormal_ones_both_ways)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_ref ra, rb, rc;
    kumo_pid a = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.monitor = &ra}, elinked_init, NULL);
    kumo_pid b = kt_spawn_peer(
        &env, &(kumo_spawn_opts){.monitor = &rb, .shard = KT_OTHER(kt_shards)}, elinked_init, NULL);
    kumo_pid c = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.monitor = &rc}, elinked_init, NULL);
    /* a <-> b, b <-> c, each made from one end */
    kumo_pid ab[2] = {b, kumo_inbox_pid(env.ib)};
    kumo_send(env.me, a, kumo_type("ex.link"), ab, sizeof ab);
    kumo_send(env.me, c, kumo_type("ex.link"), ab, sizeof ab);
    kumo_msg_free(kt_expect(env.ib, kumo_type("ex.linked")));
    kumo_msg_free(kt_expect(env.ib, kumo_type("ex.linked")));
    /* a normal end of c does not touch b: b still answers */
    kumo_send(env.me, c, kt_type_stop(), NULL, 0);
    kt_down(env.ib, c, KUMO_NORMAL, "");
    kumo_ref probe;
    cr_assert_eq(kumo_monitor(env.me, b, &probe), 0);
    /* a crash of b (the middle) takes a with it, with b's reason */
    kumo_send(env.me, b, kumo_type("ex.crash"), NULL, 0);
    kumo_down_msg d = kt_expect_down_ref(env.ib, rb);
    kt_assert_reason(&d.reason, KUMO_EXCEPTION, "crashed");
    d = kt_expect_down_ref(env.ib, ra);
    kt_assert_reason(&d.reason, KUMO_EXCEPTION, "crashed");
    kt_expect_down_ref(env.ib, probe);
    kt_env_stop(&env);
}

KT_NET_TEST(exits, an_erlang_link_to_a_dead_pid_ends_an_untrapped_caller)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_ref r;
    kumo_pid gone = kt_spawn_peer(&env, &(kumo_spawn_opts){.monitor = &r}, elinked_init, NULL);
    kumo_send(env.me, gone, kt_type_stop(), NULL, 0);
    kt_expect_down_ref(env.ib, r);
    kumo_ref rl;
    kumo_pid l = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.monitor = &rl}, elinked_init, NULL);
    kumo_pid lg[2] = {gone, kumo_inbox_pid(env.ib)};
    kumo_send(env.me, l, kumo_type("ex.link"), lg, sizeof lg);
    kumo_down_msg d = kt_expect_down_ref(env.ib, rl);
    kt_assert_reason(&d.reason, KUMO_UNKNOWN_ID, NULL);
    /* the inbox traps: it gets the signal as a message, and unlinking
     * first means no signal at all */
    cr_assert_eq(kumo_erlang_link(env.me, gone), 0);
    kumo_exit_msg x = kt_expect_exit(env.ib, gone);
    kt_assert_reason(&x.reason, KUMO_UNKNOWN_ID, NULL);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* unlink and unmonitor                                                */
/* ------------------------------------------------------------------ */

KT_NET_TEST(exits, unlink_and_unmonitor_from_inbox)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct child c = {.how = WAIT};

    /* link, unlink, monitor, kill: only the DOWN comes (an exit signal
     * would come first, the link being older). */
    kumo_pid p = spawn_child(&env, kt_shards, &c, NULL, false);
    cr_assert_eq(kumo_link(env.me, p), 0);
    cr_assert_eq(kumo_unlink(env.me, p), 0);
    cr_assert_eq(kumo_unlink(env.me, p), 0); /* not linked: still 0 */
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(env.me, p, &ref), 0);
    kumo_kill(env.me, p, NULL);
    kumo_msg_free(kt_expect_next(env.ib, kumo_type_down()));

    /* A DOWN already queued is removed by unmonitor: monitor twice, take
     * the second DOWN (so the first is queued, ahead of it), cancel the
     * first: nothing is left. */
    p = spawn_child(&env, kt_shards, &c, NULL, false);
    kumo_ref r1, r2;
    cr_assert_eq(kumo_monitor(env.me, p, &r1), 0);
    cr_assert_eq(kumo_monitor(env.me, p, &r2), 0);
    kumo_kill(env.me, p, NULL);
    kumo_down_msg d = kt_expect_down_ref(env.ib, r2);
    kt_assert_reason(&d.reason, KUMO_KILLED, "");
    cr_assert_eq(kumo_inbox_count(env.ib), 1);
    cr_assert_eq(kumo_unmonitor(env.me, r1), 0);
    kt_expect_empty(env.ib);
    cr_assert_eq(kumo_unmonitor(env.me, r1), -ENOENT);
    cr_assert_eq(kumo_unmonitor(env.me, r2), -ENOENT); /* delivered: spent */

    /* Unmonitor before death: no DOWN for that ref, the other one comes. */
    p = spawn_child(&env, kt_shards, &c, NULL, false);
    cr_assert_eq(kumo_monitor(env.me, p, &r1), 0);
    cr_assert_eq(kumo_monitor(env.me, p, &r2), 0);
    cr_assert_eq(kumo_unmonitor(env.me, r1), 0);
    kumo_kill(env.me, p, NULL);
    KT_TAKE(kt_expect_next(env.ib, kumo_type_down()), d);
    cr_assert(kumo_ref_eq(d.ref, r2));

    /* Refs that are not monitors of the caller. */
    cr_assert_eq(kumo_unmonitor(env.me, (kumo_ref){.node = kumo_node_id(env.node), .id = 12345}),
                 -ENOENT);
    cr_assert_eq(
        kumo_unmonitor(env.me, (kumo_ref){.node = kumo_node_id(env.node) ^ 1, .id = r2.id}),
        -ENOENT);
    kt_expect_empty(env.ib);
    kt_env_stop(&env);
}

/*
 * The same from a process Q, whose handler runs on its shard while the
 * target dies: Q links to and monitors P (two monitors), then in one
 * handler kills P and cancels the link and the first monitor.  The exit
 * signal and the first DOWN are then in flight or not yet sent; either way
 * the first thing Q receives must be the second DOWN.
 */
struct canceller {
    kumo_pid ib, target;
    kumo_ref r1, r2;
    int phase;
};

static void canc_any(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match canc_match[] = {{.kind = KUMO_MATCH_ANY, .fn = canc_any}};
static const kumo_recv canc_set = {.matches = canc_match, .n = 1};

static void canc_any(kumo_proc *self, void *st, kumo_msg *m)
{
    struct canceller *q = st;
    if (q->phase == 0 && kumo_msg_type(m) == T_GO) {
        q->phase = 1;
        kumo_kill(self, q->target, "x");
        int a = kumo_unlink(self, q->target);
        int b = kumo_unmonitor(self, q->r1);
        if (a || b)
            kumo_die(self, KUMO_EXCEPTION, "unlink %d unmonitor %d", a, b);
        kumo_receive(self, &canc_set, KUMO_INFINITY);
        return;
    }
    /* Report what came first: its type and, for a DOWN, which ref. */
    uint64_t rep[2] = {kumo_msg_type(m), 0};
    if (kumo_msg_type(m) == kumo_type_down())
        rep[1] = ((const kumo_down_msg *)kumo_msg_data(m))->ref.id;
    kumo_send(self, q->ib, T_REP, rep, sizeof rep);
}

static void canc_init(kumo_proc *self, void *st)
{
    struct canceller *q = st;
    kumo_link(self, q->target);
    kumo_monitor(self, q->target, &q->r1);
    kumo_monitor(self, q->target, &q->r2);
    kumo_send(self, q->ib, T_READY, NULL, 0);
    kumo_receive(self, &canc_set, KUMO_INFINITY);
}

KT_NET_TEST(exits, unlink_and_unmonitor_drop_signals_in_flight)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    for (unsigned placement = 0; placement < kt_shards; placement++) {
        struct child c = {.how = WAIT};
        kumo_pid p =
            kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = (int)placement}, child_init, &c);
        struct canceller q = {.ib = kumo_inbox_pid(env.ib), .target = p};
        kumo_ref qref;
        kumo_pid qp = kt_spawn(env.node, env.ib,
                               &(kumo_spawn_opts){.shard = 0, .trap_exit = true, .monitor = &qref},
                               canc_init, &q);
        kumo_msg_free(kt_expect(env.ib, T_READY));
        kumo_send(env.me, qp, T_GO, NULL, 0);
        uint64_t rep[2];
        KT_TAKE(kt_expect(env.ib, T_REP), rep);
        char tb[64];
        cr_assert_eq(rep[0], kumo_type_down(), "first message after cancelling: %s",
                     kt_type_name(rep[0], tb, sizeof tb));
        cr_assert_eq(rep[1], q.r2.id, "the cancelled monitor's DOWN arrived");
        kt_down(env.ib, qp, KUMO_NORMAL, "");
    }
    kt_env_stop(&env);
}

/* unmonitor from a process removes a DOWN already in its mailbox. */
static bool is_down_r2(const kumo_msg *m, void *st)
{
    struct canceller *q = st;
    return ((const kumo_down_msg *)kumo_msg_data(m))->ref.id == q->r2.id;
}

static void qd_poll(kumo_proc *self, void *st, kumo_msg *m)
{
    struct canceller *q = st;
    uint64_t rep[2] = {m ? kumo_msg_type(m) : 0, 0};
    kumo_send(self, q->ib, T_REP, rep, sizeof rep);
}

static void qd_got_r2(kumo_proc *self, void *st, kumo_msg *m)
{
    static kumo_match poll_match[] = {{.kind = KUMO_MATCH_ANY, .fn = qd_poll}};
    static kumo_recv poll_set = {.matches = poll_match, .n = 1, .on_timeout = qd_poll};
    struct canceller *q = st;
    (void)m;
    int err = kumo_unmonitor(self, q->r1); /* its DOWN is queued, ahead of r2's */
    if (err)
        kumo_die(self, KUMO_EXCEPTION, "unmonitor: %d", err);
    kumo_receive(self, &poll_set, 0);
}

static kumo_match qd_match[1];
static kumo_recv qd_set = {.matches = qd_match, .n = 1};

static void qd_init(kumo_proc *self, void *st)
{
    struct canceller *q = st;
    kumo_monitor(self, q->target, &q->r1);
    kumo_monitor(self, q->target, &q->r2);
    kumo_kill(self, q->target, NULL);
    kumo_receive(self, &qd_set, KUMO_INFINITY);
}

KT_NET_TEST(exits, unmonitor_removes_queued_down_in_process)
{
    types_init();
    qd_match[0] = (kumo_match){
        .kind = KUMO_MATCH_IF, .type = kumo_type_down(), .pred = is_down_r2, .fn = qd_got_r2};
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct child c = {.how = WAIT};
    kumo_pid p =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, child_init, &c);
    struct canceller q = {.ib = kumo_inbox_pid(env.ib), .target = p};
    kumo_ref qref;
    kumo_pid qp =
        kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = 0, .monitor = &qref}, qd_init, &q);
    uint64_t rep[2];
    KT_TAKE(kt_expect(env.ib, T_REP), rep);
    cr_assert_eq(rep[0], 0, "a message was left after unmonitor (type %llx)",
                 (unsigned long long)rep[0]);
    kt_down(env.ib, qp, KUMO_NORMAL, "");
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Trapping, kill, exit signals                                        */
/* ------------------------------------------------------------------ */

struct trapper {
    kumo_pid ib;
};

static void trapper_any(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match trapper_match[] = {{.kind = KUMO_MATCH_ANY, .fn = trapper_any}};
static const kumo_recv trapper_set = {.matches = trapper_match, .n = 1};

static void trapper_any(kumo_proc *self, void *st, kumo_msg *m)
{
    struct trapper *t = st;
    if (kumo_msg_type(m) == kumo_type_exit())
        kumo_send(self, t->ib, T_REP, kumo_msg_data(m), kumo_msg_len(m));
    else if (kumo_msg_type(m) == T_GO)
        kumo_trap_exit(self, false);
    else
        kumo_send(self, kumo_msg_sender(m), kumo_msg_type(m), NULL, 0); /* echo */
    kumo_receive(self, &trapper_set, KUMO_INFINITY);
}

static void trapper_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_trap_exit(self, true);
    kumo_receive(self, &trapper_set, KUMO_INFINITY);
}

KT_NET_TEST(exits, trapped_exits_become_messages)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_pid self_pid = kumo_inbox_pid(env.ib);
    for (int via_opts = 0; via_opts < 2; via_opts++) {
        struct trapper t = {.ib = self_pid};
        kumo_ref ref;
        kumo_pid tp =
            kt_spawn_peer(&env,
                          &(kumo_spawn_opts){
                              .shard = KT_OTHER(kt_shards), .monitor = &ref, .trap_exit = via_opts},
                          via_opts ? kt_echo_init : trapper_init, &t);
        if (via_opts) {
            /* trap_exit in the options, with an echo body: the exit
             * messages are echoed to their sender, the engine (null pid),
             * i.e. dropped; the process survives.  Check that by ping. */
            cr_assert_eq(kumo_exit(env.me, tp, KUMO_EXCEPTION, "x"), 0);
            kumo_send(env.me, tp, T_PING, NULL, 0);
            kumo_msg_free(kt_expect_next(env.ib, T_PING));
            kumo_kill(env.me, tp, NULL);
            kt_down(env.ib, tp, KUMO_KILLED, "");
            continue;
        }
        /* It traps from its init on: signals sent before init ran would
         * find it not trapping yet, so wait for an answer first. */
        kumo_send(env.me, tp, T_PING, NULL, 0);
        kumo_msg_free(kt_expect_next(env.ib, T_PING));
        cr_assert_eq(kumo_exit(env.me, tp, KUMO_EXCEPTION, "x"), 0);
        cr_assert_eq(kumo_exit(env.me, tp, KUMO_NORMAL, NULL), 0);
        cr_assert_eq(kumo_exit(env.me, tp, KUMO_SHUTDOWN, "s"), 0);
        kumo_exit_msg e;
        KT_TAKE(kt_expect_next(env.ib, T_REP), e);
        cr_assert(kumo_pid_eq(e.from, self_pid));
        kt_assert_reason(&e.reason, KUMO_EXCEPTION, "x");
        KT_TAKE(kt_expect_next(env.ib, T_REP), e);
        kt_assert_reason(&e.reason, KUMO_NORMAL, "");
        KT_TAKE(kt_expect_next(env.ib, T_REP), e);
        kt_assert_reason(&e.reason, KUMO_SHUTDOWN, "s");
        /* Stop trapping (once the ping after GO is answered, GO has been
         * handled: signals act on arrival, messages when handled); then
         * the next abnormal signal ends it. */
        kumo_send(env.me, tp, T_GO, NULL, 0);
        kumo_send(env.me, tp, T_PING, NULL, 0);
        kumo_msg_free(kt_expect_next(env.ib, T_PING));
        cr_assert_eq(kumo_exit(env.me, tp, KUMO_EXCEPTION, "now"), 0);
        kt_down(env.ib, tp, KUMO_EXCEPTION, "now");
    }
    kt_env_stop(&env);
}

KT_NET_TEST(exits, kill_cannot_be_trapped)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct trapper t = {.ib = kumo_inbox_pid(env.ib)};
    kumo_ref ref;
    kumo_pid tp = kt_spawn_peer(
        &env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref}, trapper_init, &t);
    kumo_send(env.me, tp, T_PING, NULL, 0);
    kumo_msg_free(kt_expect_next(env.ib, T_PING)); /* trapping is on */
    cr_assert_eq(kumo_kill(env.me, tp, "dead"), 0);
    kumo_msg *m = kt_expect_next(env.ib, kumo_type_down());
    kumo_down_msg d;
    KT_TAKE(m, d);
    kt_assert_reason(&d.reason, KUMO_KILLED, "dead");
    /* Killing or signalling a dead pid is not an error. */
    cr_assert_eq(kumo_kill(env.me, tp, "again"), 0);
    cr_assert_eq(kumo_exit(env.me, tp, KUMO_EXCEPTION, "again"), 0);
    cr_assert_eq(kumo_kill(env.me, kt_forge_pid(tp), NULL), 0);
    kt_expect_empty(env.ib);
    kt_env_stop(&env);
}

KT_NET_TEST(exits, normal_exit_signal_ignored_without_trap)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    kumo_ref ref;
    kumo_pid ep =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref},
                      kt_echo_init, NULL);
    cr_assert_eq(kumo_exit(env.me, ep, KUMO_NORMAL, "ignored"), 0);
    kumo_send(env.me, ep, T_PING, NULL, 0);
    kumo_msg_free(kt_expect_next(env.ib, T_PING)); /* alive: the marker, not a DOWN */
    cr_assert_eq(kumo_exit(env.me, ep, KUMO_EXCEPTION, "not ignored"), 0);
    kt_down(env.ib, ep, KUMO_EXCEPTION, "not ignored");
    kt_env_stop(&env);
}

KT_TEST(exits, inbox_always_traps)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_inbox *ib2 = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    cr_assert_eq(kumo_exit(me, kumo_inbox_pid(ib2), KUMO_EXCEPTION, "x"), 0);
    cr_assert_eq(kumo_exit(me, kumo_inbox_pid(ib2), KUMO_NORMAL, NULL), 0);
    kumo_exit_msg e = kt_exit(ib2, kumo_inbox_pid(ib), KUMO_EXCEPTION, "x");
    (void)e;
    kt_exit(ib2, kumo_inbox_pid(ib), KUMO_NORMAL, "");
    /* Turning trapping off does not apply to an inbox. */
    kumo_trap_exit(kumo_inbox_proc(ib2), false);
    cr_assert_eq(kumo_exit(me, kumo_inbox_pid(ib2), KUMO_EXCEPTION, "y"), 0);
    kt_exit(ib2, kumo_inbox_pid(ib), KUMO_EXCEPTION, "y");
    /* Still open: it receives. */
    kumo_send(me, kumo_inbox_pid(ib2), T_PING, NULL, 0);
    kumo_msg_free(kt_expect_next(ib2, T_PING));
    kumo_inbox_free(ib2);
    kumo_inbox_free(ib);
    kt_stop(node);
}

/* ------------------------------------------------------------------ */
/* Spawn with link and monitor                                         */
/* ------------------------------------------------------------------ */

/* Children that die at once in init: the link and the monitor are set
 * atomically with the spawn, so the spawner sees their real reason, never
 * unknown-id. */
struct spawner {
    kumo_pid ib;
    kumo_node *at;
    unsigned n, exits, downs, bad;
    struct child c;
};

static void spawner_any(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match spawner_match[] = {{.kind = KUMO_MATCH_ANY, .fn = spawner_any}};
static const kumo_recv spawner_set = {.matches = spawner_match, .n = 1};

static void spawner_any(kumo_proc *self, void *st, kumo_msg *m)
{
    struct spawner *s = st;
    const kumo_reason *r = NULL;
    kumo_pid child;
    if (kt_is_did_spawn(m, &child)) { /* children on another node */
        if (kumo_pid_is_null(child))
            s->bad++;
        kumo_receive(self, &spawner_set, KUMO_INFINITY);
        return;
    }
    if (kumo_msg_type(m) == kumo_type_exit()) {
        s->exits++;
        r = &((const kumo_exit_msg *)kumo_msg_data(m))->reason;
    } else if (kumo_msg_type(m) == kumo_type_down()) {
        s->downs++;
        r = &((const kumo_down_msg *)kumo_msg_data(m))->reason;
    }
    if (!r || r->kind != KUMO_EXCEPTION || strcmp(r->text, "early"))
        s->bad++;
    if (s->exits == s->n && s->downs == s->n) {
        uint64_t rep[3] = {s->exits, s->downs, s->bad};
        kumo_send(self, s->ib, T_REP, rep, sizeof rep);
        return;
    }
    kumo_receive(self, &spawner_set, KUMO_INFINITY);
}

static void spawner_init(kumo_proc *self, void *st)
{
    struct spawner *s = st;
    for (unsigned i = 0; i < s->n; i++) {
        kumo_ref ref;
        kumo_pid pid;
        if (kt_spawn_at(self, s->at,
                        &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .link = true, .monitor = &ref},
                        child_init, &s->c, &pid))
            s->bad++;
    }
    kumo_receive(self, &spawner_set, KUMO_INFINITY);
}

KT_NET_TEST(exits, spawn_link_and_monitor_are_atomic)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct child early = {DIE_EXCEPTION, "early"};
    const unsigned n = 200;
    /* From the inbox. */
    for (unsigned i = 0; i < n; i++) {
        kumo_ref ref;
        kumo_pid pid = kt_spawn_peer(
            &env, &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .link = true, .monitor = &ref},
            child_init, &early);
        cr_assert_eq(ref.node, kumo_node_id(env.node));
        kt_exit(env.ib, pid, KUMO_EXCEPTION, "early");
        kumo_down_msg d = kt_down(env.ib, pid, KUMO_EXCEPTION, "early");
        cr_assert(kumo_ref_eq(d.ref, ref));
    }
    /* From a process. */
    struct spawner s = {.ib = kumo_inbox_pid(env.ib), .at = env.peer, .n = n, .c = early};
    kumo_ref sref;
    kumo_pid sp = kt_spawn(env.node, env.ib,
                           &(kumo_spawn_opts){.shard = 0, .trap_exit = true, .monitor = &sref},
                           spawner_init, &s);
    uint64_t rep[3];
    KT_TAKE(kt_expect(env.ib, T_REP), rep);
    cr_assert_eq(rep[0], n);
    cr_assert_eq(rep[1], n);
    cr_assert_eq(rep[2], 0, "%llu notifications with the wrong reason", (unsigned long long)rep[2]);
    kt_down(env.ib, sp, KUMO_NORMAL, "");
    /* Link or monitor without a spawning process is refused. */
    kumo_ref ref;
    cr_assert_eq(
        kumo_spawn(env.node, NULL, &(kumo_spawn_opts){.link = true}, child_init, &early, NULL),
        -EINVAL);
    cr_assert_eq(
        kumo_spawn(env.node, NULL, &(kumo_spawn_opts){.monitor = &ref}, child_init, &early, NULL),
        -EINVAL);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Odd cases                                                           */
/* ------------------------------------------------------------------ */

KT_NET_TEST(exits, link_twice_gives_one_signal)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    struct child c = {.how = WAIT};
    kumo_pid p = spawn_child(&env, kt_shards, &c, NULL, false);
    cr_assert_eq(kumo_link(env.me, p), 0);
    cr_assert_eq(kumo_link(env.me, p), 0);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(env.me, p, &ref), 0); /* its DOWN comes after the link's signal */
    kumo_kill(env.me, p, "once");
    kumo_exit_msg e;
    KT_TAKE(kt_expect_next(env.ib, kumo_type_exit()), e);
    kt_assert_reason(&e.reason, KUMO_KILLED, "once");
    kumo_msg_free(kt_expect_next(env.ib, kumo_type_down()));
    kt_expect_empty(env.ib);
    kt_env_stop(&env);
}

/* Exit signals a process sends itself. */
static void self_signal_init(kumo_proc *self, void *st)
{
    int how = *(int *)st;
    if (how == 0)
        kumo_exit(self, kumo_self(self), KUMO_EXCEPTION, "by my own hand");
    else
        kumo_kill(self, kumo_self(self), "self-kill");
    kt_echo_init(self, NULL); /* waits: the signal ends it */
}

KT_NET_TEST(exits, signals_to_self)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    static int hows[] = {0, 1};
    kumo_ref ref;
    kumo_pid a =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref},
                      self_signal_init, &hows[0]);
    kumo_down_msg d = kt_down(env.ib, a, KUMO_EXCEPTION, "by my own hand");
    assert_cause(&d.reason, KUMO_VIA_EXIT, a, "exception:by my own hand,exit-from=");
    kumo_pid b =
        kt_spawn_peer(&env, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref},
                      self_signal_init, &hows[1]);
    d = kt_down(env.ib, b, KUMO_KILLED, "self-kill");
    assert_cause(&d.reason, KUMO_VIA_KILL, b, "killed:self-kill,killed-by=");
    kt_env_stop(&env);
}

/* A chain of linked processes: the last one's abnormal end takes every one
 * down, across shards, and the first one's monitor sees the original
 * reason.  (Signals queue: a long chain does not recurse.) */
#define CHAIN 5000u

struct chain {
    kumo_pid ib;
    unsigned left;
    kt_count exits;
    _Atomic unsigned wrong_reason;
};

static void chain_exit(void *st, const kumo_reason *why)
{
    struct chain *c = st;
    if (why->kind != KUMO_EXCEPTION || strcmp(why->text, "tail broke"))
        atomic_fetch_add(&c->wrong_reason, 1);
    kt_count_add(&c->exits, 1);
}

static void chain_init(kumo_proc *self, void *st)
{
    struct chain *c = st;
    if (c->left == 0) { /* the tail */
        kumo_pid me = kumo_self(self);
        kumo_send(self, c->ib, T_READY, &me, sizeof me);
        kt_echo_init(self, NULL);
        return;
    }
    c->left--;
    int err =
        kumo_spawn(kumo_self_node(self), self,
                   &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .link = true, .on_exit = chain_exit},
                   chain_init, c, NULL);
    if (err) {
        kumo_die(self, KUMO_EXCEPTION, "spawn: %d", err);
        return;
    }
    kt_echo_init(self, NULL);
}

KT_TEST(exits, chain_of_links_propagates)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct chain c = {.ib = kumo_inbox_pid(env.ib), .left = CHAIN, .exits = KT_COUNT_INIT};
    kumo_ref ref;
    kumo_pid head = kt_spawn(env.node, env.ib,
                             &(kumo_spawn_opts){.shard = 0, .monitor = &ref, .on_exit = chain_exit},
                             chain_init, &c);
    kumo_pid tail;
    KT_TAKE(kt_expect(env.ib, T_READY), tail);
    cr_assert_eq(kumo_node_process_count(env.node), CHAIN + 2); /* the chain and the inbox */
    cr_assert_eq(kumo_exit(env.me, tail, KUMO_EXCEPTION, "tail broke"), 0);
    kt_down(env.ib, head, KUMO_EXCEPTION, "tail broke");
    kt_count_wait(&c.exits, CHAIN + 1, "chain exits");
    cr_assert_eq(atomic_load(&c.wrong_reason), 0);
    cr_assert_eq(kumo_node_process_count(env.node), 1);
    kt_env_stop(&env);
}
