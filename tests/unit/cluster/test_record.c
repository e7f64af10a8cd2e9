/*
 * test_record.c -- records as dotted version vector sets: the engine key
 * layout and token; the codec (v2 round trips, exact bytes, values kept
 * byte for byte; v1 records converted on decode, deterministically, with
 * legacy dots; malformed, truncated and corrupted records refused with
 * MOOR_ECORRUPT); the write rules (a ctx removes exactly the siblings it
 * covers, the new dot is above every counter of the node, a blind write
 * never hides what it did not see, deletes, bad input, the hard cap); the
 * get result and its ctx; and merge on thousands of random records,
 * including arbitrary ones: commutative, associative and idempotent byte
 * for byte, and no sibling lost that no other input's context covers; a
 * write with the ctx of a read replaces exactly what the read saw; the
 * hard cap drops the oldest and says how many.  Expiry: the 6th sibling
 * element's exact bytes and its refusals; an expired sibling becomes the
 * tombstone at its expiry, the get result's expires_ms; and expiring
 * commutes with merge (replicas that expire at different times agree).
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
    moor_record_t *rec; /* borrows from raw */
} stored_t;

static void stored_init(stored_t *s)
{
    memset(s, 0, sizeof(*s));
    s->rec = malloc(sizeof(*s->rec));
    assert_non_null(s->rec);
}

static void stored_free(stored_t *s)
{
    moor_buf_free(&s->raw);
    moor_buf_free(&s->ctx);
    free(s->rec);
}

/* Replaces s with raw bytes (decoded). */
static void stored_set(stored_t *s, moor_buf_t raw)
{
    int rc;

    moor_buf_free(&s->raw);
    s->raw = raw;
    rc = moor_record_decode(s->raw.data, s->raw.len, s->rec);
    if (rc)
        fail_msg("decode of a written record: %d (%s)", rc, moor_diag_msg(rc));
}

/* Applies a write to *s (NULL record if s->raw is empty) and decodes the
 * result back into s. */
static void apply(stored_t *s, const char *ctx, size_t ctxlen, const char *value, size_t vlen,
                  int tombstone, const char *node, uint64_t now)
{
    moor_buf_t out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT;
    uint32_t nsib = 0;
    int rc = moor_record_write(s->raw.len ? s->rec : NULL, ctx, ctxlen, value, vlen, tombstone,
                               node, strlen(node), now, 0, NULL, &out, &nctx, &nsib);

    if (rc)
        fail_msg("write: %d (%s): %s", rc, moor_err_name(rc), moor_diag_msg(rc));
    moor_buf_free(&s->ctx);
    s->ctx = nctx;
    stored_set(s, out);
    assert_int_equal(nsib, s->rec->n);
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

static int same_sibling(const moor_sibling_t *x, const moor_sibling_t *y)
{
    return x->dot_idlen == y->dot_idlen && !memcmp(x->dot_id, y->dot_id, x->dot_idlen) &&
           x->dot_counter == y->dot_counter && x->ts == y->ts && x->tombstone == y->tombstone &&
           x->exp == y->exp && x->vlen == y->vlen &&
           (!x->vlen || !memcmp(x->value, y->value, x->vlen));
}

static int has_sibling(const moor_record_t *r, const moor_sibling_t *s)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (same_sibling(&r->sib[i], s))
            return 1;
    return 0;
}

static int covers(const moor_vclock_t *vc, const moor_sibling_t *s)
{
    return s->dot_counter <= moor_vclock_get(vc, s->dot_id, s->dot_idlen);
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
    /* blind writes by one node: one sibling each, dots in write order */
    for (size_t i = 0; i < ODD_N; i++)
        apply(&s, NULL, 0, odd_values[i].bytes, odd_values[i].len, 0, "n1", 100 + i);
    assert_int_equal(s.rec->n, ODD_N);
    for (size_t i = 0; i < ODD_N; i++) {
        assert_int_equal(s.rec->sib[i].vlen, odd_values[i].len);
        assert_memory_equal(s.rec->sib[i].value, odd_values[i].bytes, odd_values[i].len);
        assert_int_equal(s.rec->sib[i].ts, 100 + i);
        assert_int_equal(s.rec->sib[i].dot_counter, (100 + i) * 1000);
        assert_false(s.rec->sib[i].tombstone);
    }
    assert_int_equal(s.rec->vc.n, 0); /* blind writes fold nothing into C */
    /* and out through a get result, in order */
    assert_int_equal(moor_record_get_result(s.rec, &res), 0);
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

static const char *const ids[] = {"a", "b", "c", "ab", "\0"};
#define NIDS 5

/* A random record over a small space of ids, counters, times and values,
 * so that merges meet equal dots, equal siblings and covered dots often;
 * any combination is allowed, however no write could make it (same dot
 * with other content, a dot covered by the record's own context...). */
static void random_record(moor_record_t *r, moor_buf_t *values, uint32_t maxsib)
{
    moor_vclock_init(&r->vc);
    for (uint64_t k = testutil_rand(&rng) % 5; k > 0; k--) {
        const char *id = ids[testutil_rand(&rng) % NIDS];
        assert_int_equal(moor_vclock_raise(&r->vc, id, id[0] ? strlen(id) : 1,
                                           1 + testutil_rand(&rng) % 6, testutil_rand(&rng) % 4),
                         0);
    }
    /* values live in one buffer filled up front, so pointers stay put */
    moor_buf_reset(values);
    assert_int_equal(moor_buf_reserve(values, 16 * (maxsib + 1)), 0);
    r->n = (uint32_t)(testutil_rand(&rng) % (maxsib + 1));
    for (uint32_t i = 0; i < r->n; i++) {
        moor_sibling_t *s = &r->sib[i];
        const char *id = ids[testutil_rand(&rng) % NIDS];
        size_t vi = testutil_rand(&rng) % 3;
        s->dot_id = id;
        s->dot_idlen = (uint8_t)(id[0] ? strlen(id) : 1);
        s->dot_counter = 1 + testutil_rand(&rng) % 6;
        s->tombstone = testutil_rand(&rng) % 4 == 0;
        s->ts = testutil_rand(&rng) % 3;
        s->value = s->tombstone ? NULL : values->data + values->len;
        s->vlen = s->tombstone ? 0 : odd_values[vi].len;
        if (!s->tombstone)
            moor_buf_append(values, odd_values[vi].bytes, odd_values[vi].len);
        s->exp = !s->tombstone && testutil_rand(&rng) % 3 == 0 ? 1 + testutil_rand(&rng) % 4 : 0;
    }
}

static void assert_record_equal(const moor_record_t *a, const moor_record_t *b)
{
    assert_int_equal(a->vc.n, b->vc.n);
    assert_int_equal(moor_vclock_compare(&a->vc, &b->vc), MOOR_VC_EQUAL);
    assert_int_equal(a->n, b->n);
    for (uint32_t i = 0; i < a->n; i++)
        assert_true(same_sibling(&a->sib[i], &b->sib[i]));
}

static void test_roundtrip_random(void **state)
{
    moor_buf_t values = MOOR_BUF_INIT, enc = MOOR_BUF_INIT, enc2 = MOOR_BUF_INIT;
    moor_record_t *r = malloc(sizeof(*r)), *back = malloc(sizeof(*back));

    (void)state;
    for (int iter = 0; iter < 3000; iter++) {
        random_record(r, &values, 6);
        moor_buf_reset(&enc);
        moor_buf_reset(&enc2);
        assert_int_equal(moor_record_encode(r, &enc), 0);
        assert_int_equal(moor_record_decode(enc.data, enc.len, back), 0);
        assert_record_equal(r, back);
        assert_int_equal(moor_record_encode(back, &enc2), 0);
        assert_int_equal(enc.len, enc2.len);
        assert_memory_equal(enc.data, enc2.data, enc.len);
        assert_int_equal(moor_record_is_deleted(back), tombstones(back) == back->n);
    }
    free(r), free(back);
    moor_buf_free(&values);
    moor_buf_free(&enc);
    moor_buf_free(&enc2);
}

static void test_encode_exact_bytes(void **state)
{
    moor_record_t *r = malloc(sizeof(*r));
    moor_buf_t b = MOOR_BUF_INIT;
    /* [2, [[bin "n", 1, 2]], [[bin "n", 7, 5 as uint16, 9, false],
     *                         [bin "m", 300, nil, 10, true]]] */
    static const char want[] = "\x93\x02"
                               "\x91\x93\xc4\x01n\x01\x02"
                               "\x92"
                               "\x95\xc4\x01n\x07\xcd\x00\x05\x09\xc2"
                               "\x95\xc4\x01m\xcd\x01\x2c\xc0\x0a\xc3";

    (void)state;
    moor_vclock_init(&r->vc);
    assert_int_equal(moor_vclock_increment(&r->vc, "n", 1, 2), 0);
    r->n = 2;
    r->sib[0] = (moor_sibling_t){"\xcd\x00\x05", 3, 9, 0, "n", 1, 7, 0};
    r->sib[1] = (moor_sibling_t){NULL, 0, 10, 1, "m", 1, 300, 0};
    assert_int_equal(moor_record_encode(r, &b), 0);
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.data, want, b.len);
    moor_buf_free(&b);
    free(r);
}

/* v1 bytes: [[["n", 3, 50]], [[5, 9, false], [nil, 0, true], [7, 9, false]]] */
static const char v1_bytes[] = "\x92"
                               "\x91\x93\xc4\x01n\x03\x32"
                               "\x93"
                               "\x93\x05\x09\xc2"
                               "\x93\xc0\x00\xc3"
                               "\x93\x07\x09\xc2";

/* A record in the format before DVV decodes with legacy dots, the same on
 * every decode; merged with itself or another converted record nothing is
 * lost; a write with the ctx read from it replaces them; what is written
 * is v2. */
static void test_legacy_v1(void **state)
{
    stored_t s, t;
    moor_record_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    moor_buf_t m = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    moor_vclock_t vc;

    (void)state;
    assert_int_equal(moor_record_decode(v1_bytes, sizeof(v1_bytes) - 1, a), 0);
    assert_int_equal(a->n, 3);
    assert_int_equal(a->vc.n, 1);
    assert_int_equal(moor_vclock_get(&a->vc, "n", 1), 3);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(a->sib[i].dot_idlen, 1);
        assert_int_equal(a->sib[i].dot_id[0], 0);
        assert_int_equal(a->sib[i].dot_counter, a->sib[i].ts ? a->sib[i].ts * 1000 : 1);
    }
    assert_int_equal(a->sib[0].ts, 9);
    assert_int_equal(a->sib[1].dot_counter, 1); /* ts 0 */
    assert_true(a->sib[1].tombstone);
    assert_int_equal(moor_record_decode(v1_bytes, sizeof(v1_bytes) - 1, b), 0);
    assert_record_equal(a, b); /* deterministic: every replica converts alike */

    /* merged with itself: canonical v2, every sibling kept, twice the same */
    assert_int_equal(moor_record_merge(a, b, &m), 0);
    assert_int_equal((unsigned char)m.data[0], 0x93);
    assert_int_equal(m.data[1], 2);
    stored_init(&s);
    stored_set(&s, m);
    assert_int_equal(s.rec->n, 3);
    /* [5, 9] and [7, 9] share the dot ("\0", 9000) with other values:
     * both survive (the legacy id is in no v1 clock) */
    assert_true(has_value(s.rec, "\x05", 1) && has_value(s.rec, "\x07", 1));

    /* the ctx of a get carries the legacy entry; a write with it replaces
     * all three converted siblings */
    assert_int_equal(moor_record_ctx(a, &ctx), 0);
    vc = ctx_clock(&ctx);
    assert_int_equal(moor_vclock_get(&vc, "\0", 1), 9000);
    assert_int_equal(moor_vclock_get(&vc, "n", 1), 3);
    stored_init(&t);
    assert_int_equal(moor_buf_append(&t.raw, v1_bytes, sizeof(v1_bytes) - 1), 0);
    assert_int_equal(moor_record_decode(t.raw.data, t.raw.len, t.rec), 0);
    put(&t, &ctx, "\x2a", "n", 100);
    assert_int_equal(t.rec->n, 1);
    assert_true(has_value(t.rec, "\x2a", 1));
    assert_int_equal(t.raw.data[1], 2); /* v2 */
    /* a blind write on the converted record keeps them all */
    stored_t u;
    stored_init(&u);
    assert_int_equal(moor_buf_append(&u.raw, v1_bytes, sizeof(v1_bytes) - 1), 0);
    assert_int_equal(moor_record_decode(u.raw.data, u.raw.len, u.rec), 0);
    put(&u, NULL, "\x2b", "n", 100);
    assert_int_equal(u.rec->n, 4);
    /* the new dot is above the old clock's entry of the same node */
    for (uint32_t i = 0; i < u.rec->n; i++)
        if (u.rec->sib[i].dot_id[0] == 'n')
            assert_true(u.rec->sib[i].dot_counter > 3);
    stored_free(&s), stored_free(&t), stored_free(&u);
    moor_buf_free(&ctx);
    free(a), free(b);
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

static void head2(msgpack_packer *pk, uint32_t nsib)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint8(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, nsib);
}

static void sib2(msgpack_packer *pk, const char *id, size_t idlen, uint64_t ctr)
{
    msgpack_pack_array(pk, 5);
    msgpack_pack_bin_with_body(pk, id, idlen);
    msgpack_pack_uint64(pk, ctr);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint64(pk, 5);
    msgpack_pack_false(pk);
}

static void c_not_array(msgpack_packer *pk) { msgpack_pack_uint8(pk, 2); }
static void c_arity(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 0);
    msgpack_pack_nil(pk);
}
static void c_version(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint8(pk, 3);
    one_clock(pk);
    msgpack_pack_array(pk, 0);
}
static void c_bad_clock(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint8(pk, 2);
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_bin_with_body(pk, "n", 1);
    msgpack_pack_uint64(pk, 0); /* zero counter */
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_array(pk, 0);
}
static void c_sib_arity(msgpack_packer *pk)
{
    head2(pk, 1);
    msgpack_pack_array(pk, 3); /* a v1 sibling in a v2 record */
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint64(pk, 5);
    msgpack_pack_false(pk);
}
static void c_empty_dot_id(msgpack_packer *pk)
{
    head2(pk, 1);
    sib2(pk, "", 0, 1);
}
static void c_long_dot_id(msgpack_packer *pk)
{
    char id[MOOR_VC_ID_MAX + 1];
    memset(id, 'i', sizeof(id));
    head2(pk, 1);
    sib2(pk, id, sizeof(id), 1);
}
static void c_zero_dot(msgpack_packer *pk)
{
    head2(pk, 1);
    sib2(pk, "n", 1, 0);
}
static void c_dot_id_str(msgpack_packer *pk)
{
    head2(pk, 1);
    msgpack_pack_array(pk, 5);
    msgpack_pack_str_with_body(pk, "n", 1);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint64(pk, 5);
    msgpack_pack_false(pk);
}
static void c_tomb_with_value(msgpack_packer *pk)
{
    head2(pk, 1);
    msgpack_pack_array(pk, 5);
    msgpack_pack_bin_with_body(pk, "n", 1);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint64(pk, 5);
    msgpack_pack_true(pk);
}
static void c_too_many(msgpack_packer *pk)
{
    head2(pk, MOOR_RECORD_MAX_SIBLINGS + 1);
    for (uint64_t i = 0; i < MOOR_RECORD_MAX_SIBLINGS + 1; i++)
        sib2(pk, "n", 1, i + 1);
}
static void c_trailing(msgpack_packer *pk)
{
    head2(pk, 0);
    msgpack_pack_nil(pk);
}
static void c_v1_bad_sib(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_int64(pk, -5); /* negative ts */
    msgpack_pack_false(pk);
}
static void c_v1_too_many(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    one_clock(pk);
    msgpack_pack_array(pk, MOOR_RECORD_MAX_SIBLINGS + 1);
    for (int i = 0; i < MOOR_RECORD_MAX_SIBLINGS + 1; i++) {
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint8(pk, 1);
        msgpack_pack_uint64(pk, 5);
        msgpack_pack_false(pk);
    }
}

static void test_decode_rejects(void **state)
{
    static const build_fn bad[] = {c_not_array,    c_arity,        c_version,   c_bad_clock,
                                   c_sib_arity,    c_empty_dot_id, c_long_dot_id, c_zero_dot,
                                   c_dot_id_str,   c_tomb_with_value, c_too_many, c_trailing,
                                   c_v1_bad_sib,   c_v1_too_many};
    moor_record_t *r = malloc(sizeof(*r));
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        moor_buf_reset(&b);
        moor_mp_packer_init(&pk, &b);
        bad[i](&pk);
        r->n = 7;
        int rc = moor_record_decode(b.data, b.len, r);
        if (rc != MOOR_ECORRUPT)
            fail_msg("case %zu: decode gave %d", i, rc);
        assert_int_equal(r->n, 0);
        assert_int_equal(r->vc.n, 0);
    }
    assert_int_equal(moor_record_decode("", 0, r), MOOR_ECORRUPT);
    /* exactly MOOR_RECORD_MAX_SIBLINGS is fine, in both formats */
    moor_buf_reset(&b);
    moor_mp_packer_init(&pk, &b);
    head2(&pk, MOOR_RECORD_MAX_SIBLINGS);
    for (uint64_t i = 0; i < MOOR_RECORD_MAX_SIBLINGS; i++)
        sib2(&pk, "n", 1, i + 1);
    assert_int_equal(moor_record_decode(b.data, b.len, r), 0);
    assert_int_equal(r->n, MOOR_RECORD_MAX_SIBLINGS);
    /* the legacy id is a valid dot id */
    moor_buf_reset(&b);
    moor_mp_packer_init(&pk, &b);
    head2(&pk, 1);
    sib2(&pk, "\0", 1, 1);
    assert_int_equal(moor_record_decode(b.data, b.len, r), 0);
    moor_buf_free(&b);
    free(r);
}

/* Every strict prefix of a valid record (both formats) is refused; a
 * flipped byte is refused or gives a record that round-trips. */
static void test_truncations_and_corruptions(void **state)
{
    stored_t s;
    moor_record_t *r = malloc(sizeof(*r)), *r2 = malloc(sizeof(*r2));
    moor_buf_t inputs[2] = {MOOR_BUF_INIT, MOOR_BUF_INIT};

    (void)state;
    stored_init(&s);
    put(&s, NULL, "\xa3" "abc", "n1", 10);
    put(&s, NULL, "\x92\x01\x02", "n2", 11);
    del(&s, &s.ctx, "n1", 12);
    put(&s, NULL, "\x05", "n3", 13);
    inputs[0] = copy_buf(&s.raw);
    assert_int_equal(moor_buf_append(&inputs[1], v1_bytes, sizeof(v1_bytes) - 1), 0);
    for (int k = 0; k < 2; k++) {
        const moor_buf_t *in = &inputs[k];
        char *copy = malloc(in->len);
        for (size_t cut = 0; cut < in->len; cut++) {
            memcpy(copy, in->data, cut);
            assert_int_equal(moor_record_decode(copy, cut, r), MOOR_ECORRUPT);
        }
        for (size_t i = 0; i < in->len; i++)
            for (int bit = 0; bit < 8; bit++) {
                moor_buf_t re = MOOR_BUF_INIT, re2 = MOOR_BUF_INIT;
                memcpy(copy, in->data, in->len);
                copy[i] ^= (char)(1 << bit);
                if (moor_record_decode(copy, in->len, r))
                    continue;
                assert_int_equal(moor_record_encode(r, &re), 0);
                assert_int_equal(moor_record_decode(re.data, re.len, r2), 0);
                assert_int_equal(moor_record_encode(r2, &re2), 0);
                assert_int_equal(re.len, re2.len);
                assert_memory_equal(re.data, re2.data, re.len);
                moor_buf_free(&re), moor_buf_free(&re2);
            }
        free(copy);
        moor_buf_free(&inputs[k]);
    }
    stored_free(&s);
    free(r), free(r2);
}

/* ---- writes ------------------------------------------------------------------------- */

static void test_write_rules(void **state)
{
    stored_t s;
    moor_buf_t c1, c2;
    moor_vclock_t vc;

    (void)state;
    stored_init(&s);
    /* a new key: one sibling with the dot (n1, now * 1000), empty C; the
     * ctx is the dot */
    put(&s, NULL, "\x01", "n1", 10);
    assert_int_equal(s.rec->n, 1);
    assert_int_equal(s.rec->vc.n, 0);
    assert_memory_equal(s.rec->sib[0].dot_id, "n1", 2);
    assert_int_equal(s.rec->sib[0].dot_counter, 10000);
    vc = ctx_clock(&s.ctx);
    assert_int_equal(vc.n, 1);
    assert_int_equal(moor_vclock_get(&vc, "n1", 2), 10000);
    assert_int_equal(vc.e[0].ts, 10);
    c1 = copy_buf(&s.ctx);

    /* the latest ctx replaces; C becomes the ctx */
    put(&s, &c1, "\x02", "n2", 11);
    assert_int_equal(s.rec->n, 1);
    assert_true(has_value(s.rec, "\x02", 1));
    assert_int_equal(moor_vclock_get(&s.rec->vc, "n1", 2), 10000);
    c2 = copy_buf(&s.ctx);

    /* a stale ctx (c1) keeps the sibling it did not see */
    put(&s, &c1, "\x03", "n1", 12);
    assert_int_equal(s.rec->n, 2);
    assert_true(has_value(s.rec, "\x02", 1) && has_value(s.rec, "\x03", 1));
    /* the node's new dot is above its own earlier counter (12000 > 10000) */
    /* the ctx of the two-sibling record replaces both */
    moor_buf_t c3 = copy_buf(&s.ctx);
    put(&s, &c3, "\x04", "n3", 13);
    assert_int_equal(s.rec->n, 1);
    assert_true(has_value(s.rec, "\x04", 1));

    /* a blind write adds; a delete with the ctx leaves one tombstone */
    put(&s, NULL, "\x05", "n3", 14);
    assert_int_equal(s.rec->n, 2);
    moor_buf_t c4 = copy_buf(&s.ctx);
    del(&s, &c4, "n2", 15);
    assert_int_equal(s.rec->n, 1);
    assert_true(moor_record_is_deleted(s.rec));
    /* a concurrent put (stale ctx) and the delete: both kept, not deleted */
    put(&s, &c3, "\x06", "n1", 16);
    assert_false(moor_record_is_deleted(s.rec));
    assert_int_equal(s.rec->n, 2);
    assert_int_equal(tombstones(s.rec), 1);

    /* the same node writing twice in the same ms: distinct, rising dots */
    stored_t t;
    stored_init(&t);
    put(&t, NULL, "\x01", "n1", 10);
    put(&t, NULL, "\x02", "n1", 10);
    assert_int_equal(t.rec->n, 2);
    assert_int_equal(t.rec->sib[0].dot_counter, 10000);
    assert_int_equal(t.rec->sib[1].dot_counter, 10001);
    stored_free(&t);
    moor_buf_free(&c1), moor_buf_free(&c2), moor_buf_free(&c3), moor_buf_free(&c4);
    stored_free(&s);
}

/* A node whose local record lost one of its own writes (a crash lost
 * unsynced data) must not hide that write when it writes again: its dot
 * is not in C, so a merge with a replica that holds it keeps both. */
static void test_write_never_hides_unseen(void **state)
{
    stored_t a, b;
    moor_buf_t m = MOOR_BUF_INIT, c0;
    moor_record_t *r = malloc(sizeof(*r));

    (void)state;
    stored_init(&a);
    put(&a, NULL, "\x01", "x", 10); /* dot (x, 10000) */
    c0 = copy_buf(&a.ctx);
    stored_init(&b);
    put(&b, &c0, "\x02", "x", 20); /* x's write, only on replica b */
    /* x restarts with replica a's record (without (x, 20000)) and writes
     * blind: the floor is its HLC; here a lower counter than b's dot is
     * possible only if the HLC was lost too, which the coordinator's
     * persisted HLC prevents -- so take a counter above both */
    moor_buf_t out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT;
    assert_int_equal(moor_record_write(a.rec, NULL, 0, "\x03", 1, 0, "x", 1, 30, 30001, NULL,
                                       &out, &nctx, NULL),
                     0);
    stored_set(&a, out);
    assert_int_equal(moor_vclock_get(&a.rec->vc, "x", 1), 0); /* the dot is not folded in */
    assert_int_equal(moor_record_merge(a.rec, b.rec, &m), 0);
    assert_int_equal(moor_record_decode(m.data, m.len, r), 0);
    /* b's write (20000) is not covered by a's empty C: it survives beside
     * a's two; b's C covers (x, 10000), so that one goes */
    assert_int_equal(r->n, 2);
    assert_true(has_value(r, "\x02", 1) && has_value(r, "\x03", 1));
    moor_buf_free(&m), moor_buf_free(&nctx), moor_buf_free(&c0);
    stored_free(&a), stored_free(&b);
    free(r);
}

static void test_write_errors(void **state)
{
    stored_t s;
    moor_buf_t out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT;
    char longid[MOOR_VC_ID_MAX + 1];
    static const struct {
        const char *b;
        size_t n;
    } bad[] = {
        {"\x01", 1},                       /* not an array */
        {"\x91\x93\xc4\x01n\x00\x01", 7}, /* zero counter */
        {"\x90\xc0", 2},                   /* trailing bytes */
    };

    (void)state;
    stored_init(&s);
    put(&s, NULL, "\x01", "n1", 10);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(moor_record_write(s.rec, bad[i].b, bad[i].n, "\x01", 1, 0, "n1", 2, 11, 0,
                                           NULL, &out, &nctx, NULL),
                         MOOR_EBADCTX);
    assert_int_equal(moor_record_write(s.rec, NULL, 0, NULL, 0, 0, "n1", 2, 11, 0, NULL, &out,
                                       &nctx, NULL),
                     MOOR_EINVAL);
    assert_int_equal(moor_record_write(s.rec, NULL, 0, "\x01\x02", 2, 0, "n1", 2, 11, 0, NULL,
                                       &out, &nctx, NULL),
                     MOOR_EINVAL);
    assert_int_equal(moor_record_write(s.rec, NULL, 0, "\x01", 1, 0, "", 0, 11, 0, NULL, &out,
                                       &nctx, NULL),
                     MOOR_EINVAL);
    memset(longid, 'x', sizeof(longid));
    assert_int_equal(moor_record_write(NULL, NULL, 0, "\x01", 1, 0, longid, sizeof(longid), 11, 0,
                                       NULL, &out, &nctx, NULL),
                     MOOR_EINVAL);
    /* the legacy id is no node's */
    assert_int_equal(moor_record_write(NULL, NULL, 0, "\x01", 1, 0, "\0", 1, 11, 0, NULL, &out,
                                       &nctx, NULL),
                     MOOR_EINVAL);
    /* a counter not above the floor (n1's dot 10000) */
    assert_int_equal(moor_record_write(s.rec, NULL, 0, "\x01", 1, 0, "n1", 2, 11, 10000, NULL,
                                       &out, &nctx, NULL),
                     MOOR_EINVAL);
    uint64_t floor = 0;
    assert_int_equal(moor_record_write_floor(s.rec, NULL, 0, "n1", 2, 11, &floor), 0);
    assert_int_equal(floor, 10000);
    assert_int_equal(moor_record_write_floor(s.rec, NULL, 0, "n2", 2, 11, &floor), 0);
    assert_int_equal(floor, 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(nctx.len, 0);
    stored_free(&s);
}

/* A record at the hard cap takes no blind write (nothing stored); a write
 * whose ctx covers siblings still goes. */
static void test_write_hard_cap(void **state)
{
    moor_record_t *r = malloc(sizeof(*r));
    moor_buf_t out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    moor_vclock_t vc;
    uint32_t nsib = 0;

    (void)state;
    moor_vclock_init(&r->vc);
    r->n = MOOR_RECORD_MAX_SIBLINGS;
    for (uint32_t i = 0; i < r->n; i++)
        r->sib[i] = (moor_sibling_t){"\x01", 1, i, 0, "w", 1, i + 1, 0};
    assert_int_equal(moor_record_write(r, NULL, 0, "\x02", 1, 0, "n", 1, 1000, 0, NULL, &out,
                                       &nctx, NULL),
                     MOOR_ETOOMANYSIBS);
    assert_int_equal(out.len, 0);
    moor_vclock_init(&vc);
    assert_int_equal(moor_vclock_raise(&vc, "w", 1, 10, 1), 0);
    assert_int_equal(moor_vclock_encode(&vc, &ctx), 0);
    assert_int_equal(moor_record_write(r, ctx.data, ctx.len, "\x02", 1, 0, "n", 1, 1000, 0, NULL,
                                       &out, &nctx, &nsib),
                     0);
    assert_int_equal(nsib, MOOR_RECORD_MAX_SIBLINGS - 10 + 1);
    moor_buf_free(&out), moor_buf_free(&nctx), moor_buf_free(&ctx);
    free(r);
}

static void test_get_result(void **state)
{
    stored_t s;
    moor_buf_t res = MOOR_BUF_INIT;
    const char *p, *end, *k, *ctx;
    uint32_t n, klen, clen;

    (void)state;
    stored_init(&s);
    put(&s, NULL, "\x01", "n1", 10);
    moor_buf_t c1 = copy_buf(&s.ctx);
    put(&s, &c1, "\x02", "n2", 11);
    put(&s, &c1, "\x03", "n3", 12);
    del(&s, NULL, "n1", 13);
    assert_int_equal(s.rec->n, 3);
    assert_int_equal(moor_record_get_result(s.rec, &res), 0);
    p = res.data;
    end = res.data + res.len;
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_memory_equal(k, "values", 6);
    assert_int_equal(moor_mp_read_array(&p, end, &n), 0);
    assert_int_equal(n, 2); /* the tombstone is left out */
    assert_memory_equal(p, "\x02\x03", 2);
    p += 2;
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_memory_equal(k, "ctx", 3);
    assert_int_equal(moor_mp_read_bin(&p, end, &ctx, &clen), 0);
    assert_ptr_equal(p, end);
    /* the ctx: C (n1 10000) max the dots (n2 11000, n3 12000, n1 13000) */
    moor_buf_t cb = MOOR_BUF_INIT;
    assert_int_equal(moor_buf_append(&cb, ctx, clen), 0);
    moor_vclock_t vc = ctx_clock(&cb);
    assert_int_equal(vc.n, 3);
    assert_int_equal(moor_vclock_get(&vc, "n1", 2), 13000);
    assert_int_equal(moor_vclock_get(&vc, "n2", 2), 11000);
    assert_int_equal(moor_vclock_get(&vc, "n3", 2), 12000);
    /* the same bytes as the write's own ctx */
    assert_int_equal(cb.len, s.ctx.len);
    assert_memory_equal(cb.data, s.ctx.data, cb.len);
    moor_buf_free(&cb), moor_buf_free(&res), moor_buf_free(&c1);
    stored_free(&s);
}

/* ---- merge -------------------------------------------------------------------------- */

/* An owned record: encoding and the decoded form borrowing from it. */
typedef struct mrec {
    moor_buf_t raw;
    moor_record_t *rec;
} mrec_t;

static void mrec_init(mrec_t *m)
{
    memset(m, 0, sizeof(*m));
    m->rec = malloc(sizeof(*m->rec));
    assert_non_null(m->rec);
}

static void mrec_from(mrec_t *m, const moor_record_t *r)
{
    moor_buf_reset(&m->raw);
    assert_int_equal(moor_record_encode(r, &m->raw), 0);
    assert_int_equal(moor_record_decode(m->raw.data, m->raw.len, m->rec), 0);
}

static void mrec_free(mrec_t *m)
{
    moor_buf_free(&m->raw);
    free(m->rec);
}

static void do_merge(const mrec_t *a, const mrec_t *b, mrec_t *m)
{
    moor_buf_t out = MOOR_BUF_INIT;
    assert_int_equal(moor_record_merge(a->rec, b->rec, &out), 0);
    moor_buf_free(&m->raw);
    m->raw = out;
    assert_int_equal(moor_record_decode(m->raw.data, m->raw.len, m->rec), 0);
}

static void assert_same_bytes(const mrec_t *x, const mrec_t *y)
{
    assert_int_equal(x->raw.len, y->raw.len);
    assert_memory_equal(x->raw.data, y->raw.data, x->raw.len);
}

/* Every sibling of an input whose dot no other input's context covers is
 * in the result. */
static void assert_keeps_uncovered(const mrec_t *const *in, int n, const mrec_t *res)
{
    for (int i = 0; i < n; i++)
        for (uint32_t k = 0; k < in[i]->rec->n; k++) {
            const moor_sibling_t *s = &in[i]->rec->sib[k];
            int cov = 0;
            for (int j = 0; j < n; j++)
                cov |= j != i && covers(&in[j]->rec->vc, s);
            if (!cov && !has_sibling(res->rec, s))
                fail_msg("an uncovered sibling was lost");
        }
}

/* The three laws on random records (arbitrary ones: any dots, contexts,
 * duplicates), byte for byte. */
static void test_merge_laws_random(void **state)
{
    moor_buf_t vals[3] = {MOOR_BUF_INIT, MOOR_BUF_INIT, MOOR_BUF_INIT};
    mrec_t x[3], ab, ba, bc, ab_c, a_bc, aa, ab_b, abc3;
    moor_record_t *r = malloc(sizeof(*r));

    (void)state;
    for (int i = 0; i < 3; i++)
        mrec_init(&x[i]);
    mrec_init(&ab), mrec_init(&ba), mrec_init(&bc), mrec_init(&ab_c), mrec_init(&a_bc);
    mrec_init(&aa), mrec_init(&ab_b), mrec_init(&abc3);
    for (int iter = 0; iter < 5000; iter++) {
        for (int i = 0; i < 3; i++) {
            random_record(r, &vals[i], 6);
            mrec_from(&x[i], r); /* copies the values into x[i].raw */
        }
        /* the inputs as stored may be in any order: merging one with itself
         * is the canonical form, and idempotent from there */
        do_merge(&x[0], &x[0], &aa);
        do_merge(&aa, &aa, &ab);
        assert_same_bytes(&aa, &ab);
        do_merge(&x[0], &x[1], &ab);
        do_merge(&x[1], &x[0], &ba);
        assert_same_bytes(&ab, &ba); /* commutative */
        do_merge(&x[1], &x[2], &bc);
        do_merge(&ab, &x[2], &ab_c);
        do_merge(&x[0], &bc, &a_bc);
        assert_same_bytes(&ab_c, &a_bc); /* associative */
        do_merge(&ab, &x[1], &ab_b);
        assert_same_bytes(&ab, &ab_b); /* absorbs what it merged */
        do_merge(&ab_c, &ab_c, &abc3);
        assert_same_bytes(&ab_c, &abc3); /* idempotent */
        const mrec_t *in[3] = {&x[0], &x[1], &x[2]};
        assert_keeps_uncovered(in, 3, &ab_c);
        /* the context is the pointwise max of the inputs' */
        moor_vclock_t vc = x[0].rec->vc;
        assert_int_equal(moor_vclock_merge(&vc, &x[1].rec->vc), 0);
        assert_int_equal(moor_vclock_merge(&vc, &x[2].rec->vc), 0);
        assert_int_equal(moor_vclock_compare(&vc, &ab_c.rec->vc), MOOR_VC_EQUAL);
    }
    for (int i = 0; i < 3; i++) {
        mrec_free(&x[i]);
        moor_buf_free(&vals[i]);
    }
    mrec_free(&ab), mrec_free(&ba), mrec_free(&bc), mrec_free(&ab_c), mrec_free(&a_bc);
    mrec_free(&aa), mrec_free(&ab_b), mrec_free(&abc3);
    free(r);
}

/* Histories that writes can make: replicas apply random writes (blind, or
 * with the ctx of a read of some replica, maybe stale) and merge each
 * other's records in random order.  A write with the ctx of a read
 * replaces exactly the siblings the read saw (those still present) and
 * adds one; replicas that merged everything agree byte for byte. */
static void test_write_ctx_random(void **state)
{
    enum { R = 3, STEPS = 40 };
    static const char *nodes[R] = {"a", "b", "c"};
    mrec_t rep[R], tmp, read;
    moor_buf_t ctxs[8];
    moor_record_t *seen[8];
    int nctx;

    (void)state;
    for (int i = 0; i < R; i++)
        mrec_init(&rep[i]);
    mrec_init(&tmp), mrec_init(&read);
    for (int k = 0; k < 8; k++) {
        ctxs[k] = (moor_buf_t)MOOR_BUF_INIT;
        seen[k] = malloc(sizeof(*seen[k]));
    }
    for (int iter = 0; iter < 1000; iter++) {
        uint64_t now = 1000;
        moor_buf_t vals = MOOR_BUF_INIT; /* every value written, kept alive */
        moor_buf_t raws[8];
        for (int i = 0; i < R; i++) {
            moor_buf_reset(&rep[i].raw);
            rep[i].rec->n = 0;
            moor_vclock_init(&rep[i].rec->vc);
        }
        nctx = 0;
        for (int k = 0; k < 8; k++)
            raws[k] = (moor_buf_t)MOOR_BUF_INIT;
        assert_int_equal(moor_buf_reserve(&vals, STEPS * 2), 0);
        for (int step = 0; step < STEPS; step++) {
            int i = (int)(testutil_rand(&rng) % R), j = (int)(testutil_rand(&rng) % R);
            uint64_t op = testutil_rand(&rng) % 4;
            now += testutil_rand(&rng) % 3;
            if (op == 0 && rep[j].raw.len) { /* replica i merges replica j's record */
                if (rep[i].raw.len)
                    do_merge(&rep[i], &rep[j], &tmp);
                else
                    do_merge(&rep[j], &rep[j], &tmp);
                moor_buf_reset(&rep[i].raw);
                assert_int_equal(moor_buf_append(&rep[i].raw, tmp.raw.data, tmp.raw.len), 0);
                assert_int_equal(moor_record_decode(rep[i].raw.data, rep[i].raw.len, rep[i].rec),
                                 0);
            } else if (op == 1 && rep[j].raw.len) { /* a read of replica j */
                int k = nctx < 8 ? nctx++ : (int)(testutil_rand(&rng) % 8);
                moor_buf_reset(&ctxs[k]);
                assert_int_equal(moor_record_ctx(rep[j].rec, &ctxs[k]), 0);
                moor_buf_reset(&raws[k]);
                assert_int_equal(moor_buf_append(&raws[k], rep[j].raw.data, rep[j].raw.len), 0);
                assert_int_equal(moor_record_decode(raws[k].data, raws[k].len, seen[k]), 0);
            } else { /* a write at replica i: blind or with a read's ctx */
                int k = nctx && testutil_rand(&rng) % 3 ? (int)(testutil_rand(&rng) % nctx) : -1;
                moor_buf_t out = MOOR_BUF_INIT, nc = MOOR_BUF_INIT;
                char *v = vals.data + vals.len;
                uint32_t before = rep[i].raw.len ? rep[i].rec->n : 0, kept = 0;
                vals.data[vals.len++] = (char)(step & 0x7f); /* a positive fixint */
                moor_vclock_t kv;
                if (k >= 0)
                    kv = ctx_clock(&ctxs[k]);
                else
                    moor_vclock_init(&kv);
                for (uint32_t q = 0; q < before; q++)
                    kept += !covers(&kv, &rep[i].rec->sib[q]);
                /* every sibling the read saw that is still here is covered */
                if (k >= 0)
                    for (uint32_t q = 0; q < seen[k]->n; q++)
                        assert_true(covers(&kv, &seen[k]->sib[q]));
                assert_int_equal(moor_record_write(rep[i].raw.len ? rep[i].rec : NULL,
                                                   k >= 0 ? ctxs[k].data : NULL,
                                                   k >= 0 ? ctxs[k].len : 0, v, 1, 0, nodes[i], 1,
                                                   now, 0, NULL, &out, &nc, NULL),
                                 0);
                moor_buf_free(&rep[i].raw);
                rep[i].raw = out;
                assert_int_equal(moor_record_decode(rep[i].raw.data, rep[i].raw.len, rep[i].rec),
                                 0);
                assert_int_equal(rep[i].rec->n, kept + 1); /* exactly the covered ones went */
                if (k >= 0)
                    for (uint32_t q = 0; q < seen[k]->n; q++)
                        assert_false(has_sibling(rep[i].rec, &seen[k]->sib[q]));
                moor_buf_free(&nc);
            }
        }
        /* everyone merges everything, in two orders: the same bytes */
        do_merge(&rep[0], &rep[1], &tmp);
        do_merge(&tmp, &rep[2], &read);
        mrec_t t2, t3;
        mrec_init(&t2), mrec_init(&t3);
        do_merge(&rep[2], &rep[0], &t2);
        do_merge(&rep[1], &t2, &t3);
        if (rep[0].raw.len && rep[1].raw.len && rep[2].raw.len)
            assert_same_bytes(&read, &t3);
        mrec_free(&t2), mrec_free(&t3);
        for (int k = 0; k < 8; k++)
            moor_buf_free(&raws[k]);
        moor_buf_free(&vals);
    }
    for (int i = 0; i < R; i++)
        mrec_free(&rep[i]);
    mrec_free(&tmp), mrec_free(&read);
    for (int k = 0; k < 8; k++) {
        moor_buf_free(&ctxs[k]);
        free(seen[k]);
    }
}

/* Past the hard cap a merge keeps the newest MOOR_RECORD_MAX_SIBLINGS and
 * reports the rest, never silently. */
static void test_merge_hard_cap(void **state)
{
    moor_record_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *m = malloc(sizeof(*m));
    moor_buf_t out = MOOR_BUF_INIT;
    uint32_t dropped = 0;
    uint64_t before = moor_record_merge_drops();

    (void)state;
    moor_vclock_init(&a->vc);
    moor_vclock_init(&b->vc);
    a->n = b->n = 300;
    for (uint32_t i = 0; i < 300; i++) {
        a->sib[i] = (moor_sibling_t){"\x01", 1, 2 * i, 0, "a", 1, i + 1, 0};
        b->sib[i] = (moor_sibling_t){"\x02", 1, 2 * i + 1, 0, "b", 1, i + 1, 0};
    }
    assert_int_equal(moor_record_merge_n(a, b, &out, &dropped), 0);
    assert_int_equal(dropped, 600 - MOOR_RECORD_MAX_SIBLINGS);
    assert_int_equal(moor_record_merge_drops() - before, 600 - MOOR_RECORD_MAX_SIBLINGS);
    assert_int_equal(moor_record_decode(out.data, out.len, m), 0);
    assert_int_equal(m->n, MOOR_RECORD_MAX_SIBLINGS);
    for (uint32_t i = 0; i < m->n; i++) /* the oldest 88 went */
        assert_true(m->sib[i].ts >= 600 - MOOR_RECORD_MAX_SIBLINGS);
    moor_buf_free(&out);
    free(a), free(b), free(m);
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
        moor_record_write(NULL, ctx.data, ctx.len, "\x01", 1, 0, "k1", 2, now, 0, NULL, &out, &nctx, NULL),
        MOOR_EBADCTX);
    assert_non_null(strstr(moor_diag_last()->msg, "node 'k2'"));
    assert_int_equal(out.len, 0);
    assert_int_equal(nctx.len, 0);
    vc.e[1].counter = now * 1000;
    ctx.len = 0;
    assert_int_equal(moor_vclock_encode(&vc, &ctx), 0);
    assert_int_equal(
        moor_record_write(NULL, ctx.data, ctx.len, "\x01", 1, 0, "k1", 2, now, 0, NULL, &out, &nctx, NULL), 0);
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
        moor_record_write(NULL, NULL, 0, v, MOOR_RECORD_VALUE_DEPTH + 1, 0, "n", 1, 1, 0, NULL, &out, &ctx, NULL),
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
        moor_record_write(NULL, NULL, 0, v, MOOR_RECORD_VALUE_DEPTH + 2, 0, "n", 1, 1, 0, NULL, &out, &ctx, NULL),
        MOOR_EINVAL);
    assert_non_null(strstr(moor_diag_last()->msg, "nested at most 61"));
    moor_buf_free(&out), moor_buf_free(&ctx), moor_buf_free(&res);
    free(r);
}

/* ---- expiry ------------------------------------------------------------------------- */

/* An expiring sibling is a 6-element array ending with exp; a tombstone
 * never carries one; exp 0, a 7th element or a non-integer are refused. */
static void test_expiry_codec(void **state)
{
    moor_record_t *r = malloc(sizeof(*r));
    moor_buf_t b = MOOR_BUF_INIT;
    /* [2, [], [[bin "n", 7, 5, 9, false, 1000 as uint16]]] */
    static const char want[] = "\x93\x02\x90\x91"
                               "\x96\xc4\x01n\x07\x05\x09\xc2\xcd\x03\xe8";
    static const char *const bad[] = {
        "\x93\x02\x90\x91\x96\xc4\x01n\x07\x05\x09\xc2\x00",     /* exp 0 */
        "\x93\x02\x90\x91\x96\xc4\x01n\x07\xc0\x09\xc3\x05",     /* on a tombstone */
        "\x93\x02\x90\x91\x96\xc4\x01n\x07\x05\x09\xc2\xa1x",    /* not an integer */
        "\x93\x02\x90\x91\x97\xc4\x01n\x07\x05\x09\xc2\x05\x05", /* 7 elements */
        "\x93\x02\x90\x91\x96\xc4\x01n\x07\x05\x09\xc2",         /* truncated */
    };
    static const size_t badlen[] = {12, 12, 13, 13, 11};

    (void)state;
    moor_vclock_init(&r->vc);
    r->n = 1;
    r->sib[0] = (moor_sibling_t){"\x05", 1, 9, 0, "n", 1, 7, 1000};
    assert_int_equal(moor_record_encode(r, &b), 0);
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.data, want, b.len);
    assert_int_equal(moor_record_decode(b.data, b.len, r), 0);
    assert_int_equal(r->sib[0].exp, 1000);
    assert_int_equal(moor_record_next_expiry(r), 1000);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (moor_record_decode(bad[i], badlen[i], r) != MOOR_ECORRUPT)
            fail_msg("bad record %zu decoded", i);
    moor_buf_free(&b);
    free(r);
}

/* A write with an expiry; before it the value reads, at it the sibling is
 * the tombstone written at exp with its dot; a later blind write keeps
 * that tombstone beside the new value, a write with the ctx replaces it. */
static void test_expire_write(void **state)
{
    stored_t s;
    moor_buf_t out = MOOR_BUF_INIT, nctx = MOOR_BUF_INIT, res = MOOR_BUF_INIT;
    moor_sibling_t before;
    const char *p, *end, *k;
    uint32_t n, klen;
    uint64_t e;

    (void)state;
    stored_init(&s);
    assert_int_equal(moor_record_write_exp(NULL, NULL, 0, "\x01", 1, 0, 5000, "n1", 2, 100, 0, NULL,
                                           &out, &nctx, NULL),
                     0);
    moor_buf_free(&s.ctx);
    s.ctx = nctx;
    stored_set(&s, out);
    assert_int_equal(s.rec->n, 1);
    assert_int_equal(s.rec->sib[0].exp, 5000);
    before = s.rec->sib[0];
    /* a tombstone written with an expiry carries none */
    out = (moor_buf_t)MOOR_BUF_INIT;
    nctx = (moor_buf_t)MOOR_BUF_INIT;
    assert_int_equal(moor_record_write_exp(s.rec, NULL, 0, NULL, 0, 1, 7000, "n2", 2, 101, 0, NULL,
                                           &out, &nctx, NULL),
                     0);
    moor_record_t *t = malloc(sizeof(*t));
    assert_int_equal(moor_record_decode(out.data, out.len, t), 0);
    assert_int_equal(moor_record_next_expiry(t), 5000);
    for (uint32_t i = 0; i < t->n; i++)
        assert_true(t->sib[i].tombstone ? t->sib[i].exp == 0 : t->sib[i].exp == 5000);
    moor_buf_free(&out);
    moor_buf_free(&nctx);
    free(t);
    /* the get result says when */
    assert_int_equal(moor_record_get_result(s.rec, &res), 0);
    p = res.data, end = res.data + res.len;
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(n, 3);
    for (uint32_t i = 0; i < 2; i++)
        assert_int_equal(moor_mp_skip(&p, end, 8) | moor_mp_skip(&p, end, 8), 0);
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_int_equal(klen, 10);
    assert_memory_equal(k, "expires_ms", 10);
    assert_int_equal(moor_mp_read_uint(&p, end, &e), 0);
    assert_int_equal(e, 5000);
    /* not yet, then exactly at exp */
    assert_int_equal(moor_record_expire(s.rec, 4999), 0);
    assert_true(same_sibling(&s.rec->sib[0], &before));
    assert_int_equal(moor_record_expire(s.rec, 5000), 1);
    assert_int_equal(moor_record_expire(s.rec, 9000), 0); /* idempotent */
    assert_true(moor_record_is_deleted(s.rec));
    assert_int_equal(s.rec->sib[0].ts, 5000);
    assert_int_equal(s.rec->sib[0].exp, 0);
    assert_int_equal(s.rec->sib[0].dot_counter, before.dot_counter);
    assert_int_equal(moor_record_next_expiry(s.rec), 0);
    moor_buf_reset(&res);
    assert_int_equal(moor_record_get_result(s.rec, &res), 0);
    p = res.data, end = res.data + res.len;
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_int_equal(moor_mp_read_array(&p, end, &n), 0);
    assert_int_equal(n, 0);
    /* written back (a merge's encode): the tombstone, the value's bytes gone */
    moor_buf_reset(&out);
    assert_int_equal(moor_record_encode(s.rec, &out), 0);
    stored_set(&s, out);
    assert_true(moor_record_is_deleted(s.rec));
    /* with the ctx of the write, a new value replaces the tombstone */
    put(&s, &s.ctx, "\x02", "n1", 6000);
    assert_int_equal(s.rec->n, 1);
    assert_int_equal(tombstones(s.rec), 0);
    moor_buf_free(&res);
    stored_free(&s);
}

/* 1 if r's context covers one of its own siblings (a record no write or
 * merge makes: record.c keeps a new dot out of C). */
static int covers_own(const moor_record_t *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (covers(&r->vc, &r->sib[i]))
            return 1;
    return 0;
}

/* Replicas that expire at different times agree: expiring commutes with
 * merge -- expire(merge(a, b)) and merge(expire(a), expire(b)) are the
 * same bytes, at any time -- and an expired sibling merged with the
 * tombstone another replica made of it is that one tombstone. */
static void test_expire_merge_laws(void **state)
{
    moor_buf_t vals[2] = {MOOR_BUF_INIT, MOOR_BUF_INIT}, o1 = MOOR_BUF_INIT, o2 = MOOR_BUF_INIT;
    mrec_t x[2], ea, eb, m;
    moor_record_t *r = malloc(sizeof(*r));
    int tried = 0;

    (void)state;
    mrec_init(&x[0]), mrec_init(&x[1]), mrec_init(&ea), mrec_init(&eb), mrec_init(&m);
    for (int iter = 0; iter < 5000; iter++) {
        uint64_t now = testutil_rand(&rng) % 6;
        for (int i = 0; i < 2; i++) {
            do
                random_record(r, &vals[i], 6);
            while (covers_own(r));
            mrec_from(&x[i], r);
        }
        /* half the time b is a itself, expired by another replica earlier */
        if (iter % 2) {
            mrec_from(&ea, x[0].rec);
            moor_record_expire(ea.rec, testutil_rand(&rng) % 6);
            mrec_from(&x[1], ea.rec); /* ea's values borrow from ea.raw, not x[1]'s */
        }
        do_merge(&x[0], &x[1], &m);
        moor_record_expire(m.rec, now);
        moor_buf_reset(&o1);
        assert_int_equal(moor_record_encode(m.rec, &o1), 0);
        mrec_from(&ea, x[0].rec);
        mrec_from(&eb, x[1].rec);
        moor_record_expire(ea.rec, now);
        moor_record_expire(eb.rec, now);
        moor_buf_reset(&o2);
        assert_int_equal(moor_record_merge(ea.rec, eb.rec, &o2), 0);
        assert_int_equal(o1.len, o2.len);
        assert_memory_equal(o1.data, o2.data, o1.len);
        tried++;
    }
    assert_int_equal(tried, 5000);
    mrec_free(&x[0]), mrec_free(&x[1]), mrec_free(&ea), mrec_free(&eb), mrec_free(&m);
    moor_buf_free(&vals[0]), moor_buf_free(&vals[1]);
    moor_buf_free(&o1), moor_buf_free(&o2);
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
        cmocka_unit_test(test_legacy_v1),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_truncations_and_corruptions),
        cmocka_unit_test(test_write_rules),
        cmocka_unit_test(test_write_never_hides_unseen),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_write_hard_cap),
        cmocka_unit_test(test_get_result),
        cmocka_unit_test(test_merge_laws_random),
        cmocka_unit_test(test_write_ctx_random),
        cmocka_unit_test(test_merge_hard_cap),
        cmocka_unit_test(test_expiry_codec),
        cmocka_unit_test(test_expire_write),
        cmocka_unit_test(test_expire_merge_laws),
    };

    rng = testutil_seed("test_record");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
