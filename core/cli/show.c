/*
 * show.c -- answers as the moor CLI shows them (show.h).
 *
 * Everything here reads the node's answer with the bounded readers of
 * util/mp.h and builds a new MessagePack object (printed as JSON by the
 * caller) or a text table, so a malformed or unexpected answer costs an
 * error code and never a read past its end.  Fields the views do not know
 * are carried over (get) or ignored (ring), so that the node may add to
 * its answers without breaking the CLI.
 */
#include "cli/show.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "cli/json.h"
#include "cluster/vclock.h"
#include "util/mp.h"
#include "util/err.h"

#define KEY_IS(k, kl, lit) ((kl) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

static int pack_cstr(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* ---- clock ---------------------------------------------------------------- */

static int pack_clock(msgpack_packer *pk, const moor_vclock_t *vc)
{
    int rc = msgpack_pack_map(pk, vc->n);

    for (uint32_t i = 0; rc == 0 && i < vc->n; i++)
        rc = msgpack_pack_str_with_body(pk, vc->e[i].id, vc->e[i].idlen) ||
             msgpack_pack_uint64(pk, vc->e[i].counter);
    return rc ? MOOR_ENOMEM : 0;
}

/* The clock of ctx; 0 or MOOR_EBADCTX (also for trailing bytes).  vc is
 * big (~5 KiB): callers keep it on the heap. */
static int decode_ctx(const char *ctx, size_t len, moor_vclock_t *vc)
{
    const char *p = ctx;

    if (moor_vclock_decode(&p, ctx + len, vc))
        return MOOR_EBADCTX;
    return p == ctx + len ? 0 : MOOR_EBADCTX;
}

int moor_show_clock(const char *ctx, size_t len, moor_buf_t *out)
{
    moor_vclock_t *vc = malloc(sizeof(*vc));
    size_t old = out->len;
    msgpack_packer pk;
    int rc;

    if (!vc)
        return MOOR_ENOMEM;
    moor_mp_packer_init(&pk, out);
    if ((rc = decode_ctx(ctx, len, vc)) == 0 && (rc = pack_clock(&pk, vc)))
        out->len = old;
    free(vc);
    return rc;
}

/* ---- get ------------------------------------------------------------------------------ */

/* Where the parts of a get answer are (spans into it). */
typedef struct get_parts {
    const char *values; /* the whole "values" array; NULL if absent */
    size_t values_len;
    uint32_t nvalues;
    const char *ctx; /* the bin body of "ctx"; NULL if absent or not bin */
    uint32_t ctx_len;
    uint32_t others; /* entries other than values and ctx */
} get_parts_t;

static int get_parts(const char *res, size_t rlen, get_parts_t *g)
{
    const char *p = res, *end = res + rlen;
    uint32_t n;

    memset(g, 0, sizeof(*g));
    if (moor_mp_read_map(&p, end, &n))
        return MOOR_EPROTO;
    while (n--) {
        const char *k, *vs;
        uint32_t kl, m;
        if (moor_mp_read_str(&p, end, &k, &kl)) {
            if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                return MOOR_EPROTO;
            kl = 0, k = "";
        }
        vs = p;
        if (KEY_IS(k, kl, "values") && moor_mp_read_array(&p, end, &m) == 0) {
            p = vs;
            if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                return MOOR_EPROTO;
            g->values = vs;
            g->values_len = (size_t)(p - vs);
            g->nvalues = m;
            continue;
        }
        if (KEY_IS(k, kl, "ctx") && moor_mp_read_bin(&p, end, &g->ctx, &g->ctx_len) == 0)
            continue;
        if (!KEY_IS(k, kl, "values") && !KEY_IS(k, kl, "ctx"))
            g->others++; /* a values or ctx of another type is left out */
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return MOOR_EPROTO;
    }
    return 0;
}

/* The entries of res other than values and ctx, copied as they are. */
static int copy_others(const char *res, size_t rlen, moor_buf_t *out)
{
    const char *p = res, *end = res + rlen;
    uint32_t n;
    int rc = 0;

    if (moor_mp_read_map(&p, end, &n))
        return MOOR_EPROTO;
    while (rc == 0 && n--) {
        const char *ks = p, *k;
        uint32_t kl;
        int known = moor_mp_read_str(&p, end, &k, &kl) == 0 &&
                    (KEY_IS(k, kl, "values") || KEY_IS(k, kl, "ctx"));
        p = ks;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) || moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return MOOR_EPROTO;
        if (!known)
            rc = moor_buf_append(out, ks, (size_t)(p - ks));
    }
    return rc;
}

static int show_siblings(const char *res, size_t rlen, const get_parts_t *g, moor_buf_t *out)
{
    moor_vclock_t *vc = malloc(sizeof(*vc));
    int have_clock = 0, rc;
    msgpack_packer pk;

    if (!vc)
        return MOOR_ENOMEM;
    if (g->ctx && decode_ctx(g->ctx, g->ctx_len, vc) == 0)
        have_clock = 1;
    moor_mp_packer_init(&pk, out);
    rc = msgpack_pack_map(&pk, 1 + (uint32_t)have_clock + (g->ctx != NULL) + g->others) ||
                 pack_cstr(&pk, "siblings") || moor_buf_append(out, g->values, g->values_len)
             ? MOOR_ENOMEM
             : 0;
    if (rc == 0 && have_clock)
        rc = pack_cstr(&pk, "clock") ? MOOR_ENOMEM : pack_clock(&pk, vc);
    if (rc == 0 && g->ctx)
        rc = pack_cstr(&pk, "ctx") || msgpack_pack_bin_with_body(&pk, g->ctx, g->ctx_len)
                 ? MOOR_ENOMEM
                 : 0;
    if (rc == 0)
        rc = copy_others(res, rlen, out);
    free(vc);
    return rc;
}

int moor_show_get(const char *res, size_t rlen, moor_buf_t *out)
{
    size_t old = out->len;
    get_parts_t g;
    int rc;

    if (moor_mp_peek(res, res + rlen) != MOOR_MP_MAP)
        return moor_buf_append(out, res, rlen);
    if (get_parts(res, rlen, &g))
        return MOOR_EPROTO;
    if (g.nvalues <= 1)
        return moor_buf_append(out, res, rlen);
    if ((rc = show_siblings(res, rlen, &g, out)))
        out->len = old;
    return rc;
}

/* ---- ring ------------------------------------------------------------------------------ */

enum { COL_ID, COL_ADDR, COL_ZONE, COL_STATUS, COL_VNODES, COL_SHARE, COL_LINK, NCOLS };

static const char *const col_names[NCOLS] = {"id",     "address", "zone", "status",
                                             "vnodes", "share",   "link"};

typedef struct ring_row {
    const char *cell[NCOLS]; /* borrowed from the answer, or num[] below, or "-" */
    uint32_t len[NCOLS];
    char num[2][24]; /* the vnodes and share texts */
    int self;
    int has_link; /* the node map had a "link" (cluster answers) */
} ring_row_t;

static void set_cell(ring_row_t *row, int col, const char *s, uint32_t n)
{
    row->cell[col] = n ? s : "-";
    row->len[col] = n ? n : 1;
}

/* One field of a node map at *p (key already read); a value of an
 * unexpected type counts as missing. */
static int read_field(ring_row_t *row, const char *k, uint32_t kl, const char **p, const char *end)
{
    static const char *const str_keys[] = {"id", "addr", "zone", "status"};
    const char *s, *start = *p;
    uint32_t n;
    uint64_t u;
    double d;
    int b;

    for (int col = COL_ID; col <= COL_STATUS; col++)
        if (strlen(str_keys[col]) == kl && !memcmp(k, str_keys[col], kl)) {
            if (moor_mp_read_strbin(p, end, &s, &n) == 0)
                set_cell(row, col, s, n);
            break;
        }
    if (KEY_IS(k, kl, "link") && moor_mp_read_strbin(p, end, &s, &n) == 0) {
        set_cell(row, COL_LINK, s, n);
        row->has_link = 1;
    } else if (KEY_IS(k, kl, "vnodes") && moor_mp_read_uint(p, end, &u) == 0) {
        snprintf(row->num[0], sizeof(row->num[0]), "%llu", (unsigned long long)u);
        set_cell(row, COL_VNODES, row->num[0], (uint32_t)strlen(row->num[0]));
    } else if (KEY_IS(k, kl, "share") && moor_mp_read_double(p, end, &d) == 0 && d == d) {
        snprintf(row->num[1], sizeof(row->num[1]), "%.1f%%", d * 100.0);
        set_cell(row, COL_SHARE, row->num[1], (uint32_t)strlen(row->num[1]));
    } else if (KEY_IS(k, kl, "self") && moor_mp_read_bool(p, end, &b) == 0) {
        row->self = b;
    }
    if (*p == start && moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH))
        return MOOR_EPROTO;
    return 0;
}

static int read_node(const char **p, const char *end, ring_row_t *row)
{
    uint32_t n;

    memset(row, 0, sizeof(*row));
    for (int col = 0; col < NCOLS; col++)
        set_cell(row, col, "", 0);
    if (moor_mp_read_map(p, end, &n))
        return MOOR_EPROTO;
    while (n--) {
        const char *k;
        uint32_t kl;
        if (moor_mp_read_str(p, end, &k, &kl)) {
            if (moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH) || moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH))
                return MOOR_EPROTO;
            continue;
        }
        if (read_field(row, k, kl, p, end))
            return MOOR_EPROTO;
    }
    return 0;
}

/* The "nodes" array of the answer: *p at its first element, *n its count. */
static int find_nodes(const char **p, const char *end, uint32_t *count)
{
    uint32_t n;

    if (moor_mp_read_map(p, end, &n))
        return MOOR_EPROTO;
    while (n--) {
        const char *ks = *p, *k;
        uint32_t kl;
        if (moor_mp_read_str(p, end, &k, &kl) == 0 && KEY_IS(k, kl, "nodes"))
            return moor_mp_read_array(p, end, count) ? MOOR_EPROTO : 0;
        *p = ks;
        if (moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH) || moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH))
            return MOOR_EPROTO;
    }
    return MOOR_EPROTO;
}

/* Columns a cell takes: UTF-8 continuation bytes take none. */
static size_t cell_width(const char *s, uint32_t n)
{
    size_t w = 0;

    for (uint32_t i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xc0) != 0x80;
    return w;
}

static int put_cell(moor_buf_t *out, const char *s, uint32_t n, size_t width, int right)
{
    size_t pad = width - cell_width(s, n);
    int rc = 0;

    for (size_t i = 0; right && rc == 0 && i < pad; i++)
        rc = moor_buf_put_u8(out, ' ');
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        rc = moor_buf_put_u8(out, c < 0x20 || c == 0x7f ? '?' : c);
    }
    for (size_t i = 0; !right && rc == 0 && i < pad; i++)
        rc = moor_buf_put_u8(out, ' ');
    return rc;
}

/* The header (row NULL) or one node's line; ncols: NCOLS, or one less
 * when no node has a link. */
static int put_line(moor_buf_t *out, const ring_row_t *row, const size_t *width, int ncols)
{
    int rc = moor_buf_append(out, row && row->self ? "* " : "  ", 2);

    for (int col = 0; rc == 0 && col < ncols; col++) {
        const char *s = row ? row->cell[col] : col_names[col];
        uint32_t n = row ? row->len[col] : (uint32_t)strlen(col_names[col]);
        int right = col == COL_VNODES || col == COL_SHARE, last = col == ncols - 1;
        if (col > 0)
            rc = moor_buf_append(out, "  ", 2);
        if (rc == 0)
            rc = put_cell(out, s, n, last && !right ? cell_width(s, n) : width[col], right);
    }
    return rc ? rc : moor_buf_put_u8(out, '\n');
}

int moor_show_ring(const char *res, size_t rlen, moor_buf_t *out)
{
    const char *p = res, *end = res + rlen;
    size_t width[NCOLS], old = out->len;
    ring_row_t *rows = NULL;
    uint32_t n = 0;
    int rc, ncols = NCOLS - 1;

    if ((rc = find_nodes(&p, end, &n)))
        return rc;
    if (n && !(rows = calloc(n, sizeof(*rows))))
        return MOOR_ENOMEM;
    for (int col = 0; col < NCOLS; col++)
        width[col] = strlen(col_names[col]);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        if ((rc = read_node(&p, end, &rows[i])))
            break;
        if (rows[i].has_link)
            ncols = NCOLS;
        for (int col = 0; col < NCOLS; col++) {
            size_t w = cell_width(rows[i].cell[col], rows[i].len[col]);
            width[col] = w > width[col] ? w : width[col];
        }
    }
    if (rc == 0)
        rc = put_line(out, NULL, width, ncols);
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        rc = put_line(out, &rows[i], width, ncols);
    if (rc == 0 && (rc = moor_buf_put_u8(out, 0)) == 0)
        out->len--;
    if (rc)
        out->len = old;
    free(rows);
    return rc;
}
