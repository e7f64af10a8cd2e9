/*
 * test_table.c -- SSTables: round trips with and without compression,
 * filter and cache; gets of present and absent keys at several snapshots;
 * full scans and seeks against the input; and corruption (every flipped
 * byte, every truncation) which must give a clean error or the exact data,
 * never wrong data and never a crash.
 *
 * TEST: with MOOR_WRITE_CORPUS=DIR set, test_write_corpus writes the seed
 * corpus of tests/fuzz/fuzz_table.c into DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>

#include "engine/cache.h"
#include "engine/ikey.h"
#include "engine/table.h"
#include "engine/table_format.h"
#include "testutil.h"
#include "util/crc32c.h"
#include "util/err.h"

typedef struct ent {
    moor_buf_t key; /* internal key */
    moor_buf_t val;
} ent_t;

typedef struct dataset {
    ent_t *e;
    size_t n;
    size_t nusers; /* distinct user keys */
} dataset_t;

static uint64_t rng;
static char *tmpdir;

/* ---- data ------------------------------------------------------------ */

/* n entries over user keys "user%08u" (every other number, so that odd
 * numbers are absent), 1-3 versions each, newest first; values compressible
 * when compressible is set, and in sets of 100+ entries an occasional one
 * larger than a block. */
static void make_dataset(dataset_t *d, size_t n, int compressible)
{
    char uk[32];
    unsigned u = 0;

    d->e = calloc(n, sizeof(*d->e));
    d->n = 0;
    d->nusers = 0;
    assert_non_null(d->e);
    while (d->n < n) {
        int ul = snprintf(uk, sizeof(uk), "user%08u", 2 * u++);
        uint64_t versions = 1 + testutil_rand(&rng) % 3, seq = 1000000 + testutil_rand(&rng) % 1000;
        d->nusers++;
        for (uint64_t v = 0; v < versions && d->n < n; v++) {
            ent_t *e = &d->e[d->n++];
            int type = testutil_rand(&rng) % 5 == 0 ? MOOR_VT_DEL : MOOR_VT_PUT;
            size_t vlen =
                testutil_rand(&rng) % 100 == 0 && n >= 100 ? 6000 : testutil_rand(&rng) % 120;

            moor_buf_init(&e->key);
            moor_buf_init(&e->val);
            assert_int_equal(moor_ikey_build(&e->key, uk, (size_t)ul, seq - v * 7, type), 0);
            for (size_t i = 0; i < vlen; i++) {
                char c =
                    compressible ? (char)('a' + (i / 9 + d->n) % 3) : (char)testutil_rand(&rng);
                moor_buf_append(&e->val, &c, 1);
            }
        }
    }
}

static void free_dataset(dataset_t *d)
{
    for (size_t i = 0; i < d->n; i++) {
        moor_buf_free(&d->e[i].key);
        moor_buf_free(&d->e[i].val);
    }
    free(d->e);
}

static char *table_path(const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", tmpdir, name);
    return p;
}

static uint64_t write_table(const char *path, const dataset_t *d, const moor_table_opts_t *o)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    moor_table_builder_t *b;
    uint64_t size = 0;

    assert_true(fd >= 0);
    b = moor_table_builder_new(fd, o);
    assert_non_null(b);
    for (size_t i = 0; i < d->n; i++) {
        assert_int_equal(moor_table_builder_add(b, d->e[i].key.data, d->e[i].key.len,
                                                d->e[i].val.data, d->e[i].val.len),
                         0);
    }
    assert_int_equal(moor_table_builder_entries(b), d->n);
    if (d->n)
        assert_true(moor_table_builder_size(b) > 0);
    assert_int_equal(moor_table_builder_finish(b, &size), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((uint64_t)st.st_size, size);
    close(fd);
    return size;
}

static void expect_entry(const moor_iiter_t *it, const ent_t *e)
{
    assert_true(it->valid);
    assert_int_equal(it->klen, e->key.len);
    assert_memory_equal(it->key, e->key.data, e->key.len);
    assert_int_equal(it->vlen, e->val.len);
    if (e->val.len)
        assert_memory_equal(it->val, e->val.data, e->val.len);
}

/* ---- verification ---------------------------------------------------- */

static void check_scan(moor_table_t *t, const dataset_t *d)
{
    moor_iiter_t *it = moor_table_iter(t);
    size_t i = 0;

    assert_non_null(it);
    for (it->seek_first(it); it->valid; it->next(it), i++) {
        assert_true(i < d->n);
        expect_entry(it, &d->e[i]);
    }
    assert_int_equal(it->status, 0);
    assert_int_equal(i, d->n);
    moor_iiter_destroy(it);
}

static void seek_key(moor_buf_t *k, unsigned unum, int odd, uint64_t seq)
{
    char uk[32];
    int ul = snprintf(uk, sizeof(uk), "user%08u", 2 * unum + (odd ? 1 : 0));

    moor_buf_reset(k);
    assert_int_equal(moor_ikey_build(k, uk, (size_t)ul, seq, MOOR_VT_SEEK), 0);
}

/* Index of the first entry >= key, d->n if none. */
static size_t lower_bound(const dataset_t *d, const char *k, size_t klen)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (moor_ikey_cmp(d->e[mid].key.data, d->e[mid].key.len, k, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Expected moor_table_get answer for key: 1 and the entry, or 0. */
static int expected_get(const dataset_t *d, const char *k, size_t klen, const ent_t **e)
{
    size_t i = lower_bound(d, k, klen);

    if (i == d->n || moor_ukey_cmp(d->e[i].key.data, d->e[i].key.len - 8, k, klen - 8))
        return 0;
    *e = &d->e[i];
    return 1;
}

static void check_one_get(moor_table_t *t, const dataset_t *d, const moor_buf_t *k, moor_buf_t *val)
{
    const ent_t *e = NULL;
    int type = -1, want = expected_get(d, k->data, k->len, &e);
    int rc = moor_table_get(t, k->data, k->len, val, &type);

    assert_int_equal(rc, want);
    if (want) {
        assert_int_equal(type, moor_ikey_type(e->key.data, e->key.len));
        assert_int_equal(val->len, e->val.len);
        if (e->val.len)
            assert_memory_equal(val->data, e->val.data, e->val.len);
    }
}

static void check_gets(moor_table_t *t, const dataset_t *d, int stride)
{
    moor_buf_t k = MOOR_BUF_INIT, val = MOOR_BUF_INIT;

    for (unsigned u = 0; u < d->nusers + 2; u += (unsigned)stride) {
        seek_key(&k, u, 0, MOOR_SEQ_MAX); /* newest */
        check_one_get(t, d, &k, &val);
        seek_key(&k, u, 0, 1000000 + u % 1000 - 3); /* some snapshot in between */
        check_one_get(t, d, &k, &val);
        seek_key(&k, u, 0, 5); /* older than every version */
        check_one_get(t, d, &k, &val);
        seek_key(&k, u, 1, MOOR_SEQ_MAX); /* absent user key */
        check_one_get(t, d, &k, &val);
    }
    for (size_t i = 0; i < d->n; i += (size_t)stride) { /* every exact version */
        moor_buf_reset(&k);
        moor_buf_append(&k, d->e[i].key.data, d->e[i].key.len);
        check_one_get(t, d, &k, &val);
    }
    moor_buf_free(&k);
    moor_buf_free(&val);
}

static void check_seeks(moor_table_t *t, const dataset_t *d, int count)
{
    moor_iiter_t *it = moor_table_iter(t);
    moor_buf_t k = MOOR_BUF_INIT;

    assert_non_null(it);
    for (int r = 0; r < count; r++) {
        unsigned u = (unsigned)(testutil_rand(&rng) % (d->nusers + 3));
        seek_key(&k, u, testutil_rand(&rng) % 2,
                 testutil_rand(&rng) % 2 ? MOOR_SEQ_MAX : 1000000 + testutil_rand(&rng) % 1000);
        size_t want = lower_bound(d, k.data, k.len);
        it->seek(it, k.data, k.len);
        for (int step = 0; step < 3; step++, want++) {
            if (want >= d->n) {
                assert_false(it->valid);
                break;
            }
            expect_entry(it, &d->e[want]);
            it->next(it);
        }
        assert_int_equal(it->status, 0);
    }
    it->seek_first(it);
    if (d->n)
        expect_entry(it, &d->e[0]);
    moor_buf_free(&k);
    moor_iiter_destroy(it);
}

static void round_trip(size_t n, int level, unsigned bloom, size_t block_size, size_t cache_cap)
{
    moor_table_opts_t o = {
        .block_size = block_size, .compression_level = level, .bloom_bits = bloom};
    dataset_t d;
    char *path = table_path("rt.sst");
    moor_cache_t *cache = cache_cap ? moor_cache_new(cache_cap) : NULL;
    moor_table_t *t;
    uint64_t size;

    make_dataset(&d, n, 1);
    size = write_table(path, &d, &o);
    assert_int_equal(moor_table_open(path, 42, cache, &t), 0);
    assert_int_equal(moor_table_entries(t), d.n);
    assert_int_equal(moor_table_file_size(t), size);
    assert_true(moor_table_mem(t) > 0);
    check_scan(t, &d);
    check_gets(t, &d, 1);
    check_seeks(t, &d, 1000);
    check_scan(t, &d); /* again, now through a warm cache */
    if (bloom >= 10 && n > 100)
        assert_true(moor_table_bloom_skips(t) > d.nusers / 2);
    if (!bloom)
        assert_int_equal(moor_table_bloom_skips(t), 0);
    moor_table_close(t);
    if (cache) {
        moor_cache_stats_t st;
        moor_cache_stats(cache, &st);
        assert_true(st.hits > 0);
        moor_cache_erase_file(cache, 42);
        moor_cache_free(cache);
    }
    unlink(path);
    free(path);
    free_dataset(&d);
}

static void test_round_trip_plain(void **state)
{
    round_trip(20000, 0, 0, 4096, 0);
}
static void test_round_trip_zstd_bloom(void **state)
{
    round_trip(40000, 3, 10, 4096, 0);
}
static void test_round_trip_cached(void **state)
{
    round_trip(20000, 1, 10, 4096, 8 << 20);
}
static void test_round_trip_tiny_cache(void **state)
{
    round_trip(5000, 3, 0, 1024, 4096);
}
static void test_round_trip_small_blocks(void **state)
{
    round_trip(3000, 0, 4, 64, 0);
}
static void test_round_trip_one_entry(void **state)
{
    round_trip(1, 3, 10, 4096, 1 << 20);
}

/* A long scan reads ahead and decodes into its own buffer: it leaves the
 * cache with only the few blocks read before it went sequential (4), yet
 * uses blocks that are cached (seeks put some there first), and yields
 * exactly the data either way. */
static void test_scan_leaves_cache(void **state)
{
    moor_table_opts_t o = {.block_size = 4096, .compression_level = 3, .bloom_bits = 10};
    dataset_t d;
    char *path = table_path("scan.sst");
    moor_cache_t *cache = moor_cache_new(64 << 20);
    moor_cache_stats_t st;
    moor_table_t *t;
    uint64_t hits;

    make_dataset(&d, 30000, 1);
    write_table(path, &d, &o);
    assert_int_equal(moor_table_open(path, 7, cache, &t), 0);
    check_scan(t, &d);
    moor_cache_stats(cache, &st);
    assert_true(st.entries >= 1 && st.entries <= 4);
    check_seeks(t, &d, 500); /* seeks read through the cache */
    moor_cache_stats(cache, &st);
    assert_true(st.entries > 4);
    hits = st.hits;
    check_scan(t, &d);
    moor_cache_stats(cache, &st);
    assert_true(st.hits > hits); /* the scan found the blocks the seeks cached */
    moor_table_close(t);
    moor_cache_erase_file(cache, 7);
    moor_cache_free(cache);
    unlink(path);
    free(path);
    free_dataset(&d);
}

static void test_empty_table(void **state)
{
    moor_table_opts_t o = {.block_size = 4096, .compression_level = 3, .bloom_bits = 10};
    dataset_t d = {0};
    char *path = table_path("empty.sst");
    moor_table_t *t;

    write_table(path, &d, &o);
    assert_int_equal(moor_table_open(path, 1, NULL, &t), 0);
    assert_int_equal(moor_table_entries(t), 0);
    check_scan(t, &d);
    check_gets(t, &d, 1);
    check_seeks(t, &d, 10);
    moor_table_close(t);
    unlink(path);
    free(path);
}

static void test_compression_shrinks(void **state)
{
    moor_table_opts_t raw = {.block_size = 4096}, z = {.block_size = 4096, .compression_level = 3};
    dataset_t d;
    char *path = table_path("cmp.sst");
    uint64_t s_raw, s_z;

    make_dataset(&d, 5000, 1);
    s_raw = write_table(path, &d, &raw);
    s_z = write_table(path, &d, &z);
    assert_true(s_z * 2 < s_raw);
    free_dataset(&d);

    /* incompressible values: a block is kept compressed only if smaller */
    make_dataset(&d, 2000, 0);
    s_raw = write_table(path, &d, &raw);
    s_z = write_table(path, &d, &z);
    assert_true(s_z <= s_raw);
    moor_table_t *t;
    assert_int_equal(moor_table_open(path, 1, NULL, &t), 0);
    check_scan(t, &d);
    moor_table_close(t);
    free_dataset(&d);
    unlink(path);
    free(path);
}

static void test_builder_rejects(void **state)
{
    moor_table_opts_t o = {.block_size = 4096};
    char *path = table_path("rej.sst");
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    moor_table_builder_t *b = moor_table_builder_new(fd, &o);
    moor_buf_t k1 = MOOR_BUF_INIT, k2 = MOOR_BUF_INIT;

    moor_ikey_build(&k1, "b", 1, 5, MOOR_VT_PUT);
    moor_ikey_build(&k2, "a", 1, 5, MOOR_VT_PUT);
    assert_int_equal(moor_table_builder_add(b, "short", 5, "", 0), MOOR_EINVAL);
    assert_int_equal(moor_table_builder_add(b, k1.data, k1.len, "v", 1), 0);
    assert_int_equal(moor_table_builder_add(b, k2.data, k2.len, "v", 1), MOOR_EINVAL);
    assert_int_equal(moor_table_builder_add(b, k1.data, k1.len, "v", 1), MOOR_EINVAL);
    moor_table_builder_abandon(b);
    close(fd);
    moor_buf_free(&k1);
    moor_buf_free(&k2);
    unlink(path);
    free(path);
}

static void expect_write_error(int fd, int want)
{
    moor_table_opts_t o = {.block_size = 256, .compression_level = 1, .bloom_bits = 10};
    moor_table_builder_t *b = moor_table_builder_new(fd, &o);
    moor_buf_t k = MOOR_BUF_INIT;
    int rc = 0;
    uint64_t size = 0;

    assert_non_null(b);
    for (unsigned i = 0; i < 100 && rc == 0; i++) {
        char uk[16];
        int ul = snprintf(uk, sizeof(uk), "k%05u", i);
        moor_buf_reset(&k);
        moor_ikey_build(&k, uk, (size_t)ul, 1, MOOR_VT_PUT);
        rc = moor_table_builder_add(b, k.data, k.len, "value-value-value", 17);
    }
    assert_int_equal(rc, want);
    assert_int_equal(moor_table_builder_finish(b, &size), want);
    assert_int_equal(moor_diag_last()->code, want);
    assert_non_null(strstr(moor_diag_last()->msg, "table: write of"));
    assert_non_null(strstr(moor_diag_last()->msg, "at offset"));
    moor_buf_free(&k);
}

static void test_write_errors(void **state)
{
    char *path = table_path("ro.sst");
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    close(fd);
    fd = open(path, O_RDONLY);
    expect_write_error(fd, -EBADF);
    close(fd);
    fd = open("/dev/full", O_WRONLY);
    if (fd >= 0) {
        expect_write_error(fd, -ENOSPC);
        close(fd);
    }
    unlink(path);
    free(path);
}

static void test_open_errors(void **state)
{
    char *path = table_path("nope.sst");
    moor_table_t *t = (moor_table_t *)1;

    assert_int_equal(moor_table_open(path, 1, NULL, &t), MOOR_ENOENT);
    assert_null(t);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    assert_int_equal(write(fd, "tiny", 4), 4);
    close(fd);
    assert_int_equal(moor_table_open(path, 1, NULL, &t), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, path));
    unlink(path);
    free(path);
}

/* Rewrites the footer version (with a valid CRC): EVERSION, not CORRUPT. */
static void test_future_version(void **state)
{
    moor_table_opts_t o = {.block_size = 4096};
    dataset_t d;
    char *path = table_path("ver.sst");
    char ft[MOOR_TABLE_FOOTER];
    moor_table_t *t;
    uint64_t size;

    make_dataset(&d, 50, 1);
    size = write_table(path, &d, &o);
    int fd = open(path, O_RDWR);
    assert_int_equal(pread(fd, ft, sizeof(ft), (off_t)(size - sizeof(ft))), sizeof(ft));
    moor_enc_fixed32(ft + 40, MOOR_TABLE_VERSION + 1);
    moor_enc_fixed32(ft + 44, moor_crc32c_mask(moor_crc32c(ft, 44)));
    assert_int_equal(pwrite(fd, ft, sizeof(ft), (off_t)(size - sizeof(ft))), sizeof(ft));
    close(fd);
    assert_int_equal(moor_table_open(path, 1, NULL, &t), MOOR_EVERSION);
    free_dataset(&d);
    unlink(path);
    free(path);
}

/* ---- corruption ------------------------------------------------------ */

/* Opens path and compares everything it yields with d: each result must be
 * an error or exactly right.  Returns 1 if any error was seen. */
static int check_tolerant(const char *path, const dataset_t *d, moor_cache_t *cache,
                          uint64_t fileno)
{
    moor_table_t *t;
    moor_buf_t k = MOOR_BUF_INIT, val = MOOR_BUF_INIT;
    int rc = moor_table_open(path, fileno, cache, &t), errors = 0;

    if (rc) {
        assert_true(rc == MOOR_ECORRUPT || rc == MOOR_EVERSION);
        assert_null(t);
        return 1;
    }
    moor_iiter_t *it = moor_table_iter(t);
    size_t i = 0;
    for (it->seek_first(it); it->valid; it->next(it), i++) {
        assert_true(i < d->n);
        expect_entry(it, &d->e[i]);
    }
    if (i < d->n) {
        assert_int_equal(it->status, MOOR_ECORRUPT);
        errors = 1;
    }
    moor_iiter_destroy(it);
    for (unsigned u = 0; u < d->nusers + 1; u++) {
        for (int odd = 0; odd < 2; odd++) {
            const ent_t *e = NULL;
            int type = -1;
            seek_key(&k, u, odd, MOOR_SEQ_MAX);
            int want = expected_get(d, k.data, k.len, &e);
            rc = moor_table_get(t, k.data, k.len, &val, &type);
            if (rc < 0) {
                assert_int_equal(rc, MOOR_ECORRUPT);
                errors = 1;
                continue;
            }
            assert_int_equal(rc, want);
            if (want) {
                assert_int_equal(type, moor_ikey_type(e->key.data, e->key.len));
                assert_int_equal(val.len, e->val.len);
                if (val.len)
                    assert_memory_equal(val.data, e->val.data, val.len);
            }
        }
    }
    moor_buf_free(&k);
    moor_buf_free(&val);
    moor_table_close(t);
    return errors;
}

static char *slurp(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    char *p = malloc((size_t)st.st_size);
    assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return p;
}

static void spit(const char *path, const char *p, size_t len)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    close(fd);
}

static void corrupt_flips(int level, unsigned bloom, int with_cache)
{
    moor_table_opts_t o = {.block_size = 512, .compression_level = level, .bloom_bits = bloom};
    dataset_t d;
    char *path = table_path("good.sst"), *bad = table_path("bad.sst");
    moor_cache_t *cache = with_cache ? moor_cache_new(1 << 20) : NULL;
    size_t len;
    int detected = 0, tries = 0;

    make_dataset(&d, 300, 1);
    write_table(path, &d, &o);
    char *good = slurp(path, &len), *copy = malloc(len);
    assert_int_equal(check_tolerant(path, &d, NULL, 1), 0);
    /* every byte when small, else a stride that still hits every region */
    size_t stride = len / 800 + 1;
    for (size_t pos = 0; pos < len; pos += stride, tries++) {
        memcpy(copy, good, len);
        copy[pos] ^= (char)(1 + testutil_rand(&rng) % 255);
        spit(bad, copy, len);
        /* a fresh file number per version, as the engine would have */
        detected += check_tolerant(bad, &d, cache, 100 + (uint64_t)tries);
    }
    /* a CRC covers every byte, so every flip must be noticed */
    assert_int_equal(detected, tries);
    for (size_t cut = 0; cut < len; cut += (cut < 200 || len - cut < 200) ? 1 : 37) {
        spit(bad, good, cut);
        assert_int_equal(check_tolerant(bad, &d, cache, 1000000 + cut), 1);
    }
    /* trailing garbage after the footer hides it: open must fail cleanly */
    memcpy(copy, good, len);
    spit(bad, copy, len);
    int fd = open(bad, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "xyz", 3), 3);
    close(fd);
    assert_int_equal(check_tolerant(bad, &d, cache, 7), 1);
    if (cache)
        moor_cache_free(cache);
    unlink(path);
    unlink(bad);
    free(good);
    free(copy);
    free(path);
    free(bad);
    free_dataset(&d);
}

static void test_corrupt_raw(void **state)
{
    corrupt_flips(0, 10, 0);
}
static void test_corrupt_zstd_cached(void **state)
{
    corrupt_flips(3, 10, 1);
}
static void test_corrupt_zstd_nofilter(void **state)
{
    corrupt_flips(3, 0, 0);
}

/* ---- threads --------------------------------------------------------- */

typedef struct reader_arg {
    moor_table_t *t;
    const dataset_t *d;
    uint64_t seed;
    int bad;
} reader_arg_t;

static void *reader(void *p)
{
    reader_arg_t *a = p;
    moor_buf_t k = MOOR_BUF_INIT, val = MOOR_BUF_INIT;
    uint64_t s = a->seed;

    for (int r = 0; r < 3000; r++) {
        size_t i = testutil_rand(&s) % a->d->n;
        const ent_t *e = &a->d->e[i];
        int type;
        moor_buf_reset(&k);
        moor_buf_append(&k, e->key.data, e->key.len);
        if (moor_table_get(a->t, k.data, k.len, &val, &type) != 1 || val.len != e->val.len ||
            (val.len && memcmp(val.data, e->val.data, val.len)))
            a->bad++;
    }
    moor_iiter_t *it = moor_table_iter(a->t);
    size_t n = 0;
    for (it->seek_first(it); it->valid; it->next(it))
        n++;
    a->bad += n != a->d->n || it->status != 0;
    moor_iiter_destroy(it);
    moor_buf_free(&k);
    moor_buf_free(&val);
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    moor_table_opts_t o = {.block_size = 1024, .compression_level = 1, .bloom_bits = 10};
    dataset_t d;
    char *path = table_path("mt.sst");
    moor_cache_t *cache = moor_cache_new(64 << 10); /* small: evictions while pinned */
    moor_table_t *t;
    pthread_t th[4];
    reader_arg_t args[4];

    make_dataset(&d, 5000, 1);
    write_table(path, &d, &o);
    assert_int_equal(moor_table_open(path, 9, cache, &t), 0);
    for (int i = 0; i < 4; i++) {
        args[i] = (reader_arg_t){.t = t, .d = &d, .seed = rng + (uint64_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
    moor_table_close(t);
    moor_cache_free(cache);
    unlink(path);
    free(path);
    free_dataset(&d);
}

/* ---- seed corpus for fuzz_table ------------------------------------- */

static void corpus_file(const char *dir, const char *name, size_t n, int level, unsigned bloom,
                        size_t block_size, size_t cut)
{
    moor_table_opts_t o = {
        .block_size = block_size, .compression_level = level, .bloom_bits = bloom};
    dataset_t d;
    char path[4096];
    size_t len;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    make_dataset(&d, n, 1);
    write_table(path, &d, &o);
    if (cut) {
        char *p = slurp(path, &len);
        spit(path, p, cut < len ? len - cut : 0);
        free(p);
    }
    free_dataset(&d);
}

static void test_write_corpus(void **state)
{
    const char *dir = getenv("MOOR_WRITE_CORPUS");

    if (!dir || !*dir)
        skip();
    corpus_file(dir, "raw_small", 12, 0, 0, 128, 0);
    corpus_file(dir, "raw_bloom", 30, 0, 10, 256, 0);
    corpus_file(dir, "zstd_bloom", 40, 3, 10, 512, 0);
    corpus_file(dir, "zstd_one_block", 20, 19, 6, 4096, 0);
    corpus_file(dir, "empty", 0, 3, 10, 4096, 0);
    corpus_file(dir, "truncated_footer", 20, 3, 10, 256, 10);
    corpus_file(dir, "truncated_tail", 20, 0, 10, 256, 100);
}

static int setup(void **state)
{
    tmpdir = testutil_tmpdir("test_table");
    return 0;
}

static int teardown(void **state)
{
    testutil_rmrf(tmpdir);
    free(tmpdir);
    return 0;
}

int main(void)
{
    rng = testutil_seed("test_table");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_plain),
        cmocka_unit_test(test_round_trip_zstd_bloom),
        cmocka_unit_test(test_round_trip_cached),
        cmocka_unit_test(test_round_trip_tiny_cache),
        cmocka_unit_test(test_round_trip_small_blocks),
        cmocka_unit_test(test_round_trip_one_entry),
        cmocka_unit_test(test_scan_leaves_cache),
        cmocka_unit_test(test_empty_table),
        cmocka_unit_test(test_compression_shrinks),
        cmocka_unit_test(test_builder_rejects),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_future_version),
        cmocka_unit_test(test_corrupt_raw),
        cmocka_unit_test(test_corrupt_zstd_cached),
        cmocka_unit_test(test_corrupt_zstd_nofilter),
        cmocka_unit_test(test_concurrent_readers),
        cmocka_unit_test(test_write_corpus),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
