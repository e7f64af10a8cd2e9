/*
 * human.c -- answers as text for a person (human.h).
 *
 * Reads the answer with util/mp.h's bounded readers, so a malformed
 * answer costs MOOR_EPROTO and never a read past its end.  Values that
 * have no plain text form are printed with json.h, the same JSON that
 * --json prints, so nothing shown here needs a second reading rule.
 */
#include "cli/human.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/json.h"
#include "cli/show.h"
#include "util/err.h"
#include "util/mp.h"

#define MAX_COLS 32 /* a table shows at most this many columns */
#define MAX_DEPTH 8 /* maps deeper than this are shown as JSON */

static int text_put(moor_buf_t *out, const char *s, size_t n)
{
    return moor_buf_append(out, s, n) ? MOOR_ENOMEM : 0;
}

static int text_puts(moor_buf_t *out, const char *s)
{
    return text_put(out, s, strlen(s));
}

/* Bytes as they are, with control characters and DEL as '?'. */
static int put_printable(moor_buf_t *out, const char *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        char c = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
        if (text_put(out, &c, 1))
            return MOOR_ENOMEM;
    }
    return 0;
}

/* The object at *p as compact JSON; *p advances past it. */
static int put_json(moor_buf_t *out, const char **p, const char *end)
{
    int rc = moor_json_from_mp(p, end, 0, out);

    return rc == MOOR_ENOMEM ? rc : rc ? MOOR_EPROTO : 0;
}

/* Whether the array at p holds only strs (1), or something else (0). */
static int all_strs(const char *p, const char *end)
{
    uint32_t n;

    if (moor_mp_read_array(&p, end, &n))
        return 0;
    while (n--)
        if (moor_mp_peek(p, end) != MOOR_MP_STR || moor_mp_skip(&p, end, 1))
            return 0;
    return 1;
}

/* A value as a cell or after "key: ": a str bare, a float with 6
 * significant digits, an array of strs as "a, b" ("-" when empty),
 * anything else as JSON.  *p advances past it. */
static int put_value(moor_buf_t *out, const char **p, const char *end)
{
    const char *s;
    uint32_t n, sl;
    int rc = 0;

    if (moor_mp_peek(*p, end) == MOOR_MP_STR) {
        if (moor_mp_read_str(p, end, &s, &sl))
            return MOOR_EPROTO;
        return put_printable(out, s, sl);
    }
    if (moor_mp_peek(*p, end) == MOOR_MP_FLOAT) {
        /* Figures (pressures, rates) read better with 6 digits than 17. */
        char num[40];
        double d;
        if (moor_mp_read_double(p, end, &d))
            return MOOR_EPROTO;
        snprintf(num, sizeof(num), d == d ? "%.6g" : "null", d);
        return text_puts(out, num);
    }
    if (moor_mp_peek(*p, end) != MOOR_MP_ARRAY || !all_strs(*p, end))
        return put_json(out, p, end);
    moor_mp_read_array(p, end, &n);
    if (n == 0)
        return text_puts(out, "-");
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        moor_mp_read_str(p, end, &s, &sl); /* checked by all_strs */
        if (i)
            rc = text_puts(out, ", ");
        if (rc == 0)
            rc = put_printable(out, s, sl);
    }
    return rc;
}

static int terminate(moor_buf_t *out, size_t old, int rc)
{
    if (rc == 0 && moor_buf_reserve(out, 1))
        rc = MOOR_ENOMEM;
    if (rc)
        out->len = old;
    else
        out->data[out->len] = '\0';
    return rc;
}

/* ---- get ------------------------------------------------------------------------------- */

#define KEY_IS(k, kl, lit) ((kl) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

/* The clock line of a siblings answer (nothing when the ctx does not decode). */
static int put_clock(moor_buf_t *out, const char *ctx, uint32_t len)
{
    moor_buf_t clock = MOOR_BUF_INIT;
    const char *p;
    int rc;

    if (moor_show_clock(ctx, len, &clock))
        return 0;
    p = clock.data;
    rc = text_puts(out, "clock: ");
    if (rc == 0)
        rc = put_json(out, &p, clock.data + clock.len);
    if (rc == 0)
        rc = text_puts(out, "\n");
    moor_buf_free(&clock);
    return rc;
}

/* Each value of the array at *p on its own line; *n gets their count. */
static int put_values(moor_buf_t *out, const char **p, const char *end, uint32_t *n)
{
    int rc = 0;

    if (moor_mp_read_array(p, end, n))
        return MOOR_EPROTO;
    for (uint32_t i = 0; rc == 0 && i < *n; i++)
        if ((rc = put_json(out, p, end)) == 0)
            rc = text_puts(out, "\n");
    return rc;
}

/* The entries other than values: ctx (with the clock before it when
 * there are siblings) and the rest, as "name: JSON" lines. */
static int put_get_rest(moor_buf_t *out, const char *res, const char *end, uint32_t nvalues)
{
    const char *p = res, *k, *ctx;
    uint32_t n, kl, cl;
    int rc = 0;

    moor_mp_read_map(&p, end, &n);
    while (rc == 0 && n--) {
        if (moor_mp_read_str(&p, end, &k, &kl)) {
            rc =
                moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) || moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)
                    ? MOOR_EPROTO
                    : 0;
            continue;
        }
        if (KEY_IS(k, kl, "values")) {
            rc = moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) ? MOOR_EPROTO : 0;
            continue;
        }
        if (KEY_IS(k, kl, "ctx") && nvalues > 1) {
            const char *q = p;
            if (moor_mp_read_bin(&q, end, &ctx, &cl) == 0)
                rc = put_clock(out, ctx, cl);
        }
        if (rc == 0 && (rc = put_printable(out, k, kl)) == 0 && (rc = text_puts(out, ": ")) == 0 &&
            (rc = put_json(out, &p, end)) == 0)
            rc = text_puts(out, "\n");
    }
    return rc;
}

int moor_human_get(const char *res, size_t rlen, moor_buf_t *out, uint32_t *nvalues)
{
    const char *p = res, *end = res + rlen, *k;
    size_t old = out->len;
    uint32_t n, kl;
    int rc = 0;

    *nvalues = 0;
    if (moor_mp_peek(p, end) == MOOR_MP_NIL)
        return terminate(out, old, text_puts(out, "(not found)\n"));
    if (moor_mp_read_map(&p, end, &n))
        return MOOR_EPROTO;
    while (rc == 0 && n--) {
        if (moor_mp_read_str(&p, end, &k, &kl) == 0 && KEY_IS(k, kl, "values")) {
            rc = put_values(out, &p, end, nvalues);
            break;
        }
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            rc = MOOR_EPROTO;
    }
    if (rc == 0 && *nvalues == 0)
        rc = text_puts(out, "(not found)\n");
    if (rc == 0)
        rc = put_get_rest(out, res, end, *nvalues);
    return terminate(out, old, rc);
}

/* ---- maps -------------------------------------------------------------------------------- */

/* The map at *p as "prefix.key: value" lines. */
static int put_map(moor_buf_t *out, const char **p, const char *end, moor_buf_t *prefix, int depth)
{
    size_t plen = prefix->len;
    uint32_t n;
    int rc = 0;

    if (moor_mp_read_map(p, end, &n))
        return MOOR_EPROTO;
    while (rc == 0 && n--) {
        prefix->len = plen;
        if (plen)
            rc = text_puts(prefix, ".");
        if (rc == 0 && moor_mp_peek(*p, end) == MOOR_MP_STR) {
            const char *k;
            uint32_t kl;
            moor_mp_read_str(p, end, &k, &kl);
            rc = put_printable(prefix, k, kl);
        } else if (rc == 0) {
            rc = put_json(prefix, p, end);
        }
        if (rc)
            break;
        if (moor_mp_peek(*p, end) == MOOR_MP_MAP && depth < MAX_DEPTH) {
            rc = put_map(out, p, end, prefix, depth + 1);
            continue;
        }
        if ((rc = text_put(out, prefix->data, prefix->len)) == 0 &&
            (rc = text_puts(out, ": ")) == 0 && (rc = put_value(out, p, end)) == 0)
            rc = text_puts(out, "\n");
    }
    prefix->len = plen;
    return rc;
}

int moor_human_map(const char *res, size_t rlen, moor_buf_t *out)
{
    moor_buf_t prefix = MOOR_BUF_INIT;
    const char *p = res, *end = res + rlen;
    size_t old = out->len;
    int rc;

    if (moor_mp_peek(p, end) != MOOR_MP_MAP) {
        rc = put_json(out, &p, end);
        if (rc == 0)
            rc = text_puts(out, "\n");
        return terminate(out, old, rc);
    }
    rc = put_map(out, &p, end, &prefix, 0);
    moor_buf_free(&prefix);
    return terminate(out, old, rc);
}

/* ---- tables ------------------------------------------------------------------------------ */

typedef struct table {
    char name[MAX_COLS][64]; /* column keys ("rps.get" for a nested map's) */
    size_t width[MAX_COLS];
    int ncols;
} table_t;

/* The column named prefix.k (or k), added when new; -1 past MAX_COLS or
 * for a name longer than a column name can be. */
static int column(table_t *t, const char *prefix, const char *k, uint32_t kl)
{
    char name[64];
    int n = snprintf(name, sizeof(name), "%s%s%.*s", prefix, *prefix ? "." : "", (int)kl, k);

    if (n < 0 || (size_t)n >= sizeof(name) || memchr(k, 0, kl))
        return -1;
    for (int c = 0; c < t->ncols; c++)
        if (strcmp(t->name[c], name) == 0)
            return c;
    if (t->ncols == MAX_COLS)
        return -1;
    memcpy(t->name[t->ncols], name, (size_t)n + 1);
    t->width[t->ncols] = (size_t)n;
    return t->ncols++;
}

/* The cells of the map at *p (a row, or a map inside one: its entries
 * become columns "prefix.key") into cells, NUL-terminated each, their
 * offsets in at[column]. */
static int map_cells(table_t *t, const char **p, const char *end, const char *prefix,
                     moor_buf_t *cells, size_t *at)
{
    uint32_t n, kl;
    const char *k;

    if (moor_mp_read_map(p, end, &n))
        return MOOR_EPROTO;
    while (n--) {
        int c = -1, rc;
        size_t start;
        if (moor_mp_read_str(p, end, &k, &kl) == 0)
            c = column(t, prefix, k, kl);
        if (c >= 0 && !*prefix && moor_mp_peek(*p, end) == MOOR_MP_MAP) {
            char sub[64];
            snprintf(sub, sizeof(sub), "%s", t->name[c]);
            if (t->ncols == c + 1 && at[c] == (size_t)-1)
                t->ncols--; /* the map's own name is no column: its entries are */
            if ((rc = map_cells(t, p, end, sub, cells, at)))
                return rc;
            continue;
        }
        if (c < 0) {
            if (moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH))
                return MOOR_EPROTO;
            continue;
        }
        start = cells->len;
        if ((rc = put_value(cells, p, end)) || (rc = text_put(cells, "", 1)))
            return rc;
        at[c] = start;
        if (cells->len - start - 1 > t->width[c])
            t->width[c] = cells->len - start - 1;
    }
    return 0;
}

/* One row (map at *p): its cells, SIZE_MAX in at[] for a missing one. */
static int row_cells(table_t *t, const char **p, const char *end, moor_buf_t *cells, size_t *at)
{
    for (int c = 0; c < MAX_COLS; c++)
        at[c] = (size_t)-1;
    cells->len = 0;
    return map_cells(t, p, end, "", cells, at);
}

/* One line: header (cells NULL) or a row. */
static int table_line(moor_buf_t *out, const table_t *t, const moor_buf_t *cells, const size_t *at)
{
    int rc = 0;

    for (int c = 0; rc == 0 && c < t->ncols; c++) {
        const char *s = !cells ? NULL : at[c] == (size_t)-1 ? "-" : cells->data + at[c];
        size_t len = strlen(s ? s : t->name[c]);
        rc = s ? text_puts(out, s) : put_printable(out, t->name[c], (uint32_t)len);
        for (size_t i = len; rc == 0 && c + 1 < t->ncols && i < t->width[c] + 2; i++)
            rc = text_puts(out, " ");
    }
    return rc ? rc : text_puts(out, "\n");
}

/* The array under field, at *arr with *n items. */
static int find_array(const char *res, const char *end, const char *field, const char **arr,
                      uint32_t *n)
{
    const char *p = res, *k;
    uint32_t m, kl;

    if (moor_mp_read_map(&p, end, &m))
        return MOOR_EPROTO;
    while (m--) {
        if (moor_mp_read_str(&p, end, &k, &kl) == 0 && kl == strlen(field) &&
            memcmp(k, field, kl) == 0) {
            *arr = p;
            return moor_mp_read_array(arr, end, n) ? MOOR_EPROTO : 0;
        }
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return MOOR_EPROTO;
    }
    return MOOR_EPROTO;
}

int moor_human_table(const char *res, size_t rlen, const char *field, moor_buf_t *out)
{
    const char *end = res + rlen, *arr, *p;
    moor_buf_t cells = MOOR_BUF_INIT;
    size_t old = out->len, at[MAX_COLS];
    table_t t;
    uint32_t n;
    int rc;

    memset(&t, 0, sizeof(t));
    if ((rc = find_array(res, end, field, &arr, &n)))
        return rc;
    if (n == 0)
        return terminate(out, old, text_puts(out, "(none)\n"));
    /* Two passes: the first finds the columns and their widths. */
    p = arr;
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        rc = row_cells(&t, &p, end, &cells, at);
    if (rc == 0)
        rc = table_line(out, &t, NULL, at);
    p = arr;
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        if ((rc = row_cells(&t, &p, end, &cells, at)) == 0)
            rc = table_line(out, &t, &cells, at);
    moor_buf_free(&cells);
    return terminate(out, old, rc);
}
