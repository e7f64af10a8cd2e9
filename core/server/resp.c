/*
 * resp.c (server) -- the RESP2 command table of a node (server/resp.h).
 *
 * A command becomes an operation (rop_t) that issues node calls through
 * moor_node_exec -- the same path MessagePack-RPC requests take, with the
 * same checks, limits, keyspaces and cluster coordination -- and builds
 * its RESP reply as the answers come.  DEL and MSET go key by key, in
 * order; MGET and EXISTS of several keys keep up to RESP_READ_WINDOW gets
 * in flight, each with its own params and answer slot (struct rpar), and
 * put the reply together in key order.  Read-then-write
 * commands (INCR and kin, DEL, SET NX/XX) get then put or del with the
 * ctx they read; they are not atomic against other clients' writes, and
 * the server runs them alone on their connection (moor_respd_class) so a
 * pipeline sees its own writes.
 *
 * Calls may answer synchronously (a lone node's get does): rop_run is a
 * trampoline that issues the next call only once the previous one has
 * answered, whether from inside moor_node_exec or later from the loop, so
 * a long MGET never recurses.
 *
 * Values: SET and MSET store the bytes as a MessagePack bin with the put
 * option overwrite = true (the write descends what the coordinating
 * replica holds: no sibling with the value it replaces).  GET answers a
 * str or bin value's bytes, any other type as its MessagePack encoding,
 * and a key with several values an error naming the count.
 *
 * Expiry: SET EX/PX/EXAT/PXAT, SETEX and PSETEX put with opts.ttl_ms (an
 * absolute time becomes the ms left from this node's clock); TTL and PTTL
 * read the get answer's expires_ms.  Every other write (SET without an
 * expiry, INCR and kin) stores a value that does not expire.
 */
#include "server/resp.h"
#include "server/loadstat.h"
#include "server/resp_info.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/coord.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"

#define RESP_DB_NAME_MAX 256
#define RESP_SPARE_MAX 256             /* operations kept for reuse */
#define RESP_SPARE_BUF ((size_t)65536) /* a buffer larger than this is not kept */
#define RESP_READ_WINDOW 64            /* MGET/EXISTS: gets in flight at once */

typedef struct rop rop_t;

struct moor_respd {
    moor_node_t *node;
    moor_srv_t *srv; /* the RESP server (stats for INFO); NULL until set */
    int need_auth;   /* the node has an auth_token */
    int port;        /* for INFO */
    unsigned ndbs;   /* SELECT 0..ndbs-1 */
    char (*dbs)[RESP_DB_NAME_MAX];
    rop_t *spare;    /* finished operations kept with their buffers (rop_free) */
    unsigned nspare; /* at most RESP_SPARE_MAX */
};

/* Issues the next node call of o (rop_call) or finishes it (o->finished). */
typedef void (*rop_next_fn)(rop_t *o);
/* Takes one node answer (errcode NULL on success; result borrowed). */
typedef void (*rop_got_fn)(rop_t *o, const char *errcode, const char *errmsg, const char *result,
                           size_t rlen);

struct rop {
    moor_respd_t *d;
    moor_srv_req_t *req;
    const char *space; /* the selected database's keyspace */
    rop_next_fn next;
    rop_got_fn got;
    uint32_t i; /* the argument being worked on */
    int phase;  /* read-then-write: 0 reading, 1 writing */
    int authed; /* the connection's flags, for moor_node_exec */
    unsigned waiting : 1, stepping : 1, finished : 1;
    unsigned nx : 1, xx : 1, as_int : 1;
    long long count;      /* DEL, EXISTS: keys found */
    long long by, result; /* INCR */
    uint64_t ttl_ms;      /* SET EX/PX..., SETEX, PSETEX: the puts' opts.ttl_ms; 0: none */
    moor_buf_t out;       /* the reply */
    moor_buf_t params;    /* the call being issued */
    moor_buf_t ctx;       /* the ctx the read returned, for the write */
    rop_t *next_spare;    /* on d->spare */
    struct rpar *par;     /* MGET/EXISTS of several keys: the parallel reads */
    int kind;             /* MOOR_LS_* for the node's load figures */
    uint64_t t0_ns;       /* uv_hrtime() at dispatch */
};

/* ---- small helpers ------------------------------------------------------- */

static int arg_is(const moor_resp_arg_t *a, const char *s)
{
    size_t n = strlen(s);

    if (a->len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a->p[i]) != s[i])
            return 0;
    return 1;
}

/* A decimal integer the way Redis reads one (optional '-', digits, no
 * spaces, fits in int64).  0 or -1. */
static int parse_ll(const char *p, size_t n, long long *v)
{
    unsigned long long x = 0, lim;
    int neg = 0;
    size_t i = 0;

    if (n == 0 || n > 20)
        return -1;
    if (p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n)
        return -1;
    lim = neg ? (unsigned long long)INT64_MAX + 1 : (unsigned long long)INT64_MAX;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (x > (lim - (unsigned long long)(p[i] - '0')) / 10)
            return -1;
        x = x * 10 + (unsigned long long)(p[i] - '0');
    }
    *v = neg ? (long long)(0 - x) : (long long)x;
    return 0;
}

/* Printable copy of an argument for an error message (at most 128 bytes). */
static void shown(char *dst, size_t cap, const moor_resp_arg_t *a)
{
    size_t n = a->len < 128 ? a->len : 128, k = 0;

    for (size_t i = 0; i < n && k + 1 < cap; i++)
        dst[k++] = (a->p[i] >= 0x20 && a->p[i] < 0x7f) ? a->p[i] : '?';
    dst[k] = 0;
}

static void lower_name(char *dst, size_t cap, const moor_resp_arg_t *a)
{
    shown(dst, cap, a);
    for (char *q = dst; *q; q++)
        *q = (char)tolower((unsigned char)*q);
}

/* ---- the operation ----------------------------------------------------- */

/* A fresh operation; a spare one keeps its buffers' memory (most commands
 * then allocate nothing here). */
static rop_t *rop_new(moor_respd_t *d, moor_srv_req_t *req)
{
    unsigned db = moor_srv_conn_app(req->conn);
    rop_t *o = d->spare;

    if (o) {
        moor_buf_t out = o->out, params = o->params, ctx = o->ctx;
        d->spare = o->next_spare;
        d->nspare--;
        memset(o, 0, sizeof(*o));
        o->out = out, o->params = params, o->ctx = ctx;
        moor_buf_reset(&o->out);
        moor_buf_reset(&o->params);
        moor_buf_reset(&o->ctx);
    } else if (!(o = calloc(1, sizeof(*o)))) {
        return NULL;
    }
    o->d = d;
    o->req = req;
    o->space = db < d->ndbs ? d->dbs[db] : "default";
    o->authed = moor_srv_conn_authed(req->conn);
    return o;
}

static void buf_trim(moor_buf_t *b)
{
    if (b->cap > RESP_SPARE_BUF)
        moor_buf_free(b);
}

static void par_free(struct rpar *m);

static void rop_free(rop_t *o)
{
    moor_respd_t *d = o->d;

    par_free(o->par);
    o->par = NULL;
    if (d->nspare < RESP_SPARE_MAX) {
        buf_trim(&o->out);
        buf_trim(&o->params);
        buf_trim(&o->ctx);
        o->next_spare = d->spare;
        d->spare = o;
        d->nspare++;
        return;
    }
    moor_buf_free(&o->out);
    moor_buf_free(&o->params);
    moor_buf_free(&o->ctx);
    free(o);
}

static void rop_finish(rop_t *o)
{
    char code[32] = "";

    if (o->out.len == 0)
        moor_resp_error(&o->out, "ERR out of memory");
    if (o->out.len > 1 && o->out.data[0] == '-') { /* "-CODE message": the code, for metrics */
        size_t n = 0;
        while (n + 1 < o->out.len && n < sizeof(code) - 1 && o->out.data[1 + n] != ' ' &&
               o->out.data[1 + n] != '\r')
            n++;
        memcpy(code, o->out.data + 1, n);
        code[n] = '\0';
    }
    moor_node_door_req_t r = {o->kind,
                              o->t0_ns,
                              o->space,
                              code[0] ? code : NULL,
                              o->req->argv[0].p,
                              o->req->argv[0].len,
                              o->req->argc > 1 ? o->req->argv[1].p : NULL,
                              o->req->argc > 1 ? o->req->argv[1].len : 0,
                              moor_srv_conn_addr(o->req->conn)};
    moor_node_count_request(o->d->node, &r);
    moor_srv_reply_resp(o->req, o->out.data, o->out.len);
    rop_free(o);
}

static void rop_run(rop_t *o)
{
    o->stepping = 1;
    while (!o->waiting && !o->finished)
        o->next(o);
    o->stepping = 0;
    if (o->finished)
        rop_finish(o);
}

static void rop_done(void *ud, const char *errcode, const char *errmsg, const char *result,
                     size_t rlen)
{
    rop_t *o = ud;

    o->waiting = 0;
    o->got(o, errcode, errmsg, result, rlen);
    if (!o->stepping)
        rop_run(o);
}

/* Replaces the reply by a RESP error for a node error, and finishes. */
static void rop_fail(rop_t *o, const char *errcode, const char *errmsg)
{
    o->out.len = 0;
    if (strcmp(errcode, "NOAUTH") == 0)
        moor_resp_error(&o->out, "NOAUTH Authentication required.");
    else
        moor_resp_errorf(&o->out, "%s %s", errcode, errmsg && *errmsg ? errmsg : "error");
    o->finished = 1;
}

static void rop_call(rop_t *o, const char *method, uint32_t nparams)
{
    o->waiting = 1;
    moor_node_exec(o->d->node, method, strlen(method), o->params.data, o->params.len, nparams,
                   &o->authed, rop_done, o);
}

/* params = [key (bin), value (bin) when val, {opts}]: opts carry the
 * space, overwrite when asked, the ctx of o->ctx when with_ctx, and
 * o->ttl_ms (when set) on a put. */
static int pack_into(rop_t *o, moor_buf_t *dst, const moor_resp_arg_t *key, const void *val,
                     size_t vlen, int is_val, int overwrite, int with_ctx)
{
    msgpack_packer pk;
    int ttl = is_val && o->ttl_ms;
    size_t nopts = 1 + (overwrite ? 1 : 0) + (with_ctx && o->ctx.len ? 1 : 0) + (ttl ? 1 : 0);
    size_t sl = strlen(o->space);

    moor_buf_reset(dst);
    moor_mp_packer_init(&pk, dst);
    if (msgpack_pack_bin(&pk, key->len) || msgpack_pack_bin_body(&pk, key->p, key->len))
        return -1;
    if (is_val && (msgpack_pack_bin(&pk, vlen) || msgpack_pack_bin_body(&pk, val, vlen)))
        return -1;
    if (msgpack_pack_map(&pk, nopts) || msgpack_pack_str_with_body(&pk, "space", 5) ||
        msgpack_pack_str_with_body(&pk, o->space, sl))
        return -1;
    if (overwrite && (msgpack_pack_str_with_body(&pk, "overwrite", 9) || msgpack_pack_true(&pk)))
        return -1;
    if (with_ctx && o->ctx.len &&
        (msgpack_pack_str_with_body(&pk, "ctx", 3) || msgpack_pack_bin(&pk, o->ctx.len) ||
         msgpack_pack_bin_body(&pk, o->ctx.data, o->ctx.len)))
        return -1;
    if (ttl &&
        (msgpack_pack_str_with_body(&pk, "ttl_ms", 6) || msgpack_pack_uint64(&pk, o->ttl_ms)))
        return -1;
    return 0;
}

static int pack_params(rop_t *o, const moor_resp_arg_t *key, const void *val, size_t vlen,
                       int is_val, int overwrite, int with_ctx)
{
    return pack_into(o, &o->params, key, val, vlen, is_val, overwrite, with_ctx);
}

static void rop_nomem(rop_t *o)
{
    o->out.len = 0;
    moor_resp_error(&o->out, "ERR out of memory");
    o->finished = 1;
}

static void call_get(rop_t *o, const moor_resp_arg_t *key)
{
    if (pack_params(o, key, NULL, 0, 0, 0, 0))
        rop_nomem(o);
    else
        rop_call(o, "get", 2);
}

/* ---- reading a get answer ------------------------------------------------ */

typedef struct got_value {
    uint32_t n;         /* values (0: absent or deleted) */
    const char *values; /* the first value's encoding */
    const char *end;
    uint64_t expires_ms; /* the answer's expires_ms; 0: no value expires */
} got_value_t;

/* Splits a get answer; the ctx (if any) is copied into o->ctx.  0 or -1
 * (not the shape the node answers). */
static int read_get(rop_t *o, const char *r, size_t rlen, got_value_t *g)
{
    const char *p = r, *end = r + rlen, *k, *c;
    uint32_t nk, kl, cl;

    memset(g, 0, sizeof(*g));
    g->end = end;
    moor_buf_reset(&o->ctx);
    if (!r || rlen == 0 || moor_mp_read_nil(&p, end) == 0)
        return 0;
    if (moor_mp_read_map(&p, end, &nk))
        return -1;
    for (uint32_t i = 0; i < nk; i++) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return -1;
        if (kl == 6 && memcmp(k, "values", 6) == 0) {
            if (moor_mp_read_array(&p, end, &g->n))
                return -1;
            g->values = p;
            for (uint32_t j = 0; j < g->n; j++)
                if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                    return -1;
        } else if (kl == 3 && memcmp(k, "ctx", 3) == 0 && moor_mp_read_bin(&p, end, &c, &cl) == 0) {
            if (moor_buf_append(&o->ctx, c, cl))
                return -1;
        } else if (kl == 10 && memcmp(k, "expires_ms", 10) == 0) {
            if (moor_mp_read_uint(&p, end, &g->expires_ms))
                return -1;
        } else if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) {
            return -1;
        }
    }
    return 0;
}

/* The bytes a RESP client sees for the value at *p (advanced past it). */
static int value_bytes(const char **p, const char *end, const char **b, size_t *n)
{
    const char *start = *p;
    uint32_t len;

    if (moor_mp_read_strbin(p, end, b, &len) == 0) {
        *n = len;
        return 0;
    }
    if (moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH))
        return -1;
    *b = start;
    *n = (size_t)(*p - start);
    return 0;
}

/* Appends a GET's answer for g: nil, the bytes, or the siblings error. */
static int reply_value(moor_buf_t *out, const got_value_t *g)
{
    const char *p = g->values, *b;
    size_t n;

    if (g->n == 0)
        return moor_resp_null(out);
    if (g->n > 1)
        return moor_resp_errorf(out,
                                "ERR key has %u siblings (unresolved concurrent writes); read it "
                                "over MessagePack-RPC or give the keyspace a resolver",
                                g->n);
    if (value_bytes(&p, g->end, &b, &n))
        return moor_resp_error(out, "ERR the node answered a malformed value");
    return moor_resp_bulk(out, b, n);
}

static int bad_answer(rop_t *o)
{
    o->out.len = 0;
    moor_resp_error(&o->out, "ERR the node answered a get in an unexpected shape");
    o->finished = 1;
    return -1;
}

/* ---- GET, MGET, EXISTS ------------------------------------------------------ */

static void get_next(rop_t *o)
{
    if (o->i >= o->req->argc) { /* every answer is in o->out */
        o->finished = 1;
        return;
    }
    call_get(o, &o->req->argv[o->i]);
}

static void get_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    got_value_t g;

    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (read_get(o, r, rlen, &g)) {
        bad_answer(o);
        return;
    }
    if (reply_value(&o->out, &g))
        rop_nomem(o);
    o->i++;
}

static void exists_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    got_value_t g;

    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (read_get(o, r, rlen, &g)) {
        bad_answer(o);
        return;
    }
    o->count += g.n > 0;
    o->i++;
}

/* MGET and EXISTS of several keys: up to RESP_READ_WINDOW gets in flight
 * at once, each with its own params (the node may keep pointers into
 * them until it answers) and answer slot; the reply is put together in
 * key order once every get has answered.  The first failure in key order
 * answers for the whole command, as a sequential run would. */
typedef struct rslot {
    rop_t *o;
    uint32_t arg;      /* the key's argument index */
    int failed;        /* reply holds the error for the whole command */
    int found;         /* the key holds a value */
    moor_buf_t params; /* this get's params */
    moor_buf_t reply;  /* MGET: the key's array element */
} rslot_t;

struct rpar {
    rslot_t *slots;
    uint32_t n, issued, answered, inflight;
};

static void par_free(struct rpar *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->n; i++) {
        moor_buf_free(&m->slots[i].params);
        moor_buf_free(&m->slots[i].reply);
    }
    free(m->slots);
    free(m);
}

static void par_done(void *ud, const char *ec, const char *em, const char *r, size_t rlen)
{
    rslot_t *sl = ud;
    rop_t *o = sl->o;
    struct rpar *m = o->par;
    got_value_t g;

    m->inflight--;
    m->answered++;
    moor_buf_reset(&sl->reply);
    if (ec) {
        sl->failed = 1;
        if (strcmp(ec, "NOAUTH") == 0)
            moor_resp_error(&sl->reply, "NOAUTH Authentication required.");
        else
            moor_resp_errorf(&sl->reply, "%s %s", ec, em && *em ? em : "error");
    } else if (read_get(o, r, rlen, &g)) {
        sl->failed = 1;
        moor_resp_error(&sl->reply, "ERR the node answered a get in an unexpected shape");
    } else {
        sl->found = g.n > 0;
        if (o->i == 0 && reply_value(&sl->reply, &g)) { /* o->i 0: MGET */
            sl->failed = 1;
            moor_buf_reset(&sl->reply);
        }
    }
    o->waiting = 0;
    if (!o->stepping)
        rop_run(o);
}

/* The command's reply from the slots, in key order. */
static void par_finish(rop_t *o)
{
    struct rpar *m = o->par;
    long long count = 0;

    o->finished = 1;
    o->out.len = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->slots[i].failed) {
            if (moor_buf_append(&o->out, m->slots[i].reply.data, m->slots[i].reply.len))
                rop_nomem(o);
            return;
        }
        count += m->slots[i].found;
    }
    if (o->i == 1) { /* EXISTS */
        if (moor_resp_int(&o->out, count))
            rop_nomem(o);
        return;
    }
    if (moor_resp_array(&o->out, m->n)) {
        rop_nomem(o);
        return;
    }
    for (uint32_t i = 0; i < m->n; i++)
        if (moor_buf_append(&o->out, m->slots[i].reply.data, m->slots[i].reply.len)) {
            rop_nomem(o);
            return;
        }
}

static void par_next(rop_t *o)
{
    struct rpar *m = o->par;

    while (m->issued < m->n && m->inflight < RESP_READ_WINDOW) {
        rslot_t *sl = &m->slots[m->issued++];
        if (pack_into(o, &sl->params, &o->req->argv[sl->arg], NULL, 0, 0, 0, 0)) {
            sl->failed = 1; /* its reply stays empty: rop_finish answers out of memory */
            m->answered++;
            continue;
        }
        m->inflight++;
        moor_node_exec(o->d->node, "get", 3, sl->params.data, sl->params.len, 2, &o->authed,
                       par_done, sl);
    }
    if (m->answered == m->n)
        par_finish(o);
    else
        o->waiting = 1; /* par_done clears it */
}

/* Sets o up for parallel reads of its keys (argv[1..]); mget: 1 for MGET.
 * 0, or -1 when out of memory (then the sequential steps are used). */
static int par_setup(rop_t *o, int mget)
{
    uint32_t n = o->req->argc - 1;
    struct rpar *m = calloc(1, sizeof(*m));

    if (!m || !(m->slots = calloc(n, sizeof(*m->slots)))) {
        free(m);
        return -1;
    }
    m->n = n;
    for (uint32_t i = 0; i < n; i++) {
        m->slots[i].o = o;
        m->slots[i].arg = i + 1;
    }
    o->par = m;
    o->i = mget ? 0 : 1; /* which command par_done and par_finish build */
    o->next = par_next;
    return 0;
}

static void exists_next(rop_t *o)
{
    if (o->i >= o->req->argc) {
        if (moor_resp_int(&o->out, o->count))
            rop_nomem(o);
        o->finished = 1;
        return;
    }
    call_get(o, &o->req->argv[o->i]);
}

/* ---- SET, MSET ---------------------------------------------------------------- */

static void ok_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    o->i += 2;
}

/* MSET k v [k v ...] and plain SET k v: overwriting puts, one by one. */
static void mset_next(rop_t *o)
{
    const moor_resp_arg_t *a = o->req->argv;
    uint32_t last = arg_is(&a[0], "set") ? 3 : o->req->argc;

    if (o->i + 1 >= last) {
        if (moor_resp_status(&o->out, "OK"))
            rop_nomem(o);
        o->finished = 1;
        return;
    }
    if (pack_params(o, &a[o->i], a[o->i + 1].p, a[o->i + 1].len, 1, 1, 0))
        rop_nomem(o);
    else
        rop_call(o, "put", 3);
}

/* SET with NX or XX: read, then an overwriting put if the condition holds. */
static void setcond_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    got_value_t g;

    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (o->phase == 1) {
        if (moor_resp_status(&o->out, "OK"))
            rop_nomem(o);
        o->finished = 1;
        return;
    }
    if (read_get(o, r, rlen, &g)) {
        bad_answer(o);
        return;
    }
    if ((o->nx && g.n > 0) || (o->xx && g.n == 0)) {
        if (moor_resp_null(&o->out))
            rop_nomem(o);
        o->finished = 1;
        return;
    }
    o->phase = 1;
}

static void setcond_next(rop_t *o)
{
    const moor_resp_arg_t *a = o->req->argv;

    if (o->phase == 0) {
        call_get(o, &a[1]);
        return;
    }
    if (pack_params(o, &a[1], a[2].p, a[2].len, 1, 1, 0))
        rop_nomem(o);
    else
        rop_call(o, "put", 3);
}

/* SETEX key seconds value, PSETEX key ms value: an overwriting put with
 * o->ttl_ms. */
static void setex_next(rop_t *o)
{
    const moor_resp_arg_t *a = o->req->argv;

    if (o->i > 1) { /* ok_got stepped past the put */
        if (moor_resp_status(&o->out, "OK"))
            rop_nomem(o);
        o->finished = 1;
        return;
    }
    if (pack_params(o, &a[1], a[3].p, a[3].len, 1, 1, 0))
        rop_nomem(o);
    else
        rop_call(o, "put", 3);
}

/* TTL and PTTL: -2 for a key without a value, -1 for a value that does
 * not expire, else the time left by this node's clock (at least 0; TTL
 * rounds to the nearest second, as Redis does). */
static void ttl_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    uint64_t now = moor_clock_wall_ms();
    got_value_t g;
    long long left;

    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (read_get(o, r, rlen, &g)) {
        bad_answer(o);
        return;
    }
    if (g.n == 0)
        left = -2;
    else if (g.expires_ms == 0)
        left = -1;
    else
        left = g.expires_ms > now ? (long long)(g.expires_ms - now) : 0;
    if (left > 0 && arg_is(&o->req->argv[0], "ttl"))
        left = (left + 500) / 1000;
    if (moor_resp_int(&o->out, left))
        rop_nomem(o);
    o->i++;
}

/* ---- DEL ------------------------------------------------------------------------ */

/* Each key: read; when it holds a value, del with the ctx read (a del
 * without a ctx would leave what it did not see as a sibling). */
static void del_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    got_value_t g;

    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (o->phase == 1) {
        o->count++;
        o->phase = 0;
        o->i++;
        return;
    }
    if (read_get(o, r, rlen, &g)) {
        bad_answer(o);
        return;
    }
    if (g.n > 0)
        o->phase = 1;
    else
        o->i++;
}

static void del_next(rop_t *o)
{
    if (o->i >= o->req->argc) {
        if (moor_resp_int(&o->out, o->count))
            rop_nomem(o);
        o->finished = 1;
        return;
    }
    if (o->phase == 0) {
        call_get(o, &o->req->argv[o->i]);
        return;
    }
    if (pack_params(o, &o->req->argv[o->i], NULL, 0, 0, 0, 1))
        rop_nomem(o);
    else
        rop_call(o, "del", 2);
}

/* ---- INCR, INCRBY, DECR, DECRBY ---------------------------------------------------- */

/* The number a stored value stands for: a MessagePack integer (*is_int),
 * or a str/bin of decimal digits.  0 or -1. */
static int value_number(const char **p, const char *end, long long *v, int *is_int)
{
    const char *s;
    uint32_t n;
    int64_t i;
    int t = moor_mp_peek(*p, end);

    if ((t == MOOR_MP_UINT || t == MOOR_MP_INT) && moor_mp_read_int(p, end, &i) == 0) {
        *v = i;
        *is_int = 1;
        return 0;
    }
    if (moor_mp_read_strbin(p, end, &s, &n) == 0) {
        *is_int = 0;
        return parse_ll(s, n, v);
    }
    moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH);
    return -1;
}

/* The current value: 0 for a missing key; of several siblings the largest
 * number (non-numeric ones ignored while one is numeric), as the incr
 * handler does.  0 or -1 (no sibling is a number). */
static int incr_current(const got_value_t *g, long long *cur, int *is_int)
{
    const char *p = g->values;
    int found = 0;

    *cur = 0;
    *is_int = 0;
    for (uint32_t j = 0; j < g->n; j++) {
        long long v;
        int ii;
        if (value_number(&p, g->end, &v, &ii) == 0 && (!found || v > *cur)) {
            *cur = v;
            *is_int = ii;
            found = 1;
        }
    }
    return g->n == 0 || found ? 0 : -1;
}

static void incr_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    got_value_t g;
    long long cur;
    int is_int;

    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (o->phase == 1) {
        if (moor_resp_int(&o->out, o->result))
            rop_nomem(o);
        o->finished = 1;
        return;
    }
    if (read_get(o, r, rlen, &g)) {
        bad_answer(o);
        return;
    }
    if (incr_current(&g, &cur, &is_int)) {
        moor_resp_error(&o->out, "ERR value is not an integer or out of range");
        o->finished = 1;
        return;
    }
    if ((o->by > 0 && cur > INT64_MAX - o->by) || (o->by < 0 && cur < INT64_MIN - o->by)) {
        moor_resp_error(&o->out, "ERR increment or decrement would overflow");
        o->finished = 1;
        return;
    }
    o->result = cur + o->by;
    o->as_int = (unsigned)is_int;
    o->phase = 1;
}

static void incr_next(rop_t *o)
{
    const moor_resp_arg_t *key = &o->req->argv[1];
    msgpack_packer pk;
    char num[24];
    int n;

    if (o->phase == 0) {
        call_get(o, key);
        return;
    }
    /* [key, value, {space, ctx}]: an integer stays an integer; text (or a
     * missing key) is written back as decimal text in a bin. */
    if (pack_params(o, key, NULL, 0, 0, 0, 1)) {
        rop_nomem(o);
        return;
    }
    {
        /* The value goes between the key and the opts: rebuild in order. */
        moor_buf_t opts = MOOR_BUF_INIT;
        const char *p = o->params.data, *end = p + o->params.len;
        moor_mp_skip(&p, end, 0); /* the key */
        if (moor_buf_append(&opts, p, (size_t)(end - p))) {
            moor_buf_free(&opts);
            rop_nomem(o);
            return;
        }
        o->params.len = (size_t)(p - o->params.data);
        moor_mp_packer_init(&pk, &o->params);
        n = snprintf(num, sizeof(num), "%lld", o->result);
        if ((o->as_int ? msgpack_pack_int64(&pk, o->result)
                       : (msgpack_pack_bin(&pk, (size_t)n) ||
                          msgpack_pack_bin_body(&pk, num, (size_t)n))) ||
            moor_buf_append(&o->params, opts.data, opts.len)) {
            moor_buf_free(&opts);
            rop_nomem(o);
            return;
        }
        moor_buf_free(&opts);
    }
    rop_call(o, "put", 3);
}

/* ---- PING, AUTH, INFO ------------------------------------------------------------------ */

static void ping_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (o->req->argc > 1 ? moor_resp_bulk(&o->out, o->req->argv[1].p, o->req->argv[1].len)
                         : moor_resp_status(&o->out, "PONG"))
        rop_nomem(o);
    o->finished = 1;
}

static void once_next(rop_t *o)
{
    /* PING and INFO: one call, params [] */
    const moor_resp_arg_t *a = o->req->argv;

    moor_buf_reset(&o->params);
    rop_call(o, arg_is(&a[0], "info") ? "info" : "ping", 0);
}

/* SLOWLOG GET [count] | LEN | RESET: one `slowlog` call (o->i: 0 get,
 * 1 len, 2 reset; o->by: get's count). */
static void slowlog_next(rop_t *o)
{
    static const char *const ops[] = {"get", "len", "reset"};
    msgpack_packer pk;
    int get = o->i == 0;

    moor_buf_reset(&o->params);
    moor_mp_packer_init(&pk, &o->params);
    if (msgpack_pack_map(&pk, get ? 2 : 1) || msgpack_pack_str_with_body(&pk, "op", 2) ||
        msgpack_pack_str_with_body(&pk, ops[o->i], strlen(ops[o->i])) ||
        (get && (msgpack_pack_str_with_body(&pk, "count", 5) ||
                 msgpack_pack_uint64(&pk, (uint64_t)o->by)))) {
        rop_nomem(o);
        return;
    }
    rop_call(o, "slowlog", 1);
}

/* A str field of the map at p into *s, *n ("" when absent); 0 or -1. */
static int slowlog_field_str(const char *p, const char *end, const char *name, const char **s,
                             uint32_t *n)
{
    uint32_t m, kl;
    const char *k;

    *s = "", *n = 0;
    if (moor_mp_read_map(&p, end, &m))
        return -1;
    while (m--) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return -1;
        if (kl == strlen(name) && !memcmp(k, name, kl))
            return moor_mp_read_strbin(&p, end, s, n);
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return -1;
    }
    return 0;
}

static uint64_t slowlog_field_u64(const char *p, const char *end, const char *name)
{
    uint32_t m, kl;
    const char *k;
    uint64_t v = 0;

    if (moor_mp_read_map(&p, end, &m))
        return 0;
    while (m--) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return 0;
        if (kl == strlen(name) && !memcmp(k, name, kl))
            return moor_mp_read_uint(&p, end, &v) ? 0 : v;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return 0;
    }
    return 0;
}

/* Redis's shape: [[id, unix time s, duration us, [method, key], client,
 * client name ("")], ...]. */
static int slowlog_entries(moor_buf_t *b, const char *r, size_t rlen)
{
    const char *p = r, *end = r + rlen, *s;
    uint32_t n, sl;

    if (moor_mp_read_array(&p, end, &n) || moor_resp_array(b, n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *e = p, *key;
        uint32_t klen;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) ||
            slowlog_field_str(e, end, "key", &key, &klen))
            return -1;
        if (moor_resp_array(b, 6) || moor_resp_int(b, (long long)slowlog_field_u64(e, end, "id")) ||
            moor_resp_int(b, (long long)(slowlog_field_u64(e, end, "time_ms") / 1000)) ||
            moor_resp_int(b, (long long)slowlog_field_u64(e, end, "duration_us")) ||
            moor_resp_array(b, klen ? 2 : 1) || slowlog_field_str(e, end, "method", &s, &sl) ||
            moor_resp_bulk(b, s, sl) || (klen && moor_resp_bulk(b, key, klen)) ||
            slowlog_field_str(e, end, "client", &s, &sl) || moor_resp_bulk(b, s, sl) ||
            moor_resp_bulk(b, "", 0))
            return -1;
    }
    return 0;
}

static void slowlog_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    const char *p = r;
    uint64_t v;
    int bad;

    o->finished = 1;
    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (o->i == 2)
        bad = moor_resp_status(&o->out, "OK");
    else if (o->i == 1)
        bad = moor_mp_read_uint(&p, r + rlen, &v) || moor_resp_int(&o->out, (long long)v);
    else
        bad = slowlog_entries(&o->out, r, rlen);
    if (bad) {
        o->out.len = 0;
        moor_resp_error(&o->out, "ERR the node answered slowlog in an unexpected shape");
    }
}

/* SLOWLOG's subcommand into o: 0, or an error reply in o->out. */
static int slowlog_setup(rop_t *o)
{
    const moor_srv_req_t *req = o->req;
    const moor_resp_arg_t *a = req->argv;
    long long count = 10;

    o->next = slowlog_next, o->got = slowlog_got;
    if (arg_is(&a[1], "get") && req->argc <= 3) {
        if (req->argc == 3 && (parse_ll(a[2].p, a[2].len, &count) || count < -1)) {
            moor_resp_error(&o->out, "ERR count should be greater than or equal to -1");
            return -1;
        }
        o->i = 0;
        o->by = count < 0 || count > 1000000 ? 1000000 : count; /* -1: all */
    } else if (arg_is(&a[1], "len") && req->argc == 2) {
        o->i = 1;
    } else if (arg_is(&a[1], "reset") && req->argc == 2) {
        o->i = 2;
    } else {
        moor_resp_error(&o->out, "ERR unknown subcommand or wrong number of arguments for "
                                 "'slowlog': try SLOWLOG GET [count], LEN or RESET");
        return -1;
    }
    return 0;
}

/* HELLO's answer: the RESP2 form of its map, a flat array. */
static int hello_reply(moor_buf_t *b, const moor_srv_req_t *req)
{
    return moor_resp_array(b, 14) || moor_resp_bulk(b, "server", 6) ||
           moor_resp_bulk(b, "moor", 4) || moor_resp_bulk(b, "version", 7) ||
           moor_resp_bulk(b, "7.0.0", 5) || moor_resp_bulk(b, "proto", 5) || moor_resp_int(b, 2) ||
           moor_resp_bulk(b, "id", 2) ||
           moor_resp_int(b, (long long)((uintptr_t)req->conn % 1000000007)) ||
           moor_resp_bulk(b, "mode", 4) || moor_resp_bulk(b, "standalone", 10) ||
           moor_resp_bulk(b, "role", 4) || moor_resp_bulk(b, "master", 6) ||
           moor_resp_bulk(b, "modules", 7) || moor_resp_array(b, 0);
}

static void auth_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    moor_srv_conn_set_authed(o->req->conn, o->authed);
    if (ec && strcmp(ec, "NOAUTH") == 0)
        moor_resp_error(&o->out, "WRONGPASS invalid username-password pair or user is disabled.");
    else if (ec)
        rop_fail(o, ec, em);
    else if (arg_is(&o->req->argv[0], "hello") ? hello_reply(&o->out, o->req)
                                               : moor_resp_status(&o->out, "OK"))
        rop_nomem(o);
    o->finished = 1;
}

/* AUTH pass | AUTH user pass | HELLO 2 AUTH user pass: auth(pass). */
static void auth_next(rop_t *o)
{
    const moor_resp_arg_t *pass = &o->req->argv[o->i];
    msgpack_packer pk;

    moor_buf_reset(&o->params);
    moor_mp_packer_init(&pk, &o->params);
    if (msgpack_pack_str(&pk, pass->len) || msgpack_pack_str_body(&pk, pass->p, pass->len)) {
        rop_nomem(o);
        return;
    }
    rop_call(o, "auth", 1);
}

static void info_got(rop_t *o, const char *ec, const char *em, const char *r, size_t rlen)
{
    moor_respd_t *d = o->d;
    moor_buf_t txt = MOOR_BUF_INIT;
    moor_resp_info_t in;
    char want[64] = "";

    memset(&in, 0, sizeof(in));
    o->finished = 1;
    if (ec) {
        rop_fail(o, ec, em);
        return;
    }
    if (o->req->argc > 1)
        lower_name(want, sizeof(want), &o->req->argv[1]);
    if (d->srv)
        moor_srv_stats(d->srv, &in.stats);
    in.port = d->port;
    in.ndbs = d->ndbs;
    in.dbs = (const char(*)[256])d->dbs;
    if (moor_resp_info_text(&txt, want, r, rlen, &in)) {
        moor_buf_free(&txt);
        moor_resp_error(&o->out, "ERR the node answered info in an unexpected shape");
        return;
    }
    if (moor_resp_bulk(&o->out, txt.data ? txt.data : "", txt.len))
        rop_nomem(o);
    moor_buf_free(&txt);
}

/* ---- the table ------------------------------------------------------------------------ */

typedef struct cmd {
    const char *name;
    int arity;             /* Redis style: n exactly, -n at least n */
    const char *flags;     /* for COMMAND: space-separated */
    int first, last, step; /* key positions, for COMMAND */
    const char *group, *summary;
} cmd_t;

static const cmd_t CMDS[] = {
    {"get", 2, "readonly fast", 1, 1, 1, "string", "Returns the value of a key."},
    {"set", -3, "write denyoom", 1, 1, 1, "string",
     "Sets the value of a key (overwrites); NX/XX, EX/PX/EXAT/PXAT (expiry) supported."},
    {"setex", 4, "write denyoom", 1, 1, 1, "string",
     "Sets the value of a key that expires in n seconds."},
    {"psetex", 4, "write denyoom", 1, 1, 1, "string",
     "Sets the value of a key that expires in n milliseconds."},
    {"ttl", 2, "readonly fast", 1, 1, 1, "keyspace",
     "Seconds until a key expires (-1: never, -2: no such key)."},
    {"pttl", 2, "readonly fast", 1, 1, 1, "keyspace",
     "Milliseconds until a key expires (-1: never, -2: no such key)."},
    {"del", -2, "write", 1, -1, 1, "keyspace", "Deletes keys; answers how many existed."},
    {"exists", -2, "readonly fast", 1, -1, 1, "keyspace", "Counts the keys that exist."},
    {"mget", -2, "readonly fast", 1, -1, 1, "string", "Returns the values of keys."},
    {"mset", -3, "write denyoom", 1, -1, 2, "string", "Sets the values of keys."},
    {"incr", 2, "write denyoom fast", 1, 1, 1, "string", "Adds 1 to the number at a key."},
    {"incrby", 3, "write denyoom fast", 1, 1, 1, "string", "Adds n to the number at a key."},
    {"decr", 2, "write denyoom fast", 1, 1, 1, "string", "Subtracts 1 from the number at a key."},
    {"decrby", 3, "write denyoom fast", 1, 1, 1, "string", "Subtracts n from the number at a key."},
    {"ping", -1, "fast", 0, 0, 0, "connection", "Answers PONG (or the message)."},
    {"echo", 2, "fast", 0, 0, 0, "connection", "Answers the message."},
    {"quit", -1, "fast", 0, 0, 0, "connection", "Closes the connection."},
    {"auth", -2, "noscript loading stale fast", 0, 0, 0, "connection",
     "Authenticates with the node's auth_token."},
    {"hello", -1, "noscript loading stale fast", 0, 0, 0, "connection", "Handshake (RESP2 only)."},
    {"select", 2, "loading stale fast", 0, 0, 0, "connection",
     "Selects a database (a keyspace of resp_databases)."},
    {"info", -1, "loading stale", 0, 0, 0, "server", "The node's figures, Redis-style."},
    {"command", -1, "loading stale", 0, 0, 0, "server", "Describes the commands."},
    {"config", -2, "admin loading stale", 0, 0, 0, "server", "CONFIG GET of a few parameters."},
    {"slowlog", -2, "admin random loading stale", 0, 0, 0, "server",
     "SLOWLOG GET [count] / LEN / RESET: the node's slow-request log."},
};
#define NCMDS (sizeof(CMDS) / sizeof(CMDS[0]))

static const cmd_t *cmd_find(const moor_resp_arg_t *a)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (arg_is(a, CMDS[i].name))
            return &CMDS[i];
    return NULL;
}

static int cmd_info_entry(moor_buf_t *b, const cmd_t *c)
{
    char flags[64], *tok, *save = NULL;
    int nf = 0;

    snprintf(flags, sizeof(flags), "%s", c->flags);
    for (const char *q = c->flags; *q; q++)
        nf += (q == c->flags || q[-1] == ' ') && *q != ' ';
    if (moor_resp_array(b, 6) || moor_resp_bulk(b, c->name, strlen(c->name)) ||
        moor_resp_int(b, c->arity) || moor_resp_array(b, nf))
        return -1;
    for (tok = strtok_r(flags, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        if (moor_resp_status(b, tok))
            return -1;
    return moor_resp_int(b, c->first) || moor_resp_int(b, c->last) || moor_resp_int(b, c->step);
}

static int cmd_docs_entry(moor_buf_t *b, const cmd_t *c)
{
    return moor_resp_bulk(b, c->name, strlen(c->name)) || moor_resp_array(b, 4) ||
           moor_resp_bulk(b, "summary", 7) || moor_resp_bulk(b, c->summary, strlen(c->summary)) ||
           moor_resp_bulk(b, "group", 5) || moor_resp_bulk(b, c->group, strlen(c->group));
}

/* COMMAND, COMMAND COUNT / INFO / DOCS / LIST. */
static int do_command(moor_buf_t *b, const moor_srv_req_t *req)
{
    const moor_resp_arg_t *a = req->argv;
    uint32_t argc = req->argc;

    if (argc == 1) {
        if (moor_resp_array(b, (long long)NCMDS))
            return -1;
        for (size_t i = 0; i < NCMDS; i++)
            if (cmd_info_entry(b, &CMDS[i]))
                return -1;
        return 0;
    }
    if (arg_is(&a[1], "count"))
        return moor_resp_int(b, (long long)NCMDS);
    if (arg_is(&a[1], "list")) {
        if (moor_resp_array(b, (long long)NCMDS))
            return -1;
        for (size_t i = 0; i < NCMDS; i++)
            if (moor_resp_bulk(b, CMDS[i].name, strlen(CMDS[i].name)))
                return -1;
        return 0;
    }
    if (arg_is(&a[1], "info")) {
        if (moor_resp_array(b, argc - 2))
            return -1;
        for (uint32_t i = 2; i < argc; i++) {
            const cmd_t *c = cmd_find(&a[i]);
            if (c ? cmd_info_entry(b, c) : moor_resp_null(b))
                return -1;
        }
        return 0;
    }
    if (arg_is(&a[1], "docs")) {
        uint32_t n = 0;
        if (argc == 2)
            n = (uint32_t)NCMDS;
        else
            for (uint32_t i = 2; i < argc; i++)
                n += cmd_find(&a[i]) != NULL;
        if (moor_resp_array(b, 2LL * n))
            return -1;
        for (size_t i = 0; i < NCMDS; i++) {
            int asked = argc == 2;
            for (uint32_t j = 2; j < argc && !asked; j++)
                asked = arg_is(&a[j], CMDS[i].name);
            if (asked && cmd_docs_entry(b, &CMDS[i]))
                return -1;
        }
        return 0;
    }
    {
        char sub[140];
        shown(sub, sizeof(sub), &a[1]);
        return moor_resp_errorf(b, "ERR unknown subcommand '%s'. Try COMMAND HELP.", sub);
    }
}

/* Glob of CONFIG GET: '*' and '?', case-insensitive. */
static int glob_match(const char *pat, size_t pl, const char *s)
{
    if (pl == 0)
        return *s == 0;
    if (*pat == '*') {
        for (const char *q = s;; q++) {
            if (glob_match(pat + 1, pl - 1, q))
                return 1;
            if (!*q)
                return 0;
        }
    }
    if (!*s)
        return 0;
    if (*pat != '?' && tolower((unsigned char)*pat) != tolower((unsigned char)*s))
        return 0;
    return glob_match(pat + 1, pl - 1, s + 1);
}

/* CONFIG GET pattern...: the few parameters clients look at. */
static int do_config(moor_respd_t *d, moor_buf_t *b, const moor_srv_req_t *req)
{
    char dbs[16];
    const char *params[][2] = {{"save", ""},
                               {"appendonly", "no"},
                               {"databases", dbs},
                               {"maxmemory", "0"},
                               {"maxmemory-policy", "noeviction"}};
    size_t np = sizeof(params) / sizeof(params[0]);
    int hit[sizeof(params) / sizeof(params[0])] = {0}, nhit = 0;

    if (!arg_is(&req->argv[1], "get"))
        return moor_resp_error(b, "ERR only CONFIG GET is supported: Moor is configured by its "
                                  "moor.cfg file");
    if (req->argc < 3)
        return moor_resp_error(b, "ERR wrong number of arguments for 'config|get' command");
    snprintf(dbs, sizeof(dbs), "%u", d->ndbs);
    for (size_t i = 0; i < np; i++)
        for (uint32_t j = 2; j < req->argc && !hit[i]; j++)
            if (req->argv[j].len < 128 &&
                glob_match(req->argv[j].p, req->argv[j].len, params[i][0]))
                hit[i] = 1, nhit++;
    if (moor_resp_array(b, 2LL * nhit))
        return -1;
    for (size_t i = 0; i < np; i++)
        if (hit[i] && (moor_resp_bulk(b, params[i][0], strlen(params[i][0])) ||
                       moor_resp_bulk(b, params[i][1], strlen(params[i][1]))))
            return -1;
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static void reply_now(moor_srv_req_t *req, moor_buf_t *b)
{
    if (b->len == 0)
        moor_resp_error(b, "ERR out of memory");
    moor_srv_reply_resp(req, b->data, b->len);
    moor_buf_free(b);
}

/* An expiry argument of cmd (SET's EX/PX/EXAT/PXAT, SETEX's seconds,
 * PSETEX's ms) as the put's ttl_ms: ms (0) or seconds (1) from now, or an
 * absolute Unix time in ms (2) or seconds (3), which counts from this
 * node's clock (a time already past leaves 1 ms).  0, or an error reply
 * appended to b. */
static int expiry_arg(const moor_resp_arg_t *a, int unit, const char *cmd, moor_buf_t *b,
                      uint64_t *ttl_ms)
{
    long long v;
    uint64_t ms, now;

    if (parse_ll(a->p, a->len, &v)) {
        moor_resp_error(b, "ERR value is not an integer or out of range");
        return -1;
    }
    if (v <= 0 || (uint64_t)v > ((unit & 1) ? MOOR_COORD_TTL_MAX / 1000 : UINT64_MAX / 2))
        goto invalid;
    ms = (unit & 1) ? (uint64_t)v * 1000 : (uint64_t)v;
    if (unit >= 2) {
        now = moor_clock_wall_ms();
        ms = ms > now ? ms - now : 1;
    }
    if (ms > MOOR_COORD_TTL_MAX)
        goto invalid;
    *ttl_ms = ms;
    return 0;
invalid:
    moor_resp_errorf(b, "ERR invalid expire time in '%s' command", cmd);
    return -1;
}

/* SET's options: 0, or an error reply appended to b. */
static int set_options(const moor_srv_req_t *req, moor_buf_t *b, int *nx, int *xx, uint64_t *ttl_ms)
{
    static const char *const units[] = {"px", "ex", "pxat", "exat"};
    int has_exp = 0;

    for (uint32_t i = 3; i < req->argc; i++) {
        const moor_resp_arg_t *a = &req->argv[i];
        int unit = -1;
        for (int u = 0; u < 4; u++)
            if (arg_is(a, units[u]))
                unit = u;
        if (arg_is(a, "nx")) {
            *nx = 1;
        } else if (arg_is(a, "xx")) {
            *xx = 1;
        } else if (unit >= 0 && !has_exp && i + 1 < req->argc) {
            if (expiry_arg(&req->argv[++i], unit, "set", b, ttl_ms))
                return -1;
            has_exp = 1;
        } else if (arg_is(a, "keepttl")) {
            moor_resp_error(b, "ERR KEEPTTL is not supported (a SET without an expiry stores a "
                               "value that does not expire)");
            return -1;
        } else {
            moor_resp_error(b, "ERR syntax error");
            return -1;
        }
    }
    if (*nx && *xx) {
        moor_resp_error(b, "ERR syntax error");
        return -1;
    }
    return 0;
}

/* Commands answered here, without a node call.  1 if answered. */
static int local_command(moor_respd_t *d, moor_srv_req_t *req, const cmd_t *c, moor_buf_t *b)
{
    const moor_resp_arg_t *a = req->argv;
    long long v;

    if (strcmp(c->name, "echo") == 0) {
        moor_resp_bulk(b, a[1].p, a[1].len);
    } else if (strcmp(c->name, "quit") == 0) {
        moor_resp_status(b, "OK");
        moor_srv_conn_end(req->conn, NULL);
    } else if (strcmp(c->name, "select") == 0) {
        if (parse_ll(a[1].p, a[1].len, &v))
            moor_resp_error(b, "ERR value is not an integer or out of range");
        else if (v < 0 || v >= (long long)d->ndbs)
            moor_resp_errorf(b, "ERR DB index is out of range (resp_databases maps 0..%u)",
                             d->ndbs - 1);
        else {
            moor_srv_conn_set_app(req->conn, (unsigned)v);
            moor_resp_status(b, "OK");
        }
    } else if (strcmp(c->name, "command") == 0) {
        if (do_command(b, req))
            b->len = 0;
    } else if (strcmp(c->name, "config") == 0) {
        if (do_config(d, b, req))
            b->len = 0;
    } else {
        return 0;
    }
    return 1;
}

static int authed(moor_respd_t *d, const moor_srv_req_t *req)
{
    return !d->need_auth || (moor_srv_conn_authed(req->conn) & MOOR_NODE_AUTH_CLIENT);
}

/* HELLO [2|3 [AUTH user pass] [SETNAME name]]: 1 when answered here. */
static int hello_check(moor_respd_t *d, moor_srv_req_t *req, moor_buf_t *b, uint32_t *auth_at)
{
    const moor_resp_arg_t *a = req->argv;
    long long v;

    *auth_at = 0;
    if (req->argc > 1) {
        if (parse_ll(a[1].p, a[1].len, &v)) {
            moor_resp_error(b, "ERR Protocol version is not an integer or out of range");
            return 1;
        }
        if (v != 2) {
            moor_resp_errorf(b,
                             "NOPROTO unsupported protocol version %lld: this port speaks "
                             "RESP2 only (RESP3 is not implemented)",
                             v);
            return 1;
        }
    }
    for (uint32_t i = 2; i < req->argc; i++) {
        if (arg_is(&a[i], "auth") && i + 2 < req->argc) {
            *auth_at = i + 2;
            i += 2;
        } else if (arg_is(&a[i], "setname") && i + 1 < req->argc) {
            i++;
        } else {
            char s[140];
            shown(s, sizeof(s), &a[i]);
            moor_resp_errorf(b, "ERR Syntax error in HELLO option '%s'", s);
            return 1;
        }
    }
    if (*auth_at)
        return 0;
    if (!authed(d, req)) {
        moor_resp_error(b, "NOAUTH HELLO must be called with the client already authenticated, "
                           "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                           "authenticate the client and select the RESP protocol version at the "
                           "same time");
        return 1;
    }
    return 0;
}

static void unknown(moor_buf_t *b, const moor_srv_req_t *req)
{
    char name[140], args[300] = "", one[40];
    size_t used = 0;

    shown(name, sizeof(name), &req->argv[0]);
    for (uint32_t i = 1; i < req->argc && i < 4 && used + 40 < sizeof(args); i++) {
        moor_resp_arg_t a = req->argv[i];
        if (a.len > 32)
            a.len = 32;
        shown(one, sizeof(one), &a);
        used += (size_t)snprintf(args + used, sizeof(args) - used, "'%s' ", one);
    }
    moor_resp_errorf(b, "ERR unknown command '%s', with args beginning with: %s", name, args);
}

/* Sets o's steps for a command that calls the node; a bad argument
 * leaves its error reply in o->out with o->finished set. */
static void setup_op(rop_t *o, const cmd_t *c)
{
    const moor_srv_req_t *req = o->req;
    const char *n = c->name;
    long long by = 1;

    o->i = 1;
    if ((strcmp(n, "mget") == 0 || strcmp(n, "exists") == 0) && req->argc > 2 &&
        par_setup(o, n[0] == 'm') == 0)
        return;
    if (strcmp(n, "get") == 0 || strcmp(n, "mget") == 0) {
        o->next = get_next, o->got = get_got;
        if (n[0] == 'm' && moor_resp_array(&o->out, req->argc - 1))
            rop_nomem(o);
    } else if (strcmp(n, "exists") == 0) {
        o->next = exists_next, o->got = exists_got;
    } else if (strcmp(n, "del") == 0) {
        o->next = del_next, o->got = del_got;
    } else if (strcmp(n, "mset") == 0) {
        o->next = mset_next, o->got = ok_got;
        if (req->argc % 2 == 0) {
            moor_resp_error(&o->out, "ERR wrong number of arguments for 'mset' command");
            o->finished = 1;
        }
    } else if (strcmp(n, "set") == 0) {
        int nx = 0, xx = 0;
        if (set_options(req, &o->out, &nx, &xx, &o->ttl_ms)) {
            o->finished = 1;
            return;
        }
        o->nx = (unsigned)nx, o->xx = (unsigned)xx;
        if (nx || xx)
            o->next = setcond_next, o->got = setcond_got;
        else
            o->next = mset_next, o->got = ok_got;
    } else if (strcmp(n, "setex") == 0 || strcmp(n, "psetex") == 0) {
        if (expiry_arg(&req->argv[2], n[0] == 's', n, &o->out, &o->ttl_ms)) {
            o->finished = 1;
            return;
        }
        o->next = setex_next, o->got = ok_got;
    } else if (strcmp(n, "ttl") == 0 || strcmp(n, "pttl") == 0) {
        o->next = get_next, o->got = ttl_got;
    } else if (strncmp(n, "incr", 4) == 0 || strncmp(n, "decr", 4) == 0) {
        if (req->argc == 3 && parse_ll(req->argv[2].p, req->argv[2].len, &by)) {
            moor_resp_error(&o->out, "ERR value is not an integer or out of range");
            o->finished = 1;
            return;
        }
        if (n[0] == 'd') {
            if (by == INT64_MIN) {
                moor_resp_error(&o->out, "ERR decrement would overflow");
                o->finished = 1;
                return;
            }
            by = -by;
        }
        o->by = by;
        o->next = incr_next, o->got = incr_got;
    } else if (strcmp(n, "ping") == 0) {
        o->next = once_next, o->got = ping_got;
    } else if (strcmp(n, "info") == 0) {
        o->next = once_next, o->got = info_got;
    } else if (strcmp(n, "slowlog") == 0) {
        if (slowlog_setup(o))
            o->finished = 1;
    } else { /* auth, hello with AUTH */
        o->next = auth_next, o->got = auth_got;
        o->i = strcmp(n, "auth") == 0 ? req->argc - 1 : o->i;
    }
}

/* The load figures' kind of a command. */
static int load_kind(const char *name)
{
    if (!strcmp(name, "get") || !strcmp(name, "mget") || !strcmp(name, "exists") ||
        !strcmp(name, "ttl") || !strcmp(name, "pttl"))
        return MOOR_LS_GET;
    if (!strcmp(name, "del"))
        return MOOR_LS_DEL;
    if (!strcmp(name, "set") || !strcmp(name, "mset") || !strcmp(name, "setex") ||
        !strcmp(name, "psetex") || !strncmp(name, "incr", 4) || !strncmp(name, "decr", 4))
        return MOOR_LS_PUT;
    return MOOR_LS_OTHER;
}

void moor_respd_dispatch(void *ud, moor_srv_req_t *req)
{
    moor_respd_t *d = ud;
    moor_buf_t b = MOOR_BUF_INIT;
    const cmd_t *c = cmd_find(&req->argv[0]);
    uint32_t auth_at = 0;
    rop_t *o;

    if (!c) {
        unknown(&b, req);
        reply_now(req, &b);
        return;
    }
    if ((c->arity > 0 && req->argc != (uint32_t)c->arity) ||
        (c->arity < 0 && req->argc < (uint32_t)-c->arity) ||
        (strcmp(c->name, "auth") == 0 && req->argc > 3)) {
        moor_resp_errorf(&b, "ERR wrong number of arguments for '%s' command", c->name);
        reply_now(req, &b);
        return;
    }
    if (strcmp(c->name, "hello") == 0) {
        if (hello_check(d, req, &b, &auth_at)) {
            reply_now(req, &b);
            return;
        }
        if (!auth_at) {
            if (hello_reply(&b, req))
                b.len = 0;
            reply_now(req, &b);
            return;
        }
    } else if (strcmp(c->name, "auth") && strcmp(c->name, "quit") && !authed(d, req)) {
        moor_resp_error(&b, "NOAUTH Authentication required.");
        reply_now(req, &b);
        return;
    }
    if (local_command(d, req, c, &b)) {
        reply_now(req, &b);
        return;
    }
    if (!(o = rop_new(d, req))) {
        moor_resp_error(&b, "ERR out of memory");
        reply_now(req, &b);
        return;
    }
    o->t0_ns = uv_hrtime();
    o->kind = load_kind(c->name);
    setup_op(o, c);
    if (auth_at)
        o->i = auth_at;
    rop_run(o);
}

int moor_respd_class(void *ud, const moor_srv_req_t *req)
{
    const moor_resp_arg_t *a = req->argv;

    (void)ud;
    if (arg_is(&a[0], "get") || arg_is(&a[0], "mget") || arg_is(&a[0], "exists") ||
        arg_is(&a[0], "ttl") || arg_is(&a[0], "pttl"))
        return MOOR_SRV_RESP_READ;
    if (arg_is(&a[0], "mset") || arg_is(&a[0], "setex") || arg_is(&a[0], "psetex"))
        return MOOR_SRV_RESP_WRITE;
    if (arg_is(&a[0], "set")) {
        for (uint32_t i = 3; i < req->argc; i++)
            if (arg_is(&a[i], "nx") || arg_is(&a[i], "xx"))
                return MOOR_SRV_RESP_ALONE;
        return MOOR_SRV_RESP_WRITE;
    }
    if (arg_is(&a[0], "incr") || arg_is(&a[0], "incrby") || arg_is(&a[0], "decr") ||
        arg_is(&a[0], "decrby") || arg_is(&a[0], "del"))
        return MOOR_SRV_RESP_ALONE;
    return MOOR_SRV_RESP_FREE;
}

/* ---- lifetime ------------------------------------------------------------------------------- */

static int space_declared(const moor_config_t *cfg, const char *name)
{
    if (strcmp(name, "default") == 0)
        return 1;
    for (unsigned i = 0; i < cfg->nspaces; i++)
        if (strcmp(cfg->spaces[i].name, name) == 0)
            return 1;
    return 0;
}

int moor_respd_new(const moor_config_t *cfg, moor_respd_t **out)
{
    moor_respd_t *d = calloc(1, sizeof(*d));
    unsigned ndbs = cfg->resp_ndbs ? cfg->resp_ndbs : 1;

    if (!d || !(d->dbs = calloc(ndbs, sizeof(*d->dbs)))) {
        free(d);
        return moor_diag(MOOR_ENOMEM, "out of memory for the RESP commands");
    }
    d->need_auth = cfg->auth_token[0] != 0;
    d->port = cfg->resp_port;
    d->ndbs = ndbs;
    if (!cfg->resp_ndbs)
        snprintf(d->dbs[0], RESP_DB_NAME_MAX, "default");
    for (unsigned i = 0; i < cfg->resp_ndbs; i++) {
        if (!space_declared(cfg, cfg->resp_dbs[i])) {
            int rc = moor_diag(MOOR_EINVAL,
                               "config: resp_databases[%u] names keyspace '%s', which is not "
                               "declared (moor.space)",
                               i + 1, cfg->resp_dbs[i]);
            moor_respd_free(d);
            return rc;
        }
        snprintf(d->dbs[i], RESP_DB_NAME_MAX, "%s", cfg->resp_dbs[i]);
    }
    *out = d;
    return 0;
}

void moor_respd_set_node(moor_respd_t *d, moor_node_t *n)
{
    d->node = n;
}

void moor_respd_set_server(moor_respd_t *d, moor_srv_t *s)
{
    d->srv = s;
    d->port = moor_srv_port(s);
}

void moor_respd_free(moor_respd_t *d)
{
    if (!d)
        return;
    while (d->spare) {
        rop_t *o = d->spare;
        d->spare = o->next_spare;
        moor_buf_free(&o->out);
        moor_buf_free(&o->params);
        moor_buf_free(&o->ctx);
        free(o);
    }
    free(d->dbs);
    free(d);
}
