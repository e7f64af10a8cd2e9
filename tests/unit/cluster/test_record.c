/*
 * test_record.c -- records: the engine key layout and token, the codec
 * (round trips; values kept byte for byte, non-canonical encodings
 * included; malformed, truncated and corrupted records refused with
 * MOOR_ECORRUPT), the write rules (new key; the latest ctx replaces; a
 * stale or missing ctx adds a sibling; deletes; a concurrent delete and put
 * keep both; sibling and clock bounds; bad ctx), and the get result read
 * back with the mp readers; merge (descendant wins, concurrent and equal
 * clocks give the canonical union, bounds, and on random records:
 * commutative and idempotent byte for byte, associative on the clock and
 * on every sibling that matters, exactly on chains and disjoint clocks).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>

#include "cluster/record.h"
#include "util/mp.h"
#include "util/err.h"
#include "util/hash.h"
#include "testutil.h"

static uint64_t rng;

/* A stored record and the ctx of the write that made it; owns its bytes. */
typedef struct stored {
    moor_buf_t raw;
    moor_buf_t ctx;
    moor_record_t rec; /* borrows from raw */
} stored_t;

static void stored_init(stored_t *s)
{
    memset(s, 0, sizeof(*s));
}

static void stored_free(stored_t *s)
{
    moor_buf_free(&s->raw);
    moor_buf_free(&s->ctx);
}

/* Applies a write to *s (NULL record if s->raw is empty) and decodes the
 * result back into s. */
static void apply(stored_t *s, const char *ctx, size_t ctxlen, const char *value, size_t vlen,
                  int tombstone, const char *node, uint64_t now)
{
    moor_buf_t out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT;
    int rc = moor_record_write(s->raw.len ? &s->rec : NULL, ctx, ctxlen, value, vlen, tombstone,
                               node, strlen(node), now, &out, &nctx);

    if (rc)
        fail_msg("write: %d (%s): %s", rc, moor_err_name(rc), moor_diag_msg(rc));
    moor_buf_free(&s->raw);
    moor_buf_free(&s->ctx);
    s->raw = out;
    s->ctx = nctx;
    rc = moor_record_decode(s->raw.data, s->raw.len, &s->rec);
    if (rc)
        fail_msg("decode of a written record: %d (%s)", rc, moor_diag_msg(rc));
}

static void put_n(stored_t *s, const moor_buf_t *ctx, const char *value, size_t vlen,
                  const char *node, uint64_t now)
{
    apply(s, ctx ? ctx->data : NULL, ctx ? ctx->len : 0, value, vlen, 0, node, now);
}

/* value is a string literal: its length comes from sizeof, NULs included */
#define put(s, ctx, value, node, now) put_n(s, ctx, value, sizeof(value) - 1, node, now)

static void del(stored_t *s, const moor_buf_t *ctx, const char *node, uint64_t now)
{
    apply(s, ctx ? ctx->data : NULL, ctx ? ctx->len : 0, NULL, 0, 1, node, now);
}

static moor_buf_t copy_buf(const moor_buf_t *b)
{
    moor_buf_t c = MOOR_BUF_INIT;
    assert_int_equal(moor_buf_append(&c, b->data, b->len), 0);
    return c;
}

/* 1 if some live sibling's value is exactly v. */
static int has_value(const moor_record_t *r, const char *v, size_t vlen)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (!r->sib[i].tombstone && r->sib[i].vlen == vlen && !memcmp(r->sib[i].value, v, vlen))
            return 1;
    return 0;
}

static uint32_t tombstones(const moor_record_t *r)
{
    uint32_t t = 0;
    for (uint32_t i = 0; i < r->n; i++)
        t += r->sib[i].tombstone != 0;
    return t;
}

static moor_vclock_t ctx_clock(const moor_buf_t *ctx)
{
    moor_vclock_t vc;
    const char *p = ctx->data;
    assert_int_equal(moor_vclock_decode(&p, ctx->data + ctx->len, &vc), 0);
    assert_ptr_equal(p, ctx->data + ctx->len);
    return vc;
}

/* ---- engine key --------------------------------------------------------------------- */

static void test_key_layout(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    char space[MOOR_SPACE_MAX + 1];
    unsigned char hashed[300];

    (void)state;
    assert_int_equal(moor_buf_append(&b, "pre", 3), 0); /* appends */
    assert_int_equal(moor_record_key("users", 5, "k\0y", 3, &b), 0);
    assert_int_equal(b.len, 3 + 8 + 1 + 5 + 3);
    assert_memory_equal(b.data, "pre", 3);
    assert_int_equal((unsigned char)b.data[11], 5);
    assert_memory_equal(b.data + 12, "users", 5);
    assert_memory_equal(b.data + 17, "k\0y", 3);
    hashed[0] = 5;
    memcpy(hashed + 1, "users", 5);
    memcpy(hashed + 6, "k\0y", 3);
    assert_int_equal(moor_dec_be64(b.data + 3), moor_hash_token(hashed, 9));

    /* the space is part of the token; empty space and key are fine */
    moor_buf_reset(&b);
    assert_int_equal(moor_record_key("", 0, "", 0, &b), 0);
    assert_int_equal(b.len, 9);
    hashed[0] = 0;
    assert_int_equal(moor_dec_be64(b.data), moor_hash_token(hashed, 1));

    memset(space, 's', sizeof(space));
    moor_buf_reset(&b);
    assert_int_equal(moor_record_key(space, MOOR_SPACE_MAX, "k", 1, &b), 0);
    assert_int_equal((unsigned char)b.data[8], MOOR_SPACE_MAX);
    moor_buf_reset(&b);
    assert_int_equal(moor_record_key(space, MOOR_SPACE_MAX + 1, "k", 1, &b), MOOR_EINVAL);
    assert_int_equal(b.len, 0);
    moor_buf_free(&b);
}

/* ---- codec -------------------------------------------------------------------------- */

/* Non-canonical but valid MessagePack, as a client may send it. */
static const struct {
    const char *bytes;
    size_t len;
} odd_values[] = {
    {"\xcd\x00\x05", 3},                         /* 5 as uint16 */
    {"\xcf\x00\x00\x00\x00\x00\x00\x00\x01", 9}, /* 1 as uint64 */
    {"\xd1\x00\x07", 3},                         /* 7 as int16 */
    {"\xd0\xff", 2},                             /* -1 as int8 */
    {"\xd9\x03"
     "abc",
     5}, /* short string as str8 */
    {"\xdb\x00\x00\x00\x01"
     "x",
     6}, /* str32 */
    {"\xc6\x00\x00\x00\x02"
     "\x00\x01",
     7},                                  /* bin32 */
    {"\xdc\x00\x01\x01", 4},              /* array16 of one */
    {"\xdf\x00\x00\x00\x01\xa1k\xc0", 8}, /* map32 of one */
    {"\xca\x3f\xc0\x00\x00", 5},          /* 1.5 as float32 */
    {"\xc7\x00\x05", 3},                  /* empty ext8 */
    {"\x81\xa1z\x92\xc2\xc3", 6},         /* {z = [false, true]} */
    {"\xc0", 1},                          /* nil as a live value */
};
#define ODD_N (sizeof(odd_values) / sizeof(odd_values[0]))

static void test_values_byte_identical(void **state)
{
    stored_t s;
    stored_init(&s);
    moor_buf_t res = MOOR_BUF_INIT;

    (void)state;
    for (size_t i = 0; i < ODD_N; i++)
        apply(&s, NULL, 0, odd_values[i].bytes, odd_values[i].len, 0, "n1", 100 + i);
    assert_int_equal(s.rec.n, ODD_N);
    for (size_t i = 0; i < ODD_N; i++) {
        assert_int_equal(s.rec.sib[i].vlen, odd_values[i].len);
        assert_memory_equal(s.rec.sib[i].value, odd_values[i].bytes, odd_values[i].len);
        assert_int_equal(s.rec.sib[i].ts, 100 + i);
        assert_false(s.rec.sib[i].tombstone);
    }
    /* and out through a get result, in order */
    assert_int_equal(moor_record_get_result(&s.rec, &res), 0);
    const char *p = res.data, *end = res.data + res.len, *k;
    uint32_t n, klen;
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_int_equal(moor_mp_read_array(&p, end, &n), 0);
    assert_int_equal(n, ODD_N);
    for (size_t i = 0; i < ODD_N; i++) {
        assert_memory_equal(p, odd_values[i].bytes, odd_values[i].len);
        p += odd_values[i].len;
    }
    moor_buf_free(&res);
    stored_free(&s);
}

static void random_record(moor_record_t *r, moor_buf_t *values)
{
    moor_vclock_init(&r->vc);
    for (uint64_t k = testutil_rand(&rng) % 5; k > 0; k--) {
        char id[4] = {'n', (char)('0' + testutil_rand(&rng) % 8)};
        assert_int_equal(moor_vclock_increment(&r->vc, id, 2, testutil_rand(&rng)), 0);
    }
    /* values live in one buffer filled up front, so pointers stay put */
    moor_buf_reset(values);
    assert_int_equal(moor_buf_reserve(values, 64 * 16), 0);
    r->n = (uint32_t)(testutil_rand(&rng) % 6);
    for (uint32_t i = 0; i < r->n; i++) {
        size_t vi = testutil_rand(&rng) % ODD_N;
        r->sib[i].tombstone = testutil_rand(&rng) % 4 == 0;
        r->sib[i].ts = testutil_rand(&rng) >> (testutil_rand(&rng) % 64);
        r->sib[i].value = r->sib[i].tombstone ? NULL : values->data + values->len;
        r->sib[i].vlen = r->sib[i].tombstone ? 0 : odd_values[vi].len;
        if (!r->sib[i].tombstone)
            moor_buf_append(values, odd_values[vi].bytes, odd_values[vi].len);
    }
}

static void assert_record_equal(const moor_record_t *a, const moor_record_t *b)
{
    assert_int_equal(a->vc.n, b->vc.n);
    assert_int_equal(moor_vclock_compare(&a->vc, &b->vc), MOOR_VC_EQUAL);
    assert_int_equal(a->n, b->n);
    for (uint32_t i = 0; i < a->n; i++) {
        assert_int_equal(a->sib[i].tombstone, b->sib[i].tombstone);
        assert_int_equal(a->sib[i].ts, b->sib[i].ts);
        assert_int_equal(a->sib[i].vlen, b->sib[i].vlen);
        if (a->sib[i].vlen)
            assert_memory_equal(a->sib[i].value, b->sib[i].value, a->sib[i].vlen);
    }
}

static void test_roundtrip_random(void **state)
{
    moor_buf_t values = MOOR_BUF_INIT, enc = MOOR_BUF_INIT, enc2 = MOOR_BUF_INIT;

    (void)state;
    for (int iter = 0; iter < 3000; iter++) {
        moor_record_t r, back;
        random_record(&r, &values);
        moor_buf_reset(&enc);
        moor_buf_reset(&enc2);
        assert_int_equal(moor_record_encode(&r, &enc), 0);
        assert_int_equal(moor_record_decode(enc.data, enc.len, &back), 0);
        assert_record_equal(&r, &back);
        assert_int_equal(moor_record_encode(&back, &enc2), 0);
        assert_int_equal(enc.len, enc2.len);
        assert_memory_equal(enc.data, enc2.data, enc.len);
        assert_int_equal(moor_record_is_deleted(&back), tombstones(&back) == back.n);
    }
    moor_buf_free(&values);
    moor_buf_free(&enc);
    moor_buf_free(&enc2);
}

static void test_encode_exact_bytes(void **state)
{
    moor_record_t r;
    moor_buf_t b = MOOR_BUF_INIT;
    /* [[[bin "n", 1, 2]], [[5 as uint16, 9, false], [nil, 10, true]]] */
    static const char want[] = "\x92"
                               "\x91\x93\xc4\x01n\x01\x02"
                               "\x92"
                               "\x93\xcd\x00\x05\x09\xc2"
                               "\x93\xc0\x0a\xc3";

    (void)state;
    moor_vclock_init(&r.vc);
    assert_int_equal(moor_vclock_increment(&r.vc, "n", 1, 2), 0);
    r.n = 2;
    r.sib[0] = (moor_sibling_t){"\xcd\x00\x05", 3, 9, 0};
    r.sib[1] = (moor_sibling_t){NULL, 0, 10, 1};
    assert_int_equal(moor_record_encode(&r, &b), 0);
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.data, want, b.len);
    moor_buf_free(&b);
}

typedef void (*build_fn)(msgpack_packer *pk);

static void one_clock(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_bin_with_body(pk, "n", 1);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint64(pk, 1);
}
static void sib(msgpack_packer *pk, const char *raw, size_t n, int64_t ts, int tomb)
{
    msgpack_pack_array(pk, 3);
    moor_mp_pack_raw(pk->data, raw, n);
    msgpack_pack_int64(pk, ts);
    if (tomb)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}
static void c_not_array(msgpack_packer *pk)
{
    msgpack_pack_nil(pk);
}
static void c_arity(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    one_clock(pk);
    msgpack_pack_array(pk, 0);
    msgpack_pack_nil(pk);
}
static void c_bad_clock(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_bin_with_body(pk, "n", 1);
    msgpack_pack_uint64(pk, 0); /* counter 0 */
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_array(pk, 0);
}
static void c_sibs_not_array(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_map(pk, 0);
}
static void c_sib_arity(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 2);
    msgpack_pack_nil(pk);
    msgpack_pack_uint64(pk, 1);
}
static void c_bad_value(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 1);
    sib(pk, "\xc1", 1, 1, 0);
}
static void c_value_truncated_inside(msgpack_packer *pk) /* str8 claims 9 bytes */
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 1);
    sib(pk, "\xd9\x09", 2, 1, 0);
}
static void c_negative_ts(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 1);
    sib(pk, "\x01", 1, -1, 0);
}
static void c_tomb_not_bool(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_nil(pk);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint64(pk, 1);
}
static void c_tomb_with_value(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 1);
    sib(pk, "\x01", 1, 1, 1);
}
static void c_too_many(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, MOOR_RECORD_MAX_SIBLINGS + 1);
    for (int i = 0; i < MOOR_RECORD_MAX_SIBLINGS + 1; i++)
        sib(pk, "\x01", 1, i, 0);
}
static void c_trailing(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 0);
    msgpack_pack_nil(pk);
}

static void test_decode_rejects(void **state)
{
    static const build_fn bad[] = {c_not_array,
                                   c_arity,
                                   c_bad_clock,
                                   c_sibs_not_array,
                                   c_sib_arity,
                                   c_bad_value,
                                   c_value_truncated_inside,
                                   c_negative_ts,
                                   c_tomb_not_bool,
                                   c_tomb_with_value,
                                   c_too_many,
                                   c_trailing};
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    moor_record_t r;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        moor_buf_reset(&b);
        moor_mp_packer_init(&pk, &b);
        bad[i](&pk);
        r.n = 3;
        int rc = moor_record_decode(b.data, b.len, &r);
        if (rc != MOOR_ECORRUPT)
            fail_msg("case %zu: got %d (%s), want MOOR_ECORRUPT", i, rc, moor_err_name(rc));
        assert_int_equal(r.n, 0);
    }
    /* empty input */
    assert_int_equal(moor_record_decode("", 0, &r), MOOR_ECORRUPT);
    /* exactly MOOR_RECORD_MAX_SIBLINGS is fine */
    moor_buf_reset(&b);
    moor_mp_packer_init(&pk, &b);
    msgpack_pack_array(&pk, 2);
    one_clock(&pk);
    msgpack_pack_array(&pk, MOOR_RECORD_MAX_SIBLINGS);
    for (int i = 0; i < MOOR_RECORD_MAX_SIBLINGS; i++)
        sib(&pk, "\x01", 1, i, 0);
    assert_int_equal(moor_record_decode(b.data, b.len, &r), 0);
    assert_int_equal(r.n, MOOR_RECORD_MAX_SIBLINGS);
    moor_buf_free(&b);
}

/* A record of several siblings with a tombstone, for the damage tests. */
static void sample_record(stored_t *s)
{
    put(s, NULL, "\xa3one", "n1", 1000);
    put(s, NULL, "\xcd\x01\x00", "n2", 70000);
    del(s, NULL, "n1", 1u << 20);
    put(s, NULL, "\x92\x01\x81\xa1k\xc0", "node-three", 1700000000000ull);
}

static void test_truncations_and_corruptions(void **state)
{
    stored_t s;
    stored_init(&s);
    moor_buf_t re = MOOR_BUF_INIT, re2 = MOOR_BUF_INIT;
    size_t ok = 0;

    (void)state;
    sample_record(&s);
    size_t len = s.raw.len;
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut ? cut : 1);
        moor_record_t r;
        memcpy(copy, s.raw.data, cut);
        int rc = moor_record_decode(copy, cut, &r);
        if (rc != MOOR_ECORRUPT)
            fail_msg("cut at %zu of %zu: got %d, want MOOR_ECORRUPT", cut, len, rc);
        free(copy);
    }
    char *copy = malloc(len);
    for (size_t pos = 0; pos < len; pos++) {
        for (int v = 0; v < 256; v++) {
            moor_record_t r, r2;
            memcpy(copy, s.raw.data, len);
            copy[pos] = (char)v;
            int rc = moor_record_decode(copy, len, &r);
            if (rc == MOOR_ECORRUPT)
                continue;
            if (rc != 0)
                fail_msg("byte %zu = 0x%02x: got %d (%s)", pos, v, rc, moor_err_name(rc));
            ok++;
            for (uint32_t i = 0; i < r.n; i++) /* spans lie inside the input */
                if (!r.sib[i].tombstone)
                    assert_true(r.sib[i].value >= copy &&
                                r.sib[i].value + r.sib[i].vlen <= copy + len);
            moor_buf_reset(&re);
            moor_buf_reset(&re2);
            assert_int_equal(moor_record_encode(&r, &re), 0);
            assert_int_equal(moor_record_decode(re.data, re.len, &r2), 0);
            assert_record_equal(&r, &r2);
            assert_int_equal(moor_record_encode(&r2, &re2), 0);
            assert_int_equal(re.len, re2.len);
            assert_memory_equal(re.data, re2.data, re.len);
        }
    }
    assert_true(ok > 0);
    free(copy);
    moor_buf_free(&re);
    moor_buf_free(&re2);
    stored_free(&s);
}

/* ---- write rules -------------------------------------------------------------------- */

static void test_write_new_key(void **state)
{
    stored_t s;
    stored_init(&s);
    moor_vclock_t vc;

    (void)state;
    put(&s, NULL, "\xa1v", "n1", 500);
    assert_int_equal(s.rec.n, 1);
    assert_true(has_value(&s.rec, "\xa1v", 2));
    assert_int_equal(s.rec.sib[0].ts, 500);
    assert_int_equal(s.rec.vc.n, 1);
    assert_int_equal(s.rec.vc.e[0].counter, 1);
    assert_int_equal(s.rec.vc.e[0].ts, 500);
    assert_false(moor_record_is_deleted(&s.rec));
    vc = ctx_clock(&s.ctx);
    assert_int_equal(moor_vclock_compare(&vc, &s.rec.vc), MOOR_VC_EQUAL);
    stored_free(&s);

    /* a new key written with a ctx (say from a deleted and purged key):
     * the clock continues from the ctx */
    stored_t t;
    stored_init(&t);
    moor_buf_t ctx = MOOR_BUF_INIT;
    moor_vclock_init(&vc);
    assert_int_equal(moor_vclock_increment(&vc, "n2", 2, 1), 0);
    assert_int_equal(moor_vclock_increment(&vc, "n2", 2, 2), 0);
    assert_int_equal(moor_vclock_encode(&vc, &ctx), 0);
    put(&t, &ctx, "\x01", "n1", 600);
    assert_int_equal(t.rec.n, 1);
    assert_int_equal(t.rec.vc.n, 2);
    assert_int_equal(moor_vclock_compare(&t.rec.vc, &vc), MOOR_VC_AFTER);
    moor_buf_free(&ctx);
    stored_free(&t);
}

static void test_write_latest_ctx_replaces(void **state)
{
    stored_t s;
    stored_init(&s);
    moor_vclock_t before;

    (void)state;
    put(&s, NULL, "\x01", "n1", 10);
    put(&s, NULL, "\x02", "n1", 11); /* no ctx on an existing key: a sibling */
    assert_int_equal(s.rec.n, 2);
    before = s.rec.vc;
    moor_buf_t ctx = copy_buf(&s.ctx); /* the latest: what a get returns */
    put(&s, &ctx, "\x03", "n2", 12);
    assert_int_equal(s.rec.n, 1);
    assert_true(has_value(&s.rec, "\x03", 1));
    assert_int_equal(moor_vclock_compare(&s.rec.vc, &before), MOOR_VC_AFTER);
    moor_buf_free(&ctx);
    /* a ctx newer than the record (merged elsewhere) also replaces */
    moor_vclock_t newer = s.rec.vc;
    assert_int_equal(moor_vclock_increment(&newer, "n9", 2, 99), 0);
    ctx = (moor_buf_t)MOOR_BUF_INIT;
    assert_int_equal(moor_vclock_encode(&newer, &ctx), 0);
    put(&s, &ctx, "\x04", "n1", 13);
    assert_int_equal(s.rec.n, 1);
    assert_true(has_value(&s.rec, "\x04", 1));
    assert_int_equal(moor_vclock_compare(&s.rec.vc, &newer), MOOR_VC_AFTER);
    moor_buf_free(&ctx);
    stored_free(&s);
}

static void test_write_stale_ctx_makes_siblings(void **state)
{
    stored_t s;
    stored_init(&s);

    (void)state;
    put(&s, NULL,
        "\xa1"
        "a",
        "n1", 10);
    moor_buf_t c1 = copy_buf(&s.ctx);
    put(&s, &c1,
        "\xa1"
        "b",
        "n1", 11); /* client 1: replaces */
    assert_int_equal(s.rec.n, 1);
    moor_vclock_t after_b = s.rec.vc;
    put(&s, &c1,
        "\xa1"
        "c",
        "n2", 12); /* client 2 read before b: stale */
    assert_int_equal(s.rec.n, 2);
    assert_true(has_value(&s.rec,
                          "\xa1"
                          "b",
                          2));
    assert_true(has_value(&s.rec,
                          "\xa1"
                          "c",
                          2));
    assert_int_equal(moor_vclock_compare(&s.rec.vc, &after_b), MOOR_VC_AFTER);
    /* reading both and writing with that ctx resolves them */
    moor_buf_t c2 = copy_buf(&s.ctx);
    put(&s, &c2,
        "\xa1"
        "d",
        "n1", 13);
    assert_int_equal(s.rec.n, 1);
    assert_true(has_value(&s.rec,
                          "\xa1"
                          "d",
                          2));
    moor_buf_free(&c1);
    moor_buf_free(&c2);
    stored_free(&s);
}

static void test_write_concurrent_ctx(void **state)
{
    stored_t s;
    stored_init(&s);
    moor_vclock_t other;
    moor_buf_t ctx = MOOR_BUF_INIT;

    (void)state;
    put(&s, NULL, "\x01", "n1", 10);
    /* a ctx neither before nor after the record: n1:1 is missing, n7:1 extra */
    moor_vclock_init(&other);
    assert_int_equal(moor_vclock_increment(&other, "n7", 2, 5), 0);
    assert_int_equal(moor_vclock_encode(&other, &ctx), 0);
    moor_vclock_t cur = s.rec.vc;
    put(&s, &ctx, "\x02", "n1", 11);
    assert_int_equal(s.rec.n, 2);
    assert_int_equal(moor_vclock_compare(&s.rec.vc, &cur), MOOR_VC_AFTER);
    assert_int_equal(moor_vclock_compare(&s.rec.vc, &other), MOOR_VC_AFTER);
    moor_buf_free(&ctx);
    stored_free(&s);
}

static void test_write_no_ctx_makes_sibling(void **state)
{
    stored_t s;
    stored_init(&s);

    (void)state;
    put(&s, NULL, "\x01", "n1", 10);
    moor_vclock_t v1 = s.rec.vc;
    put(&s, NULL, "\x02", "n1", 11);
    assert_int_equal(s.rec.n, 2);
    assert_true(has_value(&s.rec, "\x01", 1) && has_value(&s.rec, "\x02", 1));
    assert_int_equal(moor_vclock_compare(&s.rec.vc, &v1), MOOR_VC_AFTER);
    assert_int_equal(s.rec.vc.e[0].counter, 2);
    stored_free(&s);
}

static void test_delete_latest_and_concurrent(void **state)
{
    stored_t s;
    stored_init(&s);
    moor_buf_t res = MOOR_BUF_INIT;

    (void)state;
    put(&s, NULL, "\x01", "n1", 10);
    put(&s, NULL, "\x02", "n1", 11);
    moor_buf_t latest = copy_buf(&s.ctx);
    del(&s, &latest, "n1", 12);
    assert_int_equal(s.rec.n, 1);
    assert_true(s.rec.sib[0].tombstone);
    assert_true(moor_record_is_deleted(&s.rec));
    assert_int_equal(moor_record_get_result(&s.rec, &res), 0);
    {
        const char *p = res.data, *end = res.data + res.len, *k;
        uint32_t n, kl;
        assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
        assert_int_equal(moor_mp_read_str(&p, end, &k, &kl), 0);
        assert_int_equal(moor_mp_read_array(&p, end, &n), 0);
        assert_int_equal(n, 0); /* tombstones are left out */
    }
    moor_buf_free(&latest);
    stored_free(&s);

    /* concurrent: a put and a delete from the same read */
    stored_t t;
    stored_init(&t);
    put(&t, NULL, "\x01", "n1", 10);
    moor_buf_t read = copy_buf(&t.ctx);
    put(&t, &read, "\x05", "n1", 11);
    del(&t, &read, "n2", 12);
    assert_int_equal(t.rec.n, 2);
    assert_int_equal(tombstones(&t.rec), 1);
    assert_true(has_value(&t.rec, "\x05", 1));
    assert_false(moor_record_is_deleted(&t.rec));
    /* delete first, then the concurrent put: the same two siblings */
    stored_t u;
    stored_init(&u);
    put(&u, NULL, "\x01", "n1", 10);
    moor_buf_t read2 = copy_buf(&u.ctx);
    del(&u, &read2, "n1", 11);
    assert_true(moor_record_is_deleted(&u.rec));
    put(&u, &read2, "\x05", "n2", 12);
    assert_int_equal(u.rec.n, 2);
    assert_int_equal(tombstones(&u.rec), 1);
    assert_false(moor_record_is_deleted(&u.rec));
    /* a put after the delete with its ctx replaces the tombstone */
    stored_t w;
    stored_init(&w);
    put(&w, NULL, "\x01", "n1", 10);
    moor_buf_t c = copy_buf(&w.ctx);
    del(&w, &c, "n1", 11);
    moor_buf_free(&c);
    c = copy_buf(&w.ctx);
    put(&w, &c, "\x07", "n1", 12);
    assert_int_equal(w.rec.n, 1);
    assert_int_equal(tombstones(&w.rec), 0);
    moor_buf_free(&c);
    moor_buf_free(&read);
    moor_buf_free(&read2);
    moor_buf_free(&res);
    stored_free(&t);
    stored_free(&u);
    stored_free(&w);
}

static void test_write_bounds(void **state)
{
    stored_t s;
    stored_init(&s);

    (void)state;
    /* siblings: blind writes past the limit drop the oldest by ts; the ts
     * go down then up so that "oldest" is not "first" */
    for (int i = 0; i < MOOR_RECORD_MAX_SIBLINGS + 10; i++) {
        char v[2] = {(char)(i & 0x7f), 0};
        uint64_t ts = i < 5 ? 1000 - (uint64_t)i : 2000 + (uint64_t)i;
        apply(&s, NULL, 0, v, 1, 0, "n1", ts);
    }
    assert_int_equal(s.rec.n, MOOR_RECORD_MAX_SIBLINGS);
    for (uint32_t i = 0; i < s.rec.n; i++) /* the 10 oldest, ts 996..1000 and 2005..2009, went */
        assert_true(s.rec.sib[i].ts >= 2010);
    assert_true(has_value(&s.rec, "\x49", 1)); /* the last write (i = 73) is there */
    stored_free(&s);

    /* clock: a chain of writes coordinated by 40 nodes keeps the newest 16 */
    stored_t t;
    stored_init(&t);
    for (int i = 0; i < 40; i++) {
        char node[8];
        snprintf(node, sizeof(node), "n%02d", i);
        moor_buf_t c = copy_buf(&t.ctx);
        put(&t, t.ctx.len ? &c : NULL, "\x01", node, 100 + (uint64_t)i);
        moor_buf_free(&c);
        assert_in_range(t.rec.vc.n, 1, MOOR_RECORD_VC_KEEP);
        assert_int_equal(t.rec.n, 1);
    }
    for (uint32_t i = 0; i < t.rec.vc.n; i++)
        assert_true(t.rec.vc.e[i].ts >= 100 + 40 - MOOR_RECORD_VC_KEEP);

    /* a forged ctx of 64 entries, concurrent with a full record */
    moor_vclock_t forged;
    moor_buf_t ctx = MOOR_BUF_INIT;
    moor_vclock_init(&forged);
    for (int i = 0; i < MOOR_VC_MAX_ENTRIES; i++) {
        char id[8];
        snprintf(id, sizeof(id), "f%02d", i);
        assert_int_equal(moor_vclock_increment(&forged, id, 3, (uint64_t)i), 0);
    }
    assert_int_equal(moor_vclock_encode(&forged, &ctx), 0);
    put(&t, &ctx, "\x02", "zz", 10000);
    assert_int_equal(t.rec.n, 2);
    assert_in_range(t.rec.vc.n, 1, MOOR_RECORD_VC_KEEP);
    moor_buf_free(&ctx);
    stored_free(&t);
}

static void test_write_errors(void **state)
{
    stored_t s;
    stored_init(&s);
    moor_buf_t out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT;
    char longid[MOOR_VC_ID_MAX + 1];

    (void)state;
    put(&s, NULL, "\x01", "n1", 10);
    assert_int_equal(moor_buf_append(&out, "keep", 4), 0);
    assert_int_equal(moor_buf_append(&nctx, "ctx", 3), 0);
    /* malformed ctx: garbage, a clock with trailing bytes, a bad clock */
    static const struct {
        const char *b;
        size_t n;
    } bad[] = {
        {"\xc1", 1}, {"\x90\x90", 2}, {"\x91\x93\xc4\x01n\x00\x01", 7}, {"x", 1}, {"\x91", 1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc =
            moor_record_write(&s.rec, bad[i].b, bad[i].n, "\x01", 1, 0, "n1", 2, 11, &out, &nctx);
        if (rc != MOOR_EBADCTX)
            fail_msg("bad ctx %zu: got %d (%s)", i, rc, moor_err_name(rc));
    }
    assert_int_equal(moor_record_write(&s.rec, NULL, 0, NULL, 0, 0, "n1", 2, 11, &out, &nctx),
                     MOOR_EINVAL);
    /* a value must be exactly one object: not two, not a truncated one */
    assert_int_equal(moor_record_write(&s.rec, NULL, 0, "\x01\x02", 2, 0, "n1", 2, 11, &out, &nctx),
                     MOOR_EINVAL);
    assert_int_equal(moor_record_write(&s.rec, NULL, 0, "\xcd\x01", 2, 0, "n1", 2, 11, &out, &nctx),
                     MOOR_EINVAL);
    assert_int_equal(moor_record_write(&s.rec, NULL, 0, "\xc1", 1, 0, "n1", 2, 11, &out, &nctx),
                     MOOR_EINVAL);
    assert_int_equal(moor_record_write(&s.rec, NULL, 0, "\x01", 1, 0, "", 0, 11, &out, &nctx),
                     MOOR_EINVAL);
    memset(longid, 'x', sizeof(longid));
    assert_int_equal(
        moor_record_write(NULL, NULL, 0, "\x01", 1, 0, longid, sizeof(longid), 11, &out, &nctx),
        MOOR_EINVAL);
    /* outputs unaltered by every failure */
    assert_int_equal(out.len, 4);
    assert_int_equal(nctx.len, 3);
    /* a tombstone ignores the value arguments */
    assert_int_equal(moor_record_write(&s.rec, NULL, 0, NULL, 0, 1, "n1", 2, 11, &out, &nctx), 0);
    assert_true(out.len > 4 && nctx.len > 3);
    moor_buf_free(&out);
    moor_buf_free(&nctx);
    stored_free(&s);
}

/* ---- get result --------------------------------------------------------------------- */

static void test_get_result(void **state)
{
    stored_t s;
    stored_init(&s);
    moor_buf_t res = MOOR_BUF_INIT;
    const char *p, *end, *k, *ctx;
    uint32_t n, klen, ctxlen;

    (void)state;
    put(&s, NULL, "\x92\xa1x\xcd\x00\x01", "n1", 10);
    del(&s, NULL, "n2", 11);
    put(&s, NULL, "\xc3", "n1", 12);
    assert_int_equal(s.rec.n, 3);
    assert_int_equal(moor_buf_append(&res, "\xff", 1), 0); /* it appends */
    assert_int_equal(moor_record_get_result(&s.rec, &res), 0);
    assert_int_equal((unsigned char)res.data[0], 0xff);
    p = res.data + 1;
    end = res.data + res.len;
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_int_equal(klen, 6);
    assert_memory_equal(k, "values", 6);
    assert_int_equal(moor_mp_read_array(&p, end, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(p, "\x92\xa1x\xcd\x00\x01", 6);
    p += 6;
    assert_memory_equal(p, "\xc3", 1);
    p += 1;
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_int_equal(klen, 3);
    assert_memory_equal(k, "ctx", 3);
    assert_int_equal(moor_mp_read_bin(&p, end, &ctx, &ctxlen), 0);
    assert_ptr_equal(p, end);
    /* the ctx is the record's clock, byte for byte what the write returned */
    assert_int_equal(ctxlen, s.ctx.len);
    assert_memory_equal(ctx, s.ctx.data, ctxlen);
    moor_vclock_t vc;
    const char *q = ctx;
    assert_int_equal(moor_vclock_decode(&q, ctx + ctxlen, &vc), 0);
    assert_int_equal(moor_vclock_compare(&vc, &s.rec.vc), MOOR_VC_EQUAL);
    moor_buf_free(&res);
    stored_free(&s);
}

/* ---- merge -------------------------------------------------------------------------- */

/* One-byte MessagePack values (positive fixints) the merge tests draw from. */
static const char small_vals[] = "\x00\x01\x02\x03\x04\x05\x06\x07";

/* Builds a record from a clock spec "id:counter:ts,..." (sorted ids) and
 * siblings (value index, or -1 for a tombstone; ts), encoded and decoded
 * back so it holds the invariants a stored record has. */
typedef struct mrec {
    moor_buf_t raw;
    moor_record_t *rec; /* heap: ~8 KiB */
} mrec_t;

static void mrec_from(mrec_t *m, const moor_record_t *r)
{
    moor_buf_init(&m->raw);
    m->rec = malloc(sizeof(*m->rec));
    assert_non_null(m->rec);
    assert_int_equal(moor_record_encode(r, &m->raw), 0);
    assert_int_equal(moor_record_decode(m->raw.data, m->raw.len, m->rec), 0);
}

static void mrec_free(mrec_t *m)
{
    moor_buf_free(&m->raw);
    free(m->rec);
}

static void clock_add(moor_vclock_t *vc, const char *id, uint64_t counter, uint64_t ts)
{
    moor_vclock_t one;
    one.n = 1;
    one.e[0].idlen = (uint8_t)strlen(id);
    memcpy(one.e[0].id, id, one.e[0].idlen);
    one.e[0].counter = counter;
    one.e[0].ts = ts;
    assert_int_equal(moor_vclock_merge(vc, &one), 0);
}

static void sib_add(moor_record_t *r, int val, uint64_t ts)
{
    moor_sibling_t *s = &r->sib[r->n++];
    s->tombstone = val < 0;
    s->value = val < 0 ? NULL : small_vals + val;
    s->vlen = val < 0 ? 0 : 1;
    s->ts = ts;
}

/* merge(a, b) into m (decoded). */
static void do_merge(const mrec_t *a, const mrec_t *b, mrec_t *m)
{
    moor_buf_init(&m->raw);
    m->rec = malloc(sizeof(*m->rec));
    assert_non_null(m->rec);
    assert_int_equal(moor_record_merge(a->rec, b->rec, &m->raw), 0);
    assert_int_equal(moor_record_decode(m->raw.data, m->raw.len, m->rec), 0);
}

static void assert_same_bytes(const mrec_t *x, const mrec_t *y)
{
    if (x->raw.len != y->raw.len || memcmp(x->raw.data, y->raw.data, x->raw.len) != 0)
        fail_msg("merge results differ: %zu bytes vs %zu bytes", x->raw.len, y->raw.len);
}

static int has_sibling(const moor_record_t *r, const moor_sibling_t *s)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (r->sib[i].ts == s->ts && r->sib[i].tombstone == s->tombstone &&
            r->sib[i].vlen == s->vlen && (!s->vlen || !memcmp(r->sib[i].value, s->value, s->vlen)))
            return 1;
    return 0;
}

static void test_merge_descendant_wins(void **state)
{
    moor_record_t r;
    mrec_t a, b, ab, ba;

    (void)state;
    moor_vclock_init(&r.vc), r.n = 0;
    clock_add(&r.vc, "n1", 1, 100);
    sib_add(&r, 1, 100);
    sib_add(&r, 2, 90);
    mrec_from(&a, &r);
    clock_add(&r.vc, "n1", 2, 200); /* n1:2 descends n1:1 */
    clock_add(&r.vc, "n2", 1, 150);
    r.n = 0;
    sib_add(&r, 3, 200);
    mrec_from(&b, &r);
    do_merge(&a, &b, &ab);
    do_merge(&b, &a, &ba);
    assert_same_bytes(&ab, &ba);
    assert_same_bytes(&ab, &b);
    assert_int_equal(ab.rec->n, 1);
    assert_true(has_value(ab.rec, "\x03", 1));
    assert_int_equal(moor_vclock_compare(&ab.rec->vc, &b.rec->vc), MOOR_VC_EQUAL);
    /* a delete that descends wins over the value, and leaves a tombstone */
    moor_vclock_init(&r.vc), r.n = 0;
    clock_add(&r.vc, "n1", 3, 300);
    clock_add(&r.vc, "n2", 1, 150);
    sib_add(&r, -1, 300);
    mrec_t d, bd;
    mrec_from(&d, &r);
    do_merge(&b, &d, &bd);
    assert_int_equal(bd.rec->n, 1);
    assert_true(bd.rec->sib[0].tombstone);
    assert_true(moor_record_is_deleted(bd.rec));
    mrec_free(&a), mrec_free(&b), mrec_free(&ab), mrec_free(&ba), mrec_free(&d), mrec_free(&bd);
}

static void test_merge_concurrent_union(void **state)
{
    moor_record_t r;
    mrec_t a, b, ab, ba, e, ae;

    (void)state;
    moor_vclock_init(&r.vc), r.n = 0;
    clock_add(&r.vc, "n1", 2, 100);
    sib_add(&r, 1, 100);
    sib_add(&r, 2, 50);
    mrec_from(&a, &r);
    moor_vclock_init(&r.vc), r.n = 0;
    clock_add(&r.vc, "n1", 1, 40);
    clock_add(&r.vc, "n2", 1, 110);
    sib_add(&r, 2, 50);   /* identical to a's: kept once */
    sib_add(&r, 2, 51);   /* same value, other ts: a sibling of its own */
    sib_add(&r, -1, 110); /* a concurrent delete */
    mrec_from(&b, &r);
    do_merge(&a, &b, &ab);
    do_merge(&b, &a, &ba);
    assert_same_bytes(&ab, &ba);
    assert_int_equal(ab.rec->n, 4);
    /* canonical order: oldest first */
    for (uint32_t i = 1; i < ab.rec->n; i++)
        assert_true(ab.rec->sib[i - 1].ts <= ab.rec->sib[i].ts);
    assert_int_equal(ab.rec->sib[0].ts, 50);
    assert_int_equal(ab.rec->sib[1].ts, 51);
    assert_int_equal(ab.rec->sib[3].ts, 110);
    assert_true(ab.rec->sib[3].tombstone);
    /* the clock is the pointwise max, descending both */
    assert_int_equal(ab.rec->vc.n, 2);
    assert_int_equal(ab.rec->vc.e[0].counter, 2);
    assert_int_equal(ab.rec->vc.e[1].counter, 1);
    assert_int_equal(moor_vclock_compare(&ab.rec->vc, &a.rec->vc), MOOR_VC_AFTER);
    assert_int_equal(moor_vclock_compare(&ab.rec->vc, &b.rec->vc), MOOR_VC_AFTER);
    assert_false(moor_record_is_deleted(ab.rec));

    /* equal clocks with different siblings (a record built by another merge
     * order): the union, and the larger entry ts */
    moor_vclock_init(&r.vc), r.n = 0;
    clock_add(&r.vc, "n1", 2, 120);
    sib_add(&r, 5, 7);
    mrec_from(&e, &r);
    do_merge(&a, &e, &ae);
    assert_int_equal(ae.rec->n, 3);
    assert_int_equal(ae.rec->vc.e[0].ts, 120);
    assert_true(has_value(ae.rec, "\x05", 1));
    mrec_free(&a), mrec_free(&b), mrec_free(&ab), mrec_free(&ba), mrec_free(&e), mrec_free(&ae);
}

static void test_merge_bounds(void **state)
{
    moor_record_t r;
    mrec_t a, b, ab, ba;
    char ids[40][16];

    (void)state;
    /* 40 + 40 concurrent siblings: the newest 64 stay */
    moor_vclock_init(&r.vc), r.n = 0;
    clock_add(&r.vc, "n1", 1, 1);
    for (int i = 0; i < 40; i++)
        sib_add(&r, i % 8, 1000 + 2 * (uint64_t)i); /* even ts */
    mrec_from(&a, &r);
    moor_vclock_init(&r.vc), r.n = 0;
    clock_add(&r.vc, "n2", 1, 1);
    for (int i = 0; i < 40; i++)
        sib_add(&r, i % 8, 1001 + 2 * (uint64_t)i); /* odd ts */
    mrec_from(&b, &r);
    do_merge(&a, &b, &ab);
    do_merge(&b, &a, &ba);
    assert_same_bytes(&ab, &ba);
    assert_int_equal(ab.rec->n, MOOR_RECORD_MAX_SIBLINGS);
    assert_int_equal(ab.rec->sib[0].ts, 1000 + 80 - MOOR_RECORD_MAX_SIBLINGS);
    assert_int_equal(ab.rec->sib[MOOR_RECORD_MAX_SIBLINGS - 1].ts, 1079);
    mrec_free(&a), mrec_free(&b), mrec_free(&ab), mrec_free(&ba);

    /* 10 + 10 distinct clock entries: pruned to the newest 16 by ts */
    for (int i = 0; i < 40; i++)
        snprintf(ids[i], sizeof(ids[i]), "%c%02d", 'a', i);
    moor_vclock_init(&r.vc), r.n = 0;
    for (int i = 0; i < 20; i += 2)
        clock_add(&r.vc, ids[i], 1, 500 + (uint64_t)i);
    sib_add(&r, 1, 1);
    mrec_from(&a, &r);
    moor_vclock_init(&r.vc), r.n = 0;
    for (int i = 1; i < 20; i += 2)
        clock_add(&r.vc, ids[i], 1, 500 + (uint64_t)i);
    sib_add(&r, 2, 2);
    mrec_from(&b, &r);
    do_merge(&a, &b, &ab);
    do_merge(&b, &a, &ba);
    assert_same_bytes(&ab, &ba);
    assert_int_equal(ab.rec->vc.n, MOOR_RECORD_VC_KEEP);
    for (uint32_t i = 0; i < ab.rec->vc.n; i++)
        assert_true(ab.rec->vc.e[i].ts >= 500 + 20 - MOOR_RECORD_VC_KEEP);
    assert_int_equal(ab.rec->n, 2);

    /* two forged full clocks (64 + 64 distinct ids) still merge */
    moor_vclock_init(&r.vc), r.n = 0;
    for (int i = 0; i < MOOR_VC_MAX_ENTRIES; i++) {
        char id[16];
        snprintf(id, sizeof(id), "x%02d", i);
        clock_add(&r.vc, id, 1, (uint64_t)i);
    }
    sib_add(&r, 3, 3);
    mrec_t f, g, fg;
    mrec_from(&f, &r);
    for (int i = 0; i < MOOR_VC_MAX_ENTRIES; i++)
        r.vc.e[i].id[0] = 'y';
    mrec_from(&g, &r);
    do_merge(&f, &g, &fg);
    assert_int_equal(fg.rec->vc.n, MOOR_RECORD_VC_KEEP);
    assert_int_equal(fg.rec->n, 1); /* same value, ts, flag: one sibling */
    mrec_free(&a), mrec_free(&b), mrec_free(&ab), mrec_free(&ba);
    mrec_free(&f), mrec_free(&g), mrec_free(&fg);
}

/* Random records over 5 node ids (so the clocks never need pruning) with
 * up to 4 siblings from a small pool (so identical siblings recur).  mode 0:
 * any clocks; 1: a chain (each clock descends or equals the previous); 2:
 * each record's clock over its own node ids (pairwise concurrent). */
static void random_merge_input(moor_record_t *r, int mode, int which, const moor_vclock_t *prev)
{
    static const char *ids[] = {"n1", "n2", "n3", "n4", "n5", "n6"};

    moor_vclock_init(&r->vc);
    r->n = 0;
    if (mode == 1 && which > 0)
        r->vc = *prev;
    for (int i = 0; i < 5; i++) {
        if (mode == 2 && i % 3 != which) /* ids n1,n4 / n2,n5 / n3 */
            continue;
        if (testutil_rand(&rng) % 2)
            clock_add(&r->vc, ids[i], 1 + testutil_rand(&rng) % 3, 1 + testutil_rand(&rng) % 3);
    }
    if (mode == 2 && r->vc.n == 0)
        clock_add(&r->vc, ids[which], 1, 1);
    for (uint32_t n = testutil_rand(&rng) % 5; n > 0; n--)
        sib_add(r, (int)(testutil_rand(&rng) % 5) - 1, 1 + testutil_rand(&rng) % 4);
}

/* What survives any grouping: the siblings of an input whose clock the
 * other two together do not cover. */
static void assert_keeps_uncovered(const mrec_t *in[3], const mrec_t *res)
{
    for (int x = 0; x < 3; x++) {
        moor_vclock_t others = in[(x + 1) % 3]->rec->vc;
        assert_int_equal(moor_vclock_merge(&others, &in[(x + 2) % 3]->rec->vc), 0);
        int ord = moor_vclock_compare(&in[x]->rec->vc, &others);
        if (ord == MOOR_VC_BEFORE || ord == MOOR_VC_EQUAL)
            continue;
        for (uint32_t i = 0; i < in[x]->rec->n; i++)
            if (!has_sibling(res->rec, &in[x]->rec->sib[i]))
                fail_msg("input %d's sibling %u (ts %llu) lost", x, i,
                         (unsigned long long)in[x]->rec->sib[i].ts);
    }
    for (uint32_t i = 0; i < res->rec->n; i++) /* nothing made up */
        assert_true(has_sibling(in[0]->rec, &res->rec->sib[i]) ||
                    has_sibling(in[1]->rec, &res->rec->sib[i]) ||
                    has_sibling(in[2]->rec, &res->rec->sib[i]));
}

static void merge_properties_once(int mode)
{
    moor_record_t r;
    mrec_t a, b, c, ab, ba, aa, abab, ab_a, ab_c, bc, a_bc;
    const mrec_t *in[3] = {&a, &b, &c};

    random_merge_input(&r, mode, 0, NULL);
    mrec_from(&a, &r);
    random_merge_input(&r, mode, 1, &a.rec->vc);
    mrec_from(&b, &r);
    random_merge_input(&r, mode, 2, &b.rec->vc);
    mrec_from(&c, &r);

    do_merge(&a, &b, &ab);
    do_merge(&b, &a, &ba);
    assert_same_bytes(&ab, &ba); /* commutative, byte for byte */
    do_merge(&a, &a, &aa);
    do_merge(&ab, &ab, &abab);
    assert_same_bytes(&abab, &ab); /* idempotent */
    mrec_t aaa;
    do_merge(&aa, &a, &aaa);
    assert_same_bytes(&aaa, &aa);
    do_merge(&ab, &a, &ab_a); /* absorbing: a result already holds its inputs */
    assert_same_bytes(&ab_a, &ab);

    do_merge(&ab, &c, &ab_c);
    do_merge(&b, &c, &bc);
    do_merge(&a, &bc, &a_bc);
    assert_int_equal(moor_vclock_compare(&ab_c.rec->vc, &a_bc.rec->vc), MOOR_VC_EQUAL);
    assert_keeps_uncovered(in, &ab_c);
    assert_keeps_uncovered(in, &a_bc);
    if (mode != 0) /* chains and disjoint clocks: exactly associative */
        assert_same_bytes(&ab_c, &a_bc);
    mrec_free(&a), mrec_free(&b), mrec_free(&c), mrec_free(&ab), mrec_free(&ba);
    mrec_free(&aa), mrec_free(&aaa), mrec_free(&abab), mrec_free(&ab_a), mrec_free(&ab_c);
    mrec_free(&bc), mrec_free(&a_bc);
}

static void test_merge_properties_random(void **state)
{
    (void)state;
    for (int iter = 0; iter < 3000; iter++)
        merge_properties_once(iter % 3);
}

/* A client's ctx is bounded entry by entry, whichever node an entry
 * names: the lone node's path and the coordinator's both go through
 * moor_record_write. */
static void test_write_bounded_ctx(void **state)
{
    const uint64_t now = 1700000000000ull;
    moor_buf_t ctx = MOOR_BUF_INIT, out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT;
    moor_vclock_t vc;

    (void)state;
    moor_vclock_init(&vc);
    assert_int_equal(moor_vclock_increment(&vc, "k1", 2, 1), 0);
    assert_int_equal(moor_vclock_increment(&vc, "k2", 2, 1), 0);
    vc.e[1].counter = UINT64_MAX;
    assert_int_equal(moor_vclock_encode(&vc, &ctx), 0);
    assert_int_equal(
        moor_record_write(NULL, ctx.data, ctx.len, "\x01", 1, 0, "k1", 2, now, &out, &nctx),
        MOOR_EBADCTX);
    assert_non_null(strstr(moor_diag_last()->msg, "node 'k2'"));
    assert_int_equal(out.len, 0);
    assert_int_equal(nctx.len, 0);
    vc.e[1].counter = now * 1000;
    ctx.len = 0;
    assert_int_equal(moor_vclock_encode(&vc, &ctx), 0);
    assert_int_equal(
        moor_record_write(NULL, ctx.data, ctx.len, "\x01", 1, 0, "k1", 2, now, &out, &nctx), 0);
    moor_buf_free(&ctx), moor_buf_free(&out), moor_buf_free(&nctx);
}

/* A value may nest MOOR_RECORD_VALUE_DEPTH deep and no deeper: its get
 * result must still fit a reply frame (found by fuzz_record: a record
 * with a 64-deep value whose get result was not valid MessagePack). */
static void test_value_depth(void **state)
{
    char v[70];
    moor_buf_t out = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT, res = MOOR_BUF_INIT;
    moor_record_t *r = malloc(sizeof(*r));
    const char *p;

    (void)state;
    assert_non_null(r);
    memset(v, 0x91, sizeof(v)); /* [[[...[nil]...]]] */
    v[MOOR_RECORD_VALUE_DEPTH] = (char)0xc0;
    assert_true(moor_record_value_ok(v, MOOR_RECORD_VALUE_DEPTH + 1));
    assert_int_equal(
        moor_record_write(NULL, NULL, 0, v, MOOR_RECORD_VALUE_DEPTH + 1, 0, "n", 1, 1, &out, &ctx),
        0);
    assert_int_equal(moor_record_decode(out.data, out.len, r), 0);
    assert_int_equal(moor_record_get_result(r, &res), 0);
    /* the reply [1, id, nil, result] nests one more: still within 64 */
    p = res.data;
    assert_int_equal(moor_mp_skip(&p, res.data + res.len, MOOR_MP_MAX_DEPTH - 1), 0);
    memset(v, 0x91, sizeof(v));
    v[MOOR_RECORD_VALUE_DEPTH + 1] = (char)0xc0;
    assert_false(moor_record_value_ok(v, MOOR_RECORD_VALUE_DEPTH + 2));
    out.len = ctx.len = 0;
    assert_int_equal(
        moor_record_write(NULL, NULL, 0, v, MOOR_RECORD_VALUE_DEPTH + 2, 0, "n", 1, 1, &out, &ctx),
        MOOR_EINVAL);
    assert_non_null(strstr(moor_diag_last()->msg, "nested at most 61"));
    moor_buf_free(&out), moor_buf_free(&ctx), moor_buf_free(&res);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_layout),
        cmocka_unit_test(test_write_bounded_ctx),
        cmocka_unit_test(test_value_depth),
        cmocka_unit_test(test_values_byte_identical),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_encode_exact_bytes),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_truncations_and_corruptions),
        cmocka_unit_test(test_write_new_key),
        cmocka_unit_test(test_write_latest_ctx_replaces),
        cmocka_unit_test(test_write_stale_ctx_makes_siblings),
        cmocka_unit_test(test_write_concurrent_ctx),
        cmocka_unit_test(test_write_no_ctx_makes_sibling),
        cmocka_unit_test(test_delete_latest_and_concurrent),
        cmocka_unit_test(test_write_bounds),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_get_result),
        cmocka_unit_test(test_merge_descendant_wins),
        cmocka_unit_test(test_merge_concurrent_union),
        cmocka_unit_test(test_merge_bounds),
        cmocka_unit_test(test_merge_properties_random),
    };

    rng = testutil_seed("test_record");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
