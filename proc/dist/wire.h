/*
 * The controller's wire format, version 3: pure encoders and decoders
 * (no state, no allocation), so every decoder can be fuzzed on its own.
 *
 * Controller traffic rides one reliable-ordered transport connection per
 * direction between two nodes.  Each transport message is one frame:
 *
 *   u8 version (3) | u8 op | u16 flags | body
 *
 * all integers little-endian.  A process id inside a frame is its local
 * part only (serial u64, slot u32, shard u16: 14 bytes): the sender's node
 * is the one that opened the connection (named in its HELLO) and the
 * receiver's is the node the connection reaches, so a pid's node never
 * travels per message.
 *
 *   HELLO     u64 from-node, u64 to-node (0: not known yet), u8 n,
 *             n addresses (kumo_address_encode)           first frame, once
 *   DATA      to, from, u64 type, payload                  mailbox message
 *   CHAN      to, from, u64 type, u64 channel, payload     channel message
 *   LINK      to, from
 *   UNLINK    to, from
 *   MONITOR   to, from, u64 ref
 *   DEMONITOR to, from, u64 ref
 *   EXIT      to, from, reason        flags bit 0: fires a link (MF_LINK),
 *                                     bit 1: an Erlang link (MF_ELINK)
 *   KILL      to, from, reason
 *   DOWN      to (watcher), from (target), u64 ref, reason
 *   ELINK     to, from                             Erlang link (both ways)
 *   EUNLINK   to, from
 *   REG       to (the pid to register, or 0), from (requester), u64 ref,
 *             u64 type, u64 to's node (it may be any node's pid: the
 *             requester's own, a third node's), u8 name length, name,
 *             message bytes (NSEND); flags: the request (KUMO__REG_*)
 *                                                         remote registry
 *   REG_REPLY to (requester), from (the pid found, or 0), u64 ref, i32 err,
 *             u64 from's node (a name may hold any node's pid)
 *   INFO      to, from, u64 ref                   process info request
 *   DIR       as HELLO: the node id and addresses of a third node the
 *             sender knows (to-node 0)                    directory entry
 *   SPAWN     to (0), from (requester), u64 ref, i32 shard, u8 flags,
 *             u8 name length, name, argument bytes              remote spawn
 *   SPAWN_REPLY to (requester), from (the child, or 0), u64 ref, i32 err
 *
 * A reason is u8 kind, u8 text length, text (no NUL), then what ended the
 * process: u8 via, and `by` as u64 node and the pid's local part (all
 * zero for KUMO_VIA_NONE).  Decoders check
 * every length against what was received and return -KUMO_EBADWIRE for
 * anything malformed: a short frame, an unknown version or op, trailing
 * bytes after a fixed-size body, an address or reason that does not fit.
 */
#ifndef KUMO_PROC_DIST_WIRE_H
#define KUMO_PROC_DIST_WIRE_H

#include <kumo/dist.h>
#include <kumo/kumo.h>
#include <kumo/transport.h>

#include "proc/pid.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KUMO__DW_VERSION 3

enum {
    KUMO__DW_HELLO = 1,
    KUMO__DW_DATA,
    KUMO__DW_CHAN,
    KUMO__DW_LINK,
    KUMO__DW_UNLINK,
    KUMO__DW_MONITOR,
    KUMO__DW_DEMONITOR,
    KUMO__DW_EXIT,
    KUMO__DW_KILL,
    KUMO__DW_DOWN,
    KUMO__DW_SPAWN,
    KUMO__DW_SPAWN_REPLY,
    KUMO__DW_DIR,
    KUMO__DW_REG,
    KUMO__DW_REG_REPLY,
    KUMO__DW_ELINK,
    KUMO__DW_EUNLINK,
    KUMO__DW_INFO,
    KUMO__DW_OP_LAST
};

enum { KUMO__DW_F_LINK = 1, KUMO__DW_F_ELINK = 2 };

/* Most addresses a HELLO carries (one per transport a node runs). */
#define KUMO__DW_MAX_ADDRS 4

#define KUMO__DW_HDR 4
#define KUMO__DW_PID 14
/* A reason's cause: u8 via, u64 node, the pid's local part (a third
 * node's pid can be named, so its node travels). */
#define KUMO__DW_BY (1 + 8 + KUMO__DW_PID)
/* Largest fixed part before a DATA/CHAN payload. */
#define KUMO__DW_DATA_HDR (KUMO__DW_HDR + 2 * KUMO__DW_PID + 8)
#define KUMO__DW_CHAN_HDR (KUMO__DW_DATA_HDR + 8)
/* Largest signal frame (DOWN with the longest reason text). */
#define KUMO__DW_SIGNAL_MAX                                                                        \
    (KUMO__DW_HDR + 2 * KUMO__DW_PID + 8 + 2 + KUMO_REASON_TEXT + KUMO__DW_BY)
#define KUMO__DW_HELLO_MAX (KUMO__DW_HDR + 17 + KUMO__DW_MAX_ADDRS * KUMO_ADDRESS_WIRE_MAX)
/* A SPAWN's fixed part and name (the arguments follow). */
#define KUMO__DW_SPAWN_FIXED (KUMO__DW_HDR + 2 * KUMO__DW_PID + 8 + 4 + 1 + 1)
#define KUMO__DW_SPAWN_HDR_MAX (KUMO__DW_SPAWN_FIXED + KUMO_CLOSURE_NAME_MAX)
#define KUMO__DW_SPAWN_REPLY_LEN (KUMO__DW_HDR + 2 * KUMO__DW_PID + 8 + 4)
#define KUMO__DW_REG_FIXED (KUMO__DW_HDR + 2 * KUMO__DW_PID + 8 + 8 + 8 + 1)
#define KUMO__DW_REG_HDR_MAX (KUMO__DW_REG_FIXED + KUMO_NAME_MAX)
#define KUMO__DW_REG_REPLY_LEN (KUMO__DW_SPAWN_REPLY_LEN + 8)
/* Room that holds the head of any frame: all of it for every frame but
 * DATA, CHAN and SPAWN, whose payloads need not be copied to decode. */
#define KUMO__DW_HEAD_MAX1                                                                         \
    (KUMO__DW_HELLO_MAX > KUMO__DW_SPAWN_HDR_MAX                                                   \
         ? (KUMO__DW_HELLO_MAX > KUMO__DW_SIGNAL_MAX ? KUMO__DW_HELLO_MAX : KUMO__DW_SIGNAL_MAX)   \
         : (KUMO__DW_SPAWN_HDR_MAX > KUMO__DW_SIGNAL_MAX ? KUMO__DW_SPAWN_HDR_MAX                  \
                                                         : KUMO__DW_SIGNAL_MAX))
#define KUMO__DW_HEAD_MAX                                                                          \
    (KUMO__DW_HEAD_MAX1 > KUMO__DW_REG_HDR_MAX ? KUMO__DW_HEAD_MAX1 : KUMO__DW_REG_HDR_MAX)

/* One decoded frame (copies of what was read: nothing points into the
 * input). */
struct kumo__dw_frame {
    uint8_t op;
    uint16_t flags;
    uint8_t naddr;               /* HELLO, DIR */
    uint8_t sflags;              /* SPAWN */
    uint8_t namelen;             /* SPAWN, REG */
    int32_t shard;               /* SPAWN; SPAWN_REPLY and REG_REPLY: err */
    uint64_t from_node, to_node; /* HELLO, DIR */
    /* everything else: the pids' local parts, as on the wire (the caller
     * makes pids of them with kumo__dw_pid and the right nodes: kept as
     * scalars so no pid is stored in parts and read back whole, which
     * stalled store forwarding in every received frame) */
    struct kumo__dw_pid {
        uint64_t serial;
        uint32_t slot;
        uint16_t shard;
    } to, from;
    uint64_t type;      /* DATA, CHAN, REG */
    uint64_t aux;       /* CHAN: channel id; MONITOR, DEMONITOR, DOWN, SPAWN*, REG*: ref */
    size_t payload_off; /* DATA, CHAN, SPAWN, REG: where the payload starts */
    size_t len;         /* ... and its length */
    uint64_t pid_node;  /* REG: to's node; REG_REPLY: from's node */
    /* Large parts, written only by the decoders of the frames that carry
     * them (the rest of the struct is cleared per frame, these are not:
     * clearing ~600 bytes per message cost more than the decoding). */
    kumo_address addr[KUMO__DW_MAX_ADDRS]; /* HELLO, DIR: naddr of them */
    kumo_reason reason;                    /* EXIT, KILL, DOWN */
    char name[KUMO_NAME_MAX + 1];          /* SPAWN, REG: namelen bytes + NUL */
};

/* The pid of node `node` whose local part a frame carried. */
static inline kumo_pid kumo__dw_pid(const struct kumo__dw_pid *w, uint64_t node)
{
    return kumo__pid_make(node, w->serial, w->slot, w->shard);
}

/* Writes a HELLO (op KUMO__DW_HELLO) or a DIR entry (op KUMO__DW_DIR,
 * to_node 0) into out (room for KUMO__DW_HELLO_MAX); returns its length.
 * n <= KUMO__DW_MAX_ADDRS. */
size_t kumo__dw_hello(uint8_t *out, uint8_t op, uint64_t from_node, uint64_t to_node,
                      const kumo_address *addrs, unsigned n);

/* Writes the fixed part of a DATA (chan == 0) or CHAN frame; the payload
 * follows it on the wire.  Returns its length (KUMO__DW_DATA_HDR or
 * KUMO__DW_CHAN_HDR). */
size_t kumo__dw_data_hdr(uint8_t *out, const kumo_pid *to, const kumo_pid *from, uint64_t type,
                         uint64_t chan);

/* Writes a signal frame (LINK .. DOWN) into out (room for
 * KUMO__DW_SIGNAL_MAX); `ref` is used by MONITOR, DEMONITOR and DOWN,
 * `r` by EXIT, KILL and DOWN.  Returns its length. */
size_t kumo__dw_signal(uint8_t *out, uint8_t op, uint16_t flags, kumo_pid to, kumo_pid from,
                       uint64_t ref, const kumo_reason *r);

/* Writes a SPAWN's fixed part and name (the argument bytes follow it on
 * the wire; namelen <= KUMO_CLOSURE_NAME_MAX).  Returns its length. */
size_t kumo__dw_spawn_hdr(uint8_t *out, kumo_pid from, uint64_t ref, int32_t shard, uint8_t flags,
                          const char *name, size_t namelen);
/* Writes a SPAWN_REPLY (KUMO__DW_SPAWN_REPLY_LEN bytes). */
size_t kumo__dw_spawn_reply(uint8_t *out, kumo_pid to, kumo_pid child, uint64_t ref, int32_t err);
/* A REG_REPLY (room for KUMO__DW_REG_REPLY_LEN): `found` whole, its node
 * included. */
size_t kumo__dw_reg_reply(uint8_t *out, kumo_pid to, kumo_pid found, uint64_t ref, int32_t err);

/* Writes a REG's fixed part and name (an NSEND's bytes follow it on the
 * wire).  Returns its length. */
size_t kumo__dw_reg_hdr(uint8_t *out, uint8_t op, kumo_pid pid, kumo_pid from, uint64_t ref,
                        uint64_t type, const char *name, size_t namelen);

/* Whether an op's frame carries a payload that need not be copied to
 * decode it. */
static inline bool kumo__dw_has_payload(uint8_t op)
{
    return op == KUMO__DW_DATA || op == KUMO__DW_CHAN || op == KUMO__DW_SPAWN || op == KUMO__DW_REG;
}

/*
 * Decodes a frame of `total` bytes whose first `avail` bytes are in
 * in[0..avail) (avail <= total: a DATA or CHAN payload need not be read
 * here; every other frame must be whole, avail == total).  Returns 0 or
 * -KUMO_EBADWIRE, with *why naming what was wrong (a static string).
 */
int kumo__dw_decode(const uint8_t *in, size_t avail, size_t total, struct kumo__dw_frame *f,
                    const char **why);

#endif
