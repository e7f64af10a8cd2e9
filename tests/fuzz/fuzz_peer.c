/*
 * fuzz_peer.c -- libFuzzer target for the node-to-node methods a peer (or,
 * without a cluster secret, anyone) sends to the coordinator: `_get`,
 * `_put`, `_coord` in their map forms (README "Node-to-node protocol"),
 * `_put` with fallback_for going to a hint store.  The input is a byte stream of MessagePack-RPC
 * frames; each whole frame is parsed (rpc.h) and handed to moor_coord_handle_peer of a coordinator
 * "a" on a three-member ring (a, b, c), over a tiny world: an in-memory store, a transport whose
 * requests all fail at once (the other members are down), and a clock whose timers fire when the
 * input is done.  Every call must be answered exactly once, with valid MessagePack on success and a
 * code and message on error; stored records must decode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/coord.h"
#include "cluster/record.h"
#include "net/rpc.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"
#include "world.h"

/* The hint store: what a fallback keeps for a down owner must be a record
 * that decodes, for a member id; durable later, like the store. */
static int hint_put(void *ud, const char *owner, size_t olen, const char *space, size_t slen,
                    const char *key, size_t klen, const char *rec, size_t rlen,
                    moor_store_done_fn done, void *arg)
{
    moor_record_t *r = malloc(sizeof(*r));

    (void)ud, (void)space, (void)key;
    if (!r || olen == 0 || olen > MOOR_RING_ID_MAX || slen > 255 || klen == 0 ||
        moor_record_decode(rec, rlen, r))
        abort();
    free(r);
    if (ndones == MAX_DONES)
        return MOOR_EAGAIN;
    dones[ndones].done = done;
    dones[ndones].arg = arg;
    ndones++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    moor_coord_opts_t o;
    moor_coord_t *c;
    moor_ring_t *ring = make_ring();

    moor_log_set_level(MOOR_LOG_OFF);
    memset(&o, 0, sizeof(o));
    o.node_id = "a";
    o.idlen = 1;
    o.clock = (moor_clock_if_t){NULL, clk_now, clk_start, clk_stop, NULL};
    o.transport = (moor_transport_if_t){NULL, tr_request};
    o.store = (moor_store_if_t){NULL, st_get, st_put, st_del, st_scan};
    o.hint_put = hint_put;
    o.timeout_ms = 100;
    if (moor_coord_new(&o, &c))
        abort();
    moor_coord_set_ring(c, ring);
    moor_ring_free(ring);
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
            moor_coord_handle_peer(c, req.method, req.mlen, req.params, req.plen, req.nparams,
                                   check_answer, NULL);
            settle();
        }
        p += n;
    }
    moor_coord_free(c);
    settle();
    if (answers != calls)
        abort(); /* every call answered exactly once */
    world_reset();
    return 0;
}
