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

#define MAX_KEYS 64
#define MAX_TIMERS 4096
#define MAX_DONES 4096

typedef struct kv {
    moor_buf_t key, rec;
} kv_t;

static kv_t store[MAX_KEYS];
static size_t nstore;

static struct {
    uint64_t id;
    moor_timer_fn cb;
    void *arg;
} timers[MAX_TIMERS];
static size_t ntimers;
static uint64_t next_timer = 1, now_ms = 1000000;

static struct {
    moor_store_done_fn done;
    void *arg;
} dones[MAX_DONES];
static size_t ndones;

static unsigned calls, answers;

static uint64_t clk_now(void *ud)
{
    (void)ud;
    return now_ms;
}

static uint64_t clk_start(void *ud, uint64_t delay, moor_timer_fn cb, void *arg)
{
    (void)ud, (void)delay;
    if (ntimers == MAX_TIMERS)
        return 0;
    timers[ntimers].id = next_timer;
    timers[ntimers].cb = cb;
    timers[ntimers].arg = arg;
    ntimers++;
    return next_timer++;
}

static void clk_stop(void *ud, uint64_t id)
{
    (void)ud;
    for (size_t i = 0; i < ntimers; i++)
        if (timers[i].id == id)
            timers[i].cb = NULL;
}

static int tr_request(void *ud, const char *to, size_t tolen, const char *method,
                      const char *params, size_t plen, uint32_t nparams, uint32_t timeout_ms,
                      moor_peer_reply_fn cb, void *arg)
{
    (void)ud, (void)to, (void)tolen, (void)method, (void)params, (void)plen, (void)nparams;
    (void)timeout_ms, (void)cb, (void)arg;
    return -111; /* ECONNREFUSED: the others are down */
}

static int st_get(void *ud, const char *key, size_t klen, moor_buf_t *out)
{
    (void)ud;
    for (size_t i = 0; i < nstore; i++)
        if (store[i].key.len == klen && memcmp(store[i].key.data, key, klen) == 0)
            return moor_buf_append(out, store[i].rec.data, store[i].rec.len);
    return MOOR_ENOTFOUND;
}

static int st_put(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                  moor_store_done_fn done, void *arg)
{
    moor_record_t *r = malloc(sizeof(*r));
    kv_t *slot = NULL;

    (void)ud;
    if (!r || moor_record_decode(rec, rlen, r) != 0)
        abort(); /* the coordinator stores only records that decode */
    free(r);
    if (ndones == MAX_DONES)
        return MOOR_EAGAIN;
    for (size_t i = 0; i < nstore && !slot; i++)
        if (store[i].key.len == klen && memcmp(store[i].key.data, key, klen) == 0)
            slot = &store[i];
    if (!slot) {
        if (nstore == MAX_KEYS)
            return MOOR_ENOSPC;
        slot = &store[nstore++];
        moor_buf_append(&slot->key, key, klen);
    }
    slot->rec.len = 0;
    if (moor_buf_append(&slot->rec, rec, rlen))
        return MOOR_ENOMEM;
    dones[ndones].done = done;
    dones[ndones].arg = arg;
    ndones++;
    return 0;
}

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

static void check_answer(void *arg, int code, const char *errmsg, const char *result, size_t rlen)
{
    const char *p = result;

    (void)arg;
    answers++;
    if (code
            ? (code > 0 || !errmsg)
            : (!result || moor_mp_skip(&p, result + rlen, MOOR_MP_MAX_DEPTH) || p != result + rlen))
        abort();
}

static moor_ring_t *make_ring(void)
{
    moor_member_t m[3];
    moor_ring_t *ring;

    memset(m, 0, sizeof(m));
    for (int i = 0; i < 3; i++) {
        m[i].idlen = 1;
        m[i].id[0] = (char)('a' + i);
        m[i].vnodes = 8;
        m[i].status = MOOR_MEMBER_UP;
        snprintf(m[i].addr, sizeof(m[i].addr), "127.0.0.%d:7700", i + 1);
    }
    if (moor_ring_build(m, 3, &ring))
        abort();
    return ring;
}

/* Store completions, then timers, until nothing is left. */
static void settle(void)
{
    while (ndones || ntimers) {
        while (ndones) {
            moor_store_done_fn done = dones[ndones - 1].done;
            void *arg = dones[ndones - 1].arg;
            ndones--;
            done(arg, 0);
        }
        if (ntimers) {
            moor_timer_fn cb = timers[ntimers - 1].cb;
            void *arg = timers[ntimers - 1].arg;
            ntimers--;
            now_ms += 1000;
            if (cb)
                cb(arg);
        }
    }
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
    o.clock = (moor_clock_if_t){NULL, clk_now, clk_start, clk_stop};
    o.transport = (moor_transport_if_t){NULL, tr_request};
    o.store = (moor_store_if_t){NULL, st_get, st_put, NULL, NULL};
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
    for (size_t i = 0; i < nstore; i++) {
        moor_buf_free(&store[i].key);
        moor_buf_free(&store[i].rec);
    }
    nstore = 0;
    return 0;
}
