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

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "autoscale.h"
#include "cluster.h"
#include "expire.h"
#include "solo.h"
#include "slowlog.h"
#include "snapshot.h"
#include "loadstat.h"
#include "metrics.h"
#include "cluster/fields.h"
#include "cluster/record.h"
#include "cluster/scan.h"
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

/* A client request on its way: its kind and start, for the load figures
 * (loadstat.h) and the registry (metrics.h) when it is answered, and where
 * its time went, for the slow log (slowlog.h). */
typedef struct timed {
    struct moor_node *n;
    moor_srv_req_t *req;
    uint64_t t0_ns;
    int kind;
    moor_coord_timing_t tm; /* engine and replicas (the coordinator's op) */
    uint64_t lua_ns;        /* running Lua (a handler call) */
    int method, space;      /* metrics.h labels */
} timed_t;

struct moor_node {
    uv_loop_t *loop;
    moor_config_t cfg;
    moor_engine_t *engine;
    moor_lua_t *lua;
    moor_srv_t *srv;
    moor_metrics_t *metrics; /* the registry: /metrics, `metrics`, info (metrics.h) */
    moor_cl_t *cl;           /* cluster mode: its coordinator serves get/put/del */
    moor_solo_t *solo;       /* a node alone: the coordinator of a one-member ring */
    moor_as_t *as;           /* load figures and automatic scaling (autoscale.h) */
    moor_snap_t *snap;       /* the snapshot method (snapshot.h) */
    moor_expire_t *expire;   /* the engine's compaction filter (expire.h) */
    moor_slowlog_t *slow;    /* requests over slowlog.threshold_ms (slowlog.h) */
    struct timed *cur;       /* the client request being dispatched, during its synchronous
                              * part only: its coordinator op and handler call measure into it */
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
    /* Lua hosts a reload replaced: their running calls finish on them;
     * the sweep frees each once it has none (moor_node_swap_lua).  Every
     * host set gets the next epoch: a kv answer goes to the host that
     * asked only while that host (pointer and epoch: a freed host's
     * address may come back) still runs. */
    struct {
        moor_lua_t *h;
        uint64_t epoch;
    } retired[MOOR_NODE_RETIRED_MAX];
    unsigned nretired;
    uint64_t lua_epoch;        /* of n->lua */
    moor_lua_stats_t lua_gone; /* counters of the hosts freed: info.lua stays monotonic */
    uv_timer_t sweep;          /* runs while nretired > 0 */
    moor_node_reload_fn reload;
    void *reload_ud;
    uint64_t reloads; /* configs taken by moor_node_reconfigure */
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

/* The space of a call and its levels with the request's overrides (a
 * node alone keeps one copy of each key: its levels are all 1), and a
 * kv_call_t for its answer; NULL after failing done. */
static kv_call_t *kv_prepare(moor_node_t *n, const kv_opts_t *o, const moor_space_cfg_t **spp,
                             uint32_t *nn, uint32_t *r, uint32_t *w, moor_node_done_fn done,
                             void *ud)
{
    const moor_space_cfg_t *sp = moor_config_space(&n->cfg, o->space, o->slen);
    kv_call_t *c;
    char msg[160];

    if (!sp) {
        snprintf(msg, sizeof(msg), "unknown space '%.*s'", (int)(o->slen > 64 ? 64 : o->slen),
                 o->space);
        fail(n, done, ud, MOOR_EINVAL, msg);
        return NULL;
    }
    if (!n->cl && !n->solo) { /* a clustered node before its join, or after its close */
        fail(n, done, ud, MOOR_EUNAVAIL, "this node serves no data now (not joined, or closing)");
        return NULL;
    }
    if (n->cl && moor_cl_has_left(n->cl)) {
        fail(n, done, ud, MOOR_EUNAVAIL,
             "this node has left the cluster: it serves nothing; use another member");
        return NULL;
    }
    if (!n->cl) {
        *nn = *r = *w = 1;
    } else {
        moor_config_levels(&n->cfg, sp, nn, r, w);
        if (o->r)
            *r = moor_level_count(o->r, *nn);
        if (o->w)
            *w = moor_level_count(o->w, *nn);
        if (*r > *nn || *w > *nn) {
            snprintf(msg, sizeof(msg), "%s=%u is more than the %u replicas of space '%.64s'",
                     *r > *nn ? "r" : "w", *r > *nn ? *r : *w, *nn, sp->name);
            fail(n, done, ud, MOOR_EINVAL, msg);
            return NULL;
        }
    }
    if (!(c = malloc(sizeof(*c)))) {
        fail(n, done, ud, MOOR_ENOMEM, NULL);
        return NULL;
    }
    c->n = n;
    c->done = done;
    c->ud = ud;
    *spp = sp;
    return c;
}

/* get (op 0), put (1) or del (2) of a validated key through the
 * coordinator, with the space's levels and the request's overrides. */
static void kv_call(moor_node_t *n, int op, const char *key, uint32_t klen, const char *value,
                    size_t vlen, const kv_opts_t *o, moor_node_done_fn done, void *ud)
{
    const moor_space_cfg_t *sp;
    moor_coord_req_t req;
    uint32_t nn, r, w;
    kv_call_t *c;

    if (!(c = kv_prepare(n, o, &sp, &nn, &r, &w, done, ud)))
        return;
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
    req.timing = n->cur ? &n->cur->tm : NULL;
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

/* scan [{space, prefix, limit, cursor, values, r, timeout_ms}]: one page
 * of the space's keys through the coordinator (README "Scanning keys"). */
static void do_scan(moor_node_t *n, const char *p, const char *end, uint32_t np,
                    moor_node_done_fn done, void *ud)
{
    moor_coord_scan_req_t req;
    const moor_space_cfg_t *sp;
    kv_opts_t o;
    kv_call_t *c;
    uint32_t m = 0, len, nn, r, w;
    uint64_t u;
    int rc = 0;

    memset(&req, 0, sizeof(req));
    memset(&o, 0, sizeof(o));
    o.space = "default", o.slen = 7;
    if (np > 1 || (np == 1 && moor_mp_read_nil(&p, end) != 0 && moor_mp_read_map(&p, end, &m)))
        rc = bad("scan takes [{space, prefix, limit, cursor, values, r, timeout_ms}]");
    while (rc == 0 && m--) {
        const char *k;
        uint32_t klen;
        if (moor_mp_read_str(&p, end, &k, &klen)) {
            rc = bad("scan: option names must be strings");
            break;
        }
#define IS(name) (klen == sizeof(name) - 1 && memcmp(k, name, klen) == 0)
        if (IS("space")) {
            if (moor_mp_read_str(&p, end, &o.space, &o.slen))
                rc = bad("scan: space must be a string");
        } else if (IS("prefix")) {
            if (moor_mp_read_nil(&p, end) != 0 &&
                (moor_mp_read_strbin(&p, end, &req.prefix, &len) || len > n->cfg.key_max))
                rc = bad("scan: prefix must be a string or binary no longer than a key");
            else
                req.plen = req.prefix ? len : 0;
        } else if (IS("limit")) {
            if (moor_mp_read_uint(&p, end, &u) || u == 0 || u > MOOR_SCAN_LIMIT_MAX)
                rc = bad("scan: limit must be an integer in 1..1000");
            req.limit = (uint32_t)u;
        } else if (IS("cursor")) {
            if (moor_mp_read_nil(&p, end) != 0 &&
                (moor_mp_read_strbin(&p, end, &req.cursor, &len) || len == 0))
                rc = bad("scan: cursor must be the binary cursor a page returned");
            else
                req.clen = req.cursor ? len : 0;
        } else if (IS("values")) {
            if (moor_mp_read_nil(&p, end) != 0 && moor_mp_read_bool(&p, end, &req.values))
                rc = bad("scan: values must be a boolean");
        } else if (IS("r")) {
            rc = read_level(&p, end, "r", &o.r);
        } else if (IS("timeout_ms")) {
            if (moor_mp_read_uint(&p, end, &u) || u > 3600000)
                rc = bad("scan: timeout_ms must be an integer in 0..3600000");
            o.timeout_ms = (uint32_t)u;
        } else {
            rc = moor_diag(MOOR_EINVAL, "scan: unknown option '%.*s'", (int)(klen > 64 ? 64 : klen),
                           k);
        }
#undef IS
    }
    if (rc) {
        fail(n, done, ud, rc, moor_diag_msg(rc));
        return;
    }
    if (!(c = kv_prepare(n, &o, &sp, &nn, &r, &w, done, ud)))
        return;
    req.space = o.space, req.slen = o.slen;
    req.n = nn, req.r = r, req.timeout_ms = o.timeout_ms;
    moor_coord_scan(coord_of(n), &req, kv_done, c);
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

static void lua_stats_add(moor_lua_stats_t *acc, const moor_lua_t *h);

/* info.config: what a reload can change, as the node runs it now. */
static void pack_config(moor_node_t *n, msgpack_packer *pk)
{
    const char *lv = moor_log_level_name(moor_log_get_level());

    msgpack_pack_str_with_body(pk, "config", 6);
    msgpack_pack_map(pk, 4);
    pack_kv_u64(pk, "reloads", n->reloads);
    msgpack_pack_str_with_body(pk, "log_level", 9);
    msgpack_pack_str_with_body(pk, lv, strlen(lv));
    pack_kv_u64(pk, "request_timeout_ms", n->cfg.request_timeout_ms);
    msgpack_pack_str_with_body(pk, "spaces", 6);
    msgpack_pack_map(pk, n->cfg.nspaces);
    for (unsigned i = 0; i < n->cfg.nspaces; i++) {
        const moor_space_cfg_t *s = &n->cfg.spaces[i];
        uint32_t nn, r, w;
        moor_config_levels(&n->cfg, s, &nn, &r, &w);
        msgpack_pack_str_with_body(pk, s->name, strlen(s->name));
        msgpack_pack_map(pk, 4);
        pack_kv_u64(pk, "n", nn);
        pack_kv_u64(pk, "r", r);
        pack_kv_u64(pk, "w", w);
        msgpack_pack_str_with_body(pk, "resolver", 8);
        if (s->resolver[0])
            msgpack_pack_str_with_body(pk, s->resolver, strlen(s->resolver));
        else
            msgpack_pack_nil(pk);
    }
}

/* The `info` answer into out (reset first).  Can't fail (out of memory
 * shows as a short buffer the caller's decoder refuses). */
static void pack_info(moor_node_t *n, moor_buf_t *out)
{
    moor_engine_stats_t es;
    moor_srv_stats_t ss = {0};
    moor_lua_stats_t ls = {0};
    msgpack_packer pk;

    moor_engine_stats(n->engine, &es);
    if (n->srv)
        moor_srv_stats(n->srv, &ss);
    /* Every host's since start: a reload does not set counters back. */
    ls = n->lua_gone;
    if (n->lua)
        lua_stats_add(&ls, n->lua);
    for (unsigned i = 0; i < n->nretired; i++)
        lua_stats_add(&ls, n->retired[i].h);
    moor_buf_reset(out);
    moor_mp_packer_init(&pk, out);
    msgpack_pack_map(&pk, n->cl ? 16 : 12);
    pack_config(n, &pk);
    msgpack_pack_str_with_body(&pk, "slowlog", 7);
    msgpack_pack_map(&pk, 4);
    pack_kv_u64(&pk, "len", moor_slowlog_len(n->slow));
    pack_kv_u64(&pk, "total", moor_slowlog_total(n->slow));
    msgpack_pack_str_with_body(&pk, "threshold_ms", 12);
    msgpack_pack_double(&pk, moor_slowlog_threshold_us(n->slow) < 0
                                 ? -1.0
                                 : (double)moor_slowlog_threshold_us(n->slow) / 1000.0);
    pack_kv_u64(&pk, "max_len", moor_slowlog_max_len(n->slow));
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
        moor_cl_pack_hints(n->cl, out);
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
    msgpack_pack_map(&pk, 7);
    pack_kv_u64(&pk, "get", n->n_get);
    pack_kv_u64(&pk, "put", n->n_put);
    pack_kv_u64(&pk, "del", n->n_del);
    pack_kv_u64(&pk, "call", n->n_call);
    pack_kv_u64(&pk, "errors", n->n_err);
    pack_kv_u64(&pk, "pending_writes", n->pending);
    msgpack_pack_str_with_body(&pk, "by_method", 9);
    moor_metrics_pack_by_method(n->metrics, &pk);
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
        unsigned inflight = n->lua ? moor_lua_inflight(n->lua) : 0;
        for (unsigned i = 0; i < n->nretired; i++)
            inflight += moor_lua_inflight(n->retired[i].h);
        msgpack_pack_map(&pk, 11);
        pack_kv_u64(&pk, "handlers_inflight", inflight);
        pack_kv_u64(&pk, "hosts_retiring", n->nretired);
        pack_kv_u64(&pk, "heap_bytes", used);
        pack_kv_u64(&pk, "heap_limit", cap);
        pack_kv_u64(&pk, "heap_refused", refused);
        pack_kv_u64(&pk, "handler_calls", ls.handler_calls);
        pack_kv_u64(&pk, "resolver_calls", ls.resolver_calls);
        pack_kv_u64(&pk, "resolver_errors", ls.resolver_errors);
        pack_kv_u64(&pk, "time_kills", ls.time_kills);
        pack_kv_u64(&pk, "budget_kills", ls.budget_kills);
        pack_kv_u64(&pk, "memory_kills", ls.memory_kills);
    }
    msgpack_pack_str_with_body(&pk, "engine", 6);
    msgpack_pack_map(&pk, 22);
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
    pack_kv_u64(&pk, "stall_us", es.stall_us);
    msgpack_pack_str_with_body(&pk, "cache_hit_rate", 14);
    msgpack_pack_double(&pk, es.cache_hits + es.cache_misses
                                 ? (double)es.cache_hits / (double)(es.cache_hits + es.cache_misses)
                                 : 1.0);
    msgpack_pack_str_with_body(&pk, "level_tables", 12);
    msgpack_pack_array(&pk, 7);
    for (int l = 0; l < 7; l++)
        msgpack_pack_uint32(&pk, es.tables[l]);
    msgpack_pack_str_with_body(&pk, "level_bytes", 11);
    msgpack_pack_array(&pk, 7);
    for (int l = 0; l < 7; l++)
        msgpack_pack_uint64(&pk, es.level_bytes[l]);
}

static void do_info(moor_node_t *n, moor_node_done_fn done, void *ud)
{
    pack_info(n, &n->out);
    done(ud, NULL, NULL, n->out.data, n->out.len);
}

int moor_node_scrape(moor_node_t *n, moor_buf_t *info)
{
    pack_info(n, info);
    return moor_metrics_collect(n->metrics, info->data, info->len);
}

moor_metrics_t *moor_node_metrics(moor_node_t *n)
{
    return n->metrics;
}

/* metrics -> {node, families = [...]} (metrics.h moor_metrics_pack): the
 * registry after a scrape, for `moor top`. */
static void do_metrics(moor_node_t *n, moor_node_done_fn done, void *ud)
{
    moor_buf_t info = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc = moor_node_scrape(n, &info);

    moor_buf_free(&info);
    if (rc) {
        fail(n, done, ud, rc, "the info map could not be collected");
        return;
    }
    moor_buf_reset(&n->out);
    moor_mp_packer_init(&pk, &n->out);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "node", 4);
    msgpack_pack_str_with_body(&pk, n->cfg.node, strlen(n->cfg.node));
    msgpack_pack_str_with_body(&pk, "families", 8);
    moor_metrics_pack(n->metrics, &pk);
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
int moor_node_pack_ring(moor_node_t *n, moor_buf_t *out)
{
    msgpack_packer pk;
    char addr[128];
    int rc = 0;

    moor_buf_reset(out);
    moor_mp_packer_init(&pk, out);
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
    return rc ? MOOR_ENOMEM : 0;
}

static void do_ring(moor_node_t *n, moor_node_done_fn done, void *ud)
{
    if (moor_node_pack_ring(n, &n->out))
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
             (rc = o.ttl_ms ? bad("opts.ttl_ms is an option of put") : 0) == 0 &&
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
    moor_lua_call_timed(n->lua, name, nlen, p, (size_t)(end - p), np - 1, done, ud,
                        n->cur ? &n->cur->lua_ns : NULL);
}

/* reload (no params) -> what the reload hook answers (moord: run the
 * config file again; README "Hot reload"). */
static void do_reload(moor_node_t *n, uint32_t np, moor_node_done_fn done, void *ud)
{
    int rc;

    if (np != 0) {
        fail(n, done, ud, MOOR_EINVAL, "reload takes no params");
        return;
    }
    if (!n->reload) {
        fail(n, done, ud, MOOR_EUNAVAIL, "reload: this node has no config file to reload");
        return;
    }
    moor_buf_reset(&n->out);
    if ((rc = n->reload(n->reload_ud, &n->out))) {
        fail(n, done, ud, rc, moor_diag_msg(rc));
        return;
    }
    done(ud, NULL, NULL, n->out.data, n->out.len);
}

/* `load`: every member's last load figures (autoscale.h). */
static void do_load(moor_node_t *n, moor_node_done_fn done, void *ud)
{
    int rc;

    if ((rc = moor_node_pack_load(n, &n->out))) {
        fail(n, done, ud, rc, NULL);
        return;
    }
    done(ud, NULL, NULL, n->out.data, n->out.len);
}

int moor_node_pack_load(moor_node_t *n, moor_buf_t *out)
{
    moor_buf_reset(out);
    return moor_as_pack_cluster_load(n->as, out);
}

/* slowlog [{op = "get" | "len" | "reset", count}] (README "Slow log") */
static void do_slowlog(moor_node_t *n, const char *p, const char *end, uint32_t np,
                       moor_node_done_fn done, void *ud)
{
    moor_field_t f[2] = {{"op", 0, 0}, {"count", 0, 0}};
    const char *why = NULL, *op = "get";
    uint32_t oplen = 3;
    uint64_t count = 10;
    msgpack_packer pk;
    int rc;

    if (np > 1 || (np == 1 && (why = moor_fields_read(p, (size_t)(end - p), 1, f, 2))))
        why = why ? why : "slowlog takes at most one map param {op, count}";
    else if (!moor_field_nil(&f[0]) && moor_field_strbin(&f[0], &op, &oplen))
        why = "slowlog: op must be \"get\", \"len\" or \"reset\"";
    else if (!moor_field_nil(&f[1]) && (moor_field_uint(&f[1], &count) || count > 1000000))
        why = "slowlog: count must be an integer in 0..1000000";
    if (why) {
        fail(n, done, ud, MOOR_EINVAL, why);
        return;
    }
    moor_buf_reset(&n->out);
    moor_mp_packer_init(&pk, &n->out);
    if (oplen == 3 && !memcmp(op, "get", 3)) {
        if ((rc = moor_slowlog_pack(n->slow, (uint32_t)count, &n->out))) {
            fail(n, done, ud, rc, NULL);
            return;
        }
    } else if (oplen == 3 && !memcmp(op, "len", 3)) {
        msgpack_pack_uint32(&pk, moor_slowlog_len(n->slow));
    } else if (oplen == 5 && !memcmp(op, "reset", 5)) {
        moor_slowlog_reset(n->slow);
        msgpack_pack_true(&pk);
    } else {
        fail(n, done, ud, MOOR_EINVAL, "slowlog: op must be \"get\", \"len\" or \"reset\"");
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
    else if (IS("scan"))
        do_scan(n, params, end, np, done, ud);
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
    else if (IS("metrics"))
        do_metrics(n, done, ud);
    else if (IS("snapshot"))
        moor_snap_exec(n->snap, params, plen, np, done, ud);
    else if (IS("slowlog"))
        do_slowlog(n, params, end, np, done, ud);
    else if (IS("reload"))
        do_reload(n, np, done, ud);
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

/* The request's key and space for the slow log: get/put/del's key and
 * opts.space, call's handler name. */
static void slow_key(const moor_srv_req_t *req, moor_slowlog_entry_t *e)
{
    const char *p = req->rpc.params, *end = p + req->rpc.plen, *s;
    uint32_t n, len, left = req->rpc.nparams;
    int kv = method_is(req, "get") || method_is(req, "put") || method_is(req, "del");

    if (!left || !(kv || method_is(req, "call")) || moor_mp_read_strbin(&p, end, &s, &len))
        return;
    moor_slowlog_set_key(e, s, len);
    if (!kv)
        return;
    snprintf(e->space, sizeof(e->space), "default");
    left--;
    if (method_is(req, "put") && left && moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) == 0)
        left--;
    if (left != 1 || moor_mp_read_map(&p, end, &n))
        return;
    while (n--) {
        const char *k;
        uint32_t kl;
        if (moor_mp_read_str(&p, end, &k, &kl))
            return;
        if (kl == 5 && !memcmp(k, "space", 5) && moor_mp_read_strbin(&p, end, &s, &len) == 0) {
            snprintf(e->space, sizeof(e->space), "%.*s", (int)(len < 63 ? len : 63), s);
            return;
        }
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return;
    }
}

/* A request over slowlog.threshold_ms into the log (slowlog.h). */
static void slow_record(moor_node_t *n, const timed_t *t, uint64_t dur_ns)
{
    moor_slowlog_entry_t e;
    const moor_srv_req_t *req = t->req;

    memset(&e, 0, sizeof(e));
    e.time_ms = moor_clock_wall_ms() - dur_ns / 1000000;
    e.duration_us = dur_ns / 1000;
    e.engine_us = t->tm.engine_ns / 1000;
    e.replicas_us = t->tm.replicas_ns / 1000;
    e.lua_us = t->lua_ns / 1000;
    snprintf(e.method, sizeof(e.method), "%.*s",
             (int)(req->rpc.mlen < sizeof(e.method) - 1 ? req->rpc.mlen : sizeof(e.method) - 1),
             req->rpc.method);
    snprintf(e.client, sizeof(e.client), "%s", moor_srv_conn_addr(req->conn));
    slow_key(req, &e);
    moor_slowlog_add(n->slow, &e);
}

static void reply_timed(void *ud, const char *errcode, const char *errmsg, const char *result,
                        size_t rlen)
{
    timed_t *t = ud;
    moor_node_t *n = t->n;
    uint64_t dur_ns = uv_hrtime() - t->t0_ns;

    if (n->cur == t) /* answered in its synchronous part */
        n->cur = NULL;
    if (n->as)
        moor_as_request(n->as, t->kind, t->t0_ns);
    moor_metrics_request(n->metrics, t->method, t->space, errcode, dur_ns);
    /* Reading the log is not logged: it would fill it with itself. */
    if (moor_slowlog_over(n->slow, dur_ns / 1000) && !method_is(t->req, "slowlog"))
        slow_record(n, t, dur_ns);
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
            t->method = moor_metrics_method(req->rpc.method, req->rpc.mlen);
            t->space = moor_metrics_space(n->metrics, t->method, req->rpc.params, req->rpc.plen,
                                          req->rpc.nparams);
            memset(&t->tm, 0, sizeof(t->tm));
            t->lua_ns = 0;
            n->cur = t;
            moor_node_exec(n, req->rpc.method, req->rpc.mlen, req->rpc.params, req->rpc.plen,
                           req->rpc.nparams, &authed, reply_timed, t);
            n->cur = NULL;
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
    moor_lua_t *h;  /* the host that asked: the answer goes to it if it still runs */
    uint64_t epoch; /* h's */
    uint64_t token;
} lua_kv_t;

/* The epoch of h if it is the node's host or one a reload retired that
 * still runs; 0 if neither. */
static uint64_t lua_epoch_of(const moor_node_t *n, const moor_lua_t *h)
{
    if (h && h == n->lua)
        return n->lua_epoch;
    for (unsigned i = 0; i < n->nretired; i++)
        if (n->retired[i].h == h)
            return n->retired[i].epoch;
    return 0;
}

static void reply_lua(void *ud, const char *errcode, const char *errmsg, const char *result,
                      size_t rlen)
{
    lua_kv_t *k = ud;

    if (k->epoch && lua_epoch_of(k->n, k->h) == k->epoch)
        moor_lua_kv_done(k->h, k->token, errcode, errmsg, result, rlen);
    free(k);
}

int moor_node_lua_kv(void *node, moor_lua_t *from, int op, const char *params, size_t plen,
                     uint32_t nparams, uint64_t token)
{
    moor_node_t *n = node;
    lua_kv_t *k = malloc(sizeof(*k));
    int authed = MOOR_NODE_AUTH_CLIENT; /* handlers run inside the node, as a client */
    static const char *names[] = {"", "get", "put", "del"};
    struct timed *cur;

    if (!k)
        return MOOR_ENOMEM;
    if (op < MOOR_LUA_GET || op > MOOR_LUA_DEL) {
        free(k);
        return MOOR_EINVAL;
    }
    k->n = n;
    k->h = from;
    k->epoch = lua_epoch_of(n, from);
    k->token = token;
    /* A handler's kv may outlive the request that started the handler
     * (its call can time out first): it measures into nothing. */
    cur = n->cur;
    n->cur = NULL;
    moor_node_exec(n, names[op], strlen(names[op]), params, plen, nparams, &authed, reply_lua, k);
    n->cur = cur;
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
    if (!(n->batch = moor_batch_new()) || moor_metrics_new(cfg, &n->metrics) ||
        moor_expire_new(&n->cfg, !moor_config_clustered(&n->cfg), &n->expire)) {
        moor_batch_free(n->batch);
        moor_metrics_free(n->metrics);
        moor_expire_free(n->expire);
        pthread_mutex_destroy(&n->qmu);
        free(n);
        return MOOR_ENOMEM;
    }
    n->cfg.engine.filter = moor_expire_filter;
    n->cfg.engine.filter_ud = n->expire;
    rc = moor_engine_open(cfg->data_dir, &n->cfg.engine, &n->engine);
    if (rc) {
        moor_metrics_free(n->metrics);
        moor_expire_free(n->expire);
        moor_batch_free(n->batch);
        pthread_mutex_destroy(&n->qmu);
        free(n);
        return rc;
    }
    mark_repair(n);
    if (!(n->snap = moor_snap_new(loop, cfg->data_dir, n->engine)) ||
        !(n->slow = moor_slowlog_new(cfg->slowlog_max_len, cfg->slowlog_threshold_us)))
        rc = MOOR_ENOMEM;
    if (rc ||
        (!moor_config_clustered(&n->cfg) &&
         (rc = moor_solo_new(loop, &n->cfg, moor_node_store(n), resolve_hook, n, &n->solo))) ||
        (rc = moor_as_new(loop, &n->cfg, n->engine, &n->as))) {
        if (n->solo)
            moor_solo_close(n->solo, NULL, NULL);
        moor_snap_free(n->snap);
        moor_slowlog_free(n->slow);
        moor_engine_close(n->engine);
        moor_metrics_free(n->metrics);
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
    uv_timer_init(loop, &n->sweep);
    n->sweep.data = n;
    uv_unref((uv_handle_t *)&n->sweep);
    *out = n;
    return 0;
}

void moor_node_set_lua(moor_node_t *n, moor_lua_t *L)
{
    n->lua = L;
    n->lua_epoch++;
    moor_as_set_lua(n->as, L);
}

/* Adds host h's counters into acc. */
static void lua_stats_add(moor_lua_stats_t *acc, const moor_lua_t *h)
{
    moor_lua_stats_t s;

    moor_lua_stats(h, &s);
    acc->handler_calls += s.handler_calls;
    acc->resolver_calls += s.resolver_calls;
    acc->resolver_errors += s.resolver_errors;
    acc->time_kills += s.time_kills;
    acc->budget_kills += s.budget_kills;
    acc->memory_kills += s.memory_kills;
}

/* Frees the retired hosts that have no call left (a call abandoned over
 * its budget no longer counts: its late kv answer finds the host gone
 * from lua_alive and is dropped).  From a timer: no host code is on the
 * stack. */
static void sweep_cb(uv_timer_t *t)
{
    moor_node_t *n = t->data;
    unsigned keep = 0;

    for (unsigned i = 0; i < n->nretired; i++) {
        if (moor_lua_inflight(n->retired[i].h) == 0) {
            lua_stats_add(&n->lua_gone, n->retired[i].h);
            moor_lua_free(n->retired[i].h);
        } else
            n->retired[keep++] = n->retired[i];
    }
    n->nretired = keep;
    if (!keep)
        uv_timer_stop(t);
}

int moor_node_swap_lua(moor_node_t *n, moor_lua_t *fresh)
{
    if (n->lua && n->nretired == MOOR_NODE_RETIRED_MAX)
        return moor_diag(MOOR_EBUSY,
                         "%u earlier configs still finish handler calls; try again once they "
                         "have (at most handler.timeout_ms)",
                         n->nretired);
    if (n->lua) {
        n->retired[n->nretired].h = n->lua;
        n->retired[n->nretired++].epoch = n->lua_epoch;
        if (!uv_is_active((uv_handle_t *)&n->sweep))
            uv_timer_start(&n->sweep, sweep_cb, MOOR_NODE_SWEEP_MS, MOOR_NODE_SWEEP_MS);
    }
    moor_node_set_lua(n, fresh);
    return 0;
}

unsigned moor_node_retired(const moor_node_t *n)
{
    return n->nretired;
}

int moor_node_reconfigure(moor_node_t *n, const moor_config_t *cfg)
{
    int rc = 0;

    n->cfg = *cfg; /* what the cluster, the solo ring and autoscale read through */
    n->cfg.engine.filter = moor_expire_filter; /* the node's own, not the config's */
    n->cfg.engine.filter_ud = n->expire;
    n->reloads++;
    if (n->slow)
        moor_slowlog_set_threshold_us(n->slow, cfg->slowlog_threshold_us);
    if (n->cl)
        rc = moor_cl_reconfigure(n->cl);
    if (n->solo)
        moor_coord_set_timeout(moor_solo_coord(n->solo), cfg->request_timeout_ms);
    return rc;
}

void moor_node_set_reload(moor_node_t *n, moor_node_reload_fn fn, void *ud)
{
    n->reload = fn;
    n->reload_ud = ud;
}
void moor_node_set_server(moor_node_t *n, moor_srv_t *s)
{
    n->srv = s;
}

const struct moor_slowlog *moor_node_slowlog(const moor_node_t *n)
{
    return n->slow;
}

unsigned moor_node_pending(const moor_node_t *n)
{
    return n->pending;
}

static void free_after_close(uv_handle_t *h)
{
    moor_node_t *n = h->data;

    moor_buf_free(&n->out);
    moor_snap_free(n->snap);
    moor_slowlog_free(n->slow);
    moor_batch_free(n->batch);
    moor_metrics_free(n->metrics);
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

    /* A snapshot copies from the engine on the threadpool and answers on
     * the loop: closing under it would free what it reads. */
    if (moor_snap_busy(n->snap))
        return moor_diag(MOOR_EBUSY, "a snapshot is being taken: close the node once it "
                                     "has answered");

    for (unsigned i = 0; i < n->nretired; i++) /* calls left answer SHUTTING_DOWN */
        moor_lua_free(n->retired[i].h);
    n->nretired = 0;
    uv_timer_stop(&n->sweep);
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
    uv_close((uv_handle_t *)&n->sweep, NULL);
    return rc ? rc : crc;
}

/* ---- other doors (the RESP port) ------------------------------------------------ */

void moor_node_count_request(moor_node_t *n, const moor_node_door_req_t *r)
{
    static const char *const names[MOOR_LS_KINDS] = {"get", "put", "del", "call", "other"};
    const char *m = r->kind >= 0 && r->kind < MOOR_LS_KINDS ? names[r->kind] : "other";
    int method = moor_metrics_method(m, strlen(m));
    uint64_t dur_ns = uv_hrtime() - r->t0_ns;
    moor_slowlog_entry_t e;

    if (n->as)
        moor_as_request(n->as, r->kind, r->t0_ns);
    moor_metrics_request(n->metrics, method, moor_metrics_space_named(n->metrics, r->space),
                         r->errcode, dur_ns);
    /* Reading the log is not logged: it would fill it with itself. */
    if (!moor_slowlog_over(n->slow, dur_ns / 1000) ||
        (r->nlen == 7 && strncasecmp(r->name, "slowlog", 7) == 0))
        return;
    memset(&e, 0, sizeof(e));
    e.time_ms = moor_clock_wall_ms() - dur_ns / 1000000;
    e.duration_us = dur_ns / 1000;
    for (size_t i = 0; i < r->nlen && i + 1 < sizeof(e.method); i++)
        e.method[i] = (char)tolower((unsigned char)r->name[i]);
    snprintf(e.space, sizeof(e.space), "%s", r->space);
    snprintf(e.client, sizeof(e.client), "%s", r->client ? r->client : "");
    if (r->key)
        moor_slowlog_set_key(&e, r->key, r->klen);
    moor_slowlog_add(n->slow, &e);
}
