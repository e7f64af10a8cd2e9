/*
 * batch.h -- the write batch's encoding, shared by the engine front (which
 * builds and applies batches) and commit log replay (which decodes them
 * from disk, so the decoder treats its input as untrusted).
 *
 * Layout (the payload of a MOOR_WAL_BATCH record):
 *   count u32 LE | count * ( type u8 | varint klen | key | varint vlen | value )
 * A delete's value is its 8-byte wall-clock timestamp (u64 LE, ms), filled
 * in by the engine when the batch is written.
 */
#ifndef MOOR_ENGINE_BATCH_H
#define MOOR_ENGINE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "util/buf.h"

#define MOOR_BATCH_HEADER 4

struct moor_batch {
    moor_buf_t rep;    /* the encoding above; rep.len >= MOOR_BATCH_HEADER */
    uint32_t count;    /* mirrors the header */
    size_t user_bytes; /* sum of key and value lengths (puts) or key lengths (deletes) */
};

typedef int (*moor_batch_fn)(void *ud, int type, const char *key, size_t klen, char *val,
                             size_t vlen);

/* ===== API ===== */

/* Calls fn for each entry in order (val points into rep and may be written
 * through, for the delete timestamp).  Stops at fn's nonzero return and
 * returns it.  MOOR_ECORRUPT if rep is malformed or its count disagrees
 * with its entries; fn may have been called for a prefix then. */
int moor_batch_iterate(char *rep, size_t len, moor_batch_fn fn, void *ud);

/* Checks that rep[0, len) is a well-formed batch of at least one entry
 * (the shape moor_batch_iterate accepts), without calling anything: 0 and
 * *count, or MOOR_ECORRUPT.  Pure; commit log recovery uses it to tell a
 * real record from bytes that merely look like one. */
int moor_batch_check(const char *rep, size_t len, uint32_t *count);

/* No batch entry is shorter than this (type, key length, value length):
 * a stretch of n log bytes can hold at most n / MOOR_BATCH_MIN_ENTRY
 * writes. */
#define MOOR_BATCH_MIN_ENTRY 3

#endif
