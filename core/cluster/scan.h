/*
 * scan.h -- pages of a keyspace's keys: the cursor a client resumes
 * with, one replica's page of a token interval (the `_scan` answer), and
 * the reader of such a page.  The coordinator's side, which walks the ring
 * and merges the replicas' pages, is moor_coord_scan (coord.h,
 * coord_scan.c).
 *
 * Positions.  Engine keys are be64 token | u8 space_len | space | key
 * (record.h), so a space's keys lie in ring order, interleaved with other
 * spaces' keys of nearby tokens.  A scan position is an engine-key lower
 * bound `from` (inclusive, at least 8 bytes, its first 8 the token): be64 T
 * alone means "the first entry with a token >= T", an engine key followed
 * by one 0 byte means "the first entry after that key" (the smallest byte
 * string greater than it).  Positions compare as byte strings (memcmp,
 * the shorter first on a tie), the store's order.
 *
 * Cursor format (opaque to clients, MOOR_SCAN_CURSOR_VERSION 1):
 *   u8   version (1)
 *   ...  from: 8 .. MOOR_SCAN_FROM_MAX bytes, first 8 = be64 token
 *   be32 crc32c (masked, crc32c.h) of the bytes before
 * so a cursor carries (version, token position, last key within the
 * token) and nothing of the node that made it: it resumes after a restart
 * or a ring change.  Anything else is malformed (MOOR_EINVAL).
 *
 * `_scan` answer (one replica's page), one MessagePack map:
 *   {items = [[key (bin), record (bin)], ...], next = bin?}
 * items in engine order, every key of the space in [from, to] that starts
 * with the prefix, tombstones included (the coordinator needs them to
 * drop keys a later delete covers); with values = false every sibling's
 * value is replaced by nil (the clock and dots stay, so merges still
 * decide what is deleted).  next (absent when the replica reached token
 * `to`): the position after the last entry it examined -- everything
 * before it in [from, to] was examined.  A page stops at limit items,
 * MOOR_SCAN_EXAMINE_MAX entries examined or MOOR_SCAN_PAGE_BYTES of
 * records (always at least one item or entry).
 *
 * Pure functions on untrusted bytes (fuzz_scan.c), no I/O but the store
 * interface's synchronous scan.  Any thread.
 */
#ifndef MOOR_CLUSTER_SCAN_H
#define MOOR_CLUSTER_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "util/buf.h"

#define MOOR_SCAN_CURSOR_VERSION 1
/* The longest position: token, space length and space, a key of the
 * largest limits.key_max (65,535 bytes), the 0 byte after. */
#define MOOR_SCAN_FROM_MAX (8 + 1 + 255 + 65535 + 1)
#define MOOR_SCAN_LIMIT_DEFAULT 100
#define MOOR_SCAN_LIMIT_MAX 1000
#define MOOR_SCAN_EXAMINE_MAX 10000            /* engine entries one page looks at */
#define MOOR_SCAN_PAGE_BYTES ((size_t)4 << 20) /* records in one replica's page */

/* One page request of a replica: the keys of space in [from, to]. */
typedef struct moor_scan_req {
    const char *space; /* 0..255 bytes */
    size_t slen;
    const char *prefix; /* only keys that start with it; plen 0: every key */
    size_t plen;
    const char *from; /* a position (see above), 8 or more bytes */
    size_t flen;
    uint64_t to;    /* last token of the interval, >= from's token */
    uint32_t limit; /* items, 1..MOOR_SCAN_LIMIT_MAX */
    int values;     /* 0: values replaced by nil */
} moor_scan_req_t;

/* One item of a page, borrowed from the answer bytes. */
typedef struct moor_scan_item {
    const char *key, *rec;
    uint32_t klen, rlen;
} moor_scan_item_t;

/* Reading a page: moor_scan_page_open then moor_scan_page_next until it
 * gives 1.  Borrowed from the answer bytes. */
typedef struct moor_scan_reader {
    const char *p, *end; /* the items still to read */
    uint32_t left;       /* items still to read */
    const char *next;    /* the answer's next; NULL: none (the replica reached to) */
    uint32_t nlen;
} moor_scan_reader_t;

/* ===== API ===== */

/* Appends the cursor of position from (flen 8..MOOR_SCAN_FROM_MAX) to
 * out.  0, MOOR_EINVAL (flen out of range), MOOR_ENOMEM. */
int moor_scan_cursor_encode(const char *from, size_t flen, moor_buf_t *out);

/* The position a cursor holds: *from points into cur (borrowed).  0 or
 * MOOR_EINVAL with a diagnostic (wrong length, version or checksum). */
int moor_scan_cursor_decode(const char *cur, size_t clen, const char **from, size_t *flen);

/* Compares positions (or engine keys) as the store orders them. */
int moor_scan_pos_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* One replica's page of req from store, as the `_scan` answer, appended to
 * out.  0, MOOR_EINVAL (req out of range), MOOR_ECORRUPT (a stored record
 * of the space does not decode), MOOR_ENOMEM or the store's error; with a
 * diagnostic.  REQUIRES: req->space and prefix within limits. */
int moor_scan_page_local(const moor_store_if_t *store, const moor_scan_req_t *req, moor_buf_t *out);

/* Opens the `_scan` answer ans.  0, or MOOR_EPROTO with a diagnostic (not
 * such a map, or next not a position). */
int moor_scan_page_open(const char *ans, size_t alen, moor_scan_reader_t *rd);

/* The next item into *it: 0, 1 at the end, or MOOR_EPROTO with a
 * diagnostic (an item that is not [bin key of 1.. bytes, bin record]). */
int moor_scan_page_next(moor_scan_reader_t *rd, moor_scan_item_t *it);

#endif
