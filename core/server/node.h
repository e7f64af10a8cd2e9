/*
 * node.h -- one Moor node: the engine holding records, the request
 * methods (get, put, del, call, ping, info, auth) and the glue between the
 * server, the engine's durability callbacks and the Lua host.
 *
 * Everything runs on the loop thread except the engine's completion
 * callbacks, which arrive on the commit log's thread and are handed back to
 * the loop through a mutex-guarded queue and a uv_async.
 */
#ifndef MOOR_SERVER_NODE_H
#define MOOR_SERVER_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/env.h"
#include "engine/engine.h"
#include "lua/config.h"
#include "lua/host.h"
#include "net/server.h"

typedef struct moor_node moor_node_t;

/* How a method's answer is delivered: errcode NULL on success with result
 * encoded MessagePack (NULL = nil).  Runs on the loop thread, once. */
typedef void (*moor_node_done_fn)(void *ud, const char *errcode, const char *errmsg,
                                  const char *result, size_t rlen);

/* ===== API ===== */

/* Opens the engine in cfg->data_dir and prepares the methods (does not
 * listen).  0 or an error with a diagnostic. */
int moor_node_open(uv_loop_t *loop, const moor_config_t *cfg, moor_node_t **out);

/* The Lua host the node runs handlers on (set after creating both). */
void moor_node_set_lua(moor_node_t *n, moor_lua_t *L);

/* The moor_lua_ops_t.kv function: runs a get/put/del for a handler of
 * host from, and answers it there while from runs (the node's host or a
 * retired one, below); an answer for a host freed meanwhile is dropped. */
int moor_node_lua_kv(void *node, moor_lua_t *from, int op, const char *params, size_t plen,
                     uint32_t nparams, uint64_t token);

/* Hosts a reload may leave finishing their calls at once, and how often
 * the node looks whether they have. */
#define MOOR_NODE_RETIRED_MAX 8
#define MOOR_NODE_SWEEP_MS 50

/* Makes fresh the host new calls and resolvers run on (moor reload).  The
 * one it replaces is retired: calls running on it finish on it (their kv
 * answers find it), and it is freed once it has none -- or at
 * moor_node_close, answering what is left SHUTTING_DOWN.  0, or
 * MOOR_EBUSY when MOOR_NODE_RETIRED_MAX hosts are still retiring (nothing
 * changes). */
int moor_node_swap_lua(moor_node_t *n, moor_lua_t *fresh);

/* Retired hosts not yet freed. */
unsigned moor_node_retired(const moor_node_t *n);

/* Takes cfg (copied) as the node's config from the next request on: the
 * spaces' levels and resolvers, sibling limits, request_timeout_ms, the
 * gossip tunables, autoscale.  REQUIRES: cfg differs from the running one
 * in live settings only (moor_config_diff), its spaces in the same order.
 * 0, or an error with a diag (only for tunables moor_config_from_lua would
 * have refused). */
int moor_node_reconfigure(moor_node_t *n, const moor_config_t *cfg);

/* What the `reload` method runs: 0 with the reply (encoded MessagePack)
 * appended to reply, or an error code with a diag.  Without one, reload
 * answers UNAVAILABLE. */
typedef int (*moor_node_reload_fn)(void *ud, moor_buf_t *reply);
void moor_node_set_reload(moor_node_t *n, moor_node_reload_fn fn, void *ud);

/* Server dispatch callback (ud = the node).  A connection on a peer slot
 * whose first request is not _auth gets NOAUTH and is ended; one that
 * passes _auth becomes a peer (moor_srv_conn_set_peer). */
void moor_node_dispatch(void *node, moor_srv_req_t *req);

/* Server peer_ip_ok callback (ud = the node): 1 when ip is the host of a
 * member or seed of the node's cluster; 0 when the node is not in one. */
int moor_node_peer_ip_ok(void *node, const char *ip);

/* Runs method with params, answering through done.  Used by dispatch and
 * by the fuzzer.  authed: the connection's MOOR_NODE_AUTH_* flags
 * (auth/_auth update them). */
void moor_node_exec(moor_node_t *n, const char *method, size_t mlen, const char *params,
                    size_t plen, uint32_t nparams, int *authed, moor_node_done_fn done, void *ud);

void moor_node_set_server(moor_node_t *n, moor_srv_t *s);

/* Writes still waiting for durability. */
unsigned moor_node_pending(const moor_node_t *n);

/* The node's engine as env.h's store (get, put, del, scan): what the
 * coordinator and the hints use.  Loop thread only; done callbacks run on
 * the loop. */
moor_store_if_t moor_node_store(moor_node_t *n);

/* Flushes and closes the engine.  REQUIRES: no pending writes.  While a
 * snapshot is being taken (moord's drain waits for its answer) it closes
 * nothing and answers MOOR_EBUSY: call it again once that has answered. */
int moor_node_close(moor_node_t *n);

/* Rights of a connection (the `authed` flags): auth(token) gives CLIENT,
 * _auth(cluster_secret) gives PEER (node-to-node `_` methods; clients
 * never get them when a secret is configured). */
#define MOOR_NODE_AUTH_CLIENT 1
#define MOOR_NODE_AUTH_PEER 2

/* Cluster mode: joins the seeds of the config as member self_addr
 * ("host:port" peers reach this node at); from then on get/put/del go
 * through the coordinator.  0 or an error with a diagnostic. */
int moor_node_join_cluster(moor_node_t *n, const char *self_addr);

/* Stops cluster work (calls in flight answer SHUTTING_DOWN), then
 * done(ud) on the loop once connections and timers are closed.  Call
 * before moor_node_close; a node not in a cluster calls done at once. */
void moor_node_leave_cluster(moor_node_t *n, void (*done)(void *ud), void *ud);

/* A request served through another door than moor_node_dispatch (a RESP
 * command), as moor_node_count_request takes it. */
typedef struct moor_node_door_req {
    int kind;            /* MOOR_LS_* (loadstat.h) */
    uint64_t t0_ns;      /* its uv_hrtime() when it arrived */
    const char *space;   /* its keyspace */
    const char *errcode; /* NULL, or the code it answered */
    const char *name;    /* the command, for the slow log (lowercased there) */
    size_t nlen;
    const char *key; /* its first key, or NULL */
    size_t klen;
    const char *client; /* "ip:port" */
} moor_node_door_req_t;

/* Counts r in the load figures (info.load, the autoscaler), the registry
 * (metrics.h, as the node method of its kind) and, over the threshold, the
 * slow log (with no time breakdown: the command's node calls are not
 * measured one by one).  Can't fail. */
void moor_node_count_request(moor_node_t *n, const moor_node_door_req_t *r);

/* The node's registry of figures (metrics.h), borrowed for its life. */
struct moor_metrics *moor_node_metrics(moor_node_t *n);

/* A scrape: packs the `info` answer into info (reset first) and refreshes
 * the registry's collected figures from it.  0, or MOOR_EINVAL/MOOR_ENOMEM
 * (the collected figures are then empty). */
int moor_node_scrape(moor_node_t *n, moor_buf_t *info);

/* The `ring` and `load` answers into out (reset first).  0 or an error. */
int moor_node_pack_ring(moor_node_t *n, moor_buf_t *out);
int moor_node_pack_load(moor_node_t *n, moor_buf_t *out);
/* The node's slow log (slowlog.h; borrowed while n lives): its
 * moor_slowlog_total is the metric moor_slow_requests_total. */
struct moor_slowlog;
const struct moor_slowlog *moor_node_slowlog(const moor_node_t *n);

/* Wire name of an error code ("KEY_TOO_LARGE", ...). */
const char *moor_node_err_code(int rc);

#endif
