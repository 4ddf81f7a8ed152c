/*
 * Link authentication on the stream transports (tcp, shm): both ends of a
 * link prove they know the same cookie (HMAC-SHA256 over fresh nonces,
 * transport/stream/auth.h) before anything else crosses it.  A connect to
 * a peer with another cookie fails with -KUMO_EAUTH, the peer sees no
 * event, and both go on serving everyone else.  Without a configured
 * cookie, KUMO_COOKIE or ~/.kumo.cookie (created owner-only) supplies it.
 *
 * Raw peers that skip or fake the handshake are in transport_tcp.c and
 * transport_shm.c with the other hostile peers.
 */
#include "_tt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUTH_TIMEOUT 30

static kumo_transport *with_cookie(struct kumo__engine *eng, const char *name, const char *cookie)
{
    if (strcmp(name, "tcp") == 0) {
        static kumo_tcp_config tc[4];
        static unsigned k;
        kumo_tcp_config *c = &tc[k++ % 4];
        *c = (kumo_tcp_config){.bind_host = "127.0.0.1", .cookie = cookie};
        return tt_transport_cfg(eng, name, c);
    }
    static kumo_shm_config sc[4];
    static unsigned k;
    kumo_shm_config *c = &sc[k++ % 4];
    *c = (kumo_shm_config){.cookie = cookie};
    return tt_transport_cfg(eng, name, c);
}

/* "alpha" and "beta" endpoints: every connect between them fails with
 * -KUMO_EAUTH, in both directions, and leaves no trace on the other side;
 * a second "beta" endpoint reaches the first as usual. */
static void different_cookies(const char *name)
{
    struct kumo__engine *eng = tt_start(2);
    tt_log_capture();
    kumo_transport *ta = with_cookie(eng, name, "alpha");
    kumo_transport *tb = with_cookie(eng, name, "beta");
    kumo_transport *tb2 = with_cookie(eng, name, "beta");
    tt_ep *a = tt_ep_new(ta, 0, "alpha");
    tt_ep *b = tt_ep_new(tb, 1, "beta");
    tt_ep *b2 = tt_ep_new(tb2, 0, "beta-2");
    kumo_conn c = {0};
    for (int round = 0; round < 3; round++) {
        int err = tt_connect_err(a, &b->addr, &c);
        cr_assert_eq(err, -KUMO_EAUTH, "alpha -> beta, round %d: %s", round,
                     kumo_transport_strerror(err));
        err = tt_connect_err(b, &a->addr, &c);
        cr_assert_eq(err, -KUMO_EAUTH, "beta -> alpha, round %d: %s", round,
                     kumo_transport_strerror(err));
    }
    cr_assert(tt_logged("its cookie differs from ours"), "log:\n%s", tt_log_text());
    cr_assert_str_eq(kumo_transport_strerror(-KUMO_EAUTH),
                     "authentication failed: the peer's cookie differs");
    /* The same cookie still gets through, to both. */
    kumo_conn ok = tt_connect(b2, &b->addr);
    tt_ev o = tt_expect(b, KUMO_EV_CONNECTION_OPENED);
    cr_assert(kumo_address_eq(&o.addr, &b2->addr));
    tt_send(ok, "hello", 5);
    tt_ev r = tt_recv(b);
    cr_assert_eq(r.len, 5u);
    cr_assert_arr_eq(r.data, "hello", 5);
    tt_ev_free(&r);
    /* Neither side of the refused links saw anything. */
    tt_expect_empty(a);
    tt_expect_empty(b);
    kumo_transport_free(ta);
    kumo_transport_free(tb);
    kumo_transport_free(tb2);
    tt_ep_check(a);
    tt_ep_check(b);
    tt_ep_check(b2);
    tt_ep_free(a);
    tt_ep_free(b);
    tt_ep_free(b2);
    kumo_log_set_sink(NULL, NULL);
    tt_stop(eng);
}

Test(auth, tcp_different_cookies_refuse_the_link, .timeout = AUTH_TIMEOUT)
{
    different_cookies("tcp");
}

Test(auth, shm_different_cookies_refuse_the_link, .timeout = AUTH_TIMEOUT)
{
    different_cookies("shm");
}

Test(auth, bad_cookies_are_refused_at_creation, .timeout = AUTH_TIMEOUT)
{
    struct kumo__engine *eng = tt_start(1);
    tt_log_capture();
    kumo_transport *t = NULL;
    char big[1100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    kumo_tcp_config tc = {.cookie = ""};
    cr_assert_eq(kumo__transport_new(eng, "tcp", &tc, &t), -EINVAL, "empty cookie");
    tc.cookie = big;
    cr_assert_eq(kumo__transport_new(eng, "tcp", &tc, &t), -EINVAL, "cookie over 1024 bytes");
    kumo_shm_config sc = {.cookie = ""};
    cr_assert_eq(kumo__transport_new(eng, "shm", &sc, &t), -EINVAL, "empty shm cookie");
    cr_assert(tt_logged("a cookie must be 1 to 1024 bytes"), "log:\n%s", tt_log_text());
    kumo_log_set_sink(NULL, NULL);
    tt_stop(eng);
}

/* A fresh $HOME; called before tt_start, because glibc keeps what setenv
 * allocates and the leak check would count it. */
static char *temp_home(void)
{
    static char dir[64];
    strcpy(dir, "/tmp/kumo-auth-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    setenv("HOME", dir, 1);
    return dir;
}

static void remove_home(const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/.kumo.cookie", dir);
    unlink(path);
    cr_assert_eq(rmdir(dir), 0, "%s: %s", dir, strerror(errno));
}

Test(auth, cookie_file_is_made_owner_only_and_shared, .timeout = AUTH_TIMEOUT)
{
    const char *home = temp_home();
    struct kumo__engine *eng = tt_start(2);
    unsetenv("KUMO_COOKIE");
    char path[128];
    snprintf(path, sizeof path, "%s/.kumo.cookie", home);
    kumo_transport *t1 = tt_transport(eng, "tcp");
    /* Made on first use: 20 capital letters, readable by its owner only. */
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s was not created", path);
    cr_assert_eq(st.st_mode & 0777, 0400, "mode %o", st.st_mode & 0777);
    char cookie[64] = {0};
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(read(fd, cookie, sizeof cookie - 1), 20);
    close(fd);
    for (int i = 0; i < 20; i++)
        cr_assert(cookie[i] >= 'A' && cookie[i] <= 'Z', "cookie %s", cookie);
    /* A second transport reads the same file: they connect. */
    kumo_transport *t2 = tt_transport(eng, "tcp");
    tt_ep *a = tt_ep_new(t1, 0, "first");
    tt_ep *b = tt_ep_new(t2, 1, "second");
    kumo_conn c = tt_connect(a, &b->addr);
    tt_expect(b, KUMO_EV_CONNECTION_OPENED);
    tt_send(c, "x", 1);
    tt_ev r = tt_recv(b);
    tt_ev_free(&r);
    /* And one configured with the file's contents is the same node family. */
    kumo_tcp_config same = {.cookie = cookie};
    kumo_transport *t3 = tt_transport_cfg(eng, "tcp", &same);
    tt_ep *d = tt_ep_new(t3, 0, "explicit");
    kumo_conn c3 = tt_connect(d, &b->addr);
    (void)c3;
    kumo_transport_free(t1);
    kumo_transport_free(t2);
    kumo_transport_free(t3);
    tt_ep_free(a);
    tt_ep_free(b);
    tt_ep_free(d);
    /* A file others may read is refused, with a reason. */
    tt_log_capture();
    cr_assert_eq(chmod(path, 0644), 0);
    kumo_transport *t = NULL;
    kumo_tcp_config dflt = {0};
    cr_assert_eq(kumo__transport_new(eng, "tcp", &dflt, &t), -EACCES);
    cr_assert(tt_logged("owner only"), "log:\n%s", tt_log_text());
    /* An empty one too. */
    cr_assert_eq(chmod(path, 0600), 0);
    cr_assert_eq(truncate(path, 0), 0);
    cr_assert_eq(kumo__transport_new(eng, "tcp", &dflt, &t), -EINVAL);
    cr_assert(tt_logged("is empty"), "log:\n%s", tt_log_text());
    kumo_log_set_sink(NULL, NULL);
    remove_home(home);
    tt_stop(eng);
}

Test(auth, environment_cookie_wins_over_the_file, .timeout = AUTH_TIMEOUT)
{
    const char *home = temp_home();
    setenv("KUMO_COOKIE", "from-the-environment", 1); /* (tt_start keeps it) */
    struct kumo__engine *eng = tt_start(2);
    unsetenv("KUMO_COOKIE");
    kumo_transport *from_file = tt_transport(eng, "shm"); /* makes the file */
    /* (glibc reuses the string it made above: no allocation) */
    setenv("KUMO_COOKIE", "from-the-environment", 1);
    kumo_transport *from_env = tt_transport(eng, "shm");
    kumo_shm_config same = {.cookie = "from-the-environment"};
    kumo_transport *explicit = tt_transport_cfg(eng, "shm", &same);
    tt_ep *f = tt_ep_new(from_file, 0, "file");
    tt_ep *e = tt_ep_new(from_env, 1, "env");
    tt_ep *x = tt_ep_new(explicit, 0, "explicit");
    kumo_conn c;
    cr_assert_eq(tt_connect_err(f, &e->addr, &c), -KUMO_EAUTH);
    c = tt_connect(x, &e->addr);
    tt_expect(e, KUMO_EV_CONNECTION_OPENED);
    kumo_transport_free(from_file);
    kumo_transport_free(from_env);
    kumo_transport_free(explicit);
    tt_ep_free(f);
    tt_ep_free(e);
    tt_ep_free(x);
    remove_home(home);
    tt_stop(eng);
}
