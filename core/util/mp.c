/*
 * mp.c -- bounded MessagePack readers and the buffer writer for msgpack-c's
 * packer.  Format reference: the MessagePack specification's type table.
 * Stateless; every function is thread-safe.
 */
#include "mp.h"

#include <string.h>

#include "util/err.h"

static inline uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

int moor_mp_peek(const char *p, const char *end)
{
    unsigned char c;

    if (p >= end)
        return MOOR_EAGAIN;
    c = (unsigned char)*p;
    if (c <= 0x7f || c == 0xcc || c == 0xcd || c == 0xce || c == 0xcf)
        return MOOR_MP_UINT;
    if (c >= 0xe0 || (c >= 0xd0 && c <= 0xd3))
        return MOOR_MP_INT;
    if ((c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf)
        return MOOR_MP_MAP;
    if ((c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd)
        return MOOR_MP_ARRAY;
    if ((c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb))
        return MOOR_MP_STR;
    switch (c) {
    case 0xc0: return MOOR_MP_NIL;
    case 0xc2:
    case 0xc3: return MOOR_MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6: return MOOR_MP_BIN;
    case 0xca:
    case 0xcb: return MOOR_MP_FLOAT;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: return MOOR_MP_EXT;
    default: return MOOR_EPROTO; /* 0xc1: never used */
    }
}

/* Header of the object at p: how many header bytes, how many payload bytes
 * follow, and how many child objects (arrays count n, maps 2n). */
static int header(const unsigned char *p, size_t avail, size_t *hlen, uint64_t *payload,
                  uint64_t *children)
{
    unsigned char c = p[0];
    int t = moor_mp_peek((const char *)p, (const char *)p + avail);
    static const unsigned char fixext[] = {1, 2, 4, 8, 16};

    *payload = 0;
    *children = 0;
    *hlen = 1;
    if (t < 0)
        return t;
#define NEED(n)                  \
    do {                         \
        if (avail < (size_t)(n)) \
            return MOOR_EAGAIN;  \
    } while (0)
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
        return 0;
    if (c >= 0x80 && c <= 0x8f)
        return *children = 2 * (uint64_t)(c & 0x0f), 0;
    if (c >= 0x90 && c <= 0x9f)
        return *children = c & 0x0f, 0;
    if (c >= 0xa0 && c <= 0xbf)
        return *payload = c & 0x1f, 0;
    switch (c) {
    case 0xcc:
    case 0xd0: *hlen = 2; break;
    case 0xcd:
    case 0xd1: *hlen = 3; break;
    case 0xce:
    case 0xd2:
    case 0xca: *hlen = 5; break;
    case 0xcf:
    case 0xd3:
    case 0xcb: *hlen = 9; break;
    case 0xc4:
    case 0xd9:
        NEED(2);
        *hlen = 2;
        *payload = p[1];
        break;
    case 0xc5:
    case 0xda:
        NEED(3);
        *hlen = 3;
        *payload = be(p + 1, 2);
        break;
    case 0xc6:
    case 0xdb:
        NEED(5);
        *hlen = 5;
        *payload = be(p + 1, 4);
        break;
    case 0xc7:
        NEED(2);
        *hlen = 3;
        *payload = p[1];
        break;
    case 0xc8:
        NEED(3);
        *hlen = 4;
        *payload = be(p + 1, 2);
        break;
    case 0xc9:
        NEED(5);
        *hlen = 6;
        *payload = be(p + 1, 4);
        break;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        *hlen = 2;
        *payload = fixext[c - 0xd4];
        break;
    case 0xdc:
        NEED(3);
        *hlen = 3;
        *children = be(p + 1, 2);
        break;
    case 0xdd:
        NEED(5);
        *hlen = 5;
        *children = be(p + 1, 4);
        break;
    case 0xde:
        NEED(3);
        *hlen = 3;
        *children = 2 * be(p + 1, 2);
        break;
    case 0xdf:
        NEED(5);
        *hlen = 5;
        *children = 2 * be(p + 1, 4);
        break;
    default: return MOOR_EPROTO;
    }
#undef NEED
    return 0;
}

static inline int is_container(unsigned char c)
{
    return (c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf);
}

int moor_mp_header(const char *p, const char *end, size_t *hlen, uint64_t *payload,
                   uint64_t *children, int *container)
{
    int rc;

    *container = 0;
    if (p >= end)
        return MOOR_EAGAIN;
    rc = header((const unsigned char *)p, (size_t)(end - p), hlen, payload, children);
    *container = rc == 0 && is_container((unsigned char)*p);
    return rc;
}

int moor_mp_skip(const char **pp, const char *end, int max_depth)
{
    /* Iterative: a stack of "children still to skip" per open container,
     * so hostile nesting costs no C stack. */
    uint64_t pending[MOOR_MP_MAX_DEPTH + 1];
    int depth = 0, rc;
    const unsigned char *p = (const unsigned char *)*pp, *e = (const unsigned char *)end;

    if (max_depth > MOOR_MP_MAX_DEPTH)
        max_depth = MOOR_MP_MAX_DEPTH;
    pending[0] = 1;
    while (depth >= 0) {
        size_t hlen;
        uint64_t payload, children;

        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        if (p >= e)
            return MOOR_EAGAIN;
        rc = header(p, (size_t)(e - p), &hlen, &payload, &children);
        if (rc)
            return rc;
        if ((uint64_t)(e - p) < hlen || (uint64_t)(e - p) - hlen < payload)
            return MOOR_EAGAIN;
        if (is_container(*p)) {
            /* An empty container is a level too, so that a consumer that
             * recurses on containers never goes deeper than max_depth. */
            if (depth + 1 > max_depth)
                return MOOR_EPROTO;
            /* Each child takes at least one byte: a count beyond the
             * remaining bytes can only be a lie or a truncation. */
            if (children > (uint64_t)(e - p) - hlen)
                return MOOR_EAGAIN;
            if (children)
                pending[++depth] = children;
        }
        p += hlen + payload;
    }
    *pp = (const char *)p;
    return 0;
}

int moor_mp_read_nil(const char **p, const char *end)
{
    int t = moor_mp_peek(*p, end);

    if (t < 0)
        return t;
    if (t != MOOR_MP_NIL)
        return MOOR_EINVAL;
    (*p)++;
    return 0;
}

int moor_mp_read_bool(const char **p, const char *end, int *v)
{
    int t = moor_mp_peek(*p, end);

    if (t < 0)
        return t;
    if (t != MOOR_MP_BOOL)
        return MOOR_EINVAL;
    *v = (unsigned char)**p == 0xc3;
    (*p)++;
    return 0;
}

/* Reads any integer as (negative flag, magnitude bits). */
static int read_integer(const char **pp, const char *end, int *neg, uint64_t *u, int64_t *s)
{
    const unsigned char *p = (const unsigned char *)*pp;
    size_t avail = (size_t)(end - *pp);
    unsigned char c;
    size_t n;

    if (*pp >= end)
        return MOOR_EAGAIN;
    c = p[0];
    *neg = 0;
    if (c <= 0x7f) {
        *u = c, *s = c, n = 1;
    } else if (c >= 0xe0) {
        *neg = 1, *s = (int8_t)c, n = 1;
    } else if (c >= 0xcc && c <= 0xcf) {
        n = (size_t)1 + ((size_t)1 << (c - 0xcc));
        if (avail < n)
            return MOOR_EAGAIN;
        *u = be(p + 1, (int)n - 1);
        *s = (int64_t)*u;
        if (*u > INT64_MAX)
            *s = INT64_MAX; /* caller of read_int rejects below */
    } else if (c >= 0xd0 && c <= 0xd3) {
        n = (size_t)1 + ((size_t)1 << (c - 0xd0));
        if (avail < n)
            return MOOR_EAGAIN;
        uint64_t raw = be(p + 1, (int)n - 1);
        int bits = 8 * ((int)n - 1);
        if (bits < 64 && (raw >> (bits - 1)) & 1)
            raw |= ~UINT64_C(0) << bits; /* sign-extend */
        *s = (int64_t)raw;
        *neg = *s < 0;
        *u = (uint64_t)*s;
    } else {
        return moor_mp_peek(*pp, end) < 0 ? MOOR_EPROTO : MOOR_EINVAL;
    }
    *pp += n;
    return 0;
}

int moor_mp_read_uint(const char **p, const char *end, uint64_t *v)
{
    const char *q = *p;
    int neg, rc;
    uint64_t u = 0;
    int64_t s = 0;

    if ((rc = read_integer(&q, end, &neg, &u, &s)))
        return rc;
    if (neg)
        return MOOR_EINVAL;
    *v = u;
    *p = q;
    return 0;
}

int moor_mp_read_int(const char **p, const char *end, int64_t *v)
{
    const char *q = *p;
    int neg, rc;
    uint64_t u = 0;
    int64_t s = 0;

    if ((rc = read_integer(&q, end, &neg, &u, &s)))
        return rc;
    if (!neg && u > INT64_MAX)
        return MOOR_EINVAL;
    *v = s;
    *p = q;
    return 0;
}

int moor_mp_read_double(const char **p, const char *end, double *v)
{
    const unsigned char *q = (const unsigned char *)*p;
    int t = moor_mp_peek(*p, end);

    if (t < 0)
        return t;
    if (t == MOOR_MP_UINT || t == MOOR_MP_INT) {
        const char *r = *p;
        int neg, rc;
        uint64_t u = 0;
        int64_t s = 0;
        if ((rc = read_integer(&r, end, &neg, &u, &s)))
            return rc;
        *v = neg ? (double)s : (double)u;
        *p = r;
        return 0;
    }
    if (t != MOOR_MP_FLOAT)
        return MOOR_EINVAL;
    if (q[0] == 0xca) {
        uint32_t bits;
        float f;
        if (end - *p < 5)
            return MOOR_EAGAIN;
        bits = (uint32_t)be(q + 1, 4);
        memcpy(&f, &bits, 4);
        *v = f;
        *p += 5;
    } else {
        uint64_t bits;
        if (end - *p < 9)
            return MOOR_EAGAIN;
        bits = be(q + 1, 8);
        memcpy(v, &bits, 8);
        *p += 9;
    }
    return 0;
}

static int read_bytes(const char **p, const char *end, int want, const char **s, uint32_t *n)
{
    int t = moor_mp_peek(*p, end);
    size_t hlen;
    uint64_t payload, children;
    int rc;

    if (t < 0)
        return t;
    if (!(want == 0 ? (t == MOOR_MP_STR || t == MOOR_MP_BIN) : t == want))
        return MOOR_EINVAL;
    rc = header((const unsigned char *)*p, (size_t)(end - *p), &hlen, &payload, &children);
    if (rc)
        return rc;
    if ((uint64_t)(end - *p) < hlen || (uint64_t)(end - *p) - hlen < payload)
        return MOOR_EAGAIN;
    *s = *p + hlen;
    *n = (uint32_t)payload;
    *p += hlen + payload;
    return 0;
}

int moor_mp_read_str(const char **p, const char *end, const char **s, uint32_t *n)
{
    return read_bytes(p, end, MOOR_MP_STR, s, n);
}

int moor_mp_read_bin(const char **p, const char *end, const char **s, uint32_t *n)
{
    return read_bytes(p, end, MOOR_MP_BIN, s, n);
}

int moor_mp_read_strbin(const char **p, const char *end, const char **s, uint32_t *n)
{
    return read_bytes(p, end, 0, s, n);
}

static int read_container(const char **p, const char *end, int want, uint32_t *n)
{
    int t = moor_mp_peek(*p, end);
    size_t hlen;
    uint64_t payload, children;
    int rc;

    if (t < 0)
        return t;
    if (t != want)
        return MOOR_EINVAL;
    rc = header((const unsigned char *)*p, (size_t)(end - *p), &hlen, &payload, &children);
    if (rc)
        return rc;
    if ((size_t)(end - *p) < hlen)
        return MOOR_EAGAIN;
    /* Each element takes at least one byte: a larger count is a truncation
     * (or a lie), and callers may size allocations by it. */
    if (children > (uint64_t)(end - *p) - hlen)
        return MOOR_EAGAIN;
    *n = (uint32_t)(want == MOOR_MP_MAP ? children / 2 : children);
    *p += hlen;
    return 0;
}

int moor_mp_read_array(const char **p, const char *end, uint32_t *n)
{
    return read_container(p, end, MOOR_MP_ARRAY, n);
}

int moor_mp_read_map(const char **p, const char *end, uint32_t *n)
{
    return read_container(p, end, MOOR_MP_MAP, n);
}

int moor_mp_buf_write(void *b, const char *data, size_t len)
{
    return moor_buf_append(b, data, len) ? -1 : 0;
}

const char *moor_mp_map_find(const char *p, const char *end, const char *key)
{
    size_t klen = strlen(key);
    uint32_t n, kl;
    const char *k;

    if (!p || moor_mp_read_map(&p, end, &n))
        return NULL;
    while (n--) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return NULL;
        if (kl == klen && memcmp(k, key, kl) == 0)
            return p;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return NULL;
    }
    return NULL;
}
