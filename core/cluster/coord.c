/*
 * coord.c -- the coordinator: quorum reads and writes over the ring, and
 * the replica side of `_get` / `_put`.
 *
 * Design.  Every client call becomes one op: the replicas of the key's
 * preference list (copied out of the ring at the start, so a ring change
 * never touches a call in flight), one slot per replica, a deadline timer,
 * and the caller's done.  A write is coordinated by a replica: on one,
 * the next version is built from the local record (build_write) and sent
 * to every replica, answering at W acknowledgements that include the local
 * one.  A write without a ctx (blind) first reads the other replicas
 * (`_get`, blind_read) for half its time, until R - 1 answered or all
 * replied, and builds on the merge of what it read and the local record,
 * so its version descends what a read quorum holds: a replica that missed
 * a delete then replaces the deleted value instead of resurrecting its
 * stale copy beside the new one.  Too few answers only mean building on
 * less; a write with a ctx builds on the local record at once.
 * Elsewhere the op is a forward (OP_FORWARD) that sends `_coord` to the
 * first replica, then the next if that one never answers.  A read asks
 * every replica, folds each reply into a running merge (moor_record_merge),
 * answers at R replies, and keeps listening until every replica answered
 * or the deadline passed, then read-repairs: every replica that answered
 * with less than the final merge gets it in the background.  The replica of
 * this node is the local store, reached directly instead of through the
 * transport.
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
 * Failures: QUORUM_FAILED once so many replicas failed that the quorum is
 * out of reach, or at the deadline when some replica answered; TIMEOUT at
 * the deadline when none answered at all; UNAVAILABLE when the ring holds
 * fewer members than the quorum.  Replies after the answer are absorbed
 * (the write still happened there; a read's late reply still feeds repair).
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
#include "coord.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mp.h"
#include "record.h"
#include "util/err.h"
#include "util/log.h"

#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_N 3
#define FWD_TRIES 2 /* replicas a non-replica coordinator forwards a write to */

enum op_kind { OP_GET, OP_WRITE, OP_PEER_PUT, OP_FORWARD };
enum slot_state { SLOT_PENDING = 0, SLOT_OK, SLOT_MISSING, SLOT_FAILED };

typedef struct op op_t;

typedef struct slot {
    op_t *op;
    int state; /* a slot_state; set once */
    uint8_t idlen;
    char id[MOOR_RING_ID_MAX]; /* the replica's member id */
    int self;                  /* 1: this node, reached through the store */
    int rstate;                /* blind write's read: a slot_state; set once */
    moor_buf_t rec;            /* get, SLOT_OK: the replica's record */
} slot_t;

struct op {
    op_t *prev, *next; /* in c->ops while attached */
    moor_coord_t *c;   /* NULL once the coordinator is gone */
    int kind;          /* an op_kind */
    uint32_t refs;     /* outstanding callbacks + timer + start guard */
    uint64_t timer;    /* deadline timer id; 0 when none runs */
    int answered;      /* done ran (or will never: done is NULL) */
    int finished;      /* get: read repair decided */
    moor_coord_done_fn done;
    void *arg;
    uint32_t n;          /* replicas (slots) */
    uint32_t need;       /* r or w; 0 for background writes */
    uint32_t ok, failed; /* replies counted, ok + failed <= n */
    uint32_t timeout_ms;
    uint32_t tries;        /* forward: replicas tried (slots 0..tries-1) */
    uint32_t timedout;     /* forward: attempts that timed out */
    char why[128];         /* forward: why the last attempt failed */
    slot_t *local;         /* coordinated write: this node's slot, which must ack */
    int reading;           /* blind write: still reading the other replicas */
    uint64_t rtimer;       /* blind write: end of the read; 0 when none runs */
    uint32_t rneed;        /* blind write: answers the read waits for */
    uint32_t rok, rfailed; /* blind write: read answers and failures */
    int tombstone;         /* blind write: a delete */
    moor_buf_t value;      /* blind write: the value, kept across the read */
    moor_buf_t seen;       /* blind write: merge of the records read so far */
    size_t slen, klen;     /* space and key, back to back in sk */
    moor_buf_t sk;
    moor_buf_t ekey;   /* engine key */
    moor_buf_t rec;    /* write: the version; get: merge of replies so far;
                        * forward: the _coord params */
    moor_buf_t result; /* write: the answer on success */
    slot_t slot[];
};

struct moor_coord {
    uint8_t idlen;
    char id[MOOR_VC_ID_MAX];
    moor_clock_if_t clock;
    moor_transport_if_t tr;
    moor_store_if_t store;
    moor_coord_resolve_fn resolve;
    void *resolve_ud;
    moor_coord_check_fn check_key; /* may be NULL: every space and key */
    void *check_ud;
    uint32_t vc_max_entries, vc_keep_min;
    uint64_t vc_max_age_ms;
    uint32_t timeout_ms;
    moor_ring_t *ring;           /* our reference; NULL until set */
    uint64_t hlc;                /* last counter stamped */
    op_t *ops;                   /* in flight, newest first */
    moor_record_t *ra, *rb, *rw; /* scratch */
    moor_coord_stats_t st;
};

static const char nil_mp[] = "\xc0", true_mp[] = "\xc3";

static void answer_fmt(moor_coord_done_fn done, void *arg, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void answer_fmt(moor_coord_done_fn done, void *arg, int code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    done(arg, code, msg, NULL, 0);
}

/* ---- ops: lifetime ------------------------------------------------------------------ */

static op_t *op_new(moor_coord_t *c, int kind, uint32_t nslots)
{
    op_t *op = calloc(1, sizeof(*op) + nslots * sizeof(slot_t));

    if (!op)
        return NULL;
    op->c = c;
    op->kind = kind;
    op->refs = 1; /* the start guard */
    op->n = nslots;
    op->answered = 1; /* until a done is set */
    for (uint32_t i = 0; i < nslots; i++)
        op->slot[i].op = op;
    op->next = c->ops;
    if (c->ops)
        c->ops->prev = op;
    c->ops = op;
    return op;
}

static void op_unlink(op_t *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        op->c->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void op_unref(op_t *op)
{
    if (--op->refs)
        return;
    if (op->c)
        op_unlink(op);
    for (uint32_t i = 0; i < op->n; i++)
        moor_buf_free(&op->slot[i].rec);
    moor_buf_free(&op->sk);
    moor_buf_free(&op->ekey);
    moor_buf_free(&op->rec);
    moor_buf_free(&op->result);
    moor_buf_free(&op->value);
    moor_buf_free(&op->seen);
    free(op);
}

static void op_set_done(op_t *op, moor_coord_done_fn done, void *arg)
{
    op->done = done;
    op->arg = arg;
    op->answered = done == NULL;
}

/* Runs done once.  REQUIRES: the caller holds a reference (done may start
 * new calls, and op must outlive it). */
static void op_answer(op_t *op, int code, const char *msg, const char *res, size_t rlen)
{
    if (op->answered)
        return;
    op->answered = 1;
    op->done(op->arg, code, msg, res, rlen);
}

static void op_fail(op_t *op, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void op_fail(op_t *op, int code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    op_answer(op, code, msg, NULL, 0);
}

static void op_deadline(void *arg);

static void op_start_timer(op_t *op)
{
    moor_coord_t *c = op->c;

    /* Without a timer the op still ends: every reply comes by timeout_ms. */
    op->timer = c->clock.timer_start(c->clock.ud, op->timeout_ms, op_deadline, op);
    if (op->timer)
        op->refs++;
}

/* Stops the timer *t of op (its deadline or its read's end), if running.
 * REQUIRES: the caller holds another reference. */
static void op_stop_timer_at(op_t *op, uint64_t *t)
{
    if (!*t)
        return;
    if (op->c)
        op->c->clock.timer_stop(op->c->clock.ud, *t);
    *t = 0;
    op->refs--;
}

static void op_stop_timer(op_t *op)
{
    op_stop_timer_at(op, &op->timer);
}

/* Copies the key, builds the engine key.  0 or an error code. */
static int op_set_key(op_t *op, const char *space, size_t slen, const char *key, size_t klen)
{
    int rc;

    op->slen = slen;
    op->klen = klen;
    if ((rc = moor_buf_append(&op->sk, space, slen)) || (rc = moor_buf_append(&op->sk, key, klen)))
        return rc;
    return moor_record_key(space, slen, key, klen, &op->ekey);
}

static void op_set_target(op_t *op, uint32_t i, const char *id, size_t idlen)
{
    moor_coord_t *c = op->c;
    slot_t *s = &op->slot[i];

    s->idlen = (uint8_t)idlen;
    memcpy(s->id, id, idlen);
    s->self = idlen == c->idlen && memcmp(id, c->id, idlen) == 0;
}

/* ---- versions ----------------------------------------------------------------------- */

static uint64_t hlc_wall(uint64_t now)
{
    return now <= UINT64_MAX / 4000 ? now * 1000 : UINT64_MAX / 4;
}

/* This node's next counter: above the last one and above floor, and at
 * least now_ms * 1000 -- but never past moor_vclock_counter_bound(now):
 * the HLC is persisted (data_dir/HLC), so a counter pushed to the end of
 * its range would make the node unable to write for good.  Inputs are
 * checked against the same bound (ctx, peer records), so only a stored
 * record written before they were can carry such a floor: then 0 and
 * MOOR_EBADCTX, and the HLC stays where it was. */
static int hlc_next(moor_coord_t *c, uint64_t now, uint64_t floor, uint64_t *out)
{
    uint64_t v = c->hlc + 1, bound = moor_vclock_counter_bound(now);

    if (hlc_wall(now) > v)
        v = hlc_wall(now);
    if (floor >= v)
        v = floor + 1;
    if (v > bound)
        return moor_diag(MOOR_EBADCTX,
                         "the key's clock holds this node's counter %llu, more than a day "
                         "ahead of its clock (at most %llu): refusing to move the clock there",
                         (unsigned long long)floor, (unsigned long long)bound);
    c->hlc = v;
    *out = v;
    return 0;
}

/* moor_record_write(cur, ...) by this node, then this node's entry raised
 * to the next HLC counter (never below what moor_record_write made it, so
 * the version still descends cur and ctx).  The HLC makes a counter unique
 * to one version even after a crash lost this node's unsynced writes: a
 * restarted node that read an older local record would otherwise stamp a
 * second, different version with a counter already given out, and one of
 * the two would look superseded.  Appends the record to rec and its clock
 * to ctx_out.  0, MOOR_EBADCTX, MOOR_EINVAL, MOOR_ENOMEM. */
static int write_version(moor_coord_t *c, const moor_record_t *cur, const char *ctx, size_t ctxlen,
                         const char *value, size_t vlen, int tombstone, moor_buf_t *rec,
                         moor_buf_t *ctx_out)
{
    moor_buf_t tmp = MOOR_BUF_INIT, tctx = MOOR_BUF_INIT;
    uint64_t now = c->clock.now_ms(c->clock.ud);
    moor_record_t *r = c->rw;
    int rc;

    if ((rc = moor_record_write(cur, ctx, ctxlen, value, vlen, tombstone, c->id, c->idlen, now,
                                &tmp, &tctx)) ||
        (rc = moor_record_decode(tmp.data, tmp.len, r)))
        goto out;
    for (uint32_t i = 0; i < r->vc.n; i++) {
        moor_vc_entry_t *e = &r->vc.e[i];
        if (e->idlen == c->idlen && memcmp(e->id, c->id, c->idlen) == 0 &&
            (rc = hlc_next(c, now, e->counter - 1, &e->counter)))
            goto out;
    }
    /* This node's entry is the newest (ts = now), so pruning keeps it. */
    moor_vclock_prune(&r->vc, c->vc_keep_min, c->vc_max_entries, c->vc_max_age_ms, now);
    if ((rc = moor_record_encode(r, rec)) == 0)
        rc = moor_vclock_encode(&r->vc, ctx_out);
out:
    moor_buf_free(&tmp);
    moor_buf_free(&tctx);
    return rc;
}

static int merge_into(moor_coord_t *c, moor_buf_t *acc, const char *rec, size_t rlen);

/* The next version of a key for a client write, coordinated here as one
 * of its replicas: the local record (none when missing), merged with
 * op->seen (what a blind write read from the other replicas; empty: none),
 * with the write applied (write_version) -- a ctx that descends it
 * replaces its siblings, anything else adds one.  Appends the record to
 * rec and its clock to ctx_out.  0, MOOR_EBADCTX, MOOR_ECORRUPT (stored
 * record), MOOR_ENOMEM or the store's error. */
static int build_write(moor_coord_t *c, const op_t *op, const char *ctx, size_t ctxlen,
                       const char *value, size_t vlen, int tombstone, moor_buf_t *rec,
                       moor_buf_t *ctx_out)
{
    moor_buf_t cur = MOOR_BUF_INIT, acc = MOOR_BUF_INIT;
    const moor_buf_t *base = &cur; /* the record to build on; empty: none */
    moor_record_t *r = NULL;
    int rc = c->store.get(c->store.ud, op->ekey.data, op->ekey.len, &cur);

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
        if ((rc = moor_record_decode(base->data, base->len, c->ra)))
            goto out;
        r = c->ra;
    }
    rc = write_version(c, r, ctx, ctxlen, value, vlen, tombstone, rec, ctx_out);
out:
    moor_buf_free(&acc);
    moor_buf_free(&cur);
    return rc;
}

/* Merges the record rec into the local store's record of key and queues
 * the result; done follows (0) or not (an error: MOOR_ECORRUPT for a
 * stored record that does not decode, MOOR_EINVAL for rec, the store's). */
static int local_merge(moor_coord_t *c, const char *key, size_t klen, const char *rec, size_t rlen,
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

/* acc = merge(acc, rec), acc empty meaning no record yet.  0, MOOR_ECORRUPT
 * (rec does not decode; acc unaltered), MOOR_ENOMEM. */
static int merge_into(moor_coord_t *c, moor_buf_t *acc, const char *rec, size_t rlen)
{
    moor_buf_t out = MOOR_BUF_INIT;
    int rc;

    if ((rc = moor_record_decode(rec, rlen, c->rb)))
        return rc;
    if (acc->len == 0)
        rc = moor_record_merge(c->rb, c->rb, &out);
    else if ((rc = moor_record_decode(acc->data, acc->len, c->ra)) == 0)
        rc = moor_record_merge(c->ra, c->rb, &out);
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
        if (t->ts == s->ts && t->tombstone == s->tombstone && t->vlen == s->vlen &&
            (!s->vlen || memcmp(t->value, s->value, s->vlen) == 0))
            return 1;
    }
    return 0;
}

/* 1 if a replica's record x holds the versions of the merge m. */
static int record_same(const moor_record_t *m, const moor_record_t *x)
{
    if (moor_vclock_compare(&m->vc, &x->vc) != MOOR_VC_EQUAL || m->n != x->n)
        return 0;
    for (uint32_t i = 0; i < m->n; i++)
        if (!sibling_in(x, &m->sib[i]))
            return 0;
    return 1;
}

/* ---- request checks ----------------------------------------------------------------- */

/* A call's replicas and quorum, checked before anything is sent. */
typedef struct plan {
    const char *space;
    size_t slen;
    uint32_t n, r, w, count;
    uint32_t idx[MOOR_COORD_N_MAX]; /* the preference list: ring member indices */
    uint32_t timeout_ms;
} plan_t;

/* Levels and space; need is 'r' or 'w'.  0, or the error code with msg. */
static int plan_levels(moor_coord_t *c, const moor_coord_req_t *req, plan_t *pl, char *msg,
                       size_t msz)
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

/* The preference list; MOOR_EUNAVAIL when the ring is missing or holds
 * fewer members than need. */
static int plan_replicas(moor_coord_t *c, const moor_coord_req_t *req, plan_t *pl, uint32_t need,
                         const char *level, char *msg, size_t msz)
{
    uint64_t token;
    int rc;

    if (!c->ring) {
        snprintf(msg, msz, "this node has no ring yet");
        return MOOR_EUNAVAIL;
    }
    if ((rc = moor_ring_key_token(pl->space, pl->slen, req->key, req->klen, &token)) ||
        (rc = moor_ring_preference_list(c->ring, token, pl->n, pl->idx, &pl->count))) {
        snprintf(msg, msz, "%s", moor_diag_msg(rc));
        return rc;
    }
    if (pl->count < need) {
        snprintf(msg, msz, "the ring has %u members, %s=%u needs as many", pl->count, level, need);
        return MOOR_EUNAVAIL;
    }
    return 0;
}

/* An op over the plan's replicas, keyed; NULL after answering done with
 * the failure. */
static op_t *op_from_plan(moor_coord_t *c, int kind, const plan_t *pl, const moor_coord_req_t *req,
                          moor_coord_done_fn done, void *arg)
{
    op_t *op = op_new(c, kind, pl->count);

    if (!op) {
        answer_fmt(done, arg, MOOR_ENOMEM, "no memory for a request");
        return NULL;
    }
    op->timeout_ms = pl->timeout_ms;
    for (uint32_t i = 0; i < pl->count; i++) {
        const moor_member_t *m = moor_ring_member(c->ring, pl->idx[i]);
        op_set_target(op, i, m->id, m->idlen);
    }
    if (op_set_key(op, pl->space, pl->slen, req->key, req->klen)) {
        answer_fmt(done, arg, MOOR_ENOMEM, "no memory for a request");
        op_unref(op);
        return NULL;
    }
    op_set_done(op, done, arg);
    return op;
}

/* [space, key] or [space, key, record]: the params of _get / _put. */
static int pack_params(const op_t *op, const moor_buf_t *rec, moor_buf_t *out)
{
    msgpack_packer pk;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_str_with_body(&pk, op->sk.data, op->slen);
    rc |= msgpack_pack_bin_with_body(&pk, op->sk.data + op->slen, op->klen);
    if (rec)
        rc |= msgpack_pack_bin_with_body(&pk, rec->data, rec->len);
    return rc ? MOOR_ENOMEM : 0;
}

/* ---- writes ------------------------------------------------------------------------- */

static void write_check(op_t *op)
{
    if (op->answered)
        return;
    if (op->local && op->local->state == SLOT_FAILED) {
        op->c->st.quorum_failures++;
        op_stop_timer(op);
        op_fail(op, MOOR_EQUORUM,
                "%u of %u replicas acknowledged, %u needed, and the "
                "coordinating replica's own write failed",
                op->ok, op->n, op->need);
    } else if (op->ok >= op->need && (!op->local || op->local->state == SLOT_OK)) {
        op_stop_timer(op);
        op_answer(op, 0, NULL, op->result.data, op->result.len);
    } else if (op->failed > op->n - op->need && !(op->local && op->local->state == SLOT_PENDING)) {
        /* Out of reach -- but wait for our own write, so the count says
         * whether the value was stored here. */
        op->c->st.quorum_failures++;
        op_stop_timer(op);
        op_fail(op, MOOR_EQUORUM, "%u of %u replicas acknowledged, %u needed", op->ok, op->n,
                op->need);
    }
}

static void write_slot_done(op_t *op, slot_t *s, int ok)
{
    if (!op->c || s->state != SLOT_PENDING)
        return;
    s->state = ok ? SLOT_OK : SLOT_FAILED;
    if (ok)
        op->ok++;
    else
        op->failed++;
    write_check(op);
}

static void write_peer_reply(void *arg, int status, const char *res, size_t rlen)
{
    slot_t *s = arg;
    op_t *op = s->op;

    write_slot_done(op, s, status == 0 && rlen == 1 && (unsigned char)res[0] == 0xc3);
    op_unref(op);
}

static void write_local_done(void *arg, int status)
{
    slot_t *s = arg;
    op_t *op = s->op;

    write_slot_done(op, s, status == 0);
    op_unref(op);
}

/* Sends op->rec to every slot, then waits (done set; the caller started
 * the deadline) or lets the replies drain (background).  Drops the start
 * guard. */
static void write_send(op_t *op)
{
    moor_coord_t *c = op->c;
    moor_buf_t params = MOOR_BUF_INIT;
    int prc = pack_params(op, &op->rec, &params);

    for (uint32_t i = 0; i < op->n && op->c; i++) {
        slot_t *s = &op->slot[i];
        int rc = prc;
        op->refs++;
        if (s->self)
            rc = local_merge(c, op->ekey.data, op->ekey.len, op->rec.data, op->rec.len,
                             write_local_done, s);
        else if (rc == 0)
            rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_put", params.data, params.len, 3,
                               op->timeout_ms, write_peer_reply, s);
        if (rc == MOOR_ETOOLARGE)
            moor_log_warn("a record of %zu bytes in space '%.*s' is over the frame limit: not "
                          "replicated to '%.*s'",
                          op->rec.len, (int)op->slen, op->sk.data, (int)s->idlen, s->id);
        if (rc) {
            op->refs--;
            write_slot_done(op, s, 0);
        }
    }
    moor_buf_free(&params);
    op_unref(op);
}

/* A background write of rec to the replicas named by slots[i] for each
 * chosen i (all when pick is NULL), answered to nobody.  Returns how many
 * replicas it went to. */
static uint32_t write_background(op_t *from, const moor_buf_t *rec, const uint8_t *pick)
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
        if (!pick || pick[i])
            op_set_target(op, j++, from->slot[i].id, from->slot[i].idlen);
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

/* 1 if this node is one of the plan's replicas. */
static int plan_has_self(const moor_coord_t *c, const plan_t *pl)
{
    for (uint32_t i = 0; i < pl->count; i++) {
        const moor_member_t *m = moor_ring_member(c->ring, pl->idx[i]);
        if (m->idlen == c->idlen && memcmp(m->id, c->id, c->idlen) == 0)
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
 * has none), or a failure, which only counts as no answer. */
static void blind_read_slot(op_t *op, slot_t *s, int ok, const char *rec, size_t rlen)
{
    if (!op->c || !op->reading || s->rstate != SLOT_PENDING)
        return;
    if (ok && rec && merge_into(op->c, &op->seen, rec, rlen))
        ok = 0;
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
    const char *p = res, *end = res + rlen, *rec = NULL;
    uint32_t n = 0;
    int ok = 0;

    if (status == 0 && moor_mp_read_nil(&p, end) == 0 && p == end)
        ok = 1;
    else if (status == 0 && moor_mp_read_bin(&p, end, &rec, &n) == 0 && p == end)
        ok = 1;
    blind_read_slot(op, s, ok, ok ? rec : NULL, ok ? n : 0);
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
    prc = pack_params(op, NULL, &params);
    op->rtimer = c->clock.timer_start(c->clock.ud, rms, blind_read_timeout, op);
    if (op->rtimer)
        op->refs++;
    for (uint32_t i = 0; i < op->n && op->c && op->reading; i++) {
        slot_t *s = &op->slot[i];
        int rc = prc;
        if (s->self)
            continue;
        op->refs++;
        if (rc == 0)
            rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_get", params.data, params.len, 2, rms,
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
static void write_call(moor_coord_t *c, const moor_coord_req_t *req, int tombstone, int from_peer,
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
static int forward_retryable(int status)
{
    switch (status) {
    case MOOR_ETIMEDOUT:
    case MOOR_ECLOSED:
    case MOOR_EAGAIN:
    case MOOR_ENOTFOUND:
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -ECONNABORTED:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -ENOTCONN:
    case -EPIPE: return 1;
    default: return 0;
    }
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

    while (op->tries < FWD_TRIES && op->tries < op->n) {
        slot_t *s = &op->slot[op->tries++];
        int rc;
        op->refs++;
        rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_coord", op->rec.data, op->rec.len, 8,
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

/* _coord(op, space, key, value|nil, ctx|nil, n, w, timeout_ms) */
static int pack_forward(op_t *op, const plan_t *pl, const moor_coord_req_t *req, int tombstone,
                        uint32_t remote_ms)
{
    msgpack_packer pk;
    moor_buf_t *out = &op->rec;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_str_with_body(&pk, tombstone ? "del" : "put", 3);
    rc |= msgpack_pack_str_with_body(&pk, op->sk.data, op->slen);
    rc |= msgpack_pack_bin_with_body(&pk, op->sk.data + op->slen, op->klen);
    rc |= tombstone ? msgpack_pack_nil(&pk) : moor_mp_pack_raw(out, req->value, req->vlen);
    if (req->ctx && req->ctxlen)
        rc |= msgpack_pack_bin_with_body(&pk, req->ctx, req->ctxlen);
    else
        rc |= msgpack_pack_nil(&pk);
    rc |= msgpack_pack_uint32(&pk, pl->n) | msgpack_pack_uint32(&pk, pl->w);
    rc |= msgpack_pack_uint32(&pk, remote_ms);
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

/* ---- reads -------------------------------------------------------------------------- */

/* The resolver's turn: 1 and the answer in res when it resolved (and the
 * resolved value is on its way back to the replicas), else 0. */
static int get_resolve(op_t *op, moor_buf_t *res)
{
    moor_coord_t *c = op->c;
    moor_buf_t val = MOOR_BUF_INIT, clock = MOOR_BUF_INIT, rec = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc = c->resolve(c->resolve_ud, op->sk.data, op->slen, op->rec.data, op->rec.len, &val);
    int resolved = 0, deleted;

    if (rc < 0 || (rc == 1 && !moor_record_value_ok(val.data, val.len))) {
        moor_log_warn("resolver of space '%.*s' failed (%s); keeping the siblings", (int)op->slen,
                      op->sk.data, rc < 0 ? moor_diag_msg(rc) : "not one value");
        goto out;
    }
    if (rc != 1)
        goto out;
    /* nil resolves to "deleted": the write-back is a tombstone. */
    deleted = val.len == 1 && (unsigned char)val.data[0] == 0xc0;
    /* The write-back descends the merge; its clock is the ctx we answer, so
     * a client writing with it supersedes the write-back too. */
    if (moor_record_decode(op->rec.data, op->rec.len, c->ra) ||
        moor_vclock_encode(&c->ra->vc, &clock) ||
        write_version(c, c->ra, clock.data, clock.len, val.data, val.len, deleted, &rec, &ctx))
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

static void get_answer(op_t *op)
{
    moor_coord_t *c = op->c;
    moor_buf_t res = MOOR_BUF_INIT;
    uint32_t live = 0;

    if (op->rec.len == 0) {
        op_answer(op, 0, NULL, nil_mp, 1);
        return;
    }
    if (moor_record_decode(op->rec.data, op->rec.len, c->ra)) {
        op_fail(op, MOOR_EINTERNAL, "merged record does not decode");
        return;
    }
    for (uint32_t i = 0; i < c->ra->n; i++)
        live += !c->ra->sib[i].tombstone;
    if (live == 0) {
        op_answer(op, 0, NULL, nil_mp, 1);
        return;
    }
    if (!(live > 1 && c->resolve && get_resolve(op, &res))) {
        if (moor_record_decode(op->rec.data, op->rec.len, c->ra) ||
            moor_record_get_result(c->ra, &res)) {
            op_fail(op, MOOR_ENOMEM, "no memory for a get result");
            return;
        }
    }
    op_answer(op, 0, NULL, res.data, res.len);
    moor_buf_free(&res);
}

/* Read repair: the final merge to every replica that answered with less. */
static void get_finish(op_t *op)
{
    moor_coord_t *c = op->c;
    uint8_t pick[MOOR_COORD_N_MAX] = {0};
    uint32_t k = 0;

    op->finished = 1;
    op_stop_timer(op);
    if (op->rec.len == 0 || moor_record_decode(op->rec.data, op->rec.len, c->ra))
        return;
    for (uint32_t i = 0; i < op->n; i++) {
        slot_t *s = &op->slot[i];
        if (s->state == SLOT_MISSING)
            pick[i] = 1;
        else if (s->state == SLOT_OK)
            pick[i] = moor_record_decode(s->rec.data, s->rec.len, c->rb) == 0 &&
                      !record_same(c->ra, c->rb);
        k += pick[i];
    }
    if (k)
        c->st.read_repairs += write_background(op, &op->rec, pick);
}

static void get_check(op_t *op)
{
    if (!op->answered) {
        if (op->ok >= op->need) {
            get_answer(op);
        } else if (op->failed > op->n - op->need) {
            op->c->st.quorum_failures++;
            op_fail(op, MOOR_EQUORUM, "%u of %u replicas answered, %u needed", op->ok, op->n,
                    op->need);
        }
    }
    if (op->c && !op->finished && op->ok + op->failed == op->n)
        get_finish(op);
}

/* A replica's answer: SLOT_OK with its record, SLOT_MISSING or SLOT_FAILED. */
static void get_slot_done(op_t *op, slot_t *s, int state, const char *rec, size_t rlen)
{
    if (!op->c || s->state != SLOT_PENDING)
        return;
    if (state == SLOT_OK &&
        (moor_buf_append(&s->rec, rec, rlen) || merge_into(op->c, &op->rec, rec, rlen)))
        state = SLOT_FAILED;
    s->state = state;
    if (state == SLOT_FAILED)
        op->failed++;
    else
        op->ok++;
    get_check(op);
}

static void get_peer_reply(void *arg, int status, const char *res, size_t rlen)
{
    slot_t *s = arg;
    op_t *op = s->op;
    const char *p = res, *end = res + rlen, *rec = NULL;
    uint32_t n = 0;
    int state = SLOT_FAILED;

    if (status == 0 && moor_mp_read_nil(&p, end) == 0 && p == end)
        state = SLOT_MISSING;
    else if (status == 0 && moor_mp_read_bin(&p, end, &rec, &n) == 0 && p == end)
        state = SLOT_OK;
    get_slot_done(op, s, state, state == SLOT_OK ? rec : NULL, state == SLOT_OK ? n : 0);
    op_unref(op);
}

/* The local replica, read at once. */
static void get_local(op_t *op, slot_t *s)
{
    moor_coord_t *c = op->c;
    moor_buf_t cur = MOOR_BUF_INIT;
    int rc = c->store.get(c->store.ud, op->ekey.data, op->ekey.len, &cur);

    if (rc == MOOR_ENOTFOUND)
        get_slot_done(op, s, SLOT_MISSING, NULL, 0);
    else
        get_slot_done(op, s, rc ? SLOT_FAILED : SLOT_OK, cur.data, cur.len);
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
    prc = pack_params(op, NULL, &params);
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
        if (rc == 0)
            rc = c->tr.request(c->tr.ud, s->id, s->idlen, "_get", params.data, params.len, 2,
                               op->timeout_ms, get_peer_reply, s);
        if (rc) {
            op->refs--;
            get_slot_done(op, s, SLOT_FAILED, NULL, 0);
        }
    }
    moor_buf_free(&params);
    op_unref(op);
}

/* ---- deadline ----------------------------------------------------------------------- */

static void op_deadline(void *arg)
{
    op_t *op = arg;

    op->timer = 0; /* fired: its reference is ours to drop */
    if (op->c && !op->answered) {
        if (op->ok + op->failed == 0) {
            op->c->st.timeouts++;
            op_fail(op, MOOR_ETIMEDOUT, "no replica answered within %u ms (0 of %u, %u needed)",
                    op->timeout_ms, op->n, op->need);
        } else {
            op->c->st.quorum_failures++;
            op_fail(op, MOOR_EQUORUM, "%u of %u replicas %s, %u needed", op->ok, op->n,
                    op->kind == OP_GET ? "answered" : "acknowledged", op->need);
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

/* ---- the coordinator ---------------------------------------------------------------- */

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
    c->vc_max_entries = o->vc_max_entries && o->vc_max_entries < MOOR_RECORD_VC_KEEP
                            ? o->vc_max_entries
                            : MOOR_RECORD_VC_KEEP;
    c->vc_keep_min = o->vc_keep_min ? o->vc_keep_min : 1;
    c->vc_max_age_ms = o->vc_max_age_ms;
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
    moor_ring_free(c->ring);
    free(c->ra);
    free(c->rb);
    free(c->rw);
    free(c);
}

uint64_t moor_coord_hlc(const moor_coord_t *c)
{
    return c->hlc;
}

void moor_coord_hlc_floor(moor_coord_t *c, uint64_t floor)
{
    if (floor > c->hlc)
        c->hlc = floor;
}

void moor_coord_set_ring(moor_coord_t *c, moor_ring_t *ring)
{
    moor_ring_t *old = c->ring;

    c->ring = ring ? moor_ring_ref(ring) : NULL;
    moor_ring_free(old);
}

void moor_coord_stats(const moor_coord_t *c, moor_coord_stats_t *out)
{
    *out = c->st;
}
