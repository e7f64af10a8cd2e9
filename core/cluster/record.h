/*
 * record.h -- what the engine stores for a key: its versions, as a dotted
 * version vector set (DVV; README "Siblings and contexts").
 *
 * A record is a causal context C (a vector clock, vclock.h: what every
 * write folded into this record had seen) and siblings, each a version
 * with its own dot (id, counter) -- the write that made it, by node id and
 * that node's counter -- its value, ts (wall-clock ms of the write), a
 * tombstone flag and an optional expiry.  A dot (id, c) is covered by a
 * clock V when c <= V[id].
 *
 * Expiry (README "Expiry (TTL)"): a live sibling may carry exp, the HLC
 * wall ms at which it expires.  From then on it IS a tombstone written at
 * exp with the same dot: moor_record_expire turns it into exactly that
 * (value dropped, ts = exp, no exp), and every reader applies it before it
 * looks at a record, so replicas that expired a sibling and replicas that
 * still hold its bytes agree, and none can hand the value back.
 *
 * Format v2, one MessagePack value, on disk and on the wire (`_put`,
 * `_get` answers, hints):
 *   [2, C, [[dot_id (bin), dot_counter (uint), value, ts_ms (uint),
 *            tombstone (bool) [, exp_ms (uint)]], ...]]
 * C as vclock.h encodes it; value is the exact MessagePack the client sent
 * (nil for a tombstone).  exp_ms, a 6th element, is there only for a live
 * sibling that expires (exp_ms >= 1; never on a tombstone): a record
 * without expiry is byte for byte what releases before it wrote, and
 * those releases refuse a 6-element sibling (a rolling-upgrade limit,
 * README).  Siblings are written sorted (sibling order of
 * record.c) and unique.
 *
 * Format v1 (before DVV): [C, [[value, ts_ms, tombstone], ...]] -- still
 * decoded: each sibling gets the legacy dot (MOOR_RECORD_LEGACY_ID,
 * max(1, ts * 1000)), an id no node may have and no v1 clock holds, so
 * converted records lose no sibling when merged, and a write with a ctx
 * read from them (which carries the legacy entry) replaces them.  Every
 * record written (write, merge) is v2.
 *
 * The ctx a client gets (get results, put results, receipts) is the
 * version vector C max the dots of the siblings, encoded as vclock.h: a
 * write with it replaces every sibling it covers.
 *
 * Engine keys: be64 token | u8 space_len | space | key, where token =
 * moor_hash_token(u8 space_len | space | key), so engine order is ring
 * order and a token range is one scan (DESIGN.md).
 */
#ifndef MOOR_CLUSTER_RECORD_H
#define MOOR_CLUSTER_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "vclock.h"

#define MOOR_SPACE_MAX 255
/* The hard cap: a record with more siblings is malformed; a merge past it
 * keeps the newest and reports how many it dropped.  sibling_max (config)
 * is at most this. */
#define MOOR_RECORD_MAX_SIBLINGS 512
/* The dot id of a sibling converted from format v1 (one zero byte; a
 * node id can never be it). */
#define MOOR_RECORD_LEGACY_ID "\0"
#define MOOR_RECORD_LEGACY_IDLEN 1
#define MOOR_RECORD_VC_KEEP 16      /* a write prunes the clock to this many entries */
/* Nesting of a value, its own containers counted: the get reply
 * [1, id, nil, {values = [v]}] holds it three levels down and a frame may
 * nest MOOR_MP_MAX_DEPTH (64) deep, so a value may nest 61; a deeper one
 * could be stored but never read back. */
#define MOOR_RECORD_VALUE_DEPTH 61

typedef struct moor_sibling {
    const char *value; /* MessagePack bytes, borrowed from the decoded input */
    size_t vlen;
    uint64_t ts;
    int tombstone;
    const char *dot_id; /* borrowed from the decoded input (or static) */
    uint8_t dot_idlen;  /* 1..MOOR_VC_ID_MAX */
    uint64_t dot_counter; /* >= 1 */
    uint64_t exp;         /* expiry, HLC wall ms; 0: never (always 0 on a tombstone) */
} moor_sibling_t;

/* ~25 KiB: keep it off small stacks (heap or a struct member). */
typedef struct moor_record {
    moor_vclock_t vc; /* the causal context C */
    uint32_t n;
    moor_sibling_t sib[MOOR_RECORD_MAX_SIBLINGS];
} moor_record_t;

/* ===== API ===== */

/* 1 if the vlen bytes at value are exactly one MessagePack object nested
 * at most MOOR_RECORD_VALUE_DEPTH deep, else 0.  Can't fail. */
int moor_record_value_ok(const char *value, size_t vlen);

/* Appends the engine key of (space, key).  0, MOOR_EINVAL (space over 255
 * bytes) or MOOR_ENOMEM. */
int moor_record_key(const char *space, size_t slen, const char *key, size_t klen, moor_buf_t *out);

/* Decodes a whole record; sibling values borrow from buf.  0 or
 * MOOR_ECORRUPT (stored bytes) -- safe on any input. */
int moor_record_decode(const char *buf, size_t len, moor_record_t *r);

/* Appends the encoding of r.  0 or MOOR_ENOMEM. */
int moor_record_encode(const moor_record_t *r, moor_buf_t *out);

/* Pruning of the context a write leaves (moor_vclock_prune's arguments). */
typedef struct moor_record_prune {
    uint32_t keep_min, max_entries;
    uint64_t max_age_ms;
} moor_record_prune_t;

/* The counter a write by node (with client context ctx, ctxlen 0 for
 * none) on cur (NULL: no record) must exceed: the largest of C[node],
 * ctx[node] and the counters of node's dots in cur.  0 or MOOR_EBADCTX
 * (ctx malformed or out of bounds at now, as moor_record_write says). */
int moor_record_write_floor(const moor_record_t *cur, const char *ctx, size_t ctxlen,
                            const char *node, size_t nodelen, uint64_t now, uint64_t *floor);

/* A client write of value (MessagePack bytes; ignored if tombstone) with
 * context ctx (encoded clock a get returned; ctxlen 0 for none: a blind
 * write) coordinated by node at time now, applied to cur (NULL if the key
 * has no record).  The new sibling gets the dot (node, counter) -- counter
 * 0: max(floor + 1, now * 1000), else it must exceed
 * moor_record_write_floor's floor (the coordinator's HLC).  The siblings
 * of cur whose dots ctx covers are dropped, the others kept; the context
 * becomes C max ctx (the new dot is not folded in), pruned as prune says
 * (NULL: to MOOR_RECORD_VC_KEEP entries).  Appends the record to out and
 * its ctx (moor_record_ctx) to new_ctx (both unaltered on error).  cur's
 * values are copied, so cur may be freed afterwards.  If nsib is not
 * NULL it gets the new record's sibling count.  0, MOOR_EBADCTX (ctx
 * malformed, or an entry beyond the bounds of moor_vclock_check_bounds at
 * now), MOOR_EINVAL (value not exactly one MessagePack object, node id
 * empty, over MOOR_VC_ID_MAX or the legacy id, counter not above the
 * floor), MOOR_ETOOMANYSIBS (the result would have more than
 * MOOR_RECORD_MAX_SIBLINGS siblings), MOOR_ENOMEM. */
int moor_record_write(const moor_record_t *cur, const char *ctx, size_t ctxlen, const char *value,
                      size_t vlen, int tombstone, const char *node, size_t nodelen, uint64_t now,
                      uint64_t counter, const moor_record_prune_t *prune, moor_buf_t *out,
                      moor_buf_t *new_ctx, uint32_t *nsib);

/* moor_record_write, the new sibling expiring at exp (HLC wall ms; 0:
 * never; ignored for a tombstone).  Same errors. */
int moor_record_write_exp(const moor_record_t *cur, const char *ctx, size_t ctxlen,
                          const char *value, size_t vlen, int tombstone, uint64_t exp,
                          const char *node, size_t nodelen, uint64_t now, uint64_t counter,
                          const moor_record_prune_t *prune, moor_buf_t *out, moor_buf_t *new_ctx,
                          uint32_t *nsib);

/* Expires r at now: every sibling with 0 < exp <= now becomes the
 * tombstone written at exp with its dot (value dropped, ts = exp, exp 0);
 * the siblings are then put back in canonical order, each once (an
 * expired sibling and the tombstone another replica already made of it
 * are one).  Returns how many siblings expired (0: r unaltered).  Can't
 * fail. */
uint32_t moor_record_expire(moor_record_t *r, uint64_t now);

/* The earliest expiry of r's live siblings, 0 if none expires.  Can't
 * fail. */
uint64_t moor_record_next_expiry(const moor_record_t *r);

/* Merges two versions of one key (replica merge, read merge): the causal
 * join.  A sibling of a survives if b holds the same sibling (dot and
 * content) or b's context does not cover its dot, and the other way
 * round; the context is the pointwise max.  Commutative, associative and
 * idempotent, with canonical output (merge(a, b) and merge(b, a) are the
 * same bytes) -- except past the caps: a context over MOOR_VC_MAX_ENTRIES
 * drops its oldest entries, and past MOOR_RECORD_MAX_SIBLINGS the oldest
 * siblings (by ts) are dropped; *dropped (if not NULL) gets how many, and
 * a process-wide count (moor_record_merge_drops) grows, so no sibling
 * goes silently.  Appends the result to out.  0 or MOOR_ENOMEM. */
int moor_record_merge(const moor_record_t *a, const moor_record_t *b, moor_buf_t *out);
int moor_record_merge_n(const moor_record_t *a, const moor_record_t *b, moor_buf_t *out,
                        uint32_t *dropped);

/* Siblings dropped by merges past MOOR_RECORD_MAX_SIBLINGS in this process. */
uint64_t moor_record_merge_drops(void);

/* 1 if every sibling is a tombstone (a get answers nil), else 0. */
int moor_record_is_deleted(const moor_record_t *r);

/* Appends the record's ctx: C max the dots of its siblings, encoded as a
 * vclock (past MOOR_VC_MAX_ENTRIES ids the oldest C entries give way to
 * the dots).  0 or MOOR_ENOMEM. */
int moor_record_ctx(const moor_record_t *r, moor_buf_t *out);
/* The same ctx as a clock.  Can't fail. */
void moor_record_ctx_vc(const moor_record_t *r, moor_vclock_t *vc);

/* Appends the get result {values = [v...], ctx = bin} as a MessagePack map
 * (tombstones left out; ctx as moor_record_ctx), with expires_ms = the
 * earliest exp of the values returned when one of them expires.  Expire r
 * first (moor_record_expire): an expired sibling still in r is returned.
 * 0 or MOOR_ENOMEM. */
int moor_record_get_result(const moor_record_t *r, moor_buf_t *out);

#endif
