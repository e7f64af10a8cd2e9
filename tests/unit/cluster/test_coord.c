/*
 * test_coord.c -- the coordinator over a tiny in-test world: a manual
 * clock with a timer list, an in-memory store per node, and a transport
 * that queues requests to the other coordinators of the test and their
 * replies, pumped in FIFO order (so runs are deterministic).  A node that
 * "drops" receives nothing; the transport answers such a request with
 * MOOR_ETIMEDOUT at its timeout, as env.h promises.  An error answer
 * arrives as the code its wire name maps back to (moor_err_from_wire) with
 * "peer <id>: CODE: message" in moor_diag, as core/net/peer.c delivers it.
 *
 * Three nodes a, b, c on the ring, N=3, R=W=2 (d coordinates without being
 * a replica, so its writes are forwarded with `_coord`): put then get
 * elsewhere; two writes through one coordinator that did not see each other
 * stay siblings; a forwarded write, and the next replica tried when the
 * first does not answer; stale and latest contexts; a delete
 * concurrent with a put; one replica down (still served) and two (QUORUM_
 * FAILED at the deadline, with counts) or all (TIMEOUT); failing stores
 * (fail fast); read repair of a missing and of a stale replica; the
 * resolver hook and its write-back; the HLC; BAD_CTX, BAD_REQUEST,
 * UNAVAILABLE; malformed peer requests; shutdown with calls in flight and
 * late replies absorbed afterwards; a blind write by a replica that missed
 * a delete reads the others first and does not resurrect the deleted
 * value; the same scenario replayed gives the same bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>

#include "cluster/coord.h"
#include "cluster/record.h"
#include "util/mp.h"
#include "util/err.h"
#include "testutil.h"

#define TIMEOUT_MS 1000
#define NNODES 4 /* a, b, c on the ring; d off it */

/* ---- the world ---------------------------------------------------------------------- */

typedef struct world world_t;

typedef struct kv {
    moor_buf_t key, rec;
} kv_t;

typedef struct node {
    world_t *w;
    char id[2];
    moor_coord_t *c; /* NULL when "crashed" */
    kv_t kv[64];
    size_t nkv;
    int drop;      /* requests to this node are lost */
    int fail_puts; /* store.put refuses */
    uint64_t store_puts;
    int hints;          /* hint_put calls */
    char hint_owner[8]; /* the owner of the last hint */
    int no_hints;       /* hint_put is NULL (set before node_start) */
    int resolves;       /* resolver calls */
    int resolve_mode;   /* 1: max value, 0: keep siblings, -1: fail */
} node_t;

typedef struct tmr {
    uint64_t id, due;
    moor_timer_fn cb;
    void *arg;
    int active;
} tmr_t;

enum ev_kind { EV_REQ, EV_REPLY, EV_STORE_DONE };

typedef struct ev {
    struct ev *next;
    int kind;
    node_t *to; /* EV_REQ */
    char method[8];
    moor_buf_t data; /* params or result */
    uint32_t nparams;
    int status;
    char errcode[32], errmsg[256]; /* EV_REPLY with an error */
    char from;                     /* EV_REPLY: the answering node's id */
    moor_peer_reply_fn reply;      /* EV_REQ, EV_REPLY */
    void *arg;
    moor_store_done_fn done; /* EV_STORE_DONE */
} ev_t;

struct world {
    uint64_t now;
    uint64_t mono; /* clock.mono_ns: advances 1000 per read */
    tmr_t timers[512];
    size_t ntimers;
    uint64_t next_timer;
    ev_t *head, *tail;
    node_t nodes[NNODES];
    moor_ring_t *ring;
    uint32_t vc_max_entries, vc_keep_min; /* coordinator opts of node_start */
    uint64_t vc_max_age_ms;
    uint32_t sib_warn, sib_max; /* 0: no siblings callback (the defaults) */
};

static void ev_push(world_t *w, ev_t *e)
{
    e->next = NULL;
    if (w->tail)
        w->tail->next = e;
    else
        w->head = e;
    w->tail = e;
}

static ev_t *ev_new(int kind)
{
    ev_t *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->kind = kind;
    return e;
}

/* clock */

static uint64_t clk_now(void *ud)
{
    return ((world_t *)ud)->now;
}

static uint64_t clk_mono(void *ud)
{
    return ((world_t *)ud)->mono += 1000;
}

static uint64_t clk_start(void *ud, uint64_t delay, moor_timer_fn cb, void *arg)
{
    world_t *w = ud;
    tmr_t *t;

    assert_true(w->ntimers < sizeof(w->timers) / sizeof(w->timers[0]));
    t = &w->timers[w->ntimers++];
    t->id = ++w->next_timer;
    t->due = w->now + delay;
    t->cb = cb;
    t->arg = arg;
    t->active = 1;
    return t->id;
}

static void clk_stop(void *ud, uint64_t id)
{
    world_t *w = ud;
    for (size_t i = 0; i < w->ntimers; i++)
        if (w->timers[i].id == id)
            w->timers[i].active = 0;
}

static size_t active_timers(const world_t *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->ntimers; i++)
        n += w->timers[i].active;
    return n;
}

/* store */

static kv_t *kv_find(node_t *n, const char *key, size_t klen)
{
    for (size_t i = 0; i < n->nkv; i++)
        if (n->kv[i].key.len == klen && memcmp(n->kv[i].key.data, key, klen) == 0)
            return &n->kv[i];
    return NULL;
}

static int st_get(void *ud, const char *key, size_t klen, moor_buf_t *out)
{
    kv_t *kv = kv_find(ud, key, klen);

    if (!kv)
        return MOOR_ENOTFOUND;
    return moor_buf_append(out, kv->rec.data, kv->rec.len);
}

static int st_put(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                  moor_store_done_fn done, void *arg)
{
    node_t *n = ud;
    kv_t *kv;
    ev_t *e;

    if (n->fail_puts)
        return moor_diag(MOOR_EIO, "test store refuses");
    if (!(kv = kv_find(n, key, klen))) {
        assert_true(n->nkv < sizeof(n->kv) / sizeof(n->kv[0]));
        kv = &n->kv[n->nkv++];
        moor_buf_init(&kv->key);
        moor_buf_init(&kv->rec);
        assert_int_equal(moor_buf_append(&kv->key, key, klen), 0);
    }
    kv->rec.len = 0;
    assert_int_equal(moor_buf_append(&kv->rec, rec, rlen), 0);
    n->store_puts++;
    e = ev_new(EV_STORE_DONE); /* visible now, durable later */
    e->done = done;
    e->arg = arg;
    ev_push(n->w, e);
    return 0;
}

/* hints: kept apart from the store (a fallback never stores the owner's
 * data as its own); durable later, like the store */
static int hint_put(void *ud, const char *owner, size_t olen, const char *space, size_t slen,
                    const char *key, size_t klen, const char *rec, size_t rlen,
                    moor_store_done_fn done, void *arg)
{
    node_t *n = ud;
    moor_record_t *r = malloc(sizeof(*r));
    ev_t *e;

    assert_non_null(r);
    assert_int_equal(moor_record_decode(rec, rlen, r), 0);
    free(r);
    assert_true(olen < sizeof(n->hint_owner) && slen == 7 && klen > 0);
    assert_memory_equal(space, "default", 7);
    (void)key;
    memcpy(n->hint_owner, owner, olen);
    n->hint_owner[olen] = 0;
    n->hints++;
    e = ev_new(EV_STORE_DONE);
    e->done = done;
    e->arg = arg;
    ev_push(n->w, e);
    return 0;
}

/* transport */

static node_t *node_by_id(world_t *w, const char *id, size_t idlen)
{
    for (int i = 0; i < NNODES; i++)
        if (idlen == 1 && w->nodes[i].id[0] == id[0])
            return &w->nodes[i];
    return NULL;
}

/* A lost request: its reply is a timeout, at the timeout. */
typedef struct lost {
    moor_peer_reply_fn reply;
    void *arg;
} lost_t;

static void lost_fire(void *arg)
{
    lost_t *l = arg;
    l->reply(l->arg, MOOR_ETIMEDOUT, NULL, 0);
    free(l);
}

static int tr_request(void *ud, const char *to, size_t tolen, const char *method,
                      const char *params, size_t plen, uint32_t nparams, uint32_t timeout_ms,
                      moor_peer_reply_fn cb, void *arg)
{
    node_t *from = ud, *dst = node_by_id(from->w, to, tolen);
    ev_t *e;

    assert_non_null(dst);
    assert_true(dst != from); /* the local replica never goes through the transport */
    if (dst->drop || !dst->c) {
        lost_t *l = malloc(sizeof(*l));
        assert_non_null(l);
        l->reply = cb;
        l->arg = arg;
        clk_start(from->w, timeout_ms, lost_fire, l);
        return 0;
    }
    e = ev_new(EV_REQ);
    e->to = dst;
    snprintf(e->method, sizeof(e->method), "%s", method);
    assert_int_equal(moor_buf_append(&e->data, params, plen), 0);
    e->nparams = nparams;
    e->reply = cb;
    e->arg = arg;
    ev_push(from->w, e);
    return 0;
}

/* The replica's answer travels back as an event. */
typedef struct pending {
    world_t *w;
    char from;
    moor_peer_reply_fn reply;
    void *arg;
} pending_t;

static void peer_answered(void *arg, int code, const char *msg, const char *res, size_t rlen)
{
    pending_t *p = arg;
    ev_t *e = ev_new(EV_REPLY);

    /* Over the wire by its name, back to a code by the one table. */
    e->status = code ? moor_err_from_wire(moor_err_wire(code), strlen(moor_err_wire(code))) : 0;
    e->from = p->from;
    if (code) {
        snprintf(e->errcode, sizeof(e->errcode), "%s", moor_err_wire(code));
        snprintf(e->errmsg, sizeof(e->errmsg), "%s", msg ? msg : "");
    }
    if (!code)
        assert_int_equal(moor_buf_append(&e->data, res, rlen), 0);
    e->reply = p->reply;
    e->arg = p->arg;
    ev_push(p->w, e);
    free(p);
}

static void pump(world_t *w)
{
    ev_t *e;

    while ((e = w->head)) {
        w->head = e->next;
        if (!w->head)
            w->tail = NULL;
        if (e->kind == EV_STORE_DONE) {
            e->done(e->arg, 0);
        } else if (e->kind == EV_REPLY) {
            if (e->status)
                moor_diag(e->status, "peer %c: %s: %s", e->from, e->errcode, e->errmsg);
            e->reply(e->arg, e->status, e->data.data, e->data.len);
        } else if (e->to->c) {
            pending_t *p = malloc(sizeof(*p));
            assert_non_null(p);
            p->w = w, p->from = e->to->id[0], p->reply = e->reply, p->arg = e->arg;
            moor_coord_handle_peer(e->to->c, e->method, strlen(e->method), e->data.data,
                                   e->data.len, e->nparams, peer_answered, p);
        } else { /* crashed meanwhile: lost */
            lost_t *l = malloc(sizeof(*l));
            assert_non_null(l);
            l->reply = e->reply, l->arg = e->arg;
            clk_start(w, TIMEOUT_MS, lost_fire, l);
        }
        moor_buf_free(&e->data);
        free(e);
    }
}

/* Moves the clock forward by ms, firing due timers in order (pumping after
 * each). */
static void advance(world_t *w, uint64_t ms)
{
    uint64_t end = w->now + ms;

    pump(w);
    for (;;) {
        tmr_t *next = NULL;
        for (size_t i = 0; i < w->ntimers; i++)
            if (w->timers[i].active && w->timers[i].due <= end &&
                (!next || w->timers[i].due < next->due))
                next = &w->timers[i];
        if (!next)
            break;
        next->active = 0;
        w->now = next->due;
        next->cb(next->arg);
        pump(w);
    }
    w->now = end;
}

/* resolver: the largest positive fixint among the live siblings */
static int resolve_max(void *ud, const char *space, size_t slen, const char *rec, size_t rlen,
                       moor_buf_t *out)
{
    node_t *n = ud;
    moor_record_t *r = malloc(sizeof(*r));
    int best = -1;

    assert_non_null(r);
    n->resolves++;
    assert_int_equal(slen, 7);
    assert_memory_equal(space, "default", 7);
    assert_int_equal(moor_record_decode(rec, rlen, r), 0);
    for (uint32_t i = 0; i < r->n; i++)
        if (!r->sib[i].tombstone && r->sib[i].vlen == 1 && r->sib[i].value[0] > best)
            best = r->sib[i].value[0];
    free(r);
    if (n->resolve_mode <= 0)
        return n->resolve_mode < 0 ? moor_diag(MOOR_EINVAL, "test resolver fails") : 0;
    char v = (char)best;
    return moor_buf_append(out, &v, 1) ? -1 : 1;
}

/* What a node serves to its peers: the spaces "default" and "other"
 * (declared), keys of 1..100 bytes. */
static int check_key(void *ud, const char *space, size_t slen, const char *key, size_t klen)
{
    (void)ud, (void)key;
    if (!(slen == 7 && memcmp(space, "default", 7) == 0) &&
        !(slen == 5 && memcmp(space, "other", 5) == 0))
        return moor_diag(MOOR_EINVAL, "unknown space '%.*s'", (int)slen, space);
    if (klen == 0 || klen > 100)
        return moor_diag(MOOR_EKEYTOOBIG, "key of %zu bytes", klen);
    return 0;
}

static void world_siblings(void *ud, const char *space, size_t slen, uint32_t *warn, uint32_t *max)
{
    world_t *w = ud;
    (void)space, (void)slen;
    *warn = w->sib_warn;
    *max = w->sib_max;
}

static void node_start(world_t *w, int i, int with_resolver)
{
    node_t *n = &w->nodes[i];
    moor_coord_opts_t o;

    memset(&o, 0, sizeof(o));
    o.node_id = n->id;
    o.idlen = 1;
    o.clock = (moor_clock_if_t){w, clk_now, clk_start, clk_stop, clk_mono};
    o.transport = (moor_transport_if_t){n, tr_request};
    o.store = (moor_store_if_t){n, st_get, st_put, NULL, NULL};
    o.resolve = with_resolver ? resolve_max : NULL;
    o.resolve_ud = n;
    o.check_key = check_key;
    o.hint_put = n->no_hints ? NULL : hint_put;
    o.hint_ud = n;
    o.timeout_ms = TIMEOUT_MS;
    o.vc_max_entries = w->vc_max_entries;
    o.vc_keep_min = w->vc_keep_min;
    o.vc_max_age_ms = w->vc_max_age_ms;
    if (w->sib_max) {
        o.siblings = world_siblings;
        o.siblings_ud = w;
    }
    assert_int_equal(moor_coord_new(&o, &n->c), 0);
    moor_coord_set_ring(n->c, w->ring);
}

static moor_ring_t *make_ring(const char *ids)
{
    moor_member_t m[8];
    moor_ring_t *ring;
    uint32_t n = 0;

    memset(m, 0, sizeof(m));
    for (const char *p = ids; *p; p++, n++) {
        m[n].idlen = 1;
        m[n].id[0] = *p;
        m[n].vnodes = 16;
        m[n].status = MOOR_MEMBER_UP;
        snprintf(m[n].addr, sizeof(m[n].addr), "127.0.0.%u:7700", n + 1);
    }
    assert_int_equal(moor_ring_build(m, n, &ring), 0);
    return ring;
}

static world_t *world_new(int with_resolver)
{
    world_t *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    w->now = 1000000;
    w->ring = make_ring("abc");
    for (int i = 0; i < NNODES; i++) {
        w->nodes[i].w = w;
        w->nodes[i].id[0] = (char)('a' + i);
        w->nodes[i].resolve_mode = 1;
        node_start(w, i, with_resolver);
    }
    return w;
}

/* Lets every lost request time out, then frees it all: nothing leaks. */
static void world_free(world_t *w)
{
    advance(w, 10 * TIMEOUT_MS);
    for (int i = 0; i < NNODES; i++) {
        moor_coord_free(w->nodes[i].c);
        for (size_t k = 0; k < w->nodes[i].nkv; k++) {
            moor_buf_free(&w->nodes[i].kv[k].key);
            moor_buf_free(&w->nodes[i].kv[k].rec);
        }
    }
    assert_null(w->head);
    assert_int_equal(active_timers(w), 0);
    moor_ring_free(w->ring);
    free(w);
}

/* ---- calls and answers -------------------------------------------------------------- */

typedef struct ans {
    int called;
    char code[32];
    char msg[256];
    moor_buf_t res;
} ans_t;

static void ans_done(void *arg, int code, const char *msg, const char *res, size_t rlen)
{
    ans_t *a = arg;

    a->called++;
    snprintf(a->code, sizeof(a->code), "%s", code ? moor_err_wire(code) : "");
    snprintf(a->msg, sizeof(a->msg), "%s", msg ? msg : "");
    a->res.len = 0;
    if (!code)
        assert_int_equal(moor_buf_append(&a->res, res, rlen), 0);
}

static void ans_reset(ans_t *a)
{
    moor_buf_free(&a->res);
    memset(a, 0, sizeof(*a));
}

static void expect_ok(const ans_t *a)
{
    if (a->called != 1 || a->code[0])
        fail_msg("expected one success, got %d answers, last '%s: %s'", a->called, a->code, a->msg);
}

static void expect_err(const ans_t *a, const char *code, const char *in_msg)
{
    if (a->called != 1 || strcmp(a->code, code) != 0)
        fail_msg("expected one %s, got %d answers, last '%s: %s'", code, a->called, a->code,
                 a->msg);
    if (in_msg && !strstr(a->msg, in_msg))
        fail_msg("message '%s' lacks '%s'", a->msg, in_msg);
}

static moor_coord_req_t req_of(const char *key, const char *value, const moor_buf_t *ctx)
{
    moor_coord_req_t r;

    memset(&r, 0, sizeof(r));
    r.key = key;
    r.klen = strlen(key);
    r.value = value;
    r.vlen = value ? 1 : 0; /* one-byte fixints */
    r.ctx = ctx ? ctx->data : NULL;
    r.ctxlen = ctx ? ctx->len : 0;
    r.n = 3, r.r = 2, r.w = 2;
    return r;
}

static void node_put(world_t *w, int i, const char *key, const char *value, const moor_buf_t *ctx,
                     ans_t *a)
{
    moor_coord_req_t r = req_of(key, value, ctx);
    moor_coord_put(w->nodes[i].c, &r, ans_done, a);
    pump(w);
}

static void node_del(world_t *w, int i, const char *key, const moor_buf_t *ctx, ans_t *a)
{
    moor_coord_req_t r = req_of(key, NULL, ctx);
    moor_coord_del(w->nodes[i].c, &r, ans_done, a);
    pump(w);
}

static void node_get(world_t *w, int i, const char *key, ans_t *a)
{
    moor_coord_req_t r = req_of(key, NULL, NULL);
    moor_coord_get(w->nodes[i].c, &r, ans_done, a);
    pump(w);
}

/* A decoded get answer: nil (nil = 1) or the values and ctx. */
typedef struct got {
    int nil;
    uint32_t n;
    char vals[8]; /* one-byte values */
    moor_buf_t ctx;
} got_t;

static got_t parse_get(const ans_t *a)
{
    const char *p = a->res.data, *end = p + a->res.len, *k, *ctx;
    uint32_t n, klen, clen;
    got_t g;

    memset(&g, 0, sizeof(g));
    expect_ok(a);
    if (moor_mp_read_nil(&p, end) == 0) {
        assert_ptr_equal(p, end);
        g.nil = 1;
        return g;
    }
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_int_equal(klen, 6);
    assert_memory_equal(k, "values", 6);
    assert_int_equal(moor_mp_read_array(&p, end, &g.n), 0);
    assert_in_range(g.n, 1, sizeof(g.vals));
    for (uint32_t i = 0; i < g.n; i++) {
        g.vals[i] = *p;
        assert_int_equal(moor_mp_skip(&p, end, 8), 0);
    }
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_memory_equal(k, "ctx", 3);
    assert_int_equal(moor_mp_read_bin(&p, end, &ctx, &clen), 0);
    assert_ptr_equal(p, end);
    assert_int_equal(moor_buf_append(&g.ctx, ctx, clen), 0);
    return g;
}

static int got_has(const got_t *g, char v)
{
    for (uint32_t i = 0; i < g->n; i++)
        if (g->vals[i] == v)
            return 1;
    return 0;
}

/* The ctx of a put answer {ctx = bin}. */
static moor_buf_t put_ctx(const ans_t *a)
{
    const char *p = a->res.data, *end = p + a->res.len, *k, *ctx;
    uint32_t n, klen, clen;
    moor_buf_t b = MOOR_BUF_INIT;

    expect_ok(a);
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
    assert_memory_equal(k, "ctx", 3);
    assert_int_equal(moor_mp_read_bin(&p, end, &ctx, &clen), 0);
    assert_ptr_equal(p, end);
    assert_int_equal(moor_buf_append(&b, ctx, clen), 0);
    return b;
}

/* The record node i stores for key (in space "default"), decoded into r;
 * 0 if it has none. */
static int stored(world_t *w, int i, const char *key, moor_record_t *r)
{
    moor_buf_t ek = MOOR_BUF_INIT;
    kv_t *kv;

    assert_int_equal(moor_record_key("default", 7, key, strlen(key), &ek), 0);
    kv = kv_find(&w->nodes[i], ek.data, ek.len);
    moor_buf_free(&ek);
    if (!kv)
        return 0;
    assert_int_equal(moor_record_decode(kv->rec.data, kv->rec.len, r), 0);
    return 1;
}

static moor_vclock_t clock_of(const moor_buf_t *ctx)
{
    moor_vclock_t vc;
    const char *p = ctx->data;

    assert_int_equal(moor_vclock_decode(&p, ctx->data + ctx->len, &vc), 0);
    return vc;
}

/* ---- tests -------------------------------------------------------------------------- */

static moor_record_t *rec_scratch(void)
{
    moor_record_t *r = malloc(sizeof(*r));
    assert_non_null(r);
    return r;
}

static void test_put_then_get_elsewhere(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0}, g = {0};

    (void)state;
    node_put(w, 0, "k", "\x07", NULL, &a);
    moor_buf_t ctx = put_ctx(&a);
    moor_vclock_t vc = clock_of(&ctx);
    assert_int_equal(vc.n, 1);
    assert_int_equal(vc.e[0].id[0], 'a');
    assert_int_equal(vc.e[0].counter, w->now * 1000); /* the HLC starts at wall time */
    assert_int_equal(vc.e[0].ts, w->now);
    for (int i = 0; i < 3; i++) { /* all three replicas hold it */
        assert_true(stored(w, i, "k", r));
        assert_int_equal(r->n, 1);
        assert_int_equal(r->sib[0].value[0], 7);
    }
    node_get(w, 1, "k", &g);
    got_t got = parse_get(&g);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.vals[0], 7);
    assert_int_equal(got.ctx.len, ctx.len);
    assert_memory_equal(got.ctx.data, ctx.data, ctx.len);

    ans_reset(&g); /* a key nobody has */
    node_get(w, 2, "nope", &g);
    got_t none = parse_get(&g);
    assert_true(none.nil);

    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[0].c, &st);
    assert_int_equal(st.puts, 1);
    assert_int_equal(st.read_repairs, 0);
    moor_buf_free(&ctx), moor_buf_free(&got.ctx);
    ans_reset(&a), ans_reset(&g);
    free(r);
    world_free(w);
}

/* Two writes through one coordinator that had not seen each other: both
 * kept, as siblings (blind, and two writes from the same read). */
static void test_one_coordinator_siblings(void **state)
{
    world_t *w = world_new(0);
    ans_t a = {0}, g = {0};

    (void)state;
    node_put(w, 0, "k", "\x01", NULL, &a);
    moor_buf_t c1 = put_ctx(&a);
    ans_reset(&a);
    node_put(w, 0, "k", "\x02", NULL, &a);
    expect_ok(&a);
    node_get(w, 1, "k", &g);
    got_t r1 = parse_get(&g);
    if (r1.n != 2 || !got_has(&r1, 1) || !got_has(&r1, 2))
        fail_msg("blind writes via a: %u value(s), expected 1 and 2", r1.n);
    /* two writes from the same ctx (c1): the second did not see the first */
    ans_reset(&a);
    node_put(w, 0, "j", "\x03", NULL, &a);
    moor_buf_t cj = put_ctx(&a);
    ans_reset(&a);
    node_put(w, 0, "j", "\x04", &cj, &a);
    ans_reset(&a);
    node_put(w, 0, "j", "\x05", &cj, &a);
    ans_reset(&g);
    node_get(w, 2, "j", &g);
    got_t r2 = parse_get(&g);
    if (r2.n != 2 || !got_has(&r2, 4) || !got_has(&r2, 5))
        fail_msg("two writes from one read: %u value(s), expected 4 and 5", r2.n);
    /* a write with the ctx of the get replaces both */
    ans_reset(&a);
    node_put(w, 0, "j", "\x06", &r2.ctx, &a);
    ans_reset(&g);
    node_get(w, 1, "j", &g);
    got_t r3 = parse_get(&g);
    assert_int_equal(r3.n, 1);
    assert_int_equal(r3.vals[0], 6);
    moor_buf_free(&c1), moor_buf_free(&cj);
    moor_buf_free(&r1.ctx), moor_buf_free(&r2.ctx), moor_buf_free(&r3.ctx);
    ans_reset(&a), ans_reset(&g);
    world_free(w);
}

/* The preference list of key: node indices (0 = a). */
static void pref_of(world_t *w, const char *key, int out[3])
{
    uint32_t idx[3], n;
    uint64_t token;

    assert_int_equal(moor_ring_key_token("default", 7, key, strlen(key), &token), 0);
    assert_int_equal(moor_ring_preference_list(w->ring, token, 3, idx, &n), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++)
        out[i] = moor_ring_member(w->ring, idx[i])->id[0] - 'a';
}

/* overwrite: the write descends what the coordinator holds (and read):
 * blind writes add siblings, an overwrite replaces them all, on a
 * coordinating replica and when forwarded (it rides in _coord). */
static void test_overwrite(void **state)
{
    world_t *w = world_new(0);
    ans_t a = {0}, g = {0};
    int pref[3];
    moor_coord_req_t r;

    (void)state;
    pref_of(w, "k", pref);
    node_put(w, pref[0], "k", "\x01", NULL, &a);
    ans_reset(&a);
    node_put(w, pref[1], "k", "\x02", NULL, &a);
    ans_reset(&a);
    node_get(w, pref[2], "k", &g);
    got_t r1 = parse_get(&g);
    assert_int_equal(r1.n, 2);
    r = req_of("k", "\x03", NULL);
    r.overwrite = 1;
    moor_coord_put(w->nodes[pref[0]].c, &r, ans_done, &a);
    pump(w);
    expect_ok(&a);
    ans_reset(&g);
    node_get(w, pref[1], "k", &g);
    got_t r2 = parse_get(&g);
    if (r2.n != 1 || r2.vals[0] != 3)
        fail_msg("after an overwrite: %u value(s), expected only 3", r2.n);
    /* forwarded from the one node that is no replica */
    ans_reset(&a);
    node_put(w, pref[2], "k", "\x04", NULL, &a);
    ans_reset(&a);
    {
        int other = 0;
        while (other == pref[0] || other == pref[1] || other == pref[2])
            other++;
        r = req_of("k", "\x05", NULL);
        r.overwrite = 1;
        moor_coord_put(w->nodes[other].c, &r, ans_done, &a);
        pump(w);
        expect_ok(&a);
    }
    ans_reset(&g);
    node_get(w, pref[0], "k", &g);
    got_t r3 = parse_get(&g);
    if (r3.n != 1 || r3.vals[0] != 5)
        fail_msg("after a forwarded overwrite: %u value(s), expected only 5", r3.n);
    /* a del with overwrite deletes every sibling */
    ans_reset(&a);
    node_put(w, pref[1], "k", "\x06", NULL, &a);
    ans_reset(&a);
    r = req_of("k", NULL, NULL);
    r.overwrite = 1;
    moor_coord_del(w->nodes[pref[0]].c, &r, ans_done, &a);
    pump(w);
    expect_ok(&a);
    ans_reset(&g);
    node_get(w, pref[2], "k", &g);
    got_t r4 = parse_get(&g);
    assert_int_equal(r4.nil, 1);
    moor_buf_free(&r1.ctx), moor_buf_free(&r2.ctx), moor_buf_free(&r3.ctx);
    moor_buf_free(&r4.ctx);
    ans_reset(&a), ans_reset(&g);
    world_free(w);
}

/* A get answer: -1 for nil, else its value count; *exp its expires_ms
 * (0: none). */
static int get_expiry(const ans_t *a, uint64_t *exp)
{
    const char *p = a->res.data, *end = p + a->res.len, *k;
    uint32_t n, klen, nv = 0;

    *exp = 0;
    expect_ok(a);
    if (moor_mp_read_nil(&p, end) == 0)
        return -1;
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    while (n--) {
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        if (klen == 6 && memcmp(k, "values", 6) == 0) {
            const char *v = p;
            assert_int_equal(moor_mp_read_array(&v, end, &nv), 0);
        }
        if (klen == 10 && memcmp(k, "expires_ms", 10) == 0)
            assert_int_equal(moor_mp_read_uint(&p, end, exp), 0);
        else
            assert_int_equal(moor_mp_skip(&p, end, 8), 0);
    }
    return (int)nv;
}

/* ttl_ms: the sibling expires at the write's HLC ms + ttl_ms (also when
 * the write is forwarded: ttl_ms rides in _coord); before that a get
 * answers it with expires_ms, from then on nil.  A replica that missed
 * the write gets, by read repair after the expiry, only the tombstone at
 * exp (the value never reaches it); a write on the key stores the
 * tombstone, not the expired value's bytes. */
static void test_ttl(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0}, g = {0};
    moor_coord_req_t q;
    uint64_t exp, t0;
    int pref[3], other = 0;

    (void)state;
    pref_of(w, "k", pref);
    w->nodes[pref[2]].drop = 1; /* misses the write */
    t0 = w->now;
    q = req_of("k", "\x01", NULL);
    q.ttl_ms = 5000;
    moor_coord_put(w->nodes[pref[0]].c, &q, ans_done, &a);
    pump(w);
    expect_ok(&a);
    assert_int_equal(stored(w, pref[1], "k", r), 1);
    assert_int_equal(r->n, 1);
    if (r->sib[0].exp < t0 + 5000 || r->sib[0].exp != r->sib[0].dot_counter / 1000 + 5000)
        fail_msg("exp %llu, dot %llu, now %llu", (unsigned long long)r->sib[0].exp,
                 (unsigned long long)r->sib[0].dot_counter, (unsigned long long)t0);
    exp = r->sib[0].exp;
    node_get(w, pref[1], "k", &g);
    uint64_t e;
    assert_int_equal(get_expiry(&g, &e), 1);
    assert_int_equal(e, exp);
    advance(w, exp - w->now - 1);
    ans_reset(&g);
    node_get(w, pref[1], "k", &g);
    assert_int_equal(get_expiry(&g, &e), 1);
    advance(w, 1); /* exactly exp */
    ans_reset(&g);
    node_get(w, pref[1], "k", &g);
    assert_int_equal(get_expiry(&g, &e), -1);
    /* the replica that missed it: read repair brings the tombstone */
    assert_int_equal(stored(w, pref[2], "k", r), 0);
    w->nodes[pref[2]].drop = 0;
    ans_reset(&g);
    node_get(w, pref[0], "k", &g);
    advance(w, TIMEOUT_MS);
    assert_int_equal(get_expiry(&g, &e), -1);
    assert_int_equal(stored(w, pref[2], "k", r), 1);
    assert_true(moor_record_is_deleted(r));
    assert_int_equal(r->n, 1);
    assert_int_equal(r->sib[0].ts, exp);
    /* a blind write: the new value beside the tombstone (not the old value) */
    ans_reset(&a);
    node_put(w, pref[0], "k", "\x02", NULL, &a);
    expect_ok(&a);
    assert_int_equal(stored(w, pref[0], "k", r), 1);
    assert_int_equal(r->n, 2);
    for (uint32_t i = 0; i < r->n; i++)
        assert_true(r->sib[i].tombstone ? r->sib[i].ts == exp : r->sib[i].exp == 0);
    ans_reset(&g);
    node_get(w, pref[1], "k", &g);
    assert_int_equal(get_expiry(&g, &e), 1);
    assert_int_equal(e, 0);
    /* forwarded by the one node that is no replica: the ttl goes along */
    pref_of(w, "f", pref);
    while (other == pref[0] || other == pref[1] || other == pref[2])
        other++;
    ans_reset(&a);
    q = req_of("f", "\x03", NULL);
    q.ttl_ms = 700;
    moor_coord_put(w->nodes[other].c, &q, ans_done, &a);
    pump(w);
    expect_ok(&a);
    assert_int_equal(stored(w, other, "f", r), 0);
    assert_int_equal(stored(w, pref[0], "f", r), 1);
    assert_int_equal(r->sib[0].exp, r->sib[0].dot_counter / 1000 + 700);
    ans_reset(&a), ans_reset(&g);
    free(r);
    world_free(w);
}

/* d is no replica: the first replica of the list coordinates; d stores
 * nothing and stamps nothing. */
static void test_forwarded(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0}, g = {0};
    int pref[3];

    (void)state;
    pref_of(w, "k", pref);
    node_put(w, 3, "k", "\x07", NULL, &a);
    moor_buf_t ctx = put_ctx(&a);
    moor_vclock_t vc = clock_of(&ctx);
    assert_int_equal(vc.n, 1);
    assert_int_equal(vc.e[0].id[0], 'a' + pref[0]);
    assert_int_equal(w->nodes[3].nkv, 0);
    for (int i = 0; i < 3; i++)
        assert_true(stored(w, i, "k", r));
    /* forwarded twice blind: siblings, as through the replica itself */
    ans_reset(&a);
    node_put(w, 3, "k", "\x08", NULL, &a);
    expect_ok(&a);
    node_get(w, 3, "k", &g);
    got_t got = parse_get(&g);
    if (got.n != 2 || !got_has(&got, 7) || !got_has(&got, 8))
        fail_msg("two forwarded blind writes: %u value(s), expected 7 and 8", got.n);
    /* a delete is forwarded too and answers true */
    ans_reset(&a);
    node_del(w, 3, "k", &got.ctx, &a);
    expect_ok(&a);
    assert_int_equal(a.res.len, 1);
    assert_int_equal((unsigned char)a.res.data[0], 0xc3);
    ans_reset(&g);
    node_get(w, 1, "k", &g);
    got_t gone = parse_get(&g);
    assert_true(gone.nil);
    /* a malformed ctx is refused before anything is forwarded */
    ans_reset(&a);
    moor_buf_t bad = MOOR_BUF_INIT;
    assert_int_equal(moor_buf_append(&bad, "\x91\x01", 2), 0);
    node_put(w, 3, "k", "\x09", &bad, &a);
    expect_err(&a, "BAD_CTX", NULL);
    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[3].c, &st);
    assert_int_equal(st.puts, 3);
    assert_int_equal(st.dels, 1);
    moor_buf_free(&ctx), moor_buf_free(&got.ctx), moor_buf_free(&bad);
    ans_reset(&a), ans_reset(&g);
    free(r);
    world_free(w);
}

/* The first replica silent: after its timeout the next one coordinates;
 * the first two silent: TIMEOUT (the third is not tried). */
static void test_forward_retry(void **state)
{
    world_t *w = world_new(0);
    ans_t a = {0};
    int pref[3];

    (void)state;
    pref_of(w, "k", pref);
    w->nodes[pref[0]].drop = 1;
    node_put(w, 3, "k", "\x07", NULL, &a);
    assert_int_equal(a.called, 0);
    advance(w, TIMEOUT_MS);
    moor_buf_t ctx = put_ctx(&a);
    moor_vclock_t vc = clock_of(&ctx);
    assert_int_equal(vc.n, 1);
    assert_int_equal(vc.e[0].id[0], 'a' + pref[1]);
    /* a crashed first replica and a silent second: both time out */
    w->nodes[pref[0]].drop = 0;
    moor_coord_free(w->nodes[pref[0]].c);
    w->nodes[pref[0]].c = NULL;
    w->nodes[pref[1]].drop = 1;
    ans_reset(&a);
    node_put(w, 3, "k", "\x08", NULL, &a);
    advance(w, 2 * TIMEOUT_MS);
    expect_err(&a, "TIMEOUT", "2 tried");
    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[3].c, &st);
    assert_int_equal(st.timeouts, 1);
    node_start(w, pref[0], 0);
    moor_buf_free(&ctx);
    ans_reset(&a);
    world_free(w);
}

static void test_contexts(void **state)
{
    world_t *w = world_new(0);
    ans_t a = {0};

    (void)state;
    node_put(w, 0, "k", "\x01", NULL, &a);
    moor_buf_t c1 = put_ctx(&a);
    ans_reset(&a);
    node_put(w, 0, "k", "\x02", &c1, &a); /* latest ctx: replaces */
    moor_buf_t c2 = put_ctx(&a);
    ans_reset(&a);
    node_get(w, 2, "k", &a);
    got_t g = parse_get(&a);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.vals[0], 2);
    moor_buf_free(&g.ctx);

    ans_reset(&a); /* stale ctx, another coordinator: a sibling */
    node_put(w, 1, "k", "\x03", &c1, &a);
    expect_ok(&a);
    ans_reset(&a);
    node_get(w, 2, "k", &a);
    g = parse_get(&a);
    assert_int_equal(g.n, 2);
    assert_true(got_has(&g, 2) && got_has(&g, 3));
    moor_vclock_t merged = clock_of(&g.ctx), v2 = clock_of(&c2);
    assert_int_equal(moor_vclock_compare(&merged, &v2), MOOR_VC_AFTER);

    ans_reset(&a); /* the merged ctx: one value again */
    node_put(w, 2, "k", "\x04", &g.ctx, &a);
    expect_ok(&a);
    moor_buf_free(&g.ctx);
    ans_reset(&a);
    node_get(w, 0, "k", &a);
    g = parse_get(&a);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.vals[0], 4);
    moor_buf_free(&g.ctx), moor_buf_free(&c1), moor_buf_free(&c2);
    ans_reset(&a);
    world_free(w);
}

static void test_delete_concurrent_with_put(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0};

    (void)state;
    node_put(w, 0, "k", "\x01", NULL, &a);
    moor_buf_t c1 = put_ctx(&a);
    ans_reset(&a);
    node_put(w, 0, "k", "\x02", &c1, &a);
    expect_ok(&a);
    ans_reset(&a);
    node_del(w, 1, "k", &c1, &a); /* saw v1 only: concurrent with v2 */
    expect_ok(&a);
    assert_int_equal(a.res.len, 1);
    assert_int_equal((unsigned char)a.res.data[0], 0xc3); /* true */
    for (int i = 0; i < 3; i++) {
        assert_true(stored(w, i, "k", r));
        assert_int_equal(r->n, 2);
        assert_int_equal(r->sib[0].tombstone + r->sib[1].tombstone, 1);
    }
    ans_reset(&a);
    node_get(w, 2, "k", &a);
    got_t g = parse_get(&a);
    assert_int_equal(g.n, 1); /* the tombstone is not a value */
    assert_int_equal(g.vals[0], 2);

    ans_reset(&a);
    node_del(w, 2, "k", &g.ctx, &a); /* the latest ctx: deleted */
    expect_ok(&a);
    ans_reset(&a);
    node_get(w, 0, "k", &a);
    got_t gone = parse_get(&a);
    assert_true(gone.nil);
    assert_true(stored(w, 1, "k", r));
    assert_int_equal(r->n, 1);
    assert_true(r->sib[0].tombstone);
    moor_buf_free(&g.ctx), moor_buf_free(&c1);
    ans_reset(&a);
    free(r);
    world_free(w);
}

static void test_one_replica_down(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0};

    (void)state;
    w->nodes[2].drop = 1;
    node_put(w, 0, "k", "\x05", NULL, &a);
    expect_ok(&a); /* at W=2, before any deadline */
    assert_false(stored(w, 2, "k", r));
    ans_reset(&a);
    node_get(w, 1, "k", &a);
    got_t g = parse_get(&a);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.vals[0], 5);
    /* the lost requests time out later: absorbed, no second answer */
    advance(w, 2 * TIMEOUT_MS);
    assert_int_equal(a.called, 1);
    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[0].c, &st);
    assert_int_equal(st.quorum_failures + st.timeouts, 0);
    moor_buf_free(&g.ctx);
    ans_reset(&a);
    free(r);
    world_free(w);
}

static void test_two_replicas_down(void **state)
{
    world_t *w = world_new(0);
    ans_t a = {0};

    (void)state;
    w->nodes[1].drop = w->nodes[2].drop = 1;
    node_put(w, 0, "k", "\x05", NULL, &a);
    assert_int_equal(a.called, 0); /* waits for the deadline */
    advance(w, TIMEOUT_MS - 1);
    assert_int_equal(a.called, 0);
    advance(w, 1);
    expect_err(&a, "QUORUM_FAILED", "1 of 3 replicas acknowledged, 2 needed");

    ans_reset(&a);
    node_get(w, 0, "k", &a);
    assert_int_equal(a.called, 0);
    advance(w, TIMEOUT_MS);
    expect_err(&a, "QUORUM_FAILED", "1 of 3 replicas answered, 2 needed");
    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[0].c, &st);
    assert_int_equal(st.quorum_failures, 2);
    assert_int_equal(st.timeouts, 0);
    ans_reset(&a);
    world_free(w);
}

static void test_none_answer_or_fail_fast(void **state)
{
    world_t *w = world_new(0);
    ans_t a = {0};

    (void)state;
    /* d is not a replica: with a, b, c all silent nothing answers at all
     * (the write is forwarded to one replica, then to the next) */
    w->nodes[0].drop = w->nodes[1].drop = w->nodes[2].drop = 1;
    node_put(w, 3, "k", "\x05", NULL, &a);
    advance(w, TIMEOUT_MS);
    assert_int_equal(a.called, 0);
    advance(w, TIMEOUT_MS);
    expect_err(&a, "TIMEOUT", "no replica answered the forwarded write");
    ans_reset(&a);
    node_get(w, 3, "k", &a);
    advance(w, TIMEOUT_MS);
    expect_err(&a, "TIMEOUT", "no replica answered");
    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[3].c, &st);
    assert_int_equal(st.timeouts, 2);

    /* stores that refuse answer at once: no waiting for the deadline */
    w->nodes[0].drop = w->nodes[1].drop = w->nodes[2].drop = 0;
    w->nodes[1].fail_puts = w->nodes[2].fail_puts = 1;
    ans_reset(&a);
    node_put(w, 0, "k", "\x05", NULL, &a);
    expect_err(&a, "QUORUM_FAILED", "1 of 3 replicas acknowledged, 2 needed");
    w->nodes[0].fail_puts = 1; /* the local one too: forwarded, the replica's error */
    ans_reset(&a);
    node_put(w, 3, "k", "\x05", NULL, &a);
    expect_err(&a, "QUORUM_FAILED", "0 of 3 replicas acknowledged, 2 needed");
    /* the coordinating replica's own write must be durable to answer */
    w->nodes[1].fail_puts = w->nodes[2].fail_puts = 0;
    ans_reset(&a);
    node_put(w, 0, "k", "\x05", NULL, &a);
    expect_err(&a, "QUORUM_FAILED", "own write failed");
    ans_reset(&a);
    world_free(w);
}

static void test_read_repair(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0};

    (void)state;
    w->nodes[2].drop = 1;
    node_put(w, 0, "k", "\x01", NULL, &a); /* c misses it */
    moor_buf_t c1 = put_ctx(&a);
    advance(w, TIMEOUT_MS);
    w->nodes[2].drop = 0;
    assert_false(stored(w, 2, "k", r));
    ans_reset(&a);
    node_get(w, 1, "k", &a); /* all three answer; c had nothing */
    got_t g = parse_get(&a);
    assert_int_equal(g.vals[0], 1);
    assert_true(stored(w, 2, "k", r));
    assert_int_equal(r->n, 1);
    assert_int_equal(r->sib[0].value[0], 1);
    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[1].c, &st);
    assert_int_equal(st.read_repairs, 1);

    /* c misses a second write: it holds an older version, repaired too */
    w->nodes[2].drop = 1;
    ans_reset(&a);
    node_put(w, 0, "k", "\x02", &c1, &a);
    expect_ok(&a);
    advance(w, TIMEOUT_MS);
    w->nodes[2].drop = 0;
    uint64_t puts_a = w->nodes[0].store_puts;
    ans_reset(&a);
    node_get(w, 2, "k", &a); /* c coordinates: its own replica is the stale one */
    moor_buf_free(&g.ctx);
    g = parse_get(&a);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.vals[0], 2);
    for (int i = 0; i < 3; i++) {
        assert_true(stored(w, i, "k", r));
        assert_int_equal(r->n, 1);
        assert_int_equal(r->sib[0].value[0], 2);
    }
    assert_int_equal(w->nodes[0].store_puts, puts_a); /* up-to-date replicas are left alone */
    moor_coord_stats(w->nodes[2].c, &st);
    assert_int_equal(st.read_repairs, 1);
    moor_buf_free(&g.ctx), moor_buf_free(&c1);
    ans_reset(&a);
    free(r);
    world_free(w);
}

/* A read at R=2 answers before the third reply and repairs after it. */
static void test_read_repair_after_answer(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0};

    (void)state;
    node_put(w, 0, "k", "\x01", NULL, &a);
    moor_buf_t c1 = put_ctx(&a);
    /* b writes concurrently while a is away: only b and c see it */
    w->nodes[0].drop = 1;
    ans_reset(&a);
    node_put(w, 1, "k", "\x02", NULL, &a);
    expect_ok(&a);
    advance(w, TIMEOUT_MS);
    w->nodes[0].drop = 0;
    /* a's get: its own stale record and one of b, c make R; the third reply
     * arrives after the answer and still counts for the repair */
    ans_reset(&a);
    node_get(w, 0, "k", &a);
    got_t g = parse_get(&a);
    assert_int_equal(g.n, 2);
    assert_true(got_has(&g, 1) && got_has(&g, 2));
    assert_true(stored(w, 0, "k", r));
    assert_int_equal(r->n, 2);
    moor_buf_free(&g.ctx), moor_buf_free(&c1);
    ans_reset(&a);
    free(r);
    world_free(w);
}

static void test_resolver(void **state)
{
    world_t *w = world_new(1);
    moor_record_t *r = rec_scratch();
    ans_t a = {0};

    (void)state;
    node_put(w, 0, "k", "\x03", NULL, &a); /* blind writes through two coordinators */
    ans_reset(&a);
    node_put(w, 1, "k", "\x09", NULL, &a);
    ans_reset(&a);
    node_put(w, 2, "k", "\x05", NULL, &a);
    assert_true(stored(w, 0, "k", r));
    assert_int_equal(r->n, 3);

    ans_reset(&a);
    node_get(w, 2, "k", &a);
    got_t g = parse_get(&a);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.vals[0], 9);
    assert_int_equal(w->nodes[2].resolves, 1);
    for (int i = 0; i < 3; i++) { /* written back: one sibling everywhere */
        assert_true(stored(w, i, "k", r));
        assert_int_equal(r->n, 1);
        assert_int_equal(r->sib[0].value[0], 9);
        /* the answered ctx is the write-back's: its context and its dot */
        moor_vclock_t vc = clock_of(&g.ctx), want;
        moor_record_ctx_vc(r, &want);
        assert_int_equal(moor_vclock_compare(&vc, &want), MOOR_VC_EQUAL);
    }
    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[2].c, &st);
    assert_int_equal(st.resolved, 1);
    ans_reset(&a); /* resolved: no more resolving */
    node_get(w, 0, "k", &a);
    moor_buf_free(&g.ctx);
    g = parse_get(&a);
    assert_int_equal(g.n, 1);
    assert_int_equal(w->nodes[0].resolves, 0);

    /* a resolver that declines or fails leaves the siblings */
    ans_reset(&a);
    node_put(w, 0, "k", "\x01", NULL, &a);
    w->nodes[1].resolve_mode = 0;
    ans_reset(&a);
    node_get(w, 1, "k", &a);
    moor_buf_free(&g.ctx);
    g = parse_get(&a);
    assert_int_equal(g.n, 2);
    w->nodes[1].resolve_mode = -1;
    ans_reset(&a);
    node_get(w, 1, "k", &a);
    moor_buf_free(&g.ctx);
    g = parse_get(&a);
    assert_int_equal(g.n, 2);
    assert_int_equal(w->nodes[1].resolves, 2);
    moor_buf_free(&g.ctx);
    ans_reset(&a);
    free(r);
    world_free(w);
}

static void test_hlc(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0};

    (void)state;
    /* the same ms: counters still grow (the blind writes are siblings) */
    node_put(w, 0, "k", "\x01", NULL, &a);
    moor_buf_t c1 = put_ctx(&a);
    ans_reset(&a);
    node_put(w, 0, "k", "\x02", NULL, &a);
    moor_buf_t c2 = put_ctx(&a);
    moor_vclock_t v1 = clock_of(&c1), v2 = clock_of(&c2);
    assert_int_equal(v2.e[0].counter, v1.e[0].counter + 1);
    assert_true(stored(w, 1, "k", r));
    assert_int_equal(r->n, 2);

    /* a ctx from a later counter of ours (a clock that went back) still
     * gets a descendant, and the HLC moves past it */
    moor_vclock_t f;
    moor_buf_t fctx = MOOR_BUF_INIT;
    uint64_t ahead = (w->now + 3600000) * 1000;
    moor_vclock_init(&f);
    assert_int_equal(moor_vclock_increment(&f, "a", 1, 5), 0);
    f.e[0].counter = ahead;
    assert_int_equal(moor_vclock_encode(&f, &fctx), 0);
    ans_reset(&a);
    node_put(w, 0, "k", "\x03", &fctx, &a);
    moor_buf_t c3 = put_ctx(&a);
    moor_vclock_t v3 = clock_of(&c3);
    assert_int_equal(v3.e[0].counter, ahead + 1);
    assert_int_equal(moor_vclock_compare(&v3, &f), MOOR_VC_AFTER);
    ans_reset(&a);
    node_put(w, 0, "j", "\x03", NULL, &a); /* any key: the HLC is node-wide */
    moor_buf_t c4 = put_ctx(&a);
    moor_vclock_t v4 = clock_of(&c4);
    assert_int_equal(v4.e[0].counter, ahead + 2);
    /* a counter over a day ahead is forged: refused, the HLC untouched */
    f.e[0].counter = UINT64_MAX;
    fctx.len = 0;
    assert_int_equal(moor_vclock_encode(&f, &fctx), 0);
    ans_reset(&a);
    node_put(w, 0, "k", "\x04", &fctx, &a);
    expect_err(&a, "BAD_CTX", "ahead");
    ans_reset(&a);
    node_put(w, 0, "j", "\x05", &c4, &a);
    moor_buf_t c5 = put_ctx(&a);
    moor_vclock_t v5 = clock_of(&c5);
    assert_int_equal(v5.e[0].counter, ahead + 3);
    /* a restart's floor (the persisted high-water mark) lifts the clock;
     * a lower floor changes nothing */
    assert_int_equal(moor_coord_hlc(w->nodes[0].c), ahead + 3);
    moor_coord_free(w->nodes[0].c);
    node_start(w, 0, 0);
    moor_coord_hlc_floor(w->nodes[0].c, ahead + 100);
    moor_coord_hlc_floor(w->nodes[0].c, 5);
    ans_reset(&a);
    node_put(w, 0, "i", "\x05", NULL, &a);
    moor_buf_t c6 = put_ctx(&a);
    moor_vclock_t v6 = clock_of(&c6);
    assert_int_equal(v6.e[0].counter, ahead + 101);
    moor_buf_free(&c6);
    moor_buf_free(&c4), moor_buf_free(&c5);
    moor_buf_free(&c1), moor_buf_free(&c2), moor_buf_free(&c3), moor_buf_free(&fctx);
    ans_reset(&a);
    free(r);
    world_free(w);
}

/* Contexts are pruned as configured: by count (oldest first) and by age
 * while more than keep_min entries remain; the writer's dot is never
 * folded into the context, and the ctx answered carries it. */
static void test_vclock_prune(void **state)
{
    world_t *w = world_new(0);
    moor_vclock_t f, v;
    moor_buf_t fctx = MOOR_BUF_INIT;
    ans_t a = {0};
    char id[2] = "p";

    (void)state;
    moor_coord_free(w->nodes[0].c);
    w->vc_max_entries = 6;
    w->vc_keep_min = 3;
    w->vc_max_age_ms = 60000;
    node_start(w, 0, 0);
    /* a ctx with 8 foreign entries: 4 fifteen minutes old, 4 a second old */
    moor_vclock_init(&f);
    for (int i = 0; i < 8; i++) {
        id[0] = (char)('p' + i);
        assert_int_equal(moor_vclock_increment(&f, id, 1, i < 4 ? w->now - 900000 : w->now - 1000),
                         0);
    }
    assert_int_equal(moor_vclock_encode(&f, &fctx), 0);
    node_put(w, 0, "k", "\x01", &fctx, &a);
    moor_buf_t c1 = put_ctx(&a);
    v = clock_of(&c1);
    /* age drops the 4 old ones (5 left: 4 recent + a's), count keeps 5 <= 6 */
    assert_int_equal(v.n, 5);
    assert_int_equal(v.e[0].id[0], 'a');
    for (uint32_t i = 1; i < v.n; i++)
        assert_true(v.e[i].id[0] >= 't');
    /* by count alone: max 2 entries keeps the newest two foreign ones in
     * the context; the ctx adds the write's dot (a's) */
    moor_coord_free(w->nodes[0].c);
    w->vc_max_entries = 2;
    w->vc_keep_min = 1;
    w->vc_max_age_ms = 0;
    node_start(w, 0, 0);
    ans_reset(&a);
    node_put(w, 0, "j", "\x01", &fctx, &a);
    moor_buf_t c2 = put_ctx(&a);
    v = clock_of(&c2);
    assert_int_equal(v.n, 3);
    assert_int_equal(v.e[0].id[0], 'a');
    assert_true(v.e[1].id[0] >= 'v' && v.e[2].id[0] >= 'v');
    moor_buf_free(&c1), moor_buf_free(&c2), moor_buf_free(&fctx);
    ans_reset(&a);
    world_free(w);
}

static void test_bad_requests(void **state)
{
    world_t *w = world_new(0);
    ans_t a = {0};
    moor_buf_t bad = MOOR_BUF_INIT;
    moor_coord_req_t q;

    (void)state;
    assert_int_equal(moor_buf_append(&bad, "\x91\x01", 2), 0); /* [1]: not a clock */
    node_put(w, 0, "k", "\x01", &bad, &a);
    expect_err(&a, "BAD_CTX", NULL);
    ans_reset(&a);
    node_del(w, 0, "k", &bad, &a);
    expect_err(&a, "BAD_CTX", NULL);
    bad.len = 0; /* an empty clock and a trailing byte */
    assert_int_equal(moor_buf_append(&bad, "\x90\x01", 2), 0);
    ans_reset(&a);
    node_put(w, 0, "k", "\x01", &bad, &a);
    expect_err(&a, "BAD_CTX", "after the clock");

    q = req_of("k", "\xc1", NULL); /* never MessagePack */
    ans_reset(&a);
    moor_coord_put(w->nodes[0].c, &q, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "MessagePack");
    q = req_of("k", "\x01", NULL);
    q.r = 4;
    ans_reset(&a);
    moor_coord_get(w->nodes[0].c, &q, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "r=4");
    q.r = 2, q.n = MOOR_COORD_N_MAX + 1;
    ans_reset(&a);
    moor_coord_put(w->nodes[0].c, &q, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "n=17");
    char space[300];
    memset(space, 's', sizeof(space));
    q = req_of("k", "\x01", NULL);
    q.space = space, q.slen = sizeof(space);
    ans_reset(&a);
    moor_coord_put(w->nodes[0].c, &q, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "space");

    /* defaults: n=3 and quorum levels when the caller leaves them 0 */
    q = req_of("k", "\x01", NULL);
    q.n = q.r = q.w = 0;
    ans_reset(&a);
    moor_coord_put(w->nodes[0].c, &q, ans_done, &a);
    pump(w);
    expect_ok(&a);
    moor_buf_free(&bad);
    ans_reset(&a);
    world_free(w);
}

static void test_unavailable(void **state)
{
    world_t *w = world_new(0);
    moor_ring_t *one = make_ring("a");
    ans_t a = {0};

    (void)state;
    moor_coord_set_ring(w->nodes[0].c, one);
    moor_ring_free(one); /* the coordinator holds its own reference */
    node_put(w, 0, "k", "\x01", NULL, &a);
    expect_err(&a, "UNAVAILABLE", "the ring has 1 members, w=2");
    ans_reset(&a);
    node_get(w, 0, "k", &a);
    expect_err(&a, "UNAVAILABLE", "r=2");
    moor_coord_req_t q = req_of("k", "\x01", NULL);
    q.w = 1, q.r = 1; /* n=3 on one member: served by the one there is */
    ans_reset(&a);
    moor_coord_put(w->nodes[0].c, &q, ans_done, &a);
    pump(w);
    expect_ok(&a);
    moor_coord_set_ring(w->nodes[0].c, NULL);
    ans_reset(&a);
    node_get(w, 0, "k", &a);
    expect_err(&a, "UNAVAILABLE", "no ring");
    ans_reset(&a);
    world_free(w);
}

/* The one map param of _get {space, key} (rec NULL), _put {space, key,
 * record[, fallback_for]} (rec_str: the record as a str), into p. */
static void pk_kv(moor_buf_t *p, const char *space, const char *key, size_t klen,
                  const moor_buf_t *rec, int rec_str, const char *fb)
{
    msgpack_packer pk;

    p->len = 0;
    moor_mp_packer_init(&pk, p);
    msgpack_pack_map(&pk, rec ? (fb ? 4 : 3) : 2);
    msgpack_pack_str_with_body(&pk, "space", 5);
    msgpack_pack_str_with_body(&pk, space, strlen(space));
    msgpack_pack_str_with_body(&pk, "key", 3);
    msgpack_pack_bin_with_body(&pk, key, klen);
    if (rec) {
        msgpack_pack_str_with_body(&pk, "record", 6);
        if (rec_str)
            msgpack_pack_str_with_body(&pk, rec->data, rec->len);
        else
            msgpack_pack_bin_with_body(&pk, rec->data, rec->len);
        if (fb) {
            msgpack_pack_str_with_body(&pk, "fallback_for", 12);
            msgpack_pack_str_with_body(&pk, fb, strlen(fb));
        }
    }
}

/* _coord {op, space, key, value (fixint v, < 0: none), n=3, w=2,
 * timeout_ms=500, extra} where extra is nfields more pairs appended raw. */
static void pk_coord(moor_buf_t *p, const char *opn, const char *key, size_t klen, int v,
                     const char *extra, size_t elen, uint32_t nextra)
{
    msgpack_packer pk;

    p->len = 0;
    moor_mp_packer_init(&pk, p);
    msgpack_pack_map(&pk, 6 + (v >= 0) + nextra);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, opn, strlen(opn));
    msgpack_pack_str_with_body(&pk, "space", 5);
    msgpack_pack_str_with_body(&pk, "default", 7);
    msgpack_pack_str_with_body(&pk, "key", 3);
    msgpack_pack_bin_with_body(&pk, key, klen);
    if (v >= 0) {
        msgpack_pack_str_with_body(&pk, "value", 5);
        msgpack_pack_int(&pk, v);
    }
    msgpack_pack_str_with_body(&pk, "n", 1), msgpack_pack_uint32(&pk, 3);
    msgpack_pack_str_with_body(&pk, "w", 1), msgpack_pack_uint32(&pk, 2);
    msgpack_pack_str_with_body(&pk, "timeout_ms", 10), msgpack_pack_uint32(&pk, 500);
    if (elen)
        assert_int_equal(moor_buf_append(p, extra, elen), 0);
}

/* Calls handle_peer on b with hand-made params. */
static void peer_call(world_t *w, const char *method, const char *params, size_t plen,
                      uint32_t nparams, ans_t *a)
{
    moor_coord_handle_peer(w->nodes[1].c, method, strlen(method), params, plen, nparams, ans_done,
                           a);
}

static void test_peer_requests(void **state)
{
    world_t *w = world_new(0);
    moor_buf_t p = MOOR_BUF_INIT, rec = MOOR_BUF_INIT;
    msgpack_packer pk;
    ans_t a = {0};

    (void)state;
    pk_kv(&p, "default", "k", 1, NULL, 0, NULL);
    peer_call(w, "_get", p.data, p.len, 1, &a); /* missing: nil */
    expect_ok(&a);
    assert_int_equal((unsigned char)a.res.data[0], 0xc0);
    ans_reset(&a);
    peer_call(w, "_get", p.data, p.len, 2, &a);
    expect_err(&a, "BAD_REQUEST", "one map param");
    ans_reset(&a);
    peer_call(w, "_get", "\x92\xa1s\xa1k", 5, 1, &a); /* the old positional form */
    expect_err(&a, "BAD_REQUEST", "must be a map");
    ans_reset(&a);
    peer_call(w, "_get", "\x81\xa5space\x01", 8, 1, &a);
    expect_err(&a, "BAD_REQUEST", "space");
    ans_reset(&a);
    peer_call(w, "_get", "\x81\xa5space\xa1s", 9, 1, &a);
    expect_err(&a, "BAD_REQUEST", "key");
    ans_reset(&a);
    peer_call(w, "_get", NULL, 0, 1, &a);
    expect_err(&a, "BAD_REQUEST", "map");
    ans_reset(&a); /* a field given twice */
    peer_call(w, "_get", "\x83\xa5space\xa1s\xa3key\xa1k\xa3key\xa1j", 21, 1, &a);
    expect_err(&a, "BAD_REQUEST", "twice");
    ans_reset(&a); /* unknown fields are skipped (a later release's) */
    {
        moor_buf_t q = MOOR_BUF_INIT;
        msgpack_packer qk;
        moor_mp_packer_init(&qk, &q);
        msgpack_pack_map(&qk, 3);
        msgpack_pack_str_with_body(&qk, "later", 5);
        msgpack_pack_array(&qk, 2), msgpack_pack_int(&qk, 1), msgpack_pack_nil(&qk);
        msgpack_pack_str_with_body(&qk, "key", 3), msgpack_pack_str_with_body(&qk, "k", 1);
        msgpack_pack_str_with_body(&qk, "space", 5);
        msgpack_pack_str_with_body(&qk, "default", 7);
        peer_call(w, "_get", q.data, q.len, 1, &a);
        expect_ok(&a);
        moor_buf_free(&q);
    }

    /* a valid _put, answered true once the store says durable */
    moor_record_t *r = rec_scratch();
    moor_vclock_init(&r->vc);
    assert_int_equal(moor_vclock_increment(&r->vc, "x", 1, 1), 0);
    r->n = 1;
    r->sib[0] = (moor_sibling_t){"\x2a", 1, 1, 0, "x", 1, 1, 0};
    assert_int_equal(moor_record_encode(r, &rec), 0);
    pk_kv(&p, "default", "k", 1, &rec, 0, NULL);
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    assert_int_equal(a.called, 0);
    pump(w);
    expect_ok(&a);
    assert_int_equal((unsigned char)a.res.data[0], 0xc3);
    ans_reset(&a);
    pk_kv(&p, "default", "k", 1, NULL, 0, NULL);
    peer_call(w, "_get", p.data, p.len, 1, &a); /* read back: bin(record) */
    expect_ok(&a);
    const char *q = a.res.data, *body;
    uint32_t blen;
    assert_int_equal(moor_mp_read_bin(&q, a.res.data + a.res.len, &body, &blen), 0);
    assert_int_equal(blen, rec.len);
    assert_memory_equal(body, rec.data, rec.len);

    ans_reset(&a);
    pk_kv(&p, "default", "k", 1, &rec, 0, NULL);
    peer_call(w, "_put", p.data, p.len, 3, &a);
    expect_err(&a, "BAD_REQUEST", "one map param");
    ans_reset(&a);
    pk_kv(&p, "default", "k", 1, NULL, 0, NULL); /* the record missing */
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "record must be a bin");
    moor_buf_t bad = MOOR_BUF_INIT; /* a record that does not decode */
    assert_int_equal(moor_buf_append(&bad, "\x92\x90", 2), 0);
    pk_kv(&p, "default", "k", 1, &bad, 0, NULL);
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "record");
    moor_buf_free(&bad);
    pk_kv(&p, "default", "k", 1, &rec, 1, NULL); /* the record as a str */
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "record must be a bin");
    pk_kv(&p, "default", "k", 1, &rec, 0, NULL); /* trailing bytes */
    moor_mp_packer_init(&pk, &p);
    msgpack_pack_nil(&pk);
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "after the map");
    ans_reset(&a);
    peer_call(w, "_nope", p.data, p.len, 1, &a);
    expect_err(&a, "UNKNOWN_METHOD", "_nope");
    /* fallback_for: kept as a hint for that owner, not in b's data */
    pk_kv(&p, "default", "h", 1, &rec, 0, "a");
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    pump(w);
    expect_ok(&a);
    assert_int_equal(w->nodes[1].hints, 1);
    assert_int_equal(w->nodes[1].hint_owner[0], 'a');
    assert_false(stored(w, 1, "h", r));
    pk_kv(&p, "default", "h", 1, &rec, 0, ""); /* an empty owner */
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "fallback_for");
    w->nodes[1].fail_puts = 1; /* the store refuses: the error, not a hang */
    pk_kv(&p, "default", "k", 1, &rec, 0, NULL);
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "IO_ERROR", "refuses");
    moor_buf_free(&p), moor_buf_free(&rec);
    ans_reset(&a);
    free(r);
    world_free(w);
}

/* The encoded clock {id: counter @ ts, ...} of up to three entries (NULL
 * ids end the list; ids in order). */
static void clock_bytes(moor_buf_t *out, const char *id1, uint64_t c1, uint64_t t1, const char *id2,
                        uint64_t c2, uint64_t t2)
{
    moor_vclock_t vc;

    moor_vclock_init(&vc);
    assert_int_equal(moor_vclock_increment(&vc, id1, strlen(id1), t1), 0);
    vc.e[0].counter = c1;
    if (id2) {
        assert_int_equal(moor_vclock_increment(&vc, id2, strlen(id2), t2), 0);
        vc.e[1].counter = c2;
    }
    out->len = 0;
    assert_int_equal(moor_vclock_encode(&vc, out), 0);
}

/* Puts a record straight into node i's store (what an older release, or
 * a bug, may have left there). */
static void store_raw(world_t *w, int i, const char *key, const moor_record_t *r)
{
    moor_buf_t ek = MOOR_BUF_INIT, rec = MOOR_BUF_INIT;
    node_t *n = &w->nodes[i];
    kv_t *kv;

    assert_int_equal(moor_record_key("default", 7, key, strlen(key), &ek), 0);
    assert_int_equal(moor_record_encode(r, &rec), 0);
    if (!(kv = kv_find(n, ek.data, ek.len))) {
        kv = &n->kv[n->nkv++];
        moor_buf_init(&kv->key);
        moor_buf_init(&kv->rec);
        assert_int_equal(moor_buf_append(&kv->key, ek.data, ek.len), 0);
    }
    kv->rec.len = 0;
    assert_int_equal(moor_buf_append(&kv->rec, rec.data, rec.len), 0);
    moor_buf_free(&ek), moor_buf_free(&rec);
}

/* Puts raw record bytes straight into node i's store. */
static void store_bytes(world_t *w, int i, const char *key, const char *rec, size_t rlen)
{
    moor_buf_t ek = MOOR_BUF_INIT;
    node_t *n = &w->nodes[i];
    kv_t *kv;

    assert_int_equal(moor_record_key("default", 7, key, strlen(key), &ek), 0);
    if (!(kv = kv_find(n, ek.data, ek.len))) {
        kv = &n->kv[n->nkv++];
        moor_buf_init(&kv->key);
        moor_buf_init(&kv->rec);
        assert_int_equal(moor_buf_append(&kv->key, ek.data, ek.len), 0);
    }
    kv->rec.len = 0;
    assert_int_equal(moor_buf_append(&kv->rec, rec, rlen), 0);
    moor_buf_free(&ek);
}

/* Replicas holding records in the format before DVV (the same bytes on
 * all three, as an older release left them): a get answers their values,
 * a put with its ctx replaces them on every replica, in v2. */
static void test_legacy_records(void **state)
{
    /* [[["old", 4, 50]], [[5, 9, false], [7, 10, false]]] */
    static const char v1[] = "\x92"
                             "\x91\x93\xc4\x03old\x04\x32"
                             "\x92"
                             "\x93\x05\x09\xc2"
                             "\x93\x07\x0a\xc2";
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0};

    (void)state;
    for (int i = 0; i < 3; i++)
        store_bytes(w, i, "k", v1, sizeof(v1) - 1);
    node_get(w, 1, "k", &a);
    got_t g = parse_get(&a);
    assert_int_equal(g.n, 2);
    assert_true(got_has(&g, 5) && got_has(&g, 7));
    for (int i = 0; i < 3; i++) { /* nothing to repair: all agreed */
        assert_true(stored(w, i, "k", r));
        assert_int_equal(r->n, 2);
    }
    ans_reset(&a);
    node_put(w, 2, "k", "\x2a", &g.ctx, &a);
    expect_ok(&a);
    for (int i = 0; i < 3; i++) {
        assert_true(stored(w, i, "k", r));
        assert_int_equal(r->n, 1);
        assert_int_equal(r->sib[0].value[0], 0x2a);
        assert_int_equal(moor_vclock_get(&r->vc, "old", 3), 4);
    }
    moor_buf_free(&g.ctx);
    ans_reset(&a);
    free(r);
    world_free(w);
}

/* sibling_max: a blind write (put or del) on a key with that many
 * siblings is refused, nothing stored anywhere; a write with the ctx goes
 * through; the counts are in the stats. */
static void test_sibling_limits(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    moor_coord_stats_t st, tot = {0};
    ans_t a = {0};

    (void)state;
    w->sib_warn = 2;
    w->sib_max = 3;
    for (int i = 0; i < 3; i++) {
        moor_coord_free(w->nodes[i].c);
        node_start(w, i, 0);
    }
    node_put(w, 0, "k", "\x01", NULL, &a);
    expect_ok(&a);
    ans_reset(&a);
    node_put(w, 1, "k", "\x02", NULL, &a);
    expect_ok(&a);
    ans_reset(&a);
    node_put(w, 2, "k", "\x03", NULL, &a);
    expect_ok(&a);
    ans_reset(&a);
    node_put(w, 0, "k", "\x04", NULL, &a);
    expect_err(&a, "TOO_MANY_SIBLINGS", "write back with its ctx");
    ans_reset(&a);
    node_del(w, 1, "k", NULL, &a);
    expect_err(&a, "TOO_MANY_SIBLINGS", "sibling_max = 3");
    for (int i = 0; i < 3; i++) {
        assert_true(stored(w, i, "k", r));
        assert_int_equal(r->n, 3);
    }
    ans_reset(&a);
    node_get(w, 2, "k", &a);
    got_t g = parse_get(&a);
    assert_int_equal(g.n, 3);
    ans_reset(&a);
    node_put(w, 0, "k", "\x05", &g.ctx, &a);
    expect_ok(&a);
    for (int i = 0; i < 3; i++) {
        assert_true(stored(w, i, "k", r));
        assert_int_equal(r->n, 1);
    }
    for (int i = 0; i < 3; i++) {
        moor_coord_stats(w->nodes[i].c, &st);
        tot.siblings_warned += st.siblings_warned;
        tot.siblings_refused += st.siblings_refused;
        tot.siblings_most =
            st.siblings_most > tot.siblings_most ? st.siblings_most : tot.siblings_most;
    }
    assert_int_equal(tot.siblings_warned, 1);
    assert_int_equal(tot.siblings_refused, 2);
    assert_int_equal(tot.siblings_most, 3);
    moor_buf_free(&g.ctx);
    ans_reset(&a);
    free(r);
    world_free(w);
}

/* No client ctx and no peer record may carry a clock entry near the end
 * of its range or far ahead of the wall clock, and nothing may move a
 * node's own clock beyond its bound: once, a ctx naming another node's
 * counter 2^64-1 made a key unwritable through that node, and a ctx with
 * another node's counter at 2^63 followed by a blind write there pushed
 * that node's clock (persisted) to 2^63 for good. */
static void test_clock_bounds(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    moor_buf_t ctx = MOOR_BUF_INIT, p = MOOR_BUF_INIT, rec = MOOR_BUF_INIT;
    uint64_t now_us = w->now * 1000, day_us = MOOR_VC_MAX_AHEAD_MS * 1000;
    ans_t a = {0};

    (void)state;
    /* through a: b's counter at 2^64-1, b's at 2^63, b's a day and a bit
     * ahead, b's time far ahead -- each refused, nothing stored */
    clock_bytes(&ctx, "a", 1, 1, "b", UINT64_MAX, 1);
    node_put(w, 0, "pk", "\x01", &ctx, &a);
    expect_err(&a, "BAD_CTX", "node 'b'");
    ans_reset(&a);
    clock_bytes(&ctx, "b", 1ull << 63, w->now, NULL, 0, 0);
    node_put(w, 0, "pk", "\x01", &ctx, &a);
    expect_err(&a, "BAD_CTX", "more than a day ahead");
    ans_reset(&a);
    clock_bytes(&ctx, "b", now_us + day_us + 5000000, w->now, NULL, 0, 0);
    node_del(w, 0, "pk", &ctx, &a);
    expect_err(&a, "BAD_CTX", "ahead");
    ans_reset(&a);
    clock_bytes(&ctx, "b", 7, w->now + MOOR_VC_MAX_AHEAD_MS + 1, NULL, 0, 0);
    node_put(w, 0, "pk", "\x01", &ctx, &a);
    expect_err(&a, "BAD_CTX", "time of node 'b'");
    for (int i = 0; i < 3; i++)
        assert_false(stored(w, i, "pk", r));
    /* within the bound (an hour ahead): accepted, and the write goes on
     * through b, which never moves its clock past its bound */
    ans_reset(&a);
    clock_bytes(&ctx, "b", now_us + 3600000ull * 1000, w->now, NULL, 0, 0);
    node_put(w, 0, "pk", "\x01", &ctx, &a);
    expect_ok(&a);
    ans_reset(&a);
    node_put(w, 1, "pk", "\x02", NULL, &a);
    expect_ok(&a);
    assert_true(moor_coord_hlc(w->nodes[1].c) <= moor_vclock_counter_bound(w->now));

    /* a record stored before bounds were checked, with b's counter at
     * 2^63: a write through b is refused and b's clock stays put */
    uint64_t hlc_b = moor_coord_hlc(w->nodes[1].c);
    moor_vclock_init(&r->vc);
    assert_int_equal(moor_vclock_increment(&r->vc, "b", 1, w->now), 0);
    r->vc.e[0].counter = 1ull << 63;
    r->n = 1;
    r->sib[0] = (moor_sibling_t){"\x2a", 1, w->now, 0, "b", 1, 1, 0};
    for (int i = 0; i < 3; i++)
        store_raw(w, i, "old", r);
    ans_reset(&a);
    node_put(w, 1, "old", "\x03", NULL, &a);
    expect_err(&a, "BAD_CTX", "refusing to move the clock");
    assert_int_equal(moor_coord_hlc(w->nodes[1].c), hlc_b);
    ans_reset(&a);
    node_put(w, 1, "fresh", "\x03", NULL, &a); /* other keys: unaffected */
    expect_ok(&a);

    /* the replica side checks what a peer sends, whoever it is */
    assert_int_equal(moor_record_encode(r, &rec), 0); /* counter 2^63 */
    pk_kv(&p, "default", "k", 1, &rec, 0, NULL);
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "more than a day ahead");
    r->vc.e[0].counter = 5; /* the time far ahead */
    r->vc.e[0].ts = w->now + 2 * MOOR_VC_MAX_AHEAD_MS;
    rec.len = 0;
    assert_int_equal(moor_record_encode(r, &rec), 0);
    pk_kv(&p, "default", "k", 1, &rec, 0, NULL);
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "time of node 'b'");
    r->vc.e[0].ts = w->now; /* no siblings */
    r->n = 0;
    rec.len = 0;
    assert_int_equal(moor_record_encode(r, &rec), 0);
    pk_kv(&p, "default", "k", 1, &rec, 0, NULL);
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "no siblings");
    assert_false(stored(w, 1, "k", r));
    /* an undeclared space, an oversized key: _put, _get and _coord */
    r->n = 1;
    rec.len = 0;
    assert_int_equal(moor_record_encode(r, &rec), 0);
    pk_kv(&p, "nope", "k", 1, &rec, 0, NULL);
    ans_reset(&a);
    peer_call(w, "_put", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "unknown space 'nope'");
    pk_kv(&p, "nope", "k", 1, NULL, 0, NULL);
    ans_reset(&a);
    peer_call(w, "_get", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "unknown space 'nope'");
    char big[101];
    memset(big, 'k', sizeof(big));
    pk_coord(&p, "put", big, sizeof(big), 1, NULL, 0, 0);
    ans_reset(&a);
    peer_call(w, "_coord", p.data, p.len, 1, &a);
    expect_err(&a, "BAD_REQUEST", "key of 101 bytes");
    /* a record stored before clocks were bounded stays readable through
     * any node (its read repair onto other nodes is refused by their
     * replica-side check: only the coordinator's own copy takes it) */
    r->vc.e[0].counter = 1ull << 63;
    store_raw(w, 2, "fg", r);
    ans_reset(&a);
    moor_coord_req_t q = req_of("fg", NULL, NULL);
    q.r = 3;
    moor_coord_get(w->nodes[0].c, &q, ans_done, &a);
    pump(w);
    expect_ok(&a);
    assert_int_not_equal((unsigned char)a.res.data[0], 0xc0);
    assert_false(stored(w, 1, "fg", r));
    ans_reset(&a);
    moor_buf_free(&ctx), moor_buf_free(&p), moor_buf_free(&rec);
    free(r);
    world_free(w);
}

/* _coord from a peer: malformed params, and a node that is no replica. */
static void test_peer_coord(void **state)
{
    world_t *w = world_new(0);
    moor_buf_t p = MOOR_BUF_INIT;
    ans_t a = {0};

    (void)state;
    pk_coord(&p, "put", "k", 1, 5, NULL, 0, 0);
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, p.data, p.len, 1, ans_done, &a);
    pump(w);
    moor_buf_t ctx = put_ctx(&a);
    assert_int_equal(clock_of(&ctx).e[0].id[0], 'b');
    ans_reset(&a);
    moor_coord_handle_peer(w->nodes[3].c, "_coord", 6, p.data, p.len, 1, ans_done, &a);
    expect_err(&a, "UNAVAILABLE", "not a replica");
    ans_reset(&a);
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, p.data, p.len, 8, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "one map param");
    ans_reset(&a);
    pk_coord(&p, "get", "k", 1, 5, NULL, 0, 0);
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, p.data, p.len, 1, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "op must be");
    ans_reset(&a);
    pk_coord(&p, "put", "k", 1, 5, NULL, 0, 0);
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, p.data, p.len - 1, 1, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "not MessagePack");
    ans_reset(&a);
    pk_coord(&p, "put", "k", 1, 5, "\xa6sloppy\x01", 8, 1);
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, p.data, p.len, 1, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "bools");
    ans_reset(&a);
    pk_coord(&p, "put", "k", 1, -1, NULL, 0, 0); /* put without a value */
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, p.data, p.len, 1, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "value must be");
    ans_reset(&a);
    pk_coord(&p, "del", "k", 1, 5, NULL, 0, 0); /* "del" with a value */
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, p.data, p.len, 1, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "no value");
    ans_reset(&a);
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, NULL, 0, 1, ans_done, &a);
    expect_err(&a, "BAD_REQUEST", "map");
    ans_reset(&a); /* a del with receipt, from a peer: the receipt comes back */
    pk_coord(&p, "del", "k", 1, -1, "\xa7receipt\xc3", 9, 1);
    moor_coord_handle_peer(w->nodes[1].c, "_coord", 6, p.data, p.len, 1, ans_done, &a);
    pump(w);
    expect_ok(&a);
    assert_non_null(memmem(a.res.data, a.res.len, "receipt", 7));
    moor_buf_free(&p), moor_buf_free(&ctx);
    ans_reset(&a);
    world_free(w);
}

static void test_shutdown_in_flight(void **state)
{
    world_t *w = world_new(0);
    ans_t a = {0}, g = {0}, pp = {0};

    (void)state;
    w->nodes[1].drop = w->nodes[2].drop = 1;
    node_put(w, 0, "k", "\x01", NULL, &a);
    node_get(w, 0, "k", &g);
    assert_int_equal(a.called + g.called, 0);
    moor_coord_free(w->nodes[0].c);
    w->nodes[0].c = NULL;
    expect_err(&a, "SHUTTING_DOWN", NULL);
    expect_err(&g, "SHUTTING_DOWN", NULL);
    advance(w, 2 * TIMEOUT_MS); /* the lost requests' timeouts reach detached calls */
    assert_int_equal(a.called, 1);
    assert_int_equal(g.called, 1);

    /* a replica freed while its store write is pending */
    w->nodes[1].drop = w->nodes[2].drop = 0;
    moor_buf_t p = MOOR_BUF_INIT, rec = MOOR_BUF_INIT;
    moor_record_t *r = rec_scratch();
    moor_vclock_init(&r->vc);
    assert_int_equal(moor_vclock_increment(&r->vc, "x", 1, 1), 0);
    r->n = 1;
    r->sib[0] = (moor_sibling_t){"\x2a", 1, 1, 0, "x", 1, 1, 0};
    assert_int_equal(moor_record_encode(r, &rec), 0);
    pk_kv(&p, "default", "k", 1, &rec, 0, NULL);
    peer_call(w, "_put", p.data, p.len, 1, &pp);
    assert_int_equal(pp.called, 0);
    moor_coord_free(w->nodes[1].c);
    w->nodes[1].c = NULL;
    expect_err(&pp, "SHUTTING_DOWN", NULL);
    pump(w); /* the store's done reaches a detached call */
    assert_int_equal(pp.called, 1);

    /* a put in flight from c to b (now gone) and a (gone): lost, then absorbed */
    ans_reset(&a);
    node_put(w, 2, "k", "\x02", NULL, &a);
    advance(w, TIMEOUT_MS);
    expect_err(&a, "QUORUM_FAILED", "1 of 3");
    moor_buf_free(&p), moor_buf_free(&rec);
    ans_reset(&a), ans_reset(&g), ans_reset(&pp);
    free(r);
    world_free(w);
}

/* A write at w = 1 (r = 2) coordinated by node i. */
static void node_put_w1(world_t *w, int i, const char *key, const char *value,
                        const moor_buf_t *ctx, ans_t *a)
{
    moor_coord_req_t r = req_of(key, value, ctx);
    r.w = 1;
    moor_coord_put(w->nodes[i].c, &r, ans_done, a);
    pump(w);
}

/* c misses a delete; a blind put it coordinates reads a and b first, so
 * the tombstone it learns makes the new value replace the deleted one
 * (without the read, c's stale copy came back beside it).  Too few read
 * answers only delay the write (half the time); a write with a ctx does
 * not read at all. */
static void test_blind_write_reads_first(void **state)
{
    world_t *w = world_new(0);
    moor_record_t *r = rec_scratch();
    ans_t a = {0};

    (void)state;
    node_put(w, 0, "k", "\x01", NULL, &a);
    expect_ok(&a);
    ans_reset(&a);
    node_get(w, 0, "k", &a);
    got_t g = parse_get(&a);
    w->nodes[2].drop = 1; /* c misses the delete */
    ans_reset(&a);
    node_del(w, 0, "k", &g.ctx, &a);
    expect_ok(&a);
    advance(w, TIMEOUT_MS);
    w->nodes[2].drop = 0;
    assert_true(stored(w, 2, "k", r));
    assert_int_equal(r->n, 1);
    assert_false(r->sib[0].tombstone); /* c still holds the old value */
    ans_reset(&a);
    node_put(w, 2, "k", "\x02", NULL, &a); /* blind, coordinated by c */
    expect_ok(&a);
    for (int i = 0; i < 3; i++) {
        ans_reset(&a);
        node_get(w, i, "k", &a);
        moor_buf_free(&g.ctx);
        g = parse_get(&a);
        if (g.n != 1 || g.vals[0] != 2)
            fail_msg("get via %c after c's blind put: %u value(s), first %d; expected only 2",
                     'a' + i, g.n, g.vals[0]);
        assert_true(stored(w, i, "k", r));
        for (uint32_t j = 0; j < r->n; j++)
            if (!r->sib[j].tombstone && r->sib[j].value[0] != 2)
                fail_msg("replica %c keeps value %d beside 2", 'a' + i, r->sib[j].value[0]);
    }
    /* a and b silent: the read gets no answer, and the write goes ahead
     * at half the time on c's own record (w = 1: c's ack suffices) */
    w->nodes[0].drop = w->nodes[1].drop = 1;
    ans_reset(&a);
    node_put_w1(w, 2, "k", "\x04", NULL, &a);
    assert_int_equal(a.called, 0);
    advance(w, TIMEOUT_MS / 2 - 1);
    assert_int_equal(a.called, 0);
    advance(w, 1);
    moor_buf_t c4 = put_ctx(&a);
    /* with a ctx: no read, answered at once */
    ans_reset(&a);
    node_put_w1(w, 2, "k", "\x05", &c4, &a);
    expect_ok(&a);
    w->nodes[0].drop = w->nodes[1].drop = 0;
    advance(w, 2 * TIMEOUT_MS);
    moor_coord_stats_t st;
    moor_coord_stats(w->nodes[2].c, &st);
    assert_int_equal(st.quorum_failures + st.timeouts, 0);
    moor_buf_free(&g.ctx), moor_buf_free(&c4);
    ans_reset(&a);
    free(r);
    world_free(w);
}

/* The same calls on a fresh world give the same stored bytes. */
static void scenario(world_t *w)
{
    ans_t a = {0};

    w->nodes[2].drop = 1;
    node_put(w, 0, "x", "\x01", NULL, &a);
    ans_reset(&a);
    node_put(w, 1, "x", "\x02", NULL, &a);
    advance(w, 7);
    w->nodes[2].drop = 0;
    ans_reset(&a);
    node_del(w, 2, "x", NULL, &a);
    ans_reset(&a);
    node_get(w, 0, "x", &a);
    advance(w, TIMEOUT_MS);
    ans_reset(&a);
}

/* ---- sloppy quorum, notfound, receipts, where ---------------------------------------- */

/* A ring of a, b, c, d with the member `down` (0: none) marked down. */
static moor_ring_t *make_ring_down(char down)
{
    moor_member_t m[4];
    moor_ring_t *ring;

    memset(m, 0, sizeof(m));
    for (int i = 0; i < 4; i++) {
        m[i].idlen = 1;
        m[i].id[0] = (char)('a' + i);
        m[i].vnodes = 16;
        m[i].status = m[i].id[0] == down ? MOOR_MEMBER_DOWN : MOOR_MEMBER_UP;
        snprintf(m[i].addr, sizeof(m[i].addr), "127.0.0.%d:7700", i + 1);
    }
    assert_int_equal(moor_ring_build(m, 4, &ring), 0);
    return ring;
}

/* The key's three owners (ids) on a ring of abcd, and the fourth. */
static void owners_of(const char *key, char own[3], char *other)
{
    moor_ring_t *ring = make_ring_down(0);
    uint32_t idx[3], n;
    uint64_t t;
    int seen[4] = {0};

    assert_int_equal(moor_ring_key_token("default", 7, key, strlen(key), &t), 0);
    assert_int_equal(moor_ring_preference_list(ring, t, 3, idx, &n), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        own[i] = moor_ring_member(ring, idx[i])->id[0];
        seen[own[i] - 'a'] = 1;
    }
    for (int i = 0; i < 4; i++)
        if (!seen[i])
            *other = (char)('a' + i);
    moor_ring_free(ring);
}

static void world_set_ring(world_t *w, moor_ring_t *ring)
{
    moor_ring_free(w->ring);
    w->ring = ring;
    for (int i = 0; i < NNODES; i++)
        if (w->nodes[i].c)
            moor_coord_set_ring(w->nodes[i].c, ring);
}

/* One receipt entry. */
typedef struct rcpt {
    char node, fb; /* fb 0: no fallback_for */
    char status[12];
} rcpt_t;

/* The receipt of an answer (a map with `receipt`): its entries into r (up
 * to 8); returns how many. */
static uint32_t receipt_of(const ans_t *a, rcpt_t *r)
{
    const char *p = a->res.data, *end = p + a->res.len, *k, *v;
    uint32_t n, m, f, klen, vlen, count = 0;

    expect_ok(a);
    assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
    while (n--) {
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        if (!(klen == 7 && memcmp(k, "receipt", 7) == 0)) {
            assert_int_equal(moor_mp_skip(&p, end, 16), 0);
            continue;
        }
        assert_int_equal(moor_mp_read_array(&p, end, &m), 0);
        assert_true(m <= 8);
        for (count = 0; count < m; count++) {
            memset(&r[count], 0, sizeof(r[count]));
            assert_int_equal(moor_mp_read_map(&p, end, &f), 0);
            while (f--) {
                assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
                assert_int_equal(moor_mp_read_str(&p, end, &v, &vlen), 0);
                if (klen == 4 && memcmp(k, "node", 4) == 0)
                    r[count].node = v[0];
                else if (klen == 6 && memcmp(k, "status", 6) == 0)
                    memcpy(r[count].status, v, vlen < 11 ? vlen : 11);
                else if (klen == 12 && memcmp(k, "fallback_for", 12) == 0)
                    r[count].fb = v[0];
                else
                    fail_msg("unknown receipt field %.*s", (int)klen, k);
            }
        }
    }
    assert_ptr_equal(p, end);
    return count;
}

/* The receipt entry of node id (fails if none). */
static const rcpt_t *rcpt_find(const rcpt_t *r, uint32_t n, char id)
{
    for (uint32_t i = 0; i < n; i++)
        if (r[i].node == id)
            return &r[i];
    fail_msg("no receipt entry for node %c", id);
    return NULL;
}

static void put_opts(world_t *w, int i, const char *key, const char *value, uint32_t wq, int sloppy,
                     int receipt, ans_t *a)
{
    moor_coord_req_t r = req_of(key, value, NULL);

    r.w = wq;
    r.sloppy = sloppy;
    r.receipt = receipt;
    moor_coord_put(w->nodes[i].c, &r, ans_done, a);
    pump(w);
}

/* An owner whose ring status is down is not asked: the next healthy
 * member clockwise stands in for it, gets `_put` with fallback_for, and
 * stores a hint through hint_put (never in its own data).  Its ack counts
 * toward W -- unless sloppy = false, then W = 3 fails with QUORUM_FAILED
 * -- and a fallback without a hint store refuses, uncounted. */
static void test_sloppy_down_owner(void **state)
{
    world_t *w = world_new(0);
    char own[3], fb;
    moor_record_t *r = rec_scratch();
    moor_coord_stats_t st;
    rcpt_t rc[8];
    ans_t a = {0};

    (void)state;
    owners_of("k", own, &fb);
    world_set_ring(w, make_ring_down(own[2]));
    w->nodes[own[2] - 'a'].drop = 1; /* and really gone */
    int co = own[0] - 'a';
    put_opts(w, co, "k", "\x07", 3, 0, 1, &a);
    expect_ok(&a);
    assert_int_equal(w->nodes[fb - 'a'].hints, 1);
    assert_int_equal(w->nodes[fb - 'a'].hint_owner[0], own[2]);
    assert_false(stored(w, fb - 'a', "k", r)); /* a hint, not the fallback's data */
    assert_true(stored(w, own[0] - 'a', "k", r) && stored(w, own[1] - 'a', "k", r));
    assert_false(stored(w, own[2] - 'a', "k", r));
    assert_int_equal(receipt_of(&a, rc), 3); /* the down owner was not asked */
    assert_string_equal(rcpt_find(rc, 3, own[0])->status, "ok");
    assert_int_equal(rcpt_find(rc, 3, own[0])->fb, 0);
    assert_string_equal(rcpt_find(rc, 3, own[1])->status, "ok");
    assert_string_equal(rcpt_find(rc, 3, fb)->status, "ok");
    assert_int_equal(rcpt_find(rc, 3, fb)->fb, own[2]);
    moor_coord_stats(w->nodes[co].c, &st);
    assert_int_equal(st.fallback_writes, 1);
    assert_int_equal(st.sloppy_writes, 1);
    moor_coord_stats(w->nodes[fb - 'a'].c, &st);
    assert_int_equal(st.hints_taken, 1);

    /* sloppy = false: only the two owners up count; W = 3 fails, yet the
     * fallback still got the write as a hint */
    ans_reset(&a);
    put_opts(w, co, "k", "\x08", 3, MOOR_COORD_SLOPPY_OFF, 0, &a);
    expect_err(&a, "QUORUM_FAILED", "3 needed");
    assert_true(strstr(a.msg, "sloppy = false") != NULL);
    assert_int_equal(w->nodes[fb - 'a'].hints, 2);
    ans_reset(&a); /* W = 2 needs no fallback */
    put_opts(w, co, "k", "\x09", 2, MOOR_COORD_SLOPPY_OFF, 0, &a);
    expect_ok(&a);

    /* a put through the fallback is forwarded to an owner: a fallback
     * never coordinates for an owner */
    ans_reset(&a);
    put_opts(w, fb - 'a', "k", "\x0a", 2, 0, 0, &a);
    expect_ok(&a);
    assert_false(stored(w, fb - 'a', "k", r));

    /* a reader's list is the same first three healthy members */
    ans_reset(&a);
    moor_coord_req_t q = req_of("k", NULL, NULL);
    q.r = 3, q.receipt = 1;
    moor_coord_get(w->nodes[co].c, &q, ans_done, &a);
    pump(w);
    assert_int_equal(receipt_of(&a, rc), 3);
    assert_string_equal(rcpt_find(rc, 3, fb)->status, "notfound");
    assert_int_equal(rcpt_find(rc, 3, fb)->fb, own[2]);
    assert_string_equal(rcpt_find(rc, 3, own[1])->status, "found");
    ans_reset(&a);
    world_free(w);

    /* a fallback with no hint store refuses; uncounted, W = 3 fails */
    w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->now = 1000000;
    w->ring = make_ring_down(own[2]);
    for (int i = 0; i < NNODES; i++) {
        w->nodes[i].w = w;
        w->nodes[i].id[0] = (char)('a' + i);
        w->nodes[i].no_hints = 1;
        node_start(w, i, 0);
    }
    put_opts(w, co, "k", "\x07", 3, 0, 1, &a);
    expect_err(&a, "QUORUM_FAILED", "3 needed");
    ans_reset(&a);
    put_opts(w, co, "k", "\x07", 2, 0, 1, &a);
    expect_ok(&a);
    assert_int_equal(receipt_of(&a, rc), 3);
    assert_string_equal(rcpt_find(rc, 3, fb)->status, "error");
    ans_reset(&a);
    free(r);
    world_free(w);
}

/* An owner the ring says is up but that does not answer in time: the
 * write goes to the next healthy member as a fallback for it (the owner
 * gets half the time left), and its ack makes W = 3. */
static void test_sloppy_silent_owner(void **state)
{
    world_t *w = world_new(0);
    char own[3], fb;
    moor_record_t *r = rec_scratch();
    rcpt_t rc[8];
    ans_t a = {0};
    uint64_t t0;

    (void)state;
    owners_of("k", own, &fb);
    world_set_ring(w, make_ring_down(0));
    w->nodes[own[1] - 'a'].drop = 1;
    t0 = w->now;
    put_opts(w, own[0] - 'a', "k", "\x07", 3, 0, 1, &a);
    assert_int_equal(a.called, 0);
    advance(w, TIMEOUT_MS);
    expect_ok(&a);
    printf("  silent owner: answered by simulated t+%llu ms\n", (unsigned long long)(w->now - t0));
    assert_int_equal(w->nodes[fb - 'a'].hints, 1);
    assert_int_equal(w->nodes[fb - 'a'].hint_owner[0], own[1]);
    assert_int_equal(receipt_of(&a, rc), 4);
    assert_string_equal(rcpt_find(rc, 4, own[1])->status, "timeout");
    assert_string_equal(rcpt_find(rc, 4, fb)->status, "ok");
    assert_int_equal(rcpt_find(rc, 4, fb)->fb, own[1]);
    assert_false(stored(w, fb - 'a', "k", r));
    /* sloppy = false: the owner gets the whole time, nobody stands in */
    ans_reset(&a);
    put_opts(w, own[0] - 'a', "k", "\x08", 3, MOOR_COORD_SLOPPY_OFF, 0, &a);
    advance(w, TIMEOUT_MS);
    expect_err(&a, "QUORUM_FAILED", "2 of 3");
    assert_int_equal(w->nodes[fb - 'a'].hints, 1);
    ans_reset(&a);
    free(r);
    world_free(w);
}

/* notfound_ok = false: c missed a write (it was unreachable); a get at
 * r = 1 through c must not answer c's own notfound while a and b have the
 * key -- it waits for a found reply. */
static void test_notfound_waits(void **state)
{
    world_t *w = world_new(0);
    moor_coord_stats_t st;
    rcpt_t rc[8];
    ans_t a = {0};

    (void)state;
    w->nodes[2].drop = 1;
    node_put(w, 0, "k", "\x07", NULL, &a);
    advance(w, TIMEOUT_MS);
    expect_ok(&a);
    w->nodes[2].drop = 0;
    ans_reset(&a);
    moor_coord_req_t q = req_of("k", NULL, NULL);
    q.r = 1;
    moor_coord_get(w->nodes[2].c, &q, ans_done, &a);
    assert_int_equal(a.called, 0); /* its own notfound came at once: not enough */
    pump(w);
    got_t g = parse_get(&a);
    assert_int_equal(g.nil, 0);
    assert_int_equal(g.vals[0], 7);
    moor_buf_free(&g.ctx);
    moor_coord_stats(w->nodes[2].c, &st);
    assert_int_equal(st.notfound_waits, 1);
    /* a key nobody has: nil once every replica said notfound */
    ans_reset(&a);
    q = req_of("none", NULL, NULL);
    q.r = 1, q.receipt = 1;
    moor_coord_get(w->nodes[2].c, &q, ans_done, &a);
    pump(w);
    assert_int_equal(receipt_of(&a, rc), 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(rc[i].status, "notfound");
    /* {values = [], receipt}: the empty values come first */
    assert_int_equal((unsigned char)a.res.data[0], 0x82);
    assert_non_null(memmem(a.res.data, a.res.len, "\xa6values\x90", 8));
    /* with a receipt the get waits for every replica: two that never
     * answer show as timeouts at the deadline, c (read-repaired by the
     * first get) as found */
    w->nodes[0].drop = w->nodes[1].drop = 1;
    ans_reset(&a);
    q = req_of("k", NULL, NULL);
    q.r = 1, q.receipt = 1;
    moor_coord_get(w->nodes[2].c, &q, ans_done, &a);
    advance(w, TIMEOUT_MS);
    assert_int_equal(receipt_of(&a, rc), 3);
    assert_string_equal(rcpt_find(rc, 3, 'a')->status, "timeout");
    assert_string_equal(rcpt_find(rc, 3, 'c')->status, "found");
    ans_reset(&a);
    world_free(w);
}

/* Receipts: one entry per replica asked, what it answered before any
 * read repair; through a forward too. */
static void test_receipts(void **state)
{
    world_t *w = world_new(0);
    rcpt_t rc[8];
    ans_t a = {0};

    (void)state;
    put_opts(w, 0, "k", "\x07", 2, 0, 1, &a);
    assert_int_equal(receipt_of(&a, rc), 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(rc[i].status, "ok");
        assert_int_equal(rc[i].fb, 0);
    }
    /* put's normal answer is still there: {ctx, receipt} */
    assert_int_equal((unsigned char)a.res.data[0], 0x82);
    assert_non_null(memmem(a.res.data, a.res.len,
                           "\xa3"
                           "ctx",
                           4));
    ans_reset(&a); /* through d, which is no replica: _coord carries receipt */
    put_opts(w, 3, "j", "\x01", 2, 0, 1, &a);
    assert_int_equal(receipt_of(&a, rc), 3);
    ans_reset(&a);
    /* b loses k; a get with receipt says notfound for b, found for the
     * others -- before the read repair that puts it back */
    for (size_t i = 0; i < w->nodes[1].nkv; i++) {
        moor_buf_free(&w->nodes[1].kv[i].key);
        moor_buf_free(&w->nodes[1].kv[i].rec);
    }
    w->nodes[1].nkv = 0;
    moor_coord_req_t q = req_of("k", NULL, NULL);
    q.receipt = 1;
    moor_coord_get(w->nodes[0].c, &q, ans_done, &a);
    pump(w);
    assert_int_equal(receipt_of(&a, rc), 3);
    assert_string_equal(rcpt_find(rc, 3, 'a')->status, "found");
    assert_string_equal(rcpt_find(rc, 3, 'b')->status, "notfound");
    assert_string_equal(rcpt_find(rc, 3, 'c')->status, "found");
    moor_record_t *r = rec_scratch();
    assert_true(stored(w, 1, "k", r)); /* repaired after */
    free(r);
    /* del with receipt: {receipt} */
    ans_reset(&a);
    moor_coord_req_t d = req_of("k", NULL, NULL);
    d.receipt = 1;
    moor_coord_del(w->nodes[0].c, &d, ans_done, &a);
    pump(w);
    assert_int_equal((unsigned char)a.res.data[0], 0x81);
    assert_int_equal(receipt_of(&a, rc), 3);
    ans_reset(&a);
    world_free(w);
}

/* where: the owners in preference order, and the fallbacks that stand in
 * for the ones that are down. */
static void test_where(void **state)
{
    world_t *w = world_new(0);
    moor_buf_t out = MOOR_BUF_INIT;
    char own[3], fb;
    const char *p, *end, *k, *id;
    uint32_t n, m, klen, idlen;

    (void)state;
    owners_of("k", own, &fb);
    for (int down = 0; down < 2; down++) {
        world_set_ring(w, make_ring_down(down ? own[1] : 0));
        out.len = 0;
        assert_int_equal(moor_coord_where(w->nodes[0].c, "default", 7, "k", 1, 3, &out), 0);
        p = out.data, end = p + out.len;
        assert_int_equal(moor_mp_read_map(&p, end, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        assert_memory_equal(k, "replicas", 8);
        assert_int_equal(moor_mp_read_array(&p, end, &m), 0);
        assert_int_equal(m, 3);
        for (uint32_t i = 0; i < 3; i++) {
            assert_int_equal(moor_mp_read_str(&p, end, &id, &idlen), 0);
            assert_int_equal(id[0], own[i]);
        }
        assert_int_equal(moor_mp_read_str(&p, end, &k, &klen), 0);
        assert_memory_equal(k, "fallbacks", 9);
        assert_int_equal(moor_mp_read_array(&p, end, &m), 0);
        assert_int_equal(m, (uint32_t)down);
        if (down) {
            assert_int_equal(moor_mp_read_str(&p, end, &id, &idlen), 0);
            assert_int_equal(id[0], fb);
        }
        assert_ptr_equal(p, end);
    }
    assert_int_equal(moor_coord_where(w->nodes[0].c, "default", 7, "k", 1, 17, &out), MOOR_EINVAL);
    moor_coord_set_ring(w->nodes[0].c, NULL);
    assert_int_equal(moor_coord_where(w->nodes[0].c, "default", 7, "k", 1, 3, &out), MOOR_EUNAVAIL);
    moor_buf_free(&out);
    world_free(w);
}

static void test_deterministic(void **state)
{
    world_t *w1 = world_new(0), *w2 = world_new(0);

    (void)state;
    scenario(w1);
    scenario(w2);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w1->nodes[i].nkv, w2->nodes[i].nkv);
        for (size_t k = 0; k < w1->nodes[i].nkv; k++) {
            assert_int_equal(w1->nodes[i].kv[k].rec.len, w2->nodes[i].kv[k].rec.len);
            assert_memory_equal(w1->nodes[i].kv[k].rec.data, w2->nodes[i].kv[k].rec.data,
                                w1->nodes[i].kv[k].rec.len);
        }
    }
    world_free(w1);
    world_free(w2);
}

/* What the timing of a request (the slow log's breakdown) saw when the
 * request was answered. */
typedef struct timed_ans {
    ans_t a; /* first: ans_done takes it */
    moor_coord_timing_t *tm, at;
} timed_ans_t;

static void timed_done(void *arg, int code, const char *msg, const char *res, size_t rlen)
{
    timed_ans_t *t = arg;

    t->at = *t->tm;
    ans_done(&t->a, code, msg, res, rlen);
}

/* A measured put and get: the coordinator's own store work and its wait
 * on the other replicas are counted until the answer, and nothing after
 * it (the third replica's late ack, read repair), so the timing may live
 * with the request; an unmeasured request counts nothing. */
static void test_timing(void **state)
{
    world_t *w = world_new(0);
    moor_coord_timing_t tm = {0, 0};
    timed_ans_t t = {.tm = &tm};
    moor_coord_req_t r = req_of("k", "\x01", NULL);

    (void)state;
    r.timing = &tm;
    moor_coord_put(w->nodes[0].c, &r, timed_done, &t);
    pump(w);
    expect_ok(&t.a);
    assert_true(t.at.engine_ns > 0);                /* its read of the key and its own write */
    assert_true(t.at.replicas_ns > 0);              /* w = 2: one other replica's ack came first */
    assert_int_equal(tm.engine_ns, t.at.engine_ns); /* nothing after the answer */
    assert_int_equal(tm.replicas_ns, t.at.replicas_ns);

    memset(&tm, 0, sizeof(tm));
    ans_reset(&t.a);
    r = req_of("k", NULL, NULL);
    r.timing = &tm;
    moor_coord_get(w->nodes[1].c, &r, timed_done, &t);
    pump(w);
    expect_ok(&t.a);
    assert_true(t.at.engine_ns > 0);
    assert_true(t.at.replicas_ns > 0);
    assert_int_equal(tm.engine_ns, t.at.engine_ns);
    assert_int_equal(tm.replicas_ns, t.at.replicas_ns);
    ans_reset(&t.a);
    world_free(w);
}

static void test_new_rejects(void **state)
{
    moor_coord_opts_t o;
    moor_coord_t *c = NULL;
    world_t *w = world_new(0);

    (void)state;
    memset(&o, 0, sizeof(o));
    o.node_id = "a";
    o.idlen = 1;
    assert_int_equal(moor_coord_new(&o, &c), MOOR_EINVAL); /* no env */
    o.clock = (moor_clock_if_t){w, clk_now, clk_start, clk_stop, NULL};
    o.transport = (moor_transport_if_t){&w->nodes[0], tr_request};
    o.store = (moor_store_if_t){&w->nodes[0], st_get, st_put, NULL, NULL};
    o.idlen = 0;
    assert_int_equal(moor_coord_new(&o, &c), MOOR_EINVAL);
    o.idlen = MOOR_VC_ID_MAX + 1;
    assert_int_equal(moor_coord_new(&o, &c), MOOR_EINVAL);
    assert_null(c);
    moor_coord_free(NULL);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_legacy_records),
        cmocka_unit_test(test_sibling_limits),
        cmocka_unit_test(test_put_then_get_elsewhere),
        cmocka_unit_test(test_one_coordinator_siblings),
        cmocka_unit_test(test_overwrite),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_forwarded),
        cmocka_unit_test(test_forward_retry),
        cmocka_unit_test(test_contexts),
        cmocka_unit_test(test_delete_concurrent_with_put),
        cmocka_unit_test(test_one_replica_down),
        cmocka_unit_test(test_two_replicas_down),
        cmocka_unit_test(test_none_answer_or_fail_fast),
        cmocka_unit_test(test_read_repair),
        cmocka_unit_test(test_read_repair_after_answer),
        cmocka_unit_test(test_resolver),
        cmocka_unit_test(test_hlc),
        cmocka_unit_test(test_vclock_prune),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_unavailable),
        cmocka_unit_test(test_peer_requests),
        cmocka_unit_test(test_peer_coord),
        cmocka_unit_test(test_clock_bounds),
        cmocka_unit_test(test_shutdown_in_flight),
        cmocka_unit_test(test_blind_write_reads_first),
        cmocka_unit_test(test_sloppy_down_owner),
        cmocka_unit_test(test_sloppy_silent_owner),
        cmocka_unit_test(test_notfound_waits),
        cmocka_unit_test(test_receipts),
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_timing),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_new_rejects),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
