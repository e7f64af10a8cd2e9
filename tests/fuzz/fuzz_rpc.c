/*
 * fuzz_rpc.c -- libFuzzer target for the wire: the frame decoder and a
 * small dispatcher, on a byte stream cut into reads as a connection would
 * see it.
 *
 * Input: byte 0 picks the read size (1..64 bytes), the rest is the stream.
 * After each simulated read, whole frames are cut from the buffered bytes
 * exactly as server.c does (the resumable scan), and the stateless
 * moor_rpc_frame_len must give the same answer at every step.  Each frame
 * is copied into an allocation of its own size (so ASan sees any read past
 * it), parsed, and dispatched: the dispatcher reads the params with the mp
 * readers the way the node's methods do (get/put/del/call shapes, or a
 * generic walk of any value) and answers; every answer must decode back.
 * A failed frame ends the stream, as it closes a connection.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/mp.h"
#include "net/rpc.h"
#include "util/err.h"
#include "util/log.h"

#define FUZZ_MAX_FRAME 4096

/* Walks any value with the typed readers; depth is bounded by the frame. */
static int walk(const char **p, const char *end, int depth)
{
    const char *s;
    uint32_t n;
    uint64_t u;
    int64_t i;
    double d;
    int b, t = moor_mp_peek(*p, end);

    if (depth > MOOR_MP_MAX_DEPTH)
        abort(); /* the frame check should have refused this */
    switch (t) {
    case MOOR_MP_NIL: return moor_mp_read_nil(p, end);
    case MOOR_MP_BOOL: return moor_mp_read_bool(p, end, &b);
    case MOOR_MP_UINT: return moor_mp_read_uint(p, end, &u);
    case MOOR_MP_INT: return moor_mp_read_int(p, end, &i);
    case MOOR_MP_FLOAT: return moor_mp_read_double(p, end, &d);
    case MOOR_MP_STR: return moor_mp_read_str(p, end, &s, &n);
    case MOOR_MP_BIN: return moor_mp_read_bin(p, end, &s, &n);
    case MOOR_MP_EXT: return moor_mp_skip(p, end, 0);
    case MOOR_MP_ARRAY:
    case MOOR_MP_MAP:
        if (t == MOOR_MP_ARRAY ? moor_mp_read_array(p, end, &n) : moor_mp_read_map(p, end, &n))
            abort(); /* inside a validated frame */
        for (uint64_t k = 0; k < (t == MOOR_MP_MAP ? 2 * (uint64_t)n : n); k++)
            if (walk(p, end, depth + 1))
                abort();
        return 0;
    default: return t;
    }
}

/* opts{space=str, r/w/timeout_ms=uint, ctx=bin}: MOOR_EINVAL on a bad one. */
static int read_opts(const char **p, const char *end)
{
    uint32_t n, kl, vl;
    const char *k, *v;
    uint64_t u;

    if (moor_mp_read_map(p, end, &n))
        return MOOR_EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        if (moor_mp_read_str(p, end, &k, &kl))
            return MOOR_EINVAL;
        if (kl == 5 && memcmp(k, "space", 5) == 0) {
            if (moor_mp_read_str(p, end, &v, &vl))
                return MOOR_EINVAL;
        } else if (kl == 3 && memcmp(k, "ctx", 3) == 0) {
            if (moor_mp_read_bin(p, end, &v, &vl))
                return MOOR_EINVAL;
        } else if (moor_mp_read_uint(p, end, &u)) {
            return MOOR_EINVAL;
        }
    }
    return 0;
}

/* Returns 0 (answer with the params echoed) or an error for the reply. */
static int dispatch(const moor_rpc_req_t *r)
{
    const char *p = r->params, *end = r->params + r->plen, *s, *val;
    uint32_t n;

#define IS(m) (r->mlen == sizeof(m) - 1 && memcmp(r->method, m, r->mlen) == 0)
    if (IS("get") || IS("del") || IS("put")) {
        uint32_t want = IS("put") ? 2 : 1;
        if (r->nparams < want || r->nparams > want + 1)
            return MOOR_EINVAL;
        if (moor_mp_read_strbin(&p, end, &s, &n))
            return MOOR_EINVAL;
        if (want == 2) {
            val = p;
            if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) || p <= val)
                abort(); /* params were validated by parse */
        }
        if (r->nparams > want && read_opts(&p, end))
            return MOOR_EINVAL;
    } else if (IS("call")) {
        if (r->nparams < 1 || moor_mp_read_str(&p, end, &s, &n))
            return MOOR_EINVAL;
    }
#undef IS
    /* Whatever is left is walked generically; it must end at the end. */
    while (p < end)
        if (walk(&p, end, 2)) /* frame and params array above */
            abort();
    if (p != end)
        abort();
    return 0;
}

/* The answer must be one frame that decodes as a response to msgid. */
static void check_reply(const moor_buf_t *b, uint32_t msgid)
{
    const char *p = b->data, *end = b->data + b->len;
    uint32_t n;
    uint64_t v;

    if (moor_rpc_frame_len(b->data, b->len, (size_t)1 << 20) != (long)b->len)
        abort();
    if (moor_mp_read_array(&p, end, &n) || n != 4 || moor_mp_read_uint(&p, end, &v) || v != 1 ||
        moor_mp_read_uint(&p, end, &v) || v != msgid)
        abort();
    if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) || moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) ||
        p != end)
        abort();
}

static void answer(const moor_rpc_req_t *r, int rc)
{
    moor_buf_t b = MOOR_BUF_INIT, res = MOOR_BUF_INIT;
    msgpack_packer pk;

    if (rc) {
        if (moor_rpc_encode_error(&b, r->msgid, "BAD_PARAMS", moor_strerror(rc)))
            abort();
    } else {
        moor_mp_packer_init(&pk, &res);
        msgpack_pack_array(&pk, r->nparams);
        moor_buf_append(&res, r->params, r->plen);
        if (moor_rpc_encode_result(&b, r->msgid, res.data, res.len))
            abort();
    }
    if (!r->notify)
        check_reply(&b, r->msgid);
    moor_buf_free(&b);
    moor_buf_free(&res);
}

/* Parses and dispatches one frame; 0, or -1 when the stream must end. */
static int take_frame(const char *f, size_t n)
{
    char *own = malloc(n);
    moor_rpc_req_t r;
    int have = 0, rc;
    uint32_t id = 0;

    if (!own)
        abort();
    memcpy(own, f, n);
    rc = moor_rpc_parse(own, n, &r, &have, &id);
    if (rc == 0) {
        if (r.method < own || r.method + r.mlen > own + n || r.params < own ||
            r.params + r.plen > own + n)
            abort();
        answer(&r, dispatch(&r));
    } else if (have) {
        moor_buf_t b = MOOR_BUF_INIT;
        if (rc != MOOR_EPROTO || moor_rpc_encode_error(&b, id, "BAD_REQUEST", moor_diag_msg(rc)))
            abort();
        check_reply(&b, id);
        moor_buf_free(&b);
    }
    free(own);
    return rc && !have ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data + 1;
    size_t n, chunk, avail = 0, start = 0;
    moor_rpc_scan_t sc;

    if (size < 1)
        return 0;
    moor_log_set_level(MOOR_LOG_OFF);
    chunk = 1 + data[0] % 64;
    n = size - 1;
    moor_rpc_scan_init(&sc);
    while (avail < n) {
        avail = avail + chunk < n ? avail + chunk : n;
        for (;;) {
            size_t have = avail - start;
            long a = moor_rpc_frame_len(s + start, have, FUZZ_MAX_FRAME);
            long b = moor_rpc_scan_frame(&sc, s + start, have, FUZZ_MAX_FRAME);

            if (a != b)
                abort(); /* the resumable scan disagrees with the rescan */
            if (a == 0)
                break;
            if (a < 0)
                return 0; /* the connection would be closed here */
            if ((size_t)a > have || (size_t)a > FUZZ_MAX_FRAME)
                abort();
            if (take_frame(s + start, (size_t)a))
                return 0;
            start += (size_t)a;
        }
    }
    return 0;
}
