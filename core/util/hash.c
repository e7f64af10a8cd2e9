/*
 * hash.c -- thin wrappers over xxHash, so the rest of Moor names what a hash
 * is for (a token, a table slot) rather than which function computes it.
 */
#include "hash.h"

#include <xxhash.h>

uint64_t moor_hash_token(const void *data, size_t n) { return XXH64(data, n, 0); }

uint64_t moor_hash64(const void *data, size_t n, uint64_t seed)
{
    return XXH3_64bits_withSeed(data, n, seed);
}
