/*
 * batch.c -- building write batches and walking their encoding (batch.h).
 * A batch is owned by one thread; nothing here locks.
 */
#include "batch.h"

#include <stdlib.h>

#include "ikey.h"
#include "util/err.h"

moor_batch_t *moor_batch_new(void)
{
    moor_batch_t *b = calloc(1, sizeof(*b));

    if (!b)
        return NULL;
    if (moor_buf_put_fixed32(&b->rep, 0)) {
        free(b);
        return NULL;
    }
    return b;
}

void moor_batch_free(moor_batch_t *b)
{
    if (!b)
        return;
    moor_buf_free(&b->rep);
    free(b);
}

void moor_batch_clear(moor_batch_t *b)
{
    b->rep.len = MOOR_BATCH_HEADER;
    moor_enc_fixed32(b->rep.data, 0);
    b->count = 0;
    b->user_bytes = 0;
}

static int batch_add(moor_batch_t *b, int type, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
    /* Reserve once so the appends below cannot fail half-way. */
    if (moor_buf_reserve(&b->rep, 1 + 20 + klen + vlen))
        return MOOR_ENOMEM;
    moor_buf_put_u8(&b->rep, (uint8_t)type);
    moor_buf_put_lenbytes(&b->rep, key, klen);
    moor_buf_put_lenbytes(&b->rep, val, vlen);
    b->count++;
    b->user_bytes += klen + (type == MOOR_VT_PUT ? vlen : 0);
    moor_enc_fixed32(b->rep.data, b->count);
    return 0;
}

int moor_batch_put(moor_batch_t *b, const void *key, size_t klen, const void *val, size_t vlen)
{
    return batch_add(b, MOOR_VT_PUT, key, klen, val, vlen);
}

int moor_batch_delete(moor_batch_t *b, const void *key, size_t klen)
{
    static const char zero_ts[8];

    return batch_add(b, MOOR_VT_DEL, key, klen, zero_ts, sizeof(zero_ts));
}

uint32_t moor_batch_count(const moor_batch_t *b)
{
    return b->count;
}

int moor_batch_iterate(char *rep, size_t len, moor_batch_fn fn, void *ud)
{
    const char *p = rep, *end = rep + len, *k, *v;
    uint32_t count, seen = 0;
    size_t klen, vlen;
    int rc;

    if (moor_get_fixed32(&p, end, &count))
        return MOOR_ECORRUPT;
    while (p < end) {
        int type = (unsigned char)*p++;
        if (type != MOOR_VT_PUT && type != MOOR_VT_DEL)
            return MOOR_ECORRUPT;
        if (moor_get_lenbytes(&p, end, &k, &klen) || moor_get_lenbytes(&p, end, &v, &vlen))
            return MOOR_ECORRUPT;
        if (type == MOOR_VT_DEL && vlen != 8)
            return MOOR_ECORRUPT;
        if (++seen > count)
            return MOOR_ECORRUPT;
        rc = fn(ud, type, k, klen, rep + (v - rep), vlen);
        if (rc)
            return rc;
    }
    return seen == count ? 0 : MOOR_ECORRUPT;
}

static int check_entry(void *ud, int type, const char *key, size_t klen, char *val, size_t vlen)
{
    return 0;
}

int moor_batch_check(const char *rep, size_t len, uint32_t *count)
{
    uint32_t n;

    if (len < MOOR_BATCH_HEADER)
        return MOOR_ECORRUPT;
    n = moor_dec_fixed32(rep);
    if (n == 0 || n > (len - MOOR_BATCH_HEADER) / MOOR_BATCH_MIN_ENTRY)
        return MOOR_ECORRUPT;
    /* iterate only reads through rep when fn does not write: the cast is
     * safe with check_entry. */
    if (moor_batch_iterate((char *)rep, len, check_entry, NULL))
        return MOOR_ECORRUPT;
    *count = n;
    return 0;
}
