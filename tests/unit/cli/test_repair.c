/*
 * test_repair.c -- the pure parts of `moor repair` (core/cli/repair.c):
 * --range parsing (decimal, hex, the extremes, every malformed form),
 * reading info.repair from an info answer or on its own (unknown entries
 * skipped, wrong types and truncations refused), the rate window (rates
 * over the last seconds, old samples dropped, counters that restart),
 * the number, byte and ETA formats, the progress line and the summary
 * exactly as README shows them.
 *
 * The CLI sources are compiled into this test (core/cli is an executable,
 * not a library).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "cli/json.c"   /* TEST: core/cli is an executable, not a library */
#include "cli/repair.c" /* TEST: likewise */
#include "util/err.h"
#include "util/mp.h"

static void test_parse_range(void **state)
{
    uint64_t lo = 7, hi = 7;

    (void)state;
    assert_int_equal(moor_repair_parse_range("12:34", &lo, &hi), 0);
    assert_true(lo == 12 && hi == 34);
    assert_int_equal(moor_repair_parse_range("0:18446744073709551615", &lo, &hi), 0);
    assert_true(lo == 0 && hi == UINT64_MAX);
    assert_int_equal(moor_repair_parse_range("0xffffffffffffffff:0x10", &lo, &hi), 0);
    assert_true(lo == UINT64_MAX && hi == 16);
    assert_int_equal(moor_repair_parse_range("0XaB:9", &lo, &hi), 0);
    assert_true(lo == 0xab && hi == 9);
    /* a wrapping range (lo > hi) is the node's to judge */
    assert_int_equal(moor_repair_parse_range("900:100", &lo, &hi), 0);
    assert_true(lo == 900 && hi == 100);

    static const char *const bad[] = {
        "",
        ":",
        "1:",
        ":1",
        "1",
        "1:2:3",
        "-1:2",
        "+1:2",
        "1: 2",
        " 1:2",
        "1:2 ",
        "0x:1",
        "1:0x",
        "12a:3",
        "1:0xg",
        "18446744073709551616:1",
        "1:0x10000000000000000",
        "1,2",
        "1:2\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lo = hi = 7;
        if (moor_repair_parse_range(bad[i], &lo, &hi) != MOOR_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(lo == 7 && hi == 7);
    }
    assert_int_equal(moor_repair_parse_range(NULL, &lo, &hi), MOOR_EINVAL);
}

/* MessagePack of a JSON text. */
static void json_mp(const char *text, moor_buf_t *out)
{
    int rc;

    moor_buf_reset(out);
    rc = moor_json_to_mp(text, strlen(text), out, NULL);
    if (rc)
        fail_msg("parse of %s failed: %s", text, moor_diag_msg(rc));
}

#define REPAIR_JSON                                                                     \
    "{\"running\":true,\"ranges_total\":192,\"ranges_done\":12,\"exchanges\":30,"       \
    "\"exchange_failures\":1,\"keys_compared\":1234,\"keys_repaired\":56,"              \
    "\"bytes_sent\":1000,\"bytes_received\":2000,\"tombstones_reaped\":3,\"passes\":4," \
    "\"last_full_pass_s\":12.5,\"last_full_pass_ms\":1700000000000,\"trees\":192,"      \
    "\"trees_ready\":true,\"build_keys\":10000,\"build_s\":0.25,\"future\":[1,{\"a\":2}]}"

static void check_info(const moor_repair_info_t *in)
{
    assert_true(in->running && in->trees_ready);
    assert_true(in->ranges_total == 192 && in->ranges_done == 12);
    assert_true(in->exchanges == 30 && in->exchange_failures == 1);
    assert_true(in->keys_compared == 1234 && in->keys_repaired == 56);
    assert_true(in->bytes_sent == 1000 && in->bytes_received == 2000);
    assert_true(in->tombstones_reaped == 3 && in->passes == 4 && in->trees == 192);
    assert_true(in->last_full_pass_s == 12.5 && in->last_full_pass_ms == 1700000000000ull);
}

static void test_read_info(void **state)
{
    moor_buf_t mp = MOOR_BUF_INIT;
    moor_repair_info_t in;

    (void)state;
    json_mp(REPAIR_JSON, &mp);
    memset(&in, 0, sizeof(in));
    assert_int_equal(moor_repair_read_info(mp.data, mp.len, &in), 0);
    check_info(&in);

    /* inside an info answer, after other entries */
    json_mp("{\"node\":\"n1\",\"running\":5,\"cluster\":{\"members\":[1,2]},\"repair\":" REPAIR_JSON
            ",\"hints\":{}}",
            &mp);
    memset(&in, 0, sizeof(in));
    assert_int_equal(moor_repair_read_info(mp.data, mp.len, &in), 0);
    check_info(&in);

    /* missing fields read as 0; last_full_pass_s may come as an integer */
    json_mp("{\"running\":false,\"last_full_pass_s\":3}", &mp);
    memset(&in, 0xff, sizeof(in));
    assert_int_equal(moor_repair_read_info(mp.data, mp.len, &in), 0);
    assert_true(!in.running && in.ranges_total == 0 && in.bytes_sent == 0);
    assert_true(in.last_full_pass_s == 3.0);

    /* an info answer without repair (no anti-entropy wired) */
    json_mp("{\"node\":\"n1\",\"hints\":{}}", &mp);
    assert_int_equal(moor_repair_read_info(mp.data, mp.len, &in), MOOR_ENOTFOUND);

    /* wrong types, not a map */
    static const char *const bad[] = {
        "[1,2]",
        "null",
        "{\"running\":1}",
        "{\"running\":true,\"ranges_done\":\"x\"}",
        "{\"ranges_done\":-1,\"running\":true}",
        "{\"repair\":[]}",
        "{\"repair\":{\"bytes_sent\":1.5}}",
        "{\"last_full_pass_s\":\"1\",\"running\":true}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_mp(bad[i], &mp);
        memset(&in, 0x5a, sizeof(in));
        if (moor_repair_read_info(mp.data, mp.len, &in) != MOOR_EPROTO)
            fail_msg("%s was read", bad[i]);
        assert_int_equal(in.ranges_done, 0x5a5a5a5a5a5a5a5aull); /* untouched */
    }

    /* every truncation fails cleanly */
    json_mp("{\"node\":\"n1\",\"repair\":" REPAIR_JSON "}", &mp);
    for (size_t cut = 0; cut < mp.len; cut++) {
        char *copy = malloc(cut ? cut : 1);
        int rc;
        memcpy(copy, mp.data, cut);
        rc = moor_repair_read_info(copy, cut, &in);
        if (rc != MOOR_EPROTO && rc != MOOR_ENOTFOUND)
            fail_msg("cut at %zu of %zu gave %d", cut, mp.len, rc);
        free(copy);
    }
    moor_buf_free(&mp);
}

static void test_rate_window(void **state)
{
    moor_repair_rate_t r;
    double bs, rs;

    (void)state;
    memset(&r, 0, sizeof(r));
    moor_repair_rate_get(&r, &bs, &rs);
    assert_true(bs == 0 && rs == 0);
    moor_repair_rate_add(&r, 0.5, 1000, 0);
    moor_repair_rate_get(&r, &bs, &rs);
    assert_true(bs == 0 && rs == 0); /* one sample: no rate yet */
    moor_repair_rate_add(&r, 1.5, 3000, 4);
    moor_repair_rate_get(&r, &bs, &rs);
    assert_true(bs == 2000 && rs == 4);

    /* a steady 1 MB/s and 2 ranges/s for 20 s after a burst: the burst
     * falls out of the 5 s window */
    memset(&r, 0, sizeof(r));
    moor_repair_rate_add(&r, 0, 0, 0);
    moor_repair_rate_add(&r, 0.5, 100u << 20, 50);
    for (int i = 1; i <= 40; i++)
        moor_repair_rate_add(&r, 0.5 + 0.5 * i, (100u << 20) + (uint64_t)i * (512u << 10),
                             50 + (uint64_t)i);
    moor_repair_rate_get(&r, &bs, &rs);
    assert_true(bs > 0.99 * (1 << 20) && bs < 1.01 * (1 << 20));
    assert_true(rs > 1.99 && rs < 2.01);
    assert_true(r.n <= MOOR_REPAIR_SAMPLES);
    assert_true(r.t[r.head] >= 20.5 - MOOR_REPAIR_WINDOW_S - 0.5);

    /* samples closer than the window: the newest 32 are kept */
    memset(&r, 0, sizeof(r));
    for (int i = 0; i < 100; i++)
        moor_repair_rate_add(&r, i * 0.01, (uint64_t)i * 100, (uint64_t)i);
    assert_int_equal(r.n, MOOR_REPAIR_SAMPLES);
    moor_repair_rate_get(&r, &bs, &rs);
    assert_true(bs > 9999 && bs < 10001 && rs > 99.99 && rs < 100.01);

    /* counters that restart (a new repair) show no progress, not a wrap */
    memset(&r, 0, sizeof(r));
    moor_repair_rate_add(&r, 0, 5000, 10);
    moor_repair_rate_add(&r, 1, 100, 1);
    moor_repair_rate_get(&r, &bs, &rs);
    assert_true(bs == 0 && rs == 0);
}

static void test_formats(void **state)
{
    char b[64];

    (void)state;
    moor_repair_fmt_count(0, b, sizeof(b));
    assert_string_equal(b, "0");
    moor_repair_fmt_count(999, b, sizeof(b));
    assert_string_equal(b, "999");
    moor_repair_fmt_count(1000, b, sizeof(b));
    assert_string_equal(b, "1,000");
    moor_repair_fmt_count(1234567, b, sizeof(b));
    assert_string_equal(b, "1,234,567");
    moor_repair_fmt_count(UINT64_MAX, b, sizeof(b));
    assert_string_equal(b, "18,446,744,073,709,551,615");
    moor_repair_fmt_count(1234567, b, 4);
    assert_string_equal(b, "1,2");

    moor_repair_fmt_bytes(0, b, sizeof(b));
    assert_string_equal(b, "0 B");
    moor_repair_fmt_bytes(1023, b, sizeof(b));
    assert_string_equal(b, "1023 B");
    moor_repair_fmt_bytes(1024, b, sizeof(b));
    assert_string_equal(b, "1.0 KB");
    moor_repair_fmt_bytes(1.2 * 1024 * 1024, b, sizeof(b));
    assert_string_equal(b, "1.2 MB");
    moor_repair_fmt_bytes(1024.0 * 1024 - 1, b, sizeof(b));
    assert_string_equal(b, "1.0 MB"); /* never "1024.0 KB" */
    moor_repair_fmt_bytes(5.5 * 1024 * 1024 * 1024, b, sizeof(b));
    assert_string_equal(b, "5.5 GB");
    moor_repair_fmt_bytes(3e18, b, sizeof(b));
    assert_string_equal(b, "2728484.1 TB");

    moor_repair_fmt_eta(-1, b, sizeof(b));
    assert_string_equal(b, "?");
    moor_repair_fmt_eta(0, b, sizeof(b));
    assert_string_equal(b, "0 s");
    moor_repair_fmt_eta(5.2, b, sizeof(b));
    assert_string_equal(b, "5 s");
    moor_repair_fmt_eta(99, b, sizeof(b));
    assert_string_equal(b, "99 s");
    moor_repair_fmt_eta(720, b, sizeof(b));
    assert_string_equal(b, "12 min");
    moor_repair_fmt_eta(9000, b, sizeof(b));
    assert_string_equal(b, "2.5 h");
}

static void test_progress_and_summary(void **state)
{
    moor_repair_info_t in;
    char b[320];
    size_t n;

    (void)state;
    memset(&in, 0, sizeof(in));
    in.running = 1;
    in.ranges_total = 192;
    in.ranges_done = 12;
    in.keys_compared = 1234;
    in.keys_repaired = 56;
    in.bytes_sent = 200 * 1024;
    in.bytes_received = 1024 * 1024; /* 1.2 MB together */
    n = moor_repair_progress_line(&in, 3.4 * 1024 * 1024, 36, b, sizeof(b));
    assert_string_equal(b, "repair: ranges 12/192  keys compared 1,234  repaired 56  1.2 MB  "
                           "3.4 MB/s  ETA 5 s");
    assert_int_equal(n, strlen(b));

    /* no range done yet in the window: ETA unknown */
    n = moor_repair_progress_line(&in, 0, 0, b, sizeof(b));
    assert_string_equal(b, "repair: ranges 12/192  keys compared 1,234  repaired 56  1.2 MB  "
                           "0 B/s  ETA ?");
    /* nothing left */
    in.ranges_done = 192;
    moor_repair_progress_line(&in, 0, 0, b, sizeof(b));
    assert_non_null(strstr(b, "ranges 192/192 "));
    assert_non_null(strstr(b, "ETA 0 s"));
    /* truncated to the buffer, length says so */
    n = moor_repair_progress_line(&in, 0, 0, b, 10);
    assert_int_equal(n, 9);
    assert_string_equal(b, "repair: r");

    memset(&in, 0, sizeof(in));
    in.ranges_total = in.ranges_done = 192;
    in.keys_compared = 10000;
    in.keys_repaired = 3333;
    in.bytes_sent = (uint64_t)(1.1 * 1024 * 1024);
    in.bytes_received = (uint64_t)(2.2 * 1024 * 1024);
    n = moor_repair_summary(&in, 12.34, 0, b, sizeof(b));
    assert_string_equal(b, "repair done: 192 ranges in 12.3 s, 10,000 keys compared, 3,333 "
                           "repaired, 1.1 MB sent, 2.2 MB received, 0 exchanges failed");
    assert_int_equal(n, strlen(b));
    in.ranges_done = in.ranges_total = 1;
    moor_repair_summary(&in, 0.05, 1, b, sizeof(b));
    assert_non_null(strstr(b, "repair done: 1 range in 0.1 s,"));
    assert_non_null(strstr(b, ", 1 exchange failed"));
    /* stopped before its end */
    in.ranges_done = 1108;
    in.ranges_total = 1192;
    moor_repair_summary(&in, 3, 0, b, sizeof(b));
    assert_non_null(strstr(b, "repair stopped: 1,108/1,192 ranges in 3.0 s,"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_range),          cmocka_unit_test(test_read_info),
        cmocka_unit_test(test_rate_window),          cmocka_unit_test(test_formats),
        cmocka_unit_test(test_progress_and_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
