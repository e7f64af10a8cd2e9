/*
 * reload.h -- running the config file into a Lua host and a config, at
 * start and again on `moor reload` / SIGHUP, and taking what a running
 * node can take (README "Hot reload").
 *
 * A reload runs the file with the same arguments (--node, --set) and
 * MOOR_ROOT as at start, into a fresh host and config; validates them;
 * refuses a change to a restart-only setting (config_diff.c decides which
 * are); then swaps: new calls run on the new host while calls already
 * running finish on the old one (node.h moor_node_swap_lua), and the live
 * settings go to the node, the coordinator, gossip, the servers' limits
 * and the log level.  On any error nothing changes.  No connection is
 * closed by a reload.
 *
 * Threads: the loop thread; the config runs on it, under the config
 * budget (host.h MOOR_LUA_CONFIG_*), so requests wait while it runs.
 */
#ifndef MOOR_SERVER_RELOAD_H
#define MOOR_SERVER_RELOAD_H

#include <uv.h>

#include "lua/config.h"
#include "lua/host.h"
#include "net/server.h"
#include "node.h"
#include "util/buf.h"

#define MOOR_RELOAD_MAX_ARGS 32

/* Where a config comes from: the file and moor.arg (borrowed strings). */
typedef struct moor_config_src {
    uv_loop_t *loop;
    const char *path; /* as moord was given it */
    const char *root; /* directory holding lua/ and plugins/ */
    unsigned nargs;
    const char *keys[MOOR_RELOAD_MAX_ARGS], *values[MOOR_RELOAD_MAX_ARGS];
} moor_config_src_t;

/* What a reload changes, all borrowed from moord (which owns them). */
typedef struct moor_reload {
    const moor_config_src_t *src;
    moor_config_t *cfg; /* the running config: replaced on success */
    moor_lua_t **lua;   /* the running host: replaced on success */
    moor_node_t *node;
    moor_srv_t *srv;  /* the MessagePack port */
    moor_srv_t *rsrv; /* the RESP port, or NULL */
    int running;      /* a reload is under way (BUSY for another) */
} moor_reload_t;

/* ===== API ===== */

/* Runs src's config in a new host (ops.kv = moor_node_lua_kv, ud = node,
 * which may be NULL before the node exists: moor_lua_set_ops_ud later)
 * into *cfg, and checks what a node needs beyond the schema (a secret and
 * a reachable listen address in a cluster).  0 with *out set, or an error
 * with a diag and *out NULL. */
int moor_config_load(const moor_config_src_t *src, moor_node_t *node, moor_lua_t **out,
                     moor_config_t *cfg);

/* The server limits of cfg (limits = {...}) into so, over what so holds. */
void moor_config_srv_limits(const moor_config_t *cfg, moor_srv_opts_t *so);

/* Runs the config file again and takes it (see above).  0 with the reply
 * {ok = true, changed = [names], handlers = N, resolvers = N, warnings =
 * [strings]} appended to reply; MOOR_EINVAL (the config failed to run or
 * validate, or changes a restart-only setting: the diag says which) or
 * MOOR_EBUSY (a reload under way, or earlier hosts still retiring), with a
 * diag, and nothing changed.  Fits moor_node_reload_fn (ud = r). */
int moor_reload_run(void *r, moor_buf_t *reply);

#endif
