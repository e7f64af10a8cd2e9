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
 * Back-pressure: a connection's unsent bytes are `out` plus `writing`
 * (handed to uv_write, not completed); the node's total is kept in
 * st.output_bytes, adjusted wherever either changes.  conn_may_dispatch
 * is checked before every frame, not only between reads: fewer than
 * max_inflight unanswered requests, unsent bytes within the soft cap, and
 * no unsent bytes at all while the node's total is over output_total.
 * Reading follows it (conn_wants_read), so frames already buffered wait
 * undispatched and the input buffer stays bounded; the check callback
 * resumes a connection when a write completes or an answer goes out.
 * Every reply is accounted as it is encoded (conn_added_output): past the
 * hard cap the connection is closed; past the total, the client with the
 * most unsent bytes is (srv_shed).
 *
 * Deadlines: one timer per connection, armed for the earliest of the auth
 * deadline, the frame deadline and the idle / write-progress check
 * (conn_timer_cb re-arms it; `timer_due` is when it fires, and a deadline
 * that comes earlier re-arms it sooner).  Write progress is a completed
 * write or a shrunken libuv write queue between two checks, so a slow
 * reader of one big reply is not taken for a stalled one.
 *
 * Lifetime: a connection is freed when its reference count drops to zero;
 * references are its two handles (TCP, timer) until their close
 * callbacks, each unanswered request, membership of the dirty list and a
 * TEST caller.  Once closing, no byte is read or written; answers are
 * just freed.
 *
 * Stop: listening ends and reading stops; each connection closes once all
 * its requests are answered and its replies written (a connection whose
 * client leaves replies unread is closed by a check every SRV_DRAIN_MS);
 * when no connection is left the server closes its own handles and calls
 * done.
 *
 * RESP (opts.proto): the same reading, writing, limits, deadlines and
 * lifetime; commands are cut with moor_resp_scan (c->rscan) and their
 * arguments split into the request's allocation, in front of its copy of
 * the command.  Every request taken sits on the connection's order queue
 * (oq_head..oq_tail) until it is answered and every request before it
 * has been: an early answer is copied aside (`held`, counted as unsent
 * output) and goes into `out` when its turn comes (conn_resp_release).
 * A malformed command becomes a queued error answer and ends the
 * connection, so the error follows the replies before it.  Classes
 * (opts.resp_class) hold a read back while the connection's writes are
 * unanswered (read_wait) and a read-then-write back until nothing is in
 * flight (serial_wait), then nothing after it until it is answered
 * (serial_busy); a command that must wait stays in `in`, uncut.
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
#include "util/limits.h"
#include "util/log.h"

#define SRV_READ_CHUNK ((size_t)64 * 1024) /* room offered to each read */
#define SRV_KEEP_INBUF ((size_t)1 << 20)   /* an empty buffer above this is freed */
#define SRV_DRAIN_MS 5000                  /* stop: wait this long for unread replies */
#define SRV_BACKLOG 511
#define SRV_NOT_ARMED UINT64_MAX

typedef struct srv_req srv_req_t;
struct srv_req {
    moor_srv_req_t pub; /* first member: a moor_srv_req_t * is a srv_req_t * */
    srv_req_t *onext;   /* RESP: the next request in the connection's order */
    char *held;         /* RESP: an answer waiting for earlier ones (owned) */
    size_t hlen;
    unsigned answered : 1; /* RESP: answered (held, or on its way out) */
    unsigned serial : 1;   /* RESP: runs alone (MOOR_SRV_RESP_ALONE) */
    unsigned write : 1;    /* RESP: a write (MOOR_SRV_RESP_WRITE) */
    /* This request's own copy of its frame (RESP: after its argv array). */
    char frame[] __attribute__((aligned(8)));
};

typedef struct srv_write {
    uv_write_t w;
    moor_srv_conn_t *conn;
    char *data; /* owned; the bytes being written */
    size_t len;
} srv_write_t;

struct moor_srv_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the deadlines (conn_timer_cb) */
    moor_srv_t *srv;
    moor_srv_conn_t *prev, *next; /* srv->conns: every conn not yet freed */
    moor_srv_conn_t *dirty_next;  /* srv->dirty, when `dirty` */
    moor_buf_t in;                /* read, not yet cut into frames */
    moor_rpc_scan_t scan;         /* progress through the frame at in.data */
    moor_resp_scan_t rscan;       /* the same, for RESP */
    srv_req_t *oq_head, *oq_tail; /* RESP: unanswered or held requests, in order */
    size_t held;                  /* RESP: bytes of answers held in oq (unsent) */
    unsigned app;                 /* moor_srv_conn_app */
    moor_buf_t out;               /* replies not yet handed to uv_write */
    moor_buf_t *sink;             /* TEST: no socket; "written" bytes land here */
    size_t writing;               /* bytes in uv_write, not completed */
    size_t last_wq;               /* libuv write queue size at the last check */
    unsigned inflight;            /* dispatched, unanswered requests */
    unsigned max_inflight;        /* max_inflight, or peer_inflight once a peer */
    unsigned refs;                /* see the file comment; freed at 0 */
    uint64_t accepted;            /* uv_now() at accept: the auth deadline's start */
    uint64_t last_read;           /* uv_now() of the last read */
    uint64_t frame_start;         /* uv_now() the partial frame began (or reading resumed) */
    uint64_t write_progress;      /* uv_now() of the last write progress (or of output
                                     appearing on an empty connection) */
    uint64_t timer_due;           /* loop time the timer fires; SRV_NOT_ARMED */
    unsigned closing : 1;         /* uv_close called; nothing more goes out */
    unsigned reading : 1;         /* reading (uv_read_start in effect) */
    unsigned eof : 1;             /* peer finished sending */
    unsigned ending : 1;          /* moor_srv_conn_end: closes once drained */
    unsigned dirty : 1;           /* on srv->dirty (holds a reference) */
    unsigned pumping : 1;         /* inside conn_pump (no re-entry) */
    unsigned partial : 1;         /* `in` begins with an incomplete frame */
    unsigned reserved : 1;        /* holds a peer slot */
    unsigned peer : 1;            /* moor_srv_conn_set_peer */
    unsigned must_auth : 1;       /* the auth deadline applies */
    unsigned authed : 2;          /* the application's flags */
    unsigned serial_wait : 1;     /* RESP: a serial command waits for inflight 0 */
    unsigned serial_busy : 1;     /* RESP: a serial command is in flight */
    unsigned read_wait : 1;       /* RESP: a read waits for writes to be answered */
    unsigned writes;              /* RESP: writes dispatched, unanswered */
    char addr[64];                /* "ip:port" for logs */
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
    moor_srv_stats_t st; /* conns, peer_slots, output_bytes: open conns only */
    int stopping;        /* moor_srv_stop called */
    int finishing;       /* own handles are being closed */
    int handles;         /* own handles not yet closed */
    void (*done)(void *);
    void *done_ud;
};

static void conn_close(moor_srv_conn_t *c, const char *why);
static void conn_mark_dirty(moor_srv_conn_t *c);
static void conn_arm(moor_srv_conn_t *c, uint64_t due);
static void srv_check_cb(uv_check_t *h);
static void srv_idle_cb(uv_idle_t *h);
static void srv_maybe_finish(moor_srv_t *s);
static void srv_handle_closed(uv_handle_t *h);

void moor_srv_opts_default(moor_srv_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->max_frame = MOOR_LIMIT_MAX_FRAME;
    o->max_conns = MOOR_LIMIT_MAX_CONNS;
    o->idle_timeout_ms = MOOR_LIMIT_IDLE_TIMEOUT_MS;
    o->auth_timeout_ms = MOOR_LIMIT_AUTH_TIMEOUT_MS;
    o->frame_timeout_ms = MOOR_LIMIT_FRAME_TIMEOUT_MS;
    o->max_inflight = MOOR_LIMIT_MAX_INFLIGHT;
    o->peer_inflight = MOOR_LIMIT_PEER_INFLIGHT;
    o->output_soft = MOOR_LIMIT_OUTPUT_SOFT;
    o->output_hard = MOOR_LIMIT_OUTPUT_HARD;
    o->output_total = MOOR_LIMIT_OUTPUT_TOTAL;
}

/* ---- connection lifetime ------------------------------------------------ */

static size_t conn_unsent(const moor_srv_conn_t *c)
{
    return c->out.len + c->writing + c->held;
}

static size_t conn_soft(const moor_srv_conn_t *c)
{
    return c->srv->o.output_soft * (c->peer ? MOOR_LIMIT_PEER_OUTPUT_FACTOR : 1);
}

static size_t conn_hard(const moor_srv_conn_t *c)
{
    return c->srv->o.output_hard * (c->peer ? MOOR_LIMIT_PEER_OUTPUT_FACTOR : 1);
}

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
    moor_srv_t *s = c->srv;

    if (c->closing)
        return;
    if (why)
        moor_log_warn("rpc: closing connection from %s: %s", c->addr, why);
    c->closing = 1;
    c->reading = 0;
    s->st.conns--;
    if (c->reserved)
        s->st.peer_slots--;
    s->st.output_bytes -= conn_unsent(c); /* write callbacks of a closing conn skip it */
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    moor_buf_free(&c->in);
    moor_buf_free(&c->out);
}

static int conn_drained(const moor_srv_conn_t *c)
{
    return c->inflight == 0 && c->out.len == 0 && c->writing == 0;
}

/* ---- output accounting ---------------------------------------------------- */

/* Past output_total: closes the client connections holding the most unsent
 * bytes until the total is back under it.  Peers are left alone (their
 * own hard cap bounds them); when what peers hold is itself over the
 * total, closing clients could not bring it under, so none is closed and
 * dispatch simply waits (conn_may_dispatch). */
static void srv_shed(moor_srv_t *s)
{
    char why[256];

    while (s->st.output_bytes > s->o.output_total) {
        moor_srv_conn_t *v = NULL;
        uint64_t peers = 0;

        for (moor_srv_conn_t *c = s->conns; c; c = c->next) {
            if (c->closing)
                continue;
            if (c->peer)
                peers += conn_unsent(c);
            else if (conn_unsent(c) > 0 && (!v || conn_unsent(c) > conn_unsent(v)))
                v = c;
        }
        if (!v || peers >= s->o.output_total)
            return;
        snprintf(why, sizeof(why),
                 "it holds %zu bytes of unsent replies, the most of any client, and the "
                 "node's %llu unsent bytes are over limits.output_total_mb (%zu bytes)",
                 conn_unsent(v), (unsigned long long)s->st.output_bytes, s->o.output_total);
        s->st.closed_output++;
        conn_close(v, why);
    }
}

/* n reply bytes were just appended to c->out. */
static void conn_added_output(moor_srv_conn_t *c, size_t n)
{
    moor_srv_t *s = c->srv;
    size_t unsent = conn_unsent(c);
    char why[200];

    s->st.output_bytes += n;
    if (unsent == n)
        c->write_progress = uv_now(s->loop); /* the write clock starts now */
    /* One reply onto an empty output always fits: the hard cap bounds a
     * pile of replies, never the size of one. */
    if (unsent > conn_hard(c) && unsent > n) {
        snprintf(why, sizeof(why),
                 "%zu bytes of replies unsent, over the %s output hard cap of %zu bytes "
                 "(limits.output_hard_mb)",
                 unsent, c->peer ? "peer" : "client", conn_hard(c));
        s->st.closed_output++;
        conn_close(c, why);
        return;
    }
    if (s->st.output_bytes > s->o.output_total)
        srv_shed(s);
}

/* ---- reading and dispatch ------------------------------------------------ */

static int conn_may_dispatch(const moor_srv_conn_t *c)
{
    const moor_srv_t *s = c->srv;
    size_t unsent = conn_unsent(c);

    if (c->closing || c->ending || s->stopping || c->inflight >= c->max_inflight)
        return 0;
    if (c->serial_wait || c->serial_busy || c->read_wait)
        return 0;
    if (unsent > conn_soft(c))
        return 0;
    return unsent == 0 || s->st.output_bytes <= s->o.output_total;
}

static int conn_wants_read(const moor_srv_conn_t *c)
{
    return !c->eof && conn_may_dispatch(c);
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

static void conn_arm_frame(moor_srv_conn_t *c)
{
    if (c->srv->o.frame_timeout_ms)
        conn_arm(c, c->frame_start + c->srv->o.frame_timeout_ms);
}

static void conn_update_reading(moor_srv_conn_t *c)
{
    int want = conn_wants_read(c), rc;

    if (want && !c->reading) {
        if (!c->sink && (rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb))) {
            moor_log_warn("rpc: %s: cannot read: %s", c->addr, uv_strerror(rc));
            conn_close(c, NULL);
            return;
        }
        c->reading = 1;
        if (c->partial) { /* the client could not send while we did not read */
            c->frame_start = uv_now(c->srv->loop);
            conn_arm_frame(c);
        }
    } else if (!want && c->reading) {
        if (!c->sink)
            uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void conn_bad_request(moor_srv_conn_t *c, uint32_t msgid, const char *why)
{
    size_t before = c->out.len;

    c->srv->st.bad_frames++;
    if (moor_rpc_encode_error(&c->out, msgid, "BAD_REQUEST", why)) {
        conn_close(c, "out of memory for a reply");
        return;
    }
    conn_added_output(c, c->out.len - before);
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

static void conn_resp_enqueue(moor_srv_conn_t *c, srv_req_t *r)
{
    moor_srv_t *s = c->srv;

    r->pub.conn = c;
    r->onext = NULL;
    if (c->oq_tail)
        c->oq_tail->onext = r;
    else
        c->oq_head = r;
    c->oq_tail = r;
    c->refs++;
    c->inflight++;
    s->st.inflight++;
}

/* A RESP command that can never be read: answered with the error, in
 * order after what came before it, then the connection ends. */
static void conn_resp_bad(moor_srv_conn_t *c, const char *reason)
{
    srv_req_t *r = calloc(1, sizeof(*r));
    moor_buf_t b = MOOR_BUF_INIT;
    char why[256];

    snprintf(why, sizeof(why), "%s", reason);
    c->srv->st.bad_frames++;
    if (!r || moor_resp_errorf(&b, "ERR %s", why)) {
        free(r);
        conn_close(c, why);
        return;
    }
    conn_resp_enqueue(c, r);
    moor_srv_conn_end(c, why);
    moor_srv_reply_resp(&r->pub, b.data, b.len);
    moor_buf_free(&b);
}

/* Takes one RESP command of argc arguments (0: an empty line, skipped).
 * 1 if taken, 0 if it must wait (opts.resp_class): a command that runs
 * alone while others are in flight, a read while writes are. */
static int conn_take_resp(moor_srv_conn_t *c, const char *f, size_t n, uint32_t argc)
{
    moor_srv_t *s = c->srv;
    size_t av = (size_t)argc * sizeof(moor_resp_arg_t);
    srv_req_t *r;
    int kind = MOOR_SRV_RESP_FREE;

    if (argc == 0)
        return 1;
    if (!(r = malloc(sizeof(*r) + av + n))) {
        conn_close(c, "out of memory for a request");
        return 1;
    }
    memset(r, 0, sizeof(*r));
    memcpy(r->frame + av, f, n);
    r->pub.argv = (moor_resp_arg_t *)(void *)r->frame;
    r->pub.argc = argc;
    moor_resp_split(r->frame + av, n, argc, r->pub.argv, argc); /* cut by the scan: can't fail */
    if (s->o.resp_class)
        kind = s->o.resp_class(s->ud, &r->pub);
    if ((kind == MOOR_SRV_RESP_ALONE && c->inflight) || (kind == MOOR_SRV_RESP_READ && c->writes)) {
        free(r); /* cut again once the others are answered */
        if (kind == MOOR_SRV_RESP_ALONE)
            c->serial_wait = 1; /* req_finish lifts it at inflight 0 */
        else
            c->read_wait = 1; /* req_finish lifts it at writes 0 */
        return 0;
    }
    r->serial = kind == MOOR_SRV_RESP_ALONE;
    r->write = kind == MOOR_SRV_RESP_WRITE;
    c->serial_busy = r->serial;
    c->writes += r->write;
    conn_resp_enqueue(c, r);
    s->st.requests++;
    s->fn(s->ud, &r->pub);
    return 1;
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

/* Whether `in` now begins with a frame that is not complete; the frame
 * deadline runs from the moment one begins. */
static void conn_set_partial(moor_srv_conn_t *c, int partial)
{
    if (partial && !c->partial) {
        c->frame_start = uv_now(c->srv->loop);
        if (c->reading)
            conn_arm_frame(c);
    }
    c->partial = (unsigned)partial;
}

/* Dispatches the whole frames buffered, one at a time while
 * conn_may_dispatch allows (a synchronous answer counts at once). */
static void conn_pump(moor_srv_conn_t *c)
{
    moor_srv_t *s = c->srv;
    size_t off = 0;
    int cut = 0;

    if (c->pumping)
        return;
    c->pumping = 1;
    int resp = s->o.proto == MOOR_SRV_PROTO_RESP;
    moor_resp_limits_t lim = {s->o.max_frame, s->o.max_bulk,
                              s->o.max_frame < MOOR_RESP_MAX_INLINE ? s->o.max_frame
                                                                    : MOOR_RESP_MAX_INLINE,
                              MOOR_RESP_MAX_ARGS};

    while (off < c->in.len && conn_may_dispatch(c)) {
        uint32_t argc = 0;
        long n =
            resp ? moor_resp_scan(&c->rscan, c->in.data + off, c->in.len - off, &lim, &argc)
                 : moor_rpc_scan_frame(&c->scan, c->in.data + off, c->in.len - off, s->o.max_frame);
        if (n == 0) {
            cut = 1;
            break;
        }
        if (n < 0) {
            if (resp) {
                conn_resp_bad(c, moor_diag_msg((int)n));
            } else {
                s->st.bad_frames++;
                conn_close(c, moor_diag_msg((int)n));
            }
            break;
        }
        if (resp) {
            if (!conn_take_resp(c, c->in.data + off, (size_t)n, argc))
                break;
        } else {
            conn_take_frame(c, c->in.data + off, (size_t)n);
        }
        off += (size_t)n;
    }
    conn_consume(c, off);
    if (off)
        c->partial = 0; /* a frame ended here: whatever follows began after it */
    if (!c->closing && (cut || c->in.len == 0))
        conn_set_partial(c, cut);
    c->pumping = 0;
}

static void conn_got_bytes(moor_srv_conn_t *c, size_t n)
{
    c->in.len += n;
    c->last_read = uv_now(c->srv->loop);
    conn_pump(c);
    if (!c->closing)
        conn_update_reading(c);
}

/* Half-closed: answer what was asked, then close (conn_service). */
static void conn_got_eof(moor_srv_conn_t *c)
{
    c->eof = 1;
    conn_update_reading(c);
    conn_mark_dirty(c);
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    moor_srv_conn_t *c = st->data;

    (void)buf;
    if (nread > 0) {
        conn_got_bytes(c, (size_t)nread);
        return;
    }
    if (nread == 0)
        return; /* EAGAIN */
    if (nread == UV_EOF)
        conn_got_eof(c);
    else if (nread == UV_ENOBUFS)
        conn_close(c, "out of memory for the read buffer");
    else if (nread == UV_ECONNRESET)
        conn_close(c, NULL);
    else
        conn_close(c, uv_strerror((int)nread));
}

/* ---- writing --------------------------------------------------------------- */

/* Something was written: a pause may lift, a drain may end. */
static void conn_wrote(moor_srv_conn_t *c)
{
    c->write_progress = uv_now(c->srv->loop);
    if (!c->reading || c->eof || c->ending || c->srv->stopping)
        conn_mark_dirty(c);
}

static void conn_write_cb(uv_write_t *w, int status)
{
    srv_write_t *wr = w->data;
    moor_srv_conn_t *c = wr->conn;

    c->writing -= wr->len;
    if (!c->closing)
        c->srv->st.output_bytes -= wr->len;
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
    c->last_wq = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    conn_wrote(c);
}

/* TEST: the bytes are "written" into the sink at once. */
static void conn_flush_sink(moor_srv_conn_t *c)
{
    if (moor_buf_append(c->sink, c->out.data, c->out.len)) {
        conn_close(c, "out of memory for a write");
        return;
    }
    c->srv->st.output_bytes -= c->out.len;
    c->out.len = 0;
    conn_wrote(c);
}

static void conn_flush(moor_srv_conn_t *c)
{
    srv_write_t *wr;
    uv_buf_t b;
    int rc;

    if (c->closing || c->out.len == 0)
        return;
    if (c->sink) {
        conn_flush_sink(c);
        return;
    }
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
        c->srv->st.output_bytes -= wr->len; /* out is empty now: conn_close cannot see them */
        free(wr->data);
        free(wr);
        conn_close(c, uv_strerror(rc));
        return;
    }
    c->writing += wr->len;
    c->last_wq = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
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
    size_t before, flushed;

    if (c->closing)
        return;
    for (;;) {
        before = c->in.len;
        if (conn_wants_read(c) || c->eof)
            conn_pump(c);
        flushed = c->out.len;
        conn_flush(c);
        if (c->closing)
            return;
        /* TEST: a sink's writes complete at once, with no callback to come
         * back on: go on while frames wait and anything moved. */
        if (!c->sink || !c->in.len || (c->in.len == before && !flushed))
            break;
    }
    conn_update_reading(c);
    if (c->closing)
        return;
    if ((c->eof || c->ending || s->stopping) && conn_drained(c))
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
    if (r->serial)
        c->serial_busy = 0;
    if (r->write && --c->writes == 0)
        c->read_wait = 0;
    if (c->inflight == 0)
        c->serial_wait = 0;
    free(r);
    conn_mark_dirty(c); /* flush, maybe resume reading */
    conn_unref(c);
}

void moor_srv_reply(moor_srv_req_t *req, const char *result, size_t rlen)
{
    moor_srv_conn_t *c = req->conn;
    size_t before = c->out.len;
    int rc;

    if (!req->rpc.notify && !c->closing) {
        rc = moor_rpc_encode_result(&c->out, req->rpc.msgid, result, rlen);
        if (rc == MOOR_EINVAL) {
            moor_log_error("rpc: %s: reply to %.*s: %s", c->addr, (int)req->rpc.mlen,
                           req->rpc.method, moor_diag_msg(rc));
            rc = moor_rpc_encode_error(&c->out, req->rpc.msgid, "INTERNAL",
                                       "the server produced an invalid result");
        }
        if (rc)
            conn_close(c, "out of memory for a reply");
        else
            conn_added_output(c, c->out.len - before);
    }
    req_finish((srv_req_t *)req);
}

void moor_srv_reply_error(moor_srv_req_t *req, const char *code, const char *msg)
{
    moor_srv_conn_t *c = req->conn;
    size_t before = c->out.len;

    if (!req->rpc.notify && !c->closing) {
        if (moor_rpc_encode_error(&c->out, req->rpc.msgid, code, msg))
            conn_close(c, "out of memory for a reply");
        else
            conn_added_output(c, c->out.len - before);
    }
    req_finish((srv_req_t *)req);
}

/* Sends the answers at the head of c's order that are ready, oldest first. */
static void conn_resp_release(moor_srv_conn_t *c)
{
    moor_srv_t *s = c->srv;
    srv_req_t *r;

    c->refs++; /* req_finish may drop what would be the last reference */
    while ((r = c->oq_head) && r->answered) {
        c->oq_head = r->onext;
        if (!c->oq_head)
            c->oq_tail = NULL;
        if (r->held) {
            c->held -= r->hlen;
            if (!c->closing) { /* a closing conn's bytes left the total at close */
                s->st.output_bytes -= r->hlen;
                if (moor_buf_append(&c->out, r->held, r->hlen))
                    conn_close(c, "out of memory for a reply");
                else
                    conn_added_output(c, r->hlen);
            }
            free(r->held);
        }
        req_finish(r);
    }
    conn_unref(c);
}

void moor_srv_reply_resp(moor_srv_req_t *req, const char *data, size_t len)
{
    srv_req_t *r = (srv_req_t *)req;
    moor_srv_conn_t *c = req->conn;

    r->answered = 1;
    if (!c->closing && r != c->oq_head) { /* earlier answers are still due */
        if (!(r->held = malloc(len ? len : 1))) {
            conn_close(c, "out of memory for a reply");
            return;
        }
        memcpy(r->held, data, len);
        r->hlen = len;
        c->held += len;
        conn_added_output(c, len);
        return;
    }
    if (!c->closing) {
        if (moor_buf_append(&c->out, data, len))
            conn_close(c, "out of memory for a reply");
        else
            conn_added_output(c, len);
    }
    conn_resp_release(c);
}

unsigned moor_srv_conn_app(const moor_srv_conn_t *c)
{
    return c->app;
}

void moor_srv_conn_set_app(moor_srv_conn_t *c, unsigned v)
{
    c->app = v;
}

const char *moor_srv_conn_addr(const moor_srv_conn_t *c)
{
    return c->addr;
}

int moor_srv_conn_authed(const moor_srv_conn_t *c)
{
    return c->authed;
}

void moor_srv_conn_set_authed(moor_srv_conn_t *c, int authed)
{
    c->authed = (unsigned)authed & 3u;
    if (c->authed && !c->reserved)
        c->must_auth = 0;
}

void moor_srv_conn_set_peer(moor_srv_conn_t *c)
{
    c->peer = 1;
    c->must_auth = 0;
    c->max_inflight = c->srv->o.peer_inflight;
    conn_mark_dirty(c); /* larger limits: a pause may lift */
}

int moor_srv_conn_reserved(const moor_srv_conn_t *c)
{
    return c->reserved;
}

void moor_srv_conn_end(moor_srv_conn_t *c, const char *why)
{
    if (c->closing || c->ending)
        return;
    if (why)
        moor_log_warn("rpc: ending connection from %s: %s", c->addr, why);
    c->ending = 1;
    conn_update_reading(c);
    conn_mark_dirty(c);
}

/* ---- deadlines ------------------------------------------------------------ */

static void conn_timer_cb(uv_timer_t *t);

/* Makes the timer fire at `due` at the latest. */
static void conn_arm(moor_srv_conn_t *c, uint64_t due)
{
    uint64_t now = uv_now(c->srv->loop);

    if (c->closing || c->timer_due <= due)
        return;
    c->timer_due = due;
    uv_timer_start(&c->timer, conn_timer_cb, due > now ? due - now : 0, 0);
}

static unsigned conn_auth_ms(const moor_srv_conn_t *c)
{
    unsigned ms = c->srv->o.auth_timeout_ms;

    if (!c->must_auth)
        return 0;
    /* A peer slot is never held unauthenticated for good. */
    return ms || !c->reserved ? ms : MOOR_LIMIT_AUTH_TIMEOUT_MS;
}

static void min_due(uint64_t *next, uint64_t due)
{
    if (due < *next)
        *next = due;
}

/* Each check: 1 if it closed c, else 0 with *next lowered to its due. */
static int conn_check_auth(moor_srv_conn_t *c, uint64_t now, uint64_t *next)
{
    unsigned ms = conn_auth_ms(c);
    char why[160];

    if (!ms)
        return 0;
    if (now < c->accepted + ms) {
        min_due(next, c->accepted + ms);
        return 0;
    }
    snprintf(why, sizeof(why), "not authenticated within %u ms (limits.auth_timeout_ms)%s", ms,
             c->reserved ? " on a peer slot" : "");
    c->srv->st.closed_deadline++;
    conn_close(c, why);
    return 1;
}

static int conn_check_frame(moor_srv_conn_t *c, uint64_t now, uint64_t *next)
{
    unsigned ms = c->srv->o.frame_timeout_ms;
    char why[200];

    if (!ms || !c->partial || !c->reading)
        return 0;
    if (now < c->frame_start + ms) {
        min_due(next, c->frame_start + ms);
        return 0;
    }
    snprintf(why, sizeof(why),
             "a frame begun %llu ms ago is still incomplete (%zu bytes of it received; "
             "limits.frame_timeout_ms %u)",
             (unsigned long long)(now - c->frame_start), c->in.len, ms);
    c->srv->st.closed_deadline++;
    conn_close(c, why);
    return 1;
}

/* Unsent replies: closed when no byte of them was written for the idle
 * timeout (progress is sampled every quarter of it).  Else: idle is
 * nothing in flight and nothing read or written. */
static int conn_check_idle(moor_srv_conn_t *c, uint64_t now, uint64_t *next)
{
    uint64_t ms = c->srv->o.idle_timeout_ms, last;
    char why[200];

    if (!ms)
        return 0;
    if (conn_unsent(c)) {
        size_t wq = c->sink ? 0 : uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        if (wq < c->last_wq)
            c->write_progress = now;
        c->last_wq = wq;
        if (now - c->write_progress < ms) {
            min_due(next, c->write_progress + ms);
            min_due(next, now + (ms / 4 ? ms / 4 : 1));
            return 0;
        }
        snprintf(why, sizeof(why),
                 "no reply byte written for %llu ms, %zu bytes unsent (the client does not "
                 "read; limits.idle_timeout_ms)",
                 (unsigned long long)(now - c->write_progress), conn_unsent(c));
        c->srv->st.closed_deadline++;
        conn_close(c, why);
        return 1;
    }
    if (c->inflight) /* waiting for answers is not idle */
        c->last_read = now;
    last = c->last_read > c->write_progress ? c->last_read : c->write_progress;
    if (now - last < ms) {
        min_due(next, last + ms);
        return 0;
    }
    moor_log_info("rpc: closing connection from %s: idle for %llu ms", c->addr,
                  (unsigned long long)(now - last));
    conn_close(c, NULL);
    return 1;
}

static void conn_timer_cb(uv_timer_t *t)
{
    moor_srv_conn_t *c = t->data;
    uint64_t now = uv_now(c->srv->loop), next = SRV_NOT_ARMED;

    c->timer_due = SRV_NOT_ARMED;
    if (c->closing || conn_check_auth(c, now, &next) || conn_check_frame(c, now, &next) ||
        conn_check_idle(c, now, &next))
        return;
    if (next != SRV_NOT_ARMED)
        conn_arm(c, next);
}

/* ---- accepting ---------------------------------------------------------- */

/* "ip:port" into out, the ip alone into ip (IPv4 for a v4-mapped address). */
static void peer_name(uv_tcp_t *t, char *out, size_t n, char *ip, size_t iplen)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss), port = 0;

    snprintf(ip, iplen, "?");
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, iplen);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
            if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
                inet_ntop(AF_INET, a6->sin6_addr.s6_addr + 12, ip, (socklen_t)iplen);
            else
                uv_ip6_name(a6, ip, iplen);
            port = ntohs(a6->sin6_port);
        }
    }
    snprintf(out, n, strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* No memory for a connection: accept (so the client learns at once) and close. */
static void srv_refuse_nomem(moor_srv_t *s)
{
    uv_tcp_t *t = malloc(sizeof(*t));

    if (!t)
        return; /* stays in the backlog; retried on the next connection */
    uv_tcp_init(s->loop, t);
    (void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t);
    s->st.refused++;
    moor_log_warn("rpc: refusing a connection: out of memory");
    uv_close((uv_handle_t *)t, free_handle);
}

static moor_srv_conn_t *conn_new(moor_srv_t *s)
{
    moor_srv_conn_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->srv = s;
    c->max_inflight = s->o.max_inflight;
    c->timer_due = SRV_NOT_ARMED;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->refs = 2; /* the two handles */
    moor_rpc_scan_init(&c->scan);
    moor_resp_scan_init(&c->rscan);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->st.conns++;
    snprintf(c->addr, sizeof(c->addr), "?");
    c->accepted = c->last_read = c->write_progress = uv_now(s->loop);
    return c;
}

/* The first deadlines of a connection just accepted. */
static void conn_start(moor_srv_conn_t *c)
{
    moor_srv_t *s = c->srv;

    c->must_auth = c->reserved || (s->o.require_auth && s->o.auth_timeout_ms);
    if (conn_auth_ms(c))
        conn_arm(c, c->accepted + conn_auth_ms(c));
    if (s->o.idle_timeout_ms)
        conn_arm(c, c->accepted + s->o.idle_timeout_ms);
    s->st.accepted++;
    conn_update_reading(c);
}

/* Client slot, peer slot or refusal for c (which is counted in st.conns). */
static int srv_take_slot(moor_srv_t *s, moor_srv_conn_t *c, const char *ip)
{
    uint64_t clients = s->st.conns - 1 - s->st.peer_slots;
    int ip_ok;

    if (clients < s->o.max_conns)
        return 0;
    ip_ok = !s->o.peer_ip_ok || s->o.peer_ip_ok(s->ud, ip);
    if (s->st.peer_slots < s->o.peer_conns && ip_ok) {
        c->reserved = 1;
        s->st.peer_slots++;
        moor_log_info("rpc: connection from %s takes peer slot %llu of %u (max_conns %u "
                      "reached); closed unless it authenticates as a peer",
                      c->addr, (unsigned long long)s->st.peer_slots, s->o.peer_conns,
                      s->o.max_conns);
        return 0;
    }
    s->st.refused++;
    moor_log_warn("rpc: refusing connection from %s: %llu connections open (max_conns %u%s)",
                  c->addr, (unsigned long long)clients, s->o.max_conns,
                  !s->o.peer_conns ? ""
                  : ip_ok          ? "; every peer slot taken"
                                   : "; peer slots take cluster members only");
    return -1;
}

static void srv_accept(moor_srv_t *s)
{
    moor_srv_conn_t *c = conn_new(s);
    char ip[INET6_ADDRSTRLEN];
    int rc;

    if (!c) {
        srv_refuse_nomem(s);
        return;
    }
    if ((rc = uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp))) {
        moor_log_warn("rpc: accept failed: %s", uv_strerror(rc));
        conn_close(c, NULL);
        return;
    }
    peer_name(&c->tcp, c->addr, sizeof(c->addr), ip, sizeof(ip));
    if (srv_take_slot(s, c, ip)) {
        conn_close(c, NULL); /* accepted, so the client learns at once */
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    moor_log_debug("rpc: connection from %s", c->addr);
    conn_start(c);
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
    if (!dst->peer_inflight)
        dst->peer_inflight = def.peer_inflight;
    if (!dst->output_soft)
        dst->output_soft = def.output_soft;
    if (!dst->output_hard)
        dst->output_hard = def.output_hard;
    if (!dst->output_total)
        dst->output_total = def.output_total;
    if (!dst->max_bulk || dst->max_bulk > dst->max_frame)
        dst->max_bulk = dst->max_frame;
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

void moor_srv_set_limits(moor_srv_t *s, const moor_srv_opts_t *o)
{
    moor_srv_opts_t n;

    srv_fill_opts(&n, o);
    s->o.max_frame = n.max_frame;
    s->o.max_bulk = n.max_bulk;
    s->o.max_conns = n.max_conns;
    s->o.peer_conns = n.peer_conns;
    s->o.idle_timeout_ms = n.idle_timeout_ms;
    s->o.auth_timeout_ms = n.auth_timeout_ms;
    s->o.frame_timeout_ms = n.frame_timeout_ms;
    s->o.max_inflight = n.max_inflight;
    s->o.peer_inflight = n.peer_inflight;
    s->o.output_soft = n.output_soft;
    s->o.output_hard = n.output_hard;
    s->o.output_total = n.output_total;
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

/* ---- TEST hooks ------------------------------------------------------------ */

int moor_srv_test_conn(moor_srv_t *s, moor_buf_t *sink, moor_srv_conn_t **out)
{
    moor_srv_conn_t *c = conn_new(s);

    if (!c)
        return moor_diag(MOOR_ENOMEM, "out of memory for a connection");
    c->sink = sink;
    c->refs++; /* the caller's */
    snprintf(c->addr, sizeof(c->addr), "test");
    conn_start(c);
    *out = c;
    return 0;
}

int moor_srv_test_feed(moor_srv_conn_t *c, const char *p, size_t n)
{
    if (c->closing || !c->reading)
        return 0;
    if (n == 0) {
        conn_got_eof(c);
        return 1;
    }
    if (moor_buf_reserve(&c->in, n)) {
        conn_close(c, "out of memory for the read buffer");
        return 1;
    }
    memcpy(c->in.data + c->in.len, p, n);
    conn_got_bytes(c, n);
    return 1;
}

int moor_srv_test_closed(const moor_srv_conn_t *c)
{
    return c->closing;
}

void moor_srv_test_release(moor_srv_conn_t *c)
{
    conn_close(c, NULL);
    conn_unref(c);
}
