/*
 * rpc.h -- MessagePack-RPC framing: finding whole frames in a byte stream,
 * splitting requests and answers into their parts, encoding frames.
 *
 * Frames are bare MessagePack values: request [0, msgid, method, params],
 * response [1, msgid, error, result], notification [2, method, params].
 * error is nil or [code (str), message (str)].  Servers split requests
 * (moor_rpc_parse), clients and peers split answers
 * (moor_rpc_parse_answer): one parser each for the whole code base.
 */
#ifndef MOOR_NET_RPC_H
#define MOOR_NET_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Progress of moor_rpc_scan_frame through one partly received frame.  Opaque
 * to callers: initialise with moor_rpc_scan_init. */
#define MOOR_RPC_SCAN_DEPTH 64 /* == MOOR_MP_MAX_DEPTH (checked in rpc.c) */
typedef struct moor_rpc_scan {
    size_t off;                                /* bytes of the frame already validated */
    int depth;                                 /* open containers above the next object; -1: done */
    int started;                               /* the frame's first byte was checked */
    uint64_t pending[MOOR_RPC_SCAN_DEPTH + 1]; /* objects still due per level */
} moor_rpc_scan_t;

typedef struct moor_rpc_req {
    int notify; /* 1 for a notification (no msgid, no reply) */
    uint32_t msgid;
    const char *method; /* borrowed from the frame */
    size_t mlen;
    const char *params; /* the elements of the params array, back to back */
    size_t plen;
    uint32_t nparams;
} moor_rpc_req_t;

/* One answer [1, msgid, error, result], split; every pointer borrows
 * from the frame and no string is NUL-terminated. */
typedef struct moor_rpc_answer {
    uint32_t msgid;
    int is_error;     /* error was not nil */
    const char *code; /* error code ("ERROR" for a bare-string error), "" if none */
    size_t clen;
    const char *msg; /* error message, "" if none */
    size_t mlen;
    const char *result; /* the encoded result object (nil included) */
    size_t rlen;
} moor_rpc_answer_t;

/* ===== API ===== */

/* Length of the complete frame at the start of buf: > 0 when a whole frame
 * is there, 0 when more bytes are needed (fewer than max_frame are
 * buffered and nothing seen so far rules a frame out), MOOR_ETOOLARGE when
 * max_frame bytes hold no whole frame or, at once, when a header announces
 * a length or count that cannot end within max_frame of the frame's start,
 * MOOR_EPROTO when the bytes can never become a frame (0xc1, not an array
 * of 3 or 4 items, nesting deeper than MOOR_MP_MAX_DEPTH). */
long moor_rpc_frame_len(const char *buf, size_t len, size_t max_frame);

/* The same answers as moor_rpc_frame_len, but resumable: a frame that
 * arrives in many pieces is validated once in total instead of once per
 * piece (otherwise a 16 MiB frame of tiny objects read 64 KiB at a time
 * costs hundreds of full rescans).  REQUIRES: between calls that returned
 * 0, buf starts with the same frame bytes (it may move and grow).  Any
 * non-zero answer resets *s for the next frame. */
void moor_rpc_scan_init(moor_rpc_scan_t *s);
long moor_rpc_scan_frame(moor_rpc_scan_t *s, const char *buf, size_t len, size_t max_frame);

/* Splits a whole frame into a request.  0, or MOOR_EPROTO when it is not
 * [0, uint32 msgid, str method, array params] or [2, str, array]; when
 * the msgid could be read (item 1 of any frame that is not a
 * notification, a response [1, msgid, ...] included) *msgid_out (may be
 * NULL) gets it so the caller can answer with an error.  *have_msgid (may be NULL) says whether it
 * could, on success too; the reason for MOOR_EPROTO is in moor_diag_last().
 * req borrows from frame. */
int moor_rpc_parse(const char *frame, size_t len, moor_rpc_req_t *req, int *have_msgid,
                   uint32_t *msgid_out);

/* Splits a whole frame (as found by the scan) into an answer: 0 and *a,
 * 1 for a notification [2, method, params] (*a zeroed: callers skip it),
 * or MOOR_EPROTO with a diagnostic when it is neither. */
int moor_rpc_parse_answer(const char *frame, size_t len, moor_rpc_answer_t *a);

/* Appends [1, msgid, nil, result] with result already encoded (NULL or
 * rlen 0: nil).  0, MOOR_EINVAL when result is not exactly one MessagePack
 * object, or MOOR_ENOMEM; on error out is unaltered. */
int moor_rpc_encode_result(moor_buf_t *out, uint32_t msgid, const char *result, size_t rlen);

/* Appends [1, msgid, [code, message], nil] (msg NULL: "").  0 or
 * MOOR_ENOMEM (out unaltered). */
int moor_rpc_encode_error(moor_buf_t *out, uint32_t msgid, const char *code, const char *msg);

/* Appends a request [0, msgid, method, params] with params already encoded
 * as `nparams` back-to-back objects.  0 or MOOR_ENOMEM (out unaltered). */
int moor_rpc_encode_request(moor_buf_t *out, uint32_t msgid, const char *method, const char *params,
                            size_t plen, uint32_t nparams);

#endif
