/*
 * test_mp.c -- the MessagePack readers that see every untrusted byte:
 * every type at every size boundary (fixint/uint8/16/32/64, negative ints,
 * float32/64, str/bin 8/16/32, array/map 16/32, fixext/ext 8/16/32), each
 * packed by msgpack-c both into a moor_buf_t through moor_mp_packer_init
 * and into msgpack-c's own sbuffer (the bytes must agree), then read back;
 * every truncation gives MOOR_EAGAIN, 0xc1 gives MOOR_EPROTO, the depth
 * limit holds (empty containers count), lying counts are caught, and a
 * reader of the wrong type gives MOOR_EINVAL without moving the cursor.
 * Random trees: skip and a reader-driven walk agree with msgpack-c's
 * unpacker on where an object ends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <msgpack.h>

#include "util/mp.h"
#include "util/err.h"
#include "testutil.h"

static uint64_t rng;

/* Packs `call` (an int expression using `pk`) into b through moor's writer
 * and into an sbuffer through msgpack-c's, and requires the same bytes. */
#define PACK(b, call)                                            \
    do {                                                         \
        msgpack_packer mpk_, spk_;                               \
        msgpack_sbuffer sb_;                                     \
        moor_buf_reset(b);                                       \
        moor_mp_packer_init(&mpk_, (b));                         \
        msgpack_sbuffer_init(&sb_);                              \
        msgpack_packer_init(&spk_, &sb_, msgpack_sbuffer_write); \
        {                                                        \
            msgpack_packer *pk = &mpk_;                          \
            assert_int_equal((call), 0);                         \
        }                                                        \
        {                                                        \
            msgpack_packer *pk = &spk_;                          \
            assert_int_equal((call), 0);                         \
        }                                                        \
        assert_int_equal((b)->len, sb_.size);                    \
        assert_memory_equal((b)->data, sb_.data, sb_.size);      \
        msgpack_sbuffer_destroy(&sb_);                           \
    } while (0)

/* A heap copy of exactly n bytes, so ASan catches any read past the end. */
static char *exact(const char *src, size_t n)
{
    char *c = malloc(n ? n : 1);
    assert_non_null(c);
    memcpy(c, src, n);
    return c;
}

/* Every proper prefix of [buf, buf+len) (or a sample of cut points when
 * len is large) is a truncation: skip says MOOR_EAGAIN and keeps the cursor. */
static void assert_truncations(const char *buf, size_t len)
{
    size_t samples[] = {0, 1, 2, 3, 4, 5, 6, 8, 9, 10, len / 2, len - 2, len - 1};
    size_t nsamples = sizeof(samples) / sizeof(samples[0]);
    size_t n = len <= 600 ? len : nsamples;

    for (size_t i = 0; i < n; i++) {
        size_t cut = len <= 600 ? i : samples[i];
        if (cut >= len)
            continue;
        char *c = exact(buf, cut);
        const char *p = c;
        int rc = moor_mp_skip(&p, c + cut, MOOR_MP_MAX_DEPTH);
        if (rc != MOOR_EAGAIN)
            fail_msg("cut at %zu of %zu: skip gave %d, want MOOR_EAGAIN", cut, len, rc);
        assert_ptr_equal(p, c);
        free(c);
    }
}

static void assert_skips(const char *buf, size_t len)
{
    char *c = exact(buf, len);
    const char *p = c;
    int rc = moor_mp_skip(&p, c + len, MOOR_MP_MAX_DEPTH);

    if (rc)
        fail_msg("skip of %zu bytes gave %d", len, rc);
    assert_ptr_equal(p, c + len);
    free(c);
}

/* ---- integers ----------------------------------------------------------------------- */

static void test_uint_boundaries(void **state)
{
    static const struct {
        uint64_t v;
        size_t len;
        unsigned char marker; /* 0 for positive fixint */
    } cases[] = {
        {0, 1, 0},
        {127, 1, 0},
        {128, 2, 0xcc},
        {255, 2, 0xcc},
        {256, 3, 0xcd},
        {65535, 3, 0xcd},
        {65536, 5, 0xce},
        {UINT32_MAX, 5, 0xce},
        {(uint64_t)UINT32_MAX + 1, 9, 0xcf},
        {INT64_MAX, 9, 0xcf},
        {(uint64_t)INT64_MAX + 1, 9, 0xcf},
        {UINT64_MAX, 9, 0xcf},
    };
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = cases[i].v, u = 0;
        int64_t s = 0;
        double d = 0;
        PACK(&b, msgpack_pack_uint64(pk, v));
        assert_int_equal(b.len, cases[i].len);
        if (cases[i].marker)
            assert_int_equal((unsigned char)b.data[0], cases[i].marker);
        char *c = exact(b.data, b.len);
        const char *p = c, *end = c + b.len;
        assert_int_equal(moor_mp_peek(p, end), MOOR_MP_UINT);
        assert_int_equal(moor_mp_read_uint(&p, end, &u), 0);
        assert_int_equal(u, v);
        assert_ptr_equal(p, end);
        p = c;
        if (v <= INT64_MAX) {
            assert_int_equal(moor_mp_read_int(&p, end, &s), 0);
            assert_int_equal(s, (int64_t)v);
            assert_ptr_equal(p, end);
        } else {
            assert_int_equal(moor_mp_read_int(&p, end, &s), MOOR_EINVAL);
            assert_ptr_equal(p, c);
        }
        p = c;
        assert_int_equal(moor_mp_read_double(&p, end, &d), 0);
        assert_true(d == (double)v);
        /* truncations of the readers, too */
        for (size_t cut = 0; cut < b.len; cut++) {
            p = c;
            assert_int_equal(moor_mp_read_uint(&p, c + cut, &u), MOOR_EAGAIN);
            assert_ptr_equal(p, c);
            assert_int_equal(moor_mp_read_double(&p, c + cut, &d), MOOR_EAGAIN);
            assert_ptr_equal(p, c);
        }
        free(c);
        assert_skips(b.data, b.len);
        assert_truncations(b.data, b.len);
    }
    moor_buf_free(&b);
}

static void test_negative_boundaries(void **state)
{
    static const struct {
        int64_t v;
        size_t len;
        unsigned char marker; /* 0 for negative fixint */
    } cases[] = {
        {-1, 1, 0},           {-32, 1, 0},          {-33, 2, 0xd0},
        {-128, 2, 0xd0},      {-129, 3, 0xd1},      {-32768, 3, 0xd1},
        {-32769, 5, 0xd2},    {INT32_MIN, 5, 0xd2}, {(int64_t)INT32_MIN - 1, 9, 0xd3},
        {INT64_MIN, 9, 0xd3},
    };
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t v = cases[i].v, s = 0;
        uint64_t u = 77;
        double d = 0;
        PACK(&b, msgpack_pack_int64(pk, v));
        assert_int_equal(b.len, cases[i].len);
        if (cases[i].marker)
            assert_int_equal((unsigned char)b.data[0], cases[i].marker);
        char *c = exact(b.data, b.len);
        const char *p = c, *end = c + b.len;
        assert_int_equal(moor_mp_peek(p, end), MOOR_MP_INT);
        assert_int_equal(moor_mp_read_int(&p, end, &s), 0);
        assert_int_equal(s, v);
        assert_ptr_equal(p, end);
        p = c;
        assert_int_equal(moor_mp_read_uint(&p, end, &u), MOOR_EINVAL);
        assert_ptr_equal(p, c);
        assert_int_equal(u, 77);
        assert_int_equal(moor_mp_read_double(&p, end, &d), 0);
        assert_true(d == (double)v);
        for (size_t cut = 0; cut < b.len; cut++) {
            p = c;
            assert_int_equal(moor_mp_read_int(&p, c + cut, &s), MOOR_EAGAIN);
            assert_ptr_equal(p, c);
        }
        free(c);
        assert_skips(b.data, b.len);
        assert_truncations(b.data, b.len);
    }
    moor_buf_free(&b);
}

/* Non-canonical widths, as other encoders may send: each reads back. */
static void test_forced_widths(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    uint64_t u;
    int64_t s;

    (void)state;
#define CHECK_U(call, elen, ewant)                                      \
    do {                                                                \
        PACK(&b, call);                                                 \
        assert_int_equal(b.len, elen);                                  \
        const char *p = b.data;                                         \
        assert_int_equal(moor_mp_read_uint(&p, b.data + b.len, &u), 0); \
        assert_int_equal(u, ewant);                                     \
        p = b.data;                                                     \
        assert_int_equal(moor_mp_read_int(&p, b.data + b.len, &s), 0);  \
        assert_int_equal(s, (int64_t)(ewant));                          \
        assert_skips(b.data, b.len);                                    \
    } while (0)
    CHECK_U(msgpack_pack_fix_uint8(pk, 5), 2, 5);
    CHECK_U(msgpack_pack_fix_uint16(pk, 5), 3, 5);
    CHECK_U(msgpack_pack_fix_uint32(pk, 5), 5, 5);
    CHECK_U(msgpack_pack_fix_uint64(pk, 5), 9, 5);
    /* signed formats holding non-negative values */
    CHECK_U(msgpack_pack_fix_int8(pk, 5), 2, 5);
    CHECK_U(msgpack_pack_fix_int16(pk, 300), 3, 300);
    CHECK_U(msgpack_pack_fix_int32(pk, 70000), 5, 70000);
    CHECK_U(msgpack_pack_fix_int64(pk, INT64_MAX), 9, INT64_MAX);
#undef CHECK_U
    PACK(&b, msgpack_pack_fix_int16(pk, -1));
    const char *p = b.data;
    assert_int_equal(moor_mp_read_int(&p, b.data + b.len, &s), 0);
    assert_int_equal(s, -1);
    moor_buf_free(&b);
}

/* ---- floats, nil, bool -------------------------------------------------------------- */

static void test_floats_nil_bool(void **state)
{
    static const double f32[] = {1.5, -0.0, 3.0e38, -1.0e-38};
    static const double f64[] = {3.141592653589793, DBL_MAX, -DBL_MIN, 0.1};
    moor_buf_t b = MOOR_BUF_INIT;
    double d;
    int v;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        PACK(&b, msgpack_pack_float(pk, (float)f32[i]));
        assert_int_equal(b.len, 5);
        assert_int_equal((unsigned char)b.data[0], 0xca);
        const char *p = b.data;
        assert_int_equal(moor_mp_peek(p, b.data + b.len), MOOR_MP_FLOAT);
        assert_int_equal(moor_mp_read_double(&p, b.data + b.len, &d), 0);
        assert_true(d == (double)(float)f32[i]);
        assert_truncations(b.data, b.len);
        PACK(&b, msgpack_pack_double(pk, f64[i]));
        assert_int_equal(b.len, 9);
        assert_int_equal((unsigned char)b.data[0], 0xcb);
        p = b.data;
        assert_int_equal(moor_mp_read_double(&p, b.data + b.len, &d), 0);
        assert_true(d == f64[i]);
        assert_ptr_equal(p, b.data + b.len);
        assert_truncations(b.data, b.len);
    }
    PACK(&b, msgpack_pack_double(pk, INFINITY));
    const char *p = b.data;
    assert_int_equal(moor_mp_read_double(&p, b.data + b.len, &d), 0);
    assert_true(isinf(d) && d > 0);
    PACK(&b, msgpack_pack_double(pk, NAN));
    p = b.data;
    assert_int_equal(moor_mp_read_double(&p, b.data + b.len, &d), 0);
    assert_true(isnan(d));

    PACK(&b, msgpack_pack_nil(pk) || msgpack_pack_true(pk) || msgpack_pack_false(pk));
    assert_int_equal(b.len, 3);
    p = b.data;
    const char *end = b.data + b.len;
    assert_int_equal(moor_mp_peek(p, end), MOOR_MP_NIL);
    assert_int_equal(moor_mp_read_nil(&p, end), 0);
    assert_int_equal(moor_mp_peek(p, end), MOOR_MP_BOOL);
    assert_int_equal(moor_mp_read_bool(&p, end, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(moor_mp_read_bool(&p, end, &v), 0);
    assert_int_equal(v, 0);
    assert_ptr_equal(p, end);
    assert_int_equal(moor_mp_read_nil(&p, end), MOOR_EAGAIN);
    assert_int_equal(moor_mp_read_bool(&p, end, &v), MOOR_EAGAIN);
    assert_int_equal(moor_mp_peek(p, end), MOOR_EAGAIN);
    moor_buf_free(&b);
}

/* ---- str, bin, ext ------------------------------------------------------------------ */

static const size_t sizes[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static size_t str_hlen(size_t n)
{
    return n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5;
}
static size_t bin_hlen(size_t n)
{
    return n < 256 ? 2 : n < 65536 ? 3 : 5;
}

static void test_str_bin(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    char *body = malloc(70000);

    (void)state;
    for (size_t i = 0; i < 70000; i++)
        body[i] = (char)(i * 7 + 3);
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        const char *s, *p;
        uint32_t sl;
        for (int is_bin = 0; is_bin < 2; is_bin++) {
            if (is_bin)
                PACK(&b, msgpack_pack_bin(pk, n) || msgpack_pack_bin_body(pk, body, n));
            else
                PACK(&b, msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, body, n));
            size_t hl = is_bin ? bin_hlen(n) : str_hlen(n);
            assert_int_equal(b.len, hl + n);
            char *c = exact(b.data, b.len);
            const char *end = c + b.len;
            p = c;
            assert_int_equal(moor_mp_peek(p, end), is_bin ? MOOR_MP_BIN : MOOR_MP_STR);
            /* the reader of the other kind refuses; strbin takes both */
            if (is_bin)
                assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), MOOR_EINVAL);
            else
                assert_int_equal(moor_mp_read_bin(&p, end, &s, &sl), MOOR_EINVAL);
            assert_ptr_equal(p, c);
            if (is_bin)
                assert_int_equal(moor_mp_read_bin(&p, end, &s, &sl), 0);
            else
                assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), 0);
            assert_int_equal(sl, n);
            assert_ptr_equal(s, c + hl);
            if (n)
                assert_memory_equal(s, body, n);
            assert_ptr_equal(p, end);
            p = c;
            assert_int_equal(moor_mp_read_strbin(&p, end, &s, &sl), 0);
            assert_int_equal(sl, n);
            /* truncated anywhere: header or body */
            size_t cuts[] = {0, 1, hl - 1, hl, hl + n / 2, hl + n - 1};
            for (size_t k = 0; k < 6; k++) {
                if (cuts[k] >= b.len)
                    continue;
                p = c;
                assert_int_equal(moor_mp_read_strbin(&p, c + cuts[k], &s, &sl), MOOR_EAGAIN);
                assert_ptr_equal(p, c);
            }
            free(c);
            assert_skips(b.data, b.len);
            assert_truncations(b.data, b.len);
        }
    }
    free(body);
    moor_buf_free(&b);
}

static void test_ext(void **state)
{
    static const struct {
        size_t n;
        unsigned char marker;
        size_t hlen;
    } cases[] = {
        {1, 0xd4, 2},   {2, 0xd5, 2},     {4, 0xd6, 2},     {8, 0xd7, 2},
        {16, 0xd8, 2},  {0, 0xc7, 3},     {3, 0xc7, 3},     {255, 0xc7, 3},
        {256, 0xc8, 4}, {65535, 0xc8, 4}, {65536, 0xc9, 6},
    };
    moor_buf_t b = MOOR_BUF_INIT;
    char *body = calloc(1, 65536);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = cases[i].n;
        PACK(&b, msgpack_pack_ext(pk, n, -5) || msgpack_pack_ext_body(pk, body, n));
        assert_int_equal(b.len, cases[i].hlen + n);
        assert_int_equal((unsigned char)b.data[0], cases[i].marker);
        assert_int_equal(moor_mp_peek(b.data, b.data + b.len), MOOR_MP_EXT);
        assert_skips(b.data, b.len);
        assert_truncations(b.data, b.len);
    }
    free(body);
    moor_buf_free(&b);
}

/* ---- containers --------------------------------------------------------------------- */

static void test_containers(void **state)
{
    static const struct {
        uint32_t n;
        unsigned char amarker, mmarker; /* 0: fix type */
        size_t hlen;
    } cases[] = {
        {0, 0, 0, 1},           {15, 0, 0, 1},          {16, 0xdc, 0xde, 3},
        {65535, 0xdc, 0xde, 3}, {65536, 0xdd, 0xdf, 5},
    };
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t n = cases[i].n, got;
        for (int is_map = 0; is_map < 2; is_map++) {
            if (is_map) {
                PACK(&b, ({
                    int r_ = msgpack_pack_map(pk, n);
                    for (uint32_t k = 0; k < n && !r_; k++)
                        r_ = msgpack_pack_uint32(pk, k) || msgpack_pack_nil(pk);
                    r_;
                }));
            } else {
                PACK(&b, ({
                    int r_ = msgpack_pack_array(pk, n);
                    for (uint32_t k = 0; k < n && !r_; k++)
                        r_ = msgpack_pack_nil(pk);
                    r_;
                }));
            }
            unsigned char m = is_map ? cases[i].mmarker : cases[i].amarker;
            if (m)
                assert_int_equal((unsigned char)b.data[0], m);
            else
                assert_int_equal((unsigned char)b.data[0], (is_map ? 0x80 : 0x90) | n);
            char *c = exact(b.data, b.len);
            const char *p = c, *end = c + b.len;
            assert_int_equal(moor_mp_peek(p, end), is_map ? MOOR_MP_MAP : MOOR_MP_ARRAY);
            if (is_map) {
                assert_int_equal(moor_mp_read_array(&p, end, &got), MOOR_EINVAL);
                assert_int_equal(moor_mp_read_map(&p, end, &got), 0);
            } else {
                assert_int_equal(moor_mp_read_map(&p, end, &got), MOOR_EINVAL);
                assert_int_equal(moor_mp_read_array(&p, end, &got), 0);
            }
            assert_int_equal(got, n);
            assert_ptr_equal(p, c + cases[i].hlen);
            /* the header alone, or one byte short of the elements */
            for (size_t cut = 0; cut < cases[i].hlen; cut++) {
                p = c;
                assert_int_equal(is_map ? moor_mp_read_map(&p, c + cut, &got)
                                        : moor_mp_read_array(&p, c + cut, &got),
                                 MOOR_EAGAIN);
                assert_ptr_equal(p, c);
            }
            free(c);
            assert_skips(b.data, b.len);
            assert_truncations(b.data, b.len);
        }
    }
    moor_buf_free(&b);
}

/* ---- bad bytes ---------------------------------------------------------------------- */

static void test_reserved_c1(void **state)
{
    static const struct {
        const char *b;
        size_t n;
    } cases[] = {
        {"\xc1", 1},         {"\x92\x01\xc1", 3}, {"\x92\xc1\x01", 3},
        {"\x81\xc1\x01", 3}, {"\x81\x01\xc1", 3}, {"\x91\x91\x91\xc1", 4},
    };
    const char *s, *p;
    uint32_t n;
    uint64_t u;
    int64_t i64;
    double d;
    int v;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *c = exact(cases[i].b, cases[i].n);
        p = c;
        int rc = moor_mp_skip(&p, c + cases[i].n, MOOR_MP_MAX_DEPTH);
        if (rc != MOOR_EPROTO)
            fail_msg("case %zu: skip gave %d, want MOOR_EPROTO", i, rc);
        assert_ptr_equal(p, c);
        free(c);
    }
    p = "\xc1";
    const char *end = p + 1;
    assert_int_equal(moor_mp_peek(p, end), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_nil(&p, end), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_bool(&p, end, &v), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_uint(&p, end, &u), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_int(&p, end, &i64), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_double(&p, end, &d), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_str(&p, end, &s, &n), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_bin(&p, end, &s, &n), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_strbin(&p, end, &s, &n), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_array(&p, end, &n), MOOR_EPROTO);
    assert_int_equal(moor_mp_read_map(&p, end, &n), MOOR_EPROTO);
    assert_ptr_equal(p, end - 1);
}

/* depth nested one-element arrays (or maps) around a leaf; an empty
 * innermost container when leaf is 0. */
static size_t nested(char *out, int depth, int map, int leaf)
{
    size_t n = 0;

    for (int i = 0; i < depth - (leaf ? 0 : 1); i++) {
        out[n++] = map ? '\x81' : '\x91';
        if (map)
            out[n++] = '\x01'; /* the key; the value nests */
    }
    out[n++] = leaf ? '\x07' : (map ? '\x80' : '\x90');
    return n;
}

static void test_depth_limit(void **state)
{
    char *buf = malloc(2000002);
    const char *p;

    (void)state;
    for (int map = 0; map < 2; map++) {
        for (int leaf = 0; leaf < 2; leaf++) {
            for (int depth = 1; depth <= MOOR_MP_MAX_DEPTH; depth++) {
                size_t n = nested(buf, depth, map, leaf);
                p = buf;
                int rc = moor_mp_skip(&p, buf + n, depth);
                if (rc)
                    fail_msg("depth %d (map %d, leaf %d) at limit %d: %d", depth, map, leaf, depth,
                             rc);
                assert_ptr_equal(p, buf + n);
                p = buf;
                rc = moor_mp_skip(&p, buf + n, depth - 1);
                if (rc != MOOR_EPROTO)
                    fail_msg("depth %d (map %d, leaf %d) at limit %d: %d, want MOOR_EPROTO", depth,
                             map, leaf, depth - 1, rc);
                assert_ptr_equal(p, buf);
            }
        }
    }
    /* the limit is capped at MOOR_MP_MAX_DEPTH whatever the caller asks */
    size_t n = nested(buf, MOOR_MP_MAX_DEPTH, 0, 1);
    p = buf;
    assert_int_equal(moor_mp_skip(&p, buf + n, 1000), 0);
    n = nested(buf, MOOR_MP_MAX_DEPTH + 1, 0, 0);
    p = buf;
    assert_int_equal(moor_mp_skip(&p, buf + n, 1000), MOOR_EPROTO);
    /* a million levels: refused early, no stack used */
    n = nested(buf, 1000000, 0, 1);
    p = buf;
    assert_int_equal(moor_mp_skip(&p, buf + n, MOOR_MP_MAX_DEPTH), MOOR_EPROTO);
    /* max_depth 0: scalars only; negative is the same */
    p = "\x07";
    assert_int_equal(moor_mp_skip(&p, p + 1, 0), 0);
    p = "\x90";
    assert_int_equal(moor_mp_skip(&p, p + 1, 0), MOOR_EPROTO);
    p = "\x80";
    assert_int_equal(moor_mp_skip(&p, p + 1, -3), MOOR_EPROTO);
    /* depth is nesting, not breadth: many siblings at level 1 are fine */
    buf[0] = '\xdc';
    buf[1] = '\x03';
    buf[2] = '\xe8'; /* array16 of 1000 */
    for (int i = 0; i < 1000; i++)
        buf[3 + i] = '\x90';
    p = buf;
    assert_int_equal(moor_mp_skip(&p, buf + 1003, 2), 0);
    assert_ptr_equal(p, buf + 1003);
    free(buf);
}

static void test_lying_counts(void **state)
{
    static const struct {
        const char *b;
        size_t n;
    } cases[] = {
        {"\xdd\xff\xff\xff\xff\x01\x02\x03", 8}, /* array32 of 4G, 3 bytes follow */
        {"\xdf\xff\xff\xff\xff\x01\x02\x03", 8}, /* map32 */
        {"\xdc\xff\xff\xc0\xc0\xc0", 6},         /* array16 of 65535 */
        {"\xde\x00\x02\x01\x02\x03", 6},         /* map16 of 2: 4 objects, 3 bytes */
        {"\x83\x01\x02\x03\x04", 5},             /* fixmap of 3 */
        {"\xdb\xff\xff\xff\xff"
         "abc",
         8}, /* str32 of 4G */
        {"\xc6\xff\xff\xff\xff"
         "abc",
         8}, /* bin32 */
        {"\xc9\xff\xff\xff\xff\x01"
         "abc",
         9},                                         /* ext32 */
        {"\x91\x91\xdd\x7f\xff\xff\xff\xc0", 8},     /* a lie two levels down */
        {"\x92\xc0\xdf\x00\x00\x00\x10\xc0\xc0", 9}, /* ... or after a sibling */
    };
    uint32_t n;
    const char *s;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *c = exact(cases[i].b, cases[i].n);
        const char *p = c, *end = c + cases[i].n;
        int rc = moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH);
        if (rc != MOOR_EAGAIN)
            fail_msg("case %zu: skip gave %d, want MOOR_EAGAIN", i, rc);
        assert_ptr_equal(p, c);
        /* the header readers refuse a count the bytes cannot hold */
        int t = moor_mp_peek(p, end);
        if (t == MOOR_MP_ARRAY)
            rc = moor_mp_read_array(&p, end, &n);
        else if (t == MOOR_MP_MAP)
            rc = moor_mp_read_map(&p, end, &n);
        else if (t == MOOR_MP_STR || t == MOOR_MP_BIN)
            rc = moor_mp_read_strbin(&p, end, &s, &n);
        if (i < 8 && t != MOOR_MP_EXT) {
            if (rc != MOOR_EAGAIN)
                fail_msg("case %zu: reader gave %d, want MOOR_EAGAIN", i, rc);
            assert_ptr_equal(p, c);
        }
        free(c);
    }
}

/* One sample per type, and which readers accept it. */
enum { R_NIL, R_BOOL, R_UINT, R_INT, R_DOUBLE, R_STR, R_BIN, R_STRBIN, R_ARRAY, R_MAP, R_N };

static int run_reader(int r, const char **p, const char *end)
{
    uint64_t u;
    int64_t s;
    double d;
    int v;
    const char *b;
    uint32_t n;

    switch (r) {
    case R_NIL: return moor_mp_read_nil(p, end);
    case R_BOOL: return moor_mp_read_bool(p, end, &v);
    case R_UINT: return moor_mp_read_uint(p, end, &u);
    case R_INT: return moor_mp_read_int(p, end, &s);
    case R_DOUBLE: return moor_mp_read_double(p, end, &d);
    case R_STR: return moor_mp_read_str(p, end, &b, &n);
    case R_BIN: return moor_mp_read_bin(p, end, &b, &n);
    case R_STRBIN: return moor_mp_read_strbin(p, end, &b, &n);
    case R_ARRAY: return moor_mp_read_array(p, end, &n);
    default: return moor_mp_read_map(p, end, &n);
    }
}

static void test_type_mismatch(void **state)
{
#define A(r) (1u << (r))
    static const struct {
        const char *b;
        size_t n;
        unsigned accepts;
    } cases[] = {
        {"\xc0", 1, A(R_NIL)},
        {"\xc3", 1, A(R_BOOL)},
        {"\xc2", 1, A(R_BOOL)},
        {"\x05", 1, A(R_UINT) | A(R_INT) | A(R_DOUBLE)},
        {"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, A(R_UINT) | A(R_DOUBLE)},
        {"\xd0\x05", 2, A(R_UINT) | A(R_INT) | A(R_DOUBLE)},
        {"\xff", 1, A(R_INT) | A(R_DOUBLE)},
        {"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, A(R_INT) | A(R_DOUBLE)},
        {"\xca\x3f\xc0\x00\x00", 5, A(R_DOUBLE)},
        {"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9, A(R_DOUBLE)},
        {"\xa1"
         "a",
         2, A(R_STR) | A(R_STRBIN)},
        {"\xc4\x01"
         "a",
         3, A(R_BIN) | A(R_STRBIN)},
        {"\x91\x01", 2, A(R_ARRAY)},
        {"\x81\x01\x02", 3, A(R_MAP)},
        {"\xd4\x01\x02", 3, 0},
    };
#undef A
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *c = exact(cases[i].b, cases[i].n);
        for (int r = 0; r < R_N; r++) {
            const char *p = c;
            int rc = run_reader(r, &p, c + cases[i].n);
            int want = (cases[i].accepts >> r) & 1 ? 0 : MOOR_EINVAL;
            if (rc != want)
                fail_msg("sample %zu (0x%02x), reader %d: got %d, want %d", i, (unsigned char)c[0],
                         r, rc, want);
            if (rc)
                assert_ptr_equal(p, c); /* a refusal never moves the cursor */
            else
                assert_true(p > c);
        }
        free(c);
    }
}

/* ---- random trees ------------------------------------------------------------------- */

static int pack_random(msgpack_packer *pk, int depth)
{
    uint64_t r = testutil_rand(&rng);
    int kind = depth >= 6 ? (int)(r % 9) : (int)(r % 11);
    char body[300];
    size_t n = (size_t)((r >> 8) % 300);
    int rc = 0;

    memset(body, (int)(r >> 16), sizeof(body));
    switch (kind) {
    case 0: return msgpack_pack_nil(pk);
    case 1: return (r >> 20) & 1 ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case 2: return msgpack_pack_uint64(pk, testutil_rand(&rng) >> ((r >> 8) % 64));
    case 3: return msgpack_pack_int64(pk, -(int64_t)(testutil_rand(&rng) >> ((r >> 8) % 63 + 1)));
    case 4: return msgpack_pack_float(pk, (float)r);
    case 5: return msgpack_pack_double(pk, (double)r);
    case 6: return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, body, n);
    case 7: return msgpack_pack_bin(pk, n) || msgpack_pack_bin_body(pk, body, n);
    case 8: return msgpack_pack_ext(pk, n % 20, 1) || msgpack_pack_ext_body(pk, body, n % 20);
    case 9:
        n %= 20;
        rc = msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n && !rc; i++)
            rc = pack_random(pk, depth + 1);
        return rc;
    default:
        n %= 20;
        rc = msgpack_pack_map(pk, n);
        for (size_t i = 0; i < n && !rc; i++)
            rc = pack_random(pk, depth + 1) || pack_random(pk, depth + 1);
        return rc;
    }
}

/* Walks one object with peek and the typed readers only. */
static int walk(const char **p, const char *end)
{
    int t = moor_mp_peek(*p, end), rc;
    uint32_t n;

    if (t < 0)
        return t;
    if (t == MOOR_MP_ARRAY || t == MOOR_MP_MAP) {
        rc = t == MOOR_MP_ARRAY ? moor_mp_read_array(p, end, &n) : moor_mp_read_map(p, end, &n);
        uint64_t items = t == MOOR_MP_MAP ? 2 * (uint64_t)n : n;
        for (uint64_t i = 0; i < items && !rc; i++)
            rc = walk(p, end);
        return rc;
    }
    if (t == MOOR_MP_EXT)
        return moor_mp_skip(p, end, 0);
    static const int reader_of[] = {
        [MOOR_MP_NIL] = R_NIL, [MOOR_MP_BOOL] = R_BOOL,    [MOOR_MP_UINT] = R_UINT,
        [MOOR_MP_INT] = R_INT, [MOOR_MP_FLOAT] = R_DOUBLE, [MOOR_MP_STR] = R_STR,
        [MOOR_MP_BIN] = R_BIN};
    return run_reader(reader_of[t], p, end);
}

static void test_random_trees(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    for (int iter = 0; iter < 400; iter++) {
        /* the same tree into both packers: replay the generator's state */
        uint64_t seed = rng;
        msgpack_packer mpk, spk;
        msgpack_sbuffer sb;
        moor_buf_reset(&b);
        moor_mp_packer_init(&mpk, &b);
        assert_int_equal(pack_random(&mpk, 0), 0);
        rng = seed;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&spk, &sb, msgpack_sbuffer_write);
        assert_int_equal(pack_random(&spk, 0), 0);
        assert_int_equal(b.len, sb.size);
        assert_memory_equal(b.data, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        char *c = exact(b.data, b.len);
        const char *p = c, *end = c + b.len;
        assert_int_equal(moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH), 0);
        assert_ptr_equal(p, end);
        p = c;
        assert_int_equal(walk(&p, end), 0);
        assert_ptr_equal(p, end);
        /* msgpack-c's own unpacker agrees on where the object ends */
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, c, b.len, &off), MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(off, b.len);
        msgpack_unpacked_destroy(&u);
        free(c);
        if (b.len < 200)
            assert_truncations(b.data, b.len);
    }
    moor_buf_free(&b);
}

/* Objects back to back: skip takes exactly one at a time. */
static void test_skip_sequence(void **state)
{
    static const char seq[] = "\x01\xc0\xa2hi\x92\x01\x02\x80\xcd\x01\x00\xd4\x01\x02\xc3";
    static const size_t lens[] = {1, 1, 3, 3, 1, 3, 3, 1};
    const char *p = seq, *end = seq + sizeof(seq) - 1;

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        const char *before = p;
        assert_int_equal(moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH), 0);
        assert_int_equal((size_t)(p - before), lens[i]);
    }
    assert_ptr_equal(p, end);
    assert_int_equal(moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH), MOOR_EAGAIN);
}

/* Every first byte: peek agrees with the spec's table, and skip of the
 * byte alone is either a whole object, a truncation or 0xc1. */
static void test_every_first_byte(void **state)
{
    (void)state;
    for (int v = 0; v < 256; v++) {
        char c = (char)v;
        const char *p = &c;
        int t = moor_mp_peek(p, p + 1), rc = moor_mp_skip(&p, &c + 1, MOOR_MP_MAX_DEPTH);
        if (v == 0xc1) {
            assert_int_equal(t, MOOR_EPROTO);
            assert_int_equal(rc, MOOR_EPROTO);
            continue;
        }
        assert_in_range(t, MOOR_MP_NIL, MOOR_MP_EXT);
        int whole = v <= 0x7f || v >= 0xe0 || v == 0xc0 || v == 0xc2 || v == 0xc3 || v == 0x80 ||
                    v == 0x90 || v == 0xa0;
        if (rc != (whole ? 0 : MOOR_EAGAIN))
            fail_msg("byte 0x%02x: skip gave %d", v, rc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uint_boundaries), cmocka_unit_test(test_negative_boundaries),
        cmocka_unit_test(test_forced_widths),   cmocka_unit_test(test_floats_nil_bool),
        cmocka_unit_test(test_str_bin),         cmocka_unit_test(test_ext),
        cmocka_unit_test(test_containers),      cmocka_unit_test(test_reserved_c1),
        cmocka_unit_test(test_depth_limit),     cmocka_unit_test(test_lying_counts),
        cmocka_unit_test(test_type_mismatch),   cmocka_unit_test(test_random_trees),
        cmocka_unit_test(test_skip_sequence),   cmocka_unit_test(test_every_first_byte),
    };

    rng = testutil_seed("test_mp");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
