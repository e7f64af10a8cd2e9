/*
 * coord.c -- the coordinator: operation lifetime, planning a call over the
 * ring, the deadline, and the public new/free/set_ring/stats.  The rest of
 * the coordinator is in coord_hlc.c, coord_write.c, coord_read.c and
 * coord_replica.c (coord_internal.h tells which does what).
 *
 * Design.  Every client call becomes one op: the replica set of the key
 * (plan_members: the first n healthy members, an owner that is down
 * replaced in place by a fallback tagged with it; copied out of the ring
 * at the start, so a ring change never touches a call in flight), one slot
 * per replica, then for writes one unasked slot per spare healthy member,
 * a deadline timer, and the caller's done.  A write is coordinated by an
 * owner that is up: the next version is built from the local record
 * (build_write) and sent to every replica, answering at W counted
 * acknowledgements that include the local one; a slot whose replica does
 * not answer in time or cannot be reached hands its position to the next
 * spare (write_substitute), as a fallback for the same owner.  A write
 * without a ctx (blind) first reads the other replicas (`_get`,
 * blind_read) for half its time, until R - 1 answered or all replied, and
 * builds on the merge of what it read and the local record, so its version
 * descends what a read quorum holds.  Elsewhere the op is a forward
 * (OP_FORWARD) that sends `_coord` to the first owner that is up, then the
 * next if that one never answers.  A read asks every replica, folds each
 * reply into a running merge (moor_record_merge), answers at R replies
 * that found the key (or when all replied, or at the deadline with R
 * replies), and keeps listening until every replica answered or the
 * deadline passed, then read-repairs the owners that answered with less.
 * Each slot keeps what its replica answered for the receipt (op->receipt:
 * the answer then waits for every slot asked).  The replica of this node
 * is the local store, reached directly instead of through the transport.
 *
 * Versions: moor_record_write applies the write to the local record, then
 * this node's entry is raised to a hybrid logical clock, max(last + 1,
 * now_ms * 1000, the merged entry + 1), so it grows strictly, stays near
 * wall-clock time across restarts, and is never handed out twice -- a node
 * that lost unsynced writes in a crash reads an older local record, and
 * reusing its counters would make a new version look like the descendant
 * of a lost one it never saw.  Everything is derived from the env (no
 * rand(), no real clock), so a simulated cluster replays exactly.
 *
 * Failures: MOOR_EQUORUM once so many replicas failed that the quorum is
 * out of reach, or at the deadline when some replica answered;
 * MOOR_ETIMEDOUT at the deadline when none answered at all; MOOR_EUNAVAIL
 * when the ring holds fewer (healthy) members than the quorum.  Replies after the answer are
 * absorbed (the write still happened there; a read's late reply still feeds repair).
 *
 * Lifetime: an op holds one reference per outstanding env callback (peer
 * reply, store done, its timer) plus one while it is being started, and is
 * freed when the last one goes.  It is answered before that: once every
 * replica replied, either the quorum was met or it cannot be.  When the
 * coordinator is freed, ops in flight are answered SHUTTING_DOWN, their
 * timers stopped, and detached (op->c = NULL); their outstanding callbacks,
 * which env.h promises to run exactly once, then only drop references.
 *
 * Scratch records (ra, rb, rw) are only used between calls out of this file
 * (done, resolve, transport, store), never across one.  One thread.
 */
#include "coord_internal.h"

const char nil_mp[2] = "\xc0", true_mp[2] = "\xc3";

void answer_fmt(moor_coord_done_fn done, void *arg, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void answer_fmt(moor_coord_done_fn done, void *arg, int code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    done(arg, code, msg, NULL, 0);
}

/* ---- ops: lifetime ------------------------------------------------------------------ */

/* Ops kept for reuse (at most), and the buffer capacity a kept op may
 * hold on to: an op per request in flight, with its buffers, is the
 * allocation a request would otherwise make most often. */
#if defined(__SANITIZE_ADDRESS__)
#define OP_SPARE_MAX 0 /* ASan: every op freed, so a use after the end is caught */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OP_SPARE_MAX 0
#endif
#endif
#ifndef OP_SPARE_MAX
#define OP_SPARE_MAX 512
#endif
#define OP_SPARE_BUF 1024

/* The buffers of op (cap at most MOOR_COORD_N_MAX * 4), for clearing and
 * keeping across reuse. */
static void op_bufs(op_t *op, moor_buf_t **b, uint32_t *nb)
{
    uint32_t k = 0;

    b[k++] = &op->sk, b[k++] = &op->ekey, b[k++] = &op->rec, b[k++] = &op->result;
    b[k++] = &op->value, b[k++] = &op->seen, b[k++] = &op->base;
    for (uint32_t i = 0; i < op->cap; i++)
        b[k++] = &op->slot[i].rec;
    *nb = k;
}

#define OP_BUFS_MAX (7 + MOOR_COORD_N_MAX * 4)

/* A spare op with room for nslots, its buffers empty but kept; NULL if
 * none fits. */
static op_t *op_take_spare(moor_coord_t *c, uint32_t nslots)
{
    op_t **pp = &c->spare, *op;
    moor_buf_t keep[OP_BUFS_MAX], *b[OP_BUFS_MAX];
    uint32_t nb, cap;

    for (; (op = *pp); pp = &op->spare_next)
        if (op->cap >= nslots)
            break;
    if (!op)
        return NULL;
    *pp = op->spare_next;
    c->nspare--;
    cap = op->cap;
    op_bufs(op, b, &nb);
    for (uint32_t i = 0; i < nb; i++)
        keep[i] = *b[i];
    memset(op, 0, sizeof(*op) + cap * sizeof(slot_t));
    op->cap = cap;
    op_bufs(op, b, &nb);
    for (uint32_t i = 0; i < nb; i++) {
        *b[i] = keep[i];
        b[i]->len = 0;
    }
    return op;
}

op_t *op_new(moor_coord_t *c, int kind, uint32_t nslots)
{
    op_t *op = nslots <= MOOR_COORD_N_MAX * 4 ? op_take_spare(c, nslots) : NULL;

    if (!op) {
        /* at least 4 slots, so a kept op fits most later requests */
        uint32_t cap = nslots < 4 ? 4 : nslots;
        if (!(op = calloc(1, sizeof(*op) + cap * sizeof(slot_t))))
            return NULL;
        op->cap = cap;
    }
    op->c = c;
    op->kind = kind;
    op->refs = 1; /* the start guard */
    op->n = op->nslots = op->used = nslots;
    op->answered = 1; /* until a done is set */
    for (uint32_t i = 0; i < op->cap; i++)
        op->slot[i].op = op;
    op->next = c->ops;
    if (c->ops)
        c->ops->prev = op;
    c->ops = op;
    return op;
}

static void op_free(op_t *op)
{
    for (uint32_t i = 0; i < op->cap; i++)
        moor_buf_free(&op->slot[i].rec);
    moor_buf_free(&op->sk);
    moor_buf_free(&op->ekey);
    moor_buf_free(&op->rec);
    moor_buf_free(&op->result);
    moor_buf_free(&op->value);
    moor_buf_free(&op->seen);
    moor_buf_free(&op->base);
    free(op);
}

void op_unlink(op_t *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        op->c->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

void op_unref(op_t *op)
{
    if (--op->refs)
        return;
    moor_coord_t *c = op->c;
    moor_buf_t *b[OP_BUFS_MAX];
    uint32_t nb;

    if (!c) { /* detached: the coordinator is gone */
        op_free(op);
        return;
    }
    op_unlink(op);
#if OP_SPARE_MAX == 0
    op_free(op);
    return;
#else
    if (c->nspare >= OP_SPARE_MAX || op->cap > MOOR_COORD_N_MAX * 4) {
        op_free(op);
        return;
    }
#endif
    op_bufs(op, b, &nb);
    for (uint32_t i = 0; i < nb; i++)
        if (b[i]->cap > OP_SPARE_BUF)
            moor_buf_free(b[i]);
    op->spare_next = c->spare;
    c->spare = op;
    c->nspare++;
}

void op_set_done(op_t *op, moor_coord_done_fn done, void *arg)
{
    op->done = done;
    op->arg = arg;
    op->answered = done == NULL;
}

uint64_t op_mark(const op_t *op)
{
    if (!op->timing || op->answered || !op->c || !op->c->clock.mono_ns)
        return 0;
    return op->c->clock.mono_ns(op->c->clock.ud);
}

void op_time_engine(op_t *op, uint64_t t0)
{
    uint64_t now = t0 ? op_mark(op) : 0;

    if (now > t0)
        op->timing->engine_ns += now - t0;
}

void op_time_sent(op_t *op)
{
    if (!op->t_sent)
        op->t_sent = op_mark(op);
}

void op_time_replica(op_t *op)
{
    uint64_t now = op->t_sent ? op_mark(op) : 0;

    if (now > op->t_sent && now - op->t_sent > op->timing->replicas_ns)
        op->timing->replicas_ns = now - op->t_sent;
}

/* Runs done once.  REQUIRES: the caller holds a reference (done may start
 * new calls, and op must outlive it). */
void op_answer(op_t *op, int code, const char *msg, const char *res, size_t rlen)
{
    if (op->answered)
        return;
    op->answered = 1;
    op->done(op->arg, code, msg, res, rlen);
}

void op_fail(op_t *op, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void op_fail(op_t *op, int code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    op_answer(op, code, msg, NULL, 0);
}

static void op_deadline(void *arg);

int op_all_local(const op_t *op)
{
    for (uint32_t i = 0; i < op->nslots; i++)
        if (!op->slot[i].self || op->slot[i].fblen)
            return 0;
    return 1;
}

void op_start_timer(op_t *op)
{
    moor_coord_t *c = op->c;

    /* Without a timer the op still ends: every reply comes by timeout_ms.
     * An op on this node's replica alone (a node alone: a one-member
     * ring) needs none: the store answers every call. */
    op->deadline = c->clock.now_ms(c->clock.ud) + op->timeout_ms;
    if (op_all_local(op))
        return;
    op->timer = c->clock.timer_start(c->clock.ud, op->timeout_ms, op_deadline, op);
    if (op->timer)
        op->refs++;
}

/* Stops the timer *t of op (its deadline or its read's end), if running.
 * REQUIRES: the caller holds another reference. */
void op_stop_timer_at(op_t *op, uint64_t *t)
{
    if (!*t)
        return;
    if (op->c)
        op->c->clock.timer_stop(op->c->clock.ud, *t);
    *t = 0;
    op->refs--;
}

void op_stop_timer(op_t *op)
{
    op_stop_timer_at(op, &op->timer);
}

uint32_t op_remaining_ms(const op_t *op)
{
    uint64_t now;

    if (!op->deadline || !op->c)
        return op->timeout_ms;
    now = op->c->clock.now_ms(op->c->clock.ud);
    return now + 1 >= op->deadline ? 1 : (uint32_t)(op->deadline - now);
}

/* Copies the key, builds the engine key.  0 or an error code. */
int op_set_key(op_t *op, const char *space, size_t slen, const char *key, size_t klen)
{
    int rc;

    op->slen = slen;
    op->klen = klen;
    if ((rc = moor_buf_append(&op->sk, space, slen)) || (rc = moor_buf_append(&op->sk, key, klen)))
        return rc;
    return moor_record_key(space, slen, key, klen, &op->ekey);
}

void op_set_target(op_t *op, uint32_t i, const char *id, size_t idlen)
{
    moor_coord_t *c = op->c;
    slot_t *s = &op->slot[i];

    s->idlen = (uint8_t)idlen;
    memcpy(s->id, id, idlen);
    s->self = idlen == c->idlen && memcmp(id, c->id, idlen) == 0;
}

/* ---- request checks ----------------------------------------------------------------- */

/* Levels and space; need is 'r' or 'w'.  0, or the error code with msg. */
int plan_levels(moor_coord_t *c, const moor_coord_req_t *req, plan_t *pl, char *msg, size_t msz)
{
    pl->space = req->space ? req->space : "default";
    pl->slen = req->space ? req->slen : 7;
    pl->n = req->n ? req->n : DEFAULT_N;
    pl->r = req->r ? req->r : pl->n / 2 + 1;
    pl->w = req->w ? req->w : pl->n / 2 + 1;
    pl->timeout_ms = req->timeout_ms ? req->timeout_ms : c->timeout_ms;
    if (pl->slen > MOOR_SPACE_MAX) {
        snprintf(msg, msz, "space name of %zu bytes (at most %d)", pl->slen, MOOR_SPACE_MAX);
        return MOOR_EINVAL;
    }
    if (!req->key && req->klen) {
        snprintf(msg, msz, "no key");
        return MOOR_EINVAL;
    }
    if (pl->n > MOOR_COORD_N_MAX || pl->r > pl->n || pl->w > pl->n) {
        snprintf(msg, msz, "levels n=%u r=%u w=%u: need 1 <= r, w <= n <= %d", pl->n, pl->r, pl->w,
                 MOOR_COORD_N_MAX);
        return MOOR_EINVAL;
    }
    return 0;
}

static int healthy(const moor_ring_t *ring, uint32_t member, void *arg)
{
    (void)arg;
    return moor_ring_member(ring, member)->status != MOOR_MEMBER_DOWN;
}

static int is_owner(const plan_t *pl, uint32_t member)
{
    for (uint32_t i = 0; i < pl->nowners; i++)
        if (pl->owner[i] == member)
            return 1;
    return 0;
}

/* The key's owners, its replica set (the first n healthy members: owners
 * up, fallbacks for owners down) and spares into pl (plan_t).  0, or the
 * code with msg: MOOR_EUNAVAIL when there is no ring, or fewer members
 * (or healthy ones) than need. */
static int plan_members(moor_coord_t *c, const char *key, size_t klen, plan_t *pl, uint32_t need,
                        const char *level, char *msg, size_t msz)
{
    uint32_t all[2 * MOOR_COORD_N_MAX], nall = 0, ndown = 0, k = 0;
    uint64_t token;
    int rc;

    if (!c->ring) {
        snprintf(msg, msz, "this node has no ring yet");
        return MOOR_EUNAVAIL;
    }
    if ((rc = moor_ring_key_token(pl->space, pl->slen, key, klen, &token)) ||
        (rc = moor_ring_preference_list(c->ring, token, pl->n, pl->owner, &pl->nowners)) ||
        (rc = moor_ring_preference_list_filter(c->ring, token, 2 * pl->n, healthy, NULL, all,
                                               &nall))) {
        snprintf(msg, msz, "%s", moor_diag_msg(rc));
        return rc;
    }
    if (pl->nowners < need) {
        snprintf(msg, msz, "the ring has %u members, %s=%u needs as many", pl->nowners, level,
                 need);
        return MOOR_EUNAVAIL;
    }
    /* The owners in preference order, each one that is down replaced in
     * place by the next healthy member clockwise that is no owner (zones
     * first, as the ring orders them); the healthy members left after
     * that are the spares. */
    pl->count = pl->nhealthy = 0;
    for (uint32_t i = 0; i < pl->nowners; i++) {
        uint32_t o = pl->owner[i];
        if (healthy(c->ring, o, NULL)) {
            pl->idx[pl->count] = o;
            pl->fb[pl->count++] = -1;
            pl->nhealthy++;
            continue;
        }
        ndown++;
        while (k < nall && is_owner(pl, all[k]))
            k++;
        if (k < nall) {
            pl->idx[pl->count] = all[k++];
            pl->fb[pl->count++] = (int32_t)o;
        }
    }
    pl->nspare = 0;
    for (; k < nall; k++)
        if (!is_owner(pl, all[k]))
            pl->spare[pl->nspare++] = all[k];
    if (pl->count < need) {
        snprintf(msg, msz, "%u of the key's members are up (%u down), %s=%u needs %u", pl->count,
                 ndown, level, need, need);
        return MOOR_EUNAVAIL;
    }
    return 0;
}

int plan_replicas(moor_coord_t *c, const moor_coord_req_t *req, plan_t *pl, uint32_t need,
                  const char *level, char *msg, size_t msz)
{
    pl->sloppy = req->sloppy != MOOR_COORD_SLOPPY_OFF;
    pl->receipt = req->receipt != 0;
    pl->overwrite = req->overwrite != 0;
    pl->ttl_ms = req->ttl_ms;
    return plan_members(c, req->key, req->klen, pl, need, level, msg, msz);
}

/* An op over the plan's replica set (slots 0..count-1, fallbacks tagged
 * with their owner) and, for writes, its spares (unasked slots after);
 * keyed; NULL after answering done with the failure. */
op_t *op_from_plan(moor_coord_t *c, int kind, const plan_t *pl, const moor_coord_req_t *req,
                   moor_coord_done_fn done, void *arg)
{
    uint32_t nspare = kind == OP_WRITE ? pl->nspare : 0;
    op_t *op = op_new(c, kind, pl->count + nspare);

    if (!op) {
        answer_fmt(done, arg, MOOR_ENOMEM, "no memory for a request");
        return NULL;
    }
    op->timeout_ms = pl->timeout_ms;
    op->timing = req->timing;
    op->pn = pl->n;
    op->n = op->used = pl->count;
    op->sloppy = pl->sloppy;
    op->receipt = pl->receipt;
    op->overwrite = pl->overwrite;
    op->ttl_ms = pl->ttl_ms;
    for (uint32_t i = 0; i < pl->count + nspare; i++) {
        uint32_t idx = i < pl->count ? pl->idx[i] : pl->spare[i - pl->count];
        const moor_member_t *m = moor_ring_member(c->ring, idx);
        op_set_target(op, i, m->id, m->idlen);
        op->slot[i].spare = i >= pl->count;
        if (i < pl->count && pl->fb[i] >= 0) {
            const moor_member_t *o = moor_ring_member(c->ring, (uint32_t)pl->fb[i]);
            op->slot[i].fblen = o->idlen;
            memcpy(op->slot[i].fb, o->id, o->idlen);
        }
    }
    if (op_set_key(op, pl->space, pl->slen, req->key, req->klen)) {
        answer_fmt(done, arg, MOOR_ENOMEM, "no memory for a request");
        op_unref(op);
        return NULL;
    }
    op_set_done(op, done, arg);
    return op;
}

/* {space, key} or {space, key, record[, fallback_for]}: the params of
 * _get / _put. */
int pack_params(const op_t *op, const moor_buf_t *rec, const char *fb, size_t fblen,
                moor_buf_t *out)
{
    msgpack_packer pk;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_map(&pk, rec ? (fblen ? 4 : 3) : 2);
    rc |= msgpack_pack_str_with_body(&pk, "space", 5);
    rc |= msgpack_pack_str_with_body(&pk, op->sk.data, op->slen);
    rc |= msgpack_pack_str_with_body(&pk, "key", 3);
    rc |= msgpack_pack_bin_with_body(&pk, op->sk.data + op->slen, op->klen);
    if (rec) {
        rc |= msgpack_pack_str_with_body(&pk, "record", 6);
        rc |= msgpack_pack_bin_with_body(&pk, rec->data, rec->len);
        if (fblen) {
            rc |= msgpack_pack_str_with_body(&pk, "fallback_for", 12);
            rc |= msgpack_pack_str_with_body(&pk, fb, fblen);
        }
    }
    return rc ? MOOR_ENOMEM : 0;
}

/* ---- receipts ----------------------------------------------------------------------- */

int parse_get_answer(int *status, const char *res, size_t rlen, const char **rec, uint32_t *n)
{
    const char *p = res, *end = res + rlen;

    *rec = NULL;
    *n = 0;
    if (*status)
        return SLOT_FAILED;
    if (moor_mp_read_nil(&p, end) == 0 && p == end)
        return SLOT_MISSING;
    p = res;
    if (moor_mp_read_bin(&p, end, rec, n) == 0 && p == end)
        return SLOT_OK;
    *rec = NULL;
    *n = 0;
    *status = MOOR_EPROTO;
    return SLOT_FAILED;
}

int slot_receipt_status(int status)
{
    switch (status) {
    case 0: return RS_OK;
    case MOOR_ETIMEDOUT: return RS_TIMEOUT;
    case MOOR_ECLOSED:
    case MOOR_EAGAIN:
    case MOOR_ENOTFOUND:
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -ECONNABORTED:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -ENOTCONN:
    case -EPIPE: return RS_DOWN;
    default: return RS_ERROR;
    }
}

static const char *receipt_name(int rs)
{
    static const char *names[] = {"timeout", "found", "notfound", "ok", "timeout", "down", "error"};

    return names[rs >= 0 && rs <= RS_ERROR ? rs : RS_ERROR];
}

/* receipt = [{node, status, fallback_for?}, ...] over the slots asked;
 * one still pending is "timeout". */
static int pack_receipt(const op_t *op, msgpack_packer *pk)
{
    int rc = 0;

    rc |= msgpack_pack_str_with_body(pk, "receipt", 7);
    rc |= msgpack_pack_array(pk, op->used - 0);
    for (uint32_t i = 0; i < op->used; i++) {
        const slot_t *s = &op->slot[i];
        const char *st = receipt_name(s->rs);
        rc |= msgpack_pack_map(pk, s->fblen ? 3 : 2);
        rc |= msgpack_pack_str_with_body(pk, "node", 4);
        rc |= msgpack_pack_str_with_body(pk, s->id, s->idlen);
        rc |= msgpack_pack_str_with_body(pk, "status", 6);
        rc |= msgpack_pack_str_with_body(pk, st, strlen(st));
        if (s->fblen) {
            rc |= msgpack_pack_str_with_body(pk, "fallback_for", 12);
            rc |= msgpack_pack_str_with_body(pk, s->fb, s->fblen);
        }
    }
    return rc;
}

int pack_receipt_result(const op_t *op, const char *res, size_t rlen, moor_buf_t *out)
{
    const char *p = res, *end = res + rlen;
    msgpack_packer pk;
    uint32_t n;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    if (moor_mp_read_map(&p, end, &n) == 0) {
        rc |= msgpack_pack_map(&pk, n + 1);
        rc |= moor_mp_pack_raw(out, p, (size_t)(end - p));
    } else if (moor_mp_read_nil(&p, end) == 0) {
        rc |= msgpack_pack_map(&pk, 2);
        rc |= msgpack_pack_str_with_body(&pk, "values", 6);
        rc |= msgpack_pack_array(&pk, 0);
    } else {
        rc |= msgpack_pack_map(&pk, 1); /* true (a del) */
    }
    rc |= pack_receipt(op, &pk);
    return rc ? MOOR_ENOMEM : 0;
}

/* ---- where -------------------------------------------------------------------------- */

int moor_coord_where(moor_coord_t *c, const char *space, size_t slen, const char *key, size_t klen,
                     uint32_t n, moor_buf_t *out)
{
    plan_t pl;
    msgpack_packer pk;
    char msg[256];
    uint32_t nfb = 0;
    int rc = 0;

    memset(&pl, 0, sizeof(pl));
    pl.space = space ? space : "default";
    pl.slen = space ? slen : 7;
    pl.n = n ? n : DEFAULT_N;
    if (pl.slen > MOOR_SPACE_MAX || pl.n > MOOR_COORD_N_MAX)
        return moor_diag(MOOR_EINVAL, "where: space of %zu bytes, n=%u (at most %d, %d)", pl.slen,
                         pl.n, MOOR_SPACE_MAX, MOOR_COORD_N_MAX);
    if ((rc = plan_members(c, key, klen, &pl, 1, "n", msg, sizeof(msg))) && rc != MOOR_EUNAVAIL)
        return moor_diag(rc, "where: %s", msg);
    if (rc && !c->ring)
        return moor_diag(rc, "where: %s", msg);
    for (uint32_t i = 0; i < pl.count; i++)
        nfb += pl.fb[i] >= 0;
    moor_mp_packer_init(&pk, out);
    rc = msgpack_pack_map(&pk, 2);
    rc |= msgpack_pack_str_with_body(&pk, "replicas", 8);
    rc |= msgpack_pack_array(&pk, pl.nowners);
    for (uint32_t i = 0; i < pl.nowners; i++) {
        const moor_member_t *m = moor_ring_member(c->ring, pl.owner[i]);
        rc |= msgpack_pack_str_with_body(&pk, m->id, m->idlen);
    }
    rc |= msgpack_pack_str_with_body(&pk, "fallbacks", 9);
    rc |= msgpack_pack_array(&pk, nfb);
    for (uint32_t i = 0; i < pl.count; i++)
        if (pl.fb[i] >= 0) {
            const moor_member_t *m = moor_ring_member(c->ring, pl.idx[i]);
            rc |= msgpack_pack_str_with_body(&pk, m->id, m->idlen);
        }
    return rc ? moor_diag(MOOR_ENOMEM, "where: no memory") : 0;
}

/* ---- deadline ----------------------------------------------------------------------- */

static void op_deadline(void *arg)
{
    op_t *op = arg;

    op->timer = 0; /* fired: its reference is ours to drop */
    if (op->c && !op->answered && op->kind == OP_GET && op->ok >= op->need) {
        get_answer_now(op); /* the replicas yet to answer may have it: too late */
    } else if (op->c && !op->answered && op->kind == OP_WRITE && write_quorum_met(op)) {
        write_answer_now(op); /* a receipt waited for the slow ones */
    } else if (op->c && !op->answered) {
        if (op->ok + op->failed == 0) {
            op->c->st.timeouts++;
            op_fail(op, MOOR_ETIMEDOUT, "no replica answered within %u ms (0 of %u, %u needed)",
                    op->timeout_ms, op->n, op->need);
        } else {
            op->c->st.quorum_failures++;
            op_fail(op, MOOR_EQUORUM, "%u of %u replicas %s, %u needed", op->ok, op->n,
                    op->kind == OP_WRITE ? "acknowledged" : "answered", op->need);
        }
    }
    if (op->c && op->kind == OP_GET && !op->finished)
        get_finish(op);
    if (op->c && op->reading) { /* answered: the write is not sent */
        op->reading = 0;
        op_stop_timer_at(op, &op->rtimer);
    }
    op_unref(op);
}

/* ---- the coordinator ---------------------------------------------------------------- */

void moor_coord_set_timeout(moor_coord_t *c, uint32_t timeout_ms)
{
    c->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
}

int moor_coord_new(const moor_coord_opts_t *o, moor_coord_t **out)
{
    moor_coord_t *c;

    if (!o->node_id || o->idlen == 0 || o->idlen > MOOR_VC_ID_MAX)
        return moor_diag(MOOR_EINVAL, "coord: node id of %zu bytes (1..%d)", o->idlen,
                         MOOR_VC_ID_MAX);
    if (!o->clock.now_ms || !o->clock.timer_start || !o->clock.timer_stop ||
        !o->transport.request || !o->store.get || !o->store.put)
        return moor_diag(MOOR_EINVAL, "coord: clock, transport and store must be complete");
    if (!(c = calloc(1, sizeof(*c))))
        return moor_diag(MOOR_ENOMEM, "coord: no memory");
    c->ra = malloc(sizeof(*c->ra));
    c->rb = malloc(sizeof(*c->rb));
    c->rw = malloc(sizeof(*c->rw));
    if (!c->ra || !c->rb || !c->rw) {
        free(c->ra), free(c->rb), free(c->rw), free(c);
        return moor_diag(MOOR_ENOMEM, "coord: no memory");
    }
    c->idlen = (uint8_t)o->idlen;
    memcpy(c->id, o->node_id, o->idlen);
    c->clock = o->clock;
    c->tr = o->transport;
    c->store = o->store;
    c->resolve = o->resolve;
    c->resolve_ud = o->resolve_ud;
    c->check_key = o->check_key;
    c->check_ud = o->check_ud;
    c->hint_put = o->hint_put;
    c->hint_ud = o->hint_ud;
    c->on_write = o->on_write;
    c->on_write_ud = o->on_write_ud;
    c->vc_max_entries = o->vc_max_entries && o->vc_max_entries < MOOR_RECORD_VC_KEEP
                            ? o->vc_max_entries
                            : MOOR_RECORD_VC_KEEP;
    c->vc_keep_min = o->vc_keep_min ? o->vc_keep_min : 1;
    c->vc_max_age_ms = o->vc_max_age_ms;
    c->siblings = o->siblings;
    c->siblings_ud = o->siblings_ud;
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    *out = c;
    return 0;
}

void moor_coord_free(moor_coord_t *c)
{
    op_t *op;

    if (!c)
        return;
    while ((op = c->ops)) {
        op->refs++; /* held across done */
        op_fail(op, MOOR_ECLOSED, "the node is shutting down");
        op_stop_timer(op);
        op_stop_timer_at(op, &op->rtimer);
        op_unlink(op);
        op->c = NULL;
        op_unref(op);
    }
    while ((op = c->spare)) {
        c->spare = op->spare_next;
        op_free(op);
    }
    moor_ring_free(c->ring);
    for (uint32_t i = 0; i < c->npending; i++)
        moor_ring_free(c->pending[i]);
    free(c->ra);
    free(c->rb);
    free(c->rw);
    free(c);
}

void moor_coord_set_ring(moor_coord_t *c, moor_ring_t *ring)
{
    moor_ring_t *old = c->ring;

    c->ring = ring ? moor_ring_ref(ring) : NULL;
    moor_ring_free(old);
}

void moor_coord_set_pending(moor_coord_t *c, moor_ring_t *const *rings, uint32_t n)
{
    uint32_t old = c->npending;
    moor_ring_t *keep[MOOR_COORD_PENDING_MAX];

    memcpy(keep, c->pending, old * sizeof(*keep));
    if (n > MOOR_COORD_PENDING_MAX)
        n = MOOR_COORD_PENDING_MAX;
    for (uint32_t i = 0; i < n; i++)
        c->pending[i] = moor_ring_ref(rings[i]);
    c->npending = n;
    for (uint32_t i = 0; i < old; i++)
        moor_ring_free(keep[i]);
}

void moor_coord_stats(const moor_coord_t *c, moor_coord_stats_t *out)
{
    *out = c->st;
}

int moor_coord_pack_stats(const moor_coord_t *c, msgpack_packer *pk)
{
    const struct {
        const char *name;
        uint64_t v;
    } f[] = {
        {"gets", c->st.gets},
        {"puts", c->st.puts},
        {"dels", c->st.dels},
        {"quorum_failures", c->st.quorum_failures},
        {"timeouts", c->st.timeouts},
        {"read_repairs", c->st.read_repairs},
        {"resolved", c->st.resolved},
        {"fallback_writes", c->st.fallback_writes},
        {"sloppy_writes", c->st.sloppy_writes},
        {"notfound_waits", c->st.notfound_waits},
        {"hints_taken", c->st.hints_taken},
        {"siblings_warned", c->st.siblings_warned},
        {"siblings_refused", c->st.siblings_refused},
        {"pending_writes", c->st.pending_writes},
    };
    int rc = msgpack_pack_map(pk, sizeof(f) / sizeof(f[0]));

    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        rc |= msgpack_pack_str_with_body(pk, f[i].name, strlen(f[i].name));
        rc |= msgpack_pack_uint64(pk, f[i].v);
    }
    return rc ? MOOR_ENOMEM : 0;
}
