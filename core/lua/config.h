/*
 * config.h -- a node's configuration as C reads it, filled by running the
 * Lua config file (config as code: moor.cfg{...}, moor.space(...), ...)
 * and validating it in lua/moor/config.lua.
 */
#ifndef MOOR_LUA_CONFIG_H
#define MOOR_LUA_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

#define MOOR_CFG_MAX_SPACES 64

typedef struct moor_space_cfg {
    char name[256];          /* "default" always exists */
    int n, r, w;             /* replication and quorums (1 on a single node) */
    char resolver[64];       /* "" = keep siblings */
} moor_space_cfg_t;

typedef struct moor_config {
    char node[65];             /* node id, required */
    char listen_host[64];      /* default 127.0.0.1 */
    int listen_port;           /* default 7700 */
    char data_dir[4096];       /* default "data" */
    moor_engine_opts_t engine; /* engine = {...}: memtable_mb, cache_mb, sync, sync_ms, ... */
    size_t max_frame;          /* limits = {...} */
    size_t key_max, value_max;
    unsigned max_conns, idle_timeout_ms, max_inflight;
    char auth_token[256];      /* "" = no auth */
    int log_level;             /* enum moor_log_level */
    char log_file[4096];       /* "" = stderr */
    uint64_t handler_instructions; /* default budget per handler call */
    unsigned handler_timeout_ms;
    int sandbox_allow_io;      /* sandbox = { io = true } opt-ins */
    int sandbox_allow_os;
    int sandbox_allow_ffi;
    int sandbox_allow_debug;
    char cluster_secret[256];  /* "" = peers need no secret */
    char zone[64];             /* "" = no zone */
    unsigned vnodes;           /* ring tokens of this node; default 64 */
    unsigned nseeds;           /* seeds = {"host:port", ...}: cluster mode when > 0 */
    char seeds[64][128];
    unsigned nspaces;
    moor_space_cfg_t spaces[MOOR_CFG_MAX_SPACES];
} moor_config_t;

/* ===== API ===== */

/* Defaults for everything (what an empty moor.cfg{} means). */
void moor_config_default(moor_config_t *c);

/* The space named name, or NULL. */
const moor_space_cfg_t *moor_config_space(const moor_config_t *c, const char *name, size_t len);

#endif
