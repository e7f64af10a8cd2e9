/*
 * json.c -- a strict JSON parser that writes MessagePack, a MessagePack
 * printer that writes JSON, and base64 (json.h has the mapping rules).
 *
 * Parser design: recursive descent (depth is capped at 64, so recursion is
 * bounded) emitting MessagePack straight into the output buffer.  A
 * container's element count is known only at its end, so its header is
 * written as a 5-byte placeholder (array32/map32) and shrunk to the
 * smallest form once the count is known (one memmove of the body; at most
 * 64 levels of it).  Strings are unescaped into a scratch buffer first for
 * the same reason.  Every error names the 0-based byte offset where the
 * input stopped making sense.
 *
 * Printer design: the whole object is validated once with moor_mp_skip
 * (bounded, depth-limited) before a byte is printed, so the recursive
 * printer below works on input known to be whole and at most 64 deep.
 *
 * Stateless; thread-safe.
 */
#include "cli/json.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "util/mp.h"
#include "util/err.h"
#include "util/utf8.h"

/* ---- base64 ------------------------------------------------------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int moor_json_b64_encode(const void *data, size_t n, moor_buf_t *out)
{
    const unsigned char *s = data;
    char *o;

    if (moor_buf_reserve(out, (n + 2) / 3 * 4))
        return moor_diag(MOOR_ENOMEM, "no memory for %zu bytes of base64", (n + 2) / 3 * 4);
    o = out->data + out->len;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    out->len = (size_t)(o - out->data);
    return 0;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int moor_json_b64_decode(const char *s, size_t n, moor_buf_t *out)
{
    size_t pad = 0, mark = out->len;
    uint32_t acc = 0;
    int bits = 0;

    while (pad < 2 && n > pad && s[n - 1 - pad] == '=')
        pad++;
    if (pad && n % 4 != 0)
        return moor_diag(MOOR_EINVAL,
                         "base64 padding at byte %zu: length must be a multiple "
                         "of 4 when padded",
                         n - pad);
    n -= pad;
    if (n % 4 == 1)
        return moor_diag(MOOR_EINVAL, "base64 of %zu characters is truncated", n);
    if (moor_buf_reserve(out, n / 4 * 3 + 2))
        return moor_diag(MOOR_ENOMEM, "no memory to decode %zu bytes of base64", n);
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            out->len = mark;
            return moor_diag(MOOR_EINVAL, "invalid base64 character 0x%02x at byte %zu",
                             (unsigned char)s[i], i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[out->len++] = (char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return 0;
}

/* ---- UTF-8 ------------------------------------------------------------------- */

static int utf8_put(moor_buf_t *b, uint32_t cp)
{
    unsigned char o[4];
    size_t n;

    if (cp < 0x80) {
        o[0] = (unsigned char)cp, n = 1;
    } else if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 63)), n = 2;
    } else if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12), o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63)), n = 3;
    } else {
        o[0] = (unsigned char)(0xf0 | cp >> 18), o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63)), o[3] = (unsigned char)(0x80 | (cp & 63));
        n = 4;
    }
    return moor_buf_append(b, o, n);
}

/* ---- parser ------------------------------------------------------------------ */

typedef struct jparse {
    const unsigned char *start, *p, *end; /* input; p is the cursor */
    moor_buf_t *out;                      /* MessagePack goes here */
    msgpack_packer pk;                    /* writes to out */
    moor_buf_t str;                       /* scratch: the current unescaped string */
    int depth;                            /* open containers */
    size_t errpos;                        /* offset of the first error */
} jparse_t;

static int jerr(jparse_t *j, const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int jerr(jparse_t *j, const unsigned char *at, const char *fmt, ...)
{
    char what[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    j->errpos = (size_t)(at - j->start);
    return moor_diag(MOOR_EINVAL, "JSON: %s at byte %zu", what, j->errpos);
}

static int joom(jparse_t *j)
{
    j->errpos = (size_t)(j->p - j->start);
    return moor_diag(MOOR_ENOMEM, "JSON: out of memory at byte %zu", j->errpos);
}

static void skip_ws(jparse_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* What an unexpected byte looks like in a message. */
static const char *show(const unsigned char *p, char buf[8])
{
    if (*p >= 0x21 && *p < 0x7f)
        snprintf(buf, 8, "'%c'", *p);
    else
        snprintf(buf, 8, "0x%02x", *p);
    return buf;
}

static int parse_value(jparse_t *j);

static int hex4(jparse_t *j, uint32_t *cp)
{
    *cp = 0;
    if (j->end - j->p < 4)
        return jerr(j, j->end, "unexpected end of input in a \\u escape");
    for (int i = 0; i < 4; i++, j->p++) {
        unsigned char c = *j->p;
        int v = c >= '0' && c <= '9'                     ? c - '0'
                : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                         : -1;
        char sb[8];
        if (v < 0)
            return jerr(j, j->p, "invalid hex digit %s in a \\u escape", show(j->p, sb));
        *cp = *cp << 4 | (uint32_t)v;
    }
    return 0;
}

/* \uXXXX at p (after the backslash and 'u'), joining surrogate pairs. */
static int unicode_escape(jparse_t *j, const unsigned char *esc)
{
    uint32_t hi, lo;
    int rc;

    if ((rc = hex4(j, &hi)))
        return rc;
    if (hi >= 0xdc00 && hi <= 0xdfff)
        return jerr(j, esc, "lone low surrogate \\u%04X", (unsigned)hi);
    if (hi >= 0xd800 && hi <= 0xdbff) {
        const unsigned char *esc2 = j->p;
        if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
            return jerr(j, esc, "high surrogate \\u%04X not followed by a low surrogate",
                        (unsigned)hi);
        j->p += 2;
        if ((rc = hex4(j, &lo)))
            return rc;
        if (lo < 0xdc00 || lo > 0xdfff)
            return jerr(j, esc2, "\\u%04X after high surrogate \\u%04X is not a low surrogate",
                        (unsigned)lo, (unsigned)hi);
        hi = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
    }
    return utf8_put(&j->str, hi) ? joom(j) : 0;
}

static int escape(jparse_t *j)
{
    const unsigned char *esc = j->p++; /* the backslash */
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k;
    char sb[8];

    if (j->p >= j->end)
        return jerr(j, j->p, "unexpected end of input in a string escape");
    if (*j->p == 'u') {
        j->p++;
        return unicode_escape(j, esc);
    }
    if (!*j->p || !(k = strchr(from, *j->p)))
        return jerr(j, esc, "invalid escape \\%s", show(j->p, sb));
    j->p++;
    return moor_buf_put_u8(&j->str, (uint8_t)to[k - from]) ? joom(j) : 0;
}

/* The string at p (p on the opening quote), unescaped into j->str. */
static int parse_string(jparse_t *j)
{
    const unsigned char *open = j->p++;
    int rc;

    moor_buf_reset(&j->str);
    for (;;) {
        const unsigned char *run = j->p;
        size_t k;
        /* Copy plain ASCII runs in one append. */
        while (j->p < j->end && *j->p >= 0x20 && *j->p < 0x80 && *j->p != '"' && *j->p != '\\')
            j->p++;
        if (j->p > run && moor_buf_append(&j->str, run, (size_t)(j->p - run)))
            return joom(j);
        if (j->p >= j->end)
            return jerr(j, open, "unterminated string");
        if (*j->p == '"') {
            j->p++;
            return 0;
        }
        if (*j->p == '\\') {
            if ((rc = escape(j)))
                return rc;
            continue;
        }
        if (*j->p < 0x20)
            return jerr(j, j->p, "control character 0x%02x in a string (must be escaped)", *j->p);
        if (!(k = moor_utf8_seq((const unsigned char *)j->p, (const unsigned char *)j->end, NULL)))
            return jerr(j, j->p, "invalid UTF-8 byte 0x%02x in a string", *j->p);
        if (moor_buf_append(&j->str, j->p, k))
            return joom(j);
        j->p += k;
    }
}

static int is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* Digits of an integer literal [s, e) (optional '-') -> uint64 or int64. */
static int pack_integer(jparse_t *j, const unsigned char *s, const unsigned char *e)
{
    int neg = *s == '-';
    uint64_t mag = 0;

    for (const unsigned char *q = s + neg; q < e; q++) {
        unsigned d = (unsigned)(*q - '0');
        if (mag > (UINT64_MAX - d) / 10)
            goto range;
        mag = mag * 10 + d;
    }
    if (!neg)
        return msgpack_pack_uint64(&j->pk, mag) ? joom(j) : 0;
    if (mag > (uint64_t)INT64_MAX + 1)
        goto range;
    return msgpack_pack_int64(&j->pk, mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag)
               ? joom(j)
               : 0;
range:
    return jerr(j, s, "integer out of the 64-bit range (add a fraction or exponent for a float)");
}

static int pack_float(jparse_t *j, const unsigned char *s, const unsigned char *e)
{
    size_t n = (size_t)(e - s);
    char small[64], *buf = n < sizeof(small) ? small : malloc(n + 1);
    double v;

    if (!buf)
        return joom(j);
    memcpy(buf, s, n);
    buf[n] = '\0';
    v = strtod(buf, NULL); /* the grammar was checked above: strtod takes it all */
    if (buf != small)
        free(buf);
    if (isinf(v))
        return jerr(j, s, "number out of the range of a double");
    return msgpack_pack_double(&j->pk, v) ? joom(j) : 0;
}

/* RFC 8259 number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int parse_number(jparse_t *j)
{
    const unsigned char *s = j->p;
    int is_float = 0;

    if (*j->p == '-')
        j->p++;
    if (!is_digit(j->p, j->end))
        return jerr(j, j->p, "expected a digit after '-'");
    if (*j->p == '0' && is_digit(j->p + 1, j->end))
        return jerr(j, j->p, "leading zero in a number");
    while (is_digit(j->p, j->end))
        j->p++;
    if (j->p < j->end && *j->p == '.') {
        is_float = 1;
        if (!is_digit(++j->p, j->end))
            return jerr(j, j->p, "expected a digit after the decimal point");
        while (is_digit(j->p, j->end))
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        is_float = 1;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!is_digit(j->p, j->end))
            return jerr(j, j->p, "expected a digit in the exponent");
        while (is_digit(j->p, j->end))
            j->p++;
    }
    return is_float ? pack_float(j, s, j->p) : pack_integer(j, s, j->p);
}

static int parse_literal(jparse_t *j)
{
    static const char *const words[] = {"true", "false", "null"};

    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[i], n) == 0) {
            j->p += n;
            return (i == 0   ? msgpack_pack_true(&j->pk)
                    : i == 1 ? msgpack_pack_false(&j->pk)
                             : msgpack_pack_nil(&j->pk))
                       ? joom(j)
                       : 0;
        }
    }
    return jerr(j, j->p, "invalid literal (expected true, false or null)");
}

/* Container header placeholder: array32/map32 with the count to come. */
static int open_container(jparse_t *j, size_t *mark)
{
    static const char hole[5] = {0};

    if (++j->depth > MOOR_JSON_MAX_DEPTH)
        return jerr(j, j->p, "nesting deeper than %d levels", MOOR_JSON_MAX_DEPTH);
    j->p++;
    *mark = j->out->len;
    return moor_buf_append(j->out, hole, sizeof(hole)) ? joom(j) : 0;
}

/* Writes the real header at mark and closes the gap after it. */
static void close_container(jparse_t *j, size_t mark, int is_map, uint32_t n)
{
    unsigned char h[5];
    size_t hl;
    char *d = j->out->data + mark;

    if (n <= 15) {
        h[0] = (unsigned char)((is_map ? 0x80 : 0x90) | n), hl = 1;
    } else if (n <= 0xffff) {
        h[0] = is_map ? 0xde : 0xdc, h[1] = (unsigned char)(n >> 8), h[2] = (unsigned char)n;
        hl = 3;
    } else {
        h[0] = is_map ? 0xdf : 0xdd;
        for (int i = 0; i < 4; i++)
            h[1 + i] = (unsigned char)(n >> (24 - 8 * i));
        hl = 5;
    }
    memcpy(d, h, hl);
    if (hl < 5)
        memmove(d + hl, d + 5, j->out->len - mark - 5);
    j->out->len -= 5 - hl;
    j->depth--;
}

/* After an element: ',' (1, more follow) or the closing byte (0). */
static int next_or_close(jparse_t *j, unsigned char close, const char *what)
{
    char sb[8];

    skip_ws(j);
    if (j->p >= j->end)
        return jerr(j, j->p, "unexpected end of input in %s", what);
    if (*j->p == close) {
        j->p++;
        return 0;
    }
    if (*j->p != ',')
        return jerr(j, j->p, "expected ',' or '%c' in %s, got %s", close, what, show(j->p, sb));
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == close)
        return jerr(j, j->p, "trailing comma before '%c'", close);
    return 1;
}

static int parse_array(jparse_t *j)
{
    size_t mark;
    uint32_t n = 0;
    int rc;

    if ((rc = open_container(j, &mark)))
        return rc;
    skip_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
    } else {
        do {
            if ((rc = parse_value(j)))
                return rc;
            if (++n == UINT32_MAX)
                return jerr(j, j->p, "array of more than %u items", UINT32_MAX - 1);
        } while ((rc = next_or_close(j, ']', "an array")) == 1);
        if (rc < 0)
            return rc;
    }
    close_container(j, mark, 0, n);
    return 0;
}

/* A map written exactly as {"$bin": <str>} becomes a bin. */
static int maybe_bin(jparse_t *j, size_t mark, const unsigned char *at)
{
    const char *p = j->out->data + mark, *end = j->out->data + j->out->len, *k, *v;
    uint32_t n, kl, vl;
    moor_buf_t raw = MOOR_BUF_INIT;
    int rc;

    if (moor_mp_read_map(&p, end, &n) || n != 1 || moor_mp_read_str(&p, end, &k, &kl) || kl != 4 ||
        memcmp(k, "$bin", 4) != 0)
        return 0;
    if (moor_mp_read_str(&p, end, &v, &vl))
        return jerr(j, at, "\"$bin\" must hold a base64 string");
    if ((rc = moor_json_b64_decode(v, vl, &raw))) {
        moor_buf_free(&raw);
        return rc == MOOR_EINVAL ? jerr(j, at, "bad base64 in \"$bin\": %s", moor_diag_msg(rc))
                                 : joom(j);
    }
    j->out->len = mark;
    rc = msgpack_pack_bin_with_body(&j->pk, raw.data, raw.len) ? joom(j) : 0;
    moor_buf_free(&raw);
    return rc;
}

/* One "key": value.  *literal_bin: the key was written as "$bin" exactly
 * (an escaped spelling such as "\u0024bin" is an ordinary key). */
static int parse_member(jparse_t *j, int *literal_bin)
{
    const unsigned char *k;
    char sb[8];
    int rc;

    skip_ws(j);
    if (j->p >= j->end)
        return jerr(j, j->p, "unexpected end of input in an object");
    if (*j->p != '"')
        return jerr(j, j->p, "expected a string key in an object, got %s", show(j->p, sb));
    *literal_bin = 0;
    k = j->p;
    if ((rc = parse_string(j)))
        return rc;
    *literal_bin = j->p - k == 6 && memcmp(k, "\"$bin\"", 6) == 0;
    if (msgpack_pack_str_with_body(&j->pk, j->str.data, j->str.len))
        return joom(j);
    skip_ws(j);
    if (j->p >= j->end)
        return jerr(j, j->p, "unexpected end of input in an object");
    if (*j->p != ':')
        return jerr(j, j->p, "expected ':' after an object key, got %s", show(j->p, sb));
    j->p++;
    return parse_value(j);
}

static int parse_object(jparse_t *j)
{
    const unsigned char *at = j->p;
    size_t mark;
    uint32_t n = 0;
    int rc, literal_bin = 0, lit = 0;

    if ((rc = open_container(j, &mark)))
        return rc;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
    } else {
        do {
            if ((rc = parse_member(j, &lit)))
                return rc;
            literal_bin |= n == 0 && lit;
            if (++n == UINT32_MAX)
                return jerr(j, j->p, "object of more than %u members", UINT32_MAX - 1);
        } while ((rc = next_or_close(j, '}', "an object")) == 1);
        if (rc < 0)
            return rc;
    }
    close_container(j, mark, 1, n);
    return n == 1 && literal_bin ? maybe_bin(j, mark, at) : 0;
}

static int parse_value(jparse_t *j)
{
    char sb[8];
    int rc;

    skip_ws(j);
    if (j->p >= j->end)
        return jerr(j, j->p, "unexpected end of input (expected a value)");
    switch (*j->p) {
    case '{': return parse_object(j);
    case '[': return parse_array(j);
    case '"':
        if ((rc = parse_string(j)))
            return rc;
        return msgpack_pack_str_with_body(&j->pk, j->str.data, j->str.len) ? joom(j) : 0;
    case 't':
    case 'f':
    case 'n': return parse_literal(j);
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))
            return parse_number(j);
        return jerr(j, j->p, "unexpected %s (expected a value)", show(j->p, sb));
    }
}

int moor_json_to_mp(const char *text, size_t len, moor_buf_t *out, size_t *errpos)
{
    jparse_t j;
    size_t mark = out->len;
    char sb[8];
    int rc;

    memset(&j, 0, sizeof(j));
    j.start = j.p = (const unsigned char *)text;
    j.end = j.start + len;
    j.out = out;
    moor_mp_packer_init(&j.pk, out);
    rc = parse_value(&j);
    if (rc == 0) {
        skip_ws(&j);
        if (j.p < j.end)
            rc = jerr(&j, j.p, "unexpected %s after the JSON value", show(j.p, sb));
    }
    moor_buf_free(&j.str);
    if (rc) {
        out->len = mark;
        if (errpos)
            *errpos = j.errpos;
    }
    return rc;
}

/* ---- printer ------------------------------------------------------------------- */

/* A non-string map key is printed as a string of its JSON text, which
 * escapes the text once more at every level of keys within keys: output
 * that doubles per level.  Capping each key's text keeps hostile input
 * linear (and gives a clear error instead of gigabytes of backslashes). */
#define KEY_TEXT_MAX 4096

typedef struct jprint {
    moor_buf_t *out;
    int pretty;
    int bad;      /* an append failed: out of memory */
    size_t limit; /* 0, or the most bytes this printer may append */
    size_t base;  /* out->len when it started */
    int toobig;   /* the limit was hit: stop */
    int maxdepth; /* deepest JSON nesting allowed (the parser's limit) */
    int toodeep;  /* a {"$bin"} or {"$ext"} wrapper would pass maxdepth */
} jprint_t;

static void put(jprint_t *w, const void *s, size_t n)
{
    if (w->bad || w->toobig)
        return;
    if (w->limit && w->out->len - w->base + n > w->limit) {
        w->toobig = 1;
        return;
    }
    w->bad |= moor_buf_append(w->out, s, n) != 0;
}

static void puts_(jprint_t *w, const char *s)
{
    put(w, s, strlen(s));
}

static void newline(jprint_t *w, int depth)
{
    if (!w->pretty)
        return;
    put(w, "\n", 1);
    for (int i = 0; i < depth; i++)
        put(w, "  ", 2);
}

static void print_string(jprint_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    put(w, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[7] = {'\\', 0};
        size_t el = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default: memcpy(e + 1, "u00", 3), e[4] = hex[c >> 4], e[5] = hex[c & 15], el = 6;
        }
        put(w, e, el);
    }
    put(w, s + run, n - run);
    put(w, "\"", 1);
}

static void print_b64_object(jprint_t *w, const char *s, size_t n)
{
    puts_(w, w->pretty ? "{\"$bin\": \"" : "{\"$bin\":\"");
    w->bad |= moor_json_b64_encode(s, n, w->out) != 0;
    puts_(w, "\"}");
}

/* Fewest significant digits that read back to the same value, written
 * in plain decimal when the exponent is modest (100.0, 0.001) and in
 * exponent form otherwise (1e+21, 5e-324). */
static void print_float(jprint_t *w, double v, int single)
{
    char buf[48];
    int prec, exp;

    if (isnan(v) || isinf(v)) {
        puts_(w, "null");
        return;
    }
    for (prec = 1; prec < 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
        if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
    exp = atoi(strchr(buf, 'e') + 1);
    if (exp >= -5 && exp < 17)
        snprintf(buf, sizeof(buf), "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
    if (!strpbrk(buf, ".e"))
        strcat(buf, ".0");
    puts_(w, buf);
}

static void print_ext(jprint_t *w, const char **p)
{
    const unsigned char *q = (const unsigned char *)*p;
    static const unsigned char fixed[] = {1, 2, 4, 8, 16};
    size_t n, hl;
    char tb[16];

    if (q[0] >= 0xd4 && q[0] <= 0xd8)
        n = fixed[q[0] - 0xd4], hl = 1;
    else if (q[0] == 0xc7)
        n = q[1], hl = 2;
    else if (q[0] == 0xc8)
        n = (size_t)q[1] << 8 | q[2], hl = 3;
    else
        n = (size_t)q[1] << 24 | (size_t)q[2] << 16 | (size_t)q[3] << 8 | q[4], hl = 5;
    snprintf(tb, sizeof(tb), "%d", (int)(int8_t)q[hl]);
    puts_(w, w->pretty ? "{\"$ext\": {\"type\": " : "{\"$ext\":{\"type\":");
    puts_(w, tb);
    puts_(w, w->pretty ? ", \"data\": \"" : ",\"data\":\"");
    w->bad |= moor_json_b64_encode(q + hl + 1, n, w->out) != 0;
    puts_(w, "\"}}");
    *p = (const char *)(q + hl + 1 + n);
}

static void print_obj(jprint_t *w, const char **p, const char *end, int depth);

static void print_key(jprint_t *w, const char **p, const char *end, int depth)
{
    const char *s;
    uint32_t n;
    const char *q = *p;

    if (moor_mp_read_str(&q, end, &s, &n) == 0 && moor_utf8_valid(s, n)) {
        *p = q;
        if (n == 4 && memcmp(s, "$bin", 4) == 0)
            puts_(w, "\"\\u0024bin\""); /* a real key, not the bin marker */
        else
            print_string(w, s, n);
        return;
    }
    /* Any other key: its compact JSON text, as a string. */
    {
        moor_buf_t tmp = MOOR_BUF_INIT;
        /* key text is a string to the parser: its nesting does not count */
        jprint_t kw = {&tmp, 0, 0, KEY_TEXT_MAX, 0, 0, INT_MAX, 0};
        print_obj(&kw, p, end, depth);
        w->bad |= kw.bad;
        w->toobig |= kw.toobig;
        print_string(w, tmp.data ? tmp.data : "", tmp.len);
        moor_buf_free(&tmp);
    }
}

static void print_container(jprint_t *w, const char **p, const char *end, int depth, int is_map)
{
    uint32_t n;

    if (is_map)
        moor_mp_read_map(p, end, &n);
    else
        moor_mp_read_array(p, end, &n);
    put(w, is_map ? "{" : "[", 1);
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            put(w, ",", 1);
        newline(w, depth + 1);
        if (is_map) {
            print_key(w, p, end, depth + 1);
            puts_(w, w->pretty ? ": " : ":");
        }
        print_obj(w, p, end, depth + 1);
    }
    if (n)
        newline(w, depth);
    put(w, is_map ? "}" : "]", 1);
}

/* REQUIRES: the object at *p was validated by moor_mp_skip. */
/* 1 if the str at p is valid UTF-8 (printed as a string, not $bin). */
static int str_is_utf8(const char *p, const char *end)
{
    const char *s;
    uint32_t n;

    return moor_mp_read_str(&p, end, &s, &n) == 0 && moor_utf8_valid(s, n);
}

static void print_obj(jprint_t *w, const char **p, const char *end, int depth)
{
    const char *s;
    uint32_t n;
    uint64_t u;
    int64_t i;
    double d;
    int b;
    char num[32];

    if (w->bad || w->toobig || w->toodeep) { /* stop early; *p no longer matters */
        moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH);
        return;
    }
    /* An object at depth d nests d + 1 deep in JSON when it is a container
     * or a {"$bin"} wrapper, d + 2 as {"$ext": {...}}: past the parser's
     * limit the text could not be read back, so it is not printed. */
    b = moor_mp_peek(*p, end);
    if (depth + (b == MOOR_MP_EXT ? 2 : 1) > w->maxdepth &&
        (b == MOOR_MP_EXT || b == MOOR_MP_BIN || b == MOOR_MP_ARRAY || b == MOOR_MP_MAP ||
         (b == MOOR_MP_STR && !str_is_utf8(*p, end)))) {
        w->toodeep = 1;
        moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH);
        return;
    }
    switch (moor_mp_peek(*p, end)) {
    case MOOR_MP_NIL: moor_mp_read_nil(p, end), puts_(w, "null"); break;
    case MOOR_MP_BOOL: moor_mp_read_bool(p, end, &b), puts_(w, b ? "true" : "false"); break;
    case MOOR_MP_UINT:
        moor_mp_read_uint(p, end, &u);
        snprintf(num, sizeof(num), "%llu", (unsigned long long)u);
        puts_(w, num);
        break;
    case MOOR_MP_INT:
        moor_mp_read_int(p, end, &i);
        snprintf(num, sizeof(num), "%lld", (long long)i);
        puts_(w, num);
        break;
    case MOOR_MP_FLOAT:
        b = (unsigned char)**p == 0xca;
        moor_mp_read_double(p, end, &d);
        print_float(w, d, b);
        break;
    case MOOR_MP_STR:
        moor_mp_read_str(p, end, &s, &n);
        if (moor_utf8_valid(s, n))
            print_string(w, s, n);
        else
            print_b64_object(w, s, n);
        break;
    case MOOR_MP_BIN: moor_mp_read_bin(p, end, &s, &n), print_b64_object(w, s, n); break;
    case MOOR_MP_ARRAY: print_container(w, p, end, depth, 0); break;
    case MOOR_MP_MAP: print_container(w, p, end, depth, 1); break;
    case MOOR_MP_EXT: print_ext(w, p); break;
    default: w->bad = 1; /* cannot happen after validation */
    }
}

int moor_json_from_mp(const char **p, const char *end, int flags, moor_buf_t *out)
{
    const char *q = *p;
    size_t mark = out->len;
    jprint_t w = {out, (flags & MOOR_JSON_PRETTY) != 0, 0, 0, out->len, 0, MOOR_JSON_MAX_DEPTH, 0};
    int rc = moor_mp_skip(&q, end, MOOR_MP_MAX_DEPTH);

    if (rc == MOOR_EAGAIN)
        return moor_diag(rc, "MessagePack object is truncated");
    if (rc)
        return moor_diag(rc, "not MessagePack, or nested deeper than %d levels", MOOR_MP_MAX_DEPTH);
    q = *p;
    print_obj(&w, &q, end, 0);
    if (w.toobig) {
        out->len = mark;
        return moor_diag(MOOR_EINVAL,
                         "a map key that is not a string has over %d bytes of "
                         "JSON text: cannot print it as a key",
                         KEY_TEXT_MAX);
    }
    if (w.toodeep) {
        out->len = mark;
        return moor_diag(MOOR_EINVAL,
                         "nested too deep for JSON: {\"$bin\"} and {\"$ext\"} wrappers would "
                         "pass %d levels",
                         MOOR_JSON_MAX_DEPTH);
    }
    if (w.bad) {
        out->len = mark;
        return moor_diag(MOOR_ENOMEM, "no memory to print JSON");
    }
    *p = q;
    return 0;
}
