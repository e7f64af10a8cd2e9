/*
 * fuzz_json.c -- libFuzzer target for the CLI's JSON <-> MessagePack
 * converter (core/cli/json.c, compiled in: the CLI is an executable).
 *
 * The input is tried both ways.  As JSON text: when it parses, printing
 * the MessagePack must succeed and parsing that print must give the same
 * MessagePack bytes (json.h's round-trip promise).  As MessagePack: when
 * the printer accepts it, its JSON must parse, and printing again must be
 * stable from then on.  A failure must leave the output buffer as it was.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/json.c" /* TEST: core/cli is an executable, not a library */

static void check(int ok)
{
    if (!ok)
        abort();
}

static void json_side(const char *data, size_t size)
{
    moor_buf_t mp = MOOR_BUF_INIT, txt = MOOR_BUF_INIT, mp2 = MOOR_BUF_INIT;
    const char *p;
    int rc = moor_json_to_mp(data, size, &mp, NULL);

    if (rc) {
        check(rc == MOOR_EINVAL && mp.len == 0);
        goto out;
    }
    p = mp.data;
    check(moor_json_from_mp(&p, mp.data + mp.len, size & 1, &txt) == 0);
    check(p == mp.data + mp.len);
    check(moor_json_to_mp(txt.data, txt.len, &mp2, NULL) == 0);
    check(mp2.len == mp.len && memcmp(mp2.data, mp.data, mp.len) == 0);
out:
    moor_buf_free(&mp), moor_buf_free(&txt), moor_buf_free(&mp2);
}

static void mp_side(const char *data, size_t size)
{
    moor_buf_t t1 = MOOR_BUF_INIT, m1 = MOOR_BUF_INIT, t2 = MOOR_BUF_INIT;
    moor_buf_t m2 = MOOR_BUF_INIT, t3 = MOOR_BUF_INIT;
    const char *p = data, *q;
    int rc = moor_json_from_mp(&p, data + size, 0, &t1);

    if (rc) {
        check(p == data && t1.len == 0);
        goto out;
    }
    check(moor_json_to_mp(t1.data, t1.len, &m1, NULL) == 0);
    q = m1.data;
    check(moor_json_from_mp(&q, m1.data + m1.len, 0, &t2) == 0);
    check(moor_json_to_mp(t2.data, t2.len, &m2, NULL) == 0);
    q = m2.data;
    check(moor_json_from_mp(&q, m2.data + m2.len, 0, &t3) == 0);
    check(t2.len == t3.len && memcmp(t2.data, t3.data, t2.len) == 0);
out:
    moor_buf_free(&t1), moor_buf_free(&m1), moor_buf_free(&t2);
    moor_buf_free(&m2), moor_buf_free(&t3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_side((const char *)data, size);
    mp_side((const char *)data, size);
    return 0;
}
