/*
 * fuzz_manifest.c -- moor_manifest_decode on arbitrary bytes.
 *
 * Each input is decoded twice: as it is, and with the header's body length
 * and CRC fixed up to match the rest.  The second pass is what lets the
 * fuzzer reach the body parser at all; mutations almost never get a CRC
 * right by chance.
 *
 * Besides "no crash, no leak, no overread", checks two properties on every
 * input: a rejected input leaves the manifest empty, and an accepted one
 * survives encode -> decode unchanged (the decoder accepts only what the
 * encoder can write back).  The input is copied to an exact-size buffer so
 * ASan sees a read one byte past the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/manifest.h"
#include "engine/manifest_format.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"

static int meta_equal(const moor_file_meta_t *x, const moor_file_meta_t *y)
{
    return x->level == y->level && x->number == y->number && x->size == y->size &&
           x->entries == y->entries && x->smallest_len == y->smallest_len &&
           x->largest_len == y->largest_len &&
           memcmp(x->smallest, y->smallest, x->smallest_len) == 0 &&
           memcmp(x->largest, y->largest, x->largest_len) == 0;
}

static int manifest_equal(const moor_manifest_t *a, const moor_manifest_t *b)
{
    if (a->next_file != b->next_file || a->last_seq != b->last_seq ||
        a->log_number != b->log_number || a->nfiles != b->nfiles)
        return 0;
    for (size_t i = 0; i < a->nfiles; i++)
        if (!meta_equal(&a->files[i], &b->files[i]))
            return 0;
    return 1;
}

static void check_reencode(const moor_manifest_t *m)
{
    moor_buf_t img = MOOR_BUF_INIT;
    moor_manifest_t again;
    int rc = moor_manifest_encode(m, &img);

    if (rc == MOOR_ENOMEM) {
        moor_buf_free(&img);
        return;
    }
    if (rc != 0 || moor_manifest_decode(img.data, img.len, &again) != 0)
        abort();
    if (!manifest_equal(m, &again))
        abort();
    moor_manifest_clear(&again);
    moor_buf_free(&img);
}

static void decode_one(const char *buf, size_t size)
{
    moor_manifest_t m;
    int rc = moor_manifest_decode(buf, size, &m);

    if (rc == 0)
        check_reencode(&m);
    else if (m.nfiles != 0 || m.files != NULL ||
             (rc != MOOR_ECORRUPT && rc != MOOR_EVERSION && rc != MOOR_ENOMEM))
        abort();
    moor_manifest_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = calloc(1, size ? size : 1);

    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    decode_one(copy, size);
    if (size >= MOOR_MANIFEST_HEADER && size - MOOR_MANIFEST_HEADER <= UINT32_MAX) {
        size_t body = size - MOOR_MANIFEST_HEADER;
        moor_enc_fixed32(copy + 12, (uint32_t)body);
        moor_enc_fixed32(copy + 16,
                         moor_crc32c_mask(moor_crc32c(copy + MOOR_MANIFEST_HEADER, body)));
        decode_one(copy, size);
    }
    free(copy);
    return 0;
}
