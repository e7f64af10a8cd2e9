/*
 * test_xfer.c -- joins and leaves (core/cluster/xfer.c) in the simulation:
 * coordinators and streams on sim.h, with a member table that reaches
 * each node after its own random delay (as gossip would).
 *
 * Per seed: three members own the ring (8 tokens each, n = 3) and hold
 * PRE keys on all three replicas; a fourth joins while clients write new
 * keys (w = 2) and read the old ones (r = 2 anywhere, r = 1 through the
 * joining node), under 1% message loss, with a crash and restart of the
 * joining node in the middle (it resumes from its saved progress) and a
 * partition between it and one old member for a while; then one of the
 * first three leaves the same way; then a fifth joins, and one of the
 * first three dies for good and is removed (its tokens never handed off:
 * every member repairs its ranges by anti-entropy).  Checked: no read of an existing key
 * answers nothing, the joiner ends `up` with all its tokens and the
 * leaver `left` with none, every PRE key is on every owner of the final
 * ring, and every acknowledged write is read back at r = 2; after the
 * join, once the ring has been still for a while, the cleanup leaves every
 * old key on its owners only.  Seeds:
 * MOOR_SIM_SEEDS=<count> (default 30, 8 under ASan), MOOR_SIM_SEED=<s>
 * for one.
 *
 * Also: the ring's balance and data moved per join/leave with 1,000
 * members (printed), and the membership rules a move relies on.
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
#include "cluster/membership.h"
#include "cluster/record.h"
#include "cluster/xfer.h"
#include "util/err.h"
#include "util/mp.h"
#include "sim.h"
#include "testutil.h"

#define SPACE "default"
#define PRE 240     /* keys written before any move, on all three replicas */
#define NEWMAX 4000 /* keys written during the moves */
#define VNODES 8
#define NODES 5
/* Seeds of the join/leave property: fewer in the sanitizer build, where a
 * run takes several times longer. */
#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_SEEDS 8
#else
#define DEFAULT_SEEDS 30
#endif

typedef struct world {
    sim_t *sim;
    moor_members_t tab; /* the truth; each node's view follows it with a delay */
    moor_coord_t *coord[SIM_MAX_NODES];
    moor_xfer_t *xfer[SIM_MAX_NODES];
    moor_aae_t *aae[SIM_MAX_NODES];
    int started[SIM_MAX_NODES];
    int traffic;
    uint64_t reads, misses, one_reads, one_misses, read_errors;
    uint32_t nnew;
    uint8_t acked[NEWMAX]; /* new key i: 1 acknowledged */
    uint32_t inflight;
} world_t;

static void handler(void *ud, int node, const char *method, size_t mlen, const char *params,
                    size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    world_t *w = ud;

    if (moor_xfer_is_method(method, mlen)) {
        if (!w->xfer[node]) {
            done(arg, MOOR_EUNAVAIL, "no transfer service", NULL, 0);
            return;
        }
        moor_xfer_handle(w->xfer[node], method, mlen, params, plen, nparams, done, arg);
    } else if (moor_aae_is_method(method, mlen)) {
        moor_aae_handle(w->aae[node], method, mlen, params, plen, nparams, done, arg);
    } else {
        moor_coord_handle_peer(w->coord[node], method, mlen, params, plen, nparams, done, arg);
    }
}

/* ---- the member table and its spread ---- */

static void refresh(world_t *w, int i)
{
    moor_ring_t *ring = NULL, *pend[MOOR_COORD_PENDING_MAX];
    uint32_t np = 0;

    if (!w->sim->node[i].up || !w->coord[i])
        return;
    if (moor_members_ring(&w->tab, &ring) == 0) {
        moor_coord_set_ring(w->coord[i], ring);
        moor_aae_set_ring(w->aae[i], ring);
        moor_ring_free(ring);
    }
    if (moor_xfer_pending_rings(&w->tab, pend, MOOR_COORD_PENDING_MAX, &np) == 0) {
        moor_coord_set_pending(w->coord[i], pend, np);
        for (uint32_t k = 0; k < np; k++)
            moor_ring_free(pend[k]);
    }
    moor_xfer_set_members(w->xfer[i], &w->tab);
}

static void refresh_ev(sim_t *s, sim_ev_t *ev)
{
    world_t *w = s->handler_ud;

    refresh(w, ev->node);
}

static void spread(world_t *w)
{
    for (int i = 0; i < NODES; i++)
        if (w->started[i])
            sim_schedule(w->sim, sim_range(w->sim, 5, 400), i, refresh_ev, NULL);
}

static void entry_of(world_t *w, int i, int status, uint32_t inactive, moor_member_entry_t *e)
{
    const moor_member_entry_t *cur = moor_members_find(&w->tab, w->sim->node[i].id,
                                                       w->sim->node[i].idlen);
    memset(e, 0, sizeof(*e));
    e->m.idlen = (uint8_t)w->sim->node[i].idlen;
    memcpy(e->m.id, w->sim->node[i].id, e->m.idlen);
    snprintf(e->m.addr, sizeof(e->m.addr), "127.0.0.%d:7700", i + 1);
    e->m.vnodes = VNODES;
    e->m.status = status;
    e->m.inactive = inactive;
    e->incarnation = cur ? cur->incarnation + 1 : 1;
}

typedef struct pub {
    world_t *w;
    int node;
} pub_t;

static int publish(void *ud, int status, uint32_t inactive)
{
    pub_t *p = ud;
    moor_member_entry_t e;
    int rc;

    entry_of(p->w, p->node, status, inactive, &e);
    if ((rc = moor_members_apply(&p->w->tab, &e)) < 0)
        return rc;
    spread(p->w);
    return 0;
}

static pub_t pubs[SIM_MAX_NODES];

static int merge_hook(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                      moor_store_done_fn done, void *arg)
{
    return moor_coord_merge_peer_record(*(moor_coord_t **)ud, key, klen, rec, rlen, done, arg);
}

static void note_hook(void *ud, const char *key, size_t klen, const char *old, size_t oldlen,
                      const char *rec, size_t rlen)
{
    moor_aae_note(*(moor_aae_t **)ud, key, klen, old, oldlen, rec, rlen);
}

static void start_node(world_t *w, int i)
{
    moor_aae_space_t asp = {SPACE, sizeof(SPACE) - 1, 3, 0};
    moor_aae_opts_t a;
    moor_coord_opts_t o;
    moor_xfer_opts_t x;
    moor_xfer_space_t sp = {SPACE, sizeof(SPACE) - 1, 3};
    int rc;

    memset(&o, 0, sizeof(o));
    o.node_id = w->sim->node[i].id;
    o.idlen = w->sim->node[i].idlen;
    o.clock = sim_clock(w->sim, i);
    o.transport = sim_transport(w->sim, i);
    o.store = sim_store(w->sim, i);
    o.timeout_ms = 500;
    o.on_write = note_hook;
    o.on_write_ud = &w->aae[i];
    memset(&a, 0, sizeof(a));
    a.node_id = w->sim->node[i].id;
    a.idlen = w->sim->node[i].idlen;
    a.clock = sim_clock(w->sim, i);
    a.transport = sim_transport(w->sim, i);
    a.store = sim_store(w->sim, i);
    a.merge_local = merge_hook;
    a.merge_ud = &w->coord[i];
    a.spaces = &asp;
    a.nspaces = 1;
    a.timeout_ms = 500;
    if ((rc = moor_aae_new(&a, &w->aae[i])))
        fail_msg("moor_aae_new: %s", moor_diag_msg(rc));
    if ((rc = moor_coord_new(&o, &w->coord[i])))
        fail_msg("moor_coord_new: %s", moor_diag_msg(rc));
    memset(&x, 0, sizeof(x));
    x.node_id = w->sim->node[i].id;
    x.idlen = w->sim->node[i].idlen;
    x.clock = sim_clock(w->sim, i);
    x.transport = sim_transport(w->sim, i);
    x.store = sim_store(w->sim, i);
    x.merge = merge_hook;
    x.merge_ud = &w->coord[i];
    x.spaces = &sp;
    x.nspaces = 1;
    moor_xfer_params_default(&x.p);
    x.p.page_kb = 2; /* many pages: resumption is exercised */
    x.p.settle_ms = 600;
    x.p.timeout_ms = 500;
    x.p.rate_kb_s = 256;
    x.p.cleanup_ms = 5000;
    pubs[i].w = w;
    pubs[i].node = i;
    x.publish = publish;
    x.ud = &pubs[i];
    if ((rc = moor_xfer_new(&x, &w->xfer[i])))
        fail_msg("moor_xfer_new: %s", moor_diag_msg(rc));
    w->started[i] = 1;
    refresh(w, i);
}

static void stop_node(world_t *w, int i)
{
    sim_crash(w->sim, i, 1);
    moor_coord_free(w->coord[i]);
    moor_xfer_free(w->xfer[i]);
    moor_aae_free(w->aae[i]);
    w->coord[i] = NULL;
    w->xfer[i] = NULL;
    w->aae[i] = NULL;
    sim_release(w->sim, i);
}

/* A crash and restart: the new process reads its saved progress and goes
 * on with the move. */
static void restart_node(world_t *w, int i)
{
    int state;
    uint32_t inactive;

    stop_node(w, i);
    sim_restart(w->sim, i);
    start_node(w, i);
    assert_int_equal(moor_xfer_load(w->xfer[i], &state, &inactive), 0);
    if (state == MOOR_XFER_JOINING || state == MOOR_XFER_LEAVING)
        assert_int_equal(moor_xfer_start(w->xfer[i], state, VNODES, inactive), 0);
}

/* ---- clients ---- */

typedef struct call {
    world_t *w;
    int key, get, one;
} call_t;

static void pre_name(int k, char *out)
{
    snprintf(out, 24, "pre%04d", k);
}

static void new_name(int k, char *out)
{
    snprintf(out, 24, "new%05d", k);
}

static void call_done(void *arg, int code, const char *errmsg, const char *res, size_t rlen)
{
    call_t *c = arg;
    world_t *w = c->w;

    (void)errmsg;
    w->inflight--;
    if (c->get) {
        if (code) {
            w->read_errors++;
        } else if (rlen == 1 && (unsigned char)res[0] == 0xc0) {
            if (c->one)
                w->one_misses++;
            else
                w->misses++;
        }
    } else if (code == 0 && c->key >= 0) {
        w->acked[c->key] = 1;
    }
    free(c);
}

static void call(world_t *w, int node, int get, const char *key, int newkey, uint32_t r,
                 uint32_t wq)
{
    moor_coord_req_t q;
    call_t *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->w = w;
    c->key = newkey;
    c->get = get;
    c->one = get && r == 1;
    memset(&q, 0, sizeof(q));
    q.space = SPACE;
    q.slen = sizeof(SPACE) - 1;
    q.key = key;
    q.klen = strlen(key);
    q.n = 3;
    q.r = r;
    q.w = wq;
    w->inflight++;
    if (get) {
        moor_coord_get(w->coord[node], &q, call_done, c);
    } else {
        static const char v[] = "\xa5value";
        q.value = v;
        q.vlen = 6;
        moor_coord_put(w->coord[node], &q, call_done, c);
    }
}

/* A member whose view includes the ring and that is up in the table. */
static int pick_coord(world_t *w)
{
    for (int tries = 0; tries < 32; tries++) {
        int i = (int)sim_range(w->sim, 0, NODES - 1);
        const moor_member_entry_t *e;
        if (!w->started[i] || !w->sim->node[i].up || !w->coord[i])
            continue;
        e = moor_members_find(&w->tab, w->sim->node[i].id, w->sim->node[i].idlen);
        if (e && e->m.status != MOOR_MEMBER_LEFT)
            return i;
    }
    return -1;
}

static void traffic_ev(sim_t *s, sim_ev_t *ev)
{
    world_t *w = s->handler_ud;
    char key[24];
    int i, joiner = 3;

    (void)ev;
    if (!w->traffic)
        return;
    if ((i = pick_coord(w)) >= 0) {
        switch (sim_range(s, 0, 3)) {
        case 0:
        case 1:
            if (w->nnew < NEWMAX) {
                new_name((int)w->nnew, key);
                call(w, i, 0, key, (int)w->nnew++, 0, 2);
            }
            break;
        case 2:
            pre_name((int)sim_range(s, 0, PRE - 1), key);
            w->reads++;
            call(w, i, 1, key, -1, 2, 0);
            break;
        default:
            if (w->coord[joiner] && s->node[joiner].up) {
                pre_name((int)sim_range(s, 0, PRE - 1), key);
                w->one_reads++;
                call(w, joiner, 1, key, -1, 1, 0);
            }
        }
    }
    sim_schedule(s, 4, -1, traffic_ev, NULL);
}

static void run_ms(world_t *w, uint64_t ms)
{
    sim_run_until(w->sim, w->sim->now + ms, 50 * 1000 * 1000);
}

static int state_of(world_t *w, int i)
{
    moor_xfer_stats_t st;

    if (!w->xfer[i])
        return -1;
    moor_xfer_stats(w->xfer[i], &st);
    return st.state;
}

/* Runs until node i's move ends (bounded), with one restart of it and a
 * partition of it from node cut on the way. */
static void run_move(world_t *w, int i, int cut, uint64_t seed)
{
    uint64_t start = w->sim->now, crash_at = start + 700 + (seed * 977) % 2500;
    int crashed = 0, healed = 0;

    sim_cut(w->sim, i, cut, 1);
    sim_cut(w->sim, cut, i, 1);
    while (w->sim->now - start < 300000) {
        int st = state_of(w, i);
        if (st == MOOR_XFER_IDLE || st == MOOR_XFER_LEFT)
            break;
        run_ms(w, 50);
        if (!crashed && w->sim->now >= crash_at) {
            restart_node(w, i);
            crashed = 1;
        }
        if (!healed && w->sim->now - start > 1500) {
            sim_heal(w->sim);
            healed = 1;
        }
    }
    sim_heal(w->sim);
}

static void check_final(world_t *w, uint64_t seed)
{
    moor_ring_t *ring;
    uint32_t owners[3], cnt;
    int rc;
    uint64_t missing = 0;

    assert_int_equal(moor_members_ring(&w->tab, &ring), 0);
    for (int k = 0; k < PRE; k++) {
        char key[24];
        moor_buf_t ek = MOOR_BUF_INIT;
        uint64_t token;
        pre_name(k, key);
        assert_int_equal(moor_record_key(SPACE, sizeof(SPACE) - 1, key, strlen(key), &ek), 0);
        assert_int_equal(moor_ring_key_token(SPACE, sizeof(SPACE) - 1, key, strlen(key), &token),
                         0);
        rc = moor_ring_preference_list(ring, token, 3, owners, &cnt);
        assert_int_equal(rc, 0);
        assert_int_equal(cnt, 3);
        for (uint32_t j = 0; j < cnt; j++) {
            const moor_member_t *m = moor_ring_member(ring, owners[j]);
            int node = sim_node_by_id(w->sim, m->id, m->idlen);
            if (!sim_store_peek(w->sim, node, ek.data, ek.len))
                missing++;
        }
        moor_buf_free(&ek);
    }
    moor_ring_free(ring);
    if (missing)
        fail_msg("seed %llu: %llu copies of old keys missing on their final owners",
                 (unsigned long long)seed, (unsigned long long)missing);
}

/* After the cleanups: no running node holds an old key it does not
 * replicate, and every owner still does. */
static void check_clean(world_t *w, uint64_t seed)
{
    moor_ring_t *ring;
    uint64_t extra = 0, cleaned = 0;

    assert_int_equal(moor_members_ring(&w->tab, &ring), 0);
    for (int k = 0; k < PRE; k++) {
        char key[24];
        moor_buf_t ek = MOOR_BUF_INIT;
        uint64_t token;
        uint32_t owners[3], cnt;
        pre_name(k, key);
        assert_int_equal(moor_record_key(SPACE, sizeof(SPACE) - 1, key, strlen(key), &ek), 0);
        assert_int_equal(moor_ring_key_token(SPACE, sizeof(SPACE) - 1, key, strlen(key), &token),
                         0);
        assert_int_equal(moor_ring_preference_list(ring, token, 3, owners, &cnt), 0);
        for (int i = 0; i < NODES; i++) {
            int owner = 0;
            if (!w->coord[i])
                continue;
            for (uint32_t j = 0; j < cnt; j++) {
                const moor_member_t *m = moor_ring_member(ring, owners[j]);
                owner |= sim_node_by_id(w->sim, m->id, m->idlen) == i;
            }
            if (!owner && sim_store_peek(w->sim, i, ek.data, ek.len))
                extra++;
            if (owner && !sim_store_peek(w->sim, i, ek.data, ek.len))
                fail_msg("seed %llu: the cleanup dropped an owner's copy of %s",
                         (unsigned long long)seed, key);
        }
        moor_buf_free(&ek);
    }
    for (int i = 0; i < NODES; i++)
        if (w->xfer[i]) {
            moor_xfer_stats_t st;
            moor_xfer_stats(w->xfer[i], &st);
            cleaned += st.keys_cleaned;
        }
    moor_ring_free(ring);
    if (extra)
        fail_msg("seed %llu: %llu copies of old keys left on members that hand them off",
                 (unsigned long long)seed, (unsigned long long)extra);
    if (cleaned == 0)
        fail_msg("seed %llu: no cleanup ran", (unsigned long long)seed);
}

/* Every acknowledged new key read back at r = 2 (no faults now). */
static void check_acked(world_t *w, uint64_t seed)
{
    uint64_t acked = 0;

    w->misses = w->read_errors = 0;
    for (uint32_t k = 0; k < w->nnew; k++) {
        char key[24];
        int i = pick_coord(w);
        if (!w->acked[k])
            continue;
        acked++;
        new_name((int)k, key);
        call(w, i, 1, key, -1, 2, 0);
        if (w->inflight > 64)
            run_ms(w, 100);
    }
    run_ms(w, 3000);
    if (w->misses || w->read_errors)
        fail_msg("seed %llu: %llu of %llu acknowledged writes not found (%llu errors)",
                 (unsigned long long)seed, (unsigned long long)w->misses,
                 (unsigned long long)acked, (unsigned long long)w->read_errors);
}

static void one_seed(uint64_t seed, int verbose)
{
    world_t *w = calloc(1, sizeof(*w));
    moor_member_entry_t e;
    moor_xfer_stats_t st;
    const moor_member_entry_t *me;
    char key[24];

    assert_non_null(w);
    moor_members_init(&w->tab);
    w->sim = sim_new(seed, NODES, handler, w);
    for (int i = 0; i < 3; i++) {
        entry_of(w, i, MOOR_MEMBER_UP, 0, &e);
        assert_int_equal(moor_members_apply(&w->tab, &e), 1);
    }
    for (int i = 0; i < 3; i++)
        start_node(w, i);
    for (int k = 0; k < PRE; k++) {
        pre_name(k, key);
        call(w, k % 3, 0, key, -1, 0, 3);
    }
    run_ms(w, 3000);
    assert_int_equal(w->inflight, 0);

    /* a fourth member joins under traffic and faults */
    w->sim->loss = 0.01;
    w->traffic = 1;
    sim_schedule(w->sim, 1, -1, traffic_ev, NULL);
    run_ms(w, 500);
    start_node(w, 3);
    assert_int_equal(moor_xfer_start(w->xfer[3], MOOR_XFER_JOINING, VNODES, VNODES), 0);
    run_move(w, 3, (int)(seed % 3), seed);
    me = moor_members_find(&w->tab, w->sim->node[3].id, w->sim->node[3].idlen);
    assert_non_null(me);
    if (me->m.status != MOOR_MEMBER_UP || me->m.inactive != 0)
        fail_msg("seed %llu: the joiner ended %s with %u tokens off", (unsigned long long)seed,
                 moor_member_status_name(me->m.status), me->m.inactive);
    moor_xfer_stats(w->xfer[3], &st);
    if (verbose)
        printf("seed %llu: join moved %llu keys (%llu bytes) in %llu ranges; ideal %.0f keys\n",
               (unsigned long long)seed, (unsigned long long)st.keys_received,
               (unsigned long long)st.bytes_received, (unsigned long long)st.ranges_done,
               (double)(PRE + w->nnew) * 3 / 4);

    /* the ring is still for a while: each member drops what it handed off */
    run_ms(w, 12000);
    check_clean(w, seed);

    /* then one of the first three leaves */
    moor_xfer_start(w->xfer[1], MOOR_XFER_LEAVING, VNODES, 0);
    run_move(w, 1, 2, seed + 1);
    me = moor_members_find(&w->tab, w->sim->node[1].id, w->sim->node[1].idlen);
    if (me->m.status != MOOR_MEMBER_LEFT)
        fail_msg("seed %llu: the leaver ended %s", (unsigned long long)seed,
                 moor_member_status_name(me->m.status));
    w->traffic = 0;
    w->sim->loss = 0;
    run_ms(w, 3000);
    stop_node(w, 1); /* left: shut down, its replicas must not be needed */

    if (w->misses || w->one_misses)
        fail_msg("seed %llu: reads of existing keys answered nothing: %llu of %llu at r=2, "
                 "%llu of %llu at r=1 through the joiner",
                 (unsigned long long)seed, (unsigned long long)w->misses,
                 (unsigned long long)w->reads, (unsigned long long)w->one_misses,
                 (unsigned long long)w->one_reads);
    check_final(w, seed);
    check_acked(w, seed);

    /* a fifth member joins; then one dies for good and is removed: the
     * others rebuild its ranges by repair */
    w->traffic = 1;
    w->sim->loss = 0.01;
    sim_schedule(w->sim, 1, -1, traffic_ev, NULL);
    start_node(w, 4);
    assert_int_equal(moor_xfer_start(w->xfer[4], MOOR_XFER_JOINING, VNODES, VNODES), 0);
    run_move(w, 4, 0, seed + 2);
    me = moor_members_find(&w->tab, w->sim->node[4].id, w->sim->node[4].idlen);
    if (me->m.status != MOOR_MEMBER_UP)
        fail_msg("seed %llu: the second joiner ended %s", (unsigned long long)seed,
                 moor_member_status_name(me->m.status));
    stop_node(w, 2);
    run_ms(w, 2000);
    entry_of(w, 2, MOOR_MEMBER_LEFT, 0, &e); /* removed: its tokens were never handed off */
    assert_int_equal(moor_members_apply(&w->tab, &e), 1);
    spread(w);
    run_ms(w, 1500);
    w->traffic = 0;
    w->sim->loss = 0;
    for (int i = 0; i < NODES; i++)
        if (w->aae[i])
            assert_int_equal(moor_aae_repair(w->aae[i], NULL, 0, NULL, 0, 1), 0);
    for (int t = 0; t < 600; t++) {
        int busy = 0;
        for (int i = 0; i < NODES; i++)
            if (w->aae[i]) {
                moor_aae_stats_t as;
                moor_aae_stats(w->aae[i], &as);
                busy |= as.running;
            }
        if (!busy)
            break;
        run_ms(w, 200);
    }
    check_final(w, seed);
    check_acked(w, seed);
    if (verbose)
        printf("seed %llu: %u writes during the moves, %llu reads at r=2, %llu at r=1 via the "
               "joiner, 0 answered nothing\n",
               (unsigned long long)seed, w->nnew, (unsigned long long)w->reads,
               (unsigned long long)w->one_reads);
    if (w->sim->st.harness_errors)
        fail_msg("harness: %s", w->sim->first_error);
    for (int i = 0; i < NODES; i++)
        if (w->coord[i]) {
            moor_coord_free(w->coord[i]);
            moor_xfer_free(w->xfer[i]);
            moor_aae_free(w->aae[i]);
        }
    sim_free(w->sim);
    moor_members_free(&w->tab);
    free(w);
}

static void test_join_leave_seeds(void **state)
{
    const char *one = getenv("MOOR_SIM_SEED"), *many = getenv("MOOR_SIM_SEEDS");
    uint64_t n = many ? strtoull(many, NULL, 10) : DEFAULT_SEEDS;

    (void)state;
    if (one) {
        one_seed(strtoull(one, NULL, 10), 1);
        return;
    }
    for (uint64_t s = 1; s <= n; s++)
        one_seed(s, s == 1);
    printf("join and leave under traffic, loss, a restart and a partition: %llu seeds ok\n",
           (unsigned long long)n);
}

/* ---- membership rules ---- */

static void test_left_is_final(void **state)
{
    moor_members_t t;
    moor_member_entry_t e;

    (void)state;
    moor_members_init(&t);
    memset(&e, 0, sizeof(e));
    e.m.idlen = 2;
    memcpy(e.m.id, "n1", 2);
    strcpy(e.m.addr, "127.0.0.1:1");
    e.m.vnodes = 8;
    e.m.status = MOOR_MEMBER_LEFT;
    e.incarnation = 3;
    assert_int_equal(moor_members_apply(&t, &e), 1);
    e.m.status = MOOR_MEMBER_UP;
    e.incarnation = 9; /* a stale process of a removed node */
    assert_int_equal(moor_members_apply(&t, &e), 0);
    assert_int_equal(moor_members_find(&t, "n1", 2)->m.status, MOOR_MEMBER_LEFT);
    assert_int_equal(moor_members_refute(&t, "n1", 2, 9), 0);
    moor_members_free(&t);
}

static void test_inactive_wire(void **state)
{
    moor_members_t t, d;
    moor_member_entry_t e;
    moor_buf_t b = MOOR_BUF_INIT;
    const char *p;
    moor_ring_t *ring;

    (void)state;
    moor_members_init(&t);
    memset(&e, 0, sizeof(e));
    e.m.idlen = 2;
    memcpy(e.m.id, "n1", 2);
    e.m.vnodes = 8;
    e.m.status = MOOR_MEMBER_JOINING;
    e.m.inactive = 5;
    e.incarnation = 1;
    assert_int_equal(moor_members_apply(&t, &e), 1);
    memcpy(e.m.id, "n2", 2);
    e.m.status = MOOR_MEMBER_UP;
    e.m.inactive = 0;
    assert_int_equal(moor_members_apply(&t, &e), 1);
    assert_int_equal(moor_members_encode(&t, &b), 0);
    p = b.data;
    assert_int_equal(moor_members_decode(&p, b.data + b.len, &d), 0);
    assert_int_equal(moor_members_find(&d, "n1", 2)->m.inactive, 5);
    assert_int_equal(moor_members_ring(&d, &ring), 0);
    assert_int_equal(moor_ring_vnode_count(ring), 3 + 8); /* 3 of n1's tokens are on */
    moor_ring_free(ring);
    e.m.inactive = 9; /* over vnodes */
    assert_int_equal(moor_members_apply(&d, &e), MOOR_EINVAL);
    moor_members_free(&d);
    moor_members_free(&t);
    moor_buf_free(&b);
}

/* ---- balance at scale ---- */

static void test_balance_1000(void **state)
{
    enum { N = 1000, V = 64 };
    moor_member_t *m = calloc(N + 1, sizeof(*m));
    moor_ring_t *ring, *plus, *minus;
    double mx = 0, sum = 0, moved_in, moved_out;

    (void)state;
    assert_non_null(m);
    for (int i = 0; i <= N; i++) {
        m[i].idlen = (uint8_t)snprintf(m[i].id, sizeof(m[i].id), "node-%04d", i);
        m[i].vnodes = V;
        m[i].status = i < N ? MOOR_MEMBER_UP : MOOR_MEMBER_LEFT;
    }
    assert_int_equal(moor_ring_build(m, N + 1, &ring), 0);
    for (uint32_t i = 0; i < N; i++) {
        double s = moor_ring_owned_share(ring, i);
        sum += s;
        mx = s > mx ? s : mx;
    }
    m[N].status = MOOR_MEMBER_UP; /* one joins */
    assert_int_equal(moor_ring_build(m, N + 1, &plus), 0);
    m[N].status = MOOR_MEMBER_LEFT;
    m[0].status = MOOR_MEMBER_LEFT; /* one leaves */
    assert_int_equal(moor_ring_build(m, N + 1, &minus), 0);
    moved_in = moor_xfer_moved_share(ring, plus, 3);
    moved_out = moor_xfer_moved_share(ring, minus, 3);
    printf("ring of %d members x %d vnodes: max/mean owned share %.3f; data moved by a join "
           "%.5f of all (ideal 1/%d = %.5f), by a leave %.5f (ideal 1/%d = %.5f)\n",
           N, V, mx / (sum / N), moved_in, N + 1, 1.0 / (N + 1), moved_out, N, 1.0 / N);
    /* only the moved ranges move: within 2x of the ideal either way */
    assert_true(moved_in > 0.5 / (N + 1) && moved_in < 2.0 / (N + 1));
    assert_true(moved_out > 0.5 / N && moved_out < 2.0 / N);
    assert_true(mx / (sum / N) < 2.0);
    moor_ring_free(ring);
    moor_ring_free(plus);
    moor_ring_free(minus);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_left_is_final),
        cmocka_unit_test(test_inactive_wire),
        cmocka_unit_test(test_balance_1000),
        cmocka_unit_test(test_join_leave_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
