/*
 * test_membership.c -- member tables: the merge is order-independent
 * (commutative, associative, idempotent) on random tables, the winning
 * rules, refutation, and the wire form on good and bad bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/membership.h"
#include "testutil.h"
#include "util/err.h"

static moor_member_entry_t entry(const char *id, const char *addr, int status, uint64_t inc)
{
    moor_member_entry_t e;

    memset(&e, 0, sizeof(e));
    e.m.idlen = (uint8_t)strlen(id);
    memcpy(e.m.id, id, e.m.idlen);
    snprintf(e.m.addr, sizeof(e.m.addr), "%s", addr);
    e.m.vnodes = 16;
    e.m.status = status;
    e.incarnation = inc;
    return e;
}

static moor_member_entry_t random_entry(uint64_t *rng)
{
    char id[8], addr[32];

    snprintf(id, sizeof(id), "n%u", (unsigned)(testutil_rand(rng) % 6));
    snprintf(addr, sizeof(addr), "127.0.0.%u:7700", (unsigned)(testutil_rand(rng) % 3 + 1));
    return entry(id, addr, (int)(testutil_rand(rng) % MOOR_MEMBER_STATUS_COUNT),
                 testutil_rand(rng) % 3);
}

static void random_table(moor_members_t *t, uint64_t *rng)
{
    int n = (int)(testutil_rand(rng) % 8);

    moor_members_init(t);
    for (int i = 0; i < n; i++) {
        moor_member_entry_t e = random_entry(rng);
        assert_true(moor_members_apply(t, &e) >= 0);
    }
}

/* Tables are equal when their encodings are (entries are sorted). */
static void assert_same(const moor_members_t *a, const moor_members_t *b)
{
    moor_buf_t x = MOOR_BUF_INIT, y = MOOR_BUF_INIT;

    assert_int_equal(moor_members_encode(a, &x), 0);
    assert_int_equal(moor_members_encode(b, &y), 0);
    assert_int_equal(x.len, y.len);
    assert_memory_equal(x.data, y.data, x.len);
    moor_buf_free(&x);
    moor_buf_free(&y);
}

static void copy(moor_members_t *dst, const moor_members_t *src)
{
    moor_members_init(dst);
    assert_true(moor_members_merge(dst, src) >= 0);
}

static void test_merge_laws(void **state)
{
    uint64_t seed = testutil_seed("membership"), rng = seed | 1;

    (void)state;
    for (int round = 0; round < 2000; round++) {
        moor_members_t a, b, c, ab, ba, ab_c, bc, a_bc, aa;
        random_table(&a, &rng);
        random_table(&b, &rng);
        random_table(&c, &rng);
        copy(&ab, &a);
        assert_true(moor_members_merge(&ab, &b) >= 0);
        copy(&ba, &b);
        assert_true(moor_members_merge(&ba, &a) >= 0);
        assert_same(&ab, &ba); /* commutative */
        copy(&ab_c, &ab);
        assert_true(moor_members_merge(&ab_c, &c) >= 0);
        copy(&bc, &b);
        assert_true(moor_members_merge(&bc, &c) >= 0);
        copy(&a_bc, &a);
        assert_true(moor_members_merge(&a_bc, &bc) >= 0);
        assert_same(&ab_c, &a_bc); /* associative */
        copy(&aa, &a);
        assert_int_equal(moor_members_merge(&aa, &a), 0); /* idempotent */
        assert_same(&aa, &a);
        moor_members_free(&a), moor_members_free(&b), moor_members_free(&c);
        moor_members_free(&ab), moor_members_free(&ba), moor_members_free(&ab_c);
        moor_members_free(&bc), moor_members_free(&a_bc), moor_members_free(&aa);
    }
}

static void test_rules(void **state)
{
    moor_members_t t;
    moor_member_entry_t e;

    (void)state;
    moor_members_init(&t);
    e = entry("n1", "127.0.0.1:7700", MOOR_MEMBER_UP, 1);
    assert_int_equal(moor_members_apply(&t, &e), 1);
    assert_int_equal(moor_members_apply(&t, &e), 0);
    e = entry("n1", "127.0.0.1:7700", MOOR_MEMBER_SUSPECT, 0); /* older: ignored */
    assert_int_equal(moor_members_apply(&t, &e), 0);
    e = entry("n1", "127.0.0.1:7700", MOOR_MEMBER_DOWN, 1); /* same inc, further status */
    assert_int_equal(moor_members_apply(&t, &e), 1);
    assert_int_equal(moor_members_find(&t, "n1", 2)->m.status, MOOR_MEMBER_DOWN);
    /* the member refutes: incarnation raised past what was seen, up again */
    assert_int_equal(moor_members_refute(&t, "n1", 2, 1), 1);
    assert_int_equal(moor_members_find(&t, "n1", 2)->incarnation, 2);
    assert_int_equal(moor_members_find(&t, "n1", 2)->m.status, MOOR_MEMBER_UP);
    e = entry("n1", "127.0.0.1:7700", MOOR_MEMBER_DOWN, 1); /* stale rumour */
    assert_int_equal(moor_members_apply(&t, &e), 0);
    e = entry("", "x", MOOR_MEMBER_UP, 0);
    assert_int_equal(moor_members_apply(&t, &e), MOOR_EINVAL);
    e = entry("n2", "x", 17, 0);
    assert_int_equal(moor_members_apply(&t, &e), MOOR_EINVAL);
    assert_null(moor_members_find(&t, "n2", 2));
    moor_members_free(&t);
}

static void test_wire_and_ring(void **state)
{
    moor_members_t t, back, shuffled;
    moor_buf_t buf = MOOR_BUF_INIT;
    moor_ring_t *r1, *r2;
    const char *names[] = {"c", "a", "b", "d"};

    (void)state;
    moor_members_init(&t);
    moor_members_init(&shuffled);
    for (int i = 0; i < 4; i++) {
        char addr[32];
        moor_member_entry_t e;
        snprintf(addr, sizeof(addr), "127.0.0.%d:7700", i + 1);
        e = entry(names[i], addr, MOOR_MEMBER_UP, (uint64_t)i);
        assert_int_equal(moor_members_apply(&t, &e), 1);
        e = entry(names[i], addr, MOOR_MEMBER_UP, (uint64_t)i);
        assert_int_equal(moor_members_apply(&shuffled, &e), 1);
    }
    assert_int_equal(moor_members_encode(&t, &buf), 0);
    {
        const char *p = buf.data;
        assert_int_equal(moor_members_decode(&p, buf.data + buf.len, &back), 0);
        assert_ptr_equal(p, buf.data + buf.len);
        assert_same(&t, &back);
        moor_members_free(&back);
    }
    /* every truncation and every single-byte change: clean error or a
     * valid table, never a crash */
    for (size_t cut = 0; cut < buf.len; cut++) {
        const char *p = buf.data;
        int rc = moor_members_decode(&p, buf.data + cut, &back);
        assert_true(rc < 0);
        assert_int_equal(back.n, 0);
    }
    for (size_t i = 0; i < buf.len; i++) {
        for (int v = 0; v < 256; v += 37) {
            char *copy = malloc(buf.len);
            const char *p = copy;
            memcpy(copy, buf.data, buf.len);
            copy[i] = (char)v;
            if (moor_members_decode(&p, copy + buf.len, &back) == 0)
                moor_members_free(&back);
            free(copy);
        }
    }
    assert_int_equal(moor_members_ring(&t, &r1), 0);
    assert_int_equal(moor_members_ring(&shuffled, &r2), 0);
    assert_int_equal(moor_ring_vnode_count(r1), 64);
    for (uint32_t i = 0; i < moor_ring_vnode_count(r1); i++) {
        uint64_t t1, t2;
        uint32_t m1, m2;
        assert_int_equal(moor_ring_vnode(r1, i, &t1, &m1), 0);
        assert_int_equal(moor_ring_vnode(r2, i, &t2, &m2), 0);
        assert_true(t1 == t2 && m1 == m2);
    }
    moor_ring_free(r1);
    moor_ring_free(r2);
    moor_buf_free(&buf);
    moor_members_free(&t);
    moor_members_free(&shuffled);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_wire_and_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
