/*
 * test_http.c -- the HTTP/1.1 request parser (net/http.h): whole heads,
 * heads cut anywhere (incomplete, never an error), the bound on the head
 * (431), methods (405), versions (505), malformed input (400), the
 * keep-alive rules, and pipelined requests (the head length).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "net/http.h"
#include "util/err.h"

static int parse(const char *s, moor_http_req_t *req, size_t *hl)
{
    return moor_http_parse(s, strlen(s), MOOR_HTTP_MAX_HEAD, req, hl);
}

static int status_of(const char *s)
{
    moor_http_req_t req;
    size_t hl;
    int rc = parse(s, &req, &hl);

    if (rc == MOOR_EPROTO)
        return req.status;
    return rc; /* 1 whole, 0 incomplete */
}

static void test_whole_get(void **state)
{
    const char *s = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\nGET / HTTP/1.1";
    moor_http_req_t req;
    size_t hl = 0;
    (void)state;

    assert_int_equal(parse(s, &req, &hl), 1);
    assert_int_equal(req.method, MOOR_HTTP_GET);
    assert_int_equal(req.plen, 8);
    assert_memory_equal(req.path, "/metrics", 8);
    assert_int_equal(req.qlen, 3);
    assert_memory_equal(req.query, "x=1", 3);
    assert_int_equal(req.minor, 1);
    assert_int_equal(req.keep_alive, 1);
    assert_int_equal(hl, strlen("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n"));
}

static void test_every_cut_is_incomplete(void **state)
{
    const char *s = "HEAD /status.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    moor_http_req_t req;
    size_t hl;
    (void)state;

    for (size_t n = 0; n < strlen(s); n++)
        assert_int_equal(moor_http_parse(s, n, MOOR_HTTP_MAX_HEAD, &req, &hl), 0);
    assert_int_equal(parse(s, &req, &hl), 1);
    assert_int_equal(req.method, MOOR_HTTP_HEAD);
    assert_int_equal(req.keep_alive, 1);
    assert_int_equal(req.minor, 0);
}

static void test_keep_alive_rules(void **state)
{
    moor_http_req_t req;
    size_t hl;
    (void)state;

    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &req, &hl), 1);
    assert_int_equal(req.keep_alive, 0);
    assert_int_equal(
        parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, close\r\n\r\n", &req, &hl), 1);
    assert_int_equal(req.keep_alive, 0);
    /* bare LF line ends are accepted */
    assert_int_equal(parse("GET / HTTP/1.1\nHost: h\n\n", &req, &hl), 1);
    assert_int_equal(req.keep_alive, 1);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &req, &hl), 1);
}

static void test_refusals(void **state)
{
    char big[MOOR_HTTP_MAX_HEAD + 64];
    (void)state;

    assert_int_equal(status_of("POST / HTTP/1.1\r\nHost: h\r\n\r\n"), 405);
    assert_int_equal(status_of("DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n"), 405);
    assert_int_equal(status_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
    assert_int_equal(status_of("GET / HTTP/1.1\r\n\r\n"), 400); /* no Host */
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_int_equal(status_of("GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(status_of("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTX/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(status_of("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost h\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHo st: h\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"), 400);
    assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
                     400);
    assert_int_equal(status_of("\r\n\r\n"), 400);
    assert_int_equal(moor_http_parse("GET /\0 HTTP/1.1", 16, MOOR_HTTP_MAX_HEAD,
                                     &(moor_http_req_t){0}, &(size_t){0}),
                     MOOR_EPROTO);
    /* a head that does not end within the bound */
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(status_of(big), 431);
    /* ... also when it ends just past it */
    memcpy(big + MOOR_HTTP_MAX_HEAD - 2, "\r\n\r\n", 4);
    assert_int_equal(status_of(big), 431);
    /* too many header lines */
    {
        char many[4096] = "GET / HTTP/1.1\r\nHost: h\r\n";
        for (int i = 0; i < MOOR_HTTP_MAX_HEADERS; i++)
            strcat(many, "X: y\r\n");
        strcat(many, "\r\n");
        assert_int_equal(status_of(many), 431);
    }
    assert_string_equal(moor_http_reason(431), "Request Header Fields Too Large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_get),
        cmocka_unit_test(test_every_cut_is_incomplete),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
