/*
 * block.h -- building and reading the sorted, prefix-compressed blocks of
 * table_format.h (data blocks and the index block).
 *
 * The reader validates the restart array on open and bounds-checks every
 * entry while iterating: a corrupt block yields an iterator with status
 * MOOR_ECORRUPT, never an out-of-bounds read.
 */
#ifndef MOOR_ENGINE_BLOCK_H
#define MOOR_ENGINE_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "iter.h"
#include "util/buf.h"

typedef struct moor_block_builder {
    moor_buf_t buf;        /* entries so far */
    moor_buf_t restarts;   /* u32 offsets */
    moor_buf_t last_key;   /* previous key, for prefix sharing */
    int counter;           /* entries since the last restart */
    int restart_interval;
    uint64_t entries;
    int finished;
} moor_block_builder_t;

/* Comparator of the keys in a block: ikey order for data blocks and index. */
typedef int (*moor_key_cmp_fn)(const char *a, size_t alen, const char *b, size_t blen);

/* ===== API ===== */

void moor_block_builder_init(moor_block_builder_t *b, int restart_interval);
void moor_block_builder_free(moor_block_builder_t *b);
void moor_block_builder_reset(moor_block_builder_t *b);

/* REQUIRES: key greater than every key added since reset; not finished.
 * 0 or MOOR_ENOMEM. */
int moor_block_builder_add(moor_block_builder_t *b, const char *key, size_t klen,
                           const char *val, size_t vlen);

/* Bytes the finished block would take now. */
size_t moor_block_builder_size(const moor_block_builder_t *b);

static inline int moor_block_builder_empty(const moor_block_builder_t *b)
{
    return b->entries == 0;
}

/* Appends the restart array; *data, *len borrowed until reset/free.
 * 0 or MOOR_ENOMEM. */
int moor_block_builder_finish(moor_block_builder_t *b, const char **data, size_t *len);

/* A block iterator that lives inside another structure (or on the stack),
 * so the table's hot paths allocate nothing per block.  Its fields are
 * private to block.c; its address must not change while it is in use (the
 * current key may point into it). */
#define MOOR_BLOCK_KEY_INLINE 64
typedef struct moor_block_iter {
    moor_iiter_t base;
    const char *data;     /* block start; entries are data[0, end) */
    size_t end;           /* end of the entry region = start of restarts */
    const char *restarts; /* nrestarts u32 LE, validated on creation */
    uint32_t nrestarts;   /* >= 1 */
    int heap;             /* allocated by moor_block_iter*: destroy frees it */
    moor_key_cmp_fn cmp;
    void (*release)(void *arg);
    void *arg;
    size_t next_off; /* where the entry after the current one starts */
    char *kbuf;      /* current key, rebuilt from the prefix deltas */
    size_t klen, kcap;
    char kinline[MOOR_BLOCK_KEY_INLINE]; /* kbuf until a key outgrows it */
} moor_block_iter_t;

/* Sets up *bi in place as moor_block_iter (check != 0) or
 * moor_block_iter_trusted (check == 0) would, without allocating.  Release
 * it with moor_block_iter_fini (or moor_iiter_destroy, which calls fini and
 * frees nothing). */
void moor_block_iter_init(moor_block_iter_t *bi, const char *data, size_t len, moor_key_cmp_fn cmp,
                          void (*release)(void *arg), void *arg, int check);
void moor_block_iter_fini(moor_block_iter_t *bi);

/* Iterator over a block's bytes, which must stay valid until destroy.
 * If release is not NULL, destroy calls release(arg) (the table uses this
 * to unpin a cache handle).  On a malformed block the iterator is invalid
 * with status MOOR_ECORRUPT.  NULL on OOM (release not called). */
moor_iiter_t *moor_block_iter(const char *data, size_t len, moor_key_cmp_fn cmp,
                              void (*release)(void *arg), void *arg);

/* moor_block_iter without the O(restarts) check of the restart array.
 * REQUIRES: these exact bytes passed moor_block_iter's check before (the
 * table checks a block once, when it reads it from disk).  Entries are
 * still bounds-checked while iterating. */
moor_iiter_t *moor_block_iter_trusted(const char *data, size_t len, moor_key_cmp_fn cmp,
                                      void (*release)(void *arg), void *arg);

#endif
