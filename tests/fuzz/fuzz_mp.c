/*
 * fuzz_mp.c -- libFuzzer target for the MessagePack readers that see every
 * untrusted byte.  The input is split into objects with moor_mp_skip; each
 * object skip accepts is walked again with moor_mp_peek and the typed
 * readers only, and both must agree on where it ends.  A failure must be
 * MOOR_EAGAIN or MOOR_EPROTO and leave the cursor where it was; a smaller
 * depth limit may only turn success into MOOR_EPROTO; every proper prefix
 * of a small accepted object is MOOR_EAGAIN.  Borrowed str/bin spans are
 * read byte by byte so ASan sees any span outside the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/mp.h"
#include "util/err.h"

static unsigned sink; /* keeps the span reads from being optimised away */

static void touch(const char *s, uint32_t n, const char *lo, const char *hi)
{
    if (n && (s < lo || s > hi || (size_t)(hi - s) < n))
        abort();
    for (uint32_t i = 0; i < n; i++)
        sink += (unsigned char)s[i];
}

/* Walks one object skip accepted (so depth <= MOOR_MP_MAX_DEPTH). */
static int walk(const char **p, const char *lo, const char *end)
{
    int t = moor_mp_peek(*p, end), rc = 0, v;
    uint32_t n;
    uint64_t u;
    int64_t s;
    double d;
    const char *str;

    switch (t) {
    case MOOR_MP_NIL: return moor_mp_read_nil(p, end);
    case MOOR_MP_BOOL: return moor_mp_read_bool(p, end, &v);
    case MOOR_MP_UINT: return moor_mp_read_uint(p, end, &u);
    case MOOR_MP_INT: return moor_mp_read_int(p, end, &s);
    case MOOR_MP_FLOAT: return moor_mp_read_double(p, end, &d);
    case MOOR_MP_STR:
    case MOOR_MP_BIN:
        rc = t == MOOR_MP_STR ? moor_mp_read_str(p, end, &str, &n)
                              : moor_mp_read_bin(p, end, &str, &n);
        if (rc == 0)
            touch(str, n, lo, end);
        return rc;
    case MOOR_MP_EXT: return moor_mp_skip(p, end, 0);
    case MOOR_MP_ARRAY:
    case MOOR_MP_MAP: {
        rc = t == MOOR_MP_ARRAY ? moor_mp_read_array(p, end, &n) : moor_mp_read_map(p, end, &n);
        uint64_t items = t == MOOR_MP_MAP ? 2 * (uint64_t)n : n;
        for (uint64_t i = 0; i < items && rc == 0; i++)
            rc = walk(p, lo, end);
        return rc;
    }
    default: return t;
    }
}

static void check_prefixes(const char *start, size_t len)
{
    for (size_t cut = 0; cut < len; cut++) {
        const char *q = start;
        if (moor_mp_skip(&q, start + cut, MOOR_MP_MAX_DEPTH) != MOOR_EAGAIN || q != start)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *lo = (const char *)data, *end = lo + size, *p = lo;
    int small_depth = size ? data[0] % 8 : 0;

    for (const char *q = lo; q < end; q++)
        if (moor_mp_peek(q, end) == 0)
            abort();
    while (p < end) {
        const char *start = p, *w = p, *d = p;
        int rc = moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH);
        if (rc) {
            if ((rc != MOOR_EAGAIN && rc != MOOR_EPROTO) || p != start)
                abort();
            break;
        }
        if (p <= start || p > end)
            abort();
        if (walk(&w, lo, end) != 0 || w != p)
            abort();
        rc = moor_mp_skip(&d, end, small_depth);
        if (!(rc == 0 && d == p) && !(rc == MOOR_EPROTO && d == start))
            abort();
        if (p - start <= 256)
            check_prefixes(start, (size_t)(p - start));
    }
    return 0;
}
