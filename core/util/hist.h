/*
 * hist.h -- quantiles of a histogram of fixed buckets (the Prometheus way),
 * shared by the node's registry (server/metrics.c) and `moor top`, so a
 * p99 means the same thing in both.
 */
#ifndef MOOR_UTIL_HIST_H
#define MOOR_UTIL_HIST_H

#include <stddef.h>
#include <stdint.h>

/* ===== API ===== */

/* The q-quantile (0..1) of a histogram with n finite upper bounds
 * (ascending) and n + 1 cumulative bucket counts (the last one +Inf, the
 * total): linear inside the bucket the rank falls in (from 0 for the
 * first), the last finite bound when it falls in +Inf; 0 when the total
 * is 0.  Pure; can't fail. */
double moor_hist_quantile(const double *bounds, size_t n, const uint64_t *cum, double q);

#endif
