/*
 * test_human.c -- answers as `moor` prints them for a person
 * (core/cli/human.c): a get with one value, with siblings (clock line,
 * then the ctx as {"$bin"}), missing, with a receipt; maps flattened with
 * dots, strs bare, floats short, arrays of strs joined; tables with
 * columns from every row, nested maps as columns, missing cells, control
 * characters; and every truncation of the answers failing cleanly with
 * the output untouched.
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

#include "cli/human.c" /* TEST: core/cli is an executable, not a library */
#include "cli/json.c"  /* TEST: likewise */
#include "cli/show.c"  /* TEST: likewise */
#include "cluster/vclock.h"
#include "util/err.h"
#include "util/mp.h"

static void json_mp(const char *text, moor_buf_t *out)
{
    int rc = moor_json_to_mp(text, strlen(text), out, NULL);

    if (rc)
        fail_msg("parse of %s failed: %s", text, moor_diag_msg(rc));
}

static void expect_text(const moor_buf_t *out, const char *want)
{
    if (out->len != strlen(want) || strcmp(out->data, want) != 0)
        fail_msg("shown as\n%s\nwant\n%s", out->data ? out->data : "(nothing)", want);
}

/* A get answer with a real clock as its ctx; ctx64 gets its base64. */
static void make_get(moor_buf_t *res, const char *values, const char *extra_entry, char *ctx64)
{
    moor_vclock_t *vc = malloc(sizeof(*vc));
    moor_buf_t ctx = MOOR_BUF_INIT, b64 = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_vclock_init(vc);
    assert_int_equal(moor_vclock_increment(vc, "n1", 2, 1700000000000ull), 0);
    assert_int_equal(moor_vclock_encode(vc, &ctx), 0);
    assert_int_equal(moor_json_b64_encode(ctx.data, ctx.len, &b64), 0);
    snprintf(ctx64, 128, "%.*s", (int)b64.len, b64.data);
    moor_mp_packer_init(&pk, res);
    msgpack_pack_map(&pk, 2 + (extra_entry != NULL));
    msgpack_pack_str_with_body(&pk, "values", 6);
    json_mp(values, res);
    msgpack_pack_str_with_body(&pk, "ctx", 3);
    msgpack_pack_bin_with_body(&pk, ctx.data, ctx.len);
    if (extra_entry) {
        msgpack_pack_str_with_body(&pk, "receipt", 7);
        json_mp(extra_entry, res);
    }
    moor_buf_free(&ctx), moor_buf_free(&b64);
    free(vc);
}

static void test_get(void **state)
{
    moor_buf_t res = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    char ctx64[128], want[512];
    uint32_t n = 99;

    (void)state;
    make_get(&res, "[{\"a\": [1, \"x\"]}]", NULL, ctx64);
    assert_int_equal(moor_human_get(res.data, res.len, &out, &n), 0);
    assert_int_equal(n, 1);
    snprintf(want, sizeof(want), "{\"a\":[1,\"x\"]}\nctx: {\"$bin\":\"%s\"}\n", ctx64);
    expect_text(&out, want);

    moor_buf_reset(&res), moor_buf_reset(&out);
    make_get(&res, "[\"x\", {\"$bin\": \"AAE=\"}, 3]", "[{\"node\": \"n1\", \"status\": \"ok\"}]",
             ctx64);
    assert_int_equal(moor_human_get(res.data, res.len, &out, &n), 0);
    assert_int_equal(n, 3);
    snprintf(want, sizeof(want),
             "\"x\"\n{\"$bin\":\"AAE=\"}\n3\nclock: {\"n1\":1}\nctx: {\"$bin\":\"%s\"}\n"
             "receipt: [{\"node\":\"n1\",\"status\":\"ok\"}]\n",
             ctx64);
    expect_text(&out, want);

    moor_buf_reset(&res), moor_buf_reset(&out);
    json_mp("null", &res);
    assert_int_equal(moor_human_get(res.data, res.len, &out, &n), 0);
    assert_int_equal(n, 0);
    expect_text(&out, "(not found)\n");
    moor_buf_reset(&res), moor_buf_reset(&out);
    json_mp("{\"values\": [], \"receipt\": []}", &res);
    assert_int_equal(moor_human_get(res.data, res.len, &out, &n), 0);
    expect_text(&out, "(not found)\nreceipt: []\n");

    /* Every cut of an answer fails and leaves out as it was. */
    moor_buf_reset(&res);
    make_get(&res, "[\"x\", \"y\"]", "[1]", ctx64);
    for (size_t cut = 1; cut < res.len; cut++) {
        char *copy = malloc(cut);
        memcpy(copy, res.data, cut);
        moor_buf_reset(&out);
        moor_buf_append(&out, "Z", 1);
        if (moor_human_get(copy, cut, &out, &n) != MOOR_EPROTO)
            fail_msg("a get answer cut at %zu of %zu bytes was shown", cut, res.len);
        assert_int_equal(out.len, 1);
        free(copy);
    }
    moor_buf_free(&res), moor_buf_free(&out);
}

static void test_map(void **state)
{
    moor_buf_t res = MOOR_BUF_INIT, out = MOOR_BUF_INIT;

    (void)state;
    json_mp("{\"node\": \"n1\", \"uptime_ms\": 12, \"engine\": {\"flushes\": 3, \"x\": {\"y\": "
            "true}}, \"share\": 0.123456789, \"replicas\": [\"n1\", \"n2\"], \"fallbacks\": [], "
            "\"mixed\": [1, \"a\"], \"ctx\": {\"$bin\": \"AAE=\"}, \"bad\": \"a\\u0001b\"}",
            &res);
    assert_int_equal(moor_human_map(res.data, res.len, &out), 0);
    expect_text(&out, "node: n1\nuptime_ms: 12\nengine.flushes: 3\nengine.x.y: true\n"
                      "share: 0.123457\nreplicas: n1, n2\nfallbacks: -\nmixed: [1,\"a\"]\n"
                      "ctx: {\"$bin\":\"AAE=\"}\nbad: a?b\n");
    moor_buf_reset(&res), moor_buf_reset(&out);
    json_mp("true", &res);
    assert_int_equal(moor_human_map(res.data, res.len, &out), 0);
    expect_text(&out, "true\n");
    moor_buf_free(&res), moor_buf_free(&out);
}

static void test_table(void **state)
{
    moor_buf_t res = MOOR_BUF_INIT, out = MOOR_BUF_INIT;

    (void)state;
    json_mp("{\"nodes\": [{\"id\": \"n1\", \"rps\": {\"get\": 1.5, \"put\": 2}, \"p99_ms\": 0.25},"
            " {\"id\": \"node-22\", \"status\": \"down\", \"rps\": {\"get\": 0}}], \"x\": 1}",
            &res);
    assert_int_equal(moor_human_table(res.data, res.len, "nodes", &out), 0);
    expect_text(&out, "id       rps.get  rps.put  p99_ms  status\n"
                      "n1       1.5      2        0.25    -\n"
                      "node-22  0        -        -       down\n");
    moor_buf_reset(&res), moor_buf_reset(&out);
    json_mp("{\"nodes\": []}", &res);
    assert_int_equal(moor_human_table(res.data, res.len, "nodes", &out), 0);
    expect_text(&out, "(none)\n");
    static const char *const bad[] = {"[]", "{\"nodes\": 1}", "{\"other\": []}", "null"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        moor_buf_reset(&res), moor_buf_reset(&out);
        json_mp(bad[i], &res);
        if (moor_human_table(res.data, res.len, "nodes", &out) != MOOR_EPROTO)
            fail_msg("%s was shown as a table", bad[i]);
        assert_int_equal(out.len, 0);
    }
    moor_buf_free(&res), moor_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
