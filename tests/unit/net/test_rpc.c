/*
 * test_rpc.c -- MessagePack-RPC framing and request splitting: frame_len
 * and the resumable scan on every cut point of a frame (0 = need more),
 * several frames back to back, oversized frames (TOOLARGE), garbage and
 * over-deep nesting (EPROTO); parse of good requests and notifications and
 * of every kind of bad one (wrong arity, type, msgid range, method and
 * params types), with the msgid reported when it can be read; the three
 * encoders decoded back with the mp readers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/mp.h"
#include "net/rpc.h"
#include "util/err.h"
#include "testutil.h"

#define MAXF ((size_t)1 << 20)

/* [0, msgid, method, [params...]] with params packed by the caller. */
static void pack_req(moor_buf_t *b, uint64_t msgid, const char *method, int nparams)
{
    msgpack_packer pk;

    moor_mp_packer_init(&pk, b);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint64(&pk, msgid);
    msgpack_pack_str(&pk, strlen(method));
    msgpack_pack_str_body(&pk, method, strlen(method));
    msgpack_pack_array(&pk, (size_t)nparams);
}

/* A request with a mix of param types: str, nested map, bin, int. */
static void pack_sample(moor_buf_t *b, uint32_t msgid)
{
    msgpack_packer pk;

    pack_req(b, msgid, "put", 4);
    moor_mp_packer_init(&pk, b);
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "key", 3);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_nil(&pk);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_bin(&pk, 300);
    for (int i = 0; i < 300; i++)
        msgpack_pack_bin_body(&pk, "x", 1);
    msgpack_pack_int64(&pk, -123456789012LL);
}

static void test_frame_every_cut(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    pack_sample(&b, 77);
    for (size_t cut = 0; cut < b.len; cut++) {
        moor_rpc_scan_t sc;
        moor_rpc_scan_init(&sc);
        assert_int_equal(moor_rpc_frame_len(b.data, cut, MAXF), 0);
        assert_int_equal(moor_rpc_scan_frame(&sc, b.data, cut, MAXF), 0);
    }
    assert_int_equal(moor_rpc_frame_len(b.data, b.len, MAXF), (long)b.len);
    moor_buf_free(&b);
}

/* The resumable scan fed one byte more at a time finds the same end. */
static void test_scan_incremental(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    moor_rpc_scan_t sc;
    long got = 0;
    size_t at = 0;

    (void)state;
    pack_sample(&b, 1);
    pack_sample(&b, 2);
    moor_rpc_scan_init(&sc);
    for (size_t n = 0; n <= b.len && got == 0; n++) {
        got = moor_rpc_scan_frame(&sc, b.data, n, MAXF);
        at = n;
    }
    assert_int_equal(got, (long)b.len / 2);
    assert_int_equal(at, b.len / 2);
    /* The state was reset: the second frame scans from its own start. */
    assert_int_equal(moor_rpc_scan_frame(&sc, b.data + got, b.len - got, MAXF), got);
    moor_buf_free(&b);
}

static void test_frames_back_to_back(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    size_t off = 0, ends[5];
    int n = 0;

    (void)state;
    for (int i = 0; i < 5; i++) {
        pack_sample(&b, (uint32_t)i);
        ends[i] = b.len;
    }
    while (off < b.len) {
        long f = moor_rpc_frame_len(b.data + off, b.len - off, MAXF);
        moor_rpc_req_t r;
        int have = 0;
        uint32_t id = 99;
        assert_true(f > 0);
        off += (size_t)f;
        assert_int_equal(off, ends[n]);
        assert_int_equal(moor_rpc_parse(b.data + off - f, (size_t)f, &r, &have, &id), 0);
        assert_int_equal(id, n);
        n++;
    }
    assert_int_equal(n, 5);
    moor_buf_free(&b);
}

/* Every cut of [0, 1, "m", [obj]] gives 0 until obj's header is whole,
 * then MOOR_ETOOLARGE at once (frame_len and the resumable scan alike). */
static void check_announces_too_much(const char *obj, size_t olen, size_t header, size_t maxf)
{
    moor_buf_t b = MOOR_BUF_INIT;
    moor_rpc_scan_t sc;

    moor_buf_append(&b, "\x94\x00\x01\xa1m\x91", 6);
    moor_buf_append(&b, obj, olen);
    moor_rpc_scan_init(&sc);
    for (size_t cut = 1; cut <= b.len; cut++) {
        long want = cut < 6 + header ? 0 : MOOR_ETOOLARGE;
        long a = moor_rpc_frame_len(b.data, cut, maxf);
        long s = moor_rpc_scan_frame(&sc, b.data, cut, maxf);
        if (a != want || s != want)
            fail_msg("cut %zu of %zu (max_frame %zu): frame_len %ld scan %ld, want %ld", cut, b.len,
                     maxf, a, s, want);
        if (want)
            moor_rpc_scan_init(&sc);
    }
    assert_non_null(strstr(moor_diag_last()->msg, "max_frame"));
    moor_buf_free(&b);
}

static void test_frame_too_large(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    moor_rpc_scan_t sc;
    msgpack_packer pk;

    (void)state;
    pack_sample(&b, 5);
    /* complete but longer than the limit */
    assert_int_equal(moor_rpc_frame_len(b.data, b.len, 100), MOOR_ETOOLARGE);
    moor_rpc_scan_init(&sc);
    assert_int_equal(moor_rpc_scan_frame(&sc, b.data, b.len, 100), MOOR_ETOOLARGE);
    /* its 300-byte bin says so from its header on: refused before the
     * limit's worth of bytes arrived */
    assert_int_equal(moor_rpc_frame_len(b.data, 99, 100), MOOR_ETOOLARGE);
    /* exactly the limit is fine */
    assert_int_equal(moor_rpc_frame_len(b.data, b.len, b.len), (long)b.len);
    /* no header lies (15 arrays of 15 ints): waits for max_frame bytes */
    moor_buf_reset(&b);
    pack_req(&b, 1, "m", 15);
    moor_mp_packer_init(&pk, &b);
    for (int i = 0; i < 15; i++) {
        msgpack_pack_array(&pk, 15);
        for (int k = 0; k < 15; k++)
            msgpack_pack_fix_uint8(&pk, (uint8_t)k);
    }
    assert_int_equal(moor_rpc_frame_len(b.data, 99, 100), 0);
    assert_int_equal(moor_rpc_frame_len(b.data, 100, 100), MOOR_ETOOLARGE);
    assert_non_null(strstr(moor_diag_last()->msg, "max_frame"));
    moor_buf_free(&b);
}

/* A length or count announced in a header that cannot end within
 * max_frame of the frame's start: refused as soon as the header is whole,
 * not after max_frame bytes of waiting. */
static void test_frame_announces_too_much(void **state)
{
    (void)state;
    /* bin32 of 4 GiB, str8 of 255, ext8 of 200 (+ type byte), map32 and
     * array16 counts (each child at least a byte) */
    check_announces_too_much("\xc6\xff\xff\xff\xff", 5, 5, 64);
    check_announces_too_much("\xd9\xff", 2, 2, 200);
    check_announces_too_much("\xc7\xc8\x01", 3, 2, 200);
    check_announces_too_much("\xdf\x7f\xff\xff\xff", 5, 5, MAXF);
    check_announces_too_much("\xdc\x01\x00", 3, 3, 200);
    /* a fitting announcement still waits */
    assert_int_equal(moor_rpc_frame_len("\x94\x00\x01\xa1m\x91\xd9\xff", 8, 300), 0);
    /* the frame's own header: dd ff ff ff ff is refused from its 5 bytes */
    assert_int_equal(moor_rpc_frame_len("\xdd\xff\xff", 3, MAXF), 0);
    assert_int_equal(moor_rpc_frame_len("\xdd\xff\xff\xff\xff", 5, MAXF), MOOR_ETOOLARGE);
    /* an honest array32 of 4 is a frame head like any other */
    assert_int_equal(moor_rpc_frame_len("\xdd\x00\x00\x00\x04\x00\x01\xa1m\x90", 10, MAXF), 10);
}

static void test_frame_garbage(void **state)
{
    static const struct {
        const char *bytes;
        size_t n;
    } cases[] = {
        {"\xc1", 1},                     /* never-used byte */
        {"\x94\x00\x01\xc1\x00\x00", 6}, /* never-used byte inside */
        {"\x05", 1},                     /* not an array */
        {"\243abc", 4},                  /* a string */
        {"\x92\x00\x01", 3},             /* array of 2 */
        {"\x95\x00\x01\x02\x03\x04", 6}, /* array of 5 */
        {"\xdc\x00\x00", 3},             /* array16 of 0 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        moor_rpc_scan_t sc;
        moor_rpc_scan_init(&sc);
        long a = moor_rpc_frame_len(cases[i].bytes, cases[i].n, MAXF);
        long b = moor_rpc_scan_frame(&sc, cases[i].bytes, cases[i].n, MAXF);
        if (a != MOOR_EPROTO || b != MOOR_EPROTO)
            fail_msg("case %zu: frame_len %ld scan %ld, want %d", i, a, b, MOOR_EPROTO);
        assert_true(moor_diag_last()->msg[0] != '\0');
    }
}

/* The frame's own array plus 63 levels is the limit (64); one more fails. */
static void test_frame_too_deep(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    moor_rpc_scan_t sc;
    int levels;

    (void)state;
    for (levels = 63; levels <= 64; levels++) {
        moor_buf_reset(&b);
        moor_buf_append(&b, "\x94\x00\x01\xa1m", 5);
        for (int i = 0; i < levels; i++)
            moor_buf_put_u8(&b, 0x91);
        moor_buf_put_u8(&b, 0xc0);
        moor_rpc_scan_init(&sc);
        long a = moor_rpc_frame_len(b.data, b.len, MAXF);
        long s = moor_rpc_scan_frame(&sc, b.data, b.len, MAXF);
        assert_int_equal(a, s);
        if (levels == 63) {
            moor_rpc_req_t r;
            assert_int_equal(a, (long)b.len);
            assert_int_equal(moor_rpc_parse(b.data, b.len, &r, NULL, NULL), 0);
        } else
            assert_int_equal(a, MOOR_EPROTO);
    }
    moor_buf_free(&b);
}

static void test_parse_good(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    moor_rpc_req_t r;
    const char *p, *s;
    uint32_t id = 0, n;
    int have = 0;

    (void)state;
    pack_sample(&b, UINT32_MAX);
    assert_int_equal(moor_rpc_parse(b.data, b.len, &r, &have, &id), 0);
    assert_int_equal(have, 1);
    assert_int_equal(id, UINT32_MAX);
    assert_int_equal(r.msgid, UINT32_MAX);
    assert_int_equal(r.notify, 0);
    assert_int_equal(r.mlen, 3);
    assert_memory_equal(r.method, "put", 3);
    assert_int_equal(r.nparams, 4);
    assert_ptr_equal(r.params + r.plen, b.data + b.len);
    p = r.params;
    assert_int_equal(moor_mp_read_str(&p, r.params + r.plen, &s, &n), 0);
    assert_int_equal(n, 3);

    /* a notification */
    moor_buf_reset(&b);
    moor_buf_append(&b, "\x93\x02\xa4ping\x90", 8);
    assert_int_equal(moor_rpc_parse(b.data, b.len, &r, &have, &id), 0);
    assert_int_equal(r.notify, 1);
    assert_int_equal(have, 0);
    assert_int_equal(r.nparams, 0);
    assert_int_equal(r.plen, 0);
    /* NULL out-params are allowed */
    assert_int_equal(moor_rpc_parse(b.data, b.len, &r, NULL, NULL), 0);
    moor_buf_free(&b);
}

static void test_parse_bad(void **state)
{
    static const struct {
        const char *bytes;
        size_t n;
        int have; /* msgid readable */
        uint32_t id;
        const char *why; /* in the diagnostic */
    } cases[] = {
        {"\x93\x00\x07\xa1m", 5, 1, 7, "got 3"},           /* request of 3 */
        {"\x95\x00\x07\xa1m\x90\xc0", 7, 1, 7, "got 5"},   /* request of 5 */
        {"\x94\x00\x07\x05\x90", 5, 1, 7, "method"},       /* method an int */
        {"\x94\x00\x07\xc4\x01m\x90", 7, 1, 7, "method"},  /* method bin */
        {"\x94\x00\x07\xa1m\x80", 6, 1, 7, "params"},      /* params a map */
        {"\x94\x00\x07\xa1m\xc0", 6, 1, 7, "params"},      /* params nil */
        {"\x94\x00\x07\xa1m\x91", 6, 1, 7, "params"},      /* params short */
        {"\x94\x00\x07\xa1m\x91\xc1", 7, 1, 7, "param 0"}, /* bad param */
        {"\x94\x00\x07\xa1m\x90\x01", 7, 1, 7, "after"},   /* trailing */
        {"\x94\x00\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xa1m\x90", 14, 0, 0, "msgid"},
        {"\x94\x00\xff\xa1m\x90", 6, 0, 0, "msgid"},  /* msgid -1 */
        {"\x94\x00\xa1x\xa1m\x90", 7, 0, 0, "msgid"}, /* msgid a str */
        {"\x94\x01\x07\xc0\xc0", 5, 1, 7, "type 1"},  /* a response: BAD_REQUEST */
        {"\x94\x05\x07\xa1m\x90", 6, 1, 7, "type 5"},
        {"\x94\xa1x\x07\xa1m\x90", 7, 0, 0, "type"},
        {"\x94\x02\xa1m\x90\xc0", 6, 0, 0, "notification"}, /* notify of 4 */
        {"\x93\x02\x05\x90", 4, 0, 0, "method"},
        {"\x93\x02\xa1m\xc0", 5, 0, 0, "params"},
        {"\x05", 1, 0, 0, "array"},
        {"", 0, 0, 0, "array"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        moor_rpc_req_t r;
        int have = -1;
        uint32_t id = 12345;
        int rc = moor_rpc_parse(cases[i].bytes, cases[i].n, &r, &have, &id);
        if (rc != MOOR_EPROTO || have != cases[i].have)
            fail_msg("case %zu: rc %d have %d, want %d have %d", i, rc, have, MOOR_EPROTO,
                     cases[i].have);
        if (have && id != cases[i].id)
            fail_msg("case %zu: msgid %u, want %u", i, id, cases[i].id);
        if (!have && id != 12345)
            fail_msg("case %zu: msgid_out written (%u) without a msgid", i, id);
        if (!strstr(moor_diag_last()->msg, cases[i].why))
            fail_msg("case %zu: diagnostic '%s' lacks '%s'", i, moor_diag_last()->msg,
                     cases[i].why);
    }
}

/* The one answer parser (client and peer pool): every error form, a
 * notification, and frames that are no answer. */
static void test_parse_answer(void **state)
{
    moor_rpc_answer_t a;
    static const char *bad[] = {
        "\x94\x00\x07\xc0\xc0",     /* a request */
        "\x93\x01\x07\xc0",         /* 3 items */
        "\x94\x01\xff\xc0\xc0",     /* msgid -1 */
        "\x94\x01\x07\x05\xc0",     /* error an int */
        "\x94\x01\x07\x90\xc0",     /* error [] */
        "\x94\x01\x07\x91\x05\xc0", /* error [5] */
    };
    static const size_t badn[] = {5, 4, 5, 5, 5, 6};

    (void)state;
    assert_int_equal(moor_rpc_parse_answer("\x94\x01\x07\xc0\x92\x01\x02", 7, &a), 0);
    assert_int_equal(a.msgid, 7);
    assert_int_equal(a.is_error, 0);
    assert_int_equal(a.rlen, 3);
    assert_memory_equal(a.result, "\x92\x01\x02", 3);
    /* [code, message] */
    assert_int_equal(moor_rpc_parse_answer("\x94\x01\x08\x92\xa2NO\xa3why\xc0", 12, &a), 0);
    assert_int_equal(a.msgid, 8);
    assert_int_equal(a.is_error, 1);
    assert_int_equal(a.clen, 2);
    assert_memory_equal(a.code, "NO", 2);
    assert_int_equal(a.mlen, 3);
    assert_memory_equal(a.msg, "why", 3);
    assert_int_equal(a.rlen, 1); /* nil */
    /* [code], [code, message, extra...], a bare string */
    assert_int_equal(moor_rpc_parse_answer("\x94\x01\x08\x91\xa2NO\xc0", 8, &a), 0);
    assert_int_equal(a.mlen, 0);
    assert_int_equal(moor_rpc_parse_answer("\x94\x01\x08\x93\xa2NO\xa1m\x91\x01\xc0", 12, &a), 0);
    assert_int_equal(a.mlen, 1);
    assert_int_equal(moor_rpc_parse_answer("\x94\x01\x08\xa3"
                                           "bad\xc0",
                                           8, &a),
                     0);
    assert_int_equal(a.is_error, 1);
    assert_int_equal(a.clen, 5);
    assert_memory_equal(a.code, "ERROR", 5);
    assert_memory_equal(a.msg, "bad", 3);
    /* a notification is told apart */
    assert_int_equal(moor_rpc_parse_answer("\x93\x02\xa1m\x90", 5, &a), 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (moor_rpc_parse_answer(bad[i], badn[i], &a) != MOOR_EPROTO)
            fail_msg("bad answer %zu was accepted", i);
}

/* Decodes [1, msgid, err, result] into its parts. */
static void decode_response(const char *f, size_t n, uint32_t *id, const char **err,
                            const char **res, const char **end)
{
    const char *p = f, *e = f + n;
    uint32_t cnt;
    uint64_t v;

    assert_int_equal(moor_rpc_frame_len(f, n, MAXF), (long)n);
    assert_int_equal(moor_mp_read_array(&p, e, &cnt), 0);
    assert_int_equal(cnt, 4);
    assert_int_equal(moor_mp_read_uint(&p, e, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(moor_mp_read_uint(&p, e, &v), 0);
    *id = (uint32_t)v;
    *err = p;
    assert_int_equal(moor_mp_skip(&p, e, 8), 0);
    *res = p;
    *end = e;
}

static void test_encode_result(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    const char *err, *res, *end;
    uint32_t id;

    (void)state;
    assert_int_equal(moor_rpc_encode_result(&b, 4000000000u, "\x92\x01\xa2hi", 5), 0);
    decode_response(b.data, b.len, &id, &err, &res, &end);
    assert_int_equal(id, 4000000000u);
    assert_int_equal(moor_mp_read_nil(&err, end), 0);
    assert_int_equal(end - res, 5);
    assert_memory_equal(res, "\x92\x01\xa2hi", 5);

    moor_buf_reset(&b);
    assert_int_equal(moor_rpc_encode_result(&b, 3, NULL, 0), 0);
    decode_response(b.data, b.len, &id, &err, &res, &end);
    assert_int_equal(moor_mp_read_nil(&res, end), 0);
    assert_ptr_equal(res, end);

    /* not one object: refused, buffer untouched */
    moor_buf_reset(&b);
    moor_buf_append(&b, "zz", 2);
    assert_int_equal(moor_rpc_encode_result(&b, 3, "\x01\x02", 2), MOOR_EINVAL);
    assert_int_equal(moor_rpc_encode_result(&b, 3, "\x92\x01", 2), MOOR_EINVAL);
    assert_int_equal(moor_rpc_encode_result(&b, 3, "\xc1", 1), MOOR_EINVAL);
    assert_int_equal(b.len, 2);
    moor_buf_free(&b);
}

static void test_encode_error(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    const char *err, *res, *end, *s;
    uint32_t id, n;

    (void)state;
    assert_int_equal(moor_rpc_encode_error(&b, 9, "BAD_REQUEST", "method must be a str"), 0);
    decode_response(b.data, b.len, &id, &err, &res, &end);
    assert_int_equal(id, 9);
    assert_int_equal(moor_mp_read_array(&err, end, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(moor_mp_read_str(&err, end, &s, &n), 0);
    assert_int_equal(n, 11);
    assert_memory_equal(s, "BAD_REQUEST", 11);
    assert_int_equal(moor_mp_read_str(&err, end, &s, &n), 0);
    assert_int_equal(n, 20);
    assert_memory_equal(s, "method must be a str", 20);
    assert_int_equal(moor_mp_read_nil(&res, end), 0);

    moor_buf_reset(&b);
    assert_int_equal(moor_rpc_encode_error(&b, 1, "X", NULL), 0);
    decode_response(b.data, b.len, &id, &err, &res, &end);
    assert_int_equal(moor_mp_read_array(&err, end, &n), 0);
    assert_int_equal(moor_mp_read_str(&err, end, &s, &n), 0);
    assert_int_equal(moor_mp_read_str(&err, end, &s, &n), 0);
    assert_int_equal(n, 0);
    moor_buf_free(&b);
}

static void test_encode_request(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    moor_rpc_req_t r;
    uint32_t id = 0;
    int have = 0;

    (void)state;
    assert_int_equal(moor_rpc_encode_request(&b, 42, "get", "\xa1k\x80", 3, 2), 0);
    assert_int_equal(moor_rpc_frame_len(b.data, b.len, MAXF), (long)b.len);
    assert_int_equal(moor_rpc_parse(b.data, b.len, &r, &have, &id), 0);
    assert_int_equal(id, 42);
    assert_int_equal(r.mlen, 3);
    assert_memory_equal(r.method, "get", 3);
    assert_int_equal(r.nparams, 2);
    assert_int_equal(r.plen, 3);
    assert_memory_equal(r.params, "\xa1k\x80", 3);

    moor_buf_reset(&b);
    assert_int_equal(moor_rpc_encode_request(&b, 0, "ping", NULL, 0, 0), 0);
    assert_int_equal(moor_rpc_parse(b.data, b.len, &r, &have, &id), 0);
    assert_int_equal(r.nparams, 0);
    moor_buf_free(&b);
}

/* Random byte strings: frame_len and the scan always agree, fed whole and
 * in random pieces, and whatever parses has its spans inside the frame. */
static void test_random_agree(void **state)
{
    uint64_t seed = testutil_seed("test_rpc random"), st = seed;
    char buf[64];

    (void)state;
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = testutil_rand(&st) % sizeof(buf);
        moor_rpc_scan_t sc;
        long a, b = 0;
        size_t cut = 0;

        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(testutil_rand(&st) % 8 == 0 ? 0x90 + testutil_rand(&st) % 6
                                                        : testutil_rand(&st));
        if (n)
            buf[0] = (char)(0x93 + testutil_rand(&st) % 2);
        a = moor_rpc_frame_len(buf, n, 48);
        moor_rpc_scan_init(&sc);
        while (b == 0 && cut < n) {
            cut += 1 + testutil_rand(&st) % 8;
            if (cut > n)
                cut = n;
            b = moor_rpc_scan_frame(&sc, buf, cut, 48);
        }
        if (n && a != b)
            fail_msg("seed %llu iter %d: frame_len %ld, scan %ld", (unsigned long long)seed, iter,
                     a, b);
        if (a > 0) {
            moor_rpc_req_t r;
            if (moor_rpc_parse(buf, (size_t)a, &r, NULL, NULL) == 0) {
                assert_true(r.params >= buf && r.params + r.plen <= buf + a);
                assert_true(r.method >= buf && r.method + r.mlen <= buf + a);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_every_cut),
        cmocka_unit_test(test_scan_incremental),
        cmocka_unit_test(test_frames_back_to_back),
        cmocka_unit_test(test_frame_too_large),
        cmocka_unit_test(test_frame_announces_too_much),
        cmocka_unit_test(test_parse_answer),
        cmocka_unit_test(test_frame_garbage),
        cmocka_unit_test(test_frame_too_deep),
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_encode_result),
        cmocka_unit_test(test_encode_error),
        cmocka_unit_test(test_encode_request),
        cmocka_unit_test(test_random_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
