/*
 * test_bloom.c -- the SSTable Bloom filter: layout (size, k byte), no false
 * negatives, a false-positive rate near theory at 10 bits/key, and safety
 * on garbage filters.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/bloom.h"
#include "testutil.h"
#include "util/buf.h"

static uint64_t key_hash(const char *prefix, uint64_t i)
{
    char k[64];
    int n = snprintf(k, sizeof(k), "%s%08llu", prefix, (unsigned long long)i);

    return moor_bloom_hash(k, (size_t)n);
}

static void build_filter(const char *prefix, size_t n, unsigned bpk, moor_buf_t *out)
{
    uint64_t *h = malloc((n ? n : 1) * sizeof(*h));

    assert_non_null(h);
    for (size_t i = 0; i < n; i++)
        h[i] = key_hash(prefix, i);
    assert_int_equal(moor_bloom_build(h, n, bpk, out), 0);
    free(h);
}

static void test_hash_stable(void **state)
{
    (void)state;
    assert_true(moor_bloom_hash("abc", 3) == moor_bloom_hash("abc", 3));
    assert_true(moor_bloom_hash("abc", 3) != moor_bloom_hash("abd", 3));
    assert_true(moor_bloom_hash("abc", 3) != moor_bloom_hash("abc", 2));
    assert_true(moor_bloom_hash("", 0) == moor_bloom_hash(NULL, 0));
}

static void test_layout_and_k(void **state)
{
    static const struct {
        size_t n;
        unsigned bpk;
        size_t len; /* bytes + k byte */
        unsigned k;
    } cases[] = {
        {0, 10, 8 + 1, 7},        {1, 10, 8 + 1, 7},  {100, 10, 125 + 1, 7},
        {100, 1, 13 + 1, 1},      {100, 0, 8 + 1, 1}, {10, 20, 25 + 1, 14},
        {1000, 50, 6250 + 1, 30}, {7, 3, 8 + 1, 2},   {9, 9, 11 + 1, 6},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        moor_buf_t b = MOOR_BUF_INIT;

        build_filter("k", cases[i].n, cases[i].bpk, &b);
        assert_int_equal(b.len, cases[i].len);
        assert_int_equal((unsigned char)b.data[b.len - 1], cases[i].k);
        moor_buf_free(&b);
    }
}

static void test_appends_after_existing_bytes(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    (void)state;

    assert_int_equal(moor_buf_append(&b, "prefix", 6), 0);
    build_filter("k", 500, 10, &b);
    assert_memory_equal(b.data, "prefix", 6);
    for (uint64_t i = 0; i < 500; i++)
        assert_true(moor_bloom_may_contain(b.data + 6, b.len - 6, key_hash("k", i)));
    moor_buf_free(&b);
}

static void test_no_false_negatives(void **state)
{
    static const size_t sizes[] = {1, 2, 10, 63, 64, 65, 100, 1000, 10000};
    (void)state;

    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (unsigned bpk = 0; bpk <= 24; bpk += 3) {
            moor_buf_t b = MOOR_BUF_INIT;

            build_filter("present", sizes[s], bpk, &b);
            for (uint64_t i = 0; i < sizes[s]; i++) {
                if (!moor_bloom_may_contain(b.data, b.len, key_hash("present", i)))
                    fail_msg("false negative: n=%zu bpk=%u key %llu", sizes[s], bpk,
                             (unsigned long long)i);
            }
            moor_buf_free(&b);
        }
    }
}

static void test_empty_filter_rejects(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    size_t yes = 0;
    (void)state;

    build_filter("k", 0, 10, &b);
    for (uint64_t i = 0; i < 1000; i++)
        yes += moor_bloom_may_contain(b.data, b.len, key_hash("k", i));
    assert_int_equal(yes, 0);
    moor_buf_free(&b);
}

static void test_false_positive_rate(void **state)
{
    const size_t n = 100000;
    moor_buf_t b = MOOR_BUF_INIT;
    size_t fp = 0;
    double rate;
    (void)state;

    build_filter("present-", n, 10, &b);
    for (uint64_t i = 0; i < n; i++)
        assert_true(moor_bloom_may_contain(b.data, b.len, key_hash("present-", i)));
    for (uint64_t i = 0; i < n; i++)
        fp += moor_bloom_may_contain(b.data, b.len, key_hash("absent-", i));
    rate = (double)fp / (double)n;
    fprintf(stderr, "bloom: 10 bits/key, %zu keys: false-positive rate %.4f%% (%zu of %zu)\n", n,
            rate * 100.0, fp, n);
    if (rate < 0.004 || rate > 0.02)
        fail_msg("false-positive rate %.4f%% outside [0.4%%, 2%%]", rate * 100.0);
    moor_buf_free(&b);
}

static void test_garbage_filters(void **state)
{
    const size_t maxlen = 512;
    uint64_t rnd = testutil_seed("bloom garbage");
    (void)state;

    assert_true(moor_bloom_may_contain(NULL, 0, 1));
    assert_true(moor_bloom_may_contain("", 0, 1));
    assert_true(moor_bloom_may_contain("\x00", 1, 1));
    for (int round = 0; round < 20000; round++) {
        size_t len = testutil_rand(&rnd) % maxlen;
        char *f = malloc(len ? len : 1); /* exact size so ASan sees overreads */

        assert_non_null(f);
        for (size_t i = 0; i < len; i++)
            f[i] = (char)testutil_rand(&rnd);
        (void)moor_bloom_may_contain(f, len, testutil_rand(&rnd));
        if (len >= 2) {
            f[len - 1] = (char)(31 + testutil_rand(&rnd) % 225); /* unknown k */
            assert_true(moor_bloom_may_contain(f, len, testutil_rand(&rnd)));
            f[len - 1] = 0; /* k = 0 probes nothing: may contain */
            assert_true(moor_bloom_may_contain(f, len, testutil_rand(&rnd)));
        }
        free(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_stable),
        cmocka_unit_test(test_layout_and_k),
        cmocka_unit_test(test_appends_after_existing_bytes),
        cmocka_unit_test(test_no_false_negatives),
        cmocka_unit_test(test_empty_filter_rejects),
        cmocka_unit_test(test_false_positive_rate),
        cmocka_unit_test(test_garbage_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
