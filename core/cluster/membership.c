/*
 * membership.c -- member tables and their merge (membership.h).
 * Entries are kept sorted by id so lookups are binary searches and two
 * equal tables encode to equal bytes.
 */
#include "membership.h"

#include <stdlib.h>
#include <string.h>

#include "util/mp.h"
#include "util/err.h"

void moor_members_init(moor_members_t *t)
{
    memset(t, 0, sizeof(*t));
}

void moor_members_free(moor_members_t *t)
{
    free(t->e);
    moor_members_init(t);
}

static int id_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = n ? memcmp(a, b, n) : 0;

    return r ? r : (alen < blen ? -1 : alen > blen);
}

/* Index of id, or -(insertion point) - 1. */
static long find(const moor_members_t *t, const char *id, size_t idlen)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = id_cmp(t->e[mid].m.id, t->e[mid].m.idlen, id, idlen);
        if (r == 0)
            return (long)mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

const moor_member_entry_t *moor_members_find(const moor_members_t *t, const char *id, size_t idlen)
{
    long i = find(t, id, idlen);

    return i >= 0 ? &t->e[i] : NULL;
}

static int entry_valid(const moor_member_entry_t *e)
{
    const moor_member_t *m = &e->m;

    if (m->idlen == 0 || m->idlen > MOOR_RING_ID_MAX)
        return moor_diag(MOOR_EINVAL, "member id must be 1..%d bytes", MOOR_RING_ID_MAX);
    if (m->vnodes == 0 || m->vnodes > MOOR_RING_VNODES_MAX)
        return moor_diag(MOOR_EINVAL, "member vnodes must be 1..%d", MOOR_RING_VNODES_MAX);
    if (m->status < 0 || m->status >= MOOR_MEMBER_STATUS_COUNT)
        return moor_diag(MOOR_EINVAL, "member status %d is unknown", m->status);
    if (m->inactive > m->vnodes)
        return moor_diag(MOOR_EINVAL, "member inactive tokens %u over its vnodes %u", m->inactive,
                         m->vnodes);
    if (!memchr(m->addr, '\0', sizeof(m->addr)) || !memchr(m->zone, '\0', sizeof(m->zone)))
        return moor_diag(MOOR_EINVAL, "member address or zone too long");
    return 0;
}

/* Order of statuses at one incarnation: an accusation (suspect, down)
 * beats a member's own joining/up/leaving, and left beats all. */
static int status_rank(int st)
{
    static const int rank[MOOR_MEMBER_STATUS_COUNT] = {
        [MOOR_MEMBER_JOINING] = 0, [MOOR_MEMBER_UP] = 1,   [MOOR_MEMBER_LEAVING] = 2,
        [MOOR_MEMBER_SUSPECT] = 3, [MOOR_MEMBER_DOWN] = 4, [MOOR_MEMBER_LEFT] = 5,
    };
    return st >= 0 && st < MOOR_MEMBER_STATUS_COUNT ? rank[st] : -1;
}

/* Does b win over a (same id)?  `left` is final (a member that left or
 * was removed never comes back under its id, whatever incarnation a stale
 * copy of it publishes); then higher incarnation, then later status, then
 * (only for entries that disagree on data at the same incarnation and
 * status) the greater encoding, so the merge stays order-independent. */
static int wins(const moor_member_entry_t *a, const moor_member_entry_t *b)
{
    int r, al = a->m.status == MOOR_MEMBER_LEFT, bl = b->m.status == MOOR_MEMBER_LEFT;

    if (al != bl)
        return bl;
    if (b->incarnation != a->incarnation)
        return b->incarnation > a->incarnation;
    if (b->m.status != a->m.status)
        return status_rank(b->m.status) > status_rank(a->m.status);
    if ((r = strcmp(b->m.addr, a->m.addr)) != 0)
        return r > 0;
    if ((r = strcmp(b->m.zone, a->m.zone)) != 0)
        return r > 0;
    if (b->m.vnodes != a->m.vnodes)
        return b->m.vnodes > a->m.vnodes;
    return b->m.inactive > a->m.inactive;
}

int moor_members_apply(moor_members_t *t, const moor_member_entry_t *e)
{
    long i;
    int rc;

    if ((rc = entry_valid(e)))
        return rc;
    i = find(t, e->m.id, e->m.idlen);
    if (i >= 0) {
        if (!wins(&t->e[i], e))
            return 0;
        t->e[i] = *e;
        t->version++;
        return 1;
    }
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 8;
        moor_member_entry_t *ne;
        if (cap > MOOR_RING_MEMBERS_MAX)
            return moor_diag(MOOR_EINVAL, "more than %d members", MOOR_RING_MEMBERS_MAX);
        ne = realloc(t->e, cap * sizeof(*ne));
        if (!ne)
            return MOOR_ENOMEM;
        t->e = ne;
        t->cap = cap;
    }
    i = -i - 1;
    memmove(&t->e[i + 1], &t->e[i], (t->n - (size_t)i) * sizeof(*t->e));
    t->e[i] = *e;
    t->n++;
    t->version++;
    return 1;
}

int moor_members_merge(moor_members_t *t, const moor_members_t *src)
{
    int changed = 0;

    for (uint32_t i = 0; i < src->n; i++) {
        int rc = moor_members_apply(t, &src->e[i]);
        if (rc < 0)
            return rc;
        changed += rc;
    }
    return changed;
}

int moor_members_refute(moor_members_t *t, const char *id, size_t idlen, uint64_t seen)
{
    long i = find(t, id, idlen);
    moor_member_entry_t *e;

    if (i < 0)
        return 0;
    e = &t->e[i];
    if (e->m.status == MOOR_MEMBER_LEFT)
        return 0; /* final */
    if (e->incarnation > seen && e->m.status == MOOR_MEMBER_UP)
        return 0;
    e->incarnation = (seen > e->incarnation ? seen : e->incarnation) + 1;
    e->m.status = MOOR_MEMBER_UP;
    t->version++;
    return 1;
}

int moor_members_encode(const moor_members_t *t, moor_buf_t *out)
{
    msgpack_packer pk;
    size_t mark = out->len;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_array(&pk, t->n);
    for (uint32_t i = 0; i < t->n; i++) {
        const moor_member_entry_t *e = &t->e[i];
        rc |= msgpack_pack_array(&pk, e->m.inactive ? 7 : 6);
        rc |= msgpack_pack_bin_with_body(&pk, e->m.id, e->m.idlen);
        rc |= msgpack_pack_str_with_body(&pk, e->m.addr, strlen(e->m.addr));
        rc |= msgpack_pack_str_with_body(&pk, e->m.zone, strlen(e->m.zone));
        rc |= msgpack_pack_uint32(&pk, e->m.vnodes);
        rc |= msgpack_pack_uint32(&pk, (uint32_t)e->m.status);
        rc |= msgpack_pack_uint64(&pk, e->incarnation);
        if (e->m.inactive)
            rc |= msgpack_pack_uint32(&pk, e->m.inactive);
    }
    if (rc) {
        out->len = mark;
        return MOOR_ENOMEM;
    }
    return 0;
}

static int decode_entry(const char **p, const char *end, moor_member_entry_t *e)
{
    const char *s;
    uint32_t n, len;
    uint64_t vnodes, status;

    memset(e, 0, sizeof(*e));
    if (moor_mp_read_array(p, end, &n) || n < 6 || n > 16)
        return moor_diag(MOOR_EPROTO, "member entry must be an array of 6 or more");
    if (moor_mp_read_strbin(p, end, &s, &len) || len == 0 || len > MOOR_RING_ID_MAX)
        return moor_diag(MOOR_EPROTO, "member id must be 1..%d bytes", MOOR_RING_ID_MAX);
    memcpy(e->m.id, s, len);
    e->m.idlen = (uint8_t)len;
    if (moor_mp_read_str(p, end, &s, &len) || len >= sizeof(e->m.addr))
        return moor_diag(MOOR_EPROTO, "member address must be a short string");
    memcpy(e->m.addr, s, len);
    if (moor_mp_read_str(p, end, &s, &len) || len >= sizeof(e->m.zone))
        return moor_diag(MOOR_EPROTO, "member zone must be a short string");
    memcpy(e->m.zone, s, len);
    if (moor_mp_read_uint(p, end, &vnodes) || vnodes == 0 || vnodes > MOOR_RING_VNODES_MAX ||
        moor_mp_read_uint(p, end, &status) || status >= MOOR_MEMBER_STATUS_COUNT ||
        moor_mp_read_uint(p, end, &e->incarnation))
        return moor_diag(MOOR_EPROTO, "member vnodes, status or incarnation out of range");
    e->m.vnodes = (uint32_t)vnodes;
    e->m.status = (int)status;
    if (n > 6) {
        uint64_t inactive;
        if (moor_mp_read_uint(p, end, &inactive) || inactive > vnodes)
            return moor_diag(MOOR_EPROTO, "member inactive tokens out of range");
        e->m.inactive = (uint32_t)inactive;
    }
    for (uint32_t i = 7; i < n; i++) /* later fields */
        if (moor_mp_skip(p, end, 8))
            return moor_diag(MOOR_EPROTO, "malformed member entry field");
    return 0;
}

int moor_members_decode(const char **p, const char *end, moor_members_t *t)
{
    const char *q = *p;
    uint32_t n;
    int rc;

    moor_members_init(t);
    if (moor_mp_read_array(&q, end, &n))
        return moor_diag(MOOR_EPROTO, "member table must be an array");
    if (n > MOOR_RING_MEMBERS_MAX)
        return moor_diag(MOOR_EPROTO, "member table of %u entries is too large", n);
    for (uint32_t i = 0; i < n; i++) {
        moor_member_entry_t e;
        if ((rc = decode_entry(&q, end, &e)) || (rc = moor_members_apply(t, &e)) < 0) {
            moor_members_free(t);
            return rc < 0 ? rc : MOOR_EPROTO;
        }
    }
    *p = q;
    return 0;
}

int moor_members_ring(const moor_members_t *t, moor_ring_t **out)
{
    moor_member_t *m;
    int rc;

    if (t->n == 0)
        return moor_diag(MOOR_EINVAL, "empty member table");
    m = malloc(t->n * sizeof(*m));
    if (!m)
        return MOOR_ENOMEM;
    for (uint32_t i = 0; i < t->n; i++)
        m[i] = t->e[i].m;
    rc = moor_ring_build(m, t->n, out);
    free(m);
    return rc;
}
