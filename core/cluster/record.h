/*
 * record.h -- what the engine stores for a key: its versions.
 *
 * A record is one MessagePack value (record_format):
 *   [vclock, [[value, ts_ms, tombstone(bool)], ...]]
 * vclock as in vclock.h; each sibling's value is the exact MessagePack the
 * client sent (nil for a tombstone); ts is the wall-clock ms when it was
 * written.  Siblings are versions that no later write has superseded:
 * writing with a context (ctx, the encoded clock a get returned) that
 * descends from the record's clock replaces all siblings; writing with an
 * older or concurrent context (or none, on an existing key) adds one.
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
#define MOOR_RECORD_MAX_SIBLINGS 64 /* more is malformed; writes past it drop the oldest */
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
} moor_sibling_t;

typedef struct moor_record {
    moor_vclock_t vc;
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

/* A client write of value (MessagePack bytes; ignored if tombstone) with
 * context ctx (encoded clock; ctxlen 0 for none) coordinated by node at
 * time now, applied to cur (NULL if the key has no record).  Builds the new
 * record into out and its clock into new_ctx (both appended; both unaltered
 * on error).  cur's values are copied, so cur may be freed afterwards.
 * 0, MOOR_EBADCTX (ctx malformed, or an entry beyond the bounds of
 * moor_vclock_check_bounds at now), MOOR_EINVAL (value not exactly one
 * MessagePack object, node id empty or over MOOR_VC_ID_MAX), MOOR_ENOMEM. */
int moor_record_write(const moor_record_t *cur, const char *ctx, size_t ctxlen, const char *value,
                      size_t vlen, int tombstone, const char *node, size_t nodelen, uint64_t now,
                      moor_buf_t *out, moor_buf_t *new_ctx);

/* Merges two versions of one key (replica merge, read merge): if one
 * clock descends from the other, the descendant; if they are concurrent,
 * the union of their siblings (a sibling present in both once) under the
 * merged clock (pruned as moor_record_write does).  Appends the result to
 * out.  0 or MOOR_ENOMEM. */
int moor_record_merge(const moor_record_t *a, const moor_record_t *b, moor_buf_t *out);

/* 1 if every sibling is a tombstone (a get answers nil), else 0. */
int moor_record_is_deleted(const moor_record_t *r);

/* Appends the get result {values = [v...], ctx = bin} as a MessagePack map
 * (tombstones left out).  0 or MOOR_ENOMEM. */
int moor_record_get_result(const moor_record_t *r, moor_buf_t *out);

#endif
