/*
 * peer.h -- the real cluster transport: pooled MessagePack-RPC connections
 * from this node to the other members, on the loop thread.
 *
 * One TCP connection per member, opened lazily by the first request and
 * pipelined: every request gets a msgid of its connection, and answers are
 * matched by msgid in any order.  Outgoing sockets bind to the node's own
 * address before connecting (rules keyed on source address, TESTING.md).
 * With a cluster secret, each new connection first sends
 * `_auth {secret, proto = MOOR_PEER_PROTO}`, pipelined ahead of the queued
 * requests (an answer without that proto fails the connect); the node's side
 * of `_auth` lets that connection call `_` methods.
 *
 * Failures: every request has a timeout (then cb(MOOR_ETIMEDOUT) and a
 * late answer is dropped); a connection that dies answers its requests
 * with -ECONNRESET (MOOR_EPROTO when the peer sent a malformed frame, the
 * connect error such as -ECONNREFUSED when it never connected); an error
 * answer [code, message] becomes a negative code (moor_peer_err_code) with
 * "peer <id>: CODE: message" in moor_diag.  After a failed connect the
 * member is down for a backoff (backoff_min_ms doubling up to
 * backoff_max_ms, jittered from the seed): requests during it fail at once
 * with the last connect error, and the first request after it reconnects.
 * A connection that was up and then died reconnects on the next request
 * without waiting.  A member with max_pending requests in flight refuses
 * more with MOOR_EAGAIN.  A request whose frame would be over max_frame is
 * refused with MOOR_ETOOLARGE (the peer would drop the whole connection for
 * it).
 *
 * Threads: everything, callbacks included, runs on the pool's loop thread.
 * A reply callback may call back into the pool (new requests, close).
 */
#ifndef MOOR_NET_PEER_H
#define MOOR_NET_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/env.h"

typedef struct moor_peer_pool moor_peer_pool_t;

typedef struct moor_peer_opts {
    const char *self_addr;       /* IP outgoing sockets bind to; NULL or "": any */
    const char *secret;          /* cluster_secret; NULL or "": no _auth (copied) */
    uint32_t connect_timeout_ms; /* default 2000 */
    uint32_t
        max_pending; /* requests in flight per member; default MOOR_LIMIT_PEER_INFLIGHT (1024) */
    uint32_t backoff_min_ms; /* default 100 */
    uint32_t backoff_max_ms; /* default 5000 (>= backoff_min_ms) */
    uint64_t seed;           /* jitter of the backoff; any value */
    size_t max_frame;        /* largest request; default MOOR_LIMIT_MAX_FRAME (32 MiB) */
    size_t max_answer;       /* largest answer taken: a _get answers a whole record, which may
                              * be larger than any request; default MOOR_LIMIT_MAX_ANSWER */
} moor_peer_opts_t;

typedef struct moor_peer_stats {
    int connected;       /* 1 while a connection is up (connected, not closing) */
    int down;            /* 1 during a backoff after a failed connect */
    uint64_t connects;   /* connections established */
    uint64_t reconnects; /* established after the first */
    uint64_t connect_failures;
    uint64_t inflight; /* sent or queued, not yet answered */
    uint64_t requests; /* accepted by request() */
    uint64_t replies;  /* answered by the peer (errors included) */
    uint64_t latency_us; /* sum of their round trips */
    uint64_t errors;   /* error answers */
    uint64_t timeouts;
    uint64_t rejected; /* refused by request(): back-pressure or down */
    uint64_t late;     /* answers that came after their timeout (dropped) */
} moor_peer_stats_t;

/* ===== API ===== */

void moor_peer_opts_default(moor_peer_opts_t *o);

/* 0, MOOR_EINVAL (self_addr not a numeric IP, backoff_max < backoff_min)
 * or MOOR_ENOMEM, with a diagnostic.  The loop is borrowed and must
 * outlive the pool. */
int moor_peer_pool_new(uv_loop_t *loop, const moor_peer_opts_t *o, moor_peer_pool_t **out);

/* Where member id lives: "ip:port" or "[ipv6]:port" (numeric, no DNS;
 * copied).  A new member is added; a changed address closes the old
 * connection (its requests fail with -ECONNRESET) and the next request
 * connects to the new one; the same address is a no-op.  0, MOOR_EINVAL
 * (bad address, empty id), MOOR_ECLOSED or MOOR_ENOMEM. */
int moor_peer_pool_set_addr(moor_peer_pool_t *p, const char *id, size_t idlen, const char *addr);

/* Forgets a member: its requests fail with -ECONNRESET.  0,
 * MOOR_ENOTFOUND or MOOR_ECLOSED. */
int moor_peer_pool_forget(moor_peer_pool_t *p, const char *id, size_t idlen);

/* Sends method(params) to member `to` (params: nparams encoded objects,
 * copied).  0: cb(arg, status, result, rlen) runs exactly once, later (never
 * inside this call), by timeout_ms (0 means 1) at the latest; result is
 * borrowed for the call.  Else a negative code and cb never runs:
 * MOOR_ENOTFOUND (no address for the member), MOOR_EAGAIN (max_pending),
 * the member's last connect error while it is down, MOOR_EINVAL,
 * MOOR_ECLOSED, MOOR_ENOMEM. */
int moor_peer_pool_request(moor_peer_pool_t *p, const char *to, size_t tolen, const char *method,
                           const char *params, size_t plen, uint32_t nparams, uint32_t timeout_ms,
                           moor_peer_reply_fn cb, void *arg);

/* The pool as env.h's transport (request is moor_peer_pool_request). */
moor_transport_if_t moor_peer_pool_transport(moor_peer_pool_t *p);

/* 0 and *out filled, or MOOR_ENOTFOUND. */
int moor_peer_pool_stats(const moor_peer_pool_t *p, const char *id, size_t idlen,
                         moor_peer_stats_t *out);

/* Status for a wire error name: moor_err_from_wire, the one table of
 * util/err.h ("NOAUTH" -> MOOR_ENOAUTH, "QUORUM_FAILED" -> MOOR_EQUORUM,
 * "SHUTTING_DOWN" -> MOOR_ECLOSED, ...; names not in it -> MOOR_EPEER).
 * Never 0. */
int moor_peer_err_code(const char *code, size_t n);

/* Answers every request in flight with MOOR_ECLOSED (now, before
 * returning), closes every connection and timer, frees the pool and then
 * calls done(ud) (may be NULL) on the loop.  Requests made after this
 * (from the callbacks, say) return MOOR_ECLOSED.  Call once. */
void moor_peer_pool_close(moor_peer_pool_t *p, void (*done)(void *ud), void *ud);

#endif
