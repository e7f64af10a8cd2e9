/*
 * env.h -- what cluster logic may touch of the outside world: a clock with
 * timers, a transport to other nodes, and the local replica store.
 *
 * The coordinator, membership and repair code call only these, never libuv,
 * sockets or the engine directly (DESIGN.md "Simulation").  core/net and
 * core/server provide the real implementations (libuv timers, pooled peer
 * connections, the engine); the tests provide a simulated network and an
 * in-memory store that run a whole cluster in one process, deterministically
 * from a seed.  All callbacks run on the one thread that drives the cluster
 * (the loop thread, or the simulator), never concurrently.
 */
#ifndef MOOR_CLUSTER_ENV_H
#define MOOR_CLUSTER_ENV_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef void (*moor_timer_fn)(void *arg);

typedef struct moor_clock_if {
    void *ud;
    uint64_t (*now_ms)(void *ud); /* wall-clock ms (stamps in records) */
    /* One-shot timer: cb(arg) after delay_ms unless stopped.  Returns a
     * nonzero id, or 0 when it cannot (then cb never runs). */
    uint64_t (*timer_start)(void *ud, uint64_t delay_ms, moor_timer_fn cb, void *arg);
    void (*timer_stop)(void *ud, uint64_t id); /* no-op for a fired/unknown id */
    /* Monotonic ns for measuring only (where a request's time went, the
     * slow log), never for decisions; NULL: nothing is measured. */
    uint64_t (*mono_ns)(void *ud);
} moor_clock_if_t;

/* Answer of a peer request: status 0 with the encoded MessagePack result,
 * or a negative code (MOOR_ETIMEDOUT, an error the peer answered mapped to
 * a code, a connection failure).  Runs exactly once. */
typedef void (*moor_peer_reply_fn)(void *arg, int status, const char *result, size_t rlen);

typedef struct moor_transport_if {
    void *ud;
    /* Sends method(params) to the member with this id.  0 if sent (reply
     * will follow, by timeout_ms at the latest), or a negative code (no
     * reply).  method names start with '_' (node-to-node). */
    int (*request)(void *ud, const char *to, size_t tolen, const char *method, const char *params,
                   size_t plen, uint32_t nparams, uint32_t timeout_ms, moor_peer_reply_fn cb,
                   void *arg);
} moor_transport_if_t;

/* The local replica store: records (record.h) by engine key, and the
 * hints of hints.h under their own prefix.  A write (put, del) is visible
 * to get and scan as soon as it is queued; its done runs once it is
 * durable per the node's sync mode, in the order the writes were queued.
 * A crash keeps every write whose done ran and may drop any other. */
typedef void (*moor_store_done_fn)(void *arg, int status);

/* One key of a scan: key and value borrowed until the callback returns.
 * Returns 0 to go on, nonzero to stop the scan. */
typedef int (*moor_store_scan_fn)(void *arg, const char *key, size_t klen, const char *val,
                                  size_t vlen);

typedef struct moor_store_if {
    void *ud;
    /* 0 and the record bytes appended to out; MOOR_ENOTFOUND; or an error. */
    int (*get)(void *ud, const char *key, size_t klen, moor_buf_t *out);
    /* Queues the write; 0 (done follows) or an error (no done). */
    int (*put)(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
               moor_store_done_fn done, void *arg);
    /* Queues the deletion of key (absent or not); 0 (done follows) or an
     * error (no done). */
    int (*del)(void *ud, const char *key, size_t klen, moor_store_done_fn done, void *arg);
    /* Synchronous: calls fn for the keys that start with prefix (plen 0:
     * every key) and are >= from (flen 0: from the first), in ascending
     * byte order, at most limit of them (0: no limit), as the store is now
     * (queued writes included), until fn returns nonzero.  fn must not
     * write to the store.  0 (also when fn stopped it), or an error (some
     * keys may have been passed to fn before). */
    int (*scan)(void *ud, const char *prefix, size_t plen, const char *from, size_t flen,
                uint32_t limit, moor_store_scan_fn fn, void *arg);
} moor_store_if_t;

#endif
