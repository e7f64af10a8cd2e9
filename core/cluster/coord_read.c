/*
 * coord_read.c -- quorum reads: ask every replica with `_get`, fold each
 * reply into a running merge, answer at R replies (the resolver may pick
 * one value and write it back), keep listening until every replica
 * answered or the deadline passed, then read-repair the replicas that
 * answered with less than the final merge.  Also the record helpers the
 * coordinator shares (merge_into, record_same).
 */
#include "coord_internal.h"

/* acc = merge(acc, rec), acc empty meaning no record yet, both expired at
 * expiry_now (so acc never holds an expired value).  0, MOOR_ECORRUPT
 * (rec does not decode; acc unaltered), MOOR_ENOMEM. */
int merge_into(moor_coord_t *c, moor_buf_t *acc, const char *rec, size_t rlen)
{
    moor_buf_t out = MOOR_BUF_INIT;
    uint32_t dropped = 0;
    int rc;

    if ((rc = record_decode(c, rec, rlen, c->rb)) < 0)
        return rc;
    if (acc->len == 0) { /* a stored or received record is canonical: the merge is itself */
        if (rc > 0)      /* ... once its expired siblings are the tombstones they are */
            return moor_record_encode(c->rb, acc);
        return moor_buf_append(acc, rec, rlen) ? MOOR_ENOMEM : 0;
    }
    if ((rc = record_decode(c, acc->data, acc->len, c->ra)) >= 0 &&
        (rc = moor_record_merge_n(c->ra, c->rb, &out, &dropped)) == 0 && dropped)
        moor_log_warn("a merge of a key's versions held more than %d siblings: dropped the %u "
                      "oldest (%llu so far on this node)",
                      MOOR_RECORD_MAX_SIBLINGS, dropped,
                      (unsigned long long)moor_record_merge_drops());
    if (rc == 0) {
        moor_buf_free(acc);
        *acc = out;
    } else {
        moor_buf_free(&out);
    }
    return rc;
}

static int sibling_in(const moor_record_t *r, const moor_sibling_t *s)
{
    for (uint32_t i = 0; i < r->n; i++) {
        const moor_sibling_t *t = &r->sib[i];
        if (t->dot_counter == s->dot_counter && t->dot_idlen == s->dot_idlen &&
            memcmp(t->dot_id, s->dot_id, s->dot_idlen) == 0 && t->ts == s->ts &&
            t->tombstone == s->tombstone && t->exp == s->exp && t->vlen == s->vlen &&
            (!s->vlen || memcmp(t->value, s->value, s->vlen) == 0))
            return 1;
    }
    return 0;
}

/* 1 if a replica's record x holds the versions of the merge m. */
int record_same(const moor_record_t *m, const moor_record_t *x)
{
    if (moor_vclock_compare(&m->vc, &x->vc) != MOOR_VC_EQUAL || m->n != x->n)
        return 0;
    for (uint32_t i = 0; i < m->n; i++)
        if (!sibling_in(x, &m->sib[i]))
            return 0;
    return 1;
}

/* ---- reads -------------------------------------------------------------------------- */

/* The latest expiry of r's live siblings when every one of them expires,
 * else 0. */
static uint64_t resolved_expiry(const moor_record_t *r)
{
    uint64_t e = 0;

    for (uint32_t i = 0; i < r->n; i++) {
        const moor_sibling_t *s = &r->sib[i];
        if (s->tombstone)
            continue;
        if (!s->exp)
            return 0;
        if (s->exp > e)
            e = s->exp;
    }
    return e;
}

/* The resolver's turn: 1 and the answer in res when it resolved (and the
 * resolved value is on its way back to the replicas), else 0. */
static int get_resolve(op_t *op, moor_buf_t *res)
{
    moor_coord_t *c = op->c;
    moor_buf_t val = MOOR_BUF_INIT, clock = MOOR_BUF_INIT, rec = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc = c->resolve(c->resolve_ud, op->sk.data, op->slen, op->rec.data, op->rec.len, &val);
    int resolved = 0, deleted;
    uint64_t exp, ttl = 0;

    if (rc < 0 || (rc == 1 && !moor_record_value_ok(val.data, val.len))) {
        moor_log_warn("resolver of space '%.*s' failed (%s); keeping the siblings", (int)op->slen,
                      op->sk.data, rc < 0 ? moor_diag_msg(rc) : "not one value");
        goto out;
    }
    if (rc != 1)
        goto out;
    /* nil resolves to "deleted": the write-back is a tombstone. */
    deleted = val.len == 1 && (unsigned char)val.data[0] == 0xc0;
    /* The write-back's ctx covers every sibling of the merge, so it
     * replaces them all; its own ctx is the one we answer, so a client
     * writing with it supersedes the write-back too. */
    if (record_decode(c, op->rec.data, op->rec.len, c->ra) < 0 || moor_record_ctx(c->ra, &clock))
        goto out;
    /* A value resolved from expiring ones lives as long as the longest of
     * them (and for good when one of them does): a resolver never makes an
     * expired value come back, nor a lasting one expire. */
    if ((exp = resolved_expiry(c->ra)) != 0) {
        uint64_t now = expiry_now(c);
        ttl = exp > now ? exp - now : 1;
    }
    if (write_version(c, c->ra, clock.data, clock.len, val.data, val.len, deleted, ttl, &rec, &ctx,
                      NULL))
        goto out;
    moor_mp_packer_init(&pk, res);
    if (deleted)
        rc = msgpack_pack_nil(&pk);
    else
        rc = msgpack_pack_map(&pk, 2) | msgpack_pack_str_with_body(&pk, "values", 6) |
             msgpack_pack_array(&pk, 1) | moor_mp_pack_raw(res, val.data, val.len) |
             msgpack_pack_str_with_body(&pk, "ctx", 3) |
             msgpack_pack_bin_with_body(&pk, ctx.data, ctx.len);
    if (rc) {
        res->len = 0;
        goto out;
    }
    write_background(op, &rec, NULL);
    c->st.resolved++;
    resolved = 1;
out:
    moor_buf_free(&val);
    moor_buf_free(&clock);
    moor_buf_free(&rec);
    moor_buf_free(&ctx);
    return resolved;
}

/* Answers res (the get's normal answer), with the receipt if asked. */
static void get_reply(op_t *op, const char *res, size_t rlen)
{
    moor_buf_t out = MOOR_BUF_INIT;

    if (!op->receipt) {
        op_answer(op, 0, NULL, res, rlen);
        return;
    }
    if (pack_receipt_result(op, res, rlen, &out))
        op_fail(op, MOOR_ENOMEM, "no memory for a receipt");
    else
        op_answer(op, 0, NULL, out.data, out.len);
    moor_buf_free(&out);
}

void get_answer_now(op_t *op)
{
    moor_coord_t *c = op->c;
    moor_buf_t res = MOOR_BUF_INIT;
    uint32_t live = 0;

    if (op->rec.len == 0) {
        get_reply(op, nil_mp, 1);
        return;
    }
    if (record_decode(c, op->rec.data, op->rec.len, c->ra) < 0) {
        op_fail(op, MOOR_EINTERNAL, "merged record does not decode");
        return;
    }
    for (uint32_t i = 0; i < c->ra->n; i++)
        live += !c->ra->sib[i].tombstone;
    if (live == 0) {
        get_reply(op, nil_mp, 1);
        return;
    }
    if (!(live > 1 && c->resolve && get_resolve(op, &res))) {
        /* the resolver's turn reused the scratch record: decode again */
        if ((live > 1 && c->resolve && record_decode(c, op->rec.data, op->rec.len, c->ra) < 0) ||
            moor_record_get_result(c->ra, &res)) {
            op_fail(op, MOOR_ENOMEM, "no memory for a get result");
            return;
        }
    }
    get_reply(op, res.data, res.len);
    moor_buf_free(&res);
}

/* Read repair: the final merge to every owner that answered with less
 * (fallbacks hold hints, not the key's data: they are not repaired). */
void get_finish(op_t *op)
{
    moor_coord_t *c = op->c;
    uint8_t pick[MOOR_COORD_N_MAX] = {0};
    uint32_t k = 0;

    int decoded = 0;

    op->finished = 1;
    op_stop_timer(op);
    if (op->rec.len == 0 || op->n == 1) /* one replica: it gave the merge */
        return;
    for (uint32_t i = 0; i < op->n; i++) {
        slot_t *s = &op->slot[i];
        if (s->fblen)
            continue;
        if (s->state == SLOT_MISSING) {
            pick[i] = 1;
        } else if (s->state == SLOT_OK &&
                   !(s->rec.len == op->rec.len && !memcmp(s->rec.data, op->rec.data, s->rec.len))) {
            /* the same bytes are the same versions; else compare them */
            if (!decoded && record_decode(c, op->rec.data, op->rec.len, c->ra) < 0)
                return;
            decoded = 1;
            pick[i] =
                record_decode(c, s->rec.data, s->rec.len, c->rb) >= 0 && !record_same(c->ra, c->rb);
        }
        k += pick[i];
    }
    if (k)
        c->st.read_repairs += write_background(op, &op->rec, pick);
}

/* R replies satisfy a get only with R of them found (notfound_ok =
 * false): a replica that missed the key -- say it was down when it was
 * written -- answers notfound, and while another replica may still have
 * it the get waits, for found replies or for every replica asked.  With
 * a receipt it always waits for every replica (or the deadline). */
static void get_check(op_t *op)
{
    int all = op->ok + op->failed == op->n;

    if (!op->answered) {
        if ((op->found >= op->need || (all && op->ok >= op->need)) && (!op->receipt || all)) {
            get_answer_now(op);
        } else if (op->failed > op->n - op->need) {
            op->c->st.quorum_failures++;
            op_fail(op, MOOR_EQUORUM, "%u of %u replicas answered, %u needed", op->ok, op->n,
                    op->need);
        } else if (op->ok >= op->need && op->found < op->need && !op->waited) {
            op->waited = 1;
            op->c->st.notfound_waits++;
        }
    }
    if (op->c && !op->finished && all)
        get_finish(op);
}

/* 1 if the decoded record holds a live (not deleted) value. */
static int record_live(const moor_record_t *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (!r->sib[i].tombstone)
            return 1;
    return 0;
}

/* A replica's answer: SLOT_OK with its record, SLOT_MISSING or SLOT_FAILED
 * (status: why, for the receipt). */
static void get_slot_done(op_t *op, slot_t *s, int state, const char *rec, size_t rlen, int status)
{
    if (!op->c || s->state != SLOT_PENDING)
        return;
    /* A slot's own record is kept for read repair, which one replica
     * never needs (get_finish finds nothing to compare then). */
    if (state == SLOT_OK && ((op->n > 1 && moor_buf_append(&s->rec, rec, rlen)) ||
                             merge_into(op->c, &op->rec, rec, rlen))) {
        state = SLOT_FAILED;
        status = MOOR_ECORRUPT;
    }
    s->state = state;
    s->rs = state == SLOT_FAILED     ? slot_receipt_status(status)
            : state == SLOT_MISSING  ? RS_NOTFOUND
            : record_live(op->c->rb) ? RS_FOUND /* merge_into left rec decoded there */
                                     : RS_NOTFOUND;
    op->replied++;
    if (state == SLOT_FAILED)
        op->failed++;
    else
        op->ok++;
    op->found += state == SLOT_OK;
    get_check(op);
}

static void get_peer_reply(void *arg, int status, const char *res, size_t rlen)
{
    slot_t *s = arg;
    op_t *op = s->op;
    const char *rec;
    uint32_t n;
    int state = parse_get_answer(&status, res, rlen, &rec, &n);

    op_time_replica(op);
    get_slot_done(op, s, state, rec, n, status);
    op_unref(op);
}

/* The local replica, read at once. */
static void get_local(op_t *op, slot_t *s)
{
    moor_coord_t *c = op->c;
    moor_buf_t cur = MOOR_BUF_INIT;
    uint64_t t0 = op_mark(op);
    int rc = c->store.get(c->store.ud, op->ekey.data, op->ekey.len, &cur);

    op_time_engine(op, t0);
    if (rc == MOOR_ENOTFOUND)
        get_slot_done(op, s, SLOT_MISSING, NULL, 0, 0);
    else
        get_slot_done(op, s, rc ? SLOT_FAILED : SLOT_OK, cur.data, cur.len, rc);
    moor_buf_free(&cur);
}

void moor_coord_get(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg)
{
    moor_buf_t params = MOOR_BUF_INIT;
    char msg[256];
    int code;
    plan_t pl;
    op_t *op;
    int prc;

    c->st.gets++;
    if ((code = plan_levels(c, req, &pl, msg, sizeof(msg))) ||
        (code = plan_replicas(c, req, &pl, pl.r, "r", msg, sizeof(msg)))) {
        done(arg, code, msg, NULL, 0);
        return;
    }
    if (!(op = op_from_plan(c, OP_GET, &pl, req, done, arg)))
        return;
    op->need = pl.r;
    prc = op_all_local(op) ? 0 : pack_params(op, NULL, NULL, 0, &params);
    op_start_timer(op);
    /* Our own replica first: it answers at once, so a failure count
     * includes it (peers that are known down fail at once too). */
    for (uint32_t i = 0; i < op->n && op->c; i++)
        if (op->slot[i].self)
            get_local(op, &op->slot[i]);
    for (uint32_t i = 0; i < op->n && op->c; i++) {
        slot_t *s = &op->slot[i];
        int rc = prc;
        if (s->self)
            continue;
        op->refs++;
        op_time_sent(op);
        if (rc == 0)
            rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_get", params.data, params.len, 1,
                               op->timeout_ms, get_peer_reply, s);
        if (rc) {
            op->refs--;
            get_slot_done(op, s, SLOT_FAILED, NULL, 0, rc);
        }
    }
    moor_buf_free(&params);
    op_unref(op);
}
