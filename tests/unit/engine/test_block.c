/*
 * test_block.c -- blocks: builder/iterator round trips, seeks against a
 * reference lower bound, and malformed blocks (which must give
 * MOOR_ECORRUPT or a bounded walk, never an out-of-bounds read: run under
 * ASan to make that check bite).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/block.h"
#include "engine/ikey.h"
#include "engine/table_format.h"
#include "testutil.h"
#include "util/err.h"

typedef struct kv {
    moor_buf_t key;
    moor_buf_t val;
} kv_t;

static uint64_t rng;

static int kv_ikey_cmp(const void *a, const void *b)
{
    const kv_t *x = a, *y = b;
    return moor_ikey_cmp(x->key.data, x->key.len, y->key.data, y->key.len);
}

/* Byte-order comparator that is safe on keys of any length (for blocks
 * whose bytes we corrupt). */
static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    return moor_ukey_cmp(a, alen, b, blen);
}

static void rand_bytes(moor_buf_t *b, size_t n, int alpha)
{
    for (size_t i = 0; i < n; i++) {
        char c = alpha ? (char)('a' + testutil_rand(&rng) % 4) : (char)testutil_rand(&rng);
        assert_int_equal(moor_buf_append(b, &c, 1), 0);
    }
}

/* n random internal keys, sorted and distinct; user keys over a small
 * alphabet so that prefixes are shared and versions repeat. */
static kv_t *make_kvs(size_t n)
{
    kv_t *kv = calloc(n, sizeof(*kv));
    size_t out = 0;

    assert_non_null(kv);
    for (size_t i = 0; i < n; i++) {
        moor_buf_t uk = MOOR_BUF_INIT;
        rand_bytes(&uk, 1 + testutil_rand(&rng) % 12, 1);
        moor_buf_init(&kv[i].key);
        moor_buf_init(&kv[i].val);
        assert_int_equal(
            moor_ikey_build(&kv[i].key, uk.data, uk.len, testutil_rand(&rng) % 100, MOOR_VT_PUT),
            0);
        rand_bytes(&kv[i].val, testutil_rand(&rng) % 40, 0);
        moor_buf_free(&uk);
    }
    qsort(kv, n, sizeof(*kv), kv_ikey_cmp);
    for (size_t i = 0; i < n; i++) { /* drop duplicates */
        if (out && kv_ikey_cmp(&kv[out - 1], &kv[i]) == 0) {
            moor_buf_free(&kv[i].key);
            moor_buf_free(&kv[i].val);
            continue;
        }
        kv[out++] = kv[i];
    }
    for (size_t i = out; i < n; i++)
        moor_buf_init(&kv[i].key), moor_buf_init(&kv[i].val);
    return kv;
}

static size_t kvs_unique(const kv_t *kv, size_t n)
{
    size_t u = 0;
    while (u < n && kv[u].key.len)
        u++;
    return u;
}

static void free_kvs(kv_t *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        moor_buf_free(&kv[i].key);
        moor_buf_free(&kv[i].val);
    }
    free(kv);
}

static void build(moor_block_builder_t *b, const kv_t *kv, size_t n, const char **data, size_t *len)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(
            moor_block_builder_add(b, kv[i].key.data, kv[i].key.len, kv[i].val.data, kv[i].val.len),
            0);
    size_t predicted = moor_block_builder_size(b);
    assert_int_equal(moor_block_builder_finish(b, data, len), 0);
    assert_int_equal(*len, predicted);
}

static void expect_at(const moor_iiter_t *it, const kv_t *kv)
{
    assert_true(it->valid);
    assert_int_equal(it->klen, kv->key.len);
    assert_memory_equal(it->key, kv->key.data, kv->key.len);
    assert_int_equal(it->vlen, kv->val.len);
    if (kv->val.len)
        assert_memory_equal(it->val, kv->val.data, kv->val.len);
}

/* First index i with kv[i] >= target, n if none. */
static size_t lower_bound(const kv_t *kv, size_t n, const char *t, size_t tlen)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (moor_ikey_cmp(kv[mid].key.data, kv[mid].key.len, t, tlen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void round_trip(size_t nraw, int interval)
{
    kv_t *kv = make_kvs(nraw);
    size_t n = kvs_unique(kv, nraw), len;
    moor_block_builder_t b;
    const char *data;
    moor_iiter_t *it;

    moor_block_builder_init(&b, interval);
    build(&b, kv, n, &data, &len);
    it = moor_block_iter(data, len, moor_ikey_cmp, NULL, NULL);
    assert_non_null(it);
    assert_int_equal(it->status, 0);

    size_t i = 0;
    for (it->seek_first(it); it->valid; it->next(it), i++) {
        assert_true(i < n);
        expect_at(it, &kv[i]);
    }
    assert_int_equal(i, n);
    assert_int_equal(it->status, 0);

    for (i = 0; i < n; i++) { /* every key, and the version just newer */
        it->seek(it, kv[i].key.data, kv[i].key.len);
        expect_at(it, &kv[i]);
        moor_buf_t t = MOOR_BUF_INIT;
        uint64_t seq = moor_ikey_seq(kv[i].key.data, kv[i].key.len);
        moor_ikey_build(&t, kv[i].key.data, moor_ikey_ulen(kv[i].key.len), seq + 1, 0);
        size_t want = lower_bound(kv, n, t.data, t.len);
        it->seek(it, t.data, t.len);
        if (want == n)
            assert_false(it->valid);
        else
            expect_at(it, &kv[want]);
        moor_buf_free(&t);
    }
    for (int r = 0; r < 2000; r++) { /* random targets: between, before, after */
        moor_buf_t uk = MOOR_BUF_INIT, t = MOOR_BUF_INIT;
        rand_bytes(&uk, testutil_rand(&rng) % 14, 1);
        moor_ikey_build(&t, uk.data, uk.len, testutil_rand(&rng) % 110, MOOR_VT_PUT);
        size_t want = lower_bound(kv, n, t.data, t.len);
        it->seek(it, t.data, t.len);
        if (want == n) {
            assert_false(it->valid);
        } else {
            expect_at(it, &kv[want]);
            if (want + 1 < n) {
                it->next(it);
                expect_at(it, &kv[want + 1]);
            }
        }
        assert_int_equal(it->status, 0);
        moor_buf_free(&uk);
        moor_buf_free(&t);
    }
    moor_iiter_destroy(it);
    moor_block_builder_free(&b);
    free_kvs(kv, nraw);
}

static void test_round_trip_small(void **state)
{
    round_trip(1, MOOR_BLOCK_RESTART);
    round_trip(2, MOOR_BLOCK_RESTART);
    round_trip(17, MOOR_BLOCK_RESTART);
    round_trip(50, 1);
}

static void test_round_trip_large(void **state)
{
    round_trip(3000, MOOR_BLOCK_RESTART);
    round_trip(3000, 1);
    round_trip(1000, 3);
}

static void test_empty_block(void **state)
{
    moor_block_builder_t b;
    const char *data;
    size_t len;
    moor_iiter_t *it;
    char key[9] = "k";

    moor_block_builder_init(&b, MOOR_BLOCK_RESTART);
    assert_true(moor_block_builder_empty(&b));
    assert_int_equal(moor_block_builder_finish(&b, &data, &len), 0);
    assert_int_equal(len, 8);
    it = moor_block_iter(data, len, moor_ikey_cmp, NULL, NULL);
    assert_non_null(it);
    it->seek_first(it);
    assert_false(it->valid);
    it->seek(it, key, sizeof(key));
    assert_false(it->valid);
    assert_int_equal(it->status, 0);
    moor_iiter_destroy(it);
    moor_block_builder_free(&b);
}

static void test_reset_reuse(void **state)
{
    moor_block_builder_t b;
    const char *data;
    size_t len;
    moor_iiter_t *it;

    moor_block_builder_init(&b, 2);
    for (int round = 0; round < 3; round++) {
        moor_block_builder_reset(&b);
        for (int i = 0; i < 5; i++) {
            char k[2] = {(char)('a' + round), (char)('0' + i)};
            assert_int_equal(moor_block_builder_add(&b, k, 2, k, 1), 0);
        }
        assert_int_equal(moor_block_builder_finish(&b, &data, &len), 0);
        it = moor_block_iter(data, len, bytes_cmp, NULL, NULL);
        int i = 0;
        for (it->seek_first(it); it->valid; it->next(it), i++) {
            assert_int_equal(it->klen, 2);
            assert_int_equal(it->key[0], 'a' + round);
            assert_int_equal(it->key[1], '0' + i);
        }
        assert_int_equal(i, 5);
        moor_iiter_destroy(it);
    }
    moor_block_builder_free(&b);
}

static int released;
static void count_release(void *arg)
{
    released += *(int *)arg;
}

static void test_release_called(void **state)
{
    moor_block_builder_t b;
    const char *data;
    size_t len;
    int inc = 7;

    released = 0;
    moor_block_builder_init(&b, 4);
    assert_int_equal(moor_block_builder_add(&b, "a", 1, "x", 1), 0);
    assert_int_equal(moor_block_builder_finish(&b, &data, &len), 0);
    moor_iiter_destroy(moor_block_iter(data, len, bytes_cmp, count_release, &inc));
    assert_int_equal(released, 7);
    /* also on a block rejected as malformed */
    moor_iiter_t *it = moor_block_iter(data, 3, bytes_cmp, count_release, &inc);
    assert_int_equal(it->status, MOOR_ECORRUPT);
    moor_iiter_destroy(it);
    assert_int_equal(released, 14);
    moor_block_builder_free(&b);
}

static void expect_corrupt(const char *data, size_t len)
{
    moor_iiter_t *it = moor_block_iter(data, len, bytes_cmp, NULL, NULL);

    assert_non_null(it);
    assert_int_equal(it->status, MOOR_ECORRUPT);
    it->seek_first(it);
    assert_false(it->valid);
    it->seek(it, "a", 1);
    assert_false(it->valid);
    assert_int_equal(it->status, MOOR_ECORRUPT);
    moor_iiter_destroy(it);
}

static void test_bad_restart_arrays(void **state)
{
    char blk[64];
    memset(blk, 0, sizeof(blk));

    expect_corrupt(blk, 0);
    expect_corrupt(blk, 3);
    expect_corrupt(blk, 4);          /* nrestarts = 0 */
    moor_enc_fixed32(blk + 4, 1000); /* nrestarts too big */
    expect_corrupt(blk, 8);
    moor_enc_fixed32(blk + 4, 1);
    moor_enc_fixed32(blk, 5); /* first restart not 0 */
    expect_corrupt(blk, 8);

    /* 16 bytes of entries, restarts {0, 8, 8}: not increasing */
    moor_enc_fixed32(blk + 16, 0);
    moor_enc_fixed32(blk + 20, 8);
    moor_enc_fixed32(blk + 24, 8);
    moor_enc_fixed32(blk + 28, 3);
    expect_corrupt(blk, 32);
    /* restart at the end of the entry region */
    moor_enc_fixed32(blk + 24, 16);
    expect_corrupt(blk, 32);
    /* empty region with two restarts */
    moor_enc_fixed32(blk, 0);
    moor_enc_fixed32(blk + 4, 0);
    moor_enc_fixed32(blk + 8, 2);
    expect_corrupt(blk, 12);
}

static void test_bad_entries(void **state)
{
    char blk[32];
    moor_iiter_t *it;

    /* shared 1 at a restart point */
    memset(blk, 0, sizeof(blk));
    blk[0] = 1, blk[1] = 1, blk[2] = 0, blk[3] = 'a';
    moor_enc_fixed32(blk + 4, 0);
    moor_enc_fixed32(blk + 8, 1);
    it = moor_block_iter(blk, 12, bytes_cmp, NULL, NULL);
    assert_int_equal(it->status, 0);
    it->seek_first(it);
    assert_false(it->valid);
    assert_int_equal(it->status, MOOR_ECORRUPT);
    moor_iiter_destroy(it);

    /* unshared length runs past the entry region */
    blk[0] = 0, blk[1] = 10;
    it = moor_block_iter(blk, 12, bytes_cmp, NULL, NULL);
    it->seek(it, "a", 1);
    assert_false(it->valid);
    assert_int_equal(it->status, MOOR_ECORRUPT);
    moor_iiter_destroy(it);

    /* unterminated varint */
    blk[0] = (char)0x80, blk[1] = (char)0x80, blk[2] = (char)0x80, blk[3] = (char)0x80;
    it = moor_block_iter(blk, 12, bytes_cmp, NULL, NULL);
    it->seek_first(it);
    assert_int_equal(it->status, MOOR_ECORRUPT);
    moor_iiter_destroy(it);

    /* value length past the region, on the second entry */
    blk[0] = 0, blk[1] = 1, blk[2] = 0, blk[3] = 'a';
    blk[4] = 1, blk[5] = 0, blk[6] = 9, blk[7] = 0;
    moor_enc_fixed32(blk + 8, 0);
    moor_enc_fixed32(blk + 12, 1);
    it = moor_block_iter(blk, 16, bytes_cmp, NULL, NULL);
    it->seek_first(it);
    assert_true(it->valid);
    assert_int_equal(it->klen, 1);
    it->next(it);
    assert_false(it->valid);
    assert_int_equal(it->status, MOOR_ECORRUPT);
    it->seek_first(it); /* sticky */
    assert_false(it->valid);
    moor_iiter_destroy(it);
}

/* Walks everything reachable from a (possibly malformed) block; the walk
 * must stay bounded and in bounds. */
static void walk(const char *data, size_t len)
{
    moor_iiter_t *it = moor_block_iter(data, len, bytes_cmp, NULL, NULL);
    size_t steps = 0;

    assert_non_null(it);
    for (it->seek_first(it); it->valid; it->next(it)) {
        assert_true(it->key + it->klen >= it->key);
        assert_true(it->val >= data && it->val + it->vlen <= data + len);
        assert_true(++steps <= len);
    }
    it->seek(it, "b", 1);
    it->seek(it, "", 0);
    it->seek(it, "\xff\xff", 2);
    moor_iiter_destroy(it);
}

static void test_mutations_never_overrun(void **state)
{
    moor_block_builder_t b;
    const char *data;
    size_t len;
    char key[16];

    moor_block_builder_init(&b, 4);
    for (int i = 0; i < 40; i++) {
        int kl = snprintf(key, sizeof(key), "key%05d", i * 7);
        assert_int_equal(moor_block_builder_add(&b, key, (size_t)kl, key, (size_t)(i % 5)), 0);
    }
    assert_int_equal(moor_block_builder_finish(&b, &data, &len), 0);
    walk(data, len);
    for (size_t cut = 0; cut < len; cut++) { /* truncations, each in an exact-size copy */
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, data, cut);
        walk(copy, cut);
        free(copy);
    }
    char *copy = malloc(len);
    for (size_t pos = 0; pos < len; pos++) {
        for (int v = 0; v < 4; v++) {
            memcpy(copy, data, len);
            copy[pos] ^= (char)(v == 3 ? 0xff : 1 << (testutil_rand(&rng) % 8));
            walk(copy, len);
        }
    }
    for (int r = 0; r < 3000; r++) { /* several random bytes at once */
        memcpy(copy, data, len);
        for (int k = 0; k < 4; k++)
            copy[testutil_rand(&rng) % len] = (char)testutil_rand(&rng);
        walk(copy, len);
    }
    free(copy);
    moor_block_builder_free(&b);
}

int main(void)
{
    rng = testutil_seed("test_block");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_small), cmocka_unit_test(test_round_trip_large),
        cmocka_unit_test(test_empty_block),      cmocka_unit_test(test_reset_reuse),
        cmocka_unit_test(test_release_called),   cmocka_unit_test(test_bad_restart_arrays),
        cmocka_unit_test(test_bad_entries),      cmocka_unit_test(test_mutations_never_overrun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
