/*
 * test_wal.c -- the commit log: round trips across rotation, every sync
 * mode, concurrent appenders (group commit), torn tails, bit flips, bad
 * headers, failure and close semantics.
 *
 * Payloads are a pure function of (seq, len), so replay checks every byte
 * without keeping copies.  Completion callbacks run on the writer thread,
 * where cmocka asserts must not fire: they only count into atomics that the
 * test thread checks afterwards.
 *
 * TEST: MOOR_WAL_WRITE_CORPUS=DIR makes test_write_fuzz_corpus write the
 * seed corpus of tests/fuzz/fuzz_wal.c into DIR (skipped otherwise).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "testutil.h"

#include "engine/batch.h"
#include "engine/wal.h"
#include "engine/wal_format.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"

/* ---------- helpers ----------------------------------------------------- */

static uint64_t g_seed;

static void fill_payload(char *p, uint64_t seq, size_t len)
{
    uint64_t x = seq * 0x9e3779b97f4a7c15u + len;

    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0)
            x = x * 6364136223846793005u + 1442695040888963407u;
        p[i] = (char)(x >> (8 * (i % 8)));
    }
}

static int payload_ok(const char *p, uint64_t seq, size_t len)
{
    char *want = malloc(len ? len : 1);
    int ok;

    fill_payload(want, seq, len);
    ok = memcmp(want, p, len) == 0;
    free(want);
    return ok;
}

/* What a test wrote, in order. */
typedef struct expect {
    uint64_t *seq;
    uint32_t *len;
    size_t n, cap;
} expect_t;

static void expect_add(expect_t *e, uint64_t seq, uint32_t len)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 256;
        e->seq = realloc(e->seq, e->cap * sizeof(*e->seq));
        e->len = realloc(e->len, e->cap * sizeof(*e->len));
        assert_non_null(e->seq);
        assert_non_null(e->len);
    }
    e->seq[e->n] = seq;
    e->len[e->n] = len;
    e->n++;
}

static void expect_free(expect_t *e)
{
    free(e->seq);
    free(e->len);
    memset(e, 0, sizeof(*e));
}

/* Replay checker: record i must be expect[first + i]. */
typedef struct check {
    const expect_t *e;
    size_t first; /* index in e of the first record of this segment */
    size_t seen;  /* records handed to the callback */
    size_t bad;   /* records that did not match */
    int stop_at;  /* return 7 from the callback for record stop_at (1-based) */
} check_t;

static int check_cb(void *ud, uint64_t seq, const char *payload, size_t len)
{
    check_t *c = ud;
    size_t i = c->first + c->seen++;

    if (i >= c->e->n || c->e->seq[i] != seq || c->e->len[i] != len ||
        !payload_ok(payload, seq, len))
        c->bad++;
    return c->stop_at && (int)c->seen == c->stop_at ? 7 : 0;
}

/* Per-record completion state, written by the writer thread. */
typedef struct done_state {
    atomic_int calls;
    atomic_int status;
} done_state_t;

static void done_cb(void *ud, int status)
{
    done_state_t *d = ud;

    atomic_store(&d->status, status);
    atomic_fetch_add(&d->calls, 1);
}

static size_t rand_len(uint64_t *rs)
{
    uint64_t r = testutil_rand(rs);

    switch (r % 16) {
    case 0: return 0;
    case 1: return (size_t)(r >> 8) % 70000; /* bigger than a page or two */
    default: return (size_t)(r >> 8) % 600;
    }
}

static int append_rec(moor_wal_t *w, expect_t *e, uint64_t seq, size_t len, done_state_t *d)
{
    char *p = malloc(len ? len : 1);
    int rc;

    assert_non_null(p);
    fill_payload(p, seq, len);
    rc = moor_wal_append(w, seq, p, len, d ? done_cb : NULL, d);
    free(p);
    if (rc == 0 && e)
        expect_add(e, seq, (uint32_t)len);
    return rc;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;

    assert_int_equal(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;

    assert_non_null(f);
    *len = (size_t)file_size(path);
    buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint64_t seg_size(const expect_t *e, size_t from, size_t to)
{
    uint64_t n = MOOR_WAL_SEGMENT_HEADER;

    for (size_t i = from; i < to; i++)
        n += MOOR_WAL_HEADER + e->len[i];
    return n;
}

/* Replays path and checks it holds exactly e[from, to) and nothing else. */
static void replay_exact(const char *path, const expect_t *e, size_t from, size_t to)
{
    check_t c = {e, from, 0, 0, 0};
    moor_wal_replay_stats_t st;

    assert_int_equal(moor_wal_replay(path, 0, check_cb, &c, &st), 0);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.seen, to - from);
    assert_int_equal(st.records, to - from);
    assert_int_equal(st.dropped_bytes, 0);
    assert_int_equal(st.valid_bytes, seg_size(e, from, to));
    assert_int_equal(st.valid_bytes, file_size(path));
    assert_int_equal(st.last_seq, to > from ? e->seq[to - 1] : 0);
}

/* A gate the writer thread can be held at from inside a callback. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    atomic_int calls;
} gate_t;

static void gate_cb(void *ud, int status)
{
    gate_t *g = ud;

    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    atomic_fetch_add(&g->calls, 1);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---------- round trip and modes ---------------------------------------- */

static void test_roundtrip_rotate(void **state)
{
    char *dir = testutil_tmpdir("wal-rt");
    char p1[4200], p2[4200];
    moor_wal_opts_t o = {MOOR_SYNC_INTERVAL, 2};
    uint64_t rs = g_seed ^ 1;
    expect_t e = {0};
    moor_wal_t *w;
    size_t half;

    assert_int_equal(moor_wal_open(dir, 1, &o, &w), 0);
    for (uint64_t i = 0; i < 800; i++)
        assert_int_equal(append_rec(w, &e, 100 + i * 3, rand_len(&rs), NULL), 0);
    half = e.n;
    assert_int_equal(moor_wal_rotate(w, 1), MOOR_EINVAL);
    assert_int_equal(moor_wal_rotate(w, 2), 0);
    assert_int_equal(moor_wal_rotate(w, 2), MOOR_EINVAL);
    for (uint64_t i = 0; i < 800; i++)
        assert_int_equal(append_rec(w, &e, 100000 + i, rand_len(&rs), NULL), 0);
    assert_int_equal(moor_wal_sync(w), 0);
    assert_int_equal(moor_wal_bytes(w), seg_size(&e, half, e.n));
    assert_int_equal(moor_wal_close(w), 0);

    moor_wal_segment_path(p1, sizeof(p1), dir, 1);
    moor_wal_segment_path(p2, sizeof(p2), dir, 2);
    replay_exact(p1, &e, 0, half);
    replay_exact(p2, &e, half, e.n);
    expect_free(&e);
    testutil_rmrf(dir);
    free(dir);
}

static void run_mode(int mode)
{
    char *dir = testutil_tmpdir("wal-mode");
    moor_wal_opts_t o = {mode, 1};
    enum { N = 300 };
    done_state_t *d = calloc(N, sizeof(*d));
    uint64_t rs = g_seed ^ (uint64_t)(mode + 7);
    char path[4200];
    expect_t e = {0};
    moor_wal_t *w;

    assert_non_null(d);
    assert_int_equal(moor_wal_open(dir, 9, &o, &w), 0);
    assert_int_equal(moor_wal_sync(w), 0); /* nothing appended: returns at once */
    for (int i = 0; i < N; i++) {
        assert_int_equal(append_rec(w, &e, (uint64_t)i + 1, rand_len(&rs), &d[i]), 0);
        if (i == N / 2)
            assert_int_equal(moor_wal_sync(w), 0);
    }
    assert_int_equal(moor_wal_sync(w), 0);
    assert_true(moor_wal_sync_count(w) >= 1);
    assert_int_equal(moor_wal_bytes(w), seg_size(&e, 0, e.n));
    assert_int_equal(moor_wal_close(w), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&d[i].calls), 1);
        assert_int_equal(atomic_load(&d[i].status), 0);
    }
    moor_wal_segment_path(path, sizeof(path), dir, 9);
    replay_exact(path, &e, 0, e.n);
    expect_free(&e);
    free(d);
    testutil_rmrf(dir);
    free(dir);
}

static void test_mode_none(void **state)
{
    run_mode(MOOR_SYNC_NONE);
}
static void test_mode_interval(void **state)
{
    run_mode(MOOR_SYNC_INTERVAL);
}
static void test_mode_always(void **state)
{
    run_mode(MOOR_SYNC_ALWAYS);
}

/* An idle INTERVAL log still gets its fdatasync without anyone asking. */
static void test_interval_idle_sync(void **state)
{
    char *dir = testutil_tmpdir("wal-idle");
    moor_wal_opts_t o = {MOOR_SYNC_INTERVAL, 5};
    done_state_t d = {0};
    moor_wal_t *w;

    assert_int_equal(moor_wal_open(dir, 1, &o, &w), 0);
    assert_int_equal(append_rec(w, NULL, 1, 100, &d), 0);
    /* bounded wait (10 s) for the writer's timed sync; not a timing check */
    for (int i = 0; i < 10000 && moor_wal_sync_count(w) == 0; i++)
        usleep(1000);
    assert_int_equal(moor_wal_sync_count(w), 1);
    assert_int_equal(atomic_load(&d.calls), 1);
    assert_int_equal(moor_wal_close(w), 0);
    testutil_rmrf(dir);
    free(dir);
}

/* While the writer is held in a callback, 100 more appends pile up and
 * then share one write and one fdatasync. */
static void test_group_commit(void **state)
{
    char *dir = testutil_tmpdir("wal-group");
    moor_wal_opts_t o = {MOOR_SYNC_ALWAYS, 0};
    gate_t g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    done_state_t d[100];
    char path[4200];
    expect_t e = {0};
    moor_wal_t *w;

    memset(d, 0, sizeof(d));
    assert_int_equal(moor_wal_open(dir, 1, &o, &w), 0);
    assert_int_equal(moor_wal_append(w, 1, "x", 1, gate_cb, &g), 0);
    expect_add(&e, 1, 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(append_rec(w, &e, (uint64_t)i + 2, 50, &d[i]), 0);
    gate_open(&g);
    assert_int_equal(moor_wal_sync(w), 0);
    assert_true(moor_wal_sync_count(w) <= 2);
    assert_int_equal(moor_wal_close(w), 0);
    assert_int_equal(atomic_load(&g.calls), 1);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(atomic_load(&d[i].calls), 1);
        assert_int_equal(atomic_load(&d[i].status), 0);
    }
    /* record 1's payload is "x", not fill_payload's: check counts only */
    moor_wal_segment_path(path, sizeof(path), dir, 1);
    {
        moor_wal_replay_stats_t st;
        assert_int_equal(moor_wal_replay(path, 0, NULL, NULL, &st), 0);
        assert_int_equal(st.records, 101);
        assert_int_equal(st.dropped_bytes, 0);
        assert_int_equal(st.last_seq, 101);
    }
    expect_free(&e);
    testutil_rmrf(dir);
    free(dir);
}

/* ---------- concurrent appenders ---------------------------------------- */

enum { NTHREADS = 8, PER_THREAD = 1000 };

typedef struct appender {
    moor_wal_t *w;
    int id;
    uint64_t seed;
    done_state_t *done;       /* PER_THREAD entries */
    atomic_int *last_done;    /* index of the last callback of this thread */
    atomic_int *order_errors; /* callbacks out of append order */
    uint32_t len[PER_THREAD];
    int rc;
} appender_t;

typedef struct ordered_ud {
    appender_t *a;
    int idx;
} ordered_ud_t;

static ordered_ud_t g_oud[NTHREADS][PER_THREAD];

static void ordered_done(void *ud, int status)
{
    ordered_ud_t *o = ud;

    if (atomic_exchange(o->a->last_done, o->idx) != o->idx - 1)
        atomic_fetch_add(o->a->order_errors, 1);
    done_cb(&o->a->done[o->idx], status);
}

static uint64_t thread_seq(int id, int i)
{
    return (uint64_t)id * 1000000u + (uint64_t)i + 1;
}

static void *appender_main(void *arg)
{
    appender_t *a = arg;
    char buf[2048];
    uint64_t rs = a->seed;

    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t seq = thread_seq(a->id, i);
        size_t len = (size_t)(testutil_rand(&rs) % sizeof(buf));
        fill_payload(buf, seq, len);
        a->len[i] = (uint32_t)len;
        g_oud[a->id][i] = (ordered_ud_t){a, i};
        a->rc = moor_wal_append(a->w, seq, buf, len, ordered_done, &g_oud[a->id][i]);
        if (a->rc)
            break;
        if (i % 64 == 0)
            sched_yield();
    }
    return NULL;
}

typedef struct conc_check {
    appender_t *a;
    int next[NTHREADS]; /* next expected index per thread */
    size_t seen, bad;
} conc_check_t;

static int conc_cb(void *ud, uint64_t seq, const char *payload, size_t len)
{
    conc_check_t *c = ud;
    uint64_t id = (seq - 1) / 1000000u, i = (seq - 1) % 1000000u;

    c->seen++;
    if (id >= NTHREADS || i != (uint64_t)c->next[id] || c->a[id].len[i] != len ||
        !payload_ok(payload, seq, len)) {
        c->bad++;
        return 0;
    }
    c->next[id]++;
    return 0;
}

static void test_concurrent_appenders(void **state)
{
    char *dir = testutil_tmpdir("wal-conc");
    moor_wal_opts_t o = {MOOR_SYNC_ALWAYS, 0};
    static appender_t a[NTHREADS];
    static done_state_t done[NTHREADS][PER_THREAD];
    static atomic_int last_done[NTHREADS];
    atomic_int order_errors = 0;
    pthread_t th[NTHREADS];
    conc_check_t cc = {a, {0}, 0, 0};
    moor_wal_replay_stats_t st;
    char path[4200];
    moor_wal_t *w;
    uint64_t syncs;

    memset(done, 0, sizeof(done));
    assert_int_equal(moor_wal_open(dir, 3, &o, &w), 0);
    for (int t = 0; t < NTHREADS; t++) {
        atomic_init(&last_done[t], -1);
        a[t] = (appender_t){.w = w,
                            .id = t,
                            .seed = g_seed + (uint64_t)t * 77,
                            .done = done[t],
                            .last_done = &last_done[t],
                            .order_errors = &order_errors};
        assert_int_equal(pthread_create(&th[t], NULL, appender_main, &a[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(a[t].rc, 0);
    }
    assert_int_equal(moor_wal_sync(w), 0);
    syncs = moor_wal_sync_count(w);
    assert_int_equal(moor_wal_close(w), 0);
    print_message("concurrent: %d records, %llu fdatasyncs\n", NTHREADS * PER_THREAD,
                  (unsigned long long)syncs);
    assert_true(syncs >= 1 && syncs <= NTHREADS * PER_THREAD);

    for (int t = 0; t < NTHREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) {
            assert_int_equal(atomic_load(&done[t][i].calls), 1);
            assert_int_equal(atomic_load(&done[t][i].status), 0);
        }
    assert_int_equal(atomic_load(&order_errors), 0);

    moor_wal_segment_path(path, sizeof(path), dir, 3);
    assert_int_equal(moor_wal_replay(path, 0, conc_cb, &cc, &st), 0);
    assert_int_equal(cc.bad, 0);
    assert_int_equal(cc.seen, NTHREADS * PER_THREAD);
    assert_int_equal(st.dropped_bytes, 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(cc.next[t], PER_THREAD);
    testutil_rmrf(dir);
    free(dir);
}

/* ---------- damaged segments -------------------------------------------- */

/* Writes a segment of n records and returns its image and record ends. */
static char *make_image(const char *dir, uint64_t seed, int n, expect_t *e, size_t *len,
                        uint64_t **ends)
{
    moor_wal_opts_t o = {MOOR_SYNC_NONE, 0};
    uint64_t rs = seed;
    char path[4200];
    moor_wal_t *w;

    assert_int_equal(moor_wal_open(dir, 77, &o, &w), 0);
    for (int i = 0; i < n; i++) {
        size_t l = i == n - 1 ? 90 : (size_t)(testutil_rand(&rs) % 300);
        assert_int_equal(append_rec(w, e, (uint64_t)i * 10 + 5, l, NULL), 0);
    }
    assert_int_equal(moor_wal_close(w), 0);
    *ends = malloc(sizeof(**ends) * (size_t)n);
    assert_non_null(*ends);
    for (int i = 0; i < n; i++)
        (*ends)[i] = seg_size(e, 0, (size_t)i + 1);
    moor_wal_segment_path(path, sizeof(path), dir, 77);
    return read_file(path, len);
}

/* Records wholly inside the first `cut` bytes. */
static size_t records_before(const uint64_t *ends, int n, uint64_t cut)
{
    size_t k = 0;

    while ((int)k < n && ends[k] <= cut)
        k++;
    return k;
}

static void check_cut(const char *path, const char *img, size_t cut, const expect_t *e,
                      const uint64_t *ends, int n)
{
    size_t k = records_before(ends, n, cut);
    uint64_t valid = cut < MOOR_WAL_SEGMENT_HEADER ? 0 : k ? ends[k - 1] : MOOR_WAL_SEGMENT_HEADER;
    check_t c = {e, 0, 0, 0, 0};
    moor_wal_replay_stats_t st;

    write_file(path, img, cut);
    assert_int_equal(moor_wal_replay(path, 0, check_cb, &c, &st), 0);
    assert_int_equal(c.bad, 0);
    assert_int_equal(st.records, k);
    assert_int_equal(st.valid_bytes, valid);
    assert_int_equal(st.dropped_bytes, cut - valid);
    assert_int_equal(file_size(path), cut);

    c.seen = 0;
    assert_int_equal(moor_wal_replay(path, 1, check_cb, &c, &st), 0);
    assert_int_equal(st.records, k);
    assert_int_equal(file_size(path), valid);

    c.seen = 0;
    assert_int_equal(moor_wal_replay(path, 1, check_cb, &c, &st), 0);
    assert_int_equal(c.bad, 0);
    assert_int_equal(st.records, k);
    assert_int_equal(st.dropped_bytes, 0);
}

static void test_torn_tail(void **state)
{
    char *dir = testutil_tmpdir("wal-torn");
    uint64_t rs = g_seed ^ 3, *ends;
    enum { N = 40 };
    expect_t e = {0};
    char path[4200];
    size_t len;
    char *img = make_image(dir, g_seed ^ 2, N, &e, &len, &ends);

    snprintf(path, sizeof(path), "%s/cut.log", dir);
    assert_int_equal(len, ends[N - 1]);
    for (size_t cut = ends[N - 2]; cut <= len; cut++)
        check_cut(path, img, cut, &e, ends, N);
    for (size_t cut = 0; cut <= MOOR_WAL_SEGMENT_HEADER + 1; cut++)
        check_cut(path, img, cut, &e, ends, N);
    for (int i = 0; i < 100; i++)
        check_cut(path, img, (size_t)(testutil_rand(&rs) % (len + 1)), &e, ends, N);
    free(img);
    free(ends);
    expect_free(&e);
    testutil_rmrf(dir);
    free(dir);
}

static void test_bit_flips(void **state)
{
    char *dir = testutil_tmpdir("wal-flip");
    uint64_t rs = g_seed ^ 5, *ends;
    enum { N = 30 };
    expect_t e = {0};
    char path[4200];
    size_t len;
    char *img = make_image(dir, g_seed ^ 4, N, &e, &len, &ends);
    char *copy = malloc(len);

    assert_non_null(copy);
    snprintf(path, sizeof(path), "%s/flip.log", dir);
    for (int i = 0; i < 2000; i++) {
        size_t pos = (size_t)(testutil_rand(&rs) % len);
        size_t k = records_before(ends, N, pos); /* record holding pos */
        uint64_t valid = pos < MOOR_WAL_SEGMENT_HEADER ? 0
                         : k                           ? ends[k - 1]
                                                       : MOOR_WAL_SEGMENT_HEADER;
        check_t c = {&e, 0, 0, 0, 0};
        moor_wal_replay_stats_t st;

        memcpy(copy, img, len);
        copy[pos] ^= (char)(1u << (testutil_rand(&rs) % 8));
        if (pos < MOOR_WAL_SEGMENT_HEADER)
            k = 0;
        if (i % 20 == 0) { /* through a file now and then, decode otherwise */
            write_file(path, copy, len);
            assert_int_equal(moor_wal_replay(path, 0, check_cb, &c, &st), 0);
        } else {
            assert_int_equal(moor_wal_decode(copy, len, check_cb, &c, &st), 0);
        }
        assert_int_equal(c.bad, 0);
        assert_int_equal(st.records, k);
        assert_int_equal(st.valid_bytes, valid);
        assert_int_equal(st.dropped_bytes, len - valid);
    }
    free(copy);
    free(img);
    free(ends);
    expect_free(&e);
    testutil_rmrf(dir);
    free(dir);
}

static void test_bad_header(void **state)
{
    char *dir = testutil_tmpdir("wal-hdr");
    char path[4200], hdr[MOOR_WAL_SEGMENT_HEADER + MOOR_WAL_HEADER + 3];
    moor_wal_replay_stats_t st;
    moor_wal_t *w;
    size_t len;
    char *img;

    /* a real segment with one 3-byte record, for its bytes */
    assert_int_equal(moor_wal_open(dir, 1, NULL, &w), 0);
    assert_int_equal(moor_wal_append(w, 42, "abc", 3, NULL, NULL), 0);
    assert_int_equal(moor_wal_close(w), 0);
    moor_wal_segment_path(path, sizeof(path), dir, 1);
    img = read_file(path, &len);
    assert_int_equal(len, sizeof(hdr));
    memcpy(hdr, img, len);
    free(img);

    assert_int_equal(moor_wal_open(dir, 1, NULL, &w), MOOR_EEXIST);
    assert_int_equal(moor_wal_open(dir, 2, &(moor_wal_opts_t){5, 0}, &w), MOOR_EINVAL);

    for (size_t n = 0; n < MOOR_WAL_SEGMENT_HEADER; n++) {
        write_file(path, hdr, n);
        assert_int_equal(moor_wal_replay(path, 1, NULL, NULL, &st), 0);
        assert_int_equal(st.records, 0);
        assert_int_equal(st.valid_bytes, 0);
        assert_int_equal(st.dropped_bytes, n);
        assert_int_equal(file_size(path), 0);
    }
    /* header only: a good empty segment */
    write_file(path, hdr, MOOR_WAL_SEGMENT_HEADER);
    assert_int_equal(moor_wal_replay(path, 1, NULL, NULL, &st), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.valid_bytes, MOOR_WAL_SEGMENT_HEADER);
    assert_int_equal(st.dropped_bytes, 0);

    /* wrong magic with a checksum that matches it: still not ours */
    {
        char bad[sizeof(hdr)];
        memcpy(bad, hdr, sizeof(hdr));
        bad[0] ^= 1;
        moor_enc_fixed32(bad + 12, moor_crc32c_mask(moor_crc32c(bad, 12)));
        assert_int_equal(moor_wal_decode(bad, sizeof(bad), NULL, NULL, &st), 0);
        assert_int_equal(st.records, 0);
        assert_int_equal(st.dropped_bytes, sizeof(bad));
    }
    /* a future version is an error, and the file is left alone */
    {
        char v2[sizeof(hdr)];
        memcpy(v2, hdr, sizeof(hdr));
        moor_enc_fixed32(v2 + 8, MOOR_WAL_VERSION + 1);
        moor_enc_fixed32(v2 + 12, moor_crc32c_mask(moor_crc32c(v2, 12)));
        write_file(path, v2, sizeof(v2));
        assert_int_equal(moor_wal_replay(path, 1, NULL, NULL, &st), MOOR_EVERSION);
        assert_int_equal(file_size(path), sizeof(v2));
        assert_int_equal(st.records, 0);
    }
    /* an unknown record type stops replay at that record */
    {
        char t[sizeof(hdr)];
        uint32_t crc;
        memcpy(t, hdr, sizeof(hdr));
        t[MOOR_WAL_SEGMENT_HEADER + 8] = 2;
        crc = moor_crc32c(t + MOOR_WAL_SEGMENT_HEADER + 8, 9 + 3);
        moor_enc_fixed32(t + MOOR_WAL_SEGMENT_HEADER, moor_crc32c_mask(crc));
        assert_int_equal(moor_wal_decode(t, sizeof(t), NULL, NULL, &st), 0);
        assert_int_equal(st.records, 0);
        assert_int_equal(st.dropped_bytes, MOOR_WAL_HEADER + 3);
    }
    /* a length over the maximum is never trusted */
    {
        char t[sizeof(hdr)];
        memcpy(t, hdr, sizeof(hdr));
        moor_enc_fixed32(t + MOOR_WAL_SEGMENT_HEADER + 4, 0xffffffffu);
        assert_int_equal(moor_wal_decode(t, sizeof(t), NULL, NULL, &st), 0);
        assert_int_equal(st.records, 0);
    }
    snprintf(path, sizeof(path), "%s/missing.log", dir);
    assert_int_equal(moor_wal_replay(path, 0, NULL, NULL, &st), MOOR_ENOENT);
    testutil_rmrf(dir);
    free(dir);
}

static void test_replay_stop(void **state)
{
    char *dir = testutil_tmpdir("wal-stop");
    char path[4200];
    expect_t e = {0};
    check_t c = {&e, 0, 0, 0, 3};
    moor_wal_replay_stats_t st;
    moor_wal_t *w;

    assert_int_equal(moor_wal_open(dir, 1, NULL, &w), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(append_rec(w, &e, (uint64_t)i + 1, 20, NULL), 0);
    assert_int_equal(moor_wal_close(w), 0);
    moor_wal_segment_path(path, sizeof(path), dir, 1);
    assert_int_equal(moor_wal_replay(path, 1, check_cb, &c, &st), 7);
    assert_int_equal(c.seen, 3);
    assert_int_equal(st.records, 3);
    assert_int_equal(st.last_seq, 3);
    assert_int_equal(st.dropped_bytes, 0);
    assert_int_equal(file_size(path), seg_size(&e, 0, 10)); /* not truncated */
    expect_free(&e);
    testutil_rmrf(dir);
    free(dir);
}

/* ---------- failure and close ------------------------------------------- */

static void test_append_invalid(void **state)
{
    char *dir = testutil_tmpdir("wal-inval");
    moor_wal_t *w;

    assert_int_equal(moor_wal_open(dir, 1, NULL, &w), 0);
    assert_int_equal(moor_wal_append(w, 1, "x", (size_t)MOOR_WAL_MAX_RECORD + 1, NULL, NULL),
                     MOOR_EINVAL);
    assert_int_equal(moor_wal_append(w, 1, NULL, 5, NULL, NULL), MOOR_EINVAL);
    assert_int_equal(moor_wal_append(w, 1, NULL, 0, NULL, NULL), 0);
    assert_int_equal(moor_wal_close(w), 0);
    testutil_rmrf(dir);
    free(dir);
}

/* Rotating onto an existing file fails the log: records before the rotation
 * are durable, those after it get the error, later appends MOOR_EFAILED. */
static void test_rotate_failure(void **state)
{
    char *dir = testutil_tmpdir("wal-fail");
    done_state_t a = {0}, b = {0};
    char path[4200];
    expect_t e = {0};
    moor_wal_t *w;

    moor_wal_segment_path(path, sizeof(path), dir, 5);
    write_file(path, "taken", 5);
    assert_int_equal(moor_wal_open(dir, 4, NULL, &w), 0);
    assert_int_equal(append_rec(w, &e, 1, 10, &a), 0);
    assert_int_equal(moor_wal_rotate(w, 5), 0);
    assert_int_equal(append_rec(w, NULL, 2, 10, &b), 0);
    assert_int_equal(moor_wal_sync(w), MOOR_EEXIST);
    assert_int_equal(moor_wal_append(w, 3, "y", 1, NULL, NULL), MOOR_EFAILED);
    assert_int_equal(moor_wal_rotate(w, 6), MOOR_EFAILED);
    assert_int_equal(moor_wal_close(w), MOOR_EEXIST);
    assert_int_equal(atomic_load(&a.calls), 1);
    assert_int_equal(atomic_load(&a.status), 0);
    assert_int_equal(atomic_load(&b.calls), 1);
    assert_int_equal(atomic_load(&b.status), MOOR_EEXIST);
    assert_int_equal(file_size(path), 5); /* the stranger's file is untouched */
    moor_wal_segment_path(path, sizeof(path), dir, 4);
    replay_exact(path, &e, 0, 1);
    expect_free(&e);
    testutil_rmrf(dir);
    free(dir);
}

typedef struct closer {
    moor_wal_t *w;
    int rc;
} closer_t;

static void *closer_main(void *arg)
{
    closer_t *c = arg;

    c->rc = moor_wal_close(c->w);
    return NULL;
}

/* Counts completions of many records sharing one ud. */
typedef struct tally {
    atomic_long calls;
    atomic_long errors;
} tally_t;

static void tally_cb(void *ud, int status)
{
    tally_t *t = ud;

    atomic_fetch_add(&t->calls, 1);
    if (status)
        atomic_fetch_add(&t->errors, 1);
}

/* Appends that race with close get MOOR_ECLOSED; those before it drain. */
static void test_append_during_close(void **state)
{
    char *dir = testutil_tmpdir("wal-close");
    moor_wal_opts_t o = {MOOR_SYNC_NONE, 0};
    gate_t g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    tally_t t = {0, 0};
    moor_wal_replay_stats_t st;
    closer_t cl;
    pthread_t th;
    char path[4200];
    moor_wal_t *w;
    long n = 0;
    int rc;

    assert_int_equal(moor_wal_open(dir, 1, &o, &w), 0);
    /* hold the writer in a callback so close cannot finish under us */
    assert_int_equal(moor_wal_append(w, 1, "g", 1, gate_cb, &g), 0);
    cl = (closer_t){w, -1};
    assert_int_equal(pthread_create(&th, NULL, closer_main, &cl), 0);
    /* the closer thread soon sets closing; the bound only stops a runaway */
    while ((rc = moor_wal_append(w, (uint64_t)n + 2, "z", 1, tally_cb, &t)) == 0 && n < 20000000) {
        n++;
        if (n % 16 == 0)
            sched_yield();
    }
    assert_int_equal(rc, MOOR_ECLOSED);
    assert_int_equal(moor_wal_rotate(w, 2), MOOR_ECLOSED);
    gate_open(&g);
    pthread_join(th, NULL);
    assert_int_equal(cl.rc, 0);
    assert_int_equal(atomic_load(&t.calls), n);
    assert_int_equal(atomic_load(&t.errors), 0);
    moor_wal_segment_path(path, sizeof(path), dir, 1);
    assert_int_equal(moor_wal_replay(path, 0, NULL, NULL, &st), 0);
    assert_int_equal(st.records, (uint64_t)n + 1);
    assert_int_equal(st.dropped_bytes, 0);
    testutil_rmrf(dir);
    free(dir);
}

/* ---------- damage in the middle: resynchronisation ------------------------ */

/* An image of batch records, as the engine writes them: record i holds
 * 1 + i % 3 puts, seqnos follow on without a gap from 1; value bytes from
 * the seed.  starts[i] is where record i begins, starts[n] the end;
 * seqs[i] its seqno. */
typedef struct bimage {
    char *img;
    size_t len;
    size_t starts[64];
    uint64_t seqs[64];
    uint32_t counts[64];
    int n;
} bimage_t;

/* A batch for record i; value_override (if any) becomes the last value. */
static moor_batch_t *make_batch(int i, uint32_t count, uint64_t *rs, const char *override,
                                size_t olen)
{
    moor_batch_t *b = moor_batch_new();

    assert_non_null(b);
    for (uint32_t j = 0; j < count; j++) {
        char k[32], v[300];
        size_t vlen = 20 + (size_t)(testutil_rand(rs) % 200);
        int klen = snprintf(k, sizeof(k), "key-%d-%u", i, j);

        for (size_t x = 0; x < vlen; x++)
            v[x] = (char)testutil_rand(rs);
        if (override && j + 1 == count)
            assert_int_equal(moor_batch_put(b, k, (size_t)klen, override, olen), 0);
        else
            assert_int_equal(moor_batch_put(b, k, (size_t)klen, v, vlen), 0);
    }
    return b;
}

/* Writes n batch records to segment 1 of dir and reads the image back.
 * Record `odd` (if >= 0) gets `override` as its last value. */
static void make_bimage(const char *dir, int n, uint64_t seed, int odd, const char *override,
                        size_t olen, bimage_t *im)
{
    moor_wal_opts_t o = {MOOR_SYNC_NONE, 0};
    uint64_t rs = seed | 1, seq = 1;
    char path[4200];
    moor_wal_t *w;
    size_t off = MOOR_WAL_SEGMENT_HEADER;

    assert_true(n < 64);
    memset(im, 0, sizeof(*im));
    im->n = n;
    assert_int_equal(moor_wal_open(dir, 1, &o, &w), 0);
    for (int i = 0; i < n; i++) {
        uint32_t count = 1 + (uint32_t)(i % 3);
        moor_batch_t *b = make_batch(i, count, &rs, i == odd ? override : NULL, olen);

        im->starts[i] = off;
        im->seqs[i] = seq;
        im->counts[i] = count;
        assert_int_equal(moor_wal_append(w, seq, b->rep.data, b->rep.len, NULL, NULL), 0);
        off += MOOR_WAL_HEADER + b->rep.len;
        seq += count;
        moor_batch_free(b);
    }
    im->starts[n] = off;
    assert_int_equal(moor_wal_close(w), 0);
    moor_wal_segment_path(path, sizeof(path), dir, 1);
    im->img = read_file(path, &im->len);
    assert_int_equal(im->len, off);
    unlink(path);
}

/* Collects the seqnos of the records replay hands out. */
typedef struct seen {
    uint64_t seq[64];
    int n;
} seen_t;

static int seen_cb(void *ud, uint64_t seq, const char *payload, size_t len)
{
    seen_t *s = ud;

    if (s->n < 64)
        s->seq[s->n] = seq;
    s->n++;
    return 0;
}

/* Decodes copy and checks it gave back every record of im but `gone`
 * (-1: none) and, when `tail`, that `gone` was dropped as a torn tail
 * rather than skipped as damage. */
static void expect_all_but(const bimage_t *im, const char *copy, int gone, int tail,
                           const char *what)
{
    moor_wal_replay_stats_t st;
    seen_t s = {{0}, 0};
    int k = 0;

    assert_int_equal(moor_wal_decode(copy, im->len, seen_cb, &s, &st), 0);
    for (int i = 0; i < im->n; i++) {
        if (i == gone)
            continue;
        if (k >= s.n || s.seq[k] != im->seqs[i])
            fail_msg("%s: record %d (seq %llu) missing or out of order (got %d records)", what, i,
                     (unsigned long long)im->seqs[i], s.n);
        k++;
    }
    if (s.n != k)
        fail_msg("%s: %d records handed out, want %d", what, s.n, k);
    assert_int_equal(st.records, (uint64_t)k);
    if (gone < 0 || tail) {
        assert_int_equal(st.damaged, 0);
        assert_int_equal(st.dropped_bytes, gone < 0 ? 0 : im->len - im->starts[gone]);
        return;
    }
    if (st.damaged != 1 || st.damage_offset != im->starts[gone] ||
        st.damaged_bytes != im->starts[gone + 1] - im->starts[gone] || st.dropped_bytes != 0 ||
        st.valid_bytes != im->len)
        fail_msg("%s: damaged %llu at %llu (%llu bytes), dropped %llu, valid %llu", what,
                 (unsigned long long)st.damaged, (unsigned long long)st.damage_offset,
                 (unsigned long long)st.damaged_bytes, (unsigned long long)st.dropped_bytes,
                 (unsigned long long)st.valid_bytes);
    /* the seqnos lost are known once a record came before */
    assert_int_equal(st.lost_seqs, gone > 0 ? im->counts[gone] : 0);
}

/* Every byte of a record flipped in turn (two values each): a record in
 * the middle loses only itself, with the records after it all kept; the
 * last one is a torn tail.  The issue: one flipped byte in the middle of a
 * log used to drop everything after it. */
static void test_resync_every_byte(void **state)
{
    char *dir = testutil_tmpdir("wal-resync");
    static const int recs[] = {0, 1, 7, 13, 14};
    uint64_t rs = g_seed ^ 11;
    bimage_t im;
    char *copy;

    make_bimage(dir, 15, g_seed ^ 10, -1, NULL, 0, &im);
    copy = malloc(im.len);
    assert_non_null(copy);
    memcpy(copy, im.img, im.len);
    expect_all_but(&im, copy, -1, 0, "untouched");
    for (size_t j = 0; j < sizeof(recs) / sizeof(recs[0]); j++) {
        int r = recs[j];

        for (size_t off = im.starts[r]; off < im.starts[r + 1]; off++) {
            for (int t = 0; t < 2; t++) {
                char what[96];
                unsigned char x = t ? (unsigned char)(1 + testutil_rand(&rs) % 255) : 0x01;

                snprintf(what, sizeof(what), "record %d, byte %zu ^ 0x%02x", r, off, x);
                memcpy(copy, im.img, im.len);
                copy[off] ^= (char)x;
                expect_all_but(&im, copy, r, r == im.n - 1, what);
            }
        }
    }
    free(copy);
    free(im.img);
    testutil_rmrf(dir);
    free(dir);
}

/* A whole valid record image stored as a value is not taken for a record
 * when the record holding it is damaged: its seqnos do not chain to the
 * record the damaged one's length points at, or lie beyond what the
 * skipped bytes could hold. */
static void test_resync_value_holds_record(void **state)
{
    char *dir = testutil_tmpdir("wal-fake");
    static const uint64_t fake_seq_ahead[] = {3, 1000}; /* seqnos no real record has */
    bimage_t base, im;

    make_bimage(dir, 10, g_seed ^ 12, -1, NULL, 0, &base);
    for (size_t t = 0; t < 2; t++) {
        const int r = 4; /* two puts: the image is the last value, the payload's end */
        char fake[2048];
        size_t flen = base.starts[2] - base.starts[1];
        seen_t s = {{0}, 0};
        moor_wal_replay_stats_t st;
        char *copy;

        /* record 1's image with its seqno moved ahead (crc recomputed) */
        assert_true(flen <= sizeof(fake));
        memcpy(fake, base.img + base.starts[1], flen);
        moor_enc_fixed64(fake + 9, base.seqs[r] + fake_seq_ahead[t]);
        moor_enc_fixed32(fake, moor_crc32c_mask(moor_crc32c(fake + 8, flen - 8)));
        make_bimage(dir, 10, g_seed ^ 12, r, fake, flen, &im);
        copy = malloc(im.len);
        assert_non_null(copy);
        memcpy(copy, im.img, im.len);
        copy[im.starts[r]] ^= 0x40; /* the crc of the record holding the image */
        if (t == 1)                 /* and, far ahead, its length too */
            copy[im.starts[r] + 7] ^= 0x10;
        assert_int_equal(moor_wal_decode(copy, im.len, seen_cb, &s, &st), 0);
        for (int i = 0; i < s.n; i++)
            if (s.seq[i] == base.seqs[r] + fake_seq_ahead[t])
                fail_msg("case %zu: the record image inside a value was replayed", t);
        expect_all_but(&im, copy, r, 0, t ? "image far ahead, length damaged" : "image chained");
        free(copy);
        free(im.img);
    }
    free(base.img);
    testutil_rmrf(dir);
    free(dir);
}

/* A segment header that fails its checksum with good records after it is
 * damage at offset 0: the records are kept. */
static void test_resync_header(void **state)
{
    char *dir = testutil_tmpdir("wal-rhdr");
    moor_wal_replay_stats_t st;
    seen_t s = {{0}, 0};
    bimage_t im;

    make_bimage(dir, 6, g_seed ^ 13, -1, NULL, 0, &im);
    for (int off = 0; off < MOOR_WAL_SEGMENT_HEADER; off++) {
        char *copy = malloc(im.len);

        assert_non_null(copy);
        memcpy(copy, im.img, im.len);
        copy[off] ^= 0x08;
        s.n = 0;
        assert_int_equal(moor_wal_decode(copy, im.len, seen_cb, &s, &st), 0);
        assert_int_equal(s.n, im.n);
        assert_int_equal(st.damaged, 1);
        assert_int_equal(st.damage_offset, 0);
        assert_int_equal(st.valid_bytes, im.len);
        free(copy);
    }
    free(im.img);
    testutil_rmrf(dir);
    free(dir);
}

/* Replay's flags on a file: damage is skipped and the file kept whole
 * (TRUNCATE cuts only a torn tail); STOP ends the replay at the damage
 * with MOOR_ECORRUPT naming the file and offset, leaving the file alone;
 * SEALED makes a bad tail damage, which STOP refuses too. */
static void test_replay_flags(void **state)
{
    char *dir = testutil_tmpdir("wal-flags");
    char path[4200], offtxt[64];
    moor_wal_replay_stats_t st;
    seen_t s = {{0}, 0};
    bimage_t im;
    char *copy;
    int rc;

    make_bimage(dir, 8, g_seed ^ 14, -1, NULL, 0, &im);
    snprintf(path, sizeof(path), "%s/damaged.log", dir);
    copy = malloc(im.len);
    assert_non_null(copy);
    memcpy(copy, im.img, im.len);
    copy[im.starts[3] + MOOR_WAL_HEADER + 5] ^= 0x20;

    /* damage plus a torn tail: skip the one, cut the other */
    write_file(path, copy, im.len - 3);
    assert_int_equal(moor_wal_replay(path, MOOR_WAL_REPLAY_TRUNCATE, seen_cb, &s, &st), 0);
    assert_int_equal(s.n, im.n - 2);
    assert_int_equal(st.damaged, 1);
    assert_int_equal(st.dropped_bytes, im.starts[8] - 3 - im.starts[7]);
    assert_int_equal(file_size(path), im.starts[7]);

    write_file(path, copy, im.len);
    s.n = 0;
    rc = moor_wal_replay(path, MOOR_WAL_REPLAY_TRUNCATE | MOOR_WAL_REPLAY_STOP, seen_cb, &s, &st);
    assert_int_equal(rc, MOOR_ECORRUPT);
    assert_int_equal(s.n, 3); /* the records before the damage, nothing after */
    snprintf(offtxt, sizeof(offtxt), "at offset %zu ", im.starts[3]);
    assert_non_null(strstr(moor_diag_msg(rc), path));
    assert_non_null(strstr(moor_diag_msg(rc), offtxt));
    assert_int_equal(file_size(path), im.len);

    /* a sealed segment's bad tail: an error, kept as is, refused by STOP */
    write_file(path, im.img, im.len - 5);
    s.n = 0;
    assert_int_equal(moor_wal_replay(path, MOOR_WAL_REPLAY_SEALED, seen_cb, &s, &st), 0);
    assert_int_equal(s.n, im.n - 1);
    assert_int_equal(st.dropped_bytes, im.starts[8] - 5 - im.starts[7]);
    assert_int_equal(file_size(path), im.len - 5);
    rc = moor_wal_replay(path, MOOR_WAL_REPLAY_SEALED | MOOR_WAL_REPLAY_STOP, NULL, NULL, &st);
    assert_int_equal(rc, MOOR_ECORRUPT);
    assert_non_null(strstr(moor_diag_msg(rc), path));
    /* ... while a torn tail of the last segment never stops it */
    assert_int_equal(
        moor_wal_replay(path, MOOR_WAL_REPLAY_TRUNCATE | MOOR_WAL_REPLAY_STOP, NULL, NULL, &st), 0);
    assert_int_equal(file_size(path), im.starts[7]);
    free(copy);
    free(im.img);
    testutil_rmrf(dir);
    free(dir);
}

/* ---------- a full disk ---------------------------------------------------- */

static char *g_tmpfs;

static int tmpfs_setup(void **state)
{
    g_tmpfs = testutil_tmpfs_mount("wal-tmpfs", 512 * 1024);
    return 0;
}

static int tmpfs_teardown(void **state)
{
    testutil_tmpfs_umount(g_tmpfs);
    g_tmpfs = NULL;
    return 0;
}

/* Fills the filesystem of dir with a file, leaving about `room` bytes
 * (room 0: to the last byte). */
static void fill_disk(const char *dir, const char *name, size_t room)
{
    char path[4200], buf[4096];
    struct statvfs sv;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    memset(buf, 0xAA, sizeof(buf));
    assert_int_equal(statvfs(dir, &sv), 0);
    for (uint64_t free_b = (uint64_t)sv.f_bavail * sv.f_bsize; free_b > room + sizeof(buf);
         free_b -= sizeof(buf))
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
            break;
    while (room == 0 && write(fd, buf, 1) == 1)
        ;
    close(fd);
}

/* Waits (bounded) until the log leaves its out-of-space state. */
static int wait_space_back(moor_wal_t *w)
{
    for (int i = 0; i < 1000 && moor_wal_nospace(w); i++)
        usleep(10 * 1000);
    return !moor_wal_nospace(w);
}

typedef struct rec_state {
    done_state_t d[4000];
    int n;
} rec_state_t;

/* A full disk is not a failure: the append whose bytes do not fit is
 * answered MOOR_ENOSPC, the segment is cut back to a record boundary,
 * moor_wal_nospace says so; once space is freed the writer's retry writes
 * the held records and every later append succeeds, in order, without
 * reopening; every record answered 0 is in the log afterwards. */
static void run_full_disk(int mode)
{
    moor_wal_opts_t o = {mode, 1};
    static rec_state_t rs;
    char path[4200], filler[4200];
    moor_wal_replay_stats_t st;
    expect_t e = {0};
    moor_wal_t *w;
    int i, first_nospc = -1, rc;

    if (!g_tmpfs)
        skip();
    memset(&rs, 0, sizeof(rs));
    snprintf(filler, sizeof(filler), "%s/filler", g_tmpfs);
    assert_int_equal(moor_wal_open(g_tmpfs, 1, &o, &w), 0);
    fill_disk(g_tmpfs, "filler", 40 * 1024);
    /* one record at a time, each waited for: the first ENOSPC is exact */
    for (i = 0; i < 4000 && first_nospc < 0; i++) {
        assert_int_equal(append_rec(w, &e, (uint64_t)i + 1, 1000, &rs.d[i]), 0);
        rc = moor_wal_sync(w);
        if (rc == MOOR_ENOSPC)
            first_nospc = i;
        else
            assert_int_equal(rc, 0);
    }
    assert_true(first_nospc > 0);
    for (i = 0; i < 200 && atomic_load(&rs.d[first_nospc].calls) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&rs.d[first_nospc].status), MOOR_ENOSPC);
    assert_true(moor_wal_nospace(w));
    /* the log holds exactly the records answered 0, nothing torn */
    moor_wal_segment_path(path, sizeof(path), g_tmpfs, 1);
    replay_exact(path, &e, 0, (size_t)first_nospc);
    /* still full: the retry keeps failing, nothing is written */
    usleep(120 * 1000);
    assert_true(moor_wal_nospace(w));

    assert_int_equal(unlink(filler), 0);
    assert_true(wait_space_back(w));
    /* the held record reached the log first, then new ones go in order */
    for (i = first_nospc + 1; i < first_nospc + 50; i++) {
        assert_int_equal(append_rec(w, &e, (uint64_t)i + 1, 1000, &rs.d[i]), 0);
        assert_int_equal(moor_wal_sync(w), 0);
        assert_int_equal(atomic_load(&rs.d[i].status), 0);
    }
    /* a rotation that cannot create its segment waits for space the same way */
    fill_disk(g_tmpfs, "filler", 0);
    assert_int_equal(moor_wal_rotate(w, 2), 0);
    assert_int_equal(append_rec(w, NULL, (uint64_t)i + 1, 1000, &rs.d[i]), 0);
    assert_int_equal(moor_wal_sync(w), MOOR_ENOSPC);
    assert_int_equal(unlink(filler), 0);
    assert_true(wait_space_back(w));
    assert_int_equal(moor_wal_sync(w), 0);
    assert_int_equal(moor_wal_close(w), 0);
    replay_exact(path, &e, 0, e.n);
    moor_wal_segment_path(path, sizeof(path), g_tmpfs, 2);
    assert_int_equal(moor_wal_replay(path, 0, NULL, NULL, &st), 0);
    assert_int_equal(st.records, 1);
    assert_int_equal(st.last_seq, (uint64_t)i + 1);
    expect_free(&e);
}

static void test_full_disk_always(void **state)
{
    run_full_disk(MOOR_SYNC_ALWAYS);
}

static void test_full_disk_none(void **state)
{
    run_full_disk(MOOR_SYNC_NONE);
}

/* ---------- seed corpus of the fuzz target ------------------------------ */

/* Seeds in the engine's own record shape, so the fuzzer starts from
 * images where resynchronisation has something to find. */
static void write_batch_corpus(const char *out)
{
    char *dir = testutil_tmpdir("wal-corpus-b"), name[4200];
    bimage_t im;

    make_bimage(dir, 6, 99, -1, NULL, 0, &im);
    snprintf(name, sizeof(name), "%s/batch_good", out);
    write_file(name, im.img, im.len);
    im.img[im.starts[2] + MOOR_WAL_HEADER + 3] ^= 0x04;
    snprintf(name, sizeof(name), "%s/batch_mid_payload_flip", out);
    write_file(name, im.img, im.len);
    im.img[im.starts[2] + MOOR_WAL_HEADER + 3] ^= 0x04;
    im.img[im.starts[3] + 6] ^= 0x01;
    snprintf(name, sizeof(name), "%s/batch_mid_length_flip", out);
    write_file(name, im.img, im.len);
    im.img[im.starts[3] + 6] ^= 0x01;
    im.img[5] ^= 0x80;
    snprintf(name, sizeof(name), "%s/batch_header_flip", out);
    write_file(name, im.img, im.len);
    im.img[5] ^= 0x80;
    im.img[im.starts[1]] ^= 0x10;
    snprintf(name, sizeof(name), "%s/batch_damage_and_torn_tail", out);
    write_file(name, im.img, im.len - 9);
    free(im.img);
    testutil_rmrf(dir);
    free(dir);
}

static void test_write_fuzz_corpus(void **state)
{
    const char *out = getenv("MOOR_WAL_WRITE_CORPUS");
    char *dir, path[4200], name[4200], *img;
    moor_wal_t *w;
    size_t len;

    if (!out || !*out)
        skip();
    dir = testutil_tmpdir("wal-corpus");
    assert_int_equal(moor_wal_open(dir, 1, NULL, &w), 0);
    assert_int_equal(append_rec(w, NULL, 1, 0, NULL), 0);
    assert_int_equal(append_rec(w, NULL, 2, 5, NULL), 0);
    assert_int_equal(append_rec(w, NULL, 9, 40, NULL), 0);
    assert_int_equal(append_rec(w, NULL, 10, 200, NULL), 0);
    assert_int_equal(moor_wal_close(w), 0);
    moor_wal_segment_path(path, sizeof(path), dir, 1);
    img = read_file(path, &len);

    snprintf(name, sizeof(name), "%s/good", out);
    write_file(name, img, len);
    snprintf(name, sizeof(name), "%s/header_only", out);
    write_file(name, img, MOOR_WAL_SEGMENT_HEADER);
    snprintf(name, sizeof(name), "%s/short_header", out);
    write_file(name, img, 9);
    snprintf(name, sizeof(name), "%s/torn_payload", out);
    write_file(name, img, len - 30);
    snprintf(name, sizeof(name), "%s/torn_record_header", out);
    write_file(name, img, MOOR_WAL_SEGMENT_HEADER + 10);
    img[MOOR_WAL_SEGMENT_HEADER + MOOR_WAL_HEADER + 3] ^= 0x10; /* in record 2's header */
    snprintf(name, sizeof(name), "%s/bad_crc", out);
    write_file(name, img, len);
    img[MOOR_WAL_SEGMENT_HEADER + MOOR_WAL_HEADER + 3] ^= 0x10;
    moor_enc_fixed32(img + MOOR_WAL_SEGMENT_HEADER + 4, 0x7fffffffu);
    snprintf(name, sizeof(name), "%s/huge_length", out);
    write_file(name, img, len);
    moor_enc_fixed32(img + MOOR_WAL_SEGMENT_HEADER + 4, 0);
    moor_enc_fixed32(img + 8, MOOR_WAL_VERSION + 1);
    moor_enc_fixed32(img + 12, moor_crc32c_mask(moor_crc32c(img, 12)));
    snprintf(name, sizeof(name), "%s/future_version", out);
    write_file(name, img, len);
    free(img);
    write_batch_corpus(out);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_rotate),
        cmocka_unit_test(test_mode_none),
        cmocka_unit_test(test_mode_interval),
        cmocka_unit_test(test_mode_always),
        cmocka_unit_test(test_interval_idle_sync),
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_concurrent_appenders),
        cmocka_unit_test(test_torn_tail),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_replay_stop),
        cmocka_unit_test(test_append_invalid),
        cmocka_unit_test(test_rotate_failure),
        cmocka_unit_test(test_append_during_close),
        cmocka_unit_test(test_resync_every_byte),
        cmocka_unit_test(test_resync_value_holds_record),
        cmocka_unit_test(test_resync_header),
        cmocka_unit_test(test_replay_flags),
        cmocka_unit_test_setup_teardown(test_full_disk_always, tmpfs_setup, tmpfs_teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_none, tmpfs_setup, tmpfs_teardown),
        cmocka_unit_test(test_write_fuzz_corpus),
    };

    testutil_tmpfs_init();
    g_seed = testutil_seed("test_wal");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
