/*
 * node.c -- the request methods of one node, on top of the engine.
 *
 * A key's engine value is a record (core/cluster/record.h): its clock and
 * siblings.  get reads and decodes it; put and del read it, build the next
 * record with moor_record_write and queue it with moor_engine_write_async,
 * so the loop never waits on disk for a write; the engine calls back on its
 * log thread once the write is durable (per the sync mode), the callback
 * queues the finished write here, and a uv_async runs the reply on the
 * loop.  Because each read-modify-write happens in one go on the loop
 * thread and the engine makes a write visible before returning, two puts to
 * one key can never both build on the same old record.
 *
 * Reads run on the loop thread: memtable and block-cache hits are
 * sub-microsecond, a miss is one pread of a 4 KiB block (page cache or
 * disk).  No fsync, flush or compaction ever runs here.
 *
 * Threads: everything is loop-thread only except write_done(), which runs
 * on the engine's log thread and touches only the completion queue (qmu).
 */
#include "node.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale.h"
#include "cluster.h"
#include "expire.h"
#include "solo.h"
#include "loadstat.h"
#include "cluster/fields.h"
#include "cluster/record.h"
#include "util/mp.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"

#define MOOR_VERSION "0.1.0"

typedef struct wdone wdone_t;

#define WDONE_SPARE_MAX 1024
#define BATCH_KEEP_MAX (64u << 10) /* bytes of a write whose batch is kept */

/* A store write of the coordinator, queued on the engine: its done runs
 * on the loop once the write is durable. */
struct wdone {
    wdone_t *next;
    moor_node_t *node;
    int status; /* set by the log thread */
    moor_store_done_fn sdone;
    void *sarg;
};

struct moor_node {
    uv_loop_t *loop;
    moor_config_t cfg;
    moor_engine_t *engine;
    moor_lua_t *lua;
    moor_srv_t *srv;
    moor_cl_t *cl;     /* cluster mode: its coordinator serves get/put/del */
    moor_solo_t *solo; /* a node alone: the coordinator of a one-member ring */
    moor_as_t *as;     /* load figures and automatic scaling (autoscale.h) */
    moor_expire_t *expire; /* the engine's compaction filter (expire.h) */
    uv_async_t async;
    uv_prepare_t kick;   /* wakes the log writer once per loop iteration */
    int kick_needed;     /* a deferred write was queued this iteration */
    pthread_mutex_t qmu; /* guards qhead/qtail */
    wdone_t *qhead, *qtail;
    unsigned pending; /* writes queued on the engine, not yet answered */
    uint64_t start_ms;
    uint64_t n_get, n_put, n_del, n_call, n_err;
    moor_record_t rrec;  /* scratch of the resolver hook */
    moor_vclock_t rvc;   /* its ctx */
    moor_buf_t out;      /* scratch: one answer at a time on the loop */
    moor_batch_t *batch; /* scratch of queue_write */
    wdone_t *wspare;     /* completion records kept for reuse (loop thread) */
    unsigned nwspare;
};

static void wdone_free(moor_node_t *n, wdone_t *w);

/* ---- errors ---------------------------------------------------------------- */

const char *moor_node_err_code(int rc)
{
    return moor_err_wire(rc);
}

static void fail(moor_node_t *n, moor_node_done_fn done, void *ud, int rc, const char *msg)
{
    n->n_err++;
    done(ud, moor_node_err_code(rc), msg ? msg : moor_strerror(rc), NULL, 0);
}

/* ---- completions from the log thread ------------------------------------ */

/* Engine callback, on the log thread: queue for the loop. */
static void write_done(void *arg, int status)
{
    wdone_t *w = arg;
    moor_node_t *n = w->node;

    w->status = status;
    w->next = NULL;
    pthread_mutex_lock(&n->qmu);
    if (n->qtail)
        n->qtail->next = w;
    else
        n->qhead = w;
    n->qtail = w;
    pthread_mutex_unlock(&n->qmu);
    uv_async_send(&n->async);
}

static void drain_done(uv_async_t *a)
{
    moor_node_t *n = a->data;
    wdone_t *w, *next;

    pthread_mutex_lock(&n->qmu);
    w = n->qhead;
    n->qhead = n->qtail = NULL;
    pthread_mutex_unlock(&n->qmu);
    for (; w; w = next) {
        next = w->next;
        n->pending--;
        w->sdone(w->sarg, w->status);
        wdone_free(n, w);
    }
}

/* Queues the record write key -> rec (rec NULL: the deletion of key) on the
 * engine; w (its completion, w->node set here) is answered from drain_done
 * once durable.  0, or an error and w is the caller's to free. */
static int queue_write(moor_node_t *n, const char *key, size_t klen, const char *rec, size_t rlen,
                       wdone_t *w)
{
    moor_batch_t *b = n->batch; /* the engine copies it: one serves every write */
    int rc;

    moor_batch_clear(b);
    if (rec ? moor_batch_put(b, key, klen, rec, rlen) : moor_batch_delete(b, key, klen))
        return MOOR_ENOMEM;
    w->node = n;
    rc = moor_engine_write_async_deferred(n->engine, b, write_done, w);
    n->kick_needed = 1;
    if (rc == 0)
        n->pending++;
    if (klen + rlen > BATCH_KEEP_MAX) { /* do not pin a big write's buffer */
        moor_batch_t *fresh = moor_batch_new();
        if (fresh) {
            moor_batch_free(n->batch);
            n->batch = fresh;
        }
    }
    return rc;
}

/* A completion record: a kept one, or a new one. */
static wdone_t *wdone_new(moor_node_t *n)
{
    wdone_t *w = n->wspare;

    if (!w)
        return calloc(1, sizeof(*w));
    n->wspare = w->next;
    n->nwspare--;
    memset(w, 0, sizeof(*w));
    return w;
}

/* Keeps w for reuse (up to WDONE_SPARE_MAX), else frees it. */
static void wdone_free(moor_node_t *n, wdone_t *w)
{
    if (n->nwspare >= WDONE_SPARE_MAX) {
        free(w);
        return;
    }
    w->next = n->wspare;
    n->wspare = w;
    n->nwspare++;
}

/* ---- params ------------------------------------------------------------------ */

typedef struct kv_opts {
    const char *space;
    uint32_t slen;
    const char *ctx;
    uint32_t ctxlen;
    int r, w;            /* enum moor_level or a count; 0 = the space's */
    uint32_t timeout_ms; /* 0 = the node's */
    int receipt;         /* answer with a receipt (get, put, del) */
    int overwrite;       /* put, del: replace what is there (coord.h) */
    uint64_t ttl_ms;     /* put: expire after so many ms (coord.h); 0: never */
} kv_opts_t;

static int bad(const char *what)
{
    return moor_diag(MOOR_EINVAL, "%s", what);
}

/* r and w: a count or "one" / "quorum" / "all". */
static int read_level(const char **p, const char *end, const char *name, int *level)
{
    uint64_t u;
    const char *s;
    uint32_t n;

    if (moor_mp_read_uint(p, end, &u) == 0) {
        *level = (int)u;
        return u >= 1 && u <= MOOR_COORD_N_MAX
                   ? 0
                   : moor_diag(MOOR_EINVAL, "opts.%s must be 1..%d", name, MOOR_COORD_N_MAX);
    }
    if (moor_mp_read_str(p, end, &s, &n) == 0 &&
        (*level = moor_level_parse(s, n)) != MOOR_LEVEL_DEFAULT)
        return 0;
    return moor_diag(MOOR_EINVAL, "opts.%s must be a count or one, quorum, all", name);
}

static int read_opts(const char **p, const char *end, kv_opts_t *o)
{
    uint32_t n;
    uint64_t u;

    o->space = "default";
    o->slen = 7;
    o->ctx = NULL;
    o->ctxlen = 0;
    o->r = o->w = 0;
    o->timeout_ms = 0;
    o->receipt = 0;
    o->overwrite = 0;
    o->ttl_ms = 0;
    if (*p >= end || moor_mp_read_nil(p, end) == 0)
        return 0;
    if (moor_mp_read_map(p, end, &n))
        return bad("opts must be a map");
    while (n--) {
        const char *k;
        uint32_t klen;
        if (moor_mp_read_str(p, end, &k, &klen))
            return bad("opts keys must be strings");
#define IS(name) (klen == sizeof(name) - 1 && memcmp(k, name, klen) == 0)
        if (IS("space")) {
            if (moor_mp_read_str(p, end, &o->space, &o->slen))
                return bad("opts.space must be a string");
        } else if (IS("ctx")) {
            if (moor_mp_read_nil(p, end) != 0 && moor_mp_read_strbin(p, end, &o->ctx, &o->ctxlen))
                return bad("opts.ctx must be the binary ctx a get returned");
        } else if (IS("r") || IS("w")) {
            int rc = read_level(p, end, IS("r") ? "r" : "w", IS("r") ? &o->r : &o->w);
            if (rc)
                return rc;
        } else if (IS("timeout_ms")) {
            if (moor_mp_read_uint(p, end, &u) || u > 3600000)
                return bad("opts.timeout_ms must be an integer in 0..3600000");
            o->timeout_ms = (uint32_t)u;
        } else if (IS("receipt")) {
            if (moor_mp_read_nil(p, end) != 0 && moor_mp_read_bool(p, end, &o->receipt))
                return bad("opts.receipt must be a boolean");
        } else if (IS("overwrite")) {
            if (moor_mp_read_nil(p, end) != 0 && moor_mp_read_bool(p, end, &o->overwrite))
                return bad("opts.overwrite must be a boolean");
        } else if (IS("ttl_ms")) {
            if (moor_mp_read_uint(p, end, &o->ttl_ms) || o->ttl_ms == 0 ||
                o->ttl_ms > MOOR_COORD_TTL_MAX)
                return bad("opts.ttl_ms must be a positive integer of ms, at most 100 years");
        } else {
            return moor_diag(MOOR_EINVAL, "unknown option '%.*s'", (int)klen, k);
        }
#undef IS
    }
    return 0;
}

/* key (str or bin), then opts; value in between for put. */
static int read_key(moor_node_t *n, const char **p, const char *end, const char **key,
                    uint32_t *klen)
{
    if (moor_mp_read_strbin(p, end, key, klen))
        return bad("key must be a string or binary");
    if (*klen == 0)
        return bad("key must not be empty");
    if (*klen > n->cfg.key_max)
        return moor_diag(MOOR_EKEYTOOBIG, "key of %u bytes is over the limit of %zu", *klen,
                         n->cfg.key_max);
    return 0;
}

/* ---- the coordinator: get, put, del ------------------------------------------------ */

typedef struct kv_call_st {
    moor_node_t *n;
    moor_node_done_fn done;
    void *ud;
} kv_call_t;

/* The coordinator of this node: a cluster's, or the one-member ring's of
 * a node alone (solo.h). */
static moor_coord_t *coord_of(moor_node_t *n)
{
    return n->cl ? moor_cl_coord(n->cl) : moor_solo_coord(n->solo);
}

/* A coordinator's answer (a code) to the wire's form (its error name). */
static void kv_done(void *arg, int code, const char *errmsg, const char *result, size_t rlen)
{
    kv_call_t *c = arg;

    if (code)
        c->n->n_err++;
    c->done(c->ud, code ? moor_err_wire(code) : NULL, errmsg, result, rlen);
    free(c);
}

/* get (op 0), put (1) or del (2) of a validated key through the
 * coordinator, with the space's levels and the request's overrides.  A
 * node alone keeps one copy of each key: its levels are all 1. */
static void kv_call(moor_node_t *n, int op, const char *key, uint32_t klen, const char *value,
                    size_t vlen, const kv_opts_t *o, moor_node_done_fn done, void *ud)
{
    const moor_space_cfg_t *sp = moor_config_space(&n->cfg, o->space, o->slen);
    moor_coord_req_t req;
    uint32_t nn, r, w;
    kv_call_t *c;
    char msg[160];

    if (!sp) {
        snprintf(msg, sizeof(msg), "unknown space '%.*s'", (int)(o->slen > 64 ? 64 : o->slen),
                 o->space);
        fail(n, done, ud, MOOR_EINVAL, msg);
        return;
    }
    if (!n->cl && !n->solo) { /* a clustered node before its join, or after its close */
        fail(n, done, ud, MOOR_EUNAVAIL, "this node serves no data now (not joined, or closing)");
        return;
    }
    if (n->cl && moor_cl_has_left(n->cl)) {
        fail(n, done, ud, MOOR_EUNAVAIL,
             "this node has left the cluster: it serves nothing; use another member");
        return;
    }
    if (!n->cl) {
        nn = r = w = 1;
    } else {
        moor_config_levels(&n->cfg, sp, &nn, &r, &w);
        if (o->r)
            r = moor_level_count(o->r, nn);
        if (o->w)
            w = moor_level_count(o->w, nn);
        if (r > nn || w > nn) {
            snprintf(msg, sizeof(msg), "%s=%u is more than the %u replicas of space '%.64s'",
                     r > nn ? "r" : "w", r > nn ? r : w, nn, sp->name);
            fail(n, done, ud, MOOR_EINVAL, msg);
            return;
        }
    }
    if (!(c = malloc(sizeof(*c)))) {
        fail(n, done, ud, MOOR_ENOMEM, NULL);
        return;
    }
    c->n = n;
    c->done = done;
    c->ud = ud;
    memset(&req, 0, sizeof(req));
    req.space = o->space;
    req.slen = o->slen;
    req.key = key;
    req.klen = klen;
    req.value = value;
    req.vlen = vlen;
    req.ctx = o->ctx;
    req.ctxlen = o->ctxlen;
    req.n = nn;
    req.r = r;
    req.w = w;
    req.timeout_ms = o->timeout_ms;
    req.receipt = o->receipt;
    req.overwrite = o->overwrite;
    req.ttl_ms = op == 1 ? o->ttl_ms : 0;
    req.sloppy = sp->sloppy ? MOOR_COORD_SLOPPY_ON : MOOR_COORD_SLOPPY_OFF;
    if (op == 0)
        moor_coord_get(coord_of(n), &req, kv_done, c);
    else if (op == 1)
        moor_coord_put(coord_of(n), &req, kv_done, c);
    else
        moor_coord_del(coord_of(n), &req, kv_done, c);
}

/* ---- methods ------------------------------------------------------------------- */

static int resolve_hook(void *ud, const char *space, size_t slen, const char *record, size_t rlen,
                        moor_buf_t *out);

static void do_get(moor_node_t *n, const char *p, const char *end, uint32_t np,
                   moor_node_done_fn done, void *ud)
{
    const char *key;
    uint32_t klen;
    kv_opts_t o;
    int rc;

    n->n_get++;
    if (np < 1 || np > 2)
        rc = bad("get takes key [, opts]");
    else if ((rc = read_key(n, &p, end, &key, &klen)) == 0 && (rc = read_opts(&p, end, &o)) == 0 &&
             (rc = o.ttl_ms ? bad("opts.ttl_ms is an option of put") : 0) == 0) {
        kv_call(n, 0, key, klen, NULL, 0, &o, done, ud);
        return;
    }
    fail(n, done, ud, rc, moor_diag_msg(rc));
}

/* put (tombstone 0) and del (tombstone 1). */
static void do_write(moor_node_t *n, int tombstone, const char *p, const char *end, uint32_t np,
                     moor_node_done_fn done, void *ud)
{
    const char *key, *value = NULL;
    uint32_t klen;
    size_t vlen = 0;
    kv_opts_t o;
    int rc;

    if (tombstone ? (np < 1 || np > 2) : (np < 2 || np > 3)) {
        rc = bad(tombstone ? "del takes key [, opts]" : "put takes key, value [, opts]");
        goto fail;
    }
    if ((rc = read_key(n, &p, end, &key, &klen)))
        goto fail;
    if (!tombstone) {
        value = p;
        /* One walk finds the value's end and checks its depth. */
        if ((rc = moor_mp_skip(&p, end, MOOR_RECORD_VALUE_DEPTH))) {
            rc = moor_diag(MOOR_EINVAL,
                           "value is not valid MessagePack, or nests deeper than %d levels (a "
                           "get could not answer it)",
                           MOOR_RECORD_VALUE_DEPTH);
            goto fail;
        }
        vlen = (size_t)(p - value);
        if (vlen > n->cfg.value_max) {
            rc = moor_diag(MOOR_EVALTOOBIG, "value of %zu bytes is over the limit of %zu", vlen,
                           n->cfg.value_max);
            goto fail;
        }
    }
    if ((rc = read_opts(&p, end, &o)))
        goto fail;
    if (tombstone && o.ttl_ms) {
        rc = bad("opts.ttl_ms is an option of put, not del");
        goto fail;
    }
    kv_call(n, tombstone ? 2 : 1, key, klen, value, vlen, &o, done, ud);
    return;
fail:
    fail(n, done, ud, rc, moor_diag_msg(rc));
}

static void do_ping(moor_node_t *n, moor_node_done_fn done, void *ud)
{
    msgpack_packer pk;

    moor_buf_reset(&n->out);
    moor_mp_packer_init(&pk, &n->out);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "pong", 4);
    msgpack_pack_true(&pk);
    msgpack_pack_str_with_body(&pk, "node", 4);
    msgpack_pack_str_with_body(&pk, n->cfg.node, strlen(n->cfg.node));
    done(ud, NULL, NULL, n->out.data, n->out.len);
}

static void pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_uint64(pk, v);
}

static void pack_kv_bool(msgpack_packer *pk, const char *k, int v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static void do_info(moor_node_t *n, moor_node_done_fn done, void *ud)
{
    moor_engine_stats_t es;
    moor_srv_stats_t ss = {0};
    msgpack_packer pk;

    moor_engine_stats(n->engine, &es);
    if (n->srv)
        moor_srv_stats(n->srv, &ss);
    moor_buf_reset(&n->out);
    moor_mp_packer_init(&pk, &n->out);
    msgpack_pack_map(&pk, n->cl ? 14 : 10);
    msgpack_pack_str_with_body(&pk, "load", 4);
    moor_as_pack_load(n->as, &pk);
    msgpack_pack_str_with_body(&pk, "autoscale", 9);
    moor_as_pack_info(n->as, &pk);
    {
        moor_coord_stats_t cs = {0};
        if (n->cl || n->solo)
            moor_coord_stats(coord_of(n), &cs);
        msgpack_pack_str_with_body(&pk, "siblings", 8);
        msgpack_pack_map(&pk, 4);
        pack_kv_u64(&pk, "warned", cs.siblings_warned);
        pack_kv_u64(&pk, "refused", cs.siblings_refused);
        pack_kv_u64(&pk, "most", cs.siblings_most);
        pack_kv_u64(&pk, "dropped", moor_record_merge_drops());
    }
    if (n->cl) {
        msgpack_pack_str_with_body(&pk, "cluster", 7);
        moor_cl_pack_info(n->cl, &pk);
        msgpack_pack_str_with_body(&pk, "hints", 5);
        moor_cl_pack_hints(n->cl, &n->out);
        msgpack_pack_str_with_body(&pk, "repair", 6);
        moor_cl_pack_repair(n->cl, &pk);
        msgpack_pack_str_with_body(&pk, "transfer", 8);
        moor_cl_pack_transfer(n->cl, &pk);
    }
    msgpack_pack_str_with_body(&pk, "node", 4);
    msgpack_pack_str_with_body(&pk, n->cfg.node, strlen(n->cfg.node));
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_str_with_body(&pk, MOOR_VERSION, strlen(MOOR_VERSION));
    pack_kv_u64(&pk, "uptime_ms", moor_clock_mono_ms() - n->start_ms);
    msgpack_pack_str_with_body(&pk, "requests", 8);
    msgpack_pack_map(&pk, 6);
    pack_kv_u64(&pk, "get", n->n_get);
    pack_kv_u64(&pk, "put", n->n_put);
    pack_kv_u64(&pk, "del", n->n_del);
    pack_kv_u64(&pk, "call", n->n_call);
    pack_kv_u64(&pk, "errors", n->n_err);
    pack_kv_u64(&pk, "pending_writes", n->pending);
    msgpack_pack_str_with_body(&pk, "server", 6);
    msgpack_pack_map(&pk, 8);
    pack_kv_u64(&pk, "connections", ss.conns);
    pack_kv_u64(&pk, "accepted", ss.accepted);
    pack_kv_u64(&pk, "refused", ss.refused);
    pack_kv_u64(&pk, "bad_frames", ss.bad_frames);
    pack_kv_u64(&pk, "peer_slots", ss.peer_slots);
    pack_kv_u64(&pk, "output_bytes", ss.output_bytes);
    pack_kv_u64(&pk, "closed_output", ss.closed_output);
    pack_kv_u64(&pk, "closed_deadline", ss.closed_deadline);
    msgpack_pack_str_with_body(&pk, "lua", 3);
    {
        size_t used = 0, cap = 0;
        uint64_t refused = 0;
        if (n->lua)
            moor_lua_heap(n->lua, &used, &cap, &refused);
        msgpack_pack_map(&pk, 4);
        pack_kv_u64(&pk, "handlers_inflight", n->lua ? moor_lua_inflight(n->lua) : 0);
        pack_kv_u64(&pk, "heap_bytes", used);
        pack_kv_u64(&pk, "heap_limit", cap);
        pack_kv_u64(&pk, "heap_refused", refused);
    }
    msgpack_pack_str_with_body(&pk, "engine", 6);
    msgpack_pack_map(&pk, 18);
    pack_kv_u64(&pk, "memtable_bytes", es.memtable_bytes);
    pack_kv_u64(&pk, "tables_l0", es.tables[0]);
    pack_kv_u64(&pk, "disk_bytes", es.disk_bytes);
    pack_kv_u64(&pk, "cache_hits", es.cache_hits);
    pack_kv_u64(&pk, "cache_misses", es.cache_misses);
    pack_kv_u64(&pk, "user_bytes_written", es.user_bytes_written);
    pack_kv_u64(&pk, "compact_bytes_written", es.compact_bytes_written);
    pack_kv_u64(&pk, "flushes", es.flushes);
    pack_kv_u64(&pk, "compactions", es.compactions);
    pack_kv_u64(&pk, "filter_rewrites", es.filter_rewrites);
    pack_kv_u64(&pk, "filter_drops", es.filter_drops);
    msgpack_pack_str_with_body(&pk, "write_amp", 9);
    msgpack_pack_double(&pk, es.write_amp);
    pack_kv_u64(&pk, "wal_damaged", es.wal_damaged);
    pack_kv_u64(&pk, "wal_damaged_bytes", es.wal_damaged_bytes);
    pack_kv_u64(&pk, "wal_lost_writes", es.wal_lost_writes);
    pack_kv_u64(&pk, "wal_torn_bytes", es.wal_torn_bytes);
    pack_kv_bool(&pk, "no_space", es.no_space);
    pack_kv_bool(&pk, "read_only", es.read_only);
    done(ud, NULL, NULL, n->out.data, n->out.len);
}

/* Constant-time: the time depends on the configured token's length only. */
static int token_equal(const char *want, const char *got, size_t glen)
{
    size_t wlen = strlen(want);
    unsigned char diff = (unsigned char)(wlen != glen);

    for (size_t i = 0; i < wlen; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < glen ? got[i] : 0);
    return diff == 0;
}

/* _auth {secret = str, proto = uint}: the peer's secret and the
 * node-to-node protocol it speaks.  0 with *tok, *tlen and *proto set
 * (proto 0 when absent), or MOOR_EINVAL with a diagnostic. */
static int read_peer_auth(const char *p, const char *end, uint32_t np, const char **tok,
                          uint32_t *tlen, uint64_t *proto)
{
    uint32_t n;

    *tok = NULL;
    *proto = 0;
    if (np != 1 || moor_mp_read_map(&p, end, &n))
        return moor_diag(MOOR_EINVAL,
                         "_auth takes one map {secret = str, proto = %d} (a "
                         "node of an older release sends a bare secret)",
                         MOOR_PEER_PROTO);
    while (n--) {
        const char *k;
        uint32_t klen;
        if (moor_mp_read_str(&p, end, &k, &klen))
            return moor_diag(MOOR_EINVAL, "_auth: the map's keys must be str");
        if (klen == 6 && memcmp(k, "secret", 6) == 0) {
            if (moor_mp_read_strbin(&p, end, tok, tlen))
                return moor_diag(MOOR_EINVAL, "_auth: secret must be a str");
        } else if (klen == 5 && memcmp(k, "proto", 5) == 0) {
            if (moor_mp_read_uint(&p, end, proto))
                return moor_diag(MOOR_EINVAL, "_auth: proto must be an unsigned integer");
        } else if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) {
            return moor_diag(MOOR_EINVAL, "_auth: malformed map");
        }
    }
    if (!*tok)
        return moor_diag(MOOR_EINVAL, "_auth: no secret");
    return 0;
}

/* auth(token) grants client rights (MOOR_NODE_AUTH_CLIENT); _auth {secret,
 * proto} the peer rights (MOOR_NODE_AUTH_PEER) `_` methods need, answered
 * {proto = MOOR_PEER_PROTO}; a proto this node does not speak is refused
 * (UNSUPPORTED_VERSION) before the secret is looked at. */
static void do_auth(moor_node_t *n, int peer, const char *p, const char *end, uint32_t np,
                    int *authed, moor_node_done_fn done, void *ud)
{
    const char *want = peer ? n->cfg.cluster_secret : n->cfg.auth_token;
    int bit = peer ? MOOR_NODE_AUTH_PEER : MOOR_NODE_AUTH_CLIENT;
    const char *tok;
    uint32_t tlen;
    uint64_t proto = 0;
    char msg[160];
    int rc;

    if (peer) {
        if ((rc = read_peer_auth(p, end, np, &tok, &tlen, &proto))) {
            fail(n, done, ud, rc, moor_diag_msg(rc));
            return;
        }
        if (proto != MOOR_PEER_PROTO) {
            *authed &= ~bit;
            snprintf(msg, sizeof(msg),
                     "this node speaks node-to-node protocol %d, the peer asked for %llu",
                     MOOR_PEER_PROTO, (unsigned long long)proto);
            fail(n, done, ud, MOOR_EVERSION, msg);
            return;
        }
    } else if (np != 1 || moor_mp_read_strbin(&p, end, &tok, &tlen)) {
        fail(n, done, ud, MOOR_EINVAL, "auth takes one token");
        return;
    }
    if (want[0] && !token_equal(want, tok, tlen)) {
        *authed &= ~bit;
        fail(n, done, ud, MOOR_ENOAUTH, peer ? "wrong cluster secret" : "wrong token");
        return;
    }
    *authed |= bit;
    if (peer) {
        moor_buf_reset(&n->out);
        msgpack_packer pk;
        moor_mp_packer_init(&pk, &n->out);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "proto", 5);
        msgpack_pack_uint32(&pk, MOOR_PEER_PROTO);
        done(ud, NULL, NULL, n->out.data, n->out.len);
        return;
    }
    done(ud, NULL, NULL, "\xc3", 1);
}

/* A node-to-node method: only connections that passed _auth(secret) may
 * call them, so a client never can (a node with seeds always has a
 * secret: moord refuses to start without one). */
static void do_peer(moor_node_t *n, const char *method, size_t mlen, const char *params,
                    size_t plen, uint32_t np, int authed, moor_node_done_fn done, void *ud)
{
    char msg[128];
    kv_call_t *c;

    if (!n->cl) {
        snprintf(msg, sizeof(msg), "unknown method '%.*s' (this node is not in a cluster)",
                 (int)(mlen > 64 ? 64 : mlen), method);
        fail(n, done, ud, MOOR_ENOMETHOD, msg);
        return;
    }
    if (!(authed & MOOR_NODE_AUTH_PEER)) {
        fail(n, done, ud, MOOR_ENOAUTH, "node-to-node methods need _auth {secret, proto}");
        return;
    }
    if (!(c = malloc(sizeof(*c)))) {
        fail(n, done, ud, MOOR_ENOMEM, NULL);
        return;
    }
    c->n = n;
    c->done = done;
    c->ud = ud;
    moor_cl_handle_peer(n->cl, method, mlen, params, plen, np, kv_done, c);
}

/* The ring: the member table with each member's share; a node alone
 * answers a one-member ring. */
static void do_ring(moor_node_t *n, moor_node_done_fn done, void *ud)
{
    msgpack_packer pk;
    char addr[128];
    int rc = 0;

    moor_buf_reset(&n->out);
    moor_mp_packer_init(&pk, &n->out);
    if (n->cl) {
        rc = moor_cl_pack_ring(n->cl, &pk);
    } else {
        snprintf(addr, sizeof(addr), "%s:%d", n->cfg.listen_host,
                 n->srv ? moor_srv_port(n->srv) : n->cfg.listen_port);
        msgpack_pack_map(&pk, 4);
        msgpack_pack_str_with_body(&pk, "node", 4);
        msgpack_pack_str_with_body(&pk, n->cfg.node, strlen(n->cfg.node));
        msgpack_pack_str_with_body(&pk, "cluster", 7);
        msgpack_pack_false(&pk);
        pack_kv_u64(&pk, "version", 0);
        msgpack_pack_str_with_body(&pk, "nodes", 5);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 8);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_str_with_body(&pk, n->cfg.node, strlen(n->cfg.node));
        msgpack_pack_str_with_body(&pk, "addr", 4);
        msgpack_pack_str_with_body(&pk, addr, strlen(addr));
        msgpack_pack_str_with_body(&pk, "zone", 4);
        msgpack_pack_str_with_body(&pk, n->cfg.zone, strlen(n->cfg.zone));
        msgpack_pack_str_with_body(&pk, "status", 6);
        msgpack_pack_str_with_body(&pk, "up", 2);
        pack_kv_u64(&pk, "vnodes", n->cfg.vnodes);
        pack_kv_u64(&pk, "incarnation", 0);
        msgpack_pack_str_with_body(&pk, "share", 5);
        msgpack_pack_double(&pk, 1.0);
        msgpack_pack_str_with_body(&pk, "self", 4);
        rc = msgpack_pack_true(&pk);
    }
    if (rc)
        fail(n, done, ud, MOOR_ENOMEM, NULL);
    else
        done(ud, NULL, NULL, n->out.data, n->out.len);
}

/* where(key [, opts{space}]) -> {replicas = [ids], fallbacks = [ids]}:
 * the key's owners in preference order and the healthy members that
 * stand in for the owners that are down; a node alone is its keys' one
 * replica. */
static void do_where(moor_node_t *n, const char *p, const char *end, uint32_t np,
                     moor_node_done_fn done, void *ud)
{
    const moor_space_cfg_t *sp;
    const char *key;
    uint32_t klen, nn, r, w;
    msgpack_packer pk;
    kv_opts_t o;
    int rc;

    if (np < 1 || np > 2)
        rc = bad("where takes key [, opts]");
    else if ((rc = read_key(n, &p, end, &key, &klen)) == 0 && (rc = read_opts(&p, end, &o)) == 0 &&
             !(sp = moor_config_space(&n->cfg, o.space, o.slen)))
        rc = moor_diag(MOOR_EINVAL, "unknown space '%.*s'", (int)(o.slen > 64 ? 64 : o.slen),
                       o.space);
    if (rc) {
        fail(n, done, ud, rc, moor_diag_msg(rc));
        return;
    }
    moor_buf_reset(&n->out);
    if (n->cl) {
        moor_config_levels(&n->cfg, sp, &nn, &r, &w);
        rc = moor_coord_where(moor_cl_coord(n->cl), o.space, o.slen, key, klen, nn, &n->out);
    } else {
        moor_mp_packer_init(&pk, &n->out);
        rc = msgpack_pack_map(&pk, 2);
        rc |= msgpack_pack_str_with_body(&pk, "replicas", 8);
        rc |= msgpack_pack_array(&pk, 1);
        rc |= msgpack_pack_str_with_body(&pk, n->cfg.node, strlen(n->cfg.node));
        rc |= msgpack_pack_str_with_body(&pk, "fallbacks", 9);
        rc |= msgpack_pack_array(&pk, 0);
        rc = rc ? MOOR_ENOMEM : 0;
    }
    if (rc)
        fail(n, done, ud, rc, moor_diag_msg(rc));
    else
        done(ud, NULL, NULL, n->out.data, n->out.len);
}

/* repair [{space, ranges = [[lo, hi], ...], stop, restart}] -> info.repair */
static void do_repair(moor_node_t *n, const char *p, const char *end, uint32_t np,
                      moor_node_done_fn done, void *ud)
{
    moor_field_t f[4] = {{"space", 0, 0}, {"ranges", 0, 0}, {"stop", 0, 0}, {"restart", 0, 0}};
    uint64_t ranges[2 * 64];
    const char *space = NULL, *why = NULL, *q;
    uint32_t slen = 0, nr = 0;
    int stop = 0, restart = 0, rc;
    msgpack_packer pk;

    if (!n->cl) {
        fail(n, done, ud, MOOR_EUNAVAIL, "repair: a node alone has no replicas to repair from");
        return;
    }
    if (np > 1 || (np == 1 && (why = moor_fields_read(p, (size_t)(end - p), 1, f, 4)))) {
        fail(n, done, ud, MOOR_EINVAL, why ? why : "repair takes at most one map param");
        return;
    }
    if (np == 1) {
        if (!moor_field_nil(&f[0]) && moor_field_strbin(&f[0], &space, &slen))
            why = "repair: space must be a str";
        else if (moor_field_bool(&f[2], 0, &stop) || moor_field_bool(&f[3], 0, &restart))
            why = "repair: stop and restart must be booleans";
        else if (!moor_field_nil(&f[1])) {
            uint32_t cnt, two;
            q = f[1].v;
            if (moor_mp_read_array(&q, f[1].end, &cnt) || cnt > 64)
                why = "repair: ranges must be a list of at most 64 [lo, hi] pairs";
            for (uint32_t i = 0; !why && i < cnt; i++, nr++)
                if (moor_mp_read_array(&q, f[1].end, &two) || two != 2 ||
                    moor_mp_read_uint(&q, f[1].end, &ranges[2 * i]) ||
                    moor_mp_read_uint(&q, f[1].end, &ranges[2 * i + 1]))
                    why = "repair: each range is [lo, hi] (tokens, unsigned integers)";
        }
    }
    if (why) {
        fail(n, done, ud, MOOR_EINVAL, why);
        return;
    }
    if ((rc = moor_cl_repair(n->cl, space, slen, ranges, nr, stop, restart))) {
        fail(n, done, ud, rc, moor_diag_msg(rc));
        return;
    }
    moor_buf_reset(&n->out);
    moor_mp_packer_init(&pk, &n->out);
    moor_cl_pack_repair(n->cl, &pk);
    done(ud, NULL, NULL, n->out.data, n->out.len);
}

/* leave [{cancel}] -> info.transfer */
static void do_leave(moor_node_t *n, const char *p, const char *end, uint32_t np,
                     moor_node_done_fn done, void *ud)
{
    moor_field_t f[1] = {{"cancel", 0, 0}};
    const char *why = NULL;
    int cancel = 0, rc;
    msgpack_packer pk;

    if (!n->cl) {
        fail(n, done, ud, MOOR_EUNAVAIL, "leave: a node alone is in no cluster to leave");
        return;
    }
    if (np > 1 || (np == 1 && (why = moor_fields_read(p, (size_t)(end - p), 1, f, 1))) ||
        moor_field_bool(&f[0], 0, &cancel)) {
        fail(n, done, ud, MOOR_EINVAL, why ? why : "leave takes at most {cancel = bool}");
        return;
    }
    if ((rc = moor_cl_leave(n->cl, cancel))) {
        fail(n, done, ud, rc, moor_diag_msg(rc));
        return;
    }
    moor_buf_reset(&n->out);
    moor_mp_packer_init(&pk, &n->out);
    moor_cl_pack_transfer(n->cl, &pk);
    done(ud, NULL, NULL, n->out.data, n->out.len);
}

/* remove id -> true */
static void do_remove(moor_node_t *n, const char *p, const char *end, uint32_t np,
                      moor_node_done_fn done, void *ud)
{
    const char *id;
    uint32_t idlen;
    int rc;

    if (!n->cl) {
        fail(n, done, ud, MOOR_EUNAVAIL, "remove: a node alone has no members");
        return;
    }
    if (np != 1 || moor_mp_read_strbin(&p, end, &id, &idlen)) {
        fail(n, done, ud, MOOR_EINVAL, "remove takes a member id");
        return;
    }
    if ((rc = moor_cl_remove(n->cl, id, idlen))) {
        fail(n, done, ud, rc, moor_diag_msg(rc));
        return;
    }
    done(ud, NULL, NULL, "\xc3", 1);
}

/* transfers [{rate_mb_s, concurrency}] -> {nodes, errors} */
static void do_transfers(moor_node_t *n, const char *p, const char *end, uint32_t np,
                         moor_node_done_fn done, void *ud)
{
    moor_field_t f[2] = {{"rate_mb_s", 0, 0}, {"concurrency", 0, 0}};
    const char *why = NULL, *q;
    double rate = 0;
    uint64_t conc = 0;
    kv_call_t *c;

    if (!n->cl) {
        fail(n, done, ud, MOOR_EUNAVAIL, "transfers: a node alone moves no data");
        return;
    }
    if (np > 1 || (np == 1 && (why = moor_fields_read(p, (size_t)(end - p), 1, f, 2)))) {
        fail(n, done, ud, MOOR_EINVAL, why ? why : "transfers takes at most one map param");
        return;
    }
    if (!moor_field_nil(&f[0])) {
        uint64_t u;
        int64_t i;
        q = f[0].v;
        if (moor_mp_read_double(&q, f[0].end, &rate) == 0)
            ;
        else if ((q = f[0].v, moor_mp_read_uint(&q, f[0].end, &u)) == 0)
            rate = (double)u;
        else if ((q = f[0].v, moor_mp_read_int(&q, f[0].end, &i)) == 0)
            rate = (double)i;
        else
            rate = -1;
        if (!(rate >= 0.01 && rate <= 100000)) {
            fail(n, done, ud, MOOR_EINVAL, "transfers: rate_mb_s must be a number in 0.01..100000");
            return;
        }
    }
    if (!moor_field_nil(&f[1]) && (moor_field_uint(&f[1], &conc) || conc < 1 || conc > 64)) {
        fail(n, done, ud, MOOR_EINVAL, "transfers: concurrency must be an integer in 1..64");
        return;
    }
    if (!(c = malloc(sizeof(*c)))) {
        fail(n, done, ud, MOOR_ENOMEM, NULL);
        return;
    }
    c->n = n;
    c->done = done;
    c->ud = ud;
    moor_cl_transfers(n->cl, rate > 0 ? (uint32_t)(rate * 1024 < 1 ? 1 : rate * 1024) : 0,
                      (uint32_t)conc, kv_done, c);
}

static void do_call(moor_node_t *n, const char *p, const char *end, uint32_t np,
                    moor_node_done_fn done, void *ud)
{
    const char *name;
    uint32_t nlen;

    n->n_call++;
    if (np < 1 || moor_mp_read_str(&p, end, &name, &nlen)) {
        fail(n, done, ud, MOOR_EINVAL, "call takes a handler name, then its arguments");
        return;
    }
    if (!n->lua) {
        fail(n, done, ud, MOOR_ENOHANDLER, "no Lua host");
        return;
    }
    moor_lua_call(n->lua, name, nlen, p, (size_t)(end - p), np - 1, done, ud);
}

/* `load`: every member's last load figures (autoscale.h). */
static void do_load(moor_node_t *n, moor_node_done_fn done, void *ud)
{
    int rc;

    moor_buf_reset(&n->out);
    if ((rc = moor_as_pack_cluster_load(n->as, &n->out))) {
        fail(n, done, ud, rc, NULL);
        return;
    }
    done(ud, NULL, NULL, n->out.data, n->out.len);
}

void moor_node_exec(moor_node_t *n, const char *method, size_t mlen, const char *params,
                    size_t plen, uint32_t np, int *authed, moor_node_done_fn done, void *ud)
{
    const char *end = params + plen;

#define IS(name) (mlen == sizeof(name) - 1 && memcmp(method, name, mlen) == 0)
    if (IS("auth") || IS("_auth")) {
        do_auth(n, method[0] == '_', params, end, np, authed, done, ud);
        return;
    }
    if (mlen && method[0] == '_') {
        do_peer(n, method, mlen, params, plen, np, *authed, done, ud);
        return;
    }
    if (n->cfg.auth_token[0] && !*authed) {
        fail(n, done, ud, MOOR_ENOAUTH, "authenticate first: auth(token)");
        return;
    }
    if (IS("get"))
        do_get(n, params, end, np, done, ud);
    else if (IS("put"))
        n->n_put++, do_write(n, 0, params, end, np, done, ud);
    else if (IS("del"))
        n->n_del++, do_write(n, 1, params, end, np, done, ud);
    else if (IS("call"))
        do_call(n, params, end, np, done, ud);
    else if (IS("ping"))
        do_ping(n, done, ud);
    else if (IS("info"))
        do_info(n, done, ud);
    else if (IS("ring"))
        do_ring(n, done, ud);
    else if (IS("where"))
        do_where(n, params, end, np, done, ud);
    else if (IS("repair"))
        do_repair(n, params, end, np, done, ud);
    else if (IS("leave"))
        do_leave(n, params, end, np, done, ud);
    else if (IS("remove"))
        do_remove(n, params, end, np, done, ud);
    else if (IS("transfers"))
        do_transfers(n, params, end, np, done, ud);
    else if (IS("load"))
        do_load(n, done, ud);
    else {
        char msg[128];
        snprintf(msg, sizeof(msg), "unknown method '%.*s'", (int)(mlen > 64 ? 64 : mlen), method);
        fail(n, done, ud, MOOR_ENOMETHOD, msg);
    }
#undef IS
}

/* ---- glue: server requests and Lua kv calls ---------------------------------- */

static void reply_srv(void *ud, const char *errcode, const char *errmsg, const char *result,
                      size_t rlen)
{
    moor_srv_req_t *req = ud;

    if (errcode)
        moor_srv_reply_error(req, errcode, errmsg ? errmsg : "");
    else
        moor_srv_reply(req, result, rlen);
}

/* auth answers synchronously: the flag is stored on the connection before
 * the reply frees the request. */
typedef struct auth_ctx {
    moor_srv_req_t *req;
    int authed;
} auth_ctx_t;

static void reply_auth(void *ud, const char *errcode, const char *errmsg, const char *result,
                       size_t rlen)
{
    auth_ctx_t *a = ud;
    moor_srv_conn_t *c = a->req->conn;

    moor_srv_conn_set_authed(c, a->authed);
    /* A peer's one connection carries all its requests to this node: the
     * server gives it the peer limits (server.h moor_srv_conn_set_peer). */
    if (a->authed & MOOR_NODE_AUTH_PEER)
        moor_srv_conn_set_peer(c);
    /* Ended first: the reply may drop the last reference to c. */
    if (errcode && moor_srv_conn_reserved(c) && !(a->authed & MOOR_NODE_AUTH_PEER))
        moor_srv_conn_end(c, "a peer slot's _auth failed");
    reply_srv(a->req, errcode, errmsg, result, rlen);
}

static int method_is(const moor_srv_req_t *req, const char *m)
{
    return req->rpc.mlen == strlen(m) && memcmp(req->rpc.method, m, req->rpc.mlen) == 0;
}

/* A client request on its way: its kind and start, for the load figures
 * (loadstat.h) when it is answered. */
typedef struct timed {
    moor_node_t *n;
    moor_srv_req_t *req;
    uint64_t t0_ns;
    int kind;
} timed_t;

static void reply_timed(void *ud, const char *errcode, const char *errmsg, const char *result,
                        size_t rlen)
{
    timed_t *t = ud;

    if (t->n->as)
        moor_as_request(t->n->as, t->kind, t->t0_ns);
    reply_srv(t->req, errcode, errmsg, result, rlen);
    free(t);
}

static int kind_of(const moor_srv_req_t *req)
{
    return method_is(req, "get")    ? MOOR_LS_GET
           : method_is(req, "put")  ? MOOR_LS_PUT
           : method_is(req, "del")  ? MOOR_LS_DEL
           : method_is(req, "call") ? MOOR_LS_CALL
                                    : MOOR_LS_OTHER;
}

void moor_node_dispatch(void *node, moor_srv_req_t *req)
{
    moor_node_t *n = node;
    moor_srv_conn_t *c = req->conn;
    int authed = moor_srv_conn_authed(c);

    /* A peer slot (server.h "Slots") is for a member: its first request
     * must be _auth(cluster_secret). */
    if (moor_srv_conn_reserved(c) && !(authed & MOOR_NODE_AUTH_PEER) && !method_is(req, "_auth")) {
        moor_srv_conn_end(c, "a peer slot's first request was not _auth");
        moor_srv_reply_error(req, "NOAUTH",
                             "this connection holds a slot kept for cluster peers: its first "
                             "request must be _auth(cluster_secret)");
        return;
    }
    if (method_is(req, "auth") || method_is(req, "_auth")) {
        auth_ctx_t a = {req, authed};
        moor_node_exec(n, req->rpc.method, req->rpc.mlen, req->rpc.params, req->rpc.plen,
                       req->rpc.nparams, &a.authed, reply_auth, &a);
        return;
    }
    if (req->rpc.mlen && req->rpc.method[0] != '_') { /* a client's: timed */
        timed_t *t = malloc(sizeof(*t));
        if (t) {
            t->n = n;
            t->req = req;
            t->t0_ns = uv_hrtime();
            t->kind = kind_of(req);
            moor_node_exec(n, req->rpc.method, req->rpc.mlen, req->rpc.params, req->rpc.plen,
                           req->rpc.nparams, &authed, reply_timed, t);
            return;
        }
    }
    moor_node_exec(n, req->rpc.method, req->rpc.mlen, req->rpc.params, req->rpc.plen,
                   req->rpc.nparams, &authed, reply_srv, req);
}

int moor_node_peer_ip_ok(void *node, const char *ip)
{
    moor_node_t *n = node;

    return n->cl && moor_cl_member_ip(n->cl, ip);
}

typedef struct lua_kv {
    moor_node_t *n;
    uint64_t token;
} lua_kv_t;

static void reply_lua(void *ud, const char *errcode, const char *errmsg, const char *result,
                      size_t rlen)
{
    lua_kv_t *k = ud;

    if (k->n->lua)
        moor_lua_kv_done(k->n->lua, k->token, errcode, errmsg, result, rlen);
    free(k);
}

int moor_node_lua_kv(void *node, int op, const char *params, size_t plen, uint32_t nparams,
                     uint64_t token)
{
    moor_node_t *n = node;
    lua_kv_t *k = malloc(sizeof(*k));
    int authed = MOOR_NODE_AUTH_CLIENT; /* handlers run inside the node, as a client */
    static const char *names[] = {"", "get", "put", "del"};

    if (!k)
        return MOOR_ENOMEM;
    if (op < MOOR_LUA_GET || op > MOOR_LUA_DEL) {
        free(k);
        return MOOR_EINVAL;
    }
    k->n = n;
    k->token = token;
    moor_node_exec(n, names[op], strlen(names[op]), params, plen, nparams, &authed, reply_lua, k);
    return 0;
}

/* ---- the coordinator's store and resolver ------------------------------------------ */

static int store_get(void *ud, const char *key, size_t klen, moor_buf_t *out)
{
    moor_node_t *n = ud;
    void *raw;
    size_t rawlen;
    int rc = moor_engine_get(n->engine, key, klen, &raw, &rawlen);

    if (rc)
        return rc;
    if (!out->data) { /* an empty buffer adopts the engine's (both malloc's) */
        out->data = raw;
        out->len = out->cap = rawlen;
        return 0;
    }
    rc = moor_buf_append(out, raw, rawlen);
    free(raw);
    return rc;
}

/* Visible at once (the engine applies to the memtable before returning);
 * done runs on the loop once durable, through the completion queue. */
static int store_put(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                     moor_store_done_fn done, void *arg)
{
    moor_node_t *n = ud;
    wdone_t *w = wdone_new(n);
    int rc;

    if (!w)
        return MOOR_ENOMEM;
    w->sdone = done;
    w->sarg = arg;
    if ((rc = queue_write(n, key, klen, rec, rlen, w)))
        wdone_free(n, w);
    return rc;
}

/* Like store_put: visible at once, done on the loop once durable. */
static int store_del(void *ud, const char *key, size_t klen, moor_store_done_fn done, void *arg)
{
    moor_node_t *n = ud;
    wdone_t *w = wdone_new(n);
    int rc;

    if (!w)
        return MOOR_ENOMEM;
    w->sdone = done;
    w->sarg = arg;
    if ((rc = queue_write(n, key, klen, NULL, 0, w)))
        wdone_free(n, w);
    return rc;
}

/* The smallest key above every key that starts with p (plen bytes), into
 * hi; 0 when there is none (p empty or all 0xff: no upper bound). */
static size_t prefix_end(const char *p, size_t plen, char *hi)
{
    while (plen && (unsigned char)p[plen - 1] == 0xff)
        plen--;
    if (!plen)
        return 0;
    memcpy(hi, p, plen);
    hi[plen - 1] = (char)((unsigned char)hi[plen - 1] + 1);
    return plen;
}

/* On an iterator over [max(prefix, from), prefix end): a snapshot taken
 * now, so writes queued before the call are in it. */
static int store_scan(void *ud, const char *prefix, size_t plen, const char *from, size_t flen,
                      uint32_t limit, moor_store_scan_fn fn, void *arg)
{
    moor_node_t *n = ud;
    const char *lo = prefix;
    size_t lolen = plen, hilen;
    char *hi = malloc(plen ? plen : 1);
    moor_engine_iter_t *it;
    uint32_t seen = 0;
    int rc;

    if (!hi)
        return MOOR_ENOMEM;
    if (flen) {
        size_t m = flen < plen ? flen : plen;
        int c = m ? memcmp(from, prefix, m) : 0;
        if (c > 0 || (c == 0 && flen > plen)) {
            lo = from; /* from is above the prefix's first key */
            lolen = flen;
        }
    }
    hilen = prefix_end(prefix, plen, hi);
    it = moor_engine_iter_new(n->engine, lolen ? lo : NULL, lolen, hilen ? hi : NULL, hilen);
    if (!it) {
        free(hi);
        return MOOR_ENOMEM;
    }
    moor_engine_iter_seek_first(it);
    for (; moor_engine_iter_valid(it) && (!limit || seen < limit); moor_engine_iter_next(it)) {
        size_t klen, vlen;
        const char *k = moor_engine_iter_key(it, &klen);
        const char *v = moor_engine_iter_value(it, &vlen);
        seen++;
        if (fn(arg, k, klen, v, vlen))
            break;
    }
    rc = moor_engine_iter_status(it);
    moor_engine_iter_free(it);
    free(hi);
    return rc;
}

moor_store_if_t moor_node_store(moor_node_t *n)
{
    moor_store_if_t st = {n, store_get, store_put, store_del, store_scan};
    return st;
}

/* The coordinator's resolver hook: the space's Lua resolver over the
 * siblings {value, ts, tombstone, dot = {id = counter}, clock} (clock:
 * the record's ctx, the same for every sibling; dot: the write that made
 * this sibling).  The write-back carries a ctx covering every dot. */
static int resolve_hook(void *ud, const char *space, size_t slen, const char *record, size_t rlen,
                        moor_buf_t *out)
{
    moor_node_t *n = ud;
    const moor_space_cfg_t *sp = moor_config_space(&n->cfg, space, slen);
    moor_record_t *r = &n->rrec;
    moor_buf_t sib = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc;

    if (!sp || !sp->resolver[0] || !n->lua)
        return 0;
    if ((rc = moor_record_decode(record, rlen, r)))
        return rc;
    moor_record_ctx_vc(r, &n->rvc);
    moor_mp_packer_init(&pk, &sib);
    rc = msgpack_pack_array(&pk, r->n);
    for (uint32_t i = 0; i < r->n && rc == 0; i++) {
        const moor_sibling_t *x = &r->sib[i];
        rc |= msgpack_pack_map(&pk, 5);
        rc |= msgpack_pack_str_with_body(&pk, "dot", 3);
        rc |= msgpack_pack_map(&pk, 1);
        rc |= msgpack_pack_str_with_body(&pk, x->dot_id, x->dot_idlen);
        rc |= msgpack_pack_uint64(&pk, x->dot_counter);
        rc |= msgpack_pack_str_with_body(&pk, "value", 5);
        rc |= x->tombstone ? msgpack_pack_nil(&pk) : moor_mp_pack_raw(&sib, x->value, x->vlen);
        rc |= msgpack_pack_str_with_body(&pk, "ts", 2);
        rc |= msgpack_pack_uint64(&pk, x->ts);
        rc |= msgpack_pack_str_with_body(&pk, "tombstone", 9);
        rc |= x->tombstone ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        rc |= msgpack_pack_str_with_body(&pk, "clock", 5);
        rc |= msgpack_pack_map(&pk, n->rvc.n);
        for (uint32_t j = 0; j < n->rvc.n; j++) {
            rc |= msgpack_pack_str_with_body(&pk, n->rvc.e[j].id, n->rvc.e[j].idlen);
            rc |= msgpack_pack_uint64(&pk, n->rvc.e[j].counter);
        }
    }
    if (rc)
        rc = MOOR_ENOMEM;
    else
        rc = moor_lua_resolve(n->lua, sp->resolver, strlen(sp->resolver), sib.data, sib.len, out);
    moor_buf_free(&sib);
    return rc ? rc : 1;
}

int moor_node_join_cluster(moor_node_t *n, const char *self_addr)
{
    moor_cl_opts_t o;
    int rc;

    memset(&o, 0, sizeof(o));
    o.loop = n->loop;
    o.cfg = &n->cfg;
    o.self_addr = self_addr;
    o.store = moor_node_store(n);
    o.resolve = resolve_hook;
    o.resolve_ud = n;
    if ((rc = moor_cl_new(&o, &n->cl)))
        return rc;
    moor_expire_set_alone(n->expire, 0); /* reaping is anti-entropy's now (expire.h) */
    moor_cl_start(n->cl);
    moor_as_set_cluster(n->as, n->cl);
    return 0;
}

void moor_node_leave_cluster(moor_node_t *n, void (*done)(void *ud), void *ud)
{
    moor_cl_t *cl = n->cl;

    if (n->solo) {
        moor_solo_t *solo = n->solo;
        n->solo = NULL;
        moor_solo_close(solo, done, ud);
        return;
    }
    if (!cl) {
        if (done)
            done(ud);
        return;
    }
    n->cl = NULL;
    moor_as_set_cluster(n->as, NULL);
    moor_cl_close(cl, done, ud);
}

/* ---- life cycle -------------------------------------------------------------- */

/* Before the loop blocks for I/O: one log wake-up for every write queued
 * since the last time (by I/O callbacks, timers or resumed handlers). */
static void kick_log(uv_prepare_t *c)
{
    moor_node_t *n = c->data;

    if (n->kick_needed) {
        n->kick_needed = 0;
        moor_engine_kick(n->engine);
    }
}

/* Right after the engine's open: if recovery skipped damage in the commit
 * log, acknowledged writes may be gone, and the engine has already
 * deleted the damaged segments, so data_dir/REPAIR is the only lasting
 * record of it -- written before anything else can fail or crash
 * (a busy port, say).  The cluster reads it (moor_cl_new); only a repair
 * clears it. */
static void mark_repair(moor_node_t *n)
{
    moor_engine_stats_t es;
    char why[200], path[sizeof(n->cfg.data_dir) + 16];
    int rc;

    moor_engine_stats(n->engine, &es);
    if (!es.wal_damaged)
        return;
    snprintf(why, sizeof(why),
             "the commit log was damaged: %llu stretch(es), %llu bytes, %llu write(s) lost "
             "at the last start",
             (unsigned long long)es.wal_damaged, (unsigned long long)es.wal_damaged_bytes,
             (unsigned long long)es.wal_lost_writes);
    snprintf(path, sizeof(path), "%s/REPAIR", n->cfg.data_dir);
    if ((rc = moor_file_replace(path, why, strlen(why))))
        moor_log_error("cannot write the repair mark: %s", moor_diag_msg(rc));
}

int moor_node_open(uv_loop_t *loop, const moor_config_t *cfg, moor_node_t **out)
{
    moor_node_t *n = calloc(1, sizeof(*n));
    int rc;

    *out = NULL;
    if (!n)
        return MOOR_ENOMEM;
    n->loop = loop;
    n->cfg = *cfg;
    n->start_ms = moor_clock_mono_ms();
    pthread_mutex_init(&n->qmu, NULL);
    if (!(n->batch = moor_batch_new()) ||
        moor_expire_new(&n->cfg, !moor_config_clustered(&n->cfg), &n->expire)) {
        moor_batch_free(n->batch);
        pthread_mutex_destroy(&n->qmu);
        free(n);
        return MOOR_ENOMEM;
    }
    n->cfg.engine.filter = moor_expire_filter;
    n->cfg.engine.filter_ud = n->expire;
    rc = moor_engine_open(cfg->data_dir, &n->cfg.engine, &n->engine);
    if (rc) {
        moor_expire_free(n->expire);
        moor_batch_free(n->batch);
        pthread_mutex_destroy(&n->qmu);
        free(n);
        return rc;
    }
    mark_repair(n);
    if ((!moor_config_clustered(&n->cfg) &&
         (rc = moor_solo_new(loop, &n->cfg, moor_node_store(n), resolve_hook, n, &n->solo))) ||
        (rc = moor_as_new(loop, &n->cfg, n->engine, &n->as))) {
        if (n->solo)
            moor_solo_close(n->solo, NULL, NULL);
        moor_engine_close(n->engine);
        moor_expire_free(n->expire);
        moor_batch_free(n->batch);
        pthread_mutex_destroy(&n->qmu);
        free(n);
        return rc;
    }
    uv_async_init(loop, &n->async, drain_done);
    n->async.data = n;
    uv_prepare_init(loop, &n->kick);
    n->kick.data = n;
    uv_prepare_start(&n->kick, kick_log);
    uv_unref((uv_handle_t *)&n->kick); /* never keeps the loop alive alone */
    *out = n;
    return 0;
}

void moor_node_set_lua(moor_node_t *n, moor_lua_t *L)
{
    n->lua = L;
    moor_as_set_lua(n->as, L);
}
void moor_node_set_server(moor_node_t *n, moor_srv_t *s)
{
    n->srv = s;
}
unsigned moor_node_pending(const moor_node_t *n)
{
    return n->pending;
}

static void free_after_close(uv_handle_t *h)
{
    moor_node_t *n = h->data;

    moor_buf_free(&n->out);
    moor_batch_free(n->batch);
    moor_expire_free(n->expire); /* the engine, its one user, is closed */
    while (n->wspare) {
        wdone_t *w = n->wspare;
        n->wspare = w->next;
        free(w);
    }
    pthread_mutex_destroy(&n->qmu);
    free(n);
}

int moor_node_close(moor_node_t *n)
{
    int rc, crc;

    moor_as_close(n->as); /* before the engine: its timer reads the engine's stats */
    n->as = NULL;
    if (n->solo) { /* moord closed it already (moor_node_leave_cluster); tests may not */
        moor_solo_close(n->solo, NULL, NULL);
        n->solo = NULL;
    }
    rc = moor_engine_flush(n->engine);
    crc = moor_engine_close(n->engine);

    /* Anything the close made durable is answered before the handle goes. */
    drain_done(&n->async);
    uv_prepare_stop(&n->kick);
    /* libuv finishes closing handles in the reverse order of uv_close: the
     * one that frees the node (and both handles in it) must go last. */
    uv_close((uv_handle_t *)&n->async, free_after_close);
    uv_close((uv_handle_t *)&n->kick, NULL);
    return rc ? rc : crc;
}

/* ---- other doors (the RESP port) ------------------------------------------------ */

void moor_node_count_request(moor_node_t *n, int kind, uint64_t t0_ns)
{
    if (n->as)
        moor_as_request(n->as, kind, t0_ns);
}
