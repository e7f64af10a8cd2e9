/*
 * cache.h -- the block cache: an LRU of uncompressed table blocks bounded in
 * bytes ("hot data in memory, the rest on disk").
 *
 * Entries are keyed by (file number, block offset) and reference counted:
 * a lookup or insert returns a pinned handle that the caller releases;
 * an entry evicted while pinned stays alive until its last release.  The
 * capacity bounds the bytes of unpinned + pinned entries; pinned entries
 * can push usage past capacity only while they are pinned.  Thread-safe
 * (one mutex; the critical sections are a few pointer moves).
 */
#ifndef MOOR_ENGINE_CACHE_H
#define MOOR_ENGINE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct moor_cache moor_cache_t;
typedef struct moor_cache_handle moor_cache_handle_t;

typedef struct moor_cache_stats {
    uint64_t hits, misses;
    size_t usage;     /* bytes charged by live entries */
    size_t capacity;
    size_t entries;
} moor_cache_stats_t;

/* ===== API ===== */

/* NULL on OOM.  capacity 0 makes every insert evict at once (no caching). */
moor_cache_t *moor_cache_new(size_t capacity);

/* REQUIRES: no handle is still pinned. */
void moor_cache_free(moor_cache_t *c);

/* Pinned handle or NULL (a miss).  Counts a hit or a miss. */
moor_cache_handle_t *moor_cache_lookup(moor_cache_t *c, uint64_t file, uint64_t off);

/* Inserts value with its charge in bytes; the cache takes ownership and
 * calls deleter(value) when the entry is gone and unpinned.  Replaces an
 * entry with the same key.  Returns a pinned handle, or NULL on OOM (then
 * deleter(value) has been called). */
moor_cache_handle_t *moor_cache_insert(moor_cache_t *c, uint64_t file, uint64_t off,
                                       void *value, size_t charge,
                                       void (*deleter)(void *value));

void *moor_cache_value(const moor_cache_handle_t *h);
void moor_cache_release(moor_cache_t *c, moor_cache_handle_t *h);

/* Drops every unpinned entry of a file (its table was deleted).  Pinned
 * entries of the file leave the cache too (later lookups miss) and are freed
 * at their last release. */
void moor_cache_erase_file(moor_cache_t *c, uint64_t file);

void moor_cache_stats(moor_cache_t *c, moor_cache_stats_t *out);

#endif
