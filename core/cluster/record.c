/*
 * record.c -- a key's stored versions: the record codec (v2, and v1
 * converted on decode), the write rule that turns (current record, client
 * ctx, new value) into the next record, the causal merge, the get result,
 * and the engine key.
 *
 * Design: dotted version vector sets (Riak 2.0's DVV; record.h has the
 * model).  A record is a causal context C plus siblings with one dot each.
 * A write by node X with client context K on (C, S) keeps the siblings
 * whose dots K does not cover, adds one with a fresh dot (X, c) where c is
 * above every counter of X in C, K and S, and sets C' = C max K, pruned.
 * The new dot is NOT folded into C': a record then never claims to have
 * seen a dot it does not hold, even when a crash lost one of X's own
 * earlier writes, so a blind write never hides a sibling it did not see.
 *
 * Merge is the causal join: a sibling of one side survives when the other
 * side holds it too (same dot and content) or the other side's context does
 * not cover its dot; C is the pointwise max.  That is commutative,
 * associative and idempotent for any inputs (sibling identity is the full
 * tuple; coverage is by C only).  Output is canonical: siblings sorted by
 * dot id, dot counter, ts, tombstone, value bytes, each once -- so replicas
 * that merged the same versions in any order hold the same bytes.  Merge
 * never prunes C (pruning would break the laws); only a context that
 * outgrows MOOR_VC_MAX_ENTRIES loses its oldest entries, and only a record
 * that outgrows MOOR_RECORD_MAX_SIBLINGS loses its oldest siblings
 * (counted, moor_record_merge_drops) -- the two pathological cases where
 * associativity no longer holds.
 *
 * Values are never re-encoded: a sibling's value is the exact MessagePack
 * span the client sent (found with moor_mp_skip), copied byte for byte into
 * the record and from the record into get results.  Tombstones store nil.
 *
 * Expiry (record.h): an expiring sibling is the 6th element of its array,
 * so records that never used a TTL keep their bytes.  Expiring one is
 * deterministic (tombstone at exp, same dot), so two replicas that expired
 * the same sibling at different times hold the same bytes after.
 *
 * Invariants of a decoded record: the context holds vclock.c's invariants;
 * n <= MOOR_RECORD_MAX_SIBLINGS; every dot has an id of 1..MOOR_VC_ID_MAX
 * bytes and a counter >= 1; a live sibling's value is one whole valid
 * MessagePack object inside the decoded buffer; a tombstone has value NULL,
 * vlen 0.  Thread-safe on distinct records (the drop count is atomic).
 */
#include "record.h"

#include <msgpack.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/mp.h"
#include "util/err.h"
#include "util/hash.h"

static _Atomic uint64_t merge_drops;

uint64_t moor_record_merge_drops(void)
{
    return atomic_load(&merge_drops);
}

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

/* value, ts, tombstone of a sibling (both formats end with them). */
static int decode_version(const char **p, const char *end, moor_sibling_t *s)
{
    const char *v = *p;

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

/* One v1 sibling [value, ts, tombstone], given its legacy dot. */
static int decode_sibling_v1(const char **p, const char *end, moor_sibling_t *s)
{
    uint32_t n;
    int rc;

    if (moor_mp_read_array(p, end, &n) || n != 3)
        return moor_diag(MOOR_ECORRUPT, "record: v1 sibling is not a 3-element array");
    if ((rc = decode_version(p, end, s)))
        return rc;
    s->exp = 0;
    s->dot_id = MOOR_RECORD_LEGACY_ID;
    s->dot_idlen = MOOR_RECORD_LEGACY_IDLEN;
    s->dot_counter = s->ts == 0 ? 1 : s->ts > UINT64_MAX / 1000 ? UINT64_MAX : s->ts * 1000;
    return 0;
}

/* One v2 sibling [dot_id, dot_counter, value, ts, tombstone [, exp]]. */
static int decode_sibling_v2(const char **p, const char *end, moor_sibling_t *s)
{
    uint32_t n, len;
    int rc;

    if (moor_mp_read_array(p, end, &len) || (len != 5 && len != 6))
        return moor_diag(MOOR_ECORRUPT, "record: sibling is not a 5- or 6-element array");
    if (moor_mp_read_bin(p, end, &s->dot_id, &n) || n == 0 || n > MOOR_VC_ID_MAX)
        return moor_diag(MOOR_ECORRUPT, "record: dot id is not bin of 1..%d bytes",
                         MOOR_VC_ID_MAX);
    s->dot_idlen = (uint8_t)n;
    if (moor_mp_read_uint(p, end, &s->dot_counter) || s->dot_counter == 0)
        return moor_diag(MOOR_ECORRUPT, "record: dot counter is not a positive integer");
    if ((rc = decode_version(p, end, s)))
        return rc;
    s->exp = 0;
    if (len == 6 && (moor_mp_read_uint(p, end, &s->exp) || s->exp == 0 || s->tombstone))
        return moor_diag(MOOR_ECORRUPT, "record: expiry is not a positive integer on a value");
    return 0;
}

int moor_record_decode(const char *buf, size_t len, moor_record_t *r)
{
    const char *p = buf, *end = len ? buf + len : buf; /* no NULL + 0 */
    uint32_t n;
    uint64_t ver = 0;
    int v2;

    r->n = 0;
    moor_vclock_init(&r->vc);
    if (moor_mp_read_array(&p, end, &n) || (n != 2 && n != 3)) {
        moor_diag(MOOR_ECORRUPT, "record: not a 2- or 3-element array");
        goto fail;
    }
    v2 = n == 3;
    if (v2 && (moor_mp_read_uint(&p, end, &ver) || ver != 2)) {
        moor_diag(MOOR_ECORRUPT, "record: unknown format version");
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
        if (v2 ? decode_sibling_v2(&p, end, &r->sib[i]) : decode_sibling_v1(&p, end, &r->sib[i]))
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
    return MOOR_ECORRUPT;
}

int moor_record_encode(const moor_record_t *r, moor_buf_t *out)
{
    msgpack_packer pk;
    size_t start = out->len;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_array(&pk, 3);
    rc |= msgpack_pack_uint8(&pk, 2);
    rc |= moor_vclock_encode(&r->vc, out);
    rc |= msgpack_pack_array(&pk, r->n);
    for (uint32_t i = 0; i < r->n && rc == 0; i++) {
        const moor_sibling_t *s = &r->sib[i];
        int has_exp = s->exp && !s->tombstone; /* a tombstone never expires */
        rc |= msgpack_pack_array(&pk, has_exp ? 6 : 5);
        rc |= msgpack_pack_bin_with_body(&pk, s->dot_id, s->dot_idlen);
        rc |= msgpack_pack_uint64(&pk, s->dot_counter);
        if (s->tombstone)
            rc |= msgpack_pack_nil(&pk);
        else
            rc |= moor_mp_pack_raw(out, s->value, s->vlen);
        rc |= msgpack_pack_uint64(&pk, s->ts);
        rc |= s->tombstone ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        if (has_exp)
            rc |= msgpack_pack_uint64(&pk, s->exp);
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

/* dst = merge(dst, src), made to fit: when the union outgrows
 * MOOR_VC_MAX_ENTRIES, the newest halves of both are kept (deterministic,
 * but then merge is no longer associative: record.h). */
static void merge_bounded(moor_vclock_t *dst, const moor_vclock_t *src)
{
    moor_vclock_t s;

    if (moor_vclock_merge(dst, src) == 0)
        return;
    s = *src;
    moor_vclock_prune(dst, 0, MOOR_VC_MAX_ENTRIES / 2, 0, 0);
    moor_vclock_prune(&s, 0, MOOR_VC_MAX_ENTRIES / 2, 0, 0);
    moor_vclock_merge(dst, &s); /* at most 64 entries: can't fail */
}

static int covered(const moor_vclock_t *vc, const moor_sibling_t *s)
{
    return s->dot_counter <= moor_vclock_get(vc, s->dot_id, s->dot_idlen);
}

/* The record's invariant, checked at the door so that no write can store
 * an undecodable record. */
int moor_record_value_ok(const char *value, size_t vlen)
{
    const char *p = value;

    return value && vlen && moor_mp_skip(&p, value + vlen, MOOR_RECORD_VALUE_DEPTH) == 0 &&
           p == value + vlen;
}

/* Canonical order of siblings: dot id (vclock order), dot counter, ts,
 * tombstones after values, expiry, value bytes.  0 only for identical
 * siblings. */
static int sibling_cmp(const moor_sibling_t *x, const moor_sibling_t *y)
{
    int c = memcmp(x->dot_id, y->dot_id, x->dot_idlen < y->dot_idlen ? x->dot_idlen : y->dot_idlen);

    if (c)
        return c;
    if (x->dot_idlen != y->dot_idlen)
        return x->dot_idlen < y->dot_idlen ? -1 : 1;
    if (x->dot_counter != y->dot_counter)
        return x->dot_counter < y->dot_counter ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->tombstone != y->tombstone)
        return x->tombstone ? 1 : -1;
    if (x->exp != y->exp)
        return x->exp < y->exp ? -1 : 1;
    if (x->vlen != y->vlen)
        return x->vlen < y->vlen ? -1 : 1;
    return x->vlen ? memcmp(x->value, y->value, x->vlen) : 0;
}

static int sibling_qcmp(const void *a, const void *b)
{
    return sibling_cmp(a, b);
}

/* Sorts sibs, keeps one of each identical run; past
 * MOOR_RECORD_MAX_SIBLINGS drops the oldest (by ts, then canonical order)
 * and returns how many it dropped.  The result goes to r->sib, r->n. */
static uint32_t set_siblings(moor_record_t *r, moor_sibling_t *sibs, uint32_t n)
{
    uint32_t u = 0, dropped = 0;

    qsort(sibs, n, sizeof(sibs[0]), sibling_qcmp);
    for (uint32_t i = 0; i < n; i++)
        if (u == 0 || sibling_cmp(&sibs[u - 1], &sibs[i]) != 0)
            sibs[u++] = sibs[i];
    while (u > MOOR_RECORD_MAX_SIBLINGS) {
        uint32_t k = 0;
        for (uint32_t i = 1; i < u; i++)
            if (sibs[i].ts < sibs[k].ts)
                k = i;
        memmove(&sibs[k], &sibs[k + 1], (u - k - 1) * sizeof(sibs[0]));
        u--;
        dropped++;
    }
    memcpy(r->sib, sibs, u * sizeof(sibs[0]));
    r->n = u;
    return dropped;
}

int moor_record_write_floor(const moor_record_t *cur, const char *ctx, size_t ctxlen,
                            const char *node, size_t nodelen, uint64_t now, uint64_t *floor)
{
    moor_vclock_t cvc;
    uint64_t f;
    int has, rc;

    if ((rc = parse_ctx(ctx, ctxlen, now, &cvc, &has)))
        return rc;
    f = moor_vclock_get(&cvc, node, nodelen);
    if (cur) {
        uint64_t x = moor_vclock_get(&cur->vc, node, nodelen);
        if (x > f)
            f = x;
        for (uint32_t i = 0; i < cur->n; i++) {
            const moor_sibling_t *s = &cur->sib[i];
            if (s->dot_idlen == nodelen && memcmp(s->dot_id, node, nodelen) == 0 &&
                s->dot_counter > f)
                f = s->dot_counter;
        }
    }
    *floor = f;
    return 0;
}

int moor_record_write(const moor_record_t *cur, const char *ctx, size_t ctxlen, const char *value,
                      size_t vlen, int tombstone, const char *node, size_t nodelen, uint64_t now,
                      uint64_t counter, const moor_record_prune_t *prune, moor_buf_t *out,
                      moor_buf_t *new_ctx, uint32_t *nsib)
{
    return moor_record_write_exp(cur, ctx, ctxlen, value, vlen, tombstone, 0, node, nodelen, now,
                                 counter, prune, out, new_ctx, nsib);
}

int moor_record_write_exp(const moor_record_t *cur, const char *ctx, size_t ctxlen,
                          const char *value, size_t vlen, int tombstone, uint64_t exp,
                          const char *node, size_t nodelen, uint64_t now, uint64_t counter,
                          const moor_record_prune_t *prune, moor_buf_t *out, moor_buf_t *new_ctx,
                          uint32_t *nsib)
{
    moor_record_t *nr;
    moor_vclock_t cvc;
    moor_sibling_t *s;
    size_t out0 = out->len, ctx0 = new_ctx->len;
    uint64_t floor;
    int has_ctx, rc;

    if (!tombstone && !moor_record_value_ok(value, vlen))
        return moor_diag(MOOR_EINVAL,
                         "record: value is not one MessagePack object nested at most %d deep",
                         MOOR_RECORD_VALUE_DEPTH);
    if (nodelen == 0 || nodelen > MOOR_VC_ID_MAX ||
        (nodelen == MOOR_RECORD_LEGACY_IDLEN && node[0] == 0))
        return moor_diag(MOOR_EINVAL, "record: node id of %zu bytes (1..%d, not the legacy id)",
                         nodelen, MOOR_VC_ID_MAX);
    if ((rc = parse_ctx(ctx, ctxlen, now, &cvc, &has_ctx)) ||
        (rc = moor_record_write_floor(cur, ctx, ctxlen, node, nodelen, now, &floor)))
        return rc;
    if (counter == 0) {
        if (floor == UINT64_MAX)
            return moor_diag(MOOR_EINVAL, "record: the counter of node '%.*s' would overflow",
                             (int)nodelen, node);
        counter = floor + 1;
        if (now <= UINT64_MAX / 1000 && now * 1000 > counter)
            counter = now * 1000;
    } else if (counter <= floor) {
        return moor_diag(MOOR_EINVAL, "record: dot counter %llu not above %llu",
                         (unsigned long long)counter, (unsigned long long)floor);
    }
    if (!(nr = malloc(sizeof(*nr))))
        return moor_diag(MOOR_ENOMEM, "record: no memory for a write");
    moor_vclock_init(&nr->vc);
    nr->n = 0;
    if (cur) {
        nr->vc = cur->vc;
        for (uint32_t i = 0; i < cur->n; i++)
            if (!covered(&cvc, &cur->sib[i]))
                nr->sib[nr->n++] = cur->sib[i];
    }
    if (nr->n == MOOR_RECORD_MAX_SIBLINGS) {
        free(nr);
        return moor_diag(MOOR_ETOOMANYSIBS, "record: the key has %d siblings, the most a record "
                         "holds", MOOR_RECORD_MAX_SIBLINGS);
    }
    merge_bounded(&nr->vc, &cvc);
    if (prune)
        moor_vclock_prune(&nr->vc, prune->keep_min, prune->max_entries, prune->max_age_ms, now);
    else
        moor_vclock_prune(&nr->vc, MOOR_RECORD_VC_KEEP, MOOR_RECORD_VC_KEEP, 0, now);
    s = &nr->sib[nr->n++];
    s->value = tombstone ? NULL : value;
    s->vlen = tombstone ? 0 : vlen;
    s->ts = now;
    s->tombstone = tombstone != 0;
    s->exp = tombstone ? 0 : exp;
    s->dot_id = node;
    s->dot_idlen = (uint8_t)nodelen;
    s->dot_counter = counter;
    qsort(nr->sib, nr->n, sizeof(nr->sib[0]), sibling_qcmp);
    if ((rc = moor_record_encode(nr, out)) || (rc = moor_record_ctx(nr, new_ctx))) {
        out->len = out0;
        new_ctx->len = ctx0;
    } else if (nsib) {
        *nsib = nr->n;
    }
    free(nr);
    return rc;
}

int moor_record_is_deleted(const moor_record_t *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (!r->sib[i].tombstone)
            return 0;
    return 1;
}

uint32_t moor_record_expire(moor_record_t *r, uint64_t now)
{
    uint32_t k = 0, u = 0;

    for (uint32_t i = 0; i < r->n; i++) {
        moor_sibling_t *s = &r->sib[i];
        if (s->exp && s->exp <= now) {
            s->tombstone = 1;
            s->value = NULL;
            s->vlen = 0;
            s->ts = s->exp;
            s->exp = 0;
            k++;
        }
    }
    if (k == 0)
        return 0;
    qsort(r->sib, r->n, sizeof(r->sib[0]), sibling_qcmp);
    for (uint32_t i = 0; i < r->n; i++)
        if (u == 0 || sibling_cmp(&r->sib[u - 1], &r->sib[i]) != 0)
            r->sib[u++] = r->sib[i];
    r->n = u;
    return k;
}

uint64_t moor_record_next_expiry(const moor_record_t *r)
{
    uint64_t e = 0;

    for (uint32_t i = 0; i < r->n; i++)
        if (!r->sib[i].tombstone && r->sib[i].exp && (e == 0 || r->sib[i].exp < e))
            e = r->sib[i].exp;
    return e;
}

void moor_record_ctx_vc(const moor_record_t *r, moor_vclock_t *vc)
{
    *vc = r->vc;
    for (uint32_t i = 0; i < r->n; i++) {
        const moor_sibling_t *s = &r->sib[i];
        if (moor_vclock_raise(vc, s->dot_id, s->dot_idlen, s->dot_counter, s->ts) ==
            MOOR_ENOMEM) {
            /* More ids than a clock holds (over 64 coordinators): the
             * oldest context entry gives way. */
            moor_vclock_prune(vc, 0, MOOR_VC_MAX_ENTRIES - 1, 0, 0);
            moor_vclock_raise(vc, s->dot_id, s->dot_idlen, s->dot_counter, s->ts);
        }
    }
}

int moor_record_ctx(const moor_record_t *r, moor_buf_t *out)
{
    moor_vclock_t vc; /* ~5.6 KiB */

    moor_record_ctx_vc(r, &vc);
    return moor_vclock_encode(&vc, out);
}

int moor_record_get_result(const moor_record_t *r, moor_buf_t *out)
{
    msgpack_packer pk;
    moor_buf_t ctx = MOOR_BUF_INIT;
    size_t start = out->len;
    uint64_t exp = moor_record_next_expiry(r);
    uint32_t live = 0;
    int rc = 0;

    for (uint32_t i = 0; i < r->n; i++)
        live += !r->sib[i].tombstone;
    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_map(&pk, exp ? 3 : 2);
    rc |= msgpack_pack_str_with_body(&pk, "values", 6);
    rc |= msgpack_pack_array(&pk, live);
    for (uint32_t i = 0; i < r->n && rc == 0; i++)
        if (!r->sib[i].tombstone)
            rc |= moor_mp_pack_raw(out, r->sib[i].value, r->sib[i].vlen);
    rc |= msgpack_pack_str_with_body(&pk, "ctx", 3);
    rc |= moor_record_ctx(r, &ctx);
    rc |= msgpack_pack_bin_with_body(&pk, ctx.data, ctx.len);
    if (exp)
        rc |= msgpack_pack_str_with_body(&pk, "expires_ms", 10) | msgpack_pack_uint64(&pk, exp);
    moor_buf_free(&ctx);
    if (rc) {
        out->len = start;
        return moor_diag(MOOR_ENOMEM, "record: no memory for a get result");
    }
    return 0;
}

/* 1 if r holds a sibling identical to s. */
static int holds(const moor_record_t *r, const moor_sibling_t *s)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (sibling_cmp(&r->sib[i], s) == 0)
            return 1;
    return 0;
}

int moor_record_merge_n(const moor_record_t *a, const moor_record_t *b, moor_buf_t *out,
                        uint32_t *dropped)
{
    struct {
        moor_sibling_t sibs[2 * MOOR_RECORD_MAX_SIBLINGS];
        moor_record_t m; /* values borrow from a and b */
    } *w = malloc(sizeof(*w));
    uint32_t n = 0, d;
    int rc;

    if (dropped)
        *dropped = 0;
    if (!w)
        return moor_diag(MOOR_ENOMEM, "record: no memory for a merge");
    for (uint32_t i = 0; i < a->n; i++)
        if (!covered(&b->vc, &a->sib[i]) || holds(b, &a->sib[i]))
            w->sibs[n++] = a->sib[i];
    for (uint32_t i = 0; i < b->n; i++)
        if (!covered(&a->vc, &b->sib[i]) || holds(a, &b->sib[i]))
            w->sibs[n++] = b->sib[i];
    w->m.vc = a->vc;
    merge_bounded(&w->m.vc, &b->vc);
    d = set_siblings(&w->m, w->sibs, n);
    if (d) {
        atomic_fetch_add(&merge_drops, d);
        if (dropped)
            *dropped = d;
    }
    rc = moor_record_encode(&w->m, out);
    free(w);
    return rc;
}

int moor_record_merge(const moor_record_t *a, const moor_record_t *b, moor_buf_t *out)
{
    return moor_record_merge_n(a, b, out, NULL);
}
