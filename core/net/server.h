/*
 * server.h -- the TCP server: connections, framing, limits, dispatch.
 *
 * Runs on one libuv loop.  Bytes are read into a per-connection buffer,
 * whole frames are cut out (rpc.h) and handed to the dispatch callback one
 * request at a time, in order; the application answers each request with
 * exactly one moor_srv_reply* call, now or later (from the loop thread),
 * so responses may go out of order.  A request and its frame stay valid
 * until it is answered, even if the client went away (the answer is then
 * dropped).
 *
 * Limits: a frame over max_frame closes the connection (logged); more than
 * max_inflight unanswered requests on a connection stops reading it until
 * answers go out (back-pressure, no unbounded buffering); more than
 * max_conns connections are refused at accept; a connection idle for
 * idle_timeout_ms is closed.  A frame that is not a valid request gets an
 * error reply (BAD_REQUEST) when its msgid can be read, else the
 * connection is closed with the reason logged.
 */
#ifndef MOOR_NET_SERVER_H
#define MOOR_NET_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rpc.h"

typedef struct moor_srv moor_srv_t;
typedef struct moor_srv_conn moor_srv_conn_t;

typedef struct moor_srv_opts {
    const char *host;          /* "127.0.0.1" */
    int port;                  /* 0: any free port (see moor_srv_port) */
    size_t max_frame;          /* bytes; default 16 MiB + 64 KiB */
    unsigned max_conns;        /* default 1024 */
    unsigned idle_timeout_ms;  /* 0 = never; default 300000 */
    unsigned max_inflight;     /* per connection; default 128 */
} moor_srv_opts_t;

typedef struct moor_srv_req {
    moor_rpc_req_t rpc;        /* method and params borrow from the frame */
    moor_srv_conn_t *conn;     /* for auth state; valid until answered */
    void *app;                 /* free for the application's use */
} moor_srv_req_t;

/* Called on the loop thread for every well-formed request. */
typedef void (*moor_srv_dispatch_fn)(void *ud, moor_srv_req_t *req);

/* ===== API ===== */

void moor_srv_opts_default(moor_srv_opts_t *o);

/* Binds and listens.  0, or -errno (EADDRINUSE...) with a diagnostic. */
int moor_srv_start(uv_loop_t *loop, const moor_srv_opts_t *o, moor_srv_dispatch_fn fn,
                   void *ud, moor_srv_t **out);

int moor_srv_port(const moor_srv_t *s); /* the bound port */

/* Answers req (which is freed): result is encoded MessagePack (NULL: nil). */
void moor_srv_reply(moor_srv_req_t *req, const char *result, size_t rlen);
void moor_srv_reply_error(moor_srv_req_t *req, const char *code, const char *msg);

/* Per-connection authentication state (for `auth` and NOAUTH). */
int moor_srv_conn_authed(const moor_srv_conn_t *c);
void moor_srv_conn_set_authed(moor_srv_conn_t *c, int authed);

/* Unanswered requests this connection may have before the server stops
 * reading it (0: back to the server's max_inflight).  A peer connection
 * multiplexes every request one node sends another, so it gets more. */
void moor_srv_conn_set_max_inflight(moor_srv_conn_t *c, unsigned n);

typedef struct moor_srv_stats {
    uint64_t conns, accepted, refused, requests, bad_frames;
    uint64_t inflight;
} moor_srv_stats_t;
void moor_srv_stats(const moor_srv_t *s, moor_srv_stats_t *out);

/* Stops accepting and reading; calls done(ud) on the loop once every
 * request taken has been answered and every connection closed. */
void moor_srv_stop(moor_srv_t *s, void (*done)(void *ud), void *ud);

/* Frees s.  REQUIRES: stopped (done called). */
void moor_srv_free(moor_srv_t *s);

#endif
