/*
 * expire.h -- the node's compaction filter (engine.h moor_engine_filter_fn):
 * what a compaction does with records (cluster/record.h) whose values
 * expired (README "Expiry (TTL)").
 *
 * A compaction rewrites a record holding an expired sibling with that
 * sibling as the tombstone it is (the value's bytes go without anyone
 * reading the key).  Anti-entropy hashes a record with its expiring
 * siblings already expired (aae.c rec_hash), so its trees, which see no
 * such rewrite, stay exact.  On a node alone the filter also drops a
 * record whose siblings are all tombstones written more than the space's
 * tombstone_grace_s ago (0: never, as anti-entropy does): a node alone has
 * no replica to tell of the delete, so nothing else ever would.  In a
 * cluster that is anti-entropy's reaping, which asks every owner first.
 *
 * The filter runs on the engine's background thread; set_alone is called
 * from the loop thread (the flag is atomic); the filter reads its own copy of the config.
 */
#ifndef MOOR_SERVER_EXPIRE_H
#define MOOR_SERVER_EXPIRE_H

#include <stddef.h>
#include <stdint.h>

#include "lua/config.h"

typedef struct moor_expire moor_expire_t;

/* ===== API ===== */

/* A filter for a node with config cfg (copied: a reload may rewrite the node's), alone or
 * not.  0 or MOOR_ENOMEM. */
int moor_expire_new(const moor_config_t *cfg, int alone, moor_expire_t **out);

/* REQUIRES: the engine using it is closed. */
void moor_expire_free(moor_expire_t *x);

/* The node joined a cluster (0) -- or runs alone (1). */
void moor_expire_set_alone(moor_expire_t *x, int alone);

/* The filter (ud = the moor_expire_t).  Can't fail: a record that does not
 * decode is kept as it is. */
int moor_expire_filter(void *ud, const void *key, size_t klen, const void *val, size_t vlen,
                       const void **nval, size_t *nvlen);

/* TEST: the wall clock the filter judges by (NULL: the real one). */
void moor_expire_set_clock(moor_expire_t *x, uint64_t (*now_ms)(void));

#endif
