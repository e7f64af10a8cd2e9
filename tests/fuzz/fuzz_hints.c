/*
 * fuzz_hints.c -- libFuzzer target for the hints' on-disk form (hints.h),
 * read back from the engine at start and on every replay batch.  The input
 * as a hint value: moor_hints_decode either refuses with MOOR_ECORRUPT or
 * gives spans inside the input (space at most 255 bytes) that encode back
 * to a value decoding to the same fields.  The input as a hint key:
 * moor_hints_key_decode refuses with MOOR_ECORRUPT or gives an owner of
 * 1..64 bytes inside the key, right after the prefix, followed by exactly
 * the 8 bytes of the seq.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/hints.h"
#include "util/mp.h"
#include "util/err.h"
#include "util/log.h"

static int inside(const char *in, size_t size, const char *p, size_t n)
{
    return n == 0 || (p >= in && n <= size && (size_t)(p - in) <= size - n);
}

static void fuzz_value(const char *in, size_t size)
{
    moor_hint_t x, y;
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc = moor_hints_decode(in, size, &x);

    if (rc) {
        if (rc != MOOR_ECORRUPT)
            abort();
        return;
    }
    if (x.slen > 255 || !inside(in, size, x.space, x.slen) || !inside(in, size, x.key, x.klen) ||
        !inside(in, size, x.record, x.rlen))
        abort();
    moor_mp_packer_init(&pk, &b);
    if (msgpack_pack_array(&pk, 4) || msgpack_pack_uint64(&pk, x.ts) ||
        msgpack_pack_bin_with_body(&pk, x.space, x.slen) ||
        msgpack_pack_bin_with_body(&pk, x.key, x.klen) ||
        msgpack_pack_bin_with_body(&pk, x.record, x.rlen))
        abort();
    if (moor_hints_decode(b.data, b.len, &y) || y.ts != x.ts || y.slen != x.slen ||
        y.klen != x.klen || y.rlen != x.rlen || memcmp(y.space, x.space, x.slen) ||
        memcmp(y.key, x.key, x.klen) || memcmp(y.record, x.record, x.rlen))
        abort();
    moor_buf_free(&b);
}

static void fuzz_key(const char *in, size_t size)
{
    const char *owner;
    size_t olen;
    uint64_t seq;
    int rc = moor_hints_key_decode(in, size, &owner, &olen, &seq);

    if (rc) {
        if (rc != MOOR_ECORRUPT)
            abort();
        return;
    }
    if (olen == 0 || olen > 64 || owner != in + MOOR_HINTS_PREFIX_LEN + 1 ||
        size != MOOR_HINTS_PREFIX_LEN + 1 + olen + 8 ||
        memcmp(in, MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;

    moor_log_set_level(MOOR_LOG_OFF);
    fuzz_value(in, size);
    fuzz_key(in, size);
    return 0;
}
