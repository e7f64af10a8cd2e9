/*
 * coord_replica.c -- the replica side: the peer methods `_get`, `_put`
 * and `_coord` a node answers for the others, and local_merge, the one way
 * a record reaches this node's store (merged with what is there, so a
 * descendant replaces and concurrent versions become siblings).
 *
 * Requests from peers are untrusted bytes: every field is checked (the
 * space and key through opts.check_key, a record's clock against the same
 * bounds as a client's ctx) before anything is stored.
 */
#include "coord_internal.h"

/* Merges the record rec into the local store's record of key and queues
 * the result; done follows (0) or not (an error: MOOR_ECORRUPT for a
 * stored record that does not decode, MOOR_EINVAL for rec, the store's). */
int local_merge(moor_coord_t *c, const char *key, size_t klen, const char *rec, size_t rlen,
                moor_store_done_fn done, void *arg)
{
    moor_buf_t cur = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    int rc;

    if (moor_record_decode(rec, rlen, c->rb)) {
        rc = moor_diag_wrap(MOOR_EINVAL, moor_diag_last()->code, "record to merge");
        goto out;
    }
    rc = c->store.get(c->store.ud, key, klen, &cur);
    if (rc == MOOR_ENOTFOUND) {
        rc = moor_record_merge(c->rb, c->rb, &out); /* the canonical form */
    } else if (rc == 0) {
        if ((rc = moor_record_decode(cur.data, cur.len, c->ra)))
            goto out;
        rc = moor_record_merge(c->ra, c->rb, &out);
    }
    if (rc == 0)
        rc = c->store.put(c->store.ud, key, klen, out.data, out.len, done, arg);
out:
    moor_buf_free(&cur);
    moor_buf_free(&out);
    return rc;
}

/* ---- replica side ------------------------------------------------------------------- */

/* space and key, the first two params; 0, or -1 with the reason in *why. */
/* Reads the space and key of a peer request and asks the node whether it
 * serves them (opts.check_key: a declared space, a key within limits).
 * 0, or -1 with *why saying what is wrong. */
static int read_space_key(moor_coord_t *c, const char **p, const char *end, const char **space,
                          uint32_t *slen, const char **key, uint32_t *klen, const char **why)
{
    if (moor_mp_read_strbin(p, end, space, slen) || *slen > MOOR_SPACE_MAX) {
        *why = "space must be a str of at most 255 bytes";
        return -1;
    }
    if (moor_mp_read_strbin(p, end, key, klen)) {
        *why = "key must be a str or bin";
        return -1;
    }
    if (c->check_key && c->check_key(c->check_ud, *space, *slen, *key, *klen)) {
        *why = moor_diag_last()->msg;
        return -1;
    }
    return 0;
}

/* A record a peer sent (_put): whatever the connection, its clock is
 * bounded like a client's ctx, and it holds at least one sibling.  0 or
 * MOOR_EBADCTX / MOOR_EINVAL with a diagnostic.  Answers to this node's
 * own _get are not held to it: a record stored before clocks were bounded
 * must stay readable. */
static int peer_record_check(moor_coord_t *c, const moor_record_t *r)
{
    int rc = moor_vclock_check_bounds(&r->vc, c->clock.now_ms(c->clock.ud), "record");

    if (rc)
        return rc;
    return r->n ? 0 : moor_diag(MOOR_EINVAL, "record: no siblings");
}

static void peer_get(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
                     moor_coord_done_fn done, void *arg)
{
    const char *p = params, *end = params + plen, *space, *key, *why = NULL;
    uint32_t slen, klen;
    moor_buf_t ekey = MOOR_BUF_INIT, cur = MOOR_BUF_INIT, res = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc;

    if (nparams != 2)
        why = "expected 2 params";
    else if (read_space_key(c, &p, end, &space, &slen, &key, &klen, &why) == 0 && p != end)
        why = "bytes after the params";
    if (why) {
        answer_fmt(done, arg, MOOR_EINVAL, "_get(space, key): %s", why);
        return;
    }
    if ((rc = moor_record_key(space, slen, key, klen, &ekey)))
        goto fail;
    rc = c->store.get(c->store.ud, ekey.data, ekey.len, &cur);
    if (rc == MOOR_ENOTFOUND) {
        done(arg, 0, NULL, nil_mp, 1);
        goto out;
    }
    if (rc)
        goto fail;
    moor_mp_packer_init(&pk, &res);
    if (msgpack_pack_bin_with_body(&pk, cur.data, cur.len)) {
        rc = MOOR_ENOMEM;
        goto fail;
    }
    done(arg, 0, NULL, res.data, res.len);
    goto out;
fail:
    answer_fmt(done, arg, rc, "%s", moor_diag_msg(rc));
out:
    moor_buf_free(&ekey);
    moor_buf_free(&cur);
    moor_buf_free(&res);
}

static void peer_put_done(void *arg, int status)
{
    op_t *op = arg;

    if (op->c) {
        if (status == 0)
            op_answer(op, 0, NULL, true_mp, 1);
        else
            op_fail(op, status, "local write: %s", moor_diag_msg(status));
    }
    op_unref(op);
}

static void peer_put(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
                     moor_coord_done_fn done, void *arg)
{
    const char *p = params, *end = params + plen, *space, *key, *rec, *why = NULL;
    uint32_t slen, klen, rlen;
    op_t *op;
    int rc;

    if (nparams != 3)
        why = "expected 3 params";
    else if (read_space_key(c, &p, end, &space, &slen, &key, &klen, &why) == 0 &&
             moor_mp_read_bin(&p, end, &rec, &rlen))
        why = "record must be a bin";
    else if (!why && p != end)
        why = "bytes after the params";
    if (why) {
        answer_fmt(done, arg, MOOR_EINVAL, "_put(space, key, record): %s", why);
        return;
    }
    if (moor_record_decode(rec, rlen, c->rb) || peer_record_check(c, c->rb)) {
        answer_fmt(done, arg, MOOR_EINVAL, "_put: %s", moor_diag_last()->msg);
        return;
    }
    if (!(op = op_new(c, OP_PEER_PUT, 0))) {
        answer_fmt(done, arg, MOOR_ENOMEM, "no memory for a write");
        return;
    }
    op_set_done(op, done, arg);
    if ((rc = op_set_key(op, space, slen, key, klen)) == 0) {
        op->refs++;
        rc = local_merge(c, op->ekey.data, op->ekey.len, rec, rlen, peer_put_done, op);
        if (rc)
            op->refs--;
    }
    if (rc)
        op_fail(op, rc, "local write: %s", moor_diag_msg(rc));
    op_unref(op);
}

#define STR_(x) #x
#define STR(x) STR_(x)
#define N_MAX_STR STR(MOOR_COORD_N_MAX)

/* The params of _coord(op, space, key, value|nil, ctx|nil, n, w,
 * timeout_ms) into req (borrowing from params) and *tombstone; NULL, or
 * what is wrong. */
static const char *parse_coord(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
                               moor_coord_req_t *req, int *tombstone)
{
    const char *p = params, *end = params + plen, *opn, *v, *vend, *q, *why = NULL;
    uint32_t olen, slen, klen, clen = 0;
    uint64_t n, w, tmo;

    if (nparams != 8)
        return "expected 8 params";
    if (moor_mp_read_str(&p, end, &opn, &olen) || olen != 3 ||
        (memcmp(opn, "put", 3) != 0 && memcmp(opn, "del", 3) != 0))
        return "op must be \"put\" or \"del\"";
    *tombstone = opn[0] == 'd';
    if (read_space_key(c, &p, end, &req->space, &slen, &req->key, &klen, &why))
        return why;
    v = q = p;
    if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) || !moor_record_value_ok(v, (size_t)(p - v)))
        return "value must be one MessagePack object nested at most 61 deep";
    vend = p;
    if (*tombstone && (moor_mp_read_nil(&q, vend) || q != vend))
        return "del takes a nil value";
    if (moor_mp_read_nil(&p, end) && moor_mp_read_bin(&p, end, &req->ctx, &clen))
        return "ctx must be a bin or nil";
    if (moor_mp_read_uint(&p, end, &n) || moor_mp_read_uint(&p, end, &w) ||
        moor_mp_read_uint(&p, end, &tmo) || n > MOOR_COORD_N_MAX || w > n || tmo > UINT32_MAX)
        return "n, w, timeout_ms must be unsigned, w <= n <= " N_MAX_STR;
    if (p != end)
        return "bytes after the params";
    req->slen = slen, req->klen = klen, req->ctxlen = clen;
    req->value = *tombstone ? NULL : v;
    req->vlen = *tombstone ? 0 : (size_t)(vend - v);
    req->n = (uint32_t)n, req->w = (uint32_t)w, req->timeout_ms = (uint32_t)tmo;
    return NULL;
}

/* A write a non-replica coordinator forwarded: coordinated here, answered
 * like the client call ({ctx} or true, or the error). */
static void peer_coord(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
                       moor_coord_done_fn done, void *arg)
{
    moor_coord_req_t req;
    const char *why;
    int tombstone = 0;

    memset(&req, 0, sizeof(req));
    if ((why = parse_coord(c, params, plen, nparams, &req, &tombstone))) {
        answer_fmt(done, arg, MOOR_EINVAL,
                   "_coord(op, space, key, value, ctx, n, w, timeout_ms): %s", why);
        return;
    }
    write_call(c, &req, tombstone, 1, done, arg);
}

void moor_coord_handle_peer(moor_coord_t *c, const char *method, size_t mlen, const char *params,
                            size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    if (!params)
        plen = 0, params = "";
    if (mlen == 4 && memcmp(method, "_get", 4) == 0)
        peer_get(c, params, plen, nparams, done, arg);
    else if (mlen == 4 && memcmp(method, "_put", 4) == 0)
        peer_put(c, params, plen, nparams, done, arg);
    else if (mlen == 6 && memcmp(method, "_coord", 6) == 0)
        peer_coord(c, params, plen, nparams, done, arg);
    else
        answer_fmt(done, arg, MOOR_ENOMETHOD, "no peer method '%.*s'", (int)(mlen > 64 ? 64 : mlen),
                   method);
}
