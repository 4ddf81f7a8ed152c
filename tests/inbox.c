/* Blocking inboxes: waits, timeouts, selective takes, closing. */
#include "_kt.h"

#include <pthread.h>
#include <string.h>

static uint64_t T_A, T_B, T_PING;

static void types_init(void)
{
    T_A = kt_type("A");
    T_B = kt_type("B");
    T_PING = kt_type("ping");
}

static bool is_two(const kumo_msg *m, void *arg)
{
    (void)arg;
    uint64_t v;
    memcpy(&v, kumo_msg_data(m), sizeof v);
    return v == 2;
}

KT_TEST(inbox, recv_timeout)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_msg *m = NULL;
    uint64_t t0 = kt_now_ns();
    cr_assert_eq(kumo_inbox_recv(ib, NULL, NULL, 20 * KT_MS, &m), -KUMO_ETIMEOUT);
    uint64_t waited = kt_now_ns() - t0;
    cr_assert_geq(waited, (uint64_t)(20 * KT_MS), "returned after %llu ns",
                  (unsigned long long)waited);
    cr_assert_eq(kumo_inbox_recv(ib, NULL, NULL, 0, &m), -KUMO_ETIMEOUT);
    cr_assert_eq(kumo_inbox_expect(ib, T_A, 0, &m), -KUMO_ETIMEOUT);
    /* Messages that do not match stay; the wait still times out. */
    kumo_proc *me = kumo_inbox_proc(ib);
    kt_send_u64(me, kumo_inbox_pid(ib), T_B, 1);
    kt_send_u64(me, kumo_inbox_pid(ib), T_B, 2);
    cr_assert_eq(kumo_inbox_recv(ib, is_two, NULL, KT_WAIT_NS, &m), 0); /* B 1 is in by then */
    kumo_msg_free(m);
    cr_assert_eq(kumo_inbox_count(ib), 1);
    cr_assert_eq(kumo_inbox_expect(ib, T_A, 10 * KT_MS, &m), -KUMO_ETIMEOUT);
    cr_assert_eq(kumo_inbox_count(ib), 1);
    cr_assert_eq(kt_expect_u64(ib, T_B), 1);
    cr_assert_eq(kumo_inbox_count(ib), 0);
    kumo_inbox_free(ib);
    kt_stop(node);
}

static bool is_even(const kumo_msg *m, void *arg)
{
    uint64_t v;
    memcpy(&v, kumo_msg_data(m), sizeof v);
    ++*(int *)arg;
    return v % 2 == 0;
}

static bool is_six(const kumo_msg *m, void *arg)
{
    (void)arg;
    uint64_t v;
    memcpy(&v, kumo_msg_data(m), sizeof v);
    return v == 6;
}

KT_TEST(inbox, selective_take_keeps_order)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_inbox *ib2 = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    kumo_pid to = kumo_inbox_pid(ib2);
    for (uint64_t v = 1; v <= 6; v++)
        kt_send_u64(me, to, v <= 3 ? T_A : T_B, v);
    kumo_msg *m;
    /* Take B 6 first: from one sender, all six are in once it is. */
    cr_assert_eq(kumo_inbox_recv(ib2, is_six, NULL, KT_WAIT_NS, &m), 0);
    kumo_msg_free(m);
    cr_assert_eq(kumo_inbox_count(ib2), 5);
    /* A1 A2 A3 B4 B5: the first even one is A2 (tested: A1, A2) */
    int calls = 0;
    cr_assert_eq(kumo_inbox_recv(ib2, is_even, &calls, 0, &m), 0);
    cr_assert_eq(calls, 2);
    uint64_t v;
    KT_TAKE(m, v);
    cr_assert_eq(v, 2);
    cr_assert_eq(kumo_inbox_expect(ib2, T_B, 0, &m), 0);
    KT_TAKE(m, v);
    cr_assert_eq(v, 4);
    const uint64_t rest[] = {1, 3, 5};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(kumo_inbox_recv(ib2, NULL, NULL, 0, &m), 0);
        KT_TAKE(m, v);
        cr_assert_eq(v, rest[i]);
    }
    cr_assert_eq(kumo_inbox_count(ib2), 0);
    kumo_inbox_free(ib2);
    kumo_inbox_free(ib);
    kt_stop(node);
}

/* A killed inbox: what was queued can still be taken, then waits report
 * -KUMO_ENOPROC; its pid is dead. */
KT_TEST(inbox, killed_inbox_drains_then_enoproc)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_inbox *victim = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    kumo_pid vp = kumo_inbox_pid(victim);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, vp, &ref), 0);
    for (uint64_t v = 0; v < 3; v++)
        kt_send_u64(me, vp, T_A, v);
    cr_assert_eq(kumo_kill(me, vp, "closed"), 0);
    kt_down(ib, vp, KUMO_KILLED, "closed");
    kt_send_u64(me, vp, T_A, 99); /* dead now: dropped */
    kumo_msg *m;
    for (uint64_t v = 0; v < 3; v++) {
        cr_assert_eq(kumo_inbox_recv(victim, NULL, NULL, KT_WAIT_NS, &m), 0);
        uint64_t got;
        KT_TAKE(m, got);
        cr_assert_eq(got, v);
    }
    cr_assert_eq(kumo_inbox_recv(victim, NULL, NULL, KT_WAIT_NS, &m), -KUMO_ENOPROC);
    cr_assert_eq(kumo_inbox_recv(victim, NULL, NULL, 0, &m), -KUMO_ENOPROC);
    cr_assert_eq(kumo_monitor(me, vp, &ref), 0);
    kt_down(ib, vp, KUMO_UNKNOWN_ID, NULL);
    kumo_inbox_free(victim);
    kumo_inbox_free(ib);
    kt_stop(node);
}

/* Killed by a process, while its owner is blocked waiting. */
struct killer {
    kumo_pid target;
};

static void killer_init(kumo_proc *self, void *st)
{
    struct killer *k = st;
    kumo_kill(self, k->target, "from a process");
}

struct waiter {
    kumo_inbox *ib;
    int err;
    int64_t timeout;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    kumo_msg *m = NULL;
    w->err = kumo_inbox_recv(w->ib, NULL, NULL, w->timeout, &m);
    if (w->err == 0)
        kumo_msg_free(m);
    return NULL;
}

KT_TEST(inbox, blocked_waits_end_on_kill_message_and_stop)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);

    /* a message wakes a waiting thread */
    kumo_inbox *a = kt_inbox(env.node);
    struct waiter wa = {.ib = a, .err = 1, .timeout = KUMO_INFINITY};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &wa);
    kt_send_u64(env.me, kumo_inbox_pid(a), T_PING, 1);
    pthread_join(t, NULL);
    cr_assert_eq(wa.err, 0);

    /* a kill from a process wakes it with -KUMO_ENOPROC */
    struct waiter wb = {.ib = a, .err = 1, .timeout = KUMO_INFINITY};
    pthread_create(&t, NULL, wait_thread, &wb);
    struct killer k = {.target = kumo_inbox_pid(a)};
    kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, killer_init, &k);
    pthread_join(t, NULL);
    cr_assert_eq(wb.err, -KUMO_ENOPROC, "%s", kumo_strerror(wb.err));
    kumo_inbox_free(a);

    /* the node stopping wakes it with -KUMO_ESHUTDOWN (or, if the stop
     * comes first, the wait starts with it) */
    kumo_inbox *c = kt_inbox(env.node);
    kt_send_u64(env.me, kumo_inbox_pid(c), T_A, 1); /* left queued: freed with c */
    struct waiter wc = {.ib = env.ib, .err = 1, .timeout = KT_WAIT_NS};
    pthread_create(&t, NULL, wait_thread, &wc);
    kumo_node_stop(env.node);
    pthread_join(t, NULL);
    cr_assert_eq(wc.err, -KUMO_ESHUTDOWN, "%s", kumo_strerror(wc.err));
    kumo_inbox_free(c);
    kt_env_stop(&env);
}

/* Freeing an inbox with messages still queued frees them; its pid dies. */
KT_TEST(inbox, free_with_queued_messages)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_inbox *b = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    kumo_pid bp = kumo_inbox_pid(b);
    kumo_ref ref;
    cr_assert_eq(kumo_monitor(me, bp, &ref), 0);
    for (uint64_t v = 0; v < 100; v++)
        kt_send_u64(me, bp, T_A, v);
    kumo_msg *m;
    cr_assert_eq(kumo_inbox_expect(b, T_A, KT_WAIT_NS, &m), 0);
    kumo_msg_free(m);
    cr_assert_eq(kumo_monitor(kumo_inbox_proc(b), kumo_inbox_pid(ib), &ref), 0);
    kumo_inbox_free(b); /* ends with reason normal */
    kt_down(ib, bp, KUMO_NORMAL, "");
    kumo_inbox_free(ib);
    kt_stop(node);
}
