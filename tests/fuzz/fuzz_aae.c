/*
 * fuzz_aae.c -- libFuzzer target for the anti-entropy peer methods
 * (`_aae_tree`, `_aae_leaves`, `_aae_keys`, `_aae_fetch`, `_aae_push`,
 * `_aae_reap`; README "Node-to-node protocol").  The input is a byte stream
 * of MessagePack-RPC frames; each whole frame is parsed (rpc.h) and handed
 * to moor_aae_handle of node "a" on a three-member ring (a, b, c), whose
 * pushes merge through a coordinator's checked merge into an in-memory
 * store (a transport whose requests all fail, a clock whose timers fire
 * when the input is done).  Every call must be answered exactly once, with
 * valid MessagePack on success and a code and message on error; stored
 * records must decode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/aae.h"
#include "cluster/coord.h"
#include "cluster/record.h"
#include "net/rpc.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"
#include "world.h"

static moor_coord_t *coord;

static int merge(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                 moor_store_done_fn done, void *arg)
{
    (void)ud;
    return moor_coord_merge_peer_record(coord, key, klen, rec, rlen, done, arg);
}

static void note(void *ud, const char *key, size_t klen, const char *old, size_t oldlen,
                 const char *rec, size_t rlen)
{
    moor_aae_note(ud, key, klen, old, oldlen, rec, rlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    moor_clock_if_t clk = {NULL, clk_now, clk_start, clk_stop, NULL};
    moor_transport_if_t tr = {NULL, tr_request};
    moor_store_if_t st = {NULL, st_get, st_put, st_del, st_scan};
    moor_aae_space_t sp = {"default", 7, 3, 1000};
    moor_coord_opts_t o;
    moor_aae_opts_t ao;
    moor_aae_t *a;
    moor_ring_t *ring = make_ring();

    moor_log_set_level(MOOR_LOG_OFF);
    memset(&ao, 0, sizeof(ao));
    ao.node_id = "a";
    ao.idlen = 1;
    ao.clock = clk;
    ao.transport = tr;
    ao.store = st;
    ao.merge_local = merge;
    ao.spaces = &sp;
    ao.nspaces = 1;
    if (moor_aae_new(&ao, &a))
        abort();
    memset(&o, 0, sizeof(o));
    o.node_id = "a";
    o.idlen = 1;
    o.clock = clk;
    o.transport = tr;
    o.store = st;
    o.timeout_ms = 100;
    o.on_write = note;
    o.on_write_ud = a;
    if (moor_coord_new(&o, &coord))
        abort();
    moor_coord_set_ring(coord, ring);
    moor_aae_set_ring(a, ring);
    moor_ring_free(ring);
    settle(); /* the (empty) trees are built */
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
            moor_aae_handle(a, req.method, req.mlen, req.params, req.plen, req.nparams,
                            check_answer, NULL);
            settle();
        }
        p += n;
    }
    moor_aae_repair(a, NULL, 0, NULL, 0, 1); /* exchanges: every request fails at once */
    settle();
    moor_aae_free(a);
    moor_coord_free(coord);
    settle();
    if (answers != calls)
        abort(); /* every call answered exactly once */
    world_reset();
    return 0;
}
