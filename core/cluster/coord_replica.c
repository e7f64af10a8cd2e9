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
#include "fields.h"

/* Merges the record rec into the local store's record of key and queues
 * the result; done follows (0) or not (an error: MOOR_ECORRUPT for a
 * stored record that does not decode, MOOR_EINVAL for rec, the store's). */
int local_merge(moor_coord_t *c, const char *key, size_t klen, const char *rec, size_t rlen,
                moor_store_done_fn done, void *arg)
{
    moor_buf_t cur = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    uint32_t dropped = 0;
    int rc;

    /* Both sides expired first: a merge writes what was an expired value
     * as the tombstone it is (its bytes go), the same on every replica. */
    if (record_decode(c, rec, rlen, c->rb) < 0) {
        rc = moor_diag_wrap(MOOR_EINVAL, moor_diag_last()->code, "record to merge");
        goto out;
    }
    rc = c->store.get(c->store.ud, key, klen, &cur);
    if (rc == MOOR_ENOTFOUND) {
        rc = moor_record_merge(c->rb, c->rb, &out); /* the canonical form */
    } else if (rc == 0) {
        if ((rc = record_decode(c, cur.data, cur.len, c->ra)) < 0)
            goto out;
        rc = moor_record_merge_n(c->ra, c->rb, &out, &dropped);
    }
    if (dropped) /* pathological: over MOOR_RECORD_MAX_SIBLINGS after a merge */
        moor_log_warn("a merge of a key's versions held more than %d siblings: dropped the %u "
                      "oldest (%llu so far on this node)",
                      MOOR_RECORD_MAX_SIBLINGS, dropped,
                      (unsigned long long)moor_record_merge_drops());
    if (rc == 0 && (rc = c->store.put(c->store.ud, key, klen, out.data, out.len, done, arg)) == 0 &&
        c->on_write)
        c->on_write(c->on_write_ud, key, klen, cur.len ? cur.data : NULL, cur.len, out.data,
                    out.len);
out:
    moor_buf_free(&cur);
    moor_buf_free(&out);
    return rc;
}

/* ---- replica side ------------------------------------------------------------------- */

/* The one map param of a peer request, read into named fields (fields.h). */
typedef moor_field_t field_t;
#define read_fields moor_fields_read
#define field_nil moor_field_nil
#define field_strbin moor_field_strbin
#define field_uint moor_field_uint
#define field_bool moor_field_bool

/* The space and key fields (f[0], f[1]), and whether the node serves them
 * (opts.check_key: a declared space, a key within limits).  0, or -1 with
 * *why saying what is wrong. */
static int read_space_key(moor_coord_t *c, const field_t *f, const char **space, uint32_t *slen,
                          const char **key, uint32_t *klen, const char **why)
{
    if (field_strbin(&f[0], space, slen) || *slen > MOOR_SPACE_MAX) {
        *why = "space must be a str of at most 255 bytes";
        return -1;
    }
    if (field_strbin(&f[1], key, klen)) {
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
 * MOOR_EBADCTX / MOOR_EINVAL with a diagnostic (dot counters too).  Answers to this node's
 * own _get are not held to it: a record stored before clocks were bounded
 * must stay readable. */
static int peer_record_check(moor_coord_t *c, const moor_record_t *r)
{
    uint64_t now = c->clock.now_ms(c->clock.ud), bound = moor_vclock_counter_bound(now);
    int rc = moor_vclock_check_bounds(&r->vc, now, "record");

    if (rc)
        return rc;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->sib[i].dot_counter > bound)
            return moor_diag(MOOR_EBADCTX,
                             "record: a dot counter (%llu) is more than a day ahead of the clock",
                             (unsigned long long)r->sib[i].dot_counter);
    return r->n ? 0 : moor_diag(MOOR_EINVAL, "record: no siblings");
}

int moor_coord_merge_peer_record(moor_coord_t *c, const char *key, size_t klen, const char *rec,
                                 size_t rlen, moor_store_done_fn done, void *arg)
{
    if (moor_record_decode(rec, rlen, c->rb) || peer_record_check(c, c->rb))
        return moor_diag_wrap(MOOR_EINVAL, moor_diag_last()->code, "record from a peer");
    return local_merge(c, key, klen, rec, rlen, done, arg);
}

/* _get {space, key} -> nil or bin(record) */
static void peer_get(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
                     moor_coord_done_fn done, void *arg)
{
    field_t f[] = {{"space", NULL, NULL}, {"key", NULL, NULL}};
    const char *space, *key, *why;
    uint32_t slen, klen;
    moor_buf_t ekey = MOOR_BUF_INIT, cur = MOOR_BUF_INIT, res = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc;

    if (!(why = read_fields(params, plen, nparams, f, 2)))
        read_space_key(c, f, &space, &slen, &key, &klen, &why);
    if (why) {
        answer_fmt(done, arg, MOOR_EINVAL, "_get {space, key}: %s", why);
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
            op_fail(op, status, "%s write: %s", op->kind == OP_PEER_HINT ? "hint" : "local",
                    moor_diag_msg(status));
    }
    op_unref(op);
}

/* _put {space, key, record, fallback_for?} -> true once durable.  With
 * fallback_for (the owner this node stands in for) the record is stored
 * as a hint for that owner through opts.hint_put, never in this node's
 * data; a node without hint_put refuses it. */
static void peer_put(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
                     moor_coord_done_fn done, void *arg)
{
    field_t f[] = {{"space", NULL, NULL},
                   {"key", NULL, NULL},
                   {"record", NULL, NULL},
                   {"fallback_for", NULL, NULL}};
    const char *space, *key, *rec, *owner = NULL, *why;
    uint32_t slen, klen, rlen, olen = 0;
    op_t *op;
    int rc;

    if (!(why = read_fields(params, plen, nparams, f, 4)) &&
        read_space_key(c, f, &space, &slen, &key, &klen, &why) == 0) {
        const char *p = f[2].v;
        if (!f[2].v || moor_mp_read_bin(&p, f[2].end, &rec, &rlen) || p != f[2].end)
            why = "record must be a bin";
        else if (!field_nil(&f[3]) &&
                 (field_strbin(&f[3], &owner, &olen) || olen == 0 || olen > MOOR_RING_ID_MAX))
            why = "fallback_for must be a member id (str of 1..64 bytes)";
    }
    if (why) {
        answer_fmt(done, arg, MOOR_EINVAL, "_put {space, key, record, fallback_for}: %s", why);
        return;
    }
    if (moor_record_decode(rec, rlen, c->rb) || peer_record_check(c, c->rb)) {
        answer_fmt(done, arg, MOOR_EINVAL, "_put: %s", moor_diag_last()->msg);
        return;
    }
    if (owner && !c->hint_put) {
        answer_fmt(done, arg, MOOR_EUNAVAIL,
                   "_put: node '%.*s' keeps no hints: it cannot stand in for '%.*s'", (int)c->idlen,
                   c->id, (int)olen, owner);
        return;
    }
    if (!(op = op_new(c, owner ? OP_PEER_HINT : OP_PEER_PUT, 0))) {
        answer_fmt(done, arg, MOOR_ENOMEM, "no memory for a write");
        return;
    }
    op_set_done(op, done, arg);
    if ((rc = op_set_key(op, space, slen, key, klen)) == 0) {
        op->refs++;
        if (owner) {
            rc = c->hint_put(c->hint_ud, owner, olen, space, slen, key, klen, rec, rlen,
                             peer_put_done, op);
        } else {
            rc = local_merge(c, op->ekey.data, op->ekey.len, rec, rlen, peer_put_done, op);
        }
        if (rc)
            op->refs--;
        else if (owner)
            c->st.hints_taken++;
    }
    if (rc)
        op_fail(op, rc, "%s write: %s", owner ? "hint" : "local", moor_diag_msg(rc));
    op_unref(op);
}

#define STR_(x) #x
#define STR(x) STR_(x)
#define N_MAX_STR STR(MOOR_COORD_N_MAX)

/* The params of _coord {op, space, key, value?, ctx?, n, w, timeout_ms,
 * sloppy?, receipt?, overwrite?, ttl_ms?} into req (borrowing from params) and *tombstone;
 * NULL, or what is wrong. */
static const char *parse_coord(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
                               moor_coord_req_t *req, int *tombstone)
{
    field_t f[] = {{"space", NULL, NULL},   {"key", NULL, NULL},        {"op", NULL, NULL},
                   {"value", NULL, NULL},   {"ctx", NULL, NULL},        {"n", NULL, NULL},
                   {"w", NULL, NULL},       {"timeout_ms", NULL, NULL}, {"sloppy", NULL, NULL},
                   {"receipt", NULL, NULL}, {"overwrite", NULL, NULL},  {"ttl_ms", NULL, NULL}};
    const char *opn, *why, *p;
    uint32_t olen, slen, klen, clen = 0;
    uint64_t n, w, tmo, ttl = 0;
    int sloppy, receipt, overwrite;

    if ((why = read_fields(params, plen, nparams, f, 12)))
        return why;
    if (field_strbin(&f[2], &opn, &olen) || olen != 3 ||
        (memcmp(opn, "put", 3) != 0 && memcmp(opn, "del", 3) != 0))
        return "op must be \"put\" or \"del\"";
    *tombstone = opn[0] == 'd';
    if (read_space_key(c, f, &req->space, &slen, &req->key, &klen, &why))
        return why;
    if (*tombstone) {
        if (!field_nil(&f[3]))
            return "del takes no value";
    } else if (!f[3].v || !moor_record_value_ok(f[3].v, (size_t)(f[3].end - f[3].v))) {
        return "value must be one MessagePack object nested at most 61 deep";
    }
    p = f[4].v;
    if (!field_nil(&f[4]) && (moor_mp_read_bin(&p, f[4].end, &req->ctx, &clen) || p != f[4].end))
        return "ctx must be a bin or nil";
    if (field_uint(&f[5], &n) || field_uint(&f[6], &w) || field_uint(&f[7], &tmo) ||
        n > MOOR_COORD_N_MAX || w > n || tmo > UINT32_MAX)
        return "n, w, timeout_ms must be unsigned, w <= n <= " N_MAX_STR;
    if (field_bool(&f[8], 1, &sloppy) || field_bool(&f[9], 0, &receipt) ||
        field_bool(&f[10], 0, &overwrite))
        return "sloppy, receipt and overwrite must be bools";
    if (!field_nil(&f[11]) &&
        (*tombstone || field_uint(&f[11], &ttl) || ttl == 0 || ttl > MOOR_COORD_TTL_MAX))
        return "ttl_ms must be a positive integer of at most 100 years' ms, on a put";
    req->slen = slen, req->klen = klen, req->ctxlen = clen;
    req->value = *tombstone ? NULL : f[3].v;
    req->vlen = *tombstone ? 0 : (size_t)(f[3].end - f[3].v);
    req->n = (uint32_t)n, req->w = (uint32_t)w, req->timeout_ms = (uint32_t)tmo;
    req->sloppy = sloppy ? MOOR_COORD_SLOPPY_ON : MOOR_COORD_SLOPPY_OFF;
    req->receipt = receipt;
    req->overwrite = overwrite;
    req->ttl_ms = ttl;
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
                   "_coord {op, space, key, value, ctx, n, w, timeout_ms, sloppy, receipt, "
                   "overwrite, ttl_ms}: %s",
                   why);
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
    else if (mlen == 5 && memcmp(method, "_scan", 5) == 0)
        scan_peer(c, params, plen, nparams, done, arg);
    else
        answer_fmt(done, arg, MOOR_ENOMETHOD, "no peer method '%.*s'", (int)(mlen > 64 ? 64 : mlen),
                   method);
}
