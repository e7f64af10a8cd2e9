/*
 * fuzz_record.c -- libFuzzer target for stored records and client
 * contexts.  moor_record_decode on arbitrary bytes (format v2, and v1
 * converted with legacy dots): when it accepts, every value and dot id
 * span lies inside the input (or is the static legacy id), encode ->
 * decode -> encode is a fixed point, merging the record with itself gives
 * a record that merging again leaves byte-identical, the get result is
 * one valid MessagePack object, and a write on top of the record yields a
 * decodable record (or the hard cap's MOOR_ETOOMANYSIBS).  The same bytes as a ctx:
 * moor_vclock_decode either refuses with MOOR_EBADCTX (cursor unmoved) or
 * gives a sorted clock that round-trips; moor_record_write with them as
 * ctx succeeds or says MOOR_EBADCTX.  Expiry: a record expired at its
 * earliest expiry encodes to a record that decodes, holds no sibling
 * expiring by then, and expiring it again changes nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/record.h"
#include "util/mp.h"
#include "util/err.h"

static void check_clock(const moor_vclock_t *vc)
{
    if (vc->n > MOOR_VC_MAX_ENTRIES)
        abort();
    for (uint32_t i = 0; i < vc->n; i++) {
        if (vc->e[i].idlen == 0 || vc->e[i].idlen > MOOR_VC_ID_MAX || vc->e[i].counter == 0)
            abort();
        if (i == 0)
            continue;
        const moor_vc_entry_t *a = &vc->e[i - 1], *b = &vc->e[i];
        int c = memcmp(a->id, b->id, a->idlen < b->idlen ? a->idlen : b->idlen);
        if (c > 0 || (c == 0 && a->idlen >= b->idlen))
            abort();
    }
}

static void same_record(const moor_record_t *a, const moor_record_t *b)
{
    if (a->n != b->n || moor_vclock_compare(&a->vc, &b->vc) != MOOR_VC_EQUAL)
        abort();
    for (uint32_t i = 0; i < a->n; i++)
        if (a->sib[i].tombstone != b->sib[i].tombstone || a->sib[i].ts != b->sib[i].ts ||
            a->sib[i].vlen != b->sib[i].vlen || a->sib[i].dot_counter != b->sib[i].dot_counter ||
            a->sib[i].exp != b->sib[i].exp || (a->sib[i].tombstone && a->sib[i].exp) ||
            a->sib[i].dot_idlen != b->sib[i].dot_idlen ||
            memcmp(a->sib[i].dot_id, b->sib[i].dot_id, a->sib[i].dot_idlen) ||
            (a->sib[i].vlen && memcmp(a->sib[i].value, b->sib[i].value, a->sib[i].vlen)))
            abort();
}

static void fuzz_decoded(const char *in, size_t size, const moor_record_t *r)
{
    moor_buf_t e1 = MOOR_BUF_INIT, e2 = MOOR_BUF_INIT, res = MOOR_BUF_INIT;
    moor_buf_t out = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    moor_record_t *r2 = malloc(sizeof(*r2)), *r3 = malloc(sizeof(*r3));
    const char *p;

    check_clock(&r->vc);
    for (uint32_t i = 0; i < r->n; i++)
        if (!r->sib[i].tombstone &&
            (r->sib[i].value < in || r->sib[i].vlen == 0 || r->sib[i].vlen > size ||
             (size_t)(r->sib[i].value - in) > size - r->sib[i].vlen))
            abort();
    for (uint32_t i = 0; i < r->n; i++) {
        const moor_sibling_t *s = &r->sib[i];
        if (s->dot_idlen == 0 || s->dot_idlen > MOOR_VC_ID_MAX || s->dot_counter == 0)
            abort();
        if (!(s->dot_idlen == 1 && s->dot_id[0] == 0) && /* the legacy id: static */
            (s->dot_id < in || (size_t)(s->dot_id - in) > size - s->dot_idlen))
            abort();
    }
    if (!r2 || !r3 || moor_record_encode(r, &e1) || moor_record_decode(e1.data, e1.len, r2))
        abort();
    same_record(r, r2);
    if (moor_record_encode(r2, &e2) || e1.len != e2.len || memcmp(e1.data, e2.data, e1.len))
        abort();
    if (moor_record_get_result(r, &res))
        abort();
    p = res.data;
    if (moor_mp_skip(&p, res.data + res.len, MOOR_MP_MAX_DEPTH) || p != res.data + res.len)
        abort();
    /* merge with itself: canonical, and a fixed point from there */
    moor_buf_reset(&e1);
    moor_buf_reset(&e2);
    if (moor_record_merge(r, r, &e1) || moor_record_decode(e1.data, e1.len, r2) ||
        moor_record_merge(r2, r2, &e2) || e1.len != e2.len || memcmp(e1.data, e2.data, e1.len))
        abort();
    /* expired at its earliest expiry: no expiring sibling left by then */
    uint64_t at = moor_record_next_expiry(r);
    if (at) {
        *r3 = *r;
        if (moor_record_expire(r3, at) == 0 || moor_record_expire(r3, at) != 0)
            abort();
        moor_buf_reset(&e1);
        if (moor_record_encode(r3, &e1) || moor_record_decode(e1.data, e1.len, r2))
            abort();
        for (uint32_t i = 0; i < r2->n; i++)
            if (r2->sib[i].exp && r2->sib[i].exp <= at)
                abort();
    }
    int rc = moor_record_write(r, NULL, 0, "\x01", 1, 0, "fz", 2, 1, 0, NULL, &out, &ctx, NULL);
    if (rc == 0) {
        if (moor_record_decode(out.data, out.len, r3))
            abort();
        check_clock(&r3->vc);
    } else if (!(rc == MOOR_ETOOMANYSIBS && r->n == MOOR_RECORD_MAX_SIBLINGS) &&
               rc != MOOR_EINVAL) { /* EINVAL: fz's dot at 2^64-1 */
        abort();
    }
    moor_buf_free(&e1);
    moor_buf_free(&e2);
    moor_buf_free(&res);
    moor_buf_free(&out);
    moor_buf_free(&ctx);
    free(r2);
    free(r3);
}

static void fuzz_ctx(const char *in, size_t size)
{
    moor_vclock_t vc, back;
    moor_buf_t enc = MOOR_BUF_INIT, out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT;
    const char *p = in, *q;
    int rc = moor_vclock_decode(&p, in + size, &vc);

    if (rc) {
        if (rc != MOOR_EBADCTX || p != in || vc.n != 0)
            abort();
    } else {
        if (p <= in || p > in + size)
            abort();
        check_clock(&vc);
        if (moor_vclock_encode(&vc, &enc))
            abort();
        q = enc.data;
        if (moor_vclock_decode(&q, enc.data + enc.len, &back) || q != enc.data + enc.len)
            abort();
        if (moor_vclock_compare(&vc, &back) != MOOR_VC_EQUAL || back.n != vc.n)
            abort();
    }
    if (size) {
        rc = moor_record_write(NULL, in, size, "\xc0", 1, 0, "fz", 2, 7, 0, NULL, &out, &nctx,
                               NULL);
        if (rc != 0 && rc != MOOR_EBADCTX)
            abort();
        if (rc == 0 && (out.len == 0 || nctx.len == 0))
            abort();
    }
    moor_buf_free(&enc);
    moor_buf_free(&out);
    moor_buf_free(&nctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    moor_record_t *r = malloc(sizeof(*r));
    int rc;

    if (!r)
        abort();
    rc = moor_record_decode(in, size, r);
    if (rc == 0)
        fuzz_decoded(in, size, r);
    else if (rc != MOOR_ECORRUPT || r->n != 0)
        abort();
    fuzz_ctx(in, size);
    free(r);
    return 0;
}
