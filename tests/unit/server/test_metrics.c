/*
 * test_metrics.c -- the registry (server/metrics.h) and the HTTP pages
 * built on it (server/httpd.h).
 *
 * - quantiles of fixed-bucket histograms (util/hist.h);
 * - labels stay bounded: unknown methods and keyspaces are "other", an
 *   error code that is not a wire name is "other", and past
 *   MOOR_METRICS_MAX_ERRS series new ones fold into code "other";
 * - a real node serving requests through its dispatch point: /metrics
 *   (the handler of the HTTP port) and `info` give the same numbers
 *   (requests and errors per method, p99, collected engine figures), and
 *   the histograms are cumulative with _count equal to the request count;
 * - /status.json is JSON that reads back, / is HTML naming the node,
 *   /healthz is "ok", anything else 404.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/json.h"
#include "net/rpc.h"
#include "net/server.h"
#include "server/httpd.h"
#include "server/metrics.h"
#include "server/node.h"
#include "server/resp_info.h"
#include "util/err.h"
#include "util/hist.h"
#include "util/mp.h"
#include "testutil.h"

static void test_quantile(void **state)
{
    const double bounds[3] = {1, 2, 4};
    uint64_t empty[4] = {0, 0, 0, 0}, cum[4] = {0, 10, 10, 10}, tail[4] = {0, 0, 0, 5};
    (void)state;

    assert_true(moor_hist_quantile(bounds, 3, empty, 0.99) == 0);
    /* all ten in (1, 2]: the median is halfway */
    assert_true(fabs(moor_hist_quantile(bounds, 3, cum, 0.5) - 1.5) < 1e-9);
    assert_true(fabs(moor_hist_quantile(bounds, 3, cum, 1.0) - 2.0) < 1e-9);
    /* all in +Inf: the last finite bound */
    assert_true(moor_hist_quantile(bounds, 3, tail, 0.5) == 4);
}

static moor_metrics_t *registry(void)
{
    moor_config_t cfg;
    moor_metrics_t *m;

    moor_config_default(&cfg);
    snprintf(cfg.spaces[cfg.nspaces++].name, sizeof(cfg.spaces[0].name), "carts");
    assert_int_equal(moor_metrics_new(&cfg, &m), 0);
    return m;
}

static void test_labels_bounded(void **state)
{
    moor_metrics_t *m = registry();
    moor_buf_t params = MOOR_BUF_INIT, text = MOOR_BUF_INIT;
    msgpack_packer pk;
    char code[16];
    (void)state;

    assert_int_equal(moor_metrics_method("get", 3), moor_metrics_method("get", 3));
    assert_int_equal(moor_metrics_method("nope", 4), moor_metrics_method("_put", 4));
    /* the space of an opts map as the last param; none: default */
    int get = moor_metrics_method("get", 3), put = moor_metrics_method("put", 3);
    moor_mp_packer_init(&pk, &params);
    msgpack_pack_str_with_body(&pk, "k", 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "space", 5);
    msgpack_pack_str_with_body(&pk, "carts", 5);
    int carts = moor_metrics_space(m, get, params.data, params.len, 2);
    int def = moor_metrics_space(m, get, params.data, 1 + 1, 1); /* the key alone */
    assert_int_not_equal(carts, def);
    /* call takes no opts: its args are not read */
    assert_int_equal(
        moor_metrics_space(m, moor_metrics_method("call", 4), params.data, params.len, 2), def);
    /* a put whose value is a map with a "space" key, and no opts */
    assert_int_equal(moor_metrics_space(m, put, params.data, params.len, 2), def);
    moor_buf_reset(&params);
    msgpack_pack_str_with_body(&pk, "k", 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "space", 5);
    msgpack_pack_str_with_body(&pk, "unknown", 7);
    int other = moor_metrics_space(m, get, params.data, params.len, 2);
    assert_int_not_equal(other, def);
    assert_int_not_equal(other, carts);
    /* a truncated opts map is read as far as it goes, never past */
    assert_int_equal(moor_metrics_space(m, get, params.data, params.len - 3, 2), def);
    /* put k {space = "unknown"} {space = "carts"}: the opts are the third */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "space", 5);
    msgpack_pack_str_with_body(&pk, "carts", 5);
    assert_int_equal(moor_metrics_space(m, put, params.data, params.len, 3), carts);

    moor_metrics_request(m, moor_metrics_method("get", 3), other, "not a code", 1000);
    moor_metrics_request(m, moor_metrics_method("get", 3), carts, "NOT_FOUND", 1000);
    for (int i = 0; i < MOOR_METRICS_MAX_ERRS + 10; i++) {
        snprintf(code, sizeof(code), "C%d", i);
        moor_metrics_request(m, moor_metrics_method("put", 3), def, code, 1000);
    }
    assert_int_equal(moor_metrics_text(m, &text), 0);
    moor_buf_append(&text, "", 1);
    assert_non_null(strstr(text.data, "moor_requests_total{method=\"get\",space=\"other\"} 1\n"));
    assert_non_null(strstr(text.data, "moor_requests_total{method=\"get\",space=\"carts\"} 1\n"));
    assert_non_null(strstr(
        text.data, "moor_request_errors_total{method=\"get\",space=\"other\",code=\"other\"} 1\n"));
    assert_non_null(
        strstr(text.data,
               "moor_request_errors_total{method=\"get\",space=\"carts\",code=\"NOT_FOUND\"} 1\n"));
    /* 1 series above (a code that is no wire name counts as "other"
     * without a series), then 255 codes C0..C254; the 11 more fold into
     * "other" */
    assert_non_null(
        strstr(text.data,
               "moor_request_errors_total{method=\"put\",space=\"default\",code=\"C254\"} 1\n"));
    assert_null(strstr(text.data, "code=\"C255\""));
    assert_non_null(
        strstr(text.data,
               "moor_request_errors_total{method=\"put\",space=\"default\",code=\"other\"} 11\n"));
    moor_buf_free(&params);
    moor_buf_free(&text);
    moor_metrics_free(m);
}

/* ---- a node serving requests -------------------------------------------------------- */

static void srv_stopped(void *ud)
{
    *(int *)ud = 1;
}

static void send_req(moor_srv_conn_t *c, uint32_t id, const char *method, const char *key,
                     const char *value, const char *space)
{
    moor_buf_t params = MOOR_BUF_INIT, frame = MOOR_BUF_INIT;
    msgpack_packer pk;
    uint32_t np = 1;

    moor_mp_packer_init(&pk, &params);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    if (value) {
        msgpack_pack_str_with_body(&pk, value, strlen(value));
        np++;
    }
    if (space) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "space", 5);
        msgpack_pack_str_with_body(&pk, space, strlen(space));
        np++;
    }
    assert_int_equal(moor_rpc_encode_request(&frame, id, method, params.data, params.len, np), 0);
    assert_int_equal(moor_srv_test_feed(c, frame.data, frame.len), 1);
    moor_buf_free(&params);
    moor_buf_free(&frame);
}

/* The value of the sample whose line starts with prefix (name and labels). */
static double sample(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);

    while ((p = strstr(p, prefix))) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    fail_msg("no sample %s", prefix);
    return 0;
}

/* Sum of every sample of name whose labels hold want (e.g. method="get"). */
static double sum_of(const char *text, const char *name, const char *want, int *nfound)
{
    const char *p = text;
    double s = 0;
    size_t n = strlen(name);

    *nfound = 0;
    for (; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        const char *eol = strchr(p, '\n'), *sp;
        if (strncmp(p, name, n) != 0 || p[n] != '{')
            continue;
        sp = strchr(p, ' ');
        if (!sp || (eol && sp > eol))
            continue;
        if (want && !memmem(p, (size_t)(sp - p), want, strlen(want)))
            continue;
        s += strtod(sp + 1, NULL);
        (*nfound)++;
    }
    return s;
}

static const char *mfield(const char *p, const char *end, const char *key)
{
    const char *k;
    uint32_t n, kl;

    if (!p || moor_mp_read_map(&p, end, &n))
        return NULL;
    while (n--) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return NULL;
        if (kl == strlen(key) && memcmp(k, key, kl) == 0)
            return p;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return NULL;
    }
    return NULL;
}

static double mnum(const char *p, const char *end)
{
    uint64_t u;
    double d;

    assert_non_null(p);
    if (moor_mp_peek(p, end) == MOOR_MP_UINT) {
        assert_int_equal(moor_mp_read_uint(&p, end, &u), 0);
        return (double)u;
    }
    if (moor_mp_peek(p, end) == MOOR_MP_BOOL) {
        int b;
        assert_int_equal(moor_mp_read_bool(&p, end, &b), 0);
        return b;
    }
    assert_int_equal(moor_mp_read_double(&p, end, &d), 0);
    return d;
}

static void http_get(moor_httpd_t *d, const char *path, moor_buf_t *body, int *status,
                     const char **ctype)
{
    moor_http_req_t req = {0};
    moor_http_resp_t resp = {200, NULL, body};

    req.method = MOOR_HTTP_GET;
    req.path = path;
    req.plen = strlen(path);
    req.minor = 1;
    moor_buf_reset(body);
    moor_httpd_handle(d, &req, &resp);
    *status = resp.status;
    if (ctype)
        *ctype = resp.ctype;
}

/* Checks every method of info.requests.by_method against the text. */
static void check_by_method(const char *text, const char *info, size_t ilen)
{
    const char *end = info + ilen, *bm = mfield(mfield(info, end, "requests"), end, "by_method");
    const char *k;
    uint32_t n, kl;
    int nfound;

    assert_non_null(bm);
    assert_int_equal(moor_mp_read_map(&bm, end, &n), 0);
    assert_true(n >= 2); /* get and put at least */
    while (n--) {
        char want[48], name[16];
        uint64_t cum[MOOR_METRICS_NBOUNDS + 1];
        assert_int_equal(moor_mp_read_str(&bm, end, &k, &kl), 0);
        snprintf(name, sizeof(name), "%.*s", (int)kl, k);
        snprintf(want, sizeof(want), "method=\"%s\"", name);
        double count = sum_of(text, "moor_requests_total", want, &nfound);
        assert_true(nfound >= 1);
        assert_true(count == mnum(mfield(bm, end, "count"), end));
        double errors = sum_of(text, "moor_request_errors_total", want, &nfound);
        assert_true(errors == mnum(mfield(bm, end, "errors"), end));
        /* p99 from the text's buckets, merged over the keyspaces */
        for (int b = 0; b <= MOOR_METRICS_NBOUNDS; b++) {
            char le[80];
            if (b < MOOR_METRICS_NBOUNDS)
                snprintf(le, sizeof(le), "%s,le=\"%g\"", want, MOOR_METRICS_BOUNDS[b]);
            else
                snprintf(le, sizeof(le), "%s,le=\"+Inf\"", want);
            const char *lep = strstr(le, ",le");
            /* match method=... anywhere and le=... anywhere: sum by hand */
            double s = 0;
            const char *p = text;
            while ((p = strstr(p, "moor_request_duration_seconds_bucket{"))) {
                const char *eol = strchr(p, '\n');
                if (memmem(p, (size_t)(eol - p), want, strlen(want)) &&
                    memmem(p, (size_t)(eol - p), lep + 1, strlen(lep + 1)))
                    s += strtod(strchr(p, '}') + 2, NULL);
                p = eol;
            }
            cum[b] = (uint64_t)s;
            if (b)
                assert_true(cum[b] >= cum[b - 1]); /* cumulative */
        }
        assert_true(cum[MOOR_METRICS_NBOUNDS] == (uint64_t)count); /* +Inf == count */
        assert_true(fabs(moor_metrics_quantile(cum, 0.99) * 1000 -
                         mnum(mfield(bm, end, "p99_ms"), end)) < 1e-9);
        if (moor_mp_skip(&bm, end, MOOR_MP_MAX_DEPTH))
            fail();
    }
}

static void test_node_metrics_agree_with_info(void **state)
{
    char *dir = testutil_tmpdir("node-metrics");
    uv_loop_t loop;
    moor_config_t cfg;
    moor_node_t *n;
    moor_srv_t *srv;
    moor_srv_opts_t so;
    moor_srv_conn_t *c;
    moor_httpd_t *d;
    moor_buf_t sink = MOOR_BUF_INIT, body = MOOR_BUF_INIT, info = MOOR_BUF_INIT, mp = MOOR_BUF_INIT;
    int status, stopped = 0;
    const char *ctype, *p;
    (void)state;

    uv_loop_init(&loop);
    moor_config_default(&cfg);
    snprintf(cfg.node, sizeof(cfg.node), "mx");
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
    cfg.engine.sync_mode = MOOR_SYNC_NONE;
    cfg.engine.key_max = cfg.key_max + 264;
    cfg.engine.value_max = cfg.value_max * 4 + (1u << 20);
    snprintf(cfg.http_host, sizeof(cfg.http_host), "127.0.0.1");
    assert_int_equal(moor_node_open(&loop, &cfg, &n), 0);
    moor_srv_opts_default(&so);
    so.host = "127.0.0.1";
    so.port = 0;
    assert_int_equal(moor_srv_start(&loop, &so, moor_node_dispatch, n, &srv), 0);
    moor_node_set_server(n, srv);
    assert_int_equal(moor_httpd_start(&loop, &cfg, n, &d), 0);
    assert_true(moor_httpd_port(d) > 0);
    assert_int_equal(moor_srv_test_conn(srv, &sink, &c), 0);

    /* 10 puts, 10 gets (4 of a missing key), 3 bad gets (an unknown space) */
    uint32_t id = 1;
    for (int i = 0; i < 10; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        send_req(c, id++, "put", k, "v", NULL);
    }
    for (int i = 0; i < 10; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i < 6 ? i : 100 + i);
        send_req(c, id++, "get", k, NULL, NULL);
    }
    for (int i = 0; i < 3; i++)
        send_req(c, id++, "get", "x", NULL, "no-such-space");
    for (int i = 0; i < 10000 && (moor_node_pending(n) > 0 || sink.len == 0); i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 100; i++)
        uv_run(&loop, UV_RUN_NOWAIT);

    /* /metrics, then info: the same scrape source, so the same numbers */
    http_get(d, "/metrics", &body, &status, &ctype);
    assert_int_equal(status, 200);
    assert_non_null(strstr(ctype, "version=0.0.4"));
    moor_buf_append(&body, "", 1);
    assert_int_equal(moor_node_scrape(n, &info), 0);
    int nf;
    assert_true(sum_of(body.data, "moor_requests_total", "method=\"put\"", &nf) == 10);
    assert_true(sum_of(body.data, "moor_requests_total", "method=\"get\"", &nf) == 13);
    assert_true(sum_of(body.data, "moor_requests_total", "space=\"other\"", &nf) == 3);
    assert_true(sum_of(body.data, "moor_request_errors_total", "code=\"BAD_REQUEST\"", &nf) == 3);
    check_by_method(body.data, info.data, info.len);
    {
        const char *end = info.data + info.len, *eng = mfield(info.data, end, "engine");
        assert_true(sample(body.data, "moor_engine_memtable_bytes") ==
                    mnum(mfield(eng, end, "memtable_bytes"), end));
        assert_true(sample(body.data, "moor_engine_disk_bytes") ==
                    mnum(mfield(eng, end, "disk_bytes"), end));
        assert_true(sample(body.data, "moor_engine_user_written_bytes_total") ==
                    mnum(mfield(eng, end, "user_bytes_written"), end));
        assert_true(sample(body.data, "moor_engine_level_tables{level=\"0\"}") ==
                    mnum(mfield(eng, end, "tables_l0"), end));
        assert_true(sample(body.data, "moor_node_info{node=\"mx\",version=\"0.1.0\"}") == 1);
    }

    {
        /* RESP INFO is made from the same info map: the same counts */
        moor_buf_t txt = MOOR_BUF_INIT;
        moor_resp_info_t ri = {0};
        assert_int_equal(moor_resp_info_text(&txt, "moor_requests", info.data, info.len, &ri), 0);
        moor_buf_append(&txt, "", 1);
        assert_non_null(strstr(txt.data, "# Moor_requests\r\n"));
        assert_non_null(strstr(txt.data, "\r\nby_method_put_count:10\r\n"));
        assert_non_null(strstr(txt.data, "\r\nby_method_get_count:13\r\n"));
        assert_non_null(strstr(txt.data, "\r\nby_method_get_errors:3\r\n"));
        moor_buf_free(&txt);
    }
    http_get(d, "/status.json", &body, &status, &ctype);
    assert_int_equal(status, 200);
    assert_string_equal(ctype, "application/json");
    assert_int_equal(moor_json_to_mp(body.data, body.len, &mp, NULL), 0);
    p = mp.data;
    assert_non_null(mfield(p, mp.data + mp.len, "ring"));
    assert_non_null(mfield(p, mp.data + mp.len, "warnings"));
    http_get(d, "/", &body, &status, &ctype);
    assert_int_equal(status, 200);
    moor_buf_append(&body, "", 1);
    assert_non_null(strstr(body.data, "<svg id=\"ring\""));
    assert_non_null(strstr(body.data, "data-id=\"mx\" data-status=\"up\""));
    http_get(d, "/healthz", &body, &status, NULL);
    assert_int_equal(status, 200);
    assert_memory_equal(body.data, "ok\n", 3);
    http_get(d, "/nope", &body, &status, NULL);
    assert_int_equal(status, 404);

    moor_srv_test_release(c);
    moor_httpd_stop(d, NULL, NULL);
    moor_srv_stop(srv, srv_stopped, &stopped);
    for (int i = 0; i < 10000 && !stopped; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_true(stopped);
    moor_srv_free(srv);
    assert_int_equal(moor_node_close(n), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    moor_buf_free(&sink);
    moor_buf_free(&body);
    moor_buf_free(&info);
    moor_buf_free(&mp);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_labels_bounded),
        cmocka_unit_test(test_node_metrics_agree_with_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
