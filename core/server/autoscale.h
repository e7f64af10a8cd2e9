/*
 * autoscale.h -- a node's part in automatic scaling (README "Automatic
 * scaling"): it measures its own load, publishes it through the cluster's
 * load table (core/cluster/load.h), and -- on the one node that evaluates,
 * the lowest id that is up -- runs the config's Lua policy on the
 * cluster's load every check_s and the add/remove command it answers.
 *
 * Once a second (a libuv timer): the load figures of the last second
 * (loadstat.h) become this node's entry in the load table.  Every check_s
 * on the evaluator, unless a change is under way or cooling down, the
 * policy (moor.autoscale{policy = fn}, kept by the Lua host as a resolver
 * named "autoscale:policy") is called under the handler budget with
 *   {nodes = [{id, status, addr, age_ms, load}], n, now_ms, self}
 * and answers none, add, or remove id (with a reason).  add/remove run
 * the configured command with /bin/sh -c through uv_spawn (the loop never
 * waits for it), with MOOR_NODE (remove: the id), MOOR_SEEDS (the up
 * members' addresses, comma-separated), MOOR_CONFIG (the config file) and
 * MOOR_REASON in its environment.  One change at a time: after a command
 * the next decision waits until it exited, no member is joining or
 * leaving, the change shows in the member table (an add: more members
 * up than before; a remove: the node is left, down or gone) or
 * MOOR_AS_SETTLE_MAX_MS passed, and then cooldown_s (a command that
 * failed -- exit status not 0 -- starts the cooldown at once).  Every decision
 * other than none is logged with its reason, and so is a held one.
 *
 * Loop thread only.
 */
#ifndef MOOR_SERVER_AUTOSCALE_H
#define MOOR_SERVER_AUTOSCALE_H

#include <stdint.h>
#include <uv.h>

#include <msgpack.h>

#include "cluster.h"
#include "engine/engine.h"
#include "lua/config.h"
#include "lua/host.h"
#include "util/buf.h"

#define MOOR_AS_TICK_MS 1000u
#define MOOR_AS_SETTLE_MAX_MS 120000u
/* A command running longer is stopped (SIGTERM, SIGKILL 10 s later). */
#define MOOR_AS_COMMAND_MAX_MS (15u * 60 * 1000)
#define MOOR_AS_POLICY "autoscale:policy" /* lua/moor/config.lua AUTOSCALE_POLICY */

typedef struct moor_as moor_as_t;

/* ===== API ===== */

/* Starts the per-second timer (it does not keep the loop alive).  cfg and
 * engine are borrowed until moor_as_close.  0 or MOOR_ENOMEM. */
int moor_as_new(uv_loop_t *loop, const moor_config_t *cfg, moor_engine_t *engine, moor_as_t **out);

/* The Lua host holding the policy, and the cluster (NULL: none / gone). */
void moor_as_set_lua(moor_as_t *a, moor_lua_t *L);
void moor_as_set_cluster(moor_as_t *a, moor_cl_t *cl);

/* A client request of kind (loadstat.h) was answered; it started at
 * t0_ns (uv_hrtime).  Can't fail. */
void moor_as_request(moor_as_t *a, int kind, uint64_t t0_ns);

/* info.load: this node's figures (loadstat.h moor_loadstat_pack). */
int moor_as_pack_load(moor_as_t *a, msgpack_packer *pk);

/* info.autoscale: {enabled, evaluator, last_decision, last_reason,
 * last_at_ms, changes, running}. */
int moor_as_pack_info(const moor_as_t *a, msgpack_packer *pk);

/* The `load` method's answer: {nodes = [{id, status, addr, age_ms,
 * rps, p99_ms, ...}]} -- every member the table knows, with the load
 * fields of the last figures that reached this node (none yet: only id,
 * status, addr).  Appended to out.  0 or MOOR_ENOMEM. */
int moor_as_pack_cluster_load(moor_as_t *a, moor_buf_t *out);

/* Stops the timer and forgets a running command (it runs on); frees once
 * libuv closed the handles.  Call once. */
void moor_as_close(moor_as_t *a);

#endif
