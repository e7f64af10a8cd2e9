/*
 * fuzz_xfer.c -- libFuzzer target for the transfer methods (`_xfer_pull`,
 * `_xfer_push`, `_xfer_status`) and for the answers a joining node's
 * pulls get (README "Node-to-node protocol").  The input is a byte
 * stream of MessagePack-RPC frames: each request frame is handed to
 * moor_xfer_handle of node "a"; each response frame ([1, id, error,
 * result]) answers the oldest `_xfer_pull` that "a", joining a ring of
 * a, b and c, has sent to its sources.  Every call must be answered
 * exactly once, with valid MessagePack on success and a code and message
 * on error; the store takes only records that decode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/coord.h"
#include "cluster/membership.h"
#include "cluster/xfer.h"
#include "net/rpc.h"
#include "util/log.h"
#include "world.h"

#define MAX_PENDING 256

static struct {
    moor_peer_reply_fn cb;
    void *arg;
} pending[MAX_PENDING];
static size_t npending;

static int fz_request(const char *to, size_t tolen, const char *method, const char *params,
                      size_t plen, moor_peer_reply_fn cb, void *arg)
{
    (void)to, (void)tolen, (void)method, (void)params, (void)plen;
    if (npending == MAX_PENDING)
        return -111;
    pending[npending].cb = cb;
    pending[npending].arg = arg;
    npending++;
    return 0;
}

static moor_coord_t *coord;

static int merge(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                 moor_store_done_fn done, void *arg)
{
    (void)ud;
    return moor_coord_merge_peer_record(coord, key, klen, rec, rlen, done, arg);
}

static int publish(void *ud, int status, uint32_t inactive)
{
    (void)ud, (void)status, (void)inactive;
    return 0;
}

static void table(moor_members_t *t)
{
    moor_members_init(t);
    for (int i = 0; i < 3; i++) {
        moor_member_entry_t e;
        memset(&e, 0, sizeof(e));
        e.m.idlen = 1;
        e.m.id[0] = (char)('a' + i);
        e.m.vnodes = 8;
        e.m.status = i ? MOOR_MEMBER_UP : MOOR_MEMBER_JOINING;
        e.m.inactive = i ? 0 : 8;
        e.incarnation = 1;
        snprintf(e.m.addr, sizeof(e.m.addr), "127.0.0.%d:7700", i + 1);
        if (moor_members_apply(t, &e) < 0)
            abort();
    }
}

/* A response frame's error and result: answers the oldest pull. */
static void answer_pull(const char *p, const char *end)
{
    const char *q = p, *res;
    uint32_t n;
    uint64_t kind, id;
    moor_peer_reply_fn cb;
    void *arg;

    if (npending == 0 || moor_mp_read_array(&q, end, &n) || n != 4 ||
        moor_mp_read_uint(&q, end, &kind) || kind != 1 || moor_mp_read_uint(&q, end, &id))
        return;
    cb = pending[0].cb;
    arg = pending[0].arg;
    memmove(&pending[0], &pending[1], (npending - 1) * sizeof(pending[0]));
    npending--;
    if (moor_mp_read_nil(&q, end) != 0) {
        cb(arg, MOOR_EPEER, NULL, 0);
        return;
    }
    res = q;
    if (moor_mp_skip(&q, end, MOOR_MP_MAX_DEPTH)) {
        cb(arg, MOOR_EPROTO, NULL, 0);
        return;
    }
    cb(arg, 0, res, (size_t)(q - res));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    moor_clock_if_t clk = {NULL, clk_now, clk_start, clk_stop, NULL};
    moor_transport_if_t tr = {NULL, tr_request};
    moor_store_if_t st = {NULL, st_get, st_put, st_del, st_scan};
    moor_xfer_space_t sp = {"default", 7, 3};
    moor_coord_opts_t o;
    moor_xfer_opts_t xo;
    moor_xfer_t *x;
    moor_members_t t;

    moor_log_set_level(MOOR_LOG_OFF);
    world_request = fz_request;
    memset(&o, 0, sizeof(o));
    o.node_id = "a";
    o.idlen = 1;
    o.clock = clk;
    o.transport = tr;
    o.store = st;
    o.timeout_ms = 100;
    if (moor_coord_new(&o, &coord))
        abort();
    memset(&xo, 0, sizeof(xo));
    xo.node_id = "a";
    xo.idlen = 1;
    xo.clock = clk;
    xo.transport = tr;
    xo.store = st;
    xo.merge = merge;
    xo.spaces = &sp;
    xo.nspaces = 1;
    moor_xfer_params_default(&xo.p);
    xo.p.settle_ms = 0;
    xo.p.rate_kb_s = 0; /* no pacing */
    xo.publish = publish;
    if (moor_xfer_new(&xo, &x))
        abort();
    table(&t);
    moor_xfer_set_members(x, &t);
    moor_members_free(&t);
    moor_xfer_start(x, MOOR_XFER_JOINING, 8, 8);
    settle(); /* the settle wait: the first pulls go out */
    calls = answers = 0;
    while (p < end) {
        moor_rpc_req_t req;
        int have_id;
        uint32_t id;
        long n = moor_rpc_frame_len(p, (size_t)(end - p), 1 << 20);

        if (n <= 0)
            break;
        if (moor_rpc_parse(p, (size_t)n, &req, &have_id, &id) == 0) {
            calls++;
            moor_xfer_handle(x, req.method, req.mlen, req.params, req.plen, req.nparams,
                             check_answer, NULL);
        } else {
            answer_pull(p, p + n);
        }
        settle();
        p += n;
    }
    moor_xfer_free(x);
    while (npending) { /* the transport answers what is left: closed */
        npending--;
        pending[npending].cb(pending[npending].arg, MOOR_ECLOSED, NULL, 0);
    }
    moor_coord_free(coord);
    settle();
    if (answers != calls)
        abort();
    world_reset();
    world_request = NULL;
    return 0;
}
