/*
 * metrics.c -- the registry of figures (metrics.h).
 *
 * Request figures are cells, one per (method, space) seen, allocated on
 * first use: a count, a sum of durations and one non-cumulative counter
 * per latency bucket (made cumulative when shown).  Errors are a small
 * array of (method, space, code) series.
 *
 * Collected figures come from the `info` map through COLLECT, a table of
 * dotted paths: a '*' segment matches every key of a map and puts that key
 * in the entry's label; a '#' segment matches every element of an array
 * and puts its index there; a string found at a labelled path without
 * either becomes the label with the value 1 (a state).  Each scrape
 * replaces every collected sample, so nothing collected is ever stale.
 *
 * Threads: the loop thread only.
 */
#include "server/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/hist.h"
#include "util/mp.h"

const double MOOR_METRICS_BOUNDS[MOOR_METRICS_NBOUNDS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};

#define NBUCKETS (MOOR_METRICS_NBOUNDS + 1)

static const char *const METHODS[] = {
    "get",   "put",    "del",       "call", "ping",    "info", "ring",     "where",   "repair",
    "leave", "remove", "transfers", "load", "metrics", "scan", "snapshot", "slowlog", "other"};
#define NMETHODS ((int)(sizeof(METHODS) / sizeof(METHODS[0])))
enum { M_GET = 0, M_PUT = 1, M_DEL = 2, M_WHERE = 7, M_SCAN = 14 }; /* indexes into METHODS */
#define METHOD_OTHER (NMETHODS - 1)

enum { T_COUNTER, T_GAUGE, T_HISTOGRAM };
static const char *const TYPES[] = {"counter", "gauge", "histogram"};

typedef struct cell {
    uint64_t count;
    uint64_t sum_ns;
    uint64_t b[NBUCKETS]; /* b[i]: durations in (bound[i-1], bound[i]] */
    uint64_t err_other;   /* errors shown as code "other" (never in errs) */
} cell_t;

typedef struct errs {
    int method, space;
    char code[32];
    uint64_t n;
} errs_t;

/* One collected figure: a COLLECT entry and at most one label value. */
typedef struct sample {
    int entry;      /* index into COLLECT */
    char label[72]; /* the label's value ("" when the entry has none) */
    double value;
} sample_t;

struct moor_metrics {
    int nspaces; /* configured keyspaces; index nspaces is "other" */
    char (*spaces)[256];
    int def_space;  /* index of "default" */
    cell_t **cells; /* [method * (nspaces + 1) + space], NULL until used */
    errs_t errs[MOOR_METRICS_MAX_ERRS];
    int nerrs;
    sample_t *samples;
    size_t nsamples, capsamples;
    char node[72], version[32]; /* from the last collect: moor_node_info */
};

/* ---- the collection table ------------------------------------------------------ */

typedef struct collect {
    const char *path;  /* dotted path into `info` */
    const char *name;  /* metric name */
    int type;          /* T_COUNTER or T_GAUGE */
    const char *label; /* label a '*', '#' or string value fills, or NULL */
    double scale;      /* value multiplier (ms -> s: 0.001) */
    const char *help;
} collect_t;

static const collect_t COLLECT[] = {
    {"uptime_ms", "moor_uptime_seconds", T_GAUGE, NULL, 0.001, "Time since the node started."},
    {"requests.pending_writes", "moor_pending_writes", T_GAUGE, NULL, 1,
     "Writes queued on the engine, not yet durable."},
    {"server.connections", "moor_connections", T_GAUGE, NULL, 1,
     "Open connections on the MessagePack port."},
    {"server.accepted", "moor_connections_accepted_total", T_COUNTER, NULL, 1,
     "Connections accepted on the MessagePack port."},
    {"server.refused", "moor_connections_refused_total", T_COUNTER, NULL, 1,
     "Connections refused by limits.max_conns."},
    {"server.bad_frames", "moor_bad_frames_total", T_COUNTER, NULL, 1,
     "Malformed or oversized frames received."},
    {"engine.memtable_bytes", "moor_engine_memtable_bytes", T_GAUGE, NULL, 1,
     "Bytes in the active and frozen memtables."},
    {"engine.disk_bytes", "moor_engine_disk_bytes", T_GAUGE, NULL, 1,
     "Bytes on disk: tables, commit log and manifest."},
    {"engine.cache_hits", "moor_engine_cache_hits_total", T_COUNTER, NULL, 1, "Block cache hits."},
    {"engine.cache_misses", "moor_engine_cache_misses_total", T_COUNTER, NULL, 1,
     "Block cache misses."},
    {"engine.cache_hit_rate", "moor_engine_cache_hit_ratio", T_GAUGE, NULL, 1,
     "Block cache hits / lookups since start (1 before any lookup)."},
    {"engine.level_tables.#", "moor_engine_level_tables", T_GAUGE, "level", 1,
     "Tables per LSM level."},
    {"engine.level_bytes.#", "moor_engine_level_bytes", T_GAUGE, "level", 1,
     "Bytes per LSM level."},
    {"engine.flushes", "moor_engine_flushes_total", T_COUNTER, NULL, 1, "Memtable flushes."},
    {"engine.compactions", "moor_engine_compactions_total", T_COUNTER, NULL, 1, "Compactions."},
    {"engine.stall_us", "moor_engine_stall_seconds_total", T_COUNTER, NULL, 1e-6,
     "Time writers spent slowed or stalled by the engine."},
    {"engine.write_amp", "moor_engine_write_amplification", T_GAUGE, NULL, 1,
     "(commit log + flush + compaction bytes) / user bytes written."},
    {"engine.user_bytes_written", "moor_engine_user_written_bytes_total", T_COUNTER, NULL, 1,
     "Key and value bytes accepted from callers."},
    {"engine.compact_bytes_written", "moor_engine_compaction_written_bytes_total", T_COUNTER, NULL,
     1, "Table bytes written by compaction."},
    {"engine.filter_rewrites", "moor_engine_expired_rewrites_total", T_COUNTER, NULL, 1,
     "Expired values compaction rewrote as tombstones (README \"Expiry (TTL)\")."},
    {"engine.filter_drops", "moor_engine_reaped_total", T_COUNTER, NULL, 1,
     "Records compaction dropped: a node alone's tombstones past their grace."},
    {"engine.no_space", "moor_engine_no_space", T_GAUGE, NULL, 1, "1 while the disk is full."},
    {"engine.read_only", "moor_engine_read_only", T_GAUGE, NULL, 1,
     "1 once a background failure made the engine read-only."},
    {"slowlog.total", "moor_slow_requests_total", T_COUNTER, NULL, 1,
     "Requests and handler calls over slowlog.threshold_ms (README \"Slow log\")."},
    {"slowlog.len", "moor_slowlog_entries", T_GAUGE, NULL, 1,
     "Entries kept in the slow log's ring."},
    {"siblings.warned", "moor_sibling_warnings_total", T_COUNTER, NULL, 1,
     "Writes that left more than sibling_warn siblings."},
    {"siblings.refused", "moor_sibling_refusals_total", T_COUNTER, NULL, 1,
     "Blind writes refused at sibling_max."},
    {"cluster.gossip.members.*", "moor_cluster_members", T_GAUGE, "status", 1,
     "Members by the failure detector's status."},
    {"cluster.needs_repair", "moor_cluster_needs_repair", T_GAUGE, NULL, 1,
     "1 while this node waits for a repair of lost writes."},
    {"cluster.ring_version", "moor_cluster_ring_version", T_GAUGE, NULL, 1,
     "Version of the member table the ring is built from."},
    {"cluster.coordinator.quorum_failures", "moor_coord_quorum_failures_total", T_COUNTER, NULL, 1,
     "Coordinated requests that did not reach their quorum."},
    {"cluster.coordinator.timeouts", "moor_coord_timeouts_total", T_COUNTER, NULL, 1,
     "Coordinated requests past their deadline."},
    {"cluster.coordinator.read_repairs", "moor_coord_read_repairs_total", T_COUNTER, NULL, 1,
     "Stale replicas written back by reads."},
    {"cluster.coordinator.sloppy_writes", "moor_coord_sloppy_writes_total", T_COUNTER, NULL, 1,
     "Writes that used a fallback replica."},
    {"cluster.peers.*.requests", "moor_peer_requests_total", T_COUNTER, "peer", 1,
     "Requests sent to a peer."},
    {"cluster.peers.*.errors", "moor_peer_errors_total", T_COUNTER, "peer", 1,
     "Error answers from a peer."},
    {"cluster.peers.*.timeouts", "moor_peer_timeouts_total", T_COUNTER, "peer", 1,
     "Requests to a peer past their deadline."},
    {"cluster.peers.*.replies", "moor_peer_replies_total", T_COUNTER, "peer", 1,
     "Answers from a peer (errors included)."},
    {"cluster.peers.*.latency_us", "moor_peer_latency_seconds_total", T_COUNTER, "peer", 1e-6,
     "Sum of the round trips of the answered requests (divide by moor_peer_replies_total)."},
    {"cluster.peers.*.connected", "moor_peer_connected", T_GAUGE, "peer", 1,
     "1 while a connection to the peer is up."},
    {"hints.pending", "moor_hints_pending", T_GAUGE, NULL, 1, "Hints waiting for delivery."},
    {"hints.bytes", "moor_hints_bytes", T_GAUGE, NULL, 1, "Bytes of the pending hints."},
    {"hints.stored", "moor_hints_stored_total", T_COUNTER, NULL, 1, "Hints stored."},
    {"hints.delivered", "moor_hints_delivered_total", T_COUNTER, NULL, 1, "Hints delivered."},
    {"hints.dropped", "moor_hints_dropped_total", T_COUNTER, NULL, 1,
     "Hints dropped (window, size)."},
    {"repair.running", "moor_repair_running", T_GAUGE, NULL, 1, "1 while a repair runs."},
    {"repair.ranges_total", "moor_repair_ranges", T_GAUGE, NULL, 1,
     "Ranges of the running or last repair."},
    {"repair.ranges_done", "moor_repair_ranges_done", T_GAUGE, NULL, 1, "Of those, done."},
    {"repair.keys_repaired", "moor_repair_keys_repaired_total", T_COUNTER, NULL, 1,
     "Keys repaired by anti-entropy."},
    {"repair.exchanges", "moor_repair_exchanges_total", T_COUNTER, NULL, 1,
     "Range exchanges with replicas."},
    {"repair.passes", "moor_repair_passes_total", T_COUNTER, NULL, 1, "Full repair passes."},
    {"transfer.state", "moor_transfer_state", T_GAUGE, "state", 1,
     "The range transfer state (1 for the current one)."},
    {"transfer.ranges_total", "moor_transfer_ranges", T_GAUGE, NULL, 1,
     "Ranges of the current or last transfer."},
    {"transfer.ranges_done", "moor_transfer_ranges_done", T_GAUGE, NULL, 1, "Of those, done."},
    {"transfer.bytes_sent", "moor_transfer_sent_bytes_total", T_COUNTER, NULL, 1,
     "Bytes streamed to other nodes."},
    {"transfer.bytes_received", "moor_transfer_received_bytes_total", T_COUNTER, NULL, 1,
     "Bytes streamed from other nodes."},
    {"lua.handlers_inflight", "moor_lua_handlers_inflight", T_GAUGE, NULL, 1,
     "Handlers running or waiting."},
    {"lua.handler_calls", "moor_lua_handler_calls_total", T_COUNTER, NULL, 1, "Handler calls."},
    {"lua.resolver_calls", "moor_lua_resolver_calls_total", T_COUNTER, NULL, 1, "Resolver runs."},
    {"lua.resolver_errors", "moor_lua_resolver_errors_total", T_COUNTER, NULL, 1,
     "Resolver runs that failed."},
    {"lua.time_kills", "moor_lua_time_kills_total", T_COUNTER, NULL, 1,
     "Handlers and resolvers stopped by their time budget."},
    {"lua.budget_kills", "moor_lua_budget_kills_total", T_COUNTER, NULL, 1,
     "Handlers and resolvers stopped by their instruction budget."},
    {"lua.memory_kills", "moor_lua_memory_kills_total", T_COUNTER, NULL, 1,
     "Handlers and resolvers stopped by the Lua heap limit."},
    {"lua.heap_bytes", "moor_lua_heap_bytes", T_GAUGE, NULL, 1, "Bytes of the Lua heap."},
};
#define NCOLLECT ((int)(sizeof(COLLECT) / sizeof(COLLECT[0])))

/* ---- the registry -------------------------------------------------------------- */

int moor_metrics_new(const moor_config_t *cfg, moor_metrics_t **out)
{
    moor_metrics_t *m = calloc(1, sizeof(*m));
    int ns = (int)cfg->nspaces;

    *out = NULL;
    if (!m)
        return MOOR_ENOMEM;
    m->spaces = calloc((size_t)ns + 1, sizeof(*m->spaces));
    m->cells = calloc((size_t)NMETHODS * ((size_t)ns + 1), sizeof(*m->cells));
    if (!m->spaces || !m->cells) {
        moor_metrics_free(m);
        return MOOR_ENOMEM;
    }
    m->def_space = ns; /* "other" unless "default" is configured (it always is) */
    for (int i = 0; i < ns; i++) {
        memcpy(m->spaces[i], cfg->spaces[i].name, sizeof(m->spaces[i]));
        if (strcmp(m->spaces[i], "default") == 0)
            m->def_space = i;
    }
    m->nspaces = ns;
    *out = m;
    return 0;
}

void moor_metrics_free(moor_metrics_t *m)
{
    if (!m)
        return;
    if (m->cells)
        for (int i = 0; i < NMETHODS * (m->nspaces + 1); i++)
            free(m->cells[i]);
    free(m->cells);
    free(m->spaces);
    free(m->samples);
    free(m);
}

int moor_metrics_method(const char *name, size_t mlen)
{
    for (int i = 0; i < METHOD_OTHER; i++)
        if (strlen(METHODS[i]) == mlen && memcmp(METHODS[i], name, mlen) == 0)
            return i;
    return METHOD_OTHER;
}

static int space_index(const moor_metrics_t *m, const char *s, size_t n)
{
    for (int i = 0; i < m->nspaces; i++)
        if (strlen(m->spaces[i]) == n && memcmp(m->spaces[i], s, n) == 0)
            return i;
    return m->nspaces;
}

int moor_metrics_space_named(const moor_metrics_t *m, const char *name)
{
    return space_index(m, name, strlen(name));
}

int moor_metrics_space(const moor_metrics_t *m, int method, const char *params, size_t plen,
                       uint32_t np)
{
    const char *p = params, *end = params + plen, *k, *v;
    uint32_t n, kl, vl;

    /* Only these take opts: put(key, value, opts), scan(opts), the others
     * (key, opts).  A value that happens to be a map with a "space" key is
     * not an opts map. */
    uint32_t at = method == M_PUT ? 3 : method == M_SCAN ? 1 : 2;

    if ((method != M_GET && method != M_PUT && method != M_DEL && method != M_WHERE &&
         method != M_SCAN) ||
        np < at)
        return m->def_space;
    for (uint32_t i = 0; i + 1 < at; i++)
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return m->def_space;
    if (moor_mp_read_map(&p, end, &n))
        return m->def_space;
    while (n--) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return m->def_space;
        if (kl == 5 && memcmp(k, "space", 5) == 0 && moor_mp_peek(p, end) == MOOR_MP_STR &&
            moor_mp_read_str(&p, end, &v, &vl) == 0)
            return space_index(m, v, vl);
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return m->def_space;
    }
    return m->def_space;
}

/* A wire code as a label value: the name, or "other" for anything that
 * does not look like one (a peer's or a handler's own text). */
static const char *code_label(const char *code)
{
    size_t n = strlen(code);

    if (n == 0 || n > 31)
        return "other";
    for (size_t i = 0; i < n; i++)
        if (!((code[i] >= 'A' && code[i] <= 'Z') || (code[i] >= '0' && code[i] <= '9') ||
              code[i] == '_'))
            return "other";
    return code;
}

/* An error of the request of cell c: in its (method, space, code) series,
 * or in the cell's "other" count when the code is no wire name or the
 * series are all taken. */
static void count_error(moor_metrics_t *m, cell_t *c, int method, int space, const char *errcode)
{
    const char *code = code_label(errcode);
    errs_t *e;

    if (strcmp(code, "other") == 0) {
        c->err_other++;
        return;
    }
    for (int i = 0; i < m->nerrs; i++) {
        e = &m->errs[i];
        if (e->method == method && e->space == space && strcmp(e->code, code) == 0) {
            e->n++;
            return;
        }
    }
    if (m->nerrs == MOOR_METRICS_MAX_ERRS) {
        c->err_other++;
        return;
    }
    e = &m->errs[m->nerrs++];
    e->method = method;
    e->space = space;
    snprintf(e->code, sizeof(e->code), "%s", code);
    e->n = 1;
}

void moor_metrics_request(moor_metrics_t *m, int method, int space, const char *errcode,
                          uint64_t dur_ns)
{
    cell_t **slot;
    double s = (double)dur_ns / 1e9;
    int b = 0;

    if (method < 0 || method >= NMETHODS || space < 0 || space > m->nspaces)
        return;
    slot = &m->cells[method * (m->nspaces + 1) + space];
    if (!*slot && !(*slot = calloc(1, sizeof(**slot))))
        return;
    while (b < MOOR_METRICS_NBOUNDS && s > MOOR_METRICS_BOUNDS[b])
        b++;
    (*slot)->count++;
    (*slot)->sum_ns += dur_ns;
    (*slot)->b[b]++;
    if (errcode)
        count_error(m, *slot, method, space, errcode);
}

double moor_metrics_quantile(const uint64_t *cum, double q)
{
    return moor_hist_quantile(MOOR_METRICS_BOUNDS, MOOR_METRICS_NBOUNDS, cum, q);
}

/* ---- collection ---------------------------------------------------------------- */

static int add_sample(moor_metrics_t *m, int entry, const char *label, size_t llen, double v)
{
    sample_t *s;

    if (m->nsamples == m->capsamples) {
        size_t cap = m->capsamples ? m->capsamples * 2 : 128;
        sample_t *ns = realloc(m->samples, cap * sizeof(*ns));
        if (!ns)
            return MOOR_ENOMEM;
        m->samples = ns;
        m->capsamples = cap;
    }
    s = &m->samples[m->nsamples++];
    s->entry = entry;
    snprintf(s->label, sizeof(s->label), "%.*s", (int)(llen < 71 ? llen : 71), label ? label : "");
    s->value = v;
    return 0;
}

/* The number at *p (bool, int, float), or -1 when it is none. */
static int read_number(const char **p, const char *end, double *v)
{
    uint64_t u;
    int64_t i;
    int b;

    switch (moor_mp_peek(*p, end)) {
    case MOOR_MP_UINT:
        if (moor_mp_read_uint(p, end, &u))
            return -1;
        *v = (double)u;
        return 0;
    case MOOR_MP_INT:
        if (moor_mp_read_int(p, end, &i))
            return -1;
        *v = (double)i;
        return 0;
    case MOOR_MP_FLOAT: return moor_mp_read_double(p, end, v);
    case MOOR_MP_BOOL:
        if (moor_mp_read_bool(p, end, &b))
            return -1;
        *v = b;
        return 0;
    default: return -1;
    }
}

/* Walks path (the rest of a COLLECT path) from the object at p, adding a
 * sample for every match; label/llen: the wildcard's match so far. */
static int walk(moor_metrics_t *m, int entry, const char *path, const char *p, const char *end,
                const char *label, size_t llen)
{
    const collect_t *c = &COLLECT[entry];
    const char *dot, *k;
    size_t seg;
    uint32_t n, kl;
    double v;

    if (!*path) { /* arrived: a number, or a state string */
        if (moor_mp_peek(p, end) == MOOR_MP_STR && c->label && !label) {
            if (moor_mp_read_str(&p, end, &k, &kl))
                return 0;
            return add_sample(m, entry, k, kl, 1);
        }
        if (read_number(&p, end, &v))
            return 0;
        return add_sample(m, entry, label, llen, v * c->scale);
    }
    dot = strchr(path, '.');
    seg = dot ? (size_t)(dot - path) : strlen(path);
    if (seg == 1 && path[0] == '#') {
        char idx[16];
        if (moor_mp_read_array(&p, end, &n))
            return 0;
        for (uint32_t i = 0; i < n; i++) {
            int l = snprintf(idx, sizeof(idx), "%u", i);
            int rc = walk(m, entry, dot ? dot + 1 : "", p, end, idx, (size_t)l);
            if (rc)
                return rc;
            if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                return 0;
        }
        return 0;
    }
    if (moor_mp_read_map(&p, end, &n))
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return 0;
        if (seg == 1 && path[0] == '*') {
            int rc = walk(m, entry, dot ? dot + 1 : "", p, end, k, kl);
            if (rc)
                return rc;
        } else if (kl == seg && memcmp(k, path, seg) == 0) {
            return walk(m, entry, dot ? dot + 1 : "", p, end, label, llen);
        }
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return 0;
    }
    return 0;
}

/* A top-level string of info into dst. */
static void top_str(const char *info, size_t ilen, const char *key, char *dst, size_t cap)
{
    const char *p = info, *end = info + ilen, *k, *v;
    uint32_t n, kl, vl;

    dst[0] = 0;
    if (moor_mp_read_map(&p, end, &n))
        return;
    while (n--) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return;
        if (kl == strlen(key) && memcmp(k, key, kl) == 0 &&
            moor_mp_read_str(&p, end, &v, &vl) == 0) {
            snprintf(dst, cap, "%.*s", (int)(vl < cap ? vl : cap - 1), v);
            return;
        }
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return;
    }
}

int moor_metrics_collect(moor_metrics_t *m, const char *info, size_t ilen)
{
    const char *p = info;
    uint32_t n;
    int rc;

    m->nsamples = 0;
    if (moor_mp_read_map(&p, info + ilen, &n))
        return MOOR_EINVAL;
    for (int e = 0; e < NCOLLECT; e++)
        if ((rc = walk(m, e, COLLECT[e].path, info, info + ilen, NULL, 0)))
            return rc;
    top_str(info, ilen, "node", m->node, sizeof(m->node));
    top_str(info, ilen, "version", m->version, sizeof(m->version));
    return 0;
}

/* ---- the text format ----------------------------------------------------------- */

static int put(moor_buf_t *b, const char *s)
{
    return moor_buf_append(b, s, strlen(s));
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static int put_label(moor_buf_t *b, const char *s)
{
    int rc = 0;

    for (; *s && !rc; s++) {
        if (*s == '\\')
            rc = put(b, "\\\\");
        else if (*s == '"')
            rc = put(b, "\\\"");
        else if (*s == '\n')
            rc = put(b, "\\n");
        else
            rc = moor_buf_append(b, s, 1);
    }
    return rc;
}

static int putf(moor_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int putf(moor_buf_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return MOOR_EINVAL;
    return moor_buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A value the way Prometheus reads it: integers without a fraction. */
static int put_value(moor_buf_t *b, double v)
{
    if (isnan(v))
        return put(b, "NaN");
    if (isinf(v))
        return put(b, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) < 1e15)
        return putf(b, "%.0f", v);
    return putf(b, "%.15g", v);
}

static int put_family(moor_buf_t *b, const char *name, int type, const char *help)
{
    return putf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, TYPES[type]);
}

static const char *space_name(const moor_metrics_t *m, int s)
{
    return s < m->nspaces ? m->spaces[s] : "other";
}

/* method="..",space=".." (no braces). */
static int put_ms(moor_buf_t *b, const moor_metrics_t *m, int method, int space)
{
    int rc = putf(b, "method=\"%s\",space=\"", METHODS[method]);

    if (!rc)
        rc = put_label(b, space_name(m, space));
    return rc ? rc : put(b, "\"");
}

static void cumulate(const cell_t *c, uint64_t *cum)
{
    uint64_t run = 0;

    for (int i = 0; i < NBUCKETS; i++)
        cum[i] = run += c->b[i];
}

static int text_requests(const moor_metrics_t *m, moor_buf_t *b)
{
    int ncells = NMETHODS * (m->nspaces + 1), rc;

    rc = put_family(b, "moor_requests_total", T_COUNTER,
                    "Requests answered on the MessagePack port, by method and keyspace.");
    for (int i = 0; i < ncells && !rc; i++) {
        const cell_t *c = m->cells[i];
        if (!c)
            continue;
        rc = put(b, "moor_requests_total{") ||
             put_ms(b, m, i / (m->nspaces + 1), i % (m->nspaces + 1)) || put(b, "} ") ||
             put_value(b, (double)c->count) || put(b, "\n");
    }
    if (!rc)
        rc = put_family(b, "moor_request_errors_total", T_COUNTER,
                        "Requests answered with an error, by method, keyspace and wire code.");
    for (int i = 0; i < m->nerrs && !rc; i++) {
        const errs_t *e = &m->errs[i];
        rc = put(b, "moor_request_errors_total{") || put_ms(b, m, e->method, e->space) ||
             putf(b, ",code=\"%s\"} ", e->code) || put_value(b, (double)e->n) || put(b, "\n");
    }
    for (int i = 0; i < ncells && !rc; i++) {
        const cell_t *c = m->cells[i];
        if (!c || !c->err_other)
            continue;
        rc = put(b, "moor_request_errors_total{") ||
             put_ms(b, m, i / (m->nspaces + 1), i % (m->nspaces + 1)) ||
             put(b, ",code=\"other\"} ") || put_value(b, (double)c->err_other) || put(b, "\n");
    }
    if (!rc)
        rc = put_family(b, "moor_request_duration_seconds", T_HISTOGRAM,
                        "Time from a request's arrival to its answer, by method and keyspace.");
    for (int i = 0; i < ncells && !rc; i++) {
        const cell_t *c = m->cells[i];
        uint64_t cum[NBUCKETS];
        int me = i / (m->nspaces + 1), sp = i % (m->nspaces + 1);
        if (!c)
            continue;
        cumulate(c, cum);
        for (int k = 0; k < NBUCKETS && !rc; k++) {
            rc = put(b, "moor_request_duration_seconds_bucket{") || put_ms(b, m, me, sp);
            if (!rc && k < MOOR_METRICS_NBOUNDS)
                rc = putf(b, ",le=\"%g\"} ", MOOR_METRICS_BOUNDS[k]);
            else if (!rc)
                rc = put(b, ",le=\"+Inf\"} ");
            rc = rc || put_value(b, (double)cum[k]) || put(b, "\n");
        }
        rc = rc || put(b, "moor_request_duration_seconds_sum{") || put_ms(b, m, me, sp) ||
             put(b, "} ") || put_value(b, (double)c->sum_ns / 1e9) || put(b, "\n") ||
             put(b, "moor_request_duration_seconds_count{") || put_ms(b, m, me, sp) ||
             put(b, "} ") || put_value(b, (double)c->count) || put(b, "\n");
    }
    return rc ? MOOR_ENOMEM : 0;
}

int moor_metrics_text(const moor_metrics_t *m, moor_buf_t *b)
{
    int rc = text_requests(m, b);

    if (!rc && m->node[0]) {
        rc = put_family(b, "moor_node_info", T_GAUGE, "The node's id and version (always 1).") ||
             put(b, "moor_node_info{node=\"") || put_label(b, m->node) || put(b, "\",version=\"") ||
             put_label(b, m->version) || put(b, "\"} 1\n");
    }
    for (int e = 0; e < NCOLLECT && !rc; e++) {
        const collect_t *c = &COLLECT[e];
        int any = 0;
        for (size_t i = 0; i < m->nsamples && !rc; i++) {
            const sample_t *s = &m->samples[i];
            if (s->entry != e)
                continue;
            if (!any++)
                rc = put_family(b, c->name, c->type, c->help);
            rc = rc || put(b, c->name);
            if (!rc && c->label)
                rc = putf(b, "{%s=\"", c->label) || put_label(b, s->label) || put(b, "\"}");
            rc = rc || put(b, " ") || put_value(b, s->value) || put(b, "\n");
        }
    }
    return rc ? MOOR_ENOMEM : 0;
}

/* ---- MessagePack ----------------------------------------------------------------- */

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pk_family(msgpack_packer *pk, const char *name, int type, const char *help,
                      uint32_t nsamples)
{
    msgpack_pack_map(pk, 4);
    pk_str(pk, "name");
    pk_str(pk, name);
    pk_str(pk, "type");
    pk_str(pk, TYPES[type]);
    pk_str(pk, "help");
    pk_str(pk, help);
    pk_str(pk, "samples");
    msgpack_pack_array(pk, nsamples);
}

static void pk_labels_ms(msgpack_packer *pk, const moor_metrics_t *m, int me, int sp,
                         const char *code)
{
    msgpack_pack_map(pk, code ? 3 : 2);
    pk_str(pk, "method");
    pk_str(pk, METHODS[me]);
    pk_str(pk, "space");
    pk_str(pk, space_name(m, sp));
    if (code) {
        pk_str(pk, "code");
        pk_str(pk, code);
    }
}

static void pack_requests(const moor_metrics_t *m, msgpack_packer *pk)
{
    int ncells = NMETHODS * (m->nspaces + 1);
    uint32_t used = 0, others = 0;

    for (int i = 0; i < ncells; i++) {
        used += m->cells[i] != NULL;
        others += m->cells[i] && m->cells[i]->err_other;
    }
    pk_family(pk, "moor_requests_total", T_COUNTER, "Requests answered, by method and keyspace.",
              used);
    for (int i = 0; i < ncells; i++) {
        if (!m->cells[i])
            continue;
        msgpack_pack_map(pk, 2);
        pk_str(pk, "labels");
        pk_labels_ms(pk, m, i / (m->nspaces + 1), i % (m->nspaces + 1), NULL);
        pk_str(pk, "value");
        msgpack_pack_uint64(pk, m->cells[i]->count);
    }
    pk_family(pk, "moor_request_errors_total", T_COUNTER,
              "Requests answered with an error, by method, keyspace and wire code.",
              (uint32_t)m->nerrs + others);
    for (int i = 0; i < m->nerrs; i++) {
        msgpack_pack_map(pk, 2);
        pk_str(pk, "labels");
        pk_labels_ms(pk, m, m->errs[i].method, m->errs[i].space, m->errs[i].code);
        pk_str(pk, "value");
        msgpack_pack_uint64(pk, m->errs[i].n);
    }
    for (int i = 0; i < ncells; i++) {
        if (!m->cells[i] || !m->cells[i]->err_other)
            continue;
        msgpack_pack_map(pk, 2);
        pk_str(pk, "labels");
        pk_labels_ms(pk, m, i / (m->nspaces + 1), i % (m->nspaces + 1), "other");
        pk_str(pk, "value");
        msgpack_pack_uint64(pk, m->cells[i]->err_other);
    }
    pk_family(pk, "moor_request_duration_seconds", T_HISTOGRAM,
              "Time from a request's arrival to its answer, by method and keyspace.", used);
    for (int i = 0; i < ncells; i++) {
        const cell_t *c = m->cells[i];
        uint64_t cum[NBUCKETS];
        if (!c)
            continue;
        cumulate(c, cum);
        msgpack_pack_map(pk, 4);
        pk_str(pk, "labels");
        pk_labels_ms(pk, m, i / (m->nspaces + 1), i % (m->nspaces + 1), NULL);
        pk_str(pk, "count");
        msgpack_pack_uint64(pk, c->count);
        pk_str(pk, "sum");
        msgpack_pack_double(pk, (double)c->sum_ns / 1e9);
        pk_str(pk, "buckets");
        msgpack_pack_array(pk, NBUCKETS);
        for (int k = 0; k < NBUCKETS; k++) {
            msgpack_pack_array(pk, 2);
            msgpack_pack_double(pk, k < MOOR_METRICS_NBOUNDS ? MOOR_METRICS_BOUNDS[k] : INFINITY);
            msgpack_pack_uint64(pk, cum[k]);
        }
    }
}

int moor_metrics_pack(const moor_metrics_t *m, msgpack_packer *pk)
{
    uint32_t nfam = 3, cnt[NCOLLECT] = {0};

    for (size_t i = 0; i < m->nsamples; i++)
        cnt[m->samples[i].entry]++;
    for (int e = 0; e < NCOLLECT; e++)
        nfam += cnt[e] > 0;
    if (m->node[0])
        nfam++;
    msgpack_pack_array(pk, nfam);
    pack_requests(m, pk);
    if (m->node[0]) {
        pk_family(pk, "moor_node_info", T_GAUGE, "The node's id and version (always 1).", 1);
        msgpack_pack_map(pk, 2);
        pk_str(pk, "labels");
        msgpack_pack_map(pk, 2);
        pk_str(pk, "node");
        pk_str(pk, m->node);
        pk_str(pk, "version");
        pk_str(pk, m->version);
        pk_str(pk, "value");
        msgpack_pack_uint64(pk, 1);
    }
    for (int e = 0; e < NCOLLECT; e++) {
        const collect_t *c = &COLLECT[e];
        if (!cnt[e])
            continue;
        pk_family(pk, c->name, c->type, c->help, cnt[e]);
        for (size_t i = 0; i < m->nsamples; i++) {
            const sample_t *s = &m->samples[i];
            if (s->entry != e)
                continue;
            msgpack_pack_map(pk, 2);
            pk_str(pk, "labels");
            msgpack_pack_map(pk, c->label ? 1 : 0);
            if (c->label) {
                pk_str(pk, c->label);
                pk_str(pk, s->label);
            }
            pk_str(pk, "value");
            msgpack_pack_double(pk, s->value);
        }
    }
    return 0;
}

int moor_metrics_pack_by_method(const moor_metrics_t *m, msgpack_packer *pk)
{
    uint32_t used = 0;
    int stride = m->nspaces + 1;

    for (int me = 0; me < NMETHODS; me++)
        for (int sp = 0; sp < stride; sp++)
            if (m->cells[me * stride + sp]) {
                used++;
                break;
            }
    msgpack_pack_map(pk, used);
    for (int me = 0; me < NMETHODS; me++) {
        cell_t sum = {0};
        uint64_t cum[NBUCKETS], errors = 0;
        int any = 0;
        for (int sp = 0; sp < stride; sp++) {
            const cell_t *c = m->cells[me * stride + sp];
            if (!c)
                continue;
            any = 1;
            errors += c->err_other;
            sum.count += c->count;
            for (int k = 0; k < NBUCKETS; k++)
                sum.b[k] += c->b[k];
        }
        if (!any)
            continue;
        for (int i = 0; i < m->nerrs; i++)
            if (m->errs[i].method == me)
                errors += m->errs[i].n;
        cumulate(&sum, cum);
        pk_str(pk, METHODS[me]);
        msgpack_pack_map(pk, 4);
        pk_str(pk, "count");
        msgpack_pack_uint64(pk, sum.count);
        pk_str(pk, "errors");
        msgpack_pack_uint64(pk, errors);
        pk_str(pk, "p50_ms");
        msgpack_pack_double(pk, moor_metrics_quantile(cum, 0.5) * 1000);
        pk_str(pk, "p99_ms");
        msgpack_pack_double(pk, moor_metrics_quantile(cum, 0.99) * 1000);
    }
    return 0;
}
