/*
 * fuzz_members.c -- libFuzzer target for member tables, the payload of
 * `_join` and `_members` that any peer (or anyone who can reach the port
 * without a cluster secret) sends.  moor_members_decode on arbitrary
 * bytes: when it accepts, every entry is valid, the table is sorted and
 * round-trips through encode/decode byte for byte; merging it into a
 * table is idempotent and, if anything is on the ring, the ring builds and
 * every member's share lies in [0, 1] and the shares sum to 1.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/membership.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    moor_members_t t, t2, acc;
    moor_buf_t e1 = MOOR_BUF_INIT, e2 = MOOR_BUF_INIT;
    moor_ring_t *ring = NULL;

    if (moor_members_decode(&p, end, &t) != 0) {
        if (t.n != 0)
            abort();
        moor_members_free(&t);
        return 0;
    }
    if (p > end)
        abort();
    for (uint32_t i = 1; i < t.n; i++) {
        const moor_member_t *a = &t.e[i - 1].m, *b = &t.e[i].m;
        int c = memcmp(a->id, b->id, a->idlen < b->idlen ? a->idlen : b->idlen);
        if (c > 0 || (c == 0 && a->idlen >= b->idlen))
            abort();
    }
    if (moor_members_encode(&t, &e1))
        abort();
    p = e1.data;
    if (moor_members_decode(&p, e1.data + e1.len, &t2) || moor_members_encode(&t2, &e2) ||
        e1.len != e2.len || memcmp(e1.data, e2.data, e1.len) != 0)
        abort();
    moor_members_init(&acc);
    if (moor_members_merge(&acc, &t) < 0 || moor_members_merge(&acc, &t) != 0 ||
        moor_members_merge(&acc, &t2) != 0)
        abort();
    if (moor_members_ring(&t, &ring) == 0) {
        double sum = 0;
        for (uint32_t i = 0; i < moor_ring_member_count(ring); i++) {
            double s = moor_ring_owned_share(ring, i);
            if (s < 0 || s > 1)
                abort();
            sum += s;
        }
        if (sum < 0.999 || sum > 1.001)
            abort();
        moor_ring_free(ring);
    }
    moor_members_free(&acc);
    moor_members_free(&t2);
    moor_members_free(&t);
    moor_buf_free(&e1);
    moor_buf_free(&e2);
    return 0;
}
