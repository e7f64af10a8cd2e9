/*
 * coord.h -- the coordinator: quorum reads and writes over the ring.
 *
 * Any node coordinates any key.  put/del: the coordinator stamps a new
 * version -- the client's ctx clock with the coordinator's own entry set to
 * a fresh, node-wide increasing counter (a hybrid logical clock, so a new
 * write never looks older than an earlier one from the same coordinator,
 * without reading first) -- sends the version to the N members of the
 * key's preference list as `_put(space, key, record)`, and answers after W
 * acknowledgements.  Each replica merges what it receives into its local
 * record (moor_record_merge: a descendant replaces, concurrent versions
 * become siblings), so a write that raced another is kept, never lost.
 * get: asks the N replicas with `_get(space, key)`, answers after R replies
 * with their merge (every live sibling plus the merged clock as ctx), and
 * sends the merged record to replicas that answered with less, in the
 * background (read repair).
 *
 * Failures say what happened: QUORUM_FAILED "<k> of <n> replicas answered,
 * <w> needed" when too few acknowledged before the deadline, TIMEOUT, and
 * UNAVAILABLE when the ring has fewer members than the level needs.
 *
 * Talks to the world only through env.h.  One thread.
 */
#ifndef MOOR_CLUSTER_COORD_H
#define MOOR_CLUSTER_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "ring.h"

typedef struct moor_coord moor_coord_t;

/* Answer to a client-level call, shaped like the wire methods' results:
 * get -> nil or {values = [...], ctx = bin}; put -> {ctx = bin}; del ->
 * true.  errcode NULL on success. */
typedef void (*moor_coord_done_fn)(void *arg, const char *errcode, const char *errmsg,
                                   const char *result, size_t rlen);

/* Optional resolver hook: given the encoded record of a key with more
 * than one live sibling, return 1 and append the resolved value
 * (MessagePack) to out, 0 to keep the siblings, <0 on error (logged,
 * siblings kept). */
typedef int (*moor_coord_resolve_fn)(void *ud, const char *space, size_t slen,
                                     const char *record, size_t rlen, moor_buf_t *out);

typedef struct moor_coord_opts {
    const char *node_id;          /* this node's member id */
    size_t idlen;
    moor_clock_if_t clock;
    moor_transport_if_t transport;
    moor_store_if_t store;        /* this node's replicas */
    moor_coord_resolve_fn resolve; /* may be NULL */
    void *resolve_ud;
    uint32_t timeout_ms;          /* default per request; 0 = 2000 */
} moor_coord_opts_t;

typedef struct moor_coord_req {
    const char *space;   /* "default" when NULL */
    size_t slen;
    const char *key;
    size_t klen;
    const char *value;   /* put: the MessagePack value; NULL for get/del */
    size_t vlen;
    const char *ctx;     /* encoded clock from a get, or NULL */
    size_t ctxlen;
    uint32_t n, r, w;    /* 0 = the space's default given by the caller */
    uint32_t timeout_ms; /* 0 = opts.timeout_ms */
} moor_coord_req_t;

typedef struct moor_coord_stats {
    uint64_t gets, puts, dels, quorum_failures, timeouts, read_repairs, resolved;
} moor_coord_stats_t;

/* ===== API ===== */

int moor_coord_new(const moor_coord_opts_t *o, moor_coord_t **out);
/* Answers every call in flight with SHUTTING_DOWN, then frees. */
void moor_coord_free(moor_coord_t *c);

/* The ring to route by (the coordinator takes a reference; calls already
 * started keep the ring they started with). */
void moor_coord_set_ring(moor_coord_t *c, moor_ring_t *ring);

/* Client-level operations.  done runs exactly once (maybe before return).
 * r, w, n must satisfy 1 <= r, w <= n. */
void moor_coord_get(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg);
void moor_coord_put(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg);
void moor_coord_del(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg);

/* Replica side: a `_get` or `_put` that arrived from a peer.  done runs
 * once (for _put after the local write is durable). */
void moor_coord_handle_peer(moor_coord_t *c, const char *method, size_t mlen,
                            const char *params, size_t plen, uint32_t nparams,
                            moor_coord_done_fn done, void *arg);

void moor_coord_stats(const moor_coord_t *c, moor_coord_stats_t *out);

#endif
