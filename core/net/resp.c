/*
 * resp.c -- RESP2 command cutting and reply encoding (resp.h).
 *
 * The scanner is resumable: a multibulk command arriving in many reads
 * is validated argument by argument once in total (s->off marks the end
 * of the last whole argument, s->seen counts them), and an inline line
 * is searched for its newline once per byte.  Every length is checked
 * against the limits before the bytes it announces are awaited.
 */
#include "resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"

void moor_resp_scan_init(moor_resp_scan_t *s)
{
    memset(s, 0, sizeof(*s));
}

/* The header line at p (max `avail` bytes): its type byte already known,
 * a signed decimal, \r\n.  >0: the line's length with *v set; 0: not
 * complete yet; MOOR_EPROTO: not a number or no \r\n within the cap. */
static long header_line(const char *p, size_t avail, long long *v)
{
    size_t lim = avail < MOOR_RESP_HEADER_MAX ? avail : MOOR_RESP_HEADER_MAX, i = 1;
    long long x = 0;
    int neg = 0, digits = 0;

    if (i < lim && p[i] == '-')
        neg = 1, i++;
    for (; i < lim && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
        if (digits >= 18)
            return MOOR_EPROTO;
        x = x * 10 + (p[i] - '0');
    }
    if (i >= lim)
        return avail >= MOOR_RESP_HEADER_MAX ? MOOR_EPROTO : 0;
    if (p[i] != '\r' || !digits)
        return MOOR_EPROTO;
    if (i + 1 >= lim)
        return avail >= MOOR_RESP_HEADER_MAX ? MOOR_EPROTO : 0;
    if (p[i + 1] != '\n')
        return MOOR_EPROTO;
    *v = neg ? -x : x;
    return (long)(i + 2);
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Arguments of the inline line p[0..n) (\n excluded). */
static uint32_t inline_count(const char *p, size_t n, uint32_t cap)
{
    uint32_t argc = 0;
    size_t i = 0;

    while (i < n) {
        while (i < n && is_space(p[i]))
            i++;
        if (i == n)
            break;
        if (argc++ > cap)
            break;
        while (i < n && !is_space(p[i]))
            i++;
    }
    return argc;
}

static long scan_inline(moor_resp_scan_t *s, const char *buf, size_t len,
                        const moor_resp_limits_t *lim, uint32_t *argc)
{
    size_t max = lim->max_inline < len ? lim->max_inline : len;
    const char *nl = memchr(buf + s->off, '\n', max - s->off);
    uint32_t n;

    if (!nl) {
        s->off = max;
        if (len >= lim->max_inline) {
            moor_resp_scan_init(s);
            return moor_diag(MOOR_ETOOLARGE,
                             "Protocol error: too big inline request (over %zu bytes)",
                             lim->max_inline);
        }
        return 0;
    }
    moor_resp_scan_init(s);
    n = inline_count(buf, (size_t)(nl - buf), lim->max_args);
    if (n > lim->max_args)
        return moor_diag(MOOR_ETOOLARGE, "Protocol error: more than %u arguments", lim->max_args);
    *argc = n;
    return (long)(nl - buf) + 1;
}

/* Resets the scan and records the error (code, printf-style message). */
#define scan_fail(s, ...) (moor_resp_scan_init(s), moor_diag(__VA_ARGS__))

/* The multibulk header: sets s->argc and s->off, or a 0 / error answer. */
static long scan_multi_header(moor_resp_scan_t *s, const char *buf, size_t len,
                              const moor_resp_limits_t *lim)
{
    long long v;
    long h = header_line(buf, len, &v);

    if (h == 0)
        return 0;
    if (h < 0)
        return scan_fail(s, MOOR_EPROTO, "Protocol error: invalid multibulk length");
    if (v > (long long)lim->max_args)
        return scan_fail(s, MOOR_ETOOLARGE,
                         "Protocol error: multibulk of %lld arguments is over "
                         "the limit",
                         v);
    /* Each argument takes at least "$0\r\n\r\n". */
    if (v > 0 && (size_t)h + (size_t)v * 6 > lim->max_frame)
        return scan_fail(s, MOOR_ETOOLARGE,
                         "Protocol error: %lld arguments cannot fit in max_frame", v);
    s->multi = 1;
    s->argc = v > 0 ? (uint32_t)v : 0;
    s->seen = 0;
    s->off = (size_t)h;
    return 1;
}

/* One bulk argument at buf + s->off: 1 when it is whole (s->off moves past
 * it), 0 when more bytes are needed, or an error. */
static long scan_bulk(moor_resp_scan_t *s, const char *buf, size_t len,
                      const moor_resp_limits_t *lim)
{
    const char *p = buf + s->off;
    size_t avail = len - s->off, need;
    long long v;
    long h;

    if (avail == 0)
        return 0;
    if (p[0] != '$') {
        char got = p[0];
        moor_resp_scan_init(s);
        if (got >= 0x20 && got < 0x7f)
            return moor_diag(MOOR_EPROTO, "Protocol error: expected '$', got '%c'", got);
        return moor_diag(MOOR_EPROTO, "Protocol error: expected '$', got byte 0x%02x",
                         (unsigned char)got);
    }
    if ((h = header_line(p, avail, &v)) == 0)
        return 0;
    if (h < 0 || v < 0)
        return scan_fail(s, MOOR_EPROTO, "Protocol error: invalid bulk length");
    if ((unsigned long long)v > lim->max_bulk)
        return scan_fail(s, MOOR_ETOOLARGE, "Protocol error: bulk length %lld is over the limit",
                         v);
    need = (size_t)h + (size_t)v + 2;
    if (s->off + need > lim->max_frame)
        return scan_fail(s, MOOR_ETOOLARGE, "Protocol error: bulk length %lld ends past max_frame",
                         v);
    if (avail < need)
        return 0;
    if (p[need - 2] != '\r' || p[need - 1] != '\n')
        return scan_fail(s, MOOR_EPROTO, "Protocol error: bulk of %lld bytes not followed by CRLF",
                         v);
    s->off += need;
    s->seen++;
    return 1;
}

long moor_resp_scan(moor_resp_scan_t *s, const char *buf, size_t len, const moor_resp_limits_t *lim,
                    uint32_t *argc)
{
    long rc;
    size_t total;

    if (len == 0)
        return 0;
    if (!s->multi) {
        if (buf[0] != '*')
            return scan_inline(s, buf, len, lim, argc);
        if ((rc = scan_multi_header(s, buf, len, lim)) <= 0)
            return rc;
    }
    while (s->seen < s->argc)
        if ((rc = scan_bulk(s, buf, len, lim)) <= 0)
            return rc;
    *argc = s->argc;
    total = s->off;
    moor_resp_scan_init(s);
    return (long)total;
}

static int split_inline(const char *cmd, size_t len, moor_resp_arg_t *args, uint32_t max)
{
    size_t i = 0, n = len;
    uint32_t k = 0;

    if (n && cmd[n - 1] == '\n')
        n--;
    while (i < n && k < max) {
        while (i < n && is_space(cmd[i]))
            i++;
        if (i == n)
            break;
        args[k].p = cmd + i;
        while (i < n && !is_space(cmd[i]))
            i++;
        args[k].len = (size_t)(cmd + i - args[k].p);
        k++;
    }
    return 0;
}

int moor_resp_split(const char *cmd, size_t len, uint32_t argc, moor_resp_arg_t *args, uint32_t max)
{
    long long v;
    long h;
    size_t off;

    if (max > argc)
        max = argc;
    if (len == 0 || cmd[0] != '*')
        return split_inline(cmd, len, args, max);
    if ((h = header_line(cmd, len, &v)) <= 0)
        return MOOR_EPROTO;
    off = (size_t)h;
    for (uint32_t i = 0; i < max; i++) {
        if (off >= len || cmd[off] != '$' || (h = header_line(cmd + off, len - off, &v)) <= 0 ||
            v < 0 || (size_t)v > len - off - (size_t)h)
            return MOOR_EPROTO;
        args[i].p = cmd + off + h;
        args[i].len = (size_t)v;
        off += (size_t)h + (size_t)v + 2;
    }
    return 0;
}

/* ---- replies ------------------------------------------------------------- */

static int line(moor_buf_t *b, char type, const char *s, size_t n)
{
    size_t at = b->len;

    if (moor_buf_reserve(b, n + 3))
        return MOOR_ENOMEM;
    b->data[at] = type;
    for (size_t i = 0; i < n; i++)
        b->data[at + 1 + i] = (s[i] == '\r' || s[i] == '\n') ? ' ' : s[i];
    b->data[at + 1 + n] = '\r';
    b->data[at + 2 + n] = '\n';
    b->len = at + n + 3;
    return 0;
}

int moor_resp_status(moor_buf_t *b, const char *s)
{
    return line(b, '+', s, strlen(s));
}

int moor_resp_error(moor_buf_t *b, const char *s)
{
    return line(b, '-', s, strlen(s));
}

int moor_resp_errorf(moor_buf_t *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    return line(b, '-', msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

static int number(moor_buf_t *b, char type, long long v)
{
    char s[32];
    int n = snprintf(s, sizeof(s), "%c%lld\r\n", type, v);

    return moor_buf_append(b, s, (size_t)n);
}

int moor_resp_int(moor_buf_t *b, long long v)
{
    return number(b, ':', v);
}

int moor_resp_array(moor_buf_t *b, long long n)
{
    return number(b, '*', n);
}

int moor_resp_null(moor_buf_t *b)
{
    return moor_buf_append(b, "$-1\r\n", 5);
}

int moor_resp_bulk(moor_buf_t *b, const void *p, size_t n)
{
    size_t before = b->len;

    if (number(b, '$', (long long)n) || moor_buf_append(b, p, n) || moor_buf_append(b, "\r\n", 2)) {
        b->len = before;
        return MOOR_ENOMEM;
    }
    return 0;
}
