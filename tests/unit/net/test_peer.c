/*
 * test_peer.c -- the peer pool (core/net/peer.c) and the libuv clock
 * (core/net/uvenv.c) on a real loop, in the test thread, against real
 * moor_srv servers on 127.0.0.1 port 0.
 *
 * The test servers' dispatcher knows these methods:
 *   _echo a b ...     replies [a, b, ...]
 *   _delay ms a ...   replies [ms, a, ...] from a uv_timer ms later
 *   _hold ...         kept unanswered until the test releases it
 *   _fail code msg    replies the error [code, msg]
 *   _auth secret      with a secret configured: marks the connection
 *                     authenticated, or NOAUTH; every other method on a
 *                     connection not authenticated answers NOAUTH
 * A killed peer is a forked child running the same server, stopped with
 * SIGKILL and started again on its port.  Every wait is bounded
 * (run_until); no assertion depends on timing beyond "a timer fires after
 * its delay".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "util/mp.h"
#include "net/peer.h"
#include "net/server.h"
#include "net/uvenv.h"
#include "util/clock.h"
#include "util/err.h"
#include "testutil.h"

#define WAIT_MS 5000
#define MAX_HELD 64

/* ---- loop helpers ----------------------------------------------------------- */

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t tick; /* makes UV_RUN_ONCE return every few ms */
    int closed;      /* done callbacks seen */
} fx_t;

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static int fx_setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));

    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, tick_cb, 5, 5);
    *state = f;
    return 0;
}

/* Runs the loop until *v >= want or ms pass; 1 if reached. */
static int run_until(fx_t *f, const int *v, int want, uint64_t ms)
{
    uint64_t end = moor_clock_mono_ms() + ms;

    while (!v || *v < want) {
        if (moor_clock_mono_ms() >= end)
            return 0;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    return 1;
}

static void run_for(fx_t *f, uint64_t ms)
{
    run_until(f, NULL, 1, ms);
}

static void count_done(void *ud)
{
    ((fx_t *)ud)->closed++;
}

static int fx_teardown(void **state)
{
    fx_t *f = *state;

    run_for(f, 50); /* the tick keeps every turn bounded */
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* never blocks, even after a failure */
    /* Every handle of the pool, the clock and the servers is closed. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* ---- the test server ------------------------------------------------------ */

typedef struct tsrv {
    uv_loop_t *loop;
    moor_srv_t *srv;
    int port;
    const char *secret; /* NULL: no auth */
    moor_srv_req_t *held[MAX_HELD];
    int nheld;
    int auth_ok, auth_bad, noauth, requests;
    int old_auth; /* answer _auth true, as a node of an older protocol did */
    int stopped;
} tsrv_t;

typedef struct delay {
    uv_timer_t t;
    moor_srv_req_t *req;
} delay_t;

static int method_is(const moor_srv_req_t *r, const char *m)
{
    return r->rpc.mlen == strlen(m) && memcmp(r->rpc.method, m, r->rpc.mlen) == 0;
}

static void reply_params(moor_srv_req_t *req)
{
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, &b);
    msgpack_pack_array(&pk, req->rpc.nparams);
    moor_buf_append(&b, req->rpc.params, req->rpc.plen);
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

    reply_params(d->req);
    uv_close((uv_handle_t *)&d->t, delay_closed);
}

static void do_delay(tsrv_t *s, moor_srv_req_t *req)
{
    const char *p = req->rpc.params;
    uint64_t ms = 0;
    delay_t *d = malloc(sizeof(*d));

    moor_mp_read_uint(&p, p + req->rpc.plen, &ms);
    d->req = req;
    d->t.data = d;
    uv_timer_init(s->loop, &d->t);
    uv_timer_start(&d->t, delay_fire, ms, 0);
}

static void do_fail(moor_srv_req_t *req)
{
    const char *p = req->rpc.params, *end = p + req->rpc.plen, *code, *msg;
    uint32_t cl = 0, ml = 0;
    char c[64], m[128];

    moor_mp_read_str(&p, end, &code, &cl);
    moor_mp_read_str(&p, end, &msg, &ml);
    snprintf(c, sizeof(c), "%.*s", (int)cl, code);
    snprintf(m, sizeof(m), "%.*s", (int)ml, msg);
    moor_srv_reply_error(req, c, m);
}

/* 1 when the request may go on (auth handled or not needed). */
static int check_auth(tsrv_t *s, moor_srv_req_t *req)
{
    const char *p = req->rpc.params, *sec = NULL;
    uint32_t n = 0;

    if (!s->secret)
        return 1;
    if (method_is(req, "_auth")) {
        const char *end = p + req->rpc.plen, *k;
        uint32_t m = 0, klen;
        uint64_t proto = 0;
        /* {secret = str, proto = 1}, answered {proto = 1} */
        if (moor_mp_read_map(&p, end, &m) == 0)
            while (m--) {
                if (moor_mp_read_str(&p, end, &k, &klen))
                    break;
                if (klen == 6 && memcmp(k, "secret", 6) == 0)
                    moor_mp_read_str(&p, end, &sec, &n);
                else if (klen == 5 && memcmp(k, "proto", 5) == 0)
                    moor_mp_read_uint(&p, end, &proto);
                else
                    break;
            }
        if (proto == 1 && sec && n == strlen(s->secret) && memcmp(sec, s->secret, n) == 0) {
            s->auth_ok++;
            moor_srv_conn_set_authed(req->conn, 1);
            if (s->old_auth)
                moor_srv_reply(req, "\xc3", 1);
            else
                moor_srv_reply(req, "\x81\xa5proto\x01", 8);
        } else {
            s->auth_bad++;
            moor_srv_reply_error(req, "NOAUTH", "wrong cluster secret");
        }
        return 0;
    }
    if (!moor_srv_conn_authed(req->conn)) {
        s->noauth++;
        moor_srv_reply_error(req, "NOAUTH", "peer methods need _auth first");
        return 0;
    }
    return 1;
}

static void tsrv_dispatch(void *ud, moor_srv_req_t *req)
{
    tsrv_t *s = ud;

    s->requests++;
    if (!check_auth(s, req))
        return;
    if (method_is(req, "_echo"))
        reply_params(req);
    else if (method_is(req, "_delay"))
        do_delay(s, req);
    else if (method_is(req, "_hold") && s->nheld < MAX_HELD)
        s->held[s->nheld++] = req;
    else if (method_is(req, "_fail"))
        do_fail(req);
    else
        moor_srv_reply_error(req, "UNKNOWN_METHOD", "no such method");
}

static void tsrv_start(fx_t *f, tsrv_t *s, const char *host, int port, const char *secret)
{
    moor_srv_opts_t o;

    memset(s, 0, sizeof(*s));
    moor_srv_opts_default(&o);
    o.host = host;
    o.port = port;
    s->loop = &f->loop;
    s->secret = secret;
    assert_int_equal(moor_srv_start(&f->loop, &o, tsrv_dispatch, s, &s->srv), 0);
    s->port = moor_srv_port(s->srv);
}

static void tsrv_release(tsrv_t *s)
{
    for (int i = 0; i < s->nheld; i++)
        reply_params(s->held[i]);
    s->nheld = 0;
}

static void tsrv_stopped(void *ud)
{
    ((tsrv_t *)ud)->stopped = 1;
}

static void tsrv_stop(fx_t *f, tsrv_t *s)
{
    tsrv_release(s);
    moor_srv_stop(s->srv, tsrv_stopped, s);
    if (!run_until(f, &s->stopped, 1, WAIT_MS))
        fail_msg("server on port %d did not stop", s->port);
    moor_srv_free(s->srv);
}

static void addr_of(char *buf, size_t n, const char *host, int port)
{
    snprintf(buf, n, "%s:%d", host, port);
}

/* ---- replies ------------------------------------------------------------------- */

typedef struct rep {
    int calls;
    int status;
    char result[256];
    size_t rlen;
    char diag[512];
    /* optional: a request made from inside the callback */
    moor_peer_pool_t *again_pool;
    const char *again_to;
    struct rep *again_rep; /* its reply, if the request was taken */
    int again_rc;
    /* optional: the pool closed from inside the callback */
    moor_peer_pool_t *close_pool;
    fx_t *close_fx;
} rep_t;

static void on_reply(void *arg, int status, const char *res, size_t rlen)
{
    rep_t *r = arg;

    r->calls++;
    r->status = status;
    r->rlen = rlen < sizeof(r->result) ? rlen : sizeof(r->result);
    if (res && rlen)
        memcpy(r->result, res, r->rlen);
    if (status < 0)
        snprintf(r->diag, sizeof(r->diag), "%s", moor_diag_msg(status));
    if (r->close_pool)
        moor_peer_pool_close(r->close_pool, count_done, r->close_fx);
    if (r->again_pool)
        r->again_rc = moor_peer_pool_request(r->again_pool, r->again_to, strlen(r->again_to),
                                             "_echo", NULL, 0, 0, 1000, on_reply, r->again_rep);
}

/* Params: one unsigned integer. */
static size_t pack_uint(char *out, uint64_t v)
{
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    size_t n;

    moor_mp_packer_init(&pk, &b);
    msgpack_pack_uint64(&pk, v);
    memcpy(out, b.data, b.len);
    n = b.len;
    moor_buf_free(&b);
    return n;
}

static size_t pack_strs(char *out, const char *a, const char *b2)
{
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    size_t n;

    moor_mp_packer_init(&pk, &b);
    msgpack_pack_str(&pk, strlen(a));
    msgpack_pack_str_body(&pk, a, strlen(a));
    msgpack_pack_str(&pk, strlen(b2));
    msgpack_pack_str_body(&pk, b2, strlen(b2));
    memcpy(out, b.data, b.len);
    n = b.len;
    moor_buf_free(&b);
    return n;
}

static int req(moor_peer_pool_t *p, const char *to, const char *method, const char *params,
               size_t plen, uint32_t n, uint32_t timeout_ms, rep_t *r)
{
    return moor_peer_pool_request(p, to, strlen(to), method, params, plen, n, timeout_ms, on_reply,
                                  r);
}

static moor_peer_pool_t *pool_on(fx_t *f, const char *self, const char *secret,
                                 uint32_t max_pending)
{
    moor_peer_opts_t o;
    moor_peer_pool_t *p = NULL;

    moor_peer_opts_default(&o);
    o.self_addr = self;
    o.secret = secret;
    o.max_pending = max_pending;
    o.backoff_min_ms = 200;
    o.backoff_max_ms = 400;
    o.seed = 42;
    assert_int_equal(moor_peer_pool_new(&f->loop, &o, &p), 0);
    return p;
}

static void pool_close(fx_t *f, moor_peer_pool_t *p)
{
    int before = f->closed;

    moor_peer_pool_close(p, count_done, f);
    if (!run_until(f, &f->closed, before + 1, WAIT_MS))
        fail_msg("pool close did not finish");
}

/* The answer of _echo(v): [v]. */
static void assert_echo_of(const rep_t *r, uint64_t v)
{
    char want[16];
    size_t n = pack_uint(want + 1, v) + 1;

    want[0] = (char)0x91;
    if (r->calls != 1 || r->status != 0)
        fail_msg("echo %llu: %d calls, status %d (%s)", (unsigned long long)v, r->calls, r->status,
                 r->diag);
    if (r->rlen != n || memcmp(r->result, want, n) != 0)
        fail_msg("echo %llu: answer of %zu bytes does not echo it (want %zu bytes)",
                 (unsigned long long)v, r->rlen, n);
}

static moor_peer_stats_t stats_of(moor_peer_pool_t *p, const char *id)
{
    moor_peer_stats_t st;

    assert_int_equal(moor_peer_pool_stats(p, id, strlen(id), &st), 0);
    return st;
}

/* ---- uvenv ------------------------------------------------------------------ */

typedef struct tfire {
    int *order; /* shared log of fired tags */
    int *n;
    int tag;
    moor_clock_if_t *clk;
    uint64_t stop_id; /* stopped from the callback when nonzero */
    uint64_t started_mono;
    uint64_t fired_mono;
} tfire_t;

static void tfire_cb(void *arg)
{
    tfire_t *t = arg;

    t->order[(*t->n)++] = t->tag;
    t->fired_mono = moor_clock_mono_ms();
    if (t->stop_id)
        t->clk->timer_stop(t->clk->ud, t->stop_id);
}

/* Timers fire in the order of their delays, a stopped one never fires,
 * and one stopped from another's callback neither.  Only the order is
 * checked: libuv counts a delay from the loop's cached time, so how much
 * wall-clock time passes before a timer fires is not for a test to
 * assert (it once failed: "60 ms timer fired after 54 ms"). */
static void test_uvenv_timers(void **state)
{
    fx_t *f = *state;
    moor_uvenv_t *e;
    static moor_clock_if_t clk;
    /* static: a failed assertion leaves the timers armed past this frame */
    static int order[8], n;
    static tfire_t t[5];
    static const uint64_t delay[5] = {60, 10, 30, 40, 50};
    uint64_t id[5], wall = moor_clock_wall_ms(), now;

    assert_int_equal(moor_uvenv_new(&f->loop, &e), 0);
    clk = moor_uvenv_clock(e);
    n = 0;
    now = clk.now_ms(clk.ud);
    if (now + 1000 < wall || now > wall + 1000)
        fail_msg("now_ms %llu is not the wall clock %llu", (unsigned long long)now,
                 (unsigned long long)wall);
    for (int i = 0; i < 5; i++) {
        t[i] = (tfire_t){order, &n, i + 1, &clk, 0, moor_clock_mono_ms(), 0};
        id[i] = clk.timer_start(clk.ud, delay[i], tfire_cb, &t[i]);
    }
    for (int i = 0; i < 5; i++) {
        assert_true(id[i] != 0);
        for (int j = 0; j < i; j++)
            assert_true(id[i] != id[j]);
    }
    t[1].stop_id = id[3]; /* the 10 ms timer stops the 40 ms one */
    clk.timer_stop(clk.ud, id[2]);
    clk.timer_stop(clk.ud, 0);           /* never an id */
    clk.timer_stop(clk.ud, id[3] + 100); /* unknown */
    assert_int_equal(moor_uvenv_pending(e), 4);
    if (!run_until(f, &n, 3, WAIT_MS))
        fail_msg("only %d timers fired", n);
    /* The stopped 30 and 40 ms ones would have come before the 60 ms one. */
    assert_int_equal(n, 3);
    assert_int_equal(order[0], 2); /* 10 ms */
    assert_int_equal(order[1], 5); /* 50 ms */
    assert_int_equal(order[2], 1); /* 60 ms */
    printf("  timers of 10, 50, 60 ms fired after %llu, %llu, %llu ms\n",
           (unsigned long long)(t[1].fired_mono - t[1].started_mono),
           (unsigned long long)(t[4].fired_mono - t[4].started_mono),
           (unsigned long long)(t[0].fired_mono - t[0].started_mono));
    clk.timer_stop(clk.ud, id[0]); /* fired: no-op */
    assert_int_equal(moor_uvenv_pending(e), 0);
    moor_uvenv_close(e, count_done, f);
    assert_int_equal(f->closed, 0); /* done comes from the loop, not from close */
    assert_true(run_until(f, &f->closed, 1, WAIT_MS));
}

static void test_uvenv_close_pending(void **state)
{
    fx_t *f = *state;
    moor_uvenv_t *e;
    moor_clock_if_t clk;
    static int order[4], n;
    static tfire_t t;

    n = 0;
    t = (tfire_t){order, &n, 1, NULL, 0, 0, 0};

    assert_int_equal(moor_uvenv_new(&f->loop, &e), 0);
    clk = moor_uvenv_clock(e);
    for (int i = 0; i < 200; i++) /* grows the id table */
        assert_true(clk.timer_start(clk.ud, 10 + (uint64_t)i, tfire_cb, &t) != 0);
    assert_int_equal(moor_uvenv_pending(e), 200);
    moor_uvenv_close(e, count_done, f);
    assert_int_equal(clk.timer_start(clk.ud, 1, tfire_cb, &t), 0); /* closing */
    assert_true(run_until(f, &f->closed, 1, WAIT_MS));
    run_for(f, 250);
    assert_int_equal(n, 0); /* freed by close (ASan: no leak), never fired */
}

/* ---- pool: API edges ------------------------------------------------------ */

static void test_pool_api_errors(void **state)
{
    fx_t *f = *state;
    moor_peer_pool_t *p = pool_on(f, NULL, NULL, 8);
    moor_peer_opts_t o;
    moor_peer_pool_t *bad = NULL;
    rep_t r = {0};
    static const char *bad_addrs[] = {
        "",        "1.2.3.4", "1.2.3.4:", "1.2.3.4:0",   "1.2.3.4:65536",
        "host:80", ":80",     "[::1:80",  "1.2.3.4:80x", "[]:80"};

    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        int rc = moor_peer_pool_set_addr(p, "a", 1, bad_addrs[i]);
        if (rc != MOOR_EINVAL)
            fail_msg("address '%s': got %d, want MOOR_EINVAL", bad_addrs[i], rc);
    }
    assert_int_equal(moor_peer_pool_set_addr(p, "a", 1, NULL), MOOR_EINVAL);
    assert_int_equal(moor_peer_pool_set_addr(p, "", 0, "127.0.0.1:9"), MOOR_EINVAL);
    assert_int_equal(moor_peer_pool_set_addr(p, "a", 1, "[::1]:7000"), 0);
    assert_int_equal(moor_peer_pool_set_addr(p, "a", 1, "[::1]:7000"), 0);
    assert_int_equal(req(p, "zz", "_echo", NULL, 0, 0, 100, &r), MOOR_ENOTFOUND);
    assert_int_equal(req(p, "a", "", NULL, 0, 0, 100, &r), MOOR_EINVAL);
    assert_int_equal(moor_peer_pool_forget(p, "zz", 2), MOOR_ENOTFOUND);
    assert_int_equal(moor_peer_pool_forget(p, "a", 1), 0);
    assert_int_equal(req(p, "a", "_echo", NULL, 0, 0, 100, &r), MOOR_ENOTFOUND);
    assert_int_equal(r.calls, 0);
    pool_close(f, p);

    /* a request over the frame limit is refused alone (the peer would
     * close the connection and fail everything else in flight on it) */
    {
        static char big[4096];
        memset(big, 0xc0, sizeof(big)); /* 4,096 nils */
        moor_peer_opts_default(&o);
        o.max_frame = 1024;
        assert_int_equal(moor_peer_pool_new(&f->loop, &o, &p), 0);
        assert_int_equal(moor_peer_pool_set_addr(p, "a", 1, "127.0.0.1:9"), 0);
        assert_int_equal(req(p, "a", "_echo", big, sizeof(big), sizeof(big), 100, &r),
                         MOOR_ETOOLARGE);
        assert_int_equal(req(p, "a", "_echo", big, 900, 900, 100, &r), 0);
        assert_int_equal(r.calls, 0);
        while (r.calls == 0)
            uv_run(&f->loop, UV_RUN_ONCE);
        assert_int_equal(r.calls, 1);
        pool_close(f, p);
    }

    moor_peer_opts_default(&o);
    o.self_addr = "not-an-ip";
    assert_int_equal(moor_peer_pool_new(&f->loop, &o, &bad), MOOR_EINVAL);
    moor_peer_opts_default(&o);
    o.backoff_min_ms = 10, o.backoff_max_ms = 5;
    assert_int_equal(moor_peer_pool_new(&f->loop, &o, &bad), MOOR_EINVAL);

    assert_int_equal(moor_peer_err_code("NOAUTH", 6), MOOR_ENOAUTH);
    assert_int_equal(moor_peer_err_code("UNKNOWN_METHOD", 14), MOOR_ENOMETHOD);
    assert_int_equal(moor_peer_err_code("SHUTTING_DOWN", 13), MOOR_ECLOSED);
    assert_int_equal(moor_peer_err_code("NOAUTHX", 7), MOOR_EPEER);
    assert_int_equal(moor_peer_err_code("NOAUT", 5), MOOR_EPEER);
    assert_int_equal(moor_peer_err_code("", 0), MOOR_EPEER);
}

/* ---- pool: traffic ---------------------------------------------------------- */

#define PIPE_N 200

static void test_pipelined_two_peers(void **state)
{
    fx_t *f = *state;
    tsrv_t a, b;
    moor_peer_pool_t *p;
    char addr[64], params[16];
    static rep_t r[PIPE_N];
    static uint64_t want[PIPE_N]; /* what each answer must echo */
    int answered = 0;
    uint64_t seed = testutil_seed("test_pipelined_two_peers"), rng = seed;
    moor_srv_stats_t sa, sb;
    moor_transport_if_t tr;

    tsrv_start(f, &a, "127.0.0.1", 0, NULL);
    tsrv_start(f, &b, "127.0.0.1", 0, NULL);
    p = pool_on(f, "127.0.0.1", NULL, 1024);
    tr = moor_peer_pool_transport(p);
    addr_of(addr, sizeof(addr), "127.0.0.1", a.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "A", 1, addr), 0);
    addr_of(addr, sizeof(addr), "127.0.0.1", b.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "B", 1, addr), 0);
    memset(r, 0, sizeof(r));
    for (int i = 0; i < PIPE_N; i++) {
        const char *to = i % 2 ? "B" : "A";
        int rc;

        if (i % 3 == 0) { /* answered later, out of order */
            uint64_t ms = testutil_rand(&rng) % 40;
            size_t n = pack_uint(params, ms);
            rc = tr.request(tr.ud, to, 1, "_delay", params, n, 1, 10000, on_reply, &r[i]);
            want[i] = ms;
        } else {
            size_t n = pack_uint(params, want[i] = (uint64_t)i * 1000003u);
            rc = tr.request(tr.ud, to, 1, "_echo", params, n, 1, 10000, on_reply, &r[i]);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(r[i].calls, 0); /* never inside request() */
    }
    assert_int_equal(stats_of(p, "A").inflight + stats_of(p, "B").inflight, PIPE_N);
    for (uint64_t end = moor_clock_mono_ms() + WAIT_MS; moor_clock_mono_ms() < end;) {
        answered = 0;
        for (int i = 0; i < PIPE_N; i++)
            answered += r[i].calls;
        if (answered >= PIPE_N)
            break;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    if (answered != PIPE_N)
        fail_msg("%d of %d requests answered (seed %llu)", answered, PIPE_N,
                 (unsigned long long)seed);
    for (int i = 0; i < PIPE_N; i++)
        assert_echo_of(&r[i], want[i]);
    /* One pipelined connection per peer. */
    moor_srv_stats(a.srv, &sa);
    moor_srv_stats(b.srv, &sb);
    assert_int_equal(sa.accepted, 1);
    assert_int_equal(sb.accepted, 1);
    assert_int_equal(a.requests, PIPE_N / 2);
    assert_int_equal(b.requests, PIPE_N / 2);
    assert_int_equal(stats_of(p, "A").connects, 1);
    assert_int_equal(stats_of(p, "A").reconnects, 0);
    assert_int_equal(stats_of(p, "A").replies, PIPE_N / 2);
    assert_int_equal(stats_of(p, "A").inflight, 0);
    assert_int_equal(stats_of(p, "B").connected, 1);
    pool_close(f, p);
    tsrv_stop(f, &a);
    tsrv_stop(f, &b);
}

static void test_error_replies(void **state)
{
    fx_t *f = *state;
    tsrv_t s;
    moor_peer_pool_t *p;
    char addr[64], params[64];
    rep_t r[4] = {{0}};
    size_t n;

    tsrv_start(f, &s, "127.0.0.1", 0, NULL);
    p = pool_on(f, NULL, NULL, 16);
    addr_of(addr, sizeof(addr), "127.0.0.1", s.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    n = pack_strs(params, "WEIRD_THING", "it broke");
    assert_int_equal(req(p, "S", "_fail", params, n, 2, 5000, &r[0]), 0);
    n = pack_strs(params, "NOAUTH", "who are you");
    assert_int_equal(req(p, "S", "_fail", params, n, 2, 5000, &r[1]), 0);
    assert_int_equal(req(p, "S", "_nonesuch", NULL, 0, 0, 5000, &r[2]), 0);
    n = pack_uint(params, 7);
    assert_int_equal(req(p, "S", "_echo", params, n, 1, 5000, &r[3]), 0);
    assert_true(run_until(f, &r[3].calls, 1, WAIT_MS));
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].status, MOOR_EPEER);
    if (!strstr(r[0].diag, "WEIRD_THING") || !strstr(r[0].diag, "it broke") ||
        !strstr(r[0].diag, "S"))
        fail_msg("diagnostic '%s' lacks the peer, code or message", r[0].diag);
    assert_int_equal(r[0].rlen, 0);
    assert_int_equal(r[1].status, MOOR_ENOAUTH);
    assert_int_equal(r[2].status, MOOR_ENOMETHOD);
    assert_echo_of(&r[3], 7); /* the connection survives error answers */
    assert_int_equal(stats_of(p, "S").errors, 3);
    pool_close(f, p);
    tsrv_stop(f, &s);
}

static void test_timeout_late_reply(void **state)
{
    fx_t *f = *state;
    tsrv_t s;
    moor_peer_pool_t *p;
    char addr[64], params[16];
    rep_t r = {0}, ok = {0};
    size_t n = pack_uint(params, 5);

    tsrv_start(f, &s, "127.0.0.1", 0, NULL);
    p = pool_on(f, NULL, NULL, 16);
    addr_of(addr, sizeof(addr), "127.0.0.1", s.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    assert_int_equal(req(p, "S", "_hold", params, n, 1, 50, &r), 0);
    assert_true(run_until(f, &r.calls, 1, WAIT_MS));
    assert_int_equal(r.status, MOOR_ETIMEDOUT);
    assert_int_equal(stats_of(p, "S").timeouts, 1);
    assert_int_equal(stats_of(p, "S").inflight, 0);
    assert_int_equal(s.nheld, 1);
    tsrv_release(&s); /* the answer now comes, late */
    assert_int_equal(req(p, "S", "_echo", params, n, 1, 5000, &ok), 0);
    assert_true(run_until(f, &ok.calls, 1, WAIT_MS));
    assert_echo_of(&ok, 5);
    assert_int_equal(r.calls, 1); /* the late answer was dropped */
    assert_int_equal(stats_of(p, "S").late, 1);
    assert_int_equal(stats_of(p, "S").connects, 1);
    pool_close(f, p);
    tsrv_stop(f, &s);
}

static void test_max_pending(void **state)
{
    fx_t *f = *state;
    tsrv_t s;
    moor_peer_pool_t *p;
    char addr[64];
    rep_t r[5] = {{0}}, more = {0};
    int done = 0;

    tsrv_start(f, &s, "127.0.0.1", 0, NULL);
    p = pool_on(f, NULL, NULL, 4);
    addr_of(addr, sizeof(addr), "127.0.0.1", s.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(req(p, "S", "_hold", NULL, 0, 0, 10000, &r[i]), 0);
    assert_int_equal(req(p, "S", "_hold", NULL, 0, 0, 10000, &r[4]), MOOR_EAGAIN);
    assert_true(run_until(f, &s.nheld, 4, WAIT_MS));
    assert_int_equal(req(p, "S", "_hold", NULL, 0, 0, 10000, &r[4]), MOOR_EAGAIN);
    assert_int_equal(stats_of(p, "S").rejected, 2);
    tsrv_release(&s);
    for (uint64_t end = moor_clock_mono_ms() + WAIT_MS; moor_clock_mono_ms() < end && done < 4;) {
        uv_run(&f->loop, UV_RUN_ONCE);
        done = r[0].calls + r[1].calls + r[2].calls + r[3].calls;
    }
    assert_int_equal(done, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].status, 0);
    assert_int_equal(r[4].calls, 0); /* refused: no callback ever */
    assert_int_equal(req(p, "S", "_echo", NULL, 0, 0, 10000, &more), 0);
    assert_true(run_until(f, &more.calls, 1, WAIT_MS));
    assert_int_equal(more.status, 0);
    pool_close(f, p);
    tsrv_stop(f, &s);
}

static void test_close_inflight(void **state)
{
    fx_t *f = *state;
    tsrv_t s;
    moor_peer_pool_t *p;
    char addr[64];
    rep_t r[3] = {{0}}, again = {0};

    tsrv_start(f, &s, "127.0.0.1", 0, NULL);
    p = pool_on(f, NULL, NULL, 16);
    addr_of(addr, sizeof(addr), "127.0.0.1", s.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(req(p, "S", "_hold", NULL, 0, 0, 10000, &r[i]), 0);
    assert_true(run_until(f, &s.nheld, 2, WAIT_MS));
    /* Queued on the connection but not yet written when close comes. */
    r[2].again_pool = p, r[2].again_to = "S", r[2].again_rep = &again;
    assert_int_equal(req(p, "S", "_hold", NULL, 0, 0, 10000, &r[2]), 0);
    moor_peer_pool_close(p, count_done, f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, MOOR_ECLOSED);
    }
    assert_int_equal(r[2].again_rc, MOOR_ECLOSED); /* from inside the callback */
    assert_int_equal(again.calls, 0);
    assert_int_equal(f->closed, 0);
    assert_true(run_until(f, &f->closed, 1, WAIT_MS));
    tsrv_stop(f, &s); /* answers the held ones: nobody listens any more */
}

/* A reply callback closes the pool while more answers of the same read
 * are still to be handed out: each other request is answered once, with
 * MOOR_ECLOSED, and the answers already read are dropped. */
static void test_close_from_callback(void **state)
{
    fx_t *f = *state;
    tsrv_t s;
    moor_peer_pool_t *p;
    char addr[64];
    rep_t r[4] = {{0}};

    tsrv_start(f, &s, "127.0.0.1", 0, NULL);
    p = pool_on(f, NULL, NULL, 16);
    addr_of(addr, sizeof(addr), "127.0.0.1", s.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(req(p, "S", "_hold", NULL, 0, 0, 10000, &r[i]), 0);
    assert_true(run_until(f, &s.nheld, 4, WAIT_MS));
    r[0].close_pool = p, r[0].close_fx = f;
    tsrv_release(&s); /* four answers, most likely in one read */
    assert_true(run_until(f, &f->closed, 1, WAIT_MS));
    assert_int_equal(r[0].status, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].calls, 1);
    for (int i = 1; i < 4; i++)
        if (r[i].status != 0 && r[i].status != MOOR_ECLOSED)
            fail_msg("request %d: status %d, want 0 or MOOR_ECLOSED", i, r[i].status);
    tsrv_stop(f, &s);
}

/* ---- pool: authentication --------------------------------------------------- */

static void test_auth_first(void **state)
{
    fx_t *f = *state;
    tsrv_t s;
    moor_peer_pool_t *p;
    char addr[64], params[16];
    rep_t r[10] = {{0}}, r2 = {0};
    size_t n;
    moor_srv_stats_t st;

    tsrv_start(f, &s, "127.0.0.1", 0, "s3cret");
    p = pool_on(f, NULL, "s3cret", 64);
    addr_of(addr, sizeof(addr), "127.0.0.1", s.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    for (int i = 0; i < 10; i++) {
        n = pack_uint(params, (uint64_t)i);
        assert_int_equal(req(p, "S", "_echo", params, n, 1, 5000, &r[i]), 0);
    }
    assert_true(run_until(f, &r[9].calls, 1, WAIT_MS));
    for (int i = 0; i < 10; i++)
        assert_echo_of(&r[i], (uint64_t)i);
    assert_int_equal(s.auth_ok, 1);
    assert_int_equal(s.noauth, 0);
    /* A new connection authenticates again, first. */
    assert_int_equal(moor_peer_pool_forget(p, "S", 1), 0);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    n = pack_uint(params, 99);
    assert_int_equal(req(p, "S", "_echo", params, n, 1, 5000, &r2), 0);
    assert_true(run_until(f, &r2.calls, 1, WAIT_MS));
    assert_echo_of(&r2, 99);
    moor_srv_stats(s.srv, &st);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(s.auth_ok, 2);
    assert_int_equal(s.noauth, 0);
    pool_close(f, p);
    tsrv_stop(f, &s);
}

static void test_auth_wrong_secret(void **state)
{
    fx_t *f = *state;
    tsrv_t s;
    moor_peer_pool_t *p;
    char addr[64];
    rep_t r = {0}, again = {0};

    tsrv_start(f, &s, "127.0.0.1", 0, "s3cret");
    p = pool_on(f, NULL, "guess", 64);
    addr_of(addr, sizeof(addr), "127.0.0.1", s.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    r.again_pool = p, r.again_to = "S", r.again_rep = &again;
    assert_int_equal(req(p, "S", "_echo", NULL, 0, 0, 5000, &r), 0);
    assert_true(run_until(f, &r.calls, 1, WAIT_MS));
    assert_int_equal(r.status, MOOR_ENOAUTH);
    assert_int_equal(s.auth_bad, 1);
    /* Refused secret = failed connect: the member is down, requests fail
     * at once with the same code. */
    assert_int_equal(r.again_rc, MOOR_ENOAUTH);
    assert_int_equal(again.calls, 0);
    assert_int_equal(stats_of(p, "S").connect_failures, 1);
    assert_int_equal(stats_of(p, "S").connected, 0);
    pool_close(f, p);
    tsrv_stop(f, &s);
}

/* A member that answers _auth without {proto = 1} speaks another
 * node-to-node protocol: a failed connect with MOOR_EVERSION. */
static void test_auth_other_proto(void **state)
{
    fx_t *f = *state;
    tsrv_t s;
    moor_peer_pool_t *p;
    char addr[64];
    rep_t r = {0};

    tsrv_start(f, &s, "127.0.0.1", 0, "s3cret");
    s.old_auth = 1;
    p = pool_on(f, NULL, "s3cret", 64);
    addr_of(addr, sizeof(addr), "127.0.0.1", s.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "S", 1, addr), 0);
    assert_int_equal(req(p, "S", "_echo", NULL, 0, 0, 5000, &r), 0);
    assert_true(run_until(f, &r.calls, 1, WAIT_MS));
    assert_int_equal(r.status, MOOR_EVERSION);
    assert_int_equal(s.auth_ok, 1);
    assert_int_equal(stats_of(p, "S").connect_failures, 1);
    pool_close(f, p);
    tsrv_stop(f, &s);
}

/* ---- pool: source address ---------------------------------------------------- */

typedef struct rawl {
    uv_tcp_t l;
    uv_tcp_t c;
    int accepted;
    char peer_ip[64];
} rawl_t;

static void rawl_conn_cb(uv_stream_t *l, int status)
{
    rawl_t *w = l->data;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    assert_int_equal(status, 0);
    assert_int_equal(w->accepted, 0);
    uv_tcp_init(l->loop, &w->c);
    assert_int_equal(uv_accept(l, (uv_stream_t *)&w->c), 0);
    assert_int_equal(uv_tcp_getpeername(&w->c, (struct sockaddr *)&ss, &len), 0);
    uv_ip_name((struct sockaddr *)&ss, w->peer_ip, sizeof(w->peer_ip));
    w->accepted = 1;
}

static int loopback_alias_works(const char *ip)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    sa.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &sa.sin_addr);
    ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* The listener records the connection's source address, then drops it:
 * the request in flight fails with -ECONNRESET. */
static void check_source(fx_t *f, const char *self)
{
    rawl_t w = {0};
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    moor_peer_pool_t *p;
    char addr[64];
    rep_t r = {0};

    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&f->loop, &w.l);
    w.l.data = &w;
    assert_int_equal(uv_tcp_bind(&w.l, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&w.l, 8, rawl_conn_cb), 0);
    assert_int_equal(uv_tcp_getsockname(&w.l, (struct sockaddr *)&bound, &len), 0);
    p = pool_on(f, self, NULL, 16);
    addr_of(addr, sizeof(addr), "127.0.0.1", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    assert_int_equal(moor_peer_pool_set_addr(p, "L", 1, addr), 0);
    assert_int_equal(req(p, "L", "_echo", NULL, 0, 0, 10000, &r), 0);
    assert_true(run_until(f, &w.accepted, 1, WAIT_MS));
    if (strcmp(w.peer_ip, self) != 0)
        fail_msg("connection came from %s, want %s", w.peer_ip, self);
    uv_close((uv_handle_t *)&w.c, NULL);
    uv_close((uv_handle_t *)&w.l, NULL);
    assert_true(run_until(f, &r.calls, 1, WAIT_MS));
    assert_int_equal(r.status, -ECONNRESET);
    if (!strstr(r.diag, "L"))
        fail_msg("diagnostic '%s' does not name the peer", r.diag);
    pool_close(f, p);
}

static void test_self_addr(void **state)
{
    fx_t *f = *state;

    check_source(f, "127.0.0.1");
    if (loopback_alias_works("127.0.0.2"))
        check_source(f, "127.0.0.2");
    else
        fprintf(stderr, "test_self_addr: 127.0.0.2 not bindable here; checked 127.0.0.1 only\n");
}

/* ---- pool: membership changes ----------------------------------------------- */

static void test_set_addr_moves(void **state)
{
    fx_t *f = *state;
    tsrv_t a, b;
    moor_peer_pool_t *p;
    char addr[64];
    rep_t r = {0}, r2 = {0};

    tsrv_start(f, &a, "127.0.0.1", 0, NULL);
    tsrv_start(f, &b, "127.0.0.1", 0, NULL);
    p = pool_on(f, NULL, NULL, 16);
    addr_of(addr, sizeof(addr), "127.0.0.1", a.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "M", 1, addr), 0);
    assert_int_equal(req(p, "M", "_hold", NULL, 0, 0, 10000, &r), 0);
    assert_true(run_until(f, &a.nheld, 1, WAIT_MS));
    addr_of(addr, sizeof(addr), "127.0.0.1", b.port);
    assert_int_equal(moor_peer_pool_set_addr(p, "M", 1, addr), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, -ECONNRESET);
    assert_int_equal(req(p, "M", "_echo", NULL, 0, 0, 10000, &r2), 0);
    assert_true(run_until(f, &r2.calls, 1, WAIT_MS));
    assert_int_equal(r2.status, 0);
    assert_int_equal(b.requests, 1);
    assert_int_equal(a.requests, 1);
    pool_close(f, p);
    tsrv_stop(f, &a);
    tsrv_stop(f, &b);
}

/* ---- pool: a peer killed and restarted ---------------------------------------- */

/* Runs a test server in a child process on port (0: any); returns its pid
 * and sets *port_out.  The child dies with the test (alarm) at the latest. */
static pid_t spawn_server(int port, const char *secret, int *port_out)
{
    int pfd[2], got = -1;
    pid_t pid;
    struct pollfd pf;

    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uv_loop_t loop;
        tsrv_t s;
        moor_srv_opts_t o;
        int rc;

        close(pfd[0]);
        alarm(30);
        uv_loop_init(&loop);
        memset(&s, 0, sizeof(s));
        s.loop = &loop;
        s.secret = secret;
        moor_srv_opts_default(&o);
        o.port = port;
        rc = moor_srv_start(&loop, &o, tsrv_dispatch, &s, &s.srv);
        got = rc ? -1 : moor_srv_port(s.srv);
        if (write(pfd[1], &got, sizeof(got)) != sizeof(got))
            _exit(1);
        if (rc == 0)
            uv_run(&loop, UV_RUN_DEFAULT);
        _exit(0);
    }
    close(pfd[1]);
    pf.fd = pfd[0], pf.events = POLLIN;
    if (poll(&pf, 1, WAIT_MS) != 1 || read(pfd[0], &got, sizeof(got)) != sizeof(got) || got <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("child server did not start on port %d", port);
    }
    close(pfd[0]);
    *port_out = got;
    return pid;
}

static void kill_server(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void test_peer_killed_reconnects(void **state)
{
    fx_t *f = *state;
    moor_peer_pool_t *p;
    char addr[64], params[16];
    rep_t held[3] = {{0}}, refused = {0}, again = {0};
    int port, port2, got = 0, tries = 0;
    pid_t pid;
    size_t n = pack_uint(params, 1234);

    pid = spawn_server(0, "k", &port);
    p = pool_on(f, "127.0.0.1", "k", 64);
    addr_of(addr, sizeof(addr), "127.0.0.1", port);
    assert_int_equal(moor_peer_pool_set_addr(p, "K", 1, addr), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(req(p, "K", "_hold", NULL, 0, 0, 20000, &held[i]), 0);
    for (uint64_t end = moor_clock_mono_ms() + WAIT_MS;
         !stats_of(p, "K").connected && moor_clock_mono_ms() < end;)
        uv_run(&f->loop, UV_RUN_ONCE);
    run_for(f, 50); /* let the writes go out */
    kill_server(pid);
    for (uint64_t end = moor_clock_mono_ms() + WAIT_MS; moor_clock_mono_ms() < end && got < 3;) {
        uv_run(&f->loop, UV_RUN_ONCE);
        got = held[0].calls + held[1].calls + held[2].calls;
    }
    for (int i = 0; i < 3; i++) {
        if (held[i].calls != 1 || held[i].status != -ECONNRESET)
            fail_msg("held %d: %d calls, status %d (%s), want one -ECONNRESET", i, held[i].calls,
                     held[i].status, held[i].diag);
    }
    /* Reconnects at once after a live connection dies: refused now, and
     * from then on down for a backoff (checked from the callback, where
     * no time has passed). */
    refused.again_pool = p, refused.again_to = "K", refused.again_rep = &again;
    assert_int_equal(req(p, "K", "_echo", params, n, 1, 5000, &refused), 0);
    assert_true(run_until(f, &refused.calls, 1, WAIT_MS));
    assert_int_equal(refused.status, -ECONNREFUSED);
    assert_int_equal(refused.again_rc, -ECONNREFUSED);
    assert_int_equal(again.calls, 0);
    assert_int_equal(stats_of(p, "K").down, 1);

    pid = spawn_server(port, "k", &port2);
    assert_int_equal(port2, port);
    for (uint64_t end = moor_clock_mono_ms() + 10000; moor_clock_mono_ms() < end; tries++) {
        rep_t r = {0};
        int rc = req(p, "K", "_echo", params, n, 1, 2000, &r);

        if (rc == 0) {
            run_until(f, &r.calls, 1, WAIT_MS);
            if (r.calls == 1 && r.status == 0) {
                assert_echo_of(&r, 1234);
                got = -1;
                break;
            }
        }
        run_for(f, 20);
    }
    kill_server(pid);
    if (got != -1)
        fail_msg("no answer from the restarted peer after %d tries", tries);
    {
        moor_peer_stats_t st = stats_of(p, "K");
        if (st.reconnects != 1 || st.connect_failures < 1 || st.connects != 2)
            fail_msg("connects %llu reconnects %llu connect_failures %llu",
                     (unsigned long long)st.connects, (unsigned long long)st.reconnects,
                     (unsigned long long)st.connect_failures);
    }
    pool_close(f, p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_uvenv_timers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_uvenv_close_pending, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pool_api_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_two_peers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_error_replies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_late_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_max_pending, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_inflight, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth_first, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth_wrong_secret, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth_other_proto, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_self_addr, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_set_addr_moves, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_peer_killed_reconnects, fx_setup, fx_teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
