/*
 * arena.h -- a bump allocator for many small objects freed all at once
 * (memtable entries and skiplist nodes).
 *
 * Memory comes in blocks of MOOR_ARENA_BLOCK bytes.  An allocation that
 * does not fit in the current block's tail and is larger than a quarter
 * block gets a block of its own, so that tail is not wasted on it.  Not thread-safe: one writer allocates; readers may
 * read what was published to them by other means.
 */
#ifndef MOOR_UTIL_ARENA_H
#define MOOR_UTIL_ARENA_H

#include <stddef.h>

#define MOOR_ARENA_BLOCK 65536

typedef struct moor_arena_block moor_arena_block_t;

typedef struct moor_arena {
    char *ptr;                  /* next free byte in the current block */
    size_t left;                /* bytes left in the current block */
    moor_arena_block_t *blocks; /* every block, newest first; freed together */
    size_t usage;               /* bytes of blocks held (what counts toward limits) */
} moor_arena_t;

/* ===== API ===== */

void moor_arena_init(moor_arena_t *a);

/* Frees every block; the arena is empty and reusable afterwards. */
void moor_arena_destroy(moor_arena_t *a);

/* n bytes aligned to 8 (pointer alignment).  Returns NULL when out of memory,
 * leaving the arena unaltered.  n must be > 0. */
void *moor_arena_alloc(moor_arena_t *a, size_t n);

static inline size_t moor_arena_usage(const moor_arena_t *a) { return a->usage; }

/* Bytes handed out or lost to alignment and block tails: usage less the
 * unused tail of the current block.  What a size limit should compare, so a
 * small limit is not reached by the first block alone. */
static inline size_t moor_arena_used(const moor_arena_t *a) { return a->usage - a->left; }

#endif
