/*
 * fuzz_http.c -- libFuzzer target for the HTTP/1.1 request parser
 * (net/http.h moor_http_parse), the first thing the metrics port does with
 * a client's bytes.
 *
 * Input: byte 0 picks the head bound (max_head = 16 + 32 * byte 0, so
 * both tiny and default-sized bounds occur); the rest is the stream.
 *
 * Oracles:
 *  1. a whole head (1) lies within the stream and the bound, and what it
 *     points at lies inside it: the path starts with '/', the query
 *     follows the path's '?', the method is GET or HEAD, the version 1.0
 *     or 1.1;
 *  2. every shorter prefix of a whole head is incomplete (0): a head is
 *     never refused before its end arrives, nor taken early;
 *  3. bytes after a whole head (a pipelined request) change nothing;
 *  4. a refusal names a status the server answers (400, 405, 431, 505),
 *     and 0 is only answered below the bound.
 * Under ASan every read stays inside the given length.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http.h"
#include "util/err.h"

#define FAIL(what)                                             \
    do {                                                       \
        fprintf(stderr, "fuzz_http:%d: %s\n", __LINE__, what); \
        abort();                                               \
    } while (0)

/* A private copy of exactly n bytes, so ASan sees any read past n. */
static int parse_copy(const char *s, size_t n, size_t max, moor_http_req_t *req, size_t *hl)
{
    char *c = malloc(n ? n : 1);
    int rc;

    if (!c)
        abort();
    memcpy(c, s, n);
    rc = moor_http_parse(c, n, max, req, hl);
    /* pointers into the copy are rebased onto s for the caller */
    if (rc == 1) {
        req->path = s + (req->path - c);
        if (req->query)
            req->query = s + (req->query - c);
    }
    free(c);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data + 1;
    moor_http_req_t req, again;
    size_t n, max, hl = 0, hl2 = 0;
    int rc;

    if (size < 1)
        return 0;
    n = size - 1;
    max = 16 + 32 * (size_t)data[0];
    rc = parse_copy(s, n, max, &req, &hl);
    if (rc == 0) {
        if (n >= max)
            FAIL("incomplete at or past the bound");
        return 0;
    }
    if (rc != 1) {
        if (rc != MOOR_EPROTO)
            FAIL("an error other than MOOR_EPROTO");
        if (req.status != 400 && req.status != 405 && req.status != 431 && req.status != 505)
            FAIL("a refusal with a status the server does not answer");
        return 0;
    }
    if (hl == 0 || hl > n || hl > max)
        FAIL("head length outside the stream or the bound");
    if (req.method != MOOR_HTTP_GET && req.method != MOOR_HTTP_HEAD)
        FAIL("a method other than GET or HEAD taken");
    if (req.minor != 0 && req.minor != 1)
        FAIL("a version other than 1.0 or 1.1 taken");
    if (req.path < s || req.path + req.plen > s + hl || req.plen == 0 || req.path[0] != '/')
        FAIL("path outside the head or not origin-form");
    if (req.query && (req.query != req.path + req.plen + 1 || req.query[-1] != '?' ||
                      req.query + req.qlen > s + hl))
        FAIL("query not right after the path's '?'");
    if (memchr(req.path, '?', req.plen))
        FAIL("path holds the query");
    for (size_t k = 0; k < hl; k++)
        if (parse_copy(s, k, max, &again, &hl2) != 0)
            FAIL("a prefix of a whole head was not incomplete");
    if (parse_copy(s, hl, max, &again, &hl2) != 1 || hl2 != hl || again.method != req.method ||
        again.plen != req.plen || again.keep_alive != req.keep_alive || again.qlen != req.qlen)
        FAIL("the head alone parsed differently from the head with bytes after it");
    return 0;
}
