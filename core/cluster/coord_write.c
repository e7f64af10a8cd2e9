/*
 * coord_write.c -- coordinated writes (put, del), the blind write's read,
 * and forwarding by a node that is no replica of the key.
 *
 * On a replica: build the next version from the local record (a blind
 * write -- no ctx -- first reads the other replicas for half its time and
 * builds on their merge too), write it locally and send `_put` to the
 * others, answering at W acknowledgements that include the local one.
 * Elsewhere: `_coord` to the first replica, the next if that one does not
 * answer.  See coord.c for the op's lifetime.
 */
#include "coord_internal.h"

/* A write left a key of op's space with nsib siblings: the most so far,
 * and over the space's sibling_warn a warning (at most one a second,
 * saying how many it held back) and a count. */
static void sibling_check(moor_coord_t *c, const op_t *op, uint32_t nsib, uint32_t warn)
{
    uint64_t now;
    char key[200];

    if (nsib > c->st.siblings_most)
        c->st.siblings_most = nsib;
    if (nsib <= warn)
        return;
    c->st.siblings_warned++;
    now = c->clock.now_ms(c->clock.ud);
    if (c->sib_warn_ms && now < c->sib_warn_ms + 1000) {
        c->sib_warn_quiet++;
        return;
    }
    moor_log_escape(op->sk.data + op->slen, op->klen, key, sizeof(key));
    moor_log_warn("space '%.*s', key \"%s\": %u siblings, more than sibling_warn = %u (writes "
                  "without the ctx of a read, or concurrent ones; %llu such warnings held "
                  "back since the last)",
                  (int)op->slen, op->sk.data, key, nsib, warn,
                  (unsigned long long)c->sib_warn_quiet);
    c->sib_warn_ms = now ? now : 1;
    c->sib_warn_quiet = 0;
}

/* The sibling limits of op's space. */
static void sibling_limits(moor_coord_t *c, const op_t *op, uint32_t *warn, uint32_t *max)
{
    *warn = MOOR_COORD_SIBLING_WARN;
    *max = MOOR_COORD_SIBLING_MAX;
    if (c->siblings)
        c->siblings(c->siblings_ud, op->sk.data, op->slen, warn, max);
}

/* An overwrite's ctx: the whole clock of the record it builds on (every
 * sibling, tombstones too), merged with the client's ctx when it gave one,
 * so the write descends everything the coordinator saw.  0, MOOR_EBADCTX,
 * MOOR_ENOMEM. */
static int overwrite_ctx(const moor_record_t *r, const char *ctx, size_t ctxlen, moor_buf_t *out)
{
    moor_vclock_t vc, given;
    const char *p = ctx;

    moor_record_ctx_vc(r, &vc);
    if (ctxlen) {
        if (moor_vclock_decode(&p, ctx + ctxlen, &given) || p != ctx + ctxlen)
            return moor_diag(MOOR_EBADCTX, "ctx does not decode");
        if (moor_vclock_merge(&vc, &given))
            return moor_diag(MOOR_EBADCTX, "ctx and the key's clock hold more entries than a "
                                           "clock can");
    }
    return moor_vclock_encode(&vc, out);
}

/* The next version of a key for a client write, coordinated here as one
 * of its replicas: the local record (none when missing), merged with
 * op->seen (what a blind write read from the other replicas; empty: none),
 * with the write applied (write_version) -- the siblings the ctx covers
 * are replaced, the others kept, and the write adds one.  A blind write
 * on a key with sibling_max or more siblings is refused.  Appends the
 * record to rec and its ctx to ctx_out.  0, MOOR_EBADCTX, MOOR_ECORRUPT
 * (stored record), MOOR_ETOOMANYSIBS, MOOR_ENOMEM or the store's error. */
static int build_write(moor_coord_t *c, op_t *op, const char *ctx, size_t ctxlen, const char *value,
                       size_t vlen, int tombstone, moor_buf_t *rec, moor_buf_t *ctx_out)
{
    moor_buf_t cur = MOOR_BUF_INIT, acc = MOOR_BUF_INIT, octx = MOOR_BUF_INIT;
    const moor_buf_t *base = &cur; /* the record to build on; empty: none */
    moor_record_t *r = NULL;
    uint32_t warn, max, nsib = 0;
    uint64_t t0 = op_mark(op);
    int rc = c->store.get(c->store.ud, op->ekey.data, op->ekey.len, &cur);

    op_time_engine(op, t0);
    if (rc == MOOR_ENOTFOUND)
        cur.len = 0;
    else if (rc)
        goto out;
    if (op->seen.len) {
        if ((rc = moor_buf_append(&acc, op->seen.data, op->seen.len)) ||
            (cur.len && (rc = merge_into(c, &acc, cur.data, cur.len))))
            goto out;
        base = &acc;
    }
    if (base->len) {
        if ((rc = record_decode(c, base->data, base->len, c->ra)) < 0)
            goto out;
        r = c->ra;
    }
    sibling_limits(c, op, &warn, &max);
    if (op->overwrite && r) {
        if ((rc = overwrite_ctx(r, ctx, ctxlen, &octx)))
            goto out;
        ctx = octx.data;
        ctxlen = octx.len;
    }
    if (ctxlen == 0 && r && r->n >= max) {
        c->st.siblings_refused++;
        rc = moor_diag(MOOR_ETOOMANYSIBS,
                       "the key has %u siblings (sibling_max = %u): a write without a ctx would "
                       "add one more; read the key and write back with its ctx, or give the "
                       "keyspace a resolver",
                       r->n, max);
        goto out;
    }
    if ((rc = write_version(c, r, ctx, ctxlen, value, vlen, tombstone, op->ttl_ms, rec, ctx_out,
                            &nsib)) == 0) {
        sibling_check(c, op, nsib, warn);
        /* rec holds every version of cur it did not replace: written here
         * in this same turn it needs no second merge (write_to) */
        moor_buf_free(&op->base);
        op->base = cur;
        cur = (moor_buf_t)MOOR_BUF_INIT;
        op->built = 1;
    }
out:
    moor_buf_free(&octx);
    moor_buf_free(&acc);
    moor_buf_free(&cur);
    return rc;
}

/* ---- writes ------------------------------------------------------------------------- */

int write_quorum_met(const op_t *op)
{
    return op->ok >= op->need && (!op->local || op->local->state == SLOT_OK);
}

void write_answer_now(op_t *op)
{
    moor_buf_t res = MOOR_BUF_INIT;

    op_stop_timer(op);
    if (op->fb_acks)
        op->c->st.sloppy_writes++;
    if (!op->receipt) {
        op_answer(op, 0, NULL, op->result.data, op->result.len);
        return;
    }
    if (pack_receipt_result(op, op->result.data, op->result.len, &res))
        op_fail(op, MOOR_ENOMEM, "no memory for a receipt");
    else
        op_answer(op, 0, NULL, res.data, res.len);
    moor_buf_free(&res);
}

static void write_check(op_t *op)
{
    if (op->answered)
        return;
    if (op->local && op->local->state == SLOT_FAILED) {
        int why = op->local->err;
        op->c->st.quorum_failures++;
        op_stop_timer(op);
        /* A full or read-only disk here is what the client must hear,
         * and on a node alone (every replica local) whatever the store
         * said: there is no other replica to blame. */
        if (why && (why == MOOR_ENOSPC || why == MOOR_EFAILED || op_all_local(op)))
            op_fail(op, why,
                    "%u of %u replicas acknowledged, %u needed; this node's own write "
                    "failed: %s",
                    op->ok, op->n, op->need, moor_strerror(why));
        else
            op_fail(op, MOOR_EQUORUM,
                    "%u of %u replicas acknowledged, %u needed, and the "
                    "coordinating replica's own write failed",
                    op->ok, op->n, op->need);
    } else if (write_quorum_met(op)) {
        /* With a receipt: every replica asked answers first (or the
         * deadline comes), so the receipt says what each did. */
        if (!op->receipt || op->replied == op->used)
            write_answer_now(op);
    } else if (op->failed > op->n - op->need && !(op->local && op->local->state == SLOT_PENDING)) {
        /* Out of reach -- but wait for our own write, so the count says
         * whether the value was stored here. */
        op->c->st.quorum_failures++;
        op_stop_timer(op);
        op_fail(op, MOOR_EQUORUM, "%u of %u replicas acknowledged, %u needed%s", op->ok, op->n,
                op->need,
                op->sloppy ? ""
                           : " (sloppy = false: acks of fallbacks for down owners "
                             "do not count)");
    }
}

static void write_peer_reply(void *arg, int status, const char *res, size_t rlen);
static void write_slot_done(op_t *op, slot_t *s, int status);
static void write_local_done_fn(void *arg, int status);

/* Sends op->rec to slot s: the local store, `_put` to an owner, or `_put`
 * with fallback_for to a fallback.  0, or the error (no reply follows). */
static int write_to(op_t *op, slot_t *s, uint32_t timeout_ms)
{
    moor_coord_t *c = op->c;
    moor_buf_t params = MOOR_BUF_INIT;
    int rc;

    if (s->self)
        op->t_local = op_mark(op);
    if (s->self && !s->fblen && op->built) {
        op->built = 0;
        rc = c->store.put(c->store.ud, op->ekey.data, op->ekey.len, op->rec.data, op->rec.len,
                          write_local_done_fn, s);
        if (rc == 0 && c->on_write)
            c->on_write(c->on_write_ud, op->ekey.data, op->ekey.len,
                        op->base.len ? op->base.data : NULL, op->base.len, op->rec.data,
                        op->rec.len);
        return rc;
    }
    if (s->self && !s->fblen)
        return local_merge(c, op->ekey.data, op->ekey.len, op->rec.data, op->rec.len,
                           write_local_done_fn, s);
    if (s->fblen)
        c->st.fallback_writes++;
    if (s->self) /* this node stands in for a down owner: a hint */
        rc = c->hint_put ? c->hint_put(c->hint_ud, s->fb, s->fblen, op->sk.data, op->slen,
                                       op->sk.data + op->slen, op->klen, op->rec.data, op->rec.len,
                                       write_local_done_fn, s)
                         : moor_diag(MOOR_EUNAVAIL, "this node keeps no hints");
    else if ((rc = pack_params(op, &op->rec, s->fb, s->fblen, &params)) == 0) {
        op_time_sent(op);
        rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_put", params.data, params.len, 1,
                           timeout_ms, write_peer_reply, s);
    }
    if (rc == MOOR_ETOOLARGE)
        moor_log_warn("a record of %zu bytes in space '%.*s' is over the frame limit: not "
                      "replicated to '%.*s'",
                      op->rec.len, (int)op->slen, op->sk.data, (int)s->idlen, s->id);
    moor_buf_free(&params);
    return rc;
}

/* The owner (or fallback) of slot s did not answer in time or could not
 * be reached: the next spare healthy member gets the write instead, as a
 * fallback for the same owner, while the deadline is ahead.  1 if one was
 * asked (the position is not lost yet), else 0. */
static int write_substitute(op_t *op, slot_t *s, int status)
{
    moor_coord_t *c = op->c;

    if (!op->c || op->kind != OP_WRITE || !op->deadline || s->spare || s->self ||
        slot_receipt_status(status) == RS_ERROR || c->clock.now_ms(c->clock.ud) >= op->deadline)
        return 0;
    while (op->used < op->nslots) {
        slot_t *f = &op->slot[op->used++];
        int rc;
        f->spare = 0;
        f->fblen = s->fblen ? s->fblen : s->idlen;
        memcpy(f->fb, s->fblen ? s->fb : s->id, f->fblen);
        op->refs++;
        if ((rc = write_to(op, f, op_remaining_ms(op))) == 0)
            return 1;
        op->refs--;
        op->replied++;
        f->state = SLOT_FAILED;
        f->rs = slot_receipt_status(rc);
    }
    return 0;
}

/* A slot's answer: status 0 (acknowledged) or the failure.  An owner's
 * ack counts toward W; a fallback's when the write is sloppy. */
static void write_slot_done(op_t *op, slot_t *s, int status)
{
    if (!op->c || s->state != SLOT_PENDING)
        return;
    s->state = status ? SLOT_FAILED : SLOT_OK;
    s->rs = slot_receipt_status(status);
    s->err = status;
    op->replied++;
    if (status == 0 && (!s->fblen || op->sloppy)) {
        op->ok++;
        op->fb_acks += s->fblen != 0;
    } else if (status == 0 || !write_substitute(op, s, status)) {
        op->failed++; /* this position can no longer give a counted ack */
    }
    write_check(op);
}

static void write_peer_reply(void *arg, int status, const char *res, size_t rlen)
{
    slot_t *s = arg;
    op_t *op = s->op;

    if (status == 0 && !(rlen == 1 && (unsigned char)res[0] == 0xc3))
        status = MOOR_EPROTO;
    op_time_replica(op);
    write_slot_done(op, s, status);
    op_unref(op);
}

static void write_local_done_fn(void *arg, int status)
{
    slot_t *s = arg;
    op_t *op = s->op;

    op_time_engine(op, op->t_local);
    write_slot_done(op, s, status);
    op_unref(op);
}

/* Sends op->rec to every slot, then waits (done set; the caller started
 * the deadline) or lets the replies drain (background).  An owner asked
 * while spares could stand in for it gets half the time left, so a
 * fallback can still take the write if it stays silent.  Drops the start
 * guard. */
static void write_send(op_t *op)
{
    uint32_t left = op_remaining_ms(op);

    for (uint32_t i = 0; i < op->n && op->c; i++) {
        slot_t *s = &op->slot[i];
        uint32_t tmo =
            op->sloppy && op->used < op->nslots && !s->fblen && left > 1 ? left / 2 : left;
        int rc;
        op->refs++;
        if ((rc = write_to(op, s, tmo))) {
            op->refs--;
            write_slot_done(op, s, rc);
        }
    }
    op_unref(op);
}

/* A background write of rec to the replicas named by slots[i] for each
 * chosen i (all when pick is NULL), answered to nobody; fallbacks get it
 * as hints for their owners.  Returns how many replicas it went to. */
uint32_t write_background(op_t *from, const moor_buf_t *rec, const uint8_t *pick)
{
    moor_coord_t *c = from->c;
    uint32_t k = 0, j = 0;
    op_t *op;

    for (uint32_t i = 0; i < from->n; i++)
        k += !pick || pick[i];
    if (k == 0 || !(op = op_new(c, OP_WRITE, k)))
        return 0;
    op->timeout_ms = from->timeout_ms;
    for (uint32_t i = 0; i < from->n; i++)
        if (!pick || pick[i]) {
            slot_t *s = &op->slot[j];
            op_set_target(op, j++, from->slot[i].id, from->slot[i].idlen);
            s->fblen = from->slot[i].fblen;
            memcpy(s->fb, from->slot[i].fb, s->fblen);
        }
    if (op_set_key(op, from->sk.data, from->slen, from->sk.data + from->slen, from->klen) ||
        moor_buf_append(&op->rec, rec->data, rec->len)) {
        op_unref(op);
        return 0;
    }
    write_send(op);
    return k;
}

/* {ctx = bin} */
static int pack_ctx_result(moor_buf_t *out, const moor_buf_t *ctx)
{
    msgpack_packer pk;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_map(&pk, 1);
    rc |= msgpack_pack_str_with_body(&pk, "ctx", 3);
    rc |= msgpack_pack_bin_with_body(&pk, ctx->data, ctx->len);
    return rc ? MOOR_ENOMEM : 0;
}

/* 1 if this node is one of the key's owners that are up (a fallback
 * never coordinates for an owner). */
static int plan_has_self(const moor_coord_t *c, const plan_t *pl)
{
    for (uint32_t i = 0; i < pl->count; i++) {
        const moor_member_t *m = moor_ring_member(c->ring, pl->idx[i]);
        if (pl->fb[i] < 0 && m->idlen == c->idlen && memcmp(m->id, c->id, c->idlen) == 0)
            return 1;
    }
    return 0;
}

/* 0 if ctx (ctxlen 0: none) is one whole clock with every entry within
 * bounds (moor_vclock_check_bounds: nothing forged more than a day ahead),
 * else MOOR_EBADCTX.  Checked before any replica is asked. */
static int check_ctx(moor_coord_t *c, const char *ctx, size_t ctxlen)
{
    moor_vclock_t vc;
    const char *p = ctx;

    if (ctxlen == 0)
        return 0;
    if (moor_vclock_decode(&p, ctx + ctxlen, &vc))
        return moor_diag_wrap(MOOR_EBADCTX, moor_diag_last()->code, "ctx");
    if (p != ctx + ctxlen)
        return moor_diag(MOOR_EBADCTX, "ctx: %zu bytes after the clock",
                         (size_t)(ctx + ctxlen - p));
    return moor_vclock_check_bounds(&vc, c->clock.now_ms(c->clock.ud), "ctx");
}

static void forward_call(moor_coord_t *c, const plan_t *pl, const moor_coord_req_t *req,
                         int tombstone, moor_coord_done_fn done, void *arg);

/* Builds the next version (build_write) and sends it to every replica;
 * on failure answers the error.  Drops a reference the caller took. */
/* The members that will own op's key once the joins and leaves in
 * progress end (c->pending) and are not among the replicas op asks get
 * its record too, in the background (coord.h moor_coord_set_pending). */
static void write_pending(op_t *op)
{
    moor_coord_t *c = op->c;
    struct {
        uint8_t len;
        char id[MOOR_RING_ID_MAX];
    } to[MOOR_COORD_PENDING_MAX * MOOR_COORD_N_MAX];
    uint32_t nto = 0, list[MOOR_COORD_N_MAX], cnt;
    uint64_t token;
    op_t *bg;

    if (!c || c->npending == 0 || op->pn == 0 || op->pn > MOOR_COORD_N_MAX ||
        moor_ring_key_token(op->sk.data, op->slen, op->sk.data + op->slen, op->klen, &token))
        return;
    for (uint32_t r = 0; r < c->npending; r++) {
        if (moor_ring_preference_list(c->pending[r], token, op->pn, list, &cnt))
            continue;
        for (uint32_t j = 0; j < cnt; j++) {
            const moor_member_t *m = moor_ring_member(c->pending[r], list[j]);
            int dup = m->status == MOOR_MEMBER_DOWN || m->status == MOOR_MEMBER_LEFT;
            for (uint32_t i = 0; i < op->used && !dup; i++)
                dup = op->slot[i].idlen == m->idlen && !memcmp(op->slot[i].id, m->id, m->idlen);
            for (uint32_t i = 0; i < nto && !dup; i++)
                dup = to[i].len == m->idlen && !memcmp(to[i].id, m->id, m->idlen);
            if (dup)
                continue;
            to[nto].len = m->idlen;
            memcpy(to[nto++].id, m->id, m->idlen);
        }
    }
    if (nto == 0 || !(bg = op_new(c, OP_WRITE, nto)))
        return;
    bg->timeout_ms = op->timeout_ms;
    for (uint32_t i = 0; i < nto; i++)
        op_set_target(bg, i, to[i].id, to[i].len);
    if (op_set_key(bg, op->sk.data, op->slen, op->sk.data + op->slen, op->klen) ||
        moor_buf_append(&bg->rec, op->rec.data, op->rec.len)) {
        op_unref(bg);
        return;
    }
    c->st.pending_writes += nto;
    write_send(bg);
}

static void write_go(op_t *op, const char *ctx, size_t ctxlen, const char *value, size_t vlen,
                     int tombstone)
{
    moor_buf_t nctx = MOOR_BUF_INIT;
    int rc = build_write(op->c, op, ctx, ctxlen, value, vlen, tombstone, &op->rec, &nctx);

    if (rc == 0)
        rc = tombstone ? moor_buf_append(&op->result, true_mp, 1)
                       : pack_ctx_result(&op->result, &nctx);
    moor_buf_free(&nctx);
    if (rc) {
        op_stop_timer(op);
        op_fail(op, rc, "%s", moor_diag_msg(rc));
        op_unref(op);
        return;
    }
    write_pending(op);
    write_send(op);
}

/* A blind write's read is over (enough answers, every replica replied,
 * its time is up, or the deadline passed): stop listening; unless the op
 * was already answered, build on what was seen and send. */
static void blind_read_end(op_t *op)
{
    op->reading = 0;
    op_stop_timer_at(op, &op->rtimer);
    if (op->answered)
        return;
    op->refs++; /* for write_go */
    write_go(op, NULL, 0, op->value.data, op->value.len, op->tombstone);
}

/* Another replica's answer to the read: ok with its record (rec NULL: it
 * has none), or a failure, which only counts as no answer (as does a
 * fallback that has none). */
static void blind_read_slot(op_t *op, slot_t *s, int ok, const char *rec, size_t rlen)
{
    if (!op->c || !op->reading || s->rstate != SLOT_PENDING)
        return;
    if (ok && rec && merge_into(op->c, &op->seen, rec, rlen))
        ok = 0;
    if (ok && !rec && s->fblen)
        ok = 0; /* a fallback's notfound: it holds hints, not the key's data */
    s->rstate = ok ? SLOT_OK : SLOT_FAILED;
    if (ok)
        op->rok++;
    else
        op->rfailed++;
    if (op->rok >= op->rneed || op->rok + op->rfailed == op->n - 1)
        blind_read_end(op);
}

static void blind_read_reply(void *arg, int status, const char *res, size_t rlen)
{
    slot_t *s = arg;
    op_t *op = s->op;
    const char *rec;
    uint32_t n;
    int state = parse_get_answer(&status, res, rlen, &rec, &n);

    op_time_replica(op);
    blind_read_slot(op, s, state != SLOT_FAILED, rec, n);
    op_unref(op);
}

static void blind_read_timeout(void *arg)
{
    op_t *op = arg;

    op->rtimer = 0; /* fired: its reference is ours to drop */
    if (op->c && op->reading)
        blind_read_end(op);
    op_unref(op);
}

/* A write without a ctx, coordinated here: first read the key from the
 * other replicas (`_get`) and wait for r - 1 answers, so the version built
 * descends what a read quorum holds -- a replica that missed a delete
 * would otherwise add the new value beside the deleted one it still holds.
 * Failures count as no answer; with too few answers the write goes ahead
 * on what it has.  The read gets half the call's time, the write the
 * rest.  Drops the start guard. */
static void blind_read(op_t *op, uint32_t r, const char *value, size_t vlen, int tombstone)
{
    moor_coord_t *c = op->c;
    moor_buf_t params = MOOR_BUF_INIT;
    uint32_t rms = op->timeout_ms / 2 ? op->timeout_ms / 2 : 1;
    int prc;

    op->tombstone = tombstone;
    op->rneed = r - 1 < op->n - 1 ? r - 1 : op->n - 1;
    if (op->rneed == 0) {
        write_go(op, NULL, 0, value, vlen, tombstone);
        return;
    }
    if (!tombstone && moor_buf_append(&op->value, value, vlen)) {
        op_stop_timer(op);
        op_fail(op, MOOR_ENOMEM, "no memory for a write");
        op_unref(op);
        return;
    }
    op->reading = 1;
    prc = pack_params(op, NULL, NULL, 0, &params);
    op->rtimer = c->clock.timer_start(c->clock.ud, rms, blind_read_timeout, op);
    if (op->rtimer)
        op->refs++;
    for (uint32_t i = 0; i < op->n && op->c && op->reading; i++) {
        slot_t *s = &op->slot[i];
        int rc = prc;
        if (s->self)
            continue;
        op->refs++;
        op_time_sent(op);
        if (rc == 0)
            rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_get", params.data, params.len, 1, rms,
                               blind_read_reply, s);
        if (rc) {
            op->refs--;
            blind_read_slot(op, s, 0, NULL, 0);
        }
    }
    moor_buf_free(&params);
    op_unref(op);
}

/* A client write.  On a replica of the key: read the local record (a
 * blind write: and the other replicas' first), build the next version,
 * write it here and send it to the other replicas.
 * Elsewhere: forward it to a replica (from_peer: refuse, so a ring that
 * disagrees between nodes never bounces a write around). */
void write_call(moor_coord_t *c, const moor_coord_req_t *req, int tombstone, int from_peer,
                moor_coord_done_fn done, void *arg)
{
    size_t ctxlen = req->ctx ? req->ctxlen : 0;
    char msg[256];
    int code;
    plan_t pl;
    op_t *op;
    int rc;

    if (!tombstone && !moor_record_value_ok(req->value, req->vlen)) {
        answer_fmt(done, arg, MOOR_EINVAL,
                   "value is not one MessagePack object nested at most %d deep",
                   MOOR_RECORD_VALUE_DEPTH);
        return;
    }
    if ((code = plan_levels(c, req, &pl, msg, sizeof(msg)))) {
        done(arg, code, msg, NULL, 0);
        return;
    }
    if ((rc = check_ctx(c, req->ctx, ctxlen))) {
        answer_fmt(done, arg, rc, "%s", moor_diag_msg(rc));
        return;
    }
    if ((code = plan_replicas(c, req, &pl, pl.w, "w", msg, sizeof(msg)))) {
        done(arg, code, msg, NULL, 0);
        return;
    }
    if (!plan_has_self(c, &pl)) {
        if (from_peer)
            answer_fmt(done, arg, MOOR_EUNAVAIL, "node '%.*s' is not a replica of this key here",
                       (int)c->idlen, c->id);
        else if (pl.nhealthy == 0)
            answer_fmt(done, arg, MOOR_EUNAVAIL,
                       "every owner of the key is down (%u of them); a fallback never "
                       "coordinates for an owner",
                       pl.nowners);
        else
            forward_call(c, &pl, req, tombstone, done, arg);
        return;
    }
    if (!(op = op_from_plan(c, OP_WRITE, &pl, req, done, arg)))
        return;
    op->need = pl.w;
    for (uint32_t i = 0; i < op->n; i++)
        if (op->slot[i].self)
            op->local = &op->slot[i];
    op_start_timer(op);
    if (ctxlen)
        write_go(op, req->ctx, ctxlen, req->value, req->vlen, tombstone);
    else
        blind_read(op, pl.r, req->value, req->vlen, tombstone);
}

/* ---- forwarding --------------------------------------------------------------------- */

/* 1 if a forward's failure means the replica never took the request (no
 * answer in time, no connection, going away), so the next may try. */
/* Worth trying the next owner: no answer, or UNAVAILABLE -- answered
 * before anything was written (the replica's ring, newer or older than
 * ours during a join or leave, does not make it an owner of the key). */
static int forward_retryable(int status)
{
    int rs = slot_receipt_status(status);

    return rs == RS_TIMEOUT || rs == RS_DOWN || status == MOOR_EUNAVAIL;
}

static void forward_reply(void *arg, int status, const char *res, size_t rlen);

/* Gives up: TIMEOUT when every attempt timed out, else QUORUM_FAILED. */
static void forward_give_up(op_t *op)
{
    moor_coord_t *c = op->c;

    if (op->tries && op->timedout == op->tries) {
        c->st.timeouts++;
        op_fail(op, MOOR_ETIMEDOUT,
                "no replica answered the forwarded write within %u ms (%u tried)", op->timeout_ms,
                op->tries);
    } else {
        c->st.quorum_failures++;
        op_fail(op, MOOR_EQUORUM,
                "0 of %u replicas acknowledged, %u needed: %u forwards "
                "failed (last: %s)",
                op->n, op->need, op->tries, op->why[0] ? op->why : "no replica to try");
    }
}

/* Sends the write to the next replica, up to FWD_TRIES attempts; gives up
 * after the last.  REQUIRES: the caller holds a reference. */
static void forward_next(op_t *op)
{
    moor_coord_t *c = op->c;

    while (op->tries < FWD_TRIES && op->next_slot < op->n) {
        slot_t *s = &op->slot[op->next_slot++];
        int rc;
        if (s->fblen) /* only an owner that is up coordinates */
            continue;
        op->tries++;
        op->refs++;
        op_time_sent(op);
        rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_coord", op->rec.data, op->rec.len, 1,
                           op->timeout_ms, forward_reply, s);
        if (rc == 0)
            return;
        op->refs--;
        snprintf(op->why, sizeof(op->why), "replica '%.*s': %s", (int)s->idlen, s->id,
                 moor_err_name(rc));
        if (rc == MOOR_ETIMEDOUT)
            op->timedout++;
    }
    forward_give_up(op);
}

static void forward_reply(void *arg, int status, const char *res, size_t rlen)
{
    slot_t *s = arg;
    op_t *op = s->op;
    const char *p = res;

    if (!op->c || op->answered) {
        op_unref(op);
        return;
    }
    op_time_replica(op);
    if (status == 0 && rlen && moor_mp_skip(&p, res + rlen, MOOR_MP_MAX_DEPTH) == 0 &&
        p == res + rlen) {
        op_answer(op, 0, NULL, res, rlen);
    } else if (status == 0) {
        op_fail(op, MOOR_EINTERNAL, "replica '%.*s' answered the write with malformed bytes",
                (int)s->idlen, s->id);
    } else if (forward_retryable(status)) {
        if (status == MOOR_ETIMEDOUT)
            op->timedout++;
        snprintf(op->why, sizeof(op->why), "replica '%.*s': %s", (int)s->idlen, s->id,
                 moor_err_name(status));
        forward_next(op);
    } else {
        /* The transport mapped the replica's error name to a code (the
         * one table, err.h); its message is in the diagnostic. */
        if (status == MOOR_EQUORUM)
            op->c->st.quorum_failures++;
        op_fail(op, status, "%s", moor_diag_msg(status));
    }
    op_unref(op);
}

/* _coord {op, space, key, value (put), ctx?, n, w, timeout_ms, sloppy,
 * receipt, overwrite?, ttl_ms?} */
static int pack_forward(op_t *op, const plan_t *pl, const moor_coord_req_t *req, int tombstone,
                        uint32_t remote_ms)
{
    msgpack_packer pk;
    moor_buf_t *out = &op->rec;
    int has_ctx = req->ctx && req->ctxlen;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |=
        msgpack_pack_map(&pk, 8 + !tombstone + has_ctx + (pl->overwrite != 0) + (pl->ttl_ms != 0));
    rc |= msgpack_pack_str_with_body(&pk, "op", 2);
    rc |= msgpack_pack_str_with_body(&pk, tombstone ? "del" : "put", 3);
    rc |= msgpack_pack_str_with_body(&pk, "space", 5);
    rc |= msgpack_pack_str_with_body(&pk, op->sk.data, op->slen);
    rc |= msgpack_pack_str_with_body(&pk, "key", 3);
    rc |= msgpack_pack_bin_with_body(&pk, op->sk.data + op->slen, op->klen);
    if (!tombstone) {
        rc |= msgpack_pack_str_with_body(&pk, "value", 5);
        rc |= moor_mp_pack_raw(out, req->value, req->vlen);
    }
    if (has_ctx) {
        rc |= msgpack_pack_str_with_body(&pk, "ctx", 3);
        rc |= msgpack_pack_bin_with_body(&pk, req->ctx, req->ctxlen);
    }
    rc |= msgpack_pack_str_with_body(&pk, "n", 1) | msgpack_pack_uint32(&pk, pl->n);
    rc |= msgpack_pack_str_with_body(&pk, "w", 1) | msgpack_pack_uint32(&pk, pl->w);
    rc |= msgpack_pack_str_with_body(&pk, "timeout_ms", 10) | msgpack_pack_uint32(&pk, remote_ms);
    rc |= msgpack_pack_str_with_body(&pk, "sloppy", 6);
    rc |= pl->sloppy ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    rc |= msgpack_pack_str_with_body(&pk, "receipt", 7);
    rc |= pl->receipt ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    if (pl->overwrite) /* only when set: a member of an older release refuses the field */
        rc |= msgpack_pack_str_with_body(&pk, "overwrite", 9) | msgpack_pack_true(&pk);
    if (pl->ttl_ms) /* the same */
        rc |= msgpack_pack_str_with_body(&pk, "ttl_ms", 6) | msgpack_pack_uint64(&pk, pl->ttl_ms);
    return rc ? MOOR_ENOMEM : 0;
}

/* This node is no replica of the key: the first replica that answers
 * coordinates the write (the request to it times out at timeout_ms; the
 * replica gets three quarters of that for its quorum, so its answer
 * normally comes back before). */
static void forward_call(moor_coord_t *c, const plan_t *pl, const moor_coord_req_t *req,
                         int tombstone, moor_coord_done_fn done, void *arg)
{
    uint32_t remote_ms = pl->timeout_ms - pl->timeout_ms / 4;
    op_t *op = op_from_plan(c, OP_FORWARD, pl, req, done, arg);

    if (!op)
        return;
    op->need = pl->w;
    if (pack_forward(op, pl, req, tombstone, remote_ms ? remote_ms : 1)) {
        op_fail(op, MOOR_ENOMEM, "no memory for a write");
        op_unref(op);
        return;
    }
    forward_next(op);
    op_unref(op);
}

void moor_coord_put(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg)
{
    c->st.puts++;
    write_call(c, req, 0, 0, done, arg);
}

void moor_coord_del(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg)
{
    c->st.dels++;
    write_call(c, req, 1, 0, done, arg);
}
