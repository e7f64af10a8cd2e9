/*
 * hist.c -- histogram quantiles (hist.h).
 */
#include "hist.h"

double moor_hist_quantile(const double *bounds, size_t n, const uint64_t *cum, double q)
{
    uint64_t total = cum[n];
    double rank, lo, below;
    size_t b = 0;

    if (total == 0)
        return 0;
    rank = q * (double)total;
    while (b < n && (double)cum[b] < rank)
        b++;
    if (b == n)
        return bounds[n - 1];
    lo = b ? bounds[b - 1] : 0;
    below = b ? (double)cum[b - 1] : 0;
    if ((double)cum[b] - below <= 0)
        return bounds[b];
    return lo + (bounds[b] - lo) * (rank - below) / ((double)cum[b] - below);
}
