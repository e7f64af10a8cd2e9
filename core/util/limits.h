/*
 * limits.h -- the one default of every connection and framing limit.
 *
 * Each limit has exactly one default, here; the config (core/lua/config.c),
 * the server (core/net/server.c), the peer pool (core/net/peer.c) and the
 * C client (core/net/client.c) all take it from this file, so a default
 * can never again differ between the layers that must agree on it.
 * Config names are in the comments (`limits.<name>`, MiB or ms there).
 */
#ifndef MOOR_UTIL_LIMITS_H
#define MOOR_UTIL_LIMITS_H

#include <stddef.h>

/* limits.max_frame_mb: the largest request frame a node reads, and the
 * largest frame members send each other (requests and answers). */
#define MOOR_LIMIT_MAX_FRAME ((size_t)32 << 20)

/* The largest answer the C client accepts.  Not max_frame: a get answers
 * every sibling of a key, so an answer can be larger than any request
 * (with the default value_max of 16 MiB a record holds up to 65 MiB). */
#define MOOR_LIMIT_MAX_ANSWER ((size_t)128 << 20)

/* limits.max_conns: client connections; more are closed at accept. */
#define MOOR_LIMIT_MAX_CONNS 1024u

/* limits.peer_conns: connections beyond max_conns kept for cluster peers
 * (cluster mode only; see server.h "Slots"). */
#define MOOR_LIMIT_PEER_CONNS 64u

/* limits.max_inflight: unanswered requests per client connection before
 * the node stops reading it. */
#define MOOR_LIMIT_MAX_INFLIGHT 128u

/* Unanswered requests per peer connection (one connection carries every
 * request one member sends another), and so also how many requests the
 * peer pool keeps in flight per member (peer.h max_pending). */
#define MOOR_LIMIT_PEER_INFLIGHT 1024u

/* limits.idle_timeout_ms: a connection with nothing to do, or whose
 * replies made no write progress, for this long is closed (0: never). */
#define MOOR_LIMIT_IDLE_TIMEOUT_MS 300000u

/* limits.auth_timeout_ms: a connection that must authenticate and has
 * not within this is closed (0: no deadline, except on peer slots). */
#define MOOR_LIMIT_AUTH_TIMEOUT_MS 10000u

/* limits.frame_timeout_ms: a frame whose first byte arrived must be
 * complete within this, or the connection is closed (0: no deadline). */
#define MOOR_LIMIT_FRAME_TIMEOUT_MS 30000u

/* limits.output_soft_mb: a connection with more unsent reply bytes than
 * this is neither read nor dispatched until it drains below. */
#define MOOR_LIMIT_OUTPUT_SOFT ((size_t)64 << 20)

/* limits.output_hard_mb: a connection whose unsent reply bytes would pass
 * this is closed (one reply onto an empty output always fits). */
#define MOOR_LIMIT_OUTPUT_HARD ((size_t)256 << 20)

/* limits.output_total_mb: the node's unsent reply bytes over all
 * connections; past it the client holding the most is closed. */
#define MOOR_LIMIT_OUTPUT_TOTAL ((size_t)1024 << 20)

/* A connection that passed _auth gets this many times the client output
 * caps (soft and hard). */
#define MOOR_LIMIT_PEER_OUTPUT_FACTOR 4u

#endif
