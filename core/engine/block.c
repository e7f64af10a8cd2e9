/*
 * block.c -- sorted blocks with LevelDB-style prefix compression (layout in
 * table_format.h): the builder behind data and index blocks, and the
 * iterator that reads them.
 *
 * Design: an entry stores only the part of its key that differs from the
 * previous key; every restart_interval entries a "restart" entry stores its
 * whole key, and the restart array lets a seek binary-search whole keys
 * before scanning at most one interval linearly.
 *
 * Invariants the reader enforces, because the bytes may be corrupt (the
 * table checks a CRC first, but a fuzzer or a CRC collision can get past
 * that): nrestarts >= 1; the restart array fits in the block; restart
 * offsets start at 0, increase strictly and lie inside the entry region
 * (an empty block has the single restart 0); every varint and every length
 * is checked against the end of the entry region; an entry at a restart
 * point shares nothing with its predecessor.  A violation makes the
 * iterator invalid with status MOOR_ECORRUPT, sticky until destroy.
 *
 * Threads: a builder or an iterator belongs to one thread at a time; the
 * block bytes an iterator reads are immutable and may be shared.
 */
#include "block.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* ---- builder ----------------------------------------------------------- */

void moor_block_builder_init(moor_block_builder_t *b, int restart_interval)
{
    moor_buf_init(&b->buf);
    moor_buf_init(&b->restarts);
    moor_buf_init(&b->last_key);
    b->restart_interval = restart_interval > 0 ? restart_interval : 1;
    moor_block_builder_reset(b);
}

void moor_block_builder_free(moor_block_builder_t *b)
{
    moor_buf_free(&b->buf);
    moor_buf_free(&b->restarts);
    moor_buf_free(&b->last_key);
}

void moor_block_builder_reset(moor_block_builder_t *b)
{
    moor_buf_reset(&b->buf);
    moor_buf_reset(&b->restarts);
    moor_buf_reset(&b->last_key);
    b->counter = 0;
    b->entries = 0;
    b->finished = 0;
}

static size_t shared_prefix(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen, i = 0;

    while (i < n && a[i] == b[i])
        i++;
    return i;
}

int moor_block_builder_add(moor_block_builder_t *b, const char *key, size_t klen, const char *val,
                           size_t vlen)
{
    size_t shared = 0, old_len = b->buf.len, old_rlen = b->restarts.len;
    char hdr[30];
    size_t hlen;

    if (b->counter >= b->restart_interval || b->entries == 0) {
        if (moor_buf_put_fixed32(&b->restarts, (uint32_t)b->buf.len))
            return MOOR_ENOMEM;
        b->counter = 0;
    } else {
        shared = shared_prefix(b->last_key.data, b->last_key.len, key, klen);
    }
    hlen = moor_enc_varint(hdr, shared);
    hlen += moor_enc_varint(hdr + hlen, klen - shared);
    hlen += moor_enc_varint(hdr + hlen, vlen);
    if (moor_buf_reserve(&b->buf, hlen + (klen - shared) + vlen))
        goto fail;
    moor_buf_append(&b->buf, hdr, hlen);
    moor_buf_append(&b->buf, key + shared, klen - shared);
    moor_buf_append(&b->buf, val, vlen);
    b->last_key.len = shared; /* keep the shared part, append the rest */
    if (moor_buf_append(&b->last_key, key + shared, klen - shared))
        goto fail;
    b->counter++;
    b->entries++;
    return 0;

fail:
    b->buf.len = old_len;
    b->restarts.len = old_rlen;
    b->last_key.len = 0; /* forces the next add to start a restart */
    b->counter = b->restart_interval;
    return MOOR_ENOMEM;
}

size_t moor_block_builder_size(const moor_block_builder_t *b)
{
    size_t restarts = b->restarts.len ? b->restarts.len : 4;

    return b->buf.len + restarts + 4;
}

int moor_block_builder_finish(moor_block_builder_t *b, const char **data, size_t *len)
{
    if (!b->finished) {
        size_t need = (b->restarts.len ? b->restarts.len : 4) + 4;
        uint32_t n = (uint32_t)(b->restarts.len / 4);

        if (moor_buf_reserve(&b->buf, need))
            return MOOR_ENOMEM;
        if (n == 0) { /* an empty block still has the restart at 0 */
            moor_buf_put_fixed32(&b->buf, 0);
            n = 1;
        } else {
            moor_buf_append(&b->buf, b->restarts.data, b->restarts.len);
        }
        moor_buf_put_fixed32(&b->buf, n);
        b->finished = 1;
    }
    *data = b->buf.data;
    *len = b->buf.len;
    return 0;
}

/* ---- iterator ---------------------------------------------------------- */

typedef moor_block_iter_t block_iter_t;

static uint32_t restart_at(const block_iter_t *bi, uint32_t i)
{
    return moor_dec_fixed32(bi->restarts + 4 * (size_t)i);
}

static void block_iter_corrupt(block_iter_t *bi, size_t off)
{
    bi->base.valid = 0;
    bi->base.status = moor_diag(MOOR_ECORRUPT, "malformed block entry at block offset %zu", off);
}

/* Room for a key of n bytes in kbuf, keeping its first keep bytes. */
static int block_key_room(block_iter_t *bi, size_t n, size_t keep)
{
    size_t cap = bi->kcap * 2;
    char *k;

    if (n <= bi->kcap)
        return 0;
    if (cap < n)
        cap = n;
    if (!(k = malloc(cap)))
        return MOOR_ENOMEM;
    memcpy(k, bi->kbuf, keep);
    if (bi->kbuf != bi->kinline)
        free(bi->kbuf);
    bi->kbuf = k;
    bi->kcap = cap;
    return 0;
}

/* Decodes the three varints of the entry at p; 0 or MOOR_ECORRUPT.  The
 * one-byte case (every length under 128) skips the general decoder. */
static inline int entry_header(const char **p, const char *end, uint64_t *shared,
                               uint64_t *unshared, uint64_t *vlen)
{
    const unsigned char *u = (const unsigned char *)*p;

    if (end - *p >= 3 && !((u[0] | u[1] | u[2]) & 0x80)) {
        *shared = u[0];
        *unshared = u[1];
        *vlen = u[2];
        *p += 3;
        return 0;
    }
    if (moor_get_varint(p, end, shared) || moor_get_varint(p, end, unshared) ||
        moor_get_varint(p, end, vlen))
        return MOOR_ECORRUPT;
    return 0;
}

/* Decodes the entry at bi->next_off into key/val.  Past the last entry the
 * iterator becomes invalid with status 0. */
static void block_iter_parse(block_iter_t *bi)
{
    size_t off = bi->next_off;
    const char *p = bi->data + off, *end = bi->data + bi->end;
    uint64_t shared, unshared, vlen;

    if (bi->base.status || off >= bi->end) {
        bi->base.valid = 0;
        return;
    }
    if (entry_header(&p, end, &shared, &unshared, &vlen) || shared > bi->klen ||
        unshared > (uint64_t)(end - p) || vlen > (uint64_t)(end - p) - unshared) {
        block_iter_corrupt(bi, off);
        return;
    }
    if (block_key_room(bi, (size_t)(shared + unshared), (size_t)shared)) {
        bi->base.valid = 0;
        bi->base.status = moor_diag(MOOR_ENOMEM, "block iterator: out of memory");
        return;
    }
    memcpy(bi->kbuf + shared, p, (size_t)unshared);
    bi->klen = (size_t)(shared + unshared);
    p += unshared;
    bi->base.key = bi->kbuf;
    bi->base.klen = bi->klen;
    bi->base.val = p;
    bi->base.vlen = (size_t)vlen;
    bi->next_off = (size_t)(p + vlen - bi->data);
    bi->base.valid = 1;
}

/* Positions on the entry at restart i (its key shares nothing). */
static void block_iter_restart(block_iter_t *bi, uint32_t i)
{
    bi->klen = 0;
    bi->next_off = restart_at(bi, i);
    block_iter_parse(bi);
}

/* The whole key stored at restart i, read in place (a restart entry shares
 * nothing with its predecessor).  0, or MOOR_ECORRUPT with *end_off set. */
static int restart_key(const block_iter_t *bi, uint32_t i, const char **key, size_t *klen)
{
    size_t off = restart_at(bi, i);
    const char *p = bi->data + off, *end = bi->data + bi->end;
    uint64_t shared, unshared, vlen;

    if (off >= bi->end || entry_header(&p, end, &shared, &unshared, &vlen) || shared != 0 ||
        unshared > (uint64_t)(end - p) || vlen > (uint64_t)(end - p) - unshared)
        return MOOR_ECORRUPT;
    *key = p;
    *klen = (size_t)unshared;
    return 0;
}

static void block_iter_seek_first(moor_iiter_t *it)
{
    block_iter_t *bi = (block_iter_t *)it;

    if (it->status) {
        it->valid = 0;
        return;
    }
    block_iter_restart(bi, 0);
}

static void block_iter_next(moor_iiter_t *it)
{
    block_iter_parse((block_iter_t *)it);
}

static void block_iter_seek(moor_iiter_t *it, const char *target, size_t tlen)
{
    block_iter_t *bi = (block_iter_t *)it;
    uint32_t lo = 0, hi = bi->nrestarts - 1;

    if (it->status) {
        it->valid = 0;
        return;
    }
    if (bi->end == 0) { /* an empty block has no entry at its one restart */
        it->valid = 0;
        return;
    }
    /* Last restart whose key is < target: the answer lies at or after it.
     * Restart keys are compared where they lie, without copying. */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        const char *k;
        size_t kl;

        if (restart_key(bi, mid, &k, &kl)) {
            block_iter_corrupt(bi, restart_at(bi, mid));
            return;
        }
        if (bi->cmp(k, kl, target, tlen) < 0)
            lo = mid;
        else
            hi = mid - 1;
    }
    block_iter_restart(bi, lo);
    while (it->valid && bi->cmp(it->key, it->klen, target, tlen) < 0)
        block_iter_parse(bi);
}

void moor_block_iter_fini(moor_block_iter_t *bi)
{
    if (bi->kbuf != bi->kinline)
        free(bi->kbuf);
    bi->kbuf = bi->kinline;
    bi->kcap = sizeof(bi->kinline);
    if (bi->release)
        bi->release(bi->arg);
    bi->release = NULL;
}

static void block_iter_destroy(moor_iiter_t *it)
{
    block_iter_t *bi = (block_iter_t *)it;

    moor_block_iter_fini(bi);
    if (bi->heap)
        free(bi);
}

/* 0 if the restart array of data[0, len) is well formed; sets bi's region. */
static int block_check_restarts(block_iter_t *bi, const char *data, size_t len)
{
    uint32_t n, prev = 0;

    if (len < 4)
        return MOOR_ECORRUPT;
    n = moor_dec_fixed32(data + len - 4);
    if (n == 0 || n > (len - 4) / 4)
        return MOOR_ECORRUPT;
    bi->end = len - 4 - 4 * (size_t)n;
    bi->restarts = data + bi->end;
    bi->nrestarts = n;
    if (restart_at(bi, 0) != 0)
        return MOOR_ECORRUPT;
    if (bi->end == 0) /* empty block */
        return n == 1 ? 0 : MOOR_ECORRUPT;
    for (uint32_t i = 1; i < n; i++) {
        uint32_t r = restart_at(bi, i);
        if (r <= prev || r >= bi->end)
            return MOOR_ECORRUPT;
        prev = r;
    }
    return 0;
}

void moor_block_iter_init(moor_block_iter_t *bi, const char *data, size_t len, moor_key_cmp_fn cmp,
                          void (*release)(void *arg), void *arg, int check)
{
    memset(&bi->base, 0, sizeof(bi->base));
    bi->base.seek_first = block_iter_seek_first;
    bi->base.seek = block_iter_seek;
    bi->base.next = block_iter_next;
    bi->base.destroy = block_iter_destroy;
    bi->heap = 0;
    bi->data = data;
    bi->cmp = cmp;
    bi->release = release;
    bi->arg = arg;
    bi->next_off = 0;
    bi->kbuf = bi->kinline;
    bi->klen = 0;
    bi->kcap = sizeof(bi->kinline);
    if (!check) {
        bi->nrestarts = moor_dec_fixed32(data + len - 4);
        bi->end = len - 4 - 4 * (size_t)bi->nrestarts;
        bi->restarts = data + bi->end;
    } else if (block_check_restarts(bi, data, len)) {
        bi->end = 0;
        bi->nrestarts = 0;
        bi->base.status =
            moor_diag(MOOR_ECORRUPT, "malformed block restart array (%zu bytes)", len);
    }
}

static moor_iiter_t *block_iter_new(const char *data, size_t len, moor_key_cmp_fn cmp,
                                    void (*release)(void *arg), void *arg, int check)
{
    block_iter_t *bi = malloc(sizeof(*bi));

    if (!bi)
        return NULL;
    moor_block_iter_init(bi, data, len, cmp, release, arg, check);
    bi->heap = 1;
    return &bi->base;
}

moor_iiter_t *moor_block_iter(const char *data, size_t len, moor_key_cmp_fn cmp,
                              void (*release)(void *arg), void *arg)
{
    return block_iter_new(data, len, cmp, release, arg, 1);
}

moor_iiter_t *moor_block_iter_trusted(const char *data, size_t len, moor_key_cmp_fn cmp,
                                      void (*release)(void *arg), void *arg)
{
    return block_iter_new(data, len, cmp, release, arg, 0);
}
