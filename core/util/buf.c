/* buf.c -- growable buffer and integer codecs (little-endian host assumed). */
#include "buf.h"

#include <stdlib.h>

#include "err.h"

void moor_buf_free(moor_buf_t *b)
{
    free(b->data);
    moor_buf_init(b);
}

int moor_buf_reserve(moor_buf_t *b, size_t n)
{
    size_t need = b->len + n, cap;
    char *p;

    if (need < b->len)
        return MOOR_ENOMEM;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap * 2 > cap ? cap * 2 : need;
    p = realloc(b->data, cap);
    if (!p)
        return MOOR_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int moor_buf_append(moor_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (moor_buf_reserve(b, n))
        return MOOR_ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int moor_buf_put_u8(moor_buf_t *b, uint8_t v) { return moor_buf_append(b, &v, 1); }

int moor_buf_put_fixed32(moor_buf_t *b, uint32_t v)
{
    char t[4];
    moor_enc_fixed32(t, v);
    return moor_buf_append(b, t, 4);
}

int moor_buf_put_fixed64(moor_buf_t *b, uint64_t v)
{
    char t[8];
    moor_enc_fixed64(t, v);
    return moor_buf_append(b, t, 8);
}

int moor_buf_put_be64(moor_buf_t *b, uint64_t v)
{
    char t[8];
    moor_enc_be64(t, v);
    return moor_buf_append(b, t, 8);
}

int moor_buf_put_varint(moor_buf_t *b, uint64_t v)
{
    char t[10];
    return moor_buf_append(b, t, moor_enc_varint(t, v));
}

int moor_buf_put_lenbytes(moor_buf_t *b, const void *p, size_t n)
{
    if (moor_buf_reserve(b, n + 10))
        return MOOR_ENOMEM;
    b->len += moor_enc_varint(b->data + b->len, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

char *moor_buf_steal(moor_buf_t *b, size_t *len)
{
    char *d = b->data;

    if (len)
        *len = b->len;
    moor_buf_init(b);
    return d;
}

void moor_enc_be64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (char)(v & 0xff);
}

uint64_t moor_dec_be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

size_t moor_enc_varint(char *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (char)v;
    return n;
}

size_t moor_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

int moor_get_varint_slow(const char **p, const char *end, uint64_t *v)
{
    const unsigned char *s = (const unsigned char *)*p;
    uint64_t r = 0;

    for (int shift = 0; shift <= 63; shift += 7) {
        if ((const char *)s >= end)
            return MOOR_ECORRUPT;
        unsigned char c = *s++;
        if (shift == 63 && c > 1)
            return MOOR_ECORRUPT;
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *p = (const char *)s;
            *v = r;
            return 0;
        }
    }
    return MOOR_ECORRUPT;
}

int moor_get_fixed32(const char **p, const char *end, uint32_t *v)
{
    if (end - *p < 4)
        return MOOR_ECORRUPT;
    *v = moor_dec_fixed32(*p);
    *p += 4;
    return 0;
}

int moor_get_fixed64(const char **p, const char *end, uint64_t *v)
{
    if (end - *p < 8)
        return MOOR_ECORRUPT;
    *v = moor_dec_fixed64(*p);
    *p += 8;
    return 0;
}

int moor_get_lenbytes(const char **p, const char *end, const char **data, size_t *n)
{
    const char *q = *p;
    uint64_t len;

    if (moor_get_varint(&q, end, &len) || len > (uint64_t)(end - q))
        return MOOR_ECORRUPT;
    *data = q;
    *n = (size_t)len;
    *p = q + len;
    return 0;
}
