/*
 * xfer.h -- moving data when members join and leave (DESIGN.md,
 * Elasticity; README "Joining and leaving").
 *
 * A member owns vnodes tokens; while it moves, `inactive` of them (ring.h)
 * are not on the ring.  A joining member starts with all of them inactive
 * and switches them on one at a time, in token order; a leaving one
 * switches them off from the top.  Switching token t changes the owners of
 * a few ranges only: for each such range and keyspace this module streams
 * the records to the member that gains the range before the switch is
 * published, so a read routed by the new ring never meets an empty owner:
 *
 *  - join step: A = the ring with this node's current tokens, B = with
 *    one more.  For every range of B whose first n members (per keyspace)
 *    include this node in B but not in A, pull the range from one of A's
 *    owners (`_xfer_pull`, pages over this node's own connections),
 *    merging every record into the local store; then publish one token
 *    less inactive.
 *  - leave step: A = the current ring, B = without this node's highest
 *    active token.  For every range this node owns in A and not in B,
 *    push the range to each member that gains it (`_xfer_push`); then
 *    publish one more inactive token.  With none left the node is `left`.
 *
 * Writes during a move also go to the owners to be (coord.h
 * moor_coord_set_pending with moor_xfer_pending_rings), so a range
 * streamed early misses nothing written after.  Before the first step the
 * node waits settle_ms, so that every coordinator has heard of the move.
 *
 * Streams are paced (a token bucket of rate_kb_s shared by every range),
 * at most `concurrency` ranges at once, in pages of about page_kb.  The
 * progress (the step, and per range of the step the last key merged) is
 * saved in the store under MOOR_XFER_KEY after every page, so a restart of
 * this node resumes from the last acknowledged page; a peer that fails or
 * restarts is asked again (another owner, for a pull) with backoff.
 * moor_xfer_cancel reverses a move (a join becomes a leave of the tokens
 * already switched on, a leave becomes a join that takes back what it
 * handed off).
 *
 * Cleanup: once no member has moved for cleanup_ms and the ring differs
 * from the one of the last cleanup (saved under MOOR_XFER_CLEAN_KEY), a
 * paced scan deletes the records of ranges this node no longer
 * replicates (handed off to a joining member), so that they take no
 * space and can never come back through a later change of owners.
 *
 * Wire forms (one map param; unknown keys skipped):
 *   _xfer_pull {spaces = [names], lo, hi, after? = engine key, max_bytes,
 *               count? = bool}
 *     -> {items = [[engine key, record], ...], more = bool,
 *         total_keys?, total_bytes?}  (totals when count was asked)
 *   _xfer_push {spaces = [names], lo, hi, items = [[engine key, record], ...]}
 *     -> {merged = uint}  (after every record merged is durable)
 *   _xfer_status {rate_kb_s?, concurrency?} -> {node, state, info, ranges = [range...]}
 *     (the throttles given are set first)
 * An item outside (lo, hi] or the spaces named is refused BAD_REQUEST, and
 * every record is checked as a `_put`'s (opts.merge).
 *
 * Talks to the world only through env.h.  One thread.  Deterministic.
 */
#ifndef MOOR_CLUSTER_XFER_H
#define MOOR_CLUSTER_XFER_H

#include <stddef.h>
#include <stdint.h>

#include "coord.h"
#include "env.h"
#include "membership.h"
#include "ring.h"

struct msgpack_packer;

/* Store key of the saved progress: ff x 8 | 00 | 'x'. */
#define MOOR_XFER_KEY "\xff\xff\xff\xff\xff\xff\xff\xff\x00" "x"
#define MOOR_XFER_KEY_LEN 10

/* The ring signature of the last finished cleanup: ff x 8 | 00 | 'y'. */
#define MOOR_XFER_CLEAN_KEY "\xff\xff\xff\xff\xff\xff\xff\xff\x00" "y"

#define MOOR_XFER_SPACES_MAX 64

typedef struct moor_xfer moor_xfer_t;

enum moor_xfer_state {
    MOOR_XFER_IDLE = 0, /* up, nothing moving */
    MOOR_XFER_JOINING,
    MOOR_XFER_LEAVING,
    MOOR_XFER_LEFT
};

typedef struct moor_xfer_space {
    const char *name;
    size_t nlen;
    uint32_t n;
} moor_xfer_space_t;

/* Merges rec (a peer's record of engine key key) into the local store
 * (coord.h moor_coord_merge_peer_record): 0 and done follows, or an
 * error and no done. */
typedef int (*moor_xfer_merge_fn)(void *ud, const char *key, size_t klen, const char *rec,
                                  size_t rlen, moor_store_done_fn done, void *arg);
/* Publishes this node's status and inactive tokens (gossip). */
typedef int (*moor_xfer_publish_fn)(void *ud, int status, uint32_t inactive);
typedef void (*moor_xfer_log_fn)(void *ud, int level, const char *msg);

typedef struct moor_xfer_params {
    uint32_t rate_kb_s;   /* bytes streamed per second, all ranges together; 65536 */
    uint32_t concurrency; /* ranges streamed at once; 2 */
    uint32_t page_kb;     /* bytes of records per page; 256 */
    uint32_t settle_ms;   /* wait after announcing a move; 2000 */
    uint32_t timeout_ms;  /* of one page request; 10000 */
    uint32_t cleanup_ms;  /* ring stable this long: drop what is no longer ours; 60000, 0 off */
} moor_xfer_params_t;

typedef struct moor_xfer_opts {
    const char *node_id;
    size_t idlen;
    moor_clock_if_t clock;
    moor_transport_if_t transport; /* streams' own connections */
    moor_store_if_t store;
    moor_xfer_merge_fn merge;
    void *merge_ud;
    const moor_xfer_space_t *spaces; /* copied */
    uint32_t nspaces;
    moor_xfer_params_t p;
    moor_xfer_publish_fn publish;
    moor_xfer_log_fn log; /* may be NULL */
    void *ud;
} moor_xfer_opts_t;

typedef struct moor_xfer_stats {
    int state; /* a moor_xfer_state */
    uint32_t vnodes, inactive;
    uint64_t ranges_total, ranges_done;
    uint64_t keys_sent, keys_received, bytes_sent, bytes_received;
    uint64_t started_ms, finished_ms; /* of the last move (0: none) */
    uint64_t keys_cleaned, bytes_cleaned; /* records dropped by cleanups */
    uint64_t cleanups;                    /* cleanup scans finished */
    int cleaning;                         /* one runs now */
} moor_xfer_stats_t;

/* ===== API ===== */

void moor_xfer_params_default(moor_xfer_params_t *p);

int moor_xfer_new(const moor_xfer_opts_t *o, moor_xfer_t **out);
/* Stops timers; replies in flight are absorbed when they arrive. */
void moor_xfer_free(moor_xfer_t *x);

/* Reads the saved progress: *state and *inactive of a move a restart
 * interrupted (MOOR_XFER_IDLE and 0 when none).  0 or the store's error. */
int moor_xfer_load(moor_xfer_t *x, int *state, uint32_t *inactive);

/* Starts (or, after moor_xfer_load, resumes) a move of this node, whose
 * entry has vnodes tokens with inactive of them off: MOOR_XFER_JOINING
 * or MOOR_XFER_LEAVING.  A join waits until the table holds another
 * member; when no other member has a token (a new cluster) every token
 * goes on at once.  0, or MOOR_EINVAL (with a diag: a leave of the last
 * member with tokens, a node that left). */
int moor_xfer_start(moor_xfer_t *x, int state, uint32_t vnodes, uint32_t inactive);

/* Reverses the move in progress (see above).  MOOR_EINVAL when idle. */
int moor_xfer_cancel(moor_xfer_t *x);

/* The member table changed (gossip): the next step is computed on it. */
void moor_xfer_set_members(moor_xfer_t *x, const moor_members_t *t);

/* Throttles, live: 0 keeps a value. */
void moor_xfer_set_params(moor_xfer_t *x, uint32_t rate_kb_s, uint32_t concurrency);
void moor_xfer_params(const moor_xfer_t *x, moor_xfer_params_t *p);

int moor_xfer_is_method(const char *method, size_t mlen);
/* Serves _xfer_pull, _xfer_push and _xfer_status. */
void moor_xfer_handle(moor_xfer_t *x, const char *method, size_t mlen, const char *params,
                      size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg);

void moor_xfer_stats(const moor_xfer_t *x, moor_xfer_stats_t *st);
const char *moor_xfer_state_name(int state);
/* info.transfer: {state, ranges_total, ranges_done, keys_sent,
 * keys_received, bytes_sent, bytes_received, vnodes, inactive, rate_mb_s,
 * concurrency, keys_cleaned, cleanups}.  0 or MOOR_ENOMEM. */
int moor_xfer_pack_info(const moor_xfer_t *x, struct msgpack_packer *pk);
/* This node's ranges in motion, as `_xfer_status` answers them: an array
 * of {from, to, spaces, lo, hi, keys_done, keys_total, bytes_done,
 * bytes_total, rate_bytes_s, eta_s, live}.  0 or MOOR_ENOMEM. */
int moor_xfer_pack_ranges(const moor_xfer_t *x, struct msgpack_packer *pk);

/* The rings the cluster moves toward: one per member in motion (joining
 * with tokens still off, or leaving) with that member's move finished,
 * and, when several move, one with every move finished.  At most max,
 * into out (each one reference); *n of them.  0 or an error. */
int moor_xfer_pending_rings(const moor_members_t *t, moor_ring_t **out, uint32_t max,
                            uint32_t *n);

/* Ranges and keys that change owner between two rings, for n replicas:
 * the fraction of the 2^64 tokens whose set of first n members differs
 * (members gained per token, summed, divided by n).  For the balance
 * figures; can't fail. */
double moor_xfer_moved_share(const moor_ring_t *a, const moor_ring_t *b, uint32_t n);

#endif
