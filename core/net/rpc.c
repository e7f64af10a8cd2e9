/*
 * rpc.c -- MessagePack-RPC framing, request and answer splitting, and
 * encoding.
 *
 * A frame is one MessagePack value, so its end is found by validating it
 * object by object: there is no length prefix to trust.  Valid frames are
 * always arrays of 3 or 4 items, so the first byte alone rejects a stream
 * that is not MessagePack-RPC before anything of it is buffered, and every
 * header is judged as soon as it is whole: a str/bin/ext length or a
 * container count (each child takes a byte at least) that cannot end
 * within max_frame of the frame's start is MOOR_ETOOLARGE at once.
 *
 * One walk does it: moor_rpc_scan_frame keeps its state (offset plus a
 * stack of "objects still due" per open container) so that the server's
 * cost per connection stays linear in the bytes received, and
 * moor_rpc_frame_len is the same walk from a fresh state.  Every check
 * depends only on the bytes up to the object it judges, so any split of
 * the stream gives the answer the whole gives; the fuzz targets check it.
 *
 * Answers are split here too (moor_rpc_parse_answer), once for the C
 * client and the peer pool.
 *
 * Stateless apart from the caller's scan state; thread-safe.
 */
#include "rpc.h"

#include <string.h>

#include "util/mp.h"
#include "util/err.h"

_Static_assert(MOOR_RPC_SCAN_DEPTH == MOOR_MP_MAX_DEPTH, "scan stack must match mp depth");

/* Whether an object at offset off announcing hlen header bytes and then
 * payload bytes or children objects (each at least one byte) can end
 * within max_frame of the frame's start.  Decided from the header alone,
 * so a lying header is refused at once rather than after max_frame bytes
 * of waiting. */
static int fits(size_t off, size_t hlen, uint64_t payload, uint64_t children, size_t max_frame)
{
    uint64_t need = (uint64_t)hlen + (payload > children ? payload : children);

    return (uint64_t)off <= max_frame && need <= (uint64_t)max_frame - off;
}

static int too_large(size_t off, size_t hlen, uint64_t payload, uint64_t children, size_t max_frame)
{
    return moor_diag(MOOR_ETOOLARGE, "frame announces %llu bytes at byte %zu, over max_frame %zu",
                     (unsigned long long)(hlen + (payload > children ? payload : children)), off,
                     max_frame);
}

/* The top object: an array of 3 (notification) or 4 (request, response)
 * items, refused from its first bytes otherwise. */
static int frame_head(const char *buf, size_t len, size_t max_frame)
{
    size_t hlen;
    uint64_t payload, children;
    int container, t = moor_mp_peek(buf, buf + len);

    if (t == MOOR_EAGAIN)
        return t;
    if (t == MOOR_EPROTO)
        return moor_diag(MOOR_EPROTO, "byte 0xc1 is never valid MessagePack");
    if (t != MOOR_MP_ARRAY)
        return moor_diag(MOOR_EPROTO, "frame is not a MessagePack array (first byte 0x%02x)",
                         (unsigned char)buf[0]);
    if (moor_mp_header(buf, buf + len, &hlen, &payload, &children, &container))
        return MOOR_EAGAIN; /* the count is cut */
    if (!fits(0, hlen, payload, children, max_frame))
        return too_large(0, hlen, payload, children, max_frame);
    if (children != 3 && children != 4)
        return moor_diag(MOOR_EPROTO, "frame is an array of %llu items, not 3 or 4",
                         (unsigned long long)children);
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
    moor_rpc_scan_t s;

    moor_rpc_scan_init(&s);
    return moor_rpc_scan_frame(&s, buf, len, max_frame);
}

void moor_rpc_scan_init(moor_rpc_scan_t *s)
{
    s->off = 0;
    s->depth = 0;
    s->started = 0;
    s->pending[0] = 1;
}

/* One object at *p: a container's header (pushing its children) or a
 * whole scalar/str/bin/ext.  The checks, in order, each decided by the
 * bytes seen so far only (so any split of the stream gives the same
 * answer): header cut (MOOR_EAGAIN), 0xc1 (MOOR_EPROTO), announced size
 * past max_frame (MOOR_ETOOLARGE), nesting deeper than MOOR_MP_MAX_DEPTH
 * with an empty container counting as a level (MOOR_EPROTO), body cut
 * (MOOR_EAGAIN).  Nothing is consumed unless it returns 0. */
static int scan_one(moor_rpc_scan_t *s, const char *buf, const char **p, const char *end,
                    size_t max_frame)
{
    size_t hlen, off = (size_t)(*p - buf), avail = (size_t)(end - *p);
    uint64_t payload, children;
    int container, rc = moor_mp_header(*p, end, &hlen, &payload, &children, &container);

    if (rc)
        return rc;
    if (!fits(off, hlen, payload, children, max_frame))
        return too_large(off, hlen, payload, children, max_frame);
    if (!container) {
        if ((uint64_t)avail < hlen + payload)
            return MOOR_EAGAIN;
        s->pending[s->depth]--;
        *p += hlen + payload;
        return 0;
    }
    if (s->depth + 1 > MOOR_MP_MAX_DEPTH)
        return MOOR_EPROTO;
    s->pending[s->depth]--;
    if (children)
        s->pending[++s->depth] = children;
    *p += hlen;
    return 0;
}

long moor_rpc_scan_frame(moor_rpc_scan_t *s, const char *buf, size_t len, size_t max_frame)
{
    /* Looking no further than max_frame bounds the work and makes a
     * longer frame come out as "incomplete", hence MOOR_ETOOLARGE. */
    size_t lim = len < max_frame ? len : max_frame;
    const char *p, *end = buf + lim;
    long ans;
    int rc = 0;

    moor_diag_clear();
    if (!s->started) {
        rc = frame_head(buf, lim, max_frame);
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
        rc = scan_one(s, buf, &p, end, max_frame);
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

/* [0, msgid, ...]: the msgid is read before the type and arity are judged
 * so that a frame that is no request (a response sent to the server, the
 * wrong number of items) can still be answered. */
static int parse_head(const char **p, const char *end, uint32_t n, moor_rpc_req_t *req, int *have)
{
    uint64_t type, id;

    if (n < 1 || moor_mp_read_uint(p, end, &type))
        return bad("item 0 must be the message type (0 request, 2 notification)");
    if (type == 2) {
        req->notify = 1;
        return n == 3 ? 0 : bad("a notification must be [2, method, params]");
    }
    if (n >= 2 && moor_mp_read_uint(p, end, &id) == 0 && id <= UINT32_MAX) {
        req->msgid = (uint32_t)id;
        *have = 1;
    }
    if (type != 0)
        return moor_diag(MOOR_EPROTO, "bad request: message type %llu is not a request",
                         (unsigned long long)type);
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

/* error: nil, [code, message, ...] (extra items skipped) or a bare
 * string (the message, code "ERROR"). */
static int parse_answer_error(const char **p, const char *end, moor_rpc_answer_t *a)
{
    const char *s;
    uint32_t n, m;

    a->is_error = 0;
    a->code = a->msg = "";
    a->clen = a->mlen = 0;
    if (moor_mp_read_nil(p, end) == 0)
        return 0;
    a->is_error = 1;
    if (moor_mp_read_str(p, end, &s, &n) == 0) {
        a->code = "ERROR", a->clen = 5;
        a->msg = s, a->mlen = n;
        return 0;
    }
    if (moor_mp_read_array(p, end, &m) || m < 1 || moor_mp_read_str(p, end, &s, &n))
        return MOOR_EPROTO;
    a->code = s, a->clen = n;
    if (m >= 2 && moor_mp_read_str(p, end, &s, &n) == 0)
        a->msg = s, a->mlen = n, m--;
    for (m--; m > 0; m--)
        if (moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH - 2))
            return MOOR_EPROTO;
    return 0;
}

int moor_rpc_parse_answer(const char *frame, size_t len, moor_rpc_answer_t *a)
{
    const char *p = frame, *end = frame + len;
    uint32_t n;
    uint64_t type, id;

    memset(a, 0, sizeof(*a));
    if (moor_mp_read_array(&p, end, &n) || moor_mp_read_uint(&p, end, &type))
        goto bad;
    if (type == 2 && n == 3)
        return 1;
    if (type != 1 || n != 4 || moor_mp_read_uint(&p, end, &id) || id > UINT32_MAX)
        goto bad;
    a->msgid = (uint32_t)id;
    if (parse_answer_error(&p, end, a))
        goto bad;
    a->result = p;
    if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH - 1) || p != end)
        goto bad;
    a->rlen = (size_t)(end - a->result);
    return 0;
bad:
    return moor_diag(MOOR_EPROTO, "a frame that is not an answer [1, msgid, error, result]");
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
