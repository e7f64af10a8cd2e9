/*
 * ikey.h -- internal keys: how the engine versions a user key.
 *
 * An internal key is the user key followed by an 8-byte little-endian
 * trailer (seqno << 8 | type).  Internal keys sort by user key ascending
 * (memcmp, shorter first on a common prefix), then by trailer DESCENDING, so
 * the newest version of a key comes first and a seek to (key, snapshot seq)
 * lands on the newest version visible at that snapshot.
 *
 * Layout:  user_key[n] | trailer u64 LE = (seqno << 8) | type
 */
#ifndef MOOR_ENGINE_IKEY_H
#define MOOR_ENGINE_IKEY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/buf.h"

enum moor_vtype {
    MOOR_VT_DEL = 0, /* tombstone; its value is the wall-clock ms of the delete, u64 LE */
    MOOR_VT_PUT = 1
};

#define MOOR_IKEY_TRAILER 8
#define MOOR_SEQ_MAX ((UINT64_C(1) << 56) - 1)
/* Seeking to (key, MOOR_SEQ_MAX, MOOR_VT_SEEK) finds the newest version. */
#define MOOR_VT_SEEK MOOR_VT_PUT

static inline uint64_t moor_ikey_trailer(uint64_t seq, int type)
{
    return (seq << 8) | (uint64_t)type;
}

/* REQUIRES: len >= MOOR_IKEY_TRAILER for the accessors below. */
static inline size_t moor_ikey_ulen(size_t iklen) { return iklen - MOOR_IKEY_TRAILER; }
static inline uint64_t moor_ikey_seq(const char *ik, size_t len)
{
    return moor_dec_fixed64(ik + len - MOOR_IKEY_TRAILER) >> 8;
}
static inline int moor_ikey_type(const char *ik, size_t len)
{
    return (int)(moor_dec_fixed64(ik + len - MOOR_IKEY_TRAILER) & 0xff);
}

/* memcmp order with shorter-first tie break; returns <0, 0 or >0.  Inline
 * and eight bytes at a time (a big-endian load orders words as memcmp
 * orders bytes): keys are short, and a libc memcmp call per comparison was
 * 3-5% of scans and seeks, which compare keys at every step. */
static inline int moor_ukey_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen, i = 0;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;

        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) {
            x = __builtin_bswap64(x);
            y = __builtin_bswap64(y);
            return x < y ? -1 : 1;
        }
    }
#endif
    for (; i < n; i++)
        if (a[i] != b[i])
            return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
    return alen < blen ? -1 : alen > blen;
}

/* Internal key order.  REQUIRES: both lengths >= MOOR_IKEY_TRAILER. */
static inline int moor_ikey_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = moor_ukey_cmp(a, alen - 8, b, blen - 8);
    uint64_t ta, tb;

    if (r)
        return r;
    ta = moor_dec_fixed64(a + alen - 8);
    tb = moor_dec_fixed64(b + blen - 8);
    return ta > tb ? -1 : ta < tb;
}

/* Appends user key + trailer to b.  0 or MOOR_ENOMEM. */
static inline int moor_ikey_build(moor_buf_t *b, const char *ukey, size_t ulen, uint64_t seq,
                                  int type)
{
    int rc = moor_buf_append(b, ukey, ulen);
    return rc ? rc : moor_buf_put_fixed64(b, moor_ikey_trailer(seq, type));
}

#endif
