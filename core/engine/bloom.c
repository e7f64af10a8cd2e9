/*
 * bloom.c -- Bloom filters over user-key hashes for SSTables.
 *
 * Layout (bloom.h): bits[m/8] | k u8, m = 8 * (filter length - 1).  Each key
 * sets k bits chosen by double hashing one 64-bit hash: bit_i = (h1 + i*h2)
 * mod m with h1/h2 the low/high halves.  Probes step by h2 mod m with a
 * conditional subtraction, which is (h1 + i*h2) mod m exactly but costs one
 * division per key instead of one per probe.
 *
 * Filters read back from disk are untrusted: may_contain looks only inside
 * [filter, filter + len) and answers "may contain" whenever it cannot tell.
 * Stateless and thread-safe.
 */
#include "bloom.h"

#include <string.h>

#include "util/err.h"
#include "util/hash.h"

#define BLOOM_SEED UINT64_C(0x6d6f6f72626c6f6d) /* "moorblom": part of the format */
#define BLOOM_MIN_BITS 64
#define BLOOM_MAX_K 30

uint64_t moor_bloom_hash(const void *key, size_t len)
{
    return moor_hash64(key, len, BLOOM_SEED);
}

static unsigned bloom_k(unsigned bits_per_key)
{
    /* round(bits * ln 2) without libm: ln 2 ~= 0.69314718. */
    unsigned long long k =
        ((unsigned long long)bits_per_key * 69314718ull + 50000000ull) / 100000000ull;

    if (k < 1)
        return 1;
    return k > BLOOM_MAX_K ? BLOOM_MAX_K : (unsigned)k;
}

/* The probe walk shared by build and query, inline so both loops stay
 * tight. */
static inline void probe_start(uint64_t hash, uint64_t m, uint64_t *pos, uint64_t *delta)
{
    *pos = (hash & 0xffffffffu) % m;
    *delta = (hash >> 32) % m;
}

static inline uint64_t probe_next(uint64_t pos, uint64_t delta, uint64_t m)
{
    pos += delta; /* both < m < 2^63, so no overflow */
    return pos >= m ? pos - m : pos;
}

int moor_bloom_build(const uint64_t *hashes, size_t n, unsigned bits_per_key, moor_buf_t *out)
{
    unsigned k = bloom_k(bits_per_key);
    uint64_t m = (uint64_t)n * bits_per_key;
    size_t bytes;
    unsigned char *bits;

    if (n && m / n != bits_per_key)
        return moor_diag(MOOR_ENOMEM, "bloom: %zu keys at %u bits/key overflow", n, bits_per_key);
    if (m < BLOOM_MIN_BITS)
        m = BLOOM_MIN_BITS;
    bytes = (size_t)((m + 7) / 8);
    m = (uint64_t)bytes * 8;
    if (moor_buf_reserve(out, bytes + 1))
        return moor_diag(MOOR_ENOMEM, "bloom: no memory for a %zu-byte filter", bytes);
    bits = (unsigned char *)out->data + out->len;
    memset(bits, 0, bytes);
    for (size_t i = 0; i < n; i++) {
        uint64_t pos, delta;

        probe_start(hashes[i], m, &pos, &delta);
        for (unsigned j = 0; j < k; j++) {
            bits[pos >> 3] |= (unsigned char)(1u << (pos & 7));
            pos = probe_next(pos, delta, m);
        }
    }
    bits[bytes] = (unsigned char)k;
    out->len += bytes + 1;
    return 0;
}

bool moor_bloom_may_contain(const char *filter, size_t len, uint64_t hash)
{
    const unsigned char *bits = (const unsigned char *)filter;
    unsigned k;
    uint64_t m, pos, delta;

    if (!filter || len < 2)
        return true;
    k = bits[len - 1];
    if (k > BLOOM_MAX_K)
        return true; /* an encoding we do not know: never claim absence */
    m = (uint64_t)(len - 1) * 8;
    probe_start(hash, m, &pos, &delta);
    for (unsigned j = 0; j < k; j++) {
        if (!(bits[pos >> 3] & (1u << (pos & 7))))
            return false;
        pos = probe_next(pos, delta, m);
    }
    return true;
}
