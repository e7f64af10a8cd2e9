/*
 * test_arena.c -- the bump allocator: every allocation 8-aligned, sizes
 * from 1 byte to several blocks (including just above a quarter block,
 * which gets a block of its own without abandoning the current one),
 * usage that grows with what was handed out and is bounded by it, destroy
 * that resets, and contents that survive many later allocations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/arena.h"
#include "testutil.h"

#define QUARTER (MOOR_ARENA_BLOCK / 4)

typedef struct rec {
    unsigned char *p;
    size_t n;
    unsigned char tag;
} rec_t;

static void fill(rec_t *r)
{
    memset(r->p, r->tag, r->n);
}

static void check(const rec_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->p[i] != r->tag) {
            print_error("allocation of %zu bytes changed at byte %zu\n", r->n, i);
            assert_int_equal(r->p[i], r->tag);
        }
}

static void test_alignment_every_size(void **state)
{
    moor_arena_t a;

    (void)state;
    moor_arena_init(&a);
    assert_int_equal(moor_arena_usage(&a), 0);
    /* Odd sizes in a row are what would push the bump pointer off 8. */
    for (size_t n = 1; n <= 3 * QUARTER; n += (n < 100 ? 1 : 997)) {
        void *p = moor_arena_alloc(&a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 8, 0);
        memset(p, 0xab, n);
        void *q = moor_arena_alloc(&a, 1);
        assert_non_null(q);
        assert_int_equal((uintptr_t)q % 8, 0);
    }
    moor_arena_destroy(&a);
}

/* Random sizes, mostly small with some large, filled with a tag and all
 * checked at the end: no allocation overlaps another or is reused. */
static void test_contents_survive(void **state)
{
    uint64_t rng = testutil_seed("test_contents_survive");
    enum { N = 20000 };
    rec_t *recs = calloc(N, sizeof(*recs));
    moor_arena_t a;
    size_t requested = 0, prev_usage = 0;

    (void)state;
    assert_non_null(recs);
    moor_arena_init(&a);
    for (int i = 0; i < N; i++) {
        uint64_t r = testutil_rand(&rng);
        size_t n;
        switch (r % 100) {
        case 0: n = QUARTER + 1 + (size_t)(r >> 8) % (2 * MOOR_ARENA_BLOCK); break;
        case 1: n = QUARTER; break;
        case 2: n = MOOR_ARENA_BLOCK; break;
        default: n = 1 + (size_t)(r >> 8) % 200; break;
        }
        recs[i].p = moor_arena_alloc(&a, n);
        assert_non_null(recs[i].p);
        assert_int_equal((uintptr_t)recs[i].p % 8, 0);
        recs[i].n = n;
        recs[i].tag = (unsigned char)(i * 31 + 7);
        fill(&recs[i]);
        requested += n;
        /* Usage never shrinks and always covers what was handed out. */
        assert_true(moor_arena_usage(&a) >= prev_usage);
        assert_true(moor_arena_usage(&a) >= requested);
        prev_usage = moor_arena_usage(&a);
    }
    for (int i = 0; i < N; i++)
        check(&recs[i]);
    print_message("arena: %zu bytes requested, usage %zu\n", requested, moor_arena_usage(&a));
    moor_arena_destroy(&a);
    assert_int_equal(moor_arena_usage(&a), 0);
    free(recs);
}

/* Small allocations waste at most a quarter block (plus padding) per
 * block, so usage stays within 4/3 of the padded bytes plus one block. */
static void test_usage_bounded(void **state)
{
    uint64_t rng = testutil_seed("test_usage_bounded");
    moor_arena_t a;
    size_t padded = 0;

    (void)state;
    moor_arena_init(&a);
    while (padded < 16 * MOOR_ARENA_BLOCK) {
        size_t n = 1 + (size_t)(testutil_rand(&rng) % QUARTER);
        assert_non_null(moor_arena_alloc(&a, n));
        padded += (n + 7) & ~(size_t)7;
    }
    print_message("arena: %zu padded bytes, usage %zu\n", padded, moor_arena_usage(&a));
    assert_true(moor_arena_usage(&a) <= padded / 3 * 4 + 2 * MOOR_ARENA_BLOCK);
    moor_arena_destroy(&a);
}

/* A large allocation that does not fit in the current block's tail gets
 * a block of its own, and the current block keeps serving small ones: the
 * small allocation after it costs no new block.  (One that does fit is
 * simply bumped, as in LevelDB's arena.) */
static void test_large_keeps_current_block(void **state)
{
    moor_arena_t a;
    unsigned char *small1, *big, *small2;
    size_t u1, u2;

    (void)state;
    moor_arena_init(&a);
    small1 = moor_arena_alloc(&a, 100);
    assert_non_null(small1);
    memset(small1, 1, 100);
    /* Leave 65536 - 104 - 8 * 7000 = 9432 bytes in the block. */
    for (int i = 0; i < 8; i++)
        assert_ptr_equal(moor_arena_alloc(&a, 7000), small1 + 104 + 7000 * i);
    u1 = moor_arena_usage(&a);
    assert_true(u1 >= MOOR_ARENA_BLOCK);
    assert_true(u1 < 2 * MOOR_ARENA_BLOCK);

    big = moor_arena_alloc(&a, QUARTER + 1);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % 8, 0);
    memset(big, 2, QUARTER + 1);
    u2 = moor_arena_usage(&a);
    assert_true(u2 >= u1 + QUARTER + 1);
    assert_true(u2 < u1 + MOOR_ARENA_BLOCK); /* sized to fit, not a whole block */

    small2 = moor_arena_alloc(&a, 100);
    assert_non_null(small2);
    memset(small2, 3, 100);
    assert_int_equal(moor_arena_usage(&a), u2);
    /* Bumped from the first block, right after the fillers. */
    assert_ptr_equal(small2, small1 + 104 + 8 * 7000);

    /* A small one that no longer fits opens a fresh block. */
    assert_non_null(moor_arena_alloc(&a, 9432 - 104 + 8));
    assert_true(moor_arena_usage(&a) >= u2 + MOOR_ARENA_BLOCK);
    u2 = moor_arena_usage(&a);

    /* Bigger than a whole block works too. */
    unsigned char *huge = moor_arena_alloc(&a, 5 * MOOR_ARENA_BLOCK + 3);
    assert_non_null(huge);
    memset(huge, 4, 5 * MOOR_ARENA_BLOCK + 3);
    assert_true(moor_arena_usage(&a) >= u2 + 5 * MOOR_ARENA_BLOCK + 3);

    for (int i = 0; i < 100; i++) {
        assert_int_equal(small1[i], 1);
        assert_int_equal(small2[i], 3);
    }
    assert_int_equal(big[0], 2);
    assert_int_equal(big[QUARTER], 2);
    moor_arena_destroy(&a);
}

/* The first allocation may be large, before any block exists. */
static void test_large_first(void **state)
{
    moor_arena_t a;
    void *p, *q;

    (void)state;
    moor_arena_init(&a);
    p = moor_arena_alloc(&a, 3 * MOOR_ARENA_BLOCK);
    assert_non_null(p);
    memset(p, 9, 3 * MOOR_ARENA_BLOCK);
    q = moor_arena_alloc(&a, 8);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % 8, 0);
    assert_true(moor_arena_usage(&a) >= 3 * MOOR_ARENA_BLOCK + 8);
    moor_arena_destroy(&a);
}

/* destroy resets; the arena is then reusable, repeatedly (ASan checks
 * that every block is freed exactly once). */
static void test_destroy_and_reuse(void **state)
{
    moor_arena_t a;

    (void)state;
    moor_arena_init(&a);
    moor_arena_destroy(&a); /* destroying an empty arena is fine */
    assert_int_equal(moor_arena_usage(&a), 0);
    for (int round = 0; round < 5; round++) {
        size_t before = moor_arena_usage(&a);
        assert_int_equal(before, 0);
        for (int i = 0; i < 3000; i++) {
            char *p = moor_arena_alloc(&a, 1 + (size_t)(i % 70));
            assert_non_null(p);
            p[0] = (char)i;
        }
        assert_non_null(moor_arena_alloc(&a, 2 * MOOR_ARENA_BLOCK));
        assert_true(moor_arena_usage(&a) > 2 * MOOR_ARENA_BLOCK);
        moor_arena_destroy(&a);
        assert_int_equal(moor_arena_usage(&a), 0);
        assert_null(a.blocks);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_every_size),
        cmocka_unit_test(test_contents_survive),
        cmocka_unit_test(test_usage_bounded),
        cmocka_unit_test(test_large_keeps_current_block),
        cmocka_unit_test(test_large_first),
        cmocka_unit_test(test_destroy_and_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
