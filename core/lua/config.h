/*
 * config.h -- a node's configuration as C reads it, filled by running the
 * Lua config file (config as code: moor.cfg{...}, moor.space(...), ...)
 * and validating it in lua/moor/config.lua.
 */
#ifndef MOOR_LUA_CONFIG_H
#define MOOR_LUA_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/gossip.h"
#include "engine/engine.h"

#define MOOR_CFG_MAX_SPACES 64

/* A read or write level as configured: a count (> 0), or a name resolved
 * against n per request. */
enum moor_level {
    MOOR_LEVEL_DEFAULT = 0, /* not set: quorum */
    MOOR_LEVEL_ONE = -1,
    MOOR_LEVEL_QUORUM = -2, /* n / 2 + 1 */
    MOOR_LEVEL_ALL = -3
};

typedef struct moor_space_cfg {
    char name[256];    /* "default" always exists */
    int n;             /* replicas; 0 = the node's default (3 in a cluster, else 1) */
    int r, w;          /* enum moor_level or a count */
    char resolver[64]; /* "" = keep siblings */
    int sloppy;        /* sloppy quorum and hinted handoff: 1 (default) or 0 */
    long long grace_s; /* tombstone_grace_s; -1 = the node's */
    unsigned sibling_warn, sibling_max; /* 0 = the node's (moor_config_siblings) */
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
    unsigned peer_conns, auth_timeout_ms, frame_timeout_ms;
    size_t output_soft, output_hard, output_total; /* bytes */
    char auth_token[256];                          /* "" = no auth */
    int log_level;                                 /* enum moor_log_level */
    char log_file[4096];                           /* "" = stderr */
    uint64_t handler_instructions;                 /* default budget per handler call */
    unsigned handler_timeout_ms;
    size_t handler_memory; /* Lua heap cap, bytes: handler.memory_mb (128) */
    int sandbox_allow_io;  /* sandbox = { io = true } opt-ins */
    int sandbox_allow_os;
    int sandbox_allow_ffi;
    int sandbox_allow_debug;
    char cluster_secret[256];    /* "" = peers need no secret */
    char zone[64];               /* "" = no zone */
    unsigned vnodes;             /* ring tokens of this node; default 64 */
    unsigned request_timeout_ms; /* a cluster call's default deadline; default 2000 */
    unsigned vc_max_entries; /* vclock = { max_entries = 16, keep_min = 4, max_age_s = 86400 } */
    unsigned vc_keep_min;
    uint64_t vc_max_age_ms;  /* 0: no age limit */
    unsigned ae_interval_s, ae_rate_kb_s, ae_build_kb_s, ae_concurrency; /* anti_entropy = {...} */
    unsigned xfer_rate_kb_s, xfer_concurrency, xfer_settle_ms, xfer_cleanup_s; /* transfer = {...} */
    uint64_t tombstone_grace_s; /* default of every space: 864000 (10 days) */
    int force_rejoin;           /* moord --force-rejoin: start after a down time past the grace */
    unsigned sibling_warn;   /* default 25: a write leaving more siblings warns */
    unsigned sibling_max;    /* default 100: a blind write on this many is refused */
    unsigned hints_window_s; /* hints = { window_s = 10800, max_mb = 512, rate_kb_s = 8192 } */
    unsigned hints_max_mb;
    unsigned hints_rate_kb_s;
    int64_t slowlog_threshold_us; /* slowlog = { threshold_ms = 10, max_len = 128 }; < 0: off */
    unsigned slowlog_max_len;
    moor_gossip_params_t gossip; /* moor.gossip{...} */
    int resp_on;                 /* resp_listen given: a RESP2 port */
    char resp_host[64];          /* resp_listen = "host:port" */
    int resp_port;
    int http_on;                 /* http_listen given: metrics and the status page */
    char http_host[64];          /* http_listen = "host:port" */
    int http_port;
    unsigned resp_ndbs;          /* resp_databases: SELECT n; 0 = {"default"} */
    char resp_dbs[MOOR_CFG_MAX_SPACES][256];
    unsigned nseeds;             /* seeds = {"host:port", ...}: cluster mode when > 0 */
    char seeds[64][128];
    unsigned nspaces;
    moor_space_cfg_t spaces[MOOR_CFG_MAX_SPACES];
    int autoscale;             /* moor.autoscale{...} given (its policy: a resolver, host.h) */
    unsigned as_check_s;       /* evaluate every check_s (10) */
    unsigned as_cooldown_s;    /* wait after a change settled (60) */
    char as_add[1024];         /* sh command that adds a node; "" = none */
    char as_remove[1024];      /* sh command that removes $MOOR_NODE; "" = none */
    char config_path[4096];    /* the config file, absolute (moord sets it): MOOR_CONFIG */
} moor_config_t;

/* ===== API ===== */

/* Defaults for everything (what an empty moor.cfg{} means). */
void moor_config_default(moor_config_t *c);

/* 1 when the node runs in a cluster (seeds configured). */
static inline int moor_config_clustered(const moor_config_t *c)
{
    return c->nseeds > 0;
}

/* A level (enum moor_level or count) as a count for n replicas. */
static inline uint32_t moor_level_count(int level, uint32_t n)
{
    if (level > 0)
        return (uint32_t)level;
    if (level == MOOR_LEVEL_ONE)
        return 1;
    if (level == MOOR_LEVEL_ALL)
        return n;
    return n / 2 + 1;
}

/* The effective n, r, w of a space on this node. */
void moor_config_levels(const moor_config_t *c, const moor_space_cfg_t *s, uint32_t *n, uint32_t *r,
                        uint32_t *w);

/* The level named by s ("one", "quorum", "all"), or MOOR_LEVEL_DEFAULT
 * when s names none. */
int moor_level_parse(const char *s, size_t len);

/* The effective sibling_warn and sibling_max of space s on this node. */
void moor_config_siblings(const moor_config_t *c, const moor_space_cfg_t *s, uint32_t *warn,
                          uint32_t *max);

/* The space named name, or NULL. */
const moor_space_cfg_t *moor_config_space(const moor_config_t *c, const char *name, size_t len);

/* One setting that differs (config_diff.c): its config name ("log.level",
 * "spaces.carts.r", "gossip.period_ms"; borrowed for the call) and 1 when
 * only a restart can change it, 0 when a running node takes it. */
typedef void (*moor_config_diff_fn)(void *ud, const char *name, int restart);

/* Calls fn once per setting that differs between a (the running config)
 * and b (the one reloaded), in a fixed order.  Handlers and resolvers are
 * not settings (the Lua host compares them).  Returns how many differ.
 * Can't fail. */
unsigned moor_config_diff(const moor_config_t *a, const moor_config_t *b, moor_config_diff_fn fn,
                          void *ud);

#endif
