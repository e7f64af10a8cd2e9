/*
 * test_model.c -- the whole engine (engine.h) checked against an in-memory
 * reference model.
 *
 * The randomized test drives thousands of puts (values of 0 bytes up to
 * ~100 KB), deletes, gets, batches (blocking and async), range scans with
 * seeks, flushes, range compactions and close/reopen cycles, with options
 * small enough that memtables freeze, tables are written and compactions
 * run all the time.  After every operation the engine's answer must equal
 * the model's.  Keys come from a space of NKEYS so overwrites and deletes
 * land on live keys; key bytes include prefixes of one another and NULs so
 * the shorter-first memcmp order is exercised.
 *
 * The model is one slot per key (present flag + malloc'ed value).  For the
 * snapshot check the model can be "forked": while a snapshot is active the
 * first write to a key moves the key's old slot into snap[] instead of
 * freeing it, so the state as of the snapshot is cur[] overlaid by snap[].
 *
 * Seeded by testutil_seed() (MOOR_SEED replays); MOOR_MODEL_OPS scales the
 * number of random operations.  Every failure message names the seed and
 * the operation number.
 *
 * Also here: deterministic checks of the stats counters, tombstone grace
 * with a fake clock (moor_engine_set_clock_TEST), the key/value limits and
 * batch atomicity when one entry is over a limit.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "util/err.h"

#define NKEYS 2000
#define KEY_CAP 16
#define LARGE_VALUE (100 * 1024)
#define DEFAULT_OPS 12000

typedef struct mkey {
    char b[KEY_CAP];
    size_t len;
} mkey_t;

typedef struct mval {
    int present; /* 0 = absent (never written or deleted) */
    char *v;     /* malloc'ed copy (NULL when absent or empty) */
    size_t len;
} mval_t;

/* The whole test state; one per test function, so the tests stay independent. */
typedef struct model {
    uint64_t seed, rng;
    long op; /* current operation number, for failure messages */
    char *dir;
    moor_engine_t *e;
    moor_engine_opts_t opts;
    mkey_t keys[NKEYS];
    int order[NKEYS]; /* key indexes sorted in engine key order */
    mval_t cur[NKEYS];
    int snap_active;
    int snap_has[NKEYS]; /* 1: snap[i] holds the key's state at the snapshot */
    mval_t snap[NKEYS];
} model_t;

#define MCHECK(m, cond, ...)                                                                    \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            char msg_[512];                                                                     \
            snprintf(msg_, sizeof(msg_), __VA_ARGS__);                                          \
            fail_msg("seed %llu op %ld: %s [%s]", (unsigned long long)(m)->seed, (m)->op, msg_, \
                     #cond);                                                                    \
        }                                                                                       \
    } while (0)

/* The engine's key order: memcmp, shorter first on a common prefix. */
static int ucmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = n ? memcmp(a, b, n) : 0;

    if (r)
        return r;
    return alen < blen ? -1 : alen > blen;
}

static model_t *sort_model; /* qsort has no context argument */

static int order_cmp(const void *pa, const void *pb)
{
    const mkey_t *a = &sort_model->keys[*(const int *)pa];
    const mkey_t *b = &sort_model->keys[*(const int *)pb];

    return ucmp(a->b, a->len, b->b, b->len);
}

static uint64_t rnd(model_t *m)
{
    return testutil_rand(&m->rng);
}
static uint64_t rnd_below(model_t *m, uint64_t n)
{
    return rnd(m) % n;
}

/* Key bytes from a number: decimal digits (so "12" is a prefix of "123"),
 * sometimes a trailing NUL or a leading 0xff. */
static size_t make_key_bytes(char *out, uint32_t x)
{
    size_t n = (size_t)snprintf(out + 1, KEY_CAP - 3, "%u", x % 100003u) + 1;

    out[0] = x % 13 == 0 ? '\xff' : 'k';
    if (x % 5 == 0)
        out[n++] = '\0';
    return n;
}

static void model_keys_init(model_t *m)
{
    int i;

    for (i = 0; i < NKEYS; i++) {
        m->keys[i].len = make_key_bytes(m->keys[i].b, (uint32_t)i * 7919u + 1);
        m->order[i] = i;
    }
    sort_model = m;
    qsort(m->order, NKEYS, sizeof(int), order_cmp);
    for (i = 1; i < NKEYS; i++) {
        const mkey_t *a = &m->keys[m->order[i - 1]], *b = &m->keys[m->order[i]];
        assert_true(ucmp(a->b, a->len, b->b, b->len) < 0); /* keys are distinct */
    }
}

/* Position in order[] of the first key >= (k, klen). */
static int lower_bound(const model_t *m, const void *k, size_t klen)
{
    int lo = 0, hi = NKEYS;

    while (lo < hi) {
        int mid = (lo + hi) / 2;
        const mkey_t *mk = &m->keys[m->order[mid]];

        if (ucmp(mk->b, mk->len, k, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- the model ----------------------------------------------------------- */

static void model_set(model_t *m, int i, int present, const void *v, size_t len)
{
    mval_t *c = &m->cur[i];

    if (m->snap_active && !m->snap_has[i]) {
        m->snap[i] = *c; /* keep the snapshot's version alive */
        m->snap_has[i] = 1;
    } else {
        free(c->v);
    }
    c->present = present;
    c->len = present ? len : 0;
    c->v = NULL;
    if (present && len) {
        c->v = malloc(len);
        assert_non_null(c->v);
        memcpy(c->v, v, len);
    }
}

/* The state of key i as seen by the snapshot if `snapshot`, else now. */
static const mval_t *model_get(const model_t *m, int i, int snapshot)
{
    if (snapshot && m->snap_has[i])
        return &m->snap[i];
    return &m->cur[i];
}

static void model_snap_begin(model_t *m)
{
    memset(m->snap_has, 0, sizeof(m->snap_has));
    m->snap_active = 1;
}

static void model_snap_end(model_t *m)
{
    int i;

    for (i = 0; i < NKEYS; i++)
        if (m->snap_has[i])
            free(m->snap[i].v);
    memset(m->snap_has, 0, sizeof(m->snap_has));
    m->snap_active = 0;
}

static void model_free(model_t *m)
{
    int i;

    model_snap_end(m);
    for (i = 0; i < NKEYS; i++)
        free(m->cur[i].v);
}

/* ---- engine helpers ------------------------------------------------------ */

static void small_opts(moor_engine_opts_t *o)
{
    moor_engine_opts_default(o);
    o->memtable_bytes = 64 * 1024;
    o->table_bytes = 32 * 1024;
    o->block_size = 1024;
    o->cache_bytes = 256 * 1024;
    o->l0_compact = 2;
    o->level1_bytes = 128 * 1024;
}

static void engine_open(model_t *m)
{
    int rc = moor_engine_open(m->dir, &m->opts, &m->e);

    MCHECK(m, rc == 0, "open %s: %s (%s)", m->dir, moor_err_name(rc), moor_diag_msg(rc));
    assert_non_null(m->e);
}

static void engine_close(model_t *m)
{
    int rc = moor_engine_close(m->e);

    m->e = NULL;
    MCHECK(m, rc == 0, "close: %s (%s)", moor_err_name(rc), moor_diag_msg(rc));
}

static void model_setup(model_t *m, const char *tag)
{
    memset(m, 0, sizeof(*m));
    m->seed = testutil_seed(tag);
    m->rng = m->seed ^ 0x6a09e667f3bcc909u;
    m->op = -1;
    m->dir = testutil_tmpdir(tag);
    model_keys_init(m);
    small_opts(&m->opts);
    engine_open(m);
}

static void model_teardown(model_t *m)
{
    if (m->e)
        engine_close(m);
    model_free(m);
    testutil_rmrf(m->dir);
    free(m->dir);
}

/* A value of random length (0 sometimes, ~100 KB rarely) and random bytes. */
static char *make_value(model_t *m, size_t *len)
{
    uint64_t r = rnd_below(m, 1000);
    size_t n, i;
    char *v;

    if (r < 3)
        n = LARGE_VALUE - 512 + rnd_below(m, 1024);
    else if (r < 80)
        n = 0;
    else
        n = 1 + rnd_below(m, 400);
    v = malloc(n ? n : 1);
    assert_non_null(v);
    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t x = rnd(m);
        memcpy(v + i, &x, 8);
    }
    for (; i < n; i++)
        v[i] = (char)rnd(m);
    *len = n;
    return v;
}

static void check_get(model_t *m, int i)
{
    const mkey_t *k = &m->keys[i];
    const mval_t *want = &m->cur[i];
    void *v = (void *)0x1;
    size_t len = 12345;
    int rc = moor_engine_get(m->e, k->b, k->len, &v, &len);

    if (!want->present) {
        MCHECK(m, rc == MOOR_ENOTFOUND, "get key #%d: want NOTFOUND, got %s (%s)", i,
               moor_err_name(rc), moor_diag_msg(rc));
        return;
    }
    MCHECK(m, rc == 0, "get key #%d: want value of %zu bytes, got %s (%s)", i, want->len,
           moor_err_name(rc), moor_diag_msg(rc));
    MCHECK(m, v != NULL, "get key #%d: NULL value pointer on success", i);
    MCHECK(m, len == want->len, "get key #%d: length %zu, want %zu", i, len, want->len);
    MCHECK(m, len == 0 || memcmp(v, want->v, len) == 0, "get key #%d: value bytes differ", i);
    moor_engine_free(v);
}

static void check_all_gets(model_t *m)
{
    int i;

    for (i = 0; i < NKEYS; i++)
        check_get(m, i);
}

/* ---- scans --------------------------------------------------------------- */

typedef struct bound {
    int null;
    char b[KEY_CAP];
    size_t len;
} bound_t;

/* NULL a quarter of the time, else an existing key or an arbitrary one. */
static void random_bound(model_t *m, bound_t *bd, int allow_null)
{
    bd->null = allow_null && rnd_below(m, 4) == 0;
    if (bd->null) {
        bd->len = 0;
    } else if (rnd_below(m, 2)) {
        const mkey_t *k = &m->keys[rnd_below(m, NKEYS)];
        memcpy(bd->b, k->b, k->len);
        bd->len = k->len;
    } else {
        bd->len = make_key_bytes(bd->b, (uint32_t)rnd(m));
    }
}

/* Compares it, positioned at the model's order[] position pos, against the
 * model for up to `limit` entries (all if limit < 0) below hi.  snapshot
 * selects the model state as of model_snap_begin(). */
static void check_iter_from(model_t *m, moor_engine_iter_t *it, int pos, const bound_t *hi,
                            long limit, int snapshot)
{
    long seen = 0;

    for (; pos < NKEYS; pos++) {
        int i = m->order[pos];
        const mkey_t *k = &m->keys[i];
        const mval_t *want = model_get(m, i, snapshot);
        const void *ik, *iv;
        size_t iklen, ivlen;

        if (!hi->null && ucmp(k->b, k->len, hi->b, hi->len) >= 0)
            break;
        if (!want->present)
            continue;
        if (limit >= 0 && seen >= limit)
            return;
        MCHECK(m, moor_engine_iter_valid(it), "scan: iterator ended (status %s) before key #%d",
               moor_err_name(moor_engine_iter_status(it)), i);
        ik = moor_engine_iter_key(it, &iklen);
        MCHECK(m, ucmp(ik, iklen, k->b, k->len) == 0,
               "scan: key of %zu bytes where key #%d (%zu bytes) was due", iklen, i, k->len);
        iv = moor_engine_iter_value(it, &ivlen);
        MCHECK(m, ivlen == want->len, "scan: key #%d value length %zu, want %zu", i, ivlen,
               want->len);
        MCHECK(m, ivlen == 0 || memcmp(iv, want->v, ivlen) == 0, "scan: key #%d value differs", i);
        moor_engine_iter_next(it);
        seen++;
    }
    MCHECK(m, !moor_engine_iter_valid(it), "scan: iterator has extra entries past the model's");
    MCHECK(m, moor_engine_iter_status(it) == 0, "scan: status %s",
           moor_err_name(moor_engine_iter_status(it)));
}

/* Start position for a seek to `target` (NULL = seek_first) within [lo, hi). */
static int seek_pos(const model_t *m, const bound_t *lo, const bound_t *target)
{
    int pos = lo->null ? 0 : lower_bound(m, lo->b, lo->len);

    if (target) {
        int t = lower_bound(m, target->b, target->len);
        if (t > pos)
            pos = t;
    }
    return pos;
}

static void op_scan(model_t *m)
{
    bound_t lo, hi, target;
    moor_engine_iter_t *it;
    int seeks = 1 + (int)rnd_below(m, 3), s;

    random_bound(m, &lo, 1);
    random_bound(m, &hi, 1);
    if (!lo.null && !hi.null && ucmp(lo.b, lo.len, hi.b, hi.len) > 0 && rnd_below(m, 4)) {
        bound_t t = lo;
        lo = hi;
        hi = t;
    }
    it = moor_engine_iter_new(m->e, lo.null ? NULL : lo.b, lo.len, hi.null ? NULL : hi.b, hi.len);
    MCHECK(m, it != NULL, "iter_new returned NULL");
    for (s = 0; s < seeks; s++) {
        long limit = rnd_below(m, 3) ? (long)rnd_below(m, 200) : -1;

        if (rnd_below(m, 3) == 0) {
            moor_engine_iter_seek_first(it);
            check_iter_from(m, it, seek_pos(m, &lo, NULL), &hi, limit, 0);
        } else {
            random_bound(m, &target, 0);
            moor_engine_iter_seek(it, target.b, target.len);
            check_iter_from(m, it, seek_pos(m, &lo, &target), &hi, limit, 0);
        }
    }
    moor_engine_iter_free(it);
}

static void check_full_scan(model_t *m, int snapshot, moor_engine_iter_t *it)
{
    bound_t none = {.null = 1};

    moor_engine_iter_seek_first(it);
    check_iter_from(m, it, 0, &none, -1, snapshot);
}

static void check_everything(model_t *m)
{
    moor_engine_iter_t *it = moor_engine_iter_new(m->e, NULL, 0, NULL, 0);

    MCHECK(m, it != NULL, "iter_new returned NULL");
    check_full_scan(m, 0, it);
    moor_engine_iter_free(it);
    check_all_gets(m);
}

/* ---- writes -------------------------------------------------------------- */

static void op_put(model_t *m)
{
    int i = (int)rnd_below(m, NKEYS);
    size_t len;
    char *v = make_value(m, &len);
    int rc = moor_engine_put(m->e, m->keys[i].b, m->keys[i].len, v, len);

    MCHECK(m, rc == 0, "put key #%d (%zu bytes): %s (%s)", i, len, moor_err_name(rc),
           moor_diag_msg(rc));
    model_set(m, i, 1, v, len);
    free(v);
}

static void op_delete(model_t *m)
{
    int i = (int)rnd_below(m, NKEYS);
    int rc = moor_engine_delete(m->e, m->keys[i].b, m->keys[i].len);

    MCHECK(m, rc == 0, "delete key #%d: %s (%s)", i, moor_err_name(rc), moor_diag_msg(rc));
    model_set(m, i, 0, NULL, 0);
}

typedef struct async_done {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
} async_done_t;

static void on_async_done(void *ud, int status)
{
    async_done_t *d = ud;

    pthread_mutex_lock(&d->mu);
    d->done++;
    d->status = status;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Writes b asynchronously, checks the touched keys are visible before the
 * completion runs (the contract: applied on return), then waits for it. */
static void write_async_and_wait(model_t *m, moor_batch_t *b, const int *touched, int ntouched)
{
    async_done_t d = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    int rc = moor_engine_write_async(m->e, b, on_async_done, &d), j;

    MCHECK(m, rc == 0, "write_async: %s (%s)", moor_err_name(rc), moor_diag_msg(rc));
    for (j = 0; j < ntouched; j++)
        check_get(m, touched[j]);
    pthread_mutex_lock(&d.mu);
    while (!d.done)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    MCHECK(m, d.done == 1, "write_async: completion ran %d times", d.done);
    MCHECK(m, d.status == 0, "write_async completion: %s", moor_err_name(d.status));
}

/* A batch of 1..8 puts and deletes, keys may repeat (the later one wins). */
static void op_batch(model_t *m, moor_batch_t *b)
{
    int n = 1 + (int)rnd_below(m, 8), j, rc, touched[8];
    int async = rnd_below(m, 3) == 0;

    moor_batch_clear(b);
    MCHECK(m, moor_batch_count(b) == 0, "batch count after clear %u", moor_batch_count(b));
    for (j = 0; j < n; j++) {
        int i = (int)rnd_below(m, NKEYS);

        touched[j] = i;
        if (rnd_below(m, 4) == 0) {
            assert_int_equal(moor_batch_delete(b, m->keys[i].b, m->keys[i].len), 0);
            model_set(m, i, 0, NULL, 0);
        } else {
            size_t len;
            char *v = make_value(m, &len);

            assert_int_equal(moor_batch_put(b, m->keys[i].b, m->keys[i].len, v, len), 0);
            model_set(m, i, 1, v, len);
            free(v);
        }
    }
    MCHECK(m, moor_batch_count(b) == (uint32_t)n, "batch count %u, want %d", moor_batch_count(b),
           n);
    if (async) {
        write_async_and_wait(m, b, touched, n);
    } else {
        rc = moor_engine_write(m->e, b);
        MCHECK(m, rc == 0, "write batch of %d: %s (%s)", n, moor_err_name(rc), moor_diag_msg(rc));
    }
}

static void op_flush(model_t *m)
{
    int rc = moor_engine_flush(m->e);

    MCHECK(m, rc == 0, "flush: %s (%s)", moor_err_name(rc), moor_diag_msg(rc));
}

static void op_compact(model_t *m)
{
    bound_t lo, hi;
    int rc;

    random_bound(m, &lo, 1);
    random_bound(m, &hi, 1);
    if (rnd_below(m, 3) == 0)
        lo.null = hi.null = 1;
    rc = moor_engine_compact_range(m->e, lo.null ? NULL : lo.b, lo.len, hi.null ? NULL : hi.b,
                                   hi.len);
    MCHECK(m, rc == 0, "compact_range: %s (%s)", moor_err_name(rc), moor_diag_msg(rc));
}

static void op_reopen(model_t *m)
{
    engine_close(m);
    m->opts.sync_mode = rnd_below(m, 2) ? MOOR_SYNC_INTERVAL : MOOR_SYNC_NONE;
    engine_open(m);
    check_everything(m);
}

/* An iterator made before a burst of writes, a flush and a compaction must
 * still show exactly the state at its creation. */
static void op_snapshot(model_t *m, moor_batch_t *b)
{
    moor_engine_iter_t *it = moor_engine_iter_new(m->e, NULL, 0, NULL, 0);
    int n = 5 + (int)rnd_below(m, 60), j;

    MCHECK(m, it != NULL, "iter_new returned NULL");
    model_snap_begin(m);
    for (j = 0; j < n; j++) {
        uint64_t r = rnd_below(m, 10);

        if (r < 6)
            op_put(m);
        else if (r < 8)
            op_delete(m);
        else
            op_batch(m, b);
    }
    if (rnd_below(m, 2))
        op_flush(m);
    if (rnd_below(m, 3) == 0)
        op_compact(m);
    check_full_scan(m, 1, it);
    moor_engine_iter_free(it);
    model_snap_end(m);
}

static long model_ops(void)
{
    const char *s = getenv("MOOR_MODEL_OPS");
    long n = s && *s ? strtol(s, NULL, 0) : DEFAULT_OPS;

    return n > 0 ? n : DEFAULT_OPS;
}

static void test_model_random(void **state)
{
    model_t *m = calloc(1, sizeof(*m));
    moor_batch_t *b = moor_batch_new();
    long nops = model_ops();

    (void)state;
    assert_non_null(m);
    assert_non_null(b);
    model_setup(m, "model");
    for (m->op = 0; m->op < nops; m->op++) {
        uint64_t r = rnd_below(m, 10000);

        if (r < 3800)
            op_put(m);
        else if (r < 5000)
            op_delete(m);
        else if (r < 7400)
            check_get(m, (int)rnd_below(m, NKEYS));
        else if (r < 8400)
            op_batch(m, b);
        else if (r < 9700)
            op_scan(m);
        else if (r < 9790)
            op_snapshot(m, b);
        else if (r < 9870)
            op_flush(m);
        else if (r < 9940)
            op_compact(m);
        else if (r < 9960)
            op_reopen(m);
        else
            check_everything(m);
    }
    check_everything(m);
    op_reopen(m);
    moor_batch_free(b);
    model_teardown(m);
    free(m);
}

/* ---- stats --------------------------------------------------------------- */

static uint64_t total_tables(const moor_engine_stats_t *st)
{
    uint64_t n = 0;
    int l;

    for (l = 0; l < 7; l++)
        n += st->tables[l];
    return n;
}

static uint64_t total_level_bytes(const moor_engine_stats_t *st)
{
    uint64_t n = 0;
    int l;

    for (l = 0; l < 7; l++)
        n += st->level_bytes[l];
    return n;
}

static void put_n(model_t *m, int first, int n, size_t vlen)
{
    int i;

    for (i = first; i < first + n; i++) {
        size_t len = vlen;
        char *v = malloc(vlen);
        size_t j;
        int rc;

        assert_non_null(v);
        for (j = 0; j < vlen; j++)
            v[j] = (char)rnd(m);
        rc = moor_engine_put(m->e, m->keys[i].b, m->keys[i].len, v, len);
        MCHECK(m, rc == 0, "put key #%d: %s", i, moor_err_name(rc));
        model_set(m, i, 1, v, len);
        free(v);
    }
}

static void test_stats(void **state)
{
    model_t *m = calloc(1, sizeof(*m));
    moor_engine_stats_t st;
    uint64_t user = 0;
    int i, rc;

    (void)state;
    assert_non_null(m);
    model_setup(m, "model-stats");
    moor_engine_stats(m->e, &st);
    assert_int_equal(total_tables(&st), 0);
    assert_int_equal(st.user_bytes_written, 0);

    put_n(m, 0, NKEYS, 100);
    for (i = 0; i < NKEYS; i++)
        user += m->keys[i].len + 100;
    moor_engine_stats(m->e, &st);
    assert_true(st.user_bytes_written >= user);
    assert_true(st.user_bytes_written <= user + NKEYS * 16); /* keys + values, not more */
    assert_true(st.wal_bytes_written >= user);
    assert_true(st.last_seq >= NKEYS);
    assert_true(st.cache_capacity > 0);
    assert_true(st.cache_capacity <= 2 * m->opts.cache_bytes);

    rc = moor_engine_flush(m->e);
    assert_int_equal(rc, 0);
    moor_engine_stats(m->e, &st);
    assert_true(total_tables(&st) > 0);
    assert_true(total_level_bytes(&st) > 0);
    assert_true(st.flushes > 0);
    /* ~230 KB through a 64 KiB memtable: a handful of flushes, not one per write. */
    MCHECK(m, st.flushes <= 20, "%llu flushes for %d puts of ~110 bytes with memtable_bytes %zu",
           (unsigned long long)st.flushes, NKEYS, m->opts.memtable_bytes);
    assert_true(st.flush_bytes_written > 0);
    assert_true(st.disk_bytes >= total_level_bytes(&st));
    assert_true(st.write_amp >= 1.0);
    assert_int_equal(st.frozen_memtables, 0);

    check_all_gets(m);
    moor_engine_stats(m->e, &st);
    assert_true(st.cache_hits + st.cache_misses > 0);
    assert_true(st.cache_bytes <= st.cache_capacity);
    assert_true(st.index_filter_bytes > 0);

    rc = moor_engine_compact_range(m->e, NULL, 0, NULL, 0);
    assert_int_equal(rc, 0);
    moor_engine_stats(m->e, &st);
    assert_true(st.compactions > 0);
    assert_true(st.compact_bytes_written > 0);
    assert_true(st.compact_bytes_read > 0);
    assert_int_equal(st.tables[0], 0);
    assert_true(total_tables(&st) > 0);
    check_everything(m);

    model_teardown(m);
    free(m);
}

/* ---- tombstone grace ------------------------------------------------------ */

static uint64_t fake_now_ms;
static uint64_t fake_clock(void)
{
    return fake_now_ms;
}

static void delete_range(model_t *m, int first, int n)
{
    int i, rc;

    for (i = first; i < first + n; i++) {
        rc = moor_engine_delete(m->e, m->keys[i].b, m->keys[i].len);
        MCHECK(m, rc == 0, "delete key #%d: %s", i, moor_err_name(rc));
        model_set(m, i, 0, NULL, 0);
    }
}

static void compact_all(model_t *m)
{
    int rc = moor_engine_compact_range(m->e, NULL, 0, NULL, 0);

    MCHECK(m, rc == 0, "compact_range: %s (%s)", moor_err_name(rc), moor_diag_msg(rc));
}

/* Tombstones younger than tombstone_grace_ms survive a full compaction
 * (tables remain although every key is deleted); once the clock is past
 * the grace period a full compaction drops them and nothing is left. */
static void test_tombstone_grace(void **state)
{
    model_t *m = calloc(1, sizeof(*m));
    moor_engine_stats_t st;
    uint64_t live_bytes, tomb_bytes;
    const int n = 600;

    (void)state;
    assert_non_null(m);
    memset(m, 0, sizeof(*m));
    m->seed = testutil_seed("model-grace");
    m->rng = m->seed | 1;
    m->op = -1;
    m->dir = testutil_tmpdir("model-grace");
    model_keys_init(m);
    small_opts(&m->opts);
    m->opts.tombstone_grace_ms = 60 * 1000;
    engine_open(m);
    fake_now_ms = UINT64_C(1700000000000);
    moor_engine_set_clock_TEST(m->e, fake_clock);

    put_n(m, 0, n, 300);
    compact_all(m);
    moor_engine_stats(m->e, &st);
    live_bytes = total_level_bytes(&st);
    assert_true(total_tables(&st) > 0);

    fake_now_ms += 1000;
    delete_range(m, 0, n);
    compact_all(m);
    check_everything(m);
    moor_engine_stats(m->e, &st);
    tomb_bytes = total_level_bytes(&st);
    assert_true(total_tables(&st) > 0);   /* the tombstones are kept ... */
    assert_true(tomb_bytes < live_bytes); /* ... but the 300-byte values are gone */

    fake_now_ms += 59 * 1000; /* 59 s after the deletes: still within grace */
    compact_all(m);
    moor_engine_stats(m->e, &st);
    assert_true(total_tables(&st) > 0);
    check_everything(m);

    fake_now_ms += 2 * 1000;
    compact_all(m);
    moor_engine_stats(m->e, &st);
    assert_int_equal(total_tables(&st), 0);
    assert_int_equal(total_level_bytes(&st), 0);
    check_everything(m);

    /* Survives a reopen: the dropped keys stay deleted. */
    engine_close(m);
    engine_open(m);
    moor_engine_set_clock_TEST(m->e, NULL);
    check_everything(m);
    model_teardown(m);
    free(m);
}

/* ---- limits ------------------------------------------------------------- */

static void test_limits(void **state)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    moor_batch_t *b = moor_batch_new();
    char *dir = testutil_tmpdir("model-limits");
    char big[256], *v = NULL;
    size_t vlen = 0;

    (void)state;
    assert_non_null(b);
    memset(big, 'x', sizeof(big));
    moor_engine_opts_default(&o);
    o.key_max = 16;
    o.value_max = 100;
    assert_int_equal(moor_engine_open(dir, &o, &e), 0);

    assert_int_equal(moor_engine_put(e, big, 17, "v", 1), MOOR_EKEYTOOBIG);
    assert_int_equal(moor_engine_put(e, big, 16, "v", 1), 0);
    assert_int_equal(moor_engine_put(e, "k", 1, big, 101), MOOR_EVALTOOBIG);
    assert_int_equal(moor_engine_put(e, "k", 1, big, 100), 0);
    assert_int_equal(moor_engine_put(e, "", 0, "v", 1), MOOR_EINVAL);
    assert_int_equal(moor_engine_delete(e, "", 0), MOOR_EINVAL);
    assert_int_equal(moor_engine_delete(e, big, 17), MOOR_EKEYTOOBIG);
    assert_int_equal(moor_engine_delete(e, big, 16), 0);

    /* A batch with one bad entry is rejected whole. */
    assert_int_equal(moor_batch_put(b, "good", 4, "v", 1), 0);
    assert_int_equal(moor_batch_put(b, "bad", 3, big, 101), 0);
    assert_int_equal(moor_engine_write(e, b), MOOR_EVALTOOBIG);
    assert_int_equal(moor_engine_get(e, "good", 4, (void **)&v, &vlen), MOOR_ENOTFOUND);
    moor_batch_clear(b);
    assert_int_equal(moor_batch_put(b, "good", 4, "v", 1), 0);
    assert_int_equal(moor_batch_delete(b, big, 17), 0);
    assert_int_equal(moor_engine_write(e, b), MOOR_EKEYTOOBIG);
    assert_int_equal(moor_engine_get(e, "good", 4, (void **)&v, &vlen), MOOR_ENOTFOUND);
    moor_batch_clear(b);
    assert_int_equal(moor_batch_put(b, "", 0, "v", 1), 0);
    assert_int_equal(moor_engine_write(e, b), MOOR_EINVAL);

    /* An empty batch is a no-op. */
    moor_batch_clear(b);
    assert_int_equal(moor_engine_write(e, b), 0);

    assert_int_equal(moor_engine_get(e, "k", 1, (void **)&v, &vlen), 0);
    assert_int_equal(vlen, 100);
    assert_memory_equal(v, big, 100);
    moor_engine_free(v);
    assert_int_equal(moor_engine_get(e, big, 16, (void **)&v, &vlen), MOOR_ENOTFOUND);

    assert_int_equal(moor_engine_close(e), 0);
    moor_batch_free(b);
    testutil_rmrf(dir);
    free(dir);
}

static void check_str_value(moor_engine_t *e, const char *k, const char *want)
{
    void *v = NULL;
    size_t vlen = 0;
    int rc = moor_engine_get(e, k, strlen(k), &v, &vlen);

    if (rc != 0)
        fail_msg("get %s: %s, want \"%s\"", k, moor_err_name(rc), want);
    if (vlen != strlen(want) || memcmp(v, want, vlen) != 0)
        fail_msg("get %s: \"%.*s\", want \"%s\"", k, (int)vlen, (char *)v, want);
    moor_engine_free(v);
}

/* A compaction of a key range that picks a newer L0 table must not leave an
 * older L0 table holding the same user key behind (L0 is read before L1,
 * so the old value would win).  Found by test_model_random. */
static void test_compact_range_l0_overlap(void **state)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    char *dir = testutil_tmpdir("model-l0");

    (void)state;
    moor_engine_opts_default(&o);
    o.l0_compact = 8; /* no automatic compaction */
    assert_int_equal(moor_engine_open(dir, &o, &e), 0);
    assert_int_equal(moor_engine_put(e, "a", 1, "old", 3), 0);
    assert_int_equal(moor_engine_flush(e), 0); /* L0 table 1: a */
    assert_int_equal(moor_engine_put(e, "a", 1, "new", 3), 0);
    assert_int_equal(moor_engine_put(e, "m", 1, "m1", 2), 0);
    assert_int_equal(moor_engine_flush(e), 0); /* L0 table 2: a..m */
    /* Only table 2 overlaps [m, m]. */
    assert_int_equal(moor_engine_compact_range(e, "m", 1, "m", 1), 0);
    check_str_value(e, "a", "new");
    check_str_value(e, "m", "m1");
    assert_int_equal(moor_engine_close(e), 0);
    e = NULL;
    assert_int_equal(moor_engine_open(dir, &o, &e), 0);
    check_str_value(e, "a", "new");
    assert_int_equal(moor_engine_close(e), 0);
    testutil_rmrf(dir);
    free(dir);
}

/* Opening with create_if_missing = 0 on a fresh path fails cleanly. */
static void test_open_missing(void **state)
{
    moor_engine_opts_t o;
    moor_engine_t *e = (moor_engine_t *)0x1;
    char *dir = testutil_tmpdir("model-missing");
    char path[4200];
    int rc;

    (void)state;
    snprintf(path, sizeof(path), "%s/nope", dir);
    moor_engine_opts_default(&o);
    o.create_if_missing = 0;
    rc = moor_engine_open(path, &o, &e);
    assert_true(rc < 0);
    assert_null(e);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_open_missing),
        cmocka_unit_test(test_compact_range_l0_overlap),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_tombstone_grace),
        cmocka_unit_test(test_model_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
