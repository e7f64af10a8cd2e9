/*
 * fuzz_resp.c -- libFuzzer target for the RESP2 door: the command cutter
 * (net/resp.c) and a whole RESP connection through the server's real
 * read path (server.c's TEST connection: no socket, writes land in a
 * buffer).
 *
 * Input: byte 0 % 8 is the number of cut sizes that follow (each 1..256
 * bytes, used in turn; none: the stream in one piece); the rest is the
 * stream.
 *
 * Oracle 1: the stream cut into commands in one piece (a fresh scan per
 * command) and with the resumable scan fed the cut sizes must give the
 * same commands, argument counts and arguments, and the same error.
 *
 * Oracle 2: the server (small max_frame, max_bulk, max_inflight and
 * output_soft, so limits and pauses happen) dispatches those commands;
 * the dispatcher answers each with its arguments echoed as an array,
 * except commands named `hold`, kept until the connection stops reading
 * and then answered newest first.  Commands starting with w/r/a are
 * writes, reads and alone-runners (resp_class), so every wait happens.
 * The bytes written must be exactly the echoes in request order, then,
 * when the stream ends in a protocol error, one "-ERR Protocol error"
 * line; after a clean stream the client half-closes and all must arrive.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/resp.h"
#include "net/server.h"
#include "util/err.h"
#include "util/log.h"

#define FUZZ_MAX_FRAME 2048
#define FUZZ_MAX_BULK 512
#define FUZZ_MAX_HELD 4 /* == max_inflight */

#define FAIL(what)                                             \
    do {                                                       \
        fprintf(stderr, "fuzz_resp:%d: %s\n", __LINE__, what); \
        abort();                                               \
    } while (0)

static const moor_resp_limits_t LIM = {FUZZ_MAX_FRAME, FUZZ_MAX_BULK,
                                       FUZZ_MAX_FRAME < MOOR_RESP_MAX_INLINE
                                           ? FUZZ_MAX_FRAME
                                           : MOOR_RESP_MAX_INLINE,
                                       MOOR_RESP_MAX_ARGS};

static uv_loop_t loop;
static moor_srv_t *srv;
static moor_buf_t sink;
static moor_srv_req_t *held[FUZZ_MAX_HELD];
static int nheld;

static void echo(moor_buf_t *b, const moor_resp_arg_t *a, uint32_t argc)
{
    if (moor_resp_array(b, argc))
        FAIL("out of memory");
    for (uint32_t i = 0; i < argc; i++)
        if (moor_resp_bulk(b, a[i].p, a[i].len))
            FAIL("out of memory");
}

static void answer(moor_srv_req_t *req)
{
    moor_buf_t b = MOOR_BUF_INIT;

    echo(&b, req->argv, req->argc);
    moor_srv_reply_resp(req, b.data, b.len);
    moor_buf_free(&b);
}

static void dispatch(void *ud, moor_srv_req_t *req)
{
    (void)ud;
    if (req->argv[0].len == 4 && memcmp(req->argv[0].p, "hold", 4) == 0) {
        if (nheld >= FUZZ_MAX_HELD)
            FAIL("max_inflight was passed");
        held[nheld++] = req;
        return;
    }
    answer(req);
}

static int classify(void *ud, const moor_srv_req_t *req)
{
    (void)ud;
    switch (req->argv[0].len ? req->argv[0].p[0] : 0) {
    case 'w': return MOOR_SRV_RESP_WRITE;
    case 'r': return MOOR_SRV_RESP_READ;
    case 'a': return MOOR_SRV_RESP_ALONE;
    default: return MOOR_SRV_RESP_FREE;
    }
}

static void release_held(void)
{
    int n = nheld;

    nheld = 0;
    for (int i = n - 1; i >= 0; i--) /* newest first: order is the server's job */
        answer(held[i]);
}

static void setup(void)
{
    moor_srv_opts_t o;

    if (srv)
        return;
    moor_log_set_level(getenv("FUZZ_RESP_LOG") ? MOOR_LOG_DEBUG : MOOR_LOG_OFF);
    if (uv_loop_init(&loop))
        FAIL("setup failed");
    moor_srv_opts_default(&o);
    o.proto = MOOR_SRV_PROTO_RESP;
    o.max_frame = FUZZ_MAX_FRAME;
    o.max_bulk = FUZZ_MAX_BULK;
    o.max_inflight = FUZZ_MAX_HELD;
    o.output_soft = 256;
    o.idle_timeout_ms = o.auth_timeout_ms = o.frame_timeout_ms = 0;
    o.resp_class = classify;
    if (moor_srv_start(&loop, &o, dispatch, NULL, &srv))
        FAIL("setup failed");
}

/* The one-piece walk: the echoes expected, in order; 1 if the stream
 * ends in a protocol error.  Checks the resumable scan against it. */
static int expect(const char *s, size_t n, const uint8_t *cuts, size_t ncut, moor_buf_t *want)
{
    size_t off = 0, k = 0;
    moor_resp_arg_t *a = NULL;

    while (off < n) {
        moor_resp_scan_t one, inc;
        uint32_t argc = 0, argc2 = 0;
        long f, g = 0;
        size_t have = 0;

        moor_resp_scan_init(&one);
        f = moor_resp_scan(&one, s + off, n - off, &LIM, &argc);
        /* The same command fed piece by piece. */
        moor_resp_scan_init(&inc);
        while (g == 0 && have < n - off) {
            size_t step = ncut ? 1 + (size_t)cuts[k++ % ncut] : n - off;
            have = have + step > n - off ? n - off : have + step;
            g = moor_resp_scan(&inc, s + off, have, &LIM, &argc2);
        }
        if (f != g || (f > 0 && argc != argc2))
            FAIL("the resumable scan disagrees with the one-piece scan");
        if (f == 0)
            break;
        if (f < 0) {
            free(a);
            return 1;
        }
        if (argc) {
            if (!(a = realloc(a, argc * sizeof(*a))))
                FAIL("out of memory");
            if (moor_resp_split(s + off, (size_t)f, argc, a, argc))
                FAIL("a command the scan cut does not split");
            echo(want, a, argc);
        }
        off += (size_t)f;
    }
    free(a);
    return 0;
}

static int let_time_pass(void)
{
    size_t w = sink.len;
    int h = nheld;

    release_held();
    uv_run(&loop, UV_RUN_NOWAIT);
    return h > 0 || sink.len != w;
}

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
    moor_buf_t want = MOOR_BUF_INIT;
    moor_srv_conn_t *c;
    const char *s;
    const uint8_t *cuts = data + 1;
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
    ends = expect(s, n, cuts, ncut, &want);
    moor_buf_reset(&sink);
    if (moor_srv_test_conn(srv, &sink, &c))
        FAIL("setup failed");
    while (off < n && !closed) {
        size_t step = ncut ? 1 + (size_t)cuts[k++ % ncut] : n;
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
    if (sink.len < want.len || (want.len && memcmp(sink.data, want.data, want.len)))
        FAIL("the replies are not the echoes in request order");
    if (ends) {
        const char *e = sink.data + want.len;
        size_t el = sink.len - want.len;
        if (el < 22 || memcmp(e, "-ERR Protocol error", 19) || memchr(e, '\n', el) != e + el - 1)
            FAIL("a protocol error is not answered by one -ERR line");
    } else if (sink.len != want.len) {
        FAIL("more was written than the echoes");
    }
    moor_srv_test_release(c);
    release_held();
    uv_run(&loop, UV_RUN_NOWAIT);
    moor_buf_free(&want);
    return 0;
}
