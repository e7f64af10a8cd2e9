/*
 * expire.c -- the node's compaction filter (expire.h).
 *
 * Most records hold no expiring sibling and no tombstone, and the filter
 * sees every value a compaction writes, so it first peeks at the bytes:
 * an expiring sibling is a 6-element array whose dot id follows (bytes
 * 0x96 0xc4), a tombstone's flag is true (0xc3; looked for only when
 * alone, the one case tombstones matter here).  Bytes without them are
 * kept without a decode; the peek can say yes wrongly (a value holding
 * those bytes), never no.  Then the record is decoded, expired at the wall
 * clock (moor_record_expire, the rule and the clock every reader uses)
 * and rewritten, or, alone, dropped when deleted past the grace.
 *
 * State: one scratch record and buffer, used by the background thread
 * only (the engine calls the filter one entry at a time).
 */
#include "server/expire.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/record.h"
#include "engine/engine.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

struct moor_expire {
    /* A copy: the background thread reads the spaces' tombstone graces
     * while a reload may rewrite the node's config (they are restart-only,
     * so the copy taken at open stays right). */
    moor_config_t cfg;
    atomic_int alone;
    uint64_t (*now_ms)(void);
    moor_record_t rec; /* scratch (background thread) */
    moor_buf_t out;    /* a rewrite's bytes, until the next call */
};

int moor_expire_new(const moor_config_t *cfg, int alone, moor_expire_t **out)
{
    moor_expire_t *x = calloc(1, sizeof(*x));

    *out = NULL;
    if (!x)
        return moor_diag(MOOR_ENOMEM, "no memory for the compaction filter");
    x->cfg = *cfg;
    atomic_init(&x->alone, alone != 0);
    x->now_ms = moor_clock_wall_ms;
    *out = x;
    return 0;
}

void moor_expire_free(moor_expire_t *x)
{
    if (!x)
        return;
    moor_buf_free(&x->out);
    free(x);
}

void moor_expire_set_alone(moor_expire_t *x, int alone)
{
    atomic_store(&x->alone, alone != 0);
}

void moor_expire_set_clock(moor_expire_t *x, uint64_t (*now_ms)(void))
{
    x->now_ms = now_ms ? now_ms : moor_clock_wall_ms;
}

/* The tombstone grace of the space of an engine key (be64 token | u8
 * space_len | space | key), in ms; the node's for an unknown space. */
static uint64_t grace_ms(const moor_config_t *cfg, const char *key, size_t klen)
{
    const moor_space_cfg_t *sp = NULL;
    uint8_t sl;

    if (klen > 8) {
        sl = (uint8_t)key[8];
        if (klen >= 9 + (size_t)sl)
            sp = moor_config_space(cfg, key + 9, sl);
    }
    return (sp && sp->grace_s >= 0 ? (uint64_t)sp->grace_s : cfg->tombstone_grace_s) * 1000;
}

/* 1 if every sibling is a tombstone written before cutoff. */
static int reapable(const moor_record_t *r, uint64_t cutoff)
{
    if (r->n == 0 || !moor_record_is_deleted(r))
        return 0;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->sib[i].ts >= cutoff)
            return 0;
    return 1;
}

int moor_expire_filter(void *ud, const void *key, size_t klen, const void *val, size_t vlen,
                       const void **nval, size_t *nvlen)
{
    moor_expire_t *x = ud;
    uint64_t now, grace;
    uint32_t expired;
    int alone = atomic_load(&x->alone);

    if (!vlen || (!memmem(val, vlen, "\x96\xc4", 2) && (!alone || !memchr(val, 0xc3, vlen))) ||
        moor_record_decode(val, vlen, &x->rec))
        return MOOR_ENGINE_FILTER_KEEP;
    now = x->now_ms();
    expired = moor_record_expire(&x->rec, now);
    grace = grace_ms(&x->cfg, key, klen); /* 0: never reaped (as anti-entropy) */
    if (alone && grace && now > grace && reapable(&x->rec, now - grace))
        return MOOR_ENGINE_FILTER_DROP;
    moor_buf_reset(&x->out);
    if (!expired || moor_record_encode(&x->rec, &x->out))
        return MOOR_ENGINE_FILTER_KEEP;
    *nval = x->out.data;
    *nvlen = x->out.len;
    return MOOR_ENGINE_FILTER_REWRITE;
}
