/*
 * peer.c -- pooled, pipelined MessagePack-RPC connections to the other
 * members of the cluster (the real env.h transport), on one libuv loop.
 *
 * Design: a member (peer_t) has at most one current connection
 * (peer_conn_t).  A request is encoded into its connection's `out` at
 * once, with the connection's next msgid, whether the connection is still
 * connecting or up; `_auth {secret, proto}` is encoded first when the connection
 * is made, so it always leads.  Encoded bytes go to the socket from a
 * uv_prepare that runs before the loop next polls, so every request made
 * in one loop iteration leaves in one write per connection.  Answers are
 * matched through a per-connection hash by msgid.  Each request's deadline
 * is a timer of the pool's own wheel (uvenv.h: O(1) to start and stop,
 * no handle per request); a request is freed right after its reply
 * callback ran.
 *
 * A connection that fails is detached from its member at once (the member
 * may connect again right away) and its requests are answered from a list
 * taken off the connection before any callback runs, so callbacks can make
 * new requests, forget members or close the pool while it happens.  The
 * connection's memory lives until its two handles are closed and it is
 * off the flush list (`refs`), and its input buffer is never freed or
 * moved while frames from it are being handed out.
 *
 * Invariants: a request is in exactly one connection's hash and list from
 * acceptance until it is answered (then `conn` is NULL and it is freed).
 * peer->conn, when set, is CONNECTING or UP, never CLOSING.  `live` counts
 * the prepare handle, the timer wheel and every connection; the pool is
 * freed when it is closing and live is 0, always from a close callback.
 * Threads: the loop thread only.
 */
#include "net/peer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "util/mp.h"
#include "net/rpc.h"
#include "net/uvenv.h"
#include "cluster/coord.h"
#include "util/err.h"
#include "util/limits.h"
#include "util/log.h"

#define PEER_READ_CHUNK ((size_t)64 << 10)
#define PEER_NAME_MAX 64 /* bytes of a member id kept for messages */

enum conn_state { CONN_CONNECTING, CONN_UP, CONN_CLOSING };

typedef struct peer_conn peer_conn_t;
typedef struct peer peer_t;

typedef struct preq {
    uint64_t timer;           /* the deadline: a timer id of the pool's wheel (0: fired) */
    struct preq *prev, *next; /* conn->reqs while in flight */
    struct preq *hnext;       /* conn->buckets chain while in flight */
    peer_conn_t *conn;        /* NULL once answered */
    moor_peer_pool_t *pool;
    uint32_t msgid;
    uint32_t timeout_ms;
    uint64_t t0_ns;           /* uv_hrtime() when sent: the round trip (stats) */
    moor_peer_reply_fn cb;
    void *arg;
} preq_t;

struct peer_conn {
    uv_tcp_t tcp;
    uv_timer_t ctimer; /* connect timeout */
    uv_connect_t creq;
    moor_peer_pool_t *pool;
    peer_t *peer;  /* NULL once detached (CLOSING) */
    int state;     /* enum conn_state */
    unsigned refs; /* 2 handles + 1 while on the flush list */
    int dirty;     /* on pool->dirty */
    peer_conn_t *dirty_next;
    uint32_t next_msgid;
    uint32_t auth_msgid;
    int auth_pending; /* _auth sent, not answered */
    moor_buf_t out;   /* encoded, not yet handed to uv_write */
    moor_buf_t in;    /* read: [in_off, in.len) not yet cut */
    size_t in_off;
    moor_rpc_scan_t scan;
    preq_t *reqs; /* in flight, newest first */
    uint32_t nreqs;
    preq_t **buckets; /* nbuckets (power of two) chains by msgid */
    uint32_t nbuckets;
    char name[PEER_NAME_MAX + 1]; /* member id, for messages */
    char addr[64];                /* "ip:port" connected to */
};

struct peer {
    peer_t *next; /* pool->peers */
    char *id;
    size_t idlen;
    char addr_str[64]; /* as given to set_addr */
    struct sockaddr_storage addr;
    peer_conn_t *conn;    /* current connection or NULL */
    uint64_t down_until;  /* uv_now() before which no connect is tried */
    int last_err;         /* last connect failure, for refusals */
    uint32_t fails;       /* consecutive failed connects */
    moor_peer_stats_t st; /* inflight/connected/down filled on read */
};

typedef struct peer_write {
    uv_write_t w;
    peer_conn_t *conn;
    char *data; /* owned */
} peer_write_t;

struct moor_peer_pool {
    uv_loop_t *loop;
    moor_peer_opts_t o; /* secret/self_addr point at our copies */
    char *secret;       /* NULL: no _auth */
    size_t secret_len;
    struct sockaddr_storage self;
    int have_self;
    peer_t *peers;
    peer_conn_t *dirty; /* connections with bytes to write */
    uv_prepare_t prep;  /* flushes `dirty`; active while non-empty */
    moor_uvenv_t *env;  /* the requests' deadlines */
    moor_clock_if_t clock;
    uint64_t rng; /* backoff jitter (xorshift64*) */
    size_t live;  /* see the file comment */
    int closing;
    void (*done)(void *ud);
    void *done_ud;
};

static void conn_fail(peer_conn_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- pool lifetime -------------------------------------------------------- */

/* Copies at most cap-1 bytes of s into dst as a C string. */
static void copy_text(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void pool_release(moor_peer_pool_t *p)
{
    if (--p->live || !p->closing)
        return;
    void (*done)(void *) = p->done;
    void *ud = p->done_ud;

    free(p->secret);
    free(p);
    if (done)
        done(ud);
}

void moor_peer_opts_default(moor_peer_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->connect_timeout_ms = 2000;
    o->max_pending = MOOR_LIMIT_PEER_INFLIGHT;
    o->backoff_min_ms = 100;
    o->backoff_max_ms = 5000;
    o->seed = 0x6d6f6f72u;
    o->max_frame = MOOR_LIMIT_MAX_FRAME;
    o->max_answer = MOOR_LIMIT_MAX_ANSWER;
}

/* "ip:port" or "[ip6]:port", numeric.  0 or MOOR_EINVAL. */
static int parse_addr(const char *s, struct sockaddr_storage *out)
{
    char host[64];
    const char *colon = s ? strrchr(s, ':') : NULL, *h = s;
    size_t hl;
    char *end;
    unsigned long port;

    if (!colon || colon == s)
        return MOOR_EINVAL;
    hl = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hl < 3 || s[hl - 1] != ']')
            return MOOR_EINVAL;
        h = s + 1, hl -= 2;
    }
    if (hl >= sizeof(host))
        return MOOR_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    port = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port == 0 || port > 65535)
        return MOOR_EINVAL;
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    return MOOR_EINVAL;
}

static void prep_cb(uv_prepare_t *h);

static int pool_fill(moor_peer_pool_t *p, const moor_peer_opts_t *o)
{
    p->o = *o;
    if (!p->o.connect_timeout_ms)
        p->o.connect_timeout_ms = 2000;
    if (!p->o.max_pending)
        p->o.max_pending = MOOR_LIMIT_PEER_INFLIGHT;
    if (!p->o.max_frame)
        p->o.max_frame = MOOR_LIMIT_MAX_FRAME;
    if (!p->o.max_answer)
        p->o.max_answer = MOOR_LIMIT_MAX_ANSWER;
    if (p->o.backoff_max_ms < p->o.backoff_min_ms)
        return moor_diag(MOOR_EINVAL, "peer: backoff_max_ms %u < backoff_min_ms %u",
                         p->o.backoff_max_ms, p->o.backoff_min_ms);
    if (o->self_addr && *o->self_addr) {
        memset(&p->self, 0, sizeof(p->self));
        if (uv_ip4_addr(o->self_addr, 0, (struct sockaddr_in *)&p->self) &&
            uv_ip6_addr(o->self_addr, 0, (struct sockaddr_in6 *)&p->self))
            return moor_diag(MOOR_EINVAL, "peer: self address '%s' is not a numeric IP",
                             o->self_addr);
        p->have_self = 1;
    }
    if (o->secret && *o->secret) {
        p->secret_len = strlen(o->secret);
        if (!(p->secret = strdup(o->secret)))
            return moor_diag(MOOR_ENOMEM, "peer: out of memory");
    }
    p->o.secret = p->secret;
    p->o.self_addr = NULL; /* borrowed by new only */
    p->rng = o->seed ? o->seed : 0x9e3779b97f4a7c15u;
    return 0;
}

int moor_peer_pool_new(uv_loop_t *loop, const moor_peer_opts_t *o, moor_peer_pool_t **out)
{
    moor_peer_pool_t *p = calloc(1, sizeof(*p));
    moor_peer_opts_t def;
    int rc;

    if (!p)
        return moor_diag(MOOR_ENOMEM, "peer: out of memory");
    if (!o) {
        moor_peer_opts_default(&def);
        o = &def;
    }
    if ((rc = pool_fill(p, o)))
        goto fail;
    p->loop = loop;
    if ((rc = moor_uvenv_new(loop, &p->env)))
        goto fail;
    p->clock = moor_uvenv_clock(p->env);
    uv_prepare_init(loop, &p->prep);
    p->prep.data = p;
    p->live = 2; /* the prepare handle and the wheel */
    *out = p;
    return 0;
fail:
    free(p->secret);
    free(p);
    return rc;
}

/* ---- members ---------------------------------------------------------------- */

static peer_t *peer_find(const moor_peer_pool_t *p, const char *id, size_t idlen)
{
    for (peer_t *m = p->peers; m; m = m->next)
        if (m->idlen == idlen && memcmp(m->id, id, idlen) == 0)
            return m;
    return NULL;
}

/* Backoff after the n-th consecutive failure: min << (n-1), capped at max,
 * then "equal jitter" (half fixed, half random) so members that failed
 * together do not retry in lockstep. */
static uint64_t backoff_ms(moor_peer_pool_t *p, uint32_t n)
{
    uint64_t d = p->o.backoff_min_ms, x;

    while (--n && d < p->o.backoff_max_ms)
        d *= 2;
    if (d > p->o.backoff_max_ms)
        d = p->o.backoff_max_ms;
    x = p->rng;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    p->rng = x;
    x *= 0x2545f4914f6cdd1du;
    return d - d / 2 + (d / 2 ? (x >> 11) % (d / 2 + 1) : 0);
}

/* ---- requests ---------------------------------------------------------------- */

static preq_t **bucket_of(peer_conn_t *c, uint32_t msgid)
{
    return &c->buckets[(msgid * 0x9e3779b1u) >> 7 & (c->nbuckets - 1)];
}

static preq_t *conn_find(peer_conn_t *c, uint32_t msgid)
{
    preq_t *r = *bucket_of(c, msgid);

    while (r && r->msgid != msgid)
        r = r->hnext;
    return r;
}

static void conn_link(peer_conn_t *c, preq_t *r)
{
    preq_t **b = bucket_of(c, r->msgid);

    r->hnext = *b;
    *b = r;
    r->prev = NULL;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    r->conn = c;
    c->nreqs++;
}

static void conn_unlink(peer_conn_t *c, preq_t *r)
{
    preq_t **pp = bucket_of(c, r->msgid);

    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->conn = NULL;
    c->nreqs--;
}

/* Answers r (already unlinked) and frees it. */
static void req_finish(preq_t *r, int status, const char *result, size_t rlen)
{
    moor_peer_pool_t *p = r->pool;

    if (r->timer)
        p->clock.timer_stop(p->clock.ud, r->timer);
    r->cb(r->arg, status, result, rlen);
    free(r);
}

static void req_timeout(void *arg)
{
    preq_t *r = arg;
    peer_conn_t *c = r->conn;

    r->timer = 0; /* fired */
    if (c->peer)
        c->peer->st.timeouts++;
    conn_unlink(c, r);
    moor_diag(MOOR_ETIMEDOUT, "peer %s: no answer within %u ms", c->name, r->timeout_ms);
    req_finish(r, MOOR_ETIMEDOUT, NULL, 0);
}

/* ---- connections: lifetime ------------------------------------------------- */

static void conn_unref(peer_conn_t *c)
{
    moor_peer_pool_t *p = c->pool;

    if (--c->refs)
        return;
    moor_buf_free(&c->in);
    moor_buf_free(&c->out);
    free(c->buckets);
    free(c);
    pool_release(p);
}

static void conn_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_mark_dirty(peer_conn_t *c)
{
    moor_peer_pool_t *p = c->pool;

    if (c->dirty || c->state != CONN_UP || !c->out.len)
        return;
    c->dirty = 1;
    c->refs++;
    c->dirty_next = p->dirty;
    p->dirty = c;
    uv_prepare_start(&p->prep, prep_cb);
}

/* Ends the connection: detaches it from its member, closes its handles and
 * answers every request in flight with status (the message, formatted
 * once, is put in moor_diag before each callback).  Idempotent. */
static void conn_fail(peer_conn_t *c, int status, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    preq_t *list, *r;

    if (c->state == CONN_CLOSING)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->state = CONN_CLOSING;
    if (c->peer && c->peer->conn == c)
        c->peer->conn = NULL;
    c->peer = NULL;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->ctimer, conn_handle_closed);
    list = c->reqs;
    c->reqs = NULL;
    c->nreqs = 0;
    memset(c->buckets, 0, c->nbuckets * sizeof(*c->buckets));
    while ((r = list)) {
        list = r->next;
        r->conn = NULL;
        moor_diag(status, "peer %s: %s", c->name, why);
        req_finish(r, status, NULL, 0);
    }
}

/* A connect that did not work: the member is down for a backoff. */
static void conn_connect_failed(peer_conn_t *c, int status, const char *why)
{
    peer_t *m = c->peer;
    moor_peer_pool_t *p = c->pool;
    uint64_t wait = 0;

    if (m) {
        m->fails++;
        m->last_err = status;
        m->st.connect_failures++;
        wait = backoff_ms(p, m->fails);
        m->down_until = uv_now(p->loop) + wait;
        if (m->fails == 1)
            moor_log_warn("peer %s (%s): %s; retrying after %llu ms", c->name, c->addr, why,
                          (unsigned long long)wait);
        else
            moor_log_debug("peer %s (%s): %s (%u in a row); retrying after %llu ms", c->name,
                           c->addr, why, m->fails, (unsigned long long)wait);
    }
    conn_fail(c, status, "%s", why);
}

/* ---- connections: writing ----------------------------------------------------- */

static void write_cb(uv_write_t *w, int status)
{
    peer_write_t *pw = w->data;

    free(pw->data);
    if (status < 0 && status != UV_ECANCELED)
        conn_fail(pw->conn, -ECONNRESET, "write failed: %s", uv_strerror(status));
    free(pw);
}

static void conn_flush(peer_conn_t *c)
{
    peer_write_t *pw;
    uv_buf_t b;
    int rc;

    if (c->state != CONN_UP || !c->out.len)
        return;
    if (!(pw = malloc(sizeof(*pw)))) {
        conn_fail(c, MOOR_ENOMEM, "out of memory for a write");
        return;
    }
    pw->conn = c;
    pw->w.data = pw;
    b.len = c->out.len;
    b.base = pw->data = moor_buf_steal(&c->out, &b.len);
    if ((rc = uv_write(&pw->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb))) {
        free(pw->data);
        free(pw);
        conn_fail(c, -ECONNRESET, "write failed: %s", uv_strerror(rc));
    }
}

static void prep_cb(uv_prepare_t *h)
{
    moor_peer_pool_t *p = h->data;
    peer_conn_t *c;

    while ((c = p->dirty)) {
        p->dirty = c->dirty_next;
        c->dirty = 0;
        conn_flush(c);
        conn_unref(c);
    }
    uv_prepare_stop(&p->prep);
}

/* ---- connections: reading answers -------------------------------------------- */

/* Wrong secret, or a node without one: retrying at once would only be
 * refused again, so it counts as a failed connect (backoff). */
static void conn_auth_answer(peer_conn_t *c, const moor_rpc_answer_t *a)
{
    char why[512];

    c->auth_pending = 0;
    if (!a->is_error) {
        const char *p = a->result, *end = a->result + a->rlen, *k;
        uint32_t n, klen;
        uint64_t proto = 0;
        if (moor_mp_read_map(&p, end, &n) == 0)
            while (n--) {
                if (moor_mp_read_str(&p, end, &k, &klen))
                    break;
                if (klen == 5 && memcmp(k, "proto", 5) == 0) {
                    if (moor_mp_read_uint(&p, end, &proto))
                        break;
                } else if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) {
                    break;
                }
            }
        if (proto == MOOR_PEER_PROTO)
            return;
        snprintf(why, sizeof(why),
                 "answered _auth without {proto = %d} (proto %llu): it speaks another "
                 "node-to-node protocol",
                 MOOR_PEER_PROTO, (unsigned long long)proto);
        conn_connect_failed(c, MOOR_EVERSION, why);
        return;
    }
    snprintf(why, sizeof(why), "refused our cluster secret: %.*s: %.*s", (int)a->clen, a->code,
             (int)(a->mlen > 400 ? 400 : a->mlen), a->msg);
    conn_connect_failed(c, moor_peer_err_code(a->code, a->clen), why);
}

static void conn_take_frame(peer_conn_t *c, const char *f, size_t len)
{
    moor_rpc_answer_t a;
    preq_t *r;
    int rc = moor_rpc_parse_answer(f, len, &a);

    if (rc < 0) {
        conn_fail(c, MOOR_EPROTO, "sent a frame that is not an answer [1, msgid, error, result]");
        return;
    }
    if (rc == 1)
        return; /* a notification: nothing of ours */
    if (c->auth_pending && a.msgid == c->auth_msgid) {
        conn_auth_answer(c, &a);
        return;
    }
    if (!(r = conn_find(c, a.msgid))) {
        c->peer->st.late++; /* timed out before (or never ours): dropped */
        return;
    }
    conn_unlink(c, r);
    c->peer->st.replies++;
    c->peer->st.latency_us += (uv_hrtime() - r->t0_ns) / 1000;
    if (!a.is_error) {
        req_finish(r, 0, a.result, a.rlen);
        return;
    }
    c->peer->st.errors++;
    rc = moor_peer_err_code(a.code, a.clen);
    moor_diag(rc, "peer %s: %.*s: %.*s", c->name, (int)(a.clen > 64 ? 64 : a.clen), a.code,
              (int)(a.mlen > 400 ? 400 : a.mlen), a.msg);
    req_finish(r, rc, NULL, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    peer_conn_t *c = h->data;

    (void)suggested;
    if (c->in.cap - c->in.len < PEER_READ_CHUNK && moor_buf_reserve(&c->in, PEER_READ_CHUNK)) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    buf->base = c->in.data + c->in.len;
    buf->len = c->in.cap - c->in.len;
}

/* Cuts and handles every whole frame; stops when a callback ended the
 * connection (the buffer stays put until the connection is freed). */
static void conn_take_input(peer_conn_t *c)
{
    long n;

    while (c->state == CONN_UP) {
        n = moor_rpc_scan_frame(&c->scan, c->in.data + c->in_off, c->in.len - c->in_off,
                                c->pool->o.max_answer);
        if (n == 0)
            break;
        if (n < 0) {
            conn_fail(c, (int)n, "sent a bad frame: %s", moor_strerror((int)n));
            return;
        }
        c->in_off += (size_t)n;
        conn_take_frame(c, c->in.data + c->in_off - n, (size_t)n);
    }
    if (c->state == CONN_UP && c->in_off) {
        memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    peer_conn_t *c = st->data;

    (void)buf;
    if (c->state != CONN_UP)
        return;
    if (nread == UV_EOF) {
        conn_fail(c, -ECONNRESET, "closed the connection");
        return;
    }
    if (nread < 0) {
        conn_fail(c, -ECONNRESET, "connection lost: %s", uv_strerror((int)nread));
        return;
    }
    c->in.len += (size_t)nread;
    conn_take_input(c);
}

/* ---- connections: opening ------------------------------------------------------ */

static void connect_timeout_cb(uv_timer_t *t)
{
    peer_conn_t *c = t->data;
    char why[96];

    snprintf(why, sizeof(why), "connect timed out after %u ms", c->pool->o.connect_timeout_ms);
    conn_connect_failed(c, MOOR_ETIMEDOUT, why);
}

static void connect_cb(uv_connect_t *cr, int status)
{
    peer_conn_t *c = cr->data;
    peer_t *m = c->peer;
    char why[128];
    int rc;

    if (c->state != CONN_CONNECTING) /* closed meanwhile: ECANCELED */
        return;
    uv_timer_stop(&c->ctimer);
    if (status < 0) {
        snprintf(why, sizeof(why), "cannot connect: %s", uv_strerror(status));
        conn_connect_failed(c, status, why);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if ((rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb))) {
        snprintf(why, sizeof(why), "cannot read: %s", uv_strerror(rc));
        conn_connect_failed(c, rc, why);
        return;
    }
    c->state = CONN_UP;
    m->fails = 0;
    m->down_until = 0;
    if (m->st.connects++)
        m->st.reconnects++;
    moor_log_debug("peer %s: connected to %s", c->name, c->addr);
    conn_mark_dirty(c);
}

/* Encodes _auth {secret, proto} as the connection's first request. */
static int conn_encode_auth(peer_conn_t *c)
{
    moor_peer_pool_t *p = c->pool;
    moor_buf_t params = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, &params);
    if (msgpack_pack_map(&pk, 2) || msgpack_pack_str_with_body(&pk, "secret", 6) ||
        msgpack_pack_str_with_body(&pk, p->secret, p->secret_len) ||
        msgpack_pack_str_with_body(&pk, "proto", 5) || msgpack_pack_uint32(&pk, MOOR_PEER_PROTO)) {
        moor_buf_free(&params);
        return moor_diag(MOOR_ENOMEM, "peer: out of memory");
    }
    c->auth_msgid = c->next_msgid++;
    rc = moor_rpc_encode_request(&c->out, c->auth_msgid, "_auth", params.data, params.len, 1);
    moor_buf_free(&params);
    if (rc)
        return moor_diag(rc, "peer: out of memory");
    c->auth_pending = 1;
    return 0;
}

static peer_conn_t *conn_alloc(moor_peer_pool_t *p, peer_t *m)
{
    peer_conn_t *c = calloc(1, sizeof(*c));
    uint32_t nb = 16;

    while (nb < p->o.max_pending && nb < 4096)
        nb *= 2;
    if (!c || !(c->buckets = calloc(nb, sizeof(*c->buckets)))) {
        free(c);
        return NULL;
    }
    c->nbuckets = nb;
    c->pool = p;
    c->peer = m;
    c->state = CONN_CONNECTING;
    moor_rpc_scan_init(&c->scan);
    copy_text(c->name, sizeof(c->name), m->id, m->idlen);
    copy_text(c->addr, sizeof(c->addr), m->addr_str, strlen(m->addr_str));
    return c;
}

/* Starts a connection to m; 0 (m->conn set) or an error (nothing left). */
static int conn_open(moor_peer_pool_t *p, peer_t *m)
{
    peer_conn_t *c = conn_alloc(p, m);
    int rc;

    if (!c)
        return moor_diag(MOOR_ENOMEM, "peer: out of memory");
    if (p->secret && (rc = conn_encode_auth(c))) {
        moor_buf_free(&c->out);
        free(c->buckets);
        free(c);
        return rc;
    }
    uv_tcp_init(p->loop, &c->tcp);
    uv_timer_init(p->loop, &c->ctimer);
    c->tcp.data = c->ctimer.data = c->creq.data = c;
    c->refs = 2;
    p->live++;
    m->conn = c;
    if ((p->have_self && (rc = uv_tcp_bind(&c->tcp, (struct sockaddr *)&p->self, 0))) ||
        (rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&m->addr, connect_cb))) {
        char why[128];

        snprintf(why, sizeof(why), "cannot connect: %s", uv_strerror(rc));
        conn_connect_failed(c, rc, why);
        return moor_diag(rc, "peer %s (%s): %s", c->name, c->addr, why);
    }
    uv_timer_start(&c->ctimer, connect_timeout_cb, p->o.connect_timeout_ms, 0);
    return 0;
}

/* ---- API -------------------------------------------------------------------- */

/* The member's connection, opened when needed: 0 or a refusal. */
static int peer_ready(moor_peer_pool_t *p, peer_t *m)
{
    uint64_t now;

    if (m->conn)
        return 0;
    now = uv_now(p->loop);
    if (now < m->down_until) {
        m->st.rejected++;
        return moor_diag(m->last_err, "peer %.*s (%s) is down (%s); next try in %llu ms",
                         (int)(m->idlen > PEER_NAME_MAX ? PEER_NAME_MAX : m->idlen), m->id,
                         m->addr_str, moor_strerror(m->last_err),
                         (unsigned long long)(m->down_until - now));
    }
    return conn_open(p, m);
}

static uint32_t conn_next_msgid(peer_conn_t *c)
{
    uint32_t id = c->next_msgid++;

    while ((c->auth_pending && id == c->auth_msgid) || conn_find(c, id))
        id = c->next_msgid++; /* only after 2^32 requests on one connection */
    return id;
}

int moor_peer_pool_request(moor_peer_pool_t *p, const char *to, size_t tolen, const char *method,
                           const char *params, size_t plen, uint32_t nparams, uint32_t timeout_ms,
                           moor_peer_reply_fn cb, void *arg)
{
    peer_t *m;
    peer_conn_t *c;
    preq_t *r;
    int rc;

    if (p->closing)
        return moor_diag(MOOR_ECLOSED, "peer: the pool is closed");
    if (!method || !*method || !cb || (plen && !params))
        return moor_diag(MOOR_EINVAL, "peer: request needs a method and a callback");
    /* The peer would close the connection on a frame over its limit, and
     * with it every request in flight there: refuse this one alone.
     * (Members share limits.max_frame; this pool's is the node's.) */
    if (p->o.max_frame < 64 + strlen(method) || plen > p->o.max_frame - 64 - strlen(method))
        return moor_diag(MOOR_ETOOLARGE,
                         "peer: a %zu-byte %s request is over the %zu-byte frame "
                         "limit",
                         plen, method, p->o.max_frame);
    if (!(m = peer_find(p, to, tolen)))
        return moor_diag(MOOR_ENOTFOUND, "peer: no address known for member '%.*s'",
                         (int)(tolen > PEER_NAME_MAX ? PEER_NAME_MAX : tolen), to);
    if ((rc = peer_ready(p, m)))
        return rc;
    c = m->conn;
    if (c->nreqs >= p->o.max_pending) {
        m->st.rejected++;
        return moor_diag(MOOR_EAGAIN, "peer %s: %u requests in flight (max_pending)", c->name,
                         c->nreqs);
    }
    if (!(r = calloc(1, sizeof(*r))))
        return moor_diag(MOOR_ENOMEM, "peer: out of memory");
    r->pool = p;
    r->cb = cb;
    r->arg = arg;
    r->timeout_ms = timeout_ms ? timeout_ms : 1;
    r->t0_ns = uv_hrtime();
    if (!(r->timer = p->clock.timer_start(p->clock.ud, r->timeout_ms, req_timeout, r))) {
        free(r);
        return moor_diag(MOOR_ENOMEM, "peer: out of memory");
    }
    r->msgid = conn_next_msgid(c);
    if (moor_rpc_encode_request(&c->out, r->msgid, method, params, plen, nparams)) {
        p->clock.timer_stop(p->clock.ud, r->timer);
        free(r);
        return moor_diag(MOOR_ENOMEM, "peer: out of memory");
    }
    conn_link(c, r);
    m->st.requests++;
    conn_mark_dirty(c);
    return 0;
}

static int transport_request(void *ud, const char *to, size_t tolen, const char *method,
                             const char *params, size_t plen, uint32_t nparams, uint32_t timeout_ms,
                             moor_peer_reply_fn cb, void *arg)
{
    return moor_peer_pool_request(ud, to, tolen, method, params, plen, nparams, timeout_ms, cb,
                                  arg);
}

moor_transport_if_t moor_peer_pool_transport(moor_peer_pool_t *p)
{
    moor_transport_if_t t = {p, transport_request};
    return t;
}

int moor_peer_pool_set_addr(moor_peer_pool_t *p, const char *id, size_t idlen, const char *addr)
{
    struct sockaddr_storage ss;
    peer_conn_t *old = NULL;
    peer_t *m;

    if (p->closing)
        return moor_diag(MOOR_ECLOSED, "peer: the pool is closed");
    if (!id || !idlen)
        return moor_diag(MOOR_EINVAL, "peer: empty member id");
    if (!addr || strlen(addr) >= sizeof(m->addr_str) || parse_addr(addr, &ss))
        return moor_diag(MOOR_EINVAL, "peer: address '%s' is not ip:port or [ip6]:port",
                         addr ? addr : "(null)");
    if ((m = peer_find(p, id, idlen))) {
        if (strcmp(m->addr_str, addr) == 0)
            return 0;
        old = m->conn;
        m->conn = NULL; /* failed below, once m is consistent again */
    } else {
        if (!(m = calloc(1, sizeof(*m))) || !(m->id = malloc(idlen))) {
            free(m);
            return moor_diag(MOOR_ENOMEM, "peer: out of memory");
        }
        memcpy(m->id, id, idlen);
        m->idlen = idlen;
        m->next = p->peers;
        p->peers = m;
    }
    strcpy(m->addr_str, addr);
    m->addr = ss;
    m->fails = 0;
    m->down_until = 0;
    /* Last: its callbacks may forget m or move it again. */
    if (old)
        conn_fail(old, -ECONNRESET, "member moved to %s", addr);
    return 0;
}

int moor_peer_pool_forget(moor_peer_pool_t *p, const char *id, size_t idlen)
{
    peer_t **pp, *m;

    if (p->closing)
        return moor_diag(MOOR_ECLOSED, "peer: the pool is closed");
    for (pp = &p->peers; (m = *pp); pp = &m->next)
        if (m->idlen == idlen && memcmp(m->id, id, idlen) == 0)
            break;
    if (!m)
        return moor_diag(MOOR_ENOTFOUND, "peer: no member '%.*s'",
                         (int)(idlen > PEER_NAME_MAX ? PEER_NAME_MAX : idlen), id);
    *pp = m->next; /* unlinked first: callbacks below cannot reach it */
    if (m->conn)
        conn_fail(m->conn, -ECONNRESET, "member forgotten");
    free(m->id);
    free(m);
    return 0;
}

int moor_peer_pool_stats(const moor_peer_pool_t *p, const char *id, size_t idlen,
                         moor_peer_stats_t *out)
{
    const peer_t *m = peer_find(p, id, idlen);

    if (!m)
        return MOOR_ENOTFOUND;
    *out = m->st;
    out->connected = m->conn && m->conn->state == CONN_UP;
    out->down = !m->conn && uv_now(p->loop) < m->down_until;
    out->inflight = m->conn ? m->conn->nreqs : 0;
    return 0;
}

int moor_peer_err_code(const char *code, size_t n)
{
    return moor_err_from_wire(code, n);
}

static void prep_closed(uv_handle_t *h)
{
    pool_release(h->data);
}

static void env_closed(void *ud)
{
    pool_release(ud);
}

void moor_peer_pool_close(moor_peer_pool_t *p, void (*done)(void *ud), void *ud)
{
    peer_t *m;

    peer_conn_t *c;

    p->closing = 1;
    p->done = done;
    p->done_ud = ud;
    while ((c = p->dirty)) { /* nothing more is written */
        p->dirty = c->dirty_next;
        c->dirty = 0;
        conn_unref(c);
    }
    /* Requests made from these callbacks are refused (closing), and
     * forget/set_addr too, so the member list stays as it is. */
    for (m = p->peers; m; m = m->next)
        if (m->conn)
            conn_fail(m->conn, MOOR_ECLOSED, "the pool is closing");
    while ((m = p->peers)) {
        p->peers = m->next;
        free(m->id);
        free(m);
    }
    uv_close((uv_handle_t *)&p->prep, prep_closed);
    moor_uvenv_close(p->env, env_closed, p); /* every request is answered by now */
}
