/*
 * hash.h -- the hashes Moor uses, all from xxHash (Debian libxxhash-dev).
 *
 * moor_hash_token() is the ring token of a key: xxh64 with seed 0, so every
 * node, client and tool that computes a token agrees.  Changing it changes
 * the on-disk order of a cluster's data: it is part of the format.
 */
#ifndef MOOR_UTIL_HASH_H
#define MOOR_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* ===== API ===== */

/* 64-bit ring token of bytes.  Can't fail. */
uint64_t moor_hash_token(const void *data, size_t n);

/* General-purpose 64-bit hash with a seed (xxh3), for in-memory tables and
 * Bloom filters.  Can't fail. */
uint64_t moor_hash64(const void *data, size_t n, uint64_t seed);

#endif
