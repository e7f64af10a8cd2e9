/*
 * test_cache.c -- the block cache: LRU eviction order, the byte bound,
 * pinning, replacement, erase_file, deleters called exactly once, and a
 * multi-threaded stress meant to run under ASan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "engine/cache.h"
#include "testutil.h"

/* Values are tracked by id so each test can check how often each one was
 * deleted; ids are per test (reset in setup). */
#define MAX_IDS 4096

typedef struct tval {
    int id;
    uint64_t file, off; /* the key it was inserted under, for the stress check */
} tval_t;

static atomic_int deleted[MAX_IDS];
static atomic_long total_deleted;

static void tval_delete(void *p)
{
    tval_t *v = p;

    if (v->id >= 0 && v->id < MAX_IDS)
        atomic_fetch_add(&deleted[v->id], 1);
    atomic_fetch_add(&total_deleted, 1);
    free(v);
}

static tval_t *tval_new(int id, uint64_t file, uint64_t off)
{
    tval_t *v = malloc(sizeof(*v));

    assert_non_null(v);
    v->id = id;
    v->file = file;
    v->off = off;
    return v;
}

static int reset_counts(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_IDS; i++)
        atomic_store(&deleted[i], 0);
    atomic_store(&total_deleted, 0);
    return 0;
}

/* Insert-and-release in one step; returns nothing because the entry may
 * already be gone when the cache is tiny. */
static void put(moor_cache_t *c, int id, uint64_t file, uint64_t off, size_t charge)
{
    moor_cache_handle_t *h =
        moor_cache_insert(c, file, off, tval_new(id, file, off), charge, tval_delete);
    assert_non_null(h);
    moor_cache_release(c, h);
}

/* id of the cached value under (file, off), or -1 on a miss. */
static int get_id(moor_cache_t *c, uint64_t file, uint64_t off)
{
    moor_cache_handle_t *h = moor_cache_lookup(c, file, off);
    int id;

    if (!h)
        return -1;
    id = ((tval_t *)moor_cache_value(h))->id;
    moor_cache_release(c, h);
    return id;
}

static void assert_each_deleted_once(int nids)
{
    for (int i = 0; i < nids; i++) {
        if (atomic_load(&deleted[i]) != 1)
            fail_msg("value %d deleted %d times, want 1", i, atomic_load(&deleted[i]));
    }
}

static void test_basic_and_stats(void **state)
{
    moor_cache_t *c = moor_cache_new(1000);
    moor_cache_stats_t st;
    (void)state;

    assert_non_null(c);
    assert_int_equal(get_id(c, 1, 0), -1);
    put(c, 0, 1, 0, 100);
    put(c, 1, 1, 4096, 200);
    put(c, 2, 2, 0, 300);
    assert_int_equal(get_id(c, 1, 0), 0);
    assert_int_equal(get_id(c, 1, 4096), 1);
    assert_int_equal(get_id(c, 2, 0), 2);
    assert_int_equal(get_id(c, 2, 4096), -1);
    moor_cache_stats(c, &st);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.usage, 600);
    assert_int_equal(st.capacity, 1000);
    assert_int_equal(st.entries, 3);
    moor_cache_free(c);
    assert_each_deleted_once(3);
}

static void test_eviction_order(void **state)
{
    moor_cache_t *c = moor_cache_new(3);
    (void)state;

    put(c, 0, 7, 0, 1);
    put(c, 1, 7, 1, 1);
    put(c, 2, 7, 2, 1);
    assert_int_equal(get_id(c, 7, 0), 0); /* 0 is now the most recent */
    put(c, 3, 7, 3, 1);                   /* evicts 1, the coldest */
    assert_int_equal(atomic_load(&deleted[1]), 1);
    assert_int_equal(atomic_load(&deleted[0]), 0);
    assert_int_equal(get_id(c, 7, 1), -1);
    assert_int_equal(get_id(c, 7, 2), 2); /* order now: 0, 3, 2 */
    put(c, 4, 7, 4, 1);                   /* evicts 0 */
    assert_int_equal(get_id(c, 7, 0), -1);
    assert_int_equal(get_id(c, 7, 3), 3);
    assert_int_equal(get_id(c, 7, 4), 4);
    assert_int_equal(get_id(c, 7, 2), 2);
    put(c, 5, 7, 5, 2); /* order 3, 4, 2: a charge of 2 evicts 3 and 4 */
    assert_int_equal(get_id(c, 7, 3), -1);
    assert_int_equal(get_id(c, 7, 4), -1);
    assert_int_equal(get_id(c, 7, 2), 2);
    assert_int_equal(get_id(c, 7, 5), 5);
    moor_cache_free(c);
    assert_each_deleted_once(6);
}

static void test_capacity_bound(void **state)
{
    const size_t cap = 10000;
    uint64_t rnd = testutil_seed("cache capacity");
    moor_cache_t *c = moor_cache_new(cap);
    moor_cache_stats_t st;
    (void)state;

    for (int i = 0; i < 3000; i++) {
        size_t charge = 1 + testutil_rand(&rnd) % 700;
        uint64_t off = testutil_rand(&rnd) % 500;

        put(c, i, testutil_rand(&rnd) % 3, off, charge);
        moor_cache_stats(c, &st);
        if (st.usage > cap)
            fail_msg("usage %zu > capacity %zu after insert %d", st.usage, cap, i);
    }
    moor_cache_free(c);
    assert_each_deleted_once(3000);
}

static void test_pinned_survive_eviction(void **state)
{
    moor_cache_t *c = moor_cache_new(4);
    moor_cache_handle_t *pin;
    moor_cache_stats_t st;
    (void)state;

    pin = moor_cache_insert(c, 1, 0, tval_new(0, 1, 0), 2, tval_delete);
    assert_non_null(pin);
    for (int i = 1; i <= 20; i++)
        put(c, i, 2, (uint64_t)i, 1);
    assert_int_equal(atomic_load(&deleted[0]), 0);
    assert_int_equal(((tval_t *)moor_cache_value(pin))->id, 0);
    assert_int_equal(get_id(c, 1, 0), 0); /* pinned entries stay findable */

    /* A pinned entry bigger than the whole capacity pushes usage over it
     * only while it is pinned. */
    moor_cache_handle_t *big = moor_cache_insert(c, 3, 0, tval_new(21, 3, 0), 10, tval_delete);
    assert_non_null(big);
    moor_cache_stats(c, &st);
    assert_int_equal(st.usage, 12);
    assert_int_equal(atomic_load(&deleted[21]), 0);
    moor_cache_release(c, big);
    assert_int_equal(atomic_load(&deleted[21]), 1);
    moor_cache_stats(c, &st);
    assert_true(st.usage <= st.capacity);
    assert_int_equal(get_id(c, 1, 0), 0);

    moor_cache_release(c, pin);
    assert_int_equal(atomic_load(&deleted[0]), 0); /* still cached, now unpinned */
    moor_cache_stats(c, &st);
    assert_true(st.usage <= st.capacity);
    moor_cache_free(c);
    assert_each_deleted_once(22);
}

static void test_replace_same_key(void **state)
{
    moor_cache_t *c = moor_cache_new(100);
    moor_cache_handle_t *old;
    moor_cache_stats_t st;
    (void)state;

    put(c, 0, 5, 5, 10);
    put(c, 1, 5, 5, 20);
    assert_int_equal(atomic_load(&deleted[0]), 1);
    assert_int_equal(get_id(c, 5, 5), 1);
    moor_cache_stats(c, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.usage, 20);

    /* Replacing a pinned entry: the holder keeps its value until release. */
    old = moor_cache_lookup(c, 5, 5);
    assert_non_null(old);
    put(c, 2, 5, 5, 30);
    assert_int_equal(atomic_load(&deleted[1]), 0);
    assert_int_equal(((tval_t *)moor_cache_value(old))->id, 1);
    assert_int_equal(get_id(c, 5, 5), 2);
    moor_cache_stats(c, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.usage, 30);
    moor_cache_release(c, old);
    assert_int_equal(atomic_load(&deleted[1]), 1);
    assert_int_equal(get_id(c, 5, 5), 2);
    moor_cache_free(c);
    assert_each_deleted_once(3);
}

static void test_erase_file(void **state)
{
    moor_cache_t *c = moor_cache_new(1 << 20);
    moor_cache_handle_t *pin;
    moor_cache_stats_t st;
    (void)state;

    for (int i = 0; i < 300; i++)
        put(c, i, (uint64_t)(i % 3), (uint64_t)i * 4096, 10);
    pin = moor_cache_lookup(c, 1, 1 * 4096);
    assert_non_null(pin);
    moor_cache_erase_file(c, 1);
    for (int i = 0; i < 300; i++) {
        int want_gone = i % 3 == 1;
        assert_int_equal(get_id(c, (uint64_t)(i % 3), (uint64_t)i * 4096), want_gone ? -1 : i);
        if (i != 1)
            assert_int_equal(atomic_load(&deleted[i]), want_gone);
    }
    assert_int_equal(atomic_load(&deleted[1]), 0); /* pinned: alive until release */
    assert_int_equal(((tval_t *)moor_cache_value(pin))->id, 1);
    moor_cache_stats(c, &st);
    assert_int_equal(st.entries, 200);
    assert_int_equal(st.usage, 2000);
    moor_cache_release(c, pin);
    assert_int_equal(atomic_load(&deleted[1]), 1);
    moor_cache_erase_file(c, 99); /* no such file: nothing happens */
    moor_cache_stats(c, &st);
    assert_int_equal(st.entries, 200);
    moor_cache_free(c);
    assert_each_deleted_once(300);
}

static void test_zero_capacity(void **state)
{
    moor_cache_t *c = moor_cache_new(0);
    moor_cache_handle_t *h;
    moor_cache_stats_t st;
    (void)state;

    h = moor_cache_insert(c, 1, 2, tval_new(0, 1, 2), 100, tval_delete);
    assert_non_null(h);
    assert_int_equal(((tval_t *)moor_cache_value(h))->id, 0);
    moor_cache_release(c, h);
    assert_int_equal(atomic_load(&deleted[0]), 1);
    assert_int_equal(get_id(c, 1, 2), -1);
    moor_cache_stats(c, &st);
    assert_int_equal(st.usage, 0);
    assert_int_equal(st.entries, 0);
    moor_cache_free(c);
}

static void test_many_entries_grow_table(void **state)
{
    const int n = 4000;
    moor_cache_t *c = moor_cache_new(SIZE_MAX);
    moor_cache_stats_t st;
    (void)state;

    for (int i = 0; i < n; i++)
        put(c, i, (uint64_t)i / 100, (uint64_t)i % 100 * 4096, 1);
    for (int i = 0; i < n; i++)
        assert_int_equal(get_id(c, (uint64_t)i / 100, (uint64_t)i % 100 * 4096), i);
    moor_cache_stats(c, &st);
    assert_int_equal(st.entries, n);
    assert_int_equal(st.usage, n);
    assert_int_equal(atomic_load(&total_deleted), 0);
    moor_cache_free(c);
    assert_each_deleted_once(n);
}

/* ---- multi-threaded stress ---------------------------------------------- */

#define STRESS_THREADS 4
#define STRESS_OPS 200000

typedef struct stress_arg {
    moor_cache_t *c;
    uint64_t seed;
    long inserted;
    long bad; /* values found under the wrong key */
} stress_arg_t;

static void *stress_thread(void *p)
{
    stress_arg_t *a = p;
    moor_cache_handle_t *held[4] = {NULL};

    for (int i = 0; i < STRESS_OPS; i++) {
        uint64_t r = testutil_rand(&a->seed);
        uint64_t file = r % 4, off = (r >> 8) % 300;
        moor_cache_handle_t *h = moor_cache_lookup(a->c, file, off);

        if (!h) {
            h = moor_cache_insert(a->c, file, off, tval_new(-1, file, off), 1 + (r >> 20) % 64,
                                  tval_delete);
            if (!h)
                continue;
            a->inserted++;
        }
        tval_t *v = moor_cache_value(h);
        if (v->file != file || v->off != off)
            a->bad++;
        if ((r >> 40) % 16 == 0)
            moor_cache_erase_file(a->c, (r >> 44) % 4);
        /* Keep a few handles pinned across operations. */
        size_t slot = (r >> 50) % 4;
        if (held[slot])
            moor_cache_release(a->c, held[slot]);
        held[slot] = h;
    }
    for (int i = 0; i < 4; i++)
        if (held[i])
            moor_cache_release(a->c, held[i]);
    return NULL;
}

static void test_threads_stress(void **state)
{
    const size_t cap = 4000;
    uint64_t seed = testutil_seed("cache stress");
    moor_cache_t *c = moor_cache_new(cap);
    pthread_t th[STRESS_THREADS];
    stress_arg_t args[STRESS_THREADS];
    moor_cache_stats_t st;
    long inserted = 0;
    (void)state;

    for (int i = 0; i < STRESS_THREADS; i++) {
        args[i] = (stress_arg_t){.c = c, .seed = seed + (uint64_t)i * 7919};
        assert_int_equal(pthread_create(&th[i], NULL, stress_thread, &args[i]), 0);
    }
    for (int i = 0; i < STRESS_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].bad, 0);
        inserted += args[i].inserted;
    }
    moor_cache_stats(c, &st);
    assert_true(st.usage <= cap);
    assert_int_equal(st.hits + st.misses, (uint64_t)STRESS_THREADS * STRESS_OPS);
    assert_true(st.hits > 0);
    assert_int_equal(atomic_load(&total_deleted) + (long)st.entries, inserted);
    moor_cache_free(c);
    assert_int_equal(atomic_load(&total_deleted), inserted);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_basic_and_stats, reset_counts),
        cmocka_unit_test_setup(test_eviction_order, reset_counts),
        cmocka_unit_test_setup(test_capacity_bound, reset_counts),
        cmocka_unit_test_setup(test_pinned_survive_eviction, reset_counts),
        cmocka_unit_test_setup(test_replace_same_key, reset_counts),
        cmocka_unit_test_setup(test_erase_file, reset_counts),
        cmocka_unit_test_setup(test_zero_capacity, reset_counts),
        cmocka_unit_test_setup(test_many_entries_grow_table, reset_counts),
        cmocka_unit_test_setup(test_threads_stress, reset_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
