/*
 * test_json.c -- the CLI's JSON <-> MessagePack converter and base64:
 * round trips (canonical texts, random MessagePack byte-exact), exact
 * integers at every encoding boundary and past the 64-bit range, shortest
 * round-tripping floats (float32 and float64), every class of malformed
 * JSON with its message and byte offset, the nesting limit both ways,
 * unicode escapes with surrogate pairs, $bin, non-string map keys, ext,
 * pretty printing, and base64 against the RFC 4648 vectors.
 *
 * The converter sources are compiled into this test (core/cli is an
 * executable, not a library).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "cli/json.c" /* TEST: core/cli is an executable, not a library */
#include "util/mp.h"
#include "util/err.h"
#include "testutil.h"

/* JSON text -> MessagePack -> compact JSON; returns the malloc'ed text. */
static char *roundtrip(const char *text, int flags)
{
    moor_buf_t mp = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    const char *p;
    int rc = moor_json_to_mp(text, strlen(text), &mp, NULL);

    if (rc)
        fail_msg("parse of %s failed: %s", text, moor_diag_msg(rc));
    p = mp.data;
    rc = moor_json_from_mp(&p, mp.data + mp.len, flags, &out);
    if (rc)
        fail_msg("print of %s failed: %s", text, moor_diag_msg(rc));
    assert_ptr_equal(p, mp.data + mp.len);
    moor_buf_put_u8(&out, 0);
    moor_buf_free(&mp);
    return moor_buf_steal(&out, NULL);
}

static void expect_text(const char *in, const char *want)
{
    char *got = roundtrip(in, 0);

    if (strcmp(got, want) != 0)
        fail_msg("JSON %s printed back as %s, want %s", in, got, want);
    free(got);
}

/* MessagePack bytes of a JSON text (into out, which is reset first). */
static void to_mp(const char *text, moor_buf_t *out)
{
    int rc;

    moor_buf_reset(out);
    rc = moor_json_to_mp(text, strlen(text), out, NULL);
    if (rc)
        fail_msg("parse of %s failed: %s", text, moor_diag_msg(rc));
}

static void expect_mp(const char *text, const char *bytes, size_t n)
{
    moor_buf_t b = MOOR_BUF_INIT;

    to_mp(text, &b);
    if (b.len != n || memcmp(b.data, bytes, n) != 0) {
        print_error("JSON %s gave %zu bytes:", text, b.len);
        for (size_t i = 0; i < b.len; i++)
            print_error(" %02x", (unsigned char)b.data[i]);
        print_error("\nwant %zu bytes:", n);
        for (size_t i = 0; i < n; i++)
            print_error(" %02x", (unsigned char)bytes[i]);
        print_error("\n");
        fail();
    }
    moor_buf_free(&b);
}

static void test_canonical_roundtrips(void **state)
{
    (void)state;
    expect_text("null", "null");
    expect_text(" true ", "true");
    expect_text("\t\r\nfalse\n", "false");
    expect_text("{\"a\": [1, 2.5, \"x\", true, false, null], \"b\": {}}",
                "{\"a\":[1,2.5,\"x\",true,false,null],\"b\":{}}");
    expect_text("[[], {}, [[]], {\"\": \"\"}]", "[[],{},[[]],{\"\":\"\"}]");
    expect_text("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\"");
    expect_text("\"\\u0001\\u001f\\u007f\"", "\"\\u0001\\u001f\x7f\"");
    expect_text("{\"k\": 1, \"k\": 2}", "{\"k\":1,\"k\":2}"); /* duplicates kept, in order */
}

static void test_integers_exact(void **state)
{
    (void)state;
    expect_mp("0", "\x00", 1);
    expect_mp("-0", "\x00", 1);
    expect_mp("127", "\x7f", 1);
    expect_mp("128", "\xcc\x80", 2);
    expect_mp("-32", "\xe0", 1);
    expect_mp("-33", "\xd0\xdf", 2);
    expect_mp("65536", "\xce\x00\x01\x00\x00", 5);
    expect_mp("18446744073709551615", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    expect_mp("-9223372036854775808", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9);
    expect_mp("9223372036854775807", "\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9);
    expect_text("[18446744073709551615, -9223372036854775808, 9007199254740993]",
                "[18446744073709551615,-9223372036854775808,9007199254740993]");
    expect_text("[4294967295, 4294967296, -2147483649]", "[4294967295,4294967296,-2147483649]");
}

static void expect_float(double v, int single, const char *want)
{
    char buf[64];
    moor_buf_t mp = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    msgpack_packer pk;
    const char *p;

    moor_mp_packer_init(&pk, &mp);
    if (single)
        msgpack_pack_float(&pk, (float)v);
    else
        msgpack_pack_double(&pk, v);
    p = mp.data;
    assert_int_equal(moor_json_from_mp(&p, mp.data + mp.len, 0, &out), 0);
    snprintf(buf, sizeof(buf), "%.*s", (int)out.len, out.data);
    if (strcmp(buf, want) != 0)
        fail_msg("%s %.17g printed as %s, want %s", single ? "float32" : "float64", v, buf, want);
    /* And it reads back as a float64 with the same value. */
    if (!isnan(v) && !isinf(v)) {
        double back;
        const char *q;
        to_mp(buf, &mp);
        q = mp.data;
        assert_int_equal((unsigned char)mp.data[0], 0xcb);
        assert_int_equal(moor_mp_read_double(&q, mp.data + mp.len, &back), 0);
        if (single ? (float)back != (float)v : memcmp(&back, &v, sizeof(v)) != 0)
            fail_msg("%s read back as %.17g, want %.17g", buf, back, v);
    }
    moor_buf_free(&mp);
    moor_buf_free(&out);
}

static void test_floats_shortest(void **state)
{
    (void)state;
    expect_float(2.5, 0, "2.5");
    expect_float(1.0, 0, "1.0");
    expect_float(0.1, 0, "0.1");
    expect_float(-0.0, 0, "-0.0");
    expect_float(1e21, 0, "1e+21");
    expect_float(1.7976931348623157e308, 0, "1.7976931348623157e+308");
    expect_float(5e-324, 0, "5e-324");
    expect_float(0.1 + 0.2, 0, "0.30000000000000004");
    expect_float(0.1, 1, "0.1"); /* float32 judged as float32 */
    expect_float(16777216.0, 1, "16777216.0");
    expect_float(NAN, 0, "null");
    expect_float(INFINITY, 0, "null");
    expect_float(-INFINITY, 1, "null");
    expect_mp("1.5", "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9);
    expect_mp("1E2", "\xcb\x40\x59\x00\x00\x00\x00\x00\x00", 9);
    expect_mp("1e-400", "\xcb\x00\x00\x00\x00\x00\x00\x00\x00", 9); /* underflow is 0 */
    expect_text("[0.5e1, -12.25E-1, 1e+2]", "[5.0,-1.225,100.0]");
}

typedef struct bad_case {
    const char *text;
    size_t len;      /* 0: strlen */
    const char *msg; /* substring of the diagnostic */
    size_t offset;   /* byte offset reported */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"", 0, "unexpected end of input", 0},
    {"   ", 0, "unexpected end of input", 3},
    {"[1,2", 0, "unexpected end of input in an array", 4},
    {"{\"a\":1", 0, "unexpected end of input in an object", 6},
    {"{\"a\"", 0, "unexpected end of input in an object", 4},
    {"[1,]", 0, "trailing comma before ']'", 3},
    {"{\"a\":1,}", 0, "trailing comma before '}'", 7},
    {"[,1]", 0, "unexpected ','", 1},
    {"{\"a\" 1}", 0, "expected ':' after an object key", 5},
    {"{1:2}", 0, "expected a string key", 1},
    {"{'a':2}", 0, "expected a string key", 1},
    {"[1 2]", 0, "expected ',' or ']'", 3},
    {"{\"a\":1 \"b\":2}", 0, "expected ',' or '}'", 7},
    {"01", 0, "leading zero", 0},
    {"-", 0, "expected a digit after '-'", 1},
    {"-x", 0, "expected a digit after '-'", 1},
    {"1.", 0, "expected a digit after the decimal point", 2},
    {"1.e5", 0, "expected a digit after the decimal point", 2},
    {"1e", 0, "expected a digit in the exponent", 2},
    {"1e+", 0, "expected a digit in the exponent", 3},
    {"+1", 0, "unexpected '+'", 0},
    {".5", 0, "unexpected '.'", 0},
    {"0x10", 0, "unexpected 'x' after the JSON value", 1},
    {"18446744073709551616", 0, "64-bit range", 0},
    {"-9223372036854775809", 0, "64-bit range", 0},
    {"[1e400]", 0, "out of the range of a double", 1},
    {"tru", 0, "invalid literal", 0},
    {"nul", 0, "invalid literal", 0},
    {"True", 0, "unexpected 'T'", 0},
    {"NaN", 0, "unexpected 'N'", 0},
    {"Infinity", 0, "unexpected 'I'", 0},
    {"\"abc", 0, "unterminated string", 0},
    {"\"a\x01\"", 0, "control character 0x01", 2},
    {"\"a\nb\"", 0, "control character 0x0a", 2},
    {"\"\\x\"", 0, "invalid escape \\'x'", 1},
    {"\"\\", 0, "unexpected end of input in a string escape", 2},
    {"\"\\u12G4\"", 0, "invalid hex digit 'G'", 5},
    {"\"\\u00", 0, "unexpected end of input in a \\u escape", 5},
    {"\"\\uD800\"", 0, "high surrogate \\uD800 not followed", 1},
    {"\"\\uDBFFx\"", 0, "high surrogate \\uDBFF not followed", 1},
    {"\"\\uDC00\"", 0, "lone low surrogate \\uDC00", 1},
    {"\"\\uD800\\u0041\"", 0, "\\u0041 after high surrogate \\uD800 is not a low surrogate", 7},
    {"\"\xff\"", 0, "invalid UTF-8 byte 0xff", 1},
    {"\"\xc0\x80\"", 0, "invalid UTF-8 byte 0xc0", 1},         /* overlong NUL */
    {"\"\xed\xa0\x80\"", 0, "invalid UTF-8 byte 0xed", 1},     /* encoded surrogate */
    {"\"\xf4\x90\x80\x80\"", 0, "invalid UTF-8 byte 0xf4", 1}, /* past U+10FFFF */
    {"\"\xe2\x82\"", 0, "invalid UTF-8 byte 0xe2", 1},         /* truncated */
    {"1 2", 0, "unexpected '2' after the JSON value", 2},
    {"[1,2]x", 0, "unexpected 'x' after the JSON value", 5},
    {"\"a\"\x00", 4, "unexpected 0x00 after the JSON value", 3},
    {"\x00", 1, "unexpected 0x00", 0},
    {"/* c */ 1", 0, "unexpected '/'", 0},
    {"{\"$bin\":\"@@@@\"}", 0, "bad base64 in \"$bin\"", 0},
    {"[{\"$bin\":\"QQ=\"}]", 0, "bad base64 in \"$bin\"", 1},
    {"{\"$bin\":5}", 0, "\"$bin\" must hold a base64 string", 0},
};

static void test_malformed(void **state)
{
    moor_buf_t out = MOOR_BUF_INIT;

    (void)state;
    moor_buf_append(&out, "keep", 4);
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        size_t len = c->len ? c->len : strlen(c->text), pos = 12345;
        int rc = moor_json_to_mp(c->text, len, &out, &pos);
        const char *msg = moor_diag_last()->msg;
        char want_at[48];

        if (rc != MOOR_EINVAL)
            fail_msg("case %zu (%s): rc %d, want MOOR_EINVAL", i, c->text, rc);
        if (!strstr(msg, c->msg))
            fail_msg("case %zu (%s): message \"%s\" lacks \"%s\"", i, c->text, msg, c->msg);
        if (pos != c->offset)
            fail_msg("case %zu (%s): offset %zu, want %zu (%s)", i, c->text, pos, c->offset, msg);
        snprintf(want_at, sizeof(want_at), "at byte %zu", c->offset);
        if (!strstr(msg, want_at))
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, msg, want_at);
        /* The buffer keeps exactly what it had. */
        assert_int_equal(out.len, 4);
        assert_memory_equal(out.data, "keep", 4);
    }
    moor_buf_free(&out);
}

static char *nested(const char *open, const char *inner, const char *close, int depth)
{
    size_t ol = strlen(open), cl = strlen(close), il = strlen(inner);
    char *s = malloc((size_t)depth * (ol + cl) + il + 1), *p = s;

    for (int i = 0; i < depth; i++, p += ol)
        memcpy(p, open, ol);
    memcpy(p, inner, il), p += il;
    for (int i = 0; i < depth; i++, p += cl)
        memcpy(p, close, cl);
    *p = '\0';
    return s;
}

static void test_depth_limit(void **state)
{
    moor_buf_t out = MOOR_BUF_INIT, txt = MOOR_BUF_INIT;
    char *ok = nested("[", "1", "]", 64), *deep = nested("[", "1", "]", 65);
    char *okobj = nested("{\"a\":", "1", "}", 64), *deepobj = nested("{\"a\":", "1", "}", 65);
    size_t pos = 0;
    const char *p;

    (void)state;
    to_mp(ok, &out);
    p = out.data;
    assert_int_equal(moor_json_from_mp(&p, out.data + out.len, 0, &txt), 0);
    assert_int_equal(txt.len, strlen(ok));
    assert_memory_equal(txt.data, ok, txt.len);
    to_mp(okobj, &out);
    assert_int_equal(moor_json_to_mp(deep, strlen(deep), &out, &pos), MOOR_EINVAL);
    assert_int_equal(pos, 64);
    assert_non_null(strstr(moor_diag_last()->msg, "nesting deeper than 64 levels"));
    assert_int_equal(moor_json_to_mp(deepobj, strlen(deepobj), &out, &pos), MOOR_EINVAL);
    assert_int_equal(pos, 64 * 5);
    /* A hostile depth of a million costs nothing: the limit stops it early. */
    {
        char *huge = nested("[", "", "", 1000000);
        assert_int_equal(moor_json_to_mp(huge, strlen(huge), &out, &pos), MOOR_EINVAL);
        assert_int_equal(pos, 64);
        free(huge);
    }
    /* The printer refuses MessagePack nested past the limit too. */
    {
        char mp[80];
        const char *q = mp;
        memset(mp, 0x91, 65);
        mp[65] = 0x01;
        moor_buf_reset(&txt);
        assert_int_equal(moor_json_from_mp(&q, mp + 66, 0, &txt), MOOR_EPROTO);
        assert_ptr_equal(q, mp);
        assert_int_equal(txt.len, 0);
    }
    free(ok), free(deep), free(okobj), free(deepobj);
    moor_buf_free(&out);
    moor_buf_free(&txt);
}

static void test_unicode(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    /* é (2 bytes), 中 (3 bytes), 😀 (surrogate pair -> 4 bytes), raw UTF-8 kept. */
    expect_mp("\"\\u00e9\\u4E2D\\uD83D\\uDE00\"", "\xa9\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 10);
    expect_mp("\"\xc3\xa9\xf0\x9f\x98\x80\"", "\xa6\xc3\xa9\xf0\x9f\x98\x80", 7);
    expect_mp("\"\\uDBFF\\uDFFF\"", "\xa4\xf4\x8f\xbf\xbf", 5); /* U+10FFFF */
    expect_mp("\"\\u0000\"", "\xa1\x00", 2);
    expect_text("\"\\u00e9\\uD83D\\uDE00\"", "\"\xc3\xa9\xf0\x9f\x98\x80\"");
    expect_text("\"nul\\u0000byte\"", "\"nul\\u0000byte\"");
    expect_text("{\"\\u00e9\":1}", "{\"\xc3\xa9\":1}");
    /* A str that is not UTF-8 prints as $bin (and reads back as bin). */
    {
        const char mp[] = "\xa2\xff\xfe";
        const char *p = mp;
        assert_int_equal(moor_json_from_mp(&p, mp + 3, 0, &b), 0);
        assert_int_equal(b.len, strlen("{\"$bin\":\"//4=\"}"));
        assert_memory_equal(b.data, "{\"$bin\":\"//4=\"}", b.len);
    }
    moor_buf_free(&b);
}

static void test_bin(void **state)
{
    (void)state;
    expect_mp("{\"$bin\":\"AAECAw==\"}", "\xc4\x04\x00\x01\x02\x03", 6);
    expect_mp("{\"$bin\":\"AAECAw\"}", "\xc4\x04\x00\x01\x02\x03", 6); /* unpadded */
    expect_mp("{\"$bin\":\"\"}", "\xc4\x00", 2);
    expect_mp(" { \"$bin\" : \"/w==\" } ", "\xc4\x01\xff", 3);
    expect_text("[{\"$bin\":\"AAECAw==\"}, {\"$bin\":\"AAECAw==\", \"x\":1}]",
                "[{\"$bin\":\"AAECAw==\"},{\"\\u0024bin\":\"AAECAw==\",\"x\":1}]");
    /* The key "$bin" spelled with an escape is an ordinary key, both ways. */
    expect_mp("{\"\\u0024bin\":\"@@\"}", "\x81\xa4$bin\xa2@@", 9);
    expect_text("{\"\\u0024bin\":\"AA==\"}", "{\"\\u0024bin\":\"AA==\"}");
    expect_text("{\"$\\u0062in\":5}", "{\"\\u0024bin\":5}");
    /* {"$bin": ...} with another key is a plain map. */
    expect_mp("{\"$bin\":\"AA==\",\"x\":1}", "\x82\xa4$bin\xa4\x41\x41==\xa1x\x01", 14);
    /* 300 bytes: bin8 is too small, bin16 is used. */
    {
        moor_buf_t raw = MOOR_BUF_INIT, b64 = MOOR_BUF_INIT, mp = MOOR_BUF_INIT,
                   txt = MOOR_BUF_INIT;
        const char *p;
        for (int i = 0; i < 300; i++)
            moor_buf_put_u8(&raw, (uint8_t)i);
        moor_buf_append(&txt, "{\"$bin\":\"", 9);
        moor_json_b64_encode(raw.data, raw.len, &txt);
        moor_buf_append(&txt, "\"}", 3); /* with the NUL */
        to_mp(txt.data, &mp);
        assert_int_equal(mp.len, 303);
        assert_memory_equal(mp.data, "\xc5\x01\x2c", 3);
        assert_memory_equal(mp.data + 3, raw.data, 300);
        p = mp.data;
        assert_int_equal(moor_json_from_mp(&p, mp.data + mp.len, 0, &b64), 0);
        assert_int_equal(b64.len, txt.len - 1);
        assert_memory_equal(b64.data, txt.data, b64.len);
        moor_buf_free(&raw), moor_buf_free(&b64), moor_buf_free(&mp), moor_buf_free(&txt);
    }
}

static void print_mp(const char *mp, size_t n, int flags, const char *want)
{
    moor_buf_t out = MOOR_BUF_INIT;
    const char *p = mp;
    int rc = moor_json_from_mp(&p, mp + n, flags, &out);

    if (rc)
        fail_msg("print failed: %s", moor_diag_msg(rc));
    if (out.len != strlen(want) || memcmp(out.data, want, out.len))
        fail_msg("printed %.*s, want %s", (int)out.len, out.data, want);
    assert_ptr_equal(p, mp + n);
    moor_buf_free(&out);
}

static void test_printer_special(void **state)
{
    moor_buf_t mp = MOOR_BUF_INIT;
    msgpack_packer pk;

    (void)state;
    /* Non-string keys become strings holding their JSON text. */
    moor_mp_packer_init(&pk, &mp);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_int(&pk, 1), msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 2), msgpack_pack_int(&pk, 1), msgpack_pack_int(&pk, -2);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk), msgpack_pack_int(&pk, 1);
    msgpack_pack_bin_with_body(&pk, "\x01", 1), msgpack_pack_int(&pk, 2);
    msgpack_pack_str_with_body(&pk, "s", 1), msgpack_pack_double(&pk, 0.5);
    print_mp(mp.data, mp.len, 0,
             "{\"1\":\"a\",\"[1,-2]\":true,\"null\":1,\"{\\\"$bin\\\":\\\"AQ==\\\"}\":2,"
             "\"s\":0.5}");
    /* ext, fixed and sized. */
    print_mp("\xd4\x05\x2a", 3, 0, "{\"$ext\":{\"type\":5,\"data\":\"Kg==\"}}");
    print_mp("\xc7\x02\xff\x01\x02", 5, 0, "{\"$ext\":{\"type\":-1,\"data\":\"AQI=\"}}");
    /* Pretty. */
    moor_buf_reset(&mp);
    to_mp("{\"a\":[1,2],\"b\":{},\"c\":[]}", &mp);
    print_mp(mp.data, mp.len, MOOR_JSON_PRETTY,
             "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": []\n}");
    /* Maps as keys of maps as keys...: each level escapes the text once
     * more, so the key text is capped instead of doubling per level. */
    {
        char deep[64];
        moor_buf_t out = MOOR_BUF_INIT;
        const char *p = deep;
        memset(deep, 0x81, 30);
        memset(deep + 30, 0x01, 32);
        assert_int_equal(moor_json_from_mp(&p, deep + 62, 0, &out), MOOR_EINVAL);
        assert_non_null(strstr(moor_diag_last()->msg, "over 4096 bytes"));
        assert_ptr_equal(p, deep);
        assert_int_equal(out.len, 0);
        p = deep + 27; /* three levels print fine */
        assert_int_equal(moor_json_from_mp(&p, deep + 35, 0, &out), 0);
        assert_int_equal(out.len, strlen("{\"{\\\"{\\\\\\\"1\\\\\\\":1}\\\":1}\":1}"));
        assert_memory_equal(out.data, "{\"{\\\"{\\\\\\\"1\\\\\\\":1}\\\":1}\":1}", out.len);
        moor_buf_free(&out);
    }
    /* Truncated and invalid MessagePack are refused, nothing printed. */
    {
        moor_buf_t out = MOOR_BUF_INIT;
        const char *p = "\x92\x01";
        assert_int_equal(moor_json_from_mp(&p, p + 2, 0, &out), MOOR_EAGAIN);
        p = "\xc1";
        assert_int_equal(moor_json_from_mp(&p, p + 1, 0, &out), MOOR_EPROTO);
        assert_int_equal(out.len, 0);
        moor_buf_free(&out);
    }
    moor_buf_free(&mp);
}

/* Container headers shrink to the smallest form, as msgpack-c packs them. */
static void test_container_sizes(void **state)
{
    static const uint32_t sizes[] = {0, 1, 15, 16, 65535, 65536};
    moor_buf_t txt = MOOR_BUF_INIT, want = MOOR_BUF_INIT, got = MOOR_BUF_INIT;

    (void)state;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (int is_map = 0; is_map < 2; is_map++) {
            uint32_t n = sizes[s];
            msgpack_packer pk;
            moor_buf_reset(&txt), moor_buf_reset(&want);
            moor_mp_packer_init(&pk, &want);
            is_map ? msgpack_pack_map(&pk, n) : msgpack_pack_array(&pk, n);
            moor_buf_put_u8(&txt, is_map ? '{' : '[');
            for (uint32_t i = 0; i < n; i++) {
                char item[32];
                int l = is_map ? snprintf(item, sizeof(item), "%s\"k%u\":%u", i ? "," : "", i, i)
                               : snprintf(item, sizeof(item), "%s%u", i ? "," : "", i);
                moor_buf_append(&txt, item, (size_t)l);
                if (is_map) {
                    l = snprintf(item, sizeof(item), "k%u", i);
                    msgpack_pack_str_with_body(&pk, item, (size_t)l);
                }
                msgpack_pack_uint32(&pk, i);
            }
            moor_buf_put_u8(&txt, is_map ? '}' : ']');
            moor_buf_reset(&got);
            assert_int_equal(moor_json_to_mp(txt.data, txt.len, &got, NULL), 0);
            if (got.len != want.len || memcmp(got.data, want.data, got.len))
                fail_msg("%s of %u: %zu bytes, want %zu (first byte %02x vs %02x)",
                         is_map ? "map" : "array", n, got.len, want.len, (unsigned char)got.data[0],
                         (unsigned char)want.data[0]);
        }
    }
    moor_buf_free(&txt), moor_buf_free(&want), moor_buf_free(&got);
}

/* Random MessagePack (the types JSON can carry back) -> JSON -> the same bytes. */
static void random_obj(msgpack_packer *pk, uint64_t *rng, int depth)
{
    uint64_t r = testutil_rand(rng);
    int kind = depth >= 6 ? (int)(r % 7) : (int)(r % 9);
    char s[24];
    size_t n;

    switch (kind) {
    case 0: msgpack_pack_nil(pk); break;
    case 1: (r >> 8) & 1 ? msgpack_pack_true(pk) : msgpack_pack_false(pk); break;
    case 2: msgpack_pack_uint64(pk, testutil_rand(rng) >> (testutil_rand(rng) % 64)); break;
    case 3:
        msgpack_pack_int64(pk, -(int64_t)(testutil_rand(rng) >> (1 + testutil_rand(rng) % 63)) - 1);
        break;
    case 4: {
        uint64_t bits = testutil_rand(rng);
        double d;
        memcpy(&d, &bits, 8);
        if (isnan(d) || isinf(d))
            d = (double)(int64_t)bits / 3.0;
        msgpack_pack_double(pk, d);
        break;
    }
    case 5:
        n = testutil_rand(rng) % sizeof(s);
        for (size_t i = 0; i < n; i++) {
            uint64_t c = testutil_rand(rng) % 100;
            s[i] = c < 5 ? (char)(c + 1) : c < 10 ? "\"\\/\t\n"[c - 5] : (char)(' ' + c % 95);
        }
        msgpack_pack_str_with_body(pk, s, n);
        break;
    case 6:
        n = testutil_rand(rng) % sizeof(s);
        for (size_t i = 0; i < n; i++)
            s[i] = (char)testutil_rand(rng);
        msgpack_pack_bin_with_body(pk, s, n);
        break;
    case 7:
        n = testutil_rand(rng) % 5;
        msgpack_pack_array(pk, n);
        while (n--)
            random_obj(pk, rng, depth + 1);
        break;
    default:
        n = testutil_rand(rng) % 5;
        msgpack_pack_map(pk, n);
        for (size_t i = 0; i < n; i++) {
            int l = snprintf(s, sizeof(s), "k%zu", i);
            msgpack_pack_str_with_body(pk, s, (size_t)l);
            random_obj(pk, rng, depth + 1);
        }
    }
}

static void test_random_roundtrip(void **state)
{
    uint64_t rng = testutil_seed("test_random_roundtrip");
    moor_buf_t mp = MOOR_BUF_INIT, txt = MOOR_BUF_INIT, back = MOOR_BUF_INIT;

    (void)state;
    for (int iter = 0; iter < 3000; iter++) {
        msgpack_packer pk;
        const char *p;
        int rc;
        moor_buf_reset(&mp), moor_buf_reset(&txt), moor_buf_reset(&back);
        moor_mp_packer_init(&pk, &mp);
        random_obj(&pk, &rng, 0);
        p = mp.data;
        assert_int_equal(moor_json_from_mp(&p, mp.data + mp.len, iter & 1, &txt), 0);
        rc = moor_json_to_mp(txt.data, txt.len, &back, NULL);
        if (rc)
            fail_msg("iteration %d: printed JSON does not parse: %s\n%.*s", iter, moor_diag_msg(rc),
                     (int)txt.len, txt.data);
        if (back.len != mp.len || memcmp(back.data, mp.data, mp.len))
            fail_msg("iteration %d: %zu bytes came back as %zu bytes via %.*s", iter, mp.len,
                     back.len, (int)txt.len, txt.data);
    }
    moor_buf_free(&mp), moor_buf_free(&txt), moor_buf_free(&back);
}

static void expect_b64(const char *raw, const char *enc)
{
    moor_buf_t b = MOOR_BUF_INIT;

    assert_int_equal(moor_json_b64_encode(raw, strlen(raw), &b), 0);
    if (b.len != strlen(enc) || (b.len && memcmp(b.data, enc, b.len)))
        fail_msg("base64 of \"%s\" is %.*s, want %s", raw, (int)b.len, b.data, enc);
    moor_buf_reset(&b);
    assert_int_equal(moor_json_b64_decode(enc, strlen(enc), &b), 0);
    assert_int_equal(b.len, strlen(raw));
    if (b.len)
        assert_memory_equal(b.data, raw, b.len);
    moor_buf_free(&b);
}

static void test_base64(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    expect_b64("", ""); /* RFC 4648 section 10 */
    expect_b64("f", "Zg==");
    expect_b64("fo", "Zm8=");
    expect_b64("foo", "Zm9v");
    expect_b64("foob", "Zm9vYg==");
    expect_b64("fooba", "Zm9vYmE=");
    expect_b64("foobar", "Zm9vYmFy");
    moor_buf_append(&b, "x", 1);
    assert_int_equal(moor_json_b64_decode("Zm9v!A==", 8, &b), MOOR_EINVAL);
    assert_non_null(strstr(moor_diag_last()->msg, "0x21 at byte 4"));
    assert_int_equal(moor_json_b64_decode("Z", 1, &b), MOOR_EINVAL);
    assert_int_equal(moor_json_b64_decode("Zg=", 3, &b), MOOR_EINVAL);
    assert_int_equal(moor_json_b64_decode("Zm 9", 4, &b), MOOR_EINVAL);
    assert_int_equal(b.len, 1);
    assert_int_equal(moor_json_b64_decode("Zg", 2, &b), 0); /* unpadded */
    assert_int_equal(b.len, 2);
    assert_memory_equal(b.data, "xf", 2);
    moor_buf_free(&b);
}

/* MessagePack the parser could not read back is not printed: a bin or
 * ext at the bottom of 63 arrays would print as {"$bin"}/{"$ext": {}}
 * wrappers past the 64 levels JSON text may nest (found by fuzz_json). */
static void test_wrappers_too_deep(void **state)
{
    char m[80];
    moor_buf_t out = MOOR_BUF_INIT, back = MOOR_BUF_INIT;
    const char *p;

    (void)state;
    for (int depth = 62; depth <= 63; depth++) {
        memset(m, 0x91, (size_t)depth);
        memcpy(m + depth, "\xd4\x05\x01", 3); /* fixext1 type 5 */
        p = m;
        out.len = 0;
        int rc = moor_json_from_mp(&p, m + depth + 3, 0, &out);
        if (depth == 62) { /* 62 arrays + 2 wrapper levels = 64: readable */
            assert_int_equal(rc, 0);
            assert_int_equal(moor_json_to_mp(out.data, out.len, &back, NULL), 0);
        } else {
            assert_int_equal(rc, MOOR_EINVAL);
            assert_ptr_equal(p, m);
            assert_int_equal(out.len, 0);
            assert_non_null(strstr(moor_diag_last()->msg, "too deep"));
        }
    }
    memset(m, 0x91, 64); /* bin under 64 arrays: 65 levels */
    memcpy(m + 64, "\xc4\x01x", 3);
    p = m;
    out.len = 0;
    assert_int_equal(moor_json_from_mp(&p, m + 67, 0, &out), MOOR_EINVAL);
    moor_buf_free(&out), moor_buf_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_roundtrips),
        cmocka_unit_test(test_wrappers_too_deep),
        cmocka_unit_test(test_integers_exact),
        cmocka_unit_test(test_floats_shortest),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_bin),
        cmocka_unit_test(test_printer_special),
        cmocka_unit_test(test_container_sizes),
        cmocka_unit_test(test_random_roundtrip),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
