/*
 * test_expire.c -- the node's compaction filter (server/expire.c) on
 * records made by record.c: alone, a record with an expired value is
 * rewritten with the tombstone at its expiry (the value's bytes gone),
 * one not yet expired or without expiry is kept, a record deleted (or
 * expired) longer ago than its space's tombstone_grace_s is dropped, the
 * space found from the engine key; in a cluster expired values are
 * rewritten the same way but nothing is dropped; bytes that do not
 * decode are kept.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster/record.h"
#include "engine/engine.h"
#include "lua/config.h"
#include "server/expire.h"
#include "util/err.h"

static uint64_t g_now;

static uint64_t fake_now(void)
{
    return g_now;
}

/* The record of one write of value (tombstone if NULL) at now, expiring at
 * exp (0: never). */
static void write_rec(moor_buf_t *out, const char *value, uint64_t now, uint64_t exp)
{
    moor_buf_t ctx = MOOR_BUF_INIT;

    moor_buf_reset(out);
    assert_int_equal(moor_record_write_exp(NULL, NULL, 0, value, value ? 1 : 0, value == NULL, exp,
                                           "n1", 2, now, 0, NULL, out, &ctx, NULL),
                     0);
    moor_buf_free(&ctx);
}

static int run(moor_expire_t *x, const moor_buf_t *key, const moor_buf_t *rec, moor_buf_t *out)
{
    const void *nv = NULL;
    size_t nvl = 0;
    int v = moor_expire_filter(x, key->data, key->len, rec->data, rec->len, &nv, &nvl);

    moor_buf_reset(out);
    if (v == MOOR_ENGINE_FILTER_REWRITE)
        assert_int_equal(moor_buf_append(out, nv, nvl), 0);
    return v;
}

static void test_filter_alone_and_clustered(void **state)
{
    moor_config_t *cfg = calloc(1, sizeof(*cfg));
    moor_buf_t key = MOOR_BUF_INIT, skey = MOOR_BUF_INIT, kkey = MOOR_BUF_INIT;
    moor_buf_t rec = MOOR_BUF_INIT;
    moor_buf_t out = MOOR_BUF_INIT;
    moor_record_t *r = malloc(sizeof(*r));
    moor_expire_t *x;

    (void)state;
    moor_config_default(cfg);
    cfg->tombstone_grace_s = 100;
    snprintf(cfg->spaces[cfg->nspaces].name, sizeof(cfg->spaces[0].name), "short");
    cfg->spaces[cfg->nspaces].grace_s = 1;
    cfg->nspaces++;
    snprintf(cfg->spaces[cfg->nspaces].name, sizeof(cfg->spaces[0].name), "keep");
    cfg->spaces[cfg->nspaces].grace_s = 0; /* never reaped */
    cfg->nspaces++;
    assert_int_equal(moor_record_key("default", 7, "k", 1, &key), 0);
    assert_int_equal(moor_record_key("short", 5, "k", 1, &skey), 0);
    assert_int_equal(moor_record_key("keep", 4, "k", 1, &kkey), 0);
    assert_int_equal(moor_expire_new(cfg, 1, &x), 0);
    moor_expire_set_clock(x, fake_now);
    g_now = 1000000;

    /* no expiry: kept; not expired yet: kept */
    write_rec(&rec, "\x01", 1000, 0);
    assert_int_equal(run(x, &key, &rec, &out), MOOR_ENGINE_FILTER_KEEP);
    write_rec(&rec, "\x01", 1000, g_now + 1);
    assert_int_equal(run(x, &key, &rec, &out), MOOR_ENGINE_FILTER_KEEP);
    /* expired: the tombstone at exp (within the grace: not dropped) */
    write_rec(&rec, "\x01", 1000, g_now - 10);
    assert_int_equal(run(x, &key, &rec, &out), MOOR_ENGINE_FILTER_REWRITE);
    assert_int_equal(moor_record_decode(out.data, out.len, r), 0);
    assert_int_equal(r->n, 1);
    assert_true(r->sib[0].tombstone);
    assert_int_equal(r->sib[0].ts, g_now - 10);
    assert_int_equal(r->sib[0].exp, 0);
    /* ... which the next compaction keeps, until the grace has passed */
    moor_buf_t tomb = MOOR_BUF_INIT;
    assert_int_equal(moor_buf_append(&tomb, out.data, out.len), 0);
    assert_int_equal(run(x, &key, &tomb, &out), MOOR_ENGINE_FILTER_KEEP);
    g_now += 100 * 1000;
    assert_int_equal(run(x, &key, &tomb, &out), MOOR_ENGINE_FILTER_DROP);
    /* in a space with a grace of 1 s, an expired value goes 1 s after
     * its expiry; a delete too */
    write_rec(&rec, "\x01", 1000, g_now - 1000);
    assert_int_equal(run(x, &skey, &rec, &out), MOOR_ENGINE_FILTER_REWRITE);
    write_rec(&rec, "\x01", 1000, g_now - 1001);
    assert_int_equal(run(x, &skey, &rec, &out), MOOR_ENGINE_FILTER_DROP);
    write_rec(&rec, NULL, g_now - 1001, 0);
    assert_int_equal(run(x, &skey, &rec, &out), MOOR_ENGINE_FILTER_DROP);
    write_rec(&rec, NULL, g_now - 1001, 0);
    assert_int_equal(run(x, &key, &rec, &out), MOOR_ENGINE_FILTER_KEEP); /* grace 100 s */
    write_rec(&rec, NULL, 1, 0); /* grace 0: never reaped */
    assert_int_equal(run(x, &kkey, &rec, &out), MOOR_ENGINE_FILTER_KEEP);
    write_rec(&rec, "\x01", 1, 2);
    assert_int_equal(run(x, &kkey, &rec, &out), MOOR_ENGINE_FILTER_REWRITE);
    /* bytes that are no record */
    moor_buf_reset(&rec);
    assert_int_equal(moor_buf_append(&rec, "\x96\xc4\xc3", 3), 0);
    assert_int_equal(run(x, &key, &rec, &out), MOOR_ENGINE_FILTER_KEEP);
    /* in a cluster: an expired value becomes its tombstone all the same
     * (even past the grace), but nothing is dropped: reaping asks every
     * owner first (anti-entropy) */
    moor_expire_set_alone(x, 0);
    write_rec(&rec, "\x01", 1000, g_now - 2000);
    assert_int_equal(run(x, &skey, &rec, &out), MOOR_ENGINE_FILTER_REWRITE);
    assert_int_equal(moor_record_decode(out.data, out.len, r), 0);
    assert_true(moor_record_is_deleted(r));
    assert_int_equal(run(x, &key, &tomb, &out), MOOR_ENGINE_FILTER_KEEP);
    write_rec(&rec, "\x01", 1000, g_now + 10);
    assert_int_equal(run(x, &skey, &rec, &out), MOOR_ENGINE_FILTER_KEEP);
    moor_expire_free(x);
    moor_buf_free(&key), moor_buf_free(&skey), moor_buf_free(&kkey), moor_buf_free(&rec);
    moor_buf_free(&out);
    moor_buf_free(&tomb);
    free(r);
    free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_alone_and_clustered),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
