/*
 * The stream transports, "tcp" (transport/tcp/) and "shm" (transport/shm/),
 * share this implementation: the same frames (wire.h) over one link per
 * pair of endpoints.  They differ in where the bytes go:
 *  - tcp: a TCP socket driven by the endpoint's shard's io_uring;
 *  - shm: two SPSC byte rings (ring.h) in a memfd that the connector
 *    creates and passes, with an eventfd per side, over a Unix socket
 *    (SCM_RIGHTS) during the handshake.  Afterwards the socket carries
 *    nothing: its EOF says the peer process died or dropped the link.  The
 *    rings are polled by an engine poller while the shard is awake; a side
 *    about to park sets its "sleeping" flag in the ring header and
 *    re-checks, and the other side writes the eventfd only when it sees the
 *    flag (see ring.h).  Indices read from shared memory are checked before
 *    use: an impossible one closes the link like a malformed frame.
 *
 * Each tcp endpoint listens on its own socket (multishot accept) and receives
 * into a provided-buffer ring registered on its shard's ring (multishot
 * recv; a plain recv into the link's buffer when the kernel lacks buffer
 * rings).  While big DATA frames come, the link cancels its multishot recv
 * and receives their bodies straight into the messages (big_frame).  All
 * lightweight connections between two endpoints share one socket (the
 * link).  The wire format is in wire.h.
 *
 * Links.  A link is set up by HELLO / HELLO_ACK.  When two endpoints
 * connect to each other at the same time (crossed connects), the link
 * initiated by the endpoint with the smaller address wins: an endpoint that
 * gets a HELLO while its own link to that peer is still being set up keeps
 * the peer's link if the peer's address is smaller (moving its own waiting
 * connects onto it), and answers CROSSED otherwise.  A connector told
 * CROSSED waits for the peer's link, retrying with backoff within the
 * connect timeout if none comes (the other link may have been a stale one
 * whose end has not reached us yet).  No link is ever replaced, so a link
 * that was up is only ever ended by a failure, a BYE or the test hook.
 *
 * Sending.  Each outgoing lightweight connection has a queue; the link
 * takes one frame from each connection with pending data in turn (round
 * robin), so a large message, cut into fragment_size frames, holds small
 * messages on other connections up by one frame at most.  Link-level
 * control frames (handshake, heartbeats) go first in every batch.  One
 * sendmsg per link is in flight at a time (two sends on one socket may
 * complete out of order); sends made during one loop iteration are
 * gathered into one sendmsg by a deferred flush (engine kumo__shard_defer)
 * that runs right before the iteration submits.  Non-lent messages are
 * copied once into their queue entry; lent ones are referenced until the
 * kernel has taken every byte (then release runs).  A batch of at least
 * zerocopy_min lent bytes (and nothing copied) on a link that leaves the
 * host goes by SENDMSG_ZC; its entries and frame headers are then held
 * until the kernel's notification (struct zc_hold).
 *
 * Back-pressure.  Bytes accepted but not yet framed into a batch are the
 * link's queue; once it reaches send_queue_max every connection on the link
 * is busy (a flag in the connection slot: sends fail with -KUMO_EBUSY) until
 * it drains below half, when the kumo_conn_when_ready waits run.
 *
 * Receiving.  A complete single-frame message that lies whole in one
 * received buffer is delivered in place (zero copy); fragmented messages
 * are reassembled into one heap block that kumo_event_keep hands over
 * without a copy.  The bulk of a large body is received straight into that
 * block (recvmsg into [rest of the body, rtail]); only what shares a
 * provided buffer with a frame header is copied.
 *
 * Failure.  EOF, a socket error, a malformed frame, or no frame for
 * heartbeat_timeout ends the link: every connection on it fails and the
 * endpoint gets one ConnectionLost if it had any.  Idle links send PING
 * every heartbeat_interval.  The break-link hook resets the socket
 * (SO_LINGER 0), so the peer sees the failure too.
 *
 * Closing an endpoint sends what is queued, then BYE on each link, then
 * half-closes and waits (bounded by heartbeat_timeout) for the peer to
 * close, so data in flight is not destroyed by a reset.
 *
 * Connections to the endpoint's own address use a socketless "self" link
 * whose batches are fed straight into its own frame parser.
 */
#include "transport/stream/wire.h"

#include "engine/alloc.h"
#include "engine/list.h"
#include "engine/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <linux/membarrier.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/shm/ring.h"
#include "transport/stream/stream.h"

#include "transport/stream/auth.h"

#define TCP_TAG 't'
#define TCP_ADDR_LEN KUMO__TCP_ADDR_LEN
#define SHM_TAG 's'
#define SHM_ADDR_LEN KUMO__SHM_ADDR_LEN

#define MAX_IOV 256
#define MAX_FRAMES 128
#define BATCH_BYTES (4u << 20)
#define CTLQ_MAX 1024
/* Small copied messages are framed straight into the link's staging
 * buffer (their one copy) when their connection has nothing queued: a
 * batch of them is one iovec instead of two per message, and needs no
 * queue entry.  The buffer is double: one fills while the other flies.
 * A buffer that reaches STAGE_MAX is sealed into a chain (struct sealed)
 * and a fresh one started, so a burst larger than one buffer stays on
 * this path; the chain counts toward send_queue_max like queued bytes. */
#define STAGE_MSG_MAX 1024
#define STAGE_MAX (256u << 10)

/* ------------------------------------------------------------------ */
/* Types                                                               */
/* ------------------------------------------------------------------ */

/* A full staging buffer waiting for (or in) a batch. */
struct sealed {
    struct sealed *next;
    uint8_t *bytes;
    size_t len;
};

struct tcp_t {
    struct kumo_transport base;
    kumo_tcp_config cfg; /* shm: the fields that apply */
    bool shm;
    bool zc;             /* tcp with SENDMSG_ZC */
    uint32_t ring_bytes; /* shm: bytes per ring direction */
    struct in_addr ip;
    uint8_t *cookie; /* the shared secret links prove (auth.h) */
    size_t cookie_len;
    _Atomic unsigned next_k;
    pthread_mutex_t mu;
    struct tcp_ep *eps;
};

/* An outgoing message (or OPEN / CLOSE) waiting in a connection's queue. */
struct txm {
    struct txm *next;
    uint8_t type;
    uint8_t rel;
    bool queued;       /* still in its connection's queue */
    unsigned inflight; /* frames of it in the batch being sent */
    size_t len, off;   /* payload, and how much is framed */
    int niov, iov_i;   /* framing cursor: iov[iov_i] + iov_off */
    size_t iov_off;
    struct iovec *iov;
    kumo_release_fn release;
    void *release_arg;
    size_t size;
    struct iovec inl[];
};

struct link;

struct out_conn {
    struct out_conn *prev, *next; /* link->outs */
    struct out_conn *rr_next;
    bool active;  /* in the link's round robin */
    bool closing; /* CLOSE queued: freed when framed */
    struct link *l;
    struct kumo__conn *rec; /* NULL once the user closed it */
    uint32_t wid;
    struct txm *qh, **qt;
};

/* A heap-held received message: kumo_event_keep hands it over as is. */
struct in_conn {
    struct in_conn *hnext;
    struct in_conn *prev, *next;
    uint32_t wid;
    uint64_t id;
    struct kumo__rx_block *asm_; /* message being reassembled */
    uint64_t total, have;
};

enum lstate {
    L_CONNECTING = 1, /* TCP connect in flight */
    L_HELLO_SENT,     /* waiting for HELLO_ACK */
    L_RETRY_WAIT,     /* told CROSSED, no other link yet: retry later */
    L_WAIT_HELLO,     /* accepted, waiting for HELLO */
    L_REJECTING,      /* sending a refusing HELLO_ACK, then closing */
    L_ACK_SENDING,    /* shm: sending HELLO_ACK with our eventfd; rings next */
    L_WAIT_AUTH,      /* accepted, HELLO_ACK sent: only AUTH may come */
    L_UP,
    L_CLOSING, /* our endpoint is closing: flush, BYE, half-close, wait */
    L_DEAD,
};

struct tcp_ep;

/* A batch sent with SENDMSG_ZC.  The kernel reads its buffers until its
 * notification, so the hold keeps them: the frames' entries (their
 * inflight counts are dropped at the notification, not at the send's
 * result) and the frame headers (the link takes a fresh header array). */
struct zc_hold {
    struct kumo__completion c;
    struct link *l;
    struct txm **fr;
    unsigned nfr;
    uint8_t (*hdrs)[KUMO__TCP_HDR_MAX];
    unsigned notifs; /* notifications still to come */
    bool sending;    /* the batch has not finished sending */
};

struct link {
    struct link *prev, *next; /* ep->links */
    struct tcp_ep *ep;
    int fd;
    enum lstate state;
    bool outgoing, self, dirty, bye_pending, bye_sent, shut_wr, close_after_send, rst;
    bool send_inflight, recv_armed;
    kumo_address peer;
    bool peer_known;
    struct sockaddr_storage sa;
    socklen_t salen;
    unsigned ops;  /* SQEs in flight that name this link */
    unsigned busy; /* handlers of this link on the stack */
    struct kumo__completion c_connect, c_recv, c_send;
    struct kumo__timer timer;
    uint64_t last_rx, last_tx, deadline, retry_at;
    unsigned retries;
    uint8_t nonce_c[KUMO__NONCE], nonce_a[KUMO__NONCE]; /* the handshake's (auth.h) */
    struct kumo__connect_req *waiters;
    int sockbuf; /* SO_SNDBUF/RCVBUF from hints, 0 = default */

    /* receive */
    uint8_t hdr[KUMO__TCP_HDR_MAX];
    unsigned hdr_have;
    bool in_body;
    struct kumo__tcp_hdr h;
    uint64_t body_have;
    uint8_t *dest; /* where the body goes */
    struct in_conn *cur;
    struct kumo__rx_block *single;
    uint8_t ctl[KUMO__TCP_CTL_MAX];
    uint8_t *rbuf; /* plain recv (no buffer ring) */
    /* direct receive (arm_recv): the rest of a DATA body straight into its
     * message, then up to a header's worth of what follows into rtail */
    bool rx_direct;                 /* such a receive is in flight */
    bool rx_switch;                 /* the multishot recv is being cancelled for it */
    bool rx_logged;                 /* (the first switch is logged) */
    size_t rx_body;                 /* its body part (dio[0]); 0: rtail only */
    struct kumo__rx_block *rx_hold; /* its message, kept for the kernel after link_kill */
    uint8_t rtail[KUMO__TCP_HDR_MAX];
    struct iovec dio[2];
    struct msghdr dmsg;
    struct in_conn **ht;
    unsigned htcap, nins;
    struct in_conn *ins;

    /* send */
    struct out_conn *outs;
    struct out_conn *rr_head, **rr_tail;
    uint32_t next_wid;
    uint8_t ctlq[CTLQ_MAX];
    unsigned ctlq_len;
    uint8_t *stage, *stage_fly;
    size_t stage_len, stage_cap, stage_fly_cap;
    struct sealed *sealed, **sealed_tail; /* full buffers, oldest first */
    size_t sealed_bytes;
    struct sealed *sealed_fly; /* those in the batch in flight */
    uint8_t *stage_spare;      /* a STAGE_MAX buffer to reuse */
    uint8_t ctl_inflight[CTLQ_MAX];
    struct iovec *iov;
    unsigned niov, iov_start;
    uint8_t (*hdrs)[KUMO__TCP_HDR_MAX];
    struct txm **fr;
    unsigned nfr;
    size_t batch_lent;           /* payload bytes of the batch from lent messages */
    bool batch_copied;           /* the batch has control or staged (copied) bytes */
    size_t txq_bytes;            /* payload in connection queues, not yet framed */
    bool over;                   /* over send_queue_max: connections are busy */
    struct kumo__ready *readies; /* kumo_conn_when_ready waits */
    struct zc_hold *zc;          /* the batch in flight goes by SENDMSG_ZC */
    bool zc_ok;                  /* lent batches may go by SENDMSG_ZC (link_up) */
    bool zc_used;                /* (logged once per link) */
    struct msghdr msg;
    struct link *dirty_next;

    /* shm */
    bool ring;         /* rings are up: data goes through them */
    bool ring_blocked; /* a batch waits for ring space */
    size_t ring_unpub; /* bytes ring_send_now wrote, not yet published */
    void *map;
    size_t map_len;
    struct kumo__shm_ring rin, rout;
    int efd, peer_efd;
    uint64_t efd_buf;
    struct kumo__completion c_efd;
    struct link *ring_next, *ring_prev;
    int rx_fds[4];
    unsigned nrx_fds;
    int tx_fds[2];
    unsigned ntx_fds;
    struct msghdr rmsg;
    struct iovec riov;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } rcm, tcm;
};

struct tcp_ep {
    struct kumo_endpoint base;
    /* peers refused or handshakes given up, and the WARN lines' rate */
    uint64_t refused, refused_quiet, refused_logged_at;
    struct tcp_ep *next_all;
    struct tcp_t *t;
    struct kumo__shard *sh;
    int lfd;
    uint64_t inc;
    bool armed, closing, accept_armed, final_done;
    unsigned ops;
    struct kumo__completion c_accept;
    struct kumo__timer accept_retry;
    /* provided buffers */
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    uint8_t *bufs;
    unsigned nbufs;
    uint32_t bufsz;
    int bgid; /* -1: none */
    struct link *links;
    struct link *dirty;
    struct kumo__defer flush;
    struct link *self_link;
    uint64_t next_in;
    struct kumo__task arm_task;
    /* shm */
    struct link *rings; /* links with rings up */
    struct kumo__poller poller;
    unsigned nrings; /* links in `rings` */
    struct link **pollv;
    unsigned pollcap;
    struct sockaddr_un sun;
    socklen_t sunlen;
};

static inline struct tcp_t *T(struct kumo_transport *t)
{
    return (struct tcp_t *)t;
}
static inline struct tcp_ep *E(struct kumo_endpoint *ep)
{
    return (struct tcp_ep *)ep;
}

#define TNAME(ep) ((ep)->t->shm ? "shm" : "tcp")
#define CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static void link_kill(struct link *l, int err, bool report, const char *why);
static void link_maybe_free(struct link *l);
static void ep_maybe_closed(struct tcp_ep *ep);
static void mark_dirty(struct link *l);
static void arm_recv(struct link *l);
static void link_arm_timer(struct link *l, uint64_t at);
static void resolve_waiters(struct link *l);
static void ring_start(struct link *l);
static void shm_release(struct link *l);
static int shm_setup_connector(struct link *l);
static const char *shm_setup_acceptor(struct link *l);
static void ring_push(struct link *l);
static bool ring_send_now(struct link *l, struct out_conn *oc, const struct iovec *iov, int n,
                          size_t len);
static void ring_publish(struct link *l);
static void batch_done(struct link *l);
static void ring_stop(struct link *l);
static long ring_drain(struct link *l);
static void efd_done(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe);
static unsigned shm_poll(struct kumo__shard *sh, struct kumo__poller *p);
static bool shm_prepark(struct kumo__shard *sh, struct kumo__poller *p);

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

/* Bytes framed into staging buffers and not yet in a batch. */
static size_t staged(const struct link *l)
{
    return l->sealed_bytes + l->stage_len;
}

static void sealed_free(struct sealed *z)
{
    while (z) {
        struct sealed *next = z->next;
        kumo__free(z->bytes, STAGE_MAX);
        kumo__free(z, sizeof *z);
        z = next;
    }
}

/* Seals the full staging buffer into the chain and starts an empty one.
 * False (nothing changed) when there is no memory for either. */
static bool stage_seal(struct link *l)
{
    struct sealed *z = kumo__alloc(sizeof *z);
    uint8_t *fresh = l->stage_spare ? l->stage_spare : kumo__alloc(STAGE_MAX);
    if (!z || !fresh) {
        kumo__free(z, sizeof *z);
        if (fresh != l->stage_spare)
            kumo__free(fresh, STAGE_MAX);
        return false;
    }
    l->stage_spare = NULL;
    *z = (struct sealed){.bytes = l->stage, .len = l->stage_len};
    *l->sealed_tail = z;
    l->sealed_tail = &z->next;
    l->sealed_bytes += l->stage_len;
    l->stage = fresh;
    l->stage_len = 0;
    return true;
}

static struct kumo__shard *ep_sh(struct tcp_ep *ep)
{
    if (!ep->sh)
        ep->sh = kumo__shard_current();
    return ep->sh;
}

static struct io_uring_sqe *get_sqe(struct kumo__shard *sh)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
    if (!sqe) {
        io_uring_submit(&sh->ring);
        sh->pending_sqes = 0;
        sqe = io_uring_get_sqe(&sh->ring);
    }
    sh->pending_sqes++;
    return sqe;
}

static int map_connect_errno(int res)
{
    switch (res) {
    case -ECONNREFUSED:
        return -KUMO_ENOTFOUND;
    case -ETIMEDOUT:
        return -KUMO_ETIMEOUT;
    case -EMFILE:
    case -ENFILE:
    case -ENOBUFS:
    case -ENOMEM:
    case -EADDRNOTAVAIL:
        return -KUMO_ENORESOURCES;
    default:
        return -KUMO_ECONNFAILED;
    }
}

static void addr_make_tcp(kumo_address *a, struct in_addr ip, uint16_t port_host, uint64_t inc)
{
    memset(a, 0, sizeof *a);
    a->len = TCP_ADDR_LEN;
    a->bytes[0] = KUMO__ADDR_VERSION;
    a->bytes[1] = TCP_TAG;
    memcpy(a->bytes + 2, &ip.s_addr, 4);
    a->bytes[6] = (uint8_t)(port_host >> 8);
    a->bytes[7] = (uint8_t)port_host;
    kumo__put64(a->bytes + 8, inc);
}

static void addr_make_shm(kumo_address *a, uint32_t pid, uint64_t inc)
{
    memset(a, 0, sizeof *a);
    a->len = SHM_ADDR_LEN;
    a->bytes[0] = KUMO__ADDR_VERSION;
    a->bytes[1] = SHM_TAG;
    kumo__put32(a->bytes + 2, pid);
    kumo__put64(a->bytes + 6, inc);
}

/* An shm endpoint listens on an abstract Unix socket named after its
 * address. */
static void shm_sun(uint32_t pid, uint64_t inc, struct sockaddr_un *sun, socklen_t *len)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    int n = snprintf(sun->sun_path + 1, sizeof sun->sun_path - 1, "kumo-shm/%u/%016llx", pid,
                     (unsigned long long)inc);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* The socket address behind a transport address of this flavor. */
static bool addr_sockaddr(bool shm, const kumo_address *a, struct sockaddr_storage *ss,
                          socklen_t *len)
{
    if (a->len < 2 || a->bytes[0] != KUMO__ADDR_VERSION)
        return false;
    if (!shm) {
        if (a->len != TCP_ADDR_LEN || a->bytes[1] != TCP_TAG)
            return false;
        struct sockaddr_in *sa = (struct sockaddr_in *)ss;
        memset(ss, 0, sizeof *ss);
        sa->sin_family = AF_INET;
        memcpy(&sa->sin_addr.s_addr, a->bytes + 2, 4);
        sa->sin_port = htons((uint16_t)(a->bytes[6] << 8 | a->bytes[7]));
        *len = sizeof *sa;
        return true;
    }
    if (a->len != SHM_ADDR_LEN || a->bytes[1] != SHM_TAG)
        return false;
    memset(ss, 0, sizeof *ss);
    shm_sun(kumo__get32(a->bytes + 2), kumo__get64(a->bytes + 6), (struct sockaddr_un *)ss, len);
    return true;
}

void kumo__stream_address_str(const kumo_address *a, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (a->len >= 2 && a->bytes[1] == SHM_TAG && addr_sockaddr(true, a, &ss, &sl)) {
        snprintf(buf, len, "shm://%u/%016llx", kumo__get32(a->bytes + 2),
                 (unsigned long long)kumo__get64(a->bytes + 6));
        return;
    }
    if (!addr_sockaddr(false, a, &ss, &sl)) {
        snprintf(buf, len, "stream://?");
        return;
    }
    struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
    uint64_t inc = kumo__get64(a->bytes + 8);
    if (!inc) /* a place: as kumo__tcp_address_parse reads it */
        snprintf(buf, len, "tcp://%s:%u", ip, ntohs(sa->sin_port));
    else
        snprintf(buf, len, "tcp://%s:%u/%016llx", ip, ntohs(sa->sin_port), (unsigned long long)inc);
}

int kumo__tcp_address_parse(const char *s, kumo_address *out)
{
    const char *colon = strchr(s, ':');
    char ip[INET_ADDRSTRLEN];
    if (!colon || (size_t)(colon - s) >= sizeof ip)
        return -EINVAL;
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = 0;
    struct in_addr in;
    uint64_t port, inc = 0;
    const char *r;
    if (inet_pton(AF_INET, ip, &in) != 1 || !kumo__parse_dec(colon + 1, "/", 65535, &port, &r))
        return -EINVAL;
    /* Without "/<incarnation>": the place, whatever endpoint listens there. */
    if (*r && (*r != '/' || !kumo__parse_hex(r + 1, 16, "", &inc, &r) || *r || !inc))
        return -EINVAL;
    addr_make_tcp(out, in, (uint16_t)port, inc);
    return 0;
}

int kumo__shm_address_parse(const char *s, kumo_address *out)
{
    uint64_t pid, inc;
    const char *r;
    if (!kumo__parse_dec(s, "/", UINT32_MAX, &pid, &r) || *r != '/' ||
        !kumo__parse_hex(r + 1, 16, "", &inc, &r) || *r)
        return -EINVAL;
    addr_make_shm(out, (uint32_t)pid, inc);
    return 0;
}

static const char *peer_str(struct link *l, char *buf, size_t len)
{
    if (l->peer_known)
        return kumo_address_str(&l->peer, buf, len), buf;
    if (l->self)
        return snprintf(buf, len, "self"), buf;
    if (l->sa.ss_family == AF_INET) {
        struct sockaddr_in *sa = (struct sockaddr_in *)&l->sa;
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
        snprintf(buf, len, "%s:%u (before HELLO)", ip, ntohs(sa->sin_port));
    } else {
        snprintf(buf, len, "a local process (before HELLO)");
    }
    return buf;
}

/* ------------------------------------------------------------------ */
/* Queue entries                                                       */
/* ------------------------------------------------------------------ */

static struct txm *txm_new(uint8_t type, size_t extra)
{
    size_t size = sizeof(struct txm) + extra;
    struct txm *m = kumo__alloc(size);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->type = type;
    m->size = size;
    return m;
}

static void txm_free(struct txm *m)
{
    if (m->release)
        m->release(m->release_arg);
    kumo__free(m, m->size);
}

static void oc_push(struct out_conn *oc, struct txm *m)
{
    m->queued = true;
    m->next = NULL;
    *oc->qt = m;
    oc->qt = &m->next;
    if (!oc->active) {
        struct link *l = oc->l;
        oc->active = true;
        oc->rr_next = NULL;
        *l->rr_tail = oc;
        l->rr_tail = &oc->rr_next;
    }
}

static void oc_unlink(struct link *l, struct out_conn *oc)
{
    KUMO__LIST_REMOVE(l->outs, oc, prev, next);
}

/* Drops an out_conn's queue (the link died or the endpoint is gone).
 * Entries a send in flight still reads are freed when it completes. */
static void oc_drop(struct out_conn *oc)
{
    struct txm *m = oc->qh;
    while (m) {
        struct txm *n = m->next;
        m->queued = false;
        if (!m->inflight)
            txm_free(m);
        m = n;
    }
    oc->qh = NULL;
    oc->qt = &oc->qh;
    kumo__free(oc, sizeof *oc);
}

/* ------------------------------------------------------------------ */
/* Incoming connection table (wire id -> in_conn)                      */
/* ------------------------------------------------------------------ */

static struct in_conn *in_find(struct link *l, uint32_t wid)
{
    if (!l->htcap)
        return NULL;
    for (struct in_conn *ic = l->ht[wid & (l->htcap - 1)]; ic; ic = ic->hnext)
        if (ic->wid == wid)
            return ic;
    return NULL;
}

static bool in_add(struct link *l, struct in_conn *ic)
{
    if (l->nins + 1 > l->htcap / 2) {
        unsigned ncap = l->htcap ? l->htcap * 2 : 16;
        struct in_conn **nt = kumo__zalloc(sizeof(*nt) * ncap);
        if (!nt)
            return false;
        for (unsigned i = 0; i < l->htcap; i++)
            for (struct in_conn *x = l->ht[i], *n; x; x = n) {
                n = x->hnext;
                x->hnext = nt[x->wid & (ncap - 1)];
                nt[x->wid & (ncap - 1)] = x;
            }
        kumo__free(l->ht, sizeof(*l->ht) * l->htcap);
        l->ht = nt;
        l->htcap = ncap;
    }
    ic->hnext = l->ht[ic->wid & (l->htcap - 1)];
    l->ht[ic->wid & (l->htcap - 1)] = ic;
    KUMO__LIST_PUSH(l->ins, ic, prev, next);
    l->nins++;
    return true;
}

static void in_free(struct in_conn *ic)
{
    if (ic->asm_)
        kumo_rx_free(&ic->asm_->rx);
    kumo__free(ic, sizeof *ic);
}

static void in_remove(struct link *l, struct in_conn *ic)
{
    struct in_conn **pp = &l->ht[ic->wid & (l->htcap - 1)];
    while (*pp != ic)
        pp = &(*pp)->hnext;
    *pp = ic->hnext;
    KUMO__LIST_REMOVE(l->ins, ic, prev, next);
    l->nins--;
}

/* ------------------------------------------------------------------ */
/* Link objects                                                        */
/* ------------------------------------------------------------------ */

static void link_timer_fn(struct kumo__shard *sh, struct kumo__timer *t);
static void recv_done(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe);
static void send_done(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe);
static void connect_done(struct kumo__shard *sh, struct kumo__completion *c,
                         struct io_uring_cqe *cqe);

static struct link *link_new(struct tcp_ep *ep, int fd)
{
    struct link *l = kumo__zalloc(sizeof *l);
    if (!l)
        return NULL;
    l->iov = kumo__alloc(sizeof(*l->iov) * MAX_IOV);
    l->hdrs = kumo__alloc(sizeof(*l->hdrs) * (MAX_FRAMES + 1));
    l->fr = kumo__alloc(sizeof(*l->fr) * MAX_FRAMES);
    if (ep->bgid < 0)
        l->rbuf = kumo__alloc(ep->t->cfg.rx_buffer_size);
    if (!l->iov || !l->hdrs || !l->fr || (ep->bgid < 0 && !l->rbuf)) {
        kumo__free(l->iov, sizeof(*l->iov) * MAX_IOV);
        kumo__free(l->hdrs, sizeof(*l->hdrs) * (MAX_FRAMES + 1));
        kumo__free(l->fr, sizeof(*l->fr) * MAX_FRAMES);
        kumo__free(l->rbuf, ep->t->cfg.rx_buffer_size);
        kumo__free(l, sizeof *l);
        return NULL;
    }
    l->ep = ep;
    l->fd = fd;
    l->rr_tail = &l->rr_head;
    l->sealed_tail = &l->sealed;
    l->c_connect.fn = connect_done;
    l->c_recv.fn = recv_done;
    l->c_send.fn = send_done;
    l->c_efd.fn = efd_done;
    l->efd = l->peer_efd = -1;
    kumo__timer_init(&l->timer);
    l->timer.fn = link_timer_fn;
    KUMO__LIST_PUSH(ep->links, l, prev, next);
    l->last_rx = l->last_tx = kumo__now_ns();
    return l;
}

/* The link to `peer`, if any.  An incoming link whose peer has not proven
 * the cookie yet (ACK sent, AUTH not checked) is not one: anybody can
 * claim an address in a HELLO, and such a link must not stand in the way
 * of the real peer's link until its handshake times out. */
static struct link *find_link(struct tcp_ep *ep, const kumo_address *peer, struct link *except)
{
    for (struct link *l = ep->links; l; l = l->next)
        if (l != except && l->peer_known && l->state != L_DEAD && l->state != L_REJECTING &&
            l->state != L_ACK_SENDING && l->state != L_WAIT_AUTH && kumo_address_eq(&l->peer, peer))
            return l;
    return NULL;
}

static void link_maybe_free(struct link *l)
{
    if (l->state != L_DEAD || l->ops || l->busy || l->dirty)
        return;
    struct tcp_ep *ep = l->ep;
    if (l->fd >= 0)
        close(l->fd);
    shm_release(l);
    KUMO__LIST_REMOVE(ep->links, l, prev, next);
    if (ep->self_link == l)
        ep->self_link = NULL;
    kumo__free(l->ht, sizeof(*l->ht) * l->htcap);
    kumo__free(l->iov, sizeof(*l->iov) * MAX_IOV);
    kumo__free(l->hdrs, sizeof(*l->hdrs) * (MAX_FRAMES + 1));
    kumo__free(l->fr, sizeof(*l->fr) * MAX_FRAMES);
    kumo__free(l->rbuf, ep->t->cfg.rx_buffer_size);
    if (l->rx_hold)
        kumo_rx_free(&l->rx_hold->rx);
    kumo__free(l->stage, l->stage_cap);
    kumo__free(l->stage_fly, l->stage_fly_cap);
    sealed_free(l->sealed);
    sealed_free(l->sealed_fly);
    kumo__free(l->stage_spare, STAGE_MAX);
    kumo__free(l, sizeof *l);
    ep_maybe_closed(ep);
}

/* Finishes every waiting connect with `err`. */
static void fail_waiters(struct link *l, int err)
{
    while (l->waiters) {
        struct kumo__connect_req *r = l->waiters;
        l->waiters = r->next;
        kumo__connect_done(r, NULL, err);
    }
}

/*
 * Ends a link.  With `report`, a link that was up gives one ConnectionLost
 * if it carried any connection.  Waiting connects fail with `err` (mapped
 * to a connect error).  Everything is released as soon as no kernel
 * operation refers to the link any more.
 */
/* ---- back-pressure (kumo_conn_when_ready) ---- */

static void readies_done(struct link *l, int err)
{
    while (l->readies) {
        struct kumo__ready *r = l->readies;
        l->readies = r->next;
        kumo__ready_done(r, err);
    }
}

static void link_set_over(struct link *l, bool over)
{
    l->over = over;
    for (struct out_conn *oc = l->outs; oc; oc = oc->next)
        if (oc->rec)
            atomic_store_explicit(&oc->rec->busy, over, memory_order_relaxed);
    if (!over)
        readies_done(l, 0);
}

/* After accepting a send: over the limit, the link's connections are busy. */
static void check_over(struct link *l)
{
    if (!l->over && staged(l) + l->txq_bytes >= l->ep->t->cfg.send_queue_max)
        link_set_over(l, true);
}

/* After framing a batch: below half the limit, they are not. */
static void check_drained(struct link *l)
{
    if (l->over && staged(l) + l->txq_bytes < l->ep->t->cfg.send_queue_max / 2)
        link_set_over(l, false);
}

void kumo__stream_when_ready(struct kumo_endpoint *bep, struct kumo__conn *c, struct kumo__ready *r)
{
    struct out_conn *oc = c->impl;
    struct link *l = oc ? oc->l : NULL;
    if (!l || l->state == L_DEAD) {
        kumo__ready_done(r, -KUMO_ECONNLOST);
        return;
    }
    if (!l->over) {
        kumo__ready_done(r, 0);
        return;
    }
    r->next = l->readies;
    l->readies = r;
}

static void link_kill(struct link *l, int err, bool report, const char *why)
{
    if (l->state == L_DEAD)
        return;
    enum lstate prev = l->state;
    l->state = L_DEAD;
    struct tcp_ep *ep = l->ep;
    struct kumo__shard *sh = ep_sh(ep);
    kumo__timer_cancel(&sh->timers, &l->timer);
    if (why) {
        char pb[128];
        kumo__log(l->rst                     ? KUMO_LOG_INFO
                  : report && (prev == L_UP) ? KUMO_LOG_WARN
                                             : KUMO_LOG_DEBUG,
                  "%s: link to %s closed: %s", TNAME(l->ep), peer_str(l, pb, sizeof pb), why);
    }
    int werr = err == -KUMO_ENOTFOUND || err == -KUMO_ETIMEOUT || err == -KUMO_ENORESOURCES ||
                       err == -KUMO_ECLOSED || err == -KUMO_EAUTH
                   ? err
                   : -KUMO_ECONNFAILED;
    fail_waiters(l, werr);
    bool had = l->ins != NULL;
    while (l->outs) {
        struct out_conn *oc = l->outs;
        l->outs = oc->next;
        if (oc->rec) {
            had = true;
            kumo__conn_fail(oc->rec);
            oc->rec->impl = NULL;
        }
        oc_drop(oc);
    }
    l->rr_head = NULL;
    l->rr_tail = &l->rr_head;
    readies_done(l, -KUMO_ECONNLOST); /* after the sends fail, so a waiter sees that */
    if (l->rx_direct && l->rx_body) {
        /* The kernel may still write into the message being received: it
         * lives until the receive has completed (link_maybe_free). */
        if (l->single) {
            l->rx_hold = l->single;
            l->single = NULL;
        } else {
            l->rx_hold = l->cur->asm_;
            l->cur->asm_ = NULL;
        }
    }
    while (l->ins) {
        struct in_conn *ic = l->ins;
        l->ins = ic->next;
        in_free(ic);
    }
    l->nins = 0;
    if (l->htcap)
        memset(l->ht, 0, sizeof(*l->ht) * l->htcap);
    if (l->single) {
        kumo_rx_free(&l->single->rx);
        l->single = NULL;
    }
    if (l->ring) {
        ring_stop(l);
        if (l->send_inflight) {
            /* a batch waiting for ring space: no completion will end it */
            batch_done(l);
            l->send_inflight = false;
            l->ring_blocked = false;
        }
    }
    if (l->efd >= 0 && l->ops) {
        struct io_uring_sqe *sqe = get_sqe(sh);
        io_uring_prep_cancel_fd(sqe, l->efd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data(sqe, NULL);
    }
    if (l->fd >= 0) {
        if (l->rst) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(l->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        shutdown(l->fd, SHUT_RDWR);
        if (l->ops) {
            struct io_uring_sqe *sqe = get_sqe(sh);
            io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data(sqe, NULL);
        }
    }
    if (report && prev == L_UP && had && l->peer_known) {
        kumo_address peer = l->peer;
        l->busy++;
        kumo__emit_lost(&ep->base, &peer, err ? err : -KUMO_ECONNLOST);
        l->busy--;
    }
    link_maybe_free(l);
}

/* Queues a link-level control frame (handshake, PING). */
static bool ctl_queue(struct link *l, uint8_t type, const void *payload, uint32_t len)
{
    if (l->ctlq_len + KUMO__TCP_HDR + len > CTLQ_MAX)
        return false;
    l->ctlq_len += kumo__tcp_hdr_encode(l->ctlq + l->ctlq_len, type, 0, 0, len, 0);
    if (len)
        memcpy(l->ctlq + l->ctlq_len, payload, len);
    l->ctlq_len += len;
    mark_dirty(l);
    return true;
}

/* ------------------------------------------------------------------ */
/* Connections on an up link                                           */
/* ------------------------------------------------------------------ */

/* Makes an outgoing connection on an up link and finishes `req`. */
static void open_conn(struct link *l, struct kumo__connect_req *req)
{
    struct out_conn *oc = kumo__zalloc(sizeof *oc);
    struct txm *m = oc ? txm_new(KUMO__T_OPEN, 0) : NULL;
    struct kumo__conn *rec = m ? kumo__conn_alloc(&l->ep->base, oc) : NULL;
    if (!rec) {
        kumo__free(oc, sizeof *oc);
        if (m)
            kumo__free(m, m->size);
        kumo__connect_done(req, NULL, -KUMO_ENORESOURCES);
        return;
    }
    oc->l = l;
    oc->rec = rec;
    atomic_store_explicit(&rec->busy, l->over, memory_order_relaxed);
    oc->wid = ++l->next_wid;
    if (!oc->wid)
        oc->wid = ++l->next_wid;
    oc->qt = &oc->qh;
    KUMO__LIST_PUSH(l->outs, oc, prev, next);
    m->rel = (uint8_t)req->rel;
    oc_push(oc, m);
    mark_dirty(l);
    kumo__connect_done(req, rec, 0);
}

/* The peer's link `to` is up and is the one to use: the connects waiting
 * on `from` are opened on it, in order. */
static void open_waiters_on(struct link *from, struct link *to)
{
    struct kumo__connect_req *w = from->waiters;
    from->waiters = NULL;
    while (w) {
        struct kumo__connect_req *n = w->next;
        open_conn(to, w);
        w = n;
    }
}

static void resolve_waiters(struct link *l)
{
    while (l->waiters && l->state == L_UP) {
        struct kumo__connect_req *r = l->waiters;
        l->waiters = r->next;
        open_conn(l, r);
    }
}

/* Whether a link's bytes leave this host: when both ends share an address
 * (or the peer is 127/8) the kernel copies zero-copy pages on local
 * delivery anyway, and SENDMSG_ZC only adds pinning and notifications
 * (perf/transport_tcp's tcp_oneway_*_kumo_zc lines: 2.5-4x slower over
 * loopback than the copying send). */
static bool link_leaves_host(struct link *l)
{
    struct sockaddr_in me, peer;
    socklen_t ml = sizeof me, pl = sizeof peer;
    if (l->fd < 0 || getsockname(l->fd, (struct sockaddr *)&me, &ml) ||
        getpeername(l->fd, (struct sockaddr *)&peer, &pl) || me.sin_family != AF_INET ||
        peer.sin_family != AF_INET)
        return false;
    uint32_t p = ntohl(peer.sin_addr.s_addr);
    return (p >> 24) != 127 && peer.sin_addr.s_addr != me.sin_addr.s_addr;
}

static void link_up(struct link *l)
{
    l->state = L_UP;
    struct tcp_t *t = l->ep->t;
    l->zc_ok = t->zc && (t->cfg.zerocopy_on_host || link_leaves_host(l));
    l->last_rx = kumo__now_ns();
    /* shm needs no heartbeats: the socket's EOF tells a dead peer */
    if (!l->ep->t->shm)
        link_arm_timer(l, l->last_rx + l->ep->t->cfg.heartbeat_interval_ns);
    l->busy++;
    resolve_waiters(l);
    l->busy--;
}

/* ------------------------------------------------------------------ */
/* Receiving                                                           */
/* ------------------------------------------------------------------ */

static bool malformed(struct link *l, const char *why)
{
    char pb[128];
    kumo__log(KUMO_LOG_WARN, "%s: malformed input from %s: %s; closing that link", TNAME(l->ep),
              peer_str(l, pb, sizeof pb), why);
    link_kill(l, -KUMO_ECONNLOST, true, NULL);
    return false;
}

static bool events_on(struct link *l)
{
    return l->state == L_UP;
}

static void deliver(struct link *l, struct in_conn *ic, struct kumo_rx *rx)
{
    kumo_event ev = {.kind = KUMO_EV_RECEIVED,
                     .conn = ic->id,
                     .iov = rx->iov,
                     .iovcnt = rx->iovcnt,
                     .len = rx->len,
                     .rx = rx};
    kumo__emit(&l->ep->base, &ev);
}

static bool process_hello(struct link *l, const uint8_t *p, uint32_t len);
static bool process_ack(struct link *l, const uint8_t *p, uint32_t len);
static bool process_auth(struct link *l, const uint8_t *p, uint32_t len);

/* The peer's endpoint is closing: its connections to us close, ours to it
 * are lost; then the link ends quietly. */
static void peer_bye(struct link *l)
{
    struct tcp_ep *ep = l->ep;
    kumo_address peer = l->peer;
    while (l->ins) {
        struct in_conn *ic = l->ins;
        in_remove(l, ic);
        kumo_event ev = {.kind = KUMO_EV_CONNECTION_CLOSED, .conn = ic->id};
        in_free(ic);
        kumo__emit(&ep->base, &ev);
        if (l->state != L_UP)
            return;
    }
    bool had_out = false;
    for (struct out_conn *oc = l->outs; oc; oc = oc->next)
        had_out |= oc->rec != NULL;
    link_kill(l, -KUMO_ECLOSED, false, "peer endpoint closed");
    if (had_out)
        kumo__emit_lost(&ep->base, &peer, -KUMO_ECLOSED);
}

/* A whole frame's payload is at p (len bytes). */
static bool frame(struct link *l, const uint8_t *p, uint32_t len)
{
    const struct kumo__tcp_hdr *h = &l->h;
    if (l->state == L_WAIT_HELLO) {
        if (h->type != KUMO__T_HELLO)
            return malformed(l, "first frame is not HELLO");
        return process_hello(l, p, len);
    }
    if (l->state == L_HELLO_SENT) {
        if (h->type != KUMO__T_HELLO_ACK)
            return malformed(l, "first frame is not HELLO_ACK");
        return process_ack(l, p, len);
    }
    if (l->state == L_REJECTING || l->state == L_CONNECTING || l->state == L_RETRY_WAIT)
        return true; /* nothing more is read from a link we are refusing */
    if (l->state == L_ACK_SENDING)
        return malformed(l, "frames on the shm socket after HELLO");
    if (l->state == L_WAIT_AUTH) {
        if (h->type != KUMO__T_AUTH)
            return malformed(l, "a frame before AUTH");
        return process_auth(l, p, len);
    }
    if (h->type == KUMO__T_HELLO || h->type == KUMO__T_HELLO_ACK)
        return malformed(l, "second handshake");
    bool ev = events_on(l);
    switch (h->type) {
    case KUMO__T_PING:
        return true;
    case KUMO__T_BYE:
        if (ev)
            peer_bye(l);
        else if (l->state == L_CLOSING)
            link_kill(l, -KUMO_ECLOSED, false, NULL);
        return false;
    case KUMO__T_OPEN: {
        if (p[0] != KUMO_RELIABLE_ORDERED)
            return malformed(l, "OPEN with an unsupported reliability");
        if (in_find(l, h->conn))
            return malformed(l, "OPEN of a connection already open");
        struct in_conn *ic = kumo__zalloc(sizeof *ic);
        if (ic)
            ic->wid = h->conn;
        if (!ic || !in_add(l, ic)) {
            kumo__free(ic, sizeof *ic);
            kumo__log(KUMO_LOG_WARN, "%s: out of memory for an incoming connection", TNAME(l->ep));
            link_kill(l, -KUMO_ENORESOURCES, true, "out of memory");
            return false;
        }
        ic->id = ++l->ep->next_in;
        if (ev) {
            kumo_event e = {.kind = KUMO_EV_CONNECTION_OPENED,
                            .conn = ic->id,
                            .reliability = KUMO_RELIABLE_ORDERED,
                            .address = &l->peer};
            kumo__emit(&l->ep->base, &e);
        }
        return true;
    }
    case KUMO__T_CLOSE: {
        struct in_conn *ic = in_find(l, h->conn);
        if (!ic)
            return malformed(l, "CLOSE of an unknown connection");
        if (ic->asm_)
            return malformed(l, "CLOSE in the middle of a message");
        in_remove(l, ic);
        uint64_t id = ic->id;
        in_free(ic);
        if (ev) {
            kumo_event e = {.kind = KUMO_EV_CONNECTION_CLOSED, .conn = id};
            kumo__emit(&l->ep->base, &e);
        }
        return true;
    }
    default:
        return malformed(l, "unexpected frame");
    }
}

/* Sets up the body of the DATA frame in l->h; p/n is what is at hand.
 * Returns false when the frame is malformed (link killed). */
/* Whether connection `id` of l is in the middle of a fragmented message
 * (so a frame with flags 0 is its last piece, not a message of its own). */
static bool in_find_asm(struct link *l, uint32_t id)
{
    struct in_conn *ic = in_find(l, id);
    return ic && ic->asm_;
}

static bool data_begin(struct link *l)
{
    const struct kumo__tcp_hdr *h = &l->h;
    struct in_conn *ic = in_find(l, h->conn);
    if (!ic)
        return malformed(l, "DATA for an unknown connection");
    l->cur = ic;
    if (h->flags & KUMO__F_FIRST) {
        if (ic->asm_)
            return malformed(l, "a message starts before the previous one ended");
        ic->asm_ = kumo__rx_block_new(h->total);
        if (!ic->asm_) {
            link_kill(l, -KUMO_ENORESOURCES, true, "out of memory for a message");
            return false;
        }
        ic->total = h->total;
        ic->have = 0;
        l->dest = ic->asm_->data;
        return true;
    }
    if (ic->asm_) {
        bool last = !(h->flags & KUMO__F_MORE);
        if (ic->have + h->len > ic->total || (last && ic->have + h->len != ic->total) ||
            (!last && ic->have + h->len == ic->total))
            return malformed(l, "message pieces do not add up to its length");
        l->dest = ic->asm_->data + ic->have;
        return true;
    }
    if (h->flags & KUMO__F_MORE)
        return malformed(l, "a continuation without a first piece");
    l->single = kumo__rx_block_new(h->len);
    if (!l->single) {
        link_kill(l, -KUMO_ENORESOURCES, true, "out of memory for a message");
        return false;
    }
    l->dest = l->single->data;
    return true;
}

/* The DATA frame's payload is complete (in l->dest). */
static bool data_end(struct link *l)
{
    const struct kumo__tcp_hdr *h = &l->h;
    struct in_conn *ic = l->cur;
    struct kumo__rx_block *msg = NULL;
    if (ic->asm_) {
        ic->have += h->len;
        if (h->flags & KUMO__F_MORE)
            return true;
        msg = ic->asm_;
        ic->asm_ = NULL;
    } else {
        msg = l->single;
        l->single = NULL;
    }
    if (events_on(l)) {
        deliver(l, ic, &msg->rx);
        if (msg->rx.kept)
            return l->state != L_DEAD;
    }
    kumo_rx_free(&msg->rx);
    return l->state != L_DEAD;
}

/* Feeds received bytes to the frame parser.  Returns false once the link
 * is dead (stop feeding). */
static bool rx_feed(struct link *l, const uint8_t *p, size_t n)
{
    struct tcp_t *t = l->ep->t;
    while (n) {
        if (l->state == L_DEAD)
            return false;
        if (!l->in_body) {
            const uint8_t *hp;
            int need;
            const char *why = NULL;
            if (l->hdr_have == 0 && n >= KUMO__TCP_HDR_MAX) {
                hp = p; /* common case: the header is whole in the buffer */
                need = kumo__tcp_hdr_decode(hp, n, t->cfg.fragment_size, t->cfg.max_message, &l->h,
                                            &why);
            } else {
                for (;;) {
                    need = kumo__tcp_hdr_decode(l->hdr, l->hdr_have, t->cfg.fragment_size,
                                                t->cfg.max_message, &l->h, &why);
                    if (need <= 0)
                        break;
                    unsigned take = (unsigned)need - l->hdr_have;
                    if (take > n)
                        take = (unsigned)n;
                    memcpy(l->hdr + l->hdr_have, p, take);
                    l->hdr_have += take;
                    p += take;
                    n -= take;
                    if (l->hdr_have < (unsigned)need)
                        return true; /* wait for more */
                }
                hp = NULL;
            }
            if (need < 0)
                return malformed(l, why);
            if (hp) {
                p += l->h.hlen;
                n -= l->h.hlen;
            }
            l->hdr_have = 0;
            l->body_have = 0;
            const struct kumo__tcp_hdr *h = &l->h;
            if (h->type == KUMO__T_DATA) {
                if (l->state != L_UP && l->state != L_CLOSING && l->state != L_REJECTING &&
                    l->state != L_CONNECTING && l->state != L_RETRY_WAIT)
                    return malformed(l, "DATA before the handshake");
                /* Zero copy: a single-frame message whole in this buffer.
                 * (Flags 0 also mark the last piece of a fragmented
                 * message: that one goes to its reassembly below.) */
                if (!h->flags && h->len > t->cfg.max_message && !in_find_asm(l, h->conn))
                    return malformed(l, "message over the maximum message size");
                if (!h->flags && n >= h->len && l->state == L_UP) {
                    struct in_conn *ic = in_find(l, h->conn);
                    if (!ic)
                        return malformed(l, "DATA for an unknown connection");
                    if (!ic->asm_) {
                        struct iovec v = {.iov_base = (void *)p, .iov_len = h->len};
                        struct kumo_rx rx = {.iov = &v, .iovcnt = 1, .len = h->len};
                        deliver(l, ic, &rx);
                        p += h->len;
                        n -= h->len;
                        continue;
                    }
                }
                if (!data_begin(l))
                    return false;
            } else {
                l->dest = l->ctl;
            }
            l->in_body = true;
            if (h->len == 0)
                goto complete;
            continue;
        }
        {
            uint64_t want = l->h.len - l->body_have;
            size_t take = want < n ? (size_t)want : n;
            if (p != l->dest + l->body_have) /* (a direct receive put it there) */
                memcpy(l->dest + l->body_have, p, take);
            l->body_have += take;
            p += take;
            n -= take;
            if (l->body_have < l->h.len)
                return true;
        }
    complete:
        l->in_body = false;
        if (l->h.type == KUMO__T_DATA) {
            if (!data_end(l))
                return false;
        } else if (!frame(l, l->ctl, l->h.len)) {
            return false;
        }
    }
    return l->state != L_DEAD;
}

static void return_buffer(struct tcp_ep *ep, unsigned bid)
{
    io_uring_buf_ring_add(ep->br, ep->bufs + (size_t)bid * ep->bufsz, ep->bufsz,
                          (unsigned short)bid, io_uring_buf_ring_mask(ep->nbufs), 0);
    io_uring_buf_ring_advance(ep->br, 1);
}

/* The frame in l->h (being received, or the last one) is a DATA frame of
 * at least half a receive buffer.  Such frames mostly straddle provided
 * buffers, so they are received directly: the body straight into its
 * message (the kernel's copy is the only one), and then rtail, which
 * takes at most a header of what follows.  A big frame's successor is
 * often big too (the next piece of the message), and so each piece
 * takes one receive.  Smaller frames come by the multishot recv, many to
 * a provided buffer, and one whole in its buffer is delivered in place;
 * the multishot recv stays armed between them, which keeps a round trip
 * of small messages free of re-arming. */
static bool big_frame(const struct link *l)
{
    return l->h.type == KUMO__T_DATA && l->h.len >= l->ep->t->cfg.rx_buffer_size / 2;
}

static void arm_recv(struct link *l)
{
    if (l->recv_armed || l->state == L_DEAD || l->fd < 0)
        return;
    struct tcp_ep *ep = l->ep;
    struct io_uring_sqe *sqe = get_sqe(ep_sh(ep));
    if (ep->t->shm && !l->ring) {
        /* The handshake brings descriptors (SCM_RIGHTS). */
        l->riov = (struct iovec){l->rbuf, ep->t->cfg.rx_buffer_size};
        memset(&l->rmsg, 0, sizeof l->rmsg);
        l->rmsg.msg_iov = &l->riov;
        l->rmsg.msg_iovlen = 1;
        l->rmsg.msg_control = l->rcm.buf;
        l->rmsg.msg_controllen = sizeof l->rcm.buf;
        io_uring_prep_recvmsg(sqe, l->fd, &l->rmsg, MSG_CMSG_CLOEXEC);
    } else if (!ep->t->shm && big_frame(l)) {
        /* (rtail alone when the body is done: the next header, so that
         * the next body is direct too) */
        unsigned n = 0;
        l->rx_body = l->in_body ? (size_t)(l->h.len - l->body_have) : 0;
        if (l->rx_body)
            l->dio[n++] = (struct iovec){l->dest + l->body_have, l->rx_body};
        l->dio[n++] = (struct iovec){l->rtail, sizeof l->rtail};
        l->dmsg = (struct msghdr){.msg_iov = l->dio, .msg_iovlen = n};
        io_uring_prep_recvmsg(sqe, l->fd, &l->dmsg, 0);
        l->rx_direct = true;
        if (!l->rx_logged) {
            char pb[128];
            l->rx_logged = true;
            kumo__log(KUMO_LOG_DEBUG, "%s: link to %s: big frames, received straight into messages",
                      TNAME(ep), peer_str(l, pb, sizeof pb));
        }
    } else if (ep->bgid >= 0) {
        io_uring_prep_recv_multishot(sqe, l->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = (uint16_t)ep->bgid;
    } else {
        io_uring_prep_recv(sqe, l->fd, l->rbuf, ep->t->cfg.rx_buffer_size, 0);
    }
    io_uring_sqe_set_data(sqe, &l->c_recv);
    l->recv_armed = true;
    l->ops++;
}

/* A big frame came by the multishot recv: cancel it, so that the next
 * receive (armed at its last completion) is a direct one. */
static void rx_switch(struct link *l)
{
    struct io_uring_sqe *sqe = get_sqe(ep_sh(l->ep));
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&l->c_recv, 0);
    io_uring_sqe_set_data(sqe, NULL);
    l->rx_switch = true;
}

static void recv_done(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe)
{
    struct link *l = CONTAINER(c, struct link, c_recv);
    struct tcp_ep *ep = l->ep;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    int res = cqe->res;
    bool switching = !more && l->rx_switch;
    if (!more) {
        l->ops--;
        l->recv_armed = false;
        l->rx_switch = false;
    }
    bool direct = l->rx_direct;
    l->rx_direct = false;
    l->busy++;
    if (res > 0 && direct) {
        if (l->state != L_DEAD) {
            l->last_rx = kumo__shard_now(sh);
            size_t body = (size_t)res < l->rx_body ? (size_t)res : l->rx_body;
            if ((!body || rx_feed(l, l->dio[0].iov_base, body)) && (size_t)res > body)
                rx_feed(l, l->rtail, (size_t)res - body);
        }
        arm_recv(l);
    } else if (res > 0 && l->ring) {
        malformed(l, "bytes on the shm socket after the handshake");
    } else if (res > 0) {
        if (ep->t->shm) {
            /* Descriptors that came with the bytes (the handshake's). */
            if (l->rmsg.msg_flags & MSG_CTRUNC) {
                malformed(l, "too many descriptors with the handshake");
            }
            for (struct cmsghdr *cm = CMSG_FIRSTHDR(&l->rmsg); cm; cm = CMSG_NXTHDR(&l->rmsg, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                    continue;
                unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                int *fds = (int *)CMSG_DATA(cm);
                for (unsigned i = 0; i < k; i++) {
                    if (l->nrx_fds < 4)
                        l->rx_fds[l->nrx_fds++] = fds[i];
                    else
                        close(fds[i]);
                }
            }
        }
        uint8_t *data = l->rbuf;
        int bid = -1;
        if (cqe->flags & IORING_CQE_F_BUFFER) {
            bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            data = ep->bufs + (size_t)bid * ep->bufsz;
        }
        if (l->state != L_DEAD) {
            l->last_rx = kumo__shard_now(sh); /* the link's heartbeat timer is armed */
            rx_feed(l, data, (size_t)res);
        }
        if (bid >= 0)
            return_buffer(ep, (unsigned)bid);
        if (!more)
            arm_recv(l);
        else if (l->in_body && big_frame(l) && !l->rx_switch && l->state != L_DEAD)
            rx_switch(l);
    } else if (res == -ENOBUFS) {
        /* Every provided buffer was in use: the ones this batch of
         * completions holds come back as it is processed, before the
         * re-armed receive is submitted. */
        kumo__log(KUMO_LOG_DEBUG, "%s: receive buffers exhausted (ENOBUFS): re-arming", TNAME(ep));
        if (!more)
            arm_recv(l);
    } else if (res == -ECANCELED && switching) {
        arm_recv(l); /* (rx_switch: now the direct one) */
    } else if (l->state != L_DEAD && l->state != L_RETRY_WAIT && res != -ECANCELED) {
        /* shm: frames the peer wrote before it went (BYE) come first */
        if (res == 0 && l->ring)
            ring_drain(l);
        if (l->state == L_DEAD) {
            /* the ring held the end (BYE) or something malformed */
        } else if (res == 0) {
            if (l->state == L_CLOSING)
                link_kill(l, -KUMO_ECLOSED, false, NULL);
            else if (l->in_body || l->hdr_have)
                malformed(l, "connection closed in the middle of a frame (truncated)");
            else
                link_kill(l, -KUMO_ECONNLOST, true, "peer closed the connection");
        } else {
            char why[96];
            snprintf(why, sizeof why, "receive failed: %s", strerror(-res));
            link_kill(l, -KUMO_ECONNLOST, true, why);
        }
    }
    l->busy--;
    link_maybe_free(l);
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */
/* ------------------------------------------------------------------ */

/* Builds the next batch into l->iov.  Returns its byte count (0: nothing
 * to send). */
static size_t build_batch(struct link *l)
{
    struct tcp_t *t = l->ep->t;
    unsigned niov = 0, nfr = 0;
    size_t bytes = 0;
    l->batch_lent = 0;
    l->batch_copied = l->ctlq_len || staged(l);
    if (l->ctlq_len) {
        memcpy(l->ctl_inflight, l->ctlq, l->ctlq_len);
        l->iov[niov++] = (struct iovec){l->ctl_inflight, l->ctlq_len};
        bytes += l->ctlq_len;
        l->ctlq_len = 0;
    }
    while (l->sealed && niov + 2 < MAX_IOV && bytes < BATCH_BYTES) {
        struct sealed *z = l->sealed;
        l->sealed = z->next;
        if (!l->sealed)
            l->sealed_tail = &l->sealed;
        z->next = l->sealed_fly;
        l->sealed_fly = z;
        l->iov[niov++] = (struct iovec){z->bytes, z->len};
        bytes += z->len;
        l->sealed_bytes -= z->len;
    }
    if (l->stage_len && !l->sealed) {
        uint8_t *b = l->stage_fly;
        size_t cap = l->stage_fly_cap;
        l->stage_fly = l->stage;
        l->stage_fly_cap = l->stage_cap;
        l->stage = b;
        l->stage_cap = cap;
        l->iov[niov++] = (struct iovec){l->stage_fly, l->stage_len};
        bytes += l->stage_len;
        l->stage_len = 0;
    }
    /* Queued messages go after everything staged (a connection's staged
     * frames were sent before its queue began). */
    while (!staged(l) && l->rr_head && nfr < MAX_FRAMES && niov + 2 < MAX_IOV &&
           bytes < BATCH_BYTES) {
        struct out_conn *oc = l->rr_head;
        struct txm *m = oc->qh;
        uint8_t *hd = l->hdrs[nfr];
        if (m->type != KUMO__T_DATA) {
            unsigned hl = kumo__tcp_hdr_encode(hd, m->type, 0, oc->wid, m->type == KUMO__T_OPEN, 0);
            if (m->type == KUMO__T_OPEN)
                hd[hl++] = m->rel;
            l->iov[niov++] = (struct iovec){hd, hl};
            bytes += hl;
        } else {
            size_t remaining = m->len - m->off;
            size_t piece = remaining < t->cfg.fragment_size ? remaining : t->cfg.fragment_size;
            /* Cut the piece where the iovec slots run out. */
            unsigned slots = MAX_IOV - niov - 1, used = 0;
            size_t got = 0;
            int i = m->iov_i;
            size_t o = m->iov_off;
            while (got < piece && i < m->niov) {
                size_t avail = m->iov[i].iov_len - o;
                if (!avail) {
                    i++;
                    o = 0;
                    continue;
                }
                if (used == slots)
                    break;
                size_t k = avail < piece - got ? avail : piece - got;
                used++;
                got += k;
                o += k;
                if (o == m->iov[i].iov_len) {
                    i++;
                    o = 0;
                }
            }
            if (got < piece && (nfr || l->ctlq_len || niov))
                break; /* would need more slots: next batch */
            piece = got;
            uint8_t flags = 0;
            if (m->off == 0 && piece < m->len)
                flags = KUMO__F_FIRST | KUMO__F_MORE;
            else if (m->off + piece < m->len)
                flags = KUMO__F_MORE;
            unsigned hl =
                kumo__tcp_hdr_encode(hd, KUMO__T_DATA, flags, oc->wid, (uint32_t)piece, m->len);
            l->iov[niov++] = (struct iovec){hd, hl};
            bytes += hl;
            size_t left = piece;
            while (left) {
                size_t avail = m->iov[m->iov_i].iov_len - m->iov_off;
                if (!avail) {
                    m->iov_i++;
                    m->iov_off = 0;
                    continue;
                }
                size_t k = avail < left ? avail : left;
                l->iov[niov++] =
                    (struct iovec){(uint8_t *)m->iov[m->iov_i].iov_base + m->iov_off, k};
                m->iov_off += k;
                left -= k;
                if (m->iov_off == m->iov[m->iov_i].iov_len) {
                    m->iov_i++;
                    m->iov_off = 0;
                }
            }
            m->off += piece;
            bytes += piece;
            l->txq_bytes -= piece;
            if (m->release)
                l->batch_lent += piece;
            else
                l->batch_copied = true;
        }
        m->inflight++;
        l->fr[nfr++] = m;
        /* Advance the round robin. */
        l->rr_head = oc->rr_next;
        if (!l->rr_head)
            l->rr_tail = &l->rr_head;
        if (m->type != KUMO__T_DATA || m->off == m->len) {
            oc->qh = m->next;
            if (!oc->qh)
                oc->qt = &oc->qh;
            m->queued = false;
        }
        if (oc->qh) {
            oc->rr_next = NULL;
            *l->rr_tail = oc;
            l->rr_tail = &oc->rr_next;
        } else {
            oc->active = false;
            if (oc->closing) {
                /* Its CLOSE is framed: nothing refers to it any more. */
                oc_unlink(l, oc);
                kumo__free(oc, sizeof *oc);
            }
        }
    }
    if (!l->rr_head && !staged(l) && l->bye_pending && !l->bye_sent && niov + 1 < MAX_IOV) {
        uint8_t *hd = l->hdrs[MAX_FRAMES];
        unsigned hl = kumo__tcp_hdr_encode(hd, KUMO__T_BYE, 0, 0, 0, 0);
        l->iov[niov++] = (struct iovec){hd, hl};
        bytes += hl;
        l->bye_sent = true;
        l->batch_copied = true; /* (its header would do, but BYE is rare) */
    }
    l->niov = niov;
    l->nfr = nfr;
    l->iov_start = 0;
    check_drained(l);
    return bytes;
}

/* The whole batch went out: its entries may be done. */
static void frames_done(struct txm **fr, unsigned nfr)
{
    for (unsigned i = 0; i < nfr; i++) {
        struct txm *m = fr[i];
        if (--m->inflight == 0 && !m->queued)
            txm_free(m);
    }
}

static void zc_maybe_free(struct zc_hold *z)
{
    if (z->sending || z->notifs)
        return;
    frames_done(z->fr, z->nfr);
    kumo__free(z->fr, sizeof(*z->fr) * z->nfr);
    kumo__free(z->hdrs, sizeof(*z->hdrs) * (MAX_FRAMES + 1));
    kumo__free(z, sizeof *z);
}

static void batch_done(struct link *l)
{
    frames_done(l->fr, l->nfr);
    while (l->sealed_fly) {
        struct sealed *z = l->sealed_fly;
        l->sealed_fly = z->next;
        if (!l->stage_spare)
            l->stage_spare = z->bytes;
        else
            kumo__free(z->bytes, STAGE_MAX);
        kumo__free(z, sizeof *z);
    }
    l->nfr = 0;
    l->niov = 0;
    if (l->zc) {
        l->zc->sending = false;
        zc_maybe_free(l->zc);
        l->zc = NULL;
    }
}

static void zc_done(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe);

/* The batch just built goes by SENDMSG_ZC if it is large and lent
 * enough: its frames and headers move to a hold.  False: send it copied. */
static bool zc_take(struct link *l)
{
    struct tcp_ep *ep = l->ep;
    if (!l->zc_ok || l->batch_copied || l->batch_lent < ep->t->cfg.zerocopy_min)
        return false;
    struct zc_hold *z = kumo__zalloc(sizeof *z);
    uint8_t(*hdrs)[KUMO__TCP_HDR_MAX] = kumo__alloc(sizeof(*hdrs) * (MAX_FRAMES + 1));
    struct txm **fr = kumo__alloc(sizeof(*fr) * l->nfr);
    if (!z || !hdrs || !fr) {
        kumo__free(z, sizeof *z);
        kumo__free(hdrs, sizeof(*hdrs) * (MAX_FRAMES + 1));
        kumo__free(fr, sizeof(*fr) * l->nfr);
        return false;
    }
    z->c.fn = zc_done;
    z->l = l;
    z->hdrs = l->hdrs; /* the batch's iovecs point into this array */
    l->hdrs = hdrs;
    memcpy(fr, l->fr, sizeof(*fr) * l->nfr);
    z->fr = fr;
    z->nfr = l->nfr;
    l->nfr = 0;
    z->sending = true;
    l->zc = z;
    if (!l->zc_used) {
        l->zc_used = true;
        char ps[64];
        kumo__log(KUMO_LOG_DEBUG, "%s: link to %s: first zero-copy batch (%zu lent bytes)",
                  TNAME(ep), peer_str(l, ps, sizeof ps), l->batch_lent);
    }
    return true;
}

static bool self_feed(struct link *l);

static void submit_send(struct link *l)
{
    struct io_uring_sqe *sqe = get_sqe(ep_sh(l->ep));
    memset(&l->msg, 0, sizeof l->msg);
    l->msg.msg_iov = l->iov + l->iov_start;
    l->msg.msg_iovlen = l->niov - l->iov_start;
    if (l->ntx_fds) {
        /* shm handshake: the descriptors ride with the first byte */
        l->msg.msg_control = l->tcm.buf;
        l->msg.msg_controllen = CMSG_SPACE(sizeof(int) * l->ntx_fds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&l->msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * l->ntx_fds);
        memcpy(CMSG_DATA(cm), l->tx_fds, sizeof(int) * l->ntx_fds);
    }
    if (l->zc) {
        io_uring_prep_sendmsg_zc(sqe, l->fd, &l->msg, MSG_NOSIGNAL);
        io_uring_sqe_set_data(sqe, &l->zc->c);
    } else if (l->msg.msg_iovlen == 1 && !l->ntx_fds) {
        /* One piece (a staged run of small messages): a plain send skips
         * importing a msghdr and its iovec array. */
        io_uring_prep_send(sqe, l->fd, l->msg.msg_iov[0].iov_base, l->msg.msg_iov[0].iov_len,
                           MSG_NOSIGNAL);
        io_uring_sqe_set_data(sqe, &l->c_send);
    } else {
        io_uring_prep_sendmsg(sqe, l->fd, &l->msg, MSG_NOSIGNAL);
        io_uring_sqe_set_data(sqe, &l->c_send);
    }
    l->send_inflight = true;
    l->ops++;
}

/* Starts the next batch if the link can send. */
static void kick(struct link *l)
{
    if (l->send_inflight || l->state == L_DEAD || l->state == L_CONNECTING ||
        l->state == L_RETRY_WAIT)
        return;
    if (l->self) {
        self_feed(l);
        return;
    }
    if (l->ring) {
        if (l->ring_unpub)
            ring_publish(l);
        /* A few batches while the ring has room; a blocked one is retried
         * by the poller. */
        for (int k = 0; k < 8 && !l->ring_blocked && l->state != L_DEAD; k++) {
            if (build_batch(l) == 0)
                return;
            l->send_inflight = true;
            ring_push(l);
            if (l->send_inflight)
                return;
        }
        if (l->state != L_DEAD && (l->rr_head || l->ctlq_len || staged(l)))
            mark_dirty(l);
        return;
    }
    if (l->ep->t->shm && l->state == L_UP)
        return; /* shm before its rings: nothing is sent on the socket */
    if (build_batch(l) == 0)
        return;
    zc_take(l);
    submit_send(l);
}

static void send_result(struct kumo__shard *sh, struct link *l, int res);

static void send_done(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe)
{
    send_result(sh, CONTAINER(c, struct link, c_send), cqe->res);
}

/* A SENDMSG_ZC completion: the send's result (F_MORE: a notification
 * follows), or the notification that the kernel is done with the pages. */
static void zc_done(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe)
{
    struct zc_hold *z = CONTAINER(c, struct zc_hold, c);
    struct link *l = z->l;
    if (cqe->flags & IORING_CQE_F_NOTIF) {
        z->notifs--;
        l->ops--;
        zc_maybe_free(z);
        link_maybe_free(l);
        return;
    }
    if (cqe->flags & IORING_CQE_F_MORE) {
        z->notifs++;
        l->ops++;
    }
    send_result(sh, l, cqe->res);
}

static void send_result(struct kumo__shard *sh, struct link *l, int res)
{
    l->ops--;
    l->busy++;
    if (l->state == L_DEAD || l->state == L_RETRY_WAIT) {
        batch_done(l); /* a retrying link's old socket: its result is moot */
        l->send_inflight = false;
    } else if (res < 0) {
        batch_done(l);
        l->send_inflight = false;
        char why[96];
        snprintf(why, sizeof why, "send failed: %s", strerror(-res));
        link_kill(l, -KUMO_ECONNLOST, true, why);
    } else {
        if (l->ntx_fds && res > 0) {
            /* The descriptors went with the first byte: ours to close
             * (except our eventfd, which we keep reading). */
            for (unsigned i = 0; i < l->ntx_fds; i++)
                if (l->tx_fds[i] != l->efd)
                    close(l->tx_fds[i]);
            l->ntx_fds = 0;
        }
        size_t n = (size_t)res;
        while (n && l->iov_start < l->niov) {
            struct iovec *v = &l->iov[l->iov_start];
            if (n >= v->iov_len) {
                n -= v->iov_len;
                l->iov_start++;
            } else {
                v->iov_base = (uint8_t *)v->iov_base + n;
                v->iov_len -= n;
                n = 0;
            }
        }
        while (l->iov_start < l->niov && l->iov[l->iov_start].iov_len == 0)
            l->iov_start++;
        if (l->iov_start < l->niov) {
            submit_send(l); /* a short write: the rest first */
        } else {
            batch_done(l);
            l->send_inflight = false;
            l->last_tx = kumo__shard_now(sh);
            if (l->close_after_send) {
                link_kill(l, -KUMO_ECLOSED, false, NULL);
            } else if (l->state == L_ACK_SENDING) {
                ring_start(l);          /* the peer has our eventfd: rings are live */
                l->state = L_WAIT_AUTH; /* AUTH comes through the ring */
            } else {
                if (l->state == L_CLOSING && l->bye_sent && !l->shut_wr && !l->ring) {
                    shutdown(l->fd, SHUT_WR);
                    l->shut_wr = true;
                }
                kick(l);
            }
        }
    }
    l->busy--;
    link_maybe_free(l);
}

/* A self link: the batch is parsed in place by the same link. */
static bool self_feed(struct link *l)
{
    if (build_batch(l) == 0)
        return true;
    l->send_inflight = true;
    l->busy++;
    for (unsigned i = 0; i < l->niov && l->state != L_DEAD; i++)
        if (l->iov[i].iov_len)
            rx_feed(l, l->iov[i].iov_base, l->iov[i].iov_len);
    batch_done(l);
    l->send_inflight = false;
    l->busy--;
    if (l->state != L_DEAD && (l->rr_head || l->ctlq_len || staged(l)))
        mark_dirty(l); /* more was sent meanwhile: next iteration */
    link_maybe_free(l);
    return l->state != L_DEAD;
}

static void flush_fn(struct kumo__shard *sh, struct kumo__defer *d)
{
    struct tcp_ep *ep = CONTAINER(d, struct tcp_ep, flush);
    struct link *list = ep->dirty;
    ep->dirty = NULL;
    while (list) {
        struct link *l = list;
        list = l->dirty_next;
        l->dirty = false;
        kick(l);
        link_maybe_free(l);
    }
}

static void mark_dirty(struct link *l)
{
    if (l->dirty || l->state == L_DEAD)
        return;
    l->dirty = true;
    l->dirty_next = l->ep->dirty;
    l->ep->dirty = l;
    kumo__shard_defer(ep_sh(l->ep), &l->ep->flush);
}

/* ------------------------------------------------------------------ */
/* shm: shared memory, rings, wake-ups                                 */
/* ------------------------------------------------------------------ */

static void shm_release(struct link *l)
{
    if (l->map) {
        munmap(l->map, l->map_len);
        l->map = NULL;
    }
    for (unsigned i = 0; i < l->ntx_fds; i++)
        if (l->tx_fds[i] != l->efd)
            close(l->tx_fds[i]);
    l->ntx_fds = 0;
    for (unsigned i = 0; i < l->nrx_fds; i++)
        close(l->rx_fds[i]);
    l->nrx_fds = 0;
    if (l->efd >= 0)
        close(l->efd);
    if (l->peer_efd >= 0)
        close(l->peer_efd);
    l->efd = l->peer_efd = -1;
}

/* Connector: the rings and our eventfd, to be sent with HELLO. */
static int shm_setup_connector(struct link *l)
{
    uint64_t size = l->ep->t->ring_bytes;
    size_t len = kumo__shm_map_len(size);
    int mfd = memfd_create("kumo-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0)
        return -errno;
    /* Sealed so the peer cannot shrink it under our mapping (SIGBUS). */
    if (ftruncate(mfd, (off_t)len) ||
        fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
        int err = -errno;
        close(mfd);
        return err;
    }
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    int efd = map == MAP_FAILED ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (map == MAP_FAILED || efd < 0) {
        int err = -errno;
        if (map != MAP_FAILED)
            munmap(map, len);
        close(mfd);
        return err;
    }
    for (int i = 0; i < 2; i++) {
        struct kumo__shm_ring_hdr *h = (void *)((uint8_t *)map + (size_t)i * KUMO__SHM_HDR_STRIDE);
        h->size = size;
        h->magic = KUMO__SHM_MAGIC;
        h->version = KUMO__TCP_VERSION;
    }
    l->map = map;
    l->map_len = len;
    kumo__shm_ring_view(&l->rout, map, size, 0);
    kumo__shm_ring_view(&l->rin, map, size, 1);
    l->efd = efd;
    l->tx_fds[0] = mfd;
    l->tx_fds[1] = efd;
    l->ntx_fds = 2;
    return 0;
}

/* Acceptor: maps what HELLO brought.  Returns NULL, or why not. */
static const char *shm_setup_acceptor(struct link *l)
{
    if (l->nrx_fds != 2)
        return "HELLO without its shared memory and eventfd";
    int mfd = l->rx_fds[0];
    struct stat st;
    if (fstat(mfd, &st) || !S_ISREG(st.st_mode))
        return "HELLO's shared memory is not a file";
    int seals = fcntl(mfd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK))
        return "HELLO's shared memory may shrink (not sealed)";
    if (st.st_size < (off_t)kumo__shm_map_len(KUMO__SHM_MIN_RING))
        return "HELLO's shared memory is too small";
    uint64_t size = ((uint64_t)st.st_size - KUMO__SHM_DATA_OFF) / 2;
    if (size > KUMO__SHM_MAX_RING || (size & (size - 1)) ||
        kumo__shm_map_len(size) != (size_t)st.st_size)
        return "HELLO's shared memory has an impossible size";
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (map == MAP_FAILED)
        return "cannot map HELLO's shared memory";
    for (int i = 0; i < 2; i++) {
        struct kumo__shm_ring_hdr *h = (void *)((uint8_t *)map + (size_t)i * KUMO__SHM_HDR_STRIDE);
        if (h->magic != KUMO__SHM_MAGIC || h->version != KUMO__TCP_VERSION || h->size != size) {
            munmap(map, (size_t)st.st_size);
            return "bad ring header in HELLO's shared memory";
        }
    }
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
        munmap(map, (size_t)st.st_size);
        return "no eventfd (out of descriptors)";
    }
    l->map = map;
    l->map_len = (size_t)st.st_size;
    kumo__shm_ring_view(&l->rin, map, size, 0);
    kumo__shm_ring_view(&l->rout, map, size, 1);
    close(mfd);
    l->peer_efd = l->rx_fds[1];
    l->nrx_fds = 0;
    l->efd = efd;
    l->tx_fds[0] = efd;
    l->ntx_fds = 1;
    return NULL;
}

static void wake_peer(struct link *l)
{
    uint64_t one = 1;
    ssize_t w = write(l->peer_efd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is non-zero, the peer wakes anyway */
}

static void arm_efd(struct link *l)
{
    if (l->state == L_DEAD || l->efd < 0)
        return;
    struct io_uring_sqe *sqe = get_sqe(ep_sh(l->ep));
    io_uring_prep_read(sqe, l->efd, &l->efd_buf, sizeof l->efd_buf, 0);
    io_uring_sqe_set_data(sqe, &l->c_efd);
    l->ops++;
}

/* Our eventfd fired: the poller finds what woke us; just re-arm. */
static void efd_done(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe)
{
    struct link *l = CONTAINER(c, struct link, c_efd);
    l->ops--;
    if (l->state != L_DEAD && cqe->res != -ECANCELED)
        arm_efd(l);
    link_maybe_free(l);
}

static void ring_start(struct link *l)
{
    struct tcp_ep *ep = l->ep;
    l->ring = true;
    if (!ep->rings) /* the poller runs while the endpoint has rings up */
        kumo__shard_poller_add(ep_sh(ep), &ep->poller);
    KUMO__LIST_PUSH(ep->rings, l, ring_prev, ring_next);
    ep->nrings++;
    arm_efd(l);
}

static void ring_stop(struct link *l)
{
    struct tcp_ep *ep = l->ep;
    KUMO__LIST_REMOVE(ep->rings, l, ring_prev, ring_next);
    ep->nrings--;
    l->ring_next = l->ring_prev = NULL;
    if (!ep->rings)
        kumo__shard_poller_remove(ep_sh(ep), &ep->poller);
}

/* Producer: moves the pending batch into the outbound ring, as far as it
 * fits. */
static void ring_push(struct link *l)
{
    uint64_t want = 0;
    for (unsigned k = l->iov_start; k < l->niov; k++)
        want += l->iov[k].iov_len;
    int64_t space = kumo__shm_space(&l->rout, want);
    if (space < 0) {
        malformed(l, "shm ring: the peer's read index is impossible");
        return;
    }
    unsigned i = l->iov_start;
    size_t off = 0;
    size_t n = kumo__shm_put(&l->rout, l->iov, l->niov, &i, &off, (size_t)space);
    if (i < l->niov && off) {
        l->iov[i].iov_base = (uint8_t *)l->iov[i].iov_base + off;
        l->iov[i].iov_len -= off;
    }
    l->iov_start = i;
    while (l->iov_start < l->niov && !l->iov[l->iov_start].iov_len)
        l->iov_start++;
    if (n && kumo__shm_publish(&l->rout, n))
        wake_peer(l);
    if (l->iov_start < l->niov) {
        l->ring_blocked = true;
        return;
    }
    l->ring_blocked = false;
    batch_done(l);
    l->send_inflight = false; /* (shm links have no heartbeats: no last_tx) */
}

/* Producer: a small message on a link with nothing else queued is framed
 * straight into the ring, with no staging copy and no batch.  The first
 * such message in a loop iteration is published at once (an answer to a
 * request leaves before the shard goes on polling); the rest of a burst is
 * published once, when the link is flushed at the end of the iteration
 * (ring_publish): an index update per message would make the producer wait
 * for the index's cache line every time, and cut a 64 B stream to a
 * quarter.  False: it did not fit (or the peer's index is impossible):
 * take the ordinary path, which goes after what is written here. */
static bool ring_send_now(struct link *l, struct out_conn *oc, const struct iovec *iov, int n,
                          size_t len)
{
    /* Nothing queued, in flight, or built into a batch not pushed yet:
     * build_batch runs the when-ready callbacks as the queue drains,
     * before kick pushes its batch, and a send from one of them must not
     * overtake that batch. */
    if (l->send_inflight || l->ring_blocked || l->niov || staged(l) || l->rr_head || l->ctlq_len ||
        l->bye_pending || oc->qh)
        return false;
    struct kumo__shm_ring *r = &l->rout;
    size_t at = l->ring_unpub, end = at + KUMO__TCP_HDR_MAX + len;
    if (kumo__shm_space(r, end) < (int64_t)end)
        return false;
    uint64_t pos = (r->mine + at) & (r->size - 1);
    if (r->size - pos >= KUMO__TCP_HDR_MAX + len) {
        /* (the usual case: no wrap) */
        uint8_t *p = r->data + pos;
        unsigned hl = kumo__tcp_hdr_encode(p, KUMO__T_DATA, 0, oc->wid, (uint32_t)len, 0);
        kumo__iov_gather(p + hl, iov, n);
        at += hl + len;
    } else {
        uint8_t hd[KUMO__TCP_HDR_MAX];
        unsigned hl = kumo__tcp_hdr_encode(hd, KUMO__T_DATA, 0, oc->wid, (uint32_t)len, 0);
        kumo__shm_write(r, at, hd, hl);
        at += hl;
        for (int i = 0; i < n; i++) {
            kumo__shm_write(r, at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
    }
    l->ring_unpub = at;
    if (!l->dirty)
        ring_publish(l); /* the first this iteration: a reply goes out now */
    mark_dirty(l);
    return true;
}

/* Producer: publishes what ring_send_now wrote. */
static void ring_publish(struct link *l)
{
    size_t n = l->ring_unpub;
    l->ring_unpub = 0;
    if (kumo__shm_publish(&l->rout, n))
        wake_peer(l);
}

/* Consumer: feeds what the inbound ring holds to the frame parser.
 * Returns the bytes consumed (or -1 once the link died). */
static long ring_drain(struct link *l)
{
    long total = 0;
    l->busy++;
    for (int round = 0; round < 4 && l->state != L_DEAD; round++) {
        int64_t avail = kumo__shm_avail(&l->rin);
        if (avail < 0) {
            malformed(l, "shm ring: the peer's write index is impossible");
            break;
        }
        if (!avail)
            break;
        size_t len;
        uint8_t *p = kumo__shm_peek(&l->rin, (uint64_t)avail, &len);
        rx_feed(l, p, len);
        if (l->state == L_DEAD)
            break;
        if (kumo__shm_consume(&l->rin, len))
            wake_peer(l);
        total += (long)len;
    }
    l->busy--;
    return l->state == L_DEAD ? -1 : total;
}

/* Whether the link has something for the poller: bytes in, or a batch
 * waiting for room.  Also lowers our sleeping flag if a wake-up left it up
 * (prepark raises it). */
static bool ring_pending(struct link *l)
{
    struct kumo__shm_ring_hdr *h = l->rin.h;
    if (atomic_load_explicit(&h->consumer_sleeping, memory_order_relaxed))
        atomic_store_explicit(&h->consumer_sleeping, 0, memory_order_relaxed);
    return l->ring_blocked || atomic_load_explicit(&h->tail, memory_order_relaxed) != l->rin.mine;
}

static unsigned shm_poll(struct kumo__shard *sh, struct kumo__poller *p)
{
    struct tcp_ep *ep = CONTAINER(p, struct tcp_ep, poller);
    /* A spinning shard polls all the time: first a look with no
     * bookkeeping, one load per link. */
    struct link *l0 = ep->rings;
    while (l0 && (l0->state == L_DEAD || !ring_pending(l0)))
        l0 = l0->ring_next;
    if (!l0)
        return 0;
    unsigned n = ep->nrings, work = 0;
    if (n > ep->pollcap) {
        struct link **nv = kumo__alloc(sizeof(*nv) * n * 2);
        if (!nv)
            return 0;
        kumo__free(ep->pollv, sizeof(*nv) * ep->pollcap);
        ep->pollv = nv;
        ep->pollcap = n * 2;
    }
    n = 0;
    for (struct link *l = ep->rings; l; l = l->ring_next) {
        l->busy++; /* callbacks may end any link: keep them all */
        ep->pollv[n++] = l;
    }
    for (unsigned i = 0; i < n; i++) {
        struct link *l = ep->pollv[i];
        if (l->state == L_DEAD || !ring_pending(l))
            continue;
        if (l->ring_blocked) {
            ring_push(l);
            if (!l->ring_blocked && l->state != L_DEAD) {
                work++;
                if (l->rr_head || l->ctlq_len || staged(l) || l->bye_pending)
                    mark_dirty(l);
            }
        }
        if (l->state != L_DEAD && ring_drain(l) > 0)
            work++;
    }
    for (unsigned i = 0; i < n; i++) {
        struct link *l = ep->pollv[i];
        l->busy--;
        link_maybe_free(l);
    }
    return work;
}

_Atomic bool kumo__shm_asym;

static void shm_barrier_once(void)
{
    if (kumo__membarrier_register(MEMBARRIER_CMD_GLOBAL_EXPEDITED))
        atomic_store(&kumo__shm_asym, true);
}

void kumo__shm_barrier_setup(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, shm_barrier_once);
}

void kumo__shm_wait_barrier(void)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&kumo__shm_asym, memory_order_relaxed))
        kumo__membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
}

/* About to park: raise our flags on every ring, one barrier for all of
 * them, then re-check (ring.h). */
static bool shm_prepark(struct kumo__shard *sh, struct kumo__poller *p)
{
    struct tcp_ep *ep = CONTAINER(p, struct tcp_ep, poller);
    bool busy = false, any = false;
    for (struct link *l = ep->rings; l; l = l->ring_next) {
        if (l->state == L_DEAD)
            continue;
        atomic_store_explicit(&l->rin.h->consumer_sleeping, 1, memory_order_relaxed);
        if (l->ring_blocked)
            atomic_store_explicit(&l->rout.h->producer_waiting, 1, memory_order_relaxed);
        any = true;
    }
    if (!any)
        return false;
    kumo__shm_wait_barrier();
    for (struct link *l = ep->rings; l; l = l->ring_next) {
        if (l->state == L_DEAD)
            continue;
        if (kumo__shm_avail(&l->rin) != 0) {
            atomic_store_explicit(&l->rin.h->consumer_sleeping, 0, memory_order_relaxed);
            busy = true;
        }
        if (l->ring_blocked && kumo__shm_space(&l->rout, UINT64_MAX) != 0)
            busy = true;
    }
    return busy;
}

/* ------------------------------------------------------------------ */
/* Handshake                                                           */
/* ------------------------------------------------------------------ */

static void send_ack(struct link *l, uint8_t status)
{
    uint8_t p[KUMO__TCP_ACK] = {status};
    ctl_queue(l, KUMO__T_HELLO_ACK, p, sizeof p);
}

/* The handshake MAC of the acceptor's role (`acceptor`) or the
 * connector's, for this link's nonces and ends (auth.h). */
static void link_mac(struct link *l, bool acceptor, uint8_t out[KUMO__MAC])
{
    struct tcp_t *t = l->ep->t;
    const kumo_address *me = &l->ep->base.addr;
    kumo__auth_mac(t->cookie, t->cookie_len, acceptor, l->nonce_c, l->nonce_a,
                   l->outgoing ? me : &l->peer, l->outgoing ? &l->peer : me, out);
}

/* Whether the peer's MAC (of the other role than ours) is right; if not,
 * the link ends, logged, with -KUMO_EAUTH for the connects waiting on it. */
static bool peer_mac_ok(struct link *l, const uint8_t *got)
{
    uint8_t want[KUMO__MAC];
    link_mac(l, l->outgoing, want);
    if (kumo__auth_equal(got, want))
        return true;
    char pb[128];
    kumo__log(KUMO_LOG_WARN, "%s: link %s %s refused: authentication failed (%s)", TNAME(l->ep),
              l->outgoing ? "to" : "from", peer_str(l, pb, sizeof pb),
              l->outgoing ? "its cookie differs from ours" : "it does not know our cookie");
    link_kill(l, -KUMO_EAUTH, false, NULL);
    return false;
}

/* Acceptor: the ACK that takes the link: our nonce and our MAC over both
 * nonces.  Only AUTH may come next. */
static void send_ack_ok(struct link *l)
{
    uint8_t p[KUMO__TCP_ACK_OK] = {KUMO__ACK_OK};
    kumo__auth_nonce(l->nonce_a);
    memcpy(p + KUMO__TCP_ACK, l->nonce_a, KUMO__NONCE);
    link_mac(l, true, p + KUMO__TCP_ACK + KUMO__NONCE);
    ctl_queue(l, KUMO__T_HELLO_ACK, p, sizeof p);
}

/* Acceptor: the connector's proof that it knows the cookie. */
static bool process_auth(struct link *l, const uint8_t *p, uint32_t len)
{
    if (len != KUMO__MAC)
        return malformed(l, "AUTH of the wrong length");
    if (!peer_mac_ok(l, p))
        return false;
    link_up(l);
    return l->state != L_DEAD;
}

/* A peer refused, or an incoming handshake given up: an operator must see
 * it at the default level, but a storm of them must not flood the log, so
 * at most one WARN line a second per endpoint, saying how many went
 * unlogged; every one is counted. */
static void refusal(struct link *l, const char *why)
{
    struct tcp_ep *ep = l->ep;
    ep->refused++;
    uint64_t now = kumo__now_ns();
    if (ep->refused_logged_at && now - ep->refused_logged_at < 1000000000ull) {
        ep->refused_quiet++;
        return;
    }
    char pb[128];
    kumo__log(KUMO_LOG_WARN, "%s: refusing link from %s: %s (%llu refused so far, %llu unlogged)",
              TNAME(ep), peer_str(l, pb, sizeof pb), why, (unsigned long long)ep->refused,
              (unsigned long long)ep->refused_quiet);
    ep->refused_logged_at = now;
    ep->refused_quiet = 0;
}

static void reject(struct link *l, uint8_t status, const char *why)
{
    refusal(l, why);
    send_ack(l, status);
    l->state = L_REJECTING;
    l->close_after_send = true;
}

/*
 * Whether the sender address a HELLO claims is where the link comes from,
 * as far as the socket can tell: over tcp the same IPv4 address (the port
 * is the peer's listening one, not its source port; an endpoint bound to
 * 0.0.0.0 claims that), over shm the same process (SO_PEERCRED).  Without
 * it, a peer holding the cookie could take another node's address over
 * for later connects.
 */
static bool hello_from_is_true(struct link *l, const kumo_address *from)
{
    if (l->ep->t->shm) {
        struct ucred uc;
        socklen_t ul = sizeof uc;
        if (getsockopt(l->fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul))
            return false;
        return (uint32_t)uc.pid == kumo__get32(from->bytes + 2);
    }
    if (l->sa.ss_family != AF_INET)
        return false;
    uint32_t claimed;
    memcpy(&claimed, from->bytes + 2, 4);
    const struct sockaddr_in *sa = (const struct sockaddr_in *)&l->sa;
    return claimed == sa->sin_addr.s_addr || claimed == htonl(INADDR_ANY);
}

/* Acceptor: a HELLO for our place (any incarnation) learns our address and
 * goes away; its connector comes back to that address. */
static void redirect(struct link *l)
{
    uint8_t p[KUMO__TCP_ACK + KUMO_ADDRESS_WIRE_MAX] = {KUMO__ACK_REDIRECT};
    size_t n = KUMO__TCP_ACK + kumo_address_encode(&l->ep->base.addr, p + KUMO__TCP_ACK);
    ctl_queue(l, KUMO__T_HELLO_ACK, p, (uint32_t)n);
    l->state = L_REJECTING;
    l->close_after_send = true;
}

static bool process_hello(struct link *l, const uint8_t *p, uint32_t len)
{
    struct tcp_ep *ep = l->ep;
    kumo_address from, to;
    uint64_t caps;
    const uint8_t *nonce;
    const char *why = NULL;
    if (kumo__tcp_hello_decode(p, len, &from, &to, &caps, &nonce, &why))
        return malformed(l, why);
    memcpy(l->nonce_c, nonce, KUMO__NONCE);
    if (kumo_address_is_place(&to) && kumo_address_same_place(&to, &ep->base.addr) &&
        !ep->closing) {
        redirect(l);
        return true;
    }
    if (!kumo_address_eq(&to, &ep->base.addr)) {
        reject(l, KUMO__ACK_NOT_FOUND, "not addressed to this endpoint (incarnation)");
        return true;
    }
    if (ep->closing) {
        reject(l, KUMO__ACK_NOT_FOUND, "endpoint closing");
        return true;
    }
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!addr_sockaddr(ep->t->shm, &from, &ss, &sl) || kumo_address_eq(&from, &ep->base.addr) ||
        kumo_address_is_place(&from))
        return malformed(l, "HELLO with an impossible sender address");
    if (!hello_from_is_true(l, &from))
        return malformed(l, "HELLO claims an address it does not come from");
    struct link *e = find_link(ep, &from, l);
    if (e) {
        bool e_pending = e->outgoing && e->state != L_UP && e->state != L_CLOSING;
        if (!(e_pending && kumo_address_cmp(&from, &ep->base.addr) < 0)) {
            reject(l, KUMO__ACK_CROSSED, "crossed connect (our link wins, or one is up)");
            return true;
        }
        /* Crossed, and the peer's link wins: our waiting connects move to
         * it, our own attempt ends quietly. */
        struct kumo__connect_req **tail = &l->waiters;
        while (*tail)
            tail = &(*tail)->next;
        *tail = e->waiters;
        e->waiters = NULL;
        link_kill(e, -KUMO_ECONNFAILED, false, "crossed connect: the peer's link wins");
    }
    l->peer = from;
    l->peer_known = true;
    if (ep->t->shm) {
        const char *bad = shm_setup_acceptor(l);
        if (bad)
            return malformed(l, bad);
        /* Rings go live once the peer has our eventfd (send_done). */
        send_ack_ok(l);
        l->state = L_ACK_SENDING;
        return true;
    }
    send_ack_ok(l);
    l->state = L_WAIT_AUTH;
    return true;
}

static void start_connect(struct link *l);

/*
 * Connector: the endpoint at the place we asked for is `real`.  Each
 * waiting connect goes there (joining a link to it if one exists), and
 * this link ends quietly.
 */
static bool follow_redirect(struct link *l, const uint8_t *p, uint32_t len)
{
    kumo_address real;
    if (!kumo_address_is_place(&l->peer) || len <= KUMO__TCP_ACK ||
        kumo_address_decode(p + KUMO__TCP_ACK, len - KUMO__TCP_ACK, &real) !=
            (int)(len - KUMO__TCP_ACK) ||
        kumo_address_is_place(&real) || !kumo_address_same_place(&real, &l->peer))
        return malformed(l, "a redirect we did not ask for, or to another place");
    struct kumo__connect_req *w = l->waiters;
    l->waiters = NULL;
    link_kill(l, -KUMO_ECONNFAILED, false, "redirected to the endpoint's address");
    struct tcp_ep *ep = l->ep;
    while (w) {
        struct kumo__connect_req *next = w->next;
        w->to = real;
        if (ep->closing) /* a completed connect's callback may close it */
            kumo__connect_done(w, NULL, -KUMO_ECLOSED);
        else
            kumo__stream_connect(w->ep, w);
        w = next;
    }
    return false;
}

static bool process_ack(struct link *l, const uint8_t *p, uint32_t len)
{
    if (len && p[0] == KUMO__ACK_REDIRECT) {
        for (int i = 1; i < 8 && i < (int)len; i++)
            if (p[i])
                return malformed(l, "HELLO_ACK with reserved bytes set");
        return follow_redirect(l, p, len);
    }
    if (!len || len != (p[0] == KUMO__ACK_OK ? KUMO__TCP_ACK_OK : KUMO__TCP_ACK))
        return malformed(l, "HELLO_ACK of the wrong length");
    for (int i = 1; i < 8; i++)
        if (p[i])
            return malformed(l, "HELLO_ACK with reserved bytes set");
    switch (p[0]) {
    case KUMO__ACK_OK: {
        uint8_t mine[KUMO__MAC];
        memcpy(l->nonce_a, p + KUMO__TCP_ACK, KUMO__NONCE);
        if (!peer_mac_ok(l, p + KUMO__TCP_ACK + KUMO__NONCE))
            return false;
        link_mac(l, false, mine);
        /* AUTH goes before anything the connects queue (control first) */
        ctl_queue(l, KUMO__T_AUTH, mine, sizeof mine);
        l->retries = 0;
        if (l->ep->t->shm) {
            if (l->nrx_fds != 1)
                return malformed(l, "HELLO_ACK without the peer's eventfd");
            l->peer_efd = l->rx_fds[0];
            l->nrx_fds = 0;
            ring_start(l);
        }
        link_up(l);
        return l->state != L_DEAD;
    }
    case KUMO__ACK_NOT_FOUND:
        link_kill(l, -KUMO_ENOTFOUND, false, "peer: no such endpoint");
        return false;
    case KUMO__ACK_BUSY:
        link_kill(l, -KUMO_ENORESOURCES, false, "peer: busy");
        return false;
    case KUMO__ACK_CROSSED: {
        struct tcp_ep *ep = l->ep;
        struct link *other = find_link(ep, &l->peer, l);
        if (other && other->state == L_UP) {
            open_waiters_on(l, other);
            link_kill(l, -KUMO_ECONNFAILED, false, "crossed connect: using the peer's link");
            return false;
        }
        /* The peer's link has not reached us (yet): retry later unless it
         * comes first.  The socket goes now; the link object stays as the
         * place the connects wait. */
        uint64_t backoff = 2000000ull << (l->retries < 6 ? l->retries : 6);
        l->retries++;
        l->state = L_RETRY_WAIT;
        shutdown(l->fd, SHUT_RDWR);
        struct io_uring_sqe *sqe = get_sqe(ep_sh(ep));
        io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data(sqe, NULL);
        l->retry_at = kumo__now_ns() + backoff;
        uint64_t at = l->retry_at;
        for (struct kumo__connect_req *w = l->waiters; w; w = w->next)
            if (w->deadline < at)
                at = w->deadline;
        link_arm_timer(l, at);
        return false;
    }
    default:
        return malformed(l, "HELLO_ACK with an unknown status");
    }
}

static int new_socket(struct link *l)
{
    bool shm = l->ep->t->shm;
    int fd = socket(shm ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (shm)
        return fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (l->sockbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &l->sockbuf, sizeof l->sockbuf);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &l->sockbuf, sizeof l->sockbuf);
    }
    return fd;
}

/* (Re)starts the TCP connect of an outgoing link. */
static void start_connect(struct link *l)
{
    struct tcp_ep *ep = l->ep;
    if (l->fd >= 0) {
        close(l->fd);
        l->fd = -1;
    }
    shm_release(l);
    int fd = new_socket(l);
    if (fd < 0) {
        link_kill(l, map_connect_errno(fd), false, "socket() failed");
        return;
    }
    l->fd = fd;
    l->state = L_CONNECTING;
    l->hdr_have = 0;
    l->in_body = false;
    struct io_uring_sqe *sqe = get_sqe(ep_sh(ep));
    io_uring_prep_connect(sqe, fd, (struct sockaddr *)&l->sa, l->salen);
    io_uring_sqe_set_data(sqe, &l->c_connect);
    l->ops++;
}

static void connect_done(struct kumo__shard *sh, struct kumo__completion *c,
                         struct io_uring_cqe *cqe)
{
    struct link *l = CONTAINER(c, struct link, c_connect);
    l->ops--;
    l->busy++;
    int res = cqe->res;
    if (l->state == L_CONNECTING) {
        if (res < 0) {
            char why[96];
            snprintf(why, sizeof why, "connect failed: %s", strerror(-res));
            link_kill(l, res == -ECANCELED ? -KUMO_ETIMEOUT : map_connect_errno(res), false, why);
        } else if (l->ep->t->shm && (res = shm_setup_connector(l)) < 0) {
            char why[96];
            snprintf(why, sizeof why, "shared memory setup failed: %s", strerror(-res));
            link_kill(l, -KUMO_ENORESOURCES, false, why);
        } else {
            uint8_t hello[KUMO__TCP_HELLO_MAX];
            kumo__auth_nonce(l->nonce_c);
            size_t n = kumo__tcp_hello_encode(hello, &l->ep->base.addr, &l->peer, 0, l->nonce_c);
            l->state = L_HELLO_SENT;
            ctl_queue(l, KUMO__T_HELLO, hello, (uint32_t)n);
            arm_recv(l);
        }
    }
    l->busy--;
    link_maybe_free(l);
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */
/* ------------------------------------------------------------------ */

static void link_arm_timer(struct link *l, uint64_t at)
{
    struct kumo__shard *sh = ep_sh(l->ep);
    if (kumo__timer_arm(&sh->timers, &l->timer, at))
        kumo__log(KUMO_LOG_ERROR, "%s: no memory for a link timer", TNAME(l->ep));
}

/* Expires waiting connects; returns the earliest remaining deadline. */
static uint64_t expire_waiters(struct link *l, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    struct kumo__connect_req **pp = &l->waiters;
    while (*pp) {
        struct kumo__connect_req *r = *pp;
        if (r->deadline <= now) {
            *pp = r->next;
            kumo__connect_done(r, NULL, -KUMO_ETIMEOUT);
            continue;
        }
        if (r->deadline < next)
            next = r->deadline;
        pp = &r->next;
    }
    return next;
}

static void link_timer_fn(struct kumo__shard *sh, struct kumo__timer *t)
{
    struct link *l = CONTAINER(t, struct link, timer);
    struct tcp_t *tt = l->ep->t;
    uint64_t now = kumo__now_ns();
    l->busy++;
    switch (l->state) {
    case L_CONNECTING:
    case L_HELLO_SENT:
    case L_RETRY_WAIT: {
        uint64_t next = expire_waiters(l, now);
        if (!l->waiters) {
            link_kill(l, -KUMO_ETIMEOUT, false, "connect timed out");
            break;
        }
        if (l->state == L_RETRY_WAIT) {
            struct link *other = find_link(l->ep, &l->peer, l);
            if (other && other->state == L_UP) {
                open_waiters_on(l, other);
                link_kill(l, -KUMO_ECONNFAILED, false, NULL);
                break;
            }
            if (l->retry_at <= now && !l->ops) {
                start_connect(l);
                if (l->state == L_DEAD)
                    break;
            } else if (l->retry_at > now && l->retry_at < next) {
                next = l->retry_at;
            } else if (l->ops) {
                next = now + 1000000; /* the old socket's operations are ending */
            }
        }
        link_arm_timer(l, next);
        break;
    }
    case L_WAIT_HELLO:
    case L_REJECTING:
    case L_ACK_SENDING:
    case L_WAIT_AUTH: {
        /* (our own connects may wait on an incoming link's handshake) */
        uint64_t next = expire_waiters(l, now);
        if (now >= l->deadline) {
            if (!l->outgoing)
                refusal(l, "handshake timed out");
            link_kill(l, -KUMO_ETIMEOUT, false, "handshake timed out");
        } else
            link_arm_timer(l, next < l->deadline ? next : l->deadline);
        break;
    }
    case L_UP:
        if (tt->shm)
            break; /* no heartbeats (this was the connect's deadline) */
        if (now - l->last_rx > tt->cfg.heartbeat_timeout_ns) {
            link_kill(l, -KUMO_ECONNLOST, true, "heartbeat timeout: nothing received");
            break;
        }
        if (now - l->last_tx >= tt->cfg.heartbeat_interval_ns && !l->send_inflight && !l->self) {
            ctl_queue(l, KUMO__T_PING, NULL, 0);
            l->last_tx = now; /* one PING per interval even if the send is slow */
        }
        link_arm_timer(l, now + tt->cfg.heartbeat_interval_ns);
        break;
    case L_CLOSING:
        if (now >= l->deadline)
            link_kill(l, -KUMO_ECLOSED, false, "peer did not finish the close in time");
        else
            link_arm_timer(l, l->deadline);
        break;
    case L_DEAD:
        break;
    }
    l->busy--;
    link_maybe_free(l);
}

/* ------------------------------------------------------------------ */
/* Endpoints                                                           */
/* ------------------------------------------------------------------ */

static void accept_done(struct kumo__shard *sh, struct kumo__completion *c,
                        struct io_uring_cqe *cqe);

static void arm_accept(struct tcp_ep *ep)
{
    if (ep->accept_armed || ep->closing)
        return;
    struct io_uring_sqe *sqe = get_sqe(ep_sh(ep));
    io_uring_prep_multishot_accept(sqe, ep->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &ep->c_accept);
    ep->accept_armed = true;
    ep->ops++;
}

static void accept_retry_fn(struct kumo__shard *sh, struct kumo__timer *t)
{
    struct tcp_ep *ep = CONTAINER(t, struct tcp_ep, accept_retry);
    arm_accept(ep);
}

static void accept_done(struct kumo__shard *sh, struct kumo__completion *c,
                        struct io_uring_cqe *cqe)
{
    struct tcp_ep *ep = CONTAINER(c, struct tcp_ep, c_accept);
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        ep->accept_armed = false;
        ep->ops--;
    }
    if (res >= 0) {
        if (ep->closing) {
            close(res);
        } else {
            int one = 1;
            setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct link *l = link_new(ep, res);
            if (!l) {
                kumo__log(KUMO_LOG_WARN, "%s: out of memory for an accepted connection", TNAME(ep));
                close(res);
            } else {
                l->salen = sizeof l->sa;
                getpeername(res, (struct sockaddr *)&l->sa, &l->salen);
                l->state = L_WAIT_HELLO;
                l->deadline = kumo__now_ns() + ep->t->cfg.connect_timeout_ns;
                link_arm_timer(l, l->deadline);
                arm_recv(l);
            }
        }
        if (!ep->accept_armed && !ep->closing)
            arm_accept(ep);
    } else if (!ep->closing && res != -ECANCELED) {
        if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM ||
            res == -EINTR || res == -ECONNABORTED || res == -EAGAIN) {
            kumo__log(KUMO_LOG_WARN, "%s: accept failed (%s), retrying in 50 ms", TNAME(ep),
                      strerror(-res));
            if (!ep->accept_armed)
                kumo__timer_arm(&sh->timers, &ep->accept_retry, kumo__now_ns() + 50000000);
        } else {
            kumo__log(KUMO_LOG_ERROR, "%s: endpoint failed: accept: %s", TNAME(ep), strerror(-res));
            kumo_event ev = {
                .kind = KUMO_EV_ERROR, .error = KUMO_ERR_ENDPOINT_FAILED, .reason = res};
            kumo__emit(&ep->base, &ev);
            kumo_endpoint_close(&ep->base);
        }
    }
    ep_maybe_closed(ep);
}

/* Registers the endpoint's buffer ring and starts accepting (on its
 * shard, once). */
static void ep_arm(struct tcp_ep *ep)
{
    if (ep->armed)
        return;
    ep->armed = true;
    struct kumo__shard *sh = ep_sh(ep);
    struct tcp_t *t = ep->t;
    ep->bgid = -1;
    if (sh->eng->feat.buf_ring && !t->shm) {
        ep->nbufs = t->cfg.rx_buffers;
        ep->bufsz = t->cfg.rx_buffer_size;
        ep->br_bytes = (sizeof(struct io_uring_buf) * ep->nbufs + 4095) & ~(size_t)4095;
        void *mem = NULL;
        if (posix_memalign(&mem, 4096, ep->br_bytes) == 0) {
            ep->br = mem;
            ep->bufs = kumo__alloc((size_t)ep->nbufs * ep->bufsz);
        }
        if (ep->br && ep->bufs) {
            io_uring_buf_ring_init(ep->br);
            /* Group ids are per ring: several transports and endpoints
             * share a shard, so take the first free one from a spread
             * start. */
            unsigned start = (unsigned)(((uintptr_t)ep >> 6) * 2654435761u) & 0x7fff;
            for (unsigned k = 0; k < 256 && ep->bgid < 0; k++) {
                struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)ep->br,
                                               .ring_entries = ep->nbufs,
                                               .bgid = (uint16_t)((start + k) & 0x7fff)};
                int err = io_uring_register_buf_ring(&sh->ring, &reg, 0);
                if (err == 0)
                    ep->bgid = reg.bgid;
                else if (err != -EEXIST)
                    break;
            }
        }
        if (ep->bgid >= 0) {
            for (unsigned i = 0; i < ep->nbufs; i++)
                io_uring_buf_ring_add(ep->br, ep->bufs + (size_t)i * ep->bufsz, ep->bufsz,
                                      (unsigned short)i, io_uring_buf_ring_mask(ep->nbufs), (int)i);
            io_uring_buf_ring_advance(ep->br, (int)ep->nbufs);
        } else {
            kumo__log(KUMO_LOG_WARN, "%s: no buffer ring for an endpoint: plain receives",
                      TNAME(ep));
            free(ep->br);
            ep->br = NULL;
            kumo__free(ep->bufs, (size_t)ep->nbufs * ep->bufsz);
            ep->bufs = NULL;
        }
    }
    arm_accept(ep);
}

static void arm_task_fn(struct kumo__shard *sh, struct kumo__task *t)
{
    struct tcp_ep *ep = CONTAINER(t, struct tcp_ep, arm_task);
    if (sh && !ep->base.shut)
        ep_arm(ep);
}

static void ep_maybe_closed(struct tcp_ep *ep)
{
    if (!ep->closing || ep->final_done || ep->links || ep->ops)
        return;
    ep->final_done = true;
    struct kumo__shard *sh = ep_sh(ep);
    kumo__timer_cancel(&sh->timers, &ep->accept_retry);
    if (ep->bgid >= 0) {
        io_uring_unregister_buf_ring(&sh->ring, ep->bgid);
        ep->bgid = -1;
    }
    free(ep->br);
    ep->br = NULL;
    kumo__free(ep->bufs, (size_t)ep->nbufs * ep->bufsz);
    ep->bufs = NULL;
    if (ep->lfd >= 0) {
        close(ep->lfd);
        ep->lfd = -1;
    }
    kumo__endpoint_closed(&ep->base);
}

void kumo__stream_endpoint_close(struct kumo_endpoint *bep)
{
    struct tcp_ep *ep = E(bep);
    struct kumo__shard *sh = ep_sh(ep);
    ep->closing = true;
    kumo__timer_cancel(&sh->timers, &ep->accept_retry);
    if (ep->accept_armed) {
        shutdown(ep->lfd, SHUT_RDWR);
        struct io_uring_sqe *sqe = get_sqe(sh);
        io_uring_prep_cancel(sqe, &ep->c_accept, 0);
        io_uring_sqe_set_data(sqe, NULL);
    }
    struct link *l = ep->links;
    while (l) {
        struct link *next = l->next;
        if (l->state == L_UP && !l->self) {
            /* Send what is queued, then BYE; wait (bounded) for the
             * peer's close.  Incoming data is no longer reported. */
            l->state = L_CLOSING;
            l->bye_pending = true;
            l->deadline = kumo__now_ns() + ep->t->cfg.heartbeat_timeout_ns;
            link_arm_timer(l, l->deadline);
            mark_dirty(l);
        } else {
            link_kill(l, -KUMO_ECLOSED, false, NULL); /* may free l; next is kept */
        }
        l = next;
    }
    ep_maybe_closed(ep);
}

int kumo__stream_endpoint_new(struct kumo_transport *bt, struct kumo_endpoint *tmpl,
                              struct kumo_endpoint **out)
{
    struct tcp_t *t = T(bt);
    struct tcp_ep *ep = kumo__zalloc(sizeof *ep);
    if (!ep)
        return -ENOMEM;
    ep->base = *tmpl;
    ep->t = t;
    ep->lfd = -1;
    ep->bgid = -1;
    ep->flush.fn = flush_fn;
    ep->c_accept.fn = accept_done;
    kumo__timer_init(&ep->accept_retry);
    ep->accept_retry.fn = accept_retry_fn;
    ep->arm_task.fn = arm_task_fn;
    if (getrandom(&ep->inc, sizeof ep->inc, 0) != sizeof ep->inc)
        ep->inc = kumo__now_ns() ^ (uint64_t)(uintptr_t)ep;
    if (!ep->inc)
        ep->inc = 1; /* 0 names a place (kumo__tcp_address_parse) */
    ep->poller.poll = shm_poll;
    ep->poller.prepark = shm_prepark;
    int fd = socket(t->shm ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int err = -errno;
        kumo__free(ep, sizeof *ep);
        return err;
    }
    int err = 0;
    if (t->shm) {
        uint32_t pid = (uint32_t)getpid();
        shm_sun(pid, ep->inc, &ep->sun, &ep->sunlen);
        if (bind(fd, (struct sockaddr *)&ep->sun, ep->sunlen) || listen(fd, 4096))
            err = -errno;
        else
            addr_make_shm(&ep->base.addr, pid, ep->inc);
    } else {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = t->ip};
        if (t->cfg.port)
            sa.sin_port = htons((uint16_t)(t->cfg.port + atomic_fetch_add(&t->next_k, 1)));
        socklen_t sl = sizeof sa;
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4096) ||
            getsockname(fd, (struct sockaddr *)&sa, &sl))
            err = -errno;
        else
            addr_make_tcp(&ep->base.addr, sa.sin_addr, ntohs(sa.sin_port), ep->inc);
    }
    if (err) {
        close(fd);
        kumo__free(ep, sizeof *ep);
        return err;
    }
    ep->lfd = fd;
    pthread_mutex_lock(&t->mu);
    ep->next_all = t->eps;
    t->eps = ep;
    pthread_mutex_unlock(&t->mu);
    /* (fails only while the engine stops, and then nothing is armed) */
    (void)kumo__task_post(bt->eng, tmpl->shard, &ep->arm_task);
    *out = &ep->base;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

static struct link *self_link(struct tcp_ep *ep)
{
    if (ep->self_link)
        return ep->self_link;
    struct link *l = link_new(ep, -1);
    if (!l)
        return NULL;
    l->self = true;
    l->peer = ep->base.addr;
    l->peer_known = true;
    l->state = L_UP;
    ep->self_link = l;
    return l;
}

void kumo__stream_connect(struct kumo_endpoint *bep, struct kumo__connect_req *req)
{
    struct tcp_ep *ep = E(bep);
    ep_arm(ep);
    struct tcp_t *t = ep->t;
    struct sockaddr_storage sa;
    socklen_t salen;
    if (!addr_sockaddr(t->shm, &req->to, &sa, &salen)) {
        kumo__connect_done(req, NULL, -KUMO_ENOTFOUND);
        return;
    }
    uint64_t timeout =
        req->hints.connect_timeout_ns ? req->hints.connect_timeout_ns : t->cfg.connect_timeout_ns;
    if (!req->deadline) /* set already: a connect redirected from a place keeps its own */
        req->deadline = kumo__now_ns() + timeout;
    req->next = NULL;
    if (kumo_address_eq(&req->to, &ep->base.addr)) {
        struct link *l = self_link(ep);
        if (!l) {
            kumo__connect_done(req, NULL, -KUMO_ENORESOURCES);
            return;
        }
        open_conn(l, req);
        return;
    }
    struct link *l = find_link(ep, &req->to, NULL);
    if (l && l->state == L_UP) {
        open_conn(l, req);
        return;
    }
    if (l) {
        req->next = l->waiters;
        l->waiters = req;
        if (req->deadline < l->timer.deadline || !kumo__timer_armed(&l->timer))
            link_arm_timer(l, req->deadline);
        return;
    }
    l = link_new(ep, -1);
    if (!l) {
        kumo__connect_done(req, NULL, -KUMO_ENORESOURCES);
        return;
    }
    l->outgoing = true;
    l->peer = req->to;
    l->peer_known = true;
    l->sa = sa;
    l->salen = salen;
    if (req->hints.priority == KUMO_HINT_BANDWIDTH && t->cfg.bandwidth_sockbuf > 0)
        l->sockbuf = t->cfg.bandwidth_sockbuf;
    l->waiters = req;
    link_arm_timer(l, req->deadline);
    start_connect(l);
}

int kumo__stream_send(struct kumo_endpoint *bep, struct kumo__conn *c, const struct iovec *iov,
                      int n, size_t len, kumo_release_fn release, void *release_arg)
{
    struct out_conn *oc = c->impl;
    struct link *l = oc->l;
    if (l->state != L_UP)
        return -KUMO_ECONNLOST;
    /* Small copied messages go out as one frame, so never one over the
     * fragment size (the peer would take it for malformed). */
    bool small = !release && len <= STAGE_MSG_MAX && len <= l->ep->t->cfg.fragment_size;
    if (small && l->ring && ring_send_now(l, oc, iov, n, len))
        return 0;
    if (small && !oc->qh) {
        size_t need = l->stage_len + KUMO__TCP_HDR + len;
        if (need > STAGE_MAX && l->stage_cap == STAGE_MAX && stage_seal(l))
            need = KUMO__TCP_HDR + len;
        if (need > l->stage_cap && need <= STAGE_MAX) {
            size_t ncap = l->stage_cap ? l->stage_cap : 16384;
            while (ncap < need)
                ncap *= 2;
            uint8_t *nb = kumo__alloc(ncap);
            if (nb) {
                if (l->stage_len)
                    memcpy(nb, l->stage, l->stage_len);
                kumo__free(l->stage, l->stage_cap);
                l->stage = nb;
                l->stage_cap = ncap;
            }
        }
        if (need <= l->stage_cap) {
            uint8_t *p = l->stage + l->stage_len;
            p += kumo__tcp_hdr_encode(p, KUMO__T_DATA, 0, oc->wid, (uint32_t)len, 0);
            kumo__iov_gather(p, iov, n);
            l->stage_len = need;
            check_over(l);
            mark_dirty(l);
            return 0;
        }
        /* no memory to stage it: queue it (it goes after what is staged) */
    }
    struct txm *m = txm_new(KUMO__T_DATA, kumo__iov_hold_size(n, len, release != NULL));
    if (!m)
        return -ENOMEM;
    m->niov = kumo__iov_hold(m->inl, iov, n, len, release != NULL);
    m->release = release;
    m->release_arg = release_arg;
    m->iov = m->inl;
    m->len = len;
    oc_push(oc, m);
    l->txq_bytes += len;
    check_over(l);
    mark_dirty(l);
    return 0;
}

void kumo__stream_conn_close(struct kumo_endpoint *bep, struct kumo__conn *c)
{
    struct out_conn *oc = c->impl;
    c->impl = NULL;
    if (!oc)
        return;
    oc->rec = NULL;
    struct link *l = oc->l;
    struct txm *m = txm_new(KUMO__T_CLOSE, 0);
    if (!m) {
        /* Without a CLOSE the peer would keep the connection open: end the
         * link instead (both sides see it fail). */
        link_kill(l, -KUMO_ENORESOURCES, true, "out of memory for a CLOSE");
        return;
    }
    oc->closing = true;
    oc_push(oc, m);
    mark_dirty(l);
}

void kumo__stream_break_link(struct kumo_endpoint *bep, const kumo_address *peer)
{
    struct tcp_ep *ep = E(bep);
    if (kumo_address_eq(peer, &ep->base.addr)) {
        if (ep->self_link)
            link_kill(ep->self_link, -KUMO_ECONNLOST, true, "test hook: link broken");
        return;
    }
    for (struct link *l = ep->links; l; l = l->next)
        if (!l->self && l->peer_known && l->state != L_DEAD && kumo_address_eq(&l->peer, peer)) {
            l->rst = true;
            link_kill(l, -KUMO_ECONNLOST, true, "test hook: link broken");
            return;
        }
}

/* ------------------------------------------------------------------ */
/* Transport                                                           */
/* ------------------------------------------------------------------ */

int kumo__stream_create(struct kumo__engine *eng, const kumo_tcp_config *cfg, bool shm,
                        uint32_t ring_bytes, struct kumo_transport **out)
{
    kumo_tcp_config c = *cfg;
    if (!c.connect_timeout_ns)
        c.connect_timeout_ns = 10000000000ull;
    if (!c.heartbeat_interval_ns)
        c.heartbeat_interval_ns = 1000000000ull;
    if (!c.heartbeat_timeout_ns)
        c.heartbeat_timeout_ns = 5000000000ull;
    if (!c.max_message)
        c.max_message = 256u << 20;
    if (!c.fragment_size)
        c.fragment_size = 64u << 10;
    if (!c.send_queue_max)
        c.send_queue_max = KUMO__SEND_QUEUE_MAX;
    if (c.fragment_size < 64 || c.heartbeat_timeout_ns <= c.heartbeat_interval_ns)
        return -EINVAL;
    struct tcp_t *t = kumo__zalloc(sizeof *t);
    if (!t)
        return -ENOMEM;
    t->cfg = c;
    t->shm = shm;
    t->ring_bytes = ring_bytes;
    t->zc = !shm && eng->feat.send_zc && c.zerocopy_min != SIZE_MAX;
    if (shm)
        kumo__shm_barrier_setup();
    if (!shm) {
        const char *host = c.bind_host ? c.bind_host : "127.0.0.1";
        if (inet_pton(AF_INET, host, &t->ip) != 1) {
            kumo__free(t, sizeof *t);
            return -EINVAL;
        }
    }
    t->cfg.bind_host = NULL; /* not kept: the caller's string */
    const char *why = NULL;
    int err = kumo__cookie_resolve(c.cookie, &t->cookie, &t->cookie_len, &why);
    if (err) {
        kumo__log(KUMO_LOG_ERROR, "%s transport: no cookie: %s (%s)", shm ? "shm" : "tcp", why,
                  strerror(-err));
        kumo__free(t, sizeof *t);
        return err;
    }
    t->cfg.cookie = NULL; /* (the copy is t->cookie) */
    /* tcp copies a small message into its frame batch for less than a
     * queue entry costs (an off-shard 64 B stream: 2.9-3.7 -> 4.4-7.3 M/s);
     * shm's rings measured better lent (5.2-6.0 -> 4.3-5.2 M/s copied). */
    if (!shm)
        t->base.fwd_copy_max = STAGE_MSG_MAX < c.fragment_size ? STAGE_MSG_MAX : c.fragment_size;
    pthread_mutex_init(&t->mu, NULL);
    *out = &t->base;
    return 0;
}

size_t kumo__stream_max_message(const struct kumo_transport *bt)
{
    return ((const struct tcp_t *)bt)->cfg.max_message;
}

void kumo__stream_destroy(struct kumo_transport *bt)
{
    struct tcp_t *t = T(bt);
    while (t->eps) {
        struct tcp_ep *ep = t->eps;
        t->eps = ep->next_all;
        if (ep->lfd >= 0)
            close(ep->lfd);
        kumo__free(ep->pollv, sizeof(*ep->pollv) * ep->pollcap);
        kumo__free(ep, sizeof *ep);
    }
    pthread_mutex_destroy(&t->mu);
    kumo__cookie_free(t->cookie, t->cookie_len);
    kumo__free(t, sizeof *t);
}
