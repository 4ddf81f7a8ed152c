/*
 * tcp-only tests: the frame decoder, raw peers sending garbage, truncated
 * frames and absurd lengths (that link closes, the endpoint keeps serving
 * others), connect timeouts, heartbeats against a silent peer, a peer
 * process killed with SIGKILL, buffer-ring exhaustion, and large messages
 * not holding up small ones.
 */
#include "_tt.h"

#include "transport/stream/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One timeout for the whole binary (see transport_conformance.c). */
#define TCP_TIMEOUT 120

/* ------------------------------------------------------------------ */
/* Raw peers                                                           */
/* ------------------------------------------------------------------ */

static struct sockaddr_in sa_of(const kumo_address *a)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    memcpy(&sa.sin_addr.s_addr, a->bytes + 2, 4);
    sa.sin_port = htons((uint16_t)(a->bytes[6] << 8 | a->bytes[7]));
    return sa;
}

/* A made-up address for a raw peer (nobody listens there). */
static kumo_address fake_addr(uint64_t inc)
{
    kumo_address a = {.len = 16};
    a.bytes[0] = KUMO__ADDR_VERSION;
    a.bytes[1] = 't';
    uint32_t ip = htonl(INADDR_LOOPBACK);
    memcpy(a.bytes + 2, &ip, 4);
    a.bytes[6] = 0;
    a.bytes[7] = 9; /* port 9 (discard): never a Kumo endpoint */
    kumo__put64(a.bytes + 8, inc);
    return a;
}

static int raw_connect(const kumo_address *to)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = sa_of(to);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "raw connect: %s",
                 strerror(errno));
    struct timeval tv = {.tv_sec = TT_WAIT_NS / 1000000000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void raw_write(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        cr_assert_gt(w, 0, "raw send: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
    }
}

static size_t frame(uint8_t *buf, uint8_t type, uint8_t flags, uint32_t conn, const void *payload,
                    uint32_t len)
{
    unsigned h = kumo__tcp_hdr_encode(buf, type, flags, conn, len, 0);
    if (len)
        memcpy(buf + h, payload, len);
    return h + len;
}

/* Reads exactly n bytes (fails on EOF or timeout). */
static void raw_read(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        cr_assert_gt(r, 0, "raw recv: %s", r == 0 ? "EOF" : strerror(errno));
        b += r;
        n -= (size_t)r;
    }
}

/* HELLO as `from` to the endpoint at `to`, and its ACK (the payload to
 * ack[], its length to *len); returns the ACK status. */
static int raw_hello_ack(int fd, tt_hs *hs, const kumo_address *from, const kumo_address *to,
                         uint8_t ack[KUMO__TCP_ACK_OK], size_t *len)
{
    uint8_t buf[512];
    raw_write(fd, buf, tt_hs_hello(hs, from, to, buf));
    uint8_t hdr[KUMO__TCP_HDR];
    raw_read(fd, hdr, sizeof hdr);
    struct kumo__tcp_hdr h;
    const char *why = NULL;
    cr_assert_eq(kumo__tcp_hdr_decode(hdr, sizeof hdr, 65536, 1 << 20, &h, &why), 0, "ack: %s",
                 why);
    cr_assert_eq(h.type, KUMO__T_HELLO_ACK);
    cr_assert(h.len == KUMO__TCP_ACK || h.len == KUMO__TCP_ACK_OK ||
                  (h.len > KUMO__TCP_ACK && h.len <= KUMO__TCP_ACK_OK),
              "ACK of %u bytes", h.len);
    raw_read(fd, ack, h.len);
    *len = h.len;
    return ack[0];
}

/* The whole handshake as `from` to the endpoint at `to`, with the cookie
 * every test transport has: HELLO, the ACK, and AUTH when the ACK says OK
 * (after checking the acceptor's MAC).  Returns the ACK status. */
static int raw_hello(int fd, const kumo_address *from, const kumo_address *to)
{
    tt_hs hs;
    uint8_t ack[KUMO__TCP_ACK_OK], buf[64];
    size_t len, n;
    int status = raw_hello_ack(fd, &hs, from, to, ack, &len);
    if (status == KUMO__ACK_OK) {
        cr_assert(tt_hs_auth(&hs, TT_COOKIE, ack, len, buf, &n), "the acceptor's MAC is wrong");
        raw_write(fd, buf, n);
    }
    return status;
}

static void raw_open(int fd, uint32_t conn)
{
    uint8_t buf[32], rel = KUMO_RELIABLE_ORDERED;
    raw_write(fd, buf, frame(buf, KUMO__T_OPEN, 0, conn, &rel, 1));
}

/* Waits until the endpoint closes the raw link (EOF or reset). */
static void raw_expect_closed(int fd)
{
    uint8_t b[4096];
    for (;;) {
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return;
        if (r < 0 && errno == EINTR)
            continue;
        cr_assert_gt(r, 0, "waiting for the link to close: %s", strerror(errno));
    }
}

static kumo_transport *tcp_with(struct kumo__engine *eng, kumo_tcp_config cfg)
{
    cfg.bind_host = "127.0.0.1";
    return tt_transport_cfg(eng, "tcp", &cfg);
}

/* A healthy client keeps working against `srv`. */
static void still_serves(tt_ep *srv, tt_ep *cl, kumo_conn c)
{
    for (int i = 0; i < 10; i++) {
        tt_send(c, "fine", 4);
        tt_ev r = tt_recv(srv);
        cr_assert_eq(r.len, 4u);
        cr_assert_eq(memcmp(r.data, "fine", 4), 0);
        tt_ev_free(&r);
    }
}

/* ------------------------------------------------------------------ */
/* Decoder                                                             */
/* ------------------------------------------------------------------ */

static int dec(const uint8_t *p, size_t n, const char **why)
{
    struct kumo__tcp_hdr h;
    *why = NULL;
    return kumo__tcp_hdr_decode(p, n, 65536, 1 << 24, &h, why);
}

Test(tcp, decoder_checks_every_field, .timeout = TCP_TIMEOUT)
{
    uint8_t b[32];
    const char *why;
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, 0, 7, 100, 0);
    cr_assert_eq(dec(b, 12, &why), 0);
    cr_assert_eq(dec(b, 11, &why), 12, "short header asks for 12 bytes");
    b[4] = KUMO__TCP_VERSION + 1;
    cr_assert_eq(dec(b, 12, &why), -1);
    cr_assert_str_eq(why, "unknown frame version");
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, 0, 7, 100, 0);
    b[7] = 1;
    cr_assert_eq(dec(b, 12, &why), -1, "reserved byte");
    kumo__tcp_hdr_encode(b, KUMO__T_LAST, 0, 7, 0, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "unknown type");
    kumo__tcp_hdr_encode(b, 0, 0, 7, 0, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "type 0");
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, 0, 7, 65537, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "DATA over the frame maximum");
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, 0, 0, 1, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "DATA for connection 0");
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, 1u << 5, 7, 1, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "unknown DATA flag");
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, KUMO__F_FIRST | KUMO__F_MORE, 7, 100, 5000);
    cr_assert_eq(dec(b, 12, &why), 20, "a first piece needs 20 header bytes");
    cr_assert_eq(dec(b, 20, &why), 0);
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, KUMO__F_FIRST | KUMO__F_MORE, 7, 100, 100);
    cr_assert_eq(dec(b, 20, &why), -1, "total not above the first piece");
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, KUMO__F_FIRST | KUMO__F_MORE, 7, 100, (1ull << 24) + 1);
    cr_assert_eq(dec(b, 20, &why), -1, "total over the message maximum");
    kumo__tcp_hdr_encode(b, KUMO__T_DATA, KUMO__F_MORE, 7, 100, 0);
    b[6] = KUMO__F_FIRST; /* FIRST without MORE */
    cr_assert_eq(dec(b, 20, &why), -1);
    kumo__tcp_hdr_encode(b, KUMO__T_PING, KUMO__F_MORE, 0, 0, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "flags on a control frame");
    kumo__tcp_hdr_encode(b, KUMO__T_PING, 0, 3, 0, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "link frame naming a connection");
    kumo__tcp_hdr_encode(b, KUMO__T_PING, 0, 0, 1, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "PING with a payload");
    kumo__tcp_hdr_encode(b, KUMO__T_OPEN, 0, 3, 2, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "OPEN payload is one byte");
    kumo__tcp_hdr_encode(b, KUMO__T_CLOSE, 0, 0, 0, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "CLOSE of connection 0");
    kumo__tcp_hdr_encode(b, KUMO__T_HELLO, 0, 0, KUMO__TCP_CTL_MAX + 1, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "control frame over its maximum");
    kumo__tcp_hdr_encode(b, KUMO__T_HELLO, 0, 0, 0xffffffffu, 0);
    cr_assert_eq(dec(b, 12, &why), -1, "absurd length");

    /* HELLO bodies. */
    kumo_address from = fake_addr(1), to = fake_addr(2), f2, t2;
    uint8_t hb[KUMO__TCP_HELLO_MAX + 8];
    uint64_t caps;
    uint8_t nonce[KUMO__NONCE];
    const uint8_t *n2;
    for (int i = 0; i < KUMO__NONCE; i++)
        nonce[i] = (uint8_t)(i * 7 + 1);
    size_t n = kumo__tcp_hello_encode(hb, &from, &to, 0, nonce);
    cr_assert_eq(kumo__tcp_hello_decode(hb, n, &f2, &t2, &caps, &n2, &why), 0);
    cr_assert(kumo_address_eq(&f2, &from) && kumo_address_eq(&t2, &to));
    cr_assert_arr_eq(n2, nonce, KUMO__NONCE);
    for (size_t k = 0; k < n; k++)
        cr_assert_eq(kumo__tcp_hello_decode(hb, k, &f2, &t2, &caps, &n2, &why), -1,
                     "HELLO cut at %zu", k);
    hb[n] = 0;
    cr_assert_eq(kumo__tcp_hello_decode(hb, n + 1, &f2, &t2, &caps, &n2, &why), -1,
                 "trailing byte");
    hb[0] ^= 1;
    cr_assert_eq(kumo__tcp_hello_decode(hb, n, &f2, &t2, &caps, &n2, &why), -1, "magic");
    hb[0] ^= 1;
    hb[16 + KUMO__NONCE] = KUMO_ADDRESS_MAX + 1;
    cr_assert_eq(kumo__tcp_hello_decode(hb, n, &f2, &t2, &caps, &n2, &why), -1, "address length");

    /* Random headers: never a read past `have`, and a decoded header is
     * always within bounds. */
    unsigned seed = 99;
    for (int i = 0; i < 200000; i++) {
        uint8_t r[20];
        for (int k = 0; k < 20; k++)
            r[k] = (uint8_t)rand_r(&seed);
        if (i & 1)
            r[4] = KUMO__TCP_VERSION, r[7] = 0;
        size_t have = (size_t)(rand_r(&seed) % 21);
        struct kumo__tcp_hdr h;
        int res = kumo__tcp_hdr_decode(r, have, 65536, 1 << 24, &h, &why);
        if (res > 0)
            cr_assert_gt((size_t)res, have);
        if (res == 0) {
            cr_assert_leq(h.hlen, have);
            cr_assert(h.type == KUMO__T_DATA ? h.len <= 65536 : h.len <= KUMO__TCP_CTL_MAX);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Raw peers                                                           */
/* ------------------------------------------------------------------ */

static tt_pair setup(kumo_tcp_config cfg)
{
    struct kumo__engine *eng = tt_start(2);
    return tt_pair_new(eng, tcp_with(eng, cfg));
}

Test(tcp, garbage_before_hello_closes_that_link, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){0});
    int fd = raw_connect(&s.srv->addr);
    uint8_t junk[300];
    unsigned seed = 5;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)rand_r(&seed);
    raw_write(fd, junk, sizeof junk);
    raw_expect_closed(fd);
    close(fd);
    still_serves(s.srv, s.cl, s.c);
    tt_expect_empty(s.srv); /* the raw peer never had a connection: no event */
    tt_pair_finish(&s);
    cr_assert(tt_logged("malformed input"), "the reason is logged:\n%s", tt_log_text());
}

Test(tcp, garbage_after_hello_loses_its_connections_only, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){0});
    kumo_address me = fake_addr(0x1234);
    int fd = raw_connect(&s.srv->addr);
    cr_assert_eq(raw_hello(fd, &me, &s.srv->addr), KUMO__ACK_OK);
    raw_open(fd, 1);
    tt_ev o = tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
    cr_assert(kumo_address_eq(&o.addr, &me));
    uint8_t buf[64];
    size_t n = frame(buf, KUMO__T_DATA, 0, 1, "ok", 2);
    raw_write(fd, buf, n);
    tt_ev r = tt_recv(s.srv);
    cr_assert_eq(r.conn, o.conn);
    tt_ev_free(&r);
    /* A frame of version 9. */
    n = frame(buf, KUMO__T_DATA, 0, 1, "bad", 3);
    buf[4] = 9;
    raw_write(fd, buf, n);
    tt_ev l = tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST);
    cr_assert(kumo_address_eq(&l.addr, &me));
    raw_expect_closed(fd);
    close(fd);
    still_serves(s.srv, s.cl, s.c);
    tt_pair_finish(&s);
    cr_assert(tt_logged("unknown frame version"), "log:\n%s", tt_log_text());
}

/* Raw peers that do not prove the cookie: nothing they send is taken, the
 * endpoint sees no event and goes on serving. */
Test(tcp, a_wrong_mac_or_no_auth_closes_that_link, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){0});
    for (int variant = 0; variant < 3; variant++) {
        kumo_address me = fake_addr(0x2000u + (unsigned)variant);
        int fd = raw_connect(&s.srv->addr);
        tt_hs hs;
        uint8_t ack[KUMO__TCP_ACK_OK], buf[128];
        size_t len, n;
        cr_assert_eq(raw_hello_ack(fd, &hs, &me, &s.srv->addr, ack, &len), KUMO__ACK_OK);
        /* The acceptor's MAC is under its cookie, not under another. */
        cr_assert(tt_hs_auth(&hs, TT_COOKIE, ack, len, buf, &n));
        cr_assert_not(tt_hs_auth(&hs, "another cookie", ack, len, buf, &n));
        if (variant == 0) {
            raw_write(fd, buf, n); /* AUTH under "another cookie" */
        } else if (variant == 1) {
            raw_open(fd, 1); /* OPEN and DATA, no AUTH */
            n = frame(buf, KUMO__T_DATA, 0, 1, "in", 2);
            raw_write(fd, buf, n);
        } else {
            /* the right MAC, but for other nonces (a replay) */
            tt_hs other = hs;
            other.nonce_c[0] ^= 1;
            tt_hs_auth(&other, TT_COOKIE, ack, len, buf, &n);
            raw_write(fd, buf, n);
        }
        raw_expect_closed(fd);
        close(fd);
    }
    still_serves(s.srv, s.cl, s.c);
    tt_expect_empty(s.srv);
    tt_pair_finish(&s);
    cr_assert(tt_logged("it does not know our cookie"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("a frame before AUTH"), "log:\n%s", tt_log_text());
}

/* A peer that stops after the ACK is dropped when the handshake times out,
 * and one claiming another endpoint's address does not hold up that
 * endpoint's own link meanwhile. */
Test(tcp, a_silent_impostor_neither_stays_nor_blocks_the_real_peer, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){.connect_timeout_ns = 1500 * TT_MS});
    tt_ep *real = tt_ep_new(s.t, 0, "real");
    int fd = raw_connect(&s.srv->addr);
    tt_hs hs;
    uint8_t ack[KUMO__TCP_ACK_OK];
    size_t len;
    uint64_t t0 = tt_now_ns();
    cr_assert_eq(raw_hello_ack(fd, &hs, &real->addr, &s.srv->addr, ack, &len), KUMO__ACK_OK);
    /* The real endpoint connects at once, while the impostor's link waits
     * for its AUTH. */
    kumo_conn c = tt_connect(real, &s.srv->addr);
    tt_ev o = tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
    cr_assert(kumo_address_eq(&o.addr, &real->addr));
    cr_assert_lt(tt_now_ns() - t0, 1000 * TT_MS, "the real peer waited for the impostor");
    tt_send(c, "real", 4);
    tt_ev r = tt_recv(s.srv);
    cr_assert_arr_eq(r.data, "real", 4);
    tt_ev_free(&r);
    /* The impostor is dropped at the handshake's deadline. */
    raw_expect_closed(fd);
    close(fd);
    cr_assert_lt(tt_now_ns() - t0, 1500 * TT_MS + 1000 * TT_MS, "dropped late");
    still_serves(s.srv, s.cl, s.c);
    tt_expect_empty(s.srv);
    kumo_transport_free(s.t);
    tt_ep_check(real);
    tt_ep_free(real);
    s.t = NULL;
    tt_pair_finish(&s);
}

Test(tcp, unknown_connection_and_double_open_are_malformed, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){0});
    for (int variant = 0; variant < 3; variant++) {
        kumo_address me = fake_addr(0x2000u + (unsigned)variant);
        int fd = raw_connect(&s.srv->addr);
        cr_assert_eq(raw_hello(fd, &me, &s.srv->addr), KUMO__ACK_OK);
        raw_open(fd, 4);
        tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
        uint8_t buf[64];
        size_t n;
        if (variant == 0)
            n = frame(buf, KUMO__T_DATA, 0, 5, "x", 1); /* never opened */
        else if (variant == 1)
            n = frame(buf, KUMO__T_OPEN, 0, 4, &(uint8_t){0}, 1); /* opened twice */
        else
            n = frame(buf, KUMO__T_DATA, KUMO__F_MORE, 4, "x", 1); /* continuation first */
        raw_write(fd, buf, n);
        tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST);
        raw_expect_closed(fd);
        close(fd);
    }
    still_serves(s.srv, s.cl, s.c);
    tt_pair_finish(&s);
    cr_assert(tt_logged("DATA for an unknown connection"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("OPEN of a connection already open"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("continuation without a first piece"), "log:\n%s", tt_log_text());
}

Test(tcp, truncated_frame_then_close, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){0});
    kumo_address me = fake_addr(0x3000);
    int fd = raw_connect(&s.srv->addr);
    cr_assert_eq(raw_hello(fd, &me, &s.srv->addr), KUMO__ACK_OK);
    raw_open(fd, 1);
    tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
    uint8_t buf[200], payload[90] = {0};
    size_t n = frame(buf, KUMO__T_DATA, 0, 1, payload, sizeof payload);
    raw_write(fd, buf, n - 40); /* header and part of the payload */
    shutdown(fd, SHUT_WR);
    tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST); /* no Received before it */
    raw_expect_closed(fd);
    close(fd);
    /* A header cut short, too. */
    me = fake_addr(0x3001);
    fd = raw_connect(&s.srv->addr);
    cr_assert_eq(raw_hello(fd, &me, &s.srv->addr), KUMO__ACK_OK);
    raw_open(fd, 1);
    tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
    raw_write(fd, buf, 7);
    shutdown(fd, SHUT_WR);
    tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST);
    raw_expect_closed(fd);
    close(fd);
    still_serves(s.srv, s.cl, s.c);
    tt_pair_finish(&s);
    cr_assert(tt_logged("truncated"), "log:\n%s", tt_log_text());
}

Test(tcp, absurd_lengths_close_the_link, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){.max_message = 1u << 20});
    for (int variant = 0; variant < 3; variant++) {
        kumo_address me = fake_addr(0x4000u + (unsigned)variant);
        int fd = raw_connect(&s.srv->addr);
        cr_assert_eq(raw_hello(fd, &me, &s.srv->addr), KUMO__ACK_OK);
        raw_open(fd, 1);
        tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
        uint8_t buf[32];
        unsigned h;
        if (variant == 0)
            h = kumo__tcp_hdr_encode(buf, KUMO__T_DATA, 0, 1, 0xfffffff0u, 0);
        else if (variant == 1)
            h = kumo__tcp_hdr_encode(buf, KUMO__T_DATA, KUMO__F_FIRST | KUMO__F_MORE, 1, 1000,
                                     1ull << 60);
        else
            h = kumo__tcp_hdr_encode(buf, KUMO__T_PING, 0, 0, 1u << 30, 0);
        raw_write(fd, buf, h);
        tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST);
        raw_expect_closed(fd);
        close(fd);
    }
    still_serves(s.srv, s.cl, s.c);
    /* And sends over the maximum are refused up front. */
    size_t big = (1u << 20) + 1;
    char *p = calloc(1, big);
    int err = kumo_conn_send(s.c, &(struct iovec){p, big}, 1, NULL, NULL);
    cr_assert_eq(err, -KUMO_ETOOBIG, "send over max_message: %s", kumo_transport_strerror(err));
    free(p);
    tt_pair_finish(&s);
    cr_assert(tt_logged("over the maximum frame size"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("over the maximum message size"), "log:\n%s", tt_log_text());
    cr_assert(tt_logged("control frame over its maximum"), "log:\n%s", tt_log_text());
}

Test(tcp, a_single_frame_over_max_message_closes_the_link, .timeout = TCP_TIMEOUT)
{
    /* max_message below the frame size: a message in one frame must be
     * checked against it too (only fragmented ones were).  Whole in one
     * write (the zero-copy path) and split (the copying path). */
    tt_pair s = setup((kumo_tcp_config){.max_message = 1024});
    for (int variant = 0; variant < 2; variant++) {
        kumo_address me = fake_addr(0x4800u + (unsigned)variant);
        int fd = raw_connect(&s.srv->addr);
        cr_assert_eq(raw_hello(fd, &me, &s.srv->addr), KUMO__ACK_OK);
        raw_open(fd, 1);
        tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
        static uint8_t payload[2048], buf[2100];
        size_t n = frame(buf, KUMO__T_DATA, 0, 1, payload, sizeof payload);
        if (variant == 0) {
            raw_write(fd, buf, n);
        } else {
            raw_write(fd, buf, 12);
            raw_write(fd, buf + 12, n - 12);
        }
        tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST); /* no Received before it */
        raw_expect_closed(fd);
        close(fd);
    }
    still_serves(s.srv, s.cl, s.c);
    tt_pair_finish(&s);
    cr_assert(tt_logged("over the maximum message size"), "log:\n%s", tt_log_text());
}

Test(tcp, a_hello_claiming_another_hosts_address_is_refused, .timeout = TCP_TIMEOUT)
{
    /* From 127.0.0.1, claiming 127.0.0.2: with the cookie, a peer could
     * otherwise take that address over for this endpoint's later connects. */
    tt_pair s = setup((kumo_tcp_config){0});
    kumo_address me = fake_addr(0x4900);
    uint32_t other = htonl(INADDR_LOOPBACK + 1);
    memcpy(me.bytes + 2, &other, 4);
    int fd = raw_connect(&s.srv->addr);
    tt_hs hs;
    uint8_t buf[512];
    raw_write(fd, buf, tt_hs_hello(&hs, &me, &s.srv->addr, buf));
    raw_expect_closed(fd);
    close(fd);
    still_serves(s.srv, s.cl, s.c);
    tt_expect_empty(s.srv);
    tt_pair_finish(&s);
    cr_assert(tt_logged("does not come from"), "log:\n%s", tt_log_text());
}

Test(tcp, hello_to_another_incarnation_is_not_found, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){0});
    kumo_address me = fake_addr(0x5000), wrong = s.srv->addr;
    wrong.bytes[15] ^= 0xff;
    int fd = raw_connect(&s.srv->addr);
    cr_assert_eq(raw_hello(fd, &me, &wrong), KUMO__ACK_NOT_FOUND);
    raw_expect_closed(fd);
    close(fd);
    tt_expect_empty(s.srv);
    still_serves(s.srv, s.cl, s.c);
    tt_pair_finish(&s);
    /* an operator at the default level (WARN) sees the refusal */
    cr_assert(tt_logged("refusing link from"), "log:\n%s", tt_log_text());
}

/* An address without incarnation names a place: the endpoint there now
 * answers with its address and the connect goes on to it. */
Test(tcp, a_place_address_reaches_the_endpoint_listening_there, .timeout = TCP_TIMEOUT)
{
    tt_pair s = setup((kumo_tcp_config){0});
    char str[KUMO_ADDRESS_STR_MAX];
    kumo_address_str(&s.srv->addr, str, sizeof str);
    *strrchr(str, '/') = 0; /* "tcp://127.0.0.1:<port>" */
    kumo_address place;
    cr_assert_eq(kumo_address_parse(str, &place), 0, "parse %s", str);
    cr_assert(kumo_address_same_place(&place, &s.srv->addr));
    cr_assert(!kumo_address_eq(&place, &s.srv->addr));
    cr_assert(kumo_address_is_place(&place) && !kumo_address_is_place(&s.srv->addr));
    char back[KUMO_ADDRESS_STR_MAX];
    cr_assert_str_eq(kumo_address_str(&place, back, sizeof back), str, "a place prints as parsed");

    /* The raw exchange: a REDIRECT carrying the endpoint's address, then
     * the acceptor closes. */
    kumo_address me = fake_addr(0x5001);
    int fd = raw_connect(&s.srv->addr);
    tt_hs hs;
    uint8_t ack[KUMO__TCP_ACK_OK];
    size_t len;
    cr_assert_eq(raw_hello_ack(fd, &hs, &me, &place, ack, &len), KUMO__ACK_REDIRECT);
    kumo_address real;
    cr_assert_eq(kumo_address_decode(ack + KUMO__TCP_ACK, len - KUMO__TCP_ACK, &real),
                 (int)(len - KUMO__TCP_ACK));
    cr_assert(kumo_address_eq(&real, &s.srv->addr), "redirected elsewhere");
    raw_expect_closed(fd);
    close(fd);

    /* A sender claiming a place (no incarnation) is malformed: a link must
     * be keyed by an endpoint. */
    kumo_address me_place = me;
    memset(me_place.bytes + 8, 0, 8);
    fd = raw_connect(&s.srv->addr);
    uint8_t hb[512];
    raw_write(fd, hb, tt_hs_hello(&hs, &me_place, &s.srv->addr, hb));
    raw_expect_closed(fd);
    close(fd);

    /* A connect to the place is a connection to the endpoint. */
    kumo_conn c = tt_connect(s.cl, &place);
    tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
    still_serves(s.srv, s.cl, c);
    kumo_conn_close(c);
    tt_expect(s.srv, KUMO_EV_CONNECTION_CLOSED);
    still_serves(s.srv, s.cl, s.c);

    /* A place where nothing listens: not found. */
    kumo_address nowhere = place;
    nowhere.bytes[6] ^= 0x40; /* another port */
    kumo_conn none;
    cr_assert_eq(tt_connect_err(s.cl, &nowhere, &none), -KUMO_ENOTFOUND);
    tt_pair_finish(&s);
}

/* ------------------------------------------------------------------ */
/* Timeouts and heartbeats                                             */
/* ------------------------------------------------------------------ */

Test(tcp, silent_acceptor_times_out_connect, .timeout = TCP_TIMEOUT)
{
    struct kumo__engine *eng = tt_start(2);
    kumo_transport *t = tcp_with(eng, (kumo_tcp_config){0});
    tt_ep *cl = tt_ep_new(t, 0, "client");
    /* A listener that accepts (in the kernel's backlog) and never speaks. */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(lfd, 16), 0);
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    kumo_address to = fake_addr(77);
    memcpy(to.bytes + 2, &sa.sin_addr.s_addr, 4);
    to.bytes[6] = (uint8_t)(ntohs(sa.sin_port) >> 8);
    to.bytes[7] = (uint8_t)ntohs(sa.sin_port);

    kumo_hints hints = {.connect_timeout_ns = 200 * TT_MS};
    uint64_t t0 = tt_now_ns();
    kumo_conn dummy;
    int err = tt_connect_hints(cl, &to, &hints, &dummy);
    uint64_t took = tt_now_ns() - t0;
    cr_assert_eq(err, -KUMO_ETIMEOUT, "connect: %s", kumo_transport_strerror(err));
    cr_assert_geq(took, 190 * TT_MS, "timed out after %" PRIu64 " ms", took / TT_MS);
    cr_assert_lt(took, 2000 * TT_MS, "timed out after %" PRIu64 " ms", took / TT_MS);
    /* A closed port: refused -> not found, at once. */
    close(lfd);
    err = tt_connect_err(cl, &to, &dummy);
    cr_assert_eq(err, -KUMO_ENOTFOUND, "refused: %s", kumo_transport_strerror(err));
    kumo_transport_free(t);
    tt_ep_free(cl);
    tt_stop(eng);
}

Test(tcp, heartbeat_detects_a_silent_peer, .timeout = TCP_TIMEOUT)
{
    /* The timeout leaves room for the three pings read below even when
     * pings come late (a ping timer may fire up to ~2 intervals apart):
     * with 300 ms the third ping and the timeout raced (1 run in ~10). */
    kumo_tcp_config cfg = {.heartbeat_interval_ns = 50 * TT_MS,
                           .heartbeat_timeout_ns = 600 * TT_MS};
    tt_pair s = setup(cfg);
    kumo_address me = fake_addr(0x6000);
    int fd = raw_connect(&s.srv->addr);
    cr_assert_eq(raw_hello(fd, &me, &s.srv->addr), KUMO__ACK_OK);
    raw_open(fd, 1);
    tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
    uint64_t t0 = tt_now_ns();
    /* The endpoint pings the idle link: read three PINGs. */
    for (int i = 0; i < 3; i++) {
        uint8_t h[KUMO__TCP_HDR];
        raw_read(fd, h, sizeof h);
        cr_assert_eq(h[5], KUMO__T_PING, "frame type %u, expected PING", h[5]);
    }
    /* We never answer: ConnectionLost within the heartbeat timeout. */
    tt_ev l = tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST);
    uint64_t took = tt_now_ns() - t0;
    cr_assert(kumo_address_eq(&l.addr, &me));
    cr_assert_geq(took, 500 * TT_MS, "lost after %" PRIu64 " ms", took / TT_MS);
    cr_assert_lt(took, 3000 * TT_MS, "lost after %" PRIu64 " ms", took / TT_MS);
    raw_expect_closed(fd);
    close(fd);
    /* The healthy client, pinged too, is still alive. */
    still_serves(s.srv, s.cl, s.c);
    tt_pair_finish(&s);
    cr_assert(tt_logged("heartbeat timeout"), "log:\n%s", tt_log_text());
}

Test(tcp, killed_peer_process_is_lost, .timeout = TCP_TIMEOUT)
{
    kumo_tcp_config cfg = {.heartbeat_interval_ns = 100 * TT_MS,
                           .heartbeat_timeout_ns = 1000 * TT_MS};
    tt_pair s = setup(cfg);
    kumo_address me = fake_addr(0x7000);
    /* Everything the child sends is built before fork (it only makes
     * system calls). */
    uint8_t msgs[1024];
    tt_hs hs;
    size_t off = tt_hs_hello(&hs, &me, &s.srv->addr, msgs);
    size_t hello_len = off;
    uint8_t rel = 0;
    off += frame(msgs + off, KUMO__T_OPEN, 0, 1, &rel, 1);
    off += frame(msgs + off, KUMO__T_DATA, 0, 1, "alive", 5);
    struct sockaddr_in sa = sa_of(&s.srv->addr);
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa))
            _exit(1);
        if (send(fd, msgs, hello_len, 0) != (ssize_t)hello_len)
            _exit(2);
        uint8_t ack[KUMO__TCP_HDR + KUMO__TCP_ACK_OK], auth[64];
        size_t got = 0, alen;
        while (got < sizeof ack) {
            ssize_t r = recv(fd, ack + got, sizeof ack - got, 0);
            if (r <= 0)
                _exit(3);
            got += (size_t)r;
        }
        if (ack[KUMO__TCP_HDR] != KUMO__ACK_OK)
            _exit(4);
        if (!tt_hs_auth(&hs, TT_COOKIE, ack + KUMO__TCP_HDR, KUMO__TCP_ACK_OK, auth, &alen))
            _exit(6);
        if (send(fd, auth, alen, 0) != (ssize_t)alen ||
            send(fd, msgs + hello_len, off - hello_len, 0) != (ssize_t)(off - hello_len))
            _exit(5);
        (void)!write(pipefd[1], "r", 1);
        for (;;)
            pause();
    }
    close(pipefd[1]);
    char ready;
    cr_assert_eq(read(pipefd[0], &ready, 1), 1, "child did not get through the handshake");
    close(pipefd[0]);
    tt_ev o = tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
    cr_assert(kumo_address_eq(&o.addr, &me));
    tt_ev r = tt_recv(s.srv);
    cr_assert_eq(r.len, 5u);
    tt_ev_free(&r);
    uint64_t t0 = tt_now_ns();
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    tt_ev l = tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST);
    uint64_t took = tt_now_ns() - t0;
    cr_assert(kumo_address_eq(&l.addr, &me));
    cr_assert_lt(took, cfg.heartbeat_timeout_ns + 500 * TT_MS, "lost after %" PRIu64 " ms",
                 took / TT_MS);
    still_serves(s.srv, s.cl, s.c);
    tt_pair_finish(&s);
}

/* ------------------------------------------------------------------ */
/* Buffers and fairness                                                */
/* ------------------------------------------------------------------ */

struct order {
    uint64_t next[8];
    uint64_t conn_of[8];
    unsigned nconn;
};

static bool order_hook(tt_ep *e, const kumo_event *ev)
{
    struct order *o = e->user;
    if (ev->kind == KUMO_EV_CONNECTION_OPENED) {
        if (o->nconn < 8)
            o->conn_of[o->nconn++] = ev->conn;
        return false;
    }
    if (ev->kind != KUMO_EV_RECEIVED)
        return true;
    unsigned k = 0;
    while (k < o->nconn && o->conn_of[k] != ev->conn)
        k++;
    uint64_t v;
    memcpy(&v, ev->iov[0].iov_base, 8); /* the first 8 bytes are in piece 0 here */
    if (k == o->nconn || v != o->next[k] || ev->len != 3000)
        tt_ep_failf(e, "conn %" PRIu64 ": got %" PRIu64 " (%zu bytes), expected %" PRIu64, ev->conn,
                    v, ev->len, k < o->nconn ? o->next[k] : 0);
    else
        o->next[k]++;
    return false;
}

Test(tcp, tiny_buffer_ring_runs_out_and_recovers, .timeout = TCP_TIMEOUT)
{
    struct kumo__engine *eng = tt_start(2);
    tt_log_capture();
    kumo_log_set_level(KUMO_LOG_DEBUG);
    /* Two 4 KiB buffers for everything the server receives. */
    kumo_transport *t = tcp_with(eng, (kumo_tcp_config){.rx_buffers = 2, .rx_buffer_size = 4096});
    static struct order o;
    memset(&o, 0, sizeof o);
    tt_ep *srv = tt_ep_new_hook(t, 1, "server", order_hook, &o);
    tt_ep *cl[4];
    kumo_conn c[4];
    for (int k = 0; k < 4; k++) {
        static const char *names[] = {"c0", "c1", "c2", "c3"};
        cl[k] = tt_ep_new(t, 0, names[k]);
        c[k] = tt_connect(cl[k], &srv->addr);
    }
    enum { N = 500 };
    uint8_t buf[3000];
    memset(buf, 0xab, sizeof buf);
    for (uint64_t i = 0; i < N; i++)
        for (int k = 0; k < 4; k++) {
            memcpy(buf, &i, 8);
            tt_send(c[k], buf, sizeof buf);
        }
    tt_wait_counter(srv, &srv->received, 4 * N, "received");
    kumo_transport_free(t);
    tt_ep_check(srv);
    tt_ep_free(srv);
    for (int k = 0; k < 4; k++)
        tt_ep_free(cl[k]);
    kumo_log_set_sink(NULL, NULL);
    kumo_log_set_level(KUMO_LOG_WARN);
    tt_stop(eng);
    cr_assert(tt_logged("ENOBUFS"), "the ring never ran out: the test tests nothing");
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool released;

static void rel(void *arg)
{
    pthread_mutex_lock(&mu);
    released = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* A receiver on shard 1 and a sender on shard 0 with two connections to
 * it, for large messages and for small ones. */
struct big_small {
    tt_ep *rx, *tx;
    kumo_conn big, small;
    uint64_t big_id; /* the receiver's id of `big` */
};

static struct big_small big_small_new(kumo_transport *t)
{
    struct big_small b;
    b.rx = tt_ep_new(t, 1, "receiver");
    b.tx = tt_ep_new(t, 0, "sender");
    b.big = tt_connect(b.tx, &b.rx->addr);
    b.small = tt_connect(b.tx, &b.rx->addr);
    b.big_id = tt_expect(b.rx, KUMO_EV_CONNECTION_OPENED).conn;
    tt_expect(b.rx, KUMO_EV_CONNECTION_OPENED);
    return b;
}

Test(tcp, large_message_does_not_hold_up_small_ones, .timeout = TCP_TIMEOUT)
{
    struct kumo__engine *eng = tt_start(2);
    /* A queue limit above the large message, so the link does not turn
     * busy (transport_backpressure.c tests that) before the small ones are
     * taken. */
    kumo_transport *t = tcp_with(eng, (kumo_tcp_config){.send_queue_max = 128u << 20});
    struct big_small b = big_small_new(t);
    tt_ep *rx = b.rx, *tx = b.tx;
    kumo_conn bigc = b.big, small = b.small;
    size_t big = 64u << 20;
    uint8_t *p = malloc(big);
    memset(p, 7, big);
    released = false;
    cr_assert_eq(kumo_conn_send(bigc, &(struct iovec){p, big}, 1, rel, NULL), 0);
    for (int i = 0; i < 10; i++)
        tt_send(small, "s", 1);
    /* The small messages arrive while the 64 MiB one is still on its way. */
    for (int i = 0; i < 10; i++) {
        tt_ev r = tt_recv(rx);
        cr_assert_neq(r.conn, b.big_id, "message %d: the large message came first", i);
        cr_assert_eq(r.len, 1u);
        tt_ev_free(&r);
    }
    tt_ev r = tt_recv(rx);
    cr_assert_eq(r.conn, b.big_id);
    cr_assert_eq(r.len, big);
    tt_ev_free(&r);
    pthread_mutex_lock(&mu);
    while (!released)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    free(p);
    kumo_transport_free(t);
    tt_ep_free(rx);
    tt_ep_free(tx);
    tt_stop(eng);
}

Test(tcp, two_transports_share_a_shard, .timeout = TCP_TIMEOUT)
{
    struct kumo__engine *eng = tt_start(1);
    kumo_transport *t1 = tcp_with(eng, (kumo_tcp_config){0});
    kumo_transport *t2 = tcp_with(eng, (kumo_tcp_config){0});
    tt_ep *a = tt_ep_new(t1, 0, "a");
    tt_ep *b = tt_ep_new(t2, 0, "b");
    tt_ep *c = tt_ep_new(t1, 0, "c");
    kumo_conn ab = tt_connect(a, &b->addr);
    kumo_conn cb = tt_connect(c, &b->addr);
    tt_send(ab, "1", 1);
    tt_send(cb, "2", 1);
    unsigned got = 0;
    while (got < 2) {
        tt_ev ev = tt_next(b);
        got += ev.kind == KUMO_EV_RECEIVED;
        tt_ev_free(&ev);
    }
    kumo_transport_free(t1);
    kumo_transport_free(t2);
    tt_ep_free(a);
    tt_ep_free(b);
    tt_ep_free(c);
    tt_stop(eng);
}

Test(tcp, small_fragments_reassemble, .timeout = TCP_TIMEOUT)
{
    /* Frames much smaller than a receive buffer: a whole last piece of a
     * fragmented message then lies in one buffer, where a single-frame
     * message would take the zero-copy path (regression: it was taken for
     * the last piece too). */
    struct kumo__engine *eng = tt_start(2);
    kumo_transport *t = tcp_with(eng, (kumo_tcp_config){.fragment_size = 1000});
    tt_ep *rx = tt_ep_new(t, 1, "receiver");
    tt_ep *tx = tt_ep_new(t, 0, "sender");
    kumo_conn c = tt_connect(tx, &rx->addr);
    tt_expect(rx, KUMO_EV_CONNECTION_OPENED);
    static uint8_t buf[200000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 13 + 1);
    static const size_t sizes[] = {1, 999, 1000, 1001, 1999, 2000, 2001, 65536, 150001, 200000};
    for (unsigned k = 0; k < sizeof sizes / sizeof *sizes; k++)
        tt_send(c, buf, sizes[k]);
    for (unsigned k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        tt_ev r = tt_recv(rx);
        cr_assert_eq(r.len, sizes[k], "message %u: %zu bytes, sent %zu", k, r.len, sizes[k]);
        cr_assert_eq(memcmp(r.data, buf, sizes[k]), 0, "message %u differs", k);
        tt_ev_free(&r);
    }
    kumo_transport_free(t);
    tt_ep_check(rx);
    tt_ep_free(rx);
    tt_ep_free(tx);
    tt_stop(eng);
}

/* Copied sends made on the sender's own shard (the staging path). */
struct shard_send {
    struct kumo__task task;
    kumo_conn c;
    const uint8_t *buf;
    const size_t *sizes;
    unsigned n;
    _Atomic int err;
    _Atomic bool done;
};

static void shard_send_fn(struct kumo__shard *sh, struct kumo__task *t)
{
    struct shard_send *s = (struct shard_send *)t;
    int err = 0;
    for (unsigned k = 0; sh && k < s->n && !err; k++)
        err = kumo_conn_send(s->c, &(struct iovec){(void *)s->buf, s->sizes[k]}, 1, NULL, NULL);
    atomic_store(&s->err, sh ? err : -ESHUTDOWN);
    atomic_store(&s->done, true);
}

Test(tcp, small_copied_messages_over_the_fragment_size_are_fragmented, .timeout = TCP_TIMEOUT)
{
    /* A copied message small enough for the frame batch, but over the
     * fragment size, must still go in pieces: as one frame the receiver
     * would close the link for it (regression: the batch took it whole). */
    struct kumo__engine *eng = tt_start(2);
    kumo_transport *t = tcp_with(eng, (kumo_tcp_config){.fragment_size = 1000});
    tt_ep *rx = tt_ep_new(t, 1, "receiver");
    tt_ep *tx = tt_ep_new(t, 0, "sender");
    kumo_conn c = tt_connect(tx, &rx->addr);
    tt_expect(rx, KUMO_EV_CONNECTION_OPENED);
    static uint8_t buf[1024];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    static const size_t sizes[] = {1000, 1001, 1024, 10};
    enum { N = sizeof sizes / sizeof *sizes };
    static struct shard_send s;
    memset(&s, 0, sizeof s);
    s.task.fn = shard_send_fn;
    s.c = c;
    s.buf = buf;
    s.sizes = sizes;
    s.n = N;
    cr_assert_eq(kumo__task_post(eng, 0, &s.task), 0);
    for (unsigned k = 0; k < N; k++) {
        tt_ev r = tt_recv(rx);
        cr_assert_eq(r.len, sizes[k], "message %u: %zu bytes, sent %zu", k, r.len, sizes[k]);
        cr_assert_eq(memcmp(r.data, buf, sizes[k]), 0, "message %u differs", k);
        tt_ev_free(&r);
    }
    cr_assert(atomic_load(&s.done));
    cr_assert_eq(atomic_load(&s.err), 0, "send: %s", kumo_transport_strerror(atomic_load(&s.err)));
    kumo_transport_free(t);
    tt_ep_check(rx);
    tt_ep_free(rx);
    tt_ep_free(tx);
    tt_stop(eng);
}

/* Waits (bounded) until the log has a line containing `needle`. */
static void wait_logged(const char *needle)
{
    for (int64_t waited = 0; !tt_logged(needle); waited += 1000000) {
        cr_assert_lt(waited, TT_WAIT_NS, "never logged \"%s\":\n%s", needle, tt_log_text());
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
}

#define DIRECT_LOG "received straight into messages"

static uint8_t pattern(size_t i, unsigned k)
{
    return (uint8_t)(i * 31 + k * 7 + (i >> 12));
}

Test(tcp, big_frames_go_straight_into_messages_between_small_ones, .timeout = TCP_TIMEOUT)
{
    /* Frames of half a receive buffer or more are received into their
     * messages, with the next header read after each body; small frames
     * on another connection, and control frames, come between them.  Every
     * message must arrive whole, in order on its connection. */
    struct kumo__engine *eng = tt_start(2);
    tt_log_capture();
    kumo_log_set_level(KUMO_LOG_DEBUG);
    /* Four receive buffers: the multishot recv cannot take more than
     * 256 KiB ahead of the switch to direct receives, so the 1 MiB and
     * 3 MiB messages are received directly whatever the timing (with 64,
     * a burst may all come through buffers before the cancel lands). */
    kumo_transport *t =
        tcp_with(eng, (kumo_tcp_config){.send_queue_max = 256u << 20, .rx_buffers = 4});
    struct big_small b = big_small_new(t);
    tt_ep *rx = b.rx, *tx = b.tx;
    kumo_conn big = b.big, small = b.small;
    /* Below, at and around the threshold (32 KiB) and the fragment size
     * (64 KiB), and several fragments with a short last one. */
    static const size_t sizes[] = {32767,    32768,          40000, 65535,  65536, 65537,
                                   1u << 20, (3u << 20) + 7, 100,   131072, 70000};
    enum { NS = sizeof sizes / sizeof *sizes, SMALL = 5 };
    static uint8_t msg[(3u << 20) + 7];
    for (unsigned k = 0; k < NS; k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            msg[i] = pattern(i, k);
        tt_send(big, msg, sizes[k]);
        for (unsigned j = 0; j < SMALL; j++) {
            uint32_t v = k * SMALL + j;
            tt_send(small, &v, sizeof v);
        }
    }
    unsigned nbig = 0, nsmall = 0;
    while (nbig < NS || nsmall < NS * SMALL) {
        tt_ev r = tt_recv(rx);
        if (r.conn == b.big_id) {
            cr_assert_lt(nbig, NS);
            cr_assert_eq(r.len, sizes[nbig], "message %u: %zu bytes, sent %zu", nbig, r.len,
                         sizes[nbig]);
            for (size_t i = 0; i < r.len; i++)
                if (r.data[i] != pattern(i, nbig))
                    cr_assert_fail("message %u differs at byte %zu", nbig, i);
            nbig++;
        } else {
            uint32_t v;
            cr_assert_eq(r.len, sizeof v);
            memcpy(&v, r.data, sizeof v);
            cr_assert_eq(v, nsmall, "small message %u came as %u", nsmall, v);
            nsmall++;
        }
        tt_ev_free(&r);
    }
    kumo_transport_free(t);
    tt_ep_check(rx);
    tt_ep_free(rx);
    tt_ep_free(tx);
    kumo_log_set_sink(NULL, NULL);
    kumo_log_set_level(KUMO_LOG_WARN);
    tt_stop(eng);
    cr_assert(tt_logged(DIRECT_LOG), "no frame was received directly: the test tests nothing");
}

Test(tcp, a_link_broken_during_a_direct_receive_is_lost_cleanly, .timeout = TCP_TIMEOUT)
{
    /* A raw peer sends part of a big frame and stops: the endpoint waits
     * in a receive into the message.  Breaking the link then must not
     * free the message under the kernel (it is kept until the receive
     * ends; the sanitizer build checks it is freed), and the endpoint
     * goes on serving. */
    tt_pair s = setup((kumo_tcp_config){0});
    kumo_log_set_level(KUMO_LOG_DEBUG);
    kumo_address me = fake_addr(0x3000);
    int fd = raw_connect(&s.srv->addr);
    cr_assert_eq(raw_hello(fd, &me, &s.srv->addr), KUMO__ACK_OK);
    raw_open(fd, 1);
    tt_ev o = tt_expect(s.srv, KUMO_EV_CONNECTION_OPENED);
    (void)o;
    static uint8_t buf[KUMO__TCP_HDR_MAX + 40000];
    unsigned h =
        kumo__tcp_hdr_encode(buf, KUMO__T_DATA, KUMO__F_FIRST | KUMO__F_MORE, 1, 65536, 1u << 20);
    memset(buf + h, 0x5a, 40000);
    raw_write(fd, buf, h + 40000);
    wait_logged(DIRECT_LOG);
    cr_assert_eq(kumo_transport_break_link(s.srv->ep, &me), 0);
    tt_ev l = tt_expect_error(s.srv, KUMO_ERR_CONNECTION_LOST);
    cr_assert(kumo_address_eq(&l.addr, &me));
    raw_expect_closed(fd);
    close(fd);
    still_serves(s.srv, s.cl, s.c);
    kumo_log_set_level(KUMO_LOG_WARN);
    tt_pair_finish(&s);
}

/* Lent sends counted by a test thread. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned n;
} zc_rel = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void zc_release(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&zc_rel.mu);
    zc_rel.n++;
    pthread_cond_broadcast(&zc_rel.cv);
    pthread_mutex_unlock(&zc_rel.mu);
}

Test(tcp, zerocopy_sends_arrive_whole_and_release_after_the_kernel, .timeout = TCP_TIMEOUT)
{
    struct kumo__engine *eng = tt_start(2);
    if (!eng->feat.send_zc) {
        tt_stop(eng);
        cr_skip("this kernel has no IORING_OP_SENDMSG_ZC");
    }
    tt_log_capture();
    kumo_log_set_level(KUMO_LOG_DEBUG);
    /* Every lent batch by SENDMSG_ZC; copied messages in between. */
    kumo_transport *t =
        tcp_with(eng, (kumo_tcp_config){.zerocopy_min = 1, .zerocopy_on_host = true});
    tt_ep *rx = tt_ep_new(t, 1, "receiver");
    tt_ep *tx = tt_ep_new(t, 0, "sender");
    kumo_conn c = tt_connect(tx, &rx->addr);
    tt_expect(rx, KUMO_EV_CONNECTION_OPENED);
    enum { N = 40 };
    static size_t sizes[N];
    static uint8_t *bufs[N];
    zc_rel.n = 0;
    unsigned lent = 0;
    /* First a lent message alone, so that at least one batch is all lent
     * whatever the timing (a batch with copied bytes goes by plain send). */
    static uint8_t first[64u << 10];
    memset(first, 0x3c, sizeof first);
    cr_assert_eq(kumo_conn_send(c, &(struct iovec){first, sizeof first}, 1, zc_release, NULL), 0);
    lent++;
    tt_ev f = tt_recv(rx);
    cr_assert_eq(f.len, sizeof first);
    cr_assert_eq(memcmp(f.data, first, sizeof first), 0);
    tt_ev_free(&f);
    for (int m = 0; m < N; m++) {
        sizes[m] = m % 5 == 4 ? (1u << 20) + 3 : m % 3 ? (64u << 10) : 100;
        bufs[m] = malloc(sizes[m]);
        for (size_t k = 0; k < sizes[m]; k++)
            bufs[m][k] = (uint8_t)(m * 31 + k * 7);
        bool lend = sizes[m] > 100;
        int err = kumo_conn_send(c, &(struct iovec){bufs[m], sizes[m]}, 1, lend ? zc_release : NULL,
                                 NULL);
        cr_assert_eq(err, 0, "send %d: %s", m, kumo_transport_strerror(err));
        lent += lend;
    }
    for (int m = 0; m < N; m++) {
        tt_ev r = tt_recv(rx);
        cr_assert_eq(r.len, sizes[m], "message %d: %zu bytes, sent %zu", m, r.len, sizes[m]);
        cr_assert_eq(memcmp(r.data, bufs[m], sizes[m]), 0, "message %d differs", m);
        tt_ev_free(&r);
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += TT_WAIT_NS / 1000000000;
    pthread_mutex_lock(&zc_rel.mu);
    while (zc_rel.n < lent && pthread_cond_timedwait(&zc_rel.cv, &zc_rel.mu, &dl) == 0)
        ;
    unsigned got = zc_rel.n;
    pthread_mutex_unlock(&zc_rel.mu);
    cr_assert_eq(got, lent, "%u of %u lent buffers released", got, lent);
    for (int m = 0; m < N; m++)
        free(bufs[m]);
    kumo_transport_free(t);
    tt_ep_free(rx);
    tt_ep_free(tx);
    kumo_log_set_sink(NULL, NULL);
    kumo_log_set_level(KUMO_LOG_WARN);
    tt_stop(eng);
    cr_assert(tt_logged("zero-copy"), "no batch went by SENDMSG_ZC: the test tests nothing");
}
