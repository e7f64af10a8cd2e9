/*
 * test_hints.c -- hinted handoff (core/cluster/hints.c) under simulation.
 *
 * Two simulated nodes (sim.h): n0 holds the hints service, n1 is the owner
 * the hints are meant for; the owner's peer handler is a fake replica that
 * takes `_put` with one map param {space, key, record}, merges the record
 * into its store (moor_record_merge) and answers true.  Every hint carries
 * a record whose value names its index, so the owner knows which hint it
 * got.  Over many seeds:
 *  - the sim store's del and scan: order, prefix, from, limit, visibility,
 *    durability and what a crash keeps;
 *  - hints acknowledged before a crash survive it (counts rebuilt from the
 *    store) and are replayed after the restart, each exactly once;
 *  - a crash in the middle of replay loses nothing acknowledged (a hint may
 *    be sent twice), and the store ends empty;
 *  - a hint is still in the fallback's store whenever its owner receives it
 *    (deleted only after the acknowledgement);
 *  - the replay rate: over any simulated second the owner receives at most
 *    rate + one batch of hint bytes, and the whole replay takes at least
 *    what the rate implies;
 *  - bounds: over max_bytes the oldest hints are dropped and reported in
 *    order, the newest kept; past window_ms likewise;
 *  - owner down pauses replay (nothing sent after the batch in flight),
 *    owner up resumes; an owner that does not answer is retried with
 *    backoff, not hammered, and gets everything once it is back.
 * Seeds: MOOR_HINTS_SEEDS=<count> (default 100) runs seeds 1..count.
 * Only simulated time is asserted on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>

#include "cluster/hints.h"
#include "cluster/record.h"
#include "util/mp.h"
#include "util/err.h"
#include "sim.h"
#include "testutil.h"

#define MAXH 600 /* hints per test at most */
#define OWNER "n1"

typedef struct world {
    sim_t *s;
    moor_hints_t *h;
    moor_hints_opts_t o;
    int nh;                 /* hints added */
    int acked[MAXH];        /* add's done ran with 0 */
    int add_failed[MAXH];   /* add's done ran with an error */
    uint32_t got[MAXH];     /* times the owner received hint i */
    uint64_t size[MAXH];    /* the hint's stored size (key + value) */
    int dropped[MAXH];      /* order of the dropped callbacks: indices */
    int ndropped;
    int absent_on_delivery; /* a hint the owner got was no longer stored */
    int refuse;             /* the owner answers every _put with an error */
    int refuse_odd;         /* the owner refuses odd hints as malformed */
    uint64_t at[4 * MAXH];  /* delivery log: time and hint index */
    int who[4 * MAXH];
    int nlog;
    uint64_t last_delivery;
} world_t;

static uint64_t nseeds(void)
{
    const char *e = getenv("MOOR_HINTS_SEEDS");
    return e && *e ? strtoull(e, NULL, 10) : 100;
}

/* ---- records and hint indices ---------------------------------------------------- */

/* A record of one sibling whose value is the str "hint <i>" padded to pad
 * bytes, written by n0. */
static void make_record(int i, size_t pad, moor_buf_t *out)
{
    char *v = malloc(pad + 32);
    moor_buf_t val = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    msgpack_packer pk;
    int n;

    assert_non_null(v);
    n = snprintf(v, 32, "hint %d ", i);
    while ((size_t)n < pad) {
        v[n] = (char)('a' + n % 26);
        n++;
    }
    moor_mp_packer_init(&pk, &val);
    assert_int_equal(msgpack_pack_str_with_body(&pk, v, (size_t)n), 0);
    assert_int_equal(moor_record_write(NULL, NULL, 0, val.data, val.len, 0, "n0", 2,
                                       SIM_T0 + (uint64_t)i, 0, NULL, out, &ctx, NULL),
                     0);
    moor_buf_free(&val);
    moor_buf_free(&ctx);
    free(v);
}

/* The hint index the value of one sibling names, or -1. */
static int record_index(const char *rec, size_t rlen)
{
    moor_record_t r;
    const char *p, *s;
    uint32_t n;
    char tmp[32];

    if (moor_record_decode(rec, rlen, &r) || r.n != 1)
        return -1;
    p = r.sib[0].value;
    if (moor_mp_read_str(&p, p + r.sib[0].vlen, &s, &n) || n < 6)
        return -1;
    memcpy(tmp, s, n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1);
    tmp[n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1] = 0;
    return strncmp(tmp, "hint ", 5) == 0 ? atoi(tmp + 5) : -1;
}

/* Is hint i in node's live store (under the hints prefix)? */
static int stored_hint(sim_t *s, int node, int i)
{
    sim_node_t *n = &s->node[node];

    for (size_t k = 0; k < n->nkv; k++) {
        moor_hint_t x;
        const sim_kv_t *kv = &n->kv[k];
        if (!kv->has_live || kv->klen < MOOR_HINTS_PREFIX_LEN ||
            memcmp(kv->key, MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN) != 0)
            continue;
        assert_int_equal(moor_hints_decode(kv->live.data, kv->live.len, &x), 0);
        if (record_index(x.record, x.rlen) == i)
            return 1;
    }
    return 0;
}

static size_t stored_hints(sim_t *s, int node)
{
    sim_node_t *n = &s->node[node];
    size_t c = 0;

    for (size_t k = 0; k < n->nkv; k++)
        c += n->kv[k].has_live && n->kv[k].klen >= MOOR_HINTS_PREFIX_LEN &&
             memcmp(n->kv[k].key, MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN) == 0;
    return c;
}

/* Fills w->size[] from what node 0 stores now. */
static void learn_sizes(world_t *w)
{
    sim_node_t *n = &w->s->node[0];

    for (size_t k = 0; k < n->nkv; k++) {
        moor_hint_t x;
        const sim_kv_t *kv = &n->kv[k];
        if (!kv->has_live || moor_hints_decode(kv->live.data, kv->live.len, &x))
            continue;
        int i = record_index(x.record, x.rlen);
        if (i >= 0 && i < MAXH)
            w->size[i] = kv->klen + kv->live.len;
    }
}

/* ---- the fake owner ------------------------------------------------------------- */

static void owner_handler(void *ud, int node, const char *method, size_t mlen, const char *params,
                          size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    world_t *w = ud;
    sim_t *s = w->s;
    const char *p = params, *end = params + plen, *space = NULL, *key = NULL, *rec = NULL;
    uint32_t n, slen = 0, klen = 0, rlen = 0;
    moor_store_if_t st = sim_store(s, node);
    moor_buf_t ekey = MOOR_BUF_INIT, cur = MOOR_BUF_INIT, merged = MOOR_BUF_INIT;
    moor_record_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    int i, rc;

    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(node, 1);
    assert_true(mlen == 4 && memcmp(method, "_put", 4) == 0);
    assert_int_equal(nparams, 1);
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(n, 3);
    for (uint32_t f = 0; f < n; f++) {
        const char *name;
        uint32_t nlen;
        assert_int_equal(moor_mp_read_str(&p, end, &name, &nlen), 0);
        if (nlen == 5 && memcmp(name, "space", 5) == 0)
            assert_int_equal(moor_mp_read_str(&p, end, &space, &slen), 0);
        else if (nlen == 3 && memcmp(name, "key", 3) == 0)
            assert_int_equal(moor_mp_read_bin(&p, end, &key, &klen), 0);
        else if (nlen == 6 && memcmp(name, "record", 6) == 0)
            assert_int_equal(moor_mp_read_bin(&p, end, &rec, &rlen), 0);
        else
            fail_msg("unexpected field %.*s", (int)nlen, name);
    }
    assert_true(p == end && space && key && rec);
    i = record_index(rec, rlen);
    assert_true(i >= 0 && i < w->nh);
    w->got[i]++;
    /* sent by the running process (not one that crashed since, whose copy
     * may arrive after the new process had it acknowledged): still stored */
    if (((sim_req_t *)arg)->from_inc == s->node[0].inc && !stored_hint(s, 0, i))
        w->absent_on_delivery++;
    if (w->nlog < 4 * MAXH) {
        w->at[w->nlog] = s->now;
        w->who[w->nlog++] = i;
    }
    w->last_delivery = s->now;
    if (w->refuse) {
        done(arg, MOOR_EUNAVAIL, "refusing", NULL, 0);
        goto out;
    }
    if (w->refuse_odd && i % 2) { /* BAD_REQUEST on the wire */
        done(arg, MOOR_EINVAL, "malformed", NULL, 0);
        goto out;
    }
    /* merge into the owner's data */
    assert_int_equal(moor_record_key(space, slen, key, klen, &ekey), 0);
    assert_int_equal(moor_record_decode(rec, rlen, b), 0);
    rc = st.get(st.ud, ekey.data, ekey.len, &cur);
    if (rc == 0) {
        assert_int_equal(moor_record_decode(cur.data, cur.len, a), 0);
        assert_int_equal(moor_record_merge(a, b, &merged), 0);
    } else {
        assert_int_equal(rc, MOOR_ENOTFOUND);
        assert_int_equal(moor_buf_append(&merged, rec, rlen), 0);
    }
    { /* durable at once: the owner's durability is not under test here */
        sim_kv_t *kv = sim_kv_find(&s->node[1], ekey.data, ekey.len, 1);
        sim_buf_set(&kv->live, merged.data, merged.len);
        kv->has_live = kv->has_durable = 1;
        sim_buf_set(&kv->durable, merged.data, merged.len);
    }
    done(arg, 0, NULL, "\xc3", 1);
out:
    moor_buf_free(&ekey);
    moor_buf_free(&cur);
    moor_buf_free(&merged);
    free(a);
    free(b);
}

/* ---- the world ------------------------------------------------------------------ */

static void on_dropped(void *ud, const char *owner, size_t olen, const char *space, size_t slen,
                       const char *key, size_t klen)
{
    world_t *w = ud;
    int i = -1;

    assert_true(olen == 2 && memcmp(owner, OWNER, 2) == 0);
    assert_true(slen == 7 && memcmp(space, "default", 7) == 0);
    if (klen > 1 && key[0] == 'k')
        i = atoi(key + 1);
    assert_true(i >= 0 && i < w->nh);
    w->dropped[w->ndropped++] = i;
}

static world_t *world_new(uint64_t seed)
{
    world_t *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    w->s = sim_new(seed, 2, owner_handler, w);
    w->o.node_id = "n0";
    w->o.idlen = 2;
    w->o.clock = sim_clock(w->s, 0);
    w->o.transport = sim_transport(w->s, 0);
    w->o.store = sim_store(w->s, 0);
    w->o.dropped = on_dropped;
    w->o.dropped_ud = w;
    return w;
}

static void world_start(world_t *w)
{
    assert_int_equal(moor_hints_new(&w->o, &w->h), 0);
}

/* Kills node 0 (drop: its unsynced writes are lost) and starts it again
 * with a new hints service on its store. */
static void world_crash(world_t *w, int drop)
{
    sim_crash(w->s, 0, drop);
    moor_hints_free(w->h);
    w->h = NULL;
    sim_release(w->s, 0);
    sim_restart(w->s, 0);
    world_start(w);
}

static void world_free(world_t *w)
{
    assert_int_equal(w->s->st.harness_errors, 0);
    moor_hints_free(w->h);
    sim_free(w->s);
    free(w);
}

typedef struct add_ctx {
    world_t *w;
    int i;
} add_ctx_t;

static add_ctx_t add_ctxs[MAXH];

static void add_done(void *arg, int status)
{
    add_ctx_t *c = arg;

    if (status == 0)
        c->w->acked[c->i] = 1;
    else
        c->w->add_failed[c->i] = 1;
}

/* Adds hint nh: key "k<i>" of space default, a record of about pad bytes. */
static int add_hint(world_t *w, size_t pad)
{
    moor_buf_t rec = MOOR_BUF_INIT;
    char key[16];
    int i = w->nh++, klen = snprintf(key, sizeof(key), "k%d", i), rc;

    assert_true(i < MAXH);
    make_record(i, pad, &rec);
    add_ctxs[i] = (add_ctx_t){w, i};
    rc = moor_hints_add(w->h, OWNER, 2, "default", 7, key, (size_t)klen, rec.data, rec.len,
                        add_done, &add_ctxs[i]);
    moor_buf_free(&rec);
    return rc;
}

static moor_hints_stats_t stats(world_t *w)
{
    moor_hints_stats_t st;
    moor_hints_stats(w->h, &st);
    return st;
}

/* Runs until node 0 holds no hints (or the time limit): the time it took. */
static uint64_t run_until_drained(world_t *w, uint64_t limit_ms)
{
    uint64_t t0 = w->s->now;

    while (w->s->now < t0 + limit_ms && (stats(w).pending || stored_hints(w->s, 0)))
        sim_run_until(w->s, w->s->now + 100, 1000000);
    return w->s->now - t0;
}

/* ================= the sim store's del and scan ================= */

typedef struct scan_log {
    char keys[16][8];
    int n;
    int stop_at;
} scan_log_t;

static int scan_fn(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    scan_log_t *l = arg;

    assert_true(klen < 8);
    memcpy(l->keys[l->n], key, klen);
    l->keys[l->n][klen] = 0;
    assert_int_equal(vlen, 1);
    assert_int_equal(val[0], key[klen - 1]);
    return ++l->n == l->stop_at;
}

static int durable_count;

static void count_done(void *arg, int status)
{
    (void)arg;
    if (status == 0)
        durable_count++;
}

static void test_sim_store_del_and_scan(void **state)
{
    sim_t *s = sim_new(3, 1, NULL, NULL);
    moor_store_if_t st = sim_store(s, 0);
    const char *keys[] = {"b2", "a1", "b1", "c3", "b3", "a2"};
    moor_buf_t out = MOOR_BUF_INIT;
    scan_log_t l;
    (void)state;

    for (int i = 0; i < 6; i++)
        assert_int_equal(st.put(st.ud, keys[i], 2, keys[i] + 1, 1, count_done, NULL), 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(st.scan(st.ud, "b", 1, NULL, 0, 0, scan_fn, &l), 0); /* visible at once */
    assert_int_equal(l.n, 3);
    assert_string_equal(l.keys[0], "b1");
    assert_string_equal(l.keys[1], "b2");
    assert_string_equal(l.keys[2], "b3");
    memset(&l, 0, sizeof(l));
    assert_int_equal(st.scan(st.ud, "", 0, "b15", 3, 2, scan_fn, &l), 0); /* from, limit */
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0], "b2");
    assert_string_equal(l.keys[1], "b3");
    memset(&l, 0, sizeof(l));
    l.stop_at = 1;
    assert_int_equal(st.scan(st.ud, "a", 1, "a", 1, 0, scan_fn, &l), 0); /* fn stops it */
    assert_int_equal(l.n, 1);
    assert_string_equal(l.keys[0], "a1");
    sim_run_until(s, 50, 1000);
    assert_int_equal(durable_count, 6);
    /* a del is visible at once, durable later; a crash drops an unsynced one */
    assert_int_equal(st.del(st.ud, "b2", 2, count_done, NULL), 0);
    assert_int_equal(st.del(st.ud, "zz", 2, count_done, NULL), 0); /* absent: fine */
    assert_int_equal(st.get(st.ud, "b2", 2, &out), MOOR_ENOTFOUND);
    memset(&l, 0, sizeof(l));
    assert_int_equal(st.scan(st.ud, "b", 1, NULL, 0, 0, scan_fn, &l), 0);
    assert_int_equal(l.n, 2);
    sim_crash(s, 0, 1);
    sim_release(s, 0);
    sim_restart(s, 0);
    assert_int_equal(st.get(st.ud, "b2", 2, &out), 0); /* back */
    assert_int_equal(st.del(st.ud, "b2", 2, count_done, NULL), 0);
    sim_run_until(s, 100, 1000);
    assert_int_equal(durable_count, 7);
    sim_crash(s, 0, 1);
    sim_release(s, 0);
    sim_restart(s, 0);
    assert_int_equal(st.get(st.ud, "b2", 2, &out), MOOR_ENOTFOUND); /* durable: gone */
    assert_int_equal(s->st.harness_errors, 0);
    moor_buf_free(&out);
    sim_free(s);
}

/* ================= hints ================= */

/* The decoders on what add writes, and the info map. */
static void test_formats(void **state)
{
    world_t *w = world_new(1);
    moor_hints_stats_t st = {1, 2, 3, 4, 5};
    moor_buf_t b = MOOR_BUF_INIT;
    const char *p, *owner;
    size_t olen;
    uint64_t seq, v;
    uint32_t n;
    moor_hint_t x;
    (void)state;

    world_start(w);
    assert_int_equal(add_hint(w, 10), 0);
    assert_int_equal(add_hint(w, 10), 0);
    for (size_t k = 0; k < w->s->node[0].nkv; k++) {
        sim_kv_t *kv = &w->s->node[0].kv[k];
        assert_int_equal(moor_hints_key_decode(kv->key, kv->klen, &owner, &olen, &seq), 0);
        assert_true(olen == 2 && memcmp(owner, OWNER, 2) == 0);
        assert_int_equal(moor_hints_decode(kv->live.data, kv->live.len, &x), 0);
        assert_int_equal(record_index(x.record, x.rlen), (int)seq - 1); /* seq from 1, in order */
        assert_true(x.slen == 7 && memcmp(x.space, "default", 7) == 0);
        assert_int_equal(x.ts, sim_clock_now(&w->s->node[0]));
        /* no data key starts like this: its space would be empty */
        assert_int_equal((unsigned char)kv->key[8], 0);
        kv->key[kv->klen - 1] ^= 1;
        kv->klen--;
        assert_int_equal(moor_hints_key_decode(kv->key, kv->klen, &owner, &olen, &seq),
                         MOOR_ECORRUPT);
        kv->klen++;
        kv->key[kv->klen - 1] ^= 1;
        assert_int_equal(moor_hints_decode(kv->live.data, kv->live.len - 1, &x), MOOR_ECORRUPT);
    }
    /* bad adds: no done, nothing stored */
    assert_int_equal(moor_hints_add(w->h, "n0", 2, "default", 7, "k", 1, "x", 1, add_done, NULL),
                     MOOR_EINVAL);
    assert_int_equal(moor_hints_add(w->h, "", 0, "default", 7, "k", 1, "x", 1, add_done, NULL),
                     MOOR_EINVAL);
    assert_int_equal(stats(w).pending, 2);
    assert_int_equal(moor_hints_stats_pack(&st, &b), 0);
    p = b.data;
    assert_int_equal(moor_mp_read_map(&p, b.data + b.len, &n), 0);
    assert_int_equal(n, 5);
    for (uint64_t i = 1; i <= 5; i++) {
        const char *name;
        uint32_t nlen;
        static const char *names[] = {"pending", "bytes", "stored", "delivered", "dropped"};
        assert_int_equal(moor_mp_read_str(&p, b.data + b.len, &name, &nlen), 0);
        assert_true(nlen == strlen(names[i - 1]) && memcmp(name, names[i - 1], nlen) == 0);
        assert_int_equal(moor_mp_read_uint(&p, b.data + b.len, &v), 0);
        assert_int_equal(v, i);
    }
    moor_buf_free(&b);
    world_free(w);
}

/* Hints acknowledged before a crash survive it and are replayed after the
 * restart, each exactly once; the store ends empty. */
static void test_survive_crash_and_replay(void **state)
{
    uint64_t n = nseeds();
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k = 20 + (int)sim_range(w->s, 0, 100), acked = 0;
        moor_hints_stats_t st;

        world_start(w);
        for (int i = 0; i < k; i++) {
            assert_int_equal(add_hint(w, (size_t)sim_range(w->s, 1, 300)), 0);
            sim_run_until(w->s, w->s->now + sim_range(w->s, 0, 3), 100000);
        }
        assert_int_equal(stats(w).pending, (uint64_t)k);
        world_crash(w, (int)(seed & 1));
        for (int i = 0; i < k; i++)
            acked += w->acked[i];
        st = stats(w);
        assert_true(st.pending >= (uint64_t)acked && st.pending <= (uint64_t)k);
        assert_int_equal(st.pending, stored_hints(w->s, 0));
        assert_true(st.bytes > 0 || st.pending == 0);
        assert_int_equal(w->nlog, 0); /* owner down: nothing sent */
        moor_hints_owner_up(w->h, OWNER, 2);
        run_until_drained(w, 60000);
        st = stats(w);
        assert_int_equal(st.pending, 0);
        assert_int_equal(st.bytes, 0);
        assert_int_equal(stored_hints(w->s, 0), 0);
        for (int i = 0; i < k; i++) {
            if (w->acked[i])
                assert_int_equal(w->got[i], 1);
            else
                assert_true(w->got[i] <= 1);
            if (w->got[i]) { /* in the owner's data */
                moor_buf_t ek = MOOR_BUF_INIT;
                char key[16];
                int kl = snprintf(key, sizeof(key), "k%d", i);
                moor_record_key("default", 7, key, (size_t)kl, &ek);
                assert_non_null(sim_store_peek(w->s, 1, ek.data, ek.len));
                moor_buf_free(&ek);
            }
        }
        assert_int_equal(w->absent_on_delivery, 0);
        assert_int_equal(st.delivered, (uint64_t)w->nlog);
        world_free(w);
    }
}

/* Crashes in the middle of replay, with message loss: nothing acknowledged
 * is lost, the owner never gets a hint the fallback no longer holds, and
 * everything drains. */
static void test_crash_mid_replay(void **state)
{
    uint64_t n = nseeds(), dup = 0;
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k = 50 + (int)sim_range(w->s, 0, 150);

        w->s->loss = seed % 3 ? 0.05 : 0;
        w->o.rate_bytes_s = 20000;
        w->o.batch = 8;
        w->o.timeout_ms = 500;
        world_start(w);
        moor_hints_owner_up(w->h, OWNER, 2);
        for (int i = 0; i < k; i++)
            assert_int_equal(add_hint(w, (size_t)sim_range(w->s, 50, 400)), 0);
        for (int c = 0; c < 3; c++) {
            sim_run_until(w->s, w->s->now + sim_range(w->s, 100, 3000), 10000000);
            world_crash(w, (int)sim_range(w->s, 0, 1));
            moor_hints_owner_up(w->h, OWNER, 2);
        }
        run_until_drained(w, 600000);
        assert_int_equal(stats(w).pending, 0);
        assert_int_equal(stored_hints(w->s, 0), 0);
        for (int i = 0; i < k; i++) {
            if (w->acked[i])
                assert_true(w->got[i] >= 1);
            dup += w->got[i] > 1;
        }
        assert_int_equal(w->absent_on_delivery, 0);
        world_free(w);
    }
    printf("hints: crash mid-replay over %llu seeds: %llu hints sent more than once\n",
           (unsigned long long)n, (unsigned long long)dup);
}

/* Over any simulated second the owner receives at most rate + one batch of
 * hint bytes (fixed network delay, so arrival = sending + 5 ms), and the
 * replay takes at least what the rate implies. */
static void test_rate_limit(void **state)
{
    uint64_t n = nseeds();
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k = 200 + (int)sim_range(w->s, 0, 200);
        uint64_t total = 0, maxsize = 0, rate = 10000 + sim_range(w->s, 0, 40000), took;
        uint32_t batch = 1 + (uint32_t)sim_range(w->s, 0, 15);

        w->s->delay_min = w->s->delay_max = 5;
        w->o.rate_bytes_s = rate;
        w->o.batch = batch;
        world_start(w);
        for (int i = 0; i < k; i++)
            assert_int_equal(add_hint(w, (size_t)sim_range(w->s, 10, 500)), 0);
        sim_run_until(w->s, w->s->now + 100, 100000);
        learn_sizes(w);
        for (int i = 0; i < k; i++) {
            assert_true(w->size[i] > 0);
            total += w->size[i];
            maxsize = w->size[i] > maxsize ? w->size[i] : maxsize;
        }
        assert_int_equal(stats(w).bytes, total);
        moor_hints_owner_up(w->h, OWNER, 2);
        took = run_until_drained(w, 3600000);
        assert_int_equal(stats(w).pending, 0);
        for (int a = 0; a < w->nlog; a++) {
            uint64_t sum = 0;
            for (int b = 0; b < w->nlog; b++)
                if (w->at[b] >= w->at[a] && w->at[b] < w->at[a] + 1000)
                    sum += w->size[w->who[b]];
            assert_true(sum <= rate + batch * maxsize);
        }
        assert_true((w->at[w->nlog - 1] - w->at[0]) * rate / 1000 + batch * maxsize + 1 >= total);
        assert_int_equal(w->nlog, k);
        if (seed == 1)
            printf("hints: %d hints, %llu bytes at %llu B/s in batches of %u: replayed in %llu "
                   "simulated ms\n",
                   k, (unsigned long long)total, (unsigned long long)rate, batch,
                   (unsigned long long)took);
        world_free(w);
    }
}

/* Over max_bytes: the oldest are dropped and reported in order, the newest
 * kept and delivered. */
static void test_bytes_bound(void **state)
{
    uint64_t n = nseeds();
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k = 30 + (int)sim_range(w->s, 0, 50), first_kept;
        moor_hints_stats_t st;

        w->o.max_bytes = 2000 + sim_range(w->s, 0, 3000);
        world_start(w);
        for (int i = 0; i < k; i++) {
            assert_int_equal(add_hint(w, (size_t)sim_range(w->s, 20, 200)), 0);
            assert_true(stats(w).bytes <= w->o.max_bytes);
            sim_run_until(w->s, w->s->now + 1, 100000);
        }
        st = stats(w);
        assert_true(w->ndropped > 0);
        assert_int_equal(st.dropped, (uint64_t)w->ndropped);
        assert_int_equal(st.pending + st.dropped, (uint64_t)k);
        assert_int_equal(st.stored, (uint64_t)k);
        for (int i = 0; i < w->ndropped; i++)
            assert_int_equal(w->dropped[i], i); /* oldest first */
        first_kept = w->ndropped;
        { /* a hint alone over the bound is refused, and drops nothing */
            moor_buf_t rec = MOOR_BUF_INIT;
            make_record(0, 6000, &rec);
            assert_int_equal(moor_hints_add(w->h, OWNER, 2, "default", 7, "k0", 2, rec.data,
                                            rec.len, add_done, NULL),
                             MOOR_ENOSPC);
            assert_int_equal(stats(w).pending, st.pending);
            assert_int_equal(stats(w).dropped, st.dropped);
            moor_buf_free(&rec);
        }
        moor_hints_owner_up(w->h, OWNER, 2);
        run_until_drained(w, 60000);
        for (int i = 0; i < k; i++)
            assert_int_equal(w->got[i], i >= first_kept ? 1u : 0u);
        world_free(w);
    }
}

/* Past window_ms: the oldest are dropped (by the sweep, in order), the
 * younger kept; a young hint is still replayed. */
static void test_age_bound(void **state)
{
    uint64_t n = nseeds();
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k1 = 5 + (int)sim_range(w->s, 0, 10), k2 = 5 + (int)sim_range(w->s, 0, 10);

        w->o.window_ms = 5000;
        world_start(w);
        for (int i = 0; i < k1; i++)
            assert_int_equal(add_hint(w, 50), 0);
        sim_run_until(w->s, 3000, 1000000);
        for (int i = 0; i < k2; i++)
            assert_int_equal(add_hint(w, 50), 0);
        sim_run_until(w->s, 4900, 1000000);
        assert_int_equal(w->ndropped, 0);
        sim_run_until(w->s, 6000, 1000000); /* past 5000 + a sweep (625 ms) */
        assert_int_equal(w->ndropped, k1);
        for (int i = 0; i < k1; i++)
            assert_int_equal(w->dropped[i], i);
        assert_int_equal(stats(w).pending, (uint64_t)k2);
        assert_int_equal(stats(w).dropped, (uint64_t)k1);
        moor_hints_owner_up(w->h, OWNER, 2);
        run_until_drained(w, 60000);
        for (int i = 0; i < k1 + k2; i++)
            assert_int_equal(w->got[i], i >= k1 ? 1u : 0u);
        /* hints that expire while their owner is down all go */
        moor_hints_owner_down(w->h, OWNER, 2);
        for (int i = 0; i < k1; i++)
            assert_int_equal(add_hint(w, 50), 0);
        sim_run_until(w->s, w->s->now + 6000, 1000000);
        assert_int_equal(stats(w).pending, 0);
        assert_int_equal(w->ndropped, 2 * k1);
        assert_int_equal(stored_hints(w->s, 0), 0);
        world_free(w);
    }
}

/* Owner down pauses replay: nothing reaches the owner after the batch in
 * flight; owner up resumes and finishes. */
static void test_owner_down_pauses(void **state)
{
    uint64_t n = nseeds();
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k = 100, before;
        uint64_t t_down;

        w->o.rate_bytes_s = 3000;
        w->o.batch = 4;
        world_start(w);
        for (int i = 0; i < k; i++)
            assert_int_equal(add_hint(w, 100), 0);
        moor_hints_owner_up(w->h, OWNER, 2);
        sim_run_until(w->s, w->s->now + sim_range(w->s, 500, 3000), 1000000);
        moor_hints_owner_down(w->h, OWNER, 2);
        t_down = w->s->now;
        sim_run_until(w->s, t_down + 10000, 1000000);
        before = w->nlog;
        assert_true(before > 0 && before < k);
        for (int i = 0; i < w->nlog; i++)
            assert_true(w->at[i] <= t_down + w->s->delay_max);
        moor_hints_owner_up(w->h, OWNER, 2);
        run_until_drained(w, 600000);
        assert_true(w->nlog > before);
        for (int i = 0; i < k; i++)
            assert_int_equal(w->got[i], 1);
        world_free(w);
    }
}

/* An owner that is up by the detector but does not answer: retried with
 * backoff, not hammered; it gets everything once it is back.  An owner
 * that answers errors: the same. */
static void test_unreachable_owner_backs_off(void **state)
{
    uint64_t n = nseeds();
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k = 40;
        uint64_t sent;

        w->o.batch = 8;
        w->o.timeout_ms = 1000;
        world_start(w);
        for (int i = 0; i < k; i++)
            assert_int_equal(add_hint(w, 100), 0);
        if (seed & 1)
            sim_crash(w->s, 1, 0);
        else
            w->refuse = 1;
        moor_hints_owner_up(w->h, OWNER, 2);
        sim_run_until(w->s, w->s->now + 60000, 10000000);
        sent = w->s->st.sent;
        /* backoff 0.5, 1, 2, 4, 8, 16, 30 s plus timeouts: under 12 tries */
        assert_true(sent >= 8 && sent <= 12 * 8);
        assert_int_equal(stats(w).pending, (uint64_t)k);
        if (seed & 1)
            sim_restart(w->s, 1);
        else
            w->refuse = 0;
        run_until_drained(w, 120000);
        assert_int_equal(stats(w).pending, 0);
        for (int i = 0; i < k; i++)
            assert_int_equal(w->got[i] >= 1, 1);
        assert_int_equal(stats(w).delivered, (uint64_t)k);
        world_free(w);
    }
}

/* Hints the owner refuses as malformed are dropped and reported (not
 * retried forever ahead of the others); the rest are delivered. */
static void test_refused_hints_are_dropped(void **state)
{
    uint64_t n = nseeds();
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k = 10 + (int)sim_range(w->s, 0, 40);

        w->refuse_odd = 1;
        w->o.batch = 1 + (uint32_t)sim_range(w->s, 0, 7);
        world_start(w);
        for (int i = 0; i < k; i++)
            assert_int_equal(add_hint(w, 60), 0);
        moor_hints_owner_up(w->h, OWNER, 2);
        run_until_drained(w, 60000);
        assert_int_equal(stats(w).pending, 0);
        assert_int_equal(stats(w).dropped, (uint64_t)(k / 2));
        assert_int_equal(stats(w).delivered, (uint64_t)(k - k / 2));
        assert_int_equal(w->ndropped, k / 2);
        for (int i = 0; i < k; i++)
            assert_int_equal(w->got[i], 1);
        world_free(w);
    }
}

/* Store writes that fail (puts and deletes, 20%): a failed add says so
 * and stores nothing; a failed delete leaves the hint for a later pass;
 * everything acknowledged still arrives and the store ends empty. */
static void test_failing_store(void **state)
{
    uint64_t n = nseeds();
    (void)state;

    for (uint64_t seed = 1; seed <= n; seed++) {
        world_t *w = world_new(seed);
        int k = 20 + (int)sim_range(w->s, 0, 60), failed = 0;

        w->o.batch = 4;
        world_start(w);
        w->s->store_fail = 0.2;
        for (int i = 0; i < k; i++)
            if (add_hint(w, 80))
                failed++;
        assert_int_equal(stats(w).pending + (uint64_t)failed, (uint64_t)k);
        moor_hints_owner_up(w->h, OWNER, 2);
        run_until_drained(w, 600000); /* failed deletes: retried by later passes */
        assert_int_equal(stats(w).pending, 0);
        w->s->store_fail = 0;
        world_crash(w, 0); /* and nothing comes back after a restart */
        assert_int_equal(stats(w).pending, 0);
        assert_int_equal(stats(w).pending, 0);
        assert_int_equal(stored_hints(w->s, 0), 0);
        for (int i = 0; i < k; i++)
            if (w->acked[i])
                assert_true(w->got[i] >= 1);
        assert_int_equal(w->absent_on_delivery, 0);
        world_free(w);
    }
}

/* The same seed replays to the same trace. */
static void test_deterministic(void **state)
{
    uint64_t trace[2];
    (void)state;

    for (int r = 0; r < 2; r++) {
        world_t *w = world_new(42);
        w->s->loss = 0.1;
        w->o.rate_bytes_s = 30000;
        world_start(w);
        for (int i = 0; i < 100; i++)
            assert_int_equal(add_hint(w, (size_t)sim_range(w->s, 10, 300)), 0);
        moor_hints_owner_up(w->h, OWNER, 2);
        run_until_drained(w, 600000);
        trace[r] = w->s->trace;
        world_free(w);
    }
    assert_int_equal(trace[0], trace[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sim_store_del_and_scan),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_survive_crash_and_replay),
        cmocka_unit_test(test_crash_mid_replay),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_bytes_bound),
        cmocka_unit_test(test_age_bound),
        cmocka_unit_test(test_owner_down_pauses),
        cmocka_unit_test(test_unreachable_owner_backs_off),
        cmocka_unit_test(test_refused_hints_are_dropped),
        cmocka_unit_test(test_failing_store),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
