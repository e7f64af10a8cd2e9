/*
 * table.c -- SSTable builder and reader (byte layout in table_format.h).
 *
 * Builder: entries go into a data block until its uncompressed size reaches
 * block_size; the block is then compressed (zstd, kept only if it saves at
 * least 1/8), written with its trailer, and its last key and handle go into
 * the index block.  User-key hashes are collected for the Bloom filter,
 * once per distinct user key (versions of one key are adjacent).  finish()
 * writes the filter, the index and the footer.  Writes use pwrite loops, so
 * short writes and EINTR are handled; a write error is sticky.
 *
 * Reader: open() trusts nothing: footer magic, checksum and version, then
 * every handle (filter, index, and each data block listed in the index) must
 * lie inside the file, and the filter and index blocks must pass their
 * checksums.  Those two stay resident.  Data blocks are read through the
 * block cache keyed by (file number, offset); a miss reads, checks the CRC,
 * decompresses (raw length bounded by MAX_RAW_BLOCK and matched exactly),
 * checks the restart array and only then inserts.  An iterator past its
 * first few blocks in order reads ahead instead and decodes blocks the
 * cache lacks into its own buffer, with the same checks (scan_buf_t).  Any
 * failure is MOOR_ECORRUPT naming the file and offset: a corrupt table
 * yields errors, never wrong data or an out-of-bounds read.
 *
 * Threads: a builder belongs to one thread.  A reader is immutable after
 * open (pread on a shared fd, the Bloom skip counter is atomic), so any
 * number of threads may get and iterate at once; each iterator belongs to
 * one thread.
 */
#include "table.h"

#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "block.h"
#include "bloom.h"
#include "ikey.h"
#include "table_format.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/file.h"

#define MAX_RAW_BLOCK (64u << 20) /* largest decompressed block we accept */
#define BLOCK_CHARGE_OVERHEAD 64  /* cache bookkeeping per block, roughly */
#define DEFAULT_BLOCK_SIZE 4096
#define DCTX_POOL 8     /* idle zstd decompression contexts kept */
#define STACK_READ 8192 /* stored blocks up to this size are read on the stack */
#define SCAN_AFTER 4    /* blocks read in order before an iterator reads ahead */
#define READAHEAD_MIN (16u << 10)
#define READAHEAD_MAX (256u << 10)

/* Internal-key order that stays in bounds on keys shorter than a trailer,
 * which only a corrupt block can hold (the iterators then report it). */
static int table_key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen < MOOR_IKEY_TRAILER || blen < MOOR_IKEY_TRAILER)
        return moor_ukey_cmp(a, alen, b, blen);
    return moor_ikey_cmp(a, alen, b, blen);
}

static uint32_t block_crc(const char *data, size_t len, uint8_t comp)
{
    uint32_t crc = moor_crc32c(data, len);

    return moor_crc32c_mask(moor_crc32c_extend(crc, &comp, 1));
}

/* ======================================================================
 * Builder
 * ====================================================================== */

struct moor_table_builder {
    int fd;                 /* borrowed */
    moor_table_opts_t opts; /* block_size >= 1 */
    uint64_t offset;        /* bytes written so far */
    uint64_t entries;
    int status;                /* first write/OOM error; sticky */
    moor_block_builder_t data; /* pending data block */
    moor_block_builder_t index;
    moor_buf_t last_key; /* last ikey added (empty before the first) */
    moor_buf_t out;      /* scratch: the stored block + trailer */
    ZSTD_CCtx *zc;       /* NULL when compression is off */
    uint64_t *hashes;    /* Bloom hashes, one per distinct user key */
    size_t nhashes, hcap;
};

moor_table_builder_t *moor_table_builder_new(int fd, const moor_table_opts_t *opts)
{
    moor_table_builder_t *b = calloc(1, sizeof(*b));

    if (!b)
        return NULL;
    b->fd = fd;
    b->opts = *opts;
    if (b->opts.block_size == 0)
        b->opts.block_size = DEFAULT_BLOCK_SIZE;
    if (b->opts.compression_level > 0) {
        b->zc = ZSTD_createCCtx();
        if (!b->zc) {
            free(b);
            return NULL;
        }
    }
    moor_block_builder_init(&b->data, MOOR_BLOCK_RESTART);
    moor_block_builder_init(&b->index, 1); /* each index key stands alone */
    moor_buf_init(&b->last_key);
    moor_buf_init(&b->out);
    return b;
}

void moor_table_builder_abandon(moor_table_builder_t *b)
{
    if (!b)
        return;
    moor_block_builder_free(&b->data);
    moor_block_builder_free(&b->index);
    moor_buf_free(&b->last_key);
    moor_buf_free(&b->out);
    ZSTD_freeCCtx(b->zc);
    free(b->hashes);
    free(b);
}

static int builder_write(moor_table_builder_t *b, const char *p, size_t n)
{
    int rc = moor_file_pwrite_all(b->fd, p, n, b->offset);

    if (rc)
        return moor_diag_wrap(rc, rc, "table");
    b->offset += n;
    return 0;
}

/* Fills b->out with the stored form of raw: zstd (varint raw_len | frame)
 * when that saves at least 1/8, else raw.  Returns the compression byte or
 * a negative code. */
static int builder_encode(moor_table_builder_t *b, const char *raw, size_t len, int compress)
{
    moor_buf_reset(&b->out);
    if (compress && b->zc) {
        size_t bound = ZSTD_compressBound(len), hl, z;

        if (moor_buf_reserve(&b->out, bound + 10 + MOOR_BLOCK_TRAILER))
            return MOOR_ENOMEM;
        hl = moor_enc_varint(b->out.data, len);
        z = ZSTD_compressCCtx(b->zc, b->out.data + hl, bound, raw, len, b->opts.compression_level);
        if (!ZSTD_isError(z) && hl + z <= len - len / 8) {
            b->out.len = hl + z;
            return MOOR_BLOCK_ZSTD;
        }
    }
    if (moor_buf_append(&b->out, raw, len))
        return MOOR_ENOMEM;
    return MOOR_BLOCK_RAW;
}

/* Writes raw as one block with its trailer; *off, *size get its handle. */
static int builder_write_block(moor_table_builder_t *b, const char *raw, size_t len, int compress,
                               uint64_t *off, uint64_t *size)
{
    char trailer[MOOR_BLOCK_TRAILER];
    int comp = builder_encode(b, raw, len, compress), rc;

    if (comp < 0)
        return moor_diag(comp, "table builder: out of memory encoding a block");
    trailer[0] = (char)comp;
    moor_enc_fixed32(trailer + 1, block_crc(b->out.data, b->out.len, (uint8_t)comp));
    if (moor_buf_append(&b->out, trailer, sizeof(trailer)))
        return moor_diag(MOOR_ENOMEM, "table builder: out of memory encoding a block");
    *off = b->offset;
    *size = b->out.len - MOOR_BLOCK_TRAILER;
    rc = builder_write(b, b->out.data, b->out.len);
    return rc;
}

/* Writes the pending data block and indexes it under its last key. */
static int builder_flush(moor_table_builder_t *b)
{
    const char *raw;
    size_t len;
    uint64_t off, size;
    char handle[20];
    size_t hl;
    int rc;

    if (moor_block_builder_empty(&b->data))
        return 0;
    if (moor_block_builder_finish(&b->data, &raw, &len))
        return moor_diag(MOOR_ENOMEM, "table builder: out of memory finishing a block");
    rc = builder_write_block(b, raw, len, 1, &off, &size);
    if (rc)
        return rc;
    hl = moor_enc_varint(handle, off);
    hl += moor_enc_varint(handle + hl, size);
    if (moor_block_builder_add(&b->index, b->last_key.data, b->last_key.len, handle, hl))
        return moor_diag(MOOR_ENOMEM, "table builder: out of memory indexing a block");
    moor_block_builder_reset(&b->data);
    return 0;
}

static int builder_add_hash(moor_table_builder_t *b, const char *ukey, size_t ulen)
{
    if (b->nhashes == b->hcap) {
        size_t cap = b->hcap ? b->hcap * 2 : 1024;
        uint64_t *h = realloc(b->hashes, cap * sizeof(*h));

        if (!h)
            return MOOR_ENOMEM;
        b->hashes = h;
        b->hcap = cap;
    }
    b->hashes[b->nhashes++] = moor_bloom_hash(ukey, ulen);
    return 0;
}

/* Records the Bloom hash of ikey's user key unless the previous entry
 * had the same user key. */
static int builder_note_key(moor_table_builder_t *b, const char *ikey, size_t iklen)
{
    size_t ulen = moor_ikey_ulen(iklen);

    if (b->opts.bloom_bits == 0)
        return 0;
    if (b->entries > 0 &&
        moor_ukey_cmp(b->last_key.data, moor_ikey_ulen(b->last_key.len), ikey, ulen) == 0)
        return 0;
    return builder_add_hash(b, ikey, ulen);
}

int moor_table_builder_add(moor_table_builder_t *b, const char *ikey, size_t iklen, const char *val,
                           size_t vlen)
{
    int rc;

    if (b->status)
        return b->status;
    if (iklen < MOOR_IKEY_TRAILER)
        return moor_diag(MOOR_EINVAL, "table builder: internal key of %zu bytes", iklen);
    if (b->entries > 0 && moor_ikey_cmp(b->last_key.data, b->last_key.len, ikey, iklen) >= 0)
        return moor_diag(MOOR_EINVAL, "table builder: keys out of order");
    if ((rc = builder_note_key(b, ikey, iklen)) ||
        (rc = moor_block_builder_add(&b->data, ikey, iklen, val, vlen))) {
        b->status = moor_diag(rc, "table builder: out of memory adding an entry");
        return rc;
    }
    moor_buf_reset(&b->last_key);
    if (moor_buf_append(&b->last_key, ikey, iklen)) {
        b->status = moor_diag(MOOR_ENOMEM, "table builder: out of memory adding an entry");
        return b->status;
    }
    b->entries++;
    if (moor_block_builder_size(&b->data) >= b->opts.block_size)
        b->status = builder_flush(b);
    return b->status;
}

uint64_t moor_table_builder_size(const moor_table_builder_t *b)
{
    return b->offset + (moor_block_builder_empty(&b->data) ? 0 : moor_block_builder_size(&b->data));
}

uint64_t moor_table_builder_entries(const moor_table_builder_t *b)
{
    return b->entries;
}

static int builder_write_filter(moor_table_builder_t *b, uint64_t *off, uint64_t *size)
{
    moor_buf_t f = MOOR_BUF_INIT;
    int rc;

    if (b->opts.bloom_bits > 0 && moor_bloom_build(b->hashes, b->nhashes, b->opts.bloom_bits, &f)) {
        moor_buf_free(&f);
        return moor_diag(MOOR_ENOMEM, "table builder: out of memory building the filter");
    }
    rc = builder_write_block(b, f.data ? f.data : "", f.len, 0, off, size);
    moor_buf_free(&f);
    return rc;
}

static int builder_write_footer(moor_table_builder_t *b, uint64_t foff, uint64_t fsize,
                                uint64_t ioff, uint64_t isize)
{
    char ft[MOOR_TABLE_FOOTER];

    moor_enc_fixed64(ft, foff);
    moor_enc_fixed64(ft + 8, fsize);
    moor_enc_fixed64(ft + 16, ioff);
    moor_enc_fixed64(ft + 24, isize);
    moor_enc_fixed64(ft + 32, b->entries);
    moor_enc_fixed32(ft + 40, MOOR_TABLE_VERSION);
    moor_enc_fixed32(ft + 44, moor_crc32c_mask(moor_crc32c(ft, 44)));
    moor_enc_fixed64(ft + 48, MOOR_TABLE_MAGIC);
    return builder_write(b, ft, sizeof(ft));
}

int moor_table_builder_finish(moor_table_builder_t *b, uint64_t *file_size)
{
    uint64_t foff, fsize, ioff, isize;
    const char *raw;
    size_t len;
    int rc = b->status;

    if (rc || (rc = builder_flush(b)) || (rc = builder_write_filter(b, &foff, &fsize)))
        goto out;
    if (moor_block_builder_finish(&b->index, &raw, &len)) {
        rc = moor_diag(MOOR_ENOMEM, "table builder: out of memory finishing the index");
        goto out;
    }
    if ((rc = builder_write_block(b, raw, len, 0, &ioff, &isize)) ||
        (rc = builder_write_footer(b, foff, fsize, ioff, isize)))
        goto out;
    if (file_size)
        *file_size = b->offset;
out:
    moor_table_builder_abandon(b);
    return rc;
}

/* ======================================================================
 * Reader
 * ====================================================================== */

struct moor_table {
    char *path; /* for diagnostics */
    int fd;
    uint64_t file_number; /* cache key */
    moor_cache_t *cache;  /* borrowed; NULL = no caching */
    uint64_t file_size;
    uint64_t entries;
    uint64_t data_end;  /* data blocks lie in [0, data_end) */
    uint64_t index_off; /* for diagnostics */
    char *filter;       /* resident filter block; filter_len 0 = no filter */
    size_t filter_len;
    char *index; /* resident index block */
    size_t index_len;
    uint64_t bloom_skips; /* atomic */
};

/* A decompressed, verified data block: the cache value (or, without a
 * cache, owned by whoever read it). */
typedef struct table_block {
    moor_cache_t *cache; /* the cache holding it; NULL if uncached */
    size_t len;
    char data[];
} table_block_t;

static int table_corrupt(const moor_table_t *t, uint64_t off, const char *what)
{
    return moor_diag(MOOR_ECORRUPT, "%s in %s at offset %llu", what, t->path,
                     (unsigned long long)off);
}

static int table_pread(const moor_table_t *t, char *p, size_t n, uint64_t off)
{
    uint64_t at = off;

    while (n > 0) {
        ssize_t r = pread(t->fd, p, n, (off_t)at);

        if (r < 0) {
            int e = errno;

            if (e == EINTR)
                continue;
            return moor_diag(-e, "read %s at offset %llu: %s", t->path, (unsigned long long)at,
                             strerror(e));
        }
        if (r == 0)
            return table_corrupt(t, off, "short read");
        p += r;
        n -= (size_t)r;
        at += (uint64_t)r;
    }
    return 0;
}

/* 1 if [off, off + size + trailer) lies inside [0, limit). */
static int handle_fits(uint64_t off, uint64_t size, uint64_t limit)
{
    return off <= limit && size <= limit - off && MOOR_BLOCK_TRAILER <= limit - off - size;
}

/* Reads the stored block at off (size without trailer) and checks its CRC.
 * *out is malloc'ed: head bytes for the caller, then the block and its
 * trailer.  *comp gets the compression byte.  The handle was validated
 * against the file size, so size is bounded by it. */
static int table_read_stored(const moor_table_t *t, uint64_t off, uint64_t size, size_t head,
                             char **out, uint8_t *comp)
{
    char *mem = malloc(head + (size_t)size + MOOR_BLOCK_TRAILER), *buf = mem + head;
    int rc;

    if (!mem)
        return moor_diag(MOOR_ENOMEM, "%s: out of memory reading block at offset %llu", t->path,
                         (unsigned long long)off);
    rc = table_pread(t, buf, (size_t)size + MOOR_BLOCK_TRAILER, off);
    if (rc)
        goto fail;
    *comp = (uint8_t)buf[size];
    if (moor_dec_fixed32(buf + size + 1) != block_crc(buf, (size_t)size, *comp)) {
        rc = table_corrupt(t, off, "block checksum mismatch");
        goto fail;
    }
    *out = mem;
    return 0;

fail:
    free(mem);
    return rc;
}

/* Decompression contexts are reused: ZSTD_decompress() would build (and,
 * being large, mmap) a fresh one for every block read.  The pool is global
 * because readers are shared between threads; the lock covers only the
 * pointer moves. */
static pthread_mutex_t dctx_lock = PTHREAD_MUTEX_INITIALIZER;
static ZSTD_DCtx *dctx_pool[DCTX_POOL];
static int dctx_idle;

static ZSTD_DCtx *dctx_get(void)
{
    ZSTD_DCtx *d = NULL;

    pthread_mutex_lock(&dctx_lock);
    if (dctx_idle > 0)
        d = dctx_pool[--dctx_idle];
    pthread_mutex_unlock(&dctx_lock);
    return d ? d : ZSTD_createDCtx();
}

static void dctx_put(ZSTD_DCtx *d)
{
    pthread_mutex_lock(&dctx_lock);
    if (dctx_idle < DCTX_POOL) {
        dctx_pool[dctx_idle++] = d;
        d = NULL;
    }
    pthread_mutex_unlock(&dctx_lock);
    ZSTD_freeDCtx(d);
}

/* What a stored block (size bytes, then its trailer, at s) decodes to:
 * checks the CRC and the compression byte and finds the raw length and
 * the bytes to decode.  0 or MOOR_ECORRUPT naming the block. */
static int stored_parse(const moor_table_t *t, uint64_t off, const char *s, size_t size,
                        uint8_t *comp, uint64_t *raw_len, const char **payload, size_t *plen)
{
    const char *p = s, *end = s + size;

    *comp = (uint8_t)s[size];
    if (moor_dec_fixed32(s + size + 1) != block_crc(s, size, *comp))
        return table_corrupt(t, off, "block checksum mismatch");
    if (*comp == MOOR_BLOCK_RAW) {
        *raw_len = size;
    } else if (*comp == MOOR_BLOCK_ZSTD) {
        if (moor_get_varint(&p, end, raw_len) || *raw_len > MAX_RAW_BLOCK)
            return table_corrupt(t, off, "bad compressed block length");
    } else {
        return table_corrupt(t, off, "unknown block compression");
    }
    *payload = p;
    *plen = (size_t)(end - p);
    return 0;
}

/* Decompresses a zstd payload into dst, which has exactly raw_len bytes. */
static int table_unzstd(const moor_table_t *t, uint64_t off, const char *p, size_t plen, char *dst,
                        uint64_t raw_len)
{
    ZSTD_DCtx *dctx = dctx_get();
    size_t z;

    if (!dctx)
        return moor_diag(MOOR_ENOMEM, "%s: out of memory decompressing block at offset %llu",
                         t->path, (unsigned long long)off);
    z = ZSTD_decompressDCtx(dctx, dst, (size_t)raw_len, p, plen);
    dctx_put(dctx);
    if (ZSTD_isError(z) || z != raw_len)
        return table_corrupt(t, off, "bad compressed block");
    return 0;
}

/* Checks the restart array of a decoded data block once, when it comes off
 * the disk, so iterators over it may skip the check (block.h). */
static int table_check_block(const moor_table_t *t, uint64_t off, const char *data, size_t len)
{
    moor_block_iter_t probe;
    int rc;

    moor_block_iter_init(&probe, data, len, table_key_cmp, NULL, NULL, 1);
    rc = probe.base.status;
    moor_block_iter_fini(&probe);
    return rc ? table_corrupt(t, off, "malformed data block") : 0;
}

/* Verifies and decodes the stored block at s (size bytes + trailer) into a
 * new table_block_t. */
static int table_decode_block(const moor_table_t *t, uint64_t off, const char *s, size_t size,
                              table_block_t **out)
{
    const char *p;
    size_t plen;
    uint64_t raw_len;
    uint8_t comp;
    table_block_t *blk;
    int rc = stored_parse(t, off, s, size, &comp, &raw_len, &p, &plen);

    if (rc)
        return rc;
    if (!(blk = malloc(sizeof(*blk) + (size_t)raw_len)))
        return moor_diag(MOOR_ENOMEM, "%s: out of memory decoding block at offset %llu", t->path,
                         (unsigned long long)off);
    if (comp == MOOR_BLOCK_RAW)
        memcpy(blk->data, p, plen);
    else if ((rc = table_unzstd(t, off, p, plen, blk->data, raw_len)))
        goto fail;
    blk->len = (size_t)raw_len;
    blk->cache = NULL;
    if ((rc = table_check_block(t, off, blk->data, blk->len)))
        goto fail;
    *out = blk;
    return 0;

fail:
    free(blk);
    return rc;
}

/* Reads, verifies and decodes the data block at (off, size).  The stored
 * bytes go to a stack buffer when they fit (the usual case: a block of
 * the default size), so a read allocates only the decoded block. */
static int table_load_block(const moor_table_t *t, uint64_t off, uint64_t size, table_block_t **out)
{
    char stack[STACK_READ];
    size_t n = (size_t)size + MOOR_BLOCK_TRAILER;
    char *buf = n <= sizeof(stack) ? stack : malloc(n);
    int rc;

    if (!buf)
        return moor_diag(MOOR_ENOMEM, "%s: out of memory reading block at offset %llu", t->path,
                         (unsigned long long)off);
    rc = table_pread(t, buf, n, off);
    if (rc == 0)
        rc = table_decode_block(t, off, buf, (size_t)size, out);
    if (buf != stack)
        free(buf);
    return rc;
}

static void table_block_unpin(void *arg)
{
    moor_cache_handle_t *h = arg;
    table_block_t *blk = moor_cache_value(h);

    moor_cache_release(blk->cache, h);
}

/* Sets up *bi over the data block at (off, size), from the cache when
 * there is one.  The iterator pins (or owns) the block until fini. */
static int table_block_open(const moor_table_t *t, uint64_t off, uint64_t size,
                            moor_block_iter_t *bi)
{
    moor_cache_handle_t *h = NULL;
    table_block_t *blk = NULL;
    int rc;

    if (t->cache && (h = moor_cache_lookup(t->cache, t->file_number, off))) {
        blk = moor_cache_value(h);
    } else {
        if ((rc = table_load_block(t, off, size, &blk)))
            return rc;
        if (t->cache) {
            blk->cache = t->cache;
            h = moor_cache_insert(t->cache, t->file_number, off, blk,
                                  blk->len + sizeof(*blk) + BLOCK_CHARGE_OVERHEAD, free);
            if (!h)
                return moor_diag(MOOR_ENOMEM, "%s: out of memory caching a block", t->path);
        }
    }
    if (h)
        moor_block_iter_init(bi, blk->data, blk->len, table_key_cmp, table_block_unpin, h, 0);
    else
        moor_block_iter_init(bi, blk->data, blk->len, table_key_cmp, free, blk, 0);
    return 0;
}

/* Decodes an index value into a data block handle inside the data region. */
static int table_decode_handle(const moor_table_t *t, const char *v, size_t vlen, uint64_t *off,
                               uint64_t *size)
{
    const char *p = v, *end = v + vlen;

    if (moor_get_varint(&p, end, off) || moor_get_varint(&p, end, size) || p != end ||
        !handle_fits(*off, *size, t->data_end))
        return table_corrupt(t, t->index_off, "bad block handle in index");
    return 0;
}

/* ---- open / close ---------------------------------------------------- */

typedef struct table_footer {
    uint64_t filter_off, filter_size, index_off, index_size, entries;
} table_footer_t;

static int table_read_footer(moor_table_t *t, table_footer_t *f)
{
    char ft[MOOR_TABLE_FOOTER];
    uint64_t foot_off;
    int rc;

    if (t->file_size < MOOR_TABLE_FOOTER)
        return table_corrupt(t, 0, "file too short for a table footer");
    foot_off = t->file_size - MOOR_TABLE_FOOTER;
    if ((rc = table_pread(t, ft, sizeof(ft), foot_off)))
        return rc;
    if (moor_dec_fixed64(ft + 48) != MOOR_TABLE_MAGIC)
        return table_corrupt(t, foot_off, "bad table magic");
    if (moor_dec_fixed32(ft + 44) != moor_crc32c_mask(moor_crc32c(ft, 44)))
        return table_corrupt(t, foot_off, "footer checksum mismatch");
    if (moor_dec_fixed32(ft + 40) != MOOR_TABLE_VERSION)
        return moor_diag(MOOR_EVERSION, "%s: table format version %u, expected %u", t->path,
                         moor_dec_fixed32(ft + 40), MOOR_TABLE_VERSION);
    f->filter_off = moor_dec_fixed64(ft);
    f->filter_size = moor_dec_fixed64(ft + 8);
    f->index_off = moor_dec_fixed64(ft + 16);
    f->index_size = moor_dec_fixed64(ft + 24);
    f->entries = moor_dec_fixed64(ft + 32);
    /* filter, then index, then footer, without overlap */
    if (!handle_fits(f->index_off, f->index_size, foot_off) ||
        !handle_fits(f->filter_off, f->filter_size, f->index_off))
        return table_corrupt(t, foot_off, "footer handle outside the file");
    return 0;
}

/* Reads an uncompressed meta block (filter or index) into *out. */
static int table_read_meta(moor_table_t *t, uint64_t off, uint64_t size, char **out)
{
    uint8_t comp = 0;
    int rc = table_read_stored(t, off, size, 0, out, &comp);

    if (rc)
        return rc;
    if (comp != MOOR_BLOCK_RAW) {
        free(*out);
        *out = NULL;
        return table_corrupt(t, off, "compressed meta block");
    }
    return 0;
}

/* Walks the index once: every key is an internal key in strictly
 * increasing order and every handle lies in the data region. */
static int table_check_index(moor_table_t *t)
{
    moor_iiter_t *it = moor_block_iter(t->index, t->index_len, table_key_cmp, NULL, NULL);
    moor_buf_t prev = MOOR_BUF_INIT;
    uint64_t off, size;
    int rc = 0;

    if (!it)
        return moor_diag(MOOR_ENOMEM, "%s: out of memory", t->path);
    for (it->seek_first(it); it->valid && !rc; it->next(it)) {
        if (it->klen < MOOR_IKEY_TRAILER ||
            (prev.len && table_key_cmp(prev.data, prev.len, it->key, it->klen) >= 0)) {
            rc = table_corrupt(t, t->index_off, "bad key in index block");
            break;
        }
        if ((rc = table_decode_handle(t, it->val, it->vlen, &off, &size)))
            break;
        moor_buf_reset(&prev);
        if (moor_buf_append(&prev, it->key, it->klen))
            rc = moor_diag(MOOR_ENOMEM, "%s: out of memory", t->path);
    }
    if (!rc && it->status)
        rc = table_corrupt(t, t->index_off, "malformed index block");
    moor_buf_free(&prev);
    moor_iiter_destroy(it);
    return rc;
}

void moor_table_close(moor_table_t *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    free(t->filter);
    free(t->index);
    free(t->path);
    free(t);
}

static int table_open_fd(moor_table_t *t, const char *path)
{
    struct stat st;

    int e;

    t->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (t->fd < 0) {
        e = errno;
        return moor_diag(-e, "open table %s: %s", path, strerror(e));
    }
    if (fstat(t->fd, &st) < 0) {
        e = errno;
        return moor_diag(-e, "stat table %s: %s", path, strerror(e));
    }
    t->file_size = (uint64_t)st.st_size;
    return 0;
}

int moor_table_open(const char *path, uint64_t file_number, moor_cache_t *cache, moor_table_t **out)
{
    moor_table_t *t = calloc(1, sizeof(*t));
    table_footer_t f = {0};
    int rc;

    *out = NULL;
    if (!t || !(t->path = strdup(path))) {
        free(t);
        return moor_diag(MOOR_ENOMEM, "open table %s: out of memory", path);
    }
    t->fd = -1;
    t->file_number = file_number;
    t->cache = cache;
    if ((rc = table_open_fd(t, path)) || (rc = table_read_footer(t, &f)))
        goto fail;
    t->entries = f.entries;
    t->data_end = f.filter_off;
    t->index_off = f.index_off;
    if ((rc = table_read_meta(t, f.filter_off, f.filter_size, &t->filter)) ||
        (rc = table_read_meta(t, f.index_off, f.index_size, &t->index)))
        goto fail;
    t->filter_len = (size_t)f.filter_size;
    t->index_len = (size_t)f.index_size;
    if ((rc = table_check_index(t)))
        goto fail;
    *out = t;
    return 0;

fail:
    moor_table_close(t);
    return rc;
}

size_t moor_table_mem(const moor_table_t *t)
{
    return sizeof(*t) + strlen(t->path) + 1 + t->filter_len + t->index_len;
}

uint64_t moor_table_entries(const moor_table_t *t)
{
    return t->entries;
}
uint64_t moor_table_file_size(const moor_table_t *t)
{
    return t->file_size;
}

uint64_t moor_table_bloom_skips(const moor_table_t *t)
{
    return __atomic_load_n(&t->bloom_skips, __ATOMIC_RELAXED);
}

/* ---- point lookup ---------------------------------------------------- */

/* 1 if the filter rules the user key of ikey out (and counts it). */
static int table_filter_skips(moor_table_t *t, const char *ikey, size_t iklen)
{
    if (t->filter_len == 0 || moor_bloom_may_contain(t->filter, t->filter_len,
                                                     moor_bloom_hash(ikey, moor_ikey_ulen(iklen))))
        return 0;
    __atomic_fetch_add(&t->bloom_skips, 1, __ATOMIC_RELAXED);
    return 1;
}

/* Sets up *data positioned at the first entry >= ikey; returns 1 when
 * there is one (fini *data after use), 0 when the table has none, or a
 * negative code (nothing to fini either way but 1). */
static int table_seek_block(moor_table_t *t, const char *ikey, size_t iklen,
                            moor_block_iter_t *data)
{
    moor_block_iter_t idx;
    uint64_t off, size;
    int rc = 0, open = 0;

    moor_block_iter_init(&idx, t->index, t->index_len, table_key_cmp, NULL, NULL, 0);
    idx.base.seek(&idx.base, ikey, iklen);
    if (idx.base.valid &&
        !(rc = table_decode_handle(t, idx.base.val, idx.base.vlen, &off, &size)) &&
        !(rc = table_block_open(t, off, size, data))) {
        open = 1;
        data->base.seek(&data->base, ikey, iklen);
        if (data->base.status)
            rc = table_corrupt(t, off, "malformed data block");
        else if (data->base.valid && data->base.klen < MOOR_IKEY_TRAILER)
            rc = table_corrupt(t, off, "short key in data block");
    } else if (!idx.base.valid && idx.base.status) {
        rc = table_corrupt(t, t->index_off, "malformed index block");
    }
    moor_block_iter_fini(&idx);
    if (rc || (open && !data->base.valid)) {
        if (open)
            moor_block_iter_fini(data);
        return rc;
    }
    return open;
}

int moor_table_get(moor_table_t *t, const char *ikey, size_t iklen, moor_buf_t *val, int *type)
{
    moor_block_iter_t data;
    int rc, found = 0;

    if (iklen < MOOR_IKEY_TRAILER)
        return moor_diag(MOOR_EINVAL, "table get: internal key of %zu bytes", iklen);
    if (table_filter_skips(t, ikey, iklen))
        return 0;
    if ((rc = table_seek_block(t, ikey, iklen, &data)) <= 0)
        return rc;
    rc = 0;
    if (moor_ukey_cmp(data.base.key, moor_ikey_ulen(data.base.klen), ikey, moor_ikey_ulen(iklen)) ==
        0) {
        moor_buf_reset(val);
        if (moor_buf_append(val, data.base.val, data.base.vlen)) {
            rc = moor_diag(MOOR_ENOMEM, "table get: out of memory copying a value");
        } else {
            *type = moor_ikey_type(data.base.key, data.base.klen);
            found = 1;
        }
    }
    moor_block_iter_fini(&data);
    return rc ? rc : found;
}

/* ---- two-level iterator --------------------------------------------- */

/* Blocks of a long scan: after SCAN_AFTER blocks read in order, an
 * iterator reads the table ahead in one pread of READAHEAD_MIN bytes,
 * doubling to READAHEAD_MAX, instead of one pread per block, and decodes
 * blocks it does not find in the cache into a buffer of its own instead of
 * inserting them.  A full scan thus makes one system call per 256 KiB
 * rather than per 4 KiB, allocates nothing per block, and does not push
 * the point-read working set out of the cache (a scan would otherwise
 * replace the whole cache with blocks it reads once: anti-entropy walks
 * whole ranges).  Short scans (a seek and a few entries) never get there
 * and use the cache as gets do. */
typedef struct scan_buf {
    char *ra; /* stored bytes of [ra_off, ra_off + ra_len) */
    size_t ra_len, ra_cap;
    uint64_t ra_off;
    size_t ra_next; /* size of the next read ahead */
    char *raw;      /* the decoded block the data iterator is on */
    size_t raw_cap;
} scan_buf_t;

typedef struct table_iter {
    moor_iiter_t base;
    moor_table_t *t;
    moor_block_iter_t index; /* over t->index */
    moor_block_iter_t data;  /* current data block, when has_data */
    int has_data;
    unsigned in_order; /* blocks loaded by moving on since the last seek */
    uint64_t data_off; /* offset of the current data block */
    scan_buf_t sb;
} table_iter_t;

static void titer_drop_data(table_iter_t *ti)
{
    if (ti->has_data)
        moor_block_iter_fini(&ti->data);
    ti->has_data = 0;
}

/* Ends the iteration: past the end when rc is 0, else stopped by rc. */
static void titer_fail(table_iter_t *ti, int rc)
{
    ti->base.valid = 0;
    ti->base.status = rc;
    titer_drop_data(ti);
}

/* Makes the stored block (off, size) and its trailer lie in sb->ra. */
static int scan_fill(table_iter_t *ti, uint64_t off, uint64_t size)
{
    scan_buf_t *sb = &ti->sb;
    size_t need = (size_t)size + MOOR_BLOCK_TRAILER, want = sb->ra_next;
    uint64_t room = ti->t->data_end - off; /* handle_fits: need <= room */
    int rc;

    if (sb->ra_len && off >= sb->ra_off && off - sb->ra_off <= sb->ra_len &&
        need <= sb->ra_len - (off - sb->ra_off))
        return 0;
    if (want < need)
        want = need;
    if (want > room)
        want = (size_t)room;
    if (want > sb->ra_cap) {
        char *p = malloc(want);

        if (!p)
            return moor_diag(MOOR_ENOMEM, "%s: out of memory reading ahead", ti->t->path);
        free(sb->ra);
        sb->ra = p;
        sb->ra_cap = want;
    }
    sb->ra_len = 0;
    if ((rc = table_pread(ti->t, sb->ra, want, off)))
        return rc;
    sb->ra_off = off;
    sb->ra_len = want;
    if (sb->ra_next < READAHEAD_MAX)
        sb->ra_next *= 2;
    return 0;
}

/* table_block_open for a long scan: the cached block if there is one,
 * else the block decoded from the read-ahead bytes into sb->raw (or used
 * in place there when stored raw), not cached. */
static int scan_block_open(table_iter_t *ti, uint64_t off, uint64_t size)
{
    moor_table_t *t = ti->t;
    scan_buf_t *sb = &ti->sb;
    moor_cache_handle_t *h;
    const char *s, *p, *data;
    size_t plen;
    uint64_t raw_len;
    uint8_t comp;
    int rc;

    if (t->cache && (h = moor_cache_lookup(t->cache, t->file_number, off))) {
        table_block_t *blk = moor_cache_value(h);

        moor_block_iter_init(&ti->data, blk->data, blk->len, table_key_cmp, table_block_unpin, h,
                             0);
        return 0;
    }
    if ((rc = scan_fill(ti, off, size)))
        return rc;
    s = sb->ra + (off - sb->ra_off);
    if ((rc = stored_parse(t, off, s, (size_t)size, &comp, &raw_len, &p, &plen)))
        return rc;
    if (comp == MOOR_BLOCK_RAW) {
        data = p;
    } else {
        if (raw_len > sb->raw_cap) {
            char *np = malloc((size_t)raw_len);

            if (!np)
                return moor_diag(MOOR_ENOMEM, "%s: out of memory decoding a block", t->path);
            free(sb->raw);
            sb->raw = np;
            sb->raw_cap = (size_t)raw_len;
        }
        if ((rc = table_unzstd(t, off, p, plen, sb->raw, raw_len)))
            return rc;
        data = sb->raw;
    }
    if ((rc = table_check_block(t, off, data, (size_t)raw_len)))
        return rc;
    moor_block_iter_init(&ti->data, data, (size_t)raw_len, table_key_cmp, NULL, NULL, 0);
    return 0;
}

/* Replaces the data iterator with one over the block the index is on. */
static int titer_load(table_iter_t *ti)
{
    uint64_t off, size;
    int rc;

    titer_drop_data(ti);
    if ((rc = table_decode_handle(ti->t, ti->index.base.val, ti->index.base.vlen, &off, &size)))
        return rc;
    if (ti->in_order >= SCAN_AFTER) {
        if (!ti->sb.ra_next)
            ti->sb.ra_next = READAHEAD_MIN;
        rc = scan_block_open(ti, off, size);
    } else {
        rc = table_block_open(ti->t, off, size, &ti->data);
    }
    if (rc)
        return rc;
    ti->has_data = 1;
    ti->data_off = off;
    return 0;
}

/* Moves past exhausted data blocks, then publishes the current entry. */
static void titer_settle(table_iter_t *ti)
{
    moor_iiter_t *d = &ti->data.base, *idx = &ti->index.base;
    int rc;

    while (!ti->has_data || !d->valid) {
        if (ti->has_data && d->status) {
            titer_fail(ti, table_corrupt(ti->t, ti->data_off, "malformed data block"));
            return;
        }
        if (ti->has_data) {
            idx->next(idx);
            ti->in_order++;
        }
        if (!idx->valid) {
            rc = idx->status ? table_corrupt(ti->t, ti->t->index_off, "malformed index block") : 0;
            titer_fail(ti, rc);
            return;
        }
        if ((rc = titer_load(ti))) {
            titer_fail(ti, rc);
            return;
        }
        d->seek_first(d);
    }
    if (d->klen < MOOR_IKEY_TRAILER) {
        titer_fail(ti, table_corrupt(ti->t, ti->data_off, "short key in data block"));
        return;
    }
    ti->base.valid = 1;
    ti->base.key = d->key;
    ti->base.klen = d->klen;
    ti->base.val = d->val;
    ti->base.vlen = d->vlen;
}

static void titer_seek_first(moor_iiter_t *it)
{
    table_iter_t *ti = (table_iter_t *)it;

    if (it->status)
        return;
    titer_drop_data(ti);
    ti->in_order = 0;
    ti->index.base.seek_first(&ti->index.base);
    titer_settle(ti);
}

static void titer_seek(moor_iiter_t *it, const char *target, size_t tlen)
{
    table_iter_t *ti = (table_iter_t *)it;
    int rc;

    if (it->status)
        return;
    titer_drop_data(ti);
    ti->in_order = 0;
    ti->index.base.seek(&ti->index.base, target, tlen);
    if (ti->index.base.valid) {
        if ((rc = titer_load(ti))) {
            titer_fail(ti, rc);
            return;
        }
        ti->data.base.seek(&ti->data.base, target, tlen);
    }
    titer_settle(ti);
}

static void titer_next(moor_iiter_t *it)
{
    table_iter_t *ti = (table_iter_t *)it;

    if (it->status || !ti->has_data) {
        it->valid = 0;
        return;
    }
    ti->data.base.next(&ti->data.base);
    titer_settle(ti);
}

static void titer_destroy(moor_iiter_t *it)
{
    table_iter_t *ti = (table_iter_t *)it;

    titer_drop_data(ti);
    moor_block_iter_fini(&ti->index);
    free(ti->sb.ra);
    free(ti->sb.raw);
    free(ti);
}

moor_iiter_t *moor_table_iter(moor_table_t *t)
{
    table_iter_t *ti = calloc(1, sizeof(*ti));

    if (!ti)
        return NULL;
    moor_block_iter_init(&ti->index, t->index, t->index_len, table_key_cmp, NULL, NULL, 0);
    ti->t = t;
    ti->base.seek_first = titer_seek_first;
    ti->base.seek = titer_seek;
    ti->base.next = titer_next;
    ti->base.destroy = titer_destroy;
    return &ti->base;
}
