/*
 * config_diff.c -- which settings differ between the running config and a
 * reloaded one, and which of them a running node can take (moor reload).
 *
 * Live: what is read per request or per round from the node's config, or
 * held by the Lua host (which a reload replaces whole).  Restart-only:
 * what shaped something built once at start -- the engine's files and
 * record bounds, the listeners, the node's identity and place on the ring,
 * the peer authentication, the anti-entropy trees, the transfer and hint
 * services, the set of keyspaces and their tombstone grace.  The table
 * below is the one place that decides; README "Hot reload" lists it for
 * people and must agree with it.
 *
 * Names are the config's own ("limits.max_conns", "spaces.carts.r",
 * "gossip.period_ms"), so a message can say what to edit.
 *
 * Pure: no I/O, no Lua; any thread.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

typedef struct diff {
    moor_config_diff_fn fn;
    void *ud;
    unsigned n;
} diff_t;

static void note(diff_t *d, const char *name, int restart)
{
    d->n++;
    d->fn(d->ud, name, restart);
}

/* One scalar field of moor_config_t: its name and how it may change. */
typedef struct field {
    const char *name;
    size_t off, size;
    int restart;
} field_t;

#define F(name, member, restart)                                                             \
    {                                                                                        \
        name, offsetof(moor_config_t, member), sizeof(((moor_config_t *)0)->member), restart \
    }
#define LIVE 0
#define RESTART 1

static const field_t fields[] = {
    F("node", node, RESTART),
    F("listen", listen_host, RESTART),
    F("listen", listen_port, RESTART),
    F("data_dir", data_dir, RESTART),
    F("engine.memtable_mb", engine.memtable_bytes, RESTART),
    F("engine.cache_mb", engine.cache_bytes, RESTART),
    F("engine.sync", engine.sync_mode, RESTART),
    F("engine.sync_ms", engine.sync_interval_ms, RESTART),
    F("engine.compression", engine.compression_level, RESTART),
    F("engine.bloom_bits", engine.bloom_bits, RESTART),
    F("engine.wal_recovery", engine.wal_recovery, RESTART),
    F("limits.max_frame_mb", max_frame, LIVE),
    F("limits.key_max", key_max, RESTART), /* the engine's record bounds follow them */
    F("limits.value_max_mb", value_max, RESTART),
    F("limits.max_conns", max_conns, LIVE),
    F("limits.idle_timeout_ms", idle_timeout_ms, LIVE),
    F("limits.max_inflight", max_inflight, LIVE),
    F("limits.peer_conns", peer_conns, LIVE),
    F("limits.auth_timeout_ms", auth_timeout_ms, LIVE),
    F("limits.frame_timeout_ms", frame_timeout_ms, LIVE),
    F("limits.output_soft_mb", output_soft, LIVE),
    F("limits.output_hard_mb", output_hard, LIVE),
    F("limits.output_total_mb", output_total, LIVE),
    F("auth_token", auth_token, RESTART), /* connections authenticated under the old one */
    F("log.level", log_level, LIVE),
    F("log.file", log_file, RESTART),
    F("handler.instructions", handler_instructions, LIVE),
    F("handler.timeout_ms", handler_timeout_ms, LIVE),
    F("handler.memory_mb", handler_memory, LIVE),
    F("sandbox.io", sandbox_allow_io, LIVE),
    F("sandbox.os", sandbox_allow_os, LIVE),
    F("sandbox.ffi", sandbox_allow_ffi, LIVE),
    F("sandbox.debug", sandbox_allow_debug, LIVE),
    F("cluster_secret", cluster_secret, RESTART),
    F("zone", zone, RESTART),
    F("vnodes", vnodes, RESTART),
    F("request_timeout_ms", request_timeout_ms, LIVE),
    F("vclock.max_entries", vc_max_entries, RESTART),
    F("vclock.keep_min", vc_keep_min, RESTART),
    F("vclock.max_age_s", vc_max_age_ms, RESTART),
    F("anti_entropy.interval_s", ae_interval_s, RESTART),
    F("anti_entropy.rate_kb_s", ae_rate_kb_s, RESTART),
    F("anti_entropy.build_kb_s", ae_build_kb_s, RESTART),
    F("anti_entropy.concurrency", ae_concurrency, RESTART),
    F("transfer.rate_mb_s", xfer_rate_kb_s, RESTART),
    F("transfer.concurrency", xfer_concurrency, RESTART),
    F("transfer.settle_ms", xfer_settle_ms, RESTART),
    F("transfer.cleanup_s", xfer_cleanup_s, RESTART),
    F("tombstone_grace_s", tombstone_grace_s, RESTART),
    F("sibling_warn", sibling_warn, LIVE),
    F("sibling_max", sibling_max, LIVE),
    F("hints.window_s", hints_window_s, RESTART),
    F("hints.max_mb", hints_max_mb, RESTART),
    F("hints.rate_kb_s", hints_rate_kb_s, RESTART),
    F("gossip.period_ms", gossip.period_ms, LIVE),
    F("gossip.probe_timeout_ms", gossip.probe_timeout_ms, LIVE),
    F("gossip.indirect_k", gossip.indirect_k, LIVE),
    F("gossip.suspicion_mult", gossip.suspicion_mult, LIVE),
    F("gossip.suspicion_max_mult", gossip.suspicion_max_mult, LIVE),
    F("gossip.retransmit_mult", gossip.retransmit_mult, LIVE),
    F("gossip.max_local_health", gossip.max_local_health, LIVE),
    F("gossip.gossip_interval_ms", gossip.gossip_interval_ms, LIVE),
    F("gossip.gossip_fanout", gossip.gossip_fanout, LIVE),
    F("gossip.max_piggyback", gossip.max_piggyback, LIVE),
    F("gossip.join_interval_ms", gossip.join_interval_ms, LIVE),
    F("gossip.sync_interval_ms", gossip.sync_interval_ms, LIVE),
    F("resp_listen", resp_on, RESTART),
    F("resp_listen", resp_host, RESTART),
    F("resp_listen", resp_port, RESTART),
    F("http_listen", http_on, RESTART),
    F("http_listen", http_host, RESTART),
    F("http_listen", http_port, RESTART),
    F("slowlog.threshold_ms", slowlog_threshold_us, LIVE),
    F("slowlog.max_len", slowlog_max_len, RESTART), /* the ring is allocated at start */
    F("autoscale", autoscale, LIVE),
    F("autoscale.check_s", as_check_s, LIVE),
    F("autoscale.cooldown_s", as_cooldown_s, LIVE),
    F("autoscale.add", as_add, LIVE),
    F("autoscale.remove", as_remove, LIVE),
};

#undef F

/* Strings compare as strings (bytes past the NUL are not the config's). */
static int field_differs(const moor_config_t *a, const moor_config_t *b, const field_t *f)
{
    const char *pa = (const char *)a + f->off, *pb = (const char *)b + f->off;

    if (f->size > sizeof(uint64_t)) /* a char array */
        return strncmp(pa, pb, f->size) != 0;
    return memcmp(pa, pb, f->size) != 0;
}

static int list_differs(const char (*a)[128], unsigned na, const char (*b)[128], unsigned nb)
{
    if (na != nb)
        return 1;
    for (unsigned i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 1;
    return 0;
}

/* The spaces: the set (restart-only) and each one's settings. */
static void diff_spaces(const moor_config_t *a, const moor_config_t *b, diff_t *d)
{
    char name[sizeof(a->spaces[0].name) + 40];
    int set_changed = a->nspaces != b->nspaces;

    for (unsigned i = 0; i < a->nspaces && !set_changed; i++)
        set_changed = !moor_config_space(b, a->spaces[i].name, strlen(a->spaces[i].name));
    if (set_changed) {
        note(d, "spaces", RESTART);
        return;
    }
    for (unsigned i = 0; i < a->nspaces; i++) {
        const moor_space_cfg_t *x = &a->spaces[i];
        const moor_space_cfg_t *y = moor_config_space(b, x->name, strlen(x->name));
#define SPACE(member, key, restart)                              \
    if (x->member != y->member) {                                \
        snprintf(name, sizeof(name), "spaces.%s." key, x->name); \
        note(d, name, restart);                                  \
    }
        SPACE(n, "n", LIVE)
        SPACE(r, "r", LIVE)
        SPACE(w, "w", LIVE)
        SPACE(sloppy, "sloppy", LIVE)
        SPACE(grace_s, "tombstone_grace_s", RESTART)
        SPACE(sibling_warn, "sibling_warn", LIVE)
        SPACE(sibling_max, "sibling_max", LIVE)
#undef SPACE
        if (strcmp(x->resolver, y->resolver) != 0) {
            snprintf(name, sizeof(name), "spaces.%s.resolver", x->name);
            note(d, name, LIVE);
        }
    }
}

unsigned moor_config_diff(const moor_config_t *a, const moor_config_t *b, moor_config_diff_fn fn,
                          void *ud)
{
    diff_t d = {fn, ud, 0};
    const char *last = NULL;

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const field_t *f = &fields[i];
        /* a setting held in several fields (listen: host and port) once */
        if (last && strcmp(last, f->name) == 0)
            continue;
        if (field_differs(a, b, f)) {
            note(&d, f->name, f->restart);
            last = f->name;
        }
    }
    if (list_differs(a->seeds, a->nseeds, b->seeds, b->nseeds))
        note(&d, "seeds", RESTART);
    if (a->resp_ndbs != b->resp_ndbs)
        note(&d, "resp_databases", RESTART);
    else
        for (unsigned i = 0; i < a->resp_ndbs; i++)
            if (strcmp(a->resp_dbs[i], b->resp_dbs[i]) != 0) {
                note(&d, "resp_databases", RESTART);
                break;
            }
    diff_spaces(a, b, &d);
    return d.n;
}
