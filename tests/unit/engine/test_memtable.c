/*
 * test_memtable.c -- the skiplist memtable against a sorted reference:
 * iteration order, snapshot reads, seek semantics, edge-size entries,
 * reference counting, and lock-free readers racing one writer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "engine/ikey.h"
#include "engine/memtable.h"
#include "testutil.h"
#include "util/buf.h"

/* One reference record: its internal key is built once for sorting. */
typedef struct rec {
    char ukey[24];
    size_t ulen;
    uint64_t seq;
    int type;
    char val[64];
    size_t vlen;
    char ikey[24 + MOOR_IKEY_TRAILER];
    size_t iklen;
} rec_t;

static int rec_cmp(const void *a, const void *b)
{
    const rec_t *x = a, *y = b;

    return moor_ikey_cmp(x->ikey, x->iklen, y->ikey, y->iklen);
}

/* Keys "k", "k1", "k12", ... share prefixes so shorter-first order is
 * exercised; key ids >= nkeys are never inserted. */
static size_t make_ukey(char *out, unsigned id)
{
    return (size_t)sprintf(out, "k%u", id * 7 % 1000);
}

static void rec_fill(rec_t *r, unsigned keyid, uint64_t seq, int type)
{
    r->ulen = make_ukey(r->ukey, keyid);
    r->seq = seq;
    r->type = type;
    r->vlen = (size_t)sprintf(r->val, "%s=%s@%llu", type == MOOR_VT_PUT ? "put" : "del", r->ukey,
                              (unsigned long long)seq);
    memcpy(r->ikey, r->ukey, r->ulen);
    moor_enc_fixed64(r->ikey + r->ulen, moor_ikey_trailer(seq, type));
    r->iklen = r->ulen + MOOR_IKEY_TRAILER;
}

typedef struct fixture {
    moor_memtable_t *m;
    rec_t *recs; /* sorted in internal key order */
    size_t n;
    unsigned nkeys;
    uint64_t rnd;
} fixture_t;

/* n records over nkeys keys with unique seqs 1..n, inserted in a random
 * order (the memtable must not depend on seqs arriving in order), or in
 * seq order as the engine adds them (the point-lookup slots are on then;
 * 3,000 keys over the 1,024 slots of a memtable_new() collide a lot). */
static int setup_fixture(void **state, int shuffle, unsigned nkeys)
{
    fixture_t *f = calloc(1, sizeof(*f));
    size_t *order;

    if (!f)
        return -1;
    f->rnd = testutil_seed(shuffle ? "memtable random" : "memtable ordered");
    f->n = 20000;
    f->nkeys = nkeys;
    f->recs = calloc(f->n, sizeof(rec_t));
    order = malloc(f->n * sizeof(*order));
    f->m = moor_memtable_new();
    if (!f->recs || !order || !f->m)
        return -1;
    for (size_t i = 0; i < f->n; i++) {
        int type = testutil_rand(&f->rnd) % 5 == 0 ? MOOR_VT_DEL : MOOR_VT_PUT;
        rec_fill(&f->recs[i], (unsigned)(testutil_rand(&f->rnd) % f->nkeys), i + 1, type);
        order[i] = i;
    }
    for (size_t i = f->n - 1; shuffle && i > 0; i--) {
        size_t j = testutil_rand(&f->rnd) % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < f->n; i++) {
        rec_t *r = &f->recs[order[i]];
        if (moor_memtable_add(f->m, r->seq, r->type, r->ukey, r->ulen, r->val, r->vlen) != 0)
            return -1;
    }
    qsort(f->recs, f->n, sizeof(rec_t), rec_cmp);
    free(order);
    *state = f;
    return 0;
}

static int setup_random(void **state)
{
    return setup_fixture(state, 1, 500);
}
static int setup_ordered(void **state)
{
    return setup_fixture(state, 0, 3000);
}

static int teardown_random(void **state)
{
    fixture_t *f = *state;

    moor_memtable_unref(f->m);
    free(f->recs);
    free(f);
    return 0;
}

static void assert_at(const moor_iiter_t *it, const rec_t *r)
{
    assert_true(it->valid);
    assert_int_equal(it->status, 0);
    assert_int_equal(it->klen, r->iklen);
    assert_memory_equal(it->key, r->ikey, r->iklen);
    assert_int_equal(it->vlen, r->vlen);
    assert_memory_equal(it->val, r->val, r->vlen);
}

static void test_iter_order_matches_reference(void **state)
{
    fixture_t *f = *state;
    moor_iiter_t *it = moor_memtable_iter(f->m);
    size_t i = 0;

    assert_non_null(it);
    assert_int_equal(moor_memtable_count(f->m), f->n);
    for (it->seek_first(it); it->valid; it->next(it)) {
        if (i >= f->n)
            fail_msg("iterator yields more than %zu entries", f->n);
        assert_at(it, &f->recs[i]);
        i++;
    }
    assert_int_equal(i, f->n);
    assert_int_equal(it->status, 0);
    moor_iiter_destroy(it);
}

/* Reference answer for get(key, snap): the newest record with seq <= snap,
 * by a scan of the key's versions (sorted newest first). */
static const rec_t *ref_get(const fixture_t *f, const char *ukey, size_t ulen, uint64_t snap)
{
    size_t lo = 0, hi = f->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (moor_ukey_cmp(f->recs[mid].ukey, f->recs[mid].ulen, ukey, ulen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < f->n; lo++) {
        const rec_t *r = &f->recs[lo];
        if (moor_ukey_cmp(r->ukey, r->ulen, ukey, ulen) != 0)
            break;
        if (r->seq <= snap)
            return r;
    }
    return NULL;
}

static void check_get(const fixture_t *f, const char *ukey, size_t ulen, uint64_t snap)
{
    const rec_t *want = ref_get(f, ukey, ulen, snap);
    int type = -1;
    const char *val = NULL;
    size_t vlen = 0;
    int found = moor_memtable_get(f->m, ukey, ulen, snap, &type, &val, &vlen);

    if (!want) {
        if (found)
            fail_msg("get(%.*s, %llu) found an entry, want none", (int)ulen, ukey,
                     (unsigned long long)snap);
        return;
    }
    if (!found)
        fail_msg("get(%.*s, %llu) missed, want seq %llu", (int)ulen, ukey, (unsigned long long)snap,
                 (unsigned long long)want->seq);
    assert_int_equal(type, want->type);
    assert_int_equal(vlen, want->vlen);
    assert_memory_equal(val, want->val, vlen);
}

static void test_get_at_snapshots(void **state)
{
    fixture_t *f = *state;
    char ukey[24];
    size_t ulen;

    for (int round = 0; round < 1500; round++) {
        /* Some ids are above nkeys: keys that were never inserted. */
        unsigned id = (unsigned)(testutil_rand(&f->rnd) % (f->nkeys + 100));
        uint64_t snap;

        switch (round % 4) {
        case 0: snap = testutil_rand(&f->rnd) % (f->n + 2); break;
        case 1: snap = MOOR_SEQ_MAX; break;
        case 2: snap = 0; break;
        default: snap = testutil_rand(&f->rnd) % 50; break;
        }
        ulen = make_ukey(ukey, id);
        check_get(f, ukey, ulen, snap);
        check_get(f, ukey, ulen - 1, snap); /* a prefix of a key, maybe absent */
    }
    /* Exactly at each version's seq, and just below it. */
    for (size_t i = 0; i < f->n; i += 37) {
        check_get(f, f->recs[i].ukey, f->recs[i].ulen, f->recs[i].seq);
        check_get(f, f->recs[i].ukey, f->recs[i].ulen, f->recs[i].seq - 1);
    }
    check_get(f, "", 0, MOOR_SEQ_MAX);
    check_get(f, "zzz", 3, MOOR_SEQ_MAX);
    check_get(f, "k1", 2, UINT64_MAX); /* above SEQ_MAX is clamped, not wrapped */
}

static size_t ref_lower_bound(const fixture_t *f, const char *t, size_t tlen)
{
    size_t lo = 0, hi = f->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (moor_ikey_cmp(f->recs[mid].ikey, f->recs[mid].iklen, t, tlen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void check_seek(const fixture_t *f, moor_iiter_t *it, const char *t, size_t tlen)
{
    size_t want = ref_lower_bound(f, t, tlen);

    it->seek(it, t, tlen);
    if (want == f->n) {
        assert_false(it->valid);
        return;
    }
    assert_at(it, &f->recs[want]);
    /* Positioned correctly, next keeps following the reference. */
    for (size_t i = want + 1; i < want + 4 && i < f->n; i++) {
        it->next(it);
        assert_at(it, &f->recs[i]);
    }
}

static void test_seek(void **state)
{
    fixture_t *f = *state;
    moor_iiter_t *it = moor_memtable_iter(f->m);
    char t[24 + MOOR_IKEY_TRAILER];
    size_t ulen;

    assert_non_null(it);
    for (int round = 0; round < 3000; round++) {
        unsigned id = (unsigned)(testutil_rand(&f->rnd) % (f->nkeys + 100));
        uint64_t seq = testutil_rand(&f->rnd) % (f->n + 2);
        int type = round % 2 ? MOOR_VT_SEEK : MOOR_VT_DEL;

        ulen = make_ukey(t, id);
        if (round % 5 == 0)
            ulen--; /* a prefix */
        moor_enc_fixed64(t + ulen, moor_ikey_trailer(seq, type));
        check_seek(f, it, t, ulen + MOOR_IKEY_TRAILER);
    }
    /* Every existing entry is found exactly. */
    for (size_t i = 0; i < f->n; i += 53)
        check_seek(f, it, f->recs[i].ikey, f->recs[i].iklen);
    /* Before everything, after everything. */
    moor_enc_fixed64(t, moor_ikey_trailer(MOOR_SEQ_MAX, MOOR_VT_SEEK));
    check_seek(f, it, t, MOOR_IKEY_TRAILER);
    memcpy(t, "zzzz", 4);
    moor_enc_fixed64(t + 4, 0);
    check_seek(f, it, t, 4 + MOOR_IKEY_TRAILER);
    /* A target shorter than a trailer is read as a bare user key. */
    memcpy(t, "k2", 2);
    memset(t + 2, 0xff, MOOR_IKEY_TRAILER);
    it->seek(it, "k2", 2);
    assert_at(it, &f->recs[ref_lower_bound(f, t, 2 + MOOR_IKEY_TRAILER)]);
    moor_iiter_destroy(it);
}

static void test_empty(void **state)
{
    moor_memtable_t *m = moor_memtable_new();
    moor_iiter_t *it;
    int type;
    const char *val;
    size_t vlen;
    (void)state;

    assert_non_null(m);
    assert_int_equal(moor_memtable_count(m), 0);
    assert_int_equal(moor_memtable_get(m, "a", 1, MOOR_SEQ_MAX, &type, &val, &vlen), 0);
    it = moor_memtable_iter(m);
    assert_non_null(it);
    it->seek_first(it);
    assert_false(it->valid);
    it->seek(it, "a\0\0\0\0\0\0\0\0", 9);
    assert_false(it->valid);
    moor_iiter_destroy(it);
    moor_memtable_unref(m);
}

static void test_edge_sizes_and_bytes(void **state)
{
    const size_t big = 200000; /* bigger than an arena block: its own block */
    moor_memtable_t *m = moor_memtable_new();
    char *bigval = malloc(big), key300[300];
    size_t b0, b1;
    int type;
    const char *val;
    size_t vlen;
    (void)state;

    assert_non_null(m);
    assert_non_null(bigval);
    for (size_t i = 0; i < big; i++)
        bigval[i] = (char)(i * 31 + 7);
    memset(key300, 'x', sizeof(key300)); /* two-byte varint length */
    b0 = moor_memtable_bytes(m);
    assert_int_equal(moor_memtable_add(m, 1, MOOR_VT_PUT, "", 0, "empty-key", 9), 0);
    assert_int_equal(moor_memtable_add(m, 2, MOOR_VT_PUT, "e", 1, "", 0), 0);
    assert_int_equal(moor_memtable_add(m, 3, MOOR_VT_PUT, "big", 3, bigval, big), 0);
    assert_int_equal(moor_memtable_add(m, 4, MOOR_VT_PUT, key300, 300, "long", 4), 0);
    assert_int_equal(moor_memtable_add(m, 5, MOOR_VT_DEL, "e", 1, "\1\2\3\4\5\6\7\10", 8), 0);
    b1 = moor_memtable_bytes(m);
    assert_true(b1 >= b0 + big);
    assert_int_equal(moor_memtable_count(m), 5);

    assert_int_equal(moor_memtable_get(m, "", 0, 10, &type, &val, &vlen), 1);
    assert_int_equal(vlen, 9);
    assert_memory_equal(val, "empty-key", 9);
    assert_int_equal(moor_memtable_get(m, "e", 1, 4, &type, &val, &vlen), 1);
    assert_int_equal(type, MOOR_VT_PUT);
    assert_int_equal(vlen, 0);
    assert_int_equal(moor_memtable_get(m, "e", 1, 5, &type, &val, &vlen), 1);
    assert_int_equal(type, MOOR_VT_DEL);
    assert_int_equal(vlen, 8);
    assert_memory_equal(val, "\1\2\3\4\5\6\7\10", 8);
    assert_int_equal(moor_memtable_get(m, "big", 3, 3, &type, &val, &vlen), 1);
    assert_int_equal(vlen, big);
    assert_memory_equal(val, bigval, big);
    assert_int_equal(moor_memtable_get(m, "big", 3, 2, &type, &val, &vlen), 0);
    assert_int_equal(moor_memtable_get(m, key300, 300, 9, &type, &val, &vlen), 1);
    assert_memory_equal(val, "long", 4);
    assert_int_equal(moor_memtable_get(m, key300, 299, 9, &type, &val, &vlen), 0);
    free(bigval);
    moor_memtable_unref(m);
}

static void test_iter_keeps_memtable_alive(void **state)
{
    moor_memtable_t *m = moor_memtable_new();
    moor_iiter_t *it;
    (void)state;

    assert_non_null(m);
    assert_int_equal(moor_memtable_add(m, 1, MOOR_VT_PUT, "a", 1, "1", 1), 0);
    it = moor_memtable_iter(m);
    assert_non_null(it);
    moor_memtable_ref(m);
    moor_memtable_unref(m);
    moor_memtable_unref(m); /* the iterator's reference is the last one */
    it->seek_first(it);
    assert_true(it->valid);
    assert_int_equal(it->vlen, 1);
    assert_memory_equal(it->val, "1", 1);
    it->next(it);
    assert_false(it->valid);
    moor_iiter_destroy(it); /* frees the memtable (ASan checks) */
}

/* Ascending runs take the writer's tail shortcut; inserts in the middle
 * must leave that shortcut unused and the upper levels still correct
 * (get and seek walk them, iteration walks level 0). */
static void test_ascending_and_mixed_inserts(void **state)
{
    const int n = 30000;
    moor_memtable_t *m = moor_memtable_new();
    uint64_t rnd = testutil_seed("memtable ascending");
    char k[32];
    moor_iiter_t *it;
    int i = 0, type;
    const char *val;
    size_t vlen, kl;
    uint64_t seq = 0;
    (void)state;

    assert_non_null(m);
    /* Keys "a%06d" for even i in ascending runs, odd i in random order in
     * between, plus a second version of some keys (a newer seq sorts first). */
    for (int run = 0; run < 3; run++) {
        for (int j = 0; j < n / 3; j++, i++) {
            if (i % 2)
                continue;
            kl = (size_t)sprintf(k, "a%06d", i);
            assert_int_equal(moor_memtable_add(m, ++seq, MOOR_VT_PUT, k, kl, k, kl), 0);
        }
        for (int j = 0; j < 2000; j++) {
            int odd = (int)(testutil_rand(&rnd) % (uint64_t)i) | 1;
            kl = (size_t)sprintf(k, "a%06d", odd);
            if (moor_memtable_get(m, k, kl, MOOR_SEQ_MAX, &type, &val, &vlen))
                continue; /* each odd key once */
            assert_int_equal(moor_memtable_add(m, ++seq, MOOR_VT_PUT, k, kl, k, kl), 0);
        }
    }
    kl = (size_t)sprintf(k, "a%06d", 0);
    assert_int_equal(moor_memtable_add(m, ++seq, MOOR_VT_DEL, k, kl, "", 0), 0);

    for (int j = 0; j < n; j += 2) {
        kl = (size_t)sprintf(k, "a%06d", j);
        if (!moor_memtable_get(m, k, kl, MOOR_SEQ_MAX, &type, &val, &vlen))
            fail_msg("lost %s", k);
        assert_int_equal(type, j == 0 ? MOOR_VT_DEL : MOOR_VT_PUT);
        if (j) {
            assert_int_equal(vlen, kl);
            assert_memory_equal(val, k, kl);
        }
    }
    assert_int_equal(moor_memtable_get(m, "a000000", 7, 1, &type, &val, &vlen), 1);
    assert_int_equal(type, MOOR_VT_PUT);

    it = moor_memtable_iter(m);
    assert_non_null(it);
    uint64_t count = 0;
    char prev[40];
    size_t plen = 0;
    for (it->seek_first(it); it->valid; it->next(it), count++) {
        if (plen)
            assert_true(moor_ikey_cmp(prev, plen, it->key, it->klen) < 0);
        memcpy(prev, it->key, it->klen);
        plen = it->klen;
    }
    assert_int_equal(count, seq);
    assert_int_equal(moor_memtable_count(m), seq);
    /* Seek lands on every even key's newest version. */
    for (int j = 2; j < n; j += 2) {
        kl = (size_t)sprintf(k, "a%06d", j);
        moor_enc_fixed64(k + kl, moor_ikey_trailer(MOOR_SEQ_MAX, MOOR_VT_SEEK));
        it->seek(it, k, kl + MOOR_IKEY_TRAILER);
        assert_true(it->valid);
        assert_int_equal(it->klen, kl + MOOR_IKEY_TRAILER);
        assert_memory_equal(it->key, k, kl);
    }
    moor_iiter_destroy(it);
    moor_memtable_unref(m);
}

/* In-place updates: a new version of a key replaces its newest node's
 * entry while nobody else holds the memtable; a reference (an iterator, a
 * reader's view) makes adds keep every version again. */
static void test_replace_in_place(void **state)
{
    moor_memtable_t *m = moor_memtable_new();
    const char *v;
    size_t vlen;
    int type;

    (void)state;
    moor_memtable_replace_in_place(m, 1);
    assert_int_equal(moor_memtable_add(m, 1, MOOR_VT_PUT, "k", 1, "v1", 2), 0);
    assert_int_equal(moor_memtable_add(m, 2, MOOR_VT_PUT, "k", 1, "v2", 2), 0);
    assert_int_equal(moor_memtable_add(m, 3, MOOR_VT_DEL, "k", 1, "", 0), 0);
    assert_int_equal(moor_memtable_add(m, 4, MOOR_VT_PUT, "k", 1, "v4", 2), 0);
    assert_int_equal(moor_memtable_add(m, 5, MOOR_VT_PUT, "j", 1, "w", 1), 0);
    assert_int_equal(moor_memtable_count(m), 2); /* one node per key */
    assert_int_equal(moor_memtable_get(m, "k", 1, 10, &type, &v, &vlen), 1);
    assert_int_equal(type, MOOR_VT_PUT);
    assert_int_equal(vlen, 2);
    assert_memory_equal(v, "v4", 2);
    /* an iterator holds a reference: the version it may see stays */
    moor_iiter_t *it = moor_memtable_iter(m);
    assert_int_equal(moor_memtable_add(m, 6, MOOR_VT_PUT, "k", 1, "v6", 2), 0);
    assert_int_equal(moor_memtable_count(m), 3);
    assert_int_equal(moor_memtable_get(m, "k", 1, 5, &type, &v, &vlen), 1);
    assert_memory_equal(v, "v4", 2);
    uint64_t n = 0;
    for (it->seek_first(it); it->valid; it->next(it))
        n++;
    assert_int_equal(n, 3);
    moor_iiter_destroy(it);
    /* alone again: replaced in place, and the order of the list holds */
    assert_int_equal(moor_memtable_add(m, 7, MOOR_VT_PUT, "k", 1, "v7", 2), 0);
    assert_int_equal(moor_memtable_count(m), 3);
    assert_int_equal(moor_memtable_get(m, "k", 1, 10, &type, &v, &vlen), 1);
    assert_memory_equal(v, "v7", 2);
    it = moor_memtable_iter(m);
    it->seek_first(it);
    assert_true(it->valid);
    assert_memory_equal(it->key, "j", 1);
    it->next(it);
    assert_true(it->valid);
    assert_memory_equal(it->key, "k", 1);
    assert_int_equal(moor_ikey_seq(it->key, it->klen), 7);
    it->next(it);
    assert_true(it->valid);
    assert_int_equal(moor_ikey_seq(it->key, it->klen), 4);
    moor_iiter_destroy(it);
    moor_memtable_unref(m);
}

/* ---- one writer, two lock-free readers ---------------------------------- */

#define RACE_ENTRIES 200000
#define RACE_KEYS 20000

typedef struct race {
    moor_memtable_t *m;
    atomic_int done;
    uint64_t seed;
} race_t;

typedef struct reader_result {
    race_t *r;
    long passes, bad_order, bad_value, final_count;
} reader_result_t;

static size_t race_key(char *out, unsigned id)
{
    return (size_t)sprintf(out, "key%05u", id);
}

/* The value the writer stores for (key, seq): checkable from the entry. */
static size_t race_val(char *out, const char *ukey, size_t ulen, uint64_t seq)
{
    return (size_t)sprintf(out, "%.*s#%llu", (int)ulen, ukey, (unsigned long long)seq);
}

static void *race_writer(void *p)
{
    race_t *r = p;
    uint64_t rnd = r->seed;
    char k[16], v[48];

    for (uint64_t seq = 1; seq <= RACE_ENTRIES; seq++) {
        /* Every third key is a new tail key (the ascending shortcut). */
        size_t kl = seq % 3 ? race_key(k, (unsigned)(testutil_rand(&rnd) % RACE_KEYS))
                            : (size_t)sprintf(k, "tail%08llu", (unsigned long long)seq);
        size_t vl = race_val(v, k, kl, seq);
        if (moor_memtable_add(r->m, seq, MOOR_VT_PUT, k, kl, v, vl) != 0)
            abort();
    }
    atomic_store(&r->done, 1);
    return NULL;
}

static long race_pass(moor_iiter_t *it, reader_result_t *res)
{
    char prev[32], v[48];
    size_t plen = 0;
    long n = 0;

    for (it->seek_first(it); it->valid; it->next(it), n++) {
        size_t ulen = moor_ikey_ulen(it->klen);
        size_t vl = race_val(v, it->key, ulen, moor_ikey_seq(it->key, it->klen));

        if (plen && moor_ikey_cmp(prev, plen, it->key, it->klen) >= 0)
            res->bad_order++;
        if (vl != it->vlen || memcmp(v, it->val, vl) != 0)
            res->bad_value++;
        if (it->klen > sizeof(prev))
            abort();
        memcpy(prev, it->key, it->klen);
        plen = it->klen;
    }
    return n;
}

static void *race_reader(void *p)
{
    reader_result_t *res = p;
    moor_iiter_t *it = moor_memtable_iter(res->r->m);
    int finished;

    if (!it)
        abort();
    do {
        finished = atomic_load(&res->r->done);
        long n = race_pass(it, res);
        res->passes++;
        if (finished)
            res->final_count = n;
        /* Point reads race the writer too (through the lookup slots and,
         * on collisions, the list): any hit must be consistent. */
        for (unsigned q = 0; q < 256; q++) {
            char k[16], v[48];
            size_t kl = race_key(k, (unsigned)((res->passes * 131 + q * 7) % RACE_KEYS));
            int type;
            const char *val;
            size_t vlen;
            if (moor_memtable_get(res->r->m, k, kl, MOOR_SEQ_MAX, &type, &val, &vlen)) {
                char got[48];
                if (vlen < kl + 2 || vlen >= sizeof(got) || type != MOOR_VT_PUT) {
                    res->bad_value++;
                } else {
                    memcpy(got, val, vlen);
                    got[vlen] = '\0';
                    if (vlen != race_val(v, k, kl, strtoull(got + kl + 1, NULL, 10)) ||
                        memcmp(v, got, vlen) != 0)
                        res->bad_value++;
                }
            }
        }
    } while (!finished);
    moor_iiter_destroy(it);
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    race_t r = {.m = moor_memtable_new(), .seed = testutil_seed("memtable race")};
    reader_result_t res[2] = {{.r = &r}, {.r = &r}};
    pthread_t w, rd[2];
    (void)state;

    assert_non_null(r.m);
    atomic_init(&r.done, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, race_reader, &res[i]), 0);
    assert_int_equal(pthread_create(&w, NULL, race_writer, &r), 0);
    assert_int_equal(pthread_join(w, NULL), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(rd[i], NULL), 0);
        fprintf(stderr, "reader %d: %ld passes\n", i, res[i].passes);
        assert_int_equal(res[i].bad_order, 0);
        assert_int_equal(res[i].bad_value, 0);
        assert_int_equal(res[i].final_count, RACE_ENTRIES);
    }
    assert_int_equal(moor_memtable_count(r.m), RACE_ENTRIES);
    moor_memtable_unref(r.m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_iter_order_matches_reference, setup_random,
                                        teardown_random),
        cmocka_unit_test_setup_teardown(test_get_at_snapshots, setup_random, teardown_random),
        cmocka_unit_test_setup_teardown(test_seek, setup_random, teardown_random),
        cmocka_unit_test_setup_teardown(test_get_at_snapshots, setup_ordered, teardown_random),
        cmocka_unit_test_setup_teardown(test_iter_order_matches_reference, setup_ordered,
                                        teardown_random),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_replace_in_place),
        cmocka_unit_test(test_edge_sizes_and_bytes),
        cmocka_unit_test(test_iter_keeps_memtable_alive),
        cmocka_unit_test(test_ascending_and_mixed_inserts),
        cmocka_unit_test(test_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
