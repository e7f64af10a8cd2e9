/*
 * table.h -- SSTables: writing them once, reading them many times.
 * Format in table_format.h.
 *
 * A reader keeps the footer, the index block and the filter resident; data
 * blocks go through the shared block cache.  Every read checks the block
 * checksum; a mismatch or malformed block is MOOR_ECORRUPT with a
 * diagnostic naming the file and offset.  Readers are immutable after open
 * and safe to use from any number of threads.
 */
#ifndef MOOR_ENGINE_TABLE_H
#define MOOR_ENGINE_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "iter.h"
#include "util/buf.h"

typedef struct moor_table_opts {
    size_t block_size;        /* target uncompressed data block size, default 4096 */
    int compression_level;    /* zstd level 1..19; 0 = no compression */
    unsigned bloom_bits;      /* bits per key; 0 = no filter */
} moor_table_opts_t;

typedef struct moor_table_builder moor_table_builder_t;
typedef struct moor_table moor_table_t;

/* ===== API ===== */

/* Writes to fd from offset 0 (fd stays the caller's; the builder does not
 * fsync or close it).  NULL on OOM. */
moor_table_builder_t *moor_table_builder_new(int fd, const moor_table_opts_t *opts);

/* REQUIRES: ikey greater (ikey order) than the previous one.
 * 0, MOOR_ENOMEM, or a write error (-errno). */
int moor_table_builder_add(moor_table_builder_t *b, const char *ikey, size_t iklen,
                           const char *val, size_t vlen);

/* Bytes written so far plus the pending block: the size-based cut point. */
uint64_t moor_table_builder_size(const moor_table_builder_t *b);
uint64_t moor_table_builder_entries(const moor_table_builder_t *b);

/* Writes the last data block, filter, index and footer.  On success
 * *file_size is the table's size.  The builder is freed either way. */
int moor_table_builder_finish(moor_table_builder_t *b, uint64_t *file_size);

/* Frees the builder without finishing (the caller deletes the file). */
void moor_table_builder_abandon(moor_table_builder_t *b);

/* Opens path (file_number keys the cache; cache may be NULL to read blocks
 * without caching).  0, -errno, MOOR_ECORRUPT or MOOR_EVERSION, with a
 * diagnostic naming the file. */
int moor_table_open(const char *path, uint64_t file_number, moor_cache_t *cache,
                    moor_table_t **out);
void moor_table_close(moor_table_t *t);

/* Looks up the first entry whose internal key is >= ikey; if its user key
 * equals ikey's user key, copies its value into val (reset first), sets
 * *type and returns 1.  Returns 0 when the table holds no such key (the
 * Bloom filter is consulted first), or a negative MOOR_E* code. */
int moor_table_get(moor_table_t *t, const char *ikey, size_t iklen, moor_buf_t *val,
                   int *type);

/* Iterator over the whole table in ikey order.  The table must outlive it.
 * NULL on OOM. */
moor_iiter_t *moor_table_iter(moor_table_t *t);

/* Bytes held in memory by the reader (index + filter + footer). */
size_t moor_table_mem(const moor_table_t *t);
uint64_t moor_table_entries(const moor_table_t *t);
uint64_t moor_table_file_size(const moor_table_t *t);

/* For tests: counts of Bloom filter checks that ruled a key out. */
uint64_t moor_table_bloom_skips(const moor_table_t *t);

#endif
