/*
 * rpc.h -- MessagePack-RPC framing: finding whole frames in a byte stream
 * and splitting a request into its parts; encoding responses.
 *
 * Frames are bare MessagePack values: request [0, msgid, method, params],
 * response [1, msgid, error, result], notification [2, method, params].
 * error is nil or [code (str), message (str)].
 */
#ifndef MOOR_NET_RPC_H
#define MOOR_NET_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct moor_rpc_req {
    int notify;            /* 1 for a notification (no msgid, no reply) */
    uint32_t msgid;
    const char *method;    /* borrowed from the frame */
    size_t mlen;
    const char *params;    /* the elements of the params array, back to back */
    size_t plen;
    uint32_t nparams;
} moor_rpc_req_t;

/* ===== API ===== */

/* Length of the complete frame at the start of buf: > 0 when a whole frame
 * is there, 0 when more bytes are needed (and fewer than max_frame are
 * buffered), MOOR_ETOOLARGE when max_frame bytes hold no whole frame,
 * MOOR_EPROTO when the bytes can never become a frame. */
long moor_rpc_frame_len(const char *buf, size_t len, size_t max_frame);

/* Splits a whole frame into a request.  0, or MOOR_EPROTO when it is not
 * [0, uint32 msgid, str method, array params] or [2, str, array]; when
 * the msgid could be read *msgid_out (may be NULL) gets it so the caller
 * can answer with an error. */
int moor_rpc_parse(const char *frame, size_t len, moor_rpc_req_t *req, int *have_msgid,
                   uint32_t *msgid_out);

/* Appends [1, msgid, nil, result] with result already encoded (NULL: nil). */
int moor_rpc_encode_result(moor_buf_t *out, uint32_t msgid, const char *result, size_t rlen);

/* Appends [1, msgid, [code, message], nil]. */
int moor_rpc_encode_error(moor_buf_t *out, uint32_t msgid, const char *code, const char *msg);

/* Appends a request [0, msgid, method, params] with params already encoded
 * as `nparams` back-to-back objects. */
int moor_rpc_encode_request(moor_buf_t *out, uint32_t msgid, const char *method,
                            const char *params, size_t plen, uint32_t nparams);

#endif
