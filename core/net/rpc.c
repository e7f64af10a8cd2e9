/*
 * rpc.c -- MessagePack-RPC framing, request splitting and response encoding.
 *
 * A frame is one MessagePack value, so its end is found by validating it
 * (moor_mp_skip): there is no length prefix to trust.  Valid frames are
 * always arrays of 3 or 4 items, so the first byte alone rejects a stream
 * that is not MessagePack-RPC before anything of it is buffered.
 *
 * moor_rpc_frame_len is stateless and rescans from the start every call;
 * moor_rpc_scan_frame keeps the same walk's state (offset plus a stack of
 * "objects still due" per open container, exactly moor_mp_skip's) so that
 * the server's cost per connection stays linear in the bytes received.
 * Both must give identical answers; the fuzz target checks that.
 *
 * Stateless apart from the caller's scan state; thread-safe.
 */
#include "rpc.h"

#include <string.h>

#include "util/mp.h"
#include "util/err.h"

_Static_assert(MOOR_RPC_SCAN_DEPTH == MOOR_MP_MAX_DEPTH, "scan stack must match mp depth");

/* Items of a frame's top array: notification 3, request/response 4. */
static int frame_head(const char *buf, size_t len)
{
    const char *p = buf;
    uint32_t n;
    int rc;

    if (len == 0)
        return MOOR_EAGAIN;
    rc = moor_mp_read_array(&p, buf + len, &n);
    if (rc == MOOR_EAGAIN)
        return rc;
    if (rc == MOOR_EPROTO)
        return moor_diag(MOOR_EPROTO, "byte 0xc1 is never valid MessagePack");
    if (rc)
        return moor_diag(MOOR_EPROTO, "frame is not a MessagePack array (first byte 0x%02x)",
                         (unsigned char)buf[0]);
    if (n != 3 && n != 4)
        return moor_diag(MOOR_EPROTO, "frame is an array of %u items, not 3 or 4", n);
    return 0;
}

static long frame_answer(int rc, size_t frame, size_t len, size_t max_frame)
{
    if (rc == 0)
        return (long)frame;
    if (rc == MOOR_EAGAIN) {
        if (len < max_frame)
            return 0;
        return moor_diag(MOOR_ETOOLARGE, "no whole frame in %zu bytes (max_frame %zu)", len,
                         max_frame);
    }
    if (moor_diag_last()->code != rc)
        moor_diag(rc, "invalid MessagePack (byte 0xc1, or nesting deeper than %d)",
                  MOOR_MP_MAX_DEPTH);
    return rc;
}

long moor_rpc_frame_len(const char *buf, size_t len, size_t max_frame)
{
    /* Looking no further than max_frame bounds the work and makes a
     * longer frame come out as "incomplete", hence MOOR_ETOOLARGE. */
    size_t lim = len < max_frame ? len : max_frame;
    const char *p = buf;
    int rc;

    moor_diag_clear();
    rc = frame_head(buf, lim);
    if (rc == 0)
        rc = moor_mp_skip(&p, buf + lim, MOOR_MP_MAX_DEPTH);
    return frame_answer(rc, (size_t)(p - buf), len, max_frame);
}

void moor_rpc_scan_init(moor_rpc_scan_t *s)
{
    s->off = 0;
    s->depth = 0;
    s->started = 0;
    s->pending[0] = 1;
}

/* Header bytes of the container whose first byte is c. */
static size_t container_hlen(unsigned char c)
{
    if (c == 0xdc || c == 0xde)
        return 3;
    if (c == 0xdd || c == 0xdf)
        return 5;
    return 1;
}

/* One object at p: a container's header (pushing its children) or a whole
 * scalar/str/bin/ext.  Mirrors moor_mp_skip's checks, in its order: header
 * truncated, depth (an empty container counts as a level), count beyond
 * the bytes left. */
static int scan_one(moor_rpc_scan_t *s, const char **p, const char *end)
{
    int t = moor_mp_peek(*p, end);
    const char *q = *p;
    uint64_t children;
    uint32_t n;
    int rc;

    if (t != MOOR_MP_ARRAY && t != MOOR_MP_MAP) {
        if ((rc = moor_mp_skip(&q, end, 0)))
            return rc;
        s->pending[s->depth]--;
        *p = q;
        return 0;
    }
    if ((size_t)(end - q) < container_hlen((unsigned char)*q))
        return MOOR_EAGAIN;
    if (s->depth + 1 > MOOR_MP_MAX_DEPTH)
        return MOOR_EPROTO;
    rc = t == MOOR_MP_ARRAY ? moor_mp_read_array(&q, end, &n) : moor_mp_read_map(&q, end, &n);
    if (rc)
        return rc;
    children = t == MOOR_MP_MAP ? 2 * (uint64_t)n : n;
    if (children > (uint64_t)(end - q))
        return MOOR_EAGAIN; /* each child takes a byte at least */
    s->pending[s->depth]--;
    if (children)
        s->pending[++s->depth] = children;
    *p = q;
    return 0;
}

long moor_rpc_scan_frame(moor_rpc_scan_t *s, const char *buf, size_t len, size_t max_frame)
{
    size_t lim = len < max_frame ? len : max_frame;
    const char *p, *end = buf + lim;
    long ans;
    int rc = 0;

    moor_diag_clear();
    if (!s->started) {
        rc = frame_head(buf, lim);
        s->started = rc == 0;
    }
    p = buf + s->off;
    while (rc == 0 && s->depth >= 0) {
        if (s->pending[s->depth] == 0) {
            s->depth--;
            continue;
        }
        if (p >= end) {
            rc = MOOR_EAGAIN;
            break;
        }
        rc = scan_one(s, &p, end);
        s->off = (size_t)(p - buf);
    }
    ans = frame_answer(rc, s->off, len, max_frame);
    if (ans != 0)
        moor_rpc_scan_init(s);
    return ans;
}

static int bad(const char *what)
{
    return moor_diag(MOOR_EPROTO, "bad request: %s", what);
}

/* [0, msgid, ...]: the msgid is read before the arity is judged so that a
 * request with the wrong number of items can still be answered. */
static int parse_head(const char **p, const char *end, uint32_t n, moor_rpc_req_t *req, int *have)
{
    uint64_t type, id;

    if (n < 1 || moor_mp_read_uint(p, end, &type))
        return bad("item 0 must be the message type (0 request, 2 notification)");
    if (type == 2) {
        req->notify = 1;
        return n == 3 ? 0 : bad("a notification must be [2, method, params]");
    }
    if (type != 0)
        return moor_diag(MOOR_EPROTO, "bad request: message type %llu is not a request",
                         (unsigned long long)type);
    if (n >= 2 && moor_mp_read_uint(p, end, &id) == 0 && id <= UINT32_MAX) {
        req->msgid = (uint32_t)id;
        *have = 1;
    }
    if (n != 4)
        return moor_diag(MOOR_EPROTO,
                         "bad request: a request must be [0, msgid, method, "
                         "params], got %u items",
                         n);
    return *have ? 0 : bad("msgid must be an unsigned 32-bit integer");
}

static int parse_body(const char **p, const char *end, moor_rpc_req_t *req)
{
    uint32_t mlen;
    const char *q;

    if (moor_mp_read_str(p, end, &req->method, &mlen))
        return bad("method must be a string");
    req->mlen = mlen;
    if (moor_mp_read_array(p, end, &req->nparams))
        return bad("params must be an array");
    req->params = q = *p;
    /* Depth left under [frame [params [...]]] is the frame limit minus 2. */
    for (uint32_t i = 0; i < req->nparams; i++)
        if (moor_mp_skip(&q, end, MOOR_MP_MAX_DEPTH - 2))
            return moor_diag(MOOR_EPROTO, "bad request: param %u is not valid MessagePack", i);
    req->plen = (size_t)(q - req->params);
    *p = q;
    return *p == end ? 0 : bad("bytes after the params array");
}

int moor_rpc_parse(const char *frame, size_t len, moor_rpc_req_t *req, int *have_msgid,
                   uint32_t *msgid_out)
{
    const char *p = frame, *end = frame + len;
    int have = 0, rc;
    uint32_t n;

    memset(req, 0, sizeof(*req));
    if (moor_mp_read_array(&p, end, &n))
        rc = bad("frame is not an array");
    else if ((rc = parse_head(&p, end, n, req, &have)) == 0)
        rc = parse_body(&p, end, req);
    if (have_msgid)
        *have_msgid = have;
    if (have && msgid_out)
        *msgid_out = req->msgid;
    return rc;
}

/* Packs into out; on failure out goes back to mark. */
#define PACK_OR_FAIL(expr) \
    do {                   \
        if ((expr) != 0)   \
            goto fail;     \
    } while (0)

int moor_rpc_encode_result(moor_buf_t *out, uint32_t msgid, const char *result, size_t rlen)
{
    size_t mark = out->len;
    msgpack_packer pk;

    if (result && rlen) {
        const char *p = result;
        /* Inside the reply array, so one level less than a frame. */
        if (moor_mp_skip(&p, result + rlen, MOOR_MP_MAX_DEPTH - 1) || p != result + rlen)
            return moor_diag(MOOR_EINVAL, "result is not one MessagePack object (%zu bytes)", rlen);
    }
    moor_mp_packer_init(&pk, out);
    PACK_OR_FAIL(msgpack_pack_array(&pk, 4));
    PACK_OR_FAIL(msgpack_pack_uint8(&pk, 1));
    PACK_OR_FAIL(msgpack_pack_uint32(&pk, msgid));
    PACK_OR_FAIL(msgpack_pack_nil(&pk));
    if (result && rlen)
        PACK_OR_FAIL(moor_mp_pack_raw(out, result, rlen));
    else
        PACK_OR_FAIL(msgpack_pack_nil(&pk));
    return 0;
fail:
    out->len = mark;
    return moor_diag(MOOR_ENOMEM, "cannot grow the reply buffer");
}

static int pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (msgpack_pack_str(pk, n))
        return -1;
    return n ? msgpack_pack_str_body(pk, s, n) : 0;
}

int moor_rpc_encode_error(moor_buf_t *out, uint32_t msgid, const char *code, const char *msg)
{
    size_t mark = out->len;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, out);
    PACK_OR_FAIL(msgpack_pack_array(&pk, 4));
    PACK_OR_FAIL(msgpack_pack_uint8(&pk, 1));
    PACK_OR_FAIL(msgpack_pack_uint32(&pk, msgid));
    PACK_OR_FAIL(msgpack_pack_array(&pk, 2));
    PACK_OR_FAIL(pack_cstr(&pk, code));
    PACK_OR_FAIL(pack_cstr(&pk, msg));
    PACK_OR_FAIL(msgpack_pack_nil(&pk));
    return 0;
fail:
    out->len = mark;
    return moor_diag(MOOR_ENOMEM, "cannot grow the reply buffer");
}

int moor_rpc_encode_request(moor_buf_t *out, uint32_t msgid, const char *method, const char *params,
                            size_t plen, uint32_t nparams)
{
    size_t mark = out->len;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, out);
    PACK_OR_FAIL(msgpack_pack_array(&pk, 4));
    PACK_OR_FAIL(msgpack_pack_uint8(&pk, 0));
    PACK_OR_FAIL(msgpack_pack_uint32(&pk, msgid));
    PACK_OR_FAIL(pack_cstr(&pk, method));
    PACK_OR_FAIL(msgpack_pack_array(&pk, nparams));
    if (plen)
        PACK_OR_FAIL(moor_mp_pack_raw(out, params, plen));
    return 0;
fail:
    out->len = mark;
    return moor_diag(MOOR_ENOMEM, "cannot grow the request buffer");
}
