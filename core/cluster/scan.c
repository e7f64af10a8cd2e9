/*
 * scan.c -- the cursor of a key scan, one replica's page of a token
 * interval, and the reader of such a page (scan.h has the formats).
 *
 * A page is one synchronous store scan from the position `from`: it looks
 * at every engine entry up to token `to` (other spaces' keys and internal
 * keys included, since they interleave), keeps the space's keys that
 * start with the prefix, and stops at whichever bound comes first -- limit
 * items, MOOR_SCAN_EXAMINE_MAX entries, MOOR_SCAN_PAGE_BYTES of records --
 * saying where it stopped (next), so one page costs a bounded amount of
 * work and memory however the keys are spread.
 */
#include "scan.h"

#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/mp.h"

/* ---- cursor ------------------------------------------------------------------------- */

int moor_scan_cursor_encode(const char *from, size_t flen, moor_buf_t *out)
{
    size_t start = out->len;
    uint8_t ver = MOOR_SCAN_CURSOR_VERSION;
    char crc[4];
    uint32_t c;

    if (flen < 8 || flen > MOOR_SCAN_FROM_MAX)
        return moor_diag(MOOR_EINVAL, "scan position of %zu bytes", flen);
    if (moor_buf_append(out, &ver, 1) || moor_buf_append(out, from, flen))
        return moor_diag(MOOR_ENOMEM, "no memory for a cursor");
    c = moor_crc32c_mask(moor_crc32c(out->data + start, out->len - start));
    crc[0] = (char)(c >> 24), crc[1] = (char)(c >> 16), crc[2] = (char)(c >> 8), crc[3] = (char)c;
    return moor_buf_append(out, crc, 4) ? moor_diag(MOOR_ENOMEM, "no memory for a cursor") : 0;
}

int moor_scan_cursor_decode(const char *cur, size_t clen, const char **from, size_t *flen)
{
    const unsigned char *u = (const unsigned char *)cur;
    uint32_t c;

    if (clen < 1 + 8 + 4 || clen > 1 + MOOR_SCAN_FROM_MAX + 4)
        return moor_diag(MOOR_EINVAL, "malformed cursor: %zu bytes", clen);
    if (u[0] != MOOR_SCAN_CURSOR_VERSION)
        return moor_diag(MOOR_EINVAL, "malformed cursor: version %u (this node reads %d)", u[0],
                         MOOR_SCAN_CURSOR_VERSION);
    c = (uint32_t)u[clen - 4] << 24 | (uint32_t)u[clen - 3] << 16 | (uint32_t)u[clen - 2] << 8 |
        u[clen - 1];
    if (moor_crc32c_unmask(c) != moor_crc32c(cur, clen - 4))
        return moor_diag(MOOR_EINVAL, "malformed cursor: checksum mismatch");
    *from = cur + 1;
    *flen = clen - 5;
    return 0;
}

int moor_scan_pos_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;

    return c ? c : (alen > blen) - (alen < blen);
}

/* ---- one replica's page ------------------------------------------------------------- */

typedef struct page {
    const moor_scan_req_t *req;
    moor_buf_t *out;
    msgpack_packer pk;
    moor_buf_t items;  /* the packed items */
    moor_buf_t last;   /* engine key of the last entry examined */
    moor_buf_t rec;    /* scratch: a record with its values stripped */
    moor_record_t *r;  /* scratch for stripping (values = 0) */
    uint32_t n;        /* items */
    uint32_t examined; /* entries looked at */
    size_t bytes;      /* records packed */
    int stopped;       /* a bound was reached: next is last + 0 */
    int rc;            /* an error inside the callback */
} page_t;

/* The record rec with every sibling's value nil (tombstone flags, dots
 * and clock kept) into pg->rec.  0 or an error. */
static int strip_values(page_t *pg, const char *rec, size_t rlen)
{
    int rc;

    pg->rec.len = 0;
    if ((rc = moor_record_decode(rec, rlen, pg->r)))
        return rc;
    for (uint32_t i = 0; i < pg->r->n; i++) {
        pg->r->sib[i].value = "\xc0";
        pg->r->sib[i].vlen = 1;
    }
    return moor_record_encode(pg->r, &pg->rec);
}

/* The token of an engine entry: its first 8 bytes (a shorter internal key
 * padded with zeros, which is where it sorts). */
static uint64_t entry_token(const char *key, size_t klen)
{
    char t[8] = {0};

    memcpy(t, key, klen < 8 ? klen : 8);
    return moor_dec_be64(t);
}

static int page_cb(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    page_t *pg = arg;
    const moor_scan_req_t *q = pg->req;
    size_t skip = 8 + 1 + q->slen;
    int rc;

    if (entry_token(key, klen) > q->to)
        return 1; /* past the interval: no next */
    if (pg->examined >= MOOR_SCAN_EXAMINE_MAX || pg->n >= q->limit ||
        (pg->n && pg->bytes + vlen > MOOR_SCAN_PAGE_BYTES)) {
        pg->stopped = 1;
        return 1;
    }
    pg->examined++;
    pg->last.len = 0;
    if (moor_buf_append(&pg->last, key, klen)) {
        pg->rc = MOOR_ENOMEM;
        return 1;
    }
    if (klen <= skip || (uint8_t)key[8] != q->slen || memcmp(key + 9, q->space, q->slen) ||
        klen - skip < q->plen || memcmp(key + skip, q->prefix, q->plen))
        return 0;
    if (!q->values) {
        if ((rc = strip_values(pg, val, vlen))) {
            pg->rc = rc;
            return 1;
        }
        val = pg->rec.data, vlen = pg->rec.len;
    }
    if (msgpack_pack_array(&pg->pk, 2) ||
        msgpack_pack_bin_with_body(&pg->pk, key + skip, klen - skip) ||
        msgpack_pack_bin_with_body(&pg->pk, val, vlen)) {
        pg->rc = MOOR_ENOMEM;
        return 1;
    }
    pg->n++;
    pg->bytes += vlen;
    return 0;
}

int moor_scan_page_local(const moor_store_if_t *store, const moor_scan_req_t *req, moor_buf_t *out)
{
    page_t pg;
    msgpack_packer pk;
    int rc;

    if (req->flen < 8 || req->flen > MOOR_SCAN_FROM_MAX || moor_dec_be64(req->from) > req->to ||
        req->limit == 0 || req->limit > MOOR_SCAN_LIMIT_MAX || req->slen == 0 ||
        req->slen > MOOR_SPACE_MAX)
        return moor_diag(MOOR_EINVAL, "scan page: space, from, to or limit out of range");
    memset(&pg, 0, sizeof(pg));
    pg.req = req;
    pg.out = out;
    moor_mp_packer_init(&pg.pk, &pg.items);
    if (!req->values && !(pg.r = malloc(sizeof(*pg.r))))
        return moor_diag(MOOR_ENOMEM, "no memory for a scan page");
    rc = store->scan(store->ud, "", 0, req->from, req->flen, 0, page_cb, &pg);
    if (rc == 0 && pg.rc)
        rc = pg.rc == MOOR_ENOMEM ? moor_diag(MOOR_ENOMEM, "no memory for a scan page")
                                  : moor_diag_wrap(pg.rc, pg.rc, "a stored record of the scan");
    if (rc == 0) {
        moor_mp_packer_init(&pk, out);
        rc = msgpack_pack_map(&pk, pg.stopped ? 2 : 1) |
             msgpack_pack_str_with_body(&pk, "items", 5) | msgpack_pack_array(&pk, pg.n) |
             moor_mp_pack_raw(out, pg.items.data, pg.items.len);
        if (pg.stopped) {
            rc |= msgpack_pack_str_with_body(&pk, "next", 4) |
                  msgpack_pack_bin(&pk, pg.last.len + 1) |
                  msgpack_pack_bin_body(&pk, pg.last.data, pg.last.len) |
                  msgpack_pack_bin_body(&pk, "", 1);
        }
        if (rc)
            rc = moor_diag(MOOR_ENOMEM, "no memory for a scan page");
    }
    moor_buf_free(&pg.items);
    moor_buf_free(&pg.last);
    moor_buf_free(&pg.rec);
    free(pg.r);
    return rc;
}

/* ---- reading a page ----------------------------------------------------------------- */

int moor_scan_page_open(const char *ans, size_t alen, moor_scan_reader_t *rd)
{
    const char *p, *end, *items = NULL, *iend = NULL;
    uint32_t n, nitems = 0;

    memset(rd, 0, sizeof(*rd));
    if (!ans || alen == 0) /* an empty answer (no bytes at all) */
        return moor_diag(MOOR_EPROTO, "_scan answer: empty");
    p = ans, end = ans + alen;
    if (moor_mp_read_map(&p, end, &n))
        return moor_diag(MOOR_EPROTO, "_scan answer: not a map");
    while (n--) {
        const char *k;
        uint32_t klen;
        if (moor_mp_read_str(&p, end, &k, &klen))
            return moor_diag(MOOR_EPROTO, "_scan answer: a key that is not a str");
        if (klen == 5 && memcmp(k, "items", 5) == 0 && !items) {
            if (moor_mp_read_array(&p, end, &nitems))
                return moor_diag(MOOR_EPROTO, "_scan answer: items not an array");
            items = p;
            for (uint32_t i = 0; i < nitems; i++)
                if (moor_mp_skip(&p, end, 4))
                    return moor_diag(MOOR_EPROTO, "_scan answer: malformed items");
            iend = p;
        } else if (klen == 4 && memcmp(k, "next", 4) == 0 && !rd->next) {
            if (moor_mp_read_nil(&p, end) == 0)
                continue;
            if (moor_mp_read_bin(&p, end, &rd->next, &rd->nlen) || rd->nlen < 8 ||
                rd->nlen > MOOR_SCAN_FROM_MAX)
                return moor_diag(MOOR_EPROTO, "_scan answer: next not a position");
        } else if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) {
            return moor_diag(MOOR_EPROTO, "_scan answer: malformed");
        }
    }
    if (!items || p != end)
        return moor_diag(MOOR_EPROTO, "_scan answer: no items, or bytes after the map");
    rd->p = items;
    rd->end = iend;
    rd->left = nitems;
    return 0;
}

int moor_scan_page_next(moor_scan_reader_t *rd, moor_scan_item_t *it)
{
    uint32_t n;

    if (rd->left == 0)
        return 1;
    rd->left--;
    if (moor_mp_read_array(&rd->p, rd->end, &n) || n != 2 ||
        moor_mp_read_bin(&rd->p, rd->end, &it->key, &it->klen) || it->klen == 0 ||
        moor_mp_read_bin(&rd->p, rd->end, &it->rec, &it->rlen))
        return moor_diag(MOOR_EPROTO, "_scan answer: an item is not [key, record]");
    return 0;
}
