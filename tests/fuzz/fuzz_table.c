/*
 * fuzz_table.c -- libFuzzer harness for the SSTable reader: the input is a
 * table file.  It goes into a memfd opened by path (/proc/self/fd/N); if
 * moor_table_open accepts it, the harness scans it, seeks and gets keys it
 * saw and keys taken from the input, through a small block cache.
 *
 * A fuzzer rarely forges a CRC32C, so each input runs twice: as is (footer,
 * handle and checksum checks), then as a copy whose footer magic, version
 * and every checksum the harness can locate have been recomputed -- which
 * lets the mutations reach block parsing, zstd and the index logic.
 *
 * The reader must never crash, leak or read out of bounds, and every key
 * it yields must be a whole internal key (checked below).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/block.h"
#include "engine/cache.h"
#include "engine/ikey.h"
#include "engine/table.h"
#include "engine/table_format.h"
#include "util/crc32c.h"
#include "util/err.h"

#define MAX_KEYS 4

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    return moor_ukey_cmp(a, alen, b, blen);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void get_key(moor_table_t *t, const char *k, size_t klen)
{
    moor_buf_t val = MOOR_BUF_INIT;
    int type;

    if (klen >= MOOR_IKEY_TRAILER)
        moor_table_get(t, k, klen, &val, &type);
    moor_buf_free(&val);
}

/* Scans everything, keeping a few keys; checks the scan is ordered. */
static void scan(moor_table_t *t, moor_buf_t *keys, int *nkeys)
{
    moor_iiter_t *it = moor_table_iter(t);
    moor_buf_t prev = MOOR_BUF_INIT;
    uint64_t n = 0;

    if (!it)
        return;
    for (it->seek_first(it); it->valid; it->next(it), n++) {
        if (it->klen < MOOR_IKEY_TRAILER)
            abort(); /* the table promised internal keys */
        if (prev.len && moor_ikey_cmp(prev.data, prev.len, it->key, it->klen) >= 0)
            continue; /* a forged table may be out of order; just don't crash */
        moor_buf_reset(&prev);
        moor_buf_append(&prev, it->key, it->klen);
        if (*nkeys < MAX_KEYS && (n == 0 || (n & (n - 1)) == 0)) {
            moor_buf_append(&keys[*nkeys], it->key, it->klen);
            (*nkeys)++;
        }
    }
    moor_buf_free(&prev);
    moor_iiter_destroy(it);
}

static void probe(moor_table_t *t, const uint8_t *data, size_t size)
{
    moor_buf_t keys[MAX_KEYS] = {MOOR_BUF_INIT, MOOR_BUF_INIT, MOOR_BUF_INIT, MOOR_BUF_INIT};
    int nkeys = 0;
    moor_iiter_t *it;

    scan(t, keys, &nkeys);
    it = moor_table_iter(t);
    for (int i = 0; i < nkeys; i++) {
        get_key(t, keys[i].data, keys[i].len);
        if (it) {
            it->seek(it, keys[i].data, keys[i].len);
            if (it->valid)
                it->next(it);
        }
    }
    if (size > 16) { /* a key made of input bytes */
        get_key(t, (const char *)data, 16);
        if (it)
            it->seek(it, (const char *)data, 16);
    }
    moor_iiter_destroy(it);
    for (int i = 0; i < MAX_KEYS; i++)
        moor_buf_free(&keys[i]);
    moor_table_entries(t);
    moor_table_mem(t);
    moor_table_bloom_skips(t);
}

static void run(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_table", MFD_CLOEXEC);
    char path[64];
    moor_cache_t *cache;
    moor_table_t *t;

    if (fd < 0)
        return;
    if (write_all(fd, data, size) == 0 && (cache = moor_cache_new(64 << 10))) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (moor_table_open(path, 1, cache, &t) == 0) {
            probe(t, data, size);
            moor_table_close(t);
        }
        moor_cache_free(cache);
    }
    close(fd);
}

/* ---- checksum repair -------------------------------------------------- */

static int fits(uint64_t off, uint64_t size, uint64_t limit)
{
    return off <= limit && size <= limit - off && MOOR_BLOCK_TRAILER <= limit - off - size;
}

static void fix_block(char *buf, uint64_t off, uint64_t size)
{
    char *b = buf + off;
    uint32_t crc = moor_crc32c_extend(moor_crc32c(b, size), b + size, 1);

    moor_enc_fixed32(b + size + 1, moor_crc32c_mask(crc));
}

/* Repairs the data blocks the index lists (read before any repair). */
static void fix_data_blocks(char *buf, uint64_t ioff, uint64_t isize, uint64_t limit)
{
    moor_iiter_t *it = moor_block_iter(buf + ioff, isize, bytes_cmp, NULL, NULL);
    uint64_t offs[64], sizes[64];
    int n = 0;

    if (!it)
        return;
    for (it->seek_first(it); it->valid && n < 64; it->next(it)) {
        const char *p = it->val, *end = it->val + it->vlen;
        if (moor_get_varint(&p, end, &offs[n]) == 0 && moor_get_varint(&p, end, &sizes[n]) == 0 &&
            fits(offs[n], sizes[n], limit))
            n++;
    }
    moor_iiter_destroy(it);
    for (int i = 0; i < n; i++)
        fix_block(buf, offs[i], sizes[i]);
}

static void fix_checksums(char *buf, size_t size)
{
    char *ft = buf + size - MOOR_TABLE_FOOTER;
    uint64_t foot = size - MOOR_TABLE_FOOTER;
    uint64_t foff = moor_dec_fixed64(ft), fsize = moor_dec_fixed64(ft + 8);
    uint64_t ioff = moor_dec_fixed64(ft + 16), isize = moor_dec_fixed64(ft + 24);

    if (fits(ioff, isize, foot)) {
        if (fits(foff, fsize, ioff))
            fix_data_blocks(buf, ioff, isize, foff);
        if (fits(foff, fsize, foot))
            fix_block(buf, foff, fsize);
        fix_block(buf, ioff, isize);
    }
    moor_enc_fixed32(ft + 40, MOOR_TABLE_VERSION);
    moor_enc_fixed32(ft + 44, moor_crc32c_mask(moor_crc32c(ft, 44)));
    moor_enc_fixed64(ft + 48, MOOR_TABLE_MAGIC);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy;

    run(data, size);
    if (size < MOOR_TABLE_FOOTER || !(copy = malloc(size)))
        return 0;
    memcpy(copy, data, size);
    fix_checksums(copy, size);
    if (memcmp(copy, data, size) != 0)
        run((const uint8_t *)copy, size);
    free(copy);
    return 0;
}
