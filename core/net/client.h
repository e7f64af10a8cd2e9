/*
 * client.h -- Moor's C client library: blocking and pipelined calls over
 * one TCP connection (plain sockets, no event loop needed).
 *
 * Blocking: moor_client_call sends one request and waits for its answer.
 * Pipelined: moor_client_send queues requests (written when the buffer is
 * full or on moor_client_flush), moor_client_recv returns answers as they
 * come, in any order, with their msgid.  Not thread-safe: one thread per
 * client.  Every wait is bounded by timeout_ms (<= 0 means the default,
 * MOOR_CLIENT_TIMEOUT_MS): a whole call shares one deadline.
 *
 * Answers for other msgids that arrive while moor_client_call waits are
 * kept (copied) and handed out by later moor_client_recv calls, so
 * blocking calls and pipelining can be mixed on one client.
 *
 * Any transport error (-errno, MOOR_ETIMEDOUT, MOOR_EPROTO, the server
 * closing the connection: -ECONNRESET) leaves the client unusable: every
 * later call returns the same code; close it.
 */
#ifndef MOOR_NET_CLIENT_H
#define MOOR_NET_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/limits.h"

typedef struct moor_client moor_client_t;

#define MOOR_CLIENT_TIMEOUT_MS 5000
#define MOOR_CLIENT_MAX_ANSWER MOOR_LIMIT_MAX_ANSWER /* largest answer accepted */
#define MOOR_CLIENT_AUTOFLUSH ((size_t)64 << 10)     /* send() writes past this */

/* One answer.  error_code NULL on success; result is the encoded
 * MessagePack result (nil when there is none).  Borrowed until the next
 * call on the client. */
typedef struct moor_client_reply {
    uint32_t msgid;
    const char *error_code; /* "NOAUTH", ... NUL-terminated */
    const char *error_msg;  /* NUL-terminated */
    const char *result;
    size_t rlen;
} moor_client_reply_t;

/* ===== API ===== */

/* addr "host:port".  0 or -errno/MOOR_EINVAL with a diagnostic. */
int moor_client_connect(const char *addr, int timeout_ms, moor_client_t **out);
void moor_client_close(moor_client_t *c);

/* params: nparams encoded objects back to back.  Blocks for the answer.
 * 0 (look at reply->error_code for an error answer), or a transport error
 * (-errno, MOOR_ETIMEDOUT, MOOR_EPROTO: the connection is then unusable). */
int moor_client_call(moor_client_t *c, const char *method, const char *params, size_t plen,
                     uint32_t nparams, moor_client_reply_t *reply);

/* Pipelining.  send returns the msgid it used (>= 0) or an error. */
long moor_client_send(moor_client_t *c, const char *method, const char *params, size_t plen,
                      uint32_t nparams);
int moor_client_flush(moor_client_t *c);
int moor_client_recv(moor_client_t *c, moor_client_reply_t *reply);

/* Convenience wrappers building params with msgpack (value and ctx are
 * encoded MessagePack / raw ctx bytes; space may be NULL for "default"). */
int moor_client_get(moor_client_t *c, const char *space, const void *key, size_t klen,
                    moor_client_reply_t *reply);
int moor_client_put(moor_client_t *c, const char *space, const void *key, size_t klen,
                    const char *value_mp, size_t vlen, const void *ctx, size_t ctxlen,
                    moor_client_reply_t *reply);
int moor_client_del(moor_client_t *c, const char *space, const void *key, size_t klen,
                    const void *ctx, size_t ctxlen, moor_client_reply_t *reply);
/* where: the result is {replicas = [ids], fallbacks = [ids]}. */
int moor_client_where(moor_client_t *c, const char *space, const void *key, size_t klen,
                      moor_client_reply_t *reply);

void moor_client_set_timeout(moor_client_t *c, int timeout_ms);

/* Event-loop use (moor bench multiplexes many clients with one poll()).
 * The socket is non-blocking; these never wait.  moor_client_fd: the
 * socket to poll (POLLIN always, POLLOUT while moor_client_unsent > 0).
 * moor_client_io_nowait: writes what the socket takes and reads what it
 * has; 0 or a transport error.  moor_client_recv_nowait: 1 and *reply
 * filled when a whole answer is buffered, 0 when none is, or a transport
 * error (MOOR_EPROTO for a bad frame).  After every io_nowait (and every
 * send, which may flush and read) call recv_nowait until it returns 0:
 * answers already read into the client do not wake poll() again. */
int moor_client_fd(const moor_client_t *c);
size_t moor_client_unsent(const moor_client_t *c);
int moor_client_io_nowait(moor_client_t *c);
int moor_client_recv_nowait(moor_client_t *c, moor_client_reply_t *reply);

#endif
