/*
 * vclock.h -- vector clocks: which versions of a key descend from which.
 *
 * A clock is a set of entries (node id, counter, timestamp), kept sorted by
 * node id so comparison and merge are linear.  Only the coordinator of a
 * write increments (its own entry), so a clock has at most one entry per
 * node that ever coordinated that key (bounded further by pruning).
 *
 * Encoding (the `ctx` clients carry, and the first field of a record), as
 * MessagePack: [[id (bin), counter (uint), ts_ms (uint)], ...] sorted by id.
 * Pure data and no I/O: callable from C and, through FFI, from Lua.
 */
#ifndef MOOR_CLUSTER_VCLOCK_H
#define MOOR_CLUSTER_VCLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define MOOR_VC_ID_MAX 64      /* bytes of a node id */
#define MOOR_VC_MAX_ENTRIES 64 /* a decoded clock with more is malformed */

/* How far ahead of a node's wall clock an entry may be.  Counters are
 * hybrid-logical-clock values (microseconds since the epoch; a lone node's
 * are small counts, far below), ts is wall-clock ms.  A client's ctx and
 * a record from a peer are checked against it (moor_vclock_check_bounds),
 * so no input can put a counter near 2^64 (unwritable: the next increment
 * would overflow) or drag a node's own clock to the end of its range. */
#define MOOR_VC_MAX_AHEAD_MS 86400000ull /* one day */

typedef struct moor_vc_entry {
    uint8_t idlen;
    char id[MOOR_VC_ID_MAX];
    uint64_t counter; /* >= 1 */
    uint64_t ts;      /* wall-clock ms of the last increment */
} moor_vc_entry_t;

typedef struct moor_vclock {
    uint32_t n; /* entries in use, sorted by id (memcmp, shorter first) */
    moor_vc_entry_t e[MOOR_VC_MAX_ENTRIES];
} moor_vclock_t;

enum moor_vc_order {
    MOOR_VC_EQUAL = 0,
    MOOR_VC_BEFORE = 1, /* a < b: b descends from a */
    MOOR_VC_AFTER = 2,  /* a > b: a descends from b */
    MOOR_VC_CONCURRENT = 3
};

/* ===== API ===== */

static inline void moor_vclock_init(moor_vclock_t *vc)
{
    vc->n = 0;
}

/* Bumps node's counter (adding the entry at 1) and sets its ts.  0, or
 * MOOR_EINVAL for an empty or over-long id, MOOR_ENOMEM if the clock is full. */
int moor_vclock_increment(moor_vclock_t *vc, const char *id, size_t idlen, uint64_t ts);

/* How a relates to b: a moor_vc_order.  Can't fail. */
int moor_vclock_compare(const moor_vclock_t *a, const moor_vclock_t *b);

/* dst = pointwise max of dst and src (ts follows the larger counter).
 * 0 or MOOR_ENOMEM (clock full; dst unaltered). */
int moor_vclock_merge(moor_vclock_t *dst, const moor_vclock_t *src);

/* The counter of id in vc, 0 when absent.  Can't fail. */
uint64_t moor_vclock_get(const moor_vclock_t *vc, const char *id, size_t idlen);

/* Raises id's entry to (counter, ts) as a merge with the one-entry clock
 * [[id, counter, ts]] would (the larger counter with its ts; equal
 * counters: the larger ts), adding it when absent.  0, MOOR_EINVAL (id
 * empty or over MOOR_VC_ID_MAX, counter 0) or MOOR_ENOMEM (clock full). */
int moor_vclock_raise(moor_vclock_t *vc, const char *id, size_t idlen, uint64_t counter,
                      uint64_t ts);

/* Drops the oldest entries (by ts; ties: the first by id) while there are
 * more than max_entries, and entries older than now - max_age_ms while more
 * than keep_min remain (max_age_ms 0: no age limit).  Returns how many were
 * dropped.  Can't fail. */
int moor_vclock_prune(moor_vclock_t *vc, uint32_t keep_min, uint32_t max_entries,
                      uint64_t max_age_ms, uint64_t now);

/* The largest counter an entry may hold at wall time now_ms:
 * (now_ms + MOOR_VC_MAX_AHEAD_MS) * 1000.  Can't fail. */
uint64_t moor_vclock_counter_bound(uint64_t now_ms);

/* 0 if every entry is within bounds at now_ms (counter at most
 * moor_vclock_counter_bound(now_ms), ts at most now_ms +
 * MOOR_VC_MAX_AHEAD_MS), else MOOR_EBADCTX with a diagnostic naming the
 * entry.  what ("ctx", "record") starts the message. */
int moor_vclock_check_bounds(const moor_vclock_t *vc, uint64_t now_ms, const char *what);

/* Appends the MessagePack encoding.  0 or MOOR_ENOMEM. */
int moor_vclock_encode(const moor_vclock_t *vc, moor_buf_t *out);

/* Decodes one encoded clock from *p (advancing it).  0, or MOOR_EBADCTX for
 * anything malformed (wrong types, unsorted or duplicate ids, zero counters,
 * ids empty or over MOOR_VC_ID_MAX, too many entries); on error *p is
 * unchanged and vc is empty.  Safe on any bytes. */
int moor_vclock_decode(const char **p, const char *end, moor_vclock_t *vc);

#endif
