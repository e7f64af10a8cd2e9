/*
 * http.h -- a small HTTP/1.1 server on the loop: the node's metrics and
 * status port (http_listen).
 *
 * Only what a scraper, a browser and curl need: GET and HEAD of a path,
 * answered synchronously by one handler; keep-alive and pipelining (one
 * request at a time per connection: the next one is read once the answer
 * is written); no request bodies, no chunked input, no upgrades.
 *
 * The request parser (moor_http_parse) is pure and bounded: the request
 * head (request line and headers) is at most max_head bytes; past that the
 * answer is 431 and the connection closes.  A malformed head gets 400, a
 * method other than GET or HEAD 405, an HTTP version other than 1.0/1.1
 * 505; each of those answers closes the connection.
 *
 * Deadlines: one timer per connection, never pushed back by a trickle of
 * bytes: a request head must arrive whole, and an answer must be taken by
 * the client, within idle_timeout_ms of the connection going idle (accept,
 * or the previous answer written); a slow client is closed.  Connections
 * past max_conns are accepted and closed at once.
 *
 * Threads: the loop thread only.
 */
#ifndef MOOR_NET_HTTP_H
#define MOOR_NET_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"

#define MOOR_HTTP_MAX_HEAD 8192  /* default bound of a request head */
#define MOOR_HTTP_MAX_HEADERS 64 /* header lines in one head */
#define MOOR_HTTP_MAX_CONNS 64   /* default connection limit */
#define MOOR_HTTP_IDLE_MS 10000  /* default deadline (see above) */

enum moor_http_method { MOOR_HTTP_GET = 1, MOOR_HTTP_HEAD = 2 };

/* A parsed request head; pointers borrow the bytes given to the parser. */
typedef struct moor_http_req {
    int method;       /* enum moor_http_method */
    const char *path; /* origin-form target up to '?' (starts with '/') */
    size_t plen;
    const char *query; /* after '?', or NULL */
    size_t qlen;
    int minor;      /* HTTP/1.minor: 0 or 1 */
    int keep_alive; /* 1.1 unless "Connection: close"; 1.0 only with keep-alive */
    int status;     /* on a parse error: the HTTP status to answer */
} moor_http_req_t;

/* What the handler answers: status (200 when left), a content type (a
 * static string; "text/plain; charset=utf-8" when left NULL) and the body
 * appended to body (a HEAD request's body is measured, not sent). */
typedef struct moor_http_resp {
    int status;
    const char *ctype;
    moor_buf_t *body;
} moor_http_resp_t;

typedef void (*moor_http_handler_fn)(void *ud, const moor_http_req_t *req, moor_http_resp_t *resp);

typedef struct moor_http_opts {
    const char *host;         /* numeric IPv4 or IPv6 address */
    int port;                 /* 0: any free port (moor_http_port tells) */
    size_t max_head;          /* 0: MOOR_HTTP_MAX_HEAD */
    unsigned max_conns;       /* 0: MOOR_HTTP_MAX_CONNS */
    unsigned idle_timeout_ms; /* 0: MOOR_HTTP_IDLE_MS */
} moor_http_opts_t;

typedef struct moor_http_stats {
    uint64_t conns;    /* open now */
    uint64_t accepted; /* connections taken */
    uint64_t refused;  /* over max_conns */
    uint64_t requests; /* answered by the handler */
    uint64_t bad;      /* answered 400, 405, 431 or 505 */
    uint64_t timeouts; /* closed by the deadline */
} moor_http_stats_t;

typedef struct moor_http moor_http_t;

/* ===== API ===== */

/* Parses the request head at the start of buf (len bytes).  Returns 1 and
 * the head's length in *head_len when a whole head is there; 0 when more
 * bytes are needed (and len is still within max_head); MOOR_EPROTO with
 * req->status set (400, 405, 431, 505) when the head is refused.  Pure;
 * reads at most len bytes. */
int moor_http_parse(const char *buf, size_t len, size_t max_head, moor_http_req_t *req,
                    size_t *head_len);

/* The reason phrase of a status ("OK", "Not Found", ...). */
const char *moor_http_reason(int status);

/* Listens on host:port and serves with handler(ud, ...).  0, or an error
 * (MOOR_EINVAL bad address, a busy port as its -errno) with a diagnostic;
 * on error nothing is left open. */
int moor_http_start(uv_loop_t *loop, const moor_http_opts_t *o, moor_http_handler_fn handler,
                    void *ud, moor_http_t **out);

/* The port listened on. */
int moor_http_port(const moor_http_t *h);

void moor_http_stats(const moor_http_t *h, moor_http_stats_t *out);

/* Stops listening and closes every connection (answers being written are
 * cut); the server frees itself once every handle is closed, then calls
 * done(ud) (may be NULL) on the loop. */
void moor_http_stop(moor_http_t *h, void (*done)(void *ud), void *ud);

#endif
