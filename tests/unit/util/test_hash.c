/*
 * test_hash.c -- moor_hash_token() is part of the on-disk and wire format
 * (the ring position of a key), so it is pinned twice: against XXH64 seed 0
 * from <xxhash.h> on random inputs of every length and alignment, and
 * against fixed values (computed once with libxxhash 0.8.1; "", "abc" and
 * the quick-brown-fox values also match the ones published for XXH64) so a
 * change of library or seed cannot slip through.  moor_hash64() is XXH3
 * with a seed: same check, plus seeds must matter.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <xxhash.h>

#include "util/hash.h"
#include "testutil.h"

typedef struct pinned {
    const char *s;
    uint64_t token;
} pinned_t;

static const pinned_t pins[] = {
    {"", 0xef46db3751d8e999ull},
    {"a", 0xd24ec4f1a98c6e5bull},
    {"abc", 0x44bc2cf5ad770999ull},
    {"123456789", 0x8cb841db40e6ae83ull},
    {"moor", 0x858bd5e156e34c71ull},
    {"The quick brown fox jumps over the lazy dog", 0x0b242d361fda71bcull},
};

static void test_token_pinned(void **state)
{
    unsigned char b[1000];

    (void)state;
    for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
        print_message("  token(\"%s\")\n", pins[i].s);
        assert_int_equal(moor_hash_token(pins[i].s, strlen(pins[i].s)), pins[i].token);
    }
    /* Long enough for XXH64's 32-byte stripe loop. */
    for (int i = 0; i < 1000; i++)
        b[i] = (unsigned char)i;
    assert_int_equal(moor_hash_token(b, sizeof(b)), 0x6ef436b00eba4078ull);
    /* NULL with length 0 is the empty key. */
    assert_int_equal(moor_hash_token(NULL, 0), 0xef46db3751d8e999ull);
}

static void test_token_is_xxh64_seed0(void **state)
{
    uint64_t rng = testutil_seed("test_token_is_xxh64_seed0");
    unsigned char *buf = malloc(600);

    (void)state;
    assert_non_null(buf);
    for (int i = 0; i < 600; i++)
        buf[i] = (unsigned char)testutil_rand(&rng);
    for (size_t align = 0; align < 8; align++)
        for (size_t len = 0; len <= 512; len++)
            assert_int_equal(moor_hash_token(buf + align, len), XXH64(buf + align, len, 0));
    free(buf);
}

/* Same bytes, same token, wherever they sit in memory. */
static void test_token_deterministic(void **state)
{
    uint64_t rng = testutil_seed("test_token_deterministic");
    char a[200], b[208];

    (void)state;
    for (int round = 0; round < 1000; round++) {
        size_t len = (size_t)(testutil_rand(&rng) % 200);
        size_t off = (size_t)(testutil_rand(&rng) % 8);
        for (size_t i = 0; i < len; i++)
            a[i] = (char)testutil_rand(&rng);
        memcpy(b + off, a, len);
        uint64_t t = moor_hash_token(a, len);
        assert_int_equal(moor_hash_token(a, len), t);
        assert_int_equal(moor_hash_token(b + off, len), t);
        if (len > 0) { /* and a one-bit change moves it */
            b[off] ^= 1;
            assert_int_not_equal(moor_hash_token(b + off, len), t);
        }
    }
}

static void test_hash64(void **state)
{
    uint64_t rng = testutil_seed("test_hash64");
    unsigned char buf[300];

    (void)state;
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)testutil_rand(&rng);
    for (size_t len = 0; len <= sizeof(buf); len++) {
        uint64_t seed = testutil_rand(&rng);
        uint64_t h = moor_hash64(buf, len, seed);
        assert_int_equal(h, XXH3_64bits_withSeed(buf, len, seed));
        assert_int_equal(moor_hash64(buf, len, seed), h);
        assert_int_not_equal(moor_hash64(buf, len, seed + 1), h);
    }
    /* A different function from the token: the two must not be confused. */
    assert_int_not_equal(moor_hash64("abc", 3, 0), moor_hash_token("abc", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_pinned),
        cmocka_unit_test(test_token_is_xxh64_seed0),
        cmocka_unit_test(test_token_deterministic),
        cmocka_unit_test(test_hash64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
