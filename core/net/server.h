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
 * Framing: a frame over max_frame, or whose header announces more, closes
 * the connection at once (logged).  A frame that is not a valid request
 * gets an error reply (BAD_REQUEST) when its msgid can be read (a
 * response [1, msgid, ...] sent to the server included), else the
 * connection is closed with the reason logged.
 *
 * Back-pressure, per connection: a connection is read and its frames are
 * dispatched only while it has fewer than max_inflight unanswered
 * requests and at most output_soft unsent reply bytes (buffered or in the
 * kernel's hands, not yet written); it resumes by itself when answers go
 * out.  Dispatch checks both before every frame, so a read full of
 * pipelined requests answered at once cannot pile up replies.  Answers to
 * requests already taken still go out: a reply that would take the
 * connection's unsent bytes past output_hard closes it (logged as a WARN
 * with the peer and the size), except onto an empty output, so one reply
 * of any size always fits.
 *
 * Back-pressure, node-wide: while the unsent bytes of all connections are
 * over output_total, no connection with unsent bytes is dispatched, and
 * the client connection holding the most is closed (WARN), again until
 * the total is under the limit.  Peer connections are never closed for
 * the total; only their own output_hard (scaled) closes them.
 *
 * Deadlines (each 0 = none): idle_timeout_ms closes a connection with
 * nothing in flight that sent nothing for that long, and one whose
 * replies made no write progress for that long (the client stopped
 * reading); auth_timeout_ms closes one that must authenticate and has not
 * (every connection when require_auth, every peer-slot connection always);
 * frame_timeout_ms closes one whose frame, begun, is not complete in that
 * time (while the server reads it: a paused connection is not late).
 *
 * Protocols: a server speaks one, chosen by opts.proto.  MessagePack-RPC
 * is described above.  RESP (resp.h) cuts commands with moor_resp_scan
 * (max_frame per command, max_bulk per argument) and dispatches them with
 * their arguments split (req->argc, req->argv); the application answers
 * with moor_srv_reply_resp, and answers go out strictly in request order:
 * an answer made before those of earlier requests is held (its bytes
 * count as unsent output for the caps) until they have gone out.  A
 * malformed command is answered with the error in request order and the
 * connection is closed once that is written.  opts.resp_class sorts
 * commands so that a pipeline sees its own writes: a read is dispatched
 * only once every earlier write is answered; a command that runs alone
 * only once every earlier command is, and nothing after it until it is;
 * writes and free commands go at once.
 *
 * Slots: max_conns connections are accepted as clients.  Beyond them,
 * peer_conns more are kept for cluster peers: such a connection must come
 * from an address peer_ip_ok accepts and become a peer
 * (moor_srv_conn_set_peer) by its auth deadline, else it is closed; the
 * application decides what a peer is (the node: `_auth` with the cluster
 * secret as the first request).  Clients holding every slot therefore
 * cannot lock a restarted member out.  Connections over both are closed
 * at accept.
 */
#ifndef MOOR_NET_SERVER_H
#define MOOR_NET_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "resp.h"
#include "rpc.h"

#define MOOR_SRV_PROTO_MSGPACK 0
#define MOOR_SRV_PROTO_RESP 1

/* RESP command classes (opts.resp_class). */
#define MOOR_SRV_RESP_FREE 0  /* touches no data: goes at once */
#define MOOR_SRV_RESP_READ 1  /* waits until earlier writes are answered */
#define MOOR_SRV_RESP_WRITE 2 /* goes at once; later reads wait for it */
#define MOOR_SRV_RESP_ALONE 3 /* read-then-write: runs alone on its connection */

typedef struct moor_srv moor_srv_t;
typedef struct moor_srv_conn moor_srv_conn_t;
typedef struct moor_srv_req moor_srv_req_t;

/* Zero means "the default" for max_frame, max_conns, max_inflight,
 * peer_inflight and the output caps, and "none" for the timeouts and
 * peer_conns.  Defaults come from util/limits.h. */
typedef struct moor_srv_opts {
    const char *host;          /* "127.0.0.1" */
    int port;                  /* 0: any free port (see moor_srv_port) */
    size_t max_frame;          /* bytes; MOOR_LIMIT_MAX_FRAME */
    unsigned max_conns;        /* client slots; MOOR_LIMIT_MAX_CONNS */
    unsigned peer_conns;       /* peer slots beyond max_conns; default 0 */
    unsigned idle_timeout_ms;  /* MOOR_LIMIT_IDLE_TIMEOUT_MS */
    unsigned auth_timeout_ms;  /* MOOR_LIMIT_AUTH_TIMEOUT_MS (peer slots: that if 0) */
    unsigned frame_timeout_ms; /* MOOR_LIMIT_FRAME_TIMEOUT_MS */
    int require_auth;          /* every connection must authenticate; default 0 */
    unsigned max_inflight;     /* per client connection; MOOR_LIMIT_MAX_INFLIGHT */
    unsigned peer_inflight;    /* per peer connection; MOOR_LIMIT_PEER_INFLIGHT */
    size_t output_soft;        /* bytes per connection; MOOR_LIMIT_OUTPUT_SOFT */
    size_t output_hard;        /* bytes per connection; MOOR_LIMIT_OUTPUT_HARD */
    size_t output_total;       /* bytes over all connections; MOOR_LIMIT_OUTPUT_TOTAL */
    /* May a connection from ip (numeric, IPv4 for v4-mapped addresses)
     * take a peer slot?  Called with the dispatch ud; NULL: any may. */
    int (*peer_ip_ok)(void *ud, const char *ip);
    int proto;       /* MOOR_SRV_PROTO_MSGPACK (default) or MOOR_SRV_PROTO_RESP */
    size_t max_bulk; /* RESP: bytes of one argument; default max_frame */
    /* RESP: the MOOR_SRV_RESP_* class of a command (see above), called
     * with the dispatch ud and the request about to be dispatched (only
     * argc and argv are set); NULL: every command is free. */
    int (*resp_class)(void *ud, const moor_srv_req_t *req);
} moor_srv_opts_t;

struct moor_srv_req {
    moor_rpc_req_t rpc;    /* MessagePack: method and params borrow from the frame */
    uint32_t argc;         /* RESP: the command's arguments (>= 1), ... */
    moor_resp_arg_t *argv; /* ... borrowed from the request's frame */
    moor_srv_conn_t *conn; /* for auth state; valid until answered */
    void *app;             /* free for the application's use */
};

/* Called on the loop thread for every well-formed request. */
typedef void (*moor_srv_dispatch_fn)(void *ud, moor_srv_req_t *req);

/* ===== API ===== */

void moor_srv_opts_default(moor_srv_opts_t *o);

/* Binds and listens.  0, or -errno (EADDRINUSE...) with a diagnostic. */
int moor_srv_start(uv_loop_t *loop, const moor_srv_opts_t *o, moor_srv_dispatch_fn fn, void *ud,
                   moor_srv_t **out);

int moor_srv_port(const moor_srv_t *s); /* the bound port */

/* Takes o's limits (max_frame, max_bulk, max_conns, peer_conns, the three
 * timeouts, max_inflight, peer_inflight, the output caps; zero meaning
 * the default as at start) for what happens from now on: frames read
 * next, connections accepted next (max_inflight is a connection's from
 * its accept), deadlines armed next.  Nothing open is closed for it.
 * host, port, proto, require_auth and the callbacks stay as started.
 * Can't fail. */
void moor_srv_set_limits(moor_srv_t *s, const moor_srv_opts_t *o);

/* Answers req (which is freed): result is encoded MessagePack (NULL: nil). */
void moor_srv_reply(moor_srv_req_t *req, const char *result, size_t rlen);
void moor_srv_reply_error(moor_srv_req_t *req, const char *code, const char *msg);

/* Answers a RESP request (which is freed) with encoded RESP bytes (copied);
 * they go out after the answers of every earlier request.  Can't fail: out
 * of memory closes the connection. */
void moor_srv_reply_resp(moor_srv_req_t *req, const char *data, size_t len);

/* The client's "ip:port" (borrowed while c lives): for logs and the slow
 * log. */
const char *moor_srv_conn_addr(const moor_srv_conn_t *c);

/* Per-connection authentication state (for `auth` and NOAUTH): the
 * application's flags, stored as given (two bits).  Non-zero flags meet
 * the auth deadline of a client-slot connection. */
int moor_srv_conn_authed(const moor_srv_conn_t *c);
void moor_srv_conn_set_authed(moor_srv_conn_t *c, int authed);

/* Marks c as a cluster peer: peer_inflight unanswered requests (a peer's
 * one connection multiplexes every request one node sends another),
 * output caps MOOR_LIMIT_PEER_OUTPUT_FACTOR times the client ones, never
 * closed for the node's output total, and its auth deadline met (peer
 * slots included).  Can't fail. */
void moor_srv_conn_set_peer(moor_srv_conn_t *c);

/* A word of the application's per-connection state (RESP: the selected
 * database), 0 at accept.  Can't fail. */
unsigned moor_srv_conn_app(const moor_srv_conn_t *c);
void moor_srv_conn_set_app(moor_srv_conn_t *c, unsigned v);

/* 1 when c holds one of the peer_conns slots (and so must become a peer
 * by its auth deadline). */
int moor_srv_conn_reserved(const moor_srv_conn_t *c);

/* Ends c: nothing more is read or dispatched; it closes once every
 * request taken is answered and the answers are written (or, if the
 * client does not read them, at idle_timeout_ms).  why is logged as a
 * WARN with the peer's address; NULL: an ordinary end (RESP QUIT), not
 * logged. */
void moor_srv_conn_end(moor_srv_conn_t *c, const char *why);

typedef struct moor_srv_stats {
    uint64_t conns, accepted, refused, requests, bad_frames;
    uint64_t inflight;
    uint64_t peer_slots;      /* open connections holding a peer slot */
    uint64_t output_bytes;    /* unsent reply bytes over all open connections */
    uint64_t closed_output;   /* closed by output_hard or output_total */
    uint64_t closed_deadline; /* closed by the auth, frame or write deadline */
} moor_srv_stats_t;
void moor_srv_stats(const moor_srv_t *s, moor_srv_stats_t *out);

/* Stops accepting and reading; calls done(ud) on the loop once every
 * request taken has been answered and every connection closed. */
void moor_srv_stop(moor_srv_t *s, void (*done)(void *ud), void *ud);

/* Frees s.  REQUIRES: stopped (done called). */
void moor_srv_free(moor_srv_t *s);

/* TEST: a connection with no socket, for the fuzz target: bytes given to
 * moor_srv_test_feed go through the read path (framing, limits,
 * dispatch); what would be written is appended to *sink (borrowed until
 * release) instead, each write completing at once.  It counts as a client
 * slot.  The caller holds a reference: c stays valid until
 * moor_srv_test_release, whatever happens to the connection.  0 or
 * MOOR_ENOMEM. */
int moor_srv_test_conn(moor_srv_t *s, moor_buf_t *sink, moor_srv_conn_t **out);

/* TEST: n bytes as if read from c's socket (n 0: the client half-closed).
 * 1 if taken, 0 if c is not reading now (paused: run the loop and retry;
 * or closed: moor_srv_test_closed), in which case nothing is taken. */
int moor_srv_test_feed(moor_srv_conn_t *c, const char *p, size_t n);

/* TEST: 1 once c is closed. */
int moor_srv_test_closed(const moor_srv_conn_t *c);

/* TEST: closes c if it is open and drops the caller's reference (the
 * connection is freed by the loop, after its close callbacks). */
void moor_srv_test_release(moor_srv_conn_t *c);

#endif
