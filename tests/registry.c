/* The local registry: names, errors, named sends, release at death. */
#include "_kt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint64_t T_PING, T_REP;

static void types_init(void)
{
    T_PING = kt_type("ping");
    T_REP = kt_type("rep");
}

struct seen {
    unsigned n;
    char names[8][64];
    kumo_pid pids[8];
};

static void collect(const char *name, kumo_pid pid, void *arg)
{
    struct seen *s = arg;
    if (s->n < 8) {
        snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
        s->pids[s->n] = pid;
    }
    s->n++;
}

static void count_one(const char *name, kumo_pid pid, void *arg)
{
    (void)name;
    (void)pid;
    ++*(int *)arg;
}

/* kumo_registered's count, checked against its calls. */
static int count_names(kumo_node *node)
{
    int calls = 0;
    int n = kumo_registered(node, count_one, &calls);
    cr_assert_eq(n, calls, "kumo_registered returned %d after %d calls", n, calls);
    return n;
}

static kumo_pid whereis(kumo_node *node, const char *name)
{
    kumo_pid p = {0};
    int err = kumo_whereis(node, name, &p);
    cr_assert_eq(err, 0, "whereis(%s): %s", name, kumo_strerror(err));
    return p;
}

KT_TEST(registry, register_whereis_registered_nsend)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    kumo_pid echo = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)},
                             kt_echo_init, NULL);
    cr_assert_eq(kumo_register(env.node, "echo", echo), 0);
    cr_assert_eq(kumo_register(env.node, "me", kumo_inbox_pid(env.ib)), 0);
    cr_assert(kumo_pid_eq(whereis(env.node, "echo"), echo));
    cr_assert(kumo_pid_eq(whereis(env.node, "me"), kumo_inbox_pid(env.ib)));

    struct seen s = {0};
    cr_assert_eq(kumo_registered(env.node, collect, &s), 2);
    cr_assert_eq(s.n, 2);
    for (unsigned i = 0; i < 2; i++) {
        bool is_echo = !strcmp(s.names[i], "echo");
        cr_assert(is_echo || !strcmp(s.names[i], "me"), "unexpected name %s", s.names[i]);
        cr_assert(kumo_pid_eq(s.pids[i], is_echo ? echo : kumo_inbox_pid(env.ib)));
    }
    cr_assert_str_neq(s.names[0], s.names[1]);

    cr_assert_eq(kumo_nsend(env.me, "echo", T_PING, "hello", 6), 0);
    kumo_msg *m = kt_expect_next(env.ib, T_PING);
    cr_assert_str_eq(kumo_msg_data(m), "hello");
    cr_assert(kumo_pid_eq(kumo_msg_sender(m), echo));
    kumo_msg_free(m);
    /* to itself by name */
    cr_assert_eq(kumo_nsend(env.me, "me", T_REP, "x", 2), 0);
    kumo_msg_free(kt_expect_next(env.ib, T_REP));

    cr_assert_eq(kumo_unregister(env.node, "echo"), 0);
    kumo_pid p;
    cr_assert_eq(kumo_whereis(env.node, "echo", &p), -KUMO_ENONAME);
    cr_assert_eq(kumo_nsend(env.me, "echo", T_PING, NULL, 0), 0); /* dropped */
    kumo_send(env.me, echo, T_REP, NULL, 0);
    kumo_msg_free(kt_expect_next(env.ib, T_REP)); /* the marker: no PING came back */
    s = (struct seen){0};
    cr_assert_eq(kumo_registered(env.node, collect, &s), 1);
    cr_assert_str_eq(s.names[0], "me");
    kumo_send(env.me, echo, kt_type_stop(), NULL, 0);
    kt_env_stop(&env);
}

KT_TEST(registry, errors)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    kumo_ref ref;
    kumo_pid a = kt_spawn(env.node, env.ib,
                          &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref},
                          kt_echo_init, NULL);
    kumo_pid b = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = 0}, kt_echo_init, NULL);

    cr_assert_eq(kumo_register(env.node, "a", a), 0);
    cr_assert_eq(kumo_register(env.node, "a", b), -KUMO_ENAMETAKEN);
    cr_assert_eq(kumo_register(env.node, "a", a), -KUMO_ENAMETAKEN);
    cr_assert(kumo_pid_eq(whereis(env.node, "a"), a));

    char longest[KUMO_NAME_MAX + 2];
    memset(longest, 'n', sizeof longest);
    longest[KUMO_NAME_MAX + 1] = 0; /* 256 characters */
    cr_assert_eq(kumo_register(env.node, longest, b), -EINVAL);
    cr_assert_eq(kumo_register(env.node, "", b), -EINVAL);
    longest[KUMO_NAME_MAX] = 0; /* 255: fine */
    cr_assert_eq(kumo_register(env.node, longest, b), 0);
    cr_assert(kumo_pid_eq(whereis(env.node, longest), b));
    cr_assert_eq(kumo_unregister(env.node, longest), 0);

    cr_assert_eq(kumo_unregister(env.node, "free"), -KUMO_ENONAME);
    cr_assert_eq(kumo_unregister(env.node, ""), -KUMO_ENONAME);
    kumo_pid p;
    cr_assert_eq(kumo_whereis(env.node, "free", &p), -KUMO_ENONAME);
    cr_assert_eq(kumo_whereis(env.node, "", &p), -KUMO_ENONAME);

    /* Pids that are not alive here. */
    cr_assert_eq(kumo_register(env.node, "forged", kt_forge_pid(b)), -KUMO_ENOPROC);
    kumo_pid remote = b;
    remote.node ^= 2;
    cr_assert_eq(kumo_register(env.node, "remote", remote), -KUMO_ENOPROC);
    cr_assert_eq(kumo_register(env.node, "null", (kumo_pid){0}), -KUMO_ENOPROC);
    kumo_kill(env.me, a, NULL);
    kt_down(env.ib, a, KUMO_KILLED, "");
    cr_assert_eq(kumo_register(env.node, "dead", a), -KUMO_ENOPROC);
    struct seen s = {0};
    cr_assert_eq(kumo_registered(env.node, collect, &s), 0, "names left: %s", s.names[0]);

    kumo_send(env.me, b, kt_type_stop(), NULL, 0);
    kt_env_stop(&env);
}

/* A process that registers itself and waits. */
struct named {
    kumo_pid ib;
    const char *name;
    bool die_normally;
};

static void named_msg(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)self;
    (void)st;
    (void)m; /* any message: return, normal exit */
}

static void named_init(kumo_proc *self, void *st)
{
    struct named *n = st;
    int err = kumo_register(kumo_self_node(self), n->name, kumo_self(self));
    kumo_send(self, n->ib, T_REP, &(int64_t){err}, sizeof(int64_t));
    kumo_expect(self, T_PING, named_msg);
}

KT_TEST(registry, name_released_when_process_ends)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    for (int how = 0; how < 2; how++) { /* killed, then normal exit */
        struct named n = {.ib = kumo_inbox_pid(env.ib), .name = "svc"};
        kumo_ref ref;
        kumo_pid p = kt_spawn(env.node, env.ib,
                              &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards), .monitor = &ref},
                              named_init, &n);
        int64_t err;
        KT_TAKE(kt_expect(env.ib, T_REP), err);
        cr_assert_eq(err, 0, "register from the process itself: %s", kumo_strerror((int)err));
        cr_assert(kumo_pid_eq(whereis(env.node, "svc"), p));
        if (how == 0) {
            kumo_kill(env.me, p, NULL);
            kt_down(env.ib, p, KUMO_KILLED, "");
        } else {
            kumo_send(env.me, p, T_PING, NULL, 0);
            kt_down(env.ib, p, KUMO_NORMAL, "");
        }
        /* Released before the DOWN was sent. */
        kumo_pid q;
        cr_assert_eq(kumo_whereis(env.node, "svc", &q), -KUMO_ENONAME, "name still maps to %s",
                     kt_pid(q));
        cr_assert_eq(kumo_nsend(env.me, "svc", T_PING, NULL, 0), 0);
    }
    kt_env_stop(&env);
}

/* Many names on many processes: the table grows, and every name goes when
 * its process does. */
KT_TEST(registry, many_names_all_released)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    enum { N = 1000 };
    static kumo_pid pids[N];
    char name[32];
    for (unsigned i = 0; i < N; i++) {
        kumo_ref ref;
        pids[i] =
            kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .monitor = &ref},
                     kt_echo_init, NULL);
        snprintf(name, sizeof name, "proc-%u", i);
        cr_assert_eq(kumo_register(env.node, name, pids[i]), 0);
    }
    cr_assert_eq(count_names(env.node), N);
    for (unsigned i = 0; i < N; i++) {
        snprintf(name, sizeof name, "proc-%u", i);
        cr_assert(kumo_pid_eq(whereis(env.node, name), pids[i]), "%s", name);
    }
    for (unsigned i = 0; i < N; i++)
        kumo_kill(env.me, pids[i], NULL);
    for (unsigned i = 0; i < N; i++)
        kt_down(env.ib, pids[i], KUMO_KILLED, "");
    cr_assert_eq(count_names(env.node), 0);
    kt_env_stop(&env);
}

/* The callback of kumo_registered may use the registry. */
static void unregister_each(const char *name, kumo_pid pid, void *arg)
{
    (void)pid;
    kumo_unregister(arg, name);
}

KT_TEST(registry, registered_callback_may_use_registry)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    char name[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "n%d", i);
        cr_assert_eq(kumo_register(env.node, name, kumo_inbox_pid(env.ib)), 0);
    }
    cr_assert_eq(kumo_registered(env.node, unregister_each, env.node), 10);
    cr_assert_eq(count_names(env.node), 0);
    kt_env_stop(&env);
}

/* An inbox's names go when it is freed. */
KT_TEST(registry, inbox_name_released_on_free)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_inbox *ib2 = kt_inbox(node);
    cr_assert_eq(kumo_register(node, "box", kumo_inbox_pid(ib2)), 0);
    kumo_inbox_free(ib2);
    kumo_pid p;
    cr_assert_eq(kumo_whereis(node, "box", &p), -KUMO_ENONAME);
    cr_assert_eq(kumo_register(node, "box", kumo_inbox_pid(ib)), 0);
    kumo_inbox_free(ib);
    cr_assert_eq(kumo_whereis(node, "box", &p), -KUMO_ENONAME);
    kt_stop(node);
}
