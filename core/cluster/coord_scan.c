/*
 * coord_scan.c -- key scans: the coordinator's page of a keyspace
 * (moor_coord_scan) and the replica side, `_scan`.
 *
 * A page covers one stretch of the ring in token order: the range that
 * holds the cursor's token, grown over the ranges after it that have the
 * same owners (a node alone, or a ring of n members with n replicas, is one
 * stretch).  R of the stretch's owners that are not down -- this node
 * first when it is one -- each send their page of it (scan.h: at most
 * limit keys, a bounded number of entries examined, the tombstones too);
 * an owner that cannot be reached hands its turn to the next one.  The
 * union of the pages is complete only up to the earliest place a replica
 * stopped (its `next`): the page keeps what lies before it, merges each
 * key's records as a quorum get does, drops the keys that are deleted,
 * cuts after limit live keys, and answers a cursor at the first position
 * it did not cover -- or nil past the top of the ring.  So the coordinator
 * holds at most one replica page per replica, every key is listed once,
 * and a page may be short or empty with a cursor to go on with.
 *
 * No read repair and no write-back of a resolved value: a scan only reads.
 * Ops as coord.c tells (kind OP_SCAN): slots are the stretch's owners not
 * down, the first r asked, the rest spares; slot rec holds the answer.
 */
#include "coord_internal.h"
#include "fields.h"
#include "scan.h"
#include "util/utf8.h"

/* ---- the plan: the stretch and its owners ------------------------------------------ */

/* The last token of the range that holds token t. */
static uint64_t range_end(const moor_ring_t *ring, uint64_t t)
{
    uint64_t start, end;
    uint32_t v = moor_ring_vnode_at(ring, t);

    if (moor_ring_range_of(ring, v, &start, &end) != 1)
        return t; /* cannot be (vnode_at never picks an empty range): one token */
    return end >= t ? end : UINT64_MAX; /* past the last token: the wrapping range */
}

static int same_members(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb)
{
    if (na != nb)
        return 0;
    for (uint32_t i = 0; i < na; i++) {
        uint32_t j = 0;
        while (j < nb && b[j] != a[i])
            j++;
        if (j == nb)
            return 0;
    }
    return 1;
}

/* The owners of token t (first n of its preference list) into own, and the
 * last token of the stretch from t whose ranges all have those owners into
 * *to.  0 or the ring's error. */
static int plan_stretch(const moor_ring_t *ring, uint64_t t, uint32_t n, uint32_t *own,
                        uint32_t *nown, uint64_t *to)
{
    uint32_t next[MOOR_COORD_N_MAX], nnext, steps = moor_ring_vnode_count(ring) + 1;
    int rc;

    if ((rc = moor_ring_preference_list(ring, t, n, own, nown)))
        return rc;
    *to = range_end(ring, t);
    while (*to != UINT64_MAX && steps--) {
        if ((rc = moor_ring_preference_list(ring, *to + 1, n, next, &nnext)))
            return rc;
        if (!same_members(own, *nown, next, nnext))
            break;
        *to = range_end(ring, *to + 1);
    }
    return 0;
}

/* ---- answering ---------------------------------------------------------------------- */

typedef struct ent {
    const char *key, *rec;
    uint32_t klen, rlen;
    size_t eoff;    /* its engine key in the ekeys buffer, while that grows */
    const char *ek; /* the same, once it is complete */
    uint32_t elen;
    uint32_t slot;
} ent_t;

static int ent_cmp(const void *x, const void *y)
{
    const ent_t *a = x, *b = y;
    int c = moor_scan_pos_cmp(a->ek, a->elen, b->ek, b->elen);

    return c ? c : (a->slot > b->slot) - (a->slot < b->slot);
}

/* A key as the client wrote it, as far as the engine can tell: a str when
 * its bytes are UTF-8, else bin. */
static int pack_key(msgpack_packer *pk, const char *k, uint32_t klen)
{
    if (moor_utf8_valid(k, klen))
        return msgpack_pack_str_with_body(pk, k, klen);
    return msgpack_pack_bin_with_body(pk, k, klen);
}

/* The value of the merged record rec (decoded in r) as a get answers it,
 * the resolver applied to siblings, into vals.  1 if it was packed, 0 if
 * the key is deleted (a resolver answered nil), or a negative code. */
static int pack_value(moor_coord_t *c, op_t *op, const char *rec, size_t rlen, uint32_t live,
                      msgpack_packer *pk, moor_buf_t *vals)
{
    moor_buf_t val = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    int rc = 0;

    if (live > 1 && c->resolve) {
        rc = c->resolve(c->resolve_ud, op->sk.data, op->slen, rec, rlen, &val);
        if (rc < 0 || (rc == 1 && !moor_record_value_ok(val.data, val.len))) {
            moor_log_warn("resolver of space '%.*s' failed (%s); keeping the siblings",
                          (int)op->slen, op->sk.data, rc < 0 ? moor_diag_msg(rc) : "not one value");
            rc = 0;
        }
        /* the resolver may have used the scratch records */
        if (moor_record_decode(rec, rlen, c->rw)) {
            rc = MOOR_EINTERNAL;
            goto out;
        }
    }
    if (rc == 1 && val.len == 1 && (unsigned char)val.data[0] == 0xc0) {
        rc = 0; /* resolved to deleted */
    } else if (rc == 1) {
        rc = moor_record_ctx(c->rw, &ctx) || msgpack_pack_map(pk, 2) ||
                     msgpack_pack_str_with_body(pk, "values", 6) || msgpack_pack_array(pk, 1) ||
                     moor_mp_pack_raw(vals, val.data, val.len) ||
                     msgpack_pack_str_with_body(pk, "ctx", 3) ||
                     msgpack_pack_bin_with_body(pk, ctx.data, ctx.len)
                 ? MOOR_ENOMEM
                 : 1;
    } else {
        rc = moor_record_get_result(c->rw, vals) ? MOOR_ENOMEM : 1;
    }
out:
    moor_buf_free(&val);
    moor_buf_free(&ctx);
    return rc;
}

/* The entries of every slot that answered, before the earliest `next`
 * (*bound, NULL: none), into *out with their engine keys in ekeys. */
static int gather(op_t *op, ent_t **out, uint32_t *nout, moor_buf_t *ekeys, const char **bound,
                  uint32_t *blen)
{
    moor_scan_reader_t rd;
    moor_scan_item_t it;
    uint32_t n = 0, cap = 0;
    ent_t *e = NULL;
    int rc = 0;

    *bound = NULL;
    *blen = 0;
    for (uint32_t i = 0; i < op->nslots; i++)
        if (op->slot[i].state == SLOT_OK &&
            moor_scan_page_open(op->slot[i].rec.data, op->slot[i].rec.len, &rd) == 0 && rd.next &&
            (!*bound || moor_scan_pos_cmp(rd.next, rd.nlen, *bound, *blen) < 0))
            *bound = rd.next, *blen = rd.nlen;
    for (uint32_t i = 0; i < op->nslots && rc == 0; i++) {
        if (op->slot[i].state != SLOT_OK ||
            moor_scan_page_open(op->slot[i].rec.data, op->slot[i].rec.len, &rd))
            continue;
        while (rc == 0 && moor_scan_page_next(&rd, &it) == 0) {
            size_t off = ekeys->len;
            if (n == cap) {
                ent_t *ne = realloc(e, (cap = cap ? 2 * cap : 256) * sizeof(*e));
                if (!ne) {
                    rc = MOOR_ENOMEM;
                    break;
                }
                e = ne;
            }
            if ((rc = moor_record_key(op->sk.data, op->slen, it.key, it.klen, ekeys)))
                break;
            if (*bound &&
                moor_scan_pos_cmp(ekeys->data + off, ekeys->len - off, *bound, *blen) >= 0) {
                ekeys->len = off;
                break; /* the rest of this page lies past the bound too */
            }
            e[n++] = (ent_t){
                it.key, it.rec, it.klen, it.rlen, off, NULL, (uint32_t)(ekeys->len - off), i};
        }
    }
    for (uint32_t k = 0; k < n; k++)
        e[k].ek = ekeys->data + e[k].eoff;
    *out = e;
    *nout = n;
    return rc;
}

/* The page: keys (and values) of the entries, merged per key, and the
 * cursor.  0 or a code. */
static int build_page(op_t *op, moor_buf_t *res)
{
    moor_coord_t *c = op->c;
    moor_buf_t ekeys = MOOR_BUF_INIT, keys = MOOR_BUF_INIT, vals = MOOR_BUF_INIT;
    moor_buf_t acc = MOOR_BUF_INIT, cur = MOOR_BUF_INIT;
    msgpack_packer kp, vp, pk;
    const char *bound, *cut = NULL;
    uint32_t blen, nent = 0, nkeys = 0, cutlen = 0;
    ent_t *e = NULL;
    int rc;

    moor_mp_packer_init(&kp, &keys);
    moor_mp_packer_init(&vp, &vals);
    if ((rc = gather(op, &e, &nent, &ekeys, &bound, &blen)))
        goto out;
    if (nent > 1)
        qsort(e, nent, sizeof(*e), ent_cmp);
    for (uint32_t i = 0, j; i < nent && rc == 0; i = j) {
        uint32_t live = 0;
        acc.len = 0;
        for (j = i; j < nent && e[j].elen == e[i].elen && memcmp(e[j].ek, e[i].ek, e[i].elen) == 0;
             j++)
            if ((rc = merge_into(c, &acc, e[j].rec, e[j].rlen)))
                break;
        if (rc || (rc = moor_record_decode(acc.data, acc.len, c->rw)))
            break;
        for (uint32_t s = 0; s < c->rw->n; s++)
            live += !c->rw->sib[s].tombstone;
        if (!live)
            continue;
        if (nkeys == op->limit) { /* one key too many: the next page starts at it */
            cut = e[i].ek, cutlen = e[i].elen;
            break;
        }
        if (op->values && (rc = pack_value(c, op, acc.data, acc.len, live, &vp, &vals)) <= 0) {
            if (rc == 0)
                continue; /* resolved to deleted */
            break;
        }
        rc = pack_key(&kp, e[i].key, e[i].klen) ? MOOR_ENOMEM : 0;
        nkeys++;
    }
    if (rc)
        goto out;
    if (!cut && bound)
        cut = bound, cutlen = blen;
    if (cut) {
        rc = moor_scan_cursor_encode(cut, cutlen, &cur);
    } else if (op->scan_to != UINT64_MAX) {
        char t[8];
        moor_enc_be64(t, op->scan_to + 1);
        rc = moor_scan_cursor_encode(t, 8, &cur);
    }
    if (rc)
        goto out;
    moor_mp_packer_init(&pk, res);
    rc = msgpack_pack_map(&pk, op->values ? 3 : 2) | msgpack_pack_str_with_body(&pk, "keys", 4) |
         msgpack_pack_array(&pk, nkeys) | moor_mp_pack_raw(res, keys.data, keys.len);
    if (op->values)
        rc |= msgpack_pack_str_with_body(&pk, "values", 6) | msgpack_pack_array(&pk, nkeys) |
              moor_mp_pack_raw(res, vals.data, vals.len);
    rc |= msgpack_pack_str_with_body(&pk, "cursor", 6);
    rc |= cur.len ? msgpack_pack_bin_with_body(&pk, cur.data, cur.len) : msgpack_pack_nil(&pk);
    rc = rc ? MOOR_ENOMEM : 0;
out:
    free(e);
    moor_buf_free(&ekeys);
    moor_buf_free(&keys);
    moor_buf_free(&vals);
    moor_buf_free(&acc);
    moor_buf_free(&cur);
    return rc;
}

static void scan_answer(op_t *op)
{
    moor_buf_t res = MOOR_BUF_INIT;
    int rc = build_page(op, &res);

    op_stop_timer(op);
    if (rc)
        op_fail(op, rc, "scan page: %s", moor_diag_msg(rc));
    else
        op_answer(op, 0, NULL, res.data, res.len);
    moor_buf_free(&res);
}

/* ---- asking the replicas ------------------------------------------------------------ */

static void scan_ask(op_t *op, slot_t *s);

/* A replica's page checked against the request: items of the space in
 * [from, to], ascending, before its next.  0 or MOOR_EPROTO. */
static int page_ok(const op_t *op, const char *ans, size_t alen)
{
    moor_scan_reader_t rd;
    moor_scan_item_t it;
    moor_buf_t ek = MOOR_BUF_INIT, prev = MOOR_BUF_INIT;
    int rc, bad = 0;

    if ((rc = moor_scan_page_open(ans, alen, &rd)))
        return rc;
    if (rd.next && (moor_scan_pos_cmp(rd.next, rd.nlen, op->ekey.data, op->ekey.len) <= 0 ||
                    moor_dec_be64(rd.next) > op->scan_to))
        bad = 1;
    while (!bad && (rc = moor_scan_page_next(&rd, &it)) == 0) {
        ek.len = 0;
        if (moor_record_key(op->sk.data, op->slen, it.key, it.klen, &ek)) {
            rc = MOOR_ENOMEM;
            break;
        }
        bad = moor_scan_pos_cmp(ek.data, ek.len, op->ekey.data, op->ekey.len) < 0 ||
              moor_dec_be64(ek.data) > op->scan_to ||
              (prev.len && moor_scan_pos_cmp(prev.data, prev.len, ek.data, ek.len) >= 0) ||
              (rd.next && moor_scan_pos_cmp(ek.data, ek.len, rd.next, rd.nlen) >= 0) ||
              it.klen < op->klen || memcmp(it.key, op->sk.data + op->slen, op->klen);
        prev.len = 0;
        if (moor_buf_append(&prev, ek.data, ek.len))
            rc = MOOR_ENOMEM;
    }
    moor_buf_free(&ek);
    moor_buf_free(&prev);
    if (bad)
        return moor_diag(MOOR_EPROTO, "_scan answer: an item or next outside the request");
    return rc == 1 ? 0 : rc;
}

/* A slot's answer (status 0: ans, already in s->rec for the local one). */
static void scan_slot_done(op_t *op, slot_t *s, int status, const char *ans, size_t alen)
{
    if (!op->c || s->state != SLOT_PENDING)
        return;
    if (status == 0 && ans != s->rec.data && moor_buf_append(&s->rec, ans, alen))
        status = MOOR_ENOMEM;
    if (status == 0 && (status = page_ok(op, s->rec.data, s->rec.len)))
        moor_log_warn("_scan answer of %.*s refused: %s", (int)s->idlen, s->id,
                      moor_diag_msg(status));
    s->state = status ? SLOT_FAILED : SLOT_OK;
    op->replied++;
    if (status) {
        op->failed++;
        s->rec.len = 0;
    } else {
        op->ok++;
    }
    if (op->answered)
        return;
    if (op->ok == op->need) {
        scan_answer(op);
    } else if (status && op->used < op->n) {
        scan_ask(op, &op->slot[op->used++]); /* the next owner takes its turn */
    } else if (op->failed > op->n - op->need) {
        op->c->st.quorum_failures++;
        op_fail(op, MOOR_EQUORUM, "%u of %u replicas of the range answered the scan, %u needed",
                op->ok, op->n, op->need);
        op_stop_timer(op); /* nothing left to wait for */
    }
}

static void scan_peer_reply(void *arg, int status, const char *res, size_t rlen)
{
    slot_t *s = arg;
    op_t *op = s->op;

    scan_slot_done(op, s, status, res, rlen);
    op_unref(op);
}

/* The params of _scan {space, from, to, limit, values, prefix?}. */
static int scan_params(const op_t *op, moor_buf_t *out)
{
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, out);
    rc = msgpack_pack_map(&pk, op->klen ? 6 : 5);
    rc |= msgpack_pack_str_with_body(&pk, "space", 5);
    rc |= msgpack_pack_str_with_body(&pk, op->sk.data, op->slen);
    rc |= msgpack_pack_str_with_body(&pk, "from", 4);
    rc |= msgpack_pack_bin_with_body(&pk, op->ekey.data, op->ekey.len);
    rc |= msgpack_pack_str_with_body(&pk, "to", 2);
    rc |= msgpack_pack_uint64(&pk, op->scan_to);
    rc |= msgpack_pack_str_with_body(&pk, "limit", 5);
    rc |= msgpack_pack_uint32(&pk, op->limit);
    rc |= msgpack_pack_str_with_body(&pk, "values", 6);
    rc |= op->values ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    if (op->klen) {
        rc |= msgpack_pack_str_with_body(&pk, "prefix", 6);
        rc |= msgpack_pack_bin_with_body(&pk, op->sk.data + op->slen, op->klen);
    }
    return rc ? MOOR_ENOMEM : 0;
}

static void scan_req_of(const op_t *op, moor_scan_req_t *q)
{
    q->space = op->sk.data;
    q->slen = op->slen;
    q->prefix = op->sk.data + op->slen;
    q->plen = op->klen;
    q->from = op->ekey.data;
    q->flen = op->ekey.len;
    q->to = op->scan_to;
    q->limit = op->limit;
    q->values = op->values;
}

/* Asks slot s: this node's store at once, a peer with _scan. */
static void scan_ask(op_t *op, slot_t *s)
{
    moor_coord_t *c = op->c;
    moor_buf_t params = MOOR_BUF_INIT;
    moor_scan_req_t q;
    int rc;

    if (s->self) {
        scan_req_of(op, &q);
        rc = moor_scan_page_local(&c->store, &q, &s->rec);
        scan_slot_done(op, s, rc, s->rec.data, s->rec.len);
        return;
    }
    op->refs++;
    if ((rc = scan_params(op, &params)) == 0)
        rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_scan", params.data, params.len, 1,
                           op_remaining_ms(op), scan_peer_reply, s);
    moor_buf_free(&params);
    if (rc) {
        op->refs--;
        scan_slot_done(op, s, rc, NULL, 0);
    }
}

/* ---- the client call ---------------------------------------------------------------- */

/* The op of a scan page: slots = the stretch's owners not down, this
 * node first; NULL after answering done. */
static op_t *scan_op(moor_coord_t *c, const moor_coord_scan_req_t *req, const plan_t *pl,
                     const char *from, size_t flen, moor_coord_done_fn done, void *arg)
{
    uint32_t own[MOOR_COORD_N_MAX], nown, up[MOOR_COORD_N_MAX], nup = 0;
    uint64_t to;
    op_t *op;
    int rc;

    if ((rc = plan_stretch(c->ring, moor_dec_be64(from), pl->n, own, &nown, &to))) {
        answer_fmt(done, arg, rc, "scan: %s", moor_diag_msg(rc));
        return NULL;
    }
    for (uint32_t pass = 0; pass < 2; pass++) /* this node first, then the others in order */
        for (uint32_t i = 0; i < nown; i++) {
            const moor_member_t *m = moor_ring_member(c->ring, own[i]);
            int self = m->idlen == c->idlen && memcmp(m->id, c->id, c->idlen) == 0;
            if (m->status != MOOR_MEMBER_DOWN && self == (pass == 0))
                up[nup++] = own[i];
        }
    if (nown < pl->r) {
        answer_fmt(done, arg, MOOR_EUNAVAIL, "the ring has %u members, r=%u needs as many", nown,
                   pl->r);
        return NULL;
    }
    if (nup < pl->r) {
        c->st.quorum_failures++;
        answer_fmt(done, arg, MOOR_EQUORUM,
                   "%u of the %u replicas of the range are up, the scan needs r=%u", nup, nown,
                   pl->r);
        return NULL;
    }
    if (!(op = op_new(c, OP_SCAN, nup))) {
        answer_fmt(done, arg, MOOR_ENOMEM, "no memory for a scan");
        return NULL;
    }
    for (uint32_t i = 0; i < nup; i++) {
        const moor_member_t *m = moor_ring_member(c->ring, up[i]);
        op_set_target(op, i, m->id, m->idlen);
    }
    op->need = pl->r;
    op->used = pl->r;
    op->timeout_ms = pl->timeout_ms;
    op->scan_to = to;
    op->limit = req->limit ? req->limit : MOOR_SCAN_LIMIT_DEFAULT;
    op->values = req->values != 0;
    op->slen = pl->slen;
    op->klen = req->plen; /* the prefix, after the space in sk */
    if (moor_buf_append(&op->sk, pl->space, pl->slen) ||
        moor_buf_append(&op->sk, req->prefix, req->plen) ||
        moor_buf_append(&op->ekey, from, flen)) {
        answer_fmt(done, arg, MOOR_ENOMEM, "no memory for a scan");
        op_unref(op);
        return NULL;
    }
    op_set_done(op, done, arg);
    return op;
}

void moor_coord_scan(moor_coord_t *c, const moor_coord_scan_req_t *req, moor_coord_done_fn done,
                     void *arg)
{
    static const char start[8] = {0};
    const char *from = start;
    size_t flen = 8;
    char msg[256];
    moor_coord_req_t lv;
    plan_t pl;
    op_t *op;
    int rc;

    memset(&lv, 0, sizeof(lv));
    lv.space = req->space, lv.slen = req->slen;
    lv.n = req->n, lv.r = req->r, lv.timeout_ms = req->timeout_ms;
    if ((rc = plan_levels(c, &lv, &pl, msg, sizeof(msg)))) {
        done(arg, rc, msg, NULL, 0);
        return;
    }
    if (pl.slen == 0 || req->limit > MOOR_SCAN_LIMIT_MAX || (req->plen && !req->prefix)) {
        answer_fmt(done, arg, MOOR_EINVAL, "scan: an empty space, or limit over %d",
                   MOOR_SCAN_LIMIT_MAX);
        return;
    }
    if (req->clen && (rc = moor_scan_cursor_decode(req->cursor, req->clen, &from, &flen))) {
        answer_fmt(done, arg, MOOR_EINVAL, "%s", moor_diag_msg(rc));
        return;
    }
    if (!c->ring) {
        answer_fmt(done, arg, MOOR_EUNAVAIL, "this node has no ring yet");
        return;
    }
    if (!(op = scan_op(c, req, &pl, from, flen, done, arg)))
        return;
    op_start_timer(op);
    for (uint32_t i = 0; i < op->need && op->c && !op->answered; i++)
        scan_ask(op, &op->slot[i]);
    op_unref(op);
}

/* ---- replica side ------------------------------------------------------------------- */

/* _scan {space, from, to, limit, values?, prefix?} -> the page (scan.h). */
void scan_peer(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
               moor_coord_done_fn done, void *arg)
{
    moor_field_t f[] = {{"space", NULL, NULL}, {"from", NULL, NULL},   {"to", NULL, NULL},
                        {"limit", NULL, NULL}, {"values", NULL, NULL}, {"prefix", NULL, NULL}};
    moor_buf_t out = MOOR_BUF_INIT;
    moor_scan_req_t q;
    const char *why, *sp, *from, *prefix = "";
    uint32_t slen, flen, pfx = 0;
    uint64_t to, limit;
    int rc;

    memset(&q, 0, sizeof(q));
    if ((why = moor_fields_read(params, plen, nparams, f, 6)))
        goto bad;
    why = "space must be a str of 1..255 bytes";
    if (moor_field_strbin(&f[0], &sp, &slen) || slen == 0 || slen > MOOR_SPACE_MAX)
        goto bad;
    why = "from must be a position (bin of 8 or more bytes) and to a token at or after it";
    if (moor_field_strbin(&f[1], &from, &flen) || flen < 8 || flen > MOOR_SCAN_FROM_MAX ||
        moor_field_uint(&f[2], &to) || to < moor_dec_be64(from))
        goto bad;
    why = "limit must be an integer in 1..1000, values a bool, prefix a str or bin";
    if (moor_field_uint(&f[3], &limit) || limit == 0 || limit > MOOR_SCAN_LIMIT_MAX ||
        moor_field_bool(&f[4], 0, &q.values) ||
        (!moor_field_nil(&f[5]) && moor_field_strbin(&f[5], &prefix, &pfx)))
        goto bad;
    /* the space (and the prefix, as a key) checked as a _get's key: a
     * placeholder key of one byte when there is no prefix */
    if (c->check_key && c->check_key(c->check_ud, sp, slen, pfx ? prefix : "k", pfx ? pfx : 1)) {
        why = moor_diag_last()->msg;
        goto bad;
    }
    q.space = sp, q.slen = slen, q.prefix = prefix, q.plen = pfx;
    q.from = from, q.flen = flen, q.to = to, q.limit = (uint32_t)limit;
    if ((rc = moor_scan_page_local(&c->store, &q, &out)))
        answer_fmt(done, arg, rc, "%s", moor_diag_msg(rc));
    else
        done(arg, 0, NULL, out.data, out.len);
    moor_buf_free(&out);
    return;
bad:
    answer_fmt(done, arg, MOOR_EINVAL, "_scan {space, from, to, limit, values, prefix}: %s", why);
}
