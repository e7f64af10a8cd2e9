/*
 * record.c -- a key's stored versions: the record codec, the write rule
 * that turns (current record, client ctx, new value) into the next record,
 * the get result, and the engine key.
 *
 * Design: one vector clock per record (Riak's model), siblings without
 * clocks of their own.  A write whose ctx descends from (or equals) the
 * record's clock has seen every sibling, so it replaces them; any other
 * write (older or concurrent ctx, or none on an existing key) adds a
 * sibling.  Either way the new clock is merge(record, ctx) incremented at
 * the coordinating node, so it descends from both, and is then pruned to
 * MOOR_RECORD_VC_KEEP entries (the oldest by ts go first).
 *
 * Merge (replicas receiving a version, coordinators combining replies):
 * the descendant wins; equal or concurrent clocks give the union of the
 * siblings under the merged clock.  Its output is canonical -- siblings
 * sorted oldest first (ties by tombstone flag, then value bytes), identical
 * siblings kept once, the oldest dropped past MOOR_RECORD_MAX_SIBLINGS, the
 * clock pruned to MOOR_RECORD_VC_KEEP -- so merge(a, b) and merge(b, a) are
 * the same bytes and merging a result with itself changes nothing.  Without
 * a clock per sibling, grouping can matter: ((a, b), c) may keep a sibling
 * of a that (a, (b, c)) drops because the merged clock of b and c descends
 * a's.  Either way the clock is the same and every sibling of an input
 * whose clock the other inputs do not cover together survives.
 *
 * Values are never re-encoded: a sibling's value is the exact MessagePack
 * span the client sent (found with moor_mp_skip), copied byte for byte into
 * the record and from the record into get results.  Tombstones store nil.
 *
 * Invariants of a decoded record: the clock holds vclock.c's invariants;
 * n <= MOOR_RECORD_MAX_SIBLINGS; a live sibling's value is one whole valid
 * MessagePack object inside the decoded buffer; a tombstone has value NULL,
 * vlen 0.  Stateless and thread-safe on distinct records.
 */
#include "record.h"

#include <msgpack.h>
#include <string.h>

#include "util/mp.h"
#include "util/err.h"
#include "util/hash.h"

int moor_record_key(const char *space, size_t slen, const char *key, size_t klen, moor_buf_t *out)
{
    size_t start = out->len;
    uint8_t sl = (uint8_t)slen;

    if (slen > MOOR_SPACE_MAX)
        return moor_diag(MOOR_EINVAL, "space name of %zu bytes (at most %d)", slen, MOOR_SPACE_MAX);
    if (moor_buf_reserve(out, 8 + 1 + slen + klen))
        return moor_diag(MOOR_ENOMEM, "no memory for a %zu-byte key", klen);
    /* Hash the bytes where they land, then put the token in front. */
    out->len += 8;
    moor_buf_append(out, &sl, 1);
    moor_buf_append(out, space, slen);
    moor_buf_append(out, key, klen);
    moor_enc_be64(out->data + start, moor_hash_token(out->data + start + 8, out->len - start - 8));
    return 0;
}

/* One [value, ts, tombstone] sibling. */
static int decode_sibling(const char **p, const char *end, moor_sibling_t *s)
{
    uint32_t n;
    const char *v;

    if (moor_mp_read_array(p, end, &n) || n != 3)
        return moor_diag(MOOR_ECORRUPT, "record: sibling is not a 3-element array");
    v = *p;
    if (moor_mp_skip(p, end, MOOR_RECORD_VALUE_DEPTH))
        return moor_diag(MOOR_ECORRUPT,
                         "record: sibling value is not MessagePack nested at most %d deep",
                         MOOR_RECORD_VALUE_DEPTH);
    s->value = v;
    s->vlen = (size_t)(*p - v);
    if (moor_mp_read_uint(p, end, &s->ts))
        return moor_diag(MOOR_ECORRUPT, "record: sibling ts is not an unsigned integer");
    if (moor_mp_read_bool(p, end, &s->tombstone))
        return moor_diag(MOOR_ECORRUPT, "record: sibling tombstone flag is not a boolean");
    if (s->tombstone) {
        if (s->vlen != 1 || (unsigned char)v[0] != 0xc0)
            return moor_diag(MOOR_ECORRUPT, "record: tombstone with a value");
        s->value = NULL;
        s->vlen = 0;
    }
    return 0;
}

int moor_record_decode(const char *buf, size_t len, moor_record_t *r)
{
    const char *p = buf, *end = len ? buf + len : buf; /* no NULL + 0 */
    uint32_t n;
    int rc = MOOR_ECORRUPT;

    r->n = 0;
    moor_vclock_init(&r->vc);
    if (moor_mp_read_array(&p, end, &n) || n != 2) {
        moor_diag(MOOR_ECORRUPT, "record: not a 2-element array");
        goto fail;
    }
    if (moor_vclock_decode(&p, end, &r->vc)) {
        moor_diag_wrap(MOOR_ECORRUPT, moor_diag_last()->code, "record: bad clock");
        goto fail;
    }
    if (moor_mp_read_array(&p, end, &n) || n > MOOR_RECORD_MAX_SIBLINGS) {
        moor_diag(MOOR_ECORRUPT, "record: siblings not an array of at most %d",
                  MOOR_RECORD_MAX_SIBLINGS);
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++)
        if (decode_sibling(&p, end, &r->sib[i]))
            goto fail;
    if (p != end) {
        moor_diag(MOOR_ECORRUPT, "record: %zu trailing bytes", (size_t)(end - p));
        goto fail;
    }
    r->n = n;
    return 0;
fail:
    r->n = 0;
    moor_vclock_init(&r->vc);
    return rc;
}

int moor_record_encode(const moor_record_t *r, moor_buf_t *out)
{
    msgpack_packer pk;
    size_t start = out->len;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_array(&pk, 2);
    rc |= moor_vclock_encode(&r->vc, out);
    rc |= msgpack_pack_array(&pk, r->n);
    for (uint32_t i = 0; i < r->n && rc == 0; i++) {
        const moor_sibling_t *s = &r->sib[i];
        rc |= msgpack_pack_array(&pk, 3);
        if (s->tombstone)
            rc |= msgpack_pack_nil(&pk);
        else
            rc |= moor_mp_pack_raw(out, s->value, s->vlen);
        rc |= msgpack_pack_uint64(&pk, s->ts);
        rc |= s->tombstone ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    }
    if (rc) {
        out->len = start;
        return moor_diag(MOOR_ENOMEM, "record: no memory to encode %u siblings", r->n);
    }
    return 0;
}

/* The clock a client sent; *has is 0 for an empty ctx.  The whole ctx must
 * be one clock, every entry within bounds at now (vclock.h). */
static int parse_ctx(const char *ctx, size_t ctxlen, uint64_t now, moor_vclock_t *vc, int *has)
{
    const char *p = ctx, *end;
    int rc;

    moor_vclock_init(vc);
    *has = ctxlen > 0;
    if (!*has)
        return 0;
    end = ctx + ctxlen;
    if ((rc = moor_vclock_decode(&p, end, vc)))
        return rc;
    if (p != end)
        return moor_diag(MOOR_EBADCTX, "ctx: %zu bytes after the clock", (size_t)(end - p));
    return moor_vclock_check_bounds(vc, now, "ctx");
}

/* dst = merge(dst, src), made to fit: only a forged ctx (written clocks hold
 * MOOR_RECORD_VC_KEEP entries) can overflow, and then the newest halves of
 * both are kept; the result is pruned further by the caller anyway. */
static void merge_bounded(moor_vclock_t *dst, const moor_vclock_t *src)
{
    moor_vclock_t s;

    if (moor_vclock_merge(dst, src) == 0)
        return;
    s = *src;
    moor_vclock_prune(dst, 0, MOOR_VC_MAX_ENTRIES / 2 - 1, 0, 0);
    moor_vclock_prune(&s, 0, MOOR_VC_MAX_ENTRIES / 2 - 1, 0, 0);
    moor_vclock_merge(dst, &s); /* at most 62 entries: can't fail */
}

/* Appends a sibling, first dropping the oldest (by ts, the first on ties)
 * when the record is full. */
static void add_sibling(moor_record_t *r, const char *value, size_t vlen, int tombstone,
                        uint64_t ts)
{
    moor_sibling_t *s;

    if (r->n == MOOR_RECORD_MAX_SIBLINGS) {
        uint32_t k = 0;
        for (uint32_t i = 1; i < r->n; i++)
            if (r->sib[i].ts < r->sib[k].ts)
                k = i;
        memmove(&r->sib[k], &r->sib[k + 1], (r->n - k - 1) * sizeof(r->sib[0]));
        r->n--;
    }
    s = &r->sib[r->n++];
    s->value = tombstone ? NULL : value;
    s->vlen = tombstone ? 0 : vlen;
    s->ts = ts;
    s->tombstone = tombstone != 0;
}

/* The record's invariant, checked at the door so that no write can store
 * an undecodable record. */
int moor_record_value_ok(const char *value, size_t vlen)
{
    const char *p = value;

    return value && vlen && moor_mp_skip(&p, value + vlen, MOOR_RECORD_VALUE_DEPTH) == 0 &&
           p == value + vlen;
}

int moor_record_write(const moor_record_t *cur, const char *ctx, size_t ctxlen, const char *value,
                      size_t vlen, int tombstone, const char *node, size_t nodelen, uint64_t now,
                      moor_buf_t *out, moor_buf_t *new_ctx)
{
    moor_record_t nr; /* on the stack: ~8 KiB, no allocation */
    moor_vclock_t cvc;
    size_t out0 = out->len, ctx0 = new_ctx->len;
    int has_ctx, rc;

    if (!tombstone && !moor_record_value_ok(value, vlen))
        return moor_diag(MOOR_EINVAL,
                         "record: value is not one MessagePack object nested at most %d deep",
                         MOOR_RECORD_VALUE_DEPTH);
    if ((rc = parse_ctx(ctx, ctxlen, now, &cvc, &has_ctx)))
        return rc;
    moor_vclock_init(&nr.vc);
    nr.n = 0;
    if (cur) {
        int ord = has_ctx ? moor_vclock_compare(&cvc, &cur->vc) : MOOR_VC_CONCURRENT;
        nr.vc = cur->vc;
        if (ord != MOOR_VC_EQUAL && ord != MOOR_VC_AFTER) {
            memcpy(nr.sib, cur->sib, cur->n * sizeof(cur->sib[0]));
            nr.n = cur->n;
        }
    }
    if (has_ctx)
        merge_bounded(&nr.vc, &cvc);
    if (nr.vc.n == MOOR_VC_MAX_ENTRIES) /* room for the node's entry */
        moor_vclock_prune(&nr.vc, 0, MOOR_VC_MAX_ENTRIES - 1, 0, 0);
    if ((rc = moor_vclock_increment(&nr.vc, node, nodelen, now)))
        return rc;
    moor_vclock_prune(&nr.vc, MOOR_RECORD_VC_KEEP, MOOR_RECORD_VC_KEEP, 0, now);
    add_sibling(&nr, value, vlen, tombstone, now);
    if ((rc = moor_record_encode(&nr, out)) || (rc = moor_vclock_encode(&nr.vc, new_ctx))) {
        out->len = out0;
        new_ctx->len = ctx0;
        return rc;
    }
    return 0;
}

int moor_record_is_deleted(const moor_record_t *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (!r->sib[i].tombstone)
            return 0;
    return 1;
}

int moor_record_get_result(const moor_record_t *r, moor_buf_t *out)
{
    msgpack_packer pk;
    moor_buf_t ctx = MOOR_BUF_INIT;
    size_t start = out->len;
    uint32_t live = 0;
    int rc = 0;

    for (uint32_t i = 0; i < r->n; i++)
        live += !r->sib[i].tombstone;
    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_map(&pk, 2);
    rc |= msgpack_pack_str_with_body(&pk, "values", 6);
    rc |= msgpack_pack_array(&pk, live);
    for (uint32_t i = 0; i < r->n && rc == 0; i++)
        if (!r->sib[i].tombstone)
            rc |= moor_mp_pack_raw(out, r->sib[i].value, r->sib[i].vlen);
    rc |= msgpack_pack_str_with_body(&pk, "ctx", 3);
    rc |= moor_vclock_encode(&r->vc, &ctx);
    rc |= msgpack_pack_bin_with_body(&pk, ctx.data, ctx.len);
    moor_buf_free(&ctx);
    if (rc) {
        out->len = start;
        return moor_diag(MOOR_ENOMEM, "record: no memory for a get result");
    }
    return 0;
}

/* Order of a merged record's siblings: oldest first, then tombstones after
 * values, then by value bytes, so the output does not depend on which
 * argument a sibling came from. */
static int sibling_cmp(const moor_sibling_t *x, const moor_sibling_t *y)
{
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->tombstone != y->tombstone)
        return x->tombstone ? 1 : -1;
    if (x->vlen != y->vlen)
        return x->vlen < y->vlen ? -1 : 1;
    return x->vlen ? memcmp(x->value, y->value, x->vlen) : 0;
}

/* Sorts sibs (insertion sort: at most 2 * MOOR_RECORD_MAX_SIBLINGS), keeps
 * one of each identical run and the newest MOOR_RECORD_MAX_SIBLINGS into r. */
static void set_siblings(moor_record_t *r, moor_sibling_t *sibs, uint32_t n)
{
    uint32_t u = 0, skip;

    for (uint32_t i = 1; i < n; i++) {
        moor_sibling_t s = sibs[i];
        uint32_t j = i;
        for (; j > 0 && sibling_cmp(&sibs[j - 1], &s) > 0; j--)
            sibs[j] = sibs[j - 1];
        sibs[j] = s;
    }
    for (uint32_t i = 0; i < n; i++)
        if (u == 0 || sibling_cmp(&sibs[u - 1], &sibs[i]) != 0)
            sibs[u++] = sibs[i];
    skip = u > MOOR_RECORD_MAX_SIBLINGS ? u - MOOR_RECORD_MAX_SIBLINGS : 0;
    memcpy(r->sib, sibs + skip, (u - skip) * sizeof(sibs[0]));
    r->n = u - skip;
}

int moor_record_merge(const moor_record_t *a, const moor_record_t *b, moor_buf_t *out)
{
    moor_sibling_t sibs[2 * MOOR_RECORD_MAX_SIBLINGS];
    moor_record_t m; /* ~8 KiB on the stack; values borrow from a and b */
    int ord = moor_vclock_compare(&a->vc, &b->vc);
    uint32_t n = 0;

    m.vc = ord == MOOR_VC_BEFORE ? b->vc : a->vc;
    if (ord != MOOR_VC_BEFORE) {
        memcpy(sibs, a->sib, a->n * sizeof(a->sib[0]));
        n = a->n;
    }
    if (ord != MOOR_VC_AFTER) {
        memcpy(sibs + n, b->sib, b->n * sizeof(b->sib[0]));
        n += b->n;
    }
    /* Equal clocks may still differ in entry timestamps: merge those too,
     * so the result does not depend on the argument order. */
    if (ord == MOOR_VC_EQUAL || ord == MOOR_VC_CONCURRENT)
        merge_bounded(&m.vc, &b->vc);
    moor_vclock_prune(&m.vc, MOOR_RECORD_VC_KEEP, MOOR_RECORD_VC_KEEP, 0, 0);
    set_siblings(&m, sibs, n);
    return moor_record_encode(&m, out);
}
