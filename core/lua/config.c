/*
 * config.c -- a node's configuration in C: the defaults (what an empty
 * moor.cfg{} means) and the copy of the table that lua/moor/config.lua
 * validated into moor_config_t.
 *
 * Validation lives in Lua, where messages can name keys easily; this file
 * trusts the table's shape but still checks each field's type and range
 * as it copies (a table built by other code must not overflow a buffer),
 * failing with MOOR_EINVAL.  Units: the Lua side speaks MiB and ms, C
 * stores bytes and ms.
 *
 * Threads: called on the loop thread while the config loads.
 */
#include "config.h"

#include <lauxlib.h>
#include <stddef.h>
#include <string.h>

#include "cluster/coord.h"
#include "cluster/record.h"
#include "lua_internal.h"
#include "util/err.h"
#include "util/limits.h"
#include "util/log.h"

#define MIB ((size_t)1 << 20)

void moor_config_default(moor_config_t *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 7700;
    strcpy(c->data_dir, "data");
    moor_engine_opts_default(&c->engine);
    c->max_frame = MOOR_LIMIT_MAX_FRAME;
    c->key_max = 65535;
    c->value_max = 16 * MIB;
    c->max_conns = MOOR_LIMIT_MAX_CONNS;
    c->idle_timeout_ms = MOOR_LIMIT_IDLE_TIMEOUT_MS;
    c->max_inflight = MOOR_LIMIT_MAX_INFLIGHT;
    c->peer_conns = MOOR_LIMIT_PEER_CONNS;
    c->auth_timeout_ms = MOOR_LIMIT_AUTH_TIMEOUT_MS;
    c->frame_timeout_ms = MOOR_LIMIT_FRAME_TIMEOUT_MS;
    c->output_soft = MOOR_LIMIT_OUTPUT_SOFT;
    c->output_hard = MOOR_LIMIT_OUTPUT_HARD;
    c->output_total = MOOR_LIMIT_OUTPUT_TOTAL;
    c->log_level = MOOR_LOG_INFO;
    c->handler_instructions = 10000000;
    c->handler_timeout_ms = 1000;
    c->slowlog_threshold_us = 10000;
    c->slowlog_max_len = 128;
    c->handler_memory = 128 * MIB;
    c->vnodes = 64;
    c->request_timeout_ms = 2000;
    c->vc_max_entries = 16;
    c->vc_keep_min = 4;
    c->vc_max_age_ms = 86400000;
    c->ae_interval_s = 3600;
    c->ae_rate_kb_s = 8192;
    c->ae_build_kb_s = 32768;
    c->ae_concurrency = 2;
    c->xfer_rate_kb_s = 64 * 1024;
    c->xfer_concurrency = 2;
    c->xfer_settle_ms = 2000;
    c->xfer_cleanup_s = 60;
    c->tombstone_grace_s = 864000;
    c->sibling_warn = 25;
    c->sibling_max = 100;
    c->hints_window_s = 10800;
    c->hints_max_mb = 512;
    c->hints_rate_kb_s = 8192;
    moor_gossip_params_default(&c->gossip);
    c->as_check_s = 10;
    c->as_cooldown_s = 60;
    c->nspaces = 1;
    strcpy(c->spaces[0].name, "default");
    c->spaces[0].sloppy = 1;
    c->spaces[0].grace_s = -1;
}

void moor_config_siblings(const moor_config_t *c, const moor_space_cfg_t *s, uint32_t *warn,
                          uint32_t *max)
{
    *warn = s && s->sibling_warn ? s->sibling_warn : c->sibling_warn;
    *max = s && s->sibling_max ? s->sibling_max : c->sibling_max;
}

void moor_config_levels(const moor_config_t *c, const moor_space_cfg_t *s, uint32_t *n, uint32_t *r,
                        uint32_t *w)
{
    *n = s->n > 0 ? (uint32_t)s->n : moor_config_clustered(c) ? 3 : 1;
    *r = moor_level_count(s->r, *n);
    *w = moor_level_count(s->w, *n);
}

int moor_level_parse(const char *s, size_t len)
{
    if (len == 3 && memcmp(s, "one", 3) == 0)
        return MOOR_LEVEL_ONE;
    if (len == 6 && memcmp(s, "quorum", 6) == 0)
        return MOOR_LEVEL_QUORUM;
    if (len == 3 && memcmp(s, "all", 3) == 0)
        return MOOR_LEVEL_ALL;
    return MOOR_LEVEL_DEFAULT;
}

const moor_space_cfg_t *moor_config_space(const moor_config_t *c, const char *name, size_t len)
{
    for (unsigned i = 0; i < c->nspaces; i++)
        if (strlen(c->spaces[i].name) == len && memcmp(c->spaces[i].name, name, len) == 0)
            return &c->spaces[i];
    return NULL;
}

/* ---- reading fields ------------------------------------------------------------ */

/* Field k of the table at idx as a number in [lo, hi]: 1 if set, 0 if nil,
 * MOOR_EINVAL otherwise. */
static int get_num(lua_State *L, int idx, const char *where, const char *k, double lo, double hi,
                   double *out)
{
    int rc = 0;

    lua_getfield(L, idx, k);
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= lo && lua_tonumber(L, -1) <= hi) {
        *out = lua_tonumber(L, -1);
        rc = 1;
    } else if (!lua_isnil(L, -1)) {
        rc =
            moor_diag(MOOR_EINVAL, "config: %s%s must be a number in %.0f..%.0f", where, k, lo, hi);
    }
    lua_pop(L, 1);
    return rc;
}

static int get_str(lua_State *L, int idx, const char *where, const char *k, char *out, size_t cap)
{
    size_t n;
    const char *s;
    int rc = 0;

    lua_getfield(L, idx, k);
    if (lua_type(L, -1) == LUA_TSTRING) {
        s = lua_tolstring(L, -1, &n);
        if (n < cap && memchr(s, 0, n) == NULL) {
            memcpy(out, s, n);
            out[n] = '\0';
            rc = 1;
        } else {
            rc = moor_diag(MOOR_EINVAL, "config: %s%s must be under %zu bytes without NULs", where,
                           k, cap);
        }
    } else if (!lua_isnil(L, -1)) {
        rc = moor_diag(MOOR_EINVAL, "config: %s%s must be a string", where, k);
    }
    lua_pop(L, 1);
    return rc;
}

static int get_bool(lua_State *L, int idx, const char *k, int *out)
{
    lua_getfield(L, idx, k);
    if (lua_type(L, -1) == LUA_TBOOLEAN)
        *out = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return 0;
}

/* Pushes subtable k of idx (or nothing, returning 0, when absent). */
static int sub(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    if (lua_type(L, -1) == LUA_TTABLE)
        return 1;
    lua_pop(L, 1);
    return 0;
}

#define TRY(x)              \
    do {                    \
        if ((rc = (x)) < 0) \
            goto fail;      \
    } while (0)

static int read_engine(lua_State *L, int t, moor_engine_opts_t *e)
{
    char sync[16] = "", recovery[16] = "";
    double v;
    int rc;

    TRY(get_num(L, t, "engine.", "memtable_mb", 1, 65536, &v));
    if (rc)
        e->memtable_bytes = (size_t)v * MIB;
    TRY(get_num(L, t, "engine.", "cache_mb", 0, 1048576, &v));
    if (rc)
        e->cache_bytes = (size_t)v * MIB;
    TRY(get_num(L, t, "engine.", "sync_ms", 1, 60000, &v));
    if (rc)
        e->sync_interval_ms = (unsigned)v;
    TRY(get_num(L, t, "engine.", "compression", 0, 22, &v));
    if (rc)
        e->compression_level = (int)v;
    TRY(get_num(L, t, "engine.", "bloom_bits", 0, 64, &v));
    if (rc)
        e->bloom_bits = (unsigned)v;
    TRY(get_str(L, t, "engine.", "sync", sync, sizeof(sync)));
    if (strcmp(sync, "always") == 0)
        e->sync_mode = MOOR_SYNC_ALWAYS;
    else if (strcmp(sync, "interval") == 0)
        e->sync_mode = MOOR_SYNC_INTERVAL;
    else if (strcmp(sync, "none") == 0)
        e->sync_mode = MOOR_SYNC_NONE;
    else if (sync[0])
        return moor_diag(MOOR_EINVAL, "config: engine.sync must be always, interval or none");
    TRY(get_str(L, t, "engine.", "wal_recovery", recovery, sizeof(recovery)));
    if (strcmp(recovery, "keep") == 0)
        e->wal_recovery = MOOR_WAL_RECOVERY_KEEP;
    else if (strcmp(recovery, "stop") == 0)
        e->wal_recovery = MOOR_WAL_RECOVERY_STOP;
    else if (recovery[0])
        return moor_diag(MOOR_EINVAL, "config: engine.wal_recovery must be keep or stop");
    return 0;
fail:
    return rc;
}

/* The connection limits (limits.h says what each means). */
static int read_conn_limits(lua_State *L, int t, moor_config_t *c)
{
    double v;
    int rc;

    TRY(get_num(L, t, "limits.", "max_conns", 1, 1000000, &v));
    if (rc)
        c->max_conns = (unsigned)v;
    TRY(get_num(L, t, "limits.", "peer_conns", 0, 65536, &v));
    if (rc)
        c->peer_conns = (unsigned)v;
    TRY(get_num(L, t, "limits.", "idle_timeout_ms", 0, 86400000, &v));
    if (rc)
        c->idle_timeout_ms = (unsigned)v;
    TRY(get_num(L, t, "limits.", "auth_timeout_ms", 0, 86400000, &v));
    if (rc)
        c->auth_timeout_ms = (unsigned)v;
    TRY(get_num(L, t, "limits.", "frame_timeout_ms", 0, 86400000, &v));
    if (rc)
        c->frame_timeout_ms = (unsigned)v;
    TRY(get_num(L, t, "limits.", "max_inflight", 1, 1000000, &v));
    if (rc)
        c->max_inflight = (unsigned)v;
    return 0;
fail:
    return rc;
}

/* Unsent reply bytes: per connection (soft, hard) and per node (total). */
static int read_output_limits(lua_State *L, int t, moor_config_t *c)
{
    double v;
    int rc;

    TRY(get_num(L, t, "limits.", "output_soft_mb", 1, 1048576, &v));
    if (rc)
        c->output_soft = (size_t)v * MIB;
    TRY(get_num(L, t, "limits.", "output_hard_mb", 1, 1048576, &v));
    if (rc)
        c->output_hard = (size_t)v * MIB;
    TRY(get_num(L, t, "limits.", "output_total_mb", 1, 1048576, &v));
    if (rc)
        c->output_total = (size_t)v * MIB;
    if (c->output_soft > c->output_hard)
        return moor_diag(MOOR_EINVAL,
                         "config: limits.output_soft_mb (%zu) must not exceed "
                         "limits.output_hard_mb (%zu)",
                         c->output_soft / MIB, c->output_hard / MIB);
    return 0;
fail:
    return rc;
}

static int read_limits(lua_State *L, int t, moor_config_t *c)
{
    double v;
    int rc;

    TRY(get_num(L, t, "limits.", "max_frame_mb", 1, 1024, &v));
    if (rc)
        c->max_frame = (size_t)v * MIB;
    TRY(get_num(L, t, "limits.", "key_max", 1, 65535, &v));
    if (rc)
        c->key_max = (size_t)v;
    TRY(get_num(L, t, "limits.", "value_max_mb", 1, 512, &v));
    if (rc)
        c->value_max = (size_t)v * MIB;
    TRY(read_conn_limits(L, t, c));
    TRY(read_output_limits(L, t, c));
    /* A value travels in one request frame and comes back in one answer:
     * a limit no put could reach, or no client could read back, is a
     * config mistake. */
    if (c->value_max + c->key_max + 4096 > c->max_frame)
        return moor_diag(MOOR_EINVAL,
                         "config: limits.value_max_mb (%zu) must leave room in a request frame: "
                         "raise limits.max_frame_mb (%zu) above it",
                         c->value_max / MIB, c->max_frame / MIB);
    if (c->value_max + 65536 > MOOR_LIMIT_MAX_ANSWER)
        return moor_diag(MOOR_EINVAL,
                         "config: limits.value_max_mb (%zu) is over what a client reads back in "
                         "one answer (%zu MiB)",
                         c->value_max / MIB, MOOR_LIMIT_MAX_ANSWER / MIB);
    return 0;
fail:
    return rc;
}

static int read_misc(lua_State *L, int t, moor_config_t *c)
{
    char level[16] = "";
    double v;
    int rc;

    if (sub(L, t, "log")) {
        rc = get_str(L, -1, "log.", "level", level, sizeof(level));
        if (rc >= 0)
            rc = get_str(L, -1, "log.", "file", c->log_file, sizeof(c->log_file));
        lua_pop(L, 1);
        if (rc < 0)
            return rc;
        if (level[0] && (c->log_level = moor_log_level_parse(level)) < 0)
            return moor_diag(MOOR_EINVAL, "config: log.level '%s' is unknown", level);
    }
    if (sub(L, t, "handler")) {
        rc = get_num(L, -1, "handler.", "instructions", 10000, 1e12, &v);
        if (rc > 0)
            c->handler_instructions = (uint64_t)v;
        if (rc >= 0 && (rc = get_num(L, -1, "handler.", "timeout_ms", 1, 3600000, &v)) > 0)
            c->handler_timeout_ms = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "handler.", "memory_mb", 8, 65536, &v)) > 0)
            c->handler_memory = (size_t)v * MIB;
        lua_pop(L, 1);
        if (rc < 0)
            return rc;
    }
    if (sub(L, t, "sandbox")) {
        get_bool(L, -1, "io", &c->sandbox_allow_io);
        get_bool(L, -1, "os", &c->sandbox_allow_os);
        get_bool(L, -1, "ffi", &c->sandbox_allow_ffi);
        get_bool(L, -1, "debug", &c->sandbox_allow_debug);
        lua_pop(L, 1);
    }
    return 0;
}

/* r or w of a space: a count 1..16 or "one" / "quorum" / "all". */
static int get_level(lua_State *L, int idx, const char *k, int *out)
{
    size_t len;
    const char *str;
    double v;
    int rc = 0;

    lua_getfield(L, idx, k);
    if (lua_type(L, -1) == LUA_TSTRING) {
        str = lua_tolstring(L, -1, &len);
        if ((*out = moor_level_parse(str, len)) == MOOR_LEVEL_DEFAULT)
            rc = moor_diag(MOOR_EINVAL, "config: spaces[].%s must be a count or one, quorum, all",
                           k);
    } else if (!lua_isnil(L, -1)) {
        v = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || v < 1 || v > MOOR_COORD_N_MAX || v != (int)v)
            rc = moor_diag(MOOR_EINVAL, "config: spaces[].%s must be a count 1..%d", k,
                           MOOR_COORD_N_MAX);
        else
            *out = (int)v;
    }
    lua_pop(L, 1);
    return rc;
}

/* One entry of spaces = { {name, n, r, w, resolver}, ... } at the top. */
static int read_space(lua_State *L, moor_config_t *c)
{
    moor_space_cfg_t s, *dst;
    double v;
    int rc;

    memset(&s, 0, sizeof(s));
    if ((rc = get_str(L, -1, "spaces[].", "name", s.name, sizeof(s.name))) <= 0)
        return rc < 0 ? rc : moor_diag(MOOR_EINVAL, "config: a space without a name");
    TRY(get_str(L, -1, "spaces[].", "resolver", s.resolver, sizeof(s.resolver)));
    TRY(get_num(L, -1, "spaces[].", "n", 1, MOOR_COORD_N_MAX, &v));
    if (rc)
        s.n = (int)v;
    TRY(get_level(L, -1, "r", &s.r));
    TRY(get_level(L, -1, "w", &s.w));
    s.sloppy = 1;
    get_bool(L, -1, "sloppy", &s.sloppy);
    s.grace_s = -1;
    TRY(get_num(L, -1, "spaces[].", "tombstone_grace_s", 0, 315360000, &v));
    if (rc)
        s.grace_s = (long long)v;
    TRY(get_num(L, -1, "spaces[].", "sibling_warn", 1, MOOR_RECORD_MAX_SIBLINGS, &v));
    if (rc)
        s.sibling_warn = (unsigned)v;
    TRY(get_num(L, -1, "spaces[].", "sibling_max", 1, MOOR_RECORD_MAX_SIBLINGS, &v));
    if (rc)
        s.sibling_max = (unsigned)v;
    dst = (moor_space_cfg_t *)moor_config_space(c, s.name, strlen(s.name));
    if (!dst) {
        if (c->nspaces >= MOOR_CFG_MAX_SPACES)
            return moor_diag(MOOR_EINVAL, "config: more than %d spaces", MOOR_CFG_MAX_SPACES);
        dst = &c->spaces[c->nspaces++];
    }
    *dst = s;
    return 0;
fail:
    return rc;
}

static int read_spaces(lua_State *L, int t, moor_config_t *c)
{
    int rc = 0;

    if (!sub(L, t, "spaces"))
        return 0;
    for (int i = 1; rc == 0; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        rc = lua_type(L, -1) == LUA_TTABLE
                 ? read_space(L, c)
                 : moor_diag(MOOR_EINVAL, "config: spaces[%d] is not a table", i);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* gossip = {...} (moor.gossip{}; ranges in lua/moor/config.lua, checked
 * again here with the cross-field rules). */
static int read_gossip(lua_State *L, int idx, moor_config_t *c)
{
    static const struct {
        const char *k;
        size_t off;
    } f[] = {
#define F(x) {#x, offsetof(moor_gossip_params_t, x)}
        F(period_ms),          F(probe_timeout_ms), F(indirect_k),       F(suspicion_mult),
        F(suspicion_max_mult), F(retransmit_mult),  F(max_local_health), F(gossip_interval_ms),
        F(gossip_fanout),      F(max_piggyback),    F(join_interval_ms), F(sync_interval_ms),
#undef F
    };
    double v;
    int rc = 0;

    if (!sub(L, idx, "gossip"))
        return moor_gossip_params_check(&c->gossip);
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]) && rc >= 0; i++)
        if ((rc = get_num(L, -1, "gossip.", f[i].k, 0, 3600000, &v)) > 0)
            *(uint32_t *)((char *)&c->gossip + f[i].off) = (uint32_t)v;
    lua_pop(L, 1);
    if (rc < 0)
        return rc;
    return moor_gossip_params_check(&c->gossip);
}

/* autoscale = {check_s, cooldown_s, add, remove} (moor.autoscale{};
 * validated by lua/moor/config.lua, which keeps the policy function among
 * the resolvers). */
static int read_autoscale(lua_State *L, int idx, moor_config_t *c)
{
    double v;
    int rc;

    if (!sub(L, idx, "autoscale"))
        return 0;
    c->autoscale = 1;
    rc = get_num(L, -1, "autoscale.", "check_s", 1, 86400, &v);
    if (rc > 0)
        c->as_check_s = (unsigned)v;
    if (rc >= 0 && (rc = get_num(L, -1, "autoscale.", "cooldown_s", 0, 86400, &v)) > 0)
        c->as_cooldown_s = (unsigned)v;
    if (rc >= 0)
        rc = get_str(L, -1, "autoscale.", "add", c->as_add, sizeof(c->as_add));
    if (rc >= 0)
        rc = get_str(L, -1, "autoscale.", "remove", c->as_remove, sizeof(c->as_remove));
    lua_pop(L, 1);
    return rc < 0 ? rc : 0;
}

/* resp_listen and resp_databases = {"name", ...} (validated by
 * lua/moor/config.lua; that each names a keyspace is checked at start). */
static int read_resp(lua_State *L, int idx, moor_config_t *c)
{
    double v;
    int rc, n;

    if ((rc = get_str(L, idx, "", "resp_listen_host", c->resp_host, sizeof(c->resp_host))) < 0)
        return rc;
    c->resp_on = rc > 0;
    if ((rc = get_num(L, idx, "", "resp_listen_port", 0, 65535, &v)) < 0)
        return rc;
    if (rc)
        c->resp_port = (int)v;
    lua_getfield(L, idx, "resp_databases");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    n = (int)lua_objlen(L, -1);
    if (n > MOOR_CFG_MAX_SPACES) {
        lua_pop(L, 1);
        return moor_diag(MOOR_EINVAL, "config: more than %d resp_databases", MOOR_CFG_MAX_SPACES);
    }
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        lua_rawgeti(L, -1, i);
        s = lua_tolstring(L, -1, &len);
        if (!s || len == 0 || len >= sizeof(c->resp_dbs[0])) {
            lua_pop(L, 2);
            return moor_diag(MOOR_EINVAL, "config: resp_databases[%d] must be a keyspace name", i);
        }
        memcpy(c->resp_dbs[c->resp_ndbs], s, len + 1);
        c->resp_ndbs++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* seeds = {"host:port", ...} (validated by lua/moor/config.lua). */
static int read_seeds(lua_State *L, int idx, moor_config_t *c)
{
    int n;

    lua_getfield(L, idx, "seeds");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    n = (int)lua_objlen(L, -1);
    if (n > (int)(sizeof(c->seeds) / sizeof(c->seeds[0]))) {
        lua_pop(L, 1);
        return moor_diag(MOOR_EINVAL, "config: more than %zu seeds",
                         sizeof(c->seeds) / sizeof(c->seeds[0]));
    }
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        lua_rawgeti(L, -1, i);
        s = lua_tolstring(L, -1, &len);
        if (!s || len >= sizeof(c->seeds[0])) {
            lua_pop(L, 2);
            return moor_diag(MOOR_EINVAL, "config: seeds[%d] must be a short 'host:port'", i);
        }
        memcpy(c->seeds[c->nseeds], s, len + 1);
        c->nseeds++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

int moor_config_from_lua(lua_State *L, int idx, moor_config_t *c)
{
    int rc;
    double v;

    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    lua_checkstack(L, 8);
    TRY(get_str(L, idx, "", "node", c->node, sizeof(c->node)));
    TRY(get_str(L, idx, "", "listen_host", c->listen_host, sizeof(c->listen_host)));
    TRY(get_num(L, idx, "", "listen_port", 0, 65535, &v));
    if (rc)
        c->listen_port = (int)v;
    TRY(get_str(L, idx, "", "data_dir", c->data_dir, sizeof(c->data_dir)));
    TRY(read_resp(L, idx, c));
    TRY(get_str(L, idx, "", "http_listen_host", c->http_host, sizeof(c->http_host)));
    c->http_on = rc > 0;
    TRY(get_num(L, idx, "", "http_listen_port", 0, 65535, &v));
    if (rc)
        c->http_port = (int)v;
    TRY(get_str(L, idx, "", "auth_token", c->auth_token, sizeof(c->auth_token)));
    if (sub(L, idx, "engine")) {
        rc = read_engine(L, lua_gettop(L), &c->engine);
        lua_pop(L, 1);
        TRY(rc);
    }
    if (sub(L, idx, "limits")) {
        rc = read_limits(L, lua_gettop(L), c);
        lua_pop(L, 1);
        TRY(rc);
    }
    TRY(get_str(L, idx, "", "cluster_secret", c->cluster_secret, sizeof(c->cluster_secret)));
    TRY(get_str(L, idx, "", "zone", c->zone, sizeof(c->zone)));
    TRY(get_num(L, idx, "", "vnodes", 1, 4096, &v));
    if (rc)
        c->vnodes = (unsigned)v;
    TRY(get_num(L, idx, "", "request_timeout_ms", 1, 3600000, &v));
    if (rc)
        c->request_timeout_ms = (unsigned)v;
    if (sub(L, idx, "vclock")) {
        rc = get_num(L, -1, "vclock.", "max_entries", 1, 16, &v);
        if (rc > 0)
            c->vc_max_entries = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "vclock.", "keep_min", 1, 16, &v)) > 0)
            c->vc_keep_min = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "vclock.", "max_age_s", 0, 315360000, &v)) > 0)
            c->vc_max_age_ms = (uint64_t)v * 1000;
        lua_pop(L, 1);
        TRY(rc);
    }
    if (sub(L, idx, "anti_entropy")) {
        rc = get_num(L, -1, "anti_entropy.", "interval_s", 0, 31536000, &v);
        if (rc > 0)
            c->ae_interval_s = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "anti_entropy.", "rate_kb_s", 1, 10485760, &v)) > 0)
            c->ae_rate_kb_s = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "anti_entropy.", "build_kb_s", 1, 10485760, &v)) > 0)
            c->ae_build_kb_s = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "anti_entropy.", "concurrency", 1, 64, &v)) > 0)
            c->ae_concurrency = (unsigned)v;
        lua_pop(L, 1);
        TRY(rc);
    }
    if (sub(L, idx, "transfer")) {
        rc = get_num(L, -1, "transfer.", "rate_mb_s", 0.01, 100000, &v);
        if (rc > 0)
            c->xfer_rate_kb_s = v * 1024 < 1 ? 1 : (unsigned)(v * 1024);
        if (rc >= 0 && (rc = get_num(L, -1, "transfer.", "concurrency", 1, 64, &v)) > 0)
            c->xfer_concurrency = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "transfer.", "settle_ms", 0, 600000, &v)) > 0)
            c->xfer_settle_ms = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "transfer.", "cleanup_s", 0, 31536000, &v)) > 0)
            c->xfer_cleanup_s = (unsigned)v;
        lua_pop(L, 1);
        TRY(rc);
    }
    TRY(get_num(L, idx, "", "tombstone_grace_s", 0, 315360000, &v));
    if (rc)
        c->tombstone_grace_s = (uint64_t)v;
    TRY(get_num(L, idx, "", "sibling_warn", 1, MOOR_RECORD_MAX_SIBLINGS, &v));
    if (rc)
        c->sibling_warn = (unsigned)v;
    TRY(get_num(L, idx, "", "sibling_max", 1, MOOR_RECORD_MAX_SIBLINGS, &v));
    if (rc)
        c->sibling_max = (unsigned)v;
    if (sub(L, idx, "hints")) {
        rc = get_num(L, -1, "hints.", "window_s", 1, 2592000, &v);
        if (rc > 0)
            c->hints_window_s = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "hints.", "max_mb", 1, 1048576, &v)) > 0)
            c->hints_max_mb = (unsigned)v;
        if (rc >= 0 && (rc = get_num(L, -1, "hints.", "rate_kb_s", 1, 10485760, &v)) > 0)
            c->hints_rate_kb_s = (unsigned)v;
        lua_pop(L, 1);
        TRY(rc);
    }
    if (sub(L, idx, "slowlog")) {
        rc = get_num(L, -1, "slowlog.", "threshold_ms", -1, 3600000, &v);
        if (rc > 0) /* any negative turns it off */
            c->slowlog_threshold_us = v < 0 ? -1 : (int64_t)(v * 1000);
        if (rc >= 0 && (rc = get_num(L, -1, "slowlog.", "max_len", 1, 100000, &v)) > 0)
            c->slowlog_max_len = (unsigned)v;
        lua_pop(L, 1);
        TRY(rc);
    }
    TRY(read_gossip(L, idx, c));
    TRY(read_autoscale(L, idx, c));
    TRY(read_seeds(L, idx, c));
    TRY(read_misc(L, idx, c));
    TRY(read_spaces(L, idx, c));
    if (!c->node[0])
        return moor_diag(MOOR_EINVAL, "config: node is required");
    /* The id is a dot's id in every record it writes: letters, digits,
     * '_', '.', '-' -- never the legacy dot id (one zero byte) of records
     * converted from the format before DVV (record.h). */
    for (const char *q = c->node; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '_' || *q == '.' || *q == '-'))
            return moor_diag(MOOR_EINVAL,
                             "config: node must be a node id: letters, digits, '_', '.' or '-'");
    for (unsigned i = 0; i < c->nspaces; i++) {
        uint32_t n, r, w;
        moor_config_levels(c, &c->spaces[i], &n, &r, &w);
        if (r > n || w > n)
            return moor_diag(MOOR_EINVAL,
                             "config: space '%s': r=%u and w=%u must not exceed n=%u (n defaults "
                             "to 3 in a cluster, 1 alone)",
                             c->spaces[i].name, r, w, n);
        moor_config_siblings(c, &c->spaces[i], &r, &w);
        if (r > w)
            return moor_diag(MOOR_EINVAL,
                             "config: space '%s': sibling_warn=%u must not exceed sibling_max=%u",
                             c->spaces[i].name, r, w);
    }
    return 0;
fail:
    return rc;
}
