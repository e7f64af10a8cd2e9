/*
 * scan.c -- `moor scan`: lists a keyspace's keys page by page through the
 * node's `scan` method (README "Scanning keys").
 *
 *   moor [-h host:port] [-a token] [--timeout ms] scan [--space S]
 *        [--prefix P] [--limit N] [--values] [--cursor C] [--page N]
 *        [--r LEVEL] [--json]
 *
 * By default every page is fetched, until the node answers a nil cursor,
 * and each key printed as it comes: the CLI holds one page at a time, so
 * a scan of any size runs in bounded memory.  --limit N stops after N keys
 * (pages of min(N, 1000)); --page N fetches one page of N keys and prints
 * the cursor to resume from (--cursor) on stderr.  Cursors are printed and
 * taken in base64.
 *
 * Threads: the calling thread only.
 */
#include "cli/scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "cli/json.h"
#include "cli/show.h"
#include "net/client.h"
#include "util/err.h"
#include "util/mp.h"

#define PAGE_MAX 1000 /* the node's largest page */

typedef struct scan_opts {
    const char *space, *prefix, *cursor, *r;
    unsigned long long limit, page; /* 0: none */
    int values, json;
} scan_opts_t;

/* ---- one page to text ------------------------------------------------------------- */

typedef struct answer {
    const char *keys, *values; /* the first element of each array; values NULL: none */
    uint32_t nkeys, nvalues;
    const char *cursor; /* NULL: nil (the scan is done) */
    uint32_t clen;
    const char *end;
} answer_t;

static int read_answer(const char *res, size_t rlen, answer_t *a)
{
    const char *p = res, *end = res + rlen;
    uint32_t n;

    memset(a, 0, sizeof(*a));
    a->end = end;
    if (moor_mp_read_map(&p, end, &n))
        return moor_diag(MOOR_EPROTO, "scan answer: not a map");
    while (n--) {
        const char *k;
        uint32_t klen, cnt;
        if (moor_mp_read_str(&p, end, &k, &klen))
            return moor_diag(MOOR_EPROTO, "scan answer: a key that is not a str");
        if ((klen == 4 && !memcmp(k, "keys", 4)) || (klen == 6 && !memcmp(k, "values", 6))) {
            if (moor_mp_read_array(&p, end, &cnt))
                return moor_diag(MOOR_EPROTO, "scan answer: %.*s is not an array", (int)klen, k);
            if (klen == 4)
                a->keys = p, a->nkeys = cnt;
            else
                a->values = p, a->nvalues = cnt;
            while (cnt--)
                if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                    return moor_diag(MOOR_EPROTO, "scan answer: malformed");
        } else if (klen == 6 && !memcmp(k, "cursor", 6)) {
            if (moor_mp_read_nil(&p, end) != 0 && moor_mp_read_bin(&p, end, &a->cursor, &a->clen))
                return moor_diag(MOOR_EPROTO, "scan answer: cursor is not bin or nil");
        } else if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) {
            return moor_diag(MOOR_EPROTO, "scan answer: malformed");
        }
    }
    if (!a->keys || (a->values && a->nvalues != a->nkeys))
        return moor_diag(MOOR_EPROTO, "scan answer: no keys, or not one value per key");
    return 0;
}

/* A key as text: a str as it is, anything else as JSON ({"$bin": ...}). */
static int page_key(const char **p, const char *end, int json, moor_buf_t *out)
{
    const char *s;
    uint32_t n;

    if (!json && moor_mp_peek(*p, end) == MOOR_MP_STR && moor_mp_read_str(p, end, &s, &n) == 0)
        return moor_buf_append(out, s, n) ? MOOR_ENOMEM : 0;
    return moor_json_from_mp(p, end, 0, out);
}

/* A value as `moor get` prints it, as JSON. */
static int page_value(const char **p, const char *end, moor_buf_t *out)
{
    const char *v = *p, *q;
    moor_buf_t shown = MOOR_BUF_INIT;
    int rc;

    if (moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH))
        return moor_diag(MOOR_EPROTO, "scan answer: malformed value");
    if ((rc = moor_show_get(v, (size_t)(*p - v), &shown)) == 0) {
        q = shown.data;
        rc = moor_json_from_mp(&q, shown.data + shown.len, 0, out);
    }
    moor_buf_free(&shown);
    return rc;
}

int moor_scan_print_page(const char *res, size_t rlen, int flags, size_t max, moor_buf_t *out,
                         size_t *nkeys)
{
    const char *kp, *vp;
    int json = flags & MOOR_SCAN_CLI_JSON, values = flags & MOOR_SCAN_CLI_VALUES;
    answer_t a;
    int rc;

    *nkeys = 0;
    if ((rc = read_answer(res, rlen, &a)))
        return rc;
    kp = a.keys, vp = a.values;
    for (uint32_t i = 0; i < a.nkeys && (!max || *nkeys < max); i++) {
        if (json && moor_buf_append(out, "{\"key\": ", 8))
            return MOOR_ENOMEM;
        if ((rc = page_key(&kp, a.end, json, out)))
            return rc;
        if (values && vp) {
            if (moor_buf_append(out, json ? ", \"value\": " : "\t", json ? 11 : 1))
                return MOOR_ENOMEM;
            if ((rc = page_value(&vp, a.end, out)))
                return rc;
        }
        if ((json && moor_buf_append(out, "}", 1)) || moor_buf_append(out, "\n", 1))
            return MOOR_ENOMEM;
        (*nkeys)++;
    }
    return 0;
}

/* --page --json: the page as one JSON object {"keys": [...], "values":
 * [...]?, "cursor": "<base64>" or null}, values as `moor get` prints them. */
static int print_page_json(const char *res, size_t rlen, moor_buf_t *out)
{
    const char *kp, *vp;
    answer_t a;
    int rc;

    if ((rc = read_answer(res, rlen, &a)))
        return rc;
    kp = a.keys, vp = a.values;
    if (moor_buf_append(out, "{\"keys\": [", 10))
        return MOOR_ENOMEM;
    for (uint32_t i = 0; i < a.nkeys; i++)
        if ((i && moor_buf_append(out, ", ", 2)) || (rc = moor_json_from_mp(&kp, a.end, 0, out)))
            return rc ? rc : MOOR_ENOMEM;
    if (moor_buf_append(out, "]", 1))
        return MOOR_ENOMEM;
    if (vp) {
        if (moor_buf_append(out, ", \"values\": [", 13))
            return MOOR_ENOMEM;
        for (uint32_t i = 0; i < a.nvalues; i++)
            if ((i && moor_buf_append(out, ", ", 2)) || (rc = page_value(&vp, a.end, out)))
                return rc ? rc : MOOR_ENOMEM;
        if (moor_buf_append(out, "]", 1))
            return MOOR_ENOMEM;
    }
    if (moor_buf_append(out, ", \"cursor\": ", 12))
        return MOOR_ENOMEM;
    if (a.cursor) {
        if (moor_buf_append(out, "\"", 1) || moor_json_b64_encode(a.cursor, a.clen, out) ||
            moor_buf_append(out, "\"", 1))
            return MOOR_ENOMEM;
    } else if (moor_buf_append(out, "null", 4)) {
        return MOOR_ENOMEM;
    }
    return moor_buf_append(out, "}\n", 2) ? MOOR_ENOMEM : 0;
}

/* ---- options ---------------------------------------------------------------------- */

static int usage(const char *why)
{
    FILE *f = why ? stderr : stdout;

    if (why)
        fprintf(stderr, "moor scan: %s\n", why);
    fprintf(f,
            "usage: moor [-h host:port] [-a token] [--timeout ms] scan [--space S] [--prefix P]\n"
            "            [--limit N] [--values] [--cursor C] [--page N] [--r LEVEL] [--json]\n"
            "  lists the keys of a keyspace, one per line, in ring order (not key order);\n"
            "  a key that is not UTF-8 prints as {\"$bin\":\"<base64>\"}\n"
            "  --space S     the keyspace (default: default)\n"
            "  --prefix P    only keys that start with P (a filter, not an index)\n"
            "  --limit N     at most N keys in all (default: every key)\n"
            "  --values      each key's value after a tab, as `moor get` prints it\n"
            "  --cursor C    resume where a --page run stopped (base64)\n"
            "  --page N      one page of at most N (1..1000) keys; prints the next cursor\n"
            "                on stderr (\"cursor: C\", or \"cursor: none\" at the end)\n"
            "  --r LEVEL     replicas each page reads: a count or one, quorum, all\n"
            "  --json        a JSON object per line {\"key\": k, \"value\": v}; with --page\n"
            "                one object {\"keys\": [...], \"values\": [...], \"cursor\": C}\n");
    return why ? 2 : -1;
}

static int parse_count(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;

    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    *out = strtoull(s, &end, 10);
    return *end || *out == 0 || *out > max ? -1 : 0;
}

/* 0, 2 (usage, reported) or -1 (help printed). */
static int parse_opts(int argc, char **argv, scan_opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char why[128];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(NULL);
        if (!strcmp(a, "--values")) {
            o->values = 1;
            continue;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--space") && strcmp(a, "--prefix") && strcmp(a, "--cursor") &&
            strcmp(a, "--r") && strcmp(a, "--limit") && strcmp(a, "--page")) {
            snprintf(why, sizeof(why), "unknown option '%.60s'", a);
            return usage(why);
        }
        if (!v) {
            snprintf(why, sizeof(why), "%.60s needs a value", a);
            return usage(why);
        }
        i++;
        if (!strcmp(a, "--space"))
            o->space = v;
        else if (!strcmp(a, "--prefix"))
            o->prefix = v;
        else if (!strcmp(a, "--cursor"))
            o->cursor = v;
        else if (!strcmp(a, "--r"))
            o->r = v;
        else if (!strcmp(a, "--limit") && parse_count(v, ~0ULL, &o->limit))
            return usage("--limit takes a count of keys (1 or more)");
        else if (!strcmp(a, "--page") && parse_count(v, PAGE_MAX, &o->page))
            return usage("--page takes a count of keys in 1..1000");
    }
    if (o->page && o->limit)
        return usage("--page and --limit do not go together");
    return 0;
}

/* ---- talking ---------------------------------------------------------------------- */

static int pack_params(const scan_opts_t *o, uint32_t limit, const moor_buf_t *cursor,
                       int timeout_ms, moor_buf_t *out)
{
    msgpack_packer pk;
    uint32_t n = 2 + !!o->space + !!o->prefix + !!cursor->len + !!o->values + !!o->r;
    char *end = NULL;
    unsigned long r = o->r ? strtoul(o->r, &end, 10) : 0;
    int rc;

    out->len = 0;
    moor_mp_packer_init(&pk, out);
    rc = msgpack_pack_map(&pk, n);
    rc |= msgpack_pack_str_with_body(&pk, "limit", 5) | msgpack_pack_uint32(&pk, limit);
    /* the node's own TIMEOUT or QUORUM_FAILED arrives before the CLI gives up */
    rc |= msgpack_pack_str_with_body(&pk, "timeout_ms", 10) |
          msgpack_pack_uint32(&pk, (uint32_t)(timeout_ms / 5 * 4));
    if (o->space)
        rc |= msgpack_pack_str_with_body(&pk, "space", 5) |
              msgpack_pack_str_with_body(&pk, o->space, strlen(o->space));
    if (o->prefix)
        rc |= msgpack_pack_str_with_body(&pk, "prefix", 6) |
              msgpack_pack_str_with_body(&pk, o->prefix, strlen(o->prefix));
    if (cursor->len)
        rc |= msgpack_pack_str_with_body(&pk, "cursor", 6) |
              msgpack_pack_bin_with_body(&pk, cursor->data, cursor->len);
    if (o->values)
        rc |= msgpack_pack_str_with_body(&pk, "values", 6) | msgpack_pack_true(&pk);
    if (o->r) {
        rc |= msgpack_pack_str_with_body(&pk, "r", 1);
        rc |= *o->r && !*end ? msgpack_pack_uint64(&pk, r)
                             : msgpack_pack_str_with_body(&pk, o->r, strlen(o->r));
    }
    return rc ? MOOR_ENOMEM : 0;
}

static int transport_failure(const char *what, int rc)
{
    fprintf(stderr, "moor scan: %s: %s\n", what, moor_diag_msg(rc));
    return 3;
}

/* The walk: a page at a time until the cursor is nil, --limit keys or one
 * --page.  Returns the exit status. */
static int run(moor_client_t *cl, const scan_opts_t *o, int timeout_ms)
{
    moor_buf_t params = MOOR_BUF_INIT, cursor = MOOR_BUF_INIT, text = MOOR_BUF_INIT;
    unsigned long long total = 0;
    int flags = (o->json ? MOOR_SCAN_CLI_JSON : 0) | (o->values ? MOOR_SCAN_CLI_VALUES : 0);
    int status = 0, rc;

    if (o->cursor && moor_json_b64_decode(o->cursor, strlen(o->cursor), &cursor)) {
        fprintf(stderr, "moor scan: --cursor is not base64\n");
        return 2;
    }
    for (;;) {
        unsigned long long want = o->page ? o->page : PAGE_MAX;
        moor_client_reply_t r;
        answer_t a;
        size_t n;
        if (o->limit && o->limit - total < want)
            want = o->limit - total;
        if ((rc = pack_params(o, (uint32_t)want, &cursor, timeout_ms, &params)) ||
            (rc = moor_client_call(cl, "scan", params.data, params.len, 1, &r))) {
            status = transport_failure("scan", rc);
            break;
        }
        if (r.error_code) {
            fprintf(stderr, "moor scan: %s: %s\n", r.error_code, r.error_msg);
            status = 1;
            break;
        }
        text.len = 0;
        if ((rc = read_answer(r.result, r.rlen, &a)) ||
            (rc = o->page && o->json
                      ? print_page_json(r.result, r.rlen, &text)
                      : moor_scan_print_page(r.result, r.rlen, flags, (size_t)want, &text, &n))) {
            fprintf(stderr, "moor scan: %s\n", moor_diag_msg(rc));
            status = 1;
            break;
        }
        if (fwrite(text.data, 1, text.len, stdout) != text.len) {
            status = 3;
            break;
        }
        total += o->page && o->json ? a.nkeys : n;
        cursor.len = 0;
        if (a.cursor && moor_buf_append(&cursor, a.cursor, a.clen)) {
            status = 3;
            break;
        }
        if (o->page) {
            text.len = 0;
            if (a.cursor && moor_json_b64_encode(a.cursor, a.clen, &text)) {
                status = 3;
                break;
            }
            fprintf(stderr, "cursor: %.*s\n", a.cursor ? (int)text.len : 4,
                    a.cursor ? text.data : "none");
            break;
        }
        if (!a.cursor || (o->limit && total >= o->limit))
            break;
    }
    moor_buf_free(&params);
    moor_buf_free(&cursor);
    moor_buf_free(&text);
    return status;
}

int moor_scan_main(const char *addr, const char *token, int timeout_ms, int argc, char **argv)
{
    scan_opts_t o;
    moor_client_t *cl = NULL;
    int status, rc;

    memset(&o, 0, sizeof(o));
    if ((status = parse_opts(argc, argv, &o)))
        return status < 0 ? 0 : status;
    if ((rc = moor_client_connect(addr, timeout_ms, &cl)))
        return transport_failure("cannot connect", rc);
    if (token) {
        moor_buf_t tok = MOOR_BUF_INIT;
        moor_client_reply_t r;
        msgpack_packer pk;
        moor_mp_packer_init(&pk, &tok);
        rc = msgpack_pack_str_with_body(&pk, token, strlen(token));
        if (rc == 0)
            rc = moor_client_call(cl, "auth", tok.data, tok.len, 1, &r);
        moor_buf_free(&tok);
        if (rc) {
            moor_client_close(cl);
            return transport_failure("auth", rc);
        }
        if (r.error_code) {
            fprintf(stderr, "moor scan: %s: %s\n", r.error_code, r.error_msg);
            moor_client_close(cl);
            return 1;
        }
    }
    status = run(cl, &o, timeout_ms);
    moor_client_close(cl);
    if (fflush(stdout) != 0 && status == 0)
        status = 3;
    return status;
}
