/*
 * fuzz_conn.c -- libFuzzer target for a whole connection: a byte stream of
 * several frames, cut at fuzzer-chosen points, through the server's real
 * read path (server.c's TEST connection: no socket, its writes land in a
 * buffer).
 *
 * Input: byte 0 % 8 is the number of cut sizes that follow (each 1..256
 * bytes, used in turn; none: the stream in one piece); the rest is the
 * stream.  The server runs with a small max_frame, max_inflight and
 * output_soft, so framing errors, lying headers, the inflight pause and
 * the output pause all happen; `hold` requests are kept unanswered until
 * the connection stops reading (then every held one is answered and the
 * loop runs, as time would).  A connection that is not reading takes no
 * bytes, like a socket.
 *
 * The oracle is the same stream cut into frames in one piece
 * (moor_rpc_frame_len, moor_rpc_parse): the server must dispatch exactly
 * those requests, in order, answer each (or BAD_REQUEST a frame whose
 * msgid it can read) and close exactly when the one-piece walk meets a
 * frame that ends the connection.  After a clean stream the client
 * half-closes, and every answer must reach the sink; after an error, the
 * answers that reached the sink must be among the expected ones.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/rpc.h"
#include "net/server.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"

#define FUZZ_MAX_FRAME 4096

/* abort() with the broken expectation named (libFuzzer shows stderr). */
#define FAIL(what)                                             \
    do {                                                       \
        fprintf(stderr, "fuzz_conn:%d: %s\n", __LINE__, what); \
        abort();                                               \
    } while (0)
#define FUZZ_MAX_HELD 4 /* == max_inflight: every request may be held */

static uv_loop_t loop;
static moor_srv_t *srv;
static moor_buf_t dispatched; /* one record per dispatched request */
static moor_buf_t sink;       /* what the server wrote */
static moor_srv_req_t *held[FUZZ_MAX_HELD];
static int nheld;

/* A request as a record: notify, msgid, method, params (lengths first). */
static void put_request(moor_buf_t *b, const moor_rpc_req_t *r)
{
    uint32_t h[4] = {(uint32_t)r->notify, r->msgid, (uint32_t)r->mlen, (uint32_t)r->plen};

    if (moor_buf_append(b, h, sizeof(h)) || moor_buf_append(b, r->method, r->mlen) ||
        moor_buf_append(b, r->params, r->plen))
        FAIL("out of memory or setup failed");
}

/* An answer as a sortable record: msgid (big-endian), code, result. */
static void put_answer(moor_buf_t *list, uint32_t msgid, const char *code, size_t clen,
                       const char *res, size_t rlen)
{
    size_t n = 4 + 1 + clen + rlen;
    unsigned char id[4] = {(unsigned char)(msgid >> 24), (unsigned char)(msgid >> 16),
                           (unsigned char)(msgid >> 8), (unsigned char)msgid};
    unsigned char cl = (unsigned char)clen;

    if (moor_buf_append(list, &n, sizeof(n)) || moor_buf_append(list, id, 4) ||
        moor_buf_append(list, &cl, 1) || moor_buf_append(list, code, clen) ||
        moor_buf_append(list, res, rlen))
        FAIL("out of memory or setup failed");
}

/* The echo result the dispatcher answers: [params...]. */
static void echo_result(moor_buf_t *b, const moor_rpc_req_t *r)
{
    msgpack_packer pk;

    moor_mp_packer_init(&pk, b);
    if (msgpack_pack_array(&pk, r->nparams) || moor_buf_append(b, r->params, r->plen))
        FAIL("out of memory or setup failed");
}

static void answer(moor_srv_req_t *req)
{
    moor_buf_t b = MOOR_BUF_INIT;

    echo_result(&b, &req->rpc);
    moor_srv_reply(req, b.data, b.len);
    moor_buf_free(&b);
}

static void dispatch(void *ud, moor_srv_req_t *req)
{
    (void)ud;
    put_request(&dispatched, &req->rpc);
    if (req->rpc.mlen == 4 && memcmp(req->rpc.method, "hold", 4) == 0) {
        if (nheld >= FUZZ_MAX_HELD)
            FAIL("max_inflight was passed");
        held[nheld++] = req;
        return;
    }
    answer(req);
}

static void release_held(void)
{
    int n = nheld;

    nheld = 0;
    for (int i = 0; i < n; i++)
        answer(held[i]);
}

static void setup(void)
{
    moor_srv_opts_t o;

    if (srv)
        return;
    moor_log_set_level(getenv("FUZZ_CONN_LOG") ? MOOR_LOG_DEBUG : MOOR_LOG_OFF);
    if (uv_loop_init(&loop))
        FAIL("out of memory or setup failed");
    moor_srv_opts_default(&o);
    o.max_frame = FUZZ_MAX_FRAME;
    o.max_inflight = FUZZ_MAX_HELD;
    o.output_soft = 512;
    o.idle_timeout_ms = o.auth_timeout_ms = o.frame_timeout_ms = 0;
    if (moor_srv_start(&loop, &o, dispatch, NULL, &srv))
        FAIL("out of memory or setup failed");
}

/* The one-piece walk: the requests to dispatch and the answers to send;
 * 1 if the stream ends the connection. */
static int expect(const char *s, size_t n, moor_buf_t *reqs, moor_buf_t *answers)
{
    size_t off = 0;

    while (off < n) {
        long f = moor_rpc_frame_len(s + off, n - off, FUZZ_MAX_FRAME);
        moor_rpc_req_t r;
        moor_buf_t res = MOOR_BUF_INIT;
        uint32_t id = 0;
        int have = 0;

        if (f == 0)
            return 0; /* a partial frame at the end */
        if (f < 0)
            return 1;
        if (moor_rpc_parse(s + off, (size_t)f, &r, &have, &id)) {
            if (!have)
                return 1;
            put_answer(answers, id, "BAD_REQUEST", 11, NULL, 0);
        } else {
            put_request(reqs, &r);
            echo_result(&res, &r);
            if (!r.notify)
                put_answer(answers, r.msgid, "", 0, res.data, res.len);
            moor_buf_free(&res);
        }
        off += (size_t)f;
    }
    return 0;
}

/* The answers in what the server wrote (only whole answers there). */
static void written_answers(const moor_buf_t *w, moor_buf_t *answers)
{
    size_t off = 0;

    while (off < w->len) {
        long f = moor_rpc_frame_len(w->data + off, w->len - off, (size_t)1 << 30);
        moor_rpc_answer_t a;

        if (f <= 0 || moor_rpc_parse_answer(w->data + off, (size_t)f, &a) != 0)
            FAIL("the server wrote something that is not an answer");
        if (a.is_error)
            put_answer(answers, a.msgid, a.code, a.clen, NULL, 0);
        else
            put_answer(answers, a.msgid, "", 0, a.result, a.rlen);
        off += (size_t)f;
    }
}

/* Splits a list of answer records into pointers, sorted. */
typedef struct rec {
    const char *p;
    size_t n;
} rec_t;

static int rec_cmp(const void *x, const void *y)
{
    const rec_t *a = x, *b = y;
    int c = memcmp(a->p, b->p, a->n < b->n ? a->n : b->n);

    return c ? c : (a->n > b->n) - (a->n < b->n);
}

static rec_t *records(const moor_buf_t *b, size_t *count)
{
    size_t off = 0, k = 0, n;
    rec_t *r = NULL;

    for (off = 0; off < b->len; off += sizeof(n) + n, k++)
        memcpy(&n, b->data + off, sizeof(n));
    if (k && !(r = malloc(k * sizeof(*r))))
        FAIL("out of memory or setup failed");
    for (off = 0, k = 0; off < b->len; off += sizeof(n) + n, k++) {
        memcpy(&n, b->data + off, sizeof(n));
        r[k].p = b->data + off + sizeof(n);
        r[k].n = n;
    }
    if (k)
        qsort(r, k, sizeof(*r), rec_cmp);
    *count = k;
    return r;
}

/* got must equal want (all) or be part of it (subset), as multisets. */
static void check_answers(const moor_buf_t *want, const moor_buf_t *got, int subset)
{
    size_t nw, ng, i = 0, j = 0;
    rec_t *w = records(want, &nw), *g = records(got, &ng);

    while (j < ng) { /* both sorted: every got one must be matched in order */
        while (i < nw && rec_cmp(&w[i], &g[j]) < 0) {
            if (!subset)
                FAIL("an expected answer is missing");
            i++;
        }
        if (i == nw || rec_cmp(&w[i], &g[j]) != 0)
            FAIL("an answer nobody asked for");
        i++, j++;
    }
    if (!subset && i != nw)
        FAIL("an expected answer is missing");
    free(w);
    free(g);
}

/* One turn of the loop with the held requests answered, as time passing
 * would do; 1 if anything moved. */
static int let_time_pass(void)
{
    size_t d = dispatched.len, w = sink.len;
    int h = nheld;

    release_held();
    uv_run(&loop, UV_RUN_NOWAIT);
    return h > 0 || dispatched.len != d || sink.len != w;
}

/* Feeds n bytes (0: EOF), letting time pass while the connection does
 * not read; 0, or -1 once it is closed. */
static int feed(moor_srv_conn_t *c, const char *p, size_t n)
{
    int stuck = 0;

    while (!moor_srv_test_feed(c, p, n)) {
        if (moor_srv_test_closed(c))
            return -1;
        stuck = let_time_pass() ? 0 : stuck + 1;
        if (stuck > 3)
            FAIL("paused with nothing left that could resume it");
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moor_buf_t want_reqs = MOOR_BUF_INIT, want_ans = MOOR_BUF_INIT, got_ans = MOOR_BUF_INIT;
    moor_srv_conn_t *c;
    const char *s;
    size_t ncut, n, off = 0, k = 0;
    int ends, closed = 0, stuck = 0;

    if (size < 1)
        return 0;
    setup();
    ncut = data[0] % 8;
    if (size < 1 + ncut)
        return 0;
    s = (const char *)data + 1 + ncut;
    n = size - 1 - ncut;
    ends = expect(s, n, &want_reqs, &want_ans);
    moor_buf_reset(&dispatched);
    moor_buf_reset(&sink);
    if (moor_srv_test_conn(srv, &sink, &c))
        FAIL("out of memory or setup failed");
    while (off < n && !closed) {
        size_t step = ncut ? 1 + (size_t)data[1 + k++ % ncut] : n;
        if (step > n - off)
            step = n - off;
        closed = feed(c, s + off, step) < 0;
        off += step;
    }
    if (!closed)
        closed = feed(c, NULL, 0) < 0;
    while (!moor_srv_test_closed(c)) {
        stuck = let_time_pass() ? 0 : stuck + 1;
        if (stuck > 3)
            FAIL("not closed (half-closed and drained, or ended by an error)");
    }
    /* The server dispatched exactly the one-piece requests, in order. */
    if (dispatched.len != want_reqs.len ||
        (want_reqs.len && memcmp(dispatched.data, want_reqs.data, want_reqs.len)))
        FAIL("the dispatched requests differ from the one-piece frames");
    written_answers(&sink, &got_ans);
    check_answers(&want_ans, &got_ans, ends);
    moor_srv_test_release(c);
    release_held(); /* answers to a closed connection are dropped */
    uv_run(&loop, UV_RUN_NOWAIT);
    moor_buf_free(&want_reqs);
    moor_buf_free(&want_ans);
    moor_buf_free(&got_ans);
    return 0;
}
