/*
 * shm-only tests: a peer in another process (forked before this process
 * starts its engine, so it owns a clean runtime), killed with SIGKILL ->
 * ConnectionLost; raw peers with bad handshakes (no descriptors, unsealed
 * or wrongly sized memory) and a hostile ring index -> that link closes and
 * the endpoint keeps serving others.
 */
#include "_tt.h"

#include "transport/shm/ring.h"
#include "transport/stream/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHM_TIMEOUT 120

/* ------------------------------------------------------------------ */
/* A peer process: an echo endpoint on its own engine                  */
/* ------------------------------------------------------------------ */

static void ph_deliver(void *ctx, struct kumo__shard *sh, struct kumo__item *it) {}
static unsigned ph_run(void *ctx, struct kumo__shard *sh)
{
    return 0;
}
static void ph_timer(void *ctx, struct kumo__shard *sh, struct kumo__timer *t) {}
static void ph_shutdown(void *ctx, struct kumo__shard *sh) {}
static void ph_discard(void *ctx, struct kumo__item *it) {}

struct child_echo {
    kumo_conn back;
    bool ready;
};

static void child_connected(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    struct child_echo *e = arg;
    if (err)
        _exit(20);
    e->back = c;
    e->ready = true;
}

static void child_event(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    struct child_echo *e = arg;
    if (ev->kind == KUMO_EV_CONNECTION_OPENED && !e->ready)
        kumo_connect(ep, ev->address, KUMO_RELIABLE_ORDERED, NULL, child_connected, e);
    else if (ev->kind == KUMO_EV_RECEIVED && e->ready)
        kumo_conn_send(e->back, ev->iov, ev->iovcnt, NULL, NULL);
    else if (ev->kind == KUMO_EV_RECEIVED)
        _exit(21); /* the parent waits for the reply connection first */
}

/* Runs in the child: never returns. */
static void child_main(int wfd)
{
    kumo_log_set_level(KUMO_LOG_ERROR);
    struct kumo__engine_config cfg = {.shards = 1, .no_pin = true, .spin_ns = 20000};
    struct kumo__engine_hooks hooks = {.deliver = ph_deliver,
                                       .run = ph_run,
                                       .timer = ph_timer,
                                       .shutdown = ph_shutdown,
                                       .discard = ph_discard};
    struct kumo__engine *eng;
    if (kumo__engine_create(&cfg, &hooks, &eng) || kumo__engine_start(eng))
        _exit(10);
    kumo_transport *t;
    if (kumo__transport_new(eng, "shm", NULL, &t))
        _exit(11);
    static struct child_echo e;
    kumo_endpoint *ep;
    if (kumo_endpoint_new(t, 0, child_event, &e, &ep))
        _exit(12);
    const kumo_address *a = kumo_endpoint_address(ep);
    if (write(wfd, a, sizeof *a) != (ssize_t)sizeof *a)
        _exit(13);
    for (;;)
        pause();
}

/* Forks the echo peer (before the parent starts anything) and returns
 * its address. */
static pid_t fork_peer(kumo_address *addr)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    setenv("KUMO_COOKIE", TT_COOKIE, 1); /* the child's transport shares ours */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Die with the test process, even if it fails before its kill. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        child_main(p[1]);
    }
    close(p[1]);
    ssize_t r = read(p[0], addr, sizeof *addr);
    close(p[0]);
    if (r != (ssize_t)sizeof *addr) {
        int st = 0;
        waitpid(pid, &st, 0);
        cr_assert_fail("peer process failed to start (exit %d)",
                       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    return pid;
}

Test(shm, cross_process_pingpong_then_sigkill, .timeout = SHM_TIMEOUT)
{
    kumo_address peer;
    pid_t pid = fork_peer(&peer);
    struct kumo__engine *eng = tt_start(2);
    kumo_transport *t = tt_transport(eng, "shm");
    tt_ep *me = tt_ep_new(t, 0, "parent");
    kumo_conn c = tt_connect(me, &peer);
    tt_ev o = tt_expect(me, KUMO_EV_CONNECTION_OPENED); /* the peer's reply connection */
    cr_assert(kumo_address_eq(&o.addr, &peer));
    uint8_t buf[256];
    for (uint64_t i = 0; i < 2000; i++) {
        size_t len = 8 + i % 200;
        memset(buf, (int)i, len);
        memcpy(buf, &i, 8);
        tt_send(c, buf, len);
        tt_ev r = tt_recv(me);
        cr_assert_eq(r.len, len);
        cr_assert_eq(memcmp(r.data, buf, len), 0, "echo %" PRIu64 " differs", i);
        tt_ev_free(&r);
    }
    /* A 4 MiB message goes through the 1 MiB rings in pieces. */
    size_t big = 4u << 20;
    uint8_t *p = malloc(big);
    for (size_t i = 0; i < big; i++)
        p[i] = (uint8_t)(i * 7);
    tt_send(c, p, big);
    tt_ev r = tt_recv(me);
    cr_assert_eq(r.len, big);
    cr_assert_eq(memcmp(r.data, p, big), 0);
    tt_ev_free(&r);
    free(p);

    uint64_t t0 = tt_now_ns();
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st), "peer exited by itself (status %d)",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    tt_ev l = tt_expect_error(me, KUMO_ERR_CONNECTION_LOST);
    uint64_t took = tt_now_ns() - t0;
    cr_assert(kumo_address_eq(&l.addr, &peer));
    cr_assert_lt(took, 1000 * TT_MS, "lost after %" PRIu64 " ms", took / TT_MS);
    int err = kumo_conn_send(c, &(struct iovec){"x", 1}, 1, NULL, NULL);
    cr_assert_eq(err, -KUMO_ECONNLOST, "send to a dead process: %s", kumo_transport_strerror(err));
    kumo_transport_free(t);
    tt_ep_check(me);
    tt_ep_free(me);
    tt_stop(eng);
}

/* ------------------------------------------------------------------ */
/* Raw peers                                                           */
/* ------------------------------------------------------------------ */

static int raw_unix(const kumo_address *to)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int n = snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1, "kumo-shm/%u/%016llx",
                     kumo__get32(to->bytes + 2), (unsigned long long)kumo__get64(to->bytes + 6));
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sun, len), 0, "connect: %s", strerror(errno));
    struct timeval tv = {.tv_sec = TT_WAIT_NS / 1000000000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static kumo_address fake_shm_addr(uint64_t inc)
{
    kumo_address a = {.len = 14};
    a.bytes[0] = KUMO__ADDR_VERSION;
    a.bytes[1] = 's';
    /* Our own pid (an acceptor checks it against the socket's peer), with
     * an incarnation no endpoint has: nothing listens at this address. */
    kumo__put32(a.bytes + 2, (uint32_t)getpid());
    kumo__put64(a.bytes + 6, inc);
    return a;
}

/* Sends HELLO with `nfds` descriptors (the handshake's state goes to *hs). */
static void raw_hello(int fd, tt_hs *hs, const kumo_address *from, const kumo_address *to,
                      const int *fds, int nfds)
{
    uint8_t buf[512];
    size_t len = tt_hs_hello(hs, from, to, buf);
    struct iovec iov = {buf, len};
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * 2)];
    } cm;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        m.msg_control = cm.b;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    cr_assert_eq(sendmsg(fd, &m, MSG_NOSIGNAL), (ssize_t)len, "sendmsg: %s", strerror(errno));
}

/* Reads an OK ACK (its payload to ack[]); returns its status and the
 * descriptor that came with it (-1 if none). */
static int raw_ack(int fd, int *efd, uint8_t ack[KUMO__TCP_ACK_OK])
{
    uint8_t b[KUMO__TCP_HDR + KUMO__TCP_ACK_OK];
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * 2)];
    } cm;
    struct iovec iov = {b, sizeof b};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof cm.b};
    ssize_t r;
    do
        r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    while (r < 0 && errno == EINTR);
    cr_assert_eq(r, (ssize_t)sizeof b, "ack: %zd (%s)", r, r < 0 ? strerror(errno) : "short");
    *efd = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c && c->cmsg_type == SCM_RIGHTS)
        memcpy(efd, CMSG_DATA(c), sizeof(int));
    memcpy(ack, b + KUMO__TCP_HDR, KUMO__TCP_ACK_OK);
    return b[KUMO__TCP_HDR];
}

static void expect_closed(int fd)
{
    uint8_t b[64];
    for (;;) {
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return;
        if (r < 0 && errno == EINTR)
            continue;
        cr_assert_gt(r, 0, "waiting for the link to close: %s", strerror(errno));
    }
}

/* Raw rings as a connector would make them. */
static int make_memfd(uint64_t size, bool seal, void **map)
{
    size_t len = kumo__shm_map_len(size);
    int mfd = memfd_create("raw", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    cr_assert_geq(mfd, 0);
    cr_assert_eq(ftruncate(mfd, (off_t)len), 0);
    if (seal)
        cr_assert_eq(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
    *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    cr_assert_neq(*map, MAP_FAILED);
    for (int i = 0; i < 2; i++) {
        struct kumo__shm_ring_hdr *h = (void *)((uint8_t *)*map + (size_t)i * KUMO__SHM_HDR_STRIDE);
        h->size = size;
        h->magic = KUMO__SHM_MAGIC;
        h->version = KUMO__TCP_VERSION;
    }
    return mfd;
}

static tt_pair setup(void)
{
    struct kumo__engine *eng = tt_start(2);
    return tt_pair_new(eng, tt_transport(eng, "shm"));
}

static void still_serves(tt_pair *s)
{
    for (int i = 0; i < 10; i++) {
        tt_send(s->c, "fine", 4);
        tt_ev r = tt_recv(s->srv);
        cr_assert_eq(r.len, 4u);
        tt_ev_free(&r);
    }
}

Test(shm, a_hello_claiming_another_process_is_refused, .timeout = SHM_TIMEOUT)
{
    /* The claimed pid must be the socket peer's (SO_PEERCRED): with the
     * cookie, a process could otherwise take another's address over. */
    tt_pair s = setup();
    kumo_address me = fake_shm_addr(2);
    kumo__put32(me.bytes + 2, 1); /* pid 1, not us */
    void *map;
    int mfd = make_memfd(4096, true, &map);
    int efd = eventfd(0, EFD_CLOEXEC);
    tt_hs hs;
    int fd = raw_unix(&s.srv->addr);
    raw_hello(fd, &hs, &me, &s.srv->addr, (int[]){mfd, efd}, 2);
    expect_closed(fd);
    close(fd);
    close(mfd);
    close(efd);
    munmap(map, kumo__shm_map_len(4096));
    tt_pair_finish(&s);
    cr_assert(tt_logged("does not come from"), "log:\n%s", tt_log_text());
}

Test(shm, bad_handshakes_close_that_link, .timeout = SHM_TIMEOUT)
{
    tt_pair s = setup();
    kumo_address me = fake_shm_addr(1);
    tt_hs hs;
    /* No descriptors at all. */
    int fd = raw_unix(&s.srv->addr);
    raw_hello(fd, &hs, &me, &s.srv->addr, NULL, 0);
    expect_closed(fd);
    close(fd);
    /* Memory that could shrink under the mapping. */
    void *map;
    int mfd = make_memfd(4096, false, &map);
    int efd = eventfd(0, EFD_CLOEXEC);
    fd = raw_unix(&s.srv->addr);
    raw_hello(fd, &hs, &me, &s.srv->addr, (int[]){mfd, efd}, 2);
    expect_closed(fd);
    close(fd);
    close(mfd);
    munmap(map, kumo__shm_map_len(4096));
    /* A ring header that does not match the memory's size. */
    mfd = make_memfd(4096, true, &map);
    ((struct kumo__shm_ring_hdr *)map)->size = 8192;
    fd = raw_unix(&s.srv->addr);
    raw_hello(fd, &hs, &me, &s.srv->addr, (int[]){mfd, efd}, 2);
    expect_closed(fd);
    close(fd);
    close(mfd);
    close(efd);
    munmap(map, kumo__shm_map_len(4096));
    tt_expect_empty(s.srv);
    still_serves(&s);
    tt_pair_finish(&s);
    cr_assert(tt_logged("without its shared memory"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("not sealed"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("bad ring header"), "log:\n%s", tt_log_text());
}

/* Raw connector with rings: one OPEN done.  Then `variant` misbehaves. */
static void hostile_variant(tt_pair *s, int variant)
{
    kumo_address me = fake_shm_addr(0x100u + (unsigned)variant);
    void *map;
    uint64_t size = 4096;
    int mfd = make_memfd(size, true, &map);
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int fd = raw_unix(&s->srv->addr);
    tt_hs hs;
    raw_hello(fd, &hs, &me, &s->srv->addr, (int[]){mfd, efd}, 2);
    int peer_efd;
    uint8_t ack[KUMO__TCP_ACK_OK];
    cr_assert_eq(raw_ack(fd, &peer_efd, ack), KUMO__ACK_OK);
    cr_assert_geq(peer_efd, 0, "the ACK carries the acceptor's eventfd");
    /* AUTH, then OPEN connection 1, through ring 0; publish, wake the
     * server. */
    struct kumo__shm_ring r;
    kumo__shm_ring_view(&r, map, size, 0);
    uint8_t frame[128];
    size_t alen;
    cr_assert(tt_hs_auth(&hs, TT_COOKIE, ack, sizeof ack, frame, &alen), "the acceptor's MAC");
    unsigned h = (unsigned)alen;
    h += kumo__tcp_hdr_encode(frame + h, KUMO__T_OPEN, 0, 1, 1, 0);
    frame[h++] = 0;
    unsigned i = 0;
    size_t off = 0;
    size_t n = kumo__shm_put(&r, &(struct iovec){frame, h}, 1, &i, &off, size);
    cr_assert_eq(n, h);
    kumo__shm_publish(&r, n);
    uint64_t one = 1;
    cr_assert_eq(write(peer_efd, &one, 8), 8);
    tt_ev o = tt_expect(s->srv, KUMO_EV_CONNECTION_OPENED);
    cr_assert(kumo_address_eq(&o.addr, &me));
    if (variant == 0) {
        /* Claim far more bytes than the ring holds. */
        atomic_store(&r.h->tail, (uint64_t)1 << 40);
    } else {
        if (variant == 1) { /* garbage: a frame of version 9 */
            h = kumo__tcp_hdr_encode(frame, KUMO__T_DATA, 0, 1, 3, 0);
            frame[4] = 9;
            memcpy(frame + h, "bad", 3);
            h += 3;
        } else { /* an absurd length */
            h = kumo__tcp_hdr_encode(frame, KUMO__T_DATA, 0, 1, 0xfffffff0u, 0);
        }
        i = 0;
        off = 0;
        n = kumo__shm_put(&r, &(struct iovec){frame, h}, 1, &i, &off, size);
        kumo__shm_publish(&r, n);
    }
    cr_assert_eq(write(peer_efd, &one, 8), 8);
    tt_ev l = tt_expect_error(s->srv, KUMO_ERR_CONNECTION_LOST);
    cr_assert(kumo_address_eq(&l.addr, &me));
    expect_closed(fd);
    close(fd);
    close(mfd);
    close(efd);
    close(peer_efd);
    munmap(map, kumo__shm_map_len(size));
}

Test(shm, hostile_ring_contents_close_that_link, .timeout = SHM_TIMEOUT)
{
    tt_pair s = setup();
    for (int v = 0; v < 3; v++)
        hostile_variant(&s, v);
    still_serves(&s);
    tt_pair_finish(&s);
    cr_assert(tt_logged("write index is impossible"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("unknown frame version"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("over the maximum frame size"), "log:\n%s", tt_log_text());
}

/* Checks sequence numbers on the receiving shard (no recording). */
struct seqc {
    uint64_t next;
};

/* Message v's size: mostly small ones (framed straight into the ring),
 * and every 97th larger than a 4 KiB ring (queued, sent in pieces). */
static size_t seq_len(uint64_t v)
{
    return v % 97 == 0 ? 5000 + v % 3000 : 8 + v % 300;
}

static void free_release(void *arg)
{
    free(arg);
}

static bool seq_hook(tt_ep *e, const kumo_event *ev)
{
    struct seqc *s = e->user;
    if (ev->kind != KUMO_EV_RECEIVED)
        return ev->kind != KUMO_EV_CONNECTION_OPENED;
    uint8_t b[8] = {0};
    size_t off = 0;
    for (int i = 0; i < ev->iovcnt && off < 8; i++) {
        size_t k = ev->iov[i].iov_len < 8 - off ? ev->iov[i].iov_len : 8 - off;
        memcpy(b + off, ev->iov[i].iov_base, k);
        off += k;
    }
    uint64_t v;
    memcpy(&v, b, 8);
    if (v != s->next || ev->len != seq_len(v))
        tt_ep_failf(e, "message %" PRIu64 " (%zu bytes) where %" PRIu64 " was due", v, ev->len,
                    s->next);
    const struct iovec *last = &ev->iov[ev->iovcnt - 1];
    if (last->iov_len && ((const uint8_t *)last->iov_base)[last->iov_len - 1] != (uint8_t)v &&
        ev->len > 8)
        tt_ep_failf(e, "message %" PRIu64 " ends with the wrong byte", v);
    s->next++;
    return false;
}

struct burst {
    kumo_conn c;
    uint64_t from, n;
    int err;
};

static void burst_run(void *arg)
{
    struct burst *b = arg;
    uint8_t buf[8192];
    for (uint64_t i = 0; i < b->n && !b->err; i++) {
        uint64_t v = b->from + i;
        size_t len = seq_len(v);
        /* every 89th is lent rather than copied */
        uint8_t *p = v % 89 == 0 ? malloc(len) : buf;
        if (!p) {
            b->err = -ENOMEM;
            break;
        }
        memcpy(p, &v, 8);
        memset(p + 8, (int)v, len - 8);
        b->err = kumo_conn_send(b->c, &(struct iovec){p, len}, 1, p != buf ? free_release : NULL,
                                p != buf ? p : NULL);
        if (b->err && p != buf)
            free(p);
    }
}

Test(shm, small_ring_wraps_in_order_with_mixed_sizes, .timeout = SHM_TIMEOUT)
{
    struct kumo__engine *eng = tt_start(2);
    kumo_shm_config cfg = {.ring_bytes = 4096};
    kumo_transport *t = tt_transport_cfg(eng, "shm", &cfg);
    static struct seqc sc;
    sc.next = 0;
    tt_ep *rx = tt_ep_new_hook(t, 1, "receiver", seq_hook, &sc);
    tt_ep *tx = tt_ep_new(t, 0, "sender");
    kumo_conn c = tt_connect(tx, &rx->addr);
    enum { TOTAL = 200000, BATCH = 10000 };
    for (uint64_t sent = 0; sent < TOTAL; sent += BATCH) {
        if (sent >= BATCH)
            tt_wait_counter(rx, &rx->received, sent - BATCH, "received");
        struct burst b = {.c = c, .from = sent, .n = BATCH};
        tt_on_shard(eng, 0, burst_run, &b);
        cr_assert_eq(b.err, 0, "send: %s", kumo_transport_strerror(b.err));
    }
    tt_wait_counter(rx, &rx->received, TOTAL, "received");
    kumo_transport_free(t);
    tt_ep_check(rx);
    tt_ep_free(rx);
    tt_ep_free(tx);
    tt_stop(eng);
}

Test(shm, idle_link_outlives_the_connect_timeout, .timeout = SHM_TIMEOUT)
{
    /* Regression: the connect's deadline timer fired on the up link and
     * ran a heartbeat check the rings never feed, killing it. */
    struct kumo__engine *eng = tt_start(2);
    kumo_shm_config cfg = {.connect_timeout_ns = 100 * TT_MS};
    kumo_transport *t = tt_transport_cfg(eng, "shm", &cfg);
    tt_ep *a = tt_ep_new(t, 0, "a");
    tt_ep *b = tt_ep_new(t, 1, "b");
    kumo_conn ab = tt_connect(a, &b->addr);
    tt_expect(b, KUMO_EV_CONNECTION_OPENED);
    /* The clock: a listener that never answers, and a connect to it with
     * a timeout past the 5 s that killed the link (the tcp heartbeat
     * timeout the shm transport keeps for closing). */
    /* Abstract socket names are global to the network namespace: make it
     * unique to this test process so concurrent runs cannot collide. */
    uint64_t inc = ((uint64_t)getpid() << 16) | 0x77;
    kumo_address mute = fake_shm_addr(inc);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int n = snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1, "kumo-shm/%u/%016llx",
                     (unsigned)getpid(), (unsigned long long)inc);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sun, len), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(lfd, 4), 0);
    kumo_hints h = {.connect_timeout_ns = 5600 * TT_MS};
    kumo_conn none;
    int err = tt_connect_hints(a, &mute, &h, &none);
    cr_assert_eq(err, -KUMO_ETIMEOUT, "mute connect: %s", kumo_transport_strerror(err));
    close(lfd);
    /* Long after its 100 ms connect timeout, the idle link still works. */
    tt_send(ab, "late", 4);
    tt_ev r = tt_recv(b);
    cr_assert_eq(r.len, 4u);
    tt_ev_free(&r);
    tt_expect_empty(a);
    kumo_transport_free(t);
    tt_ep_check(a);
    tt_ep_check(b);
    tt_ep_free(a);
    tt_ep_free(b);
    tt_stop(eng);
}
