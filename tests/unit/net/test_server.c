/*
 * test_server.c -- the RPC server on a real loop (its own thread) on
 * 127.0.0.1, port 0, driven by plain blocking sockets from the test thread.
 *
 * The test dispatcher (loop thread only) knows these methods:
 *   echo a b ...     replies [a, b, ...]
 *   delay ms a ...   replies [ms, a, ...] from a uv_timer ms later
 *   hold ...         kept unanswered while `holding` (back-pressure)
 *   holdbig n        kept like hold; answered with a bin of n bytes
 *   big n            replies a bin of n bytes at once
 *   release          answers every held request, stops holding; replies n
 *   auth             marks the connection authenticated; replies true
 *   peer             makes the connection a peer (set_peer); replies true
 *   bye              ends the connection (moor_srv_conn_end); replies true
 *   stats            replies [inflight, requests, conns, refused, bad_frames,
 *                    held, max inflight seen by a hold dispatch, peer_slots,
 *                    output_bytes, closed_output, closed_deadline]
 * Control goes through the RPC itself, so no state is shared across threads
 * except what the harness reads after the loop thread has been joined.
 * Every socket has a receive timeout and every wait a bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "util/mp.h"
#include "net/rpc.h"
#include "net/server.h"
#include "util/err.h"
#include "testutil.h"

#define IO_TIMEOUT_MS 5000
#define JOIN_TIMEOUT_S 15
#define MAX_HELD 1024

/* ---- the server side (loop thread) ------------------------------------- */

typedef struct fx {
    uv_loop_t loop;
    moor_srv_t *srv;
    uv_async_t stop_async;
    pthread_t th;
    int port;
    /* dispatcher state: loop thread only until joined */
    int holding;
    moor_srv_req_t *held[MAX_HELD];
    int nheld;
    uint64_t max_inflight_seen;
    int done_called;
    uint64_t replies_at_done; /* requests answered when done ran */
    uint64_t answered;
    int peer_ip_allowed; /* what peer_ip_ok answers */
    char peer_ip_seen[64];
} fx_t;

#define ST_N 11 /* values of the stats method */

typedef struct delay {
    uv_timer_t t;
    moor_srv_req_t *req;
    fx_t *fx;
} delay_t;

static int method_is(const moor_srv_req_t *r, const char *m)
{
    return r->rpc.mlen == strlen(m) && memcmp(r->rpc.method, m, r->rpc.mlen) == 0;
}

/* Replies with the params as an array. */
static void reply_params(fx_t *f, moor_srv_req_t *req)
{
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, &b);
    msgpack_pack_array(&pk, req->rpc.nparams);
    moor_buf_append(&b, req->rpc.params, req->rpc.plen);
    f->answered++;
    moor_srv_reply(req, b.data, b.len);
    moor_buf_free(&b);
}

static void delay_closed(uv_handle_t *h)
{
    free(h->data);
}

static void delay_fire(uv_timer_t *t)
{
    delay_t *d = t->data;

    reply_params(d->fx, d->req);
    uv_close((uv_handle_t *)&d->t, delay_closed);
}

static void do_delay(fx_t *f, moor_srv_req_t *req)
{
    const char *p = req->rpc.params;
    uint64_t ms = 0;
    delay_t *d = malloc(sizeof(*d));

    moor_mp_read_uint(&p, p + req->rpc.plen, &ms);
    d->req = req;
    d->fx = f;
    d->t.data = d;
    uv_timer_init(&f->loop, &d->t);
    uv_timer_start(&d->t, delay_fire, ms, 0);
}

/* Replies with a bin of the size in the first param. */
static void reply_big(fx_t *f, moor_srv_req_t *req)
{
    const char *p = req->rpc.params;
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    uint64_t n = 0;

    moor_mp_read_uint(&p, p + req->rpc.plen, &n);
    moor_mp_packer_init(&pk, &b);
    msgpack_pack_bin(&pk, (size_t)n);
    moor_buf_reserve(&b, (size_t)n);
    memset(b.data + b.len, 'r', (size_t)n);
    b.len += (size_t)n;
    f->answered++;
    moor_srv_reply(req, b.data, b.len);
    moor_buf_free(&b);
}

static void release_all(fx_t *f)
{
    f->holding = 0;
    for (int i = 0; i < f->nheld; i++) {
        if (method_is(f->held[i], "holdbig"))
            reply_big(f, f->held[i]);
        else
            reply_params(f, f->held[i]);
    }
    f->nheld = 0;
}

static void do_stats(fx_t *f, moor_srv_req_t *req)
{
    moor_srv_stats_t st;
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_srv_stats(f->srv, &st);
    moor_mp_packer_init(&pk, &b);
    msgpack_pack_array(&pk, ST_N);
    msgpack_pack_uint64(&pk, st.inflight);
    msgpack_pack_uint64(&pk, st.requests);
    msgpack_pack_uint64(&pk, st.conns);
    msgpack_pack_uint64(&pk, st.refused);
    msgpack_pack_uint64(&pk, st.bad_frames);
    msgpack_pack_uint64(&pk, (uint64_t)f->nheld);
    msgpack_pack_uint64(&pk, f->max_inflight_seen);
    msgpack_pack_uint64(&pk, st.peer_slots);
    msgpack_pack_uint64(&pk, st.output_bytes);
    msgpack_pack_uint64(&pk, st.closed_output);
    msgpack_pack_uint64(&pk, st.closed_deadline);
    f->answered++;
    moor_srv_reply(req, b.data, b.len);
    moor_buf_free(&b);
}

static void dispatch(void *ud, moor_srv_req_t *req)
{
    fx_t *f = ud;

    if (method_is(req, "echo")) {
        reply_params(f, req);
    } else if (method_is(req, "delay")) {
        do_delay(f, req);
    } else if (method_is(req, "big")) {
        reply_big(f, req);
    } else if (method_is(req, "auth") || method_is(req, "peer") || method_is(req, "bye")) {
        if (method_is(req, "auth"))
            moor_srv_conn_set_authed(req->conn, 1);
        else if (method_is(req, "peer"))
            moor_srv_conn_set_peer(req->conn);
        else
            moor_srv_conn_end(req->conn, "the client said bye");
        f->answered++;
        moor_srv_reply(req, "\xc3", 1);
    } else if (method_is(req, "holdbig") && f->holding && f->nheld < MAX_HELD) {
        f->held[f->nheld++] = req;
    } else if (method_is(req, "hold")) {
        moor_srv_stats_t st;
        moor_srv_stats(f->srv, &st);
        if (st.inflight > f->max_inflight_seen)
            f->max_inflight_seen = st.inflight;
        if (f->holding && f->nheld < MAX_HELD)
            f->held[f->nheld++] = req;
        else
            reply_params(f, req);
    } else if (method_is(req, "release")) {
        char one[9];
        int n = f->nheld;
        release_all(f);
        one[0] = (char)0xce; /* uint32 */
        one[1] = 0, one[2] = 0, one[3] = (char)(n >> 8), one[4] = (char)n;
        f->answered++;
        moor_srv_reply(req, one, 5);
    } else if (method_is(req, "stats")) {
        do_stats(f, req);
    } else {
        f->answered++;
        moor_srv_reply_error(req, "NO_METHOD", "unknown method");
    }
}

static void on_done(void *ud)
{
    fx_t *f = ud;

    f->done_called = 1;
    f->replies_at_done = f->answered;
}

static void stop_cb(uv_async_t *a)
{
    fx_t *f = a->data;

    release_all(f);
    moor_srv_stop(f->srv, on_done, f);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    fx_t *f = arg;

    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int peer_ip_ok(void *ud, const char *ip)
{
    fx_t *f = ud;

    snprintf(f->peer_ip_seen, sizeof(f->peer_ip_seen), "%s", ip);
    return f->peer_ip_allowed;
}

/* peer_ip_ok in o is replaced by the fixture's (answering peer_ip_allowed). */
static fx_t *fx_start_ip(const moor_srv_opts_t *o, int peer_ip_allowed)
{
    fx_t *f = calloc(1, sizeof(*f));
    moor_srv_opts_t oo = *o;

    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->holding = 1;
    f->peer_ip_allowed = peer_ip_allowed;
    oo.peer_ip_ok = peer_ip_ok;
    o = &oo;
    assert_int_equal(moor_srv_start(&f->loop, o, dispatch, f, &f->srv), 0);
    f->port = moor_srv_port(f->srv);
    assert_true(f->port > 0);
    uv_async_init(&f->loop, &f->stop_async, stop_cb);
    f->stop_async.data = f;
    assert_int_equal(pthread_create(&f->th, NULL, loop_main, f), 0);
    return f;
}

static fx_t *fx_start(const moor_srv_opts_t *o)
{
    return fx_start_ip(o, 1);
}

/* Stops the server from its loop and joins the thread (bounded). */
static void fx_stop(fx_t *f)
{
    struct timespec ts;

    uv_async_send(&f->stop_async);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += JOIN_TIMEOUT_S;
    if (pthread_timedjoin_np(f->th, NULL, &ts) != 0) {
        fprintf(stderr, "server loop did not finish within %d s\n", JOIN_TIMEOUT_S);
        abort(); /* cannot free a running loop */
    }
    assert_int_equal(f->done_called, 1);
    moor_srv_free(f->srv);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

static void opts(moor_srv_opts_t *o)
{
    moor_srv_opts_default(o);
    o->host = "127.0.0.1";
    o->port = 0;
}

/* ---- the client side (test thread, blocking sockets) ------------------- */

typedef struct cl {
    int fd;
    moor_buf_t in;
    size_t last; /* bytes of the frame returned by the last cl_recv */
} cl_t;

typedef struct resp {
    uint32_t msgid;
    char code[64];   /* "" on success */
    const char *res; /* into the client's buffer, valid until the next read */
    size_t rlen;
} resp_t;

/* rcvbuf > 0 caps the kernel's receive buffer (set before connecting). */
static void cl_connect_rcvbuf(cl_t *c, int port, int rcvbuf)
{
    struct sockaddr_in a = {0};
    struct timeval tv = {IO_TIMEOUT_MS / 1000, 0};
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    moor_buf_init(&c->in);
    c->last = 0;
}

static void cl_connect(cl_t *c, int port)
{
    cl_connect_rcvbuf(c, port, 0);
}

static void cl_close(cl_t *c)
{
    close(c->fd);
    moor_buf_free(&c->in);
}

/* 0, or -errno when the peer is gone (EPIPE / ECONNRESET). */
static int cl_send(cl_t *c, const void *p, size_t n)
{
    const char *s = p;

    while (n) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void cl_request(moor_buf_t *b, uint32_t id, const char *method, const char *params,
                       size_t plen, uint32_t np)
{
    assert_int_equal(moor_rpc_encode_request(b, id, method, params, plen, np), 0);
}

static void cl_call_send(cl_t *c, uint32_t id, const char *method, const char *params, size_t plen,
                         uint32_t np)
{
    moor_buf_t b = MOOR_BUF_INIT;

    cl_request(&b, id, method, params, plen, np);
    assert_int_equal(cl_send(c, b.data, b.len), 0);
    moor_buf_free(&b);
}

/* Receives one response: 1, 0 on EOF/reset, -1 on timeout. */
static int cl_recv(cl_t *c, resp_t *r)
{
    const char *p, *e, *s;
    uint32_t n;
    uint64_t v;
    long f;

    if (c->last) {
        memmove(c->in.data, c->in.data + c->last, c->in.len - c->last);
        c->in.len -= c->last;
        c->last = 0;
    }
    while ((f = moor_rpc_frame_len(c->in.data, c->in.len, (size_t)64 << 20)) == 0) {
        ssize_t got;
        moor_buf_reserve(&c->in, 65536);
        got = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
        if (got <= 0)
            return 0;
        c->in.len += (size_t)got;
    }
    assert_true(f > 0);
    c->last = (size_t)f;
    p = c->in.data;
    e = p + f;
    assert_int_equal(moor_mp_read_array(&p, e, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(moor_mp_read_uint(&p, e, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(moor_mp_read_uint(&p, e, &v), 0);
    r->msgid = (uint32_t)v;
    r->code[0] = '\0';
    if (moor_mp_read_nil(&p, e) != 0) {
        assert_int_equal(moor_mp_read_array(&p, e, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(moor_mp_read_str(&p, e, &s, &n), 0);
        snprintf(r->code, sizeof(r->code), "%.*s", (int)n, s);
        assert_int_equal(moor_mp_skip(&p, e, 4), 0);
    }
    r->res = p;
    r->rlen = (size_t)(e - p);
    return 1;
}

/* Expects the server to close: EOF or reset, never a timeout or a frame. */
static void cl_expect_closed(cl_t *c)
{
    resp_t r;
    int rc = cl_recv(c, &r);

    if (rc != 0)
        fail_msg("expected the server to close the connection, got %s",
                 rc < 0 ? "a timeout" : "a response");
}

/* Calls one method and receives its answer (which must carry id). */
static void cl_call(cl_t *c, uint32_t id, const char *method, const char *params, size_t plen,
                    uint32_t np, resp_t *r)
{
    cl_call_send(c, id, method, params, plen, np);
    assert_int_equal(cl_recv(c, r), 1);
    assert_int_equal(r->msgid, id);
}

/* stats -> the ST_N counters (see the file comment). */
static void cl_stats(cl_t *c, uint64_t out[ST_N])
{
    resp_t r;
    const char *p, *e;
    uint32_t n;

    cl_call(c, 999999, "stats", NULL, 0, 0, &r);
    p = r.res;
    e = p + r.rlen;
    assert_int_equal(moor_mp_read_array(&p, e, &n), 0);
    assert_int_equal(n, ST_N);
    for (int i = 0; i < ST_N; i++)
        assert_int_equal(moor_mp_read_uint(&p, e, &out[i]), 0);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Checks an echo on c works: result is [id]. */
static void cl_echo_ok(cl_t *c, uint32_t id)
{
    char p[8];
    resp_t r;
    size_t n = 0;

    p[n++] = (char)0xce;
    p[n++] = (char)(id >> 24), p[n++] = (char)(id >> 16);
    p[n++] = (char)(id >> 8), p[n++] = (char)id;
    cl_call(c, id, "echo", p, n, 1, &r);
    if (r.code[0])
        fail_msg("echo %u failed: %s", id, r.code);
    assert_int_equal(r.rlen, n + 1);
    assert_int_equal((unsigned char)r.res[0], 0x91);
    assert_memory_equal(r.res + 1, p, n);
}

/* ---- tests -------------------------------------------------------------- */

static void test_echo_and_notify(void **state)
{
    moor_srv_opts_t o;
    fx_t *f;
    cl_t c;
    resp_t r;
    uint64_t st[ST_N];
    moor_buf_t b = MOOR_BUF_INIT;

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&c, f->port);
    cl_call(&c, 1, "echo", "\243abc\x92\x01\xc0", 7, 2, &r);
    assert_string_equal(r.code, "");
    assert_int_equal(r.rlen, 8);
    assert_memory_equal(r.res, "\x92\243abc\x92\x01\xc0", 8);
    /* a notification is dispatched, its reply swallowed */
    moor_buf_append(&b, "\x93\x02\244echo\x91\x05", 9);
    assert_int_equal(cl_send(&c, b.data, b.len), 0);
    cl_call(&c, 2, "nosuch", NULL, 0, 0, &r);
    assert_string_equal(r.code, "NO_METHOD");
    cl_stats(&c, st);
    assert_int_equal(st[1], 4); /* echo, notification, nosuch, stats */
    assert_int_equal(st[2], 1);
    assert_int_equal(st[0], 1); /* the stats call itself */
    moor_buf_free(&b);
    cl_close(&c);
    fx_stop(f);
}

/* 1000 requests written at once; every third is answered from a timer, so
 * answers come back out of order; each arrives once with its own params. */
static void test_pipeline_out_of_order(void **state)
{
    enum { N = 1000 };
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT;
    static unsigned char seen[N];
    uint64_t seed = testutil_seed("test_pipeline"), rs = seed;
    int out_of_order = 0;
    uint32_t last = 0;
    fx_t *f;
    cl_t c;

    (void)state;
    memset(seen, 0, sizeof(seen));
    opts(&o);
    o.max_inflight = 64;
    f = fx_start(&o);
    cl_connect(&c, f->port);
    for (uint32_t i = 0; i < N; i++) {
        char p[16];
        size_t n = 0;
        p[n++] = (char)0xcd, p[n++] = (char)(i >> 8), p[n++] = (char)i; /* uint16 i */
        if (i % 3 == 0) {
            char q[16];
            q[0] = (char)(2 + testutil_rand(&rs) % 20);
            memcpy(q + 1, p, n);
            cl_request(&b, i, "delay", q, n + 1, 2);
        } else {
            cl_request(&b, i, "echo", p, n, 1);
        }
    }
    assert_int_equal(cl_send(&c, b.data, b.len), 0);
    for (int k = 0; k < N; k++) {
        resp_t r;
        const char *p, *e;
        uint32_t cnt;
        uint64_t v;
        if (cl_recv(&c, &r) != 1)
            fail_msg("seed %llu: reply %d of %d missing", (unsigned long long)seed, k, N);
        assert_true(r.msgid < N);
        if (seen[r.msgid]++)
            fail_msg("msgid %u answered twice", r.msgid);
        out_of_order += k > 0 && r.msgid < last;
        last = r.msgid;
        p = r.res;
        e = p + r.rlen;
        assert_int_equal(moor_mp_read_array(&p, e, &cnt), 0);
        assert_int_equal(cnt, r.msgid % 3 == 0 ? 2 : 1);
        if (cnt == 2)
            assert_int_equal(moor_mp_read_uint(&p, e, &v), 0);
        assert_int_equal(moor_mp_read_uint(&p, e, &v), 0);
        assert_int_equal(v, r.msgid);
    }
    assert_true(out_of_order > 0);
    moor_buf_free(&b);
    cl_close(&c);
    fx_stop(f);
}

static void test_bad_request_keeps_conn(void **state)
{
    moor_srv_opts_t o;
    fx_t *f;
    cl_t c;
    resp_t r;
    uint64_t st[ST_N];

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&c, f->port);
    /* method is an int */
    assert_int_equal(cl_send(&c, "\x94\x00\x07\x05\x90", 5), 0);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 7);
    assert_string_equal(r.code, "BAD_REQUEST");
    /* params not an array, then wrong arity */
    assert_int_equal(cl_send(&c, "\x94\x00\x08\244echo\x05", 9), 0);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 8);
    assert_string_equal(r.code, "BAD_REQUEST");
    assert_int_equal(cl_send(&c, "\x93\x00\x09\244echo", 8), 0);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 9);
    assert_string_equal(r.code, "BAD_REQUEST");
    cl_echo_ok(&c, 10);
    cl_stats(&c, st);
    assert_int_equal(st[4], 3);
    cl_close(&c);
    fx_stop(f);
}

static void test_garbage_closes_only_that_conn(void **state)
{
    moor_srv_opts_t o;
    fx_t *f;
    cl_t a, b, n;
    uint64_t st[ST_N];

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&a, f->port);
    cl_connect(&b, f->port);
    cl_echo_ok(&a, 1);
    cl_echo_ok(&b, 2);
    assert_int_equal(cl_send(&a, "\xc1", 1), 0);
    cl_expect_closed(&a);
    cl_echo_ok(&b, 3);
    /* a frame that is not an array, and a request without a readable msgid */
    cl_connect(&n, f->port);
    assert_int_equal(cl_send(&n, "\243abc", 4), 0);
    cl_expect_closed(&n);
    cl_close(&n);
    cl_connect(&n, f->port);
    assert_int_equal(cl_send(&n, "\x94\x00\xa1x\244echo\x90", 10), 0);
    cl_expect_closed(&n);
    cl_close(&n);
    cl_echo_ok(&b, 4);
    cl_stats(&b, st);
    assert_int_equal(st[4], 3);
    cl_close(&a);
    cl_close(&b);
    fx_stop(f);
}

static void test_oversized_closes(void **state)
{
    moor_srv_opts_t o;
    moor_buf_t big = MOOR_BUF_INIT;
    msgpack_packer pk;
    fx_t *f;
    cl_t a, b;
    char pad[4096];

    (void)state;
    opts(&o);
    o.max_frame = 1024;
    f = fx_start(&o);
    cl_connect(&a, f->port);
    cl_connect(&b, f->port);
    memset(pad, 'x', sizeof(pad));
    moor_mp_packer_init(&pk, &big);
    msgpack_pack_bin(&pk, sizeof(pad));
    msgpack_pack_bin_body(&pk, pad, sizeof(pad));
    {
        moor_buf_t req = MOOR_BUF_INIT;
        cl_request(&req, 1, "echo", big.data, big.len, 1);
        (void)cl_send(&a, req.data, req.len); /* may meet the reset half-way */
        moor_buf_free(&req);
    }
    cl_expect_closed(&a);
    /* a frame just under the limit still works */
    moor_buf_reset(&big);
    msgpack_pack_bin(&pk, 900);
    msgpack_pack_bin_body(&pk, pad, 900);
    {
        resp_t r;
        cl_call(&b, 2, "echo", big.data, big.len, 1, &r);
        assert_string_equal(r.code, "");
        assert_int_equal(r.rlen, big.len + 1);
    }
    moor_buf_free(&big);
    cl_close(&a);
    cl_close(&b);
    fx_stop(f);
}

/* A frame in two halves, then a frame one byte at a time, then a 3 MiB frame. */
static void test_partial_frames(void **state)
{
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT, big = MOOR_BUF_INIT;
    msgpack_packer pk;
    fx_t *f;
    cl_t c;
    resp_t r;

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&c, f->port);
    cl_request(&b, 5, "echo", "\xa5hello", 6, 1);
    assert_int_equal(cl_send(&c, b.data, b.len / 2), 0);
    sleep_ms(50);
    assert_int_equal(cl_send(&c, b.data + b.len / 2, b.len - b.len / 2), 0);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 5);
    assert_memory_equal(r.res, "\x91\xa5hello", 7);
    moor_buf_reset(&b);
    cl_request(&b, 6, "echo", "\x93\x01\x02\x03", 4, 1);
    for (size_t i = 0; i < b.len; i++) {
        assert_int_equal(cl_send(&c, b.data + i, 1), 0);
        sleep_ms(1);
    }
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 6);
    /* 3 MiB of small ints: many reads, scanned once */
    moor_mp_packer_init(&pk, &big);
    msgpack_pack_array(&pk, 3 << 20);
    for (int i = 0; i < (3 << 20); i++)
        msgpack_pack_fix_uint8(&pk, (uint8_t)(i & 0x7f));
    moor_buf_reset(&b);
    cl_request(&b, 7, "echo", big.data, big.len, 1);
    assert_int_equal(cl_send(&c, b.data, b.len), 0);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 7);
    assert_int_equal(r.rlen, big.len + 1);
    assert_memory_equal(r.res + 1, big.data, big.len);
    moor_buf_free(&big);
    moor_buf_free(&b);
    cl_close(&c);
    fx_stop(f);
}

/* max_inflight 4: 50 held requests; the server dispatches 4 and stops
 * reading; after release every one is answered, and no hold dispatch saw
 * more than 4 in flight. */
static void test_backpressure(void **state)
{
    enum { N = 50, MAXI = 4 };
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t c, ctl;
    resp_t r;
    int got = 0;

    (void)state;
    opts(&o);
    o.max_inflight = MAXI;
    f = fx_start(&o);
    cl_connect(&c, f->port);
    cl_connect(&ctl, f->port);
    for (uint32_t i = 0; i < N; i++)
        cl_request(&b, i, "hold", "\x01", 1, 1);
    assert_int_equal(cl_send(&c, b.data, b.len), 0);
    for (int tries = 0; tries < 500; tries++) { /* bounded: 5 s */
        cl_stats(&ctl, st);
        if (st[5] >= MAXI)
            break;
        sleep_ms(10);
    }
    assert_int_equal(st[5], MAXI);
    sleep_ms(100); /* room for a wrong extra dispatch to show */
    cl_stats(&ctl, st);
    assert_int_equal(st[5], MAXI);
    cl_call(&ctl, 1000, "release", NULL, 0, 0, &r);
    assert_string_equal(r.code, "");
    for (got = 0; got < N; got++)
        if (cl_recv(&c, &r) != 1)
            fail_msg("reply %d of %d missing after release", got, N);
    cl_stats(&ctl, st);
    if (st[6] > MAXI)
        fail_msg("a hold dispatch saw %llu in flight, max_inflight %d", (unsigned long long)st[6],
                 MAXI);
    assert_int_equal(st[6], MAXI);
    moor_buf_free(&b);
    cl_close(&c);
    cl_close(&ctl);
    fx_stop(f);
}

static void test_max_conns(void **state)
{
    moor_srv_opts_t o;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t a, b, x;

    (void)state;
    opts(&o);
    o.max_conns = 2;
    f = fx_start(&o);
    cl_connect(&a, f->port);
    cl_connect(&b, f->port);
    cl_echo_ok(&a, 1);
    cl_echo_ok(&b, 2);
    cl_connect(&x, f->port); /* the kernel accepts; the server closes */
    cl_expect_closed(&x);
    cl_close(&x);
    cl_stats(&a, st);
    assert_int_equal(st[3], 1);
    assert_int_equal(st[2], 2);
    /* after one leaves, a new connection is served (the close is async) */
    cl_close(&b);
    for (int tries = 0; tries < 500; tries++) {
        cl_stats(&a, st);
        if (st[2] == 1)
            break;
        sleep_ms(10);
    }
    assert_int_equal(st[2], 1);
    cl_connect(&x, f->port);
    cl_echo_ok(&x, 3);
    cl_close(&x);
    cl_close(&a);
    fx_stop(f);
}

static void test_idle_timeout(void **state)
{
    moor_srv_opts_t o;
    fx_t *f;
    cl_t c, w;
    resp_t r;

    (void)state;
    opts(&o);
    o.idle_timeout_ms = 100;
    f = fx_start(&o);
    cl_connect(&c, f->port);
    cl_echo_ok(&c, 1);
    cl_expect_closed(&c); /* within the 5 s receive timeout */
    cl_connect(&w, f->port);
    /* waiting on an answer is not idle: a 300 ms delay outlives 100 ms */
    cl_call(&w, 2, "delay", "\xcd\x01\x2c", 3, 1, &r);
    assert_string_equal(r.code, "");
    cl_close(&c);
    cl_close(&w);
    fx_stop(f);
}

/* Client half-closes after pipelining: every answer still arrives, then EOF. */
static void test_half_close(void **state)
{
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT;
    fx_t *f;
    cl_t c;
    resp_t r;

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&c, f->port);
    cl_request(&b, 1, "delay", "\x14", 1, 1);
    cl_request(&b, 2, "echo", "\x02", 1, 1);
    assert_int_equal(cl_send(&c, b.data, b.len), 0);
    shutdown(c.fd, SHUT_WR);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 2);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 1);
    cl_expect_closed(&c);
    moor_buf_free(&b);
    cl_close(&c);
    fx_stop(f);
}

/* stop() while a request waits on a timer: done only after it is answered,
 * the answer reaches the client, then the connection closes. */
static void test_stop_waits(void **state)
{
    moor_srv_opts_t o;
    fx_t *f;
    cl_t c;
    resp_t r;
    uint64_t st[ST_N];

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&c, f->port);
    cl_call_send(&c, 1, "delay", "\xcc\xc8", 2, 1); /* 200 ms */
    /* make sure it was dispatched before stopping */
    {
        cl_t ctl;
        cl_connect(&ctl, f->port);
        for (int tries = 0; tries < 500; tries++) {
            cl_stats(&ctl, st);
            if (st[0] >= 2) /* the delay and this stats call */
                break;
            sleep_ms(10);
        }
        assert_int_equal(st[0], 2);
        cl_close(&ctl);
    }
    uv_async_send(&f->stop_async);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 1);
    cl_expect_closed(&c);
    cl_close(&c);
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += JOIN_TIMEOUT_S;
        if (pthread_timedjoin_np(f->th, NULL, &ts) != 0) {
            fprintf(stderr, "server loop did not finish within %d s\n", JOIN_TIMEOUT_S);
            abort();
        }
    }
    assert_int_equal(f->done_called, 1);
    assert_int_equal(f->replies_at_done, f->answered);
    moor_srv_free(f->srv);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

/* Requests of 1 MiB echoed to a client that does not read: the server
 * stops reading once about 64 MiB of replies wait unwritten (so the client
 * cannot send all it has), and resumes when the client reads. */
typedef struct sender {
    cl_t *c;
    moor_buf_t *b;
    int rc;
} sender_t;

static void *send_main(void *arg)
{
    sender_t *s = arg;
    struct timeval tv = {30, 0}; /* bounded, long enough for the drain */

    setsockopt(s->c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    s->rc = cl_send(s->c, s->b->data, s->b->len);
    return NULL;
}

static void big_echo_requests(moor_buf_t *b, int n)
{
    moor_buf_t v = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, &v);
    msgpack_pack_bin(&pk, (size_t)1 << 20);
    moor_buf_reserve(&v, (size_t)1 << 20);
    memset(v.data + v.len, 'v', (size_t)1 << 20);
    v.len += (size_t)1 << 20;
    for (int i = 0; i < n; i++)
        cl_request(b, (uint32_t)i, "echo", v.data, v.len, 1);
    moor_buf_free(&v);
}

static void test_output_backpressure(void **state)
{
    enum { N = 100 };
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT;
    uint64_t st[ST_N], prev = 0, echoes = 0;
    int calls = 0;
    sender_t snd;
    pthread_t th;
    fx_t *f;
    cl_t c, ctl;

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect_rcvbuf(&c, f->port, 64 * 1024); /* else the kernel holds ~32 MiB */
    cl_connect(&ctl, f->port);
    big_echo_requests(&b, N);
    snd.c = &c, snd.b = &b, snd.rc = 1;
    assert_int_equal(pthread_create(&th, NULL, send_main, &snd), 0);
    /* wait until the dispatched count stops moving (bounded) */
    for (int tries = 0; tries < 100; tries++) {
        sleep_ms(50);
        cl_stats(&ctl, st);
        echoes = st[1] - (uint64_t)++calls; /* requests counts the stats calls */
        if (echoes == prev && echoes > 0)
            break;
        prev = echoes;
    }
    if (echoes >= N)
        fail_msg("the server dispatched %llu of %d requests with unread replies; it "
                 "should have stopped reading near 64 MiB of output",
                 (unsigned long long)echoes, N);
    for (int k = 0; k < N; k++) {
        resp_t r;
        if (cl_recv(&c, &r) != 1)
            fail_msg("reply %d of %d missing", k, N);
        assert_int_equal(r.msgid, k); /* echo answers in order */
        assert_int_equal(r.rlen, ((size_t)1 << 20) + 6);
    }
    pthread_join(th, NULL);
    assert_int_equal(snd.rc, 0);
    moor_buf_free(&b);
    cl_close(&c);
    cl_close(&ctl);
    fx_stop(f);
}

/* stop() with replies the client never reads: done still comes (the drain
 * check closes the connection after SRV_DRAIN_MS). */
static void test_stop_unread_replies(void **state)
{
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t c, ctl;

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&c, f->port);
    cl_connect(&ctl, f->port);
    big_echo_requests(&b, 24); /* 24 MiB of replies: more than socket buffers */
    assert_int_equal(cl_send(&c, b.data, b.len), 0);
    for (int tries = 0; tries < 500; tries++) {
        cl_stats(&ctl, st);
        if (st[1] >= 25) /* 24 echoes and this stats call */
            break;
        sleep_ms(10);
    }
    assert_true(st[1] >= 25);
    cl_close(&ctl);
    fx_stop(f); /* bounded join: fails if stop waits forever */
    moor_buf_free(&b);
    cl_close(&c);
}

/* ---- limits of the hardening issue -------------------------------------- */

/* Reads frames until the server closes c: the number read before EOF or
 * reset, or -1 if a receive timed out first. */
static int cl_drain_until_closed(cl_t *c)
{
    resp_t r;
    int n = 0, rc;

    while ((rc = cl_recv(c, &r)) == 1)
        n++;
    return rc == 0 ? n : -1;
}

/* n requests `method size` (size a uint32), msgids 0..n-1, in one send. */
static void cl_send_sized(cl_t *c, const char *method, int n, uint32_t size)
{
    moor_buf_t b = MOOR_BUF_INIT;
    char p[5] = {(char)0xce, (char)(size >> 24), (char)(size >> 16), (char)(size >> 8), (char)size};

    for (int i = 0; i < n; i++)
        cl_request(&b, (uint32_t)i, method, p, 5, 1);
    assert_int_equal(cl_send(c, b.data, b.len), 0);
    moor_buf_free(&b);
}

/* Polls stats on ctl until st[i] >= want (bounded: 10 s); returns it. */
static uint64_t wait_stat(cl_t *ctl, int i, uint64_t want, uint64_t st[ST_N])
{
    for (int tries = 0; tries < 1000; tries++) {
        cl_stats(ctl, st);
        if (st[i] >= want)
            break;
        sleep_ms(10);
    }
    return st[i];
}

/* The case: a client pipelines requests answered at once and
 * never reads.  Dispatch must stop once the connection's unsent replies
 * pass output_soft, not only between reads (one read holds all 2,000
 * requests): the server's unsent bytes stay within the soft cap plus one
 * reply, another connection is served, and reading the replies resumes
 * the connection until every one is answered. */
static void test_unread_sync_replies_bounded(void **state)
{
    enum { N = 2000, SZ = 64 << 10 };
    const size_t soft = (size_t)1 << 20;
    moor_srv_opts_t o;
    uint64_t st[ST_N], prev = 0, dispatched = 0, max_out = 0;
    int calls = 0, same = 0;
    fx_t *f;
    cl_t c, ctl;

    (void)state;
    opts(&o);
    o.output_soft = soft;
    f = fx_start(&o);
    cl_connect_rcvbuf(&c, f->port, 64 * 1024);
    cl_connect(&ctl, f->port);
    cl_send_sized(&c, "big", N, SZ);
    for (int tries = 0; tries < 500 && same < 10; tries++) { /* until stable, bounded */
        sleep_ms(20);
        cl_stats(&ctl, st);
        dispatched = st[1] - (uint64_t)++calls;
        if (st[8] > max_out)
            max_out = st[8];
        same = dispatched == prev ? same + 1 : 0;
        prev = dispatched;
    }
    printf("  dispatched %llu of %d, at most %llu bytes unsent (soft cap %zu)\n",
           (unsigned long long)dispatched, N, (unsigned long long)max_out, soft);
    if (dispatched >= N)
        fail_msg("all %d requests were dispatched to a client that reads nothing", N);
    if (max_out > soft + SZ + 64)
        fail_msg("%llu bytes unsent, over the soft cap %zu plus one reply",
                 (unsigned long long)max_out, soft);
    cl_echo_ok(&ctl, 1);
    for (int k = 0; k < N; k++) {
        resp_t r;
        if (cl_recv(&c, &r) != 1)
            fail_msg("reply %d of %d missing after the client read", k, N);
        assert_int_equal(r.msgid, k);
        assert_int_equal(r.rlen, SZ + 5);
    }
    cl_close(&c);
    cl_close(&ctl);
    fx_stop(f);
}

/* Held requests answered all at once (async answers are not stopped by
 * the soft cap): past output_hard the connection is closed, the others
 * are served; one reply larger than the hard cap onto an empty output
 * still goes out. */
static void test_output_hard_cap(void **state)
{
    enum { N = 16, SZ = 512 << 10 };
    moor_srv_opts_t o;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t c, ctl, d;
    resp_t r;
    int got;

    (void)state;
    opts(&o);
    o.output_soft = (size_t)2 << 20;
    o.output_hard = (size_t)4 << 20;
    f = fx_start(&o);
    cl_connect_rcvbuf(&c, f->port, 64 * 1024);
    cl_connect(&ctl, f->port);
    cl_send_sized(&c, "holdbig", N, SZ);
    assert_int_equal(wait_stat(&ctl, 5, N, st), N);
    cl_call(&ctl, 1000, "release", NULL, 0, 0, &r);
    assert_int_equal(wait_stat(&ctl, 9, 1, st), 1); /* closed_output */
    got = cl_drain_until_closed(&c);
    printf("  %d of %d replies reached the client before the close\n", got, N);
    if (got < 0 || got >= N)
        fail_msg("the connection over its hard cap was not closed (%d replies)", got);
    cl_echo_ok(&ctl, 2);
    cl_connect(&d, f->port);
    cl_call_send(&d, 7, "big", "\xce\x00\x60\x00\x00", 5, 1); /* 6 MiB > hard 4 MiB */
    assert_int_equal(cl_recv(&d, &r), 1);
    assert_int_equal(r.msgid, 7);
    assert_int_equal(r.rlen, ((size_t)6 << 20) + 5);
    cl_close(&c);
    cl_close(&d);
    cl_close(&ctl);
    fx_stop(f);
}

/* Over output_total: the client holding the most unsent bytes is closed
 * and the other one served to the end; a peer connection is never the
 * one closed, even when it holds the most. */
static void total_case(int a_is_peer)
{
    enum { NA = 22, NB = 16, SZ = 1 << 20 };
    moor_srv_opts_t o;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t a, b, ctl, *keep, *shed;
    resp_t r;
    int got, nkeep;

    opts(&o);
    o.output_total = (size_t)24 << 20;
    f = fx_start(&o);
    cl_connect_rcvbuf(&a, f->port, 64 * 1024);
    cl_connect_rcvbuf(&b, f->port, 64 * 1024);
    cl_connect(&ctl, f->port);
    if (a_is_peer)
        cl_call(&a, 9999, "peer", NULL, 0, 0, &r);
    cl_send_sized(&a, "big", NA, SZ);
    wait_stat(&ctl, 8, (uint64_t)(NA - 4) * SZ, st); /* A's replies wait unread */
    assert_int_equal(st[9], 0);
    cl_send_sized(&b, "big", NB, SZ);
    assert_int_equal(wait_stat(&ctl, 9, 1, st), 1); /* closed_output */
    keep = a_is_peer ? &a : &b, shed = a_is_peer ? &b : &a;
    nkeep = a_is_peer ? NA : NB;
    got = cl_drain_until_closed(shed);
    printf("  the %s was closed after %d replies\n", a_is_peer ? "client" : "bigger client", got);
    if (got < 0)
        fail_msg("the %s connection was not closed", a_is_peer ? "client" : "bigger client");
    for (int k = 0; k < nkeep; k++) {
        if (cl_recv(keep, &r) != 1)
            fail_msg("reply %d of %d missing on the connection that stays", k, nkeep);
        assert_int_equal(r.msgid, k);
    }
    cl_stats(&ctl, st);
    assert_int_equal(st[9], 1);
    cl_close(&a);
    cl_close(&b);
    cl_close(&ctl);
    fx_stop(f);
}

static void test_output_total_sheds_biggest(void **state)
{
    (void)state;
    total_case(0);
}

static void test_output_total_spares_peers(void **state)
{
    (void)state;
    total_case(1);
}

/* Peers alone over output_total: no client is closed for it (closing
 * clients could not bring the total under); a client's reply waits until
 * the peer drains, then goes out.  Once, every client that got any reply
 * was closed. */
static void test_output_total_peers_alone(void **state)
{
    enum { NA = 16, SZ = 1 << 20 };
    moor_srv_opts_t o;
    moor_buf_t req = MOOR_BUF_INIT;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t a, c, ctl;
    resp_t r;

    (void)state;
    opts(&o);
    o.output_total = (size_t)8 << 20;
    f = fx_start(&o);
    cl_connect_rcvbuf(&a, f->port, 64 * 1024);
    cl_connect(&c, f->port);
    cl_connect(&ctl, f->port);
    cl_call(&a, 9999, "peer", NULL, 0, 0, &r);
    cl_send_sized(&a, "big", NA, SZ);
    wait_stat(&ctl, 8, (uint64_t)10 << 20, st); /* the peer's replies wait unread */
    cl_request(&req, 7, "echo", "\x01", 1, 1);
    if (cl_send(&c, req.data, req.len))
        fail_msg("the client was closed");
    for (int k = 0; k < 20; k++) { /* give a shedding 200 ms to show */
        cl_stats(&ctl, st);
        if (st[9])
            break;
        sleep_ms(10);
    }
    assert_int_equal(st[9], 0); /* closed_output */
    for (int k = 0; k < NA; k++) {
        if (cl_recv(&a, &r) != 1)
            fail_msg("peer reply %d missing", k);
        assert_int_equal(r.msgid, k);
    }
    if (cl_recv(&c, &r) != 1)
        fail_msg("the client's reply never came");
    assert_int_equal(r.msgid, 7);
    moor_buf_free(&req);
    cl_close(&a);
    cl_close(&c);
    cl_close(&ctl);
    fx_stop(f);
}

/* A client that stops reading is closed when its replies make no write
 * progress for idle_timeout_ms (before, unsent replies counted as "not
 * idle" forever); a slow reader that keeps taking bytes is not. */
static void test_write_stall_closes(void **state)
{
    enum { N = 8, SZ = 1 << 20 };
    moor_srv_opts_t o;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t c, ctl;
    int got, tries;

    (void)state;
    opts(&o);
    o.idle_timeout_ms = 500;
    f = fx_start(&o);
    cl_connect_rcvbuf(&c, f->port, 64 * 1024);
    cl_connect(&ctl, f->port);
    cl_send_sized(&c, "big", N, SZ);
    for (tries = 0; tries < 1000; tries++) { /* bounded: 10 s */
        cl_stats(&ctl, st);
        if (st[2] == 1)
            break;
        sleep_ms(10);
    }
    if (st[2] != 1)
        fail_msg("a client that reads nothing still holds its connection");
    assert_int_equal(st[10], 1); /* closed_deadline */
    got = cl_drain_until_closed(&c);
    assert_true(got >= 0 && got < N);
    cl_close(&c);
    cl_close(&ctl);
    fx_stop(f);
}

/* Reads one reply 16 KiB at a time with a pause after each read. */
static void cl_recv_slowly(cl_t *c, resp_t *r)
{
    char buf[16 << 10];
    long f;

    if (c->last) { /* the frame returned last time */
        memmove(c->in.data, c->in.data + c->last, c->in.len - c->last);
        c->in.len -= c->last;
        c->last = 0;
    }
    while ((f = moor_rpc_frame_len(c->in.data, c->in.len, (size_t)64 << 20)) == 0) {
        ssize_t got = recv(c->fd, buf, sizeof(buf), 0);
        if (got <= 0)
            fail_msg("connection closed under a slow reader (%zd)", got);
        moor_buf_append(&c->in, buf, (size_t)got);
        sleep_ms(10);
    }
    assert_true(f > 0);
    assert_int_equal(cl_recv(c, r), 1); /* parses the buffered frame */
}

/* 8 MiB of replies, more than the kernel takes, read in small bites over
 * several idle timeouts (about 5 s against 2 s): the write queue shrinking
 * is progress, so the connection is not taken for a stalled one.  Only a
 * reader descheduled for a whole idle timeout between two 10 ms naps
 * could see it closed. */
static void test_slow_reader_not_stalled(void **state)
{
    enum { N = 8, SZ = 1 << 20 };
    moor_srv_opts_t o;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t c, ctl;

    (void)state;
    opts(&o);
    o.idle_timeout_ms = 2000;
    f = fx_start(&o);
    cl_connect_rcvbuf(&c, f->port, 64 * 1024);
    cl_send_sized(&c, "big", N, SZ);
    for (int k = 0; k < N; k++) {
        resp_t r;
        cl_recv_slowly(&c, &r);
        assert_int_equal(r.msgid, k);
        assert_int_equal(r.rlen, SZ + 5);
    }
    cl_connect(&ctl, f->port);
    cl_stats(&ctl, st);
    assert_int_equal(st[10], 0); /* no deadline closed it */
    cl_close(&c);
    cl_close(&ctl);
    fx_stop(f);
}

/* require_auth: a connection that does not authenticate within
 * auth_timeout_ms is closed; one that did stays (it is older, so its
 * deadline passed before the other's). */
static void test_auth_deadline(void **state)
{
    moor_srv_opts_t o;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t a, b;
    resp_t r;

    (void)state;
    opts(&o);
    o.require_auth = 1;
    o.auth_timeout_ms = 2500; /* room for a's auth call on a busy machine; b is closed
                               * well within cl_expect_closed's 5 s */
    f = fx_start(&o);
    cl_connect(&a, f->port);
    cl_call(&a, 1, "auth", NULL, 0, 0, &r);
    assert_string_equal(r.code, "");
    cl_connect(&b, f->port);
    cl_expect_closed(&b); /* within the 5 s receive timeout */
    cl_echo_ok(&a, 2);
    cl_stats(&a, st);
    assert_int_equal(st[10], 1);
    cl_close(&a);
    cl_close(&b);
    fx_stop(f);
}

/* A frame sent one byte at a time is cut off at frame_timeout_ms, before
 * it is complete (each byte used to count as activity). */
static void test_frame_deadline(void **state)
{
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT, v = MOOR_BUF_INIT;
    msgpack_packer pk;
    size_t sent;
    fx_t *f;
    cl_t c;
    char x;

    (void)state;
    opts(&o);
    o.frame_timeout_ms = 300;
    f = fx_start(&o);
    cl_connect(&c, f->port);
    moor_mp_packer_init(&pk, &v);
    msgpack_pack_bin(&pk, 400);
    moor_buf_reserve(&v, 400);
    memset(v.data + v.len, 's', 400);
    v.len += 400;
    cl_request(&b, 1, "echo", v.data, v.len, 1);
    for (sent = 0; sent < b.len; sent++) { /* ~10 ms a byte: 4 s for the frame */
        ssize_t got = recv(c.fd, &x, 1, MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            break; /* closed by the server */
        if (got > 0)
            fail_msg("a reply to an incomplete frame");
        if (cl_send(&c, b.data + sent, 1))
            break;
        sleep_ms(10);
    }
    printf("  closed after %zu of %zu bytes\n", sent, b.len);
    if (sent == b.len)
        fail_msg("a frame sent a byte at a time was never cut off");
    cl_expect_closed(&c);
    moor_buf_free(&b);
    moor_buf_free(&v);
    cl_close(&c);
    fx_stop(f);
}

/* The frame deadline runs per frame: a client that streams pipelined
 * frames, every send finishing one frame and beginning the next, is never
 * cut off, however long the stream lasts (once the deadline ran from the
 * first partial frame until the buffer happened to end on a boundary). */
static void test_frame_deadline_per_frame(void **state)
{
    enum { N = 20 };
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT, v = MOOR_BUF_INIT;
    msgpack_packer pk;
    size_t ends[N], from = 0;
    fx_t *f;
    cl_t c;

    (void)state;
    opts(&o);
    o.frame_timeout_ms = 1500;
    f = fx_start(&o);
    cl_connect(&c, f->port);
    moor_mp_packer_init(&pk, &v);
    msgpack_pack_bin(&pk, 400);
    moor_buf_reserve(&v, 400);
    memset(v.data + v.len, 's', 400);
    v.len += 400;
    for (int i = 0; i < N; i++) {
        cl_request(&b, (uint32_t)i, "echo", v.data, v.len, 1);
        ends[i] = b.len;
    }
    /* 150 ms apart, from the middle of frame i to the middle of frame i+1:
     * 3 s of stream, each frame complete 150 ms after it began */
    for (int i = 0; i < N; i++) {
        size_t to = i + 1 < N ? ends[i] + (ends[i + 1] - ends[i]) / 2 : b.len;
        if (cl_send(&c, b.data + from, to - from))
            fail_msg("closed by the server at frame %d", i);
        from = to;
        sleep_ms(150);
    }
    for (int i = 0; i < N; i++) {
        resp_t r;
        if (cl_recv(&c, &r) != 1)
            fail_msg("reply %d missing: the stream was cut off", i);
        assert_int_equal(r.msgid, i);
    }
    moor_buf_free(&b);
    moor_buf_free(&v);
    cl_close(&c);
    fx_stop(f);
}

/* A response frame [1, msgid, nil, true] sent to the server is answered
 * BAD_REQUEST for its msgid; the connection stays. */
static void test_response_frame_bad_request(void **state)
{
    moor_srv_opts_t o;
    fx_t *f;
    cl_t c;
    resp_t r;

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&c, f->port);
    assert_int_equal(cl_send(&c, "\x94\x01\x07\xc0\xc3", 5), 0);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 7);
    assert_string_equal(r.code, "BAD_REQUEST");
    cl_echo_ok(&c, 8);
    cl_close(&c);
    fx_stop(f);
}

/* Header announcing more than max_frame: closed at once (before, the
 * server waited for max_frame bytes that never come). */
static void test_lying_header_closes(void **state)
{
    moor_srv_opts_t o;
    fx_t *f;
    cl_t c;

    (void)state;
    opts(&o);
    o.idle_timeout_ms = 0;
    f = fx_start(&o);
    cl_connect(&c, f->port);
    assert_int_equal(cl_send(&c, "\xdd\xff\xff\xff\xff", 5), 0);
    cl_expect_closed(&c);
    cl_close(&c);
    /* a bin32 of 4 GiB as the param of a well-formed request head */
    cl_connect(&c, f->port);
    assert_int_equal(cl_send(&c,
                             "\x94\x00\x01\xa4"
                             "echo\x91\xc6\xff\xff\xff\xff",
                             14),
                     0);
    cl_expect_closed(&c);
    cl_close(&c);
    fx_stop(f);
}

/* max_conns clients, then peer_conns more for peers: a peer-slot
 * connection that does not become a peer by its auth deadline is
 * closed, one that does stays; past both, or from an address peer_ip_ok
 * refuses, connections are refused. */
static void test_peer_slots(void **state)
{
    moor_srv_opts_t o;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t a, b, p, e, x;
    resp_t r;

    (void)state;
    opts(&o);
    o.max_conns = 2;
    o.peer_conns = 2;
    o.auth_timeout_ms = 1500; /* room for the calls made before it */
    f = fx_start(&o);
    cl_connect(&a, f->port);
    cl_connect(&b, f->port);
    cl_echo_ok(&a, 1);
    cl_echo_ok(&b, 2);
    cl_connect(&p, f->port); /* a peer slot */
    cl_call(&p, 3, "peer", NULL, 0, 0, &r);
    assert_string_equal(r.code, "");
    assert_string_equal(f->peer_ip_seen, "127.0.0.1");
    cl_connect(&e, f->port); /* the other peer slot, never a peer */
    cl_echo_ok(&e, 4);       /* served meanwhile */
    cl_connect(&x, f->port); /* nothing left */
    cl_expect_closed(&x);
    cl_close(&x);
    cl_expect_closed(&e); /* at its auth deadline */
    cl_echo_ok(&p, 5);    /* older, past its deadline too, and still open */
    cl_stats(&a, st);
    assert_int_equal(st[7], 1); /* peer_slots */
    assert_int_equal(st[3], 1); /* refused */
    assert_int_equal(st[10], 1);
    cl_close(&e);
    cl_close(&p);
    cl_close(&a);
    cl_close(&b);
    fx_stop(f);
    /* peer_ip_ok says no: refused although a peer slot is free */
    f = fx_start_ip(&o, 0);
    cl_connect(&a, f->port);
    cl_connect(&b, f->port);
    cl_echo_ok(&a, 1);
    cl_echo_ok(&b, 2);
    cl_connect(&x, f->port);
    cl_expect_closed(&x);
    cl_close(&x);
    cl_stats(&a, st);
    assert_int_equal(st[3], 1);
    assert_int_equal(st[7], 0);
    cl_close(&a);
    cl_close(&b);
    fx_stop(f);
}

/* moor_srv_conn_end: the answer still goes out, then the connection
 * closes and nothing more is dispatched. */
static void test_conn_end(void **state)
{
    moor_srv_opts_t o;
    moor_buf_t b = MOOR_BUF_INIT;
    uint64_t st[ST_N];
    fx_t *f;
    cl_t c, ctl;
    resp_t r;

    (void)state;
    opts(&o);
    f = fx_start(&o);
    cl_connect(&c, f->port);
    cl_connect(&ctl, f->port);
    cl_request(&b, 1, "bye", NULL, 0, 0);
    cl_request(&b, 2, "echo", "\x01", 1, 1);
    assert_int_equal(cl_send(&c, b.data, b.len), 0);
    assert_int_equal(cl_recv(&c, &r), 1);
    assert_int_equal(r.msgid, 1);
    cl_expect_closed(&c);
    cl_stats(&ctl, st);
    assert_int_equal(st[1], 2); /* bye and this stats call: the echo never ran */
    moor_buf_free(&b);
    cl_close(&c);
    cl_close(&ctl);
    fx_stop(f);
}

static void test_port_in_use(void **state)
{
    moor_srv_opts_t o;
    moor_srv_t *s2 = NULL;
    uv_loop_t loop;
    fx_t *f;
    int rc;

    (void)state;
    opts(&o);
    f = fx_start(&o);
    o.port = f->port;
    uv_loop_init(&loop);
    rc = moor_srv_start(&loop, &o, dispatch, NULL, &s2);
    assert_int_equal(rc, -EADDRINUSE);
    assert_non_null(strstr(moor_diag_last()->msg, "127.0.0.1"));
    o.host = "not-an-address";
    o.port = 0;
    assert_int_equal(moor_srv_start(&loop, &o, dispatch, NULL, &s2), MOOR_EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    fx_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_and_notify),
        cmocka_unit_test(test_pipeline_out_of_order),
        cmocka_unit_test(test_bad_request_keeps_conn),
        cmocka_unit_test(test_garbage_closes_only_that_conn),
        cmocka_unit_test(test_oversized_closes),
        cmocka_unit_test(test_partial_frames),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_stop_waits),
        cmocka_unit_test(test_output_backpressure),
        cmocka_unit_test(test_stop_unread_replies),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_unread_sync_replies_bounded),
        cmocka_unit_test(test_output_hard_cap),
        cmocka_unit_test(test_output_total_sheds_biggest),
        cmocka_unit_test(test_output_total_spares_peers),
        cmocka_unit_test(test_output_total_peers_alone),
        cmocka_unit_test(test_write_stall_closes),
        cmocka_unit_test(test_slow_reader_not_stalled),
        cmocka_unit_test(test_frame_deadline_per_frame),
        cmocka_unit_test(test_auth_deadline),
        cmocka_unit_test(test_frame_deadline),
        cmocka_unit_test(test_response_frame_bad_request),
        cmocka_unit_test(test_lying_header_closes),
        cmocka_unit_test(test_peer_slots),
        cmocka_unit_test(test_conn_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
