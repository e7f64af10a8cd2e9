/*
 * hints.h -- hinted handoff: the writes a fallback node holds for a replica
 * that was down, kept durably and replayed to it when it is back.
 *
 * A fallback (sloppy quorum, DESIGN.md) that takes a write meant for
 * `owner` stores it here with moor_hints_add: one hint per write, under its
 * own key prefix in the local store, never among the data keys.  Once the
 * failure detector says the owner is up (moor_hints_owner_up), the hints
 * are sent to it in key order (= the order they were added), a batch at a
 * time, as `_put` with one map param {space = str, key = bin, record =
 * bin}; the owner merges the record into its data and answers true, and
 * only then is the hint deleted.  Replay is rate-limited, pauses while the
 * owner is down, backs off on errors and timeouts, and resumes after a
 * crash from what the store holds (a hint whose deletion was not yet
 * durable is sent again: the owner's merge is idempotent).  Per owner the
 * hints are bounded by age (window_ms) and bytes (max_bytes): a hint over
 * either bound is dropped, oldest first, counted and reported through the
 * dropped callback (the node logs it and marks the range for repair).
 *
 * Two hints for one owner/space/key are kept both, in order (no
 * read-modify-write on add); replay sends both, the owner merges both.
 *
 * On-disk form (the store's keys and values):
 *   key   = MOOR_HINTS_PREFIX | u8 owner_len | owner | be64 seq
 *   value = MessagePack [ts_ms (uint), space (bin), key (bin), record (bin)]
 * seq grows by one per hint on this node (rebuilt from the largest stored
 * one at start), ts is the clock's now_ms when the hint was added.  The
 * prefix is 8 bytes 0xff (a ring token), a space length of 0 and the byte
 * 'h': a data key (record.h: be64 token | u8 space_len | space | key) with
 * a space length of 0 would belong to the empty space, which no config can
 * declare and no client or peer can write, so no data key starts with it.
 * A hint's size (the `bytes` of the stats and of max_bytes) is its key
 * length plus its value length.
 *
 * Only env.h; one thread; deterministic.
 */
#ifndef MOOR_CLUSTER_HINTS_H
#define MOOR_CLUSTER_HINTS_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "util/buf.h"

#define MOOR_HINTS_PREFIX "\xff\xff\xff\xff\xff\xff\xff\xff\x00h"
#define MOOR_HINTS_PREFIX_LEN 10

#define MOOR_HINTS_WINDOW_MS 10800000ull        /* 3 h */
#define MOOR_HINTS_MAX_BYTES ((uint64_t)512 << 20) /* per owner */
#define MOOR_HINTS_RATE ((uint64_t)8 << 20)       /* bytes/s replayed */
#define MOOR_HINTS_BATCH 64u                      /* hints in flight per owner */
#define MOOR_HINTS_TIMEOUT_MS 5000u               /* per `_put` */
#define MOOR_HINTS_BACKOFF_MIN_MS 500u            /* first retry after a failed batch */
#define MOOR_HINTS_BACKOFF_MAX_MS 30000u          /* doubling up to this */

typedef struct moor_hints moor_hints_t;

/* A hint was dropped (over a bound, refused by its owner as malformed, or
 * unreadable on disk: then slen and klen are 0).  Runs from inside
 * moor_hints_add, the age sweep or replay: it may read moor_hints_stats
 * but must not call the other moor_hints_* functions. */
typedef void (*moor_hints_dropped_fn)(void *ud, const char *owner, size_t olen, const char *space,
                                      size_t slen, const char *key, size_t klen);

typedef struct moor_hints_opts {
    const char *node_id; /* this node: a hint for it is refused */
    size_t idlen;
    moor_clock_if_t clock;
    moor_transport_if_t transport;
    moor_store_if_t store; /* get, put, del and scan all required */
    uint64_t window_ms;    /* age bound; 0 = MOOR_HINTS_WINDOW_MS */
    uint64_t max_bytes;    /* per owner; 0 = MOOR_HINTS_MAX_BYTES */
    uint64_t rate_bytes_s; /* replay rate over all owners; 0 = MOOR_HINTS_RATE */
    uint32_t batch;        /* hints sent together; 0 = MOOR_HINTS_BATCH */
    uint32_t timeout_ms;   /* per `_put`; 0 = MOOR_HINTS_TIMEOUT_MS */
    moor_hints_dropped_fn dropped; /* may be NULL */
    void *dropped_ud;
} moor_hints_opts_t;

typedef struct moor_hints_stats {
    uint64_t pending, bytes; /* now: hints held and their size */
    uint64_t stored, delivered, dropped; /* since moor_hints_new */
} moor_hints_stats_t;

/* A decoded hint value; the pointers borrow from the decoded bytes. */
typedef struct moor_hint {
    uint64_t ts;
    const char *space, *key, *record;
    uint32_t slen, klen, rlen;
} moor_hint_t;

/* ===== API ===== */

/* Rebuilds the per-owner counts from the store (a synchronous scan) and
 * starts the age sweep.  Every owner starts down.  0, MOOR_EINVAL (a
 * required interface missing, node id empty or over 64 bytes), MOOR_ENOMEM
 * or the store's error. */
int moor_hints_new(const moor_hints_opts_t *o, moor_hints_t **out);

/* Stops the timers and frees; replies still owed by the transport only
 * release memory when they come (env.h: each runs exactly once). */
void moor_hints_free(moor_hints_t *h);

/* Stores a hint of record rec (record.h) for (space, key) meant for owner:
 * 0 and done(arg, status) once durable (the store's done), or an error and
 * no done: MOOR_EINVAL (owner empty, over 64 bytes or this node; space
 * over 255 bytes), MOOR_ENOSPC (the hint alone is over max_bytes), the
 * store's error.  Older hints of the owner are dropped first when the new
 * one would put it over max_bytes.  When the owner is up, replay starts. */
int moor_hints_add(moor_hints_t *h, const char *owner, size_t olen, const char *space, size_t slen,
                   const char *key, size_t klen, const char *rec, size_t rlen,
                   moor_store_done_fn done, void *arg);

/* The failure detector's verdict: replay to owner starts (now) / pauses
 * (the batch in flight finishes; nothing more is sent). */
void moor_hints_owner_up(moor_hints_t *h, const char *owner, size_t olen);
void moor_hints_owner_down(moor_hints_t *h, const char *owner, size_t olen);

void moor_hints_stats(const moor_hints_t *h, moor_hints_stats_t *out);

/* Appends st as the MessagePack map {pending, bytes, stored, delivered,
 * dropped} (info.hints).  0 or MOOR_ENOMEM. */
int moor_hints_stats_pack(const moor_hints_stats_t *st, moor_buf_t *out);

/* Decoders of the on-disk form, safe on any bytes: 0 or MOOR_ECORRUPT. */
int moor_hints_decode(const char *val, size_t vlen, moor_hint_t *out);
int moor_hints_key_decode(const char *key, size_t klen, const char **owner, size_t *olen,
                          uint64_t *seq);

#endif
