/*
 * test_aae.c -- anti-entropy (core/cluster/aae.c) in the simulation: a
 * cluster of coordinators, each with its hash trees, on sim.h.
 *
 * - trees: replicas that took the same writes have the same roots, and a
 *   tree rebuilt by a scan equals the one kept by the writes;
 * - a wiped replica: a repair run on it brings back every record, byte
 *   for byte, and the bytes on the wire per repaired key are printed;
 * - convergence over seeds: writers, partitions and crashes (hints off),
 *   then one repair on every node: every key's owners hold byte-identical
 *   records (MOOR_SIM_SEEDS=<count> for more seeds, MOOR_SIM_SEED=<s> one);
 * - tombstones: a delete that missed a partitioned replica is not reaped
 *   while that replica cannot confirm, and after healing and repair the
 *   key is reaped everywhere and never comes back.
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

#include "cluster/aae.h"
#include "cluster/coord.h"
#include "cluster/record.h"
#include "util/err.h"
#include "util/mp.h"
#include "sim.h"
#include "testutil.h"

#define NKEYS 400 /* keys of the wiped-replica test */
#define HOT 60     /* keys the convergence and tree tests write */
#define SPACE "default"

typedef struct acl {
    sim_t *sim;
    int nnodes;
    moor_ring_t *ring;
    moor_coord_t *coord[SIM_MAX_NODES];
    moor_aae_t *aae[SIM_MAX_NODES];
    uint64_t grace_ms;
    int inflight;
    uint64_t acked, failed;
    moor_buf_t ctx[NKEYS]; /* the last ctx read of each key */
} acl_t;

static void acl_handler(void *ud, int node, const char *method, size_t mlen, const char *params,
                        size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    acl_t *cl = ud;

    if (moor_aae_is_method(method, mlen))
        moor_aae_handle(cl->aae[node], method, mlen, params, plen, nparams, done, arg);
    else
        moor_coord_handle_peer(cl->coord[node], method, mlen, params, plen, nparams, done, arg);
}

/* The hooks reach the node's current coordinator and trees through their
 * slots, so each can be made before the other. */
static void on_write_hook(void *ud, const char *key, size_t klen, const char *old, size_t oldlen,
                          const char *rec, size_t rlen)
{
    moor_aae_note(*(moor_aae_t **)ud, key, klen, old, oldlen, rec, rlen);
}

static int merge_hook(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                      moor_store_done_fn done, void *arg)
{
    return moor_coord_merge_peer_record(*(moor_coord_t **)ud, key, klen, rec, rlen, done, arg);
}

static void acl_start(acl_t *cl, int i)
{
    moor_coord_opts_t o;
    moor_aae_opts_t a;
    moor_aae_space_t sp = {SPACE, sizeof(SPACE) - 1, 3, cl->grace_ms};
    int rc;

    memset(&a, 0, sizeof(a));
    a.node_id = cl->sim->node[i].id;
    a.idlen = cl->sim->node[i].idlen;
    a.clock = sim_clock(cl->sim, i);
    a.transport = sim_transport(cl->sim, i);
    a.store = sim_store(cl->sim, i);
    a.merge_local = merge_hook;
    a.merge_ud = &cl->coord[i];
    a.spaces = &sp;
    a.nspaces = 1;
    a.timeout_ms = 500;
    a.rate_kb_s = 4096;
    if ((rc = moor_aae_new(&a, &cl->aae[i])))
        fail_msg("moor_aae_new: %s", moor_diag_msg(rc));
    if ((rc = moor_aae_load(cl->aae[i])))
        fail_msg("moor_aae_load: %s", moor_diag_msg(rc));
    memset(&o, 0, sizeof(o));
    o.node_id = cl->sim->node[i].id;
    o.idlen = cl->sim->node[i].idlen;
    o.clock = sim_clock(cl->sim, i);
    o.transport = sim_transport(cl->sim, i);
    o.store = sim_store(cl->sim, i);
    o.timeout_ms = 500;
    o.on_write = on_write_hook;
    o.on_write_ud = &cl->aae[i];
    if ((rc = moor_coord_new(&o, &cl->coord[i])))
        fail_msg("moor_coord_new: %s", moor_diag_msg(rc));
    moor_coord_set_ring(cl->coord[i], cl->ring);
    moor_aae_set_ring(cl->aae[i], cl->ring);
}

static void acl_stop(acl_t *cl, int i)
{
    sim_crash(cl->sim, i, 1);
    moor_coord_free(cl->coord[i]);
    moor_aae_free(cl->aae[i]);
    cl->coord[i] = NULL;
    cl->aae[i] = NULL;
    sim_release(cl->sim, i);
}

static void acl_init(acl_t *cl, uint64_t seed, int nnodes, uint64_t grace_ms)
{
    moor_member_t m[SIM_MAX_NODES];
    int rc;

    memset(cl, 0, sizeof(*cl));
    cl->nnodes = nnodes;
    cl->grace_ms = grace_ms;
    cl->sim = sim_new(seed, nnodes, acl_handler, cl);
    memset(m, 0, sizeof(m));
    for (int i = 0; i < nnodes; i++) {
        m[i].idlen = (uint8_t)cl->sim->node[i].idlen;
        memcpy(m[i].id, cl->sim->node[i].id, m[i].idlen);
        snprintf(m[i].addr, sizeof(m[i].addr), "127.0.0.%d:7700", i + 2);
        m[i].vnodes = 8;
        m[i].status = MOOR_MEMBER_UP;
    }
    if ((rc = moor_ring_build(m, (uint32_t)nnodes, &cl->ring)))
        fail_msg("moor_ring_build: %s", moor_diag_msg(rc));
    for (int i = 0; i < nnodes; i++)
        acl_start(cl, i);
}

static void acl_free(acl_t *cl)
{
    for (int i = 0; i < cl->nnodes; i++) {
        if (cl->coord[i])
            moor_coord_free(cl->coord[i]);
        if (cl->aae[i])
            moor_aae_free(cl->aae[i]);
    }
    sim_free(cl->sim);
    moor_ring_free(cl->ring);
    for (int k = 0; k < NKEYS; k++)
        moor_buf_free(&cl->ctx[k]);
}

/* ---- client calls ---- */

typedef struct call {
    acl_t *cl;
    int key, get;
} call_t;

static void keyname(int k, char *out)
{
    snprintf(out, 16, "k%03d", k);
}

/* The ctx of a get result {values, ctx} (nil: none). */
static void keep_ctx(acl_t *cl, int key, const char *res, size_t rlen)
{
    const char *p = res, *end = res + rlen, *k, *v;
    uint32_t n, kl, vl;

    cl->ctx[key].len = 0;
    if (moor_mp_read_map(&p, end, &n))
        return;
    while (n--) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return;
        if (kl == 3 && memcmp(k, "ctx", 3) == 0 && moor_mp_read_bin(&p, end, &v, &vl) == 0) {
            moor_buf_append(&cl->ctx[key], v, vl);
            return;
        }
        if (moor_mp_skip(&p, end, 64))
            return;
    }
}

static void call_done(void *arg, int code, const char *errmsg, const char *res, size_t rlen)
{
    call_t *c = arg;

    (void)errmsg;
    c->cl->inflight--;
    if (code)
        c->cl->failed++;
    else {
        c->cl->acked++;
        if (c->get)
            keep_ctx(c->cl, c->key, res, rlen);
    }
    free(c);
}

/* One call through node: a get (op 0), a put (1) or a delete (2); with_ctx
 * writes carry the last ctx read of the key. */
static uint64_t g_ttl_ms; /* acl_call's puts carry this ttl_ms (0: none) */

static void acl_call(acl_t *cl, int node, int op, int key, uint32_t value, int with_ctx,
                     uint32_t w)
{
    moor_coord_req_t q;
    call_t *c = calloc(1, sizeof(*c));
    char kn[16], v[5];

    assert_non_null(c);
    c->cl = cl;
    c->key = key;
    c->get = op == 0;
    keyname(key, kn);
    memset(&q, 0, sizeof(q));
    q.space = SPACE;
    q.slen = sizeof(SPACE) - 1;
    q.key = kn;
    q.klen = strlen(kn);
    q.n = 3;
    q.r = 2;
    q.w = w;
    if (with_ctx && cl->ctx[key].len) {
        q.ctx = cl->ctx[key].data;
        q.ctxlen = cl->ctx[key].len;
    }
    cl->inflight++;
    if (op == 0) {
        moor_coord_get(cl->coord[node], &q, call_done, c);
    } else if (op == 1) {
        v[0] = (char)0xce; /* uint32 */
        v[1] = (char)(value >> 24), v[2] = (char)(value >> 16), v[3] = (char)(value >> 8);
        v[4] = (char)value;
        q.value = v;
        q.vlen = 5;
        q.ttl_ms = g_ttl_ms;
        moor_coord_put(cl->coord[node], &q, call_done, c);
    } else {
        moor_coord_del(cl->coord[node], &q, call_done, c);
    }
}

static void acl_run(acl_t *cl, uint64_t ms)
{
    sim_run_until(cl->sim, cl->sim->now + ms, 50 * 1000 * 1000);
}

/* ---- checks ---- */

/* The engine key of key k. */
static void ekey_of(int k, moor_buf_t *out)
{
    char kn[16];

    keyname(k, kn);
    out->len = 0;
    assert_int_equal(moor_record_key(SPACE, sizeof(SPACE) - 1, kn, strlen(kn), out), 0);
}

/* Owners (node indices) of key k. */
static uint32_t owners(acl_t *cl, int k, int *out)
{
    moor_buf_t ek = MOOR_BUF_INIT;
    uint32_t idx[3], n = 0;

    ekey_of(k, &ek);
    assert_int_equal(moor_ring_preference_list(cl->ring, moor_dec_be64(ek.data), 3, idx, &n), 0);
    for (uint32_t i = 0; i < n; i++) {
        const moor_member_t *m = moor_ring_member(cl->ring, idx[i]);
        out[i] = sim_node_by_id(cl->sim, m->id, m->idlen);
    }
    moor_buf_free(&ek);
    return n;
}

/* Every key's owners hold the same bytes (or all none); the count of
 * keys that differ, printed. */
static int diverging(acl_t *cl, int verbose)
{
    moor_buf_t ek = MOOR_BUF_INIT;
    int bad = 0;

    for (int k = 0; k < NKEYS; k++) {
        int own[3];
        uint32_t n = owners(cl, k, own);
        const moor_buf_t *first;
        ekey_of(k, &ek);
        first = sim_store_peek(cl->sim, own[0], ek.data, ek.len);
        for (uint32_t i = 1; i < n; i++) {
            const moor_buf_t *b = sim_store_peek(cl->sim, own[i], ek.data, ek.len);
            if ((!first) != (!b) || (first && (first->len != b->len ||
                                                memcmp(first->data, b->data, b->len)))) {
                if (verbose)
                    print_message("key k%03d: owners %d and %d differ (%zu vs %zu bytes)\n", k,
                                  own[0], own[i], first ? first->len : 0, b ? b->len : 0);
                bad++;
                break;
            }
        }
    }
    moor_buf_free(&ek);
    return bad;
}

static void wait_quiet(acl_t *cl)
{
    for (int i = 0; i < 600 && cl->inflight; i++)
        acl_run(cl, 100);
    assert_int_equal(cl->inflight, 0);
}

/* Runs a repair on each node in turn... all at once, until every one ended
 * (bounded by simulated time).  0 if they all ended. */
static int repair_all(acl_t *cl, uint64_t limit_ms)
{
    moor_aae_stats_t st;
    int running = 1;

    for (int i = 0; i < cl->nnodes; i++)
        if (cl->aae[i])
            assert_int_equal(moor_aae_repair(cl->aae[i], NULL, 0, NULL, 0, 1), 0);
    for (uint64_t t = 0; t < limit_ms && running; t += 100) {
        acl_run(cl, 100);
        running = 0;
        for (int i = 0; i < cl->nnodes; i++) {
            if (!cl->aae[i])
                continue;
            moor_aae_stats(cl->aae[i], &st);
            running |= st.running || !st.trees_ready;
        }
    }
    return running;
}

/* ---- tests ---- */

/* Replicas that took the same writes have the same trees, and a tree
 * rebuilt by a scan of the store equals the one the writes kept. */
static void test_trees_follow_writes(void **state)
{
    acl_t cl;
    uint64_t roots[SIM_MAX_NODES];
    uint32_t nv;

    (void)state;
    acl_init(&cl, 7, 3, 0);
    acl_run(&cl, 1000); /* the (empty) trees are built */
    for (int k = 0; k < HOT; k++)
        acl_call(&cl, k % 3, 1, k, (uint32_t)k + 1, 0, 3);
    wait_quiet(&cl);
    for (int k = 0; k < HOT; k += 3)
        acl_call(&cl, (k + 1) % 3, 2, k, 0, 0, 3);
    wait_quiet(&cl);
    assert_int_equal(cl.failed, 0);
    assert_int_equal(diverging(&cl, 1), 0);
    /* With n = 3 on three nodes every node holds every range. */
    nv = moor_ring_vnode_count(cl.ring);
    for (uint32_t v = 0; v < nv; v++) {
        uint64_t lo, hi;
        if (moor_ring_range_of(cl.ring, v, &lo, &hi) != 1)
            continue;
        for (int i = 0; i < 3; i++)
            assert_int_equal(moor_aae_root(cl.aae[i], SPACE, sizeof(SPACE) - 1, hi, &roots[i]), 1);
        assert_true(roots[0] == roots[1] && roots[1] == roots[2]);
    }
    /* Node 0 restarted: its trees are rebuilt by a scan (no clean save). */
    {
        uint64_t before[64];
        uint32_t nb = 0;
        for (uint32_t v = 0; v < nv && nb < 64; v++) {
            uint64_t lo, hi;
            if (moor_ring_range_of(cl.ring, v, &lo, &hi) == 1)
                moor_aae_root(cl.aae[0], SPACE, sizeof(SPACE) - 1, hi, &before[nb++]);
        }
        acl_stop(&cl, 0);
        sim_restart(cl.sim, 0);
        acl_start(&cl, 0);
        acl_run(&cl, 2000);
        nb = 0;
        for (uint32_t v = 0; v < nv && nb < 64; v++) {
            uint64_t lo, hi, r;
            if (moor_ring_range_of(cl.ring, v, &lo, &hi) != 1)
                continue;
            moor_aae_root(cl.aae[0], SPACE, sizeof(SPACE) - 1, hi, &r);
            assert_true(r == before[nb]);
            nb++;
        }
    }
    acl_free(&cl);
}

/* The roots of node i's trees, in ring order, into roots (at most 64). */
static uint32_t roots_of(acl_t *cl, int i, uint64_t *roots)
{
    uint32_t nv = moor_ring_vnode_count(cl->ring), nb = 0;

    for (uint32_t v = 0; v < nv && nb < 64; v++) {
        uint64_t lo, hi;
        if (moor_ring_range_of(cl->ring, v, &lo, &hi) == 1)
            assert_int_equal(moor_aae_root(cl->aae[i], SPACE, sizeof(SPACE) - 1, hi,
                                           &roots[nb++]),
                             1);
    }
    return nb;
}

/* Trees hash a record with its expiring siblings expired: a store whose
 * expired values were rewritten as their tombstones behind the trees'
 * back (what a compaction does, core/server/expire.c) has the trees a
 * rebuild gives, and equal to those of replicas that still hold the
 * values' bytes. */
static void test_trees_ignore_expiry_rewrites(void **state)
{
    acl_t cl;
    uint64_t r0[64], r1[64], again[64];
    uint32_t n0, n1, rewritten = 0;
    moor_record_t *r = malloc(sizeof(*r));
    moor_buf_t enc = MOOR_BUF_INIT;
    sim_node_t *sn;

    (void)state;
    acl_init(&cl, 11, 3, 0);
    acl_run(&cl, 1000);
    g_ttl_ms = 500;
    for (int k = 0; k < HOT; k++)
        acl_call(&cl, k % 3, 1, k, (uint32_t)k + 1, 0, 3);
    wait_quiet(&cl);
    g_ttl_ms = 0;
    acl_run(&cl, 2000); /* every value expired */
    assert_int_equal(cl.failed, 0);
    sn = &cl.sim->node[0];
    for (size_t i = 0; i < sn->nkv; i++) {
        sim_kv_t *kv = &sn->kv[i];
        if (!kv->has_live || moor_record_decode(kv->live.data, kv->live.len, r) ||
            moor_record_expire(r, UINT64_MAX) == 0)
            continue;
        moor_buf_reset(&enc);
        assert_int_equal(moor_record_encode(r, &enc), 0);
        moor_buf_reset(&kv->live);
        moor_buf_reset(&kv->durable);
        assert_int_equal(moor_buf_append(&kv->live, enc.data, enc.len), 0);
        assert_int_equal(moor_buf_append(&kv->durable, enc.data, enc.len), 0);
        kv->has_durable = 1;
        rewritten++;
    }
    assert_int_equal(rewritten, HOT);
    n0 = roots_of(&cl, 0, r0);
    n1 = roots_of(&cl, 1, r1);
    assert_int_equal(n0, n1);
    assert_memory_equal(r0, r1, n0 * sizeof(r0[0]));
    /* node 0 restarted: trees rebuilt by a scan of the rewritten store */
    acl_stop(&cl, 0);
    sim_restart(cl.sim, 0);
    acl_start(&cl, 0);
    acl_run(&cl, 2000);
    assert_int_equal(roots_of(&cl, 0, again), n1);
    assert_memory_equal(again, r1, n1 * sizeof(r1[0]));
    moor_buf_free(&enc);
    free(r);
    acl_free(&cl);
}

/* A replica wiped and restarted empty: a repair run on it brings every
 * record back, byte for byte, and not much more than the records moves. */
static void test_wiped_replica_repaired(void **state)
{
    acl_t cl;
    moor_aae_stats_t st;
    moor_buf_t ek = MOOR_BUF_INIT;
    size_t rec_bytes = 0, missing = 0;
    sim_node_t *n;

    (void)state;
    acl_init(&cl, 11, 3, 0);
    acl_run(&cl, 1000);
    for (int k = 0; k < NKEYS; k++)
        acl_call(&cl, k % 3, 1, k, (uint32_t)k + 1, 0, 3);
    wait_quiet(&cl);
    assert_int_equal(cl.failed, 0);
    for (int k = 0; k < NKEYS; k++) {
        const moor_buf_t *b;
        ekey_of(k, &ek);
        b = sim_store_peek(cl.sim, 1, ek.data, ek.len);
        assert_non_null(b);
        rec_bytes += b->len;
        missing++;
    }
    acl_stop(&cl, 2);
    n = &cl.sim->node[2];
    for (size_t i = 0; i < n->nkv; i++)
        n->kv[i].has_live = n->kv[i].has_durable = 0;
    sim_restart(cl.sim, 2);
    acl_start(&cl, 2);
    assert_true(diverging(&cl, 0) > 0);
    assert_int_equal(moor_aae_repair(cl.aae[2], NULL, 0, NULL, 0, 0), 0);
    for (int t = 0; t < 600; t++) {
        acl_run(&cl, 100);
        moor_aae_stats(cl.aae[2], &st);
        if (!st.running && st.ranges_done)
            break;
    }
    moor_aae_stats(cl.aae[2], &st);
    assert_false(st.running);
    assert_int_equal(st.ranges_done, st.ranges_total);
    assert_int_equal(diverging(&cl, 1), 0);
    print_message("wiped replica: %zu keys (%zu record bytes) repaired with %llu bytes sent and "
                  "%llu received: %.1f bytes per key over the records' %.1f\n",
                  missing, rec_bytes, (unsigned long long)st.bytes_sent,
                  (unsigned long long)st.bytes_received,
                  (double)(st.bytes_sent + st.bytes_received) / (double)missing,
                  (double)rec_bytes / (double)missing);
    assert_int_equal(st.keys_repaired, missing);
    /* at most 1.2 x the record plus 64 bytes per key */
    assert_true((double)(st.bytes_sent + st.bytes_received) <=
                1.2 * (double)rec_bytes + 64.0 * (double)missing);
    moor_buf_free(&ek);
    acl_free(&cl);
}

static uint64_t seeds_diverged; /* seeds whose replicas differed before the repair */

/* A repair stopped half way resumes with the ranges it had not done. */
static void test_repair_stops_and_resumes(void **state)
{
    acl_t cl;
    moor_aae_stats_t st;
    sim_node_t *n;
    uint32_t done_at_stop;
    uint64_t exchanges_at_stop;

    (void)state;
    acl_init(&cl, 31, 3, 0);
    acl_run(&cl, 1000);
    for (int k = 0; k < NKEYS; k++)
        acl_call(&cl, k % 3, 1, k, (uint32_t)k + 1, 0, 3);
    wait_quiet(&cl);
    acl_stop(&cl, 2);
    n = &cl.sim->node[2];
    for (size_t i = 0; i < n->nkv; i++)
        n->kv[i].has_live = n->kv[i].has_durable = 0;
    sim_restart(cl.sim, 2);
    acl_start(&cl, 2);
    acl_run(&cl, 100);
    assert_int_equal(moor_aae_repair(cl.aae[2], NULL, 0, NULL, 0, 0), 0);
    for (int t = 0; t < 10000; t++) {
        sim_step(cl.sim);
        moor_aae_stats(cl.aae[2], &st);
        if (st.ranges_done >= st.ranges_total / 3)
            break;
    }
    assert_int_equal(moor_aae_repair_stop(cl.aae[2]), 1);
    acl_run(&cl, 2000); /* the exchanges in flight finish */
    moor_aae_stats(cl.aae[2], &st);
    assert_false(st.running);
    done_at_stop = st.ranges_done;
    exchanges_at_stop = st.exchanges;
    assert_true(done_at_stop > 0 && done_at_stop < st.ranges_total);
    assert_true(diverging(&cl, 0) > 0);
    assert_int_equal(moor_aae_repair(cl.aae[2], NULL, 0, NULL, 0, 0), 0); /* resume */
    for (int t = 0; t < 600; t++) {
        acl_run(&cl, 100);
        moor_aae_stats(cl.aae[2], &st);
        if (!st.running)
            break;
    }
    assert_false(st.running);
    assert_int_equal(st.ranges_done, st.ranges_total);
    /* the ranges done before the stop were not exchanged again */
    assert_true(st.exchanges - exchanges_at_stop <= 2 * (st.ranges_total - done_at_stop));
    assert_int_equal(diverging(&cl, 1), 0);
    print_message("repair stopped at %u of %u ranges, resumed, done\n", done_at_stop,
                  st.ranges_total);
    acl_free(&cl);
}

/* One seed of the convergence property; 0 if the replicas converged. */
static int converge_seed(uint64_t seed, int verbose)
{
    acl_t cl;
    int down[SIM_MAX_NODES] = {0}, bad, nnodes = 3 + (int)(seed % 3);
    uint32_t value = 1;

    acl_init(&cl, seed, nnodes, 0);
    acl_run(&cl, 500);
    for (int round = 0; round < 60; round++) {
        sim_t *s = cl.sim;
        int node = (int)sim_range(s, 0, (uint64_t)nnodes - 1);
        /* faults: cut a link, heal, crash or restart a node */
        switch (sim_range(s, 0, 9)) {
        case 0: {
            int a = (int)sim_range(s, 0, (uint64_t)nnodes - 1);
            int b = (int)sim_range(s, 0, (uint64_t)nnodes - 1);
            if (a != b)
                sim_cut(s, a, b, 1);
            break;
        }
        case 1:
            sim_heal(s);
            break;
        case 2: {
            int x = (int)sim_range(s, 0, (uint64_t)nnodes - 1);
            if (!down[x]) {
                acl_stop(&cl, x);
                down[x] = 1;
            } else {
                sim_restart(s, x);
                acl_start(&cl, x);
                down[x] = 0;
            }
            break;
        }
        default:
            break;
        }
        for (int c = 0; c < 8; c++) {
            int k = (int)sim_range(s, 0, HOT - 1), op = (int)sim_range(s, 0, 3);
            int via = (node + c) % nnodes;
            if (down[via])
                continue;
            acl_call(&cl, via, op == 3 ? 2 : op == 0 ? 0 : 1, k, value++, (int)sim_range(s, 0, 1),
                     (uint32_t)sim_range(s, 1, 2));
        }
        acl_run(&cl, sim_range(s, 10, 400));
    }
    sim_heal(cl.sim);
    for (int i = 0; i < nnodes; i++)
        if (down[i]) {
            sim_restart(cl.sim, i);
            acl_start(&cl, i);
        }
    wait_quiet(&cl);
    acl_run(&cl, 1000);
    if (diverging(&cl, 0))
        seeds_diverged++;
    if (repair_all(&cl, 300 * 1000)) {
        if (verbose)
            print_message("seed %llu: the repairs did not end\n", (unsigned long long)seed);
        acl_free(&cl);
        return 1;
    }
    bad = diverging(&cl, verbose);
    if (bad && verbose)
        print_message("seed %llu: %d keys differ after one repair of every node\n",
                      (unsigned long long)seed, bad);
    acl_free(&cl);
    return bad;
}

static void test_converge_over_seeds(void **state)
{
    const char *one = getenv("MOOR_SIM_SEED"), *many = getenv("MOOR_SIM_SEEDS");
    uint64_t first = 1, count = 40, failed = 0;

    (void)state;
    if (one) {
        first = strtoull(one, NULL, 10);
        count = 1;
    } else if (many) {
        count = strtoull(many, NULL, 10);
    }
    for (uint64_t s = first; s < first + count; s++)
        if (converge_seed(s, 1))
            failed++;
    print_message("convergence: replicas differed before the repair in %llu of %llu seeds, "
                  "after it in %llu\n",
                  (unsigned long long)seeds_diverged, (unsigned long long)count,
                  (unsigned long long)failed);
    assert_int_equal(failed, 0);
    assert_true(seeds_diverged * 2 > count); /* the faults did make replicas differ */
}

/* A delete that a partitioned replica missed is not reaped while that
 * replica cannot confirm it; after the heal, repair gives it the
 * tombstone, a later repair reaps the key on every owner, and it never
 * comes back. */
static void test_reap_waits_for_every_replica(void **state)
{
    acl_t cl;
    moor_buf_t ek = MOOR_BUF_INIT;
    moor_aae_stats_t st;
    int own[3], k = 5, gone;

    (void)state;
    acl_init(&cl, 23, 3, 1000);
    acl_run(&cl, 1000);
    acl_call(&cl, 0, 1, k, 42, 0, 3);
    wait_quiet(&cl);
    owners(&cl, k, own);
    ekey_of(k, &ek);
    sim_isolate(cl.sim, own[2], 1);
    acl_call(&cl, own[0], 0, k, 0, 0, 2);
    wait_quiet(&cl);
    acl_call(&cl, own[0], 2, k, 0, 1, 2); /* delete with the ctx */
    wait_quiet(&cl);
    acl_run(&cl, 5000); /* past the grace */
    assert_int_equal(moor_aae_repair(cl.aae[own[0]], NULL, 0, NULL, 0, 1), 0);
    for (int t = 0; t < 300; t++) {
        acl_run(&cl, 100);
        moor_aae_stats(cl.aae[own[0]], &st);
        if (!st.running)
            break;
    }
    /* nothing reaped: the third owner could not confirm */
    assert_non_null(sim_store_peek(cl.sim, own[0], ek.data, ek.len));
    assert_non_null(sim_store_peek(cl.sim, own[1], ek.data, ek.len));
    assert_int_equal(st.tombstones_reaped, 0);
    sim_isolate(cl.sim, own[2], 0);
    /* Two repairs: the first hands over the tombstone, the second reaps. */
    for (int pass = 0; pass < 3; pass++) {
        acl_run(&cl, 2000);
        assert_int_equal(repair_all(&cl, 120 * 1000), 0);
    }
    gone = 1;
    for (int i = 0; i < 3; i++)
        gone &= sim_store_peek(cl.sim, own[i], ek.data, ek.len) == NULL;
    assert_true(gone);
    /* and a get finds nothing, repair after repair */
    assert_int_equal(repair_all(&cl, 120 * 1000), 0);
    for (int i = 0; i < 3; i++)
        assert_null(sim_store_peek(cl.sim, own[i], ek.data, ek.len));
    moor_buf_free(&ek);
    acl_free(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trees_follow_writes),
        cmocka_unit_test(test_trees_ignore_expiry_rewrites),
        cmocka_unit_test(test_wiped_replica_repaired),
        cmocka_unit_test(test_reap_waits_for_every_replica),
        cmocka_unit_test(test_repair_stops_and_resumes),
        cmocka_unit_test(test_converge_over_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
