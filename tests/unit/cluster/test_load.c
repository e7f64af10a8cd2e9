/*
 * test_load.c -- the epidemic load table (core/cluster/load.h) in the
 * simulator (sim.h): 20 nodes converge on every node's newest load with
 * messages lost, deterministically from the seed; malformed `_load`
 * messages are refused whole; stale entries carry their age and expire;
 * freeing with requests in flight waits for their answers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sim.h"
#include "cluster/load.h"
#include "util/mp.h"

#define NODES 20

typedef struct world {
    sim_t *s;
    moor_load_t *l[SIM_MAX_NODES];
    int n;
    int members; /* how many of the nodes the members callback lists */
} world_t;

static size_t members_fn(void *ud, const char **ids, size_t *lens, size_t max)
{
    world_t *w = ud;
    size_t k = 0;

    for (int i = 0; i < w->members && k < max; i++, k++) {
        ids[k] = w->s->node[i].id;
        lens[k] = w->s->node[i].idlen;
    }
    return k;
}

static void handler(void *ud, int node, const char *method, size_t mlen, const char *params,
                    size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    world_t *w = ud;

    assert_true(moor_load_is_method(method, mlen));
    if (!w->l[node]) { /* freed: the node is shutting down */
        done(arg, MOOR_ECLOSED, "closed", NULL, 0);
        return;
    }
    moor_load_handle(w->l[node], method, mlen, params, plen, nparams, done, arg);
}

/* {node = i, v = v, pad = "..."}: a load map of about 60 bytes */
static void set_load(world_t *w, int i, uint64_t v)
{
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, &b);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "node", 4);
    msgpack_pack_int(&pk, i);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint64(&pk, v);
    msgpack_pack_str_with_body(&pk, "pad", 3);
    msgpack_pack_str_with_body(&pk, "0123456789012345678901234567890123456789", 40);
    assert_int_equal(moor_load_set_local(w->l[i], b.data, b.len), 0);
    moor_buf_free(&b);
}

/* The v a load map holds (the map set_load writes). */
static uint64_t load_v(const moor_load_view_t *v)
{
    const char *p = v->load, *end = v->load + v->len, *k;
    uint32_t n, klen;
    uint64_t x = 0;

    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    while (n--) {
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        if (klen == 1 && k[0] == 'v')
            assert_int_equal(moor_mp_read_uint(&p, end, &x), 0);
        else
            assert_int_equal(moor_mp_skip(&p, end, 8), 0);
    }
    return x;
}

static world_t *world_new(uint64_t seed, int n, double loss)
{
    world_t *w = calloc(1, sizeof(*w));

    w->s = sim_new(seed, n, handler, w);
    w->s->loss = loss;
    w->n = w->members = n;
    for (int i = 0; i < n; i++) {
        moor_load_opts_t o;
        memset(&o, 0, sizeof(o));
        o.node_id = w->s->node[i].id;
        o.idlen = w->s->node[i].idlen;
        o.clock = sim_clock(w->s, i);
        o.transport = sim_transport(w->s, i);
        o.members = members_fn;
        o.members_ud = w;
        o.interval_ms = 1000;
        o.timeout_ms = 500;
        o.seed = seed * 131 + (uint64_t)i;
        assert_int_equal(moor_load_new(&o, &w->l[i]), 0);
        set_load(w, i, 1);
        moor_load_start(w->l[i]);
    }
    return w;
}

static void world_free(world_t *w)
{
    for (int i = 0; i < w->n; i++) {
        moor_load_free(w->l[i]);
        w->l[i] = NULL;
    }
    /* the answers still owed come (or time out) and free the last tables */
    sim_run_until(w->s, w->s->now + 5000, 10000000);
    assert_int_equal(w->s->st.harness_errors, 0);
    sim_free(w->s);
    free(w);
}

/* Whether every node holds every node's load at version want[i]. */
static int converged(world_t *w, const uint64_t *want)
{
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->n; j++) {
            moor_load_view_t v;
            if (!moor_load_find(w->l[i], w->s->node[j].id, w->s->node[j].idlen, &v) || v.len == 0 ||
                load_v(&v) != want[j])
                return 0;
        }
    return 1;
}

/* Runs until converged or limit_ms of simulated time; the time it took. */
static uint64_t run_converge(world_t *w, const uint64_t *want, uint64_t limit_ms)
{
    uint64_t t0 = w->s->now;

    while (!converged(w, want)) {
        if (w->s->now - t0 > limit_ms)
            return UINT64_MAX;
        sim_run_until(w->s, w->s->now + 100, 10000000);
    }
    return w->s->now - t0;
}

/* 20 nodes, 10% of messages lost: everyone learns everyone's load within
 * a few tens of rounds, then a change at one node spreads the same way. */
static void test_converges_with_loss(void **state)
{
    uint64_t seed = testutil_seed("test_load"), want[NODES], t;
    world_t *w = world_new(seed, NODES, 0.10);
    (void)state;

    for (int i = 0; i < NODES; i++)
        want[i] = 1;
    t = run_converge(w, want, 60000);
    printf("converged in %llu ms\n", (unsigned long long)t);
    assert_true(t != UINT64_MAX);
    for (int k = 0; k < 3; k++) {
        int i = (int)sim_range(w->s, 0, NODES - 1);
        want[i]++;
        set_load(w, i, want[i]);
        t = run_converge(w, want, 60000);
        printf("change at n%d spread in %llu ms\n", i, (unsigned long long)t);
        assert_true(t != UINT64_MAX);
    }
    {
        moor_load_stats_t st;
        moor_load_stats(w->l[0], &st);
        assert_true(st.rounds > 0 && st.sent > 0 && st.answered > 0 && st.merged > 0);
    }
    world_free(w);
}

/* The same seed gives the same run (the simulator's trace hash). */
static void test_deterministic(void **state)
{
    uint64_t seed = testutil_seed("test_load_det"), trace[2], want[NODES];
    (void)state;

    for (int r = 0; r < 2; r++) {
        world_t *w = world_new(seed, NODES, 0.2);
        for (int i = 0; i < NODES; i++)
            want[i] = 1;
        assert_true(run_converge(w, want, 120000) != UINT64_MAX);
        sim_run_until(w->s, w->s->now + 5000, 10000000);
        trace[r] = w->s->trace;
        world_free(w);
    }
    assert_int_equal(trace[0], trace[1]);
}

/* Runs ms of simulated time with the first `live` nodes publishing every
 * second, as a node's server does. */
static void run_publishing(world_t *w, int live, uint64_t ms)
{
    for (uint64_t t = 0; t < ms; t += 1000) {
        for (int i = 0; i < live; i++)
            set_load(w, i, 1);
        sim_run_until(w->s, w->s->now + 1000, 10000000);
    }
}

/* A node that stops publishing keeps its last load with a growing age,
 * and is dropped after expire_ms. */
static void test_age_and_expiry(void **state)
{
    world_t *w = world_new(7, 3, 0.0);
    uint64_t want[3] = {1, 1, 1};
    moor_load_view_t v;
    (void)state;

    assert_true(run_converge(w, want, 20000) != UINT64_MAX);
    /* n2 goes silent: crashes (its timers stop) */
    sim_crash(w->s, 2, 0);
    moor_load_free(w->l[2]);
    w->l[2] = NULL;
    sim_release(w->s, 2);
    w->n = 2;
    w->members = 2;
    run_publishing(w, 2, 10000);
    assert_true(moor_load_find(w->l[0], "n2", 2, &v));
    assert_in_range(v.age_ms, 9000, 40000);
    run_publishing(w, 2, MOOR_LOAD_EXPIRE_MS);
    assert_false(moor_load_find(w->l[0], "n2", 2, &v));
    assert_true(moor_load_find(w->l[0], "n1", 2, &v));
    assert_true(v.age_ms < 5000);
    world_free(w);
}

/* ---- the decoder ---- */

typedef struct seen {
    int n;
    uint64_t seqs[8];
} seen_t;

static void seen_fn(void *ud, const char *id, size_t idlen, uint64_t seq, const char *load,
                    size_t len, uint64_t age_ms)
{
    seen_t *s = ud;

    (void)id, (void)idlen, (void)load, (void)len, (void)age_ms;
    if (s->n < 8)
        s->seqs[s->n] = seq;
    s->n++;
}

/* Packs {from = "a", loads = [entries...]} with nent copies of
 * [id, seq, load] where load is the raw map bytes given. */
static void pack_msg(moor_buf_t *b, int nent, const char *id, size_t idlen, const char *map,
                     size_t mlen)
{
    msgpack_packer pk;

    moor_buf_reset(b);
    moor_mp_packer_init(&pk, b);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "from", 4);
    msgpack_pack_bin_with_body(&pk, "a", 1);
    msgpack_pack_str_with_body(&pk, "loads", 5);
    msgpack_pack_array(&pk, (uint32_t)nent);
    for (int i = 0; i < nent; i++) {
        msgpack_pack_array(&pk, 3);
        msgpack_pack_bin_with_body(&pk, id, idlen);
        msgpack_pack_uint64(&pk, (uint64_t)i + 5);
        moor_buf_append(b, map, mlen);
    }
}

static void test_decode_bounds(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    seen_t s;
    const char *from;
    size_t flen;
    char id65[65], big[MOOR_LOAD_MAX_BYTES + 16];
    (void)state;

    memset(id65, 'x', sizeof(id65));
    /* good: two entries */
    pack_msg(&b, 2, "n1", 2, "\x81\xa1x\x01", 4);
    memset(&s, 0, sizeof(s));
    assert_int_equal(moor_load_decode(b.data, b.len, seen_fn, &s, &from, &flen), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.seqs[1], 6);
    assert_int_equal(flen, 1);
    /* an id of 65 bytes, an empty id */
    pack_msg(&b, 1, id65, 65, "\x80", 1);
    assert_int_equal(moor_load_decode(b.data, b.len, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    pack_msg(&b, 1, "", 0, "\x80", 1);
    assert_int_equal(moor_load_decode(b.data, b.len, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    /* a load that is not a map; one nested too deep; one too large */
    pack_msg(&b, 1, "n1", 2, "\x91\x01", 2);
    assert_int_equal(moor_load_decode(b.data, b.len, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    pack_msg(&b, 1, "n1", 2, "\x81\xa1x\x81\xa1x\x81\xa1x\x81\xa1x\x81\xa1x\x01", 16);
    assert_int_equal(moor_load_decode(b.data, b.len, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    big[0] = (char)0x81, big[1] = (char)0xa1, big[2] = 'x', big[3] = (char)0xda;
    big[4] = (char)((MOOR_LOAD_MAX_BYTES + 5) >> 8);
    big[5] = (char)((MOOR_LOAD_MAX_BYTES + 5) & 0xff);
    memset(big + 6, 'y', sizeof(big) - 6);
    pack_msg(&b, 1, "n1", 2, big, 6 + MOOR_LOAD_MAX_BYTES + 5); /* a str of max + 5 bytes */
    assert_int_equal(moor_load_decode(b.data, b.len, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    /* a bad entry after a good one: nothing passed to fn */
    pack_msg(&b, 2, "n1", 2, "\x80", 1);
    b.data[b.len - 1] = (char)0x01; /* the second load becomes an integer */
    memset(&s, 0, sizeof(s));
    assert_int_equal(moor_load_decode(b.data, b.len, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    assert_int_equal(s.n, 0);
    /* truncated, trailing bytes, an array count past the bytes, not a map */
    pack_msg(&b, 2, "n1", 2, "\x80", 1);
    assert_int_equal(moor_load_decode(b.data, b.len - 1, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    moor_buf_append(&b, "\xc0", 1);
    assert_int_equal(moor_load_decode(b.data, b.len, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    assert_int_equal(
        moor_load_decode("\x81\xa5loads\xdd\xff\xff\xff\xff", 11, seen_fn, &s, NULL, NULL),
        MOOR_EPROTO);
    assert_int_equal(moor_load_decode("\x90", 1, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    assert_int_equal(moor_load_decode("\x80", 1, seen_fn, &s, NULL, NULL), MOOR_EPROTO);
    moor_buf_free(&b);
}

/* ---- handle, set_local, free with requests in flight ---- */

static int got_code;
static moor_buf_t got;

static void done_fn(void *arg, int code, const char *errmsg, const char *res, size_t rlen)
{
    (void)arg, (void)errmsg;
    got_code = code;
    moor_buf_reset(&got);
    if (res)
        moor_buf_append(&got, res, rlen);
}

static void test_handle_and_local(void **state)
{
    world_t *w = world_new(3, 2, 0.0);
    moor_buf_t b = MOOR_BUF_INIT;
    moor_load_view_t v;
    seen_t s;
    (void)state;

    /* set_local refuses what is not one bounded map */
    assert_int_equal(moor_load_set_local(w->l[0], "\x01", 1), MOOR_EINVAL);
    assert_int_equal(moor_load_set_local(w->l[0], "\x80\x80", 2), MOOR_EINVAL);
    /* a peer's table merges; the answer is ours */
    pack_msg(&b, 1, "zz", 2, "\x81\xa1v\x07", 4);
    moor_load_handle(w->l[0], "_load", 5, b.data, b.len, 1, done_fn, NULL);
    assert_int_equal(got_code, 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(moor_load_decode(got.data, got.len, seen_fn, &s, NULL, NULL), 0);
    assert_int_equal(s.n, 2); /* n0 and zz */
    assert_true(moor_load_find(w->l[0], "zz", 2, &v));
    assert_int_equal(v.seq, 5);
    /* an older seq does not replace it; our own entry is never replaced */
    moor_load_find(w->l[0], "n0", 2, &v);
    {
        uint64_t mine = v.seq;
        pack_msg(&b, 1, "n0", 2, "\x80", 1);
        moor_load_handle(w->l[0], "_load", 5, b.data, b.len, 1, done_fn, NULL);
        moor_load_find(w->l[0], "n0", 2, &v);
        assert_int_equal(v.seq, mine);
        assert_true(v.seq > 1000); /* clock-based first seq */
    }
    /* malformed, or not one param: refused, nothing merged */
    moor_load_handle(w->l[0], "_load", 5, "\x01", 1, 1, done_fn, NULL);
    assert_int_equal(got_code, MOOR_EPROTO);
    moor_load_handle(w->l[0], "_load", 5, b.data, b.len, 2, done_fn, NULL);
    assert_int_equal(got_code, MOOR_EPROTO);
    assert_int_equal(moor_load_count(w->l[0]), 2);
    /* free with a round in flight: its answer comes later and frees it */
    sim_run_until(w->s, w->s->now + 1001, 1000000); /* round sent, answer pending */
    world_free(w);
    moor_buf_free(&b);
    moor_buf_free(&got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_bounds),       cmocka_unit_test(test_handle_and_local),
        cmocka_unit_test(test_converges_with_loss), cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_age_and_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
