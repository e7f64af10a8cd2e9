/*
 * server.c -- the MessagePack-RPC TCP server on one libuv loop.
 *
 * Reading: each connection owns a read buffer; bytes are appended, whole
 * frames are cut from its front with a resumable scan (rpc.h), each frame
 * is copied into the allocation of its own request (so it outlives later
 * reads and buffer moves) and dispatched, in order.  The buffer holds at
 * most one partial frame plus one read's worth, except while reading is
 * paused.
 *
 * Writing: replies are encoded into the connection's `out` buffer and
 * handed to uv_write once per loop iteration, from a uv_check callback, so
 * a pipelining client gets many replies per write.  Connections with work
 * (replies to flush, a pause to lift, a drain to finish) sit on the
 * server's dirty list; while it is non-empty a uv_idle handle keeps the
 * poll phase from blocking so that a reply made from a timer goes out in
 * that same iteration.
 *
 * Back-pressure: a connection reads only while it has fewer than
 * max_inflight unanswered requests and fewer than SRV_MAX_PENDING_OUT reply
 * bytes not yet written; otherwise it stops reading and resumes from the
 * check callback once it falls below.  Frames already buffered then wait
 * undispatched, so the inflight count never passes max_inflight.
 *
 * Lifetime: a connection is freed when its reference count drops to zero;
 * references are its two handles (TCP, idle timer) until their close
 * callbacks, each unanswered request, and membership of the dirty list.
 * Once closing, no byte is read or written; answers are just freed.
 *
 * Stop: listening ends and reading stops; each connection closes once all
 * its requests are answered and its replies written (a connection whose
 * client leaves replies unread is closed by a check every SRV_DRAIN_MS);
 * when no connection is left the server closes its own handles and calls
 * done.
 *
 * Threads: everything here runs on the loop thread.
 */
#include "server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

#define SRV_READ_CHUNK ((size_t)64 * 1024)     /* room offered to each read */
#define SRV_KEEP_INBUF ((size_t)1 << 20)       /* an empty buffer above this is freed */
#define SRV_MAX_PENDING_OUT ((size_t)64 << 20) /* unwritten reply bytes before pausing */
#define SRV_DRAIN_MS 5000                      /* stop: wait this long for unread replies */
#define SRV_BACKLOG 511

typedef struct srv_req {
    moor_srv_req_t pub; /* first member: a moor_srv_req_t * is a srv_req_t * */
    char frame[];       /* this request's own copy of its frame */
} srv_req_t;

typedef struct srv_write {
    uv_write_t w;
    moor_srv_conn_t *conn;
    char *data; /* owned; the bytes being written */
    size_t len;
} srv_write_t;

struct moor_srv_conn {
    uv_tcp_t tcp;
    uv_timer_t idle;
    moor_srv_t *srv;
    moor_srv_conn_t *prev, *next; /* srv->conns: every conn not yet freed */
    moor_srv_conn_t *dirty_next;  /* srv->dirty, when `dirty` */
    moor_buf_t in;                /* read, not yet cut into frames */
    moor_rpc_scan_t scan;         /* progress through the frame at in.data */
    moor_buf_t out;               /* replies not yet handed to uv_write */
    size_t writing;               /* bytes in uv_write, not completed */
    unsigned inflight;            /* dispatched, unanswered requests */
    unsigned max_inflight;        /* this connection's limit (default o.max_inflight) */
    unsigned refs;                /* see the file comment; freed at 0 */
    uint64_t last_read;           /* uv_now() of the last read */
    unsigned closing : 1;         /* uv_close called; nothing more goes out */
    unsigned reading : 1;         /* uv_read_start in effect */
    unsigned eof : 1;             /* peer finished sending */
    unsigned dirty : 1;           /* on srv->dirty (holds a reference) */
    unsigned pumping : 1;         /* inside conn_pump (no re-entry) */
    unsigned authed : 2;          /* the node's MOOR_NODE_AUTH_* flags */
    char peer[64];                /* "ip:port" for logs */
};

struct moor_srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_check_t check; /* flushes and services the dirty list */
    uv_idle_t idle;   /* active while the dirty list is non-empty */
    uv_timer_t drain; /* stop: bounds the wait for unread replies */
    moor_srv_opts_t o;
    moor_srv_dispatch_fn fn;
    void *ud;
    int port;
    moor_srv_conn_t *conns; /* every live conn (open or holding requests) */
    moor_srv_conn_t *dirty;
    moor_srv_stats_t st;
    int stopping;  /* moor_srv_stop called */
    int finishing; /* own handles are being closed */
    int handles;   /* own handles not yet closed */
    void (*done)(void *);
    void *done_ud;
};

static void conn_close(moor_srv_conn_t *c, const char *why);
static void conn_mark_dirty(moor_srv_conn_t *c);
static void srv_check_cb(uv_check_t *h);
static void srv_idle_cb(uv_idle_t *h);
static void srv_maybe_finish(moor_srv_t *s);
static void srv_handle_closed(uv_handle_t *h);

void moor_srv_opts_default(moor_srv_opts_t *o)
{
    o->host = "127.0.0.1";
    o->port = 0;
    o->max_frame = ((size_t)16 << 20) + 64 * 1024;
    o->max_conns = 1024;
    o->idle_timeout_ms = 300000;
    o->max_inflight = 128;
}

/* ---- connection lifetime ------------------------------------------------ */

static void conn_unref(moor_srv_conn_t *c)
{
    moor_srv_t *s = c->srv;

    if (--c->refs)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    moor_buf_free(&c->in);
    moor_buf_free(&c->out);
    free(c);
    srv_maybe_finish(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

/* why NULL: an ordinary end (peer left, drained at stop), not logged here. */
static void conn_close(moor_srv_conn_t *c, const char *why)
{
    if (c->closing)
        return;
    if (why)
        moor_log_warn("rpc: closing connection from %s: %s", c->peer, why);
    c->closing = 1;
    c->reading = 0;
    c->srv->st.conns--;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
    moor_buf_free(&c->in);
    moor_buf_free(&c->out);
}

static int conn_drained(const moor_srv_conn_t *c)
{
    return c->inflight == 0 && c->out.len == 0 && c->writing == 0;
}

/* ---- reading and dispatch ------------------------------------------------ */

static int conn_wants_read(const moor_srv_conn_t *c)
{
    const moor_srv_t *s = c->srv;

    return !c->closing && !c->eof && !s->stopping && c->inflight < c->max_inflight &&
           c->writing + c->out.len <= SRV_MAX_PENDING_OUT;
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    moor_srv_conn_t *c = h->data;

    (void)suggested;
    if (c->in.cap - c->in.len < SRV_READ_CHUNK && moor_buf_reserve(&c->in, SRV_READ_CHUNK)) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    buf->base = c->in.data + c->in.len;
    buf->len = c->in.cap - c->in.len;
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_update_reading(moor_srv_conn_t *c)
{
    int want = conn_wants_read(c), rc;

    if (want && !c->reading) {
        if ((rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb))) {
            moor_log_warn("rpc: %s: cannot read: %s", c->peer, uv_strerror(rc));
            conn_close(c, NULL);
            return;
        }
        c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void conn_bad_request(moor_srv_conn_t *c, uint32_t msgid, const char *why)
{
    c->srv->st.bad_frames++;
    if (moor_rpc_encode_error(&c->out, msgid, "BAD_REQUEST", why)) {
        conn_close(c, "out of memory for a reply");
        return;
    }
    conn_mark_dirty(c);
}

/* Copies the frame into a new request, parses and dispatches it. */
static void conn_take_frame(moor_srv_conn_t *c, const char *f, size_t n)
{
    moor_srv_t *s = c->srv;
    srv_req_t *r = malloc(sizeof(*r) + n);
    uint32_t msgid = 0;
    int have = 0;

    if (!r) {
        conn_close(c, "out of memory for a request");
        return;
    }
    memcpy(r->frame, f, n);
    if (moor_rpc_parse(r->frame, n, &r->pub.rpc, &have, &msgid)) {
        const char *why = moor_diag_msg(MOOR_EPROTO);
        free(r);
        if (have) {
            conn_bad_request(c, msgid, why);
        } else {
            s->st.bad_frames++;
            conn_close(c, why);
        }
        return;
    }
    r->pub.conn = c;
    r->pub.app = NULL;
    c->refs++;
    c->inflight++;
    s->st.inflight++;
    s->st.requests++;
    s->fn(s->ud, &r->pub);
}

static void conn_consume(moor_srv_conn_t *c, size_t off)
{
    if (off == 0 || c->closing)
        return;
    memmove(c->in.data, c->in.data + off, c->in.len - off);
    c->in.len -= off;
    if (c->in.len == 0 && c->in.cap > SRV_KEEP_INBUF)
        moor_buf_free(&c->in);
}

/* Dispatches the whole frames buffered, as far as max_inflight allows. */
static void conn_pump(moor_srv_conn_t *c)
{
    moor_srv_t *s = c->srv;
    size_t off = 0;

    if (c->pumping)
        return;
    c->pumping = 1;
    while (!c->closing && !s->stopping && c->inflight < c->max_inflight && off < c->in.len) {
        long n = moor_rpc_scan_frame(&c->scan, c->in.data + off, c->in.len - off, s->o.max_frame);
        if (n == 0)
            break;
        if (n < 0) {
            s->st.bad_frames++;
            conn_close(c, moor_diag_msg((int)n));
            break;
        }
        conn_take_frame(c, c->in.data + off, (size_t)n);
        off += (size_t)n;
    }
    conn_consume(c, off);
    c->pumping = 0;
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    moor_srv_conn_t *c = st->data;

    (void)buf;
    if (nread > 0) {
        c->in.len += (size_t)nread;
        c->last_read = uv_now(c->srv->loop);
        conn_pump(c);
        if (!c->closing)
            conn_update_reading(c);
        return;
    }
    if (nread == 0)
        return; /* EAGAIN */
    if (nread == UV_EOF) {
        /* Half-closed: answer what was asked, then close (conn_service). */
        c->eof = 1;
        conn_update_reading(c);
        conn_mark_dirty(c);
        return;
    }
    if (nread == UV_ENOBUFS)
        conn_close(c, "out of memory for the read buffer");
    else if (nread == UV_ECONNRESET)
        conn_close(c, NULL);
    else
        conn_close(c, uv_strerror((int)nread));
}

/* ---- writing --------------------------------------------------------------- */

static void conn_write_cb(uv_write_t *w, int status)
{
    srv_write_t *wr = w->data;
    moor_srv_conn_t *c = wr->conn;

    c->writing -= wr->len;
    free(wr->data);
    free(wr);
    if (c->closing)
        return;
    if (status < 0) {
        if (status == UV_EPIPE || status == UV_ECONNRESET)
            conn_close(c, NULL);
        else
            conn_close(c, uv_strerror(status));
        return;
    }
    if (!c->reading || c->eof || c->srv->stopping)
        conn_mark_dirty(c); /* a pause may lift, a drain may end */
}

static void conn_flush(moor_srv_conn_t *c)
{
    srv_write_t *wr;
    uv_buf_t b;
    int rc;

    if (c->closing || c->out.len == 0)
        return;
    if (!(wr = malloc(sizeof(*wr)))) {
        conn_close(c, "out of memory for a write");
        return;
    }
    wr->conn = c;
    wr->w.data = wr;
    wr->data = moor_buf_steal(&c->out, &wr->len);
    b.base = wr->data; /* not uv_buf_init: its length is only unsigned int */
    b.len = wr->len;
    if ((rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb))) {
        free(wr->data);
        free(wr);
        conn_close(c, uv_strerror(rc));
        return;
    }
    c->writing += wr->len;
}

/* ---- the dirty list and the per-iteration service --------------------- */

static void conn_mark_dirty(moor_srv_conn_t *c)
{
    moor_srv_t *s = c->srv;

    if (c->dirty || c->closing)
        return;
    c->dirty = 1;
    c->refs++;
    if (!s->dirty && !s->finishing) {
        uv_check_start(&s->check, srv_check_cb);
        uv_idle_start(&s->idle, srv_idle_cb);
    }
    c->dirty_next = s->dirty;
    s->dirty = c;
}

static void conn_service(moor_srv_conn_t *c)
{
    moor_srv_t *s = c->srv;

    if (c->closing)
        return;
    if (conn_wants_read(c) || c->eof)
        conn_pump(c);
    conn_flush(c);
    if (c->closing)
        return;
    conn_update_reading(c);
    if (c->closing)
        return;
    if ((c->eof || s->stopping) && conn_drained(c))
        conn_close(c, NULL);
}

static void srv_check_cb(uv_check_t *h)
{
    moor_srv_t *s = h->data;
    moor_srv_conn_t *list = s->dirty, *c;

    /* Work made while servicing goes on a fresh list: next iteration. */
    s->dirty = NULL;
    while ((c = list)) {
        list = c->dirty_next;
        conn_service(c);
        c->dirty = 0;
        conn_unref(c);
    }
    if (!s->dirty) {
        uv_idle_stop(&s->idle);
        uv_check_stop(&s->check);
    }
}

static void srv_idle_cb(uv_idle_t *h)
{
    (void)h;
}

/* ---- answers ------------------------------------------------------------ */

static void req_finish(srv_req_t *r)
{
    moor_srv_conn_t *c = r->pub.conn;

    c->inflight--;
    c->srv->st.inflight--;
    free(r);
    conn_mark_dirty(c); /* flush, maybe resume reading */
    conn_unref(c);
}

void moor_srv_reply(moor_srv_req_t *req, const char *result, size_t rlen)
{
    moor_srv_conn_t *c = req->conn;
    int rc;

    if (!req->rpc.notify && !c->closing) {
        rc = moor_rpc_encode_result(&c->out, req->rpc.msgid, result, rlen);
        if (rc == MOOR_EINVAL) {
            moor_log_error("rpc: %s: reply to %.*s: %s", c->peer, (int)req->rpc.mlen,
                           req->rpc.method, moor_diag_msg(rc));
            rc = moor_rpc_encode_error(&c->out, req->rpc.msgid, "INTERNAL",
                                       "the server produced an invalid result");
        }
        if (rc)
            conn_close(c, "out of memory for a reply");
    }
    req_finish((srv_req_t *)req);
}

void moor_srv_reply_error(moor_srv_req_t *req, const char *code, const char *msg)
{
    moor_srv_conn_t *c = req->conn;

    if (!req->rpc.notify && !c->closing &&
        moor_rpc_encode_error(&c->out, req->rpc.msgid, code, msg))
        conn_close(c, "out of memory for a reply");
    req_finish((srv_req_t *)req);
}

int moor_srv_conn_authed(const moor_srv_conn_t *c)
{
    return c->authed;
}
void moor_srv_conn_set_authed(moor_srv_conn_t *c, int authed)
{
    c->authed = (unsigned)authed & 3u;
}

void moor_srv_conn_set_max_inflight(moor_srv_conn_t *c, unsigned n)
{
    c->max_inflight = n ? n : c->srv->o.max_inflight;
}

/* ---- accepting ---------------------------------------------------------- */

static void conn_idle_cb(uv_timer_t *t)
{
    moor_srv_conn_t *c = t->data;
    uint64_t now = uv_now(c->srv->loop), limit = c->srv->o.idle_timeout_ms;

    /* A connection waiting for answers or writing is not idle. */
    if (!conn_drained(c))
        c->last_read = now;
    if (now - c->last_read >= limit) {
        moor_log_info("rpc: closing connection from %s: idle for %llu ms", c->peer,
                      (unsigned long long)(now - c->last_read));
        conn_close(c, NULL);
        return;
    }
    uv_timer_start(t, conn_idle_cb, limit - (now - c->last_read), 0);
}

static void peer_name(uv_tcp_t *t, char *out, size_t n)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss), port = 0;
    char ip[INET6_ADDRSTRLEN] = "?";

    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    snprintf(out, n, "%s:%d", ip, port);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Over max_conns: accept (so the client learns at once) and close. */
static void srv_refuse(moor_srv_t *s)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    char peer[64] = "?";

    if (!t)
        return; /* stays in the backlog; retried on the next connection */
    uv_tcp_init(s->loop, t);
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t) == 0)
        peer_name(t, peer, sizeof(peer));
    s->st.refused++;
    moor_log_warn("rpc: refusing connection from %s: %llu connections open (max_conns %u)", peer,
                  (unsigned long long)s->st.conns, s->o.max_conns);
    uv_close((uv_handle_t *)t, free_handle);
}

static void srv_accept(moor_srv_t *s)
{
    moor_srv_conn_t *c = calloc(1, sizeof(*c));
    int rc;

    if (!c) {
        srv_refuse(s);
        return;
    }
    c->srv = s;
    c->max_inflight = s->o.max_inflight;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->idle);
    c->tcp.data = c->idle.data = c;
    c->refs = 2; /* the two handles */
    moor_rpc_scan_init(&c->scan);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->st.conns++;
    s->st.accepted++;
    snprintf(c->peer, sizeof(c->peer), "?");
    if ((rc = uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp))) {
        moor_log_warn("rpc: accept failed: %s", uv_strerror(rc));
        conn_close(c, NULL);
        return;
    }
    peer_name(&c->tcp, c->peer, sizeof(c->peer));
    uv_tcp_nodelay(&c->tcp, 1);
    c->last_read = uv_now(s->loop);
    if (s->o.idle_timeout_ms)
        uv_timer_start(&c->idle, conn_idle_cb, s->o.idle_timeout_ms, 0);
    moor_log_debug("rpc: connection from %s", c->peer);
    conn_update_reading(c);
}

static void srv_connection_cb(uv_stream_t *l, int status)
{
    moor_srv_t *s = l->data;

    if (status < 0) {
        moor_log_warn("rpc: listen error: %s", uv_strerror(status));
        return;
    }
    if (s->stopping)
        return;
    if (s->st.conns >= s->o.max_conns)
        srv_refuse(s);
    else
        srv_accept(s);
}

/* ---- start, stop -------------------------------------------------------- */

/* Binds with plain syscalls first so that a failure leaves no libuv handle
 * to close.  SO_REUSEADDR lets a restarted node rebind at once past
 * TIME_WAIT connections of its previous run. */
static int srv_bind(const moor_srv_opts_t *o, int *fd_out, int *port_out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    const char *host = o->host ? o->host : "127.0.0.1";
    int fd, one = 1, rc;

    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(host, o->port, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(host, o->port, (struct sockaddr_in6 *)&ss))
        return moor_diag(MOOR_EINVAL, "listen address '%s' is not an IPv4 or IPv6 address", host);
    if (o->port < 0 || o->port > 65535)
        return moor_diag(MOOR_EINVAL, "port %d out of range", o->port);
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return moor_diag(-errno, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss,
             ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) ||
        listen(fd, SRV_BACKLOG) || getsockname(fd, (struct sockaddr *)&ss, &sl)) {
        rc = -errno;
        close(fd);
        return moor_diag(rc, "cannot listen on %s:%d: %s", host, o->port, strerror(-rc));
    }
    *port_out = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
    *fd_out = fd;
    return 0;
}

static void srv_fill_opts(moor_srv_opts_t *dst, const moor_srv_opts_t *o)
{
    moor_srv_opts_t def;

    moor_srv_opts_default(&def);
    *dst = *o;
    /* Zero means "default" for limits where zero would make no sense. */
    if (!dst->max_frame)
        dst->max_frame = def.max_frame;
    if (!dst->max_conns)
        dst->max_conns = def.max_conns;
    if (!dst->max_inflight)
        dst->max_inflight = def.max_inflight;
    dst->host = NULL; /* borrowed by start only */
}

int moor_srv_start(uv_loop_t *loop, const moor_srv_opts_t *o, moor_srv_dispatch_fn fn, void *ud,
                   moor_srv_t **out)
{
    moor_srv_t *s;
    int fd = -1, port = 0, rc;

    if ((rc = srv_bind(o, &fd, &port)))
        return rc;
    if (!(s = calloc(1, sizeof(*s)))) {
        close(fd);
        return moor_diag(MOOR_ENOMEM, "out of memory for the server");
    }
    s->loop = loop;
    s->fn = fn;
    s->ud = ud;
    s->port = port;
    srv_fill_opts(&s->o, o);
    uv_tcp_init(loop, &s->listener);
    uv_check_init(loop, &s->check);
    uv_idle_init(loop, &s->idle);
    uv_timer_init(loop, &s->drain);
    s->listener.data = s->check.data = s->idle.data = s->drain.data = s;
    s->handles = 4;
    if ((rc = uv_tcp_open(&s->listener, fd)))
        close(fd); /* not the handle's yet */
    if (rc || (rc = uv_listen((uv_stream_t *)&s->listener, SRV_BACKLOG, srv_connection_cb))) {
        /* The handles exist now: the loop closes them and then frees s. */
        s->stopping = 1;
        uv_close((uv_handle_t *)&s->listener, srv_handle_closed);
        srv_maybe_finish(s);
        return moor_diag(rc, "cannot listen: %s", uv_strerror(rc));
    }
    *out = s;
    return 0;
}

int moor_srv_port(const moor_srv_t *s)
{
    return s->port;
}

void moor_srv_stats(const moor_srv_t *s, moor_srv_stats_t *out)
{
    *out = s->st;
}

static void srv_handle_closed(uv_handle_t *h)
{
    moor_srv_t *s = h->data;

    if (--s->handles)
        return;
    if (s->done)
        s->done(s->done_ud);
    else
        free(s); /* a start that failed after creating its handles */
}

static void srv_maybe_finish(moor_srv_t *s)
{
    if (!s->stopping || s->finishing || s->conns)
        return;
    s->finishing = 1;
    uv_close((uv_handle_t *)&s->check, srv_handle_closed);
    uv_close((uv_handle_t *)&s->idle, srv_handle_closed);
    uv_close((uv_handle_t *)&s->drain, srv_handle_closed);
}

/* Every SRV_DRAIN_MS during stop: a connection with every request answered
 * whose replies still are not written has a client that stopped reading;
 * it must not hold the stop up forever. */
static void srv_drain_cb(uv_timer_t *t)
{
    moor_srv_t *s = t->data;
    moor_srv_conn_t *c, *next;

    for (c = s->conns; c; c = next) {
        next = c->next; /* closing never frees c here: handles close later */
        if (!c->closing && c->inflight == 0 && !conn_drained(c))
            conn_close(c, "replies still unread by the client at stop");
    }
    uv_timer_start(&s->drain, srv_drain_cb, SRV_DRAIN_MS, 0);
}

void moor_srv_stop(moor_srv_t *s, void (*done)(void *ud), void *ud)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->done = done;
    s->done_ud = ud;
    uv_close((uv_handle_t *)&s->listener, srv_handle_closed); /* accept no more */
    for (moor_srv_conn_t *c = s->conns; c; c = c->next)
        conn_mark_dirty(c);
    uv_timer_start(&s->drain, srv_drain_cb, SRV_DRAIN_MS, 0);
    srv_maybe_finish(s);
}

void moor_srv_free(moor_srv_t *s)
{
    free(s);
}
