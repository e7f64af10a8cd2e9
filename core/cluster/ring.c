/*
 * ring.c -- the consistent-hash ring: build from a member table, find the
 * vnode of a token, walk clockwise for preference lists.
 *
 * Design: a ring is one sorted array of (token, member) vnodes plus the
 * member table sorted by id.  Sorting both makes the ring independent of
 * the table's order (the ring is a pure function of the table), and ties
 * between equal tokens fall to the lower member index, i.e. the lower id.
 * A lookup is a binary search; a preference list is a clockwise walk that
 * marks chosen members and used zones in bitmaps (on the stack for rings
 * of up to 1,024 members), so a list costs O(log T + steps) with no
 * allocation, and the walk stops as soon as no further pick is possible
 * (every zone used, every member chosen), never looping past one turn.
 *
 * Zones are interned at build into zone classes: members sharing a
 * non-empty zone share a class, a member without a zone has a class of its
 * own; the class count over members on the ring bounds the zone pass.
 * Owned shares are computed at build, so the CLI's `moor ring` is free.
 *
 * Invariants: members[] sorted strictly by id; vn[] sorted by (token,
 * member) and holds exactly `vnodes` entries of every member not left;
 * zone[m] < nmembers; shares sum to 1.  Immutable after build; the
 * reference count is the only mutable field (atomic).
 */
#include "ring.h"

#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "record.h"
#include "util/err.h"
#include "util/hash.h"

#define STACK_WORDS 16 /* bitmap words on the stack: 1,024 members */

typedef struct vnode {
    uint64_t token;
    uint32_t member; /* index into members[] */
} vnode_t;

struct moor_ring {
    atomic_uint refs;
    uint32_t nmembers;      /* whole table, left ones included */
    uint32_t on_ring;       /* members not left: >= 1 */
    uint32_t nzones;        /* zone classes among members on the ring */
    uint32_t nvnodes;       /* >= 1 */
    moor_member_t *members; /* sorted strictly by id */
    uint32_t *zone;         /* zone class of each member */
    double *share;          /* primary share of each member */
    vnode_t *vn;            /* sorted by (token, member) */
};

static const char *const status_names[MOOR_MEMBER_STATUS_COUNT] = {
    "joining", "up", "suspect", "down", "leaving", "left",
};

const char *moor_member_status_name(int status)
{
    if (status < 0 || status >= MOOR_MEMBER_STATUS_COUNT)
        return "unknown";
    return status_names[status];
}

int moor_member_status_parse(const char *s, size_t len)
{
    for (int i = 0; i < MOOR_MEMBER_STATUS_COUNT; i++)
        if (strlen(status_names[i]) == len && memcmp(status_names[i], s, len) == 0)
            return i;
    return moor_diag(MOOR_EINVAL, "ring: unknown member status '%.*s'", (int)(len > 32 ? 32 : len),
                     s);
}

/* ---- tokens -------------------------------------------------------------------- */

uint64_t moor_ring_vnode_token(const char *id, size_t idlen, uint32_t i)
{
    char buf[MOOR_RING_ID_MAX + 4];

    if (idlen > MOOR_RING_ID_MAX)
        idlen = MOOR_RING_ID_MAX; /* build rejects longer ids; keep this total */
    memcpy(buf, id, idlen);
    buf[idlen] = (char)(i >> 24);
    buf[idlen + 1] = (char)(i >> 16);
    buf[idlen + 2] = (char)(i >> 8);
    buf[idlen + 3] = (char)i;
    return moor_hash_token(buf, idlen + 4);
}

/* Streams the three parts through xxh64 (seed 0, as moor_hash_token) so a
 * large key needs no copy; test_ring pins it to moor_record_key(). */
int moor_ring_key_token(const char *space, size_t slen, const char *key, size_t klen,
                        uint64_t *token)
{
    XXH64_state_t st;
    uint8_t sl = (uint8_t)slen;

    if (slen > MOOR_SPACE_MAX)
        return moor_diag(MOOR_EINVAL, "ring: space name of %zu bytes (at most %d)", slen,
                         MOOR_SPACE_MAX);
    XXH64_reset(&st, 0);
    XXH64_update(&st, &sl, 1);
    XXH64_update(&st, space, slen);
    XXH64_update(&st, key, klen);
    *token = XXH64_digest(&st);
    return 0;
}

/* ---- build --------------------------------------------------------------------- */

/* memcmp order, shorter first on a common prefix (as vclock.c). */
static int id_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int member_cmp(const void *pa, const void *pb)
{
    const moor_member_t *a = pa, *b = pb;
    return id_cmp(a->id, a->idlen, b->id, b->idlen);
}

static int vnode_cmp(const void *pa, const void *pb)
{
    const vnode_t *a = pa, *b = pb;

    if (a->token != b->token)
        return a->token < b->token ? -1 : 1;
    return a->member < b->member ? -1 : a->member > b->member;
}

static int check_member(const moor_member_t *m, uint32_t i)
{
    if (m->idlen == 0 || m->idlen > MOOR_RING_ID_MAX)
        return moor_diag(MOOR_EINVAL, "ring: member %u has an id of %u bytes (1..%d allowed)", i,
                         m->idlen, MOOR_RING_ID_MAX);
    if (m->vnodes == 0 || m->vnodes > MOOR_RING_VNODES_MAX)
        return moor_diag(MOOR_EINVAL, "ring: member '%.*s' has %u vnodes (1..%d allowed)",
                         (int)m->idlen, m->id, m->vnodes, MOOR_RING_VNODES_MAX);
    if (m->status < 0 || m->status >= MOOR_MEMBER_STATUS_COUNT)
        return moor_diag(MOOR_EINVAL, "ring: member '%.*s' has unknown status %d", (int)m->idlen,
                         m->id, m->status);
    if (!memchr(m->addr, 0, sizeof(m->addr)) || !memchr(m->zone, 0, sizeof(m->zone)))
        return moor_diag(MOOR_EINVAL, "ring: member '%.*s' has an unterminated address or zone",
                         (int)m->idlen, m->id);
    return 0;
}

static int check_table(const moor_member_t *members, uint32_t n)
{
    uint32_t on = 0;
    int rc;

    if (n == 0 || n > MOOR_RING_MEMBERS_MAX)
        return moor_diag(MOOR_EINVAL, "ring: table of %u members (1..%d allowed)", n,
                         MOOR_RING_MEMBERS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = check_member(&members[i], i)))
            return rc;
        on += moor_member_tokens(&members[i]) > 0;
    }
    if (on == 0)
        return moor_diag(MOOR_EINVAL, "ring: none of the %u members has a token on the ring; nothing to route to", n);
    return 0;
}

/* After sorting: adjacent equal ids are duplicates. */
static int check_unique(const moor_ring_t *r)
{
    for (uint32_t i = 1; i < r->nmembers; i++) {
        const moor_member_t *a = &r->members[i - 1], *b = &r->members[i];
        if (id_cmp(a->id, a->idlen, b->id, b->idlen) == 0)
            return moor_diag(MOOR_EINVAL, "ring: member id '%.*s' appears twice", (int)a->idlen,
                             a->id);
    }
    return 0;
}

typedef struct zone_ref {
    const char *zone;
    uint32_t member;
} zone_ref_t;

static int zone_ref_cmp(const void *pa, const void *pb)
{
    const zone_ref_t *a = pa, *b = pb;
    int c = strcmp(a->zone, b->zone);

    if (c)
        return c;
    return a->member < b->member ? -1 : a->member > b->member;
}

/* Interns zones into classes and counts the classes on the ring. */
static int assign_zones(moor_ring_t *r)
{
    zone_ref_t *refs = malloc(r->nmembers * sizeof(*refs));
    uint32_t cls = 0;
    uint8_t *seen;

    if (!refs)
        return moor_diag(MOOR_ENOMEM, "ring: no memory for %u zones", r->nmembers);
    for (uint32_t i = 0; i < r->nmembers; i++)
        refs[i] = (zone_ref_t){r->members[i].zone, i};
    qsort(refs, r->nmembers, sizeof(*refs), zone_ref_cmp);
    for (uint32_t i = 0; i < r->nmembers; i++) {
        if (i > 0 && (!refs[i].zone[0] || strcmp(refs[i].zone, refs[i - 1].zone) != 0))
            cls++;
        r->zone[refs[i].member] = cls;
    }
    free(refs);
    seen = calloc(r->nmembers, 1);
    if (!seen)
        return moor_diag(MOOR_ENOMEM, "ring: no memory for %u zones", r->nmembers);
    r->nzones = 0;
    for (uint32_t i = 0; i < r->nmembers; i++) {
        if (moor_member_tokens(&r->members[i]) && !seen[r->zone[i]]) {
            seen[r->zone[i]] = 1;
            r->nzones++;
        }
    }
    free(seen);
    return 0;
}

static int place_vnodes(moor_ring_t *r, moor_ring_token_fn token)
{
    uint64_t total = 0;
    uint32_t k = 0;

    for (uint32_t i = 0; i < r->nmembers; i++)
        total += moor_member_tokens(&r->members[i]);
    r->vn = malloc(total * sizeof(*r->vn));
    if (!r->vn)
        return moor_diag(MOOR_ENOMEM, "ring: no memory for %llu vnodes", (unsigned long long)total);
    for (uint32_t i = 0; i < r->nmembers; i++) {
        const moor_member_t *m = &r->members[i];
        uint32_t on = moor_member_tokens(m);
        for (uint32_t v = 0; v < on; v++)
            r->vn[k++] = (vnode_t){token(m->id, m->idlen, v), i};
    }
    r->nvnodes = k;
    qsort(r->vn, r->nvnodes, sizeof(*r->vn), vnode_cmp);
    return 0;
}

/* Sums each member's ranges exactly in 64 bits: the ranges partition the
 * 2^64 tokens, so a member's sum wraps to 0 only when it owns them all. */
static int compute_shares(moor_ring_t *r)
{
    uint64_t *sum = calloc(r->nmembers, sizeof(*sum)), start, end;
    uint8_t *owns = calloc(r->nmembers, 1);

    if (!sum || !owns) {
        free(sum);
        free(owns);
        return moor_diag(MOOR_ENOMEM, "ring: no memory for %u shares", r->nmembers);
    }
    for (uint32_t i = 0; i < r->nvnodes; i++) {
        if (moor_ring_range_of(r, i, &start, &end) == 1) {
            sum[r->vn[i].member] += end - start; /* start == end: 2^64, i.e. 0 */
            owns[r->vn[i].member] = 1;
        }
    }
    for (uint32_t m = 0; m < r->nmembers; m++)
        r->share[m] = owns[m] && sum[m] == 0 ? 1.0 : (double)sum[m] * 0x1p-64;
    free(sum);
    free(owns);
    return 0;
}

int moor_ring_build_tokens(const moor_member_t *members, uint32_t n, moor_ring_token_fn token,
                           moor_ring_t **out)
{
    moor_ring_t *r;
    int rc;

    if ((rc = check_table(members, n)))
        return rc;
    if (!(r = calloc(1, sizeof(*r))))
        return moor_diag(MOOR_ENOMEM, "ring: no memory");
    atomic_init(&r->refs, 1);
    r->nmembers = n;
    r->members = malloc(n * sizeof(*r->members));
    r->zone = malloc(n * sizeof(*r->zone));
    r->share = calloc(n, sizeof(*r->share));
    if (!r->members || !r->zone || !r->share) {
        rc = moor_diag(MOOR_ENOMEM, "ring: no memory for %u members", n);
        goto fail;
    }
    memcpy(r->members, members, n * sizeof(*members));
    qsort(r->members, n, sizeof(*r->members), member_cmp);
    if ((rc = check_unique(r)) || (rc = assign_zones(r)) || (rc = place_vnodes(r, token)))
        goto fail;
    for (uint32_t i = 0; i < n; i++)
        r->on_ring += moor_member_tokens(&r->members[i]) > 0;
    if ((rc = compute_shares(r)))
        goto fail;
    *out = r;
    return 0;
fail:
    moor_ring_free(r);
    return rc;
}

int moor_ring_build(const moor_member_t *members, uint32_t n, moor_ring_t **out)
{
    return moor_ring_build_tokens(members, n, moor_ring_vnode_token, out);
}

moor_ring_t *moor_ring_ref(moor_ring_t *ring)
{
    atomic_fetch_add_explicit(&ring->refs, 1, memory_order_relaxed);
    return ring;
}

void moor_ring_free(moor_ring_t *ring)
{
    if (!ring || atomic_fetch_sub_explicit(&ring->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(ring->members);
    free(ring->zone);
    free(ring->share);
    free(ring->vn);
    free(ring);
}

/* ---- queries ------------------------------------------------------------------- */

uint32_t moor_ring_member_count(const moor_ring_t *ring)
{
    return ring->nmembers;
}

const moor_member_t *moor_ring_member(const moor_ring_t *ring, uint32_t i)
{
    return i < ring->nmembers ? &ring->members[i] : NULL;
}

int moor_ring_find(const moor_ring_t *ring, const char *id, size_t idlen)
{
    uint32_t lo = 0, hi = ring->nmembers;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const moor_member_t *m = &ring->members[mid];
        int c = id_cmp(m->id, m->idlen, id, idlen);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return MOOR_ENOENT;
}

uint32_t moor_ring_vnode_count(const moor_ring_t *ring)
{
    return ring->nvnodes;
}

int moor_ring_vnode(const moor_ring_t *ring, uint32_t i, uint64_t *token, uint32_t *member)
{
    if (i >= ring->nvnodes)
        return moor_diag(MOOR_EINVAL, "ring: vnode %u of %u", i, ring->nvnodes);
    *token = ring->vn[i].token;
    *member = ring->vn[i].member;
    return 0;
}

uint32_t moor_ring_vnode_at(const moor_ring_t *ring, uint64_t token)
{
    uint32_t lo = 0, hi = ring->nvnodes;

    while (lo < hi) { /* first vnode with vn.token >= token */
        uint32_t mid = lo + (hi - lo) / 2;
        if (ring->vn[mid].token < token)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == ring->nvnodes ? 0 : lo;
}

int moor_ring_range_of(const moor_ring_t *ring, uint32_t i, uint64_t *start, uint64_t *end)
{
    uint32_t prev;

    if (i >= ring->nvnodes)
        return moor_diag(MOOR_EINVAL, "ring: vnode %u of %u", i, ring->nvnodes);
    prev = i == 0 ? ring->nvnodes - 1 : i - 1;
    *start = ring->vn[prev].token;
    *end = ring->vn[i].token;
    /* Sorted order makes last == first mean every token is equal: vnode 0
     * then holds the whole ring, the others nothing. */
    return *start != *end || i == 0;
}

double moor_ring_owned_share(const moor_ring_t *ring, uint32_t member)
{
    return member < ring->nmembers ? ring->share[member] : 0.0;
}

/* ---- preference lists ---------------------------------------------------------- */

static int bit_get(const uint64_t *b, uint32_t i)
{
    return (int)(b[i >> 6] >> (i & 63)) & 1;
}
static void bit_set(uint64_t *b, uint32_t i)
{
    b[i >> 6] |= 1ull << (i & 63);
}

/* One list being built: bitmaps of chosen members, used zone classes and
 * (with a filter) accepted members, each `words` long. */
typedef struct walk {
    const moor_ring_t *r;
    uint64_t *chosen, *zused, *accept; /* accept NULL: every member */
    uint64_t *heap;                    /* scratch when over STACK_WORDS */
    uint64_t stack[3 * STACK_WORDS];
    uint32_t *out, count;
} walk_t;

static int walk_init(walk_t *w, const moor_ring_t *r, int filtered, uint32_t *out)
{
    size_t words = (r->nmembers + 63) / 64, total = words * (filtered ? 3 : 2);
    uint64_t *base = w->stack;

    w->heap = NULL;
    if (words > STACK_WORDS) {
        if (!(w->heap = calloc(total, sizeof(uint64_t))))
            return moor_diag(MOOR_ENOMEM, "ring: no memory to walk %u members", r->nmembers);
        base = w->heap;
    } else {
        memset(base, 0, total * sizeof(uint64_t));
    }
    w->r = r;
    w->chosen = base;
    w->zused = base + words;
    w->accept = filtered ? base + 2 * words : NULL;
    w->out = out;
    w->count = 0;
    return 0;
}

/* Evaluates the filter once per member on the ring; sets *members and
 * *zones to the accepted members and their zone classes (counted in zused,
 * cleared again before returning). */
static void walk_filter(walk_t *w, moor_ring_filter_fn filter, void *arg, uint32_t *members,
                        uint32_t *zones)
{
    const moor_ring_t *r = w->r;

    *members = *zones = 0;
    for (uint32_t m = 0; m < r->nmembers; m++) {
        if (!moor_member_tokens(&r->members[m]) || !filter(r, m, arg))
            continue;
        bit_set(w->accept, m);
        (*members)++;
        if (!bit_get(w->zused, r->zone[m])) {
            bit_set(w->zused, r->zone[m]);
            (*zones)++;
        }
    }
    memset(w->zused, 0, (r->nmembers + 63) / 64 * sizeof(uint64_t));
}

/* Walks clockwise from vnode start for at most one turn, choosing members
 * until count reaches want; with by_zone, only members of unused zones. */
static void walk_pass(walk_t *w, uint32_t start, uint32_t want, int by_zone)
{
    const moor_ring_t *r = w->r;
    uint32_t i = start;

    for (uint32_t step = 0; step < r->nvnodes && w->count < want; step++) {
        uint32_t m = r->vn[i].member;
        if (!bit_get(w->chosen, m) && (!w->accept || bit_get(w->accept, m)) &&
            (!by_zone || !bit_get(w->zused, r->zone[m]))) {
            bit_set(w->chosen, m);
            bit_set(w->zused, r->zone[m]);
            w->out[w->count++] = m;
        }
        if (++i == r->nvnodes)
            i = 0;
    }
}

static int preference(const moor_ring_t *ring, uint64_t token, uint32_t n,
                      moor_ring_filter_fn filter, void *arg, uint32_t *out, uint32_t *count)
{
    uint32_t members = ring->on_ring, zones = ring->nzones, want, start;
    walk_t w;
    int rc;

    if (n == 0)
        return moor_diag(MOOR_EINVAL, "ring: preference list of 0 members");
    if ((rc = walk_init(&w, ring, filter != NULL, out)))
        return rc;
    if (filter)
        walk_filter(&w, filter, arg, &members, &zones);
    want = n < members ? n : members;
    start = moor_ring_vnode_at(ring, token);
    /* Each zone-pass pick uses a new zone, so it can pick at most `zones`. */
    walk_pass(&w, start, want < zones ? want : zones, 1);
    walk_pass(&w, start, want, 0);
    *count = w.count;
    free(w.heap);
    return 0;
}

int moor_ring_preference_list(const moor_ring_t *ring, uint64_t token, uint32_t n, uint32_t *out,
                              uint32_t *count)
{
    return preference(ring, token, n, NULL, NULL, out, count);
}

int moor_ring_preference_list_filter(const moor_ring_t *ring, uint64_t token, uint32_t n,
                                     moor_ring_filter_fn filter, void *arg, uint32_t *out,
                                     uint32_t *count)
{
    if (!filter)
        return moor_diag(MOOR_EINVAL, "ring: NULL filter");
    return preference(ring, token, n, filter, arg, out, count);
}
