/*
 * http.c -- the metrics and status port: an HTTP/1.1 request parser and a
 * libuv server around it (http.h).
 *
 * The parser looks for the blank line that ends the head (CRLF CRLF, or a
 * bare LF LF, which RFC 9112 lets a server accept) within max_head bytes,
 * then checks the request line and every header line.  Requests never
 * carry a body here, so a Content-Length other than 0 or any
 * Transfer-Encoding is refused (400): a body we did not read would be
 * taken for the next request.
 *
 * The server reads into one buffer per connection, bounded by max_head:
 * when a whole head is there it calls the handler, writes the answer and
 * stops reading until the write is done; bytes already buffered (a
 * pipelined request) are parsed then.  A connection owns its TCP handle
 * and its deadline timer; it is freed in the second close callback.
 *
 * Threads: the loop thread only.
 */
#include "net/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"
#include "util/log.h"

/* ---- the parser ----------------------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A request target's bytes: visible ASCII. */
static int is_vchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static int refuse(moor_http_req_t *req, int status)
{
    req->status = status;
    return MOOR_EPROTO;
}

/* Where the head ends: the byte after its blank line, or 0. */
static size_t head_end(const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (b[i] != '\n')
            continue;
        if (i + 1 < len && b[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && b[i + 1] == '\r' && b[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* One line from *p (before end): its bytes without CR LF. */
static int next_line(const char **p, const char *end, const char **s, size_t *n)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));

    if (!nl)
        return -1;
    *s = *p;
    *n = (size_t)(nl - *p);
    if (*n && (*s)[*n - 1] == '\r')
        (*n)--;
    *p = nl + 1;
    return 0;
}

static int parse_request_line(const char *s, size_t n, moor_http_req_t *req)
{
    const char *sp1 = memchr(s, ' ', n), *sp2, *t, *q;
    size_t mlen, tlen;

    if (!sp1 || sp1 == s)
        return refuse(req, 400);
    mlen = (size_t)(sp1 - s);
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)s[i]))
            return refuse(req, 400);
    t = sp1 + 1;
    sp2 = memchr(t, ' ', (size_t)(s + n - t));
    if (!sp2 || sp2 == t)
        return refuse(req, 400);
    tlen = (size_t)(sp2 - t);
    if (t[0] != '/')
        return refuse(req, 400);
    for (size_t i = 0; i < tlen; i++)
        if (!is_vchar((unsigned char)t[i]))
            return refuse(req, 400);
    /* The version: exactly HTTP/D.D after the second space. */
    if ((size_t)(s + n - (sp2 + 1)) != 8 || memcmp(sp2 + 1, "HTTP/", 5) != 0 || sp2[6] < '0' ||
        sp2[6] > '9' || sp2[7] != '.' || sp2[8] < '0' || sp2[8] > '9')
        return refuse(req, 400);
    if (sp2[6] != '1' || sp2[8] > '1')
        return refuse(req, 505);
    req->minor = sp2[8] - '0';
    if (mlen == 3 && memcmp(s, "GET", 3) == 0)
        req->method = MOOR_HTTP_GET;
    else if (mlen == 4 && memcmp(s, "HEAD", 4) == 0)
        req->method = MOOR_HTTP_HEAD;
    else
        return refuse(req, 405);
    req->path = t;
    q = memchr(t, '?', tlen);
    req->plen = q ? (size_t)(q - t) : tlen;
    req->query = q ? q + 1 : NULL;
    req->qlen = q ? (size_t)(t + tlen - q - 1) : 0;
    return 0;
}

/* Whether the comma-separated list v (n bytes) holds token tok. */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;

    while (i < n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b - a == tl && strncasecmp(v + a, tok, tl) == 0)
            return 1;
        i = j + 1;
    }
    return 0;
}

static int name_is(const char *s, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(s, name, n) == 0;
}

/* One header line: name ":" OWS value OWS.  Tracks what the server needs. */
static int parse_header(const char *s, size_t n, moor_http_req_t *req, int *host, int *conn_close,
                        int *conn_keep)
{
    const char *colon = memchr(s, ':', n), *v, *e;
    size_t nlen;

    if (!colon || colon == s)
        return refuse(req, 400);
    nlen = (size_t)(colon - s);
    for (size_t i = 0; i < nlen; i++)
        if (!is_tchar((unsigned char)s[i]))
            return refuse(req, 400);
    v = colon + 1;
    e = s + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    for (const char *c = v; c < e; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t')
            return refuse(req, 400);
    if (name_is(s, nlen, "host")) {
        if ((*host)++)
            return refuse(req, 400); /* two Host lines: RFC 9112 3.2 */
    } else if (name_is(s, nlen, "connection")) {
        *conn_close |= has_token(v, (size_t)(e - v), "close");
        *conn_keep |= has_token(v, (size_t)(e - v), "keep-alive");
    } else if (name_is(s, nlen, "transfer-encoding")) {
        return refuse(req, 400);
    } else if (name_is(s, nlen, "content-length")) {
        if (e - v < 1)
            return refuse(req, 400);
        for (const char *c = v; c < e; c++)
            if (*c != '0')
                return refuse(req, 400); /* a body we would not read */
    }
    return 0;
}

int moor_http_parse(const char *buf, size_t len, size_t max_head, moor_http_req_t *req,
                    size_t *head_len)
{
    size_t hl = head_end(buf, len < max_head ? len : max_head);
    const char *p = buf, *end, *s;
    size_t n;
    int rc, host = 0, conn_close = 0, conn_keep = 0, nh = 0;

    memset(req, 0, sizeof(*req));
    if (!hl) {
        if (len >= max_head)
            return refuse(req, 431);
        /* A head never starts with a blank line nor holds a NUL: refuse
         * early what can never become one. */
        if (memchr(buf, 0, len))
            return refuse(req, 400);
        return 0;
    }
    end = buf + hl;
    if (memchr(buf, 0, hl))
        return refuse(req, 400);
    if (next_line(&p, end, &s, &n) || n == 0)
        return refuse(req, 400);
    if ((rc = parse_request_line(s, n, req)))
        return rc;
    for (;;) {
        if (next_line(&p, end, &s, &n))
            return refuse(req, 400);
        if (n == 0)
            break;
        if (s[0] == ' ' || s[0] == '\t')
            return refuse(req, 400); /* obsolete line folding */
        if (++nh > MOOR_HTTP_MAX_HEADERS)
            return refuse(req, 431);
        if ((rc = parse_header(s, n, req, &host, &conn_close, &conn_keep)))
            return rc;
    }
    if (req->minor == 1 && !host)
        return refuse(req, 400); /* RFC 9112 3.2: a 1.1 request names its host */
    req->keep_alive = req->minor == 1 ? !conn_close : (conn_keep && !conn_close);
    *head_len = hl;
    return 1;
}

const char *moor_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- the server ----------------------------------------------------------------- */

typedef struct hconn hconn_t;

struct moor_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    moor_http_handler_fn handler;
    void *ud;
    size_t max_head;
    unsigned max_conns, idle_ms;
    hconn_t *conns; /* open connections, a doubly linked list */
    moor_http_stats_t st;
    moor_buf_t body; /* the handler's scratch: one answer at a time */
    int stopping;
    unsigned handles; /* open handles: the listener + two per connection */
    void (*stopped)(void *ud);
    void *stopped_ud;
};

struct hconn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the deadline (http.h) */
    uv_write_t wr;
    moor_http_t *srv;
    hconn_t *prev, *next;
    moor_buf_t in;  /* bytes read, not yet a whole request (<= max_head) */
    moor_buf_t out; /* the answer being written */
    int writing;    /* a write is in flight: reading is paused */
    int closing;
    int close_after; /* close once the answer is written */
    int keep10;      /* an HTTP/1.0 client asked for keep-alive: say yes */
    int open;        /* handles not yet closed: 2, then 1, then freed */
};

static void srv_handle_closed(moor_http_t *h)
{
    if (--h->handles == 0) {
        void (*done)(void *) = h->stopped;
        void *ud = h->stopped_ud;
        moor_buf_free(&h->body);
        free(h);
        if (done)
            done(ud);
    }
}

static void conn_closed(uv_handle_t *hd)
{
    hconn_t *c = hd->data;
    moor_http_t *h = c->srv;

    if (--c->open == 0) { /* the second of the two (libuv's order is not ours) */
        moor_buf_free(&c->in);
        moor_buf_free(&c->out);
        free(c);
    }
    srv_handle_closed(h);
}

static void conn_close(hconn_t *c)
{
    moor_http_t *h = c->srv;

    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->st.conns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void on_deadline(uv_timer_t *t)
{
    hconn_t *c = t->data;

    c->srv->st.timeouts++;
    conn_close(c);
}

static void arm(hconn_t *c)
{
    uv_timer_start(&c->timer, on_deadline, c->srv->idle_ms, 0);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    hconn_t *c = hd->data;
    size_t room = c->srv->max_head + 1 - c->in.len; /* +1: to see it overflow */

    (void)suggested;
    if (moor_buf_reserve(&c->in, room)) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = c->in.data + c->in.len;
    buf->len = room;
}

static void serve_buffered(hconn_t *c);

static void on_written(uv_write_t *w, int status)
{
    hconn_t *c = w->data;

    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0 || c->close_after) {
        conn_close(c);
        return;
    }
    arm(c);
    serve_buffered(c);
}

/* Queues the answer in c->out; reading pauses until it is written. */
static void send_answer(hconn_t *c, int status, const char *ctype, const char *body, size_t blen,
                        int head_only)
{
    char hdr[512];
    int n;
    uv_buf_t b;

    n = snprintf(hdr, sizeof(hdr),
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                 "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s%s\r\n",
                 status, moor_http_reason(status), ctype, blen,
                 status == 405 ? "Allow: GET, HEAD\r\n" : "",
                 c->close_after ? "Connection: close\r\n"
                 : c->keep10    ? "Connection: keep-alive\r\n"
                                : "");
    moor_buf_reset(&c->out);
    if (moor_buf_append(&c->out, hdr, (size_t)n) ||
        (!head_only && blen && moor_buf_append(&c->out, body, blen))) {
        conn_close(c);
        return;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->writing = 1;
    b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->wr.data = c;
    arm(c); /* the client must take the answer in time too */
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
        c->writing = 0;
        conn_close(c);
    }
}

static void send_error(hconn_t *c, int status)
{
    char body[96];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, moor_http_reason(status));

    c->srv->st.bad++;
    c->close_after = 1;
    c->in.len = 0;
    send_answer(c, status, "text/plain; charset=utf-8", body, (size_t)n, 0);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Serves the first request in c->in if it is whole; else reads on. */
static void serve_buffered(hconn_t *c)
{
    moor_http_t *h = c->srv;
    moor_http_req_t req;
    moor_http_resp_t resp;
    size_t hl = 0;
    int rc;

    rc = moor_http_parse(c->in.data, c->in.len, h->max_head, &req, &hl);
    if (rc < 0) {
        send_error(c, req.status);
        return;
    }
    if (rc == 0) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
            conn_close(c);
        return;
    }
    moor_buf_reset(&h->body);
    resp.status = 200;
    resp.ctype = NULL;
    resp.body = &h->body;
    h->handler(h->ud, &req, &resp);
    h->st.requests++;
    c->close_after = !req.keep_alive || h->stopping;
    c->keep10 = req.minor == 0;
    send_answer(c, resp.status, resp.ctype ? resp.ctype : "text/plain; charset=utf-8", h->body.data,
                h->body.len, req.method == MOOR_HTTP_HEAD);
    /* Parsed bytes go; a pipelined request waits for the write. */
    memmove(c->in.data, c->in.data + hl, c->in.len - hl);
    c->in.len -= hl;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hconn_t *c = s->data;

    (void)buf;
    if (nread < 0) { /* EOF, a reset, or no buffer (UV_ENOBUFS) */
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    c->in.len += (size_t)nread;
    uv_read_stop(s);
    serve_buffered(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    moor_http_t *h = ls->data;
    hconn_t *c;

    if (status < 0 || h->stopping)
        return;
    if (!(c = calloc(1, sizeof(*c))))
        return;
    c->srv = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open = 2;
    h->handles += 2;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->st.conns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    h->st.accepted++;
    if (h->st.conns > h->max_conns) {
        h->st.refused++;
        conn_close(c);
        return;
    }
    arm(c);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
        conn_close(c);
}

static void listener_closed(uv_handle_t *hd)
{
    srv_handle_closed(hd->data);
}

int moor_http_start(uv_loop_t *loop, const moor_http_opts_t *o, moor_http_handler_fn handler,
                    void *ud, moor_http_t **out)
{
    moor_http_t *h;
    struct sockaddr_storage ss;
    int rc;

    *out = NULL;
    if (uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&ss))
        return moor_diag(MOOR_EINVAL, "http_listen: '%s' is not a numeric address", o->host);
    if (!(h = calloc(1, sizeof(*h))))
        return moor_diag(MOOR_ENOMEM, "http_listen: out of memory");
    h->loop = loop;
    h->handler = handler;
    h->ud = ud;
    h->max_head = o->max_head ? o->max_head : MOOR_HTTP_MAX_HEAD;
    h->max_conns = o->max_conns ? o->max_conns : MOOR_HTTP_MAX_CONNS;
    h->idle_ms = o->idle_timeout_ms ? o->idle_timeout_ms : MOOR_HTTP_IDLE_MS;
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->handles = 1;
    if ((rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0)) ||
        (rc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection))) {
        rc = moor_diag(rc, "http_listen: cannot listen on %s:%d: %s", o->host, o->port,
                       uv_strerror(rc));
        uv_close((uv_handle_t *)&h->listener, listener_closed);
        return rc;
    }
    *out = h;
    return 0;
}

int moor_http_port(const moor_http_t *h)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len))
        return -1;
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void moor_http_stats(const moor_http_t *h, moor_http_stats_t *out)
{
    *out = h->st;
}

void moor_http_stop(moor_http_t *h, void (*done)(void *ud), void *ud)
{
    h->stopping = 1;
    h->stopped = done;
    h->stopped_ud = ud;
    while (h->conns)
        conn_close(h->conns);
    uv_close((uv_handle_t *)&h->listener, listener_closed);
}
