/*
 * membership.h -- the member table every node holds, and how two tables
 * merge.
 *
 * An entry is a ring member (ring.h: id, address, zone, vnodes, status)
 * plus an incarnation number that only the member itself raises (when it
 * restarts, or to refute a suspicion).  Merging keeps, per id, the entry
 * with the higher incarnation; at equal incarnations the "further along"
 * status wins (joining < up < leaving < suspect < down < left); `left`
 * wins at any incarnation (an id that left never comes back), so any
 * two nodes that have seen the same entries hold the same table whatever
 * order they saw them in -- the property gossip needs (merge is
 * commutative, associative and idempotent), and the ring is a pure
 * function of the table.  A node that learns it is suspected or down at
 * its own incarnation refutes by bumping the incarnation (moor_members_refute).
 *
 * Wire form (the `members` field of `_join` and `_members`, gossip.h; a
 * gossip update is the same entry with the accuser appended):
 *   [[id (bin), addr (str), zone (str), vnodes (uint), status (uint),
 *     incarnation (uint), inactive (uint, omitted when 0)], ...]
 * (decoders skip fields after these, for later releases).
 * Pure data, no I/O; one thread.
 */
#ifndef MOOR_CLUSTER_MEMBERSHIP_H
#define MOOR_CLUSTER_MEMBERSHIP_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "util/buf.h"

typedef struct moor_member_entry {
    moor_member_t m;
    uint64_t incarnation;
} moor_member_entry_t;

typedef struct moor_members {
    uint32_t n, cap;
    moor_member_entry_t *e; /* sorted by id (ring order of ids) */
    uint64_t version;       /* bumped on every change: rebuild the ring */
} moor_members_t;

/* ===== API ===== */

void moor_members_init(moor_members_t *t);
void moor_members_free(moor_members_t *t);

/* Applies one entry: inserts it, or replaces the one with its id when the
 * new one wins (see above).  Returns 1 if the table changed, 0 if not,
 * MOOR_EINVAL for a malformed entry (empty/long id, vnodes out of range,
 * unknown status), MOOR_ENOMEM. */
int moor_members_apply(moor_members_t *t, const moor_member_entry_t *e);

/* Applies every entry of src; returns how many changed t, or an error. */
int moor_members_merge(moor_members_t *t, const moor_members_t *src);

/* The entry for id, or NULL. */
const moor_member_entry_t *moor_members_find(const moor_members_t *t, const char *id, size_t idlen);

/* The member `self` was said to be suspect/down/left at its current
 * incarnation by someone else: raise its incarnation past `seen` and mark
 * it up.  Returns 1 if changed. */
int moor_members_refute(moor_members_t *t, const char *id, size_t idlen, uint64_t seen);

int moor_members_encode(const moor_members_t *t, moor_buf_t *out);
/* Decodes a wire table into t (initialised by the callee).  0 or
 * MOOR_EPROTO/MOOR_EINVAL with a diag; t is empty on error. */
int moor_members_decode(const char **p, const char *end, moor_members_t *t);

/* Builds the ring of the table (ring.h).  MOOR_EINVAL if nobody is on it. */
int moor_members_ring(const moor_members_t *t, moor_ring_t **out);

#endif
