/*
 * reload.c -- the config file run into a host and a config (at start and
 * on reload), and a reload taken live: validate, compare, swap, apply.
 *
 * Order of a reload, each step able to refuse with nothing changed until
 * the swap: run the file in a fresh host (config budget); the node checks
 * (moor_config_load); restart-only settings unchanged (moor_config_diff);
 * reload_check on the fresh host (changed resolvers' laws); room to retire the old host.  Then,
 * none of which can fail: the swap (new calls on the fresh host, running
 * ones finish on the old), the node's config (levels, resolvers, sibling
 * limits, timeouts, gossip), the servers' limits, the log level, and
 * moord's copy of the config.
 *
 * The fresh config's spaces are put in the running config's order before
 * it goes to the node: anti-entropy and transfers were given the spaces by
 * position at start (cluster.c) and keep pointing at the node's copy.
 *
 * Threads: the loop thread.
 */
#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"

/* ---- loading --------------------------------------------------------------------- */

/* What a node needs beyond the schema. */
static int check_node(const moor_config_t *cfg)
{
    if (!moor_config_clustered(cfg))
        return 0;
    /* Without a secret anyone who can connect could call the replica
     * methods (_put replaces values, _coord writes anywhere). */
    if (!cfg->cluster_secret[0])
        return moor_diag(MOOR_EINVAL,
                         "config: a node with seeds needs cluster_secret (peers authenticate "
                         "with it); make one with: head -c 32 /dev/urandom | base64");
    if (strcmp(cfg->listen_host, "0.0.0.0") == 0 || strcmp(cfg->listen_host, "::") == 0)
        return moor_diag(MOOR_EINVAL,
                         "config: in a cluster, listen must name the address "
                         "peers reach this node at, not %s",
                         cfg->listen_host);
    return 0;
}

int moor_config_load(const moor_config_src_t *src, moor_node_t *node, moor_lua_t **out,
                     moor_config_t *cfg)
{
    moor_lua_opts_t lo = {0};
    moor_lua_t *h;
    int rc;

    *out = NULL;
    lo.loop = src->loop;
    lo.root = src->root;
    lo.ops.kv = moor_node_lua_kv;
    lo.ops.ud = node;
    if ((rc = moor_lua_new(&lo, &h)))
        return rc;
    for (unsigned i = 0; i < src->nargs && rc == 0; i++)
        rc = moor_lua_set_arg(h, src->keys[i], src->values[i]);
    if (rc || (rc = moor_lua_load_config(h, src->path, cfg)) || (rc = check_node(cfg))) {
        moor_lua_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void moor_config_srv_limits(const moor_config_t *cfg, moor_srv_opts_t *so)
{
    so->max_frame = cfg->max_frame;
    so->max_conns = cfg->max_conns;
    so->idle_timeout_ms = cfg->idle_timeout_ms;
    so->max_inflight = cfg->max_inflight;
    so->auth_timeout_ms = cfg->auth_timeout_ms;
    so->frame_timeout_ms = cfg->frame_timeout_ms;
    so->output_soft = cfg->output_soft;
    so->output_hard = cfg->output_hard;
    so->output_total = cfg->output_total;
    /* Peer slots exist in a cluster only, for its members' addresses. */
    so->peer_conns = moor_config_clustered(cfg) ? cfg->peer_conns : 0;
}

/* ---- lists of names ------------------------------------------------------------ */

/* NUL-terminated strings one after another. */
typedef struct strlist {
    moor_buf_t b;
    unsigned n;
} strlist_t;

static void strlist_add(strlist_t *l, const char *s)
{
    if (moor_buf_append(&l->b, s, strlen(s) + 1) == 0)
        l->n++;
}

/* The string after p (NULL: the first), or NULL past the last. */
static const char *strlist_next(const strlist_t *l, const char *p)
{
    const char *end = l->b.data + l->b.len;

    p = p ? p + strlen(p) + 1 : l->b.data;
    return p && p < end ? p : NULL;
}

/* "a, b, c" into out (cut to fit). */
static void strlist_join(const strlist_t *l, char *out, size_t cap)
{
    size_t o = 0;

    out[0] = '\0';
    for (const char *p = strlist_next(l, NULL); p && o < cap; p = strlist_next(l, p))
        o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? ", " : "", p);
}

/* A host's handlers or resolvers: (digest, name) records. */
typedef struct catalog {
    moor_buf_t b;
    unsigned n;
} catalog_t;

static void catalog_add(void *ud, const char *name, size_t nlen, uint64_t digest)
{
    catalog_t *c = ud;

    if (moor_buf_append(&c->b, &digest, sizeof(digest)) == 0 &&
        moor_buf_append(&c->b, name, nlen) == 0 && moor_buf_append(&c->b, "", 1) == 0)
        c->n++;
}

/* The digest of name in c: 1 and *digest, or 0 when absent. */
static int catalog_find(const catalog_t *c, const char *name, uint64_t *digest)
{
    const char *p = c->b.data, *end = c->b.data + c->b.len;

    while (p && p < end) {
        const char *nm = p + sizeof(uint64_t);
        if (strcmp(nm, name) == 0) {
            memcpy(digest, p, sizeof(*digest));
            return 1;
        }
        p = nm + strlen(nm) + 1;
    }
    return 0;
}

/* "handlers.NAME" in changed for every entry added, removed or changed
 * between a (running) and b (fresh). */
static void catalog_diff(const catalog_t *a, const catalog_t *b, const char *what,
                         strlist_t *changed)
{
    char name[256];

    for (int pass = 0; pass < 2; pass++) {
        const catalog_t *x = pass ? a : b, *y = pass ? b : a;
        const char *p = x->b.data, *end = x->b.data + x->b.len;
        while (p && p < end) {
            const char *nm = p + sizeof(uint64_t);
            uint64_t dx, dy;
            memcpy(&dx, p, sizeof(dx));
            /* pass 0: added or changed in b; pass 1: gone from b */
            if (!catalog_find(y, nm, &dy) || (pass == 0 && dx != dy)) {
                snprintf(name, sizeof(name), "%s.%s", what, nm);
                strlist_add(changed, name);
            }
            p = nm + strlen(nm) + 1;
        }
    }
}

/* ---- a reload ------------------------------------------------------------------ */

typedef struct reload_run {
    moor_reload_t *r;
    moor_config_t *fresh_cfg;
    moor_lua_t *fresh;
    strlist_t restart, changed, warnings;
    catalog_t old_h, old_r, new_h, new_r;
} reload_run_t;

static void on_setting(void *ud, const char *name, int restart)
{
    reload_run_t *x = ud;

    strlist_add(restart ? &x->restart : &x->changed, name);
}

/* The live changes a node takes only in part: said in the reply. */
static void warn_partial(reload_run_t *x)
{
    const moor_config_t *cfg = x->fresh_cfg;
    char msg[512];

    for (const char *p = strlist_next(&x->changed, NULL); p; p = strlist_next(&x->changed, p)) {
        size_t len = strlen(p);
        if (moor_config_clustered(cfg) && len > 9 && strncmp(p, "spaces.", 7) == 0 &&
            strcmp(p + len - 2, ".n") == 0) {
            snprintf(msg, sizeof(msg),
                     "%s: requests use the new n now; anti-entropy and transfers keep the old "
                     "one until a restart (then run moor repair)",
                     p);
            strlist_add(&x->warnings, msg);
        } else if (strcmp(p, "limits.max_inflight") == 0) {
            strlist_add(&x->warnings,
                        "limits.max_inflight: connections open now keep the limit they were "
                        "accepted with");
        } else if (strcmp(p, "limits.max_frame_mb") == 0 && moor_config_clustered(cfg)) {
            strlist_add(&x->warnings, "limits.max_frame_mb: connections to peers keep the size "
                                      "they were opened with until a restart");
        } else if (strcmp(p, "autoscale") == 0 && cfg->autoscale && !moor_config_clustered(cfg)) {
            strlist_add(&x->warnings, "autoscale: moor.autoscale{} has no effect on a node "
                                      "without seeds (only a cluster scales)");
        }
    }
}

/* Checks of the fresh host before it goes live, after the config ran:
 * every resolver a space names is registered, and when the resolvers
 * changed (added, or their code did), every resolver's laws
 * (moor_lua_check_laws: commutative, associative, idempotent on generated
 * sibling sets).  A resolver that breaks one is refused, since replicas
 * merging siblings in different orders would then disagree for good; the
 * full report goes to the log.  Unchanged resolvers are not checked again:
 * they went live through this check or `moord --check`, and a reload of
 * the log level should not stall the loop for it.  0, or MOOR_EINVAL with
 * a diag naming what is wrong; warnings may be added. */
static int reload_check(moor_lua_t *fresh, const moor_config_t *cfg, const catalog_t *resolvers,
                        int resolvers_changed, strlist_t *warnings)
{
    moor_buf_t report = MOOR_BUF_INIT;
    uint64_t digest;
    char line[512];
    int rc;

    /* every resolver a space names must be in the host that will run it:
     * a space whose resolver is missing would keep every sibling */
    for (unsigned i = 0; i < cfg->nspaces; i++) {
        const moor_space_cfg_t *s = &cfg->spaces[i];
        if (s->resolver[0] && !catalog_find(resolvers, s->resolver, &digest))
            return moor_diag(MOOR_EINVAL,
                             "config: space '%s' names resolver '%s', which the config does not "
                             "register",
                             s->name, s->resolver);
    }
    if (!resolvers_changed)
        return 0;
    rc = moor_lua_check_laws(fresh, &report);
    if (rc == MOOR_EHANDLER) {
        char why[256];
        const char *first = NULL, *line_at, *nl, *end = report.data + report.len;
        size_t flen = 0;
        snprintf(why, sizeof(why), "%s", moor_diag_msg(rc));
        /* the first line that is not an "ok": a broken law and its input */
        for (line_at = report.data; line_at && line_at < end && !first; line_at = nl + 1) {
            nl = memchr(line_at, '\n', (size_t)(end - line_at));
            if (!nl)
                nl = end;
            flen = (size_t)(nl - line_at);
            if (!memmem(line_at, flen, ": ok", 4))
                first = line_at;
        }
        if (!first)
            first = "", flen = 0;
        moor_log_error("reload refused: %s:\n%.*s", why, (int)report.len, report.data);
        rc = moor_diag(MOOR_EINVAL,
                       "%s; the running config stays (moord --check CONFIG shows every law): "
                       "%.*s",
                       why, (int)(flen > 300 ? 300 : flen), first);
        moor_buf_free(&report);
        return rc;
    }
    if (rc) {
        snprintf(line, sizeof(line), "resolver laws not checked: %s", moor_diag_msg(rc));
        strlist_add(warnings, line);
    }
    moor_buf_free(&report);
    return 0;
}

/* The fresh spaces in the running config's order (same set: checked),
 * by swaps in place.  Can't fail. */
static void order_spaces(const moor_config_t *running, moor_config_t *fresh)
{
    for (unsigned i = 0; i < running->nspaces; i++) {
        const char *nm = running->spaces[i].name;
        moor_space_cfg_t *at = (moor_space_cfg_t *)moor_config_space(fresh, nm, strlen(nm)), tmp;
        if (at != &fresh->spaces[i]) {
            tmp = fresh->spaces[i];
            fresh->spaces[i] = *at;
            *at = tmp;
        }
    }
}

/* Steps before the swap; each may refuse. */
static int reload_prepare(reload_run_t *x)
{
    moor_reload_t *r = x->r;
    char names[1024];
    unsigned nchanged;
    int rc;

    if ((rc = moor_config_load(r->src, r->node, &x->fresh, x->fresh_cfg)))
        return rc;
    moor_config_diff(r->cfg, x->fresh_cfg, on_setting, x);
    if (x->restart.n) {
        strlist_join(&x->restart, names, sizeof(names));
        return moor_diag(MOOR_EINVAL,
                         "%s cannot change without a restart; the running config stays", names);
    }
    moor_lua_catalog(*r->lua, MOOR_LUA_HANDLERS, catalog_add, &x->old_h);
    moor_lua_catalog(*r->lua, MOOR_LUA_RESOLVERS, catalog_add, &x->old_r);
    moor_lua_catalog(x->fresh, MOOR_LUA_HANDLERS, catalog_add, &x->new_h);
    moor_lua_catalog(x->fresh, MOOR_LUA_RESOLVERS, catalog_add, &x->new_r);
    catalog_diff(&x->old_h, &x->new_h, "handlers", &x->changed);
    nchanged = x->changed.n;
    catalog_diff(&x->old_r, &x->new_r, "resolvers", &x->changed);
    if ((rc = reload_check(x->fresh, x->fresh_cfg, &x->new_r, x->changed.n > nchanged,
                           &x->warnings)))
        return rc;
    warn_partial(x);
    return 0;
}

/* After the swap: the live settings everywhere.  Nothing here refuses:
 * the fresh config passed every check these make (a node error, which
 * those checks rule out, would be logged). */
static void reload_apply(reload_run_t *x)
{
    moor_reload_t *r = x->r;
    moor_config_t *cfg = x->fresh_cfg;
    moor_srv_opts_t so;
    int rc;

    /* what moord set at start, not the file */
    cfg->engine = r->cfg->engine;
    cfg->force_rejoin = r->cfg->force_rejoin;
    memcpy(cfg->config_path, r->cfg->config_path, sizeof(cfg->config_path));
    order_spaces(r->cfg, cfg);
    if ((rc = moor_node_reconfigure(r->node, cfg)))
        moor_log_error("reload: %s", moor_diag_msg(rc));
    moor_srv_opts_default(&so);
    moor_config_srv_limits(cfg, &so);
    if (r->srv)
        moor_srv_set_limits(r->srv, &so);
    if (r->rsrv) {
        so.peer_conns = 0; /* as start_resp: peers never speak RESP */
        so.max_bulk = cfg->value_max;
        moor_srv_set_limits(r->rsrv, &so);
    }
    moor_log_set_level(cfg->log_level);
    *r->cfg = *cfg;
    *r->lua = x->fresh;
    x->fresh = NULL;
}

static void pack_list(msgpack_packer *pk, const char *key, const strlist_t *l)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_array(pk, l->n);
    for (const char *p = strlist_next(l, NULL); p; p = strlist_next(l, p))
        msgpack_pack_str_with_body(pk, p, strlen(p));
}

static int pack_reply(const reload_run_t *x, moor_buf_t *reply)
{
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, reply);
    rc = msgpack_pack_map(&pk, 5);
    rc |= msgpack_pack_str_with_body(&pk, "ok", 2);
    rc |= msgpack_pack_true(&pk);
    pack_list(&pk, "changed", &x->changed);
    rc |= msgpack_pack_str_with_body(&pk, "handlers", 8);
    rc |= msgpack_pack_uint32(&pk, x->new_h.n);
    rc |= msgpack_pack_str_with_body(&pk, "resolvers", 9);
    rc |= msgpack_pack_uint32(&pk, x->new_r.n);
    pack_list(&pk, "warnings", &x->warnings);
    return rc ? MOOR_ENOMEM : 0;
}

static void run_free(reload_run_t *x)
{
    moor_lua_free(x->fresh);
    free(x->fresh_cfg);
    moor_buf_free(&x->restart.b);
    moor_buf_free(&x->changed.b);
    moor_buf_free(&x->warnings.b);
    moor_buf_free(&x->old_h.b);
    moor_buf_free(&x->old_r.b);
    moor_buf_free(&x->new_h.b);
    moor_buf_free(&x->new_r.b);
}

static void log_outcome(const reload_run_t *x, int rc)
{
    char names[1024];

    if (rc) {
        moor_log_error("reload failed: %s", moor_diag_msg(rc));
        return;
    }
    strlist_join(&x->changed, names, sizeof(names));
    moor_log_info("reload: config %s reloaded: %u handlers, %u resolvers; changed: %s",
                  x->r->src->path, x->new_h.n, x->new_r.n, x->changed.n ? names : "nothing");
    for (const char *p = strlist_next(&x->warnings, NULL); p; p = strlist_next(&x->warnings, p))
        moor_log_warn("reload: %s", p);
}

int moor_reload_run(void *ud, moor_buf_t *reply)
{
    moor_reload_t *r = ud;
    reload_run_t x;
    int rc;

    if (r->running) /* cannot happen on one loop today; kept honest if it ever can */
        return moor_diag(MOOR_EBUSY, "a reload is already under way");
    memset(&x, 0, sizeof(x));
    x.r = r;
    r->running = 1;
    if (!(x.fresh_cfg = malloc(sizeof(*x.fresh_cfg))))
        rc = moor_diag(MOOR_ENOMEM, "reload: out of memory");
    else if ((rc = reload_prepare(&x)) == 0 && (rc = pack_reply(&x, reply)) == 0 &&
             (rc = moor_node_swap_lua(r->node, x.fresh)) == 0)
        reload_apply(&x);
    log_outcome(&x, rc);
    run_free(&x);
    r->running = 0;
    return rc;
}
