/*
 * coord_hlc.c -- the coordinator's clock: a hybrid logical clock that
 * stamps this node's entry of every version it writes.
 *
 * hlc_next gives max(last + 1, now_ms * 1000, floor + 1), bounded by
 * moor_vclock_counter_bound(now) so a forged or stored counter far ahead
 * can never push the persisted clock out of range; write_version applies a
 * write to a record with that counter as the new sibling's dot, so no dot
 * is ever given to two versions, even after a crash lost unsynced writes.  Deterministic: the time comes from the env's clock only.
 */
#include "coord_internal.h"

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

/* moor_record_write(cur, ...) by this node, the new sibling's dot counter
 * the next HLC value above every counter of this node that cur and ctx
 * hold (moor_record_write_floor).  The HLC makes a dot unique to one
 * version even after a crash lost this node's unsynced writes: a restarted
 * node that read an older local record would otherwise give a second,
 * different version a dot already given out, and a ctx covering the first
 * would wrongly cover the second.  The context is pruned as configured
 * (vc_max_entries, vc_max_age_ms, vc_keep_min).  Appends the record to
 * rec and its ctx to ctx_out; *nsib (if not NULL) gets its sibling count.
 * 0, MOOR_EBADCTX, MOOR_EINVAL, MOOR_ETOOMANYSIBS, MOOR_ENOMEM. */
int write_version(moor_coord_t *c, const moor_record_t *cur, const char *ctx, size_t ctxlen,
                  const char *value, size_t vlen, int tombstone, uint64_t ttl_ms, moor_buf_t *rec,
                  moor_buf_t *ctx_out, uint32_t *nsib)
{
    uint64_t now = c->clock.now_ms(c->clock.ud), floor = 0, counter = 0;
    moor_record_prune_t pr = {c->vc_keep_min, c->vc_max_entries, c->vc_max_age_ms};
    int rc;

    if ((rc = moor_record_write_floor(cur, ctx, ctxlen, c->id, c->idlen, now, &floor)) ||
        (rc = hlc_next(c, now, floor, &counter)))
        return rc;
    /* The expiry counts from the write's own HLC time (counter / 1000 >=
     * now), the clock every replica judges it by (expiry_now). */
    return moor_record_write_exp(cur, ctx, ctxlen, value, vlen, tombstone,
                                 ttl_ms ? counter / 1000 + ttl_ms : 0, c->id, c->idlen, now,
                                 counter, &pr, rec, ctx_out, nsib);
}

uint64_t expiry_now(const moor_coord_t *c)
{
    return c->clock.now_ms(c->clock.ud);
}

int record_decode(moor_coord_t *c, const char *buf, size_t len, moor_record_t *r)
{
    int rc = moor_record_decode(buf, len, r);

    return rc ? rc : (int)moor_record_expire(r, expiry_now(c));
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
