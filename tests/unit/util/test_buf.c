/*
 * test_buf.c -- the integer codecs and the growable buffer: varints at
 * every 7-bit boundary, decoders refusing truncated and overlong input
 * without moving the cursor, fixed32/fixed64 little-endian layout,
 * big-endian be64 whose byte order is numeric order, length-prefixed
 * bytes, buffer growth, reset, free and steal.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/err.h"
#include "testutil.h"

/* 0, then 2^(7k)-1, 2^(7k) and 2^(7k)+1 for every k whose 2^(7k) fits
 * (k = 9 gives 2^63, the sign bit), then the top two values: each is the
 * last or first value of a varint length.  Ascending. */
static size_t boundary_values(uint64_t *out)
{
    size_t n = 0;

    out[n++] = 0;
    for (int k = 1; k * 7 < 64; k++) {
        uint64_t p = (uint64_t)1 << (7 * k);
        out[n++] = p - 1;
        out[n++] = p;
        out[n++] = p + 1;
    }
    out[n++] = UINT64_MAX - 1;
    out[n++] = UINT64_MAX;
    return n;
}

/* Length the encoding must have: 1 byte per started group of 7 bits. */
static size_t expected_len(uint64_t v)
{
    size_t n = 1;
    while (v >>= 7)
        n++;
    return n;
}

static void test_varint_boundaries(void **state)
{
    uint64_t vals[64];
    size_t nv = boundary_values(vals);

    (void)state;
    for (size_t i = 0; i < nv; i++) {
        char enc[16];
        const char *p = enc;
        uint64_t got = 0;
        size_t len = moor_enc_varint(enc, vals[i]);

        assert_int_equal(len, expected_len(vals[i]));
        assert_int_equal(moor_varint_len(vals[i]), len);
        assert_in_range(len, 1, 10);
        /* Every byte but the last has the continuation bit. */
        for (size_t k = 0; k < len; k++)
            assert_int_equal((unsigned char)enc[k] >> 7, k + 1 < len);
        assert_int_equal(moor_get_varint(&p, enc + len, &got), 0);
        assert_int_equal(got, vals[i]);
        assert_ptr_equal(p, enc + len);
    }
    /* The two ends of the range, byte for byte. */
    {
        char enc[10];
        assert_int_equal(moor_enc_varint(enc, 0), 1);
        assert_int_equal(enc[0], 0);
        assert_int_equal(moor_enc_varint(enc, 300), 2);
        assert_memory_equal(enc, "\xac\x02", 2);
        assert_int_equal(moor_enc_varint(enc, UINT64_MAX), 10);
        assert_memory_equal(enc, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10);
    }
}

static void test_varint_random_roundtrip(void **state)
{
    uint64_t rng = testutil_seed("test_varint_random_roundtrip");
    moor_buf_t b = MOOR_BUF_INIT;
    uint64_t *vals = malloc(10000 * sizeof(*vals));
    const char *p, *end;

    (void)state;
    assert_non_null(vals);
    /* Random widths, so every length is well represented. */
    for (int i = 0; i < 10000; i++) {
        int bits = (int)(testutil_rand(&rng) % 65);
        uint64_t v = testutil_rand(&rng);
        vals[i] = bits == 64 ? v : v & (((uint64_t)1 << bits) - 1);
        assert_int_equal(moor_buf_put_varint(&b, vals[i]), 0);
    }
    p = b.data;
    end = b.data + b.len;
    for (int i = 0; i < 10000; i++) {
        uint64_t got;
        assert_int_equal(moor_get_varint(&p, end, &got), 0);
        assert_int_equal(got, vals[i]);
    }
    assert_ptr_equal(p, end);
    moor_buf_free(&b);
    free(vals);
}

/* Cutting an encoding short at any length must fail and leave the cursor
 * and the output alone. */
static void test_varint_truncated(void **state)
{
    uint64_t vals[64];
    size_t nv = boundary_values(vals);

    (void)state;
    for (size_t i = 0; i < nv; i++) {
        char enc[10];
        size_t len = moor_enc_varint(enc, vals[i]);
        for (size_t cut = 0; cut < len; cut++) {
            const char *p = enc;
            uint64_t got = 0x5a5a5a5a5a5a5a5au;
            assert_int_equal(moor_get_varint(&p, enc + cut, &got), MOOR_ECORRUPT);
            assert_ptr_equal(p, enc);
            assert_int_equal(got, 0x5a5a5a5a5a5a5a5au);
        }
    }
}

static void test_varint_overlong(void **state)
{
    char enc[16] = {0};
    const char *p;
    uint64_t got;

    (void)state;
    /* Eleven bytes: ten with the continuation bit, then a terminator. */
    memset(enc, 0x80, 10);
    enc[10] = 0x00;
    p = enc;
    assert_int_equal(moor_get_varint(&p, enc + 11, &got), MOOR_ECORRUPT);
    assert_ptr_equal(p, enc);
    /* Even with plenty of input after it. */
    memset(enc, 0xff, sizeof(enc));
    p = enc;
    assert_int_equal(moor_get_varint(&p, enc + sizeof(enc), &got), MOOR_ECORRUPT);
    assert_ptr_equal(p, enc);

    /* The tenth byte carries only bit 63: any value above 1 overflows. */
    for (int last = 0; last < 0x80; last++) {
        memset(enc, 0xff, 9);
        enc[9] = (char)last;
        p = enc;
        int rc = moor_get_varint(&p, enc + 10, &got);
        if (last <= 1) {
            assert_int_equal(rc, 0);
            assert_int_equal(got, last ? UINT64_MAX : UINT64_MAX >> 1);
            assert_ptr_equal(p, enc + 10);
        } else {
            assert_int_equal(rc, MOOR_ECORRUPT);
            assert_ptr_equal(p, enc);
        }
    }
}

static void test_fixed_roundtrip(void **state)
{
    uint64_t rng = testutil_seed("test_fixed_roundtrip");
    moor_buf_t b = MOOR_BUF_INIT;
    const char *p, *end;
    uint32_t v32;
    uint64_t v64;

    (void)state;
    /* Little-endian on disk whatever the host. */
    assert_int_equal(moor_buf_put_fixed32(&b, 0x04030201u), 0);
    assert_int_equal(moor_buf_put_fixed64(&b, 0x0807060504030201ull), 0);
    assert_int_equal(b.len, 12);
    assert_memory_equal(b.data, "\x01\x02\x03\x04\x01\x02\x03\x04\x05\x06\x07\x08", 12);
    p = b.data;
    end = b.data + b.len;
    assert_int_equal(moor_get_fixed32(&p, end, &v32), 0);
    assert_int_equal(v32, 0x04030201u);
    assert_int_equal(moor_get_fixed64(&p, end, &v64), 0);
    assert_int_equal(v64, 0x0807060504030201ull);
    assert_ptr_equal(p, end);

    for (int i = 0; i < 1000; i++) {
        char t[8];
        uint64_t x = testutil_rand(&rng);
        moor_enc_fixed32(t, (uint32_t)x);
        assert_int_equal(moor_dec_fixed32(t), (uint32_t)x);
        moor_enc_fixed64(t, x);
        assert_int_equal(moor_dec_fixed64(t), x);
    }

    /* Short input: fail and leave the cursor. */
    for (size_t cut = 0; cut < 8; cut++) {
        p = b.data + 4;
        if (cut < 4) {
            const char *q = b.data;
            assert_int_equal(moor_get_fixed32(&q, b.data + cut, &v32), MOOR_ECORRUPT);
            assert_ptr_equal(q, b.data);
        }
        assert_int_equal(moor_get_fixed64(&p, b.data + 4 + cut, &v64), MOOR_ECORRUPT);
        assert_ptr_equal(p, b.data + 4);
    }
    moor_buf_free(&b);
}

static void test_be64(void **state)
{
    uint64_t rng = testutil_seed("test_be64");
    moor_buf_t b = MOOR_BUF_INIT;
    uint64_t vals[64];
    size_t nv = boundary_values(vals);
    char t[8], u[8];

    (void)state;
    assert_int_equal(moor_buf_put_be64(&b, 0x0102030405060708ull), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    assert_int_equal(moor_dec_be64(b.data), 0x0102030405060708ull);
    moor_buf_free(&b);

    /* boundary_values() is ascending: the encodings must be too. */
    for (size_t i = 0; i + 1 < nv; i++) {
        assert_true(vals[i] < vals[i + 1]);
        moor_enc_be64(t, vals[i]);
        moor_enc_be64(u, vals[i + 1]);
        assert_true(memcmp(t, u, 8) < 0);
        assert_int_equal(moor_dec_be64(t), vals[i]);
    }
    for (int i = 0; i < 100000; i++) {
        uint64_t x = testutil_rand(&rng), y = testutil_rand(&rng);
        if (i & 1) /* pairs that share a long prefix */
            y = x ^ (testutil_rand(&rng) & 0xff);
        moor_enc_be64(t, x);
        moor_enc_be64(u, y);
        int c = memcmp(t, u, 8);
        assert_int_equal(c < 0, x < y);
        assert_int_equal(c == 0, x == y);
        assert_int_equal(moor_dec_be64(t), x);
    }
}

static void test_lenbytes(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    char big[300];
    const char *p, *end, *data;
    size_t n;

    (void)state;
    memset(big, 'z', sizeof(big));
    assert_int_equal(moor_buf_put_lenbytes(&b, "", 0), 0);
    assert_int_equal(moor_buf_put_lenbytes(&b, "hello", 5), 0);
    assert_int_equal(moor_buf_put_lenbytes(&b, big, sizeof(big)), 0);
    /* 1 + (1 + 5) + (2 + 300) */
    assert_int_equal(b.len, 309);
    p = b.data;
    end = b.data + b.len;
    assert_int_equal(moor_get_lenbytes(&p, end, &data, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(moor_get_lenbytes(&p, end, &data, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(data, "hello", 5);
    assert_ptr_equal(data, b.data + 2); /* borrowed from the input */
    assert_int_equal(moor_get_lenbytes(&p, end, &data, &n), 0);
    assert_int_equal(n, sizeof(big));
    assert_memory_equal(data, big, sizeof(big));
    assert_ptr_equal(p, end);

    /* Truncated anywhere in the last record: length or payload. */
    for (size_t cut = 7; cut < b.len; cut++) {
        p = b.data + 7;
        data = NULL;
        assert_int_equal(moor_get_lenbytes(&p, b.data + cut, &data, &n), MOOR_ECORRUPT);
        assert_ptr_equal(p, b.data + 7);
        assert_null(data);
    }
    /* A length that claims more than there is, a length of 2^64-1 (must
     * not wrap the pointer arithmetic), and an overlong length varint. */
    {
        static const char lie[] = "\x05"
                                  "abcd";
        static const char huge[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
                                   "x";
        static const char overlong[] = "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00"
                                       "x";
        p = lie;
        assert_int_equal(moor_get_lenbytes(&p, lie + 5, &data, &n), MOOR_ECORRUPT);
        assert_ptr_equal(p, lie);
        p = huge;
        assert_int_equal(moor_get_lenbytes(&p, huge + 11, &data, &n), MOOR_ECORRUPT);
        assert_ptr_equal(p, huge);
        p = overlong;
        assert_int_equal(moor_get_lenbytes(&p, overlong + 12, &data, &n), MOOR_ECORRUPT);
        assert_ptr_equal(p, overlong);
    }
    moor_buf_free(&b);
}

static void test_growth(void **state)
{
    uint64_t rng = testutil_seed("test_growth");
    moor_buf_t b;
    unsigned char *shadow = malloc(1 << 20);
    size_t len = 0;

    (void)state;
    assert_non_null(shadow);
    moor_buf_init(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(moor_buf_append(&b, NULL, 0), 0); /* empty append is a no-op */
    assert_int_equal(b.len, 0);

    while (len < (1 << 20) - 5000) {
        size_t n = (size_t)(testutil_rand(&rng) % 4000);
        for (size_t i = 0; i < n; i++)
            shadow[len + i] = (unsigned char)testutil_rand(&rng);
        if (n == 1 && (rng & 1))
            assert_int_equal(moor_buf_put_u8(&b, shadow[len]), 0);
        else
            assert_int_equal(moor_buf_append(&b, shadow + len, n), 0);
        len += n;
        assert_int_equal(b.len, len);
        assert_true(b.cap >= b.len);
    }
    assert_memory_equal(b.data, shadow, len);

    /* reserve makes room without changing the contents. */
    assert_int_equal(moor_buf_reserve(&b, 100000), 0);
    assert_true(b.cap >= b.len + 100000);
    assert_int_equal(b.len, len);
    assert_memory_equal(b.data, shadow, len);
    {
        /* An impossible request fails and leaves the buffer as it was. */
        char *d = b.data;
        size_t cap = b.cap;
        assert_int_equal(moor_buf_reserve(&b, SIZE_MAX), MOOR_ENOMEM);
        assert_int_equal(moor_buf_append(&b, shadow, SIZE_MAX), MOOR_ENOMEM);
        assert_ptr_equal(b.data, d);
        assert_int_equal(b.cap, cap);
        assert_int_equal(b.len, len);
    }

    /* reset keeps the memory; free gives it back and leaves it reusable. */
    {
        size_t cap = b.cap;
        moor_buf_reset(&b);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.cap, cap);
        assert_int_equal(moor_buf_put_u8(&b, 7), 0);
        assert_int_equal(b.cap, cap);
    }
    moor_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(moor_buf_append(&b, "again", 5), 0);
    assert_memory_equal(b.data, "again", 5);
    moor_buf_free(&b);
    free(shadow);
}

static void test_steal(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    size_t n = 12345;
    char *d;

    (void)state;
    /* An empty buffer gives NULL and length 0. */
    d = moor_buf_steal(&b, &n);
    assert_null(d);
    assert_int_equal(n, 0);

    for (int i = 0; i < 1000; i++)
        assert_int_equal(moor_buf_put_fixed32(&b, (uint32_t)i), 0);
    d = moor_buf_steal(&b, &n);
    assert_non_null(d);
    assert_int_equal(n, 4000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(moor_dec_fixed32(d + 4 * i), (uint32_t)i);
    /* The buffer is empty and independent of the stolen bytes. */
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(moor_buf_append(&b, "x", 1), 0);
    assert_ptr_not_equal(b.data, d);
    free(d);

    /* len may be NULL. */
    d = moor_buf_steal(&b, NULL);
    assert_non_null(d);
    assert_int_equal(d[0], 'x');
    free(d);
    moor_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_boundaries),
        cmocka_unit_test(test_varint_random_roundtrip),
        cmocka_unit_test(test_varint_truncated),
        cmocka_unit_test(test_varint_overlong),
        cmocka_unit_test(test_fixed_roundtrip),
        cmocka_unit_test(test_be64),
        cmocka_unit_test(test_lenbytes),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
