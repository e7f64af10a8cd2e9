/*
 * fuzz_node.c -- libFuzzer target for the node's request path: the input is
 * a byte stream as a client would send it; every whole frame is parsed
 * (rpc.h) and executed by the node's dispatcher (moor_node_exec) against a
 * real engine in a temporary directory, and every answer must be valid
 * MessagePack.  Covers frame decoding, parameter checking, records and
 * contexts on untrusted bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "util/mp.h"
#include "net/rpc.h"
#include "server/node.h"
#include "util/log.h"

static uv_loop_t loop;
static moor_node_t *node;

static void check_answer(void *ud, const char *errcode, const char *errmsg, const char *result,
                         size_t rlen)
{
    const char *p = result;

    (void)ud;
    if (errcode && (!errmsg || !*errcode))
        abort();
    if (result && (moor_mp_skip(&p, result + rlen, MOOR_MP_MAX_DEPTH) || p != result + rlen))
        abort(); /* the node produced malformed MessagePack */
}

static void setup(void)
{
    static char dir[] = "/tmp/moor-fuzz-node-XXXXXX";
    moor_config_t cfg;

    moor_log_set_level(MOOR_LOG_OFF);
    if (!mkdtemp(dir))
        abort();
    moor_config_default(&cfg);
    snprintf(cfg.node, sizeof(cfg.node), "fz");
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
    cfg.engine.sync_mode = MOOR_SYNC_NONE;
    cfg.engine.memtable_bytes = 1 << 20;
    cfg.engine.key_max = cfg.key_max + 264;
    cfg.engine.value_max = cfg.value_max * 4 + (1u << 20);
    uv_loop_init(&loop);
    if (moor_node_open(&loop, &cfg, &node))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;

    if (!node)
        setup();
    while (p < end) {
        moor_rpc_req_t req;
        int have_id, authed = 1;
        uint32_t id;
        long n = moor_rpc_frame_len(p, (size_t)(end - p), 1 << 20);

        if (n <= 0)
            break;
        /* snapshot writes copies of the data next to it on the
         * threadpool: kept off the fuzzer's disk (snapshot_test.py covers
         * its params). */
        if (moor_rpc_parse(p, (size_t)n, &req, &have_id, &id) == 0 &&
            !(req.mlen == 8 && memcmp(req.method, "snapshot", 8) == 0))
            moor_node_exec(node, req.method, req.mlen, req.params, req.plen, req.nparams, &authed,
                           check_answer, NULL);
        p += n;
    }
    while (moor_node_pending(node) > 0)
        uv_run(&loop, UV_RUN_ONCE);
    return 0;
}
