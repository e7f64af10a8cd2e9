/*
 * test_ring.c -- the consistent-hash ring, measured rather than assumed:
 * the spread of owned ranges (max/mean) for 3..1,000 nodes at 16, 64 and
 * 256 vnodes; the fraction of keys (sampled, and exactly by token ranges)
 * and of replica sets that move when an 11th node joins 10; preference
 * lists against a brute-force reference (distinct members, zones first,
 * filters, left members, rings past the on-stack scratch); independence
 * from the table's order; token derivation pinned to moor_hash_token and
 * moor_record_key; token collisions; and every input the builder refuses.
 * The figures go to stderr as tables that README quotes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "cluster/record.h"
#include "cluster/ring.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/hash.h"
#include "testutil.h"

static uint64_t rng;

/* ---- helpers ------------------------------------------------------------------ */

static void set_member(moor_member_t *m, const char *id, const char *zone, uint32_t vnodes,
                       int status)
{
    memset(m, 0, sizeof(*m));
    m->idlen = (uint8_t)strlen(id);
    memcpy(m->id, id, m->idlen);
    snprintf(m->addr, sizeof(m->addr), "127.0.0.1:%u", 7700u + (unsigned)(strlen(id) * 7));
    snprintf(m->zone, sizeof(m->zone), "%s", zone);
    m->vnodes = vnodes;
    m->status = status;
}

/* Members "n0".."n<count-1>", all up, no zones. */
static moor_member_t *make_table(uint32_t count, uint32_t vnodes)
{
    moor_member_t *t = calloc(count, sizeof(*t));
    char id[32];

    assert_non_null(t);
    for (uint32_t i = 0; i < count; i++) {
        snprintf(id, sizeof(id), "n%u", i);
        set_member(&t[i], id, "", vnodes, MOOR_MEMBER_UP);
    }
    return t;
}

static moor_ring_t *build(const moor_member_t *t, uint32_t n)
{
    moor_ring_t *r = NULL;
    int rc = moor_ring_build(t, n, &r);

    if (rc)
        fprintf(stderr, "build: %s: %s\n", moor_err_name(rc), moor_diag_msg(rc));
    assert_int_equal(rc, 0);
    assert_non_null(r);
    return r;
}

static int same_id(const moor_member_t *a, const moor_member_t *b)
{
    return a->idlen == b->idlen && memcmp(a->id, b->id, a->idlen) == 0;
}

static const moor_member_t *primary(const moor_ring_t *r, uint64_t token)
{
    uint64_t t;
    uint32_t m;

    assert_int_equal(moor_ring_vnode(r, moor_ring_vnode_at(r, token), &t, &m), 0);
    return moor_ring_member(r, m);
}

/* Pointer to the member of r whose id is id (NUL-terminated). */
static const moor_member_t *member_named(const moor_ring_t *r, const char *id)
{
    int i = moor_ring_find(r, id, strlen(id));

    assert_true(i >= 0);
    return moor_ring_member(r, (uint32_t)i);
}

static void shuffle(moor_member_t *t, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(testutil_rand(&rng) % i);
        moor_member_t tmp = t[i - 1];
        t[i - 1] = t[j];
        t[j] = tmp;
    }
}

/* The preference list straight from its definition, for comparison: one
 * full turn picking unchosen members (accepted by status mask) of unused
 * zones (an empty zone is unique), then one full turn picking any
 * unchosen member, until n. */
static uint32_t reference_list(const moor_ring_t *r, uint64_t token, uint32_t n, uint32_t skip_mask,
                               uint32_t *out)
{
    uint32_t nv = moor_ring_vnode_count(r), start = 0, count = 0;
    uint64_t t;
    uint32_t m;

    while (start < nv) { /* linear scan, unlike the binary search */
        assert_int_equal(moor_ring_vnode(r, start, &t, &m), 0);
        if (t >= token)
            break;
        start++;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t s = 0; s < nv && count < n; s++) {
            const moor_member_t *cand;
            int ok = 1;
            assert_int_equal(moor_ring_vnode(r, (start + s) % nv, &t, &m), 0);
            cand = moor_ring_member(r, m);
            if (skip_mask & (1u << cand->status))
                continue;
            for (uint32_t k = 0; k < count && ok; k++) {
                const moor_member_t *o = moor_ring_member(r, out[k]);
                if (out[k] == m || (pass == 0 && cand->zone[0] && strcmp(o->zone, cand->zone) == 0))
                    ok = 0;
            }
            if (ok)
                out[count++] = m;
        }
    }
    return count;
}

static void assert_lists_equal(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb)
{
    assert_int_equal(na, nb);
    for (uint32_t i = 0; i < na; i++)
        assert_int_equal(a[i], b[i]);
}

/* ---- (1) spread of owned ranges ------------------------------------------------- */

static void test_spread(void **state)
{
    static const uint32_t nodes[] = {3, 10, 100, 1000};
    static const uint32_t vnodes[] = {16, 64, 256};
    (void)state;

    fprintf(stderr, "\nring spread: primary share max/mean (min/mean)\n");
    fprintf(stderr, "| nodes | vnodes=16       | vnodes=64       | vnodes=256      |\n");
    fprintf(stderr, "|------:|-----------------|-----------------|-----------------|\n");
    for (size_t a = 0; a < sizeof(nodes) / sizeof(nodes[0]); a++) {
        fprintf(stderr, "| %5u |", nodes[a]);
        for (size_t b = 0; b < sizeof(vnodes) / sizeof(vnodes[0]); b++) {
            moor_member_t *t = make_table(nodes[a], vnodes[b]);
            moor_ring_t *r = build(t, nodes[a]);
            double mean = 1.0 / nodes[a], max = 0, min = 1, sum = 0;

            assert_int_equal(moor_ring_vnode_count(r), nodes[a] * vnodes[b]);
            for (uint32_t m = 0; m < nodes[a]; m++) {
                double s = moor_ring_owned_share(r, m);
                sum += s;
                max = s > max ? s : max;
                min = s < min ? s : min;
            }
            fprintf(stderr, " %5.3f (%5.3f)   |", max / mean, min / mean);
            if (sum < 1 - 1e-9 || sum > 1 + 1e-9)
                fail_msg("%u nodes x %u vnodes: shares sum to %.12f", nodes[a], vnodes[b], sum);
            if (vnodes[b] == 256 && nodes[a] >= 10 && nodes[a] <= 100 && max / mean >= 1.6)
                fail_msg("%u nodes x 256 vnodes: max/mean %.3f >= 1.6", nodes[a], max / mean);
            if (vnodes[b] == 256 && nodes[a] == 3 && max / mean >= 1.6)
                fail_msg("3 nodes x 256 vnodes: max/mean %.3f >= 1.6", max / mean);
            moor_ring_free(r);
            free(t);
        }
        fprintf(stderr, "\n");
    }
}

/* ---- (2) movement when an 11th node joins 10 ------------------------------------- */

static int u64_cmp(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

/* Exactly: the fraction of the ring whose primary differs between a and
 * b, over the elementary intervals between the tokens of both rings. */
static double exact_moved(const moor_ring_t *a, const moor_ring_t *b)
{
    uint32_t na = moor_ring_vnode_count(a), nb = moor_ring_vnode_count(b), nu = 0, m;
    uint64_t *u = malloc((na + nb) * sizeof(*u));
    double moved = 0;

    assert_non_null(u);
    for (uint32_t i = 0; i < na; i++)
        assert_int_equal(moor_ring_vnode(a, i, &u[nu++], &m), 0);
    for (uint32_t i = 0; i < nb; i++)
        assert_int_equal(moor_ring_vnode(b, i, &u[nu++], &m), 0);
    qsort(u, nu, sizeof(*u), u64_cmp);
    for (uint32_t j = 0; j < nu; j++) {
        uint64_t prev = u[j == 0 ? nu - 1 : j - 1];
        if (!same_id(primary(a, u[j]), primary(b, u[j])))
            moved += (double)(u[j] - prev) * 0x1p-64;
    }
    free(u);
    return moved;
}

/* 1 if member id is among list (indices into r). */
static int list_has(const moor_ring_t *r, const uint32_t *list, uint32_t n,
                    const moor_member_t *who)
{
    for (uint32_t i = 0; i < n; i++)
        if (same_id(moor_ring_member(r, list[i]), who))
            return 1;
    return 0;
}

static void test_join_movement(void **state)
{
    enum { KEYS = 200000, N = 3 };
    moor_member_t *t = make_table(11, 256);
    moor_ring_t *before = build(t, 10), *after = build(t, 11);
    const moor_member_t *joiner = member_named(after, "n10");
    uint64_t seed = rng;
    uint32_t moved = 0, sets_changed = 0, replicas_moved = 0;
    double exact, share = moor_ring_owned_share(after, (uint32_t)moor_ring_find(after, "n10", 3));
    (void)state;

    for (uint32_t k = 0; k < KEYS; k++) {
        char key[32];
        uint64_t tok;
        uint32_t la[N], lb[N], ca, cb, gained = 0;
        int n =
            snprintf(key, sizeof(key), "user:%016llx", (unsigned long long)testutil_rand(&seed));

        assert_int_equal(moor_ring_key_token("s", 1, key, (size_t)n, &tok), 0);
        if (!same_id(primary(before, tok), primary(after, tok))) {
            moved++;
            assert_true(same_id(primary(after, tok), joiner)); /* only to the joiner */
        }
        assert_int_equal(moor_ring_preference_list(before, tok, N, la, &ca), 0);
        assert_int_equal(moor_ring_preference_list(after, tok, N, lb, &cb), 0);
        assert_int_equal(ca, N);
        assert_int_equal(cb, N);
        for (uint32_t i = 0; i < N; i++)
            gained += !list_has(before, la, ca, moor_ring_member(after, lb[i]));
        if (gained) { /* the joiner replaced exactly one old replica */
            sets_changed++;
            replicas_moved += gained;
            assert_int_equal(gained, 1);
            assert_true(list_has(after, lb, cb, joiner));
        }
    }
    exact = exact_moved(before, after);
    fprintf(stderr, "\nring join 10 -> 11 nodes, 256 vnodes (ideal 1/11 = 0.0909)\n");
    fprintf(stderr, "| measure | fraction |\n|---|---:|\n");
    fprintf(stderr, "| primaries moved, %d sampled keys | %.4f |\n", KEYS, (double)moved / KEYS);
    fprintf(stderr, "| primaries moved, exact by token range | %.4f |\n", exact);
    fprintf(stderr, "| share of the joiner | %.4f |\n", share);
    fprintf(stderr, "| N=3 replica sets changed (ideal 3/11 = 0.2727) | %.4f |\n",
            (double)sets_changed / KEYS);
    fprintf(stderr, "| N=3 replicas moved / all replicas | %.4f |\n",
            (double)replicas_moved / (KEYS * N));
    if (fabs(exact - share) > 1e-9)
        fail_msg("exact moved %.12f != joiner's share %.12f", exact, share);
    if (exact < 0.0727 || exact > 0.109)
        fail_msg("exact moved fraction %.4f outside [0.0727, 0.109]", exact);
    if ((double)moved / KEYS < 0.0727 || (double)moved / KEYS > 0.109)
        fail_msg("sampled moved fraction %.4f outside [0.0727, 0.109]", (double)moved / KEYS);
    if ((double)sets_changed / KEYS < 0.2 || (double)sets_changed / KEYS > 0.35)
        fail_msg("replica sets changed %.4f outside [0.2, 0.35]", (double)sets_changed / KEYS);
    moor_ring_free(before);
    moor_ring_free(after);
    free(t);
}

/* ---- (3) preference lists -------------------------------------------------------- */

static void test_preference_basic(void **state)
{
    moor_member_t *t = make_table(10, 64);
    moor_ring_t *r = build(t, 10);
    uint32_t out[16], again[16], count, count2;
    (void)state;

    for (int k = 0; k < 5000; k++) {
        uint64_t tok = testutil_rand(&rng);
        for (uint32_t n = 1; n <= 12; n++) {
            assert_int_equal(moor_ring_preference_list(r, tok, n, out, &count), 0);
            assert_int_equal(count, n < 10 ? n : 10);
            assert_true(same_id(moor_ring_member(r, out[0]), primary(r, tok)));
            for (uint32_t i = 0; i < count; i++)
                for (uint32_t j = i + 1; j < count; j++)
                    assert_int_not_equal(out[i], out[j]);
            assert_int_equal(moor_ring_preference_list(r, tok, n, again, &count2), 0);
            assert_lists_equal(out, count, again, count2);
        }
    }
    assert_int_equal(moor_ring_preference_list(r, 1, 0, out, &count), MOOR_EINVAL);
    moor_ring_free(r);
    free(t);
}

/* Zones of the list: how many distinct. */
static uint32_t zones_in(const moor_ring_t *r, const uint32_t *list, uint32_t n)
{
    uint32_t distinct = 0;

    for (uint32_t i = 0; i < n; i++) {
        int seen = 0;
        for (uint32_t j = 0; j < i; j++)
            seen |=
                strcmp(moor_ring_member(r, list[i])->zone, moor_ring_member(r, list[j])->zone) == 0;
        distinct += !seen;
    }
    return distinct;
}

static void test_preference_zones(void **state)
{
    static const char *const zones[] = {"az-a", "az-b", "az-c"};
    moor_member_t t3[9], t2[8], lop[6];
    moor_ring_t *r3, *r2, *rl;
    uint32_t out[8], count;
    char id[16];
    (void)state;

    for (uint32_t i = 0; i < 9; i++) {
        snprintf(id, sizeof(id), "z%u", i);
        set_member(&t3[i], id, zones[i % 3], 64, MOOR_MEMBER_UP);
    }
    for (uint32_t i = 0; i < 8; i++) {
        snprintf(id, sizeof(id), "y%u", i);
        set_member(&t2[i], id, zones[i % 2], 64, MOOR_MEMBER_UP);
    }
    /* Lopsided: one member in az-a, five in az-b. */
    for (uint32_t i = 0; i < 6; i++) {
        snprintf(id, sizeof(id), "x%u", i);
        set_member(&lop[i], id, i == 0 ? "az-a" : "az-b", 64, MOOR_MEMBER_UP);
    }
    r3 = build(t3, 9), r2 = build(t2, 8), rl = build(lop, 6);
    for (int k = 0; k < 10000; k++) {
        uint64_t tok = testutil_rand(&rng);

        assert_int_equal(moor_ring_preference_list(r3, tok, 3, out, &count), 0);
        assert_int_equal(count, 3);
        assert_int_equal(zones_in(r3, out, count), 3);
        assert_true(same_id(moor_ring_member(r3, out[0]), primary(r3, tok)));

        assert_int_equal(moor_ring_preference_list(r2, tok, 3, out, &count), 0);
        assert_int_equal(count, 3);
        assert_int_equal(zones_in(r2, out, 2), 2); /* the first two already differ */
        assert_int_not_equal(out[2], out[0]);
        assert_int_not_equal(out[2], out[1]);

        assert_int_equal(moor_ring_preference_list(rl, tok, 3, out, &count), 0);
        assert_int_equal(count, 3);
        assert_int_equal(zones_in(rl, out, 3), 2);
        assert_true(list_has(rl, out, 3, member_named(rl, "x0")));
    }
    moor_ring_free(r3);
    moor_ring_free(r2);
    moor_ring_free(rl);
}

static void test_preference_more_than_members(void **state)
{
    moor_member_t *t = make_table(5, 16);
    moor_ring_t *r = build(t, 5);
    uint32_t out[10], count, mask = 0;
    (void)state;

    assert_int_equal(moor_ring_preference_list(r, 12345, 10, out, &count), 0);
    assert_int_equal(count, 5);
    for (uint32_t i = 0; i < count; i++)
        mask |= 1u << out[i];
    assert_int_equal(mask, 0x1f);
    moor_ring_free(r);
    free(t);
}

/* Random tables with random zones (some empty) and statuses: the ring's
 * lists equal the reference, plain and filtered (down and suspect
 * skipped), and the filtered list equals the plain list of a ring built
 * without the skipped members. */
static int skip_by_mask(const moor_ring_t *r, uint32_t m, void *arg)
{
    uint32_t *calls = arg;
    calls[1]++;
    return !(calls[0] & (1u << moor_ring_member(r, m)->status));
}

static void check_random_table(uint32_t n, uint32_t vnodes, int lists)
{
    static const char *const zones[] = {"", "a", "b", "c", "d"};
    moor_member_t *t = calloc(n, sizeof(*t)), *kept = calloc(n, sizeof(*kept));
    uint32_t nkept = 0, kept_on_ring = 0, skip = (1u << MOOR_MEMBER_DOWN) | (1u << MOOR_MEMBER_SUSPECT);
    uint32_t nz = 1 + (uint32_t)(testutil_rand(&rng) % 5);
    moor_ring_t *r, *rk;
    char id[16];

    assert_non_null(t);
    assert_non_null(kept);
    for (uint32_t i = 0; i < n; i++) {
        int st = (int)(testutil_rand(&rng) % MOOR_MEMBER_STATUS_COUNT);
        snprintf(id, sizeof(id), "m%u", i);
        if (i == 0 && st == MOOR_MEMBER_LEFT)
            st = MOOR_MEMBER_UP; /* at least one member on the ring */
        set_member(&t[i], id, zones[testutil_rand(&rng) % nz], vnodes, st);
        if (!(skip & (1u << st))) {
            kept[nkept++] = t[i];
            kept_on_ring += moor_member_on_ring(st);
        }
    }
    r = build(t, n);
    rk = kept_on_ring ? build(kept, nkept) : NULL; /* only left ones: no ring */
    for (int k = 0; k < lists; k++) {
        uint64_t tok = testutil_rand(&rng);
        uint32_t nlist = 1 + (uint32_t)(testutil_rand(&rng) % 8);
        uint32_t got[8], want[8], kl[8], count, wcount, kcount, calls[2] = {skip, 0};

        assert_int_equal(moor_ring_preference_list(r, tok, nlist, got, &count), 0);
        wcount = reference_list(r, tok, nlist, 1u << MOOR_MEMBER_LEFT, want);
        assert_lists_equal(got, count, want, wcount);

        assert_int_equal(
            moor_ring_preference_list_filter(r, tok, nlist, skip_by_mask, calls, got, &count), 0);
        assert_true(calls[1] <= n);
        wcount = reference_list(r, tok, nlist, skip | (1u << MOOR_MEMBER_LEFT), want);
        assert_lists_equal(got, count, want, wcount);
        if (!rk) {
            assert_int_equal(count, 0);
            continue;
        }
        assert_int_equal(moor_ring_preference_list(rk, tok, nlist, kl, &kcount), 0);
        assert_int_equal(count, kcount);
        for (uint32_t i = 0; i < count; i++)
            assert_true(same_id(moor_ring_member(r, got[i]), moor_ring_member(rk, kl[i])));
    }
    moor_ring_free(r);
    moor_ring_free(rk);
    free(t);
    free(kept);
}

static void test_preference_reference(void **state)
{
    (void)state;
    for (int round = 0; round < 40; round++)
        check_random_table(2 + (uint32_t)(testutil_rand(&rng) % 30),
                           1 + (uint32_t)(testutil_rand(&rng) % 32), 300);
    check_random_table(1500, 8, 300); /* over 1,024 members: heap scratch */
}

static void test_left_member(void **state)
{
    moor_member_t t[4];
    moor_ring_t *with, *without;
    uint32_t a[3], b[3], ca, cb;
    int left;
    (void)state;

    set_member(&t[0], "alpha", "", 32, MOOR_MEMBER_UP);
    set_member(&t[1], "bravo", "", 32, MOOR_MEMBER_JOINING);
    set_member(&t[2], "delta", "", 32, MOOR_MEMBER_LEAVING);
    set_member(&t[3], "charlie", "", 32, MOOR_MEMBER_LEFT);
    with = build(t, 4);
    without = build(t, 3);
    assert_int_equal(moor_ring_member_count(with), 4);
    assert_int_equal(moor_ring_vnode_count(with), 96);
    left = moor_ring_find(with, "charlie", 7);
    assert_int_equal(left, 2); /* sorted by id: alpha bravo charlie delta */
    assert_int_equal(moor_ring_member(with, 2)->status, MOOR_MEMBER_LEFT);
    assert_true(moor_ring_owned_share(with, (uint32_t)left) == 0.0);
    for (int k = 0; k < 2000; k++) {
        uint64_t tok = testutil_rand(&rng);
        assert_int_equal(moor_ring_preference_list(with, tok, 3, a, &ca), 0);
        assert_int_equal(moor_ring_preference_list(without, tok, 3, b, &cb), 0);
        assert_int_equal(ca, 3);
        assert_int_equal(cb, 3);
        for (uint32_t i = 0; i < 3; i++)
            assert_true(same_id(moor_ring_member(with, a[i]), moor_ring_member(without, b[i])));
    }
    moor_ring_free(with);
    moor_ring_free(without);
}

/* ---- (4) order independence ------------------------------------------------------ */

static void assert_rings_equal(const moor_ring_t *a, const moor_ring_t *b)
{
    uint32_t la[5], lb[5], ca, cb;

    assert_int_equal(moor_ring_member_count(a), moor_ring_member_count(b));
    for (uint32_t i = 0; i < moor_ring_member_count(a); i++) {
        assert_memory_equal(moor_ring_member(a, i), moor_ring_member(b, i), sizeof(moor_member_t));
        assert_true(moor_ring_owned_share(a, i) == moor_ring_owned_share(b, i));
    }
    assert_int_equal(moor_ring_vnode_count(a), moor_ring_vnode_count(b));
    for (uint32_t i = 0; i < moor_ring_vnode_count(a); i++) {
        uint64_t ta, tb;
        uint32_t ma, mb;
        assert_int_equal(moor_ring_vnode(a, i, &ta, &ma), 0);
        assert_int_equal(moor_ring_vnode(b, i, &tb, &mb), 0);
        assert_int_equal(ta, tb);
        assert_int_equal(ma, mb);
    }
    for (int k = 0; k < 5000; k++) {
        uint64_t tok = testutil_rand(&rng);
        assert_int_equal(moor_ring_preference_list(a, tok, 5, la, &ca), 0);
        assert_int_equal(moor_ring_preference_list(b, tok, 5, lb, &cb), 0);
        assert_lists_equal(la, ca, lb, cb);
    }
}

static void test_order_independent(void **state)
{
    static const char *const zones[] = {"east", "west", ""};
    moor_member_t t[40], s[40];
    moor_ring_t *a, *b;
    char id[16];
    (void)state;

    for (uint32_t i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "node-%02u", i);
        set_member(&t[i], id, zones[i % 3], 16 + i, i % 7 == 3 ? MOOR_MEMBER_DOWN : MOOR_MEMBER_UP);
    }
    memcpy(s, t, sizeof(t));
    a = build(t, 40);
    for (int round = 0; round < 5; round++) {
        shuffle(s, 40);
        b = build(s, 40);
        assert_rings_equal(a, b);
        moor_ring_free(b);
    }
    moor_ring_free(a);
}

/* ---- tokens ------------------------------------------------------------------- */

static void test_vnode_tokens(void **state)
{
    moor_member_t t[3];
    moor_ring_t *r;
    uint32_t found = 0;
    (void)state;

    set_member(&t[0], "n1", "", 8, MOOR_MEMBER_UP);
    set_member(&t[1], "n2", "", 8, MOOR_MEMBER_UP);
    set_member(&t[2], "0123456789012345678901234567890123456789012345678901234567890123", "", 8,
               MOOR_MEMBER_UP);
    r = build(t, 3);
    for (uint32_t m = 0; m < 3; m++) {
        for (uint32_t i = 0; i < 8; i++) {
            char buf[MOOR_RING_ID_MAX + 4];
            uint64_t want, tok;
            uint32_t owner;
            int hit = 0;
            memcpy(buf, t[m].id, t[m].idlen);
            buf[t[m].idlen] = (char)(i >> 24), buf[t[m].idlen + 1] = (char)(i >> 16);
            buf[t[m].idlen + 2] = (char)(i >> 8), buf[t[m].idlen + 3] = (char)i;
            want = moor_hash_token(buf, t[m].idlen + 4u);
            assert_int_equal(moor_ring_vnode_token(t[m].id, t[m].idlen, i), want);
            for (uint32_t v = 0; v < moor_ring_vnode_count(r); v++) {
                assert_int_equal(moor_ring_vnode(r, v, &tok, &owner), 0);
                hit |= tok == want && same_id(moor_ring_member(r, owner), &t[m]);
            }
            assert_true(hit);
            found++;
        }
    }
    assert_int_equal(found, moor_ring_vnode_count(r));
    moor_ring_free(r);
}

static void check_key_token(const char *space, size_t slen, const char *key, size_t klen)
{
    moor_buf_t b;
    uint64_t tok = 0;

    moor_buf_init(&b);
    assert_int_equal(moor_record_key(space, slen, key, klen, &b), 0);
    assert_int_equal(moor_ring_key_token(space, slen, key, klen, &tok), 0);
    assert_int_equal(tok, moor_dec_be64(b.data));
    moor_buf_free(&b);
}

static void test_key_token(void **state)
{
    char space[256], *big = malloc(100000);
    uint64_t tok = 7;
    (void)state;

    assert_non_null(big);
    for (size_t i = 0; i < 100000; i++)
        big[i] = (char)testutil_rand(&rng);
    memset(space, 's', sizeof(space));
    check_key_token("", 0, "", 0);
    check_key_token("default", 7, "k", 1);
    check_key_token("carts", 5, "user:42", 7);
    check_key_token(space, 255, "x", 1);
    check_key_token("bin", 3, big, 100000);
    for (int k = 0; k < 200; k++)
        check_key_token("s", 1, big + k, (size_t)(testutil_rand(&rng) % 300));
    assert_int_equal(moor_ring_key_token(space, 256, "x", 1, &tok), MOOR_EINVAL);
    assert_int_equal(tok, 7);
    free(big);
}

/* ---- ranges ------------------------------------------------------------------- */

static void test_ranges(void **state)
{
    moor_member_t *t = make_table(7, 32);
    moor_ring_t *r = build(t, 7);
    uint64_t total = 0, start, end;
    double *share = calloc(7, sizeof(double));
    (void)state;

    assert_non_null(share);
    for (uint32_t i = 0; i < moor_ring_vnode_count(r); i++) {
        uint64_t tok;
        uint32_t owner;
        assert_int_equal(moor_ring_range_of(r, i, &start, &end), 1);
        assert_int_equal(moor_ring_vnode(r, i, &tok, &owner), 0);
        assert_int_equal(end, tok);
        assert_int_equal(moor_ring_vnode_at(r, end), i);
        assert_int_equal(moor_ring_vnode_at(r, start + 1), i);
        if (i + 1 < moor_ring_vnode_count(r))
            assert_int_not_equal(moor_ring_vnode_at(r, end + 1), i);
        total += end - start; /* sums to 2^64, i.e. 0 */
        share[owner] += (double)(end - start) * 0x1p-64;
    }
    assert_int_equal(total, 0);
    for (uint32_t m = 0; m < 7; m++)
        assert_true(fabs(share[m] - moor_ring_owned_share(r, m)) < 1e-12);
    assert_int_equal(moor_ring_vnode_at(r, UINT64_MAX), 0); /* past the last token: wraps */
    assert_int_equal(moor_ring_range_of(r, moor_ring_vnode_count(r), &start, &end), MOOR_EINVAL);
    moor_ring_free(r);
    free(t);
    free(share);
}

/* ---- collisions --------------------------------------------------------------- */

static uint64_t token_by_index(const char *id, size_t idlen, uint32_t i)
{
    (void)id, (void)idlen;
    return 1000u * (i + 1);
}

static uint64_t token_constant(const char *id, size_t idlen, uint32_t i)
{
    (void)id, (void)idlen, (void)i;
    return 42;
}

static void test_collisions(void **state)
{
    moor_member_t t[3], s[3];
    moor_ring_t *r, *r2;
    uint32_t out[3], count, owner;
    uint64_t start, end, tok;
    (void)state;

    set_member(&t[0], "b", "", 4, MOOR_MEMBER_UP);
    set_member(&t[1], "c", "", 4, MOOR_MEMBER_UP);
    set_member(&t[2], "a", "", 4, MOOR_MEMBER_UP);
    assert_int_equal(moor_ring_build_tokens(t, 3, token_by_index, &r), 0);
    s[0] = t[2], s[1] = t[0], s[2] = t[1];
    assert_int_equal(moor_ring_build_tokens(s, 3, token_by_index, &r2), 0);
    assert_rings_equal(r, r2);
    /* Vnodes (1000,a) (1000,b) (1000,c) (2000,a) ...: a owns everything. */
    assert_int_equal(moor_ring_vnode_count(r), 12);
    for (uint32_t i = 0; i < 12; i++) {
        assert_int_equal(moor_ring_vnode(r, i, &tok, &owner), 0);
        assert_int_equal(tok, 1000u * (i / 3 + 1));
        assert_int_equal(owner, i % 3);
        assert_int_equal(moor_ring_range_of(r, i, &start, &end), i % 3 == 0);
    }
    assert_true(moor_ring_owned_share(r, 0) == 1.0);
    assert_true(moor_ring_owned_share(r, 1) == 0.0);
    assert_true(same_id(primary(r, 1500), member_named(r, "a")));
    assert_true(same_id(primary(r, 2000), member_named(r, "a")));
    assert_int_equal(moor_ring_preference_list(r, 1500, 3, out, &count), 0);
    assert_int_equal(count, 3);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 2);
    moor_ring_free(r);
    moor_ring_free(r2);

    assert_int_equal(moor_ring_build_tokens(t, 3, token_constant, &r), 0);
    assert_int_equal(moor_ring_range_of(r, 0, &start, &end), 1);
    assert_int_equal(start, end); /* the whole ring */
    assert_int_equal(moor_ring_range_of(r, 1, &start, &end), 0);
    assert_true(moor_ring_owned_share(r, 0) == 1.0);
    assert_true(moor_ring_owned_share(r, 2) == 0.0);
    moor_ring_free(r);
}

/* ---- (5) edge cases ------------------------------------------------------------- */

static void test_one_member(void **state)
{
    moor_member_t t;
    moor_ring_t *r;
    uint32_t out[3], count;
    uint64_t start, end;
    (void)state;

    set_member(&t, "solo", "", 1, MOOR_MEMBER_UP);
    r = build(&t, 1);
    assert_int_equal(moor_ring_vnode_count(r), 1);
    assert_true(moor_ring_owned_share(r, 0) == 1.0);
    assert_int_equal(moor_ring_range_of(r, 0, &start, &end), 1);
    assert_int_equal(start, end);
    for (int k = 0; k < 100; k++) {
        assert_int_equal(moor_ring_preference_list(r, testutil_rand(&rng), 3, out, &count), 0);
        assert_int_equal(count, 1);
        assert_int_equal(out[0], 0);
    }
    moor_ring_free(r);

    t.vnodes = 16;
    r = build(&t, 1);
    assert_true(fabs(moor_ring_owned_share(r, 0) - 1.0) < 1e-12);
    assert_ptr_equal(moor_ring_ref(r), r);
    moor_ring_free(r); /* the extra reference */
    assert_int_equal(moor_ring_member(r, 0)->vnodes, 16);
    moor_ring_free(r);
    moor_ring_free(NULL);
}

/* Build must fail with code and a diagnostic mentioning what. */
static void expect_refused(const moor_member_t *t, uint32_t n, const char *what)
{
    moor_ring_t *r = (moor_ring_t *)&r; /* must stay untouched */
    int rc = moor_ring_build(t, n, &r);

    if (rc != MOOR_EINVAL)
        fail_msg("expected EINVAL for '%s', got %s", what, moor_err_name(rc));
    assert_ptr_equal(r, (moor_ring_t *)&r);
    if (!strstr(moor_diag_msg(rc), what))
        fail_msg("diag '%s' does not mention '%s'", moor_diag_msg(rc), what);
}

static void test_refusals(void **state)
{
    moor_member_t t[3];
    (void)state;

    set_member(&t[0], "n1", "", 8, MOOR_MEMBER_UP);
    set_member(&t[1], "n2", "", 8, MOOR_MEMBER_UP);
    set_member(&t[2], "n1", "", 8, MOOR_MEMBER_UP);
    expect_refused(t, 0, "0 members");
    expect_refused(t, 3, "'n1' appears twice");
    t[2].id[1] = '3';
    t[1].vnodes = 0;
    expect_refused(t, 3, "'n2' has 0 vnodes");
    t[1].vnodes = MOOR_RING_VNODES_MAX + 1;
    expect_refused(t, 3, "vnodes");
    t[1].vnodes = 8;
    t[1].idlen = 0;
    expect_refused(t, 3, "0 bytes");
    t[1].idlen = MOOR_RING_ID_MAX + 1;
    expect_refused(t, 3, "65 bytes");
    t[1].idlen = 2;
    t[1].status = 9;
    expect_refused(t, 3, "unknown status 9");
    t[1].status = -1;
    expect_refused(t, 3, "unknown status -1");
    t[1].status = MOOR_MEMBER_UP;
    memset(t[1].zone, 'z', sizeof(t[1].zone));
    expect_refused(t, 3, "unterminated");
    t[1].zone[0] = 0;
    memset(t[0].addr, 'a', sizeof(t[0].addr));
    expect_refused(t, 3, "unterminated");
    t[0].addr[0] = 0;
    for (int i = 0; i < 3; i++)
        t[i].status = MOOR_MEMBER_LEFT;
    expect_refused(t, 3, "none of the 3 members has a token");
    expect_refused(t, MOOR_RING_MEMBERS_MAX + 1, "members");
}

static void test_queries_out_of_range(void **state)
{
    moor_member_t *t = make_table(3, 4);
    moor_ring_t *r = build(t, 3);
    uint64_t tok;
    uint32_t m;
    (void)state;

    assert_null(moor_ring_member(r, 3));
    assert_int_equal(moor_ring_find(r, "n9", 2), MOOR_ENOENT);
    assert_int_equal(moor_ring_find(r, "n", 1), MOOR_ENOENT);
    assert_int_equal(moor_ring_find(r, "n2", 2), 2);
    assert_int_equal(moor_ring_vnode(r, 12, &tok, &m), MOOR_EINVAL);
    assert_true(moor_ring_owned_share(r, 3) == 0.0);
    assert_int_equal(moor_ring_preference_list_filter(r, 1, 3, NULL, NULL, &m, &m), MOOR_EINVAL);
    moor_ring_free(r);
    free(t);
}

static void test_status_names(void **state)
{
    (void)state;
    for (int s = 0; s < MOOR_MEMBER_STATUS_COUNT; s++) {
        const char *name = moor_member_status_name(s);
        assert_int_equal(moor_member_status_parse(name, strlen(name)), s);
    }
    assert_string_equal(moor_member_status_name(MOOR_MEMBER_SUSPECT), "suspect");
    assert_string_equal(moor_member_status_name(17), "unknown");
    assert_int_equal(moor_member_status_parse("upp", 3), MOOR_EINVAL);
    assert_int_equal(moor_member_status_parse("up", 1), MOOR_EINVAL);
    assert_true(moor_member_on_ring(MOOR_MEMBER_DOWN));
    assert_false(moor_member_on_ring(MOOR_MEMBER_LEFT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spread),
        cmocka_unit_test(test_join_movement),
        cmocka_unit_test(test_preference_basic),
        cmocka_unit_test(test_preference_zones),
        cmocka_unit_test(test_preference_more_than_members),
        cmocka_unit_test(test_preference_reference),
        cmocka_unit_test(test_left_member),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_vnode_tokens),
        cmocka_unit_test(test_key_token),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_collisions),
        cmocka_unit_test(test_one_member),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_queries_out_of_range),
        cmocka_unit_test(test_status_names),
    };

    rng = testutil_seed("test_ring");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
