/*
 * test_client.c -- the C client against a fake server thread in this
 * process (a listening socket on 127.0.0.1:0 that decodes requests with
 * moor_rpc_scan_frame / moor_rpc_parse and answers by method name):
 * blocking calls and the convenience wrappers' params, 1000 pipelined
 * requests answered in shuffled order, blocking calls mixed with pipelined
 * ones (answers set aside and handed out later), error answers (both
 * shapes), the non-blocking event-loop calls, timeouts (bounded), the
 * server closing cleanly or mid-frame, garbage and non-answer frames,
 * bad params refused without harming the connection, bad addresses and a
 * refused connect.
 *
 * Fake server methods: "echo" answers [method, params...]; "fail" answers
 * the error ["BOOM", "it failed"]; "strerr" the bare error "oops"; "sleep"
 * never answers; "close" closes; "halfclose" sends half an answer and
 * closes; "garbage" sends 0xc1; "request" sends a request frame back.
 * Every other method is echoed.  In batch mode the server holds answers
 * until `batch` requests arrived, then sends them in a shuffled order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <msgpack.h>

#include "net/client.h"
#include "util/mp.h"
#include "net/rpc.h"
#include "util/clock.h"
#include "util/err.h"
#include "testutil.h"

#define SERVER_LIFETIME_MS 15000 /* bound on every fake server */

typedef struct fake {
    int lfd, port;
    int batch; /* 0: answer at once; n: hold n answers, then shuffle */
    uint64_t seed;
    pthread_t th;
    volatile int stop;
    moor_buf_t held; /* batch mode: answers waiting, back to back */
    size_t held_n;
} fake_t;

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w, n -= (size_t)w;
    }
}

/* Sends the held answers in a random order (Fisher-Yates over offsets). */
static void flush_held(fake_t *f, int fd)
{
    size_t *off = calloc(f->held_n + 1, sizeof(size_t)), n = 0, at = 0;
    moor_buf_t out = MOOR_BUF_INIT;

    while (at < f->held.len) {
        off[n++] = at;
        at += (size_t)moor_rpc_frame_len(f->held.data + at, f->held.len - at, 1 << 20);
    }
    off[n] = at;
    for (size_t i = n; i > 1; i--) {
        size_t j = testutil_rand(&f->seed) % i, t = off[i - 1];
        off[i - 1] = off[j], off[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = f->held.data + off[i];
        moor_buf_append(&out, p, (size_t)moor_rpc_frame_len(p, f->held.len - off[i], 1 << 20));
    }
    write_all(fd, out.data, out.len);
    moor_buf_free(&out);
    free(off);
    moor_buf_reset(&f->held);
    f->held_n = 0;
}

#define IS(m) (req.mlen == strlen(m) && memcmp(req.method, m, req.mlen) == 0)

/* Answers one request frame.  Returns 1 when the connection must close. */
static int answer(fake_t *f, int fd, const char *frame, size_t len)
{
    moor_rpc_req_t req;
    moor_buf_t out = MOOR_BUF_INIT, res = MOOR_BUF_INIT;
    msgpack_packer pk;
    int close_after = 0;

    if (moor_rpc_parse(frame, len, &req, NULL, NULL))
        return 1;
    if (IS("sleep")) {
        return 0;
    } else if (IS("close")) {
        return 1;
    } else if (IS("halfclose")) {
        moor_rpc_encode_result(&out, req.msgid, "\xa5hello", 6);
        write_all(fd, out.data, out.len / 2);
        close_after = 1;
        moor_buf_reset(&out);
    } else if (IS("garbage")) {
        moor_buf_append(&out, "\xc1\xc1\xc1", 3);
    } else if (IS("request")) {
        moor_rpc_encode_request(&out, req.msgid, "x", NULL, 0, 0);
    } else if (IS("fail")) {
        moor_rpc_encode_error(&out, req.msgid, "BOOM", "it failed");
    } else if (IS("strerr")) {
        moor_mp_packer_init(&pk, &out);
        msgpack_pack_array(&pk, 4), msgpack_pack_uint8(&pk, 1), msgpack_pack_uint32(&pk, req.msgid);
        msgpack_pack_str_with_body(&pk, "oops", 4), msgpack_pack_nil(&pk);
    } else {
        moor_mp_packer_init(&pk, &res);
        msgpack_pack_array(&pk, req.nparams + 1);
        msgpack_pack_str_with_body(&pk, req.method, req.mlen);
        moor_buf_append(&res, req.params, req.plen);
        moor_rpc_encode_result(&out, req.msgid, res.data, res.len);
    }
    if (f->batch && out.len) {
        moor_buf_append(&f->held, out.data, out.len);
        if (++f->held_n == (size_t)f->batch)
            flush_held(f, fd);
    } else {
        write_all(fd, out.data, out.len);
    }
    moor_buf_free(&out);
    moor_buf_free(&res);
    return close_after;
}

static void serve(fake_t *f, int fd)
{
    moor_buf_t in = MOOR_BUF_INIT;
    uint64_t until = moor_clock_mono_ms() + SERVER_LIFETIME_MS;
    size_t off = 0;

    while (!f->stop && moor_clock_mono_ms() < until) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t n;
        long flen;
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        moor_buf_reserve(&in, 65536);
        n = recv(fd, in.data + in.len, in.cap - in.len, 0);
        if (n <= 0)
            break;
        in.len += (size_t)n;
        while ((flen = moor_rpc_frame_len(in.data + off, in.len - off, 1 << 24)) > 0) {
            if (answer(f, fd, in.data + off, (size_t)flen))
                goto done;
            off += (size_t)flen;
        }
        if (flen < 0)
            break;
    }
done:
    moor_buf_free(&in);
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    uint64_t until = moor_clock_mono_ms() + SERVER_LIFETIME_MS;

    while (!f->stop && moor_clock_mono_ms() < until) {
        struct pollfd pfd = {f->lfd, POLLIN, 0};
        int fd;
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        if ((fd = accept(f->lfd, NULL, NULL)) < 0)
            continue;
        serve(f, fd);
        close(fd);
    }
    return NULL;
}

static int listen_any(int *port, int do_listen)
{
    struct sockaddr_in a = {0};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static fake_t *fake_start(int batch)
{
    fake_t *f = calloc(1, sizeof(*f));

    f->batch = batch;
    f->seed = batch ? testutil_seed("fake server shuffle") : 1;
    f->lfd = listen_any(&f->port, 1);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
    return f;
}

static void fake_stop(fake_t *f)
{
    f->stop = 1;
    pthread_join(f->th, NULL);
    close(f->lfd);
    moor_buf_free(&f->held);
    free(f);
}

static moor_client_t *connect_to(fake_t *f, int timeout_ms)
{
    char addr[64];
    moor_client_t *c = NULL;
    int rc;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port);
    rc = moor_client_connect(addr, timeout_ms, &c);
    if (rc)
        fail_msg("connect %s: %s", addr, moor_diag_msg(rc));
    return c;
}

/* The params of an echo answer: [method, params...] -> after the method. */
static const char *echoed(const moor_client_reply_t *r, const char *method, uint32_t *n)
{
    const char *p = r->result, *end = r->result + r->rlen, *m;
    uint32_t ml;

    assert_null(r->error_code);
    assert_int_equal(moor_mp_read_array(&p, end, n), 0);
    assert_int_equal(moor_mp_read_str(&p, end, &m, &ml), 0);
    assert_int_equal(ml, strlen(method));
    assert_memory_equal(m, method, ml);
    (*n)--;
    return p;
}

static void test_blocking_call(void **state)
{
    fake_t *f = fake_start(0);
    moor_client_t *c = connect_to(f, 5000);
    moor_client_reply_t r;
    uint32_t n;
    const char *p, *end, *s;
    uint32_t sl;
    int64_t v;

    (void)state;
    assert_int_equal(moor_client_call(c, "echo", "\x2a\xa2hi", 4, 2, &r), 0);
    p = echoed(&r, "echo", &n);
    end = r.result + r.rlen;
    assert_int_equal(n, 2);
    assert_int_equal(moor_mp_read_int(&p, end, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), 0);
    assert_int_equal(sl, 2);
    assert_memory_equal(s, "hi", 2);
    /* No params at all. */
    assert_int_equal(moor_client_call(c, "ping", NULL, 0, 0, &r), 0);
    echoed(&r, "ping", &n);
    assert_int_equal(n, 0);
    moor_client_close(c);
    fake_stop(f);
}

/* get/put/del build [key, (value,) opts{space, ctx}]. */
static void test_wrappers(void **state)
{
    fake_t *f = fake_start(0);
    moor_client_t *c = connect_to(f, 5000);
    moor_client_reply_t r;
    const char *p, *end, *s;
    uint32_t n, sl, m;

    (void)state;
    assert_int_equal(moor_client_get(c, NULL, "k1", 2, &r), 0);
    p = echoed(&r, "get", &n);
    end = r.result + r.rlen;
    assert_int_equal(n, 2);
    assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), 0); /* UTF-8 key goes as str */
    assert_memory_equal(s, "k1", 2);
    assert_int_equal(moor_mp_read_map(&p, end, &m), 0);
    assert_int_equal(m, 0);

    assert_int_equal(moor_client_put(c, "sp", "\xff\x00", 2, "\x93\x01\x02\x03", 4, "CTX", 3, &r),
                     0);
    p = echoed(&r, "put", &n);
    end = r.result + r.rlen;
    assert_int_equal(n, 3);
    assert_int_equal(moor_mp_read_bin(&p, end, &s, &sl), 0); /* not UTF-8: bin */
    assert_int_equal(sl, 2);
    assert_memory_equal(s, "\xff\x00", 2);
    assert_memory_equal(p, "\x93\x01\x02\x03", 4); /* the value, byte for byte */
    p += 4;
    assert_int_equal(moor_mp_read_map(&p, end, &m), 0);
    assert_int_equal(m, 2);
    assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), 0);
    assert_memory_equal(s, "space", 5);
    assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), 0);
    assert_memory_equal(s, "sp", 2);
    assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), 0);
    assert_memory_equal(s, "ctx", 3);
    assert_int_equal(moor_mp_read_bin(&p, end, &s, &sl), 0);
    assert_int_equal(sl, 3);
    assert_memory_equal(s, "CTX", 3);

    assert_int_equal(moor_client_del(c, NULL, "k", 1, "C", 1, &r), 0);
    p = echoed(&r, "del", &n);
    assert_int_equal(n, 2);
    assert_int_equal(moor_client_where(c, "sp", "k", 1, &r), 0);
    p = echoed(&r, "where", &n);
    end = r.result + r.rlen;
    assert_int_equal(n, 2);
    assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), 0);
    assert_memory_equal(s, "k", 1);
    assert_int_equal(moor_mp_read_map(&p, end, &m), 0);
    assert_int_equal(m, 1);
    assert_int_equal(moor_mp_read_str(&p, end, &s, &sl), 0);
    assert_memory_equal(s, "space", 5);
    /* A value that is not one whole object is refused before sending. */
    assert_int_equal(moor_client_put(c, NULL, "k", 1, "\x92\x01", 2, NULL, 0, &r), MOOR_EINVAL);
    assert_int_equal(moor_client_put(c, NULL, "k", 1, "\x01\x02", 2, NULL, 0, &r), MOOR_EINVAL);
    assert_int_equal(moor_client_get(c, NULL, "still-fine", 10, &r), 0);
    moor_client_close(c);
    fake_stop(f);
}

static void test_pipelined_shuffled(void **state)
{
    enum { N = 1000 };
    fake_t *f = fake_start(N);
    moor_client_t *c = connect_to(f, 10000);
    uint32_t ids[N];
    unsigned char seen[N] = {0};
    moor_client_reply_t r;
    char params[128];
    int in_order = 1;

    (void)state;
    memset(params, 'x', sizeof(params));
    params[0] = (char)0xd9; /* str8 holding the request number and padding */
    params[1] = 126;
    for (int i = 0; i < N; i++) {
        long id;
        snprintf(params + 2, 16, "%08d", i);
        params[10] = 'x';
        id = moor_client_send(c, "echo", params, sizeof(params), 1);
        assert_true(id >= 0);
        ids[i] = (uint32_t)id;
    }
    assert_int_equal(moor_client_flush(c), 0);
    for (int k = 0; k < N; k++) {
        const char *p, *s;
        uint32_t n, sl;
        int i;
        int rc = moor_client_recv(c, &r);
        if (rc)
            fail_msg("recv %d: %s", k, moor_diag_msg(rc));
        p = echoed(&r, "echo", &n);
        assert_int_equal(moor_mp_read_str(&p, r.result + r.rlen, &s, &sl), 0);
        assert_int_equal(sl, 126);
        i = atoi(s); /* "%08d" then 'x' */
        assert_in_range(i, 0, N - 1);
        assert_int_equal(r.msgid, ids[i]);
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        in_order &= i == k;
    }
    assert_false(in_order);                                 /* the server really shuffled */
    assert_int_equal(moor_client_recv(c, &r), MOOR_EINVAL); /* nothing in flight */
    moor_client_close(c);
    fake_stop(f);
}

/* A blocking call while pipelined answers are due keeps them for recv. */
static void test_call_between_pipelined(void **state)
{
    fake_t *f = fake_start(0);
    moor_client_t *c = connect_to(f, 5000);
    moor_client_reply_t r;
    long id[3];
    uint32_t n;

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_true((id[i] = moor_client_send(c, "echo", "\x01", 1, 1)) >= 0);
    assert_int_equal(moor_client_call(c, "fail", NULL, 0, 0, &r), 0);
    assert_string_equal(r.error_code, "BOOM");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(moor_client_recv(c, &r), 0);
        assert_int_equal(r.msgid, (uint32_t)id[i]);
        echoed(&r, "echo", &n);
        assert_int_equal(n, 1);
    }
    assert_int_equal(moor_client_recv(c, &r), MOOR_EINVAL);
    moor_client_close(c);
    fake_stop(f);
}

static void test_error_answers(void **state)
{
    fake_t *f = fake_start(0);
    moor_client_t *c = connect_to(f, 5000);
    moor_client_reply_t r;
    uint32_t n;

    (void)state;
    assert_int_equal(moor_client_call(c, "fail", NULL, 0, 0, &r), 0);
    assert_string_equal(r.error_code, "BOOM");
    assert_string_equal(r.error_msg, "it failed");
    assert_int_equal(r.rlen, 1); /* result nil */
    assert_int_equal(moor_client_call(c, "strerr", NULL, 0, 0, &r), 0);
    assert_string_equal(r.error_code, "ERROR");
    assert_string_equal(r.error_msg, "oops");
    /* An error answer leaves the connection usable. */
    assert_int_equal(moor_client_call(c, "echo", NULL, 0, 0, &r), 0);
    echoed(&r, "echo", &n);
    /* So do bad params, refused before a byte is queued. */
    assert_int_equal(moor_client_call(c, "echo", "\x92", 1, 1, &r), MOOR_EINVAL);
    assert_int_equal(moor_client_send(c, "echo", "\x01\x02", 2, 1), MOOR_EINVAL);
    assert_int_equal(moor_client_call(c, "echo", "\x01", 1, 1, &r), 0);
    echoed(&r, "echo", &n);
    assert_int_equal(n, 1);
    moor_client_close(c);
    fake_stop(f);
}

static void test_nowait_api(void **state)
{
    fake_t *f = fake_start(0);
    moor_client_t *c = connect_to(f, 5000);
    moor_client_reply_t r;
    uint64_t until = moor_clock_mono_ms() + 10000;
    int got = 0, rc;

    (void)state;
    for (int i = 0; i < 10; i++)
        assert_true(moor_client_send(c, "echo", "\x07", 1, 1) >= 0);
    assert_true(moor_client_unsent(c) > 0);
    while (got < 10 && moor_clock_mono_ms() < until) {
        struct pollfd pfd = {moor_client_fd(c), POLLIN, 0};
        if (moor_client_unsent(c))
            pfd.events |= POLLOUT;
        poll(&pfd, 1, 100);
        assert_int_equal(moor_client_io_nowait(c), 0);
        while ((rc = moor_client_recv_nowait(c, &r)) == 1) {
            uint32_t n;
            echoed(&r, "echo", &n);
            got++;
        }
        assert_int_equal(rc, 0);
    }
    assert_int_equal(got, 10);
    assert_int_equal(moor_client_unsent(c), 0);
    assert_int_equal(moor_client_recv_nowait(c, &r), 0);
    moor_client_close(c);
    fake_stop(f);
}

static void test_timeout(void **state)
{
    fake_t *f = fake_start(0);
    moor_client_t *c = connect_to(f, 200);
    moor_client_reply_t r;
    uint64_t t0 = moor_clock_mono_ms(), took;
    int rc;

    (void)state;
    rc = moor_client_call(c, "sleep", NULL, 0, 0, &r);
    took = moor_clock_mono_ms() - t0;
    assert_int_equal(rc, MOOR_ETIMEDOUT);
    /* How long it took is printed, not asserted (a busy machine). */
    printf("  timed out after %llu ms with a 200 ms timeout\n", (unsigned long long)took);
    /* The connection is unusable from now on, and says why. */
    assert_int_equal(moor_client_call(c, "echo", NULL, 0, 0, &r), MOOR_ETIMEDOUT);
    assert_int_equal(moor_client_send(c, "echo", NULL, 0, 0), MOOR_ETIMEDOUT);
    assert_non_null(strstr(moor_diag_last()->msg, "unusable"));
    moor_client_close(c);

    /* recv waits at most the timeout too. */
    c = connect_to(f, 150);
    assert_true(moor_client_send(c, "sleep", NULL, 0, 0) >= 0);
    assert_int_equal(moor_client_recv(c, &r), MOOR_ETIMEDOUT);
    moor_client_close(c);
    fake_stop(f);
}

static void test_server_closes(void **state)
{
    fake_t *f = fake_start(0);
    moor_client_t *c = connect_to(f, 5000);
    moor_client_reply_t r;

    (void)state;
    assert_int_equal(moor_client_call(c, "close", NULL, 0, 0, &r), -ECONNRESET);
    assert_non_null(strstr(moor_diag_last()->msg, "closed the connection"));
    moor_client_close(c);

    c = connect_to(f, 5000);
    assert_int_equal(moor_client_call(c, "halfclose", NULL, 0, 0, &r), -ECONNRESET);
    assert_non_null(strstr(moor_diag_last()->msg, "in the middle of a frame"));
    assert_int_equal(moor_client_call(c, "echo", NULL, 0, 0, &r), -ECONNRESET);
    moor_client_close(c);
    fake_stop(f);
}

static void test_bad_frames(void **state)
{
    fake_t *f = fake_start(0);
    moor_client_t *c = connect_to(f, 5000);
    moor_client_reply_t r;

    (void)state;
    assert_int_equal(moor_client_call(c, "garbage", NULL, 0, 0, &r), MOOR_EPROTO);
    assert_int_equal(moor_client_call(c, "echo", NULL, 0, 0, &r), MOOR_EPROTO);
    moor_client_close(c);

    c = connect_to(f, 5000);
    assert_int_equal(moor_client_call(c, "request", NULL, 0, 0, &r), MOOR_EPROTO);
    assert_non_null(strstr(moor_diag_last()->msg, "not an answer"));
    moor_client_close(c);
    fake_stop(f);
}

static void test_connect_errors(void **state)
{
    static const char *bad[] = {"nocolon",       "host:",        ":80", "[::1]80",
                                "127.0.0.1:abc", "127.0.0.1:-1", "[::1"};
    moor_client_t *c = (moor_client_t *)1;
    char addr[64];
    int port, fd, rc;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rc = moor_client_connect(bad[i], 1000, &c);
        if (rc != MOOR_EINVAL)
            fail_msg("address '%s': rc %d, want MOOR_EINVAL", bad[i], rc);
        assert_null(c);
    }
    /* A bound port nobody listens on refuses. */
    fd = listen_any(&port, 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    rc = moor_client_connect(addr, 2000, &c);
    close(fd);
    assert_int_equal(rc, -ECONNREFUSED);
    assert_null(c);
    assert_non_null(strstr(moor_diag_last()->msg, addr));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocking_call),
        cmocka_unit_test(test_wrappers),
        cmocka_unit_test(test_pipelined_shuffled),
        cmocka_unit_test(test_call_between_pipelined),
        cmocka_unit_test(test_error_answers),
        cmocka_unit_test(test_nowait_api),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_server_closes),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_connect_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
