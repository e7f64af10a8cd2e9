/*
 * test_show.c -- how the CLI shows answers (core/cli/show.c): get with one
 * value printed exactly as before, get with siblings as {siblings, clock,
 * ctx} with the clock decoded from the ctx (and left out when the ctx does
 * not decode), other answer entries carried over, the clock on its own
 * (empty, malformed, trailing bytes), the ctx kept as bin ({"$bin": ...} in JSON), the ring table
 * (columns, padding, self marker, empty zone, missing and unknown fields,
 * control characters), and every truncation of both answers failing
 * cleanly with the output buffer untouched.
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
#include <string.h>

#include <msgpack.h>

#include "cli/json.c" /* TEST: core/cli is an executable, not a library */
#include "cli/show.c" /* TEST: likewise */
#include "cluster/vclock.h"
#include "util/mp.h"
#include "util/err.h"
#include "testutil.h"

/* MessagePack of a JSON text, appended to out. */
static void json_mp(const char *text, moor_buf_t *out)
{
    int rc = moor_json_to_mp(text, strlen(text), out, NULL);

    if (rc)
        fail_msg("parse of %s failed: %s", text, moor_diag_msg(rc));
}

/* The compact JSON of the MessagePack in b, as a malloc'ed string. */
static char *as_json(const moor_buf_t *b)
{
    moor_buf_t out = MOOR_BUF_INIT;
    const char *p = b->data;
    int rc = moor_json_from_mp(&p, b->data + b->len, 0, &out);

    if (rc)
        fail_msg("print failed: %s", moor_diag_msg(rc));
    assert_ptr_equal(p, b->data + b->len);
    moor_buf_put_u8(&out, 0);
    return moor_buf_steal(&out, NULL);
}

static void expect_json(const moor_buf_t *b, const char *want)
{
    char *got = as_json(b);

    if (strcmp(got, want) != 0)
        fail_msg("shown as\n  %s\nwant\n  %s", got, want);
    free(got);
}

/* An encoded clock: pairs of (id, counter), counter bumps each. */
static void make_ctx(moor_buf_t *ctx, int n, ...)
{
    moor_vclock_t *vc = malloc(sizeof(*vc));
    va_list ap;

    assert_non_null(vc);
    moor_vclock_init(vc);
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *id = va_arg(ap, const char *);
        int count = va_arg(ap, int);
        for (int k = 0; k < count; k++)
            assert_int_equal(moor_vclock_increment(vc, id, strlen(id), 1700000000000ull + k), 0);
    }
    va_end(ap);
    assert_int_equal(moor_vclock_encode(vc, ctx), 0);
    free(vc);
}

/* A get answer {values = <values_json>, ctx = bin ctx} (+ extra_json's
 * entries, a JSON object, when not NULL). */
static void make_get(moor_buf_t *res, const char *values_json, const moor_buf_t *ctx,
                     const char *extra_json)
{
    moor_buf_t extra = MOOR_BUF_INIT;
    const char *p;
    uint32_t n = 0;
    msgpack_packer pk;

    if (extra_json) {
        json_mp(extra_json, &extra);
        p = extra.data;
        assert_int_equal(moor_mp_read_map(&p, extra.data + extra.len, &n), 0);
    }
    moor_mp_packer_init(&pk, res);
    msgpack_pack_map(&pk, 2 + n);
    msgpack_pack_str_with_body(&pk, "values", 6);
    json_mp(values_json, res);
    msgpack_pack_str_with_body(&pk, "ctx", 3);
    msgpack_pack_bin_with_body(&pk, ctx->data, ctx->len);
    if (n)
        moor_buf_append(res, p, (size_t)(extra.data + extra.len - p));
    moor_buf_free(&extra);
}

static char *b64(const moor_buf_t *b)
{
    moor_buf_t out = MOOR_BUF_INIT;

    assert_int_equal(moor_json_b64_encode(b->data, b->len, &out), 0);
    moor_buf_put_u8(&out, 0);
    return moor_buf_steal(&out, NULL);
}

static void test_get_one_value_unchanged(void **state)
{
    moor_buf_t ctx = MOOR_BUF_INIT, res = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    char want[256], *c64;

    (void)state;
    make_ctx(&ctx, 1, "n1", 2);
    c64 = b64(&ctx);
    make_get(&res, "[{\"a\": [1, 2.5, \"x\"]}]", &ctx, NULL);
    assert_int_equal(moor_show_get(res.data, res.len, &out), 0);
    snprintf(want, sizeof(want), "{\"values\":[{\"a\":[1,2.5,\"x\"]}],\"ctx\":{\"$bin\":\"%s\"}}", c64);
    expect_json(&out, want);

    /* A missing key (nil) and an empty values list stay as they are. */
    moor_buf_reset(&res), moor_buf_reset(&out);
    json_mp("null", &res);
    assert_int_equal(moor_show_get(res.data, res.len, &out), 0);
    expect_json(&out, "null");
    moor_buf_reset(&res), moor_buf_reset(&out);
    make_get(&res, "[]", &ctx, NULL);
    assert_int_equal(moor_show_get(res.data, res.len, &out), 0);
    snprintf(want, sizeof(want), "{\"values\":[],\"ctx\":{\"$bin\":\"%s\"}}", c64);
    expect_json(&out, want);
    free(c64);
    moor_buf_free(&ctx), moor_buf_free(&res), moor_buf_free(&out);
}

static void test_get_siblings_with_clock(void **state)
{
    moor_buf_t ctx = MOOR_BUF_INIT, res = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    char want[512], *c64;

    (void)state;
    make_ctx(&ctx, 3, "n2", 5, "n1", 3, "node-ten", 1);
    c64 = b64(&ctx);
    make_get(&res, "[\"red\", {\"$bin\": \"AAEC\"}, [1, 2]]", &ctx, NULL);
    assert_int_equal(moor_show_get(res.data, res.len, &out), 0);
    snprintf(want, sizeof(want),
             "{\"siblings\":[\"red\",{\"$bin\":\"AAEC\"},[1,2]],"
             "\"clock\":{\"n1\":3,\"n2\":5,\"node-ten\":1},\"ctx\":{\"$bin\":\"%s\"}}",
             c64);
    expect_json(&out, want);

    /* Entries the CLI does not know are kept, after the three. */
    moor_buf_reset(&res), moor_buf_reset(&out);
    make_get(&res, "[1, 2]", &ctx, "{\"resolved\": false, \"x\": [null]}");
    assert_int_equal(moor_show_get(res.data, res.len, &out), 0);
    snprintf(want, sizeof(want),
             "{\"siblings\":[1,2],\"clock\":{\"n1\":3,\"n2\":5,\"node-ten\":1},\"ctx\":{\"$bin\":\"%s\"},"
             "\"resolved\":false,\"x\":[null]}",
             c64);
    expect_json(&out, want);
    free(c64);

    /* A ctx that is not a clock: shown, but no clock. */
    moor_buf_reset(&res), moor_buf_reset(&out), moor_buf_reset(&ctx);
    moor_buf_append(&ctx, "\x91\x93\xc4\x02n1\x00\x01", 8); /* counter 0: malformed */
    make_get(&res, "[1, 2]", &ctx, NULL);
    assert_int_equal(moor_show_get(res.data, res.len, &out), 0);
    expect_json(&out, "{\"siblings\":[1,2],\"ctx\":{\"$bin\":\"kZPEAm4xAAE=\"}}");

    /* No ctx at all. */
    moor_buf_reset(&res), moor_buf_reset(&out);
    json_mp("{\"values\": [true, false]}", &res);
    assert_int_equal(moor_show_get(res.data, res.len, &out), 0);
    expect_json(&out, "{\"siblings\":[true,false]}");
    moor_buf_free(&ctx), moor_buf_free(&res), moor_buf_free(&out);
}

static void test_clock(void **state)
{
    moor_buf_t ctx = MOOR_BUF_INIT, out = MOOR_BUF_INIT;

    (void)state;
    make_ctx(&ctx, 0);
    assert_int_equal(moor_show_clock(ctx.data, ctx.len, &out), 0);
    expect_json(&out, "{}");

    moor_buf_reset(&ctx), moor_buf_reset(&out);
    make_ctx(&ctx, 2, "b", 7, "a", 1);
    assert_int_equal(moor_show_clock(ctx.data, ctx.len, &out), 0);
    expect_json(&out, "{\"a\":1,\"b\":7}");

    /* Trailing bytes, truncation and garbage are MOOR_EBADCTX; out untouched. */
    moor_buf_reset(&out);
    moor_buf_append(&out, "x", 1);
    moor_buf_put_u8(&ctx, 0xc0);
    assert_int_equal(moor_show_clock(ctx.data, ctx.len, &out), MOOR_EBADCTX);
    for (size_t cut = 0; cut < ctx.len - 1; cut++)
        assert_int_equal(moor_show_clock(ctx.data, cut, &out), MOOR_EBADCTX);
    assert_int_equal(moor_show_clock("\xc1", 1, &out), MOOR_EBADCTX);
    assert_int_equal(out.len, 1);
    moor_buf_free(&ctx), moor_buf_free(&out);
}

static const char ring_json[] =
    "{\"node\": \"n2\", \"cluster\": true, \"version\": 7, \"nodes\": ["
    "{\"id\": \"n1\", \"addr\": \"127.0.0.1:7701\", \"zone\": \"a\", \"status\": \"up\","
    " \"vnodes\": 64, \"incarnation\": 1, \"share\": 0.3349, \"self\": false},"
    "{\"id\": \"n2\", \"addr\": \"127.0.0.2:7702\", \"zone\": \"\", \"status\": \"suspect\","
    " \"vnodes\": 256, \"incarnation\": 3, \"share\": 0.66, \"self\": true},"
    "{\"id\": \"node-three\", \"addr\": \"127.0.0.3:7703\", \"zone\": \"b\","
    " \"status\": \"joining\", \"vnodes\": 8, \"incarnation\": 1, \"share\": 0.0051,"
    " \"self\": false}]}";

static void expect_ring(const char *json, const char *want)
{
    moor_buf_t res = MOOR_BUF_INIT, out = MOOR_BUF_INIT;

    json_mp(json, &res);
    assert_int_equal(moor_show_ring(res.data, res.len, &out), 0);
    assert_int_equal(strlen(out.data), out.len); /* NUL-terminated, NUL not counted */
    if (strcmp(out.data, want) != 0)
        fail_msg("ring shown as\n%s\nwant\n%s", out.data, want);
    moor_buf_free(&res), moor_buf_free(&out);
}

static void test_ring_table(void **state)
{
    (void)state;
    expect_ring(ring_json, "  id          address         zone  status   vnodes  share\n"
                           "  n1          127.0.0.1:7701  a     up           64  33.5%\n"
                           "* n2          127.0.0.2:7702  -     suspect     256  66.0%\n"
                           "  node-three  127.0.0.3:7703  b     joining       8   0.5%\n");
    /* A standalone node's one-node ring, share as an integer. */
    expect_ring("{\"node\": \"t1\", \"cluster\": false, \"version\": 1, \"nodes\": [{\"id\": "
                "\"t1\", \"addr\": \"127.0.0.1:7700\", \"zone\": \"\", \"status\": \"up\", "
                "\"vnodes\": 64, \"share\": 1, \"self\": true}]}",
                "  id  address         zone  status  vnodes   share\n"
                "* t1  127.0.0.1:7700  -     up          64  100.0%\n");
    /* Missing fields are "-", unknown ones and wrong types ignored,
     * control characters shown as '?', UTF-8 padded by characters. */
    expect_ring("{\"nodes\": [{\"id\": \"x\\u0007y\", \"future\": {\"a\": [1]}, \"vnodes\": "
                "\"many\"}, {\"id\": \"\\u00e9t\\u00e9\", \"status\": \"up\", "
                "\"share\": 0.25}]}",
                "  id   address  zone  status  vnodes  share\n"
                "  x?y  -        -     -            -      -\n"
                "  \xc3\xa9t\xc3\xa9  -        -     up           -  25.0%\n");
    /* No nodes: just the header. */
    expect_ring("{\"nodes\": []}", "  id  address  zone  status  vnodes  share\n");
    /* A cluster's answer says how this node reaches each member: a last
     * "link" column, "-" where a node lacks it. */
    expect_ring("{\"nodes\": [{\"id\": \"n1\", \"share\": 0.5, \"self\": true, \"link\": "
                "\"self\"}, {\"id\": \"n2\", \"share\": 0.25, \"link\": \"down\"}, "
                "{\"id\": \"n3\", \"share\": 0.25}]}",
                "  id  address  zone  status  vnodes  share  link\n"
                "* n1  -        -     -            -  50.0%  self\n"
                "  n2  -        -     -            -  25.0%  down\n"
                "  n3  -        -     -            -  25.0%  -\n");
}

static void test_ring_not_a_ring(void **state)
{
    static const char *const bad[] = {"null",
                                      "[]",
                                      "{\"node\": \"n1\"}",
                                      "{\"nodes\": 5}",
                                      "{\"nodes\": [1]}",
                                      "{\"nodes\": [{}, \"x\"]}"};
    moor_buf_t res = MOOR_BUF_INIT, out = MOOR_BUF_INIT;

    (void)state;
    moor_buf_append(&out, "keep", 4);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        moor_buf_reset(&res);
        json_mp(bad[i], &res);
        if (moor_show_ring(res.data, res.len, &out) != MOOR_EPROTO)
            fail_msg("%s was shown as a ring", bad[i]);
        assert_int_equal(out.len, 4);
    }
    moor_buf_free(&res), moor_buf_free(&out);
}

/* Every proper prefix of a ring or siblings answer fails without touching
 * out (ASan checks that nothing reads past the cut: each prefix is copied
 * into a buffer of exactly its size). */
static void test_truncations(void **state)
{
    moor_buf_t ring = MOOR_BUF_INIT, get = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    moor_buf_t out = MOOR_BUF_INIT;

    (void)state;
    json_mp(ring_json, &ring);
    make_ctx(&ctx, 2, "n1", 3, "n2", 1);
    make_get(&get, "[\"a\", \"b\", {\"c\": [1, 2, 3]}]", &ctx, "{\"more\": [1, {\"x\": 2}]}");
    for (size_t cut = 0; cut < ring.len; cut++) {
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, ring.data, cut);
        moor_buf_reset(&out);
        assert_int_equal(moor_show_ring(copy, cut, &out), MOOR_EPROTO);
        assert_int_equal(out.len, 0);
        free(copy);
    }
    for (size_t cut = 1; cut < get.len; cut++) {
        char *copy = malloc(cut);
        int rc;
        memcpy(copy, get.data, cut);
        moor_buf_reset(&out);
        rc = moor_show_get(copy, cut, &out);
        if (rc != MOOR_EPROTO)
            fail_msg("a get answer cut at %zu of %zu bytes gave %d", cut, get.len, rc);
        assert_int_equal(out.len, 0);
        free(copy);
    }
    moor_buf_free(&ring), moor_buf_free(&get), moor_buf_free(&ctx), moor_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_one_value_unchanged),
        cmocka_unit_test(test_get_siblings_with_clock),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_ring_table),
        cmocka_unit_test(test_ring_not_a_ring),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
