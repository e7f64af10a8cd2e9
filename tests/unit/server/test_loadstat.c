/*
 * test_loadstat.c -- the per-interval load figures (core/server/loadstat.h):
 * rates by kind, the p99 from the histogram (never low, at most one bucket
 * high), CPU and cache rates, and the packed map's field names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "server/loadstat.h"
#include "util/mp.h"

static void test_rates_and_p99(void **state)
{
    moor_loadstat_t ls;
    moor_engine_stats_t es;
    (void)state;

    memset(&ls, 0, sizeof(ls));
    memset(&es, 0, sizeof(es));
    moor_loadstat_roll(&ls, 1000, 0, &es); /* opens the first interval */
    /* 990 fast gets (100 µs), 20 slow puts (50 ms) in 2 s: 2% slow */
    for (int i = 0; i < 990; i++)
        moor_loadstat_record(&ls, MOOR_LS_GET, 100);
    for (int i = 0; i < 20; i++)
        moor_loadstat_record(&ls, MOOR_LS_PUT, 50000);
    moor_loadstat_record(&ls, 99, 1); /* an unknown kind counts as other */
    es.cache_hits = 30, es.cache_misses = 10;
    moor_loadstat_roll(&ls, 3000, 500000, &es);
    assert_true(fabs(ls.rps[MOOR_LS_GET] - 495.0) < 1e-9);
    assert_true(fabs(ls.rps[MOOR_LS_PUT] - 10.0) < 1e-9);
    assert_true(fabs(ls.rps[MOOR_LS_OTHER] - 0.5) < 1e-9);
    assert_true(fabs(ls.rps_total - 505.5) < 1e-9);
    /* 1011 samples: the 1001st (the 99th percentile) is a put */
    printf("p99 %.3f ms\n", ls.p99_ms);
    assert_true(ls.p99_ms >= 50.0 && ls.p99_ms <= 50.0 * 1.19);
    assert_true(fabs(ls.cpu_ms_per_s - 250.0) < 1e-9);
    assert_true(fabs(ls.cache_hit_rate - 0.75) < 1e-9);
    /* an empty interval: zero rates, p99 0, hit rate 1 */
    moor_loadstat_roll(&ls, 4000, 500000, &es);
    assert_true(ls.rps_total == 0.0 && ls.p99_ms == 0.0 && ls.cache_hit_rate == 1.0);
}

static void test_p99_never_low(void **state)
{
    uint32_t hist[MOOR_LS_BUCKETS];
    (void)state;

    for (uint64_t us = 1; us < 20000000; us = us * 3 / 2 + 1) {
        moor_loadstat_t ls;
        memset(&ls, 0, sizeof(ls));
        moor_loadstat_record(&ls, MOOR_LS_GET, us);
        memcpy(hist, ls.hist, sizeof(hist));
        double p = moor_loadstat_p99(hist);
        double want = (double)us / 1000.0;
        if (us < (1u << 24))
            assert_true(p >= want * 0.9999 && p <= want * 1.19 + 0.001);
    }
    memset(hist, 0, sizeof(hist));
    assert_true(moor_loadstat_p99(hist) == 0.0);
}

static void test_pack(void **state)
{
    static const char *const names[] = {"rps", "p99_ms", "bytes_stored", "memtable_pressure",
                                        "cache_pressure", "cache_hit_rate", "cpu_ms_per_s"};
    moor_loadstat_t ls;
    moor_engine_stats_t es;
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    const char *p, *end, *k;
    uint32_t n, klen;
    double d;
    (void)state;

    memset(&ls, 0, sizeof(ls));
    memset(&es, 0, sizeof(es));
    es.disk_bytes = 12345;
    es.memtable_bytes = 512;
    es.cache_bytes = 25, es.cache_capacity = 100;
    moor_mp_packer_init(&pk, &b);
    assert_int_equal(moor_loadstat_pack(&ls, &es, 1024, &pk), 0);
    p = b.data, end = b.data + b.len;
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(n, 7);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        assert_int_equal(klen, strlen(names[i]));
        assert_memory_equal(k, names[i], klen);
        if (i == 0) {
            uint32_t m;
            assert_int_equal(moor_mp_read_map(&p, end, &m), 0);
            assert_int_equal(m, 6); /* get put del call other total */
            for (unsigned j = 0; j < 2 * m; j++)
                assert_int_equal(moor_mp_skip(&p, end, 4), 0);
        } else if (i == 2) {
            uint64_t u;
            assert_int_equal(moor_mp_read_uint(&p, end, &u), 0);
            assert_int_equal(u, 12345);
        } else {
            assert_int_equal(moor_mp_read_double(&p, end, &d), 0);
            if (i == 3)
                assert_true(d == 0.5);
            if (i == 4)
                assert_true(d == 0.25);
        }
    }
    assert_ptr_equal(p, end);
    assert_true(moor_loadstat_thread_cpu_us() > 0);
    moor_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates_and_p99),
        cmocka_unit_test(test_p99_never_low),
        cmocka_unit_test(test_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
