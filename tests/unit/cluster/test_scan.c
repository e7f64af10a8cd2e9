/*
 * test_scan.c -- key scans (scan.h, coord_scan.c).
 *
 * The cursor: round trips, and every malformed form refused (short, long,
 * another version, any byte changed).  One replica's page over a small
 * sorted store holding two spaces and an internal key: pages of limit
 * items chained by `next` list each key of the space once, a prefix
 * filters, values are stripped to nil in keys mode (tombstones kept), and
 * a page that meets only other spaces' entries stops at the examine bound
 * with a `next` past them.  A simulated cluster of five coordinators
 * (sim.h; n = 3 on 8 vnodes each, so the walk crosses stretches with
 * different owners): pages of 7 keys list every key exactly once through
 * every node; keys written while a replica was cut off are listed by a
 * quorum scan through that replica and not by its r = 1 scan; deleted keys
 * are left out; values mode answers each value; with two members down a
 * quorum scan meets QUORUM_FAILED; a malformed cursor is BAD_REQUEST.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>

#include "cluster/coord.h"
#include "cluster/record.h"
#include "cluster/scan.h"
#include "util/err.h"
#include "util/mp.h"
#include "testutil.h"
#include "sim.h"

/* ---- the cursor --------------------------------------------------------------------- */

static void test_cursor(void **state)
{
    char pos[300];
    moor_buf_t cur = MOOR_BUF_INIT;
    const char *from;
    size_t flen;

    (void)state;
    for (size_t i = 0; i < sizeof(pos); i++)
        pos[i] = (char)(i * 7 + 3);
    for (size_t len = 8; len <= sizeof(pos); len += 73) {
        cur.len = 0;
        assert_int_equal(moor_scan_cursor_encode(pos, len, &cur), 0);
        assert_int_equal(cur.len, len + 5);
        assert_int_equal(moor_scan_cursor_decode(cur.data, cur.len, &from, &flen), 0);
        assert_int_equal(flen, len);
        assert_memory_equal(from, pos, len);
        /* any byte changed, or one missing, is malformed */
        for (size_t i = 0; i < cur.len; i++) {
            cur.data[i] ^= 0x20;
            assert_int_equal(moor_scan_cursor_decode(cur.data, cur.len, &from, &flen), MOOR_EINVAL);
            cur.data[i] ^= 0x20;
        }
        assert_int_equal(moor_scan_cursor_decode(cur.data, cur.len - 1, &from, &flen), MOOR_EINVAL);
    }
    assert_int_equal(moor_scan_cursor_decode("", 0, &from, &flen), MOOR_EINVAL);
    assert_int_equal(moor_scan_cursor_decode("\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 12,
                                             &from, &flen),
                     MOOR_EINVAL);
    assert_int_equal(moor_scan_cursor_encode(pos, 7, &cur), MOOR_EINVAL);
    assert_int_equal(moor_scan_cursor_encode(pos, MOOR_SCAN_FROM_MAX + 1, &cur), MOOR_EINVAL);
    /* positions order as the store does: bytes, then the shorter first */
    assert_true(moor_scan_pos_cmp("ab", 2, "abc", 3) < 0);
    assert_true(moor_scan_pos_cmp("abc", 3, "ab\xff", 3) < 0);
    assert_true(moor_scan_pos_cmp("abc", 3, "abc", 3) == 0);
    moor_buf_free(&cur);
}

/* ---- one replica's page over a small sorted store ----------------------------------- */

#define TS_MAX 12000

typedef struct tstore {
    moor_buf_t key[TS_MAX], val[TS_MAX];
    size_t n;
} tstore_t;

static size_t ts_lower(const tstore_t *t, const char *k, size_t klen)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (moor_scan_pos_cmp(t->key[mid].data, t->key[mid].len, k, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void ts_put(tstore_t *t, const char *k, size_t klen, const char *v, size_t vlen)
{
    size_t i = ts_lower(t, k, klen);

    if (i == t->n || moor_scan_pos_cmp(t->key[i].data, t->key[i].len, k, klen) != 0) {
        assert_true(t->n < TS_MAX);
        memmove(&t->key[i + 1], &t->key[i], (t->n - i) * sizeof(moor_buf_t));
        memmove(&t->val[i + 1], &t->val[i], (t->n - i) * sizeof(moor_buf_t));
        moor_buf_init(&t->key[i]);
        moor_buf_init(&t->val[i]);
        assert_int_equal(moor_buf_append(&t->key[i], k, klen), 0);
        t->n++;
    }
    t->val[i].len = 0;
    assert_int_equal(moor_buf_append(&t->val[i], v, vlen), 0);
}

static int ts_scan(void *ud, const char *prefix, size_t plen, const char *from, size_t flen,
                   uint32_t limit, moor_store_scan_fn fn, void *arg)
{
    tstore_t *t = ud;
    uint32_t seen = 0;

    for (size_t i = flen ? ts_lower(t, from, flen) : 0; i < t->n; i++) {
        if (t->key[i].len < plen || memcmp(t->key[i].data, prefix, plen))
            continue;
        if ((limit && seen++ == limit) ||
            fn(arg, t->key[i].data, t->key[i].len, t->val[i].data, t->val[i].len))
            break;
    }
    return 0;
}

static void ts_free(tstore_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        moor_buf_free(&t->key[i]);
        moor_buf_free(&t->val[i]);
    }
    free(t);
}

/* A record of one write of value (MessagePack) or a tombstone. */
static void make_record(const char *value, size_t vlen, int tombstone, moor_buf_t *out)
{
    moor_buf_t ctx = MOOR_BUF_INIT;

    out->len = 0;
    assert_int_equal(moor_record_write(NULL, NULL, 0, value, vlen, tombstone, "n1", 2, SIM_T0, 0,
                                       NULL, out, &ctx, NULL),
                     0);
    moor_buf_free(&ctx);
}

static void ts_put_key(tstore_t *t, const char *space, const char *key, int tombstone)
{
    moor_buf_t ek = MOOR_BUF_INIT, rec = MOOR_BUF_INIT;

    assert_int_equal(moor_record_key(space, strlen(space), key, strlen(key), &ek), 0);
    make_record("\xa3"
                "val",
                4, tombstone, &rec);
    ts_put(t, ek.data, ek.len, rec.data, rec.len);
    moor_buf_free(&ek);
    moor_buf_free(&rec);
}

/* Every page of space from the start, chained by next: the keys (a
 * '\n'-separated list appended to keys), the pages and the tombstones. */
static void page_walk(tstore_t *t, const char *space, const char *prefix, uint32_t limit,
                      moor_buf_t *keys, int *pages, int *tombstones)
{
    moor_store_if_t st = {t, NULL, NULL, NULL, ts_scan};
    moor_buf_t from = MOOR_BUF_INIT, ans = MOOR_BUF_INIT;
    moor_record_t *r = malloc(sizeof(*r));
    moor_scan_req_t q;

    assert_non_null(r);
    assert_int_equal(moor_buf_append(&from, "\0\0\0\0\0\0\0\0", 8), 0);
    *pages = *tombstones = 0;
    for (;;) {
        moor_scan_reader_t rd;
        moor_scan_item_t it;
        uint32_t n = 0;
        int rc;
        memset(&q, 0, sizeof(q));
        q.space = space, q.slen = strlen(space);
        q.prefix = prefix, q.plen = strlen(prefix);
        q.from = from.data, q.flen = from.len, q.to = UINT64_MAX, q.limit = limit;
        ans.len = 0;
        assert_int_equal(moor_scan_page_local(&st, &q, &ans), 0);
        assert_int_equal(moor_scan_page_open(ans.data, ans.len, &rd), 0);
        while ((rc = moor_scan_page_next(&rd, &it)) == 0) {
            assert_int_equal(moor_record_decode(it.rec, it.rlen, r), 0);
            assert_int_equal(r->n, 1);
            /* keys mode: the value is nil, the tombstone flag kept */
            assert_true(r->sib[0].tombstone ||
                        (r->sib[0].vlen == 1 && r->sib[0].value[0] == '\xc0'));
            *tombstones += r->sib[0].tombstone;
            assert_int_equal(moor_buf_append(keys, it.key, it.klen), 0);
            assert_int_equal(moor_buf_append(keys, "\n", 1), 0);
            n++;
        }
        assert_int_equal(rc, 1);
        assert_true(n <= limit);
        (*pages)++;
        if (!rd.next)
            break;
        assert_true(moor_scan_pos_cmp(rd.next, rd.nlen, from.data, from.len) > 0);
        from.len = 0;
        assert_int_equal(moor_buf_append(&from, rd.next, rd.nlen), 0);
    }
    free(r);
    moor_buf_free(&from);
    moor_buf_free(&ans);
}

static int count_lines(const moor_buf_t *b)
{
    int n = 0;

    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

static int has_line(const moor_buf_t *b, const char *line)
{
    size_t n = strlen(line);

    for (size_t i = 0; i + n < b->len + 1; i++)
        if ((i == 0 || b->data[i - 1] == '\n') && memcmp(b->data + i, line, n) == 0 &&
            i + n < b->len && b->data[i + n] == '\n')
            return 1;
    return 0;
}

static void test_page_local(void **state)
{
    tstore_t *t = calloc(1, sizeof(*t));
    moor_buf_t keys = MOOR_BUF_INIT;
    char k[32];
    int pages, tombs;

    (void)state;
    assert_non_null(t);
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "k%03d", i);
        ts_put_key(t, "a", k, i % 10 == 0);
        ts_put_key(t, "bb", k, 0);
    }
    /* an internal key (a hint's) beside them: never listed */
    ts_put(t, "\xff\xff\xff\xff\xff\xff\xff\xff\x00h-hint", 16, "x", 1);
    page_walk(t, "a", "", 30, &keys, &pages, &tombs);
    assert_int_equal(count_lines(&keys), 200);
    assert_int_equal(tombs, 20);
    assert_true(pages >= 7);
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "k%03d", i);
        assert_true(has_line(&keys, k));
    }
    keys.len = 0;
    page_walk(t, "a", "k01", 1000, &keys, &pages, &tombs);
    assert_int_equal(count_lines(&keys), 10);
    assert_int_equal(pages, 1);
    /* 10,500 entries of another space and 3 of "a": the first page stops
     * at the examine bound, with next past the entries it looked at */
    for (int i = 0; i < 10500; i++) {
        snprintf(k, sizeof(k), "x%05d", i);
        ts_put_key(t, "c", k, 0);
    }
    keys.len = 0;
    page_walk(t, "a", "k00", 1000, &keys, &pages, &tombs);
    assert_int_equal(count_lines(&keys), 10);
    assert_true(pages >= 2);
    moor_buf_free(&keys);
    ts_free(t);
}

/* ---- a simulated cluster ------------------------------------------------------------ */

#define NODES 5

typedef struct world {
    sim_t *sim;
    moor_ring_t *ring;
    moor_coord_t *coord[NODES];
} world_t;

typedef struct answer {
    int done, code;
    moor_buf_t res;
} answer_t;

static void handler(void *ud, int node, const char *method, size_t mlen, const char *params,
                    size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    world_t *w = ud;
    moor_coord_handle_peer(w->coord[node], method, mlen, params, plen, nparams, done, arg);
}

static void on_answer(void *arg, int code, const char *msg, const char *res, size_t rlen)
{
    answer_t *a = arg;

    (void)msg;
    assert_int_equal(a->done, 0); /* exactly once */
    a->done = 1;
    a->code = code;
    a->res.len = 0;
    if (code == 0)
        assert_int_equal(moor_buf_append(&a->res, res, rlen), 0);
}

static void ring_set(world_t *w, int down1, int down2)
{
    moor_member_t m[NODES];
    moor_ring_t *ring;

    memset(m, 0, sizeof(m));
    for (int i = 0; i < NODES; i++) {
        m[i].idlen = (uint8_t)w->sim->node[i].idlen;
        memcpy(m[i].id, w->sim->node[i].id, m[i].idlen);
        snprintf(m[i].addr, sizeof(m[i].addr), "127.0.0.%d:7700", i + 2);
        m[i].vnodes = 8;
        m[i].status = i == down1 || i == down2 ? MOOR_MEMBER_DOWN : MOOR_MEMBER_UP;
    }
    assert_int_equal(moor_ring_build(m, NODES, &ring), 0);
    for (int i = 0; i < NODES; i++)
        moor_coord_set_ring(w->coord[i], ring);
    moor_ring_free(w->ring);
    w->ring = ring;
}

static void world_init(world_t *w)
{
    memset(w, 0, sizeof(*w));
    w->sim = sim_new(42, NODES, handler, w);
    for (int i = 0; i < NODES; i++) {
        moor_coord_opts_t o;
        memset(&o, 0, sizeof(o));
        o.node_id = w->sim->node[i].id;
        o.idlen = w->sim->node[i].idlen;
        o.clock = sim_clock(w->sim, i);
        o.transport = sim_transport(w->sim, i);
        o.store = sim_store(w->sim, i);
        o.timeout_ms = 500;
        assert_int_equal(moor_coord_new(&o, &w->coord[i]), 0);
    }
    ring_set(w, -1, -1);
}

static void world_free(world_t *w)
{
    for (int i = 0; i < NODES; i++)
        moor_coord_free(w->coord[i]);
    moor_ring_free(w->ring);
    sim_free(w->sim);
}

static void wait_for(world_t *w, answer_t *a)
{
    for (int i = 0; i < 100000 && !a->done; i++)
        if (!sim_step(w->sim))
            break;
    assert_true(a->done);
}

static void write_key(world_t *w, int node, const char *key, uint32_t wl, int del)
{
    moor_coord_req_t req;
    answer_t a = {0};

    memset(&req, 0, sizeof(req));
    req.key = key, req.klen = strlen(key);
    req.value = "\xa1v", req.vlen = 2;
    req.n = 3, req.r = 2, req.w = wl;
    req.overwrite = del;
    if (del)
        moor_coord_del(w->coord[node], &req, on_answer, &a);
    else
        moor_coord_put(w->coord[node], &req, on_answer, &a);
    wait_for(w, &a);
    assert_int_equal(a.code, 0);
    moor_buf_free(&a.res);
}

/* The keys of a scan page ({keys, values?, cursor}) appended as lines to
 * keys; the cursor into cur (len 0: nil); the values checked as "v". */
static uint32_t read_page(const moor_buf_t *res, moor_buf_t *keys, moor_buf_t *cur)
{
    const char *p = res->data, *end = p + res->len;
    uint32_t n, nk = 0;

    cur->len = 0;
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    while (n--) {
        const char *k, *s;
        uint32_t klen, cnt, len;
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        if (klen == 4 && !memcmp(k, "keys", 4)) {
            assert_int_equal(moor_mp_read_array(&p, end, &nk), 0);
            for (uint32_t i = 0; i < nk; i++) {
                assert_int_equal(moor_mp_read_strbin(&p, end, &s, &len), 0);
                assert_int_equal(moor_buf_append(keys, s, len), 0);
                assert_int_equal(moor_buf_append(keys, "\n", 1), 0);
            }
        } else if (klen == 6 && !memcmp(k, "values", 6)) {
            assert_int_equal(moor_mp_read_array(&p, end, &cnt), 0);
            for (uint32_t i = 0; i < cnt; i++) {
                uint32_t m, nv;
                assert_int_equal(moor_mp_read_map(&p, end, &m), 0);
                assert_int_equal(m, 2);
                assert_int_equal(moor_mp_read_str(&p, end, &s, &len), 0);
                assert_int_equal(moor_mp_read_array(&p, end, &nv), 0);
                assert_int_equal(nv, 1);
                assert_int_equal(moor_mp_read_str(&p, end, &s, &len), 0);
                assert_memory_equal(s, "v", 1);
                assert_int_equal(moor_mp_skip(&p, end, 4), 0); /* "ctx" */
                assert_int_equal(moor_mp_skip(&p, end, 4), 0);
            }
        } else if (klen == 6 && !memcmp(k, "cursor", 6)) {
            if (moor_mp_read_nil(&p, end) != 0) {
                assert_int_equal(moor_mp_read_bin(&p, end, &s, &len), 0);
                assert_int_equal(moor_buf_append(cur, s, len), 0);
            }
        } else {
            fail_msg("unexpected field %.*s", (int)klen, k);
        }
    }
    return nk;
}

/* Every page through node with level r: 0 and the keys as lines, or the
 * first error code. */
static int scan_walk(world_t *w, int node, uint32_t r, uint32_t limit, int values, moor_buf_t *keys)
{
    moor_buf_t cur = MOOR_BUF_INIT;
    int code = 0;

    for (int pages = 0;; pages++) {
        moor_coord_scan_req_t q;
        answer_t a = {0};
        assert_true(pages < 10000);
        memset(&q, 0, sizeof(q));
        q.limit = limit, q.values = values, q.n = 3, q.r = r;
        q.cursor = cur.data, q.clen = cur.len;
        moor_coord_scan(w->coord[node], &q, on_answer, &a);
        wait_for(w, &a);
        if ((code = a.code) == 0)
            assert_true(read_page(&a.res, keys, &cur) <= limit);
        moor_buf_free(&a.res);
        if (code || cur.len == 0)
            break;
    }
    moor_buf_free(&cur);
    return code;
}

static void check_keys_once(const moor_buf_t *keys, int nkeys, const char *fmt, int skip_every)
{
    char k[32];
    int expect = 0;

    for (int i = 0; i < nkeys; i++) {
        if (skip_every && i % skip_every == 0)
            continue;
        snprintf(k, sizeof(k), fmt, i);
        assert_true(has_line(keys, k));
        expect++;
    }
    assert_int_equal(count_lines(keys), expect);
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* keys holds expect lines, no two the same. */
static void check_unique(const moor_buf_t *keys, int expect)
{
    char *text = malloc(keys->len + 1), **line = malloc(sizeof(char *) * (size_t)(expect + 1));
    int n = 0;

    assert_non_null(text);
    assert_non_null(line);
    memcpy(text, keys->data, keys->len);
    text[keys->len] = 0;
    assert_int_equal(count_lines(keys), expect);
    for (char *p = text, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
        *nl = 0;
        line[n++] = p;
    }
    qsort(line, (size_t)n, sizeof(*line), line_cmp);
    for (int i = 1; i < n; i++)
        if (strcmp(line[i - 1], line[i]) == 0)
            fail_msg("key %s listed twice", line[i]);
    free(line);
    free(text);
}

static void test_cluster_scan(void **state)
{
    world_t w;
    moor_buf_t keys = MOOR_BUF_INIT;
    char k[32];

    (void)state;
    world_init(&w);
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof(k), "key%03d", i);
        write_key(&w, i % NODES, k, 3, 0);
    }
    for (int node = 0; node < NODES; node++) {
        keys.len = 0;
        assert_int_equal(scan_walk(&w, node, 2, 7, 0, &keys), 0);
        check_keys_once(&keys, 300, "key%03d", 0);
    }
    keys.len = 0;
    assert_int_equal(scan_walk(&w, 1, 3, 1000, 1, &keys), 0);
    check_keys_once(&keys, 300, "key%03d", 0);

    /* node 4 cut off while 60 more keys are written (w = 2) */
    sim_isolate(w.sim, 4, 1);
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof(k), "late%02d", i);
        write_key(&w, i % 4, k, 2, 0);
    }
    sim_heal(w.sim);
    keys.len = 0;
    assert_int_equal(scan_walk(&w, 4, 1, 100, 0, &keys), 0);
    assert_true(count_lines(&keys) < 360); /* its own copies lack some */
    keys.len = 0;
    assert_int_equal(scan_walk(&w, 4, 2, 7, 0, &keys), 0);
    assert_int_equal(count_lines(&keys), 360);
    /* then node 3 cut off for 60 more: replicas that each lack what the
     * other has, so the union of their pages is more than a page */
    sim_isolate(w.sim, 3, 1);
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof(k), "later%02d", i);
        write_key(&w, i % 3, k, 2, 0);
    }
    sim_heal(w.sim);
    for (int node = 3; node < NODES; node++)
        for (uint32_t r = 2; r <= 3; r++) {
            keys.len = 0;
            assert_int_equal(scan_walk(&w, node, r, 7, 0, &keys), 0);
            check_unique(&keys, 420);
        }

    /* deleted keys are left out */
    for (int i = 0; i < 300; i += 3) {
        snprintf(k, sizeof(k), "key%03d", i);
        write_key(&w, 0, k, 3, 1);
    }
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof(k), "late%02d", i);
        write_key(&w, 0, k, 2, 1);
        snprintf(k, sizeof(k), "later%02d", i);
        write_key(&w, 0, k, 2, 1);
    }
    keys.len = 0;
    assert_int_equal(scan_walk(&w, 2, 3, 13, 0, &keys), 0);
    check_keys_once(&keys, 300, "key%03d", 3);

    /* two members down: some stretch has one owner up, r = 2 fails */
    ring_set(&w, 1, 2);
    keys.len = 0;
    assert_int_equal(scan_walk(&w, 0, 2, 100, 0, &keys), MOOR_EQUORUM);
    keys.len = 0;
    assert_int_equal(scan_walk(&w, 0, 1, 100, 0, &keys), 0);
    check_keys_once(&keys, 300, "key%03d", 3);

    /* a malformed cursor */
    {
        moor_coord_scan_req_t q;
        answer_t a = {0};
        memset(&q, 0, sizeof(q));
        q.cursor = "\x01garbage-cursor", q.clen = 15, q.n = 3, q.r = 1;
        moor_coord_scan(w.coord[0], &q, on_answer, &a);
        wait_for(&w, &a);
        assert_int_equal(a.code, MOOR_EINVAL);
    }
    assert_int_equal(w.sim->st.harness_errors, 0);
    moor_buf_free(&keys);
    world_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_page_local),
        cmocka_unit_test(test_cluster_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
