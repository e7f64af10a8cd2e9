/*
 * test_node_store.c -- the node's engine seen as env.h's store
 * (moor_node_store): put and del are visible at once and call done on the
 * loop once durable; scan walks keys in byte order within a prefix, from a
 * key, up to a limit, stopping when asked, and sees queued writes; what was
 * durable is there after the node is closed and opened again; the hints
 * prefix (hints.h) and data keys (record.h) stay apart in a scan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cluster/hints.h"
#include "cluster/record.h"
#include "server/node.h"
#include "util/err.h"
#include "testutil.h"

typedef struct seen {
    char key[16][32];
    size_t klen[16];
    int n, stop_at;
} seen_t;

static int seen_fn(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    seen_t *s = arg;

    assert_true(s->n < 16 && klen <= 32);
    memcpy(s->key[s->n], key, klen);
    s->klen[s->n] = klen;
    assert_int_equal(vlen, 1); /* every value is the key's last byte */
    assert_int_equal(val[0], key[klen - 1]);
    return ++s->n == s->stop_at;
}

static int ndone, nfail;

static void done_fn(void *arg, int status)
{
    (void)arg;
    if (status)
        nfail++;
    else
        ndone++;
}

static moor_node_t *open_node(uv_loop_t *loop, const char *dir)
{
    moor_config_t cfg;
    moor_node_t *n;

    moor_config_default(&cfg);
    snprintf(cfg.node, sizeof(cfg.node), "st");
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
    cfg.engine.sync_mode = MOOR_SYNC_NONE;
    assert_int_equal(moor_node_open(loop, &cfg, &n), 0);
    return n;
}

static void drain(uv_loop_t *loop, moor_node_t *n)
{
    for (int i = 0; i < 100000 && moor_node_pending(n) > 0; i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(moor_node_pending(n), 0);
}

static void put(moor_store_if_t *st, const char *k, size_t klen)
{
    assert_int_equal(st->put(st->ud, k, klen, k + klen - 1, 1, done_fn, NULL), 0);
}

static void test_scan_and_del(void **state)
{
    char *dir = testutil_tmpdir("node-store");
    uv_loop_t loop;
    moor_node_t *n;
    moor_store_if_t st;
    moor_buf_t out = MOOR_BUF_INIT, data = MOOR_BUF_INIT;
    char hk[3][MOOR_HINTS_PREFIX_LEN + 2];
    seen_t s;
    (void)state;

    uv_loop_init(&loop);
    n = open_node(&loop, dir);
    st = moor_node_store(n);
    assert_non_null(st.del);
    assert_non_null(st.scan);
    /* three hint keys around a data key and plain keys */
    for (int i = 0; i < 3; i++) {
        memcpy(hk[i], MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN);
        hk[i][MOOR_HINTS_PREFIX_LEN] = 'a' + (char)(2 - i);
        hk[i][MOOR_HINTS_PREFIX_LEN + 1] = (char)('x' + i);
        put(&st, hk[i], sizeof(hk[i]));
    }
    assert_int_equal(moor_record_key("default", 7, "k", 1, &data), 0);
    put(&st, data.data, data.len);
    put(&st, "b2", 2);
    put(&st, "b1", 2);
    put(&st, "b3", 2);
    put(&st, "\xff\xff", 2);
    /* visible before durable */
    memset(&s, 0, sizeof(s));
    assert_int_equal(st.scan(st.ud, "b", 1, NULL, 0, 0, seen_fn, &s), 0);
    assert_int_equal(s.n, 3);
    assert_memory_equal(s.key[0], "b1", 2);
    assert_memory_equal(s.key[2], "b3", 2);
    memset(&s, 0, sizeof(s));
    assert_int_equal(st.scan(st.ud, MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN, NULL, 0, 0, seen_fn,
                             &s),
                     0);
    assert_int_equal(s.n, 3); /* the hints only, in byte order */
    for (int i = 0; i < 3; i++)
        assert_memory_equal(s.key[i], hk[2 - i], sizeof(hk[i]));
    memset(&s, 0, sizeof(s));
    assert_int_equal(st.scan(st.ud, "", 0, "b15", 3, 2, seen_fn, &s), 0); /* from, limit */
    assert_int_equal(s.n, 2);
    assert_memory_equal(s.key[0], "b2", 2);
    assert_memory_equal(s.key[1], "b3", 2);
    memset(&s, 0, sizeof(s));
    s.stop_at = 1;
    assert_int_equal(st.scan(st.ud, "\xff", 1, "\xff", 1, 0, seen_fn, &s), 0); /* 0xff prefix */
    assert_int_equal(s.n, 1);
    memset(&s, 0, sizeof(s));
    assert_int_equal(st.scan(st.ud, "b", 1, "a", 1, 0, seen_fn, &s), 0); /* from below prefix */
    assert_int_equal(s.n, 3);
    drain(&loop, n);
    assert_int_equal(ndone, 8);
    /* del: visible at once, durable later; absent keys are fine */
    assert_int_equal(st.del(st.ud, "b2", 2, done_fn, NULL), 0);
    assert_int_equal(st.del(st.ud, "zz", 2, done_fn, NULL), 0);
    assert_int_equal(st.del(st.ud, hk[1], sizeof(hk[1]), done_fn, NULL), 0);
    assert_int_equal(st.get(st.ud, "b2", 2, &out), MOOR_ENOTFOUND);
    memset(&s, 0, sizeof(s));
    assert_int_equal(st.scan(st.ud, "b", 1, NULL, 0, 0, seen_fn, &s), 0);
    assert_int_equal(s.n, 2);
    drain(&loop, n);
    assert_int_equal(ndone, 11);
    assert_int_equal(nfail, 0);
    assert_int_equal(moor_node_close(n), 0);
    /* after a restart */
    n = open_node(&loop, dir);
    st = moor_node_store(n);
    assert_int_equal(st.get(st.ud, "b2", 2, &out), MOOR_ENOTFOUND);
    assert_int_equal(st.get(st.ud, "b3", 2, &out), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(st.scan(st.ud, MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN, NULL, 0, 0, seen_fn,
                             &s),
                     0);
    assert_int_equal(s.n, 2);
    assert_int_equal(moor_node_close(n), 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* the node's handles finish closing */
    assert_int_equal(uv_loop_close(&loop), 0);
    moor_buf_free(&out);
    moor_buf_free(&data);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_and_del),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
