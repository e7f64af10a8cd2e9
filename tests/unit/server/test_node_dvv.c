/*
 * test_node_dvv.c -- a lone node on dotted version vectors: a data
 * directory holding records in the format before DVV (written straight
 * into the engine under record keys) is served -- a get answers the old
 * siblings, a put with that get's ctx replaces them and stores a v2
 * record, and the same old bytes decode alike after a restart; and the
 * sibling limits: past sibling_warn a write is counted, at sibling_max a
 * blind put or del is refused TOO_MANY_SIBLINGS with nothing stored,
 * while a write with the ctx goes through; info.siblings counts both.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cluster/record.h"
#include "server/node.h"
#include "util/err.h"
#include "util/mp.h"
#include "testutil.h"

typedef struct answer {
    int called;
    char err[32];
    moor_buf_t res;
} answer_t;

static void done_fn(void *ud, const char *errcode, const char *errmsg, const char *result,
                    size_t rlen)
{
    answer_t *a = ud;
    (void)errmsg;
    a->called++;
    snprintf(a->err, sizeof(a->err), "%s", errcode ? errcode : "");
    moor_buf_reset(&a->res);
    if (result)
        assert_int_equal(moor_buf_append(&a->res, result, rlen), 0);
}

static int sdone, sfail;

static void store_done(void *arg, int status)
{
    (void)arg;
    if (status)
        sfail++;
    else
        sdone++;
}

static moor_node_t *open_node(uv_loop_t *loop, const char *dir, unsigned warn, unsigned max)
{
    moor_config_t cfg;
    moor_node_t *n;

    moor_config_default(&cfg);
    snprintf(cfg.node, sizeof(cfg.node), "lone");
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
    cfg.engine.sync_mode = MOOR_SYNC_NONE;
    if (warn)
        cfg.sibling_warn = warn;
    if (max)
        cfg.sibling_max = max;
    assert_int_equal(moor_node_open(loop, &cfg, &n), 0);
    return n;
}

static void drain(uv_loop_t *loop, moor_node_t *n)
{
    for (int i = 0; i < 100000 && moor_node_pending(n) > 0; i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(moor_node_pending(n), 0);
}

static void close_node(uv_loop_t *loop, moor_node_t *n)
{
    drain(loop, n);
    assert_int_equal(moor_node_close(n), 0);
    uv_run(loop, UV_RUN_DEFAULT);
}

/* Runs method(key [, value] [, {ctx}]) and waits for the answer. */
static void call(uv_loop_t *loop, moor_node_t *n, const char *method, const char *key,
                 const char *value, size_t vlen, const moor_buf_t *ctx, answer_t *a)
{
    moor_buf_t p = MOOR_BUF_INIT;
    msgpack_packer pk;
    uint32_t np = 1;
    int authed = 1;

    moor_mp_packer_init(&pk, &p);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    if (value) {
        moor_mp_pack_raw(&p, value, vlen);
        np++;
    }
    if (ctx) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "ctx", 3);
        msgpack_pack_bin_with_body(&pk, ctx->data, ctx->len);
        np++;
    }
    a->called = 0;
    moor_node_exec(n, method, strlen(method), p.data, p.len, np, &authed, done_fn, a);
    for (int i = 0; i < 100000 && !a->called; i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(a->called, 1);
    drain(loop, n);
    moor_buf_free(&p);
}

/* The values (fixints) and ctx of a get result. */
static uint32_t get_values(const answer_t *a, int *vals, moor_buf_t *ctx)
{
    const char *p = a->res.data, *end = a->res.data + a->res.len, *k, *c;
    uint32_t n, klen, nv = 0, clen;
    uint64_t u;

    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        if (klen == 6 && !memcmp(k, "values", 6)) {
            assert_int_equal(moor_mp_read_array(&p, end, &nv), 0);
            for (uint32_t j = 0; j < nv; j++) {
                assert_int_equal(moor_mp_read_uint(&p, end, &u), 0);
                vals[j] = (int)u;
            }
        } else {
            assert_int_equal(moor_mp_read_bin(&p, end, &c, &clen), 0);
            moor_buf_reset(ctx);
            assert_int_equal(moor_buf_append(ctx, c, clen), 0);
        }
    }
    return nv;
}

/* The stored record of key, decoded into r (bytes kept in raw). */
static void stored(moor_node_t *n, const char *key, moor_buf_t *raw, moor_record_t *r)
{
    moor_store_if_t st = moor_node_store(n);
    moor_buf_t ek = MOOR_BUF_INIT;

    assert_int_equal(moor_record_key("default", 7, key, strlen(key), &ek), 0);
    moor_buf_reset(raw);
    assert_int_equal(st.get(st.ud, ek.data, ek.len, raw), 0);
    assert_int_equal(moor_record_decode(raw->data, raw->len, r), 0);
    moor_buf_free(&ek);
}

/* v1: [[["old", 4, 50]], [[5, 9, false], [7, 10, false], [nil, 11, true]]] */
static const char v1_rec[] = "\x92"
                             "\x91\x93\xc4\x03old\x04\x32"
                             "\x93"
                             "\x93\x05\x09\xc2"
                             "\x93\x07\x0a\xc2"
                             "\x93\xc0\x0b\xc3";

static void test_legacy_data_dir(void **state)
{
    char *dir = testutil_tmpdir("node-dvv");
    uv_loop_t loop;
    moor_node_t *n;
    moor_store_if_t st;
    moor_buf_t ek = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT, raw = MOOR_BUF_INIT;
    moor_record_t *r = malloc(sizeof(*r));
    answer_t a = {0};
    int vals[8];
    (void)state;

    uv_loop_init(&loop);
    /* a data directory in the old format: two keys written straight into
     * the engine under their record keys */
    n = open_node(&loop, dir, 0, 0);
    st = moor_node_store(n);
    for (int k = 0; k < 2; k++) {
        moor_buf_reset(&ek);
        assert_int_equal(moor_record_key("default", 7, k ? "k2" : "k1", 2, &ek), 0);
        assert_int_equal(st.put(st.ud, ek.data, ek.len, v1_rec, sizeof(v1_rec) - 1, store_done,
                                NULL),
                         0);
    }
    close_node(&loop, n);
    assert_int_equal(sdone, 2);

    /* opened again: gets answer the old values */
    n = open_node(&loop, dir, 0, 0);
    call(&loop, n, "get", "k1", NULL, 0, NULL, &a);
    assert_string_equal(a.err, "");
    assert_int_equal(get_values(&a, vals, &ctx), 2);
    assert_int_equal(vals[0] + vals[1], 12);
    /* a put with that ctx replaces them all; the record is rewritten v2 */
    call(&loop, n, "put", "k1", "\x2a", 1, &ctx, &a);
    assert_string_equal(a.err, "");
    stored(n, "k1", &raw, r);
    assert_int_equal((unsigned char)raw.data[0], 0x93);
    assert_int_equal(raw.data[1], 2);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->sib[0].value[0], 0x2a);
    assert_int_equal(moor_vclock_get(&r->vc, "old", 3), 4); /* the old clock is kept */
    /* a blind put on the other old key keeps the old siblings beside it */
    call(&loop, n, "put", "k2", "\x2b", 1, NULL, &a);
    assert_string_equal(a.err, "");
    stored(n, "k2", &raw, r);
    assert_int_equal(raw.data[1], 2);
    assert_int_equal(r->n, 4);
    call(&loop, n, "get", "k2", NULL, 0, NULL, &a);
    assert_int_equal(get_values(&a, vals, &ctx), 3);
    close_node(&loop, n);
    assert_int_equal(uv_loop_close(&loop), 0);
    moor_buf_free(&ek), moor_buf_free(&ctx), moor_buf_free(&raw), moor_buf_free(&a.res);
    free(r);
    testutil_rmrf(dir);
    free(dir);
}

/* The uint of key in the info map's "siblings" map. */
static uint64_t info_siblings(const answer_t *a, const char *key)
{
    const char *p = a->res.data, *end = a->res.data + a->res.len, *k;
    uint32_t n, klen, m;
    uint64_t u;

    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        if (klen == 8 && !memcmp(k, "siblings", 8)) {
            assert_int_equal(moor_mp_read_map(&p, end, &m), 0);
            for (uint32_t j = 0; j < m; j++) {
                assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
                assert_int_equal(moor_mp_read_uint(&p, end, &u), 0);
                if (klen == strlen(key) && !memcmp(k, key, klen))
                    return u;
            }
            fail_msg("info.siblings has no %s", key);
        }
        assert_int_equal(moor_mp_skip(&p, end, 64), 0);
    }
    fail_msg("info has no siblings");
    return 0;
}

static void test_sibling_limits(void **state)
{
    char *dir = testutil_tmpdir("node-dvv");
    uv_loop_t loop;
    moor_node_t *n;
    moor_buf_t ctx = MOOR_BUF_INIT, raw = MOOR_BUF_INIT;
    moor_record_t *r = malloc(sizeof(*r));
    answer_t a = {0};
    int vals[8];
    int authed = 1;
    (void)state;

    uv_loop_init(&loop);
    n = open_node(&loop, dir, 2, 3);
    for (int i = 1; i <= 3; i++) { /* blind: 1, 2, 3 siblings (the third warns) */
        char v = (char)i;
        call(&loop, n, "put", "k", &v, 1, NULL, &a);
        assert_string_equal(a.err, "");
    }
    call(&loop, n, "put", "k", "\x04", 1, NULL, &a); /* a 4th blind one: refused */
    assert_string_equal(a.err, "TOO_MANY_SIBLINGS");
    call(&loop, n, "del", "k", NULL, 0, NULL, &a); /* a blind delete too */
    assert_string_equal(a.err, "TOO_MANY_SIBLINGS");
    stored(n, "k", &raw, r);
    assert_int_equal(r->n, 3); /* nothing stored */
    call(&loop, n, "get", "k", NULL, 0, NULL, &a);
    assert_int_equal(get_values(&a, vals, &ctx), 3);
    call(&loop, n, "put", "k", "\x05", 1, &ctx, &a); /* with the ctx: one left */
    assert_string_equal(a.err, "");
    stored(n, "k", &raw, r);
    assert_int_equal(r->n, 1);
    a.called = 0;
    moor_node_exec(n, "info", 4, NULL, 0, 0, &authed, done_fn, &a);
    assert_int_equal(a.called, 1);
    assert_int_equal(info_siblings(&a, "warned"), 1);
    assert_int_equal(info_siblings(&a, "refused"), 2);
    assert_int_equal(info_siblings(&a, "most"), 3);
    close_node(&loop, n);
    assert_int_equal(uv_loop_close(&loop), 0);
    moor_buf_free(&ctx), moor_buf_free(&raw), moor_buf_free(&a.res);
    free(r);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_legacy_data_dir),
        cmocka_unit_test(test_sibling_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
