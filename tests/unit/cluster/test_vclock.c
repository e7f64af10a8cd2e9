/*
 * test_vclock.c -- vector clocks: id order (memcmp, shorter first),
 * increment, compare over every order (hand-built and against a reference
 * on random clocks), merge laws (commutative, associative, idempotent, an
 * upper bound) on random clocks, prune by size and by age, the encoding
 * byte for byte, and the decoder on malformed, truncated and corrupted
 * input: it either yields a valid clock or MOOR_EBADCTX, never a crash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>

#include "cluster/vclock.h"
#include "util/mp.h"
#include "util/err.h"
#include "testutil.h"

static uint64_t rng;

/* ---- helpers ------------------------------------------------------------------ */

static void inc(moor_vclock_t *vc, const char *id, uint64_t ts)
{
    assert_int_equal(moor_vclock_increment(vc, id, strlen(id), ts), 0);
}

/* Counter of id in vc, 0 if absent. */
static uint64_t counter_of(const moor_vclock_t *vc, const char *id, size_t idlen)
{
    for (uint32_t i = 0; i < vc->n; i++)
        if (vc->e[i].idlen == idlen && memcmp(vc->e[i].id, id, idlen) == 0)
            return vc->e[i].counter;
    return 0;
}

/* Sorted strictly by (memcmp, shorter first), ids 1..64 bytes, counters >= 1. */
static void assert_valid(const moor_vclock_t *vc)
{
    assert_in_range(vc->n, 0, MOOR_VC_MAX_ENTRIES);
    for (uint32_t i = 0; i < vc->n; i++) {
        assert_in_range(vc->e[i].idlen, 1, MOOR_VC_ID_MAX);
        assert_true(vc->e[i].counter >= 1);
        if (i > 0) {
            const moor_vc_entry_t *a = &vc->e[i - 1], *b = &vc->e[i];
            size_t m = a->idlen < b->idlen ? a->idlen : b->idlen;
            int c = memcmp(a->id, b->id, m);
            assert_true(c < 0 || (c == 0 && a->idlen < b->idlen));
        }
    }
}

static void assert_vc_equal(const moor_vclock_t *a, const moor_vclock_t *b)
{
    assert_int_equal(a->n, b->n);
    for (uint32_t i = 0; i < a->n; i++) {
        assert_int_equal(a->e[i].idlen, b->e[i].idlen);
        assert_memory_equal(a->e[i].id, b->e[i].id, a->e[i].idlen);
        assert_int_equal(a->e[i].counter, b->e[i].counter);
        assert_int_equal(a->e[i].ts, b->e[i].ts);
    }
}

/* Ids chosen to exercise the order: prefixes of each other, bytes >= 0x80,
 * a NUL inside. */
static const char *const pool[] = {"a",  "ab", "abc",  "b",     "n1",   "n10",
                                   "n2", "z",  "\xff", "\x80z", "a\0b", "node-7"};
static const size_t pool_len[] = {1, 2, 3, 1, 2, 3, 2, 1, 1, 2, 3, 6};
#define POOL_N (sizeof(pool) / sizeof(pool[0]))

static void random_clock(moor_vclock_t *vc)
{
    uint64_t steps = testutil_rand(&rng) % 12;

    moor_vclock_init(vc);
    for (uint64_t s = 0; s < steps; s++) {
        size_t k = testutil_rand(&rng) % POOL_N;
        assert_int_equal(
            moor_vclock_increment(vc, pool[k], pool_len[k], testutil_rand(&rng) % 1000), 0);
    }
}

/* Reference compare: by counters over the whole pool. */
static int ref_compare(const moor_vclock_t *a, const moor_vclock_t *b)
{
    int a_ahead = 0, b_ahead = 0;

    for (size_t k = 0; k < POOL_N; k++) {
        uint64_t ca = counter_of(a, pool[k], pool_len[k]);
        uint64_t cb = counter_of(b, pool[k], pool_len[k]);
        a_ahead |= ca > cb;
        b_ahead |= cb > ca;
    }
    if (a_ahead && b_ahead)
        return MOOR_VC_CONCURRENT;
    return a_ahead ? MOOR_VC_AFTER : b_ahead ? MOOR_VC_BEFORE : MOOR_VC_EQUAL;
}

static int mirror(int ord)
{
    return ord == MOOR_VC_BEFORE ? MOOR_VC_AFTER : ord == MOOR_VC_AFTER ? MOOR_VC_BEFORE : ord;
}

/* ---- increment and order ---------------------------------------------------------- */

static void test_increment_order(void **state)
{
    moor_vclock_t vc;
    static const char *const want[] = {"a", "a\0", "ab", "b", "z", "\x80", "\xff"};
    static const size_t want_len[] = {1, 2, 2, 1, 1, 1, 1};

    (void)state;
    moor_vclock_init(&vc);
    /* inserted out of order; must come out sorted */
    for (int i = 6; i >= 0; i--)
        assert_int_equal(moor_vclock_increment(&vc, want[i], want_len[i], 100 + i), 0);
    assert_int_equal(vc.n, 7);
    assert_valid(&vc);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(vc.e[i].idlen, want_len[i]);
        assert_memory_equal(vc.e[i].id, want[i], want_len[i]);
        assert_int_equal(vc.e[i].counter, 1);
        assert_int_equal(vc.e[i].ts, 100 + i);
    }
    assert_int_equal(moor_vclock_increment(&vc, "ab", 2, 500), 0);
    assert_int_equal(moor_vclock_increment(&vc, "ab", 2, 400), 0);
    assert_int_equal(counter_of(&vc, "ab", 2), 3);
    assert_int_equal(vc.e[2].ts, 400); /* ts is that of the last increment */
    assert_int_equal(vc.n, 7);
}

static void test_increment_errors(void **state)
{
    moor_vclock_t vc;
    char id[MOOR_VC_ID_MAX + 1];

    (void)state;
    memset(id, 'x', sizeof(id));
    moor_vclock_init(&vc);
    assert_int_equal(moor_vclock_increment(&vc, "", 0, 1), MOOR_EINVAL);
    assert_int_equal(moor_vclock_increment(&vc, id, MOOR_VC_ID_MAX + 1, 1), MOOR_EINVAL);
    assert_int_equal(vc.n, 0);
    assert_int_equal(moor_vclock_increment(&vc, id, MOOR_VC_ID_MAX, 1), 0);
    for (int i = 0; i < MOOR_VC_MAX_ENTRIES - 1; i++) {
        char k[8];
        int n = snprintf(k, sizeof(k), "k%03d", i);
        assert_int_equal(moor_vclock_increment(&vc, k, (size_t)n, 1), 0);
    }
    assert_int_equal(vc.n, MOOR_VC_MAX_ENTRIES);
    assert_int_equal(moor_vclock_increment(&vc, "new", 3, 1), MOOR_ENOMEM);
    assert_int_equal(vc.n, MOOR_VC_MAX_ENTRIES);
    assert_int_equal(moor_vclock_increment(&vc, "k000", 4, 1), 0); /* existing: fine */
    assert_valid(&vc);
    vc.e[0].counter = UINT64_MAX;
    assert_int_equal(moor_vclock_increment(&vc, vc.e[0].id, vc.e[0].idlen, 1), MOOR_EINVAL);
    assert_int_equal(vc.e[0].counter, UINT64_MAX);
}

/* ---- compare ---------------------------------------------------------------------- */

static void test_compare_orders(void **state)
{
    moor_vclock_t a, b;

    (void)state;
    moor_vclock_init(&a);
    moor_vclock_init(&b);
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_EQUAL);
    inc(&b, "n1", 1);
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_BEFORE); /* empty < anything */
    assert_int_equal(moor_vclock_compare(&b, &a), MOOR_VC_AFTER);
    inc(&a, "n1", 7); /* ts does not matter */
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_EQUAL);
    inc(&a, "n1", 2);
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_AFTER);
    inc(&b, "n2", 3); /* a {n1:2}, b {n1:1, n2:1} */
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_CONCURRENT);
    assert_int_equal(moor_vclock_compare(&b, &a), MOOR_VC_CONCURRENT);
    inc(&a, "n2", 4); /* a {n1:2, n2:1} descends b */
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_AFTER);
    assert_int_equal(moor_vclock_compare(&b, &a), MOOR_VC_BEFORE);
    inc(&b, "a", 5); /* an entry only b has, sorting first */
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_CONCURRENT);
    inc(&a, "a", 5);
    inc(&b, "n1", 5);
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_EQUAL);
    inc(&b, "zz", 5); /* an entry only b has, sorting last */
    assert_int_equal(moor_vclock_compare(&a, &b), MOOR_VC_BEFORE);
}

static void test_compare_random(void **state)
{
    int seen[4] = {0};

    (void)state;
    for (int iter = 0; iter < 20000; iter++) {
        moor_vclock_t a, b;
        random_clock(&a);
        if (iter % 3 == 0) { /* b derived from a, so BEFORE/AFTER/EQUAL are common */
            b = a;
            for (uint64_t s = testutil_rand(&rng) % 3; s > 0; s--) {
                size_t k = testutil_rand(&rng) % POOL_N;
                assert_int_equal(moor_vclock_increment(&b, pool[k], pool_len[k], 1), 0);
            }
        } else {
            random_clock(&b);
        }
        int got = moor_vclock_compare(&a, &b), want = ref_compare(&a, &b);
        if (got != want)
            fail_msg("compare %d, reference %d (iteration %d)", got, want, iter);
        assert_int_equal(moor_vclock_compare(&b, &a), mirror(got));
        seen[got]++;
    }
    for (int o = 0; o < 4; o++)
        if (seen[o] == 0)
            fail_msg("order %d never produced: the generator is too narrow", o);
}

/* ---- merge ------------------------------------------------------------------------ */

static void test_merge_laws(void **state)
{
    (void)state;
    for (int iter = 0; iter < 5000; iter++) {
        moor_vclock_t a, b, c, ab, ba, ab_c, bc, a_bc, aa;
        random_clock(&a);
        random_clock(&b);
        random_clock(&c);
        ab = a;
        assert_int_equal(moor_vclock_merge(&ab, &b), 0);
        ba = b;
        assert_int_equal(moor_vclock_merge(&ba, &a), 0);
        assert_vc_equal(&ab, &ba); /* commutative, ts included */
        ab_c = ab;
        assert_int_equal(moor_vclock_merge(&ab_c, &c), 0);
        bc = b;
        assert_int_equal(moor_vclock_merge(&bc, &c), 0);
        a_bc = a;
        assert_int_equal(moor_vclock_merge(&a_bc, &bc), 0);
        assert_vc_equal(&ab_c, &a_bc); /* associative */
        aa = a;
        assert_int_equal(moor_vclock_merge(&aa, &a), 0);
        assert_vc_equal(&aa, &a); /* idempotent */
        assert_valid(&ab);
        /* an upper bound: descends (or equals) both, and is the least one */
        int oa = moor_vclock_compare(&ab, &a), ob = moor_vclock_compare(&ab, &b);
        assert_true(oa == MOOR_VC_EQUAL || oa == MOOR_VC_AFTER);
        assert_true(ob == MOOR_VC_EQUAL || ob == MOOR_VC_AFTER);
        for (size_t k = 0; k < POOL_N; k++) {
            uint64_t ca = counter_of(&a, pool[k], pool_len[k]);
            uint64_t cb = counter_of(&b, pool[k], pool_len[k]);
            assert_int_equal(counter_of(&ab, pool[k], pool_len[k]), ca > cb ? ca : cb);
        }
    }
}

static void test_merge_ts_and_overflow(void **state)
{
    moor_vclock_t a, b, full, before;

    (void)state;
    moor_vclock_init(&a);
    moor_vclock_init(&b);
    inc(&a, "n1", 10);
    inc(&a, "n1", 11); /* n1:2 @11 */
    inc(&b, "n1", 50); /* n1:1 @50 */
    inc(&b, "n2", 60);
    assert_int_equal(moor_vclock_merge(&a, &b), 0);
    assert_int_equal(a.n, 2);
    assert_int_equal(a.e[0].counter, 2);
    assert_int_equal(a.e[0].ts, 11); /* ts follows the larger counter, not the larger ts */
    assert_int_equal(a.e[1].ts, 60);

    moor_vclock_init(&full);
    for (int i = 0; i < MOOR_VC_MAX_ENTRIES; i++) {
        char k[8];
        int n = snprintf(k, sizeof(k), "f%02d", i);
        assert_int_equal(moor_vclock_increment(&full, k, (size_t)n, 1), 0);
    }
    before = full;
    assert_int_equal(moor_vclock_merge(&full, &b), MOOR_ENOMEM);
    assert_vc_equal(&full, &before); /* unaltered */
    assert_int_equal(moor_vclock_merge(&full, &before), 0);
    assert_vc_equal(&full, &before);
}

/* ---- prune ------------------------------------------------------------------------ */

static void test_prune(void **state)
{
    moor_vclock_t vc;

    (void)state;
    moor_vclock_init(&vc);
    inc(&vc, "a", 500);
    inc(&vc, "b", 100);
    inc(&vc, "c", 300);
    inc(&vc, "d", 100); /* ties with b: the first by id (b) goes first */
    inc(&vc, "e", 900);
    assert_int_equal(moor_vclock_prune(&vc, 0, 5, 0, 1000), 0);
    assert_int_equal(moor_vclock_prune(&vc, 0, 3, 0, 1000), 2);
    assert_int_equal(vc.n, 3);
    assert_int_equal(counter_of(&vc, "b", 1), 0);
    assert_int_equal(counter_of(&vc, "d", 1), 0);
    assert_valid(&vc);
    /* by age: older than 1000 - 600 = 400 is c (300); a is 500 */
    assert_int_equal(moor_vclock_prune(&vc, 1, 10, 600, 1000), 1);
    assert_int_equal(vc.n, 2);
    assert_int_equal(counter_of(&vc, "c", 1), 0);
    /* keep_min holds even old entries */
    assert_int_equal(moor_vclock_prune(&vc, 2, 10, 1, 100000), 0);
    assert_int_equal(moor_vclock_prune(&vc, 1, 10, 1, 100000), 1);
    assert_int_equal(vc.n, 1);
    assert_memory_equal(vc.e[0].id, "e", 1);
    /* max_age 0: no age limit */
    assert_int_equal(moor_vclock_prune(&vc, 0, 10, 0, UINT64_MAX), 0);
    assert_int_equal(moor_vclock_prune(&vc, 0, 0, 0, 0), 1);
    assert_int_equal(vc.n, 0);
    assert_int_equal(moor_vclock_prune(&vc, 0, 0, 0, 0), 0);
}

static void test_prune_random_keeps_newest(void **state)
{
    (void)state;
    for (int iter = 0; iter < 2000; iter++) {
        moor_vclock_t vc, orig;
        uint32_t max = (uint32_t)(testutil_rand(&rng) % 6);
        random_clock(&vc);
        orig = vc;
        int dropped = moor_vclock_prune(&vc, 0, max, 0, 0);
        assert_int_equal(vc.n, orig.n > max ? max : orig.n);
        assert_int_equal((uint32_t)dropped, orig.n - vc.n);
        assert_valid(&vc);
        /* every kept entry is at least as new as every dropped one */
        uint64_t min_kept = UINT64_MAX;
        for (uint32_t i = 0; i < vc.n; i++)
            min_kept = vc.e[i].ts < min_kept ? vc.e[i].ts : min_kept;
        for (uint32_t i = 0; i < orig.n; i++)
            if (!counter_of(&vc, orig.e[i].id, orig.e[i].idlen))
                assert_true(orig.e[i].ts <= min_kept);
    }
}

/* ---- codec ------------------------------------------------------------------------ */

static void test_encode_exact_bytes(void **state)
{
    moor_vclock_t vc, back;
    moor_buf_t b = MOOR_BUF_INIT;
    const char *p;
    /* [[bin "a", 1, 300], [bin "n2", 2, 0]] */
    static const char want[] = "\x92"
                               "\x93\xc4\x01"
                               "a\x01\xcd\x01\x2c"
                               "\x93\xc4\x02"
                               "n2\x02\x00";

    (void)state;
    moor_vclock_init(&vc);
    inc(&vc, "n2", 7);
    inc(&vc, "n2", 0);
    inc(&vc, "a", 300);
    assert_int_equal(moor_vclock_encode(&vc, &b), 0);
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.data, want, b.len);
    p = b.data;
    assert_int_equal(moor_vclock_decode(&p, b.data + b.len, &back), 0);
    assert_ptr_equal(p, b.data + b.len);
    assert_vc_equal(&back, &vc);
    /* empty clock: one byte, and it appends */
    moor_vclock_init(&vc);
    assert_int_equal(moor_vclock_encode(&vc, &b), 0);
    assert_int_equal(b.len, sizeof(want));
    assert_int_equal((unsigned char)b.data[b.len - 1], 0x90);
    moor_buf_free(&b);
}

static void test_roundtrip_random(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    for (int iter = 0; iter < 3000; iter++) {
        moor_vclock_t vc, back;
        const char *p;
        random_clock(&vc);
        vc.e[0].ts = testutil_rand(&rng); /* full 64-bit values */
        if (vc.n)
            vc.e[0].counter = testutil_rand(&rng) | 1;
        moor_buf_reset(&b);
        assert_int_equal(moor_vclock_encode(&vc, &b), 0);
        p = b.data;
        assert_int_equal(moor_vclock_decode(&p, b.data + b.len, &back), 0);
        assert_ptr_equal(p, b.data + b.len);
        assert_vc_equal(&back, &vc);
    }
    moor_buf_free(&b);
}

/* Packs one hand-made clock-like value with msgpack-c. */
typedef void (*build_fn)(msgpack_packer *pk);

static void bad_not_array(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 0);
}
static void bad_entry_arity(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 2);
    msgpack_pack_bin_with_body(pk, "a", 1);
    msgpack_pack_uint64(pk, 1);
}
static void entry(msgpack_packer *pk, const char *id, size_t n, int64_t c, int64_t ts, int str)
{
    msgpack_pack_array(pk, 3);
    if (str)
        msgpack_pack_str_with_body(pk, id, n);
    else
        msgpack_pack_bin_with_body(pk, id, n);
    msgpack_pack_int64(pk, c);
    msgpack_pack_int64(pk, ts);
}
static void bad_id_str(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    entry(pk, "a", 1, 1, 1, 1);
}
static void bad_id_empty(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    entry(pk, "", 0, 1, 1, 0);
}
static void bad_id_long(msgpack_packer *pk)
{
    char id[MOOR_VC_ID_MAX + 1];
    memset(id, 'i', sizeof(id));
    msgpack_pack_array(pk, 1);
    entry(pk, id, sizeof(id), 1, 1, 0);
}
static void bad_counter_zero(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    entry(pk, "a", 1, 0, 1, 0);
}
static void bad_counter_negative(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    entry(pk, "a", 1, -1, 1, 0);
}
static void bad_ts_negative(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    entry(pk, "a", 1, 1, -5, 0);
}
static void bad_ts_float(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_bin_with_body(pk, "a", 1);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_double(pk, 1.0);
}
static void bad_unsorted(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    entry(pk, "b", 1, 1, 1, 0);
    entry(pk, "a", 1, 1, 1, 0);
}
static void bad_prefix_unsorted(msgpack_packer *pk) /* longer before its prefix */
{
    msgpack_pack_array(pk, 2);
    entry(pk, "ab", 2, 1, 1, 0);
    entry(pk, "a", 1, 1, 1, 0);
}
static void bad_duplicate(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    entry(pk, "a", 1, 1, 1, 0);
    entry(pk, "a", 1, 2, 1, 0);
}
static void bad_too_many(msgpack_packer *pk)
{
    msgpack_pack_array(pk, MOOR_VC_MAX_ENTRIES + 1);
    for (int i = 0; i < MOOR_VC_MAX_ENTRIES + 1; i++) {
        char k[8];
        int n = snprintf(k, sizeof(k), "k%03d", i);
        entry(pk, k, (size_t)n, 1, 1, 0);
    }
}
static void bad_nested_garbage(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_bin_with_body(pk, "a", 1);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_nil(pk);
}

static void test_decode_rejects(void **state)
{
    static const build_fn bad[] = {
        bad_not_array,       bad_entry_arity,      bad_id_str,      bad_id_empty,      bad_id_long,
        bad_counter_zero,    bad_counter_negative, bad_ts_negative, bad_ts_float,      bad_unsorted,
        bad_prefix_unsorted, bad_duplicate,        bad_too_many,    bad_nested_garbage};
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        moor_vclock_t vc;
        const char *p;
        moor_buf_reset(&b);
        moor_mp_packer_init(&pk, &b);
        bad[i](&pk);
        p = b.data;
        vc.n = 5;
        int rc = moor_vclock_decode(&p, b.data + b.len, &vc);
        if (rc != MOOR_EBADCTX)
            fail_msg("case %zu: got %d (%s), want MOOR_EBADCTX", i, rc, moor_err_name(rc));
        assert_ptr_equal(p, b.data); /* cursor unchanged */
        assert_int_equal(vc.n, 0);
    }
    /* the boundaries that are allowed: a 64-byte id, 64 entries */
    {
        char id[MOOR_VC_ID_MAX];
        moor_vclock_t vc;
        const char *p;
        memset(id, 'i', sizeof(id));
        moor_buf_reset(&b);
        moor_mp_packer_init(&pk, &b);
        msgpack_pack_array(&pk, MOOR_VC_MAX_ENTRIES);
        entry(&pk, id, sizeof(id), 1, 1, 0);
        for (int i = 1; i < MOOR_VC_MAX_ENTRIES; i++) {
            char k[8];
            int n = snprintf(k, sizeof(k), "k%03d", i);
            entry(&pk, k, (size_t)n, (int64_t)i, 1, 0);
        }
        p = b.data;
        assert_int_equal(moor_vclock_decode(&p, b.data + b.len, &vc), 0);
        assert_int_equal(vc.n, MOOR_VC_MAX_ENTRIES);
        assert_valid(&vc);
    }
    moor_buf_free(&b);
}

/* A clock with several entries, long ids and big numbers, so its encoding
 * has every kind of header byte. */
static void sample_clock(moor_vclock_t *vc)
{
    char id[MOOR_VC_ID_MAX];

    memset(id, 'q', sizeof(id));
    moor_vclock_init(vc);
    inc(vc, "n1", 1);
    inc(vc, "n1", 70000);
    inc(vc, "n2", 1700000000000ull);
    assert_int_equal(moor_vclock_increment(vc, id, sizeof(id), 255), 0);
    inc(vc, "ab", 0);
    vc->e[0].counter = 1ull << 40;
}

static void test_truncations(void **state)
{
    moor_vclock_t vc, back;
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    sample_clock(&vc);
    assert_int_equal(moor_vclock_encode(&vc, &b), 0);
    for (size_t cut = 0; cut < b.len; cut++) {
        char *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
        const char *p = copy;
        memcpy(copy, b.data, cut);
        int rc = moor_vclock_decode(&p, copy + cut, &back);
        if (rc != MOOR_EBADCTX)
            fail_msg("cut at %zu of %zu: got %d, want MOOR_EBADCTX", cut, b.len, rc);
        assert_ptr_equal(p, copy);
        free(copy);
    }
    moor_buf_free(&b);
}

static void test_single_byte_corruptions(void **state)
{
    moor_vclock_t vc;
    moor_buf_t b = MOOR_BUF_INIT, re = MOOR_BUF_INIT;
    size_t ok = 0, bad = 0;

    (void)state;
    sample_clock(&vc);
    assert_int_equal(moor_vclock_encode(&vc, &b), 0);
    char *copy = malloc(b.len);
    for (size_t pos = 0; pos < b.len; pos++) {
        for (int v = 0; v < 256; v++) {
            moor_vclock_t back, again;
            const char *p = copy;
            memcpy(copy, b.data, b.len);
            copy[pos] = (char)v;
            int rc = moor_vclock_decode(&p, copy + b.len, &back);
            if (rc == 0) {
                /* a valid clock: invariants hold and it survives a round trip */
                ok++;
                assert_true(p > copy && p <= copy + b.len);
                assert_valid(&back);
                moor_buf_reset(&re);
                assert_int_equal(moor_vclock_encode(&back, &re), 0);
                const char *q = re.data;
                assert_int_equal(moor_vclock_decode(&q, re.data + re.len, &again), 0);
                assert_vc_equal(&again, &back);
            } else if (rc == MOOR_EBADCTX) {
                bad++;
                assert_ptr_equal(p, copy);
            } else {
                fail_msg("byte %zu set to 0x%02x: got %d (%s)", pos, v, rc, moor_err_name(rc));
            }
        }
    }
    assert_true(ok > 0 && bad > 0);
    free(copy);
    moor_buf_free(&b);
    moor_buf_free(&re);
}

/* Bounds: counters at most (now + a day) * 1000, ts at most now + a day;
 * the bound saturates instead of wrapping for absurd wall clocks. */
static void test_check_bounds(void **state)
{
    const uint64_t now = 1700000000000ull, day = MOOR_VC_MAX_AHEAD_MS;
    moor_vclock_t vc;

    (void)state;
    assert_int_equal(moor_vclock_counter_bound(now), (now + day) * 1000);
    assert_int_equal(moor_vclock_counter_bound(UINT64_MAX), UINT64_MAX - 1);
    moor_vclock_init(&vc);
    assert_int_equal(moor_vclock_check_bounds(&vc, now, "ctx"), 0);
    assert_int_equal(moor_vclock_increment(&vc, "a", 1, now), 0);
    assert_int_equal(moor_vclock_increment(&vc, "b", 1, now), 0);
    vc.e[1].counter = (now + day) * 1000; /* exactly at the bound: fine */
    assert_int_equal(moor_vclock_check_bounds(&vc, now, "ctx"), 0);
    vc.e[1].counter++;
    assert_int_equal(moor_vclock_check_bounds(&vc, now, "ctx"), MOOR_EBADCTX);
    assert_non_null(strstr(moor_diag_last()->msg, "ctx: the counter of node 'b'"));
    vc.e[1].counter = UINT64_MAX;
    assert_int_equal(moor_vclock_check_bounds(&vc, now, "record"), MOOR_EBADCTX);
    assert_non_null(strstr(moor_diag_last()->msg, "record:"));
    vc.e[1].counter = 3;
    vc.e[0].ts = now + day + 1;
    assert_int_equal(moor_vclock_check_bounds(&vc, now, "ctx"), MOOR_EBADCTX);
    assert_non_null(strstr(moor_diag_last()->msg, "time of node 'a'"));
    vc.e[0].ts = now + day;
    assert_int_equal(moor_vclock_check_bounds(&vc, now, "ctx"), 0);
}

/* get and raise: raise is a merge with a one-entry clock (the larger
 * counter with its ts; equal counters: the larger ts), keeps ids sorted,
 * accepts the legacy id "\0" of converted records, refuses bad input and
 * a full clock. */
static void test_get_and_raise(void **state)
{
    moor_vclock_t vc, one, m;
    char id[2] = "a";

    (void)state;
    moor_vclock_init(&vc);
    assert_int_equal(moor_vclock_get(&vc, "a", 1), 0);
    assert_int_equal(moor_vclock_raise(&vc, "b", 1, 5, 50), 0);
    assert_int_equal(moor_vclock_raise(&vc, "\0", 1, 9000, 9), 0);
    assert_int_equal(moor_vclock_raise(&vc, "a", 1, 3, 30), 0);
    assert_int_equal(vc.n, 3);
    assert_int_equal(vc.e[0].id[0], 0); /* sorted: "\0" < "a" < "b" */
    assert_int_equal(vc.e[1].id[0], 'a');
    assert_int_equal(moor_vclock_get(&vc, "\0", 1), 9000);
    assert_int_equal(moor_vclock_raise(&vc, "b", 1, 4, 99), 0); /* lower: unchanged */
    assert_int_equal(moor_vclock_get(&vc, "b", 1), 5);
    assert_int_equal(vc.e[2].ts, 50);
    assert_int_equal(moor_vclock_raise(&vc, "b", 1, 5, 60), 0); /* equal: larger ts */
    assert_int_equal(vc.e[2].ts, 60);
    assert_int_equal(moor_vclock_raise(&vc, "b", 1, 7, 1), 0);
    assert_int_equal(moor_vclock_get(&vc, "b", 1), 7);
    assert_int_equal(vc.e[2].ts, 1);
    /* the same as a merge with a one-entry clock */
    m = vc;
    moor_vclock_init(&one);
    assert_int_equal(moor_vclock_raise(&one, "ab", 2, 2, 2), 0);
    assert_int_equal(moor_vclock_merge(&m, &one), 0);
    assert_int_equal(moor_vclock_raise(&vc, "ab", 2, 2, 2), 0);
    assert_int_equal(moor_vclock_compare(&m, &vc), MOOR_VC_EQUAL);
    assert_int_equal(m.n, vc.n);
    assert_memory_equal(m.e, vc.e, vc.n * sizeof(vc.e[0]));
    /* bad input */
    assert_int_equal(moor_vclock_raise(&vc, "", 0, 1, 1), MOOR_EINVAL);
    assert_int_equal(moor_vclock_raise(&vc, "a", 1, 0, 1), MOOR_EINVAL);
    /* full */
    moor_vclock_init(&vc);
    for (int i = 0; i < MOOR_VC_MAX_ENTRIES; i++) {
        char two[2] = {(char)('A' + i / 26), (char)('a' + i % 26)};
        assert_int_equal(moor_vclock_raise(&vc, two, 2, 1, 1), 0);
    }
    assert_int_equal(moor_vclock_raise(&vc, id, 1, 1, 1), MOOR_ENOMEM);
    assert_int_equal(vc.n, MOOR_VC_MAX_ENTRIES);
    assert_int_equal(moor_vclock_raise(&vc, "Aa", 2, 8, 1), 0); /* present: fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_increment_order),
        cmocka_unit_test(test_check_bounds),
        cmocka_unit_test(test_increment_errors),
        cmocka_unit_test(test_get_and_raise),
        cmocka_unit_test(test_compare_orders),
        cmocka_unit_test(test_compare_random),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_merge_ts_and_overflow),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_prune_random_keeps_newest),
        cmocka_unit_test(test_encode_exact_bytes),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_single_byte_corruptions),
    };

    rng = testutil_seed("test_vclock");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
