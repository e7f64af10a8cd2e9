/*
 * metrics.h -- the node's one registry of figures: what /metrics
 * (Prometheus text), the `metrics` method, `info` and RESP INFO show.
 *
 * Two kinds of figures live in it:
 *  - request figures, recorded as requests are answered (node.c's one
 *    dispatch point): per method and keyspace a count, a latency
 *    histogram with fixed buckets (MOOR_METRICS_BOUNDS) and the errors
 *    per wire code;
 *  - collected figures (engine, cluster, hints, repair, transfers, peers,
 *    Lua host, server), taken at scrape time from the node's `info` map by
 *    one table of paths (metrics.c), so every figure /metrics shows is the
 *    number `info` shows in the same scrape.
 *
 * Label cardinality is bounded: method is one of the node's methods or
 * "other"; space is a configured keyspace or "other"; code is a wire
 * error name (A-Z, 0-9, _; at most 31 bytes) or "other", and at most
 * MOOR_METRICS_MAX_ERRS (method, space, code) series exist (later ones
 * count as code "other").
 *
 * Threads: the loop thread only.
 */
#ifndef MOOR_SERVER_METRICS_H
#define MOOR_SERVER_METRICS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "lua/config.h"
#include "util/buf.h"

#define MOOR_METRICS_NBOUNDS 16 /* finite histogram bounds; +Inf makes 17 buckets */
#define MOOR_METRICS_MAX_ERRS 256

/* The upper bounds of the latency buckets, seconds: 0.1 ms .. 10 s. */
extern const double MOOR_METRICS_BOUNDS[MOOR_METRICS_NBOUNDS];

typedef struct moor_metrics moor_metrics_t;

/* ===== API ===== */

/* A registry whose space label takes the keyspaces of cfg (copied).  0 or
 * MOOR_ENOMEM. */
int moor_metrics_new(const moor_config_t *cfg, moor_metrics_t **out);

void moor_metrics_free(moor_metrics_t *m);

/* The label indexes of a request: its method (name, mlen bytes) and the
 * keyspace it names (get, put, del and where: the "space" of an opts map
 * given as the last of np params; "default" when none, and for every
 * other method).  Can't fail: unknown names give "other". */
int moor_metrics_method(const char *name, size_t mlen);
/* The space label of the keyspace called name (NUL-terminated). */
int moor_metrics_space_named(const moor_metrics_t *m, const char *name);

int moor_metrics_space(const moor_metrics_t *m, int method, const char *params, size_t plen,
                       uint32_t np);

/* Records one answered request: errcode NULL on success, dur_ns from its
 * arrival to its answer.  Can't fail (a series that cannot be allocated
 * is not counted). */
void moor_metrics_request(moor_metrics_t *m, int method, int space, const char *errcode,
                          uint64_t dur_ns);

/* Replaces the collected figures with those of info (the node's `info`
 * answer, ilen bytes).  0, or MOOR_EINVAL when info is not a map (the
 * collected figures are then empty) or MOOR_ENOMEM. */
int moor_metrics_collect(moor_metrics_t *m, const char *info, size_t ilen);

/* Appends every figure as Prometheus text format 0.0.4 to out.  0 or
 * MOOR_ENOMEM. */
int moor_metrics_text(const moor_metrics_t *m, moor_buf_t *out);

/* Packs every figure: an array of {name, type ("counter", "gauge",
 * "histogram"), help, samples = [{labels = {k = v}, value}]}; a histogram
 * sample is {labels, count, sum, buckets = [[le, cumulative count], ...]}
 * with le +Inf last.  Returns the packer's status. */
int moor_metrics_pack(const moor_metrics_t *m, msgpack_packer *pk);

/* Packs info.requests.by_method: {method = {count, errors, p50_ms,
 * p99_ms}} over every keyspace, for the methods that were called. */
int moor_metrics_pack_by_method(const moor_metrics_t *m, msgpack_packer *pk);

/* The q-quantile (0..1) of a histogram of cumulative bucket counts cum
 * (MOOR_METRICS_NBOUNDS + 1 of them), in seconds: linear inside the bucket
 * it falls in, the last finite bound when it falls in +Inf; 0 when the
 * histogram is empty.  Pure. */
double moor_metrics_quantile(const uint64_t *cum, double q);

#endif
