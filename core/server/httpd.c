/*
 * httpd.c -- the node's HTTP port (httpd.h): routes, the status data and
 * the status page.
 *
 * The page is rendered here, from the same status map /status.json
 * serves, so a browser without JavaScript (or a headless one taking a
 * screenshot) sees everything at once; it reloads itself every 2 s
 * (meta refresh).  No external assets: one HTML document with inline CSS
 * and an inline SVG.  The ring is one arc per member, its length the
 * member's token share, its color the member's status; every arc is
 * labelled with the member's id, status and zone.
 *
 * Every string from the cluster (ids, zones, addresses, log lines) is
 * escaped for HTML before it is written.
 *
 * Threads: the loop thread only.
 */
#include "server/httpd.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/json.h"
#include "server/metrics.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"

struct moor_httpd {
    moor_node_t *node;
    moor_http_t *http;
    moor_buf_t scratch; /* the status map or the info map of one answer */
    void (*done)(void *ud);
    void *done_ud;
};

/* ---- the status map ------------------------------------------------------------- */

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int pack_warnings(msgpack_packer *pk)
{
    moor_log_recent_t w[MOOR_LOG_RECENT];
    size_t n = moor_log_recent(w, MOOR_LOG_RECENT);

    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = n; i-- > 0;) { /* newest first */
        msgpack_pack_map(pk, 3);
        pk_str(pk, "time_ms");
        msgpack_pack_uint64(pk, w[i].unix_ms);
        pk_str(pk, "level");
        pk_str(pk, w[i].level == MOOR_LOG_ERROR ? "error" : "warn");
        pk_str(pk, "text");
        pk_str(pk, w[i].text);
    }
    return 0;
}

/* A sub-answer of the node (ring, load, info) as a value, nil if it failed. */
static void pack_part(msgpack_packer *pk, moor_buf_t *out, int rc, const moor_buf_t *part)
{
    if (rc || part->len == 0)
        msgpack_pack_nil(pk);
    else
        moor_mp_pack_raw(out, part->data, part->len);
}

int moor_httpd_status_mp(moor_node_t *node, moor_buf_t *out)
{
    moor_buf_t part = MOOR_BUF_INIT;
    msgpack_packer pk;
    struct timespec ts;
    char id[72] = "";
    int rc;

    clock_gettime(CLOCK_REALTIME, &ts);
    moor_buf_reset(out);
    moor_mp_packer_init(&pk, out);
    msgpack_pack_map(&pk, 6);
    rc = moor_node_pack_ring(node, &part);
    if (!rc) { /* the node's id, from the ring's answer */
        const char *p = part.data, *end = part.data + part.len, *k, *v;
        uint32_t n, kl, vl;
        if (moor_mp_read_map(&p, end, &n) == 0)
            while (n--) {
                if (moor_mp_read_str(&p, end, &k, &kl))
                    break;
                if (kl == 4 && memcmp(k, "node", 4) == 0 &&
                    moor_mp_read_str(&p, end, &v, &vl) == 0) {
                    snprintf(id, sizeof(id), "%.*s", (int)(vl < 71 ? vl : 71), v);
                    break;
                }
                if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                    break;
            }
    }
    pk_str(&pk, "node");
    pk_str(&pk, id);
    pk_str(&pk, "time_ms");
    msgpack_pack_uint64(&pk, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
    pk_str(&pk, "ring");
    pack_part(&pk, out, rc, &part);
    pk_str(&pk, "load");
    rc = moor_node_pack_load(node, &part);
    pack_part(&pk, out, rc, &part);
    pk_str(&pk, "info");
    rc = moor_node_scrape(node, &part);
    pack_part(&pk, out, rc, &part);
    pk_str(&pk, "warnings");
    pack_warnings(&pk);
    moor_buf_free(&part);
    return 0;
}

/* ---- reading the status map ------------------------------------------------------ */

/* A dotted path of fields. */
static const char *path_of(const char *p, const char *end, const char *path)
{
    char seg[64];

    while (p && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        snprintf(seg, sizeof(seg), "%.*s", (int)(n < 63 ? n : 63), path);
        p = moor_mp_map_find(p, end, seg);
        path += n + (dot != NULL);
    }
    return p;
}

static double num_at(const char *p, const char *end, const char *path)
{
    const char *v = path_of(p, end, path);
    uint64_t u;
    int64_t i;
    double d;
    int b;

    if (!v)
        return 0;
    switch (moor_mp_peek(v, end)) {
    case MOOR_MP_UINT: return moor_mp_read_uint(&v, end, &u) ? 0 : (double)u;
    case MOOR_MP_INT: return moor_mp_read_int(&v, end, &i) ? 0 : (double)i;
    case MOOR_MP_FLOAT: return moor_mp_read_double(&v, end, &d) ? 0 : d;
    case MOOR_MP_BOOL: return moor_mp_read_bool(&v, end, &b) ? 0 : b;
    default: return 0;
    }
}

/* A string field into dst ("" when absent). */
static const char *str_at(const char *p, const char *end, const char *path, char *dst, size_t cap)
{
    const char *v = path_of(p, end, path), *s;
    uint32_t n;

    dst[0] = 0;
    if (v && moor_mp_read_str(&v, end, &s, &n) == 0)
        snprintf(dst, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
    return dst;
}

/* ---- HTML -------------------------------------------------------------------------- */

/* Set when an append of the page failed (out of memory); the page is
 * then refused whole.  Loop thread only, like the whole module. */
static int page_oom;

static void put(moor_buf_t *b, const char *s)
{
    if (moor_buf_append(b, s, strlen(s)))
        page_oom = 1;
}

static void putf(moor_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(moor_buf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0 && moor_buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1))
        page_oom = 1;
}

static void put_byte(moor_buf_t *b, char c)
{
    if (moor_buf_append(b, &c, 1))
        page_oom = 1;
}

static void put_esc(moor_buf_t *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': put(b, "&lt;"); break;
        case '>': put(b, "&gt;"); break;
        case '&': put(b, "&amp;"); break;
        case '"': put(b, "&quot;"); break;
        case '\'': put(b, "&#39;"); break;
        default: put_byte(b, *s);
        }
    }
}

static const struct {
    const char *st, *color;
} STATUS[] = {{"up", "#2e9e44"},      {"suspect", "#e0a000"}, {"down", "#d62020"},
              {"joining", "#3b7dd8"}, {"leaving", "#8a5cd0"}, {"left", "#9a9a9a"}};

/* A member status as the page writes it (into attributes and class
 * names unescaped): one of STATUS, or "unknown". */
static const char *status_name(const char *st)
{
    for (size_t i = 0; i < sizeof(STATUS) / sizeof(STATUS[0]); i++)
        if (strcmp(st, STATUS[i].st) == 0)
            return STATUS[i].st;
    return "unknown";
}

static const char *status_color(const char *st)
{
    for (size_t i = 0; i < sizeof(STATUS) / sizeof(STATUS[0]); i++)
        if (strcmp(st, STATUS[i].st) == 0)
            return STATUS[i].color;
    return "#9a9a9a";
}

static const char PAGE_HEAD[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta http-equiv=\"refresh\" content=\"2\">"
    "<meta name=\"viewport\" content=\"width=device-width\">"
    "<title>moor</title><style>"
    "body{font:14px/1.4 sans-serif;margin:16px;color:#222;background:#fff}"
    "h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:16px 0 6px}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    "th{background:#f0f0f0}.st-up{color:#2e9e44}.st-suspect{color:#b07d00}"
    ".st-down{color:#d62020;font-weight:bold}.st-joining{color:#3b7dd8}"
    ".st-leaving{color:#8a5cd0}.st-left{color:#777}"
    ".warn{color:#8a6100}.error{color:#d62020}.wrap{display:flex;gap:24px;flex-wrap:wrap}"
    "code{font-size:12px}</style></head><body>\n";

/* The ring: one arc per member in ring order, sized by share. */
static void page_ring(moor_buf_t *b, const char *ring, const char *end)
{
    const char *nodes = path_of(ring, end, "nodes"), *p = nodes;
    uint32_t n = 0;
    double a = -M_PI / 2, cx = 330, cy = 230, r = 150;

    put(b, "<svg id=\"ring\" xmlns=\"http://www.w3.org/2000/svg\" width=\"660\" height=\"460\" "
           "viewBox=\"0 0 660 460\" role=\"img\" aria-label=\"the ring\">");
    putf(b,
         "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"%.0f\" fill=\"none\" stroke=\"#eee\" "
         "stroke-width=\"44\"/>",
         cx, cy, r);
    if (!p || moor_mp_read_array(&p, end, &n))
        n = 0;
    for (uint32_t i = 0; i < n; i++) {
        char id[72], stbuf[16], zone[72];
        double share = num_at(p, end, "share"), a1, mid;
        const char *color, *st = status_name(str_at(p, end, "status", stbuf, sizeof(stbuf)));
        str_at(p, end, "id", id, sizeof(id));
        str_at(p, end, "zone", zone, sizeof(zone));
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            break;
        if (share < 0)
            share = 0;
        if (share > 1)
            share = 1;
        a1 = a + share * 2 * M_PI;
        mid = (a + a1) / 2;
        color = status_color(st);
        put(b, "<g class=\"member\" data-id=\"");
        put_esc(b, id);
        putf(b, "\" data-status=\"%s\">", st);
        if (share >= 0.9999) {
            putf(b,
                 "<circle cx=\"%.0f\" cy=\"%.0f\" r=\"%.0f\" fill=\"none\" stroke=\"%s\" "
                 "stroke-width=\"40\"/>",
                 cx, cy, r, color);
        } else if (share > 0) {
            /* a small gap between members keeps neighbours apart */
            double g = share * 2 * M_PI > 0.04 ? 0.01 : 0;
            putf(b,
                 "<path d=\"M %.2f %.2f A %.0f %.0f 0 %d 1 %.2f %.2f\" fill=\"none\" "
                 "stroke=\"%s\" stroke-width=\"40\"/>",
                 cx + r * cos(a + g), cy + r * sin(a + g), r, r, a1 - a > M_PI ? 1 : 0,
                 cx + r * cos(a1 - g), cy + r * sin(a1 - g), color);
        }
        putf(b,
             "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"14\" fill=\"%s\" "
             "font-weight=\"%s\">",
             cx + (r + 34) * cos(mid), cy + (r + 34) * sin(mid) + 5,
             cos(mid) > 0.2    ? "start"
             : cos(mid) < -0.2 ? "end"
                               : "middle",
             strcmp(st, "up") == 0 ? "#222" : color, strcmp(st, "down") == 0 ? "bold" : "normal");
        put_esc(b, id);
        putf(b, " (%s", st);
        if (zone[0]) {
            put(b, ", zone ");
            put_esc(b, zone);
        }
        putf(b, ", %.1f%%)</text></g>", share * 100);
        a = a1;
    }
    putf(b,
         "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" font-size=\"16\">%u member%s"
         "</text></svg>\n",
         cx, cy + 5, n, n == 1 ? "" : "s");
}

static void page_members(moor_buf_t *b, const char *ring, const char *load, const char *end)
{
    const char *p = path_of(ring, end, "nodes"), *lp;
    uint32_t n = 0, ln = 0;

    put(b, "<div><h2>Members</h2><table id=\"members\"><tr><th>node</th><th>status</th>"
           "<th>zone</th><th>address</th><th>share</th><th>req/s</th><th>p99 ms</th>"
           "<th>bytes</th></tr>\n");
    if (!p || moor_mp_read_array(&p, end, &n))
        n = 0;
    for (uint32_t i = 0; i < n; i++) {
        char id[72], stbuf[16], zone[72], addr[80], lid[72];
        double rps = -1, p99 = -1, bytes = -1;
        const char *st = status_name(str_at(p, end, "status", stbuf, sizeof(stbuf)));
        str_at(p, end, "id", id, sizeof(id));
        str_at(p, end, "zone", zone, sizeof(zone));
        str_at(p, end, "addr", addr, sizeof(addr));
        double share = num_at(p, end, "share");
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            break;
        lp = path_of(load, end, "nodes");
        if (lp && moor_mp_read_array(&lp, end, &ln) == 0)
            for (uint32_t j = 0; j < ln; j++) {
                if (strcmp(str_at(lp, end, "id", lid, sizeof(lid)), id) == 0 &&
                    path_of(lp, end, "rps")) {
                    rps = num_at(lp, end, "rps.total");
                    p99 = num_at(lp, end, "p99_ms");
                    bytes = num_at(lp, end, "bytes_stored");
                }
                if (moor_mp_skip(&lp, end, MOOR_MP_MAX_DEPTH))
                    break;
            }
        put(b, "<tr data-id=\"");
        put_esc(b, id);
        putf(b, "\" data-status=\"%s\"><td>", st);
        put_esc(b, id);
        putf(b, "</td><td class=\"st-%s\">%s</td><td>", st, st);
        put_esc(b, zone);
        put(b, "</td><td>");
        put_esc(b, addr);
        putf(b, "</td><td>%.1f%%</td>", share * 100);
        if (rps >= 0)
            putf(b, "<td>%.1f</td><td>%.2f</td><td>%.0f</td></tr>\n", rps, p99, bytes);
        else
            put(b, "<td>-</td><td>-</td><td>-</td></tr>\n");
    }
    put(b, "</table></div>\n");
}

static void page_progress(moor_buf_t *b, const char *info, const char *end)
{
    char state[32];
    double tt = num_at(info, end, "transfer.ranges_total"),
           td = num_at(info, end, "transfer.ranges_done"),
           rt = num_at(info, end, "repair.ranges_total"),
           rd = num_at(info, end, "repair.ranges_done");

    str_at(info, end, "transfer.state", state, sizeof(state));
    put(b, "<h2>Transfers and repair (this node)</h2><table id=\"progress\">"
           "<tr><th>work</th><th>state</th><th>progress</th><th>figures</th></tr>\n");
    put(b, "<tr><td>transfer</td><td>");
    put_esc(b, state[0] ? state : "-");
    putf(b,
         "</td><td><progress max=\"%.0f\" value=\"%.0f\"></progress> %.0f/%.0f ranges</td>"
         "<td>%.0f bytes sent, %.0f received</td></tr>\n",
         tt > 0 ? tt : 1, td, td, tt, num_at(info, end, "transfer.bytes_sent"),
         num_at(info, end, "transfer.bytes_received"));
    putf(b,
         "<tr><td>repair</td><td>%s</td><td><progress max=\"%.0f\" value=\"%.0f\"></progress> "
         "%.0f/%.0f ranges</td><td>%.0f keys repaired, %.0f passes</td></tr>\n",
         num_at(info, end, "repair.running") ? "running" : "idle", rt > 0 ? rt : 1, rd, rd, rt,
         num_at(info, end, "repair.keys_repaired"), num_at(info, end, "repair.passes"));
    putf(b,
         "<tr><td>hints</td><td>%.0f pending</td><td></td><td>%.0f bytes, %.0f delivered"
         "</td></tr></table>\n",
         num_at(info, end, "hints.pending"), num_at(info, end, "hints.bytes"),
         num_at(info, end, "hints.delivered"));
}

static void page_warnings(moor_buf_t *b, const char *w, const char *end)
{
    uint32_t n = 0;

    put(b, "<h2>Recent warnings</h2><table id=\"warnings\"><tr><th>time (UTC)</th>"
           "<th>level</th><th>message</th></tr>\n");
    if (!w || moor_mp_read_array(&w, end, &n))
        n = 0;
    for (uint32_t i = 0; i < n; i++) {
        char lvl[8], text[256], when[32];
        time_t t = (time_t)(num_at(w, end, "time_ms") / 1000);
        struct tm tm;
        str_at(w, end, "level", lvl, sizeof(lvl));
        if (strcmp(lvl, "error") != 0)
            strcpy(lvl, "warn"); /* written unescaped: one of the two */
        str_at(w, end, "text", text, sizeof(text));
        if (moor_mp_skip(&w, end, MOOR_MP_MAX_DEPTH))
            break;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        putf(b, "<tr class=\"%s\"><td>%s</td><td>%s</td><td><code>", lvl, when, lvl);
        put_esc(b, text);
        put(b, "</code></td></tr>\n");
    }
    if (n == 0)
        put(b, "<tr><td colspan=\"3\">none</td></tr>\n");
    put(b, "</table>\n");
}

int moor_httpd_page(const char *st, size_t slen, moor_buf_t *html)
{
    const char *end = st + slen, *ring = moor_mp_map_find(st, end, "ring"),
               *info = moor_mp_map_find(st, end, "info");
    char node[72], version[32];

    page_oom = 0;
    str_at(st, end, "node", node, sizeof(node));
    str_at(info, end, "version", version, sizeof(version));
    put(html, PAGE_HEAD);
    put(html, "<h1>moor node ");
    put_esc(html, node);
    putf(html,
         "</h1><div>version %s, up %.0f s, %.0f connections; "
         "<a href=\"/metrics\">metrics</a>, <a href=\"/status.json\">status.json</a>"
         "</div>\n<div class=\"wrap\">",
         version, num_at(info, end, "uptime_ms") / 1000, num_at(info, end, "server.connections"));
    page_ring(html, ring, end);
    page_members(html, ring, moor_mp_map_find(st, end, "load"), end);
    put(html, "</div>\n");
    page_progress(html, info, end);
    page_warnings(html, moor_mp_map_find(st, end, "warnings"), end);
    put(html, "</body></html>\n");
    return page_oom ? moor_diag(MOOR_ENOMEM, "status page: out of memory") : 0;
}

/* ---- routes ------------------------------------------------------------------------ */

static int path_is(const moor_http_req_t *req, const char *p)
{
    return req->plen == strlen(p) && memcmp(req->path, p, req->plen) == 0;
}

void moor_httpd_handle(void *ud, const moor_http_req_t *req, moor_http_resp_t *resp)
{
    moor_httpd_t *d = ud;
    int rc = 0;

    if (path_is(req, "/healthz")) {
        put(resp->body, "ok\n");
    } else if (path_is(req, "/metrics")) {
        resp->ctype = "text/plain; version=0.0.4; charset=utf-8";
        if (!(rc = moor_node_scrape(d->node, &d->scratch)))
            rc = moor_metrics_text(moor_node_metrics(d->node), resp->body);
    } else if (path_is(req, "/status.json") || path_is(req, "/")) {
        const char *p = d->scratch.data;
        if (!(rc = moor_httpd_status_mp(d->node, &d->scratch))) {
            p = d->scratch.data;
            if (req->plen > 1) {
                resp->ctype = "application/json";
                rc = moor_json_from_mp(&p, d->scratch.data + d->scratch.len, 0, resp->body);
                put(resp->body, "\n");
            } else {
                resp->ctype = "text/html; charset=utf-8";
                rc = moor_httpd_page(d->scratch.data, d->scratch.len, resp->body);
            }
        }
    } else {
        resp->status = 404;
        put(resp->body, "not found: try /, /metrics, /status.json or /healthz\n");
    }
    if (rc) {
        resp->status = 500;
        resp->ctype = NULL;
        moor_buf_reset(resp->body);
        putf(resp->body, "%s\n", moor_diag_msg(rc));
    }
}

int moor_httpd_start(uv_loop_t *loop, const moor_config_t *cfg, moor_node_t *node,
                     moor_httpd_t **out)
{
    moor_httpd_t *d = calloc(1, sizeof(*d));
    moor_http_opts_t o = {0};
    int rc;

    *out = NULL;
    if (!d)
        return moor_diag(MOOR_ENOMEM, "http_listen: out of memory");
    d->node = node;
    o.host = cfg->http_host;
    o.port = cfg->http_port;
    if ((rc = moor_http_start(loop, &o, moor_httpd_handle, d, &d->http))) {
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int moor_httpd_port(const moor_httpd_t *d)
{
    return moor_http_port(d->http);
}

static void http_stopped(void *ud)
{
    moor_httpd_t *d = ud;
    void (*done)(void *) = d->done;
    void *dud = d->done_ud;

    moor_buf_free(&d->scratch);
    free(d);
    if (done)
        done(dud);
}

void moor_httpd_stop(moor_httpd_t *d, void (*done)(void *ud), void *ud)
{
    d->done = done;
    d->done_ud = ud;
    moor_http_stop(d->http, http_stopped, d);
}
