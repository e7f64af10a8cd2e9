/*
 * httpd.h -- the node's HTTP port (http_listen): /metrics, the status page
 * and its data, on core/net/http.c.
 *
 *   GET /metrics      the registry in the Prometheus text format (a scrape:
 *                     metrics.h)
 *   GET /             the status page: the ring as an SVG, load per node,
 *                     transfer and repair progress, recent warnings;
 *                     reloads itself every 2 s
 *   GET /status.json  the page's data: {node, time_ms, ring, load, info,
 *                     warnings = [{time_ms, level, text}]}
 *   GET /healthz      200 "ok" while the node serves
 *
 * Everything else is 404; methods other than GET and HEAD 405.  The port
 * has no authentication: bind it to an address only operators reach.
 *
 * Threads: the loop thread only.
 */
#ifndef MOOR_SERVER_HTTPD_H
#define MOOR_SERVER_HTTPD_H

#include <uv.h>

#include "net/http.h"
#include "node.h"
#include "util/buf.h"

typedef struct moor_httpd moor_httpd_t;

/* ===== API ===== */

/* Serves node's pages on cfg->http_host:http_port.  0 or an error with a
 * diagnostic (a busy port: its -errno). */
int moor_httpd_start(uv_loop_t *loop, const moor_config_t *cfg, moor_node_t *node,
                     moor_httpd_t **out);

int moor_httpd_port(const moor_httpd_t *d);

/* Stops serving; frees d once closed, then done(ud) (may be NULL). */
void moor_httpd_stop(moor_httpd_t *d, void (*done)(void *ud), void *ud);

/* The handler itself, for tests: answers req as the port would. */
void moor_httpd_handle(void *d, const moor_http_req_t *req, moor_http_resp_t *resp);

/* The status page of a node (HTML) and its data (the status map
 * MessagePack, status.json's content), for tests.  0 or MOOR_ENOMEM. */
int moor_httpd_status_mp(moor_node_t *node, moor_buf_t *out);
int moor_httpd_page(const char *status, size_t slen, moor_buf_t *html);

#endif
