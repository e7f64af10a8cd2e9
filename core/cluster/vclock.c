/*
 * vclock.c -- vector clocks: compare, merge, increment, prune, and the
 * MessagePack codec of the `ctx` clients carry.
 *
 * Design: a clock is a small fixed array sorted by node id (memcmp order,
 * the shorter id first when one is a prefix of the other), so compare and
 * merge are one linear two-pointer walk and need no allocation.  The
 * decoder is the gate for untrusted contexts: it accepts only what the
 * encoder can produce (sorted unique ids of 1..64 bytes, counters >= 1, at
 * most MOOR_VC_MAX_ENTRIES entries), so every clock in memory holds the
 * invariants the walks rely on.
 *
 * Pure data, no I/O, no globals: thread-safe on distinct clocks.
 */
#include "vclock.h"

#include <msgpack.h>
#include <string.h>

#include "util/mp.h"
#include "util/err.h"

/* memcmp order, shorter first on a common prefix. */
static int id_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int entry_cmp(const moor_vc_entry_t *a, const moor_vc_entry_t *b)
{
    return id_cmp(a->id, a->idlen, b->id, b->idlen);
}

/* Index of id in vc, or -(insertion point) - 1 when absent. */
static int find(const moor_vclock_t *vc, const char *id, size_t idlen)
{
    uint32_t lo = 0, hi = vc->n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = id_cmp(vc->e[mid].id, vc->e[mid].idlen, id, idlen);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(int)lo - 1;
}

int moor_vclock_increment(moor_vclock_t *vc, const char *id, size_t idlen, uint64_t ts)
{
    int i;

    if (idlen == 0 || idlen > MOOR_VC_ID_MAX)
        return moor_diag(MOOR_EINVAL, "vclock: node id of %zu bytes (1..%d allowed)", idlen,
                         MOOR_VC_ID_MAX);
    i = find(vc, id, idlen);
    if (i >= 0) {
        if (vc->e[i].counter == UINT64_MAX)
            return moor_diag(MOOR_EINVAL, "vclock: counter of node '%.*s' would overflow",
                             (int)idlen, id);
        vc->e[i].counter++;
        vc->e[i].ts = ts;
        return 0;
    }
    if (vc->n >= MOOR_VC_MAX_ENTRIES)
        return moor_diag(MOOR_ENOMEM, "vclock: full (%d entries)", MOOR_VC_MAX_ENTRIES);
    i = -i - 1;
    memmove(&vc->e[i + 1], &vc->e[i], (vc->n - (uint32_t)i) * sizeof(vc->e[0]));
    vc->e[i].idlen = (uint8_t)idlen;
    memcpy(vc->e[i].id, id, idlen);
    vc->e[i].counter = 1;
    vc->e[i].ts = ts;
    vc->n++;
    return 0;
}

int moor_vclock_compare(const moor_vclock_t *a, const moor_vclock_t *b)
{
    uint32_t i = 0, j = 0;
    int a_ahead = 0, b_ahead = 0; /* some entry of a (b) is newer than the other's */

    while (i < a->n || j < b->n) {
        int c = i == a->n ? 1 : j == b->n ? -1 : entry_cmp(&a->e[i], &b->e[j]);
        if (c < 0) {
            a_ahead = 1, i++; /* only in a: a counter >= 1 against 0 */
        } else if (c > 0) {
            b_ahead = 1, j++;
        } else {
            a_ahead |= a->e[i].counter > b->e[j].counter;
            b_ahead |= b->e[j].counter > a->e[i].counter;
            i++, j++;
        }
    }
    if (a_ahead && b_ahead)
        return MOOR_VC_CONCURRENT;
    return a_ahead ? MOOR_VC_AFTER : b_ahead ? MOOR_VC_BEFORE : MOOR_VC_EQUAL;
}

/* The entry of a merge for one id present in both: the larger counter with
 * its ts; on equal counters the larger ts, so merge stays commutative. */
static moor_vc_entry_t max_entry(const moor_vc_entry_t *x, const moor_vc_entry_t *y)
{
    if (x->counter != y->counter)
        return x->counter > y->counter ? *x : *y;
    return x->ts >= y->ts ? *x : *y;
}

int moor_vclock_merge(moor_vclock_t *dst, const moor_vclock_t *src)
{
    moor_vclock_t out;
    uint32_t i = 0, j = 0;

    out.n = 0;
    while (i < dst->n || j < src->n) {
        int c = i == dst->n ? 1 : j == src->n ? -1 : entry_cmp(&dst->e[i], &src->e[j]);
        if (out.n == MOOR_VC_MAX_ENTRIES)
            return moor_diag(MOOR_ENOMEM, "vclock: merge exceeds %d entries", MOOR_VC_MAX_ENTRIES);
        if (c < 0)
            out.e[out.n++] = dst->e[i++];
        else if (c > 0)
            out.e[out.n++] = src->e[j++];
        else
            out.e[out.n++] = max_entry(&dst->e[i++], &src->e[j++]);
    }
    memcpy(dst->e, out.e, out.n * sizeof(out.e[0]));
    dst->n = out.n;
    return 0;
}

uint64_t moor_vclock_get(const moor_vclock_t *vc, const char *id, size_t idlen)
{
    int i = find(vc, id, idlen);

    return i >= 0 ? vc->e[i].counter : 0;
}

int moor_vclock_raise(moor_vclock_t *vc, const char *id, size_t idlen, uint64_t counter,
                      uint64_t ts)
{
    moor_vc_entry_t e;
    int i;

    if (idlen == 0 || idlen > MOOR_VC_ID_MAX || counter == 0)
        return moor_diag(MOOR_EINVAL, "vclock: entry of a %zu-byte id, counter %llu", idlen,
                         (unsigned long long)counter);
    e.idlen = (uint8_t)idlen;
    memcpy(e.id, id, idlen);
    e.counter = counter;
    e.ts = ts;
    i = find(vc, id, idlen);
    if (i >= 0) {
        vc->e[i] = max_entry(&vc->e[i], &e);
        return 0;
    }
    if (vc->n >= MOOR_VC_MAX_ENTRIES)
        return moor_diag(MOOR_ENOMEM, "vclock: full (%d entries)", MOOR_VC_MAX_ENTRIES);
    i = -i - 1;
    memmove(&vc->e[i + 1], &vc->e[i], (vc->n - (uint32_t)i) * sizeof(vc->e[0]));
    vc->e[i] = e;
    vc->n++;
    return 0;
}

/* Index of the entry with the smallest ts; ties go to the first by id, so
 * every replica prunes the same clock the same way.  REQUIRES: vc->n > 0. */
static uint32_t oldest(const moor_vclock_t *vc)
{
    uint32_t k = 0;

    for (uint32_t i = 1; i < vc->n; i++)
        if (vc->e[i].ts < vc->e[k].ts)
            k = i;
    return k;
}

int moor_vclock_prune(moor_vclock_t *vc, uint32_t keep_min, uint32_t max_entries,
                      uint64_t max_age_ms, uint64_t now)
{
    int dropped = 0;

    while (vc->n > 0) {
        uint32_t k = oldest(vc);
        int too_many = vc->n > max_entries;
        int too_old =
            max_age_ms && vc->n > keep_min && now > max_age_ms && vc->e[k].ts < now - max_age_ms;
        if (!too_many && !too_old)
            break;
        memmove(&vc->e[k], &vc->e[k + 1], (vc->n - k - 1) * sizeof(vc->e[0]));
        vc->n--;
        dropped++;
    }
    return dropped;
}

int moor_vclock_encode(const moor_vclock_t *vc, moor_buf_t *out)
{
    msgpack_packer pk;
    size_t start = out->len;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_array(&pk, vc->n);
    for (uint32_t i = 0; i < vc->n && rc == 0; i++) {
        rc |= msgpack_pack_array(&pk, 3);
        rc |= msgpack_pack_bin(&pk, vc->e[i].idlen);
        rc |= msgpack_pack_bin_body(&pk, vc->e[i].id, vc->e[i].idlen);
        rc |= msgpack_pack_uint64(&pk, vc->e[i].counter);
        rc |= msgpack_pack_uint64(&pk, vc->e[i].ts);
    }
    if (rc) {
        out->len = start;
        return moor_diag(MOOR_ENOMEM, "vclock: no memory to encode %u entries", vc->n);
    }
    return 0;
}

/* One [id, counter, ts] entry. */
static int decode_entry(const char **p, const char *end, moor_vc_entry_t *e)
{
    uint32_t n;
    const char *id;

    if (moor_mp_read_array(p, end, &n) || n != 3)
        return moor_diag(MOOR_EBADCTX, "vclock: entry is not a 3-element array");
    if (moor_mp_read_bin(p, end, &id, &n) || n == 0 || n > MOOR_VC_ID_MAX)
        return moor_diag(MOOR_EBADCTX, "vclock: node id is not bin of 1..%d bytes", MOOR_VC_ID_MAX);
    e->idlen = (uint8_t)n;
    memcpy(e->id, id, n);
    if (moor_mp_read_uint(p, end, &e->counter) || e->counter == 0)
        return moor_diag(MOOR_EBADCTX, "vclock: counter is not a positive integer");
    if (moor_mp_read_uint(p, end, &e->ts))
        return moor_diag(MOOR_EBADCTX, "vclock: timestamp is not a non-negative integer");
    return 0;
}

uint64_t moor_vclock_counter_bound(uint64_t now_ms)
{
    /* A wall clock beyond year 584,000 saturates instead of wrapping. */
    if (now_ms > UINT64_MAX / 1000 - MOOR_VC_MAX_AHEAD_MS)
        return UINT64_MAX - 1;
    return (now_ms + MOOR_VC_MAX_AHEAD_MS) * 1000;
}

int moor_vclock_check_bounds(const moor_vclock_t *vc, uint64_t now_ms, const char *what)
{
    uint64_t cmax = moor_vclock_counter_bound(now_ms), tmax = now_ms + MOOR_VC_MAX_AHEAD_MS;

    for (uint32_t i = 0; i < vc->n; i++) {
        const moor_vc_entry_t *e = &vc->e[i];
        if (e->counter > cmax)
            return moor_diag(MOOR_EBADCTX,
                             "%s: the counter of node '%.*s' (%llu) is more than a day ahead of "
                             "the clock (at most %llu)",
                             what, (int)e->idlen, e->id, (unsigned long long)e->counter,
                             (unsigned long long)cmax);
        if (e->ts > tmax)
            return moor_diag(MOOR_EBADCTX,
                             "%s: the time of node '%.*s' (%llu ms) is more than a day ahead of "
                             "the clock (%llu ms)",
                             what, (int)e->idlen, e->id, (unsigned long long)e->ts,
                             (unsigned long long)now_ms);
    }
    return 0;
}

int moor_vclock_decode(const char **p, const char *end, moor_vclock_t *vc)
{
    const char *q = *p;
    uint32_t n;
    int rc;

    vc->n = 0;
    if (moor_mp_read_array(&q, end, &n))
        return moor_diag(MOOR_EBADCTX, "vclock: not an array");
    if (n > MOOR_VC_MAX_ENTRIES)
        return moor_diag(MOOR_EBADCTX, "vclock: %u entries (at most %d)", n, MOOR_VC_MAX_ENTRIES);
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = decode_entry(&q, end, &vc->e[i])))
            return rc;
        if (i > 0 && entry_cmp(&vc->e[i - 1], &vc->e[i]) >= 0)
            return moor_diag(MOOR_EBADCTX, "vclock: node ids unsorted or duplicated");
    }
    vc->n = n;
    *p = q;
    return 0;
}
