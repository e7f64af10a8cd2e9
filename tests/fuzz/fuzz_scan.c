/*
 * fuzz_scan.c -- libFuzzer target for key scans (scan.h, coord_scan.c):
 * the bytes a client or a peer controls.  The first input byte picks what
 * the rest is:
 *   0  a cursor, as a client sends it back: decoded, and a cursor that
 *      decodes encodes to the same bytes;
 *   1  MessagePack-RPC frames handed to moor_coord_handle_peer of node "a"
 *      (a ring of a, b, c; its store holds a few keys of "default"), so
 *      `_scan` requests of any shape reach the replica side;
 *   2  a byte for the page's limit, one for values, then the answer
 *      every replica asked gives to `_scan`: node "a" scans with r = 3,
 *      so b and c both answer these bytes, and the pages are checked and
 *      merged with a's own.
 * Every call must be answered exactly once, with valid MessagePack on
 * success and a code and message on error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/coord.h"
#include "cluster/record.h"
#include "cluster/scan.h"
#include "net/rpc.h"
#include "util/err.h"
#include "util/log.h"
#include "world.h"

#define MAX_PENDING 8

static struct {
    moor_peer_reply_fn cb;
    void *arg;
} pending[MAX_PENDING];
static size_t npending;

static int fz_request(const char *to, size_t tolen, const char *method, const char *params,
                      size_t plen, moor_peer_reply_fn cb, void *arg)
{
    (void)to, (void)tolen, (void)params, (void)plen;
    if (npending == MAX_PENDING || strcmp(method, "_scan") != 0)
        return -111;
    pending[npending].cb = cb;
    pending[npending].arg = arg;
    npending++;
    return 0;
}

static void fill_store(void)
{
    moor_buf_t ek = MOOR_BUF_INIT, rec = MOOR_BUF_INIT, ctx = MOOR_BUF_INIT;
    char key[8];

    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ek.len = rec.len = ctx.len = 0;
        if (moor_record_key("default", 7, key, strlen(key), &ek) ||
            moor_record_write(NULL, NULL, 0, "\x01", 1, i == 5, "a", 1, now_ms, 0, NULL, &rec, &ctx,
                              NULL) ||
            st_put(NULL, ek.data, ek.len, rec.data, rec.len, NULL, NULL))
            abort();
    }
    ndones = 0; /* nothing waits for these */
    moor_buf_free(&ek);
    moor_buf_free(&rec);
    moor_buf_free(&ctx);
}

static void cursor_case(const char *p, size_t n)
{
    moor_buf_t again = MOOR_BUF_INIT;
    const char *from;
    size_t flen;

    if (moor_scan_cursor_decode(p, n, &from, &flen) == 0) {
        if (moor_scan_cursor_encode(from, flen, &again) || again.len != n ||
            memcmp(again.data, p, n))
            abort();
    }
    moor_buf_free(&again);
}

static void frames_case(moor_coord_t *c, const char *p, const char *end)
{
    while (p < end) {
        moor_rpc_req_t req;
        int have_id;
        uint32_t id;
        long n = moor_rpc_frame_len(p, (size_t)(end - p), 1 << 20);
        if (n <= 0)
            break;
        if (moor_rpc_parse(p, (size_t)n, &req, &have_id, &id) == 0) {
            calls++;
            moor_coord_handle_peer(c, req.method, req.mlen, req.params, req.plen, req.nparams,
                                   check_answer, NULL);
            settle();
        }
        p += n;
    }
}

static void answer_case(moor_coord_t *c, const char *p, size_t n)
{
    moor_coord_scan_req_t q;

    if (n < 2)
        return;
    memset(&q, 0, sizeof(q));
    q.n = q.r = 3;
    q.limit = (uint8_t)p[0] % 8 + 1;
    q.values = p[1] & 1;
    calls++;
    moor_coord_scan(c, &q, check_answer, NULL);
    for (size_t i = 0; i < npending; i++)
        pending[i].cb(pending[i].arg, 0, p + 2, n - 2);
    npending = 0;
    settle();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    moor_coord_opts_t o;
    moor_coord_t *c;

    moor_log_set_level(MOOR_LOG_OFF);
    if (size == 0)
        return 0;
    if (data[0] % 3 == 0) {
        cursor_case(p + 1, size - 1);
        return 0;
    }
    world_request = fz_request;
    memset(&o, 0, sizeof(o));
    o.node_id = "a";
    o.idlen = 1;
    o.clock = (moor_clock_if_t){NULL, clk_now, clk_start, clk_stop, NULL};
    o.transport = (moor_transport_if_t){NULL, tr_request};
    o.store = (moor_store_if_t){NULL, st_get, st_put, st_del, st_scan};
    o.timeout_ms = 100;
    if (moor_coord_new(&o, &c))
        abort();
    {
        moor_ring_t *ring = make_ring();
        moor_coord_set_ring(c, ring);
        moor_ring_free(ring);
    }
    fill_store();
    calls = answers = 0;
    if (data[0] % 3 == 1)
        frames_case(c, p + 1, p + size);
    else
        answer_case(c, p + 1, size - 1);
    moor_coord_free(c);
    for (size_t i = 0; i < npending; i++) /* requests of a freed coordinator: absorbed */
        pending[i].cb(pending[i].arg, MOOR_ECLOSED, NULL, 0);
    npending = 0;
    settle();
    if (answers != calls)
        abort(); /* every call answered exactly once */
    world_reset();
    return 0;
}
