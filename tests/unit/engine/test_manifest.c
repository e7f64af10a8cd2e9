/*
 * test_manifest.c -- the MANIFEST codec and its atomic file replacement.
 *
 * Covers: round trips of 0, 1 and 1000 files; every single-byte change and
 * every truncation of a small image is rejected (or, if the CRC were ever
 * fooled, decodes to the same list); hand-built bodies with a valid CRC but
 * bad content (levels, short keys, lying counts, stray bytes, overlong
 * varints, versions); and the file protocol: missing MANIFEST, replacement,
 * a stale MANIFEST.tmp left by a crash, failures naming the path and
 * leaving no tmp file behind.
 *
 * TEST: with MOOR_WRITE_MANIFEST_CORPUS=DIR set, test_corpus_seeds also
 * writes the fuzz seed corpus (tests/fuzz/corpus/manifest) into DIR.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>

#include "engine/manifest.h"
#include "engine/manifest_format.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"

static uint64_t rng;

/* ---- helpers ------------------------------------------------------------- */

static char *rand_key(size_t len)
{
    char *k = malloc(len);
    assert_non_null(k);
    for (size_t i = 0; i < len; i++)
        k[i] = (char)testutil_rand(&rng);
    return k;
}

/* A random value that is sometimes small, sometimes uses all 64 bits, so
 * every varint length gets exercised. */
static uint64_t rand_u64(void)
{
    uint64_t v = testutil_rand(&rng);
    return v >> (testutil_rand(&rng) % 64);
}

static void add_file(moor_manifest_t *m, int level, uint64_t number, size_t klen)
{
    moor_file_meta_t f = {0};

    f.level = level;
    f.number = number;
    f.size = rand_u64();
    f.entries = rand_u64();
    f.smallest_len = klen;
    f.smallest = rand_key(klen);
    f.largest_len = klen + testutil_rand(&rng) % 5;
    f.largest = rand_key(f.largest_len);
    assert_int_equal(moor_manifest_add(m, &f), 0);
    free(f.smallest);
    free(f.largest);
}

static void build(moor_manifest_t *m, size_t nfiles)
{
    moor_manifest_init(m);
    m->next_file = rand_u64();
    m->last_seq = rand_u64();
    m->log_number = rand_u64();
    for (size_t i = 0; i < nfiles; i++)
        add_file(m, (int)(testutil_rand(&rng) % MOOR_MAX_LEVELS), rand_u64(),
                 8 + testutil_rand(&rng) % 40);
    assert_int_equal(m->nfiles, nfiles);
}

/* A small fixed manifest, so the exhaustive tests stay fast. */
static void build_small(moor_manifest_t *m)
{
    moor_manifest_init(m);
    m->next_file = 12;
    m->last_seq = 300;
    m->log_number = 9;
    add_file(m, 0, 10, 8);
    add_file(m, 3, 11, 12);
}

static void assert_manifest_equal(const moor_manifest_t *a, const moor_manifest_t *b)
{
    assert_int_equal(a->next_file, b->next_file);
    assert_int_equal(a->last_seq, b->last_seq);
    assert_int_equal(a->log_number, b->log_number);
    assert_int_equal(a->nfiles, b->nfiles);
    for (size_t i = 0; i < a->nfiles; i++) {
        const moor_file_meta_t *x = &a->files[i], *y = &b->files[i];
        assert_int_equal(x->level, y->level);
        assert_int_equal(x->number, y->number);
        assert_int_equal(x->size, y->size);
        assert_int_equal(x->entries, y->entries);
        assert_int_equal(x->smallest_len, y->smallest_len);
        assert_memory_equal(x->smallest, y->smallest, x->smallest_len);
        assert_int_equal(x->largest_len, y->largest_len);
        assert_memory_equal(x->largest, y->largest, x->largest_len);
    }
}

static void encode(const moor_manifest_t *m, moor_buf_t *out)
{
    moor_buf_init(out);
    assert_int_equal(moor_manifest_encode(m, out), 0);
}

static void roundtrip(size_t nfiles)
{
    moor_manifest_t m, d;
    moor_buf_t img;

    build(&m, nfiles);
    encode(&m, &img);
    assert_int_equal(moor_dec_fixed32(img.data + 12), img.len - MOOR_MANIFEST_HEADER);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), 0);
    assert_manifest_equal(&m, &d);
    moor_manifest_clear(&d);
    moor_manifest_clear(&m);
    moor_buf_free(&img);
}

/* Wraps a hand-made body in a header with a correct CRC. */
static void wrap(moor_buf_t *out, uint32_t version, const moor_buf_t *body)
{
    size_t n = body->len;
    const char *data = body->data ? body->data : "";

    moor_buf_init(out);
    assert_int_equal(moor_buf_put_fixed64(out, MOOR_MANIFEST_MAGIC), 0);
    assert_int_equal(moor_buf_put_fixed32(out, version), 0);
    assert_int_equal(moor_buf_put_fixed32(out, (uint32_t)n), 0);
    assert_int_equal(moor_buf_put_fixed32(out, moor_crc32c_mask(moor_crc32c(data, n))), 0);
    assert_int_equal(moor_buf_append(out, data, n), 0);
}

static void put_file_entry(moor_buf_t *b, uint64_t level, size_t klen1, size_t klen2)
{
    static const char key[64] = "0123456789abcdef0123456789abcdef";

    moor_buf_put_varint(b, level);
    moor_buf_put_varint(b, 5);   /* number */
    moor_buf_put_varint(b, 100); /* size */
    moor_buf_put_varint(b, 3);   /* entries */
    moor_buf_put_lenbytes(b, key, klen1);
    moor_buf_put_lenbytes(b, key, klen2);
}

/* Decodes a header-wrapped body; checks the code and that m is left empty
 * on failure. */
static int decode_body(const moor_buf_t *body, uint32_t version)
{
    moor_buf_t img;
    moor_manifest_t m;
    int rc;

    wrap(&img, version, body);
    m.nfiles = 77; /* garbage: decode must initialise */
    m.files = (void *)&m;
    rc = moor_manifest_decode(img.data, img.len, &m);
    if (rc) {
        assert_int_equal(m.nfiles, 0);
        assert_null(m.files);
    }
    moor_manifest_clear(&m);
    moor_buf_free(&img);
    return rc;
}

static void header_fields(moor_buf_t *b, uint64_t nfiles)
{
    moor_buf_init(b);
    moor_buf_put_varint(b, 7);
    moor_buf_put_varint(b, 1000);
    moor_buf_put_varint(b, 2);
    moor_buf_put_varint(b, nfiles);
}

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- codec --------------------------------------------------------------- */

static void test_roundtrip_empty(void **state)
{
    roundtrip(0);
}

static void test_roundtrip_one(void **state)
{
    roundtrip(1);
}

static void test_roundtrip_1000(void **state)
{
    roundtrip(1000);
}

static void test_roundtrip_extremes(void **state)
{
    moor_manifest_t m, d;
    moor_buf_t img;

    moor_manifest_init(&m);
    m.next_file = m.last_seq = m.log_number = UINT64_MAX;
    add_file(&m, MOOR_MAX_LEVELS - 1, UINT64_MAX, 8);
    add_file(&m, 0, 0, 5000);
    m.files[0].size = m.files[0].entries = UINT64_MAX;
    m.files[1].size = m.files[1].entries = 0;
    encode(&m, &img);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), 0);
    assert_manifest_equal(&m, &d);
    moor_manifest_clear(&d);
    moor_manifest_clear(&m);
    moor_buf_free(&img);
}

static void test_add_copies_keys(void **state)
{
    moor_manifest_t m;
    char lo[8] = "aaaaaaaa", hi[9] = "zzzzzzzzz";
    moor_file_meta_t f = {.level = 2,
                          .number = 4,
                          .size = 9,
                          .entries = 1,
                          .smallest = lo,
                          .smallest_len = 8,
                          .largest = hi,
                          .largest_len = 9};

    moor_manifest_init(&m);
    for (int i = 0; i < 100; i++) { /* crosses several growth steps */
        f.number = (uint64_t)i;
        assert_int_equal(moor_manifest_add(&m, &f), 0);
    }
    lo[0] = 'X';
    hi[0] = 'Y';
    assert_int_equal(m.nfiles, 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(m.files[i].number, i);
        assert_ptr_not_equal(m.files[i].smallest, lo);
        assert_memory_equal(m.files[i].smallest, "aaaaaaaa", 8);
        assert_memory_equal(m.files[i].largest, "zzzzzzzzz", 9);
    }
    moor_manifest_clear(&m);
    assert_int_equal(m.nfiles, 0);
    assert_null(m.files);
}

/* A caller may shrink or build m->files itself; add must still be safe. */
static void test_add_after_caller_built_array(void **state)
{
    moor_manifest_t m;
    moor_file_meta_t f = {.level = 1,
                          .smallest = "12345678",
                          .smallest_len = 8,
                          .largest = "87654321",
                          .largest_len = 8};

    moor_manifest_init(&m);
    m.files = calloc(1, sizeof(*m.files));
    assert_non_null(m.files);
    m.files[0].smallest = strdup("abcdefgh");
    m.files[0].smallest_len = 8;
    m.files[0].largest = strdup("abcdefgz");
    m.files[0].largest_len = 8;
    m.nfiles = 1;
    for (int i = 0; i < 10; i++)
        assert_int_equal(moor_manifest_add(&m, &f), 0);
    assert_int_equal(m.nfiles, 11);
    assert_memory_equal(m.files[0].smallest, "abcdefgh", 8);
    assert_memory_equal(m.files[10].largest, "87654321", 8);
    moor_manifest_clear(&m);
}

static void test_encode_rejects_what_decode_would(void **state)
{
    moor_manifest_t m;
    moor_buf_t out = MOOR_BUF_INIT;
    int bad_levels[] = {-1, MOOR_MAX_LEVELS, 1000};

    build_small(&m);
    assert_int_equal(moor_buf_append(&out, "prefix", 6), 0);
    for (size_t i = 0; i < sizeof(bad_levels) / sizeof(bad_levels[0]); i++) {
        m.files[1].level = bad_levels[i];
        assert_int_equal(moor_manifest_encode(&m, &out), MOOR_EINVAL);
        assert_int_equal(out.len, 6); /* left as it was */
        assert_non_null(strstr(moor_diag_last()->msg, "level"));
    }
    m.files[1].level = 1;
    m.files[0].largest_len = 7;
    assert_int_equal(moor_manifest_encode(&m, &out), MOOR_EINVAL);
    assert_int_equal(out.len, 6);
    m.files[0].largest_len = 8;
    /* and appends after existing content when valid */
    assert_int_equal(moor_manifest_encode(&m, &out), 0);
    assert_memory_equal(out.data, "prefix", 6);
    moor_manifest_t d;
    assert_int_equal(moor_manifest_decode(out.data + 6, out.len - 6, &d), 0);
    assert_manifest_equal(&m, &d);
    moor_manifest_clear(&d);
    moor_manifest_clear(&m);
    moor_buf_free(&out);
}

static void test_every_byte_change(void **state)
{
    moor_manifest_t m, d;
    moor_buf_t img;
    size_t rejected = 0, equal = 0;

    build_small(&m);
    encode(&m, &img);
    for (size_t i = 0; i < img.len; i++) {
        char orig = img.data[i];
        for (int x = 1; x < 256; x++) {
            img.data[i] = (char)(orig ^ x);
            int rc = moor_manifest_decode(img.data, img.len, &d);
            if (rc == 0) {
                assert_manifest_equal(&m, &d);
                equal++;
            } else {
                if (rc != MOOR_ECORRUPT && rc != MOOR_EVERSION)
                    fail_msg("byte %zu ^ 0x%02x gave %s", i, x, moor_err_name(rc));
                assert_int_equal(d.nfiles, 0);
                rejected++;
            }
            moor_manifest_clear(&d);
        }
        img.data[i] = orig;
    }
    assert_int_equal(rejected + equal, img.len * 255);
    assert_int_equal(equal, 0); /* the CRC catches every single-byte change */
    moor_manifest_clear(&m);
    moor_buf_free(&img);
}

static void test_truncation_and_extension(void **state)
{
    moor_manifest_t m, d;
    moor_buf_t img;

    build_small(&m);
    encode(&m, &img);
    for (size_t n = 0; n < img.len; n++) {
        /* a fresh copy of exactly n bytes, so ASan sees any overread */
        char *cut = malloc(n ? n : 1);
        memcpy(cut, img.data, n);
        assert_int_equal(moor_manifest_decode(cut, n, &d), MOOR_ECORRUPT);
        assert_int_equal(d.nfiles, 0);
        free(cut);
    }
    assert_int_equal(moor_buf_put_u8(&img, 0), 0);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    moor_manifest_clear(&m);
    moor_buf_free(&img);
}

static void test_header_checks(void **state)
{
    moor_manifest_t m, d;
    moor_buf_t img;

    build_small(&m);
    encode(&m, &img);

    img.data[0] ^= 1;
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, "magic"));
    img.data[0] ^= 1;

    moor_enc_fixed32(img.data + 8, MOOR_MANIFEST_VERSION + 1);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_EVERSION);
    moor_enc_fixed32(img.data + 8, UINT32_MAX);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_EVERSION);
    moor_enc_fixed32(img.data + 8, 0);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    moor_enc_fixed32(img.data + 8, MOOR_MANIFEST_VERSION);

    uint32_t blen = moor_dec_fixed32(img.data + 12);
    moor_enc_fixed32(img.data + 12, blen - 1);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    moor_enc_fixed32(img.data + 12, UINT32_MAX);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    moor_enc_fixed32(img.data + 12, blen);

    img.data[16] ^= 0x40;
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, "checksum"));
    img.data[16] ^= 0x40;

    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), 0);
    moor_manifest_clear(&d);
    moor_manifest_clear(&m);
    moor_buf_free(&img);
}

/* Bodies with a valid CRC whose content is wrong: the checks after the CRC. */
static void test_body_checks(void **state)
{
    moor_buf_t b;

    header_fields(&b, 1);
    put_file_entry(&b, 0, 8, 8);
    assert_int_equal(decode_body(&b, 1), 0);
    moor_buf_free(&b);

    header_fields(&b, 1);
    put_file_entry(&b, MOOR_MAX_LEVELS, 8, 8);
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, "level"));
    moor_buf_free(&b);

    header_fields(&b, 1);
    put_file_entry(&b, UINT64_MAX, 8, 8); /* must not wrap into a valid int */
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    moor_buf_free(&b);

    header_fields(&b, 1);
    put_file_entry(&b, 1, 7, 30); /* long partner, so the count check passes */
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, "smallest"));
    moor_buf_free(&b);

    header_fields(&b, 1);
    put_file_entry(&b, 1, 30, 0);
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, "largest"));
    moor_buf_free(&b);

    /* stray byte after the last file */
    header_fields(&b, 1);
    put_file_entry(&b, 1, 8, 8);
    moor_buf_put_u8(&b, 0);
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, "stray"));
    moor_buf_free(&b);

    /* one file fewer than announced: the second entry runs off the end */
    header_fields(&b, 2);
    put_file_entry(&b, 1, 8, 8);
    moor_buf_append(&b, "0123456789abcdefghijklmn", 24); /* enough to pass the count check */
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    moor_buf_free(&b);

    /* a key whose length runs past the body */
    header_fields(&b, 1);
    moor_buf_put_varint(&b, 0);
    moor_buf_put_varint(&b, 5);
    moor_buf_put_varint(&b, 100);
    moor_buf_put_varint(&b, 3);
    moor_buf_put_varint(&b, 1000);
    moor_buf_append(&b, "0123456789abcdefghijklmn", 24);
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, "overruns"));
    moor_buf_free(&b);

    /* an overlong varint for next_file */
    moor_buf_init(&b);
    moor_buf_append(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
    moor_buf_append(&b, "\x00\x00\x00", 3);
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_last()->msg, "varint"));
    moor_buf_free(&b);

    /* an empty body has no fields at all */
    moor_buf_init(&b);
    assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
    moor_buf_free(&b);

    /* a version from the future is EVERSION even with a sound body */
    header_fields(&b, 0);
    assert_int_equal(decode_body(&b, MOOR_MANIFEST_VERSION + 1), MOOR_EVERSION);
    assert_int_equal(decode_body(&b, MOOR_MANIFEST_VERSION), 0);
    moor_buf_free(&b);
}

/* A count that the body cannot hold is refused before anything is
 * allocated for it, however large. */
static void test_lying_count(void **state)
{
    uint64_t counts[] = {2, 1000, UINT64_C(1) << 32, UINT64_C(1) << 59, UINT64_MAX};
    moor_buf_t b;

    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        header_fields(&b, counts[i]);
        put_file_entry(&b, 0, 8, 8); /* room for exactly one */
        assert_int_equal(decode_body(&b, 1), MOOR_ECORRUPT);
        assert_non_null(strstr(moor_diag_last()->msg, "cannot fit"));
        moor_buf_free(&b);
    }
}

/* Non-canonical varints (0x80 0x00 for 0) are accepted: the format says
 * "varint", and a reader that is stricter than needed gains nothing. */
static void test_noncanonical_varint(void **state)
{
    moor_buf_t b;
    moor_manifest_t m;
    moor_buf_t img;

    moor_buf_init(&b);
    moor_buf_append(&b, "\x87\x00", 2); /* next_file 7 */
    moor_buf_put_varint(&b, 1);
    moor_buf_put_varint(&b, 2);
    moor_buf_put_varint(&b, 0);
    wrap(&img, 1, &b);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &m), 0);
    assert_int_equal(m.next_file, 7);
    assert_int_equal(m.nfiles, 0);
    moor_manifest_clear(&m);
    moor_buf_free(&img);
    moor_buf_free(&b);
}

/* ---- files --------------------------------------------------------------- */

static void test_read_missing(void **state)
{
    char *dir = testutil_tmpdir("manifest");
    moor_manifest_t m;

    assert_int_equal(moor_manifest_read(dir, &m), MOOR_ENOENT);
    assert_int_equal(m.nfiles, 0);
    assert_non_null(strstr(moor_diag_last()->msg, dir));
    testutil_rmrf(dir);
    free(dir);
}

static void test_write_read_replace(void **state)
{
    char *dir = testutil_tmpdir("manifest");
    char *tmp = path_in(dir, "MANIFEST.tmp");
    moor_manifest_t a, b, r;

    build(&a, 50);
    build(&b, 3);
    assert_int_equal(moor_manifest_write(dir, &a), 0);
    assert_false(exists(tmp));
    assert_int_equal(moor_manifest_read(dir, &r), 0);
    assert_manifest_equal(&a, &r);
    moor_manifest_clear(&r);

    /* a shorter list replaces a longer one completely */
    assert_int_equal(moor_manifest_write(dir, &b), 0);
    assert_int_equal(moor_manifest_read(dir, &r), 0);
    assert_manifest_equal(&b, &r);
    moor_manifest_clear(&r);
    assert_false(exists(tmp));

    moor_manifest_clear(&a);
    moor_manifest_clear(&b);
    testutil_rmrf(dir);
    free(tmp);
    free(dir);
}

/* A crash between writing MANIFEST.tmp and the rename leaves the tmp file:
 * readers ignore it, and the next write truncates and replaces it. */
static void test_leftover_tmp_from_crash(void **state)
{
    char *dir = testutil_tmpdir("manifest");
    char *tmp = path_in(dir, "MANIFEST.tmp");
    moor_manifest_t old, next, r;
    moor_buf_t img;
    char junk[8192];

    build(&old, 5);
    build(&next, 2);
    assert_int_equal(moor_manifest_write(dir, &old), 0);

    /* crash 1: a complete, synced tmp that never got renamed */
    encode(&next, &img);
    write_file(tmp, img.data, img.len);
    assert_int_equal(moor_manifest_read(dir, &r), 0);
    assert_manifest_equal(&old, &r);
    moor_manifest_clear(&r);

    /* crash 2: a torn tmp, longer than the next image (checks O_TRUNC) */
    memset(junk, 0xa5, sizeof(junk));
    write_file(tmp, junk, sizeof(junk));
    assert_true(sizeof(junk) > img.len);
    assert_int_equal(moor_manifest_read(dir, &r), 0);
    assert_manifest_equal(&old, &r);
    moor_manifest_clear(&r);

    assert_int_equal(moor_manifest_write(dir, &next), 0);
    assert_false(exists(tmp));
    assert_int_equal(moor_manifest_read(dir, &r), 0);
    assert_manifest_equal(&next, &r);
    moor_manifest_clear(&r);

    moor_buf_free(&img);
    moor_manifest_clear(&old);
    moor_manifest_clear(&next);
    testutil_rmrf(dir);
    free(tmp);
    free(dir);
}

static void test_tmp_alone_is_no_database(void **state)
{
    char *dir = testutil_tmpdir("manifest");
    char *tmp = path_in(dir, "MANIFEST.tmp");
    moor_manifest_t m, r;
    moor_buf_t img;

    build(&m, 1);
    encode(&m, &img);
    write_file(tmp, img.data, img.len);
    assert_int_equal(moor_manifest_read(dir, &r), MOOR_ENOENT);
    moor_buf_free(&img);
    moor_manifest_clear(&m);
    testutil_rmrf(dir);
    free(tmp);
    free(dir);
}

static void test_read_corrupt_names_path(void **state)
{
    char *dir = testutil_tmpdir("manifest");
    char *path = path_in(dir, "MANIFEST");
    moor_manifest_t m, r;
    moor_buf_t img;

    build(&m, 4);
    encode(&m, &img);
    img.data[img.len / 2] ^= 0x10;
    write_file(path, img.data, img.len);
    assert_int_equal(moor_manifest_read(dir, &r), MOOR_ECORRUPT);
    assert_int_equal(r.nfiles, 0);
    assert_non_null(strstr(moor_diag_last()->msg, path));
    assert_non_null(strstr(moor_diag_last()->msg, "checksum"));

    write_file(path, "", 0);
    assert_int_equal(moor_manifest_read(dir, &r), MOOR_ECORRUPT);

    moor_buf_free(&img);
    moor_manifest_clear(&m);
    testutil_rmrf(dir);
    free(path);
    free(dir);
}

static void test_read_a_directory(void **state)
{
    char *dir = testutil_tmpdir("manifest");
    char *path = path_in(dir, "MANIFEST");
    moor_manifest_t r;

    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(moor_manifest_read(dir, &r), -EISDIR);
    assert_non_null(strstr(moor_diag_last()->msg, path));
    testutil_rmrf(dir);
    free(path);
    free(dir);
}

static void test_write_into_missing_dir(void **state)
{
    char *dir = testutil_tmpdir("manifest");
    char *gone = path_in(dir, "no-such-dir");
    moor_manifest_t m;

    build(&m, 1);
    assert_int_equal(moor_manifest_write(gone, &m), MOOR_ENOENT);
    assert_non_null(strstr(moor_diag_last()->msg, gone));
    moor_manifest_clear(&m);
    testutil_rmrf(dir);
    free(gone);
    free(dir);
}

/* The rename fails (MANIFEST is a non-empty directory): the error names the
 * paths and the tmp file is gone. */
static void test_failed_write_removes_tmp(void **state)
{
    char *dir = testutil_tmpdir("manifest");
    char *path = path_in(dir, "MANIFEST");
    char *tmp = path_in(dir, "MANIFEST.tmp");
    char *inner = path_in(path, "x");
    moor_manifest_t m;
    int rc;

    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(mkdir(inner, 0755), 0);
    build(&m, 2);
    rc = moor_manifest_write(dir, &m);
    assert_true(rc < 0);
    assert_true(rc == -EISDIR || rc == -ENOTEMPTY || rc == -EEXIST);
    assert_non_null(strstr(moor_diag_last()->msg, tmp));
    assert_false(exists(tmp));

    /* an invalid list never touches the disk */
    testutil_rmrf(path);
    m.files[0].level = MOOR_MAX_LEVELS;
    assert_int_equal(moor_manifest_write(dir, &m), MOOR_EINVAL);
    assert_false(exists(tmp));
    assert_false(exists(path));

    moor_manifest_clear(&m);
    testutil_rmrf(dir);
    free(inner);
    free(tmp);
    free(path);
    free(dir);
}

/* ---- fuzz seeds ---------------------------------------------------------- */

static void save_seed(const char *dir, const char *name, const moor_buf_t *img)
{
    char *p;

    if (!dir)
        return;
    p = path_in(dir, name);
    write_file(p, img->data ? img->data : "", img->len);
    free(p);
}

/* Builds the fuzz seeds, checks each decodes as intended, and writes them
 * out when MOOR_WRITE_MANIFEST_CORPUS names a directory. */
static void test_corpus_seeds(void **state)
{
    const char *out = getenv("MOOR_WRITE_MANIFEST_CORPUS");
    uint64_t saved = rng;
    moor_manifest_t m, d;
    moor_buf_t img, body;
    const size_t sizes[] = {0, 1, 3, 12};
    char name[64];

    rng = 0x6d616e6966657374u; /* fixed, so regenerating gives the same seeds */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        build(&m, sizes[i]);
        encode(&m, &img);
        assert_int_equal(moor_manifest_decode(img.data, img.len, &d), 0);
        snprintf(name, sizeof(name), "valid-%zu-files", sizes[i]);
        save_seed(out, name, &img);
        if (sizes[i] == 3) {
            img.data[img.len - 1] ^= 1;
            save_seed(out, "bad-crc", &img);
            img.len -= 5;
            save_seed(out, "truncated", &img);
        }
        moor_manifest_clear(&d);
        moor_manifest_clear(&m);
        moor_buf_free(&img);
    }

    header_fields(&body, 1);
    put_file_entry(&body, 0, 8, 8);
    wrap(&img, MOOR_MANIFEST_VERSION + 1, &body);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_EVERSION);
    save_seed(out, "future-version", &img);
    moor_buf_free(&img);
    moor_buf_free(&body);

    header_fields(&body, UINT64_C(1) << 40);
    put_file_entry(&body, 0, 8, 8);
    wrap(&img, 1, &body);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    save_seed(out, "lying-count", &img);
    moor_buf_free(&img);
    moor_buf_free(&body);

    header_fields(&body, 1);
    put_file_entry(&body, MOOR_MAX_LEVELS, 8, 8);
    wrap(&img, 1, &body);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    save_seed(out, "bad-level", &img);
    moor_buf_free(&img);
    moor_buf_free(&body);

    header_fields(&body, 1);
    put_file_entry(&body, 2, 30, 7);
    wrap(&img, 1, &body);
    assert_int_equal(moor_manifest_decode(img.data, img.len, &d), MOOR_ECORRUPT);
    save_seed(out, "short-key", &img);
    moor_buf_free(&img);
    moor_buf_free(&body);
    rng = saved;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_empty),
        cmocka_unit_test(test_roundtrip_one),
        cmocka_unit_test(test_roundtrip_1000),
        cmocka_unit_test(test_roundtrip_extremes),
        cmocka_unit_test(test_add_copies_keys),
        cmocka_unit_test(test_add_after_caller_built_array),
        cmocka_unit_test(test_encode_rejects_what_decode_would),
        cmocka_unit_test(test_every_byte_change),
        cmocka_unit_test(test_truncation_and_extension),
        cmocka_unit_test(test_header_checks),
        cmocka_unit_test(test_body_checks),
        cmocka_unit_test(test_lying_count),
        cmocka_unit_test(test_noncanonical_varint),
        cmocka_unit_test(test_read_missing),
        cmocka_unit_test(test_write_read_replace),
        cmocka_unit_test(test_leftover_tmp_from_crash),
        cmocka_unit_test(test_tmp_alone_is_no_database),
        cmocka_unit_test(test_read_corrupt_names_path),
        cmocka_unit_test(test_read_a_directory),
        cmocka_unit_test(test_write_into_missing_dir),
        cmocka_unit_test(test_failed_write_removes_tmp),
        cmocka_unit_test(test_corpus_seeds),
    };

    rng = testutil_seed("test_manifest");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
