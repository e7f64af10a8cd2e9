/*
 * test_filter.c -- the engine's compaction filter (engine.h
 * moor_engine_filter_fn, applied in compact.c).
 *
 * A filter decides by a value's first byte: 'k' keep, 'r' rewrite (to
 * 'R' and the rest), 'd' drop.  After a compaction every kept entry reads
 * as it was, every rewritten one reads rewritten, every dropped one is
 * gone; the filter saw each key's newest value exactly once per compaction
 * (never a deletion, never a shadowed older version), and never during a
 * flush; the stats count its rewrites and drops.  A dropped key whose
 * older version sits in a deeper level stays gone (the drop becomes a
 * deletion mark), also after a reopen.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/engine.h"
#include "util/err.h"

#define NKEYS 600

typedef struct seen {
    int calls;
    int per_key[3 * NKEYS]; /* calls per key index */
    int bad;                /* calls with a value the filter must never see */
    char scratch[64];
} seen_t;

static int key_index(const char *k, size_t klen)
{
    char buf[32];
    int kind = k[0] == 'k' ? 0 : k[0] == 'r' ? 1 : 2;

    if (klen < 2 || klen >= sizeof(buf))
        return -1;
    memcpy(buf, k + 1, klen - 1);
    buf[klen - 1] = 0;
    return kind * NKEYS + atoi(buf);
}

static int filter(void *ud, const void *key, size_t klen, const void *val, size_t vlen,
                  const void **nval, size_t *nvlen)
{
    seen_t *s = ud;
    const char *v = val;
    int i = key_index(key, klen);

    s->calls++;
    if (i >= 0 && i < 3 * NKEYS)
        s->per_key[i]++;
    if (vlen == 0 || v[0] == 'o' || v[0] == 'R') /* shadowed, or already rewritten */
        s->bad++;
    if (vlen && v[0] == 'r') {
        size_t n = vlen < sizeof(s->scratch) ? vlen : sizeof(s->scratch);
        memcpy(s->scratch, v, n);
        s->scratch[0] = 'R';
        *nval = s->scratch;
        *nvlen = n;
        return MOOR_ENGINE_FILTER_REWRITE;
    }
    return vlen && v[0] == 'd' ? MOOR_ENGINE_FILTER_DROP : MOOR_ENGINE_FILTER_KEEP;
}

static moor_engine_t *open_db(const char *dir, seen_t *s)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    int rc;

    moor_engine_opts_default(&o);
    o.sync_mode = MOOR_SYNC_NONE;
    o.compression_level = 0;
    o.memtable_bytes = 1u << 20;
    o.filter = filter;
    o.filter_ud = s;
    if ((rc = moor_engine_open(dir, &o, &e)))
        fail_msg("open %s: %s", dir, moor_diag_msg(rc));
    return e;
}

static void put(moor_engine_t *e, char kind, int i, char first)
{
    char k[16], v[32];
    int kl = snprintf(k, sizeof(k), "%c%d", kind, i),
        vl = snprintf(v, sizeof(v), "%c-%d", first, i);

    assert_int_equal(moor_engine_put(e, k, (size_t)kl, v, (size_t)vl), 0);
}

/* The value of kind/i: 0 and v (NUL-terminated) or MOOR_ENOTFOUND. */
static int get(moor_engine_t *e, char kind, int i, char *v, size_t vsz)
{
    char k[16];
    int kl = snprintf(k, sizeof(k), "%c%d", kind, i), rc;
    void *val = NULL;
    size_t vlen = 0;

    rc = moor_engine_get(e, k, (size_t)kl, &val, &vlen);
    if (rc == 0) {
        assert_true(vlen < vsz);
        memcpy(v, val, vlen);
        v[vlen] = 0;
        moor_engine_free(val);
    }
    return rc;
}

static void test_filter_verdicts(void **state)
{
    char *dir = testutil_tmpdir("filter"), v[64], want[64];
    seen_t *s = calloc(1, sizeof(*s));
    moor_engine_stats_t st;
    moor_engine_t *e;

    (void)state;
    e = open_db(dir, s);
    /* an older version of every key first: the compaction drops it as
     * shadowed, and the filter must never see it */
    for (int i = 0; i < NKEYS; i++) {
        put(e, 'k', i, 'o');
        put(e, 'r', i, 'o');
        put(e, 'd', i, 'o');
    }
    assert_int_equal(moor_engine_flush(e), 0);
    for (int i = 0; i < NKEYS; i++) {
        put(e, 'k', i, 'k');
        put(e, 'r', i, 'r');
        put(e, 'd', i, 'd');
    }
    assert_int_equal(moor_engine_delete(e, "k0", 2), 0); /* a deletion is never shown */
    assert_int_equal(moor_engine_flush(e), 0);
    assert_int_equal(s->calls, 0); /* flushes never call it */
    assert_int_equal(moor_engine_compact_range(e, NULL, 0, NULL, 0), 0);
    assert_int_equal(s->bad, 0);
    for (int i = 0; i < 3 * NKEYS; i++)
        if (s->per_key[i] != (i == 0 ? 0 : 1)) /* k0 is deleted */
            fail_msg("key %d seen %d times", i, s->per_key[i]);
    assert_int_equal(s->calls, 3 * NKEYS - 1);
    for (int i = 0; i < NKEYS; i++) {
        if (i > 0) {
            assert_int_equal(get(e, 'k', i, v, sizeof(v)), 0);
            snprintf(want, sizeof(want), "k-%d", i);
            assert_string_equal(v, want);
        }
        assert_int_equal(get(e, 'r', i, v, sizeof(v)), 0);
        snprintf(want, sizeof(want), "R-%d", i);
        assert_string_equal(v, want);
        assert_int_equal(get(e, 'd', i, v, sizeof(v)), MOOR_ENOTFOUND);
    }
    assert_int_equal(get(e, 'k', 0, v, sizeof(v)), MOOR_ENOTFOUND);
    moor_engine_stats(e, &st);
    assert_int_equal(st.filter_rewrites, NKEYS);
    assert_int_equal(st.filter_drops, NKEYS);
    /* a second compaction shows each survivor once more; rewritten
     * values ('R') are kept as they are now */
    memset(s, 0, sizeof(*s));
    put(e, 'k', 1, 'k'); /* something new, so there is work */
    assert_int_equal(moor_engine_compact_range(e, NULL, 0, NULL, 0), 0);
    for (int i = 0; i < 3 * NKEYS; i++)
        assert_true(s->per_key[i] <= 1);
    assert_int_equal(moor_engine_close(e), 0);
    free(s);
    testutil_rmrf(dir);
    free(dir);
}

/* A drop over an older version in a deeper level: the key stays gone,
 * also after a reopen (a deletion mark shadows the old version until it
 * is compacted away). */
static void test_filter_drop_shadows_deeper(void **state)
{
    char *dir = testutil_tmpdir("filterdeep"), v[64];
    seen_t *s = calloc(1, sizeof(*s));
    moor_engine_t *e;

    (void)state;
    e = open_db(dir, s);
    for (int i = 0; i < NKEYS; i++)
        put(e, 'd', i, 'k'); /* kept: 'k' */
    assert_int_equal(moor_engine_compact_range(e, NULL, 0, NULL, 0), 0);
    for (int i = 0; i < NKEYS; i += 2)
        put(e, 'd', i, 'd');
    assert_int_equal(moor_engine_compact_range(e, NULL, 0, NULL, 0), 0);
    assert_int_equal(moor_engine_close(e), 0);
    e = open_db(dir, s);
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(get(e, 'd', i, v, sizeof(v)), i % 2 ? 0 : MOOR_ENOTFOUND);
    assert_int_equal(moor_engine_compact_range(e, NULL, 0, NULL, 0), 0);
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(get(e, 'd', i, v, sizeof(v)), i % 2 ? 0 : MOOR_ENOTFOUND);
    assert_int_equal(moor_engine_close(e), 0);
    free(s);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_verdicts),
        cmocka_unit_test(test_filter_drop_shadows_deeper),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
