/*
 * bloom.h -- the Bloom filter of an SSTable, over user keys.
 *
 * Filter layout (bloom_format): bits[m/8] | k u8.  Probes use double hashing
 * of one 64-bit hash (h1 = low 32 bits, h2 = high 32 bits): bit_i =
 * (h1 + i*h2) mod m for i in [0, k).  k = round(bits_per_key * ln 2),
 * clamped to [1, 30]; m >= 64.  A filter with k > 30 (a future encoding) is
 * treated as "may contain", never as "absent".
 */
#ifndef MOOR_ENGINE_BLOOM_H
#define MOOR_ENGINE_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* ===== API ===== */

/* Hash of a user key for the filter (moor_hash64 with a fixed seed). */
uint64_t moor_bloom_hash(const void *key, size_t len);

/* Appends a filter for n key hashes to out.  0 or MOOR_ENOMEM. */
int moor_bloom_build(const uint64_t *hashes, size_t n, unsigned bits_per_key, moor_buf_t *out);

/* false only if the key is certainly absent.  Safe on any bytes: a filter
 * shorter than 2 bytes says true. */
bool moor_bloom_may_contain(const char *filter, size_t len, uint64_t hash);

#endif
