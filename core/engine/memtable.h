/*
 * memtable.h -- the in-memory write buffer: an arena-backed skiplist of
 * internal keys (ikey.h order).
 *
 * Concurrency: ONE writer at a time (the engine serialises moor_memtable_add
 * under its write lock) and any number of concurrent readers without locks:
 * nodes are fully built before being published with release stores, and
 * readers load links with acquire loads (the LevelDB skiplist contract).
 * Entries are never removed; memory is freed when the last reference goes.
 *
 * Reference counted: the engine holds one reference while the table is
 * active or frozen-and-flushing, and every reader/iterator holds one.
 */
#ifndef MOOR_ENGINE_MEMTABLE_H
#define MOOR_ENGINE_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "iter.h"

typedef struct moor_memtable moor_memtable_t;

/* ===== API ===== */

/* New empty memtable with one reference.  NULL on OOM. */
moor_memtable_t *moor_memtable_new(void);

/* New empty memtable (as moor_memtable_new, which sizes for 128 KiB) with
 * a point-lookup table sized for a memtable of about budget bytes: one
 * 8-byte slot per 128 bytes (64 to 4M slots), counted in
 * moor_memtable_bytes. */
moor_memtable_t *moor_memtable_new_sized(size_t budget);

void moor_memtable_ref(moor_memtable_t *m);   /* thread-safe */
void moor_memtable_unref(moor_memtable_t *m); /* frees at zero; thread-safe */

/* Adds (key, seq, type) -> value; copies key and value into the arena.
 * REQUIRES: the caller excludes other writers; (key, seq) is new.
 * Returns 0 or MOOR_ENOMEM (memtable unaltered). */
/* on: a version of a key added while nobody else holds m (its reference
 * count is 1) and the key's newest node is known replaces that node's
 * entry instead of going in front of it as a new node.  Only for an owner
 * that adds under the same lock readers take their reference under (the
 * engine's mu), and that never reads an older version without a
 * reference; snapshots and iterators hold references, so they keep every
 * version they may see.  Off by default. */
void moor_memtable_replace_in_place(moor_memtable_t *m, int on);

int moor_memtable_add(moor_memtable_t *m, uint64_t seq, int type, const char *key, size_t klen,
                      const char *val, size_t vlen);

/* Newest version of key with seqno <= snap_seq.  Returns 1 when found, with
 * *type (MOOR_VT_PUT or MOOR_VT_DEL) and *val, *vlen borrowed for as long as
 * the caller holds a reference; 0 when the memtable has no such version.
 * Can't fail. */
int moor_memtable_get(moor_memtable_t *m, const char *key, size_t klen, uint64_t snap_seq,
                      int *type, const char **val, size_t *vlen);

/* Arena bytes used (entries + nodes, not the unused tail of the current
 * arena block): what the engine compares with its memtable size limit.
 * Memory held is at most one arena block more.  Thread-safe (relaxed). */
size_t moor_memtable_bytes(const moor_memtable_t *m);
uint64_t moor_memtable_count(const moor_memtable_t *m);

/* Iterator over every entry (all versions) in internal key order; holds a
 * reference on m until destroyed.  Sees entries added after its creation
 * when it reaches them (callers filter by seqno).  NULL on OOM. */
moor_iiter_t *moor_memtable_iter(moor_memtable_t *m);

#endif
